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
use crate::verdict::{Check, Verdict};

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
    pub lambda_max_d: Value,
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

/// 2C/(ηp): the T5(g) bound on tr H (+∞ at p = 0).
pub fn trace_bound<N: Scalar>(outputs: N, eta: N, p: N) -> N {
    N::constant(2.0) * outputs / (eta * p)
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
    let d = input.lambda_max_d.clamp_nonneg();
    let mut v = Verdict::new(
        "T5",
        "Second moment: critical learning rate and certificate",
    );
    v.hyp(Check::le(
        "stability",
        "η·λ_max(𝒟̃) ≤ 1 (mean-square stable; violated ⇒ certified unstable) (T5f)",
        eta * d,
        Value::constant(1.0),
    ));
    let es = eta_star(d);
    v.conclusions.push(
        crate::verdict::Conclusion::new(
            "eta_star",
            "η*(B) = 1/λ_max(𝒟̃), bracket [1/upper, 1/lower] (+∞ when r = 0)",
            es,
        )
        .with_vacuous(false),
    );
    let rm = relative_margin(eta, d);
    v.conclusions.push(
        crate::verdict::Conclusion::new(
            "relative_margin",
            "η*/η − 1; its lower side 1/(η·upper) − 1 is the certified margin",
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
    diagnostics(&mut v, input, eta, p)?;
    input.model.report(&mut v)?;
    v.note(
        "Stability is decided by the η* route (T5f, h); λ_max(𝒬_r) and Wu–Ma–E are diagnostics.",
    );
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
                two * c * t / eta_p,
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
            Value::constant(1.0) - two * eta * Value::constant(lk),
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
