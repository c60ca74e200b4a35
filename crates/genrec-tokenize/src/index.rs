//! [`ItemIndex`]: every item's code tuple, the reverse lookup, a prefix trie for constrained
//! decoding, statistics, and JSON save/load; plus [`TokenLayout`], the one function that maps
//! (level, code) to a vocabulary token.

use crate::TokenizeError;
use std::collections::HashMap;
use std::path::Path;

use genrec_data::ItemId;
use serde::{Deserialize, Serialize};

/// Items → code tuples (possibly of different lengths, as collaborative indexing gives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemIndex {
    /// How it was built, e.g. `rqkmeans+dedup`.
    pub method: String,
    /// Codes per level (`codebook_sizes[l]` bounds every code at level `l`).
    pub codebook_sizes: Vec<u32>,
    /// `codes[item]` = the item's tuple.
    pub codes: Vec<Vec<u32>>,
    /// The digits are unordered (product quantisation, one per independent sub-space): a model
    /// may predict them in parallel; no digit refines another. The trie is still valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unordered: bool,
    #[serde(skip)]
    lookup: HashMap<Vec<u32>, ItemId>,
    #[serde(skip)]
    trie: Trie,
}

/// Collision and usage statistics of an index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStats {
    pub items: usize,
    pub levels: usize,
    pub codebook_sizes: Vec<u32>,
    pub mean_code_length: f64,
    /// Share of items whose full tuple is shared with another item.
    pub collision_rate: f64,
    /// Largest number of items sharing one tuple.
    pub max_collision_group: usize,
    /// Per level: share of the level's codes used by at least one item.
    pub usage: Vec<f64>,
    /// Per level: entropy of the code distribution in bits (uniform over `K` codes = log2 K).
    pub entropy_bits: Vec<f64>,
}

impl ItemIndex {
    /// Builds the lookup and trie. Fails when a code exceeds its level's codebook, or when the
    /// index is not conflict-free (two items with one tuple, or one tuple a prefix of another):
    /// a generative model could not tell those items apart. Use [`ItemIndex::stats_of`] to
    /// inspect a colliding assignment.
    pub fn new(
        method: impl Into<String>,
        codebook_sizes: Vec<u32>,
        codes: Vec<Vec<u32>>,
    ) -> Result<Self, TokenizeError> {
        check_ranges(&codebook_sizes, &codes)?;
        let mut lookup = HashMap::with_capacity(codes.len());
        for (item, c) in codes.iter().enumerate() {
            if let Some(other) = lookup.insert(c.clone(), item as ItemId) {
                return Err(TokenizeError::Index(format!(
                    "items {other} and {item} share the code {c:?}: the index has collisions"
                )));
            }
        }
        let trie = Trie::build(&codes)?;
        Ok(ItemIndex {
            method: method.into(),
            codebook_sizes,
            codes,
            unordered: false,
            lookup,
            trie,
        })
    }

    /// Marks the digits unordered (see [`ItemIndex::unordered`]).
    pub fn with_unordered(mut self, unordered: bool) -> Self {
        self.unordered = unordered;
        self
    }

    pub fn n_items(&self) -> usize {
        self.codes.len()
    }

    /// Longest tuple.
    pub fn levels(&self) -> usize {
        self.codes.iter().map(Vec::len).max().unwrap_or(0)
    }

    pub fn codes(&self, item: ItemId) -> &[u32] {
        &self.codes[item as usize]
    }

    /// The item with exactly this tuple.
    pub fn item(&self, codes: &[u32]) -> Option<ItemId> {
        self.lookup.get(codes).copied()
    }

    pub fn trie(&self) -> &Trie {
        &self.trie
    }

    pub fn stats(&self) -> IndexStats {
        Self::stats_of(&self.codebook_sizes, &self.codes)
    }

    /// Statistics of any assignment, colliding or not.
    pub fn stats_of(codebook_sizes: &[u32], codes: &[Vec<u32>]) -> IndexStats {
        let n = codes.len();
        let mut groups: HashMap<&[u32], usize> = HashMap::new();
        for c in codes {
            *groups.entry(c.as_slice()).or_default() += 1;
        }
        let colliding: usize = groups.values().filter(|&&g| g > 1).sum();
        let levels = codes.iter().map(Vec::len).max().unwrap_or(0);
        let mut usage = Vec::with_capacity(levels);
        let mut entropy = Vec::with_capacity(levels);
        for l in 0..levels {
            let k = codebook_sizes.get(l).copied().unwrap_or(0) as usize;
            let mut counts = vec![0usize; k.max(1)];
            let mut total = 0usize;
            for c in codes.iter().filter_map(|c| c.get(l)) {
                if (*c as usize) < counts.len() {
                    counts[*c as usize] += 1;
                    total += 1;
                }
            }
            usage.push(counts.iter().filter(|&&x| x > 0).count() as f64 / k.max(1) as f64);
            entropy.push(
                counts
                    .iter()
                    .filter(|&&x| x > 0)
                    .map(|&x| {
                        let p = x as f64 / total as f64;
                        -p * p.log2()
                    })
                    .sum(),
            );
        }
        IndexStats {
            items: n,
            levels,
            codebook_sizes: codebook_sizes.to_vec(),
            mean_code_length: codes.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1) as f64,
            collision_rate: colliding as f64 / n.max(1) as f64,
            max_collision_group: groups.values().copied().max().unwrap_or(0),
            usage,
            entropy_bits: entropy,
        }
    }

    /// Writes `index.json` (method, codebook sizes, codes) atomically.
    pub fn save(&self, path: &Path) -> Result<(), TokenizeError> {
        let file = |message: String| TokenizeError::File {
            path: path.to_path_buf(),
            message,
        };
        let json = serde_json::to_vec(self).map_err(|e| file(e.to_string()))?;
        genrec_data::assets::write_atomic(path, &json).map_err(|e| file(e.to_string()))
    }

    /// Reads and re-validates an `index.json`.
    pub fn load(path: &Path) -> Result<Self, TokenizeError> {
        let file = |message: String| TokenizeError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
        let raw: ItemIndex = serde_json::from_str(&text).map_err(|e| file(e.to_string()))?;
        let index = ItemIndex::new(raw.method, raw.codebook_sizes, raw.codes).map_err(|e| file(e.to_string()))?;
        Ok(index.with_unordered(raw.unordered))
    }
}

fn check_ranges(codebook_sizes: &[u32], codes: &[Vec<u32>]) -> Result<(), TokenizeError> {
    for (item, c) in codes.iter().enumerate() {
        if c.is_empty() {
            return Err(TokenizeError::Index(format!("item {item} has an empty code")));
        }
        if c.len() > codebook_sizes.len() {
            return Err(TokenizeError::Index(format!(
                "item {item} has {} codes but only {} levels have a codebook size",
                c.len(),
                codebook_sizes.len()
            )));
        }
        for (l, (&code, &k)) in c.iter().zip(codebook_sizes).enumerate() {
            if code >= k {
                return Err(TokenizeError::Index(format!(
                    "item {item}: code {code} at level {l} is outside its codebook of {k}"
                )));
            }
        }
    }
    Ok(())
}

/// A prefix trie over the index's tuples in flat arrays. A node's allowed next codes are one
/// contiguous sorted slice (`allowed`, O(1)); stepping to a child is a binary search in that
/// slice (O(log branching), at most 8 comparisons for 256 codes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trie {
    /// Per node: start and length of its children in `edges`, and the item that ends here.
    nodes: Vec<(u32, u32, Option<ItemId>)>,
    /// Children codes, grouped by parent, sorted within a group.
    edge_codes: Vec<u32>,
    /// Child node of each edge.
    edge_nodes: Vec<u32>,
}

impl Trie {
    /// The root node.
    pub const ROOT: u32 = 0;

    /// Fails if a tuple is a prefix of another (or repeated): decoding could not tell where an
    /// item ends.
    pub fn build(codes: &[Vec<u32>]) -> Result<Self, TokenizeError> {
        // Sorting the tuples makes every node's children contiguous and sorted: a breadth-first
        // layout over the sorted list.
        let mut order: Vec<usize> = (0..codes.len()).collect();
        order.sort_by(|&a, &b| codes[a].cmp(&codes[b]));
        for w in order.windows(2) {
            let (a, b) = (&codes[w[0]], &codes[w[1]]);
            if b.starts_with(a) {
                return Err(TokenizeError::Index(format!(
                    "the code {a:?} of item {} is a prefix of (or equal to) the code {b:?} of item {}",
                    w[0], w[1]
                )));
            }
        }
        let mut trie = Trie {
            nodes: vec![(0, 0, None)],
            ..Trie::default()
        };
        // Level by level: each frontier entry is (node, range of `order` below it).
        let mut frontier = vec![(0u32, 0usize, order.len(), 0usize)];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for (node, lo, hi, depth) in frontier {
                let start = trie.edge_codes.len() as u32;
                let mut i = lo;
                while i < hi {
                    let code = codes[order[i]][depth];
                    let mut j = i;
                    while j < hi && codes[order[j]][depth] == code {
                        j += 1;
                    }
                    let child = trie.nodes.len() as u32;
                    // A one-item group whose tuple ends here is a leaf.
                    let ends = (j - i == 1 && codes[order[i]].len() == depth + 1).then_some(order[i] as ItemId);
                    trie.nodes.push((0, 0, ends));
                    trie.edge_codes.push(code);
                    trie.edge_nodes.push(child);
                    if ends.is_none() {
                        next.push((child, i, j, depth + 1));
                    }
                    i = j;
                }
                let len = trie.edge_codes.len() as u32 - start;
                trie.nodes[node as usize].0 = start;
                trie.nodes[node as usize].1 = len;
            }
            frontier = next;
        }
        Ok(trie)
    }

    /// Sorted codes that may follow `node`.
    pub fn allowed(&self, node: u32) -> &[u32] {
        let (start, len, _) = self.nodes[node as usize];
        &self.edge_codes[start as usize..(start + len) as usize]
    }

    /// The node after `code`, or `None` if no indexed tuple continues that way.
    pub fn step(&self, node: u32, code: u32) -> Option<u32> {
        let (start, _, _) = self.nodes[node as usize];
        let at = self.allowed(node).binary_search(&code).ok()?;
        Some(self.edge_nodes[start as usize + at])
    }

    /// The item whose tuple ends at `node`.
    pub fn item_at(&self, node: u32) -> Option<ItemId> {
        self.nodes[node as usize].2
    }

    /// Walks a whole tuple from the root.
    pub fn lookup(&self, codes: &[u32]) -> Option<ItemId> {
        let mut node = Self::ROOT;
        for &c in codes {
            node = self.step(node, c)?;
        }
        self.item_at(node)
    }

    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }
}

/// The trie as the shared decoder's constraint: a tuple ends at a leaf (an item).
impl genrec_decode::PrefixTree for Trie {
    fn root(&self) -> u32 {
        Self::ROOT
    }

    fn children(&self, node: u32) -> &[u32] {
        self.allowed(node)
    }

    fn child(&self, node: u32, token: u32) -> Option<u32> {
        self.step(node, token)
    }

    fn is_leaf(&self, node: u32) -> bool {
        self.item_at(node).is_some()
    }
}

/// The vocabulary of code tokens: special tokens first, then level 0's codes, level 1's, …
/// (`token = SPECIAL + offset(level) + code`), so levels never share a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLayout {
    offsets: Vec<u32>,
    vocab: u32,
}

impl TokenLayout {
    pub const PAD: u32 = 0;
    pub const BOS: u32 = 1;
    pub const EOS: u32 = 2;
    pub const SEP: u32 = 3;
    /// Number of special tokens before the first code token.
    pub const SPECIAL: u32 = 4;

    pub fn new(codebook_sizes: &[u32]) -> Self {
        let mut offsets = Vec::with_capacity(codebook_sizes.len());
        let mut next = Self::SPECIAL;
        for &k in codebook_sizes {
            offsets.push(next);
            next += k;
        }
        TokenLayout { offsets, vocab: next }
    }

    /// Total vocabulary size (specials + all codebooks).
    pub fn vocab_size(&self) -> u32 {
        self.vocab
    }

    pub fn token(&self, level: usize, code: u32) -> u32 {
        self.offsets[level] + code
    }

    /// `(level, code)` of a code token; `None` for special tokens.
    pub fn code(&self, token: u32) -> Option<(usize, u32)> {
        if token < Self::SPECIAL || token >= self.vocab {
            return None;
        }
        let level = self.offsets.partition_point(|&o| o <= token) - 1;
        Some((level, token - self.offsets[level]))
    }

    /// The tokens of an item's tuple.
    pub fn tokens(&self, codes: &[u32]) -> Vec<u32> {
        codes.iter().enumerate().map(|(l, &c)| self.token(l, c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_accepts_exactly_the_indexed_tuples() {
        let codes = vec![vec![1, 0, 2], vec![1, 0, 0], vec![0, 3], vec![2, 1, 1], vec![1, 2]];
        let index = ItemIndex::new("t", vec![3, 4, 3], codes.clone()).unwrap();
        let trie = index.trie();
        assert_eq!(trie.allowed(Trie::ROOT), [0, 1, 2]);
        let n1 = trie.step(Trie::ROOT, 1).unwrap();
        assert_eq!(trie.allowed(n1), [0, 2]);
        assert_eq!(trie.step(Trie::ROOT, 3), None);
        for (item, c) in codes.iter().enumerate() {
            assert_eq!(trie.lookup(c), Some(item as ItemId));
            assert_eq!(index.item(c), Some(item as ItemId));
        }
        // Every tuple of up to 3 levels over these codebooks: accepted iff indexed.
        for a in 0..3 {
            for b in 0..4 {
                assert_eq!(
                    trie.lookup(&[a, b]),
                    codes.iter().position(|c| c[..] == [a, b]).map(|i| i as u32)
                );
                for c in 0..3 {
                    let want = codes.iter().position(|x| x[..] == [a, b, c]).map(|i| i as u32);
                    assert_eq!(trie.lookup(&[a, b, c]), want, "{a} {b} {c}");
                }
            }
        }
        // root + 3 first codes + (1,0) + 2 leaves under it + (0,3) + (2,1) + (2,1,1) + (1,2) = 11 nodes.
        assert_eq!(trie.n_nodes(), 11);
    }

    #[test]
    fn conflicts_and_ranges_are_rejected() {
        assert!(ItemIndex::new("t", vec![4, 4], vec![vec![1, 2], vec![1, 2]])
            .unwrap_err()
            .to_string()
            .contains("share the code"));
        assert!(ItemIndex::new("t", vec![4, 4], vec![vec![1], vec![1, 2]])
            .unwrap_err()
            .to_string()
            .contains("prefix"));
        assert!(ItemIndex::new("t", vec![4, 2], vec![vec![1, 2]])
            .unwrap_err()
            .to_string()
            .contains("outside its codebook of 2"));
    }

    #[test]
    fn stats_by_hand_and_json_round_trip() {
        let codes = vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![0, 0]];
        let s = ItemIndex::stats_of(&[2, 4], &codes);
        assert_eq!(s.collision_rate, 0.5);
        assert_eq!(s.max_collision_group, 2);
        // Level 0: codes 0,0,1,0 → both of 2 used, entropy H(3/4, 1/4) = 0.8113 bits.
        assert_eq!(s.usage, [1.0, 0.5]);
        assert!((s.entropy_bits[0] - 0.811_278).abs() < 1e-5);
        let index = ItemIndex::new("t", vec![2, 4], codes[..3].to_vec()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        index.save(&path).unwrap();
        assert_eq!(ItemIndex::load(&path).unwrap(), index);
        std::fs::write(&path, r#"{"method":"t","codebook_sizes":[2],"codes":[[0],[0]]}"#).unwrap();
        assert!(ItemIndex::load(&path).unwrap_err().to_string().contains("index.json"));
    }

    #[test]
    fn token_layout_round_trip() {
        let layout = TokenLayout::new(&[256, 256, 4]);
        assert_eq!(layout.vocab_size(), 4 + 516);
        assert_eq!(layout.token(0, 0), 4);
        assert_eq!(layout.token(1, 5), 4 + 256 + 5);
        assert_eq!(layout.code(4 + 256 + 5), Some((1, 5)));
        assert_eq!(layout.code(4 + 512 + 3), Some((2, 3)));
        assert_eq!(layout.code(TokenLayout::EOS), None);
        assert_eq!(layout.code(520), None);
        assert_eq!(layout.tokens(&[1, 2, 3]), [5, 262, 519]);
    }
}
