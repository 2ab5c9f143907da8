import { openEngine } from './launch.mjs';
const file = process.argv[2]; const tokens = Number(process.argv[3] || 2);
const engine = await openEngine({ preferGpu: true });
console.log('backend', engine.backend);
const r = await engine.page.evaluate(async ({ file, tokens }) => {
  const t0 = performance.now();
  const bytes = new Uint8Array(await (await fetch(file)).arrayBuffer());
  const model = window.cqa.WebModel.loadGguf(bytes);
  const t1 = performance.now();
  const info = model.info();
  const score = await model.score('The river ran slowly past the mill, carrying leaves.', null);
  const t2 = performance.now();
  model.startGeneration('The old lighthouse keeper', false, { max_new_tokens: tokens, temperature: 0 });
  let n = 0; const stamps = [];
  for (;;) { const step = await model.nextToken(); stamps.push(performance.now()); if (step.done) break; n++; }
  const t3 = performance.now();
  model.free();
  return { weights: info.weights, resident: info.weight_bytes_resident, n, logprobs: score.logprobs.length, s: [t1 - t0, t2 - t1, t3 - t2].map((x) => x / 1000), stamps: stamps.map((x) => ((x - t2) / 1000).toFixed(1)) };
}, { file, tokens });
console.log(JSON.stringify(r));
await engine.close();
