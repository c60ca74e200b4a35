//! LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
//! Recommendation", SIGIR 2020): `E_{l+1} = Â E_l` with no weights and no non-linearity; the
//! final embedding combines `E_0 … E_L`, and a user–item score is their dot product.
//!
//! Two variants (`model.variant`): `reference` follows the RLMRec code
//! (`encoder/models/general_cf/lightgcn.py`): *sum* over layers, edge dropout keep 0.8 in
//! training without rescaling, L2 1e-6 on the full tables every batch. `paper` follows He et al.:
//! *mean* over layers, no dropout, L2 1e-4 on the batch's layer-0 embeddings. SGL and SimGCL
//! reuse this propagation.
//!
//! `cargo run --release -p genrec -- run experiments/lightgcn-amazon-book.toml`

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

use crate::graph::{Edges, Graph};
use crate::model::{Combine, Settings};

/// `[E_0, E_1, …, E_L]` with `E_{l+1} = after_layer(Â E_l)` over `edges`.
/// `after_layer` is the identity except for SimGCL, which adds noise there.
///
/// # Shapes
/// - `ego`: `[n_nodes, d]`
/// - output: `layers + 1` tensors of `[n_nodes, d]`
pub fn layer_outputs<B: Backend>(
    graph: &Graph<B>,
    ego: Tensor<B, 2>,
    edges: &Edges<B>,
    layers: usize,
    after_layer: &mut dyn FnMut(Tensor<B, 2>) -> Tensor<B, 2>,
) -> Vec<Tensor<B, 2>> {
    let mut out = vec![ego];
    for _ in 0..layers {
        let next = after_layer(graph.propagate(out[out.len() - 1].clone(), edges));
        out.push(next);
    }
    out
}

/// Sum, mean or concatenation of the layer outputs.
///
/// # Shapes
/// - `layers`: `L + 1` tensors of `[n, d]`
/// - output: `[n, d]`, or `[n, d·(L+1)]` for `Concat`
pub fn combine<B: Backend>(layers: Vec<Tensor<B, 2>>, how: Combine) -> Tensor<B, 2> {
    let count = layers.len();
    match how {
        Combine::Concat => Tensor::cat(layers, 1),
        Combine::Sum | Combine::Mean => {
            let sum = layers.into_iter().reduce(|a, b| a + b).expect("at least layer 0");
            if how == Combine::Mean {
                sum.div_scalar(count as f64)
            } else {
                sum
            }
        }
    }
}

/// Propagation over the full adjacency, layers combined as `settings` says: the ranking
/// embeddings of every backbone and the clean training view of GCCF, SGL and SimGCL.
///
/// # Shapes
/// - `ego`: `[n_nodes, dim]`
/// - output: `[n_nodes, output_dim]`
pub fn full_view<B: Backend>(graph: &Graph<B>, ego: Tensor<B, 2>, settings: &Settings) -> Tensor<B, 2> {
    combine(
        layer_outputs(graph, ego, &graph.edges(), settings.layers, &mut |x| x),
        settings.combine(),
    )
}

/// LightGCN's training embeddings: propagation over the edge-dropped adjacency.
///
/// # Shapes
/// - `ego`: `[n_nodes, dim]`
/// - output: `[n_nodes, dim]`
pub fn training_view<B: Backend>(
    graph: &Graph<B>,
    ego: Tensor<B, 2>,
    settings: &Settings,
    rng: &mut ChaCha8Rng,
) -> Tensor<B, 2> {
    let edges = graph.dropped(settings.keep_rate, rng);
    combine(
        layer_outputs(graph, ego, &edges, settings.layers, &mut |x| x),
        settings.combine(),
    )
}
