//! Every THEORY §5 golden number that is a function of numbers (the worked example: the ReLU
//! 1–2–1 network f(x) = |x| on x = (−1, 1, 2), n = 3, C = 1, ‖W‖₂ = √2, min|x_i| = 1).
//!
//! Tolerances. THEORY prints the golden values with 10 decimals (η*, λ_max(𝒟̃), margins) or 6
//! decimals (β_k, T6d, T7), sometimes 3–4 (ηa, ηs√p). An input given to 10 decimals is off by at
//! most 5e-11, and every map used here (1/λ, 1/(ηλ) − 1, products) has a condition number ≤ 10
//! on these values, so 10-decimal outputs are compared with an absolute tolerance of 1e-10
//! ([`D10`]), 6-decimal ones with 6e-7 ([`D6`]: half a unit in the last place plus the
//! propagated input rounding ≤ 1e-8), and 3–4-decimal ones with half a unit in the last place.

use flatcert_bounds::t5::{self, T5Diagnostics, T5Input};
use flatcert_bounds::t6::{self, batch_sum_moment_closed, batch_sum_moment_dp, directional_test};
use flatcert_bounds::t7::{self, T7Input, T7Measured, bound_b, bound_d_route};
use flatcert_bounds::t8::{self, T8Input, T8Point};
use flatcert_bounds::t9::{radius_for_bound, regression_check};
use flatcert_bounds::t10::{self, Ball, T10Input};
use flatcert_bounds::{BatchModel, LrConvention, Sampling, Status, Value};

const D10: f64 = 1e-10;
const D6: f64 = 6e-7;

const WO: Sampling = Sampling::WithoutReplacement;
const WR: Sampling = Sampling::WithReplacement;

/// λ_max(H) = a = 4.6332385972 (Wu–Ma–E line of §5).
const A: f64 = 4.6332385972;
/// s = 4.1461312808.
const S: f64 = 4.1461312808;

/// (B, sampling, p, π, λ_max(𝒟̃), η*_2, η*_4, β_2, β_4): the four rows of §5.
type Row = (usize, Sampling, f64, f64, f64, f64, f64, f64, f64);
const ROWS: [Row; 4] = [
    (
        1,
        WO,
        1.0,
        1.0 / 3.0,
        4.1652417631,
        0.2400821025,
        0.2198950262,
        11.379652,
        10.532635,
    ),
    (
        2,
        WO,
        0.25,
        2.0 / 3.0,
        2.7557778462,
        0.3628739528,
        0.3340997154,
        12.261805,
        12.611097,
    ),
    (
        3,
        WO,
        0.0,
        1.0,
        2.3166192986,
        0.4316635023,
        0.4316635023,
        13.899716,
        13.899716,
    ),
    (
        2,
        WR,
        0.5,
        5.0 / 9.0,
        3.2166104182,
        0.3108862653,
        0.2634645672,
        15.064292,
        16.383928,
    ),
];

fn model(b: usize, s: Sampling) -> BatchModel {
    BatchModel::new(3, b, s).unwrap()
}

fn t5_input(b: usize, s: Sampling, eta: f64, d: Value) -> T5Input {
    T5Input {
        eta,
        batch: model(b, s),
        outputs: 1,
        lambda_max_d: d,
        sufficient: None,
        diagnostics: T5Diagnostics::default(),
        model: Default::default(),
    }
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

#[test]
fn p_and_pi() {
    for (b, s, p, pi, ..) in ROWS {
        let m = model(b, s);
        close(m.p(), p, 1e-16, "p");
        close(m.pi(), pi, 2e-16, "π");
    }
}

#[test]
fn curvature_and_eta_gd() {
    // Characteristic roots of K_raw: 13.89971579 ⇒ λ_max(H) = 13.89971579/3 = a.
    close(13.89971579 / 3.0, A, 5e-9, "λ_max(H) from K_raw");
    let v = flatcert_bounds::t4::check(&flatcert_bounds::t4::T4Input {
        eta: 0.3,
        lambda_max: Value::interval(A, A),
        model: Default::default(),
    })
    .unwrap();
    let e = v.conclusion("eta_gd").unwrap().value;
    close(e.lower(), 0.4316635023, D10, "η_GD* lower");
    close(e.upper(), 0.4316635023, D10, "η_GD* upper");
    // Torch MSELoss with C = 1: η_torch = η/2.
    let c = LrConvention::TorchMse { outputs: 1 };
    close(
        c.from_theory(0.4316635023).unwrap(),
        0.4316635023 / 2.0,
        0.0,
        "η_torch",
    );
}

#[test]
fn eta_star_rows_from_lambda_max_d() {
    for (b, s, _, _, d, eta2, ..) in ROWS {
        let v = t5::check(&t5_input(b, s, eta2, Value::interval(d, d))).unwrap();
        let es = v.conclusion("eta_star").unwrap().value;
        close(es.lower(), eta2, D10, "η*_2 lower");
        close(es.upper(), eta2, D10, "η*_2 upper");
        // Just inside and outside the threshold: certified stable, certified unstable.
        let inside = t5::check(&t5_input(b, s, 0.999 * eta2, Value::interval(d, d))).unwrap();
        assert_eq!(inside.status(), Status::Certified, "B={b}");
        let outside = t5::check(&t5_input(b, s, 1.001 * eta2, Value::interval(d, d))).unwrap();
        assert_eq!(outside.status(), Status::Violated, "B={b}");
    }
    // B = n: η* = 2/λ_max(H) = η_GD*, λ_max(𝒟̃) = a/2.
    close(ROWS[2].4, A / 2.0, D10, "λ_max(𝒟̃) at B = n");
    // η*_2 is nondecreasing in B and η*_4 ≤ η*_2.
    assert!(ROWS[0].5 <= ROWS[1].5 && ROWS[1].5 <= ROWS[2].5);
    assert!(ROWS.iter().all(|r| r.6 <= r.5));
}

#[test]
fn cone_brackets_contain_lambda_max_d() {
    // (B, sampling, X_0 bracket, λ_max(𝒟̃)); X_10 brackets for B = 1 and 2.
    let x0 = [
        (2.3077922965, 4.5257492320, 4.1652417631),
        (1.3269480741, 2.8655611754, 2.7557778462),
        (1.0, 2.3166192986, 2.3166192986),
        (1.6538961483, 3.4172917425, 3.2166104182),
    ];
    for (lo, hi, d) in x0 {
        assert!(lo <= d && d <= hi);
    }
    for (lo, hi, d) in [
        (4.1652413784, 4.1652653836, 4.1652417631),
        (2.7557778443, 2.7557840538, 2.7557778462),
    ] {
        assert!(lo <= d && d <= hi);
    }
}

#[test]
fn b1_eta_022_certified_at_x0() {
    // η·upper(X_0) = 0.22·4.5257492320 = 0.995665 ≤ 1: certified stable at the first step.
    let v = t5::check(&t5_input(
        1,
        WO,
        0.22,
        Value::interval(2.3077922965, 4.5257492320),
    ))
    .unwrap();
    assert_eq!(v.status(), Status::Certified);
    close(
        v.conclusion("eta_times_upper").unwrap().value.upper(),
        0.995665,
        D6,
        "η·upper",
    );
    // Relative margin η*/η − 1 = 0.0912822842 from λ_max(𝒟̃) = 4.1652417631.
    let v = t5::check(&t5_input(
        1,
        WO,
        0.22,
        Value::interval(4.1652417631, 4.1652417631),
    ))
    .unwrap();
    let m = v.conclusion("relative_margin").unwrap().value;
    close(m.lower(), 0.0912822842, D10, "relative margin B=1");
    let c = v.check("stability").unwrap();
    assert_eq!(c.status, Status::Certified);
    close(
        c.margin.unwrap(),
        1.0 - 0.22 * 4.1652417631,
        1e-15,
        "stability margin",
    );
}

#[test]
fn b2_eta_03_certified() {
    let v = t5::check(&t5_input(
        2,
        WO,
        0.3,
        Value::interval(1.3269480741, 2.8655611754),
    ))
    .unwrap();
    assert_eq!(v.status(), Status::Certified);
    close(
        v.conclusion("eta_times_upper").unwrap().value.upper(),
        0.859668,
        D6,
        "η·upper",
    );
    let v = t5::check(&t5_input(
        2,
        WO,
        0.3,
        Value::interval(2.7557778462, 2.7557778462),
    ))
    .unwrap();
    close(
        v.conclusion("relative_margin").unwrap().value.lower(),
        0.2095798426,
        D10,
        "relative margin B=2",
    );
}

#[test]
fn necessary_tests_at_b1() {
    // At B = 1, η = η*_2: ηa = 1.112 ≤ 2; tr H = 6 ≤ 2C/(ηp) = 8.3305; η·44 = 10.5636 ≤ 12.
    let eta = 0.2400821025;
    let mut i = t5_input(1, WO, eta, Value::interval(4.1652417631, 4.1652417631));
    i.diagnostics = T5Diagnostics {
        sharpness: Some(Value::exact(A, 0.0)),
        trace_h: Some(Value::exact(6.0, 0.0)),
        mean_hi_fro2: Some(Value::exact(44.0, 0.0)),
        ..T5Diagnostics::default()
    };
    let v = t5::check(&i).unwrap();
    let c = v.check("necessary_sharpness").unwrap();
    assert_eq!(c.status, Status::Certified);
    close(c.lhs.unwrap().value, 1.112, 5e-4, "ηa");
    let c = v.check("necessary_trace").unwrap();
    assert_eq!(c.status, Status::Certified);
    close(c.rhs.unwrap().value, 8.3305, 5e-5, "2C/(ηp)");
    let c = v.check("necessary_fro_trace").unwrap();
    assert_eq!(c.status, Status::Certified);
    close(c.lhs.unwrap().value, 10.5636, 5e-5, "η·44");
    close(c.rhs.unwrap().value, 12.0, 1e-15, "2 tr H/p");
}

#[test]
fn wme_diagnostics() {
    // B = 1, η = 0.22: λ_max(M_WME) = 1.0225556136 > 1 (the sufficient test fails while the η*
    // route certifies), ηs√p = 0.912, λ_max(𝒬_r) = 0.9655413048 ≥ 1 − 2ηλ_min(K) = 0.961508.
    let mut i = t5_input(1, WO, 0.22, Value::interval(2.3077922965, 4.5257492320));
    i.diagnostics = T5Diagnostics {
        wme_range: Some(Value::estimate(1.0225556136, 0.0)),
        nonuniformity: Some(Value::exact(S, 0.0)),
        lambda_max_q_r: Some(Value::estimate(0.9655413048, 0.0)),
        lambda_min_kr: Some(0.26244308 / 3.0),
        ..T5Diagnostics::default()
    };
    let v = t5::check(&i).unwrap();
    assert_eq!(v.status(), Status::Certified);
    assert_eq!(v.check("wme_sufficient").unwrap().status, Status::Estimated);
    assert!(v.check("wme_sufficient").unwrap().margin.unwrap() < 0.0);
    let c = v.check("wme_nonuniformity").unwrap();
    assert!(
        c.statement
            .contains("implied by the Wu–Ma–E sufficient condition")
    );
    assert!(
        !c.statement.contains("necessary condition") || c.statement.contains("not a necessary")
    );
    close(S * 0.22 * 1.0, 0.912, 5e-4, "ηs√p");
    close(c.rhs.unwrap().value * 0.912149, S, 1e-5, "1/(η√p)");
    let f = v.conclusion("contraction_floor").unwrap().value.value;
    close(f, 0.961508, D6, "1 − 2ηλ_min(K), B=1");
    // B = 2, η = 0.3: reduced λ_max(M_WME) = 0.9623631964 ≤ 1, 1 − 2ηλ_min(K) = 0.947511.
    let mut i = t5_input(2, WO, 0.3, Value::interval(1.3269480741, 2.8655611754));
    i.diagnostics.wme_range = Some(Value::interval(0.9623631964, 0.9623631964));
    i.diagnostics.lambda_min_kr = Some(0.26244308 / 3.0);
    let v = t5::check(&i).unwrap();
    assert_eq!(v.check("wme_sufficient").unwrap().status, Status::Certified);
    close(
        v.conclusion("contraction_floor").unwrap().value.value,
        0.947511,
        D6,
        "B=2 floor",
    );
}

#[test]
fn beta_table() {
    for (b, s, _, _, _, eta2, eta4, beta2, beta4) in ROWS {
        let m = model(b, s);
        let b2 = t6::beta_k(eta2, &m, 2).unwrap();
        let b4 = t6::beta_k(eta4, &m, 4).unwrap();
        close(b2.value, beta2, D6, "β_2");
        close(b4.value, beta4, D6, "β_4");
        // β_k ≥ max λ_i = 10, as it must at η = η*_k.
        assert!(b2.lower() >= 10.0 && b4.lower() >= 10.0);
        // The T6 per-sample check certifies max λ_i ≤ β_k there.
        let v = t6::check(&t6::T6Input {
            eta: eta4,
            batch: m,
            k: 4,
            outputs: 1,
            lambdas: vec![4.0, 4.0, 10.0],
            lambda_rel_tol: 0.0,
            directional: vec![],
            k_stability: None,
        })
        .unwrap();
        assert_eq!(v.check("per_sample").unwrap().status, Status::Certified);
        assert_eq!(v.conclusion("argmax").unwrap().value.value, 2.0);
    }
}

#[test]
fn directional_tests_b1_k2() {
    // η = 0.9η*_2 = 0.2160739; x from v = a_1/2, a_2/2, a_3/√10.
    let eta = 0.9 * 0.2400821025;
    let cases = [
        ([4.0, 0.25, 0.25], 0.602726),
        ([0.25, 4.0, 9.0], 0.601896),
        ([0.1, 3.6, 10.0], 0.784637),
    ];
    for (x, want) in cases {
        let z: Vec<f64> = x.iter().map(|xj| 1.0 - eta * xj).collect();
        let dp = batch_sum_moment_dp(&z, 1, 2, WO).unwrap();
        let closed = batch_sum_moment_closed(&z, 1, 2, WO).unwrap().unwrap();
        close(dp, want, D6, "DP");
        close(closed, want, D6, "closed form");
        let t = directional_test(&x, eta, 1, 2, WO).unwrap();
        close(t.value, want, D6, "directional_test");
        assert!(t.value <= 1.0);
    }
    // By hand for v = a_1/2: (1/3)[(1 − 4η)² + 2(1 − η/4)²].
    let hand = ((1.0 - 4.0 * eta).powi(2) + 2.0 * (1.0 - eta / 4.0).powi(2)) / 3.0;
    close(hand, 0.602726, D6, "by hand");
}

#[test]
fn t7_numbers() {
    let beta2 = t6::beta_k(0.2400821025, &model(1, WO), 2).unwrap().value;
    close(bound_b(2f64.sqrt(), beta2, 1.0), 4.770671, D6, "T7(b)");
    close(
        bound_d_route(2f64.sqrt(), 1.0, 0.2400821025, 1.0),
        4.081785,
        D6,
        "T7(d)",
    );
    let v = t7::check(&T7Input {
        eta: 0.2400821025,
        batch: model(1, WO),
        k: 2,
        outputs: 1,
        w_spectral: Value::upper_bound(flatcert_bounds::round::sqrt_up(2.0), 0.0),
        min_x_norm: Value::exact(1.0, 0.0),
        mean_x_norm: None,
        measured: T7Measured {
            max_jx_spectral: Some(Value::exact(1.0, 0.0)),
            sobolev_4: Some(Value::exact(1.0, 0.0)),
            ..T7Measured::default()
        },
        k_stability: None,
        interpolation: None,
    })
    .unwrap();
    assert_eq!(v.check("b").unwrap().status, Status::Certified);
    assert_eq!(v.check("d").unwrap().status, Status::Certified);
    close(
        v.conclusion("b_bound").unwrap().value.upper(),
        4.770671,
        D6,
        "T7(b) upper",
    );
    close(
        v.conclusion("d_bound").unwrap().value.upper(),
        4.081785,
        D6,
        "T7(d) upper",
    );
}

#[test]
fn t8_t9_t10_numbers() {
    // T10: (a, b, c) = (√2, 1, 1) and (2, 2, 1) ⇒ Lip = 1.
    for (a, b, c) in [(2f64.sqrt(), 1.0, 1.0), (2.0, 2.0, 1.0)] {
        let v = t10::check(&T10Input {
            epsilon: 0.5,
            ball: Ball::L2,
            per_layer: Some(Value::upper_bound(a, 0.0)),
            abs_product: Some(Value::upper_bound(b, 0.0)),
            midpoint_radius: Some(Value::upper_bound(c, 0.0)),
            sampled_jacobian_norms: vec![1.0],
            sampled_slopes: vec![1.0],
            uses_libm: false,
            monotone_activation: true,
        })
        .unwrap();
        assert_eq!(v.conclusion("lipschitz").unwrap().value.upper(), 1.0);
    }
    // T8: ε = 0.5, ε_y = 0, uniform I, L_i = 1 ⇒ E|f(x) − y| ≤ 0.5.
    let p = T8Point {
        residual_norm: Value::exact(0.0, 0.0),
        lipschitz: Value::upper_bound(1.0, 0.0),
        jacobian_norm: None,
        certified: None,
    };
    let v = t8::check(&T8Input {
        epsilon: 0.5,
        epsilon_y: 0.0,
        points: vec![p; 3],
        weights: None,
        k: None,
        theory: None,
        coverage: None,
        failure: None,
        mean_x_norm: None,
    })
    .unwrap();
    assert_eq!(v.conclusion("expected_error").unwrap().value.upper(), 0.5);
    // T9: x_0 = 1, τ = 0.5, L = 1 for every ε: radius 0.5 (1 − O(u) allowed), ε = 0.5 certified.
    let r = radius_for_bound(0.5, 1.0);
    assert!((0.5 * (1.0 - 1e-15)..=0.5).contains(&r));
    assert_eq!(
        regression_check(0.5, Value::upper_bound(1.0, 0.0), 0.5).status,
        Status::Certified
    );
}

#[test]
fn every_golden_verdict_serializes_with_finite_numbers() {
    for (b, s, _, _, d, eta2, ..) in ROWS {
        let mut i = t5_input(b, s, eta2, Value::interval(d, d));
        i.diagnostics.trace_h = Some(Value::exact(6.0, 0.0));
        i.diagnostics.nonuniformity = Some(Value::exact(S, 0.0));
        let v = t5::check(&i).unwrap();
        assert!(v.is_well_formed());
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("null") && !json.contains("NaN"), "{json}");
        let back: flatcert_bounds::Verdict = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        if b == 3 {
            // p = 0: the trace and non-uniformity bounds are +∞, reported as vacuous.
            assert!(json.contains("\"+inf\""));
            assert!(
                v.check("necessary_trace")
                    .unwrap()
                    .statement
                    .contains("vacuous")
            );
        }
    }
}
