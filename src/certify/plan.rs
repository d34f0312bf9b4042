//! The validated hyper-parameters of one certification (THEORY §0): the learning rate in the
//! theory convention, the batch model (n, B, sampling), the moment orders k, the robustness
//! radius ε and threshold τ, and the limits of the exact Gram path.

use serde::{Deserialize, Serialize};

use flatcert_bounds::minimum::Curvature;
use flatcert_bounds::{BatchModel, LrConvention, Sampling};

use crate::error::{Error, Result};
use crate::measurements::InputFile;

/// The convention the user's `--lr` is given in (THEORY §0 "Loss and learning-rate conversion").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrConventionName {
    /// ℓ_i = ½‖res_i‖² summed over outputs, averaged over the batch: η as given.
    #[default]
    Theory,
    /// PyTorch `MSELoss(reduction='mean')`: η = 2η_torch/C.
    TorchMse,
    /// PyTorch `MSELoss(reduction='sum')`: η = 2Bη_torch.
    TorchSum,
}

impl LrConventionName {
    /// Parse `theory`, `torch-mse` or `torch-sum`, the one set of names and aliases of every
    /// command's `--lr-convention` and of the checkpoint's `lr_convention` metadata (case and
    /// `_`/`-` ignored): `torch-mse` also as `torch-mean`, `torch`, `mse`, `pytorch-mse`;
    /// `torch-sum` also as `pytorch-sum`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().replace('_', "-").to_ascii_lowercase().as_str() {
            "theory" => Ok(Self::Theory),
            "torch-mse" | "torch-mean" | "torch" | "mse" | "pytorch-mse" => Ok(Self::TorchMse),
            "torch-sum" | "pytorch-sum" => Ok(Self::TorchSum),
            other => Err(Error::invalid_argument(
                "--lr-convention",
                format!("'{other}' is not one of theory, torch-mse, torch-sum"),
            )),
        }
    }

    /// `theory`, `torch-mse` or `torch-sum`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Theory => "theory",
            Self::TorchMse => "torch-mse",
            Self::TorchSum => "torch-sum",
        }
    }

    /// The bounds crate's convention for C outputs and batch size B.
    pub fn convention(&self, outputs: usize, batch: usize) -> LrConvention {
        match self {
            Self::Theory => LrConvention::Theory,
            Self::TorchMse => LrConvention::TorchMse { outputs },
            Self::TorchSum => LrConvention::TorchSum { batch },
        }
    }
}

/// Parse `without-replacement` (model S, the default; also `iid_subsets`) or
/// `with-replacement` (model S′; also `iid_with_replacement`).
pub fn parse_sampling(s: &str) -> Result<Sampling> {
    match s.replace('_', "-").to_ascii_lowercase().as_str() {
        "without-replacement" | "iid-subsets" | "subsets" | "s" => Ok(Sampling::WithoutReplacement),
        "with-replacement" | "iid-with-replacement" | "s'" => Ok(Sampling::WithReplacement),
        other => Err(Error::invalid_argument(
            "--sampling",
            format!("'{other}' is not one of without-replacement, with-replacement"),
        )),
    }
}

/// Parse `--curvature`: `exact` (the default: a certified negative eigenvalue of H fails the
/// certificate) or `gauss-newton` (also `gn`: the Gauss–Newton substitution is an assumed
/// hypothesis, listed with its size; `flatcert_bounds::minimum`).
pub fn parse_curvature(s: &str) -> Result<Curvature> {
    match s.replace('_', "-").to_ascii_lowercase().as_str() {
        "exact" | "hessian" => Ok(Curvature::Exact),
        "gauss-newton" | "gn" => Ok(Curvature::GaussNewton),
        other => Err(Error::invalid_argument(
            "--curvature",
            format!("'{other}' is not one of exact, gauss-newton"),
        )),
    }
}

/// `without_replacement` or `with_replacement`.
pub fn sampling_name(s: Sampling) -> &'static str {
    match s {
        Sampling::WithoutReplacement => "without_replacement",
        Sampling::WithReplacement => "with_replacement",
    }
}

/// Where the inputs came from and how they were loaded, so that `flatcert verify` can reload
/// them exactly (paths as given, or `<embedded:…>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The checkpoint.
    pub model: InputFile,
    /// The training inputs.
    pub x: InputFile,
    /// The training targets.
    pub y: Option<InputFile>,
    /// Held-out inputs (T8 coverage).
    #[serde(default)]
    pub test_x: Option<InputFile>,
    /// Held-out targets.
    #[serde(default)]
    pub test_y: Option<InputFile>,
    /// `--x-scale` applied to every input (1 if none).
    pub x_scale: f64,
    /// `--one-hot C` applied to integer labels.
    #[serde(default)]
    pub one_hot: Option<usize>,
    /// `--activation` as given (None: the checkpoint's metadata, else relu).
    #[serde(default)]
    pub activation_flag: Option<String>,
    /// Where the activation came from: `flag` (`--activation`), `metadata` (the checkpoint's
    /// `activation` key) or `default` (neither: relu assumed, and the notes say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_source: Option<String>,
    /// `--layers` as given.
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// True for the bundled digits example.
    pub embedded: bool,
}

/// The plan of one certification. Build it with [`Plan::new`] and adjust the public fields;
/// [`Plan::validate`] runs inside [`crate::certify::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The learning rate as given (`--lr`).
    pub lr: f64,
    /// The convention of `lr`.
    pub lr_convention: LrConventionName,
    /// Batch size B.
    pub batch: usize,
    /// Sampling model (S) or (S′).
    pub sampling: Sampling,
    /// Even moment orders k for T6/T7 (default 2, 4).
    pub ks: Vec<u32>,
    /// Robustness radius ε (> 0): T8–T10 are computed only when given.
    pub epsilon: Option<f64>,
    /// Label radius ε_y of T8's (D_ε) (default 0).
    pub epsilon_y: f64,
    /// Regression threshold τ for T9 (needed when the targets are not one-hot).
    pub tau: Option<f64>,
    /// Largest nC for the exact Gram path (default 4096).
    pub gram_limit: usize,
    /// Refuse the Gram path when its estimated peak memory exceeds this many bytes (default
    /// [`DEFAULT_MEMORY_LIMIT`]; the CLI's `--max-memory`, default 50% of the available memory).
    /// Not recorded in the certificate: it changes whether a run is refused, never its numbers.
    pub memory_limit_bytes: usize,
    /// Seed of every random choice (Lanczos start vectors, Hutchinson probes, T10 sample points).
    pub seed: u64,
    /// Random points of the ball at which T10's bound is confronted with Jacobian norms.
    pub t10_samples: usize,
    /// Bisection steps of the certified-radius search of T9 (0: no search).
    pub radius_steps: usize,
    /// Cap on the cone steps of the T5(h) bracket of λ_max(𝒟̃) (each costs O(nCr² + r³)).
    pub t5_steps: usize,
    /// Cap on the number r of eigenpairs of K kept for T5 (the rest enter the proven T5(f)
    /// truncation allowance).
    pub t5_rank: usize,
    /// Failure probability δ of the randomized λ_max(G) upper bound at scale (THEORY §3 item 8).
    pub delta: f64,
    /// Cap on the operator products of that bound.
    pub max_products: usize,
    /// `--curvature` (default exact): whether a certified negative eigenvalue of H fails the
    /// certificate, or the Gauss–Newton substitution is an assumed hypothesis (verdict `Min`).
    pub curvature: Curvature,
    /// Add the per-point section (T9 radii, T10 bounds per training point) to the certificate
    /// (`--per-point`; needs ε). Not recorded: it changes the document's size, never a number.
    pub per_point: bool,
    /// Where the inputs came from (recorded in the certificate; needed by `verify`).
    pub provenance: Option<Provenance>,
    /// Notes to carry into the certificate (e.g. where η and B were read from).
    pub notes: Vec<String>,
    /// What a near-kink unit does to the Jacobian-dependent verdicts (`--kinks`).
    pub kinks: KinksMode,
}

/// `--kinks`: how a hidden unit within its rigorous error bound of a kink (`|ẑ| ≤ e`, THEORY §3
/// item 1 and Rules) enters the verdicts that use the Jacobian at the training points (T1–T8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KinksMode {
    /// The activation pattern as computed is an assumed hypothesis (listed with N and the
    /// samples); the verdicts stand on it.
    #[default]
    Assume,
    /// A near-kink unit makes every Jacobian-dependent verdict inconclusive.
    Strict,
}

impl KinksMode {
    /// Parse `assume` or `strict`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "assume" => Ok(KinksMode::Assume),
            "strict" => Ok(KinksMode::Strict),
            other => Err(Error::invalid_argument(
                "--kinks",
                format!("'{other}' is not one of assume, strict"),
            )),
        }
    }
}

/// Default cap on the cone steps of the T5 bracket.
pub const DEFAULT_T5_STEPS: usize = 60;

/// Default cap on the rank kept for T5 in `certify`. Ranks 16, 32, …, up to the cap are tried in
/// increasing order until the verdict at η is decided (THEORY T5f truncation allowance), so a
/// large cap costs time only when η is close to η*: on the bundled example at η = 0.3, rank 256
/// leaves T5 inconclusive and rank 1024 certifies it (15 s instead of 9 s).
pub const DEFAULT_T5_RANK: usize = 1024;

/// Default rank of the η*(B) brackets of `flatcert stability` and `flatcert simulate`, which
/// compute one bracket per batch size at that rank (no search): the cost grows like r².
pub const DEFAULT_BRACKET_T5_RANK: usize = 256;

/// Default largest nC of the exact Gram path.
pub const DEFAULT_GRAM_LIMIT: usize = 4096;

/// Default memory limit of the library's [`Plan`]: 4 GiB (the CLI defaults to a fraction of the
/// available memory instead, `--max-memory`).
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

impl Plan {
    /// A plan with the defaults of the CLI: k = 2, 4, no ε, Gram path up to nC = 4096, seed 0.
    pub fn new(lr: f64, batch: usize) -> Self {
        Self {
            lr,
            lr_convention: LrConventionName::Theory,
            batch,
            sampling: Sampling::WithoutReplacement,
            ks: vec![2, 4],
            epsilon: None,
            epsilon_y: 0.0,
            tau: None,
            gram_limit: DEFAULT_GRAM_LIMIT,
            memory_limit_bytes: DEFAULT_MEMORY_LIMIT,
            seed: 0,
            t10_samples: 32,
            radius_steps: 8,
            t5_steps: DEFAULT_T5_STEPS,
            t5_rank: DEFAULT_T5_RANK,
            delta: crate::measure::lanczos::DEFAULT_DELTA,
            max_products: crate::measure::lanczos::DEFAULT_MAX_PRODUCTS,
            curvature: Curvature::Exact,
            per_point: false,
            provenance: None,
            notes: Vec::new(),
            kinks: KinksMode::Assume,
        }
    }

    /// η in the theory convention for C outputs (THEORY §0): η = lr, 2·lr/C or 2B·lr.
    pub fn eta(&self, outputs: usize) -> Result<f64> {
        let eta = self
            .lr_convention
            .convention(outputs, self.batch)
            .to_theory(self.lr)
            .map_err(|e| Error::invalid_argument("--lr", e.to_string()))?;
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::invalid_argument(
                "--lr",
                format!("η = {eta} in the theory convention is not a positive finite number"),
            ));
        }
        Ok(eta)
    }

    /// The batch model (n, B, sampling), validated.
    pub fn batch_model(&self, n: usize) -> Result<BatchModel> {
        BatchModel::new(n, self.batch, self.sampling)
            .map_err(|e| Error::invalid_argument("--batch", e.to_string()))
    }

    /// Validate every flag against the data: η finite > 0, 1 ≤ B (≤ n without replacement), each
    /// k even in 2..=64, ε > 0 and finite, ε_y ≥ 0, τ ≥ 0, gram limit ≥ 1, memory limit ≥ 1
    /// byte. Errors are
    /// [`Error::InvalidArgument`] naming the flag (exit code 2).
    pub fn validate(&self, n: usize, outputs: usize) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::invalid_argument(
                "--lr",
                format!("must be a positive finite number, got {}", self.lr),
            ));
        }
        if self.batch == 0 {
            return Err(Error::invalid_argument("--batch", "must be at least 1"));
        }
        if self.sampling == Sampling::WithoutReplacement && self.batch > n {
            return Err(Error::invalid_argument(
                "--batch",
                format!(
                    "B = {} exceeds n = {n}; sampling without replacement needs B <= n",
                    self.batch
                ),
            ));
        }
        self.eta(outputs)?;
        validate_even_ks(&self.ks)?;
        if let Some(e) = self.epsilon
            && !(e.is_finite() && e > 0.0)
        {
            return Err(Error::invalid_argument(
                "--epsilon",
                format!("must be a positive finite number, got {e}"),
            ));
        }
        if !(self.epsilon_y.is_finite() && self.epsilon_y >= 0.0) {
            return Err(Error::invalid_argument(
                "--epsilon-y",
                format!("must be a finite number >= 0, got {}", self.epsilon_y),
            ));
        }
        if let Some(t) = self.tau
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::invalid_argument(
                "--tau",
                format!("must be a finite number >= 0, got {t}"),
            ));
        }
        if self.gram_limit == 0 {
            return Err(Error::invalid_argument(
                "--gram-limit",
                "must be at least 1",
            ));
        }
        if self.memory_limit_bytes == 0 {
            return Err(Error::invalid_argument(
                "--max-memory",
                "must be more than 0 bytes",
            ));
        }
        if self.t5_steps == 0 {
            return Err(Error::invalid_argument("--t5-steps", "must be at least 1"));
        }
        if self.t5_rank == 0 {
            return Err(Error::invalid_argument("--t5-rank", "must be at least 1"));
        }
        crate::measure::lanczos::UpperBoundOptions {
            delta: self.delta,
            max_products: self.max_products,
            ..Default::default()
        }
        .validate()?;
        if self.radius_steps > 200 {
            return Err(Error::invalid_argument(
                "--radius-steps",
                "must be at most 200",
            ));
        }
        Ok(())
    }
}

/// Every k even and in 2..=64 (THEORY T6(e): odd k prove nothing), at least one.
pub fn validate_even_ks(ks: &[u32]) -> Result<()> {
    if ks.is_empty() {
        return Err(Error::invalid_argument(
            "--k",
            "give at least one even order k >= 2",
        ));
    }
    for &k in ks {
        let domain = flatcert_bounds::moments::KDomain::Certify;
        if !domain.contains(k) {
            return Err(Error::invalid_argument(
                "--k",
                format!(
                    "each k must be even and in {}..={} (T6/T7 need even k; odd k prove nothing), got {k}",
                    domain.min(),
                    domain.max()
                ),
            ));
        }
    }
    Ok(())
}

/// The hyper-parameters as recorded in the certificate (`hyper`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// η in the theory convention (ℓ_i = ½‖res_i‖² summed over outputs).
    pub eta: f64,
    /// The learning rate as given.
    pub lr_given: f64,
    /// The convention of `lr_given`.
    pub lr_convention: LrConventionName,
    /// The PyTorch `MSELoss()` (mean) learning rate equivalent to η: ηC/2.
    pub eta_torch_mse: f64,
    /// Batch size B.
    pub batch: usize,
    /// Number of samples n.
    pub n: usize,
    /// Number of parameters P.
    pub parameters: usize,
    /// Number of outputs C.
    pub outputs: usize,
    /// p of THEORY §0.
    pub p: f64,
    /// π = P(i ∈ ξ).
    pub pi: f64,
    /// Even moment orders k.
    pub k: Vec<u32>,
    /// `without_replacement` (model S) or `with_replacement` (model S′).
    pub sampling: String,
    /// The sampling model in words, with the per-epoch-reshuffling caveat.
    pub sampling_model: String,
    /// Robustness radius ε (T8–T10), if given.
    pub epsilon: Option<f64>,
    /// Label radius ε_y of T8.
    pub epsilon_y: f64,
    /// Regression threshold τ (T9), if given.
    pub tau: Option<f64>,
    /// Largest nC of the exact Gram path.
    pub gram_limit: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Random points of the ball checked against T10.
    pub t10_samples: usize,
    /// Bisection steps of the T9 radius search.
    pub radius_steps: usize,
    /// Cap on the cone steps of the T5 bracket.
    pub t5_steps: usize,
    /// Cap on the rank kept for T5.
    pub t5_rank: usize,
    /// Failure probability δ of the randomized λ_max(G) bound (operator path).
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Operator-product budget of that bound.
    #[serde(default = "default_max_products")]
    pub max_products: usize,
    /// `exact` or `gauss-newton` (`--curvature`; absent in older certificates: exact).
    #[serde(default)]
    pub curvature: Curvature,
    /// `--kinks`: `assume` (default; absent in older certificates) or `strict`.
    #[serde(default)]
    pub kinks: KinksMode,
    /// flatcert version that issued the certificate.
    pub flatcert_version: String,
}

fn default_delta() -> f64 {
    crate::measure::lanczos::DEFAULT_DELTA
}

fn default_max_products() -> usize {
    crate::measure::lanczos::DEFAULT_MAX_PRODUCTS
}

/// The sampling model sentence of the certificate and the report.
pub fn sampling_model_text(s: Sampling) -> String {
    let base = match s {
        Sampling::WithoutReplacement => {
            "model S: a fresh i.i.d. uniform batch of B distinct samples at every step"
        }
        Sampling::WithReplacement => {
            "model S': B i.i.d. uniform indices at every step (duplicates counted)"
        }
    };
    format!("{base}; per-epoch reshuffling is not covered")
}

impl Hyper {
    /// The record of `plan` for n samples, P parameters and C outputs (plan validated).
    pub fn of(plan: &Plan, n: usize, parameters: usize, outputs: usize) -> Result<Self> {
        let eta = plan.eta(outputs)?;
        let m = plan.batch_model(n)?;
        Ok(Self {
            eta,
            lr_given: plan.lr,
            lr_convention: plan.lr_convention,
            eta_torch_mse: eta * outputs as f64 / 2.0,
            batch: plan.batch,
            n,
            parameters,
            outputs,
            p: m.p(),
            pi: m.pi(),
            k: plan.ks.clone(),
            sampling: sampling_name(plan.sampling).into(),
            sampling_model: sampling_model_text(plan.sampling),
            epsilon: plan.epsilon,
            epsilon_y: plan.epsilon_y,
            tau: plan.tau,
            gram_limit: plan.gram_limit,
            seed: plan.seed,
            t10_samples: plan.t10_samples,
            radius_steps: plan.radius_steps,
            t5_steps: plan.t5_steps,
            t5_rank: plan.t5_rank,
            delta: plan.delta,
            max_products: plan.max_products,
            curvature: plan.curvature,
            kinks: plan.kinks,
            flatcert_version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    /// The sampling scheme.
    pub fn sampling(&self) -> Result<Sampling> {
        parse_sampling(&self.sampling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_convert_eta() {
        let mut p = Plan::new(1.0, 16);
        p.lr_convention = LrConventionName::TorchMse;
        assert_eq!(p.eta(10).unwrap(), 0.2);
        p.lr_convention = LrConventionName::TorchSum;
        assert_eq!(p.eta(10).unwrap(), 32.0);
        p.lr_convention = LrConventionName::Theory;
        assert_eq!(p.eta(10).unwrap(), 1.0);
        assert_eq!(
            LrConventionName::parse("torch_mse").unwrap(),
            LrConventionName::TorchMse
        );
        assert!(LrConventionName::parse("adam").is_err());
        for (alias, want) in [
            ("pytorch_mse", LrConventionName::TorchMse),
            ("Torch", LrConventionName::TorchMse),
            ("pytorch-sum", LrConventionName::TorchSum),
            (" theory ", LrConventionName::Theory),
        ] {
            assert_eq!(LrConventionName::parse(alias).unwrap(), want, "{alias}");
        }
    }

    #[test]
    fn validation_names_the_flag() {
        let bad = |f: &dyn Fn(&mut Plan), flag: &str| {
            let mut p = Plan::new(0.1, 2);
            f(&mut p);
            let e = p.validate(10, 1).unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
            assert_eq!(e.exit_code(), 2);
        };
        bad(&|p| p.lr = f64::NAN, "--lr");
        bad(&|p| p.lr = -1.0, "--lr");
        bad(&|p| p.batch = 11, "--batch");
        bad(&|p| p.batch = 0, "--batch");
        bad(&|p| p.ks = vec![3], "--k");
        bad(&|p| p.ks = vec![], "--k");
        bad(&|p| p.epsilon = Some(0.0), "--epsilon");
        bad(&|p| p.epsilon = Some(f64::INFINITY), "--epsilon");
        bad(&|p| p.tau = Some(-1.0), "--tau");
        bad(&|p| p.memory_limit_bytes = 0, "--max-memory");
        let mut p = Plan::new(0.1, 11);
        p.sampling = Sampling::WithReplacement;
        assert!(p.validate(10, 1).is_ok());
    }

    #[test]
    fn curvature_names_round_trip() {
        for c in [Curvature::Exact, Curvature::GaussNewton] {
            assert_eq!(parse_curvature(c.name()).unwrap(), c);
        }
        assert_eq!(parse_curvature("GN").unwrap(), Curvature::GaussNewton);
        let e = parse_curvature("newton").unwrap_err();
        assert!(e.to_string().contains("--curvature"), "{e}");
    }

    #[test]
    fn sampling_names_round_trip() {
        for s in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
            assert_eq!(parse_sampling(sampling_name(s)).unwrap(), s);
        }
        assert_eq!(
            parse_sampling("iid_subsets").unwrap(),
            Sampling::WithoutReplacement
        );
    }
}
