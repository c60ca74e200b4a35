//! Non-semantic indexing baselines of P5 "How to Index Item IDs" (Hua et al., 2023):
//! **sequential** (items numbered in order of first appearance in the training sequences, so
//! items bought together early share leading digits) and **random** (a seeded permutation). The
//! number is written as a fixed-width tuple of base-`b` digits; P5 writes it as text and lets
//! SentencePiece split it, we keep one token per digit so the trie and the models treat every
//! index alike.

use crate::TokenizeError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Digits needed to write `0..n` in base `base` (at least 1).
pub fn width(n: usize, base: u32) -> usize {
    let mut w = 1;
    let mut span = base as usize;
    while span < n {
        span = span.saturating_mul(base as usize);
        w += 1;
    }
    w
}

/// `value` as `width` base-`base` digits, most significant first.
pub fn digits(mut value: usize, base: u32, width: usize) -> Vec<u32> {
    let mut out = vec![0u32; width];
    for d in out.iter_mut().rev() {
        *d = (value % base as usize) as u32;
        value /= base as usize;
    }
    out
}

fn numbered(numbers: &[usize], base: u32) -> Result<(Vec<u32>, Vec<Vec<u32>>), TokenizeError> {
    if base < 2 {
        return Err(TokenizeError::Simple(format!(
            "tokenize.base = {base} must be at least 2"
        )));
    }
    let w = width(numbers.len(), base);
    Ok((vec![base; w], numbers.iter().map(|&v| digits(v, base, w)).collect()))
}

/// Sequential indexing: item numbers by first appearance in `train` (user by user, oldest
/// first); items absent from training follow in id order. Returns codebook sizes and codes.
pub fn sequential(train: &[Vec<u32>], n_items: usize, base: u32) -> Result<(Vec<u32>, Vec<Vec<u32>>), TokenizeError> {
    let mut number = vec![usize::MAX; n_items];
    let mut next = 0;
    for &item in train.iter().flatten() {
        let slot = number.get_mut(item as usize).ok_or_else(|| {
            TokenizeError::Simple(format!("item {item} in the training sequences is outside 0..{n_items}"))
        })?;
        if *slot == usize::MAX {
            *slot = next;
            next += 1;
        }
    }
    for slot in number.iter_mut().filter(|s| **s == usize::MAX) {
        *slot = next;
        next += 1;
    }
    numbered(&number, base)
}

/// Random indexing: a seeded permutation of `0..n_items`.
pub fn random(n_items: usize, base: u32, seed: u64) -> Result<(Vec<u32>, Vec<Vec<u32>>), TokenizeError> {
    let mut number: Vec<usize> = (0..n_items).collect();
    number.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    numbered(&number, base)
}

/// Hybrid indexing (P5 "How to Index", HI): a base index plus one independent token per item as
/// the last level, a codebook of `n_items` codes (the item's own number). The shared prefix keeps
/// the base's grouping (e.g. CID clusters); the last token makes the index conflict-free whatever
/// the base. Tuples shorter than the deepest one (CID's leaves at different depths) are first
/// filled with a reserved code per level (`sizes[l]`, so that level's codebook grows by one), so
/// the item token always sits at the same level and has one token range.
pub fn hybrid(sizes: &[u32], codes: &[Vec<u32>]) -> Result<(Vec<u32>, Vec<Vec<u32>>), TokenizeError> {
    let depth = codes.iter().map(Vec::len).max().unwrap_or(0);
    if sizes.len() < depth {
        return Err(TokenizeError::Simple(format!(
            "{} codebook sizes for tuples of up to {depth} codes",
            sizes.len()
        )));
    }
    let mut out_sizes = sizes[..depth].to_vec();
    for (l, size) in out_sizes.iter_mut().enumerate() {
        if codes.iter().any(|c| c.len() <= l) {
            *size += 1;
        }
    }
    let out_codes = codes
        .iter()
        .enumerate()
        .map(|(item, c)| {
            let mut t = c.clone();
            t.extend((c.len()..depth).map(|l| sizes[l]));
            t.push(item as u32);
            t
        })
        .collect();
    out_sizes.push(codes.len() as u32);
    Ok((out_sizes, out_codes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ItemIndex;

    #[test]
    fn digits_and_widths_by_hand() {
        assert_eq!(width(10, 10), 1);
        assert_eq!(width(11, 10), 2);
        assert_eq!(width(12_101, 256), 2);
        assert_eq!(digits(305, 10, 4), [0, 3, 0, 5]);
        assert_eq!(digits(257, 256, 2), [1, 1]);
    }

    #[test]
    fn sequential_follows_first_appearance() {
        let train = vec![vec![3, 1, 3], vec![0, 1]];
        let (sizes, codes) = sequential(&train, 5, 2).unwrap();
        // Order of first appearance: 3, 1, 0; item 2 and 4 unseen → 3, 4. Width 3 bits for 5 items.
        assert_eq!(sizes, [2, 2, 2]);
        assert_eq!(
            codes,
            [
                vec![0, 1, 0],
                vec![0, 0, 1],
                vec![0, 1, 1],
                vec![0, 0, 0],
                vec![1, 0, 0]
            ]
        );
        assert!(ItemIndex::new("sid", sizes, codes).is_ok());
        assert!(sequential(&[vec![9]], 5, 2)
            .unwrap_err()
            .to_string()
            .contains("outside 0..5"));
        assert!(sequential(&train, 5, 1)
            .unwrap_err()
            .to_string()
            .contains("tokenize.base"));
    }

    #[test]
    fn hybrid_fills_short_tuples_and_appends_the_item_token() {
        // Colliding base codes of different lengths (one is a prefix of another).
        let base = vec![vec![1, 0], vec![1], vec![1, 0]];
        let (sizes, codes) = hybrid(&[4, 3], &base).unwrap();
        assert_eq!(sizes, [4, 4, 3], "level 1 gains the filler code 3; 3 item tokens");
        assert_eq!(codes, [vec![1, 0, 0], vec![1, 3, 1], vec![1, 0, 2]]);
        assert!(ItemIndex::new("hybrid", sizes, codes).is_ok());
        assert!(hybrid(&[4], &base)
            .unwrap_err()
            .to_string()
            .contains("1 codebook sizes"));
    }

    #[test]
    fn random_is_a_seeded_permutation() {
        let (sizes, a) = random(300, 16, 7).unwrap();
        let (_, b) = random(300, 16, 7).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, random(300, 16, 8).unwrap().1);
        assert!(
            ItemIndex::new("random", sizes, a).is_ok(),
            "a permutation never collides"
        );
    }
}
