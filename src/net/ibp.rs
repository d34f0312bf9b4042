//! Interval bound propagation through a [`Sequential`] network: the certified local Lipschitz
//! bound of THEORY.md T10 and the output enclosure of T9, through convolutions and pooling
//! (THEORY.md §7(d)). The dense path is [`crate::measure::lipschitz`]; this module computes the
//! same three bounds, with the same rounding rules, for any sequence of supported layers, and
//! agrees with it on [`Sequential::from_mlp`] up to rounding.
//!
//! **Step 1, intervals** (T10 step 1, §7(d)). The ball `B(x_0, ε)` is carried through leading
//! `flatten` layers; the first affine layer (`linear`, `conv2d`, `avgpool2d`) turns it into a box
//! with centre `A x_0 + b` and radius `ε‖A[j,:]‖₂` (ℓ∞: `ε‖A[j,:]‖₁`); a leading activation or
//! max-pool starts from the box `x_0 ± ε` (which contains both balls). Later affine layers map a
//! box `[μ ± ν]` to `A μ + b ± |A|ν` (midpoint–radius with `|W|`, THEORY §7(d)); activations map
//! `[lo, hi]` to `[σ(lo), σ(hi)]`; max-pool takes the interval max of each window.
//! Rounding as in T10 "Floating point": every affine radius gets
//! `γ_{k+1}(|A||μ| + |A|ν + |b|)` with `k` the layer's **fan-in** (`in` for linear,
//! `C_in·k_h·k_w` for conv2d, `k_h·k_w + 1` for avgpool2d, whose `1/(k_h k_w)` is rounded), one
//! more γ step for the evaluation, and every end is rounded outward.
//!
//! **Step 2, derivative sets.** Activations: the T10 table ([`derivative_bounds`], incl. the
//! kink). Max-pool: for each window, the entries that can be the largest (`hi_i ≥ max_k lo_k`);
//! if there is one, the derivative routes to it exactly, else it lies in the convex hull of the
//! candidates' unit vectors, enclosed here by the entry box `[0, 1]` (centre ½, radius ½).
//!
//! **Step 3, three bounds on the Jacobian set** (T10 step 3), `Lip = min(a, b, c)`, kind upper:
//! - (a) a product of per-layer norms: an affine layer followed by an activation contributes
//!   `‖diag(d_hi)A‖₂` (dense: §3 item 6 as the MLP path; conv/avgpool: `max d_hi·‖A‖₂` with the
//!   §7(d) bound of [`super::opnorm`]), any other affine layer `‖A‖₂`, a lone activation
//!   `max d_hi`, a max-pool `√(max windows containing one input)`; ℓ∞ multiplies by √d;
//! - (b) the |W|-product `M = |A_L| diag(d_hi) ⋯` (max-pool: 1 on every candidate);
//! - (c) midpoint–radius `[P_c ± P_r]` from the output side, with the centre's rounding added to
//!   `P_r` at every step.
//!
//! (b) and (c) are propagated from the output side by the layers' own reverse-mode products
//! ([`Layer::vjp_input`]) on the `C` rows (and on `|A|` for the radii); a product with
//! column fan-out `k` (`out` for linear, `C_out·k_h·k_w` for conv2d, `k_h·k_w + 1` for avgpool2d)
//! is divided by `1 − γ_k` and its centre's rounding `γ_{k+1}|P_c||A|` joins `P_r`. Norms are
//! §3 item 6 upper bounds ([`spectral_upper`]), never power iteration.
//!
//! Assumed hypotheses (printed as the bound's note): [`LIBM_HYPOTHESIS`], and
//! [`TRIG_HYPOTHESIS`] when a convolution's circular bound enters (a).

use nalgebra::DMatrix;
use rayon::prelude::*;

use super::batchnorm::channel_affine;
use super::conv::Window;
use super::ibp_pool::{maxpool_backward, maxpool_box};
use super::layer::Layer;
use super::opnorm::{
    TRIG_HYPOTHESIS, as_batchnorm, as_linear, avgpool_opnorm_upper, layer_opnorm,
    maxpool_lipschitz, pool_window,
};
use super::{LayerSpec, Sequential, Shape, Tensor};
use crate::error::{Error, Result};
use crate::linalg::spectral_norm_bounds;
use crate::measure::lipschitz::{
    BallNorm, JacobianNormBounds, LIBM_HYPOTHESIS, LayerBox, LipschitzBound, LipschitzOptions,
    PairwiseLipschitz, Products, WhichBound, allowance, cheap_norm_upper, derivative_bounds, dn,
    hi_or_inf, inflate, lo_or_neg_inf, matrix_bounds, norm2_upper, pick, row_bounds, sane_upper,
    sigma_bounds, spectral_upper, up,
};
use crate::model::Activation;
use crate::quantity::{Quantity, gamma};

/// An affine layer `y = A x + b` with the derived layers IBP needs.
struct Affine<'a> {
    layer: &'a dyn Layer,
    /// `|A|`, zero bias.
    abs: Box<dyn Layer>,
    /// `|A|`, bias `|b|`.
    abs_b: Box<dyn Layer>,
    /// `A∘A` (squared entries), zero bias; `None` for average pooling (rows `1/(k_h k_w)`).
    sq: Option<Box<dyn Layer>>,
    /// Average pooling: `k_h·k_w`.
    pool_taps: Option<usize>,
    /// Largest number of terms in one output (row) of `A`.
    fan_in: usize,
    /// Largest number of terms in one column of `A` (inner dimension of `P·A`).
    fan_out: usize,
    /// The dense weight of a linear layer (for the (a) factor `‖diag(d_hi)W‖₂`).
    dense: Option<DMatrix<f64>>,
    /// Upper bound of `‖A‖₂` (§7(d) for conv2d, §3 item 6 for linear).
    norm: f64,
}

enum Step<'a> {
    Affine(Affine<'a>),
    Flatten,
    Act(Activation),
    MaxPool(Window),
}

/// `[lo, hi]` with both ends rounded outward (NaN → ±∞).
fn outward(c: f64, r: f64) -> (f64, f64) {
    (lo_or_neg_inf(dn(c - r)), hi_or_inf(up(c + r)))
}

fn row(shape: Shape, data: Vec<f64>) -> Tensor {
    Tensor {
        batch: 1,
        shape,
        data,
    }
}

fn abs_t(t: &Tensor) -> Tensor {
    Tensor {
        batch: t.batch,
        shape: t.shape,
        data: t.data.iter().map(|v| v.abs()).collect(),
    }
}

/// `(μ, ν)` of a box: `μ = fl(½(lo + hi))`, `ν = max(hi − μ, μ − lo)` rounded up.
fn mid_rad(b: &LayerBox) -> (Vec<f64>, Vec<f64>) {
    b.lo.iter()
        .zip(&b.hi)
        .map(|(&l, &h)| {
            let m = 0.5 * (l + h);
            (m, up(up(h - m).max(up(m - l))))
        })
        .unzip()
}

impl Affine<'_> {
    /// Image of the ball `B(x_0, ε)` (T10 step 1, layer 1): centre `A x_0 + b`, radius
    /// `ε‖A[j,:]‖` plus `γ_{k+1}(|A||x_0| + |b|)`.
    fn ball_image(&self, x0: &[f64], eps: f64, norm: BallNorm, shape: Shape) -> LayerBox {
        let x = row(shape, x0.to_vec());
        let c = self.layer.forward(&x).data;
        let s = self.abs_b.forward(&abs_t(&x)).data;
        let ones = row(shape, vec![1.0; shape.len()]);
        let k = self.fan_in;
        let rows: Vec<f64> = match (norm, &self.sq, self.pool_taps) {
            (BallNorm::L2, Some(sq), _) => sq
                .forward(&ones)
                .data
                .iter()
                .map(|&v| up(up(v * inflate(k)).sqrt()))
                .collect(),
            (BallNorm::L2, None, taps) => {
                // Average pooling: every row has k_h k_w entries 1/(k_h k_w): ‖row‖₂ = 1/√taps.
                let t = taps.unwrap_or(1) as f64;
                vec![up(up(1.0 / t).sqrt()); c.len()]
            }
            (BallNorm::LInf, _, _) => self
                .abs
                .forward(&ones)
                .data
                .iter()
                .map(|&v| up(v * inflate(k)))
                .collect(),
        };
        let (lo, hi) = c
            .iter()
            .zip(&s)
            .zip(&rows)
            .map(|((&cj, &sj), &nj)| {
                let r = up(up(eps * nj) + allowance(k + 1, sj));
                outward(cj, r)
            })
            .unzip();
        LayerBox { lo, hi }
    }

    /// Image of a box `[μ ± ν]`: `A μ + b ± (|A|ν + γ_{k+1}(|A||μ| + |A|ν + |b|))`.
    fn box_image(&self, b: &LayerBox, shape: Shape) -> LayerBox {
        let (mu, nu) = mid_rad(b);
        let mu = row(shape, mu);
        let c = self.layer.forward(&mu).data;
        let t = self.abs.forward(&row(shape, nu)).data;
        let s = self.abs_b.forward(&abs_t(&mu)).data;
        let k = self.fan_in;
        let (lo, hi) = c
            .iter()
            .zip(&s)
            .zip(&t)
            .map(|((&cj, &sj), &tj)| outward(cj, up(tj + allowance(k + 1, up(sj + tj)))))
            .unzip();
        LayerBox { lo, hi }
    }
}

/// Per-network data shared by every centre (the analogue of the MLP path's `Prepared`).
///
/// Build once with [`NetIbp::new`] and evaluate many centres; the evaluations are independent
/// and deterministic.
pub struct NetIbp<'a> {
    net: &'a Sequential,
    steps: Vec<Step<'a>>,
    sqrt_d_upper: f64,
    /// `Σ (fan-in + 3)` over affine layers: the γ index of the a-priori allowance estimate.
    allowance_k: usize,
    has_conv: bool,
}

impl<'a> NetIbp<'a> {
    /// Prepare `net`: validates every layer for a certified T10 statement (monotone σ, leaky
    /// slope in [0, 1]; [`Error::Model`] naming the layer otherwise) and computes the per-layer
    /// §7(d) norm bounds once.
    pub fn new(net: &'a Sequential) -> Result<Self> {
        let shapes = net.shapes();
        let mut steps = Vec::with_capacity(net.layers().len());
        let mut allowance_k = 0;
        let mut has_conv = false;
        for (j, layer) in net.layers().iter().enumerate() {
            let layer = layer.as_ref();
            let input = shapes[j];
            let with_abs = |bias_abs: bool| -> Box<dyn Layer> {
                let mut p: Vec<f64> = layer.params().iter().map(|v| v.abs()).collect();
                let nw = layer.weight_len().unwrap_or(0);
                if !bias_abs {
                    p[nw..].iter_mut().for_each(|v| *v = 0.0);
                }
                layer.with_params(&p)
            };
            #[allow(unreachable_patterns)]
            let step = match layer.spec() {
                LayerSpec::Linear { .. } | LayerSpec::Conv2d { .. } => {
                    let is_conv = matches!(layer.spec(), LayerSpec::Conv2d { .. });
                    has_conv |= is_conv;
                    let nw = layer.weight_len().unwrap_or(0);
                    let mut sq: Vec<f64> = layer.params().iter().map(|v| v * v).collect();
                    sq[nw..].iter_mut().for_each(|v| *v = 0.0);
                    let out = shapes[j + 1];
                    let (fan_in, fan_out, dense) = if is_conv {
                        let (Shape::Image { c: ci, .. }, Shape::Image { c: co, .. }) = (input, out)
                        else {
                            return Err(Error::Internal("conv2d shapes".into()));
                        };
                        let taps = nw / (ci * co).max(1);
                        (ci * taps, co * taps, None)
                    } else {
                        let lin = as_linear(layer, input)?;
                        (input.len(), out.len(), Some(lin.weight().clone()))
                    };
                    let (norm, _) = layer_opnorm(j, layer, input)?;
                    allowance_k += fan_in + 3;
                    Step::Affine(Affine {
                        layer,
                        abs: with_abs(false),
                        abs_b: with_abs(true),
                        sq: Some(layer.with_params(&sq)),
                        pool_taps: None,
                        fan_in,
                        fan_out,
                        dense,
                        norm,
                    })
                }
                LayerSpec::AvgPool2d { kernel, stride } => {
                    let taps = kernel.0 * kernel.1;
                    let (h, w) = match input {
                        Shape::Image { h, w, .. } => (h, w),
                        Shape::Flat(_) => (0, 0),
                    };
                    allowance_k += taps + 4;
                    Step::Affine(Affine {
                        layer,
                        abs: layer.with_params(&[]),
                        abs_b: layer.with_params(&[]),
                        sq: None,
                        pool_taps: Some(taps),
                        fan_in: taps + 1,
                        fan_out: taps + 1,
                        dense: None,
                        norm: avgpool_opnorm_upper(pool_window(kernel, stride), h, w),
                    })
                }
                // Eval-mode batch normalization, a per-channel affine map (module docs of
                // `batchnorm`): centre â(μ − m) + β computed as the layer does, within
                // γ₇(|â||μ| + |â||m| + |β|) of the exact one; slope |a| ≤ (1 + γ₄)|â|. As an
                // `Affine` step with |A| = diag|â|, |b| = up(|â||m| + |β|) and fan-in 10, the
                // allowance γ₁₂(|A||μ| + |A|ν + |b|) covers both (γ₁₂ ≥ γ₇ + γ₄ with room for the
                // rounding of the |A| products); backward: fan-out 4, inflate ≥ 1 + γ₄.
                LayerSpec::BatchNorm2d { .. } => {
                    let bn = as_batchnorm(layer)?;
                    let (p, c) = (layer.params(), bn.channels());
                    let abs_a: Vec<f64> = bn.scale().iter().map(|a| a.abs()).collect();
                    let shift: Vec<f64> = (0..c)
                        .map(|ch| up(up(abs_a[ch] * bn.running_mean()[ch].abs()) + p[c + ch].abs()))
                        .collect();
                    let sq: Vec<f64> = abs_a.iter().map(|a| up(a * a)).collect();
                    allowance_k += 10 + 3;
                    Step::Affine(Affine {
                        layer,
                        abs: Box::new(channel_affine(abs_a.clone(), vec![0.0; c])),
                        abs_b: Box::new(channel_affine(abs_a, shift)),
                        sq: Some(Box::new(channel_affine(sq, vec![0.0; c]))),
                        pool_taps: None,
                        fan_in: 10,
                        fan_out: 4,
                        dense: None,
                        norm: layer_opnorm(j, layer, input)?.0,
                    })
                }
                LayerSpec::MaxPool2d { kernel, stride } => {
                    Step::MaxPool(pool_window(kernel, stride))
                }
                LayerSpec::Flatten => Step::Flatten,
                LayerSpec::Activation(a) => {
                    if let Activation::LeakyRelu { alpha } = a
                        && !(alpha.is_finite() && (0.0..=1.0).contains(&alpha))
                    {
                        return Err(Error::Model(format!(
                            "layer {j} ({}): T10 certified bounds need a leaky ReLU slope 0 <= alpha <= 1, got {alpha}",
                            layer.kind()
                        )));
                    }
                    Step::Act(a)
                }
                other => {
                    return Err(Error::Model(format!(
                        "layer {j} ({}): interval bound propagation does not support {other:?}; supported: linear, conv2d, batchnorm2d, maxpool2d, avgpool2d, flatten, monotone activations",
                        layer.kind()
                    )));
                }
            };
            steps.push(step);
        }
        Ok(Self {
            net,
            steps,
            sqrt_d_upper: up((net.input_shape().len() as f64).sqrt()),
            allowance_k,
            has_conv,
        })
    }

    fn check_point(&self, x0: &[f64], eps: f64, allow_zero: bool) -> Result<()> {
        let d = self.net.input_shape().len();
        if x0.len() != d {
            return Err(Error::invalid_argument(
                "x0",
                format!(
                    "the centre has {} entries, the network expects {} = {d} values",
                    x0.len(),
                    self.net.input_shape()
                ),
            ));
        }
        if let Some(k) = x0.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(
                "x0",
                format!("entry {k} is not finite ({})", x0[k]),
            ));
        }
        if !(eps.is_finite() && (eps > 0.0 || (allow_zero && eps == 0.0))) {
            return Err(Error::invalid_argument(
                "eps",
                format!("the radius must be finite and > 0, got {eps}"),
            ));
        }
        Ok(())
    }

    /// Boxes at every layer's input (`None` while the set is still the ball, i.e. before the
    /// first affine layer behind leading flattens) and, last, the output box.
    fn enclose(&self, x0: &[f64], eps: f64, norm: BallNorm) -> Vec<Option<LayerBox>> {
        let shapes = self.net.shapes();
        let mut out = Vec::with_capacity(self.steps.len() + 1);
        let mut cur: Option<LayerBox> = None;
        let ball_box = || {
            let (lo, hi) = x0.iter().map(|&c| outward(c, eps)).unzip();
            LayerBox { lo, hi }
        };
        for (j, step) in self.steps.iter().enumerate() {
            if cur.is_none() && matches!(step, Step::Act(_) | Step::MaxPool(_)) {
                cur = Some(ball_box());
            }
            out.push(cur.clone());
            cur = match (step, cur.take()) {
                (Step::Flatten, c) => c,
                (Step::Affine(a), None) => Some(a.ball_image(x0, eps, norm, shapes[j])),
                (Step::Affine(a), Some(b)) => Some(a.box_image(&b, shapes[j])),
                (Step::Act(act), Some(b)) => {
                    let (lo, hi) =
                        b.lo.iter()
                            .zip(&b.hi)
                            .map(|(&l, &h)| sigma_bounds(*act, l, h))
                            .unzip();
                    Some(LayerBox { lo, hi })
                }
                (Step::MaxPool(win), Some(b)) => Some(maxpool_box(*win, shapes[j], &b)),
                (Step::Act(_) | Step::MaxPool(_), None) => unreachable!("converted above"),
            };
        }
        out.push(Some(cur.unwrap_or_else(ball_box)));
        out
    }

    /// Derivative box `[d_lo, d_hi]` of the activation at layer `j` from its input box.
    fn dbox(act: Activation, b: &LayerBox) -> LayerBox {
        let (lo, hi) =
            b.lo.iter()
                .zip(&b.hi)
                .map(|(&l, &h)| derivative_bounds(act, l, h))
                .unzip();
        LayerBox { lo, hi }
    }

    /// T10 step 3 (b), (c) from the output side, starting from `start` (R rows of length C,
    /// exact entries): returns `(M, P_c, P_r)` as R × d matrices.
    fn products(&self, boxes: &[Option<LayerBox>], start: Tensor) -> Products {
        let shapes = self.net.shapes();
        let r = start.batch;
        let mut pc = start;
        let mut pr = Tensor::zeros(r, pc.shape);
        let mut m = abs_t(&pc);
        let map2 = |a: &Tensor, f: &dyn Fn(f64) -> f64| Tensor {
            batch: a.batch,
            shape: a.shape,
            data: a.data.iter().map(|&v| f(v)).collect(),
        };
        for (j, step) in self.steps.iter().enumerate().rev() {
            let shape = shapes[j];
            match step {
                Step::Flatten => {
                    pc = pc.reshaped(shape);
                    pr = pr.reshaped(shape);
                    m = m.reshaped(shape);
                }
                Step::Affine(a) => {
                    let dummy = Tensor::zeros(1, shape);
                    let k = a.fan_out;
                    let f = inflate(k);
                    let t = a.abs.vjp_input(&dummy, &abs_t(&pc));
                    let q = a.abs.vjp_input(&dummy, &pr);
                    let new_pc = a.layer.vjp_input(&dummy, &pc);
                    let mut new_pr = q;
                    for (p, tv) in new_pr.data.iter_mut().zip(&t.data) {
                        *p = up(up(*p * f) + allowance(k + 1, *tv));
                    }
                    m = map2(&a.abs.vjp_input(&dummy, &m), &|v| up(v * f));
                    pc = new_pc;
                    pr = new_pr;
                }
                Step::Act(act) => {
                    let b = boxes[j].as_ref().expect("activation inputs are boxes");
                    let d = Self::dbox(*act, b);
                    let len = shape.len();
                    let g = gamma(2);
                    for row in 0..r {
                        for i in 0..len {
                            let (dl, dh) = (d.lo[i], d.hi[i]);
                            let dc = 0.5 * (dl + dh);
                            let dr = up(up(dh - dc).max(up(dc - dl)));
                            let adr = up(dc.abs() + dr);
                            let e = row * len + i;
                            let p = pc.data[e];
                            let prn = up(up(p.abs() * dr) + up(pr.data[e] * adr));
                            let cen = p * dc;
                            pc.data[e] = cen;
                            pr.data[e] = up(prn + up(g * cen.abs()));
                            m.data[e] = up(m.data[e] * dh);
                        }
                    }
                }
                Step::MaxPool(win) => {
                    let b = boxes[j].as_ref().expect("max-pool inputs are boxes");
                    (pc, pr, m) = maxpool_backward(*win, shape, b, &pc, &pr, &m);
                }
            }
        }
        let d = pc.row_len();
        let mat = |t: &Tensor| DMatrix::from_row_slice(r, d, &t.data);
        Products {
            m: mat(&m),
            pc: mat(&pc),
            pr: mat(&pr),
        }
    }

    /// T10 (a): the product of per-layer norm bounds on this centre's derivative boxes.
    fn per_layer(&self, boxes: &[Option<LayerBox>], spectral: bool) -> Result<f64> {
        let mut prod: f64 = 1.0;
        let shapes = self.net.shapes();
        let mut j = 0;
        while j < self.steps.len() {
            let next_act = match self.steps.get(j + 1) {
                Some(Step::Act(a)) => boxes[j + 1].as_ref().map(|b| Self::dbox(*a, b)),
                _ => None,
            };
            let factor = match (&self.steps[j], next_act) {
                (Step::Affine(a), Some(d)) => {
                    j += 1;
                    match &a.dense {
                        Some(w) => {
                            // ‖diag(d_hi)W‖₂ as the MLP path's hidden factor: the computed
                            // scaled matrix is within u|E| of the exact one (γ₂‖Ê‖_F added).
                            let mut e = w.clone();
                            let mut exact = true;
                            for (i, mut r) in e.row_iter_mut().enumerate() {
                                exact &= d.hi[i] == 0.0 || d.hi[i] == 1.0;
                                r *= d.hi[i];
                            }
                            let mut n = if spectral {
                                spectral_upper(&e)?
                            } else {
                                cheap_norm_upper(&e)
                            };
                            if !exact {
                                n = up(n + up(gamma(2) * norm2_upper(e.iter())));
                            }
                            n
                        }
                        None => up(d.hi.iter().fold(0.0, |m: f64, &v| m.max(v)) * a.norm),
                    }
                }
                (Step::Affine(a), None) => a.norm,
                (Step::Act(act), _) => match boxes[j].as_ref() {
                    Some(b) => Self::dbox(*act, b)
                        .hi
                        .iter()
                        .fold(0.0, |m: f64, &v| m.max(v)),
                    None => 1.0,
                },
                (Step::MaxPool(win), _) => match shapes[j] {
                    Shape::Image { h, w, .. } => maxpool_lipschitz(*win, h, w),
                    Shape::Flat(_) => 1.0,
                },
                (Step::Flatten, _) => 1.0,
            };
            prod = up(prod * factor);
            j += 1;
        }
        Ok(sane_upper(prod))
    }

    fn note(&self) -> String {
        if self.has_conv {
            format!("{LIBM_HYPOTHESIS}; {TRIG_HYPOTHESIS}")
        } else {
            LIBM_HYPOTHESIS.to_string()
        }
    }

    fn q(&self, v: f64, method: &str, norm: BallNorm) -> Quantity {
        let tol = if v.is_finite() {
            gamma(self.allowance_k) * v
        } else {
            0.0
        };
        Quantity::upper(v, tol).with_method(format!("ibp-{method}-{}", norm.name()))
    }

    /// One evaluation: the bound, the products (for pairs and the Jacobian lower bound) and (a).
    fn evaluate(
        &self,
        x0: &[f64],
        eps: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
        start: Tensor,
    ) -> Result<(LipschitzBound, Products, f64)> {
        let boxes = self.enclose(x0, eps, norm);
        let linf_scale = match norm {
            BallNorm::L2 => 1.0,
            BallNorm::LInf => self.sqrt_d_upper,
        };
        let a = sane_upper(up(
            self.per_layer(&boxes, opts.spectral_per_layer)? * linf_scale
        ));
        let prods = self.products(&boxes, start);
        let (b, c) = matrix_bounds(&prods, norm)?;
        let (lip, which) = pick(a, b, c);
        let won = match which {
            WhichBound::PerLayer => "per-layer",
            WhichBound::AbsProduct => "abs-product",
            WhichBound::MidpointRadius => "midpoint-radius",
        };
        let (pre, deriv) = if opts.keep_intervals {
            let mut pre = Vec::new();
            let mut deriv = Vec::new();
            for (j, s) in self.steps.iter().enumerate() {
                if let (Step::Act(act), Some(bx)) = (s, &boxes[j]) {
                    deriv.push(Self::dbox(*act, bx));
                    pre.push(bx.clone());
                }
            }
            (Some(pre), Some(deriv))
        } else {
            (None, None)
        };
        let bound = LipschitzBound {
            eps,
            norm,
            pre_activation: pre,
            derivative: deriv,
            bound_a: self.q(a, "per-layer", norm),
            bound_b: self.q(b, "abs-product", norm),
            bound_c: self.q(c, "midpoint-radius", norm),
            lip: self.q(lip, won, norm).with_note(self.note()),
            which_bound_won: which,
        };
        Ok((bound, prods, a))
    }

    fn identity_start(&self) -> Tensor {
        let c = self.net.output_dim();
        let mut t = Tensor::zeros(c, Shape::Flat(c));
        for i in 0..c {
            t.data[i * c + i] = 1.0;
        }
        t
    }

    /// The network.
    pub fn net(&self) -> &'a Sequential {
        self.net
    }

    /// T10 for the network on `B(x_0, ε)` (ε > 0): see [`net_local_lipschitz`].
    pub fn lipschitz(
        &self,
        x0: &[f64],
        eps: f64,
        norm: BallNorm,
        opts: LipschitzOptions,
    ) -> Result<LipschitzBound> {
        self.check_point(x0, eps, false)?;
        Ok(self.evaluate(x0, eps, norm, opts, self.identity_start())?.0)
    }

    /// T10 at every sample of `x` (one row per centre), in parallel over samples; the order is
    /// the sample order and each entry is computed sequentially (thread-count independent).
    /// Intervals are not kept.
    pub fn lipschitz_for_batch(
        &self,
        x: &Tensor,
        eps: f64,
        norm: BallNorm,
    ) -> Result<Vec<LipschitzBound>> {
        let opts = LipschitzOptions {
            keep_intervals: false,
            ..LipschitzOptions::default()
        };
        (0..x.batch)
            .into_par_iter()
            .map(|i| self.lipschitz(x.row(i), eps, norm, opts))
            .collect()
    }

    /// T9(c) pair bounds at `x_0` with label `y`: see [`net_pairwise_lipschitz`].
    pub fn pairwise(
        &self,
        x0: &[f64],
        eps: f64,
        norm: BallNorm,
        label: usize,
    ) -> Result<(LipschitzBound, PairwiseLipschitz)> {
        self.check_point(x0, eps, false)?;
        let c_out = self.net.output_dim();
        if label >= c_out {
            return Err(Error::invalid_argument(
                "label",
                format!("class {label} is outside 0..{c_out}"),
            ));
        }
        let others: Vec<usize> = (0..c_out).filter(|&c| c != label).collect();
        let (bound, _, _) = self.evaluate(
            x0,
            eps,
            norm,
            LipschitzOptions::default(),
            self.identity_start(),
        )?;
        let lip = bound.lip.value;
        let sqrt2_lip = up(std::f64::consts::SQRT_2 * lip);
        let mut difference_network = vec![0.0; c_out];
        let mut effective = vec![Quantity::upper(0.0, 0.0); c_out];
        if !others.is_empty() {
            // Rows e_y − e_c (exact): the difference network's Jacobian is (e_y − e_c)ᵀJ.
            let mut start = Tensor::zeros(others.len(), Shape::Flat(c_out));
            for (r, &c) in others.iter().enumerate() {
                start.data[r * c_out + label] = 1.0;
                start.data[r * c_out + c] = -1.0;
            }
            let (_, prods, a) = self.evaluate(x0, eps, norm, LipschitzOptions::default(), start)?;
            // (a) for a pair: ‖(e_y − e_c)ᵀ‖₂ = √2 times the whole network's (a).
            let a2 = up(std::f64::consts::SQRT_2 * a);
            for (r, &c) in others.iter().enumerate() {
                let (b, cc) = row_bounds(&prods, r, norm);
                let (best, _) = pick(a2, b, cc);
                difference_network[c] = best;
                let (eff, method) = if best < sqrt2_lip {
                    (best, "ibp-difference-network")
                } else {
                    (sqrt2_lip, "sqrt2-lipschitz")
                };
                effective[c] = self.q(eff, method, norm).with_method(method);
            }
        }
        Ok((
            bound,
            PairwiseLipschitz {
                label,
                difference_network,
                effective,
            },
        ))
    }

    /// A rigorous box for `f` over the ball (ε ≥ 0): see [`net_output_enclosure`].
    pub fn output_enclosure(&self, x0: &[f64], eps: f64, norm: BallNorm) -> Result<LayerBox> {
        self.check_point(x0, eps, true)?;
        let mut boxes = self.enclose(x0, eps, norm);
        boxes
            .pop()
            .flatten()
            .ok_or_else(|| Error::Internal("no output box".into()))
    }

    /// Rigorous bounds on `‖J_x(x_0)‖₂`: see [`net_jacobian_norm_bounds`].
    pub fn jacobian_norm_bounds(&self, x0: &[f64]) -> Result<JacobianNormBounds> {
        self.check_point(x0, 0.0, true)?;
        let opts = LipschitzOptions {
            keep_intervals: false,
            spectral_per_layer: true,
        };
        let (bound, prods, _) =
            self.evaluate(x0, 0.0, BallNorm::L2, opts, self.identity_start())?;
        let upper = bound.lip.value;
        let pc_lower = if prods.pc.iter().all(|v| v.is_finite()) {
            spectral_norm_bounds(&prods.pc)?.lower
        } else {
            0.0
        };
        let lower = dn(pc_lower - spectral_upper(&prods.pr)?)
            .max(0.0)
            .min(upper);
        Ok(JacobianNormBounds { lower, upper })
    }
}

/// THEORY.md T10 through convolutions and pooling (§7(d)): a certified upper bound `Lip` on the
/// local Lipschitz constant of `net` on `B(x_0, ε)` (ℓ2 or ℓ∞; `x_0` one NCHW sample, flattened),
/// `Lip = min(a, b, c)` of the per-layer, |W|-product and midpoint–radius bounds, with the
/// pre-activation and derivative intervals kept (`pre_activation[i]` and `derivative[i]` belong
/// to the i-th activation layer in layer order; on [`Sequential::from_mlp`] these are the MLP
/// path's `z_1, …, z_{L−1}`). For an ℓ2 ball it
/// bounds `sup ‖J_x‖₂` on the ball, for ℓ∞ `sup ‖J_x‖_{∞→2}`, as
/// [`local_lipschitz`](crate::measure::lipschitz::local_lipschitz). Every bound has kind
/// **upper** (rounding included; assumed hypotheses in `lip.note`).
///
/// Errors: `ε ≤ 0` or non-finite, `x_0` of the wrong length or non-finite
/// ([`Error::InvalidArgument`]); an unsupported layer or a leaky slope outside [0, 1]
/// ([`Error::Model`]).
pub fn net_local_lipschitz(
    net: &Sequential,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
) -> Result<LipschitzBound> {
    NetIbp::new(net)?.lipschitz(x0, eps, norm, LipschitzOptions::default())
}

/// THEORY.md T9(c) through convolutions: [`net_local_lipschitz`] and, for the label `y` and each
/// `c ≠ y`, the bound of the difference network `f_y − f_c` (the products started from the rows
/// `e_y − e_c`; (a) is `√2` times the network's), with the effective pair bound
/// `min(√2·Lip, difference bound)`, kind upper (entry y: 0).
pub fn net_pairwise_lipschitz(
    net: &Sequential,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
    label: usize,
) -> Result<(LipschitzBound, PairwiseLipschitz)> {
    NetIbp::new(net)?.pairwise(x0, eps, norm, label)
}

/// THEORY.md T9/T10 step 1 carried to the output: a rigorous box containing `f(x)` for every
/// `x` in `B(x_0, ε)` (ε ≥ 0; with ε = 0 it encloses the exact `f(x_0)` despite the forward
/// pass's rounding, for rigorous T9 margins). Kind: lower/upper ends, rigorous.
pub fn net_output_enclosure(
    net: &Sequential,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
) -> Result<LayerBox> {
    NetIbp::new(net)?.output_enclosure(x0, eps, norm)
}

/// Rigorous two-sided bounds on `‖J_x(x_0)‖₂` (T8(c) `g_i`) from the T10 enclosure at radius 0:
/// `‖P_c‖₂ − ‖P_r‖₂ ≤ ‖J‖₂ ≤ min(a, b, c)`; at a ReLU kink or a max-pool tie they cover every
/// element of the set-valued Jacobian.
pub fn net_jacobian_norm_bounds(net: &Sequential, x0: &[f64]) -> Result<JacobianNormBounds> {
    NetIbp::new(net)?.jacobian_norm_bounds(x0)
}
