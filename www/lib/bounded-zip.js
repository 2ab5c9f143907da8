// Reading a zip chosen by the user with every size bounded before anything is inflated: only
// the entries the caller names are inflated at all, each after its declared size is checked
// against its limit (and the declared sizes' sum against a total), an entry named twice is
// refused, and so is one that inflates to another size than it declares (a 4 MB entry of deflated
// zeros can claim anything). The checkpoint, adapter and study readers share it; each words its
// refusals in its own sentences (`say`).
import { unzipSync } from '../vendor/fflate.js';

const ZIP_ERRORS = /invalid zip|unexpected EOF|invalid (block|length|distance)|unknown compression/i;

/**
 * Inflates the wanted entries of `bytes`. `limitOf(name)` gives an entry's largest size, or
 * null to skip it unread; `key(name)` what an entry is known by (e.g. its base name) for
 * duplicates and the result. `say` words the refusals: `tooBig(key, bytes, limit)`,
 * `duplicate(key)`, `total(limit)`, `sizeLies(key)`, `notZip(message)`. Returns
 * {entries (key → bytes), skipped (names left unread)}.
 */
export function unzipBounded(bytes, { limitOf, key = (name) => name, maxTotal = Infinity, say }) {
  const declared = new Map();
  const skipped = [];
  let total = 0;
  let inflated;
  try {
    inflated = unzipSync(bytes, {
      filter(entry) {
        const limit = limitOf(entry.name);
        if (limit == null) { skipped.push(entry.name); return false; }
        const k = key(entry.name);
        if (entry.originalSize > limit) throw new BoundError(say.tooBig(k, entry.originalSize, limit));
        if (declared.has(k)) throw new BoundError(say.duplicate(k));
        total += entry.originalSize;
        if (total > maxTotal) throw new BoundError(say.total(maxTotal));
        declared.set(k, entry.originalSize);
        return true;
      },
    });
  } catch (e) {
    if (e instanceof BoundError) throw new Error(e.message);
    const message = String(e?.message || e);
    throw new Error(ZIP_ERRORS.test(message) ? say.notZip(message) : message);
  }
  const entries = Object.create(null); // no inherited names: an entry called __proto__ is just a name
  for (const [name, data] of Object.entries(inflated)) {
    const k = key(name);
    if (data.length !== declared.get(k)) throw new Error(say.sizeLies(k));
    entries[k] = data;
  }
  return { entries, skipped };
}

/** A refusal of the reader's own, kept apart from fflate's errors. */
class BoundError extends Error {}
