//! `flatcert stability`: the critical learning rates of SGD per batch size (THEORY.md T4, T5, T6)
//! as a table, a JSON document (`flatcert.stability/v1`) and an SVG figure of the stable region
//! in the (B, η) plane.
//!
//! One exact Gram path (THEORY.md §4: K, its eigendecomposition and the reduced basis of T5e) is
//! shared by every batch size. Per batch size B:
//! - `gd_critical_lr`: η_GD* = 2/λ_max(G) with the certified bracket `[2/upper, 2/lower]` (T4;
//!   independent of B, necessary for every B);
//! - `mean_square_critical_lr`: η*(B) = 1/λ_max(𝒟̃) with its certified bracket (T5f/h, §3 item 7);
//! - `k_moment_critical_lr_k{k}`: η*_k(B) from the exact 𝒬_k on Sym^k(ℝ^r) (T6, tiny r only;
//!   otherwise the field says why it was not computed — never a made-up number);
//! - the verdict at the user's η: certified stable iff η ≤ the certified lower end of η*(B),
//!   certified unstable iff η > its upper end, else inconclusive; certified relative margin
//!   `1/(η·upper(λ_max(𝒟̃))) − 1` (a lower bound of η*/η − 1).
//!
//! Every verdict uses the Gauss–Newton matrix G in place of the Hessian H: exact at an
//! interpolating minimum (residual 0), otherwise the report says "Gauss–Newton model" (T5
//! failure mode (i)). The theory assumes model (S) sampling (a fresh uniform B-subset at every
//! step, THEORY.md §0); per-epoch reshuffling is not covered, and the notes say so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use nalgebra::DMatrix;
use serde::Serialize;
use serde_json::Value;

use flatcert::certify::LrConventionName;
use flatcert::certify::summary::status_label;
use flatcert::measure::gram::{GramOptions, gauss_newton_gram, gram_memory_bytes};
use flatcert::measure::hvp::{CurvatureOperator, OperatorOptions};
use flatcert::measure::kmoment::k_moment_critical_lr;
use flatcert::measure::stability::{
    BracketOptions, CriticalLr, ReducedModel, Sampling, Verdict, critical_lr_sweep, noise_p,
};
use flatcert::measure::truncation::{Goal, RankBudget};
use flatcert::measurements::MeasurementInputs;
use flatcert::quantity::{round_down, round_up};
use flatcert::render::figures::stability::{PlotMarker, PlotRow, StabilityPlot, stability_svg};
use flatcert::{Error, Mlp};
use flatcert_bounds::Confidence;

use super::inputs::{InputArgs, Loaded};
use super::progress;

/// Schema identifier of the stability document.
pub const STABILITY_SCHEMA: &str = "flatcert.stability/v1";

/// Largest r for which the exact 𝒬_k of T6 is attempted (issue 3: "r ≤ 12, k = 4").
pub const K_MOMENT_MAX_RANK: usize = 12;

/// Work limit (batches × dim(Sym^k)² × k!) of the exact 𝒬_k in this command, well below the
/// library's hard limit so that the table stays interactive.
pub const K_MOMENT_WORK_LIMIT: f64 = 4e9;

/// Cone steps assumed by the time estimate for a tight `--rel-tol` (the plain steps, then a
/// Lanczos restart worth about 10 more) and for a loose one (≥ 1e-2).
const TYPICAL_CONE_STEPS: usize = 40;
const TYPICAL_LOOSE_STEPS: usize = 12;

/// Default `--rel-tol`: brackets of η*(B) to 0.1%, reached in seconds on the bundled example
/// (1e-6 would need the full rank of K, minutes per batch size).
pub const DEFAULT_REL_TOL: f64 = 1e-3;

/// Default `--t5-rank`: the rank of every bracket (certify searches up to a larger cap, because
/// it needs one verdict, not a bracket per batch size).
pub const DEFAULT_T5_RANK: usize = flatcert::certify::plan::DEFAULT_BRACKET_T5_RANK;

/// Default `--refine-rank`: the rank cap of the second attempt at a verdict at η that was
/// inconclusive at `--t5-rank` (a 4× smaller truncation allowance at a cost of up to ≈ 16× per
/// batch size, only for those rows).
pub const DEFAULT_REFINE_RANK: usize = 1024;

/// A refinement expected to take longer than this (seconds, from [`step_seconds`]) is skipped
/// and the note says how to run it (`--refine-rank`, `--t5-rank`).
const REFINE_SECONDS_LIMIT: f64 = 300.0;

/// Fraction of the available memory a Gram run may use by default (`--max-memory`).
pub use super::memory::SAFE_MEMORY_FRACTION;

/// Print the memory and time estimate before a run that is expected to take at least this long
/// (seconds) or to use at least [`ANNOUNCE_BYTES`].
const ANNOUNCE_SECONDS: f64 = 2.0;
const ANNOUNCE_BYTES: usize = 256 << 20;

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
    #[arg(long = "rel-tol", default_value_t = DEFAULT_REL_TOL)]
    pub rel_tol: f64,
    /// Cap on the cone steps of each η* bracket (THEORY T5h).
    #[arg(long = "max-steps", default_value_t = 100)]
    pub max_steps: usize,
    /// Cap on the eigenpairs of K kept for η*(B) (THEORY T5f); the rest enter the proven
    /// truncation allowance, which widens the bracket but never breaks it.
    #[arg(long = "t5-rank", default_value_t = DEFAULT_T5_RANK)]
    pub t5_rank: usize,
    /// When the verdict at η is inconclusive at --t5-rank, try that batch size again with ranks
    /// up to this cap until the verdict is decided (0 or ≤ --t5-rank: never). Skipped, with a
    /// note, when estimated to take more than 5 minutes.
    #[arg(long = "refine-rank", default_value_t = DEFAULT_REFINE_RANK)]
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

/// A two-sided bracket; `None` means unbounded (+∞) on that side.
#[derive(Debug, Clone, Serialize)]
pub struct Bracket {
    /// Lower end (certified for `gd_critical_lr` and `mean_square_critical_lr`).
    pub lower: Option<f64>,
    /// Upper end.
    pub upper: Option<f64>,
    /// Set when a side rests on the randomized λ_max(G) bound (THEORY §3 item 8).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// `mean_square_critical_lr` of one row (THEORY.md T5f/h).
#[derive(Debug, Clone, Serialize)]
pub struct MeanSquareBracket {
    /// Certified lower end `1/upper(λ_max(𝒟̃))`; null when η* = +∞ (G = 0).
    pub lower: Option<f64>,
    /// Upper end `1/lower(λ_max(𝒟̃))`; null when unbounded.
    pub upper: Option<f64>,
    /// `"certified bracket"` or `"vacuous"` (η* = +∞).
    pub kind: &'static str,
    /// The certified bracket of λ_max(𝒟̃) (allowances included).
    pub lambda_max_dtilde: Bracket,
    /// `dtilde-cone` or `dtilde-cone+dense`.
    pub method: &'static str,
    /// Number of eigenpairs of K the bracket was computed on (≤ `--t5-rank`, or ≤
    /// `--refine-rank` after a second attempt at an inconclusive verdict; the rest of the
    /// document's r enter the proven truncation allowance).
    pub rank: usize,
    /// Cone steps taken.
    pub cone_steps: usize,
    /// Proven truncation allowance `(1−p)λ_d + 4pω` added to upper(λ_max(𝒟̃)).
    pub truncation_allowance: f64,
    /// Assumed rounding-of-K allowance `(1−p)φ + 4pnφ` (an a-priori estimate).
    pub rounding_allowance_assumed: f64,
    /// At scale: the confidence of the lower end η_suff (THEORY §3 item 8); absent on the
    /// Gram path (deterministic).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// The verdict at the user's η for one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct RowVerdict {
    /// η (theory convention).
    pub eta: f64,
    /// Mean-square verdict (T5f): certified stable / certified unstable / inconclusive.
    pub mean_square: &'static str,
    /// Certified relative margin `1/(η·upper) − 1 ≤ η*/η − 1`; null when η* = +∞.
    pub certified_relative_margin: Option<f64>,
    /// T4 verdict (GD condition, necessary): stable / unstable / inconclusive.
    pub gd: &'static str,
    /// At scale: the confidence of a certified verdict (THEORY §3 item 8).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<Confidence>,
}

/// One batch size.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Batch size B.
    pub batch: usize,
    /// Noise parameter p.
    pub p: f64,
    /// η_GD* = 2/λ_max(G) (T4), certified bracket.
    pub gd_critical_lr: Bracket,
    /// η*(B) (T5f), certified bracket.
    pub mean_square_critical_lr: MeanSquareBracket,
    /// `k_moment_critical_lr_k{k}` for each requested k ≥ 4: an object where computed, else
    /// a string starting with "not computed".
    #[serde(flatten)]
    pub k_moments: serde_json::Map<String, Value>,
    /// The verdict at η (absent without an η).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<RowVerdict>,
    /// Wall-clock seconds spent on this row (η* bracket and k-moments).
    pub seconds: f64,
}

/// The learning rate of the verdicts in both conventions.
#[derive(Debug, Clone, Serialize)]
pub struct EtaInfo {
    /// η in the theory convention (used everywhere).
    pub theory: f64,
    /// The PyTorch `MSELoss` equivalent η_torch = η·C/2.
    pub torch_mse: f64,
    /// Where it came from (`--lr (theory)`, `--lr (torch-mse)`, `checkpoint metadata`).
    pub source: String,
}

/// The highlighted (B, η) point.
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    /// Batch size.
    pub batch: usize,
    /// η (theory convention).
    pub eta: f64,
    /// Where (B, η) came from.
    pub source: String,
    /// Mean-square verdict.
    pub verdict: &'static str,
    /// Certified relative margin (null when η* = +∞).
    pub certified_relative_margin: Option<f64>,
    /// The η*(B) bracket at this B.
    pub mean_square_critical_lr: Bracket,
}

/// Residual diagnostics (THEORY.md T5 failure mode (i)).
#[derive(Debug, Clone, Serialize)]
pub struct ResidualInfo {
    /// max_{i,c} |f_c(x_i) − y_ic| as computed.
    pub max_abs_residual: f64,
    /// Its rigorous upper side (the running forward-error bound of THEORY §3 item 1).
    pub max_abs_residual_upper: f64,
    /// H = G is proven (residual proven 0 and no possible kink): no Gauss–Newton caveat.
    pub hessian_is_gauss_newton: bool,
    /// √(2ℒ) = √((1/n)Σ‖res_i‖²).
    pub rms_residual: f64,
    /// ‖∇ℒ‖ (loss gradient norm).
    pub loss_gradient_norm: f64,
}

/// The stability document (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct StabilityDoc {
    /// Always [`STABILITY_SCHEMA`].
    pub schema: &'static str,
    /// Inputs with SHA-256 (as in `flatcert measure`).
    pub inputs: MeasurementInputs,
    /// η in both conventions (absent when neither --lr nor metadata gave one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta: Option<EtaInfo>,
    /// Number of samples.
    pub n: usize,
    /// Number of outputs.
    #[serde(rename = "C")]
    pub c: usize,
    /// Number of parameters P.
    #[serde(rename = "P")]
    pub p: usize,
    /// Rank r of G kept (eigenvalues of K above τ·λ_max); absent at scale (no Gram path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<usize>,
    /// τ (Gram path only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Σ of the discarded |eigenvalues| of K (Gram path only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discarded_mass: Option<f64>,
    /// Sampling scheme of every row.
    pub sampling: &'static str,
    /// Certified bracket of λ_max(G) (at scale: its upper end with a confidence).
    pub gauss_newton_lambda_max: Bracket,
    /// Residual diagnostics (with targets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residual: Option<ResidualInfo>,
    /// The highlighted point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<Marker>,
    /// One row per batch size, increasing B.
    pub rows: Vec<Row>,
    /// Caveats a reader must see.
    pub notes: Vec<String>,
    /// Wall-clock seconds of the whole run.
    pub runtime_seconds: f64,
}

/// A usage error (exit 2) naming the argument.
fn invalid(name: &str, message: impl Into<String>) -> anyhow::Error {
    Error::invalid_argument(name, message).into()
}

/// Validate the arguments that do not need the data: η finite and positive, k even in 2..=16,
/// τ in [0, 1), a positive Gram limit, writable output directories.
fn validate_args(args: &StabilityArgs) -> Result<()> {
    if let Some(c) = &args.lr_convention
        && LrConventionName::parse(c)? == LrConventionName::TorchSum
        && args.batch.as_ref().is_none_or(|b| b.len() != 1)
    {
        return Err(invalid(
            "--lr-convention",
            "torch-sum gives η = 2B·η_torch, which depends on B: give exactly one --batch",
        ));
    }
    if let Some(lr) = args.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(invalid(
            "--lr",
            format!("must be a positive finite number, got {lr}"),
        ));
    }
    if args.k.is_empty() {
        return Err(invalid("--k", "give at least one even order k ≥ 2"));
    }
    for &k in &args.k {
        if k < 2 || k % 2 == 1 || k > 16 {
            return Err(invalid(
                "--k",
                format!("each k must be even and in 2..=16, got {k}"),
            ));
        }
    }
    if args.tau.is_nan() || !(0.0..1.0).contains(&args.tau) {
        return Err(invalid(
            "--tau",
            format!("must lie in [0, 1), got {}", args.tau),
        ));
    }
    if !(args.rel_tol.is_finite() && args.rel_tol > 0.0 && args.rel_tol < 1.0) {
        return Err(invalid(
            "--rel-tol",
            format!("must lie in (0, 1), got {}", args.rel_tol),
        ));
    }
    if args.t5_rank == 0 {
        return Err(invalid("--t5-rank", "must be at least 1"));
    }
    if args.max_steps == 0 {
        return Err(invalid("--max-steps", "must be ≥ 1"));
    }
    flatcert::measure::lanczos::UpperBoundOptions {
        delta: args.delta,
        max_products: args.max_products,
        seed: args.seed,
        rel_gap: 1e-4,
    }
    .validate()?;
    if args.gram_limit == 0 {
        return Err(invalid("--gram-limit", "must be ≥ 1"));
    }
    if let Some(b) = &args.batch {
        if b.is_empty() {
            return Err(invalid("--batch", "give at least one batch size"));
        }
        if let Some(z) = b.iter().find(|&&b| b == 0) {
            return Err(invalid(
                "--batch",
                format!("batch sizes must be ≥ 1, got {z}"),
            ));
        }
    }
    for (flag, path) in [("--json", &args.json), ("--plot", &args.plot)] {
        if let Some(p) = path {
            check_output_dir(flag, p)?;
        }
    }
    if let (Some(j), Some(p)) = (&args.json, &args.plot)
        && j == p
    {
        return Err(invalid("--plot", "must differ from --json"));
    }
    Ok(())
}

/// Fail early (before any computation) when an output's directory does not exist.
fn check_output_dir(flag: &str, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(invalid(
            flag,
            format!(
                "{}: the directory {} does not exist",
                path.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// η in the theory convention (THEORY.md §0) for C outputs and, for torch-sum, batch size B
/// (`None`: unknown, no η).
fn to_theory(lr: f64, conv: LrConventionName, c: usize, batch: Option<usize>) -> Option<f64> {
    let b = match conv {
        LrConventionName::TorchSum => batch?,
        _ => batch.unwrap_or(1),
    };
    conv.convention(c, b).to_theory(lr).ok()
}

/// The η of the verdicts and the marker's B: `--lr` (no marker B), else the checkpoint's
/// metadata `lr`/`lr_convention`/`batch` (with notes when the metadata is unusable).
fn resolve_eta(
    args: &StabilityArgs,
    loaded: &Loaded,
    notes: &mut Vec<String>,
) -> (Option<EtaInfo>, Option<usize>) {
    let c = loaded.mlp.output_dim();
    let info = |theory: f64, source: String| EtaInfo {
        theory,
        torch_mse: theory * c as f64 / 2.0,
        source,
    };
    if let Some(lr) = args.lr {
        // Parsed (and torch-sum's single --batch checked) by validate_args.
        let conv = args
            .lr_convention
            .as_deref()
            .and_then(|s| LrConventionName::parse(s).ok())
            .unwrap_or_default();
        let batch = args.batch.as_ref().and_then(|b| b.first().copied());
        let eta = to_theory(lr, conv, c, batch)
            .map(|eta| info(eta, format!("--lr {lr} ({})", conv.name())));
        return (eta, None);
    }
    let md = &loaded.metadata;
    let Some(lr_text) = md.get("lr") else {
        return (None, None);
    };
    let Some(lr) = lr_text
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
    else {
        notes.push(format!(
            "checkpoint metadata lr = '{lr_text}' is not a positive number: no verdicts"
        ));
        return (None, None);
    };
    let conv_text = md.get("lr_convention").map_or("", String::as_str);
    let Some(conv) = LrConventionName::parse(conv_text).ok() else {
        notes.push(format!(
            "checkpoint metadata lr = {lr} has an unknown convention '{conv_text}': no verdicts \
             (give --lr and --lr-convention)"
        ));
        return (None, None);
    };
    let batch = md.get("batch").and_then(|b| b.trim().parse::<usize>().ok());
    let Some(eta) = to_theory(lr, conv, c, batch) else {
        notes.push(format!(
            "checkpoint metadata lr = {lr} ({conv_text}) needs the training batch size, which \
             the metadata does not give: no verdicts (give --lr, --lr-convention and --batch)"
        ));
        return (None, None);
    };
    let source = format!("checkpoint metadata (lr = {lr}, {conv_text} convention)");
    (Some(info(eta, source)), batch)
}

/// Default batch sizes: powers of two below n, and n.
fn default_batches(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&b| b < n)
        .collect();
    v.push(n);
    v
}

/// Format bytes as MiB/GiB.
pub(crate) fn fmt_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", (b / (1u64 << 20) as f64).max(1.0))
    }
}

/// Format seconds.
pub(crate) fn fmt_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Memory and time model of one run (THEORY.md §4, T5 failure mode (iv)).
#[derive(Debug, Clone, Copy)]
struct CostEstimate {
    /// Peak bytes: the Gram path plus the reduced model and the cone iteration.
    bytes: usize,
    /// Seconds for K, its eigendecomposition and the Weyl bounds.
    gram_seconds: f64,
    /// Seconds per cone step of the η* bracket (one application of 𝒟̃ and |𝒟̃| and the
    /// certificate's eigendecompositions).
    step_seconds: f64,
}

/// Sustained GEMM rate of this machine in flop/s, measured once on a small product (a few ms).
fn gemm_rate() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let m = 192;
        let a = DMatrix::<f64>::from_fn(m, m, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let c = &a * &a;
            std::hint::black_box(&c);
            best = best.min(t.elapsed().as_secs_f64());
        }
        (2.0 * (m * m * m) as f64 / best.max(1e-9)).clamp(1e8, 1e12)
    })
}

/// How much slower than a GEMM the eigensolver and the per-sample loops run per flop (measured on
/// the bundled example, nC = r = 2560, on 2 cores).
const EIGEN_SLOWDOWN: f64 = 1.5;

/// Estimated seconds of the Gram path (THEORY.md §4): forming K costs about `4N²Σm` flops
/// (signed and absolute), the eigensolver and its Weyl bound about `14N³` at a third of the GEMM
/// rate, N = nC.
pub(crate) fn gram_seconds_estimate(mlp: &Mlp, n: usize) -> f64 {
    let big_n = (n * mlp.output_dim()) as f64;
    let m_sum: usize = mlp.widths()[1..].iter().sum();
    (4.0 * big_n * big_n * m_sum as f64 + EIGEN_SLOWDOWN * 14.0 * big_n.powi(3)) / gemm_rate()
}

/// Seconds of one cone step at rank r (see [`estimate_cost`]).
fn step_seconds(mlp: &Mlp, n: usize, r: usize) -> f64 {
    let big_n = (n * mlp.output_dim()) as f64;
    let r = r as f64;
    (2.0 * 8.0 * big_n * r * r + EIGEN_SLOWDOWN * 40.0 * r.powi(3)) / gemm_rate()
}

/// The cost model of `flatcert stability`: the Gram path, then per cone step `8Nr²` flops for
/// 𝒟̃ and |𝒟̃| plus about `40r³` for the certificate's eigendecompositions (at a third of the
/// GEMM rate), with r ≤ min(N, P, `rank_cap`).
fn estimate_cost(mlp: &Mlp, n: usize, rank_cap: usize) -> CostEstimate {
    let big_n = (n * mlp.output_dim()) as f64;
    let r_full = (n * mlp.output_dim()).min(mlp.num_params());
    // Memory: the full reduced basis Y (N × r) and its |Y| are built once (T4, k-moments).
    let r = r_full as f64;
    let extra = 8.0 * (4.0 * big_n * r + 24.0 * r * r);
    CostEstimate {
        bytes: gram_memory_bytes(mlp, n).saturating_add(extra as usize),
        gram_seconds: gram_seconds_estimate(mlp, n),
        step_seconds: step_seconds(mlp, n, r_full.min(rank_cap)),
    }
}

/// `binom(a, b)` as f64 (may be +∞ for huge values).
fn binomial_f64(a: usize, b: usize) -> f64 {
    let b = b.min(a.saturating_sub(b));
    (0..b).fold(1.0, |acc, t| acc * (a - t) as f64 / (t + 1) as f64)
}

/// Why the exact 𝒬_k cannot be built for (r, n, B, k), or Ok.
fn k_moment_feasible(
    r: usize,
    n: usize,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> std::result::Result<(), String> {
    if r == 0 {
        return Err("not computed: G = 0 (η*_k = +∞)".into());
    }
    if r > K_MOMENT_MAX_RANK {
        return Err(format!(
            "not computed: r too large (r = {r}; the exact 𝒬_{k} on Sym^{k}(ℝ^r) needs r ≤ \
             {K_MOMENT_MAX_RANK})"
        ));
    }
    let dim = binomial_f64(r + k - 1, k);
    let batches = match sampling {
        Sampling::WithoutReplacement => binomial_f64(n, batch),
        Sampling::WithReplacement => binomial_f64(n + batch - 1, batch),
    };
    let fact: f64 = (1..=k).map(|t| t as f64).product();
    let work = batches * dim * dim * fact;
    if work > K_MOMENT_WORK_LIMIT {
        return Err(format!(
            "not computed: too many batches to enumerate ({batches:.3e} batches, ~{work:.1e} \
             operations for the exact 𝒬_{k})"
        ));
    }
    Ok(())
}

/// The `k_moment_critical_lr_k{k}` entry of one row.
fn k_moment_entry(model: &ReducedModel, crit: &CriticalLr, k: usize, sampling: Sampling) -> Value {
    if let Err(why) = k_moment_feasible(model.rank(), model.n, crit.batch, k, sampling) {
        return Value::String(why);
    }
    let Some(eta2_upper) = crit.eta_upper() else {
        return Value::String("not computed: η*_2 has no finite upper end".into());
    };
    match k_moment_critical_lr(model, crit.batch, k, sampling, eta2_upper) {
        Ok(q) => serde_json::json!({
            "value": q.value,
            "lower": q.value,
            "upper": q.value + q.tol,
            "kind": "estimate",
            "tol": q.tol,
            "method": q.method,
            "note": q.note,
        }),
        Err(e) => Value::String(format!("not computed: {e}")),
    }
}

/// T4 at η from the certified λ_max(G) bracket: stable iff upper ≤ 2/η, unstable iff
/// lower > 2/η.
fn gd_verdict(lambda: (f64, f64), eta: f64) -> &'static str {
    flatcert_bounds::t4::gd_status(lambda.0, lambda.1, eta)
        .0
        .name()
}

/// The `mean_square_critical_lr` entry of a row from the library's [`CriticalLr`].
fn ms_bracket(crit: &CriticalLr, rank: usize) -> MeanSquareBracket {
    match &crit.bracket {
        None => MeanSquareBracket {
            lower: None,
            upper: None,
            kind: "vacuous",
            lambda_max_dtilde: Bracket {
                lower: Some(0.0),
                upper: Some(0.0),
                confidence: None,
            },
            method: "theory-T5f",
            rank: 0,
            cone_steps: 0,
            truncation_allowance: 0.0,
            rounding_allowance_assumed: 0.0,
            confidence: None,
        },
        Some(b) => MeanSquareBracket {
            lower: crit.eta_lower(),
            upper: crit.eta_upper(),
            kind: "certified bracket",
            lambda_max_dtilde: Bracket {
                lower: Some(b.lower),
                upper: Some(b.upper),
                confidence: None,
            },
            method: if b.dense.is_some() {
                "dtilde-cone+dense"
            } else {
                "dtilde-cone"
            },
            rank,
            cone_steps: b.steps,
            truncation_allowance: b.truncation_allowance,
            rounding_allowance_assumed: b.phi_allowance,
            confidence: None,
        },
    }
}

/// Residual diagnostics and ‖∇ℒ‖ (with targets).
pub(super) fn residual_info(loaded: &Loaded) -> Result<Option<ResidualInfo>> {
    let (mlp, data) = (&loaded.mlp, &loaded.data);
    if !data.has_targets() {
        return Ok(None);
    }
    // The running forward-error bound (THEORY §3 item 1) gives a rigorous upper side of
    // max|res|; only a 0 upper side with no possible kink proves H = G (bounds `residual`).
    let (mut max_abs, mut sum_sq, mut max_upper, mut near_kinks) = (0.0f64, 0.0f64, 0.0f64, 0);
    for (s, e) in data.blocks(256) {
        let cache = mlp.forward_cache(data.x_block(s, e));
        let fe = flatcert::measure::forward_error::forward_errors(mlp, &cache);
        near_kinks += fe.near_kinks.len();
        let Some(y) = data.y_block(s, e) else {
            return Ok(None);
        };
        for ((a, b), bound) in cache.output().iter().zip(y.iter()).zip(fe.output().iter()) {
            let r = a - b;
            max_abs = max_abs.max(r.abs());
            let err = flatcert::measure::forward_error::residual_error(*bound, *a, *b);
            max_upper = max_upper.max(r.abs() + err);
            sum_sq += r * r;
        }
    }
    let evidence = flatcert_bounds::residual::ResidualEvidence {
        max_abs: Some(flatcert_bounds::Value::upper_bound(max_upper, 0.0)),
        piecewise_linear: mlp.activation().is_piecewise_linear(),
        near_kink_units: Some(near_kinks),
    };
    // One product (the loss gradient): caching the forward pass would only cost memory.
    let no_cache = OperatorOptions {
        cache_limit_bytes: 0,
        ..OperatorOptions::default()
    };
    let op = CurvatureOperator::new(mlp, data, no_cache)?;
    let grad = op.loss_gradient()?;
    Ok(Some(ResidualInfo {
        max_abs_residual: max_abs,
        max_abs_residual_upper: max_upper,
        rms_residual: (sum_sq / data.len() as f64).sqrt(),
        loss_gradient_norm: grad.dot(&grad).sqrt(),
        hessian_is_gauss_newton: evidence.hessian_is_gauss_newton(),
    }))
}

/// What [`refine_inconclusive`] works on.
struct RefineInputs<'s, 'a> {
    spec: &'s flatcert::measure::gram::GramSpectrum,
    mlp: &'s Mlp,
    budget: &'s RankBudget<'a>,
    refine_rank: usize,
    /// Cone steps assumed by the time estimate.
    typical_steps: f64,
    eta: f64,
    sampling: Sampling,
    opts: &'s BracketOptions,
    quiet: bool,
    crits: &'s mut Vec<(CriticalLr, f64)>,
    rank_used: &'s mut std::collections::BTreeMap<usize, usize>,
    notes: &'s mut Vec<String>,
}

/// Second attempt (THEORY T5f with a larger rank) for every batch size whose verdict at η is
/// inconclusive at `--t5-rank`: ranks up to `--refine-rank` are tried in increasing order until
/// the verdict is decided ([`Goal::DecideAt`]). A decided result replaces the row's bracket (both
/// are certified; the refined one has the smaller allowance); an undecided one is kept only if
/// its bracket is narrower. Each outcome is recorded in a note.
fn refine_inconclusive(r: RefineInputs<'_, '_>) -> Result<()> {
    let cap = r.refine_rank.min(r.spec.rank);
    if r.budget.is_exact() || cap <= r.budget.cap() {
        return Ok(());
    }
    let open: Vec<usize> = r
        .crits
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| c.verdict(r.eta).0 == Verdict::Inconclusive)
        .map(|(i, _)| i)
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let open_batches = open
        .iter()
        .map(|&i| format!("B = {}", r.crits[i].0.batch))
        .collect::<Vec<_>>()
        .join(", ");
    let seconds = step_seconds(r.mlp, r.spec.n, cap) * r.typical_steps * open.len() as f64;
    if seconds > REFINE_SECONDS_LIMIT {
        r.notes.push(format!(
            "verdict at η = {} inconclusive at rank {} for {}; a second attempt at ranks up to \
             {cap} would take ≈ {} and was skipped: run those batch sizes alone with --t5-rank \
             {cap} (or a larger --rel-tol) to decide them",
            r.eta,
            r.budget.cap(),
            open_batches,
            fmt_seconds(seconds)
        ));
        return Ok(());
    }
    if !r.quiet {
        eprintln!(
            "verdict at η inconclusive at rank {} for {}: trying ranks up to {cap} (≈ {})",
            r.budget.cap(),
            open_batches,
            fmt_seconds(seconds)
        );
    }
    let big = RankBudget::new(r.spec, cap)?;
    let mut decided = Vec::new();
    let mut undecided = Vec::new();
    for &i in &open {
        let t = Instant::now();
        let b = r.crits[i].0.batch;
        let (used, cl) = big.critical_lr(b, r.sampling, r.opts, Goal::DecideAt(r.eta))?;
        let secs = r.crits[i].1 + t.elapsed().as_secs_f64();
        let width = |c: &CriticalLr| match (c.eta_lower(), c.eta_upper()) {
            (Some(lo), Some(hi)) => hi - lo,
            _ => f64::INFINITY,
        };
        let is_decided = cl.verdict(r.eta).0 != Verdict::Inconclusive;
        if is_decided || width(&cl) < width(&r.crits[i].0) {
            r.rank_used.insert(b, used.rank());
            r.crits[i] = (cl, secs);
        } else {
            r.crits[i].1 = secs;
        }
        if is_decided {
            decided.push(format!("B = {b} at rank {}", used.rank()));
        } else {
            undecided.push(format!("B = {b}"));
        }
    }
    let mut note = format!(
        "verdict at η = {} was inconclusive at rank {} (--t5-rank) for {}; retried with ranks up \
         to {cap} (--refine-rank)",
        r.eta,
        r.budget.cap(),
        open_batches
    );
    if !decided.is_empty() {
        note.push_str(&format!("; decided for {}", decided.join(", ")));
    }
    if !undecided.is_empty() {
        note.push_str(&format!(
            "; still inconclusive for {} (η is within the bracket's width of η*)",
            undecided.join(", ")
        ));
    }
    r.notes.push(note);
    Ok(())
}

/// Run the whole computation and build the document (and the figure's data).
pub fn stability_document(args: &StabilityArgs) -> Result<(StabilityDoc, StabilityPlot)> {
    let t0 = Instant::now();
    validate_args(args)?;
    let loaded = args.inputs.load(false)?;
    let (mlp, data) = (&loaded.mlp, &loaded.data);
    let (n, c) = (data.len(), mlp.output_dim());
    let mut notes = loaded.default_activation_notes();

    let md_sampling = loaded
        .metadata
        .get("sampling")
        .and_then(|s| flatcert::train::Sampling::parse(s).ok());
    let sampling: Sampling = match args.sampling {
        Some(s) => s.into(),
        None if md_sampling == Some(flatcert::train::Sampling::IidWithReplacement) => {
            Sampling::WithReplacement
        }
        None => Sampling::WithoutReplacement,
    };

    let mut batches = args.batch.clone().unwrap_or_else(|| default_batches(n));
    for &b in &batches {
        noise_p(n, b, sampling)?;
    }
    batches.sort_unstable();
    batches.dedup();

    let (eta, mut marker_batch) = resolve_eta(args, &loaded, &mut notes);
    if let Some(b) = marker_batch
        && noise_p(n, b, sampling).is_err()
    {
        notes.push(format!(
            "checkpoint metadata batch = {b} is not a valid batch size for n = {n}: no marker"
        ));
        marker_batch = None;
    }

    // The Gram path: refuse beyond --gram-limit or a safe fraction of the memory.
    let big_n = n.saturating_mul(c);
    let mut sweep_batches = batches.clone();
    if let Some(b) = marker_batch
        && !sweep_batches.contains(&b)
    {
        sweep_batches.push(b);
    }
    let cost = estimate_cost(mlp, n, args.t5_rank);
    // Typical: the plain cone steps, then (tight targets) a Lanczos restart worth ~10 steps.
    let typical_steps = if args.rel_tol >= 1e-2 {
        args.max_steps.min(TYPICAL_LOOSE_STEPS)
    } else {
        args.max_steps.min(TYPICAL_CONE_STEPS) + 10
    } as f64;
    let per_batch_seconds = cost.step_seconds * typical_steps;
    let total_seconds = cost.gram_seconds + per_batch_seconds * sweep_batches.len() as f64;
    if big_n > args.gram_limit {
        return super::stability_scale::document(super::stability_scale::ScaleInputs {
            args,
            loaded: &loaded,
            sampling,
            batches,
            eta,
            marker_batch,
            notes,
            t0,
        });
    }
    let safe = args.inputs.memory_limit()?;
    if cost.bytes > safe {
        return Err(invalid(
            "--max-memory",
            format!(
                "the Gram path for nC = {big_n} needs ≈ {}, more than the memory limit of {} \
                 (default {:.0}% of the available memory); raise --max-memory if the machine has \
                 it, subsample the data, or use `flatcert measure` (operator path)",
                flatcert::measure::gram::format_bytes(cost.bytes),
                flatcert::measure::gram::format_bytes(safe),
                SAFE_MEMORY_FRACTION * 100.0
            ),
        ));
    }
    if !args.quiet && (total_seconds >= ANNOUNCE_SECONDS || cost.bytes >= ANNOUNCE_BYTES) {
        eprintln!(
            "Gram path: nC = {big_n}, memory ≈ {}, estimated time ≈ {} (K and its \
             eigendecomposition ≈ {}, then ≈ {} per batch size × {})",
            fmt_bytes(cost.bytes),
            fmt_seconds(total_seconds),
            fmt_seconds(cost.gram_seconds),
            fmt_seconds(per_batch_seconds),
            sweep_batches.len()
        );
    }

    let residual = residual_info(&loaded)?;
    let spec = gauss_newton_gram(
        mlp,
        data,
        &GramOptions {
            tau: args.tau,
            memory_limit_bytes: safe.max(cost.bytes),
            ..GramOptions::default()
        },
    )?;
    let model = ReducedModel::from_spectrum(&spec);
    let r = model.rank();
    let lambda = model.lambda_max_bracket;
    let budget = RankBudget::new(&spec, args.t5_rank)?;
    let refined =
        step_seconds(mlp, n, r.min(args.t5_rank)) * typical_steps * sweep_batches.len() as f64;
    if !args.quiet && refined >= ANNOUNCE_SECONDS {
        eprintln!(
            "η*(B): r = {r} (τ = {:e}); estimated ≈ {} for {} batch size(s) (rough; a looser \
             --rel-tol or a larger --tau is faster, the brackets stay certified)",
            args.tau,
            fmt_seconds(refined),
            sweep_batches.len()
        );
    }

    // η*(B) for every batch size from the one eigendecomposition.
    let opts = BracketOptions {
        max_steps: args.max_steps,
        rel_tol: args.rel_tol,
        ..BracketOptions::default()
    };
    let pb = progress::bar(sweep_batches.len() as u64, "η*(B)", args.quiet);
    let mut crits: Vec<(CriticalLr, f64)> = Vec::with_capacity(sweep_batches.len());
    let mut rank_used = std::collections::BTreeMap::new();
    let dense = r > 0 && r * (r + 1) / 2 <= opts.dense_limit;
    if dense && budget.is_exact() {
        // Small r: one sweep shares the dense matrices of 𝒟̃.
        let t = Instant::now();
        let all = critical_lr_sweep(&model, &sweep_batches, sampling, &opts)?;
        let each = t.elapsed().as_secs_f64() / all.len().max(1) as f64;
        crits.extend(all.into_iter().map(|cl| (cl, each)));
        pb.inc(sweep_batches.len() as u64);
    } else {
        for &b in &sweep_batches {
            let t = Instant::now();
            let (used, cl) = budget.critical_lr(b, sampling, &opts, Goal::Bracket)?;
            rank_used.insert(b, used.rank());
            crits.push((cl, t.elapsed().as_secs_f64()));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if let Some(e) = eta.as_ref().map(|e| e.theory) {
        refine_inconclusive(RefineInputs {
            spec: &spec,
            mlp,
            budget: &budget,
            refine_rank: args.refine_rank,
            typical_steps,
            eta: e,
            sampling,
            opts: &opts,
            quiet: args.quiet,
            crits: &mut crits,
            rank_used: &mut rank_used,
            notes: &mut notes,
        })?;
    }

    let ks: Vec<usize> = {
        let mut v: Vec<usize> = args
            .k
            .iter()
            .map(|&k| k as usize)
            .filter(|&k| k >= 4)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let eta_theory = eta.as_ref().map(|e| e.theory);
    let mut rows = Vec::with_capacity(batches.len());
    for (crit, secs) in crits.iter().filter(|(c, _)| batches.contains(&c.batch)) {
        let t = Instant::now();
        let mut k_moments = serde_json::Map::new();
        for &k in &ks {
            k_moments.insert(
                format!("k_moment_critical_lr_k{k}"),
                k_moment_entry(&model, crit, k, sampling),
            );
        }
        let verdict = eta_theory.map(|e| {
            let (v, margin) = crit.verdict(e);
            RowVerdict {
                eta: e,
                mean_square: v.name(),
                certified_relative_margin: margin,
                gd: gd_verdict(lambda, e),
                confidence: None,
            }
        });
        rows.push(Row {
            batch: crit.batch,
            p: crit.p,
            gd_critical_lr: gd_bracket(lambda),
            mean_square_critical_lr: ms_bracket(
                crit,
                rank_used.get(&crit.batch).copied().unwrap_or(r),
            ),
            k_moments,
            verdict,
            seconds: secs + t.elapsed().as_secs_f64(),
        });
    }
    rows.sort_by_key(|r| r.batch);

    let marker = match (marker_batch, &eta) {
        (Some(b), Some(e)) => crits.iter().find(|(c, _)| c.batch == b).map(|(crit, _)| {
            let (v, margin) = crit.verdict(e.theory);
            Marker {
                batch: b,
                eta: e.theory,
                source: "checkpoint metadata (training B and η)".into(),
                verdict: v.name(),
                certified_relative_margin: margin,
                mean_square_critical_lr: Bracket {
                    lower: crit.eta_lower(),
                    upper: crit.eta_upper(),
                    confidence: None,
                },
            }
        }),
        _ => None,
    };

    // Notes: the Gauss–Newton model, the sampling model, k-moment caveats.
    match &residual {
        Some(res) if res.hessian_is_gauss_newton => {}
        Some(res) => notes.push(format!(
            "Gauss–Newton model: the residual is not proven 0 (max |f − y| = {:.3e}, rigorous \
             upper bound {:.3e}; √(2ℒ) = {:.3e}, ‖∇ℒ‖ = {:.3e}); G = (1/n)ΣJ_iᵀJ_i replaced the \
             Hessian H in every verdict, which certifies the linearization only where H = G \
             (THEORY T5 failure mode (i))",
            res.max_abs_residual,
            res.max_abs_residual_upper,
            res.rms_residual,
            res.loss_gradient_norm
        )),
        None => notes.push(
            "Gauss–Newton model: no targets (--y), so the residual is unknown; G replaced the \
             Hessian H in every verdict (exact only at an interpolating minimum)"
                .into(),
        ),
    }
    notes.push(format!(
        "sampling model {}: {}; the theory assumes batches independent across steps — \
         per-epoch reshuffling (what most training loops do) is not covered",
        if sampling == Sampling::WithoutReplacement {
            "(S)"
        } else {
            "(S′)"
        },
        if sampling == Sampling::WithoutReplacement {
            "a fresh uniform B-subset at every step, p = (n−B)/(B(n−1))"
        } else {
            "B i.i.d. uniform indices at every step, p = 1/B"
        }
    ));
    if md_sampling == Some(flatcert::train::Sampling::EpochReshuffle) {
        notes.push(
            "the checkpoint metadata says it was trained with per-epoch reshuffling, which the \
             theory does not cover: the verdicts describe model (S) SGD at the same (B, η)"
                .into(),
        );
    }
    let any_k_moment = rows
        .iter()
        .any(|r| r.k_moments.values().any(Value::is_object));
    if any_k_moment {
        notes.push(format!(
            "k-th moment rates (k = {}) come from the exact 𝒬_k by batch enumeration (tiny r \
             only), kind estimate (bisection on a computed λ_max; τ and the rounding of K not \
             covered); η*_k ≤ η*_2, and k-th moment instability does not mean SGD diverges",
            ks.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !budget.is_exact() {
        let used: std::collections::BTreeSet<usize> = rank_used.values().copied().collect();
        notes.push(format!(
            "η*(B) brackets computed on the top {} of r = {r} eigenpairs of K (--t5-rank {}, \
             --rel-tol {:e}); the rest enter the proven truncation allowance (1−p)λ_d + 4pω of \
             THEORY T5f, which widens the bracket but keeps it certified",
            used.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            args.t5_rank,
            args.rel_tol
        ));
    }
    if spec.rank < spec.values.len() {
        notes.push(format!(
            "{} eigenvalues of K below τ·λ_max (τ = {:e}) were discarded (mass {:.3e}); the \
             η* brackets include the proven truncation allowance",
            spec.values.len() - spec.rank,
            spec.tau,
            spec.discarded_mass
        ));
    }
    if loaded.embedded {
        notes.push(
            "bundled example: digits (UCI, CC BY 4.0), x scaled by 1/16, labels one-hot".into(),
        );
    }

    let sampling_name = sampling.name();
    let plot = StabilityPlot {
        title: "Where SGD can stay: mean-square stable region in the (B, η) plane".into(),
        subtitle: format!(
            "{} — n = {n}, C = {c}, r = {r}, sampling {sampling_name}{}",
            loaded.model_file.path,
            if residual.as_ref().is_some_and(|r| r.hessian_is_gauss_newton) {
                ", interpolating (H = G, proven)"
            } else {
                ", Gauss–Newton model"
            }
        ),
        rows: rows
            .iter()
            .map(|row| PlotRow {
                batch: row.batch,
                eta_lower: row.mean_square_critical_lr.lower,
                eta_upper: row.mean_square_critical_lr.upper,
                eta_k: ks.first().and_then(|k| {
                    row.k_moments
                        .get(&format!("k_moment_critical_lr_k{k}"))
                        .and_then(|v| v.get("value"))
                        .and_then(Value::as_f64)
                }),
                verdict: row.verdict.as_ref().map(|v| verdict_of(v.mean_square)),
            })
            .collect(),
        gd: match gd_bracket(lambda) {
            Bracket {
                lower: Some(a),
                upper: Some(b),
                ..
            } => Some((a, b)),
            _ => None,
        },
        k: ks.first().copied().unwrap_or(4),
        eta: eta_theory,
        marker: marker.as_ref().map(|m| PlotMarker {
            batch: m.batch,
            eta: m.eta,
            verdict: verdict_of(m.verdict),
            label: format!(
                "trained (B = {}, η = {}): {}{}",
                m.batch,
                m.eta,
                m.verdict,
                m.certified_relative_margin
                    .map(|x| format!(", margin {}", fmt_percent(x)))
                    .unwrap_or_default()
            ),
        }),
        outputs: c,
    };

    let doc = StabilityDoc {
        schema: STABILITY_SCHEMA,
        inputs: loaded.measurement_inputs(&args.k),
        eta,
        n,
        c,
        p: mlp.num_params(),
        r: Some(r),
        tau: Some(spec.tau),
        discarded_mass: Some(spec.discarded_mass),
        sampling: sampling_name,
        gauss_newton_lambda_max: Bracket {
            lower: Some(lambda.0),
            upper: Some(lambda.1),
            confidence: None,
        },
        residual,
        marker,
        rows,
        notes,
        runtime_seconds: 0.0,
    };
    let mut doc = doc;
    doc.runtime_seconds = t0.elapsed().as_secs_f64();
    Ok((doc, plot))
}

/// The [`Verdict`] whose name is `name` (inconclusive if none matches).
pub(super) fn verdict_of(name: &str) -> Verdict {
    [
        Verdict::CertifiedStable,
        Verdict::CertifiedUnstable,
        Verdict::Inconclusive,
    ]
    .into_iter()
    .find(|v| v.name() == name)
    .unwrap_or(Verdict::Inconclusive)
}

/// T4 bracket of η_GD* = 2/λ_max(G): `[2/upper, 2/lower]`, rounded outwards.
fn gd_bracket(lambda: (f64, f64)) -> Bracket {
    let (lo, hi) = lambda;
    Bracket {
        lower: (hi > 0.0).then(|| round_down(2.0 / hi)),
        upper: (lo > 0.0).then(|| round_up(2.0 / lo)),
        confidence: None,
    }
}

/// `x` as a signed percentage.
fn fmt_percent(x: f64) -> String {
    format!("{:+.2}%", 100.0 * x)
}

/// `x` with 10 significant digits (the brackets are typically 1e-9 wide).
fn fmt10(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let mag = x.abs().log10().floor() as i32;
    if (-3..5).contains(&mag) {
        let decimals = (9 - mag).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.9e}")
    }
}

/// `[lo, hi]` with 10 significant digits, `+∞` for an unbounded end.
fn fmt_bracket(lo: Option<f64>, hi: Option<f64>) -> String {
    let side = |v: Option<f64>| v.map_or("+∞".to_string(), fmt10);
    format!("[{}, {}]", side(lo), side(hi))
}

/// The human-readable table.
pub fn render_table(doc: &StabilityDoc) -> String {
    let mut out = String::new();
    let i = &doc.inputs;
    out.push_str(&format!(
        "flatcert stability — model {} ({} {:?}, P = {}), data {} (n = {}, C = {})\n",
        i.model.path, i.activation, i.widths, i.parameters, i.x.path, doc.n, doc.c
    ));
    let lambda = fmt_bracket(
        doc.gauss_newton_lambda_max.lower,
        doc.gauss_newton_lambda_max.upper,
    );
    match (doc.r, doc.tau) {
        (Some(r), Some(tau)) => out.push_str(&format!(
            "Gram path: r = {r} (τ = {tau:e}), λ_max(G) ∈ {lambda}; sampling {}\n",
            doc.sampling
        )),
        _ => out.push_str(&format!(
            "matrix-free (T5(i), T5(g)): λ_max(G) ∈ {lambda}{}; sampling {}\n",
            doc.gauss_newton_lambda_max
                .confidence
                .map_or(String::new(), |c| format!(
                    " (upper end with {})",
                    c.label()
                )),
            doc.sampling
        )),
    }
    match &doc.eta {
        Some(e) => out.push_str(&format!(
            "η = {} (theory convention; PyTorch MSELoss η_torch = {}) from {}\n",
            flatcert::quantity::shortest(e.theory),
            flatcert::quantity::shortest(e.torch_mse),
            e.source
        )),
        None => out.push_str("no η (give --lr): brackets only, no verdicts\n"),
    }
    let ks: Vec<String> = doc
        .rows
        .first()
        .map(|r| r.k_moments.keys().cloned().collect())
        .unwrap_or_default();
    let mut header = format!(
        "\n{:>6}  {:>9}  {:<30}  {:<30}",
        "B", "p", "η_GD* = 2/λ_max(G) bracket", "η*(B) certified bracket"
    );
    for k in &ks {
        let short = k.trim_start_matches("k_moment_critical_lr_");
        header.push_str(&format!("  {:<14}", format!("η*_{} (T6)", &short[1..])));
    }
    if doc.eta.is_some() {
        header.push_str("  verdict at η (certified margin)");
    }
    out.push_str(&header);
    out.push('\n');
    for row in &doc.rows {
        let ms = &row.mean_square_critical_lr;
        let mut line = format!(
            "{:>6}  {:>9.6}  {:<30}  {:<30}",
            row.batch,
            row.p,
            fmt_bracket(row.gd_critical_lr.lower, row.gd_critical_lr.upper),
            fmt_bracket(ms.lower, ms.upper)
        );
        for k in &ks {
            let cell = match row.k_moments.get(k) {
                Some(Value::Object(o)) => o
                    .get("value")
                    .and_then(Value::as_f64)
                    .map_or("?".into(), |v| format!("{v:.10}")),
                Some(Value::String(s)) if s.contains("r too large") => "r too large".into(),
                _ => "not computed".into(),
            };
            line.push_str(&format!("  {cell:<14}"));
        }
        if let Some(v) = &row.verdict {
            line.push_str(&format!(
                "  {}{}",
                status_label(v.mean_square, v.confidence),
                v.certified_relative_margin
                    .map(|m| format!(" ({})", fmt_percent(m)))
                    .unwrap_or_else(|| " (η* = +∞)".into())
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if let Some(m) = &doc.marker {
        out.push_str(&format!(
            "\ntrained at (B = {}, η = {}): {}{}; η*({}) ∈ {}\n",
            m.batch,
            m.eta,
            m.verdict,
            m.certified_relative_margin
                .map(|x| format!(", certified relative margin {}", fmt_percent(x)))
                .unwrap_or_default(),
            m.batch,
            fmt_bracket(
                m.mean_square_critical_lr.lower,
                m.mean_square_critical_lr.upper
            )
        ));
    }
    let k_notes: Vec<String> = doc
        .rows
        .iter()
        .flat_map(|r| r.k_moments.values())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if let Some(first) = k_notes.first() {
        out.push_str(&format!("η*_k: {first}\n"));
    }
    for note in &doc.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}

/// Serialize the document. Every number must be finite (JSON has no ∞/NaN; serde_json would
/// silently write `null`), so the floats are checked first; unbounded ends are `null` by design.
pub fn to_json(doc: &StabilityDoc) -> Result<String> {
    let opt = |v: &Option<f64>| v.is_none_or(f64::is_finite);
    let bracket = |b: &Bracket| opt(&b.lower) && opt(&b.upper);
    let mut ok = opt(&doc.tau)
        && opt(&doc.discarded_mass)
        && bracket(&doc.gauss_newton_lambda_max)
        && doc
            .eta
            .as_ref()
            .is_none_or(|e| e.theory.is_finite() && e.torch_mse.is_finite())
        && doc.residual.as_ref().is_none_or(|r| {
            r.max_abs_residual.is_finite()
                && r.rms_residual.is_finite()
                && r.loss_gradient_norm.is_finite()
        })
        && doc.marker.as_ref().is_none_or(|m| {
            m.eta.is_finite()
                && opt(&m.certified_relative_margin)
                && bracket(&m.mean_square_critical_lr)
        });
    for row in &doc.rows {
        let ms = &row.mean_square_critical_lr;
        ok &= row.p.is_finite()
            && bracket(&row.gd_critical_lr)
            && opt(&ms.lower)
            && opt(&ms.upper)
            && bracket(&ms.lambda_max_dtilde)
            && ms.truncation_allowance.is_finite()
            && ms.rounding_allowance_assumed.is_finite()
            && row
                .verdict
                .as_ref()
                .is_none_or(|v| opt(&v.certified_relative_margin));
    }
    if !ok {
        return Err(Error::Numerical("a stability result is not finite".into()).into());
    }
    serde_json::to_string_pretty(doc).map_err(|e| Error::Internal(format!("JSON: {e}")).into())
}

/// The rows (and marker) whose verdict at η is not "certified stable" for both T5 (mean square)
/// and T4 (GD), as `B = …` labels; empty without an η.
pub fn not_certified(doc: &StabilityDoc) -> Vec<String> {
    let mut out: Vec<String> = doc
        .rows
        .iter()
        .filter(|row| {
            row.verdict.as_ref().is_some_and(|v| {
                v.mean_square != Verdict::CertifiedStable.name() || v.gd != "stable"
            })
        })
        .map(|row| format!("B = {}", row.batch))
        .collect();
    if let Some(m) = &doc.marker
        && m.verdict != Verdict::CertifiedStable.name()
        && !out.contains(&format!("B = {}", m.batch))
    {
        out.push(format!("B = {} (trained)", m.batch));
    }
    out
}

/// `flatcert stability`. Exit 0 when every verdict at η (each row and the trained point) is
/// certified stable, or when there is no η (brackets only); 1 when one is certified unstable or
/// inconclusive (DESIGN.md §4: computed, but not certified) — the outputs are written either way.
pub fn run(args: &StabilityArgs) -> Result<i32> {
    let (doc, plot) = stability_document(args)?;
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
