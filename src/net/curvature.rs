//! Matrix-free curvature products of a [`Sequential`] network (CNNs included) over a data set,
//! streamed in blocks (THEORY.md §4 generalized by §7(c)): the Gauss–Newton product
//! `Gv = (1/n)Σ_i J_iᵀ(J_i v)`, the Gram product `Kw = (1/n)𝐉(𝐉ᵀw)` on `ℝ^{nC}`, the exact
//! Hessian product `Hv` of `ℒ(θ) = (1/n)Σ_i ½‖f(x_i;θ) − y_i‖²` (THEORY.md §0: ℓ_i has the ½
//! and ℒ the 1/n) by Pearlmutter's R-operator through every layer kind, the loss gradient and
//! the exact `tr G`.
//!
//! [`NetCurvatureOperator`] implements [`CurvatureOp`], so the whole operator path of
//! [`crate::measure::lanczos`] (Lanczos λ_max(G) with its rigorous lower bound, the randomized
//! upper bound of THEORY.md §3 item 8, Hutchinson traces, `hessian_extreme`, ‖H − G‖) runs on a
//! CNN unchanged (THEORY.md §7(c)).
//!
//! Determinism: blocks run in parallel in groups of [`REDUCE_GROUP`] and their partial sums are
//! added in block order, as in the dense operator, so a product does not depend on the thread
//! count.

use std::borrow::Cow;

use rayon::prelude::*;

use super::arch::LayerSpec;
use super::error::NetError;
use super::layer::Layer;
use super::sequential::{NetCache, Sequential};
use super::tensor::{Shape, Tensor};
use crate::error::{Error, Result};
use crate::measure::hvp::{CurvatureOp, OperatorOptions, REDUCE_GROUP};
use crate::quantity::{Quantity, gamma, round_up};

/// A [`NetError`] as a library error (a model/data mismatch: exit code 2).
pub(crate) fn net_error(e: NetError) -> Error {
    Error::Model(e.to_string())
}

/// Rows `start..end` of a batch (copied).
pub(crate) fn sub_batch(x: &Tensor, start: usize, end: usize) -> Tensor {
    let len = x.row_len();
    Tensor {
        batch: end - start,
        shape: x.shape,
        data: x.data[start * len..(end * len)].to_vec(),
    }
}

/// `[(start, end)]` blocks of at most `block` samples.
pub(crate) fn blocks_of(n: usize, block: usize) -> Vec<(usize, usize)> {
    (0..n)
        .step_by(block.max(1))
        .map(|s| (s, (s + block.max(1)).min(n)))
        .collect()
}

/// Per layer, the lengths of the rounding chains one sample goes through (a-priori, THEORY.md
/// §3 item 1 "Otherwise"): `(forward inner-product length, backward inner-product length,
/// weight-gradient sum length)`. Linear `in → out`: `(in + 1, out, 1)`; a convolution:
/// `(C_in·k_h·k_w + 1, C_out·k_h·k_w, H_out·W_out)` (the backward's col2im adds at most k_h·k_w
/// overlapping taps, covered by the same length); average pooling: `(k_h·k_w + 1, k_h·k_w + 1,
/// 0)`; activations, max-pool and flatten: one rounding or none, `(1, 1, 0)`.
pub(crate) fn layer_chain(layer: &dyn Layer, input: Shape, output: Shape) -> (usize, usize, usize) {
    match layer.spec() {
        LayerSpec::Linear { .. } => (input.len() + 1, output.len(), 1),
        LayerSpec::Conv2d { window, .. } => {
            let (kh, kw) = window.kernel;
            let (cin, cout, t) = match (input, output) {
                (Shape::Image { c, .. }, Shape::Image { c: co, h, w }) => (c, co, h * w),
                _ => (input.len(), output.len(), 1),
            };
            (cin * kh * kw + 1, cout * kh * kw, t)
        }
        LayerSpec::AvgPool2d { kernel, .. } => {
            (kernel.0 * kernel.1 + 1, kernel.0 * kernel.1 + 1, 0)
        }
        // Eval-mode batch normalization: (x − μ)·â + β with â from three roundings; the γ
        // gradient sums H·W pixels.
        LayerSpec::BatchNorm2d { .. } => {
            let t = match output {
                Shape::Image { h, w, .. } => h * w,
                Shape::Flat(_) => 1,
            };
            (7, 5, t + 2)
        }
        _ => (1, 1, 0),
    }
}

/// `K = Σ_l (forward + backward + weight-gradient chain) + C`: the length of the longest rounding
/// chain of one per-sample Jacobian entry, so that `2γ_K` is the relative a-priori rounding
/// estimate of the per-sample Jacobian quantities (the analogue of
/// [`crate::measure::per_sample::jacobian_rel_tol`]; an *assumed* estimate, THEORY.md §3 item 1).
pub fn jacobian_chain_length(net: &Sequential) -> usize {
    let sh = net.shapes();
    net.layers()
        .iter()
        .enumerate()
        .map(|(j, l)| {
            let (a, b, c) = layer_chain(l.as_ref(), sh[j], sh[j + 1]);
            a + b + c
        })
        .sum::<usize>()
        + net.output_dim()
}

/// True when every activation is piecewise linear (ReLU, leaky ReLU, identity); pools, flatten,
/// linear and convolution layers are piecewise linear in the input and affine in their own
/// parameters, so f is then affine in each layer's parameters between kinks (THEORY.md T3).
pub fn is_piecewise_linear(net: &Sequential) -> bool {
    net.layers().iter().all(|l| match l.spec() {
        LayerSpec::Activation(a) => a.is_piecewise_linear(),
        _ => true,
    })
}

/// Bytes to cache the forward pass of `n` samples: every layer's input and the output.
pub fn net_forward_cache_bytes(net: &Sequential, n: usize) -> usize {
    let per: usize = net.shapes().iter().map(Shape::len).sum();
    per.saturating_mul(n).saturating_mul(8)
}

/// Check that `x` (and `y`) fit the network: `x` carries its input shape, `y` is `n × [C]`.
pub(crate) fn check_data(net: &Sequential, x: &Tensor, y: Option<&Tensor>) -> Result<()> {
    if x.shape != net.input_shape() || x.batch == 0 || x.data.len() != x.batch * x.row_len() {
        return Err(Error::Model(format!(
            "{} samples of shape {}, expected at least one sample of shape {} (the network's input shape)",
            x.batch,
            x.shape,
            net.input_shape()
        )));
    }
    if let Some(y) = y {
        let c = net.output_dim();
        if y.batch != x.batch || y.shape != Shape::Flat(c) || y.data.len() != y.batch * c {
            return Err(Error::Model(format!(
                "targets: {} rows of shape {}, expected {} rows of shape [{c}] (the network has C = {c} outputs)",
                y.batch, y.shape, x.batch
            )));
        }
    }
    Ok(())
}

/// Curvature products of a [`Sequential`] on samples `x` (`n` rows of the network's input
/// shape) with optional targets `y` (`n × [C]`), THEORY.md §4 and §7(c). Construction validates
/// the shapes and caches the forward pass when it fits under
/// [`OperatorOptions::cache_limit_bytes`]; every product is deterministic.
#[derive(Debug)]
pub struct NetCurvatureOperator<'a> {
    net: &'a Sequential,
    x: &'a Tensor,
    y: Option<&'a Tensor>,
    blocks: Vec<(usize, usize)>,
    cached: Option<Vec<NetCache>>,
}

impl<'a> NetCurvatureOperator<'a> {
    /// Build the operator (THEORY.md §4, §7(c)). Fails (kind `Error::Model`, exit 2) if `x` or
    /// `y` does not fit the network, or on a zero block size.
    pub fn new(
        net: &'a Sequential,
        x: &'a Tensor,
        y: Option<&'a Tensor>,
        opts: OperatorOptions,
    ) -> Result<Self> {
        check_data(net, x, y)?;
        if opts.block == 0 {
            return Err(Error::invalid_argument("block", "must be at least 1"));
        }
        let blocks = blocks_of(x.batch, opts.block);
        let mut op = Self {
            net,
            x,
            y,
            blocks,
            cached: None,
        };
        if net_forward_cache_bytes(net, x.batch) <= opts.cache_limit_bytes {
            let states = op
                .blocks
                .par_iter()
                .map(|&(s, e)| op.compute_state(s, e))
                .collect::<Result<Vec<_>>>()?;
            op.cached = Some(states);
        }
        Ok(op)
    }

    /// The network.
    pub fn net(&self) -> &Sequential {
        self.net
    }
    /// Whether the forward pass is cached.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    fn compute_state(&self, s: usize, e: usize) -> Result<NetCache> {
        self.net
            .forward_cache(&sub_batch(self.x, s, e))
            .map_err(net_error)
    }

    fn state(&self, k: usize) -> Result<Cow<'_, NetCache>> {
        match &self.cached {
            Some(c) => Ok(Cow::Borrowed(&c[k])),
            None => {
                let (s, e) = self.blocks[k];
                Ok(Cow::Owned(self.compute_state(s, e)?))
            }
        }
    }

    /// Run `f` on every block (in parallel, groups of [`REDUCE_GROUP`]) and fold the results into
    /// `acc` in block order.
    fn fold_blocks<T: Send>(
        &self,
        mut acc: impl FnMut(usize, T),
        f: impl Fn(usize, &NetCache) -> Result<T> + Sync,
    ) -> Result<()> {
        let nb = self.blocks.len();
        let mut start = 0;
        while start < nb {
            let end = (start + REDUCE_GROUP).min(nb);
            let parts = (start..end)
                .into_par_iter()
                .map(|k| f(k, self.state(k)?.as_ref()))
                .collect::<Result<Vec<T>>>()?;
            for (off, part) in parts.into_iter().enumerate() {
                acc(start + off, part);
            }
            start = end;
        }
        Ok(())
    }

    /// Sum per-block parameter vectors in block order and divide by n.
    fn reduce_params(
        &self,
        f: impl Fn(usize, &NetCache) -> Result<Vec<f64>> + Sync,
    ) -> Result<Vec<f64>> {
        let mut total = vec![0.0; self.net.num_params()];
        self.fold_blocks(
            |_, part: Vec<f64>| total.iter_mut().zip(&part).for_each(|(a, b)| *a += b),
            f,
        )?;
        let inv_n = 1.0 / self.x.batch as f64;
        total.iter_mut().for_each(|a| *a *= inv_n);
        Ok(total)
    }

    fn check_direction(&self, v: &[f64]) -> Result<()> {
        if v.len() == self.net.num_params() {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "parameter direction has {} entries, the network has P = {}",
                v.len(),
                self.net.num_params()
            )))
        }
    }

    /// `res_i = f(x_i) − y_i` of block `k` (`b × [C]`); needs targets.
    fn residual_block(&self, k: usize, cache: &NetCache) -> Result<Tensor> {
        let y = self.y.ok_or_else(|| {
            Error::invalid_argument(
                "--y",
                "targets are needed for the Hessian and the loss gradient",
            )
        })?;
        let (s, e) = self.blocks[k];
        let mut res = cache.output().clone();
        let c = self.net.output_dim();
        res.data
            .iter_mut()
            .zip(&y.data[s * c..e * c])
            .for_each(|(f, t)| *f -= t);
        Ok(res)
    }

    /// The Gauss–Newton product `Gv = (1/n) Σ_i J_iᵀ(J_i v)` (THEORY.md §4): one forward-mode
    /// pass (`J_i v`, [`Sequential::jvp_params`]) and one reverse pass with `J_i v` as cotangent
    /// per block. `v` is flat in the network's parameter order.
    pub fn gn_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        self.check_direction(v)?;
        self.reduce_params(|_, cache| {
            let u = self.net.jvp_params(cache, v).map_err(net_error)?;
            Ok(self.net.vjp_params(cache, &u))
        })
    }

    /// The Gram product `Kw = (1/n) 𝐉(𝐉ᵀw)` for `w ∈ ℝ^{nC}` indexed `i·C + c` (THEORY.md §0):
    /// one reverse pass reduced over blocks, then one forward-mode pass.
    pub fn gram_product(&self, w: &[f64]) -> Result<Vec<f64>> {
        let c = self.net.output_dim();
        if w.len() != self.x.batch * c {
            return Err(Error::Internal(format!(
                "Gram product of a vector of length {}, expected nC = {}",
                w.len(),
                self.x.batch * c
            )));
        }
        let mut grad = vec![0.0; self.net.num_params()];
        self.fold_blocks(
            |_, part: Vec<f64>| grad.iter_mut().zip(&part).for_each(|(a, b)| *a += b),
            |k, cache| {
                let (s, e) = self.blocks[k];
                let u = Tensor {
                    batch: e - s,
                    shape: Shape::Flat(c),
                    data: w[s * c..e * c].to_vec(),
                };
                Ok(self.net.vjp_params(cache, &u))
            },
        )?;
        let inv_n = 1.0 / self.x.batch as f64;
        let mut out = vec![0.0; w.len()];
        self.fold_blocks(
            |k, part: Tensor| {
                let (s, e) = self.blocks[k];
                for (o, v) in out[s * c..e * c].iter_mut().zip(&part.data) {
                    *o = v * inv_n;
                }
            },
            |_, cache| self.net.jvp_params(cache, &grad).map_err(net_error),
        )?;
        Ok(out)
    }

    /// The loss gradient `∇ℒ = (1/n) Σ_i J_iᵀ res_i` (a reverse pass with the residuals as
    /// cotangent), flat. Needs targets.
    pub fn loss_gradient_flat(&self) -> Result<Vec<f64>> {
        self.reduce_params(|k, cache| {
            let res = self.residual_block(k, cache)?;
            Ok(self.net.vjp_params(cache, &res))
        })
    }

    /// The exact Hessian product `Hv` of `ℒ = (1/n) Σ_i ½‖f(x_i) − y_i‖²` by Pearlmutter's
    /// R-operator (THEORY.md §4), through every layer kind:
    /// - forward: `R(h_0) = 0`, `R(h_{j+1}) = (∂y_j/∂x) R(h_j) + (∂y_j/∂θ_j) v_j`
    ///   ([`Layer::jvp_input`] + [`Layer::jvp_params`]);
    /// - backward: `g_L = f − y`, `R(g_L) = R(h_L)`, `g_j = (∂y_j/∂x)ᵀ g_{j+1}`,
    ///   `R(g_j)` by [`Layer::rop_vjp_input`] (`Vᵀg` for linear/conv layers, the σ″ term for
    ///   activations);
    /// - `(Hv)_{θ_j} = (1/n)·R(∇_{θ_j})` by [`Layer::rop_param_grad`].
    ///
    /// At interpolation (`g_L = 0`) every extra term vanishes and `Hv = Gv`. Needs targets.
    pub fn hessian_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        self.check_direction(v)?;
        self.reduce_params(|k, cache| {
            let res = self.residual_block(k, cache)?;
            Ok(self.rop_block(cache, v, res))
        })
    }

    fn rop_block(&self, cache: &NetCache, v: &[f64], res: Tensor) -> Vec<f64> {
        let net = self.net;
        let (layers, off, shapes) = (net.layers(), net.param_offsets(), net.shapes());
        let b = cache.batch_size();
        let depth = layers.len();
        // Forward tangents t[j] = R(input of layer j).
        let mut t: Vec<Tensor> = Vec::with_capacity(depth + 1);
        t.push(Tensor::zeros(b, shapes[0]));
        for (j, l) in layers.iter().enumerate() {
            let x = &cache.inputs[j];
            let mut next = if j == 0 {
                Tensor::zeros(b, shapes[1])
            } else {
                l.jvp_input(x, &t[j])
            };
            if let Some(own) = l.jvp_params(x, &v[off[j]..off[j + 1]]) {
                next.data
                    .iter_mut()
                    .zip(&own.data)
                    .for_each(|(a, c)| *a += c);
            }
            t.push(next);
        }
        // Backward: g and R(g) at each layer's output.
        let mut out = vec![0.0; net.num_params()];
        let mut g = res;
        let mut rg = t[depth].clone();
        for j in (0..depth).rev() {
            let l = &layers[j];
            let x = &cache.inputs[j];
            l.rop_param_grad(x, &t[j], &g, &rg, &mut out[off[j]..off[j + 1]]);
            if j > 0 {
                let next_rg = l.rop_vjp_input(x, &t[j], &v[off[j]..off[j + 1]], &g, &rg);
                g = l.vjp_input(x, &g);
                rg = next_rg;
            }
        }
        out
    }

    /// Exact `tr G = (1/n) Σ_i ‖J_i‖_F²` from one batched backward pass for all C outputs per
    /// block and the per-row squared norms of each layer's parameter gradient (factorized for
    /// dense layers, one small GEMM for a convolution; THEORY.md §4, §7(e)). Kind exact; tol the
    /// a-priori `2γ_K·tr G` with `K` = [`jacobian_chain_length`] `+ n` (assumed, THEORY.md §3
    /// item 1 "Otherwise").
    pub fn gauss_newton_trace(&self) -> Quantity {
        let mut total = 0.0;
        self.fold_blocks(
            |_, part: f64| total += part,
            |_, cache| {
                let cot = self.net.backward_outputs(cache);
                let mut acc = 0.0;
                for (j, l) in self.net.layers().iter().enumerate() {
                    if l.num_params() == 0 {
                        continue;
                    }
                    let ps = l.row_param_power_sums(&cache.inputs[j], &cot[j + 1], &[2]);
                    acc += ps.weight.iter().sum::<f64>() + ps.bias.iter().sum::<f64>();
                }
                Ok(acc)
            },
        )
        .expect("the forward pass of a block cannot fail: `new` checked the shapes");
        let value = total / self.x.batch as f64;
        let k = jacobian_chain_length(self.net) + self.x.batch;
        Quantity::exact(value, round_up(2.0 * gamma(k) * value))
            .with_method("per-sample-cotangents")
    }
}

impl CurvatureOp for NetCurvatureOperator<'_> {
    fn samples(&self) -> usize {
        self.x.batch
    }
    fn outputs(&self) -> usize {
        self.net.output_dim()
    }
    fn num_params(&self) -> usize {
        self.net.num_params()
    }
    /// `2K + n + 2` with `K` = [`jacobian_chain_length`]: a JVP and a VJP chain per layer, the
    /// sum over the n samples and the final `1/n` (the analogue of the dense operator's depth).
    fn rounding_depth(&self) -> usize {
        2 * jacobian_chain_length(self.net) + self.x.batch + 2
    }
    fn gn_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        NetCurvatureOperator::gn_product_flat(self, v)
    }
    fn gram_product(&self, w: &[f64]) -> Result<Vec<f64>> {
        NetCurvatureOperator::gram_product(self, w)
    }
    fn hessian_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        NetCurvatureOperator::hessian_product_flat(self, v)
    }
    fn loss_gradient_flat(&self) -> Result<Vec<f64>> {
        NetCurvatureOperator::loss_gradient_flat(self)
    }
    fn gauss_newton_trace(&self) -> Quantity {
        NetCurvatureOperator::gauss_newton_trace(self)
    }
    fn require_targets(&self) -> Result<()> {
        if self.y.is_some() {
            Ok(())
        } else {
            Err(Error::invalid_argument(
                "--y",
                "targets are needed for the Hessian and the loss gradient",
            ))
        }
    }
    fn is_piecewise_linear(&self) -> bool {
        is_piecewise_linear(self.net)
    }
}
