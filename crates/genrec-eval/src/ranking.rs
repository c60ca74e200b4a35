//! Ranking primitives. Ranks are 1-based; `None` means "not ranked" (rank ∞): the user counts in
//! every mean with zero.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use genrec_data::ItemId;

/// Pessimistic rank of `target` among `scores`: `#{j : s_j ≥ s_target}` over items not in
/// `excluded` (so a constant scorer ranks every target last). `None` when the target is excluded,
/// out of range, or its score is NaN. NaN scores of other items never outrank the target.
pub fn pessimistic_rank(scores: &[f32], target: ItemId, excluded: &[ItemId]) -> Option<usize> {
    let t = target as usize;
    let st = *scores.get(t)?;
    if st.is_nan() || excluded.contains(&target) {
        return None;
    }
    let mut rank = scores.iter().filter(|&&s| s >= st).count();
    // Excluded items with s ≥ s_t were counted above; take them back out (each once).
    let mut seen: HashSet<ItemId> = HashSet::new();
    for &e in excluded {
        if seen.insert(e) && scores.get(e as usize).is_some_and(|&s| s >= st) {
            rank -= 1;
        }
    }
    Some(rank)
}

/// Min-heap entry ordered so the heap's top is the *worst* of the kept items: lower score, and
/// among equal scores the higher id (ties go to the lower id, deterministically).
#[derive(PartialEq)]
struct Entry(f32, ItemId);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reverse on score (min-heap on score), then higher id first out.
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// [`top_k`] of each row of row-major `[users × n_items]` scores (no exclusions): what a
/// scoring model's `Recommender::recommend` returns.
pub fn top_k_rows(scores: &[f32], n_items: usize, k: usize) -> Vec<Vec<ItemId>> {
    scores.chunks(n_items.max(1)).map(|row| top_k(row, k, &[])).collect()
}

/// The `k` best items by score, best first, skipping `excluded` ids and NaN scores; ties are
/// broken by the lower id. O(n log k): a bounded heap, never a sort of all items.
pub fn top_k(scores: &[f32], k: usize, excluded: &[ItemId]) -> Vec<ItemId> {
    if k == 0 {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            continue;
        }
        if heap.len() == k {
            let worst = heap.peek().unwrap();
            // Skip anything not strictly better than the current worst (equal score, higher id loses).
            if s < worst.0 || (s == worst.0 && i as ItemId > worst.1) {
                continue;
            }
        }
        if excluded.contains(&(i as ItemId)) {
            continue;
        }
        heap.push(Entry(s, i as ItemId));
        if heap.len() > k {
            heap.pop();
        }
    }
    let mut out: Vec<Entry> = heap.into_vec();
    out.sort();
    out.into_iter().map(|e| e.1).collect()
}

/// Pessimistic rank of `target` among itself and the sampled `negatives` (1 + N evaluation).
pub fn sampled_rank(scores: &[f32], target: ItemId, negatives: &[ItemId]) -> Option<usize> {
    let st = *scores.get(target as usize)?;
    if st.is_nan() {
        return None;
    }
    Some(
        1 + negatives
            .iter()
            .filter(|&&j| scores.get(j as usize).is_some_and(|&s| s >= st))
            .count(),
    )
}

/// Full ranking of a batch: for each row of a row-major `[targets.len() × n_items]` score matrix,
/// the pessimistic rank of that row's target and its top-`k` list. Rows run in parallel (rayon).
pub fn rank_and_top_k(
    scores: &[f32],
    n_items: usize,
    targets: &[ItemId],
    k: usize,
) -> Vec<(Option<usize>, Vec<ItemId>)> {
    use rayon::prelude::*;
    assert_eq!(
        scores.len(),
        targets.len() * n_items,
        "scores must be [targets × n_items]"
    );
    scores
        .par_chunks(n_items)
        .zip(targets.par_iter())
        .map(|(row, &t)| (pessimistic_rank(row, t, &[]), top_k(row, k, &[])))
        .collect()
}

/// Positions of the relevant items in one generated list, and its invalid entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPositions {
    /// 1-based positions among valid, first-occurrence, non-excluded entries, ascending.
    pub positions: Vec<usize>,
    /// `invalid_prefix[p]` = number of invalid ids among the first `p + 1` raw entries.
    pub invalid_prefix: Vec<usize>,
    pub duplicates: usize,
}

impl ListPositions {
    /// Position of the first relevant item (the rank of a single target), if listed.
    pub fn rank(&self) -> Option<usize> {
        self.positions.first().copied()
    }

    /// Invalid ids among the first `k` raw entries (a list shorter than `k` counts what it has).
    pub fn invalid_at(&self, k: usize) -> usize {
        match self.invalid_prefix.len() {
            0 => 0,
            n => self.invalid_prefix[k.min(n) - 1],
        }
    }
}

/// Positions of the `relevant` items inside a generated list: ids `≥ n_items` (or negative, given
/// as `None`) are invalid and removed, repeated ids keep only their first occurrence, `excluded`
/// ids are removed; nothing is backfilled, so removed entries can only hurt the model. Ties cannot
/// occur in a list.
pub fn positions_in_list(
    list: &[Option<ItemId>],
    relevant: &[ItemId],
    n_items: Option<usize>,
    excluded: &[ItemId],
) -> ListPositions {
    let mut seen = HashSet::new();
    let mut position = 0;
    let mut positions = Vec::new();
    let mut invalid = 0;
    let mut invalid_prefix = Vec::with_capacity(list.len());
    let mut duplicates = 0;
    for &entry in list {
        match entry {
            Some(id) if n_items.is_none_or(|n| (id as usize) < n) => {
                if !seen.insert(id) {
                    duplicates += 1;
                } else if !excluded.contains(&id) {
                    position += 1;
                    if relevant.contains(&id) {
                        positions.push(position);
                    }
                }
            }
            _ => invalid += 1,
        }
        invalid_prefix.push(invalid);
    }
    ListPositions {
        positions,
        invalid_prefix,
        duplicates,
    }
}

/// Ranks one `target` inside a generated list ([`positions_in_list`] with one relevant item).
pub fn rank_in_list(
    list: &[Option<ItemId>],
    target: ItemId,
    n_items: Option<usize>,
    excluded: &[ItemId],
) -> ListPositions {
    positions_in_list(list, &[target], n_items, excluded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_case_3_constant_scores_rank_last() {
        let scores = vec![0.5f32; 100];
        assert_eq!(pessimistic_rank(&scores, 42, &[]), Some(100));
    }

    #[test]
    fn pessimistic_ties_by_hand() {
        //             0    1    2    3    4
        let s = [0.9f32, 0.5, 0.5, 0.1, 0.5];
        assert_eq!(pessimistic_rank(&s, 0, &[]), Some(1));
        assert_eq!(pessimistic_rank(&s, 2, &[]), Some(4)); // 0.9 and three 0.5s
        assert_eq!(pessimistic_rank(&s, 3, &[]), Some(5));
        assert_eq!(pessimistic_rank(&s, 2, &[0, 1, 1]), Some(2)); // duplicates in exclusion count once
        assert_eq!(pessimistic_rank(&s, 2, &[2]), None);
        assert_eq!(pessimistic_rank(&s, 9, &[]), None);
        assert_eq!(pessimistic_rank(&[f32::NAN, 0.1], 1, &[]), Some(1));
        assert_eq!(pessimistic_rank(&[f32::NAN, 0.1], 0, &[]), None);
    }

    #[test]
    fn top_k_matches_full_sort() {
        let s = [0.3f32, 0.9, 0.3, f32::NAN, 0.7, 0.3, 0.1];
        assert_eq!(top_k(&s, 3, &[]), [1, 4, 0]);
        assert_eq!(top_k(&s, 4, &[]), [1, 4, 0, 2]);
        assert_eq!(top_k(&s, 3, &[1]), [4, 0, 2]);
        assert_eq!(top_k(&s, 10, &[]), [1, 4, 0, 2, 5, 6]);
        let two_users = [0.1f32, 0.9, 0.5, 0.7, 0.2, 0.3];
        assert_eq!(top_k_rows(&two_users, 3, 2), [vec![1, 2], vec![0, 2]]);
        assert!(top_k(&s, 0, &[]).is_empty());
        // Against a full sort on pseudo-random data with many ties.
        let mut x = 12345u64;
        let scores: Vec<f32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 50) as f32
            })
            .collect();
        let mut idx: Vec<u32> = (0..5000).collect();
        idx.sort_by(|&a, &b| scores[b as usize].total_cmp(&scores[a as usize]).then(a.cmp(&b)));
        assert_eq!(top_k(&scores, 37, &[]), idx[..37]);
    }

    #[test]
    fn lists_design_cases() {
        let (a, t, b) = (Some(0), Some(1), Some(2));
        assert_eq!(rank_in_list(&[a, t, b], 1, Some(10), &[]).rank(), Some(2));
        assert_eq!(rank_in_list(&[a, b], 1, Some(10), &[]).rank(), None);
        // Case 4: [invalid, t] with invalid removed -> r = 1.
        let r = rank_in_list(&[Some(99), t], 1, Some(10), &[]);
        assert_eq!(r.rank(), Some(1));
        assert_eq!(r.invalid_at(1), 1);
        assert_eq!(r.invalid_at(10), 1);
        // Negative ids (None) are invalid; duplicates keep the first occurrence; exclusion removes.
        let r = rank_in_list(&[None, a, a, b, t], 1, Some(10), &[2]);
        assert_eq!(r.rank(), Some(2));
        assert_eq!(r.duplicates, 1);
        assert_eq!(rank_in_list(&[t], 1, Some(10), &[1]).rank(), None);
    }

    #[test]
    fn batch_ranking_matches_rows() {
        // The anchor's hand example: scores .9 .5 .5 .5 .1 .7, targets 2, 0, 4 -> ranks 5, 1, 6.
        let row = [0.9f32, 0.5, 0.5, 0.5, 0.1, 0.7];
        let scores = row.repeat(3);
        let out = rank_and_top_k(&scores, 6, &[2, 0, 4], 2);
        let ranks: Vec<_> = out.iter().map(|o| o.0).collect();
        assert_eq!(ranks, [Some(5), Some(1), Some(6)]);
        assert_eq!(out[0].1, [0, 5]);
    }

    #[test]
    fn sampled_by_hand() {
        let s = [0.2f32, 0.5, 0.5, 0.9];
        assert_eq!(sampled_rank(&s, 1, &[0, 2]), Some(2));
        assert_eq!(sampled_rank(&s, 1, &[0]), Some(1));
        assert_eq!(sampled_rank(&s, 1, &[3, 2, 0]), Some(3));
    }
}
