//! The measurement document (the library behind `flatcert measure`): numbers only — per-sample gradient moments, input gradients, first-layer
//! norms, losses and the T1/T2 checks, and the curvature quantities (THEORY.md T4, §3–§4: λ_max,
//! trace, Frobenius norm and top eigenvalues of the Gauss–Newton matrix; with targets and a
//! nonzero residual the Hessian's extreme eigenvalues, |tr H − tr G| and ‖H − G‖₂), each labelled
//! with its kind.
//!
//! Curvature path: the exact Gram path (the nC × nC matrix K, THEORY §4) when nC ≤ `--gram-limit`,
//! else the operator path (Lanczos on Gauss–Newton products; `gauss_newton_lambda_max` is then an
//! estimate whose tol is its error estimate, and `_lower` the rigorous side).

use super::names;
use crate::error::Result;
use crate::problem::Problem;

use crate::data::Dataset;
use crate::measure::QuantityMap;
use crate::measure::first_order::{first_layer_norms, first_order_quantities};
use crate::measure::gram::{GramOptions, GramSpectrum, gauss_newton_gram};
use crate::measure::hvp::{CurvatureOp, CurvatureOperator, OperatorOptions};
use crate::measure::lanczos::{
    DEFAULT_DELTA, DEFAULT_MAX_PRODUCTS, LanczosOptions, Target, UpperBoundOptions,
    gauss_newton_lambda_max_randomized, hessian_extreme, hessian_gn_difference_norm, hessian_trace,
};
use crate::measure::per_sample::{PerSampleOptions, per_sample_stats};
use crate::measure::stability::{ReducedModel, gd_critical_lr};
use crate::measurements::{MEASUREMENTS_SCHEMA, MeasurementsDoc};
use crate::model::Mlp;
use crate::quantity::{Quantity, round_down, round_up};

use crate::progress;

/// The parameters of [`measure_document`] (the library side of `flatcert measure`'s flags), with
/// the CLI's defaults ([`Default`]); [`MeasurePlan::validate`] names the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurePlan {
    /// Orders k of the moments (each in 1..=64).
    pub k: Vec<u32>,
    /// Samples per block of the streaming engine.
    pub block: usize,
    /// Largest nC for the exact Gram path of the curvature quantities.
    pub gram_limit: usize,
    /// Measure the curvature quantities (Gram/operator path and Hessian).
    pub curvature: bool,
    /// Failure probability δ of `gauss_newton_lambda_max_upper` on the operator path.
    pub delta: f64,
    /// Cap on the operator products of that bound.
    pub max_products: usize,
    /// Seed of the Gaussian Lanczos start.
    pub seed: u64,
    /// Cap on the Hessian-vector products of each Hessian diagnostic (`None`:
    /// [`hessian_product_cap`]'s default).
    pub hessian_products: Option<usize>,
    /// Memory limit in bytes (`None`: [`crate::memory::default_memory_limit`]).
    pub memory_limit: Option<usize>,
    /// No progress bar.
    pub quiet: bool,
}

impl Default for MeasurePlan {
    fn default() -> Self {
        MeasurePlan {
            k: vec![1, 2, 4],
            block: 128,
            gram_limit: 4096,
            curvature: true,
            delta: DEFAULT_DELTA,
            max_products: DEFAULT_MAX_PRODUCTS,
            seed: 0,
            hessian_products: None,
            memory_limit: None,
            quiet: false,
        }
    }
}

impl MeasurePlan {
    /// Checks that need no data: k in 1..=64, δ and the product cap, a positive block.
    pub fn validate(&self) -> Result<()> {
        crate::plan::check_k(flatcert_bounds::moments::KDomain::Measure, &self.k)?;
        // Bad delta / max_products are usage errors (exit 2) before any work.
        UpperBoundOptions {
            delta: self.delta,
            max_products: self.max_products,
            seed: self.seed,
            rel_gap: 1e-3,
        }
        .validate()?;
        if self.block == 0 {
            return Err(crate::Error::invalid_argument("block", "must be ≥ 1"));
        }
        Ok(())
    }

    /// The plan, validated.
    pub fn build(self) -> Result<Self> {
        self.validate()?;
        Ok(self)
    }

    /// The memory limit in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        crate::plan::memory_limit_bytes(self.memory_limit)
    }
}

/// Number of top eigenvalues of G reported on the Gram path.
pub const TOP_EIGENVALUES: usize = 5;

/// Default cap on the products of each Hessian diagnostic.
pub const HESSIAN_PRODUCTS: usize = 40;

/// Work budget (n·P·products) of the three Hessian diagnostics together when
/// `--hessian-products` is not given: 3·10¹¹, i.e. 100 products at n·P = 3·10⁹, about 5 min on
/// 2 cores (MNIST scale, n = 60,000, P ≈ 10⁶: 5 products each).
pub const HESSIAN_WORK_BUDGET: f64 = 3e11;

/// The product cap of each Hessian diagnostic: `requested`, else [`HESSIAN_PRODUCTS`] reduced so
/// that 3·cap·n·P ≤ [`HESSIAN_WORK_BUDGET`] (at least 4, the fewest that give Lanczos a
/// meaningful Ritz value). Deterministic: depends on the shapes only.
pub fn hessian_product_cap(requested: Option<usize>, n: usize, params: usize) -> usize {
    requested.unwrap_or_else(|| {
        let per = (n as f64) * (params as f64);
        let fit = (HESSIAN_WORK_BUDGET / (3.0 * per)).floor();
        (fit as usize).clamp(4, HESSIAN_PRODUCTS)
    })
}

/// Hutchinson probes for `hessian_gn_trace_difference` with a smooth activation.
const HUTCHINSON_PROBES: usize = 64;

/// What the curvature quantities need of a network and its data (dense MLP or layered, THEORY
/// §7(c)): the shapes, the exact Gram spectrum, its cost, and the operator.
pub trait CurvatureSource {
    /// The operator type.
    type Op<'a>: CurvatureOp
    where
        Self: 'a;
    /// Number of samples n.
    fn samples(&self) -> usize;
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// Number of parameters P.
    fn params(&self) -> usize;
    /// Whether targets are present.
    fn has_targets(&self) -> bool;
    /// The Gram path's memory need in bytes and a time estimate in seconds (for the notice).
    fn gram_cost(&self) -> (usize, f64);
    /// The exact Gram spectrum (THEORY §4).
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum>;
    /// The operator (caching the forward pass within `max_memory`/2).
    fn operator(&self, max_memory: usize) -> Result<Self::Op<'_>>;
}

/// A dense MLP and its data.
pub struct DenseSource<'d> {
    /// The network.
    pub mlp: &'d Mlp,
    /// The data.
    pub data: &'d Dataset,
}

impl CurvatureSource for DenseSource<'_> {
    type Op<'a>
        = CurvatureOperator<'a>
    where
        Self: 'a;
    fn samples(&self) -> usize {
        self.data.len()
    }
    fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }
    fn params(&self) -> usize {
        self.mlp.num_params()
    }
    fn has_targets(&self) -> bool {
        self.data.has_targets()
    }
    fn gram_cost(&self) -> (usize, f64) {
        let n = self.data.len();
        (
            crate::measure::gram::gram_memory_bytes(self.mlp, n),
            crate::stability::cost::gram_seconds_estimate(self.mlp, n),
        )
    }
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum> {
        gauss_newton_gram(self.mlp, self.data, opts)
    }
    fn operator(&self, max_memory: usize) -> Result<CurvatureOperator<'_>> {
        CurvatureOperator::new(
            self.mlp,
            self.data,
            OperatorOptions::within_memory(max_memory),
        )
    }
}

/// The curvature quantities of a dense MLP ([`curvature_quantities_of`]).
#[allow(clippy::too_many_arguments)]
pub fn curvature_quantities(
    mlp: &Mlp,
    data: &Dataset,
    gram_limit: usize,
    residual_nonzero: bool,
    hessian_products: usize,
    max_memory: usize,
    upper: &UpperBoundOptions,
    quiet: bool,
    notes: &mut Vec<String>,
) -> Result<QuantityMap> {
    curvature_quantities_of(
        &DenseSource { mlp, data },
        gram_limit,
        residual_nonzero,
        hessian_products,
        max_memory,
        upper,
        quiet,
        notes,
    )
}

/// The curvature quantities (THEORY.md T4, §3–§4; issue 3 items 1–4) of any network:
/// - nC ≤ `gram_limit`: the exact Gram path — `gauss_newton_lambda_max` (upper, Weyl) and
///   `_lower`, `gauss_newton_frobenius`, `gauss_newton_top_eigenvalue_{1..5}`, `gauss_newton_rank`,
///   `gauss_newton_discarded_mass`, `gd_critical_lr` = 2/λ_max (lower) and `_upper`;
/// - otherwise the operator path — `gauss_newton_lambda_max` (estimate, tol = Lanczos error
///   estimate), `_lower` (rigorous side), `gd_critical_lr` (estimate 2/ρ), `_upper` (2/lower);
/// - with targets and a nonzero residual: `hessian_lambda_max` (+ `_lower`), `hessian_lambda_min`
///   (+ `_upper`), `hessian_trace`, `hessian_gn_trace_difference` (exactly 0 for piecewise-linear
///   σ) and `hessian_gn_difference_norm` (estimate).
#[allow(clippy::too_many_arguments)]
pub fn curvature_quantities_of<S: CurvatureSource>(
    src: &S,
    gram_limit: usize,
    residual_nonzero: bool,
    hessian_products: usize,
    max_memory: usize,
    upper: &UpperBoundOptions,
    quiet: bool,
    notes: &mut Vec<String>,
) -> Result<QuantityMap> {
    let mut map = QuantityMap::new();
    let n = src.samples();
    let big_n = n.saturating_mul(src.outputs());
    let lanczos_opts = LanczosOptions::default();
    let mut op: Option<S::Op<'_>> = None;
    if big_n <= gram_limit {
        let (bytes, seconds) = src.gram_cost();
        if !quiet && (seconds >= 2.0 || bytes >= 256 << 20) {
            eprintln!(
                "Gram path: nC = {big_n}, memory ≈ {}, estimated time ≈ {}",
                crate::stability::cost::fmt_bytes(bytes),
                crate::stability::cost::fmt_seconds(seconds)
            );
        }
        let gram_opts = GramOptions {
            memory_limit_bytes: max_memory,
            ..GramOptions::default()
        };
        let spec = src.gram(&gram_opts)?;
        map.extend(spec.quantities(TOP_EIGENVALUES));
        map.extend(gd_critical_lr(&ReducedModel::from_spectrum(&spec), None));
    } else {
        let o = src.operator(max_memory)?;
        // No η here: the run ends when the bound is within `rel_gap` of the top Ritz value or at
        // the budget (THEORY §3 item 8).
        let spec = gauss_newton_lambda_max_randomized(&o, upper, |_, _| false)?;
        spec.insert_into(&mut map);
        let est = &spec.spectral;
        let (rho, lower) = (est.lanczos.rayleigh, est.bound.value);
        if rho > 0.0 {
            map.insert(
                names::GD_CRITICAL_LR.into(),
                Quantity::estimate(2.0 / rho, 2.0 * est.estimate.tol / (rho * rho))
                    .with_method("lanczos-T4")
                    .with_note("2/λ_max(G) from the Lanczos estimate (operator path)"),
            );
        }
        if lower > 0.0 {
            map.insert(
                names::GD_CRITICAL_LR_UPPER.into(),
                Quantity::upper(round_up(2.0 / lower), 0.0)
                    .with_method("lanczos-T4")
                    .with_note("2/lower(λ_max(G)): rigorous upper bound of η_GD*"),
            );
        }
        if spec.upper.value > 0.0 {
            let mut q = Quantity::lower(round_down(2.0 / spec.upper.value), 0.0)
                .with_method("lanczos-randomized-T4")
                .with_note(
                    "2/upper(λ_max(G)) with the randomized upper bound: a lower bound of η_GD* \
                     with the same confidence (THEORY §3 item 8)",
                );
            q.confidence = spec.upper.confidence;
            map.insert(names::GD_CRITICAL_LR_LOWER.into(), q);
        }
        map.insert(
            names::GAUSS_NEWTON_LANCZOS_PRODUCTS.into(),
            Quantity::exact(est.lanczos.products as f64, 0.0).with_note(format!(
                "operator products of the randomized λ_max(G) bound (budget --max-products {}, \
                 seed {}, δ = {:e})",
                upper.max_products, upper.seed, upper.delta
            )),
        );
        notes.push(format!(
            "nC = {big_n} > --gram-limit {gram_limit}: curvature from the operator path \
             (Lanczos from a Gaussian start, seed {}); gauss_newton_lambda_max is an estimate \
             (tol = its error estimate), _lower a rigorous lower bound and _upper an upper bound \
             with confidence 1 − {:e} (THEORY §3 item 8; {} products)",
            upper.seed, upper.delta, est.lanczos.products
        ));
        op = Some(o);
    }
    if src.has_targets() && residual_nonzero && hessian_products == 0 {
        notes.push(
            "Hessian diagnostics skipped (--hessian-products 0): the residual is not 0, so H \
             differs from G and every stability verdict made with G is a \"Gauss–Newton model\" \
             verdict (THEORY T5 (i))"
                .into(),
        );
    }
    if src.has_targets() && residual_nonzero && hessian_products > 0 {
        let op = match op {
            Some(o) => o,
            None => src.operator(max_memory)?,
        };
        let lanczos_opts = LanczosOptions {
            max_iter: hessian_products,
            ..lanczos_opts
        };
        if !quiet && hessian_products < HESSIAN_PRODUCTS {
            eprintln!(
                "Hessian diagnostics: at most {hessian_products} products each (n·P = {:.1e}; \
                 --hessian-products sets the cap)",
                (n as f64) * (src.params() as f64)
            );
        }
        notes.push(format!(
            "Hessian diagnostics (λ_max(H), λ_min(H), ‖H − G‖₂): Lanczos capped at \
             {hessian_products} products each; their error estimates say how far they got"
        ));
        hessian_extreme(&op, Target::Largest, &lanczos_opts)?.insert_into(
            &mut map,
            names::HESSIAN_LAMBDA_MAX,
            "lower",
        );
        hessian_extreme(&op, Target::Smallest, &lanczos_opts)?.insert_into(
            &mut map,
            names::HESSIAN_LAMBDA_MIN,
            "upper",
        );
        map.extend(hessian_trace(&op, HUTCHINSON_PROBES, 0)?);
        map.insert(
            names::HESSIAN_GN_DIFFERENCE_NORM.into(),
            hessian_gn_difference_norm(&op, &lanczos_opts)?,
        );
        if let Some(q) = map.get(names::HESSIAN_LAMBDA_MIN_UPPER)
            && q.value < 0.0
        {
            notes.push(format!(
                "λ_min(H) ≤ {:.3e} < 0 (certified up to the assumed product rounding): H is \
                 indefinite here — the residual is not 0, so this is not an exact minimum, and \
                 along that direction the linearized first-moment recursion grows for every η \
                 (THEORY T4 failure modes)",
                q.value
            ));
        }
        notes.push(
            "the residual is not 0: the Hessian H differs from the Gauss–Newton matrix G; every \
             stability verdict made with G is a \"Gauss–Newton model\" verdict (THEORY T5 (i))"
                .into(),
        );
    }
    Ok(map)
}

/// Run the measurement and build the document.
pub fn measure_document(loaded: &Problem, args: &MeasurePlan) -> Result<MeasurementsDoc> {
    args.validate()?;
    let max_memory = args.memory_limit_bytes();
    let (mlp, data) = (&loaded.mlp, &loaded.data);
    let pb = progress::bar(data.len() as u64, "per-sample", args.quiet);
    let opts = PerSampleOptions {
        block: args.block,
        ks: args.k.clone(),
        t1_points: 8,
    };
    let stats = per_sample_stats(mlp, data, &opts, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let norms = first_layer_norms(mlp)?;
    let mut quantities = first_order_quantities(mlp, &stats, &norms, &args.k);
    // What certify measures beyond this set (T1's scalar residual, row/column sums, tr G_W, the
    // weighted moments, (1/n)Σ(tr H_i)², (1/n)Σ‖H_i‖_F²): `flatcert bound` needs them for T3, T7
    // and T5's operator-path refutation.
    crate::certify::collect::extra_first_order(&mut quantities, mlp, data, &stats, &norms, &args.k);
    let mut notes = Vec::new();
    if args.curvature {
        let residual_nonzero = quantities
            .get(names::MAX_ABS_RESIDUAL)
            .is_some_and(|q| q.value > 0.0);
        let curvature = curvature_quantities(
            mlp,
            data,
            args.gram_limit,
            residual_nonzero,
            hessian_product_cap(args.hessian_products, data.len(), mlp.num_params()),
            max_memory,
            &UpperBoundOptions {
                delta: args.delta,
                max_products: args.max_products,
                seed: args.seed,
                rel_gap: 1e-3,
            },
            args.quiet,
            &mut notes,
        )?;
        for (name, q) in curvature {
            // The per-sample `gauss_newton_trace` (same number, exact) is kept.
            quantities.entry(name).or_insert(q);
        }
    }
    if let Some(d) = stats.near_kink_description(mlp.activation()) {
        notes.push(format!("{d} (THEORY §3 Rules)"));
    }
    if let (Some(lr), Some(batch)) = (loaded.metadata.get("lr"), loaded.metadata.get("batch")) {
        notes.push(format!(
            "checkpoint metadata: trained with η = {lr} ({}), B = {batch}, sampling {}",
            loaded
                .metadata
                .get("lr_convention")
                .map_or("convention not stated", String::as_str),
            loaded
                .metadata
                .get("sampling")
                .map_or("not stated", String::as_str)
        ));
    }
    notes.extend(loaded.default_activation_notes());
    if loaded.embedded {
        notes.push(
            "bundled example: digits (UCI, CC BY 4.0), x scaled by 1/16, labels one-hot".into(),
        );
    }
    Ok(MeasurementsDoc {
        schema: MEASUREMENTS_SCHEMA.into(),
        inputs: loaded.measurement_inputs(&args.k),
        notes,
        quantities,
    })
}
