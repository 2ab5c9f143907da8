// The Train panel's adapters, kept in IndexedDB: the list (rename, show loss, export as a PEFT
// zip, delete), saving a trained one, and importing a PEFT adapter (checked by merging it once).
// A write that fails (storage full or gone) is said in words and changes nothing on screen: a
// failed rename keeps the old name, a failed delete keeps the row.
import { $, h, announce, showError, sentence, download, fmt3, fmt1, today } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { peftZip, peftZipName, storageProblem } from '../lib/adapters.js';

let app;
const el = {};
let adapters = [];
let showLoss = () => {};

/** `loss(adapter)` shows an adapter's loss history (the Train panel's chart). */
export function init(a, { loss }) {
  app = a;
  showLoss = loss;
  for (const id of ['adapters-count', 'adapter-list', 'adapter-import', 'adapter-error']) el[id] = $(id);
  el['adapter-import'].addEventListener('change', async () => {
    const files = Array.from(el['adapter-import'].files || []);
    el['adapter-import'].value = '';
    if (files.length) importAdapter(files).catch((e) => showError(el['adapter-error'], `Could not import the adapter: ${sentence(e?.message || String(e))}`));
  });
  // Another tab saved, renamed or deleted an adapter.
  store.onChange((c) => { if (c.store === 'adapters') loadAdapters(); });
  loadAdapters();
}

/** The saved adapters, newest first. */
export const list = () => adapters;

async function loadAdapters() {
  try {
    adapters = await store.allAdapters();
  } catch (e) {
    showError(el['adapter-error'], `Could not read the saved adapters: ${storageProblem(e)}`);
  }
  renderAdapters();
}

/** The records of a JSONL text with these ids, in the order of `ids` (each line used once). */
function recordsWithIds(jsonl, ids) {
  const lines = String(jsonl || '').split('\n').filter((l) => l.trim()).map((l) => { try { return JSON.parse(l); } catch { return null; } });
  const used = new Set();
  return ids.map((id) => {
    const i = lines.findIndex((r, j) => r && r.id === id && !used.has(j));
    if (i < 0) return null;
    used.add(i);
    return lines[i];
  }).filter(Boolean);
}

/**
 * The adapter record of a finished run (`result` of the 'train' request; `run` the run record),
 * not yet saved. Its info keeps the held-out records (their ids, and the records as trained), so
 * the Calibrate panel can measure agreement on records this adapter never saw.
 */
export function trainedAdapter(result, run) {
  const c = result.info.config || run.config;
  const heldOutIds = result.info.held_out_ids || run.heldOutIds || null;
  const when = new Date();
  return {
    key: store.newKey(),
    name: `r${c.lora.rank} · ${result.info.train} records · ${when.toLocaleString()}`,
    created: when.toISOString(),
    model: run.model,
    source: 'trained',
    settings: c,
    info: {
      train: result.info.train, held_out: result.info.held_out, total_steps: result.info.total_steps, warnings: result.info.warnings, records: run.recordIds,
      held_out_ids: heldOutIds, held_out_records: heldOutIds ? recordsWithIds(run.records, heldOutIds) : null,
    },
    history: run.history,
    config_json: result.adapter.config_json,
    safetensors: result.adapter.safetensors,
  };
}

/** Keeps an adapter in this browser and lists it; rejects (listing nothing) when storing fails. */
export async function saveAdapter(adapter) {
  await store.putAdapter(adapter);
  adapters = [adapter, ...adapters.filter((a) => a.key !== adapter.key)];
  renderAdapters();
  return adapter;
}

/** Downloads an adapter as a PEFT zip. */
export function downloadAdapter(a) {
  download(peftZipName(a), peftZip(a), 'application/zip');
}

/** The weights' size in bytes: a Uint8Array or ArrayBuffer, or (adapters stored by earlier builds) a plain array of byte values. */
export const weightBytes = (w) => w?.byteLength ?? (Array.isArray(w) ? w.length : 0);

function summary(a) {
  const s = a.settings || {};
  const parts = [];
  if (s.lora) parts.push(`r ${s.lora.rank}, α ${s.lora.alpha}, ${(s.lora.targets || []).length} projections`);
  if (s.learning_rate) parts.push(`lr ${s.learning_rate}`);
  if (s.epochs) parts.push(`${s.epochs} epoch${s.epochs === 1 ? '' : 's'}`);
  if (a.info?.total_steps) parts.push(`${a.info.total_steps} steps`);
  const last = a.history?.steps?.at(-1);
  if (last) parts.push(`final loss ${fmt3.format(last.loss)}`);
  const ho = a.history?.held_out?.at(-1);
  if (ho) parts.push(`held-out ${fmt3.format(ho.loss)}`);
  const bytes = weightBytes(a.safetensors);
  parts.push(bytes >= 1e6 ? `${fmt1.format(bytes / 1e6)} MB` : `${fmt1.format(bytes / 1e3)} kB`);
  return parts.join(' · ');
}

function renderAdapters() {
  el['adapters-count'].textContent = adapters.length ? `${adapters.length} saved in this browser` : '';
  if (!adapters.length) {
    el['adapter-list'].replaceChildren(h('li', { class: 'hint empty', text: 'No adapters yet: train one above, or import a PEFT adapter.' }));
  } else {
    el['adapter-list'].replaceChildren(...adapters.map((a) => {
      const name = h('input', { type: 'text', class: 'adapter-name', 'aria-label': 'Adapter name', value: a.name });
      name.addEventListener('change', async () => {
        const before = a.name;
        const next = name.value.trim() || before;
        if (next === before) { name.value = before; return; }
        showError(el['adapter-error'], '');
        try {
          await store.putAdapter({ ...a, name: next });
        } catch (e) {
          name.value = before;
          showError(el['adapter-error'], `Could not rename “${before}”: ${storageProblem(e)}. It keeps its old name`);
          return;
        }
        a.name = next;
        name.value = next;
        app.emit('adapters', adapters);
      });
      const show = h('button', { type: 'button', class: 'quiet', text: 'Show loss', disabled: !a.history?.steps?.length, onclick: () => showLoss(a) });
      const exp = h('button', { type: 'button', text: 'Export PEFT zip', onclick: () => exportAdapter(a) });
      const del = h('button', {
        type: 'button', class: 'quiet danger-text', text: 'Delete',
        onclick: async () => {
          if (!confirm(`Delete the adapter “${a.name}” from this browser?`)) return;
          showError(el['adapter-error'], '');
          try {
            await store.deleteAdapter(a.key);
          } catch (e) {
            showError(el['adapter-error'], `Could not delete “${a.name}”: ${storageProblem(e)}. It is still kept`);
            return;
          }
          adapters = adapters.filter((x) => x.key !== a.key);
          renderAdapters();
          announce(`Adapter “${a.name}” deleted.`);
        },
      });
      return h('li', { class: 'adapter', dataset: { key: a.key } },
        h('div', { class: 'adapter-main' }, name,
          h('p', { class: 'hint', text: `${a.source === 'imported' ? 'Imported' : 'Trained'} ${new Date(a.created).toLocaleString()} on ${a.model || 'unknown model'}` }),
          h('p', { class: 'adapter-summary', text: summary(a) })),
        h('div', { class: 'actions' }, show, exp, del));
    }));
  }
  app.emit('adapters', adapters);
}

function exportAdapter(a) {
  downloadAdapter(a);
  announce('Adapter exported.');
}

async function importAdapter(files) {
  showError(el['adapter-error'], '');
  let config, weights;
  try {
    // Read, bounded and unzipped in the data worker: a large or hostile file never holds up the page.
    const request = files.length === 1 && /\.zip$/i.test(files[0].name)
      ? { zip: files[0] }
      : { config: files.find((f) => /adapter_config\.json$/i.test(f.name)) || files.find((f) => /\.json$/i.test(f.name)), weights: files.find((f) => /\.safetensors$/i.test(f.name)) };
    ({ config, weights } = await app.data.call('readAdapter', request));
  } catch (e) {
    showError(el['adapter-error'], sentence(String(e?.message || e)));
    return;
  }
  let parsed;
  try { parsed = JSON.parse(config); } catch { showError(el['adapter-error'], 'adapter_config.json is not valid JSON'); return; }
  if (!app.ready()) { showError(el['adapter-error'], app.blocker() || 'Load the base model first'); return; }
  const key = store.newKey();
  try {
    await app.runEngine('adapter', 'checking the adapter', 'check-adapter', { adapter: { key, config_json: config, safetensors: weights } });
  } catch (e) {
    showError(el['adapter-error'], e?.code === 'lost'
      ? `The engine stopped while checking the adapter (${sentence(e.message)}) Import it again once the model is loaded`
      : `This adapter does not fit ${app.state.modelName}: ${sentence(e.message)}`);
    return;
  }
  const a = {
    key, name: `${parsed.base_model_name_or_path ? `${parsed.base_model_name_or_path} ` : ''}r${parsed.r ?? '?'} (imported ${today()})`,
    created: new Date().toISOString(), model: app.state.modelName, source: 'imported',
    settings: { lora: { rank: parsed.r, alpha: parsed.lora_alpha, dropout: parsed.lora_dropout, targets: parsed.target_modules || [] } },
    info: {}, history: null, config_json: config, safetensors: weights,
  };
  try {
    await saveAdapter(a);
  } catch (e) {
    showError(el['adapter-error'], `The adapter fits ${app.state.modelName}, but it could not be kept in this browser: ${storageProblem(e)}. Nothing was imported; free some space (e.g. delete adapters you no longer need) and import it again`);
    return;
  }
  announce('Adapter imported and checked.');
}
