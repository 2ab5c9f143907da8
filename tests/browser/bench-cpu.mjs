// The browser's CPU path against llama.cpp in wasm (@wllama/wllama), in the same headless
// Chromium on the same GGUF (wllama 3.13.0 and 3.8.1, the latter being what the issue's
// reference figures used): greedy decode of 64 tokens after the same prompt, one thread and
// every core, 1 warm-up + 3 timed runs each, median. Decode rate = (tokens − 1) / (time from the
// first token to the last), for both engines.
//
//   ./x bench-browser          (builds dist/ first)
//   node tests/browser/bench-cpu.mjs [--tokens N]
//
// cqa runs in the app itself (dist/ on a host that sends the cross-origin isolation headers):
// ?engine=cpu&threads=1 is the standard build on the engine worker alone, ?engine=cpu the
// threaded build on rayon's pool plus the spinning matrix-vector helpers.
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, ROOT, openPage } from './launch.mjs';
import { benchWllama } from './wllama-bench.mjs';

const args = process.argv.slice(2);
const tokensArg = args.indexOf('--tokens');
const TOKENS = tokensArg >= 0 ? Number(args[tokensArg + 1]) : 64;
const PROMPT = 'The old lighthouse keeper';
const MODEL = path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
const CORES = os.availableParallelism();
const WLLAMA_PKGS = ['@wllama/wllama', 'wllama-3.8']; // directories under tests/browser/node_modules
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function benchCqa(threads) {
  const s = await openPage(`?engine=cpu&threads=${threads}`, { server: { isolated: true } });
  try {
    await s.goto();
    await s.page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
    const runs = [];
    let device;
    for (let i = 0; i <= 3; i++) {
      const r = await s.page.evaluate(async ({ prompt, tokens }) => {
        const device = await window.cqaStudio.request('init-device', {});
        const gen = await window.cqaStudio.request('generate', { prompt, chat: false, params: { max_new_tokens: tokens, temperature: 0 } });
        if (!gen.ok) throw new Error(gen.message);
        return { device: device.result, rate: gen.result.tokensPerSecond, count: gen.result.count, text: gen.result.text };
      }, { prompt: PROMPT, tokens: TOKENS });
      device = r.device;
      if (i > 0) runs.push(r.rate);
      if (r.count !== TOKENS) throw new Error(`cqa generated ${r.count} tokens, not ${TOKENS}`);
    }
    return { engine: 'cqa', threads: device.threads, decodeTokensPerSecond: median(runs), runs };
  } finally {
    await s.close();
  }
}

const results = [];
for (const threads of [1, CORES]) results.push(await benchCqa(threads));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', args: CHROMIUM_ARGS });
try {
  // 3.13.0 (@wllama/wllama) first, then 3.8.1 (the npm alias wllama-3.8): the version the
  // issue's reference figures were measured with, for a side-by-side in the same run.
  for (const pkg of WLLAMA_PKGS) {
    for (const threads of [1, CORES]) {
      const r = await benchWllama({ browser, modelPath: MODEL, threads, tokens: TOKENS, prompt: PROMPT, pkg });
      results.push({ engine: `wllama ${r.version}`, threads: r.threadsUsed, decodeTokensPerSecond: r.decodeTokensPerSecond, runs: r.runsTokensPerSecond });
    }
  }
} finally {
  await browser.close();
}
for (const r of results) console.log(JSON.stringify(r));
console.log(`\n| engine (Chromium ${browser.version()}, ${CORES} cores) | threads | greedy decode, ${TOKENS} tokens |\n|---|---:|---:|`);
for (const r of results) console.log(`| ${r.engine} | ${r.threads} | ${r.decodeTokensPerSecond.toFixed(1)} tok/s |`);
