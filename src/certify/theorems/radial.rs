//! T1, T2, T3 and T7 for a layered network whose first layer is bilinear but not dense (THEORY
//! §7(a), (b)): T1b and the radial forms, from the typed [`Evidence`] (`radial`, `first_layer`,
//! `operator`, `identity`) and, for T2, the per-sample norms in the [`Context`].

use flatcert_bounds::radial::{
    RadialT2Input, RadialT3Input, RadialT7Input, check_t1b, check_t2, check_t3, check_t7,
};
use flatcert_bounds::{Check, Verdict, t3};

use super::{Context, Network, R, interpolation_check, missing, num, req, to_value, upper, val};
use crate::certify::evidence::{Evidence, names};

/// T1b only (§7(a)): the residual against its expected size (the measured tol).
pub(super) fn build_t1(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let r = req(
        &ev.identity.scalar_residual,
        names::IDENTITY_SCALAR_MAX_ABS_RESIDUAL,
    )?;
    let points = num(&ev.identity.points_checked).unwrap_or(0.0);
    Ok(check_t1b(r.value, r.tol, points as usize, ctx.batch.n)?)
}

/// Radial T2 on the per-sample norms of the context (certify only).
pub(super) fn build_t2(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let Network::Layered { samples, rel_tol } = &ctx.network else {
        return missing("not a layered network");
    };
    if samples.is_empty() {
        return missing(
            "missing per-sample norms ‖J_x(x_i)x_i‖, ‖J_W(x_i)‖_F (a measurements document holds \
             only their maxima; run flatcert certify)",
        );
    }
    let w = upper(&ev.radial.w_frobenius, names::FIRST_LAYER_FROBENIUS_NORM)?;
    Ok(check_t2(&RadialT2Input {
        w_frobenius: w,
        samples: samples.clone(),
        rel_tol: *rel_tol,
    })?)
}

/// Radial T3, with the flatness form linked to mean-square stability as in the dense T3.
pub(super) fn build_t3(ctx: &Context, ev: &Evidence, stability: Option<&Check>) -> R<Verdict> {
    let input = RadialT3Input {
        radial_mean_sq: val(&ev.radial.mean_sq, names::INPUT_GRAD_RADIAL_MEAN_SQ)?,
        w_frobenius: upper(&ev.radial.w_frobenius, names::FIRST_LAYER_FROBENIUS_NORM)?,
        tr_gw: val(
            &ev.first_layer.gauss_newton_trace,
            names::FIRST_LAYER_GAUSS_NEWTON_TRACE,
        )?,
        tr_g: val(&ev.operator.trace, names::GAUSS_NEWTON_TRACE)?,
        flatness: Some(t3::T3Flatness {
            eta: ctx.eta,
            batch: ctx.batch,
            outputs: ctx.outputs,
            stability: stability.map(|c| Check {
                statement: format!("mean-square stability at (η, B): {}", c.statement),
                ..c.clone()
            }),
            interpolation: Some(interpolation_check(ev)),
        }),
    };
    Ok(check_t3(&input)?)
}

/// Radial T7 at every order k of the run that has both moments measured.
pub(super) fn build_t7(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let w = upper(&ev.radial.w_frobenius, names::FIRST_LAYER_FROBENIUS_NORM)?;
    let inputs: Vec<RadialT7Input> = ctx
        .ks
        .iter()
        .filter_map(|k| {
            Some(RadialT7Input {
                k: *k,
                radial_moment: to_value(ev.radial.moment.get(k)?),
                first_layer_moment: to_value(ev.radial.first_layer_moment.get(k)?),
                w_frobenius: w,
            })
        })
        .collect();
    if inputs.is_empty() {
        return missing(format!(
            "missing the radial moments {}k and {}k for the orders of the run",
            names::INPUT_GRAD_RADIAL_MOMENT_K,
            names::FIRST_LAYER_GRAD_MOMENT_K
        ));
    }
    Ok(check_t7(&inputs)?)
}

/// The assumed hypothesis of a layered network's Jacobian quantities (THEORY §3 item 1): their
/// tolerances are a-priori estimates of relative size 2γ_K (`smooth_backward_rounding`).
pub(super) fn backward_check(ev: &Evidence) -> Option<Check> {
    let size = ev.residual.smooth_backward_rounding.as_ref()?;
    Some(Check::assumed(
        "backward_rounding",
        format!(
            "assumed: for a layered network the rounding of the Jacobian quantities (tr G, the \
             per-sample and input-gradient norms, T1b) is within the a-priori relative estimate \
             2γ_K = {:.3e}, K = Σ_l(fan-in_l + 1) + C; no absolute-value backward bound is \
             propagated through convolutions and pooling (THEORY §3 item 1, §7)",
            size.value
        ),
        Some(size.value),
    ))
}
