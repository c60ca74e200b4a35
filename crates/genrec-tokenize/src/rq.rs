//! Residual k-means (RQ-KMeans): level `l`'s codebook is k-means on the residuals left by levels
//! `0..l`, so each level refines the previous ones. No network and no training loop: the fast
//! alternative to TIGER's RQ-VAE and a baseline for it (the OneRec / GRID "RQ-KMeans" tokenizer).

use crate::TokenizeError;
use serde::Serialize;

use crate::kmeans::{kmeans, nearest};

/// One residual codebook per level.
#[derive(Debug, Clone, PartialEq)]
pub struct ResidualCodebooks {
    pub dim: usize,
    /// `levels[l]` = `sizes[l] × dim` centroids, row-major.
    pub levels: Vec<Vec<f32>>,
    pub sizes: Vec<usize>,
}

/// What a fit reports per level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelReport {
    pub codes: usize,
    /// Mean squared norm of the residual after this level (the reconstruction error of the
    /// first `l + 1` levels).
    pub residual_mse: f64,
    /// Share of this level's codes used by at least one item.
    pub usage: f64,
    /// Perplexity `2^H` of the code distribution (equals `codes` when uniform).
    pub perplexity: f64,
}

/// A fit: the codebooks, every row's code tuple and a per-level report.
#[derive(Debug, Clone, PartialEq)]
pub struct RqFit {
    pub codebooks: ResidualCodebooks,
    pub codes: Vec<Vec<u32>>,
    pub levels: Vec<LevelReport>,
}

/// Usage and perplexity of one level's codes (`codes[i]` < `k`).
pub(crate) fn level_report(codes: &[u32], k: usize, residual_mse: f64) -> LevelReport {
    let mut counts = vec![0usize; k];
    codes.iter().for_each(|&c| counts[c as usize] += 1);
    let n = codes.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    LevelReport {
        codes: k,
        residual_mse,
        usage: counts.iter().filter(|&&c| c > 0).count() as f64 / k as f64,
        perplexity: entropy.exp2(),
    }
}

/// Fits `sizes.len()` levels on `data` (`n × dim`, row-major).
pub fn rq_kmeans(
    data: &[f32],
    dim: usize,
    sizes: &[usize],
    max_iter: usize,
    seed: u64,
) -> Result<RqFit, TokenizeError> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(TokenizeError::RqKmeans(format!(
            "{} values do not form rows of dimension {dim}",
            data.len()
        )));
    }
    let n = data.len() / dim;
    if sizes.is_empty() {
        return Err(TokenizeError::RqKmeans("at least one level is needed".into()));
    }
    if let Some((l, &k)) = sizes.iter().enumerate().find(|(_, &k)| k == 0 || k > n) {
        return Err(TokenizeError::RqKmeans(format!(
            "level {l}: {k} codes for {n} items (need 1 ≤ codes ≤ items)"
        )));
    }
    let mut residual = data.to_vec();
    let mut codes = vec![Vec::with_capacity(sizes.len()); n];
    let mut levels = Vec::with_capacity(sizes.len());
    let mut reports = Vec::with_capacity(sizes.len());
    for (l, &k) in sizes.iter().enumerate() {
        let fit = kmeans(&residual, dim, k, max_iter, seed.wrapping_add(l as u64));
        for (i, &c) in fit.assignments.iter().enumerate() {
            codes[i].push(c);
            let centroid = &fit.centroids[c as usize * dim..(c as usize + 1) * dim];
            for (r, &m) in residual[i * dim..(i + 1) * dim].iter_mut().zip(centroid) {
                *r -= m;
            }
        }
        let mse = residual
            .chunks_exact(dim)
            .map(|r| r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>())
            .sum::<f64>()
            / n as f64;
        reports.push(level_report(&fit.assignments, k, mse));
        levels.push(fit.centroids);
    }
    Ok(RqFit {
        codebooks: ResidualCodebooks {
            dim,
            levels,
            sizes: sizes.to_vec(),
        },
        codes,
        levels: reports,
    })
}

impl ResidualCodebooks {
    /// Encodes a new row greedily level by level (nearest centroid of the running residual).
    pub fn encode(&self, row: &[f32]) -> Vec<u32> {
        let mut residual = row.to_vec();
        self.levels
            .iter()
            .map(|centroids| {
                let (c, _) = nearest(&residual, centroids, self.dim);
                let centroid = &centroids[c as usize * self.dim..(c as usize + 1) * self.dim];
                residual.iter_mut().zip(centroid).for_each(|(r, m)| *r -= m);
                c
            })
            .collect()
    }

    /// Sum of the chosen centroids.
    pub fn decode(&self, codes: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; self.dim];
        for (centroids, &c) in self.levels.iter().zip(codes) {
            let centroid = &centroids[c as usize * self.dim..(c as usize + 1) * self.dim];
            out.iter_mut().zip(centroid).for_each(|(o, m)| *o += m);
        }
        out
    }

    /// Residual of `row` after the first `level` levels' centroids of `codes` are removed.
    pub fn residual(&self, row: &[f32], codes: &[u32], level: usize) -> Vec<f32> {
        let mut r = row.to_vec();
        for (centroids, &c) in self.levels.iter().zip(codes).take(level) {
            let centroid = &centroids[c as usize * self.dim..(c as usize + 1) * self.dim];
            r.iter_mut().zip(centroid).for_each(|(x, m)| *x -= m);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gaussian_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random_range(-1.0..1.0f32)).collect()
    }

    #[test]
    fn error_falls_with_every_level_and_codes_decode() {
        let data = gaussian_rows(400, 8, 1);
        let RqFit {
            codebooks: books,
            codes,
            levels: reports,
        } = rq_kmeans(&data, 8, &[16, 16, 16], 30, 5).unwrap();
        let start = data.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 400.0;
        let mut last = start;
        for r in &reports {
            assert!(r.residual_mse < last, "{} !< {last}", r.residual_mse);
            last = r.residual_mse;
        }
        // The greedy encoder reproduces the fit's codes, and decode(codes) + residual = row.
        for i in [0, 17, 399] {
            let row = &data[i * 8..(i + 1) * 8];
            assert_eq!(books.encode(row), codes[i]);
            let back = books.decode(&codes[i]);
            let rest = books.residual(row, &codes[i], 3);
            for j in 0..8 {
                assert!((back[j] + rest[j] - row[j]).abs() < 1e-5);
            }
        }
        assert!(rq_kmeans(&data, 8, &[500], 5, 0)
            .unwrap_err()
            .to_string()
            .contains("500 codes for 400 items"));
        assert!(rq_kmeans(&data, 7, &[4], 5, 0)
            .unwrap_err()
            .to_string()
            .contains("dimension 7"));
    }
}
