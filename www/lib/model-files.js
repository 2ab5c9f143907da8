// The engine worker's model bytes: read from the user's files, from this browser's Cache Storage,
// or downloaded from this origin's /models/, with progress. The engine itself only sees bytes.

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

const localKey = (name) => new URL(`/local-models/${encodeURIComponent(name)}`, self.location.origin).href;
const serverKey = (name) => new URL(`/models/${name}`, self.location.origin).href;

function checkModelName(name, defaultModel) {
  if (typeof name !== 'string' || !/^[\w.-]+\.gguf$/i.test(name)) {
    throw new Error(`“${name}” is not a model file name (expected something like ${defaultModel})`);
  }
  return name;
}

/**
 * The bytes of an HF safetensors model chosen on the user's disk:
 * {name, source: 'files', shards, configText, tokenizer, tokenizerConfigText, total}.
 */
export async function readHfFiles({ shards, config, tokenizer, tokenizerConfig }, ev) {
  const files = [...shards, config, tokenizer, ...(tokenizerConfig ? [tokenizerConfig] : [])];
  const total = files.reduce((s, f) => s + f.size, 0);
  let done = 0;
  const read = async (f) => {
    const bytes = await readAll(f.stream(), f.size, (l) => ev({ type: 'progress', stage: 'read', loaded: done + l, total, message: `Reading ${f.name}…` }));
    done += f.size;
    return bytes;
  };
  const shardBytes = [];
  for (const f of shards) shardBytes.push(await read(f));
  const configText = new TextDecoder().decode(await read(config));
  const tokenizerBytes = await read(tokenizer);
  const tokenizerConfigText = tokenizerConfig ? new TextDecoder().decode(await read(tokenizerConfig)) : null;
  const name = shards.length === 1 ? shards[0].name : `${shards.length} safetensors shards`;
  return { name, source: 'files', shards: shardBytes, configText, tokenizer: tokenizerBytes, tokenizerConfigText, total };
}

/**
 * The bytes of a GGUF model: `msg.file` (the user's disk), or `msg.name` (default: `defaultModel`)
 * from this browser's cache, else from /models/ (not for `source: 'local'`, which only the cache
 * holds). Resolves to {name, source, bytes, cached, fromCache, cacheKey}; source: 'file' | 'local'
 * | 'default' | 'url'.
 */
export async function readGguf(msg, ev, defaultModel) {
  const progress = (stage, message) => (loaded, total) => ev({ type: 'progress', stage, loaded, total, message });
  if (msg.file) {
    const name = msg.file.name;
    const bytes = await readAll(msg.file.stream(), msg.file.size, progress('read', `Reading ${name} from your disk…`));
    return { name, source: 'file', bytes, cached: false, fromCache: false, cacheKey: localKey(name) };
  }
  const local = msg.source === 'local';
  const name = checkModelName(msg.name || defaultModel, defaultModel);
  const source = local ? 'local' : (name === defaultModel ? 'default' : 'url');
  const cacheKey = local ? localKey(name) : serverKey(name);
  const cache = await openCache();
  const hit = cache ? await cache.match(cacheKey) : null;
  if (hit && hit.body) {
    const bytes = await readAll(hit.body, Number(hit.headers.get('Content-Length')) || 0, progress('cache', `Reading ${name} from this browser’s cache…`));
    return { name, source, bytes, cached: true, fromCache: true, cacheKey };
  }
  if (local) throw new Error(`${name} is no longer in this browser’s cache; open the file again`);
  ev({ type: 'progress', stage: 'download', loaded: 0, total: 0, message: `Downloading ${name}…` });
  const res = await fetch(cacheKey);
  if (!res.ok) throw new Error(`could not download ${name} (${res.status} ${res.statusText || 'error'}); open a model file instead`);
  const total = Number(res.headers.get('Content-Length')) || 0;
  const bytes = res.body ? await readAll(res.body, total, progress('download', `Downloading ${name}…`)) : new Uint8Array(await res.arrayBuffer());
  return { name, source, bytes, cached: false, fromCache: false, cacheKey };
}

/** Keeps model bytes in Cache Storage under `key`; false when that is impossible (e.g. over quota). */
export async function storeModel(key, bytes) {
  const cache = await openCache();
  if (!cache) return false;
  try {
    await cache.put(key, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) } }));
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
