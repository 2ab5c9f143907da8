// The data worker: the engine's pure functions (record format, validation, coverage, JSONL, TRL
// export, benchmark parsing, statistics), answered at once even while the engine worker
// (engine-worker.js) trains. The page starts it as a module worker named 'data'. The protocol
// common to both workers (init, ids, result and error replies) is described in
// lib/worker-core.js; every reply here is a result, or an error with code 'failed'.
//
// page → data worker (requests; results in brackets)
//   {type: 'schema', id}                              [{schema_version, dimensions, lora_targets,
//                                                        train_defaults, checkpoint_every, default_model}]
//                                                       the record format and every default
//   {type: 'parseAnnotations', id, bytes}             [{records, errors: [{line, field, message}]}]
//   {type: 'annotationsStatus', id, records}          [{errors: [{index, field, message}], valid, coverage}]
//                                                       records: annotation objects in list order;
//                                                       coverage (`cqa coverage --json`) of the valid ones
//   {type: 'toJsonl', id, records}                    [JSONL string] (refuses records that do not fit the format)
//   {type: 'exportTrl', id, records}                  [TRL JSONL string]
//   {type: 'parseBenchmark', id, bytes}               [items]
//   {type: 'pairedSummary', id, values}               [{n, mean, median, sd, wilcoxon_p, wilcoxon_method, cohens_d}]
//   {type: 'calibrationGroups', id, items}            [{literary?: summary, factual?: summary}]
//                                                       items as the engine worker's 'calibrate' gives
//                                                       them; per group, the paired summary of
//                                                       delta_delta_i_bits (else base.delta_i_bits)
//   {type: 'verdictScore', id, text}                  [number | null]
//   {type: 'readAdapter', id, zip: File} or {…, config: File, weights: File}
//                                                     [{config (text), weights (Uint8Array)}] a PEFT
//                                                       adapter from the disk, every size bounded
//                                                       first (lib/adapter-files.js)
//   {type: 'readCheckpoint', id, file: File}        [{run, step, bytes (Uint8Array)}] a run's
//                                                       checkpoint file, bounded first
//                                                       (lib/checkpoint-file.js)
//   {type: 'studyAgreement', id, records, models?, options?}
//                                                     [{agreement, chart_svg}] agreement among the
//                                                       annotators of the same works, models as more
//                                                       raters (`cqa agreement --json`; models:
//                                                       [{name, scores: {id: expected}, trained_on}])
//   {type: 'checkStudy', id, text}                    [number of records] the engine's checks of a
//                                                       study document (docs/study-format.md)
//   {type: 'studyReport', id, text}                   [HTML string] the study's self-contained report
//                                                       (`cqa report`)
//   {type: 'simulate-crash', id}                      [{scheduled: true}] test-only: the worker
//                                                       throws outside any handler just after
//                                                       replying; the page restarts it
import { allowList, ensureWasm, lookup, refuse, runJob, serve, simulateCrash } from './lib/worker-core.js';
import { readAdapterFiles } from './lib/adapter-files.js';
import { readCheckpointFile } from './lib/checkpoint-file.js';
import { TEST_HOOKS } from './lib/test-hooks.js';

const enc = new TextEncoder();
const toLines = (records) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

const requests = allowList({
  async schema() {
    const m = await ensureWasm();
    return m.schema();
  },
  async parseAnnotations({ bytes }) {
    const m = await ensureWasm();
    return m.parseAnnotations(new Uint8Array(bytes));
  },
  // The editor's view of the stored records: the engine validates them (one record per line,
  // so the line number is the list index + 1) and measures the coverage of the valid ones.
  async annotationsStatus({ records }) {
    const m = await ensureWasm();
    if (records.length === 0) return { errors: [], valid: 0, coverage: m.annotationCoverage('') };
    const report = m.parseAnnotations(enc.encode(toLines(records)));
    const errors = report.errors.map((e) => ({ index: e.line - 1, field: e.field, message: e.message }));
    const bad = new Set(errors.map((e) => e.index));
    const valid = records.filter((_, i) => !bad.has(i));
    const coverage = m.annotationCoverage(valid.length ? toLines(valid) : '');
    return { errors, valid: valid.length, coverage };
  },
  async toJsonl({ records }) {
    const m = await ensureWasm();
    return m.annotationsToJsonl(records);
  },
  async exportTrl({ records }) {
    const m = await ensureWasm();
    return m.exportTrl(toLines(records));
  },
  async parseBenchmark({ bytes }) {
    const m = await ensureWasm();
    return m.parseBenchmark(new Uint8Array(bytes));
  },
  async pairedSummary({ values }) {
    const m = await ensureWasm();
    return m.pairedSummary(Float64Array.from(values));
  },
  async calibrationGroups({ items }) {
    const m = await ensureWasm();
    return m.calibrationGroups(items);
  },
  async verdictScore({ text }) {
    const m = await ensureWasm();
    return m.parseVerdictScore(text) ?? null;
  },
  async studyAgreement({ records, models, options }) {
    const m = await ensureWasm();
    return m.studyAgreement(records, models || [], options || {});
  },
  async checkStudy({ text }) {
    const m = await ensureWasm();
    return m.checkStudy(text);
  },
  async studyReport({ text }) {
    const m = await ensureWasm();
    return m.studyReportHtml(text);
  },
  // An adapter from the disk, bounded and unzipped here rather than on the page (lib/adapter-files.js).
  readAdapter: (files) => readAdapterFiles(files),
  // A run's checkpoint file, the same way (lib/checkpoint-file.js).
  readCheckpoint: ({ file }) => readCheckpointFile(file),
  // Only in a build with the test hooks (lib/test-hooks.js).
  ...(TEST_HOOKS ? { 'simulate-crash': simulateCrash } : {}),
});

serve(async (msg) => {
  const job = lookup(requests, msg.type);
  if (!job) { refuse(msg); return; }
  await runJob(job, msg);
});
