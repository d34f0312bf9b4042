//! Measured numbers → typed inputs of the bounds crate → verdicts T1 … T10.
//!
//! T1, T3, T4, T5 and T7 are built **only from the typed [`Evidence`]**, which the bound
//! calculator (`flatcert bound`) reads from a document's map of canonical names
//! ([`Evidence::from_map`]), so that it reproduces `certify` exactly. T6
//! uses the per-sample λ_i and the directional tests when the pipeline has them (else the
//! documented maxima); T2 needs per-sample norms and T8–T10 the network itself, so they are
//! computed only by `certify` ([`Extras`]).
//!
//! Kinds (THEORY §3): every quantity keeps its kind (`exact` with its tol, `upper`, `lower`,
//! `estimate`); two-sided brackets (λ_max(G), λ_max(𝒟̃)) become `interval`s from their upper and
//! lower quantities; ‖W‖₂ enters only through its rigorous upper bound.
//!
//! One file per theorem group: `t1_t3` (first-layer identities), `t4_t5` (T4, `Min`, T5),
//! `t6_t7` (k-th moments, Sobolev), `t8_t10` (robustness); this module holds the context,
//! the shared readers of the evidence and the merging of per-k verdicts.

mod radial;
mod t1_t3;
mod t4_t5;
mod t6_t7;
mod t8_t10;

use flatcert_bounds::minimum::{self, Curvature};
use flatcert_bounds::residual::ResidualEvidence;
use flatcert_bounds::t6::DirectionalResult;
use flatcert_bounds::t8::Coverage;
use flatcert_bounds::{BatchModel, BoundsError, Check, Status, Value, Verdict};

use t1_t3::{build_t1, build_t2, build_t3};
use t4_t5::{build_minimum, build_t4, build_t5, mean_square_stability};
use t6_t7::{build_t6, build_t7};
use t8_t10::{build_t8, build_t9, build_t10};

use super::evidence::{Evidence, Slot};
use super::verdicts::{VerdictEntry, Verdicts};
use crate::measure::per_sample::PerSampleStats;
use crate::measure::robustness::{PointCertificates, Task};
use crate::model::Activation;
use crate::quantity::{Kind, Quantity};

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
    /// The kind of network: dense (the full forms of T1–T3, T7) or layered (T1b and the radial
    /// forms of THEORY §7(b)).
    pub network: Network,
}

/// What kind of first layer the theorems see (THEORY §7).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Network {
    /// A dense MLP: T1a/T1b, T2, T3 and T7 in full.
    #[default]
    Dense,
    /// A layered network whose first layer is bilinear but not dense (a convolution): T1b and
    /// the radial T2, T3, T7 of §7(b).
    Layered {
        /// Per-sample ‖J_x(x_i)x_i‖ and ‖J_W(x_i)‖_F for the radial T2 (certify only).
        samples: Vec<flatcert_bounds::radial::RadialSample>,
        /// Their relative a-priori rounding.
        rel_tol: f64,
    },
}

/// T5(f)'s rounding-of-K allowance (issue 15 item 5): an a-priori estimate inside the certified
/// λ_max(𝒟̃) bracket, so an assumed hypothesis with its size (`mean_square_rounding_allowance`).
fn rounding_of_k_check(ev: &Evidence) -> Option<Check> {
    let a = ev.t5.rounding_allowance.as_ref()?;
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
pub fn kink_check(ctx: &Context, ev: &Evidence) -> Option<Check> {
    let k = ev
        .residual
        .near_kink_units
        .as_ref()
        .filter(|k| k.value > 0.0)?;
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

/// The smooth-σ backward-rounding hypothesis (THEORY §3 item 1, "Otherwise"; issues 12/15):
/// for tanh, sigmoid and softplus the tolerances of the Jacobian quantities (λ_i, tr G, K, the
/// per-sample and input-gradient norms) are a-priori estimates, since the |W| backward bound is
/// evaluated at the computed σ′(ẑ) without σ′(ẑ) − σ′(z). Assumed, with the relative size 2γ_K;
/// `None` for piecewise-linear activations (size 0), where that bound is rigorous given the
/// activation pattern.
pub fn smooth_backward_check(ev: &Evidence) -> Option<Check> {
    let size = ev
        .residual
        .smooth_backward_rounding
        .as_ref()
        .filter(|s| s.value > 0.0)?;
    Some(Check::assumed(
        "backward_rounding",
        format!(
            "assumed: for a smooth activation the rounding of the Jacobian quantities (λ_i, tr G, \
             K, the per-sample and input-gradient norms) is within the a-priori relative estimate \
             2γ_K = {:.3e}; the |W| backward bound is evaluated at the computed σ′(ẑ), without \
             σ′(ẑ) − σ′(z) and the libm error of σ′ (THEORY §3 item 1)",
            size.value
        ),
        Some(size.value),
    ))
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
    /// The dense engine's per-sample statistics (T2); `None` for a layered network.
    pub stats: Option<&'a PerSampleStats>,
    /// λ_i = λ_max(J_iᵀJ_i) of every training sample (T6(e)).
    pub lambdas: &'a [f64],
    /// The relative error of max_i λ_i that T6 puts on it (the engine's per-sample bound).
    pub lambda_rel: f64,
    /// T6(d) directional test values per even k (empty without the Gram path).
    pub directional: &'a [(u32, Vec<DirectionalResult>)],
    /// T8–T10 evidence, if ε was given.
    pub robust: Option<&'a Robust>,
}

/// The relative error T6 puts on max_i λ_i: the largest per-sample error bound `err(i)` of the
/// engine (the dense |W| backward bound, `PerSampleStats::param_sq_err`, with Weyl; or a
/// layered network's a-priori estimate) relative to that max, rounded up.
pub fn lambda_rel(lambdas: &[f64], err: impl Fn(usize) -> f64) -> f64 {
    let lm = lambdas.iter().copied().fold(0.0, f64::max);
    let e = (0..lambdas.len()).fold(0.0f64, |m, i| m.max(err(i)));
    if lm > 0.0 {
        crate::quantity::round_up(e / lm * (1.0 + f64::EPSILON))
    } else {
        0.0 // no sample (λ_i ≥ ‖h_{L−1}‖² + 1 > 0 otherwise)
    }
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
        // A Quantity is never an interval (refused when read); were one built in code, an
        // estimate is the reading that can never certify.
        Kind::Estimate | Kind::Interval => Value::estimate(q.value, q.tol),
    };
    Value {
        confidence: q.confidence,
        ..v
    }
}

/// A measured quantity that the theorem needs, or "missing <name>".
fn req<'a>(slot: &'a Slot, name: &str) -> R<&'a Quantity> {
    match slot {
        Some(q) => Ok(q),
        None => missing(format!("missing {name}")),
    }
}

/// [`req`] as a bounds-crate value of the same kind.
fn val(slot: &Slot, name: &str) -> R<Value> {
    req(slot, name).map(to_value)
}

fn opt(slot: &Slot) -> Option<Value> {
    slot.as_ref().map(to_value)
}

fn num(slot: &Slot) -> Option<f64> {
    slot.as_ref().map(|q| q.value)
}

/// The rigorous upper bound `slot` (kind upper or exact), as an upper-bound value.
fn upper(slot: &Slot, name: &str) -> R<Value> {
    let q = req(slot, name)?;
    match q.kind {
        Kind::Upper | Kind::Exact => Ok(to_value(q).only_upper()),
        _ => missing(format!("{name} is not an upper bound (kind {:?})", q.kind)),
    }
}

/// λ_max(G) with every rigorous side known ([`super::evidence::OperatorEvidence::upper_side`],
/// `lower_side`): the deterministic or randomized upper side (with its confidence, THEORY §3
/// item 8) intersected with the Lanczos lower side.
fn sharpness(ev: &Evidence) -> Option<Value> {
    let up = ev.operator.upper_side().map(to_value);
    let lo = ev.operator.lower_side().map(to_value);
    match (lo, up) {
        (Some(l), Some(u)) => Some(u.intersect(l)),
        (x, None) | (None, x) => x,
    }
}

/// A bracket from an upper-kind quantity and a lower-kind quantity (either may be absent; a side
/// of another kind is ignored).
fn bracket(upper: &Slot, lower: &Slot) -> Option<Value> {
    let up = upper.as_ref().filter(|q| q.kind == Kind::Upper);
    let lo = lower.as_ref().filter(|q| q.kind == Kind::Lower);
    match (lo, up) {
        (Some(l), Some(u)) if l.value <= u.value => Some(Value::interval(l.value, u.value)),
        (Some(l), Some(u)) => Some(Value::interval(u.value, l.value)),
        (Some(l), None) => Some(Value::lower_bound(l.value, l.tol)),
        (None, Some(u)) => Some(Value::upper_bound(u.value, u.tol)),
        (None, None) => None,
    }
}

/// Evaluate T1 … T10. Missing inputs become `not_computed` entries; a bounds-crate error is
/// returned with the theorem id (a bug in `certify`, a bad document in `bound`).
pub fn evaluate(
    ctx: &Context,
    ev: &Evidence,
    extras: Option<&Extras<'_>>,
) -> std::result::Result<Verdicts, (String, BoundsError)> {
    let mut out = Verdicts::default();
    let kinks = kink_check(ctx, ev);
    let smooth = if matches!(ctx.network, Network::Layered { .. }) {
        radial::backward_check(ev)
    } else {
        smooth_backward_check(ev)
    };
    let mut put = |id: &str, r: R<Verdict>| -> std::result::Result<(), (String, BoundsError)> {
        let entry = match r {
            Ok(mut v) => {
                if let Some(k) = kinks.as_ref().filter(|_| JACOBIAN_THEOREMS.contains(&id)) {
                    v.hypotheses.push(k.clone());
                }
                if let Some(s) = smooth.as_ref().filter(|_| JACOBIAN_THEOREMS.contains(&id)) {
                    v.hypotheses.push(s.clone());
                }
                // Only where the exact bracket decided (not T5(i): then `eta_star_route` is a
                // diagnostic and the bracket's allowance does not enter the verdict).
                if id == "T5"
                    && let Some(c) = rounding_of_k_check(ev)
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
    let layered = matches!(ctx.network, Network::Layered { .. });
    if layered {
        put("T1", radial::build_t1(ctx, ev))?;
        put("T2", radial::build_t2(ctx, ev))?;
    } else {
        put("T1", build_t1(ctx, ev))?;
        put("T2", build_t2(ev, extras))?;
    }
    let t4 = build_t4(ctx, ev);
    let mut t5 = build_t5(ctx, ev);
    let stability = mean_square_stability(&t4, &t5);
    if let (Err(Fail::Missing(reason)), Some(c)) = (&mut t5, &stability)
        && c.status == Status::Violated
    {
        reason.push_str(
            "; T4's violation already refutes mean-square stability at (η, B) (η*_2 ≤ η_GD*, \
             THEORY T5g)",
        );
    }
    if layered {
        put("T3", radial::build_t3(ctx, ev, stability.as_ref()))?;
    } else {
        put("T3", build_t3(ctx, ev, stability.as_ref()))?;
    }
    put("T4", t4)?;
    put(minimum::ID, build_minimum(ctx, ev))?;
    put("T5", t5)?;
    put("T6", build_t6(ctx, ev, extras, stability.as_ref()))?;
    if layered {
        put("T7", radial::build_t7(ctx, ev))?;
    } else {
        put("T7", build_t7(ctx, ev, stability.as_ref()))?;
    }
    let robust = robust_or_reason(ctx, extras);
    put(
        "T8",
        robust
            .clone()
            .and_then(|r| build_t8(ctx, ev, r, extras, stability.as_ref())),
    )?;
    put("T9", robust.clone().and_then(|r| build_t9(ctx, r)))?;
    put("T10", robust.and_then(|r| build_t10(ctx, r)))?;
    Ok(out)
}

/// T4 and T5 alone from a quantity map (`None` where not computable): what `flatcert stability`
/// evaluates per batch size at scale, with the same rules as [`evaluate`].
pub fn stability_verdicts(
    ctx: &Context,
    ev: &Evidence,
) -> std::result::Result<(Option<Verdict>, Option<Verdict>), BoundsError> {
    let keep = |r: R<Verdict>| match r {
        Ok(v) => Ok(Some(v)),
        Err(Fail::Missing(_)) => Ok(None),
        Err(Fail::Bounds(e)) => Err(e),
    };
    Ok((keep(build_t4(ctx, ev))?, keep(build_t5(ctx, ev))?))
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

/// The evidence on H = G (bounds crate rule, [`ResidualEvidence`]):
/// `max_abs_residual` with its kind and tol, and `near_kink_units` (absent: unknown, so a
/// piecewise-linear Hessian is not proven to exist).
pub fn residual_evidence(ev: &Evidence) -> ResidualEvidence {
    let kinks = ev.residual.near_kink_units.as_ref();
    ResidualEvidence {
        max_abs: opt(&ev.residual.max_abs),
        piecewise_linear: kinks.is_none_or(|k| k.value > 0.0),
        near_kink_units: kinks.map(|k| k.value.max(0.0) as usize),
    }
}

/// The interpolation hypothesis (all res_i = 0, so H_i = J_iᵀJ_i) of T3's flatness form and T7:
/// assumed with the rigorous upper bound of max|res_ic| as its size unless H = G is proven.
fn interpolation_check(ev: &Evidence) -> Check {
    residual_evidence(ev).interpolation_check()
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
    use flatcert_bounds::Sampling;

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
        let mut ev = Evidence::default();
        ev.operator.lambda_max = Some(Quantity::upper(1.0, 0.0));
        ev.operator.lambda_max_lower = Some(Quantity::lower(0.9, 0.0));
        ev.residual.max_abs = Some(Quantity::exact(0.1, 0.0));
        ev.residual.hessian_lambda_min_upper = Some(Quantity::upper(-0.5, 0.0));
        let mut ctx = Context {
            network: Network::Dense,
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
        let vs = evaluate(&ctx, &ev, None).unwrap();
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
        let vs = evaluate(&ctx, &ev, None).unwrap();
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
        let up = Some(Quantity::upper(2.0, 0.0));
        let lo = Some(Quantity::lower(1.0, 0.0));
        let b = bracket(&up, &lo).unwrap();
        assert_eq!((b.lower(), b.upper()), (1.0, 2.0));
        assert_eq!(
            bracket(&None, &lo).unwrap().kind,
            flatcert_bounds::Kind::Lower
        );
        // A side of the wrong kind is ignored.
        assert!(bracket(&lo, &up).is_none());
        assert!(matches!(val(&None, "a"), Err(Fail::Missing(m)) if m == "missing a"));
    }
}
