//! Metrics from ranks: `Recall@K = HR@K = 1[r ≤ K]`, `NDCG@K = 1[r ≤ K] / log2(r + 1)`,
//! `MRR@K = 1[r ≤ K] / r`, averaged over **all** users (an unranked user counts as 0), plus
//! `invalid@K` for generated lists and per-group breakdowns.

use crate::EvalError;
use std::collections::BTreeMap;

use genrec_data::{ItemId, UserId};
use serde::{Deserialize, Serialize};

/// What one user's evaluation produced; kept per user so runs can be compared with paired tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOutcome {
    pub user: UserId,
    pub target: ItemId,
    /// 1-based rank of the target; `None` = not ranked (counts as a miss).
    pub rank: Option<usize>,
    /// Length of the history the model saw.
    pub history_len: usize,
    /// Invalid ids among the first K entries of the generated list, for each K of the metric set
    /// (empty for score-based evaluation, where no id can be invalid).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid: Vec<usize>,
}

/// The cut-offs to report. Metric keys are `recall@K`, `ndcg@K`, `mrr@K`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSet {
    pub ks: Vec<usize>,
}

impl Default for MetricSet {
    fn default() -> Self {
        MetricSet { ks: vec![5, 10, 20] }
    }
}

/// One user's value of a metric key (`recall@10`, …); `None` for an unknown key.
pub fn user_value(key: &str, rank: Option<usize>) -> Option<f64> {
    let (name, k) = key.split_once('@')?;
    let k: usize = k.parse().ok()?;
    let hit = rank.filter(|&r| r <= k);
    Some(match name {
        "recall" | "hr" | "hit" => hit.map_or(0.0, |_| 1.0),
        "ndcg" => hit.map_or(0.0, |r| 1.0 / ((r + 1) as f64).log2()),
        "mrr" => hit.map_or(0.0, |r| 1.0 / r as f64),
        _ => return None,
    })
}

impl MetricSet {
    pub fn new(ks: Vec<usize>) -> Result<Self, EvalError> {
        if ks.is_empty() {
            return Err(EvalError::Config("`ks` must list at least one cut-off".into()));
        }
        if let Some(k) = ks.iter().find(|&&k| k == 0) {
            return Err(EvalError::Config(format!("cut-off K = {k} in `ks` must be at least 1")));
        }
        let mut ks = ks;
        ks.sort_unstable();
        ks.dedup();
        Ok(MetricSet { ks })
    }

    pub fn max_k(&self) -> usize {
        *self.ks.iter().max().unwrap_or(&10)
    }

    /// Metric keys in report order: for each K, recall, ndcg, mrr.
    pub fn keys(&self) -> Vec<String> {
        self.ks
            .iter()
            .flat_map(|k| ["recall", "ndcg", "mrr"].map(|m| format!("{m}@{k}")))
            .collect()
    }

    /// Means over all outcomes (an empty set gives zeros).
    pub fn compute(&self, outcomes: &[UserOutcome]) -> BTreeMap<String, f64> {
        let n = outcomes.len().max(1) as f64;
        self.keys()
            .into_iter()
            .map(|key| {
                let sum: f64 = outcomes.iter().map(|o| user_value(&key, o.rank).unwrap()).sum();
                (key, sum / n)
            })
            .collect()
    }

    /// `invalid@K` = mean over users of (invalid ids among the first K) / K; `None` when the
    /// outcomes come from scores (no list, nothing can be invalid).
    pub fn invalid(&self, outcomes: &[UserOutcome]) -> Option<BTreeMap<String, f64>> {
        if outcomes.is_empty() || outcomes.iter().all(|o| o.invalid.is_empty()) {
            return None;
        }
        let n = outcomes.len() as f64;
        Some(
            self.ks
                .iter()
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
}

/// Metrics of one group of users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMetrics {
    pub group: String,
    pub users: usize,
    pub metrics: BTreeMap<String, f64>,
}

/// Labels `[lo, hi)` buckets from ascending edges, e.g. edges `[5, 20]` → `<5`, `5-19`, `20+`.
pub(crate) fn bucket_label(value: usize, edges: &[usize]) -> (usize, String) {
    let b = edges.iter().take_while(|&&e| value >= e).count();
    let label = match (b, edges.len()) {
        (0, _) => format!("<{}", edges.first().copied().unwrap_or(0)),
        (b, n) if b == n => format!("{}+", edges[n - 1]),
        (b, _) if edges[b] - edges[b - 1] == 1 => format!("{}", edges[b - 1]),
        (b, _) => format!("{}-{}", edges[b - 1], edges[b] - 1),
    };
    (b, label)
}

/// Per-group metrics, grouping users by `value(outcome)` into buckets with the given ascending
/// edges. Empty buckets are omitted.
pub fn breakdown(
    set: &MetricSet,
    outcomes: &[UserOutcome],
    edges: &[usize],
    value: impl Fn(&UserOutcome) -> usize,
) -> Vec<GroupMetrics> {
    grouped(outcomes, edges, value, |members| set.compute(members))
}

/// Buckets `outcomes` by `value` with ascending `edges` and computes `metrics` per non-empty
/// bucket; shared by the single- and multi-target breakdowns.
pub(crate) fn grouped<T: Clone>(
    outcomes: &[T],
    edges: &[usize],
    value: impl Fn(&T) -> usize,
    metrics: impl Fn(&[T]) -> BTreeMap<String, f64>,
) -> Vec<GroupMetrics> {
    let mut groups: BTreeMap<usize, (String, Vec<T>)> = BTreeMap::new();
    for o in outcomes {
        let (b, label) = bucket_label(value(o), edges);
        groups.entry(b).or_insert_with(|| (label, Vec::new())).1.push(o.clone());
    }
    groups
        .into_values()
        .map(|(group, members)| GroupMetrics {
            group,
            users: members.len(),
            metrics: metrics(&members),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(rank: Option<usize>) -> UserOutcome {
        UserOutcome {
            user: 0,
            target: 0,
            rank,
            history_len: 3,
            invalid: vec![],
        }
    }

    #[test]
    fn design_case_1() {
        // [a, t, b]: r = 2.
        let set = MetricSet::new(vec![1, 5]).unwrap();
        let m = set.compute(&[o(Some(2))]);
        assert_eq!(m["recall@1"], 0.0);
        assert_eq!(m["recall@5"], 1.0);
        assert!((m["ndcg@5"] - 0.630930).abs() < 1e-6);
        assert_eq!(m["mrr@5"], 0.5);
    }

    #[test]
    fn design_case_2_misses_count_in_the_mean() {
        let set = MetricSet::new(vec![10]).unwrap();
        let m = set.compute(&[o(Some(1)), o(None), o(None), o(Some(11))]);
        assert_eq!(m["recall@10"], 0.25);
        assert_eq!(m["ndcg@10"], 0.25);
        assert_eq!(m["mrr@10"], 0.25);
    }

    #[test]
    fn ndcg_and_mrr_by_hand() {
        let set = MetricSet::new(vec![10, 5]).unwrap();
        assert_eq!(set.ks, [5, 10]);
        let m = set.compute(&[o(Some(3)), o(Some(7))]);
        // r=3: 1/log2(4) = 0.5 ; r=7: 1/log2(8) = 1/3.
        assert!((m["ndcg@10"] - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m["ndcg@5"] - 0.25).abs() < 1e-12);
        assert!((m["mrr@10"] - (1.0 / 3.0 + 1.0 / 7.0) / 2.0).abs() < 1e-12);
        assert_eq!(m["recall@5"], 0.5);
        assert!(MetricSet::new(vec![]).is_err());
        assert!(MetricSet::new(vec![0]).unwrap_err().to_string().contains("K = 0"));
    }

    #[test]
    fn invalid_at_k() {
        let set = MetricSet::new(vec![2, 4]).unwrap();
        let mut a = o(Some(1));
        a.invalid = vec![1, 2];
        let mut b = o(None);
        b.invalid = vec![0, 0];
        let inv = set.invalid(&[a, b]).unwrap();
        assert_eq!(inv["invalid@2"], 0.25);
        assert_eq!(inv["invalid@4"], 0.25);
        assert!(set.invalid(&[o(Some(1))]).is_none());
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_label(0, &[1, 5, 20]).1, "<1");
        assert_eq!(bucket_label(1, &[1, 5, 20]).1, "1-4");
        assert_eq!(bucket_label(19, &[1, 5, 20]).1, "5-19");
        assert_eq!(bucket_label(20, &[1, 5, 20]).1, "20+");
        assert_eq!(bucket_label(1, &[1, 2]).1, "1");
        let set = MetricSet::new(vec![10]).unwrap();
        let mut long = o(Some(1));
        long.history_len = 30;
        let g = breakdown(&set, &[o(None), long], &[10], |o| o.history_len);
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].group.as_str(), g[0].metrics["recall@10"]), ("<10", 0.0));
        assert_eq!((g[1].group.as_str(), g[1].metrics["recall@10"]), ("10+", 1.0));
    }
}
