// Whether this browser can keep what a training run makes. A private window, or a browser
// profile kept in memory (Playwright's default context is one), keeps this site's data in a store
// that refuses a large value with a bare AbortError (measured in Chromium's: a value of 80 MB
// taken, one of 160 MB refused), while `navigator.storage.estimate()` there still reports
// gigabytes. So the room is measured, once per profile: a write of the size a default run keeps
// (its checkpoint and its adapter) into IndexedDB, deleted at once. Where that write fails, the
// Train panel says so before a run, no model copy is kept that would take the adapter's room,
// and a failed save names this cause. A profile that took the write is not asked again (the
// answer is kept); a private window starts empty, so it is measured anew.
import { kvGet, kvSet, kvDelete, storageEstimate } from './store.js';

/** What a run of the panel's defaults on the default model keeps: a 59 MB checkpoint and a 20 MB adapter. */
export const PROBE_BYTES = 80 * 1024 * 1024;
const PROBE_KEY = 'storage-room-probe';
const ANSWER_KEY = 'storage-room';

const measured = { promise: null };

/**
 * Resolves to {small, persisted, quota, usage, probeBytes, problem}: `small` when a write of
 * `probeBytes` was refused (`problem`: the browser's words), whatever the quota says.
 */
export function storageRoom() {
  measured.promise ??= (async () => {
    const persisted = await navigator.storage?.persisted?.().catch(() => false) ?? false;
    const estimate = await storageEstimate();
    const known = await kvGet(ANSWER_KEY).catch(() => null);
    if (known?.probeBytes === PROBE_BYTES && !known.small) return { ...known, persisted, quota: estimate?.quota ?? null, usage: estimate?.usage ?? null };
    let problem = null;
    try {
      await kvSet(PROBE_KEY, new Uint8Array(PROBE_BYTES));
    } catch (e) {
      problem = e?.name || e?.message || String(e);
    }
    await kvDelete(PROBE_KEY).catch(() => {});
    if (problem === null) await kvSet(ANSWER_KEY, { small: false, probeBytes: PROBE_BYTES, problem: null }).catch(() => {});
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
