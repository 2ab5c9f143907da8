// The engine worker's loops over loaded models (engine-worker.js holds the models and the job
// state and passes them in): streaming started sessions token by token, the verdict distribution
// after a critique, and the agreement measurement record by record. Worker-side only.
import { messageOf, yieldToEvents } from './worker-core.js';

/**
 * Streams one or two sessions that were already started, one token each in turn.
 * `sides`: [{side, model}]; `stopped()` is polled between tokens.
 */
export async function stream(sides, ev, stopped) {
  const out = {};
  const t0 = performance.now();
  for (const s of sides) out[s.side] = { text: '', reason: null, count: 0, tFirst: 0 };
  let open = sides.slice();
  while (open.length) {
    for (const s of open.slice()) {
      await yieldToEvents();
      const o = out[s.side];
      if (stopped()) { o.reason = 'stopped'; }
      else {
        const step = await s.model.nextToken();
        if (step.done) o.reason = step.reason || 'end_of_sequence';
        else {
          const now = performance.now();
          o.count += 1;
          if (o.count === 1) o.tFirst = now;
          o.text += step.text || '';
          const rate = o.count > 1 ? (o.count - 1) / ((now - o.tFirst) / 1000) : 0;
          ev({ type: 'token', side: s.side, text: step.text || '', count: o.count, tokensPerSecond: rate });
        }
      }
      if (o.reason) {
        ev({ type: 'side-done', side: s.side, reason: o.reason, count: o.count });
        open = open.filter((x) => x !== s);
      }
    }
  }
  const elapsedMs = performance.now() - t0;
  for (const k of Object.keys(out)) {
    const o = out[k];
    o.elapsedMs = elapsedMs;
    o.tokensPerSecond = o.count > 1 ? (o.count - 1) / ((performance.now() - o.tFirst) / 1000) : 0;
    delete o.tFirst;
  }
  return out;
}

/**
 * The verdict distribution `model` gives `input` after its critique `text` (the engine cuts the
 * critique before its own verdict line): {verdict, verdict_error}, one of them null, and the
 * 'verdict' event posted for `side`. A failure (e.g. a prompt too long for the model's window)
 * is reported in words and does not fail the job.
 */
export async function verdictAfter(model, input, text, side, ev) {
  let verdict = null;
  let error = null;
  await yieldToEvents();
  try {
    verdict = await model.verdictDistribution(input, 'critique', text);
  } catch (e) {
    error = messageOf(e);
  }
  ev({ type: 'verdict', side, verdict, error });
  return { verdict, verdict_error: error };
}

/**
 * Appraises each record with the base (and the tuned model, if any), yielding between records
 * and stopping when `stopped()`; then the engine's report over the records done.
 * Resolves to {outcome, done, total, records, summary} (`records`/`summary` as
 * `appreciationReport` gives them; both null when no record was done).
 */
export async function measureAgreement(m, { base, tuned, records, options, stopped, ev }) {
  const baseOut = [];
  const tunedOut = [];
  let outcome = 'finished';
  for (let i = 0; i < records.length; i++) {
    await yieldToEvents();
    if (stopped()) { outcome = 'cancelled'; break; }
    const r = records[i];
    const b = await base.appraiseRecord(r, options);
    const t = tuned ? await tuned.appraiseRecord(r, options) : null;
    baseOut.push(b);
    if (t) tunedOut.push(t);
    // `id` is the request's: the record's id travels as `recordId`.
    ev({ type: 'record', index: i, total: records.length, recordId: r.id, base: b, tuned: t });
  }
  const done = baseOut.length;
  if (!done) return { outcome, done, total: records.length, records: null, summary: null };
  const report = m.appreciationReport(records.slice(0, done), baseOut, tuned ? tunedOut : null, options);
  return { outcome, done, total: records.length, ...report };
}
