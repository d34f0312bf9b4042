//! `flatcert stability` on layered (convolutional) checkpoints (issue 14 item 4, THEORY §7(c):
//! T4, T5, T5(i) and η*(B) hold unchanged for any architecture): the layered path against the
//! dense one on the same network, and the exact Gram brackets against the matrix-free T5(i)/T5(g)
//! ones on a CNN.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Fx as TempDir, flatcert, read_json, run_cmd, theorem_status};
use flatcert::model::Activation;
use flatcert::net::{Sequential, net_to_safetensors};
use flatcert::problem::NetProblem;
use flatcert::testutil::{random_data, random_mlp};

/// `flatcert stability --quiet --model … --x … --y … <extra…> --json out`: (exit code, document).
fn stability(
    model: &Path,
    x: &Path,
    y: &Path,
    extra: &[&str],
    out: &Path,
) -> (i32, serde_json::Value) {
    let mut c = flatcert();
    c.args(["stability", "--quiet"]);
    for (flag, p) in [("--model", model), ("--x", x), ("--y", y), ("--json", out)] {
        c.arg(flag).arg(p);
    }
    let (code, stdout, stderr) = run_cmd(c.args(extra));
    assert!(code == 0 || code == 1, "exit {code}\n{stdout}\n{stderr}");
    (code, read_json(out))
}

/// Both ends of a bracket (`null` = unbounded).
fn ends(b: &serde_json::Value) -> (f64, f64) {
    (
        b["lower"].as_f64().unwrap_or(0.0),
        b["upper"].as_f64().unwrap_or(f64::INFINITY),
    )
}

/// Two certified brackets of the same number must intersect.
fn assert_intersect(what: &str, a: (f64, f64), b: (f64, f64)) {
    assert!(
        a.0 <= b.1 && b.0 <= a.1,
        "{what}: [{}, {}] and [{}, {}] are disjoint",
        a.0,
        a.1,
        b.0,
        b.1
    );
}

#[test]
fn the_layered_rewrite_of_an_mlp_gets_the_dense_brackets() {
    let dir = TempDir::new();
    let (n, d, c) = (20, 4, 3);
    let mlp = random_mlp(&[d, 6, c], Activation::Tanh, 41);
    let dense = dir.model("dense.safetensors", &mlp);
    let bytes = net_to_safetensors(&Sequential::from_mlp(&mlp), &BTreeMap::new()).unwrap();
    let layered = dir.bytes("layered.safetensors", &bytes);
    let x = dir.npy("x.npy", random_data(d, n, 42).as_slice(), n, d);
    let y = dir.npy("y.npy", random_data(c, n, 43).as_slice(), n, c);
    let args = ["--batch", "1,4,20", "--lr", "0.1"];
    let (code_d, a) = stability(&dense, &x, &y, &args, &dir.out("d.json"));
    let (code_l, b) = stability(&layered, &x, &y, &args, &dir.out("l.json"));
    assert!(b["inputs"]["architecture"]["layers"].is_array());
    assert!(a["inputs"]["architecture"].is_null());
    assert_eq!(a["r"], b["r"], "the rank of K");
    assert_intersect(
        "λ_max(G)",
        ends(&a["gauss_newton_lambda_max"]),
        ends(&b["gauss_newton_lambda_max"]),
    );
    let (ra, rb) = (a["rows"].as_array().unwrap(), b["rows"].as_array().unwrap());
    assert_eq!(ra.len(), 3);
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(rb) {
        assert_eq!(x["batch"], y["batch"]);
        let (ea, eb) = (
            ends(&x["mean_square_critical_lr"]),
            ends(&y["mean_square_critical_lr"]),
        );
        assert_intersect("η*(B)", ea, eb);
        // Both brackets are within --rel-tol 1e-3 of the same η* (K differs only by the
        // passes' rounding, ~1e-15 relative), so their ends agree to 2e-3.
        assert!(
            (ea.0 - eb.0).abs() <= 2e-3 * ea.0 && (ea.1 - eb.1).abs() <= 2e-3 * ea.1,
            "B = {}: {ea:?} vs {eb:?}",
            x["batch"]
        );
    }
    // The verdicts at η = 0.1 agree unless η lies inside a bracket (then both are
    // inconclusive or one is decided by its slightly tighter end: the exit codes still agree
    // whenever every row is decided the same way).
    let verdicts = |doc: &serde_json::Value| -> Vec<String> {
        doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["verdict"]["mean_square"].as_str().unwrap().to_string())
            .collect()
    };
    if verdicts(&a) == verdicts(&b) {
        assert_eq!(code_d, code_l);
    }
    assert!(
        b["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("layered network")),
        "{}",
        b["notes"]
    );
}

#[test]
fn cnn_gram_brackets_meet_the_matrix_free_ones() {
    let f = super::commands::files(false);
    let args = ["--batch", "1,4,16", "--lr", "0.05"];
    let (_, gram) = stability(&f.model, &f.x, &f.y, &args, &f.dir.out("g.json"));
    let mut at_scale = args.to_vec();
    at_scale.extend(["--gram-limit", "1"]);
    let (_, scale) = stability(&f.model, &f.x, &f.y, &at_scale, &f.dir.out("s.json"));
    assert!(
        gram["r"].as_u64().is_some_and(|r| r > 0),
        "Gram path: {}",
        gram["r"]
    );
    assert!(scale["r"].is_null(), "matrix-free path has no r");
    // Only the upper end of λ_max(G) rests on the randomized bound (the lower is a Ritz value).
    let lambda = &scale["gauss_newton_lambda_max"];
    assert!(
        lambda["delta"].as_f64().is_some_and(|d| d > 0.0),
        "{lambda}"
    );
    assert_eq!(lambda["confidence_sides"], "upper", "{lambda}");
    assert_intersect(
        "λ_max(G)",
        ends(&gram["gauss_newton_lambda_max"]),
        ends(&scale["gauss_newton_lambda_max"]),
    );
    for (g, s) in gram["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(scale["rows"].as_array().unwrap())
    {
        assert_eq!(g["batch"], s["batch"]);
        let (eg, es) = (
            ends(&g["mean_square_critical_lr"]),
            ends(&s["mean_square_critical_lr"]),
        );
        assert!(eg.0 > 0.0 && es.0 > 0.0, "{eg:?} {es:?}");
        assert_intersect("η*(B)", eg, es);
        // The exact route is at least as tight as the matrix-free one on the upper side: the
        // Gram bracket's upper end is within --rel-tol of η*, which is ≤ the T5(g) end.
        assert!(
            eg.1 <= es.1 * (1.0 + 2e-3),
            "B = {}: {eg:?} vs {es:?}",
            g["batch"]
        );
        // A certified verdict at scale is never contradicted by the exact route.
        let (vg, vs) = (
            g["verdict"]["mean_square"].as_str().unwrap(),
            s["verdict"]["mean_square"].as_str().unwrap(),
        );
        if vs != "inconclusive" && vg != "inconclusive" {
            assert_eq!(vg, vs, "B = {}", g["batch"]);
        }
    }
}

/// A layered network IBP does not certify (a leaky slope > 1, possible only through the library
/// API): max|res| then has no rigorous upper side, and says so, instead of calling an a-priori
/// size rigorous.
#[test]
fn residual_without_ibp_is_an_estimate() {
    let (n, d, c) = (6, 3, 2);
    let mlp = random_mlp(&[d, 4, c], Activation::LeakyRelu { alpha: 2.0 }, 7);
    let net = Sequential::from_mlp(&mlp);
    let x = random_data(d, n, 8);
    let y = random_data(c, n, 9);
    let data = flatcert::Dataset::new(
        x.as_slice().to_vec(),
        n,
        d,
        Some((y.as_slice().to_vec(), c)),
        "<x>",
        "<y>",
    )
    .unwrap();
    let file = |p: &str| flatcert::measurements::InputFile {
        path: p.into(),
        sha256: String::new(),
    };
    let p = NetProblem {
        spec: flatcert::net::ArchSpec::of(&net),
        net,
        arch_source: flatcert::net::ArchSource::Given,
        data,
        model_file: file("<m>"),
        arch_file: None,
        x_file: file("<x>"),
        y_file: Some(file("<y>")),
        x_scale: 1.0,
        metadata: BTreeMap::new(),
        embedded: false,
    };
    let q = flatcert::measure::layered::residual_quantities(&p, 4).unwrap();
    let r = &q["max_abs_residual"];
    assert_eq!(r.kind, flatcert::quantity::Kind::Estimate, "{r:?}");
    assert!(r.value > 0.0);
    let method = r.method.as_deref().unwrap_or("");
    assert!(method.contains("no rigorous upper side"), "{method}");
    // The stability document then reports no finite rigorous upper side.
    let info = flatcert::stability::Subject::residual(&p).unwrap().unwrap();
    assert!(info.max_abs_residual_upper.is_infinite());
    assert!(!info.hessian_is_gauss_newton);
}

/// A CNN with an eval-mode batch normalization runs through `certify` (per-sample moments,
/// Gram path, IBP at ε) and `stability`, and every document says how it was read.
#[test]
fn a_batchnorm_cnn_runs_through_certify_and_stability() {
    use flatcert::net::{Act, BatchNorm2d, Conv2d, Flatten, Layer, Linear, Shape, Window};
    use rand::rngs::ChaCha8Rng;
    use rand::{RngExt, SeedableRng};
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut r =
        |n: usize, s: f64| -> Vec<f64> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
    let win = Window {
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
    };
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::new(Some("c".into()), 1, 2, win, r(18, 0.5), r(2, 0.1)).unwrap()),
        Box::new(
            BatchNorm2d::new(
                Some("bn".into()),
                r(2, 1.5),
                r(2, 0.2),
                r(2, 0.2),
                vec![0.3, 1.7],
                1e-5,
            )
            .unwrap(),
        ),
        Box::new(Act(Activation::Tanh)),
        Box::new(Flatten),
        Box::new(Linear::new(
            Some("fc".into()),
            nalgebra::DMatrix::from_fn(2, 32, |_, _| 0.0)
                + nalgebra::DMatrix::from_vec(2, 32, r(64, 0.3)),
            r(2, 0.1),
        )),
    ];
    let net = Sequential::new(Shape::Image { c: 1, h: 4, w: 4 }, layers).unwrap();
    let dir = TempDir::new();
    let model = dir.bytes(
        "bn.safetensors",
        &net_to_safetensors(&net, &BTreeMap::new()).unwrap(),
    );
    let n = 12;
    let x = dir.npy("x.npy", &r(n * 16, 1.0), n, 16);
    let y = dir.npy("y.npy", &r(n * 2, 1.0), n, 2);
    let shape = ["--input-shape", "1,4,4"];
    let cert = dir.out("c.json");
    let report = dir.out("report");
    let mut c = flatcert();
    c.args([
        "certify",
        "--quiet",
        "--lr",
        "0.05",
        "--batch",
        "4",
        "--k",
        "2",
        "--epsilon",
        "0.05",
    ])
    .args(shape);
    for (flag, p) in [
        ("--model", &model),
        ("--x", &x),
        ("--y", &y),
        ("--json", &cert),
        ("--report", &report),
    ] {
        c.arg(flag).arg(p);
    }
    let (code, out, err) = run_cmd(&mut c);
    assert!(code == 0 || code == 1, "{code}\n{out}\n{err}");
    // The Markdown report of a layered certificate: the verdict table and the notes.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("T1") && md.contains("T10") && md.contains("eval mode"),
        "{md}"
    );
    let doc = read_json(&cert);
    let notes = doc["measurements"]["notes"].to_string();
    assert!(
        notes.contains("batchnorm2d layers (bn) are read in eval mode"),
        "{notes}"
    );
    let status = |id: &str| theorem_status(&doc, id);
    // T1b holds through the batch normalization's input (the first layer is the convolution),
    // and T4, T5 and the IBP-based T10 are decided, not skipped.
    assert_eq!(status("T1"), "certified");
    for t in ["T4", "T5", "T10"] {
        let s = status(t);
        assert!(
            !s.is_empty() && s != "not_computed",
            "{t}: {s} {}",
            doc["verdicts"][t]
        );
    }
    let mut args = vec!["--batch", "4"];
    args.extend(shape);
    let (_, st) = stability(&model, &x, &y, &args, &dir.out("s.json"));
    assert!(
        st["rows"][0]["mean_square_critical_lr"]["lower"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );
    assert!(st["notes"].to_string().contains("eval mode"));
}
