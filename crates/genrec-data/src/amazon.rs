//! The P5 / S3-Rec Amazon sequence files (`Beauty`, `Toys_and_Games`, `LastFM`): `NAME.txt` has one
//! user per line, `user_id item_id item_id …` in time order, ids from 1; `NAME_item2attributes.json`
//! maps item ids to brand/category attribute ids.
//!
//! These files *are* the reference split of the published tables, so their item ids are kept
//! (file id `k` becomes dense id `k - 1`, in numeric order) rather than shuffled. Those ids were
//! assigned in order of first appearance; use them deliberately (the "sequential indexing"
//! baseline) or renumber.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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

/// One line of `NAME_item_text.jsonl`.
#[derive(serde::Deserialize)]
struct ItemText {
    id: u64,
    title: Option<String>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    categories: Vec<String>,
}

/// Reads `NAME_item_text.jsonl` (`{"id", "asin", "title", "categories", "brand"}` per line, keyed
/// by the file's item id) into text fields keyed by raw item id: `title` (HTML entities
/// unescaped; absent when null or empty), `brand` (when present and not `Unknown`) and
/// `categories` (joined with `, `).
pub fn load_item_text(path: &Path) -> Result<HashMap<String, BTreeMap<String, String>>> {
    let text = read_text(path)?;
    let mut out = HashMap::new();
    for (line, l) in lines(&text) {
        if l.trim().is_empty() {
            continue;
        }
        let row: ItemText = serde_json::from_str(l).map_err(|e| DataError::parse(path, line, e.to_string()))?;
        let mut fields = BTreeMap::new();
        if let Some(title) = row.title.map(|t| unescape_html(t.trim())).filter(|t| !t.is_empty()) {
            fields.insert("title".to_string(), title);
        }
        if let Some(brand) = row.brand.map(|b| unescape_html(b.trim())) {
            if !brand.is_empty() && brand != "Unknown" {
                fields.insert("brand".to_string(), brand);
            }
        }
        if !row.categories.is_empty() {
            let cats: Vec<String> = row.categories.iter().map(|c| unescape_html(c.trim())).collect();
            fields.insert("categories".to_string(), cats.join(", "));
        }
        if out.insert(row.id.to_string(), fields).is_some() {
            return Err(DataError::parse(
                path,
                line,
                format!("item id {} appears twice", row.id),
            ));
        }
    }
    Ok(out)
}

/// Unescapes the HTML entities found in Amazon metadata: the five named XML ones, `&nbsp;` and
/// numeric `&#NN;` / `&#xHH;`. Anything else is kept verbatim.
pub fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Loads `dir/NAME.txt` and, when present, `dir/NAME_item2attributes.json` (attribute ids) and
/// `dir/NAME_item_text.jsonl` (title, brand, categories).
pub fn load_dir(dir: &Path, name: &str) -> Result<SequenceDataset> {
    let mut dataset = load_sequences(&dir.join(format!("{name}.txt")), name)?;
    let attr = dir.join(format!("{name}_item2attributes.json"));
    if attr.exists() {
        dataset.attach_item_info(load_attributes(&attr)?);
    }
    let text = dir.join(format!("{name}_item_text.jsonl"));
    if text.exists() {
        let mut text = load_item_text(&text)?;
        for (token, info) in dataset.item_tokens.iter().zip(dataset.items.iter_mut()) {
            if let Some(fields) = text.remove(token) {
                info.fields.extend(fields);
            }
        }
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
    fn item_text_is_attached_and_unescaped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("T.txt"), "1 1 2 3\n").unwrap();
        std::fs::write(
            dir.path().join("T_item_text.jsonl"),
            "{\"id\": 1, \"asin\": \"A\", \"title\": \"Salt &amp; Pepper &#39;Mill&#x27; &foo;\", \"categories\": [\"Home\", \"Kitchen\"], \"brand\": \"Unknown\"}\n\
             {\"id\": 3, \"asin\": \"C\", \"title\": null, \"categories\": [\"Toys\"], \"brand\": \"Lego\"}\n",
        )
        .unwrap();
        let d = load_dir(dir.path(), "T").unwrap();
        assert_eq!(d.items[0].field("title"), Some("Salt & Pepper 'Mill' &foo;"));
        assert_eq!(d.items[0].field("categories"), Some("Home, Kitchen"));
        assert_eq!(d.items[0].field("brand"), None, "`Unknown` is no brand");
        assert_eq!(d.items[1].field("title"), None);
        assert_eq!(d.items[2].field("title"), None);
        assert_eq!(d.items[2].field("brand"), Some("Lego"));
        std::fs::write(dir.path().join("T_item_text.jsonl"), "{\"id\": 1}\n{\"id\": \"x\"}\n").unwrap();
        let err = load_dir(dir.path(), "T").unwrap_err().to_string();
        assert!(err.contains("T_item_text.jsonl:2"), "{err}");
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
