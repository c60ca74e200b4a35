//! The P5 / S3-Rec Amazon sequence files (`Beauty`, `Toys_and_Games`, `LastFM`): `NAME.txt` has one
//! user per line, `user_id item_id item_id …` in time order, ids from 1; `NAME_item2attributes.json`
//! maps item ids to brand/category attribute ids.
//!
//! These files *are* the reference split of the published tables, so their item ids are kept
//! (file id `k` becomes dense id `k - 1`, in numeric order) rather than shuffled. Those ids were
//! assigned in order of first appearance; use them deliberately (the "sequential indexing"
//! baseline) or renumber.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::error::{lines, read_text};
use crate::{DataError, ItemId, ItemInfo, Result, SequenceDataset};

fn parse_id(path: &Path, line: usize, what: &str, tok: &str) -> Result<u64> {
    match tok.parse::<u64>() {
        Ok(0) => Err(DataError::parse(
            path,
            line,
            format!("{what} `0` is out of range: ids start at 1"),
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(DataError::parse(
            path,
            line,
            format!("{what} `{tok}` is not a positive integer"),
        )),
    }
}

/// Reads `NAME.txt`. Every line needs a user id and at least one item; user ids must be unique.
pub fn load_sequences(path: &Path, name: &str) -> Result<SequenceDataset> {
    let text = read_text(path)?;
    let mut raw: Vec<(String, Vec<u64>)> = Vec::new();
    let mut seen_users = HashSet::new();
    for (line, l) in lines(&text) {
        let mut toks = l.split_whitespace();
        let Some(user) = toks.next() else { continue };
        parse_id(path, line, "user id", user)?;
        if !seen_users.insert(user.to_string()) {
            return Err(DataError::parse(
                path,
                line,
                format!("user `{user}` already had a line"),
            ));
        }
        let items = toks
            .enumerate()
            .map(|(k, t)| parse_id(path, line, &format!("item {} (field {})", t, k + 2), t))
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() {
            return Err(DataError::parse(path, line, format!("user `{user}` has no items")));
        }
        raw.push((user.to_string(), items));
    }
    if raw.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    // Dense ids in numeric order of the file ids: for the dense reference files, id k -> k - 1.
    let ids: BTreeSet<u64> = raw.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let dense: HashMap<u64, ItemId> = ids.iter().enumerate().map(|(i, &k)| (k, i as ItemId)).collect();
    let item_tokens: Vec<String> = ids.iter().map(u64::to_string).collect();
    let (user_tokens, sequences) = raw
        .into_iter()
        .map(|(u, s)| (u, s.iter().map(|k| dense[k]).collect()))
        .unzip();
    let dataset = SequenceDataset {
        name: name.to_string(),
        items: vec![ItemInfo::default(); item_tokens.len()],
        user_tokens,
        item_tokens,
        sequences,
    };
    dataset.validate()?;
    Ok(dataset)
}

/// Reads `NAME_item2attributes.json` (`{"item_id": [attribute_id, …]}`), keyed by raw item id.
pub fn load_attributes(path: &Path) -> Result<HashMap<String, ItemInfo>> {
    let text = read_text(path)?;
    let map: HashMap<String, Vec<u32>> = serde_json::from_str(&text).map_err(|e| {
        DataError::parse(
            path,
            e.line(),
            format!("expected {{\"item_id\": [attribute ids]}}: {e}"),
        )
    })?;
    Ok(map
        .into_iter()
        .map(|(k, attributes)| {
            (
                k,
                ItemInfo {
                    attributes,
                    ..ItemInfo::default()
                },
            )
        })
        .collect())
}

/// Loads `dir/NAME.txt` and, when present, `dir/NAME_item2attributes.json`.
pub fn load_dir(dir: &Path, name: &str) -> Result<SequenceDataset> {
    let mut dataset = load_sequences(&dir.join(format!("{name}.txt")), name)?;
    let attr = dir.join(format!("{name}_item2attributes.json"));
    if attr.exists() {
        dataset.attach_item_info(load_attributes(&attr)?);
    }
    Ok(dataset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sequences_and_keeps_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("T.txt"), "1 1 2 3\n2 2 3\r\n").unwrap();
        std::fs::write(dir.path().join("T_item2attributes.json"), r#"{"1": [4, 5], "3": [6]}"#).unwrap();
        let d = load_dir(dir.path(), "T").unwrap();
        assert_eq!(d.sequences, vec![vec![0, 1, 2], vec![1, 2]]);
        assert_eq!(d.item_tokens, ["1", "2", "3"]);
        assert_eq!(d.items[0].attributes, [4, 5]);
        assert!(d.items[1].attributes.is_empty());
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("B.txt");
        for (text, want) in [
            ("1 1 2\n2 1 x\n", "B.txt:2: item x (field 3)"),
            ("1 1 2\n2 0\n", "B.txt:2: item 0 (field 2) `0` is out of range"),
            ("1 1 2\n1 3\n", "B.txt:2: user `1` already had a line"),
            ("1\n", "B.txt:1: user `1` has no items"),
            ("-1 2\n", "user id `-1` is not a positive integer"),
            ("\n\n", "no data rows"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = load_sequences(&p, "B").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let j = dir.path().join("B_item2attributes.json");
        std::fs::write(&j, "{\"1\": [1,\n \"a\"]}").unwrap();
        let e = load_attributes(&j).unwrap_err().to_string();
        assert!(e.contains("B_item2attributes.json:2"), "{e}");
    }
}
