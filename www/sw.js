// Service worker: keeps the app usable offline after the first visit. The app shell, the
// engine (/pkg/), the libraries (/vendor/) and the bundled data are cached when it installs and
// refreshed from the network whenever the network answers (so an update is never hidden by the
// cache). Models are read from the cache the engine worker fills after a successful load
// ('cqa-studio-models-v1'); they are not stored twice. Only this origin is ever contacted.
const SHELL_CACHE = 'cqa-studio-shell-v2';
const MODEL_CACHE = 'cqa-studio-models-v1';
const SHELL = [
  '/', '/index.html', '/style.css', '/app.js', '/engine-worker.js', '/data-worker.js', '/favicon.svg',
  '/lib/ui.js', '/lib/csv.js', '/lib/engine.js', '/lib/store.js', '/lib/charts.js', '/lib/heatmap.js', '/lib/adapters.js',
  '/lib/worker-core.js', '/lib/model-files.js', '/lib/model-loops.js', '/lib/verdict-chart.js',
  '/panels/model.js', '/panels/train.js', '/panels/adapters.js', '/panels/compare.js', '/panels/calibrate.js', '/panels/agreement.js',
  '/panels/annotate/index.js', '/panels/annotate/state.js', '/panels/annotate/list.js', '/panels/annotate/editor.js',
  '/panels/annotate/coverage.js', '/panels/annotate/import.js',
  '/vendor/uPlot.esm.js', '/vendor/uPlot.min.css', '/vendor/idb.js', '/vendor/fflate.js',
  '/pkg/cqa_studio.js', '/pkg/cqa_studio_bg.wasm',
  '/data/samples/annotations.jsonl', '/data/benchmarks/calibration.jsonl',
];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    // One by one, so a missing optional file does not stop the rest from being cached.
    await Promise.all(SHELL.map((url) => cache.add(url).catch(() => {})));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith('cqa-studio-shell-') && name !== SHELL_CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

async function modelFirst(request) {
  const cache = await caches.open(MODEL_CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  return hit || fetch(request);
}

async function networkFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const res = await fetch(request);
    if (res.ok && res.status === 200) {
      // Store only what changed (the server's ETag says), so the 40 MB engine is not rewritten
      // on every visit.
      const old = await cache.match(request, { ignoreSearch: true });
      if (!old || old.headers.get('ETag') !== res.headers.get('ETag')) {
        const key = request.mode === 'navigate' ? new URL(request.url).pathname : request;
        await cache.put(key, res.clone()).catch(() => {});
      }
    }
    return res;
  } catch (e) {
    const hit = await cache.match(request, { ignoreSearch: true })
      || (request.mode === 'navigate' ? await cache.match('/index.html') : null);
    if (hit) return hit;
    throw e;
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.headers.has('range')) return;
  if (url.pathname.startsWith('/models/')) { event.respondWith(modelFirst(request)); return; }
  event.respondWith(networkFirst(request));
});
