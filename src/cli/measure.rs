//! `flatcert measure`: the flags → a [`MeasurePlan`] → [`flatcert::measure()`] → the quantity
//! table on stdout and the JSON document → exit code 0.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::measure::document::MeasurePlan;
use flatcert::measure::lanczos::{DEFAULT_DELTA, DEFAULT_MAX_PRODUCTS};
use flatcert::measurements::quantity_table;

use super::inputs::InputArgs;

/// Arguments of `flatcert measure`.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Orders k of the moments (comma-separated, each ≥ 1).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub k: Vec<u32>,
    /// Write the measurements document (JSON) here, atomically.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Samples per block of the streaming engine.
    #[arg(long, default_value_t = 128)]
    pub block: usize,
    /// Largest nC for the exact Gram path of the curvature quantities (nC × nC matrix and its
    /// eigendecomposition); above it the operator path (Lanczos) is used.
    #[arg(long = "gram-limit", default_value_t = 4096)]
    pub gram_limit: usize,
    /// Skip the curvature quantities (Gram/operator path and Hessian).
    #[arg(long = "no-curvature")]
    pub no_curvature: bool,
    /// Failure probability δ of `gauss_newton_lambda_max_upper` on the operator path (THEORY §3
    /// item 8): the upper bound holds with probability ≥ 1 − δ over the seeded Gaussian start.
    #[arg(long, default_value_t = DEFAULT_DELTA)]
    pub delta: f64,
    /// Cap on the operator products of that bound (it stops earlier once within 1e-3 of the top
    /// Ritz value).
    #[arg(long = "max-products", default_value_t = DEFAULT_MAX_PRODUCTS)]
    pub max_products: usize,
    /// Seed of the Gaussian Lanczos start (reported with the bound).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cap on the Hessian-vector products of each Hessian diagnostic (λ_max(H), λ_min(H),
    /// ‖H − G‖₂; only with targets and a nonzero residual); 0 skips them. Default: 40, fewer
    /// for big problems so that the three together cost about as much as 100 products at
    /// nP = 3·10⁹ (the result only depends on the shapes, never on timing).
    #[arg(long = "hessian-products")]
    pub hessian_products: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `flatcert measure`.
pub fn run(args: &MeasureArgs) -> Result<i32> {
    let mut plan = MeasurePlan {
        k: args.k.clone(),
        block: args.block,
        gram_limit: args.gram_limit,
        curvature: !args.no_curvature,
        delta: args.delta,
        max_products: args.max_products,
        seed: args.seed,
        hessian_products: args.hessian_products,
        memory_limit: None,
        quiet: args.quiet,
    }
    .build()?;
    plan.memory_limit = Some(args.inputs.memory_limit()?);
    let doc = match args.inputs.load_any(false)? {
        flatcert::problem::Loaded::Dense(problem) => flatcert::measure(&problem, &plan)?,
        flatcert::problem::Loaded::Layered(problem) => {
            flatcert::measure::layered::measure_document(&problem, &plan)?
        }
    };
    let i = &doc.inputs;
    println!(
        "flatcert measure — model {} ({}), data {} (n = {})",
        i.model.path,
        i.network_label(),
        i.x.path,
        i.n
    );
    print!("{}", quantity_table(&doc.quantities));
    for note in &doc.notes {
        println!("note: {note}");
    }
    if let Some(path) = &args.json {
        let text = doc.to_json()?;
        flatcert::io::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(0)
}
