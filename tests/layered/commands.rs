//! `measure` and `certify` on a layered (convolutional) checkpoint (issue 14 items 2 and 4):
//! loading with the architecture in the metadata or from `--arch`, NCHW or flat data, the
//! errors for mismatched shapes and dense-only flags, and the T1b / radial quantities checked
//! against identities of THEORY §7 and finite differences.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::common::{
    Fx as TempDir, expect_bad_input, flatcert, read_json, run_cmd, theorem_status,
};
use flatcert::net::{ArchSpec, Sequential, Tensor};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const SPEC: &str = r#"{"input_shape":[1,6,6],"layers":[
 {"type":"conv2d","name":"c1","out_channels":3,"kernel":3,"padding":1},
 {"type":"tanh"},
 {"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"c2","out_channels":4,"kernel":2,"stride":1},
 {"type":"relu"},
 {"type":"flatten"},
 {"type":"linear","name":"fc","out_features":2}]}"#;

const N: usize = 16;
const D: usize = 36;

/// The network of the spec `json` with the tensors `shapes`, every entry drawn uniformly from
/// (−scale, scale) in tensor order from ChaCha8 seeded `seed`.
pub(super) fn seeded_net(
    json: &str,
    shapes: &[(&str, Vec<usize>)],
    seed: u64,
    scale: f64,
) -> Sequential {
    let spec = ArchSpec::from_json(json).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape) in shapes {
        let len = shape.iter().product();
        let v: Vec<f64> = (0..len).map(|_| rng.random_range(-scale..scale)).collect();
        tensors.insert(name.to_string(), (shape.clone(), v));
    }
    spec.build(&tensors).unwrap()
}

/// The network of [`SPEC`] with seeded weights in (−0.5, 0.5).
fn network(seed: u64) -> Sequential {
    let shapes = [
        ("c1.weight", vec![3, 1, 3, 3]),
        ("c1.bias", vec![3]),
        ("c2.weight", vec![4, 3, 2, 2]),
        ("c2.bias", vec![4]),
        ("fc.weight", vec![2, 16]),
        ("fc.bias", vec![2]),
    ];
    seeded_net(SPEC, &shapes, seed, 0.5)
}

/// An f64 `.npy` file of any shape (row-major).
pub(super) fn npy(dir: &TempDir, name: &str, data: &[f64], shape: &[usize]) -> PathBuf {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple}, }}");
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.extend(std::iter::repeat_n(' ', total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    dir.bytes(name, &out)
}

/// The checkpoint (architecture in its metadata unless `bare`), NCHW x and targets y.
pub(super) struct Files {
    pub(super) dir: TempDir,
    pub(super) model: PathBuf,
    pub(super) x: PathBuf,
    pub(super) y: PathBuf,
    x_data: Vec<f64>,
}

impl Files {
    /// `flatcert <command> --quiet --model M --x X --y Y <extra…>`.
    fn run(&self, command: &str, extra: &[&str]) -> (i32, String, String) {
        let mut c = flatcert();
        c.args([command, "--quiet"]);
        for (flag, p) in [("--model", &self.model), ("--x", &self.x), ("--y", &self.y)] {
            c.arg(flag).arg(p);
        }
        run_cmd(c.args(extra))
    }
}

pub(super) fn files(bare: bool) -> Files {
    let dir = TempDir::new();
    let net = network(3);
    let mut bytes = flatcert::net::net_to_safetensors(&net, &BTreeMap::new()).unwrap();
    if bare {
        // The same tensors without the metadata: the architecture must come from --arch.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
        bytes = safetensors::serialize(views, None).unwrap();
    }
    let model = dir.bytes("cnn.safetensors", &bytes);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x_data: Vec<f64> = (0..N * D).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y_data: Vec<f64> = (0..N * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = npy(&dir, "x.npy", &x_data, &[N, 1, 6, 6]);
    let y = npy(&dir, "y.npy", &y_data, &[N, 2]);
    Files {
        dir,
        model,
        x,
        y,
        x_data,
    }
}

fn q(doc: &serde_json::Value, name: &str) -> (f64, f64) {
    let e = &doc[name];
    (
        e["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} missing")),
        e["tol"].as_f64().unwrap_or(0.0),
    )
}

#[test]
fn measure_reports_t1b_and_the_radial_quantities_consistently() {
    let f = files(false);
    let out = f.dir.out("m.json");
    let (code, stdout, stderr) = f.run("measure", &["--json", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc = read_json(&out);
    assert!(doc["inputs"]["architecture"]["layers"].is_array());
    // T1b holds to its expected rounding size.
    let (r, tol) = q(&doc, "identity_scalar_max_abs_residual");
    assert!(r <= tol, "T1b residual {r} > {tol}");
    // THEORY T7(e): g_W(1)² = tr G (two independent sums: factorized power sums vs norms).
    let (gw1, _) = q(&doc, "param_grad_elementwise_k1");
    let (tr, tr_tol) = q(&doc, "gauss_newton_trace");
    assert!(
        (gw1 * gw1 - tr).abs() <= tr_tol + 1e-14 * tr,
        "{gw1}² vs {tr}"
    );
    // §7(b): (1/n)Σ‖J_x x‖² ≤ ‖W‖_F² tr G_W (Cauchy–Schwarz on T1b).
    let (radial, _) = q(&doc, "input_grad_radial_mean_sq");
    let (w, _) = q(&doc, "first_layer_frobenius_norm");
    let (trw, _) = q(&doc, "first_layer_gauss_newton_trace");
    assert!(
        radial > 0.0 && radial <= w * w * trw,
        "{radial} vs {}",
        w * w * trw
    );
    // max_i ‖J_x(x_i)x_i‖ against central differences of f along the ray: f((1+h)x) − f((1−h)x)
    // over 2h is J_x x up to O(h²)·‖f‴‖ (the net is piecewise smooth: a sample whose ray crosses
    // a kink within ±h would be off by O(1), so the max over samples is compared, with h small
    // enough that no kink is crossed in practice, and a 1e-5 relative tolerance that covers the
    // O(h²) term and the rounding ~u/h ≈ 1e-10).
    let net = network(3);
    let h = 1e-5;
    let mut fd_max = 0.0f64;
    for i in 0..N {
        let xi = &f.x_data[i * D..(i + 1) * D];
        let at = |s: f64| {
            let t = Tensor::new(1, net.input_shape(), xi.iter().map(|v| v * s).collect()).unwrap();
            net.forward(&t).unwrap().data
        };
        let (a, b) = (at(1.0 + h), at(1.0 - h));
        let norm = a
            .iter()
            .zip(&b)
            .map(|(p, m)| ((p - m) / (2.0 * h)).powi(2))
            .sum::<f64>()
            .sqrt();
        fd_max = fd_max.max(norm);
    }
    let (rmax, _) = q(&doc, "input_grad_radial_max");
    assert!(
        (rmax - fd_max).abs() <= 1e-5 * fd_max,
        "{rmax} vs FD {fd_max}"
    );
    assert!(stdout.contains("identity_scalar_max_abs_residual"));
}

#[test]
fn certify_decides_t1b_and_the_radial_forms_and_says_what_is_missing() {
    let f = files(false);
    let out = f.dir.out("c.json");
    let (code, stdout, stderr) = f.run(
        "certify",
        &[
            "--lr",
            "0.01",
            "--batch",
            "4",
            "--k",
            "2",
            "--json",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.exists(), "{code}\n{stdout}\n{stderr}");
    let cert = read_json(&out);
    // The exit code follows the summary (docs/certificate.md): 0 iff every checked hypothesis
    // is certified; what was not computed is listed with its reason.
    assert_eq!(
        code,
        cert["summary"]["exit_code"].as_i64().unwrap() as i32,
        "{stdout}\n{stderr}"
    );
    let status = |id: &str| theorem_status(&cert, id);
    for id in ["T1", "T2", "T3", "T7"] {
        assert_eq!(status(id), "certified", "{id}: {}", cert["verdicts"][id]);
    }
    // T4–T6 run on the Gram path (nC = 32 ≤ --gram-limit, THEORY §7(c)): each is decided,
    // whatever the verdict at this η.
    for id in ["T4", "T5", "T6"] {
        assert_ne!(status(id), "not_computed", "{id}: {}", cert["verdicts"][id]);
    }
    let q = &cert["measurements"];
    assert!(q["gauss_newton_lambda_max"]["value"].as_f64().unwrap() > 0.0);
    assert!(q["mean_square_dtilde_lambda_max"].is_object() || stdout.contains("T5(i)"));
    assert!(
        cert["verdicts"]["T2"]["title"]
            .as_str()
            .unwrap()
            .contains("radial")
    );
    // The assumed rounding hypothesis of the layered engine is listed.
    let hyps = cert["verdicts"]["T3"]["hypotheses"].to_string();
    assert!(hyps.contains("backward_rounding"), "{hyps}");
    assert!(cert["inputs"]["architecture"].is_object());
    // `verify` recomputes it from the recorded files and architecture.
    let (code, vout, verr) = run_cmd(flatcert().args(["verify", out.to_str().unwrap()]));
    assert_eq!(code, 0, "{vout}\n{verr}");
    // …and `bound` re-evaluates the theorems from the numbers alone (T2 needs per-sample norms).
    let (_, bout, berr) =
        run_cmd(flatcert().args(["bound", "--measurements", out.to_str().unwrap()]));
    assert!(
        bout.contains("T3") && !berr.contains("error"),
        "{bout}\n{berr}"
    );
}

#[test]
fn arch_flag_flat_data_and_shape_errors() {
    let f = files(true);
    let arch = f.dir.bytes("arch.json", SPEC.as_bytes());
    let base = |x: &PathBuf| {
        let mut c = flatcert();
        c.args([
            "measure",
            "--quiet",
            "--no-curvature",
            "--model",
            f.model.to_str().unwrap(),
            "--x",
            x.to_str().unwrap(),
        ]);
        c
    };
    // Without --arch and without metadata, the checkpoint reads as a dense MLP and fails there.
    let (code, _, _) = run_cmd(&mut base(&f.x));
    assert_eq!(code, 2);
    // With --arch: fine.
    let (code, out, err) = run_cmd(base(&f.x).args(["--arch", arch.to_str().unwrap()]));
    assert_eq!(code, 0, "{out}{err}");
    // Flat rows need --input-shape.
    let flat = npy(&f.dir, "flat.npy", &f.x_data, &[N, D]);
    expect_bad_input(
        base(&flat).args(["--arch", arch.to_str().unwrap()]),
        &["flat.npy", "shape", "--input-shape 1,6,6"],
    );
    let (code, out, err) =
        run_cmd(base(&flat).args(["--arch", arch.to_str().unwrap(), "--input-shape", "1,6,6"]));
    assert_eq!(code, 0, "{out}{err}");
    expect_bad_input(
        base(&flat).args(["--arch", arch.to_str().unwrap(), "--input-shape", "1,4,9"]),
        &["input_shape", "1,4,9"],
    );
    // NHWC is named as such.
    let nhwc = npy(&f.dir, "nhwc.npy", &f.x_data, &[N, 6, 6, 1]);
    expect_bad_input(
        base(&nhwc).args(["--arch", arch.to_str().unwrap()]),
        &["nhwc.npy", "NHWC"],
    );
    // Dense-only flags are refused, naming the flag.
    expect_bad_input(
        base(&f.x).args(["--arch", arch.to_str().unwrap(), "--activation", "tanh"]),
        &["--activation", "architecture spec"],
    );
}

#[test]
fn wrong_targets_and_dense_only_commands_are_clear_errors() {
    let f = files(false);
    let y3 = npy(&f.dir, "y3.npy", &vec![0.0; N * 3], &[N, 3]);
    expect_bad_input(
        flatcert().args([
            "measure",
            "--quiet",
            "--model",
            f.model.to_str().unwrap(),
            "--x",
            f.x.to_str().unwrap(),
            "--y",
            y3.to_str().unwrap(),
        ]),
        &["y3.npy", "3 columns", "C = 2"],
    );
    // A dense-only flag on a layered checkpoint is refused by name (stability reads both).
    expect_bad_input(
        flatcert().args([
            "stability",
            "--quiet",
            "--model",
            f.model.to_str().unwrap(),
            "--x",
            f.x.to_str().unwrap(),
            "--activation",
            "tanh",
        ]),
        &["--activation"],
    );
}

#[test]
fn gram_and_operator_paths_bracket_the_same_lambda_max() {
    // THEORY §7(c), §3 item 8: the exact Gram bracket and the operator path's rigorous lower
    // bound / randomized upper bound must overlap (the upper with confidence 1 − 1e-9).
    let f = files(false);
    let run = |limit: &str, name: &str| {
        let out = f.dir.out(name);
        let (code, o, e) = f.run(
            "measure",
            &["--gram-limit", limit, "--json", out.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{o}{e}");
        read_json(&out)
    };
    let gram = run("4096", "gram.json");
    let op = run("1", "op.json");
    let g_up = gram["gauss_newton_lambda_max"]["value"].as_f64().unwrap();
    let g_lo = gram["gauss_newton_lambda_max_lower"]["value"]
        .as_f64()
        .unwrap();
    let o_lo = op["gauss_newton_lambda_max_lower"]["value"]
        .as_f64()
        .unwrap();
    let o_up = op["gauss_newton_lambda_max_upper"]["value"]
        .as_f64()
        .unwrap();
    assert!(g_lo <= g_up && o_lo <= o_up);
    assert!(o_lo <= g_up, "operator lower {o_lo} > Gram upper {g_up}");
    assert!(g_lo <= o_up, "Gram lower {g_lo} > operator upper {o_up}");
    // Per-sample curvature is the same on both paths.
    assert_eq!(
        gram["per_sample_lambda_max"]["value"],
        op["per_sample_lambda_max"]["value"]
    );
}

#[test]
fn certify_with_epsilon_runs_t8_to_t10_through_conv_and_pooling() {
    // THEORY §7(d): IBP through conv, tanh, max-pool, relu; T10's bound is confronted with the
    // Jacobian norms and slopes sampled in the ball (a violation would mean an unsound bound).
    let f = files(false);
    let out = f.dir.out("e.json");
    let (code, stdout, stderr) = f.run(
        "certify",
        &[
            "--lr",
            "0.01",
            "--batch",
            "4",
            "--epsilon",
            "0.01",
            "--tau",
            "0.5",
            "--test-x",
            f.x.to_str().unwrap(),
            "--json",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.exists(), "{code}\n{stdout}\n{stderr}");
    let cert = read_json(&out);
    let statuses = format!(
        "{} {}",
        cert["summary"]["theorems"], cert["summary"]["not_computed"]
    );
    for id in ["T8", "T9", "T10"] {
        let t = cert["summary"]["theorems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["theorem"] == id)
            .unwrap();
        assert_ne!(t["status"], "not_computed", "{id}: {statuses}");
    }
    // No sampled Jacobian norm exceeds the certified bound.
    assert!(
        !cert["summary"]["violated"].to_string().contains("T10"),
        "{statuses}"
    );
    let lip = cert["measurements"]["lipschitz_max"]["value"]
        .as_f64()
        .unwrap();
    assert!(lip.is_finite() && lip > 0.0);
    // verify recomputes it, held-out file included.
    let (code, vout, verr) = run_cmd(flatcert().args(["verify", out.to_str().unwrap()]));
    assert_eq!(code, 0, "{vout}\n{verr}");
}

#[test]
fn the_bundled_cnn_example_loads_and_measures() {
    // `--example digits-cnn`: the committed CNN checkpoint with its architecture in the metadata,
    // on the bundled digits (flat 64-pixel rows read as [1, 8, 8] images).
    let (code, out, err) = run_cmd(flatcert().args([
        "measure",
        "--quiet",
        "--no-curvature",
        "--example",
        "digits-cnn",
    ]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cnn.safetensors") && out.contains("identity_scalar_max_abs_residual"));
    // `stability` on the example, matrix-free (T5(i)/T5(g); the Gram path takes ≈ 2 min): the
    // checkpoint's η = 1 and B = 16 come from its metadata.
    let (code, out, err) = run_cmd(flatcert().args([
        "stability",
        "--quiet",
        "--example",
        "digits-cnn",
        "--gram-limit",
        "1",
        "--batch",
        "16",
    ]));
    assert!(code == 0 || code == 1, "{out}{err}");
    assert!(
        out.contains("matrix-free (T5(i), T5(g))") && out.contains("trained at (B = 16, η = 1)"),
        "{out}"
    );
    let (code, _, err) = run_cmd(flatcert().args(["certify", "--example", "nope"]));
    assert_eq!(code, 2, "{err}");
    // Data flags of one's own files are refused with the example (it brings its own).
    for flag in [
        ["--x-scale", "2"],
        ["--one-hot", "10"],
        ["--input-shape", "1,8,8"],
    ] {
        let (code, _, err) = run_cmd(
            flatcert()
                .args(["measure", "--quiet", "--example", "digits-cnn"])
                .args(flag),
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(flag[0]) && err.contains("digits-cnn"), "{err}");
    }
}
