//! The little dense linear algebra OPQ needs, on host `f64` (dimensions of a few hundred): matrix
//! products, the symmetric eigendecomposition (cyclic Jacobi) and, from it, PCA and the polar
//! factor that solves the orthogonal Procrustes problem.

use rayon::prelude::*;

/// `a [n × k] · b [k × m]`, row-major, rows of `a` in parallel.
pub fn matmul(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * k, "a must be n × k");
    assert_eq!(b.len(), k * m, "b must be k × m");
    let mut out = vec![0f64; n * m];
    out.par_chunks_mut(m.max(1)).enumerate().for_each(|(i, row)| {
        for (p, &x) in a[i * k..(i + 1) * k].iter().enumerate() {
            if x != 0.0 {
                for (o, &y) in row.iter_mut().zip(&b[p * m..(p + 1) * m]) {
                    *o += x * y;
                }
            }
        }
    });
    out
}

/// `aᵀ b` for `a [n × k]`, `b [n × m]` (a `k × m` sum over the `n` rows), in parallel chunks.
pub fn gram(a: &[f64], b: &[f64], n: usize, k: usize, m: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * k, "a must be n × k");
    assert_eq!(b.len(), n * m, "b must be n × m");
    let chunk = 256;
    (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f64; k * m];
            for i in c * chunk..((c + 1) * chunk).min(n) {
                let (ra, rb) = (&a[i * k..(i + 1) * k], &b[i * m..(i + 1) * m]);
                for (p, &x) in ra.iter().enumerate() {
                    for (o, &y) in acc[p * m..(p + 1) * m].iter_mut().zip(rb) {
                        *o += x * y;
                    }
                }
            }
            acc
        })
        .reduce(
            || vec![0f64; k * m],
            |mut s, t| {
                s.iter_mut().zip(&t).for_each(|(a, b)| *a += b);
                s
            },
        )
}

/// Eigenvalues (descending) and eigenvectors (column `j` of the row-major `n × n` result belongs
/// to value `j`) of a symmetric matrix, by cyclic Jacobi rotations until the off-diagonal mass
/// is below `1e-22` of the total (or 100 sweeps).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "a must be n × n");
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-22 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan, Algorithm 8.5.1).
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0f64; n * n];
    for (col, &i) in order.iter().enumerate() {
        for k in 0..n {
            vectors[k * n + col] = v[k * n + i];
        }
    }
    (values, vectors)
}

/// The orthogonal matrix nearest to `m` (`n × n`): the polar factor `U Vᵀ` of `m = U Σ Vᵀ`. It
/// is the rotation `R` minimising `‖X R − Y‖` when `m = Xᵀ Y` (orthogonal Procrustes).
///
/// `V` and `Σ²` come from the eigendecomposition of `mᵀ m`, `u_j = m v_j / σ_j`, re-orthonormalised
/// (Gram–Schmidt, largest `σ` first). Where `m` is rank-deficient the minimiser is not unique:
/// the missing `u_j` complete the basis (any completion attains the minimum).
pub fn polar(m: &[f64], n: usize) -> Vec<f64> {
    let (values, v) = symmetric_eigen(&gram(m, m, n, n, n), n);
    let largest = values.first().copied().unwrap_or(0.0).max(0.0);
    let mut u: Vec<Vec<f64>> = Vec::with_capacity(n);
    let orthonormal_add = |mut x: Vec<f64>, u: &mut Vec<Vec<f64>>| -> bool {
        for _ in 0..2 {
            for b in u.iter() {
                let dot: f64 = x.iter().zip(b).map(|(a, b)| a * b).sum();
                x.iter_mut().zip(b).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm < 1e-6 {
            return false;
        }
        x.iter_mut().for_each(|a| *a /= norm);
        u.push(x);
        true
    };
    let mut columns = Vec::with_capacity(n);
    for (j, &value) in values.iter().enumerate() {
        if value <= 1e-20 * largest || largest == 0.0 {
            continue;
        }
        let vj: Vec<f64> = (0..n).map(|k| v[k * n + j]).collect();
        let mvj: Vec<f64> = (0..n).map(|i| (0..n).map(|k| m[i * n + k] * vj[k]).sum()).collect();
        if orthonormal_add(mvj, &mut u) {
            columns.push(j);
        }
    }
    // Completion: the remaining right singular vectors pair with standard basis directions
    // orthogonalised against the `u` found.
    let missing: Vec<usize> = (0..n).filter(|j| !columns.contains(j)).collect();
    let mut basis = 0;
    for &j in &missing {
        while basis < n {
            let mut e = vec![0f64; n];
            e[basis] = 1.0;
            basis += 1;
            if orthonormal_add(e, &mut u) {
                columns.push(j);
                break;
            }
        }
    }
    // R = Σ_j u_j v_jᵀ.
    let mut r = vec![0f64; n * n];
    for (uj, &j) in u.iter().zip(&columns) {
        for i in 0..n {
            for k in 0..n {
                r[i * n + k] += uj[i] * v[k * n + j];
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, m: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * m).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn transpose(a: &[f64], n: usize, m: usize) -> Vec<f64> {
        let mut t = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                t[j * n + i] = a[i * m + j];
            }
        }
        t
    }

    #[test]
    fn eigen_reconstructs_and_is_orthonormal() {
        let n = 12;
        let x = random(30, n, 1);
        let s = gram(&x, &x, 30, n, n);
        let (values, v) = symmetric_eigen(&s, n);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
        // V Λ Vᵀ = S and Vᵀ V = I.
        let mut vl = v.clone();
        for k in 0..n {
            for j in 0..n {
                vl[k * n + j] *= values[j];
            }
        }
        let back = matmul(&vl, &transpose(&v, n, n), n, n, n);
        let vtv = matmul(&transpose(&v, n, n), &v, n, n, n);
        for i in 0..n * n {
            assert!((back[i] - s[i]).abs() < 1e-9, "{} vs {}", back[i], s[i]);
            let eye = if i / n == i % n { 1.0 } else { 0.0 };
            assert!((vtv[i] - eye).abs() < 1e-10);
        }
        // By hand: [[2, 1], [1, 2]] has values 3 and 1.
        let (values, _) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((values[0] - 3.0).abs() < 1e-12 && (values[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn procrustes_recovers_a_rotation() {
        // Y = X Q for an orthogonal Q: the polar factor of Xᵀ Y is Q.
        let (n, d) = (50, 6);
        let x = random(n, d, 2);
        let q = polar(&random(d, d, 3), d);
        let qtq = matmul(&transpose(&q, d, d), &q, d, d, d);
        for (i, v) in qtq.iter().enumerate() {
            let eye = if i / d == i % d { 1.0 } else { 0.0 };
            assert!((v - eye).abs() < 1e-9, "polar factor is orthogonal");
        }
        let y = matmul(&x, &q, n, d, d);
        let r = polar(&gram(&x, &y, n, d, d), d);
        for i in 0..d * d {
            assert!((r[i] - q[i]).abs() < 1e-8, "{} vs {}", r[i], q[i]);
        }
        // Rank-deficient: still orthogonal, and exact on the part that is determined.
        let r = polar(&[2.0, 0.0, 0.0, 0.0], 2);
        assert_eq!(r, [1.0, 0.0, 0.0, 1.0]);
        let r = polar(&[0.0, 0.0, 0.0, 0.0], 2);
        assert_eq!(r, [1.0, 0.0, 0.0, 1.0]);
    }
}
