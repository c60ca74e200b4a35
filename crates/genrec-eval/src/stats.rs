//! Aggregation over seeds and paired significance tests between two runs' per-user values.
//!
//! The special functions (log-gamma, regularized incomplete beta, normal tail) are implemented
//! here to keep the crate dependency-free; tests compare them with values from SciPy.

use crate::EvalError;
use serde::{Deserialize, Serialize};

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for a single value).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// Result of a two-sided paired test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// t for the t-test; W⁺ (sum of positive ranks) for Wilcoxon.
    pub statistic: f64,
    pub p_value: f64,
    /// Pairs used (Wilcoxon drops zero differences).
    pub n: usize,
}

fn check_pairs(a: &[f64], b: &[f64]) -> Result<(), EvalError> {
    if a.len() != b.len() {
        return Err(EvalError::Stats(format!(
            "paired test needs equal lengths, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    if a.len() < 2 {
        return Err(EvalError::Stats("paired test needs at least 2 pairs".into()));
    }
    Ok(())
}

/// Paired Student t-test of `a − b`, two-sided (SciPy's `ttest_rel`). Identical runs give
/// t = 0, p = 1.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TestResult, EvalError> {
    check_pairs(a, b)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let (mean, sd) = mean_std(&d);
    if sd == 0.0 {
        let p = if mean == 0.0 { 1.0 } else { 0.0 };
        let t = if mean == 0.0 {
            0.0
        } else {
            mean.signum() * f64::INFINITY
        };
        return Ok(TestResult {
            statistic: t,
            p_value: p,
            n,
        });
    }
    let t = mean / (sd / (n as f64).sqrt());
    let df = (n - 1) as f64;
    let p = incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    Ok(TestResult {
        statistic: t,
        p_value: p.clamp(0.0, 1.0),
        n,
    })
}

/// Wilcoxon signed-rank test of `a − b`, two-sided: zero differences dropped, tied |d| get average
/// ranks, normal approximation with tie correction and no continuity correction (SciPy's
/// `wilcoxon(..., zero_method="wilcox", correction=False, method="approx")`). Per-user metric
/// differences are full of ties, where the exact distribution does not apply.
pub fn wilcoxon(a: &[f64], b: &[f64]) -> Result<TestResult, EvalError> {
    check_pairs(a, b)?;
    let mut d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).filter(|d| *d != 0.0).collect();
    let n = d.len();
    if n == 0 {
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
            n,
        });
    }
    d.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    let mut w_plus = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[j + 1].abs() == d[i].abs() {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        w_plus += d[i..=j].iter().filter(|x| **x > 0.0).count() as f64 * avg_rank;
        i = j + 1;
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    let z = (w_plus - mean) / var.sqrt();
    let p = 2.0 * normal_upper_tail(z.abs());
    Ok(TestResult {
        statistic: w_plus,
        p_value: p.clamp(0.0, 1.0),
        n,
    })
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps accuracy for small x.
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized incomplete beta I_x(a, b), by the continued fraction (modified Lentz), using the
/// symmetry I_x(a,b) = 1 − I_{1−x}(b,a) where the fraction converges slowly.
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(b, a, 1.0 - x);
    }
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..=300 {
        let m = m as f64;
        // Even step.
        let num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + num / c;
        if c.abs() < TINY {
            c = TINY;
        }
        f *= d * c;
        // Odd step.
        let num = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + num / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = d * c;
        f *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * f / a
}

/// P(Z > z) for a standard normal, via erfc; accurate to ~1e-7 relative, ample for p-values.
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    // Chebyshev fit (Numerical Recipes' erfcc form), fractional error < 1.2e-7 everywhere.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from SciPy 1.x: stats.ttest_rel, stats.wilcoxon(zero_method="wilcox",
    // correction=False, method="approx"), special.betainc, stats.norm.sf.
    const A: [f64; 8] = [0.1, 0.5, 0.3, 0.9, 0.4, 0.2, 0.8, 0.6];
    const B: [f64; 8] = [0.2, 0.3, 0.3, 0.5, 0.6, 0.1, 0.4, 0.5];
    const A2: [f64; 15] = [
        1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.3,
    ];
    const B2: [f64; 15] = [
        0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0,
    ];

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() < tol, "{a} vs {b}");
    }

    #[test]
    fn special_functions_match_scipy() {
        close(incomplete_beta(2.5, 0.5, 0.3), 0.018927124071945658, 1e-12);
        close(incomplete_beta(10.0, 3.0, 0.9), 0.889130022255, 1e-10);
        close(normal_upper_tail(1.96), 0.024997895148220435, 1e-8);
        close(ln_gamma(5.0), 24f64.ln(), 1e-12);
    }

    #[test]
    fn t_test_matches_scipy() {
        let r = paired_t_test(&A, &B).unwrap();
        close(r.statistic, 1.4682961336602618, 1e-12);
        close(r.p_value, 0.1854708433472394, 1e-10);
        let r = paired_t_test(&A2, &B2).unwrap();
        close(r.statistic, 2.481846198808122, 1e-12);
        close(r.p_value, 0.026374997794140036, 1e-10);
        let same = paired_t_test(&A, &A).unwrap();
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
        assert!(paired_t_test(&A, &B2).is_err());
    }

    #[test]
    fn wilcoxon_matches_scipy() {
        for (a, b, stat, p) in [
            (&A[..], &B[..], 6.5, 0.20327244639516773),
            (&A2[..], &B2[..], 6.0, 0.0395437490162232),
        ] {
            let r = wilcoxon(a, b).unwrap();
            let total = (r.n * (r.n + 1)) as f64 / 2.0;
            // SciPy reports min(W+, W-).
            close(r.statistic.min(total - r.statistic), stat, 1e-12);
            close(r.p_value, p, 1e-6);
        }
        assert_eq!(wilcoxon(&A, &A).unwrap().p_value, 1.0);
    }

    #[test]
    fn mean_std_by_hand() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        close(m, 2.5, 1e-15);
        close(s, (5.0f64 / 3.0).sqrt(), 1e-15);
        assert_eq!(mean_std(&[7.0]), (7.0, 0.0));
    }
}
