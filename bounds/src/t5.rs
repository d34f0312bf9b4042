//! T5 — second moment: critical learning rate η*(B) and the mean-square certificate.
//!
//! **Decision (T5f).** With lower ≤ λ_max(𝒟̃) ≤ upper (the T5(h) bracket with every allowance
//! included): certified stable iff η·upper ≤ 1, certified unstable iff η·lower > 1, inconclusive
//! otherwise; η* = 1/λ_max(𝒟̃) ∈ [1/upper, 1/lower] (+∞ when r = 0); the certified relative
//! margin is 1/(η·upper) − 1.
//!
//! **Diagnostics (T5e, g).** The necessary tests of T5(g) (vacuous, +∞, at p = 0); Wu–Ma–E's
//! λ_max(M_WME) ≤ 1 on range G (sufficient only); s ≤ 1/(η√p) (implied by the Wu–Ma–E sufficient
//! condition, never necessary); λ_max(𝒬_r) with the caveat "1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r); it
//! depends on τ" — never a stability margin.

use serde::{Deserialize, Serialize};

use crate::error::{Result, learning_rate, nonneg};
use crate::kind::{Scalar, Value};
use crate::sampling::BatchModel;
use crate::t4::ModelInfo;
use crate::verdict::{Check, Status, Verdict};

/// The caveat that must accompany λ_max(𝒬_r) (THEORY T5(e)).
pub const Q_R_CAVEAT: &str = "1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r); it depends on τ";

/// Optional diagnostic measurements for T5 (all in the theory convention).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct T5Diagnostics {
    /// λ_max(𝒬_r) (estimate or bracket).
    #[serde(default)]
    pub lambda_max_q_r: Option<Value>,
    /// λ_min(K_r), the smallest kept eigenvalue of K.
    #[serde(default)]
    pub lambda_min_kr: Option<f64>,
    /// Wu–Ma–E's λ_max(M_WME) evaluated on range G (= λ_max(𝒬_r(I_r))).
    #[serde(default)]
    pub wme_range: Option<Value>,
    /// a = λ_max(H).
    #[serde(default)]
    pub sharpness: Option<Value>,
    /// tr H.
    #[serde(default)]
    pub trace_h: Option<Value>,
    /// (1/n)Σ‖H_i‖_F².
    #[serde(default)]
    pub mean_hi_fro2: Option<Value>,
    /// (1/n)Σ(tr H_i)².
    #[serde(default)]
    pub mean_tr_hi2: Option<Value>,
    /// Wu–Ma–E non-uniformity s = √λ_max((1/n)ΣH_i² − H²).
    #[serde(default)]
    pub nonuniformity: Option<Value>,
    /// Truncation threshold τ (relative to λ_max(K)).
    #[serde(default)]
    pub tau: Option<f64>,
    /// Kept rank r.
    #[serde(default)]
    pub rank: Option<usize>,
    /// Sum of the discarded eigenvalues of K.
    #[serde(default)]
    pub discarded_mass: Option<f64>,
}

/// The numbers of T5(i), the matrix-free sufficient condition (any scale; H_i ⪰ 0, so about the
/// Gauss–Newton model with a residual).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SufficientEvidence {
    /// a = λ_max(H): its upper side is used (deterministic on the Gram path; with a confidence
    /// 1 − δ from THEORY §3 item 8 at scale).
    pub sharpness: Value,
    /// L = max_i λ_max(H_i) = max_i λ_max(J_iJ_iᵀ): its upper side is used.
    pub per_sample_max: Value,
}

/// η_suff(B) = 2/[(1−p)·a + p·L] (THEORY T5(i)): mean-square stable for every η ≤ η_suff, so
/// η*(B) ≥ η_suff(B). With [`Value`]s, evaluate it on the *upper* sides of a and L
/// ([`Value::only_upper`]) to get a rigorous lower bound of η*(B).
///
/// ```
/// use flatcert_bounds::t5::eta_suff;
/// // THEORY T5(i) example: λ_max(G) = 5.8704, L = 51.310, p = 240/(16·255).
/// let p = 240.0 / (16.0 * 255.0);
/// assert!((eta_suff(p, 5.8704, 51.310) - 0.2341).abs() < 1e-4);
/// ```
pub fn eta_suff<N: Scalar>(p: N, sharpness: N, per_sample_max: N) -> N {
    // 1 − p ≥ 0 clamped: p carries a rounding tol, and a signed factor would need both sides of
    // the bounds it multiplies (only their upper sides are known here).
    let q = Scalar::max(N::constant(1.0) - p, N::constant(0.0));
    N::constant(2.0) / (q * sharpness + p * per_sample_max)
}

/// η·[(1−p)·upper(a) + p·upper(L)] ≤ 2, T5(i)'s sufficient test, as a [`Check`]: certified ⇒
/// mean-square stable. Only its certified status means anything: a failed sufficient test proves
/// nothing, so callers never use it to refute.
pub fn sufficient_check(eta: Value, p: Value, ev: &SufficientEvidence) -> Check {
    let a = ev.sharpness.clamp_nonneg().only_upper();
    let l = ev.per_sample_max.clamp_nonneg().only_upper();
    let q = (Value::constant(1.0) - p).clamp_nonneg();
    let lhs = eta * (q * a + p * l);
    Check::le(
        "stability",
        "η·[(1−p)·λ_max(H) + p·max_i λ_max(H_i)] ≤ 2 (T5(i), sufficient: certified ⇒ mean-square \
         stable)",
        lhs,
        Value::constant(2.0),
    )
}

/// Whether a bracket [a_lower, a_upper] of a = λ_max(H) already decides every verdict it can at
/// (η, p, L = `l_upper`): T5(i) certified (η[(1−p)·a_upper + p·L] ≤ 2, which implies T4's
/// η·a ≤ 2 since L ≥ a), T4 refuted (η·a_lower > 2, which refutes T5 too), or T4 certified while
/// T5(i) can no longer certify. The stopping rule of the randomized bound of THEORY §3 item 8
/// (more products cannot change a decided verdict); the verdicts themselves come from [`check`]
/// and [`crate::t4::check`] on the final numbers. Plain floats: a stopping rule, not a verdict.
pub fn sharpness_decides(eta: f64, p: f64, l_upper: f64, a_lower: f64, a_upper: f64) -> bool {
    let need = |a: f64| eta * ((1.0 - p) * a + p * l_upper);
    let t5_certified = need(a_upper) <= 2.0;
    let t4_refuted = eta * a_lower > 2.0;
    let t4_certified = eta * a_upper <= 2.0;
    let t5_hopeless = need(a_lower) > 2.0;
    t5_certified || t4_refuted || (t4_certified && t5_hopeless)
}

/// The rigorous lower bound of λ_max(𝒟̃) that THEORY T5(g)'s necessary tests give from
/// matrix-free numbers (kind lower; 0 when nothing is known):
/// - Σ = vvᵀ at the top eigenvector of H: η*_2 ≤ η_GD* = 2/a, so λ_max(𝒟̃) ≥ lower(a)/2;
/// - Σ = I on range H: λ_max(𝒟̃) ≥ [(1−p)·lower(a)² + p·lower((1/n)Σ‖H_i‖_F²)]/(2·upper(tr H))
///   (‖H‖_F ≥ λ_max(H)).
pub fn necessary_lower(
    p: Value,
    sharpness: Option<Value>,
    mean_hi_fro2: Option<Value>,
    trace_h: Option<Value>,
) -> Value {
    let lower_of = |v: Option<Value>| {
        v.filter(|v| v.has_lower() && v.lower().is_finite())
            .map(|v| v.only_lower().clamp_nonneg())
    };
    let a = lower_of(sharpness);
    let mut best = Value::lower_bound(0.0, 0.0);
    if let Some(a) = a {
        best = Scalar::max(best, a / Value::constant(2.0));
    }
    let tr = trace_h.filter(|t| t.has_upper() && t.upper() > 0.0 && t.upper().is_finite());
    if let (Some(a), Some(fro), Some(tr)) = (a, lower_of(mean_hi_fro2), tr) {
        let one = Value::constant(1.0);
        let num = (one - p).clamp_nonneg() * a * a + p * fro;
        let sigma_i = num / (Value::constant(2.0) * tr.only_upper());
        if sigma_i.has_lower() {
            best = Scalar::max(best, sigma_i.only_lower());
        }
    }
    best
}

/// T5 input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T5Input {
    /// η (theory convention).
    pub eta: f64,
    /// (n, B, sampling): gives p.
    pub batch: BatchModel,
    /// Number of outputs C.
    pub outputs: usize,
    /// λ_max(𝒟̃) with every allowance included (T5f truncation, rounding): ideally an interval.
    /// Where the exact route of (f) was not run, a trivial `lower` 0: [`check`] adds the lower
    /// bounds of T5(g) itself ([`necessary_lower`]).
    pub lambda_max_d: Value,
    /// T5(i)'s evidence, when known: decides first (THEORY T5, "the tool decides stability by the
    /// matrix-free sufficient condition (i) first").
    #[serde(default)]
    pub sufficient: Option<SufficientEvidence>,
    /// Diagnostics.
    #[serde(default)]
    pub diagnostics: T5Diagnostics,
    /// Gauss–Newton label and residual numbers.
    #[serde(default)]
    pub model: ModelInfo,
}

/// η*(B) = 1/λ_max(𝒟̃) (T5f); +∞ when λ_max(𝒟̃) = 0 (r = 0). With a bracket [lo, hi] of
/// λ_max(𝒟̃) the [`Value`] result is the bracket [1/hi, 1/lo].
///
/// ```
/// use flatcert_bounds::t5::eta_star;
/// assert!((eta_star(4.1652417631) - 0.2400821025).abs() < 1e-10);
/// ```
pub fn eta_star<N: Scalar>(lambda_max_d: N) -> N {
    N::constant(1.0) / lambda_max_d
}

/// Relative margin η*/η − 1 = 1/(η·λ_max(𝒟̃)) − 1. Its lower side, 1/(η·upper) − 1, is the
/// certified margin (T5f).
pub fn relative_margin<N: Scalar>(eta: N, lambda_max_d: N) -> N {
    N::constant(1.0) / (eta * lambda_max_d) - N::constant(1.0)
}

/// The mean-square verdict at η (T5f): the one definition used by `stability`, `simulate`, the
/// truncation study and the Gram-path quantities, which have the bracket of λ_max(𝒟̃) but no
/// [`T5Input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsStatus {
    /// η·upper(λ_max(𝒟̃)) ≤ 1: certified mean-square stable.
    CertifiedStable,
    /// η·lower(λ_max(𝒟̃)) > 1: certified mean-square unstable.
    CertifiedUnstable,
    /// The bracket straddles 1/η.
    Inconclusive,
}

impl MsStatus {
    /// `certified stable`, `certified unstable` or `inconclusive` (the words of the stability and
    /// simulate reports).
    pub fn name(&self) -> &'static str {
        match self {
            MsStatus::CertifiedStable => "certified stable",
            MsStatus::CertifiedUnstable => "certified unstable",
            MsStatus::Inconclusive => "inconclusive",
        }
    }

    /// The mean-square verdict of a [`Check`] status of "η·λ_max(𝒟̃) ≤ 1" (certified ⇒ stable,
    /// violated ⇒ unstable, anything else ⇒ inconclusive).
    pub fn from_status(status: Status) -> MsStatus {
        match status {
            Status::Certified => MsStatus::CertifiedStable,
            Status::Violated => MsStatus::CertifiedUnstable,
            _ => MsStatus::Inconclusive,
        }
    }
}

/// T5(f)'s decision on a bracket [lower, upper] of λ_max(𝒟̃) (every allowance included) at η, with
/// the rule of [`check`] (outward-rounded η·λ_max(𝒟̃) ≤ 1): `stable` iff η·upper ≤ 1, `unstable`
/// iff η·lower > 1, else `inconclusive`. Also returns the certified relative margin
/// 1/(η·upper) − 1 (the lower side of [`relative_margin`], a lower bound of η*/η − 1; +∞ when
/// upper = 0, i.e. r = 0).
///
/// ```
/// use flatcert_bounds::t5::{ms_status, MsStatus};
/// // THEORY §5, B = 1: λ_max(𝒟̃) ∈ [2.3077922965, 4.5257492320].
/// assert_eq!(ms_status(2.3077922965, 4.5257492320, 0.22).0, MsStatus::CertifiedStable);
/// assert_eq!(ms_status(2.3077922965, 4.5257492320, 0.3).0, MsStatus::Inconclusive);
/// assert_eq!(ms_status(2.3077922965, 4.5257492320, 0.5).0, MsStatus::CertifiedUnstable);
/// assert_eq!(ms_status(0.0, 0.0, 10.0), (MsStatus::CertifiedStable, f64::INFINITY)); // r = 0
/// ```
pub fn ms_status(d_lower: f64, d_upper: f64, eta: f64) -> (MsStatus, f64) {
    // λ_max(𝒟̃) ≥ 0 (𝒟̃ maps PSD to PSD): a lower side below 0 says nothing more than 0, as in
    // [`check`].
    let d = Value::interval(d_lower, d_upper).clamp_nonneg();
    let eta = Value::constant(eta);
    let c = Check::le("stability", "η·λ_max(𝒟̃) ≤ 1", eta * d, Value::constant(1.0));
    (
        MsStatus::from_status(c.status),
        relative_margin(eta, d).lower(),
    )
}

/// η*(B) = 1/λ_max(𝒟̃) from a bracket [lower, upper] of λ_max(𝒟̃), rounded outward: the
/// certified lower end 1/upper and the upper end 1/lower (None where infinite: lower = 0, or
/// upper = 0 for the lower end).
///
/// ```
/// use flatcert_bounds::t5::eta_star_bracket;
/// let (lo, hi) = eta_star_bracket(4.0, 8.0);
/// assert!(lo == Some(0.125) && hi == Some(0.25)); // exact in binary
/// let (lo, hi) = eta_star_bracket(4.0, 5.0);
/// assert!(lo.unwrap() < 0.2 && hi == Some(0.25)); // 1/5 is not a float: rounded down
/// assert_eq!(eta_star_bracket(0.0, 5.0).1, None);
/// ```
pub fn eta_star_bracket(d_lower: f64, d_upper: f64) -> (Option<f64>, Option<f64>) {
    let e = eta_star(Value::interval(d_lower, d_upper).clamp_nonneg());
    let finite = |x: f64| x.is_finite().then_some(x);
    (finite(e.lower()), finite(e.upper()))
}

/// 2ηλ_min(K_r): by T5(e), 1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r) (the [`Q_R_CAVEAT`] number).
pub fn q_r_floor_gap<N: Scalar>(eta: N, lambda_min_kr: N) -> N {
    N::constant(2.0) * eta * lambda_min_kr
}

/// 2C/(ηp): the T5(g) bound on tr H (+∞ at p = 0).
pub fn trace_bound<N: Scalar>(outputs: N, eta: N, p: N) -> N {
    N::constant(2.0) * outputs / (eta * p)
}

/// 2·tr H/(ηp): the T5(g) bound on (1/n)Σ‖H_i‖_F² (+∞ at p = 0).
pub fn fro_trace_bound<N: Scalar>(trace_h: N, eta: N, p: N) -> N {
    N::constant(2.0) * trace_h / (eta * p)
}

/// 2C·tr H/(ηp): the T5(g) bound on (1/n)Σ(tr H_i)² (+∞ at p = 0).
pub fn trace_sq_trace_bound<N: Scalar>(outputs: N, trace_h: N, eta: N, p: N) -> N {
    N::constant(2.0) * outputs * trace_h / (eta * p)
}

/// 1/(η√p): the Wu–Ma–E non-uniformity bound (+∞ at p = 0). Implied by their sufficient
/// condition; **not necessary** in dimension > 1.
pub fn nonuniformity_bound<N: Scalar>(eta: N, p: N) -> N {
    N::constant(1.0) / (eta * p.sqrt())
}

/// T5 verdict: the η* route decides; (g), Wu–Ma–E and 𝒬_r are diagnostics.
///
/// ```
/// use flatcert_bounds::{BatchModel, Sampling, Status, Value};
/// use flatcert_bounds::t5::{check, T5Input};
/// // THEORY §5, B = 1, η = 0.22, cone bracket at X_0 = I.
/// let input = T5Input {
///     eta: 0.22,
///     batch: BatchModel::new(3, 1, Sampling::WithoutReplacement).unwrap(),
///     outputs: 1,
///     lambda_max_d: Value::interval(2.3077922965, 4.5257492320),
///     sufficient: None,
///     diagnostics: Default::default(),
///     model: Default::default(),
/// };
/// let v = check(&input).unwrap();
/// assert_eq!(v.status(), Status::Certified); // η·upper = 0.995665 ≤ 1
/// ```
pub fn check(input: &T5Input) -> Result<Verdict> {
    let eta_f = learning_rate(input.eta)?;
    input.batch.validate()?;
    input.lambda_max_d.validate_nonneg("λ_max(𝒟̃)")?;
    let eta = Value::constant(eta_f);
    let p = input.batch.p_value();
    let dg = &input.diagnostics;
    // (f) bracket ∩ the necessary lower bounds of (g).
    let g = necessary_lower(p, dg.sharpness, dg.mean_hi_fro2, dg.trace_h);
    let d = if g.lower() > 0.0 {
        input.lambda_max_d.clamp_nonneg().intersect(g)
    } else {
        input.lambda_max_d.clamp_nonneg()
    };
    let g_decides_lower = g.lower() > 0.0 && g.lower() >= input.lambda_max_d.lower();
    let mut v = Verdict::new(
        "T5",
        "Second moment: critical learning rate and certificate",
    );
    let route = Check::le(
        "stability",
        "η·λ_max(𝒟̃) ≤ 1 (mean-square stable; violated ⇒ certified unstable) (T5f, g)",
        eta * d,
        Value::constant(1.0),
    );
    let sufficient = match &input.sufficient {
        Some(ev) => {
            ev.sharpness.validate_nonneg("λ_max(H)")?;
            ev.per_sample_max.validate_nonneg("max_i λ_max(H_i)")?;
            Some((sufficient_check(eta, p, ev), *ev))
        }
        None => None,
    };
    // η*(B): the (f)/(g) bracket, its lower side raised by η_suff of (i).
    let mut es = eta_star(d);
    let decided_by_i = match &sufficient {
        Some((c, _)) if c.status == Status::Certified && route.status != Status::Violated => {
            v.hyp(c.clone());
            v.diag(Check {
                name: "eta_star_route".into(),
                statement: format!("{} — not needed: (i) decided", route.statement),
                ..route.clone()
            });
            true
        }
        Some((c, _)) => {
            v.hyp(route.clone());
            v.diag(Check {
                name: "sufficient_condition".into(),
                statement: format!(
                    "{} — sufficient only: its failure proves nothing",
                    c.statement
                ),
                ..c.clone()
            });
            false
        }
        None => {
            v.hyp(route.clone());
            false
        }
    };
    if let Some((_, ev)) = &sufficient {
        let a = ev.sharpness.clamp_nonneg().only_upper();
        let l = ev.per_sample_max.clamp_nonneg().only_upper();
        let suff = eta_suff(p, a, l);
        v.conclude(
            "eta_suff",
            "η_suff(B) = 2/[(1−p)·upper(λ_max(H)) + p·upper(max_i λ_max(H_i))] ≤ η*(B) (T5(i))",
            suff,
        );
        es = es.intersect(suff.only_lower());
    }
    v.conclusions.push(
        crate::verdict::Conclusion::new(
            "eta_star",
            "η*(B): bracket [max(1/upper(λ_max(𝒟̃)), η_suff), 1/lower(λ_max(𝒟̃))] (T5f, g, i; +∞ \
             when r = 0)",
            es,
        )
        .with_vacuous(false),
    );
    let rm = es / eta - Value::constant(1.0);
    v.conclusions.push(
        crate::verdict::Conclusion::new(
            "relative_margin",
            "η*/η − 1; its lower side is the certified margin",
            rm,
        )
        .with_vacuous(false),
    );
    v.conclude("eta_times_upper", "η·upper(λ_max(𝒟̃))", eta * d.only_upper());
    v.conclude("p", "p of §0", p);
    v.conclude("pi", "π = P(i ∈ ξ)", input.batch.pi_value());
    if d.value == 0.0 && d.upper() == 0.0 {
        v.note("r = 0 (G = 0): η* = +∞, stable for every η.");
    }
    if g_decides_lower {
        v.note(format!(
            "λ_max(𝒟̃) ≥ {:.6} from the T5(g) tests (Σ = vvᵀ: λ_max(H)/2; Σ = I on range H: \
             [(1−p)λ_max(H)² + p(1/n)Σ‖H_i‖_F²]/(2 tr H)), with the lower bounds of λ_max(H) and \
             (1/n)Σ‖H_i‖_F² and the upper bound of tr H: η*(B) ≤ {:.6}.",
            g.lower(),
            1.0 / g.lower()
        ));
    }
    diagnostics(&mut v, input, eta, p)?;
    input.model.report(&mut v)?;
    v.note(if decided_by_i {
        "Stability is decided by the matrix-free sufficient condition T5(i) (H_i ⪰ 0 ⇒ \
         (1/n)ΣH_i² ⪯ L·H); the η* route (f) was not needed."
    } else if input.lambda_max_d.has_upper() {
        "Stability is decided by the η* route (T5f, h); T5(i) and the (g) tests bound η* from \
         each side; λ_max(𝒬_r) and Wu–Ma–E are diagnostics."
    } else {
        "Without the exact bracket of (f), stability is certified only by T5(i) and refuted only \
         by the necessary tests of (g) (THEORY T5, failure mode (iv))."
    });
    v.note(
        "Model (S): a fresh i.i.d. uniform batch at every step. Per-epoch reshuffling is not \
         covered by the theory.",
    );
    Ok(v)
}

fn diagnostics(v: &mut Verdict, input: &T5Input, eta: Value, p: Value) -> Result<()> {
    let dg = &input.diagnostics;
    let c = Value::constant(input.outputs as f64);
    let vac = if p.value == 0.0 {
        " — vacuous at p = 0"
    } else {
        ""
    };
    let two = Value::constant(2.0);
    let eta_p = eta * p;
    if let Some(a) = dg.sharpness {
        a.validate_nonneg("λ_max(H)")?;
        v.diag(Check::le(
            "necessary_sharpness",
            "η·λ_max(H) ≤ 2 (necessary, T5g)",
            eta * a,
            two,
        ));
    }
    if let Some(t) = dg.trace_h {
        t.validate_nonneg("tr H")?;
        v.diag(Check::le(
            "necessary_trace",
            format!("tr H ≤ 2C/(ηp) (necessary, T5g){vac}"),
            t,
            trace_bound(c, eta, p),
        ));
    }
    if let Some(m) = dg.mean_hi_fro2 {
        m.validate_nonneg("(1/n)Σ‖H_i‖_F²")?;
        if let Some(t) = dg.trace_h {
            v.diag(Check::le(
                "necessary_fro_trace",
                format!("η·(1/n)Σ‖H_i‖_F² ≤ 2 tr H/p (necessary, T5g){vac}"),
                eta * m,
                two * t / p,
            ));
        }
        v.diag(Check::le(
            "necessary_fro",
            format!("(1/n)Σ‖H_i‖_F² ≤ 4C/(ηp)² (necessary, T5g){vac}"),
            m,
            Value::constant(4.0) * c / (eta_p * eta_p),
        ));
    }
    if let Some(m) = dg.mean_tr_hi2 {
        m.validate_nonneg("(1/n)Σ(tr H_i)²")?;
        if let Some(t) = dg.trace_h {
            v.diag(Check::le(
                "necessary_trace_sq_trace",
                format!("(1/n)Σ(tr H_i)² ≤ 2C·tr H/(ηp) (necessary, T5g){vac}"),
                m,
                trace_sq_trace_bound(c, t, eta, p),
            ));
        }
        v.diag(Check::le(
            "necessary_trace_sq",
            format!("(1/n)Σ(tr H_i)² ≤ 4C²/(ηp)² (necessary, T5g){vac}"),
            m,
            Value::constant(4.0) * c * c / (eta_p * eta_p),
        ));
    }
    if let Some(w) = dg.wme_range {
        w.validate("λ_max(M_WME)")?;
        v.diag(Check::le(
            "wme_sufficient",
            "Wu–Ma–E λ_max(M_WME) ≤ 1 on range G — sufficient only: its failure proves nothing",
            w,
            Value::constant(1.0),
        ));
    }
    if let Some(s) = dg.nonuniformity {
        s.validate_nonneg("s")?;
        v.diag(Check::le(
            "wme_nonuniformity",
            format!(
                "s ≤ 1/(η√p): implied by the Wu–Ma–E sufficient condition, not a necessary \
                 condition{vac}"
            ),
            s,
            nonuniformity_bound(eta, p),
        ));
    }
    if let Some(q) = dg.lambda_max_q_r {
        q.validate("λ_max(𝒬_r)")?;
        v.conclusions.push(crate::verdict::Conclusion::new(
            "lambda_max_q_r",
            format!("λ_max(𝒬_r), a diagnostic, not a margin: {Q_R_CAVEAT}"),
            q,
        ));
    }
    if let Some(lk) = dg.lambda_min_kr {
        let lk = nonneg("λ_min(K_r)", lk)?;
        v.conclude(
            "contraction_floor",
            format!("1 − 2ηλ_min(K_r) ≤ λ_max(𝒬_r) ({Q_R_CAVEAT})"),
            Value::constant(1.0) - q_r_floor_gap(eta, Value::constant(lk)),
        );
    }
    if let Some(t) = dg.tau {
        v.conclude(
            "tau",
            "truncation threshold τ (relative to λ_max(K))",
            Value::exact(nonneg("τ", t)?, 0.0),
        );
    }
    if let Some(r) = dg.rank {
        v.conclude("rank", "kept rank r", Value::exact(r as f64, 0.0));
    }
    if let Some(dm) = dg.discarded_mass {
        v.conclude(
            "discarded_mass",
            "sum of the discarded eigenvalues of K",
            Value::exact(nonneg("discarded mass", dm)?, 0.0),
        );
    }
    if v.diagnostics
        .iter()
        .any(|c| c.name.starts_with("necessary") && c.status == crate::verdict::Status::Violated)
    {
        v.note(
            "A necessary test of T5(g) is violated: the minimum is not mean-square stable at \
             (η, B) (this must agree with the η* route; otherwise an input is wrong).",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::Sampling;
    use crate::verdict::Status;

    fn input(b: usize, s: Sampling, eta: f64, d: Value) -> T5Input {
        T5Input {
            eta,
            batch: BatchModel::new(3, b, s).unwrap(),
            outputs: 1,
            lambda_max_d: d,
            sufficient: None,
            diagnostics: T5Diagnostics::default(),
            model: ModelInfo::default(),
        }
    }

    #[test]
    fn verdict_rules() {
        let bracket = Value::interval(2.3077922965, 4.5257492320);
        let at = |eta| check(&input(1, Sampling::WithoutReplacement, eta, bracket)).unwrap();
        assert_eq!(at(0.22).status(), Status::Certified);
        assert_eq!(at(0.2400821025).status(), Status::Inconclusive);
        assert_eq!(at(0.5).status(), Status::Violated); // 0.5·2.3078 > 1
        // An estimate of λ_max(𝒟̃) never certifies, however optimistic.
        let v = check(&input(
            1,
            Sampling::WithoutReplacement,
            0.01,
            Value::estimate(4.0, 0.0),
        ))
        .unwrap();
        assert_eq!(v.status(), Status::Estimated);
        // An upper bound alone certifies stability but cannot refute it.
        let v = check(&input(
            1,
            Sampling::WithoutReplacement,
            0.5,
            Value::upper_bound(4.6, 0.0),
        ))
        .unwrap();
        assert_eq!(v.status(), Status::Inconclusive);
    }

    /// THEORY T5(i) example: λ_max(G) = 5.8704, L = 51.310, n = 256, B = 16 ⇒ η_suff = 0.2341.
    fn at_scale(eta: f64, a: Value) -> Verdict {
        let mut i = input(
            1,
            Sampling::WithoutReplacement,
            eta,
            Value::lower_bound(0.0, 0.0),
        );
        i.batch = BatchModel::new(256, 16, Sampling::WithoutReplacement).unwrap();
        i.sufficient = Some(SufficientEvidence {
            sharpness: a,
            per_sample_max: Value::exact(51.310, 0.0),
        });
        i.diagnostics.sharpness = Some(a);
        check(&i).unwrap()
    }

    #[test]
    fn sufficient_condition_decides_at_scale() {
        let a = Value::interval(5.8704, 5.8704).with_delta(1e-9, Some(7));
        let v = at_scale(0.2, a);
        assert_eq!(v.status(), Status::Certified);
        let c = v.check("stability").unwrap();
        assert!(c.statement.contains("T5(i)"));
        // The verdict rests on a randomized upper bound: it carries δ, never plain "certified".
        assert_eq!(c.confidence.map(|c| c.delta), Some(1e-9));
        assert_eq!(v.confidence().map(|c| c.delta), Some(1e-9));
        assert!(
            c.status_label()
                .starts_with("certified (confidence 1 − 1e-9")
        );
        let es = v.conclusion("eta_suff").unwrap().value;
        // 2/(0.94118·5.8704 + 0.058824·51.310) = 0.234101 (THEORY T5(i)).
        assert!((es.lower() - 0.234101).abs() < 1e-6, "{es:?}");
        // η* ≥ η_suff, and ≤ 2/λ_max(H) = 0.340692 from the (g) test Σ = vvᵀ.
        let bracket = v.conclusion("eta_star").unwrap().value;
        assert!((bracket.lower() - es.lower()).abs() < 1e-12);
        assert!((bracket.upper() - 2.0 / 5.8704).abs() < 1e-9);
        // Between η_suff and 2/a nothing is decided: (i) is only sufficient.
        assert_eq!(at_scale(0.3, a).status(), Status::Inconclusive);
        let d = at_scale(0.3, a);
        assert_eq!(
            d.diagnostics
                .iter()
                .find(|c| c.name == "sufficient_condition")
                .map(|c| c.status),
            Some(Status::Inconclusive) // upper sides only: a failed (i) is never "violated"
        );
        // Beyond 2/lower(a), (g) refutes: η·λ_max(H) > 2 ⇒ η·λ_max(𝒟̃) > 1.
        assert_eq!(at_scale(0.35, a).status(), Status::Violated);
    }

    /// p carries a rounding tol, so 1 − p can have a negative lower side (p = 1 at B = 1, n = 3):
    /// the sufficient test and the Σ = I bound must still be rigorous (a regression: both became
    /// estimates through the signed product).
    #[test]
    fn p_near_one_keeps_the_rigorous_sides() {
        let p = BatchModel::new(3, 1, Sampling::WithoutReplacement)
            .unwrap()
            .p_value();
        let ev = SufficientEvidence {
            sharpness: Value::upper_bound(4.64, 0.0),
            per_sample_max: Value::exact(10.0, 1e-15),
        };
        let c = sufficient_check(Value::exact(0.1, 0.0), p, &ev);
        assert_eq!(c.status, Status::Certified, "{c:?}");
        let g = necessary_lower(
            p,
            Some(Value::lower_bound(4.63, 0.0)),
            Some(Value::exact(44.0, 1e-13)),
            Some(Value::exact(6.0, 1e-14)),
        );
        let s = eta_suff(p, ev.sharpness, ev.per_sample_max.only_upper());
        assert!(s.has_lower() && (s.lower() - 0.2).abs() < 1e-14, "{s:?}");
        // Σ = I: 44/12 = 3.667 > λ_max/2 = 2.315.
        assert!(g.lower() > 3.66 && g.lower() < 44.0 / 12.0, "{g:?}");
    }

    #[test]
    fn eta_suff_is_exact_at_full_batch() {
        // p = 0 (B = n): η_suff = 2/a = η_GD* (THEORY T5(i)).
        assert_eq!(eta_suff(0.0, 4.0, 100.0), 0.5);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        use crate::error::BoundsError;
        let d = Value::interval(1.0, 2.0);
        let e = check(&input(1, Sampling::WithoutReplacement, 0.0, d));
        assert_eq!(e, Err(BoundsError::InvalidLearningRate(0.0)));
        assert!(
            check(&input(
                1,
                Sampling::WithoutReplacement,
                0.1,
                Value::interval(2.0, 1.0)
            ))
            .is_err()
        );
        assert!(
            check(&input(
                1,
                Sampling::WithoutReplacement,
                0.1,
                Value::exact(-1.0, 0.0)
            ))
            .is_err()
        );
        assert!(
            check(&input(
                1,
                Sampling::WithoutReplacement,
                0.1,
                Value::exact(f64::NAN, 0.0)
            ))
            .is_err()
        );
        let mut i = input(1, Sampling::WithoutReplacement, 0.1, d);
        i.batch.batch = 4; // B > n without replacement
        assert!(matches!(check(&i), Err(BoundsError::BatchTooLarge { .. })));
    }

    #[test]
    fn r_zero_gives_infinite_eta_star() {
        let v = check(&input(
            3,
            Sampling::WithoutReplacement,
            1.0,
            Value::exact(0.0, 0.0),
        ))
        .unwrap();
        assert_eq!(v.status(), Status::Certified);
        let e = v.conclusion("eta_star").unwrap();
        assert!(e.value.value.is_infinite() && !e.vacuous);
        assert!(v.is_well_formed());
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains("\"+inf\""));
    }

    /// `ms_status` (the bracket-only rule of `stability`/`simulate`) and [`check`] (the certify
    /// rule) decide alike, edges included: η·upper = 1 exactly is stable (≤), η·lower = 1 exactly
    /// is not unstable (>), r = 0 is stable with margin +∞.
    #[test]
    fn ms_status_agrees_with_check_at_the_edges() {
        let cases = [
            (2.3077922965, 4.5257492320, 0.22),
            (2.3077922965, 4.5257492320, 0.2400821025),
            (2.3077922965, 4.5257492320, 0.5),
            (4.0, 8.0, 0.125), // η·upper = 1 exactly (binary): certified stable
            (4.0, 8.0, 0.25),  // η·lower = 1 exactly: not refuted
            (4.0, 8.0, 0.125f64.next_up()),
            (4.0, 8.0, 0.25f64.next_up()),
            (4.0, 5.0, 0.2), // 0.2 > 1/5 in binary: η·upper > 1, not certified
            (0.0, 0.0, 3.0), // r = 0
        ];
        for (lo, hi, eta) in cases {
            let (s, margin) = ms_status(lo, hi, eta);
            let v = check(&input(
                1,
                Sampling::WithoutReplacement,
                eta,
                Value::interval(lo, hi),
            ))
            .unwrap();
            assert_eq!(s, MsStatus::from_status(v.status()), "{lo} {hi} {eta}");
            let rm = relative_margin(Value::constant(eta), Value::interval(lo, hi)).lower();
            assert_eq!(margin, rm);
        }
        assert_eq!(ms_status(4.0, 8.0, 0.125), (MsStatus::CertifiedStable, 0.0));
        assert_eq!(
            ms_status(4.0, 8.0, 0.125f64.next_up()).0,
            MsStatus::Inconclusive
        );
        assert_eq!(ms_status(4.0, 8.0, 0.25).0, MsStatus::Inconclusive);
        assert_eq!(
            ms_status(4.0, 8.0, 0.25f64.next_up()).0,
            MsStatus::CertifiedUnstable
        );
        assert_eq!(ms_status(4.0, 5.0, 0.2).0, MsStatus::Inconclusive);
        assert_eq!(
            ms_status(0.0, 0.0, 3.0),
            (MsStatus::CertifiedStable, f64::INFINITY)
        );
        // The margin is a lower bound of η*/η − 1 = 1/(η·upper) − 1.
        let (_, m) = ms_status(2.3077922965, 4.5257492320, 0.22);
        assert!(m <= 1.0 / (0.22 * 4.5257492320) - 1.0 && m > 0.0043);
        assert_eq!(MsStatus::CertifiedStable.name(), "certified stable");
        assert_eq!(MsStatus::CertifiedUnstable.name(), "certified unstable");
        assert_eq!(MsStatus::Inconclusive.name(), "inconclusive");
    }

    /// η*'s bracket rounds outward and drops infinite ends.
    #[test]
    fn eta_star_bracket_rounds_outward() {
        let (lo, hi) = eta_star_bracket(3.0, 7.0);
        let (lo, hi) = (lo.unwrap(), hi.unwrap());
        assert!(lo <= 1.0 / 7.0 && lo >= (1.0f64 / 7.0).next_down());
        assert!(hi >= 1.0 / 3.0 && hi <= (1.0f64 / 3.0).next_up());
        assert_eq!(eta_star_bracket(0.0, 7.0).1, None);
        assert_eq!(eta_star_bracket(0.0, 0.0), (None, None));
        // A lower side ≤ 0 drops only the upper end of η*: 1/upper stays certified.
        for lo in [0.0, -1e-300, -1.0] {
            let (l, h) = eta_star_bracket(lo, 8.0);
            assert_eq!((l, h), (Some(0.125), None), "{lo}");
            let (s, m) = ms_status(lo, 8.0, 0.125);
            assert_eq!((s, m), (MsStatus::CertifiedStable, 0.0), "{lo}");
        }
    }

    #[test]
    fn q_r_only_with_its_caveat() {
        let mut i = input(
            1,
            Sampling::WithoutReplacement,
            0.22,
            Value::interval(4.16, 4.17),
        );
        i.diagnostics.lambda_max_q_r = Some(Value::estimate(0.9655413048, 1e-12));
        i.diagnostics.lambda_min_kr = Some(0.26244308 / 3.0);
        let v = check(&i).unwrap();
        let q = v.conclusion("lambda_max_q_r").unwrap();
        assert!(q.statement.contains(Q_R_CAVEAT));
        // 1 − 2ηλ_min(K) = 0.961508 (THEORY §5).
        let f = v.conclusion("contraction_floor").unwrap().value.value;
        assert!((f - 0.961508).abs() < 5e-7);
        assert!(f <= 0.9655413048);
    }
}

/// The mean-square stability hypothesis that T3, T6, T7 and T8 borrow, from T4's `gd_condition`
/// and T5's `stability` checks: T5's check when it exists, except that a **violated** GD
/// condition (certified first-moment instability, λ_max > 2/η) refutes mean-square stability
/// whatever T5 decided (‖E u_t‖² ≤ E‖u_t‖², and η*_2 ≤ η_GD* by T5(g)'s Σ = vvᵀ test) — at the
/// operator path, where T5 may be missing, and where a truncated T5 bracket was inconclusive.
/// `None`: assumed.
pub fn mean_square_hypothesis(gd: Option<&Check>, t5_stability: Option<&Check>) -> Option<Check> {
    if let Some(c) = t5_stability.filter(|c| c.status == Status::Violated) {
        return Some(c.clone());
    }
    match gd {
        Some(c) if c.status == Status::Violated => Some(Check {
            name: "stability".into(),
            statement: "refuted by T4's violated GD condition η·λ_max ≤ 2 (certified \
                        first-moment instability), since η*_2 ≤ η_GD* = 2/λ_max (THEORY T5g)"
                .into(),
            ..c.clone()
        }),
        _ => t5_stability.cloned(),
    }
}

#[cfg(test)]
mod hypothesis_tests {
    use super::*;

    fn check(name: &str, status: Status) -> Check {
        Check::given(name, "s", status)
    }

    #[test]
    fn t4_violation_refutes_mean_square_stability() {
        let gd_bad = check("gd_condition", Status::Violated);
        let gd_ok = check("gd_condition", Status::Certified);
        let ms_ok = check("stability", Status::Certified);
        let ms_inc = check("stability", Status::Inconclusive);
        let ms_bad = check("stability", Status::Violated);
        // T5's own violation wins and keeps its statement.
        let h = mean_square_hypothesis(Some(&gd_ok), Some(&ms_bad)).unwrap();
        assert_eq!((h.status, h.statement.as_str()), (Status::Violated, "s"));
        // A violated GD condition refutes an inconclusive or missing T5.
        for t5 in [Some(&ms_inc), None] {
            let h = mean_square_hypothesis(Some(&gd_bad), t5).unwrap();
            assert_eq!((h.name.as_str(), h.status), ("stability", Status::Violated));
            assert!(h.statement.contains("T5g"));
        }
        // Otherwise T5's check, or nothing (assumed).
        assert_eq!(
            mean_square_hypothesis(Some(&gd_ok), Some(&ms_ok)).map(|c| c.status),
            Some(Status::Certified)
        );
        assert!(mean_square_hypothesis(Some(&gd_ok), None).is_none());
        assert!(mean_square_hypothesis(None, None).is_none());
    }
}
