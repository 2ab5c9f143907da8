// Everything the user makes is kept in this browser's IndexedDB (through idb): annotations,
// adapters (with their settings and loss history), training runs with their checkpoints, the
// trash of deleted records, and a few saved inputs. Nothing is sent anywhere.
//
// Several tabs of the app share one database, so:
// - every annotation row carries `rev`, bumped on each write; a write names the rev it was based
//   on and is refused (not applied) when the stored row moved on or was deleted meanwhile
//   (compare-and-set in one transaction), so no tab blindly overwrites another's newer edit;
// - every successful write is announced on a BroadcastChannel ('cqa-studio-store'), so the other
//   tabs reload what changed (`onChange`);
// - runs and checkpoints are keyed by run, so two runs never share a checkpoint.
import { openDB } from '../vendor/idb.js';

const DB_NAME = 'cqa-studio';
const DB_VERSION = 2;

// ---- the database, reopened when it was closed or failed to open --------------------------------

// What the user should know about the database itself, in a sentence (`onStorageNotice`).
const noticeListeners = new Set();
/** Calls `fn(sentence)` when the database is held up or closed by another tab, or fails to open. */
export function onStorageNotice(fn) { noticeListeners.add(fn); return () => noticeListeners.delete(fn); }
function say(sentence) { for (const fn of noticeListeners) fn(sentence); }

export const BLOCKED_SENTENCE = 'Saving waits for another tab of cqa-studio that still has this site’s storage open with an older version: close that tab (or reload it) and saving goes on by itself.';
export const CLOSED_SENTENCE = 'A newer version of cqa-studio opened in another tab and needed this tab’s storage closed: what you type here is kept in this page and saving is retried, but reload this tab to save again (or use “Export everything, as it is”).';

const upgrades = {
  async run(db, oldVersion, _newVersion, tx) {
    if (oldVersion < 1) {
      db.createObjectStore('annotations', { keyPath: 'key' }); // {key, pos, record, rev, updated}
      db.createObjectStore('adapters', { keyPath: 'key' });    // {key, name, created, model, settings, info, history, config_json, safetensors}
      db.createObjectStore('runs', { keyPath: 'key' });        // {key: run id, status, model, config, records, history, …}
      db.createObjectStore('kv');                               // small saved values (an imported benchmark…)
    }
    if (oldVersion < 2) {
      db.createObjectStore('checkpoints', { keyPath: 'run' });  // {run, step, bytes}
      const trash = db.createObjectStore('trash', { keyPath: 'key' }); // {key, batch, label, deleted_at, row}
      trash.createIndex('batch', 'batch');
      if (oldVersion >= 1) {
        // Version 1 kept one run under 'current' and its checkpoint in kv: give it a run id.
        const runs = tx.objectStore('runs');
        const old = await runs.get('current');
        if (old) {
          const id = newKey();
          await runs.delete('current');
          await runs.put({ ...old, key: id });
          const cp = await tx.objectStore('kv').get('run-checkpoint');
          if (cp && cp.bytes) await tx.objectStore('checkpoints').put({ run: id, step: cp.step, bytes: cp.bytes });
        }
        await tx.objectStore('kv').delete('run-checkpoint');
        let cursor = await tx.objectStore('annotations').openCursor();
        while (cursor) {
          if (!Number.isInteger(cursor.value.rev)) await cursor.update({ ...cursor.value, rev: 1 });
          cursor = await cursor.continue();
        }
      }
    }
  },
};

let opening = null; // the open database's promise; null: open it on next use
let blocked = false; // this open waits for an older tab to let go (`blocked`), until it opens
/**
 * Whether the database's upgrade is held up by another tab (an older version of the app still
 * holding it open): writes wait, maybe for good, so the page says "Not saved yet", not "Saving…".
 */
export const waitingForOldTab = () => blocked;

/** The database, opened (again, if it was closed or failed to open) when needed. */
function open() {
  if (opening) return opening;
  const attempt = openDB(DB_NAME, DB_VERSION, {
    upgrade: (...args) => upgrades.run(...args),
    // An older tab keeps the database open at an older version: this upgrade waits for it,
    // and "Saving…" would stay with no word why.
    blocked() { blocked = true; say(BLOCKED_SENTENCE); },
    // Another tab opened a newer version of the app: let it upgrade. This tab's later writes
    // fail (each caller keeps the work in memory and says so), and the next use tries to open
    // again, which says what to do.
    blocking() {
      attempt.then((db) => db.close()).catch(() => {});
      if (opening === attempt) opening = null;
      say(CLOSED_SENTENCE);
    },
    // The browser closed it (storage cleared, a crash of its storage process): open anew next time.
    terminated() { if (opening === attempt) opening = null; },
  });
  opening = attempt;
  const unblocked = () => { blocked = false; };
  attempt.then(unblocked, unblocked);
  // A failed open (a migration that threw, storage unavailable) is not kept for the page's life:
  // the next use tries again.
  attempt.catch((e) => {
    if (opening === attempt) opening = null;
    say(`This browser’s storage for cqa-studio could not be opened (${e?.message || e}); what you type is kept in this page, and saving is tried again.`);
  });
  return attempt;
}

export const db = () => open();
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// ---- changes between tabs ---------------------------------------------------------------------

// {store: 'annotations' | 'trash' | 'adapters' | 'runs', keys?: [...]}: what changed.
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('cqa-studio-store') : null;
const changeListeners = new Set();
if (channel) channel.onmessage = (e) => { for (const fn of changeListeners) fn(e.data || {}); };

/** Calls `fn({store, keys})` when another tab of this origin changed the store. */
export function onChange(fn) { changeListeners.add(fn); return () => changeListeners.delete(fn); }
function announceChange(store, keys) { try { channel?.postMessage({ store, keys }); } catch { /* closing */ } }

// ---- annotations ------------------------------------------------------------------------------

export async function allAnnotations() {
  const rows = await (await open()).getAll('annotations');
  return rows.sort((a, b) => a.pos - b.pos);
}
export async function getAnnotation(key) { return (await open()).get('annotations', key); }

/**
 * Writes `row` if the stored row is still at `row.rev` (0 or missing: a new row, which must not
 * exist yet). Resolves to one of
 *   {status: 'saved', row}          the written row, its rev bumped
 *   {status: 'conflict', current}   another tab wrote a newer version: nothing was written
 *   {status: 'deleted'}             another tab deleted it: nothing was written
 */
export async function saveAnnotation(row) {
  const tx = (await open()).transaction('annotations', 'readwrite');
  const current = await tx.store.get(row.key);
  const base = row.rev || 0;
  let outcome;
  if (!current && base > 0) outcome = { status: 'deleted' };
  else if (current && current.rev !== base) outcome = { status: 'conflict', current };
  else {
    const written = { ...row, rev: base + 1, updated: Date.now() };
    await tx.store.put(written);
    outcome = { status: 'saved', row: written };
  }
  await tx.done;
  if (outcome.status === 'saved') announceChange('annotations', [row.key]);
  return outcome;
}

/** Adds new rows (rev 1) in one transaction; resolves to the written rows. */
export async function addAnnotations(rows) {
  const now = Date.now();
  const written = rows.map((r) => ({ ...r, rev: 1, updated: now }));
  const tx = (await open()).transaction('annotations', 'readwrite');
  await Promise.all([...written.map((r) => tx.store.add(r)), tx.done]);
  announceChange('annotations', written.map((r) => r.key));
  return written;
}

// ---- trash: deleted records stay restorable across reloads until the trash is emptied -------

/**
 * Moves the rows with `keys` into the trash as one batch (restorable together), in one
 * transaction with their removal. Resolves to the batch id.
 */
export async function trashAnnotations(keys, label) {
  const batch = newKey();
  const deletedAt = Date.now();
  const tx = (await open()).transaction(['annotations', 'trash'], 'readwrite');
  const ann = tx.objectStore('annotations');
  const trash = tx.objectStore('trash');
  for (const key of keys) {
    const row = await ann.get(key);
    if (!row) continue;
    await trash.put({ key: newKey(), batch, label, deleted_at: deletedAt, row });
    await ann.delete(key);
  }
  await tx.done;
  announceChange('annotations', keys);
  announceChange('trash');
  return batch;
}

/**
 * Puts a record that is not stored as a row (an edit of a row another tab deleted) straight into
 * the trash, as a batch of its own, in one transaction: it is in the trash, or (the write
 * failed) still with the caller. Resolves to the batch id.
 */
export async function trashRecord(record, pos, label) {
  const batch = newKey();
  const tx = (await open()).transaction('trash', 'readwrite');
  const row = { key: newKey(), pos, record, rev: 1, updated: Date.now() };
  await Promise.all([tx.store.put({ key: newKey(), batch, label, deleted_at: Date.now(), row }), tx.done]);
  announceChange('trash');
  return batch;
}

/** The trash as batches, newest first: [{batch, label, deleted_at, count}]. */
export async function trashBatches() {
  const items = await (await open()).getAll('trash');
  const byBatch = new Map();
  for (const it of items) {
    const b = byBatch.get(it.batch) || { batch: it.batch, label: it.label, deleted_at: it.deleted_at, count: 0 };
    b.count += 1;
    byBatch.set(it.batch, b);
  }
  return [...byBatch.values()].sort((a, b) => b.deleted_at - a.deleted_at);
}

/**
 * Puts a trashed batch back, each row at its old key and position, its rev one past the one it
 * was deleted at. A row whose
 * key is in use again is restored under a new key, so nothing is overwritten. Resolves to the
 * restored rows.
 */
export async function restoreTrashBatch(batch) {
  const tx = (await open()).transaction(['annotations', 'trash'], 'readwrite');
  const ann = tx.objectStore('annotations');
  const trash = tx.objectStore('trash');
  const items = await trash.index('batch').getAll(batch);
  const restored = [];
  for (const it of items) {
    const taken = await ann.get(it.row.key);
    // The rev goes on from the deleted row's, never back to 1: a tab still holding the row at
    // its old rev must be refused by compare-and-set, not overwrite the restored text.
    const row = { ...it.row, key: taken ? newKey() : it.row.key, rev: (Number(it.row.rev) || 0) + 1, updated: Date.now() };
    await ann.put(row);
    await trash.delete(it.key);
    restored.push(row);
  }
  await tx.done;
  announceChange('annotations', restored.map((r) => r.key));
  announceChange('trash');
  return restored;
}

export async function emptyTrash() {
  await (await open()).clear('trash');
  announceChange('trash');
}

// ---- adapters ---------------------------------------------------------------------------------

export async function allAdapters() {
  const rows = await (await open()).getAll('adapters');
  return rows.sort((a, b) => (a.created < b.created ? 1 : -1));
}
export async function getAdapter(key) { return (await open()).get('adapters', key); }
export async function putAdapter(a) {
  const key = await (await open()).put('adapters', a);
  announceChange('adapters', [a.key]);
  return key;
}
export async function deleteAdapter(key) {
  await (await open()).delete('adapters', key);
  announceChange('adapters', [key]);
}

// ---- training runs and their checkpoints (one of each per run id) -----------------------------

/** Every kept run, newest first. */
export async function allRuns() {
  const rows = await (await open()).getAll('runs');
  return rows.sort((a, b) => (a.started < b.started ? 1 : -1));
}
export async function getRun(key) { return (await open()).get('runs', key); }
/** Writes the run `run.key`. */
export async function putRun(run) {
  await (await open()).put('runs', run);
  announceChange('runs', [run.key]);
}
/** Deletes a run and its checkpoint together. */
export async function deleteRun(key) {
  const tx = (await open()).transaction(['runs', 'checkpoints'], 'readwrite');
  await Promise.all([tx.objectStore('runs').delete(key), tx.objectStore('checkpoints').delete(key), tx.done]);
  announceChange('runs', [key]);
}
export async function getCheckpoint(runKey) { return (await open()).get('checkpoints', runKey); }
export async function putCheckpoint(runKey, step, bytes) {
  return (await open()).put('checkpoints', { run: runKey, step, bytes });
}

// ---- small values ------------------------------------------------------------------------------

export async function kvGet(key) { return (await open()).get('kv', key); }
export async function kvSet(key, value) { return (await open()).put('kv', value, key); }
export async function kvDelete(key) { return (await open()).delete('kv', key); }

// ---- storage the browser may not evict --------------------------------------------------------

/**
 * Asks the browser once to keep this origin's storage under disk pressure (the first time the
 * user saves work). Resolves to {persisted, askedNow}: whether storage is persistent now, and
 * whether this call asked (so the caller can say why once).
 */
export async function ensurePersistent() {
  const s = navigator.storage;
  if (!s?.persisted || !s?.persist) return { persisted: false, askedNow: false, unsupported: true };
  if (await s.persisted()) return { persisted: true, askedNow: false };
  let asked = false;
  try { asked = Boolean(await kvGet('persist-asked')); } catch { /* storage gone */ }
  if (asked) return { persisted: false, askedNow: false };
  try { await kvSet('persist-asked', true); } catch { /* still ask */ }
  return { persisted: await s.persist(), askedNow: true };
}

/** {usage, quota} in bytes, or null where the browser does not say. */
export async function storageEstimate() {
  try {
    const e = await navigator.storage?.estimate?.();
    return e && Number.isFinite(e.quota) ? { usage: e.usage || 0, quota: e.quota } : null;
  } catch { return null; }
}
