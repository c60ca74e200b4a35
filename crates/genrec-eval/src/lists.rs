//! Scoring ranked lists produced anywhere: the JSONL behind `genrec evaluate --lists`, one user
//! per line, `{"user": u, "target": t, "ranked": [ids…], "history": [ids…]}` (`history` optional,
//! used by `exclude_history` and the history-length breakdown).

use std::path::Path;

use genrec_data::ItemId;
use serde::Deserialize;

use crate::evaluate::{summarize, EvalConfig, Evaluation};
use crate::metrics::UserOutcome;
use crate::ranking::rank_in_list;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    user: u32,
    target: i64,
    ranked: Vec<i64>,
    #[serde(default)]
    history: Vec<i64>,
}

/// Reads and scores a lists file. `n_items`, when given, makes ids `≥ n_items` invalid (negative
/// ids always are). Errors name the file and line.
pub fn evaluate_lists_file(path: &Path, n_items: Option<usize>, config: &EvalConfig) -> Result<Evaluation, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    evaluate_lists(&text, n_items, config).map_err(|e| format!("{}:{e}", path.display()))
}

/// As [`evaluate_lists_file`], on the file's text; errors start with `line:`.
pub fn evaluate_lists(text: &str, n_items: Option<usize>, config: &EvalConfig) -> Result<Evaluation, String> {
    let set = crate::MetricSet::new(config.ks.clone()).map_err(|e| format!(" eval.ks: {e}"))?;
    let mut outcomes = Vec::new();
    let mut users = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(raw).map_err(|e| format!("{line}: {e}"))?;
        let in_range = |id: i64| id >= 0 && n_items.is_none_or(|n| (id as usize) < n);
        if !in_range(l.target) {
            return Err(format!(
                "{line}: field `target`: id {} is out of range{}",
                l.target,
                n_items.map(|n| format!(" (--items {n})")).unwrap_or_default()
            ));
        }
        if !users.insert(l.user) {
            return Err(format!("{line}: field `user`: user {} already appeared", l.user));
        }
        let list: Vec<Option<ItemId>> = l
            .ranked
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
        let r = rank_in_list(&list, l.target as ItemId, n_items, &excluded);
        outcomes.push(UserOutcome {
            user: l.user,
            target: l.target as ItemId,
            rank: r.rank,
            history_len: history.len(),
            invalid: set.ks.iter().map(|&k| r.invalid_at(k)).collect(),
        });
    }
    if outcomes.is_empty() {
        return Err(" no lines to evaluate".into());
    }
    Ok(summarize(&set, config, outcomes, None))
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
            let e = evaluate_lists(text, Some(100), &cfg).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
