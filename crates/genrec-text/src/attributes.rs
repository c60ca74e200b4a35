//! Attribute features: items as multi-hot vectors over their attribute ids (brand, category, genre
//! ids from genrec-data), optionally TF-IDF weighted, optionally reduced to `dim` dimensions by a
//! randomized range finder with subspace iteration (Halko, Martinsson & Tropp 2011). The
//! ablation for text features, and the only content features for LastFM (which has no text).

use crate::TextError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::matrix::Matrix;
use genrec_data::SequenceDataset;

/// How to build attribute features.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeConfig {
    /// Weight attribute `a` by `ln((1 + n) / (1 + df(a))) + 1` (smooth IDF) and L2-normalise rows.
    pub tfidf: bool,
    /// Reduce to this many dimensions (0 = keep one column per attribute id).
    pub dim: usize,
    /// Subspace iterations of the reduction (2 is plenty for sparse 0/1 data).
    pub power_iterations: usize,
    pub seed: u64,
}

impl Default for AttributeConfig {
    fn default() -> Self {
        AttributeConfig {
            tfidf: true,
            dim: 0,
            power_iterations: 2,
            seed: 0,
        }
    }
}

/// Items × attributes, one row per item (all zeros for an item without attributes).
pub fn attribute_features(dataset: &SequenceDataset, config: &AttributeConfig) -> Result<Matrix, TextError> {
    let n_attr = dataset
        .items
        .iter()
        .flat_map(|i| i.attributes.iter())
        .max()
        .map(|&m| m as usize + 1)
        .ok_or_else(|| TextError::Attributes(format!("dataset `{}` has no item attributes", dataset.name)))?;
    let n = dataset.items.len();
    let mut m = Matrix::new(n, n_attr, vec![0.0; n * n_attr]);
    for (i, item) in dataset.items.iter().enumerate() {
        for &a in &item.attributes {
            m.data[i * n_attr + a as usize] = 1.0;
        }
    }
    if config.tfidf {
        let mut df = vec![0f32; n_attr];
        for i in 0..n {
            for (a, v) in m.row(i).iter().enumerate() {
                df[a] += *v;
            }
        }
        let idf: Vec<f32> = df.iter().map(|&d| ((1.0 + n as f32) / (1.0 + d)).ln() + 1.0).collect();
        for i in 0..n {
            let row = &mut m.data[i * n_attr..(i + 1) * n_attr];
            for (v, w) in row.iter_mut().zip(&idf) {
                *v *= w;
            }
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
    if config.dim > 0 && config.dim < n_attr {
        m = reduce(&m, config.dim, config.power_iterations, config.seed);
    }
    Ok(m)
}

/// A standard normal draw (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// `a · b` for row-major `a` `[n, k]` and `b` `[k, m]`.
fn matmul(a: &[f32], b: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * m];
    for i in 0..n {
        let row = &mut out[i * m..(i + 1) * m];
        for (p, &x) in a[i * k..(i + 1) * k].iter().enumerate() {
            if x != 0.0 {
                for (o, &y) in row.iter_mut().zip(&b[p * m..(p + 1) * m]) {
                    *o += x * y;
                }
            }
        }
    }
    out
}

fn transpose(a: &[f32], n: usize, m: usize) -> Vec<f32> {
    let mut t = vec![0f32; n * m];
    for i in 0..n {
        for j in 0..m {
            t[j * n + i] = a[i * m + j];
        }
    }
    t
}

/// Orthonormalises the columns of row-major `q` `[n, k]` in place (modified Gram–Schmidt, twice
/// for stability); a column that collapses to zero is left zero.
fn orthonormalize(q: &mut [f32], n: usize, k: usize) {
    for _ in 0..2 {
        for j in 0..k {
            for p in 0..j {
                let dot: f64 = (0..n).map(|i| q[i * k + j] as f64 * q[i * k + p] as f64).sum();
                for i in 0..n {
                    q[i * k + j] -= (dot as f32) * q[i * k + p];
                }
            }
            let norm = (0..n).map(|i| (q[i * k + j] as f64).powi(2)).sum::<f64>().sqrt();
            for i in 0..n {
                q[i * k + j] = if norm > 1e-12 {
                    (q[i * k + j] as f64 / norm) as f32
                } else {
                    0.0
                };
            }
        }
    }
}

/// Coordinates of the rows of `x` `[n, d]` in an orthonormal basis `V` `[d, k]` of (approximately)
/// its top-`k` right singular subspace: `X V`. Euclidean geometry within that subspace is kept, so
/// distances between items are those of the best rank-`k` approximation.
pub fn reduce(x: &Matrix, k: usize, power_iterations: usize, seed: u64) -> Matrix {
    let (n, d) = (x.rows, x.cols);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..d * k).map(|_| gaussian(&mut rng)).collect();
    orthonormalize(&mut v, d, k);
    let xt = transpose(&x.data, n, d);
    for _ in 0..power_iterations.max(1) {
        let xv = matmul(&x.data, &v, n, d, k);
        v = matmul(&xt, &xv, d, n, k);
        orthonormalize(&mut v, d, k);
    }
    Matrix::new(n, k, matmul(&x.data, &v, n, d, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use genrec_data::ItemInfo;

    fn with_attributes(attrs: &[&[u32]]) -> SequenceDataset {
        SequenceDataset {
            name: "t".into(),
            user_tokens: vec!["u".into()],
            item_tokens: (0..attrs.len()).map(|i| i.to_string()).collect(),
            sequences: vec![(0..attrs.len() as u32).collect()],
            items: attrs
                .iter()
                .map(|a| ItemInfo {
                    attributes: a.to_vec(),
                    ..ItemInfo::default()
                })
                .collect(),
        }
    }

    #[test]
    fn multi_hot_and_tfidf_by_hand() {
        let d = with_attributes(&[&[0, 1], &[1], &[]]);
        let plain = attribute_features(
            &d,
            &AttributeConfig {
                tfidf: false,
                ..AttributeConfig::default()
            },
        )
        .unwrap();
        assert_eq!(plain.data, [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let tfidf = attribute_features(&d, &AttributeConfig::default()).unwrap();
        // n = 3; df = [1, 2]: idf = [ln(4/2) + 1, ln(4/3) + 1] = [1.6931, 1.2877]; row 0 normalised.
        let (a, b) = (2f32.ln() + 1.0, (4f32 / 3.0).ln() + 1.0);
        let norm = (a * a + b * b).sqrt();
        assert!((tfidf.data[0] - a / norm).abs() < 1e-6 && (tfidf.data[1] - b / norm).abs() < 1e-6);
        assert_eq!(&tfidf.data[2..4], [0.0, 1.0]);
        assert_eq!(&tfidf.data[4..], [0.0, 0.0]);
        assert!(
            attribute_features(&with_attributes(&[&[]]), &AttributeConfig::default())
                .unwrap_err()
                .to_string()
                .contains("no item attributes")
        );
    }

    #[test]
    fn reduction_keeps_distances_of_a_low_rank_matrix() {
        // Rank 3 in 40 dimensions: 60 rows, each a mix of 3 fixed directions.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let basis: Vec<f32> = (0..3 * 40).map(|_| gaussian(&mut rng)).collect();
        let coef: Vec<f32> = (0..60 * 3).map(|_| gaussian(&mut rng)).collect();
        let x = Matrix::new(60, 40, matmul(&coef, &basis, 60, 3, 40));
        let r = reduce(&x, 3, 2, 7);
        assert_eq!((r.rows, r.cols), (60, 3));
        let dist = |m: &Matrix, a: usize, b: usize| {
            m.row(a)
                .iter()
                .zip(m.row(b))
                .map(|(p, q)| (p - q).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        for (a, b) in [(0, 1), (5, 17), (30, 59)] {
            let (before, after) = (dist(&x, a, b), dist(&r, a, b));
            assert!((before - after).abs() < 1e-3 * before.max(1.0), "{before} vs {after}");
        }
        assert_eq!(reduce(&x, 3, 2, 7), r, "same seed, same reduction");
    }
}
