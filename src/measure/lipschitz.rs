//! Certified local Lipschitz bounds by interval bound propagation (THEORY.md T10), with the
//! outward rounding of T10 "Floating point" and the difference network of T9(c) (§6 item 13).
//!
//! For a centre `x_0`, a radius ε and a ball `B(x_0, ε)` (ℓ2 or ℓ∞), [`local_lipschitz`] returns
//! `Lip` with `‖f(x) − f(x′)‖₂ ≤ Lip·‖x − x′‖` for all `x, x′` in the ball (‖·‖ the ball's norm),
//! and `‖J_x(x)‖ ≤ Lip` there for every choice of σ′ at a kink (T10 (ii), (iii)).
//!
//! **Algorithm** (T10):
//! 1. *Pre-activation intervals* `z_l ∈ [lo_l, hi_l]`, `l = 1..L−1`: layer 1 has centre
//!    `c = W_1x_0 + b_1` and radius `ρ_j = ε‖W_1[j,:]‖₂` (`ε‖W_1[j,:]‖₁` for ℓ∞); later layers map
//!    `[σ(lo), σ(hi)] = [μ ± ν]` through `W_{l+1}μ + b_{l+1} ± |W_{l+1}|ν`.
//! 2. *Derivative intervals* `[d_lo, d_hi] ∋ σ′(z)` from the T10 table (relative-error forms of
//!    tanh′ and sigmoid′, saturation rule beyond |z| > 350 resp. 700; identity: `D = I`).
//! 3. *Three bounds* on the Jacobian set `𝒥 = {W_L D_{L−1} ⋯ D_1 W_1}`, all built from the output
//!    side in `O(C Σ_l m_l m_{l−1})` (plus, for (a), one Gram eigendecomposition per layer):
//!    (a) `‖W_L‖₂ Π_l ‖diag(d_hi,l) W_l‖₂`; (b) `‖ |W_L| diag(d_hi) |W_{L−1}| ⋯ |W_1| ‖₂`;
//!    (c) midpoint–radius `‖P_c‖₂ + ‖P_r‖₂`. `Lip = min(a, b, c)`, kind **upper**.
//!
//! For an ℓ∞ ball the constant is from ‖·‖_∞ to ‖·‖₂: (b) and (c) use `‖M𝟙‖₂` for the entrywise
//! bounds `M ≥ |J|` (the |W|-product, resp. `|P_c| + P_r`), and (a) uses `√d·(a)` (since
//! `‖J‖_{∞→2} ≤ √d‖J‖₂`).
//!
//! **Floating point** (T10): every step is rounded outward. Layer-1 centre error
//! `γ_{d+1}(|W_1||x_0| + |b_1|)` joins the radius, `ρ_j` is multiplied by `1 + γ_{d+2}` and rounded
//! up, σ(lo)/σ(hi) are widened by the libm allowance, later radii get
//! `γ_{m_l+1}(|W||μ| + |W|ν + |b|)` with the **fan-in** as γ index (§6 item 12), every product of
//! nonnegative matrices with inner dimension k is divided by `1 − γ_k` (rounded up), the
//! midpoint–radius centre's rounding is added to `P_r`, and every norm is a §3 item 6 upper bound
//! ([`crate::linalg::spectral_norm_bounds`]), never power iteration. Each allowance is evaluated
//! "with one more γ step and a final round up" (THEORY §3). The remaining *assumed* hypothesis is
//! [`LIBM_HYPOTHESIS`].
//!
//! **Nesting.** The intervals for a smaller radius lie inside those for a larger one, so a bound
//! computed at ε is valid for every smaller radius (T10 "Nesting"); T9 relies on this.

use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::linalg::spectral_norm_bounds;
use crate::model::{Activation, Mlp};
use crate::quantity::{Quantity, UNIT_ROUNDOFF, gamma, round_down, round_up};

const U: f64 = UNIT_ROUNDOFF;

/// The assumed hypothesis of every T10 bound, to be printed in certificates (THEORY.md T10
/// "Floating point"). log1p enters only through softplus.
pub const LIBM_HYPOTHESIS: &str = "libm exp, tanh and log1p have relative error <= 2u (1 ulp); \
     a correctly rounded or interval libm removes this assumption (THEORY.md T10)";

/// `2^−1000`, the derivative upper bound of a saturated tanh/sigmoid/softplus unit (T10).
const SATURATED_D_HI: f64 = 9.332636185032189e-302;

/// Which norm the ball `B(x_0, ε)` is taken in (T10; the ℓ∞ variant is T10 "ℓ∞ variant").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BallNorm {
    /// Euclidean ball; Lip bounds `‖J‖₂`.
    L2,
    /// Max-norm ball (a box); Lip bounds `‖J‖_{∞→2}`.
    LInf,
}

impl BallNorm {
    /// `"l2"` or `"linf"`.
    pub fn name(&self) -> &'static str {
        match self {
            BallNorm::L2 => "l2",
            BallNorm::LInf => "linf",
        }
    }
}

/// Which of the three T10 bounds attained the minimum (ties go to the earlier letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhichBound {
    /// (a) product of per-layer spectral norms.
    PerLayer,
    /// (b) spectral norm of the |W|-product.
    AbsProduct,
    /// (c) midpoint–radius product.
    MidpointRadius,
}

/// A box `[lo, hi]` (entrywise) for one layer: pre-activations `z_l` or derivatives `σ′(z_l)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerBox {
    /// Lower ends (may be −∞ if the propagation overflowed; still a valid enclosure).
    pub lo: Vec<f64>,
    /// Upper ends (may be +∞).
    pub hi: Vec<f64>,
}

/// Options of [`local_lipschitz_with`] and [`lipschitz_for_dataset_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LipschitzOptions {
    /// Keep the pre-activation and derivative intervals in the result.
    pub keep_intervals: bool,
    /// Bound (a) with rigorous spectral norms (one Gram eigendecomposition per hidden layer and
    /// point, `O(Σ min(m_l, m_{l−1})³)`). When false, (a) uses the cheaper rigorous upper bound
    /// `min(‖·‖_F, √(‖·‖₁‖·‖_∞))` per layer: still valid, usually looser.
    pub spectral_per_layer: bool,
}

impl Default for LipschitzOptions {
    fn default() -> Self {
        Self {
            keep_intervals: true,
            spectral_per_layer: true,
        }
    }
}

/// A certified local Lipschitz bound at one centre (THEORY.md T10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LipschitzBound {
    /// The radius ε of the ball.
    pub eps: f64,
    /// The norm of the ball.
    pub norm: BallNorm,
    /// Pre-activation intervals of `z_1, …, z_{L−1}` (T10 step 1), if kept.
    pub pre_activation: Option<Vec<LayerBox>>,
    /// Derivative intervals `[d_lo, d_hi]` of the hidden units (T10 step 2), if kept.
    pub derivative: Option<Vec<LayerBox>>,
    /// (a) `‖W_L‖₂ Π_l ‖diag(d_hi,l) W_l‖₂` (times √d for ℓ∞), kind upper.
    pub bound_a: Quantity,
    /// (b) the |W|-product bound, kind upper.
    pub bound_b: Quantity,
    /// (c) the midpoint–radius bound `‖P_c‖₂ + ‖P_r‖₂` (ℓ∞: `‖(|P_c| + P_r)𝟙‖₂`), kind upper.
    pub bound_c: Quantity,
    /// `Lip = min(a, b, c)`, kind upper; `L_i(ε)` of T8/T9.
    pub lip: Quantity,
    /// The bound that attained the minimum.
    pub which_bound_won: WhichBound,
}

/// Pairwise bounds for classification (T9(c), THEORY §6 item 13): for the label `y` and every
/// `c ≠ y`, an upper bound on the Lipschitz constant of `f_y − f_c` on the ball.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairwiseLipschitz {
    /// The label y.
    pub label: usize,
    /// Entry c: the T10 bound `min(a, b, c)` of the difference network whose last layer is the
    /// single row `W_L[y] − W_L[c]` (bias `b_L[y] − b_L[c]`), on the same hidden intervals.
    /// Entry y is 0.
    pub difference_network: Vec<f64>,
    /// Entry c: `L^{(y,c)} = min(√2·Lip, difference_network[c])`, kind upper (entry y: 0).
    pub effective: Vec<Quantity>,
}

/// Rigorous two-sided bounds on `‖J_x(x_0)‖₂` at a point (T8(c) `g_i`), from the T10 enclosure at
/// radius 0. At a ReLU kink the Jacobian is set-valued and the bounds cover every σ′(0) ∈ [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JacobianNormBounds {
    /// `‖P_c‖₂ − ‖P_r‖₂`, rounded down, at least 0.
    pub lower: f64,
    /// `min(a, b, c)` at radius 0.
    pub upper: f64,
}

// ---------------------------------------------------------------------------------------------
// Directed-rounding helpers. `round_up(fl(a ∘ b)) ≥ a ∘ b` for one correctly rounded operation on
// exact operands (round_up moves at least one ulp, and adds f64::MIN_POSITIVE for subnormals).
// ---------------------------------------------------------------------------------------------

#[inline]
pub(crate) fn up(x: f64) -> f64 {
    round_up(x)
}

#[inline]
pub(crate) fn dn(x: f64) -> f64 {
    round_down(x)
}

/// An upper bound of `1/(1 − γ_k)`: the factor that turns a floating-point sum of k nonnegative
/// products into an upper bound of the exact sum (THEORY T10 "Products"). One more γ step covers
/// the evaluation of γ and of the division.
pub(crate) fn inflate(k: usize) -> f64 {
    let g = gamma(k + 1);
    if g >= 1.0 {
        f64::INFINITY
    } else {
        up(1.0 / (1.0 - g))
    }
}

/// An upper bound of `γ_k·s_true` from a computed nonnegative sum `s` of k terms: `γ_{k+1}·s`,
/// rounded up (`γ_k/(1−γ_k) ≤ γ_{k+1}`).
pub(crate) fn allowance(k: usize, s: f64) -> f64 {
    up(gamma(k + 1) * s)
}

/// NaN → the widest value (an interval end that overflowed is replaced by ±∞: still sound).
#[inline]
pub(crate) fn lo_or_neg_inf(x: f64) -> f64 {
    if x.is_nan() { f64::NEG_INFINITY } else { x }
}

#[inline]
pub(crate) fn hi_or_inf(x: f64) -> f64 {
    if x.is_nan() { f64::INFINITY } else { x }
}

/// NaN upper bounds become +∞ (vacuous but sound).
#[inline]
pub(crate) fn sane_upper(x: f64) -> f64 {
    if x.is_nan() { f64::INFINITY } else { x }
}

/// Upper bound of the Euclidean norm of a vector (sum of n squares: γ_n).
pub(crate) fn norm2_upper<'a>(v: impl Iterator<Item = &'a f64>) -> f64 {
    let mut s = 0.0;
    let mut n = 0usize;
    for x in v {
        s += x * x;
        n += 1;
    }
    up(up(s * inflate(n)).sqrt())
}

/// Upper bound of a sum of nonnegative numbers (γ_n).
pub(crate) fn sum_upper<'a>(v: impl Iterator<Item = &'a f64>) -> f64 {
    let mut s = 0.0;
    let mut n = 0usize;
    for x in v {
        s += x;
        n += 1;
    }
    up(s * inflate(n))
}

/// Upper bound of ‖A‖₂ via §3 item 6 (∞ for a non-finite matrix).
pub(crate) fn spectral_upper(a: &DMatrix<f64>) -> Result<f64> {
    if a.iter().any(|v| !v.is_finite()) {
        return Ok(f64::INFINITY);
    }
    Ok(sane_upper(spectral_norm_bounds(a)?.upper))
}

/// Cheap rigorous upper bound `min(‖A‖_F, √(‖A‖₁‖A‖_∞))`, rounded up.
pub(crate) fn cheap_norm_upper(a: &DMatrix<f64>) -> f64 {
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let frob = norm2_upper(a.iter());
    let one = a
        .column_iter()
        .map(|c| sum_upper(c.iter().map(|v| v.abs()).collect::<Vec<_>>().iter()))
        .fold(0.0, f64::max);
    let inf = a
        .row_iter()
        .map(|r| sum_upper(r.iter().map(|v| v.abs()).collect::<Vec<_>>().iter()))
        .fold(0.0, f64::max);
    frob.min(up(up(one * inf).sqrt()))
}

/// `fl(A·B)` for nonnegative A, B, turned into an entrywise upper bound of the exact product.
fn abs_product_upper(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    let f = inflate(a.ncols());
    (a * b).map(|v| up(v * f))
}

// ---------------------------------------------------------------------------------------------
// Per-network preparation and the interval propagation.
// ---------------------------------------------------------------------------------------------

/// Per-network data shared by every centre: `|W_l|` and the upper bound of `‖W_L‖₂`.
pub(crate) struct Prepared<'a> {
    pub(crate) mlp: &'a Mlp,
    abs_w: Vec<DMatrix<f64>>,
    last_norm_upper: f64,
    sqrt_d_upper: f64,
}

impl<'a> Prepared<'a> {
    /// Validates the activation for a certified T10 statement (monotone σ, leaky slope in [0, 1]).
    pub(crate) fn new(mlp: &'a Mlp) -> Result<Self> {
        if let Activation::LeakyRelu { alpha } = mlp.activation()
            && !(alpha.is_finite() && (0.0..=1.0).contains(&alpha))
        {
            return Err(Error::Model(format!(
                "T10 certified bounds need a leaky ReLU slope 0 <= alpha <= 1, got {alpha}"
            )));
        }
        let abs_w = mlp.layers().iter().map(|l| l.weight.abs()).collect();
        let last = &mlp.layers()[mlp.depth() - 1].weight;
        Ok(Self {
            mlp,
            abs_w,
            last_norm_upper: spectral_upper(last)?,
            sqrt_d_upper: up((mlp.input_dim() as f64).sqrt()),
        })
    }

    pub(crate) fn check_point(&self, x0: &[f64], eps: f64, allow_zero: bool) -> Result<()> {
        let d = self.mlp.input_dim();
        if x0.len() != d {
            return Err(Error::invalid_argument(
                "x0",
                format!(
                    "the centre has {} entries, the network expects d = {d}",
                    x0.len()
                ),
            ));
        }
        if let Some(k) = x0.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid_argument(
                "x0",
                format!("entry {k} is not finite ({})", x0[k]),
            ));
        }
        let ok = eps.is_finite() && (eps > 0.0 || (allow_zero && eps == 0.0));
        if !ok {
            return Err(Error::invalid_argument(
                "eps",
                format!("the radius must be finite and > 0, got {eps}"),
            ));
        }
        Ok(())
    }

    /// Rigorous enclosures of `z_1, …, z_layers` over the ball (T10 step 1 with outward
    /// rounding). `layers` may be `L` (then the last box encloses `f` on the ball).
    pub(crate) fn enclose(
        &self,
        x0: &[f64],
        eps: f64,
        norm: BallNorm,
        layers: usize,
    ) -> Vec<LayerBox> {
        let mlp = self.mlp;
        let act = mlp.activation();
        let mut boxes = Vec::with_capacity(layers);
        if layers == 0 {
            return boxes;
        }
        // Layer 1: c = fl(W_1 x_0 + b_1), error γ_{d+1}(|W_1||x_0| + |b_1|) into the radius;
        // ρ_j = fl(ε‖W_1[j,:]‖)·(1 + γ_{d+2}), rounded up.
        let l1 = &mlp.layers()[0];
        let (m, d) = l1.weight.shape();
        let mut c = vec![0.0; m];
        let mut s = vec![0.0; m];
        let mut nrm = vec![0.0; m];
        for (k, col) in l1.weight.column_iter().enumerate() {
            let xk = x0[k];
            for (j, &w) in col.iter().enumerate() {
                let p = w * xk;
                c[j] += p;
                s[j] += p.abs();
                nrm[j] += match norm {
                    BallNorm::L2 => w * w,
                    BallNorm::LInf => w.abs(),
                };
            }
        }
        let widen = 1.0 + gamma(d + 3);
        let mut lo = vec![0.0; m];
        let mut hi = vec![0.0; m];
        for j in 0..m {
            let cj = c[j] + l1.bias[j];
            let sj = s[j] + l1.bias[j].abs();
            let n = match norm {
                BallNorm::L2 => nrm[j].sqrt(),
                BallNorm::LInf => nrm[j],
            };
            let rho = up(up(eps * n) * widen);
            let r = up(rho + allowance(d + 1, sj));
            lo[j] = lo_or_neg_inf(dn(cj - r));
            hi[j] = hi_or_inf(up(cj + r));
        }
        boxes.push(LayerBox { lo, hi });
        // Later layers: [σ_lo, σ_hi] = [μ ± ν], z = W μ + b ± (|W|ν + γ_{m_l+1}(|W||μ| + |W|ν + |b|)).
        for layer in &mlp.layers()[1..layers] {
            let prev = boxes.last().expect("layer 1 pushed");
            let (m_out, m_in) = layer.weight.shape();
            let mut mu = vec![0.0; m_in];
            let mut nu = vec![0.0; m_in];
            for k in 0..m_in {
                let (sl, sh) = sigma_bounds(act, prev.lo[k], prev.hi[k]);
                let mk = 0.5 * (sl + sh);
                mu[k] = mk;
                nu[k] = up(up(sh - mk).max(up(mk - sl)));
            }
            let mut c = vec![0.0; m_out];
            let mut s = vec![0.0; m_out];
            let mut t = vec![0.0; m_out];
            for (k, col) in layer.weight.column_iter().enumerate() {
                let (mk, nk) = (mu[k], nu[k]);
                for (j, &w) in col.iter().enumerate() {
                    let p = w * mk;
                    c[j] += p;
                    s[j] += p.abs();
                    t[j] += w.abs() * nk;
                }
            }
            let mut lo = vec![0.0; m_out];
            let mut hi = vec![0.0; m_out];
            for j in 0..m_out {
                let cj = c[j] + layer.bias[j];
                let sj = s[j] + layer.bias[j].abs();
                // γ index: the fan-in m_in (§6 item 12); allowance() adds the extra step.
                let r = up(t[j] + allowance(m_in + 1, up(sj + t[j])));
                lo[j] = lo_or_neg_inf(dn(cj - r));
                hi[j] = hi_or_inf(up(cj + r));
            }
            boxes.push(LayerBox { lo, hi });
        }
        boxes
    }
}

/// `[σ(lo) rounded down, σ(hi) rounded up]` by the libm allowance: 0 for ReLU/identity (exact),
/// 2u for leaky ReLU (one product), 3u for tanh (2u libm + evaluation), 8u for sigmoid and
/// softplus (exp, one add, one division or log1p). Bounded σ are clamped to their range.
pub(crate) fn sigma_bounds(act: Activation, lo: f64, hi: f64) -> (f64, f64) {
    let (vl, vh) = (act.value(lo), act.value(hi));
    let rel = match act {
        Activation::Relu | Activation::Identity => return (vl, vh),
        Activation::LeakyRelu { .. } => 2.0 * U,
        Activation::Tanh => 3.0 * U,
        Activation::Sigmoid | Activation::Softplus => 8.0 * U,
    };
    let mut sl = dn(vl - rel * vl.abs());
    let mut sh = up(vh + rel * vh.abs());
    match act {
        Activation::Tanh => {
            sl = sl.max(-1.0);
            sh = sh.min(1.0);
        }
        Activation::Sigmoid => {
            sl = sl.max(0.0);
            sh = sh.min(1.0);
        }
        Activation::Softplus => sl = sl.max(0.0),
        _ => {}
    }
    (lo_or_neg_inf(sl), hi_or_inf(sh))
}

/// tanh′(z) = 4t/(1+t)², t = e^{−2|z|} (relative error ≤ 8u under the libm hypothesis).
fn tanh_prime(z: f64) -> f64 {
    let t = (-2.0 * z.abs()).exp();
    4.0 * t / ((1.0 + t) * (1.0 + t))
}

/// sigmoid′(z) = t/(1+t)², t = e^{−|z|}.
fn sigmoid_prime(z: f64) -> f64 {
    let t = (-z.abs()).exp();
    t / ((1.0 + t) * (1.0 + t))
}

/// The T10 derivative interval `[d_lo, d_hi] ∋ σ′(z)` for `z ∈ [lo, hi]`, with
/// `d_hi := v(1 + 16u)`, `d_lo := v(1 − 16u)` for the smooth σ and the saturation rule.
pub(crate) fn derivative_bounds(act: Activation, lo: f64, hi: f64) -> (f64, f64) {
    match act {
        Activation::Identity => (1.0, 1.0),
        Activation::Relu => {
            if lo > 0.0 {
                (1.0, 1.0)
            } else if hi < 0.0 {
                (0.0, 0.0)
            } else {
                (0.0, 1.0)
            }
        }
        Activation::LeakyRelu { alpha } => {
            if lo > 0.0 {
                (1.0, 1.0)
            } else if hi < 0.0 {
                (alpha, alpha)
            } else {
                (alpha, 1.0)
            }
        }
        Activation::Tanh | Activation::Sigmoid => {
            let (prime, peak, sat): (fn(f64) -> f64, f64, f64) = match act {
                Activation::Tanh => (tanh_prime, 1.0, 350.0),
                _ => (sigmoid_prime, 0.25, 700.0),
            };
            let (al, ah) = (lo.abs(), hi.abs());
            let amax = al.max(ah);
            let d_hi = if lo <= 0.0 && hi >= 0.0 {
                peak
            } else {
                let amin = al.min(ah);
                if amin > sat {
                    SATURATED_D_HI
                } else {
                    (prime(amin) * (1.0 + 16.0 * U)).min(peak)
                }
            };
            let d_lo = if amax > sat || amax.is_nan() {
                0.0
            } else {
                prime(amax) * (1.0 - 16.0 * U)
            };
            (d_lo, d_hi)
        }
        Activation::Softplus => {
            // σ′ = sigmoid, increasing: [sigmoid(lo), sigmoid(hi)].
            let d_lo = if lo.is_nan() || lo < -700.0 {
                0.0
            } else {
                Activation::Sigmoid.value(lo) * (1.0 - 16.0 * U)
            };
            let d_hi = if hi < -700.0 {
                SATURATED_D_HI
            } else if hi.is_nan() {
                1.0
            } else {
                (Activation::Sigmoid.value(hi) * (1.0 + 16.0 * U)).min(1.0)
            };
            (d_lo, d_hi)
        }
    }
}

/// Derivative boxes of the hidden layers from their pre-activation boxes.
fn derivative_boxes(act: Activation, pre: &[LayerBox]) -> Vec<LayerBox> {
    pre.iter()
        .map(|b| {
            let (lo, hi) =
                b.lo.iter()
                    .zip(&b.hi)
                    .map(|(&l, &h)| derivative_bounds(act, l, h))
                    .unzip();
            LayerBox { lo, hi }
        })
        .collect()
}

/// The products of T10 step 3 for a block of starting rows (R × m_{L−1}), multiplied from the
/// output side: `m` is the |W|-product (b), `(pc, pr)` the midpoint–radius enclosure (c). All
/// three are R × d. Each row evolves independently, so the rows of a difference network can be
/// stacked.
pub(crate) struct Products {
    pub(crate) m: DMatrix<f64>,
    pub(crate) pc: DMatrix<f64>,
    pub(crate) pr: DMatrix<f64>,
}

fn propagate_products(
    prep: &Prepared<'_>,
    deriv: &[LayerBox],
    start_abs: DMatrix<f64>,
    start_c: DMatrix<f64>,
    start_r: DMatrix<f64>,
) -> Products {
    let layers = prep.mlp.layers();
    let (mut m, mut pc, mut pr) = (start_abs, start_c, start_r);
    for l in (0..deriv.len()).rev() {
        // Hidden layer l+1 (1-based): D_{l+1} then W_{l+1} = layers[l].
        let dbox = &deriv[l];
        let w = &layers[l].weight;
        let aw = &prep.abs_w[l];
        let (inner, fan_in) = w.shape();
        // (b): M ← (M diag(d_hi)) |W|, entrywise rounded up, product divided by 1 − γ_inner.
        for (j, mut col) in m.column_iter_mut().enumerate() {
            let dh = dbox.hi[j];
            col.apply(|v| *v = up(*v * dh));
        }
        m = abs_product_upper(&m, aw);
        // (c): D_c = fl(½(d_lo + d_hi)), D_r = max(d_hi − D_c, D_c − d_lo) rounded up;
        // P_r' = |P_c| D_r + P_r (|D_c| + D_r); A = fl(P_c D_c); P_c ← fl(A W);
        // P_r ← (P_r' + γ|A|)|W| / (1 − γ_inner), where γ|A||W| bounds the centre's rounding.
        // γ index: inner dimension + 1 (and THEORY's literal m_{l−1} + 1) + 1 extra step.
        let g = gamma(inner.max(fan_in) + 2);
        let mut a = pc.clone();
        let mut q = pr;
        for j in 0..inner {
            let (dl, dh) = (dbox.lo[j], dbox.hi[j]);
            let dc = 0.5 * (dl + dh);
            let dr = up(up(dh - dc).max(up(dc - dl)));
            let adr = up(dc.abs() + dr);
            let mut acol = a.column_mut(j);
            let mut qcol = q.column_mut(j);
            for (av, qv) in acol.iter_mut().zip(qcol.iter_mut()) {
                let p = *av;
                let prn = up(up(p.abs() * dr) + up(*qv * adr));
                let cen = p * dc;
                *av = cen;
                *qv = up(prn + up(g * cen.abs()));
            }
        }
        pc = &a * w;
        pr = abs_product_upper(&q, aw);
    }
    Products { m, pc, pr }
}

/// Π_l ‖diag(d_hi,l) W_l‖₂ over the hidden layers, rounded up. For a non-binary d_hi the computed
/// matrix `Ê` differs from the exact one by at most `u|E|`, so `γ_2‖Ê‖_F` is added.
fn hidden_factor(prep: &Prepared<'_>, deriv: &[LayerBox], spectral: bool) -> Result<f64> {
    let mut prod = 1.0;
    for (l, dbox) in deriv.iter().enumerate() {
        let w = &prep.mlp.layers()[l].weight;
        let mut e = w.clone();
        let mut exact = true;
        for (j, mut row) in e.row_iter_mut().enumerate() {
            let dh = dbox.hi[j];
            exact &= dh == 0.0 || dh == 1.0;
            row *= dh;
        }
        let mut n = if spectral {
            spectral_upper(&e)?
        } else {
            cheap_norm_upper(&e)
        };
        if !exact {
            n = up(n + up(gamma(2) * norm2_upper(e.iter())));
        }
        prod = up(prod * n);
    }
    Ok(sane_upper(prod))
}

/// The (b) and (c) bounds of the whole block of rows as one matrix Jacobian.
pub(crate) fn matrix_bounds(p: &Products, norm: BallNorm) -> Result<(f64, f64)> {
    match norm {
        BallNorm::L2 => {
            let b = spectral_upper(&p.m)?;
            let c = up(spectral_upper(&p.pc)? + spectral_upper(&p.pr)?);
            Ok((sane_upper(b), sane_upper(c)))
        }
        BallNorm::LInf => {
            // ‖J‖_{∞→2} ≤ ‖M𝟙‖₂ for M ≥ |J| entrywise.
            let rows_b: Vec<f64> = p.m.row_iter().map(|r| sum_upper(r.iter())).collect();
            let rows_c: Vec<f64> = abs_plus(&p.pc, &p.pr)
                .row_iter()
                .map(|r| sum_upper(r.iter()))
                .collect();
            Ok((
                sane_upper(norm2_upper(rows_b.iter())),
                sane_upper(norm2_upper(rows_c.iter())),
            ))
        }
    }
}

/// Entrywise `|P_c| + P_r`, rounded up.
fn abs_plus(pc: &DMatrix<f64>, pr: &DMatrix<f64>) -> DMatrix<f64> {
    pc.zip_map(pr, |c, r| up(c.abs() + r))
}

/// (b) and (c) of row `i` alone (a scalar-output network: the Jacobian is a row vector, whose
/// spectral norm is its Euclidean norm and whose ∞→2 norm is its 1-norm).
pub(crate) fn row_bounds(p: &Products, i: usize, norm: BallNorm) -> (f64, f64) {
    let (m, pc, pr) = (p.m.row(i), p.pc.row(i), p.pr.row(i));
    match norm {
        BallNorm::L2 => (
            sane_upper(norm2_upper(m.iter())),
            sane_upper(up(norm2_upper(pc.iter()) + norm2_upper(pr.iter()))),
        ),
        BallNorm::LInf => {
            let s: Vec<f64> = pc
                .iter()
                .zip(pr.iter())
                .map(|(c, r)| up(c.abs() + r))
                .collect();
            (
                sane_upper(sum_upper(m.iter())),
                sane_upper(sum_upper(s.iter())),
            )
        }
    }
}

/// min of the three with the winner (ties to the earlier letter).
pub(crate) fn pick(a: f64, b: f64, c: f64) -> (f64, WhichBound) {
    let mut best = (a, WhichBound::PerLayer);
    if b < best.0 {
        best = (b, WhichBound::AbsProduct);
    }
    if c < best.0 {
        best = (c, WhichBound::MidpointRadius);
    }
    best
}

/// A-priori size of the rounding allowance included in a T10 bound: `γ_K·value` with
/// `K = Σ_l (m_{l−1} + 3)`, reported as the Quantity's `tol`.
fn allowance_estimate(mlp: &Mlp, value: f64) -> f64 {
    let k: usize = mlp.layers().iter().map(|l| l.fan_in() + 3).sum();
    if value.is_finite() {
        gamma(k) * value
    } else {
        0.0
    }
}

/// Everything one centre yields, for [`local_lipschitz`], [`pairwise_lipschitz`] and T8/T9.
pub(crate) struct Evaluation {
    pub(crate) bound: LipschitzBound,
    pub(crate) pairs: Option<PairwiseLipschitz>,
    /// Lower bound of ‖P_c‖₂ − ‖P_r‖₂ (only when asked; used at radius 0 for ‖J_x(x_0)‖₂).
    pub(crate) jac_lower: Option<f64>,
}

/// T10 at one centre (eps ≥ 0; validated by the callers).
pub(crate) fn evaluate(
    prep: &Prepared<'_>,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
    opts: LipschitzOptions,
    label: Option<usize>,
    want_jac_lower: bool,
) -> Result<Evaluation> {
    let mlp = prep.mlp;
    let depth = mlp.depth();
    let last = &mlp.layers()[depth - 1].weight;
    let pre = prep.enclose(x0, eps, norm, depth - 1);
    let deriv = derivative_boxes(mlp.activation(), &pre);
    let hidden = hidden_factor(prep, &deriv, opts.spectral_per_layer)?;
    let linf_scale = match norm {
        BallNorm::L2 => 1.0,
        BallNorm::LInf => prep.sqrt_d_upper,
    };

    // The whole network: start P_c = W_L, P_r = 0, M = |W_L| (exact).
    let prods = propagate_products(
        prep,
        &deriv,
        prep.abs_w[depth - 1].clone(),
        last.clone(),
        DMatrix::zeros(last.nrows(), last.ncols()),
    );
    let a = sane_upper(up(up(prep.last_norm_upper * hidden) * linf_scale));
    let (b, c) = matrix_bounds(&prods, norm)?;
    let (lip, which) = pick(a, b, c);
    let jac_lower = if want_jac_lower {
        let pc_lower = if prods.pc.iter().all(|v| v.is_finite()) {
            spectral_norm_bounds(&prods.pc)?.lower
        } else {
            0.0
        };
        let pr_upper = spectral_upper(&prods.pr)?;
        Some(dn(pc_lower - pr_upper).max(0.0))
    } else {
        None
    };
    let q = |v: f64, method: &str| {
        Quantity::upper(v, allowance_estimate(mlp, v))
            .with_method(format!("ibp-{method}-{}", norm.name()))
    };
    let method_won = match which {
        WhichBound::PerLayer => "per-layer",
        WhichBound::AbsProduct => "abs-product",
        WhichBound::MidpointRadius => "midpoint-radius",
    };
    let bound = LipschitzBound {
        eps,
        norm,
        pre_activation: None,
        derivative: None,
        bound_a: q(a, "per-layer"),
        bound_b: q(b, "abs-product"),
        bound_c: q(c, "midpoint-radius"),
        lip: q(lip, method_won).with_note(LIBM_HYPOTHESIS),
        which_bound_won: which,
    };

    let pairs = match label {
        None => None,
        Some(y) => Some(pairwise_from(
            prep, &deriv, hidden, linf_scale, norm, y, lip,
        )?),
    };
    let bound = if opts.keep_intervals {
        LipschitzBound {
            pre_activation: Some(pre),
            derivative: Some(deriv),
            ..bound
        }
    } else {
        bound
    };
    Ok(Evaluation {
        bound,
        pairs,
        jac_lower,
    })
}

/// The difference networks `W_L[y] − W_L[c]` for all `c ≠ y`, stacked as one block of rows.
fn pairwise_from(
    prep: &Prepared<'_>,
    deriv: &[LayerBox],
    hidden: f64,
    linf_scale: f64,
    norm: BallNorm,
    y: usize,
    lip: f64,
) -> Result<PairwiseLipschitz> {
    let mlp = prep.mlp;
    let last = &mlp.layers()[mlp.depth() - 1].weight;
    let (c_out, width) = last.shape();
    if y >= c_out {
        return Err(Error::invalid_argument(
            "label",
            format!("class {y} is outside 0..{c_out}"),
        ));
    }
    let others: Vec<usize> = (0..c_out).filter(|&c| c != y).collect();
    // S = fl(W_L[y] − W_L[c]); the exact difference satisfies |Δ − S| ≤ u|Δ| ≤ γ_1|S|.
    let s = DMatrix::from_fn(others.len(), width, |r, j| {
        last[(y, j)] - last[(others[r], j)]
    });
    let g2 = gamma(2);
    let start_abs = s.map(|v| up(v.abs() * (1.0 + g2)));
    let start_r = s.map(|v| up(g2 * v.abs()));
    let prods = propagate_products(prep, deriv, start_abs, s.clone(), start_r);
    let sqrt2_lip = up(std::f64::consts::SQRT_2 * lip);
    let mut difference_network = vec![0.0; c_out];
    let mut effective = vec![Quantity::upper(0.0, 0.0); c_out];
    for (r, &c) in others.iter().enumerate() {
        let row_norm = up(norm2_upper(s.row(r).iter()) * (1.0 + g2));
        let a = sane_upper(up(up(row_norm * hidden) * linf_scale));
        let (b, cc) = row_bounds(&prods, r, norm);
        let (best, _) = pick(a, b, cc);
        difference_network[c] = best;
        let (eff, method) = if best < sqrt2_lip {
            (best, "ibp-difference-network")
        } else {
            (sqrt2_lip, "sqrt2-lipschitz")
        };
        effective[c] =
            Quantity::upper(eff, allowance_estimate(mlp, eff)).with_method(method.to_string());
    }
    Ok(PairwiseLipschitz {
        label: y,
        difference_network,
        effective,
    })
}

/// T10: a certified upper bound `Lip` on the local Lipschitz constant of the network on
/// `B(x_0, ε)` (ℓ2 or ℓ∞), the minimum of the per-layer (a), |W|-product (b) and midpoint–radius
/// (c) bounds, with the intervals kept. Errors: `ε ≤ 0` or non-finite, `x_0` of the wrong length
/// or non-finite ([`Error::InvalidArgument`]); a leaky ReLU slope outside [0, 1] ([`Error::Model`]).
///
/// ```
/// use flatcert::measure::lipschitz::{BallNorm, local_lipschitz};
/// use flatcert::model::{Activation, Dense, Mlp};
/// use nalgebra::{dmatrix, dvector};
/// // f(x) = |x| (THEORY.md §5): at x0 = 1, ε = 2 the bounds are (2, 2, 1).
/// let mlp = Mlp::new(
///     vec![
///         Dense { weight: dmatrix![1.0; -1.0], bias: dvector![0.0, 0.0] },
///         Dense { weight: dmatrix![1.0, 1.0], bias: dvector![0.0] },
///     ],
///     Activation::Relu,
/// )
/// .unwrap();
/// let b = local_lipschitz(&mlp, &[1.0], 2.0, BallNorm::L2).unwrap();
/// assert!(b.lip.value >= 1.0 && b.lip.value < 1.0 + 1e-12);
/// ```
pub fn local_lipschitz(mlp: &Mlp, x0: &[f64], eps: f64, norm: BallNorm) -> Result<LipschitzBound> {
    local_lipschitz_with(mlp, x0, eps, norm, LipschitzOptions::default())
}

/// [`local_lipschitz`] with explicit [`LipschitzOptions`].
pub fn local_lipschitz_with(
    mlp: &Mlp,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
    opts: LipschitzOptions,
) -> Result<LipschitzBound> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, eps, false)?;
    Ok(evaluate(&prep, x0, eps, norm, opts, None, false)?.bound)
}

/// T10 and the T9(c) difference networks at one centre with label `y` (§6 item 13): the same
/// hidden intervals, last layer `W_L[y] − W_L[c]` for every `c ≠ y` (the bias difference does
/// not enter a Jacobian), each bound the minimum of its own (a), (b), (c); the effective pair
/// bound is `min(√2·Lip, difference bound)`. Cost `O(C Σ_l m_l m_{l−1})` for all pairs together.
pub fn pairwise_lipschitz(
    mlp: &Mlp,
    x0: &[f64],
    eps: f64,
    norm: BallNorm,
    label: usize,
) -> Result<(LipschitzBound, PairwiseLipschitz)> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, eps, false)?;
    let ev = evaluate(
        &prep,
        x0,
        eps,
        norm,
        LipschitzOptions::default(),
        Some(label),
        false,
    )?;
    let pairs = ev
        .pairs
        .ok_or_else(|| Error::Internal("pairwise bounds were not computed".into()))?;
    Ok((ev.bound, pairs))
}

/// T10 at every training input `x_i` (the `L_i(ε)` of T8/T9), in parallel over samples with
/// rayon; the output order is the sample order and each entry is computed sequentially, so the
/// result does not depend on the thread count. Intervals are not kept.
pub fn lipschitz_for_dataset(
    mlp: &Mlp,
    ds: &Dataset,
    eps: f64,
    norm: BallNorm,
) -> Result<Vec<LipschitzBound>> {
    lipschitz_for_dataset_with(
        mlp,
        ds,
        eps,
        norm,
        LipschitzOptions {
            keep_intervals: false,
            ..LipschitzOptions::default()
        },
    )
}

/// [`lipschitz_for_dataset`] with explicit [`LipschitzOptions`].
pub fn lipschitz_for_dataset_with(
    mlp: &Mlp,
    ds: &Dataset,
    eps: f64,
    norm: BallNorm,
    opts: LipschitzOptions,
) -> Result<Vec<LipschitzBound>> {
    let prep = Prepared::new(mlp)?;
    crate::problem::check_inputs(mlp, ds)?;
    prep.check_point(ds.x_row(0), eps, false)?;
    (0..ds.len())
        .into_par_iter()
        .map(|i| Ok(evaluate(&prep, ds.x_row(i), eps, norm, opts, None, false)?.bound))
        .collect()
}

/// A rigorous enclosure of the output `f(x) = z_L` over the ball (T10 step 1 carried to the last
/// layer). With `eps = 0` it encloses the exact `f(x_0)` despite the rounding of the forward
/// pass; T9 uses it for rigorous margins and T8 for residuals.
pub fn output_enclosure(mlp: &Mlp, x0: &[f64], eps: f64, norm: BallNorm) -> Result<LayerBox> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, eps, true)?;
    Ok(output_box(&prep, x0, eps, norm))
}

pub(crate) fn output_box(prep: &Prepared<'_>, x0: &[f64], eps: f64, norm: BallNorm) -> LayerBox {
    let mut boxes = prep.enclose(x0, eps, norm, prep.mlp.depth());
    boxes.pop().expect("an Mlp has at least one layer")
}

/// Rigorous bounds on `‖J_x(x_0)‖₂` (T8(c) `g_i`; used for `ω_i`): the T10 enclosure
/// `J ∈ [P_c ± P_r]` at radius 0 gives `‖P_c‖₂ − ‖P_r‖₂ ≤ ‖J‖₂ ≤ min(a, b, c)`.
pub fn jacobian_norm_bounds(mlp: &Mlp, x0: &[f64]) -> Result<JacobianNormBounds> {
    let prep = Prepared::new(mlp)?;
    prep.check_point(x0, 0.0, true)?;
    jacobian_bounds(&prep, x0)
}

pub(crate) fn jacobian_bounds(prep: &Prepared<'_>, x0: &[f64]) -> Result<JacobianNormBounds> {
    let opts = LipschitzOptions {
        keep_intervals: false,
        spectral_per_layer: true,
    };
    let ev = evaluate(prep, x0, 0.0, BallNorm::L2, opts, None, true)?;
    let upper = ev.bound.lip.value;
    let lower = ev.jac_lower.unwrap_or(0.0).min(upper);
    Ok(JacobianNormBounds { lower, upper })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Dense;
    use crate::testutil::random_mlp;
    use nalgebra::{DVector, dmatrix, dvector};
    use rand::rngs::ChaCha8Rng;
    use rand::{RngExt, SeedableRng};

    pub(crate) const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Identity,
    ];

    /// f(x) = |x| as the ReLU 1–2–1 network of THEORY.md §5.
    pub(crate) fn abs_net() -> Mlp {
        crate::testutil::abs_net()
    }

    /// A random network: widths 1–8, depth 1–4, C in 1..=c_max, weights scaled by a random factor
    /// in [0.5, 3] so that smooth units also reach their saturated range.
    pub(crate) fn random_net(rng: &mut ChaCha8Rng, act: Activation, c_min: usize) -> Mlp {
        let depth = rng.random_range(1..=4usize);
        let mut widths = vec![rng.random_range(1..=8usize)];
        for _ in 1..depth {
            widths.push(rng.random_range(1..=8usize));
        }
        widths.push(rng.random_range(c_min..=4usize));
        let base = random_mlp(&widths, act, rng.random_range(0..u64::MAX));
        let scale = rng.random_range(0.5..3.0);
        let theta: Vec<f64> = base.params_flat().iter().map(|v| v * scale).collect();
        base.with_params_flat(&theta).unwrap()
    }

    pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
        // Box–Muller.
        let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A point of the closed ball, strictly inside by a relative 1e-9 so that its own rounding
    /// cannot push it out; a third of the points lie on (just inside) the sphere.
    pub(crate) fn sample_ball(
        rng: &mut ChaCha8Rng,
        x0: &[f64],
        eps: f64,
        norm: BallNorm,
    ) -> Vec<f64> {
        let d = x0.len();
        let shrink = 1.0 - 1e-9;
        match norm {
            BallNorm::L2 => {
                let dir: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
                let n = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                let r = if rng.random_range(0..3) == 0 {
                    eps
                } else {
                    eps * rng.random_range(0.0..1.0f64).powf(1.0 / d as f64)
                };
                x0.iter()
                    .zip(&dir)
                    .map(|(x, u)| x + r * shrink * u / n)
                    .collect()
            }
            BallNorm::LInf => x0
                .iter()
                .map(|x| {
                    let t = if rng.random_range(0..3) == 0 {
                        if rng.random_range(0..2) == 0 {
                            1.0
                        } else {
                            -1.0
                        }
                    } else {
                        rng.random_range(-1.0..1.0)
                    };
                    x + eps * shrink * t
                })
                .collect(),
        }
    }

    /// ‖J‖₂ by SVD, or ‖J‖_{∞→2} = max over sign vectors s of ‖Js‖₂ (exact: a convex function
    /// on the cube attains its max at a vertex; d ≤ 8 gives at most 256 vertices).
    pub(crate) fn op_norm(j: &DMatrix<f64>, norm: BallNorm) -> f64 {
        match norm {
            BallNorm::L2 => j.clone().svd(false, false).singular_values.max(),
            BallNorm::LInf => {
                let d = j.ncols();
                (0..1usize << d)
                    .map(|mask| {
                        let s =
                            DVector::from_fn(d, |k, _| if mask >> k & 1 == 1 { 1.0 } else { -1.0 });
                        (j * s).norm()
                    })
                    .fold(0.0, f64::max)
            }
        }
    }

    fn dist(a: &[f64], b: &[f64], norm: BallNorm) -> f64 {
        let it = a.iter().zip(b).map(|(x, y)| (x - y).abs());
        match norm {
            BallNorm::L2 => it.map(|v| v * v).sum::<f64>().sqrt(),
            BallNorm::LInf => it.fold(0.0, f64::max),
        }
    }

    fn f_at(mlp: &Mlp, x: &[f64]) -> DVector<f64> {
        let xm = DMatrix::from_column_slice(x.len(), 1, x);
        mlp.forward(xm.as_view()).column(0).into_owned()
    }

    /// `value` is an outward-rounded version of `exact`: never below it, and above it by at
    /// most 1e-12 relative (the allowances are O(Σ fan-in · u) ≈ 1e-15 here; 1e-12 leaves room
    /// without hiding a real bug, which would be O(1)).
    fn assert_outward(value: f64, exact: f64, what: &str) {
        assert!(value >= exact, "{what}: {value} < exact {exact}");
        assert!(
            value <= exact * (1.0 + 1e-12),
            "{what}: {value} too far above {exact}"
        );
    }

    #[test]
    fn golden_abs_network() {
        // THEORY.md §5 T10. f64 SQRT_2 = 1.4142135623730951 lies above √2 = 1.41421356237309504…,
        // so `value >= SQRT_2` implies `value >= √2`.
        let mlp = abs_net();
        let s2 = std::f64::consts::SQRT_2;
        for (x0, eps, a, b, c) in [
            (1.0, 0.5, s2, 1.0, 1.0),
            (1.0, 2.0, 2.0, 2.0, 1.0),
            (-1.0, 0.5, s2, 1.0, 1.0),
        ] {
            for norm in [BallNorm::L2, BallNorm::LInf] {
                // d = 1: both balls are the interval [x0 − ε, x0 + ε] and ‖·‖_{∞→2} = ‖·‖₂.
                let r = local_lipschitz(&mlp, &[x0], eps, norm).unwrap();
                let tag = format!("x0={x0} eps={eps} {norm:?}");
                assert_outward(r.bound_a.value, a, &format!("{tag} (a)"));
                assert_outward(r.bound_b.value, b, &format!("{tag} (b)"));
                assert_outward(r.bound_c.value, c, &format!("{tag} (c)"));
                assert_outward(r.lip.value, 1.0, &format!("{tag} lip"));
                assert_eq!(r.lip.kind, crate::quantity::Kind::Upper);
                assert_ne!(r.which_bound_won, WhichBound::PerLayer);
            }
        }
        // Intervals at x0 = 1, ε = 0.5: z ∈ [0.5, 1.5] × [−1.5, −0.5], so D ∈ {1} × {0}.
        let r = local_lipschitz(&mlp, &[1.0], 0.5, BallNorm::L2).unwrap();
        let pre = &r.pre_activation.as_ref().unwrap()[0];
        assert!(pre.lo[0] <= 0.5 && pre.lo[0] > 0.5 - 1e-14);
        assert!(pre.hi[1] >= -0.5 && pre.hi[1] < -0.5 + 1e-14);
        let der = &r.derivative.as_ref().unwrap()[0];
        assert_eq!(
            (der.lo.clone(), der.hi.clone()),
            (vec![1.0, 0.0], vec![1.0, 0.0])
        );
        // At ε = 2 both units straddle 0: [0, 1] for each, and (c) is exact (P_c = 0).
        let r = local_lipschitz(&mlp, &[1.0], 2.0, BallNorm::L2).unwrap();
        assert_eq!(r.which_bound_won, WhichBound::MidpointRadius);
        let der = &r.derivative.as_ref().unwrap()[0];
        assert_eq!(
            (der.lo.clone(), der.hi.clone()),
            (vec![0.0, 0.0], vec![1.0, 1.0])
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        let mlp = abs_net();
        for eps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = local_lipschitz(&mlp, &[1.0], eps, BallNorm::L2).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        }
        let e = local_lipschitz(&mlp, &[1.0, 2.0], 0.5, BallNorm::L2).unwrap_err();
        assert!(e.to_string().contains("x0"), "{e}");
        let e = local_lipschitz(&mlp, &[f64::NAN], 0.5, BallNorm::L2).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let bad = Mlp::new(mlp.layers().to_vec(), Activation::LeakyRelu { alpha: 2.0 }).unwrap();
        let e = local_lipschitz(&bad, &[1.0], 0.5, BallNorm::L2).unwrap_err();
        assert!(matches!(e, Error::Model(_)), "{e}");
        assert!(pairwise_lipschitz(&mlp, &[1.0], 0.5, BallNorm::L2, 3).is_err());
    }

    /// T10 claims (i)–(iii) on random networks, both norms, all six activations.
    fn property_check(norm: BallNorm, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut checked = 0;
        for trial in 0..36 {
            let act = ALL[trial % ALL.len()];
            let mlp = random_net(&mut rng, act, 1);
            let d = mlp.input_dim();
            let x0: Vec<f64> = (0..d).map(|_| 2.0 * normal(&mut rng)).collect();
            let eps = 10f64.powf(rng.random_range(-2.5..0.5));
            let r = local_lipschitz(&mlp, &x0, eps, norm).unwrap();
            let lip = r.lip.value;
            assert!(lip.is_finite() && lip >= 0.0);
            let pre = r.pre_activation.as_ref().unwrap();
            let der = r.derivative.as_ref().unwrap();
            // Points: random ones, plus (for ReLU-type σ) points exactly on and next to a
            // first-layer kink w_j·x + b_j = 0 when the kink crosses the ball.
            let mut points: Vec<Vec<f64>> = (0..80)
                .map(|_| sample_ball(&mut rng, &x0, eps, norm))
                .collect();
            if mlp.depth() > 1 && matches!(act, Activation::Relu | Activation::LeakyRelu { .. }) {
                let l1 = mlp.first_layer();
                for j in 0..l1.fan_out() {
                    let w: Vec<f64> = l1.weight.row(j).iter().copied().collect();
                    let ww: f64 = w.iter().map(|v| v * v).sum();
                    let z0: f64 = w.iter().zip(&x0).map(|(a, b)| a * b).sum::<f64>() + l1.bias[j];
                    let t = -z0 / ww;
                    for off in [0.0, 1e-9, -1e-9] {
                        let x: Vec<f64> = x0
                            .iter()
                            .zip(&w)
                            .map(|(x, wk)| x + (t + off) * wk)
                            .collect();
                        if dist(&x, &x0, norm) < eps * (1.0 - 1e-9) {
                            points.push(x);
                        }
                    }
                }
            }
            let fx0 = f_at(&mlp, &x0);
            let bound_b = r.bound_b.value;
            for x in &points {
                // (i) pre-activations and derivatives inside their intervals. The forward pass
                // has its own rounding, |ẑ − z| ≤ γ_{m+1}(|W||h| + |b|) ≈ 1e-15·scale, so the
                // computed z may exceed the exact enclosure by that much: tolerance
                // 1e-12·(1 + |z|).
                let xm = DMatrix::from_column_slice(d, 1, x);
                let cache = mlp.forward_cache(xm.as_view());
                for (l, b) in pre.iter().enumerate() {
                    for j in 0..b.lo.len() {
                        let z = cache.pre[l][(j, 0)];
                        let tol = 1e-12 * (1.0 + z.abs());
                        assert!(
                            z >= b.lo[j] - tol && z <= b.hi[j] + tol,
                            "{act} layer {l} unit {j}: z = {z} outside [{}, {}]",
                            b.lo[j],
                            b.hi[j]
                        );
                        let dz = act.derivative(z);
                        let dtol = 1e-12 * dz;
                        assert!(
                            dz >= der[l].lo[j] - dtol && dz <= der[l].hi[j] + dtol,
                            "{act}: σ′({z}) = {dz} outside [{}, {}]",
                            der[l].lo[j],
                            der[l].hi[j]
                        );
                    }
                }
                // (ii)/(iii) ‖J_x‖ ≤ Lip. The computed J differs from the exact one by at most
                // ~γ_{Σm}·(|W_L|D⋯|W_1|) ≤ 1e-14·bound_b entrywise, and the SVD adds ~u‖J‖:
                // tolerance 1e-12·(Lip + bound_b).
                let j = mlp.input_jacobian_forward(x);
                let jn = op_norm(&j, norm);
                assert!(
                    jn <= lip + 1e-12 * (lip + bound_b),
                    "{act} {norm:?}: ‖J‖ = {jn} > Lip = {lip} (eps {eps})"
                );
                // (iii) finite-difference slope against the centre, for pairs not too close: the
                // forward error ~1e-15·‖f‖ over a distance ≥ 1e-3·ε gives the tolerance.
                let dx = dist(x, &x0, norm);
                if dx > 1e-3 * eps {
                    let df = (f_at(&mlp, x) - &fx0).norm();
                    let tol = 1e-11 * (1.0 + fx0.norm());
                    assert!(df <= lip * dx + tol, "{act}: slope {} > Lip {lip}", df / dx);
                }
                checked += 1;
            }
            // Random pairs of the ball.
            for _ in 0..20 {
                let x = sample_ball(&mut rng, &x0, eps, norm);
                let y = sample_ball(&mut rng, &x0, eps, norm);
                let dx = dist(&x, &y, norm);
                if dx > 1e-3 * eps {
                    let df = (f_at(&mlp, &x) - f_at(&mlp, &y)).norm();
                    let tol = 1e-11 * (1.0 + fx0.norm());
                    assert!(
                        df <= lip * dx + tol,
                        "{act}: pair slope {} > Lip {lip}",
                        df / dx
                    );
                }
            }
        }
        assert!(checked > 2000);
    }

    #[test]
    fn property_l2_ball() {
        property_check(BallNorm::L2, 11);
    }

    #[test]
    fn property_linf_ball() {
        property_check(BallNorm::LInf, 12);
    }

    #[test]
    fn pairwise_bounds_dominate_difference_gradients() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for trial in 0..24 {
            let act = ALL[trial % ALL.len()];
            let mlp = random_net(&mut rng, act, 2);
            let d = mlp.input_dim();
            let c_out = mlp.output_dim();
            let x0: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            let eps = 10f64.powf(rng.random_range(-2.0..0.3));
            let norm = if trial % 2 == 0 {
                BallNorm::L2
            } else {
                BallNorm::LInf
            };
            let y = rng.random_range(0..c_out);
            let (full, pairs) = pairwise_lipschitz(&mlp, &x0, eps, norm, y).unwrap();
            let s2l = round_up(std::f64::consts::SQRT_2 * full.lip.value);
            for c in 0..c_out {
                let e = pairs.effective[c].value;
                if c == y {
                    assert_eq!(e, 0.0);
                    continue;
                }
                assert!(e <= s2l && e <= pairs.difference_network[c]);
            }
            for _ in 0..60 {
                let x = sample_ball(&mut rng, &x0, eps, norm);
                let j = mlp.input_jacobian_forward(&x);
                for c in 0..c_out {
                    if c == y {
                        continue;
                    }
                    let g = (j.row(y) - j.row(c)).into_owned();
                    let gm = DMatrix::from_row_slice(1, d, g.as_slice());
                    let gn = op_norm(&gm, norm);
                    let bound = pairs.effective[c].value;
                    // Same rounding argument as in property_check.
                    assert!(
                        gn <= bound * (1.0 + 1e-12) + 1e-12 * full.bound_b.value,
                        "{act}: ‖∇(f_y − f_c)‖ = {gn} > {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn dataset_batch_matches_single_points() {
        let mlp = random_mlp(&[3, 6, 5, 2], Activation::Tanh, 9);
        let x = crate::testutil::random_data(3, 17, 4);
        let ds = Dataset::new(x.as_slice().to_vec(), 17, 3, None, "x", "y").unwrap();
        let all = lipschitz_for_dataset(&mlp, &ds, 0.3, BallNorm::L2).unwrap();
        assert_eq!(all.len(), 17);
        for (i, b) in all.iter().enumerate() {
            let single = local_lipschitz(&mlp, ds.x_row(i), 0.3, BallNorm::L2).unwrap();
            assert_eq!(b.lip.value, single.lip.value);
            assert!(b.pre_activation.is_none());
        }
        assert!(lipschitz_for_dataset(&mlp, &ds, 0.0, BallNorm::L2).is_err());
    }

    #[test]
    fn saturated_units_keep_positive_derivative_bounds() {
        // A tanh unit at z ≈ 20: 1 − tanh² rounds to 0 there, the relative-error form does not.
        let net = |b: f64, act: Activation| {
            Mlp::new(
                vec![
                    Dense {
                        weight: dmatrix![1.0],
                        bias: dvector![b],
                    },
                    Dense {
                        weight: dmatrix![1.0],
                        bias: dvector![0.0],
                    },
                ],
                act,
            )
            .unwrap()
        };
        let r = local_lipschitz(&net(20.0, Activation::Tanh), &[0.0], 0.1, BallNorm::L2).unwrap();
        let der = &r.derivative.as_ref().unwrap()[0];
        let exact_hi = 4.0 * (-2.0 * 19.9f64).exp(); // tanh′(19.9) ≈ 4e^{−39.8}, within 1e-17 rel.
        assert!(der.hi[0] > 0.0 && der.hi[0] >= exact_hi * (1.0 - 1e-12));
        assert!(r.lip.value >= exact_hi * (1.0 - 1e-12));
        let j = net(20.0, Activation::Tanh).input_jacobian_forward(&[0.05]);
        assert!(j[(0, 0)] > 0.0 && j[(0, 0)] <= r.lip.value);
        // Beyond the normal range (|z| > 350): d_hi = 2^−1000 > 0, d_lo = 0.
        let r = local_lipschitz(&net(400.0, Activation::Tanh), &[0.0], 0.1, BallNorm::L2).unwrap();
        let der = &r.derivative.as_ref().unwrap()[0];
        assert_eq!((der.lo[0], der.hi[0]), (0.0, SATURATED_D_HI));
        assert!(r.lip.value > 0.0);
        assert_eq!(SATURATED_D_HI, 2f64.powi(-1000));
        // Sigmoid at z ≈ −40 and softplus at z ≈ −800 stay positive too.
        for (b, act) in [(-40.0, Activation::Sigmoid), (-800.0, Activation::Softplus)] {
            let r = local_lipschitz(&net(b, act), &[0.0], 0.1, BallNorm::L2).unwrap();
            assert!(r.derivative.as_ref().unwrap()[0].hi[0] > 0.0, "{act}");
        }
    }

    #[test]
    fn identity_activation_is_a_linear_network() {
        let mlp = random_mlp(&[4, 5, 3], Activation::Identity, 3);
        let r = local_lipschitz(&mlp, &[0.1, 0.2, -0.3, 1.0], 0.7, BallNorm::L2).unwrap();
        let der = &r.derivative.as_ref().unwrap()[0];
        assert!(der.lo.iter().chain(&der.hi).all(|&v| v == 1.0));
        let w = &mlp.layers()[1].weight * &mlp.layers()[0].weight;
        let exact = w.svd(false, false).singular_values.max();
        // (c) with D = I is the product itself (P_r only carries rounding, ~1e-15 relative).
        assert!(r.lip.value >= exact && r.lip.value <= exact * (1.0 + 1e-10));
    }

    #[test]
    fn jacobian_norm_bounds_bracket_the_svd() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        for trial in 0..30 {
            let act = ALL[trial % ALL.len()];
            let mlp = random_net(&mut rng, act, 1);
            let x: Vec<f64> = (0..mlp.input_dim()).map(|_| normal(&mut rng)).collect();
            let b = jacobian_norm_bounds(&mlp, &x).unwrap();
            let s = op_norm(&mlp.input_jacobian_forward(&x), BallNorm::L2);
            // The enclosure at radius 0 is ~1e-15 wide; SVD and forward rounding add ~1e-15.
            let tol = 1e-12 * (1.0 + s);
            assert!(
                b.lower <= s + tol && s <= b.upper + tol,
                "{act}: {b:?} vs {s}"
            );
            assert!(
                b.upper - b.lower <= 1e-9 * (1.0 + s),
                "{act}: {b:?} too wide"
            );
            // The output enclosure at radius 0 contains the forward value (same tolerance).
            let out = output_enclosure(&mlp, &x, 0.0, BallNorm::L2).unwrap();
            let f = f_at(&mlp, &x);
            for c in 0..f.len() {
                let tol = 1e-12 * (1.0 + f[c].abs());
                assert!(out.lo[c] - tol <= f[c] && f[c] <= out.hi[c] + tol);
            }
        }
    }
}
