//! Run-time backend choice among the backends compiled in (cargo features `flex` (default),
//! `ndarray`, `wgpu`, `cuda`). Model code stays generic over `B: AutodiffBackend`; a
//! [`BackendJob`] is the one place that is monomorphised per backend.

use std::fmt;

use burn::tensor::backend::AutodiffBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Flex,
    NdArray,
    Wgpu,
    Cuda,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            DeviceKind::Flex => "flex",
            DeviceKind::NdArray => "ndarray",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

const ALL: [DeviceKind; 4] = [
    DeviceKind::Flex,
    DeviceKind::NdArray,
    DeviceKind::Wgpu,
    DeviceKind::Cuda,
];

impl DeviceKind {
    pub fn is_compiled(self) -> bool {
        match self {
            DeviceKind::Flex => cfg!(feature = "flex"),
            DeviceKind::NdArray => cfg!(feature = "ndarray"),
            DeviceKind::Wgpu => cfg!(feature = "wgpu"),
            DeviceKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    pub fn compiled() -> Vec<DeviceKind> {
        ALL.into_iter().filter(|d| d.is_compiled()).collect()
    }

    /// The first compiled backend (flex in a default build).
    pub fn default_compiled() -> DeviceKind {
        Self::compiled()[0]
    }

    pub fn parse(name: &str) -> Result<DeviceKind, String> {
        let kind = ALL
            .into_iter()
            .find(|d| d.to_string() == name.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown device `{name}` (flex, ndarray, wgpu, cuda)"))?;
        if !kind.is_compiled() {
            let have: Vec<String> = Self::compiled().iter().map(|d| d.to_string()).collect();
            return Err(format!(
                "device `{kind}` is not compiled into this binary (compiled: {}); rebuild with `--features {kind}`",
                have.join(", ")
            ));
        }
        Ok(kind)
    }
}

/// `--device NAME`, or the first compiled backend when absent.
pub fn device_or_default(name: Option<String>) -> anyhow::Result<DeviceKind> {
    match name {
        Some(d) => DeviceKind::parse(&d).map_err(|e| anyhow::anyhow!(e)),
        None => Ok(DeviceKind::default_compiled()),
    }
}

/// Work that runs on whichever backend the user picked.
pub trait BackendJob {
    type Output;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// Runs `job` on the chosen backend. Devices are always chosen explicitly (never a library
/// default, which may pick CUDA on a machine without a GPU).
pub fn dispatch<J: BackendJob>(kind: DeviceKind, job: J) -> J::Output {
    #[allow(unreachable_patterns)]
    match kind {
        #[cfg(feature = "flex")]
        DeviceKind::Flex => job.run::<burn::backend::Autodiff<burn::backend::Flex>>(burn::backend::flex::FlexDevice),
        #[cfg(feature = "ndarray")]
        DeviceKind::NdArray => {
            job.run::<burn::backend::Autodiff<burn::backend::NdArray>>(burn::backend::ndarray::NdArrayDevice::Cpu)
        }
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => {
            job.run::<burn::backend::Autodiff<burn::backend::Wgpu>>(burn::backend::wgpu::WgpuDevice::DefaultDevice)
        }
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => {
            job.run::<burn::backend::Autodiff<burn::backend::Cuda>>(burn::backend::cuda::CudaDevice::new(0))
        }
        other => unreachable!("device {other} is not compiled in; DeviceKind::parse rejects it"),
    }
}

/// A 2×2 matmul and a backward pass, read back: proves the backend computes, not just links.
pub struct Probe;

impl BackendJob for Probe {
    type Output = Result<(), String>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        use burn::tensor::Tensor;
        let a = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device).require_grad();
        let b = Tensor::<B, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        let y = a.clone().matmul(b).sum();
        let grads = y.backward();
        let value: f32 = y.into_scalar().elem();
        let grad_sum: f32 = a.grad(&grads).map(|g| g.sum().into_scalar().elem()).unwrap_or(f32::NAN);
        if (value - 10.0).abs() < 1e-5 && (grad_sum - 4.0).abs() < 1e-5 {
            Ok(())
        } else {
            Err(format!(
                "probe computed sum {value} (want 10) and grad sum {grad_sum} (want 4)"
            ))
        }
    }
}

use burn::tensor::ElementConversion;

/// Probes a backend, turning a panic inside it (no GPU, no driver) into an error message.
pub fn probe(kind: DeviceKind) -> Result<(), String> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| dispatch(kind, Probe));
    std::panic::set_hook(prev);
    match result {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_build_has_flex_and_it_computes() {
        assert_eq!(DeviceKind::default_compiled(), DeviceKind::Flex);
        probe(DeviceKind::Flex).unwrap();
        assert!(DeviceKind::parse("quantum").unwrap_err().contains("unknown device"));
        if !cfg!(feature = "cuda") {
            assert!(DeviceKind::parse("cuda").unwrap_err().contains("--features cuda"));
        }
    }
}
