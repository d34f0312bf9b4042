//! Measured numbers → typed inputs of the bounds crate → verdicts T1 … T10.
//!
//! T1, T3, T4, T5 and T7 are built **only from the quantity map**, so that the bound calculator
//! (`flatcert bound`, which reads the same map from a file) reproduces `certify` exactly. T6
//! uses the per-sample λ_i and the directional tests when the pipeline has them (else the
//! documented maxima); T2 needs per-sample norms and T8–T10 the network itself, so they are
//! computed only by `certify` ([`Extras`]).
//!
//! Kinds (THEORY §3): every quantity keeps its kind (`exact` with its tol, `upper`, `lower`,
//! `estimate`); two-sided brackets (λ_max(G), λ_max(𝒟̃)) become `interval`s from their upper and
//! lower quantities; ‖W‖₂ enters only through its rigorous upper bound.

use flatcert_bounds::minimum::{self, Curvature, MinimumInput};
use flatcert_bounds::residual::ResidualEvidence;
use flatcert_bounds::t6::DirectionalResult;
use flatcert_bounds::t8::{Coverage, T8Input, T8Point, T8Theory};
use flatcert_bounds::t9::{MarkovInput, PairGap, T9Input, T9Point};
use flatcert_bounds::t10::{Ball, T10Input};
use flatcert_bounds::{
    BatchModel, BoundsError, Check, Sampling, Status, Value, Verdict, t1, t2, t3, t4, t5, t6, t7,
    t8, t9, t10,
};

use super::certificate::{VerdictEntry, Verdicts};
use crate::measure::QuantityMap;
use crate::measure::per_sample::PerSampleStats;
use crate::measure::robustness::{PointCertificates, Task};
use crate::model::Activation;
use crate::quantity::{Kind, Quantity, UNIT_ROUNDOFF};

/// What every theorem needs besides the measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// η (theory convention).
    pub eta: f64,
    /// (n, B, sampling).
    pub batch: BatchModel,
    /// Number of outputs C.
    pub outputs: usize,
    /// Even moment orders k.
    pub ks: Vec<u32>,
    /// The activation (libm hypothesis, piecewise linearity).
    pub activation: Activation,
    /// Robustness radius ε, if any.
    pub epsilon: Option<f64>,
    /// Label radius ε_y.
    pub epsilon_y: f64,
    /// Regression threshold τ, if any.
    pub tau: Option<f64>,
    /// True inside `certify`: η-dependent diagnostics in the map belong to this η.
    pub same_run: bool,
    /// Why T5 cannot be computed even if asked (the operator path), if so.
    pub t5_reason: Option<String>,
    /// Why T8–T10 are not computed (e.g. "needs --epsilon"), if so.
    pub robust_reason: Option<String>,
    /// `--curvature`: whether a certified negative eigenvalue of H fails the certificate (exact)
    /// or the Gauss–Newton substitution is assumed (`flatcert_bounds::minimum`).
    pub curvature: Curvature,
    /// `--kinks strict`: a near-kink unit makes every Jacobian-dependent verdict (T1–T8)
    /// inconclusive instead of resting on the assumed activation pattern.
    pub kinks_strict: bool,
}

/// T5(f)'s rounding-of-K allowance (issue 15 item 5): an a-priori estimate inside the certified
/// λ_max(𝒟̃) bracket, so an assumed hypothesis with its size (`mean_square_rounding_allowance`).
fn rounding_of_k_check(q: &QuantityMap) -> Option<Check> {
    let a = q.get("mean_square_rounding_allowance")?;
    Some(Check::assumed(
        "rounding_of_k",
        format!(
            "assumed: the rounding of K (formation, eigensolver residual, non-orthogonality) is \
             covered by the a-priori allowance (1−p)φ + 4pnφ = {:.3e} added to the λ_max(𝒟̃) \
             bracket (THEORY T5(f), §3 item 7)",
            a.value
        ),
        Some(a.value),
    ))
}

/// The theorems whose verdicts use the Jacobian at the training points, hence the activation
/// pattern there (T9 and T10 bound every σ′ of a kink: IBP and the certified margins).
pub const JACOBIAN_THEOREMS: [&str; 8] = ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"];

/// The near-kink hypothesis (issue 15 item 4) from `near_kink_units` (count, with the
/// description as its note): `None` when no unit is near a kink. Assumed with the count as its
/// size, or, with `--kinks strict`, inconclusive.
pub fn kink_check(ctx: &Context, q: &QuantityMap) -> Option<Check> {
    let k = q.get("near_kink_units").filter(|k| k.value > 0.0)?;
    let what = k.note.clone().unwrap_or_else(|| {
        format!(
            "activation pattern at {} near-kink units, as computed",
            k.value
        )
    });
    Some(if ctx.kinks_strict {
        Check::given(
            "activation_pattern",
            format!(
                "not proven (--kinks strict): {what}; the Jacobian at those samples is \
                 set-valued, so this verdict is inconclusive"
            ),
            Status::Inconclusive,
        )
    } else {
        Check::assumed(
            "activation_pattern",
            format!("assumed: {what}"),
            Some(k.value),
        )
    })
}

/// T8–T10 evidence computed on the network (certify only).
#[derive(Debug, Clone, PartialEq)]
pub struct Robust {
    /// T10 at every training point and the T9 per-point data.
    pub certs: PointCertificates,
    /// Whether T9 applies: classification, regression with τ, or not (regression without τ).
    pub task: Option<Task>,
    /// Classification: per point, per class c, a rigorous lower bound of f_y(x_i) − f_c(x_i)
    /// (entry y unused).
    pub gaps: Vec<Vec<f64>>,
    /// The training point with the largest L_i(ε), where T10 is confronted with samples.
    pub t10_index: usize,
    /// ‖J_x(x)‖₂ at random points of its ball (and at the centre).
    pub t10_jacobians: Vec<f64>,
    /// ‖f(x) − f(x′)‖/‖x − x′‖ at random pairs of its ball.
    pub t10_slopes: Vec<f64>,
    /// Held-out coverage of (D_ε), if test data were given.
    pub coverage: Option<Coverage>,
}

/// What only the pipeline has (per-sample vectors, directional tests, robustness).
#[derive(Debug, Clone, Copy)]
pub struct Extras<'a> {
    /// Per-sample statistics.
    pub stats: &'a PerSampleStats,
    /// T6(d) directional test values per even k (empty without the Gram path).
    pub directional: &'a [(u32, Vec<DirectionalResult>)],
    /// T8–T10 evidence, if ε was given.
    pub robust: Option<&'a Robust>,
}

/// Why a theorem could not be built.
#[derive(Debug, Clone)]
pub enum Fail {
    /// A quantity (or other input) is missing: becomes a `not_computed` entry.
    Missing(String),
    /// The bounds crate rejected the numbers.
    Bounds(BoundsError),
}

impl From<BoundsError> for Fail {
    fn from(e: BoundsError) -> Self {
        Fail::Bounds(e)
    }
}

type R<T> = std::result::Result<T, Fail>;

fn missing<T>(what: impl Into<String>) -> R<T> {
    Err(Fail::Missing(what.into()))
}

/// A [`Quantity`] as a bounds-crate [`Value`] of the same kind.
pub fn to_value(q: &Quantity) -> Value {
    let v = match q.kind {
        Kind::Exact => Value::exact(q.value, q.tol),
        Kind::Upper => Value::upper_bound(q.value, q.tol),
        Kind::Lower => Value::lower_bound(q.value, q.tol),
        Kind::Estimate => Value::estimate(q.value, q.tol),
    };
    Value {
        confidence: q.confidence,
        ..v
    }
}

/// Read access to the quantity map with "missing <name>" failures.
struct Q<'a>(&'a QuantityMap);

impl Q<'_> {
    fn q(&self, name: &str) -> R<&Quantity> {
        match self.0.get(name) {
            Some(q) => Ok(q),
            None => missing(format!("missing {name}")),
        }
    }
    fn val(&self, name: &str) -> R<Value> {
        self.q(name).map(to_value)
    }
    fn opt(&self, name: &str) -> Option<Value> {
        self.0.get(name).map(to_value)
    }
    fn num(&self, name: &str) -> Option<f64> {
        self.0.get(name).map(|q| q.value)
    }
    /// The rigorous upper bound named `name` (kind upper or exact), as an upper-bound value.
    fn upper(&self, name: &str) -> R<Value> {
        let q = self.q(name)?;
        match q.kind {
            Kind::Upper | Kind::Exact => Ok(to_value(q).only_upper()),
            _ => missing(format!("{name} is not an upper bound (kind {:?})", q.kind)),
        }
    }
    /// λ_max(G) with every rigorous side known: the upper side from the Gram path's
    /// `gauss_newton_lambda_max` (deterministic) or, at scale, `gauss_newton_lambda_max_upper`
    /// (with its confidence, THEORY §3 item 8); the lower side from `…_lower`.
    fn sharpness(&self) -> Option<Value> {
        let up = ["gauss_newton_lambda_max", "gauss_newton_lambda_max_upper"]
            .iter()
            .find_map(|n| self.0.get(*n).filter(|q| q.kind == Kind::Upper))
            .map(to_value);
        let lo = self
            .0
            .get("gauss_newton_lambda_max_lower")
            .filter(|q| q.kind == Kind::Lower)
            .map(to_value);
        match (lo, up) {
            (Some(l), Some(u)) => Some(u.intersect(l)),
            (x, None) | (None, x) => x,
        }
    }
    /// A bracket from an upper-kind quantity and a lower-kind quantity (either may be absent).
    fn bracket(&self, upper: &str, lower: &str) -> Option<Value> {
        let up = self.0.get(upper).filter(|q| q.kind == Kind::Upper);
        let lo = self.0.get(lower).filter(|q| q.kind == Kind::Lower);
        match (lo, up) {
            (Some(l), Some(u)) if l.value <= u.value => Some(Value::interval(l.value, u.value)),
            (Some(l), Some(u)) => Some(Value::interval(u.value, l.value)),
            (Some(l), None) => Some(Value::lower_bound(l.value, l.tol)),
            (None, Some(u)) => Some(Value::upper_bound(u.value, u.tol)),
            (None, None) => None,
        }
    }
}

/// Evaluate T1 … T10. Missing inputs become `not_computed` entries; a bounds-crate error is
/// returned with the theorem id (a bug in `certify`, a bad document in `bound`).
pub fn evaluate(
    ctx: &Context,
    quantities: &QuantityMap,
    extras: Option<&Extras<'_>>,
) -> std::result::Result<Verdicts, (String, BoundsError)> {
    let q = Q(quantities);
    let mut out = Verdicts::default();
    let kinks = kink_check(ctx, quantities);
    let mut put = |id: &str, r: R<Verdict>| -> std::result::Result<(), (String, BoundsError)> {
        let entry = match r {
            Ok(mut v) => {
                if let Some(k) = kinks.as_ref().filter(|_| JACOBIAN_THEOREMS.contains(&id)) {
                    v.hypotheses.push(k.clone());
                }
                // Only where the exact bracket decided (not T5(i): then `eta_star_route` is a
                // diagnostic and the bracket's allowance does not enter the verdict).
                if id == "T5"
                    && let Some(c) = rounding_of_k_check(quantities)
                    && v.check("stability").is_some()
                    && v.diagnostics.iter().all(|d| d.name != "eta_star_route")
                {
                    v.hypotheses.push(c);
                }
                VerdictEntry::Computed(Box::new(v))
            }
            Err(Fail::Missing(m)) => VerdictEntry::NotComputed(m),
            Err(Fail::Bounds(e)) => return Err((id.to_string(), e)),
        };
        out.set(id, entry);
        Ok(())
    };
    put("T1", build_t1(ctx, &q))?;
    put("T2", build_t2(&q, extras))?;
    let t4 = build_t4(ctx, &q);
    let mut t5 = build_t5(ctx, &q);
    let stability = mean_square_stability(&t4, &t5);
    if let (Err(Fail::Missing(reason)), Some(c)) = (&mut t5, &stability)
        && c.status == Status::Violated
    {
        reason.push_str(
            "; T4's violation already refutes mean-square stability at (η, B) (η*_2 ≤ η_GD*, \
             THEORY T5g)",
        );
    }
    put("T3", build_t3(ctx, &q, stability.as_ref()))?;
    put("T4", t4)?;
    put(minimum::ID, build_minimum(ctx, &q))?;
    put("T5", t5)?;
    put("T6", build_t6(ctx, &q, extras, stability.as_ref()))?;
    put("T7", build_t7(ctx, &q, stability.as_ref()))?;
    let robust = robust_or_reason(ctx, extras);
    put(
        "T8",
        robust
            .clone()
            .and_then(|r| build_t8(ctx, &q, r, extras, stability.as_ref())),
    )?;
    put("T9", robust.clone().and_then(|r| build_t9(ctx, r)))?;
    put("T10", robust.and_then(|r| build_t10(ctx, r)))?;
    Ok(out)
}

/// T4 and T5 alone from a quantity map (`None` where not computable): what `flatcert stability`
/// evaluates per batch size at scale, with the same rules as [`evaluate`].
pub fn stability_verdicts(
    ctx: &Context,
    quantities: &QuantityMap,
) -> std::result::Result<(Option<Verdict>, Option<Verdict>), BoundsError> {
    let q = Q(quantities);
    let keep = |r: R<Verdict>| match r {
        Ok(v) => Ok(Some(v)),
        Err(Fail::Missing(_)) => Ok(None),
        Err(Fail::Bounds(e)) => Err(e),
    };
    Ok((keep(build_t4(ctx, &q))?, keep(build_t5(ctx, &q))?))
}

fn robust_or_reason<'a>(ctx: &Context, extras: Option<&Extras<'a>>) -> R<&'a Robust> {
    if let Some(r) = ctx.robust_reason.as_ref() {
        return missing(r.clone());
    }
    match extras.and_then(|e| e.robust) {
        Some(r) => Ok(r),
        None if ctx.epsilon.is_none() => {
            missing("needs --epsilon (T8–T10 are robustness statements at a radius ε)")
        }
        None => missing(
            "needs the network: certified Lipschitz bounds (T10) are computed by `flatcert certify`, not from a measurements document",
        ),
    }
}

// ------------------------------------------------------------------------------------------
// T1 — T3: first-layer identities.
// ------------------------------------------------------------------------------------------

/// T1 from `identity_max_abs_residual` (tol = the expected size 10u‖W‖‖δ‖‖x‖),
/// `identity_scalar_max_abs_residual` and `identity_points_checked`.
fn build_t1(ctx: &Context, q: &Q<'_>) -> R<Verdict> {
    let r = q.q("identity_max_abs_residual")?;
    let independent = r.method.as_deref().is_some_and(|m| m.contains("forward"));
    let points = q.num("identity_points_checked").unwrap_or(0.0);
    let input = t1::T1Input {
        max_residual_matrix: r.value,
        max_residual_scalar: q.num("identity_scalar_max_abs_residual"),
        scale: r.tol / (10.0 * UNIT_ROUNDOFF),
        points_checked: points as usize,
        points_total: ctx.batch.n,
        independent_path: true,
    };
    let mut v = t1::check(&input)?;
    // The residuals enter with their own kinds (an edited document may call them estimates or
    // one-sided bounds): t1::check treats them as exact.
    for (check, name) in [
        ("identity_matrix", "identity_max_abs_residual"),
        ("identity_scalar", "identity_scalar_max_abs_residual"),
    ] {
        if let Some(res) = q.0.get(name).filter(|x| x.kind != Kind::Exact) {
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
fn build_t2(q: &Q<'_>, extras: Option<&Extras<'_>>) -> R<Verdict> {
    let Some(e) = extras else {
        return missing(
            "missing per-sample norms ‖J_x(x_i)‖_F, ‖J_W(x_i)‖_F, ‖x_i‖ (a measurements document \
             holds only their maxima; run flatcert certify)",
        );
    };
    let st = e.stats;
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
        w_spectral: q.upper("first_layer_spectral_norm")?,
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

/// The evidence on H = G from the map (bounds crate rule, [`ResidualEvidence`]):
/// `max_abs_residual` with its kind and tol, and `near_kink_units` (absent: unknown, so a
/// piecewise-linear Hessian is not proven to exist).
pub fn residual_evidence(q: &QuantityMap) -> ResidualEvidence {
    let kinks = q.get("near_kink_units");
    ResidualEvidence {
        max_abs: q.get("max_abs_residual").map(to_value),
        piecewise_linear: kinks.is_none_or(|k| k.value > 0.0),
        near_kink_units: kinks.map(|k| k.value.max(0.0) as usize),
    }
}

/// The interpolation hypothesis (all res_i = 0, so H_i = J_iᵀJ_i) of T3's flatness form and T7:
/// assumed with the rigorous upper bound of max|res_ic| as its size unless H = G is proven.
fn interpolation_check(q: &Q<'_>) -> Check {
    residual_evidence(q.0).interpolation_check()
}

/// T3 from `input_grad_weighted_mean_sq`, ‖W‖₂, `first_layer_gauss_newton_trace`,
/// `gauss_newton_trace`, `input_norm_min` and (if measured) `hessian_gn_trace_difference`.
fn build_t3(ctx: &Context, q: &Q<'_>, stability: Option<&Check>) -> R<Verdict> {
    let input = t3::T3Input {
        weighted_mean: q.val("input_grad_weighted_mean_sq")?,
        w_spectral: q.upper("first_layer_spectral_norm")?,
        tr_gw: q.val("first_layer_gauss_newton_trace")?,
        tr_g: q.val("gauss_newton_trace")?,
        min_x_norm: q.opt("input_norm_min"),
        flatness: Some(t3::T3Flatness {
            eta: ctx.eta,
            batch: ctx.batch,
            outputs: ctx.outputs,
            stability: stability.map(|c| Check {
                statement: format!("mean-square stability at (η, B): {}", c.statement),
                ..c.clone()
            }),
            interpolation: Some(interpolation_check(q)),
        }),
        trace_gap: q.opt("hessian_gn_trace_difference"),
    };
    Ok(t3::check(&input)?)
}

// ------------------------------------------------------------------------------------------
// T4 — T5: stability.
// ------------------------------------------------------------------------------------------

/// The residual numbers, whether G replaced H, and the matching assumed hypothesis (THEORY T5
/// failure mode (i): every stability verdict with a residual is about the Gauss–Newton model).
fn residual_info(q: &Q<'_>) -> (t4::ModelInfo, Option<Check>) {
    let evidence = residual_evidence(q.0);
    let check = evidence.gauss_newton_check(q.num("loss_gradient_norm"));
    let info = t4::ModelInfo {
        gauss_newton: check.is_some(),
        grad_norm: q.num("loss_gradient_norm"),
        max_residual: q.num("max_residual_norm"),
        sqrt_two_loss: q.num("train_loss").map(|l| (2.0 * l.max(0.0)).sqrt()),
    };
    (info, check)
}

/// T4 from the λ_max(G) bracket (`gauss_newton_lambda_max` upper, `…_lower` lower; the operator
/// path has only the lower side), plus the residual numbers and, for smooth σ with a residual,
/// the Lanczos upper bound of λ_min(H) (`hessian_lambda_min_upper`).
fn build_t4(ctx: &Context, q: &Q<'_>) -> R<Verdict> {
    let Some(lambda_max) = q.sharpness() else {
        return missing(
            "missing gauss_newton_lambda_max / gauss_newton_lambda_max_lower (λ_max(G) needs the \
             Gram or the operator path; run flatcert certify)",
        );
    };
    let (model, assumed) = residual_info(q);
    let input = t4::T4Input {
        eta: ctx.eta,
        lambda_max,
        // λ_min(H) ≥ 0 is its own verdict (`Min`, [`build_minimum`]), not a T4 hypothesis.
        lambda_min: None,
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
fn build_t5(ctx: &Context, q: &Q<'_>) -> R<Verdict> {
    let sharpness = q.sharpness();
    let sufficient = match (sharpness, q.opt("per_sample_lambda_max")) {
        (Some(a), Some(l)) if a.has_upper() && l.has_upper() => Some(t5::SufficientEvidence {
            sharpness: a,
            per_sample_max: l,
        }),
        _ => None,
    };
    let (bracket, reason) = exact_route_bracket(ctx, q);
    let same_run_diag = |name: &str| ctx.same_run.then(|| q.opt(name)).flatten();
    let diag = t5::T5Diagnostics {
        lambda_max_q_r: same_run_diag("mean_square_rho").filter(|_| bracket.is_some()),
        lambda_min_kr: q.num("mean_square_lambda_min_kept").map(|x| x.max(0.0)),
        wme_range: same_run_diag("wme_lambda_max").filter(|_| bracket.is_some()),
        sharpness,
        trace_h: q.opt("gauss_newton_trace"),
        mean_hi_fro2: q.opt("per_sample_fro_sq_mean"),
        mean_tr_hi2: q.opt("per_sample_trace_sq_mean"),
        nonuniformity: q.opt("nonuniformity"),
        tau: q.num("mean_square_tau").filter(|_| bracket.is_some()),
        rank: q
            .num("mean_square_rank")
            .filter(|_| bracket.is_some())
            .map(|r| r as usize),
        discarded_mass: q
            .num("mean_square_discarded_mass")
            .filter(|_| bracket.is_some())
            .map(|x| x.max(0.0)),
    };
    let (model, assumed) = residual_info(q);
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
        && let (Some(r), Some(full)) = (q.num("mean_square_rank"), q.num("gauss_newton_rank"))
        && r < full
    {
        v.notes.push(format!(
            "The λ_max(𝒟̃) bracket was computed on the top {r} of the {full} eigenpairs of K; the \
             proven truncation allowance (1−p)λ_d + 4pω of T5(f) (with the rounding-of-K allowance: \
             {:.4e}) is included in its upper side (--t5-rank raises r).",
            q.0.get("mean_square_dtilde_lambda_max").map_or(0.0, |x| x.tol)
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
fn build_minimum(ctx: &Context, q: &Q<'_>) -> R<Verdict> {
    let ev = residual_evidence(q.0);
    let input = MinimumInput {
        curvature: ctx.curvature,
        lambda_min: q
            .0
            .get("hessian_lambda_min_upper")
            .filter(|x| x.kind == Kind::Upper)
            .map(to_value),
        // Sizes use the rigorous upper side; "certified" needs H = G proven (bounds `residual`).
        max_abs_residual: ev.max_abs.map(|_| ev.upper()),
        hessian_is_gauss_newton: ev.hessian_is_gauss_newton(),
    };
    Ok(minimum::check(&input)?)
}

/// The certified λ_max(𝒟̃) bracket of T5(f) when the quantities hold one for this batch model,
/// else `None` with the reason it is not used.
fn exact_route_bracket(ctx: &Context, q: &Q<'_>) -> (Option<Value>, Option<String>) {
    let bracket = q.bracket(
        "mean_square_dtilde_lambda_max",
        "mean_square_dtilde_lambda_max_lower",
    );
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
    let b = q.num("mean_square_batch");
    let wr = q.num("mean_square_with_replacement").map(|x| x != 0.0);
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

/// The mean-square stability hypothesis that T3, T6, T7 and T8 borrow: T5's stability check when
/// T5 was computed; but whenever T4's GD condition is **violated** (certified first-moment
/// instability, λ_max > 2/η), mean-square stability is refuted too, whatever T5 could decide
/// (‖E u_t‖² ≤ E‖u_t‖², and η*_2 ≤ η_GD* by THEORY T5g's Σ = vvᵀ test): at the operator path,
/// where T5 is not computed, and where a truncated T5 bracket was inconclusive. `None`: assumed.
fn mean_square_stability(t4: &R<Verdict>, t5: &R<Verdict>) -> Option<Check> {
    let from_t5 = t5.as_ref().ok().and_then(|v| v.check("stability").cloned());
    if from_t5
        .as_ref()
        .is_some_and(|c| c.status == Status::Violated)
    {
        return from_t5;
    }
    let gd = t4.as_ref().ok().and_then(|v| v.check("gd_condition"));
    match gd {
        Some(c) if c.status == Status::Violated => Some(Check {
            name: "stability".into(),
            statement: "refuted by T4's violated GD condition η·λ_max ≤ 2 (certified \
                        first-moment instability), since η*_2 ≤ η_GD* = 2/λ_max (THEORY T5g)"
                .into(),
            ..c.clone()
        }),
        _ => from_t5,
    }
}

// ------------------------------------------------------------------------------------------
// T6 — T7: k-th moments and Sobolev bounds (one verdict per theorem, merged over k).
// ------------------------------------------------------------------------------------------

/// The mean-square stability check ([`mean_square_stability`]: T5's, or T4's refutation) as the
/// k-th moment stability hypothesis of T6/T7/T8: for k = 2 it is that check itself; for k ≥ 4 a
/// *violation* refutes k-th moment stability too (E‖u‖^k ≥ (E‖u‖²)^{k/2}, so η*_k ≤ η*_2,
/// THEORY T6), while a certified or inconclusive one says nothing about k ≥ 4 (None: assumed).
fn k_stability(k: u32, stability: Option<&Check>) -> Option<Check> {
    let c = stability?.clone();
    if k == 2 {
        return Some(Check {
            statement: format!("mean-square (k = 2) stability at (η, B): {}", c.statement),
            ..c
        });
    }
    (c.status == Status::Violated).then(|| Check {
        statement: format!(
            "{k}-th moment stability at (η, B) fails because mean-square stability fails ({}) \
             and η*_{k} ≤ η*_2 (THEORY T6)",
            c.statement
        ),
        ..c
    })
}

/// T6 for every k: per-sample λ_i ≤ β_k (all λ_i from the pipeline, or max_i λ_i from
/// `per_sample_lambda_max`), the directional tests (pipeline, or the documented
/// `k_moment_directional_max_k{k}`), the moment corollary.
fn build_t6(
    ctx: &Context,
    q: &Q<'_>,
    extras: Option<&Extras<'_>>,
    stability: Option<&Check>,
) -> R<Verdict> {
    let lmax = q.q("per_sample_lambda_max")?;
    let n = ctx.batch.n;
    let (lambdas, rel) = match extras {
        // t6 puts the tol rel·max_i λ_i on max_i λ_i: the per-sample |W| backward bound
        // (PerSampleStats::param_sq_err, Weyl) relative to that max, not the a-priori 2γ_K.
        Some(e) => {
            let st = &e.stats;
            let lm = st.lambda.iter().copied().fold(0.0, f64::max);
            let err = (0..st.len()).fold(0.0f64, |m, i| m.max(st.param_sq_err(i)));
            let rel = if lm > 0.0 {
                crate::quantity::round_up(err / lm * (1.0 + f64::EPSILON))
            } else {
                0.0 // no sample (λ_i ≥ ‖h_{L−1}‖² + 1 > 0 otherwise)
            };
            (st.lambda.clone(), rel)
        }
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
            None => {
                q.0.get(&format!("k_moment_directional_max_k{k}"))
                    .map(|d| {
                        vec![DirectionalResult {
                            sample: q
                                .num(&format!("k_moment_directional_argmax_k{k}"))
                                .unwrap_or(0.0) as usize,
                            value: to_value(d),
                        }]
                    })
                    .unwrap_or_default()
            }
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

/// Replace the left side of the hypothesis `name` (relation ≤) by `lhs` and recompute its
/// status and margins.
fn rekind_lhs(checks: &mut [Check], name: &str, lhs: Value) {
    for c in checks.iter_mut().filter(|c| c.name == name) {
        if let Some(rhs) = c.rhs {
            *c = Check::le(c.name.clone(), c.statement.clone(), lhs, rhs);
        }
    }
}

/// T6 on a document's max_i λ_i that is not exact: the per-sample test and the moment corollary
/// with the kind of `lmax` (an estimate gives `estimated`, a lower bound never certifies).
fn rekind_t6(v: &mut Verdict, lmax: Value, k: u32) {
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
fn build_t7(ctx: &Context, q: &Q<'_>, stability: Option<&Check>) -> R<Verdict> {
    let w = q.upper("first_layer_spectral_norm")?;
    let min_x = q.val("input_norm_min")?;
    let interpolation = interpolation_check(q);
    // N_2k(W) ≤ rowsum^{1/2k}·colsum^{1−1/2k} from the upper sides of the measured sums (their
    // rounding tol included); a sum that is not a rigorous upper bound leaves (e) uncomputed.
    let n_q = |k: u32| -> Option<Value> {
        let r = q.upper("first_layer_max_row_sum").ok()?;
        let c = q.upper("first_layer_max_col_sum").ok()?;
        t2::n_q_bound(r, c, 2 * k).ok().map(|v| v.only_upper())
    };
    let mut parts = Vec::new();
    for &k in &ctx.ks {
        let measured = t7::T7Measured {
            max_jx_spectral: q.opt("input_grad_spectral_max"),
            max_jx_fro_times_x: q.opt("input_grad_weighted_max"),
            sobolev: q.opt(&format!("input_grad_moment_k{k}")),
            sobolev_weighted: q.opt(&format!("input_grad_weighted_moment_k{k}")),
            sobolev_4: q.opt("input_grad_moment_k2"),
            sobolev_4_weighted: q.opt("input_grad_weighted_moment_k2"),
            order2_weighted: q.opt("input_grad_weighted_mean_sq"),
            mean_tr_hi2: q.opt("per_sample_trace_sq_mean"),
            trace_h: q.opt("gauss_newton_trace"),
            g_x: q.opt(&format!("input_grad_elementwise_k{k}")),
            g_w: q.opt(&format!("param_grad_elementwise_k{k}")),
            n_2k: n_q(k),
            min_x_2k: q.opt(&format!("input_lq_norm_min_k{k}")),
        };
        let input = t7::T7Input {
            eta: ctx.eta,
            batch: ctx.batch,
            k,
            outputs: ctx.outputs,
            w_spectral: w,
            min_x_norm: min_x,
            mean_x_norm: q.num("input_norm_mean"),
            measured,
            k_stability: k_stability(k, stability),
            interpolation: Some(interpolation.clone()),
        };
        parts.push((k, t7::check(&input)?));
    }
    Ok(merge_by_k("T7", parts))
}

// ------------------------------------------------------------------------------------------
// T8 — T10: robustness (certify only).
// ------------------------------------------------------------------------------------------

fn upper_of(q: &Quantity) -> Value {
    Value::upper_bound(q.value, q.tol)
}

/// T9(c) per point with the bounds crate's rule: every rigorous gap exceeds ε·min(√2L, L^{(y,c)}).
fn classification_flags(ctx: &Context, r: &Robust) -> Vec<bool> {
    let eps = ctx.epsilon.unwrap_or(0.0);
    r.certs
        .points
        .iter()
        .zip(t9_points(r))
        .map(|(_, p)| t9::classification_certified(eps, p.lipschitz, &p.pairs))
        .collect()
}

fn t9_points(r: &Robust) -> Vec<T9Point> {
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
fn build_t8(
    ctx: &Context,
    q: &Q<'_>,
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
    let theory = T8Theory {
        w_spectral: q.upper("first_layer_spectral_norm")?,
        beta_k: t6::beta_k(ctx.eta, &ctx.batch, k)?,
        min_x_norm: q.val("input_norm_min")?,
        k_stability: k_stability(k, stability),
    };
    let input = T8Input {
        epsilon: eps,
        epsilon_y: ctx.epsilon_y,
        points,
        weights: None,
        k: Some(k),
        theory: Some(theory),
        coverage: r.coverage,
        failure: None,
        mean_x_norm: q.num("input_norm_mean"),
    };
    let mut v = t8::check(&input)?;
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
fn best_margin_level(
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
fn build_t9(ctx: &Context, r: &Robust) -> R<Verdict> {
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
fn build_t10(ctx: &Context, r: &Robust) -> R<Verdict> {
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

// ------------------------------------------------------------------------------------------
// Merging the per-k verdicts of T6 and T7 into one verdict per theorem.
// ------------------------------------------------------------------------------------------

/// Items identical for every k are kept once under their name; the others are kept for each k
/// under `name_k{k}`. Notes are concatenated without duplicates.
fn merge_by_k(id: &str, parts: Vec<(u32, Verdict)>) -> Verdict {
    let Some(first) = parts.first() else {
        return Verdict::new(id, "");
    };
    if parts.len() == 1 {
        return parts
            .into_iter()
            .map(|(_, v)| v)
            .next()
            .unwrap_or_else(|| Verdict::new(id, ""));
    }
    let mut out = Verdict::new(id, &first.1.title);
    out.hypotheses = merge_items(&parts, |v| &v.hypotheses, |c| &c.name, |c, n| c.name = n);
    out.diagnostics = merge_items(&parts, |v| &v.diagnostics, |c| &c.name, |c, n| c.name = n);
    out.conclusions = merge_items(&parts, |v| &v.conclusions, |c| &c.name, |c, n| c.name = n);
    for (_, v) in &parts {
        for note in &v.notes {
            if !out.notes.contains(note) {
                out.notes.push(note.clone());
            }
        }
    }
    out
}

fn merge_items<T: Clone + PartialEq>(
    parts: &[(u32, Verdict)],
    items: impl Fn(&Verdict) -> &Vec<T>,
    name: impl Fn(&T) -> &String,
    rename: impl Fn(&mut T, String),
) -> Vec<T> {
    let mut names: Vec<String> = Vec::new();
    for (_, v) in parts {
        for it in items(v) {
            if !names.contains(name(it)) {
                names.push(name(it).clone());
            }
        }
    }
    let mut out = Vec::new();
    for nm in names {
        let found: Vec<(u32, &T)> = parts
            .iter()
            .filter_map(|(k, v)| {
                items(v)
                    .iter()
                    .find(|it| *name(it) == nm)
                    .map(|it| (*k, it))
            })
            .collect();
        let shared = found.len() == parts.len() && found.iter().all(|(_, it)| *it == found[0].1);
        if shared {
            out.push(found[0].1.clone());
        } else {
            for (k, it) in found {
                let mut it = it.clone();
                rename(&mut it, format!("{nm}_k{k}"));
                out.push(it);
            }
        }
    }
    out
}

/// Public conclusion helper (the bounds crate's own is crate-private).
trait ConcludePublic {
    fn conclude_public(&mut self, name: &str, statement: &str, value: Value);
}

impl ConcludePublic for Verdict {
    fn conclude_public(&mut self, name: &str, statement: &str, value: Value) {
        self.conclusions
            .push(flatcert_bounds::Conclusion::new(name, statement, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict_with(name: &str, x: f64) -> Verdict {
        let mut v = Verdict::new("T6", "t");
        v.hypotheses.push(Check::le(
            name,
            "s",
            Value::exact(x, 0.0),
            Value::exact(1.0, 0.0),
        ));
        v.hypotheses
            .push(Check::assumed("same", "identical for every k", None));
        v
    }

    #[test]
    fn merge_keeps_shared_items_once_and_suffixes_the_rest() {
        let m = merge_by_k(
            "T6",
            vec![
                (2, verdict_with("per_sample", 0.5)),
                (4, verdict_with("per_sample", 2.0)),
            ],
        );
        let names: Vec<&str> = m.hypotheses.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["per_sample_k2", "per_sample_k4", "same"]);
        assert_eq!(m.status(), Status::Violated);
    }

    /// Issue 12 item 3: with a residual and a certified negative eigenvalue of H, the failure is
    /// named `Min` (θ* is not a minimum), T4's GD condition stays certified, and
    /// `--curvature gauss-newton` turns the refutation into an assumed hypothesis with its size.
    #[test]
    fn a_negative_hessian_eigenvalue_fails_min_not_t4() {
        use crate::certify::summary::summarize;
        let mut map = QuantityMap::new();
        map.insert("gauss_newton_lambda_max".into(), Quantity::upper(1.0, 0.0));
        map.insert(
            "gauss_newton_lambda_max_lower".into(),
            Quantity::lower(0.9, 0.0),
        );
        map.insert("max_abs_residual".into(), Quantity::exact(0.1, 0.0));
        map.insert(
            "hessian_lambda_min_upper".into(),
            Quantity::upper(-0.5, 0.0),
        );
        let mut ctx = Context {
            eta: 0.1,
            batch: BatchModel::new(8, 2, Sampling::WithoutReplacement).unwrap(),
            outputs: 1,
            ks: vec![2],
            activation: Activation::Tanh,
            epsilon: None,
            epsilon_y: 0.0,
            tau: None,
            same_run: true,
            t5_reason: None,
            robust_reason: None,
            curvature: Curvature::Exact,
            kinks_strict: false,
        };
        let vs = evaluate(&ctx, &map, None).unwrap();
        let t4 = vs.verdict("T4").unwrap();
        assert_eq!(t4.status(), Status::Certified, "{t4:?}");
        assert!(t4.check("psd").is_none());
        let min = vs.verdict(minimum::ID).unwrap();
        assert_eq!(min.status(), Status::Violated);
        let s = summarize(&vs, None, String::new());
        assert_eq!(s.exit_code, 1);
        let first = s.first_open().unwrap();
        assert!(first.starts_with("Min.minimum violated"), "{first}");
        let table = crate::render::render(&[], &vs, &s, crate::render::Style::default());
        assert!(
            table.contains(&format!("{}  —  VIOLATED", minimum::TITLE)),
            "{table}"
        );
        assert!(
            table.contains("First moment (the GD condition)  —  CERTIFIED"),
            "{table}"
        );

        ctx.curvature = Curvature::GaussNewton;
        let vs = evaluate(&ctx, &map, None).unwrap();
        let s = summarize(&vs, None, String::new());
        let min = vs.verdict(minimum::ID).unwrap();
        assert_eq!(min.status(), Status::Assumed);
        let a = s
            .assumed
            .iter()
            .find(|h| h.name == "gauss_newton_curvature")
            .unwrap();
        assert_eq!(a.size, Some(0.5));
        assert_eq!(s.diagnostic_violations[0].theorem, minimum::ID);
        // T5 is missing from this map, so only T4 and Min decide here; nothing is open.
        assert!(s.violated.is_empty() && s.inconclusive.is_empty(), "{s:?}");
    }

    #[test]
    fn brackets_become_intervals() {
        let mut map = QuantityMap::new();
        map.insert("a".into(), Quantity::upper(2.0, 0.0));
        map.insert("a_lower".into(), Quantity::lower(1.0, 0.0));
        let q = Q(&map);
        let b = q.bracket("a", "a_lower").unwrap();
        assert_eq!((b.lower(), b.upper()), (1.0, 2.0));
        map.remove("a");
        let q = Q(&map);
        assert_eq!(
            q.bracket("a", "a_lower").unwrap().kind,
            flatcert_bounds::Kind::Lower
        );
        assert!(matches!(q.val("a"), Err(Fail::Missing(m)) if m == "missing a"));
    }
}
