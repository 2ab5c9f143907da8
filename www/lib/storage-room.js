// Whether this browser can keep what a training run makes. A private window, or a browser
// profile kept in memory (Playwright's default context is one), stores this site's data in a
// small temporary store, yet `navigator.storage.estimate()` there still reports gigabytes: a run of
// 13 minutes then ended with its adapter refused. So the room is measured, once per page: a write
// of the size a default run keeps (its checkpoint and its adapter) into IndexedDB, deleted at once.
// Where that write fails, the page says so before training, keeps no model copy that would take
// the adapter's room, and names this cause when a save fails.
import { kvSet, kvDelete, storageEstimate } from './store.js';

/** What a run of the panel's defaults on the default model keeps: a 59 MB checkpoint and a 20 MB adapter. */
export const PROBE_BYTES = 80 * 1024 * 1024;
const PROBE_KEY = 'storage-room-probe';

const measured = { promise: null };

/**
 * Resolves to {small, persisted, quota, usage, probeBytes, problem}: `small` when a write of
 * `probeBytes` was refused (`problem`: the browser's words), whatever the quota says.
 */
export function storageRoom() {
  measured.promise ??= (async () => {
    const persisted = await navigator.storage?.persisted?.().catch(() => false) ?? false;
    const estimate = await storageEstimate();
    let problem = null;
    try {
      await kvSet(PROBE_KEY, new Uint8Array(PROBE_BYTES));
    } catch (e) {
      problem = e?.name || e?.message || String(e);
    }
    await kvDelete(PROBE_KEY).catch(() => {});
    return { small: problem !== null, persisted, quota: estimate?.quota ?? null, usage: estimate?.usage ?? null, probeBytes: PROBE_BYTES, problem };
  })();
  return measured.promise;
}

/** The sentence that explains small storage (without a full stop), or null when there is room. */
export async function storageWarning() {
  let room;
  try { room = await storageRoom(); } catch { return null; }
  if (!room.small) return null;
  return `this browser keeps this site’s data in a small or temporary store (a private window, or a browser profile kept in memory): it refused a ${Math.round(room.probeBytes / 1e6)} MB test write although it reports ${room.quota ? `${(room.quota / 1e9).toFixed(1)} GB` : 'more'} free. A trained adapter may not be kept here: download it when training ends (it is offered then), or train in a normal window`;
}
