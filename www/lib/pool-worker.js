// One thread of the engine's rayon pool (or one of its spinning matrix-vector helpers, role
// 'matvec'), in the threaded CPU build (pkg-threads/, chosen by the engine worker when the page
// is cross-origin isolated and WebGPU is not used). The engine worker starts one of these per
// thread (lib/worker-core.js, ensureThreadedWasm) and sends the module and its shared memory;
// this worker instantiates the same module on that memory, says it is ready, then runs its
// thread for good (src/web/threads.rs). It answers nothing else.
//
//   engine worker → pool worker   {type: 'pool-init', role: 'rayon' | 'matvec', module: WebAssembly.Module,
//                                  memory: WebAssembly.Memory}
//   pool worker → engine worker   {type: 'pool-ready'} or {type: 'pool-failed', message}
self.onmessage = async ({ data }) => {
  if (!data || data.type !== 'pool-init') return;
  self.onmessage = null;
  let pkg;
  try {
    pkg = await import(new URL('../pkg-threads/cqa_studio.js', import.meta.url));
    // A pool thread's stack: gemm's packing buffers live on the heap, so rayon's 2 MiB suffices.
    await pkg.default({ module_or_path: data.module, memory: data.memory, thread_stack_size: 2 * 1024 * 1024 });
  } catch (e) {
    self.postMessage({ type: 'pool-failed', message: (e && e.message) || String(e) });
    return;
  }
  self.postMessage({ type: 'pool-ready' });
  if (data.role === 'matvec') pkg.matvecHelperMain();
  else pkg.poolThreadMain();
};
