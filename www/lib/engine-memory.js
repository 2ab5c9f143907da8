// Whether a model fits before the engine reads it: the limits, and the sentence that names what
// the model needs and the limit it passes.
//   WebGPU: its largest GPU buffer must fit the device's maxBufferSize and
//     maxStorageBufferBindingSize (a stored matrix goes up in chunks of at most 128 MiB), and its
//     weights (as the file stores them; an HF model's as f32) the budget: 2 GiB, or the device's
//     maxBufferSize when that is larger (WebGPU does not tell a GPU's memory; a GPU that takes one
//     buffer over 2 GiB has at least that). The wasm heap (4 GiB) must also hold the file while
//     its weights are uploaded one by one.
//   CPU: the wasm heap (4 GiB, wasm32) holds the file, the weights as stored and the model already
//     loaded (kept until the new one is ready); a budget the page sets replaces the 4 GiB.

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const WASM_HEAP = 4 * GiB;   // wasm32: the engine's whole memory
const GPU_BUDGET = 2 * GiB;  // the default budget for the weights on WebGPU (see above)

const size = (b) => (b >= GiB ? `${(b / GiB).toFixed(1)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

/** The budget the page asked for (MiB → bytes), or null for the default. */
export function budgetOf(msg) {
  const mb = Number(msg.memoryBudgetMb);
  return Number.isFinite(mb) && mb > 0 ? mb * MiB : null;
}

/** How the weights are held, for the sentence: stored blocks only say so when they are smaller than f32. */
function heldAs(need) {
  return need.resident_bytes_stored != null && need.resident_bytes_stored < need.resident_bytes ? 'kept as the file stores them' : 'held as f32';
}

/**
 * Why a model with this need cannot be loaded here (a sentence), or null when it fits. `engine`:
 * {backend, limits (the GPU device's or adapter's), baseResident (bytes of the model loaded now)}.
 */
export function memoryRefusal(need, budget, { backend, limits = null, baseResident = 0 }) {
  if (!need) return null;
  const about = need.estimated ? 'an estimated' : 'about';
  const lowered = budget !== null ? ' (the budget set for this session)' : '';
  if (backend === 'webgpu') {
    const maxBuffer = limits ? Math.min(Number(limits.maxBufferSize) || Infinity, Number(limits.maxStorageBufferBindingSize) || Infinity) : Infinity;
    // Stored weights go to the GPU as the file's blocks, in chunks of at most 128 MiB; a
    // safetensors model (no stored figures) is held as f32.
    const stored = need.resident_bytes_stored != null;
    const form = heldAs(need);
    const buffer = stored ? need.largest_buffer_bytes_stored : need.largest_tensor_bytes;
    if (buffer && buffer > maxBuffer) {
      return `this model’s largest weight${need.largest_tensor ? ` (${need.largest_tensor})` : ''} needs one GPU buffer of ${size(buffer)}, but this GPU allows at most ${size(maxBuffer)} in one buffer`;
    }
    const limit = budget ?? Math.max(GPU_BUDGET, Number(limits?.maxBufferSize) || 0);
    // On the GPU, Q6_K goes as Q8_0 (resident_bytes_stored_gpu; older figures lack it).
    const weights = stored ? (need.resident_bytes_stored_gpu ?? need.resident_bytes_stored) : need.resident_bytes;
    if (weights > limit) {
      return `this model needs ${about} ${size(weights)} of GPU memory for its weights (${form}), more than the ${size(limit)} memory budget for WebGPU${lowered}`;
    }
    const heap = need.file_bytes + 2 * (buffer || 0);
    if (heap > WASM_HEAP) {
      return `this model needs ${about} ${size(heap)} of the engine’s memory while it loads (the file and its largest weight), more than the ${size(WASM_HEAP)} a browser gives the engine`;
    }
    return null;
  }
  // On the CPU the weights stay in the file's own blocks (an HF model's f32 stay f32).
  const limit = budget ?? WASM_HEAP;
  const weights = need.resident_bytes_stored ?? need.resident_bytes;
  const form = heldAs(need);
  const total = need.file_bytes + weights + baseResident;
  if (total > limit) {
    const kept = baseResident ? `, and the ${size(baseResident)} of the model loaded now, kept until the new one is ready` : '';
    return `this model needs ${about} ${size(total)} of memory on the CPU (the ${size(need.file_bytes)} file and ${size(weights)} of weights ${form}${kept}), more than the ${size(limit)} ${budget !== null ? `memory budget${lowered}` : 'a browser gives the engine'}`;
  }
  return null;
}

/** Throws the sentence of memoryRefusal, if any. */
export function refuseIfTooBig(need, budget, engine) {
  const why = memoryRefusal(need, budget, engine);
  if (why) throw new Error(why);
}
