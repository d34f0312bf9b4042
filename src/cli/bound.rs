//! `flatcert bound`: the bound calculator. Every theorem the numbers of a measurements document
//! (or a certificate's measurements) allow, at the given (η, B, k, ε); the rest "not computed"
//! with the missing quantity named. Exit codes as `certify`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use flatcert::quantity::shortest;

use flatcert::certify::bound::{compute, read_source};
use flatcert::certify::plan::{DEFAULT_GRAM_LIMIT, parse_curvature, parse_sampling};
use flatcert::certify::{LrConventionName, Plan};
use flatcert::render::markdown::render_bound_markdown;
use flatcert::render::{Style, render};
use flatcert_bounds::minimum::Curvature;

use super::render::{Format, parse_format};

/// Arguments of `flatcert bound`.
#[derive(Debug, Args)]
pub struct BoundArgs {
    /// A measurements document (flatcert measure --json) or a certificate.
    #[arg(long)]
    pub measurements: PathBuf,
    /// Learning rate (in --lr-convention). Default for a certificate: its own.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Convention of --lr: theory (default), torch-mse or torch-sum.
    #[arg(long = "lr-convention")]
    pub lr_convention: Option<String>,
    /// Batch size B. Default for a certificate: its own.
    #[arg(long)]
    pub batch: Option<usize>,
    /// without-replacement (model S, default) or with-replacement (model S′).
    #[arg(long)]
    pub sampling: Option<String>,
    /// Even moment orders k (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub k: Vec<u32>,
    /// exact or gauss-newton (see `certify --curvature`). Default for a certificate: its own;
    /// else exact.
    #[arg(long)]
    pub curvature: Option<String>,
    /// Radius ε for T8–T10 (they need the network: reported as not computed).
    #[arg(long, allow_negative_numbers = true)]
    pub epsilon: Option<f64>,
    /// Regression threshold τ (T9).
    #[arg(long, allow_negative_numbers = true)]
    pub tau: Option<f64>,
    /// Output on stdout: table, json or markdown (the report of `certify --format markdown`,
    /// without figures).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Write the result (JSON, schema flatcert.bound/v1) here, atomically.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Table: only the status per theorem and the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// `flatcert bound`.
pub fn run_cmd(args: &BoundArgs) -> Result<i32> {
    let format = parse_format(&args.format)?;
    let file = args.measurements.display().to_string();
    let text = flatcert::io::read_text_file(&args.measurements)?;
    let src = read_source(&text, &file)?;
    // Issue 12 item 2: a document measured with the default activation says so again here.
    if src.activation_source.as_deref() == Some("default") {
        eprintln!(
            "note: {file} was measured with activation {} assumed by default (no --activation, no \
             'activation' metadata); if the network uses another, measure it again with \
             --activation",
            src.activation
        );
    }
    // Defaults from a certificate's own hyper-parameters; a measurements document needs both.
    let h = src.hyper.as_ref();
    let what = "is required for a measurements document (a certificate supplies its own)";
    let lr = match (args.lr, h) {
        (Some(lr), _) => lr,
        (None, Some(h)) => h.lr_given,
        (None, None) => return Err(flatcert::Error::invalid_argument("--lr", what).into()),
    };
    let conv = match (&args.lr_convention, args.lr, h) {
        (Some(c), _, _) => LrConventionName::parse(c)?,
        (None, None, Some(h)) => h.lr_convention,
        _ => LrConventionName::Theory,
    };
    let batch = match (args.batch, h) {
        (Some(b), _) => b,
        (None, Some(h)) => h.batch,
        (None, None) => return Err(flatcert::Error::invalid_argument("--batch", what).into()),
    };
    let sampling = match (&args.sampling, h) {
        (Some(s), _) => parse_sampling(s)?,
        (None, Some(h)) => h.sampling()?,
        (None, None) => parse_sampling("without-replacement")?,
    };
    let mut plan = Plan::new(lr, batch);
    plan.lr_convention = conv;
    plan.sampling = sampling;
    plan.ks = args.k.clone();
    plan.curvature = match (&args.curvature, h) {
        (Some(c), _) => parse_curvature(c)?,
        (None, Some(h)) => h.curvature,
        (None, None) => Curvature::Exact,
    };
    plan.epsilon = args.epsilon;
    plan.tau = args.tau;
    plan.gram_limit = DEFAULT_GRAM_LIMIT;
    let report = compute(&src, &plan, &file, &text)?;
    let json = report.to_json()?;
    if let Some(path) = &args.json {
        flatcert::io::write_atomic(path, json.as_bytes())?;
    }
    match format {
        Format::Json => println!("{json}"),
        Format::Markdown => print!("{}", render_bound_markdown(&report)),
        Format::Table => {
            let h = &report.hyper;
            let head = vec![
                format!("flatcert bound — numbers from {file} ({})", src.schema),
                format!(
                    "  η = {} (theory convention; given {} as {}; PyTorch MSELoss equivalent η_torch = {}), B = {}, n = {}, p = {:.6}, π = {:.6}, k = {:?}",
                    shortest(h.eta),
                    shortest(h.lr_given),
                    h.lr_convention.name(),
                    shortest(h.eta_torch_mse),
                    h.batch,
                    h.n,
                    h.p,
                    h.pi,
                    h.k
                ),
                format!("  sampling: {}", h.sampling_model),
            ];
            print!(
                "{}",
                render(
                    &head,
                    &report.verdicts,
                    &report.summary,
                    Style::detect(args.quiet)
                )
            );
        }
    }
    Ok(report.summary.exit_code)
}
