//! Scoring ranked lists produced anywhere: the JSONL behind `genrec evaluate --lists`, one user
//! per line, `{"user": u, "target": t, "ranked": [ids…], "history": [ids…]}` (`history` optional,
//! used by `exclude_history` and the history-length breakdown).
//!
//! A line may give `"targets": [ids…]` instead of `"target"` (exactly one of the two): several
//! relevant items, the hold-out protocol of [`crate::multi`]. Such a file is scored with
//! `recall@K` = hits / |targets|, `ndcg@K` (ideal DCG over min(K, |targets|) places) and
//! `precision@K`, averaged over the lines with at least one target (`"targets": []` lines are
//! left out of the means). One file holds one kind of line, so its metrics mean one thing.

use crate::EvalError;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use genrec_data::ItemId;
use serde::Deserialize;

use crate::evaluate::{summarize, EvalConfig, Evaluation};
use crate::metrics::UserOutcome;
use crate::multi::{multi_breakdown, multi_invalid, multi_metrics, positions_in_list, MultiOutcome};
use crate::ranking::rank_in_list;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    user: u32,
    // `target`, `targets` and `ranked` are optional here only so the error can say which of
    // `target` / `targets` is missing or doubled; each line needs `ranked` and exactly one target field.
    #[serde(default)]
    target: Option<i64>,
    #[serde(default)]
    targets: Option<Vec<i64>>,
    #[serde(default)]
    ranked: Option<Vec<i64>>,
    #[serde(default)]
    history: Vec<i64>,
}

/// Reads and scores a lists file. `n_items`, when given, makes ids `≥ n_items` invalid (negative
/// ids always are). Errors name the file and line.
pub fn evaluate_lists_file(path: &Path, n_items: Option<usize>, config: &EvalConfig) -> Result<Evaluation, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // The inner messages start with the line number (or a space): `file:line: …`.
    evaluate_lists(&text, n_items, config).map_err(|e| EvalError::Lists(format!("{}:{e}", path.display())))
}

/// As [`evaluate_lists_file`], on the file's text; errors start with `line:`. For a `"targets"`
/// file, `outcomes` is empty (per-user results are [`MultiOutcome`]s, not single ranks) and
/// `groups` has the history-length breakdown.
pub fn evaluate_lists(text: &str, n_items: Option<usize>, config: &EvalConfig) -> Result<Evaluation, EvalError> {
    let set = crate::MetricSet::new(config.ks.clone()).map_err(|e| EvalError::Lists(format!(" eval.ks: {e}")))?;
    let mut outcomes = Vec::new();
    let mut multi: Vec<MultiOutcome> = Vec::new();
    // (uses `targets`, first line) of the first data line: every other line must match it.
    let mut kind: Option<(bool, usize)> = None;
    let mut users = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        // serde would also read a JSON array as the fields in order; a line must be an object.
        if !raw.trim_start().starts_with('{') {
            return Err(EvalError::Lists(format!(
                "{line}: expected a JSON object {{\"user\": …, \"target\": …, \"ranked\": […]}}"
            )));
        }
        let l: Line = serde_json::from_str(raw).map_err(|e| EvalError::Lists(format!("{line}: {e}")))?;
        let targets: Vec<i64> = match (l.target, l.targets) {
            (Some(t), None) => vec![t],
            (None, Some(ts)) => ts,
            (Some(_), Some(_)) => {
                return Err(EvalError::Lists(format!(
                    "{line}: fields `target` and `targets` both given: use exactly one"
                )))
            }
            (None, None) => {
                return Err(EvalError::Lists(format!(
                    "{line}: missing field `target` (or `targets` for several relevant items)"
                )))
            }
        };
        let is_multi = l.target.is_none();
        let field = if is_multi { "targets" } else { "target" };
        match kind {
            None => kind = Some((is_multi, line)),
            Some((k, first)) if k != is_multi => {
                let other = if k { "targets" } else { "target" };
                return Err(EvalError::Lists(format!(
                    "{line}: field `{field}`: line {first} uses `{other}`; one file holds one kind of line"
                )));
            }
            Some(_) => {}
        }
        let ranked = l
            .ranked
            .ok_or_else(|| EvalError::Lists(format!("{line}: missing field `ranked`")))?;
        // Item ids are u32: a larger id is out of range even without --items (never truncated).
        let in_range = |id: i64| id >= 0 && id <= ItemId::MAX as i64 && n_items.is_none_or(|n| (id as usize) < n);
        if let Some(&bad) = targets.iter().find(|&&t| !in_range(t)) {
            return Err(EvalError::Lists(format!(
                "{line}: field `{field}`: id {bad} is out of range{}",
                n_items.map(|n| format!(" (--items {n})")).unwrap_or_default()
            )));
        }
        let mut distinct = targets.clone();
        distinct.sort_unstable();
        if let Some(w) = distinct.windows(2).find(|w| w[0] == w[1]) {
            return Err(EvalError::Lists(format!(
                "{line}: field `targets`: item {} is listed twice",
                w[0]
            )));
        }
        if !users.insert(l.user) {
            return Err(EvalError::Lists(format!(
                "{line}: field `user`: user {} already appeared",
                l.user
            )));
        }
        let list: Vec<Option<ItemId>> = ranked
            .iter()
            .map(|&id| (id >= 0 && id <= u32::MAX as i64).then_some(id as ItemId))
            .collect();
        let history: Vec<ItemId> = l
            .history
            .iter()
            .filter(|&&h| in_range(h))
            .map(|&h| h as ItemId)
            .collect();
        let excluded = if config.exclude_history {
            history.clone()
        } else {
            Vec::new()
        };
        let targets: Vec<ItemId> = targets.iter().map(|&t| t as ItemId).collect();
        if !is_multi {
            let r = rank_in_list(&list, targets[0], n_items, &excluded);
            outcomes.push(UserOutcome {
                user: l.user,
                target: targets[0],
                rank: r.rank(),
                history_len: history.len(),
                invalid: set.ks.iter().map(|&k| r.invalid_at(k)).collect(),
            });
        } else if !targets.is_empty() {
            let p = positions_in_list(&list, &targets, n_items, &excluded);
            multi.push(MultiOutcome {
                user: l.user,
                relevant: targets.len(),
                history_len: history.len(),
                invalid: set.ks.iter().map(|&k| p.invalid_at(k)).collect(),
                positions: p.positions,
            });
        }
    }
    match kind {
        None => Err(EvalError::Lists(" no lines to evaluate".into())),
        Some((false, _)) => Ok(summarize(&set, config, outcomes, None)),
        Some((true, _)) if multi.is_empty() => Err(EvalError::Lists(" no line has a target to evaluate".into())),
        Some((true, _)) => {
            let mut groups = BTreeMap::new();
            groups.insert(
                "history_length".to_string(),
                multi_breakdown(&set.ks, &multi, &config.history_edges, |o| o.history_len),
            );
            Ok(Evaluation {
                ranking: config.ranking_label(),
                users: multi.len(),
                metrics: multi_metrics(&set.ks, &multi),
                invalid: multi_invalid(&set.ks, &multi),
                groups,
                outcomes: Vec::new(),
                lists: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_vectors_through_jsonl() {
        let cfg = EvalConfig {
            ks: vec![1, 5],
            ..Default::default()
        };
        let text = r#"{"user": 0, "target": 7, "ranked": [3, 7, 4]}
{"user": 1, "target": 7, "ranked": [3, 4]}

{"user": 2, "target": 7, "ranked": [1000, 7], "history": [7]}
"#;
        let e = evaluate_lists(text, Some(100), &cfg).unwrap();
        assert_eq!(e.users, 3);
        let r: Vec<_> = e.outcomes.iter().map(|o| o.rank).collect();
        assert_eq!(r, [Some(2), None, Some(1)]);
        assert!((e.metrics["ndcg@5"] - (0.630_929_753_571_457_4 + 1.0) / 3.0).abs() < 1e-9);
        assert_eq!(e.metrics["recall@1"], 1.0 / 3.0);
        assert!((e.invalid.as_ref().unwrap()["invalid@1"] - 1.0 / 3.0).abs() < 1e-12);
        let ex = EvalConfig {
            exclude_history: true,
            ..cfg
        };
        assert_eq!(evaluate_lists(text, Some(100), &ex).unwrap().outcomes[2].rank, None);
    }

    #[test]
    fn bad_lines_are_named() {
        let cfg = EvalConfig::default();
        for (text, want) in [
            (
                "{\"user\": 0, \"target\": 1, \"ranked\": [1]}\n{\"user\": 1}\n",
                "2: missing field `target`",
            ),
            (
                "{\"user\": 0, \"target\": 1, \"ranked\": [1], \"score\": 3}\n",
                "1: unknown field `score`",
            ),
            (
                "{\"user\": 0, \"target\": 100, \"ranked\": []}\n",
                "1: field `target`: id 100 is out of range (--items 100)",
            ),
            (
                "{\"user\": 0, \"target\": 1, \"ranked\": []}\n{\"user\": 0, \"target\": 1, \"ranked\": []}\n",
                "2: field `user`",
            ),
            ("not json\n", "1: expected"),
            ("\n", "no lines"),
        ] {
            let e = evaluate_lists(text, Some(100), &cfg).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn several_targets_through_jsonl() {
        let cfg = EvalConfig {
            ks: vec![1, 3],
            ..Default::default()
        };
        let text = r#"{"user": 0, "targets": [7, 3], "ranked": [3, 5, 7, 9]}
{"user": 1, "targets": [4], "ranked": [1000, 2, 4], "history": [2]}
{"user": 2, "targets": [], "ranked": [1, 2]}
"#;
        let e = evaluate_lists(text, Some(100), &cfg).unwrap();
        // User 2 has no target: left out. User 0: 3 at 1, 7 at 3. User 1: 1000 invalid, 4 at 2.
        assert_eq!(e.users, 2);
        assert!(e.outcomes.is_empty());
        let m = &e.metrics;
        let close = |key: &str, want: f64| assert!((m[key] - want).abs() < 1e-9, "{key}: {} vs {want}", m[key]);
        // @1: user 0 recall 1/2, precision 1, ndcg 1 (ideal over min(1, 2) = 1 place); user 1 all 0.
        close("recall@1", 0.25);
        close("precision@1", 0.5);
        close("ndcg@1", 0.5);
        // @3: user 0 recall 1, precision 2/3, ndcg (1 + 1/log2(4)) / (1 + 1/log2(3)) = 1.5 / 1.630930
        // = 0.919721; user 1 recall 1, precision 1/3, ndcg (1/log2(3)) / 1 = 0.630930.
        close("recall@3", 1.0);
        close("precision@3", 0.5);
        let log2_3 = 3f64.log2();
        close("ndcg@3", (1.5 / (1.0 + 1.0 / log2_3) + 1.0 / log2_3) / 2.0);
        assert!((m["ndcg@3"] - 0.775_325_2).abs() < 1e-6, "{}", m["ndcg@3"]);
        assert!(!m.contains_key("mrr@3"));
        // invalid@1: user 1's first entry is invalid -> (0 + 1) / 2; invalid@3: (0 + 1/3) / 2.
        let inv = e.invalid.as_ref().unwrap();
        assert!((inv["invalid@1"] - 0.5).abs() < 1e-12 && (inv["invalid@3"] - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(e.groups["history_length"][0].users, 2);
        // exclude_history drops user 1's 2 without backfill: 4 at 1 -> recall@1 = (1/2 + 1) / 2.
        let ex = EvalConfig {
            exclude_history: true,
            ..cfg.clone()
        };
        assert!((evaluate_lists(text, Some(100), &ex).unwrap().metrics["recall@1"] - 0.75).abs() < 1e-12);
        // A one-target `targets` line gives the same recall and ndcg as a `target` line.
        let one = evaluate_lists(r#"{"user": 0, "targets": [7], "ranked": [3, 7]}"#, None, &cfg).unwrap();
        let single = evaluate_lists(r#"{"user": 0, "target": 7, "ranked": [3, 7]}"#, None, &cfg).unwrap();
        for key in ["recall@3", "ndcg@3", "recall@1"] {
            assert_eq!(one.metrics[key], single.metrics[key], "{key}");
        }
    }

    #[test]
    fn bad_target_lines_are_named() {
        let cfg = EvalConfig::default();
        for (text, want) in [
            (
                "{\"user\": 0, \"target\": 1, \"targets\": [1], \"ranked\": []}\n",
                "1: fields `target` and `targets` both given",
            ),
            (
                "{\"user\": 0, \"target\": 1, \"ranked\": []}\n{\"user\": 1, \"targets\": [1], \"ranked\": []}\n",
                "2: field `targets`: line 1 uses `target`",
            ),
            (
                "{\"user\": 0, \"targets\": [1, 100], \"ranked\": []}\n",
                "1: field `targets`: id 100 is out of range (--items 100)",
            ),
            (
                "{\"user\": 0, \"targets\": [1, 2, 1], \"ranked\": []}\n",
                "1: field `targets`: item 1 is listed twice",
            ),
            ("{\"user\": 0, \"targets\": [1]}\n", "1: missing field `ranked`"),
            (
                "{\"user\": 0, \"targets\": [], \"ranked\": []}\n",
                "no line has a target",
            ),
        ] {
            let e = evaluate_lists(text, Some(100), &cfg).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    /// Ids beyond u32 are out of range even without `--items` (a truncated id could score a
    /// wrong hit), and a JSON array is no record.
    #[test]
    fn huge_ids_and_array_lines_are_refused() {
        let cfg = EvalConfig {
            ks: vec![1],
            ..EvalConfig::default()
        };
        let huge = (1i64 << 32) + 7;
        let text = format!("{{\"user\": 0, \"target\": {huge}, \"ranked\": [7]}}\n");
        let err = evaluate_lists(&text, None, &cfg).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        let err = evaluate_lists("[0, 7, null, [7]]\n", None, &cfg)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("1: expected a JSON object"), "{err}");
    }
}
