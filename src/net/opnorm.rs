//! Rigorous upper bounds on the ℓ2 operator norms of the layers of a [`Sequential`] network
//! (THEORY.md §7(d)), for T10's per-layer products and a global Lipschitz bound.
//!
//! - **Convolution** (zero padding, stride): the circular-embedding bound
//!   `‖𝒜‖₂ ≤ max_ω ‖Ŵ(ω)‖₂`, `Ŵ(ω) = Σ_{u,v} W[:, :, u, v]·e^{−2πi(ω₁u/N₁ + ω₂v/N₂)}`, on an
//!   `N₁ × N₂` frequency grid. Each `Ŵ(ω)` is evaluated from its explicit `k_h·k_w` terms with
//!   every term's error bounded, and `‖Ŵ(ω)‖₂` is bounded with THEORY §3 items 3/6
//!   ([`spectral_norm_bounds`](crate::linalg::spectral_norm_bounds) on the smaller Gram matrix) of the real embedding
//!   `[[Re, −Im], [Im, Re]]`, whose spectral norm equals the complex one. Also the cheaper
//!   `Σ_{u,v}‖W[:, :, u, v]‖₂` and `√(‖𝒜‖₁‖𝒜‖_∞)` from the absolute kernel sums.
//! - **Max-pool**: 1 for non-overlapping windows, `√(max #windows containing one input)` otherwise.
//! - **Average pool**: `√(‖A‖₁‖A‖_∞) = √(max #windows containing one input / (k_h·k_w))`.
//! - **Dense**: [`spectral_norm_bounds`](crate::linalg::spectral_norm_bounds) (§3 item 6). **Activations**: `sup σ′`. **Flatten**: 1.
//!
//! Every number here has kind **upper** (rigorous, rounding included), under
//! [`TRIG_HYPOTHESIS`] for the circular bound.

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::batchnorm::BatchNorm2d;
use super::conv::{Conv2d, Window};
use super::layer::Layer;
use super::sequential::Sequential;
use super::tensor::Shape;
use super::{LayerSpec, Linear};
use crate::error::{Error, Result};
use crate::measure::lipschitz::{inflate, norm2_upper, sane_upper, spectral_upper, sum_upper, up};
use crate::model::Activation;
use crate::quantity::{UNIT_ROUNDOFF, gamma};

const U: f64 = UNIT_ROUNDOFF;

/// The assumed hypothesis of the circular-embedding bound (THEORY.md §7(d) "Rounding"): the
/// phase factors `e^{−iθ}` come from libm `sin`/`cos`, assumed accurate to 2u (1 ulp), like the
/// `exp`/`tanh` hypothesis of T10 ([`crate::measure::lipschitz::LIBM_HYPOTHESIS`]).
pub const TRIG_HYPOTHESIS: &str = "libm sin and cos have relative error <= 2u (1 ulp); \
     a correctly rounded or interval libm removes this assumption (THEORY.md §7(d))";

/// Upper bounds on `‖𝒜‖₂` of one zero-padded strided convolution on one input size
/// (THEORY.md §7(d)). Every field has kind **upper**.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvNormBounds {
    /// `max_ω ‖Ŵ(ω)‖₂ + (rounding of Ŵ(ω))` over the `grid` (circular embedding).
    pub circular: f64,
    /// `Σ_{u,v} ‖W[:, :, u, v]‖₂` (each tap matrix `C_out × C_in` bounded by §3 item 6).
    pub tap_sum: f64,
    /// `√(‖𝒜‖₁‖𝒜‖_∞)` with both norms bounded by the absolute kernel sums.
    pub holder: f64,
    /// The frequency grid `(N₁, N₂)` used for `circular`.
    pub grid: (usize, usize),
}

impl ConvNormBounds {
    /// The minimum of the three bounds (kind upper).
    pub fn upper(&self) -> f64 {
        self.circular.min(self.tap_sum).min(self.holder)
    }
}

/// The frequency grid of THEORY §7(d): `N₁ × N₂ = (H + k_h − 1) × (W + k_w − 1)`, for any
/// padding. An output whose window overlaps the image reads true indices in
/// `[−(k − 1), H + k − 2]`, which are distinct modulo `N = H + k − 1` and whose out-of-image part
/// lands on the embedding's zeros `[H, N)`; an output whose window lies entirely in the padding
/// (possible only for `p ≥ k`) is a zero row. So 𝒜's rows are distinct rows of the circular
/// convolution or zero, and `‖𝒜‖₂ ≤ ‖circular‖₂`.
pub fn circular_grid(win: Window, h: usize, w: usize) -> (usize, usize) {
    (h + win.kernel.0 - 1, w + win.kernel.1 - 1)
}

/// THEORY.md §7(d): rigorous upper bounds on the ℓ2 operator norm of `conv` (zero padding and
/// stride as configured) acting on `C_in × h × w` inputs; see [`ConvNormBounds`].
///
/// Rounding of `Ŵ(ω)`: the phase `θ = 2π·m/(N₁N₂)` (m an exact integer) is computed with
/// relative error ≤ γ₃, so `|θ̂ − θ| ≤ 2πγ₃ < 20u`; libm adds ≤ 2u ([`TRIG_HYPOTHESIS`]); the
/// product with `W` adds `u`; the sum of `k_h k_w` terms adds `γ_{k_h k_w}`. Hence every entry of
/// the computed real and imaginary parts is within `(24u + γ_{k_h k_w}(1 + 24u))·Σ_{u,v}|W[o,i,u,v]|`
/// of the exact one, and the real embedding's error has Frobenius norm ≤ 2‖e‖_F (each complex
/// entry appears twice in each part), which is added to the §3 upper bound of the computed matrix.
pub fn conv_opnorm_bounds(conv: &Conv2d, h: usize, w: usize) -> Result<ConvNormBounds> {
    let (co, ci) = (conv.out_channels(), conv.in_channels());
    let win = conv.window();
    let (kh, kw) = win.kernel;
    win.output_hw(h, w).map_err(Error::Model)?;
    let wt = conv.weight();
    let at = |o: usize, i: usize, u: usize, v: usize| wt[((o * ci + i) * kh + u) * kw + v];
    let taps = kh * kw;

    // Absolute kernel sums S[o,i] = Σ_{u,v}|W[o,i,u,v]| (rounded up to exact upper bounds).
    let abs_sum = DMatrix::from_fn(co, ci, |o, i| {
        let s: Vec<f64> = (0..kh)
            .flat_map(|u| (0..kw).map(move |v| (u, v)))
            .map(|(u, v)| at(o, i, u, v).abs())
            .collect();
        sum_upper(s.iter())
    });

    // Hölder: ‖𝒜‖_∞ ≤ max_o Σ_i S[o,i], ‖𝒜‖₁ ≤ max_i Σ_o S[o,i] (each input pixel meets each
    // (o, u, v) at most once; padding and stride only drop terms).
    let inf = abs_sum
        .row_iter()
        .map(|r| sum_upper(r.iter().copied().collect::<Vec<_>>().iter()))
        .fold(0.0, f64::max);
    let one = abs_sum
        .column_iter()
        .map(|c| sum_upper(c.iter()))
        .fold(0.0, f64::max);
    let holder = sane_upper(up(up(one * inf).sqrt()));

    // Tap sum: ‖𝒜‖₂ ≤ Σ_{u,v} ‖W[:, :, u, v]‖₂ (𝒜 is a sum of shifted, cropped copies).
    let mut tap_sum = 0.0;
    for u in 0..kh {
        for v in 0..kw {
            let m = DMatrix::from_fn(co, ci, |o, i| at(o, i, u, v));
            tap_sum = up(tap_sum + spectral_upper(&m)?);
        }
    }
    let tap_sum = sane_upper(tap_sum);

    // Circular embedding.
    let (n1, n2) = circular_grid(win, h, w);
    let nn = n1 * n2;
    let per_entry = up(24.0 * U + gamma(taps + 1) * (1.0 + 24.0 * U));
    let e = abs_sum.map(|s| up(per_entry * s));
    let emb_err = up(2.0 * norm2_upper(e.iter()));
    let two_pi = 2.0 * std::f64::consts::PI;
    let freqs: Vec<(usize, usize)> = (0..n1).flat_map(|a| (0..n2).map(move |b| (a, b))).collect();
    let norms: Vec<Result<f64>> = freqs
        .par_iter()
        .map(|&(w1, w2)| {
            let mut re = DMatrix::<f64>::zeros(co, ci);
            let mut im = DMatrix::<f64>::zeros(co, ci);
            for u in 0..kh {
                for v in 0..kw {
                    // θ = 2π(ω₁u/N₁ + ω₂v/N₂) = 2π·m/(N₁N₂), m reduced exactly in integers.
                    let m = (w1 * u * n2 + w2 * v * n1) % nn;
                    let theta = two_pi * (m as f64 / nn as f64);
                    let (s, c) = theta.sin_cos();
                    for o in 0..co {
                        for i in 0..ci {
                            let x = at(o, i, u, v);
                            re[(o, i)] += x * c;
                            im[(o, i)] -= x * s;
                        }
                    }
                }
            }
            // [[Re, −Im], [Im, Re]] has the singular values of Re + i·Im, each twice.
            let emb = DMatrix::from_fn(2 * co, 2 * ci, |r, c| {
                let (o, i) = (r % co, c % ci);
                match (r < co, c < ci) {
                    (true, true) | (false, false) => re[(o, i)],
                    (true, false) => -im[(o, i)],
                    (false, true) => im[(o, i)],
                }
            });
            Ok(up(spectral_upper(&emb)? + emb_err))
        })
        .collect();
    let mut circular: f64 = 0.0;
    for n in norms {
        circular = circular.max(n?);
    }
    Ok(ConvNormBounds {
        circular: sane_upper(circular),
        tap_sum,
        holder,
        grid: (n1, n2),
    })
}

/// The largest number of windows of a pooling `win` (no padding) that contain one input pixel
/// of an `h × w` image (exact count).
pub fn max_window_cover(win: Window, h: usize, w: usize) -> usize {
    let (ho, wo) = match win.output_hw(h, w) {
        Ok(v) => v,
        Err(_) => return 0,
    };
    let cover = |n: usize, out: usize, k: usize, s: usize| {
        let mut count = vec![0usize; n];
        for o in 0..out {
            for c in &mut count[o * s..o * s + k] {
                *c += 1;
            }
        }
        count.into_iter().max().unwrap_or(0)
    };
    cover(h, ho, win.kernel.0, win.stride.0) * cover(w, wo, win.kernel.1, win.stride.1)
}

/// ℓ2 Lipschitz constant of a max-pool on `h × w` images (THEORY §7(d)): 1 for non-overlapping
/// windows, `√c` with `c` = [`max_window_cover`] otherwise. Kind **upper** (rounded up).
pub fn maxpool_lipschitz(win: Window, h: usize, w: usize) -> f64 {
    let c = max_window_cover(win, h, w).max(1);
    if c == 1 { 1.0 } else { up((c as f64).sqrt()) }
}

/// ℓ2 operator norm of an average pool on `h × w` images: `√(‖A‖₁‖A‖_∞)` with `‖A‖_∞ = 1` and
/// `‖A‖₁ = c/(k_h k_w)`, `c` = [`max_window_cover`] (1/k for non-overlapping k × k windows, the
/// exact norm then). Kind **upper** (rounded up).
pub fn avgpool_opnorm_upper(win: Window, h: usize, w: usize) -> f64 {
    let c = max_window_cover(win, h, w).max(1) as f64;
    let k = (win.kernel.0 * win.kernel.1) as f64;
    up(up(up(c / k) * inflate(1)).sqrt())
}

/// `sup_z σ′(z)` (exact: 1/4 for the sigmoid, `max(1, α)` for leaky ReLU, 1 otherwise), the
/// ℓ2 Lipschitz constant of an elementwise activation.
pub fn activation_slope(act: Activation) -> f64 {
    match act {
        Activation::Sigmoid => 0.25,
        Activation::LeakyRelu { alpha } => alpha.abs().max(1.0),
        _ => 1.0,
    }
}

/// Per-layer ℓ2 norm bounds of a whole network and their product, a **global** Lipschitz
/// bound of `f` on all of input space (THEORY.md §7(d), T10 (a) without intervals).
#[derive(Debug, Clone, PartialEq)]
pub struct NetOpNorms {
    /// Entry j: an upper bound on the ℓ2 Lipschitz constant of layer j on its input shape
    /// (for a convolution [`ConvNormBounds::upper`]).
    pub per_layer: Vec<f64>,
    /// Entry j: the convolution bounds of layer j, when it is a convolution.
    pub conv: Vec<Option<ConvNormBounds>>,
    /// `Π_j per_layer[j]`, rounded up: kind **upper** on `sup_x ‖J_x(x)‖₂` and on the global
    /// ℓ2 → ℓ2 Lipschitz constant.
    pub product: f64,
}

/// [`NetOpNorms`] of `net`: one §7(d) bound per layer (dense `‖W‖₂` by §3 item 6, convolutions
/// by [`conv_opnorm_bounds`], pools by [`maxpool_lipschitz`] / [`avgpool_opnorm_upper`],
/// activations by [`activation_slope`], flatten 1) and their product. Errors: a layer kind
/// without a rule ([`Error::Model`], naming it).
pub fn net_opnorms(net: &Sequential) -> Result<NetOpNorms> {
    let mut per_layer = Vec::with_capacity(net.layers().len());
    let mut conv = Vec::with_capacity(net.layers().len());
    for (j, layer) in net.layers().iter().enumerate() {
        let (n, c) = layer_opnorm(j, layer.as_ref(), net.shapes()[j])?;
        per_layer.push(n);
        conv.push(c);
    }
    let product = sane_upper(per_layer.iter().fold(1.0, |p, &n| up(p * n)));
    Ok(NetOpNorms {
        per_layer,
        conv,
        product,
    })
}

/// The §7(d) bound of one layer on its input shape (and the convolution detail).
pub(crate) fn layer_opnorm(
    j: usize,
    layer: &dyn Layer,
    input: Shape,
) -> Result<(f64, Option<ConvNormBounds>)> {
    let (h, w) = match input {
        Shape::Image { h, w, .. } => (h, w),
        Shape::Flat(_) => (0, 0),
    };
    #[allow(unreachable_patterns)]
    match layer.spec() {
        LayerSpec::Linear { .. } => {
            let lin = as_linear(layer, input)?;
            Ok((spectral_upper(lin.weight())?, None))
        }
        LayerSpec::Conv2d { .. } => {
            let c = as_conv(layer, input)?;
            let b = conv_opnorm_bounds(&c, h, w)?;
            Ok((b.upper(), Some(b)))
        }
        LayerSpec::MaxPool2d { kernel, stride } => {
            Ok((maxpool_lipschitz(pool_window(kernel, stride), h, w), None))
        }
        LayerSpec::AvgPool2d { kernel, stride } => Ok((
            avgpool_opnorm_upper(pool_window(kernel, stride), h, w),
            None,
        )),
        // ‖diag(a)‖₂ = max|a_c|, and |a_c| ≤ (1 + γ₄)|â_c| (module docs of `batchnorm`).
        LayerSpec::BatchNorm2d { .. } => {
            let bn = as_batchnorm(layer)?;
            let m = bn.scale().iter().fold(0.0f64, |m, a| m.max(a.abs()));
            Ok((up(m * (1.0 + gamma(5))), None))
        }
        LayerSpec::Flatten => Ok((1.0, None)),
        LayerSpec::Activation(a) => Ok((activation_slope(a), None)),
        other => Err(Error::Model(format!(
            "layer {j} ({}): no operator-norm rule for {other:?}; supported: linear, conv2d, batchnorm2d, maxpool2d, avgpool2d, flatten, activations",
            layer.kind()
        ))),
    }
}

/// A pooling window (no padding).
pub(crate) fn pool_window(kernel: (usize, usize), stride: (usize, usize)) -> Window {
    Window {
        kernel,
        stride,
        padding: (0, 0),
    }
}

/// Rebuild a [`Linear`] from a layer whose spec says `linear` (weight `[out, in]` row-major,
/// then bias).
pub(crate) fn as_linear(layer: &dyn Layer, input: Shape) -> Result<Linear> {
    let p = layer.params();
    let k = input.len();
    let nw = layer.weight_len().unwrap_or(0);
    if k == 0 || !nw.is_multiple_of(k) || p.len() != nw + nw / k {
        return Err(Error::Internal(format!(
            "linear layer with {} parameters on input {input}",
            p.len()
        )));
    }
    let m = nw / k;
    Ok(Linear::new(
        None,
        DMatrix::from_row_slice(m, k, &p[..nw]),
        p[nw..].to_vec(),
    ))
}

/// Rebuild a [`BatchNorm2d`] from a layer whose spec says `batchnorm2d` (γ, β from the
/// parameters, μ, σ² from the buffers, ε from the spec).
pub(crate) fn as_batchnorm(layer: &dyn Layer) -> Result<BatchNorm2d> {
    let LayerSpec::BatchNorm2d { eps, .. } = layer.spec() else {
        return Err(Error::Internal("not a batchnorm2d layer".into()));
    };
    let p = layer.params();
    let c = p.len() / 2;
    let buffers = layer.buffers();
    let buffer = |name: &str| {
        buffers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Internal(format!("batchnorm2d without {name}")))
    };
    BatchNorm2d::new(
        None,
        p[..c].to_vec(),
        p[c..].to_vec(),
        buffer("running_mean")?,
        buffer("running_var")?,
        eps,
    )
    .ok_or_else(|| Error::Internal("batchnorm2d statistics".into()))
}

/// Rebuild a [`Conv2d`] from a layer whose spec says `conv2d`.
pub(crate) fn as_conv(layer: &dyn Layer, input: Shape) -> Result<Conv2d> {
    let LayerSpec::Conv2d { window, .. } = layer.spec() else {
        return Err(Error::Internal("not a conv2d layer".into()));
    };
    let Shape::Image { c: ci, .. } = input else {
        return Err(Error::Internal("conv2d on a flat input".into()));
    };
    let p = layer.params();
    let nw = layer.weight_len().unwrap_or(0);
    let k = ci * window.kernel.0 * window.kernel.1;
    if k == 0 || !nw.is_multiple_of(k) {
        return Err(Error::Internal("conv2d weight length".into()));
    }
    let co = nw / k;
    Conv2d::new(None, ci, co, window, p[..nw].to_vec(), p[nw..].to_vec())
        .ok_or_else(|| Error::Internal("conv2d parameter lengths".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_covers() {
        let w = pool_window((2, 2), (2, 2));
        assert_eq!(max_window_cover(w, 8, 8), 1);
        assert_eq!(maxpool_lipschitz(w, 8, 8), 1.0);
        let w = pool_window((3, 3), (1, 1));
        assert_eq!(max_window_cover(w, 5, 5), 9);
        let w = pool_window((3, 3), (2, 2));
        assert_eq!(max_window_cover(w, 7, 7), 4);
        // Non-overlapping 2×2 average pool: norm exactly 1/2 (plus rounding).
        let a = avgpool_opnorm_upper(pool_window((2, 2), (2, 2)), 4, 4);
        assert!((0.5..0.5 + 1e-15).contains(&a));
    }
}
