//! The user–item graph of graph collaborative filtering and propagation over it.
//!
//! Nodes are the users `0..U` followed by the items `U..U+I`. The adjacency is the binarised,
//! symmetric bipartite matrix of the *training* interactions, normalised as
//! `Â = D^-1/2 A D^-1/2` (a node without edges gets 0). Burn 0.21 has no sparse tensor, so `Â`
//! is kept as an edge list — one entry per direction, sorted by (row, column), as the COO matrix
//! of the RLMRec reference — and `Â·E` is computed as
//!
//! ```text
//! messages = E.select(0, cols) * w        [nnz, d]
//! Â·E      = zeros.select_assign(0, rows, messages, Add)
//! ```
//!
//! which is differentiable on every backend (the backward of `select` is a scatter-add and vice
//! versa). Edge dropout multiplies `w` by a 0/1 mask drawn on the host from the training loop's
//! seeded stream: each stored entry is kept with probability `keep` independently (so the two
//! directions of an edge are dropped independently) and kept values are *not* rescaled, exactly
//! as the reference's `SpAdjEdgeDrop`.

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use genrec_data::HoldOut;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// The normalised bipartite adjacency as an edge list on a device.
#[derive(Debug, Clone)]
pub struct Graph<B: Backend> {
    pub n_users: usize,
    pub n_items: usize,
    /// Destination node of each entry, `[nnz]`.
    rows: Tensor<B, 1, Int>,
    /// Source node of each entry, `[nnz]`.
    cols: Tensor<B, 1, Int>,
    /// `1/sqrt(deg(row) · deg(col))` of each entry, `[nnz]`.
    weights: Tensor<B, 1>,
    nnz: usize,
}

/// The host-side edge list: `(rows, cols, weights)` sorted by (row, column), both directions of
/// every distinct training pair.
pub fn normalised_edges(data: &HoldOut) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let n_users = data.n_users;
    let n_nodes = n_users + data.n_items;
    let mut degree = vec![0usize; n_nodes];
    let mut edges: Vec<(usize, usize)> = Vec::new();
    for (u, items) in data.train.iter().enumerate() {
        // HoldOut rows are ascending and without repeats, so every pair is one edge.
        for &i in items {
            let v = n_users + i as usize;
            edges.push((u, v));
            edges.push((v, u));
            degree[u] += 1;
            degree[v] += 1;
        }
    }
    edges.sort_unstable();
    let inv_sqrt: Vec<f64> = degree
        .iter()
        .map(|&d| if d == 0 { 0.0 } else { 1.0 / (d as f64).sqrt() })
        .collect();
    let rows = edges.iter().map(|&(r, _)| r as i64).collect();
    let cols = edges.iter().map(|&(_, c)| c as i64).collect();
    let weights = edges.iter().map(|&(r, c)| (inv_sqrt[r] * inv_sqrt[c]) as f32).collect();
    (rows, cols, weights)
}

impl<B: Backend> Graph<B> {
    /// The graph of `data`'s training interactions on `device`.
    pub fn new(data: &HoldOut, device: &B::Device) -> Self {
        let (rows, cols, weights) = normalised_edges(data);
        let nnz = rows.len();
        Graph {
            n_users: data.n_users,
            n_items: data.n_items,
            rows: Tensor::from_data(TensorData::new(rows, [nnz]), device),
            cols: Tensor::from_data(TensorData::new(cols, [nnz]), device),
            weights: Tensor::from_data(TensorData::new(weights, [nnz]), device),
            nnz,
        }
    }

    /// Users + items.
    pub fn n_nodes(&self) -> usize {
        self.n_users + self.n_items
    }

    /// Stored entries (twice the distinct training pairs).
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// The full normalised weights, `[nnz]`.
    pub fn weights(&self) -> Tensor<B, 1> {
        self.weights.clone()
    }

    /// The weights with each entry kept with probability `keep` (not rescaled), `[nnz]`. `keep
    /// ≥ 1` returns the full weights without drawing. The keep test uses 16 random bits per
    /// entry, so `keep` is rounded to 1/65536.
    pub fn dropped_weights(&self, keep: f64, rng: &mut ChaCha8Rng) -> Tensor<B, 1> {
        if keep >= 1.0 {
            return self.weights();
        }
        let threshold = (keep * 65536.0).round() as u64;
        let mut mask = Vec::with_capacity(self.nnz + 3);
        while mask.len() < self.nnz {
            let bits = rng.next_u64();
            for k in 0..4 {
                mask.push(if (bits >> (16 * k)) & 0xffff < threshold { 1.0f32 } else { 0.0 });
            }
        }
        mask.truncate(self.nnz);
        let mask = Tensor::from_data(TensorData::new(mask, [self.nnz]), &self.weights.device());
        self.weights.clone() * mask
    }

    /// One propagation step `Â·x` with per-entry weights `weights` (from [`weights`](Self::weights)
    /// or [`dropped_weights`](Self::dropped_weights)).
    ///
    /// # Shapes
    /// - `x`: `[n_nodes, d]`
    /// - `weights`: `[nnz]`
    /// - output: `[n_nodes, d]`
    pub fn propagate(&self, x: Tensor<B, 2>, weights: Tensor<B, 1>) -> Tensor<B, 2> {
        let messages = x.clone().select(0, self.cols.clone()) * weights.unsqueeze_dim(1);
        x.zeros_like().select_assign(0, self.rows.clone(), messages, IndexingUpdateOp::Add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use genrec_data::HoldOut;

    type B = Flex;

    /// Users 0, 1; items 0, 1, 2. User 0 has items {0, 1}, user 1 has {1, 2}.
    fn tiny() -> HoldOut {
        HoldOut {
            n_users: 2,
            n_items: 3,
            train: vec![vec![0, 1], vec![1, 2]],
            valid: vec![vec![2], vec![]],
            test: vec![vec![], vec![0]],
        }
    }

    #[test]
    fn normalisation_by_hand() {
        // Degrees: users 2, 2; items 1, 2, 1. Nodes: u0=0, u1=1, i0=2, i1=3, i2=4.
        let (rows, cols, w) = normalised_edges(&tiny());
        assert_eq!(rows, vec![0, 0, 1, 1, 2, 3, 3, 4]);
        assert_eq!(cols, vec![2, 3, 3, 4, 0, 0, 1, 1]);
        let s = |a: f64, b: f64| (1.0 / (a * b).sqrt()) as f32;
        assert_eq!(w, vec![s(2., 1.), s(2., 2.), s(2., 2.), s(2., 1.), s(1., 2.), s(2., 2.), s(2., 2.), s(1., 2.)]);
    }

    #[test]
    fn propagation_matches_a_dense_product() {
        let device = Default::default();
        let data = tiny();
        let g = Graph::<B>::new(&data, &device);
        // Dense Â built independently from the degree formula.
        let n = 5;
        let mut a = vec![0f32; n * n];
        for (u, items) in data.train.iter().enumerate() {
            for &i in items {
                a[u * n + 2 + i as usize] = 1.0;
                a[(2 + i as usize) * n + u] = 1.0;
            }
        }
        let deg: Vec<f32> = (0..n).map(|r| a[r * n..(r + 1) * n].iter().sum()).collect();
        for r in 0..n {
            for c in 0..n {
                if a[r * n + c] != 0.0 {
                    a[r * n + c] /= (deg[r] * deg[c]).sqrt();
                }
            }
        }
        let x: Vec<f32> = (0..n * 3).map(|k| (k as f32 * 0.37).sin()).collect();
        let got = g.propagate(Tensor::from_data(TensorData::new(x.clone(), [n, 3]), &device), g.weights());
        let got = got.into_data().to_vec::<f32>().unwrap();
        for r in 0..n {
            for d in 0..3 {
                let want: f32 = (0..n).map(|c| a[r * n + c] * x[c * 3 + d]).sum();
                assert!((got[r * 3 + d] - want).abs() < 1e-6, "row {r} dim {d}: {} vs {want}", got[r * 3 + d]);
            }
        }
    }

    #[test]
    fn propagation_gradient_is_the_transpose() {
        // d/dx sum(c ⊙ Âx) = Âᵀc; Â is symmetric, so it equals Âc.
        type A = Autodiff<Flex>;
        let device = Default::default();
        let g = Graph::<A>::new(&tiny(), &device);
        let x = Tensor::<A, 2>::from_data(TensorData::new(vec![0.5f32; 10], [5, 2]), &device).require_grad();
        let c: Vec<f32> = (0..10).map(|k| k as f32 - 3.0).collect();
        let c = Tensor::<A, 2>::from_data(TensorData::new(c, [5, 2]), &device);
        let loss = (g.propagate(x.clone(), g.weights()) * c.clone()).sum();
        let grad = x.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
        let want = g.propagate(c, g.weights()).into_data().to_vec::<f32>().unwrap();
        for (a, b) in grad.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{grad:?} vs {want:?}");
        }
    }

    #[test]
    fn edge_dropout_keeps_the_asked_fraction_unscaled() {
        use rand::SeedableRng;
        let device = Default::default();
        // A denser graph: 50 users × 40 items, every third pair.
        let train: Vec<Vec<u32>> = (0..50).map(|u| (0..40).filter(|i| (u + i) % 3 == 0).collect()).collect();
        let data = HoldOut {
            n_users: 50,
            n_items: 40,
            valid: vec![vec![]; 50],
            test: vec![vec![]; 50],
            train,
        };
        let g = Graph::<B>::new(&data, &device);
        let full = g.weights().into_data().to_vec::<f32>().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let kept = g.dropped_weights(0.8, &mut rng).into_data().to_vec::<f32>().unwrap();
        let n_kept = kept.iter().filter(|&&w| w != 0.0).count();
        let frac = n_kept as f64 / full.len() as f64;
        assert!((frac - 0.8).abs() < 0.03, "kept {frac}");
        for (k, f) in kept.iter().zip(&full) {
            assert!(*k == 0.0 || k == f, "kept values are not rescaled");
        }
        assert_eq!(g.dropped_weights(1.0, &mut rng).into_data().to_vec::<f32>().unwrap(), full);
    }
}
