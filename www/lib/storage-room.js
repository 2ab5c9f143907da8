// Whether this browser can keep what a training run makes, and for how long. Chromium hides a
// private window (or a browser profile kept in memory: Playwright's default context is one): there
// `navigator.storage.estimate()` reports the same gigabytes, `persisted()` says false as it does in
// a normal profile, and writes succeed, but everything is gone when the window closes. What tells
// it apart is measured: its in-memory IndexedDB refuses any single value over about 127 MB with an
// UnknownError (measured in Debian's Chromium: 120 MB taken, 127 MB refused, cumulative 240 MB
// taken), which an on-disk profile takes. So the room is measured once per profile with writes
// into IndexedDB, each deleted at once:
// - one of PROBE_BYTES (what a default run keeps: its checkpoint and its adapter): refused means
//   too little room (`small`);
// - then, for the Train panel only, one of TEMPORARY_PROBE_BYTES: refused other than for quota
//   means a store kept in memory (`temporaryStorage()`).
// The Train panel says either before a run and holds checkpoints in the page to offer as files;
// where storage is small no model copy is kept that would take the adapter's room, and a failed
// save names the cause. Answers are kept (a private window starts empty, so it measures anew).
import { kvGet, kvSet, kvDelete, storageEstimate } from './store.js';

/** What a run of the panel's defaults on the default model keeps: a 59 MB checkpoint and a 20 MB adapter. */
export const PROBE_BYTES = 80 * 1024 * 1024;
/** Over what a store kept in memory takes as one value (see above). */
export const TEMPORARY_PROBE_BYTES = 128 * 1024 * 1024;
const PROBE_KEY = 'storage-room-probe';
const ANSWER_KEY = 'storage-room';
const TEMPORARY_KEY = 'storage-temporary';
const ANSWER_VERSION = 2;

const measured = { room: null, temporary: null };

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
 * Resolves to {small, persisted, quota, usage, probeBytes, problem}: `small` when a write of
 * `probeBytes` was refused (`problem`: the browser's words), whatever the quota says. The Model
 * panel waits for it before keeping a model, so it stays one write.
 */
export function storageRoom() {
  measured.room ??= (async () => {
    const persisted = await navigator.storage?.persisted?.().catch(() => false) ?? false;
    const estimate = await storageEstimate();
    const now = { persisted, quota: estimate?.quota ?? null, usage: estimate?.usage ?? null, probeBytes: PROBE_BYTES };
    const known = await kvGet(ANSWER_KEY).catch(() => null);
    if (known?.version === ANSWER_VERSION && known.small === false) return { ...known, ...now };
    const problem = await refusal(PROBE_BYTES);
    const answer = { version: ANSWER_VERSION, small: problem !== null, problem };
    if (!answer.small) await kvSet(ANSWER_KEY, answer).catch(() => {});
    return { ...answer, ...now };
  })();
  return measured.room;
}

/**
 * Resolves to true when this site's store is kept in memory (gone when the window closes): a
 * write of TEMPORARY_PROBE_BYTES refused other than for quota, where the smaller probe was taken.
 * Asked only by the Train panel, so a first visit's model load waits for one write, not two.
 */
export function temporaryStorage() {
  measured.temporary ??= (async () => {
    const room = await storageRoom();
    if (room.small) return room.problem !== 'QuotaExceededError';
    const known = await kvGet(TEMPORARY_KEY).catch(() => null);
    if (known?.version === ANSWER_VERSION) return known.temporary;
    const large = await refusal(TEMPORARY_PROBE_BYTES);
    const temporary = large !== null && large !== 'QuotaExceededError';
    await kvSet(TEMPORARY_KEY, { version: ANSWER_VERSION, temporary }).catch(() => {});
    return temporary;
  })();
  return measured.temporary;
}

/** The sentence that explains small or temporary storage (without a full stop), or null when there is room. */
export async function storageWarning() {
  let room;
  try { room = await storageRoom(); } catch { return null; }
  if (room.small) {
    return `this browser keeps this site’s data in a small or temporary store (a private window, or a browser profile kept in memory): it refused a ${Math.round(room.probeBytes / 1e6)} MB test write although it reports ${room.quota ? `${(room.quota / 1e9).toFixed(1)} GB` : 'more'} free. A trained adapter may not be kept here: download it when training ends (it is offered then), or train in a normal window`;
  }
  if (await temporaryStorage().catch(() => false)) {
    return 'this window keeps this site’s data in memory only (a private window, or a browser profile kept in memory: it refused a '
      + `${Math.round(TEMPORARY_PROBE_BYTES / 1e6)} MB test write that a normal profile takes), so the adapters, checkpoints and records kept here are gone when it closes. `
      + 'Export the adapter when training ends, and use “Download checkpoint” if the window may close before the run does';
  }
  return null;
}
