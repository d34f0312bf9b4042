//! Matrix-free curvature products over the data set, streamed in blocks (THEORY.md §4):
//!
//! - the **Gauss–Newton product** `Gv = (1/n) Σ_i J_iᵀ(J_i v)` (one JVP, then one VJP with the
//!   JVP's output as cotangent);
//! - the **Gram product** `Kw = (1/n) 𝐉(𝐉ᵀw)` on `ℝ^{nC}` (rows ordered `(i, c)`), which has the
//!   same nonzero spectrum as G (THEORY.md §0) on a much smaller space;
//! - the **exact Hessian product** `Hv` of `ℒ = (1/n) Σ_i ½‖z_L(x_i) − y_i‖²` by Pearlmutter's
//!   R-operator (THEORY.md §4), which needs σ″;
//! - the loss gradient `∇ℒ = (1/n) Σ_i J_iᵀ res_i`.
//!
//! The forward pass of every block (`z_l`, `h_l`, `σ′(z_l)`) is computed once and cached when it fits
//! under [`OperatorOptions::cache_limit_bytes`], so that a product costs only its GEMMs. Blocks are
//! processed with rayon in groups of [`REDUCE_GROUP`] and their partial sums are added in block
//! order, so every product is **bit-identical for any thread count** (`docs/measurements.md`,
//! "Determinism").

use std::borrow::Cow;

use nalgebra::DMatrix;
use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Dense, ForwardCache, Mlp, Params};
use crate::quantity::{Quantity, gamma, round_up};

/// Number of blocks evaluated in parallel before their partial sums are folded (in block order)
/// into the accumulator. Fixed, so the summation order never depends on the thread count.
pub const REDUCE_GROUP: usize = 8;

/// Fast dense products through faer (AVX-512 kernels), sequential inside each rayon task so the
/// result does not depend on scheduling.
pub(crate) mod mm {
    use faer::{Accum, MatMut, MatRef, Par};
    use nalgebra::DMatrix;

    /// faer view of a column-major nalgebra matrix (zero-copy).
    pub(crate) fn view(m: &DMatrix<f64>) -> MatRef<'_, f64> {
        MatRef::from_column_major_slice(m.as_slice(), m.nrows(), m.ncols())
    }

    /// Mutable faer view of a column-major nalgebra matrix (zero-copy).
    pub(crate) fn view_mut(m: &mut DMatrix<f64>) -> MatMut<'_, f64> {
        let (r, c) = (m.nrows(), m.ncols());
        MatMut::from_column_major_slice_mut(m.as_mut_slice(), r, c)
    }

    /// `dst = alpha·a·b` (`accumulate = false`) or `dst += alpha·a·b`.
    pub(crate) fn gemm(
        dst: &mut DMatrix<f64>,
        accumulate: bool,
        a: MatRef<'_, f64>,
        b: MatRef<'_, f64>,
        alpha: f64,
    ) {
        let accum = if accumulate {
            Accum::Add
        } else {
            Accum::Replace
        };
        faer::linalg::matmul::matmul(view_mut(dst), accum, a, b, alpha, Par::Seq);
    }

    /// `a·b` as a new matrix.
    pub(crate) fn mul(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> DMatrix<f64> {
        let mut out = DMatrix::zeros(a.nrows(), b.ncols());
        gemm(&mut out, false, a, b, 1.0);
        out
    }
}

/// Options of a [`CurvatureOperator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatorOptions {
    /// Samples per block (the GEMM width). Default 256.
    pub block: usize,
    /// Cache the forward pass of all blocks when [`forward_cache_bytes`] is at most this many
    /// bytes (default 2 GiB); otherwise every product recomputes it.
    pub cache_limit_bytes: usize,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        Self {
            block: 256,
            cache_limit_bytes: 2 << 30,
        }
    }
}

impl OperatorOptions {
    /// Default options whose forward-pass cache may use at most half of `memory_limit_bytes` (the
    /// CLI's `--max-memory`); the other half is left for the Lanczos basis and the per-block
    /// temporaries. Above the limit every product recomputes its block's forward pass (slower,
    /// same result bit for bit).
    ///
    /// ```
    /// use flatcert::measure::hvp::OperatorOptions;
    /// assert_eq!(OperatorOptions::within_memory(8 << 30).cache_limit_bytes, 4 << 30);
    /// ```
    pub fn within_memory(memory_limit_bytes: usize) -> Self {
        Self {
            cache_limit_bytes: memory_limit_bytes / 2,
            ..Self::default()
        }
    }
}

/// Bytes needed to cache the forward pass of `n` samples through `mlp`: per sample the input,
/// every `z_l` and every hidden `h_l` and `σ′(z_l)`, 8 bytes each.
pub fn forward_cache_bytes(mlp: &Mlp, n: usize) -> usize {
    let widths = mlp.widths();
    let hidden: usize = widths[1..widths.len() - 1].iter().sum();
    let per_sample = widths[0] + 3 * hidden + mlp.output_dim();
    per_sample.saturating_mul(n).saturating_mul(8)
}

/// The forward pass of one block and the activation derivatives of its hidden layers.
#[derive(Debug, Clone)]
struct BlockState {
    cache: ForwardCache,
    /// `σ′(z_{j+1})` for hidden layer `j = 0..L−1`, each `m_{j+1} × b`.
    dprime: Vec<DMatrix<f64>>,
}

/// Curvature products of an [`Mlp`] on a [`Dataset`] (THEORY.md §4). Construction validates the
/// shapes; every product is deterministic.
#[derive(Debug)]
pub struct CurvatureOperator<'a> {
    mlp: &'a Mlp,
    data: &'a Dataset,
    blocks: Vec<(usize, usize)>,
    cached: Option<Vec<BlockState>>,
}

impl<'a> CurvatureOperator<'a> {
    /// Build the operator; caches the forward pass when it fits (see [`OperatorOptions`]).
    /// Fails if the data's dimension or target width does not match the network.
    pub fn new(mlp: &'a Mlp, data: &'a Dataset, opts: OperatorOptions) -> Result<Self> {
        crate::problem::check_shapes(mlp, data)?;
        if opts.block == 0 {
            return Err(Error::invalid_argument("block", "must be at least 1"));
        }
        let blocks = data.blocks(opts.block);
        let mut op = Self {
            mlp,
            data,
            blocks,
            cached: None,
        };
        if forward_cache_bytes(mlp, data.len()) <= opts.cache_limit_bytes {
            let states: Vec<BlockState> = op
                .blocks
                .par_iter()
                .map(|&(s, e)| op.compute_state(s, e))
                .collect();
            op.cached = Some(states);
        }
        Ok(op)
    }

    /// The network.
    pub fn mlp(&self) -> &Mlp {
        self.mlp
    }
    /// Number of samples n.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Always false (a [`Dataset`] is never empty).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Number of outputs C.
    pub fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }
    /// Number of parameters P (the dimension of G and H).
    pub fn num_params(&self) -> usize {
        self.mlp.num_params()
    }
    /// `nC`, the dimension of the Gram operator K.
    pub fn gram_dim(&self) -> usize {
        self.len() * self.outputs()
    }
    /// Whether the forward pass is cached.
    pub fn is_cached(&self) -> bool {
        self.cached.is_some()
    }

    /// Length `k` of the longest chain of roundings in one product, for the a-priori allowance
    /// `γ_k‖v‖·max(‖Av‖, max_j|θ_j|‖v‖)` of a Rayleigh quotient (THEORY.md §3 item 5): the JVP and the VJP each have
    /// inner products of length `m_{l−1} + 1` per layer, the VJP sums over the n samples, plus one
    /// step per layer and the final `1/n`.
    pub fn rounding_depth(&self) -> usize {
        let w = self.mlp.widths();
        let per_layer: usize = w[..w.len() - 1].iter().map(|m| 2 * (m + 1)).sum();
        per_layer + self.len() + 2 * self.mlp.depth() + 2
    }

    fn compute_state(&self, start: usize, end: usize) -> BlockState {
        let cache = self.mlp.forward_cache(self.data.x_block(start, end));
        let act = self.mlp.activation();
        let hidden = self.mlp.depth() - 1;
        let dprime = (0..hidden)
            .map(|j| cache.pre[j].map(|z| act.derivative(z)))
            .collect();
        BlockState { cache, dprime }
    }

    fn state(&self, k: usize) -> Cow<'_, BlockState> {
        match &self.cached {
            Some(states) => Cow::Borrowed(&states[k]),
            None => {
                let (s, e) = self.blocks[k];
                Cow::Owned(self.compute_state(s, e))
            }
        }
    }

    /// Run `f` on every block (in parallel, groups of [`REDUCE_GROUP`]) and fold the results into
    /// `acc` in block order.
    fn fold_blocks<T: Send>(
        &self,
        mut acc: impl FnMut(usize, T),
        f: impl Fn(usize, &BlockState) -> T + Sync,
    ) {
        let nb = self.blocks.len();
        let mut start = 0;
        while start < nb {
            let end = (start + REDUCE_GROUP).min(nb);
            let parts: Vec<T> = (start..end)
                .into_par_iter()
                .map(|k| f(k, &self.state(k)))
                .collect();
            for (off, part) in parts.into_iter().enumerate() {
                acc(start + off, part);
            }
            start = end;
        }
    }

    /// Forward-mode `J_i v` for every sample of a block (`C × b`), THEORY.md §4:
    /// `ż_l = V_l h_{l−1} + W_l ḣ_{l−1} + v_{b_l}`, `ḣ_l = σ′(z_l)∘ż_l`. Also returns the hidden
    /// `ḣ_l` (`R(h_l)` in the R-operator), `rh[0] = 0` omitted.
    fn jvp_block(&self, st: &BlockState, v: &Params) -> (DMatrix<f64>, Vec<DMatrix<f64>>) {
        let depth = self.mlp.depth();
        let b = st.cache.batch_size();
        let mut rh: Vec<DMatrix<f64>> = Vec::with_capacity(depth - 1);
        let mut zdot = DMatrix::zeros(0, 0);
        for j in 0..depth {
            let vl = &v.layers[j];
            let mut next = DMatrix::from_fn(vl.weight.nrows(), b, |r, _| vl.bias[r]);
            mm::gemm(
                &mut next,
                true,
                mm::view(&vl.weight),
                mm::view(&st.cache.post[j]),
                1.0,
            );
            if j > 0 {
                let mut hdot = zdot;
                hdot.component_mul_assign(&st.dprime[j - 1]);
                mm::gemm(
                    &mut next,
                    true,
                    mm::view(&self.mlp.layers()[j].weight),
                    mm::view(&hdot),
                    1.0,
                );
                rh.push(hdot);
            }
            zdot = next;
        }
        (zdot, rh)
    }

    /// Reverse-mode `Σ_i J_iᵀ u_i` for a `C × b` cotangent (THEORY.md §4): `g_L = u`,
    /// `g_l = σ′(z_l)∘(W_{l+1}ᵀ g_{l+1})`, gradient blocks `g_l h_{l−1}ᵀ` and `Σ g_l`.
    fn vjp_block(&self, st: &BlockState, u: DMatrix<f64>) -> Params {
        let depth = self.mlp.depth();
        let mut layers: Vec<Dense> = Vec::with_capacity(depth);
        let mut g = u;
        for j in (0..depth).rev() {
            let h = &st.cache.post[j];
            let gw = mm::mul(mm::view(&g), mm::view(h).transpose());
            let gb = g.column_sum();
            if j > 0 {
                let w = &self.mlp.layers()[j].weight;
                let mut next = mm::mul(mm::view(w).transpose(), mm::view(&g));
                next.component_mul_assign(&st.dprime[j - 1]);
                g = next;
            }
            layers.push(Dense {
                weight: gw,
                bias: gb,
            });
        }
        layers.reverse();
        Params { layers }
    }

    fn check_params(&self, v: &Params) -> Result<()> {
        let ok = v.layers.len() == self.mlp.depth()
            && v.layers
                .iter()
                .zip(self.mlp.layers())
                .all(|(a, b)| a.weight.shape() == b.weight.shape() && a.bias.len() == b.bias.len());
        if ok {
            Ok(())
        } else {
            Err(Error::Internal(
                "direction does not have the network's parameter shapes".into(),
            ))
        }
    }

    /// Sum per-block parameter tensors in block order and divide by n.
    fn reduce_params(&self, f: impl Fn(usize, &BlockState) -> Params + Sync) -> Params {
        let mut total = Params::zeros_like(self.mlp);
        self.fold_blocks(|_, part: Params| total.axpy(1.0, &part), f);
        total.scale(1.0 / self.len() as f64);
        total
    }

    /// The Gauss–Newton product `Gv = (1/n) Σ_i J_iᵀ(J_i v)` (THEORY.md §4): one JVP and one VJP
    /// per block, GEMMs only.
    pub fn gn_product(&self, v: &Params) -> Result<Params> {
        self.check_params(v)?;
        Ok(self.reduce_params(|_, st| {
            let (u, _) = self.jvp_block(st, v);
            self.vjp_block(st, u)
        }))
    }

    /// [`Self::gn_product`] on flat vectors in THEORY.md §0 order.
    pub fn gn_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        let p = Params::from_flat(self.mlp, v)?;
        Ok(self.gn_product(&p)?.to_flat())
    }

    /// The Gram product `Kw = (1/n) 𝐉(𝐉ᵀw)` for `w ∈ ℝ^{nC}` indexed `i·C + c` (THEORY.md §0:
    /// K = (1/n)𝐉𝐉ᵀ has the nonzero eigenvalues of G). One VJP pass (reduced over blocks), then
    /// one JVP pass.
    pub fn gram_product(&self, w: &[f64]) -> Result<Vec<f64>> {
        let c = self.outputs();
        if w.len() != self.gram_dim() {
            return Err(Error::Internal(format!(
                "Gram product of a vector of length {}, expected nC = {}",
                w.len(),
                self.gram_dim()
            )));
        }
        let mut grad = Params::zeros_like(self.mlp);
        self.fold_blocks(
            |_, part: Params| grad.axpy(1.0, &part),
            |k, st| {
                let (s, e) = self.blocks[k];
                let u = DMatrix::from_column_slice(c, e - s, &w[s * c..e * c]);
                self.vjp_block(st, u)
            },
        );
        let mut out = vec![0.0; w.len()];
        let inv_n = 1.0 / self.len() as f64;
        self.fold_blocks(
            |k, part: DMatrix<f64>| {
                let (s, e) = self.blocks[k];
                for (o, v) in out[s * c..e * c].iter_mut().zip(part.iter()) {
                    *o = v * inv_n;
                }
            },
            |_, st| self.jvp_block(st, &grad).0,
        );
        Ok(out)
    }

    /// `res_i = f(x_i) − y_i` for a block (`C × b`); zero without targets (callers check
    /// [`Self::require_targets`] first).
    fn residual_block(&self, k: usize, st: &BlockState) -> DMatrix<f64> {
        let (s, e) = self.blocks[k];
        let out = st.cache.output();
        match self.data.y_block(s, e) {
            Some(y) => out - y,
            None => DMatrix::zeros(out.nrows(), out.ncols()),
        }
    }

    /// The loss gradient `∇ℒ = (1/n) Σ_i J_iᵀ res_i` (a VJP with the residuals as cotangent).
    /// Needs targets.
    pub fn loss_gradient(&self) -> Result<Params> {
        self.require_targets()?;
        Ok(self.reduce_params(|k, st| {
            let res = self.residual_block(k, st);
            self.vjp_block(st, res)
        }))
    }

    /// Fails unless the data set has targets (needed by the Hessian and the loss gradient).
    pub fn require_targets(&self) -> Result<()> {
        if self.data.has_targets() {
            Ok(())
        } else {
            Err(Error::invalid_argument(
                "--y",
                "targets are needed for the Hessian and the loss gradient",
            ))
        }
    }

    /// The exact Hessian product `Hv` of `ℒ = (1/n) Σ_i ½‖z_L − y_i‖²` by the R-operator of
    /// THEORY.md §4:
    ///
    /// forward `R(z_l) = V_l h_{l−1} + W_l R(h_{l−1}) + v_{b_l}`, `R(h_l) = σ′(z_l)∘R(z_l)`;
    /// backward `g_L = z_L − y`, `R(g_L) = R(z_L)`, `g_l = σ′(z_l)∘(W_{l+1}ᵀg_{l+1})`,
    /// `R(g_l) = σ″(z_l)∘R(z_l)∘(W_{l+1}ᵀg_{l+1}) + σ′(z_l)∘(V_{l+1}ᵀg_{l+1} + W_{l+1}ᵀR(g_{l+1}))`;
    /// `(Hv)_{W_l} = mean_i[R(g_l)h_{l−1}ᵀ + g_l R(h_{l−1})ᵀ]`, `(Hv)_{b_l} = mean_i R(g_l)`.
    ///
    /// At interpolation (`g_L = 0`) every extra term vanishes and `Hv = Gv`. Needs targets.
    pub fn hessian_product(&self, v: &Params) -> Result<Params> {
        self.check_params(v)?;
        self.require_targets()?;
        Ok(self.reduce_params(|k, st| {
            let res = self.residual_block(k, st);
            self.rop_block(st, v, res)
        }))
    }

    /// [`Self::hessian_product`] on flat vectors in THEORY.md §0 order.
    pub fn hessian_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        let p = Params::from_flat(self.mlp, v)?;
        Ok(self.hessian_product(&p)?.to_flat())
    }

    fn rop_block(&self, st: &BlockState, v: &Params, res: DMatrix<f64>) -> Params {
        let depth = self.mlp.depth();
        let act = self.mlp.activation();
        // Forward: R(z_l) for every layer, R(h_l) for hidden layers.
        let mut rz: Vec<DMatrix<f64>> = Vec::with_capacity(depth);
        let mut rh: Vec<DMatrix<f64>> = Vec::with_capacity(depth - 1);
        for j in 0..depth {
            let vl = &v.layers[j];
            let b = st.cache.batch_size();
            let mut next = DMatrix::from_fn(vl.weight.nrows(), b, |r, _| vl.bias[r]);
            mm::gemm(
                &mut next,
                true,
                mm::view(&vl.weight),
                mm::view(&st.cache.post[j]),
                1.0,
            );
            if j > 0 {
                let hdot = rz[j - 1].component_mul(&st.dprime[j - 1]);
                mm::gemm(
                    &mut next,
                    true,
                    mm::view(&self.mlp.layers()[j].weight),
                    mm::view(&hdot),
                    1.0,
                );
                rh.push(hdot);
            }
            rz.push(next);
        }
        // Backward.
        let mut g = res;
        let mut rg = rz[depth - 1].clone();
        let mut layers: Vec<Dense> = Vec::with_capacity(depth);
        for j in (0..depth).rev() {
            let h = &st.cache.post[j];
            let mut gw = mm::mul(mm::view(&rg), mm::view(h).transpose());
            if j > 0 {
                mm::gemm(
                    &mut gw,
                    true,
                    mm::view(&g),
                    mm::view(&rh[j - 1]).transpose(),
                    1.0,
                );
            }
            let gb = rg.column_sum();
            if j > 0 {
                let w = mm::view(&self.mlp.layers()[j].weight);
                let vw = mm::view(&v.layers[j].weight);
                let a = mm::mul(w.transpose(), mm::view(&g));
                let mut inner = mm::mul(w.transpose(), mm::view(&rg));
                mm::gemm(&mut inner, true, vw.transpose(), mm::view(&g), 1.0);
                let dp = &st.dprime[j - 1];
                let z = &st.cache.pre[j - 1];
                let mut next_rg = inner.component_mul(dp);
                if !act.is_piecewise_linear() {
                    for ((o, &zz), (&aa, &r)) in next_rg
                        .iter_mut()
                        .zip(z.iter())
                        .zip(a.iter().zip(rz[j - 1].iter()))
                    {
                        *o += act.second_derivative(zz) * r * aa;
                    }
                }
                g = a.component_mul(dp);
                rg = next_rg;
            }
            layers.push(Dense {
                weight: gw,
                bias: gb,
            });
        }
        layers.reverse();
        Params { layers }
    }

    /// The network outputs `f(x_i)` as a `C × n` matrix (from the cache when present).
    pub fn outputs_matrix(&self) -> DMatrix<f64> {
        let mut out = DMatrix::zeros(self.outputs(), self.len());
        self.fold_blocks(
            |k, part: DMatrix<f64>| {
                let (s, e) = self.blocks[k];
                out.columns_mut(s, e - s).copy_from(&part);
            },
            |_, st| st.cache.output().clone(),
        );
        out
    }

    /// Exact `tr G = (1/n) Σ_i ‖J_i‖_F² = (1/n) Σ_i Σ_l Σ_c ‖δ_{l,c,i}‖²(‖h_{l−1,i}‖² + 1)`
    /// (THEORY.md §4; `Δ_L = I_C` contributes `C(‖h_{L−1,i}‖² + 1)`), from one batched backward
    /// pass for all C outputs per block. Kind exact; tol the a-priori `2γ_K·tr G` with
    /// `K = Σ_l(m_{l−1} + 1) + C + n` (assumed for smooth σ, THEORY.md §3 item 1).
    pub fn gauss_newton_trace(&self) -> Quantity {
        let c = self.outputs();
        let mut total = 0.0;
        self.fold_blocks(
            |_, part: f64| total += part,
            |_, st| {
                let deltas = self.mlp.output_deltas(&st.cache);
                let depth = self.mlp.depth();
                let mut acc = 0.0;
                for j in 0..depth {
                    let h = &st.cache.post[j];
                    for i in 0..h.ncols() {
                        let hn = h.column(i).norm_squared() + 1.0;
                        let dn = if j + 1 == depth {
                            c as f64
                        } else {
                            deltas.hidden[j].columns(i * c, c).norm_squared()
                        };
                        acc += dn * hn;
                    }
                }
                acc
            },
        );
        let value = total / self.len() as f64;
        let w = self.mlp.widths();
        let k: usize = w[..w.len() - 1].iter().map(|m| m + 1).sum::<usize>() + c + self.len();
        Quantity::exact(value, round_up(2.0 * gamma(k) * value)).with_method("per-sample-deltas")
    }
}

/// The curvature products that the operator path (`measure::lanczos`) needs, for any network
/// whose per-sample Jacobians `J_i` it can apply (THEORY.md §7(c): T4–T6, T5(i) and the operator
/// path use only `J_i` and `H_i`). Implemented by the dense [`CurvatureOperator`] and by
/// [`crate::net::NetCurvatureOperator`] (a `net::Sequential`, CNNs included).
///
/// Vectors of `ℝ^P` are flat in the network's parameter order (THEORY.md §0 for an MLP), vectors
/// of `ℝ^{nC}` are indexed `i·C + c`.
pub trait CurvatureOp: Sync {
    /// Number of samples n.
    fn samples(&self) -> usize;
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// Number of parameters P (the dimension of G and H).
    fn num_params(&self) -> usize;
    /// `nC`, the dimension of the Gram operator K.
    fn gram_dim(&self) -> usize {
        self.samples() * self.outputs()
    }
    /// Length of the longest chain of roundings in one product, for the a-priori allowance of a
    /// Rayleigh quotient (THEORY.md §3 item 5).
    fn rounding_depth(&self) -> usize;
    /// `Gv = (1/n) Σ_i J_iᵀ(J_i v)` (THEORY.md §4).
    fn gn_product_flat(&self, v: &[f64]) -> Result<Vec<f64>>;
    /// `Kw = (1/n) 𝐉(𝐉ᵀw)` on `ℝ^{nC}` (THEORY.md §0).
    fn gram_product(&self, w: &[f64]) -> Result<Vec<f64>>;
    /// The exact `Hv` of `ℒ = (1/n) Σ_i ½‖f(x_i) − y_i‖²` (R-operator, THEORY.md §4). Needs targets.
    fn hessian_product_flat(&self, v: &[f64]) -> Result<Vec<f64>>;
    /// `(H − G)v` (the residual terms of the Hessian). Needs targets.
    fn hessian_minus_gn_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        let mut hv = self.hessian_product_flat(v)?;
        let gv = self.gn_product_flat(v)?;
        hv.iter_mut().zip(&gv).for_each(|(h, g)| *h += -g);
        Ok(hv)
    }
    /// `∇ℒ = (1/n) Σ_i J_iᵀ res_i`, flat. Needs targets.
    fn loss_gradient_flat(&self) -> Result<Vec<f64>>;
    /// Exact `tr G = (1/n) Σ_i ‖J_i‖_F²` (kind exact, a-priori tol).
    fn gauss_newton_trace(&self) -> Quantity;
    /// Fails unless the data set has targets.
    fn require_targets(&self) -> Result<()>;
    /// Whether every nonlinearity is piecewise linear (ReLU, leaky ReLU, identity, max-pool), so
    /// that `tr H = tr G` with a residual (THEORY.md T3): f is then affine in each layer's
    /// parameters between kinks, and the diagonal blocks of `∇²_θ f_c` vanish.
    fn is_piecewise_linear(&self) -> bool;
}

impl CurvatureOp for CurvatureOperator<'_> {
    fn samples(&self) -> usize {
        self.len()
    }
    fn outputs(&self) -> usize {
        CurvatureOperator::outputs(self)
    }
    fn num_params(&self) -> usize {
        CurvatureOperator::num_params(self)
    }
    fn gram_dim(&self) -> usize {
        CurvatureOperator::gram_dim(self)
    }
    fn rounding_depth(&self) -> usize {
        CurvatureOperator::rounding_depth(self)
    }
    fn gn_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        CurvatureOperator::gn_product_flat(self, v)
    }
    fn gram_product(&self, w: &[f64]) -> Result<Vec<f64>> {
        CurvatureOperator::gram_product(self, w)
    }
    fn hessian_product_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        CurvatureOperator::hessian_product_flat(self, v)
    }
    fn hessian_minus_gn_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        // The structured form the MLP path always used (same bits as the flat default).
        let p = Params::from_flat(self.mlp, v)?;
        let mut hv = self.hessian_product(&p)?;
        hv.axpy(-1.0, &self.gn_product(&p)?);
        Ok(hv.to_flat())
    }
    fn loss_gradient_flat(&self) -> Result<Vec<f64>> {
        Ok(self.loss_gradient()?.to_flat())
    }
    fn gauss_newton_trace(&self) -> Quantity {
        CurvatureOperator::gauss_newton_trace(self)
    }
    fn require_targets(&self) -> Result<()> {
        CurvatureOperator::require_targets(self)
    }
    fn is_piecewise_linear(&self) -> bool {
        self.mlp.activation().is_piecewise_linear()
    }
}

/// Sum of squares of a vector (convenience for tests and callers).
pub fn norm_sq(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

/// `Σ_i a_i b_i`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Dense references shared by the tests of the curvature and stability modules.
#[cfg(test)]
pub(crate) mod testkit {
    use nalgebra::DMatrix;

    use crate::data::Dataset;
    use crate::model::{Mlp, Params};

    /// A data set from a `d × n` input block (samples as columns) and optional `C × n` targets.
    pub(crate) fn dataset(x: &DMatrix<f64>, y: Option<&DMatrix<f64>>) -> Dataset {
        let (d, n) = x.shape();
        let y = y.map(|y| (y.as_slice().to_vec(), y.nrows()));
        Dataset::new(x.as_slice().to_vec(), n, d, y, "<test>", "<test>").expect("valid test data")
    }

    /// The stacked Jacobian 𝐉 (`nC × P`, row `i·C + c` = ∇_θ f_c(x_i)ᵀ), materialized column by
    /// column with the model's own forward-mode product (independent of this module's code).
    pub(crate) fn jacobian(mlp: &Mlp, x: &DMatrix<f64>) -> DMatrix<f64> {
        let cache = mlp.forward_cache(x.as_view());
        let p = mlp.num_params();
        let c = mlp.output_dim();
        let n = x.ncols();
        let mut jac = DMatrix::zeros(n * c, p);
        for q in 0..p {
            let mut e = vec![0.0; p];
            e[q] = 1.0;
            let v = Params::from_flat(mlp, &e).expect("shape");
            let u = mlp.jvp_params(&cache, &v);
            for i in 0..n {
                for cc in 0..c {
                    jac[(i * c + cc, q)] = u[(cc, i)];
                }
            }
        }
        jac
    }

    /// Central-difference Jacobian of the outputs (`nC × P`), step `h`.
    pub(crate) fn fd_jacobian(mlp: &Mlp, x: &DMatrix<f64>, h: f64) -> DMatrix<f64> {
        let theta = mlp.params_flat();
        let c = mlp.output_dim();
        let n = x.ncols();
        let mut jac = DMatrix::zeros(n * c, theta.len());
        for q in 0..theta.len() {
            let mut tp = theta.clone();
            tp[q] += h;
            let mut tm = theta.clone();
            tm[q] -= h;
            let fp = mlp
                .with_params_flat(&tp)
                .expect("shape")
                .forward(x.as_view());
            let fm = mlp
                .with_params_flat(&tm)
                .expect("shape")
                .forward(x.as_view());
            for i in 0..n {
                for cc in 0..c {
                    jac[(i * c + cc, q)] = (fp[(cc, i)] - fm[(cc, i)]) / (2.0 * h);
                }
            }
        }
        jac
    }

    /// Per-sample `H_i = J_iᵀJ_i` (`P × P`) from a stacked Jacobian.
    pub(crate) fn per_sample_gn(jac: &DMatrix<f64>, c: usize) -> Vec<DMatrix<f64>> {
        (0..jac.nrows() / c)
            .map(|i| {
                let ji = jac.rows(i * c, c);
                ji.transpose() * ji
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use nalgebra::DMatrix;

    use super::testkit::{dataset, fd_jacobian, jacobian};
    use super::*;
    use crate::model::Activation;
    use crate::testutil::{random_data, random_mlp};

    use crate::testutil::ALL_ACTIVATIONS as ACTS;

    fn small_opts() -> OperatorOptions {
        // Blocks of 2 samples so that every test exercises the block reduction.
        OperatorOptions {
            block: 2,
            ..OperatorOptions::default()
        }
    }

    use crate::testutil::rel_err;

    fn loss(mlp: &Mlp, x: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
        let out = mlp.forward(x.as_view());
        (out - y).norm_squared() / (2.0 * x.ncols() as f64)
    }

    fn gradient_at(mlp: &Mlp, theta: &[f64], ds: &Dataset) -> Vec<f64> {
        let m = mlp.with_params_flat(theta).unwrap();
        let op = CurvatureOperator::new(&m, ds, small_opts()).unwrap();
        op.loss_gradient().unwrap().to_flat()
    }

    #[test]
    fn jacobian_reference_matches_finite_differences() {
        // Central differences, h = 1e-6: truncation O(h²) ≈ 1e-12, cancellation O(u/h) ≈ 1e-10
        // relative to |f| ≲ 1 → 1e-7 absolute is ample.
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[3, 4, 3, 2], *act, 10 + s as u64);
            let x = random_data(3, 5, 20 + s as u64);
            let a = jacobian(&mlp, &x);
            let b = fd_jacobian(&mlp, &x, 1e-6);
            assert!((&a - &b).amax() < 1e-7, "{act}: {}", (&a - &b).amax());
        }
    }

    #[test]
    fn gn_and_gram_products_match_dense_references() {
        // Same arithmetic up to summation order: 1e-13 relative.
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[3, 4, 3, 2], *act, 30 + s as u64);
            let x = random_data(3, 5, 40 + s as u64);
            let ds = dataset(&x, None);
            let op = CurvatureOperator::new(&mlp, &ds, small_opts()).unwrap();
            let jac = jacobian(&mlp, &x);
            let n = x.ncols() as f64;
            let g = jac.transpose() * &jac / n;
            let k = &jac * jac.transpose() / n;
            let v = random_data(mlp.num_params(), 1, 50 + s as u64);
            let gv = op.gn_product_flat(v.as_slice()).unwrap();
            let reference = &g * &v;
            assert!(rel_err(&gv, reference.as_slice()) < 1e-13, "{act}");
            let w = random_data(op.gram_dim(), 1, 60 + s as u64);
            let kw = op.gram_product(w.as_slice()).unwrap();
            let reference = &k * &w;
            assert!(rel_err(&kw, reference.as_slice()) < 1e-13, "{act}");
            // Exact trace: tr G = ‖𝐉‖_F²/n.
            let tr = op.gauss_newton_trace();
            assert!((tr.value - jac.norm_squared() / n).abs() < 1e-13 * tr.value);
        }
    }

    #[test]
    fn gradient_matches_finite_differences_of_the_loss() {
        // Central differences of ℒ with h = 1e-6: error ≲ 1e-9 for these O(1) losses.
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[2, 3, 3, 2], *act, 70 + s as u64);
            let x = random_data(2, 4, 80 + s as u64);
            let y = random_data(2, 4, 90 + s as u64);
            let ds = dataset(&x, Some(&y));
            let theta = mlp.params_flat();
            let g = gradient_at(&mlp, &theta, &ds);
            for q in 0..theta.len() {
                let h = 1e-6;
                let mut tp = theta.clone();
                tp[q] += h;
                let mut tm = theta.clone();
                tm[q] -= h;
                let fd = (loss(&mlp.with_params_flat(&tp).unwrap(), &x, &y)
                    - loss(&mlp.with_params_flat(&tm).unwrap(), &x, &y))
                    / (2.0 * h);
                assert!((fd - g[q]).abs() < 1e-8, "{act} q={q}: {fd} vs {}", g[q]);
            }
        }
    }

    #[test]
    fn hessian_product_matches_finite_differences_of_the_gradient() {
        // (∇ℒ(θ+hv) − ∇ℒ(θ−hv))/2h with h = 1e-5: truncation O(h²‖∇³ℒ‖) ≈ 1e-10, cancellation
        // O(u‖∇ℒ‖/h) ≈ 1e-11; 1e-6 relative leaves a wide margin yet catches any missing term
        // (the residual terms are O(1) relative here since targets are random).
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[3, 4, 3, 2], *act, 100 + s as u64);
            let x = random_data(3, 5, 110 + s as u64);
            let y = random_data(2, 5, 120 + s as u64);
            let ds = dataset(&x, Some(&y));
            let op = CurvatureOperator::new(&mlp, &ds, small_opts()).unwrap();
            let theta = mlp.params_flat();
            let v = random_data(theta.len(), 1, 130 + s as u64);
            let hv = op.hessian_product_flat(v.as_slice()).unwrap();
            let h = 1e-5;
            let tp: Vec<f64> = theta.iter().zip(v.iter()).map(|(t, d)| t + h * d).collect();
            let tm: Vec<f64> = theta.iter().zip(v.iter()).map(|(t, d)| t - h * d).collect();
            let gp = gradient_at(&mlp, &tp, &ds);
            let gm = gradient_at(&mlp, &tm, &ds);
            let fd: Vec<f64> = gp
                .iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect();
            assert!(rel_err(&hv, &fd) < 1e-6, "{act}: {}", rel_err(&hv, &fd));
            // With a residual, H ≠ G (the g terms), for every activation.
            let gv = op.gn_product_flat(v.as_slice()).unwrap();
            assert!(rel_err(&hv, &gv) > 1e-3, "{act}");
        }
    }

    #[test]
    fn hessian_equals_gauss_newton_at_interpolation() {
        // Targets = outputs: g_L = 0 exactly, so every extra R-op term is an exact zero.
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[3, 4, 3, 2], *act, 140 + s as u64);
            let x = random_data(3, 5, 150 + s as u64);
            let y = mlp.forward(x.as_view());
            let ds = dataset(&x, Some(&y));
            let op = CurvatureOperator::new(&mlp, &ds, small_opts()).unwrap();
            let v = random_data(mlp.num_params(), 1, 160 + s as u64);
            let hv = op.hessian_product_flat(v.as_slice()).unwrap();
            let gv = op.gn_product_flat(v.as_slice()).unwrap();
            assert!(rel_err(&hv, &gv) < 1e-15, "{act}: {}", rel_err(&hv, &gv));
        }
    }

    #[test]
    fn relu_hessian_trace_equals_gauss_newton_trace_with_residual() {
        // THEORY T3: for piecewise-linear σ the diagonal blocks of ∇²f vanish, so tr H = tr G even
        // with a residual. Dense H by central differences of the gradient (h = 1e-5, error
        // ≲ 1e-9 per entry); smooth σ must show a difference far above that.
        for (s, act) in ACTS.iter().enumerate() {
            let mlp = random_mlp(&[2, 3, 3, 2], *act, 170 + s as u64);
            let x = random_data(2, 4, 180 + s as u64);
            let y = random_data(2, 4, 190 + s as u64);
            let ds = dataset(&x, Some(&y));
            let op = CurvatureOperator::new(&mlp, &ds, small_opts()).unwrap();
            let theta = mlp.params_flat();
            let p = theta.len();
            let mut h_fd = DMatrix::zeros(p, p);
            let mut h_rop = DMatrix::zeros(p, p);
            for q in 0..p {
                let h = 1e-5;
                let mut tp = theta.clone();
                tp[q] += h;
                let mut tm = theta.clone();
                tm[q] -= h;
                let gp = gradient_at(&mlp, &tp, &ds);
                let gm = gradient_at(&mlp, &tm, &ds);
                for r in 0..p {
                    h_fd[(r, q)] = (gp[r] - gm[r]) / (2.0 * h);
                }
                let mut e = vec![0.0; p];
                e[q] = 1.0;
                let col = op.hessian_product_flat(&e).unwrap();
                h_rop.column_mut(q).copy_from_slice(&col);
            }
            assert!((&h_fd - &h_rop).amax() < 1e-7, "{act}");
            assert!(
                (&h_rop - h_rop.transpose()).amax() < 1e-13,
                "{act}: H symmetric"
            );
            let tr_g = op.gauss_newton_trace().value;
            let diff = (h_fd.trace() - tr_g).abs();
            if act.is_piecewise_linear() {
                assert!(diff < 1e-7, "{act}: |tr H − tr G| = {diff}");
                assert!((h_rop.trace() - tr_g).abs() < 1e-13 * tr_g);
            } else {
                assert!(diff > 1e-4, "{act}: expected tr H ≠ tr G, got {diff}");
            }
        }
    }

    #[test]
    fn products_are_bit_identical_for_any_thread_count() {
        let mlp = random_mlp(&[5, 6, 4, 3], Activation::Tanh, 200);
        let x = random_data(5, 37, 201);
        let y = random_data(3, 37, 202);
        let ds = dataset(&x, Some(&y));
        let v = random_data(mlp.num_params(), 1, 203);
        let w = random_data(37 * 3, 1, 204);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let opts = OperatorOptions {
                    block: 3,
                    ..OperatorOptions::default()
                };
                let op = CurvatureOperator::new(&mlp, &ds, opts).unwrap();
                (
                    op.gn_product_flat(v.as_slice()).unwrap(),
                    op.hessian_product_flat(v.as_slice()).unwrap(),
                    op.gram_product(w.as_slice()).unwrap(),
                )
            })
        };
        let a = run(1);
        let b = run(2);
        let c = run(3);
        assert!(a == b && b == c);
        // Without the forward cache the result is the same bits as well.
        let opts = OperatorOptions {
            block: 3,
            cache_limit_bytes: 0,
        };
        let op = CurvatureOperator::new(&mlp, &ds, opts).unwrap();
        assert!(!op.is_cached());
        assert_eq!(op.gn_product_flat(v.as_slice()).unwrap(), a.0);
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let mlp = random_mlp(&[3, 4, 2], Activation::Relu, 1);
        let ds = dataset(&random_data(2, 4, 2), None);
        assert!(CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).is_err());
        let ds = dataset(&random_data(3, 4, 2), None);
        let op = CurvatureOperator::new(&mlp, &ds, OperatorOptions::default()).unwrap();
        assert!(op.gram_product(&[1.0; 3]).is_err());
        assert!(op.hessian_product(&Params::zeros_like(&mlp)).is_err());
        assert!(op.loss_gradient().is_err());
    }
}
