//! Row-wise log-sum-exp, and the losses built on it, from one row softmax (a vectorised host
//! kernel of genrec-kernels on the CPU backends, the backend's own elsewhere), for the
//! full-softmax losses of training.
//!
//! Why: under autodiff, Burn 0.21 decomposes `log_softmax` into max, sub, exp, sum and log, each
//! a full pass over the logits, and Flex's `exp` is a scalar libm call per element. Those
//! logits are the largest tensors of a training step (SASRec: item positions × all items;
//! InfoNCE: a batch × every user). From `p = softmax(x)` both the value and the gradient of the
//! log-sum-exp follow without another exponential:
//!
//! - value: `lse(x) = max(x) − ln max(p)`, because the arg-max entry of `p` is exactly
//!   `1 / Σ_j e^(x_j − max)`;
//! - gradient: `∂lse/∂x = p`, carried by the linear surrogate `Σ_j x_j · p_j` (with `p` a
//!   constant) whose value is subtracted again, so the output has lse's value and lse's gradient.
//!
//! [`log_sum_exp`] and [`cross_entropy`] take logits already in the graph.
//! [`linear_log_sum_exp`] and [`linear_cross_entropy`] take the two factors of the logits
//! (`h · wᵀ`) and keep the logits out of the graph altogether (SASRec's output layer, InfoNCE).
//!
//! On the CPU backends (Flex, NdArray) the softmax runs on the host, in genrec-kernels'
//! `softmax_rows`: their own kernels call the scalar libm `expf` per element (10% of a SASRec
//! step), the host kernel is a vectorised polynomial `exp` (AVX-512 or AVX2 chosen at run time),
//! rows in parallel. [`linear_log_sum_exp`] goes further there: genrec-kernels'
//! `linear_softmax_grads` computes the logits, their softmax and both gradient products in blocks
//! of 64 rows, so the `[n, m]` logits never leave the cache.
//!
//! The results match the decomposed forms to float rounding on every backend (the tests compare
//! values and gradients); non-finite logits give non-finite losses, which the training loop
//! stops on. The surrogates give exact first derivatives only: a loss that differentiates
//! through a gradient (a gradient penalty) must not use them.

use crate::host::{linear_softmax_grads, softmax_rows};
use crate::is_cpu_backend;
use burn::tensor::activation::softmax;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

/// `ln Σ_j exp(x_ij)` of every row, differentiable in `x`.
///
/// # Shapes
/// - `x`: `[n, m]`
/// - output: `[n]`
pub fn log_sum_exp<B: AutodiffBackend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = x.dims();
    let inner = x.clone().inner();
    let host = is_cpu_backend::<B::InnerBackend>(&inner.device());
    let (p, value) = softmax_and_lse(inner, host);
    let linear = (x * Tensor::from_inner(p)).sum_dim(1);
    // The zero first, so the value is not rounded at the scale of the surrogate.
    (Tensor::from_inner(value) + (linear.clone() - linear.detach())).reshape([n])
}

/// Cross-entropy `lse(x_i) − x_i[t_i]` of every row against its target column.
///
/// # Shapes
/// - `logits`: `[n, m]`; `targets`: `[n]`, values in `0..m`
/// - output: `[n]`
pub fn cross_entropy<B: AutodiffBackend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let picked = logits.clone().gather(1, targets.reshape([n, 1])).reshape([n]);
    log_sum_exp(logits) - picked
}

/// `Σ_i ln Σ_j exp(h_i · w_j)`: the summed row log-sum-exp of the logits `h · wᵀ`, fused with the
/// product, so the `[n, m]` logits and their softmax exist only inside this call, never in the
/// autodiff graph.
///
/// The gradients are `∂/∂h = P·w` and `∂/∂w = Pᵀ·h` with `P = softmax(h·wᵀ)` (rows). Both products
/// are computed here, on the inner backend, while `P` is at hand, and the surrogate
/// `Σ h ⊙ (P·w) + Σ w ⊙ (Pᵀ·h)` (its value subtracted again) carries them. What that saves
/// against `log_sum_exp(h.matmul(wᵀ)).sum()`: the autodiff copies of the logits and of `P`, the
/// pass of the `x ⊙ p` surrogate over the logits, and in the backward pass the `[n, m]` gradient
/// of the logits and its broadcast product — passes over the largest tensor of a SASRec step or
/// a contrastive batch. The two GEMMs are the ones the matmul's backward pass would run anyway.
///
/// Because the `w` term sums over rows, only the sum over rows is returned (not per-row values).
///
/// # Shapes
/// - `h`: `[n, d]`; `w`: `[m, d]`
/// - output: `[1]`
pub fn linear_log_sum_exp<B: AutodiffBackend>(h: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 1> {
    let host = is_cpu_backend::<B::InnerBackend>(&h.device());
    linear_log_sum_exp_on(h, w, host, DEVICE_BLOCK_ELEMENTS)
}

/// Most logits the device path holds at once: 2^24 floats (64 MiB). WGPU refuses buffers past
/// its binding limit (a `[4096, 22363]` InfoNCE block, 366 MB, failed on Mesa's Vulkan), and on
/// any GPU the blocks bound the step's peak memory; at this size each block's GEMMs are still
/// large enough to fill a GPU.
const DEVICE_BLOCK_ELEMENTS: usize = 1 << 24;

/// [`linear_log_sum_exp`] with the softmax on the host or on the device (both testable on Flex);
/// the device path takes blocks of rows with at most `block_elements` logits each.
fn linear_log_sum_exp_on<B: AutodiffBackend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    host: bool,
    block_elements: usize,
) -> Tensor<B, 1> {
    let (h_inner, w_inner) = (h.clone().inner(), w.clone().inner());
    let (lse, grad_h, grad_w) = if host {
        host_linear_softmax_grads(h_inner, w_inner)
    } else {
        device_linear_softmax_grads(h_inner, w_inner, block_elements)
    };
    let surrogate = (h * Tensor::from_inner(grad_h)).sum() + (w * Tensor::from_inner(grad_w)).sum();
    // The zero first: `lse + S − S` would round the value at the scale of `S`.
    Tensor::from_inner(lse.sum()) + (surrogate.clone() - surrogate.detach())
}

/// `(lse [n, 1], P·w [n, d], Pᵀ·h [m, d])` of the logits `h · wᵀ` by the host's blocked kernel
/// ([`linear_softmax_grads`]: the `[n, m]` logits never leave the cache).
fn host_linear_softmax_grads<B: Backend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let ([n, d], [m, _]) = (h.dims(), w.dims());
    let device = h.device();
    let host = |t: Tensor<B, 2>| {
        t.into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 activations")
    };
    let (lse, grad_h, grad_w) = linear_softmax_grads(&host(h), &host(w), d);
    (
        Tensor::from_data(TensorData::new(lse, [n, 1]), &device),
        Tensor::from_data(TensorData::new(grad_h, [n, d]), &device),
        Tensor::from_data(TensorData::new(grad_w, [m, d]), &device),
    )
}

/// `(lse [n, 1], P·w [n, d], Pᵀ·h [m, d])` of the logits `h · wᵀ` with the backend's kernels, in
/// blocks of rows holding at most `block_elements` logits (at least one row per block).
fn device_linear_softmax_grads<B: Backend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    block_elements: usize,
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let ([n, _], [m, _]) = (h.dims(), w.dims());
    let mut grad_w = w.zeros_like();
    if n == 0 {
        // `Tensor::cat` refuses an empty list.
        return (Tensor::zeros([0, 1], &h.device()), h, grad_w);
    }
    let rows = (block_elements / m.max(1)).clamp(1, n);
    let (mut lse, mut grad_h) = (Vec::new(), Vec::new());
    for start in (0..n).step_by(rows) {
        let block = h.clone().slice(start..(start + rows).min(n));
        let (p, value) = device_softmax(block.clone().matmul(w.clone().transpose()));
        grad_h.push(p.clone().matmul(w.clone()));
        grad_w = grad_w + p.transpose().matmul(block);
        lse.push(value);
    }
    (Tensor::cat(lse, 0), Tensor::cat(grad_h, 0), grad_w)
}

/// Mean cross-entropy of the logits `h · wᵀ` against `targets`, fused with the output projection
/// through [`linear_log_sum_exp`]; the target term `−Σ_i h_i · w[t_i]` is an ordinary autodiff
/// expression.
///
/// # Shapes
/// - `h`: `[n, d]`, `n ≥ 1`; `w`: `[m, d]`; `targets`: `[n]`, values in `0..m`
/// - output: `[1]`
pub fn linear_cross_entropy<B: AutodiffBackend>(
    h: Tensor<B, 2>,
    w: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let [n, _] = h.dims();
    assert!(n > 0, "linear_cross_entropy: no rows");
    let picked = (h.clone() * w.clone().select(0, targets)).sum();
    (linear_log_sum_exp(h, w) - picked) / n as f64
}

/// Row softmax `[n, m]` and log-sum-exp `[n, 1]`, on the host (the CPU backends, whose own
/// `exp` is scalar) or with the backend's kernels.
fn softmax_and_lse<B: Backend>(x: Tensor<B, 2>, host: bool) -> (Tensor<B, 2>, Tensor<B, 2>) {
    if host {
        host_softmax(x)
    } else {
        device_softmax(x)
    }
}

/// Row softmax `[n, m]` and log-sum-exp `[n, 1]` with the backend's own kernels.
fn device_softmax<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let p = softmax(x.clone(), 1);
    let value = x.max_dim(1) - p.clone().max_dim(1).log();
    (p, value)
}

/// As [`device_softmax`], computed on the host by [`softmax_rows`].
fn host_softmax<B: Backend>(x: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [n, m] = x.dims();
    let device = x.device();
    let mut rows = x.into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits");
    let lse = softmax_rows(&mut rows, m);
    (
        Tensor::from_data(TensorData::new(rows, [n, m]), &device),
        Tensor::from_data(TensorData::new(lse, [n, 1]), &device),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Distribution, TensorData};

    type A = Autodiff<Flex>;

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "entry {i}: {x} vs {y}");
        }
    }

    /// Value and gradient of `Σ_i w_i · f(x)_i` for the fused and the decomposed form.
    fn both(x: Tensor<Flex, 2>, weights: &[f32], fused: bool) -> (Vec<f32>, Vec<f32>) {
        let device = Default::default();
        let x = Tensor::<A, 2>::from_inner(x).require_grad();
        let w = Tensor::<A, 1>::from_floats(weights, &device);
        let rows = if fused {
            log_sum_exp(x.clone())
        } else {
            let max = x.clone().detach().max_dim(1);
            ((x.clone() - max.clone()).exp().sum_dim(1).log() + max).squeeze_dim(1)
        };
        let value = rows.clone().into_data().to_vec::<f32>().unwrap();
        let grads = (rows * w).sum().backward();
        let grad = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        (value, grad)
    }

    #[test]
    fn log_sum_exp_matches_the_decomposed_form() {
        let device = Default::default();
        // Large spread, including logits that would overflow a naive exp.
        let x = Tensor::<Flex, 2>::random([5, 37], Distribution::Normal(0.0, 8.0), &device)
            .slice_assign([0..1, 0..2], Tensor::from_floats([[120.0, 119.0]], &device));
        let weights = [1.0, -2.0, 0.5, 3.0, 1.0];
        let (fv, fg) = both(x.clone(), &weights, true);
        let (dv, dg) = both(x, &weights, false);
        close(&fv, &dv, 1e-6);
        close(&fg, &dg, 1e-5);
        assert!((fv[0] - (120.0 + (1.0f32 + (-1.0f32).exp()).ln())).abs() < 1e-4);
    }

    #[test]
    fn cross_entropy_by_hand_and_against_log_softmax() {
        let device = Default::default();
        let logits = Tensor::<A, 2>::from_data(TensorData::new(vec![0.0f32, 1.0, 2.0, 5.0, 5.0, 5.0], [2, 3]), &device)
            .require_grad();
        let targets = Tensor::<A, 1, Int>::from_ints([2, 0], &device);
        let got = cross_entropy(logits.clone(), targets.clone());
        let want0 = (1.0f32 + 1f32.exp() + 2f32.exp()).ln() - 2.0;
        close(
            &got.clone().into_data().to_vec::<f32>().unwrap(),
            &[want0, 3f32.ln()],
            1e-6,
        );

        let grad = logits.grad(&got.sum().backward()).unwrap();
        let reference = Tensor::<A, 2>::from_inner(logits.clone().inner()).require_grad();
        let nll = log_softmax(reference.clone(), 1)
            .gather(1, targets.reshape([2, 1]))
            .neg()
            .sum();
        let want = reference.grad(&nll.backward()).unwrap();
        close(
            &grad.into_data().to_vec::<f32>().unwrap(),
            &want.into_data().to_vec::<f32>().unwrap(),
            1e-6,
        );
    }

    /// Seeded normal `[rows, cols]` values.
    fn normal(rows: usize, cols: usize, seed: u64, scale: f32) -> Tensor<Flex, 2> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| scale * (rng.random::<f32>() + rng.random::<f32>() + rng.random::<f32>() - 1.5))
            .collect();
        Tensor::from_data(TensorData::new(values, [rows, cols]), &Default::default())
    }

    /// Loss value and the gradients of `h0` and `w0` (which may be the same leaf), the loss
    /// scaled by 3 so that a surrogate ignoring the upstream gradient would fail.
    fn value_and_grads(
        h0: &Tensor<Flex, 2>,
        w0: &Tensor<Flex, 2>,
        tied: bool,
        loss: impl Fn(Tensor<A, 2>, Tensor<A, 2>) -> Tensor<A, 1>,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let h = Tensor::<A, 2>::from_inner(h0.clone()).require_grad();
        let w = if tied {
            h.clone()
        } else {
            Tensor::<A, 2>::from_inner(w0.clone()).require_grad()
        };
        let value = loss(h.clone(), w.clone());
        let grads = (value.clone() * 3.0).backward();
        let v = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
        (
            value.into_data().to_vec::<f32>().unwrap(),
            v(h.grad(&grads).unwrap()),
            v(w.grad(&grads).unwrap()),
        )
    }

    #[test]
    fn linear_cross_entropy_matches_the_decomposed_form() {
        let device = Default::default();
        let (h0, w0) = (normal(9, 6, 1, 2.0), normal(13, 6, 2, 2.0));
        let targets = Tensor::<A, 1, Int>::from_ints([0, 3, 12, 3, 7, 1, 1, 5, 11], &device);
        let fused = value_and_grads(&h0, &w0, false, |h, w| linear_cross_entropy(h, w, targets.clone()));
        let decomposed = value_and_grads(&h0, &w0, false, |h, w| {
            log_softmax(h.matmul(w.transpose()), 1)
                .gather(1, targets.clone().reshape([9, 1]))
                .neg()
                .mean()
        });
        close(&fused.0, &decomposed.0, 1e-6);
        close(&fused.1, &decomposed.1, 1e-5);
        close(&fused.2, &decomposed.2, 1e-5);
    }

    /// Both softmax paths (the device one whole and in blocks of rows), with `h` and `w`
    /// independent, the same tensor (both gradient terms land on one leaf), and `h` computed from
    /// `w` (as SASRec's tied item embedding).
    #[test]
    fn linear_log_sum_exp_matches_the_decomposed_form() {
        let (h0, w0) = (normal(7, 5, 3, 1.5), normal(11, 5, 4, 1.5));
        let decomposed = |h: Tensor<A, 2>, w: Tensor<A, 2>| {
            let logits = h.matmul(w.transpose());
            let max = logits.clone().detach().max_dim(1);
            ((logits - max.clone()).exp().sum_dim(1).log() + max).sum()
        };
        /// `f(2·w[..7] + tanh(h), w)`: the first factor depends on the second.
        fn derived(
            f: impl Fn(Tensor<A, 2>, Tensor<A, 2>) -> Tensor<A, 1>,
        ) -> impl Fn(Tensor<A, 2>, Tensor<A, 2>) -> Tensor<A, 1> {
            move |h, w| f(w.clone().slice([0..7, 0..5]) * 2.0 + h.tanh(), w)
        }
        // The device path also in blocks of 2 rows (the last one ragged) and of 1 row (a limit
        // below one row's logits).
        for (host, block) in [(true, 0), (false, DEVICE_BLOCK_ELEMENTS), (false, 22), (false, 3)] {
            let fused = |h, w| linear_log_sum_exp_on(h, w, host, block);
            for tied in [false, true] {
                let (fv, fh, fw) = value_and_grads(&h0, &w0, tied, fused);
                let (dv, dh, dw) = value_and_grads(&h0, &w0, tied, decomposed);
                close(&fv, &dv, 1e-6);
                close(&fh, &dh, 1e-5);
                close(&fw, &dw, 1e-5);
            }
            let (fv, fh, fw) = value_and_grads(&h0, &w0, false, derived(fused));
            let (dv, dh, dw) = value_and_grads(&h0, &w0, false, derived(decomposed));
            close(&fv, &dv, 1e-6);
            close(&fh, &dh, 1e-5);
            close(&fw, &dw, 1e-5);
        }
    }

    /// Finite factors whose product overflows f32 in a column that is not the target.
    #[test]
    fn linear_losses_of_overflowing_logits_are_not_finite() {
        let device = Default::default();
        let h = Tensor::<A, 2>::from_floats([[1e20, 0.0]], &device);
        let w = Tensor::<A, 2>::from_floats([[1e20, 0.0], [0.0, 1.0]], &device);
        assert!(!linear_log_sum_exp(h.clone(), w.clone()).into_scalar().is_finite());
        let loss = linear_cross_entropy(h, w, Tensor::from_ints([1], &device));
        assert!(!loss.into_scalar().is_finite());
    }

    #[test]
    fn host_and_device_softmax_agree() {
        let x = Tensor::<Flex, 2>::random([7, 300], Distribution::Normal(0.0, 5.0), &Default::default());
        let (hp, hv) = host_softmax(x.clone());
        let (dp, dv) = device_softmax(x);
        let v = |t: Tensor<Flex, 2>| t.into_data().to_vec::<f32>().unwrap();
        close(&v(hp), &v(dp), 1e-5);
        close(&v(hv), &v(dv), 1e-6);
    }

    #[test]
    fn non_finite_logits_give_a_non_finite_loss() {
        let device = Default::default();
        let x = Tensor::<A, 2>::from_floats([[0.0, f32::NAN, 1.0]], &device);
        let v = log_sum_exp(x).into_scalar();
        assert!(!v.is_finite());
    }
}
