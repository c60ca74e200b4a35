//! k-means with k-means++ seeding (Arthur & Vassilvitskii, 2007) on host `f32` rows, rayon over
//! rows for the assignment step. Used for RQ-KMeans and to initialise RQ-VAE codebooks.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Result of a k-means fit.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub k: usize,
    pub dim: usize,
    /// `k × dim`, row-major.
    pub centroids: Vec<f32>,
    /// Cluster of every input row.
    pub assignments: Vec<u32>,
    /// Sum of squared distances to the assigned centroids.
    pub inertia: f64,
    pub iterations: usize,
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index and squared distance of the centroid nearest to `row`.
pub fn nearest(row: &[f32], centroids: &[f32], dim: usize) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (c, centroid) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist(row, centroid);
        if d < best.1 {
            best = (c as u32, d);
        }
    }
    best
}

/// k-means++ seeding: the first centre uniformly, each next one with probability proportional to
/// the squared distance to the nearest centre chosen so far.
fn seed_centroids(data: &[f32], dim: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = data.len() / dim;
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut centroids = row(rng.random_range(0..n)).to_vec();
    let mut d2: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist(row(i), &centroids[..dim]))
        .collect();
    while centroids.len() < k * dim {
        let total: f64 = d2.iter().map(|&d| d as f64).sum();
        let pick = if total <= 0.0 {
            // Every row coincides with a centre already: duplicate centres are unavoidable.
            rng.random_range(0..n)
        } else {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &d) in d2.iter().enumerate() {
                target -= d as f64;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        };
        let new = row(pick).to_vec();
        d2.par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(sq_dist(row(i), &new)));
        centroids.extend(new);
    }
    centroids
}

/// Lloyd iterations from a k-means++ start until no assignment changes or `max_iter`. A cluster
/// that empties is re-seeded with the row farthest from its centre, so all `k` stay in use when
/// there are at least `k` distinct rows.
///
/// # Panics
/// If `data.len()` is not a multiple of `dim`, or there are fewer rows than `k`, or `k == 0`.
pub fn kmeans(data: &[f32], dim: usize, k: usize, max_iter: usize, seed: u64) -> KMeans {
    assert!(
        dim > 0 && data.len().is_multiple_of(dim),
        "data must hold whole rows of length dim"
    );
    let n = data.len() / dim;
    assert!(k > 0 && n >= k, "k-means needs 0 < k ({k}) <= rows ({n})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centroids = seed_centroids(data, dim, k, &mut rng);
    lloyd(data, dim, centroids, max_iter)
}

/// Lloyd iterations from the given `k × dim` centroids (a warm start, as OPQ re-fits its
/// sub-space codebooks after each rotation), with [`kmeans`]' stopping rule and empty-cluster
/// re-seeding.
///
/// # Panics
/// If `data` or `centroids` do not hold whole rows of length `dim`, or `centroids` is empty.
pub fn lloyd(data: &[f32], dim: usize, mut centroids: Vec<f32>, max_iter: usize) -> KMeans {
    assert!(
        dim > 0 && data.len().is_multiple_of(dim) && centroids.len().is_multiple_of(dim),
        "data and centroids must hold whole rows of length dim"
    );
    let n = data.len() / dim;
    let k = centroids.len() / dim;
    assert!(k > 0, "k-means needs at least one centroid");
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let assign = |centroids: &[f32]| -> Vec<(u32, f32)> {
        (0..n)
            .into_par_iter()
            .map(|i| nearest(row(i), centroids, dim))
            .collect()
    };
    // Invariant on return: every assignment is the nearest of the returned centroids, so
    // encoding a training row again gives its assigned code.
    let mut nearest_all = assign(&centroids);
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        // Update step (f64 sums so large clusters do not lose precision).
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &(c, _)) in nearest_all.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)) {
                *s += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                // Re-seed an empty cluster with the worst-served row.
                let far = (0..n)
                    .max_by(|&a, &b| nearest_all[a].1.total_cmp(&nearest_all[b].1))
                    .unwrap();
                centroids[c * dim..(c + 1) * dim].copy_from_slice(row(far));
                continue;
            }
            for j in 0..dim {
                centroids[c * dim + j] = (sums[c * dim + j] / counts[c] as f64) as f32;
            }
        }
        let next = assign(&centroids);
        let changed = next.iter().zip(&nearest_all).filter(|(a, b)| a.0 != b.0).count();
        nearest_all = next;
        if changed == 0 {
            break;
        }
    }
    let assignments = nearest_all.iter().map(|&(c, _)| c).collect();
    let inertia = nearest_all.iter().map(|&(_, d)| d as f64).sum();
    KMeans {
        k,
        dim,
        centroids,
        assignments,
        inertia,
        iterations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated 2-D blobs of 50 points each.
    pub(crate) fn blobs(seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centres = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for (label, (x, y)) in centres.iter().enumerate() {
            for _ in 0..50 {
                data.push(x + rng.random_range(-1.0..1.0f32));
                data.push(y + rng.random_range(-1.0..1.0f32));
                labels.push(label as u32);
            }
        }
        (data, labels)
    }

    #[test]
    fn recovers_separable_blobs() {
        let (data, labels) = blobs(3);
        let fit = kmeans(&data, 2, 3, 50, 11);
        // Same partition up to a relabelling: points share a cluster iff they share a blob.
        for i in 0..labels.len() {
            for j in 0..labels.len() {
                assert_eq!(labels[i] == labels[j], fit.assignments[i] == fit.assignments[j]);
            }
        }
        // Every centre within a blob's unit box of its true centre.
        for c in fit.centroids.chunks(2) {
            let near = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
                .iter()
                .any(|(x, y)| (c[0] - x).abs() < 1.0 && (c[1] - y).abs() < 1.0);
            assert!(near, "{c:?}");
        }
        assert_eq!(kmeans(&data, 2, 3, 50, 11), fit, "same seed, same fit");
    }

    #[test]
    fn duplicate_rows_and_k_equal_n() {
        let data = vec![1.0, 1.0, 1.0, 1.0, 5.0, 5.0];
        let fit = kmeans(&data, 2, 3, 10, 0);
        assert_eq!(fit.inertia, 0.0);
        assert_ne!(fit.assignments[0], fit.assignments[2]);
    }
}
