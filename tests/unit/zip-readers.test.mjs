// The readers of the zips a user chooses (a training checkpoint, a PEFT adapter, a study), in
// Node: good files read back, and hostile ones are refused in words before anything large is
// inflated: an entry declaring more than its limit, entries over the total, an entry named twice,
// an entry that inflates to another size than it declares, an entry named like an object's
// built-in property, a file that is no zip.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let zipSync, strToU8, checkpoint, adapter, study;

before(async () => {
  // The modules import '../vendor/fflate.js', as dist/ lays them out: the same layout in a
  // scratch folder, with fflate's browser build from www/node_modules as dist.mjs copies it.
  const dir = mkdtempSync(path.join(tmpdir(), 'cqa-zip-readers-'));
  mkdirSync(path.join(dir, 'lib'));
  mkdirSync(path.join(dir, 'vendor'));
  for (const f of ['bounded-zip.js', 'checkpoint-file.js', 'adapter-files.js', 'study-file.js']) cpSync(path.join(ROOT, 'www/lib', f), path.join(dir, 'lib', f));
  cpSync(path.join(ROOT, 'www/node_modules/fflate/esm/browser.js'), path.join(dir, 'vendor/fflate.js'));
  ({ zipSync, strToU8 } = await import(path.join(dir, 'vendor/fflate.js')));
  checkpoint = await import(path.join(dir, 'lib/checkpoint-file.js'));
  adapter = await import(path.join(dir, 'lib/adapter-files.js'));
  study = await import(path.join(dir, 'lib/study-file.js'));
});

/** A zip of `files` (name → bytes), every entry stored (its size is what it declares). */
const zip = (files) => zipSync(Object.fromEntries(Object.entries(files).map(([n, b]) => [n, [b, { level: 0 }]])));

/**
 * `bytes` with the uncompressed size that the zip's directory and the entry's local header
 * declare for `name` set to `size`: what a hostile archive claims.
 */
function declare(bytes, name, size) {
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer);
  const nameBytes = strToU8(name);
  const named = (at, nameAt) => nameBytes.every((b, i) => out[at + nameAt + i] === b);
  let patched = 0;
  for (let at = 0; at + 46 <= out.length; at++) {
    const signature = view.getUint32(at, true);
    if (signature === 0x04034b50 && view.getUint16(at + 26, true) === nameBytes.length && named(at, 30)) {
      view.setUint32(at + 22, size, true);
      patched++;
    } else if (signature === 0x02014b50 && view.getUint16(at + 28, true) === nameBytes.length && named(at, 46)) {
      view.setUint32(at + 24, size, true);
      patched++;
    }
  }
  assert.equal(patched, 2, `${name}: its local header and directory entry`);
  return out;
}

/** `bytes` with the entry `from` renamed `to` (same length) in its local header and directory. */
function rename(bytes, from, to) {
  const out = new Uint8Array(bytes);
  const [a, b] = [strToU8(from), strToU8(to)];
  let renamed = 0;
  for (let at = 0; at + a.length <= out.length; at++) {
    if (a.every((x, i) => out[at + i] === x)) { out.set(b, at); renamed++; }
  }
  assert.equal(renamed, 2, `${from}: its local header and directory entry`);
  return out;
}

const MiB = 1024 * 1024;
/** The smallest safetensors file: an 8-byte header length, then `{}`. */
const safetensors = () => { const b = new Uint8Array(10); new DataView(b.buffer).setBigUint64(0, 2n, true); b.set(strToU8('{}'), 8); return b; };
const run = { key: 'run-1', records: '{"a": 1}', history: { steps: [], held_out: [] }, model: 'm.gguf' };

const readCheckpoint = (bytes) => checkpoint.readCheckpointFile(new Blob([bytes]));
const readAdapter = (bytes, name = 'adapter.zip') => adapter.readAdapterFiles({ zip: new File([bytes], name) });

test('a checkpoint file reads back, and every hostile variant is refused in words', async () => {
  const good = checkpoint.checkpointZip(run, 3, safetensors());
  const back = await readCheckpoint(good);
  assert.equal(back.step, 3);
  assert.equal(back.run.key, 'run-1');
  assert.deepEqual(Array.from(back.bytes), Array.from(safetensors()));

  await assert.rejects(readCheckpoint(strToU8('not a zip at all, only text')), { message: 'it is not a readable zip archive' });
  const bomb = declare(good, 'checkpoint.safetensors', 1600 * MiB);
  await assert.rejects(readCheckpoint(bomb), { message: 'its checkpoint.safetensors is 1600.0 MiB, more than the 1536.0 MiB it may take' });
  await assert.rejects(readCheckpoint(declare(good, 'checkpoint.safetensors', 9)),
    { message: 'its checkpoint.safetensors does not inflate to the size the zip declares for it (a damaged or hostile archive)' });
  const twice = rename(zip({ 'run.json': strToU8('{}'), 'run.jsoX': strToU8('{}'), 'checkpoint.safetensors': safetensors() }), 'run.jsoX', 'run.json');
  await assert.rejects(readCheckpoint(twice), { message: 'it holds more than one run.json' });
  // Names an object has built in are names like any other: skipped, never taken for limits.
  // (fflate cannot write a __proto__ entry from an object: it is renamed in place.)
  const odd = rename(zip({ constructor: strToU8('x'), protoname: strToU8('y'), toString: strToU8('z'), 'run.json': strToU8('{}') }), 'protoname', '__proto__');
  await assert.rejects(readCheckpoint(odd), { message: /^it is not a cqa-studio checkpoint file, which holds run\.json and checkpoint\.safetensors/ });
});

test('a PEFT zip reads back from a folder inside it, and hostile ones are refused naming the file', async () => {
  const config = strToU8('{"r": 8}');
  const good = zip({ 'my-adapter/adapter_config.json': config, 'my-adapter/adapter_model.safetensors': safetensors(), 'my-adapter/README.md': strToU8('hi') });
  const back = await readAdapter(good);
  assert.equal(back.config, '{"r": 8}');
  assert.equal(back.weights.length, 10);

  const bomb = declare(good, 'my-adapter/adapter_model.safetensors', 1200 * MiB);
  await assert.rejects(readAdapter(bomb), { message: /^adapter_model\.safetensors is 1200\.0 MiB, more than the 1024\.0 MiB an adapter's weights may take/ });
  const twice = zip({ 'a/adapter_config.json': config, 'b/adapter_config.json': config, 'a/adapter_model.safetensors': safetensors() });
  await assert.rejects(readAdapter(twice), { message: 'adapter.zip holds more than one adapter_config.json' });
  await assert.rejects(readAdapter(declare(good, 'my-adapter/adapter_config.json', 3)),
    { message: 'adapter.zip: adapter_config.json does not inflate to the size the zip declares for it (a damaged or hostile archive)' });
  await assert.rejects(readAdapter(zip({ 'adapter_config.json': config })), { message: 'adapter.zip must hold adapter_config.json and adapter_model.safetensors' });
  await assert.rejects(readAdapter(strToU8('PK but not really')), { message: 'adapter.zip is not a readable zip archive' });
});

test('a study zip reads back, skips what is not its own, and refuses entries and totals over the limits', async () => {
  const doc = { format: study.STUDY_FORMAT, version: study.STUDY_VERSION, adapters: [] };
  const good = study.studyZip(doc, new Map());
  const back = await study.readStudyZip(good);
  assert.equal(back.doc.format, study.STUDY_FORMAT);

  const extra = zip({ 'study.json': strToU8(JSON.stringify(doc)), 'notes.txt': strToU8('x'), 'adapters/1.safetensors': safetensors() });
  assert.deepEqual((await study.readStudyZip(extra)).skipped, ['notes.txt']);
  await assert.rejects(study.readStudyZip(declare(extra, 'study.json', 65 * MiB)), { message: 'its entry study.json unpacks to 65 MiB, more than the 64 MiB allowed' });
  // Seven weights entries each under their limit, together over the total.
  const many = Object.fromEntries([...Array(7).keys()].map((i) => [`adapters/${i}.safetensors`, safetensors()]));
  let heavy = zip({ 'study.json': strToU8(JSON.stringify(doc)), ...many });
  for (const name of Object.keys(many)) heavy = declare(heavy, name, 250 * MiB);
  await assert.rejects(study.readStudyZip(heavy), { message: 'its entries unpack to more than the 1536 MiB allowed' });
  // An entry that unpacks to another size than it declares (the study reader did not check this before).
  await assert.rejects(study.readStudyZip(declare(extra, 'adapters/1.safetensors', 4)), { message: /its entry adapters\/1\.safetensors does not unpack to the size the zip declares/ });
  await assert.rejects(study.readStudyZip(strToU8('nope')), { message: /^it is not a readable zip archive/ });
});
