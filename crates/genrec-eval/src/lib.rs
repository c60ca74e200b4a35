//! # genrec-eval
//!
//! The evaluation protocol of `design.md` §4, shared by every model:
//!
//! - [`Recommender`]: histories in, ranked item lists (and optionally full score rows) out;
//! - [`ranking`]: pessimistic rank of a target among scores, top-K selection without sorting all
//!   items, sampled 1 + N candidates, ranks inside generated lists (invalid and duplicate ids
//!   removed without backfill);
//! - [`metrics`]: Recall/HR, NDCG and MRR at any K, invalid@K, per-group breakdowns;
//! - [`evaluate`]: runs a recommender over leave-one-out cases (rayon over batches);
//! - [`multi`]: the hold-out protocol — several relevant items per user, training items masked,
//!   Recall / NDCG / Precision@K over users with a relevant item;
//! - [`stats`]: mean ± std over seeds, paired t-test and Wilcoxon signed-rank;
//! - [`report`]: the `metrics.json` shape and markdown tables.

mod error;
pub mod evaluate;
pub mod lists;
pub mod metrics;
pub mod multi;
pub mod ranking;
pub mod report;
pub mod stats;

pub use error::EvalError;
pub use evaluate::{evaluate, EvalConfig, Evaluation, RankingMode};
pub use metrics::{MetricSet, UserOutcome};
pub use multi::{
    evaluate_holdout, evaluate_holdout_scores, evaluate_holdout_with, HoldOutEvalConfig, HoldOutEvaluation,
    HoldOutSplit, MaskMode, MultiOutcome,
};
pub use report::MetricsReport;

use genrec_data::{ItemId, UserId};

/// A model as evaluation sees it. Histories are item ids, oldest first.
pub trait Recommender: Sync {
    /// Short name written into metrics.json (`"pop"`, `"sasrec"`, …).
    fn name(&self) -> String;

    /// Number of items the model ranks (ids `0..n_items`).
    fn n_items(&self) -> usize;

    /// For each history, at most `k` distinct item ids, best first.
    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>>;

    /// As [`recommend`](Self::recommend), told whose histories they are (`users[i]` owns
    /// `histories[i]`): what evaluation calls. A model that reads the user (TIGER's hashed user
    /// token) overrides it; the default ignores the users, so models of histories alone need
    /// nothing.
    fn recommend_users(&self, users: &[UserId], histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let _ = users;
        self.recommend(histories, k)
    }

    /// Scores of every item for each history, row-major `[histories.len() * n_items]`, when the
    /// model has them. Evaluation then ranks the target among *all* items with pessimistic ties;
    /// models that only generate lists return `None` and are scored on their lists.
    fn scores(&self, _histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        None
    }
}
