//! Certify at any scale (issue 11): the randomized λ_max(G) bound of THEORY §3 item 8, T4 and
//! T5(i) past the Gram limit, `--delta` / `--max-products`, the "budget exhausted" outcome,
//! `measure` → `bound`, `stability` at scale, and the confidence labels. The bundled example
//! (n = 256, C = 10, nC = 2560) is forced onto the operator path with `--gram-limit 100`.

mod common;

use common::*;
use serde_json::Value;

fn hypothesis<'a>(cert: &'a Value, theorem: &str, name: &str) -> &'a Value {
    cert["verdicts"][theorem]["hypotheses"]
        .as_array()
        .and_then(|h| h.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{theorem}.{name} missing: {}", cert["verdicts"][theorem]))
}

fn conclusion<'a>(cert: &'a Value, theorem: &str, name: &str) -> &'a Value {
    cert["verdicts"][theorem]["conclusions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .map(|c| &c["value"])
        .unwrap_or_else(|| panic!("{theorem}.{name} missing"))
}

/// Bad `--delta` and `--max-products` values are usage errors (exit 2) naming the flag, for every
/// command that takes them, before any computation.
#[test]
fn bad_delta_and_max_products_exit_2() {
    for cmd in ["certify", "measure", "stability"] {
        for bad in ["0", "1", "-0.5", "1.5", "nan"] {
            expect_bad_input(
                flatcert().args([cmd, "--quiet", "--delta", bad]),
                &["--delta"],
            );
        }
        for bad in ["0", "1"] {
            expect_bad_input(
                flatcert().args([cmd, "--quiet", "--max-products", bad]),
                &["--max-products"],
            );
        }
    }
}

/// The bundled example on the operator path at its training (η, B) = (0.2, 16): T4 and T5 are
/// decided with confidence 1 − δ, the certificate says so everywhere (JSON, table, Markdown), and
/// T5 is decided by T5(i). THEORY T5(i)'s own example uses these numbers: η_suff(16) ≈ 0.2341.
#[test]
fn operator_path_certifies_with_confidence() {
    let fx = Fx::new();
    let out = fx.out("c.json");
    let (code, so, se) = run_cmd(
        flatcert()
            .args(["certify", "--quiet", "--gram-limit", "100", "--json"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{so}{se}");
    let cert = read_json(&out);
    let s = &cert["summary"];
    assert_eq!(s["status"], "certified");
    assert_eq!(s["delta"], 1e-9);
    assert!((s["confidence"].as_f64().unwrap() - (1.0 - 1e-9)).abs() < 1e-15);
    for (t, name) in [("T4", "gd_condition"), ("T5", "stability")] {
        let h = hypothesis(&cert, t, name);
        assert_eq!(h["status"], "certified", "{h}");
        assert_eq!(h["delta"], 1e-9, "{h}");
    }
    assert!(
        hypothesis(&cert, "T5", "stability")["statement"]
            .as_str()
            .unwrap()
            .contains("T5(i)")
    );
    let m = &cert["measurements"];
    let (lo, up) = (
        m["gauss_newton_lambda_max_lower"]["value"]
            .as_f64()
            .unwrap(),
        m["gauss_newton_lambda_max_upper"]["value"]
            .as_f64()
            .unwrap(),
    );
    assert!(lo <= up, "{lo} > {up}");
    assert_eq!(m["gauss_newton_lambda_max_upper"]["kind"], "upper");
    assert_eq!(m["gauss_newton_lambda_max_upper"]["delta"], 1e-9);
    // η_suff(16) from the certificate's own numbers (p = 240/(16·255)).
    let p = 240.0 / (16.0 * 255.0);
    let l = &m["per_sample_lambda_max"];
    let l_up = l["value"].as_f64().unwrap() + l["tol"].as_f64().unwrap();
    let expect = 2.0 / ((1.0 - p) * up + p * l_up);
    let suff = conclusion(&cert, "T5", "eta_suff")["value"]
        .as_f64()
        .unwrap();
    assert!(
        (suff - expect).abs() <= 1e-12 * expect,
        "{suff} vs {expect}"
    );
    // The run stops as soon as the verdicts at η = 0.2 are decided, so its upper bound (and
    // η_suff) is looser than the exact λ_max(G)'s: between η and the Gram path's 0.2341.
    assert!(suff > 0.2 && suff <= 0.23411, "{suff}");
    // The table never says plain "CERTIFIED" for these.
    let (_, table, _) = run_cmd(flatcert().args(["certify", "--quiet", "--gram-limit", "100"]));
    assert!(
        table.contains("T4  First moment (the GD condition)  —  CERTIFIED (confidence 1 − 1e-9)"),
        "{table}"
    );
    assert!(
        table.contains("summary: CERTIFIED (confidence 1 − 1e-9)"),
        "{table}"
    );
    let (_, md, _) = run_cmd(flatcert().args([
        "certify",
        "--quiet",
        "--gram-limit",
        "100",
        "--format",
        "markdown",
    ]));
    assert!(md.contains("**CERTIFIED (confidence 1 − 1e-9)**"), "{md}");
    // verify recomputes everything, the randomized bound included (same seed), and agrees.
    let (code, vo, ve) = run_cmd(flatcert().arg("verify").arg(&out));
    assert_eq!(code, 0, "{vo}{ve}");
}

/// The golden number of THEORY T5(i): on the Gram path (deterministic λ_max(G)) the bundled
/// example has η_suff(16) = 2/[(1−p)·5.8704 + p·51.310] = 0.2341, computed from the certificate's
/// own upper sides of λ_max(G) and max_i λ_i; T5(i) certifies η = 0.2 without the exact route.
#[test]
fn gram_path_eta_suff_is_the_theory_example() {
    let fx = Fx::new();
    let out = fx.out("c.json");
    let (code, so, se) = run_cmd(
        flatcert()
            .args(["certify", "--quiet", "--k", "2", "--json"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{so}{se}");
    let cert = read_json(&out);
    let m = &cert["measurements"];
    let a = m["gauss_newton_lambda_max"]["value"].as_f64().unwrap();
    assert_eq!(m["gauss_newton_lambda_max"]["kind"], "upper");
    let l = &m["per_sample_lambda_max"];
    let l_up = l["value"].as_f64().unwrap() + l["tol"].as_f64().unwrap();
    let p = 240.0 / (16.0 * 255.0);
    let expect = 2.0 / ((1.0 - p) * a + p * l_up);
    let suff = conclusion(&cert, "T5", "eta_suff")["value"]
        .as_f64()
        .unwrap();
    assert!(
        (suff - expect).abs() <= 1e-12 * expect,
        "{suff} vs {expect}"
    );
    assert!((suff - 0.2341).abs() < 5e-5, "THEORY T5(i) example: {suff}");
    let h = hypothesis(&cert, "T5", "stability");
    assert_eq!(h["status"], "certified");
    assert!(
        h.get("delta").is_none(),
        "deterministic on the Gram path: {h}"
    );
    assert!(m.get("mean_square_dtilde_lambda_max").is_none());
}

/// Above η_GD*: T4 is violated on the deterministic Lanczos lower bound, so the violation carries
/// no confidence; T5 is refuted by T5(g) (η*_2 ≤ η_GD*).
#[test]
fn operator_path_refutes_deterministically() {
    let fx = Fx::new();
    let out = fx.out("c.json");
    let (code, _, se) = run_cmd(
        flatcert()
            .args(["certify", "--quiet", "--gram-limit", "100", "--lr", "0.4"])
            .arg("--json")
            .arg(&out),
    );
    assert_eq!(code, 1, "{se}");
    let cert = read_json(&out);
    for (t, name) in [("T4", "gd_condition"), ("T5", "stability")] {
        let h = hypothesis(&cert, t, name);
        assert_eq!(h["status"], "violated", "{h}");
        assert!(h.get("delta").is_none(), "{h}");
    }
    assert!(cert["summary"].get("delta").is_none());
}

/// A budget too small to decide: T4 and T5 inconclusive (exit 1), and a note gives the products
/// used and the bracket whose gap is still open.
#[test]
fn budget_exhausted_is_inconclusive_with_the_gap() {
    let fx = Fx::new();
    let out = fx.out("c.json");
    let (code, so, se) = run_cmd(
        flatcert()
            .args([
                "certify",
                "--quiet",
                "--gram-limit",
                "100",
                "--max-products",
                "3",
                "--json",
            ])
            .arg(&out),
    );
    assert_eq!(code, 1, "{so}{se}");
    let cert = read_json(&out);
    assert_eq!(
        hypothesis(&cert, "T4", "gd_condition")["status"],
        "inconclusive"
    );
    let notes = cert["measurements"]["notes"].to_string();
    assert!(notes.contains("3 operator products (budget 3)"), "{notes}");
    assert!(notes.contains("the gap is still open"), "{notes}");
    assert_eq!(
        cert["measurements"]["gauss_newton_lanczos_products"]["value"],
        3.0
    );
}

/// `measure` on the operator path emits `gauss_newton_lambda_max_upper` (kind upper, with its
/// confidence), and `bound` decides T4 and T5(i) from that document as `certify` does.
#[test]
fn measure_then_bound_at_scale() {
    let fx = Fx::new();
    let m = fx.out("m.json");
    let (code, _, se) = run_cmd(
        flatcert()
            .args(["measure", "--quiet", "--gram-limit", "100", "--json"])
            .arg(&m),
    );
    assert_eq!(code, 0, "{se}");
    let doc = read_json(&m);
    let up = &doc["gauss_newton_lambda_max_upper"];
    assert_eq!(up["kind"], "upper", "{up}");
    assert_eq!(up["delta"], 1e-9, "{up}");
    assert!(
        up["value"].as_f64().unwrap()
            >= doc["gauss_newton_lambda_max_lower"]["value"]
                .as_f64()
                .unwrap()
    );
    let b = fx.out("b.json");
    let (code, so, se) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&m)
            .args(["--lr", "0.2", "--batch", "16", "--json"])
            .arg(&b),
    );
    assert!(code == 0 || code == 1, "{so}{se}");
    let bd = read_json(&b);
    for (t, name) in [("T4", "gd_condition"), ("T5", "stability")] {
        let h = hypothesis(&bd, t, name);
        assert_eq!(h["status"], "certified", "{t}: {h}");
        assert_eq!(h["delta"], 1e-9, "{h}");
    }
}

/// `stability` past the Gram limit: a bracket for every B from T5(i) and T5(g), verdicts at η with
/// their confidence, the trained point, JSON and SVG. At B = n (p = 0) η_suff = 2/upper(λ_max) is
/// the lower end of η_GD*; the brackets widen as B shrinks and always contain the B = n value's
/// ordering (η_suff increases with B).
#[test]
fn stability_at_scale() {
    let fx = Fx::new();
    let (j, svg) = (fx.out("s.json"), fx.out("s.svg"));
    let (code, so, se) = run_cmd(
        flatcert()
            .args(["stability", "--quiet", "--gram-limit", "100", "--json"])
            .arg(&j)
            .arg("--plot")
            .arg(&svg),
    );
    assert_eq!(code, 1, "B = 1 is not certified at η = 0.2: {so}{se}");
    assert!(so.contains("matrix-free (T5(i), T5(g))"), "{so}");
    let doc = read_json(&j);
    assert!(doc.get("r").is_none());
    let rows = doc["rows"].as_array().unwrap();
    let mut last = 0.0;
    for r in rows {
        let ms = &r["mean_square_critical_lr"];
        let lo = ms["lower"].as_f64().expect("η_suff > 0");
        let hi = ms["upper"].as_f64().expect("(g) upper end");
        assert!(lo <= hi, "{r}");
        assert!(lo >= last, "η_suff must grow with B: {r}");
        last = lo;
        assert_eq!(ms["delta"], 1e-9, "{r}");
    }
    let full = rows.last().unwrap();
    assert_eq!(full["batch"], 256);
    let gd_lo = full["gd_critical_lr"]["lower"].as_f64().unwrap();
    let suff = full["mean_square_critical_lr"]["lower"].as_f64().unwrap();
    assert!((suff - gd_lo).abs() <= 1e-12 * gd_lo, "{suff} vs {gd_lo}");
    let b16 = rows.iter().find(|r| r["batch"] == 16).unwrap();
    assert_eq!(b16["verdict"]["mean_square"], "certified stable");
    assert_eq!(b16["verdict"]["delta"], 1e-9);
    assert_eq!(doc["marker"]["batch"], 16);
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") || svg_text.contains("<svg"));
}
