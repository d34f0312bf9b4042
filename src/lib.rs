//! # flatcert
//!
//! Certify trained neural-network checkpoints with the linear-stability theory of SGD
//! (THEORY.md). A minimum that SGD with learning rate η and batch size B can *stay* at has
//! bounded curvature and bounded higher moments of the per-sample gradients; because the first
//! layer computes `Wx + b`, the same numbers bound the gradient of the model with respect to its
//! input. flatcert measures those numbers on a checkpoint and its data, each labelled exact,
//! rigorous bound or estimate, and checks every theorem's hypotheses with margins.
//!
//! ## Library API
//!
//! Everything starts from a [`Problem`]: a validated network and its data ([`Problem::load`]
//! from files described by [`ProblemFiles`], or [`Problem::bundled`] for the digits example
//! compiled into the crate). A plan with the CLI's defaults says what to compute; one call
//! computes it:
//!
//! | entry point | plan | result |
//! |---|---|---|
//! | [`certify()`] (THEORY T1–T10) | [`CertifyPlan`] | [`Certificate`] |
//! | [`measure()`] (T1, T2, T4, §3–§4) | [`MeasurePlan`] | [`MeasurementsDoc`] |
//! | [`stability::sweep`] (η*(B): T4, T5, T6) | [`SweepPlan`] | [`StabilityReport`] |
//! | [`simulate::run`] (dynamics vs T4–T6) | [`SimulatePlan`] | [`SimulateDoc`] |
//!
//! Every fallible function returns [`Error`], which names the file, field or plan field at fault
//! (`#[non_exhaustive]`; [`Error::exit_code`] is the CLI's mapping).
//!
//! End to end: load the bundled example, certify it at its training η and B, read a verdict.
//!
//! ```
//! use flatcert::{CertifyPlan, Problem};
//!
//! let problem = Problem::bundled()?;
//! // The checkpoint was trained with η = 0.2 (theory convention) and B = 16 (its metadata).
//! let mut plan = CertifyPlan::new(0.2, 16);
//! plan.ks = vec![2];
//! let cert = flatcert::certify(&problem, &plan)?;
//! let t5 = cert.verdicts.verdict("T5").expect("T5 is always checked");
//! println!("T5 (mean-square stability at η): {:?}", t5.status());
//! assert_eq!(cert.summary.status, "certified");
//! # Ok::<(), flatcert::Error>(())
//! ```
//!
//! ## Layers
//!
//! One direction, no back-edges (docs/architecture.md):
//! - [`model`]: the dense MLP and its batched passes (GEMMs);
//! - [`io`]: safetensors checkpoints, `.npy`/`.csv` data, measurement files; [`problem`] on top;
//! - [`measure`](mod@measure): per-sample statistics, spectra, stability operators, Lipschitz bounds;
//! - `flatcert_bounds`: the theorems as pure functions on numbers;
//! - [`certify`](mod@certify), [`stability`], [`simulate`]: the pipelines behind the entry points;
//! - the `flatcert` binary (`src/cli/`): flags → plan → one library call → render → exit code.

#![warn(missing_docs)]

pub mod certify;
pub mod data;
pub mod error;
pub mod example;
pub mod io;
pub mod linalg;
pub mod measure;
pub mod measurements;
pub mod memory;
pub mod model;
pub mod net;
pub mod plan;
pub mod problem;
#[doc(hidden)]
pub mod progress;
pub mod quantity;
pub mod render;
pub mod report;
pub mod simulate;
pub mod stability;
#[doc(hidden)]
pub mod testutil;
pub mod train;

pub use data::Dataset;
pub use error::{Error, Result};
pub use model::{Activation, Dense, Mlp};
pub use problem::{Problem, ProblemFiles};

pub use certify::{Certificate, Plan as CertifyPlan};
pub use measure::document::MeasurePlan;
pub use measurements::MeasurementsDoc;
pub use simulate::{SimulateDoc, SimulatePlan};
pub use stability::{StabilityReport, SweepPlan};

/// Certify `problem` at the plan's (η, B) (THEORY.md T1–T10): measure, check every theorem's
/// hypotheses, and issue the certificate (its `summary` says certified or not, its `verdicts`
/// hold one verdict per theorem). For held-out data (T8) use [`certify::run`].
pub fn certify(problem: &Problem, plan: &CertifyPlan) -> Result<Certificate> {
    certify::run(&problem.mlp, &problem.data, None, plan)
}

/// Measure `problem` (THEORY.md T1, T2, T4, §3–§4): per-sample gradient moments, input
/// gradients, first-layer norms, losses and the curvature quantities, each labelled with its
/// kind (exact, upper, lower, estimate).
pub fn measure(problem: &Problem, plan: &MeasurePlan) -> Result<MeasurementsDoc> {
    measure::document::measure_document(problem, plan)
}
pub use quantity::{Kind, Quantity};
