// The Annotate panel's shared state: the records in list order, the one in the editor, the
// engine's problems per record and the engine's reasoning-step tags; saving to IndexedDB with the
// "Saving… / Saved" indicator; and the notices the panel shows in words.
//
// Several tabs may edit the same records, so an edit is saved as a compare-and-set on the row's
// `rev` (store.saveAnnotation) and never as a blind overwrite:
// - each row's merge base is the record as this tab last loaded or saved it (`state.bases`);
// - when another tab saved the row meanwhile ('conflict'), the two versions are merged field by
//   field against that base: a field changed on one side only takes that side's value; a field
//   both sides changed to different values keeps both: the other tab's version stays as the
//   record and this tab's is added as a new record right after it (id suffixed "-copy"), with a
//   notice; then the save is tried again;
// - when another tab deleted the row ('deleted'), it stays deleted: this tab's edited version goes
//   to the trash, where it can be restored, with a notice.
// One save at a time per row: edits made while a save is under way are saved right after it.
// A save that fails (quota, storage closed by another tab's upgrade) is never dropped: the record
// stays in memory, the indicator says "Not saved" with the cause, the save is tried again with
// a growing pause (1 s … 60 s), closing the tab asks first, and "Export everything, as it is"
// writes every record, finished or not, to a file.
import { h, showError, getPref, setPref, removePref, prefKeys } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { storageProblem } from '../../lib/adapters.js';

export const state = {
  app: null,
  rows: [],               // [{key, pos, record, rev, updated}] in list order (by pos)
  selected: null,         // key of the record in the editor
  problems: new Map(),    // key → [{field, message}]
  dimensions: null,       // the reasoning-step tags in display order, from the engine's schema
  bases: new Map(),       // key → the record as this tab last loaded or saved it (the merge base)
};

/** The panel's elements by id, filled by index.js. */
export const el = {};

/**
 * What the other modules do when a save changed more than the edited record (index.js fills it):
 * `listChanged()` after rows came or went, `recordReplaced(row)` after a merge changed a record
 * in memory, `trashChanged()` after something went to the trash.
 */
export const hooks = { listChanged() {}, recordReplaced() {}, trashChanged() {} };

export const current = () => state.rows.find((r) => r.key === state.selected) || null;
export const rowsWithProblems = () => state.rows.filter((r) => state.problems.has(r.key));

export const clone = (v) => (v === undefined ? undefined : structuredClone(v));

// Canonical JSON (sorted keys) to tell an identical record from a different one.
export const canon = (v) => (Array.isArray(v) ? `[${v.map(canon).join(',')}]`
  : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
    : JSON.stringify(v ?? null));
const same = (a, b) => (a === undefined || b === undefined ? a === b : canon(a) === canon(b));

let chain = Promise.resolve();
/**
 * Runs `fn` once the list changes queued before it are done (another tab's changes being applied,
 * deletes, restores), one at a time, so that none of them works on a list another is changing.
 */
export function serial(fn) {
  const run = chain.then(fn);
  chain = run.catch(() => {});
  return run;
}

/** Adds rows to the list at their positions and takes their records as merge bases. */
export function adoptRows(rows) {
  for (const r of rows) {
    if (state.rows.some((x) => x.key === r.key)) continue;
    state.rows.push(r);
    state.bases.set(r.key, clone(r.record));
  }
  state.rows.sort((a, b) => a.pos - b.pos);
}

/** Takes rows out of the list (and their merge bases). */
export function dropRows(keys) {
  const gone = new Set(keys);
  state.rows = state.rows.filter((r) => !gone.has(r.key));
  for (const k of keys) state.bases.delete(k);
}

/** A position between `row` and the next record in the list. */
export function posAfter(row) {
  const next = state.rows.filter((r) => r.pos > row.pos).reduce((m, r) => Math.min(m, r.pos), Infinity);
  return Number.isFinite(next) ? row.pos + (next - row.pos) / 2 : row.pos + 1;
}

/** `base` made unique among the ids in the list ("x-copy", "x-copy-2", …). */
export function freeId(base) {
  const taken = new Set(state.rows.map((r) => r.record.id));
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

// ---- the saved indicator -----------------------------------------------------------------------

let saving = 0;
/** key → the row whose last save failed; each is tried again after `retryDelay()`. */
const failed = new Map();
let retryTimer = null;
let retryRound = 0;
const RETRY_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000, 60_000];

/** Whether anything typed here is not in the database yet (closing the tab asks first). */
export const hasUnsaved = () => saving > 0 || failed.size > 0 || state.rows.some((r) => !r.rev);

function markSaving() {
  saving += 1;
  if (failed.size) return; // the failure stays on show until it is saved
  showPending();
}
function showPending() {
  // An upgrade held up by an older tab: the writes wait for it, maybe for good, so "Saving…"
  // would be a promise the page cannot keep; the indicator says what to do instead.
  const waiting = store.waitingForOldTab();
  el['ann-saved'].dataset.state = waiting ? 'waiting' : 'saving';
  el['ann-saved'].textContent = waiting ? 'Not saved yet: another tab of cqa-studio (an older version) keeps this site’s storage open. Close or reload that tab and saving goes on by itself.' : 'Saving…';
}
// The hold-up may start after a save did (the `blocked` event comes once the open is under way).
store.onStorageNotice(() => { if (saving > 0 && !failed.size && el['ann-saved']) showPending(); });
function markSaved(ok, e) {
  saving -= 1;
  if (!ok) {
    const cause = storageProblem(e);
    el['ann-saved'].dataset.state = 'error';
    el['ann-saved'].textContent = `Not saved: ${cause}`;
    el['ann-saved'].title = 'Your text is kept in this page and saving is tried again; closing the tab asks first. Export everything keeps a copy as a file.';
    showError(el['ann-list-error'], `Could not save to this browser’s storage: ${cause}. What you typed is kept in this page and saving is tried again by itself; “Export everything, as it is” keeps a copy as a file`);
    return;
  }
  if (saving === 0 && failed.size === 0) {
    el['ann-saved'].dataset.state = 'saved';
    el['ann-saved'].textContent = `Saved ${new Date().toLocaleTimeString()}`;
    el['ann-saved'].title = '';
  }
}

/** The row `row` could not be saved: keep it, and try again later (the pause grows). */
function saveFailed(row) {
  failed.set(row.key, row);
  if (retryTimer) return;
  const delay = RETRY_DELAYS_MS[Math.min(retryRound, RETRY_DELAYS_MS.length - 1)];
  retryRound += 1;
  retryTimer = setTimeout(retryFailed, delay);
}

/** Rows stored by a write that failed (new rows, rev 0): saved again like a failed edit. */
export function keepTrying(rows) {
  for (const row of rows) saveFailed(row);
}

/** Tries every failed save again now. */
export function retryFailed() {
  clearTimeout(retryTimer);
  retryTimer = null;
  const rows = [...failed.values()];
  failed.clear();
  for (const row of rows) {
    // Still in the list (not deleted here meanwhile): save it again.
    if (state.rows.includes(row)) scheduleSave(row);
  }
}

function savedAgain() {
  retryRound = 0;
  if (!failed.size) showError(el['ann-list-error'], '');
}

/** Runs a storage write, showing its progress and any failure; resolves to whether it worked. */
export async function persist(fn) {
  markSaving();
  try {
    await fn();
    markSaved(true);
    wroteRecords();
    return true;
  } catch (e) {
    markSaved(false, e);
    return false;
  }
}

/** A message in the saved indicator's place. */
export function flash(message) {
  el['ann-saved'].dataset.state = 'saved';
  el['ann-saved'].textContent = message;
}

// ---- notices: what happened that the user did not do here, said once, politely --------------

/** Shows a notice above the editor (a polite live region) until dismissed; resolves nothing. */
export function notice(text, kind = 'info') {
  const box = el['ann-notices'];
  if (!box) return;
  const p = h('p', { class: `ann-notice ann-notice-${kind}` }, h('span', { text }),
    h('button', { type: 'button', class: 'quiet small', 'aria-label': 'Dismiss this notice', onclick: () => p.remove(), text: 'Dismiss' }));
  box.append(p);
  while (box.children.length > 5) box.firstElementChild.remove();
}

// ---- persistent storage: asked the first time records are saved in this browser -------------

let persistenceChecked = false;
async function wroteRecords() {
  if (persistenceChecked) return;
  persistenceChecked = true;
  let r;
  try { r = await store.ensurePersistent(); } catch { return; }
  const keep = 'Export your records as JSONL now and then to keep a copy.';
  if (r.askedNow && r.persisted) {
    notice('This browser now keeps your annotations even when the disk runs low (the app asked it to, so that they are never deleted to free space).');
  } else if (r.askedNow) {
    notice(`This browser may delete your annotations to free space when the disk runs low: asked to keep them, it declined. ${keep}`, 'warn');
  } else if (r.unsupported && !getPref('persist-unsupported-said', false)) {
    setPref('persist-unsupported-said', true);
    notice(`This browser cannot promise to keep your annotations when the disk runs low. ${keep}`, 'warn');
  }
}

// ---- saving edits: compare-and-set, merging with another tab's version ----------------------

const savers = new Map(); // key → {row, dirty, promise}

/** Saves `row` now, or right after the save of it already under way. */
export function scheduleSave(row) {
  const running = savers.get(row.key);
  if (running) { running.dirty = true; running.row = row; return running.promise; }
  const s = { row, dirty: true, promise: null };
  savers.set(row.key, s);
  s.promise = runSaver(s).finally(() => { if (savers.get(row.key) === s) savers.delete(row.key); });
  return s.promise;
}

/** Whether a save of `key` is under way or waiting. */
export const isSaving = (key) => savers.has(key);

/** Resolves once no save of `keys` is under way. */
export async function flushSaves(keys) {
  for (let i = 0; i < 20 && keys.some((k) => savers.has(k)); i++) {
    await Promise.all(keys.map((k) => savers.get(k)?.promise));
  }
}

const MAX_TRIES = 5;

async function runSaver(s) {
  markSaving();
  let tries = 0;
  try {
    while (s.dirty) {
      s.dirty = false;
      const outcome = await saveOnce(s.row);
      if (outcome === 'gone') break;
      if (outcome === 'merged') {
        // Someone else wrote in between: save the merged record again (a few times at most).
        if (++tries >= MAX_TRIES) throw new Error('another tab keeps changing this record at the same time; your edit is kept here and is saved with your next change');
        s.dirty = true;
      } else if (outcome === 'merged-same') {
        tries = 0; // the merge is exactly what is stored: nothing more to write for it
      } else tries = 0;
    }
    failed.delete(s.row.key);
    if (failed.size === 0) savedAgain();
    markSaved(true);
    if (journaled) keepUnsaved(); // what is stored now leaves the journal
    wroteRecords();
  } catch (e) {
    saveFailed(s.row);
    markSaved(false, e);
    // Into the journal at once, not only when the tab is hidden or frozen: a tab that dies with
    // no event (a crash, an out-of-memory kill, a discard whose freeze came too late to write)
    // still leaves the edit for the next tab to store.
    keepUnsaved();
  }
}

async function saveOnce(row) {
  const snapshot = clone(row.record);
  const res = await store.saveAnnotation({ key: row.key, pos: row.pos, record: snapshot, rev: row.rev });
  if (res.status === 'saved') {
    row.rev = res.row.rev;
    row.updated = res.row.updated;
    state.bases.set(row.key, snapshot);
    return 'saved';
  }
  if (res.status === 'conflict') return (await mergeWith(row, res.current)) ? 'merged' : 'merged-same';
  await keepDeletedEdit(row);
  return 'gone';
}

const FIELD_NAMES = {
  id: 'the id', genre: 'the genre', audience: 'the audience', brief: 'the brief', work: 'the work',
  reasoning: 'the reasoning steps', 'verdict.score': 'the score', 'verdict.summary': 'the verdict summary',
  revision: 'the revision', 'provenance.expert': 'the expert', 'provenance.knowledge_engineer': 'the knowledge engineer',
  'provenance.session': 'the session', 'provenance.date': 'the date', schema: 'the schema version', created: 'the creation time',
};
const fieldName = (path) => FIELD_NAMES[path] || path;
const list = (xs) => (xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`);

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Three-way merge of one value: [theirs winning conflicts, ours winning conflicts]; the paths
 * both sides changed to different values are pushed onto `conflicts`. Plain objects (the verdict,
 * the provenance) merge key by key; anything else (a string, the list of steps) is one field.
 */
function mergeValue(base, ours, theirs, path, conflicts) {
  if (same(ours, theirs) || same(ours, base)) return [theirs, theirs];
  if (same(theirs, base)) return [ours, ours];
  if (path === 'updated' && typeof ours === 'string' && typeof theirs === 'string') {
    const later = ours > theirs ? ours : theirs;
    return [later, later];
  }
  if (isObj(ours) && isObj(theirs)) {
    const b = isObj(base) ? base : {};
    const a = {};
    const o = {};
    const merged = new Map();
    for (const k of new Set([...Object.keys(theirs), ...Object.keys(ours)])) {
      merged.set(k, mergeValue(b[k], ours[k], theirs[k], path ? `${path}.${k}` : k, conflicts));
    }
    for (const k of new Set([...Object.keys(theirs), ...Object.keys(ours)])) if (merged.get(k)[0] !== undefined) a[k] = merged.get(k)[0];
    for (const k of new Set([...Object.keys(ours), ...Object.keys(theirs)])) if (merged.get(k)[1] !== undefined) o[k] = merged.get(k)[1];
    return [a, o];
  }
  conflicts.push(path);
  return [theirs, ours];
}

/** The merge of three versions of a record (also read by the browser tests). */
export function merge3(base, ours, theirs) {
  const conflicts = [];
  const [theirsWins, oursWins] = mergeValue(base, ours, theirs, '', conflicts);
  return { theirsWins: clone(theirsWins), oursWins: clone(oursWins), conflicts };
}

/**
 * Merges this tab's version of `row` with the stored one (`current`, written by another tab)
 * into `row`; resolves to whether the merged record differs from the stored one (so it must be
 * saved). Fields both changed: this tab's version becomes a new record right after it.
 * Everything up to the first await is synchronous, so no keystroke falls between the versions.
 */
async function mergeWith(row, current) {
  // No base (never happens for a loaded row): every difference counts as changed on both sides.
  const base = state.bases.has(row.key) ? state.bases.get(row.key) : {};
  const { theirsWins, oursWins, conflicts } = merge3(base, row.record, current.record);
  row.record = theirsWins;
  row.rev = current.rev;
  row.updated = current.updated;
  state.bases.set(row.key, clone(current.record));
  hooks.recordReplaced(row);
  if (conflicts.length) {
    // Shown at once and kept in memory; stored as a new row (rev 0: "must not exist yet"). Were
    // the add to fail, the copy stays in the list and the next edit of it stores it.
    const copy = { key: store.newKey(), pos: posAfter(row), record: { ...oursWins, id: freeId(`${oursWins.id || current.record.id || 'record'}-copy`) }, rev: 0 };
    adoptRows([copy]);
    const theirId = current.record.id || '(no id)';
    notice(`${theirId} was changed in another tab while you edited it here, and both changed ${list(conflicts.map(fieldName))}. `
      + `The other tab’s version stays as ${theirId}; yours is kept as a new record, ${copy.record.id}, right after it.`);
    hooks.listChanged();
    try {
      const [written] = await store.addAnnotations([{ key: copy.key, pos: copy.pos, record: clone(copy.record) }]);
      if (!copy.rev) { copy.rev = written.rev; copy.updated = written.updated; }
    } catch (e) {
      if (!copy.rev) throw e; // else an edit of the copy stored it first
    }
  }
  return !same(row.record, current.record);
}

/** Keys of rows whose edit went to the trash because another tab deleted them. */
export const trashedEdits = new Set();

/**
 * Another tab deleted `row` while it was edited here: it stays deleted, the edit goes to the
 * trash. The trash copy is written (one transaction) before the row leaves this page; were that
 * write to fail, the edit stays in the list as a new record, saved like any other.
 */
async function keepDeletedEdit(row) {
  const label = 'Edited after it was deleted in another tab';
  trashedEdits.add(row.key);
  // Out of the list (and the editor) first, so nothing more is typed into it.
  const edited = clone(row.record);
  const wasListed = state.rows.some((r) => r.key === row.key);
  const wasOpen = state.selected === row.key;
  if (wasListed) {
    const next = state.rows.find((r) => r.pos > row.pos && r.key !== row.key) || state.rows.filter((r) => r.key !== row.key).pop();
    dropRows([row.key]);
    if (wasOpen) state.selected = next?.key ?? null;
    hooks.listChanged();
  }
  try {
    await store.trashRecord(edited, row.pos, label);
  } catch (e) {
    // Kept here as a new record (rev 0: "must not exist yet"), so the next save stores it.
    const copy = { key: store.newKey(), pos: row.pos, record: edited, rev: 0 };
    adoptRows([copy]);
    failed.set(copy.key, copy);
    if (wasOpen) state.selected = copy.key;
    hooks.listChanged();
    notice(`${edited.id || 'A record'} was deleted in another tab while you edited it here, and your edited version could not be put in the Trash (${storageProblem(e)}): it stays here as a new record.`, 'warn');
    throw e;
  }
  notice(`${edited.id || 'A record'} was deleted in another tab while you edited it here. It stays deleted; your edited version is in the Trash (“${label}”), where you can restore it.`, 'warn');
  hooks.trashChanged();
}

/** Whether this tab's version of `row` holds edits the database does not have (e.g. a failed save). */
export const hasLocalEdits = (row) => !row.rev || failed.has(row.key) || !same(row.record, state.bases.get(row.key));

/**
 * Another tab saved a newer version of `row` while this tab holds edits of it that are not
 * stored (a save that failed): the two are merged as for a conflict, and the merge is saved.
 */
export async function mergeFromElsewhere(row, current) {
  failed.delete(row.key);
  const differs = await mergeWith(row, current);
  if (differs) scheduleSave(row);
}

// ---- edits kept through a freeze or a discard ---------------------------------------------------
// Chromium freezes a background tab (timers and IndexedDB callbacks stop) and may then discard it
// (the page goes, no handler runs). A save that waits for its retry, or one under way, cannot
// finish while frozen, and a save started on `freeze` would only hold the database locked for the
// other tabs. So when the tab is hidden, frozen or left, what it has not stored yet is written at
// once (localStorage is synchronous) under this tab's id; a tab of the app that opens later stores
// the edits of a tab that is gone (its Web Lock released) as that tab would have: compare-and-set
// on the version they were based on, merged with anything newer.
const TAB = store.newKey();
const JOURNAL = 'unsaved:';
const tabLock = (tab) => `cqa-studio-tab ${tab}`;
let journaled = false;
navigator.locks?.request(tabLock(TAB), () => new Promise(() => {})).catch(() => {});

/** Writes the records this tab has not stored yet to its journal (or clears it). */
export function keepUnsaved() {
  // Not stored: never stored (rev 0), a save failed, or a save under way (every edit starts one).
  const rows = state.rows.filter((r) => !r.rev || failed.has(r.key) || savers.has(r.key))
    .map((r) => ({ key: r.key, pos: r.pos, rev: r.rev || 0, record: r.record, base: state.bases.get(r.key) ?? null }));
  if (rows.length) setPref(JOURNAL + TAB, rows);
  else if (journaled) removePref(JOURNAL + TAB);
  journaled = rows.length > 0;
}

/**
 * Takes over the journals of tabs that are gone: their records join the list and are saved. A tab
 * whose lock is still held may be on its way out (a discarded or crashed renderer lets go of its
 * locks a moment later): its journal is taken once it lets go, which the lock's request waits for.
 */
export async function adoptOrphanedEdits() {
  const names = prefKeys(JOURNAL).filter((n) => n !== JOURNAL + TAB);
  if (!names.length || !navigator.locks?.query) return; // without Web Locks a live tab cannot be told from a gone one
  const held = new Set(((await navigator.locks.query()).held || []).map((l) => l.name));
  const lockOf = (name) => tabLock(name.slice(JOURNAL.length));
  adoptJournals(names.filter((n) => !held.has(lockOf(n))));
  for (const name of names.filter((n) => held.has(lockOf(n)))) {
    navigator.locks.request(lockOf(name), async () => adoptJournals([name])).catch(() => {});
  }
}

/** Adopts the journals `orphans` (of tabs that are gone). */
function adoptJournals(orphans) {
  const taken = [];
  for (const name of orphans) {
    for (const e of getPref(name, []) || []) {
      let row = state.rows.find((r) => r.key === e.key);
      if (row && taken.includes(row)) {
        // Two gone tabs edited one record: the second edit is kept as a new record after it.
        row = { key: store.newKey(), pos: posAfter(row), record: { ...e.record, id: freeId(`${e.record.id || 'record'}-copy`) }, rev: 0 };
        adoptRows([row]);
        taken.push(row);
        continue;
      }
      if (!row) { row = { key: e.key, pos: e.pos, record: e.record, rev: e.rev }; adoptRows([row]); }
      row.record = e.record;
      row.rev = e.rev;
      if (e.base) state.bases.set(e.key, e.base); else state.bases.delete(e.key);
      taken.push(row);
    }
  }
  if (taken.length) {
    for (const row of taken) scheduleSave(row);
    keepUnsaved(); // this tab's own journal holds them (being saved) before the gone tabs' go
  }
  for (const name of orphans) removePref(name);
}
