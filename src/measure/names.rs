//! The one table of canonical quantity names (`docs/measurements.md`): every name the measuring
//! side writes into a [`super::QuantityMap`] and the typed evidence table of
//! [`crate::certify::evidence`] reads is a constant here, so a misspelt name is a compile error
//! rather than a silent "missing" at run time (issue 13 item 2).
//!
//! Single quantities are `NAME`; the per-k families are prefixes `…_K` whose members are
//! `prefix{k}` ([`per_k`]); the other indexed families are prefixes too (`…_Q`, `…_EIGENVALUE_`,
//! `T5G_MARGIN_`).

// --- T1: the first-layer identity -------------------------------------------------------------
/// T1a residual max |∇_x f·xᵀ − Wᵀ∇_W f| over the checked points.
pub const IDENTITY_MAX_ABS_RESIDUAL: &str = "identity_max_abs_residual";
/// T1b residual max |⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F|.
pub const IDENTITY_SCALAR_MAX_ABS_RESIDUAL: &str = "identity_scalar_max_abs_residual";
/// Number of points at which T1 was checked.
pub const IDENTITY_POINTS_CHECKED: &str = "identity_points_checked";

// --- The first layer W (T2, T3, T7, T8) -------------------------------------------------------
/// ‖W‖₂, its rigorous upper bound (THEORY §3 item 6).
pub const FIRST_LAYER_SPECTRAL_NORM: &str = "first_layer_spectral_norm";
/// ‖W‖₂, its rigorous lower bound.
pub const FIRST_LAYER_SPECTRAL_NORM_LOWER: &str = "first_layer_spectral_norm_lower";
/// ‖W‖_F.
pub const FIRST_LAYER_FROBENIUS_NORM: &str = "first_layer_frobenius_norm";
/// max_j Σ_k |W_jk| (T2c, T7e).
pub const FIRST_LAYER_MAX_ROW_SUM: &str = "first_layer_max_row_sum";
/// max_k Σ_j |W_jk| (T2c, T7e).
pub const FIRST_LAYER_MAX_COL_SUM: &str = "first_layer_max_col_sum";
/// tr G_W = (1/n) Σ_i ‖J_W(x_i)‖_F² (T3).
pub const FIRST_LAYER_GAUSS_NEWTON_TRACE: &str = "first_layer_gauss_newton_trace";
/// T2 tightness ratio max_i ‖J_x‖_F‖x_i‖ / (‖W‖₂‖J_W‖_F).
pub const FIRST_LAYER_INEQUALITY_MAX_RATIO: &str = "first_layer_inequality_max_ratio";

// --- The training inputs ----------------------------------------------------------------------
/// min_i ‖x_i‖₂.
pub const INPUT_NORM_MIN: &str = "input_norm_min";
/// max_i ‖x_i‖₂.
pub const INPUT_NORM_MAX: &str = "input_norm_max";
/// (1/n) Σ_i ‖x_i‖₂.
pub const INPUT_NORM_MEAN: &str = "input_norm_mean";

// --- Per-sample first-order quantities (T3, T5, T6, T7) ---------------------------------------
/// max_i λ_max(J_iJ_iᵀ) (T5(i), T6).
pub const PER_SAMPLE_LAMBDA_MAX: &str = "per_sample_lambda_max";
/// (1/n) Σ_i (tr H_i)² (T5g, T7d).
pub const PER_SAMPLE_TRACE_SQ_MEAN: &str = "per_sample_trace_sq_mean";
/// (1/n) Σ_i ‖H_i‖_F² (T5g).
pub const PER_SAMPLE_FRO_SQ_MEAN: &str = "per_sample_fro_sq_mean";
/// The Wu–Ma–E non-uniformity (T5 diagnostic).
pub const NONUNIFORMITY: &str = "nonuniformity";
/// (1/n) Σ_i ‖J_x(x_i)‖_F² ‖x_i‖² (T3).
pub const INPUT_GRAD_WEIGHTED_MEAN_SQ: &str = "input_grad_weighted_mean_sq";
/// max_i ‖J_x(x_i)‖₂ (T7b).
pub const INPUT_GRAD_SPECTRAL_MAX: &str = "input_grad_spectral_max";
/// max_i ‖J_x(x_i)‖_F ‖x_i‖ (T7a).
pub const INPUT_GRAD_WEIGHTED_MAX: &str = "input_grad_weighted_max";

// --- The residual and H = G (T5 failure mode (i), Min) ----------------------------------------
/// max_ic |f_c(x_i) − y_ic|.
pub const MAX_ABS_RESIDUAL: &str = "max_abs_residual";
/// max_i ‖f(x_i) − y_i‖₂.
pub const MAX_RESIDUAL_NORM: &str = "max_residual_norm";
/// ‖∇ℒ‖.
pub const LOSS_GRADIENT_NORM: &str = "loss_gradient_norm";
/// ℒ = (1/n) Σ ½‖f(x_i) − y_i‖².
pub const TRAIN_LOSS: &str = "train_loss";
/// Units whose pre-activation is within rounding of a kink (THEORY §3 item 1, Rules).
pub const NEAR_KINK_UNITS: &str = "near_kink_units";
/// The smooth-σ backward-rounding size (relative, `2γ_K`; 0 for piecewise-linear σ): for tanh,
/// sigmoid and softplus the Jacobian tolerances are a-priori estimates (THEORY §3 item 1), so
/// every Jacobian-dependent verdict lists it as an assumed hypothesis.
pub const SMOOTH_BACKWARD_ROUNDING: &str = "smooth_backward_rounding";
/// λ_max(H) (Lanczos estimate; `…_lower` its rigorous lower bound).
pub const HESSIAN_LAMBDA_MAX: &str = "hessian_lambda_max";
/// λ_min(H) (Lanczos estimate; `…_upper` its upper bound).
pub const HESSIAN_LAMBDA_MIN: &str = "hessian_lambda_min";
/// Upper bound of λ_min(H).
pub const HESSIAN_LAMBDA_MIN_UPPER: &str = "hessian_lambda_min_upper";
/// tr H.
pub const HESSIAN_TRACE: &str = "hessian_trace";
/// |tr H − tr G| (Hutchinson for smooth σ, 0 for piecewise-linear σ by T3).
pub const HESSIAN_GN_TRACE_DIFFERENCE: &str = "hessian_gn_trace_difference";
/// ‖H − G‖₂.
pub const HESSIAN_GN_DIFFERENCE_NORM: &str = "hessian_gn_difference_norm";

// --- Layered networks: the radial quantities (THEORY §7(b): radial T2, T3, T7) ---------------
/// (1/n) Σ_i ‖J_x(x_i) x_i‖².
pub const INPUT_GRAD_RADIAL_MEAN_SQ: &str = "input_grad_radial_mean_sq";
/// max_i ‖J_x(x_i) x_i‖.
pub const INPUT_GRAD_RADIAL_MAX: &str = "input_grad_radial_max";

// --- λ_max(G) and the spectrum of G (T4, §3 item 8) -------------------------------------------
/// λ_max(G): rigorous upper bound (Gram path) or estimate (operator path).
pub const GAUSS_NEWTON_LAMBDA_MAX: &str = "gauss_newton_lambda_max";
/// Rigorous lower bound of λ_max(G).
pub const GAUSS_NEWTON_LAMBDA_MAX_LOWER: &str = "gauss_newton_lambda_max_lower";
/// Randomized upper bound of λ_max(G), with its confidence (THEORY §3 item 8).
pub const GAUSS_NEWTON_LAMBDA_MAX_UPPER: &str = "gauss_newton_lambda_max_upper";
/// tr G.
pub const GAUSS_NEWTON_TRACE: &str = "gauss_newton_trace";
/// ‖K‖_F.
pub const GAUSS_NEWTON_FROBENIUS: &str = "gauss_newton_frobenius";
/// Rank of K above τ·λ_max.
pub const GAUSS_NEWTON_RANK: &str = "gauss_newton_rank";
/// τ of the rank.
pub const GAUSS_NEWTON_TAU: &str = "gauss_newton_tau";
/// Sum of |λ_j| of K below τ·λ_max.
pub const GAUSS_NEWTON_DISCARDED_MASS: &str = "gauss_newton_discarded_mass";
/// Operator products of the randomized λ_max(G) bound.
pub const GAUSS_NEWTON_LANCZOS_PRODUCTS: &str = "gauss_newton_lanczos_products";
/// Prefix of the top eigenvalues of K, `gauss_newton_top_eigenvalue_{j}` for j = 1, 2, ….
pub const GAUSS_NEWTON_TOP_EIGENVALUE_: &str = "gauss_newton_top_eigenvalue_";

// --- T4: the GD critical rate -----------------------------------------------------------------
/// η_GD* = 2/λ_max(G).
pub const GD_CRITICAL_LR: &str = "gd_critical_lr";
/// Rigorous upper bound of η_GD*.
pub const GD_CRITICAL_LR_UPPER: &str = "gd_critical_lr_upper";
/// Lower bound of η_GD* (from the randomized upper bound of λ_max(G), with its confidence).
pub const GD_CRITICAL_LR_LOWER: &str = "gd_critical_lr_lower";
/// η_GD* = +∞ (G = 0).
pub const GD_CRITICAL_LR_VACUOUS: &str = "gd_critical_lr_vacuous";
/// The T4 margin 2/η − λ_max(G) at the run's η.
pub const GD_MARGIN: &str = "gd_margin";

// --- T5: the mean-square critical rate (exact route (f)) --------------------------------------
/// η* = 1/λ_max(𝒟̃), lower end.
pub const MEAN_SQUARE_CRITICAL_LR: &str = "mean_square_critical_lr";
/// η*, upper end.
pub const MEAN_SQUARE_CRITICAL_LR_UPPER: &str = "mean_square_critical_lr_upper";
/// η* = +∞ (λ_max(𝒟̃) = 0).
pub const MEAN_SQUARE_CRITICAL_LR_VACUOUS: &str = "mean_square_critical_lr_vacuous";
/// Certified relative margin 1/(η·upper) − 1.
pub const MEAN_SQUARE_MARGIN: &str = "mean_square_margin";
/// Upper side of the λ_max(𝒟̃) bracket (allowances included).
pub const MEAN_SQUARE_DTILDE_LAMBDA_MAX: &str = "mean_square_dtilde_lambda_max";
/// Lower side of the λ_max(𝒟̃) bracket.
pub const MEAN_SQUARE_DTILDE_LAMBDA_MAX_LOWER: &str = "mean_square_dtilde_lambda_max_lower";
/// Eigenpairs of K kept for T5.
pub const MEAN_SQUARE_RANK: &str = "mean_square_rank";
/// Relative threshold of the kept eigenvalues.
pub const MEAN_SQUARE_TAU: &str = "mean_square_tau";
/// Sum of the eigenvalues of K not kept for T5.
pub const MEAN_SQUARE_DISCARDED_MASS: &str = "mean_square_discarded_mass";
/// λ_min(K_r) (T5e).
pub const MEAN_SQUARE_LAMBDA_MIN_KEPT: &str = "mean_square_lambda_min_kept";
/// λ_max(𝒬_r) at the run's η (diagnostic).
pub const MEAN_SQUARE_RHO: &str = "mean_square_rho";
/// The assumed rounding-of-K allowance of T5(f) (THEORY §3 item 7).
pub const MEAN_SQUARE_ROUNDING_ALLOWANCE: &str = "mean_square_rounding_allowance";
/// The batch size B of the λ_max(𝒟̃) bracket.
pub const MEAN_SQUARE_BATCH: &str = "mean_square_batch";
/// 1 if the λ_max(𝒟̃) bracket is for sampling with replacement (model S′), else 0.
pub const MEAN_SQUARE_WITH_REPLACEMENT: &str = "mean_square_with_replacement";
/// Wu–Ma–E λ_max at the run's η (T5 diagnostic).
pub const WME_LAMBDA_MAX: &str = "wme_lambda_max";
/// T5(g): λ_max(G) side of the necessary tests.
pub const T5G_SHARPNESS: &str = "t5g_sharpness";
/// T5(g): tr G.
pub const T5G_TRACE: &str = "t5g_trace";
/// T5(g): (1/n) Σ_i ‖H_i‖_F².
pub const T5G_MEAN_SQ_FROBENIUS: &str = "t5g_mean_sq_frobenius";
/// T5(g): (1/n) Σ_i (tr H_i)².
pub const T5G_MEAN_SQ_TRACE: &str = "t5g_mean_sq_trace";
/// Prefix of the T5(g) margins, `t5g_margin_{test}`.
pub const T5G_MARGIN_: &str = "t5g_margin_";

// --- Robustness (T8–T10) ----------------------------------------------------------------------
/// max_i L_i(ε) (T10).
pub const LIPSCHITZ_MAX: &str = "lipschitz_max";
/// mean_i L_i(ε) (T10).
pub const LIPSCHITZ_MEAN: &str = "lipschitz_mean";
/// Held-out coverage of (D_ε) (T8).
pub const COVERAGE_FRACTION: &str = "coverage_fraction";
/// Fraction of points certified robust (T9).
pub const ROBUST_CERTIFIED_FRACTION: &str = "robust_certified_fraction";
/// Mean local Lipschitz bound (T10).
pub const LIPSCHITZ_LOCAL_MEAN: &str = "lipschitz_local_mean";
/// Largest local Lipschitz bound (T10).
pub const LIPSCHITZ_LOCAL_MAX: &str = "lipschitz_local_max";
/// Mean of ω.
pub const OMEGA_MEAN: &str = "omega_mean";
/// Largest ω.
pub const OMEGA_MAX: &str = "omega_max";
/// Prefix of the certified-radius quantiles, `robust_radius_q{00,10,…,100}`.
pub const ROBUST_RADIUS_Q: &str = "robust_radius_q";
/// T8 bound of the mean absolute error.
pub const GEN_BOUND_MEAN_ABS: &str = "gen_bound_mean_abs";
/// T8 bound of the mean half squared error.
pub const GEN_BOUND_MEAN_HALF_SQ: &str = "gen_bound_mean_half_sq";
/// The training residual term of T8.
pub const GEN_RESIDUAL_MEAN: &str = "gen_residual_mean";
/// The Lipschitz term of T8.
pub const GEN_LIPSCHITZ_TERM: &str = "gen_lipschitz_term";
/// T8 bound of the classification error.
pub const GEN_BOUND_CLASSIFICATION_ERROR: &str = "gen_bound_classification_error";
/// Fraction of held-out points within ε of a training point.
pub const COVERAGE_WITHIN_EPS: &str = "coverage_within_eps";
/// Same, with the same label.
pub const COVERAGE_WITHIN_EPS_LABEL: &str = "coverage_within_eps_label";
/// Median nearest-neighbour distance of the held-out points.
pub const COVERAGE_NN_DISTANCE_MEDIAN: &str = "coverage_nn_distance_median";

// --- Per-k families: `prefix{k}` ---------------------------------------------------------------
/// `input_lq_norm_min_k{k}`: min_i ‖x_i‖_{2k} (T7e).
pub const INPUT_LQ_NORM_MIN_K: &str = "input_lq_norm_min_k";
/// `param_grad_moment_k{k}`: ((1/n) Σ ‖J_θ(x_i)‖_F^{2k})^{1/2k}.
pub const PARAM_GRAD_MOMENT_K: &str = "param_grad_moment_k";
/// `first_layer_grad_moment_k{k}`: ((1/n) Σ ‖J_W(x_i)‖_F^{2k})^{1/2k}.
pub const FIRST_LAYER_GRAD_MOMENT_K: &str = "first_layer_grad_moment_k";
/// `input_grad_moment_k{k}`: ((1/n) Σ ‖J_x(x_i)‖_F^{2k})^{1/2k} (T7c).
pub const INPUT_GRAD_MOMENT_K: &str = "input_grad_moment_k";
/// `input_grad_radial_moment_k{k}`: ((1/n) Σ_i ‖J_x(x_i) x_i‖^{2k})^{1/(2k)} (layered networks).
pub const INPUT_GRAD_RADIAL_MOMENT_K: &str = "input_grad_radial_moment_k";
/// `input_grad_weighted_moment_k{k}`: ((1/n) Σ (‖J_x(x_i)‖_F ‖x_i‖)^{2k})^{1/2k} (T7c).
pub const INPUT_GRAD_WEIGHTED_MOMENT_K: &str = "input_grad_weighted_moment_k";
/// `input_grad_elementwise_k{k}`: g_x(k) (T7e).
pub const INPUT_GRAD_ELEMENTWISE_K: &str = "input_grad_elementwise_k";
/// `param_grad_elementwise_k{k}`: g_W(k) (T7e).
pub const PARAM_GRAD_ELEMENTWISE_K: &str = "param_grad_elementwise_k";
/// `k_moment_directional_max_k{k}`: max_i E[(1 − η v_iᵀH_ξv_i)^k] (T6(d)).
pub const K_MOMENT_DIRECTIONAL_MAX_K: &str = "k_moment_directional_max_k";
/// `k_moment_directional_argmax_k{k}`: the sample of that maximum.
pub const K_MOMENT_DIRECTIONAL_ARGMAX_K: &str = "k_moment_directional_argmax_k";
/// `k_moment_critical_lr_k{k}`: η*_k (T6).
pub const K_MOMENT_CRITICAL_LR_K: &str = "k_moment_critical_lr_k";
/// `gen_bound_moment_k{k}`: the k-th moment form of the T8 bound.
pub const GEN_BOUND_MOMENT_K: &str = "gen_bound_moment_k";
/// `input_jacobian_g2k_k{k}`: the input-Jacobian moment of that form.
pub const INPUT_JACOBIAN_G2K_K: &str = "input_jacobian_g2k_k";

/// The canonical name of the `k`-th member of the per-k family `prefix` (e.g.
/// `per_k(INPUT_GRAD_MOMENT_K, 2)` = `"input_grad_moment_k2"`).
pub fn per_k(prefix: &str, k: impl std::fmt::Display) -> String {
    format!("{prefix}{k}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names built from a base and a suffix (`insert_into(map, base, suffix)` of the Lanczos
    /// estimates) are the constants the readers use.
    #[test]
    fn suffixed_names_are_the_constants() {
        assert_eq!(
            format!("{HESSIAN_LAMBDA_MIN}_upper"),
            HESSIAN_LAMBDA_MIN_UPPER
        );
        assert_eq!(
            format!("{GAUSS_NEWTON_LAMBDA_MAX}_lower"),
            GAUSS_NEWTON_LAMBDA_MAX_LOWER
        );
        assert_eq!(per_k(INPUT_GRAD_MOMENT_K, 2), "input_grad_moment_k2");
    }
}
