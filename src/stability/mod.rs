//! The stability sweep (the library behind `flatcert stability`): the critical learning rates of SGD per batch size (THEORY.md T4, T5, T6)
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

//!
//! Entry point: [`sweep`] on a [`Subject`] (a dense [`crate::problem::Problem`] or a layered
//! [`crate::problem::NetProblem`]) and a [`SweepPlan`] gives a [`StabilityReport`]
//! (the JSON document and the figure's data); [`render_table`], [`to_json`] and
//! [`not_certified`] render it.

use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::measurements::MeasurementInputs;
use crate::render::figures::stability::StabilityPlot;
use flatcert_bounds::Confidence;

pub mod cost;
mod document;
pub mod plan;
mod render;
mod scale;
mod subject;

pub use document::{residual_info, stability_document, verdict_of};
pub use plan::{SweepPlan, resolve_eta};
pub use render::{not_certified, render_table, to_json};
pub use subject::Subject;

/// Schema identifier of the stability document.
pub const STABILITY_SCHEMA: &str = "flatcert.stability/v1";

/// Largest r for which the exact 𝒬_k of T6 is attempted (issue 3: "r ≤ 12, k = 4").
pub const K_MOMENT_MAX_RANK: usize = 12;

/// Work limit (batches × dim(Sym^k)² × k!) of the exact 𝒬_k in this command, well below the
/// library's hard limit so that the table stays interactive.
pub const K_MOMENT_WORK_LIMIT: f64 = 4e9;

/// Cone steps assumed by the time estimate for a tight `--rel-tol` (the plain steps, then a
/// Lanczos restart worth about 10 more) and for a loose one (≥ 1e-2).
pub(crate) const TYPICAL_CONE_STEPS: usize = 40;
pub(crate) const TYPICAL_LOOSE_STEPS: usize = 12;

/// Default `--rel-tol`: brackets of η*(B) to 0.1%, reached in seconds on the bundled example
/// (1e-6 would need the full rank of K, minutes per batch size).
pub const DEFAULT_REL_TOL: f64 = 1e-3;

/// Default `--t5-rank`: the rank of every bracket (certify searches up to a larger cap, because
/// it needs one verdict, not a bracket per batch size).
pub const DEFAULT_T5_RANK: usize = crate::certify::plan::DEFAULT_BRACKET_T5_RANK;

/// Default `--refine-rank`: the rank cap of the second attempt at a verdict at η that was
/// inconclusive at `--t5-rank` (a 4× smaller truncation allowance at a cost of up to ≈ 16× per
/// batch size, only for those rows).
pub const DEFAULT_REFINE_RANK: usize = 1024;

/// A refinement expected to take longer than this (seconds, from [`step_seconds`]) is skipped
/// and the note says how to run it (`--refine-rank`, `--t5-rank`).
pub(crate) const REFINE_SECONDS_LIMIT: f64 = 300.0;

/// Fraction of the available memory a Gram run may use by default (`--max-memory`).
pub use crate::memory::SAFE_MEMORY_FRACTION;

/// Print the memory and time estimate before a run that is expected to take at least this long
/// (seconds) or to use at least [`ANNOUNCE_BYTES`].
pub(crate) const ANNOUNCE_SECONDS: f64 = 2.0;
pub(crate) const ANNOUNCE_BYTES: usize = 256 << 20;

/// What [`sweep`] returns: the stability document and the data of its (B, η) figure
/// ([`crate::render::figures::stability::stability_svg`]).
#[derive(Debug, Clone)]
pub struct StabilityReport {
    /// The document (`flatcert.stability/v1`).
    pub doc: StabilityDoc,
    /// The figure's data.
    pub plot: StabilityPlot,
}

/// The critical learning rates η*(B) of every batch size of `plan` on `problem` — a dense MLP
/// ([`crate::problem::Problem`]) or a layered network ([`crate::problem::NetProblem`]) — (THEORY.md T4,
/// T5, T6) and the verdicts at η: the exact Gram path up to `plan.gram_limit`, the
/// matrix-free T5(i)/T5(g) brackets beyond. Fails with [`crate::Error::InvalidArgument`] naming
/// the plan's field when the plan is out of its domain.
pub fn sweep(problem: &dyn Subject, plan: &SweepPlan) -> Result<StabilityReport> {
    let (doc, plot) = stability_document(problem, plan)?;
    Ok(StabilityReport { doc, plot })
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
    /// At scale: the confidence of the row's certified verdicts, mean-square and GD, when one
    /// rests on the randomized λ_max(G) bound (THEORY §3 item 8).
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
    /// Hidden ReLU/leaky-ReLU units with |ẑ| ≤ e (the running forward bound): their activation
    /// pattern, hence the Jacobians behind K, is as computed (reported as a note).
    #[serde(skip)]
    pub near_kink_units: usize,
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
