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

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Mlp, OutputDeltas};
use crate::quantity::gamma;

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
            .fold(lane_max.iter().fold(0.0f64, |m, &v| m.max(v)), |m, v| m.max(v.abs()));
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
    /// Samples with a pre-activation so close to a ReLU-type kink that the Jacobian is
    /// set-valued (THEORY.md §3 Rules, `|ẑ| < 1e-12·(|W||h| + |b|)`); T1–T7 used σ′(0).
    pub kink_samples: Vec<usize>,
    /// Relative a-priori rounding estimate of the per-sample norms, `2γ_K` with
    /// `K = Σ_l (m_{l−1} + 1) + C` (THEORY.md §3 item 1, smooth case).
    pub rel_tol: f64,
}

impl PerSampleStats {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.x_norm.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.x_norm.is_empty()
    }
}

struct BlockStats {
    x_norm: Vec<f64>,
    param_sq: Vec<f64>,
    delta1_sq: Vec<f64>,
    input_sq: Vec<f64>,
    input_spectral_sq: Vec<f64>,
    lambda: Vec<f64>,
    jjt: Vec<f64>,
    residual: Option<Vec<f64>>,
    param_power: Vec<Vec<ScaledPowerSum>>,
    input_power: Vec<Vec<ScaledPowerSum>>,
    kinks: Vec<usize>,
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
    if let Some(&k) = opts.ks.iter().find(|&&k| k == 0) {
        return Err(Error::invalid_argument(
            "--k",
            format!("k must be ≥ 1, got {k}"),
        ));
    }
    let blocks = ds.blocks(opts.block);
    let results: Vec<BlockStats> = blocks
        .par_iter()
        .map(|&(start, end)| {
            let b = block_stats(mlp, ds, start, end, &opts.ks);
            progress(end - start);
            b
        })
        .collect();
    let c = mlp.output_dim();
    let mut out = PerSampleStats {
        outputs: c,
        x_norm: vec![],
        param_sq: vec![],
        first_layer_sq: vec![],
        delta1_sq: vec![],
        input_sq: vec![],
        input_spectral_sq: vec![],
        lambda: vec![],
        jjt: vec![],
        residual: ds.has_targets().then(Vec::new),
        param_power: opts.ks.iter().map(|&k| (k, vec![])).collect(),
        input_power: opts.ks.iter().map(|&k| (k, vec![])).collect(),
        t1: T1Check {
            points: 0,
            max_abs_residual: 0.0,
            max_scalar_residual: 0.0,
            expected_size: 0.0,
        },
        kink_samples: vec![],
        rel_tol: 0.0,
    };
    for (bs, &(start, _)) in results.into_iter().zip(&blocks) {
        out.x_norm.extend(&bs.x_norm);
        out.param_sq.extend(&bs.param_sq);
        out.delta1_sq.extend(&bs.delta1_sq);
        out.input_sq.extend(&bs.input_sq);
        out.input_spectral_sq.extend(&bs.input_spectral_sq);
        out.lambda.extend(&bs.lambda);
        out.jjt.extend(&bs.jjt);
        if let (Some(r), Some(br)) = (out.residual.as_mut(), bs.residual) {
            r.extend(br);
        }
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
    let k_sum: usize = mlp.layers().iter().map(|l| l.fan_in() + 1).sum::<usize>() + c;
    out.rel_tol = 2.0 * gamma(k_sum);
    out.t1 = t1_check(mlp, ds, opts.t1_points);
    if let Some(i) = (0..out.len()).find(|&i| {
        !(out.param_sq[i].is_finite() && out.input_sq[i].is_finite() && out.lambda[i].is_finite())
    }) {
        return Err(Error::Numerical(format!(
            "per-sample gradient norms of sample {i} are not finite (overflow in the network)"
        )));
    }
    Ok(out)
}

/// All per-sample quantities of samples `start..end`.
fn block_stats(mlp: &Mlp, ds: &Dataset, start: usize, end: usize, ks: &[u32]) -> BlockStats {
    let b = end - start;
    let c = mlp.output_dim();
    let depth = mlp.depth();
    let cache = mlp.forward_cache(ds.x_block(start, end));
    let deltas: OutputDeltas = mlp.output_deltas(&cache);
    let jx = mlp.input_gradients(&deltas, b);
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
    let x_norm: Vec<f64> = cache.post[0].column_iter().map(|col| col.norm()).collect();
    let mut param_sq = vec![0.0; b];
    let mut delta1_sq = vec![0.0; b];
    let mut input_sq = vec![0.0; b];
    let mut input_spectral_sq = vec![0.0; b];
    let mut lambda = vec![0.0; b];
    let mut jjt = vec![0.0; b * c * c];
    let mut param_power = vec![vec![ScaledPowerSum::ZERO; b]; ks.len()];
    let mut input_power = vec![vec![ScaledPowerSum::ZERO; b]; ks.len()];
    let nk = ks.len();
    let mut tmp = vec![ScaledPowerSum::ZERO; nk];
    let mut h_pows: Vec<Vec<ScaledPowerSum>> = vec![vec![ScaledPowerSum::ZERO; nk]; depth];
    let mut hbuf: Vec<f64> = Vec::new();
    let mut acc = vec![ScaledPowerSum::ZERO; nk];
    for i in 0..b {
        let col0 = i * c;
        // Last layer: Δ_L = I_C contributes I_C (‖h_{L−1}‖² + 1).
        let mut gram = DMatrix::<f64>::identity(c, c) * h_aug[depth - 1][i];
        for (j, delta) in deltas.hidden.iter().enumerate() {
            // Δ_{l,i}ᵀΔ_{l,i} as a small GEMM (C×m_l times m_l×C).
            let dt = delta.columns(col0, c).transpose();
            gram.gemm(h_aug[j][i], &dt, &dt.transpose(), 1.0);
        }
        delta1_sq[i] = match deltas.hidden.first() {
            Some(delta1) => delta1.columns(col0, c).norm_squared(),
            None => c as f64,
        };
        param_sq[i] = gram.trace();
        lambda[i] = small_lambda_max(&gram);
        jjt[i * c * c..(i + 1) * c * c].copy_from_slice(gram.transpose().as_slice());
        let jxi = jx.columns(col0, c);
        input_sq[i] = jxi.norm_squared();
        let jxt = jxi.transpose();
        input_spectral_sq[i] = small_lambda_max(&(&jxt * jxt.transpose()));
        if nk == 0 {
            continue;
        }
        // Entrywise power sums (T7e): contiguous column slices of the block matrices.
        let d_rows = jx.nrows();
        ScaledPowerSum::of_slice(&jx.as_slice()[col0 * d_rows..(col0 + c) * d_rows], ks, &mut tmp);
        for q in 0..nk {
            input_power[q][i] = tmp[q];
        }
        for (j, hp) in h_pows.iter_mut().enumerate() {
            hbuf.clear();
            hbuf.extend(cache.post[j].column(i).iter());
            hbuf.push(1.0);
            ScaledPowerSum::of_slice(&hbuf, ks, hp);
        }
        acc.iter_mut().for_each(|a| *a = ScaledPowerSum::ZERO);
        for j in 0..depth {
            if j + 1 == depth {
                // Δ_L = I_C: C entries equal to 1.
                tmp.iter_mut().for_each(|t| *t = ScaledPowerSum { scale: 1.0, sum: c as f64 });
            } else {
                let delta = &deltas.hidden[j];
                let rows = delta.nrows();
                ScaledPowerSum::of_slice(&delta.as_slice()[col0 * rows..(col0 + c) * rows], ks, &mut tmp);
            }
            for (q, &k) in ks.iter().enumerate() {
                acc[q] = acc[q].add(tmp[q].mul(h_pows[j][q]), k);
            }
        }
        for q in 0..nk {
            param_power[q][i] = acc[q];
        }
    }
    let residual = ds.y_block(start, end).map(|y| {
        let out = cache.output();
        let mut r = Vec::with_capacity(b * c);
        for i in 0..b {
            for k in 0..c {
                r.push(out[(k, i)] - y[(k, i)]);
            }
        }
        r
    });
    let kinks = kink_flags(mlp, &cache);
    BlockStats {
        x_norm,
        param_sq,
        delta1_sq,
        input_sq,
        input_spectral_sq,
        lambda,
        jjt,
        residual,
        param_power,
        input_power,
        kinks,
    }
}

/// Samples (block-relative) with a hidden pre-activation within `1e-12·(|W||h| + |b|)` of a
/// piecewise-linear kink (THEORY.md §3 Rules).
fn kink_flags(mlp: &Mlp, cache: &crate::model::ForwardCache) -> Vec<usize> {
    if !matches!(
        mlp.activation(),
        crate::Activation::Relu | crate::Activation::LeakyRelu { .. }
    ) {
        return vec![];
    }
    let b = cache.batch_size();
    let mut flagged = vec![false; b];
    for j in 0..mlp.depth().saturating_sub(1) {
        let layer = &mlp.layers()[j];
        let h = &cache.post[j];
        // Cheap pre-test: (|W||h|)_r ≤ ‖W_r‖₁·max|h|; only candidates get the exact scale.
        let row_abs: Vec<f64> = layer.weight.row_iter().map(|r| r.abs().sum()).collect();
        for (i, flag) in flagged.iter_mut().enumerate() {
            if *flag {
                continue;
            }
            let hmax = h.column(i).amax();
            for (r, &row_sum) in row_abs.iter().enumerate() {
                let z = cache.pre[j][(r, i)].abs();
                let bias = layer.bias[r].abs();
                if z >= 1e-12 * (row_sum * hmax + bias) {
                    continue;
                }
                let s: f64 = layer
                    .weight
                    .row(r)
                    .iter()
                    .zip(h.column(i).iter())
                    .map(|(w, v)| (w * v).abs())
                    .sum();
                if z < 1e-12 * (s + bias) {
                    *flag = true;
                    break;
                }
            }
        }
    }
    (0..b).filter(|&i| flagged[i]).collect()
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
