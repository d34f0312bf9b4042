//! T4, `Min` and T5: stability.

use flatcert_bounds::minimum::{self, MinimumInput};
use flatcert_bounds::{Check, Sampling, Status, Value, Verdict, t4, t5};

use super::{Context, R, bracket, missing, num, opt, residual_evidence, sharpness, to_value};
use crate::certify::evidence::{Evidence, Slot};
use crate::quantity::Kind;

/// The residual numbers, whether G replaced H, and the matching assumed hypothesis (THEORY T5
/// failure mode (i): every stability verdict with a residual is about the Gauss–Newton model).
pub(super) fn residual_info(ev: &Evidence) -> (t4::ModelInfo, Option<Check>) {
    let evidence = residual_evidence(ev);
    let check = evidence.gauss_newton_check(num(&ev.residual.loss_gradient_norm));
    let info = t4::ModelInfo {
        gauss_newton: check.is_some(),
        grad_norm: num(&ev.residual.loss_gradient_norm),
        max_residual: num(&ev.residual.max_norm),
        sqrt_two_loss: num(&ev.residual.train_loss).map(|l| (2.0 * l.max(0.0)).sqrt()),
    };
    (info, check)
}

/// T4 from the λ_max(G) bracket (`gauss_newton_lambda_max` upper, `…_lower` lower; the operator
/// path has only the lower side), plus the residual numbers; λ_min(H) ≥ 0 is the separate `Min`
/// verdict ([`build_minimum`]).
pub(super) fn build_t4(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let Some(lambda_max) = sharpness(ev) else {
        return missing(
            "missing gauss_newton_lambda_max / gauss_newton_lambda_max_lower (λ_max(G) needs the \
             Gram or the operator path; run flatcert certify)",
        );
    };
    let (model, assumed) = residual_info(ev);
    let input = t4::T4Input {
        eta: ctx.eta,
        lambda_max,
        model,
    };
    let mut v = t4::check(&input)?;
    if let Some(a) = assumed {
        v.hypotheses.insert(0, a);
    }
    if !lambda_max.has_upper() {
        v.notes.push(
            "Operator path: only a Lanczos lower bound of λ_max(G) is known, so T4 can be refuted \
             but not certified."
                .into(),
        );
    } else if let Some(c) = lambda_max.confidence {
        v.notes.push(format!(
            "λ_max(G)'s upper side is the randomized Lanczos bound of THEORY §3 item 8: it fails \
             only with probability δ = {:e} over the seeded Gaussian start, so a certified GD \
             condition is certified with {}.",
            c.delta,
            c.label()
        ));
    }
    Ok(v)
}

/// T5 (THEORY T5, decision order of rev. 2): the matrix-free sufficient condition (i) from the
/// upper sides of λ_max(G) (`gauss_newton_lambda_max`, or at scale `gauss_newton_lambda_max_upper`
/// with its confidence) and of `per_sample_lambda_max`; the certified bracket of λ_max(𝒟̃) of the
/// exact route (f) at the batch model it was computed for (`mean_square_dtilde_lambda_max` upper,
/// `…_lower` lower, `mean_square_batch`, `mean_square_with_replacement`) when present; the
/// necessary tests of (g) (refutation) and the Wu–Ma–E diagnostics. Without (i), (f) and a (g)
/// refutation, T5 is not computed (`reason`).
pub(super) fn build_t5(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let sharpness = sharpness(ev);
    let sufficient = match (sharpness, opt(&ev.per_sample.lambda_max)) {
        (Some(a), Some(l)) if a.has_upper() && l.has_upper() => Some(t5::SufficientEvidence {
            sharpness: a,
            per_sample_max: l,
        }),
        _ => None,
    };
    let (bracket, reason) = exact_route_bracket(ctx, ev);
    let same_run_diag = |slot: &Slot| ctx.same_run.then(|| opt(slot)).flatten();
    let diag = t5::T5Diagnostics {
        lambda_max_q_r: same_run_diag(&ev.t5.rho).filter(|_| bracket.is_some()),
        lambda_min_kr: num(&ev.t5.lambda_min_kept).map(|x| x.max(0.0)),
        wme_range: same_run_diag(&ev.t5.wme_lambda_max).filter(|_| bracket.is_some()),
        sharpness,
        trace_h: opt(&ev.operator.trace),
        mean_hi_fro2: opt(&ev.per_sample.fro_sq_mean),
        mean_tr_hi2: opt(&ev.per_sample.trace_sq_mean),
        nonuniformity: opt(&ev.per_sample.nonuniformity),
        tau: num(&ev.t5.tau).filter(|_| bracket.is_some()),
        rank: num(&ev.t5.rank)
            .filter(|_| bracket.is_some())
            .map(|r| r as usize),
        discarded_mass: num(&ev.t5.discarded_mass)
            .filter(|_| bracket.is_some())
            .map(|x| x.max(0.0)),
    };
    let (model, assumed) = residual_info(ev);
    let input = t5::T5Input {
        eta: ctx.eta,
        batch: ctx.batch,
        outputs: ctx.outputs,
        lambda_max_d: bracket.unwrap_or(Value::lower_bound(0.0, 0.0)),
        sufficient,
        diagnostics: diag,
        model,
    };
    let mut v = t5::check(&input)?;
    let decided = v.status() == Status::Certified || v.status() == Status::Violated;
    if bracket.is_none() && sufficient.is_none() && !decided {
        // Neither route can decide: report why, with what (g) gave.
        let es = v.conclusion("eta_star").map(|c| c.value);
        return missing(match es.filter(|e| e.has_upper()) {
            Some(e) => format!(
                "{}; the T5(g) necessary tests give only η*(B) ≤ {:.6}, which cannot certify \
                 stability",
                reason.unwrap_or_default(),
                e.upper()
            ),
            None => reason.unwrap_or_default(),
        });
    }
    if let Some(a) = assumed {
        v.hypotheses.insert(0, a);
    }
    if let Some(r) = reason.as_ref().filter(|_| bracket.is_none()) {
        v.notes.push(format!(
            "The exact route (f) was not used: {r}. T5 rests on the sufficient condition (i) and \
             the necessary tests (g)."
        ));
    }
    if bracket.is_some()
        && let (Some(r), Some(full)) = (num(&ev.t5.rank), num(&ev.operator.rank))
        && r < full
    {
        v.notes.push(format!(
            "The λ_max(𝒟̃) bracket was computed on the top {r} of the {full} eigenpairs of K; the \
             proven truncation allowance (1−p)λ_d + 4pω of T5(f) (with the rounding-of-K allowance: \
             {:.4e}) is included in its upper side (--t5-rank raises r).",
            ev.t5.dtilde_upper.as_ref().map_or(0.0, |x| x.tol)
        ));
    }
    if !ctx.same_run && bracket.is_some() {
        v.notes.push(
            "Bound calculator: the η-dependent diagnostics λ_max(𝒬_r) and Wu–Ma–E are not \
             recomputed at this η."
                .into(),
        );
    }
    Ok(v)
}

/// `Min` (θ* is a minimum, λ_min(H) ≥ 0) from `max_abs_residual` and, for smooth σ with a
/// residual, the Lanczos upper bound of λ_min(H) (`hessian_lambda_min_upper`); the rule, and what
/// `--curvature` changes, is `flatcert_bounds::minimum`.
pub(super) fn build_minimum(ctx: &Context, ev: &Evidence) -> R<Verdict> {
    let res = residual_evidence(ev);
    let input = MinimumInput {
        curvature: ctx.curvature,
        lambda_min: ev
            .residual
            .hessian_lambda_min_upper
            .as_ref()
            .filter(|x| x.kind == Kind::Upper)
            .map(to_value),
        // Sizes use the rigorous upper side; "certified" needs H = G proven (bounds `residual`).
        max_abs_residual: res.max_abs.map(|_| res.upper()),
        hessian_is_gauss_newton: res.hessian_is_gauss_newton(),
    };
    Ok(minimum::check(&input)?)
}

/// The certified λ_max(𝒟̃) bracket of T5(f) when the quantities hold one for this batch model,
/// else `None` with the reason it is not used.
pub(super) fn exact_route_bracket(ctx: &Context, ev: &Evidence) -> (Option<Value>, Option<String>) {
    let bracket = bracket(&ev.t5.dtilde_upper, &ev.t5.dtilde_lower);
    let d = match (&ctx.t5_reason, bracket) {
        (None, Some(d)) => d,
        (reason, _) => {
            let reason = reason.clone().unwrap_or_else(|| {
                "no mean_square_dtilde_lambda_max (the certified bracket of λ_max(𝒟̃) needs the \
                 exact Gram path, and certify runs it only where T5(i) is inconclusive)"
                    .into()
            });
            return (None, Some(reason));
        }
    };
    let b = ev.t5.bracket_batch;
    let wr = ev
        .t5
        .bracket_sampling
        .map(|s| s == Sampling::WithReplacement);
    let want_wr = ctx.batch.sampling == Sampling::WithReplacement;
    if b != Some(ctx.batch.batch as f64) || wr != Some(want_wr) {
        let reason = format!(
            "the λ_max(𝒟̃) bracket in the measurements is for B = {} ({}), not for B = {} ({}); \
             η*(B) depends on B: run flatcert certify at this batch size",
            b.map_or("?".into(), |b| format!("{b}")),
            match wr {
                Some(true) => "with replacement",
                Some(false) => "without replacement",
                None => "sampling unknown",
            },
            ctx.batch.batch,
            if want_wr {
                "with replacement"
            } else {
                "without replacement"
            }
        );
        return (None, Some(reason));
    }
    (Some(d), None)
}

/// The mean-square stability hypothesis that T3, T6, T7 and T8 borrow: the rule is
/// [`flatcert_bounds::t5::mean_square_hypothesis`] (T5's check, or T4's refutation).
pub(super) fn mean_square_stability(t4: &R<Verdict>, t5: &R<Verdict>) -> Option<Check> {
    flatcert_bounds::t5::mean_square_hypothesis(
        t4.as_ref().ok().and_then(|v| v.check("gd_condition")),
        t5.as_ref().ok().and_then(|v| v.check("stability")),
    )
}
