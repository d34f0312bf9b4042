//! The [`Layer`] trait and the shape-free layers: [`Linear`], [`Act`] (an activation) and
//! [`Flatten`].

use std::fmt;

use nalgebra::{DMatrix, DMatrixView};
use rayon::prelude::*;

use super::arch::LayerSpec;
use super::tensor::{Shape, Tensor};
use crate::model::Activation;

/// One layer of a [`Sequential`](super::Sequential) network, as in PyTorch `nn.Sequential`
/// (THEORY.md §7: the network is `g(𝒜_W x + b)` with `g` any sequence of layers).
///
/// Every pass is batched. `x` is always the layer's input for `b` samples; tangents `dx` and
/// cotangents `gy` may hold `reps` rows per sample (row `r` belongs to sample `r / reps`), which is
/// how the backward pass for all `C` outputs (THEORY.md §4) and forward-mode Jacobians along many
/// directions run as one batch.
///
/// Parameters are flattened as PyTorch stores them: the weight row-major (`[out, in]` or
/// `[out, in, k_h, k_w]`), then the bias (THEORY.md §0 order for dense layers).
pub trait Layer: fmt::Debug + Send + Sync {
    /// The layer kind as written in the architecture spec (`linear`, `conv2d`, `relu`, …).
    fn kind(&self) -> String;
    /// The layer's entry in an architecture spec (sizes filled in; docs/cnn.md).
    fn spec(&self) -> LayerSpec;
    /// The state_dict name (`features.0`), for layers with parameters that have one.
    fn name(&self) -> Option<&str> {
        None
    }
    /// Per-sample output shape for the per-sample input shape, or what the layer expected
    /// instead (shape inference; the caller names the layer).
    fn output_shape(&self, input: Shape) -> Result<Shape, String>;
    /// Number of parameters.
    fn num_params(&self) -> usize {
        0
    }
    /// Parameters flattened (weight in PyTorch layout, then bias).
    fn params(&self) -> Vec<f64> {
        Vec::new()
    }
    /// A copy of this layer with parameters `theta` (length [`Layer::num_params`], the order of
    /// [`Layer::params`]); panics on a wrong length (callers check it).
    fn with_params(&self, theta: &[f64]) -> Box<dyn Layer>;
    /// The first-layer weight `W` of T1b (without the bias): the leading block of
    /// [`Layer::params`] that multiplies the input bilinearly. `None` for parameterless layers.
    fn weight_len(&self) -> Option<usize> {
        None
    }
    /// Constant tensors stored besides the parameters (state_dict buffers, e.g. a batch
    /// normalization's running statistics), by state_dict suffix (`running_mean`). Empty for
    /// most layers.
    fn buffers(&self) -> Vec<(&'static str, Vec<f64>)> {
        Vec::new()
    }
    /// `y = layer(x)` for a batch.
    fn forward(&self, x: &Tensor) -> Tensor;
    /// Input cotangent `(∂y/∂x)ᵀ gy_r` for every row `r` of `gy` (reverse mode, VJP).
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor;
    /// Output tangent `(∂y/∂x) dx_r` for every row of `dx` (forward mode, JVP).
    fn jvp_input(&self, x: &Tensor, dx: &Tensor) -> Tensor;
    /// Parameter gradient `Σ_r (∂y/∂θ)ᵀ gy_r` (the gradient of `Σ_r ⟨gy_r, y(x_{r/reps})⟩`),
    /// added into `out` (length [`Layer::num_params`]). Nothing for parameterless layers.
    fn vjp_params(&self, _x: &Tensor, _gy: &Tensor, _out: &mut [f64]) {}
    /// Output tangent `(∂y/∂θ) v` for a parameter direction `v` with `x` fixed (one row per
    /// sample); `None` for parameterless layers.
    fn jvp_params(&self, _x: &Tensor, _v: &[f64]) -> Option<Tensor> {
        None
    }
    /// Per-row parameter gradients `(∂y/∂θ)ᵀ gy_r`, materialized (`gy.batch × num_params`,
    /// row-major). Used by the per-sample statistics where no factorized formula exists (a
    /// convolution's gradient is small, THEORY.md §7(e)) and by tests.
    fn row_param_grads(&self, _x: &Tensor, gy: &Tensor) -> Vec<f64> {
        vec![0.0; gy.batch * self.num_params()]
    }
    /// R-operator of the input cotangent (THEORY.md §4, "Exact Hessian-vector product"): with the
    /// layer input `x`, its tangent `tx = R(x)`, the layer's parameter direction `v` (length
    /// [`Layer::num_params`]), an output cotangent `gy` and its tangent `rgy = R(gy)` (rows of
    /// `tx`, `gy`, `rgy` paired one to one), returns `R((∂y/∂x)ᵀgy) = (∂y/∂x)ᵀR(gy) +
    /// (R(∂y/∂x))ᵀgy`.
    ///
    /// The default is exact for every layer whose input Jacobian is locally independent of `x`
    /// and linear in θ (`y = 𝒜_θ x + b_θ`): `Linear`, `Conv2d`, the pools (max-pool's routing is
    /// constant between ties) and `Flatten`; then `R(∂y/∂x) = 𝒜_v`, applied as the same layer
    /// with parameters `v`. Activations override it with the σ″ term.
    fn rop_vjp_input(
        &self,
        x: &Tensor,
        tx: &Tensor,
        v: &[f64],
        gy: &Tensor,
        rgy: &Tensor,
    ) -> Tensor {
        let _ = tx;
        let mut out = self.vjp_input(x, rgy);
        if self.num_params() > 0 {
            let extra = self.with_params(v).vjp_input(x, gy);
            out.data
                .iter_mut()
                .zip(&extra.data)
                .for_each(|(a, b)| *a += b);
        }
        out
    }
    /// R-operator of the parameter gradient (THEORY.md §4): `R(Σ_r (∂y/∂θ)ᵀgy_r)` added into
    /// `out`, i.e. `vjp_params(x, R(gy)) + vjp_params(R(x), gy)` restricted to the weight block.
    /// Exact for layers bilinear in `(W, x)` plus a bias (`Linear`, `Conv2d`): the bias gradient
    /// does not depend on `x`. Nothing for parameterless layers.
    fn rop_param_grad(&self, x: &Tensor, tx: &Tensor, gy: &Tensor, rgy: &Tensor, out: &mut [f64]) {
        let p = self.num_params();
        if p == 0 {
            return;
        }
        self.vjp_params(x, rgy, out);
        let nw = self.weight_len().unwrap_or(0);
        let mut tmp = vec![0.0; p];
        self.vjp_params(tx, gy, &mut tmp);
        out[..nw]
            .iter_mut()
            .zip(&tmp[..nw])
            .for_each(|(a, b)| *a += b);
    }
    /// Per-row sums `Σ_p |((∂y/∂θ)ᵀ gy_r)_p|^q` for each even `q` in `powers`, split into the
    /// weight block and the bias block (each `gy.batch × powers.len()`, row-major). The default
    /// materializes [`Layer::row_param_grads`]; dense layers override it with the factorized
    /// form of THEORY.md §4 (`Σ_{a,b}(δ_a h_b)^q = (Σδ_a^q)(Σh_b^q)`).
    fn row_param_power_sums(&self, x: &Tensor, gy: &Tensor, powers: &[i32]) -> PowerSums {
        let p = self.num_params();
        let nw = self.weight_len().unwrap_or(0);
        let mut out = PowerSums {
            weight: vec![0.0; gy.batch * powers.len()],
            bias: vec![0.0; gy.batch * powers.len()],
        };
        if p == 0 {
            return out;
        }
        let grads = self.row_param_grads(x, gy);
        out.weight
            .par_chunks_mut(powers.len())
            .zip(out.bias.par_chunks_mut(powers.len()))
            .zip(grads.par_chunks(p))
            .for_each(|((w, b), g)| {
                for ((wq, bq), &q) in w.iter_mut().zip(b.iter_mut()).zip(powers) {
                    *wq = g[..nw].iter().map(|v| v.powi(q)).sum();
                    *bq = g[nw..].iter().map(|v| v.powi(q)).sum();
                }
            });
        out
    }
}

/// Per-row power sums of a layer's parameter gradients (see [`Layer::row_param_power_sums`]):
/// entry `r·len(powers) + j` is `Σ_p |g_{r,p}|^{powers[j]}` over the weight block or the bias
/// block. Kind: exact up to floating-point rounding of the sums.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSums {
    /// Over the weight entries.
    pub weight: Vec<f64>,
    /// Over the bias entries.
    pub bias: Vec<f64>,
}

/// Sum the `reps` rows of each sample: `s_i = Σ_{r: r/reps = i} g_r` (`b × row_len`).
pub(crate) fn sum_reps(g: &Tensor, samples: usize) -> Vec<f64> {
    let reps = g.reps_over(samples);
    let len = g.row_len();
    if reps == 1 {
        return g.data.clone();
    }
    let mut out = vec![0.0; samples * len];
    out.par_chunks_mut(len).enumerate().for_each(|(i, o)| {
        for r in 0..reps {
            for (a, b) in o.iter_mut().zip(g.row(i * reps + r)) {
                *a += b;
            }
        }
    });
    out
}

/// A dense layer `y = W x + b` (`nn.Linear`); `weight` is `[out × in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    name: Option<String>,
    weight: DMatrix<f64>,
    bias: Vec<f64>,
}

impl Linear {
    /// A dense layer from a `[out × in]` weight and an `out`-vector bias (lengths checked by
    /// [`Sequential::new`](super::Sequential::new) through [`Layer::output_shape`]).
    pub fn new(name: Option<String>, weight: DMatrix<f64>, bias: Vec<f64>) -> Self {
        Self { name, weight, bias }
    }
    /// `W` (`out × in`).
    pub fn weight(&self) -> &DMatrix<f64> {
        &self.weight
    }
    /// `b`.
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }
    fn x_view<'a>(&self, x: &'a Tensor) -> DMatrixView<'a, f64> {
        DMatrixView::from_slice(&x.data, x.row_len(), x.batch)
    }
}

impl Layer for Linear {
    fn kind(&self) -> String {
        "linear".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Linear {
            name: self.name.clone().unwrap_or_default(),
            in_features: Some(self.weight.ncols()),
            out_features: Some(self.weight.nrows()),
        }
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        if self.bias.len() != self.weight.nrows() {
            return Err(format!(
                "bias has {} entries, expected {} (the weight's row count)",
                self.bias.len(),
                self.weight.nrows()
            ));
        }
        match input {
            Shape::Flat(f) if f == self.weight.ncols() => Ok(Shape::Flat(self.weight.nrows())),
            _ => Err(format!(
                "expected a flat input [{}] (weight [{}, {}]; put a flatten layer before a linear layer on images)",
                self.weight.ncols(),
                self.weight.nrows(),
                self.weight.ncols()
            )),
        }
    }
    fn num_params(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
    fn params(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        for r in 0..self.weight.nrows() {
            out.extend(self.weight.row(r).iter());
        }
        out.extend_from_slice(&self.bias);
        out
    }
    fn with_params(&self, theta: &[f64]) -> Box<dyn Layer> {
        let (m, k) = (self.weight.nrows(), self.weight.ncols());
        assert_eq!(theta.len(), m * k + m, "linear: parameter length");
        Box::new(Linear::new(
            self.name.clone(),
            DMatrix::from_row_slice(m, k, &theta[..m * k]),
            theta[m * k..].to_vec(),
        ))
    }
    fn weight_len(&self) -> Option<usize> {
        Some(self.weight.len())
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = DMatrix::from_fn(self.weight.nrows(), x.batch, |r, _| self.bias[r]);
        y.gemm(1.0, &self.weight, &self.x_view(x), 1.0);
        Tensor {
            batch: x.batch,
            shape: Shape::Flat(self.weight.nrows()),
            data: y.data.into(),
        }
    }
    fn vjp_input(&self, _x: &Tensor, gy: &Tensor) -> Tensor {
        let g = DMatrixView::from_slice(&gy.data, gy.row_len(), gy.batch);
        let gx = self.weight.tr_mul(&g);
        Tensor {
            batch: gy.batch,
            shape: Shape::Flat(self.weight.ncols()),
            data: gx.data.into(),
        }
    }
    fn jvp_input(&self, _x: &Tensor, dx: &Tensor) -> Tensor {
        let d = DMatrixView::from_slice(&dx.data, dx.row_len(), dx.batch);
        let dy = &self.weight * d;
        Tensor {
            batch: dx.batch,
            shape: Shape::Flat(self.weight.nrows()),
            data: dy.data.into(),
        }
    }
    fn vjp_params(&self, x: &Tensor, gy: &Tensor, out: &mut [f64]) {
        let s = sum_reps(gy, x.batch);
        let sm = DMatrixView::from_slice(&s, gy.row_len(), x.batch);
        // ∇W = S Xᵀ (out × in), stored row-major.
        let gw = sm * self.x_view(x).transpose();
        let (m, k) = (self.weight.nrows(), self.weight.ncols());
        for r in 0..m {
            for c in 0..k {
                out[r * k + c] += gw[(r, c)];
            }
        }
        for (o, row) in out[m * k..].iter_mut().zip(sm.row_iter()) {
            *o += row.sum();
        }
    }
    fn jvp_params(&self, x: &Tensor, v: &[f64]) -> Option<Tensor> {
        let (m, k) = (self.weight.nrows(), self.weight.ncols());
        let vw = DMatrixView::from_slice(&v[..m * k], k, m); // Vᵀ (column-major view of row-major V)
        let mut y = DMatrix::from_fn(m, x.batch, |r, _| v[m * k + r]);
        y.gemm(1.0, &vw.transpose(), &self.x_view(x), 1.0);
        Some(Tensor {
            batch: x.batch,
            shape: Shape::Flat(m),
            data: y.data.into(),
        })
    }
    fn row_param_grads(&self, x: &Tensor, gy: &Tensor) -> Vec<f64> {
        let reps = gy.reps_over(x.batch);
        let p = self.num_params();
        let (m, k) = (self.weight.nrows(), self.weight.ncols());
        let mut out = vec![0.0; gy.batch * p];
        out.par_chunks_mut(p).enumerate().for_each(|(r, o)| {
            let (g, h) = (gy.row(r), x.row(r / reps));
            for a in 0..m {
                for (b, hb) in h.iter().enumerate() {
                    o[a * k + b] = g[a] * hb;
                }
            }
            o[m * k..].copy_from_slice(g);
        });
        out
    }
    fn row_param_power_sums(&self, x: &Tensor, gy: &Tensor, powers: &[i32]) -> PowerSums {
        // Σ_{a,b}(δ_a h_b)^q = (Σ_a δ_a^q)(Σ_b h_b^q); the bias block is Σ_a δ_a^q (THEORY.md §4).
        let reps = gy.reps_over(x.batch);
        let k = powers.len();
        let mut out = PowerSums {
            weight: vec![0.0; gy.batch * k],
            bias: vec![0.0; gy.batch * k],
        };
        out.weight
            .par_chunks_mut(k)
            .zip(out.bias.par_chunks_mut(k))
            .enumerate()
            .for_each(|(r, (w, b))| {
                let (g, h) = (gy.row(r), x.row(r / reps));
                for ((wq, bq), &q) in w.iter_mut().zip(b.iter_mut()).zip(powers) {
                    let sg: f64 = g.iter().map(|v| v.powi(q)).sum();
                    let sh: f64 = h.iter().map(|v| v.powi(q)).sum();
                    *wq = sg * sh;
                    *bq = sg;
                }
            });
        out
    }
}

/// An elementwise activation σ (any shape), reusing [`Activation`] and its derivative
/// conventions (σ′(0) = 0 for ReLU; THEORY.md §6 item 11).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Act(pub Activation);

impl Act {
    /// Apply `f(σ′(x), t)` to every tangent entry, pairing row `r` with sample `r / reps`.
    fn scale_by_derivative(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let reps = t.reps_over(x.batch);
        let len = t.row_len();
        let act = self.0;
        let mut out = t.clone();
        out.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            for (v, z) in o.iter_mut().zip(x.row(r / reps)) {
                *v *= act.derivative(*z);
            }
        });
        out
    }
}

impl Layer for Act {
    fn kind(&self) -> String {
        match self.0 {
            Activation::LeakyRelu { .. } => "leaky_relu".into(),
            a => a.name(),
        }
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Activation(self.0)
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        Ok(input)
    }
    fn with_params(&self, _theta: &[f64]) -> Box<dyn Layer> {
        Box::new(*self)
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let act = self.0;
        let mut y = x.clone();
        y.data.par_iter_mut().for_each(|v| *v = act.value(*v));
        y
    }
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor {
        self.scale_by_derivative(x, gy)
    }
    fn jvp_input(&self, x: &Tensor, dx: &Tensor) -> Tensor {
        self.scale_by_derivative(x, dx)
    }
    /// `R(g_x) = σ′(x)∘R(g_y) + σ″(x)∘R(x)∘g_y` (THEORY.md §4; σ″ = 0 for piecewise-linear σ).
    fn rop_vjp_input(
        &self,
        x: &Tensor,
        tx: &Tensor,
        _v: &[f64],
        gy: &Tensor,
        rgy: &Tensor,
    ) -> Tensor {
        let mut out = self.scale_by_derivative(x, rgy);
        if self.0.is_piecewise_linear() {
            return out;
        }
        assert_eq!(
            tx.batch, gy.batch,
            "R-op: one tangent row per cotangent row"
        );
        let reps = gy.reps_over(x.batch);
        let len = gy.row_len();
        let act = self.0;
        out.data.par_chunks_mut(len).enumerate().for_each(|(r, o)| {
            let (xr, tr, gr) = (x.row(r / reps), tx.row(r), gy.row(r));
            for (((a, z), t), g) in o.iter_mut().zip(xr).zip(tr).zip(gr) {
                *a += act.second_derivative(*z) * t * g;
            }
        });
        out
    }
}

/// `nn.Flatten()`: `[C, H, W]` → `[C·H·W]` in NCHW order (a flat input passes unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flatten;

impl Layer for Flatten {
    fn kind(&self) -> String {
        "flatten".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::Flatten
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        Ok(Shape::Flat(input.len()))
    }
    fn with_params(&self, _theta: &[f64]) -> Box<dyn Layer> {
        Box::new(*self)
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone().reshaped(Shape::Flat(x.row_len()))
    }
    fn vjp_input(&self, x: &Tensor, gy: &Tensor) -> Tensor {
        gy.clone().reshaped(x.shape)
    }
    fn jvp_input(&self, _x: &Tensor, dx: &Tensor) -> Tensor {
        dx.clone().reshaped(Shape::Flat(dx.row_len()))
    }
}
