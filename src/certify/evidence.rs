//! Typed evidence (issue 13 item 2): what the measurement stage ([`super::collect`]) produces and
//! the theorem layer ([`super::theorems`]) consumes, grouped by what it is evidence of, instead of
//! a map keyed by strings.
//!
//! The canonical names of `docs/measurements.md` stay the contract **at the edge**: a measurements
//! document, a certificate's `measurements` and the maps of the `measure` engine are
//! `name → {value, kind, tol, …}`. This module is the one serialization layer between the two: one
//! table (the `canonical_names!` invocation below) gives every name (a constant of
//! [`crate::measure::names`], the names the measuring side writes) once, with the typed field it fills, and
//! [`Evidence::from_map`] / [`Evidence::to_map`] go through that table only. Quantities the
//! theorems do not read stay under their names in [`Evidence::other`], so the certificate's map is
//! unchanged by the round trip.
//!
//! Every field is a [`Quantity`] with its kind (THEORY §3: exact with its tol, upper, lower,
//! estimate) or absent (`None`: not measured — the theorem layer turns a missing input into a
//! `not_computed` reason that names it). Two numbers are typed further: the batch size and the
//! sampling model of the λ_max(𝒟̃) bracket ([`T5Evidence::bracket_batch`],
//! [`T5Evidence::bracket_sampling`]), which the map stores as floats (the sampling as 0/1).

use std::collections::BTreeMap;

use flatcert_bounds::Sampling;

use crate::measure::QuantityMap;
pub use crate::measure::names;
pub use crate::measure::names::{MEAN_SQUARE_BATCH, MEAN_SQUARE_WITH_REPLACEMENT, per_k};
use crate::quantity::{Kind, Quantity};

/// One measured quantity; `None` when it was not measured.
pub type Slot = Option<Quantity>;

/// A quantity per moment order k (names `…_k{k}`).
pub type PerK = BTreeMap<u32, Quantity>;

/// T1's evidence: the first-layer identity residuals.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityEvidence {
    /// max |∇_x f·xᵀ − Wᵀ∇_W f| over the checked points (tol: its expected size 10u‖W‖‖δ‖‖x‖).
    pub matrix_residual: Slot,
    /// T1b: max |⟨x, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩_F|.
    pub scalar_residual: Slot,
    /// Number of points at which T1a was checked.
    pub points_checked: Slot,
}

/// The first layer W (T2, T3, T7, T8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FirstLayerEvidence {
    /// ‖W‖₂ (only its rigorous upper side is used).
    pub spectral_norm: Slot,
    /// max_j Σ_k |W_jk| (T2c, T7e).
    pub max_row_sum: Slot,
    /// max_k Σ_j |W_jk| (T2c, T7e).
    pub max_col_sum: Slot,
    /// tr G_W = (1/n) Σ_i ‖J_W(x_i)‖_F² (T3).
    pub gauss_newton_trace: Slot,
}

/// The training inputs x_i (T3, T7, T8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputEvidence {
    /// min_i ‖x_i‖₂.
    pub norm_min: Slot,
    /// (1/n) Σ_i ‖x_i‖₂.
    pub norm_mean: Slot,
    /// min_i ‖x_i‖_{2k} per k (T7e).
    pub lq_norm_min: PerK,
}

/// Per-sample first-order evidence: input- and parameter-gradient moments and maxima (T3, T7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerSampleEvidence {
    /// max_i λ_i, λ_i = λ_max(J_iᵀJ_i) (T5(i), T6).
    pub lambda_max: Slot,
    /// (1/n) Σ_i (tr H_i)² (T5g, T7d).
    pub trace_sq_mean: Slot,
    /// (1/n) Σ_i ‖H_i‖_F² (T5g).
    pub fro_sq_mean: Slot,
    /// The Wu–Ma–E non-uniformity (T5 diagnostic).
    pub nonuniformity: Slot,
    /// (1/n) Σ_i ‖J_x(x_i)‖_F² ‖x_i‖² (T3).
    pub input_grad_weighted_mean_sq: Slot,
    /// max_i ‖J_x(x_i)‖₂ (T7b).
    pub input_grad_spectral_max: Slot,
    /// max_i ‖J_x(x_i)‖_F ‖x_i‖ (T7a).
    pub input_grad_weighted_max: Slot,
    /// ((1/n) Σ_i ‖J_x(x_i)‖_F^{2k})^{1/2k} per k (T7c).
    pub input_grad_moment: PerK,
    /// ((1/n) Σ_i (‖J_x(x_i)‖_F ‖x_i‖)^{2k})^{1/2k} per k (T7c).
    pub input_grad_weighted_moment: PerK,
    /// Entrywise input-gradient moment G_x per k (T7e).
    pub input_grad_elementwise: PerK,
    /// Entrywise parameter-gradient moment G_W per k (T7e).
    pub param_grad_elementwise: PerK,
}

/// The residual and what it says about H = G (THEORY T5 failure mode (i), `Min`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResidualQuantities {
    /// max_ic |f_c(x_i) − y_ic|.
    pub max_abs: Slot,
    /// max_i ‖f(x_i) − y_i‖₂.
    pub max_norm: Slot,
    /// ‖∇ℒ‖.
    pub loss_gradient_norm: Slot,
    /// ℒ.
    pub train_loss: Slot,
    /// Units whose pre-activation is within rounding of a kink (the count; its note describes it).
    pub near_kink_units: Slot,
    /// Smooth σ: the relative a-priori size 2γ_K of the Jacobian tolerances (0 otherwise).
    pub smooth_backward_rounding: Slot,
    /// Lanczos upper bound of λ_min(H) (smooth σ with a residual).
    pub hessian_lambda_min_upper: Slot,
    /// |tr H − tr G| (Hutchinson, smooth σ with a residual).
    pub hessian_gn_trace_difference: Slot,
}

/// λ_max(G) and the spectrum of G: the exact Gram path's rigorous bracket, or the operator path's
/// Lanczos lower bound and randomized upper bound (THEORY §3 item 8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperatorEvidence {
    /// λ_max(G): rigorous upper bound (Gram path) or estimate (operator path).
    pub lambda_max: Slot,
    /// Rigorous lower bound of λ_max(G).
    pub lambda_max_lower: Slot,
    /// Randomized upper bound of λ_max(G), with its confidence (operator path).
    pub lambda_max_upper: Slot,
    /// tr G.
    pub trace: Slot,
    /// rank of K above τ.
    pub rank: Slot,
    /// τ of the rank.
    pub tau: Slot,
    /// Operator products of the randomized bound.
    pub lanczos_products: Slot,
}

/// T5's exact route (f): the certified λ_max(𝒟̃) bracket and the model it was computed on, and
/// the η-dependent diagnostics of the same run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct T5Evidence {
    /// Certified upper bound of λ_max(𝒟̃) (allowances included).
    pub dtilde_upper: Slot,
    /// Certified lower bound of λ_max(𝒟̃).
    pub dtilde_lower: Slot,
    /// The batch size B the bracket is for, as recorded (a document may hold any number).
    pub bracket_batch: Option<f64>,
    /// The sampling model the bracket is for.
    pub bracket_sampling: Option<Sampling>,
    /// Eigenpairs of K kept.
    pub rank: Slot,
    /// Relative threshold of the kept eigenvalues.
    pub tau: Slot,
    /// Sum of the eigenvalues of K not kept.
    pub discarded_mass: Slot,
    /// λ_min(K_r).
    pub lambda_min_kept: Slot,
    /// λ_max(𝒬_r) (diagnostic at the run's η).
    pub rho: Slot,
    /// Wu–Ma–E λ_max (diagnostic at the run's η).
    pub wme_lambda_max: Slot,
    /// The assumed rounding-of-K allowance (issue 15 item 5).
    pub rounding_allowance: Slot,
}

/// T6(d)'s directional tests as a document keeps them: the worst value per k and its sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirectionalEvidence {
    /// max_i E[(1 − η v_iᵀH_ξv_i)^k] per k.
    pub max: PerK,
    /// The sample of that maximum, per k.
    pub argmax: PerK,
}

/// The radial quantities of a layered network (THEORY §7(b): radial T2, T3, T7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RadialEvidence {
    /// ‖W‖_F of the first layer's weight (upper).
    pub w_frobenius: Slot,
    /// (1/n) Σ_i ‖J_x(x_i) x_i‖².
    pub mean_sq: Slot,
    /// max_i ‖J_x(x_i) x_i‖.
    pub max: Slot,
    /// ((1/n) Σ_i ‖J_x(x_i) x_i‖^{2k})^{1/(2k)} per k.
    pub moment: PerK,
    /// ((1/n) Σ_i ‖J_W(x_i)‖_F^{2k})^{1/(2k)} per k.
    pub first_layer_moment: PerK,
}

/// Summary numbers of the robustness stage (T8–T10; the per-point data is in
/// [`super::theorems::Robust`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RobustnessEvidence {
    /// max_i L_i(ε) (T10).
    pub lipschitz_max: Slot,
    /// mean_i L_i(ε) (T10).
    pub lipschitz_mean: Slot,
    /// Held-out coverage of (D_ε) (T8).
    pub coverage_fraction: Slot,
}

/// Everything measured, typed (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// T1.
    pub identity: IdentityEvidence,
    /// The first layer.
    pub first_layer: FirstLayerEvidence,
    /// The training inputs.
    pub input: InputEvidence,
    /// Per-sample moments and maxima.
    pub per_sample: PerSampleEvidence,
    /// The residual.
    pub residual: ResidualQuantities,
    /// λ_max(G) and the spectrum of G.
    pub operator: OperatorEvidence,
    /// T5's exact route.
    pub t5: T5Evidence,
    /// T6(d).
    pub directional: DirectionalEvidence,
    /// T8–T10 summary numbers.
    pub robustness: RobustnessEvidence,
    /// Radial quantities (layered networks).
    pub radial: RadialEvidence,
    /// Every other quantity, under its canonical name (reported, not read by a theorem).
    pub other: QuantityMap,
}

/// The one table of the typed fields of single quantities: `CONST => group.field`, the names
/// being the constants of [`crate::measure::names`].
macro_rules! canonical_names {
    ($( $konst:ident => $group:ident . $field:ident ; )*) => {
        impl Evidence {
            fn slot_mut(&mut self, name: &str) -> Option<&mut Slot> {
                match name {
                    $( names::$konst => Some(&mut self.$group.$field), )*
                    _ => None,
                }
            }

            fn slots(&self) -> Vec<(&'static str, &Slot)> {
                vec![$( (names::$konst, &self.$group.$field) ),*]
            }
        }
    };
}

/// The table of per-k families: `CONST => group.field` for the names `prefix{k}`.
macro_rules! per_k_families {
    ($( $konst:ident => $group:ident . $field:ident ; )*) => {
        impl Evidence {
            fn family_mut(&mut self, prefix: &str) -> Option<&mut PerK> {
                match prefix {
                    $( names::$konst => Some(&mut self.$group.$field), )*
                    _ => None,
                }
            }

            fn families(&self) -> Vec<(&'static str, &PerK)> {
                vec![$( (names::$konst, &self.$group.$field) ),*]
            }
        }
    };
}

canonical_names! {
    IDENTITY_MAX_ABS_RESIDUAL => identity.matrix_residual;
    IDENTITY_SCALAR_MAX_ABS_RESIDUAL => identity.scalar_residual;
    IDENTITY_POINTS_CHECKED => identity.points_checked;
    FIRST_LAYER_SPECTRAL_NORM => first_layer.spectral_norm;
    FIRST_LAYER_MAX_ROW_SUM => first_layer.max_row_sum;
    FIRST_LAYER_MAX_COL_SUM => first_layer.max_col_sum;
    FIRST_LAYER_GAUSS_NEWTON_TRACE => first_layer.gauss_newton_trace;
    INPUT_NORM_MIN => input.norm_min;
    INPUT_NORM_MEAN => input.norm_mean;
    PER_SAMPLE_LAMBDA_MAX => per_sample.lambda_max;
    PER_SAMPLE_TRACE_SQ_MEAN => per_sample.trace_sq_mean;
    PER_SAMPLE_FRO_SQ_MEAN => per_sample.fro_sq_mean;
    NONUNIFORMITY => per_sample.nonuniformity;
    INPUT_GRAD_WEIGHTED_MEAN_SQ => per_sample.input_grad_weighted_mean_sq;
    INPUT_GRAD_SPECTRAL_MAX => per_sample.input_grad_spectral_max;
    INPUT_GRAD_WEIGHTED_MAX => per_sample.input_grad_weighted_max;
    MAX_ABS_RESIDUAL => residual.max_abs;
    MAX_RESIDUAL_NORM => residual.max_norm;
    LOSS_GRADIENT_NORM => residual.loss_gradient_norm;
    TRAIN_LOSS => residual.train_loss;
    NEAR_KINK_UNITS => residual.near_kink_units;
    SMOOTH_BACKWARD_ROUNDING => residual.smooth_backward_rounding;
    HESSIAN_LAMBDA_MIN_UPPER => residual.hessian_lambda_min_upper;
    HESSIAN_GN_TRACE_DIFFERENCE => residual.hessian_gn_trace_difference;
    GAUSS_NEWTON_LAMBDA_MAX => operator.lambda_max;
    GAUSS_NEWTON_LAMBDA_MAX_LOWER => operator.lambda_max_lower;
    GAUSS_NEWTON_LAMBDA_MAX_UPPER => operator.lambda_max_upper;
    GAUSS_NEWTON_TRACE => operator.trace;
    GAUSS_NEWTON_RANK => operator.rank;
    GAUSS_NEWTON_TAU => operator.tau;
    GAUSS_NEWTON_LANCZOS_PRODUCTS => operator.lanczos_products;
    MEAN_SQUARE_DTILDE_LAMBDA_MAX => t5.dtilde_upper;
    MEAN_SQUARE_DTILDE_LAMBDA_MAX_LOWER => t5.dtilde_lower;
    MEAN_SQUARE_RANK => t5.rank;
    MEAN_SQUARE_TAU => t5.tau;
    MEAN_SQUARE_DISCARDED_MASS => t5.discarded_mass;
    MEAN_SQUARE_LAMBDA_MIN_KEPT => t5.lambda_min_kept;
    MEAN_SQUARE_RHO => t5.rho;
    WME_LAMBDA_MAX => t5.wme_lambda_max;
    MEAN_SQUARE_ROUNDING_ALLOWANCE => t5.rounding_allowance;
    LIPSCHITZ_MAX => robustness.lipschitz_max;
    LIPSCHITZ_MEAN => robustness.lipschitz_mean;
    COVERAGE_FRACTION => robustness.coverage_fraction;
    FIRST_LAYER_FROBENIUS_NORM => radial.w_frobenius;
    INPUT_GRAD_RADIAL_MEAN_SQ => radial.mean_sq;
    INPUT_GRAD_RADIAL_MAX => radial.max;
}

per_k_families! {
    INPUT_LQ_NORM_MIN_K => input.lq_norm_min;
    INPUT_GRAD_MOMENT_K => per_sample.input_grad_moment;
    INPUT_GRAD_WEIGHTED_MOMENT_K => per_sample.input_grad_weighted_moment;
    INPUT_GRAD_ELEMENTWISE_K => per_sample.input_grad_elementwise;
    PARAM_GRAD_ELEMENTWISE_K => per_sample.param_grad_elementwise;
    INPUT_GRAD_RADIAL_MOMENT_K => radial.moment;
    FIRST_LAYER_GRAD_MOMENT_K => radial.first_layer_moment;
    K_MOMENT_DIRECTIONAL_MAX_K => directional.max;
    K_MOMENT_DIRECTIONAL_ARGMAX_K => directional.argmax;
}

impl Evidence {
    /// The typed evidence of a map of canonical names (a measurements document, a certificate's
    /// `measurements`, or a map of the `measure` engine).
    pub fn from_map(map: &QuantityMap) -> Self {
        let mut ev = Evidence::default();
        ev.absorb(map.clone());
        ev
    }

    /// Add (or replace) the quantities of `map`, each into its typed field (the semantics of
    /// inserting into the map of canonical names).
    pub fn absorb(&mut self, map: QuantityMap) {
        for (name, q) in map {
            self.insert(name, q);
        }
    }

    /// Set the quantity named `name` (a canonical name of the table, else kept in
    /// [`Self::other`]).
    pub fn insert(&mut self, name: String, q: Quantity) {
        if let Some(slot) = self.slot_mut(&name) {
            *slot = Some(q);
            return;
        }
        match name.as_str() {
            MEAN_SQUARE_BATCH => {
                self.t5.bracket_batch = Some(q.value);
                return;
            }
            // The rule of the map: any value other than 0 is "with replacement".
            MEAN_SQUARE_WITH_REPLACEMENT => {
                self.t5.bracket_sampling = Some(if q.value != 0.0 {
                    Sampling::WithReplacement
                } else {
                    Sampling::WithoutReplacement
                });
                return;
            }
            _ => {}
        }
        if let Some((prefix, k)) = split_per_k(&name)
            && let Some(family) = self.family_mut(prefix)
        {
            family.insert(k, q);
            return;
        }
        self.other.insert(name, q);
    }

    /// The map of canonical names (the certificate's `measurements`, `docs/measurements.md`).
    pub fn to_map(&self) -> QuantityMap {
        let mut map = self.other.clone();
        for (name, slot) in self.slots() {
            if let Some(q) = slot {
                map.insert(name.to_string(), q.clone());
            }
        }
        for (prefix, family) in self.families() {
            for (k, q) in family {
                map.insert(per_k(prefix, *k), q.clone());
            }
        }
        if let Some(b) = self.t5.bracket_batch {
            map.insert(
                MEAN_SQUARE_BATCH.into(),
                Quantity::exact(b, 0.0).with_note("the batch size B of the λ_max(𝒟̃) bracket"),
            );
        }
        if let Some(s) = self.t5.bracket_sampling {
            map.insert(
                MEAN_SQUARE_WITH_REPLACEMENT.into(),
                Quantity::exact(
                    f64::from(u8::from(s == Sampling::WithReplacement)),
                    0.0,
                )
                .with_note(
                    "1 if the λ_max(𝒟̃) bracket is for sampling with replacement (model S′), else 0",
                ),
            );
        }
        map
    }
}

/// `prefix{k}` → (prefix, k) when the name ends in `k` followed by the decimal k as [`per_k`]
/// writes it (so `…_k02` is not a family member and keeps its name).
fn split_per_k(name: &str) -> Option<(&str, u32)> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let (prefix, tail) = name.split_at(name.len() - digits);
    let k: u32 = tail.parse().ok()?;
    (prefix.ends_with('k') && per_k(prefix, k) == name).then_some((prefix, k))
}

impl OperatorEvidence {
    /// λ_max(G) with every rigorous side known: the upper side from the Gram path's
    /// `gauss_newton_lambda_max` (deterministic) or, at scale, `gauss_newton_lambda_max_upper`
    /// (with its confidence, THEORY §3 item 8); the lower side from `…_lower`. Sides of another
    /// kind are ignored.
    pub fn upper_side(&self) -> Option<&Quantity> {
        [&self.lambda_max, &self.lambda_max_upper]
            .into_iter()
            .find_map(|s| s.as_ref().filter(|q| q.kind == Kind::Upper))
    }

    /// The rigorous lower side of λ_max(G), if its quantity is a lower bound.
    pub fn lower_side(&self) -> Option<&Quantity> {
        self.lambda_max_lower
            .as_ref()
            .filter(|q| q.kind == Kind::Lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: f64) -> Quantity {
        Quantity::exact(v, 0.0)
    }

    #[test]
    fn names_fill_their_typed_fields() {
        let mut map = QuantityMap::new();
        map.insert(names::FIRST_LAYER_SPECTRAL_NORM.into(), q(2.0));
        map.insert("input_grad_moment_k4".into(), q(3.0));
        map.insert(MEAN_SQUARE_WITH_REPLACEMENT.into(), q(1.0));
        map.insert(MEAN_SQUARE_BATCH.into(), q(8.0));
        map.insert("param_grad_moment_k2".into(), q(5.0));
        let ev = Evidence::from_map(&map);
        assert_eq!(
            ev.first_layer.spectral_norm.as_ref().map(|x| x.value),
            Some(2.0)
        );
        assert_eq!(
            ev.per_sample.input_grad_moment.get(&4).map(|x| x.value),
            Some(3.0)
        );
        assert_eq!(ev.t5.bracket_sampling, Some(Sampling::WithReplacement));
        assert_eq!(ev.t5.bracket_batch, Some(8.0));
        // Not read by a theorem: kept under its name.
        assert!(ev.other.contains_key("param_grad_moment_k2"));
        assert_eq!(ev.other.len(), 1);
    }

    /// The map written is the map read, name for name (what keeps the certificate's
    /// `measurements` unchanged), including names that only look like a family member.
    #[test]
    fn the_round_trip_keeps_every_name() {
        let mut map = QuantityMap::new();
        for (i, name) in [
            names::GAUSS_NEWTON_LAMBDA_MAX,
            names::MEAN_SQUARE_DTILDE_LAMBDA_MAX_LOWER,
            names::LIPSCHITZ_MEAN,
            "k_moment_directional_argmax_k6",
            "input_lq_norm_min_k02",
            "input_grad_moment_k",
            "something_else",
        ]
        .into_iter()
        .enumerate()
        {
            map.insert(name.into(), Quantity::upper(i as f64, 0.5).with_note("n"));
        }
        let ev = Evidence::from_map(&map);
        assert!(ev.other.contains_key("input_lq_norm_min_k02"));
        assert!(ev.other.contains_key("input_grad_moment_k"));
        assert_eq!(ev.to_map(), map);
    }

    #[test]
    fn the_sampling_flag_is_typed_both_ways() {
        let mut ev = Evidence::default();
        ev.t5.bracket_sampling = Some(Sampling::WithoutReplacement);
        let map = ev.to_map();
        assert_eq!(map[MEAN_SQUARE_WITH_REPLACEMENT].value, 0.0);
        assert_eq!(Evidence::from_map(&map), ev);
        // Any nonzero value of an edited document means "with replacement" (the map's rule).
        let mut map = QuantityMap::new();
        map.insert(MEAN_SQUARE_WITH_REPLACEMENT.into(), q(0.5));
        assert_eq!(
            Evidence::from_map(&map).t5.bracket_sampling,
            Some(Sampling::WithReplacement)
        );
    }

    #[test]
    fn only_rigorous_sides_bound_lambda_max() {
        let mut op = OperatorEvidence {
            lambda_max: Some(Quantity::estimate(1.0, 0.1)),
            lambda_max_upper: Some(Quantity::upper(1.5, 0.0)),
            lambda_max_lower: Some(Quantity::estimate(0.9, 0.0)),
            ..OperatorEvidence::default()
        };
        assert_eq!(op.upper_side().map(|q| q.value), Some(1.5));
        assert!(op.lower_side().is_none());
        op.lambda_max = Some(Quantity::upper(1.2, 0.0));
        assert_eq!(op.upper_side().map(|q| q.value), Some(1.2));
    }
}
