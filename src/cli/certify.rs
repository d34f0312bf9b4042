//! `flatcert certify`: measure, check T1 … T10 and issue a certificate (exit 0 certified, 1 not
//! certified, 2 bad input, 3 internal error). With no `--model/--x`: the bundled digits example
//! at the η and B it was trained with (read from the checkpoint's metadata).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use flatcert::certify::inputs::{embedded_file, embedded_test, file_record, load_test};
use flatcert::certify::pipeline::{Details, run_detailed};
use flatcert::certify::plan::{DEFAULT_GRAM_LIMIT, DEFAULT_T5_RANK, DEFAULT_T5_STEPS};
use flatcert::certify::{Certificate, Provenance};
use flatcert::measure::lanczos::{DEFAULT_DELTA, DEFAULT_MAX_PRODUCTS};
use flatcert::problem::{Loaded, NetProblem};
use flatcert::render::{Style, render, render_markdown};
use flatcert::report as bundle;

use super::certify_plan::plan_of;
use super::inputs::InputArgs;
use super::render::{Format, header, parse_format};

/// Arguments of `flatcert certify`.
#[derive(Debug, Args)]
pub struct CertifyArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Learning rate (in --lr-convention). Default: the checkpoint's `lr` metadata.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Convention of --lr: theory (½‖f − y‖² summed over outputs), torch-mse (η = 2η_torch/C) or
    /// torch-sum (η = 2Bη_torch). Default: theory, or the checkpoint's `lr_convention`.
    #[arg(long = "lr-convention")]
    pub lr_convention: Option<String>,
    /// Batch size B. Default: the checkpoint's `batch` metadata.
    #[arg(long)]
    pub batch: Option<usize>,
    /// without-replacement (model S, default) or with-replacement (model S′).
    #[arg(long)]
    pub sampling: Option<String>,
    /// Even moment orders k for T6/T7 (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub k: Vec<u32>,
    /// exact (default): a certified negative eigenvalue of the Hessian H (θ* not a minimum)
    /// fails the certificate (verdict Min). gauss-newton: accept the Gauss–Newton model (H
    /// replaced by G), listed as an assumed hypothesis with its size.
    #[arg(long, default_value = "exact")]
    pub curvature: String,
    /// With --epsilon: add the per-point section to the certificate (T9 certified radius and
    /// T10 Lipschitz bound of every training point, with kinds) and a table of the worst points
    /// to the Markdown report.
    #[arg(long = "per-point")]
    pub per_point: bool,
    /// Radius ε (ℓ2) for T8–T10; without it they are not computed.
    #[arg(long, allow_negative_numbers = true)]
    pub epsilon: Option<f64>,
    /// Label radius ε_y of T8's assumption (D_ε).
    #[arg(long = "epsilon-y", allow_negative_numbers = true)]
    pub epsilon_y: Option<f64>,
    /// Regression threshold τ for T9 (needed when the targets are not one-hot labels).
    #[arg(long, allow_negative_numbers = true)]
    pub tau: Option<f64>,
    /// Held-out inputs for T8's coverage (default for the bundled example: its test split).
    #[arg(long = "test-x")]
    pub test_x: Option<PathBuf>,
    /// Held-out targets.
    #[arg(long = "test-y")]
    pub test_y: Option<PathBuf>,
    /// Largest nC for the exact Gram path (beyond it: the operator path, where T4 and T5 are
    /// decided by the randomized λ_max(G) bound, T5(i) and the T5(g) tests).
    #[arg(long = "gram-limit", default_value_t = DEFAULT_GRAM_LIMIT)]
    pub gram_limit: usize,
    /// Failure probability δ of the randomized upper bound of λ_max(G) on the operator path
    /// (THEORY §3 item 8): verdicts that use it are certified with confidence 1 − δ.
    #[arg(long, default_value_t = DEFAULT_DELTA)]
    pub delta: f64,
    /// Cap on the operator products of that bound; the run stops earlier once the verdicts at η
    /// are decided.
    #[arg(long = "max-products", default_value_t = DEFAULT_MAX_PRODUCTS)]
    pub max_products: usize,
    /// Cap on the cone steps of the T5 bracket of λ_max(𝒟̃).
    #[arg(long = "t5-steps", default_value_t = DEFAULT_T5_STEPS)]
    pub t5_steps: usize,
    /// Cap on the eigenpairs of K kept for T5 (the rest enter a proven truncation allowance);
    /// ranks from 16 up are tried until the verdict at η is decided.
    #[arg(long = "t5-rank", default_value_t = DEFAULT_T5_RANK)]
    pub t5_rank: usize,
    /// Bisection steps of the T9 certified-radius search (0: none).
    #[arg(long = "radius-steps", default_value_t = 8)]
    pub radius_steps: usize,
    /// Seed of every random choice (Lanczos, Hutchinson, T10 sample points).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Near-kink units (|ẑ| ≤ e, the rigorous forward bound): `assume` lists the activation
    /// pattern as computed as an assumed hypothesis of T1–T8; `strict` makes those verdicts
    /// inconclusive.
    #[arg(long, default_value = "assume")]
    pub kinks: String,
    /// Output on stdout: table, json (the certificate) or markdown (the report of --report,
    /// without figures unless --report is given).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write the certificate (JSON) here, atomically.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a Markdown report DIR/report.md and the SVG figures it links (created if missing;
    /// its parent must exist), each file atomically.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Table: only the status per theorem and the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// `flatcert certify`.
pub fn run_cmd(args: &CertifyArgs) -> Result<i32> {
    let start = Instant::now();
    let format = parse_format(&args.format)?;
    if let Some(dir) = &args.report {
        bundle::check_dir(dir)?;
    }
    let loaded = args.inputs.load_any(true)?;
    let loaded = match loaded {
        Loaded::Dense(p) => *p,
        Loaded::Layered(p) => return run_layered(args, &p, start, format),
    };
    let mut plan = plan_of(args, &loaded.metadata)?;
    plan.notes.extend(loaded.default_activation_notes());
    // Validate the plan before the (possibly long) held-out loading and measurement.
    plan.validate(loaded.data.len(), loaded.mlp.output_dim())?;
    if args.test_y.is_some() && args.test_x.is_none() {
        return Err(flatcert::Error::invalid_argument("--test-y", "given without --test-x").into());
    }
    let (test, test_x, test_y) = match (&args.test_x, loaded.embedded, plan.epsilon) {
        (Some(tx), _, _) => {
            let t = load_test(
                tx,
                args.test_y.as_deref(),
                args.inputs.one_hot.or(loaded.embedded.then_some(10)),
                loaded.x_scale,
                loaded.mlp.input_dim(),
            )?;
            (
                Some(t),
                Some(file_record(tx)?),
                args.test_y.as_deref().map(file_record).transpose()?,
            )
        }
        (None, true, Some(_)) => (
            Some(embedded_test()?),
            embedded_file("digits/test_x.npy"),
            embedded_file("digits/test_labels.npy"),
        ),
        _ => (None, None, None),
    };
    plan.provenance = Some(Provenance {
        model: loaded.model_file.clone(),
        x: loaded.x_file.clone(),
        y: loaded.y_file.clone(),
        test_x,
        test_y,
        x_scale: loaded.x_scale,
        one_hot: if loaded.embedded {
            Some(flatcert::example::CLASSES)
        } else {
            args.inputs.one_hot
        },
        activation_flag: args.inputs.activation.clone(),
        activation_source: Some(loaded.activation_source.as_str().into()),
        layers: args.inputs.layers.clone(),
        embedded: loaded.embedded,
    });
    if loaded.embedded {
        plan.notes.push(
            "bundled example: digits (UCI, CC BY 4.0), x scaled by 1/16, labels one-hot".into(),
        );
    }
    let (cert, details): (Certificate, Details) =
        run_detailed(&loaded.mlp, &loaded.data, test.as_ref(), &plan)?;
    emit(args, &cert, &details, start, format)
}

/// Write and print a certificate as the flags ask; its exit code (0 certified, 1 not).
fn emit(
    args: &CertifyArgs,
    cert: &Certificate,
    details: &Details,
    start: Instant,
    format: Format,
) -> Result<i32> {
    let text = cert.to_json()?;
    // Render everything before writing anything: a rendering failure leaves no output.
    let report = match &args.report {
        Some(_) => Some(bundle::build(cert, details)?),
        None => None,
    };
    if let Some(path) = &args.json {
        flatcert::io::write_atomic(path, text.as_bytes())?;
    }
    let report_path = match (&args.report, &report) {
        (Some(dir), Some(r)) => Some(bundle::write(dir, r)?),
        _ => None,
    };
    if format == Format::Json {
        println!("{text}");
    } else if format == Format::Markdown {
        match &report {
            Some(r) => print!("{}", r.markdown),
            None => print!("{}", render_markdown(cert, &[])),
        }
    } else {
        let mut head = header(cert, "flatcert certify");
        head.push(format!("  time: {:.1} s", start.elapsed().as_secs_f64()));
        print!(
            "{}",
            render(
                &head,
                &cert.verdicts,
                &cert.summary,
                Style::detect(args.quiet)
            )
        );
        if let Some(path) = &args.json {
            println!("wrote {}", path.display());
        }
        if let Some(path) = &report_path {
            println!("wrote {} and its figures", path.display());
        }
    }
    Ok(cert.summary.exit_code)
}

/// `flatcert certify` on a layered (convolutional) network (issue 14, THEORY §7).
fn run_layered(args: &CertifyArgs, p: &NetProblem, start: Instant, format: Format) -> Result<i32> {
    let mut plan = plan_of(args, &p.metadata)?;
    plan.validate(p.n(), p.outputs())?;
    if args.test_y.is_some() && args.test_x.is_none() {
        return Err(flatcert::Error::invalid_argument("--test-y", "given without --test-x").into());
    }
    let (test, test_x, test_y) = match (&args.test_x, p.embedded, plan.epsilon) {
        (Some(tx), _, _) => (
            Some(p.load_held_out(
                tx,
                args.test_y.as_deref(),
                args.inputs.one_hot,
                args.inputs.input_shape.is_some(),
            )?),
            Some(file_record(tx)?),
            args.test_y.as_deref().map(file_record).transpose()?,
        ),
        // The bundled example's held-out split: flat rows of the same 8×8 images.
        (None, true, Some(_)) => (
            Some(embedded_test()?),
            embedded_file("digits/test_x.npy"),
            embedded_file("digits/test_labels.npy"),
        ),
        _ => (None, None, None),
    };
    if p.embedded {
        plan.notes.push(
            "bundled example: digits-cnn (UCI digits, CC BY 4.0; a CNN trained by flatcert train \
             --arch, data/digits/TRAINING.md), x scaled by 1/16, labels one-hot"
                .into(),
        );
    }
    plan.provenance = Some(Provenance {
        model: p.model_file.clone(),
        x: p.x_file.clone(),
        y: p.y_file.clone(),
        test_x,
        test_y,
        x_scale: p.x_scale,
        one_hot: if p.embedded {
            Some(flatcert::example::CLASSES)
        } else {
            args.inputs.one_hot
        },
        activation_flag: None,
        activation_source: Some("architecture".into()),
        layers: None,
        embedded: p.embedded,
    });
    let (cert, details) = flatcert::certify::layered::run_detailed(p, test.as_ref(), &plan)?;
    emit(args, &cert, &details, start, format)
}
