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

const dbPromise = openDB(DB_NAME, DB_VERSION, {
  async upgrade(db, oldVersion, _newVersion, tx) {
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
  // Another tab opened a newer version of the app: let it upgrade. This tab's later writes then
  // fail, and each caller reports the failure and keeps the work in memory (or offers a
  // download), so nothing typed here is lost; reloading picks up the new version.
  blocking() { dbPromise.then((db) => db.close()); },
});

export const db = () => dbPromise;
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
  const rows = await (await dbPromise).getAll('annotations');
  return rows.sort((a, b) => a.pos - b.pos);
}
export async function getAnnotation(key) { return (await dbPromise).get('annotations', key); }

/**
 * Writes `row` if the stored row is still at `row.rev` (0 or missing: a new row, which must not
 * exist yet). Resolves to one of
 *   {status: 'saved', row}          the written row, its rev bumped
 *   {status: 'conflict', current}   another tab wrote a newer version: nothing was written
 *   {status: 'deleted'}             another tab deleted it: nothing was written
 */
export async function saveAnnotation(row) {
  const tx = (await dbPromise).transaction('annotations', 'readwrite');
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
  const tx = (await dbPromise).transaction('annotations', 'readwrite');
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
  const tx = (await dbPromise).transaction(['annotations', 'trash'], 'readwrite');
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

/** The trash as batches, newest first: [{batch, label, deleted_at, count}]. */
export async function trashBatches() {
  const items = await (await dbPromise).getAll('trash');
  const byBatch = new Map();
  for (const it of items) {
    const b = byBatch.get(it.batch) || { batch: it.batch, label: it.label, deleted_at: it.deleted_at, count: 0 };
    b.count += 1;
    byBatch.set(it.batch, b);
  }
  return [...byBatch.values()].sort((a, b) => b.deleted_at - a.deleted_at);
}

/**
 * Puts a trashed batch back, each row at its old key and position with a fresh rev. A row whose
 * key is in use again is restored under a new key, so nothing is overwritten. Resolves to the
 * restored rows.
 */
export async function restoreTrashBatch(batch) {
  const tx = (await dbPromise).transaction(['annotations', 'trash'], 'readwrite');
  const ann = tx.objectStore('annotations');
  const trash = tx.objectStore('trash');
  const items = await trash.index('batch').getAll(batch);
  const restored = [];
  for (const it of items) {
    const taken = await ann.get(it.row.key);
    const row = { ...it.row, key: taken ? newKey() : it.row.key, rev: 1, updated: Date.now() };
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
  await (await dbPromise).clear('trash');
  announceChange('trash');
}

// ---- adapters ---------------------------------------------------------------------------------

export async function allAdapters() {
  const rows = await (await dbPromise).getAll('adapters');
  return rows.sort((a, b) => (a.created < b.created ? 1 : -1));
}
export async function getAdapter(key) { return (await dbPromise).get('adapters', key); }
export async function putAdapter(a) {
  const key = await (await dbPromise).put('adapters', a);
  announceChange('adapters', [a.key]);
  return key;
}
export async function deleteAdapter(key) {
  await (await dbPromise).delete('adapters', key);
  announceChange('adapters', [key]);
}

// ---- training runs and their checkpoints (one of each per run id) -----------------------------

/** Every kept run, newest first. */
export async function allRuns() {
  const rows = await (await dbPromise).getAll('runs');
  return rows.sort((a, b) => (a.started < b.started ? 1 : -1));
}
export async function getRun(key) { return (await dbPromise).get('runs', key); }
/** Writes the run `run.key`. */
export async function putRun(run) {
  await (await dbPromise).put('runs', run);
  announceChange('runs', [run.key]);
}
/** Deletes a run and its checkpoint together. */
export async function deleteRun(key) {
  const tx = (await dbPromise).transaction(['runs', 'checkpoints'], 'readwrite');
  await Promise.all([tx.objectStore('runs').delete(key), tx.objectStore('checkpoints').delete(key), tx.done]);
  announceChange('runs', [key]);
}
export async function getCheckpoint(runKey) { return (await dbPromise).get('checkpoints', runKey); }
export async function putCheckpoint(runKey, step, bytes) {
  return (await dbPromise).put('checkpoints', { run: runKey, step, bytes });
}

// ---- small values ------------------------------------------------------------------------------

export async function kvGet(key) { return (await dbPromise).get('kv', key); }
export async function kvSet(key, value) { return (await dbPromise).put('kv', value, key); }

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
