// Small DOM and formatting helpers shared by the panels. User text only ever goes into the page
// through textContent, attributes or DOM nodes built here: never through innerHTML.

export const $ = (id) => document.getElementById(id);

/** h('div', {class: 'x', title: 't', onclick: fn}, child, 'text', …) → element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const fmtInt = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
export const fmt1 = new Intl.NumberFormat('en', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
export const fmt2 = new Intl.NumberFormat('en', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const fmt3 = new Intl.NumberFormat('en', { minimumFractionDigits: 3, maximumFractionDigits: 3 });
export const mb = (bytes) => `${fmt1.format(bytes / 1e6)} MB`;
export const num = (x, f = fmt2) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : f.format(x));
export const pval = (p) => (p === null || p === undefined || !Number.isFinite(p) ? '–' : p < 0.001 ? p.toExponential(1) : fmt3.format(p));

export function duration(s) {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Ends a message with a full stop and capitalises it, so engine errors read as sentences. */
export function sentence(text) {
  let t = String(text || 'Something went wrong').trim();
  t = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(t) ? t : `${t}.`;
}

let announcer;
export function announce(message) {
  announcer ||= $('announcer');
  if (!announcer) return;
  announcer.textContent = '';
  requestAnimationFrame(() => { announcer.textContent = message; });
}

/** Shows (or, with '', clears) a message in an alert region. */
/**
 * Replaces `parent`'s children with `nodes`, however many: a spread into replaceChildren() passes
 * each node as an argument, and engines refuse past ~100k arguments.
 */
export function replaceAll(parent, nodes) {
  parent.replaceChildren();
  for (let i = 0; i < nodes.length; i += 10_000) parent.append(...nodes.slice(i, i + 10_000));
}

export function showError(target, message) {
  target.textContent = message ? sentence(message) : '';
}

export function download(name, data, type = 'application/octet-stream') {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export const nowIso = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
export const today = () => new Date().toISOString().slice(0, 10);

/** Reads a number input against a rule; marks it invalid and returns null when it fails. */
export function readNumber(input, { min, max, integer, above } = {}) {
  const raw = input.value.trim();
  const n = Number(raw);
  const ok = raw !== '' && Number.isFinite(n) && (!integer || Number.isInteger(n))
    && (min === undefined || n >= min) && (max === undefined || n <= max) && (above === undefined || n > above);
  input.setAttribute('aria-invalid', ok ? 'false' : 'true');
  return ok ? n : null;
}

// ---- drafts ----------------------------------------------------------------------------------
// Every [data-autosave] control is written to localStorage as the user types (restored on load),
// so a reload never loses a draft.

const PREFIX = 'cqa-studio:';
export const storage = (() => {
  try {
    localStorage.setItem(PREFIX + '__probe', '1');
    localStorage.removeItem(PREFIX + '__probe');
    return localStorage;
  } catch {
    return null;
  }
})();
export const getPref = (key, fallback = null) => { try { const v = storage?.getItem(PREFIX + key); return v === null || v === undefined ? fallback : JSON.parse(v); } catch { return fallback; } };
export const setPref = (key, value) => { try { storage?.setItem(PREFIX + key, JSON.stringify(value)); } catch { /* quota: keep going */ } };
export const removePref = (key) => { try { storage?.removeItem(PREFIX + key); } catch { /* storage gone */ } };
/** The saved keys that start with `prefix`. */
export const prefKeys = (prefix) => { try { return Object.keys(storage || {}).filter((k) => k.startsWith(PREFIX + prefix)).map((k) => k.slice(PREFIX.length)); } catch { return []; } };

const pending = new Map();
function saveControl(c) {
  pending.delete(c);
  if (!storage) return;
  try { storage.setItem(PREFIX + 'draft:' + c.dataset.autosave, c.type === 'checkbox' ? String(c.checked) : c.value); } catch { /* quota */ }
}
export function flushDrafts() { for (const [c, t] of pending) { clearTimeout(t); saveControl(c); } }

/** Restores and then follows every [data-autosave] control under `root`. */
export function autosave(root = document) {
  for (const c of root.querySelectorAll('[data-autosave]')) {
    if (c.dataset.autosaveBound) continue;
    c.dataset.autosaveBound = '1';
    const saved = storage?.getItem(PREFIX + 'draft:' + c.dataset.autosave);
    if (saved !== null && saved !== undefined) {
      if (c.type === 'checkbox') c.checked = saved === 'true';
      else if (c.tagName === 'SELECT') { if ([...c.options].some((o) => o.value === saved)) c.value = saved; }
      else c.value = saved;
    }
    const evt = c.type === 'checkbox' || c.tagName === 'SELECT' ? 'change' : 'input';
    c.addEventListener(evt, () => { clearTimeout(pending.get(c)); pending.set(c, setTimeout(() => saveControl(c), 250)); });
  }
}
addEventListener('pagehide', flushDrafts);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') flushDrafts(); });

/** A progress bar + label pair. */
export function setProgress(bar, label, loaded, total, text) {
  if (total > 0) { bar.max = total; bar.value = Math.min(loaded, total); } else bar.removeAttribute('value');
  if (label) label.textContent = text;
}

/** Reads a File (or Blob) to bytes. */
export const fileBytes = async (f) => new Uint8Array(await f.arrayBuffer());

/** CSS custom property value, for charts that draw on canvas. */
export const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
