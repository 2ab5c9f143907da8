// Adapters shared by the panels: the pickers of the Compare and Calibrate panels, the PEFT zip an
// adapter exports as (adapter_config.json + adapter_model.safetensors, which
// `peft.PeftModel.from_pretrained` loads), and storage errors said in words.
import { zipSync, strToU8 } from '../vendor/fflate.js';
import { h, getPref, setPref } from './ui.js';

export function fillAdapterSelect(select, adapters, prefKey) {
  // The user's choice (kept across reloads) wins; until they choose, the newest adapter is used.
  const chosen = select.dataset.chosen === '1' ? select.value : getPref(prefKey, null);
  select.replaceChildren(
    h('option', { value: '', text: adapters.length ? 'None: the base model only' : 'None (train or import one in Train)' }),
    ...adapters.map((a) => h('option', { value: a.key, text: a.name })));
  if (chosen === '' || adapters.some((a) => a.key === chosen)) select.value = chosen;
  else select.value = adapters[0]?.key ?? '';
  if (!select.dataset.bound) {
    select.dataset.bound = '1';
    select.addEventListener('change', () => { select.dataset.chosen = '1'; setPref(prefKey, select.value); });
  }
}

/** The payload the worker wants for the chosen adapter, or null. */
export function adapterPayload(select, adapters) {
  const a = adapters.find((x) => x.key === select.value);
  return a ? { key: a.key, config_json: a.config_json, safetensors: a.safetensors } : null;
}

const slug = (s) => String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'adapter';

/** The file name an adapter downloads as. */
export const peftZipName = (a) => `${slug(a.name)}.zip`;

/**
 * An adapter as a PEFT zip: adapter_config.json and adapter_model.safetensors (stored, not
 * compressed: the weights do not compress), the layout `PeftModel.from_pretrained` reads once
 * unzipped.
 */
export function peftZip(a) {
  return zipSync({
    'adapter_config.json': strToU8(a.config_json),
    'adapter_model.safetensors': [new Uint8Array(a.safetensors), { level: 0 }],
  });
}

/**
 * Why a write to this browser's storage failed, in words (no full stop). `hint`: what is known
 * of this browser's storage (lib/storage-room.js), said when the browser's own error names no
 * cause (an AbortError of a private window's small store is only that word).
 */
export function storageProblem(e, hint = null) {
  const name = e?.name || '';
  const message = String(e?.message || e || '');
  if (name === 'QuotaExceededError' || /quota/i.test(message)) {
    return 'this browser has no room left for this site’s data (its storage quota is used up)';
  }
  if (name === 'InvalidStateError' || name === 'UnknownError' || /connection is closing|database.*(closed|deleted)/i.test(message)) {
    return `this browser’s storage for this site is unavailable (it may have been cleared meanwhile)${message ? `: ${message}` : ''}`;
  }
  if (hint) return `${hint} (the browser said: ${name || message || 'no reason'})`;
  if (name === 'AbortError') return `this browser stopped the write without giving a reason (AbortError); a private window or a profile kept in memory has far less room than it reports`;
  return message || 'this browser refused to store it';
}
