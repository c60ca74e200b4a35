//! Making an index conflict-free, so a generated tuple names exactly one item.
//!
//! - **Dedup digit** (TIGER, Rajput et al. 2023): append one level that numbers the items sharing
//!   a tuple (0, 1, … in item-id order; items with a unique tuple get 0).
//! - **Uniform semantic mapping** (LC-Rec, Zheng et al. 2024): re-assign the *last* level of the
//!   colliding items with a Sinkhorn–Knopp balanced assignment to that level's codebook, so they
//!   spread over the codes instead of piling onto the nearest one; repeat on whatever still
//!   collides. After `rounds`, any remaining collision is resolved greedily by moving an item to
//!   its nearest last-level code unused within its prefix (LC-Rec's code stops at the round
//!   limit; we finish the job so the index is always conflict-free, and report how many moved).

use crate::TokenizeError;
use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

/// Item ids grouped by identical tuple, only groups of two or more, in order of first item.
pub fn collision_groups(codes: &[Vec<u32>]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<&[u32], Vec<usize>> = BTreeMap::new();
    for (i, c) in codes.iter().enumerate() {
        groups.entry(c.as_slice()).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort_by_key(|g| g[0]);
    out
}

/// Appends the dedup digit; returns the new codes and the extra level's codebook size (the
/// largest group).
pub fn dedup_digit(codes: &[Vec<u32>]) -> (Vec<Vec<u32>>, u32) {
    let mut seen: BTreeMap<&[u32], u32> = BTreeMap::new();
    let out: Vec<Vec<u32>> = codes
        .iter()
        .map(|c| {
            let n = seen.entry(c.as_slice()).or_insert(0);
            let mut t = c.clone();
            t.push(*n);
            *n += 1;
            t
        })
        .collect();
    let size = seen.values().copied().max().unwrap_or(1);
    (out, size)
}

/// Balanced assignment of `n` rows to `k` columns by entropic optimal transport with uniform
/// marginals (Sinkhorn–Knopp on `exp(-cost / epsilon)`, costs scaled to [0, 1]), rounded so that
/// every column receives ⌊n/k⌋ or ⌈n/k⌉ rows: pairs are taken in decreasing plan mass, each
/// column capped at ⌈n/k⌉ until `n mod k` columns have reached it, ⌊n/k⌋ after that.
///
/// `cost` is `n × k`, row-major.
pub fn balanced_assign(cost: &[f32], n: usize, k: usize, epsilon: f64, iterations: usize) -> Vec<u32> {
    assert_eq!(cost.len(), n * k, "cost must be n × k");
    if n == 0 {
        return Vec::new();
    }
    let (lo, hi) = cost
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &c| (a.min(c), b.max(c)));
    let scale = if hi > lo { (hi - lo) as f64 } else { 1.0 };
    // Log-domain Sinkhorn: stable for small epsilon.
    let log_kernel: Vec<f64> = cost.iter().map(|&c| -((c - lo) as f64 / scale) / epsilon).collect();
    let (log_r, log_c) = (-(n as f64).ln(), -(k as f64).ln());
    let mut u = vec![0f64; n];
    let mut v = vec![0f64; k];
    let logsumexp = |xs: &mut dyn Iterator<Item = f64>| {
        let xs: Vec<f64> = xs.collect();
        let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    for _ in 0..iterations.max(1) {
        for i in 0..n {
            u[i] = log_r - logsumexp(&mut (0..k).map(|j| log_kernel[i * k + j] + v[j]));
        }
        for j in 0..k {
            v[j] = log_c - logsumexp(&mut (0..n).map(|i| log_kernel[i * k + j] + u[i]));
        }
    }
    let mut pairs: Vec<(f64, usize, usize)> = (0..n)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .map(|(i, j)| (log_kernel[i * k + j] + u[i] + v[j], i, j))
        .collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let (floor, extra) = (n / k, n % k);
    let mut load = vec![0usize; k];
    let mut full_extra = 0;
    let mut out = vec![u32::MAX; n];
    let mut left = n;
    for (_, i, j) in pairs {
        if out[i] != u32::MAX {
            continue;
        }
        let cap = if full_extra < extra { floor + 1 } else { floor };
        if load[j] >= cap {
            continue;
        }
        out[i] = j as u32;
        load[j] += 1;
        if load[j] == floor + 1 {
            full_extra += 1;
        }
        left -= 1;
        if left == 0 {
            break;
        }
    }
    out
}

/// Settings of the uniform semantic mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkhornConfig {
    /// Entropic regularisation on costs scaled to [0, 1] (default 0.05).
    pub epsilon: f64,
    /// Sinkhorn iterations per round (default 100).
    pub iterations: usize,
    /// Rounds on the still-colliding items before the greedy finish (default 20).
    pub rounds: usize,
}

impl Default for SinkhornConfig {
    fn default() -> Self {
        SinkhornConfig {
            epsilon: 0.05,
            iterations: 100,
            rounds: 20,
        }
    }
}

/// What the mapping did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingReport {
    pub colliding_before: usize,
    pub rounds: usize,
    /// Items still colliding after the Sinkhorn rounds, moved greedily.
    pub greedy_moves: usize,
}

/// Re-assigns the last level of colliding items until the index is conflict-free.
/// `cost(item, code)` = distance of the item's last-level residual to that code's centroid;
/// `k` = the last level's codebook size.
pub fn uniform_semantic_mapping(
    codes: &mut [Vec<u32>],
    k: usize,
    cost: &dyn Fn(usize, u32) -> f32,
    config: &SinkhornConfig,
) -> Result<MappingReport, TokenizeError> {
    let colliding_before = collision_groups(codes).iter().map(Vec::len).sum();
    let mut rounds = 0;
    while rounds < config.rounds {
        let items: Vec<usize> = collision_groups(codes).into_iter().flatten().collect();
        if items.is_empty() {
            break;
        }
        rounds += 1;
        let m = items.len();
        let costs: Vec<f32> = items
            .iter()
            .flat_map(|&i| (0..k as u32).map(move |c| (i, c)))
            .map(|(i, c)| cost(i, c))
            .collect();
        let assigned = balanced_assign(&costs, m, k, config.epsilon, config.iterations);
        for (&i, &c) in items.iter().zip(&assigned) {
            *codes[i].last_mut().expect("non-empty code") = c;
        }
    }
    // Greedy finish: in each remaining group keep the first item; move the others to their
    // nearest last-level code that no item with the same prefix uses.
    let mut greedy_moves = 0;
    for group in collision_groups(codes) {
        let prefix: Vec<u32> = codes[group[0]][..codes[group[0]].len() - 1].to_vec();
        let mut used: HashSet<u32> = codes
            .iter()
            .filter(|c| c[..c.len() - 1] == prefix[..])
            .map(|c| *c.last().unwrap())
            .collect();
        for &i in &group[1..] {
            let best = (0..k as u32)
                .filter(|c| !used.contains(c))
                .min_by(|&a, &b| cost(i, a).total_cmp(&cost(i, b)).then(a.cmp(&b)))
                .ok_or_else(|| {
                    TokenizeError::Sinkhorn(format!(
                        "more than {k} items share the prefix {prefix:?}: the last level cannot separate them; \
                         use the dedup digit or a larger last codebook"
                    ))
                })?;
            *codes[i].last_mut().unwrap() = best;
            used.insert(best);
            greedy_moves += 1;
        }
    }
    Ok(MappingReport {
        colliding_before,
        rounds,
        greedy_moves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dedup_digit_by_hand() {
        let codes = vec![vec![1, 2], vec![0, 0], vec![1, 2], vec![1, 2]];
        let (out, size) = dedup_digit(&codes);
        assert_eq!(out, [vec![1, 2, 0], vec![0, 0, 0], vec![1, 2, 1], vec![1, 2, 2]]);
        assert_eq!(size, 3);
        assert_eq!(collision_groups(&codes), [vec![0, 2, 3]]);
        assert!(collision_groups(&out).is_empty());
    }

    #[test]
    fn sinkhorn_is_balanced_within_one_and_follows_costs() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (n, k) in [(10, 3), (64, 8), (7, 7), (5, 8)] {
            let cost: Vec<f32> = (0..n * k).map(|_| rng.random()).collect();
            let a = balanced_assign(&cost, n, k, 0.05, 200);
            let mut load = vec![0usize; k];
            a.iter().for_each(|&c| load[c as usize] += 1);
            let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            assert!(max - min <= 1, "n {n} k {k}: {load:?}");
            assert_eq!(load.iter().sum::<usize>(), n);
        }
        // Two rows, two columns, each row clearly prefers a different column.
        assert_eq!(balanced_assign(&[0.0, 1.0, 1.0, 0.0], 2, 2, 0.05, 50), [0, 1]);
        // Both prefer column 0: balance forces one to column 1, the one that minds less.
        assert_eq!(balanced_assign(&[0.0, 1.0, 0.0, 0.2], 2, 2, 0.05, 50), [0, 1]);
    }

    #[test]
    fn uniform_mapping_ends_conflict_free() {
        // 40 items over 5 prefixes, last level of 8 codes, everything starting on code 0.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut codes: Vec<Vec<u32>> = (0..40).map(|i| vec![i % 5, 0]).collect();
        let costs: Vec<f32> = (0..40 * 8).map(|_| rng.random()).collect();
        let cost = |i: usize, c: u32| costs[i * 8 + c as usize];
        let report = uniform_semantic_mapping(&mut codes, 8, &cost, &SinkhornConfig::default()).unwrap();
        assert_eq!(report.colliding_before, 40);
        assert!(collision_groups(&codes).is_empty(), "{codes:?}");
        // 9 items on one prefix cannot fit 8 codes.
        let mut crowded: Vec<Vec<u32>> = (0..9).map(|_| vec![0, 0]).collect();
        let err = uniform_semantic_mapping(&mut crowded, 8, &cost, &SinkhornConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 8 items share the prefix [0]"), "{err}");
    }
}
