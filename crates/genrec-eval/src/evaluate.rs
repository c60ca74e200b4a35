//! Runs any [`Recommender`] over evaluation cases with the protocol of design.md §4.

use crate::EvalError;
use std::collections::BTreeMap;

use genrec_data::{EvalCase, ItemId, UserId};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::{breakdown, GroupMetrics, MetricSet, UserOutcome};
use crate::ranking::{pessimistic_rank, rank_in_list, sampled_rank};
use crate::Recommender;

/// How the target is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankingMode {
    /// Against every item (the default and the only protocol for headline numbers).
    Full,
    /// Against the target plus `negatives` sampled items; labelled `sampled-N` in every output.
    Sampled,
}

/// Evaluation settings; the `[eval]` table of an experiment TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Cut-offs K (default `[5, 10, 20]`).
    pub ks: Vec<usize>,
    /// Remove the user's history items from the ranking (default false: repeat consumption
    /// exists). A target that is itself in the history then counts as a miss.
    pub exclude_history: bool,
    /// `full` (default) or `sampled`.
    pub ranking: RankingMode,
    /// Negatives per user for `sampled` ranking (default 100).
    pub negatives: usize,
    /// Histories per call to the model (default 256).
    pub batch_size: usize,
    /// Bucket edges of the target's training popularity for the per-group breakdown
    /// (default `[1, 5, 20, 100]`).
    pub popularity_edges: Vec<usize>,
    /// Bucket edges of the visible history length (default `[5, 10, 20]`).
    pub history_edges: Vec<usize>,
    /// Hold-out protocol only (graph CF): which of the user's own items are removed from the
    /// ranking, `train` (default) or `train+valid`; written into metrics.json.
    pub mask: crate::multi::MaskMode,
    /// Keep every user's top-K list ([`Evaluation::lists`]); a leave-one-out run then writes
    /// its test lists to `lists_test.jsonl` (the `genrec evaluate --lists` format). Default false.
    pub write_lists: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            ks: vec![5, 10, 20],
            exclude_history: false,
            ranking: RankingMode::Full,
            negatives: 100,
            batch_size: 256,
            popularity_edges: vec![1, 5, 20, 100],
            history_edges: vec![5, 10, 20],
            mask: Default::default(),
            write_lists: false,
        }
    }
}

/// The checks every evaluation config shares: valid cut-offs no larger than the item count and a
/// positive batch size. Errors name the field.
pub(crate) fn check_cutoffs(ks: &[usize], batch_size: usize, n_items: usize) -> Result<MetricSet, EvalError> {
    let set = MetricSet::new(ks.to_vec()).map_err(|e| EvalError::Config(format!("eval.ks: {e}")))?;
    if set.max_k() > n_items {
        return Err(EvalError::Config(format!(
            "eval.ks: K = {} is larger than the {n_items} items",
            set.max_k()
        )));
    }
    if batch_size == 0 {
        return Err(EvalError::Config("eval.batch_size must be at least 1".into()));
    }
    Ok(set)
}

impl EvalConfig {
    /// Checks the settings against the item count; errors name the field.
    pub fn validate(&self, n_items: usize) -> Result<MetricSet, EvalError> {
        let set = check_cutoffs(&self.ks, self.batch_size, n_items)?;
        if self.ranking == RankingMode::Sampled {
            if self.negatives == 0 || self.negatives >= n_items {
                return Err(EvalError::Config(format!(
                    "eval.negatives = {} must be between 1 and {}",
                    self.negatives,
                    n_items - 1
                )));
            }
            if set.max_k() > self.negatives + 1 {
                return Err(EvalError::Config(format!(
                    "eval.ks: K = {} exceeds the {} sampled candidates",
                    set.max_k(),
                    self.negatives + 1
                )));
            }
        }
        for (name, edges) in [
            ("popularity_edges", &self.popularity_edges),
            ("history_edges", &self.history_edges),
        ] {
            if edges.windows(2).any(|w| w[0] >= w[1]) {
                return Err(EvalError::Config(format!("eval.{name} must be strictly increasing")));
            }
        }
        Ok(set)
    }

    /// `"full"` or `"sampled-N"`: written next to every number.
    pub fn ranking_label(&self) -> String {
        match self.ranking {
            RankingMode::Full => "full".into(),
            RankingMode::Sampled => format!("sampled-{}", self.negatives),
        }
    }
}

/// Everything one evaluation pass produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub ranking: String,
    pub users: usize,
    pub metrics: BTreeMap<String, f64>,
    /// `invalid@K` for list-scored models; absent for score-based ones.
    pub invalid: Option<BTreeMap<String, f64>>,
    /// `popularity` and `history_length` breakdowns.
    pub groups: BTreeMap<String, Vec<GroupMetrics>>,
    pub outcomes: Vec<UserOutcome>,
    /// With `write_lists`: each case's top-K list (K = the largest cut-off; history items
    /// removed when `exclude_history`), in the order of `outcomes`; otherwise empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lists: Vec<Vec<ItemId>>,
}

/// Negatives for one user: `n` distinct items, never the target nor a history item, drawn from a
/// generator seeded by `(seed, user)` so they do not depend on batching or thread count.
fn negatives_for(case: &EvalCase, n_items: usize, n: usize, seed: u64) -> Result<Vec<ItemId>, EvalError> {
    let mut forbidden: Vec<ItemId> = case.history.clone();
    forbidden.push(case.target);
    forbidden.sort_unstable();
    forbidden.dedup();
    let pool = n_items - forbidden.len();
    if pool < n {
        return Err(EvalError::Config(format!(
            "user {}: only {pool} items left to sample {n} negatives from",
            case.user
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (case.user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Sample positions in the allowed pool, then map each position past the forbidden ids.
    let mut picks: Vec<usize> = sample(&mut rng, pool, n).into_vec();
    picks.sort_unstable();
    let mut out = Vec::with_capacity(n);
    let mut f = 0;
    for p in picks {
        // id = p + (number of forbidden ids ≤ id); forbidden is sorted.
        let mut id = p + f;
        while f < forbidden.len() && forbidden[f] as usize <= id {
            f += 1;
            id = p + f;
        }
        out.push(id as ItemId);
    }
    Ok(out)
}

/// Evaluates `model` on `cases`. `train_counts` (item interaction counts over training data) feeds
/// the popularity breakdown; `seed` only matters for sampled ranking. Batches run in parallel.
pub fn evaluate(
    model: &dyn Recommender,
    cases: &[EvalCase],
    train_counts: Option<&[u32]>,
    config: &EvalConfig,
    seed: u64,
) -> Result<Evaluation, EvalError> {
    let n_items = model.n_items();
    let set = config.validate(n_items)?;
    let max_k = set.max_k();
    type Batch = (Vec<UserOutcome>, Vec<Vec<ItemId>>);
    let batches: Vec<Result<Batch, EvalError>> = cases
        .par_chunks(config.batch_size)
        .map(|batch| {
            let histories: Vec<&[ItemId]> = batch.iter().map(|c| c.history.as_slice()).collect();
            let excluded = |c: &EvalCase| -> Vec<ItemId> {
                if config.exclude_history {
                    c.history.clone()
                } else {
                    Vec::new()
                }
            };
            let scores = model.scores(&histories);
            let mut out = Vec::with_capacity(batch.len());
            let mut kept = Vec::new();
            match scores {
                Some(scores) => {
                    if scores.len() != batch.len() * n_items {
                        return Err(EvalError::Model(format!(
                            "model `{}` returned {} scores for {} histories × {n_items} items",
                            model.name(),
                            scores.len(),
                            batch.len()
                        )));
                    }
                    for (c, row) in batch.iter().zip(scores.chunks(n_items)) {
                        if config.write_lists {
                            kept.push(crate::ranking::top_k(row, max_k, &excluded(c)));
                        }
                        let rank = match config.ranking {
                            RankingMode::Full => pessimistic_rank(row, c.target, &excluded(c)),
                            RankingMode::Sampled => {
                                sampled_rank(row, c.target, &negatives_for(c, n_items, config.negatives, seed)?)
                            }
                        };
                        out.push(UserOutcome {
                            user: c.user,
                            target: c.target,
                            rank,
                            history_len: c.history.len(),
                            invalid: Vec::new(),
                        });
                    }
                }
                None => {
                    if config.ranking == RankingMode::Sampled {
                        return Err(EvalError::Model(format!(
                            "model `{}` generates lists and has no scores: sampled ranking needs scores",
                            model.name()
                        )));
                    }
                    let users: Vec<UserId> = batch.iter().map(|c| c.user).collect();
                    let lists = model.recommend_users(&users, &histories, max_k);
                    if lists.len() != batch.len() {
                        return Err(EvalError::Model(format!(
                            "model `{}` returned {} lists for {} histories",
                            model.name(),
                            lists.len(),
                            batch.len()
                        )));
                    }
                    for (c, list) in batch.iter().zip(lists) {
                        if config.write_lists {
                            kept.push(list.clone());
                        }
                        let list: Vec<Option<ItemId>> = list.into_iter().map(Some).collect();
                        let r = rank_in_list(&list, c.target, Some(n_items), &excluded(c));
                        let invalid = set.ks.iter().map(|&k| r.invalid_at(k)).collect();
                        out.push(UserOutcome {
                            user: c.user,
                            target: c.target,
                            rank: r.rank(),
                            history_len: c.history.len(),
                            invalid,
                        });
                    }
                }
            }
            Ok((out, kept))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(cases.len());
    let mut lists = Vec::new();
    for b in batches {
        let (out, kept) = b?;
        outcomes.extend(out);
        lists.extend(kept);
    }
    Ok(Evaluation {
        lists,
        ..summarize(&set, config, outcomes, train_counts)
    })
}

/// Metrics, invalid@K and group breakdowns of a set of per-user outcomes.
pub fn summarize(
    set: &MetricSet,
    config: &EvalConfig,
    outcomes: Vec<UserOutcome>,
    train_counts: Option<&[u32]>,
) -> Evaluation {
    let mut groups = BTreeMap::new();
    if let Some(counts) = train_counts {
        let pop = |o: &UserOutcome| counts.get(o.target as usize).copied().unwrap_or(0) as usize;
        groups.insert(
            "popularity".to_string(),
            breakdown(set, &outcomes, &config.popularity_edges, pop),
        );
    }
    groups.insert(
        "history_length".to_string(),
        breakdown(set, &outcomes, &config.history_edges, |o| o.history_len),
    );
    Evaluation {
        ranking: config.ranking_label(),
        users: outcomes.len(),
        metrics: set.compute(&outcomes),
        invalid: set.invalid(&outcomes),
        groups,
        outcomes,
        lists: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores item i as i (higher id = better), or generates a fixed list.
    struct Fixed {
        n: usize,
        lists: bool,
    }

    impl Recommender for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn n_items(&self) -> usize {
            self.n
        }
        fn recommend(&self, h: &[&[ItemId]], _k: usize) -> Vec<Vec<ItemId>> {
            h.iter().map(|_| vec![99, 9, 9, 8, 7]).collect()
        }
        fn scores(&self, h: &[&[ItemId]]) -> Option<Vec<f32>> {
            (!self.lists).then(|| h.iter().flat_map(|_| (0..self.n).map(|i| i as f32)).collect())
        }
    }

    /// Recommends item `user + 1` first: only right if evaluation says whose history it is.
    struct ByUser;

    impl Recommender for ByUser {
        fn name(&self) -> String {
            "by-user".into()
        }
        fn n_items(&self) -> usize {
            10
        }
        fn recommend(&self, h: &[&[ItemId]], _k: usize) -> Vec<Vec<ItemId>> {
            h.iter().map(|_| vec![0]).collect()
        }
        fn recommend_users(&self, users: &[UserId], _h: &[&[ItemId]], _k: usize) -> Vec<Vec<ItemId>> {
            users.iter().map(|&u| vec![u + 1]).collect()
        }
    }

    #[test]
    fn list_models_are_told_the_users() {
        let cases = vec![case(3, vec![1], 4), case(5, vec![], 6), case(7, vec![2], 0)];
        let cfg = EvalConfig {
            ks: vec![1],
            batch_size: 2,
            ..Default::default()
        };
        let e = evaluate(&ByUser, &cases, None, &cfg, 0).unwrap();
        let ranks: Vec<Option<usize>> = e.outcomes.iter().map(|o| o.rank).collect();
        assert_eq!(
            ranks,
            [Some(1), Some(1), None],
            "users 3 and 5 hit, user 7's target is not 8"
        );
    }

    fn case(user: u32, history: Vec<u32>, target: u32) -> EvalCase {
        EvalCase { user, history, target }
    }

    #[test]
    fn lists_are_kept_only_when_asked_in_case_order() {
        let cases = vec![case(0, vec![9], 8), case(1, vec![], 0), case(2, vec![8], 1)];
        let cfg = EvalConfig {
            ks: vec![2],
            batch_size: 2,
            exclude_history: true,
            ..Default::default()
        };
        let scored = Fixed { n: 10, lists: false };
        assert!(evaluate(&scored, &cases, None, &cfg, 0).unwrap().lists.is_empty());
        let cfg = EvalConfig {
            write_lists: true,
            ..cfg
        };
        let e = evaluate(&scored, &cases, None, &cfg, 0).unwrap();
        assert_eq!(
            e.lists,
            vec![vec![8, 7], vec![9, 8], vec![9, 7]],
            "top 2, history removed"
        );
        let listed = Fixed { n: 10, lists: true };
        let e = evaluate(&listed, &cases, None, &cfg, 0).unwrap();
        assert_eq!(e.lists.len(), 3);
        assert_eq!(
            e.lists[0],
            vec![99, 9, 9, 8, 7],
            "a generated list as the model gave it"
        );
    }

    #[test]
    fn scores_and_lists_paths() {
        let cases = vec![case(0, vec![9], 8), case(1, vec![], 0)];
        let cfg = EvalConfig {
            ks: vec![1, 2],
            batch_size: 1,
            ..Default::default()
        };
        let e = evaluate(&Fixed { n: 10, lists: false }, &cases, None, &cfg, 0).unwrap();
        assert_eq!(e.outcomes[0].rank, Some(2));
        assert_eq!(e.outcomes[1].rank, Some(10));
        assert_eq!(e.metrics["recall@2"], 0.5);
        assert!(e.invalid.is_none());
        let ex = EvalConfig {
            exclude_history: true,
            ..cfg.clone()
        };
        let e = evaluate(&Fixed { n: 10, lists: false }, &cases, None, &ex, 0).unwrap();
        assert_eq!(e.outcomes[0].rank, Some(1));

        // Lists [99, 9, 9, 8, 7]: 99 invalid, 9 duplicate -> 8 at rank 2.
        let e = evaluate(&Fixed { n: 10, lists: true }, &cases, None, &cfg, 0).unwrap();
        assert_eq!(e.outcomes[0].rank, Some(2));
        assert_eq!(e.outcomes[0].invalid, [1, 1]);
        assert_eq!(e.invalid.unwrap()["invalid@2"], 0.5);
        let e = evaluate(&Fixed { n: 10, lists: true }, &cases, None, &ex, 0).unwrap();
        assert_eq!(e.outcomes[0].rank, Some(1), "history item 9 removed without backfill");
    }

    #[test]
    fn sampled_negatives_avoid_history_and_target_and_are_seeded() {
        let c = case(3, vec![0, 2, 5], 7);
        let a = negatives_for(&c, 12, 8, 1).unwrap();
        assert_eq!(a, negatives_for(&c, 12, 8, 1).unwrap());
        assert_eq!(a.len(), 8);
        let mut sorted = a.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        assert!(a.iter().all(|&i| i < 12 && ![0, 2, 5, 7].contains(&i)), "{a:?}");
        assert!(negatives_for(&c, 12, 9, 1).is_err());
        let cfg = EvalConfig {
            ks: vec![1, 5],
            ranking: RankingMode::Sampled,
            negatives: 5,
            ..Default::default()
        };
        let e = evaluate(&Fixed { n: 12, lists: false }, &[c], None, &cfg, 1).unwrap();
        assert_eq!(e.ranking, "sampled-5");
        // Negatives are 5 items from {1,3,4,6,8,9,10,11}; the target 7 beats those below it.
        let negs = negatives_for(&case(3, vec![0, 2, 5], 7), 12, 5, 1).unwrap();
        assert_eq!(e.outcomes[0].rank, Some(1 + negs.iter().filter(|&&j| j > 7).count()));
    }

    #[test]
    fn bad_config_names_field() {
        let m = Fixed { n: 10, lists: false };
        let e = evaluate(
            &m,
            &[],
            None,
            &EvalConfig {
                ks: vec![20],
                ..Default::default()
            },
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("eval.ks") && e.contains("10 items"), "{e}");
        let e = evaluate(
            &m,
            &[],
            None,
            &EvalConfig {
                batch_size: 0,
                ks: vec![5],
                ..Default::default()
            },
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("eval.batch_size"), "{e}");
        let lists = Fixed { n: 10, lists: true };
        let cfg = EvalConfig {
            ks: vec![5],
            ranking: RankingMode::Sampled,
            negatives: 5,
            ..Default::default()
        };
        assert!(evaluate(&lists, &[case(0, vec![], 1)], None, &cfg, 0)
            .unwrap_err()
            .to_string()
            .contains("needs scores"));
    }
}
