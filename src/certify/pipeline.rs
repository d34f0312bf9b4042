//! `certify::run`: plan → measurements → verdicts → certificate (issue 4 pipeline).

use flatcert_bounds::BatchModel;

use super::certificate::{CERTIFICATE_SCHEMA, Certificate, CertificateInputs, Measurements};
use super::collect::{CurvaturePath, RADIUS_SEARCH_FACTOR, collect};
use super::evidence::Evidence;
use super::plan::{Hyper, Plan};
use super::summary::summarize;
use super::theorems::{Context, Extras, evaluate};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::Mlp;

/// Certify `mlp` on its training data `data` (targets required) at the plan's (η, B): measure,
/// evaluate T1 … T10 (T8–T10 only with ε; `test` gives T8's held-out coverage) and assemble the
/// certificate (schema `flatcert.certificate/v1`).
///
/// Errors: bad plan or data ([`Error::InvalidArgument`]/[`Error::BadInput`], exit code 2), a
/// numerical failure or a bounds-crate rejection of measured numbers (exit code 3).
///
/// ```
/// use flatcert::certify::{Plan, run};
/// use flatcert::model::{Activation, Dense, Mlp};
/// use flatcert::Dataset;
/// use nalgebra::{dmatrix, dvector};
/// // THEORY §5: f(x) = |x|, x = (−1, 1, 2), y = (1, 1, 2): T5 is certified at B = 1, η = 0.22.
/// let mlp = Mlp::new(
///     vec![
///         Dense { weight: dmatrix![1.0; -1.0], bias: dvector![0.0, 0.0] },
///         Dense { weight: dmatrix![1.0, 1.0], bias: dvector![0.0] },
///     ],
///     Activation::Relu,
/// )?;
/// let data = Dataset::new(vec![-1.0, 1.0, 2.0], 3, 1, Some((vec![1.0, 1.0, 2.0], 1)), "x", "y")?;
/// let mut plan = Plan::new(0.22, 1);
/// plan.ks = vec![2];
/// let cert = run(&mlp, &data, None, &plan)?;
/// let t5 = cert.verdicts.verdict("T5").unwrap();
/// let margin = t5.conclusion("relative_margin").unwrap().value.lower();
/// assert!((margin - 0.0912822842).abs() < 1e-6);
/// # Ok::<(), flatcert::Error>(())
/// ```
pub fn run(mlp: &Mlp, data: &Dataset, test: Option<&Dataset>, plan: &Plan) -> Result<Certificate> {
    run_detailed(mlp, data, test, plan).map(|(cert, _)| cert)
}

/// Per-sample numbers the certificate does not keep (only their maxima and quantiles are in it),
/// for the report's figures (`flatcert certify --report DIR`, `docs/report.md`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Details {
    /// λ_i = λ_max(J_iᵀJ_i) = ‖J_θ(x_i)‖₂² of every training sample, in sample order: the numbers
    /// T6(e) compares with β_k (its `per_sample` check is max_i λ_i ≤ β_k).
    pub lambdas: Vec<f64>,
    /// T9 (with ε and a radius search): the certified radius of every training point (a rigorous
    /// lower bound of its largest certified radius), in sample order.
    pub radii: Option<Vec<f64>>,
    /// The upper end of the radius search, `RADIUS_SEARCH_FACTOR`·ε (a radius equal to it means
    /// "at least this").
    pub radius_cap: Option<f64>,
}

/// [`run`], also returning the per-sample [`Details`] for the report's figures.
pub fn run_detailed(
    mlp: &Mlp,
    data: &Dataset,
    test: Option<&Dataset>,
    plan: &Plan,
) -> Result<(Certificate, Details)> {
    let n = data.len();
    let c = mlp.output_dim();
    if !data.has_targets() {
        return Err(Error::invalid_argument(
            "--y",
            "certify needs the training targets y (the residuals decide what the theorems may assume)",
        ));
    }
    plan.validate(n, c)?;
    if let Some(t) = test {
        if t.dim() != mlp.input_dim() {
            return Err(Error::bad_input(
                &t.x_source,
                "shape",
                format!(
                    "held-out samples have {} features, the model expects d = {}",
                    t.dim(),
                    mlp.input_dim()
                ),
            ));
        }
        if let Some(tc) = t.outputs()
            && tc != c
        {
            return Err(Error::bad_input(
                &t.y_source,
                "shape",
                format!("held-out targets have {tc} columns, the model has C = {c} outputs"),
            ));
        }
    }
    let eta = plan.eta(c)?;
    let batch: BatchModel = plan.batch_model(n)?;
    let hyper = Hyper::of(plan, n, mlp.num_params(), c)?;
    let col = collect(mlp, data, test, plan, eta, &batch)?;
    let ctx = Context {
        network: super::theorems::Network::Dense,
        eta,
        batch,
        outputs: c,
        ks: plan.ks.clone(),
        activation: mlp.activation(),
        epsilon: plan.epsilon,
        epsilon_y: plan.epsilon_y,
        tau: plan.tau,
        same_run: true,
        t5_reason: match &col.path {
            CurvaturePath::Gram => None,
            CurvaturePath::Operator(r) => Some(r.clone()),
        },
        robust_reason: col.robust_reason.clone(),
        curvature: plan.curvature,
        kinks_strict: plan.kinks == super::plan::KinksMode::Strict,
    };
    let extras = Extras {
        stats: Some(&col.stats),
        lambdas: &col.stats.lambda,
        lambda_rel: super::theorems::lambda_rel(&col.stats.lambda, |i| col.stats.param_sq_err(i)),
        directional: &col.directional,
        robust: col.robust.as_ref(),
    };
    let verdicts = evaluate(&ctx, &col.evidence, Some(&extras)).map_err(|(id, e)| {
        Error::Internal(format!(
            "{id}: the bounds crate rejected the measured numbers: {e}"
        ))
    })?;
    let mut notes = plan.notes.clone();
    notes.extend(col.notes);
    let gauss_newton = gauss_newton_line(&col.evidence);
    let summary = summarize(&verdicts, gauss_newton, hyper.sampling_model.clone());
    let radii: Option<Vec<f64>> = col.robust.as_ref().and_then(|r| {
        r.certs
            .points
            .iter()
            .map(|p| p.certified_radius.as_ref().map(|q| q.value))
            .collect()
    });
    let details = Details {
        lambdas: col.stats.lambda.clone(),
        radius_cap: radii
            .as_ref()
            .and(plan.epsilon)
            .map(|e| RADIUS_SEARCH_FACTOR * e),
        radii,
    };
    let cert = Certificate {
        schema: CERTIFICATE_SCHEMA.into(),
        inputs: CertificateInputs {
            files: plan.provenance.clone(),
            activation: mlp.activation().name(),
            widths: mlp.widths(),
            n,
            parameters: mlp.num_params(),
            test_n: test.map(Dataset::len),
            architecture: None,
        },
        hyper,
        measurements: Measurements {
            notes,
            quantities: col.evidence.to_map(),
        },
        verdicts,
        summary,
        per_point: col
            .robust
            .as_ref()
            .filter(|_| plan.per_point)
            .map(|r| super::certificate::PerPoint::of(&r.certs)),
    };
    Ok((cert, details))
}

/// The summary's Gauss–Newton line unless H = G is proven (bounds crate rule,
/// [`super::theorems::residual_evidence`]): a computed 0 residual with a positive rounding bound
/// keeps it.
pub fn gauss_newton_line(q: &Evidence) -> Option<String> {
    let ev = super::theorems::residual_evidence(q);
    if ev.hessian_is_gauss_newton() {
        return None;
    }
    let res = &q.residual;
    match &res.max_abs {
        Some(r) => Some(format!(
            "Gauss–Newton model: G replaced H in T4–T7 because the residual is not proven 0 \
             (max|res_ic| = {:.3e}, rigorously ≤ {:.3e}{}{})",
            r.value,
            ev.upper(),
            res.loss_gradient_norm
                .as_ref()
                .map_or(String::new(), |g| format!(", ‖∇ℒ‖ = {:.3e}", g.value)),
            res.train_loss.as_ref().map_or(String::new(), |l| format!(
                ", √(2ℒ) = {:.3e}",
                (2.0 * l.value.max(0.0)).sqrt()
            )),
        )),
        None => Some(
            "Gauss–Newton model: G replaced H in T4–T7; the residual is unknown (no targets)"
                .into(),
        ),
    }
}
