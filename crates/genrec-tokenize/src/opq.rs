//! Product-quantised semantic IDs (RPG, Hou et al., KDD 2025): optional PCA (with whitening) of
//! the item vectors, then OPQ (Ge et al., CVPR 2013) — a rotation learned by alternating PQ
//! k-means with an orthogonal Procrustes step — and PQ with `m` sub-spaces × `k` codes. Every item
//! gets `m` digits, one per sub-space; the digits are unordered (each sub-space is independent),
//! so a model may predict them in parallel.
//!
//! The transform and codebooks are fitted on the items that occur in training sequences only, then
//! every item is encoded (the reference fits its PCA on all items and only OPQ on training items;
//! here nothing sees an item that occurs only in validation or test). The per-sub-space usage
//! report is taken before collisions are separated. Two items with the same `m` digits are separated by moving the later
//! one's digit in the sub-space where its next-nearest code costs the least extra distortion (and
//! is free), so the index stays `m` digits long.

use std::collections::HashSet;

use serde::Serialize;

use crate::kmeans::{kmeans, lloyd, nearest};
use crate::linalg::{gram, matmul, polar, symmetric_eigen};
use crate::rq::{level_report, LevelReport};
use crate::TokenizeError;

/// PQ / OPQ settings (the `[index]` fields `pq_subspaces`, `codes`, `pca_dim`, `whiten`,
/// `opq_iterations`).
#[derive(Debug, Clone, PartialEq)]
pub struct OpqConfig {
    /// Sub-spaces `m` = digits per item; must divide the (PCA) dimension.
    pub subspaces: usize,
    /// Codes per sub-space `k`.
    pub codes: usize,
    /// PCA to this many dimensions first; 0 keeps the input dimension (no PCA).
    pub pca_dim: usize,
    /// Whiten after PCA (unit variance per component).
    pub whiten: bool,
    /// OPQ iterations (rotation ↔ codebooks); 0 is plain PQ.
    pub iterations: usize,
    /// Lloyd iterations per sub-space codebook in each OPQ iteration.
    pub kmeans_iterations: usize,
    /// Lloyd iterations of the first codebooks (from k-means++) and of the final ones: a rotation
    /// fitted to a half-converged first partition tends to lock it in.
    pub full_kmeans_iterations: usize,
}

impl Default for OpqConfig {
    fn default() -> Self {
        OpqConfig {
            subspaces: 32,
            codes: 256,
            pca_dim: 0,
            whiten: false,
            iterations: 20,
            kmeans_iterations: 4,
            full_kmeans_iterations: 25,
        }
    }
}

/// What an OPQ fit reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpqReport {
    /// Items the transform and codebooks were fitted on.
    pub fit_items: usize,
    /// Dimension quantised (after PCA).
    pub dim: usize,
    /// PCA: share of the input variance the kept components explain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_variance: Option<f64>,
    /// Mean squared quantisation error per fitted item (in the quantised space) after each OPQ
    /// iteration; falls as the rotation balances the sub-spaces.
    pub opq_mse: Vec<f64>,
    /// Mean squared quantisation error per fitted item of the final codes.
    pub quantisation_mse: f64,
    /// Items whose digits were moved to separate them from an item with the same digits.
    pub separated: usize,
}

/// A fit: every item's `m` digits, a report per sub-space (its quantisation error as
/// `residual_mse`, usage, perplexity) and the overall report.
#[derive(Debug, Clone, PartialEq)]
pub struct OpqFit {
    pub codes: Vec<Vec<u32>>,
    pub subspaces: Vec<LevelReport>,
    pub report: OpqReport,
}

impl OpqConfig {
    /// The checks that need only the input dimension.
    pub fn validate(&self, input_dim: usize) -> Result<usize, TokenizeError> {
        let config = |field, message: String| Err(TokenizeError::config(field, message));
        if self.subspaces == 0 {
            return config("index.pq_subspaces", "must be positive".into());
        }
        if self.codes < 2 {
            return config("index.codes", format!("= {} must be ≥ 2", self.codes));
        }
        if self.pca_dim > input_dim {
            return config(
                "index.pca_dim",
                format!("= {} exceeds the item vectors' dimension {input_dim}", self.pca_dim),
            );
        }
        let dim = if self.pca_dim == 0 { input_dim } else { self.pca_dim };
        if !dim.is_multiple_of(self.subspaces) {
            return config(
                "index.pq_subspaces",
                format!(
                    "= {} does not divide the {} dimension {dim}",
                    self.subspaces,
                    if self.pca_dim == 0 { "item vectors'" } else { "PCA" }
                ),
            );
        }
        Ok(dim)
    }
}

/// Fits (O)PQ on rows `fit_rows` of `data` (`n × dim`, row-major) and encodes every row.
pub fn fit_opq(
    data: &[f32],
    dim: usize,
    fit_rows: &[usize],
    config: &OpqConfig,
    seed: u64,
) -> Result<OpqFit, TokenizeError> {
    let d = config.validate(dim)?;
    let n = data.len() / dim.max(1);
    if dim == 0 || data.len() != n * dim {
        return Err(TokenizeError::FeatureRows { rows: n, items: n });
    }
    if fit_rows.len() < config.codes {
        return Err(TokenizeError::Fit {
            method: "opq",
            message: format!(
                "{} items to fit {} codes per sub-space: lower index.codes",
                fit_rows.len(),
                config.codes
            ),
        });
    }
    if let Some(&bad) = fit_rows.iter().find(|&&r| r >= n) {
        return Err(TokenizeError::Fit {
            method: "opq",
            message: format!("fit row {bad} is outside the {n} item vectors"),
        });
    }
    let rows64 = |rows: &mut dyn Iterator<Item = usize>| -> Vec<f64> {
        rows.flat_map(|r| data[r * dim..(r + 1) * dim].iter().map(|&x| x as f64))
            .collect()
    };
    let fit = rows64(&mut fit_rows.iter().copied());
    let all = rows64(&mut (0..n));

    // PCA on the fitted rows: centre, project on the top `d` eigenvectors of the covariance,
    // optionally scale each component to unit variance.
    let (fit_z, all_z, explained) = if config.pca_dim == 0 {
        (fit, all, None)
    } else {
        let nf = fit_rows.len();
        let mut mean = vec![0f64; dim];
        fit.chunks_exact(dim)
            .for_each(|r| mean.iter_mut().zip(r).for_each(|(m, x)| *m += x / nf as f64));
        let centre = |x: &[f64]| -> Vec<f64> {
            x.chunks_exact(dim)
                .flat_map(|r| r.iter().zip(&mean).map(|(a, m)| a - m))
                .collect()
        };
        let (fit_c, all_c) = (centre(&fit), centre(&all));
        let mut cov = gram(&fit_c, &fit_c, nf, dim, dim);
        cov.iter_mut().for_each(|c| *c /= nf as f64);
        let (values, vectors) = symmetric_eigen(&cov, dim);
        let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = values[..d].iter().map(|v| v.max(0.0)).sum();
        // Whitening divides by √λ; a floor relative to the largest keeps components the fitted
        // items barely span (pca_dim above their rank) from being blown up into noise digits.
        let floor = values[0].max(0.0) * 1e-6 + f64::MIN_POSITIVE;
        let mut projection = vec![0f64; dim * d];
        for i in 0..dim {
            for j in 0..d {
                let scale = if config.whiten {
                    1.0 / values[j].max(floor).sqrt()
                } else {
                    1.0
                };
                projection[i * d + j] = vectors[i * dim + j] * scale;
            }
        }
        (
            matmul(&fit_c, &projection, nf, dim, d),
            matmul(&all_c, &projection, n, dim, d),
            Some(if total > 0.0 { kept / total } else { 1.0 }),
        )
    };

    let m = config.subspaces;
    let ds = d / m;
    let nf = fit_rows.len();
    // Columns of sub-space `s` of `y` (`rows × d`) as its own `rows × ds` f32 block.
    let block = |y: &[f64], rows: usize, s: usize| -> Vec<f32> {
        (0..rows)
            .flat_map(|i| y[i * d + s * ds..i * d + (s + 1) * ds].iter().map(|&x| x as f32))
            .collect()
    };
    // A sub-space codebook: Lloyd from the previous one, or k-means++ the first time.
    let fit_book = |sub: &[f32], s: usize, previous: Option<&Vec<f32>>, iterations: usize| match previous {
        Some(previous) => lloyd(sub, ds, previous.clone(), iterations),
        None => kmeans(
            sub,
            ds,
            config.codes,
            config.full_kmeans_iterations,
            seed ^ (s as u64 + 1),
        ),
    };
    let mut rotation: Vec<f64> = (0..d * d).map(|i| if i / d == i % d { 1.0 } else { 0.0 }).collect();
    let mut books: Vec<Vec<f32>> = Vec::new();
    let mut opq_mse = Vec::with_capacity(config.iterations);
    for _ in 0..config.iterations {
        let y = matmul(&fit_z, &rotation, nf, d, d);
        let mut reconstruction = vec![0f64; nf * d];
        let mut error = 0.0;
        for s in 0..m {
            let sub = block(&y, nf, s);
            let fitted = fit_book(&sub, s, books.get(s), config.kmeans_iterations);
            for (i, &c) in fitted.assignments.iter().enumerate() {
                let centroid = &fitted.centroids[c as usize * ds..(c as usize + 1) * ds];
                for (j, &v) in centroid.iter().enumerate() {
                    reconstruction[i * d + s * ds + j] = v as f64;
                }
            }
            error += fitted.inertia;
            if s < books.len() {
                books[s] = fitted.centroids;
            } else {
                books.push(fitted.centroids);
            }
        }
        opq_mse.push(error / nf as f64);
        // Procrustes: the rotation taking the data closest to its reconstruction.
        rotation = polar(&gram(&fit_z, &reconstruction, nf, d, d), d);
    }

    // Final codebooks on the fitted rows, then every row's nearest code per sub-space.
    let y_fit = matmul(&fit_z, &rotation, nf, d, d);
    let y_all = matmul(&all_z, &rotation, n, d, d);
    let mut codes = vec![Vec::with_capacity(m); n];
    let mut subspaces = Vec::with_capacity(m);
    let mut fit_error = 0.0;
    let mut final_books = Vec::with_capacity(m);
    for s in 0..m {
        let sub = block(&y_fit, nf, s);
        let fitted = fit_book(&sub, s, books.get(s), config.full_kmeans_iterations);
        fit_error += fitted.inertia;
        let every = block(&y_all, n, s);
        let digits: Vec<u32> = every
            .chunks_exact(ds)
            .map(|row| nearest(row, &fitted.centroids, ds).0)
            .collect();
        subspaces.push(level_report(&digits, config.codes, fitted.inertia / nf as f64));
        for (item, &c) in digits.iter().enumerate() {
            codes[item].push(c);
        }
        final_books.push(fitted.centroids);
    }
    let separated = separate_collisions(&mut codes, &y_all, &final_books, d, ds)?;
    Ok(OpqFit {
        codes,
        subspaces,
        report: OpqReport {
            fit_items: nf,
            dim: d,
            explained_variance: explained,
            opq_mse,
            quantisation_mse: fit_error / nf as f64,
            separated,
        },
    })
}

/// Gives every item a distinct digit tuple: an item whose tuple is taken moves to the free tuple
/// of least extra squared distance, found best-first over the per-sub-space alternatives (the
/// multi-sequence order: usually one digit changes). Returns how many items moved.
fn separate_collisions(
    codes: &mut [Vec<u32>],
    y: &[f64],
    books: &[Vec<f32>],
    d: usize,
    ds: usize,
) -> Result<usize, TokenizeError> {
    let k = books.first().map_or(0, |b| b.len() / ds);
    let capacity = (k as f64).powi(books.len() as i32);
    if codes.len() as f64 > capacity {
        return Err(TokenizeError::Fit {
            method: "opq",
            message: format!(
                "{} items cannot have distinct tuples of {} digits over {k} codes: raise index.codes or index.pq_subspaces",
                codes.len(),
                books.len()
            ),
        });
    }
    let mut taken: HashSet<Vec<u32>> = HashSet::with_capacity(codes.len());
    let mut moved = 0;
    for item in 0..codes.len() {
        if taken.insert(codes[item].clone()) {
            continue;
        }
        let row = &y[item * d..(item + 1) * d];
        // Per sub-space: codes by squared distance, nearest first, as (distance, code).
        let ranked: Vec<Vec<(f64, u32)>> = books
            .iter()
            .enumerate()
            .map(|(s, book)| {
                let mut r: Vec<(f64, u32)> = book
                    .chunks_exact(ds)
                    .enumerate()
                    .map(|(c, centroid)| {
                        let dist = row[s * ds..(s + 1) * ds]
                            .iter()
                            .zip(centroid)
                            .map(|(a, &b)| (a - b as f64) * (a - b as f64))
                            .sum();
                        (dist, c as u32)
                    })
                    .collect();
                r.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                r
            })
            .collect();
        let cost = |at: &[usize]| -> f64 { at.iter().enumerate().map(|(s, &i)| ranked[s][i].0).sum() };
        // Best-first over rank vectors: pop the cheapest, push its successors (one rank up in
        // one sub-space). Total order on (cost, ranks) keeps it deterministic.
        let mut heap = std::collections::BinaryHeap::new();
        let mut seen = HashSet::new();
        let start = vec![0usize; books.len()];
        heap.push(std::cmp::Reverse((Ordered(cost(&start)), start.clone())));
        seen.insert(start);
        let tuple = loop {
            let std::cmp::Reverse((_, at)) = heap.pop().expect("fewer items than tuples: a free one exists");
            let tuple: Vec<u32> = at.iter().enumerate().map(|(s, &i)| ranked[s][i].1).collect();
            if !taken.contains(&tuple) {
                break tuple;
            }
            for s in 0..at.len() {
                if at[s] + 1 < k {
                    let mut next = at.clone();
                    next[s] += 1;
                    if seen.insert(next.clone()) {
                        heap.push(std::cmp::Reverse((Ordered(cost(&next)), next)));
                    }
                }
            }
        };
        taken.insert(tuple.clone());
        codes[item] = tuple;
        moved += 1;
    }
    Ok(moved)
}

/// An `f64` with a total order, for the heap.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ordered(f64);

impl Eq for Ordered {}

impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Items built from `n` distinct planted tuples: sub-space `s` of item `i` is centre
    /// `codes[i][s]` of that sub-space plus small noise, then the whole vector is rotated.
    fn planted(n: usize, m: usize, k: usize, ds: usize, seed: u64) -> (Vec<f32>, Vec<Vec<u32>>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let d = m * ds;
        let centres: Vec<f64> = (0..m * k * ds).map(|_| rng.random_range(-5.0..5.0)).collect();
        let mut seen = HashSet::new();
        let mut codes: Vec<Vec<u32>> = Vec::new();
        while codes.len() < n {
            let c: Vec<u32> = (0..m).map(|_| rng.random_range(0..k as u32)).collect();
            if seen.insert(c.clone()) {
                codes.push(c);
            }
        }
        let mut x = vec![0f64; n * d];
        for (i, c) in codes.iter().enumerate() {
            for s in 0..m {
                for j in 0..ds {
                    x[i * d + s * ds + j] = centres[(s * k + c[s] as usize) * ds + j] + rng.random_range(-0.05..0.05);
                }
            }
        }
        // The orthogonal matrix nearest to I + 0.3 A (A uniform in [-1, 1]): sub-spaces mixed by
        // a rotation of moderate angle. (OPQ is a local method: from the identity it does not
        // undo an arbitrary rotation.)
        let near_identity: Vec<f64> = (0..d * d)
            .map(|i| if i / d == i % d { 1.0 } else { 0.0 } + 0.3 * rng.random_range(-1.0..1.0))
            .collect();
        let q = polar(&near_identity, d);
        let rotated = matmul(&x, &q, n, d, d);
        (rotated.iter().map(|&v| v as f32).collect(), codes)
    }

    /// Whether two code assignments of one sub-space agree up to a relabelling.
    fn same_partition(a: &[u32], b: &[u32]) -> bool {
        let mut map = std::collections::HashMap::new();
        a.iter().zip(b).all(|(x, y)| *map.entry(*x).or_insert(*y) == *y)
            && a.iter()
                .zip(b)
                .map(|(x, y)| (y, x))
                .collect::<std::collections::HashMap<_, _>>()
                .len()
                == map.len()
    }

    #[test]
    fn opq_recovers_planted_codes_pq_alone_does_not() {
        let (m, k, ds, n) = (4, 4, 4, 200);
        let config = OpqConfig {
            subspaces: m,
            codes: k,
            iterations: 20,
            ..OpqConfig::default()
        };
        let column = |codes: &[Vec<u32>], s: usize| codes.iter().map(|c| c[s]).collect::<Vec<_>>();
        let recovered = |codes: &[Vec<u32>], planted: &[Vec<u32>]| {
            (0..m).all(|s| (0..m).any(|l| same_partition(&column(codes, l), &column(planted, s))))
        };
        let rows: Vec<usize> = (0..n).collect();
        let (mut opq_wins, mut pq_wins) = (0, 0);
        for seed in 0..10 {
            let (data, planted_codes) = planted(n, m, k, ds, seed);
            let fit = fit_opq(&data, m * ds, &rows, &config, seed).unwrap();
            assert!(
                fit.report.opq_mse.first() > fit.report.opq_mse.last(),
                "the rotation helps"
            );
            opq_wins += recovered(&fit.codes, &planted_codes) as usize;
            // (A wrong partition may leave collisions no single digit separates: not recovered.)
            let pq = fit_opq(
                &data,
                m * ds,
                &rows,
                &OpqConfig {
                    iterations: 0,
                    ..config.clone()
                },
                seed,
            );
            pq_wins += pq.is_ok_and(|pq| recovered(&pq.codes, &planted_codes)) as usize;
            if seed == 0 {
                // Same seed, same codes.
                assert_eq!(fit_opq(&data, m * ds, &rows, &config, seed).unwrap(), fit);
            }
        }
        // Measured: OPQ recovers every planted sub-space (up to relabelling and order) in 7 of
        // these 10 problems, PQ without the rotation in none.
        assert!(opq_wins >= 6 && pq_wins == 0, "OPQ {opq_wins}/10, PQ {pq_wins}/10");
    }

    #[test]
    fn pca_whitening_collisions_and_named_errors() {
        let (data, _) = planted(256, 4, 4, 2, 6);
        let rows: Vec<usize> = (0..256).collect();
        let config = OpqConfig {
            subspaces: 2,
            codes: 4,
            pca_dim: 4,
            whiten: true,
            iterations: 3,
            ..OpqConfig::default()
        };
        let few_codes = OpqConfig {
            codes: 16,
            ..config.clone()
        };
        let fit = fit_opq(&data, 8, &rows[..200], &few_codes, 2).unwrap();
        assert_eq!(fit.codes.len(), 256, "every item is encoded, fitted or not");
        assert_eq!(fit.report.fit_items, 200);
        let explained = fit.report.explained_variance.unwrap();
        assert!(explained > 0.0 && explained < 1.0, "{explained}");
        // 16 tuples for 256 items cannot be distinct.
        let err = fit_opq(&data, 8, &rows, &config, 2).unwrap_err().to_string();
        assert!(
            err.contains("256 items cannot have distinct tuples of 2 digits over 4 codes"),
            "{err}"
        );
        let err = |c: OpqConfig| fit_opq(&data, 8, &rows, &c, 0).unwrap_err().to_string();
        assert!(err(OpqConfig {
            subspaces: 3,
            pca_dim: 0,
            ..config.clone()
        })
        .contains("does not divide"));
        assert!(err(OpqConfig {
            pca_dim: 9,
            ..config.clone()
        })
        .starts_with("index.pca_dim"));
        let few = fit_opq(&data, 8, &rows[..3], &config, 0).unwrap_err().to_string();
        assert!(few.contains("3 items to fit 4 codes"), "{few}");
    }

    #[test]
    fn duplicates_are_separated_by_their_cheapest_digit() {
        // Five identical items at the origin; sub-space codes at distances² 0, 1, 9 and 0, 4, 25.
        let y = vec![0.0; 10];
        let books = vec![vec![0.0f32, 1.0, 3.0], vec![0.0f32, 2.0, 5.0]];
        let mut codes = vec![vec![0, 0]; 5];
        let moved = separate_collisions(&mut codes, &y, &books, 2, 1).unwrap();
        assert_eq!(moved, 4);
        // Free tuples by extra cost: (1,0) +1, (0,1) +4, (1,1) +5, (2,0) +9.
        assert_eq!(codes, [vec![0, 0], vec![1, 0], vec![0, 1], vec![1, 1], vec![2, 0]]);
    }
}
