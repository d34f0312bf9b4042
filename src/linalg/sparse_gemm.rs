//! Sparse-inner-dimension GEMM tiles (AVX-512 register kernels with a portable reference), the
//! hot products of the ReLU backward pass of [`crate::measure::per_sample`].
//!
//! With σ′ ∈ {0, 1} the backward quantities of a sample vanish exactly off its active units, so
//! each product `Wᵀ Δ` has an inner dimension that runs over the active units only, a different
//! index set per sample. The weights `A = Wᵀ` are packed once ([`PackedT`]) in panels of `MR` rows
//! (one MR-vector per inner index), and a register kernel accumulates an `MR × nc` tile while
//! skipping the inactive inner indices ([`sparse_products`]). For Δ only the selected rows of each
//! panel are formed ([`sparse_products_selected`]: a panel with ≤ 8 of them is permuted into one
//! vector, half the FMAs) and written compactly. Panels are processed in L2-sized groups for all
//! samples of a block.
//!
//! The kernel is chosen at run time ([`Kernel::detect`]: AVX-512F + FMA); [`Kernel::Portable`]
//! is plain Rust for other CPUs' tests and as the reference. Each entry is summed over the inner
//! indices in order (deterministic); the AVX-512 kernels fuse the multiply-adds.
//!
//! **Safety.** The tile functions take raw pointers; their bounds are established once per call
//! by `check_operands` and the assertions of the two public entry points, and every `unsafe`
//! block states what it relies on.

use nalgebra::DMatrix;

/// Rows per panel of the packed weights (two AVX-512 vectors).
pub(crate) const MR: usize = 16;
/// Most output columns one kernel call keeps in registers (2·12 accumulators + 2 loads ≤ 32).
const NC_MAX: usize = 12;

/// Packed weights per group of panels in [`sparse_products`] (half of a 1 MB L2).
const PANEL_GROUP_BYTES: usize = 512 * 1024;
/// Inner indices the sparse kernel prefetches ahead.
const PREFETCH_AHEAD: usize = 8;

/// Register kernel of the sparse products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// AVX-512F + FMA (runtime-detected).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Plain Rust, any target (used by tests and as a reference).
    #[allow(dead_code)]
    Portable,
}

impl Kernel {
    /// The fast kernel of this CPU, if any (AVX-512F and FMA, detected at run time).
    pub(crate) fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(Kernel::Avx512);
        }
        None
    }
}

/// `A = Wᵀ` of one layer (`rows = fan-in`, `k = fan-out`) packed in panels of MR rows:
/// `data[(p·k + κ)·MR + r] = A[p·MR + r, κ]`, rows past `rows` zero.
pub(crate) struct PackedT {
    /// Rows of `A` (the fan-in of the layer).
    pub(crate) rows: usize,
    /// Columns of `A`: the inner dimension of the products (the fan-out of the layer).
    pub(crate) k: usize,
    data: Vec<f64>,
}

impl PackedT {
    /// Pack `Wᵀ` of the weight matrix `w` (`fan-out × fan-in`).
    pub(crate) fn new(w: &DMatrix<f64>) -> Self {
        let (k, rows) = w.shape();
        let panels = rows.div_ceil(MR);
        let mut data = vec![0.0; panels * k * MR];
        for col in 0..rows {
            let (p, r) = (col / MR, col % MR);
            for (kappa, &v) in w.column(col).iter().enumerate() {
                data[(p * k + kappa) * MR + r] = v;
            }
        }
        Self { rows, k, data }
    }

    /// Number of panels, `⌈rows / MR⌉`.
    pub(crate) fn panels(&self) -> usize {
        self.rows.div_ceil(MR)
    }

    /// Panel p: `k` MR-vectors.
    fn panel(&self, p: usize) -> &[f64] {
        &self.data[p * self.k * MR..(p + 1) * self.k * MR]
    }
}

/// For every sample s: `out_s[r + c·rows] = Σ_t A[r, idx_s[t]] · b_s[t·ncols + c]` for every
/// row `r < a.rows` and column `c < ncols`, where `out_s = out[s·rows·ncols ..]`: the product of
/// the columns `idx_s` of `A` with the compact `|idx_s| × ncols` row-major `b_s` (row-major so
/// that the kernel broadcasts a row from one address with constant offsets).
///
/// Loop order: groups of panels (about [`PANEL_GROUP_BYTES`], kept in L2) outside, samples
/// inside, so each packed panel is read from L2 for every sample of the block.
pub(crate) fn sparse_products(
    kernel: Kernel,
    a: &PackedT,
    idx: &[Vec<u32>],
    b: &[Vec<f64>],
    ncols: usize,
    out: &mut [f64],
) {
    let n = idx.len();
    let out_len = a.rows * ncols;
    check_operands(a, idx, b, ncols);
    assert!(out.len() >= n * out_len, "sparse_products: out size");
    for_each_tile(a, n, ncols, |s, p, c0, nc| {
        let ids = &idx[s];
        let rv = MR.min(a.rows - p * MR);
        let out_s = &mut out[s * out_len..(s + 1) * out_len];
        // SAFETY: every ids[t] < a.k (checked), so the panel reads `ids[t]·MR .. +MR` are in
        // bounds; b reads `t·ncols + c0 + c < b_s.len()`; out writes `p·MR + r + (c0 + c)·rows`
        // with r < rv ≤ rows − p·MR and c0 + c < ncols, below `rows·ncols = out_s.len()`.
        unsafe {
            run_tile(
                kernel,
                nc,
                a.panel(p).as_ptr(),
                ids,
                b[s].as_ptr().add(c0),
                ncols,
                out_s.as_mut_ptr().add(p * MR + c0 * a.rows),
                a.rows,
                rv,
            );
        }
    });
}

/// Like [`sparse_products`], but only the rows selected by `sel[s][p] = (mask, t0)` (bit r of
/// `mask` ↔ row `p·MR + r`; `t0` = selected rows in the panels before p) are formed, and they are
/// written compactly: the j-th selected row of panel p goes to row `t0 + j` of `dst_s`
/// (`n_s × ncols`, column-major, `n_s` = selected rows of sample s). With the AVX-512 kernel a
/// panel with at most 8 selected rows costs half a full tile.
pub(crate) fn sparse_products_selected(
    kernel: Kernel,
    a: &PackedT,
    idx: &[Vec<u32>],
    b: &[Vec<f64>],
    ncols: usize,
    sel: &[Vec<(u16, u32)>],
    dst: &mut [Vec<f64>],
) {
    let n = idx.len();
    check_operands(a, idx, b, ncols);
    assert!(
        sel.len() == n && dst.len() == n,
        "sparse_products_selected: samples"
    );
    for (s, (sel_s, dst_s)) in sel.iter().zip(dst.iter()).enumerate() {
        assert_eq!(sel_s.len(), a.panels(), "sparse_products_selected: panels");
        let rows = dst_s.len() / ncols.max(1);
        assert_eq!(
            dst_s.len(),
            rows * ncols,
            "sparse_products_selected: dst shape"
        );
        let mut t = 0u32;
        for (p, &(mask, t0)) in sel_s.iter().enumerate() {
            let rv = MR.min(a.rows - p * MR);
            assert!(
                t0 == t && (rv == MR || mask >> rv == 0),
                "sparse_products_selected: selection of sample {s}, panel {p}"
            );
            t += mask.count_ones();
        }
        assert_eq!(t as usize, rows, "sparse_products_selected: dst rows");
    }
    for_each_tile(a, n, ncols, |s, p, c0, nc| {
        let (mask, t0) = sel[s][p];
        if mask == 0 {
            return;
        }
        let ids = &idx[s];
        let dst_s = &mut dst[s];
        let ld = dst_s.len() / ncols;
        // SAFETY: panel and b reads as in `sparse_products`; the writes go to rows
        // `t0 .. t0 + popcount(mask) ≤ ld` (checked above) of columns `c0 .. c0 + nc ≤ ncols`.
        unsafe {
            run_tile_selected(
                kernel,
                nc,
                a.panel(p).as_ptr(),
                ids,
                b[s].as_ptr().add(c0),
                ncols,
                dst_s.as_mut_ptr().add(t0 as usize + c0 * ld),
                ld,
                mask,
            );
        }
    });
}

/// Shapes and index ranges of the operands of the sparse products (the kernels rely on them).
fn check_operands(a: &PackedT, idx: &[Vec<u32>], b: &[Vec<f64>], ncols: usize) {
    assert_eq!(b.len(), idx.len(), "sparse products: samples");
    for (ids, bs) in idx.iter().zip(b) {
        assert_eq!(bs.len(), ids.len() * ncols, "sparse products: b shape");
        assert!(
            ids.iter().all(|&kappa| (kappa as usize) < a.k),
            "sparse products: index out of range"
        );
    }
}

/// Calls `tile(s, p, c0, nc)` for every sample s, panel p and column chunk `c0 .. c0 + nc`
/// (balanced widths ≤ NC_MAX): groups of panels of about [`PANEL_GROUP_BYTES`] outside, samples
/// inside, so a group stays in L2 while every sample of the block uses it.
fn for_each_tile(
    a: &PackedT,
    samples: usize,
    ncols: usize,
    mut tile: impl FnMut(usize, usize, usize, usize),
) {
    let n_chunks = ncols.div_ceil(NC_MAX);
    let (base, extra) = (ncols / n_chunks.max(1), ncols % n_chunks.max(1));
    let group = (PANEL_GROUP_BYTES / (a.k * MR * 8).max(1)).max(1);
    for p0 in (0..a.panels()).step_by(group) {
        for s in 0..samples {
            for p in p0..(p0 + group).min(a.panels()) {
                let mut c0 = 0;
                for ch in 0..n_chunks {
                    let nc = base + usize::from(ch < extra);
                    tile(s, p, c0, nc);
                    c0 += nc;
                }
            }
        }
    }
}

macro_rules! dispatch_nc {
    ($f:ident, $nc:expr, $($arg:expr),*) => {
        match $nc {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            10 => $f::<10>($($arg),*),
            11 => $f::<11>($($arg),*),
            12 => $f::<12>($($arg),*),
            _ => unreachable!("column chunk wider than NC_MAX"),
        }
    };
}

/// One MR × nc tile of [`sparse_products`] (which states the bounds the caller guarantees).
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile(
    kernel: Kernel,
    nc: usize,
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    out: *mut f64,
    ldo: usize,
    rv: usize,
) {
    // SAFETY: forwarded bounds; the AVX-512 variant only exists after runtime detection.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => dispatch_nc!(tile_avx512, nc, a, idx, b, ldb, out, ldo, rv),
            Kernel::Portable => dispatch_nc!(tile_portable, nc, a, idx, b, ldb, out, ldo, rv),
        }
    }
}

/// The selected rows of one tile of [`sparse_products_selected`] (bounds stated there).
#[allow(clippy::too_many_arguments)]
unsafe fn run_tile_selected(
    kernel: Kernel,
    nc: usize,
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    dst: *mut f64,
    ldd: usize,
    mask: u16,
) {
    // SAFETY: forwarded bounds; the AVX-512 variant only exists after runtime detection.
    unsafe {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                dispatch_nc!(tile_selected_avx512, nc, a, idx, b, ldb, dst, ldd, mask)
            }
            Kernel::Portable => {
                dispatch_nc!(tile_selected_portable, nc, a, idx, b, ldb, dst, ldd, mask)
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const NC: usize>(
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    out: *mut f64,
    ldo: usize,
    rv: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        let acc = accumulate::<NC, true>(a, idx, b, ldb);
        store_rows(&acc, out, ldo, rv);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn tile_portable<const NC: usize>(
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    out: *mut f64,
    ldo: usize,
    rv: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        let acc = accumulate::<NC, false>(a, idx, b, ldb);
        store_rows(&acc, out, ldo, rv);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn tile_selected_portable<const NC: usize>(
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    dst: *mut f64,
    ldd: usize,
    mask: u16,
) {
    // SAFETY: forwarded.
    unsafe {
        let acc = accumulate::<NC, false>(a, idx, b, ldb);
        for (c, acc_c) in acc.iter().enumerate() {
            let mut j = 0;
            for (r, &v) in acc_c.iter().enumerate() {
                if mask >> r & 1 == 1 {
                    *dst.add(c * ldd + j) = v;
                    j += 1;
                }
            }
        }
    }
}

/// [`tile_selected_portable`] with AVX-512: when at most 8 rows of the panel are selected, one
/// two-source permute gathers them into a single vector per inner index, halving the FMAs; else
/// the full tile is accumulated and the selected lanes are compressed on store. Same FMAs in the
/// same order per entry as [`tile_avx512`], so the values are identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_selected_avx512<const NC: usize>(
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
    dst: *mut f64,
    ldd: usize,
    mask: u16,
) {
    use std::arch::x86_64::*;
    let n = mask.count_ones();
    // SAFETY: the caller guarantees the bounds (see `sparse_products_selected`); masked stores
    // touch only the selected lanes.
    unsafe {
        if n <= 8 {
            let mut pos = [0i64; 8];
            let mut j = 0;
            for (r, p) in (0..MR as i64).filter(|&r| mask >> r & 1 == 1).zip(0..) {
                pos[p] = r;
                j = p + 1;
            }
            debug_assert_eq!(j as u32, n);
            let perm = _mm512_loadu_epi64(pos.as_ptr());
            let mut acc = [_mm512_setzero_pd(); NC];
            for (t, &kappa) in idx.iter().enumerate() {
                if let Some(&ahead) = idx.get(t + PREFETCH_AHEAD) {
                    prefetch_mr(a.add(ahead as usize * MR));
                }
                let p = a.add(kappa as usize * MR);
                let v = _mm512_permutex2var_pd(_mm512_loadu_pd(p), perm, _mm512_loadu_pd(p.add(8)));
                for (c, acc_c) in acc.iter_mut().enumerate() {
                    *acc_c = _mm512_fmadd_pd(v, _mm512_set1_pd(*b.add(t * ldb + c)), *acc_c);
                }
            }
            let store = ((1u16 << n) - 1) as __mmask8;
            for (c, acc_c) in acc.iter().enumerate() {
                _mm512_mask_storeu_pd(dst.add(c * ldd), store, *acc_c);
            }
        } else {
            let mut lo = [_mm512_setzero_pd(); NC];
            let mut hi = [_mm512_setzero_pd(); NC];
            for (t, &kappa) in idx.iter().enumerate() {
                if let Some(&ahead) = idx.get(t + PREFETCH_AHEAD) {
                    prefetch_mr(a.add(ahead as usize * MR));
                }
                let p = a.add(kappa as usize * MR);
                let (vl, vh) = (_mm512_loadu_pd(p), _mm512_loadu_pd(p.add(8)));
                for c in 0..NC {
                    let bv = _mm512_set1_pd(*b.add(t * ldb + c));
                    lo[c] = _mm512_fmadd_pd(vl, bv, lo[c]);
                    hi[c] = _mm512_fmadd_pd(vh, bv, hi[c]);
                }
            }
            let (ml, mh) = (mask as u8, (mask >> 8) as u8);
            let nl = ml.count_ones();
            let (sl, sh) = (
                ((1u16 << nl) - 1) as __mmask8,
                ((1u16 << mh.count_ones()) - 1) as __mmask8,
            );
            for c in 0..NC {
                let d = dst.add(c * ldd);
                _mm512_mask_storeu_pd(d, sl, _mm512_maskz_compress_pd(ml, lo[c]));
                _mm512_mask_storeu_pd(d.add(nl as usize), sh, _mm512_maskz_compress_pd(mh, hi[c]));
            }
        }
    }
}

/// Prefetch the MR-vector at `p` (two cache lines) into L1.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_mr(p: *const f64) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: prefetching has no side effects, even for an invalid address.
    unsafe {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
        _mm_prefetch::<_MM_HINT_T0>((p as *const i8).add(64));
    }
}

/// `acc[c][r] = Σ_t a[idx[t]·MR + r] · b[t·ldb + c]` over t in order (deterministic), with
/// constant trip counts so that the MR × NC accumulators live in registers.
#[inline(always)]
unsafe fn accumulate<const NC: usize, const FMA: bool>(
    a: *const f64,
    idx: &[u32],
    b: *const f64,
    ldb: usize,
) -> [[f64; MR]; NC] {
    let mut acc = [[0.0f64; MR]; NC];
    for (t, &kappa) in idx.iter().enumerate() {
        #[cfg(target_arch = "x86_64")]
        if FMA && let Some(&ahead) = idx.get(t + PREFETCH_AHEAD) {
            // The inner indices skip inactive units, which defeats the hardware prefetcher.
            // SAFETY: no side effects.
            unsafe { prefetch_mr(a.add(ahead as usize * MR)) };
        }
        // SAFETY: caller guarantees the bounds (see `sparse_products`).
        let av = unsafe { std::ptr::read(a.add(kappa as usize * MR) as *const [f64; MR]) };
        for (c, acc_c) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let bv = unsafe { *b.add(t * ldb + c) };
            for r in 0..MR {
                acc_c[r] = if FMA {
                    av[r].mul_add(bv, acc_c[r])
                } else {
                    acc_c[r] + av[r] * bv
                };
            }
        }
    }
    acc
}

/// `out[c·ldo + r] = acc[c][r]` for `r < rv`.
#[inline(always)]
unsafe fn store_rows<const NC: usize>(acc: &[[f64; MR]; NC], out: *mut f64, ldo: usize, rv: usize) {
    for (c, acc_c) in acc.iter().enumerate() {
        for (r, &v) in acc_c.iter().enumerate().take(rv) {
            // SAFETY: caller guarantees the bounds.
            unsafe { *out.add(c * ldo + r) = v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_data;

    #[test]
    fn sparse_products_match_a_naive_product() {
        // Rows not a multiple of MR, an empty index set, column counts on both sides of NC_MAX,
        // and row selections with 0, ≤ 8 and > 8 rows per panel (the two AVX-512 variants).
        let w = random_data(13, 37, 31); // W: 13 × 37, A = Wᵀ: 37 × 13
        let pack = PackedT::new(&w);
        assert_eq!((pack.rows, pack.k, pack.panels()), (37, 13, 3));
        let mut kernels = vec![Kernel::Portable];
        kernels.extend(Kernel::detect());
        let idx: Vec<Vec<u32>> = vec![vec![0, 2, 3, 7, 12], vec![], (0..13).collect(), vec![5]];
        // Selected rows per sample: masks of the three panels (the last panel has 5 rows).
        let masks: [[u16; 3]; 4] = [
            [0xFFFF, 0x0000, 0x001F],
            [0x8421, 0x0F0F, 0x0011],
            [0x0001, 0xFFF7, 0x0000],
            [0x00FF, 0xFF00, 0x0010],
        ];
        let sel: Vec<Vec<(u16, u32)>> = masks
            .iter()
            .map(|m| {
                let mut t = 0;
                m.iter()
                    .map(|&mask| {
                        let e = (mask, t);
                        t += mask.count_ones();
                        e
                    })
                    .collect()
            })
            .collect();
        // b_s is |idx_s| × ncols row-major.
        let naive = |s: usize, r: usize, col: usize, ncols: usize, b: &[Vec<f64>]| -> f64 {
            idx[s]
                .iter()
                .enumerate()
                .map(|(t, &kk)| w[(kk as usize, r)] * b[s][t * ncols + col])
                .sum()
        };
        // Sums of ≤ 13 products of entries ≤ 1.8 in size: rounding ≤ 13·u·Σ|terms| < 1e-13.
        let close = |got: f64, want: f64| (got - want).abs() < 1e-13;
        for ncols in [1, 5, 12, 13, 25] {
            let b: Vec<Vec<f64>> = idx
                .iter()
                .enumerate()
                .map(|(s, ids)| {
                    let m = random_data(ids.len().max(1), ncols, 40 + s as u64);
                    m.as_slice()[..ids.len() * ncols].to_vec()
                })
                .collect();
            for &kernel in &kernels {
                let len = 37 * ncols;
                let mut out = vec![f64::NAN; idx.len() * len];
                sparse_products(kernel, &pack, &idx, &b, ncols, &mut out);
                for s in 0..idx.len() {
                    for r in 0..37 {
                        for col in 0..ncols {
                            let (got, want) =
                                (out[s * len + r + col * 37], naive(s, r, col, ncols, &b));
                            assert!(close(got, want), "{kernel:?} {ncols} {s} {r} {col}");
                        }
                    }
                }
                let mut dst: Vec<Vec<f64>> = masks
                    .iter()
                    .map(|m| {
                        let rows: u32 = m.iter().map(|v| v.count_ones()).sum();
                        vec![f64::NAN; rows as usize * ncols]
                    })
                    .collect();
                sparse_products_selected(kernel, &pack, &idx, &b, ncols, &sel, &mut dst);
                for (s, m) in masks.iter().enumerate() {
                    let rows: Vec<usize> = (0..37)
                        .filter(|&r| m[r / MR] >> (r % MR) & 1 == 1)
                        .collect();
                    for (t, &r) in rows.iter().enumerate() {
                        for col in 0..ncols {
                            let got = dst[s][t + col * rows.len()];
                            let want = naive(s, r, col, ncols, &b);
                            assert!(close(got, want), "{kernel:?} sel {ncols} {s} {r} {col}");
                            // Same FMAs in the same order as the full tile.
                            assert_eq!(got, out[s * len + r + col * 37]);
                        }
                    }
                }
            }
        }
    }
}
