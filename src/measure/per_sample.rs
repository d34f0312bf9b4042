//! The per-sample engine (THEORY.md §4): one batched forward pass and one batched backward pass
//! for all C outputs per block of samples, as GEMMs; **no per-sample gradient is ever
//! materialized**. From the output deltas `Δ_l` and activations `h_{l−1}` it forms, for every
//! sample i:
//!
//! - `‖J_θ(x_i)‖_F² = Σ_l Σ_c ‖δ_{l,c,i}‖² (‖h_{l−1,i}‖² + 1)` (= tr H_i at interpolation),
//! - `‖J_W(x_i)‖_F² = ‖Δ_{1,i}‖_F² ‖x_i‖²` (T1: `∇_W f_c = δ_c xᵀ`),
//! - `J_x(x_i) = Δ_{1,i} W_1` (one GEMM per block), its Frobenius and spectral norms,
//! - the C×C matrix `J_iJ_iᵀ = Σ_l (Δ_{l,i}ᵀΔ_{l,i})(‖h_{l−1,i}‖² + 1)`, giving `λ_i` and `tr H_i`,
//! - the entrywise power sums behind `g_W(k)` and `g_x(k)` (T7e), factorized as
//!   `Σ_{a,b}(δ_a h_b)^{2k} = (Σ_a δ_a^{2k})(Σ_b h_b^{2k} + 1)` and kept in scaled form
//!   (max, Σ(·/max)^{2k}) so that no moment overflows for any k,
//! - the residual `f(x_i) − y_i` when targets are given,
//!
//! and on a sample of points the non-circular T1 check (forward-mode input Jacobian against the
//! backward pass). Data are streamed in fixed-size blocks; rayon runs blocks in parallel and the
//! results are concatenated in block order, so every number is bit-identical for any thread count.
//!
//! **ReLU networks** take a sparse-aware backward path (when the CPU has AVX-512): σ′ ∈ {0, 1},
//! so per sample the deltas vanish exactly off the active units `A_l = {a : z_{l,a} > 0}`, and
//! `Δ_{l,i}[A_l] = W_{l+1}[A_{l+1}, A_l]ᵀ Δ_{l+1,i}[A_{l+1}]`, `J_x,i = W_1[A_1, :]ᵀ Δ_{1,i}[A_1]`
//! are formed by register kernels whose inner dimension runs over the active units only (with
//! ~50 % activity, about a third of the dense flops for `Δ_1` and half for `J_x`). The values
//! are the dense path's up to summation order (the skipped terms are exact zeros).

use std::ops::Range;

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::linalg::column_gram::column_gram;
use crate::linalg::sparse_gemm::{Kernel, MR, PackedT, sparse_products, sparse_products_selected};
use crate::model::{Activation, Mlp, OutputDeltas};
use crate::quantity::{UNIT_ROUNDOFF as U, gamma, round_up};

use super::forward_error::{self, NearKink, forward_errors};

/// Most near-kink units listed individually in [`PerSampleStats::near_kinks`] (all are counted).
pub const NEAR_KINK_LIST_CAP: usize = 1000;

/// Options of [`per_sample_stats`].
#[derive(Debug, Clone)]
pub struct PerSampleOptions {
    /// Samples per block (memory is O(block · C · width)).
    pub block: usize,
    /// Orders k ≥ 1 of the entrywise sums `g_W(k)`, `g_x(k)` to accumulate.
    pub ks: Vec<u32>,
    /// Number of points (evenly spaced over the data) on which T1 is checked by forward mode.
    pub t1_points: usize,
}

impl Default for PerSampleOptions {
    fn default() -> Self {
        Self {
            block: 128,
            ks: vec![1, 2, 4],
            t1_points: 8,
        }
    }
}

/// `Σ_j |g_j|^{2k}` stored as `(scale, sum)` with `scale = max_j |g_j|` and
/// `sum = Σ_j (|g_j|/scale)^{2k} ≤ #entries`, so it never overflows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledPowerSum {
    /// The largest absolute entry (0 for an all-zero vector).
    pub scale: f64,
    /// `Σ (|g_j|/scale)^{2k}` (0 for an all-zero vector).
    pub sum: f64,
}

impl ScaledPowerSum {
    const ZERO: Self = Self {
        scale: 0.0,
        sum: 0.0,
    };

    /// Power sums of orders 2k for every k in `ks` of a slice of entries, in one pass after the
    /// max pass (the hot loop of the engine: inline integer powers, no `powi` calls).
    fn of_slice(values: &[f64], ks: &[u32], out: &mut [ScaledPowerSum]) {
        #[cfg(target_arch = "x86_64")]
        if Kernel::detect().is_some() {
            // SAFETY: AVX-512F is available. The same operations in the same order: the result
            // is bit-identical to the generic build (no FMA contraction).
            return unsafe { Self::of_slice_avx512(values, ks, out) };
        }
        Self::of_slice_body(values, ks, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn of_slice_avx512(values: &[f64], ks: &[u32], out: &mut [ScaledPowerSum]) {
        Self::of_slice_body(values, ks, out)
    }

    #[inline(always)]
    fn of_slice_body(values: &[f64], ks: &[u32], out: &mut [ScaledPowerSum]) {
        const LANES: usize = 8;
        let mut lane_max = [0.0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let tail = chunks.remainder();
        for ch in chunks.clone() {
            for l in 0..LANES {
                lane_max[l] = lane_max[l].max(ch[l].abs());
            }
        }
        let scale = tail
            .iter()
            .fold(lane_max.iter().fold(0.0f64, |m, &v| m.max(v)), |m, v| {
                m.max(v.abs())
            });
        if scale == 0.0 {
            out.iter_mut().for_each(|o| *o = Self::ZERO);
            return;
        }
        let inv = 1.0 / scale;
        // Eight independent accumulators per order so the loop vectorizes; the summation order
        // is fixed (lane by lane, then the tail), so results are deterministic.
        for (o, &k) in out.iter_mut().zip(ks) {
            let mut acc = [0.0f64; LANES];
            for ch in chunks.clone() {
                let mut t = [0.0f64; LANES];
                for l in 0..LANES {
                    let v = ch[l] * inv;
                    t[l] = v * v;
                }
                let mut p = t;
                for _ in 1..k {
                    for l in 0..LANES {
                        p[l] *= t[l];
                    }
                }
                for l in 0..LANES {
                    acc[l] += p[l];
                }
            }
            let mut sum: f64 = acc.iter().sum();
            for &v in tail {
                sum += pow_u((v * inv) * (v * inv), k);
            }
            *o = Self { scale, sum };
        }
    }

    /// Sum of two power sums of the same order.
    fn add(self, other: Self, k: u32) -> Self {
        if self.scale == 0.0 {
            return other;
        }
        if other.scale == 0.0 {
            return self;
        }
        let s = self.scale.max(other.scale);
        let w = |p: Self| p.sum * (p.scale / s).powi(2 * k as i32);
        Self {
            scale: s,
            sum: w(self) + w(other),
        }
    }

    /// Product `(Σ a^{2k})(Σ b^{2k})` (entries of an outer product).
    fn mul(self, other: Self) -> Self {
        Self {
            scale: self.scale * other.scale,
            sum: self.sum * other.sum,
        }
    }

    /// `((1/n) Σ_i P_i)^{1/(2k)}` over per-sample power sums, overflow-safe.
    pub fn mean_root(items: &[ScaledPowerSum], k: u32) -> f64 {
        let s = items.iter().fold(0.0f64, |m, p| m.max(p.scale));
        if s == 0.0 || items.is_empty() {
            return 0.0;
        }
        let mean: f64 = items
            .iter()
            .map(|p| p.sum * (p.scale / s).powi(2 * k as i32))
            .sum::<f64>()
            / items.len() as f64;
        s * mean.powf(1.0 / (2.0 * k as f64))
    }
}

/// Result of the non-circular T1 check on a sample of points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T1Check {
    /// Points checked.
    pub points: usize,
    /// `max |∇_x f_c xᵀ − Wᵀ∇_W f_c|` over points, outputs and the d×d entries (T1a), with
    /// `∇_x f_c` from forward mode and `∇_W f_c = δ_c xᵀ` from the backward pass.
    pub max_abs_residual: f64,
    /// `max |⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F|` (T1b).
    pub max_scalar_residual: f64,
    /// The a-priori size `max 10u·‖W‖_F‖δ_c‖‖x‖` the residual is expected to stay below.
    pub expected_size: f64,
}

/// Per-sample statistics of one checkpoint on one data set (THEORY.md §4). Vectors are indexed
/// by sample.
#[derive(Debug, Clone)]
pub struct PerSampleStats {
    /// Number of outputs C.
    pub outputs: usize,
    /// `‖x_i‖₂`.
    pub x_norm: Vec<f64>,
    /// `‖J_θ(x_i)‖_F²` (all layers and biases) = `tr(J_iJ_iᵀ)`.
    pub param_sq: Vec<f64>,
    /// `‖J_W(x_i)‖_F² = ‖Δ_{1,i}‖_F²‖x_i‖²` (first-layer weights only).
    pub first_layer_sq: Vec<f64>,
    /// `‖Δ_{1,i}‖_F²` (gradient with respect to the first pre-activation).
    pub delta1_sq: Vec<f64>,
    /// `‖J_x(x_i)‖_F²`.
    pub input_sq: Vec<f64>,
    /// `‖J_x(x_i)‖₂²`.
    pub input_spectral_sq: Vec<f64>,
    /// Bound of `‖Ĵ_x(x_i) − J_x(x_i)‖_F` from the absolute-value backward pass:
    /// `γ_K‖|W_1|ᵀ|W_2|ᵀ⋯ ∘ σ′‖_F` (the |W| products of THEORY §3 item 1, evaluated at the computed
    /// σ′, rounded up). Rigorous for piecewise-linear σ given the activation pattern (exact away
    /// from near-kink units); for smooth σ an a-priori estimate (σ′(ẑ) − σ′(z) is not included).
    /// It does not shrink when the products cancel, unlike a tol relative to ‖Ĵ_x‖.
    pub input_err: Vec<f64>,
    /// Bound of `‖Δ̂_{1,i} − Δ_{1,i}‖_F` from the same absolute-value backward pass (0 for a
    /// single-layer network, where Δ_1 = I_C is exact).
    pub delta1_err: Vec<f64>,
    /// Bound of `‖Ĵ_θ(x_i) − J_θ(x_i)‖_F` for the whole parameter Jacobian, where `Ĵ_θ` is built
    /// from the computed Δ̂_l and ĥ_{l−1}: per layer, `ε_l‖[ĥ_{l−1}; 1]‖ + ‖Δ_l‖_F η_{l−1}` with
    /// `ε_l = γ_K‖Δ^abs_l‖_F` from the absolute-value backward pass (0 for Δ_L = I_C) and
    /// `η_{l−1}` the running forward bound of `‖ĥ_{l−1} − h_{l−1}‖` (0 for the inputs), combined
    /// in quadrature. Same scope as `input_err` (rigorous for piecewise-linear σ given the
    /// activation pattern; an a-priori estimate for smooth σ).
    pub param_err: Vec<f64>,
    /// `λ_i = λ_max(J_iJ_iᵀ) = ‖J_θ(x_i)‖₂²`.
    pub lambda: Vec<f64>,
    /// The C×C matrices `J_iJ_iᵀ`, row-major, sample after sample (`n·C²` entries).
    pub jjt: Vec<f64>,
    /// Residuals `f(x_i) − y_i`, row-major `n × C`, when targets were given.
    pub residual: Option<Vec<f64>>,
    /// For each requested k (same order as the options), the per-sample power sums of all
    /// parameter-gradient entries, `Σ_c Σ_p |∂f_c(x_i)/∂θ_p|^{2k}`.
    pub param_power: Vec<(u32, Vec<ScaledPowerSum>)>,
    /// For each requested k, `Σ_c Σ_j |∂f_c(x_i)/∂x_j|^{2k}`.
    pub input_power: Vec<(u32, Vec<ScaledPowerSum>)>,
    /// The T1 check on a sample of points.
    pub t1: T1Check,
    /// Bounds of `|r̂_ic − r_ic|` (same layout as `residual`): the rigorous running forward
    /// bound of the output plus the subtraction's rounding ([`forward_error::residual_error`]).
    pub residual_err: Option<Vec<f64>>,
    /// Samples with at least one hidden unit within its rigorous error bound of a ReLU-type kink,
    /// `|ẑ| ≤ e` (THEORY.md §3 item 1 and Rules): their activation pattern is as computed.
    pub kink_samples: Vec<usize>,
    /// Number of near-kink (sample, unit) pairs, `|ẑ| ≤ e`.
    pub near_kink_units: usize,
    /// The first [`NEAR_KINK_LIST_CAP`] near-kink units in (sample, layer, unit) order, with the
    /// σ′ that was used there.
    pub near_kinks: Vec<NearKink>,
    /// Relative a-priori rounding estimate of the per-sample norms, `2γ_K` with
    /// `K = Σ_l (m_{l−1} + 1) + C` (THEORY.md §3 item 1, smooth case).
    pub rel_tol: f64,
}

impl PerSampleStats {
    /// The near-kink hypothesis in words (None when no unit is near a kink): N units in M
    /// samples, the σ′ actually used there (the computed sign of ẑ decides, not σ′(0)), and the
    /// first samples (THEORY §3 Rules; issue 15 item 4).
    pub fn near_kink_description(&self, act: Activation) -> Option<String> {
        if self.near_kink_units == 0 {
            return None;
        }
        let listed = &self.near_kinks;
        let one = listed.iter().filter(|k| k.derivative_used == 1.0).count();
        let other = listed.len() - one;
        let low = act.derivative(0.0);
        let samples: Vec<String> = self
            .kink_samples
            .iter()
            .take(20)
            .map(|i| i.to_string())
            .collect();
        let more = if self.kink_samples.len() > 20 {
            ", …"
        } else {
            ""
        };
        let of_listed = if listed.len() < self.near_kink_units {
            format!(" (among the first {} listed)", listed.len())
        } else {
            String::new()
        };
        Some(format!(
            "activation pattern at {} near-kink units, as computed: |ẑ| ≤ e (the rigorous \
             running forward bound, THEORY §3 item 1) at {} units in {} samples [{}{more}], so \
             the true pre-activation may lie on either side of the kink and the Jacobian there is \
             set-valued; σ′ used{of_listed}: 1 at {one} units (computed ẑ > 0), {low} at {other} \
             units (computed ẑ ≤ 0)",
            self.near_kink_units,
            self.near_kink_units,
            self.kink_samples.len(),
            samples.join(", "),
        ))
    }

    /// Bound of `|‖J_θ(x_i)‖_F² − param_sq[i]|` and of `‖J_iJ_iᵀ − Ĝ_i‖_F` (Ĝ_i the computed
    /// C×C Gram in `jjt`), hence by Weyl of `|λ_max(J_iJ_iᵀ) − lambda[i]|`: `(2‖Ĵ_i‖_F + e_i)e_i`
    /// with `e_i = param_err[i]` (cancellation cannot shrink it), plus the rounding of the Gram
    /// of nonnegative-weighted dot products, `rel_tol·tr`, and of the C×C eigenvalue solver.
    pub fn param_sq_err(&self, i: usize) -> f64 {
        let t = self.param_sq[i];
        let e = self.param_err[i];
        let a = t.sqrt() * (1.0 + self.rel_tol);
        let c = self.outputs.max(1);
        round_up((2.0 * a + e) * e + t * (self.rel_tol + gamma(8 * c * c + 4)))
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x_norm.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.x_norm.is_empty()
    }
}

/// `t^k` by binary exponentiation (inlined; exact same rounding for the same k).
#[inline(always)]
fn pow_u(t: f64, k: u32) -> f64 {
    let (mut base, mut e, mut acc) = (t, k, 1.0);
    while e > 0 {
        if e & 1 == 1 {
            acc *= base;
        }
        base *= base;
        e >>= 1;
    }
    acc
}

/// Largest eigenvalue of a small symmetric matrix (C×C), 0 for an empty one.
fn small_lambda_max(m: &DMatrix<f64>) -> f64 {
    if m.nrows() == 1 {
        return m[(0, 0)];
    }
    m.clone()
        .symmetric_eigenvalues()
        .iter()
        .fold(f64::NEG_INFINITY, |a, &b| a.max(b))
}

/// Run the per-sample engine over the whole data set.
///
/// `progress` is called with the number of samples finished after each block.
///
/// ```
/// use flatcert::measure::per_sample::{per_sample_stats, PerSampleOptions};
/// use flatcert::{Activation, Dataset};
/// use flatcert::testutil::random_mlp;
/// let mlp = random_mlp(&[3, 8, 2], Activation::Tanh, 1);
/// let ds = Dataset::new((0..30).map(|v| v as f64 / 10.0).collect(), 10, 3, None, "x", "").unwrap();
/// let st = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {}).unwrap();
/// // λ_i ≤ ‖J_i‖_F² ≤ C·λ_i (rank J_iᵀJ_i ≤ C).
/// for i in 0..10 {
///     assert!(st.lambda[i] <= st.param_sq[i] * (1.0 + 1e-12));
///     assert!(st.param_sq[i] <= 2.0 * st.lambda[i] * (1.0 + 1e-12));
/// }
/// ```
pub fn per_sample_stats(
    mlp: &Mlp,
    ds: &Dataset,
    opts: &PerSampleOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<PerSampleStats> {
    if ds.dim() != mlp.input_dim() {
        return Err(Error::bad_input(
            &ds.x_source,
            "shape",
            format!(
                "samples have {} features, the model expects d = {}",
                ds.dim(),
                mlp.input_dim()
            ),
        ));
    }
    if let Some(c) = ds.outputs()
        && c != mlp.output_dim()
    {
        return Err(Error::bad_input(
            &ds.y_source,
            "shape",
            format!(
                "targets have {c} columns, the model has C = {} outputs",
                mlp.output_dim()
            ),
        ));
    }
    for &k in &opts.ks {
        flatcert_bounds::moments::power_mean_order(k)
            .map_err(|e| Error::invalid_argument("--k", e.to_string()))?;
    }
    let backward = Backward::choose(mlp);
    per_sample_stats_with(mlp, ds, opts, progress, backward)
}

/// [`per_sample_stats`] with the backward path chosen by the caller (inputs already checked).
fn per_sample_stats_with(
    mlp: &Mlp,
    ds: &Dataset,
    opts: &PerSampleOptions,
    progress: &(dyn Fn(usize) + Sync),
    backward: Backward,
) -> Result<PerSampleStats> {
    assert!(
        backward == Backward::Dense || Backward::sparse_applies(mlp),
        "the sparse backward pass needs a ReLU network with a hidden layer"
    );
    // Shared by all blocks: the packed weights of the sparse path (W_lᵀ for l = 1..L−1).
    let plan = Plan {
        backward,
        packs: match backward {
            Backward::Sparse(_) => mlp.layers()[..mlp.depth() - 1]
                .iter()
                .map(|l| PackedT::new(&l.weight))
                .collect(),
            Backward::Dense => Vec::new(),
        },
        abs_mlp: abs_network(mlp),
    };
    let blocks = ds.blocks(opts.block);
    // The T1 check is independent of the blocks: run it alongside them.
    let (results, t1) = rayon::join(
        || -> Vec<BlockStats> {
            blocks
                .par_iter()
                .map_init(
                    || SparseBackward::new(mlp),
                    |sb, &range| {
                        let b = block_stats(mlp, ds, range, &opts.ks, &plan, sb);
                        progress(range.1 - range.0);
                        b
                    },
                )
                .collect()
        },
        || t1_check(mlp, ds, opts.t1_points),
    );
    let c = mlp.output_dim();
    let mut out = PerSampleStats {
        outputs: c,
        x_norm: vec![],
        param_sq: vec![],
        first_layer_sq: vec![],
        delta1_sq: vec![],
        input_sq: vec![],
        input_spectral_sq: vec![],
        input_err: vec![],
        delta1_err: vec![],
        param_err: vec![],
        lambda: vec![],
        jjt: vec![],
        residual: ds.has_targets().then(Vec::new),
        residual_err: ds.has_targets().then(Vec::new),
        param_power: opts.ks.iter().map(|&k| (k, vec![])).collect(),
        input_power: opts.ks.iter().map(|&k| (k, vec![])).collect(),
        t1: T1Check {
            points: 0,
            max_abs_residual: 0.0,
            max_scalar_residual: 0.0,
            expected_size: 0.0,
        },
        kink_samples: vec![],
        near_kink_units: 0,
        near_kinks: vec![],
        rel_tol: 0.0,
    };
    for (bs, &(start, _)) in results.into_iter().zip(&blocks) {
        out.x_norm.extend(&bs.x_norm);
        out.param_sq.extend(&bs.param_sq);
        out.delta1_sq.extend(&bs.delta1_sq);
        out.input_sq.extend(&bs.input_sq);
        out.input_spectral_sq.extend(&bs.input_spectral_sq);
        out.input_err.extend(bs.input_abs.iter().map(|v| v.0));
        out.delta1_err.extend(bs.input_abs.iter().map(|v| v.1));
        out.param_err.extend(&bs.param_err);
        out.lambda.extend(&bs.lambda);
        out.jjt.extend(&bs.jjt);
        if let (Some(r), Some(br)) = (out.residual.as_mut(), bs.residual) {
            r.extend(br);
        }
        if let (Some(r), Some(br)) = (out.residual_err.as_mut(), bs.residual_err) {
            r.extend(br);
        }
        out.near_kink_units += bs.near_kinks.len();
        let room = NEAR_KINK_LIST_CAP.saturating_sub(out.near_kinks.len());
        out.near_kinks
            .extend(bs.near_kinks.iter().take(room).map(|k| NearKink {
                sample: k.sample + start,
                ..*k
            }));
        for (dst, src) in out.param_power.iter_mut().zip(bs.param_power) {
            dst.1.extend(src);
        }
        for (dst, src) in out.input_power.iter_mut().zip(bs.input_power) {
            dst.1.extend(src);
        }
        out.kink_samples.extend(bs.kinks.iter().map(|i| i + start));
    }
    out.first_layer_sq = out
        .delta1_sq
        .iter()
        .zip(&out.x_norm)
        .map(|(d, x)| d * x * x)
        .collect();
    let al = BackwardAllowance::of(mlp);
    out.rel_tol = jacobian_rel_tol(mlp);
    out.input_err
        .iter_mut()
        .chain(out.delta1_err.iter_mut())
        .for_each(|v| *v = al.err(*v));
    out.t1 = t1;
    if let Some(i) = (0..out.len()).find(|&i| {
        !(out.param_sq[i].is_finite() && out.input_sq[i].is_finite() && out.lambda[i].is_finite())
    }) {
        return Err(Error::Numerical(format!(
            "per-sample gradient norms of sample {i} are not finite (overflow in the network)"
        )));
    }
    Ok(out)
}

/// The absolute-value backward pass's error model (THEORY §3 item 1).
/// `2γ_K`, `K = Σ_l (m_{l−1} + 1) + C`: the relative a-priori rounding estimate of the Jacobian
/// quantities ([`PerSampleStats::rel_tol`]; THEORY §3 item 1, smooth case).
pub fn jacobian_rel_tol(mlp: &Mlp) -> f64 {
    let k_sum: usize =
        mlp.layers().iter().map(|l| l.fan_in() + 1).sum::<usize>() + mlp.output_dim();
    2.0 * gamma(k_sum)
}

struct BackwardAllowance {
    /// `ε = grow·‖X^abs‖ + under` bounds `‖X̂ − X‖_F` for a backward quantity X.
    grow: f64,
    /// `‖X‖_F ≤ upper·‖X^abs‖ + under` (exact |X| ≤ X^abs entrywise; the computed X^abs and its
    /// norm are within γ_K and γ_{mC+2}).
    upper: f64,
    under: f64,
}

impl BackwardAllowance {
    fn of(mlp: &Mlp) -> Self {
        let c = mlp.output_dim();
        let k_sum: usize = mlp.layers().iter().map(|l| l.fan_in() + 1).sum::<usize>() + c;
        let width = mlp.widths().iter().copied().max().unwrap_or(1);
        // |X̂ − X| ≤ γ_K·X^abs entrywise (each backward layer: one inner product of length m_l
        // and one product with σ′; K = k_sum covers them). The computed X^abs is within γ_K of
        // the exact one (nonnegative products) and its norm within γ_{mC+2}: one more γ step
        // covers both.
        let norm_step = 2.0 * gamma(width.max(mlp.input_dim()) * c + 2);
        let grow = gamma(k_sum) * (1.0 + 2.0 * gamma(k_sum) + norm_step);
        let upper = round_up((1.0 + 2.0 * gamma(k_sum)) * (1.0 + norm_step) * (1.0 + 4.0 * U));
        // Underflow is outside the γ model: at most k_sum products per entry can each lose
        // 2⁻¹⁰⁷⁴, over at most width·C entries; add that Frobenius-norm allowance.
        let under = (k_sum as f64) * ((width * c) as f64).sqrt() * forward_error::SUBNORMAL * 2.0;
        Self { grow, upper, under }
    }

    /// The error bound `ε` of a backward quantity whose absolute-value norm is `abs`.
    fn err(&self, abs: f64) -> f64 {
        round_up(abs * self.grow) + self.under
    }
}

/// `‖Ĵ_θ(x_i) − J_θ(x_i)‖_F` per sample of a block ([`PerSampleStats::param_err`]): `dabs[i][j]`
/// is `‖Δ^abs_{j+1,i}‖_F` (hidden layers), `h_aug[j][i] = ‖ĥ_{j,i}‖² + 1`, `fe` the running
/// forward bounds.
fn param_jacobian_errors(
    mlp: &Mlp,
    al: &BackwardAllowance,
    dabs: &[Vec<f64>],
    h_aug: &[Vec<f64>],
    fe: &forward_error::ForwardErrors,
) -> Vec<f64> {
    let depth = mlp.depth();
    let c = mlp.output_dim();
    let fan_in: Vec<usize> = mlp.layers().iter().map(|l| l.fan_in()).collect();
    dabs.iter()
        .enumerate()
        .map(|(i, da)| {
            let mut sum = 0.0f64;
            for j in 0..depth {
                // ‖[ĥ_j; 1]‖ rounded up, and η_j ≥ ‖ĥ_j − h_j‖ (inputs exact).
                let hn = h_aug[j][i].sqrt() * (1.0 + gamma(fan_in[j] + 3));
                let eta = if j == 0 {
                    0.0
                } else {
                    let col = fe.post[j - 1].column(i);
                    col.iter().map(|v| v * v).sum::<f64>().sqrt() * (1.0 + gamma(fan_in[j] + 3))
                };
                // ‖Δ̂ h̃̂ᵀ − Δ h̃ᵀ‖_F ≤ ‖Δ̂ − Δ‖_F‖h̃̂‖ + ‖Δ‖_F‖ĥ − h‖.
                let blk = if j + 1 < depth {
                    let a = da[j];
                    al.err(a) * hn + (a * al.upper + al.under) * eta
                } else {
                    (c as f64).sqrt() * (1.0 + U) * eta
                };
                sum += blk * blk;
            }
            round_up(sum.sqrt() * (1.0 + gamma(depth + 4)))
        })
        .collect()
}

/// How the backward pass of a block is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backward {
    /// Dense GEMMs over all units ([`Mlp::output_deltas`], [`Mlp::input_gradients`]).
    Dense,
    /// ReLU only: per sample, products restricted to the active units ([`SparseBackward`]).
    Sparse(Kernel),
}

impl Backward {
    /// The path for `mlp`: sparse for a ReLU network with a hidden layer when the SIMD kernel is
    /// available (AVX-512), dense otherwise (the portable kernel is slower than the dense GEMMs).
    fn choose(mlp: &Mlp) -> Self {
        match Kernel::detect() {
            Some(kernel) if Self::sparse_applies(mlp) => Backward::Sparse(kernel),
            _ => Backward::Dense,
        }
    }

    /// σ′ ∈ {0, 1} (ReLU) and at least one hidden layer.
    fn sparse_applies(mlp: &Mlp) -> bool {
        matches!(mlp.activation(), Activation::Relu) && mlp.depth() >= 2
    }
}

/// What every block of one [`per_sample_stats`] call shares.
struct Plan {
    backward: Backward,
    /// `W_lᵀ` packed for the sparse path (`l = 1..L−1`; empty on the dense path).
    packs: Vec<PackedT>,
    /// The network with |W_l| and |b_l|: its backward pass at the same σ′ is the absolute-value
    /// backward pass (σ′ ≥ 0 for every activation).
    abs_mlp: Mlp,
}

/// Per-block outputs, indexed by block-relative sample.
struct BlockStats {
    x_norm: Vec<f64>,
    param_sq: Vec<f64>,
    delta1_sq: Vec<f64>,
    input_sq: Vec<f64>,
    input_spectral_sq: Vec<f64>,
    input_abs: Vec<(f64, f64)>,
    param_err: Vec<f64>,
    lambda: Vec<f64>,
    jjt: Vec<f64>,
    residual: Option<Vec<f64>>,
    residual_err: Option<Vec<f64>>,
    param_power: Vec<Vec<ScaledPowerSum>>,
    input_power: Vec<Vec<ScaledPowerSum>>,
    kinks: Vec<usize>,
    near_kinks: Vec<NearKink>,
}

/// Scratch of [`sample_stats`], reused across the samples of a block.
struct PowerScratch {
    tmp: Vec<ScaledPowerSum>,
    acc: Vec<ScaledPowerSum>,
    h_pows: Vec<Vec<ScaledPowerSum>>,
    hbuf: Vec<f64>,
}

impl PowerScratch {
    fn new(nk: usize, depth: usize) -> Self {
        Self {
            tmp: vec![ScaledPowerSum::ZERO; nk],
            acc: vec![ScaledPowerSum::ZERO; nk],
            h_pows: vec![vec![ScaledPowerSum::ZERO; nk]; depth],
            hbuf: Vec::new(),
        }
    }
}

/// All per-sample quantities of samples `start..end` (`sb`: scratch of the sparse path, whose
/// contents never affect the results).
fn block_stats(
    mlp: &Mlp,
    ds: &Dataset,
    (start, end): (usize, usize),
    ks: &[u32],
    plan: &Plan,
    sb: &mut SparseBackward,
) -> BlockStats {
    let packs = &plan.packs;
    let b = end - start;
    let c = mlp.output_dim();
    let nk = ks.len();
    let cache = mlp.forward_cache(ds.x_block(start, end));
    let fe = forward_errors(mlp, &cache);
    let mut kinks: Vec<usize> = fe.near_kinks.iter().map(|k| k.sample).collect();
    kinks.dedup();
    // ‖h_{l−1,i}‖² + 1 for every layer l and sample i.
    let h_aug: Vec<Vec<f64>> = cache
        .post
        .iter()
        .map(|h| {
            h.column_iter()
                .map(|col| col.norm_squared() + 1.0)
                .collect()
        })
        .collect();
    let (input_abs, dabs) = abs_backward_norms(&plan.abs_mlp, &cache);
    let param_err = param_jacobian_errors(mlp, &BackwardAllowance::of(mlp), &dabs, &h_aug, &fe);
    let mut st = BlockStats {
        x_norm: cache.post[0].column_iter().map(|col| col.norm()).collect(),
        param_sq: vec![0.0; b],
        delta1_sq: vec![0.0; b],
        input_sq: vec![0.0; b],
        input_spectral_sq: vec![0.0; b],
        input_abs,
        param_err,
        lambda: vec![0.0; b],
        jjt: vec![0.0; b * c * c],
        residual: None,
        residual_err: None,
        param_power: vec![vec![ScaledPowerSum::ZERO; b]; nk],
        input_power: vec![vec![ScaledPowerSum::ZERO; b]; nk],
        kinks,
        near_kinks: Vec::new(),
    };
    let mut scratch = PowerScratch::new(nk, mlp.depth());
    match plan.backward {
        Backward::Dense => {
            let deltas: OutputDeltas = mlp.output_deltas(&cache);
            let jx = mlp.input_gradients(&deltas, b);
            let d = jx.nrows();
            for i in 0..b {
                let col0 = i * c;
                let views: Vec<&[f64]> = deltas
                    .hidden
                    .iter()
                    .map(|delta| {
                        let m = delta.nrows();
                        &delta.as_slice()[col0 * m..(col0 + c) * m]
                    })
                    .collect();
                let jxi = &jx.as_slice()[col0 * d..(col0 + c) * d];
                sample_stats(&mut st, i, c, ks, &views, jxi, &h_aug, &cache, &mut scratch);
            }
        }
        Backward::Sparse(kernel) => {
            sb.run(mlp, packs, kernel, &cache);
            // J_x in sub-blocks whose Jacobians stay in L2 until their statistics are taken.
            for lo in (0..b).step_by(JX_SAMPLES) {
                let range = lo..(lo + JX_SAMPLES).min(b);
                sb.input_gradients(packs, kernel, range.clone());
                for i in range {
                    let views = sb.views(i);
                    let jx = sb.jx(i - lo);
                    sample_stats(&mut st, i, c, ks, &views, jx, &h_aug, &cache, &mut scratch);
                }
            }
        }
    }
    if let Some(y) = ds.y_block(start, end) {
        let out = cache.output();
        let eout = fe.output();
        let mut r = Vec::with_capacity(b * c);
        let mut e = Vec::with_capacity(b * c);
        for i in 0..b {
            for k in 0..c {
                r.push(out[(k, i)] - y[(k, i)]);
                e.push(forward_error::residual_error(
                    eout[(k, i)],
                    out[(k, i)],
                    y[(k, i)],
                ));
            }
        }
        st.residual = Some(r);
        st.residual_err = Some(e);
    }
    st.near_kinks = fe.near_kinks;
    st
}

/// The network with entrywise |W_l|, |b_l| and the same activation (for its backward pass only).
fn abs_network(mlp: &Mlp) -> Mlp {
    let layers = mlp
        .layers()
        .iter()
        .map(|l| crate::model::Dense {
            weight: l.weight.abs(),
            bias: l.bias.abs(),
        })
        .collect();
    Mlp::new(layers, mlp.activation()).expect("the same shapes chain")
}

/// Per sample of the block, `(‖J^abs_x(x_i)‖_F, ‖Δ^abs_{1,i}‖_F)` and `‖Δ^abs_{l,i}‖_F` for
/// every hidden layer l: the input Jacobian and deltas of the absolute-value backward pass
/// `|W_1|ᵀ(|W_2|ᵀ(⋯) ∘ σ′(ẑ_1))` at the computed σ′ (σ′ ≥ 0 for every activation). The first
/// delta norm is 0 for a single layer (Δ_1 = I_C, exact).
#[allow(clippy::type_complexity)]
fn abs_backward_norms(
    abs_mlp: &Mlp,
    cache: &crate::model::ForwardCache,
) -> (Vec<(f64, f64)>, Vec<Vec<f64>>) {
    let b = cache.batch_size();
    let c = abs_mlp.output_dim();
    let deltas = abs_mlp.output_deltas(cache);
    let jx = abs_mlp.input_gradients(&deltas, b);
    let fro = |m: nalgebra::DMatrixView<'_, f64>| m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let dabs: Vec<Vec<f64>> = (0..b)
        .map(|i| {
            deltas
                .hidden
                .iter()
                .map(|d| fro(d.columns(i * c, c)))
                .collect()
        })
        .collect();
    let input = (0..b)
        .map(|i| {
            (
                fro(jx.columns(i * c, c)),
                dabs[i].first().copied().unwrap_or(0.0),
            )
        })
        .collect();
    (input, dabs)
}

/// The per-sample quantities of sample `i` (block-relative) from its hidden-layer deltas
/// `deltas[l]` (`r × C`, column-major: column c is `δ_{l+1,c}` on r units, all of them on the
/// dense path, the active ones on the sparse path) and its input Jacobian `jx` (`d × C`,
/// column-major), written into `st`.
#[allow(clippy::too_many_arguments)]
fn sample_stats(
    st: &mut BlockStats,
    i: usize,
    c: usize,
    ks: &[u32],
    deltas: &[&[f64]],
    jx: &[f64],
    h_aug: &[Vec<f64>],
    cache: &crate::model::ForwardCache,
    sc: &mut PowerScratch,
) {
    let depth = h_aug.len();
    let nk = ks.len();
    // Last layer: Δ_L = I_C contributes I_C (‖h_{L−1}‖² + 1).
    let mut gram = DMatrix::<f64>::identity(c, c) * h_aug[depth - 1][i];
    for (j, dv) in deltas.iter().enumerate() {
        // Δ_{l,i}ᵀΔ_{l,i}: C×C dot products of the columns.
        let g = column_gram(dv, c);
        gram.zip_apply(&g, |acc, v| *acc += h_aug[j][i] * v);
        if j == 0 {
            st.delta1_sq[i] = g.trace();
        }
    }
    if deltas.is_empty() {
        st.delta1_sq[i] = c as f64;
    }
    st.param_sq[i] = gram.trace();
    st.lambda[i] = small_lambda_max(&gram);
    st.jjt[i * c * c..(i + 1) * c * c].copy_from_slice(gram.transpose().as_slice());
    let jx_gram = column_gram(jx, c);
    st.input_sq[i] = jx_gram.trace();
    st.input_spectral_sq[i] = small_lambda_max(&jx_gram);
    if nk == 0 {
        return;
    }
    // Entrywise power sums (T7e) over contiguous slices (exact zeros contribute nothing).
    ScaledPowerSum::of_slice(jx, ks, &mut sc.tmp);
    for q in 0..nk {
        st.input_power[q][i] = sc.tmp[q];
    }
    for (j, hp) in sc.h_pows.iter_mut().enumerate() {
        sc.hbuf.clear();
        sc.hbuf.extend(cache.post[j].column(i).iter());
        sc.hbuf.push(1.0);
        ScaledPowerSum::of_slice(&sc.hbuf, ks, hp);
    }
    sc.acc.iter_mut().for_each(|a| *a = ScaledPowerSum::ZERO);
    for (j, h_pow) in sc.h_pows.iter().enumerate() {
        match deltas.get(j) {
            Some(delta) => ScaledPowerSum::of_slice(delta, ks, &mut sc.tmp),
            // Δ_L = I_C: C entries equal to 1.
            None => sc.tmp.iter_mut().for_each(|t| {
                *t = ScaledPowerSum {
                    scale: 1.0,
                    sum: c as f64,
                }
            }),
        }
        for (q, &k) in ks.iter().enumerate() {
            sc.acc[q] = sc.acc[q].add(sc.tmp[q].mul(h_pow[q]), k);
        }
    }
    for q in 0..nk {
        st.param_power[q][i] = sc.acc[q];
    }
}

// ------------------------------------------------------------------------------------------------
// Sparse-aware backward pass for ReLU.
//
// With σ′ ∈ {0, 1} and the active sets A_l = {a : z_{l,a}(x_i) > 0} of sample i, the backward
// quantities vanish exactly off the active units:
//   Δ_{L−1,i}[A_{L−1}, c] = W_L[c, A_{L−1}],
//   Δ_{l,i}[A_l] = W_{l+1}[A_{l+1}, A_l]ᵀ Δ_{l+1,i}[A_{l+1}]   (other rows 0),
//   J_x,i = W_1[A_1, :]ᵀ Δ_{1,i}[A_1].
// Each product is a GEMM whose inner dimension runs over the active units only, formed by the
// register kernels of `crate::linalg::sparse_gemm` (weights packed once per call; for Δ only the
// active rows are formed and written compactly). Δ is kept compact (the rows of the active units;
// column-major for the Grams and power sums, row-major as the next operand), so everything
// downstream runs over active rows only. J_x is formed in sub-blocks of JX_SAMPLES samples whose
// statistics are taken while they are in cache. The sums differ from the dense path only in
// skipping exact zeros (and in summation order).
// ------------------------------------------------------------------------------------------------

/// Samples per sub-block of the input-Jacobian product (their `J_x` stay in L2).
const JX_SAMPLES: usize = 8;

/// State of the sparse backward pass of one block (reused across blocks).
struct SparseBackward {
    c: usize,
    /// `active[h][s]`: active units of hidden layer `h` (`z_{h+1} > 0`) at sample s, ascending.
    active: Vec<Vec<Vec<u32>>>,
    /// `compact[h][s]`: `|A| × C` column-major; row t is `δ_{h+1}` at unit `active[h][s][t]`.
    compact: Vec<Vec<Vec<f64>>>,
    /// The same, row-major (the operand of the next product down).
    rows: Vec<Vec<Vec<f64>>>,
    /// `sel[s][p]`: the active units of sample s in panel p as `(mask, rows before p)`.
    sel: Vec<Vec<(u16, u32)>>,
    /// `J_x(x_s)`, `d × C` column-major, sample after sample (a sub-range of the block).
    jx: Vec<f64>,
    /// `d·C`.
    jx_len: usize,
}

impl SparseBackward {
    fn new(mlp: &Mlp) -> Self {
        let hidden = mlp.depth() - 1;
        Self {
            c: mlp.output_dim(),
            active: vec![Vec::new(); hidden],
            compact: vec![Vec::new(); hidden],
            rows: vec![Vec::new(); hidden],
            sel: Vec::new(),
            jx: Vec::new(),
            jx_len: 0,
        }
    }

    /// Backward pass of every sample of the block in `cache`; `packs[l]` is `W_{l+1}ᵀ` packed.
    fn run(
        &mut self,
        mlp: &Mlp,
        packs: &[PackedT],
        kernel: Kernel,
        cache: &crate::model::ForwardCache,
    ) {
        let c = self.c;
        let b = cache.batch_size();
        let top = mlp.depth() - 2;
        for (h, act) in self.active.iter_mut().enumerate() {
            act.resize_with(b, Vec::new);
            let m = cache.pre[h].nrows();
            for (i, a) in act.iter_mut().enumerate() {
                // Branch-free (activity is close to a coin flip): write every index, advance
                // past the active ones.
                a.resize(m, 0);
                let mut n = 0;
                for (u, &v) in cache.pre[h].as_slice()[i * m..(i + 1) * m]
                    .iter()
                    .enumerate()
                {
                    a[n] = u as u32;
                    n += usize::from(v > 0.0);
                }
                a.truncate(n);
            }
        }
        for dc in self.compact.iter_mut().chain(self.rows.iter_mut()) {
            dc.resize_with(b, Vec::new);
        }
        // Δ_{L−1}[a, c] = W_L[c, a] on the active units: row a is column a of W_L.
        let wl = mlp.layers()[top + 1].weight.as_slice();
        for (dr, act) in self.rows[top].iter_mut().zip(&self.active[top]) {
            dr.clear();
            for &a in act {
                dr.extend_from_slice(&wl[a as usize * c..(a as usize + 1) * c]);
            }
        }
        relayout_all(&self.rows[top], &mut self.compact[top], c, true);
        // Δ_{h+1} = (W_{h+2}ᵀ Δ_{h+2}) restricted to the active units of layer h + 1.
        for h in (0..top).rev() {
            let pack = &packs[h + 1];
            self.sel.resize_with(b, Vec::new);
            for (sel, act) in self.sel.iter_mut().zip(&self.active[h]) {
                sel.clear();
                sel.resize(pack.panels(), (0, 0));
                for &a in act {
                    sel[a as usize / MR].0 |= 1 << (a as usize % MR);
                }
                let mut t = 0;
                for entry in sel.iter_mut() {
                    entry.1 = t;
                    t += entry.0.count_ones();
                }
            }
            for (dst, act) in self.compact[h].iter_mut().zip(&self.active[h]) {
                dst.resize(act.len() * c, 0.0);
            }
            sparse_products_selected(
                kernel,
                pack,
                &self.active[h + 1],
                &self.rows[h + 1],
                c,
                &self.sel,
                &mut self.compact[h],
            );
            relayout_all(&self.compact[h], &mut self.rows[h], c, false);
        }
    }

    /// `J_x = W_1ᵀ Δ_1` over the active units of layer 1 for the samples `range` of the block
    /// (after [`SparseBackward::run`]); then [`SparseBackward::jx`] of `i − range.start`.
    fn input_gradients(&mut self, packs: &[PackedT], kernel: Kernel, range: Range<usize>) {
        let (c, len) = (self.c, packs[0].rows * self.c);
        self.jx.resize(range.len() * len, 0.0);
        sparse_products(
            kernel,
            &packs[0],
            &self.active[0][range.clone()],
            &self.rows[0][range.clone()],
            c,
            &mut self.jx[..range.len() * len],
        );
        self.jx_len = len;
    }

    /// The compact deltas of sample `i` (`|A_l| × C`, column-major).
    fn views(&self, i: usize) -> Vec<&[f64]> {
        self.compact.iter().map(|dc| dc[i].as_slice()).collect()
    }

    /// `J_x` of the i-th sample of the last [`SparseBackward::input_gradients`] range
    /// (`d × C`, column-major).
    fn jx(&self, i: usize) -> &[f64] {
        &self.jx[i * self.jx_len..(i + 1) * self.jx_len]
    }
}

/// Change the layout of `r × c` matrices (`r = src[s].len() / c`): `dst[s]` holds `src[s]`
/// column-major if `to_col_major`, row-major otherwise (`src[s]` is in the other layout).
fn relayout_all(src: &[Vec<f64>], dst: &mut [Vec<f64>], c: usize, to_col_major: bool) {
    for (from, to) in src.iter().zip(dst.iter_mut()) {
        let r = from.len() / c;
        to.resize(from.len(), 0.0);
        if r == 0 {
            continue;
        }
        if to_col_major {
            for (col, dst) in to.chunks_exact_mut(r).enumerate() {
                for (row, v) in dst.iter_mut().enumerate() {
                    *v = from[row * c + col];
                }
            }
        } else {
            for (row, dst) in to.chunks_exact_mut(c).enumerate() {
                for (col, v) in dst.iter_mut().enumerate() {
                    *v = from[row + col * r];
                }
            }
        }
    }
}

/// The non-circular T1 check (THEORY.md T1 "Check").
///
/// - T1a (the d×d identity) on up to `points` evenly spaced samples: the input Jacobian by
///   forward mode along all d input directions ([`Mlp::input_jacobian_forward`]) against
///   `W_1ᵀδ_c` from the backward pass.
/// - T1b (the scalar form `⟨x, ∇_x f_c⟩ = ⟨W, ∇_W f_c⟩_F`) on up to `16·points` samples, batched:
///   one forward-mode JVP along `x` itself ([`Mlp::jvp_input`]) against `δ_cᵀ W x` from the
///   backward pass.
fn t1_check(mlp: &Mlp, ds: &Dataset, points: usize) -> T1Check {
    let n = ds.len();
    let spaced = |count: usize| -> Vec<usize> {
        let count = count.min(n);
        (0..count)
            .map(|q| {
                if count <= 1 {
                    0
                } else {
                    q * (n - 1) / (count - 1)
                }
            })
            .collect()
    };
    let c = mlp.output_dim();
    let d = mlp.input_dim();
    let w = &mlp.first_layer().weight;
    let w_norm = w.norm();
    let u = f64::EPSILON / 2.0;
    let delta_of = |deltas: &OutputDeltas, col: usize, cc: usize| -> nalgebra::DVector<f64> {
        match deltas.hidden.first() {
            Some(d1) => d1.column(col).into_owned(),
            None => nalgebra::DVector::from_fn(c, |r, _| if r == cc { 1.0 } else { 0.0 }),
        }
    };
    let mut res = T1Check {
        points: 0,
        max_abs_residual: 0.0,
        max_scalar_residual: 0.0,
        expected_size: 0.0,
    };
    // T1a on a few points.
    for i in spaced(points) {
        let x = ds.x_row(i);
        let fwd = mlp.input_jacobian_forward(x);
        let xm = DMatrix::from_column_slice(d, 1, x);
        let cache = mlp.forward_cache(xm.as_view());
        let deltas = mlp.output_deltas(&cache);
        let x_abs_max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let x_norm = xm.norm();
        for cc in 0..c {
            let delta = delta_of(&deltas, cc, cc);
            let wt_delta = mlp.weight_transposed(0) * &delta;
            let max_diff = (0..d).fold(0.0f64, |m, j| m.max((fwd[(cc, j)] - wt_delta[j]).abs()));
            res.max_abs_residual = res.max_abs_residual.max(max_diff * x_abs_max);
            res.expected_size = res
                .expected_size
                .max(10.0 * u * w_norm * delta.norm() * x_norm);
        }
        res.points += 1;
    }
    // T1b on many points, batched.
    let idx = spaced(16 * points);
    let mut xb = DMatrix::zeros(d, idx.len());
    for (col, &i) in idx.iter().enumerate() {
        xb.column_mut(col).copy_from_slice(ds.x_row(i));
    }
    let cache = mlp.forward_cache(xb.as_view());
    let deltas = mlp.output_deltas(&cache);
    let jvp = mlp.jvp_input(&cache, xb.as_view());
    let wx = w * &xb;
    for col in 0..idx.len() {
        for cc in 0..c {
            let delta = delta_of(&deltas, col * c + cc, cc);
            let rhs = delta.dot(&wx.column(col));
            res.max_scalar_residual = res.max_scalar_residual.max((jvp[(cc, col)] - rhs).abs());
            res.expected_size = res
                .expected_size
                .max(10.0 * u * w_norm * delta.norm() * xb.column(col).norm());
        }
    }
    res
}

#[cfg(test)]
mod tests;
