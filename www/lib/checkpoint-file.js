// A training run's checkpoint as a file (*.cqa-checkpoint.zip): run.json, the run's record
// (its records, settings, loss history and the model it trains), and checkpoint.safetensors, the
// engine's checkpoint (adapter, AdamW moments, position in the data). One file resumes the run
// in any browser with the same model loaded, so a run in a private window, or in a browser that
// refuses to store its checkpoints, can outlive the window. Reading one is bounded like every
// other input, in the data worker: the file's size, each entry's declared size, which entries are
// inflated at all, and an entry that inflates past what it declares is refused.
import { zipSync, strToU8, strFromU8 } from '../vendor/fflate.js';
import { unzipBounded } from './bounded-zip.js';

export const CHECKPOINT_FILE_FORMAT = 'cqa-run-checkpoint';
export const CHECKPOINT_FILE_VERSION = 1;
const MiB = 1024 * 1024;
/** run.json: the records dominate (100 long records are ~1 MB). */
export const MAX_RUN_BYTES = 64 * MiB;
/** checkpoint.safetensors: r64 on every projection of a 1.5B model, with its moments, is ~1.1 GB. */
export const MAX_CHECKPOINT_BYTES = 1536 * MiB;
export const MAX_FILE_BYTES = MAX_CHECKPOINT_BYTES + MAX_RUN_BYTES;

const RUN = 'run.json';
const CHECKPOINT = 'checkpoint.safetensors';
const LIMITS = new Map([[RUN, MAX_RUN_BYTES], [CHECKPOINT, MAX_CHECKPOINT_BYTES]]);
const mib = (n) => `${(n / MiB).toFixed(1)} MiB`;

/** The file name for `run`'s checkpoint at `step`. */
export function checkpointFileName(run, step) {
  const model = String(run.model || 'model').replace(/\.gguf$/i, '').replace(/[^\w.-]+/g, '-').slice(0, 60);
  return `cqa-checkpoint-${model}-step-${step}-${(run.started || new Date().toISOString()).slice(0, 10)}.cqa-checkpoint.zip`;
}

/** The zip of `run`'s checkpoint `bytes` taken at `step`. The checkpoint is stored: it does not compress. */
export function checkpointZip(run, step, bytes) {
  const doc = { format: CHECKPOINT_FILE_FORMAT, version: CHECKPOINT_FILE_VERSION, step, run: { ...run, step, checkpointStep: step } };
  return zipSync({ [RUN]: strToU8(JSON.stringify(doc)), [CHECKPOINT]: [new Uint8Array(bytes), { level: 0 }] });
}

/**
 * Reads a checkpoint file (a `File` or `Blob`). Resolves to {run, step, bytes}; throws what is
 * wrong with it, as a clause about the file ("it is not …").
 */
export async function readCheckpointFile(file) {
  if (file.size > MAX_FILE_BYTES) throw new Error(`it is ${mib(file.size)}, more than the ${mib(MAX_FILE_BYTES)} a checkpoint file may take: is it the right file?`);
  const { entries } = unzipBounded(new Uint8Array(await file.arrayBuffer()), {
    limitOf: (name) => LIMITS.get(name) ?? null,
    say: {
      tooBig: (name, bytes, max) => `its ${name} is ${mib(bytes)}, more than the ${mib(max)} it may take`,
      duplicate: (name) => `it holds more than one ${name}`,
      total: () => 'its entries are too large',
      sizeLies: (name) => `its ${name} does not inflate to the size the zip declares for it (a damaged or hostile archive)`,
      notZip: () => 'it is not a readable zip archive',
    },
  });
  if (!entries[RUN] || !entries[CHECKPOINT]) throw new Error(`it is not a cqa-studio checkpoint file, which holds ${RUN} and ${CHECKPOINT} (“Download checkpoint” in the Train panel makes one)`);
  let doc;
  try { doc = JSON.parse(strFromU8(entries[RUN])); } catch { throw new Error(`its ${RUN} is not JSON`); }
  if (doc?.format !== CHECKPOINT_FILE_FORMAT) throw new Error(`it is not a cqa-studio checkpoint file (its ${RUN} has no "format": "${CHECKPOINT_FILE_FORMAT}")`);
  if (doc.version !== CHECKPOINT_FILE_VERSION) throw new Error(`it is a checkpoint file of version ${doc.version}; this cqa-studio reads version ${CHECKPOINT_FILE_VERSION}`);
  const { run, step } = doc;
  const problems = [];
  if (!Number.isSafeInteger(step) || step < 1) problems.push('its step is not a positive whole number');
  if (typeof run?.key !== 'string' || !run.key) problems.push('its run has no key');
  if (typeof run?.records !== 'string' || !run.records.trim()) problems.push('its run has no records');
  if (!Array.isArray(run?.history?.steps) || !Array.isArray(run?.history?.held_out)) problems.push('its run has no loss history');
  if (typeof run?.model !== 'string') problems.push('it does not name its model');
  if (problems.length) throw new Error(problems.join('; '));
  const bytes = entries[CHECKPOINT];
  // A safetensors file starts with its header's length, then the JSON header.
  const headerLength = bytes.length >= 8 ? Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)) : -1;
  if (headerLength <= 0 || headerLength > bytes.length - 8 || bytes[8] !== 0x7b) throw new Error(`its ${CHECKPOINT} is not a safetensors file`);
  return { run, step, bytes };
}
