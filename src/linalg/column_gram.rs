//! `XᵀX` of a tall column-major matrix (the C × C Grams `J_iJ_iᵀ` and `J_xᵀJ_x` of the per-sample
//! engine, [`crate::measure::per_sample`]): a register-blocked kernel, fused multiply-adds on
//! AVX-512 CPUs (detected at run time), a fixed summation order on every CPU.

use nalgebra::DMatrix;

use super::sparse_gemm::Kernel;

/// `XᵀX` for `X = data` viewed as an `r × c` column-major matrix (`r = data.len() / c`).
///
/// Each entry is a dot product of two columns with eight interleaved partial sums over the rows
/// in order, then the remaining rows (a fixed order); the entries are computed in 4 × 4 blocks
/// of columns so that each chunk of 8 rows is loaded once per block (16 multiply-adds per 8
/// loads). The AVX-512 build fuses the multiply-adds.
pub(crate) fn column_gram(data: &[f64], c: usize) -> DMatrix<f64> {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect().is_some() {
        // SAFETY: AVX-512F and FMA are available.
        return unsafe { column_gram_avx512(data, c) };
    }
    column_gram_body::<false>(data, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn column_gram_avx512(data: &[f64], c: usize) -> DMatrix<f64> {
    column_gram_body::<true>(data, c)
}

#[inline(always)]
fn column_gram_body<const FMA: bool>(data: &[f64], c: usize) -> DMatrix<f64> {
    const LANES: usize = 8;
    const BS: usize = 4;
    let r = data.len() / c;
    let chunks = r / LANES;
    let mut g = DMatrix::zeros(c, c);
    // Offsets of the columns of a block (clamped: a block past the last column repeats it; those
    // entries are not used).
    let offsets =
        |first: usize| -> [usize; BS] { std::array::from_fn(|q| (first + q).min(c - 1) * r) };
    let load = |off: usize| -> [f64; LANES] {
        // SAFETY: `off + LANES ≤ data.len()`: off = k·r + o with k < c and o + LANES ≤ r.
        unsafe { std::ptr::read(data.as_ptr().add(off) as *const [f64; LANES]) }
    };
    for a0 in (0..c).step_by(BS) {
        let oa = offsets(a0);
        for b0 in (a0..c).step_by(BS) {
            let ob = offsets(b0);
            let mut acc = [[[0.0f64; LANES]; BS]; BS];
            for ch in 0..chunks {
                let o = ch * LANES;
                let va: [[f64; LANES]; BS] = std::array::from_fn(|p| load(oa[p] + o));
                let vb: [[f64; LANES]; BS] = std::array::from_fn(|q| load(ob[q] + o));
                for p in 0..BS {
                    for q in 0..BS {
                        for l in 0..LANES {
                            acc[p][q][l] = if FMA {
                                va[p][l].mul_add(vb[q][l], acc[p][q][l])
                            } else {
                                acc[p][q][l] + va[p][l] * vb[q][l]
                            };
                        }
                    }
                }
            }
            for (p, acc_p) in acc.iter().enumerate() {
                for (q, acc_pq) in acc_p.iter().enumerate() {
                    let (a, b) = (a0 + p, b0 + q);
                    if a >= c || b >= c || b < a {
                        continue;
                    }
                    let tail: f64 = (chunks * LANES..r)
                        .map(|j| data[a * r + j] * data[b * r + j])
                        .sum();
                    let v = acc_pq.iter().sum::<f64>() + tail;
                    g[(a, b)] = v;
                    g[(b, a)] = v;
                }
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_data;

    #[test]
    fn column_gram_matches_a_naive_product() {
        // Row counts below, at and above the 8-row chunk with a tail, and column counts that leave
        // a partial 4 × 4 block.
        for (r, c) in [(3, 1), (8, 4), (21, 5), (64, 10)] {
            let x = random_data(r, c, 7 + r as u64);
            let g = column_gram(x.as_slice(), c);
            let want = x.transpose() * &x;
            for a in 0..c {
                for b in 0..c {
                    // Both sums of r products carry rounding ≤ γ_r·Σ|terms| in any order
                    // (γ_r = r·u/(1 − r·u) < 1.01·r·u for r ≤ 64, u = ε/2): they differ by at
                    // most 2·γ_r·Σ|terms| < 1.01·r·ε·Σ|terms|.
                    let abs: f64 = (0..r).map(|j| (x[(j, a)] * x[(j, b)]).abs()).sum();
                    let tol = 1.01 * r as f64 * f64::EPSILON * abs;
                    assert!(
                        (g[(a, b)] - want[(a, b)]).abs() <= tol,
                        "{r}×{c} ({a}, {b})"
                    );
                }
            }
            assert_eq!(g, g.transpose(), "symmetric by construction");
        }
    }
}
