// The GPU device the engine creates, seen from its worker. The engine (Rust, wgpu) asks WebGPU
// for its device itself; importing this module wraps GPUAdapter.prototype.requestDevice before
// the wasm starts, so the worker keeps that device: for its limits (the memory check), to watch
// `device.lost` (burn/wgpu cannot re-create a lost device in place, so the worker tells the page,
// which starts a fresh worker), and to count what the engine asks of WebGPU ('gpu-stats').
import { post } from './worker-core.js';

/** The GPUAdapter the engine asked for its device, and the GPUDevice it got (null until then). */
export const gpu = { adapter: null, device: null };
let lossRequested = false;   // destroy() was called by 'simulate-device-loss'
let deviceLost = null;       // Promise of why the current device was lost (null: not lost)

// Before the wasm runs: wgpu calls adapter.requestDevice() through the prototype.
const Adapter = self.GPUAdapter;
if (Adapter && typeof Adapter.prototype.requestDevice === 'function') {
  const requestDevice = Adapter.prototype.requestDevice;
  Adapter.prototype.requestDevice = function (...args) {
    const adapter = this;
    return requestDevice.apply(adapter, args).then((device) => {
      gpu.adapter = adapter;
      gpu.device = device;
      // Why the device was lost, or null when the loss is not one: a device the engine no
      // longer uses, or a destroy() on purpose that 'simulate-device-loss' did not ask for (the
      // engine never destroys its device itself; the page ends a worker with terminate(),
      // which fires nothing here).
      deviceLost = device.lost.then((info) => {
        if (device !== gpu.device || (info.reason === 'destroyed' && !lossRequested)) return null;
        return lossRequested ? 'it was destroyed on request (simulate-device-loss)' : (info.message || info.reason || 'no reason given');
      });
      deviceLost.then((why) => { if (why) post({ type: 'device-lost', message: `the GPU device was lost: ${why}` }); });
      return device;
    });
  };
}


// What the engine asks of WebGPU, counted at the API ('gpu-stats'): one shader module and one
// pipeline per distinct kernel compiled, one dispatch per kernel launch.
const zeroStats = () => ({ shaderModules: 0, pipelines: 0, shaderBytes: 0, dispatches: 0, submits: 0, since: Date.now() });
const gpuStats = zeroStats();
function countCalls(proto, method, count) {
  const original = proto?.[method];
  if (typeof original !== 'function') return;
  proto[method] = function (...args) { count(args); return original.apply(this, args); };
}
const kernelNames = []; // the entry point of each shader module since the last reset
countCalls(self.GPUDevice?.prototype, 'createShaderModule', ([desc]) => {
  gpuStats.shaderModules += 1;
  gpuStats.shaderBytes += desc?.code?.length || 0;
  const entry = /@compute[^]*?fn\s+(\w+)/.exec(desc?.code || '');
  if (kernelNames.length < 1000) kernelNames.push(entry ? entry[1] : '?');
});
countCalls(self.GPUDevice?.prototype, 'createComputePipeline', () => { gpuStats.pipelines += 1; });
countCalls(self.GPUDevice?.prototype, 'createComputePipelineAsync', () => { gpuStats.pipelines += 1; });
countCalls(self.GPUComputePassEncoder?.prototype, 'dispatchWorkgroups', () => { gpuStats.dispatches += 1; });
countCalls(self.GPUComputePassEncoder?.prototype, 'dispatchWorkgroupsIndirect', () => { gpuStats.dispatches += 1; });
countCalls(self.GPUQueue?.prototype, 'submit', () => { gpuStats.submits += 1; });

/** What the engine asked of WebGPU since the worker started or the last `reset` ('gpu-stats'). */
export function readGpuStats(msg) {
  const out = { ...gpuStats, kernels: [...kernelNames] };
  if (msg.reset) {
    Object.assign(gpuStats, zeroStats());
    kernelNames.length = 0;
  }
  return out;
}

/**
 * Whether a failed job failed because the GPU device is gone: wgpu's error often reaches the job
 * before `device.lost` resolves, so wait briefly for it. Resolves to the sentence, or null.
 */
export async function lostWhy() {
  if (!deviceLost) return null;
  const why = await Promise.race([deviceLost, new Promise((r) => setTimeout(() => r(null), 2000))]);
  return why && `the GPU device was lost (${why}); the engine is restarting`;
}

/** Destroys the engine's device on purpose ('simulate-device-loss', test builds only). */
export function simulateDeviceLoss(backend) {
  if (!gpu.device) throw new Error(backend === 'cpu' ? 'the engine runs on the CPU: there is no GPU device to lose' : 'the engine has no GPU device yet');
  lossRequested = true;
  gpu.device.destroy();
  return { destroyed: true };
}
