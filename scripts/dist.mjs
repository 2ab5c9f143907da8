// Builds dist/: the whole app as a folder any static file server can host as it is (GitHub Pages,
// nginx, `python3 -m http.server`, an S3 bucket), at its root or at a sub-path.
//
//   node scripts/dist.mjs [--out dist] [--no-model] [--test-hooks]
//
// --test-hooks: the build the browser tests run, with window.cqaStudio, the engine's simulate-*
// requests and harness.html (www/lib/test-hooks.js); a site for users is built without.
//
// `./x dist` runs it after building the wasm package into pkg/. The folder holds:
//   index.html, style.css, app.js, the workers, lib/, panels/   from www/ (and harness.html,
//                  the browser tests' bare page, with --test-hooks)
//   vendor/        the app's npm libraries (uPlot, idb, fflate), one file each, from www/node_modules
//   pkg/           the wasm-bindgen package, the wasm optimised by binaryen's wasm-opt (pinned in
//                  www/package.json)
//   pkg-threads/   the threaded CPU build of the engine (the same, with wasm atomics), which the
//                  engine worker runs when there is no WebGPU and the page is cross-origin isolated
//   data/          the bundled samples and calibration benchmark
//   models/        the default model, when models/ has it (not with --no-model)
//   sw.js          the service worker, its version set to a hash of the shell's files
//   _headers       the same security headers as serve.mjs, for hosts that read the file (Netlify,
//                  Cloudflare Pages); index.html carries the policy itself for the others
//   *.br, *.gz     precompressed copies of the text files and the wasm, for hosts that serve them
// Every path inside is relative, so nothing depends on where the folder is mounted.
// The slow steps (wasm-opt, brotli at level 11) are cached by content under
// ~/.cache/cqa-studio/dist, so a rebuild with an unchanged engine takes seconds.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WWW = path.join(ROOT, 'www');
export const DEFAULT_MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const CACHE = path.join(process.env.CQA_CACHE_DIR || path.join(os.homedir(), '.cache', 'cqa-studio'), 'dist');

// www/ files that are not part of the site: the development server and npm's files.
const NOT_SHIPPED = new Set(['serve.mjs', 'package.json', 'package-lock.json', 'node_modules']);
// vendor/<name> ← www/node_modules/<file>
const VENDOR = [
  ['uPlot.esm.js', 'uplot/dist/uPlot.esm.js'],
  ['uPlot.min.css', 'uplot/dist/uPlot.min.css'],
  ['idb.js', 'idb/build/index.js'],
  ['fflate.js', 'fflate/esm/browser.js'],
];
const DATA = ['samples/annotations.jsonl', 'samples/annotations-second-annotator.jsonl', 'benchmarks/calibration.jsonl'];
// What rustc's wasm32 target emits; wasm-opt must accept it and may use it.
const WASM_FEATURES = ['--enable-bulk-memory', '--enable-nontrapping-float-to-int', '--enable-sign-ext',
  '--enable-mutable-globals', '--enable-reference-types', '--enable-multivalue', '--enable-simd'];
const WASM_OPT_ARGS = ['-Oz', ...WASM_FEATURES, '--strip-debug', '--strip-producers', '--strip-target-features'];
// The engine's two builds: the standard one (WebGPU and the CPU on one thread), and the threaded
// CPU build (wasm atomics on a shared memory; see src/web/threads.rs).
const PACKAGES = [
  { dir: 'pkg', wasmOpt: WASM_OPT_ARGS },
  { dir: 'pkg-threads', wasmOpt: [...WASM_OPT_ARGS, '--enable-threads'] },
];
// Precompressed copies for these; a model (already quantized) gains too little to be worth it.
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.wasm', '.json', '.jsonl', '.svg']);

/** The security headers the app is served with: serve.mjs sends them, dist/_headers lists them. */
export const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";
export const SECURITY_HEADERS = {
  'Content-Security-Policy': `${CSP}; frame-ancestors 'none'`,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** The shell's paths as sw.js lists them in `const SHELL = [ … ];` (relative; '' is the page). */
export function shellPaths(swText) {
  const m = /const SHELL = \[([^\]]*)\]/.exec(swText);
  if (!m) throw new Error('sw.js has no `const SHELL = [...]` list');
  return [...m[1].matchAll(/'([^']*)'/g)].map((x) => x[1]);
}

/** A short hash (12 hex digits) of the shell's files in `dir`: each path and its bytes. */
export function shellVersion(dir, swText) {
  const hash = crypto.createHash('sha256');
  for (const p of shellPaths(swText)) {
    hash.update(`${p}\0`);
    hash.update(fs.readFileSync(path.join(dir, p === '' ? 'index.html' : p)));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 12);
}

const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/** `make(bytes)` memoised on disk by the input's hash and `tag`. */
function cached(tag, bytes, make) {
  const file = path.join(CACHE, `${sha256(bytes).slice(0, 32)}.${tag}`);
  try { return fs.readFileSync(file); } catch { /* not cached yet */ }
  const out = make(bytes);
  fs.mkdirSync(CACHE, { recursive: true });
  fs.writeFileSync(`${file}.part`, out);
  fs.renameSync(`${file}.part`, file);
  return out;
}

function wasmOpt(bytes, args) {
  const bin = path.join(WWW, 'node_modules', 'binaryen', 'bin', 'wasm-opt');
  if (!fs.existsSync(bin)) throw new Error('binaryen is not installed: run `npm ci` in www/ (./x dist does)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cqa-wasm-opt-'));
  try {
    fs.writeFileSync(path.join(tmp, 'in.wasm'), bytes);
    const started = Date.now();
    const r = spawnSync(process.execPath, [bin, ...args, path.join(tmp, 'in.wasm'), '-o', path.join(tmp, 'out.wasm')], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`wasm-opt failed (${r.status ?? r.signal})`);
    console.log(`  wasm-opt ${args[0]}: ${mb(bytes.length)} → ${mb(fs.statSync(path.join(tmp, 'out.wasm')).size)} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return fs.readFileSync(path.join(tmp, 'out.wasm'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const brotli = (bytes) => zlib.brotliCompressSync(bytes, {
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_LGWIN]: 24, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: bytes.length },
});
// GNU gzip's own deflate packs the wasm about 1 % tighter than zlib at the same level; zlib when
// there is no gzip on the PATH.
const gzip = (bytes) => {
  const r = spawnSync('gzip', ['-9', '-n', '-c'], { input: bytes, maxBuffer: 1 << 30 });
  return r.status === 0 && r.stdout.length > 0 ? r.stdout : zlib.gzipSync(bytes, { level: 9 });
};
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;

function copyTree(from, to) {
  for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
    if (NOT_SHIPPED.has(entry.name) || entry.name.startsWith('.')) continue;
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (entry.isDirectory()) { fs.mkdirSync(dst, { recursive: true }); copyTree(src, dst); }
    else if (entry.isFile()) fs.copyFileSync(src, dst);
  }
}

/** A hard link when the filesystem allows (the model is 98 MB), else a copy. */
function linkOrCopy(src, dst) {
  try { fs.linkSync(src, dst); } catch { fs.copyFileSync(src, dst); }
}

function walk(dir, out = []) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(p, out); else out.push(p);
  }
  return out;
}

export function buildDist({ out = path.join(ROOT, 'dist'), model = true, testHooks = false } = {}) {
  for (const { dir } of PACKAGES) {
    for (const f of ['cqa_studio.js', 'cqa_studio_bg.wasm']) {
      if (!fs.existsSync(path.join(ROOT, dir, f))) throw new Error(`${dir}/${f} is missing: build the wasm packages first (./x web)`);
    }
  }
  // The folder is replaced whole; refuse to wipe one that is not an earlier build of this site.
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0 && !fs.existsSync(path.join(out, 'sw.js'))) {
    throw new Error(`${out} is not empty and is not a cqa-studio build (no sw.js): choose another --out`);
  }
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });

  copyTree(WWW, out);
  const hooksFile = path.join(out, 'lib', 'test-hooks.js');
  const hooks = fs.readFileSync(hooksFile, 'utf8');
  if (!hooks.includes('export const TEST_HOOKS = false;')) throw new Error('www/lib/test-hooks.js must say `export const TEST_HOOKS = false;`');
  if (testHooks) fs.writeFileSync(hooksFile, hooks.replace('export const TEST_HOOKS = false;', 'export const TEST_HOOKS = true;'));
  else fs.rmSync(path.join(out, 'harness.html'));
  fs.mkdirSync(path.join(out, 'vendor'));
  for (const [name, file] of VENDOR) fs.copyFileSync(path.join(WWW, 'node_modules', file), path.join(out, 'vendor', name));
  for (const file of DATA) {
    fs.mkdirSync(path.dirname(path.join(out, 'data', file)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'data', file), path.join(out, 'data', file));
  }

  const engines = {};
  for (const { dir, wasmOpt: args } of PACKAGES) {
    fs.mkdirSync(path.join(out, dir));
    fs.copyFileSync(path.join(ROOT, dir, 'cqa_studio.js'), path.join(out, dir, 'cqa_studio.js'));
    const raw = fs.readFileSync(path.join(ROOT, dir, 'cqa_studio_bg.wasm'));
    const wasm = cached(`oz-${sha256(args.join(' ')).slice(0, 8)}.wasm`, raw, (bytes) => wasmOpt(bytes, args));
    fs.writeFileSync(path.join(out, dir, 'cqa_studio_bg.wasm'), wasm);
    engines[dir] = { raw: raw.length, optimised: wasm.length };
  }

  fs.mkdirSync(path.join(out, 'models'));
  const defaultModel = path.join(ROOT, 'models', DEFAULT_MODEL);
  if (model && fs.existsSync(defaultModel)) linkOrCopy(defaultModel, path.join(out, 'models', DEFAULT_MODEL));
  else if (model) console.log(`  models/${DEFAULT_MODEL} is not here (./x model fetches it): the site will offer "Open model file…"`);

  const swFile = path.join(out, 'sw.js');
  const swText = fs.readFileSync(swFile, 'utf8');
  const version = shellVersion(out, swText);
  fs.writeFileSync(swFile, swText.replace("'__SHELL_VERSION__'", `'${version}'`));

  fs.writeFileSync(path.join(out, '_headers'), [
    '# Security headers for hosts that read this file (Netlify, Cloudflare Pages). index.html carries',
    '# the same Content-Security-Policy in a <meta> tag for hosts that do not; a <meta> policy cannot',
    '# say frame-ancestors (framing by other sites), cannot cover the workers (they take a policy only',
    '# from their own response headers), and cannot set the cross-origin isolation headers below',
    '# (which the page works without). These hosts serve sw.js with revalidation by default.',
    '/*',
    ...Object.entries(SECURITY_HEADERS).map(([k, v]) => `  ${k}: ${v}`),
    '',
  ].join('\n'));

  for (const file of walk(out)) {
    if (!COMPRESSIBLE.has(path.extname(file))) continue;
    const bytes = fs.readFileSync(file);
    const isWasm = file.endsWith('.wasm');
    fs.writeFileSync(`${file}.br`, isWasm ? cached('br', bytes, brotli) : brotli(bytes));
    fs.writeFileSync(`${file}.gz`, isWasm ? cached('gzip9.gz', bytes, gzip) : gzip(bytes));
  }

  for (const { dir } of PACKAGES) {
    const wasmOut = path.join(out, dir, 'cqa_studio_bg.wasm');
    Object.assign(engines[dir], { brotli: fs.statSync(`${wasmOut}.br`).size, gzip: fs.statSync(`${wasmOut}.gz`).size });
  }
  const sizes = engines.pkg;
  const shipped = walk(out).filter((f) => !/\.(br|gz)$/.test(f) && !f.includes(`${path.sep}models${path.sep}`));
  const shellBytes = (ext) => shipped.reduce((s, f) => s + (fs.existsSync(`${f}${ext}`) ? fs.statSync(`${f}${ext}`).size : fs.statSync(f).size), 0);
  console.log(`dist/ at ${path.relative(process.cwd(), out) || '.'} (shell version ${version}${testHooks ? ', with the test hooks' : ''})`);
  for (const [dir, e] of Object.entries(engines)) {
    console.log(`  engine wasm (${dir}/): ${mb(e.raw)} from cargo + wasm-bindgen, ${mb(e.optimised)} after wasm-opt, ${mb(e.brotli)} brotli, ${mb(e.gzip)} gzip -9`);
  }
  console.log(`  whole site without the model: ${mb(shellBytes(''))}, ${mb(shellBytes('.br'))} brotli, ${mb(shellBytes('.gz'))} gzip`);
  return { out, version, sizes };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--out');
  const out = i >= 0 ? path.resolve(args[i + 1]) : undefined;
  for (const a of args) {
    if (!['--out', '--no-model', '--test-hooks'].includes(a) && (i < 0 || a !== args[i + 1])) {
      console.error(`unknown option ${a}\nusage: node scripts/dist.mjs [--out DIR] [--no-model] [--test-hooks]`);
      process.exit(2);
    }
  }
  try {
    buildDist({ out, model: !args.includes('--no-model'), testHooks: args.includes('--test-hooks') });
  } catch (e) {
    console.error(`dist: ${e.message}`);
    process.exit(1);
  }
}
