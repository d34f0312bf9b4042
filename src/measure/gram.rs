//! The exact Gram path (THEORY.md §4 "Gram matrix", §3 items 2–4): the `nC × nC` matrix
//!
//! `K = (1/n) Σ_l (Δ_l Δ_lᵀ) ∘ (A_l A_lᵀ + 𝟙𝟙ᵀ)`, rows and columns ordered `(i, c)` (index `i·C + c`),
//!
//! where `Δ_l` stacks the output deltas `δ_{l,c,i} = ∂f_c/∂z_l(x_i)` and `A_l` the inputs
//! `h_{l−1,i}` of layer l (repeated for each c). For the last layer `Δ_L = I_C`, so its term is
//! `[c = c']·(⟨h_{L−1,i}, h_{L−1,j}⟩ + 1)`. K has the nonzero eigenvalues of the Gauss–Newton
//! matrix G, `tr K = tr G` and `‖K‖_F = ‖G‖_F` (THEORY.md §0).
//!
//! Built with GEMMs (rayon over column panels, each entry computed by exactly one task, so the
//! result does not depend on the thread count), then eigendecomposed with
//! [`crate::linalg::sym_eigen`]. Rigour (THEORY.md §3):
//! - formation error `‖E_K‖_F ≤ γ_k‖K_abs‖_F`, `K_abs` the same formula with `|Δ_l|`, `|A_l|`, and
//!   `k = max_l(m_l + m_{l−1}) + L + 2` (item 2);
//! - λ_max upper = sign-safe Weyl bound of the computed K̂ (item 3) `+ ‖E_K‖_F`;
//! - λ_max lower = Rayleigh quotient of the top eigenvector minus its rounding (item 4) `− ‖E_K‖_F`.

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::QuantityMap;
use super::hvp::mm;
use super::names;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::linalg::{eigen_bounds, sym_eigen};
use crate::model::Mlp;
use crate::quantity::{Quantity, gamma, round_down, round_up};

/// Options of the Gram path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GramOptions {
    /// Samples per block of the forward/backward passes (default 256).
    pub block: usize,
    /// Relative rank threshold τ: eigenvalues above `τ·λ_max` are kept (default 1e-12, THEORY T5e).
    pub tau: f64,
    /// Refuse when [`gram_memory_bytes`] exceeds this many bytes (default 4 GiB).
    pub memory_limit_bytes: usize,
}

impl Default for GramOptions {
    fn default() -> Self {
        Self {
            block: 256,
            tau: 1e-12,
            memory_limit_bytes: 4 << 30,
        }
    }
}

/// Column panel width of the K assembly.
const PANEL: usize = 128;

/// Peak memory of the Gram path in bytes, so callers can refuse above a limit: with `N = nC`,
/// about `7N²` doubles (K, the eigensolver's copy and vectors, and the residual, scaled-vector and
/// orthogonality matrices of the Weyl bound), plus the stacked deltas `Σ_l 2·m_l·N` (signed and
/// absolute), the activations `Σ_l m_{l−1}·n` and the `n × n` activation Gram matrices.
pub fn gram_memory_bytes(mlp: &Mlp, n: usize) -> usize {
    let c = mlp.output_dim();
    let big_n = n.saturating_mul(c);
    let widths = mlp.widths();
    let hidden: usize = widths[1..widths.len() - 1].iter().sum();
    let acts: usize = widths[..widths.len() - 1].iter().sum();
    let doubles = big_n
        .saturating_mul(big_n)
        .saturating_mul(7)
        .saturating_add(big_n.saturating_mul(2 * hidden))
        .saturating_add(n.saturating_mul(acts))
        .saturating_add(n.saturating_mul(n).saturating_mul(3));
    doubles.saturating_mul(8)
}

/// A byte count for messages: bytes below 1 MiB, then MiB, then GiB (two decimals).
pub fn format_bytes(b: usize) -> String {
    let f = b as f64;
    if b < 1 << 20 {
        format!("{b} bytes")
    } else if b < 1 << 30 {
        format!("{:.0} MiB", f / (1u64 << 20) as f64)
    } else {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    }
}

/// The assembled Gram matrix K (THEORY.md §4) with its formation-error bound.
#[derive(Debug, Clone)]
pub struct GramMatrix {
    /// K, `nC × nC`, rows `(i, c)` at index `i·C + c`; exactly symmetric (lower triangle copied).
    pub k: DMatrix<f64>,
    /// Number of samples n.
    pub n: usize,
    /// Number of outputs C.
    pub outputs: usize,
    /// `‖K_abs‖_F` (THEORY.md §3 item 2).
    pub abs_frobenius: f64,
    /// The inner-product length `k = max_l(m_l + m_{l−1}) + L + 2` of item 2.
    pub rounding_length: usize,
    /// Rigorous bound on `‖K − K̂‖_F`: `γ_k‖K_abs‖_F`, rounded up.
    pub formation_error: f64,
}

/// Stacked activations and deltas of all samples.
struct Stacked {
    /// `h_{l−1}` for each layer l (0-based j: `post[j]`, `m_j × n`).
    post: Vec<DMatrix<f64>>,
    /// `Δ_l` for hidden layers, `m_l × nC`, column `i·C + c`.
    deltas: Vec<DMatrix<f64>>,
}

fn stack_passes(mlp: &Mlp, data: &Dataset, block: usize) -> Stacked {
    let n = data.len();
    let c = mlp.output_dim();
    let widths = mlp.widths();
    let depth = mlp.depth();
    let parts: Vec<_> = data
        .blocks(block)
        .into_par_iter()
        .map(|(s, e)| {
            let cache = mlp.forward_cache(data.x_block(s, e));
            let deltas = mlp.output_deltas(&cache);
            (s, e, cache.post, deltas.hidden)
        })
        .collect();
    let mut post: Vec<DMatrix<f64>> = (0..depth).map(|j| DMatrix::zeros(widths[j], n)).collect();
    let mut deltas: Vec<DMatrix<f64>> = (0..depth - 1)
        .map(|j| DMatrix::zeros(widths[j + 1], n * c))
        .collect();
    for (s, e, p, d) in parts {
        for (full, part) in post.iter_mut().zip(&p) {
            full.columns_mut(s, e - s).copy_from(part);
        }
        for (full, part) in deltas.iter_mut().zip(&d) {
            full.columns_mut(s * c, (e - s) * c).copy_from(part);
        }
    }
    Stacked { post, deltas }
}

/// `HᵀH + 𝟙𝟙ᵀ` (`n × n`).
fn activation_gram(h: &DMatrix<f64>) -> DMatrix<f64> {
    let mut s = DMatrix::from_element(h.ncols(), h.ncols(), 1.0);
    mm::gemm(&mut s, true, mm::view(h).transpose(), mm::view(h), 1.0);
    s
}

/// One column panel `[c0, c1)` of `n·K` from the per-layer pieces.
fn panel(
    deltas: &[DMatrix<f64>],
    grams: &[DMatrix<f64>],
    c: usize,
    c0: usize,
    c1: usize,
) -> DMatrix<f64> {
    let big_n = grams[0].nrows() * c;
    let w = c1 - c0;
    let mut out = DMatrix::zeros(big_n, w);
    for (delta, s) in deltas.iter().zip(grams) {
        let dd = mm::mul(mm::view(delta).transpose(), mm::view(delta).subcols(c0, w));
        for jj in 0..w {
            let col_j = (c0 + jj) / c;
            for a in 0..big_n {
                out[(a, jj)] += dd[(a, jj)] * s[(a / c, col_j)];
            }
        }
    }
    // Last layer: Δ_L = I_C.
    let s_last = &grams[grams.len() - 1];
    for jj in 0..w {
        let col = c0 + jj;
        let (j, cc) = (col / c, col % c);
        for i in 0..big_n / c {
            out[(i * c + cc, jj)] += s_last[(i, j)];
        }
    }
    out
}

/// Build K (THEORY.md §4) and its formation-error bound (§3 item 2). Refuses when
/// [`gram_memory_bytes`] exceeds `opts.memory_limit_bytes`.
pub fn build_gram(mlp: &Mlp, data: &Dataset, opts: &GramOptions) -> Result<GramMatrix> {
    crate::problem::check_inputs(mlp, data)?;
    let need = gram_memory_bytes(mlp, data.len());
    if need > opts.memory_limit_bytes {
        let nc = data.len() * mlp.output_dim();
        return Err(Error::invalid_argument(
            "--max-memory",
            format!(
                "the exact Gram path for nC = {nc} needs about {}, more than the memory limit \
                 of {}; raise --max-memory if the machine has it, or subsample the data \
                 (measure, stability and certify can also lower --gram-limit below {nc} to use \
                 the operator path)",
                format_bytes(need),
                format_bytes(opts.memory_limit_bytes)
            ),
        ));
    }
    let n = data.len();
    let c = mlp.output_dim();
    let st = stack_passes(mlp, data, opts.block.max(1));
    let grams: Vec<DMatrix<f64>> = st.post.iter().map(activation_gram).collect();
    let abs_post: Vec<DMatrix<f64>> = st.post.iter().map(|h| h.abs()).collect();
    let abs_grams: Vec<DMatrix<f64>> = abs_post
        .iter()
        .zip(&st.post)
        .zip(&grams)
        .map(|((a, h), g)| {
            if h.iter().all(|v| *v >= 0.0) {
                g.clone()
            } else {
                activation_gram(a)
            }
        })
        .collect();
    let abs_deltas: Vec<DMatrix<f64>> = st.deltas.iter().map(|d| d.abs()).collect();
    let big_n = n * c;
    let panels: Vec<(usize, usize)> = (0..big_n.div_ceil(PANEL))
        .map(|p| (p * PANEL, ((p + 1) * PANEL).min(big_n)))
        .collect();
    let parts: Vec<(DMatrix<f64>, f64)> = panels
        .par_iter()
        .map(|&(c0, c1)| {
            let k = panel(&st.deltas, &grams, c, c0, c1);
            let ka = panel(&abs_deltas, &abs_grams, c, c0, c1);
            (k, ka.norm_squared())
        })
        .collect();
    let inv_n = 1.0 / n as f64;
    let mut k = DMatrix::zeros(big_n, big_n);
    let mut abs_sq = 0.0;
    for ((c0, c1), (part, asq)) in panels.iter().zip(parts) {
        k.columns_mut(*c0, c1 - c0).copy_from(&(part * inv_n));
        abs_sq += asq;
    }
    // Exactly symmetric: copy the lower triangle up (each entry keeps its own error bound).
    for j in 0..big_n {
        for i in 0..j {
            k[(i, j)] = k[(j, i)];
        }
    }
    let abs_frobenius = round_up(abs_sq.sqrt() * inv_n * (1.0 + gamma(big_n * big_n + 2)));
    let widths = mlp.widths();
    let mut fan: Vec<usize> = widths.windows(2).map(|w| w[0] + w[1]).collect();
    fan.push(0);
    let rounding_length = fan.iter().copied().max().unwrap_or(0) + mlp.depth() + 2;
    let formation_error = round_up(gamma(rounding_length + 1) * abs_frobenius);
    Ok(GramMatrix {
        k,
        n,
        outputs: c,
        abs_frobenius,
        rounding_length,
        formation_error,
    })
}

/// The spectrum of K with its rigorous λ_max bracket and the exact trace and Frobenius norm
/// (THEORY.md T4, T5e, §3 items 2–4).
#[derive(Debug, Clone)]
pub struct GramSpectrum {
    /// The Gram matrix K itself (needed by T5(g) and T6(d)).
    pub k: DMatrix<f64>,
    /// Number of samples n.
    pub n: usize,
    /// Number of outputs C.
    pub outputs: usize,
    /// Eigenvalues of K̂, decreasing.
    pub values: Vec<f64>,
    /// Orthonormal eigenvectors (column j for `values[j]`).
    pub vectors: DMatrix<f64>,
    /// Rigorous upper bound on λ_max(G): Weyl + ‖E_K‖_F.
    pub lambda_max_upper: f64,
    /// Rigorous lower bound on λ_max(G): Rayleigh − its rounding − ‖E_K‖_F.
    pub lambda_max_lower: f64,
    /// tr G = tr K (sum of the diagonal).
    pub trace: f64,
    /// A-priori rounding of the trace, `γ_{k+nC}·tr K`.
    pub trace_tol: f64,
    /// ‖G‖_F = ‖K‖_F.
    pub frobenius: f64,
    /// ‖E_K‖_F bound (§3 item 2).
    pub formation_error: f64,
    /// ‖K̂ − ÛΛ̂Ûᵀ‖_F of the eigensolver.
    pub eigen_residual: f64,
    /// ‖ÛᵀÛ − I‖_F of the eigensolver.
    pub eigen_orthogonality: f64,
    /// The rank threshold τ (relative to λ_max).
    pub tau: f64,
    /// r: the number of eigenvalues above `τ·λ_max` (0 when λ_max ≤ 0).
    pub rank: usize,
    /// `Σ_{j>r} |λ_j|`, the discarded mass.
    pub discarded_mass: f64,
    /// `max(λ_{r+1}, 0)`, the largest discarded eigenvalue λ_d (0 when none is discarded).
    pub largest_discarded: f64,
}

/// Eigendecompose K (THEORY.md §3 item 3) and derive the [`GramSpectrum`].
pub fn gram_spectrum(gram: GramMatrix, tau: f64) -> Result<GramSpectrum> {
    if tau.is_nan() || !(0.0..1.0).contains(&tau) {
        return Err(Error::invalid_argument(
            "--tau",
            format!("must lie in [0, 1), got {tau}"),
        ));
    }
    let eig = sym_eigen(&gram.k)?;
    let big_n = gram.k.nrows();
    let bounds = eigen_bounds(&gram.k, &eig);
    let e = gram.formation_error;
    let trace = gram.k.trace();
    let top = eig.values.first().copied().unwrap_or(0.0);
    let rank = if top > 0.0 {
        eig.values.iter().take_while(|v| **v > tau * top).count()
    } else {
        0
    };
    // A sum of |λ_j| is 0 exactly iff every term is 0 (adding nonnegative floats never
    // underflows to 0), so 0 stays 0 instead of round_up's subnormal f64::MIN_POSITIVE
    // (issue 12 item 7: it was stored as 2.2e-308).
    let discarded: f64 = eig.values[rank..].iter().map(|v| v.abs()).sum();
    let discarded_mass = if discarded == 0.0 {
        0.0
    } else {
        round_up(discarded)
    };
    let largest_discarded = eig.values.get(rank).copied().unwrap_or(0.0).max(0.0);
    Ok(GramSpectrum {
        n: gram.n,
        outputs: gram.outputs,
        lambda_max_upper: round_up(bounds.max_upper + e),
        lambda_max_lower: round_down(bounds.max_lower - e),
        trace,
        trace_tol: round_up(gamma(gram.rounding_length + big_n) * trace.abs()),
        frobenius: gram.k.norm(),
        formation_error: e,
        eigen_residual: bounds.residual,
        eigen_orthogonality: bounds.orthogonality,
        tau,
        rank,
        discarded_mass,
        largest_discarded,
        values: eig.values,
        vectors: eig.vectors,
        k: gram.k,
    })
}

/// Build K and its spectrum in one call (THEORY.md §4).
pub fn gauss_newton_gram(mlp: &Mlp, data: &Dataset, opts: &GramOptions) -> Result<GramSpectrum> {
    gram_spectrum(build_gram(mlp, data, opts)?, opts.tau)
}

impl GramSpectrum {
    /// φ, an a-priori estimate of `‖K − ÛΛ̂Ûᵀ‖₂` (THEORY.md T5(f) "Rounding of K"): formation
    /// error + eigensolver residual + `|λ_max|·‖ÛᵀÛ − I‖_F`, rounded up. **Assumed**, not proven.
    pub fn rounding_phi(&self) -> f64 {
        let top = self.values.first().copied().unwrap_or(0.0).abs();
        round_up(self.formation_error + self.eigen_residual + top * self.eigen_orthogonality)
    }

    /// The reduced basis `Y = √n·U_rΛ_r^{1/2}` (`nC × r`, rows `(i, c)`, sample blocks
    /// contiguous), THEORY.md T5(e): `h_i = Y_iᵀY_i` and `(1/n)Σh_i = Λ_r`.
    pub fn reduced_basis(&self) -> DMatrix<f64> {
        let sn = (self.n as f64).sqrt();
        let mut y = self.vectors.columns(0, self.rank).into_owned();
        for (j, mut col) in y.column_iter_mut().enumerate() {
            col *= sn * self.values[j].sqrt();
        }
        y
    }

    /// The discarded columns `Y_d = √n·U_dΛ_d^{1/2}` (negative rounding eigenvalues clamped to 0).
    pub fn discarded_basis(&self) -> DMatrix<f64> {
        let sn = (self.n as f64).sqrt();
        let d = self.values.len() - self.rank;
        let mut y = self.vectors.columns(self.rank, d).into_owned();
        for (j, mut col) in y.column_iter_mut().enumerate() {
            col *= sn * self.values[self.rank + j].max(0.0).sqrt();
        }
        y
    }

    /// The C×C block `K_(i),(j)` (rows of sample i, columns of sample j).
    pub fn block(&self, i: usize, j: usize) -> DMatrix<f64> {
        let c = self.outputs;
        self.k.view((i * c, j * c), (c, c)).into_owned()
    }

    /// The top `k` eigenvalues of G as quantities (kind exact; tol = φ, the Weyl perturbation
    /// estimate of [`Self::rounding_phi`]).
    pub fn top_eigenvalues(&self, k: usize) -> Vec<Quantity> {
        let phi = self.rounding_phi();
        self.values
            .iter()
            .take(k)
            .map(|v| Quantity::exact(*v, phi).with_method("gram-eigh"))
            .collect()
    }

    /// `gauss_newton_lambda_max` (upper: Weyl + E_K).
    pub fn lambda_max(&self) -> Quantity {
        Quantity::upper(
            self.lambda_max_upper,
            self.lambda_max_upper - self.values.first().copied().unwrap_or(0.0),
        )
        .with_method("gram-eigh+weyl")
        .with_note("rigorous upper bound; the lower bound is gauss_newton_lambda_max_lower")
    }

    /// `gauss_newton_lambda_max_lower` (Rayleigh − rounding − E_K).
    pub fn lambda_max_lower(&self) -> Quantity {
        Quantity::lower(
            self.lambda_max_lower,
            self.values.first().copied().unwrap_or(0.0) - self.lambda_max_lower,
        )
        .with_method("gram-eigh+rayleigh")
    }

    /// The canonical quantities of the Gram path: `gauss_newton_lambda_max` (upper),
    /// `gauss_newton_lambda_max_lower` (lower), `gauss_newton_trace` (exact),
    /// `gauss_newton_frobenius` (exact), `gauss_newton_top_eigenvalue_{j}` for j = 1..=top_k
    /// (exact), `gauss_newton_rank` (exact, with τ in the note) and
    /// `gauss_newton_discarded_mass` (exact).
    pub fn quantities(&self, top_k: usize) -> QuantityMap {
        let mut map = QuantityMap::new();
        map.insert(names::GAUSS_NEWTON_LAMBDA_MAX.into(), self.lambda_max());
        map.insert(
            names::GAUSS_NEWTON_LAMBDA_MAX_LOWER.into(),
            self.lambda_max_lower(),
        );
        map.insert(
            names::GAUSS_NEWTON_TRACE.into(),
            Quantity::exact(self.trace, self.trace_tol).with_method("gram-trace"),
        );
        let frob_tol = round_up(
            self.formation_error + gamma(self.k.nrows() * self.k.nrows() + 1) * self.frobenius,
        );
        map.insert(
            names::GAUSS_NEWTON_FROBENIUS.into(),
            Quantity::exact(self.frobenius, frob_tol).with_method("gram-frobenius"),
        );
        for (j, q) in self.top_eigenvalues(top_k).into_iter().enumerate() {
            map.insert(
                format!("{}{}", names::GAUSS_NEWTON_TOP_EIGENVALUE_, j + 1),
                q,
            );
        }
        map.insert(
            names::GAUSS_NEWTON_RANK.into(),
            Quantity::exact(self.rank as f64, 0.0)
                .with_method("gram-eigh")
                .with_note(format!("eigenvalues above tau·λ_max, tau = {:e}", self.tau)),
        );
        map.insert(
            names::GAUSS_NEWTON_DISCARDED_MASS.into(),
            Quantity::exact(self.discarded_mass, self.rounding_phi())
                .with_method("gram-eigh")
                .with_note(format!(
                    "sum of |λ_j| below tau·λ_max, tau = {:e}",
                    self.tau
                )),
        );
        map
    }
}

/// The THEORY.md §5 worked example, shared by the tests of the stability modules.
#[cfg(test)]
pub(crate) mod golden {
    use nalgebra::DMatrix;

    use crate::data::Dataset;
    use crate::model::Mlp;

    /// ReLU 1–2–1 with W1 = (1, −1)ᵀ, b1 = 0, W2 = (1, 1), b2 = 0: f(x) = |x|.
    pub(crate) fn net() -> Mlp {
        crate::testutil::abs_net()
    }

    /// x = (−1, 1, 2), y = (1, 1, 2): an exact interpolation.
    pub(crate) fn data() -> Dataset {
        Dataset::new(
            vec![-1.0, 1.0, 2.0],
            3,
            1,
            Some((vec![1.0, 1.0, 2.0], 1)),
            "<golden>",
            "<golden>",
        )
        .expect("valid golden data")
    }

    /// The inputs as a `1 × 3` block.
    pub(crate) fn x() -> DMatrix<f64> {
        DMatrix::from_row_slice(1, 3, &[-1.0, 1.0, 2.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::hvp::testkit::{dataset, jacobian};
    use crate::model::Activation;
    use crate::testutil::{random_data, random_mlp};

    #[test]
    fn golden_worked_example() {
        // THEORY §5: K_raw = [[4,1,1],[1,4,6],[1,6,10]], K = K_raw/3.
        let spec =
            gauss_newton_gram(&golden::net(), &golden::data(), &GramOptions::default()).unwrap();
        let k_raw = &spec.k * 3.0;
        let expected = nalgebra::dmatrix![4.0, 1.0, 1.0; 1.0, 4.0, 6.0; 1.0, 6.0, 10.0];
        assert!((&k_raw - &expected).amax() < 1e-14);
        for (v, e) in spec
            .values
            .iter()
            .zip([13.89971579, 3.83784113, 0.26244308])
        {
            assert!((v * 3.0 - e).abs() < 1e-8, "{v}");
        }
        // λ_max(H) = 4.633238597 inside the rigorous bracket, which is tight (≤ 1e-13 wide).
        let lam = 4.633238597;
        assert!((spec.values[0] - lam).abs() < 1e-9);
        assert!(spec.lambda_max_lower <= spec.values[0] && spec.values[0] <= spec.lambda_max_upper);
        assert!(spec.lambda_max_upper - spec.lambda_max_lower < 1e-13);
        assert!((spec.trace - 6.0).abs() < 1e-14);
        assert!((spec.frobenius.powi(2) - 208.0 / 9.0).abs() < 1e-13);
        assert_eq!(spec.rank, 3);
        // Full rank: nothing is discarded, and 0 is stored as 0, not as a subnormal.
        assert_eq!(spec.discarded_mass, 0.0);
        let q = spec.quantities(2);
        assert_eq!(q["gauss_newton_discarded_mass"].value, 0.0);
        assert_eq!(
            q["gauss_newton_lambda_max"].kind,
            crate::quantity::Kind::Upper
        );
        assert_eq!(
            q["gauss_newton_lambda_max_lower"].kind,
            crate::quantity::Kind::Lower
        );
        assert!(q.contains_key("gauss_newton_top_eigenvalue_2"));
        // Reduced basis: (1/n)Σ h_i = Yᵀ Y / n = Λ_r.
        let y = spec.reduced_basis();
        let h = y.transpose() * &y / 3.0;
        for i in 0..3 {
            for j in 0..3 {
                let e = if i == j { spec.values[i] } else { 0.0 };
                assert!((h[(i, j)] - e).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn gram_matches_materialized_jacobian_and_bounds_hold() {
        // K against 𝐉𝐉ᵀ/n from the model's own JVP (independent path): 1e-13 relative; the
        // rigorous bracket must contain the reference λ_max (nalgebra's solver) for every seed.
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.1 },
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Softplus,
            Activation::Identity,
        ];
        for seed in 0..12u64 {
            let act = acts[seed as usize % acts.len()];
            let widths = [
                1 + seed as usize % 3,
                1 + (seed as usize * 7) % 4,
                2,
                1 + seed as usize % 3,
            ];
            let n = 2 + seed as usize % 5;
            let mlp = random_mlp(&widths, act, 500 + seed);
            let x = random_data(widths[0], n, 600 + seed);
            let ds = dataset(&x, None);
            let opts = GramOptions {
                block: 2,
                ..GramOptions::default()
            };
            let gram = build_gram(&mlp, &ds, &opts).unwrap();
            let jac = jacobian(&mlp, &x);
            let reference = &jac * jac.transpose() / n as f64;
            let scale = reference.norm().max(1e-300);
            assert!(
                (&gram.k - &reference).norm() <= 1e-13 * scale,
                "seed {seed}"
            );
            let spec = gram_spectrum(gram, 1e-12).unwrap();
            let truth = nalgebra::SymmetricEigen::new(reference.clone())
                .eigenvalues
                .max();
            assert!(
                spec.lambda_max_lower <= truth && truth <= spec.lambda_max_upper,
                "seed {seed}"
            );
            assert!((spec.trace - reference.trace()).abs() <= spec.trace_tol + 1e-14 * scale);
        }
    }

    /// Gram-path timing at nC ≈ 4096 (issue 3: under 60 s): 784-512-512-10 ReLU, n = 410.
    /// `cargo test --release --lib measure::gram::tests::gram_4096_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gram_4096_timing() {
        let mlp = random_mlp(&[784, 512, 512, 10], Activation::Relu, 1);
        let x = random_data(784, 410, 2);
        let ds = dataset(&x, None);
        let t = std::time::Instant::now();
        let g = build_gram(&mlp, &ds, &GramOptions::default()).unwrap();
        let t_build = t.elapsed().as_secs_f64();
        let spec = gram_spectrum(g, 1e-12).unwrap();
        println!(
            "nC = {}: build {t_build:.1}s, total {:.1}s, λ_max ∈ [{}, {}], rank {}",
            spec.k.nrows(),
            t.elapsed().as_secs_f64(),
            spec.lambda_max_lower,
            spec.lambda_max_upper,
            spec.rank
        );
    }

    #[test]
    fn refuses_above_the_memory_limit() {
        let mlp = random_mlp(&[2, 3, 2], Activation::Relu, 1);
        let ds = dataset(&random_data(2, 50, 2), None);
        let opts = GramOptions {
            memory_limit_bytes: 1000,
            ..GramOptions::default()
        };
        let err = build_gram(&mlp, &ds, &opts).unwrap_err();
        assert!(err.to_string().contains("--max-memory"), "{err}");
        assert!(gram_memory_bytes(&mlp, 50) > 7 * 100 * 100 * 8);
    }
}
