//! The parameters of a simulation ([`SimulatePlan`], validated before any computation) and
//! the η and B it runs at ([`resolve_hyper`]: the flags, else the checkpoint's metadata).

use std::collections::BTreeMap;

use super::PredictionOptions;
use crate::certify::LrConventionName;
use crate::error::{Error, Result};
use crate::measure::stability::BracketOptions;
use crate::problem::{Source, training_hyper};

/// At most this many recording times per trajectory (JSON, fits and plot).
pub(crate) const RECORD_POINTS: usize = 500;
/// The exact reduced curve `tr 𝒬_r^t(Σ_0)` is computed when `nC·r²·T` is at most this.
pub(crate) const EXACT_CURVE_BUDGET: f64 = 2e10;
/// `--predict auto` decides the verdict at η with at most this many eigenpairs of K, trying
/// ranks 16, 32, … in increasing order until it is decided (the rest enter the proven truncation
/// allowance): the policy and cap of `flatcert certify`, and of `flatcert stability`'s second
/// attempt (`--refine-rank`), so the three commands agree on a verdict at η.
pub(crate) const AUTO_T5_RANK: usize = crate::certify::plan::DEFAULT_T5_RANK;
/// `--predict auto`: relative width at which the η* cone bracket stops, and its step cap.
pub(crate) const AUTO_BRACKET_REL_TOL: f64 = 1e-3;
pub(crate) const AUTO_BRACKET_MAX_STEPS: usize = 60;
/// `--predict full`: relative width at which the η* cone bracket stops, and its step cap (the
/// bracket is certified at any width; at r = 2560 one step takes 10–35 s on 2 cores).
pub(crate) const FULL_BRACKET_REL_TOL: f64 = 1e-2;
pub(crate) const FULL_BRACKET_MAX_STEPS: usize = 12;
/// Escape thresholds of the true-SGD runs (issue 5: 10× the start distance, 100× the start loss).
pub(crate) const DISTANCE_FACTOR: f64 = 10.0;
pub(crate) const LOSS_FACTOR: f64 = 100.0;

/// Which predictions [`super::run`] computes next to the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PredictMode {
    /// The Gram path when nC ≤ 4096; the verdict at η decided on the top 16, 32, … up to 1024
    /// eigenpairs of K plus the proven truncation allowance, as `certify` does.
    #[default]
    Auto,
    /// A coarse certified η* bracket on every eigenpair of K.
    Full,
    /// No predictions.
    None,
}

impl PredictMode {
    /// Parse `auto`, `full` or `none` (case ignored).
    pub fn parse(mode: &str) -> Result<Self> {
        match mode.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(PredictMode::None),
            "auto" => Ok(PredictMode::Auto),
            "full" => Ok(PredictMode::Full),
            other => Err(invalid(
                "predict",
                format!("expected auto, full or none, got '{other}'"),
            )),
        }
    }

    /// `None` for [`PredictMode::None`], else the options of the prediction.
    pub fn options(&self) -> Option<PredictionOptions> {
        match self {
            PredictMode::None => None,
            PredictMode::Auto => Some(PredictionOptions {
                t5_rank: AUTO_T5_RANK,
                bracket: BracketOptions {
                    rel_tol: AUTO_BRACKET_REL_TOL,
                    max_steps: AUTO_BRACKET_MAX_STEPS,
                    ..BracketOptions::default()
                },
                ..PredictionOptions::default()
            }),
            PredictMode::Full => Some(PredictionOptions {
                // A coarse but certified bracket: the verdict only has to separate η from η*.
                bracket: BracketOptions {
                    rel_tol: FULL_BRACKET_REL_TOL,
                    max_steps: FULL_BRACKET_MAX_STEPS,
                    ..BracketOptions::default()
                },
                ..PredictionOptions::default()
            }),
        }
    }
}

/// The parameters of [`super::run`] (the library side of `flatcert simulate`'s flags), with the
/// CLI's defaults ([`Default`]); [`SimulatePlan::validate`] (also run by [`super::run`]) checks
/// the domains and names the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatePlan {
    /// Learning rate (in `lr_convention`). `None`: the checkpoint's training η (metadata).
    pub lr: Option<f64>,
    /// Convention of `lr` (`None`: theory, or the metadata's when `lr` comes from there).
    pub lr_convention: Option<LrConventionName>,
    /// Batch size B. `None`: the checkpoint's training B (metadata).
    pub batch: Option<usize>,
    /// Steps T of every run.
    pub steps: u64,
    /// Monte Carlo trials R of the linearized recursion.
    pub trials: usize,
    /// Moment orders k (even, 2..=8) whose growth rate E‖u_t‖^k is fitted.
    pub k: Vec<usize>,
    /// Seed of every ChaCha8 stream (starts, batches, bootstrap).
    pub seed: u64,
    /// Perturbation sizes δ of the true-SGD runs from θ* + δ·u_0 (‖u_0‖ = 1).
    pub deltas: Vec<f64>,
    /// Which predictions to compute.
    pub predict: PredictMode,
    /// Memory limit in bytes (`None`: [`crate::memory::default_memory_limit`]).
    pub memory_limit: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for SimulatePlan {
    fn default() -> Self {
        SimulatePlan {
            lr: None,
            lr_convention: None,
            batch: None,
            steps: 1000,
            trials: 32,
            k: vec![2, 4],
            seed: 0,
            deltas: vec![1e-3, 1e-2, 1e-1],
            predict: PredictMode::Auto,
            memory_limit: None,
            quiet: false,
        }
    }
}

impl SimulatePlan {
    /// At learning rate `lr` (in `convention`) and batch size `batch`.
    pub fn at(mut self, lr: f64, convention: LrConventionName, batch: usize) -> Self {
        self.lr = Some(lr);
        self.lr_convention = Some(convention);
        self.batch = Some(batch);
        self
    }

    /// T steps and R trials.
    pub fn steps(mut self, steps: u64, trials: usize) -> Self {
        self.steps = steps;
        self.trials = trials;
        self
    }

    /// These perturbation sizes δ.
    pub fn deltas(mut self, deltas: Vec<f64>) -> Self {
        self.deltas = deltas;
        self
    }

    /// This prediction mode.
    pub fn predict(mut self, mode: PredictMode) -> Self {
        self.predict = mode;
        self
    }

    /// Quiet (no progress bar).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The plan, validated ([`SimulatePlan::validate`]).
    pub fn build(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// The memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        crate::plan::memory_limit_bytes(self.memory_limit)
    }

    /// Checks that need no data (errors name the field).
    pub fn validate(&self) -> Result<()> {
        let args = self;
        crate::plan::check_lr(args.lr)?;
        if args.batch == Some(0) {
            return Err(invalid("batch", "must be ≥ 1, got 0"));
        }
        if args.steps == 0 || args.steps > 100_000_000 {
            return Err(invalid(
                "steps",
                format!("must lie in 1..=100000000, got {}", args.steps),
            ));
        }
        if args.trials == 0 || args.trials > 100_000 {
            return Err(invalid(
                "trials",
                format!("must lie in 1..=100000, got {}", args.trials),
            ));
        }
        // A k beyond u32 is out of the domain anyway (its message then names u32::MAX).
        let ks: Vec<u32> = args
            .k
            .iter()
            .map(|&k| u32::try_from(k).unwrap_or(u32::MAX))
            .collect();
        crate::plan::check_k(flatcert_bounds::moments::KDomain::Simulate, &ks)?;
        if args.deltas.is_empty() {
            return Err(invalid("deltas", "give at least one δ > 0"));
        }
        for &d in &args.deltas {
            if !(d.is_finite() && d > 0.0) {
                return Err(invalid(
                    "deltas",
                    format!("each δ must be finite and > 0, got {d}"),
                ));
            }
        }
        Ok(())
    }
}

/// A usage error (exit 2 in the CLI) naming the plan's field.
fn invalid(name: &str, msg: impl Into<String>) -> Error {
    Error::invalid_argument(name, msg)
}

/// η and B with where each came from.
pub struct LrAndBatch {
    /// η (theory convention).
    pub lr: f64,
    /// Where η came from.
    pub lr_source: &'static str,
    /// Batch size B.
    pub batch: usize,
    /// Where B came from.
    pub batch_source: &'static str,
}

/// η (converted to the theory convention from `--lr-convention` or the metadata's `lr_convention`)
/// and B from the flags or the checkpoint `metadata` (`lr`, `batch`), for a network with `c`
/// outputs (dense or layered: the same keys, [`crate::problem::training_hyper`]).
pub fn resolve_hyper(
    args: &SimulatePlan,
    metadata: &BTreeMap<String, String>,
    c: usize,
) -> Result<LrAndBatch> {
    let hyper = training_hyper(metadata, args.lr, args.lr_convention, args.batch);
    let batch = match hyper.batch {
        Source::Given(b) => (b, "--batch"),
        Source::Metadata(b) => (b, "checkpoint metadata"),
        Source::Missing => {
            return Err(invalid(
                "batch",
                "required: the checkpoint's metadata has no training batch size",
            ));
        }
        Source::Unusable(text) => {
            return Err(invalid(
                "batch",
                format!("required: the checkpoint's metadata batch = '{text}' is not a count"),
            ));
        }
    };
    let lr = match hyper.lr {
        Source::Given(lr) => (lr, "--lr"),
        Source::Metadata(lr) if !(lr.is_finite() && lr > 0.0) => {
            return Err(invalid(
                "lr",
                format!("required: the checkpoint's metadata lr = {lr} is not > 0"),
            ));
        }
        Source::Metadata(lr) => (lr, "checkpoint metadata"),
        Source::Missing => {
            return Err(invalid(
                "lr",
                "required: the checkpoint's metadata has no training learning rate",
            ));
        }
        Source::Unusable(text) => {
            return Err(invalid(
                "lr",
                format!("required: the checkpoint's metadata lr = '{text}' is not a number"),
            ));
        }
    };
    // One convention enum and one set of names for every command (THEORY §0): the caller's,
    // else the metadata's `lr_convention` when the lr came from the metadata, else theory.
    let conv = match hyper.lr_convention {
        Source::Given(c) | Source::Metadata(c) => c,
        Source::Unusable(text) => LrConventionName::parse(&text)?,
        Source::Missing => LrConventionName::Theory,
    };
    let eta = conv
        .convention(c, batch.0)
        .to_theory(lr.0)
        .map_err(|e| invalid("lr", e.to_string()))?;
    let lr = (eta, lr.1);
    Ok(LrAndBatch {
        lr: lr.0,
        lr_source: lr.1,
        batch: batch.0,
        batch_source: batch.1,
    })
}
