// Everything the user makes is kept in this browser's IndexedDB (through idb): annotations,
// adapters (with their settings and loss history), the checkpoint of a training run, and a few
// saved inputs. Nothing is sent anywhere.
import { openDB } from '/vendor/idb.js';

const dbPromise = openDB('cqa-studio', 1, {
  upgrade(db) {
    db.createObjectStore('annotations', { keyPath: 'key' }); // {key, pos, record}
    db.createObjectStore('adapters', { keyPath: 'key' });    // {key, name, created, model, settings, info, history, config_json, safetensors}
    db.createObjectStore('runs', { keyPath: 'key' });        // {key: 'current', …} the run that can be resumed
    db.createObjectStore('kv');                               // small saved values (an imported benchmark…)
  },
});

export const db = () => dbPromise;
export const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

export async function allAnnotations() {
  const rows = await (await dbPromise).getAll('annotations');
  return rows.sort((a, b) => a.pos - b.pos);
}
export async function putAnnotation(row) { return (await dbPromise).put('annotations', row); }
export async function putAnnotations(rows) {
  const tx = (await dbPromise).transaction('annotations', 'readwrite');
  await Promise.all([...rows.map((r) => tx.store.put(r)), tx.done]);
}
export async function deleteAnnotations(keys) {
  const tx = (await dbPromise).transaction('annotations', 'readwrite');
  await Promise.all([...keys.map((k) => tx.store.delete(k)), tx.done]);
}

export async function allAdapters() {
  const rows = await (await dbPromise).getAll('adapters');
  return rows.sort((a, b) => (a.created < b.created ? 1 : -1));
}
export async function getAdapter(key) { return (await dbPromise).get('adapters', key); }
export async function putAdapter(a) { return (await dbPromise).put('adapters', a); }
export async function deleteAdapter(key) { return (await dbPromise).delete('adapters', key); }

export async function getRun() { return (await dbPromise).get('runs', 'current'); }
export async function putRun(run) { return (await dbPromise).put('runs', { ...run, key: 'current' }); }
export async function deleteRun() { return (await dbPromise).delete('runs', 'current'); }

export async function kvGet(key) { return (await dbPromise).get('kv', key); }
export async function kvSet(key, value) { return (await dbPromise).put('kv', value, key); }
