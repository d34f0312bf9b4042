//! The simulation on a layered network (issue 14, THEORY.md §7(c): the linearization, T4–T6 and
//! plain SGD are the same for any architecture): [`SimNetwork`] for [`Sequential`] and its
//! matrix-free recursion [`LayeredLinearization`].
//!
//! - The recursion caches every layer's input for all n samples once (refused above the memory
//!   limit, as the dense cache); one step gathers the `B` sampled rows of every cached tensor and
//!   runs one forward-mode product `J_ξ u` ([`Sequential::jvp_params`]) and one reverse-mode
//!   product `J_ξᵀ(J_ξ u)` ([`Sequential::vjp_params`]): `O(B)` forward/backward work per step,
//!   no `P × P` matrix.
//! - True SGD steps exactly as [`crate::train::net`] does
//!   ([`crate::train::net::net_batch_loss_and_grad`], [`Sequential::with_params`]).
//! - The predictions read the Gram spectrum of [`crate::measure::layered::LayeredSource`]
//!   (materialized per-sample Jacobian rows, §7(e)); [`SimNetwork::jacobians`] materializes `J_i`
//!   by [`jacobian_block`] for the exact full-space 𝒬 on tiny problems.

use nalgebra::DMatrix;

use super::linearized::Linearization;
use super::network::SimNetwork;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::document::CurvatureSource;
use crate::measure::gram::{GramOptions, GramSpectrum};
use crate::measure::layered::{LayeredSource, input_tensor, layered_jacobian_rel_tol};
use crate::net::{NetCache, Sequential, Shape, Tensor, jacobian_block, net_forward_cache_bytes};
use crate::train::net::{check_net_data, net_batch_loss_and_grad, net_dataset_loss};

/// Samples per block of the cached forward pass and of the residuals.
const BLOCK: usize = 256;

/// A [`Error::Model`] from the layer engine (a model/data mismatch: exit code 2).
fn net_err(e: crate::net::NetError) -> Error {
    Error::Model(e.to_string())
}

/// Rows `xi` of `src` into `dst` (`xi.len()` rows of the same shape).
fn gather_rows(src: &Tensor, xi: &[usize], dst: &mut Tensor) {
    let len = src.row_len();
    for (k, &i) in xi.iter().enumerate() {
        dst.data[k * len..(k + 1) * len].copy_from_slice(src.row(i));
    }
}

/// The matrix-free linearized recursion of THEORY.md §0 on a [`Sequential`] network (module
/// docs), on a forward pass cached once for all n samples.
#[derive(Debug)]
pub struct LayeredLinearization<'a> {
    net: &'a Sequential,
    /// Every layer's input (and the output) for all n samples.
    all: NetCache,
}

impl<'a> LayeredLinearization<'a> {
    /// Cache the forward pass of every sample of `data` (flat rows in NCHW order). Fails when a
    /// row does not have the network's input size, or when the cache
    /// ([`net_forward_cache_bytes`]) exceeds `limit_bytes` (an [`Error::InvalidArgument`] naming
    /// `--max-memory`, the estimate and the limit).
    pub fn with_memory_limit(
        net: &'a Sequential,
        data: &Dataset,
        limit_bytes: usize,
    ) -> Result<Self> {
        let n = data.len();
        let x = input_tensor(net, data.x(), n)?;
        let bytes = net_forward_cache_bytes(net, n);
        if bytes > limit_bytes {
            return Err(super::linearized::cache_too_large(n, bytes, limit_bytes));
        }
        let mut inputs: Vec<Tensor> = net
            .shapes()
            .iter()
            .map(|&s| Tensor {
                batch: n,
                shape: s,
                data: Vec::with_capacity(n * s.len()),
            })
            .collect();
        let d = net.input_shape().len();
        for s in (0..n).step_by(BLOCK) {
            let e = (s + BLOCK).min(n);
            let block = Tensor {
                batch: e - s,
                shape: net.input_shape(),
                data: x.data[s * d..e * d].to_vec(),
            };
            let cache = net.forward_cache(&block).map_err(net_err)?;
            for (dst, src) in inputs.iter_mut().zip(&cache.inputs) {
                dst.data.extend_from_slice(&src.data);
            }
        }
        Ok(Self {
            net,
            all: NetCache { inputs },
        })
    }

    /// The network.
    pub fn net(&self) -> &Sequential {
        self.net
    }
}

impl Linearization for LayeredLinearization<'_> {
    type Vector = Vec<f64>;
    /// The gathered forward cache of one batch.
    type Workspace = NetCache;

    fn samples(&self) -> usize {
        self.all.batch_size()
    }
    fn outputs(&self) -> usize {
        self.net.output_dim()
    }
    fn workspace(&self, b: usize) -> NetCache {
        NetCache {
            inputs: self
                .net
                .shapes()
                .iter()
                .map(|&s| Tensor::zeros(b, s))
                .collect(),
        }
    }
    fn step_with(&self, ws: &mut NetCache, u: &mut Vec<f64>, xi: &[usize], eta: f64) -> Result<()> {
        if ws.batch_size() != xi.len() {
            *ws = self.workspace(xi.len());
        }
        for (dst, src) in ws.inputs.iter_mut().zip(&self.all.inputs) {
            gather_rows(src, xi, dst);
        }
        let zdot = self.net.jvp_params(ws, u).map_err(net_err)?;
        let back = self.net.vjp_params(ws, &zdot);
        let alpha = -eta / xi.len() as f64;
        u.iter_mut().zip(&back).for_each(|(v, g)| *v += alpha * g);
        Ok(())
    }
    fn span_vector(&self, w: &[f64]) -> Result<Vec<f64>> {
        let (n, c) = (self.all.batch_size(), self.net.output_dim());
        let cot = Tensor::new(n, Shape::Flat(c), w.to_vec()).ok_or_else(|| {
            Error::Internal(format!(
                "cotangent has {} entries, expected nC = {}",
                w.len(),
                n * c
            ))
        })?;
        Ok(self.net.vjp_params(&self.all, &cot))
    }
}

/// Rows `s..e` of `data` as a tensor of the network's input shape.
fn rows(net: &Sequential, data: &Dataset, s: usize, e: usize) -> Result<Tensor> {
    let d = net.input_shape().len();
    input_tensor(net, &data.x()[s * d..e * d], e - s)
}

impl SimNetwork for Sequential {
    type Vector = Vec<f64>;
    type Linear<'a> = LayeredLinearization<'a>;

    fn linearize<'a>(
        &'a self,
        data: &Dataset,
        limit_bytes: usize,
    ) -> Result<LayeredLinearization<'a>> {
        LayeredLinearization::with_memory_limit(self, data, limit_bytes)
    }
    fn outputs(&self) -> usize {
        self.output_dim()
    }
    fn theta(&self) -> Vec<f64> {
        self.params()
    }
    fn at(&self, theta: &Vec<f64>) -> Result<Sequential> {
        self.with_params(theta).map_err(net_err)
    }
    fn check_data(&self, data: &Dataset) -> Result<()> {
        check_net_data(self, data).map(|_| ())
    }
    fn loss(&self, data: &Dataset) -> Result<f64> {
        net_dataset_loss(self, data)
    }
    fn batch_gradient(&self, data: &Dataset, xi: &[usize]) -> Result<Vec<f64>> {
        let c = check_net_data(self, data)?;
        let d = self.input_shape().len();
        let mut x = Tensor::zeros(xi.len(), self.input_shape());
        let mut y = vec![0.0; xi.len() * c];
        for (k, &i) in xi.iter().enumerate() {
            x.data[k * d..(k + 1) * d].copy_from_slice(data.x_row(i));
            let row = data
                .y_row(i)
                .ok_or_else(|| Error::invalid_argument("--y", "true SGD needs targets y"))?;
            y[k * c..(k + 1) * c].copy_from_slice(row);
        }
        Ok(net_batch_loss_and_grad(self, &x, &y)?.1)
    }
    fn residuals(&self, data: &Dataset) -> Option<(f64, f64)> {
        let y = data.y()?;
        let c = self.output_dim();
        let mut total = 0.0f64;
        let mut max = 0.0f64;
        for s in (0..data.len()).step_by(BLOCK) {
            let e = (s + BLOCK).min(data.len());
            let out = self.forward(&rows(self, data, s, e).ok()?).ok()?;
            for (k, f) in out.data.chunks(c).enumerate() {
                let t = &y[(s + k) * c..(s + k + 1) * c];
                let sq: f64 = f.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum();
                total += sq;
                max = max.max(sq.sqrt());
            }
        }
        Some((0.5 * total / data.len() as f64, max))
    }
    fn gram(&self, data: &Dataset, opts: &GramOptions) -> Result<GramSpectrum> {
        LayeredSource {
            net: self,
            x: input_tensor(self, data.x(), data.len())?,
            y: None,
        }
        .gram(opts)
    }
    fn jacobians(&self, data: &Dataset) -> Result<Vec<DMatrix<f64>>> {
        let n = data.len();
        let c = self.output_dim();
        let x = input_tensor(self, data.x(), n)?;
        let block = jacobian_block(self, &x, 0, n, false)?;
        Ok((0..n)
            .map(|i| block.rows.columns(i * c, c).transpose())
            .collect())
    }
}

/// What a simulation document says about a layered network, up front (THEORY.md §7).
pub fn layered_simulation_notes(net: &Sequential) -> Vec<String> {
    let mut notes = vec![format!(
        "layered network (THEORY §7(c)): the linearized recursion, true SGD and the T4–T6 \
         predictions are the same for any architecture; J_i products run through the layer \
         engine (convolutions, pooling) on a cached forward pass. The Gram spectrum's \
         formation error is rigorous given the computed per-sample Jacobian rows, but no \
         absolute-value backward bound is propagated through convolutions and pooling: the \
         rounding of those rows is the a-priori relative estimate 2γ_K = {:.2e} (assumed, \
         THEORY §3 item 1), not the dense engine's propagated bound",
        layered_jacobian_rel_tol(net)
    )];
    notes.extend(crate::measure::layered::batchnorm_note(net));
    notes
}
