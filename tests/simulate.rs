//! End-to-end tests of `flatcert simulate` (issue 5 item 1): the bundled example with a short
//! run, a tiny interpolating user model with every prediction, and the one-line exit-2 contract
//! for bad flags (no output file left behind).

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::*;
use flatcert::Activation;
use flatcert::testutil::{random_data, random_mlp};
use serde_json::Value;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("valid JSON")
}

fn finite(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite(), "{what} = {x} is not finite");
    x
}

fn all_finite(v: &Value, what: &str) {
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"));
    assert!(!arr.is_empty(), "{what} is empty");
    for (i, x) in arr.iter().enumerate() {
        finite(x, &format!("{what}[{i}]"));
    }
}

/// Shared checks of a simulate report with `ks` and `deltas`.
fn check_report(doc: &Value, ks: &[u64], deltas: usize, steps: u64) {
    assert_eq!(doc["schema"], "flatcert.simulate/1");
    let lin = &doc["linearized"];
    let times = lin["times"].as_array().expect("times");
    assert_eq!(times.first().and_then(Value::as_u64), Some(0));
    assert_eq!(times.last().and_then(Value::as_u64), Some(steps));
    all_finite(&lin["trial0_log_norm"], "trial0_log_norm");
    finite(&lin["seconds"], "linearized.seconds");
    let moments = lin["moments"].as_array().expect("moments");
    assert_eq!(moments.len(), ks.len());
    for (m, &k) in moments.iter().zip(ks) {
        assert_eq!(m["k"].as_u64(), Some(k));
        all_finite(&m["log_mean"], "log_mean");
        assert_eq!(m["log_mean"].as_array().map(Vec::len), Some(times.len()));
        let fit = &m["fit"];
        let rate = finite(&fit["rate"], "fit.rate");
        assert!(rate > 0.0);
        let ci = fit["ci"].as_array().expect("ci");
        let (lo, hi) = (finite(&ci[0], "ci.lo"), finite(&ci[1], "ci.hi"));
        assert!(lo <= hi);
        finite(&fit["slope"], "fit.slope");
        finite(&fit["typical_rate"], "fit.typical_rate");
        assert!(m["comparison"].is_string());
    }
    let runs = doc["true_sgd"].as_array().expect("true_sgd");
    assert_eq!(runs.len(), deltas);
    for r in runs {
        finite(&r["delta"], "delta");
        all_finite(&r["loss"], "loss");
        all_finite(&r["distance"], "distance");
        finite(&r["start_loss"], "start_loss");
        assert!(r["escaped"].is_boolean());
        assert!(r["prediction"].is_string());
    }
    finite(&doc["forcing"]["kick_per_step"], "forcing.kick_per_step");
    finite(&doc["timing"]["total"], "timing.total");
}

#[test]
fn bundled_example_runs_quickly() {
    let fx = Fx::new();
    let out = flatcert()
        .args([
            "simulate",
            "--steps",
            "40",
            "--trials",
            "4",
            "--deltas",
            "1e-3,1e-1",
            "--predict",
            "none",
            "--quiet",
        ])
        .arg("--json")
        .arg(fx.out("s.json"))
        .arg("--plot")
        .arg(fx.out("s.svg"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("η = 0.2 (checkpoint metadata)"), "{stdout}");
    assert!(stdout.contains("B = 16 (checkpoint metadata)"), "{stdout}");
    let doc = read_json(&fx.out("s.json"));
    check_report(&doc, &[2, 4], 2, 40);
    assert_eq!(doc["config"]["lr"].as_f64(), Some(0.2));
    assert_eq!(doc["config"]["batch"].as_u64(), Some(16));
    assert_eq!(doc["inputs"]["embedded"], true);
    let svg = std::fs::read_to_string(fx.out("s.svg")).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
}

/// A tiny interpolating problem: tanh 3-4-1, n = 6, y := f(x).
fn interpolating(fx: &Fx) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mlp = random_mlp(&[3, 4, 1], Activation::Tanh, 5);
    let x = random_data(3, 6, 6);
    let y = mlp.forward(x.as_view());
    (
        fx.model("m.safetensors", &mlp),
        fx.npy("x.npy", x.as_slice(), 6, 3),
        fx.npy("y.npy", y.as_slice(), 6, 1),
    )
}

#[test]
fn tiny_model_gets_every_prediction() {
    let fx = Fx::new();
    let (m, x, y) = interpolating(&fx);
    let out = flatcert()
        .arg("simulate")
        .arg("--model")
        .arg(&m)
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .args([
            "--lr", "0.5", "--batch", "2", "--steps", "200", "--trials", "16", "--seed", "3",
            "--quiet",
        ])
        .arg("--json")
        .arg(fx.out("s.json"))
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = read_json(&fx.out("s.json"));
    check_report(&doc, &[2, 4], 3, 200);
    let pred = &doc["prediction"];
    finite(&pred["mean_square"]["eta_star_lower"], "eta_star_lower");
    assert!(pred["mean_square"]["verdict"].is_string());
    for m in pred["moments"].as_array().expect("moments") {
        finite(&m["lambda_max"], "lambda_max(Q_k)");
    }
    all_finite(
        &doc["linearized"]["exact_log_second_moment"],
        "exact_log_second_moment",
    );
    finite(&doc["linearized"]["exact_window_rate"], "exact_window_rate");
    assert_eq!(doc["config"]["lr_source"], "--lr");
}

#[test]
fn bad_flags_exit_2_with_one_line_and_no_output() {
    let fx = Fx::new();
    let (m, x, y) = interpolating(&fx);
    let cases: [(&[&str], &str); 7] = [
        (&["--lr", "0"], "--lr"),
        (&["--lr", "-1"], "--lr"),
        (&["--lr", "nan"], "--lr"),
        (&["--lr", "0.1", "--batch", "0"], "--batch"),
        (&["--lr", "0.1", "--batch", "7"], "--batch"),
        (
            &["--lr", "0.1", "--batch", "2", "--trials", "0"],
            "--trials",
        ),
        (
            &["--lr", "0.1", "--batch", "2", "--deltas", "0"],
            "--deltas",
        ),
    ];
    for (flags, needle) in cases {
        let mut cmd: Command = flatcert();
        cmd.arg("simulate")
            .arg("--model")
            .arg(&m)
            .arg("--x")
            .arg(&x)
            .arg("--y")
            .arg(&y)
            .args(flags)
            .args(["--steps", "5", "--quiet"])
            .arg("--json")
            .arg(fx.out("s.json"))
            .arg("--plot")
            .arg(fx.out("s.svg"));
        expect_bad_input(&mut cmd, &[needle]);
        fx.assert_no_output();
    }
    // Odd or out-of-range k, and bad flags on the bundled example.
    for flags in [
        &["--k", "3"][..],
        &["--k", "2,10"][..],
        &["--batch", "0"][..],
        &["--batch", "257"][..],
        &["--trials", "0"][..],
        &["--lr=-0.5"][..],
    ] {
        let mut cmd: Command = flatcert();
        cmd.arg("simulate")
            .args(flags)
            .args(["--steps", "5", "--predict", "none", "--quiet"])
            .arg("--json")
            .arg(fx.out("s.json"));
        expect_bad_input(&mut cmd, &["invalid argument"]);
        fx.assert_no_output();
    }
}

/// Issue 12 item 7: `simulate` takes the same `--lr-convention` names as certify and stability;
/// PyTorch's reduction='sum' step η_torch is η = 2B·η_torch in the theory convention.
#[test]
fn lr_convention_converts_to_the_theory_step() {
    let fx = Fx::new();
    let (m, x, y) = interpolating(&fx);
    let run = |conv: &str| {
        flatcert()
            .arg("simulate")
            .arg("--model")
            .arg(&m)
            .arg("--x")
            .arg(&x)
            .arg("--y")
            .arg(&y)
            .args(["--lr", "0.125", "--lr-convention", conv, "--batch", "2"])
            .args([
                "--steps",
                "10",
                "--trials",
                "2",
                "--predict",
                "none",
                "--quiet",
            ])
            .arg("--json")
            .arg(fx.out("s.json"))
            .output()
            .expect("run")
    };
    let out = run("torch-sum");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = read_json(&fx.out("s.json"));
    assert_eq!(doc["config"]["lr"].as_f64(), Some(0.5));
    let out = run("adam");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lr-convention"));
}

/// Issue 12 item 7, one rank policy: at (B, η) = (4, 0.2) on the bundled example the rank-256
/// bracket straddles η (η*(4) ∈ [0.1755, 0.2540], docs/validation.md), so a fixed cap of 256
/// said "inconclusive" where `certify` certifies at rank 512. `simulate --predict auto` now decides
/// the verdict at η with certify's rank search and agrees with certify's T5.
#[test]
fn simulate_decides_the_verdict_at_eta_as_certify_does() {
    let fx = Fx::new();
    let out = flatcert()
        .args([
            "simulate", "--batch", "4", "--lr", "0.2", "--steps", "5", "--trials", "2", "--deltas",
            "1e-3", "--quiet", "--json",
        ])
        .arg(fx.out("s.json"))
        .output()
        .expect("run flatcert");
    assert!(out.status.code().is_some(), "{out:?}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.out("s.json")).expect("JSON")).expect("valid");
    let ms = &doc["prediction"]["mean_square"];
    assert_eq!(ms["verdict"], "certified stable", "{ms}");
    let lo = ms["eta_star_lower"].as_f64().unwrap();
    assert!(lo > 0.2 && lo < 0.2541, "{ms}");
}
