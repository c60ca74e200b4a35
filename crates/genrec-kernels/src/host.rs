//! Vectorised f32 kernels on host slices: `exp`, `erf`, row softmax, GELU and its derivative.
//!
//! Every loop is written so the compiler vectorises it (fixed-width lanes, no branches inside),
//! and every slice kernel is compiled three times by the `simd_dispatch!` macro (AVX-512,
//! AVX2 + FMA, baseline) with the best one chosen at run time, so one binary runs on any x86-64
//! (and, through the baseline, elsewhere). Large inputs are split into chunks run in parallel.
//! The scalar [`exp_approx`] and [`erf`] are inlined into those loops.

use rayon::prelude::*;

/// Values per rayon task: enough work to amortise the task, small enough to share two cores.
const CHUNK: usize = 16_384;

/// Defines `fn $name(args) -> ret` running the `#[inline(always)]` function `$portable`
/// compiled for AVX-512 or AVX2 + FMA when the CPU has them (checked at run time), else for
/// the baseline target.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $portable:ident;) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for `avx2`.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $portable($($arg),*)
        }
    };
}

/// Replaces every row of `rows` (`width` wide) by its softmax and returns the rows' log-sum-exp.
/// A row with a NaN or +∞ becomes NaN and gets a NaN log-sum-exp; −∞ entries get ~0.
///
/// # Panics
/// If `width` is 0 or does not divide `rows.len()` (a bug in the caller).
pub fn softmax_rows(rows: &mut [f32], width: usize) -> Vec<f32> {
    assert!(
        width > 0 && rows.len().is_multiple_of(width),
        "softmax_rows: {} values in rows of {width}",
        rows.len()
    );
    // Whole rows per task, never split.
    let per_task = (CHUNK / width).max(1) * width;
    rows.par_chunks_mut(per_task)
        .flat_map_iter(|chunk| chunk.chunks_mut(width).map(softmax_row).collect::<Vec<_>>())
        .collect()
}

/// Exact GELU `x/2 · (1 + erf(x/√2))` of every value, in place.
pub fn gelu_in_place(values: &mut [f32]) {
    values.par_chunks_mut(CHUNK).for_each(gelu_chunk);
}

/// GELU's derivative `s = Φ(x) + x·φ(x)` and the offset `o = GELU(x) − x·s` of every value:
/// `x ⊙ s + o` is GELU's value with GELU's gradient when `s` and `o` are constants.
pub fn gelu_slope_offset(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut slope = vec![0.0; x.len()];
    let mut offset = vec![0.0; x.len()];
    x.par_chunks(CHUNK)
        .zip(slope.par_chunks_mut(CHUNK))
        .zip(offset.par_chunks_mut(CHUNK))
        .for_each(|((x, s), o)| gelu_slope_offset_chunk(x, s, o));
    (slope, offset)
}

simd_dispatch! {
    fn softmax_row(row: &mut [f32]) -> f32 = softmax_row_portable;
}

simd_dispatch! {
    fn gelu_chunk(values: &mut [f32]) -> () = gelu_chunk_portable;
}

simd_dispatch! {
    fn gelu_slope_offset_chunk(x: &[f32], slope: &mut [f32], offset: &mut [f32]) -> () = gelu_slope_offset_portable;
}

/// Fixed-width lanes with one accumulator each, no branches inside the loops.
#[inline(always)]
fn softmax_row_portable(row: &mut [f32]) -> f32 {
    const LANES: usize = 16;
    let mut top = [f32::NEG_INFINITY; LANES];
    let mut nan = [false; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            top[i] = top[i].max(chunk[i]);
            nan[i] |= chunk[i].is_nan();
        }
    }
    let mut max = top.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut bad = nan.iter().any(|&b| b);
    for &v in chunks.remainder() {
        max = max.max(v);
        bad |= v.is_nan();
    }
    // `exp_approx` clamps, so NaN and +∞ are caught here: the row's log-sum-exp is NaN.
    if bad || max == f32::INFINITY {
        row.fill(f32::NAN);
        return f32::NAN;
    }

    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for i in 0..LANES {
            chunk[i] = exp_approx(chunk[i] - max);
            acc[i] += chunk[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_approx(*v - max);
        sum += *v;
    }

    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
    max + sum.ln()
}

#[inline(always)]
fn gelu_chunk_portable(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn gelu_slope_offset_portable(x: &[f32], slope: &mut [f32], offset: &mut [f32]) {
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for ((&x, s), o) in x.iter().zip(slope.iter_mut()).zip(offset.iter_mut()) {
        let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp_approx(-0.5 * x * x);
        *s = cdf + x * pdf;
        *o = x * cdf - x * *s;
    }
}

/// `e^x` to within 2 ulp for x in [-87.3, 88.3] (Cephes `expf`: x = n ln 2 + r, |r| ≤ ln 2 / 2,
/// a degree-6 polynomial in r, times 2^n built in the exponent bits). Inputs are clamped to
/// that range (NaN becomes the lower end; callers check for NaN themselves): below it the
/// result is about 1e-38 instead of a subnormal or 0.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to the nearest integer, which then sits in the low mantissa
    // bits (no float-to-int conversion, which would not vectorise).
    const ROUND: f32 = 12_582_912.0;
    // Not `clamp`: max/min send NaN to a bound instead of propagating it, which keeps the loop
    // branch-free (callers detect NaN rows themselves).
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.3);
    let k = x * LOG2E + ROUND;
    let n = k - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    // Cephes' 5.0000001201e-1 is 0.5 in f32.
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n ∈ [-126, 127], so n + 127 is a normal exponent.
    let exponent = k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e * f32::from_bits(exponent << 23)
}

/// `erf(x)` within 5e-7 absolute (a few f32 ulps near ±1): the rational approximation of Eigen
/// and XLA (odd degree-13 numerator over even degree-8 denominator in x) on [-4, 4], and exactly
/// ±1 beyond, where f32's erf is already ±1 (so GELU is exactly 0 for very negative inputs).
/// Branch-free (a select), so it vectorises. NaN stays NaN.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let inside = erf_inside(x.clamp(-4.0, 4.0));
    if x.abs() >= 4.0 {
        1.0f32.copysign(x)
    } else {
        inside
    }
}

#[inline(always)]
fn erf_inside(x: f32) -> f32 {
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p * x2 + 2.770_681_4e-8;
    let p = p * x2 - 2.101_024e-6;
    let p = p * x2 - 5.692_506_4e-5;
    let p = p * x2 - 7.349_906_3e-4;
    let p = p * x2 - 2.954_600_1e-3;
    let p = p * x2 - 1.609_603_3e-2;
    let q = -1.456_607_2e-5_f32;
    let q = q * x2 - 2.133_740_6e-4;
    let q = q * x2 - 1.682_827e-3;
    let q = q * x2 - 7.373_329e-3;
    let q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "entry {i}: {x} vs {y}");
        }
    }

    /// erf by its Taylor series in f64 (cancellation keeps it within ~1e-9 on [-4.2, 4.2]).
    fn erf_series(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_is_within_5e7_absolute() {
        let mut worst = 0.0f64;
        let mut x = -4.2f32;
        while x <= 4.2 {
            worst = worst.max((erf(x) as f64 - erf_series(x as f64)).abs());
            x += 0.000_61;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert!(erf(-9.0) == -1.0 && erf(5.0) == 1.0 && erf(4.0) == 1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn exp_approx_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 0.5 {
            let want = (x as f64).exp();
            let rel = ((exp_approx(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.000_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert!(exp_approx(-1e9) < 1e-37 && exp_approx(-1e9) > 0.0);
        assert!(exp_approx(88.3).is_finite());
    }

    #[test]
    fn softmax_rows_by_hand_and_with_non_finite_rows() {
        let mut rows = vec![0.0, 2f32.ln(), 1.0, 1.0, 0.0, f32::NAN, f32::INFINITY, 0.0];
        let lse = softmax_rows(&mut rows, 2);
        close(&rows[..4], &[1.0 / 3.0, 2.0 / 3.0, 0.5, 0.5], 1e-6);
        close(&lse[..2], &[3f32.ln(), 1.0 + 2f32.ln()], 1e-6);
        assert!(lse[2].is_nan() && lse[3].is_nan(), "{lse:?}");
        // A masked (−∞) entry gets probability ~0; 40 values cover the vector body and its tail.
        let mut masked: Vec<f32> = (0..40).map(|i| if i == 3 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let lse = softmax_rows(&mut masked, 40);
        assert!(masked[3] < 1e-37 && (masked[0] - 1.0 / 39.0).abs() < 1e-7, "{masked:?}");
        assert!((lse[0] - 39f32.ln()).abs() < 1e-6);
    }

    /// GELU and its derivative against f64 formulas (erf by series), across chunk boundaries.
    #[test]
    fn gelu_and_its_slope_against_f64() {
        let x: Vec<f32> = (0..CHUNK + 777)
            .map(|i| -6.0 + 12.0 * i as f32 / (CHUNK + 777) as f32)
            .collect();
        let (slope, offset) = gelu_slope_offset(&x);
        let mut values = x.clone();
        gelu_in_place(&mut values);
        for (i, &xi) in x.iter().enumerate() {
            let xd = xi as f64;
            let cdf = 0.5 * (1.0 + erf_series(xd / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let (want, want_slope) = (xd * cdf, cdf + xd * pdf);
            assert!(
                (values[i] as f64 - want).abs() < 2e-6 * (1.0 + want.abs()),
                "x {xi}: {} vs {want}",
                values[i]
            );
            assert!(
                (slope[i] as f64 - want_slope).abs() < 2e-6,
                "x {xi}: slope {} vs {want_slope}",
                slope[i]
            );
            let surrogate = xi * slope[i] + offset[i];
            assert!(
                (surrogate as f64 - want).abs() < 4e-6 * (1.0 + want.abs()),
                "x {xi}: {surrogate} vs {want}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "softmax_rows: 5 values in rows of 2")]
    fn softmax_rows_rejects_a_ragged_buffer() {
        softmax_rows(&mut [0.0; 5], 2);
    }
}
