//! `flatcert stability`: the flags → a [`SweepPlan`] → [`flatcert::stability::sweep`] → the
//! table on stdout, the JSON document and the SVG figure → exit code.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};

use flatcert::certify::LrConventionName;
use flatcert::measure::stability::Sampling;
use flatcert::render::figures::stability::stability_svg;
use flatcert::stability::{self, StabilityReport, SweepPlan, not_certified, render_table, to_json};

use super::inputs::InputArgs;

/// Batch sampling scheme (THEORY.md §0, §6 item 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplingArg {
    /// Model (S): i.i.d. uniform B-subsets per step, p = (n−B)/(B(n−1)).
    WithoutReplacement,
    /// Model (S′): B i.i.d. uniform indices per step, p = 1/B.
    WithReplacement,
}

impl From<SamplingArg> for Sampling {
    fn from(s: SamplingArg) -> Self {
        match s {
            SamplingArg::WithoutReplacement => Sampling::WithoutReplacement,
            SamplingArg::WithReplacement => Sampling::WithReplacement,
        }
    }
}

/// Arguments of `flatcert stability`.
#[derive(Debug, Args)]
pub struct StabilityArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Batch sizes B (comma-separated). Default: 1, 2, 4, … up to n, and n.
    #[arg(long, value_delimiter = ',')]
    pub batch: Option<Vec<usize>>,
    /// Learning rate η for the verdicts and the plot marker (convention: --lr-convention).
    /// Default: the checkpoint's training η from its metadata, if any.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Convention of --lr: theory (½‖f−y‖² summed over outputs), torch-mse (PyTorch MSELoss,
    /// η = 2·η_torch/C) or torch-sum (reduction='sum', η = 2B·η_torch: needs exactly one
    /// --batch). Default: theory.
    #[arg(long = "lr-convention", requires = "lr")]
    pub lr_convention: Option<String>,
    /// Even orders k ≥ 2 of the moment critical rates (k = 2 is η*(B) itself; k ≥ 4 only for
    /// tiny problems, r ≤ 12).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub k: Vec<u32>,
    /// Batch sampling scheme. Default: the checkpoint's (metadata), else without-replacement.
    #[arg(long, value_enum)]
    pub sampling: Option<SamplingArg>,
    /// Largest nC for the exact Gram path (the exact η* route of THEORY T5(f)); above it the
    /// brackets come from the matrix-free T5(i) and T5(g).
    #[arg(long = "gram-limit", default_value_t = 4096)]
    pub gram_limit: usize,
    /// Relative rank threshold τ of K (eigenvalues above τ·λ_max are kept; THEORY T5e).
    #[arg(long, default_value_t = 1e-12)]
    pub tau: f64,
    /// Target relative width of each η* bracket (THEORY T5h): the cone iteration stops there,
    /// and when K has more than --t5-rank eigenpairs the smallest rank whose proven truncation
    /// allowance is within this width is used (a looser target finishes sooner with a wider,
    /// still certified bracket).
    #[arg(long = "rel-tol", default_value_t = stability::DEFAULT_REL_TOL)]
    pub rel_tol: f64,
    /// Cap on the cone steps of each η* bracket (THEORY T5h).
    #[arg(long = "max-steps", default_value_t = 100)]
    pub max_steps: usize,
    /// Cap on the eigenpairs of K kept for η*(B) (THEORY T5f); the rest enter the proven
    /// truncation allowance, which widens the bracket but never breaks it.
    #[arg(long = "t5-rank", default_value_t = stability::DEFAULT_T5_RANK)]
    pub t5_rank: usize,
    /// When the verdict at η is inconclusive at --t5-rank, try that batch size again with ranks
    /// up to this cap until the verdict is decided (0 or ≤ --t5-rank: never). Skipped, with a
    /// note, when estimated to take more than 5 minutes.
    #[arg(long = "refine-rank", default_value_t = stability::DEFAULT_REFINE_RANK)]
    pub refine_rank: usize,
    /// Failure probability δ of the randomized λ_max(G) bound used beyond --gram-limit
    /// (THEORY §3 item 8): verdicts and η*(B) lower ends that use it hold with confidence 1 − δ.
    #[arg(long, default_value_t = flatcert::measure::lanczos::DEFAULT_DELTA)]
    pub delta: f64,
    /// Cap on the operator products of that bound.
    #[arg(long = "max-products", default_value_t = flatcert::measure::lanczos::DEFAULT_MAX_PRODUCTS)]
    pub max_products: usize,
    /// Seed of the Gaussian Lanczos start of that bound (reported).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the stability document (JSON) here, atomically.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the (B, η) stability figure (SVG) here, atomically.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar and no estimate line.
    #[arg(long)]
    pub quiet: bool,
}

/// The plan of the flags (validated; errors name the plan's fields, which
/// [`super::error_line`] prints as the flags).
fn plan(args: &StabilityArgs) -> Result<SweepPlan> {
    let lr_convention = args
        .lr_convention
        .as_deref()
        .map(LrConventionName::parse)
        .transpose()?;
    Ok(SweepPlan {
        batch: args.batch.clone(),
        lr: args.lr,
        lr_convention,
        k: args.k.clone(),
        sampling: args.sampling.map(Sampling::from),
        gram_limit: args.gram_limit,
        tau: args.tau,
        rel_tol: args.rel_tol,
        max_steps: args.max_steps,
        t5_rank: args.t5_rank,
        refine_rank: args.refine_rank,
        delta: args.delta,
        max_products: args.max_products,
        seed: args.seed,
        memory_limit: None,
        quiet: args.quiet,
    }
    .build()?)
}

/// Fail early (before any computation) when an output's directory does not exist.
pub(super) fn check_output_dir(flag: &str, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(flatcert::Error::invalid_argument(
            flag,
            format!(
                "{}: the directory {} does not exist",
                path.display(),
                dir.display()
            ),
        )
        .into());
    }
    Ok(())
}

/// `flatcert stability`. Exit 0 when every verdict at η (each row and the trained point) is
/// certified stable, or when there is no η (brackets only); 1 when one is certified unstable or
/// inconclusive (DESIGN.md §4: computed, but not certified) — the outputs are written either way.
pub fn run(args: &StabilityArgs) -> Result<i32> {
    let plan = plan(args)?;
    for (flag, path) in [("--json", &args.json), ("--plot", &args.plot)] {
        if let Some(p) = path {
            check_output_dir(flag, p)?;
        }
    }
    if let (Some(j), Some(p)) = (&args.json, &args.plot)
        && j == p
    {
        return Err(flatcert::Error::invalid_argument("--plot", "must differ from --json").into());
    }
    let loaded = args.inputs.load_any(false)?;
    let plan = SweepPlan {
        memory_limit: Some(args.inputs.memory_limit()?),
        ..plan
    };
    let StabilityReport { doc, plot } = stability::sweep(loaded.stability_subject(), &plan)?;
    print!("{}", render_table(&doc));
    let open = not_certified(&doc);
    if let Some(e) = &doc.eta
        && !open.is_empty()
    {
        println!(
            "not certified stable at η = {}: {} (exit 1)",
            e.theory,
            open.join(", ")
        );
    }
    println!("computed in {:.2} s", doc.runtime_seconds);
    // Render everything before writing anything: no output on failure.
    let json = args.json.as_ref().map(|_| to_json(&doc)).transpose()?;
    let svg = args
        .plot
        .as_ref()
        .map(|_| stability_svg(&plot))
        .transpose()?;
    if let (Some(path), Some(text)) = (&args.json, json) {
        flatcert::io::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let (Some(path), Some(text)) = (&args.plot, svg) {
        flatcert::io::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(if open.is_empty() { 0 } else { 1 })
}
