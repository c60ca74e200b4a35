use std::collections::{BTreeMap, HashMap};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{DataError, ItemId, Result};

/// One interaction as read from a file, before ids are assigned. Events keep file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub user: String,
    pub item: String,
    /// Seconds or any monotone clock; files without time use the position in the file.
    pub timestamp: f64,
}

/// Side information about one item: named text fields (title, year, genres, brand, …) and
/// attribute ids (brand / category ids of the Amazon files, genres of MovieLens).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ItemInfo {
    pub fields: BTreeMap<String, String>,
    pub attributes: Vec<u32>,
}

impl ItemInfo {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Users' item sequences, oldest first, with dense ids.
///
/// Invariants (checked by [`SequenceDataset::validate`]): `sequences.len() == user_tokens.len()`,
/// `items.len() == item_tokens.len()`, every id in a sequence is `< n_items()`.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceDataset {
    pub name: String,
    /// Raw user id of each dense user index.
    pub user_tokens: Vec<String>,
    /// Raw item id of each dense item id.
    pub item_tokens: Vec<String>,
    /// `sequences[u]` = user `u`'s items in time order.
    pub sequences: Vec<Vec<ItemId>>,
    /// `items[i]` = side information of item `i` (empty when the source has none).
    pub items: Vec<ItemInfo>,
}

/// What [`SequenceDataset::kcore`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KCoreReport {
    pub rounds: usize,
    pub removed_users: usize,
    pub removed_items: usize,
    pub removed_interactions: usize,
}

/// Summary printed by `genrec data stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub mean_length: f64,
    pub median_length: f64,
    pub min_length: usize,
    pub max_length: usize,
    /// interactions / (users × items)
    pub density: f64,
}

impl std::fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "users          {}", self.users)?;
        writeln!(f, "items          {}", self.items)?;
        writeln!(f, "interactions   {}", self.interactions)?;
        writeln!(f, "mean length    {:.2}", self.mean_length)?;
        writeln!(f, "median length  {:.1}", self.median_length)?;
        writeln!(f, "min/max length {}/{}", self.min_length, self.max_length)?;
        write!(f, "density        {:.6}", self.density)
    }
}

impl SequenceDataset {
    /// Groups events by user (users numbered by first appearance) and orders each user's events
    /// by timestamp with a *stable* sort: equal timestamps keep file order, never item-id order.
    /// Items are numbered by first appearance; call [`renumber_items`](Self::renumber_items) to
    /// remove that ordering signal before training.
    pub fn from_events(name: &str, events: Vec<Event>) -> Self {
        let mut user_index: HashMap<String, usize> = HashMap::new();
        let mut item_index: HashMap<String, ItemId> = HashMap::new();
        let mut user_tokens = Vec::new();
        let mut item_tokens = Vec::new();
        let mut timed: Vec<Vec<(f64, ItemId)>> = Vec::new();
        for event in events {
            let u = *user_index.entry(event.user.clone()).or_insert_with(|| {
                user_tokens.push(event.user.clone());
                timed.push(Vec::new());
                user_tokens.len() - 1
            });
            let i = *item_index.entry(event.item.clone()).or_insert_with(|| {
                item_tokens.push(event.item.clone());
                (item_tokens.len() - 1) as ItemId
            });
            timed[u].push((event.timestamp, i));
        }
        let sequences = timed
            .into_iter()
            .map(|mut seq| {
                // `sort_by` is stable; `total_cmp` gives NaN a fixed place instead of a panic.
                seq.sort_by(|a, b| a.0.total_cmp(&b.0));
                seq.into_iter().map(|(_, i)| i).collect()
            })
            .collect();
        let items = vec![ItemInfo::default(); item_tokens.len()];
        SequenceDataset {
            name: name.to_string(),
            user_tokens,
            item_tokens,
            sequences,
            items,
        }
    }

    pub fn n_users(&self) -> usize {
        self.sequences.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_tokens.len()
    }

    pub fn n_interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }

    /// Attaches side information by raw item id; returns how many items got none.
    pub fn attach_item_info(&mut self, mut info: HashMap<String, ItemInfo>) -> usize {
        let mut missing = 0;
        for (token, slot) in self.item_tokens.iter().zip(self.items.iter_mut()) {
            match info.remove(token) {
                Some(i) => *slot = i,
                None => missing += 1,
            }
        }
        missing
    }

    /// Checks the struct's invariants; loaders call it so a hand-built dataset fails early too.
    pub fn validate(&self) -> Result<()> {
        if self.sequences.len() != self.user_tokens.len() {
            return Err(DataError::Invalid(format!(
                "dataset `{}`: {} sequences but {} user ids",
                self.name,
                self.sequences.len(),
                self.user_tokens.len()
            )));
        }
        if self.items.len() != self.item_tokens.len() {
            return Err(DataError::Invalid(format!(
                "dataset `{}`: {} item infos but {} item ids",
                self.name,
                self.items.len(),
                self.item_tokens.len()
            )));
        }
        let n = self.n_items() as ItemId;
        for (u, seq) in self.sequences.iter().enumerate() {
            if let Some(&bad) = seq.iter().find(|&&i| i >= n) {
                return Err(DataError::Invalid(format!(
                    "dataset `{}`: user {} has item id {bad} but there are only {n} items",
                    self.name, self.user_tokens[u]
                )));
            }
        }
        Ok(())
    }

    /// Iterated k-core: repeatedly drops items with fewer than `item_k` interactions and users
    /// with fewer than `user_k`, until neither removes anything. Surviving ids are compacted in
    /// their existing order. `k = 0` or `1` disables that side.
    pub fn kcore(&self, user_k: usize, item_k: usize) -> (SequenceDataset, KCoreReport) {
        let mut sequences = self.sequences.clone();
        let mut alive_user = vec![true; self.n_users()];
        let mut report = KCoreReport::default();
        loop {
            let mut count = vec![0usize; self.n_items()];
            for (u, seq) in sequences.iter().enumerate() {
                if alive_user[u] {
                    for &i in seq {
                        count[i as usize] += 1;
                    }
                }
            }
            let mut changed = false;
            for (u, seq) in sequences.iter_mut().enumerate() {
                if !alive_user[u] {
                    continue;
                }
                let before = seq.len();
                seq.retain(|&i| count[i as usize] >= item_k);
                changed |= seq.len() != before;
                if seq.len() < user_k.max(1) {
                    alive_user[u] = false;
                    changed = true;
                }
            }
            report.rounds += 1;
            if !changed {
                break;
            }
        }
        // Compact: keep users and items that survived, in their existing order.
        let mut used = vec![false; self.n_items()];
        for (u, seq) in sequences.iter().enumerate() {
            if alive_user[u] {
                for &i in seq {
                    used[i as usize] = true;
                }
            }
        }
        let mut new_id = vec![ItemId::MAX; self.n_items()];
        let mut item_tokens = Vec::new();
        let mut items = Vec::new();
        for (old, &keep) in used.iter().enumerate() {
            if keep {
                new_id[old] = item_tokens.len() as ItemId;
                item_tokens.push(self.item_tokens[old].clone());
                items.push(self.items[old].clone());
            }
        }
        let mut user_tokens = Vec::new();
        let mut kept = Vec::new();
        for (u, seq) in sequences.into_iter().enumerate() {
            if alive_user[u] {
                user_tokens.push(self.user_tokens[u].clone());
                kept.push(seq.into_iter().map(|i| new_id[i as usize]).collect::<Vec<_>>());
            }
        }
        let out = SequenceDataset {
            name: self.name.clone(),
            user_tokens,
            item_tokens,
            sequences: kept,
            items,
        };
        report.removed_users = self.n_users() - out.n_users();
        report.removed_items = self.n_items() - out.n_items();
        report.removed_interactions = self.n_interactions() - out.n_interactions();
        (out, report)
    }

    /// Seeded random renumbering of items, so an id says nothing about when an item first
    /// appeared (ids assigned in order of appearance leak time into embeddings and tie-breaks).
    pub fn renumber_items(&self, seed: u64) -> SequenceDataset {
        let mut perm: Vec<ItemId> = (0..self.n_items() as ItemId).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        // perm[old] = new
        let mut item_tokens = vec![String::new(); self.n_items()];
        let mut items = vec![ItemInfo::default(); self.n_items()];
        for (old, &new) in perm.iter().enumerate() {
            item_tokens[new as usize] = self.item_tokens[old].clone();
            items[new as usize] = self.items[old].clone();
        }
        let sequences = self
            .sequences
            .iter()
            .map(|seq| seq.iter().map(|&i| perm[i as usize]).collect())
            .collect();
        SequenceDataset {
            name: self.name.clone(),
            user_tokens: self.user_tokens.clone(),
            item_tokens,
            sequences,
            items,
        }
    }

    pub fn stats(&self) -> DatasetStats {
        let mut lengths: Vec<usize> = self.sequences.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        let users = lengths.len();
        let interactions: usize = lengths.iter().sum();
        let median_length = match users {
            0 => 0.0,
            n if n % 2 == 1 => lengths[n / 2] as f64,
            n => (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0,
        };
        let items = self.n_items();
        DatasetStats {
            users,
            items,
            interactions,
            mean_length: if users == 0 {
                0.0
            } else {
                interactions as f64 / users as f64
            },
            median_length,
            min_length: lengths.first().copied().unwrap_or(0),
            max_length: lengths.last().copied().unwrap_or(0),
            density: if users == 0 || items == 0 {
                0.0
            } else {
                interactions as f64 / (users as f64 * items as f64)
            },
        }
    }

    /// Number of interactions per item over the given sequences (e.g. training prefixes only).
    pub fn item_counts(n_items: usize, sequences: &[Vec<ItemId>]) -> Vec<u32> {
        let mut count = vec![0u32; n_items];
        for seq in sequences {
            for &i in seq {
                count[i as usize] += 1;
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, item: &str, t: f64) -> Event {
        Event {
            user: user.into(),
            item: item.into(),
            timestamp: t,
        }
    }

    #[test]
    fn stable_chronological_order_keeps_file_order_on_ties() {
        // u1 has two events at t=5: file order (z then a) must survive, not item-id order.
        let d = SequenceDataset::from_events(
            "t",
            vec![
                ev("u1", "z", 5.0),
                ev("u2", "a", 1.0),
                ev("u1", "a", 5.0),
                ev("u1", "b", 1.0),
            ],
        );
        let names: Vec<&str> = d.sequences[0]
            .iter()
            .map(|&i| d.item_tokens[i as usize].as_str())
            .collect();
        assert_eq!(names, ["b", "z", "a"]);
        assert_eq!(d.user_tokens, ["u1", "u2"]);
    }

    #[test]
    fn kcore_iterates_to_fixed_point() {
        // Item c appears twice; with item_k = 3 it goes, which drops u3 below user_k = 2,
        // which drops item b below 3 in the next round, which drops u2: a cascade.
        let seqs = [
            ("u1", vec!["a", "a", "a", "b"]),
            ("u2", vec!["b", "c"]),
            ("u3", vec!["c", "b"]),
            ("u4", vec!["a", "a"]),
        ];
        let mut events = Vec::new();
        let mut t = 0.0;
        for (u, items) in &seqs {
            for i in items {
                events.push(ev(u, i, t));
                t += 1.0;
            }
        }
        let d = SequenceDataset::from_events("t", events);
        let (core, report) = d.kcore(2, 3);
        assert_eq!(core.user_tokens, ["u1", "u4"]);
        assert_eq!(core.item_tokens, ["a"]);
        assert_eq!(core.sequences, vec![vec![0, 0, 0], vec![0, 0]]);
        assert_eq!(report.removed_users, 2);
        assert_eq!(report.removed_items, 2);
        assert_eq!(report.removed_interactions, 5);
        // Idempotent at the fixed point.
        let (again, r2) = core.kcore(2, 3);
        assert_eq!(again, core);
        assert_eq!(r2.removed_interactions, 0);
    }

    #[test]
    fn renumbering_is_a_seeded_bijection() {
        let d = crate::synthetic::SyntheticConfig::small().generate();
        let a = d.renumber_items(7);
        let b = d.renumber_items(7);
        let c = d.renumber_items(8);
        assert_eq!(a, b);
        assert_ne!(a.sequences, c.sequences);
        // Same raw items in the same order for every user.
        for u in 0..d.n_users() {
            let raw = |ds: &SequenceDataset| -> Vec<String> {
                ds.sequences[u]
                    .iter()
                    .map(|&i| ds.item_tokens[i as usize].clone())
                    .collect()
            };
            assert_eq!(raw(&d), raw(&a));
        }
        a.validate().unwrap();
    }

    #[test]
    fn stats_by_hand() {
        let d = SequenceDataset::from_events(
            "t",
            vec![
                ev("u1", "a", 0.0),
                ev("u1", "b", 1.0),
                ev("u2", "a", 0.0),
                ev("u3", "c", 0.0),
                ev("u3", "a", 1.0),
                ev("u3", "b", 2.0),
            ],
        );
        let s = d.stats();
        assert_eq!((s.users, s.items, s.interactions), (3, 3, 6));
        assert_eq!(s.mean_length, 2.0);
        assert_eq!(s.median_length, 2.0);
        assert!((s.density - 6.0 / 9.0).abs() < 1e-12);
    }
}
