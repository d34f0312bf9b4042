//! The dense multilayer perceptron of THEORY.md §0 and its batched passes (THEORY.md §4).
//!
//! Layout: samples are **columns**. A block of `b` inputs is a `d × b` matrix (a row-major
//! `n × d` data array *is* such a matrix, so blocks are zero-copy views); layer `l` maps
//! `h_{l−1}` (`m_{l−1} × b`) to `z_l = W_l h_{l−1} + b_l 𝟙ᵀ` (`m_l × b`) with one GEMM.

use nalgebra::{DMatrix, DMatrixView, DVector};

use super::Activation;
use crate::error::{Error, Result};

/// One dense layer `z = W h + b` in the PyTorch orientation: `weight` is `[out × in]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `W_l`, shape `out × in`.
    pub weight: DMatrix<f64>,
    /// `b_l`, length `out`.
    pub bias: DVector<f64>,
}

impl Dense {
    /// Fan-in `m_{l−1}`.
    pub fn fan_in(&self) -> usize {
        self.weight.ncols()
    }
    /// Fan-out `m_l`.
    pub fn fan_out(&self) -> usize {
        self.weight.nrows()
    }
    /// Number of parameters `m_l·m_{l−1} + m_l`.
    pub fn num_params(&self) -> usize {
        self.weight.len() + self.bias.len()
    }
}

/// A dense MLP `f(x) = z_L`, `z_l = W_l h_{l−1} + b_l`, `h_l = σ(z_l)` for `l < L`, `h_0 = x`
/// (THEORY.md §0). The activation is applied between layers, never after the last.
///
/// ```
/// use flatcert::model::{Activation, Dense, Mlp};
/// use nalgebra::{dmatrix, dvector};
/// // f(x) = |x| as the ReLU 1–2–1 network of THEORY.md §5.
/// let mlp = Mlp::new(
///     vec![
///         Dense { weight: dmatrix![1.0; -1.0], bias: dvector![0.0, 0.0] },
///         Dense { weight: dmatrix![1.0, 1.0], bias: dvector![0.0] },
///     ],
///     Activation::Relu,
/// )
/// .unwrap();
/// let x = nalgebra::DMatrix::from_row_slice(1, 3, &[-1.0, 1.0, 2.0]);
/// let y = mlp.forward(x.as_view());
/// assert_eq!(y.as_slice(), &[1.0, 1.0, 2.0]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    layers: Vec<Dense>,
    /// `W_lᵀ`, kept so that backward passes are plain (fast) GEMMs.
    weight_t: Vec<DMatrix<f64>>,
    activation: Activation,
}

/// Everything the forward pass of one block keeps for backward passes.
#[derive(Debug, Clone)]
pub struct ForwardCache {
    /// `h_0 = x, h_1, …, h_{L−1}`, each `m_l × b`.
    pub post: Vec<DMatrix<f64>>,
    /// `z_1, …, z_L`, each `m_l × b`; `z_L` is the output.
    pub pre: Vec<DMatrix<f64>>,
}

impl ForwardCache {
    /// The network output `f(x) = z_L` (`C × b`).
    pub fn output(&self) -> &DMatrix<f64> {
        self.pre.last().expect("an Mlp has at least one layer")
    }
    /// Number of samples `b` in the block.
    pub fn batch_size(&self) -> usize {
        self.post[0].ncols()
    }
}

/// The backward pass for **all C outputs at once** (THEORY.md §4): `Δ_L = I_C` and
/// `Δ_l = (Δ_{l+1} W_{l+1}) ∘ (𝟙 σ′(z_l)ᵀ)`.
#[derive(Debug, Clone)]
pub struct OutputDeltas {
    /// `hidden[j]` is `Δ_{j+1}` for `j = 0..L−1` (hidden layers only), stored as an
    /// `m_{j+1} × (b·C)` matrix whose column `i·C + c` is `δ_{j+1,c}(x_i) = ∂f_c/∂z_{j+1}`.
    /// `Δ_L = I_C` is implicit.
    pub hidden: Vec<DMatrix<f64>>,
    /// Number of outputs `C`.
    pub outputs: usize,
}

/// A parameter-shaped tensor (gradients, directions `v` for Gauss–Newton and Hessian products):
/// one `(W, b)` pair per layer, flattened in THEORY.md §0 order (`W_l` row-major, then `b_l`).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Per-layer blocks with the shapes of the network's layers.
    pub layers: Vec<Dense>,
}

impl Mlp {
    /// Build a network; checks that shapes chain (`W_{l+1}` has `m_l` columns), that each bias has
    /// `m_l` entries and that every entry is finite.
    pub fn new(layers: Vec<Dense>, activation: Activation) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Model(
                "a network needs at least one dense layer".into(),
            ));
        }
        for (j, layer) in layers.iter().enumerate() {
            if layer.weight.nrows() == 0 || layer.weight.ncols() == 0 {
                return Err(Error::Model(format!(
                    "layer {j}: weight has an empty shape [{}, {}]",
                    layer.weight.nrows(),
                    layer.weight.ncols()
                )));
            }
            if layer.bias.len() != layer.weight.nrows() {
                return Err(Error::Model(format!(
                    "layer {j}: bias has {} entries, expected {} (the weight's row count)",
                    layer.bias.len(),
                    layer.weight.nrows()
                )));
            }
            if j > 0 && layers[j - 1].weight.nrows() != layer.weight.ncols() {
                return Err(Error::Model(format!(
                    "layer {} weight [{}, {}] does not chain with layer {} weight [{}, {}]: expected {} input columns",
                    j,
                    layer.weight.nrows(),
                    layer.weight.ncols(),
                    j - 1,
                    layers[j - 1].weight.nrows(),
                    layers[j - 1].weight.ncols(),
                    layers[j - 1].weight.nrows()
                )));
            }
            if let Some(pos) = layer.weight.iter().position(|v| !v.is_finite()) {
                let (r, c) = (pos % layer.weight.nrows(), pos / layer.weight.nrows());
                return Err(Error::Model(format!(
                    "layer {j}: weight[{r}, {c}] is not finite ({})",
                    layer.weight[(r, c)]
                )));
            }
            if let Some(pos) = layer.bias.iter().position(|v| !v.is_finite()) {
                return Err(Error::Model(format!(
                    "layer {j}: bias[{pos}] is not finite ({})",
                    layer.bias[pos]
                )));
            }
        }
        let weight_t = layers.iter().map(|l| l.weight.transpose()).collect();
        Ok(Self {
            layers,
            weight_t,
            activation,
        })
    }

    /// The dense layers, first to last.
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }
    /// The first layer `(W, b)`, the one T1–T3 are about.
    pub fn first_layer(&self) -> &Dense {
        &self.layers[0]
    }
    /// The activation σ.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Number of dense layers `L`.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }
    /// Input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.layers[0].fan_in()
    }
    /// Output dimension `C`.
    pub fn output_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].fan_out()
    }
    /// Widths `[d, m_1, …, m_{L−1}, C]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.input_dim()];
        w.extend(self.layers.iter().map(Dense::fan_out));
        w
    }
    /// Number of parameters `P`.
    pub fn num_params(&self) -> usize {
        self.layers.iter().map(Dense::num_params).sum()
    }
    /// `W_lᵀ` for 0-based layer index `j` (layer `l = j + 1`).
    pub fn weight_transposed(&self, j: usize) -> &DMatrix<f64> {
        &self.weight_t[j]
    }

    /// `z = W h + b𝟙ᵀ` for 0-based layer `j`, one GEMM.
    fn affine(&self, j: usize, h: DMatrixView<'_, f64>) -> DMatrix<f64> {
        let layer = &self.layers[j];
        let b = h.ncols();
        let mut z = DMatrix::from_fn(layer.fan_out(), b, |r, _| layer.bias[r]);
        z.gemm(1.0, &layer.weight, &h, 1.0);
        z
    }

    /// Network output `f(x)` for a `d × b` block of inputs; returns `C × b`.
    pub fn forward(&self, x: DMatrixView<'_, f64>) -> DMatrix<f64> {
        let mut z = self.affine(0, x);
        for j in 1..self.layers.len() {
            let act = self.activation;
            z.apply(|v| *v = act.value(*v));
            z = self.affine(j, z.as_view());
        }
        z
    }

    /// Forward pass keeping every `z_l` and `h_l` (THEORY.md §4).
    pub fn forward_cache(&self, x: DMatrixView<'_, f64>) -> ForwardCache {
        let depth = self.layers.len();
        let mut post = Vec::with_capacity(depth);
        let mut pre = Vec::with_capacity(depth);
        post.push(x.into_owned());
        for j in 0..depth {
            let z = self.affine(j, post[j].as_view());
            if j + 1 < depth {
                let act = self.activation;
                post.push(z.map(|v| act.value(v)));
            }
            pre.push(z);
        }
        ForwardCache { post, pre }
    }

    /// σ′ of every pre-activation of hidden layer `j` (0-based), `m_{j+1} × b`.
    pub fn activation_derivatives(&self, cache: &ForwardCache, j: usize) -> DMatrix<f64> {
        let act = self.activation;
        cache.pre[j].map(|v| act.derivative(v))
    }

    /// Backward pass for all C outputs (THEORY.md §4), batched as GEMMs of size
    /// `m_l × m_{l+1} × (b·C)`. No per-sample gradient is formed.
    pub fn output_deltas(&self, cache: &ForwardCache) -> OutputDeltas {
        let depth = self.layers.len();
        let c_out = self.output_dim();
        let b = cache.batch_size();
        let mut hidden: Vec<DMatrix<f64>> = Vec::with_capacity(depth.saturating_sub(1));
        if depth >= 2 {
            // Δ_{L−1}: column (i, c) = W_L[c, :]ᵀ ∘ σ′(z_{L−1}[:, i]).
            let last = &self.layers[depth - 1].weight;
            let dprime = self.activation_derivatives(cache, depth - 2);
            let m = last.ncols();
            let mut delta = DMatrix::zeros(m, b * c_out);
            for i in 0..b {
                for c in 0..c_out {
                    let mut col = delta.column_mut(i * c_out + c);
                    for a in 0..m {
                        col[a] = last[(c, a)] * dprime[(a, i)];
                    }
                }
            }
            hidden.push(delta);
            // Δ_j = (W_{j+1}ᵀ Δ_{j+1}) ∘ σ′(z_j), walking down.
            for j in (0..depth - 2).rev() {
                let upper = hidden.last().expect("pushed above");
                let mut delta = &self.weight_t[j + 1] * upper;
                let dprime = self.activation_derivatives(cache, j);
                for i in 0..b {
                    let dcol = dprime.column(i);
                    for c in 0..c_out {
                        let mut col = delta.column_mut(i * c_out + c);
                        col.component_mul_assign(&dcol);
                    }
                }
                hidden.push(delta);
            }
            hidden.reverse();
        }
        OutputDeltas {
            hidden,
            outputs: c_out,
        }
    }

    /// Input Jacobians `J_x(x_i) = Δ_1 W_1` from the output deltas: a `d × (b·C)` matrix whose
    /// column `i·C + c` is `∇_x f_c(x_i)` (one GEMM). For `L = 1`, `J_x = W_1`.
    pub fn input_gradients(&self, deltas: &OutputDeltas, b: usize) -> DMatrix<f64> {
        match deltas.hidden.first() {
            Some(delta1) => &self.weight_t[0] * delta1,
            None => {
                let c_out = self.output_dim();
                let wt = &self.weight_t[0];
                DMatrix::from_fn(wt.nrows(), b * c_out, |r, col| wt[(r, col % c_out)])
            }
        }
    }

    /// Input Jacobian at one point by **forward mode** (a JVP along each of the d input
    /// directions): an evaluation path independent of the backward pass, used to check the T1
    /// identity non-circularly (THEORY.md T1 "Check"). Returns `C × d`.
    pub fn input_jacobian_forward(&self, x: &[f64]) -> DMatrix<f64> {
        let xv = DMatrix::from_column_slice(x.len(), 1, x);
        let cache = self.forward_cache(xv.as_view());
        let mut tangent = self.layers[0].weight.clone(); // ż_1 = W_1 (m_1 × d)
        for j in 1..self.layers.len() {
            let act = self.activation;
            for (r, mut row) in tangent.row_iter_mut().enumerate() {
                let s = act.derivative(cache.pre[j - 1][(r, 0)]);
                row *= s;
            }
            tangent = &self.layers[j].weight * &tangent;
        }
        tangent
    }

    /// Forward-mode directional derivative with respect to the **input**: for each sample i of
    /// the block, `J_x(x_i) v_i` (`C × b`), with `v` a `d × b` matrix of directions. One pass of
    /// forward-mode AD (`ż_1 = W_1 v`, `ż_{l+1} = W_{l+1}(σ′(z_l) ∘ ż_l)`), independent of the
    /// backward pass.
    pub fn jvp_input(&self, cache: &ForwardCache, v: DMatrixView<'_, f64>) -> DMatrix<f64> {
        let mut zdot = &self.layers[0].weight * v;
        for j in 1..self.layers.len() {
            let act = self.activation;
            zdot.zip_apply(&cache.pre[j - 1], |t, z| *t *= act.derivative(z));
            zdot = &self.layers[j].weight * &zdot;
        }
        zdot
    }

    /// Reverse-mode product `Σ_i J_iᵀ u_i` for a `C × b` matrix of cotangents `u` (column i for
    /// sample i): the parameter gradient of `Σ_i ⟨u_i, f(x_i)⟩`. GEMMs only.
    pub fn vjp_params(&self, cache: &ForwardCache, cotangent: &DMatrix<f64>) -> Params {
        let depth = self.layers.len();
        let mut grads: Vec<Dense> = Vec::with_capacity(depth);
        let mut g = cotangent.clone();
        for j in (0..depth).rev() {
            let h = &cache.post[j];
            let gw = &g * h.transpose();
            let gb = g.column_sum();
            if j > 0 {
                let mut next = &self.weight_t[j] * &g;
                let act = self.activation;
                next.zip_apply(&cache.pre[j - 1], |v, z| *v *= act.derivative(z));
                g = next;
            }
            grads.push(Dense {
                weight: gw,
                bias: gb,
            });
        }
        grads.reverse();
        Params { layers: grads }
    }

    /// Forward-mode product `J_i v` for every sample of the block: returns `C × b`
    /// (THEORY.md §4, "Gauss–Newton product": `ż_l = V_l h_{l−1} + W_l ḣ_{l−1} + v_{b_l}`).
    pub fn jvp_params(&self, cache: &ForwardCache, v: &Params) -> DMatrix<f64> {
        let depth = self.layers.len();
        let b = cache.batch_size();
        let mut zdot = DMatrix::zeros(0, 0);
        for j in 0..depth {
            let vl = &v.layers[j];
            let mut next = DMatrix::from_fn(vl.weight.nrows(), b, |r, _| vl.bias[r]);
            next.gemm(1.0, &vl.weight, &cache.post[j], 1.0);
            if j > 0 {
                let act = self.activation;
                zdot.zip_apply(&cache.pre[j - 1], |v, z| *v *= act.derivative(z));
                next.gemm(1.0, &self.layers[j].weight, &zdot, 1.0);
            }
            zdot = next;
        }
        zdot
    }

    /// θ flattened in THEORY.md §0 order: each `W_l` row-major, then `b_l`.
    pub fn params_flat(&self) -> Vec<f64> {
        Params {
            layers: self.layers.clone(),
        }
        .to_flat()
    }

    /// A network with the same shapes and activation and parameters `theta` (§0 order).
    pub fn with_params_flat(&self, theta: &[f64]) -> Result<Self> {
        let p = Params::from_flat(self, theta)?;
        Mlp::new(p.layers, self.activation)
    }
}

impl Params {
    /// All-zero parameters shaped like `mlp`.
    pub fn zeros_like(mlp: &Mlp) -> Self {
        Params {
            layers: mlp
                .layers
                .iter()
                .map(|l| Dense {
                    weight: DMatrix::zeros(l.fan_out(), l.fan_in()),
                    bias: DVector::zeros(l.fan_out()),
                })
                .collect(),
        }
    }

    /// Flatten in THEORY.md §0 order (each `W_l` row-major, then `b_l`).
    pub fn to_flat(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.len());
        for l in &self.layers {
            for r in 0..l.weight.nrows() {
                out.extend(l.weight.row(r).iter());
            }
            out.extend(l.bias.iter());
        }
        out
    }

    /// Inverse of [`Params::to_flat`], shaped like `mlp`.
    pub fn from_flat(mlp: &Mlp, theta: &[f64]) -> Result<Self> {
        if theta.len() != mlp.num_params() {
            return Err(Error::Internal(format!(
                "parameter vector has {} entries, the network has {}",
                theta.len(),
                mlp.num_params()
            )));
        }
        let mut offset = 0;
        let mut layers = Vec::with_capacity(mlp.depth());
        for l in &mlp.layers {
            let (m, k) = (l.fan_out(), l.fan_in());
            let weight = DMatrix::from_row_slice(m, k, &theta[offset..offset + m * k]);
            offset += m * k;
            let bias = DVector::from_column_slice(&theta[offset..offset + m]);
            offset += m;
            layers.push(Dense { weight, bias });
        }
        Ok(Params { layers })
    }

    /// Total number of entries.
    pub fn len(&self) -> usize {
        self.layers.iter().map(Dense::num_params).sum()
    }
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Euclidean inner product.
    pub fn dot(&self, other: &Params) -> f64 {
        self.layers
            .iter()
            .zip(&other.layers)
            .map(|(a, b)| a.weight.dot(&b.weight) + a.bias.dot(&b.bias))
            .sum()
    }
    /// `self += alpha · other`.
    pub fn axpy(&mut self, alpha: f64, other: &Params) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.weight.zip_apply(&b.weight, |x, y| *x += alpha * y);
            a.bias.axpy(alpha, &b.bias, 1.0);
        }
    }
    /// `self *= alpha`.
    pub fn scale(&mut self, alpha: f64) {
        for a in &mut self.layers {
            a.weight *= alpha;
            a.bias *= alpha;
        }
    }
    /// Euclidean norm.
    pub fn norm(&self) -> f64 {
        self.dot(self).sqrt()
    }
}
