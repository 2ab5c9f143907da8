// Service worker: keeps the app usable offline after the first visit, one version at a time.
//
// The shell (the page, its scripts and styles, the engine under pkg/, the libraries under vendor/,
// the bundled data) is cached whole under a name that carries its version: `./x dist` hashes the
// shell's files and writes that hash in place of the placeholder below, so any change to the
// shell changes this file and the browser installs it anew.
//   install   cache.addAll() of the whole shell into the new version's cache: if one file fails
//             the install fails, the half-filled cache is deleted, and the old version keeps
//             serving (never a partial cache). The first version activates at once; a later one
//             waits until the page asks for it ({type: 'skip-waiting'}: the user chose to reload).
//   activate  deletes every other version's shell cache (the model cache stays) and takes
//             control of the open pages.
//   fetch     shell files cache-first from this version's cache only, so a page (online or off)
//             never mixes files of two versions; anything else from the network.
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
  'lib/worker-core.js', 'lib/model-files.js', 'lib/model-loops.js', 'lib/verdict-chart.js', 'lib/study-file.js',
  'panels/model.js', 'panels/train.js', 'panels/adapters.js', 'panels/compare.js', 'panels/calibrate.js', 'panels/agreement.js', 'panels/raters.js', 'panels/study.js',
  'panels/annotate/index.js', 'panels/annotate/state.js', 'panels/annotate/list.js', 'panels/annotate/editor.js',
  'panels/annotate/coverage.js', 'panels/annotate/import.js', 'panels/annotate/annotators.js',
  'vendor/uPlot.esm.js', 'vendor/uPlot.min.css', 'vendor/idb.js', 'vendor/fflate.js',
  'pkg/cqa_studio.js', 'pkg/cqa_studio_bg.wasm', 'pkg-threads/cqa_studio.js', 'pkg-threads/cqa_studio_bg.wasm', 'lib/pool-worker.js',
  'data/samples/annotations.jsonl', 'data/samples/annotations-second-annotator.jsonl', 'data/benchmarks/calibration.jsonl',
];
const SHELL_PATHS = new Set(SHELL);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    try {
      // All or nothing: addAll() stores no file unless every one of them answered 200.
      await cache.addAll(SHELL.map((path) => new Request(new URL(path, BASE), { cache: 'no-cache' })));
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
    for (const name of await caches.keys()) {
      if (name.startsWith(SHELL_PREFIX) && name !== SHELL_CACHE) await caches.delete(name);
    }
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

async function shellFirst(request, key) {
  const cache = await caches.open(SHELL_CACHE);
  const hit = await cache.match(key);
  if (hit) return hit;
  return fetch(request);
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
  event.respondWith(PINNED ? shellFirst(request, key) : networkFirst(request, key));
});
