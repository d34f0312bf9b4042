//! The parameters of a stability sweep ([`SweepPlan`], validated before any computation) and
//! the learning rate of its verdicts ([`resolve_eta`]).

use super::{DEFAULT_REFINE_RANK, DEFAULT_REL_TOL, DEFAULT_T5_RANK, EtaInfo};
use crate::certify::LrConventionName;
use crate::error::{Error, Result};
use crate::measure::stability::Sampling;
use crate::problem::Source;

/// The parameters of [`super::sweep`] (the library side of `flatcert stability`'s flags). Every
/// field has the CLI's default ([`Default`]); [`SweepPlan::validate`] (also run by
/// [`super::sweep`]) checks the domains and names the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    /// Batch sizes B. `None`: 1, 2, 4, … up to n, and n.
    pub batch: Option<Vec<usize>>,
    /// Learning rate η of the verdicts and the plot marker, in `lr_convention`. `None`: the
    /// checkpoint's training η from its metadata, if any.
    pub lr: Option<f64>,
    /// Convention of `lr` (`None`: theory).
    pub lr_convention: Option<LrConventionName>,
    /// Even orders k ≥ 2 of the moment critical rates (k = 2 is η*(B) itself).
    pub k: Vec<u32>,
    /// Batch sampling scheme. `None`: the checkpoint's (metadata), else without-replacement.
    pub sampling: Option<Sampling>,
    /// Largest nC for the exact Gram path (THEORY T5(f)); above it, T5(i) and T5(g).
    pub gram_limit: usize,
    /// Relative rank threshold τ of K (THEORY T5e).
    pub tau: f64,
    /// Target relative width of each η* bracket (THEORY T5h).
    pub rel_tol: f64,
    /// Cap on the cone steps of each η* bracket (THEORY T5h).
    pub max_steps: usize,
    /// Cap on the eigenpairs of K kept for η*(B) (THEORY T5f).
    pub t5_rank: usize,
    /// Rank cap of the second attempt at an inconclusive verdict (0 or ≤ `t5_rank`: never).
    pub refine_rank: usize,
    /// Failure probability δ of the randomized λ_max(G) bound beyond `gram_limit` (§3 item 8).
    pub delta: f64,
    /// Cap on the operator products of that bound.
    pub max_products: usize,
    /// Seed of the Gaussian Lanczos start of that bound.
    pub seed: u64,
    /// Memory limit in bytes of the large allocations. `None`:
    /// [`crate::memory::default_memory_limit`].
    pub memory_limit: Option<usize>,
    /// No progress bar and no estimate lines on stderr.
    pub quiet: bool,
}

impl Default for SweepPlan {
    fn default() -> Self {
        SweepPlan {
            batch: None,
            lr: None,
            lr_convention: None,
            k: vec![2, 4],
            sampling: None,
            gram_limit: 4096,
            tau: 1e-12,
            rel_tol: DEFAULT_REL_TOL,
            max_steps: 100,
            t5_rank: DEFAULT_T5_RANK,
            refine_rank: DEFAULT_REFINE_RANK,
            delta: crate::measure::lanczos::DEFAULT_DELTA,
            max_products: crate::measure::lanczos::DEFAULT_MAX_PRODUCTS,
            seed: 0,
            memory_limit: None,
            quiet: false,
        }
    }
}

impl SweepPlan {
    /// These batch sizes.
    pub fn batches(mut self, batches: Vec<usize>) -> Self {
        self.batch = Some(batches);
        self
    }

    /// Verdicts at η = `lr` in `convention`.
    pub fn lr(mut self, lr: f64, convention: LrConventionName) -> Self {
        self.lr = Some(lr);
        self.lr_convention = Some(convention);
        self
    }

    /// These moment orders k.
    pub fn k(mut self, k: Vec<u32>) -> Self {
        self.k = k;
        self
    }

    /// This sampling scheme.
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = Some(sampling);
        self
    }

    /// Target relative width of the η* brackets.
    pub fn rel_tol(mut self, rel_tol: f64) -> Self {
        self.rel_tol = rel_tol;
        self
    }

    /// Quiet (no progress bar, no estimates on stderr).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The plan, validated ([`SweepPlan::validate`]).
    pub fn build(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// The memory limit in bytes: `memory_limit`, else the default fraction of the available
    /// memory.
    pub fn memory_limit_bytes(&self) -> usize {
        crate::plan::memory_limit_bytes(self.memory_limit)
    }

    /// Validate the arguments that do not need the data: η finite and positive, k even in 2..=16,
    /// τ in [0, 1), a positive Gram limit, … (errors name the field).
    pub fn validate(&self) -> Result<()> {
        let args = self;
        if args.lr_convention == Some(LrConventionName::TorchSum)
            && args.batch.as_ref().is_none_or(|b| b.len() != 1)
        {
            return Err(invalid(
                "lr_convention",
                "torch-sum gives η = 2B·η_torch, which depends on B: give exactly one --batch",
            ));
        }
        crate::plan::check_lr(args.lr)?;
        crate::plan::check_k(flatcert_bounds::moments::KDomain::Stability, &args.k)?;
        if args.tau.is_nan() || !(0.0..1.0).contains(&args.tau) {
            return Err(invalid(
                "tau",
                format!("must lie in [0, 1), got {}", args.tau),
            ));
        }
        if !(args.rel_tol.is_finite() && args.rel_tol > 0.0 && args.rel_tol < 1.0) {
            return Err(invalid(
                "rel_tol",
                format!("must lie in (0, 1), got {}", args.rel_tol),
            ));
        }
        if args.t5_rank == 0 {
            return Err(invalid("t5_rank", "must be at least 1"));
        }
        if args.max_steps == 0 {
            return Err(invalid("max_steps", "must be ≥ 1"));
        }
        crate::measure::lanczos::UpperBoundOptions {
            delta: args.delta,
            max_products: args.max_products,
            seed: args.seed,
            rel_gap: 1e-4,
        }
        .validate()?;
        if args.gram_limit == 0 {
            return Err(invalid("gram_limit", "must be ≥ 1"));
        }
        if let Some(b) = &args.batch {
            if b.is_empty() {
                return Err(invalid("batch", "give at least one batch size"));
            }
            if let Some(z) = b.iter().find(|&&b| b == 0) {
                return Err(invalid(
                    "batch",
                    format!("batch sizes must be ≥ 1, got {z}"),
                ));
            }
        }
        Ok(())
    }
}

/// A usage error (exit 2 in the CLI) naming the plan's field.
fn invalid(name: &str, message: impl Into<String>) -> Error {
    Error::invalid_argument(name, message)
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
pub fn resolve_eta(
    args: &SweepPlan,
    loaded: &dyn super::Subject,
    notes: &mut Vec<String>,
) -> (Option<EtaInfo>, Option<usize>) {
    let c = loaded.outputs();
    let info = |theory: f64, source: String| EtaInfo {
        theory,
        torch_mse: theory * c as f64 / 2.0,
        source,
    };
    if let Some(lr) = args.lr {
        // torch-sum's single batch size is checked by SweepPlan::validate.
        let conv = args.lr_convention.unwrap_or_default();
        let batch = args.batch.as_ref().and_then(|b| b.first().copied());
        let eta = to_theory(lr, conv, c, batch)
            .map(|eta| info(eta, format!("--lr {lr} ({})", conv.name())));
        return (eta, None);
    }
    let md = loaded.metadata();
    let hyper = loaded.metadata_hyper();
    let lr_text = md.get("lr").map_or("", String::as_str);
    let lr = match hyper.lr {
        Source::Missing => return (None, None),
        Source::Metadata(v) if v.is_finite() && v > 0.0 => v,
        Source::Given(_) | Source::Metadata(_) | Source::Unusable(_) => {
            notes.push(format!(
                "checkpoint metadata lr = '{lr_text}' is not a positive number: no verdicts"
            ));
            return (None, None);
        }
    };
    let conv_text = md.get("lr_convention").map_or("", String::as_str);
    let conv = match hyper.lr_convention {
        Source::Given(c) | Source::Metadata(c) => c,
        Source::Missing | Source::Unusable(_) => {
            notes.push(format!(
                "checkpoint metadata lr = {lr} has an unknown convention '{conv_text}': no verdicts \
                 (give --lr and --lr-convention)"
            ));
            return (None, None);
        }
    };
    let batch = hyper.batch.value();
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
pub(crate) fn default_batches(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |b| b.checked_mul(2))
        .take_while(|&b| b < n)
        .collect();
    v.push(n);
    v
}
