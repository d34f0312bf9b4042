//! `flatcert simulate`: the flags → a [`SimulatePlan`] → [`flatcert::simulate::run_loaded`]
//! (a dense MLP or a layered network) → the report on stdout, the JSON document and the SVG
//! figure → exit code 0.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::certify::LrConventionName;
use flatcert::simulate::{PredictMode, SimulatePlan, render_plot, render_text};

use super::inputs::InputArgs;

/// Arguments of `flatcert simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Learning rate (in --lr-convention). Default: the checkpoint's training η from its
    /// metadata (the bundled example: 0.2), in its `lr_convention`.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Convention of --lr: theory (default), torch-mse (η = 2η_torch/C) or torch-sum
    /// (η = 2Bη_torch); the same names as certify and stability.
    #[arg(long = "lr-convention")]
    pub lr_convention: Option<String>,
    /// Batch size B. Default: the checkpoint's training B from its metadata (bundled: 16).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Steps T of every run.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Monte Carlo trials R of the linearized recursion.
    #[arg(long, default_value_t = 32)]
    pub trials: usize,
    /// Moment orders k (even, 2..=8) whose growth rate E‖u_t‖^k is fitted.
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub k: Vec<usize>,
    /// Seed of every ChaCha8 stream (starts, batches, bootstrap).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Perturbation sizes δ of the true-SGD runs from θ* + δ·u_0 (‖u_0‖ = 1).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1e-3,1e-2,1e-1",
        allow_negative_numbers = true
    )]
    pub deltas: Vec<f64>,
    /// Predictions: `auto` (the Gram path when nC ≤ 4096; the verdict at η decided on the top
    /// 16, 32, … up to 1024 eigenpairs of K plus the proven truncation allowance, as `certify`
    /// does: seconds, up to a minute near η*), `full` (a coarse certified η* bracket on every
    /// eigenpair; minutes for the bundled example), `none`.
    #[arg(long, default_value = "auto")]
    pub predict: String,
    /// Write the JSON report here (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the SVG plot here (atomically).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// The plan of the flags (validated; errors name the plan's fields, which
/// [`super::error_line`] prints as the flags).
fn plan(args: &SimulateArgs) -> Result<SimulatePlan> {
    let lr_convention = args
        .lr_convention
        .as_deref()
        .map(LrConventionName::parse)
        .transpose()?;
    Ok(SimulatePlan {
        lr: args.lr,
        lr_convention,
        batch: args.batch,
        steps: args.steps,
        trials: args.trials,
        k: args.k.clone(),
        seed: args.seed,
        deltas: args.deltas.clone(),
        predict: PredictMode::parse(&args.predict)?,
        memory_limit: None,
        quiet: args.quiet,
    }
    .build()?)
}

/// `flatcert simulate`.
pub fn run(args: &SimulateArgs) -> Result<i32> {
    let plan = SimulatePlan {
        memory_limit: Some(args.inputs.memory_limit()?),
        ..plan(args)?
    };
    // Dense MLPs and layered (convolutional) networks alike (THEORY §7(c)).
    let loaded = args.inputs.load_any(true)?;
    let doc = flatcert::simulate::run_loaded(&loaded, &plan)?;
    print!("{}", render_text(&doc));
    let svg = args.plot.as_ref().map(|_| render_plot(&doc)).transpose()?;
    if let Some(path) = &args.json {
        let text = doc.to_json()?;
        flatcert::io::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let (Some(path), Some(svg)) = (&args.plot, svg) {
        flatcert::io::write_atomic(path, svg.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}
