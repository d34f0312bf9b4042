//! η*(B) for every batch size at any scale (THEORY T5(i), T5(g), §3 item 8): what `flatcert
//! stability` computes when nC exceeds the Gram limit.
//!
//! One per-sample pass gives L = max_i λ_max(J_iJ_iᵀ), tr G and (1/n)Σ‖H_i‖_F²; one randomized
//! Lanczos run gives λ_max(G) ∈ [rigorous lower, upper with confidence 1 − δ]. Per batch size the
//! bounds crate turns them into η*(B) ∈ [η_suff(B), min(2/lower(λ_max), the Σ = I bound)] and,
//! at a given η, into the T4 and T5 verdicts — by the same rules as `certify`
//! ([`super::theorems::stability_verdicts`]). Nothing of size nC × nC or r × r is formed.

use flatcert_bounds::{BatchModel, Sampling, Value, Verdict};

use super::collect::extra_first_order;
use super::evidence::Evidence;
use super::theorems::{Context, stability_verdicts};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::measure::first_order::{first_layer_norms, first_order_quantities};
use crate::measure::hvp::{CurvatureOperator, OperatorOptions};
use crate::measure::lanczos::{UpperBoundOptions, gauss_newton_lambda_max_randomized};
use crate::measure::per_sample::{PerSampleOptions, per_sample_stats};
use crate::model::Mlp;

/// The matrix-free evidence of every batch size.
#[derive(Debug, Clone)]
pub struct ScaleEvidence {
    /// `per_sample_lambda_max`, `gauss_newton_trace`, `per_sample_fro_sq_mean`,
    /// `gauss_newton_lambda_max` (estimate), `…_lower`, `…_upper` (with confidence), and the other
    /// first-order quantities of the per-sample pass.
    pub quantities: QuantityMap,
    /// Operator products of the randomized λ_max(G) run.
    pub products: usize,
}

/// Measure the evidence: one per-sample pass and one randomized Lanczos run, which stops once its
/// upper bound is within `opts.rel_gap` of the top Ritz value or at `opts.max_products`.
pub fn scale_evidence(
    mlp: &Mlp,
    data: &Dataset,
    opts: &UpperBoundOptions,
    memory_limit_bytes: usize,
) -> Result<ScaleEvidence> {
    opts.validate()?;
    let ks = [1, 2];
    let popts = PerSampleOptions {
        ks: ks.to_vec(),
        ..PerSampleOptions::default()
    };
    let stats = per_sample_stats(mlp, data, &popts, &|_| {})?;
    let norms = first_layer_norms(mlp)?;
    let mut quantities = first_order_quantities(mlp, &stats, &norms, &ks);
    extra_first_order(&mut quantities, mlp, data, &stats, &norms, &[2]);
    let op = CurvatureOperator::new(
        mlp,
        data,
        OperatorOptions::within_memory(memory_limit_bytes),
    )?;
    let spec = gauss_newton_lambda_max_randomized(&op, opts, |_, _| false)?;
    spec.insert_into(&mut quantities);
    Ok(ScaleEvidence {
        quantities,
        products: spec.spectral.lanczos.products,
    })
}

/// [`scale_evidence`] for a layered (convolutional) network (THEORY §7(c)): the per-sample
/// pass of [`crate::measure::layered::first_order`], the per-sample λ_i, (tr H_i)² and
/// ‖H_i‖_F² from the materialized J_i ([`crate::net::per_sample_curvature`], memory
/// O(block·C·P)), and the randomized Lanczos run on the layered operator.
pub fn layered_scale_evidence(
    p: &crate::problem::NetProblem,
    opts: &UpperBoundOptions,
    memory_limit_bytes: usize,
) -> Result<ScaleEvidence> {
    use crate::measure::document::CurvatureSource;
    opts.validate()?;
    let (mut quantities, _) = crate::measure::layered::first_order(p, &[1, 2], 64)?;
    let src = crate::measure::layered::LayeredSource::of(p)?;
    quantities.extend(crate::net::per_sample_curvature(&p.net, &src.x, 64)?.quantities());
    let op = src.operator(memory_limit_bytes)?;
    let spec = gauss_newton_lambda_max_randomized(&op, opts, |_, _| false)?;
    spec.insert_into(&mut quantities);
    Ok(ScaleEvidence {
        quantities,
        products: spec.spectral.lanczos.products,
    })
}

/// One batch size at scale.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    /// Batch size B.
    pub batch: usize,
    /// Noise parameter p.
    pub p: f64,
    /// η*(B): lower side η_suff(B) (with the confidence of the randomized bound), upper side
    /// min(2/lower(λ_max(G)), the Σ = I bound), from T5's `eta_star` conclusion.
    pub eta_star: Value,
    /// η_GD* = 2/λ_max(G) (T4's `eta_gd` conclusion).
    pub eta_gd: Option<Value>,
    /// T5 at η (absent without η).
    pub t5: Option<Verdict>,
    /// T4 at η (absent without η).
    pub t4: Option<Verdict>,
}

/// η*(B) and, with `eta`, the T4/T5 verdicts for one batch size (THEORY T5(i), (g)).
pub fn scale_row(
    ev: &ScaleEvidence,
    outputs: usize,
    activation: crate::model::Activation,
    n: usize,
    batch: usize,
    sampling: Sampling,
    eta: Option<f64>,
) -> Result<ScaleRow> {
    let model = BatchModel::new(n, batch, sampling)
        .map_err(|e| Error::invalid_argument("--batch", e.to_string()))?;
    let ctx = Context {
        network: super::theorems::Network::Dense,
        // η*(B) does not depend on η; without one, any η gives the same bracket.
        eta: eta.unwrap_or(1.0),
        batch: model,
        outputs,
        ks: vec![2],
        activation,
        epsilon: None,
        epsilon_y: 0.0,
        tau: None,
        same_run: true,
        t5_reason: Some("at scale, flatcert stability uses T5(i) and T5(g)".into()),
        robust_reason: Some("not needed".into()),
        // T4/T5 do not read it (it decides only the `Min` verdict, not computed here).
        curvature: flatcert_bounds::minimum::Curvature::Exact,
        // The near-kink hypothesis, if any, is listed as assumed (what `certify` does by default).
        kinks_strict: false,
    };
    let (t4, t5) = stability_verdicts(&ctx, &Evidence::from_map(&ev.quantities))
        .map_err(|e| Error::Internal(format!("T4/T5 at scale: {e}")))?;
    let t5 = t5.ok_or_else(|| {
        Error::Internal("T5 at scale: the per-sample λ_i or λ_max(G) bound is missing".into())
    })?;
    let eta_star = t5
        .conclusion("eta_star")
        .map(|c| c.value)
        .ok_or_else(|| Error::Internal("T5 without an η* conclusion".into()))?;
    let eta_gd = t4
        .as_ref()
        .and_then(|v| v.conclusion("eta_gd"))
        .map(|c| c.value);
    Ok(ScaleRow {
        batch,
        p: model.p(),
        eta_star,
        eta_gd,
        t5: eta.map(|_| t5),
        t4: if eta.is_some() { t4 } else { None },
    })
}
