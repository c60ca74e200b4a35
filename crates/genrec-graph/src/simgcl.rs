//! SimGCL (Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
//! Recommendation", SIGIR 2022) as the RLMRec code runs it (`encoder/models/general_cf/simgcl.py`):
//! two views whose every propagated layer gets uniform noise `ε · sign(E) ⊙ normalize(U[0,1))`
//! (rows scaled to unit length), InfoNCE between the views for the batch's users (against all
//! users of view 2) and positives (against all items of view 2), BPR on a clean view. Layer 0 is
//! not perturbed and, as in the reference, the layers are summed over 0..L (the SimGCL paper
//! averages layers 1..L). Amazon-book: ε 0.9, L2 1e-5, InfoNCE weight 0.1, τ 0.2, no dropout.
//!
//! `cargo run --release -p genrec -- run experiments/simgcl-amazon-book.toml`

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::graph::Graph;
use crate::lightgcn::{combine, full_view, layer_outputs};
use crate::losses::info_nce_sum;
use crate::model::{pick, split_nodes, Settings, Triples};

/// `x + ε · sign(x) ⊙ r` with `r` uniform in [0, 1) per element, each row scaled to unit L2 norm
/// (drawn on the host from the training loop's stream).
///
/// # Shapes
/// - `x`: `[n, d]`, output the same
pub fn perturb<B: Backend>(x: Tensor<B, 2>, eps: f64, rng: &mut ChaCha8Rng) -> Tensor<B, 2> {
    let [n, d] = x.dims();
    let mut noise: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>()).collect();
    for row in noise.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let noise = Tensor::<B, 2>::from_data(TensorData::new(noise, [n, d]), &x.device());
    x.clone() + x.sign() * noise.mul_scalar(eps)
}

/// The clean view for BPR and the summed (unweighted) InfoNCE term between two perturbed views.
///
/// # Shapes
/// - `ego`: `[n_nodes, dim]`
/// - output: `([n_nodes, dim], [1])`
pub fn views<B: AutodiffBackend>(
    graph: &Graph<B>,
    ego: Tensor<B, 2>,
    settings: &Settings,
    batch: &Triples<B>,
    rng: &mut ChaCha8Rng,
) -> (Tensor<B, 2>, Tensor<B, 1>) {
    let eps = settings.noise_eps;
    let mut noisy = || {
        let layers = layer_outputs(graph, ego.clone(), &graph.edges(), settings.layers, &mut |x| {
            perturb(x, eps, rng)
        });
        combine(layers, settings.combine())
    };
    let first = noisy();
    let second = noisy();
    let clean = full_view(graph, ego, settings);
    let (a, b) = (pick(&first, graph.n_users, batch), pick(&second, graph.n_users, batch));
    let (all_users, all_items) = split_nodes(second, graph.n_users);
    let t = settings.cl_temperature;
    let cl = info_nce_sum(a.anchor, b.anchor, all_users, t) + info_nce_sum(a.pos, b.pos, all_items, t);
    (clean, cl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use rand::SeedableRng;

    #[test]
    fn noise_has_norm_eps_and_the_sign_of_x() {
        let x = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![1.0f32, -2.0, 0.5, -0.1, 3.0, 0.2], [2, 3]),
            &Default::default(),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let y = perturb(x.clone(), 0.9, &mut rng);
        let noise = (y - x.clone()).into_data().to_vec::<f32>().unwrap();
        let x = x.into_data().to_vec::<f32>().unwrap();
        for r in 0..2 {
            let row = &noise[r * 3..r * 3 + 3];
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 0.9).abs() < 1e-5, "row {r}: {norm}");
            for c in 0..3 {
                assert!(row[c] * x[r * 3 + c] >= 0.0, "noise follows the sign of x");
            }
        }
    }
}
