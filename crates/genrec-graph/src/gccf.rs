//! GCCF / LR-GCCF (Chen et al., "Revisiting Graph Based Collaborative Filtering: A Linear
//! Residual Graph Convolutional Network Approach", AAAI 2020) as the RLMRec code runs it
//! (`encoder/models/general_cf/gccf.py`): linear propagation `E_{l+1} = Â E_l` and the layer
//! outputs *concatenated*, so the final width is `dim · (layers + 1)`. The reference allocates a
//! weight matrix per layer but leaves it out of the forward ("performs better without W"); it is
//! left out here entirely, so it also drops out of the L2 term (it only decays there). No edge
//! dropout; 2 layers and L2 1e-6 on Amazon-book.
//!
//! Its training and ranking embeddings are [`crate::lightgcn::full_view`] with `Combine::Concat`
//! (what [`crate::model::Settings::combine`] picks for GCCF); this file holds its documentation.
