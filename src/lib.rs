//! # flatcert
//!
//! Certify trained neural-network checkpoints with the linear-stability theory of SGD
//! (THEORY.md). A minimum that SGD with learning rate η and batch size B can *stay* at has
//! bounded curvature and bounded higher moments of the per-sample gradients; because the first
//! layer computes `Wx + b`, the same numbers bound the gradient of the model with respect to its
//! input. flatcert measures those numbers on a checkpoint and its data, each labelled exact,
//! rigorous bound or estimate, and checks every theorem's hypotheses with margins.
//!
//! Layers (DESIGN.md §1), one direction, no back-edges:
//! - [`model`]: the dense MLP and its batched passes (GEMMs);
//! - [`io`]: safetensors checkpoints, `.npy`/`.csv` data, measurement files;
//! - [`measure`]: per-sample statistics, spectra, stability operators, Lipschitz bounds;
//! - `flatcert_bounds`: the theorems as pure functions on numbers.

#![warn(missing_docs)]

pub mod certify;
pub mod data;
pub mod error;
pub mod example;
pub mod io;
pub mod linalg;
pub mod measure;
pub mod measurements;
pub mod model;
pub mod net;
pub mod plot;
pub mod quantity;
pub mod report;
pub mod simulate;
#[doc(hidden)]
pub mod testutil;
pub mod train;

pub use data::Dataset;
pub use error::{Error, Result};
pub use model::{Activation, Dense, Mlp};
pub use quantity::{Kind, Quantity};
