// The study file (*.cqa-study.zip, docs/study-format.md): study.json, the document the engine
// reads (records, benchmark, adapters' settings and loss history, reports, the model's name, size
// and SHA-256), and each adapter's weights under adapters/. Reading one is bounded like every
// other input: the file's size, each entry's size, the total, and which entries are read at all.
import { zipSync, strToU8, strFromU8 } from '../vendor/fflate.js';
import { unzipBounded } from './bounded-zip.js';

export const STUDY_FORMAT = 'cqa-study';
export const STUDY_VERSION = 1;
/** The largest study file read at all. */
export const MAX_STUDY_BYTES = 1024 * 2 ** 20;
/** The largest study.json, and the largest adapter weights entry. */
export const MAX_DOCUMENT_BYTES = 64 * 2 ** 20;
export const MAX_WEIGHTS_BYTES = 256 * 2 ** 20;
/** The most the entries may hold together, unpacked. */
export const MAX_TOTAL_BYTES = 1536 * 2 ** 20;

const WEIGHTS = /^adapters\/[0-9]{1,4}\.safetensors$/;

/** Lower-case hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * The zip of a study: `doc` (the study document, its adapters' `weights` naming the entries)
 * and `weights` (entry name → bytes). Weights are stored uncompressed: they do not compress.
 */
export function studyZip(doc, weights) {
  const files = { 'study.json': strToU8(JSON.stringify(doc, null, 1)) };
  for (const [name, bytes] of weights) files[name] = [new Uint8Array(bytes), { level: 0 }];
  return zipSync(files);
}

const mib = (n) => `${Math.round(n / 2 ** 20)} MiB`;

/**
 * Reads a study zip: {doc (parsed study.json), text (its JSON text), weights (name → bytes)}.
 * Entries other than study.json and adapters/N.safetensors are skipped unread; an entry or a
 * total over the limits is refused before it is unpacked; each adapter's weights must match
 * the SHA-256 the document gives them.
 */
export async function readStudyZip(bytes) {
  if (bytes.length > MAX_STUDY_BYTES) throw new Error(`the file is ${mib(bytes.length)}, more than the ${mib(MAX_STUDY_BYTES)} a study may be`);
  const { entries, skipped } = unzipBounded(bytes, {
    limitOf: (name) => (name === 'study.json' ? MAX_DOCUMENT_BYTES : WEIGHTS.test(name) ? MAX_WEIGHTS_BYTES : null),
    maxTotal: MAX_TOTAL_BYTES,
    say: {
      tooBig: (name, size, max) => `its entry ${name} unpacks to ${mib(size)}, more than the ${mib(max)} allowed`,
      duplicate: (name) => `it holds more than one ${name}`,
      total: (max) => `its entries unpack to more than the ${mib(max)} allowed`,
      sizeLies: (name) => `its entry ${name} does not unpack to the size the zip declares for it (a damaged or hostile archive)`,
      notZip: (message) => `it is not a readable zip archive (${message})`,
    },
  });
  if (!entries['study.json']) throw new Error('it has no study.json: is this a *.cqa-study.zip?');
  const text = strFromU8(entries['study.json']);
  let doc;
  try { doc = JSON.parse(text); } catch (e) { throw new Error(`its study.json is not valid JSON (${e.message})`); }
  if (doc?.format !== STUDY_FORMAT) throw new Error(`its study.json is not a study (format ${JSON.stringify(doc?.format ?? null)}, expected "${STUDY_FORMAT}")`);
  const weights = new Map();
  for (const a of Array.isArray(doc.adapters) ? doc.adapters : []) {
    if (!a?.weights) continue;
    const w = entries[a.weights];
    if (!w) throw new Error(`the adapter “${a.name}” names ${a.weights}, which the file does not hold`);
    if (a.weights_sha256 && (await sha256Hex(w)) !== a.weights_sha256) throw new Error(`the weights of the adapter “${a.name}” (${a.weights}) do not match their SHA-256: the file is damaged`);
    weights.set(a.weights, w);
  }
  return { doc, text, weights, skipped };
}
