// Fills the adapter pickers of the Compare and Calibrate panels and resolves the chosen one.
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
