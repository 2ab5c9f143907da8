// A PEFT adapter chosen from the disk (a zip, or adapter_config.json with
// adapter_model.safetensors), read with every size bounded before anything is inflated or read
// whole. It runs in the data worker, so a large or hostile file never holds up the page: a zip is
// filtered to the two entries an adapter has, each capped by its declared size, and an entry
// that inflates past its declared size is refused (a 4 MB entry of deflated zeros can claim 4 GB).
import { unzipBounded } from './bounded-zip.js';

const MiB = 1024 * 1024;
/** adapter_config.json: a few hundred bytes in practice. */
export const MAX_CONFIG_BYTES = MiB;
/** adapter_model.safetensors: r64 on every projection of a 0.5B model is ~140 MB; the engine's heap is 4 GiB. */
export const MAX_WEIGHTS_BYTES = 1024 * MiB;
/** The zip itself, read whole before its directory is parsed. */
export const MAX_ZIP_BYTES = MAX_WEIGHTS_BYTES + 16 * MiB;

const CONFIG = 'adapter_config.json';
const WEIGHTS = 'adapter_model.safetensors';
const LIMITS = new Map([[CONFIG, MAX_CONFIG_BYTES], [WEIGHTS, MAX_WEIGHTS_BYTES]]);
const baseName = (path) => path.split('/').pop();
const size = (n) => `${(n / MiB).toFixed(1)} MiB`;

function tooBig(what, bytes, max) {
  return new Error(`${what} is ${size(bytes)}, more than the ${size(max)} an adapter's ${what === CONFIG ? 'config' : 'weights'} may take: is it the right file?`);
}

/**
 * Reads an adapter: `{zip: File}` or `{config: File, weights: File}`. Resolves to
 * {config (text), weights (Uint8Array)}; throws a sentence naming the file and the limit.
 */
export async function readAdapterFiles({ zip, config, weights }) {
  if (zip) return readZip(zip);
  if (!config || !weights) throw new Error('choose a PEFT zip, or adapter_config.json together with adapter_model.safetensors');
  if (config.size > MAX_CONFIG_BYTES) throw tooBig(CONFIG, config.size, MAX_CONFIG_BYTES);
  if (weights.size > MAX_WEIGHTS_BYTES) throw tooBig(WEIGHTS, weights.size, MAX_WEIGHTS_BYTES);
  return { config: await config.text(), weights: new Uint8Array(await weights.arrayBuffer()) };
}

async function readZip(file) {
  if (file.size > MAX_ZIP_BYTES) throw new Error(`${file.name} is ${size(file.size)}, more than the ${size(MAX_ZIP_BYTES)} a PEFT zip may take`);
  // Only the adapter's two entries are inflated, and only when their declared sizes fit.
  const { entries } = unzipBounded(new Uint8Array(await file.arrayBuffer()), {
    limitOf: (name) => LIMITS.get(baseName(name)) ?? null,
    key: baseName,
    say: {
      tooBig: (name, bytes, max) => tooBig(name, bytes, max).message,
      duplicate: (name) => `${file.name} holds more than one ${name}`,
      total: () => `${file.name} is too large`,
      sizeLies: (name) => `${file.name}: ${name} does not inflate to the size the zip declares for it (a damaged or hostile archive)`,
      notZip: () => `${file.name} is not a readable zip archive`,
    },
  });
  const [c, w] = [CONFIG, WEIGHTS];
  if (!entries[c] || !entries[w]) throw new Error(`${file.name} must hold ${CONFIG} and ${WEIGHTS}`);
  return { config: new TextDecoder().decode(entries[c]), weights: entries[w] };
}
