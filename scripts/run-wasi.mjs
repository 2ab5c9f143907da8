// Runs a WebAssembly (WASI preview 1) test binary in Node, passing the remaining arguments to
// it; exits with its status. `./x test` runs cqa-quant's unit tests this way, built with
// SIMD128, so that the browser's own vector kernels are checked like the native ones.
//
//   node scripts/run-wasi.mjs target/wasm32-wasip1/debug/deps/cqa_quant-*.wasm [test args]
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [file, ...args] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/run-wasi.mjs FILE.wasm [args]');
  process.exit(2);
}
const wasi = new WASI({ version: 'preview1', args: [file, ...args], env: process.env, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));
