// The engine worker's model bytes: read from the user's files, from this browser's Cache Storage,
// or downloaded from the site's models/ folder (beside the page), with progress. A GGUF file stays
// where it is (a Blob: on the disk, in the cache) and the engine reads the slices it needs, a
// tensor at a time (blobReader); a download goes through the cache on its way. Only a download
// the cache will not take is streamed into the engine's memory piece by piece (streamIntoEngine).
// The engine itself only sees bytes. A model cached from the site is rechecked whenever the server
// answers: a HEAD request's Content-Length and ETag / Last-Modified against those stored with the
// cached copy; when they differ the model is downloaded again (and the cache entry replaced once it
// has loaded).
// Also here: what a model will need in memory once loaded (ggufNeed, hfNeed), so the
// engine worker can refuse one that does not fit before trying.

export const MODEL_CACHE = 'cqa-studio-models-v1';
const PROGRESS_INTERVAL_MS = 100;

/** Reads a byte stream into one Uint8Array, calling `progress(loaded, total)` as it goes. */
export async function readAll(stream, total, progress) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  let out = total > 0 ? new Uint8Array(total) : null;
  let last = 0;
  progress(0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out && loaded + value.length <= out.length) out.set(value, loaded);
    else {
      if (out) { chunks.push(out.subarray(0, loaded)); out = null; }
      chunks.push(value);
    }
    loaded += value.length;
    const now = performance.now();
    if (now - last >= PROGRESS_INTERVAL_MS) { last = now; progress(loaded, total); }
  }
  progress(loaded, total || loaded);
  if (out) return loaded === out.length ? out : out.subarray(0, loaded);
  const joined = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { joined.set(c, at); at += c.length; }
  return joined;
}

async function openCache() {
  try { return await caches.open(MODEL_CACHE); } catch { return null; } // no Cache Storage (e.g. opaque origin)
}

const MiB = 1024 * 1024;
const RECHECK_TIMEOUT_MS = 5000;

/** The validators of a response (or a cached copy) that say whether a model file changed. */
const validatorsOf = (headers) => ({
  length: headers.get('Content-Length'), etag: headers.get('ETag'), lastModified: headers.get('Last-Modified'),
});

/**
 * Whether the server's copy of a cached model differs from the cached one, by a HEAD request.
 * False when it cannot tell: offline, an error, a server without validators.
 */
export async function changedOnServer(url, cachedHeaders) {
  if (self.navigator?.onLine === false) return false;
  let head;
  try {
    head = await fetch(url, { method: 'HEAD', cache: 'no-store', signal: AbortSignal.timeout(RECHECK_TIMEOUT_MS) });
  } catch {
    return false; // offline: the cached copy is all there is
  }
  if (!head.ok) return false; // gone from the server (or an error page): keep the cached copy
  const now = validatorsOf(head.headers);
  const then = validatorsOf(cachedHeaders);
  if (now.length && then.length && now.length !== then.length) return true;
  if (now.etag && then.etag) return now.etag !== then.etag;
  if (now.lastModified && then.lastModified) return now.lastModified !== then.lastModified;
  return false;
}

// The app's own folder (this file is in its lib/): every URL the app uses is relative to it, so the
// site works from any sub-path (https://host/some/path/) as well as from a server's root.
const APP_BASE = new URL('../', import.meta.url);
/** The absolute URL of `path` inside the app's folder (e.g. `models/x.gguf`). */
const siteUrl = (path) => new URL(path, APP_BASE).href;

/** The Cache Storage key of a model opened from disk: a name no server path uses. */
export const localKey = (name) => siteUrl(`local-models/${encodeURIComponent(name)}`);
/** The URL (and Cache Storage key) of a model the site hosts. */
export const serverKey = (name) => siteUrl(`models/${name}`);

function checkModelName(name, defaultModel) {
  if (typeof name !== 'string' || !/^[\w.-]+\.gguf$/i.test(name)) {
    throw new Error(`“${name}” is not a model file name (expected something like ${defaultModel})`);
  }
  return name;
}

/**
 * An HF safetensors model chosen on the user's disk, its side files read:
 * {name, source: 'files', shards (the Files, left on the disk: the engine reads them slice by
 * slice), configText, tokenizer, tokenizerConfigText, total}.
 */
export async function readHfFiles({ shards, config, tokenizer, tokenizerConfig }, ev) {
  const sideFiles = [config, tokenizer, ...(tokenizerConfig ? [tokenizerConfig] : [])];
  const total = sideFiles.reduce((s, f) => s + f.size, 0);
  let done = 0;
  const read = async (f) => {
    const bytes = await readAll(f.stream(), f.size, (l) => ev({ type: 'progress', stage: 'read', loaded: done + l, total, message: `Reading ${f.name}…` }));
    done += f.size;
    return bytes;
  };
  const configText = new TextDecoder().decode(await read(config));
  const tokenizerBytes = await read(tokenizer);
  const tokenizerConfigText = tokenizerConfig ? new TextDecoder().decode(await read(tokenizerConfig)) : null;
  const name = shards.length === 1 ? shards[0].name : `${shards.length} safetensors shards`;
  return { name, source: 'files', shards, configText, tokenizer: tokenizerBytes, tokenizerConfigText, total: total + shards.reduce((s, f) => s + f.size, 0) };
}

/**
 * Where a GGUF model's bytes come from, opened but not read: `msg.file` (the user's disk), or
 * `msg.name` (default: `defaultModel`) from this browser's cache, else downloaded from the
 * site’s models/ folder (not for `source: 'local'`, which only the cache holds). A download goes
 * to the cache first, under a key of its own, streamed to disk as it arrives, and is read from
 * there: the file is never held whole in JavaScript. Resolves to {name, source, cached,
 * fromCache, size, blob() (resolves to the file as a Blob, or null where there is none: a
 * download the cache would not take), body() (the file as a ReadableStream; use one of the two),
 * stage, message, keep(), discard()};
 * source: 'file' | 'local' | 'default' | 'url'. Once the model has loaded, `keep()` resolves to
 * whether the file is now in the cache (a file from the disk or a download is only kept then:
 * a broken file is not kept); after a failure `discard()` drops what the download left.
 */
export async function openGguf(msg, ev, defaultModel) {
  const nothing = async () => {};
  if (msg.file) {
    const file = msg.file;
    const name = file.name;
    // A File is read from the disk again when the cache stores it: no bytes held here.
    const keep = () => (msg.keep === false ? false : storeModel(localKey(name), file));
    return { name, source: 'file', cached: false, fromCache: false, size: file.size, blob: async () => file, body: () => file.stream(), stage: 'read', message: `Reading ${name} from your disk…`, keep, discard: nothing };
  }
  const local = msg.source === 'local';
  const name = checkModelName(msg.name || defaultModel, defaultModel);
  const source = local ? 'local' : (name === defaultModel ? 'default' : 'url');
  const cacheKey = local ? localKey(name) : serverKey(name);
  const cache = await openCache();
  let hit = cache ? await cache.match(cacheKey) : null;
  let refreshed = false;
  if (hit && hit.body && !local && await changedOnServer(cacheKey, hit.headers)) {
    refreshed = true;
    hit = null; // the server has another version: download it (it replaces the entry once loaded)
  }
  const fromCache = (response, message) => ({
    name, source, cached: true, fromCache: true, size: Number(response.headers.get('Content-Length')) || 0,
    blob: () => response.blob(), body: () => response.body, stage: 'cache', message, keep: async () => true, discard: nothing,
  });
  if (hit && hit.body) return fromCache(hit, `Reading ${name} from this browser’s cache…`);
  if (local) throw new Error(`${name} is no longer in this browser’s cache; open the file again`);
  const what = refreshed ? `Downloading the new version of ${name}…` : `Downloading ${name}…`;
  const download = async () => {
    ev({ type: 'progress', stage: 'download', loaded: 0, total: 0, message: what });
    // 'no-store': past the service worker's model cache and the HTTP cache, to the server.
    const res = await fetch(cacheKey, { cache: 'no-store' });
    if (res.status === 404) throw new Error(`this site does not host ${name} (there is no models/${name} beside the page); open a model file from your disk with “Open model file…”`);
    if (!res.ok) throw new Error(`could not download ${name} (${res.status} ${res.statusText || 'error'}); open a model file instead`);
    return res;
  };
  const res = await download();
  const total = Number(res.headers.get('Content-Length')) || 0;
  const validators = validatorsOf(res.headers);
  // Streamed straight into the engine, and not kept: no cache here, the page asked not to keep
  // it, or the cache would not take it (over quota).
  const direct = (response) => ({
    name, source, cached: false, fromCache: false, size: total, blob: async () => null, body: () => response.body, stage: 'download', message: what,
    keep: async () => false, discard: nothing,
  });
  if (!cache || msg.keep === false || !res.body) return direct(res);
  // Into the cache under its own key (the entry it refreshes stays until this one has loaded),
  // counted on the way for the progress bar; then read back from there.
  const pendingKey = siteUrl(`downloading-models/${encodeURIComponent(name)}`);
  const counted = res.body.pipeThrough(progressCounter(total, (loaded) => ev({ type: 'progress', stage: 'download', loaded, total, message: what })));
  const stored = await putModel(cache, pendingKey, counted, total || null, validators);
  const pending = stored ? await cache.match(pendingKey) : null;
  if (!pending?.body) {
    await cache.delete(pendingKey).catch(() => {});
    return direct(await download()); // the cache would not take it (over quota): stream it in directly
  }
  const keep = async () => {
    try {
      await cache.put(cacheKey, await cache.match(pendingKey));
      return true;
    } catch {
      return false;
    } finally {
      await cache.delete(pendingKey).catch(() => {});
    }
  };
  const discard = () => cache.delete(pendingKey).then(() => {}, () => {});
  return { ...fromCache(pending, `Reading ${name}…`), cached: false, fromCache: false, keep, discard };
}

/** A pass-through stream that reports the bytes through it, at most every PROGRESS_INTERVAL_MS. */
function progressCounter(total, progress) {
  let loaded = 0;
  let last = 0;
  return new TransformStream({
    transform(chunk, controller) {
      loaded += chunk.length;
      const now = performance.now();
      if (now - last >= PROGRESS_INTERVAL_MS) { last = now; progress(loaded); }
      controller.enqueue(chunk);
    },
    flush() { progress(loaded); },
  });
}

/**
 * Streams a GGUF file into the engine: resolves to a filled `ModelUpload` (the wasm package's),
 * which the engine then loads. When `check(need)` is given, the first pieces are held until the
 * file's header is read whole and the model's need is known; `check` throws when it does not fit,
 * before room for the whole file is set aside. Progress as `progress(loaded, total)`.
 */
export async function streamIntoEngine(m, { body, size }, progress, check = null) {
  const pieces = pieceReader(body());
  let upload = null;
  let head = [];
  let headBytes = 0;
  let nextCheck = Math.min(size, 4 * MiB);
  let loaded = 0;
  let last = 0;
  const joined = () => {
    const out = new Uint8Array(headBytes);
    let at = 0;
    for (const c of head) { out.set(c, at); at += c.length; }
    return out;
  };
  const begin = () => {
    upload = new m.ModelUpload(size);
    for (const c of head) upload.write(c);
    head = null;
  };
  progress(0, size);
  try {
    if (!check || !size) begin();
    for (;;) {
      const piece = await pieces.next();
      if (!piece) break;
      loaded += piece.length;
      if (upload) upload.write(piece);
      else {
        head.push(piece.slice()); // the reader reuses its buffer: the header's pieces are kept
        headBytes += piece.length;
        if (headBytes >= nextCheck) {
          // The header (metadata with the tokenizer, then the tensor index) is usually a few MB.
          const need = m.modelMemory(joined(), size);
          if (need) { check({ ...need, estimated: false }); begin(); } else nextCheck = Math.min(size, nextCheck * 4);
        }
      }
      const now = performance.now();
      if (now - last >= PROGRESS_INTERVAL_MS) { last = now; progress(loaded, size); }
    }
    if (!upload) begin(); // shorter than its header claims: the engine says what is cut short
    progress(loaded, size || loaded);
    return upload;
  } catch (e) {
    pieces.cancel();
    upload?.free();
    throw e;
  }
}

const PIECE_BYTES = 4 * MiB;

/**
 * The engine's reader of a Blob (`WebModel.loadRanged`, `modelSha256`): `read(offset, target)`
 * fills the Uint8Array `target` (a view of the engine's memory) with the file's bytes from
 * `offset` and returns how many it wrote, fewer where the file ends early. Synchronous, through
 * FileReaderSync (so only in a worker), PIECE_BYTES at a time: the tab holds one piece besides
 * what the engine keeps. `progress(bytesRead)` at most every PROGRESS_INTERVAL_MS.
 */
export function blobReader(blob, progress = () => {}) {
  const files = new FileReaderSync();
  let read = 0;
  let last = 0;
  return (offset, target) => {
    for (let at = 0; at < target.length;) {
      const want = Math.min(PIECE_BYTES, target.length - at);
      const piece = files.readAsArrayBuffer(blob.slice(offset + at, offset + at + want));
      target.set(new Uint8Array(piece), at);
      at += piece.byteLength;
      read += piece.byteLength;
      if (piece.byteLength < want) return at;
      const now = performance.now();
      if (now - last >= PROGRESS_INTERVAL_MS) { last = now; progress(read); }
    }
    return target.length;
  };
}

/**
 * Reads a byte stream into one reused buffer (a BYOB reader) where the stream allows it, so a
 * file of a GB leaves no GB of spent pieces for the garbage collector: measured in Chromium, the
 * default reader's pieces stayed alive long enough to double the tab's peak. `next()` resolves to
 * the next piece (valid until the following call) or null at the end.
 */
function pieceReader(body) {
  let byob = null;
  try { byob = body.getReader({ mode: 'byob' }); } catch { /* not a byte stream */ }
  if (!byob) {
    const reader = body.getReader();
    return {
      next: async () => { const { done, value } = await reader.read(); return done ? null : value; },
      cancel: () => reader.cancel().catch(() => {}),
    };
  }
  let buffer = new ArrayBuffer(PIECE_BYTES);
  return {
    next: async () => {
      const { done, value } = await byob.read(new Uint8Array(buffer));
      if (done || !value) return null;
      buffer = value.buffer; // handed back by the read: the same memory, reused next time
      return value;
    },
    cancel: () => byob.cancel().catch(() => {}),
  };
}

/**
 * Keeps a model in Cache Storage under `key`, with the server's validators (ETag,
 * Last-Modified) when it came from the server; false when that is impossible (e.g. over quota).
 * `body` is anything a Response takes: a File (read from the disk as it is stored), a stream,
 * bytes; a Response is stored with its own body.
 */
async function storeModel(key, body, validators = {}) {
  const cache = await openCache();
  if (!cache) return false;
  if (body instanceof Response) body = body.body;
  const length = body instanceof Blob ? body.size : body?.length ?? body?.byteLength ?? null;
  return putModel(cache, key, body, length, validators);
}

async function putModel(cache, key, body, length, validators) {
  const headers = { 'Content-Type': 'application/octet-stream' };
  if (length != null) headers['Content-Length'] = String(length);
  if (validators.etag) headers.ETag = validators.etag;
  if (validators.lastModified) headers['Last-Modified'] = validators.lastModified;
  try {
    await cache.put(key, new Response(body, { headers }));
    return true;
  } catch {
    return false; // over quota: the model still works, it just is not cached
  }
}

/** Deletes every cached model file; resolves to how many there were. */
export async function forgetModels() {
  const cache = await openCache();
  if (!cache) return 0;
  const keys = await cache.keys();
  await Promise.all(keys.map((k) => cache.delete(k)));
  return keys.length;
}

// ---- what a model needs in memory ------------------------------------------------------------
//
// Both return the engine's plan (quant::MemoryNeed): {parameters, file_bytes, resident_bytes,
// resident_bytes_stored, resident_bytes_stored_gpu, largest_tensor_bytes,
// largest_buffer_bytes_stored, largest_tensor}, with estimated: false. resident_bytes are the
// weights dequantized to f32, resident_bytes_stored the weights kept as the files store them on
// the CPU (f32 where a matrix is held dense), resident_bytes_stored_gpu the same on WebGPU (the
// formats without GPU kernels go as Q8_0 there); largest_tensor_bytes the biggest single weight in
// f32, largest_buffer_bytes_stored the biggest GPU buffer with stored weights (one GPU buffer must
// hold it).

/**
 * A GGUF file's need, from its header alone: `readHead(n)` resolves to the file's first n bytes.
 * Uses the engine's `modelMemory(head, length)` when the wasm package has it; otherwise an
 * estimate from the size (a 4-bit file holds about 1/6 of the f32 weights: resident ≈ 6 × the
 * file; the largest tensor unknown). null when the file is not readable as such a model: the
 * loader then says what is wrong.
 */
export async function ggufNeed(m, readHead, length) {
  if (typeof m.modelMemory !== 'function') {
    return { parameters: null, file_bytes: length, resident_bytes: length * 6, largest_tensor_bytes: null, largest_tensor: null, estimated: true };
  }
  // The header (metadata with the tokenizer, then the tensor index) is usually a few MB.
  for (let n = Math.min(length, 4 * MiB); ; n = Math.min(length, n * 4)) {
    // A header the engine refuses (bad magic, an unsupported version, a count the file cannot
    // hold) throws its sentence here, from the first bytes: the file is never read whole.
    const need = m.modelMemory(await readHead(n), length);
    if (need) return { ...need, estimated: false };
    if (n >= length) return null;
  }
}

// The largest side files of an HF model read into memory: real tokenizer.json files are 2–11 MB,
// configs a few KB. A safetensors header (JSON: one entry per tensor) is under 1 MB in practice.
export const MAX_TOKENIZER_BYTES = 64 * MiB;
export const MAX_CONFIG_BYTES = 4 * MiB;
export const MAX_SAFETENSORS_HEADER_BYTES = 64 * MiB;

/**
 * Checks an HF model's files before any is read whole: the side files' sizes, and each shard's
 * header (its first 8 bytes give the header's length, read next), which the engine plans the
 * model's memory from (`safetensorsMemory`). Throws a sentence naming the file; resolves to the
 * model's need.
 */
export async function hfNeed(m, { shards, config, tokenizer, tokenizerConfig }) {
  const tooBig = (f, max, what) => {
    if (f && f.size > max) throw new Error(`${f.name} is ${(f.size / MiB).toFixed(1)} MiB, too large for ${what} (at most ${max / MiB} MiB): is it the right file?`);
  };
  tooBig(config, MAX_CONFIG_BYTES, 'a config.json');
  tooBig(tokenizerConfig, MAX_CONFIG_BYTES, 'a tokenizer_config.json');
  tooBig(tokenizer, MAX_TOKENIZER_BYTES, 'a tokenizer.json');
  const heads = [];
  for (const f of shards) {
    if (f.size < 8) throw new Error(`${f.name} is not a safetensors file: it is shorter than its 8-byte header length`);
    const n = Number(new DataView(await f.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
    if (n > f.size - 8 || n > MAX_SAFETENSORS_HEADER_BYTES) {
      throw new Error(`${f.name} is not a safetensors file the engine can read: its header claims ${n} bytes, but the file has ${f.size}`);
    }
    heads.push(new Uint8Array(await f.slice(0, 8 + n).arrayBuffer()));
  }
  try {
    return { ...m.safetensorsMemory(heads, shards.map((f) => f.size)), estimated: false };
  } catch (e) {
    // The engine numbers the shards from 1: name the file instead.
    const i = Number(/safetensors file #(\d+)/.exec(e.message)?.[1]);
    throw new Error(i ? e.message.replace(`safetensors file #${i}`, shards[i - 1].name) : e.message);
  }
}
