//! `nn.BatchNorm2d` in **eval mode** (issue 14 item 1, optional): a per-channel affine map with
//! the running statistics as constants,
//! `y_c = γ_c·(x_c − μ_c)/√(σ²_c + ε) + β_c`,
//! whose parameters (in θ, as PyTorch trains them) are the weight γ and the bias β.
//!
//! Train-mode batch normalization (statistics of the batch) couples the samples of a batch, so a
//! per-sample loss ℓ_i(θ) and model (S) of THEORY.md §0 do not exist for it; flatcert reads only
//! the eval-mode map (the spec refuses `track_running_stats: false`), and the documents say that
//! the verdicts are about SGD on this map.
//!
//! The map is computed as `fl(fl(fl(x − μ)·â) + β)` with `â = fl(γ/fl(√fl(σ² + ε)))`, so that
//! its interval rule ([`super::ibp`]) can enclose the exact map: `|â − a| ≤ γ₄|â|` for the exact
//! `a = γ/√(σ²+ε)`, and the centre is within `γ₇(|â||x| + |â||μ| + |β|)` of the exact value.

use rayon::prelude::*;

use super::arch::LayerSpec;
use super::layer::{Layer, sum_reps};
use super::tensor::{Shape, Tensor};

/// `nn.BatchNorm2d(C)` in eval mode with tensors `<name>.weight` (γ), `<name>.bias` (β),
/// `<name>.running_mean` (μ), `<name>.running_var` (σ²) and `eps`.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNorm2d {
    name: Option<String>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    mean: Vec<f64>,
    var: Vec<f64>,
    eps: f64,
    /// `â_c = fl(γ_c / fl(√fl(σ²_c + ε)))`: the computed slope, also ∂y/∂x.
    scale: Vec<f64>,
    /// `fl(1/fl(√fl(σ²_c + ε)))`: ∂y/∂γ_c = (x − μ_c)·inv_std_c.
    inv_std: Vec<f64>,
}

impl BatchNorm2d {
    /// The layer from its parameters and running statistics (all of length C). `None` when the
    /// lengths differ, C = 0, ε is not finite and ≥ 0, or some σ²_c + ε is not a positive finite
    /// number (the map would divide by 0).
    pub fn new(
        name: Option<String>,
        gamma: Vec<f64>,
        beta: Vec<f64>,
        mean: Vec<f64>,
        var: Vec<f64>,
        eps: f64,
    ) -> Option<Self> {
        let c = gamma.len();
        if c == 0 || beta.len() != c || mean.len() != c || var.len() != c {
            return None;
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return None;
        }
        let mut scale = Vec::with_capacity(c);
        let mut inv_std = Vec::with_capacity(c);
        for (g, v) in gamma.iter().zip(&var) {
            let s = (v + eps).sqrt();
            if !(s.is_finite() && s > 0.0 && *v >= 0.0) {
                return None;
            }
            scale.push(g / s);
            inv_std.push(1.0 / s);
        }
        Some(Self {
            name,
            gamma,
            beta,
            mean,
            var,
            eps,
            scale,
            inv_std,
        })
    }

    /// Number of channels C.
    pub fn channels(&self) -> usize {
        self.gamma.len()
    }
    /// The running mean μ.
    pub fn running_mean(&self) -> &[f64] {
        &self.mean
    }
    /// The running variance σ².
    pub fn running_var(&self) -> &[f64] {
        &self.var
    }
    /// ε.
    pub fn eps(&self) -> f64 {
        self.eps
    }
    /// The computed slopes `â_c` (∂y_c/∂x_c).
    pub fn scale(&self) -> &[f64] {
        &self.scale
    }

    /// Pixels per channel of an image input.
    fn pixels(&self, shape: Shape) -> usize {
        shape.len() / self.channels()
    }

    /// `out_r = f(c, in_r)` channel by channel for every row.
    fn per_channel(&self, t: &Tensor, f: impl Fn(usize, f64) -> f64 + Sync) -> Tensor {
        let hw = self.pixels(t.shape);
        let mut out = t.clone();
        out.data.par_chunks_mut(t.row_len()).for_each(|row| {
            for (c, block) in row.chunks_mut(hw).enumerate() {
                block.iter_mut().for_each(|v| *v = f(c, *v));
            }
        });
        out
    }

    /// The per-channel gradient sums of every row: `(Σ_pix gy·(x − μ)·inv_std, Σ_pix gy)`.
    fn row_sums(&self, x: &Tensor, gy: &Tensor) -> Vec<f64> {
        let reps = gy.reps_over(x.batch);
        let c = self.channels();
        let hw = self.pixels(x.shape);
        let mut out = vec![0.0; gy.batch * 2 * c];
        out.par_chunks_mut(2 * c).enumerate().for_each(|(r, o)| {
            let (g, h) = (gy.row(r), x.row(r / reps));
            for ch in 0..c {
                let (mut sg, mut sb) = (0.0, 0.0);
                for p in ch * hw..(ch + 1) * hw {
                    sg += g[p] * ((h[p] - self.mean[ch]) * self.inv_std[ch]);
                    sb += g[p];
                }
                o[ch] = sg;
                o[c + ch] = sb;
            }
        });
        out
    }
}

impl Layer for BatchNorm2d {
    fn kind(&self) -> String {
        "batchnorm2d".into()
    }
    fn spec(&self) -> LayerSpec {
        LayerSpec::BatchNorm2d {
            name: self.name.clone().unwrap_or_default(),
            num_features: Some(self.channels()),
            eps: self.eps,
        }
    }
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        match input {
            Shape::Image { c, .. } if c == self.channels() => Ok(input),
            _ => Err(format!(
                "expected an image input [{}, H, W] (num_features = {})",
                self.channels(),
                self.channels()
            )),
        }
    }
    fn num_params(&self) -> usize {
        2 * self.channels()
    }
    fn params(&self) -> Vec<f64> {
        let mut p = self.gamma.clone();
        p.extend_from_slice(&self.beta);
        p
    }
    fn with_params(&self, theta: &[f64]) -> Box<dyn Layer> {
        let c = self.channels();
        assert_eq!(theta.len(), 2 * c, "batchnorm2d: parameter length");
        let mut next = self.clone();
        next.gamma = theta[..c].to_vec();
        next.beta = theta[c..].to_vec();
        next.scale = next
            .gamma
            .iter()
            .zip(&self.var)
            .map(|(g, v)| g / (v + self.eps).sqrt())
            .collect();
        Box::new(next)
    }
    fn weight_len(&self) -> Option<usize> {
        Some(self.channels())
    }
    fn buffers(&self) -> Vec<(&'static str, Vec<f64>)> {
        vec![
            ("running_mean", self.mean.clone()),
            ("running_var", self.var.clone()),
        ]
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        self.per_channel(x, |c, v| (v - self.mean[c]) * self.scale[c] + self.beta[c])
    }
    fn vjp_input(&self, _x: &Tensor, gy: &Tensor) -> Tensor {
        self.per_channel(gy, |c, v| v * self.scale[c])
    }
    fn jvp_input(&self, _x: &Tensor, dx: &Tensor) -> Tensor {
        self.per_channel(dx, |c, v| v * self.scale[c])
    }
    fn vjp_params(&self, x: &Tensor, gy: &Tensor, out: &mut [f64]) {
        let s = Tensor {
            batch: x.batch,
            shape: gy.shape,
            data: sum_reps(gy, x.batch),
        };
        let c2 = self.num_params();
        // Summed over samples in order (deterministic for any thread count).
        for row in self.row_sums(x, &s).chunks(c2) {
            out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
        }
    }
    fn jvp_params(&self, x: &Tensor, v: &[f64]) -> Option<Tensor> {
        let c = self.channels();
        Some(self.per_channel(x, |ch, h| {
            v[ch] * ((h - self.mean[ch]) * self.inv_std[ch]) + v[c + ch]
        }))
    }
    fn row_param_grads(&self, x: &Tensor, gy: &Tensor) -> Vec<f64> {
        self.row_sums(x, gy)
    }
    /// `R(∂y/∂γ_c ᵀ gy) = Σ R(gy)·(x − μ_c)/s_c + Σ gy·R(x)/s_c` (the mean is a constant, so the
    /// default's `vjp_params(R(x), gy)` would subtract it from the tangent), `R(∂y/∂β ᵀ gy) =
    /// Σ R(gy)`.
    fn rop_param_grad(&self, x: &Tensor, tx: &Tensor, gy: &Tensor, rgy: &Tensor, out: &mut [f64]) {
        self.vjp_params(x, rgy, out);
        let c = self.channels();
        let hw = self.pixels(x.shape);
        let reps = gy.reps_over(tx.batch);
        for r in 0..gy.batch {
            let (g, t) = (gy.row(r), tx.row(r / reps));
            for (ch, o) in out[..c].iter_mut().enumerate() {
                let s: f64 = (ch * hw..(ch + 1) * hw).map(|p| g[p] * t[p]).sum();
                *o += s * self.inv_std[ch];
            }
        }
    }
}

/// The per-channel affine maps `x ↦ a_c·x + b_c` that the interval rule of a batch
/// normalization needs ([`super::ibp`]): `|â|·x`, `|â|·x + up(|â||μ| + |β|)` and `â²·x`. They are
/// internal [`BatchNorm2d`] values (μ = 0, slope `a`), never serialized.
pub(crate) fn channel_affine(a: Vec<f64>, b: Vec<f64>) -> BatchNorm2d {
    let c = a.len();
    BatchNorm2d {
        name: Some("(interval rule)".into()),
        gamma: a.clone(),
        beta: b,
        mean: vec![0.0; c],
        var: vec![1.0; c],
        eps: 0.0,
        scale: a,
        inv_std: vec![1.0; c],
    }
}
