//! The library API a Rust user calls (issue 13 item 4): `Problem::bundled` → a plan built with
//! its defaults → `flatcert::stability::sweep` / `flatcert::simulate::run` → typed results, and
//! plan validation that names the field at fault.

use serde_json::Value;

use flatcert::certify::LrConventionName;
use flatcert::simulate::PredictMode;
use flatcert::{Error, Problem, SimulatePlan, SweepPlan};

/// Relative tolerance of the comparison with the pinned CLI output: the library call runs the
/// same code on the same inputs as `flatcert stability`, so only the last bits of a float
/// printed and re-parsed may differ (the pinned test itself accepts 1e-12 relative, see
/// tests/pinned.rs).
const REL_TOL: f64 = 1e-9;

/// Every difference between `got` and `want` (numbers to [`REL_TOL`]), ignoring wall-clock
/// `seconds`.
fn diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g
                .keys()
                .chain(w.keys())
                .filter(|k| *k != "seconds")
                .collect();
            for k in keys {
                match (g.get(k), w.get(k)) {
                    (Some(a), Some(b)) => diff(&format!("{path}.{k}"), a, b, out),
                    _ => out.push(format!("{path}.{k}: present on one side only")),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let close = (a - b).abs() <= REL_TOL * a.abs().max(b.abs());
            if !close {
                out.push(format!("{path}: {a} vs {b}"));
            }
        }
        _ if got == want => {}
        _ => out.push(format!("{path}: {got} vs {want}")),
    }
}

#[test]
fn sweep_on_the_bundled_problem_gives_the_cli_row() {
    let problem = Problem::bundled().expect("bundled example loads");
    assert_eq!((problem.n(), problem.outputs()), (256, 10));
    // The flags of tests/pinned.rs's stability run, with one of its two batch sizes.
    let plan = SweepPlan {
        batch: Some(vec![64]),
        t5_rank: 256,
        refine_rank: 256,
        quiet: true,
        ..SweepPlan::default()
    }
    .build()
    .expect("valid plan");
    let report = flatcert::stability::sweep(&problem, &plan).expect("sweep runs");
    assert_eq!(report.doc.rows.len(), 1);
    assert_eq!(report.plot.rows.len(), 1);
    let got = serde_json::to_value(&report.doc).expect("serializable");
    let pinned: Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/pinned/stability_bundled.json"),
        )
        .expect("pinned stability document"),
    )
    .expect("JSON");
    let want_row = pinned["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["batch"] == 64))
        .expect("pinned row B = 64");
    let mut diffs = Vec::new();
    diff("row", &got["rows"][0], want_row, &mut diffs);
    for key in [
        "eta",
        "marker",
        "gauss_newton_lambda_max",
        "residual",
        "r",
        "sampling",
    ] {
        diff(key, &got[key], &pinned[key], &mut diffs);
    }
    assert!(
        diffs.is_empty(),
        "library sweep vs pinned CLI output:\n{}",
        diffs.join("\n")
    );
    // The rendered table has the row and the verdict of the CLI.
    let table = flatcert::stability::render_table(&report.doc);
    assert!(table.contains("certified stable"), "{table}");
}

#[test]
fn simulate_runs_on_the_bundled_problem_at_its_training_eta_and_batch() {
    let problem = Problem::bundled().expect("bundled example loads");
    let plan = SimulatePlan {
        k: vec![2],
        ..SimulatePlan::default()
    }
    .steps(40, 2)
    .deltas(vec![1e-3])
    .predict(PredictMode::None)
    .quiet(true)
    .build()
    .expect("valid plan");
    let doc = flatcert::simulate::run(&problem, &plan).expect("simulation runs");
    // η and B from the checkpoint's metadata (lr = 0.2 in the theory convention, batch = 16).
    assert_eq!(doc.lr_and_batch(), (0.2, 16));
    let growth = doc.growth();
    assert_eq!(growth.len(), 1);
    assert_eq!(growth[0].0, 2);
    assert!(growth[0].1.is_some_and(f64::is_finite), "{growth:?}");
    assert_eq!(doc.true_sgd().len(), 1);
    assert!(doc.prediction().mean_square.is_none());
    let json: Value = serde_json::from_str(&doc.to_json().expect("JSON")).expect("parses");
    assert_eq!(json["schema"], "flatcert.simulate/1");
    assert_eq!(json["config"]["lr_source"], "checkpoint metadata");
    let text = flatcert::simulate::render_text(&doc);
    assert!(
        text.starts_with("flatcert simulate — model <embedded:"),
        "{text}"
    );
}

#[test]
fn plans_name_the_field_at_fault() {
    let field = |e: Error| match e {
        Error::InvalidArgument { name, .. } => name,
        other => panic!("expected InvalidArgument, got {other}"),
    };
    let e = SweepPlan::default()
        .rel_tol(2.0)
        .build()
        .expect_err("rel_tol > 1");
    assert_eq!(field(e), "rel_tol");
    let e = SweepPlan::default()
        .lr(0.1, LrConventionName::TorchSum)
        .build()
        .expect_err("torch-sum needs one batch size");
    assert_eq!(field(e), "lr_convention");
    let e = SimulatePlan::default()
        .steps(0, 1)
        .build()
        .expect_err("T = 0");
    assert_eq!(field(e), "steps");
    let e = flatcert::MeasurePlan {
        k: vec![0],
        ..flatcert::MeasurePlan::default()
    }
    .build()
    .expect_err("k = 0");
    assert_eq!(field(e), "k");
}

#[test]
fn bounds_errors_convert_into_the_library_error() {
    let e: Error = flatcert_bounds::BoundsError::ZeroBatch.into();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().contains("batch size B must be at least 1"),
        "{e}"
    );
}
