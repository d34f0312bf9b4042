//! T6 — T7: k-th moments and Sobolev bounds (one verdict per theorem, merged over k).

use flatcert_bounds::t6::DirectionalResult;
use flatcert_bounds::{Check, Status, Value, Verdict, t2, t6, t7};

use super::{
    Context, Extras, R, interpolation_check, merge_by_k, num, opt, rekind_lhs, req, to_value,
    upper, val,
};
use crate::certify::evidence::{Evidence, names};
use crate::quantity::Kind;

/// The k-th moment stability hypothesis of T6/T7/T8 from the mean-square one
/// ([`super::t4_t5::mean_square_stability`]); the rule is [`flatcert_bounds::t6::k_stability`].
pub(super) fn k_stability(k: u32, stability: Option<&Check>) -> Option<Check> {
    flatcert_bounds::t6::k_stability(k, stability)
}

/// T6 for every k: per-sample λ_i ≤ β_k (all λ_i from the pipeline, or max_i λ_i from
/// `per_sample_lambda_max`), the directional tests (pipeline, or the documented
/// `k_moment_directional_max_k{k}`), the moment corollary.
pub(super) fn build_t6(
    ctx: &Context,
    ev: &Evidence,
    extras: Option<&Extras<'_>>,
    stability: Option<&Check>,
) -> R<Verdict> {
    let lmax = req(&ev.per_sample.lambda_max, names::PER_SAMPLE_LAMBDA_MAX)?;
    let n = ctx.batch.n;
    let (lambdas, rel) = match extras {
        // t6 puts the tol rel·max_i λ_i on max_i λ_i: the engine's per-sample bound relative
        // to that max ([`super::lambda_rel`]).
        Some(e) => (e.lambdas.to_vec(), e.lambda_rel),
        None => (
            vec![lmax.value; n],
            if lmax.value > 0.0 {
                lmax.tol / lmax.value
            } else {
                0.0
            },
        ),
    };
    let mut parts = Vec::new();
    for &k in &ctx.ks {
        let directional = match extras {
            Some(e) => e
                .directional
                .iter()
                .find(|(kk, _)| *kk == k)
                .map(|(_, d)| d.clone())
                .unwrap_or_default(),
            None => ev
                .directional
                .max
                .get(&k)
                .map(|d| {
                    vec![DirectionalResult {
                        sample: ev.directional.argmax.get(&k).map_or(0.0, |a| a.value) as usize,
                        value: to_value(d),
                    }]
                })
                .unwrap_or_default(),
        };
        let no_directional = directional.is_empty();
        let input = t6::T6Input {
            eta: ctx.eta,
            batch: ctx.batch,
            k,
            outputs: ctx.outputs,
            lambdas: lambdas.clone(),
            lambda_rel_tol: rel,
            directional,
            k_stability: k_stability(k, stability),
        };
        let mut v = t6::check(&input)?;
        if extras.is_none() && lmax.kind != Kind::Exact {
            // t6::check takes the λ_i as exact numbers; a document's max_i λ_i enters with its
            // own kind: only an upper side can certify λ_i ≤ β_k, only a lower side refute it.
            rekind_t6(&mut v, to_value(lmax), k);
        }
        if no_directional {
            v.notes.push(format!(
                "Directional test (T6d) for k = {k}: not computed (it needs the blocks of the \
                 Gram matrix K: the exact Gram path)."
            ));
        }
        parts.push((k, v));
    }
    let mut v = merge_by_k("T6", parts);
    if extras.is_none() {
        v.notes.push(
            "Bound calculator: only max_i λ_i is known, so every λ_i is taken equal to it (the \
             per-sample test is unchanged; the moment corollary is conservative)."
                .into(),
        );
    }
    Ok(v)
}

/// T6 on a document's max_i λ_i that is not exact: the per-sample test and the moment corollary
/// with the kind of `lmax` (an estimate gives `estimated`, a lower bound never certifies).
pub(super) fn rekind_t6(v: &mut Verdict, lmax: Value, k: u32) {
    use flatcert_bounds::Scalar;
    rekind_lhs(&mut v.hypotheses, "per_sample", lmax);
    for c in v
        .diagnostics
        .iter_mut()
        .filter(|c| c.name == "moment_corollary")
    {
        if let Some(rhs) = c.rhs {
            *c = Check::le_bound(
                c.name.clone(),
                c.statement.clone(),
                lmax.powf(f64::from(k)),
                rhs,
            );
        }
    }
    let violated = v
        .hypotheses
        .iter()
        .any(|c| c.status == Status::Violated && c.name != "k_stable");
    if !violated {
        v.notes
            .retain(|n| !n.starts_with("A necessary test is violated"));
    }
}

/// T7 for every k, every measured value next to its bound.
pub(super) fn build_t7(ctx: &Context, ev: &Evidence, stability: Option<&Check>) -> R<Verdict> {
    let w = upper(
        &ev.first_layer.spectral_norm,
        names::FIRST_LAYER_SPECTRAL_NORM,
    )?;
    let min_x = val(&ev.input.norm_min, names::INPUT_NORM_MIN)?;
    let interpolation = interpolation_check(ev);
    // N_2k(W) ≤ rowsum^{1/2k}·colsum^{1−1/2k} from the upper sides of the measured sums (their
    // rounding tol included); a sum that is not a rigorous upper bound leaves (e) uncomputed.
    let n_q = |k: u32| -> Option<Value> {
        let r = upper(&ev.first_layer.max_row_sum, names::FIRST_LAYER_MAX_ROW_SUM).ok()?;
        let c = upper(&ev.first_layer.max_col_sum, names::FIRST_LAYER_MAX_COL_SUM).ok()?;
        t2::n_q_bound(r, c, 2 * k).ok().map(|v| v.only_upper())
    };
    let mut parts = Vec::new();
    for &k in &ctx.ks {
        let measured = t7::T7Measured {
            max_jx_spectral: opt(&ev.per_sample.input_grad_spectral_max),
            max_jx_fro_times_x: opt(&ev.per_sample.input_grad_weighted_max),
            sobolev: ev.per_sample.input_grad_moment.get(&k).map(to_value),
            sobolev_weighted: ev
                .per_sample
                .input_grad_weighted_moment
                .get(&k)
                .map(to_value),
            sobolev_4: ev.per_sample.input_grad_moment.get(&2).map(to_value),
            sobolev_4_weighted: ev
                .per_sample
                .input_grad_weighted_moment
                .get(&2)
                .map(to_value),
            order2_weighted: opt(&ev.per_sample.input_grad_weighted_mean_sq),
            mean_tr_hi2: opt(&ev.per_sample.trace_sq_mean),
            trace_h: opt(&ev.operator.trace),
            g_x: ev.per_sample.input_grad_elementwise.get(&k).map(to_value),
            g_w: ev.per_sample.param_grad_elementwise.get(&k).map(to_value),
            n_2k: n_q(k),
            min_x_2k: ev.input.lq_norm_min.get(&k).map(to_value),
        };
        let input = t7::T7Input {
            eta: ctx.eta,
            batch: ctx.batch,
            k,
            outputs: ctx.outputs,
            w_spectral: w,
            min_x_norm: min_x,
            mean_x_norm: num(&ev.input.norm_mean),
            measured,
            k_stability: k_stability(k, stability),
            interpolation: Some(interpolation.clone()),
        };
        parts.push((k, t7::check(&input)?));
    }
    Ok(merge_by_k("T7", parts))
}
