//! Choosing a compute device. Only the edges (CLI, browser bindings, tests) call this; the
//! engine just receives a `Device`.

use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor};

#[cfg(not(any(feature = "native", feature = "webgpu", feature = "cpu")))]
compile_error!("enable a backend: the `native` feature (default), `webgpu` (the browser build) or `cpu` (CPU only)");

/// The backends a user can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn-flex, pure-Rust CPU.
    Cpu,
    /// wgpu: Vulkan/Metal/DX12 natively, WebGPU in the browser.
    Wgpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "wgpu" | "gpu" | "webgpu" => Ok(Backend::Wgpu),
            other => Err(Error::Input(format!("unknown backend `{other}`: use `cpu` or `wgpu`"))),
        }
    }
}

/// Whether tensors on `device` run on burn-flex (the CPU), with or without autodiff.
pub fn runs_on_cpu(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// Kernel launches wgpu gathers before it submits them. CubeCL's default is 32, which cuts a
/// fused decode step (~190 dispatches for the default model) into six submits; at 256 a token is
/// one submit, made when its id is read back.
#[cfg(any(feature = "native", feature = "webgpu"))]
const TASKS_PER_SUBMIT: usize = 256;

/// Initialises wgpu natively (blocking). Fails with a clear message when no adapter exists.
#[cfg(all(feature = "native", not(target_family = "wasm")))]
pub fn wgpu() -> Result<Device> {
    Device::wgpu_options().tasks_max(TASKS_PER_SUBMIT).init().map_err(|e| {
        Error::Device(format!("no usable GPU adapter ({e}); install a Vulkan driver (e.g. mesa-vulkan-drivers) or use --backend cpu"))
    })
}

/// Initialises WebGPU in the browser.
#[cfg(all(feature = "webgpu", target_family = "wasm"))]
pub async fn wgpu() -> Result<Device> {
    Device::wgpu_options().tasks_max(TASKS_PER_SUBMIT).init_async().await.map_err(|e| Error::Device(format!("WebGPU is not available ({e})")))
}

/// For the crate's unit tests: the one wgpu device of the test process (wgpu initialises once a
/// process, so every test module shares it), or `None` (the test is skipped) where this machine
/// has no adapter, unless `CQA_REQUIRE_GPU` is set: `./x test` sets it and installs Mesa's
/// lavapipe, so there these tests always run.
#[cfg(all(test, feature = "native"))]
pub(crate) fn test_gpu() -> Option<Device> {
    static DEVICE: std::sync::OnceLock<std::result::Result<Device, String>> = std::sync::OnceLock::new();
    match DEVICE.get_or_init(|| wgpu().map_err(|e| e.to_string())) {
        Ok(device) => Some(device.clone()),
        Err(e) if std::env::var_os("CQA_REQUIRE_GPU").is_some() => panic!("CQA_REQUIRE_GPU is set: {e}"),
        Err(e) => {
            eprintln!("skipped, no GPU: {e}");
            None
        }
    }
}

/// Blocks on a future natively. The engine's reads are async so the browser never blocks; the
/// CLI drives them with this.
#[cfg(not(target_family = "wasm"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Reads a tensor back to the host. Always async, so it is safe on WebGPU.
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t.into_data_async().await.map_err(|e| Error::Device(format!("reading results back failed: {e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("unexpected result data: {e:?}")))
}
