// The Train panel's adapters, kept in IndexedDB: the list (rename, show loss, export as a PEFT
// zip, delete), saving a trained one, and importing a PEFT adapter (checked by merging it once).
import { zipSync, unzipSync, strToU8 } from '/vendor/fflate.js';
import { $, h, announce, showError, sentence, download, fmt3, fmt1, today, fileBytes } from '../lib/ui.js';
import * as store from '../lib/store.js';

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
    if (files.length) importAdapter(files);
  });
  loadAdapters();
}

/** The saved adapters, newest first. */
export const list = () => adapters;

async function loadAdapters() {
  try { adapters = await store.allAdapters(); } catch { adapters = []; }
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
 * Saves the adapter of a finished run (`result` of the 'train' request; `run` the run record).
 * Its info keeps the held-out records (their ids, and the records as trained), so the
 * Calibrate panel can measure agreement on records this adapter never saw.
 */
export async function saveTrained(result, run) {
  const c = result.info.config || run.config;
  const heldOutIds = result.info.held_out_ids || run.heldOutIds || null;
  const when = new Date();
  const adapter = {
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
  await store.putAdapter(adapter);
  adapters.unshift(adapter);
  renderAdapters();
  return adapter;
}

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
  parts.push(`${fmt1.format((a.safetensors?.byteLength || 0) / 1e6)} MB`);
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
        a.name = name.value.trim() || a.name;
        await store.putAdapter(a).catch(() => {});
        app.emit('adapters', adapters);
      });
      const show = h('button', { type: 'button', class: 'quiet', text: 'Show loss', disabled: !a.history?.steps?.length, onclick: () => showLoss(a) });
      const exp = h('button', { type: 'button', text: 'Export PEFT zip', onclick: () => exportAdapter(a) });
      const del = h('button', {
        type: 'button', class: 'quiet danger-text', text: 'Delete',
        onclick: async () => {
          if (!confirm(`Delete the adapter “${a.name}” from this browser?`)) return;
          await store.deleteAdapter(a.key).catch(() => {});
          adapters = adapters.filter((x) => x.key !== a.key);
          renderAdapters();
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

const slug = (s) => String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'adapter';

function exportAdapter(a) {
  const zip = zipSync({
    'adapter_config.json': strToU8(a.config_json),
    'adapter_model.safetensors': [new Uint8Array(a.safetensors), { level: 0 }],
  });
  download(`${slug(a.name)}.zip`, zip, 'application/zip');
  announce('Adapter exported.');
}

async function importAdapter(files) {
  showError(el['adapter-error'], '');
  let config, weights;
  try {
    if (files.length === 1 && /\.zip$/i.test(files[0].name)) {
      const entries = unzipSync(await fileBytes(files[0]));
      const find = (n) => Object.keys(entries).find((k) => k === n || k.endsWith(`/${n}`));
      const c = find('adapter_config.json');
      const w = find('adapter_model.safetensors');
      if (!c || !w) throw new Error(`${files[0].name} must hold adapter_config.json and adapter_model.safetensors`);
      config = new TextDecoder().decode(entries[c]);
      weights = entries[w];
    } else {
      const c = files.find((f) => /adapter_config\.json$/i.test(f.name)) || files.find((f) => /\.json$/i.test(f.name));
      const w = files.find((f) => /\.safetensors$/i.test(f.name));
      if (!c || !w) throw new Error('choose a PEFT zip, or adapter_config.json together with adapter_model.safetensors');
      config = await c.text();
      weights = await fileBytes(w);
    }
  } catch (e) {
    showError(el['adapter-error'], e.message.startsWith('invalid zip') ? 'That file is not a readable zip archive' : e.message);
    return;
  }
  let parsed;
  try { parsed = JSON.parse(config); } catch { showError(el['adapter-error'], 'adapter_config.json is not valid JSON'); return; }
  if (!app.ready()) { showError(el['adapter-error'], app.blocker() || 'Load the base model first'); return; }
  const key = store.newKey();
  try {
    await app.runEngine('adapter', 'checking the adapter', 'check-adapter', { adapter: { key, config_json: config, safetensors: weights } });
  } catch (e) {
    showError(el['adapter-error'], `This adapter does not fit ${app.state.modelName}: ${sentence(e.message)}`);
    return;
  }
  const a = {
    key, name: `${parsed.base_model_name_or_path ? `${parsed.base_model_name_or_path} ` : ''}r${parsed.r ?? '?'} (imported ${today()})`,
    created: new Date().toISOString(), model: app.state.modelName, source: 'imported',
    settings: { lora: { rank: parsed.r, alpha: parsed.lora_alpha, dropout: parsed.lora_dropout, targets: parsed.target_modules || [] } },
    info: {}, history: null, config_json: config, safetensors: weights,
  };
  await store.putAdapter(a);
  adapters.unshift(a);
  renderAdapters();
  announce('Adapter imported and checked.');
}
