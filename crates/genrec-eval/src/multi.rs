//! Full-ranking evaluation with several relevant items per user: the hold-out protocol of graph
//! CF and RLMRec (design.md §4, `shared/data/README.md` for `rlmrec/amazon-book`).
//!
//! For a user with relevant set `R` (the valid or test items of a [`HoldOut`]) and the 1-based
//! positions `p` of its relevant items in the ranking:
//!
//! - `Recall@K = #{p ≤ K} / |R|`
//! - `Precision@K = #{p ≤ K} / K`
//! - `NDCG@K = Σ_{p ≤ K} 1/log2(p + 1)  /  Σ_{i=1}^{min(K, |R|)} 1/log2(i + 1)`
//!
//! averaged over the users with at least one relevant item (the others are skipped and counted).
//! The user's training items are masked (removed from the ranking) by default; `mask =
//! "train+valid"` also removes the validation items when scoring the test split. A relevant item
//! that is itself masked stays in `|R|` and counts as a miss.
//!
//! Ties are pessimistic, as [`crate::ranking::pessimistic_rank`]: see [`pessimistic_positions`].

use crate::EvalError;
use std::collections::BTreeMap;

use genrec_data::{HoldOut, ItemId, UserId};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::evaluate::check_cutoffs;
use crate::metrics::{grouped, GroupMetrics};
pub use crate::ranking::{positions_in_list, ListPositions};
use crate::Recommender;

/// Which hold-out items a user is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldOutSplit {
    Valid,
    Test,
}

/// Which of the user's own items are removed from the ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskMode {
    /// The training items (the reference RLMRec code; the default).
    #[default]
    #[serde(rename = "train")]
    Train,
    /// Training and validation items; only meaningful for the test split.
    #[serde(rename = "train+valid")]
    TrainValid,
}

impl MaskMode {
    /// `"train"` or `"train+valid"`, as written into metrics.json.
    pub fn label(self) -> &'static str {
        match self {
            MaskMode::Train => "train",
            MaskMode::TrainValid => "train+valid",
        }
    }
}

/// Hold-out evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoldOutEvalConfig {
    /// Cut-offs K (default `[5, 10, 20]`; RLMRec reports 20).
    pub ks: Vec<usize>,
    /// `train` (default) or `train+valid`.
    pub mask: MaskMode,
    /// Users per call to the model (default 256).
    pub batch_size: usize,
}

impl Default for HoldOutEvalConfig {
    fn default() -> Self {
        HoldOutEvalConfig {
            ks: vec![5, 10, 20],
            mask: MaskMode::default(),
            batch_size: 256,
        }
    }
}

impl HoldOutEvalConfig {
    /// Checks the settings for `n_items` items and the split; returns the sorted cut-offs.
    /// Errors name the field.
    pub fn validate(&self, n_items: usize, split: HoldOutSplit) -> Result<Vec<usize>, EvalError> {
        let set = check_cutoffs(&self.ks, self.batch_size, n_items)?;
        if self.mask == MaskMode::TrainValid && split == HoldOutSplit::Valid {
            return Err(EvalError::Config(
                "eval.mask = \"train+valid\" would mask the validation items being scored; use it for the test split"
                    .into(),
            ));
        }
        Ok(set.ks)
    }
}

/// 1-based positions of the relevant items in `scores` ranked best first, with masked items
/// removed and *pessimistic* ties, ascending. Relevant items that are masked, out of range or
/// NaN-scored get no position (a miss). Repeated relevant ids count once.
///
/// The tie rule generalises `pessimistic_rank` (`r = #{j : s_j ≥ s_t}`): in a tie, every
/// non-relevant item goes *before* the relevant ones, so a model gains nothing from equal scores.
/// Among tied relevant items the order does not matter (each is a hit at the same set of
/// positions). With the relevant scores sorted descending, `r_1 ≥ r_2 ≥ …`, the k-th lands at
///
/// `p_k = #{j non-relevant, unmasked : s_j ≥ r_k} + k`
///
/// (the `k − 1` relevant items before it plus every competitor scoring at least as high). A top-K
/// list under this rule holds the relevant items with `p_k ≤ K`. With one relevant item this is
/// exactly `pessimistic_rank`. NaN scores of other items never outrank anything.
pub fn pessimistic_positions(scores: &[f32], relevant: &[ItemId], masked: &[ItemId]) -> Vec<usize> {
    const CANDIDATE: u8 = 0;
    const RELEVANT: u8 = 1;
    const MASKED: u8 = 2;
    let mut label = vec![CANDIDATE; scores.len()];
    for &i in relevant {
        if let Some(l) = label.get_mut(i as usize) {
            *l = RELEVANT;
        }
    }
    // Masking wins over relevance: a masked relevant item is a miss, not a competitor.
    for &i in masked {
        if let Some(l) = label.get_mut(i as usize) {
            *l = MASKED;
        }
    }
    let mut rel: Vec<f32> = label
        .iter()
        .zip(scores)
        .filter(|&(&l, s)| l == RELEVANT && !s.is_nan())
        .map(|(_, &s)| s)
        .collect();
    rel.sort_by(|a, b| b.total_cmp(a));
    // above[k] = competitors whose first relevant score they reach is r_k; a competitor with
    // score s counts for every k with r_k ≤ s, a suffix of the descending list.
    let mut above = vec![0usize; rel.len() + 1];
    for (&l, &s) in label.iter().zip(scores) {
        if l == CANDIDATE && !s.is_nan() {
            above[rel.partition_point(|&r| r > s)] += 1;
        }
    }
    let mut competitors = 0;
    (0..rel.len())
        .map(|k| {
            competitors += above[k];
            competitors + k + 1
        })
        .collect()
}

/// One user's result; kept per user so runs can be compared with paired tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiOutcome {
    pub user: UserId,
    /// `|R|`, the number of distinct relevant items (≥ 1), masked ones included.
    pub relevant: usize,
    /// 1-based positions of the relevant items that were ranked, ascending (all of them for
    /// score-based evaluation, those in the list for generated lists).
    pub positions: Vec<usize>,
    /// Items the model saw for this user (training items; the list's `history`).
    pub history_len: usize,
    /// Invalid ids among the first K list entries, for each K (empty for score-based evaluation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<usize>,
}

/// `Σ_{i=1}^{n} 1/log2(i + 1)`: the DCG of `n` hits in the first `n` places.
fn ideal_dcg(n: usize) -> f64 {
    (1..=n).map(|i| 1.0 / ((i + 1) as f64).log2()).sum()
}

impl MultiOutcome {
    /// Relevant items in the first `k` places.
    pub fn hits(&self, k: usize) -> usize {
        self.positions.iter().take_while(|&&p| p <= k).count()
    }

    /// This user's value of `recall@K`, `ndcg@K` or `precision@K`; `None` for another key.
    pub fn value(&self, key: &str) -> Option<f64> {
        let (name, k) = key.split_once('@')?;
        let k: usize = k.parse().ok().filter(|&k| k > 0)?;
        let relevant = self.relevant.max(1) as f64;
        Some(match name {
            "recall" => self.hits(k) as f64 / relevant,
            "precision" => self.hits(k) as f64 / k as f64,
            "ndcg" => {
                let dcg: f64 = self.positions[..self.hits(k)]
                    .iter()
                    .map(|&p| 1.0 / ((p + 1) as f64).log2())
                    .sum();
                dcg / ideal_dcg(k.min(self.relevant.max(1)))
            }
            _ => return None,
        })
    }
}

/// Metric keys in report order: for each K, recall, ndcg, precision.
pub fn multi_keys(ks: &[usize]) -> Vec<String> {
    ks.iter()
        .flat_map(|k| ["recall", "ndcg", "precision"].map(|m| format!("{m}@{k}")))
        .collect()
}

/// Means over the outcomes (each has ≥ 1 relevant item; an empty set gives zeros).
pub fn multi_metrics(ks: &[usize], outcomes: &[MultiOutcome]) -> BTreeMap<String, f64> {
    let n = outcomes.len().max(1) as f64;
    multi_keys(ks)
        .into_iter()
        .map(|key| {
            let sum: f64 = outcomes.iter().map(|o| o.value(&key).unwrap()).sum();
            (key, sum / n)
        })
        .collect()
}

/// `invalid@K` = mean over users of (invalid ids among the first K) / K; `None` when no outcome
/// comes from a list.
pub fn multi_invalid(ks: &[usize], outcomes: &[MultiOutcome]) -> Option<BTreeMap<String, f64>> {
    if outcomes.iter().all(|o| o.invalid.is_empty()) {
        return None;
    }
    let n = outcomes.len() as f64;
    Some(
        ks.iter()
            .enumerate()
            .map(|(j, &k)| {
                let sum: f64 = outcomes
                    .iter()
                    .map(|o| o.invalid.get(j).copied().unwrap_or(0) as f64 / k as f64)
                    .sum();
                (format!("invalid@{k}"), sum / n)
            })
            .collect(),
    )
}

/// Per-group metrics, users bucketed by `value(outcome)` with ascending `edges` (as
/// [`crate::metrics::breakdown`]). Empty buckets are omitted.
pub fn multi_breakdown(
    ks: &[usize],
    outcomes: &[MultiOutcome],
    edges: &[usize],
    value: impl Fn(&MultiOutcome) -> usize,
) -> Vec<GroupMetrics> {
    grouped(outcomes, edges, value, |members| multi_metrics(ks, members))
}

/// Everything one hold-out evaluation pass produced; `split` and `mask` belong in metrics.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldOutEvaluation {
    pub split: HoldOutSplit,
    /// `"full"`: every item is ranked.
    pub ranking: String,
    pub mask: MaskMode,
    /// Users averaged over: those with at least one relevant item.
    pub users: usize,
    /// Users without a relevant item in the split, left out of every mean.
    pub skipped_users: usize,
    /// `recall@K`, `ndcg@K`, `precision@K`.
    pub metrics: BTreeMap<String, f64>,
    /// `invalid@K` for list-generating models; absent for score-based ones.
    pub invalid: Option<BTreeMap<String, f64>>,
    /// One per evaluated user, in user order.
    pub outcomes: Vec<MultiOutcome>,
}

/// The items user `u` is judged on and the items removed from its ranking.
fn relevant_and_masked(data: &HoldOut, split: HoldOutSplit, mask: MaskMode, u: UserId) -> (&[ItemId], Vec<ItemId>) {
    let u = u as usize;
    let relevant = match split {
        HoldOutSplit::Valid => &data.valid[u],
        HoldOutSplit::Test => &data.test[u],
    };
    let mut masked = data.train[u].clone();
    if mask == MaskMode::TrainValid {
        masked.extend_from_slice(&data.valid[u]);
    }
    (relevant, masked)
}

fn distinct_count(items: &[ItemId]) -> usize {
    let mut v = items.to_vec();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// Scores one user's full row.
fn outcome_from_row(row: &[f32], data: &HoldOut, split: HoldOutSplit, mask: MaskMode, u: UserId) -> MultiOutcome {
    let (relevant, masked) = relevant_and_masked(data, split, mask, u);
    MultiOutcome {
        user: u,
        relevant: distinct_count(relevant),
        positions: pessimistic_positions(row, relevant, &masked),
        history_len: data.train[u as usize].len(),
        invalid: Vec::new(),
    }
}

/// The shared driver: checks the settings and the hold-out's shape, then runs `rank_batch` on
/// batches of the users that have a relevant item, in parallel (rayon), and averages.
fn evaluate_users<F>(
    data: &HoldOut,
    split: HoldOutSplit,
    config: &HoldOutEvalConfig,
    n_items: usize,
    rank_batch: F,
) -> Result<HoldOutEvaluation, EvalError>
where
    F: Fn(&[UserId]) -> Result<Vec<MultiOutcome>, EvalError> + Sync,
{
    let ks = config.validate(n_items, split)?;
    if data.n_items != n_items {
        return Err(EvalError::Model(format!(
            "the model ranks {n_items} items but the hold-out has {}",
            data.n_items
        )));
    }
    for (name, rows) in [("train", &data.train), ("valid", &data.valid), ("test", &data.test)] {
        if rows.len() != data.n_users {
            return Err(EvalError::Model(format!(
                "hold-out {name} has {} rows for {} users",
                rows.len(),
                data.n_users
            )));
        }
        for (u, items) in rows.iter().enumerate() {
            if let Some(i) = items.iter().find(|&&i| i as usize >= n_items) {
                return Err(EvalError::Model(format!(
                    "hold-out {name}: user {u} has item {i} but n_items = {n_items}"
                )));
            }
        }
    }
    let users: Vec<UserId> = (0..data.n_users as UserId)
        .filter(|&u| !relevant_and_masked(data, split, config.mask, u).0.is_empty())
        .collect();
    let batches: Vec<Result<Vec<MultiOutcome>, EvalError>> =
        users.par_chunks(config.batch_size).map(&rank_batch).collect();
    let mut outcomes = Vec::with_capacity(users.len());
    for b in batches {
        outcomes.extend(b?);
    }
    Ok(HoldOutEvaluation {
        split,
        ranking: "full".into(),
        mask: config.mask,
        users: outcomes.len(),
        skipped_users: data.n_users - outcomes.len(),
        metrics: multi_metrics(&ks, &outcomes),
        invalid: multi_invalid(&ks, &outcomes),
        outcomes,
    })
}

/// Evaluates a full score matrix: `scores` is row-major `[data.n_users × n_items]`, row `u` =
/// user `u` (as one batch of [`Recommender::scores`] over every user).
pub fn evaluate_holdout_scores(
    scores: &[f32],
    data: &HoldOut,
    split: HoldOutSplit,
    config: &HoldOutEvalConfig,
) -> Result<HoldOutEvaluation, EvalError> {
    let n = data.n_items;
    if scores.len() != data.n_users * n {
        return Err(EvalError::Model(format!(
            "{} scores for {} users × {n} items",
            scores.len(),
            data.n_users
        )));
    }
    evaluate_users(data, split, config, n, |users| {
        Ok(users
            .iter()
            .map(|&u| {
                let row = &scores[u as usize * n..(u as usize + 1) * n];
                outcome_from_row(row, data, split, config.mask, u)
            })
            .collect())
    })
}

/// Evaluates a scorer called on batches of user ids: `score_users(users)` returns row-major
/// `[users.len() × data.n_items]` scores. Batches run in parallel (rayon). This suits models that
/// score by user id (graph CF) without holding every user's row at once.
pub fn evaluate_holdout_with<F>(
    data: &HoldOut,
    split: HoldOutSplit,
    config: &HoldOutEvalConfig,
    score_users: F,
) -> Result<HoldOutEvaluation, EvalError>
where
    F: Fn(&[UserId]) -> Result<Vec<f32>, EvalError> + Sync,
{
    let n = data.n_items;
    evaluate_users(data, split, config, n, |users| {
        let scores = score_users(users)?;
        if scores.len() != users.len() * n {
            return Err(EvalError::Model(format!(
                "the scorer returned {} scores for {} users × {n} items",
                scores.len(),
                users.len()
            )));
        }
        Ok(users
            .iter()
            .zip(scores.chunks(n))
            .map(|(&u, row)| outcome_from_row(row, data, split, config.mask, u))
            .collect())
    })
}

/// Evaluates a [`Recommender`] whose histories are the users' training items (ascending id; a
/// hold-out has no time order). A model with [`Recommender::scores`] is ranked over all items;
/// one that only generates lists is asked for `max K` items, and masked entries are removed
/// without backfill (the model saw the training items, so it can avoid them).
pub fn evaluate_holdout(
    model: &dyn Recommender,
    data: &HoldOut,
    split: HoldOutSplit,
    config: &HoldOutEvalConfig,
) -> Result<HoldOutEvaluation, EvalError> {
    let n = model.n_items();
    let max_k = config.ks.iter().copied().max().unwrap_or(0);
    evaluate_users(data, split, config, n, |users| {
        let histories: Vec<&[ItemId]> = users.iter().map(|&u| data.train[u as usize].as_slice()).collect();
        if let Some(scores) = model.scores(&histories) {
            if scores.len() != users.len() * n {
                return Err(EvalError::Model(format!(
                    "model `{}` returned {} scores for {} histories × {n} items",
                    model.name(),
                    scores.len(),
                    users.len()
                )));
            }
            return Ok(users
                .iter()
                .zip(scores.chunks(n))
                .map(|(&u, row)| outcome_from_row(row, data, split, config.mask, u))
                .collect());
        }
        let lists = model.recommend_users(users, &histories, max_k);
        if lists.len() != users.len() {
            return Err(EvalError::Model(format!(
                "model `{}` returned {} lists for {} histories",
                model.name(),
                lists.len(),
                users.len()
            )));
        }
        let mut ks = config.ks.clone();
        ks.sort_unstable();
        ks.dedup();
        Ok(users
            .iter()
            .zip(lists)
            .map(|(&u, list)| {
                let (relevant, masked) = relevant_and_masked(data, split, config.mask, u);
                let list: Vec<Option<ItemId>> = list.into_iter().map(Some).collect();
                let p = positions_in_list(&list, relevant, Some(n), &masked);
                MultiOutcome {
                    user: u,
                    relevant: distinct_count(relevant),
                    history_len: data.train[u as usize].len(),
                    invalid: ks.iter().map(|&k| p.invalid_at(k)).collect(),
                    positions: p.positions,
                }
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG2_3: f64 = 1.584_962_500_721_156; // log2(3)

    fn outcome(relevant: usize, positions: Vec<usize>) -> MultiOutcome {
        MultiOutcome {
            user: 0,
            relevant,
            positions,
            history_len: 0,
            invalid: vec![],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn positions_with_ties_by_hand() {
        //              0    1    2    3    4    5
        let s = [0.9f32, 0.5, 0.5, 0.1, 0.7, 0.5];
        // Relevant {1, 3}. Order with non-relevant first in ties: 0 (.9), 4 (.7), 2 and 5 (.5,
        // non-relevant), then 1 (.5) at 5, then 3 (.1) at 6.
        assert_eq!(pessimistic_positions(&s, &[1, 3], &[]), [5, 6]);
        assert_eq!(
            pessimistic_positions(&s, &[3, 1, 1], &[]),
            [5, 6],
            "order and repeats do not matter"
        );
        // Masking 0 and 2: 4, 5, then 1 at 3, 3 at 4.
        assert_eq!(pessimistic_positions(&s, &[1, 3], &[0, 2]), [3, 4]);
        // A masked relevant item is a miss and no competitor: 1 masked -> 3 after 0, 4, 2, 5.
        assert_eq!(pessimistic_positions(&s, &[1, 3], &[1]), [5]);
        // Tied relevant items: 1, 2, 5 all relevant at .5 -> 0, 4 first, then 3, 4, 5.
        assert_eq!(pessimistic_positions(&s, &[1, 2, 5], &[]), [3, 4, 5]);
        // One relevant item gives pessimistic_rank.
        for t in 0..6 {
            let want = crate::ranking::pessimistic_rank(&s, t, &[2]);
            assert_eq!(pessimistic_positions(&s, &[t], &[2]).first().copied(), want, "item {t}");
        }
        // NaN: a NaN relevant item is a miss; a NaN competitor never outranks.
        assert_eq!(pessimistic_positions(&[f32::NAN, 0.1, 0.2], &[0, 1], &[]), [2]);
        // Out-of-range relevant ids are misses.
        assert_eq!(pessimistic_positions(&s, &[9], &[]), Vec::<usize>::new());
    }

    #[test]
    fn constant_scores_rank_every_target_last() {
        // design.md case 3 with three targets: 100 equal scores -> positions 98, 99, 100.
        let s = vec![0.5f32; 100];
        assert_eq!(pessimistic_positions(&s, &[3, 50, 7], &[]), [98, 99, 100]);
        let o = outcome(3, vec![98, 99, 100]);
        assert_eq!(o.value("recall@10"), Some(0.0));
        assert_eq!(o.value("ndcg@10"), Some(0.0));
    }

    #[test]
    fn positions_match_a_full_sort() {
        // Independent check: sort all unmasked items by (score desc, relevant last) and read off
        // the relevant places, on pseudo-random rows with many ties.
        let mut x = 99u64;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        for _ in 0..50 {
            let n = 40;
            let s: Vec<f32> = (0..n).map(|_| (next() % 6) as f32).collect();
            let relevant: Vec<ItemId> = (0..n as ItemId).filter(|_| next() % 5 == 0).collect();
            let masked: Vec<ItemId> = (0..n as ItemId).filter(|_| next() % 4 == 0).collect();
            let mut order: Vec<ItemId> = (0..n as ItemId).filter(|i| !masked.contains(i)).collect();
            order.sort_by(|&a, &b| {
                s[b as usize]
                    .total_cmp(&s[a as usize])
                    .then(relevant.contains(&a).cmp(&relevant.contains(&b)))
            });
            let want: Vec<usize> = order
                .iter()
                .enumerate()
                .filter(|(_, i)| relevant.contains(i))
                .map(|(p, _)| p + 1)
                .collect();
            assert_eq!(pessimistic_positions(&s, &relevant, &masked), want);
        }
    }

    #[test]
    fn metrics_by_hand() {
        // |R| = 2, positions 5 and 6 (the tie example above).
        let o = outcome(2, vec![5, 6]);
        // @5: 1 hit. recall 1/2, precision 1/5; DCG = 1/log2(6); IDCG over min(5, 2) = 2
        // places = 1 + 1/log2(3).
        assert_eq!(o.value("recall@5"), Some(0.5));
        assert_eq!(o.value("precision@5"), Some(0.2));
        let want = (1.0 / 6f64.log2()) / (1.0 + 1.0 / LOG2_3);
        assert!(close(o.value("ndcg@5").unwrap(), want));
        assert!((want - 0.237_197_7).abs() < 1e-7, "{want}"); // 0.386853 / 1.630930
                                                              // @4: no hit; @6: both -> DCG = 1/log2(6) + 1/log2(7) = 0.386853 + 0.356207.
        assert_eq!(o.value("ndcg@4"), Some(0.0));
        assert_eq!(o.value("recall@6"), Some(1.0));
        assert!(close(
            o.value("ndcg@6").unwrap(),
            (1.0 / 6f64.log2() + 1.0 / 7f64.log2()) / (1.0 + 1.0 / LOG2_3)
        ));

        // |R| = 3, hits at 1 and 3, K = 2: IDCG over min(2, 3) = 2 places; DCG = 1 (only p = 1).
        let o = outcome(3, vec![1, 3]);
        assert!(close(o.value("ndcg@2").unwrap(), 1.0 / (1.0 + 1.0 / LOG2_3)));
        assert!(close(o.value("recall@2").unwrap(), 1.0 / 3.0));
        // K = 3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/2.
        assert!(close(o.value("ndcg@3").unwrap(), 1.5 / (1.5 + 1.0 / LOG2_3)));
        assert!(close(o.value("precision@3").unwrap(), 2.0 / 3.0));

        // One relevant item at 1 with K = 5: ideal over min(5, 1) = 1 place -> NDCG 1.
        let o = outcome(1, vec![1]);
        assert_eq!(o.value("ndcg@5"), Some(1.0));
        assert_eq!(o.value("precision@5"), Some(0.2));
        // One relevant item at 2 (design case 1): NDCG@5 = 1/log2(3) = 0.630930.
        assert!((outcome(1, vec![2]).value("ndcg@5").unwrap() - 0.630930).abs() < 1e-6);
        assert_eq!(o.value("mrr@5"), None);

        // Means over users: (1/2 + 0) / 2 for recall@5 of {2 at 5,6} and {1 at 9}.
        let m = multi_metrics(&[5], &[outcome(2, vec![5, 6]), outcome(1, vec![9])]);
        assert_eq!(m["recall@5"], 0.25);
        assert_eq!(m["precision@5"], 0.1);
        assert_eq!(m.len(), 3);
    }

    /// 4 users × 6 items; user 2 has no test item. Scores: item i scores i, so the best is 5.
    fn tiny() -> HoldOut {
        HoldOut {
            n_users: 4,
            n_items: 6,
            train: vec![vec![5], vec![0], vec![1], vec![4, 5]],
            valid: vec![vec![4], vec![5], vec![2], vec![]],
            test: vec![vec![3, 1], vec![4], vec![], vec![3]],
        }
    }

    #[test]
    fn holdout_scores_mask_and_skip() {
        let data = tiny();
        let row: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let scores = row.repeat(4);
        let cfg = HoldOutEvalConfig {
            ks: vec![2, 1],
            ..Default::default()
        };
        let e = evaluate_holdout_scores(&scores, &data, HoldOutSplit::Test, &cfg).unwrap();
        assert_eq!((e.users, e.skipped_users), (3, 1));
        assert_eq!((e.mask, e.ranking.as_str()), (MaskMode::Train, "full"));
        // user 0: mask {5}; order 4, 3, 2, 1, 0 -> test {3, 1} at 2, 4.
        // user 1: mask {0}; order 5, 4, … -> test {4} at 2.
        // user 3: mask {4, 5}; order 3, … -> test {3} at 1.
        let pos: Vec<_> = e.outcomes.iter().map(|o| (o.user, o.positions.clone())).collect();
        assert_eq!(pos, [(0, vec![2, 4]), (1, vec![2]), (3, vec![1])]);
        // recall@2 = (1/2 + 1 + 1) / 3; ndcg@2 = (1/log2(3) / (1 + 1/log2(3)) + 1/log2(3) + 1) / 3.
        assert!(close(e.metrics["recall@2"], 2.5 / 3.0));
        let n0 = (1.0 / LOG2_3) / (1.0 + 1.0 / LOG2_3);
        assert!(close(e.metrics["ndcg@2"], (n0 + 1.0 / LOG2_3 + 1.0) / 3.0));
        assert!(close(e.metrics["precision@1"], 1.0 / 3.0));
        assert!(e.invalid.is_none());

        // mask = train+valid: user 0 also loses 4 -> 3, 1 at 1, 3; user 1 loses 5 -> 4 at 1.
        let tv = HoldOutEvalConfig {
            mask: MaskMode::TrainValid,
            ..cfg.clone()
        };
        let e = evaluate_holdout_scores(&scores, &data, HoldOutSplit::Test, &tv).unwrap();
        assert_eq!(e.outcomes[0].positions, [1, 3]);
        assert_eq!(e.outcomes[1].positions, [1]);
        assert!(close(e.metrics["recall@1"], (0.5 + 1.0 + 1.0) / 3.0));
        assert_eq!(e.mask, MaskMode::TrainValid);
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains("\"mask\":\"train+valid\"") && json.contains("\"split\":\"test\""),
            "{json}"
        );

        // Validation split: user 3 has none; user 2: mask {1}, valid {2} at 4 (after 5, 4, 3).
        let e = evaluate_holdout_scores(&scores, &data, HoldOutSplit::Valid, &cfg).unwrap();
        assert_eq!((e.users, e.skipped_users), (3, 1));
        assert_eq!(e.outcomes[2].positions, [4]);
    }

    struct ById;

    impl Recommender for ById {
        fn name(&self) -> String {
            "by-id".into()
        }
        fn n_items(&self) -> usize {
            6
        }
        fn recommend(&self, h: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
            // Best first by id, but with an invalid id and a repeat up front.
            h.iter()
                .map(|_| [99, 5, 5, 4, 3, 2, 1, 0][..k.min(8)].to_vec())
                .collect()
        }
    }

    #[test]
    fn recommender_lists_and_scorer_paths_agree_where_they_should() {
        let data = tiny();
        let cfg = HoldOutEvalConfig {
            ks: vec![3],
            batch_size: 2,
            ..Default::default()
        };
        // The scorer path with item i scoring i, in batches of 2 users.
        let by_fn = evaluate_holdout_with(&data, HoldOutSplit::Test, &cfg, |users| {
            Ok(users.iter().flat_map(|_| (0..6).map(|i| i as f32)).collect())
        })
        .unwrap();
        let row: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let full = evaluate_holdout_scores(&row.repeat(4), &data, HoldOutSplit::Test, &cfg).unwrap();
        assert_eq!(by_fn, full);

        // Lists [99, 5, 5] at K = 3: 99 invalid, 5 repeated. User 0 masks 5 -> nothing valid;
        // user 1 (mask 0): 5 at 1, no hit; user 3 (mask 4, 5): empty.
        let e = evaluate_holdout(&ById, &data, HoldOutSplit::Test, &cfg).unwrap();
        assert!(e.outcomes.iter().all(|o| o.positions.is_empty()));
        assert!(close(e.invalid.unwrap()["invalid@3"], 1.0 / 3.0));
        let long = HoldOutEvalConfig {
            ks: vec![6],
            ..cfg.clone()
        };
        // K = 6: [99, 5, 5, 4, 3, 2]. User 0 (mask 5): 4, 3, 2 -> test {3, 1}: 3 at 2.
        let e = evaluate_holdout(&ById, &data, HoldOutSplit::Test, &long).unwrap();
        assert_eq!(e.outcomes[0].positions, [2]);
        assert!(close(e.outcomes[0].value("recall@6").unwrap(), 0.5));
    }

    #[test]
    fn bad_input_names_the_field() {
        let data = tiny();
        let cfg = HoldOutEvalConfig::default();
        let e = evaluate_holdout_scores(&[0.0; 24], &data, HoldOutSplit::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.ks") && e.contains("6 items"), "{e}");
        let cfg = HoldOutEvalConfig {
            ks: vec![2],
            ..Default::default()
        };
        let e = evaluate_holdout_scores(&[0.0; 23], &data, HoldOutSplit::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("23 scores for 4 users × 6 items"), "{e}");
        let tv = HoldOutEvalConfig {
            mask: MaskMode::TrainValid,
            ..cfg.clone()
        };
        let e = evaluate_holdout_scores(&[0.0; 24], &data, HoldOutSplit::Valid, &tv)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.mask"), "{e}");
        let e = evaluate_holdout_with(&data, HoldOutSplit::Test, &cfg, |_| Ok(vec![0.0; 5]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("returned 5 scores"), "{e}");
        let mut bad = tiny();
        bad.test[1] = vec![6];
        let e = evaluate_holdout_scores(&[0.0; 24], &bad, HoldOutSplit::Test, &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("hold-out test: user 1 has item 6"), "{e}");
        let zero = HoldOutEvalConfig { batch_size: 0, ..cfg };
        let e = evaluate_holdout_scores(&[0.0; 24], &data, HoldOutSplit::Test, &zero)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eval.batch_size"), "{e}");
    }

    /// `GENREC_DATA_DIR` (as CI sets it), else `shared/data` beside the workspace.
    fn shared_data_dir() -> std::path::PathBuf {
        match std::env::var_os("GENREC_DATA_DIR").filter(|d| !d.is_empty()) {
            Some(d) => d.into(),
            None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        }
    }

    #[test]
    fn amazon_book_popularity_matches_the_readme() {
        // shared/data/README.md: popularity ranked by training count, ties by lower item id,
        // scored with train masked on test: R@20 .0318, N@20 .0182 (a third party's number).
        let dir = shared_data_dir().join("rlmrec/amazon-book");
        let data = HoldOut::load_dir(&dir).unwrap_or_else(|e| panic!("{e}: set GENREC_DATA_DIR"));
        let counts = data.train_item_counts();
        let n = data.n_items;
        // count · n + (n − 1 − id): strictly by count, then lower id; exact in f32 (< 2^24).
        let row: Vec<f32> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (c as usize * n + (n - 1 - i)) as f32)
            .collect();
        assert!(counts.iter().all(|&c| (c as usize + 1) * n < 1 << 24));
        let cfg = HoldOutEvalConfig {
            ks: vec![20],
            ..Default::default()
        };
        let e = evaluate_holdout_with(&data, HoldOutSplit::Test, &cfg, |users| Ok(row.repeat(users.len()))).unwrap();
        println!(
            "amazon-book popularity (test, mask train): {:?}, {} users",
            e.metrics, e.users
        );
        assert_eq!((e.users, e.skipped_users), (9_860, 1_140));
        assert!((e.metrics["recall@20"] - 0.0318).abs() < 5e-5, "{:?}", e.metrics);
        assert!((e.metrics["ndcg@20"] - 0.0182).abs() < 5e-5, "{:?}", e.metrics);
    }
}
