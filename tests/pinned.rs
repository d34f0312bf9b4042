//! Pinned outputs of the bundled example (issue 13 item 7): `certify --json` and `stability --json`
//! must stay the same across refactors. The documents are compared with the files in
//! `tests/data/pinned/` field by field, minus the wall-clock fields (`seconds`,
//! `runtime_seconds`), which are the only ones that legitimately change between runs.
//!
//! Strings, booleans, integers and the document's shape must be equal exactly. Floating-point
//! numbers must agree to a relative 1e-9: the engine is deterministic on one machine (see
//! `tests/determinism.rs`), but the GEMM kernels are chosen by CPU feature (AVX-512 tiles or the
//! portable path), and a different summation order moves the last few bits (≈ 1e-15 relative per
//! reduction; the Lanczos/cone iterations amplify it by at most a few orders). A real change of
//! behaviour, e.g. another rank, step count or verdict, shows up in the exact fields or far
//! above 1e-9.
//!
//! To re-pin after an intended change, run with `FLATCERT_BLESS=1` and explain the diff in the
//! commit message.

mod common;

use std::path::PathBuf;

use common::{Fx, flatcert, read_json, run_cmd};
use serde_json::Value;

/// Relative agreement of the floating-point fields (see the module doc).
const REL_TOL: f64 = 1e-9;

/// Fields that hold wall-clock time.
const TIMING_FIELDS: [&str; 2] = ["seconds", "runtime_seconds"];

fn pinned_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pinned")
        .join(name)
}

fn strip_timing(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for f in TIMING_FIELDS {
                m.remove(f);
            }
            m.values_mut().for_each(strip_timing);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_timing),
        _ => {}
    }
}

/// Every difference between `got` and `want` (path: got vs want).
fn diff(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                match (g.get(k), w.get(k)) {
                    (Some(a), Some(b)) => diff(&format!("{path}.{k}"), a, b, out),
                    (a, b) => out.push(format!("{path}.{k}: {a:?} vs {b:?}")),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (x, y) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let close = x == y || (x - y).abs() <= REL_TOL * x.abs().max(y.abs());
            if !close {
                out.push(format!("{path}: {x:e} vs {y:e}"));
            }
        }
        (a, b) => {
            if a != b {
                out.push(format!("{path}: {a} vs {b}"));
            }
        }
    }
}

/// Run `args` (which write the JSON to the path given by `json_flag`), then compare with the
/// pinned file (or re-pin it under `FLATCERT_BLESS=1`).
fn check_pinned(name: &str, args: &[&str], json_flag: &str, want_code: i32) {
    let fx = Fx::new();
    let out = fx.out("doc.json");
    let (code, _so, se) = run_cmd(flatcert().args(args).arg(json_flag).arg(&out));
    assert_eq!(code, want_code, "exit code of {args:?}: {se}");
    let mut got = read_json(&out);
    strip_timing(&mut got);
    let pinned = pinned_path(name);
    if std::env::var_os("FLATCERT_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&got).expect("serializable");
        std::fs::create_dir_all(pinned.parent().expect("has a parent")).expect("pinned dir");
        std::fs::write(&pinned, text + "\n").expect("write pinned file");
        return;
    }
    let want: Value = serde_json::from_slice(
        &std::fs::read(&pinned).unwrap_or_else(|e| panic!("{}: {e}", pinned.display())),
    )
    .expect("pinned file is JSON");
    let mut diffs = Vec::new();
    diff("$", &got, &want, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{name}: {} difference(s) from the pinned output (got vs pinned):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn bundled_certify_json_is_pinned() {
    // --epsilon adds T8–T10, so every theorem of the certificate is pinned.
    check_pinned(
        "certify_bundled.json",
        &["certify", "--quiet", "--epsilon", "0.1"],
        "--json",
        0,
    );
}

#[test]
fn bundled_stability_json_is_pinned() {
    // Two batch sizes keep the debug-profile run short; B = 8 and 64 take different rank and
    // refinement routes. --refine-rank = --t5-rank makes the row independent of the
    // time-based refinement skip.
    check_pinned(
        "stability_bundled.json",
        &[
            "stability",
            "--quiet",
            "--batch",
            "8,64",
            "--t5-rank",
            "256",
            "--refine-rank",
            "256",
        ],
        "--json",
        0,
    );
}

#[test]
fn the_comparison_sees_changes_above_the_tolerance_only() {
    let want = serde_json::json!({"a": {"v": 1.0, "s": "certified", "k": 3}, "l": [0.5]});
    let mut same = want.clone();
    same["a"]["v"] = serde_json::json!(1.0 + 1e-12);
    let mut diffs = Vec::new();
    diff("$", &same, &want, &mut diffs);
    assert!(diffs.is_empty(), "{diffs:?}");
    let mut changed = want.clone();
    changed["a"]["v"] = serde_json::json!(1.0 + 1e-6);
    changed["a"]["s"] = serde_json::json!("not certified");
    changed["a"]["k"] = serde_json::json!(4);
    changed["l"] = serde_json::json!([0.5, 0.5]);
    diff("$", &changed, &want, &mut diffs);
    assert_eq!(diffs.len(), 4, "{diffs:?}");
    let mut timed = serde_json::json!({"seconds": 1.0, "rows": [{"seconds": 2.0, "x": 1}]});
    strip_timing(&mut timed);
    assert_eq!(timed, serde_json::json!({"rows": [{"x": 1}]}));
}
