// Shared set-up for the browser tests: the built site, dist/, on a plain static server (no
// special routes or headers, like any static host) at a sub-path of a free loopback port, and
// headless Debian Chromium with WebGPU on SwiftShader (a CPU Vulkan driver), recording every
// request. `./x test` builds dist/ first; tests put their own models in dist/models/.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createStaticServer } from './static-server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = path.join(ROOT, 'dist');
/** Where a test puts a model for the site to serve (as `?model=NAME`). */
export const MODELS = path.join(DIST, 'models');
const scratchDirs = [];
process.on('exit', () => scratchDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A fresh temporary directory, removed when the test file's process exits. */
export function scratchDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  scratchDirs.push(dir);
  return dir;
}

/**
 * The first `count` records of tests/fixtures/lora_records.jsonl cut short (a sentence of the
 * work, one reasoning step), as JSONL: about 130 tokens each, for training steps a slow device
 * can take on every run.
 */
export function shortRecords(count) {
  return readFileSync(path.join(ROOT, 'tests/fixtures/lora_records.jsonl'), 'utf8').trim().split('\n').slice(0, count).map((line) => {
    const r = JSON.parse(line);
    return JSON.stringify({ ...r, work: r.work.slice(0, 160), brief: r.brief.slice(0, 80), audience: r.audience.slice(0, 60),
      reasoning: [{ ...r.reasoning[0], text: r.reasoning[0].text.slice(0, 120) }] });
  }).join('\n') + '\n';
}

/** The site's sub-path on the test server: nothing may assume it sits at the root. */
export const BASE = '/some/path/cqa-studio/';
export const CHROMIUM_ARGS = ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader',
  '--use-angle=swiftshader', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-sync'];

/**
 * The app's address `p` with `engine=webgpu` added unless it names an engine: the app would
 * otherwise time WebGPU against the CPU at each load and move to the CPU, which beats SwiftShader.
 * A test of that choice asks for `engine=auto`.
 */
function withEngine(p) {
  if (!(p === '' || p.startsWith('?') || p.startsWith('index.html')) || /[?&]engine=/.test(p)) return p;
  return p.includes('?') ? `${p}&engine=webgpu` : `${p}?engine=webgpu`;
}

/**
 * Serves dist/, opens the app's `page` (relative to the site: '', '?model=x', 'harness.html') in a
 * fresh page, and returns handles plus the requests seen. `server` options go to the static server.
 */
export async function openPage(page = '', { server: serverOptions = {} } = {}) {
  const server = createStaticServer({ root: DIST, base: BASE, ...serverOptions });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const url = (p = '') => `${origin}${BASE}${withEngine(String(p).replace(/^\//, ''))}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const tab = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  const requests = [];
  // On the context, so that requests made by workers and the service worker are seen too.
  tab.context().on('request', (r) => requests.push(r.url()));
  const close = async () => { await browser.close(); server.close(); };
  // Takes the server away (for offline checks): no new connection, and open ones are dropped.
  const stopServer = () => new Promise((r) => { server.close(r); server.closeAllConnections(); });
  return { origin, url, server, browser, page: tab, requests, close, stopServer, goto: () => tab.goto(url(page)) };
}

/**
 * Opens the bare harness page with the wasm package loaded as `window.cqa` and its device
 * initialised (WebGPU when offered, unless `preferGpu` is false); resolves to the session plus
 * the backend name (`webgpu` or `cpu`) and, on the CPU, the engine's reason (e.g. WebGPU's own
 * error).
 */
export async function openEngine({ preferGpu = true } = {}) {
  const session = await openPage('harness.html');
  session.page.on('console', (m) => { if (m.type() === 'error') console.log('[page]', m.text().slice(0, 500)); });
  await session.goto();
  const { backend, reason } = await session.page.evaluate(async (preferGpu) => {
    const m = await import(new URL('pkg/cqa_studio.js', document.baseURI).href);
    // The module's exports: `memory` is the engine's linear memory, which only grows.
    window.cqaWasm = await m.default();
    window.cqa = m;
    return m.initDevice(preferGpu);
  }, preferGpu);
  if (reason) console.log(`engine device: ${backend} (${reason})`);
  return { ...session, backend, reason };
}
