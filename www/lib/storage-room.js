// Whether this browser can keep what a training run makes, and for how long. Chromium hides a
// private window (or a browser profile kept in memory: Playwright's default context is one): there
// `navigator.storage.estimate()` reports the same gigabytes, `persisted()` says false as it does in
// a normal profile, and writes succeed, but everything is gone when the window closes. What tells
// it apart is measured: its in-memory IndexedDB refuses any single value over about 127 MB with an
// UnknownError (measured in Debian's Chromium: 120 MB taken, 127 MB refused, cumulative 240 MB
// taken), which an on-disk profile takes. So the room is measured once per profile with writes
// into IndexedDB, each deleted at once:
// - one of TEMPORARY_PROBE_BYTES: taken means an on-disk store with room;
// - refused, then one of PROBE_BYTES (what a default run keeps: its checkpoint and its adapter):
//   taken after a non-quota refusal means a temporary store with room (`temporary`); refused
//   means too little room (`small`).
// The Train panel says either before a run and offers checkpoints as files; where storage is
// small no model copy is kept that would take the adapter's room, and a failed save names the
// cause. An answer that found room is kept (a private window starts empty, so it is measured anew).
import { kvGet, kvSet, kvDelete, storageEstimate } from './store.js';

/** What a run of the panel's defaults on the default model keeps: a 59 MB checkpoint and a 20 MB adapter. */
export const PROBE_BYTES = 80 * 1024 * 1024;
/** Over what a store kept in memory takes as one value (see above). */
export const TEMPORARY_PROBE_BYTES = 128 * 1024 * 1024;
const PROBE_KEY = 'storage-room-probe';
const ANSWER_KEY = 'storage-room';
const ANSWER_VERSION = 2;

const measured = { promise: null };

/** The browser's name for a refused write of `bytes` into IndexedDB, or null when it was taken. */
async function refusal(bytes) {
  let problem = null;
  try {
    await kvSet(PROBE_KEY, new Uint8Array(bytes));
  } catch (e) {
    problem = e?.name || e?.message || String(e);
  }
  await kvDelete(PROBE_KEY).catch(() => {});
  return problem;
}

/**
 * Resolves to {small, temporary, persisted, quota, usage, probeBytes, problem}: `small` when a
 * write of `probeBytes` was refused (`problem`: the browser's words), whatever the quota says;
 * `temporary` when the store is one kept in memory, gone when the window closes.
 */
export function storageRoom() {
  measured.promise ??= (async () => {
    const persisted = await navigator.storage?.persisted?.().catch(() => false) ?? false;
    const estimate = await storageEstimate();
    const now = { persisted, quota: estimate?.quota ?? null, usage: estimate?.usage ?? null, probeBytes: PROBE_BYTES };
    const known = await kvGet(ANSWER_KEY).catch(() => null);
    if (known?.version === ANSWER_VERSION && !known.small) return { ...known, ...now };
    const large = await refusal(TEMPORARY_PROBE_BYTES);
    const problem = large === null ? null : await refusal(PROBE_BYTES);
    // A quota refusal of the large write is a store on disk that is merely full-ish.
    const temporary = large !== null && problem === null && large !== 'QuotaExceededError';
    const answer = { version: ANSWER_VERSION, small: problem !== null, temporary: temporary || (problem !== null && problem !== 'QuotaExceededError'), problem };
    if (!answer.small) await kvSet(ANSWER_KEY, answer).catch(() => {});
    return { ...answer, ...now };
  })();
  return measured.promise;
}

/** The sentence that explains small or temporary storage (without a full stop), or null when there is room. */
export async function storageWarning() {
  let room;
  try { room = await storageRoom(); } catch { return null; }
  if (room.small) {
    return `this browser keeps this site’s data in a small or temporary store (a private window, or a browser profile kept in memory): it refused a ${Math.round(room.probeBytes / 1e6)} MB test write although it reports ${room.quota ? `${(room.quota / 1e9).toFixed(1)} GB` : 'more'} free. A trained adapter may not be kept here: download it when training ends (it is offered then), or train in a normal window`;
  }
  if (room.temporary) {
    return 'this window keeps this site’s data in memory only (a private window, or a browser profile kept in memory: it refused a '
      + `${Math.round(TEMPORARY_PROBE_BYTES / 1e6)} MB test write that a normal profile takes), so the adapters, checkpoints and records kept here are gone when it closes. `
      + 'Export the adapter when training ends, and use “Download checkpoint” if the window may close before the run does';
  }
  return null;
}
