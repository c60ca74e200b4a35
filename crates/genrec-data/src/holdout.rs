//! Hold-out protocol (design.md §4, the graph-CF / RLMRec protocol): a user's interactions are an
//! unordered set, split at random into train / validation / test, so a user has *several*
//! relevant items at evaluation. Two ways to get one:
//!
//! - [`HoldOut::split`] / [`HoldOut::from_dataset`]: a seeded random ratio split (3:1:1 by
//!   default) that gives every user and every item at least one training interaction;
//! - [`HoldOut::load_dir`] / [`HoldOut::load_files`]: pre-split `train.tsv` / `valid.tsv` /
//!   `test.tsv` in the shared `rlmrec/amazon-book` format, checked line by line.
//!
//! [`HoldOut::write_dir`] writes the same format, so a seeded split can be shared with another
//! implementation (the PyTorch anchor) and read back.
//!
//! Invariants of a [`HoldOut`] (checked by [`HoldOut::validate`]): `train`, `valid` and `test`
//! have `n_users` rows; every id is `< n_items`; each row is sorted ascending without repeats; no
//! (user, item) pair is in two splits; every user and every item has a training interaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{lines, read_text};
use crate::{DataError, ItemId, Result, SequenceDataset, UserId};

/// The three file names of a pre-split directory, in split order.
pub const HOLDOUT_FILES: [&str; 3] = ["train.tsv", "valid.tsv", "test.tsv"];

const SPLIT_NAMES: [&str; 3] = ["train", "valid", "test"];

/// How [`HoldOut::split`] cuts interactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoldOutConfig {
    /// Relative sizes of train : valid : test (default `[3, 1, 1]`, as RLMRec). Need not sum to 1;
    /// each must be finite and ≥ 0, and train > 0. Valid or test may be 0.
    pub ratios: [f64; 3],
    /// Seed of the shuffle (default 0). The same seed and the same set of interactions give the
    /// same split, whatever order the interactions came in.
    pub seed: u64,
}

impl Default for HoldOutConfig {
    fn default() -> Self {
        HoldOutConfig {
            ratios: [3.0, 1.0, 1.0],
            seed: 0,
        }
    }
}

impl HoldOutConfig {
    /// Checks the ratios; the error names the field.
    pub fn validate(&self) -> Result<()> {
        for (name, &r) in SPLIT_NAMES.iter().zip(&self.ratios) {
            if !r.is_finite() || r < 0.0 {
                return Err(DataError::Invalid(format!(
                    "holdout.ratios: the {name} ratio {r} must be a finite number ≥ 0"
                )));
            }
        }
        if self.ratios[0] <= 0.0 {
            return Err(DataError::Invalid(
                "holdout.ratios: the train ratio must be > 0 (every user needs a training item)".into(),
            ));
        }
        Ok(())
    }
}

/// Per-user train / validation / test item sets. Rows are indexed by user id.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldOut {
    pub n_users: usize,
    pub n_items: usize,
    /// `train[u]` = user `u`'s training items, ascending (never empty).
    pub train: Vec<Vec<ItemId>>,
    /// `valid[u]` = user `u`'s validation items, ascending (may be empty).
    pub valid: Vec<Vec<ItemId>>,
    /// `test[u]` = user `u`'s test items, ascending (may be empty).
    pub test: Vec<Vec<ItemId>>,
}

impl HoldOut {
    /// Seeded random ratio split of `interactions` (user, item) over `n_users × n_items`.
    ///
    /// Repeated pairs are merged first: the hold-out protocol treats interactions as a set (a
    /// repeat landing in train and test would be masked at evaluation and count as a miss).
    /// The pairs are sorted, then shuffled with `ChaCha8Rng(seed)`, so the input order does not
    /// matter. Then, in shuffled order:
    ///
    /// 1. *cover*: a pair goes to train when its user or its item has no training pair yet —
    ///    each user's and each item's first pair in the shuffle, so every user and item gets a
    ///    training interaction (at most `n_users + n_items` pairs are forced this way);
    /// 2. *ratio*: of the other pairs, the first `round(N·valid/sum)` go to valid, the next
    ///    `round(N·test/sum)` to test and the rest to train, where `N` counts *all* pairs — so
    ///    the sizes are exactly the ratio whenever the cover fits in the training share. When it
    ///    does not (very sparse data), valid and test share what is left, in their ratio.
    ///
    /// Fails when a user or an item has no interaction at all (it cannot get a training one),
    /// or an id is out of range.
    pub fn split(
        n_users: usize,
        n_items: usize,
        interactions: &[(UserId, ItemId)],
        config: &HoldOutConfig,
    ) -> Result<HoldOut> {
        config.validate()?;
        let mut pairs = interactions.to_vec();
        if let Some(&(u, i)) = pairs
            .iter()
            .find(|&&(u, i)| u as usize >= n_users || i as usize >= n_items)
        {
            return Err(DataError::Invalid(format!(
                "hold-out split: pair (user {u}, item {i}) is outside {n_users} users × {n_items} items"
            )));
        }
        pairs.sort_unstable();
        pairs.dedup();
        check_every_id_occurs(n_users, n_items, &pairs)?;
        pairs.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));

        let n = pairs.len() as f64;
        let sum: f64 = config.ratios.iter().sum();
        let want_valid = (n * config.ratios[1] / sum).round() as usize;
        let want_test = (n * config.ratios[2] / sum).round() as usize;

        let mut user_covered = vec![false; n_users];
        let mut item_covered = vec![false; n_items];
        let mut train_pairs = Vec::with_capacity(pairs.len());
        let mut rest = Vec::with_capacity(pairs.len());
        for (u, i) in pairs {
            let (cu, ci) = (&mut user_covered[u as usize], &mut item_covered[i as usize]);
            if !*cu || !*ci {
                *cu = true;
                *ci = true;
                train_pairs.push((u, i));
            } else {
                rest.push((u, i));
            }
        }

        let n_eval = (want_valid + want_test).min(rest.len());
        let n_valid = if n_eval == want_valid + want_test {
            want_valid
        } else {
            // The cover took more than the training share: keep valid:test in their ratio.
            let eval_sum = config.ratios[1] + config.ratios[2];
            (n_eval as f64 * config.ratios[1] / eval_sum).round() as usize
        };
        let (valid_pairs, rest) = rest.split_at(n_valid);
        let (test_pairs, rest) = rest.split_at(n_eval - n_valid);
        train_pairs.extend_from_slice(rest);

        Ok(HoldOut {
            n_users,
            n_items,
            train: per_user(n_users, &train_pairs),
            valid: per_user(n_users, valid_pairs),
            test: per_user(n_users, test_pairs),
        })
    }

    /// [`split`](Self::split) of every (user, item) of a [`SequenceDataset`] (order ignored,
    /// repeats merged).
    pub fn from_dataset(dataset: &SequenceDataset, config: &HoldOutConfig) -> Result<HoldOut> {
        let pairs: Vec<(UserId, ItemId)> = dataset
            .sequences
            .iter()
            .enumerate()
            .flat_map(|(u, seq)| seq.iter().map(move |&i| (u as UserId, i)))
            .collect();
        Self::split(dataset.n_users(), dataset.n_items(), &pairs, config).map_err(|e| match e {
            DataError::Invalid(m) => DataError::Invalid(format!("dataset `{}`: {m}", dataset.name)),
            e => e,
        })
    }

    /// Reads `train.tsv`, `valid.tsv` and `test.tsv` from `dir` (see [`load_files`](Self::load_files)).
    pub fn load_dir(dir: &Path) -> Result<HoldOut> {
        let [train, valid, test] = HOLDOUT_FILES.map(|f| dir.join(f));
        Self::load_files(&train, &valid, &test)
    }

    /// Reads a pre-split hold-out. Each file: optional `#` comment lines, blank lines ignored,
    /// then one `user<TAB>item` pair per line (any whitespace separates), ids 0-based.
    ///
    /// A comment `# shape U I [nnz N] …` declares the shape: ids must be `< U` / `< I`, and `N`,
    /// when present, must equal the file's row count (catches a truncated file). Files that
    /// declare a shape must agree; without any declaration the shape is `max id + 1`.
    ///
    /// Errors, each naming the file and, where there is one, the 1-based line:
    /// a malformed line or id; an id outside the declared shape; a pair repeated in one file or
    /// in two splits; a valid/test item that has no training interaction (a CF model cannot
    /// learn it); and a user or item of the shape with no training interaction at all.
    pub fn load_files(train: &Path, valid: &Path, test: &Path) -> Result<HoldOut> {
        let files = [train, valid, test].map(|p| read_text(p).and_then(|text| PairFile::parse(p, &text)));
        let [train, valid, test] = files;
        let files = [train?, valid?, test?];
        if files[0].rows.is_empty() {
            return Err(DataError::Empty {
                path: files[0].path.clone(),
            });
        }
        let (n_users, n_items) = resolve_shape(&files)?;

        // Out-of-range ids and repeated pairs, with the first occurrence's place in the message.
        let mut seen: HashMap<(UserId, ItemId), (usize, usize)> = HashMap::new();
        for (f, file) in files.iter().enumerate() {
            for &(u, i, line) in &file.rows {
                if u as usize >= n_users || i as usize >= n_items {
                    let (field, id) = if u as usize >= n_users {
                        ("user", u)
                    } else {
                        ("item", i)
                    };
                    return Err(DataError::parse(
                        &file.path,
                        line,
                        format!("{field} id {id} is outside the shape {n_users} users × {n_items} items"),
                    ));
                }
                if let Some(&(f0, line0)) = seen.get(&(u, i)) {
                    let place = if f0 == f {
                        format!("line {line0}")
                    } else {
                        format!("{}:{line0}", files[f0].path.display())
                    };
                    return Err(DataError::parse(
                        &file.path,
                        line,
                        format!("pair (user {u}, item {i}) repeats {place}"),
                    ));
                }
                seen.insert((u, i), (f, line));
            }
        }

        // Every user and item needs a training interaction; point at the first valid/test line
        // that uses one without it, else name the id and the training file.
        let mut user_trained = vec![false; n_users];
        let mut item_trained = vec![false; n_items];
        for &(u, i, _) in &files[0].rows {
            user_trained[u as usize] = true;
            item_trained[i as usize] = true;
        }
        for file in &files[1..] {
            for &(u, i, line) in &file.rows {
                if !user_trained[u as usize] {
                    return Err(DataError::parse(
                        &file.path,
                        line,
                        format!("user {u} has no training interaction in {}", files[0].path.display()),
                    ));
                }
                if !item_trained[i as usize] {
                    return Err(DataError::parse(
                        &file.path,
                        line,
                        format!(
                            "item {i} never occurs in {}: a model cannot learn an item it never trains on",
                            files[0].path.display()
                        ),
                    ));
                }
            }
        }
        for (kind, trained, n) in [("user", &user_trained, n_users), ("item", &item_trained, n_items)] {
            if let Some(id) = trained.iter().position(|&t| !t) {
                return Err(DataError::format(
                    &files[0].path,
                    format!("{kind} {id} (of {n} in the shape) has no training interaction"),
                ));
            }
        }

        let rows = |f: usize| {
            let pairs: Vec<(UserId, ItemId)> = files[f].rows.iter().map(|&(u, i, _)| (u, i)).collect();
            per_user(n_users, &pairs)
        };
        Ok(HoldOut {
            n_users,
            n_items,
            train: rows(0),
            valid: rows(1),
            test: rows(2),
        })
    }

    /// Writes `train.tsv`, `valid.tsv`, `test.tsv` into `dir` (created if needed), in the format
    /// [`load_dir`](Self::load_dir) reads: a `# shape U I nnz N` line, then sorted pairs.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        for (name, rows) in HOLDOUT_FILES.iter().zip([&self.train, &self.valid, &self.test]) {
            let nnz: usize = rows.iter().map(Vec::len).sum();
            let mut text = format!(
                "# shape {} {} nnz {nnz} (user_id\\titem_id, 0-based, sorted)\n",
                self.n_users, self.n_items
            );
            for (u, items) in rows.iter().enumerate() {
                for i in items {
                    text.push_str(&format!("{u}\t{i}\n"));
                }
            }
            crate::assets::write_atomic(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }

    /// Interaction counts `[train, valid, test]`.
    pub fn interactions(&self) -> [usize; 3] {
        [&self.train, &self.valid, &self.test].map(|rows| rows.iter().map(Vec::len).sum())
    }

    /// Item interaction counts over the training split only (what a popularity model may see).
    pub fn train_item_counts(&self) -> Vec<u32> {
        SequenceDataset::item_counts(self.n_items, &self.train)
    }

    /// Checks the invariants listed in the module docs (for hold-outs built by hand).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Invalid(format!("hold-out: {m}")));
        for (name, rows) in SPLIT_NAMES.iter().zip([&self.train, &self.valid, &self.test]) {
            if rows.len() != self.n_users {
                return bad(format!("{name} has {} rows for {} users", rows.len(), self.n_users));
            }
            for (u, items) in rows.iter().enumerate() {
                if items.windows(2).any(|w| w[0] >= w[1]) {
                    return bad(format!("{name}[{u}] is not sorted ascending without repeats"));
                }
                if let Some(i) = items.iter().find(|&&i| i as usize >= self.n_items) {
                    return bad(format!("{name}[{u}] has item {i} but n_items = {}", self.n_items));
                }
            }
        }
        let mut item_trained = vec![false; self.n_items];
        for (u, items) in self.train.iter().enumerate() {
            if items.is_empty() {
                return bad(format!("user {u} has no training item"));
            }
            for &i in items {
                item_trained[i as usize] = true;
            }
        }
        if let Some(i) = item_trained.iter().position(|&t| !t) {
            return bad(format!("item {i} has no training interaction"));
        }
        for u in 0..self.n_users {
            let (t, v, s) = (&self.train[u], &self.valid[u], &self.test[u]);
            let shared = v.iter().chain(s).find(|i| t.binary_search(i).is_ok());
            let shared = shared.or_else(|| v.iter().find(|i| s.binary_search(i).is_ok()));
            if let Some(i) = shared {
                return bad(format!("user {u} has item {i} in two splits"));
            }
        }
        Ok(())
    }
}

/// Fails on the first user or item without any interaction: no split can train it.
fn check_every_id_occurs(n_users: usize, n_items: usize, pairs: &[(UserId, ItemId)]) -> Result<()> {
    let mut user_seen = vec![false; n_users];
    let mut item_seen = vec![false; n_items];
    for &(u, i) in pairs {
        user_seen[u as usize] = true;
        item_seen[i as usize] = true;
    }
    for (kind, seen) in [("user", &user_seen), ("item", &item_seen)] {
        if let Some(id) = seen.iter().position(|&s| !s) {
            return Err(DataError::Invalid(format!(
                "hold-out split: {kind} {id} has no interaction, so it cannot get a training one (drop it or renumber)"
            )));
        }
    }
    Ok(())
}

/// Groups pairs into per-user rows, each sorted ascending.
fn per_user(n_users: usize, pairs: &[(UserId, ItemId)]) -> Vec<Vec<ItemId>> {
    let mut rows = vec![Vec::new(); n_users];
    for &(u, i) in pairs {
        rows[u as usize].push(i);
    }
    for row in &mut rows {
        row.sort_unstable();
    }
    rows
}

/// One parsed pair file: its `# shape` declaration (users, items, line) and rows (user, item, line).
struct PairFile {
    path: PathBuf,
    shape: Option<(usize, usize, usize)>,
    rows: Vec<(UserId, ItemId, usize)>,
}

impl PairFile {
    fn parse(path: &Path, text: &str) -> Result<PairFile> {
        let mut shape = None;
        let mut nnz = None;
        let mut rows = Vec::new();
        for (line, raw) in lines(text) {
            let l = raw.trim();
            if l.is_empty() {
                continue;
            }
            if let Some(comment) = l.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() != Some("shape") {
                    continue;
                }
                if let Some((_, _, first)) = shape {
                    return Err(DataError::parse(
                        path,
                        line,
                        format!("a second `# shape` comment (the first is on line {first})"),
                    ));
                }
                let mut dim = |name: &str| {
                    words.next().and_then(|w| w.parse::<usize>().ok()).ok_or_else(|| {
                        DataError::parse(
                            path,
                            line,
                            format!("`# shape` needs the {name} count: `# shape USERS ITEMS`"),
                        )
                    })
                };
                shape = Some((dim("user")?, dim("item")?, line));
                if words.next() == Some("nnz") {
                    let n = words.next().and_then(|w| w.parse::<usize>().ok());
                    nnz = Some((
                        n.ok_or_else(|| DataError::parse(path, line, "`nnz` needs a count"))?,
                        line,
                    ));
                }
                continue;
            }
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() != 2 {
                return Err(DataError::parse(
                    path,
                    line,
                    format!("{} fields: expected `user<TAB>item`", fields.len()),
                ));
            }
            let id = |name: &str, s: &str| {
                s.parse::<u32>().map_err(|_| {
                    DataError::parse(path, line, format!("field `{name}`: `{s}` is not a 0-based integer id"))
                })
            };
            rows.push((id("user", fields[0])?, id("item", fields[1])?, line));
        }
        if let Some((n, line)) = nnz {
            if n != rows.len() {
                return Err(DataError::parse(
                    path,
                    line,
                    format!("`# shape` declares nnz {n} but the file has {} rows", rows.len()),
                ));
            }
        }
        Ok(PairFile {
            path: path.to_path_buf(),
            shape,
            rows,
        })
    }
}

/// The shape every declaring file agrees on, or `max id + 1` over all rows when none declares one.
fn resolve_shape(files: &[PairFile; 3]) -> Result<(usize, usize)> {
    let mut declared: Option<(usize, usize, &PairFile)> = None;
    for file in files {
        let Some((u, i, line)) = file.shape else { continue };
        match declared {
            None => declared = Some((u, i, file)),
            Some((u0, i0, first)) if (u0, i0) != (u, i) => {
                return Err(DataError::parse(
                    &file.path,
                    line,
                    format!(
                        "`# shape {u} {i}` disagrees with `# shape {u0} {i0}` in {}",
                        first.path.display()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some((u, i, _)) = declared {
        return Ok((u, i));
    }
    let rows = files.iter().flat_map(|f| &f.rows);
    let n_users = rows.clone().map(|r| r.0 as usize + 1).max().unwrap_or(0);
    let n_items = rows.map(|r| r.1 as usize + 1).max().unwrap_or(0);
    Ok((n_users, n_items))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the three files into a fresh temp dir.
    fn dir_with(train: &str, valid: &str, test: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in HOLDOUT_FILES.iter().zip([train, valid, test]) {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// `GENREC_DATA_DIR` (as CI sets it), else `shared/data` beside the workspace.
    fn shared_data_dir() -> PathBuf {
        match std::env::var_os("GENREC_DATA_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        }
    }

    fn all_pairs(h: &HoldOut) -> Vec<(UserId, ItemId)> {
        let mut pairs: Vec<_> = [&h.train, &h.valid, &h.test]
            .iter()
            .flat_map(|rows| {
                rows.iter()
                    .enumerate()
                    .flat_map(|(u, items)| items.iter().map(move |&i| (u as UserId, i)))
            })
            .collect();
        pairs.sort_unstable();
        pairs
    }

    #[test]
    fn loads_small_files_by_hand() {
        let d = dir_with(
            "# shape 3 4 nnz 4 (user_id\\titem_id)\n0\t2\n0\t0\n1\t1\n2\t3\n",
            "# shape 3 4\n0\t1\n\n",
            "0\t3\n2 2\n",
        );
        let h = HoldOut::load_dir(d.path()).unwrap();
        assert_eq!((h.n_users, h.n_items), (3, 4));
        assert_eq!(h.train, [vec![0, 2], vec![1], vec![3]], "rows sorted ascending");
        assert_eq!(h.valid, [vec![1], vec![], vec![]]);
        assert_eq!(h.test, [vec![3], vec![], vec![2]]);
        assert_eq!(h.interactions(), [4, 1, 2]);
        assert_eq!(h.train_item_counts(), [1, 1, 1, 1]);
        h.validate().unwrap();
    }

    #[test]
    fn shape_is_inferred_without_a_declaration() {
        let d = dir_with("0\t0\n1\t2\n1\t1\n", "", "0\t2\n");
        let h = HoldOut::load_dir(d.path()).unwrap();
        assert_eq!((h.n_users, h.n_items), (2, 3));
    }

    #[test]
    fn bad_files_are_named_with_line() {
        let ok_train = "# shape 2 2\n0\t0\n1\t1\n";
        for (train, valid, test, file, want) in [
            (
                ok_train,
                "0\t1\n1 x\n",
                "",
                "valid.tsv",
                "valid.tsv:2: field `item`: `x` is not",
            ),
            (ok_train, "0\t1\t5\n", "", "valid.tsv", "valid.tsv:1: 3 fields"),
            (ok_train, "", "0\t-1\n", "test.tsv", "test.tsv:1: field `item`: `-1`"),
            (
                ok_train,
                "",
                "2\t0\n",
                "test.tsv",
                "test.tsv:1: user id 2 is outside the shape 2 users × 2 items",
            ),
            (ok_train, "0\t2\n", "", "valid.tsv", "valid.tsv:1: item id 2 is outside"),
            (
                ok_train,
                "# shape 2 3\n",
                "",
                "valid.tsv",
                "valid.tsv:1: `# shape 2 3` disagrees with `# shape 2 2`",
            ),
            (
                "# shape 2 2 nnz 3\n0\t0\n1\t1\n",
                "",
                "",
                "train.tsv",
                "train.tsv:1: `# shape` declares nnz 3 but the file has 2 rows",
            ),
            (
                "# shape x\n0\t0\n",
                "",
                "",
                "train.tsv",
                "train.tsv:1: `# shape` needs the user count",
            ),
            (
                "# shape 2 2\n# shape 2 2\n",
                "",
                "",
                "train.tsv",
                "train.tsv:2: a second `# shape` comment (the first is on line 1)",
            ),
            (ok_train, "", "1\t1\n", "test.tsv", "repeats "),
            (
                "0\t0\n1\t1\n0\t0\n",
                "",
                "",
                "train.tsv",
                "train.tsv:3: pair (user 0, item 0) repeats line 1",
            ),
            (
                "# shape 3 2\n0\t0\n1\t1\n",
                "",
                "2\t0\n",
                "test.tsv",
                "test.tsv:1: user 2 has no training interaction",
            ),
            (
                "# shape 2 3\n0\t0\n1\t1\n",
                "0\t2\n",
                "",
                "valid.tsv",
                "valid.tsv:1: item 2 never occurs in",
            ),
            (
                "# shape 3 2\n0\t0\n1\t1\n",
                "",
                "",
                "train.tsv",
                "train.tsv: user 2 (of 3 in the shape) has no training interaction",
            ),
            (
                "# shape 2 3\n0\t0\n1\t1\n",
                "",
                "",
                "train.tsv",
                "train.tsv: item 2 (of 3 in the shape)",
            ),
            ("# shape 2 2\n", "", "", "train.tsv", "has no data rows"),
        ] {
            let d = dir_with(train, valid, test);
            let e = HoldOut::load_dir(d.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{train:?} {valid:?} {test:?}: {e}");
            assert!(e.contains(&format!("/{file}")), "the error names {file}: {e}");
        }
        // A repeat across files names the other file and its line.
        let d = dir_with(ok_train, "", "1\t1\n");
        let e = HoldOut::load_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("test.tsv:1: pair (user 1, item 1) repeats") && e.contains("train.tsv:3"),
            "{e}"
        );
        let e = HoldOut::load_dir(Path::new("/nope")).unwrap_err().to_string();
        assert!(e.contains("/nope/train.tsv"), "{e}");
    }

    #[test]
    fn rlmrec_amazon_book_counts() {
        // The shared copy must be present: this checks the loader on the real split.
        let dir = shared_data_dir().join("rlmrec/amazon-book");
        assert!(
            dir.join("train.tsv").exists(),
            "{} is missing: set GENREC_DATA_DIR to the folder holding rlmrec/amazon-book",
            dir.display()
        );
        let h = HoldOut::load_dir(&dir).unwrap();
        // shared/data/README.md: 11,000 users × 9,332 items, train 120,464 / valid 40,290 /
        // test 40,106, every user and item with a training interaction.
        assert_eq!((h.n_users, h.n_items), (11_000, 9_332));
        assert_eq!(h.interactions(), [120_464, 40_290, 40_106]);
        h.validate().unwrap();
        let with = |rows: &Vec<Vec<ItemId>>| rows.iter().filter(|r| !r.is_empty()).count();
        println!(
            "rlmrec/amazon-book: {} users × {} items; train/valid/test {:?}; users with valid {} / test {}",
            h.n_users,
            h.n_items,
            h.interactions(),
            with(&h.valid),
            with(&h.test)
        );
        // The first rows as the files show them: `0 0`, `0 1` in train, `0 164` in test.
        assert_eq!(&h.train[0][..2], [0, 1]);
        assert_eq!(h.test[0], [164]);
        assert_eq!(h.valid[1][..2], [164, 495]);
    }

    #[test]
    fn split_sizes_by_hand() {
        // All 100 pairs of 10 users × 10 items.
        // N = 100, ratios 3:1:1 -> valid round(100·1/5) = 20, test 20, train 60. The cover needs
        // at most 10 + 10 = 20 pairs ≤ 60, so the sizes are exact.
        let pairs: Vec<(UserId, ItemId)> = (0..10).flat_map(|u| (0..10).map(move |i| (u, i))).collect();
        let h = HoldOut::split(10, 10, &pairs, &HoldOutConfig::default()).unwrap();
        assert_eq!(h.interactions(), [60, 20, 20]);
        h.validate().unwrap();
        assert_eq!(all_pairs(&h), pairs, "every pair lands in exactly one split");

        // Ratios 1:0:1 -> valid 0, test 50, train 50.
        let c = HoldOutConfig {
            ratios: [1.0, 0.0, 1.0],
            seed: 3,
        };
        assert_eq!(HoldOut::split(10, 10, &pairs, &c).unwrap().interactions(), [50, 0, 50]);
    }

    #[test]
    fn split_cover_wins_over_the_ratio() {
        // A "star": user 0 has items 0..5, users 1..5 have item 0 only — 9 pairs. Users 1..4 and
        // items 1..4 have a single pair each, so those 8 pairs are forced into train. Only (0, 0)
        // can be held out, and only when the shuffle puts it after a pair of user 0 and a pair of
        // item 0. The ratio asks for round(9/5) = 2 valid + 2 test; at most 1 pair is left, and
        // it goes to valid (round(1 · 1/2) = 1, halves round away from zero).
        let mut pairs: Vec<(UserId, ItemId)> = (0..5).map(|i| (0, i)).collect();
        pairs.extend((1..5).map(|u| (u, 0)));
        for seed in 0..20 {
            let h = HoldOut::split(
                5,
                5,
                &pairs,
                &HoldOutConfig {
                    seed,
                    ..Default::default()
                },
            )
            .unwrap();
            h.validate().unwrap();
            let [train, valid, test] = h.interactions();
            assert!(train >= 8 && test == 0, "seed {seed}: {:?}", h.interactions());
            assert_eq!(train + valid, 9);
        }
    }

    #[test]
    fn split_is_seeded_order_free_and_merges_repeats() {
        let d = crate::synthetic::SyntheticConfig {
            users: 200,
            items: 80,
            ..Default::default()
        }
        .generate();
        let c = HoldOutConfig {
            seed: 7,
            ..Default::default()
        };
        let a = HoldOut::from_dataset(&d, &c).unwrap();
        a.validate().unwrap();
        assert_eq!(a, HoldOut::from_dataset(&d, &c).unwrap());
        let other = HoldOut::from_dataset(&d, &HoldOutConfig { seed: 8, ..c.clone() }).unwrap();
        assert_ne!(a.test, other.test, "another seed gives another split");

        // The same pairs reversed and with repeats give the same split.
        let mut pairs = all_pairs(&a);
        let distinct = pairs.len();
        pairs.extend(pairs.clone());
        pairs.reverse();
        assert_eq!(HoldOut::split(a.n_users, a.n_items, &pairs, &c).unwrap(), a);

        // 3:1:1 of the distinct pairs, to the rounding.
        let [_, valid, test] = a.interactions();
        let fifth = (distinct as f64 / 5.0).round() as usize;
        assert_eq!((valid, test), (fifth, fifth));
    }

    #[test]
    fn split_errors_name_the_field() {
        let pairs = [(0, 0), (1, 1)];
        for (ratios, want) in [
            ([0.0, 1.0, 1.0], "holdout.ratios: the train ratio must be > 0"),
            ([3.0, -1.0, 1.0], "the valid ratio -1 must be"),
            ([3.0, 1.0, f64::NAN], "the test ratio NaN must be"),
        ] {
            let e = HoldOut::split(2, 2, &pairs, &HoldOutConfig { ratios, seed: 0 })
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        let e = HoldOut::split(3, 2, &pairs, &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("user 2 has no interaction"), "{e}");
        let e = HoldOut::split(2, 2, &[(0, 2)], &Default::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pair (user 0, item 2) is outside 2 users × 2 items"), "{e}");
    }

    #[test]
    fn write_then_load_round_trips() {
        let pairs: Vec<(UserId, ItemId)> = (0..6).flat_map(|u| (0..5).map(move |i| (u, (u + i) % 7))).collect();
        let h = HoldOut::split(6, 7, &pairs, &HoldOutConfig::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        h.write_dir(dir.path()).unwrap();
        assert_eq!(HoldOut::load_dir(dir.path()).unwrap(), h);
        let head = std::fs::read_to_string(dir.path().join("test.tsv")).unwrap();
        assert!(
            head.starts_with(&format!("# shape 6 7 nnz {} ", h.interactions()[2])),
            "{head}"
        );
    }
}
