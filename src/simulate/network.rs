//! What a simulation needs of a network (THEORY.md §0, T4–T6; §7(c) for layered networks): one
//! trait, [`SimNetwork`], implemented for the dense [`Mlp`] (its fast engine, THEORY.md §4) and
//! for a layered [`crate::net::Sequential`] ([`super::layered`]), so that the linearized
//! recursion, true SGD, the residual forcing, the predictions and the session run one code path
//! for both.
//!
//! - parameter vectors are the network's own [`Tangent`] type ([`Params`] for an MLP, the flat θ
//!   of [`crate::net::Sequential::params`] for a layered network), so the dense path keeps its
//!   exact arithmetic;
//! - [`SimNetwork::linearize`] caches the forward pass of all samples for the matrix-free
//!   recursion ([`super::Linearization`]: one JVP and one VJP on the `B` sampled samples per step);
//! - [`SimNetwork::batch_gradient`] is one plain SGD step's gradient `(1/B)Σ_{i∈ξ}∇ℓ_i`, the one
//!   of the trainers (`train::train` for an MLP, `train::net` for a layered network);
//! - [`SimNetwork::gram`] is the exact Gram spectrum the predictions are computed from.

use nalgebra::DMatrix;

use super::linearized::{Linearization, LinearizedSgd};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::gram::{GramOptions, GramSpectrum, gauss_newton_gram};
use crate::model::{Mlp, Params};

/// A parameter-space vector of a network (θ, a direction `u`, a gradient).
pub trait Tangent: Clone + Send + Sync {
    /// `‖v‖₂` over all parameters.
    fn norm(&self) -> f64;
    /// `v ← α·v`.
    fn scale(&mut self, alpha: f64);
    /// `v ← v + α·x`.
    fn axpy(&mut self, alpha: f64, x: &Self);
    /// `⟨v, w⟩`.
    fn dot(&self, other: &Self) -> f64;
    /// `‖v − w‖₂`.
    fn distance(&self, other: &Self) -> f64;
    /// The entries in THEORY.md §0 order (each weight row-major, then its bias).
    fn to_flat(&self) -> Vec<f64>;
}

impl Tangent for Params {
    fn norm(&self) -> f64 {
        Params::norm(self)
    }
    fn scale(&mut self, alpha: f64) {
        Params::scale(self, alpha);
    }
    fn axpy(&mut self, alpha: f64, x: &Self) {
        Params::axpy(self, alpha, x);
    }
    fn dot(&self, other: &Self) -> f64 {
        Params::dot(self, other)
    }
    fn distance(&self, other: &Self) -> f64 {
        self.layers
            .iter()
            .zip(&other.layers)
            .map(|(x, y)| {
                (&x.weight - &y.weight).norm_squared() + (&x.bias - &y.bias).norm_squared()
            })
            .sum::<f64>()
            .sqrt()
    }
    fn to_flat(&self) -> Vec<f64> {
        Params::to_flat(self)
    }
}

impl Tangent for Vec<f64> {
    fn norm(&self) -> f64 {
        self.dot(self).sqrt()
    }
    fn scale(&mut self, alpha: f64) {
        self.iter_mut().for_each(|v| *v *= alpha);
    }
    fn axpy(&mut self, alpha: f64, x: &Self) {
        self.iter_mut().zip(x).for_each(|(v, a)| *v += alpha * a);
    }
    fn dot(&self, other: &Self) -> f64 {
        self.iter().zip(other).map(|(a, b)| a * b).sum()
    }
    fn distance(&self, other: &Self) -> f64 {
        self.iter()
            .zip(other)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    }
    fn to_flat(&self) -> Vec<f64> {
        self.clone()
    }
}

/// What the simulation needs of a network at θ\* and its training data (module docs).
pub trait SimNetwork: Sized + Sync {
    /// Parameter vectors.
    type Vector: Tangent;
    /// The matrix-free linearized recursion on a cached forward pass.
    type Linear<'a>: Linearization<Vector = Self::Vector>
    where
        Self: 'a;

    /// Cache the forward pass of every sample of `data` for the linearized recursion, refused
    /// with an [`Error::InvalidArgument`] naming `--max-memory` above `limit_bytes`.
    fn linearize<'a>(&'a self, data: &Dataset, limit_bytes: usize) -> Result<Self::Linear<'a>>;
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// θ.
    fn theta(&self) -> Self::Vector;
    /// The same network at θ = `theta`; an error when a parameter is not finite (SGD diverged).
    fn at(&self, theta: &Self::Vector) -> Result<Self>;
    /// Check that `data` fits the network (input size, C outputs).
    fn check_data(&self, data: &Dataset) -> Result<()>;
    /// Full-data loss `ℒ = (1/n)Σ_i ½‖f(x_i) − y_i‖²` (THEORY.md §0).
    fn loss(&self, data: &Dataset) -> Result<f64>;
    /// `(1/B)Σ_{i∈ξ}∇ℓ_i(θ)` for the batch `xi` (duplicates counted): one plain SGD step's
    /// gradient, model (S) of THEORY.md §0.
    fn batch_gradient(&self, data: &Dataset, xi: &[usize]) -> Result<Self::Vector>;
    /// `(ℒ(θ), max_i‖res_i‖)`, `None` without targets.
    fn residuals(&self, data: &Dataset) -> Option<(f64, f64)>;
    /// The exact Gram spectrum of `K = (1/n)𝐉𝐉ᵀ` (THEORY.md §4, §7(c)).
    fn gram(&self, data: &Dataset, opts: &GramOptions) -> Result<GramSpectrum>;
    /// The per-sample Jacobians `J_i` (`C × P`, θ in THEORY.md §0 order), materialized: tiny
    /// problems and tests only (`O(nC·P)` memory).
    fn jacobians(&self, data: &Dataset) -> Result<Vec<DMatrix<f64>>>;
}

impl SimNetwork for Mlp {
    type Vector = Params;
    type Linear<'a> = LinearizedSgd<'a>;

    fn linearize<'a>(&'a self, data: &Dataset, limit_bytes: usize) -> Result<LinearizedSgd<'a>> {
        LinearizedSgd::with_memory_limit(self, data, limit_bytes)
    }
    fn outputs(&self) -> usize {
        self.output_dim()
    }
    fn theta(&self) -> Params {
        Params {
            layers: self.layers().to_vec(),
        }
    }
    fn at(&self, theta: &Params) -> Result<Mlp> {
        Mlp::new(theta.layers.clone(), self.activation())
    }
    fn check_data(&self, data: &Dataset) -> Result<()> {
        crate::problem::check_shapes(self, data)
    }
    fn loss(&self, data: &Dataset) -> Result<f64> {
        let mut total = 0.0;
        for (s, e) in data.blocks(256) {
            let out = self.forward(data.x_block(s, e));
            let y = data
                .y_block(s, e)
                .ok_or_else(|| Error::invalid_argument("--y", "true SGD needs targets y"))?;
            total += out
                .iter()
                .zip(y.iter())
                .map(|(o, t)| (o - t) * (o - t))
                .sum::<f64>();
        }
        Ok(0.5 * total / data.len() as f64)
    }
    fn batch_gradient(&self, data: &Dataset, xi: &[usize]) -> Result<Params> {
        let c = data
            .outputs()
            .ok_or_else(|| Error::invalid_argument("--y", "true SGD needs targets y"))?;
        let (d, b) = (data.dim(), xi.len());
        let mut x = DMatrix::zeros(d, b);
        let mut y = DMatrix::zeros(c, b);
        {
            let (xs, ys) = (x.as_mut_slice(), y.as_mut_slice());
            for (k, &i) in xi.iter().enumerate() {
                xs[k * d..(k + 1) * d].copy_from_slice(data.x_row(i));
                let row = data
                    .y_row(i)
                    .ok_or_else(|| Error::invalid_argument("--y", "true SGD needs targets y"))?;
                ys[k * c..(k + 1) * c].copy_from_slice(row);
            }
        }
        let cache = self.forward_cache(x.as_view());
        let cot = (cache.output() - &y) / b as f64;
        Ok(self.vjp_params(&cache, &cot))
    }
    fn residuals(&self, data: &Dataset) -> Option<(f64, f64)> {
        let mut total = 0.0f64;
        let mut max = 0.0f64;
        for (s, e) in data.blocks(256) {
            let out = self.forward(data.x_block(s, e));
            let y = data.y_block(s, e)?;
            let res = out - y;
            for col in res.column_iter() {
                let sq = col.norm_squared();
                total += sq;
                max = max.max(sq.sqrt());
            }
        }
        Some((0.5 * total / data.len() as f64, max))
    }
    fn gram(&self, data: &Dataset, opts: &GramOptions) -> Result<GramSpectrum> {
        gauss_newton_gram(self, data, opts)
    }
    fn jacobians(&self, data: &Dataset) -> Result<Vec<DMatrix<f64>>> {
        crate::problem::check_inputs(self, data)?;
        let (c, p) = (self.output_dim(), self.num_params());
        (0..data.len())
            .map(|i| {
                let cache = self.forward_cache(data.x_block(i, i + 1));
                let mut j = DMatrix::zeros(c, p);
                for out in 0..c {
                    let mut cot = DMatrix::zeros(c, 1);
                    cot[(out, 0)] = 1.0;
                    let row = self.vjp_params(&cache, &cot).to_flat();
                    for (col, v) in row.into_iter().enumerate() {
                        j[(out, col)] = v;
                    }
                }
                Ok(j)
            })
            .collect()
    }
}
