//! The rigorous running forward-error bound of THEORY.md §3 item 1.
//!
//! With exact inputs `x` (`e_0 = 0`), for every layer l
//!
//! ```text
//! e_l := |W_l| e^h_{l−1} + γ_{m_{l−1}+1}(|W_l||ĥ_{l−1}| + |b_l|) + (m_{l−1}+1)·2⁻¹⁰⁷⁴
//! ```
//!
//! bounds `|ẑ_l − z_l|` entrywise, where `ẑ_l` is the computed pre-activation and `z_l` the exact
//! one of the exact network on the same input (Higham's dot-product bound for any summation order,
//! FMA included; the last term covers underflow, `|η| ≤ 2⁻¹⁰⁷⁵` per product). The bound on the
//! computed activation `|ĥ_l − h_l| ≤ e^h_l` is
//!
//! | σ | `e^h_l` | why |
//! |---|---|---|
//! | relu, identity | `e_l` | 1-Lipschitz, evaluated exactly |
//! | leaky_relu α | `e_l + 2u|ĥ_l| + 2⁻¹⁰⁷⁴` | 1-Lipschitz, `fl(α ẑ)` rounds once |
//! | tanh, softplus | `e_l + 8u|ĥ_l| + 4·2⁻¹⁰⁷⁴` | 1-Lipschitz; libm hypothesis (below) |
//! | sigmoid | `e_l/4 + 8u|ĥ_l| + 4·2⁻¹⁰⁷⁴` | 1/4-Lipschitz; libm hypothesis |
//!
//! For the smooth activations the evaluation term rests on the crate's libm hypothesis
//! ([`crate::measure::lipschitz::LIBM_HYPOTHESIS`]: exp, tanh, log1p within 2u relative): tanh
//! rounds once (≤ 2u relative), sigmoid `1/(1 + e^{−z})` or `e^z/(1 + e^z)` at most 6u + O(u²),
//! softplus `max(z, 0) + log1p(e^{−|z|})` at most 5u + O(u²) (log1p has condition number ≤ 1 on
//! [0, 1], and both terms are ≥ 0); 8u covers all three with the O(u²) terms, and `4·2⁻¹⁰⁷⁴`
//! the subnormal range where the relative model fails.
//!
//! Every bound is evaluated in round-to-nearest on nonnegative numbers and then enlarged by one
//! more γ step and a final round-up (THEORY §3 "Rounding of the allowances themselves").
//!
//! **Kinks** (THEORY §3 Rules): a hidden unit of a ReLU or leaky-ReLU network with `|ẑ| ≤ e` may
//! lie on either side of its kink (or on it); its activation pattern, hence σ′, is then "as
//! computed", not proven. Every other unit has `sign(z) = sign(ẑ)`, so the pattern and σ′ are
//! exact there.

use nalgebra::DMatrix;

use crate::model::{Activation, ForwardCache, Mlp};
use crate::quantity::{UNIT_ROUNDOFF, gamma, round_up};

/// The smallest positive subnormal f64, `2⁻¹⁰⁷⁴` (the absolute underflow allowance per operation).
pub const SUBNORMAL: f64 = f64::from_bits(1);

const U: f64 = UNIT_ROUNDOFF;

/// One hidden unit whose computed pre-activation lies within its error bound of a kink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NearKink {
    /// Sample index (block-relative inside the engine, global in [`crate::measure::per_sample::PerSampleStats`]).
    pub sample: usize,
    /// Hidden layer, 1-based (layer l of THEORY's z_l).
    pub layer: usize,
    /// Unit within the layer, 0-based.
    pub unit: usize,
    /// The computed pre-activation ẑ.
    pub z: f64,
    /// Its rigorous error bound e ≥ |ẑ − z|.
    pub bound: f64,
    /// σ′(ẑ) as used by every Jacobian of T1–T7 (1 for ẑ > 0, else 0 (ReLU) or α (leaky)).
    pub derivative_used: f64,
}

/// The running bounds of one block of samples.
#[derive(Debug, Clone)]
pub struct ForwardErrors {
    /// `e_l` for l = 1..L, `m_l × b`: bounds of `|ẑ_l − z_l|`; the last is the output's.
    pub pre: Vec<DMatrix<f64>>,
    /// `e^h_l` for the hidden layers l = 1..L−1, `m_l × b`: bounds of `|ĥ_l − h_l|` (the
    /// activation's Lipschitz constant times `e_l` plus its evaluation error).
    pub post: Vec<DMatrix<f64>>,
    /// Hidden units with `|ẑ| ≤ e` (ReLU and leaky ReLU only), in (sample, layer, unit) order.
    pub near_kinks: Vec<NearKink>,
}

impl ForwardErrors {
    /// The bound on the output `|f̂(x_i) − f(x_i)|` (`C × b`).
    pub fn output(&self) -> &DMatrix<f64> {
        self.pre.last().expect("an Mlp has at least one layer")
    }
}

/// The activation's evaluation and Lipschitz terms: `e^h = lip·e + rel·|ĥ| + abs`.
fn activation_terms(act: Activation) -> (f64, f64, f64) {
    match act {
        Activation::Relu | Activation::Identity => (1.0, 0.0, 0.0),
        Activation::LeakyRelu { .. } => (1.0, 2.0 * U, SUBNORMAL),
        Activation::Tanh | Activation::Softplus => (1.0, 8.0 * U, 4.0 * SUBNORMAL),
        Activation::Sigmoid => (0.25, 8.0 * U, 4.0 * SUBNORMAL),
    }
}

/// True for the activations with a kink (ReLU, leaky ReLU).
pub fn has_kink(act: Activation) -> bool {
    matches!(act, Activation::Relu | Activation::LeakyRelu { .. })
}

/// The running bounds of the block whose forward pass is `cache` (inputs exact).
///
/// ```
/// use flatcert::measure::forward_error::forward_errors;
/// use flatcert::testutil::random_mlp;
/// use flatcert::Activation;
/// use nalgebra::DMatrix;
/// let mlp = random_mlp(&[3, 5, 2], Activation::Relu, 1);
/// let x = DMatrix::from_fn(3, 4, |r, c| 0.37 * (r + c) as f64 - 1.1);
/// let cache = mlp.forward_cache(x.as_view());
/// let e = forward_errors(&mlp, &cache);
/// // A computed output carries a positive bound (never 0), tiny next to its scale.
/// assert!(e.output().iter().all(|&b| b > 0.0 && b < 1e-13));
/// ```
pub fn forward_errors(mlp: &Mlp, cache: &ForwardCache) -> ForwardErrors {
    let act = mlp.activation();
    let (lip, rel, abs) = activation_terms(act);
    let kinked = has_kink(act);
    let b = cache.batch_size();
    let depth = mlp.depth();
    let mut pre = Vec::with_capacity(depth);
    let mut near_kinks = Vec::new();
    let mut post = Vec::with_capacity(depth.saturating_sub(1));
    // e^h_{l−1}; None while it is exactly 0 (the inputs).
    let mut eh: Option<DMatrix<f64>> = None;
    for (j, layer) in mlp.layers().iter().enumerate() {
        let m_in = layer.fan_in();
        let w_abs = layer.weight.abs();
        let h_abs = cache.post[j].abs();
        let g = gamma(m_in + 1);
        // γ(|W||ĥ| + |b|) + |W|e^h, all nonnegative: computed in round-to-nearest, then one more
        // γ step (at most m_in + 3 roundings per entry) and a round-up.
        let mut scale = DMatrix::from_fn(layer.fan_out(), b, |r, _| layer.bias[r].abs());
        scale.gemm(1.0, &w_abs, &h_abs, 1.0);
        let mut e = scale * g;
        if let Some(eh) = &eh {
            e.gemm(1.0, &w_abs, eh, 1.0);
        }
        let slack = 1.0 + gamma(m_in + 4);
        let under = (m_in + 1) as f64 * SUBNORMAL;
        e.apply(|v| *v = round_up(*v * slack) + under);
        // Entries whose inputs are exact and whose dot product is proven exact get e = 0.
        let h_exact = |i: usize| {
            eh.as_ref()
                .is_none_or(|m| m.column(i).iter().all(|&v| v == 0.0))
        };
        for i in 0..b {
            if !h_exact(i) {
                continue;
            }
            let h = cache.post[j].column(i);
            for r in 0..layer.fan_out() {
                let exact = exact_affine(
                    layer.weight.row(r).iter().copied(),
                    h.iter().copied(),
                    layer.bias[r],
                );
                if exact == Some(cache.pre[j][(r, i)]) {
                    e[(r, i)] = 0.0;
                }
            }
        }
        if j + 1 < depth {
            let z = &cache.pre[j];
            if kinked {
                for i in 0..b {
                    for r in 0..z.nrows() {
                        let (zv, ev) = (z[(r, i)], e[(r, i)]);
                        if zv.abs() <= ev {
                            near_kinks.push(NearKink {
                                sample: i,
                                layer: j + 1,
                                unit: r,
                                z: zv,
                                bound: ev,
                                derivative_used: act.derivative(zv),
                            });
                        }
                    }
                }
            }
            let h = &cache.post[j + 1];
            let z = &cache.pre[j];
            let next = DMatrix::from_fn(h.nrows(), b, |r, i| {
                if e[(r, i)] == 0.0 && activation_exact(act, z[(r, i)], h[(r, i)]) {
                    0.0
                } else {
                    round_up((lip * e[(r, i)] + rel * h[(r, i)].abs()) * (1.0 + 4.0 * U)) + abs
                }
            });
            post.push(next.clone());
            eh = Some(next);
        }
        pre.push(e);
    }
    near_kinks.sort_by_key(|k| (k.sample, k.layer, k.unit));
    ForwardErrors {
        pre,
        post,
        near_kinks,
    }
}

/// [`round_up`] that keeps a proven 0 at 0 (an allowance of exactly 0 needs no rounding).
pub fn round_up_or_zero(x: f64) -> f64 {
    if x == 0.0 { 0.0 } else { round_up(x) }
}

/// Products whose magnitude is at least this are exact iff their FMA error term is 0 (no
/// underflow below it: the error of a product ≥ 2⁻⁹⁶⁰ is a multiple of 2⁻¹⁰⁷⁴ or 0).
const EXACT_PRODUCT_MIN: f64 = 1.0715086071862673e-289; // 2^-960

/// `Some(z)` when `Σ_k w_k h_k + b` evaluated left to right is **proven** exact (every product
/// and every partial sum error-free, by FMA and TwoSum): then z is the exact value. `None`
/// otherwise. Used to set e = 0 where the inputs are exact and the computed ẑ equals z.
fn exact_affine(w: impl Iterator<Item = f64>, h: impl Iterator<Item = f64>, b: f64) -> Option<f64> {
    let mut s = b;
    for (wk, hk) in w.zip(h) {
        let p = wk * hk;
        if p != 0.0 && (p.abs() < EXACT_PRODUCT_MIN || wk.mul_add(hk, -p) != 0.0) {
            return None;
        }
        if p == 0.0 && wk != 0.0 && hk != 0.0 {
            return None; // underflow to 0
        }
        let t = s + p;
        // TwoSum (Knuth): the rounding error of s + p is exactly (s − (t − bv)) + (p − bv).
        let bv = t - s;
        if (s - (t - bv)) + (p - bv) != 0.0 || !t.is_finite() {
            return None;
        }
        s = t;
    }
    Some(s)
}

/// True when σ(ẑ) is evaluated exactly (ĥ = σ(ẑ)) for a piecewise-linear σ: ReLU and identity
/// always, leaky ReLU when the product αẑ is exact. Smooth σ: never.
fn activation_exact(act: Activation, z: f64, h: f64) -> bool {
    match act {
        Activation::Relu | Activation::Identity => true,
        Activation::LeakyRelu { alpha } => {
            z > 0.0
                || (h == 0.0 && (alpha == 0.0 || z == 0.0))
                || (h.abs() >= EXACT_PRODUCT_MIN && alpha.mul_add(z, -h) == 0.0)
        }
        Activation::Tanh | Activation::Sigmoid | Activation::Softplus => false,
    }
}

/// Bound of `|r̂_ic − r_ic|` for the computed residual `r̂ = fl(f̂ − y)` of exact targets y: the
/// output's running bound plus the subtraction's rounding `u(|f̂| + |y|)` (Sterbenz makes it 0 when
/// f̂ ≈ y; this bound does not rely on it), rounded up. It never scales with the residual itself.
///
/// When the output is proven exact (`out_bound == 0`) and the subtraction is error-free
/// (TwoSum), the residual is exact: the bound is 0. This is the only way a residual is ever
/// *proven* (e.g. 0): integer-like networks and data whose every operation is exact.
pub fn residual_error(out_bound: f64, f_hat: f64, y: f64) -> f64 {
    if out_bound == 0.0 {
        let t = f_hat - y;
        let bv = t - f_hat;
        if (f_hat - (t - bv)) + (-y - bv) == 0.0 {
            return 0.0;
        }
    }
    round_up(out_bound + U * (f_hat.abs() + y.abs()))
}
