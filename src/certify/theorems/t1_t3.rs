//! T1 — T3: first-layer identities.

use flatcert_bounds::{Check, Verdict, t1, t2, t3};

use super::{
    Context, Extras, R, interpolation_check, missing, num, opt, rekind_lhs, req, to_value, upper,
    val,
};
use crate::certify::evidence::{Evidence, names};
use crate::quantity::{Kind, Quantity, UNIT_ROUNDOFF};

/// T1 from `identity_max_abs_residual` (tol = the expected size 10u‖W‖‖δ‖‖x‖),
/// `identity_scalar_max_abs_residual` and `identity_points_checked`.
pub(super) fn build_t1(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let r = req(
        &ev.identity.matrix_residual,
        names::IDENTITY_MAX_ABS_RESIDUAL,
    )?;
    let independent = r.method.as_deref().is_some_and(|m| m.contains("forward"));
    let points = num(&ev.identity.points_checked).unwrap_or(0.0);
    let input = t1::T1Input {
        max_residual_matrix: r.value,
        max_residual_scalar: num(&ev.identity.scalar_residual),
        scale: r.tol / (10.0 * UNIT_ROUNDOFF),
        points_checked: points as usize,
        points_total: ctx.batch.n,
        independent_path: true,
    };
    let mut v = t1::check(&input)?;
    // The residuals enter with their own kinds (an edited document may call them estimates or
    // one-sided bounds): t1::check treats them as exact.
    for (check, slot) in [
        ("identity_matrix", &ev.identity.matrix_residual),
        ("identity_scalar", &ev.identity.scalar_residual),
    ] {
        if let Some(res) = slot.as_ref().filter(|x| x.kind != Kind::Exact) {
            rekind_lhs(
                &mut v.hypotheses,
                check,
                to_value(&Quantity {
                    tol: 0.0,
                    ..res.clone()
                }),
            );
        }
    }
    if !independent {
        for c in v
            .hypotheses
            .iter_mut()
            .filter(|c| c.name == "independent_path")
        {
            *c = Check::assumed(
                "independent_path",
                "assumed: ∇_x f_c was obtained independently of Wᵀδ_c (the document does not say \
                 how identity_max_abs_residual was computed)",
                None,
            );
        }
    }
    Ok(v)
}

/// T2 on the per-sample norms (certify only): the tightest sample against ‖W‖₂ (upper).
pub(super) fn build_t2(ev: &Evidence, extras: Option<&Extras<'_>>) -> R<Verdict> {
    let Some(st) = extras.and_then(|e| e.stats) else {
        return missing(
            "missing per-sample norms ‖J_x(x_i)‖_F, ‖J_W(x_i)‖_F, ‖x_i‖ (a measurements document \
             holds only their maxima; run flatcert certify)",
        );
    };
    let samples = (0..st.len())
        .map(|i| t2::T2Sample {
            jx_fro: st.input_sq[i].sqrt(),
            x_norm: st.x_norm[i],
            jw_fro: st.first_layer_sq[i].sqrt(),
            jx_spec: None,
            jw_spec: None,
        })
        .collect();
    let input = t2::T2Input {
        w_spectral: upper(
            &ev.first_layer.spectral_norm,
            names::FIRST_LAYER_SPECTRAL_NORM,
        )?,
        s_min: None,
        samples,
        rel_tol: st.rel_tol,
        entrywise: None,
    };
    let mut v = t2::check(&input)?;
    v.notes.push(
        "Checked: the upper inequality T2a at every sample (the tightest one decides). Not \
         checked: the lower inequality (s_min(W) is not measured), the spectral form T2b and the \
         entrywise form T2c."
            .into(),
    );
    Ok(v)
}

/// T3 from `input_grad_weighted_mean_sq`, ‖W‖₂, `first_layer_gauss_newton_trace`,
/// `gauss_newton_trace`, `input_norm_min` and (if measured) `hessian_gn_trace_difference`.
pub(super) fn build_t3(ctx: &Context, ev: &Evidence, stability: Option<&Check>) -> R<Verdict> {
    let input = t3::T3Input {
        weighted_mean: val(
            &ev.per_sample.input_grad_weighted_mean_sq,
            names::INPUT_GRAD_WEIGHTED_MEAN_SQ,
        )?,
        w_spectral: upper(
            &ev.first_layer.spectral_norm,
            names::FIRST_LAYER_SPECTRAL_NORM,
        )?,
        tr_gw: val(
            &ev.first_layer.gauss_newton_trace,
            names::FIRST_LAYER_GAUSS_NEWTON_TRACE,
        )?,
        tr_g: val(&ev.operator.trace, names::GAUSS_NEWTON_TRACE)?,
        min_x_norm: opt(&ev.input.norm_min),
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
        trace_gap: opt(&ev.residual.hessian_gn_trace_difference),
    };
    Ok(t3::check(&input)?)
}
