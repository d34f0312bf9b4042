//! Everything flatcert shows to people, rendered in memory (the file system is not touched here:
//! writing is the callers' job — [`crate::report`] for the report directory, the CLI for
//! `--plot`):
//!
//! - [`table`]: the terminal table of a certificate or a bound-calculator result;
//! - [`markdown`]: the Markdown report (`docs/report.md`);
//! - [`figures`]: every SVG figure — the report's T6/T7/T9 figures, the stability figure of
//!   `flatcert stability --plot` and the simulation figure of `flatcert simulate --plot`;
//! - [`svg`]: the one low-level SVG stack under all figures (palette, axes, legend glyphs, the
//!   drawing error, the XML well-formedness check);
//! - here: the shared number formats ([`num`], [`value`]) and the one-sentence "what this means"
//!   of each verdict ([`meaning`]).
//!
//! Dependencies point one way: `render` reads the certificate types of [`mod@crate::certify`], the
//! stability verdict of [`crate::measure::stability`] and the `flatcert_bounds` verdicts, and
//! nothing below it (`measure`, `simulate`, `certify`, `model`, `io`) depends on `render`
//! (certify's unit tests use the table renderer).

pub mod figures;
pub mod markdown;
pub mod svg;
pub mod table;
#[cfg(test)]
pub(crate) mod test_support;

use flatcert_bounds::{Status, Value, Verdict};

pub use markdown::render_markdown;
pub use table::{Style, render};

/// A number for people: 5 significant digits ([`significant`]), `+∞`/`−∞` for the infinities.
pub fn num(x: f64) -> String {
    if x == f64::INFINITY {
        "+∞".into()
    } else if x == f64::NEG_INFINITY {
        "−∞".into()
    } else if x == 0.0 {
        "0".into()
    } else {
        significant(x, 5)
    }
}

/// `x` with `digits` (≥ 1) significant digits, trailing zeros kept: fixed notation for
/// 10⁻³ ≤ |x| < 10⁵ (`4.1652`, `0.091282`), scientific otherwise (`1.0000e-9`). The one number
/// format of the tables and Markdown ([`num`], 5 digits) and of the SVG legends (6 digits).
pub fn significant(x: f64, digits: usize) -> String {
    let digits = digits.max(1);
    if (1e-3..1e5).contains(&x.abs()) {
        let mag = x.abs().log10().floor() as i32;
        let decimals = (digits as i32 - 1 - mag).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        let decimals = digits - 1;
        format!("{x:.decimals$e}")
    }
}

/// A value with its kind: `1.2345 (exact)`, `≤ 3.2 (upper)`, `[1, 2] (interval)`, `≈ 0.97
/// (estimate)`.
pub fn value(v: &Value) -> String {
    use flatcert_bounds::Kind;
    match v.kind {
        Kind::Exact => format!("{} (exact)", num(v.value)),
        Kind::Upper => format!("≤ {} (upper)", num(v.upper())),
        Kind::Lower => format!("≥ {} (lower)", num(v.lower())),
        Kind::Interval => format!("[{}, {}] (interval)", num(v.lower()), num(v.upper())),
        Kind::Estimate => format!("≈ {} (estimate)", num(v.value)),
    }
}

fn conc(v: &Verdict, name: &str) -> Option<Value> {
    v.conclusion(name).map(|c| c.value)
}

/// The largest value of the conclusions named `name` or `name_k{k}`.
fn conc_any(v: &Verdict, name: &str) -> Option<Value> {
    v.conclusions
        .iter()
        .filter(|c| c.name == name || c.name.starts_with(&format!("{name}_k")))
        .map(|c| c.value)
        .max_by(|a, b| a.value.total_cmp(&b.value))
}

/// True when a violated hypothesis of `v` is one of its own tests, not the stability it borrows
/// from T5 (`k_stable…`).
fn own_test_violated(v: &Verdict) -> bool {
    v.hypotheses
        .iter()
        .any(|c| c.status == Status::Violated && !c.name.starts_with("k_stable"))
}

/// True when the stability hypothesis `v` borrows from T5 (`k_stable…`) is violated.
fn borrowed_violated(v: &Verdict) -> bool {
    v.hypotheses
        .iter()
        .any(|c| c.status == Status::Violated && c.name.starts_with("k_stable"))
}

/// One sentence saying what the verdict means for the user.
pub fn meaning(v: &Verdict) -> String {
    let st = v.status();
    let ok = matches!(st, Status::Certified | Status::Assumed);
    // The forms for a non-dense bilinear first layer (THEORY §7): T1b and the radial T2, T3, T7.
    let radial = v.title.contains("radial") || v.title.contains("T1b");
    match v.theorem.as_str() {
        "T1" if ok && radial => "The first-layer identity ⟨x, ∇_x f_c⟩ = ⟨W, ∇_W f_c⟩ (T1b) holds \
                                 to rounding at the checked points: input and weight gradients \
                                 are consistent, so the radial statements below rest on sound \
                                 gradients."
            .into(),
        "T2" if ok && radial => format!(
            "At every training point the derivative along the ray, ‖J_x(x_i)x_i‖, is at most \
             ‖W‖_F‖J_W(x_i)‖_F (tightest point: {} ≤ {}).",
            conc(v, "tightest_lhs").map_or("?".into(), |x| num(x.value)),
            conc(v, "tightest_rhs").map_or("?".into(), |x| num(x.upper()))
        ),
        "T2" if radial => "The radial inequality failed: the measured norms are inconsistent (a \
                           bug in the engine)."
            .into(),
        "T3" if radial => format!(
            "Flatness bounds the radial input sensitivity on the data: (1/n)Σ‖J_x(x_i)x_i‖² = {} \
             is at most ‖W‖_F²·tr G ≤ {}.",
            conc(v, "left").map_or("?".into(), |x| num(x.value)),
            conc(v, "right").map_or("?".into(), |x| num(x.upper()))
        ),
        "T7" if radial && ok => "The radial moments ((1/n)Σ‖J_x(x_i)x_i‖^{2k})^{1/2k} are at \
                                 most ‖W‖_F times the first-layer gradient moments (THEORY \
                                 §7(b)); each bound is listed next to the measured value."
            .into(),
        "T1" if ok => "The first-layer identity ∇_x f·xᵀ = Wᵀ∇_W f holds to rounding on the checked \
                       points: input and weight gradients are consistent, so the first-layer \
                       statements below rest on sound gradients."
            .into(),
        "T1" => "The engine's input and weight gradients disagree beyond rounding: the first-layer \
                 statements (T2, T3, T7) cannot be trusted on this input."
            .into(),
        "T2" if ok => format!(
            "At every training point the input gradient is at most ‖W‖₂/‖x_i‖ times the \
             first-layer weight gradient (the tightest point uses {} of that room).",
            conc(v, "max_tightness").map_or("?".into(), |x| num(x.value))
        ),
        "T2" => "The per-sample inequality failed: the measured norms are inconsistent (a bug or \
                 a wrong ‖W‖₂ bound)."
            .into(),
        "T3" => format!(
            "Flatness bounds input sensitivity on the data: (1/n)Σ‖J_x(x_i)‖_F²‖x_i‖² = {} is at \
             most ‖W‖₂²·tr G ≤ {}.",
            conc(v, "left").map_or("?".into(), |x| num(x.value)),
            conc(v, "right").map_or("?".into(), |x| num(x.upper()))
        ),
        "T4" => {
            let e = conc(v, "eta_gd").map_or("?".into(), |x| value(&x));
            match st {
                Status::Violated => format!(
                    "λ_max(G) > 2/η: even the mean of SGD's linearization diverges at this η \
                     (largest stable GD step η_GD* {e})."
                ),
                Status::Certified | Status::Assumed => format!(
                    "First-moment (GD) stability holds: λ_max(G) ≤ 2/η; the largest stable GD step \
                     is η_GD* {e}."
                ),
                _ => format!(
                    "First-moment stability is not decided: λ_max(G) is not known tightly enough \
                     (η_GD* {e})."
                ),
            }
        }
        "Min" => match st {
            Status::Violated => "θ* is NOT a minimum of the training loss: the Hessian H has a \
                                 certified negative eigenvalue, so SGD's linearization with H is \
                                 unstable for every η. The other stability verdicts are about the \
                                 Gauss–Newton model G (--curvature gauss-newton accepts it)."
                .into(),
            Status::Certified => {
                "θ* is a minimum: every residual is 0, so H = G ⪰ 0.".into()
            }
            _ => "θ* being a minimum (λ_min(H) ≥ 0) is assumed, not proven: see its size.".into(),
        },
        "T5" => {
            let es = conc(v, "eta_star").map_or("?".into(), |x| {
                format!("[{}, {}]", num(x.lower()), num(x.upper()))
            });
            match st {
                Status::Certified | Status::Assumed => format!(
                    "SGD at this (η, B) is mean-square stable at this minimum: η can grow by at \
                     least {}% before stability is lost (η* ∈ {es}).",
                    conc(v, "relative_margin")
                        .map_or("?".into(), |m| num(100.0 * m.lower().max(0.0)))
                ),
                Status::Violated => format!(
                    "SGD at this (η, B) is certified mean-square UNSTABLE here: η exceeds the \
                     critical η* ∈ {es}, so SGD with these hyper-parameters cannot stay at this \
                     minimum."
                ),
                _ => format!(
                    "η lies within the uncertainty of the critical η* ∈ {es}: neither stability \
                     nor instability is certified."
                ),
            }
        }
        "T6" if st == Status::Violated && !own_test_violated(v) => format!(
            "The hypothesis of T6 fails: SGD is certified mean-square unstable at (η, B) (T5, or T4's first-moment instability), so \
             T6's conclusions do not apply. Its own necessary tests did not detect it (they are \
             weaker than T5): the sharpest sample uses {} of β_k.",
            conc_any(v, "max_ratio").map_or("?".into(), |x| num(x.value))
        ),
        "T6" if st == Status::Violated && borrowed_violated(v) => "A necessary test of k-th \
             moment stability fails: the k-th moment of SGD's linearization is not stable at (η, B), \
             in agreement with T5, which certifies mean-square instability here."
            .into(),
        "T6" if st == Status::Violated => "A necessary test of k-th moment stability fails: the \
             k-th moment of SGD's linearization is not stable at (η, B) (mean-square stability, T5, \
             may still hold)."
            .into(),
        "T6" => format!(
            "If SGD's k-th moment is stable at (η, B), no single sample can be sharper than β_k: the \
             sharpest sample uses {} of that budget.",
            conc_any(v, "max_ratio").map_or("?".into(), |x| num(x.value))
        ),
        "T7" if st == Status::Violated && !borrowed_violated(v) => "A hypothesis of T7 fails \
                 (see the hypotheses): its Sobolev bounds are not established here; each is still \
                 listed next to the measured value with their ratio."
            .into(),
        "T7" if st == Status::Violated => "The stability hypothesis of T7 fails at (η, B) \
                 (certified mean-square unstable: T5, or T4's first-moment instability), so these Sobolev bounds are not implied by SGD \
                 stability here; each is still listed next to the measured value with their ratio."
            .into(),
        "T7" => "SGD stability caps the model's input gradients on the training data (Sobolev \
                 regularization); each bound is listed next to the measured value with their ratio."
            .into(),
        "T8" => format!(
            "Near the training set the expected error is at most {} — provided every test input \
             lies within ε of a training input (assumed, not verifiable from training data{}).",
            conc(v, "expected_error").map_or("?".into(), |x| num(x.upper())),
            conc(v, "coverage").map_or(String::new(), |c| format!(
                "; held-out coverage {}",
                num(c.value)
            ))
        ),
        "T9" => format!(
            "A fraction {} of the training points is certified robust: no perturbation of ℓ2 size \
             ≤ ε changes their {}.",
            conc(v, "certified_fraction").map_or("?".into(), |x| num(x.value)),
            if v.conclusion("markov_regression").is_some() {
                "output by more than τ"
            } else {
                "predicted class"
            }
        ),
        "T10" => format!(
            "Around the least smooth training point the network is Lipschitz with constant ≤ {} on \
             the whole ε-ball (certified by interval propagation).",
            conc(v, "lipschitz").map_or("?".into(), |x| num(x.upper()))
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(num(f64::INFINITY), "+∞");
        assert_eq!(num(0.0912822842), "0.091282");
        assert_eq!(num(4.1652417631), "4.1652");
        assert_eq!(num(1e-9), "1.0000e-9");
        assert_eq!(num(-12345.678), "-12346");
        assert_eq!(significant(0.2400821025, 6), "0.240082");
        assert_eq!(significant(123456.0, 6), "1.23456e5");
        assert_eq!(significant(f64::INFINITY, 3), "inf");
        assert_eq!(value(&Value::upper_bound(2.0, 0.0)), "≤ 2.0000 (upper)");
        assert!(value(&Value::interval(1.0, 2.0)).starts_with("[1.0000, 2.0000]"));
    }

    #[test]
    fn t6_says_whether_its_own_test_or_the_borrowed_stability_failed() {
        use flatcert_bounds::Check;
        let mut v = Verdict::new("T6", "k-th moments");
        v.hypotheses.push(Check::le(
            "k_stable_k2",
            "η·λ_max(𝒟̃) ≤ 1",
            Value::exact(1.2, 0.0),
            Value::exact(1.0, 0.0),
        ));
        v.hypotheses.push(Check::le(
            "per_sample_k2",
            "max λ ≤ β",
            Value::exact(51.0, 0.0),
            Value::exact(200.0, 0.0),
        ));
        assert!(meaning(&v).starts_with("The hypothesis of T6 fails"));
        v.hypotheses.push(Check::le(
            "directional_k2",
            "E ≤ 1",
            Value::exact(2.0, 0.0),
            Value::exact(1.0, 0.0),
        ));
        assert!(meaning(&v).contains("in agreement with T5"));
        v.hypotheses.remove(0);
        assert!(meaning(&v).contains("may still hold"));
    }
}
