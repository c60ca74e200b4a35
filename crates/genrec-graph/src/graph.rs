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
//! versa). Edge dropout draws a keep mask on the host from the training loop's seeded stream: each
//! stored entry is kept with probability `keep` independently (so the two directions of an edge
//! are dropped independently) and kept values are *not* rescaled, exactly as the reference's
//! `SpAdjEdgeDrop`. The dropped entries are removed from the list (not zeroed), so a dropped
//! graph costs `keep` times the work of the full one, as the reference's smaller sparse matrix.

use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use genrec_data::HoldOut;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// A weighted edge list on a device: the full adjacency or an edge-dropped copy.
#[derive(Debug, Clone)]
pub struct Edges<B: Backend> {
    /// Destination node of each entry, `[nnz]`.
    rows: Tensor<B, 1, Int>,
    /// Source node of each entry, `[nnz]`.
    cols: Tensor<B, 1, Int>,
    /// `1/sqrt(deg(row) · deg(col))` of each entry, `[nnz]`.
    weights: Tensor<B, 1>,
    nnz: usize,
}

impl<B: Backend> Edges<B> {
    fn new(rows: Vec<i64>, cols: Vec<i64>, weights: Vec<f32>, device: &B::Device) -> Self {
        let nnz = rows.len();
        Edges {
            rows: Tensor::from_data(TensorData::new(rows, [nnz]), device),
            cols: Tensor::from_data(TensorData::new(cols, [nnz]), device),
            weights: Tensor::from_data(TensorData::new(weights, [nnz]), device),
            nnz,
        }
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.nnz
    }
}

/// The normalised bipartite adjacency: host copy (for edge dropout) and device edge list.
#[derive(Debug, Clone)]
pub struct Graph<B: Backend> {
    pub n_users: usize,
    pub n_items: usize,
    host: (Vec<i64>, Vec<i64>, Vec<f32>),
    full: Edges<B>,
    device: B::Device,
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
        let full = Edges::new(rows.clone(), cols.clone(), weights.clone(), device);
        Graph {
            n_users: data.n_users,
            n_items: data.n_items,
            host: (rows, cols, weights),
            full,
            device: device.clone(),
        }
    }

    /// Users + items.
    pub fn n_nodes(&self) -> usize {
        self.n_users + self.n_items
    }

    /// Stored entries (twice the distinct training pairs).
    pub fn nnz(&self) -> usize {
        self.full.nnz
    }

    /// The full normalised adjacency.
    pub fn edges(&self) -> Edges<B> {
        self.full.clone()
    }

    /// The adjacency with each entry kept with probability `keep`, values not rescaled. `keep ≥ 1`
    /// returns the full adjacency without drawing. The keep test uses 16 random bits per entry,
    /// so `keep` is rounded to 1/65536.
    pub fn dropped(&self, keep: f64, rng: &mut ChaCha8Rng) -> Edges<B> {
        if keep >= 1.0 {
            return self.edges();
        }
        let threshold = (keep * 65536.0).round() as u64;
        let (rows, cols, weights) = &self.host;
        let n = rows.len();
        let expected = (n as f64 * keep) as usize + 64;
        let (mut r, mut c, mut w) = (
            Vec::with_capacity(expected),
            Vec::with_capacity(expected),
            Vec::with_capacity(expected),
        );
        let mut bits = 0u64;
        for k in 0..n {
            if k % 4 == 0 {
                bits = rng.next_u64();
            }
            if (bits >> (16 * (k % 4))) & 0xffff < threshold {
                r.push(rows[k]);
                c.push(cols[k]);
                w.push(weights[k]);
            }
        }
        Edges::new(r, c, w, &self.device)
    }

    /// One propagation step `Â·x` over `edges` (from [`edges`](Self::edges) or
    /// [`dropped`](Self::dropped)).
    ///
    /// # Shapes
    /// - `x`: `[n_nodes, d]`
    /// - output: `[n_nodes, d]`
    pub fn propagate(&self, x: Tensor<B, 2>, edges: &Edges<B>) -> Tensor<B, 2> {
        let messages = x.clone().select(0, edges.cols.clone()) * edges.weights.clone().unsqueeze_dim(1);
        x.zeros_like()
            .select_assign(0, edges.rows.clone(), messages, IndexingUpdateOp::Add)
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
        assert_eq!(
            w,
            vec![
                s(2., 1.),
                s(2., 2.),
                s(2., 2.),
                s(2., 1.),
                s(1., 2.),
                s(2., 2.),
                s(2., 2.),
                s(1., 2.)
            ]
        );
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
        let got = g.propagate(
            Tensor::from_data(TensorData::new(x.clone(), [n, 3]), &device),
            &g.edges(),
        );
        let got = got.into_data().to_vec::<f32>().unwrap();
        for r in 0..n {
            for d in 0..3 {
                let want: f32 = (0..n).map(|c| a[r * n + c] * x[c * 3 + d]).sum();
                assert!(
                    (got[r * 3 + d] - want).abs() < 1e-6,
                    "row {r} dim {d}: {} vs {want}",
                    got[r * 3 + d]
                );
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
        let loss = (g.propagate(x.clone(), &g.edges()) * c.clone()).sum();
        let grad = x.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
        let want = g.propagate(c, &g.edges()).into_data().to_vec::<f32>().unwrap();
        for (a, b) in grad.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{grad:?} vs {want:?}");
        }
    }

    #[test]
    fn edge_dropout_keeps_the_asked_fraction_unscaled() {
        use rand::SeedableRng;
        let device = Default::default();
        // A denser graph: 50 users × 40 items, every third pair.
        let train: Vec<Vec<u32>> = (0..50)
            .map(|u| (0..40).filter(|i| (u + i) % 3 == 0).collect())
            .collect();
        let data = HoldOut {
            n_users: 50,
            n_items: 40,
            valid: vec![vec![]; 50],
            test: vec![vec![]; 50],
            train,
        };
        let g = Graph::<B>::new(&data, &device);
        let (rows, cols, full) = normalised_edges(&data);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let kept = g.dropped(0.8, &mut rng);
        let frac = kept.nnz() as f64 / full.len() as f64;
        assert!((frac - 0.8).abs() < 0.03, "kept {frac}");
        // Every kept entry is an original entry with its original (unscaled) weight, in order.
        let kr = kept.rows.clone().into_data().convert::<i64>().to_vec::<i64>().unwrap();
        let kc = kept.cols.clone().into_data().convert::<i64>().to_vec::<i64>().unwrap();
        let kw = kept.weights.clone().into_data().to_vec::<f32>().unwrap();
        let mut k = 0;
        for e in 0..full.len() {
            if k < kr.len() && (kr[k], kc[k]) == (rows[e], cols[e]) {
                assert_eq!(kw[k], full[e], "kept values are not rescaled");
                k += 1;
            }
        }
        assert_eq!(k, kr.len());
        assert_eq!(g.dropped(1.0, &mut rng).nnz(), full.len());
    }
}
