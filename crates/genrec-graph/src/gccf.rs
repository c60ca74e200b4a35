//! GCCF / LR-GCCF (Chen et al., "Revisiting Graph Based Collaborative Filtering: A Linear
//! Residual Graph Convolutional Network Approach", AAAI 2020) as the RLMRec code runs it
//! (`encoder/models/general_cf/gccf.py`): linear propagation `E_{l+1} = Â E_l` and the layer
//! outputs *concatenated*, so the final width is `dim · (layers + 1)`. The reference allocates a
//! weight matrix per layer but leaves it out of the forward ("performs better without W"); it is
//! left out here entirely, so it also drops out of the L2 term (it only decays there). No edge
//! dropout; 2 layers and L2 1e-6 on Amazon-book.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::graph::Graph;
use crate::lightgcn::{combine, layer_outputs};
use crate::model::{Combine, Settings};

/// GCCF's training (and ranking) embeddings.
///
/// # Shapes
/// - `ego`: `[n_nodes, dim]`
/// - output: `[n_nodes, dim · (layers + 1)]`
pub fn training_view<B: Backend>(graph: &Graph<B>, ego: Tensor<B, 2>, settings: &Settings) -> Tensor<B, 2> {
    combine(
        layer_outputs(graph, ego, &graph.edges(), settings.layers, &mut |x| x),
        Combine::Concat,
    )
}
