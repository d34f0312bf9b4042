//! Layered (convolutional) networks, THEORY §7 (issue 14): the layer engine, the architecture
//! spec, per-sample moments, curvature (Gram, operator, R-op), interval bound propagation, SGD
//! training, and the commands on CNN checkpoints. One test binary (one link) for all of them.

#[path = "../common/mod.rs"]
mod common;

mod arch;
mod commands;
mod curvature;
mod ibp;
mod layers;
mod per_sample;
mod simulate;
mod stability;
mod train;
