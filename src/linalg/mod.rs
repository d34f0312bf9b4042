//! All dense linear algebra behind one module, so that a backend swap stays possible: GEMM comes
//! from nalgebra (matrixmultiply), symmetric eigendecompositions from faer (blocked, far faster
//! than nalgebra's unblocked QR at the Gram sizes flatcert uses; faer's GEMM is not used), the
//! rigorous eigenvalue bounds of THEORY.md §3 items 3 and 6, and the hand-written kernels of the
//! per-sample engine (crate-internal):
//!
//! - `sparse_gemm`: the AVX-512 register tiles (with a portable reference) of the ReLU backward
//!   pass, whose inner dimension runs over each sample's active units only;
//! - `column_gram`: `XᵀX` of a tall column-major block (the C × C per-sample Grams).
//!
//! Every kernel sums in a fixed order, so results do not depend on the thread count.
//!
//! Eigenvalues are returned **sorted in decreasing order** (nalgebra's come unsorted; faer's
//! ascending).

pub(crate) mod column_gram;
pub(crate) mod sparse_gemm;

use nalgebra::{DMatrix, DVector};

use crate::error::{Error, Result};
use crate::quantity::{gamma, round_down, round_up};

/// Eigen-decomposition of a symmetric matrix, eigenvalues in decreasing order.
#[derive(Debug, Clone)]
pub struct SymEigen {
    /// Eigenvalues λ̂_1 ≥ λ̂_2 ≥ … ≥ λ̂_N.
    pub values: Vec<f64>,
    /// Column j is the eigenvector of `values[j]`.
    pub vectors: DMatrix<f64>,
}

/// Rigorous two-sided bounds on the extreme eigenvalues of a symmetric `S` from computed
/// eigenpairs (THEORY.md §3 item 3, the sign-safe Weyl bound, with the rounding allowances).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EigenBounds {
    /// Upper bound on λ_max(S).
    pub max_upper: f64,
    /// Lower bound on λ_max(S) (Rayleigh quotient of the top Ritz vector minus its rounding).
    pub max_lower: f64,
    /// Lower bound on λ_min(S).
    pub min_lower: f64,
    /// ‖S − Q̂Λ̂Q̂ᵀ‖_F, the computed residual.
    pub residual: f64,
    /// ‖Q̂ᵀQ̂ − I‖_F, the computed loss of orthogonality.
    pub orthogonality: f64,
}

fn to_faer(a: &DMatrix<f64>) -> faer::Mat<f64> {
    faer::Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)])
}

/// Symmetric eigendecomposition (faer, sequential so results do not depend on the thread
/// count). Only the lower triangle of `s` is read. Fails on non-finite entries.
pub fn sym_eigen(s: &DMatrix<f64>) -> Result<SymEigen> {
    let n = s.nrows();
    if n != s.ncols() {
        return Err(Error::Internal(format!(
            "sym_eigen of a {n}×{} matrix",
            s.ncols()
        )));
    }
    if s.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numerical(
            "symmetric eigenproblem with a non-finite entry".into(),
        ));
    }
    if n == 0 {
        return Ok(SymEigen {
            values: vec![],
            vectors: DMatrix::zeros(0, 0),
        });
    }
    faer::set_global_parallelism(faer::Par::Seq);
    let fm = to_faer(s);
    let evd = fm
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| Error::Numerical(format!("symmetric eigensolver did not converge: {e:?}")))?;
    let u = evd.U();
    let sd = evd.S().column_vector();
    // faer: ascending. Reverse to decreasing.
    let values: Vec<f64> = (0..n).rev().map(|j| sd[j]).collect();
    let vectors = DMatrix::from_fn(n, n, |i, j| u[(i, n - 1 - j)]);
    Ok(SymEigen { values, vectors })
}

/// Rigorous bounds on λ_max(S) and λ_min(S) from a computed decomposition (THEORY.md §3 item 3):
///
/// `λ_max(S) ≤ λ̂_max + |λ̂_max|·‖Q̂ᵀQ̂ − I‖_F + ‖S − Q̂Λ̂Q̂ᵀ‖_F + allowances`,
///
/// where the allowances cover the rounding of the residual, `γ_{N+1}(‖S‖_F + max|λ̂|·‖Q̂‖_F²)`
/// (since `‖|Q̂||Λ̂||Q̂ᵀ|‖_F ≤ max|λ̂|·‖Q̂‖_F²`), and of the orthogonality defect,
/// `γ_{N+1}‖Q̂‖_F²`. The lower bound on λ_max is the Rayleigh quotient of the top eigenvector
/// minus its rounding `γ_{2N+2}‖S‖_F` (§3 item 4). Every sum is rounded outward.
pub fn eigen_bounds(s: &DMatrix<f64>, eig: &SymEigen) -> EigenBounds {
    let n = s.nrows();
    if n == 0 {
        return EigenBounds {
            max_upper: 0.0,
            max_lower: 0.0,
            min_lower: 0.0,
            residual: 0.0,
            orthogonality: 0.0,
        };
    }
    let q = &eig.vectors;
    let mut q_scaled = q.clone();
    for (j, mut col) in q_scaled.column_iter_mut().enumerate() {
        col *= eig.values[j];
    }
    let mut resid = s.clone();
    resid.gemm(-1.0, &q_scaled, &q.transpose(), 1.0);
    // Only the lower triangle of s is meaningful to the solver; s is symmetric by contract.
    let residual = resid.norm();
    let mut qtq = q.transpose() * q;
    for i in 0..n {
        qtq[(i, i)] -= 1.0;
    }
    let orthogonality = qtq.norm();
    let g = gamma(n + 1);
    let s_norm = s.norm();
    let q_norm2 = q.norm_squared();
    let lam_abs_max = eig.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let resid_allow = g * (s_norm + lam_abs_max * q_norm2);
    let orth_allow = g * q_norm2;
    let resid_bound = round_up(round_up(residual) + resid_allow);
    let orth_bound = round_up(round_up(orthogonality) + orth_allow);
    let top = eig.values[0];
    let bottom = eig.values[n - 1];
    let max_upper = round_up(round_up(top + top.abs() * orth_bound) + resid_bound);
    let min_lower = round_down(round_down(bottom - bottom.abs() * orth_bound) - resid_bound);
    // Rayleigh quotient of the top eigenvector, recomputed, minus its rounding.
    let v: DVector<f64> = q.column(0).into_owned();
    let sv = s * &v;
    let vv = v.norm_squared();
    let rq = v.dot(&sv) / vv;
    let max_lower = round_down(rq - round_up(gamma(2 * n + 2) * s_norm));
    EigenBounds {
        max_upper,
        max_lower: max_lower.min(max_upper),
        min_lower,
        residual,
        orthogonality,
    }
}

/// Rigorous two-sided bounds on the spectral norm ‖W‖₂ (THEORY.md §3 item 6).
///
/// Upper: the Weyl bound of the smaller Gram matrix (`WWᵀ` or `WᵀW`) plus its formation error
/// `γ_k‖|W||W|ᵀ‖_F ≤ γ_k‖W‖_F²` (k the inner dimension), square-rooted and rounded up; then the
/// minimum with the cheap bounds ‖W‖_F and √(‖W‖₁‖W‖_∞), rounded up. Lower: `‖W v‖/‖v‖` for the
/// top right singular vector, minus the product's rounding `γ_k‖|W||v|‖`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectralNormBounds {
    /// Rigorous upper bound on ‖W‖₂.
    pub upper: f64,
    /// Rigorous lower bound on ‖W‖₂.
    pub lower: f64,
}

/// Compute [`SpectralNormBounds`] for any matrix (empty → 0).
pub fn spectral_norm_bounds(w: &DMatrix<f64>) -> Result<SpectralNormBounds> {
    let (m, k) = (w.nrows(), w.ncols());
    if m == 0 || k == 0 {
        return Ok(SpectralNormBounds {
            upper: 0.0,
            lower: 0.0,
        });
    }
    // Gram of the smaller side; `right` means WᵀW (so the eigenvector is a right singular vector).
    let right = k <= m;
    let gram = if right {
        w.transpose() * w
    } else {
        w * w.transpose()
    };
    let inner = if right { m } else { k };
    let eig = sym_eigen(&gram)?;
    let bounds = eigen_bounds(&gram, &eig);
    let frob = w.norm();
    let formation = round_up(gamma(inner) * frob * frob);
    let gram_upper = round_up(bounds.max_upper + formation).max(0.0);
    let weyl = round_up(gram_upper.sqrt());
    let one_norm = w.column_iter().map(|c| c.abs().sum()).fold(0.0, f64::max);
    let inf_norm = w.row_iter().map(|r| r.abs().sum()).fold(0.0, f64::max);
    let frob_up = round_up(frob * (1.0 + gamma(m * k + 1)));
    let holder = round_up(round_up(one_norm * inf_norm * (1.0 + gamma(m.max(k) + 2))).sqrt());
    let upper = weyl.min(frob_up).min(holder);
    // Lower: ‖W v‖ for the top right singular vector v.
    let v: DVector<f64> = if right {
        eig.vectors.column(0).into_owned()
    } else {
        let u = eig.vectors.column(0).into_owned();
        let v = w.transpose() * u;
        let nv = v.norm();
        if nv > 0.0 { v / nv } else { v }
    };
    let wv = w * &v;
    let abs_wv = w.abs() * v.abs();
    let err = gamma(k) * abs_wv.norm();
    let vn = v.norm();
    let lower = if vn > 0.0 {
        round_down((round_down(wv.norm() - err)).max(0.0) / round_up(vn * (1.0 + gamma(k + 1))))
    } else {
        0.0
    };
    Ok(SpectralNormBounds {
        upper,
        lower: lower.min(upper),
    })
}

/// Rigorous upper bound on ‖A‖₂ alone (the same computation as [`spectral_norm_bounds`]).
pub fn spectral_norm_upper(a: &DMatrix<f64>) -> Result<f64> {
    Ok(spectral_norm_bounds(a)?.upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_data;

    #[test]
    fn eigen_sorted_and_bounds_bracket() {
        let a = random_data(30, 30, 3);
        let s = &a + a.transpose();
        let eig = sym_eigen(&s).unwrap();
        assert!(eig.values.windows(2).all(|w| w[0] >= w[1]));
        let b = eigen_bounds(&s, &eig);
        // Independent reference: nalgebra's own (unsorted) solver.
        let ref_vals = nalgebra::SymmetricEigen::new(s.clone()).eigenvalues;
        let rmax = ref_vals.max();
        let rmin = ref_vals.min();
        assert!(
            b.max_upper >= rmax && b.max_lower <= rmax,
            "{b:?} vs {rmax}"
        );
        assert!(b.min_lower <= rmin);
        // The bracket is tight: width ~ N²u·‖S‖, far below 1e-9 here.
        assert!(b.max_upper - b.max_lower < 1e-9 * rmax.abs());
    }

    #[test]
    fn weyl_bound_is_sign_safe_for_negative_definite() {
        // THEORY §3 item 3: S = −I must give λ_max ≤ −1 + tiny, never −1.072.
        let s = -DMatrix::<f64>::identity(4, 4);
        let eig = sym_eigen(&s).unwrap();
        let b = eigen_bounds(&s, &eig);
        assert!(b.max_upper >= -1.0 && b.max_upper < -1.0 + 1e-12);
    }

    #[test]
    fn spectral_norm_brackets_svd() {
        for (m, k, seed) in [(5, 9, 1), (9, 5, 2), (1, 7, 3), (12, 12, 4)] {
            let w = random_data(m, k, seed);
            let b = spectral_norm_bounds(&w).unwrap();
            let svd = w.clone().svd(false, false);
            let s = svd.singular_values.max();
            assert!(b.lower <= s && s <= b.upper, "{b:?} vs {s}");
            assert!(b.upper - b.lower < 1e-12 * s);
        }
        // THEORY §5: W = (1, −1)ᵀ has ‖W‖₂ = √2.
        let w = DMatrix::from_column_slice(2, 1, &[1.0, -1.0]);
        let b = spectral_norm_bounds(&w).unwrap();
        assert!(b.lower <= 2f64.sqrt() && 2f64.sqrt() <= b.upper);
    }
}
