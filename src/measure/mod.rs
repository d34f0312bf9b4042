//! Measurements of a checkpoint on its data, one module per quantity (README.md, "Architecture"). Each
//! returns [`crate::Quantity`] values that say whether they are exact, bounds or estimates, under
//! the canonical names documented in `docs/measurements.md`.

use std::collections::BTreeMap;

use crate::quantity::Quantity;

pub mod document;
pub mod first_order;
pub mod forward_error;
pub mod gram;
pub mod hvp;
pub mod kmoment;
pub mod lanczos;
pub mod layered;
pub mod lipschitz;
pub mod names;
pub mod per_sample;
pub mod robustness;
pub mod stability;
pub mod truncation;

/// Measured quantities keyed by their canonical name (e.g. `train_loss`, `param_grad_moment_k2`).
pub type QuantityMap = BTreeMap<String, Quantity>;
