//! Hardening (issue 6): resource limits and interrupts (item 2), the bad-input catalogue of
//! `docs/bad_inputs.md` (item 3) and the soundness audit of `docs/soundness.md` (item 5).
//!
//! Every bad-input test checks the contract of docs/bad_inputs.md: the exit code, exactly one stderr line
//! `error: …` naming the file or flag and the field, no panic, and nothing written to `out/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use assert_cmd::Command;
use common::*;
use flatcert::model::{Activation, Dense, Mlp};
use flatcert::testutil::{random_data, random_mlp};
use flatcert_bounds::{Status, Value};
use nalgebra::{DMatrix, DVector};
use serde_json::{Value as Json, json};

// ------------------------------------------------------------------------------------------
// Helpers.
// ------------------------------------------------------------------------------------------

/// `flatcert <sub> --model m --x x [--y y] --quiet extra…`.
fn with_files(sub: &str, m: &Path, x: &Path, y: Option<&Path>, extra: &[&str]) -> Command {
    let mut cmd = flatcert();
    cmd.arg(sub).arg("--model").arg(m).arg("--x").arg(x);
    if let Some(y) = y {
        cmd.arg("--y").arg(y);
    }
    cmd.arg("--quiet").args(extra);
    cmd
}

/// Exit code, stdout, stderr; never a panic.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run flatcert");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!se.contains("panicked"), "panic: {se}");
    (out.status.code().unwrap_or(-1), so, se)
}

fn read_json(p: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(p).expect("JSON written")).expect("valid JSON")
}

/// Every number in a document is finite (the documented "+inf"/"-inf" strings aside).
fn assert_all_finite(v: &Json, path: &str) {
    match v {
        Json::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{path}"),
        Json::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_all_finite(x, &format!("{path}[{i}]"))),
        Json::Object(o) => o
            .iter()
            .for_each(|(k, x)| assert_all_finite(x, &format!("{path}.{k}"))),
        Json::String(s) => assert!(
            !["NaN", "nan", "inf", "Infinity"].contains(&s.as_str()),
            "{path}: {s}"
        ),
        _ => {}
    }
}

/// A `.npy` file (format 1.0) with the given header dictionary and raw data, exactly as given.
fn raw_npy(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Little-endian f32 bytes.
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The standard network (tanh 3-5-2) as safetensors tensors, with one tensor replaced.
fn standard_tensors_with(
    name: &str,
    dtype: &'static str,
    bytes: Vec<u8>,
) -> Vec<(&'static str, &'static str, Vec<usize>, Vec<u8>)> {
    let mlp = random_mlp(&[D, 5, C], Activation::Tanh, 11);
    let mut t = Vec::new();
    for (l, layer) in mlp.layers().iter().enumerate() {
        let (wn, bn) = if l == 0 {
            ("0.weight", "0.bias")
        } else {
            ("2.weight", "2.bias")
        };
        // Row-major [out, in] as PyTorch stores it.
        let w: Vec<f64> = (0..layer.weight.nrows())
            .flat_map(|i| (0..layer.weight.ncols()).map(move |j| (i, j)))
            .map(|(i, j)| layer.weight[(i, j)])
            .collect();
        let b: Vec<f64> = layer.bias.iter().copied().collect();
        t.push((
            wn,
            "F64",
            vec![layer.weight.nrows(), layer.weight.ncols()],
            f64_bytes(&w),
        ));
        t.push((bn, "F64", vec![layer.bias.len()], f64_bytes(&b)));
    }
    for e in t.iter_mut() {
        if e.0 == name {
            e.1 = dtype;
            e.3 = bytes.clone();
        }
    }
    t
}

fn safetensors_from(t: &[(&'static str, &'static str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let refs: Vec<(&str, &str, &[usize], Vec<u8>)> = t
        .iter()
        .map(|(n, d, s, b)| (*n, *d, s.as_slice(), b.clone()))
        .collect();
    safetensors_of(&refs)
}

/// `measure` on the standard data with the checkpoint `bytes`: the error contract, nothing
/// written.
fn bad_model_bytes(bytes: &[u8], code: i32, needles: &[&str]) -> String {
    let fx = Fx::new();
    let (_, x, y) = fx.standard();
    let m = fx.bytes("bad.safetensors", bytes);
    let mut all = vec![shown(&m)];
    all.extend(needles.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
    cmd.arg(fx.out("m.json"));
    let line = expect_error(&mut cmd, code, &refs);
    fx.assert_no_output();
    line
}

/// The golden example as files: (model, x, y), n = 3.
fn golden_files(fx: &Fx) -> (PathBuf, PathBuf, PathBuf) {
    (
        fx.model("abs.safetensors", &flatcert::testutil::abs_net()),
        fx.npy("x.npy", &[-1.0, 1.0, 2.0], 3, 1),
        fx.npy("y.npy", &[1.0, 1.0, 2.0], 3, 1),
    )
}

/// A ReLU 3-5-2 network whose weights are scaled by `scale` (deterministic entries).
fn scaled_relu(scale: f64) -> Mlp {
    let w1 = DMatrix::from_fn(5, 3, |i, j| scale * (((i * 3 + j) % 7) as f64 - 3.0) / 3.0);
    let b1 = DVector::from_fn(5, |i, _| 0.1 * i as f64);
    let w2 = DMatrix::from_fn(2, 5, |i, j| scale * (((i * 5 + j) % 5) as f64 - 2.0) / 2.0);
    let b2 = DVector::from_fn(2, |i, _| 0.05 * i as f64);
    Mlp::new(
        vec![
            Dense {
                weight: w1,
                bias: b1,
            },
            Dense {
                weight: w2,
                bias: b2,
            },
        ],
        Activation::Relu,
    )
    .expect("valid network")
}

// ------------------------------------------------------------------------------------------
// Item 2: resource limits.
// ------------------------------------------------------------------------------------------

/// Sizes declared by a header are checked against the file before anything is allocated: a
/// header length of 2⁶⁴ − 1 or 2⁴⁰, a tensor of 10¹⁸ elements and an .npy of 10¹⁸ elements in
/// files of a few hundred bytes are refused at once (no allocation, no OOM).
#[test]
fn declared_sizes_are_checked_against_the_file_before_allocating() {
    let valid = flatcert::io::checkpoint_to_bytes(
        &random_mlp(&[D, 5, C], Activation::Tanh, 11),
        &Default::default(),
        flatcert::io::SaveDtype::F64,
    )
    .unwrap();
    for len in [u64::MAX, 1u64 << 40] {
        let mut b = valid.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        bad_model_bytes(
            &b,
            2,
            &["header length", &len.to_string(), "beyond the end"],
        );
    }
    let header =
        r#"{"0.weight":{"dtype":"F64","shape":[1000000000,1000000000],"data_offsets":[0,120]}}"#;
    bad_model_bytes(
        &raw_safetensors(header, &[0u8; 120]),
        2,
        &["tensor '0.weight'", "[1000000000, 1000000000]", "too large"],
    );
    // .npy: shape (10¹², 10⁶) with 80 data bytes.
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.bytes(
        "huge.npy",
        &raw_npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 1000000), }",
            &[0u8; 80],
        ),
    );
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
    cmd.arg(fx.out("m.json"));
    expect_bad_input(
        &mut cmd,
        &[&shown(&x), "shape", "truncated", "8000000000000000000"],
    );
    fx.assert_no_output();
}

/// `--max-memory` accepts bytes and suffixes; anything else (0, negative, unknown suffix, NaN,
/// below one byte) is exit 2 naming the flag, for every command that has it.
#[test]
fn max_memory_parse_errors_exit_2_naming_the_flag() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    for bad in ["0", "-1", "4X", "G", "nan", "0.1", "-4G", "1e3"] {
        let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
        cmd.arg(fx.out("m.json")).args(["--max-memory", bad]);
        expect_bad_input(&mut cmd, &["--max-memory"]);
        fx.assert_no_output();
    }
    let json = fx.out("c.json");
    let json = json.to_str().unwrap();
    for (sub, extra) in [
        (
            "certify",
            vec!["--lr", "0.1", "--batch", "2", "--json", json],
        ),
        ("stability", vec!["--json", json]),
        (
            "simulate",
            vec![
                "--lr", "0.1", "--batch", "2", "--steps", "5", "--json", json,
            ],
        ),
    ] {
        let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
        cmd.args(["--max-memory", "lots"]);
        expect_bad_input(&mut cmd, &["--max-memory", "'lots'"]);
        fx.assert_no_output();
    }
    // Valid sizes run.
    for good in ["1G", "4GiB", "512M", "1073741824"] {
        let mut cmd = with_files("measure", &m, &x, Some(&y), &["--max-memory", good]);
        let (code, _, se) = run(&mut cmd);
        assert_eq!(code, 0, "{good}: {se}");
    }
}

/// The Gram path estimates its memory first and refuses above `--max-memory` with the estimate,
/// the limit and the alternatives (raise --max-memory, lower --gram-limit, subsample), exit 2,
/// nothing written; the operator path (below --gram-limit) runs under the same limit.
#[test]
fn gram_path_above_max_memory_is_refused_with_estimate_limit_and_alternatives() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let json = fx.out("o.json");
    let json = json.to_str().unwrap();
    let cases: [(&str, Vec<&str>, Vec<&str>); 3] = [
        (
            "measure",
            vec!["--json", json],
            vec![
                "nC = 20",
                "needs about",
                "100 bytes",
                "--gram-limit",
                "subsample",
            ],
        ),
        (
            "certify",
            vec!["--lr", "0.1", "--batch", "2", "--json", json],
            vec![
                "nC = 20",
                "needs about",
                "100 bytes",
                "--gram-limit",
                "subsample",
            ],
        ),
        (
            "stability",
            vec!["--json", json],
            vec!["nC = 20", "needs ≈", "100 bytes", "subsample"],
        ),
    ];
    for (sub, extra, needles) in cases {
        let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
        cmd.args(["--max-memory", "100"]);
        let mut all = vec!["invalid argument --max-memory", "raise --max-memory"];
        all.extend(needles);
        expect_bad_input(&mut cmd, &all);
        fx.assert_no_output();
    }
    // The alternative works: the operator path needs no nC × nC matrix.
    let mut cmd = with_files(
        "measure",
        &m,
        &x,
        Some(&y),
        &["--max-memory", "100", "--gram-limit", "10", "--json", json],
    );
    let (code, _, se) = run(&mut cmd);
    assert_eq!(code, 0, "{se}");
    assert!(Path::new(json).exists());
}

/// A 5-step, 2-trial `simulate` on the standard fixture, and the path of its JSON output.
fn short_simulation(fx: &Fx) -> (Command, PathBuf) {
    let (m, x, y) = fx.standard();
    let cmd = with_files(
        "simulate",
        &m,
        &x,
        Some(&y),
        &[
            "--lr", "0.1", "--batch", "2", "--steps", "5", "--trials", "2",
        ],
    );
    (cmd, fx.out("s.json"))
}

/// `simulate` keeps running without the Gram predictions and says why (its predictions are
/// optional, `--predict none` being the documented way to skip them). The limit, 5000 bytes, holds
/// the simulator's forward-pass cache (N·(D + 3·5 + C)·8 = 1600 bytes) but not the Gram path
/// (≈ 27 kB for nC = 20, `gram_memory_bytes`).
#[test]
fn simulate_above_max_memory_skips_the_gram_predictions_and_says_why() {
    let fx = Fx::new();
    let (mut cmd, json) = short_simulation(&fx);
    cmd.args(["--max-memory", "5000", "--json"]).arg(&json);
    let (code, _, se) = run(&mut cmd);
    assert_eq!(code, 0, "{se}");
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(text.contains("Gram path failed"), "{text}");
    assert!(text.contains("--max-memory"), "{text}");
}

/// The simulator's forward-pass cache is the one allocation `simulate` cannot do without: above
/// `--max-memory` it refuses (exit 2, nothing written) with the estimate and the limit.
#[test]
fn simulate_cache_above_max_memory_is_refused() {
    let fx = Fx::new();
    let (mut cmd, json) = short_simulation(&fx);
    cmd.args(["--max-memory", "100", "--json"]).arg(&json);
    expect_bad_input(
        &mut cmd,
        &[
            "invalid argument --max-memory",
            "forward pass of all 10 samples",
            "about 1600 bytes",
            "100 bytes",
            "raise --max-memory",
        ],
    );
    fx.assert_no_output();
}

/// Send `signal` to a running `flatcert` after `after`; return its output.
fn interrupted_run(args: &[&str], signal: &str, after: Duration) -> std::process::Output {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flatcert"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flatcert");
    std::thread::sleep(after);
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} failed");
    child.wait_with_output().expect("wait")
}

/// Ctrl-C (SIGINT) during a long `certify --json` (the bundled example, seconds in a test build):
/// exit code 130 (or killed by the signal), "interrupted" on stderr, and neither the output nor
/// a temporary file in its directory.
#[test]
fn sigint_during_certify_leaves_no_output_and_exits_130() {
    use std::os::unix::process::ExitStatusExt;
    let fx = Fx::new();
    let out_path = fx.out("cert.json");
    let out = interrupted_run(
        &["certify", "--quiet", "--json", out_path.to_str().unwrap()],
        "INT",
        Duration::from_millis(1000),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(130) || out.status.signal() == Some(2),
        "status {:?}; stderr {stderr}",
        out.status
    );
    if out.status.code() == Some(130) {
        assert_eq!(stderr.lines().last(), Some("interrupted"), "{stderr}");
    }
    assert!(!out_path.exists());
    fx.assert_no_output();
}

/// SIGTERM during `train --out` (a run of 10⁸ steps): the same contract.
#[test]
fn sigterm_during_train_leaves_no_checkpoint_and_exits_130() {
    use std::os::unix::process::ExitStatusExt;
    let fx = Fx::new();
    let (_, x, y) = fx.standard();
    let out_path = fx.out("model.safetensors");
    let out = interrupted_run(
        &[
            "train",
            "--x",
            x.to_str().unwrap(),
            "--y",
            y.to_str().unwrap(),
            "--sizes",
            "3,5,2",
            "--lr",
            "0.01",
            "--batch",
            "2",
            "--steps",
            "100000000",
            "--quiet",
            "--out",
            out_path.to_str().unwrap(),
        ],
        "TERM",
        Duration::from_millis(800),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(130) || out.status.signal() == Some(15),
        "status {:?}; stderr {stderr}",
        out.status
    );
    assert!(!out_path.exists());
    fx.assert_no_output();
}

// ------------------------------------------------------------------------------------------
// Item 3: the bad-input catalogue (docs/bad_inputs.md).
// ------------------------------------------------------------------------------------------

/// Non-finite parameters in any dtype and tensor: exit 2 naming the tensor and the entry.
#[test]
fn bad_non_finite_parameters_in_every_dtype() {
    // F32 bias with +inf.
    let t = standard_tensors_with(
        "0.bias",
        "F32",
        f32_bytes(&[0.1, f32::INFINITY, 0.0, 0.2, 0.3]),
    );
    bad_model_bytes(
        &safetensors_from(&t),
        2,
        &["tensor '0.bias'", "inf", "finite"],
    );
    // F16 last-layer weight with a NaN (0x7E00) at [1, 4].
    let mut w = Vec::new();
    for i in 0..C * 5 {
        let bits: u16 = if i == C * 5 - 1 { 0x7E00 } else { 0x3C00 };
        w.extend_from_slice(&bits.to_le_bytes());
    }
    let t = standard_tensors_with("2.weight", "F16", w);
    bad_model_bytes(
        &safetensors_from(&t),
        2,
        &["tensor '2.weight'", "NaN", "finite"],
    );
    // F64 -inf in the first weight.
    let mut w = vec![0.5; 5 * D];
    w[0] = f64::NEG_INFINITY;
    let t = standard_tensors_with("0.weight", "F64", f64_bytes(&w));
    bad_model_bytes(
        &safetensors_from(&t),
        2,
        &["tensor '0.weight'", "inf", "finite"],
    );
}

/// Non-finite inputs or targets in CSV and in f32 `.npy`: exit 2 naming the file and the cell.
#[test]
fn bad_non_finite_inputs_and_targets_in_csv_and_f32_npy() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.csv_with_row("x.csv", "", "0.1,0.2,0.3\n", 4, "0.1,nan,0.3\n");
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
    cmd.arg(fx.out("m.json"));
    expect_bad_input(&mut cmd, &[&shown(&x), "finite"]);
    fx.assert_no_output();
    let (_, x, _) = fx.standard();
    let mut v = vec![0.5f32; N * C];
    v[2 * C + 1] = f32::NEG_INFINITY;
    let y = fx.bytes(
        "y32.npy",
        &raw_npy(
            &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({N}, {C}), }}"),
            &f32_bytes(&v),
        ),
    );
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
    cmd.arg(fx.out("m.json"));
    expect_bad_input(&mut cmd, &[&shown(&y), "y[2, 1]", "inf", "finite"]);
    fx.assert_no_output();
}

/// Finite but huge weights overflow inside the forward pass: a numerical failure, exit 3 (the
/// inputs are well-formed), one line naming the sample, nothing written.
#[test]
fn overflow_inside_the_forward_pass_exits_3() {
    let fx = Fx::new();
    let m = fx.model("huge.safetensors", &scaled_relu(1e155));
    let x = fx.npy("x.npy", random_data(D, N, 12).as_slice(), N, D);
    let y = fx.npy("y.npy", random_data(C, N, 13).as_slice(), N, C);
    for (sub, extra) in [
        ("measure", vec!["--json"]),
        ("certify", vec!["--lr", "0.1", "--batch", "2", "--json"]),
    ] {
        let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
        cmd.arg(fx.out("o.json"));
        expect_error(&mut cmd, 3, &["numerical failure", "sample", "not finite"]);
        fx.assert_no_output();
    }
}

/// k = 64 with large gradients (‖J‖ ~ 10⁷, ‖J‖^128 overflows f64): `measure` reports finite
/// scaled moments, and `certify` a finite certificate whose k = 64 directional test is a
/// rigorous lower bound (violated or inconclusive, never certified, never NaN); with ε the
/// robustness moments stay finite too.
#[test]
fn overflow_in_high_moments_stays_finite_at_k_64() {
    let fx = Fx::new();
    let m = fx.model("big.safetensors", &scaled_relu(300.0));
    let xs: Vec<f64> = random_data(D, N, 12)
        .as_slice()
        .iter()
        .map(|v| v * 1e4)
        .collect();
    let x = fx.npy("x.npy", &xs, N, D);
    let y = fx.npy("y.npy", random_data(C, N, 13).as_slice(), N, C);
    let mjson = fx.out("m.json");
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--k", "1,2,64", "--json"]);
    let (code, _, se) = run(cmd.arg(&mjson));
    assert_eq!(code, 0, "{se}");
    let doc = read_json(&mjson);
    assert_all_finite(&doc, "measure");
    let moment = doc["param_grad_moment_k64"]["value"].as_f64().unwrap();
    assert!(moment.is_finite() && moment > 1e3, "{moment}");
    let cjson = fx.out("c.json");
    let mut cmd = with_files(
        "certify",
        &m,
        &x,
        Some(&y),
        &["--lr", "0.1", "--batch", "2", "--k", "2,64", "--json"],
    );
    let (code, _, se) = run(cmd.arg(&cjson));
    assert_eq!(code, 1, "{se}");
    let cert = read_json(&cjson);
    assert_all_finite(&cert, "cert");
    let hyps = cert["verdicts"]["T6"]["hypotheses"].as_array().unwrap();
    let d64 = hyps
        .iter()
        .find(|c| c["name"] == "directional_k64")
        .expect("directional test at k = 64");
    assert_ne!(d64["status"], "certified", "{d64}");
    assert_eq!(d64["lhs"]["kind"], "lower", "{d64}");
    // With ε: the T8/T9 moments G_128 of ‖J_x(x_i)‖₂ are scaled too (finite, upper bounds).
    let ejson = fx.out("e.json");
    let mut cmd = with_files(
        "certify",
        &m,
        &x,
        Some(&y),
        &[
            "--lr",
            "0.1",
            "--batch",
            "2",
            "--k",
            "64",
            "--epsilon",
            "0.1",
            "--tau",
            "0.5",
            "--json",
        ],
    );
    let (code, _, se) = run(cmd.arg(&ejson));
    assert_eq!(code, 1, "{se}");
    let cert = read_json(&ejson);
    assert_all_finite(&cert, "cert with ε");
    let g = cert["verdicts"]["T8"]["conclusions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "g_2k")
        .expect("G_2k");
    assert!(g["value"]["hi"].as_f64().is_some_and(f64::is_finite), "{g}");
}

/// Two tensors with the same name in a safetensors header (JSON allows it; the last would win
/// silently): exit 2 naming the tensor.
#[test]
fn bad_duplicate_tensor_names() {
    let entry = format!(
        r#"{{"dtype":"F64","shape":[5,{D}],"data_offsets":[0,{}]}}"#,
        8 * 5 * D
    );
    let header = format!(r#"{{"0.weight":{entry},"0.weight":{entry}}}"#);
    bad_model_bytes(
        &raw_safetensors(&header, &f64_bytes(&ramp(5 * D))),
        2,
        &["tensor '0.weight'", "duplicate"],
    );
}

/// A header whose shape × dtype size disagrees with its data offsets: exit 2 naming the tensor,
/// the shape and both sizes.
#[test]
fn bad_lying_shape() {
    let header = r#"{"0.weight":{"dtype":"F64","shape":[5,3],"data_offsets":[0,40]}}"#;
    bad_model_bytes(
        &raw_safetensors(header, &[0u8; 40]),
        2,
        &["tensor '0.weight'", "[5, 3]", "120 bytes", "40 bytes"],
    );
}

/// k beyond its domain for every command that takes it.
#[test]
fn bad_k_too_large_or_odd_for_every_command() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let json = fx.out("o.json");
    let json = json.to_str().unwrap();
    let cases: [(&str, Vec<&str>, &str); 6] = [
        ("measure", vec!["--k", "65"], "got 65"),
        (
            "certify",
            vec!["--lr", "0.1", "--batch", "2", "--k", "66"],
            "got 66",
        ),
        (
            "certify",
            vec!["--lr", "0.1", "--batch", "2", "--k", "3"],
            "got 3",
        ),
        ("stability", vec!["--k", "18"], "got 18"),
        (
            "simulate",
            vec!["--lr", "0.1", "--batch", "2", "--k", "0"],
            "--k",
        ),
        (
            "simulate",
            vec!["--lr", "0.1", "--batch", "2", "--k", "1000"],
            "--k",
        ),
    ];
    for (sub, extra, needle) in cases {
        let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
        cmd.args(["--json", json]);
        expect_bad_input(&mut cmd, &["--k", needle]);
        fx.assert_no_output();
    }
    let (mdoc, _) = measurements_doc(&fx);
    let mut cmd = flatcert();
    cmd.args(["bound", "--measurements"])
        .arg(&mdoc)
        .args(["--lr", "0.1", "--batch", "1", "--k", "128", "--json", json]);
    expect_bad_input(&mut cmd, &["--k", "got 128"]);
    fx.assert_no_output();
}

/// ε ≤ 0, NaN or ∞ (certify, bound).
#[test]
fn bad_epsilon_not_positive_finite() {
    let fx = Fx::new();
    let (m, x, y) = golden_files(&fx);
    let json = fx.out("o.json");
    for eps in ["0", "-1", "nan", "inf", "-inf"] {
        let mut cmd = with_files(
            "certify",
            &m,
            &x,
            Some(&y),
            &["--lr", "0.1", "--batch", "1", "--epsilon", eps, "--json"],
        );
        expect_bad_input(cmd.arg(&json), &["--epsilon"]);
        fx.assert_no_output();
    }
    let (mdoc, _) = measurements_doc(&fx);
    for eps in ["0", "-0.5", "nan"] {
        let mut cmd = flatcert();
        cmd.args(["bound", "--measurements"])
            .arg(&mdoc)
            .args(["--lr", "0.1", "--batch", "1", "--epsilon", eps, "--json"])
            .arg(&json);
        expect_bad_input(&mut cmd, &["--epsilon"]);
        fx.assert_no_output();
    }
}

/// B = 0 and B > n (without replacement) for bound, stability and simulate (certify and train:
/// tests/certify.rs and tests/cli.rs).
#[test]
fn bad_batch_zero_or_above_n() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let json = fx.out("o.json");
    let json = json.to_str().unwrap();
    for b in ["0", "11"] {
        let cases: [(&str, Vec<&str>); 2] = [
            ("stability", vec!["--batch", b]),
            (
                "simulate",
                vec!["--lr", "0.1", "--batch", b, "--steps", "5"],
            ),
        ];
        for (sub, extra) in cases {
            let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
            cmd.args(["--json", json]);
            expect_bad_input(&mut cmd, &["--batch"]);
            fx.assert_no_output();
        }
    }
    let (mdoc, n) = measurements_doc(&fx);
    for b in ["0".to_string(), (n + 1).to_string()] {
        let mut cmd = flatcert();
        cmd.args(["bound", "--measurements"])
            .arg(&mdoc)
            .args(["--lr", "0.1", "--batch", &b, "--json", json]);
        expect_bad_input(&mut cmd, &["--batch"]);
        fx.assert_no_output();
    }
}

/// η NaN, ±∞, negative or 0 for bound, stability and simulate.
#[test]
fn bad_learning_rate_not_positive_finite() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let json = fx.out("o.json");
    let json = json.to_str().unwrap();
    let (mdoc, _) = measurements_doc(&fx);
    for lr in ["nan", "inf", "-inf", "-0.1", "0"] {
        for (sub, extra) in [
            ("stability", vec!["--lr", lr]),
            ("simulate", vec!["--lr", lr, "--batch", "2", "--steps", "5"]),
        ] {
            let mut cmd = with_files(sub, &m, &x, Some(&y), &extra);
            cmd.args(["--json", json]);
            expect_bad_input(&mut cmd, &["--lr"]);
            fx.assert_no_output();
        }
        let mut cmd = flatcert();
        cmd.args(["bound", "--measurements"])
            .arg(&mdoc)
            .args(["--lr", lr, "--batch", "1", "--json", json]);
        expect_bad_input(&mut cmd, &["--lr"]);
        fx.assert_no_output();
    }
}

/// A measurements document of the golden example (`flatcert measure --json`), outside `out/`.
fn measurements_doc(fx: &Fx) -> (PathBuf, usize) {
    let (m, x, y) = golden_files(fx);
    let p = fx.path("m.json");
    let mut cmd = with_files("measure", &m, &x, Some(&y), &["--json"]);
    let (code, _, se) = run(cmd.arg(&p));
    assert_eq!(code, 0, "{se}");
    (p, 3)
}

/// A certificate of the golden example at η = 0.22, B = 1, k = 2 (certified), outside `out/`.
fn certificate(fx: &Fx, eta: &str) -> PathBuf {
    let (m, x, y) = golden_files(fx);
    let p = fx.path(&format!("cert_{eta}.json"));
    let mut cmd = with_files(
        "certify",
        &m,
        &x,
        Some(&y),
        &["--lr", eta, "--batch", "1", "--k", "2", "--json"],
    );
    let (code, _, se) = run(cmd.arg(&p));
    assert!(code == 0 || code == 1, "{se}");
    p
}

/// Write an edited JSON document outside `out/`.
fn write_doc(fx: &Fx, name: &str, doc: &Json) -> PathBuf {
    let p = fx.path(name);
    std::fs::write(&p, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    p
}

/// A measurements document with a quantity missing: the theorems that need it are reported as
/// not computed, naming it (never a made-up number); not an error.
#[test]
fn measurements_with_a_missing_quantity_name_it_as_not_computed() {
    let fx = Fx::new();
    let (mdoc, _) = measurements_doc(&fx);
    let mut doc = read_json(&mdoc);
    doc.as_object_mut().unwrap().remove("per_sample_lambda_max");
    let p = write_doc(&fx, "missing.json", &doc);
    let out = fx.out("b.json");
    let mut cmd = flatcert();
    cmd.args(["bound", "--measurements"])
        .arg(&p)
        .args(["--lr", "0.22", "--batch", "1", "--k", "2", "--json"])
        .arg(&out);
    let (code, _, se) = run(&mut cmd);
    assert!(code == 0 || code == 1, "{se}");
    let b = read_json(&out);
    assert_eq!(
        b["verdicts"]["T6"]["not_computed"],
        "missing per_sample_lambda_max"
    );
}

/// Malformed measurements documents: a quantity that is not finite, null, a string, has a
/// negative tol, lacks its kind or has an unknown kind; a wrong schema; no inputs; truncated
/// JSON. Exit 2, one line naming the file and the quantity (or field), nothing written.
#[test]
fn bad_measurements_documents() {
    let fx = Fx::new();
    let (mdoc, _) = measurements_doc(&fx);
    let doc = read_json(&mdoc);
    let text = std::fs::read_to_string(&mdoc).unwrap();
    let edit = |f: &dyn Fn(&mut Json)| {
        let mut d = doc.clone();
        f(&mut d);
        d
    };
    let cases: Vec<(&str, Json, Vec<&str>)> = vec![
        (
            "nan.json",
            edit(&|d| d["gauss_newton_trace"]["value"] = json!("NaN")),
            vec!["gauss_newton_trace", "f64"],
        ),
        (
            "null.json",
            edit(&|d| d["per_sample_lambda_max"]["value"] = Json::Null),
            vec!["per_sample_lambda_max", "f64"],
        ),
        (
            "negtol.json",
            edit(&|d| d["gauss_newton_trace"]["tol"] = json!(-1.0)),
            vec!["gauss_newton_trace", "tol"],
        ),
        (
            "nokind.json",
            edit(&|d| {
                d["gauss_newton_lambda_max"]
                    .as_object_mut()
                    .unwrap()
                    .remove("kind");
            }),
            vec!["gauss_newton_lambda_max", "kind"],
        ),
        (
            "badkind.json",
            edit(&|d| d["gauss_newton_lambda_max"]["kind"] = json!("guess")),
            vec!["gauss_newton_lambda_max", "guess"],
        ),
        (
            "schema.json",
            edit(&|d| d["schema"] = json!("flatcert.measurements/v9")),
            vec!["schema", "v9"],
        ),
        (
            "noinputs.json",
            edit(&|d| {
                d.as_object_mut().unwrap().remove("inputs");
            }),
            vec!["inputs"],
        ),
    ];
    let out = fx.out("b.json");
    let bound = |p: &Path| {
        let mut cmd = flatcert();
        cmd.args(["bound", "--measurements"])
            .arg(p)
            .args(["--lr", "0.22", "--batch", "1", "--json"])
            .arg(&out);
        cmd
    };
    for (name, d, needles) in cases {
        let p = write_doc(&fx, name, &d);
        let mut all = vec![shown(&p)];
        all.extend(needles.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        expect_bad_input(&mut bound(&p), &refs);
        fx.assert_no_output();
    }
    // Raw text: an out-of-range number (JSON has no ∞) and a truncated file.
    let huge = text.replacen("\"value\": 6.0", "\"value\": 1e999", 1);
    assert_ne!(huge, text, "the golden tr G = 6 is in the document");
    for (name, t, needle) in [
        ("inf.json", huge, "out of range"),
        ("trunc.json", text[..200].to_string(), "EOF"),
    ] {
        let p = fx.bytes(name, t.as_bytes());
        expect_bad_input(&mut bound(&p), &[&shown(&p), "json", needle]);
        fx.assert_no_output();
    }
}

/// A certificate edited by hand is never verified (exit 0): a changed number, kind, status,
/// hash or summary is a disagreement (exit 1, the field named on stdout); a malformed or
/// non-finite one is exit 2 (one stderr line naming the file and the field).
#[test]
fn hand_edited_certificates_are_never_verified() {
    let fx = Fx::new();
    let good = certificate(&fx, "0.22");
    let cert = read_json(&good);
    let (code, so, se) = run(flatcert().arg("verify").arg(&good));
    assert_eq!(code, 0, "{so}{se}");
    let edit = |f: &dyn Fn(&mut Json)| {
        let mut d = cert.clone();
        f(&mut d);
        d
    };
    let find = |d: &mut Json, t: &str, name: &str, f: &dyn Fn(&mut Json)| {
        let h = d["verdicts"][t]["hypotheses"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["name"] == name)
            .unwrap();
        f(h);
    };
    // (name, document, expected code, needle in the message).
    let cases: Vec<(&str, Json, i32, &str)> = vec![
        (
            "eta",
            edit(&|d| d["hyper"]["eta"] = json!(0.21)),
            1,
            "hyper.eta",
        ),
        (
            "lr",
            edit(&|d| d["hyper"]["lr_given"] = json!(0.21)),
            1,
            "hyper.eta",
        ),
        (
            "batch",
            edit(&|d| d["hyper"]["batch"] = json!(2)),
            1,
            "hyper",
        ),
        (
            "lambda",
            edit(&|d| {
                let v = d["measurements"]["gauss_newton_lambda_max"]["value"]
                    .as_f64()
                    .unwrap();
                d["measurements"]["gauss_newton_lambda_max"]["value"] = json!(v * 0.5);
            }),
            1,
            "measurements.gauss_newton_lambda_max.value",
        ),
        (
            "kind",
            edit(&|d| d["measurements"]["gauss_newton_lambda_max"]["kind"] = json!("exact")),
            1,
            "measurements.gauss_newton_lambda_max.kind",
        ),
        (
            "margin",
            edit(&|d| {
                find(d, "T5", "stability", &|h| h["margin"] = json!(0.5));
            }),
            1,
            "verdicts.T5.hypotheses",
        ),
        (
            "status",
            edit(&|d| {
                find(d, "T4", "gd_condition", &|h| {
                    h["status"] = json!("violated")
                });
            }),
            1,
            "verdicts.T4.hypotheses.gd_condition.status",
        ),
        (
            "conclusion",
            edit(&|d| d["verdicts"]["T5"]["conclusions"][0]["value"]["value"] = json!(99.0)),
            1,
            "verdicts.T5.conclusions",
        ),
        (
            "sha",
            edit(&|d| d["inputs"]["files"]["x"]["sha256"] = json!("0".repeat(64))),
            1,
            "inputs.files.x.sha256",
        ),
        (
            "lhs",
            edit(&|d| {
                find(d, "T4", "gd_condition", &|h| h["lhs"]["hi"] = json!(1.0));
            }),
            2,
            "verdicts.T4",
        ),
        (
            "nohyper",
            edit(&|d| {
                d.as_object_mut().unwrap().remove("hyper");
            }),
            2,
            "hyper",
        ),
        (
            "nan",
            edit(&|d| d["measurements"]["gauss_newton_trace"]["value"] = json!("NaN")),
            2,
            "f64",
        ),
        (
            "negtol",
            edit(&|d| d["measurements"]["gauss_newton_trace"]["tol"] = json!(-1.0)),
            2,
            "measurements.gauss_newton_trace",
        ),
        (
            "schema",
            edit(&|d| d["schema"] = json!("flatcert.certificate/v2")),
            2,
            "schema",
        ),
    ];
    for (name, doc, want, needle) in cases {
        let p = write_doc(&fx, &format!("edited_{name}.json"), &doc);
        let mut cmd = flatcert();
        cmd.arg("verify").arg(&p);
        if want == 2 {
            expect_bad_input(&mut cmd, &[&shown(&p), needle]);
        } else {
            let (code, so, se) = run(&mut cmd);
            assert_eq!(code, 1, "{name}: {so}{se}");
            assert!(
                so.contains("DISAGREES") && so.contains(needle),
                "{name}: {so}"
            );
        }
    }
    // A not-certified certificate whose summary is edited to "certified".
    let nc = certificate(&fx, "0.5");
    let mut d = read_json(&nc);
    assert_eq!(d["summary"]["status"], "not_certified");
    d["summary"]["status"] = json!("certified");
    d["summary"]["exit_code"] = json!(0);
    d["summary"]["violated"] = json!([]);
    d["summary"]["inconclusive"] = json!([]);
    let p = write_doc(&fx, "edited_summary.json", &d);
    let (code, so, _) = run(flatcert().arg("verify").arg(&p));
    assert_eq!(code, 1, "{so}");
    assert!(so.contains("summary"), "{so}");
    fx.assert_no_output();
}

// ------------------------------------------------------------------------------------------
// Item 5: soundness — optimistic estimates and wrong-sided bounds never certify.
// ------------------------------------------------------------------------------------------

/// `flatcert bound` on `doc`: the bound report.
fn bound_report(fx: &Fx, name: &str, doc: &Json, extra: &[&str]) -> Json {
    let p = write_doc(fx, name, doc);
    let out = fx.path(&format!("bound_{name}"));
    let mut cmd = flatcert();
    cmd.args(["bound", "--measurements"])
        .arg(&p)
        .args(extra)
        .args(["--k", "2", "--json"])
        .arg(&out);
    let (code, _, se) = run(&mut cmd);
    assert!(code == 0 || code == 1, "{name}: {se}");
    read_json(&out)
}

/// Status of `theorem.check` in a bound report, or None when the theorem is not computed.
fn status_in(report: &Json, theorem: &str, check: &str) -> Option<String> {
    let v = &report["verdicts"][theorem];
    let hyps = v["hypotheses"].as_array()?;
    Some(
        hyps.iter()
            .find(|c| c["name"] == check)
            .unwrap_or_else(|| panic!("{theorem}.{check} missing: {v}"))["status"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// The quantity map of a measurements document or of a certificate.
fn quantities(doc: &mut Json) -> &mut Json {
    if doc["schema"] == "flatcert.certificate/v1" {
        &mut doc["measurements"]
    } else {
        doc
    }
}

/// Each key quantity, downgraded to an optimistic estimate or given on the wrong side, leaves
/// the check that needs its rigorous side uncertified: `(quantity, new kind, value factor,
/// theorem, check, allowed statuses)`; "not_computed" stands for the theorem being reported as
/// not computed (it then names the quantity).
type Case = (
    &'static str,
    &'static str,
    f64,
    &'static str,
    &'static str,
    &'static [&'static str],
);

fn check_cases(fx: &Fx, doc: &Json, extra: &[&str], cases: &[Case]) {
    let base = bound_report(fx, "base.json", doc, extra);
    for &(quantity, kind, factor, theorem, check, allowed) in cases {
        // The untouched document certifies the check: the test is not vacuous.
        assert_eq!(
            status_in(&base, theorem, check).as_deref(),
            Some("certified"),
            "{theorem}.{check} on the untouched document"
        );
        let mut d = doc.clone();
        let q = &mut quantities(&mut d)[quantity];
        assert!(q.is_object(), "{quantity} in the document");
        let v = q["value"].as_f64().unwrap();
        q["value"] = json!(v * factor);
        q["kind"] = json!(kind);
        let r = bound_report(fx, &format!("{quantity}_{kind}.json"), &d, extra);
        let got = status_in(&r, theorem, check).unwrap_or_else(|| "not_computed".into());
        assert!(
            allowed.contains(&got.as_str()),
            "{quantity} as {kind} (×{factor}): {theorem}.{check} is {got}, allowed {allowed:?}"
        );
        assert_ne!(got, "certified");
        if got == "not_computed" {
            let why = r["verdicts"][theorem]["not_computed"].as_str().unwrap();
            assert!(why.contains(quantity), "{why}");
        } else {
            assert_eq!(
                r["summary"]["status"], "not_certified",
                "{quantity} as {kind}"
            );
        }
    }
}

/// On a real measurements document (`flatcert measure --json`, golden example, η = 0.22, B = 1).
#[test]
fn optimistic_estimates_never_certify_from_a_measurements_document() {
    let fx = Fx::new();
    let (mdoc, _) = measurements_doc(&fx);
    let doc = read_json(&mdoc);
    let open: &[&str] = &["inconclusive", "estimated"];
    let cases: &[Case] = &[
        // λ_max(G): T4 needs its upper side.
        (
            "gauss_newton_lambda_max",
            "estimate",
            1e-3,
            "T4",
            "gd_condition",
            open,
        ),
        (
            "gauss_newton_lambda_max",
            "lower",
            1e-3,
            "T4",
            "gd_condition",
            open,
        ),
        // max_i λ_i: T6's per-sample test λ_i ≤ β_k needs the upper side.
        (
            "per_sample_lambda_max",
            "estimate",
            1e-3,
            "T6",
            "per_sample",
            open,
        ),
        (
            "per_sample_lambda_max",
            "lower",
            1e-3,
            "T6",
            "per_sample",
            open,
        ),
        // The T1 residual must be bounded above.
        (
            "identity_max_abs_residual",
            "estimate",
            1.0,
            "T1",
            "identity_matrix",
            open,
        ),
        (
            "identity_max_abs_residual",
            "lower",
            1.0,
            "T1",
            "identity_matrix",
            open,
        ),
        // min‖x_i‖ > 0 needs its lower side.
        ("input_norm_min", "estimate", 1e3, "T7", "x_nonzero", open),
        ("input_norm_min", "upper", 1e3, "T7", "x_nonzero", open),
    ];
    check_cases(&fx, &doc, &["--lr", "0.22", "--batch", "1"], cases);
    // The lower side of λ_max(G) is not what certifies T4: downgrading it changes nothing.
    let mut d = doc.clone();
    d["gauss_newton_lambda_max_lower"]["kind"] = json!("estimate");
    let r = bound_report(
        &fx,
        "lower_side.json",
        &d,
        &["--lr", "0.22", "--batch", "1"],
    );
    assert_eq!(
        status_in(&r, "T4", "gd_condition").as_deref(),
        Some("certified")
    );
}

/// On a certificate (all quantities, T3 and T5 included): ‖W‖₂, λ_max(𝒟̃), the traces and the
/// T6(d) directional test.
#[test]
fn optimistic_estimates_never_certify_from_a_certificate() {
    let fx = Fx::new();
    let doc = read_json(&certificate(&fx, "0.22"));
    let open: &[&str] = &["inconclusive", "estimated"];
    let nc: &[&str] = &["not_computed"];
    let cases: &[Case] = &[
        (
            "mean_square_dtilde_lambda_max",
            "estimate",
            1e-3,
            "T5",
            "stability",
            open,
        ),
        (
            "mean_square_dtilde_lambda_max",
            "lower",
            1e-3,
            "T5",
            "stability",
            open,
        ),
        (
            "gauss_newton_lambda_max",
            "estimate",
            1e-3,
            "T4",
            "gd_condition",
            open,
        ),
        // ‖W‖₂ must be an upper bound: anything else is refused, naming it.
        (
            "first_layer_spectral_norm",
            "estimate",
            1e-3,
            "T3",
            "left_le_middle",
            nc,
        ),
        (
            "first_layer_spectral_norm",
            "lower",
            1e-3,
            "T3",
            "left_le_middle",
            nc,
        ),
        // T3: (1/n)Σ‖J_x‖²‖x‖² ≤ ‖W‖₂² tr G_W needs the left side's upper side; tr G_W ≤ tr G
        // needs tr G_W's upper and tr G's lower side.
        (
            "input_grad_weighted_mean_sq",
            "estimate",
            1e-3,
            "T3",
            "left_le_middle",
            open,
        ),
        (
            "input_grad_weighted_mean_sq",
            "lower",
            1e-3,
            "T3",
            "left_le_middle",
            open,
        ),
        (
            "first_layer_gauss_newton_trace",
            "lower",
            1e-3,
            "T3",
            "trace_block",
            open,
        ),
        (
            "gauss_newton_trace",
            "upper",
            1e3,
            "T3",
            "trace_block",
            open,
        ),
        (
            "gauss_newton_trace",
            "estimate",
            1e3,
            "T3",
            "trace_block",
            open,
        ),
        // T6(d): E[(1 − ηvᵀH_ξv)^k] ≤ 1 needs the upper side.
        (
            "k_moment_directional_max_k2",
            "estimate",
            1e-3,
            "T6",
            "directional",
            open,
        ),
        (
            "k_moment_directional_max_k2",
            "lower",
            1e-3,
            "T6",
            "directional",
            open,
        ),
        (
            "per_sample_lambda_max",
            "estimate",
            1e-3,
            "T6",
            "per_sample",
            open,
        ),
    ];
    check_cases(&fx, &doc, &[], cases);
    // T7(e)'s N_2k(W) is built from the upper sides of the first layer's row and column sums: a
    // sum that is not a rigorous upper bound leaves the bound uncomputed instead of used.
    let has_e_gx = |r: &Json| {
        r["verdicts"]["T7"]["conclusions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("e_gx_bound"))
                })
            })
    };
    let lr = ["--lr", "0.22", "--batch", "1"];
    let base = bound_report(&fx, "sums.json", &doc, &lr);
    assert!(has_e_gx(&base), "{}", base["verdicts"]["T7"]);
    for name in ["first_layer_max_row_sum", "first_layer_max_col_sum"] {
        let mut d = doc.clone();
        quantities(&mut d)[name]["kind"] = json!("estimate");
        let r = bound_report(&fx, &format!("{name}.json"), &d, &lr);
        assert!(!has_e_gx(&r), "{name} as an estimate still gave T7(e)");
    }
}

/// T8–T10 need the network, so they are checked on the bounds crate directly: a Lipschitz bound
/// that is an estimate or a lower bound never certifies a robustness statement, however small.
#[test]
fn estimated_or_lower_lipschitz_bounds_never_certify_robustness() {
    use flatcert_bounds::t8::{T8Input, T8Point};
    use flatcert_bounds::t9::{PairGap, T9Input, T9Point, Task};
    use flatcert_bounds::t10::{Ball, T10Input};
    for lip in [Value::estimate(1e-9, 0.0), Value::lower_bound(1e-9, 0.0)] {
        // T10: the minimum of the three bounds has no rigorous upper side.
        let t10 = flatcert_bounds::t10::check(&T10Input {
            epsilon: 0.1,
            ball: Ball::L2,
            per_layer: Some(lip),
            abs_product: Some(Value::estimate(2e-9, 0.0)),
            midpoint_radius: None,
            sampled_jacobian_norms: vec![0.5],
            sampled_slopes: vec![0.4],
            uses_libm: false,
            monotone_activation: true,
        })
        .unwrap();
        assert!(
            !t10.conclusion("lipschitz").unwrap().value.has_upper(),
            "{lip:?}"
        );
        assert_ne!(t10.status(), Status::Certified, "{lip:?}");
        // T9: no point is certified, in regression or classification.
        let reg = flatcert_bounds::t9::check(&T9Input {
            epsilon: 0.1,
            task: Task::Regression { tau: 0.5 },
            points: vec![
                T9Point {
                    lipschitz: lip,
                    pairs: vec![],
                };
                3
            ],
            markov: None,
        })
        .unwrap();
        assert_eq!(reg.check("lipschitz").unwrap().status, Status::Estimated);
        assert_eq!(
            reg.conclusion("certified_fraction").unwrap().value.value,
            0.0
        );
        let cls = flatcert_bounds::t9::check(&T9Input {
            epsilon: 0.1,
            task: Task::Classification,
            points: vec![T9Point {
                lipschitz: lip,
                pairs: vec![PairGap {
                    gap: 1.0,
                    lipschitz: Some(lip),
                }],
            }],
            markov: None,
        })
        .unwrap();
        assert_eq!(
            cls.conclusion("certified_fraction").unwrap().value.value,
            0.0
        );
        // T8: the (L) hypothesis is not certified and the error bound has no upper side.
        let t8 = flatcert_bounds::t8::check(&T8Input {
            epsilon: 0.1,
            epsilon_y: 0.0,
            points: vec![T8Point {
                residual_norm: Value::exact(0.0, 0.0),
                lipschitz: lip,
                jacobian_norm: None,
                certified: None,
            }],
            weights: None,
            k: None,
            theory: None,
            coverage: None,
            failure: None,
            mean_x_norm: None,
        })
        .unwrap();
        assert_eq!(t8.check("lipschitz").unwrap().status, Status::Estimated);
        assert!(!t8.conclusion("expected_error").unwrap().value.has_upper());
        assert_ne!(t8.status(), Status::Certified);
    }
}

/// The remaining one-sided inputs of the bounds crate: an upper bound where a lower bound is
/// needed (s_min(W) in T2's lower inequality, λ_min(H) ≥ 0 in T4), and ‖W‖₂ given as a lower
/// bound in T2.
#[test]
fn wrong_sided_bounds_never_certify_in_the_bounds_crate() {
    use flatcert_bounds::minimum::{Curvature, MinimumInput};
    use flatcert_bounds::t2::{T2Input, T2Sample};
    let samples = vec![
        T2Sample {
            jx_fro: 1.0,
            x_norm: 2.0,
            jw_fro: 2.0,
            jx_spec: None,
            jw_spec: None,
        };
        3
    ];
    let t2 = flatcert_bounds::t2::check(&T2Input {
        w_spectral: Value::lower_bound(10.0, 0.0),
        s_min: Some(Value::upper_bound(1e-9, 0.0)),
        samples,
        rel_tol: 0.0,
        entrywise: None,
    })
    .unwrap();
    assert_eq!(
        t2.check("upper_inequality").unwrap().status,
        Status::Estimated
    );
    assert_eq!(
        t2.check("lower_inequality").unwrap().status,
        Status::Estimated
    );
    let min = flatcert_bounds::minimum::check(&MinimumInput {
        curvature: Curvature::Exact,
        lambda_min: Some(Value::upper_bound(5.0, 0.0)),
        max_abs_residual: Some(0.1),
        hessian_is_gauss_newton: false,
    })
    .unwrap();
    // An upper bound of λ_min(H) cannot certify 0 ≤ λ_min(H).
    assert_ne!(min.check("minimum").unwrap().status, Status::Certified);
}

/// A directory or a device given as an input file is refused by name before anything is read
/// (`/dev/zero` and `/dev/urandom` never end: reading them would fill the memory), for the model,
/// the data and the JSON documents of `bound` and `verify`; exit 2, nothing written.
#[test]
#[cfg(unix)]
fn directories_and_devices_are_not_read_as_files() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let dir = fx.path("");
    let json = fx.out("o.json");
    let zero = Path::new("/dev/zero");
    let cases: [(&Path, &Path, &Path, &str); 4] = [
        (zero, &x, &y, "/dev/zero: path: is a device"),
        (&m, zero, &y, "/dev/zero: path: is a device"),
        (&m, &x, zero, "/dev/zero: path: is a device"),
        (&m, &dir, &y, "path: is a directory"),
    ];
    for (m, x, y, needle) in cases {
        let mut cmd = with_files("measure", m, x, Some(y), &["--json"]);
        cmd.arg(&json);
        expect_bad_input(&mut cmd, &[needle, "expected a regular file"]);
        fx.assert_no_output();
    }
    for sub in [
        ["bound", "--measurements"].as_slice(),
        ["verify"].as_slice(),
    ] {
        for bad in [zero, dir.as_path()] {
            let mut cmd = flatcert();
            cmd.args(sub).arg(bad);
            if sub[0] == "bound" {
                cmd.args(["--lr", "0.1", "--batch", "2"]);
            }
            expect_bad_input(&mut cmd, &["path: is a", "expected a regular file"]);
        }
    }
}

/// A JSON document that is not UTF-8 text is a bad input naming the byte offset, not an
/// operating-system error.
#[test]
fn non_utf8_documents_are_bad_input() {
    let fx = Fx::new();
    let doc = fx.path("latin1.json");
    std::fs::write(&doc, b"{\"schema\": \"caf\xe9\"}").unwrap();
    let mut cmd = flatcert();
    cmd.args(["bound", "--measurements"]).arg(&doc);
    cmd.args(["--lr", "0.1", "--batch", "2"]);
    expect_bad_input(
        &mut cmd,
        &["encoding: not UTF-8 text (invalid byte at offset 15)"],
    );
    let mut cmd = flatcert();
    cmd.arg("verify").arg(&doc);
    expect_bad_input(&mut cmd, &["encoding: not UTF-8"]);
}
