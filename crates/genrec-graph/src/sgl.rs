//! SGL (Wu et al., "Self-supervised Graph Learning for Recommendation", SIGIR 2021), edge-drop
//! augmentation, as the RLMRec code runs it (`encoder/models/general_cf/sgl.py`): two LightGCN
//! views over independently edge-dropped adjacencies (keep 0.8), InfoNCE between them for the
//! batch's users (against all users of view 2), positives and negatives (each against all items
//! of view 2), and BPR on a third, clean view. Amazon-book: L2 1e-5, InfoNCE weight 0.1, τ 0.2.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use rand_chacha::ChaCha8Rng;

use crate::graph::{Edges, Graph};
use crate::lightgcn::{combine, full_view, layer_outputs};
use crate::losses::info_nce_sum;
use crate::model::{pick, split_nodes, Settings, Triples};

/// The clean view for BPR and the summed (unweighted) InfoNCE term between two dropped views.
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
    let view = |edges: &Edges<B>| {
        combine(
            layer_outputs(graph, ego.clone(), edges, settings.layers, &mut |x| x),
            settings.combine(),
        )
    };
    let first = view(&graph.dropped(settings.keep_rate, rng));
    let second = view(&graph.dropped(settings.keep_rate, rng));
    let clean = full_view(graph, ego, settings);
    let (a, b) = (pick(&first, graph.n_users, batch), pick(&second, graph.n_users, batch));
    let (all_users, all_items) = split_nodes(second, graph.n_users);
    let t = settings.cl_temperature;
    let cl = info_nce_sum(a.anchor, b.anchor, all_users, t)
        + info_nce_sum(a.pos, b.pos, all_items.clone(), t)
        + info_nce_sum(a.neg, b.neg, all_items, t);
    (clean, cl)
}
