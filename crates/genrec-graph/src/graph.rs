//! The user–item graph of graph collaborative filtering and propagation over it.
//!
//! Nodes are the users `0..U` followed by the items `U..U+I`. The adjacency is the binarised,
//! symmetric bipartite matrix of the *training* interactions, normalised as
//! `Â = D^-1/2 A D^-1/2` (a node without edges gets 0). Burn 0.21 has no sparse tensor, so `Â`
//! is kept as an edge list — one entry per direction, sorted by (row, column), as the COO matrix
//! of the RLMRec reference — and `Â·E` is computed in one of two ways:
//!
//! - on Flex (and, outside autodiff, NdArray) by a host kernel over the list compressed by row
//!   ([`genrec_kernels::host::Csr`]): each output row sums its scaled source rows, rows in
//!   parallel. Under `Autodiff<Flex>` it is a custom autodiff operation whose backward pass is
//!   the same kernel over the transpose. Materialising the `[nnz, d]` messages, scaling and
//!   scatter-adding them was 85% of a LightGCN epoch on ML-1M;
//! - on every other backend (CUDA, WGPU, `Autodiff<NdArray>`) with Burn's own operations,
//!
//! ```text
//! messages = E.select(0, cols) * w        [nnz, d]
//! Â·E      = zeros.select_assign(0, rows, messages, Add)
//! ```
//!
//! which is differentiable everywhere (the backward of `select` is a scatter-add and vice
//! versa). Both add the same products in the same order, so they agree bit for bit (tested).
//!
//! Edge dropout draws a keep mask on the host from the training loop's seeded stream: each
//! stored entry is kept with probability `keep` independently (so the two directions of an edge
//! are dropped independently) and kept values are *not* rescaled, exactly as the reference's
//! `SpAdjEdgeDrop`. The dropped entries are removed from the list (not zeroed), so a dropped
//! graph costs `keep` times the work of the full one, as the reference's smaller sparse matrix.

use std::any::{Any, TypeId};
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData, TensorPrimitive};
use genrec_data::HoldOut;
use genrec_kernels::host::Csr;
use genrec_kernels::is_cpu_backend;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// A weighted edge list: the full adjacency or an edge-dropped copy, in the form the backend
/// propagates with.
#[derive(Debug, Clone)]
pub struct Edges<B: Backend> {
    form: EdgeForm<B>,
    nnz: usize,
}

#[derive(Debug, Clone)]
enum EdgeForm<B: Backend> {
    /// Compressed by row on the host, with the transpose for the backward pass.
    Host(Arc<HostEdges>),
    /// Entry lists on the device for `select` / `select_assign`.
    Device {
        /// Destination node of each entry, `[nnz]`.
        rows: Tensor<B, 1, Int>,
        /// Source node of each entry, `[nnz]`.
        cols: Tensor<B, 1, Int>,
        /// `1/sqrt(deg(row) · deg(col))` of each entry, `[nnz]`.
        weights: Tensor<B, 1>,
        /// Entries per `select` / `select_assign` pair ([`DEVICE_CHUNK`] outside tests).
        chunk: usize,
    },
}

/// Most entries one `select` / `select_assign` pair handles. Burn 0.21's WGPU backend on Mesa's
/// Vulkan (lavapipe) silently dropped every entry past the 65,535th of one call — rows whose
/// entries came later stayed zero (found by comparing a Beauty-sized propagation with Flex) —
/// so the device form goes through the entries in chunks, in order, which adds the same products
/// in the same order as one call.
const DEVICE_CHUNK: usize = 1 << 15;

/// `Â` and `Âᵀ` by rows (`Â` is symmetric but an edge-dropped copy is not).
#[derive(Debug)]
struct HostEdges {
    forward: Csr,
    backward: Csr,
}

/// Whether `propagate` runs the host kernel on `B`: Flex or NdArray without autodiff, or
/// `Autodiff<Flex>` (the custom operation below is written for that type).
fn uses_host_kernel<B: Backend>(device: &B::Device) -> bool {
    is_cpu_backend::<B>(device) && (!B::ad_enabled(device) || TypeId::of::<B>() == TypeId::of::<Autodiff<Flex>>())
}

impl<B: Backend> Edges<B> {
    /// `Â` (`forward`) in the form `B` propagates with; `transpose` builds `Âᵀ`, which only the
    /// host form needs.
    fn from_csr(forward: Csr, transpose: impl FnOnce(&Csr) -> Csr, device: &B::Device) -> Self {
        let backward = uses_host_kernel::<B>(device).then(|| transpose(&forward));
        Self::with_form(forward, backward, device)
    }

    /// The host form when `backward` (= `Âᵀ`) is given, else the device form.
    fn with_form(forward: Csr, backward: Option<Csr>, device: &B::Device) -> Self {
        let nnz = forward.nnz();
        let form = if let Some(backward) = backward {
            EdgeForm::Host(Arc::new(HostEdges { forward, backward }))
        } else {
            let rows: Vec<i64> = forward.entry_rows().into_iter().map(i64::from).collect();
            let cols: Vec<i64> = forward.cols.iter().map(|&c| c as i64).collect();
            EdgeForm::Device {
                rows: Tensor::from_data(TensorData::new(rows, [nnz]), device),
                cols: Tensor::from_data(TensorData::new(cols, [nnz]), device),
                weights: Tensor::from_data(TensorData::new(forward.values, [nnz]), device),
                chunk: DEVICE_CHUNK,
            }
        };
        Edges { form, nnz }
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.nnz
    }
}

/// The normalised bipartite adjacency: host copy (for edge dropout) and the full edge list in
/// the backend's form.
#[derive(Debug, Clone)]
pub struct Graph<B: Backend> {
    pub n_users: usize,
    pub n_items: usize,
    /// `Â` by rows, columns ascending within a row.
    adjacency: Arc<Csr>,
    /// For each entry `(r, c)` of `adjacency`, the index of its mirror entry `(c, r)`.
    mirror: Arc<Vec<u32>>,
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
        let n_nodes = data.n_users + data.n_items;
        let rows: Vec<u32> = rows.into_iter().map(|r| r as u32).collect();
        let cols: Vec<u32> = cols.into_iter().map(|c| c as u32).collect();
        let adjacency = Csr::from_sorted_coo(n_nodes, n_nodes, &rows, cols, weights);
        // Entry (r, c) sits in row r; its mirror (c, r) is found in row c's ascending columns.
        let mirror = (0..adjacency.nnz())
            .map(|k| {
                let (r, c) = (rows[k], adjacency.cols[k] as usize);
                let start = adjacency.row_ptr[c];
                let row = &adjacency.cols[start..adjacency.row_ptr[c + 1]];
                (start + row.binary_search(&r).expect("the adjacency is symmetric")) as u32
            })
            .collect();
        // Â is symmetric and stored by (row, column), so its transpose is itself, entry for entry.
        let full = Edges::from_csr(adjacency.clone(), Csr::clone, device);
        Graph {
            n_users: data.n_users,
            n_items: data.n_items,
            adjacency: Arc::new(adjacency),
            mirror: Arc::new(mirror),
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
        let mut kept = vec![false; self.adjacency.nnz()];
        let mut bits = 0u64;
        for (k, kept) in kept.iter_mut().enumerate() {
            if k % 4 == 0 {
                bits = rng.next_u64();
            }
            *kept = (bits >> (16 * (k % 4))) & 0xffff < threshold;
        }
        // Row c of the transpose holds the entries (c, r) whose mirror (r, c) was kept, in
        // ascending r, with the same (symmetric) weight: a filtered pass instead of a sort. Only
        // the host form needs it; the two passes run side by side.
        if !uses_host_kernel::<B>(&self.device) {
            return Edges::with_form(self.adjacency.filter(&kept), None, &self.device);
        }
        let (forward, transpose) = rayon::join(
            || self.adjacency.filter(&kept),
            || {
                let mirrored: Vec<bool> = self.mirror.iter().map(|&m| kept[m as usize]).collect();
                self.adjacency.filter(&mirrored)
            },
        );
        Edges::with_form(forward, Some(transpose), &self.device)
    }

    /// One propagation step `Â·x` over `edges` (from [`edges`](Self::edges) or
    /// [`dropped`](Self::dropped)).
    ///
    /// # Shapes
    /// - `x`: `[n_nodes, d]`
    /// - output: `[n_nodes, d]`
    pub fn propagate(&self, x: Tensor<B, 2>, edges: &Edges<B>) -> Tensor<B, 2> {
        match &edges.form {
            EdgeForm::Host(host) => propagate_on_host(x, host),
            EdgeForm::Device {
                rows,
                cols,
                weights,
                chunk,
            } => {
                let mut out = x.zeros_like();
                for start in (0..edges.nnz).step_by(*chunk) {
                    let part = start..(start + chunk).min(edges.nnz);
                    let messages = x.clone().select(0, cols.clone().slice(part.clone()))
                        * weights.clone().slice(part.clone()).unsqueeze_dim(1);
                    out = out.select_assign(0, rows.clone().slice(part), messages, IndexingUpdateOp::Add);
                }
                out
            }
        }
    }
}

/// `Â·x` by the host kernel; `B` is one [`uses_host_kernel`] accepts.
fn propagate_on_host<B: Backend>(x: Tensor<B, 2>, edges: &Arc<HostEdges>) -> Tensor<B, 2> {
    let device = x.device();
    if !B::ad_enabled(&device) {
        let d = x.dims()[1];
        let values = x
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 embeddings");
        let out = edges.forward.matmul(&values, d);
        return Tensor::from_data(TensorData::new(out, [edges.forward.n_rows(), d]), &device);
    }
    // `B` is `Autodiff<Flex>` (checked by `uses_host_kernel`): move the primitive across by
    // `Any`, which checks the type again, instead of an unchecked cast.
    let primitive: Box<dyn Any> = Box::new(x.into_primitive().tensor());
    let primitive = *primitive
        .downcast::<FloatTensor<Autodiff<Flex>>>()
        .expect("the host propagation under autodiff is only chosen for Autodiff<Flex>");
    let out: Box<dyn Any> = Box::new(propagate_autodiff_flex(primitive, edges.clone()));
    let out = *out.downcast::<FloatTensor<B>>().expect("B is Autodiff<Flex>");
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// `csr · x` for a Flex float primitive `x` of `csr.n_cols` rows.
fn flex_matmul(csr: &Csr, x: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let x = Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(x));
    let (device, d) = (x.device(), x.dims()[1]);
    let values = x
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 embeddings");
    let out = csr.matmul(&values, d);
    Tensor::<Flex, 2>::from_data(TensorData::new(out, [csr.n_rows(), d]), &device)
        .into_primitive()
        .tensor()
}

/// The autodiff operation `y = Â·x` on Flex: forward `Â·x`, backward `Âᵀ·∂y`, both by the host
/// kernel. No other state is kept for the backward pass than the shared edge lists.
fn propagate_autodiff_flex(x: FloatTensor<Autodiff<Flex>>, edges: Arc<HostEdges>) -> FloatTensor<Autodiff<Flex>> {
    #[derive(Debug)]
    struct PropagateBackward;

    impl Backward<Flex, 1> for PropagateBackward {
        type State = Arc<HostEdges>;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
            let grad = grads.consume::<Flex>(&ops.node);
            let [parent] = ops.parents;
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, flex_matmul(&ops.state.backward, grad));
            }
        }
    }

    let output = flex_matmul(&edges.forward, x.primitive.clone());
    match PropagateBackward
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(edges, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
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
        let data = patterned(50, 40, |u, i| (u + i) % 3 == 0);
        let g = Graph::<B>::new(&data, &device);
        let (rows, cols, full) = normalised_edges(&data);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let kept = g.dropped(0.8, &mut rng);
        let frac = kept.nnz() as f64 / full.len() as f64;
        assert!((frac - 0.8).abs() < 0.03, "kept {frac}");
        // Every kept entry is an original entry with its original (unscaled) weight, in order.
        let EdgeForm::Host(host) = &kept.form else {
            panic!("Flex propagates on the host")
        };
        let csr = &host.forward;
        let kr: Vec<i64> = csr.entry_rows().into_iter().map(i64::from).collect();
        let kc: Vec<i64> = csr.cols.iter().map(|&c| c as i64).collect();
        let kw = &csr.values;
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

    /// Training pairs `(u, i)` where `pair(u, i)`, nothing held out.
    fn patterned(n_users: usize, n_items: usize, pair: impl Fn(usize, usize) -> bool) -> HoldOut {
        HoldOut {
            n_users,
            n_items,
            train: (0..n_users)
                .map(|u| (0..n_items).filter(|&i| pair(u, i)).map(|i| i as u32).collect())
                .collect(),
            valid: vec![vec![]; n_users],
            test: vec![vec![]; n_users],
        }
    }

    /// A graph whose edge-dropped adjacency is not symmetric, and the same entries in both forms.
    fn both_forms<Bk: Backend>(device: &Bk::Device) -> (Graph<Bk>, Edges<Bk>, Edges<Bk>) {
        use rand::SeedableRng;
        let data = patterned(30, 20, |u, i| (u * 7 + i * 3) % 4 == 0);
        let g = Graph::<Bk>::new(&data, device);
        let (rows, cols, weights) = normalised_edges(&data);
        // The same draw as `dropped`, kept entries in both forms.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let threshold = (0.7f64 * 65536.0).round() as u64;
        let mut bits = 0u64;
        let (mut r, mut c, mut w) = (vec![], vec![], vec![]);
        for k in 0..rows.len() {
            if k % 4 == 0 {
                bits = rng.next_u64();
            }
            if (bits >> (16 * (k % 4))) & 0xffff < threshold {
                r.push(rows[k]);
                c.push(cols[k]);
                w.push(weights[k]);
            }
        }
        let n = g.n_nodes();
        let r: Vec<u32> = r.into_iter().map(|v| v as u32).collect();
        let c: Vec<u32> = c.into_iter().map(|v| v as u32).collect();
        let csr = Csr::from_sorted_coo(n, n, &r, c, w);
        // `dropped` draws the same entries and builds the transpose by mirroring.
        let drawn = g.dropped(0.7, &mut ChaCha8Rng::seed_from_u64(5));
        match &drawn.form {
            EdgeForm::Host(h) => {
                assert_eq!(h.forward, csr);
                assert_eq!(h.backward, csr.transpose());
            }
            EdgeForm::Device { .. } => {}
        }
        let host = Edges::with_form(csr.clone(), Some(csr.transpose()), device);
        let dev = Edges::with_form(csr, None, device);
        (g, host, dev)
    }

    #[test]
    fn host_kernel_matches_gather_scatter_with_gradients() {
        // Two propagation layers over a non-symmetric (edge-dropped) adjacency, the input also
        // used outside the propagation: values and gradients of the custom operation equal the
        // select / scatter-add form.
        type A = Autodiff<Flex>;
        let device = Default::default();
        let (g, host, dev) = both_forms::<A>(&device);
        let n = g.n_nodes();
        let init: Vec<f32> = (0..n * 6).map(|k| (k as f32 * 0.29).sin()).collect();
        let c: Vec<f32> = (0..n * 6).map(|k| (k as f32 * 0.11).cos()).collect();
        let run = |edges: &Edges<A>| {
            let x = Tensor::<A, 2>::from_data(TensorData::new(init.clone(), [n, 6]), &device).require_grad();
            let c = Tensor::<A, 2>::from_data(TensorData::new(c.clone(), [n, 6]), &device);
            let one = g.propagate(x.clone(), edges);
            let two = g.propagate(one.clone(), edges);
            let out = x.clone() + one + two;
            let loss = (out.clone() * c).sum() + (out.clone() * out.clone()).sum() * 0.5;
            let grad = x.grad(&loss.backward()).unwrap().into_data().to_vec::<f32>().unwrap();
            (out.into_data().to_vec::<f32>().unwrap(), grad)
        };
        let (out_h, grad_h) = run(&host);
        let (out_d, grad_d) = run(&dev);
        assert_eq!(out_h, out_d);
        // In chunks of 7 entries: the same sums in the same order (values bit for bit; the
        // gradients are assembled from the chunks' pieces, so to rounding).
        let mut chunked = dev.clone();
        match &mut chunked.form {
            EdgeForm::Device { chunk, .. } => *chunk = 7,
            EdgeForm::Host(_) => unreachable!("with_form(_, None, _) is the device form"),
        }
        assert!(dev.nnz() > 7);
        let (out_c, grad_c) = run(&chunked);
        assert_eq!(out_c, out_d);
        for (a, b) in grad_c.iter().zip(&grad_d) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        for (a, b) in grad_h.iter().zip(&grad_d) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // An input that needs no gradient goes through the operation untracked.
        let x = Tensor::<A, 2>::from_data(TensorData::new(init.clone(), [n, 6]), &device);
        assert_eq!(g.propagate(x, &host).into_data().to_vec::<f32>().unwrap(), {
            let x = Tensor::<A, 2>::from_data(TensorData::new(init.clone(), [n, 6]), &device);
            g.propagate(x, &dev).into_data().to_vec::<f32>().unwrap()
        });
    }

    #[test]
    fn host_kernel_without_autodiff_matches_gather_scatter() {
        use rand::SeedableRng;
        let device = Default::default();
        let (g, host, dev) = both_forms::<B>(&device);
        let n = g.n_nodes();
        let x: Vec<f32> = (0..n * 5).map(|k| (k as f32 * 0.43).sin()).collect();
        let x = Tensor::<B, 2>::from_data(TensorData::new(x, [n, 5]), &device);
        let a = g.propagate(x.clone(), &host).into_data().to_vec::<f32>().unwrap();
        let b = g.propagate(x, &dev).into_data().to_vec::<f32>().unwrap();
        assert_eq!(a, b);
        // The graph built for Flex uses the host form; the full Â is its own transpose.
        let EdgeForm::Host(full) = &g.edges().form else {
            panic!("Flex propagates on the host")
        };
        assert_eq!(full.backward, full.forward.transpose());
        assert!(matches!(
            g.dropped(0.7, &mut ChaCha8Rng::seed_from_u64(5)).form,
            EdgeForm::Host(_)
        ));
    }
}
