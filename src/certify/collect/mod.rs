//! The measurement stage of `certify` (issue 4 pipeline steps 2–3): the per-sample engine and
//! the first-order quantities, the exact Gram path when nC ≤ `--gram-limit` (else the operator
//! path), the residual-honesty numbers, the T6(d) directional tests and, with ε, the T8–T10
//! evidence. Every number enters the typed [`Evidence`] with its kind (its canonical name,
//! `docs/measurements.md`, is given once, in [`super::evidence`]); the maps of the `measure`
//! engine are read into it through that table. The vectors the theorem layer needs go to
//! [`Collected`].

use flatcert_bounds::BatchModel;
use flatcert_bounds::t6::{DirectionalResult, directional_test};

use super::evidence::{Evidence, names, per_k};
use super::plan::Plan;
use super::theorems::{Robust, to_value};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::measure::first_order::{first_layer_norms, first_order_quantities, moment_of_squares};
use crate::measure::forward_error::round_up_or_zero;
use crate::measure::gram::{GramOptions, GramSpectrum, gauss_newton_gram, gram_memory_bytes};
use crate::measure::hvp::{CurvatureOp, CurvatureOperator, OperatorOptions};
use crate::measure::kmoment::{directional_values, per_sample_top};
use crate::measure::lanczos::{
    LanczosOptions, Target, UpperBoundOptions, gauss_newton_lambda_max_randomized, hessian_extreme,
    hessian_trace,
};
use crate::measure::per_sample::{PerSampleOptions, PerSampleStats, per_sample_stats};
use crate::measure::stability::{BracketOptions, gd_critical_lr, mean_square_rho, wme_quantities};
use crate::measure::truncation::{Goal, RankBudget};
use crate::model::Mlp;
use crate::quantity::{Quantity, gamma, round_up};
use robust::{robustness, robustness_quantities};

pub(crate) mod robust;

pub use robust::targets_are_one_hot;

/// The T9 certified-radius search runs on [0, RADIUS_SEARCH_FACTOR·ε].
pub const RADIUS_SEARCH_FACTOR: f64 = 4.0;
/// Largest n·P for the smooth-activation Hessian diagnostics (λ_min(H), |tr H − tr G|).
const HESSIAN_BUDGET: f64 = 1e8;
/// Largest r(r+1)/2 for the λ_max(𝒬_r) diagnostic (a dense eigenproblem on Sym(r)).
const RHO_DENSE_LIMIT: usize = 3000;

/// Which curvature path was taken.
#[derive(Debug, Clone, PartialEq)]
pub enum CurvaturePath {
    /// The exact nC × nC Gram matrix (rigorous λ_max(G) bracket, T5, T6(d)).
    Gram,
    /// Lanczos on products only (λ_max(G) lower bound and estimate); the reason.
    Operator(String),
}

/// Everything the measurement stage produced.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Every measured quantity, typed ([`Evidence::to_map`] gives the certificate's map).
    pub evidence: Evidence,
    /// Notes for the certificate.
    pub notes: Vec<String>,
    /// Per-sample statistics.
    pub stats: PerSampleStats,
    /// T6(d) directional results per even k (Gram path only).
    pub directional: Vec<(u32, Vec<DirectionalResult>)>,
    /// The curvature path.
    pub path: CurvaturePath,
    /// T8–T10 evidence (with ε).
    pub robust: Option<Robust>,
    /// Why T8–T10 are not computed, if so.
    pub robust_reason: Option<String>,
}

fn ex(v: f64, rel: f64) -> Quantity {
    Quantity::exact(v, round_up(v.abs() * rel))
}

/// Run the measurement stage (plan validated, targets present).
pub fn collect(
    mlp: &Mlp,
    data: &Dataset,
    test: Option<&Dataset>,
    plan: &Plan,
    eta: f64,
    batch: &BatchModel,
) -> Result<Collected> {
    let c = mlp.output_dim();
    let n = data.len();
    let mut ks: Vec<u32> = plan.ks.clone();
    ks.extend([1, 2]);
    ks.sort_unstable();
    ks.dedup();
    let opts = PerSampleOptions {
        block: 128,
        ks: ks.clone(),
        t1_points: 8,
    };
    let stats = per_sample_stats(mlp, data, &opts, &|_| {})?;
    let norms = first_layer_norms(mlp)?;
    let mut first = first_order_quantities(mlp, &stats, &norms, &ks);
    let mut notes = Vec::new();
    if let Some(d) = stats.near_kink_description(mlp.activation()) {
        notes.push(format!(
            "Assumed: {d}. Every verdict that uses the Jacobian at the training points (T1–T8) \
             rests on it (`--kinks strict` makes them inconclusive); T9–T10 bound every σ′ of \
             the kink."
        ));
    }
    extra_first_order(&mut first, mlp, data, &stats, &norms, &plan.ks);
    let mut q = Evidence::from_map(&first);
    drop(first);
    // Residual honesty (THEORY T5 failure mode (i)).
    let op = CurvatureOperator::new(
        mlp,
        data,
        OperatorOptions::within_memory(plan.memory_limit_bytes),
    )?;
    let max_abs = q.residual.max_abs.as_ref().map_or(0.0, |r| r.value);
    residual_quantities(&mut q, &op, &stats)?;
    let evidence = super::theorems::residual_evidence(&q);
    if !evidence.hessian_is_gauss_newton() {
        notes.push(format!(
            "The residual is not proven 0 (computed max|res_ic| = {max_abs:.3e}, rigorously ≤ \
             {:.3e}): every stability verdict (T4–T7) is made on the Gauss–Newton model G in \
             place of H, and T7's interpolation hypothesis is assumed.",
            evidence.upper()
        ));
    }
    hessian_stage(
        &mut q,
        &mut notes,
        &op,
        max_abs,
        n as f64 * mlp.num_params() as f64,
        plan.seed,
    )?;
    // Curvature: the exact Gram path or the operator path.
    let (path, directional) = curvature_stage(
        &mut q,
        &mut notes,
        &op,
        |gopts| gauss_newton_gram(mlp, data, gopts),
        gram_memory_bytes(mlp, n),
        n * c,
        plan,
        eta,
        batch,
    )?;
    drop(op);
    // T8–T10 (with ε).
    let (robust, robust_reason) = match plan.epsilon {
        None => (
            None,
            Some("needs --epsilon (T8–T10 are statements at a radius ε)".to_string()),
        ),
        Some(eps) => {
            let r = robustness(mlp, data, test, plan, eps)?;
            robustness_quantities(&mut q, &r, eps);
            (Some(r), None)
        }
    };
    Ok(Collected {
        evidence: q,
        notes,
        stats,
        directional,
        path,
        robust,
        robust_reason,
    })
}

/// T6(d) directional results per even k.
pub type Directional = Vec<(u32, Vec<DirectionalResult>)>;

/// The curvature stage of any network (THEORY §7(c): T4–T6 and T5(i) use only J_i): the exact
/// Gram path when `nc` ≤ `--gram-limit` (`gram` builds the spectrum; `gram_bytes` is its memory
/// need), else the operator path on `op`. Fills λ_max(G), T5's bracket and T6(d)'s directional
/// tests into `q`; returns the path and the directional results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn curvature_stage<O: CurvatureOp>(
    q: &mut Evidence,
    notes: &mut Vec<String>,
    op: &O,
    gram: impl FnOnce(&GramOptions) -> Result<GramSpectrum>,
    gram_bytes: usize,
    nc: usize,
    plan: &Plan,
    eta: f64,
    batch: &BatchModel,
) -> Result<(CurvaturePath, Directional)> {
    let mut directional = Vec::new();
    let path = if nc <= plan.gram_limit {
        let need = gram_bytes;
        if need > plan.memory_limit_bytes {
            return Err(Error::invalid_argument(
                "--max-memory",
                format!(
                    "the exact Gram path for nC = {nc} needs about {}, more than the memory \
                     limit of {}; raise --max-memory if the machine has it, lower --gram-limit \
                     below {nc} to use the operator path (T5 is then not computed), or subsample \
                     the data",
                    crate::measure::gram::format_bytes(need),
                    crate::measure::gram::format_bytes(plan.memory_limit_bytes)
                ),
            ));
        }
        let gopts = GramOptions {
            block: 256,
            tau: 1e-12,
            memory_limit_bytes: plan.memory_limit_bytes,
        };
        let spec = gram(&gopts)?;
        gram_quantities(q, notes, &spec, eta, plan, batch)?;
        for &k in &plan.ks {
            let d = directional_tests(&spec, eta, batch, k)?;
            if let Some((i, worst)) = d
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.value.value.total_cmp(&b.1.value.value))
                .map(|(_, r)| (r.sample, r.value))
            {
                q.directional.max.insert(
                    k,
                    Quantity::exact(worst.value, worst.tol)
                        .with_method("T6d exact (dynamic programme or closed form on z = 1 − ηx)")
                        .with_note(format!(
                            "max_i E[(1 − η v_iᵀH_ξv_i)^{k}] over the top eigenvectors v_i of the \
                             H_i, at sample {i} (necessary for {k}-th moment stability: ≤ 1); \
                             η = {eta}, B = {}",
                            batch.batch
                        )),
                );
                q.directional
                    .argmax
                    .insert(k, Quantity::exact(i as f64, 0.0).with_method("argmax"));
            }
            directional.push((k, d));
        }
        CurvaturePath::Gram
    } else {
        let uopts = UpperBoundOptions {
            delta: plan.delta,
            max_products: plan.max_products,
            seed: plan.seed,
            ..UpperBoundOptions::default()
        };
        let p = batch.p();
        let l_upper = q
            .per_sample
            .lambda_max
            .as_ref()
            .map_or(f64::INFINITY, |l| to_value(l).upper());
        let spec = gauss_newton_lambda_max_randomized(op, &uopts, |lo, up| {
            flatcert_bounds::t5::sharpness_decides(eta, p, l_upper, lo, up)
        })?;
        let mut bounds = QuantityMap::new();
        spec.insert_into(&mut bounds);
        q.absorb(bounds);
        q.operator.lanczos_products = Some(
            Quantity::exact(spec.spectral.lanczos.products as f64, 0.0).with_note(format!(
                "operator products of the randomized λ_max(G) bound (budget --max-products {}, \
                 seed {}, δ = {:e})",
                plan.max_products, plan.seed, plan.delta
            )),
        );
        let b = &spec.bound;
        if !spec.decided {
            notes.push(format!(
                "λ_max(G) at scale: {} operator products (budget {}) left the bracket [{:.6e}, \
                 {:.6e}] (upper side with confidence 1 − {:e}); it did not decide every verdict \
                 at η — the gap is still open: raise --max-products, or lower --delta",
                spec.spectral.lanczos.products,
                plan.max_products,
                spec.spectral.bound.value,
                b.upper,
                plan.delta
            ));
        }
        let reason = format!(
            "the exact route (f) needs the Gram path (nC = {nc} > --gram-limit {})",
            plan.gram_limit
        );
        notes.push(format!(
            "Operator path: λ_max(G) has a rigorous Lanczos lower bound and an upper bound with \
             confidence 1 − {:e} (THEORY §3 item 8, {} products, seed {}); T4 and T5 are decided \
             by T5(i) and the (g) tests ({reason}); the T6 per-sample bound is still exact from \
             the λ_i; the T6(d) directional test is not computed.",
            plan.delta, spec.spectral.lanczos.products, plan.seed
        ));
        CurvaturePath::Operator(reason)
    };
    Ok((path, directional))
}

/// The first-order quantities the theorems need beyond `flatcert measure`'s set
/// (`docs/measurements.md`, "Quantities of `flatcert certify`"): T1's scalar residual and point
/// count, input-norm statistics, N_q(W) row/column sums, tr G_W, the weighted input-gradient
/// moments and maxima, and (1/n)Σ(tr H_i)². Public so that `flatcert measure` can emit them too,
/// which lets `flatcert bound` evaluate T3 and T7 from a measurements document.
pub fn extra_first_order(
    q: &mut QuantityMap,
    mlp: &Mlp,
    data: &Dataset,
    st: &PerSampleStats,
    norms: &crate::measure::first_order::FirstLayerNorms,
    ks: &[u32],
) {
    let n = st.len() as f64;
    let rel = st.rel_tol;
    let d = mlp.input_dim();
    q.insert(
        names::IDENTITY_SCALAR_MAX_ABS_RESIDUAL.into(),
        Quantity::exact(st.t1.max_scalar_residual, st.t1.expected_size).with_method(
            "T1b: max |⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F| by forward mode (one JVP along x)",
        ),
    );
    q.insert(
        names::IDENTITY_POINTS_CHECKED.into(),
        Quantity::exact(st.t1.points as f64, 0.0)
            .with_method("points at which T1a was checked by forward mode"),
    );
    let xtol = gamma(d + 2);
    let mean_x = st.x_norm.iter().sum::<f64>() / n;
    q.insert(
        names::INPUT_NORM_MEAN.into(),
        ex(mean_x, xtol + gamma(st.len() + 1)).with_method("(1/n) Σ_i ‖x_i‖₂"),
    );
    q.insert(
        names::FIRST_LAYER_MAX_ROW_SUM.into(),
        ex(norms.max_row_sum, gamma(d + 1)).with_method("max_j Σ_k |W_jk| (T2c, T7e)"),
    );
    q.insert(
        names::FIRST_LAYER_MAX_COL_SUM.into(),
        ex(norms.max_col_sum, gamma(mlp.first_layer().fan_out() + 1))
            .with_method("max_k Σ_j |W_jk| (T2c, T7e)"),
    );
    // Backward-pass errors from the absolute-value pass (per sample, not relative to the
    // possibly cancelled values): ‖Ĵ_x,i − J_x,i‖_F ≤ ε_i, ‖Δ̂_1,i − Δ_1,i‖_F ≤ ε′_i; for a square,
    // |a² − â²| ≤ (2â + ε)ε.
    let sq_err = |a: f64, e: f64| (2.0 * a + e) * e;
    let xs = |i: usize| st.x_norm[i] * st.x_norm[i] * (1.0 + 2.0 * xtol);
    let gw_err = (0..st.len())
        .map(|i| sq_err(st.delta1_sq[i].sqrt(), st.delta1_err[i]) * xs(i))
        .sum::<f64>()
        / n;
    let tr_gw = st.first_layer_sq.iter().sum::<f64>() / n;
    q.insert(
        names::FIRST_LAYER_GAUSS_NEWTON_TRACE.into(),
        Quantity::exact(
            tr_gw,
            round_up(gw_err * (1.0 + gamma(st.len() + 2)) + tr_gw * (rel + gamma(st.len() + 1))),
        )
        .with_method("tr G_W = (1/n) Σ_i ‖J_W(x_i)‖_F² (T3); tol: |W| backward pass"),
    );
    let weighted: Vec<f64> = (0..st.len())
        .map(|i| st.input_sq[i] * st.x_norm[i] * st.x_norm[i])
        .collect();
    let wrel = rel + 2.0 * xtol;
    let wm_err = (0..st.len())
        .map(|i| sq_err(st.input_sq[i].sqrt(), st.input_err[i]) * xs(i))
        .sum::<f64>()
        / n;
    let wm = weighted.iter().sum::<f64>() / n;
    q.insert(
        names::INPUT_GRAD_WEIGHTED_MEAN_SQ.into(),
        Quantity::exact(
            wm,
            round_up(wm_err * (1.0 + gamma(st.len() + 2)) + wm * (wrel + gamma(st.len() + 1))),
        )
        .with_method("(1/n) Σ_i ‖J_x(x_i)‖_F² ‖x_i‖² (T3, T7d); tol: |W| backward pass"),
    );
    let (mut smax, mut wmax) = (0.0f64, 0.0f64);
    for (i, w) in weighted.iter().enumerate() {
        smax = smax.max(st.input_spectral_sq[i]);
        wmax = wmax.max(*w);
    }
    // ‖·‖₂ ≤ ‖·‖_F, so ε_i bounds the spectral norm's change too; a max moves by at most the
    // largest per-sample change, a power mean too (Minkowski).
    let jx_err = st.input_err.iter().fold(0.0f64, |m, &v| m.max(v));
    let jxw_err = (0..st.len()).fold(0.0f64, |m, i| {
        m.max(st.input_err[i] * st.x_norm[i] * (1.0 + xtol))
    });
    let smax = smax.sqrt();
    q.insert(
        names::INPUT_GRAD_SPECTRAL_MAX.into(),
        Quantity::exact(smax, round_up(jx_err + smax * rel))
            .with_method("max_i ‖J_x(x_i)‖₂ (T7b); tol: |W| backward pass"),
    );
    let wmax = wmax.sqrt();
    q.insert(
        names::INPUT_GRAD_WEIGHTED_MAX.into(),
        Quantity::exact(wmax, round_up(jxw_err + wmax * wrel))
            .with_method("max_i ‖J_x(x_i)‖_F ‖x_i‖ (T7a); tol: |W| backward pass"),
    );
    let mut kk: Vec<u32> = ks.to_vec();
    kk.push(2);
    kk.sort_unstable();
    kk.dedup();
    for &k in &kk {
        q.insert(
            per_k(names::INPUT_GRAD_WEIGHTED_MOMENT_K, k),
            {
                let m = moment_of_squares(&weighted, k);
                Quantity::exact(m, round_up(jxw_err + m * (wrel + gamma(st.len() + 2))))
            }
            .with_method(format!(
                "((1/n) Σ_i (‖J_x(x_i)‖_F ‖x_i‖)^{})^(1/{}) (T7c); tol: |W| backward pass",
                2 * k,
                2 * k
            )),
        );
        let q2k = 2 * k as i32;
        // Scaled by max_j |x_ij| so that |x|^{2k} neither overflows nor underflows (k ≤ 64).
        let min_lq = (0..st.len())
            .map(|i| {
                let row = data.x_row(i);
                let m = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                if m == 0.0 {
                    return 0.0;
                }
                let s: f64 = row.iter().map(|v| (v.abs() / m).powi(q2k)).sum();
                m * s.powf(1.0 / f64::from(q2k))
            })
            .fold(f64::INFINITY, f64::min);
        q.insert(
            per_k(names::INPUT_LQ_NORM_MIN_K, k),
            ex(min_lq, gamma(d + 5)).with_method(format!("min_i ‖x_i‖_{} (T7e)", 2 * k)),
        );
    }
    // Per sample, |tr H_i − t̂_i| ≤ δ_i and ‖H_i − Ĝ_i‖_F ≤ δ_i (PerSampleStats::param_sq_err:
    // the |W| backward pass and the forward bound, not relative to the possibly cancelled
    // values), so |t² − t̂²| ≤ (2t̂ + δ)δ and |‖H‖_F² − ‖Ĝ‖_F²| ≤ (2‖Ĝ‖_F + δ)δ; then the mean's
    // own rounding.
    let tr2 = st.param_sq.iter().map(|t| t * t).sum::<f64>() / n;
    let tr2_err = (0..st.len())
        .map(|i| {
            let dl = st.param_sq_err(i);
            (2.0 * st.param_sq[i] + dl) * dl
        })
        .sum::<f64>()
        / n;
    q.insert(
        names::PER_SAMPLE_TRACE_SQ_MEAN.into(),
        Quantity::exact(
            tr2,
            round_up(tr2_err * (1.0 + gamma(st.len() + 4)) + tr2 * gamma(st.len() + 2)),
        )
        .with_method(
            "(1/n) Σ_i (tr H_i)² = (1/n) Σ_i ‖J_θ(x_i)‖_F⁴ (T5g, T7d); tol: |W| backward pass",
        ),
    );
    // ‖H_i‖_F = ‖J_iJ_iᵀ‖_F from the per-sample C×C Grams (both paths).
    let c = st.outputs;
    let per: Vec<f64> = st
        .jjt
        .chunks_exact(c * c)
        .map(|m| m.iter().map(|v| v * v).sum::<f64>())
        .collect();
    let fro2 = per.iter().sum::<f64>() / n;
    let fro2_err = per
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let dl = st.param_sq_err(i);
            (2.0 * f.sqrt() * (1.0 + gamma(c * c + 2)) + dl) * dl
        })
        .sum::<f64>()
        / n;
    q.insert(
        names::PER_SAMPLE_FRO_SQ_MEAN.into(),
        Quantity::exact(
            fro2,
            round_up(fro2_err * (1.0 + gamma(st.len() + 4)) + fro2 * gamma(c * c + st.len() + 2)),
        )
        .with_method("(1/n) Σ_i ‖H_i‖_F², ‖H_i‖_F = ‖J_iJ_iᵀ‖_F (T5g); tol: |W| backward pass"),
    );
}

/// ‖∇ℒ‖, max_i ‖res_i‖ (THEORY T5 failure mode (i)).
fn residual_quantities(
    q: &mut Evidence,
    op: &CurvatureOperator<'_>,
    st: &PerSampleStats,
) -> Result<()> {
    let c = st.outputs.max(1);
    if let (Some(res), Some(err)) = (&st.residual, &st.residual_err) {
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        // ‖r_i‖ is within ‖E_i‖₂ of ‖r̂_i‖ (triangle inequality; E_i the running bound of the
        // residual, THEORY §3 item 1), plus the rounding of the norm of C nonnegative squares.
        let mut max_norm = 0.0f64;
        let mut max_norm_tol = 0.0f64;
        // (1/n)Σ‖J_i‖_F‖E_i‖ and (1/n)Σ‖J_i‖_F‖r̂_i‖ for ‖∇ℒ‖ (below).
        let (mut je, mut jr) = (0.0f64, 0.0f64);
        for (i, (r, e)) in res.chunks(c).zip(err.chunks(c)).enumerate() {
            let (rn, en) = (norm(r), norm(e));
            max_norm = max_norm.max(rn);
            max_norm_tol = max_norm_tol.max(en + gamma(c + 2) * rn);
            // ‖J_i‖_F ≤ ‖Ĵ_i‖_F + e_i (|W| backward pass and forward bound).
            let j = st.param_sq[i].sqrt() * (1.0 + st.rel_tol) + st.param_err[i];
            je += j * en;
            jr += j * rn;
        }
        let n = st.len().max(1) as f64;
        let slack = 1.0 + gamma(res.len() + 4);
        q.residual.max_norm = Some(
            Quantity::exact(max_norm, round_up_or_zero(max_norm_tol * slack)).with_method(
                "max_i ‖f(x_i) − y_i‖₂; tol: running forward bound of the residual (THEORY §3 item 1)",
            ),
        );
        // ‖∇ℒ‖ = ‖(1/n)Σ J_iᵀr_i‖: the residuals' error enters as ‖(1/n)Σ J_iᵀ(r̂_i − r_i)‖ ≤
        // (1/n)Σ‖J_i‖_F‖E_i‖ (rigorous given ‖J_i‖_F), and the VJP's own rounding as the
        // a-priori γ_k·(1/n)Σ‖J_i‖_F‖r̂_i‖ (‖|J_i|ᵀ|r̂_i|‖ ≤ ‖J_i‖_F‖r̂_i‖). Neither scales with
        // ‖∇ℒ‖, which the sum over samples can cancel.
        let g = op.loss_gradient()?.norm();
        let k = op.rounding_depth() + op.len();
        let tol = round_up_or_zero((je + gamma(k) * jr) / n * slack);
        q.residual.loss_gradient_norm = Some(
            Quantity::exact(g, tol).with_method(
                "‖∇ℒ‖ = ‖(1/n) Σ_i J_iᵀ res_i‖ (one VJP with the residuals); tol: (1/n)Σ‖J_i‖_F‖E_i‖ \
                 (running forward bound E_i of res_i) + γ_k(1/n)Σ‖J_i‖_F‖res_i‖ (a-priori VJP rounding)",
            ),
        );
    }
    Ok(())
}

/// λ_min(H) by Lanczos on R-op products and |tr H − tr G| by Hutchinson (smooth σ, residual ≠ 0).
/// With a nonzero residual, what H − G contributes (THEORY T5 failure mode (i)): tr H − tr G
/// (exactly 0 for a piecewise-linear network), and for a smooth one λ_min(H) and a Hutchinson
/// |tr H − tr G| when n·P is within [`HESSIAN_BUDGET`] (else a note says they were skipped).
pub(crate) fn hessian_stage<O: CurvatureOp>(
    q: &mut Evidence,
    notes: &mut Vec<String>,
    op: &O,
    max_abs: f64,
    np: f64,
    seed: u64,
) -> Result<()> {
    if max_abs <= 0.0 {
        return Ok(());
    }
    if op.is_piecewise_linear() {
        q.absorb(hessian_trace(op, 1, seed)?);
    } else if np <= HESSIAN_BUDGET {
        smooth_hessian(q, op, seed)?;
    } else {
        notes.push(format!(
            "λ_min(H) and |tr H − tr G| were not estimated: n·P = {np:.2e} exceeds the budget \
             {HESSIAN_BUDGET:.0e} of the Hessian products."
        ));
    }
    Ok(())
}

fn smooth_hessian<O: CurvatureOp>(q: &mut Evidence, op: &O, seed: u64) -> Result<()> {
    let lopts = LanczosOptions {
        target: Target::Smallest,
        tol: 1e-6,
        max_iter: 100,
        seed,
        rounding_depth: 0,
        ..LanczosOptions::default()
    };
    let est = hessian_extreme(op, Target::Smallest, &lopts)?;
    let mut m = QuantityMap::new();
    est.insert_into(&mut m, names::HESSIAN_LAMBDA_MIN, "upper");
    q.absorb(m);
    q.absorb(hessian_trace(op, 16, seed)?);
    Ok(())
}

/// The Gram-path quantities: λ_max(G) bracket, spectrum facts, T4 (η_GD*), T5 (the certified
/// λ_max(𝒟̃) bracket at B, η* and the margin) and the T5 diagnostics.
fn gram_quantities(
    q: &mut Evidence,
    notes: &mut Vec<String>,
    spec: &GramSpectrum,
    eta: f64,
    plan: &Plan,
    batch: &BatchModel,
) -> Result<()> {
    let mut gq = spec.quantities(3);
    gq.remove(names::GAUSS_NEWTON_TRACE); // the per-sample engine's value is kept
    q.absorb(gq);
    q.operator.tau =
        Some(Quantity::exact(spec.tau, 0.0).with_method("rank threshold τ relative to λ_max(K)"));
    // THEORY T5: decide by the matrix-free sufficient condition (i) first; run the exact route
    // (f) only where (i) is inconclusive.
    if let (Some(a), Some(l)) = (&q.operator.lambda_max, &q.per_sample.lambda_max) {
        let ev = flatcert_bounds::t5::SufficientEvidence {
            sharpness: to_value(a),
            per_sample_max: to_value(l),
        };
        let eta_v = flatcert_bounds::Value::exact(eta, 0.0);
        let c = flatcert_bounds::t5::sufficient_check(eta_v, batch.p_value(), &ev);
        if c.status == flatcert_bounds::Status::Certified {
            notes.push(format!(
                "T5 is certified by the matrix-free sufficient condition T5(i) (η·[(1−p)λ_max(G) + \
                 p·max_i λ_i] = {:.6} ≤ 2), so the exact η* route (f) was not run; `flatcert \
                 stability` computes the exact η*(B) bracket.",
                c.lhs.map_or(f64::NAN, |v| v.upper())
            ));
            return Ok(());
        }
    }
    let s = plan.sampling;
    let bopts = BracketOptions {
        max_steps: plan.t5_steps,
        rel_tol: 1e-3,
        dense_limit: 1000,
        ..BracketOptions::default()
    };
    let (model, crit) = RankBudget::new(spec, plan.t5_rank)?.critical_lr(
        batch.batch,
        s,
        &bopts,
        Goal::DecideAt(eta),
    )?;
    q.absorb(gd_critical_lr(&model, Some(eta)));
    q.absorb(crit.quantities(Some(eta)));
    let kept = model.rank();
    let ctx = format!(
        "B = {}, {}, p = {:.6}, {kept} of {} eigenpairs of K kept",
        batch.batch,
        s.name(),
        crit.p,
        spec.rank
    );
    q.t5.rank = Some(Quantity::exact(kept as f64, 0.0).with_note(format!(
        "eigenpairs of K kept for T5 (of {} above τ = {:e}); the rest enter the proven T5(f) \
             truncation allowance",
        spec.rank, spec.tau
    )));
    q.t5.tau = Some(
        Quantity::exact(model.tau, 0.0).with_note("relative threshold of the kept eigenvalues"),
    );
    let kept_mass: f64 = model.lambda.iter().sum();
    let disc = spec.values.iter().map(|v| v.max(0.0)).sum::<f64>() - kept_mass;
    q.t5.discarded_mass = Some(
        Quantity::exact(disc.max(0.0), spec.rounding_phi())
            .with_note("sum of the eigenvalues of K not kept for T5"),
    );
    if let Some(&lmin) = model.lambda.last() {
        q.t5.lambda_min_kept = Some(
            Quantity::exact(lmin, spec.rounding_phi())
                .with_note("smallest eigenvalue of K kept for T5, λ_min(K_r) (T5e)"),
        );
    }
    match &crit.bracket {
        Some(b) => {
            q.t5.dtilde_upper = Some(
                Quantity::upper(b.upper, round_up(b.truncation_allowance + b.phi_allowance))
                    .with_method(
                        "dtilde cone/dense bracket + truncation and rounding-of-K allowances",
                    )
                    .with_note(format!(
                        "certified upper bound of λ_max(𝒟̃) (T5f, h); {ctx}; {} cone steps",
                        b.steps
                    )),
            );
            q.t5.dtilde_lower = Some(
                Quantity::lower(b.lower, b.phi_allowance)
                    .with_method(
                        "dtilde Rayleigh quotient minus rounding and rounding-of-K allowance",
                    )
                    .with_note(format!("certified lower bound of λ_max(𝒟̃) (T5h); {ctx}")),
            );
            // Issue 15 item 5: the assumed allowance, by itself, for summary.assumed.
            q.t5.rounding_allowance = Some(Quantity::estimate(b.phi_allowance, 0.0).with_method(
                "rounding-of-K allowance (1−p)φ + 4pnφ of T5(f), φ the a-priori estimate of \
                     ‖K − ÛΛ̂Ûᵀ‖₂ (assumed, THEORY §3 item 7)",
            ));
        }
        None => {
            // r = 0: G = 0, η* = +∞.
            q.t5.dtilde_upper = Some(
                Quantity::upper(0.0, 0.0).with_note(format!("G = 0 (r = 0): λ_max(𝒟̃) = 0; {ctx}")),
            );
            q.t5.dtilde_lower =
                Some(Quantity::lower(0.0, 0.0).with_note(format!("G = 0 (r = 0); {ctx}")));
        }
    }
    q.t5.bracket_batch = Some(batch.batch as f64);
    q.t5.bracket_sampling = Some(plan.sampling);
    if model.rank() > 0 {
        let r = model.rank();
        if r * (r + 1) / 2 <= RHO_DENSE_LIMIT {
            q.t5.rho = Some(mean_square_rho(&model, eta, crit.p, &bopts)?);
        }
        q.absorb(wme_quantities(&model, eta, crit.p)?);
    }
    Ok(())
}

/// T6(d): for every sample i, the exact E_ξ[(1 − η v_iᵀH_ξv_i)^k] at the top eigenvector v_i of
/// H_i, from the blocks of K (kmoment) and the bounds crate's DP/closed forms (with tol).
fn directional_tests(
    spec: &GramSpectrum,
    eta: f64,
    batch: &BatchModel,
    k: u32,
) -> Result<Vec<DirectionalResult>> {
    let top = per_sample_top(spec)?;
    (0..spec.n)
        .map(|i| {
            let x = directional_values(spec, &top, i);
            let value = directional_test(&x, eta, batch.batch, k, batch.sampling)
                .map_err(|e| Error::Internal(format!("T6(d) directional test: {e}")))?;
            Ok(DirectionalResult { sample: i, value })
        })
        .collect()
}
