//! Leave-one-out split (design.md §4): per user, the last item is the test target, the second to
//! last the validation target, and every earlier prefix a training example. Histories are cut to
//! the last `max_history` items.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{ItemId, SequenceDataset, UserId};

/// How sequences become train / validation / test cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Keep only the last `max_history` items of every history (default 50; the Amazon recipes use 20).
    pub max_history: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig { max_history: 50 }
    }
}

/// One evaluation query: the model sees `history` (oldest first) and must rank `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCase {
    pub user: UserId,
    pub history: Vec<ItemId>,
    pub target: ItemId,
}

/// The three splits of a [`SequenceDataset`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveOneOut {
    pub n_items: usize,
    pub max_history: usize,
    /// `train[u]` = user `u`'s sequence without its last two items (may be a single item; the
    /// training examples are its prefixes of length ≥ 1 and the item that follows each).
    pub train: Vec<Vec<ItemId>>,
    /// Target = second-to-last item; history = everything before it (truncated).
    pub valid: Vec<EvalCase>,
    /// Target = last item; history = everything before it, including the validation item (truncated).
    pub test: Vec<EvalCase>,
    /// Users with fewer than 3 interactions: they cannot give a train, valid and test item, so
    /// they are skipped (and counted here) rather than guessed at.
    pub skipped_short_users: usize,
}

fn tail(seq: &[ItemId], max: usize) -> Vec<ItemId> {
    seq[seq.len().saturating_sub(max)..].to_vec()
}

impl LeaveOneOut {
    pub fn new(dataset: &SequenceDataset, config: &SplitConfig) -> Self {
        let max = config.max_history.max(1);
        let mut split = LeaveOneOut {
            n_items: dataset.n_items(),
            max_history: max,
            train: vec![Vec::new(); dataset.n_users()],
            valid: Vec::new(),
            test: Vec::new(),
            skipped_short_users: 0,
        };
        for (u, seq) in dataset.sequences.iter().enumerate() {
            let n = seq.len();
            if n < 3 {
                split.skipped_short_users += 1;
                continue;
            }
            split.train[u] = seq[..n - 2].to_vec();
            split.valid.push(EvalCase {
                user: u as UserId,
                history: tail(&seq[..n - 2], max),
                target: seq[n - 2],
            });
            split.test.push(EvalCase {
                user: u as UserId,
                history: tail(&seq[..n - 1], max),
                target: seq[n - 1],
            });
        }
        split
    }

    /// Every training example `(user, history, target)`: for each position `t ≥ 1` of a user's
    /// training sequence, the (truncated) items before `t` predict item `t`.
    pub fn train_examples(&self) -> impl Iterator<Item = EvalCase> + '_ {
        self.train.iter().enumerate().flat_map(move |(u, seq)| {
            (1..seq.len()).map(move |t| EvalCase {
                user: u as UserId,
                history: tail(&seq[..t], self.max_history),
                target: seq[t],
            })
        })
    }

    /// Next-item training pairs of the causal sequence models (SASRec, RPG): each user's training
    /// sequence as (input, target) shifted by one, its last `max_history` positions; users with
    /// fewer than 2 training items give none.
    pub fn shifted_pairs(&self) -> Vec<(Vec<ItemId>, Vec<ItemId>)> {
        self.train
            .iter()
            .filter(|s| s.len() >= 2)
            .map(|s| {
                let n = s.len();
                let from = (n - 1).saturating_sub(self.max_history);
                (s[from..n - 1].to_vec(), s[from + 1..].to_vec())
            })
            .collect()
    }

    /// Writes the split for code outside genrec (a PyTorch anchor, say) into `dir`:
    /// `train.jsonl` (`{"user", "items"}`, each user's training sequence, oldest first; users
    /// without one left out), `valid.jsonl` and `test.jsonl` (`{"user", "history", "target"}`,
    /// histories already cut to `max_history`). Ids are genrec's, those of the run's `index.json`.
    pub fn save(&self, dir: &std::path::Path) -> crate::Result<()> {
        use std::io::Write;
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| crate::DataError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let write = |name: &str, lines: Vec<String>| -> crate::Result<()> {
            let path = dir.join(name);
            let tmp = dir.join(format!("{name}.tmp"));
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
            for line in lines {
                writeln!(file, "{line}").map_err(io(&tmp))?;
            }
            file.flush().map_err(io(&tmp))?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(io(&path))
        };
        let train = self
            .train
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(u, s)| serde_json::json!({"user": u, "items": s}).to_string())
            .collect();
        write("train.jsonl", train)?;
        let cases = |cases: &[EvalCase]| {
            cases
                .iter()
                .map(|c| serde_json::to_string(c).expect("plain data"))
                .collect()
        };
        write("valid.jsonl", cases(&self.valid))?;
        write("test.jsonl", cases(&self.test))
    }

    /// Item interaction counts over the training sequences only (what a popularity model may see).
    pub fn train_item_counts(&self) -> Vec<u32> {
        SequenceDataset::item_counts(self.n_items, &self.train)
    }

    /// The validation cases a training loop checks: all of them (`users = 0` or more than there
    /// are), or a seeded sample of `users`, in their original order (a budget knob for slow
    /// decoders; reported metrics always use every user).
    pub fn valid_sample(&self, users: usize, seed: u64) -> Vec<EvalCase> {
        if users == 0 || users >= self.valid.len() {
            return self.valid.clone();
        }
        let mut picked: Vec<usize> = (0..self.valid.len()).collect();
        picked.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5A11_DA7E));
        picked.truncate(users);
        picked.sort_unstable();
        picked.into_iter().map(|i| self.valid[i].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(seqs: Vec<Vec<ItemId>>, n_items: usize) -> SequenceDataset {
        SequenceDataset {
            name: "t".into(),
            user_tokens: (0..seqs.len()).map(|u| u.to_string()).collect(),
            item_tokens: (0..n_items).map(|i| i.to_string()).collect(),
            items: vec![Default::default(); n_items],
            sequences: seqs,
        }
    }

    #[test]
    fn saved_split_reads_back_line_by_line() {
        let d = dataset(vec![vec![0, 1, 2, 3], vec![4, 5], vec![1, 2, 5]], 6);
        let split = LeaveOneOut::new(&d, &SplitConfig { max_history: 2 });
        let dir = tempfile::tempdir().unwrap();
        split.save(dir.path()).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(
            read("train.jsonl"),
            "{\"items\":[0,1],\"user\":0}\n{\"items\":[1],\"user\":2}\n"
        );
        assert_eq!(
            read("valid.jsonl"),
            "{\"user\":0,\"history\":[0,1],\"target\":2}\n{\"user\":2,\"history\":[1],\"target\":2}\n"
        );
        assert_eq!(
            read("test.jsonl"),
            "{\"user\":0,\"history\":[1,2],\"target\":3}\n{\"user\":2,\"history\":[1,2],\"target\":5}\n",
            "history cut to max_history = 2"
        );
        assert!(!dir.path().join("test.jsonl.tmp").exists());
    }

    #[test]
    fn leave_one_out_by_hand() {
        let d = dataset(vec![vec![0, 1, 2, 3, 4], vec![5, 6], vec![7, 8, 9]], 10);
        let s = LeaveOneOut::new(&d, &SplitConfig { max_history: 2 });
        assert_eq!(s.skipped_short_users, 1);
        assert_eq!(s.train[0], [0, 1, 2]);
        assert!(s.train[1].is_empty());
        assert_eq!(
            s.valid[0],
            EvalCase {
                user: 0,
                history: vec![1, 2],
                target: 3
            }
        );
        assert_eq!(
            s.test[0],
            EvalCase {
                user: 0,
                history: vec![2, 3],
                target: 4
            }
        );
        assert_eq!(
            s.test[1],
            EvalCase {
                user: 2,
                history: vec![7, 8],
                target: 9
            }
        );
        let ex: Vec<_> = s.train_examples().collect();
        // user 0: [0]->1, [0,1]->2 ; user 2: [7] has no next training item.
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex[1],
            EvalCase {
                user: 0,
                history: vec![0, 1],
                target: 2
            }
        );
        assert_eq!(s.train_item_counts()[0..3], [1, 1, 1]);
        assert_eq!(s.train_item_counts()[3], 0, "validation items never count as training");
        // Shifted pairs keep the last max_history = 2 positions: [0 1 2] gives [0 1] -> [1 2].
        assert_eq!(s.shifted_pairs(), [(vec![0, 1], vec![1, 2])]);
        let long = LeaveOneOut::new(&d, &SplitConfig { max_history: 1 });
        assert_eq!(long.shifted_pairs(), [(vec![1], vec![2])]);
    }

    #[test]
    fn truncation_keeps_the_most_recent() {
        let d = dataset(vec![(0..60).collect()], 60);
        let s = LeaveOneOut::new(&d, &SplitConfig::default());
        assert_eq!(s.test[0].history.len(), 50);
        assert_eq!(s.test[0].history[0], 9);
        assert_eq!(*s.test[0].history.last().unwrap(), 58);
    }

    #[test]
    fn valid_sample_is_a_seeded_ordered_subset() {
        let seqs: Vec<Vec<ItemId>> = (0..20).map(|u| vec![u, u + 1, u + 2]).collect();
        let split = LeaveOneOut::new(&dataset(seqs, 22), &SplitConfig { max_history: 10 });
        assert_eq!(split.valid_sample(0, 1), split.valid);
        assert_eq!(split.valid_sample(99, 1), split.valid);
        let a = split.valid_sample(6, 1);
        assert_eq!(a.len(), 6);
        assert_eq!(a, split.valid_sample(6, 1), "same seed, same sample");
        assert_ne!(a, split.valid_sample(6, 2), "another seed, another sample");
        // In the original order, each case once, each one of the split's.
        let pos: Vec<usize> = a
            .iter()
            .map(|c| split.valid.iter().position(|v| v == c).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    }
}
