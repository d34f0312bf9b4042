//! `certify` for a layered (convolutional) network (issue 14, THEORY §7): the measurements of
//! [`crate::measure::layered`] → typed evidence → the same theorem layer as for dense MLPs, with
//! T1b and the radial T2, T3, T7 of §7(b) ([`Network::Layered`]).

use super::certificate::{CERTIFICATE_SCHEMA, Certificate, CertificateInputs, Measurements};
use super::collect::robust::{robustness_quantities, robustness_with, spectral_norm_small};
use super::collect::{CurvaturePath, curvature_stage, hessian_stage};
use super::evidence::Evidence;
use super::pipeline::{Details, gauss_newton_line};
use super::plan::{Hyper, Plan};
use super::summary::summarize;
use super::theorems::{Context, Extras, Network, evaluate, lambda_rel};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::document::CurvatureSource;
use crate::measure::layered::{
    LayeredSource, first_order, layered_jacobian_rel_tol, measurement_inputs, network_notes,
    residual_quantities,
};
use crate::net::per_sample_curvature;
use crate::net::{NetIbp, Tensor};
use crate::problem::NetProblem;
use flatcert_bounds::radial::RadialSample;
use nalgebra::DMatrix;

/// Certify a layered problem at the plan's (η, B): measure, evaluate T1 … T10 and assemble the
/// certificate (schema `flatcert.certificate/v1`, with `inputs.architecture`).
pub fn run_detailed(
    p: &NetProblem,
    test: Option<&Dataset>,
    plan: &Plan,
) -> Result<(Certificate, Details)> {
    let n = p.n();
    let c = p.outputs();
    if !p.data.has_targets() {
        return Err(Error::invalid_argument(
            "y",
            "certify needs the training targets y (the residuals decide what the theorems may assume)",
        ));
    }
    plan.validate(n, c)?;
    let eta = plan.eta(c)?;
    let batch = plan.batch_model(n)?;
    let hyper = Hyper::of(plan, n, p.net.num_params(), c)?;
    let ks: Vec<u32> = plan.ks.clone();
    let mut ks_all = ks.clone();
    ks_all.extend([1, 2]);
    ks_all.sort_unstable();
    ks_all.dedup();
    let (mut map, st) = first_order(p, &ks_all, 64)?;
    map.extend(residual_quantities(p, 64)?);
    let src = LayeredSource::of(p)?;
    // Per-sample λ_i, (tr H_i)², ‖H_i‖_F² from the materialized J_i (THEORY §7(c), (e)).
    let curv = per_sample_curvature(&p.net, &src.x, 64)?;
    map.extend(curv.quantities());
    let mut evidence = Evidence::from_map(&map);
    let mut notes = plan.notes.clone();
    notes.extend(network_notes(&p.net));
    let op = src.operator(plan.memory_limit_bytes)?;
    let max_abs = evidence.residual.max_abs.as_ref().map_or(0.0, |r| r.value);
    hessian_stage(
        &mut evidence,
        &mut notes,
        &op,
        max_abs,
        n as f64 * p.net.num_params() as f64,
        plan.seed,
    )?;
    let (path, directional) = curvature_stage(
        &mut evidence,
        &mut notes,
        &op,
        |gopts| src.gram(gopts),
        src.gram_cost().0,
        n * c,
        plan,
        eta,
        &batch,
    )?;
    drop(op);
    // T8–T10 (with ε): interval bound propagation through conv and pooling (THEORY §7(d)).
    let (robust, robust_reason) = match plan.epsilon {
        None => (
            None,
            Some("needs --epsilon (T8–T10 are statements at a radius ε)".to_string()),
        ),
        Some(eps) => {
            let ibp = NetIbp::new(&p.net)?;
            let net = &p.net;
            let point = |x: &[f64]| {
                Tensor::new(1, net.input_shape(), x.to_vec())
                    .ok_or_else(|| Error::Internal("a point of the wrong length".into()))
            };
            let forward = |x: &[f64]| -> Result<Vec<f64>> {
                let t = point(x)?;
                Ok(net
                    .forward(&t)
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .data)
            };
            let jacobian = |x: &[f64]| -> Result<f64> {
                let cache = net
                    .forward_cache(&point(x)?)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                let rows = net.backward_outputs(&cache).swap_remove(0);
                let j = DMatrix::from_row_slice(c, rows.row_len(), &rows.data);
                Ok(spectral_norm_small(&j))
            };
            let r = robustness_with(&ibp, &forward, &jacobian, &p.data, test, plan, eps)?;
            robustness_quantities(&mut evidence, &r, eps);
            (Some(r), None)
        }
    };
    let c_usize = c;
    let samples: Vec<RadialSample> = (0..n)
        .map(|i| RadialSample {
            radial: (0..c_usize)
                .map(|ci| st.t1b_input_side[i * c_usize + ci].powi(2))
                .sum::<f64>()
                .sqrt(),
            jw_fro: st.first_layer_sq[i].sqrt(),
        })
        .collect();
    let inputs = measurement_inputs(p, &ks);
    let activation = p
        .net
        .activations()
        .first()
        .copied()
        .unwrap_or(crate::model::Activation::Identity);
    let ctx = Context {
        network: Network::Layered {
            samples,
            rel_tol: layered_jacobian_rel_tol(&p.net),
        },
        eta,
        batch,
        outputs: c,
        ks: plan.ks.clone(),
        activation,
        epsilon: plan.epsilon,
        epsilon_y: plan.epsilon_y,
        tau: plan.tau,
        same_run: true,
        t5_reason: match &path {
            CurvaturePath::Gram => None,
            CurvaturePath::Operator(r) => Some(r.clone()),
        },
        robust_reason: robust_reason.clone(),
        curvature: plan.curvature,
        kinks_strict: plan.kinks == super::plan::KinksMode::Strict,
    };
    let extras = Extras {
        stats: None,
        lambdas: &curv.lambda,
        lambda_rel: lambda_rel(&curv.lambda, |i| curv.err(i)),
        directional: &directional,
        robust: robust.as_ref(),
    };
    let verdicts = evaluate(&ctx, &evidence, Some(&extras)).map_err(|(id, e)| {
        Error::Internal(format!(
            "{id}: the bounds crate rejected the measured numbers: {e}"
        ))
    })?;
    let summary = summarize(
        &verdicts,
        gauss_newton_line(&evidence),
        hyper.sampling_model.clone(),
    );
    let cert = Certificate {
        schema: CERTIFICATE_SCHEMA.into(),
        inputs: CertificateInputs {
            files: plan.provenance.clone(),
            activation: inputs.activation,
            widths: inputs.widths,
            n,
            parameters: p.net.num_params(),
            test_n: test.map(Dataset::len),
            architecture: inputs.architecture,
        },
        hyper,
        measurements: Measurements {
            notes,
            quantities: evidence.to_map(),
        },
        verdicts,
        summary,
        per_point: robust
            .as_ref()
            .filter(|_| plan.per_point)
            .map(|r| super::certificate::PerPoint::of(&r.certs)),
    };
    let radii: Option<Vec<f64>> = robust.as_ref().and_then(|r| {
        r.certs
            .points
            .iter()
            .map(|q| q.certified_radius.as_ref().map(|c| c.value))
            .collect()
    });
    let details = Details {
        lambdas: curv.lambda.clone(),
        radius_cap: radii
            .as_ref()
            .and(plan.epsilon)
            .map(|e| super::collect::RADIUS_SEARCH_FACTOR * e),
        radii,
    };
    Ok((cert, details))
}
