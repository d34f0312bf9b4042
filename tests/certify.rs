//! End-to-end tests of `flatcert certify`, `flatcert bound` and `flatcert verify` (issue 4 items
//! 4–6): the THEORY §5 golden example through the CLI and the library, the bundled example at its
//! training η and at 4× η, the bound calculator against certify, verify against tampering, and the
//! exit-code contract for bad flags.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use flatcert::Dataset;
use flatcert::certify::{Certificate, Plan, run};
use serde_json::Value;

/// The golden example as files: (model, x, y).
fn golden_files(fx: &Fx) -> (PathBuf, PathBuf, PathBuf) {
    (
        fx.model("abs.safetensors", &flatcert::testutil::abs_net()),
        fx.npy("x.npy", &[-1.0, 1.0, 2.0], 3, 1),
        fx.npy("y.npy", &[1.0, 1.0, 2.0], 3, 1),
    )
}

fn certify_cmd(model: &Path, x: &Path, y: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = flatcert();
    cmd.arg("certify")
        .arg("--model")
        .arg(model)
        .arg("--x")
        .arg(x)
        .arg("--y")
        .arg(y)
        .args(extra);
    cmd
}

/// Run; return (exit code, stdout, stderr).
fn run_cmd(cmd: &mut assert_cmd::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run flatcert");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!se.contains("panicked"), "panic: {se}");
    (out.status.code().unwrap_or(-1), so, se)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("JSON written")).expect("valid JSON")
}

/// Every number in the document is finite (serde_json cannot even hold a non-finite one), and the
/// only non-numeric stand-ins are the documented "+inf"/"-inf" strings.
fn assert_all_finite(v: &Value, path: &str) {
    match v {
        Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path}"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_all_finite(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| assert_all_finite(x, &format!("{path}.{k}"))),
        Value::String(s) => assert!(
            !["NaN", "nan", "inf", "Infinity"].contains(&s.as_str()),
            "{path}: {s}"
        ),
        _ => {}
    }
}

fn check_status(cert: &Value, theorem: &str, check: &str) -> String {
    let v = &cert["verdicts"][theorem];
    v["hypotheses"]
        .as_array()
        .and_then(|h| h.iter().find(|c| c["name"] == check))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_else(|| panic!("{theorem}.{check} missing: {v}"))
        .to_string()
}

fn conclusion_lower(cert: &Value, theorem: &str, name: &str) -> f64 {
    let c = cert["verdicts"][theorem]["conclusions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{theorem}.{name} missing"));
    let v = &c["value"];
    v["lo"]
        .as_f64()
        .or_else(|| v["value"].as_f64())
        .expect("finite lower side")
}

/// The schema fields every certificate has.
fn assert_schema(cert: &Value) {
    assert_eq!(cert["schema"], "flatcert.certificate/v1");
    for key in ["inputs", "hyper", "measurements", "verdicts", "summary"] {
        assert!(cert.get(key).is_some(), "missing {key}");
    }
    for key in [
        "eta",
        "lr_given",
        "lr_convention",
        "eta_torch_mse",
        "batch",
        "n",
        "p",
        "pi",
        "k",
        "sampling",
        "sampling_model",
        "seed",
        "curvature",
        "flatcert_version",
    ] {
        assert!(cert["hyper"].get(key).is_some(), "hyper.{key} missing");
    }
    let verdicts = cert["verdicts"].as_object().expect("verdicts object");
    let keys: Vec<&String> = verdicts.keys().collect();
    assert_eq!(keys.len(), 11, "{keys:?}");
    let ids = (1..=10).map(|t| format!("T{t}")).chain(["Min".to_string()]);
    for t in ids {
        let v = &cert["verdicts"][&t];
        assert!(
            v.get("hypotheses").is_some() || v.get("not_computed").is_some(),
            "{t}: {v}"
        );
    }
    let s = &cert["summary"];
    assert!(
        s["sampling_caveat"]
            .as_str()
            .unwrap()
            .contains("per-epoch reshuffling is not covered")
    );
    for key in [
        "status",
        "exit_code",
        "violated",
        "inconclusive",
        "assumed",
        "not_computed",
    ] {
        assert!(s.get(key).is_some(), "summary.{key} missing");
    }
    assert_all_finite(cert, "cert");
}

// ------------------------------------------------------------------------------------------
// THEORY §5 golden values.
// ------------------------------------------------------------------------------------------

#[test]
fn golden_b1_eta_022_is_certified_stable_with_the_golden_margin() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let out = fx.out("c.json");
    let (code, so, _) = run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &["--lr", "0.22", "--batch", "1", "--k", "2", "--json"],
        )
        .arg(&out),
    );
    let cert = read_json(&out);
    assert_schema(&cert);
    assert_eq!(check_status(&cert, "T5", "stability"), "certified");
    let margin = conclusion_lower(&cert, "T5", "relative_margin");
    assert!((margin - 0.0912822842).abs() < 1e-6, "margin {margin}");
    assert_eq!(code as i64, cert["summary"]["exit_code"].as_i64().unwrap());
    assert!(so.contains("T5"), "{so}");
    // Exact interpolation, proven (every operation exact, ReLU with no near-kink unit): no
    // Gauss–Newton substitution, and the residual's tol is 0.
    assert!(cert["summary"]["gauss_newton"].is_null());
    assert_eq!(
        cert["measurements"]["max_abs_residual"]["tol"].as_f64(),
        Some(0.0)
    );
    assert_eq!(cert["hyper"]["kinks"], "assume");
}

#[test]
fn golden_kinks_strict_without_near_kink_units_still_certifies() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let out = fx.out("c.json");
    let (code, _, _) = run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &[
                "--lr", "0.22", "--batch", "1", "--k", "2", "--kinks", "strict", "--json",
            ],
        )
        .arg(&out),
    );
    let cert = read_json(&out);
    assert_eq!(cert["hyper"]["kinks"], "strict");
    assert_eq!(
        cert["measurements"]["near_kink_units"]["value"].as_f64(),
        Some(0.0)
    );
    assert_eq!(code, 0, "{}", cert["summary"]);
}

#[test]
fn golden_b2_eta_03_margin() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let out = fx.out("c.json");
    run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &["--lr", "0.3", "--batch", "2", "--k", "2", "--json"],
        )
        .arg(&out),
    );
    let cert = read_json(&out);
    assert_eq!(check_status(&cert, "T5", "stability"), "certified");
    // T5(i) decides first (THEORY T5, rev. 2): p = 1/4, a = 4.6332385972, L = 10, so
    // η_suff = 2/(0.75a + 2.5) = 0.3347320 and the certified margin is η_suff/0.3 − 1.
    let suff = 2.0 / (0.75 * 4.6332385972 + 0.25 * 10.0);
    let margin = conclusion_lower(&cert, "T5", "relative_margin");
    assert!(
        (margin - (suff / 0.3 - 1.0)).abs() < 1e-6,
        "margin {margin}"
    );
    // At η = 0.35 > η_suff, (i) is inconclusive and the exact route (f) decides: η*(2) =
    // 0.3·(1 + 0.2095798426) (THEORY §5), margin η*/0.35 − 1.
    run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &["--lr", "0.35", "--batch", "2", "--k", "2", "--json"],
        )
        .arg(&out),
    );
    let cert = read_json(&out);
    assert_eq!(check_status(&cert, "T5", "stability"), "certified");
    let margin = conclusion_lower(&cert, "T5", "relative_margin");
    let eta_star = 0.3 * (1.0 + 0.2095798426);
    assert!(
        (margin - (eta_star / 0.35 - 1.0)).abs() < 1e-6,
        "margin {margin}"
    );
}

#[test]
fn golden_above_eta_star_is_not_certified() {
    // η = 0.25 > η*_2 = 0.2400821025 at B = 1: T5 violated, exit 1, the report says which.
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let out = fx.out("c.json");
    let (code, so, _) =
        run_cmd(certify_cmd(&m, &x, &y, &["--lr", "0.25", "--batch", "1", "--json"]).arg(&out));
    assert_eq!(code, 1, "{so}");
    let cert = read_json(&out);
    assert_eq!(check_status(&cert, "T5", "stability"), "violated");
    assert_eq!(cert["summary"]["status"], "not_certified");
    assert!(so.contains("NOT CERTIFIED"), "{so}");
    assert!(so.contains("T5.stability"), "{so}");
}

#[test]
fn mean_square_refutation_propagates_to_every_moment_hypothesis() {
    // η = 0.25 > η*_2 at B = 1 (T5 violated). k-th moment stability needs η ≤ η*_k ≤ η*_2
    // (THEORY T6), so the T5 refutation also refutes k = 4, and T6, T7 and T8 (whose theory
    // route assumes T7's hypotheses) must report it as violated rather than "assumed".
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let out = fx.out("c.json");
    let (code, so, _) = run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &[
                "--lr",
                "0.25",
                "--batch",
                "1",
                "--k",
                "2,4",
                "--epsilon",
                "0.1",
                "--json",
            ],
        )
        .arg(&out),
    );
    assert_eq!(code, 1, "{so}");
    let cert = read_json(&out);
    for (theorem, check) in [
        ("T6", "k_stable_k2"),
        ("T6", "k_stable_k4"),
        ("T7", "k_stable_k2"),
        ("T7", "k_stable_k4"),
    ] {
        assert_eq!(
            check_status(&cert, theorem, check),
            "violated",
            "{theorem}.{check}"
        );
    }
    // T8: the refuted hypothesis is shown, and the theory route (d) that needs it is not
    // computed; the bounds (a)–(c), which do not use stability, keep their own status.
    let t8 = &cert["verdicts"]["T8"];
    let diag = t8["diagnostics"]
        .as_array()
        .and_then(|d| d.iter().find(|c| c["name"] == "k_stable"))
        .unwrap_or_else(|| panic!("T8.k_stable missing: {t8}"));
    assert_eq!(diag["status"], "violated");
    let conclusions = t8["conclusions"].as_array().expect("conclusions");
    assert!(
        conclusions.iter().all(|c| c["name"] != "theory_route"),
        "{t8}"
    );
    assert!(
        t8["notes"]
            .to_string()
            .contains("Theory route (d) not computed")
    );
}

#[test]
fn library_run_matches_the_golden_bracket_and_round_trips() {
    let data = Dataset::new(
        vec![-1.0, 1.0, 2.0],
        3,
        1,
        Some((vec![1.0, 1.0, 2.0], 1)),
        "x",
        "y",
    )
    .unwrap();
    let mut plan = Plan::new(0.22, 1);
    plan.ks = vec![2];
    let cert = run(&flatcert::testutil::abs_net(), &data, None, &plan).unwrap();
    let t5 = cert.verdicts.verdict("T5").unwrap();
    let es = t5.conclusion("eta_star").unwrap().value;
    assert!(es.lower() <= 0.2400821025 + 1e-9 && 0.2400821025 - 1e-6 <= es.lower());
    let text = cert.to_json().unwrap();
    let back = Certificate::from_json(&text, "mem").unwrap();
    assert_eq!(back, cert);
    // In-memory data: nothing to verify from.
    assert!(cert.inputs.files.is_none());
}

// ------------------------------------------------------------------------------------------
// The bundled example.
// ------------------------------------------------------------------------------------------

#[test]
fn bundled_example_certifies_consistently_and_verifies() {
    let fx = Fx::new();
    let out = fx.out("digits.json");
    let (code, so, se) = run_cmd(flatcert().args(["certify", "--json"]).arg(&out));
    assert!(code == 0 || code == 1, "exit {code}: {se}");
    let cert = read_json(&out);
    assert_schema(&cert);
    assert_eq!(code as i64, cert["summary"]["exit_code"].as_i64().unwrap());
    assert_eq!(
        cert["summary"]["status"],
        if code == 0 {
            "certified"
        } else {
            "not_certified"
        }
    );
    // Trained with η = 0.2, B = 16 (metadata), theory convention; torch equivalent ηC/2 = 1.
    assert_eq!(cert["hyper"]["eta"], 0.2);
    assert_eq!(cert["hyper"]["batch"], 16);
    assert_eq!(cert["hyper"]["eta_torch_mse"], 1.0);
    assert!(
        cert["inputs"]["files"]["model"]["path"]
            .as_str()
            .unwrap()
            .starts_with("<embedded:")
    );
    // The residual is not 0: the Gauss–Newton substitution is said, and T7's interpolation is
    // assumed with its size.
    assert!(cert["summary"]["gauss_newton"].is_string());
    assert_eq!(check_status(&cert, "T7", "interpolation"), "assumed");
    assert!(so.contains("what this means"), "{so}");
    // Without --epsilon, T8–T10 are not computed.
    assert!(cert["verdicts"]["T8"]["not_computed"].is_string());
    let (vcode, vso, vse) = run_cmd(flatcert().arg("verify").arg(&out));
    assert_eq!(vcode, 0, "{vso}{vse}");
}

#[test]
fn bundled_example_at_four_times_eta_is_not_certified_stable() {
    let fx = Fx::new();
    let out = fx.out("digits4.json");
    let (code, so, _) = run_cmd(
        flatcert()
            .args(["certify", "--lr", "0.8", "--quiet", "--k", "2", "--json"])
            .arg(&out),
    );
    assert_eq!(code, 1, "{so}");
    let cert = read_json(&out);
    let st = check_status(&cert, "T5", "stability");
    assert!(st == "violated" || st == "inconclusive", "T5 {st}");
    assert_eq!(cert["summary"]["status"], "not_certified");
}

// ------------------------------------------------------------------------------------------
// bound and verify.
// ------------------------------------------------------------------------------------------

#[test]
fn bound_reproduces_certify_on_its_measurements() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cert_path = fx.out("c.json");
    run_cmd(certify_cmd(&m, &x, &y, &["--lr", "0.22", "--batch", "1", "--json"]).arg(&cert_path));
    let cert = read_json(&cert_path);
    let bound_path = fx.out("b.json");
    let (code, _, se) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&cert_path)
            .args(["--lr", "0.22", "--batch", "1", "--json"])
            .arg(&bound_path),
    );
    assert!(code == 0 || code == 1, "{se}");
    let b = read_json(&bound_path);
    assert_eq!(b["schema"], "flatcert.bound/v1");
    for t in ["T1", "T3", "T4", "T5", "T6", "T7"] {
        let statuses = |doc: &Value| -> Vec<(String, String)> {
            doc["verdicts"][t]["hypotheses"]
                .as_array()
                .unwrap_or_else(|| panic!("{t} not computed: {}", doc["verdicts"][t]))
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(statuses(&cert), statuses(&b), "{t}");
    }
    // T2 and T8–T10 need per-sample norms or the network.
    assert!(b["verdicts"]["T2"]["not_computed"].is_string());
    assert!(b["verdicts"]["T10"]["not_computed"].is_string());
    // At another batch size T5 is not computed, and the reason names what is missing.
    let (_, so, _) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&cert_path)
            .args(["--lr", "0.22", "--batch", "2"]),
    );
    // … T5 is decided by T5(i) (golden, p = 1/4: η_suff = 0.3347 > 0.22), and a note says
    // why the exact route of the document was not used.
    assert!(so.contains("T5  Second moment"), "{so}");
    assert!(so.contains("T5(i), sufficient"), "{so}");
    assert!(so.contains("is for B = 1"), "{so}");
}

/// `bound --format markdown` is the report of `certify --format markdown` for the calculator:
/// the source document with its SHA-256, the hyper-parameters, the same per-theorem statuses as
/// the JSON, the same exit code, and no figure links (the per-sample data is not in a document).
#[test]
fn bound_markdown_matches_its_json_and_exit_code() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cert_path = fx.out("c.json");
    run_cmd(certify_cmd(&m, &x, &y, &["--lr", "0.22", "--batch", "1", "--json"]).arg(&cert_path));
    let bound_path = fx.out("b.json");
    let (code_json, _, se) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&cert_path)
            .args(["--json"])
            .arg(&bound_path),
    );
    assert!(code_json == 0 || code_json == 1, "{se}");
    let b = read_json(&bound_path);
    let (code_md, md, se) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&cert_path)
            .args(["--format", "markdown"]),
    );
    assert_eq!(code_md, code_json, "{se}");
    assert!(md.starts_with("# flatcert bound\n"), "{md}");
    assert!(md.contains(b["source"]["sha256"].as_str().unwrap()), "{md}");
    assert!(md.contains("η = 0.22 in the theory convention"), "{md}");
    assert!(md.contains("| samples | n = 3 |"), "{md}");
    assert!(!md.contains(".svg"), "no figures without per-sample data");
    for row in b["summary"]["theorems"].as_array().unwrap() {
        let (id, status) = (
            row["theorem"].as_str().unwrap(),
            row["status"].as_str().unwrap(),
        );
        let shown = match status {
            "violated" => "**VIOLATED**",
            "inconclusive" => "**inconclusive**",
            "not_computed" => "not computed",
            other => other,
        };
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| [{id}](#")))
            .unwrap_or_else(|| panic!("no summary row for {id}:\n{md}"));
        assert!(
            line.ends_with(&format!("| {shown} |")),
            "{id}: {line} vs {status}"
        );
    }
    let verdict = if code_json == 0 {
        "**CERTIFIED**"
    } else {
        "**NOT CERTIFIED**"
    };
    assert!(md.contains(verdict), "{md}");
}

/// At the operator path T5 may not be computable; when T4 certifies first-moment instability
/// (λ_max(G) > 2/η), mean-square stability is refuted all the same (η*_2 ≤ η_GD*): T6 and T7's
/// borrowed stability is VIOLATED, T3 drops its flatness form, T5's reason says so. Golden net
/// (THEORY §5: λ_max(G) = 4.6332, tr G = 6) at B = n = 3 (p = 0) and η = 0.5: T4 is violated
/// (η > 2/λ_max = 0.4317) while T5(g)'s test Σ = I does not refute (η·λ_max²/(2 tr G) = 0.894).
#[test]
fn t4_violation_refutes_the_borrowed_stability_when_t5_is_not_computed() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cert_path = fx.out("c.json");
    let (code, _, se) = run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &["--lr", "0.5", "--batch", "3", "--gram-limit", "1", "--json"],
        )
        .arg(&cert_path),
    );
    assert_eq!(code, 1, "{se}");
    let c = read_json(&cert_path);
    let v = &c["verdicts"];
    let check = |t: &str, name: &str| -> Value {
        v[t]["hypotheses"]
            .as_array()
            .into_iter()
            .chain(v[t]["diagnostics"].as_array())
            .flatten()
            .find(|h| h["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{t}.{name} missing: {}", v[t]))
    };
    assert_eq!(check("T4", "gd_condition")["status"], "violated");
    // T5 is now computed at the operator path: T5(g)'s Σ = vvᵀ test gives λ_max(𝒟̃) ≥
    // λ_max(G)/2, and η·2.3166 = 1.158 > 1 refutes it (deterministic: no confidence).
    let t5 = check("T5", "stability");
    assert_eq!(t5["status"], "violated", "{t5}");
    assert!(t5.get("confidence").is_none(), "{t5}");
    for t in ["T6", "T7"] {
        for k in ["k_stable_k2", "k_stable_k4"] {
            let h = check(t, k);
            assert_eq!(h["status"], "violated", "{t}.{k}: {h}");
        }
    }
    let t3 = check("T3", "mean_square_stable");
    assert_eq!(t3["status"], "violated", "{t3}");
    let has_flatness = v["T3"]["conclusions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == "flatness_bound"));
    assert!(!has_flatness, "{}", v["T3"]);
    // Below η_GD* nothing is refuted: the borrowed hypotheses stay assumed.
    let (_, _, se) = run_cmd(
        certify_cmd(
            &m,
            &x,
            &y,
            &["--lr", "0.1", "--batch", "3", "--gram-limit", "1", "--json"],
        )
        .arg(&cert_path),
    );
    let v = read_json(&cert_path)["verdicts"].clone();
    let t6 = v["T6"]["hypotheses"].as_array().expect(&se).clone();
    let k2 = t6
        .iter()
        .find(|h| h["name"] == "k_stable_k2")
        .expect("k_stable_k2");
    // Below: T5(i) certifies (p = 0: η·λ_max(G) = 0.46 ≤ 2) with the randomized upper bound of
    // λ_max(G), so the borrowed k = 2 stability is certified *with confidence*, and k = 4 stays
    // assumed.
    assert_eq!(k2["status"], "certified", "{k2}");
    assert_eq!(k2["delta"], 1e-9, "{k2}");
}

/// At the operator path T5 is refuted by THEORY T5(g)'s test Σ = I when
/// η·[(1−p)λ_max(G)² + p(1/n)Σ‖H_i‖_F²]/(2 tr G) > 1. Golden net, B = 1 (p = 1): λ_i = 4, 4, 10,
/// so (1/n)Σ‖H_i‖_F² = 44, tr G = 6 and the test refutes above η = 12/44 = 0.2727 (η* = 0.24008,
/// THEORY §5). At η = 0.3 T5 is certified unstable without the Gram path; at η = 0.2 it stays not
/// computed, with the test's number in the reason.
#[test]
fn operator_path_refutes_t5_by_the_trace_test() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cert_path = fx.out("c.json");
    let run = |lr: &str| {
        let (code, _, se) = run_cmd(
            certify_cmd(
                &m,
                &x,
                &y,
                &[
                    "--lr",
                    lr,
                    "--batch",
                    "1",
                    "--k",
                    "2",
                    "--gram-limit",
                    "1",
                    "--json",
                ],
            )
            .arg(&cert_path),
        );
        assert!(code == 0 || code == 1, "{se}");
        read_json(&cert_path)
    };
    let cert = run("0.3");
    let fro = &cert["measurements"]["per_sample_fro_sq_mean"];
    let (value, tol) = (fro["value"].as_f64().unwrap(), fro["tol"].as_f64().unwrap());
    // (16 + 16 + 100)/3 exactly in exact arithmetic; the tol covers the rounding.
    assert!((value - 44.0).abs() <= tol.max(1e-13), "{fro}");
    let v = cert["verdicts"].clone();
    let t5 = &v["T5"];
    let stability = t5["hypotheses"]
        .as_array()
        .unwrap_or_else(|| panic!("T5 not computed: {t5}"))
        .iter()
        .find(|h| h["name"] == "stability")
        .expect("stability check");
    assert_eq!(
        stability["status"], "violated",
        "{stability} {}",
        t5["diagnostics"]
    );
    assert!(
        t5["notes"].to_string().contains("from the T5(g) tests"),
        "{t5}"
    );
    let k2 = v["T6"]["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "k_stable")
        .expect("T6 k_stable")
        .clone();
    assert_eq!(k2["status"], "violated", "{k2}");
    // 12/44 < 0.3 by 10%: the refutation is not a rounding accident. At η = 0.2 = 2/L (p = 1)
    // T5(i) sits exactly on its threshold (inconclusive once rounded up) and (g) gives only
    // η* ≤ 12/44: inconclusive, with the (g) bound in a note.
    let v = run("0.2")["verdicts"].clone();
    let t5 = &v["T5"];
    let stability = t5["hypotheses"]
        .as_array()
        .unwrap_or_else(|| panic!("T5 not computed: {t5}"))
        .iter()
        .find(|h| h["name"] == "stability")
        .expect("stability check");
    assert_eq!(stability["status"], "inconclusive", "{stability}");
    assert!(t5["notes"].to_string().contains("η*(B) ≤ 0.27272"), "{t5}");
}

#[test]
fn bound_on_a_measure_document_names_missing_quantities() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let mpath = fx.out("m.json");
    let out = flatcert()
        .args(["measure", "--model"])
        .arg(&m)
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .arg("--json")
        .arg(&mpath)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let (code, so, se) = run_cmd(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(&mpath)
            .args(["--lr", "0.22", "--batch", "1", "--k", "2"]),
    );
    assert!(code == 0 || code == 1, "{se}");
    assert!(so.contains("T1  Multiplicative identity"), "{so}");
    // measure emits certify's first-order extras: T3 and T7 are evaluated; T5 is computed from
    // λ_max(G) and max_i λ_i by T5(i) (p = 1: η·L = 2.2 > 2, inconclusive) and the T5(g) tests
    // (golden: λ_max(𝒟̃) ≥ 44/12, so η* ≤ 0.2727 > 0.22: not refuted); the note names the (g)
    // bound and why the exact route is absent.
    assert!(so.contains("T3  Flatness bounds input smoothness"), "{so}");
    assert!(so.contains("T7  Sobolev regularization"), "{so}");
    assert!(so.contains("T5  Second moment"), "{so}");
    assert!(so.contains("η*(B) ≤ 0.27272"), "{so}");
    assert!(so.contains("no mean_square_dtilde_lambda_max"), "{so}");
    assert!(
        so.contains("T2  not computed: missing per-sample norms"),
        "{so}"
    );
}

#[test]
fn verify_accepts_untouched_and_rejects_edits_and_changed_inputs() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cert_path = fx.out("c.json");
    run_cmd(certify_cmd(&m, &x, &y, &["--lr", "0.22", "--batch", "1", "--json"]).arg(&cert_path));
    let (code, so, se) = run_cmd(flatcert().arg("verify").arg(&cert_path));
    assert_eq!(code, 0, "{so}{se}");
    // A hand-edited number.
    let mut cert = read_json(&cert_path);
    let old = cert["measurements"]["gauss_newton_trace"]["value"]
        .as_f64()
        .unwrap();
    cert["measurements"]["gauss_newton_trace"]["value"] = serde_json::json!(old * 1.01);
    let edited = fx.path("edited.json");
    std::fs::write(&edited, serde_json::to_string_pretty(&cert).unwrap()).unwrap();
    let (code, so, _) = run_cmd(flatcert().arg("verify").arg(&edited));
    assert_eq!(code, 1, "{so}");
    assert!(so.contains("measurements.gauss_newton_trace"), "{so}");
    // A hand-edited status (the arithmetic of the check no longer gives it).
    let mut cert = read_json(&cert_path);
    let hyps = cert["verdicts"]["T5"]["hypotheses"].as_array_mut().unwrap();
    let c = hyps.iter_mut().find(|c| c["name"] == "stability").unwrap();
    c["status"] = serde_json::json!("violated");
    std::fs::write(&edited, serde_json::to_string_pretty(&cert).unwrap()).unwrap();
    let (code, so, _) = run_cmd(flatcert().arg("verify").arg(&edited));
    assert_eq!(code, 1, "{so}");
    assert!(
        so.contains("verdicts.T5.hypotheses.stability.status"),
        "{so}"
    );
    // A changed input file.
    fx.npy("y.npy", &[1.0, 1.0, 2.5], 3, 1);
    let (code, so, _) = run_cmd(flatcert().arg("verify").arg(&cert_path));
    assert_eq!(code, 1, "{so}");
    assert!(so.contains("inputs.files.y.sha256"), "{so}");
    // Not a certificate.
    let junk = fx.bytes("junk.json", b"{\"schema\": \"flatcert.measurements/v1\"}");
    expect_bad_input(flatcert().arg("verify").arg(&junk), &["schema"]);
}

/// Issue 12 item 4: `--per-point` adds every training point's T9/T10 numbers, with kinds, to the
/// certificate and the worst of them to the Markdown report; without it the section is absent.
#[test]
fn per_point_section_and_worst_points_table() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let base = [
        "--lr",
        "0.22",
        "--batch",
        "1",
        "--epsilon",
        "0.1",
        "--tau",
        "0.5",
    ];
    let json = fx.out("c.json");
    let (code, so, se) = run_cmd(
        certify_cmd(&m, &x, &y, &base)
            .args(["--per-point", "--json"])
            .arg(&json),
    );
    assert!(code == 0 || code == 1, "{so}{se}");
    let cert = read_json(&json);
    let pts = cert["per_point"]["points"].as_array().expect("per_point");
    assert_eq!(pts.len(), 3);
    assert_eq!(cert["per_point"]["epsilon"].as_f64(), Some(0.1));
    for (i, p) in pts.iter().enumerate() {
        assert_eq!(p["index"].as_u64(), Some(i as u64));
        assert_eq!(p["lipschitz"]["kind"], "upper", "{p}");
        assert!(p["certified_at_eps"].is_boolean());
        assert_eq!(p["certified_radius"]["kind"], "lower", "{p}");
        assert_eq!(p["residual_norm"]["kind"], "upper", "{p}");
    }
    // The certificate still verifies (the section is derived, not re-checked field by field).
    let (code, so, _) = run_cmd(flatcert().arg("verify").arg(&json));
    assert_eq!(code, 0, "{so}");
    let (_, md, _) =
        run_cmd(certify_cmd(&m, &x, &y, &base).args(["--per-point", "--format", "markdown"]));
    assert!(
        md.contains("## Per-point results: the 3 worst of 3 training points"),
        "{md}"
    );
    assert!(md.contains("| L_i(ε) (T10, upper) |"), "{md}");
    let (_, so, _) = run_cmd(certify_cmd(&m, &x, &y, &base).args(["--json"]).arg(&json));
    assert!(read_json(&json).get("per_point").is_none(), "{so}");
    expect_bad_input(
        &mut certify_cmd(&m, &x, &y, &["--lr", "0.22", "--batch", "1", "--per-point"]),
        &["--per-point"],
    );
}

/// Issue 12 item 5: recorded relative paths are resolved against the certificate's directory,
/// not the current one, and verify says which file it read. Run from a directory holding a
/// different `model.safetensors`, the certificate still verifies.
#[test]
fn verify_reads_recorded_paths_relative_to_the_certificate() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let dir = fx.path("");
    std::fs::rename(&m, fx.path("model.safetensors")).unwrap();
    let (code, so, se) = run_cmd(
        flatcert()
            .current_dir(&dir)
            .args([
                "certify",
                "--model",
                "model.safetensors",
                "--x",
                "x.npy",
                "--y",
                "y.npy",
            ])
            .args(["--lr", "0.22", "--batch", "1", "--json", "c.json"]),
    );
    assert_eq!(code, 0, "{so}{se}");
    assert!(x.exists() && y.exists());
    // Another directory with a different network under the same name.
    let other = tempfile::tempdir().unwrap();
    let mlp = flatcert::testutil::random_mlp(&[1, 2, 1], flatcert::Activation::Relu, 7);
    std::fs::copy(
        fx.model("other.safetensors", &mlp),
        other.path().join("model.safetensors"),
    )
    .unwrap();
    let (code, so, se) = run_cmd(
        flatcert()
            .current_dir(other.path())
            .arg("verify")
            .arg(dir.join("c.json")),
    );
    assert_eq!(code, 0, "{so}{se}");
    let want = format!(
        "read model from {}",
        dir.join("model.safetensors").display()
    );
    assert!(so.contains(&want), "{so}");
    // Without the certified file next to the certificate, the same-named file of the current
    // directory is read (and named), and its changed hash is reported.
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let (code, so, _) = run_cmd(
        flatcert()
            .current_dir(other.path())
            .arg("verify")
            .arg(dir.join("c.json")),
    );
    assert_eq!(code, 1, "{so}");
    assert!(so.contains("read model from model.safetensors"), "{so}");
    assert!(so.contains("inputs.files.model.sha256"), "{so}");
}

// ------------------------------------------------------------------------------------------
// Bad flags: exit 2 with a one-line message naming the flag; nothing written.
// ------------------------------------------------------------------------------------------

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let cases: [(&[&str], &str); 12] = [
        (&["--lr", "0", "--batch", "1"], "--lr"),
        (&["--lr", "nan", "--batch", "1"], "--lr"),
        (&["--lr", "inf", "--batch", "1"], "--lr"),
        (&["--lr", "-0.1", "--batch", "1"], "--lr"),
        (&["--lr", "0.1", "--batch", "0"], "--batch"),
        (&["--lr", "0.1", "--batch", "4"], "--batch"),
        (&["--lr", "0.1", "--batch", "1", "--k", "3"], "--k"),
        (
            &["--lr", "0.1", "--batch", "1", "--epsilon", "0"],
            "--epsilon",
        ),
        (
            &["--lr", "0.1", "--batch", "1", "--epsilon", "-1"],
            "--epsilon",
        ),
        (
            &["--lr", "0.1", "--batch", "1", "--format", "xml"],
            "--format",
        ),
        (
            &["--lr", "0.1", "--batch", "1", "--lr-convention", "adam"],
            "--lr-convention",
        ),
        (
            &["--lr", "0.1", "--batch", "1", "--kinks", "maybe"],
            "--kinks",
        ),
    ];
    for (args, flag) in cases {
        let mut cmd = certify_cmd(&m, &x, &y, args);
        cmd.arg("--json").arg(fx.out("c.json"));
        expect_bad_input(&mut cmd, &[flag]);
        fx.assert_no_output();
    }
    // No η anywhere: the golden checkpoint has no lr metadata.
    expect_bad_input(&mut certify_cmd(&m, &x, &y, &["--batch", "1"]), &["--lr"]);
    expect_bad_input(
        flatcert()
            .args(["bound", "--measurements"])
            .arg(fx.path("none.json"))
            .args(["--lr", "0.1", "--batch", "1"]),
        &["none.json"],
    );
}
