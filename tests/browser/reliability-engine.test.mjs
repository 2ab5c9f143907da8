// Reliability of the engine in the app (headless Chromium, WebGPU via SwiftShader, the tiny
// random model): a lost GPU device and a crashed worker are restarted with the model loaded again
// (from this browser's cache for a model from the user's disk), a hung request is reported by the
// watchdog and the restart button recovers, a model over the memory budget is refused while the
// loaded one stays usable, and the service worker keeps one complete version of the shell: its
// cache is named by the shell's content hash, a new version that cannot be cached whole is not
// installed, nor one whose files are not those it was built from (their hash), and a complete one
// replaces the old after the user reloads; a tab opened on the old version keeps getting the old
// version's files after the new one takes over (its engine, restarted, is the old engine); a
// cached model is rechecked against the server's (HEAD) and downloaded again when it changed.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BASE, CHROMIUM_ARGS, DIST, MODELS, openPage } from './launch.mjs';
import { createStaticServer } from './static-server.mjs';
import { shellPaths, shellVersion } from '../../scripts/dist.mjs';

const CQA = process.env.CQA_BIN;
const TINY = 'test-tiny-random.gguf';
const TINY_PATH = path.join(MODELS, TINY);
const MiB = 1024 * 1024;

function ensureTiny() {
  // Other test files regenerate it too (same seed, same bytes); only make it when missing.
  if (existsSync(TINY_PATH)) return;
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['debug-tiny-gguf', '--out', TINY_PATH, '--seed', '3']);
}

describe('the engine recovers', () => {
  let session, page, origin, requests;
  const pageErrors = [];

  before(async () => {
    ensureTiny();
    session = await openPage(`?model=${TINY}`);
    ({ page, origin, requests } = session);
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => d.accept());
    await session.goto();
  });

  after(async () => {
    await session?.close();
  });

  const ready = (timeout = 240_000) => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout });
  const notice = () => page.textContent('#engine-notice-text');
  const watchRestarts = () => page.evaluate(() => {
    window.restarts = [];
    window.cqaStudio.app.on('engine-restarted', (e) => window.restarts.push(e));
  });
  const restarted = (n, timeout = 240_000) => page.waitForFunction((n) => window.restarts.length >= n, n, { timeout });

  /** Four greedy tokens from the Model panel; resolves to the text. */
  async function generate() {
    await page.click('#tab-model');
    await page.fill('#try-prompt', 'The old lighthouse keeper');
    await page.uncheck('#try-chat');
    await page.fill('#try-temp', '0');
    await page.fill('#try-max', '4');
    await page.evaluate(() => { document.getElementById('try-note').textContent = ''; });
    await page.click('#try-run');
    await page.waitForFunction(() => /tokens in/.test(document.getElementById('try-note').textContent)
      || document.getElementById('try-error').textContent.trim(), null, { timeout: 180_000 });
    assert.equal((await page.textContent('#try-error')).trim(), '');
    assert.match(await page.textContent('#try-note'), /\b4 tokens in/);
    return page.textContent('#try-output');
  }

  let reference; // the greedy continuation before anything went wrong

  test('loads the tiny model and generates', { timeout: 300_000 }, async () => {
    await ready();
    assert.match(await page.textContent('#badge-backend'), /WebGPU/);
    reference = await generate();
    assert.ok(reference.length > 0);
    await watchRestarts();
  });

  test('a lost GPU device: pending requests fail with code lost, the engine restarts and loads the model again', { timeout: 300_000 }, async () => {
    const t0 = Date.now();
    // A request in flight when the device goes: it must be rejected, not left waiting.
    await page.evaluate(() => { window.hung = window.cqaStudio.request('simulate-hang'); });
    const r = await page.evaluate(() => window.cqaStudio.request('simulate-device-loss'));
    assert.deepEqual(r, { ok: true, result: { destroyed: true } });
    const pending = await page.evaluate(() => window.hung);
    assert.equal(pending.ok, false);
    assert.equal(pending.code, 'lost');
    assert.match(pending.message, /GPU device was lost/);
    await restarted(1);
    console.log(`device loss → engine restarted with the model in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.deepEqual(await page.evaluate(() => window.restarts), [{ reason: 'device-lost', replacedGeneration: 1 }]);
    assert.match(await notice(), /^The GPU device was lost, so the engine restarted on WebGPU and loaded .+ again\.$/);
    await ready();
    const s = await page.evaluate(() => ({ backend: window.cqaStudio.app.state.backend, info: Boolean(window.cqaStudio.app.state.info), reloads: window.cqaStudio.reloads() }));
    assert.equal(s.backend, 'webgpu');
    assert.ok(s.info);
    // (From the cache, unless the file on the server changed meanwhile: other tests rewrite it.)
    assert.equal(s.reloads.last.source, 'url');
    assert.equal(s.reloads.last.name, TINY);
    // The same model again: the same greedy continuation.
    assert.equal(await generate(), reference);
  });

  test('a crashed engine worker is restarted and reloads a model opened from the disk (from the cache)', { timeout: 400_000 }, async () => {
    await page.click('#tab-model');
    await page.setInputFiles('#model-files', { name: 'disk-tiny.gguf', mimeType: 'application/octet-stream', buffer: readFileSync(TINY_PATH) });
    await page.waitForFunction(() => /Loaded from your file/.test(document.getElementById('model-status').textContent), null, { timeout: 240_000 });
    await ready();
    const next = await page.evaluate(() => window.cqaStudio.reloads().next);
    assert.deepEqual(next.payload, { source: 'local', name: 'disk-tiny.gguf' });
    assert.deepEqual(next.fallback, { file: 'disk-tiny.gguf' });
    const before = requests.length;
    const r = await page.evaluate(() => window.cqaStudio.request('simulate-crash'));
    assert.deepEqual(r, { ok: true, result: { scheduled: true } });
    await restarted(2);
    assert.deepEqual(await page.evaluate(() => window.restarts[1]), { reason: 'crashed', replacedGeneration: 2 });
    assert.match(await notice(), /^The engine stopped unexpectedly, so the engine restarted on WebGPU and loaded .+ again\.$/);
    await ready();
    assert.deepEqual(await page.evaluate(() => window.cqaStudio.reloads().last), { source: 'local', name: 'disk-tiny.gguf', fromCache: true });
    // Read back from Cache Storage: no model was fetched from the server.
    assert.deepEqual(requests.slice(before).filter((u) => u.includes('/models/') || u.includes('/local-models/')), []);
    assert.equal(await generate(), reference);
  });

  test('a crashed data worker is restarted and answers the next request', { timeout: 120_000 }, async () => {
    assert.deepEqual(await page.evaluate(() => window.cqaStudio.dataRequest('verdictScore', { text: 'Verdict: 7/10' })), { ok: true, result: 7 });
    assert.deepEqual(await page.evaluate(() => window.cqaStudio.dataRequest('simulate-crash')), { ok: true, result: { scheduled: true } });
    await page.waitForFunction(() => /data worker stopped unexpectedly and was restarted/.test(document.getElementById('engine-notice-text').textContent), null, { timeout: 60_000 });
    assert.deepEqual(await page.evaluate(() => window.cqaStudio.dataRequest('verdictScore', { text: 'Verdict: 3/10' })), { ok: true, result: 3 });
    assert.equal(await page.evaluate(() => window.cqaStudio.app.state.dead), null);
  });

  test('a model over the memory budget is refused with its need and the limit; the loaded model stays usable', { timeout: 300_000 }, async () => {
    const weights = await page.evaluate(() => window.cqaStudio.app.state.info.weight_bytes_f32);
    const loaded = await page.evaluate(() => window.cqaStudio.app.state.modelName);
    await page.evaluate(() => window.cqaStudio.setMemoryBudget(1));
    try {
      await page.click('#tab-model');
      await page.setInputFiles('#model-files', { name: 'over-budget.gguf', mimeType: 'application/octet-stream', buffer: readFileSync(TINY_PATH) });
      await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 120_000 });
    } finally {
      await page.evaluate(() => window.cqaStudio.setMemoryBudget(null));
    }
    const error = await page.textContent('#model-error');
    const need = `${(weights / MiB).toFixed(1)} MiB`;
    assert.equal(error, `Could not load “over-budget.gguf”: This model needs about ${need} of GPU memory for its weights (held as f32), more than the 1.0 MiB memory budget for WebGPU (the budget set for this session). The previous model (${loaded}) is still loaded.`);
    await ready();
    assert.equal(await page.evaluate(() => window.cqaStudio.app.state.modelName), loaded);
    assert.equal(await generate(), reference);
  });

  test('a hung request is reported by the watchdog and the restart button recovers', { timeout: 400_000 }, async () => {
    // Reload with a 5 s watchdog (the model comes back from this browser's cache).
    await page.goto(session.url(`?model=${TINY}&watchdog=5`));
    await ready();
    await watchRestarts();
    const t0 = Date.now();
    await page.evaluate(() => { window.hung = window.cqaStudio.request('simulate-hang'); });
    await page.waitForFunction(() => /has not answered/.test(document.getElementById('engine-notice-text').textContent), null, { timeout: 15_000 });
    const seconds = (Date.now() - t0) / 1000;
    console.log(`hang reported after ${seconds.toFixed(1)} s`);
    assert.ok(seconds >= 4.5 && seconds <= 10, `reported after ${seconds} s`);
    assert.match(await notice(), /^The engine has not answered for 5 s \(simulate-hang\); it may be stuck/);
    assert.equal(await page.isVisible('#engine-restart'), true);
    assert.equal(await page.isVisible('#engine-wait'), true);
    await page.click('#engine-restart');
    const pending = await page.evaluate(() => window.hung);
    assert.equal(pending.ok, false);
    assert.equal(pending.code, 'lost');
    await restarted(1);
    assert.deepEqual(await page.evaluate(() => window.restarts), [{ reason: 'hung', replacedGeneration: 1 }]);
    assert.match(await notice(), /^The engine stopped answering, so the engine restarted on WebGPU and loaded .+ again\.$/);
    assert.equal(await page.isVisible('#engine-restart'), false);
    await ready();
    assert.equal(await generate(), reference);
  });

  test('restarts are limited: a fourth crash within a minute marks the engine unavailable', { timeout: 400_000 }, async () => {
    await page.reload();
    await ready();
    await watchRestarts();
    for (let n = 1; n <= 3; n++) {
      assert.deepEqual(await page.evaluate(() => window.cqaStudio.request('simulate-crash')), { ok: true, result: { scheduled: true } });
      await restarted(n);
      await ready();
    }
    assert.deepEqual(await page.evaluate(() => window.cqaStudio.request('simulate-crash')), { ok: true, result: { scheduled: true } });
    await page.waitForFunction(() => document.getElementById('badge-model').textContent === 'engine unavailable', null, { timeout: 60_000 });
    assert.equal(await page.evaluate(() => window.restarts.length), 3);
    assert.match(await page.textContent('#model-error'), /^The engine stopped unexpectedly, and it has been restarted too often \(3 times within a minute\); reload the page to try again\.$/);
    assert.match(await notice(), /too often to restart the engine; reload the page/);
    const after = await page.evaluate(() => window.cqaStudio.request('generate', { prompt: 'x', chat: false, params: {} }));
    assert.equal(after.ok, false);
    assert.equal(after.code, 'failed');
  });

  test('no request left the origin and the page threw nothing', () => {
    assert.deepEqual(requests.filter((u) => !u.startsWith(origin)), []);
    assert.deepEqual(pageErrors, []);
  });
});

describe('the service worker keeps one complete version', () => {
  let server, browser, page, origin;
  // A new version of the site is staged the way a deploy makes one: a shell file changed and
  // dist/sw.js rewritten with the new files' version (all restored afterwards).
  const SW = path.join(DIST, 'sw.js');
  const builtSw = readFileSync(SW, 'utf8');
  const builtVersion = /const VERSION = '([0-9a-f]{12})';/.exec(builtSw)?.[1];
  let version = builtVersion;
  const setVersion = (v) => { version = v; writeFileSync(SW, builtSw.replace(`'${builtVersion}'`, `'${v}'`)); };
  const originals = new Map(); // file → its bytes as built
  /** Appends `text` to the shell file `rel` and stages the version of the files as they are now. */
  const stageVersion = (rel, text) => {
    const file = path.join(DIST, rel);
    if (!originals.has(file)) originals.set(file, readFileSync(file));
    writeFileSync(file, Buffer.concat([readFileSync(file), Buffer.from(text)]));
    setVersion(shellVersion(DIST, builtSw));
    return version;
  };
  let broken = null; // a shell path the server answers 404 for
  let modelEtag = null; // an ETag the server gives its models instead of theirs
  let cutModel = false; // the server sends the first 100 kB of a model (with their length) when set
  const seen = []; // [method, path] of the requests that reached the server
  const at = (p) => `${origin}${BASE}${p}`;

  before(async () => {
    ensureTiny();
    server = createStaticServer({ root: DIST, base: BASE });
    const serve = server.listeners('request')[0];
    server.removeAllListeners('request');
    server.on('request', (req, res) => {
      seen.push([req.method, req.url]);
      if (broken && req.url === `${BASE}${broken}`) { res.statusCode = 404; res.end('gone'); return; }
      if (modelEtag && req.url.startsWith(`${BASE}models/`)) {
        const set = res.setHeader.bind(res);
        res.setHeader = (k, v) => set(k, k === 'ETag' ? modelEtag : v);
      }
      if (cutModel && req.method === 'GET' && req.url.startsWith(`${BASE}models/`)) {
        const body = readFileSync(path.join(DIST, decodeURIComponent(req.url.slice(BASE.length)))).subarray(0, 100_000);
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length, ETag: modelEtag ?? '"cut"' });
        res.end(body);
        return;
      }
      serve(req, res);
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    origin = `http://127.0.0.1:${server.address().port}`;
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', args: CHROMIUM_ARGS });
    // A context of its own, so that a second tab of the same profile can be opened in it.
    page = await (await browser.newContext()).newPage();
    page.on('dialog', (d) => d.accept());
    await page.goto(at(`?model=${TINY}`));
  });

  after(async () => {
    writeFileSync(SW, builtSw);
    for (const [file, bytes] of originals) writeFileSync(file, bytes);
    await browser?.close();
    server?.close();
  });

  /** The shell caches and, for each, the set of paths it holds. */
  const shellCaches = () => page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      if (!name.startsWith('cqa-studio-shell-')) continue;
      const keys = await (await caches.open(name)).keys();
      out[name] = keys.map((r) => new URL(r.url).pathname).sort();
    }
    return out;
  });
  const expected = [...new Set(shellPaths(builtSw))].map((p) => `${BASE}${p}`).sort();

  /**
   * Waits until no service worker is installing (for 2 s in a row): besides the checks a test
   * asks for, the browser checks for a new sw.js by itself after each navigation.
   */
  const settle = () => page.evaluate(async () => {
    const reg = await navigator.serviceWorker.getRegistration();
    for (let quiet = 0; quiet < 20;) {
      await new Promise((r) => setTimeout(r, 100));
      quiet = reg.installing ? 0 : quiet + 1;
    }
  });

  /** Polls `check` (async) until it holds: waitForFunction does not wait for a promise's value. */
  const until = async (check, timeout = 60_000) => {
    const end = Date.now() + timeout;
    while (!(await check())) {
      if (Date.now() > end) assert.fail(`timed out: ${check}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  /** Asks the browser to check for a new sw.js; resolves to whether a new version now waits. */
  const update = async () => {
    await page.waitForTimeout(3000); // the check the last navigation scheduled
    await settle();
    await page.evaluate(async () => { await (await navigator.serviceWorker.getRegistration()).update().catch(() => {}); });
    await settle();
    return page.evaluate(async () => (await navigator.serviceWorker.getRegistration()).waiting !== null);
  };

  test('the first version is cached whole under its content hash', { timeout: 240_000 }, async () => {
    assert.match(version, /^[0-9a-f]{12}$/);
    const served = await (await fetch(at('sw.js'))).text();
    assert.ok(served.includes(`const VERSION = '${version}';`));
    assert.ok(!served.includes('__SHELL_VERSION__'));
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 180_000 });
    assert.deepEqual(await shellCaches(), { [`cqa-studio-shell-${version}`]: expected });
    // The model loads too (and is kept in the model cache, which no version change touches).
    await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 180_000 });
  });

  test('a cached model is rechecked against the server and refreshed when it changed', { timeout: 400_000 }, async () => {
    const url = `${BASE}models/${TINY}`;
    const cachedEtag = () => page.evaluate(async (url) => (await (await caches.open('cqa-studio-models-v1')).match(url))?.headers.get('ETag') ?? null, url);
    const modelRequests = (from) => seen.slice(from).filter(([, u]) => u === url).map(([m]) => m);
    const reload = async () => {
      await page.reload();
      await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
      return page.textContent('#model-status');
    };
    const first = await cachedEtag();
    assert.match(first, /^"[0-9a-f]+-[0-9a-f]+"$/);
    // Unchanged on the server: one HEAD, and the model comes from the cache.
    let from = seen.length;
    assert.equal(await reload(), `Loaded ${TINY} from this browser’s cache`);
    assert.deepEqual(modelRequests(from), ['HEAD']);
    // Changed on the server (another ETag): downloaded again, and the cache entry replaced.
    modelEtag = 'W/"a-new-version"';
    try {
      from = seen.length;
      assert.equal(await reload(), `Loaded ${TINY} (kept in this browser for next time)`);
      assert.deepEqual(modelRequests(from), ['HEAD', 'GET']);
      assert.equal(await cachedEtag(), 'W/"a-new-version"');
      from = seen.length;
      assert.equal(await reload(), `Loaded ${TINY} from this browser’s cache`);
      assert.deepEqual(modelRequests(from), ['HEAD']);
    } finally {
      modelEtag = null;
    }
  });

  test('a changed model whose download does not load leaves the cached copy as it was, and nothing half-stored', { timeout: 400_000 }, async () => {
    const url = `${BASE}models/${TINY}`;
    const modelCache = () => page.evaluate(async () => {
      const cache = await caches.open('cqa-studio-models-v1');
      return Promise.all((await cache.keys()).map(async (r) => [new URL(r.url).pathname, (await cache.match(r)).headers.get('ETag')]));
    });
    const before = await modelCache();
    assert.deepEqual(before.map(([p]) => p), [url]);
    modelEtag = 'W/"a-broken-version"';
    cutModel = true;
    try {
      await page.reload();
      await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 240_000 });
      assert.match(await page.textContent('#model-error'), new RegExp(`^Could not load “${TINY.replace(/\./g, '\\.')}”: .*truncated`));
      // The copy that loaded before is still the cached one; the failed download left no entry.
      assert.deepEqual(await modelCache(), before);
      // The server back at the cached version: the cached copy loads, nothing downloaded.
      cutModel = false;
      modelEtag = before[0][1];
      await page.reload();
      await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
      assert.equal(await page.textContent('#model-status'), `Loaded ${TINY} from this browser’s cache`);
    } finally {
      modelEtag = null;
      cutModel = false;
    }
  });

  test('a new version with a file missing does not install; the old one keeps serving', { timeout: 240_000 }, async () => {
    const old = version;
    await page.waitForTimeout(3000);
    await settle();
    setVersion('bad0bad0bad0');
    broken = 'lib/charts.js';
    assert.equal(await update(), false);
    assert.deepEqual(await shellCaches(), { [`cqa-studio-shell-${old}`]: expected });
    // The page is still served, whole, by the old version: the missing file comes from its cache.
    await page.reload();
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    assert.equal(await page.evaluate(async () => (await fetch('lib/charts.js')).status), 200);
    assert.equal(await page.evaluate(() => document.querySelectorAll('[role="tab"]').length), 5);
    assert.equal(await page.textContent('#update-text'), '');
    setVersion(old);
  });

  test('a new version whose files are not those it was built from does not install', { timeout: 240_000 }, async () => {
    const old = version;
    await page.waitForTimeout(3000);
    await settle();
    broken = null;
    setVersion('0123456789ab'); // the files are unchanged: their hash is not this version's
    assert.equal(await update(), false);
    assert.deepEqual(await shellCaches(), { [`cqa-studio-shell-${old}`]: expected });
    setVersion(old);
  });

  test('a tab opened on the old version keeps its files after a new version takes over: its restarted engine is the old one', { timeout: 400_000 }, async () => {
    const old = version;
    await page.waitForTimeout(3000);
    await settle();
    broken = null;
    // Version N+1's worker modules mark the worker (a module the engine worker imports, so that a
    // worker script of N importing N+1's modules would show too).
    const next = stageVersion('lib/worker-core.js', '\nself.cqaStagedVersion = true;\n');
    assert.equal(await update(), true);
    // Another tab takes the new version (as its Reload button does); this one stays on N.
    const other = await page.context().newPage();
    await other.goto(at(`?model=${TINY}`));
    await other.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
    await other.evaluate(async () => { (await navigator.serviceWorker.getRegistration()).waiting?.postMessage({ type: 'skip-waiting' }); });
    await until(() => page.evaluate(async (next) => {
      const reg = await navigator.serviceWorker.getRegistration();
      return Boolean(reg.active && !reg.waiting && (await caches.keys()).includes(`cqa-studio-shell-${next}`) && navigator.serviceWorker.controller?.state === 'activated');
    }, next));
    await other.close();
    const caches = await shellCaches();
    assert.ok(caches[`cqa-studio-shell-${old}`], `version ${old}'s cache is kept while this tab runs it: ${Object.keys(caches).join(', ')}`);
    // The engine restarts (as after a lost device): the worker this tab starts is version N's.
    const started = page.waitForEvent('worker', { predicate: (w) => w.url().endsWith('/engine-worker.js'), timeout: 60_000 });
    await page.evaluate(() => window.cqaStudio.app.restartEngine());
    const worker = await started;
    assert.equal(await worker.evaluate(() => self.cqaStagedVersion === true), false, 'the restarted engine runs the new version’s worker');
    await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
    // A reload takes the new version, and the old cache goes once nothing runs it.
    await page.reload();
    await until(async () => !(await page.evaluate(() => caches.keys())).includes(`cqa-studio-shell-${old}`));
    await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
  });

  test('a complete new version waits, is offered, and replaces the old one on reload', { timeout: 300_000 }, async () => {
    const old = version;
    await page.waitForTimeout(3000);
    await settle();
    stageVersion('style.css', '\n/* a new version */\n');
    broken = null;
    assert.equal(await update(), true);
    // Two complete versions side by side until the user reloads.
    assert.deepEqual(await shellCaches(), { [`cqa-studio-shell-${old}`]: expected, [`cqa-studio-shell-${version}`]: expected });
    await page.waitForFunction(() => document.getElementById('update-text').textContent.length > 0, null, { timeout: 30_000 });
    assert.equal(await page.textContent('#update-text'), 'A new version of cqa-studio is ready.');
    await Promise.all([page.waitForEvent('load', { timeout: 60_000 }), page.click('#update-reload')]);
    await until(async () => (await page.evaluate(() => caches.keys())).filter((k) => k.startsWith('cqa-studio-shell-')).length === 1);
    assert.deepEqual(await shellCaches(), { [`cqa-studio-shell-${version}`]: expected });
    const cacheNames = await page.evaluate(() => caches.keys());
    assert.ok(cacheNames.includes('cqa-studio-models-v1'), cacheNames.join(', '));
    // Offline, the new version serves the whole shell.
    await new Promise((r) => { server.close(r); server.closeAllConnections(); });
    await page.reload();
    assert.equal(await page.evaluate(() => document.querySelectorAll('[role="tab"]').length), 5);
    assert.equal(await page.evaluate(async () => (await fetch('lib/engine.js')).status), 200);
  });
});
