//! Items → short code tuples, and the prefix trie that constrains decoding to valid tuples.
//!
//! - [`kmeans`]: k-means++ / Lloyd on host rows.
//! - [`rq`]: residual k-means (RQ-KMeans): one codebook per level fitted on the previous level's
//!   residuals.
//! - [`rqvae`]: TIGER's RQ-VAE — an MLP auto-encoder with residual codebooks, trained with the
//!   straight-through estimator, k-means initialisation and dead-code re-seeding (any Burn backend).
//! - [`collision`]: making an index conflict-free — TIGER's extra dedup digit or LC-Rec's uniform
//!   semantic mapping (Sinkhorn–Knopp balanced re-assignment of the last level).
//! - [`opq`]: product quantisation with a learned rotation (OPQ), optional PCA: RPG's `m`
//!   unordered digits per item.
//! - [`cid`]: collaborative indexing (P5 "How to Index"): spectral clustering of item
//!   co-occurrence, recursively.
//! - [`simple`]: sequential (first appearance) and random indexing.
//! - [`index`]: [`ItemIndex`] (the design contract: codes per item, lookup, trie, statistics,
//!   JSON) and the token layout; the trie is genrec-decode's constraint for trie-constrained
//!   decoding.
//! - [`build`]: [`build_index`], every method (and hybrid indexing) behind one [`IndexConfig`].

pub mod build;
pub mod cid;
pub mod collision;
pub mod index;
pub mod kmeans;
pub mod linalg;
pub mod opq;
pub mod rq;
pub mod rqvae;
pub mod simple;

mod error;

pub use build::{build_index, BuiltIndex, Collisions, IndexConfig, IndexMethod, IndexReport, ItemVectors};
pub use error::TokenizeError;
pub use index::{IndexStats, ItemIndex, TokenLayout, Trie};
