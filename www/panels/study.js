// The study (the Calibrate tab's last section): the whole study in one file and one report.
// - Export study: one *.cqa-study.zip (lib/study-file.js) with the records, the benchmark, every
//   adapter with its settings, loss history and weights, the calibration and agreement reports,
//   and the name, size and SHA-256 of the model.
// - Import study: merges into this browser and never overwrites silently: records as a JSONL
//   import does (identical ones skipped, a different record under a taken id kept beside it under
//   a new id), adapters unless the same weights are already here, the benchmark and each report
//   only where this browser has none (else it says so). A study whose model is not the one loaded
//   names the file to open.
// - Report: the engine writes one self-contained HTML file from the study document, the same
//   file `cqa report --study study.json` writes.
import { $, announce, showError, download, today, fileBytes, sentence } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { studyZip, readStudyZip, sha256Hex, STUDY_FORMAT, STUDY_VERSION, MAX_STUDY_BYTES } from '../lib/study-file.js';
import { storageProblem } from '../lib/adapters.js';
import * as annotate from './annotate/index.js';
import * as agreement from './agreement.js';
import * as calibrate from './calibrate.js';
import * as train from './train.js';
import * as adaptersPanel from './adapters.js';

let app;
const el = {};

export function init(a) {
  app = a;
  for (const id of ['st-title', 'st-export', 'st-import', 'st-report', 'st-status', 'st-error', 'st-notes']) el[id] = $(id);
  el['st-export'].addEventListener('click', () => guard(exportStudy));
  el['st-report'].addEventListener('click', () => guard(writeReport));
  el['st-import'].addEventListener('change', () => {
    const f = el['st-import'].files?.[0];
    el['st-import'].value = '';
    if (f) guard(() => importStudy(f));
  });
}

async function guard(fn) {
  showError(el['st-error'], '');
  el['st-notes'].replaceChildren();
  try { await fn(); } catch (e) { showError(el['st-error'], sentence(e?.message || String(e))); }
}

const slug = (s) => String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'study';

/** The appreciation report as the study keeps it: per record the expected scores (and critiques). */
function appreciationDoc(r) {
  if (!r?.records?.length) return null;
  const side = (x) => (x ? { expected: x.expected, ...(x.critique ? { critique: x.critique } : {}) } : undefined);
  return {
    adapter: r.adapter ?? null, summary: r.summary ?? null, created: r.created, model: r.model, options: r.options, records_from: r.records_from,
    records: r.records.map((x) => ({ id: x.id, expert_score: x.expert_score ?? null, base: side(x.base), ...(x.tuned ? { tuned: side(x.tuned) } : {}) })),
    full: r,
  };
}

/** The study document and its weights entries. */
export async function buildStudy() {
  const schema = await app.schema;
  const bad = annotate.problemKeys();
  const rows = annotate.allRows();
  const records = rows.filter((r) => !bad.has(r.key)).map((r) => r.record);
  const identity = app.state.modelIdentity;
  const modelRef = (name) => (identity && identity.name === name ? identity : name ? { name, size: 0, sha256: null } : null);
  const weights = new Map();
  const adapters = [];
  for (const [i, a] of train.list().entries()) {
    const bytes = new Uint8Array(a.safetensors);
    const name = `adapters/${i}.safetensors`;
    weights.set(name, bytes);
    const held = a.info?.held_out_ids || [];
    adapters.push({
      name: a.name, created: a.created, model: modelRef(a.model), settings: a.settings ?? null, ...(a.history ? { history: a.history } : {}),
      trained_ids: (a.info?.records || []).filter((id) => !held.includes(id)), held_out_ids: held,
      config_json: a.config_json, weights: name, weights_sha256: await sha256Hex(bytes), source: a.source, info: a.info ?? {},
    });
  }
  const bench = await calibrate.benchmark().catch(() => null);
  const doc = {
    format: STUDY_FORMAT, version: STUDY_VERSION,
    title: el['st-title'].value.trim(), created: new Date().toISOString(),
    app: { name: 'cqa-studio', version: schema.app_version },
    model: identity || (app.state.modelName ? { name: app.state.modelName, size: 0, sha256: null } : null),
    records, benchmark: bench?.items || [], benchmark_name: bench?.name || null, adapters,
    reports: { appreciation: appreciationDoc(agreement.lastReport()), calibration: calibrate.lastReport() || null },
  };
  return { doc, weights, left: rows.length - records.length };
}

async function exportStudy() {
  const { doc, weights, left } = await buildStudy();
  const text = JSON.stringify(doc);
  await app.data.call('checkStudy', { text }); // the engine reads back what is written
  const zip = studyZip(doc, weights);
  const name = `${slug(doc.title || 'study')}-${today()}.cqa-study.zip`;
  download(name, zip, 'application/zip');
  const msg = `Exported the study: ${doc.records.length} records, ${doc.adapters.length} adapter${doc.adapters.length === 1 ? '' : 's'}${left ? `; ${left} record${left === 1 ? '' : 's'} with problems left out` : ''}.`;
  el['st-status'].textContent = msg;
  announce(msg);
}

async function writeReport() {
  const { doc } = await buildStudy();
  const html = await app.data.call('studyReport', { text: JSON.stringify(doc) });
  download(`${slug(doc.title || 'study')}-report-${today()}.html`, html, 'text/html');
  el['st-status'].textContent = 'Report written.';
  announce('Report written.');
}

const note = (text) => el['st-notes'].append(Object.assign(document.createElement('li'), { textContent: text }));

async function importStudy(file) {
  if (file.size > MAX_STUDY_BYTES) throw new Error(`The file ${file.name} is ${Math.round(file.size / 2 ** 20)} MiB, more than the ${MAX_STUDY_BYTES / 2 ** 20} MiB a study may be, so it was not read. Nothing was imported`);
  let study;
  try {
    study = await readStudyZip(await fileBytes(file));
  } catch (e) {
    throw new Error(`Could not import ${file.name}: ${e.message}. Nothing was changed`);
  }
  const { doc, text, weights, skipped } = study;
  try {
    await app.data.call('checkStudy', { text });
  } catch (e) {
    throw new Error(`Could not import ${file.name}: ${e.message}. Nothing was changed`);
  }
  if (skipped.length) note(`Skipped ${skipped.length} entr${skipped.length === 1 ? 'y' : 'ies'} a study does not hold (${skipped.slice(0, 3).join(', ')}${skipped.length > 3 ? ', …' : ''}).`);

  // The model: say which file to open when it is not the one loaded.
  const want = doc.model;
  const have = app.state.modelIdentity;
  if (want?.name && !(have && (want.sha256 ? have.sha256 === want.sha256 : have.name === want.name))) {
    const about = want.size ? ` (${(want.size / 1e6).toFixed(1)} MB${want.sha256 ? `, SHA-256 ${want.sha256.slice(0, 16)}…` : ''})` : '';
    note(`This study was made with ${want.name}${about}. ${have ? `The loaded model is ${have.name}: open` : 'Open'} ${want.name} in the Model panel to use the study’s adapters.`);
  }

  // Records: the JSONL import's rules.
  const recordMsg = await annotate.importRecords(doc.records || [], file.name);
  note(recordMsg);

  // Adapters: kept unless the same weights are here already.
  const here = new Set();
  for (const a of train.list()) here.add(await sha256Hex(new Uint8Array(a.safetensors)));
  let added = 0;
  let same = 0;
  for (const a of doc.adapters || []) {
    const bytes = a.weights ? weights.get(a.weights) : null;
    if (!bytes || !a.config_json) { note(`The adapter “${a.name}” has no weights in the file, so it was not imported.`); continue; }
    const sha = a.weights_sha256 || await sha256Hex(bytes);
    if (here.has(sha)) { same++; continue; }
    const taken = train.list().some((x) => x.name === a.name);
    const record = {
      key: store.newKey(), name: taken ? `${a.name} (from ${file.name})` : a.name, created: a.created || new Date().toISOString(),
      model: a.model?.name || null, source: a.source || 'study', settings: a.settings ?? null,
      info: a.info ?? { records: [...(a.trained_ids || []), ...(a.held_out_ids || [])], held_out_ids: a.held_out_ids || [] },
      history: a.history || null, config_json: a.config_json, safetensors: bytes.slice(),
    };
    try {
      await adaptersPanel.saveAdapter(record);
    } catch (e) {
      throw new Error(`The records were imported, but the adapter “${a.name}” could not be kept in this browser: ${storageProblem(e)}`);
    }
    here.add(sha);
    added++;
  }
  if (added || same) note(`Adapters: ${added} imported${same ? `, ${same} already here` : ''}.`);

  // The benchmark and the reports: taken where this browser has none, never over its own.
  if (doc.benchmark?.length) {
    if (calibrate.hasImportedBenchmark()) note('The study’s benchmark was not applied: this browser has its own imported benchmark (import the study’s from the file to replace it).');
    else if (doc.benchmark_name && doc.benchmark_name !== 'data/benchmarks/calibration.jsonl') {
      await calibrate.adoptBenchmark(doc.benchmark_name, new TextEncoder().encode(doc.benchmark.map((b) => JSON.stringify(b)).join('\n') + '\n'));
    }
  }
  const reports = doc.reports || {};
  for (const [kind, mine, adopt, word] of [
    ['appreciation', agreement.lastReport(), (r) => agreement.adoptReport(r.full || r), 'agreement'],
    ['calibration', calibrate.lastReport(), (r) => calibrate.adoptReport(r), 'calibration'],
  ]) {
    const theirs = reports[kind];
    if (!theirs) continue;
    const theirsFull = theirs.full || theirs;
    if (!mine) adopt(theirs);
    else if (JSON.stringify(mine) !== JSON.stringify(theirsFull)) note(`The study’s ${word} report was not applied: this browser has its own. It stays in the study file.`);
  }
  el['st-status'].textContent = `Imported ${file.name}.`;
  announce(`Imported ${file.name}.`);
}
