//! `metrics.json` (design.md §3) and markdown tables of runs side by side.

use crate::EvalError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::metrics::GroupMetrics;

/// The `metrics.json` of a run or of `genrec evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub experiment: String,
    pub dataset: String,
    pub model: String,
    /// `"test"` or `"valid"`.
    pub split: String,
    pub seed: u64,
    pub users: usize,
    /// `recall@K`, `ndcg@K`, `mrr@K`.
    pub metrics: BTreeMap<String, f64>,
    /// `invalid@K` (generated lists only), written at the top level.
    #[serde(flatten)]
    pub invalid: BTreeMap<String, f64>,
    /// `"full"` or `"sampled-N"`.
    pub ranking: String,
    pub exclude_history: bool,
    /// Hold-out protocol: `"train"` or `"train+valid"`, the user's items removed from the ranking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub device: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, Vec<GroupMetrics>>,
}

impl MetricsReport {
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let err = |message: String| EvalError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(format!("not a metrics.json: {e}")))
    }
}

/// Orders metric keys as a reader expects: by K, then recall, ndcg, mrr, then anything else.
fn key_order(key: &str) -> (usize, usize, String) {
    let (name, k) = key.split_once('@').unwrap_or((key, ""));
    let k = k.parse().unwrap_or(usize::MAX);
    let m = ["recall", "ndcg", "mrr"].iter().position(|n| *n == name).unwrap_or(3);
    (k, m, name.to_string())
}

/// The union of all runs' metric keys, ordered by K.
fn metric_keys(rows: &[Row]) -> Vec<String> {
    let mut keys: Vec<String> = rows
        .iter()
        .flat_map(|r| r.report.metrics.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    keys.sort_by_key(|k| key_order(k));
    keys
}

/// Header and alignment rows: five leading columns (`lead`), then one right-aligned column per key.
fn header(lead: &str, keys: &[String]) -> String {
    let mut out = String::from(lead);
    for k in keys {
        out += &format!(" {k} |");
    }
    out += "\n|---|---|---|---|---:|";
    out += &"---:|".repeat(keys.len());
    out += "\n";
    out
}

/// One row of a side-by-side table.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub report: MetricsReport,
}

/// A markdown table: one row per run, one column per metric (union of all runs, ordered by K).
/// `columns` restricts the metrics shown when given.
pub fn markdown_table(rows: &[Row], columns: Option<&[String]>) -> String {
    let keys = match columns {
        Some(c) => c.to_vec(),
        None => metric_keys(rows),
    };
    let mut out = header("| run | model | dataset | ranking | users |", &keys);
    for r in rows {
        let m = &r.report;
        // Published rows carry no user count of ours.
        let users = if m.users == 0 {
            "–".to_string()
        } else {
            m.users.to_string()
        };
        out += &format!(
            "| {} | {} | {} | {} | {users} |",
            r.label, m.model, m.dataset, m.ranking
        );
        for k in &keys {
            match m.metrics.get(k) {
                Some(v) => out += &format!(" {v:.4} |"),
                None => out += " – |",
            }
        }
        out += "\n";
    }
    out
}

/// One breakdown of every run side by side (`group` = `popularity`, the target's training
/// interactions — `<1` is the cold-item group —, or `history_length`): a row per run and bucket.
/// A run without that breakdown is an error naming it.
pub fn group_table(rows: &[Row], group: &str) -> Result<String, EvalError> {
    let mut keys: Vec<String> = Vec::new();
    for r in rows {
        for g in r.report.groups.get(group).into_iter().flatten() {
            keys.extend(
                g.metrics
                    .keys()
                    .filter(|k| !keys.contains(k))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
    }
    keys.sort_by_key(|k| key_order(k));
    let mut out = format!("| run | model | {group} | users |");
    for k in &keys {
        out += &format!(" {k} |");
    }
    out += &format!("\n|---|---|---|---:|{}\n", "---:|".repeat(keys.len()));
    for r in rows {
        let Some(buckets) = r.report.groups.get(group) else {
            let have: Vec<&str> = r.report.groups.keys().map(String::as_str).collect();
            return Err(EvalError::Config(format!(
                "run {}: no `{group}` breakdown in its metrics (it has: {})",
                r.label,
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            )));
        };
        for b in buckets {
            out += &format!("| {} | {} | {} | {} |", r.label, r.report.model, b.group, b.users);
            for k in &keys {
                match b.metrics.get(k) {
                    Some(v) => out += &format!(" {v:.4} |"),
                    None => out += " – |",
                }
            }
            out += "\n";
        }
    }
    Ok(out)
}

/// Runs of the same experiment, model, dataset and ranking aggregated over seeds: one row each,
/// every metric as `mean ± std` (sample std) with the number of seeds.
pub fn aggregate_table(rows: &[Row]) -> String {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&MetricsReport>> = BTreeMap::new();
    for r in rows {
        let m = &r.report;
        groups
            .entry((
                m.experiment.clone(),
                m.model.clone(),
                m.dataset.clone(),
                m.ranking.clone(),
            ))
            .or_default()
            .push(m);
    }
    let keys = metric_keys(rows);
    let mut out = header("| experiment | model | dataset | ranking | seeds |", &keys);
    for ((experiment, model, dataset, ranking), reports) in &groups {
        out += &format!("| {experiment} | {model} | {dataset} | {ranking} | {} |", reports.len());
        for k in &keys {
            let values: Vec<f64> = reports.iter().filter_map(|m| m.metrics.get(k).copied()).collect();
            if values.is_empty() {
                out += " – |";
            } else {
                let (mean, std) = crate::stats::mean_std(&values);
                out += &format!(" {mean:.4} ± {std:.4} |");
            }
        }
        out += "\n";
    }
    out
}

/// Published full-ranking leave-one-out numbers on the P5/S3-Rec Amazon splits (design.md §5),
/// for side-by-side tables. Always rendered with a `published:` label, never as our results.
/// Rows: (dataset, model, R@5, N@5, R@10, N@10).
pub const PUBLISHED: &[(&str, &str, f64, f64, f64, f64)] = &[
    ("amazon-p5:Beauty", "PopRec", 0.0080, 0.0044, 0.0152, 0.0068),
    ("amazon-p5:Beauty", "SASRec", 0.0387, 0.0249, 0.0605, 0.0318),
    ("amazon-p5:Beauty", "S3-Rec", 0.0387, 0.0244, 0.0647, 0.0327),
    ("amazon-p5:Beauty", "TIGER", 0.0454, 0.0321, 0.0648, 0.0384),
    ("amazon-p5:Beauty", "P5 + CID+IID", 0.0512, 0.0356, 0.0732, 0.0427),
    ("amazon-p5:Beauty", "RPG", 0.0550, 0.0381, 0.0809, 0.0464),
    ("amazon-p5:Toys_and_Games", "SASRec", 0.0463, 0.0306, 0.0675, 0.0374),
    ("amazon-p5:Toys_and_Games", "TIGER", 0.0521, 0.0371, 0.0712, 0.0432),
    ("amazon-p5:Toys_and_Games", "RPG", 0.0592, 0.0401, 0.0869, 0.0490),
    ("amazon-p5:LastFM", "SASRec", 0.0505, 0.0331, 0.0688, 0.0390),
];

/// The published rows for `dataset`, as table rows labelled `published: <model>`.
pub fn published_rows(dataset: &str) -> Vec<Row> {
    PUBLISHED
        .iter()
        .filter(|p| p.0 == dataset)
        .map(|&(dataset, model, r5, n5, r10, n10)| Row {
            label: format!("published: {model}"),
            report: MetricsReport {
                experiment: "published (design.md §5)".into(),
                dataset: dataset.into(),
                model: model.into(),
                split: "test".into(),
                seed: 0,
                users: 0,
                metrics: [("recall@5", r5), ("ndcg@5", n5), ("recall@10", r10), ("ndcg@10", n10)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                invalid: BTreeMap::new(),
                ranking: "full".into(),
                exclude_history: false,
                mask: None,
                train_seconds: 0.0,
                eval_seconds: 0.0,
                device: "-".into(),
                groups: BTreeMap::new(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(metrics: &[(&str, f64)]) -> MetricsReport {
        MetricsReport {
            experiment: "e".into(),
            dataset: "d".into(),
            model: "pop".into(),
            split: "test".into(),
            seed: 1,
            users: 3,
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            invalid: [("invalid@10".to_string(), 0.5)].into(),
            ranking: "full".into(),
            exclude_history: false,
            mask: None,
            train_seconds: 0.0,
            eval_seconds: 0.0,
            device: "flex".into(),
            groups: BTreeMap::new(),
        }
    }

    #[test]
    fn group_table_lists_each_runs_buckets() {
        let mut a = report(&[("recall@10", 0.25)]);
        a.groups.insert(
            "popularity".into(),
            vec![
                crate::metrics::GroupMetrics {
                    group: "<1".into(),
                    users: 2,
                    metrics: [("ndcg@10".to_string(), 0.0), ("recall@10".to_string(), 0.0)].into(),
                },
                crate::metrics::GroupMetrics {
                    group: "1+".into(),
                    users: 1,
                    metrics: [("ndcg@10".to_string(), 0.5), ("recall@10".to_string(), 1.0)].into(),
                },
            ],
        );
        let row = |label: &str, report: MetricsReport| Row {
            label: label.into(),
            report,
        };
        let t = group_table(&[row("a", a.clone())], "popularity").unwrap();
        assert_eq!(
            t,
            "| run | model | popularity | users | recall@10 | ndcg@10 |\n|---|---|---|---:|---:|---:|\n\
             | a | pop | <1 | 2 | 0.0000 | 0.0000 |\n| a | pop | 1+ | 1 | 1.0000 | 0.5000 |\n"
        );
        let err = group_table(&[row("a", a), row("b", report(&[]))], "popularity").unwrap_err();
        assert!(err.to_string().contains("run b: no `popularity` breakdown"), "{err}");
    }

    #[test]
    fn json_shape_round_trips() {
        let r = report(&[("recall@10", 0.25)]);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["invalid@10"], 0.5);
        assert_eq!(v["metrics"]["recall@10"], 0.25);
        let back: MetricsReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn table_orders_by_k() {
        let t = markdown_table(
            &[
                Row {
                    label: "a".into(),
                    report: report(&[("recall@10", 0.25), ("ndcg@5", 0.1), ("recall@5", 0.2)]),
                },
                Row {
                    label: "b".into(),
                    report: report(&[("recall@5", 0.3)]),
                },
            ],
            None,
        );
        let header = t.lines().next().unwrap();
        assert!(header.ends_with("| recall@5 | ndcg@5 | recall@10 |"), "{header}");
        assert!(t.contains("| b | pop | d | full | 3 | 0.3000 | – | – |"), "{t}");
    }

    #[test]
    fn published_rows_are_labelled() {
        let rows = published_rows("amazon-p5:Beauty");
        assert_eq!(rows.len(), 6);
        assert!(rows.iter().all(|r| r.label.starts_with("published: ")));
        assert_eq!(rows[1].report.metrics["recall@10"], 0.0605);
        assert!(published_rows("ml-100k").is_empty());
    }

    #[test]
    fn aggregate_over_seeds() {
        let mut a = report(&[("recall@10", 0.2)]);
        let mut b = report(&[("recall@10", 0.4)]);
        a.seed = 1;
        b.seed = 2;
        let mut other = report(&[("recall@10", 0.1)]);
        other.experiment = "f".into();
        let rows: Vec<Row> = [a, b, other]
            .into_iter()
            .map(|report| Row {
                label: String::new(),
                report,
            })
            .collect();
        let t = aggregate_table(&rows);
        // mean 0.3, sample std sqrt(0.02) = 0.1414.
        assert!(t.contains("| e | pop | d | full | 2 | 0.3000 ± 0.1414 |"), "{t}");
        assert!(t.contains("| f | pop | d | full | 1 | 0.1000 ± 0.0000 |"), "{t}");
    }
}
