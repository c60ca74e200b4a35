//! Vectorised f32 kernels on host slices: `exp`, `erf`, row softmax, GELU and its derivative,
//! the product of a compressed-row sparse matrix with dense rows ([`Csr`]), and the softmax of a
//! matrix product with both its gradient products, blocked so the product never leaves the
//! cache ([`linear_softmax_grads`]).
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

/// Rows of `h` per block of [`linear_softmax_grads`]: a block's `[rows, m]` logits stay in the
/// core's cache for the softmax and both products (64 × 6,040 users × 4 B = 1.5 MB).
const SOFTMAX_BLOCK_ROWS: usize = 64;
/// Blocks per parallel task. Fixed (not derived from the thread count), so the order in which
/// the tasks' `Pᵀ·h` partial sums are added, and therefore the result, is the same on every
/// machine.
const SOFTMAX_BLOCKS_PER_TASK: usize = 4;

/// For `h` `[n, d]` and `w` `[m, d]` (row-major), the logits `L = h · wᵀ`, their row softmax
/// `P` and log-sum-exp, and the two products a loss `Σ_i lse(L_i)` needs for its gradients:
/// returns `(lse [n], P·w [n, d], Pᵀ·h [m, d])`.
///
/// The `[n, m]` logits are never materialised: rows of `h` are taken in blocks of 64, each
/// block's logits computed, turned into `P` in place and multiplied by `w` and (accumulated) by
/// the block of `h` while they are in cache. Unblocked, the logits and `P` make several round
/// trips through memory, the largest traffic of a contrastive batch (InfoNCE over 4,096 × 6,040
/// similarities on ML-1M) or a full-softmax SASRec step. Blocks run in parallel in tasks of a
/// fixed size whose `Pᵀ·h` partial sums are added in task order: deterministic. A row with NaN
/// or +∞ gets a NaN log-sum-exp and NaN gradient rows (see [`softmax_rows`]).
///
/// # Panics
/// If `d` is 0 or does not divide both lengths (a bug in the caller).
pub fn linear_softmax_grads(h: &[f32], w: &[f32], d: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(
        d > 0 && h.len().is_multiple_of(d) && w.len().is_multiple_of(d),
        "linear_softmax_grads: {} and {} values in rows of {d}",
        h.len(),
        w.len()
    );
    let (n, m) = (h.len() / d, w.len() / d);
    let task_rows = SOFTMAX_BLOCK_ROWS * SOFTMAX_BLOCKS_PER_TASK;
    let mut lse = vec![0f32; n];
    let mut grad_h = vec![0f32; n * d];
    let partials: Vec<Vec<f32>> = lse
        .par_chunks_mut(task_rows)
        .zip(grad_h.par_chunks_mut(task_rows * d))
        .zip(h.par_chunks(task_rows * d))
        .map(|((lse, grad_h), h)| {
            let mut grad_w = vec![0f32; m * d];
            let mut p = vec![0f32; SOFTMAX_BLOCK_ROWS * m];
            let blocks = lse
                .chunks_mut(SOFTMAX_BLOCK_ROWS)
                .zip(grad_h.chunks_mut(SOFTMAX_BLOCK_ROWS * d))
                .zip(h.chunks(SOFTMAX_BLOCK_ROWS * d));
            for ((lse, grad_h), h) in blocks {
                let rows = lse.len();
                let p = &mut p[..rows * m];
                // L = h · wᵀ: wᵀ's (k, j) entry is w[j·d + k].
                gemm_into(p, false, Mat::rows(h, rows, d), Mat::transposed(w, d, m));
                for (value, row) in lse.iter_mut().zip(p.chunks_mut(m)) {
                    *value = softmax_row(row);
                }
                gemm_into(grad_h, false, Mat::rows(p, rows, m), Mat::rows(w, m, d));
                // Pᵀ·h: Pᵀ's (j, i) entry is p[i·m + j].
                gemm_into(&mut grad_w, true, Mat::transposed(p, m, rows), Mat::rows(h, rows, d));
            }
            grad_w
        })
        .collect();
    let mut grad_w = vec![0f32; m * d];
    for partial in &partials {
        grad_w.iter_mut().zip(partial).for_each(|(g, p)| *g += p);
    }
    (lse, grad_h, grad_w)
}

/// A dense `rows × cols` view of a slice with element `(r, c)` at `r · row_stride + c · col_stride`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows × cols`.
    fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose (`rows × cols`) of the row-major `cols × rows` matrix in `data`.
    fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: rows,
        }
    }
}

/// `dst = a · b` (`accumulate`: `dst += a · b`), `dst` row-major `a.rows × b.cols`, single-threaded
/// (the callers run blocks in parallel).
fn gemm_into(dst: &mut [f32], accumulate: bool, a: Mat, b: Mat) {
    assert_eq!(a.cols, b.rows, "gemm_into: inner dimensions");
    assert_eq!(dst.len(), a.rows * b.cols, "gemm_into: destination size");
    for m in [a, b] {
        if m.rows > 0 && m.cols > 0 {
            let last = (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride;
            assert!(last < m.data.len(), "gemm_into: view out of bounds");
        }
    }
    if dst.is_empty() {
        return;
    }
    // SAFETY: every element the views address is in bounds (checked above), `dst` is an exclusive
    // row-major `a.rows × b.cols` buffer, and the inputs do not alias it (shared borrows).
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst.as_mut_ptr(),
            1,
            b.cols as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A sparse `n_rows × n_cols` f32 matrix in compressed-row form: row `r`'s entries are
/// `row_ptr[r]..row_ptr[r + 1]` of `cols` and `values`, in the order they were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub n_cols: usize,
    /// `n_rows + 1` offsets, ascending, `row_ptr[n_rows] == nnz`.
    pub row_ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// From coordinate entries sorted by row (entries of a row keep their given order).
    ///
    /// # Panics
    /// If the three lists differ in length, rows are not ascending, or an index is out of
    /// range (bugs in the caller, which builds them).
    pub fn from_sorted_coo(n_rows: usize, n_cols: usize, rows: &[u32], cols: Vec<u32>, values: Vec<f32>) -> Self {
        assert!(
            rows.len() == cols.len() && cols.len() == values.len(),
            "Csr: entry lists differ in length"
        );
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "Csr: rows are not sorted");
        assert!(
            rows.last().is_none_or(|&r| (r as usize) < n_rows),
            "Csr: row index out of range"
        );
        assert!(
            cols.iter().all(|&c| (c as usize) < n_cols),
            "Csr: column index out of range"
        );
        Csr {
            n_cols,
            row_ptr: offsets(rows, n_rows),
            cols,
            values,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.row_ptr.len() - 1
    }

    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// The row of every entry, in storage order (the coordinate form's row list).
    pub fn entry_rows(&self) -> Vec<u32> {
        (0..self.n_rows())
            .flat_map(|r| std::iter::repeat_n(r as u32, self.row_ptr[r + 1] - self.row_ptr[r]))
            .collect()
    }

    /// The transpose, each of its rows holding the entries in ascending original row (a
    /// stable counting sort by column).
    pub fn transpose(&self) -> Csr {
        let n_rows = self.n_rows();
        let row_ptr = offsets(&self.cols, self.n_cols);
        let mut next = row_ptr.clone();
        let mut cols = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..n_rows {
            for k in self.row_ptr[r]..self.row_ptr[r + 1] {
                let slot = &mut next[self.cols[k] as usize];
                cols[*slot] = r as u32;
                values[*slot] = self.values[k];
                *slot += 1;
            }
        }
        Csr {
            n_cols: n_rows,
            row_ptr,
            cols,
            values,
        }
    }

    /// The entries `k` with `keep[k]`, in their order (rows and shape unchanged).
    ///
    /// # Panics
    /// If `keep.len() != nnz` (a bug in the caller).
    pub fn filter(&self, keep: &[bool]) -> Csr {
        assert_eq!(
            keep.len(),
            self.nnz(),
            "Csr::filter: {} flags for {} entries",
            keep.len(),
            self.nnz()
        );
        // Branch-free: every entry is written at the next free slot, which advances only for
        // kept entries (a branch on a random mask mispredicts every few entries).
        let mut row_ptr = Vec::with_capacity(self.row_ptr.len());
        let (mut cols, mut values) = (vec![0u32; self.nnz()], vec![0f32; self.nnz()]);
        let mut next = 0;
        row_ptr.push(0);
        for r in 0..self.n_rows() {
            let entries = self.row_ptr[r]..self.row_ptr[r + 1];
            let row = self.cols[entries.clone()].iter().zip(&self.values[entries.clone()]);
            for ((&c, &v), &kept) in row.zip(&keep[entries]) {
                cols[next] = c;
                values[next] = v;
                next += kept as usize;
            }
            row_ptr.push(next);
        }
        cols.truncate(next);
        values.truncate(next);
        Csr {
            n_cols: self.n_cols,
            row_ptr,
            cols,
            values,
        }
    }

    /// `self · x` for `x` holding `n_cols` rows of width `d` (row-major): `out[r] = Σ_k
    /// values[k] · x[cols[k]]` over row `r`'s entries in their stored order, starting from 0 —
    /// the same additions, in the same order, as gathering the scaled rows and scatter-adding
    /// them entry by entry, so the result is bitwise that of the gather / scatter form. Rows run
    /// in parallel.
    ///
    /// # Panics
    /// If `x.len() != n_cols · d` (a bug in the caller).
    pub fn matmul(&self, x: &[f32], d: usize) -> Vec<f32> {
        assert_eq!(
            x.len(),
            self.n_cols * d,
            "Csr::matmul: x has {} values, want {} × {d}",
            x.len(),
            self.n_cols
        );
        let mut out = vec![0f32; self.n_rows() * d];
        if d == 0 {
            return out;
        }
        // Whole rows per task, about CHUNK output values each.
        let rows_per_task = (CHUNK / d).max(1);
        out.par_chunks_mut(rows_per_task * d)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * rows_per_task;
                csr_rows(
                    &self.row_ptr[first..first + chunk.len() / d + 1],
                    &self.cols,
                    &self.values,
                    x,
                    chunk,
                );
            });
        out
    }
}

/// Compressed-row offsets (`n + 1`, ascending) of entries whose row indices are `index`: row `r`
/// gets `offsets[r]..offsets[r + 1]`, in the order of a stable sort by index.
fn offsets(index: &[u32], n: usize) -> Vec<usize> {
    let mut offsets = vec![0usize; n + 1];
    for &i in index {
        offsets[i as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    offsets
}

simd_dispatch! {
    fn csr_rows(row_ptr: &[usize], cols: &[u32], values: &[f32], x: &[f32], out: &mut [f32]) -> () = csr_rows_portable;
}

/// Rows `row_ptr.len() - 1` of a [`Csr::matmul`] into `out` (zeroed, `d` = its row width).
/// The common embedding widths get a fixed-size accumulator the compiler keeps in registers.
#[inline(always)]
fn csr_rows_portable(row_ptr: &[usize], cols: &[u32], values: &[f32], x: &[f32], out: &mut [f32]) {
    let d = out.len() / (row_ptr.len() - 1);
    match d {
        32 => csr_rows_fixed::<32>(row_ptr, cols, values, x, out),
        64 => csr_rows_fixed::<64>(row_ptr, cols, values, x, out),
        _ => {
            for (r, out_row) in out.chunks_exact_mut(d).enumerate() {
                for k in row_ptr[r]..row_ptr[r + 1] {
                    let (w, c) = (values[k], cols[k] as usize);
                    // `*o += s * w`, not a fused multiply-add: the gather / scatter's rounding.
                    for (o, &s) in out_row.iter_mut().zip(&x[c * d..(c + 1) * d]) {
                        *o += s * w;
                    }
                }
            }
        }
    }
}

/// [`csr_rows_portable`] for rows of width `D`.
#[inline(always)]
fn csr_rows_fixed<const D: usize>(row_ptr: &[usize], cols: &[u32], values: &[f32], x: &[f32], out: &mut [f32]) {
    for (r, out_row) in out.chunks_exact_mut(D).enumerate() {
        let mut acc = [0f32; D];
        for k in row_ptr[r]..row_ptr[r + 1] {
            let (w, c) = (values[k], cols[k] as usize);
            let src: &[f32; D] = x[c * D..(c + 1) * D].try_into().expect("rows of width D");
            for j in 0..D {
                acc[j] += src[j] * w;
            }
        }
        out_row.copy_from_slice(&acc);
    }
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

    /// A random sparse matrix with empty rows and columns, entries sorted by row (columns in a
    /// scrambled order within a row, as CSR allows).
    fn sparse(n_rows: usize, n_cols: usize) -> (Vec<u32>, Vec<u32>, Vec<f32>) {
        let (mut rows, mut cols, mut values) = (vec![], vec![], vec![]);
        for r in 0..n_rows {
            for k in 0..n_cols {
                let c = (k * 7 + r) % n_cols;
                if (r * 31 + c * 17) % 5 < 2 && r % 9 != 4 {
                    rows.push(r as u32);
                    cols.push(c as u32);
                    values.push(((r * n_cols + c) as f32 * 0.61).sin());
                }
            }
        }
        (rows, cols, values)
    }

    #[test]
    fn csr_matmul_is_the_gather_scatter_sum_bit_for_bit() {
        // Enough rows for several parallel tasks, a width that is not a lane multiple.
        // (The fixed-width paths for 32 and 64 as well.)
        for d in [37, 32, 64] {
            let (n_rows, n_cols) = (1200, 301);
            let (rows, cols, values) = sparse(n_rows, n_cols);
            let x: Vec<f32> = (0..n_cols * d).map(|k| (k as f32 * 0.13).cos() * 3.0).collect();
            let csr = Csr::from_sorted_coo(n_rows, n_cols, &rows, cols.clone(), values.clone());
            assert_eq!(csr.nnz(), rows.len());
            let got = csr.matmul(&x, d);
            // The gather / scatter form: scaled source rows added to their destination, entry by entry.
            let mut want = vec![0f32; n_rows * d];
            for k in 0..rows.len() {
                let (r, c) = (rows[k] as usize, cols[k] as usize);
                for j in 0..d {
                    want[r * d + j] += x[c * d + j] * values[k];
                }
            }
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
            // Rows without entries are zero.
            assert!(got[4 * d..5 * d].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn csr_transpose_multiplies_as_the_transposed_dense_matrix() {
        let (n_rows, n_cols, d) = (40, 23, 3);
        let (rows, cols, values) = sparse(n_rows, n_cols);
        let csr = Csr::from_sorted_coo(n_rows, n_cols, &rows, cols, values);
        let t = csr.transpose();
        assert_eq!((t.n_rows(), t.n_cols, t.nnz()), (n_cols, n_rows, csr.nnz()));
        // Dense A, then Aᵀ·y by definition.
        let mut dense = vec![0f32; n_rows * n_cols];
        for r in 0..n_rows {
            for k in csr.row_ptr[r]..csr.row_ptr[r + 1] {
                dense[r * n_cols + csr.cols[k] as usize] += csr.values[k];
            }
        }
        let y: Vec<f32> = (0..n_rows * d).map(|k| k as f32 * 0.25 - 7.0).collect();
        let got = t.matmul(&y, d);
        for c in 0..n_cols {
            for j in 0..d {
                let want: f32 = (0..n_rows).map(|r| dense[r * n_cols + c] * y[r * d + j]).sum();
                assert!(
                    (got[c * d + j] - want).abs() < 1e-4,
                    "({c}, {j}): {} vs {want}",
                    got[c * d + j]
                );
            }
        }
        // Each transposed row lists its entries in ascending original row.
        for c in 0..n_cols {
            let seg = &t.cols[t.row_ptr[c]..t.row_ptr[c + 1]];
            assert!(seg.windows(2).all(|w| w[0] < w[1]));
        }
        // Transposing twice gives the matrix back (columns now ascending within each row).
        close(
            &t.transpose().matmul(&vec![1.0; n_cols], 1),
            &csr.matmul(&vec![1.0; n_cols], 1),
            1e-6,
        );
    }

    #[test]
    #[should_panic(expected = "Csr: rows are not sorted")]
    fn csr_rejects_unsorted_rows() {
        Csr::from_sorted_coo(3, 3, &[1, 0], vec![0, 0], vec![1.0, 1.0]);
    }

    #[test]
    fn linear_softmax_grads_match_the_definition() {
        // n not a multiple of the block or task size, several tasks; m and d odd.
        let (n, m, d) = (SOFTMAX_BLOCK_ROWS * SOFTMAX_BLOCKS_PER_TASK * 2 + 37, 301, 13);
        let h: Vec<f32> = (0..n * d).map(|k| (k as f32 * 0.37).sin() * 2.0).collect();
        let w: Vec<f32> = (0..m * d).map(|k| (k as f32 * 0.23).cos() * 1.5).collect();
        let (lse, grad_h, grad_w) = linear_softmax_grads(&h, &w, d);
        // The definition in f64: logits, softmax, P·w and Pᵀ·h.
        let mut p = vec![0f64; n * m];
        let mut want_lse = vec![0f64; n];
        for i in 0..n {
            let row: Vec<f64> = (0..m)
                .map(|j| (0..d).map(|k| h[i * d + k] as f64 * w[j * d + k] as f64).sum())
                .collect();
            let top = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - top).exp()).sum();
            want_lse[i] = top + z.ln();
            for j in 0..m {
                p[i * m + j] = (row[j] - want_lse[i]).exp();
            }
        }
        let lse64: Vec<f32> = want_lse.iter().map(|&v| v as f32).collect();
        close(&lse, &lse64, 2e-6);
        let gh: Vec<f32> = (0..n * d)
            .map(|x| {
                (0..m)
                    .map(|j| p[(x / d) * m + j] * w[j * d + x % d] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        close(&grad_h, &gh, 2e-5);
        let gw: Vec<f32> = (0..m * d)
            .map(|x| (0..n).map(|i| p[i * m + x / d] * h[i * d + x % d] as f64).sum::<f64>() as f32)
            .collect();
        close(&grad_w, &gw, 2e-5);
        // Deterministic: the same bits again.
        let again = linear_softmax_grads(&h, &w, d);
        assert!(again.2.iter().zip(&grad_w).all(|(a, b)| a.to_bits() == b.to_bits()));
        // A NaN input poisons only its own row's log-sum-exp and gradient.
        let mut bad = h.clone();
        bad[5 * d] = f32::NAN;
        let (lse, grad_h, _) = linear_softmax_grads(&bad, &w, d);
        assert!(lse[5].is_nan() && grad_h[5 * d].is_nan());
        assert!(lse[4].is_finite() && lse[6].is_finite());
    }

    #[test]
    #[should_panic(expected = "linear_softmax_grads: 10 and 9 values in rows of 3")]
    fn linear_softmax_grads_rejects_ragged_rows() {
        linear_softmax_grads(&[0.0; 10], &[0.0; 9], 3);
    }
}
