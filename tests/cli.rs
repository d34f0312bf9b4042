//! End-to-end tests of the `flatcert` binary (issue 2, "Tests … CLI end to end" and "Bad input";
//! docs/bad_inputs.md exit codes). Every input is built at run time in a temporary directory; every
//! output goes to its (initially empty) `out/` sub-directory, so "no partial output file" is
//! checked by that directory staying empty after a failure.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::*;
use flatcert::Activation;
use flatcert::testutil::{random_data, random_mlp};
use nalgebra::DMatrix;
use serde_json::Value;

/// `flatcert measure --model M --x X [--y Y] --json out/m.json`.
fn measure(fx: &Fx, model: &Path, x: &Path, y: Option<&Path>) -> Command {
    let mut cmd = flatcert();
    cmd.arg("measure")
        .arg("--model")
        .arg(model)
        .arg("--x")
        .arg(x)
        .arg("--json")
        .arg(fx.out("m.json"));
    if let Some(y) = y {
        cmd.arg("--y").arg(y);
    }
    cmd
}

/// `flatcert train` on x, y writing `out`, with the hyper-parameters of the brief
/// (`--sizes d,8,C --lr 0.05 --batch 4 --steps 200 --seed 3 --quiet`); a flag in `extra`
/// (`--lr 1e6` or `--lr=-1`) replaces its default.
fn train(x: &Path, y: &Path, out: &Path, extra: &[&str]) -> Command {
    let sizes = format!("{D},8,{C}");
    let defaults = [
        ("--sizes", sizes.as_str()),
        ("--lr", "0.05"),
        ("--batch", "4"),
        ("--steps", "200"),
        ("--seed", "3"),
    ];
    let mut cmd = flatcert();
    cmd.arg("train")
        .arg("--x")
        .arg(x)
        .arg("--y")
        .arg(y)
        .arg("--quiet");
    for (flag, value) in defaults {
        let given = extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !given {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra).arg("--out").arg(out);
    cmd
}

/// Run, require exit 0, return (stdout, stderr).
fn ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run flatcert");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "stdout: {so}\nstderr: {se}");
    (so, se)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("JSON written")).expect("valid JSON")
}

/// The `value` of quantity `name`, after checking it is a well-formed quantity object.
fn q(doc: &Value, name: &str) -> f64 {
    let o = doc[name]
        .as_object()
        .unwrap_or_else(|| panic!("quantity {name} missing or not an object"));
    let kind = o["kind"].as_str().unwrap_or_else(|| panic!("{name}.kind"));
    assert!(
        ["exact", "upper", "lower", "estimate"].contains(&kind),
        "{name}.kind = {kind}"
    );
    let tol = o["tol"].as_f64().unwrap_or_else(|| panic!("{name}.tol"));
    assert!(tol.is_finite() && tol >= 0.0, "{name}.tol = {tol}");
    let v = o["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{name}.value"));
    assert!(v.is_finite(), "{name}.value = {v}");
    v
}

fn kind(doc: &Value, name: &str) -> String {
    doc[name]["kind"].as_str().unwrap_or_default().to_string()
}

/// |a − b| ≤ rel·|b| (with `rel` justified at each call).
fn assert_rel(name: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs(),
        "{name}: got {got:e}, want {want:e} (rel err {:e} > {rel:e})",
        ((got - want) / want).abs()
    );
}

/// Canonical quantity names listed in docs/measurements.md, `{k}` expanded for `ks`.
fn documented_names(ks: &[u32]) -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/measurements.md"))
        .expect("docs/measurements.md");
    let section = doc
        .split("## Quantities of `flatcert measure`")
        .nth(1)
        .expect("quantities section");
    // Only the always-present table: later sections list path-dependent (curvature) and
    // certify-only quantities.
    let section = section.split("\n#").next().unwrap_or(section);
    let mut names = Vec::new();
    for line in section.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let name = rest.split('`').next().unwrap_or_default();
        if name.contains("{k}") {
            names.extend(ks.iter().map(|k| name.replace("{k}", &k.to_string())));
        } else {
            names.push(name.to_string());
        }
    }
    names
}

// ---------------------------------------------------------------------------------------------
// The bundled example
// ---------------------------------------------------------------------------------------------

#[test]
fn measure_without_arguments_prints_the_table_of_the_bundled_example() {
    let (stdout, stderr) = ok(flatcert().arg("measure"));
    for name in [
        "gauss_newton_trace",
        "param_grad_moment_k1",
        "param_grad_moment_k2",
        "param_grad_moment_k4",
        "input_grad_moment_k2",
        "first_layer_spectral_norm",
        "train_loss",
    ] {
        assert!(stdout.contains(name), "table lacks {name}:\n{stdout}");
    }
    assert!(stdout.contains("embedded"), "{stdout}");
    // stderr is not a TTY under assert_cmd: no progress bar may be drawn.
    assert_no_progress_bar(&stderr);
}

#[test]
fn measure_json_of_the_bundled_example_has_every_documented_quantity() {
    let fx = Fx::new();
    let out = fx.out("m.json");
    let (_, stderr) = ok(flatcert().args(["measure", "--quiet", "--json"]).arg(&out));
    assert_no_progress_bar(&stderr);
    let doc = read_json(&out);
    assert_eq!(doc["schema"], "flatcert.measurements/v1");
    assert_eq!(doc["inputs"]["k"], serde_json::json!([1, 2, 4]));
    assert_eq!(doc["inputs"]["widths"], serde_json::json!([64, 64, 64, 10]));
    let documented = documented_names(&[1, 2, 4]);
    // The contract of issue 2 item 6 must be documented …
    for k in [1, 2, 4] {
        for stem in [
            "param_grad_moment",
            "first_layer_grad_moment",
            "input_grad_moment",
            "param_grad_elementwise",
            "input_grad_elementwise",
        ] {
            let name = format!("{stem}_k{k}");
            assert!(documented.contains(&name), "{name} not documented");
        }
    }
    for name in [
        "train_loss",
        "max_abs_residual",
        "input_norm_min",
        "input_norm_max",
        "first_layer_spectral_norm",
        "first_layer_frobenius_norm",
        "gauss_newton_trace",
        "per_sample_lambda_max",
        "identity_max_abs_residual",
        "first_layer_inequality_max_ratio",
    ] {
        assert!(
            documented.contains(&name.to_string()),
            "{name} not documented"
        );
    }
    // … and everything documented must be in the document, as a well-formed quantity.
    for name in &documented {
        q(&doc, name);
    }
    assert_eq!(kind(&doc, "first_layer_spectral_norm"), "upper");
    assert_eq!(kind(&doc, "first_layer_spectral_norm_lower"), "lower");
    assert_eq!(kind(&doc, "gauss_newton_trace"), "exact");
    let (up, lo) = (
        q(&doc, "first_layer_spectral_norm"),
        q(&doc, "first_layer_spectral_norm_lower"),
    );
    assert!(0.0 < lo && lo <= up, "lower {lo} > upper {up}");
    assert!(up <= q(&doc, "first_layer_frobenius_norm") * (1.0 + 1e-12));
    // Identities that hold exactly in real arithmetic (docs/measurements.md): g_W(1)² = tr G and
    // param_grad_moment_k1² = tr G. They are computed by different reductions over P = 8970
    // parameters and n = 256 samples; the rounding error is ≲ (P + n)·u ≈ 1e-12 in the worst
    // case, so 1e-10 has ample headroom while any formula slip (e.g. a missing bias) is O(1e-2).
    let tr = q(&doc, "gauss_newton_trace");
    assert_rel(
        "g_W(1)^2",
        q(&doc, "param_grad_elementwise_k1").powi(2),
        tr,
        1e-10,
    );
    assert_rel("M_1^2", q(&doc, "param_grad_moment_k1").powi(2), tr, 1e-10);
    // Likewise g_x(1) = input_grad_moment_k1 (both (1/n)Σ‖J_x‖_F², summed over d·C = 640 terms).
    let gx1 = q(&doc, "input_grad_elementwise_k1");
    assert_rel("g_x(1)", gx1, q(&doc, "input_grad_moment_k1"), 1e-10);
    // Power means increase with the order (Lyapunov); 1e-12 slack for rounding only.
    for stem in [
        "param_grad_moment",
        "first_layer_grad_moment",
        "input_grad_moment",
    ] {
        let m: Vec<f64> = [1, 2, 4]
            .iter()
            .map(|k| q(&doc, &format!("{stem}_k{k}")))
            .collect();
        assert!(
            m[0] <= m[1] * (1.0 + 1e-12) && m[1] <= m[2] * (1.0 + 1e-12),
            "{stem}: {m:?}"
        );
    }
    // T2 says the ratio is ≤ 1 (it is computed with the lower bound of ‖W‖₂: allow rounding).
    assert!(q(&doc, "first_layer_inequality_max_ratio") <= 1.0 + 1e-9);
    assert!(q(&doc, "train_loss") >= 0.0);
}

// ---------------------------------------------------------------------------------------------
// User-provided model and data, against closed forms
// ---------------------------------------------------------------------------------------------

/// For a single dense layer f(x) = Wx + b (C × d), every per-sample quantity has a closed form:
/// ∂f_c/∂W_{c'j} = δ_{cc'} x_j and ∂f_c/∂b_{c'} = δ_{cc'}, so ‖J_θ(x)‖_F² = C(‖x‖² + 1),
/// ‖J_W(x)‖_F² = C‖x‖², J_x = W, J_θJ_θᵀ = (‖x‖² + 1)I_C, and the entrywise sums are
/// Σ_{c,p}|∂f_c/∂θ_p|^{2k} = C(Σ_j x_j^{2k} + 1), Σ_{c,j}|∂f_c/∂x_j|^{2k} = Σ W_{cj}^{2k}.
#[test]
fn measure_linear_network_matches_closed_forms() {
    const N1: usize = 12;
    let fx = Fx::new();
    // A single layer: the activation is never applied (none after the last layer).
    let mlp = random_mlp(&[D, C], Activation::Tanh, 21);
    let x = random_data(D, N1, 22); // d × n column-major = n × d row-major
    let y = random_data(C, N1, 23);
    let model = fx.model("lin.safetensors", &mlp);
    let xp = fx.npy("x.npy", x.as_slice(), N1, D);
    let yp = fx.npy("y.npy", y.as_slice(), N1, C);
    let out = fx.out("m.json");
    let (_, stderr) = ok(measure(&fx, &model, &xp, Some(&yp)).args(["--k", "1,3"]));
    assert_no_progress_bar(&stderr);
    let doc = read_json(&out);
    assert_eq!(doc["inputs"]["k"], serde_json::json!([1, 3]));
    assert_eq!(doc["inputs"]["n"], N1);
    assert_eq!(doc["inputs"]["widths"], serde_json::json!([D, C]));
    assert!(
        doc.get("param_grad_moment_k2").is_none(),
        "k = 2 not requested"
    );
    for name in documented_names(&[1, 3]) {
        q(&doc, &name);
    }

    let w = &mlp.layers()[0].weight;
    let b = &mlp.layers()[0].bias;
    let (n, cf) = (N1 as f64, C as f64);
    let xs: Vec<&[f64]> = x.as_slice().chunks(D).collect();
    let sq: Vec<f64> = xs.iter().map(|r| r.iter().map(|v| v * v).sum()).collect();
    let mean = |f: &dyn Fn(usize) -> f64| (0..N1).map(f).sum::<f64>() / n;
    let wf = w.iter().map(|v| v * v).sum::<f64>().sqrt();
    // Tolerance 1e-12 relative: each closed form is a sum of n = 12 terms of products of at most
    // 2k·d = 18 factors, so both sides carry ≲ (n + 2kd + 10)·u ≈ 4e-15 relative rounding error
    // (the 1/(2k)-th power only shrinks it); 1e-12 leaves 250× headroom, while any formula
    // error (a missing bias term, a wrong power) changes the value by ≳ 1e-2.
    let rel = 1e-12;
    let gn = mean(&|i| cf * (sq[i] + 1.0));
    assert_rel("gauss_newton_trace", q(&doc, "gauss_newton_trace"), gn, rel);
    let lam = sq.iter().fold(0.0f64, |m, s| m.max(s + 1.0));
    assert_rel(
        "per_sample_lambda_max",
        q(&doc, "per_sample_lambda_max"),
        lam,
        rel,
    );
    assert_rel("frobenius", q(&doc, "first_layer_frobenius_norm"), wf, rel);
    let norms: Vec<f64> = sq.iter().map(|s| s.sqrt()).collect();
    let nmin = norms.iter().copied().fold(f64::INFINITY, f64::min);
    let nmax = norms.iter().copied().fold(0.0, f64::max);
    assert_rel("input_norm_min", q(&doc, "input_norm_min"), nmin, rel);
    assert_rel("input_norm_max", q(&doc, "input_norm_max"), nmax, rel);
    let res: Vec<f64> = (0..N1)
        .flat_map(|i| {
            let f = w * nalgebra::DVector::from_column_slice(xs[i]) + b;
            (0..C).map(|c| f[c] - y[(c, i)]).collect::<Vec<_>>()
        })
        .collect();
    let loss = res.iter().map(|r| 0.5 * r * r).sum::<f64>() / n;
    assert_rel("train_loss", q(&doc, "train_loss"), loss, rel);
    let maxres = res.iter().fold(0.0f64, |m, r| m.max(r.abs()));
    assert_rel("max_abs_residual", q(&doc, "max_abs_residual"), maxres, rel);
    for k in [1i32, 3] {
        let inv = 1.0 / f64::from(2 * k);
        let pm = mean(&|i| (cf * (sq[i] + 1.0)).powi(k)).powf(inv);
        let fm = mean(&|i| (cf * sq[i]).powi(k)).powf(inv);
        let pe = mean(&|i| cf * (xs[i].iter().map(|v| v.powi(2 * k)).sum::<f64>() + 1.0)).powf(inv);
        let ie = w.iter().map(|v| v.powi(2 * k)).sum::<f64>().powf(inv);
        assert_rel(
            "param moment",
            q(&doc, &format!("param_grad_moment_k{k}")),
            pm,
            rel,
        );
        assert_rel(
            "W moment",
            q(&doc, &format!("first_layer_grad_moment_k{k}")),
            fm,
            rel,
        );
        // ‖J_x‖_F = ‖W‖_F for every sample, so every moment equals ‖W‖_F.
        assert_rel(
            "x moment",
            q(&doc, &format!("input_grad_moment_k{k}")),
            wf,
            rel,
        );
        assert_rel(
            "g_W",
            q(&doc, &format!("param_grad_elementwise_k{k}")),
            pe,
            rel,
        );
        assert_rel(
            "g_x",
            q(&doc, &format!("input_grad_elementwise_k{k}")),
            ie,
            rel,
        );
    }
    // ‖W‖₂ bracket around the true largest singular value (SVD of a 2 × 3 matrix, ~1e-15
    // accurate; 1e-12 covers that and the bounds' own rounding allowance).
    let s = w.clone().svd(false, false).singular_values.max();
    let (up, lo) = (
        q(&doc, "first_layer_spectral_norm"),
        q(&doc, "first_layer_spectral_norm_lower"),
    );
    assert_eq!(kind(&doc, "first_layer_spectral_norm"), "upper");
    assert!(
        up >= s * (1.0 - 1e-12) && lo <= s * (1.0 + 1e-12),
        "{lo} ≤ {s} ≤ {up}?"
    );
    // The upper bound is rigorous, not exact (Weyl allowance); 1e-6 only checks it is not vacuous.
    assert_rel("spectral upper", up, s, 1e-6);
    // T2 ratio ‖J_x‖_F‖x‖/(‖W‖₂‖J_W‖_F) = ‖W‖_F/(√C·‖W‖₂) for every sample, ‖W‖₂ taken as the
    // reported lower bound (docs); rounding as above.
    let ratio = wf / (cf.sqrt() * lo);
    let got = q(&doc, "first_layer_inequality_max_ratio");
    assert_rel("T2 ratio", got, ratio, 1e-12);
    // T1a residual vanishes identically for a linear layer (both sides are W_cᵀxᵀ, entries of
    // size ≤ ‖W‖_max‖x‖_max ≈ 2): only a few ulps of rounding may remain.
    assert!(q(&doc, "identity_max_abs_residual") <= 1e-13);
}

#[test]
fn measure_on_user_files_with_csv_and_without_targets() {
    let fx = Fx::new();
    let (model, _, _) = fx.standard();
    let x = random_data(D, N, 12);
    let text: String = x
        .as_slice()
        .chunks(D)
        .map(|r| {
            r.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .map(|l| l + "\n")
        .collect();
    let xp = fx.bytes("x.csv", format!("a,b,c\n{text}").as_bytes());
    let (stdout, _) = ok(&mut measure(&fx, &model, &xp, None));
    assert!(stdout.contains("gauss_newton_trace"), "{stdout}");
    let doc = read_json(&fx.out("m.json"));
    assert!(doc.get("train_loss").is_none(), "no targets, no train_loss");
    // The CSV (shortest round-trip formatting) and the npy give the same numbers exactly.
    let npy = fx.npy("x.npy", x.as_slice(), N, D);
    let out2 = fx.out("m2.json");
    ok(flatcert()
        .arg("measure")
        .arg("--model")
        .arg(&model)
        .arg("--x")
        .arg(&npy)
        .arg("--json")
        .arg(&out2));
    let doc2 = read_json(&out2);
    assert_eq!(doc["gauss_newton_trace"], doc2["gauss_newton_trace"]);
}

// ---------------------------------------------------------------------------------------------
// train end to end
// ---------------------------------------------------------------------------------------------

/// Regression data for training: x uniform in ±√3, y a smooth function of x.
fn train_data(fx: &Fx) -> (std::path::PathBuf, std::path::PathBuf) {
    const NT: usize = 32;
    let x = random_data(D, NT, 31);
    let y: Vec<f64> = x
        .as_slice()
        .chunks(D)
        .flat_map(|r| [(r[0]).sin() * 0.5, 0.25 * r[1] * r[2]])
        .collect();
    (
        fx.npy("tx.npy", x.as_slice(), NT, D),
        fx.npy("ty.npy", &y, NT, C),
    )
}

#[test]
fn train_writes_a_checkpoint_that_measure_reads_back() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("m.safetensors");
    let (stdout, stderr) = ok(&mut train(&x, &y, &m, &[]));
    assert!(stdout.contains("final train loss"), "{stdout}");
    assert_no_progress_bar(&stderr);
    let meta = safetensors_metadata(&m);
    let get = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("activation"), "relu");
    assert_eq!(get("lr").parse::<f64>().ok(), Some(0.05));
    assert_eq!(get("batch"), "4");
    assert_eq!(get("steps"), "200");
    assert_eq!(get("seed"), "3");
    assert!(!get("sampling").is_empty(), "sampling missing: {meta:?}");
    assert_eq!(get("sizes"), format!("{D},8,{C}"));
    let json = fx.out("m.json");
    let (stdout, _) = ok(flatcert()
        .arg("measure")
        .arg("--model")
        .arg(&m)
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .arg("--json")
        .arg(&json));
    assert!(stdout.contains("gauss_newton_trace"), "{stdout}");
    let doc = read_json(&json);
    assert_eq!(doc["inputs"]["widths"], serde_json::json!([D, 8, C]));
    assert_eq!(doc["inputs"]["activation"], "relu");
    // The loss the trainer recorded for the saved weights and the one measure computes are the
    // same sum (n = 32 terms) in different block orders: ≲ 40u ≈ 5e-15 relative apart.
    let final_loss: f64 = get("final_train_loss").parse().expect("final_train_loss");
    assert_rel("train_loss", q(&doc, "train_loss"), final_loss, 1e-12);
    // Training did something: the loss of y = ½E‖y‖² at f ≡ 0 is ~0.1; 200 steps go below it.
    assert!(final_loss.is_finite() && final_loss < 0.2, "{final_loss}");
}

/// Same seed → the same network and the same metadata (compared as parsed JSON, so independent of
/// key order); a different seed → a different network.
#[test]
fn train_is_deterministic_for_a_fixed_seed() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let (a, b, c) = (
        fx.out("a.safetensors"),
        fx.out("b.safetensors"),
        fx.out("c.safetensors"),
    );
    ok(&mut train(&x, &y, &a, &[]));
    ok(&mut train(&x, &y, &b, &[]));
    ok(&mut train(&x, &y, &c, &["--seed", "4"]));
    let (pa, pb, pc) = (
        safetensors_parts(&a),
        safetensors_parts(&b),
        safetensors_parts(&c),
    );
    assert_eq!(pa.0, pb.0, "headers differ");
    assert!(pa.1 == pb.1, "same seed, different tensor bytes");
    assert!(pa.1 != pc.1, "different seeds, same tensor bytes");
}

/// Issue 2 / THEORY: "same seed → byte-identical file".
#[test]

fn train_is_byte_identical_for_a_fixed_seed() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let (a, b) = (fx.out("a.safetensors"), fx.out("b.safetensors"));
    ok(&mut train(&x, &y, &a, &[]));
    ok(&mut train(&x, &y, &b, &[]));
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    if ba != bb {
        let ha = String::from_utf8_lossy(&ba[8..ba.len().min(330)]).into_owned();
        let hb = String::from_utf8_lossy(&bb[8..bb.len().min(330)]).into_owned();
        panic!("same seed, different files:\n{ha}\n{hb}");
    }
}

#[test]
fn train_divergence_exits_3_and_writes_nothing() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("m.safetensors");
    let mut cmd = train(&x, &y, &m, &["--lr", "1e6"]);
    expect_error(&mut cmd, 3, &["--lr", "diverged"]);
    fx.assert_no_output();
}

#[test]
fn train_without_quiet_draws_no_progress_bar_when_stderr_is_not_a_tty() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("m.safetensors");
    let out = flatcert()
        .arg("train")
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .args([
            "--sizes",
            &format!("{D},4,{C}"),
            "--lr",
            "0.05",
            "--batch",
            "4",
        ])
        .args(["--steps", "50", "--out"])
        .arg(&m)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_no_progress_bar(&String::from_utf8_lossy(&out.stderr));
    let (x2, _, _) = fx.standard();
    let out = flatcert()
        .arg("measure")
        .arg("--model")
        .arg(&x2)
        .arg("--x")
        .arg(fx.path("x.npy"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_no_progress_bar(&String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit code 2, one line naming the file, the field and what was expected, and no
// output file.
// ---------------------------------------------------------------------------------------------

/// Run `measure` on a hostile checkpoint (with valid data) and check the error contract.
fn bad_checkpoint(bytes: &[u8], needles: &[&str]) -> String {
    let fx = Fx::new();
    let (_, x, y) = fx.standard();
    let m = fx.bytes("bad.safetensors", bytes);
    let mut all = vec![shown(&m)];
    all.extend(needles.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let line = expect_bad_input(&mut measure(&fx, &m, &x, Some(&y)), &refs);
    fx.assert_no_output();
    line
}

/// A valid f64 checkpoint of the standard network, as bytes.
fn valid_checkpoint_bytes() -> Vec<u8> {
    let mlp = random_mlp(&[D, 5, C], Activation::Tanh, 11);
    flatcert::io::checkpoint_to_bytes(&mlp, &Default::default(), flatcert::io::SaveDtype::F64)
        .unwrap()
}

#[test]
fn bad_missing_model_file() {
    let fx = Fx::new();
    let (_, x, y) = fx.standard();
    let m = fx.path("nope.safetensors");
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&m), "No such file"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_missing_data_file() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.path("nope.npy");
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "No such file"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_unreadable_file_a_directory() {
    let fx = Fx::new();
    let (_, x, y) = fx.standard();
    let m = fx.path("dir.safetensors");
    std::fs::create_dir(&m).unwrap();
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&m), "directory"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_not_safetensors() {
    bad_checkpoint(
        b"PK\x03\x04 this is a zip, not safetensors",
        &["header", "not a safetensors"],
    );
}

#[test]
fn bad_truncated_checkpoint() {
    let mut b = valid_checkpoint_bytes();
    b.truncate(b.len() - 5);
    bad_checkpoint(&b, &["data", "truncated"]);
    // Cut inside the 8-byte length field too.
    bad_checkpoint(&b[..5], &["header", "only 5 bytes"]);
}

#[test]
fn bad_header_length_beyond_the_file() {
    let mut b = valid_checkpoint_bytes();
    let len = (b.len() as u64) + 1000;
    b[..8].copy_from_slice(&len.to_le_bytes());
    bad_checkpoint(&b, &["header length", &len.to_string(), "beyond the end"]);
}

#[test]
fn bad_tensor_offsets_beyond_the_file() {
    let header = r#"{"0.weight":{"dtype":"F64","shape":[2,3],"data_offsets":[0,48]},"0.bias":{"dtype":"F64","shape":[2],"data_offsets":[1000,1016]}}"#;
    let data = f64_bytes(&ramp(8));
    bad_checkpoint(
        &raw_safetensors(header, &data),
        &["tensor '0.bias'", "[1000, 1016]", "beyond the end"],
    );
}

#[test]
fn bad_shapes_that_do_not_chain() {
    let b = safetensors_of(&[
        ("0.weight", "F64", &[4, 3], f64_bytes(&ramp(12))),
        ("0.bias", "F64", &[4], f64_bytes(&ramp(4))),
        ("2.weight", "F64", &[2, 5], f64_bytes(&ramp(10))),
        ("2.bias", "F64", &[2], f64_bytes(&ramp(2))),
    ]);
    bad_checkpoint(
        &b,
        &["'2.weight'", "[2, 5]", "'0.weight'", "[4, 3]", "chain"],
    );
}

#[test]
fn bad_missing_bias() {
    let b = safetensors_of(&[
        ("0.weight", "F64", &[4, 3], f64_bytes(&ramp(12))),
        ("0.bias", "F64", &[4], f64_bytes(&ramp(4))),
        ("2.weight", "F64", &[2, 4], f64_bytes(&ramp(8))),
    ]);
    bad_checkpoint(&b, &["tensor '2.bias'", "missing", "[2]"]);
}

#[test]
fn bad_integer_weights() {
    let ints: Vec<u8> = (1..=6i32).flat_map(i32::to_le_bytes).collect();
    let b = safetensors_of(&[
        ("0.weight", "I32", &[2, 3], ints),
        ("0.bias", "F64", &[2], f64_bytes(&ramp(2))),
    ]);
    bad_checkpoint(
        &b,
        &["tensor '0.weight'", "I32", "integer", "floating-point"],
    );
}

#[test]
fn bad_non_finite_weights() {
    let mut w = ramp(6);
    w[5] = f64::NAN; // row 1, column 2 of a [2, 3] weight
    let b = safetensors_of(&[
        ("0.weight", "F64", &[2, 3], f64_bytes(&w)),
        ("0.bias", "F64", &[2], f64_bytes(&ramp(2))),
    ]);
    bad_checkpoint(&b, &["tensor '0.weight'[1, 2]", "NaN", "finite"]);
}

#[test]
fn bad_non_finite_data() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let mut v = random_data(D, N, 12).as_slice().to_vec();
    v[2 * D + 1] = f64::INFINITY;
    let x = fx.npy("x.npy", &v, N, D);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "x[2, 1]", "inf", "finite"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_non_finite_targets() {
    let fx = Fx::new();
    let (m, x, _) = fx.standard();
    let mut v = random_data(C, N, 13).as_slice().to_vec();
    v[3 * C] = f64::NAN;
    let y = fx.npy("y.npy", &v, N, C);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&y), "y[3, 0]", "NaN", "finite"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_x_with_wrong_feature_count() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.npy("x4.npy", random_data(D + 1, N, 1).as_slice(), N, D + 1);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "shape", "4 features", &format!("d = {D}")],
    );
    fx.assert_no_output();
}

#[test]
fn bad_y_with_wrong_n() {
    let fx = Fx::new();
    let (m, x, _) = fx.standard();
    let y = fx.npy("y.npy", random_data(C, N + 1, 1).as_slice(), N + 1, C);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[
            &shown(&y),
            "shape",
            &format!("{} rows", N + 1),
            &format!("expected {N} rows"),
        ],
    );
    fx.assert_no_output();
}

#[test]
fn bad_y_with_wrong_output_count() {
    let fx = Fx::new();
    let (m, x, _) = fx.standard();
    let y = fx.npy("y3.npy", random_data(C + 1, N, 1).as_slice(), N, C + 1);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&y), "shape", &format!("C = {C}")],
    );
    fx.assert_no_output();
}

#[test]
fn bad_empty_data() {
    let fx = Fx::new();
    let (m, _, _) = fx.standard();
    let x = fx.npy("empty.npy", &[], 0, D);
    expect_bad_input(
        &mut measure(&fx, &m, &x, None),
        &[&shown(&x), "shape", "n = 0"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_unknown_activation_flag() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let mut cmd = measure(&fx, &m, &x, Some(&y));
    expect_bad_input(
        cmd.args(["--activation", "gelu"]),
        &["--activation", "gelu", "relu"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_unknown_activation_in_checkpoint_metadata() {
    let header = format!(
        r#"{{"__metadata__":{{"activation":"gelu"}},"0.weight":{{"dtype":"F64","shape":[{C},{D}],"data_offsets":[0,{w}]}},"0.bias":{{"dtype":"F64","shape":[{C}],"data_offsets":[{w},{e}]}}}}"#,
        w = 8 * C * D,
        e = 8 * (C * D + C)
    );
    let mut data = f64_bytes(&ramp(C * D));
    data.extend(f64_bytes(&ramp(C)));
    bad_checkpoint(
        &raw_safetensors(&header, &data),
        &["__metadata__.activation", "gelu", "relu"],
    );
}

#[test]
fn bad_unknown_activation_for_train() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("m.safetensors");
    expect_bad_input(
        &mut train(&x, &y, &m, &["--activation", "gelu"]),
        &["--activation", "gelu", "relu"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_k_zero() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let mut cmd = measure(&fx, &m, &x, Some(&y));
    expect_bad_input(cmd.args(["--k", "1,0"]), &["--k", "got 0", "1"]);
    fx.assert_no_output();
}

#[test]
fn bad_labels_outside_one_hot() {
    let fx = Fx::new();
    let m = fx.model("m3.safetensors", &random_mlp(&[D, 3], Activation::Relu, 5));
    let x = fx.npy("x.npy", random_data(D, N, 12).as_slice(), N, D);
    let labels: Vec<f64> = (0..N)
        .map(|i| if i == 4 { 3.0 } else { (i % 3) as f64 })
        .collect();
    let y = fx.npy("labels.npy", &labels, N, 1);
    let mut cmd = measure(&fx, &m, &x, Some(&y));
    expect_bad_input(
        cmd.args(["--one-hot", "3"]),
        &[&shown(&y), "label[4]", "label 3", "0..3"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_npy_magic() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.bytes("x.npy", b"1,2,3\n4,5,6\n");
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "magic", ".npy"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_npy_truncated_data() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let mut b = flatcert::io::npy_matrix_bytes(random_data(D, N, 12).as_slice(), N, D).unwrap();
    b.truncate(b.len() - 8);
    let x = fx.bytes("x.npy", &b);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "shape", "truncated", &format!("{}", 8 * N * D)],
    );
    fx.assert_no_output();
}

#[test]
fn bad_npy_header_dict() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let mut b = flatcert::io::npy_matrix_bytes(random_data(D, N, 12).as_slice(), N, D).unwrap();
    // Complex dtype '<c8' (same length as '<f8', so the header length stays valid).
    let at = b
        .windows(5)
        .position(|w| w == b"'<f8'")
        .expect("descr in header");
    b[at..at + 5].copy_from_slice(b"'<c8'");
    let x = fx.bytes("x.npy", &b);
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "descr", "<c8", "float64"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_csv_ragged_row() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.csv_with_row("x.csv", "a,b,c\n", "1.0,2.0,3.0\n", 3, "1.0,2.0\n");
    // Line 1 is the header, sample 3 is on line 5.
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "line 5", "2 columns", "expected 3"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_csv_non_numeric_cell() {
    let fx = Fx::new();
    let (m, _, y) = fx.standard();
    let x = fx.csv_with_row("x.csv", "", "1.0,2.0,3.0\n", 6, "1.0,abc,3.0\n");
    expect_bad_input(
        &mut measure(&fx, &m, &x, Some(&y)),
        &[&shown(&x), "line 7, column 2", "'abc'", "number"],
    );
    fx.assert_no_output();
}

#[test]
fn bad_unknown_layer_names() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let mut cmd = measure(&fx, &m, &x, Some(&y));
    expect_bad_input(
        cmd.args(["--layers", "0,fc9"]),
        &[&shown(&m), "--layers", "'fc9'", "fc9.weight", "0.weight"],
    );
    fx.assert_no_output();
}

/// `flatcert train` with one bad hyper-parameter: exit 2 naming the flag, nothing written.
fn bad_train(extra: &[&str], needles: &[&str]) {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("m.safetensors");
    expect_bad_input(&mut train(&x, &y, &m, extra), needles);
    fx.assert_no_output();
}

#[test]
fn bad_lr_zero() {
    bad_train(&["--lr", "0"], &["--lr", "> 0", "got 0"]);
}

#[test]
fn bad_lr_negative() {
    bad_train(&["--lr=-1"], &["--lr", "> 0", "got -1"]);
}

/// `--lr -1` (with a space) is how users write it; it must still be exit 2 with the one-line
/// domain message, not clap's "unexpected argument '-1' found" usage dump.
#[test]

fn bad_lr_negative_as_separate_argument() {
    bad_train(&["--lr", "-1"], &["--lr"]);
}

#[test]
fn bad_lr_nan() {
    bad_train(&["--lr", "nan"], &["--lr", "finite", "NaN"]);
}

#[test]
fn bad_batch_zero() {
    bad_train(&["--batch", "0"], &["--batch", "≥ 1"]);
}

#[test]
fn bad_batch_larger_than_n() {
    bad_train(&["--batch", "33"], &["--batch", "33", "n = 32"]);
}

#[test]
fn bad_x_scale_zero() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let mut cmd = measure(&fx, &m, &x, Some(&y));
    expect_bad_input(
        cmd.args(["--x-scale", "0"]),
        &["--x-scale", "nonzero", "got 0"],
    );
    fx.assert_no_output();
    bad_train(&["--x-scale", "0"], &["--x-scale", "nonzero"]);
}

/// `--x-scale 0` must be rejected whatever the data; with the bundled example it is ignored.
#[test]

fn bad_x_scale_zero_with_the_bundled_example() {
    let fx = Fx::new();
    let json = fx.out("m.json");
    let mut cmd = flatcert();
    cmd.args(["measure", "--x-scale", "0", "--json"]).arg(&json);
    expect_bad_input(&mut cmd, &["--x-scale"]);
    fx.assert_no_output();
}

/// A negative scale is legal (finite, nonzero) and must be accepted when written with a space.
#[test]

fn negative_x_scale_is_accepted() {
    let fx = Fx::new();
    let (m, x, _) = fx.standard();
    ok(measure(&fx, &m, &x, None).args(["--x-scale", "-0.5"]));
}

#[test]
fn bad_json_into_a_missing_directory() {
    let fx = Fx::new();
    let (m, x, y) = fx.standard();
    let out = fx.out("no/such/dir/m.json");
    let mut cmd = flatcert();
    cmd.arg("measure")
        .arg("--model")
        .arg(&m)
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .arg("--json")
        .arg(&out);
    expect_bad_input(&mut cmd, &[&shown(&out), "No such file"]);
    assert!(!out.exists());
    fx.assert_no_output();
}

/// The write error should name the user's file only, not write_atomic's random temporary file.
#[test]

fn json_write_error_names_only_the_users_file() {
    let fx = Fx::new();
    let out = fx.out("no/such/dir/m.json");
    let mut cmd = flatcert();
    cmd.args(["measure", "--quiet", "--json"]).arg(&out);
    let line = expect_bad_input(&mut cmd, &[&shown(&out)]);
    assert!(!line.contains(" at path "), "{line}");
}

#[test]
fn bad_train_out_into_a_missing_directory() {
    let fx = Fx::new();
    let (x, y) = train_data(&fx);
    let m = fx.out("no/such/m.safetensors");
    expect_bad_input(&mut train(&x, &y, &m, &[]), &[&shown(&m), "No such file"]);
    fx.assert_no_output();
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fx::new();
    let json = fx.out("m.json");
    for args in [
        vec!["measure", "--bogus"],
        vec!["frobnicate"],
        vec![],
        vec!["measure", "--k", "x"],
        vec!["train", "--x", "a.npy"],
    ] {
        let out = flatcert()
            .args(&args)
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    fx.assert_no_output();
    // --help and --version are not errors.
    flatcert().arg("--help").assert().code(0);
    flatcert().arg("--version").assert().code(0);
}

#[test]
fn bad_model_without_x_and_x_without_model() {
    let fx = Fx::new();
    let (m, x, _) = fx.standard();
    let json = fx.out("m.json");
    let mut cmd = flatcert();
    cmd.arg("measure")
        .arg("--model")
        .arg(&m)
        .arg("--json")
        .arg(&json);
    expect_bad_input(&mut cmd, &["--model", "--x"]);
    let mut cmd = flatcert();
    cmd.arg("measure")
        .arg("--x")
        .arg(&x)
        .arg("--json")
        .arg(&json);
    expect_bad_input(&mut cmd, &["--x", "--model"]);
    fx.assert_no_output();
}

// ------------------------------------------------------------------------------------------
// certify --format markdown and --report DIR (issue 4 items 7–8; docs/report.md).
// ------------------------------------------------------------------------------------------

/// THEORY §5: f(x) = |x| as the ReLU 1–2–1 network, x = (−1, 1, 2), y = (1, 1, 2), as files.
fn abs_files(fx: &Fx) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let mlp = flatcert::testutil::abs_net();
    (
        fx.model("abs.safetensors", &mlp),
        fx.npy("x.npy", &[-1.0, 1.0, 2.0], 3, 1),
        fx.npy("y.npy", &[1.0, 1.0, 2.0], 3, 1),
    )
}

/// `flatcert certify --model M --x X --y Y` plus `extra`.
fn certify_files(m: &Path, x: &Path, y: &Path, extra: &[&str]) -> Command {
    let mut cmd = flatcert();
    cmd.arg("certify")
        .arg("--model")
        .arg(m)
        .arg("--x")
        .arg(x)
        .arg("--y")
        .arg(y)
        .args(extra);
    cmd
}

/// Run; (exit code, stdout), with no panic.
fn code_and_stdout(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run flatcert");
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(!se.contains("panicked"), "{se}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The relative targets of the Markdown image links `![…](target)`.
fn image_links(md: &str) -> Vec<String> {
    md.match_indices("![")
        .filter_map(|(i, _)| {
            let rest = &md[i..];
            let open = rest.find("](")?;
            let close = rest[open..].find(')')?;
            Some(rest[open + 2..open + close].to_string())
        })
        .collect()
}

#[test]
fn certify_markdown_exits_like_the_table() {
    // The golden example on both sides of η* (0.22 certified, 0.25 not), and the bundled example
    // on the operator path (--gram-limit 100: fast; T5 not computed).
    let fx = Fx::new();
    let (m, x, y) = abs_files(&fx);
    for (lr, want) in [("0.22", 0), ("0.25", 1)] {
        let base = ["--lr", lr, "--batch", "1", "--k", "2"];
        let (table_code, _) = code_and_stdout(&mut certify_files(&m, &x, &y, &base));
        let (md_code, md) =
            code_and_stdout(certify_files(&m, &x, &y, &base).args(["--format", "markdown"]));
        assert_eq!((table_code, md_code), (want, want), "η = {lr}");
        assert!(md.starts_with("# flatcert certificate\n"), "{md}");
        let status = if want == 0 {
            "**CERTIFIED** — exit code 0"
        } else {
            "**NOT CERTIFIED** — exit code 1"
        };
        assert!(md.contains(status), "{md}");
        for id in ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10"] {
            assert!(md.contains(&format!("\n## {id} — ")), "section {id}");
        }
        assert!(md.contains("SHA-256 `"), "file hashes in the header");
        assert!(md.contains(&format!(
            "| learning rate | η = {lr} in the theory convention"
        )));
        assert!(md.contains("| `stability` |"), "T5's hypothesis row");
        assert!(!md.contains("time:"), "no timing in the markdown");
    }
    let args = ["certify", "--gram-limit", "100", "--k", "2"];
    let (table_code, _) = code_and_stdout(flatcert().args(args));
    let (md_code, md) = code_and_stdout(flatcert().args(args).args(["--format", "markdown"]));
    assert_eq!(table_code, md_code);
    assert!(md.contains(&format!("exit code {md_code}")));
    assert!(md.contains("<embedded:digits/model.safetensors>"));
    // Deterministic: the same run gives the same text.
    let (_, again) = code_and_stdout(flatcert().args(args).args(["--format", "markdown"]));
    assert_eq!(md, again);
}

#[test]
fn certify_report_writes_report_md_and_every_svg_it_links() {
    let fx = Fx::new();
    let (m, x, y) = abs_files(&fx);
    let dir = fx.out("report");
    let json = fx.out("c.json");
    let extra = [
        "--lr",
        "0.22",
        "--batch",
        "1",
        "--k",
        "2",
        "--epsilon",
        "0.25",
        "--tau",
        "1",
        "--format",
        "markdown",
    ];
    let (code, stdout) = code_and_stdout(
        certify_files(&m, &x, &y, &extra)
            .arg("--report")
            .arg(&dir)
            .arg("--json")
            .arg(&json),
    );
    let cert = read_json(&json);
    assert_eq!(Some(i64::from(code)), cert["summary"]["exit_code"].as_i64());
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md written");
    assert_eq!(stdout, md, "--format markdown prints the report");
    let links = image_links(&md);
    assert_eq!(
        links,
        ["t6_curvature.svg", "t7_sobolev.svg", "t9_radii.svg"],
        "{md}"
    );
    for l in &links {
        let svg = std::fs::read_to_string(dir.join(l)).expect("linked SVG written");
        assert!(svg.starts_with("<svg"), "{l}");
        flatcert::render::svg::xml::well_formed(&svg).unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    // Exactly report.md and the linked figures: no temporary file is left.
    let mut entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut want: Vec<String> = links.clone();
    want.push("report.md".into());
    want.sort();
    assert_eq!(entries, want);
    // The table format says where the report went.
    let (code2, table) = code_and_stdout(
        certify_files(&m, &x, &y, &extra[..extra.len() - 2])
            .arg("--report")
            .arg(&dir),
    );
    assert_eq!(code2, code);
    assert!(table.contains("report.md and its figures"), "{table}");
}

#[test]
fn certify_bad_format_or_report_dir_exits_2_and_writes_nothing() {
    let fx = Fx::new();
    let (m, x, y) = abs_files(&fx);
    let base = ["--lr", "0.22", "--batch", "1", "--k", "2"];
    let line = expect_bad_input(
        certify_files(&m, &x, &y, &base)
            .args(["--format", "html", "--report"])
            .arg(fx.out("rep"))
            .arg("--json")
            .arg(fx.out("c.json")),
        &["--format", "html", "markdown"],
    );
    assert!(line.contains("table, json, markdown"), "{line}");
    fx.assert_no_output();
    // --report into a missing parent directory, or onto a file: refused before any work.
    expect_bad_input(
        certify_files(&m, &x, &y, &base)
            .arg("--report")
            .arg(fx.out("no/such/dir"))
            .arg("--json")
            .arg(fx.out("c.json")),
        &["--report", "parent directory does not exist"],
    );
    fx.assert_no_output();
    let file = fx.path("a_file");
    std::fs::write(&file, b"x").unwrap();
    expect_bad_input(
        certify_files(&m, &x, &y, &base).arg("--report").arg(&file),
        &["--report", "not a directory"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Issue 12 item 2: with no --activation and no `activation` metadata, relu is assumed *and said*
/// (stderr, JSON `inputs.activation_source`, notes); when the network then fits its targets worse
/// than a constant, the note names the assumed activation and the flag to set it. An explicit
/// --activation says nothing of the kind.
#[test]
fn a_defaulted_activation_is_said_and_a_bad_fit_blames_it() {
    let fx = Fx::new();
    let relu = random_mlp(&[1, 4, 1], Activation::Relu, 3);
    let xs = ramp(12);
    let x = DMatrix::from_row_slice(1, xs.len(), &xs);
    // y = −f_relu(x): the relu loss ½·mean(2f)² exceeds the constant predictor's ½·var(f).
    let y: Vec<f64> = relu.forward(x.as_view()).iter().map(|v| -v).collect();
    // The same checkpoint without its `__metadata__` (flatcert's writer always records the
    // activation; a PyTorch export does not).
    let (mut header, data) = safetensors_parts(&fx.model("with_meta.safetensors", &relu));
    header.as_object_mut().unwrap().remove("__metadata__");
    let m = fx.bytes(
        "m.safetensors",
        &raw_safetensors(&header.to_string(), &data),
    );
    let xp = fx.npy("x.npy", &xs, xs.len(), 1);
    let yp = fx.npy("y.npy", &y, y.len(), 1);
    let json = fx.out("m.json");
    let out = flatcert()
        .arg("measure")
        .arg("--model")
        .arg(&m)
        .arg("--x")
        .arg(&xp)
        .arg("--y")
        .arg(&yp)
        .args(["--no-curvature", "--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{se}");
    assert!(se.contains("activation relu assumed by default"), "{se}");
    assert!(
        se.contains("is larger than the loss of the best constant"),
        "{se}"
    );
    assert!(se.contains("--activation"), "{se}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["inputs"]["activation_source"], "default");
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("activation relu assumed by default"),
        "{notes}"
    );
    // `bound` on that document repeats it.
    let out = flatcert()
        .args(["bound", "--lr", "0.1", "--batch", "2", "--measurements"])
        .arg(&json)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("assumed by default"), "{se}");
    // Given explicitly: no note, and the source says so.
    let out = flatcert()
        .arg("measure")
        .arg("--model")
        .arg(&m)
        .arg("--x")
        .arg(&xp)
        .arg("--y")
        .arg(&yp)
        .args([
            "--activation",
            "relu",
            "--no-curvature",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(!se.contains("assumed by default"), "{se}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["inputs"]["activation_source"], "flag");
}

/// A reader that closes stdout early (`flatcert measure | head -1`) ends flatcert quietly by
/// SIGPIPE, as for any Unix filter, not with a "Broken pipe" panic on stderr.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_run_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_flatcert"))
        .args(["measure", "--quiet", "--no-curvature"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn flatcert");
    // Close the read end before flatcert prints anything (it measures first).
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?} {stderr}", out.status);
}
