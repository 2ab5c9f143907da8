// The engine worker's requests, listed once: engine-worker.js answers exactly these (it checks
// its handlers against this list when it starts), lib/engine.js's client and its watchdog read
// which ones the watchdog times, and which ones run beside a job. Their messages:
//
// worker → page   {type: 'device-lost', message}   unsolicited: the engine's GPU device was lost
// page → engine worker (requests; results in brackets)
//   {type: 'init-device', id}                         [{backend, adapter, threads, reason}]
//        backend: 'webgpu' | 'cpu'; adapter: GPUAdapterInfo fields (on WebGPU) or null;
//        threads: the threads the CPU path computes on (1 on WebGPU, or on one thread);
//        reason: why the engine runs on the CPU (the engine's words, e.g. WebGPU's own error), or null
//        The choice is made once, when the worker starts, from the 'init' message's
//        device: {cpu?: true (skip WebGPU), threads?: N (at most N CPU threads; 1: none)}
//   {type: 'load', id, source: 'default' | 'url' | 'local', name?}   a file under /models/ (name
//        defaults to the engine's default model), or a GGUF cached earlier from the user's disk
//   {type: 'load', id, file: File}                    a GGUF from the user's disk (then cached)
//   {type: 'load', id, hf: {shards: File[], config: File, tokenizer: File, tokenizerConfig?: File}}
//        any of them with memoryBudgetMb?: the memory budget in MiB instead of the default (below),
//        and keep?: false to leave the model out of Cache Storage (this browser's storage is small)
//        A model that does not fit is refused before the engine reads it (a GGUF from the disk:
//        before the file is even read whole), with a sentence naming what it needs and the
//        limit (lib/engine-memory.js gives the limits). The loaded model stays loaded whenever a
//        load fails.
//        events: {type: 'progress', id, stage, loaded, total, message}
//                stage: 'cache' | 'download' | 'read' | 'prepare'; total may be 0 (unknown)
//        result: {info, name, source, cached, fromCache, identity}   info: `cqa info --json`'s
//                fields; cached: kept in Cache Storage; fromCache: read from it this time;
//                identity: {name, size, sha256} of the file (sha256 null for HF shards)
//   {type: 'forget-models', id}                       [number of cached model files deleted]
//   {type: 'generate', id, prompt, chat, params}      the base model alone; params: sampling settings
//        events: {type: 'token', id, side: 'base', text, count, tokensPerSecond}
//                {type: 'side-done', id, side, reason, count}
//        result: {text, reason, count, elapsedMs, tokensPerSecond}
//   {type: 'compare', id, mode: 'appreciation' | 'generation', brief, audience, genre, work,
//        prompt, params, adapter?}                    base and tuned, tokens interleaved
//        events: {type: 'token', id, side: 'base' | 'tuned', text, count, tokensPerSecond}
//                {type: 'side-done', id, side, reason, count}
//                {type: 'progress', id, stage: 'prepare', message}   while merging the adapter
//                {type: 'verdict', id, side, verdict, error}   appreciation, once both critiques
//                  are done (not when stopped): `verdictDistribution(input, 'critique', text)` of
//                  that side's model ({prefix, continuations, logprobs, p[10], expected, mode,
//                  entropy_bits, verdict_mass}), or null and `error` (a sentence) if it failed
//        result: {base: {text, reason, count, …, verdict?, verdict_error?}, tuned: {…} | null}
//                (verdict and verdict_error in appreciation mode, as in the event)
//   {type: 'judge', id, brief, audience, genre, works: {base, tuned}, params, adapter?}
//        the tuned model (the base without an adapter) critiques each work in turn, then gives
//        its verdict distribution after that critique
//        events: {type: 'token', id, side, text, count, tokensPerSecond}, {type: 'side-done', …},
//                {type: 'verdict', id, side, verdict, error}   side: the work judged
//        result: {base: {text, reason, score, verdict, verdict_error} | null, tuned: {…} | null,
//                judge: 'tuned' | 'base'}   score: the verdict written in the critique, or null
//   {type: 'shift', id, text, context, adapter}       [{ids, texts, base, tuned}] per-token log-probs
//        base, tuned: `cqa score --json`'s objects (tuned null without an adapter)
//   {type: 'calibrate', id, items, adapter?}          item by item
//        events: {type: 'item', id, index, total, result}   result as `cqa calibrate --json
//                --tokens` prints one item, plus `token_texts`
//        result: {outcome: 'finished' | 'cancelled', done}
//   {type: 'agreement', id, records, adapter?, options}   agreement with the expert's scores,
//        record by record like 'calibrate' ('stop' ends it after the current record)
//        records: annotation objects; options: AppraiseOptions fields, all optional:
//        {mode: 'direct' | 'critique' | 'reasoning', max_new_tokens, bootstrap, seed, level}
//        events: {type: 'record', id, index, total, recordId, base, tuned}   base, tuned: the
//                  engine's `appraiseRecord` results (the VerdictDistribution fields plus nll,
//                  tokens, critique?, parsed_score?); tuned null without an adapter
//        result: {outcome: 'finished' | 'cancelled', done, total, records, summary}
//                records, summary: `appreciationReport` over the records done (`cqa appreciate
//                --json`'s shape), both null when none was done
//   {type: 'check-adapter', id, adapter}              [{ok: true}] merges it once to validate
//   {type: 'train', id, records (JSONL string), config, keepGoodLines, checkpoint?, checkpointEvery}
//        config: TrainConfig fields (missing ones take the engine's defaults); with checkpoint
//        (bytes) the run resumes from it and config is not used
//        events: {type: 'train-info', id, info}      {train, held_out, held_out_ids, step, total_steps,
//                  warnings, config}   held_out_ids: the ids of the records held out of training
//                {type: 'train-event', id, event, checkpoint?: Uint8Array}   event: what
//                  `cqa train --json` prints: {kind: 'step', step, total_steps, epoch, loss,
//                  learning_rate, grad_norm, tokens, tokens_per_s, elapsed_s, eta_s} or
//                  {kind: 'held_out', step, held_out_loss}; checkpoint bytes when one was taken
//        result: {outcome: 'finished' | 'cancelled', info, adapter: {config_json, safetensors} | null}
//   {type: 'simulate-device-loss', id}                [{destroyed: true}] calls destroy() on the
//        engine's GPU device: Chromium then resolves device.lost, and the worker reports it as a
//        loss ('device-lost'), as it would a real one (how tests, and the curious, exercise it)
//   {type: 'gpu-stats', id, reset?}                   [{shaderModules, pipelines, shaderBytes, dispatches,
//        submits, since, kernels, engine_bytes}] what the engine has asked of WebGPU since the worker
//        started (or the last reset): counted at the API, for measurement (kernels compiled,
//        dispatches per token); and the engine's memory, whose size is its peak so far
//   {type: 'simulate-crash', id}                      [{scheduled: true}] test-only: throws outside
//        any handler just after replying (the page's Worker gets an 'error' event)
//   {type: 'simulate-hang', id}                       test-only: never answers (the page's
//        watchdog reports it)
// page → engine worker (control; no reply)
//   {type: 'stop', target}                            stop generation / calibration / agreement `target` (an id)
//   {type: 'train-control', action: 'pause' | 'resume' | 'cancel'}
//
// `adapter` everywhere is {key, config_json, safetensors}: the worker keeps the last merged tuned
// model for `key`, so repeated comparisons do not merge again.


/**
 * Every request, by name: `watched` (it can run long or hang on the GPU: the watchdog times its
 * silences), `concurrent` (answered while another job runs), `testOnly` (only in a build with
 * the test hooks, lib/test-hooks.js).
 */
export const ENGINE_REQUESTS = Object.freeze({
  'init-device': { concurrent: true },
  load: { watched: true },
  'forget-models': {},
  generate: { watched: true },
  compare: { watched: true },
  judge: { watched: true },
  shift: { watched: true },
  calibrate: { watched: true },
  agreement: { watched: true },
  'check-adapter': { watched: true },
  train: { watched: true },
  'gpu-stats': { concurrent: true },
  'simulate-device-loss': { concurrent: true, testOnly: true },
  'simulate-crash': { concurrent: true, testOnly: true },
  'simulate-hang': { watched: true, testOnly: true },
});

/** Control messages: handled at once, no reply. */
export const ENGINE_CONTROLS = Object.freeze(['stop', 'train-control']);

const named = (flag) => new Set(Object.entries(ENGINE_REQUESTS).filter(([, r]) => r[flag]).map(([name]) => name));
/** Requests the watchdog times. */
export const WATCHED = named('watched');
/** Requests answered while a job runs. */
export const CONCURRENT = named('concurrent');
/** The requests a build answers: the test-only ones only with the test hooks. */
export const requestNames = (testHooks) => Object.keys(ENGINE_REQUESTS).filter((name) => testHooks || !ENGINE_REQUESTS[name].testOnly);
