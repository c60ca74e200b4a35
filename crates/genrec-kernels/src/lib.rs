//! Kernels and small Burn helpers shared by genrec's model crates (genrec-seqrec,
//! genrec-generative, genrec-graph, genrec-text, genrec-llm), which otherwise share no Burn code:
//! the host kernels ([`host`]), the fused full-softmax losses ([`fused`]: SASRec's output layer,
//! InfoNCE) and small layers ([`nn`]: host-drawn dropout, seeded initialisation).
//!
//! Why host kernels: Burn 0.21's CPU backends (Flex, NdArray) evaluate `exp`, `erf` and GELU
//! with scalar libm calls, one element at a time; in a SASRec training step or a MiniLM encode
//! those were 10–23% of the time. [`host`] has branch-free polynomial versions the compiler
//! vectorises, compiled for AVX-512, AVX2 + FMA and the baseline and picked at run time, with
//! rows or chunks in parallel (rayon). The Burn-level helpers here ([`gelu`]) route through them
//! on the CPU backends and use the backend's own operations everywhere else (CUDA, WGPU), so
//! every model still runs on every backend.

use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The additive bias (or fill value) that removes a key from attention: finite, so a row whose
/// keys are all masked (a padding query) softmaxes to uniform instead of to NaN, and large enough
/// that `exp(MASKED - max)` is exactly 0 in `f32` next to any real score. One value for every
/// model (T5, SASRec, MiniLM, LLaMA).
pub const MASKED: f32 = -1.0e9;

pub mod fused;
pub mod host;
pub mod nn;

/// Whether `B` computes on the host CPU (Flex or NdArray, with or without autodiff), where the
/// [`host`] kernels beat the backend's scalar ones.
pub fn is_cpu_backend<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device);
    let inner = name
        .strip_prefix("autodiff<")
        .and_then(|n| n.strip_suffix('>'))
        .unwrap_or(&name);
    matches!(inner, "flex" | "ndarray")
}

/// An additive attention bias made ready to add to scores of `shape`: on the CPU backends its
/// size-1 axes are repeated to `shape` (once per forward, by the caller), because a broadcast
/// over middle axes is an element-by-element strided walk on Flex in every layer while a
/// same-shape add is one vectorised pass (up to 18% of a TIGER decode); elsewhere it is returned
/// as is, since devices broadcast for free.
///
/// # Shapes
/// - `bias`: every axis 1 or equal to `shape`'s; output `shape` on CPU backends, else `bias`'s
pub fn bias_for_scores<B: Backend, const D: usize>(bias: Tensor<B, D>, shape: [usize; D]) -> Tensor<B, D> {
    if !is_cpu_backend::<B>(&bias.device()) {
        return bias;
    }
    let dims = bias.dims();
    (0..D).fold(bias, |b, axis| {
        if dims[axis] == 1 && shape[axis] != 1 {
            b.repeat_dim(axis, shape[axis])
        } else {
            b
        }
    })
}

/// `layer` applied to `[n, t, d_in]` as `[n·t, d_in]` rows. Burn's `linear` on a 3-D input runs
/// `n` small batched GEMMs (and a batched weight gradient summed afterwards); on rows it is one
/// GEMM each way, which Flex runs 1.2–2× faster at the models' sizes (docs/benchmarks.md).
///
/// # Shapes
/// - `x`: `[n, t, d_in]`; output `[n, t, d_out]`
pub fn linear_rows<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [n, t, d] = x.dims();
    let y = layer.forward(x.reshape([n * t, d]));
    let out = y.dims()[1];
    y.reshape([n, t, out])
}

/// Exact GELU `x · Φ(x)`, differentiable.
///
/// On the CPU backends it runs on the host with the vectorised [`host::erf`]: outside autodiff
/// the values directly; under autodiff as the linear surrogate `x ⊙ s + o` with the constants
/// `s = GELU'(x)` and `o = GELU(x) − x ⊙ s` from one host pass, so the value is GELU's (to a
/// rounding) and the backward pass is one product with `s`. Burn's own GELU there is libm's
/// scalar `erff` forward and again, with `expf`, backward (12% of a SASRec step). Elsewhere it
/// is Burn's `gelu`. The surrogate gives exact first derivatives only (no gradient of a
/// gradient); an input of +∞ gives NaN under autodiff (non-finite either way, which the training
/// loop stops on). f32 tensors (the default float type of every genrec backend).
///
/// # Shapes
/// - `x`: any; output the same
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let device = x.device();
    if !is_cpu_backend::<B>(&device) {
        return burn::tensor::activation::gelu(x);
    }
    let shape = x.shape();
    if !B::ad_enabled(&device) {
        let mut values = x
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 activations");
        host::gelu_in_place(&mut values);
        return Tensor::from_data(TensorData::new(values, shape), &device);
    }
    let values = x.to_data().convert::<f32>().into_vec::<f32>().expect("f32 activations");
    let (slope, offset) = host::gelu_slope_offset(&values);
    x * Tensor::from_data(TensorData::new(slope, shape.clone()), &device)
        + Tensor::from_data(TensorData::new(offset, shape), &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type A = Autodiff<Flex>;

    #[test]
    fn bias_is_repeated_along_its_unit_axes_on_the_cpu() {
        let device = Default::default();
        let bias = Tensor::<Flex, 4>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 1, 1, 3]),
            &device,
        );
        let full = bias_for_scores(bias.clone(), [2, 4, 5, 3]);
        assert_eq!(full.dims(), [2, 4, 5, 3]);
        // Every head and query row of a batch row holds that row's bias.
        let want = bias.expand([2, 4, 5, 3]).into_data().to_vec::<f32>().unwrap();
        assert_eq!(full.into_data().to_vec::<f32>().unwrap(), want);
    }

    #[test]
    fn cpu_backends_are_recognised_with_and_without_autodiff() {
        let device = Default::default();
        assert!(is_cpu_backend::<Flex>(&device));
        assert!(is_cpu_backend::<A>(&device));
    }

    /// Values and gradients of the host GELU against Burn's, outside and under autodiff.
    #[test]
    fn gelu_matches_burn_in_value_and_gradient() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::random([33, 100], Distribution::Normal(0.0, 3.0), &device);
        let weights = Tensor::<Flex, 2>::random([33, 100], Distribution::Normal(0.0, 1.0), &device);
        let v = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
        let want = v(burn::tensor::activation::gelu(x.clone()));
        let close = |got: &[f32], want: &[f32], tol: f32| {
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{g} vs {w}");
            }
        };
        close(&v(gelu(x.clone())), &want, 1e-6);

        let run = |host: bool| {
            let xa = Tensor::<A, 2>::from_inner(x.clone()).require_grad();
            let y = if host {
                gelu(xa.clone())
            } else {
                burn::tensor::activation::gelu(xa.clone())
            };
            let value = v(y.clone().inner());
            let grads = (y * Tensor::from_inner(weights.clone())).sum().backward();
            (value, v(xa.grad(&grads).unwrap()))
        };
        let (hv, hg) = run(true);
        let (bv, bg) = run(false);
        close(&hv, &bv, 1e-6);
        close(&hg, &bg, 1e-5);
    }

    #[test]
    fn gelu_keeps_nan() {
        let x = Tensor::<A, 1>::from_floats([f32::NAN, 1.0], &Default::default());
        let y = gelu(x).into_data().to_vec::<f32>().unwrap();
        assert!(y[0].is_nan() && (y[1] - 0.841_344_7).abs() < 1e-6, "{y:?}");
    }
}
