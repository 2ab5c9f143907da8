// Peak memory of opening a model in the browser: the page's process (the renderer, where the
// engine's wasm memory and every JavaScript array live) and the GPU process, with the file read
// three ways, on the CPU path and on WebGPU, each in a fresh browser:
//   whole     the whole file into one JavaScript array, then copied into the engine (how a GGUF
//             file was first read), on the bare harness page;
//   streamed  streamed piece by piece into the engine's memory through one reused buffer
//             (`ModelUpload`, lib/model-files.js: how a download the cache will not take is read),
//             on the harness page;
//   slices    the app itself (`?model=`): its engine worker downloads the file into Cache Storage
//             and the engine reads the slices it needs from there, a tensor at a time
//             (`WebModel.loadRanged`), the header and its SHA-256 first. Its engine memory comes
//             from the worker ('gpu-stats').
//
//   node tests/browser/bench-memory.mjs [--models a.gguf,b.gguf]   (./x dist first)
//
// Models default to the default model and the Qwen2.5-1.5B-shaped Q4_K_M (made by
// scripts/shaped_gguf.py into dist/models/ when missing). Peak RSS is the kernel's high-water mark
// (VmHWM) of each Chromium process, read from /proc; the wasm figure is the engine's linear
// memory after the load, which only grows, so it is the engine's own peak.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { DIST, ROOT, openPage } from './launch.mjs';

const PYTHON = process.env.CQA_REF_PYTHON || path.join(homedir(), '.cache/cqa-studio/venv-ref/bin/python');
const LARGE = 'shaped-qwen2.5-1.5b.Q4_K_M.gguf';
const args = process.argv.slice(2);
const modelsArg = args.indexOf('--models');
const MODELS = modelsArg >= 0 ? args[modelsArg + 1].split(',') : ['SmolLM2-135M-Instruct.Q4_1.gguf', LARGE];
const MiB = 1024 * 1024;

if (MODELS.includes(LARGE) && !existsSync(path.join(DIST, 'models', LARGE))) {
  execFileSync(PYTHON, [path.join(ROOT, 'scripts/shaped_gguf.py'), '--shape', 'qwen2.5-1.5b', '--quant', 'q4_k_m', '--out', path.join(DIST, 'models', LARGE)], { stdio: 'inherit' });
}

/** Every process under this one, with its Chromium role and its peak RSS in bytes. */
function chromiumPeaks() {
  const parent = new Map();
  const info = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${d}/status`, 'utf8'));
      info.set(Number(d), { role: /--type=([\w-]+)/.exec(cmd)?.[1] ?? 'browser', peak: hwm ? Number(hwm[1]) * 1024 : 0 });
    } catch { /* gone */ }
  }
  const mine = (pid) => { for (let p = pid; p > 1; p = parent.get(p)) if (p === process.pid) return true; return false; };
  const peaks = {};
  for (const [pid, { role, peak }] of info) if (pid !== process.pid && mine(pid)) peaks[role] = Math.max(peaks[role] ?? 0, peak);
  return peaks;
}

async function measure(model, how, preferGpu) {
  if (how === 'slices') return measureApp(model, preferGpu);
  const s = await openPage('harness.html');
  try {
    await s.goto();
    const r = await s.page.evaluate(async ({ model, how, preferGpu }) => {
      const m = await import(new URL('pkg/cqa_studio.js', document.baseURI).href);
      const wasm = await m.default();
      const device = await m.initDevice(preferGpu);
      const t0 = performance.now();
      const res = await fetch(`models/${model}`);
      const size = Number(res.headers.get('Content-Length'));
      // The engine worker's own reading code (lib/model-files.js): readAll is how it read a GGUF
      // file first, streamIntoEngine how it reads a download the cache will not take.
      const files = await import(new URL('lib/model-files.js', document.baseURI).href);
      let loaded;
      let sha256;
      if (how === 'whole') {
        const bytes = await files.readAll(res.body, size, () => {});
        sha256 = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
        loaded = m.WebModel.loadGguf(bytes);
      } else {
        const upload = await files.streamIntoEngine(m, { body: () => res.body, size }, () => {});
        sha256 = upload.sha256();
        loaded = m.WebModel.loadUpload(upload);
      }
      const seconds = (performance.now() - t0) / 1000;
      const score = await loaded.score('The river ran', null);
      const info = loaded.info();
      loaded.free();
      return { backend: device.backend, size, sha256, seconds, wasm: wasm.memory.buffer.byteLength, resident: info.weight_bytes_resident, scored: score.logprobs.length };
    }, { model, how, preferGpu });
    return { ...r, peaks: chromiumPeaks() };
  } finally {
    await s.close();
  }
}

/** The app's own load of `model` (its engine worker), timed from the navigation to the model ready. */
async function measureApp(model, preferGpu) {
  const s = await openPage(`?model=${encodeURIComponent(model)}&engine=${preferGpu ? 'webgpu' : 'cpu'}`);
  try {
    await s.goto();
    await s.page.waitForFunction(() => performance.getEntriesByName('cqa:model-ready').length > 0, null, { timeout: 900_000 });
    const r = await s.page.evaluate(async () => {
      const stats = (await window.cqaStudio.request('gpu-stats')).result;
      const { state } = window.cqaStudio.app;
      const ready = performance.getEntriesByName('cqa:model-ready')[0].startTime;
      const score = (await window.cqaStudio.request('shift', { text: 'The river ran' })).result?.base?.logprobs?.length ?? 0;
      return { backend: state.backend ?? null, size: state.modelIdentity?.size ?? 0, sha256: state.modelIdentity?.sha256 ?? '', seconds: ready / 1000, wasm: stats.engine_bytes, resident: state.info?.weight_bytes_resident, scored: score };
    });
    return { ...r, backend: r.backend ?? (preferGpu ? 'webgpu' : 'cpu'), peaks: chromiumPeaks() };
  } finally {
    await s.close();
  }
}

const rows = [];
for (const model of MODELS) {
  for (const preferGpu of [false, true]) {
    for (const how of ['whole', 'streamed', 'slices']) {
      const r = await measure(model, how, preferGpu);
      const row = {
        model, backend: r.backend, read: how, file_mib: +(statSync(path.join(DIST, 'models', model)).size / MiB).toFixed(1),
        load_s: +r.seconds.toFixed(1), wasm_mib: +(r.wasm / MiB).toFixed(0), renderer_peak_mib: +((r.peaks.renderer ?? 0) / MiB).toFixed(0),
        gpu_process_peak_mib: +((r.peaks['gpu-process'] ?? 0) / MiB).toFixed(0), sha256: r.sha256.slice(0, 12), scored_tokens: r.scored,
      };
      console.log(JSON.stringify(row));
      rows.push(row);
    }
  }
}
console.log('\n| model | engine | file read | file MiB | load s | wasm memory MiB | renderer peak RSS MiB | GPU process peak RSS MiB |');
console.log('|---|---|---|---:|---:|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.model} | ${r.backend} | ${r.read} | ${r.file_mib} | ${r.load_s} | ${r.wasm_mib} | ${r.renderer_peak_mib} | ${r.gpu_process_peak_mib} |`);
