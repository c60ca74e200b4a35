//! # genrec-models
//!
//! Recommenders behind the [`genrec_eval::Recommender`] trait: [`pop::Popularity`], [`sasrec`]
//! and [`tiger`] (on the [`t5`] encoder–decoder), with the shared training loop in [`train`] and
//! the full-softmax losses in [`fused`] (log-sum-exp and cross-entropy, also fused with the
//! output projection so the logits stay out of the autodiff graph; genrec-graph's InfoNCE uses
//! them too). Host kernels shared with genrec-text and genrec-llm live in genrec-kernels.
//! P5, LC-Rec and SETRec are not built yet (listed as absent in the README).

pub mod fused;
pub mod nn;
pub mod pop;
pub mod sasrec;
pub mod t5;
pub mod tiger;
pub mod train;
