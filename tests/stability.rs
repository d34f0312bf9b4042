//! `flatcert stability` end to end (assert_cmd) and the library pieces behind it (issue 3 item 7;
//! THEORY.md T4–T6, §5). Inputs are built at run time in a temporary directory; every output goes
//! to its (initially empty) `out/` sub-directory, so "no output on failure" is checked by that
//! directory staying empty.
//!
//! Golden values: THEORY.md §5 (ReLU 1–2–1 with f(x) = |x| on x = (−1, 1, 2), y = (1, 1, 2)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

use flatcert::io::{CheckpointOptions, DataOptions, SaveDtype};
use flatcert::measure::gram::{GramOptions, gauss_newton_gram};
use flatcert::measure::stability::Verdict;
use flatcert::measure::stability::{BracketOptions, ReducedModel, Sampling, critical_lr_sweep};
use flatcert::render::figures::stability::{PlotMarker, PlotRow, StabilityPlot, stability_svg};
use flatcert::{Dataset, Mlp};

/// η*₂(B) of THEORY §5 for B = 1, 2, 3 (without replacement) and B = 2 with replacement.
const ETA2: [f64; 3] = [0.2400821025, 0.3628739528, 0.4316635023];
const ETA2_WITH_REPLACEMENT_B2: f64 = 0.3108862653;
/// η*₄(B) of THEORY §5 (T6), same rows.
const ETA4: [f64; 3] = [0.2198950262, 0.3340997154, 0.4316635023];
const ETA4_WITH_REPLACEMENT_B2: f64 = 0.2634645672;
/// η_GD* = 2/λ_max(H) (T4).
const ETA_GD: f64 = 0.4316635023;
/// The golden values are printed with 10 decimals: half a unit in the last place.
const GOLDEN_ROUNDING: f64 = 5.1e-11;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A temporary directory with inputs and an empty `out/` directory for outputs.
struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("out")).expect("out dir");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    fn assert_no_output(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.dir.path().join("out"))
            .expect("read out dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(entries.is_empty(), "output left behind: {entries:?}");
    }

    fn npy(&self, name: &str, data: &[f64], n: usize, d: usize) -> PathBuf {
        let p = self.path(name);
        flatcert::io::save_npy_matrix(&p, data, n, d).expect("save npy");
        p
    }

    fn model(&self, name: &str, mlp: &Mlp, metadata: &[(&str, &str)]) -> PathBuf {
        let p = self.path(name);
        let md: BTreeMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        flatcert::io::save_checkpoint(&p, mlp, &md, SaveDtype::F64).expect("save checkpoint");
        p
    }

    /// The THEORY §5 network and data; `y3` is the third target (2 interpolates).
    fn golden(&self, metadata: &[(&str, &str)], y3: f64) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.model(
                "golden.safetensors",
                &flatcert::testutil::abs_net(),
                metadata,
            ),
            self.npy("x.npy", &[-1.0, 1.0, 2.0], 3, 1),
            self.npy("y.npy", &[1.0, 1.0, y3], 3, 1),
        )
    }
}

fn flatcert() -> Command {
    Command::cargo_bin("flatcert").expect("flatcert binary")
}

/// `flatcert stability --model M --x X --y Y --quiet` plus `extra`.
fn stability(model: &Path, x: &Path, y: &Path, extra: &[&str]) -> Command {
    let mut cmd = flatcert();
    cmd.arg("stability")
        .arg("--model")
        .arg(model)
        .arg("--x")
        .arg(x)
        .arg("--y")
        .arg(y)
        .arg("--quiet")
        .args(extra);
    cmd
}

/// Run, require exit 0, return stdout.
fn ok(cmd: &mut Command) -> String {
    exits(cmd, 0)
}

/// Run, require exit `code` (0 every verdict at η certified stable or no η; 1 some verdict is
/// not), return stdout.
fn exits(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().expect("run flatcert");
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(code), "stdout: {so}\nstderr: {se}");
    so
}

/// The batch sizes whose row verdict at η is not certified stable (T5) and stable (T4).
fn open_rows(doc: &Value) -> Vec<u64> {
    doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| {
            r["verdict"]["mean_square"] != "certified stable" || r["verdict"]["gd"] != "stable"
        })
        .map(|r| r["batch"].as_u64().unwrap_or(0))
        .collect()
}

/// Run, require exit code 2 and exactly one stderr line `error: …` containing every needle.
fn bad_input(cmd: &mut Command, needles: &[&str]) {
    let out = cmd.output().expect("run flatcert");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.contains('\n') && line.starts_with("error: "),
        "want one error line, got {stderr:?}"
    );
    assert!(!line.contains("panicked"), "{line}");
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("JSON written")).expect("valid JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The row of batch size `b`.
fn row(doc: &Value, b: u64) -> &Value {
    doc["rows"]
        .as_array()
        .expect("rows array")
        .iter()
        .find(|r| r["batch"].as_u64() == Some(b))
        .unwrap_or_else(|| panic!("no row for B = {b}"))
}

/// `want` lies in the certified bracket `[lower, upper]` (widened only by the rounding of the
/// printed golden value) and the bracket is narrower than `rel` relative.
fn assert_in_bracket(name: &str, bracket: &Value, want: f64, rel: f64) {
    let (lo, hi) = (f(&bracket["lower"]), f(&bracket["upper"]));
    assert!(
        lo - GOLDEN_ROUNDING <= want && want <= hi + GOLDEN_ROUNDING,
        "{name}: {want} not in [{lo}, {hi}]"
    );
    assert!(
        hi - lo <= rel * want,
        "{name}: bracket [{lo}, {hi}] wider than {rel:e} relative"
    );
}

fn sha256_file(p: &Path) -> String {
    flatcert::measurements::sha256_hex(&std::fs::read(p).expect("read input"))
}

// ---------------------------------------------------------------------------------------------
// THEORY §5 golden values
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_rows_json_and_plot() {
    let fx = Fx::new();
    let (m, x, y) = fx.golden(&[], 2.0);
    let (json, svg) = (fx.out("s.json"), fx.out("s.svg"));
    let stdout = ok(
        stability(&m, &x, &y, &["--batch", "3,1,2", "--lr", "0.22", "--json"])
            .arg(&json)
            .arg("--plot")
            .arg(&svg),
    );
    assert!(stdout.contains("certified stable"), "{stdout}");
    let doc = read_json(&json);

    // Schema and provenance.
    assert_eq!(doc["schema"], "flatcert.stability/v1");
    assert_eq!(doc["inputs"]["model"]["sha256"], sha256_file(&m));
    assert_eq!(doc["inputs"]["x"]["sha256"], sha256_file(&x));
    assert_eq!(doc["inputs"]["y"]["sha256"], sha256_file(&y));
    assert_eq!(doc["inputs"]["model"]["path"], m.display().to_string());
    assert_eq!(doc["inputs"]["widths"], serde_json::json!([1, 2, 1]));
    assert_eq!((doc["n"].as_u64(), doc["C"].as_u64()), (Some(3), Some(1)));
    assert_eq!((doc["P"].as_u64(), doc["r"].as_u64()), (Some(7), Some(3)));
    assert_eq!(f(&doc["tau"]), 1e-12);
    assert_eq!(doc["sampling"], "without replacement");
    // η in both conventions: η_torch = η·C/2 (THEORY §0).
    assert_eq!(f(&doc["eta"]["theory"]), 0.22);
    assert_eq!(f(&doc["eta"]["torch_mse"]), 0.11);
    let notes = doc["notes"].to_string();
    assert!(notes.contains("model (S)"), "{notes}");
    assert!(
        !notes.contains("Gauss–Newton model"),
        "residual is 0: {notes}"
    );
    assert_eq!(f(&doc["residual"]["max_abs_residual"]), 0.0);

    // Rows sorted by B, with p = (n−B)/(B(n−1)).
    let rows = doc["rows"].as_array().expect("rows");
    let batches: Vec<u64> = rows.iter().filter_map(|r| r["batch"].as_u64()).collect();
    assert_eq!(batches, [1, 2, 3]);
    for (b, p) in [(1, 1.0), (2, 0.25), (3, 0.0)] {
        assert_eq!(f(&row(&doc, b)["p"]), p, "p at B = {b}");
    }
    for (i, b) in [1u64, 2, 3].into_iter().enumerate() {
        let r = row(&doc, b);
        assert_in_bracket(
            &format!("η*₂({b})"),
            &r["mean_square_critical_lr"],
            ETA2[i],
            1e-6,
        );
        assert_eq!(r["mean_square_critical_lr"]["kind"], "certified bracket");
        assert_in_bracket(
            &format!("η_GD* row {b}"),
            &r["gd_critical_lr"],
            ETA_GD,
            1e-6,
        );
        let k4 = &r["k_moment_critical_lr_k4"];
        assert!(
            (f(&k4["value"]) - ETA4[i]).abs() <= 1e-8,
            "η*₄({b}) = {k4}, want {}",
            ETA4[i]
        );
        assert_eq!(k4["kind"], "estimate");
        // Every B is certified stable at η = 0.22 < η*₄(1) ≤ η*₂(B).
        assert_eq!(r["verdict"]["mean_square"], "certified stable");
        assert_eq!(r["verdict"]["gd"], "stable");
    }
    // Certified relative margin at B = 1: a lower bound of η*/η − 1 = 0.0912822842 (THEORY §5),
    // and tight (the bracket is < 1e-6 wide).
    let margin = f(&row(&doc, 1)["verdict"]["certified_relative_margin"]);
    assert!(
        (0.0912822842 - 1e-6..=0.0912822842 + 1e-10).contains(&margin),
        "{margin}"
    );

    // The figure: an SVG document with the axis labels and legend.
    let text = std::fs::read_to_string(&svg).expect("SVG written");
    assert!(text.starts_with("<svg"), "{}", &text[..60.min(text.len())]);
    assert!(text.trim_end().ends_with("</svg>"));
    for needle in [
        "batch size B",
        "learning rate η",
        "certified stable",
        "η_GD*",
    ] {
        assert!(text.contains(needle), "SVG lacks {needle:?}");
    }
}

#[test]
fn golden_verdicts_at_the_edge_of_b1() {
    let fx = Fx::new();
    let (m, x, y) = fx.golden(&[], 2.0);
    // η*₂(1) = 0.2400821025: 0.22 is certified stable, 0.25 certified unstable (T5f).
    // Exit 0 when the verdict is certified stable, 1 ("computed, but not certified") otherwise.
    for (lr, want, code) in [
        ("0.22", "certified stable", 0),
        ("0.25", "certified unstable", 1),
    ] {
        let json = fx.out(&format!("s{lr}.json"));
        let stdout = exits(
            stability(&m, &x, &y, &["--batch", "1", "--lr", lr, "--json"]).arg(&json),
            code,
        );
        assert_eq!(
            stdout.contains(&format!("not certified stable at η = {lr}: B = 1 (exit 1)")),
            code == 1,
            "{stdout}"
        );
        let doc = read_json(&json);
        let v = &row(&doc, 1)["verdict"];
        assert_eq!(v["mean_square"], want, "at η = {lr}: {v}");
        let margin = f(&v["certified_relative_margin"]);
        assert_eq!(margin > 0.0, want == "certified stable", "{margin}");
    }
    // The same η in the PyTorch MSELoss convention: η = 2·η_torch/C = 0.25.
    let json = fx.out("torch.json");
    exits(
        stability(
            &m,
            &x,
            &y,
            &[
                "--batch",
                "1",
                "--lr",
                "0.125",
                "--lr-convention",
                "torch-mse",
                "--json",
            ],
        )
        .arg(&json),
        1,
    );
    let doc = read_json(&json);
    assert_eq!(f(&doc["eta"]["theory"]), 0.25);
    assert_eq!(row(&doc, 1)["verdict"]["mean_square"], "certified unstable");
    // And in PyTorch's reduction='sum' convention (issue 12 item 7): η = 2B·η_torch = 0.25 at
    // B = 1, with the same names as certify; it needs exactly one batch size.
    let json = fx.out("torch_sum.json");
    let sum_args = ["--lr", "0.125", "--lr-convention", "torch-sum", "--json"];
    exits(
        stability(&m, &x, &y, &[&["--batch", "1"][..], &sum_args[..]].concat()).arg(&json),
        1,
    );
    let doc = read_json(&json);
    assert_eq!(f(&doc["eta"]["theory"]), 0.25);
    assert!(
        doc["eta"]["source"]
            .as_str()
            .unwrap_or("")
            .contains("torch-sum")
    );
    let out = stability(
        &m,
        &x,
        &y,
        &[&["--batch", "1,2"][..], &sum_args[..]].concat(),
    )
    .arg(&json)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lr-convention"));
}

#[test]
fn golden_with_replacement() {
    let fx = Fx::new();
    let (m, x, y) = fx.golden(&[], 2.0);
    let json = fx.out("s.json");
    ok(stability(
        &m,
        &x,
        &y,
        &["--batch", "2", "--sampling", "with-replacement", "--json"],
    )
    .arg(&json));
    let doc = read_json(&json);
    assert_eq!(doc["sampling"], "with replacement");
    let r = row(&doc, 2);
    assert_eq!(f(&r["p"]), 0.5);
    assert_in_bracket(
        "η*₂(2) with replacement",
        &r["mean_square_critical_lr"],
        ETA2_WITH_REPLACEMENT_B2,
        1e-6,
    );
    let k4 = f(&r["k_moment_critical_lr_k4"]["value"]);
    assert!((k4 - ETA4_WITH_REPLACEMENT_B2).abs() <= 1e-8, "{k4}");
    // No η given and no metadata: brackets only.
    assert!(r.get("verdict").is_none(), "{r}");
    assert!(doc.get("eta").is_none());
}

#[test]
fn marker_from_checkpoint_metadata_and_gauss_newton_note() {
    let fx = Fx::new();
    // y3 = 2.5: residual ≠ 0, so G replaces H ("Gauss–Newton model").
    let (m, x, y) = fx.golden(
        &[
            ("lr", "0.11"),
            ("lr_convention", "torch-mse"),
            ("batch", "1"),
        ],
        2.5,
    );
    let json = fx.out("s.json");
    let stdout = ok(stability(&m, &x, &y, &["--batch", "1,3", "--k", "2", "--json"]).arg(&json));
    assert!(stdout.contains("trained at (B = 1"), "{stdout}");
    let doc = read_json(&json);
    // η from metadata in the torch convention: 2·0.11/1 = 0.22.
    assert!((f(&doc["eta"]["theory"]) - 0.22).abs() < 1e-15);
    assert!(
        doc["eta"]["source"]
            .as_str()
            .unwrap_or("")
            .contains("metadata")
    );
    let marker = &doc["marker"];
    assert_eq!(marker["batch"].as_u64(), Some(1));
    assert_eq!(marker["verdict"], "certified stable");
    let notes = doc["notes"].to_string();
    assert!(notes.contains("Gauss–Newton model"), "{notes}");
    assert!(f(&doc["residual"]["max_abs_residual"]) > 0.4);
    // --k 2 only: no k-moment fields.
    assert!(row(&doc, 1).get("k_moment_critical_lr_k4").is_none());
}

// ---------------------------------------------------------------------------------------------
// Bad input: exit 2, one line, nothing written
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_inputs_exit_2_with_one_line_and_no_output() {
    let fx = Fx::new();
    let (m, x, y) = fx.golden(&[], 2.0);
    let (json, svg) = (fx.out("s.json"), fx.out("s.svg"));
    let cases: [(&[&str], &[&str]); 9] = [
        (&["--batch", "0"], &["--batch", "≥ 1"]),
        (&["--batch", "1,4"], &["--batch", "4"]),
        (&["--batch", "1", "--lr", "NaN"], &["--lr"]),
        (&["--batch", "1", "--lr", "inf"], &["--lr"]),
        (&["--batch", "1", "--lr", "-0.1"], &["--lr"]),
        (&["--batch", "1", "--lr", "0"], &["--lr"]),
        (&["--batch", "1", "--k", "3"], &["--k"]),
        // Past --gram-limit the matrix-free route runs (tests/scale.rs); its δ is checked first.
        (
            &["--batch", "1", "--gram-limit", "2", "--delta", "0"],
            &["--delta"],
        ),
        (&["--batch", "1", "--rel-tol", "0"], &["--rel-tol"]),
    ];
    for (args, needles) in cases {
        let mut cmd = stability(&m, &x, &y, args);
        cmd.arg("--json").arg(&json).arg("--plot").arg(&svg);
        bad_input(&mut cmd, needles);
        fx.assert_no_output();
    }
    // An output directory that does not exist is refused before any computation.
    let mut cmd = stability(&m, &x, &y, &["--batch", "1", "--json"]);
    cmd.arg(fx.path("missing/s.json"));
    bad_input(&mut cmd, &["--json", "does not exist"]);
}

// ---------------------------------------------------------------------------------------------
// The bundled network: η*(B) nondecreasing in B (THEORY T5f)
// ---------------------------------------------------------------------------------------------

/// The bundled checkpoint and the first `m` samples of its training data (x scaled by 1/16,
/// one-hot targets), as files.
fn bundled_subset(fx: &Fx, m: usize) -> (PathBuf, PathBuf, PathBuf) {
    let data = bundled_data();
    let (d, c) = (data.dim(), data.outputs().expect("targets"));
    let model = fx.path("digits.safetensors");
    std::fs::write(&model, flatcert::example::MODEL).expect("write model");
    let x = fx.npy("x.npy", &data.x()[..m * d], m, d);
    let y = fx.npy("y.npy", &data.y().expect("targets")[..m * c], m, c);
    (model, x, y)
}

fn bundled_data() -> Dataset {
    flatcert::io::load_dataset_bytes(
        flatcert::example::X,
        "train_x.npy",
        Some((flatcert::example::LABELS, "train_labels.npy")),
        &DataOptions {
            one_hot: Some(flatcert::example::CLASSES),
            x_scale: Some(flatcert::example::X_SCALE),
            expected_dim: None,
            sample_shape: None,
        },
    )
    .expect("bundled data")
}

/// The certified brackets of η*(B) are consistent with a nondecreasing η*(B), and where they are
/// tight their lower ends are nondecreasing.
fn assert_nondecreasing(rows: &[(u64, f64, f64)]) {
    for w in rows.windows(2) {
        let ((b1, lo1, hi1), (b2, lo2, hi2)) = (w[0], w[1]);
        assert!(lo1 <= hi2, "η*({b1}) ≥ {lo1} > η*({b2}) ≤ {hi2}");
        assert!(
            lo2 >= lo1 - (hi1 - lo1) - (hi2 - lo2),
            "lower ends decrease: η*({b1}) ∈ [{lo1}, {hi1}], η*({b2}) ∈ [{lo2}, {hi2}]"
        );
    }
}

#[test]
fn bundled_network_eta_star_nondecreasing_in_batch_size() {
    // The bundled checkpoint on the first 16 of its training samples (nC = 160): brackets of
    // relative width ≲ 1e-3 in seconds. The full n = 256 run is `bundled_example_full` (ignored:
    // many minutes per batch size).
    let fx = Fx::new();
    let (m, x, y) = bundled_subset(&fx, 16);
    let (json, svg) = (fx.out("s.json"), fx.out("s.svg"));
    let args = [
        "--batch",
        "1,2,4,8,16",
        "--rel-tol",
        "1e-4",
        "--max-steps",
        "60",
        "--json",
    ];
    // At the training η = 0.2 (from the metadata) the smallest batch sizes are unstable: the run
    // completes, writes its outputs and exits 1, naming exactly the rows that are not certified.
    let stdout = exits(
        stability(&m, &x, &y, &args)
            .arg(&json)
            .arg("--plot")
            .arg(&svg),
        1,
    );
    let doc = read_json(&json);
    let open = open_rows(&doc);
    assert!(open.contains(&1) && !open.contains(&16), "{open:?}");
    let listed: Vec<String> = open.iter().map(|b| format!("B = {b}")).collect();
    assert!(
        stdout.contains(&format!(
            "not certified stable at η = 0.2: {} (exit 1)",
            listed.join(", ")
        )),
        "{stdout}"
    );
    let rows: Vec<(u64, f64, f64)> = doc["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let b = &r["mean_square_critical_lr"];
            (
                r["batch"].as_u64().unwrap_or(0),
                f(&b["lower"]),
                f(&b["upper"]),
            )
        })
        .collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    assert_nondecreasing(&rows);
    for &(b, lo, hi) in &rows {
        assert!(hi - lo <= 1e-2 * lo, "B = {b}: [{lo}, {hi}] not tight");
    }
    // The lower ends are far apart at small B (p falls from 1 to 0.43): strictly increasing.
    assert!(rows[0].1 < rows[1].1 && rows[1].1 < rows[2].1, "{rows:?}");
    // T4: η*(B) ≤ η_GD* = η*(n) (B = n is GD).
    let gd_upper = f(&row(&doc, 16)["gd_critical_lr"]["upper"]);
    assert!(rows.iter().all(|r| r.1 <= gd_upper * (1.0 + 1e-9)));
    // r is far above the tiny-problem limit of the exact 𝒬₄: no number, a reason.
    let k4 = &row(&doc, 1)["k_moment_critical_lr_k4"];
    assert!(
        k4.as_str()
            .is_some_and(|s| s.starts_with("not computed: r too large")),
        "{k4}"
    );
    // The marker is the checkpoint's training (B, η) = (16, 0.2) from its metadata.
    assert_eq!(doc["marker"]["batch"].as_u64(), Some(16));
    assert_eq!(f(&doc["marker"]["eta"]), 0.2);
    assert!(doc["notes"].to_string().contains("Gauss–Newton model"));
    assert!(
        std::fs::read_to_string(&svg)
            .expect("svg")
            .starts_with("<svg")
    );
}

#[test]
fn library_sweep_is_nondecreasing_on_the_bundled_network() {
    // Same property through the library: one eigendecomposition, several B (critical_lr_sweep).
    let ck = flatcert::io::load_checkpoint_bytes(
        flatcert::example::MODEL,
        "model.safetensors",
        &CheckpointOptions::default(),
    )
    .expect("bundled model");
    let full = bundled_data();
    let (m, d, c) = (12, full.dim(), 10);
    let data = Dataset::new(
        full.x()[..m * d].to_vec(),
        m,
        d,
        Some((full.y().expect("targets")[..m * c].to_vec(), c)),
        "x",
        "y",
    )
    .expect("subset");
    let spec = gauss_newton_gram(&ck.mlp, &data, &GramOptions::default()).expect("gram");
    let model = ReducedModel::from_spectrum(&spec);
    let opts = BracketOptions {
        rel_tol: 1e-4,
        max_steps: 60,
        ..BracketOptions::default()
    };
    let sweep = critical_lr_sweep(
        &model,
        &[1, 2, 3, 6, 12],
        Sampling::WithoutReplacement,
        &opts,
    )
    .expect("sweep");
    let rows: Vec<(u64, f64, f64)> = sweep
        .iter()
        .map(|cl| {
            (
                cl.batch as u64,
                cl.eta_lower().expect("finite"),
                cl.eta_upper().expect("finite"),
            )
        })
        .collect();
    assert_nondecreasing(&rows);
}

/// A verdict at η that is inconclusive at `--t5-rank` is tried again with up to `--refine-rank`
/// eigenpairs and decided; the note says so and the row records the rank used. η is chosen
/// between the truncated lower end and the untruncated one, where only the refinement can decide.
#[test]
fn inconclusive_verdicts_are_refined_at_a_higher_rank() {
    let fx = Fx::new();
    let (m, x, y) = bundled_subset(&fx, 16);
    let json = fx.out("s.json");
    let run = |extra: &[&str], code: i32| -> (Value, String) {
        let mut cmd = stability(&m, &x, &y, &["--batch", "2", "--json"]);
        cmd.arg(&json).args(extra);
        let stdout = exits(&mut cmd, code);
        let doc = read_json(&json);
        (row(&doc, 2).clone(), doc["notes"].to_string() + &stdout)
    };
    let bracket = |r: &Value| {
        let b = &r["mean_square_critical_lr"];
        (
            f(&b["lower"]),
            f(&b["upper"]),
            b["rank"].as_u64().unwrap_or(0),
        )
    };
    // Untruncated (r ≤ nC = 160 < --t5-rank) and truncated to the top 16 eigenpairs.
    let (exact, _) = run(&["--t5-rank", "1000", "--lr", "0.01"], 0);
    let (a, _, full_rank) = bracket(&exact);
    let (cut, _) = run(
        &["--t5-rank", "16", "--refine-rank", "0", "--lr", "0.01"],
        0,
    );
    let (lo, hi, rank) = bracket(&cut);
    assert_eq!(rank, 16);
    assert!(full_rank > 16, "{full_rank}");
    // The truncation allowance only widens: lo is a certified lower end below the exact one.
    assert!(lo < a && a - lo > 1e-3 * a, "[{lo}, {hi}] vs {a}");
    let eta = format!("{}", 0.5 * (lo + a));
    // Without the second attempt η is inside the truncated bracket: inconclusive, exit 1.
    let (plain, _) = run(&["--t5-rank", "16", "--refine-rank", "0", "--lr", &eta], 1);
    assert_eq!(plain["verdict"]["mean_square"], "inconclusive", "{plain}");
    // With it (default --refine-rank, capped at r): decided, certified stable, exit 0.
    let (refined, text) = run(&["--t5-rank", "16", "--lr", &eta], 0);
    assert_eq!(
        refined["verdict"]["mean_square"], "certified stable",
        "{refined}"
    );
    let (lo2, hi2, rank2) = bracket(&refined);
    assert!(rank2 > 16, "rank used {rank2}");
    assert!(
        lo2 <= a * (1.0 + 1e-12) && lo2 > lo,
        "[{lo2}, {hi2}] vs {a}, {lo}"
    );
    assert!(
        text.contains("inconclusive at rank 16 (--t5-rank) for B = 2")
            && text.contains("decided for B = 2"),
        "{text}"
    );
}

#[test]
#[ignore = "the full bundled example (nC = 2560): ≈ 15 s in release, ≈ 10 min in a debug build"]
fn bundled_example_full() {
    // Defaults: the η* brackets use the top 256 eigenpairs of K (--t5-rank) plus the proven
    // truncation allowance; at the training η = 0.2, B = 1 is certified unstable (exit 1).
    // Run: `cargo test --release --test stability -- --ignored bundled_example_full`.
    let fx = Fx::new();
    let json = fx.out("s.json");
    let args = ["stability", "--quiet", "--batch", "1,16,256", "--json"];
    let stdout = exits(flatcert().args(args).arg(&json), 1);
    eprintln!("{stdout}");
    assert!(
        stdout.contains("top 256 of r = 2560 eigenpairs"),
        "{stdout}"
    );
    let doc = read_json(&json);
    let rows: Vec<(u64, f64, f64)> = [1, 16, 256]
        .iter()
        .map(|&b| {
            let r = &row(&doc, b)["mean_square_critical_lr"];
            (b, f(&r["lower"]), f(&r["upper"]))
        })
        .collect();
    assert_nondecreasing(&rows);
    assert_eq!(
        doc["inputs"]["model"]["path"],
        "<embedded:digits/model.safetensors>"
    );
}

// ---------------------------------------------------------------------------------------------
// The figure (library)
// ---------------------------------------------------------------------------------------------

#[test]
fn plot_marks_every_verdict_and_refuses_fake_numbers() {
    let rows = vec![
        PlotRow {
            batch: 1,
            eta_lower: Some(0.24),
            eta_upper: Some(0.2401),
            eta_k: Some(0.22),
            verdict: Some(Verdict::CertifiedUnstable),
        },
        PlotRow {
            batch: 4,
            eta_lower: Some(0.3),
            eta_upper: Some(0.31),
            eta_k: None,
            verdict: Some(Verdict::Inconclusive),
        },
        PlotRow {
            batch: 64,
            eta_lower: None,
            eta_upper: None,
            eta_k: None,
            verdict: Some(Verdict::CertifiedStable),
        },
    ];
    let mut plot = StabilityPlot {
        title: "t".into(),
        subtitle: "s".into(),
        rows,
        gd: Some((0.43, 0.4301)),
        k: 4,
        eta: Some(0.305),
        marker: Some(PlotMarker {
            batch: 16,
            eta: 0.2,
            verdict: Verdict::CertifiedStable,
            label: "trained (B = 16, η = 0.2): certified stable".into(),
        }),
        outputs: 10,
    };
    let svg = stability_svg(&plot).expect("svg");
    assert!(svg.starts_with("<svg"));
    for needle in [
        "certified stable",
        "certified unstable",
        "inconclusive",
        "trained (B = 16",
        "η_torch = 5·η",
        "\n64\n",
    ] {
        assert!(svg.contains(needle), "SVG lacks {needle:?}");
    }
    plot.gd = Some((f64::INFINITY, f64::INFINITY));
    assert!(stability_svg(&plot).is_err());
}
