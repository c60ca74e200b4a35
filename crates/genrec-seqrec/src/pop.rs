//! Popularity baseline (PopRec): every user gets the items with the most *training* interactions.
//!
//! Counts come from the leave-one-out training sequences only, so neither validation nor test
//! targets leak into the ranking. Equal counts are equal scores, and full-ranking evaluation ranks
//! them pessimistically: the model gets no credit from an arbitrary tie order.
//!
//! `genrec run experiments/pop-ml100k.toml`

use std::path::Path;

use genrec_data::{ItemId, LeaveOneOut};
use genrec_eval::ranking::top_k;
use genrec_eval::Recommender;
use serde::{Deserialize, Serialize};

use crate::SeqRecError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    /// `counts[i]` = training interactions of item `i`.
    pub counts: Vec<u32>,
}

impl Popularity {
    pub fn fit(split: &LeaveOneOut) -> Self {
        Popularity {
            counts: split.train_item_counts(),
        }
    }

    /// Saves the counts as JSON through a temporary file and a rename (atomic).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(tmp, path)
    }

    pub fn load(path: &Path) -> Result<Self, SeqRecError> {
        let err = |message: String| SeqRecError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(format!("not a popularity checkpoint: {e}")))
    }
}

impl Recommender for Popularity {
    fn name(&self) -> String {
        "pop".into()
    }

    fn n_items(&self) -> usize {
        self.counts.len()
    }

    fn recommend(&self, histories: &[&[ItemId]], k: usize) -> Vec<Vec<ItemId>> {
        let scores: Vec<f32> = self.counts.iter().map(|&c| c as f32).collect();
        let list = top_k(&scores, k, &[]);
        vec![list; histories.len()]
    }

    fn scores(&self, histories: &[&[ItemId]]) -> Option<Vec<f32>> {
        let row: Vec<f32> = self.counts.iter().map(|&c| c as f32).collect();
        Some(row.repeat(histories.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::{EvalCase, SequenceDataset, SplitConfig};
    use genrec_eval::{evaluate, EvalConfig};

    #[test]
    fn counts_training_only_and_ranks_pessimistically() {
        let d = SequenceDataset {
            name: "t".into(),
            user_tokens: vec!["a".into(), "b".into()],
            item_tokens: (0..5).map(|i| i.to_string()).collect(),
            items: vec![Default::default(); 5],
            // train = [0, 0, 1] and [2, 1]; valid/test targets 3, 4 never count.
            sequences: vec![vec![0, 0, 1, 3, 4], vec![2, 1, 4, 3]],
        };
        let split = LeaveOneOut::new(&d, &SplitConfig::default());
        let pop = Popularity::fit(&split);
        assert_eq!(pop.counts, [2, 2, 1, 0, 0]);
        assert_eq!(pop.recommend(&[&[]], 3), vec![vec![0, 1, 2]]);
        let cfg = EvalConfig {
            ks: vec![1, 2],
            ..Default::default()
        };
        let cases = [
            EvalCase {
                user: 0,
                history: vec![],
                target: 0,
            },
            EvalCase {
                user: 1,
                history: vec![],
                target: 3,
            },
        ];
        let e = evaluate(&pop, &cases, None, &cfg, 0).unwrap();
        // Item 0 ties with item 1 (count 2): pessimistic rank 2. Item 3 ties with 4 at the bottom: rank 5.
        assert_eq!(e.outcomes[0].rank, Some(2));
        assert_eq!(e.outcomes[1].rank, Some(5));
        let dir = std::env::temp_dir().join(format!("pop-{}.json", std::process::id()));
        pop.save(&dir).unwrap();
        assert_eq!(Popularity::load(&dir).unwrap(), pop);
        std::fs::remove_file(dir).unwrap();
    }
}
