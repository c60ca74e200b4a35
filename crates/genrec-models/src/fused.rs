//! Row-wise log-sum-exp (and the cross-entropy built on it) through the backend's own softmax
//! kernel, for the full-softmax losses of training.
//!
//! Why: under autodiff, Burn 0.21 decomposes `log_softmax` into max, sub, exp, sum and log, each
//! a full pass over the logits, and Flex's `exp` is a scalar libm call per element. Those
//! logits are the largest tensors of a training step (SASRec: item positions × all items;
//! InfoNCE: a batch × every user). The inner, non-autodiff backend has a softmax of its own
//! (on Flex a fused, SIMD, row-parallel kernel), and from `p = softmax(x)` both the value and the
//! gradient of the log-sum-exp follow without another exponential:
//!
//! - value: `lse(x) = max(x) − ln max(p)`, because the arg-max entry of `p` is exactly
//!   `1 / Σ_j e^(x_j − max)`;
//! - gradient: `∂lse/∂x = p`, carried by the linear surrogate `Σ_j x_j · p_j` (with `p` a
//!   constant) whose value is subtracted again, so the output has lse's value and lse's gradient.
//!
//! The result is exact to float rounding on every backend (the tests compare values and
//! gradients with the decomposed form); non-finite logits give non-finite losses, which the
//! training loop stops on.

use burn::tensor::activation::softmax;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor};

/// `ln Σ_j exp(x_ij)` of every row, differentiable in `x`.
///
/// # Shapes
/// - `x`: `[n, m]`
/// - output: `[n]`
pub fn log_sum_exp<B: AutodiffBackend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = x.dims();
    let inner = x.clone().inner();
    let p = softmax(inner.clone(), 1);
    let value = inner.max_dim(1) - p.clone().max_dim(1).log();
    let linear = (x * Tensor::from_inner(p)).sum_dim(1);
    (Tensor::from_inner(value) + linear.clone() - linear.detach()).reshape([n])
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

    #[test]
    fn non_finite_logits_give_a_non_finite_loss() {
        let device = Default::default();
        let x = Tensor::<A, 2>::from_floats([[0.0, f32::NAN, 1.0]], &device);
        let v = log_sum_exp(x).into_scalar();
        assert!(!v.is_finite());
    }
}
