//! T8 — T10: robustness (certify only).

use flatcert_bounds::t8::{T8Input, T8Point, T8Theory};
use flatcert_bounds::t9::{MarkovInput, PairGap, T9Input, T9Point};
use flatcert_bounds::t10::{Ball, T10Input};
use flatcert_bounds::{Check, Value, Verdict, t6, t8, t9, t10};

use super::t6_t7::k_stability;
use super::{ConcludePublic, Context, Extras, Fail, R, Robust, missing, num, upper, val};
use crate::certify::evidence::{Evidence, names};
use crate::measure::robustness::Task;
use crate::quantity::Quantity;

pub(super) fn upper_of(q: &Quantity) -> Value {
    Value::upper_bound(q.value, q.tol)
}

/// T9(c) per point with the bounds crate's rule: every rigorous gap exceeds ε·min(√2L, L^{(y,c)}).
pub(super) fn classification_flags(ctx: &Context, r: &Robust) -> Vec<bool> {
    let eps = ctx.epsilon.unwrap_or(0.0);
    r.certs
        .points
        .iter()
        .zip(t9_points(r))
        .map(|(_, p)| t9::classification_certified(eps, p.lipschitz, &p.pairs))
        .collect()
}

pub(super) fn t9_points(r: &Robust) -> Vec<T9Point> {
    r.certs
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pairs = match (p.label, &p.pair_bounds, r.gaps.get(i)) {
                (Some(y), Some(pb), Some(g)) => (0..pb.len())
                    .filter(|&c| c != y)
                    .map(|c| PairGap {
                        gap: g[c],
                        lipschitz: Some(upper_of(&pb[c])),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            T9Point {
                lipschitz: upper_of(&p.lipschitz.lip),
                pairs,
            }
        })
        .collect()
}

/// T8 from the per-point residuals, L_i(ε), ‖J_x(x_i)‖₂ brackets and T9 flags, the theory route
/// with β_k at the smallest k, and the held-out coverage.
pub(super) fn build_t8(
    ctx: &Context,
    ev: &Evidence,
    r: &Robust,
    _extras: Option<&Extras<'_>>,
    stability: Option<&Check>,
) -> R<Verdict> {
    let Some(eps) = ctx.epsilon else {
        return missing("needs --epsilon");
    };
    let k = ctx.ks.iter().copied().min().unwrap_or(2);
    let flags = match r.task {
        Some(Task::Classification) => Some(classification_flags(ctx, r)),
        _ => None,
    };
    let mut points = Vec::with_capacity(r.certs.points.len());
    for (i, p) in r.certs.points.iter().enumerate() {
        let Some(res) = &p.residual_norm else {
            return missing("T8 needs targets to bound the residuals ‖res_i‖");
        };
        let (lo, hi) = (p.jacobian_norm.lower, p.jacobian_norm.upper);
        points.push(T8Point {
            residual_norm: upper_of(res),
            lipschitz: upper_of(&p.lipschitz.lip),
            // The hull of both sides (if rounding ever crossed them, neither side may shrink).
            jacobian_norm: Some(Value::interval(lo.min(hi), hi.max(lo))),
            certified: flags.as_ref().map(|f| f[i]),
        });
    }
    let layered = matches!(ctx.network, super::Network::Layered { .. });
    // The theory route (d) bounds G_{2k} by T7(b), ‖W‖₂ and the full input gradient: dense
    // first layers only (THEORY §7(a)); (a)–(c) and (e) hold for any network.
    let theory = if layered {
        None
    } else {
        Some(T8Theory {
            w_spectral: upper(
                &ev.first_layer.spectral_norm,
                names::FIRST_LAYER_SPECTRAL_NORM,
            )?,
            beta_k: t6::beta_k(ctx.eta, &ctx.batch, k)?,
            min_x_norm: val(&ev.input.norm_min, names::INPUT_NORM_MIN)?,
            k_stability: k_stability(k, stability),
        })
    };
    let input = T8Input {
        epsilon: eps,
        epsilon_y: ctx.epsilon_y,
        points,
        weights: None,
        k: Some(k),
        theory,
        coverage: r.coverage,
        failure: None,
        mean_x_norm: num(&ev.input.norm_mean),
    };
    let mut v = t8::check(&input)?;
    if layered {
        v.notes.push(
            "The theory route (d) is not computed for a layered network: it bounds the input \
             gradient by ‖W‖₂ and T7(b), which need a dense first layer (THEORY §7(a)); the \
             certified bounds (a)–(c) and (e) use only T10 and hold for any network."
                .into(),
        );
    }
    v.notes.push(format!(
        "The moment form (c) and the theory route (d) use k = {k}; ε_y = {}.",
        ctx.epsilon_y
    ));
    if let Some(c) = v.conclusion("classification_error")
        && c.value.upper() >= 1.0
    {
        v.notes.push(
            "Vacuous: no training point is certified at ε, so the classification bound (e) is 1."
                .into(),
        );
    }
    match &r.coverage {
        None => v.notes.push(
            "(D_ε) was not measured: give held-out data (--test-x/--test-y) for its coverage."
                .into(),
        ),
        Some(c) if c.fraction_within == 0.0 => v.notes.push(format!(
            "Vacuous for the held-out data: none of the {} test points lies within ε of a training \
             point (with the label condition), so (D_ε) fails everywhere and the bound says nothing \
             about them.",
            c.test_points
        )),
        Some(_) => {}
    }
    Ok(v)
}

/// The classification Markov level γ minimizing the T9(d) bound over the margins (the bound
/// holds for every γ simultaneously, so choosing it after seeing the data is sound).
pub(super) fn best_margin_level(
    eps: f64,
    g2k: f64,
    k: u32,
    omega_max: f64,
    margins: &[f64],
) -> Option<(f64, f64)> {
    let n = margins.len();
    if n == 0 {
        return None;
    }
    let mut sorted: Vec<f64> = margins
        .iter()
        .copied()
        .filter(|m| m.is_finite() && *m > 0.0)
        .collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut best: Option<(f64, f64, f64)> = None;
    for &gamma in &sorted {
        let frac = margins
            .iter()
            .filter(|&&m| m.is_nan() || m <= gamma)
            .count() as f64
            / n as f64;
        let Ok(b) = t9::markov_fraction_bound_classification(eps, g2k, k, omega_max, gamma, frac)
        else {
            continue;
        };
        if best.is_none_or(|(_, _, bb)| b < bb) {
            best = Some((gamma, frac, b));
        }
    }
    best.map(|(g, f, _)| (g, f))
}

/// T9: the exact certified fraction at ε (classification with the pairwise bounds, or
/// regression with τ) and the Markov fraction bound at the smallest k.
pub(super) fn build_t9(ctx: &Context, r: &Robust) -> R<Verdict> {
    let Some(eps) = ctx.epsilon else {
        return missing("needs --epsilon");
    };
    let task = match r.task {
        Some(Task::Classification) => t9::Task::Classification,
        Some(Task::Regression { tau }) => t9::Task::Regression { tau },
        None => {
            return missing(
                "the targets are not one-hot class labels (regression): T9 needs --tau, the \
                 tolerated output change",
            );
        }
    };
    let k = ctx.ks.iter().copied().min().unwrap_or(2);
    let summary = r.certs.summary();
    let g2k = r
        .certs
        .input_jacobian_moment(k)
        .map_err(|e| Fail::Missing(format!("G_2k: {e}")))?;
    let omega_max = summary.omega_max.as_ref().map_or(0.0, |q| q.value);
    let margin_level = match task {
        t9::Task::Classification => {
            let margins: Vec<f64> = r
                .certs
                .points
                .iter()
                .map(|p| p.margin.as_ref().map_or(f64::NAN, |m| m.value))
                .collect();
            best_margin_level(eps, g2k.value, k, omega_max, &margins)
        }
        t9::Task::Regression { .. } => None,
    };
    let markov = MarkovInput {
        k,
        g_2k: Value::upper_bound(g2k.value, g2k.tol),
        omega_max: Value::upper_bound(omega_max, 0.0),
        margin_level,
    };
    let input = T9Input {
        epsilon: eps,
        task,
        points: t9_points(r),
        markov: Some(markov),
    };
    let mut v = t9::check(&input)?;
    if let Some((gamma, frac)) = margin_level {
        v.notes.push(format!(
            "Markov bound at the margin level γ = {gamma:.4e} (the minimizer over the margins; \
             {:.4} of the points have m_i ≤ γ), k = {k}.",
            frac
        ));
    }
    if let Some(qs) = &summary.radius_quantiles
        && let Some(med) = qs.iter().find(|q| q.q == 0.5)
    {
        v.conclude_public(
            "median_certified_radius",
            "median certified radius over the training points (a lower bound of each point's \
             largest certified radius; searched on [0, 4ε])",
            Value::lower_bound(med.radius.value, 0.0),
        );
    }
    if let Some(nonpos) = summary.margin_nonpositive {
        v.conclude_public(
            "margin_nonpositive",
            "training points whose rigorous margin lower bound is ≤ 0 (never certified)",
            Value::exact(nonpos as f64, 0.0),
        );
    }
    let frac = v
        .conclusion("certified_fraction")
        .map_or(0.0, |c| c.value.value);
    if frac == 0.0 {
        v.notes.push(
            "No training point is certified at this ε: the radius is too large for this network."
                .into(),
        );
    }
    Ok(v)
}

/// T10 at the training point with the largest L_i(ε), against sampled Jacobian norms and slopes.
pub(super) fn build_t10(ctx: &Context, r: &Robust) -> R<Verdict> {
    let Some(eps) = ctx.epsilon else {
        return missing("needs --epsilon");
    };
    let Some(p) = r.certs.points.get(r.t10_index) else {
        return missing("no training point");
    };
    let lb = &p.lipschitz;
    let input = T10Input {
        epsilon: eps,
        ball: Ball::L2,
        per_layer: Some(upper_of(&lb.bound_a)),
        abs_product: Some(upper_of(&lb.bound_b)),
        midpoint_radius: Some(upper_of(&lb.bound_c)),
        sampled_jacobian_norms: r.t10_jacobians.clone(),
        sampled_slopes: r.t10_slopes.clone(),
        uses_libm: !ctx.activation.is_piecewise_linear(),
        monotone_activation: true,
    };
    let mut v = t10::check(&input)?;
    let n = r.certs.points.len();
    let mean = r
        .certs
        .points
        .iter()
        .map(|p| p.lipschitz.lip.value)
        .sum::<f64>()
        / n.max(1) as f64;
    v.notes.insert(
        0,
        format!(
            "Evaluated at training point i = {} (the largest L_i(ε) of the {n} points; mean L_i(ε) \
             = {mean:.4e}), with {} sampled Jacobian norms and {} sampled slopes in its ball.",
            r.t10_index,
            r.t10_jacobians.len(),
            r.t10_slopes.len()
        ),
    );
    Ok(v)
}
