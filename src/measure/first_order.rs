//! The issue-2 measurement set (docs/measurements.md): first-layer norms, input norms, training
//! loss, per-sample gradient moments and the T1/T2 checks, each as a [`Quantity`] under its
//! canonical name.

use super::QuantityMap;
use super::forward_error::round_up_or_zero;
use super::names;
use super::per_sample::{PerSampleStats, ScaledPowerSum};
use crate::error::Result;
use crate::linalg::{SpectralNormBounds, spectral_norm_bounds};
use crate::model::Mlp;
use crate::quantity::{Quantity, gamma, round_up};

/// Norms of the first layer W = W_1 (THEORY.md T2, §3 item 6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirstLayerNorms {
    /// Rigorous bracket of ‖W‖₂.
    pub spectral: SpectralNormBounds,
    /// ‖W‖_F.
    pub frobenius: f64,
    /// Largest absolute row sum of W (for N_q(W), T2c).
    pub max_row_sum: f64,
    /// Largest absolute column sum of W.
    pub max_col_sum: f64,
}

/// Compute [`FirstLayerNorms`].
pub fn first_layer_norms(mlp: &Mlp) -> Result<FirstLayerNorms> {
    let w = &mlp.first_layer().weight;
    Ok(FirstLayerNorms {
        spectral: spectral_norm_bounds(w)?,
        frobenius: w.norm(),
        max_row_sum: w.row_iter().map(|r| r.abs().sum()).fold(0.0, f64::max),
        max_col_sum: w.column_iter().map(|c| c.abs().sum()).fold(0.0, f64::max),
    })
}

/// `((1/n) Σ a_i^k)^{1/(2k)}` for nonnegative `a_i` (squared norms), overflow-safe for any k:
/// the power mean of order 2k of `√a_i`.
pub fn moment_of_squares(a: &[f64], k: u32) -> f64 {
    let m = a.iter().fold(0.0f64, |m, &v| m.max(v));
    if m == 0.0 || a.is_empty() {
        return 0.0;
    }
    let mean = a.iter().map(|&v| (v / m).powi(k as i32)).sum::<f64>() / a.len() as f64;
    m.sqrt() * mean.powf(1.0 / (2.0 * k as f64))
}

/// `train_loss` and `max_abs_residual` from the computed residuals `r̂` (n·C entries) and their
/// rigorous error bounds `E` (`|r̂_ic − r_ic| ≤ E_ic`, [`super::forward_error::residual_error`]).
///
/// - `max_abs_residual`: `|max|r| − max|r̂|| ≤ max E` (max and |·| are exact in floating point).
/// - `train_loss` ℒ = (1/2n)Σr²: `|r² − r̂²| ≤ 2|r̂|E + E²`, plus the rounding of the sum of nC
///   nonnegative terms, ½ and /n, `γ_{nC+2}·ℒ̂` (no cancellation: every term is ≥ 0).
///
/// Both tols are sums of nonnegative terms evaluated with one more γ step and a round-up.
pub fn residual_loss_quantities(r: &[f64], e: &[f64], n: usize) -> QuantityMap {
    let mut q = QuantityMap::new();
    let nf = n.max(1) as f64;
    let loss = r.iter().map(|v| 0.5 * v * v).sum::<f64>() / nf;
    let max_abs = r.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let max_err = e.iter().fold(0.0f64, |m, &v| m.max(v));
    let prop = r
        .iter()
        .zip(e)
        .map(|(v, ev)| (2.0 * v.abs() + ev) * ev)
        .sum::<f64>()
        / (2.0 * nf);
    let slack = 1.0 + gamma(r.len() + 4);
    let loss_tol = round_up_or_zero((prop + gamma(r.len() + 2) * loss) * slack);
    q.insert(
        names::TRAIN_LOSS.into(),
        Quantity::exact(loss, loss_tol)
            .with_method("(1/n) Σ ½‖f(x_i) − y_i‖²; tol: running forward bound (THEORY §3 item 1)"),
    );
    q.insert(
        names::MAX_ABS_RESIDUAL.into(),
        Quantity::exact(max_abs, round_up_or_zero(max_err)).with_method(
            "max_{i,c} |f_c(x_i) − y_ic|; tol: running forward bound + subtraction (THEORY §3 item 1)",
        ),
    );
    q
}

/// Assemble the canonical issue-2 quantities from the per-sample statistics.
///
/// Kinds (THEORY.md §3): per-sample norms, moments, tr G, losses and input norms are `exact`
/// with an a-priori rounding tolerance; ‖W‖₂ is reported as its rigorous `upper` bound (the
/// lower bound under `first_layer_spectral_norm_lower`); the T2 ratio is computed with the
/// **lower** bound of ‖W‖₂ in the denominator so that it never understates the true ratio.
pub fn first_order_quantities(
    mlp: &Mlp,
    st: &PerSampleStats,
    norms: &FirstLayerNorms,
    ks: &[u32],
) -> QuantityMap {
    let mut q = QuantityMap::new();
    let n = st.len();
    let rel = st.rel_tol;
    // Inputs.
    let xmin = st.x_norm.iter().copied().fold(f64::INFINITY, f64::min);
    let xmax = st.x_norm.iter().copied().fold(0.0, f64::max);
    let d = mlp.input_dim();
    let xtol = gamma(d + 1);
    q.insert(
        names::INPUT_NORM_MIN.into(),
        Quantity::exact(xmin, xmin * xtol).with_method("min_i ‖x_i‖₂"),
    );
    q.insert(
        names::INPUT_NORM_MAX.into(),
        Quantity::exact(xmax, xmax * xtol).with_method("max_i ‖x_i‖₂"),
    );
    // First layer.
    q.insert(
        names::FIRST_LAYER_SPECTRAL_NORM.into(),
        Quantity::upper(
            norms.spectral.upper,
            norms.spectral.upper - norms.spectral.lower,
        )
        .with_method("weyl bound of the smaller Gram matrix (THEORY §3 item 6)"),
    );
    q.insert(
        names::FIRST_LAYER_SPECTRAL_NORM_LOWER.into(),
        Quantity::lower(
            norms.spectral.lower,
            norms.spectral.upper - norms.spectral.lower,
        )
        .with_method("‖Wv‖/‖v‖ at the top singular vector minus rounding"),
    );
    let fro = norms.frobenius;
    q.insert(
        names::FIRST_LAYER_FROBENIUS_NORM.into(),
        Quantity::exact(fro, fro * gamma(mlp.first_layer().weight.len() + 1)),
    );
    // Loss and residuals: the tol bounds the rounding of the whole computation, forward pass
    // included (THEORY §3 item 1): |r̂_ic − r_ic| ≤ E_ic, the running bound of the output plus the
    // subtraction's rounding. It scales with |W||ĥ|, |b|, |f̂| and |y|, never with the residual,
    // so a computed 0 reads "|res| ≤ tol" (tol > 0).
    if let (Some(r), Some(e)) = (&st.residual, &st.residual_err) {
        q.extend(residual_loss_quantities(r, e, n));
    }
    // Near-kink units (|ẑ| ≤ e, THEORY §3 item 1 and Rules): a decided count, 0 for activations
    // without a kink.
    let mut kinks = Quantity::exact(st.near_kink_units as f64, 0.0).with_method(
        "#{(i, l, j) : |ẑ_{l,j}(x_i)| ≤ e_{l,j}} over hidden units, e the rigorous running \
         forward bound (THEORY §3 item 1)",
    );
    if let Some(d) = st.near_kink_description(mlp.activation()) {
        kinks = kinks.with_note(d);
    }
    q.insert(names::NEAR_KINK_UNITS.into(), kinks);
    // Smooth σ (THEORY §3 item 1, "Otherwise"): the backward pass's tol is the |W| bound at the
    // computed σ′(ẑ); σ′(ẑ) − σ′(z) and the libm evaluation of σ′ are not bounded, so the
    // Jacobian tolerances are a-priori estimates of relative size 2γ_K, an assumed hypothesis
    // of every Jacobian-dependent verdict (listed with this size by certify and bound). 0 for
    // piecewise-linear σ, where the bound is rigorous given the activation pattern.
    let smooth_size = if mlp.activation().is_piecewise_linear() {
        0.0
    } else {
        st.rel_tol
    };
    q.insert(
        names::SMOOTH_BACKWARD_ROUNDING.into(),
        // γ_K = Ku/(1 − Ku): Ku and 1 − Ku are exact in binary64 for K < 2⁵², the division
        // rounds once (≤ u relative), the doubling is exact.
        Quantity::exact(
            smooth_size,
            round_up(smooth_size * crate::quantity::UNIT_ROUNDOFF),
        )
        .with_method(
            "relative a-priori rounding estimate 2γ_K, K = Σ_l(m_{l−1} + 1) + C, of the Jacobian \
             quantities of a smooth activation (THEORY §3 item 1): the |W| backward bound is \
             evaluated at the computed σ′(ẑ), without σ′(ẑ) − σ′(z); 0 for piecewise-linear σ",
        ),
    );
    // Curvature from the per-sample engine.
    // Per sample, |‖J_i‖_F² − t̂_i| and ‖J_iJ_iᵀ − Ĝ_i‖_F are at most δ_i = (2‖Ĵ_i‖_F + e_i)e_i
    // + the Gram's rounding, e_i ≥ ‖Ĵ_θ,i − J_θ,i‖_F from the |W| backward pass and the running
    // forward bound of every ĥ_{l−1} (PerSampleStats::param_sq_err; not relative to the possibly
    // cancelled values). A mean moves by at most the mean of the δ_i, a max by the largest
    // (λ_max by Weyl), plus the aggregation's own rounding.
    let n_f = n as f64;
    let trace = st.param_sq.iter().sum::<f64>() / n_f;
    let trace_err = (0..n).map(|i| st.param_sq_err(i)).sum::<f64>() / n_f;
    q.insert(
        names::GAUSS_NEWTON_TRACE.into(),
        Quantity::exact(
            trace,
            round_up(trace_err * (1.0 + gamma(n + 2)) + trace * gamma(n + 1)),
        )
        .with_method(
            "(1/n) Σ_i ‖J_θ(x_i)‖_F² (factorized, THEORY §4); tol: |W| backward pass and forward bound",
        ),
    );
    let lmax = st.lambda.iter().copied().fold(0.0, f64::max);
    let lmax_err = (0..n).fold(0.0f64, |m, i| m.max(st.param_sq_err(i)));
    q.insert(
        names::PER_SAMPLE_LAMBDA_MAX.into(),
        Quantity::exact(lmax, round_up(lmax_err)).with_method(
            "max_i λ_max(J_iJ_iᵀ); tol: Weyl with ‖J_iJ_iᵀ − Ĝ_i‖_F from the |W| backward pass",
        ),
    );
    // T1: forward-mode input Jacobian against the backward pass.
    q.insert(
        names::IDENTITY_MAX_ABS_RESIDUAL.into(),
        Quantity::exact(st.t1.max_abs_residual, st.t1.expected_size)
            .with_method("T1a on sampled points: forward-mode ∇_x f_c xᵀ vs Wᵀ(δ_c xᵀ) from the backward pass")
            .with_note(format!(
                "{} points checked; T1b scalar residual {:.3e}; expected size ≲ {:.3e}",
                st.t1.points, st.t1.max_scalar_residual, st.t1.expected_size
            )),
    );
    // T2 tightness ratio ‖J_x‖_F‖x‖/(‖W‖₂‖J_W‖_F) = ‖J_x‖_F/(‖W‖₂‖Δ_1‖_F).
    let wl = norms.spectral.lower;
    let mut ratio = 0.0f64;
    let mut argmax = None;
    for i in 0..n {
        let den = wl * st.delta1_sq[i].sqrt();
        if den > 0.0 && st.x_norm[i] > 0.0 {
            let r = st.input_sq[i].sqrt() / den;
            if r > ratio {
                ratio = r;
                argmax = Some(i);
            }
        }
    }
    // The backward pass's errors ‖Ĵ_x − J_x‖_F ≤ ε_i and ‖Δ̂_1 − Δ_1‖_F ≤ ε′_i (absolute-value
    // pass, not relative to the possibly cancelled values): the ratio r_i = a_i/(w·b_i) moves by at
    // most (ε_i + r_i·w·ε′_i)/(w·(b_i − ε′_i)) (∞ when b_i ≤ ε′_i).
    let mut ratio_err = 0.0f64;
    for i in 0..n {
        let b1 = st.delta1_sq[i].sqrt();
        if wl * b1 > 0.0 && st.x_norm[i] > 0.0 {
            let r = st.input_sq[i].sqrt() / (wl * b1);
            let den = wl * (b1 - st.delta1_err[i]);
            let e = if den > 0.0 {
                (st.input_err[i] + r * wl * st.delta1_err[i]) / den
            } else {
                f64::INFINITY
            };
            ratio_err = ratio_err.max(e);
        }
    }
    let mut t2 = Quantity::exact(
        ratio,
        round_up(ratio * (rel + gamma(d + 2)) + ratio_err * (1.0 + gamma(8))),
    )
    .with_method(
        "max_i ‖J_x(x_i)‖_F‖x_i‖ / (‖W‖₂‖J_W(x_i)‖_F), lower bound of ‖W‖₂ in the denominator",
    );
    if let Some(i) = argmax {
        t2 = t2.with_note(format!("attained at sample {i}; T2 requires ≤ 1"));
    }
    q.insert(names::FIRST_LAYER_INEQUALITY_MAX_RATIO.into(), t2);
    // Moments and entrywise sums.
    let first_layer_sq = &st.first_layer_sq;
    let jx_err = st.input_err.iter().fold(0.0f64, |m, &v| m.max(v));
    let jw_err = (0..n).fold(0.0f64, |m, i| {
        m.max(round_up(st.delta1_err[i] * st.x_norm[i] * (1.0 + xtol)))
    });
    // ‖Ĵ_θ,i − J_θ,i‖_F ≤ e_i (|W| backward pass and forward bound): a power mean of the norms
    // moves by at most max_i e_i (Minkowski), g_W(k) too (ℓ_{2k} ≤ ℓ_2).
    let jp_err = st.param_err.iter().fold(0.0f64, |m, &v| m.max(v));
    for &k in ks {
        let m = moment_of_squares(&st.param_sq, k);
        q.insert(
            names::per_k(names::PARAM_GRAD_MOMENT_K, k),
            Quantity::exact(m, round_up(jp_err + m * (rel + gamma(n + 2)))).with_method(format!(
                "((1/n) Σ ‖J_θ(x_i)‖_F^{})^(1/{}); tol: max_i ‖Ĵ_θ − J_θ‖_F by the |W| backward pass",
                2 * k,
                2 * k
            )),
        );
        // Minkowski: a power mean moves by at most the largest per-sample change, and ε_i
        // bounds ‖Ĵ_x − J_x‖_F from the absolute-value backward pass (not relative to ‖Ĵ_x‖,
        // which can cancel); the rest is the rounding of the mean itself.
        let m = moment_of_squares(&st.input_sq, k);
        q.insert(
            names::per_k(names::INPUT_GRAD_MOMENT_K, k),
            Quantity::exact(m, round_up(jx_err + m * rel)).with_method(format!(
                "((1/n) Σ ‖J_x(x_i)‖_F^{})^(1/{}); tol: max_i ‖Ĵ_x − J_x‖_F by the |W| backward pass",
                2 * k,
                2 * k
            )),
        );
        let m = moment_of_squares(first_layer_sq, k);
        q.insert(
            names::per_k(names::FIRST_LAYER_GRAD_MOMENT_K, k),
            Quantity::exact(m, round_up(jw_err + m * rel)).with_method(format!(
                "((1/n) Σ ‖J_W(x_i)‖_F^{})^(1/{}); tol: max_i ‖Δ̂_1 − Δ_1‖_F‖x_i‖ by the |W| backward pass",
                2 * k,
                2 * k
            )),
        );
        if let Some((_, p)) = st.param_power.iter().find(|(kk, _)| *kk == k) {
            let g = ScaledPowerSum::mean_root(p, k);
            q.insert(
                names::per_k(names::PARAM_GRAD_ELEMENTWISE_K, k),
                Quantity::exact(g, round_up(jp_err + g * rel)).with_method(
                    "g_W(k), T7(e): all parameters incl. biases; tol: max_i ‖Ĵ_θ − J_θ‖_F by the \
                     |W| backward pass",
                ),
            );
        }
        if let Some((_, p)) = st.input_power.iter().find(|(kk, _)| *kk == k) {
            // g_x(k) is an ℓ_{2k} norm over all entries scaled by n^{−1/(2k)}: it moves by at most
            // ((1/n)Σ_i‖E_i‖_{2k}^{2k})^{1/(2k)} ≤ max_i‖E_i‖_F (ℓ_{2k} ≤ ℓ_2).
            let g = ScaledPowerSum::mean_root(p, k);
            q.insert(
                names::per_k(names::INPUT_GRAD_ELEMENTWISE_K, k),
                Quantity::exact(g, round_up(jx_err + g * rel)).with_method(
                    "g_x(k), T7(e); tol: max_i ‖Ĵ_x − J_x‖_F by the |W| backward pass",
                ),
            );
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_power_means_and_overflow_safe() {
        // a = (1, 4): k = 1 → √((1 + 4)/2); k = 2 → ((1 + 16)/2)^(1/4).
        assert!((moment_of_squares(&[1.0, 4.0], 1) - 2.5f64.sqrt()).abs() < 1e-15);
        assert!((moment_of_squares(&[1.0, 4.0], 2) - 8.5f64.powf(0.25)).abs() < 1e-15);
        // 1e200^16 overflows; the scaled form gives ≈ 1e100·(1/2)^(1/32).
        let m = moment_of_squares(&[1e200, 0.0], 16);
        assert!((m / 1e100 - 0.5f64.powf(1.0 / 32.0)).abs() < 1e-12);
    }
}
