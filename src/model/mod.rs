//! The network: [`Mlp`] of [`Dense`] layers with an [`Activation`], and its batched passes
//! (forward, backward for all outputs, JVP/VJP) as GEMMs (THEORY.md §4).

mod activation;
mod mlp;

pub use activation::Activation;
pub use mlp::{Dense, ForwardCache, Mlp, OutputDeltas, Params};

#[cfg(test)]
mod tests;
