// Service worker: keeps the app usable offline after the first visit, one version at a time.
//
// The shell (the page, its scripts and styles, the engine under pkg/, the libraries under vendor/,
// the bundled data) is cached whole under a name that carries its version: `./x dist` hashes the
// shell's files and writes that hash in place of the placeholder below, so any change to the
// shell changes this file and the browser installs it anew.
//   install   cache.addAll() of the whole shell into the new version's cache, then its bytes
//             hashed as `./x dist` hashed them: if one file fails, or the bytes are not those the
//             version was built from (a server or proxy that answered with other files), the
//             install fails, the cache is deleted, and the old version keeps serving (never a
//             partial or mixed cache). The first version activates at once; a later one waits
//             until the page asks for it ({type: 'skip-waiting'}: the user chose to reload).
//   activate  deletes the shell caches of older versions that no open page or worker still
//             runs (the model cache stays; a newer version waiting is never touched), and takes
//             control of the open pages; each page that loads prunes the same way.
//   fetch     shell files cache-first from the cache of the version the asking page (or worker)
//             runs, so a tab opened on version N keeps getting version N's files after N+1
//             takes over (an engine restarted there loads N's worker and engine, not N+1's)
//             until it reloads; anything else from the network. Which version each client runs
//             is kept in a small cache ('cqa-studio-clients'): a page runs the version that
//             served it, a worker the version of the page that started it.
// Every path is relative to this file's folder (the app's folder and this worker's scope), so the
// site works from a sub-path. Models are read from the cache the engine worker fills after a
// successful load ('cqa-studio-models-v1', lib/model-files.js, which also rechecks them against the
// server); they are not stored twice. Only this origin is ever contacted.
const VERSION = '__SHELL_VERSION__';
// Not built by `./x dist` (the placeholder left as is): no version to pin, so the shell is fetched
// network-first and the cache is only the offline fallback.
const PINNED = !VERSION.startsWith('__');
const SHELL_PREFIX = 'cqa-studio-shell-';
const SHELL_CACHE = `${SHELL_PREFIX}${VERSION}`;
const MODEL_CACHE = 'cqa-studio-models-v1';
const BASE = new URL('./', self.location.href);
// scripts/dist.mjs reads this list (between the brackets) to compute the version: keep one path
// per quoted string. '' is the app's folder itself (the page).
const SHELL = [
  '', 'index.html', 'style.css', 'app.js', 'engine-worker.js', 'data-worker.js', 'favicon.svg',
  'lib/ui.js', 'lib/csv.js', 'lib/engine.js', 'lib/store.js', 'lib/charts.js', 'lib/heatmap.js', 'lib/adapters.js',
  'lib/worker-core.js', 'lib/model-files.js', 'lib/model-loops.js', 'lib/verdict-chart.js', 'lib/test-hooks.js', 'lib/study-file.js',
  'panels/model.js', 'panels/train.js', 'panels/adapters.js', 'panels/compare.js', 'panels/calibrate.js', 'panels/agreement.js', 'panels/raters.js', 'panels/study.js',
  'panels/annotate/index.js', 'panels/annotate/state.js', 'panels/annotate/list.js', 'panels/annotate/editor.js',
  'panels/annotate/coverage.js', 'panels/annotate/import.js', 'panels/annotate/annotators.js',
  'panels/train/settings.js', 'panels/train/locks.js', 'panels/train/view.js', 'panels/train/job.js',
  'lib/training-run.js', 'lib/storage-room.js', 'lib/engine-requests.js', 'lib/gpu-device.js', 'lib/engine-memory.js',
  'lib/adapter-files.js', 'lib/checkpoint-file.js', 'lib/bounded-zip.js', 'lib/engine-choice.js', 'panels/train/checkpoints.js',
  'vendor/uPlot.esm.js', 'vendor/uPlot.min.css', 'vendor/idb.js', 'vendor/fflate.js',
  'pkg/cqa_studio.js', 'pkg/cqa_studio_bg.wasm', 'pkg-threads/cqa_studio.js', 'pkg-threads/cqa_studio_bg.wasm', 'lib/pool-worker.js',
  'data/samples/annotations.jsonl', 'data/samples/annotations-second-annotator.jsonl', 'data/benchmarks/calibration.jsonl',
];
const SHELL_PATHS = new Set(SHELL);
const CLIENTS_CACHE = 'cqa-studio-clients';
const clientVersions = new Map(); // clientId → shell version, as far as this worker has seen

const clientKey = (id) => new URL(`__client/${encodeURIComponent(id)}`, BASE).href;

/** Notes that client `id` runs shell `version` (kept across this worker's restarts). */
async function rememberClient(id, version) {
  if (!id) return;
  clientVersions.set(id, version);
  try { await (await caches.open(CLIENTS_CACHE)).put(clientKey(id), new Response(version)); } catch { /* memory only */ }
}

/** The shell version client `id` runs, or null when unknown. */
async function versionOf(id) {
  if (!id) return null;
  if (clientVersions.has(id)) return clientVersions.get(id);
  const hit = await (await caches.open(CLIENTS_CACHE)).match(clientKey(id));
  const version = hit ? await hit.text() : null;
  if (version) clientVersions.set(id, version);
  return version;
}

const bornKey = (version) => new URL(`__version/${version}`, BASE).href;

/** When `version`'s shell was installed (ms), or 0 when not noted. */
async function bornAt(version) {
  const hit = await (await caches.open(CLIENTS_CACHE)).match(bornKey(version));
  return hit ? Number(await hit.text()) || 0 : 0;
}

/**
 * Deletes the shell caches (and client notes) that no open page or worker uses any more. Only
 * versions installed before this one go: a newer version installed and waiting is not this
 * worker's to delete.
 */
async function pruneVersions() {
  const live = await self.clients.matchAll({ includeUncontrolled: true, type: 'all' });
  const inUse = new Set([VERSION]);
  for (const c of live) {
    const v = await versionOf(c.id);
    if (v) inUse.add(v);
  }
  const mine = await bornAt(VERSION);
  for (const name of await caches.keys()) {
    const version = name.slice(SHELL_PREFIX.length);
    if (!name.startsWith(SHELL_PREFIX) || inUse.has(version) || (await bornAt(version)) > mine) continue;
    await caches.delete(name);
    await (await caches.open(CLIENTS_CACHE)).delete(bornKey(version));
  }
  const liveIds = new Set(live.map((c) => c.id));
  const notes = await caches.open(CLIENTS_CACHE);
  for (const req of await notes.keys()) {
    if (!new URL(req.url).pathname.includes('/__client/')) continue;
    const id = decodeURIComponent(new URL(req.url).pathname.split('/').pop());
    if (!liveIds.has(id)) { await notes.delete(req); clientVersions.delete(id); }
  }
}

/** The first 12 hex digits of the SHA-256 `./x dist` takes of the shell: each path and its bytes. */
async function shellHash(cache) {
  const enc = new TextEncoder();
  const parts = [];
  for (const path of SHELL) {
    const res = await cache.match(new URL(path, BASE).href);
    if (!res) throw new Error(`${path || 'the page'} is missing from the new version's cache`);
    parts.push(enc.encode(`${path}\0`), new Uint8Array(await res.arrayBuffer()), enc.encode('\0'));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('').slice(0, 12);
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    try {
      // All or nothing: addAll() stores no file unless every one of them answered 200.
      await cache.addAll(SHELL.map((path) => new Request(new URL(path, BASE), { cache: 'no-cache' })));
      // The bytes must be the version's own: a file changed on the server since the build (a
      // half-finished deploy, a proxy's error page with status 200) would mix versions.
      if (PINNED) {
        const got = await shellHash(cache);
        if (got !== VERSION) throw new Error(`the files served are not those of version ${VERSION} (their hash is ${got}); the installed version stays`);
      }
      await (await caches.open(CLIENTS_CACHE)).put(bornKey(VERSION), new Response(String(Date.now())));
    } catch (e) {
      await caches.delete(SHELL_CACHE);
      throw e; // the install fails; the active version (if any) keeps serving
    }
    // The first version starts at once; an update waits for the page to ask (see 'message').
    if (!self.registration.active) await self.skipWaiting();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'skip-waiting') self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    await pruneVersions();
    await self.clients.claim();
  })());
});

async function modelFirst(request) {
  // The engine worker bypasses this cache when it re-downloads a model that changed.
  if (request.cache === 'no-store' || request.cache === 'reload') return fetch(request);
  const cache = await caches.open(MODEL_CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  return hit || fetch(request);
}

/** The path of `url` inside the app's folder ('' for the folder itself), or null outside it. */
function appPath(url) {
  return url.origin === BASE.origin && url.pathname.startsWith(BASE.pathname) ? url.pathname.slice(BASE.pathname.length) : null;
}

/** The shell's cache key of a request (a navigation to ./?model=x is the page ''), or null. */
function shellKey(request, path) {
  if (request.mode === 'navigate') return new URL(path === 'index.html' ? 'index.html' : '', BASE).href;
  return SHELL_PATHS.has(path) ? new URL(path, BASE).href : null;
}

/**
 * A shell file from the cache of the version the asking client runs (this version for a page
 * being loaded, and for a client not seen before); a worker being started is noted as running
 * its page's version.
 */
async function shellFirst(event, key) {
  const { request } = event;
  const navigation = request.mode === 'navigate';
  const known = navigation ? null : await versionOf(event.clientId);
  let version = known ?? VERSION;
  if (version !== VERSION && !(await caches.has(SHELL_PREFIX + version))) version = VERSION;
  if (navigation || request.destination === 'worker') await rememberClient(event.resultingClientId, version);
  // A client first seen here (a page loaded before this worker controlled it, on a first visit)
  // runs the version that serves it now.
  if (!navigation && known === null) await rememberClient(event.clientId, version);
  // caches.match with a cache name never creates that cache (caches.open would, empty).
  const hit = await caches.match(key, { cacheName: SHELL_PREFIX + version });
  // Pruned when a page asks for its script: by then the document it replaced (a reload) is gone,
  // which at its navigation request still counts among the clients.
  if (key === new URL('app.js', BASE).href) event.waitUntil(pruneVersions().catch(() => {}));
  return hit || fetch(request);
}

async function networkFirst(request, key) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const res = await fetch(request);
    if (key && res.ok && res.status === 200) await cache.put(key, res.clone()).catch(() => {});
    return res;
  } catch (e) {
    const hit = key ? await cache.match(key) : null;
    if (hit) return hit;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const path = appPath(new URL(request.url));
  if (path === null) return;
  if (request.headers.has('range')) return;
  if (path.startsWith('models/')) { event.respondWith(modelFirst(request)); return; }
  if (request.mode === 'navigate' && path !== '' && path !== 'index.html') {
    // Another page of this site (e.g. the test harness): not part of the shell.
    return;
  }
  const key = shellKey(request, path);
  if (!key) return; // not part of the shell: straight to the network, never cached
  event.respondWith(PINNED ? shellFirst(event, key) : networkFirst(request, key));
});
