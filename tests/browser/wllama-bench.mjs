// Greedy decode speed of llama.cpp-in-wasm (@wllama/wllama) in headless Chromium, on a given
// GGUF, so our engine can be compared against it in the same browser and on the same model.
//
//   node tests/browser/wllama-bench.mjs [--model PATH] [--tokens N] [--threads 1,2] [--pkg DIR]
//
// --pkg is the package's directory under tests/browser/node_modules: '@wllama/wllama' (the
// default, 3.13.0) or an npm alias of another release, e.g. 'wllama-3.8' (@wllama/wllama 3.8.1,
// the version the issue's reference figures were measured with).
//
// Prints one JSON line per thread count. Everything is served from 127.0.0.1; nothing else is
// reachable from the page.
import { createReadStream, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './launch.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../..');
const DEFAULT_PKG = '@wllama/wllama';
const DEFAULT_MODEL = path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
const TIMED_RUNS = 3;

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.map': 'application/json' };
// COOP + COEP make the page crossOriginIsolated, which SharedArrayBuffer (and so wllama's
// pthreads) needs; CORP keeps our own sub-resources loadable under COEP.
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store' };
const PAGE = '<!doctype html><meta charset="utf-8"><title>wllama bench</title><body>wllama bench</body>';

// Where a wllama package keeps its files. 3.8.1 and 3.13.0 lay them out the same way (esm/index.js
// plus one esm/wasm/wllama.wasm that serves both single- and multi-thread, picked at run time,
// and the same Wllama / createCompletion API as far as this bench uses it). A package without that
// layout (older releases may split the wasm into esm/single-thread/ and esm/multi-thread/ and have a
// different completion API) is refused rather than guessed at.
function wllamaPackage(pkg) {
  const dir = path.join(HERE, 'node_modules', pkg);
  let meta;
  try { meta = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')); } catch {
    throw new Error(`no wllama package at ${dir} (npm install in tests/browser?)`);
  }
  if (meta.name !== '@wllama/wllama') throw new Error(`${dir} holds ${meta.name}, not @wllama/wllama`);
  const has = (rel) => { try { return statSync(path.join(dir, rel)).isFile(); } catch { return false; } };
  if (!has('esm/index.js') || !has('esm/wasm/wllama.wasm')) {
    throw new Error(`@wllama/wllama ${meta.version} at ${dir}: no esm/index.js + esm/wasm/wllama.wasm` +
      `${has('esm/single-thread/wllama.wasm') ? ' (the split single-/multi-thread layout, not supported by this bench)' : ''}`);
  }
  return { dir, version: meta.version, entry: '/wllama/esm/index.js', pathConfig: { default: '/wllama/esm/wasm/wllama.wasm' } };
}

function startServer(modelPath, wllamaDir) {
  const modelSize = statSync(modelPath).size;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const send = (status, headers, body) => { res.writeHead(status, { ...ISOLATION, ...headers }); res.end(req.method === 'HEAD' ? undefined : body); };
    if (url.pathname === '/') return send(200, { 'Content-Type': 'text/html; charset=utf-8' }, PAGE);
    if (url.pathname === '/model.gguf') {
      res.writeHead(200, { ...ISOLATION, 'Content-Type': 'application/octet-stream', 'Content-Length': modelSize });
      if (req.method === 'HEAD') return res.end();
      return createReadStream(modelPath).on('error', () => res.destroy()).pipe(res);
    }
    if (url.pathname.startsWith('/wllama/')) {
      const file = path.join(wllamaDir, path.normalize(decodeURIComponent(url.pathname.slice('/wllama/'.length))));
      let size = -1;
      try { if (file.startsWith(wllamaDir + path.sep)) size = statSync(file).isFile() ? statSync(file).size : -1; } catch { /* missing */ }
      if (size >= 0) {
        res.writeHead(200, { ...ISOLATION, 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Content-Length': size });
        if (req.method === 'HEAD') return res.end();
        return createReadStream(file).pipe(res);
      }
    }
    send(404, { 'Content-Type': 'text/plain' }, 'not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// Runs in the page: loads wllama and the model, then one warm-up and `runs` timed generations.
async function inPage({ threads, tokens, prompt, runs, entry, pathConfig }) {
  const { Wllama } = await import(entry);
  const logs = [];
  const keep = (...a) => logs.push(a.map(String).join(' '));
  const logger = { debug: keep, log: keep, warn: keep, error: keep };
  const wllama = new Wllama(pathConfig, { logger });
  // Compat mode would fetch a slower build from a CDN; Chromium has JSPI and memory64 anyway.
  // (3.8.1 and 3.13.0 both have it; guarded in case a release does not.)
  if (typeof wllama.setCompat === 'function') wllama.setCompat(null);
  const t0 = performance.now();
  // n_gpu_layers 0: a CPU-to-CPU comparison (WebGPU here is SwiftShader, itself on the CPU).
  await wllama.loadModelFromUrl(new URL('/model.gguf', location.href).href,
    { n_threads: threads, n_ctx: 512, n_gpu_layers: 0, useCache: false });
  const loadMs = performance.now() - t0;

  const generate = async () => {
    const stamps = []; // [tokens generated so far, time], one per streamed chunk
    let finish = null;
    let timings = null;
    let text = '';
    const start = performance.now();
    await wllama.createCompletion({
      prompt, max_tokens: tokens, stream: true,
      temperature: 0, top_k: 1, ignore_eos: true,
      // Without these every timed run after the first would reuse the prompt's KV cache.
      cache_prompt: false, timings_per_token: true,
      onData: (chunk) => {
        const now = performance.now();
        if (chunk.timings) timings = chunk.timings;
        finish = chunk.choices?.[0]?.finish_reason ?? finish;
        text += chunk.choices?.[0]?.text ?? '';
        const n = chunk.timings?.predicted_n ?? stamps.length + 1;
        if (!stamps.length || n > stamps.at(-1)[0]) stamps.push([n, now]);
      },
    });
    const [nFirst, tFirst] = stamps[0];
    const [nLast, tLast] = stamps.at(-1);
    return { generated: nLast, chunks: stamps.length, finish, text, promptMs: tFirst - start,
      decodeTokensPerSecond: (nLast - nFirst) / ((tLast - tFirst) / 1000),
      engineDecodeTokensPerSecond: timings?.predicted_per_second ?? null, enginePromptMs: timings?.prompt_ms ?? null };
  };

  await generate(); // warm-up
  const timed = [];
  for (let i = 0; i < runs; i++) timed.push(await generate());
  const info = { multithread: wllama.isMultithread(), numThreads: wllama.getNumThreads(),
    llamaCpp: typeof Wllama.getLibllamaVersion === 'function' ? Wllama.getLibllamaVersion() : null,
    crossOriginIsolated: self.crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency,
    nativeThreadLog: logs.filter((l) => /n_threads|Multithread enabled/.test(l)).map((l) => l.trim()).slice(0, 4) };
  await wllama.exit();
  return { loadMs, timed, info };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const round = (x, d = 2) => (x == null ? x : Math.round(x * 10 ** d) / 10 ** d);

export async function benchWllama({ browser, modelPath = DEFAULT_MODEL, threads, tokens = 64, prompt = 'The old lighthouse keeper', pkg = DEFAULT_PKG }) {
  const wllama = wllamaPackage(pkg);
  const server = await startServer(modelPath, wllama.dir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  let context;
  try {
    context = await browser.newContext();
    // Anything off our server is refused, so a stray CDN fetch fails loudly instead of working.
    const blocked = [];
    await context.route((url) => !url.href.startsWith(origin + '/'), (route) => { blocked.push(route.request().url()); return route.abort(); });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(origin + '/');
    const { loadMs, timed, info } = await page.evaluate(inPage, { threads, tokens, prompt, runs: TIMED_RUNS, entry: wllama.entry, pathConfig: wllama.pathConfig })
      .catch((e) => { throw new Error(`${e.message}${pageErrors.length ? `\npage errors: ${pageErrors.join('\n')}` : ''}`); });
    if (blocked.length) throw new Error(`page tried to leave 127.0.0.1: ${blocked.join(', ')}`);
    return {
      engine: 'wllama', version: wllama.version, pkg, llamaCpp: info.llamaCpp, threads,
      threadsUsed: info.numThreads, multithreadBuild: info.multithread, crossOriginIsolated: info.crossOriginIsolated,
      tokens: Math.min(...timed.map((r) => r.generated)), finishReason: timed[0].finish,
      decodeTokensPerSecond: round(median(timed.map((r) => r.decodeTokensPerSecond))),
      engineDecodeTokensPerSecond: round(median(timed.map((r) => r.engineDecodeTokensPerSecond))),
      runsTokensPerSecond: timed.map((r) => round(r.decodeTokensPerSecond)),
      promptMs: round(median(timed.map((r) => r.promptMs)), 1), loadMs: round(loadMs, 1),
      nativeThreadLog: info.nativeThreadLog,
      // Greedy output, for checking our engine's text against; every run should agree.
      text: timed[0].text, sameTextEveryRun: timed.every((r) => r.text === timed[0].text),
      chunksPerRun: timed.map((r) => r.chunks),
    };
  } finally {
    await context?.close().catch(() => {});
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}

async function main(argv) {
  const opt = (name, fallback) => { const i = argv.indexOf(`--${name}`); return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback; };
  const modelPath = path.resolve(opt('model', DEFAULT_MODEL));
  const tokens = Number(opt('tokens', 64));
  const threadList = opt('threads', '1,2').split(',').map(Number).filter((n) => n > 0);
  const pkg = opt('pkg', DEFAULT_PKG);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', args: CHROMIUM_ARGS });
  try {
    for (const threads of threadList) {
      console.log(JSON.stringify(await benchWllama({ browser, modelPath, threads, tokens, pkg })));
    }
  } finally {
    await browser.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((e) => { console.error(e); process.exit(1); });
}
