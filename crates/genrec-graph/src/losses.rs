//! The losses of graph CF and RLMRec, written as the reference's `loss_utils.py` defines them
//! (sums vs means matter: the weights in the configs were tuned against these exact scales).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use genrec_kernels::fused::{linear_log_sum_exp, log_sum_exp};

/// `log(1 + e^x)` without overflow: `max(x, 0) + log1p(e^-|x|)`.
pub fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p()
}

/// Summed BPR loss `Σ_b softplus(⟨a,n⟩ − ⟨a,p⟩)` (the caller divides by the batch size).
///
/// # Shapes
/// - `anchor`, `pos`, `neg`: `[batch, d]`
/// - output: `[1]`
pub fn bpr_sum<B: Backend>(anchor: Tensor<B, 2>, pos: Tensor<B, 2>, neg: Tensor<B, 2>) -> Tensor<B, 1> {
    let pos = (anchor.clone() * pos).sum_dim(1);
    let neg = (anchor * neg).sum_dim(1);
    softplus(neg - pos).sum()
}

/// Rows divided by `sqrt(1e-8 + ‖row‖²)` (the reference's InfoNCE normalisation).
fn unit_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = (x.clone().square().sum_dim(1) + 1e-8).sqrt();
    x / norm
}

/// Summed InfoNCE `Σ_b [−⟨â_b, p̂_b⟩/τ + log Σ_j exp(⟨â_b, ĉ_j⟩/τ)]` with unit rows: each anchor's
/// positive against every candidate row (`candidates` usually holds the positives' whole table,
/// or the batch's own positives). The log-sum-exp over the `[batch, m]` similarities goes through
/// [`linear_log_sum_exp`], fused with the product (one row softmax, on CPU backends a vectorised
/// host kernel, and the similarities never enter the autodiff graph: they are the largest tensor
/// of a contrastive step).
///
/// # Shapes
/// - `anchor`, `positive`: `[batch, d]`
/// - `candidates`: `[m, d]`
/// - output: `[1]`
pub fn info_nce_sum<B: AutodiffBackend>(
    anchor: Tensor<B, 2>,
    positive: Tensor<B, 2>,
    candidates: Tensor<B, 2>,
    temperature: f64,
) -> Tensor<B, 1> {
    let a = unit_rows(anchor);
    let p = unit_rows(positive);
    let c = unit_rows(candidates);
    let numerator = (a.clone() * p).sum().div_scalar(temperature);
    linear_log_sum_exp(a.div_scalar(temperature), c) - numerator
}

/// RLMRec-Gen's reconstruction loss (`ssl_con_loss`): with `x̂ = x/max(‖x‖, 1e-12)`,
/// `mean_b −log(exp(⟨x̂_b, ŷ_b⟩/τ) / (Σ_j exp(⟨x̂_b, ŷ_j⟩/τ) + 1e-8) + 1e-8)`, the sum over `j`
/// as `exp` of the fused [`log_sum_exp`] (overflowing where the reference's own `exp` would).
///
/// # Shapes
/// - `x`, `y`: `[n, d]`
/// - output: `[1]`
pub fn reconstruction_nce<B: AutodiffBackend>(x: Tensor<B, 2>, y: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let unit = |t: Tensor<B, 2>| {
        let norm = t.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
        t / norm
    };
    let (x, y) = (unit(x), unit(y));
    let positive = (x.clone() * y.clone())
        .sum_dim(1)
        .div_scalar(temperature)
        .exp()
        .squeeze_dim(1);
    let all = log_sum_exp(x.matmul(y.transpose()).div_scalar(temperature)).exp();
    ((positive / (all + 1e-8)) + 1e-8).log().neg().mean()
}

/// `Σ_W ‖W‖²` over every float parameter of `module` (the reference's `reg_params`: the L2 term
/// on the full tables and every other weight, added to each batch's loss).
pub fn squared_norm<B: Backend, M: Module<B>>(module: &M) -> Tensor<B, 1> {
    struct Sum<B: Backend>(Option<Tensor<B, 1>>);
    impl<B: Backend> ModuleVisitor<B> for Sum<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let s = param.val().square().sum();
            self.0 = Some(match self.0.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
    let mut sum = Sum(None);
    module.visit(&mut sum);
    sum.0.expect("the module has at least one float parameter")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::TensorData;

    type B = Autodiff<Flex>;

    fn t(rows: usize, v: &[f32]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [rows, v.len() / rows]), &Default::default())
    }
    fn scalar(x: Tensor<B, 1>) -> f64 {
        x.into_scalar() as f64
    }

    #[test]
    fn softplus_is_stable_and_exact() {
        let x = Tensor::<B, 1>::from_floats([-100.0, -1.0, 0.0, 2.0, 100.0], &Default::default());
        let got = softplus(x).into_data().to_vec::<f32>().unwrap();
        let want = [
            0.0,
            (1.0f64 + (-1f64).exp()).ln(),
            2f64.ln(),
            (1.0f64 + 2f64.exp()).ln(),
            100.0,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn bpr_by_hand() {
        // ⟨a,p⟩ = 1, ⟨a,n⟩ = 0 → ln(1 + e^-1); second row ⟨a,p⟩ = 0, ⟨a,n⟩ = 2 → ln(1 + e^2).
        let got = scalar(bpr_sum(
            t(2, &[1., 0., 0., 1.]),
            t(2, &[1., 0., 0., 0.]),
            t(2, &[0., 1., 0., 2.]),
        ));
        let want = (1.0f64 + (-1f64).exp()).ln() + (1.0f64 + 2f64.exp()).ln();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn info_nce_by_hand() {
        // One anchor (1,0), positive (2,0) → cos 1; candidates (1,0), (0,3) → cos 1, 0. τ = 0.5.
        let got = scalar(info_nce_sum(
            t(1, &[1., 0.]),
            t(1, &[2., 0.]),
            t(2, &[1., 0., 0., 3.]),
            0.5,
        ));
        let want = -2.0 + (2f64.exp() + 1.0).ln();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// Values and gradients against the decomposed reference formula, with the candidates being
    /// the positives' own table (RLMRec's item terms), τ ≠ 1 and a scaled upstream gradient.
    #[test]
    fn info_nce_matches_the_decomposed_form_in_value_and_gradient() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect() };
        let (a0, p0) = (values(6 * 4), values(6 * 4));
        let reference = |a: Tensor<B, 2>, p: Tensor<B, 2>, c: Tensor<B, 2>, tau: f64| {
            let (a, p, c) = (unit_rows(a), unit_rows(p), unit_rows(c));
            let numerator = (a.clone() * p).sum_dim(1).div_scalar(tau);
            let logits = a.matmul(c.transpose()).div_scalar(tau);
            let max = logits.clone().detach().max_dim(1);
            let denominator = (logits - max.clone()).exp().sum_dim(1).log() + max;
            (denominator - numerator).sum()
        };
        let run = |fused: bool| {
            let a = t(6, &a0).require_grad();
            let p = t(6, &p0).require_grad();
            let loss = if fused {
                info_nce_sum(a.clone(), p.clone(), p.clone(), 0.2)
            } else {
                reference(a.clone(), p.clone(), p.clone(), 0.2)
            };
            let grads = (loss.clone() * 0.5).backward();
            let v = |x: Tensor<Flex, 2>| x.into_data().to_vec::<f32>().unwrap();
            (scalar(loss), v(a.grad(&grads).unwrap()), v(p.grad(&grads).unwrap()))
        };
        let (fv, fa, fp) = run(true);
        let (dv, da, dp) = run(false);
        assert!((fv - dv).abs() < 1e-5 * (1.0 + dv.abs()), "{fv} vs {dv}");
        for (f, d) in fa.iter().zip(&da).chain(fp.iter().zip(&dp)) {
            assert!((f - d).abs() < 1e-5 * (1.0 + d.abs()), "{f} vs {d}");
        }
    }

    #[test]
    fn reconstruction_by_hand() {
        // x = [(1,0), (0,1)], y = [(3,0), (1,1)]; τ = 1.
        let got = scalar(reconstruction_nce(
            t(2, &[1., 0., 0., 1.]),
            t(2, &[3., 0., 1., 1.]),
            1.0,
        ));
        let h = 0.5f64.sqrt();
        let row0 = 1f64.exp() / (1f64.exp() + h.exp() + 1e-8);
        let row1 = h.exp() / (0f64.exp() + h.exp() + 1e-8);
        let want = -((row0 + 1e-8).ln() + (row1 + 1e-8).ln()) / 2.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
