//! What the stability sweep needs of a network and its data: the one seam between
//! [`super::stability_document`] and the two kinds of checkpoints, a dense MLP ([`Problem`]) and
//! a layered (convolutional) network ([`NetProblem`]). T4, T5 (with T5(i) at scale) and T6 hold
//! unchanged for any architecture (THEORY §7(c)); only the measurements behind them differ.

use std::collections::BTreeMap;

use crate::certify::scale::{ScaleEvidence, layered_scale_evidence, scale_evidence};
use crate::error::Result;
use crate::measure::document::CurvatureSource as _;
use crate::measure::gram::{GramOptions, GramSpectrum, gauss_newton_gram, gram_memory_bytes};
use crate::measure::lanczos::UpperBoundOptions;
use crate::measure::layered::{
    LayeredSource, layered_gram_cost, measurement_inputs, network_notes,
};
use crate::measure::names;
use crate::measurements::MeasurementInputs;
use crate::model::Activation;
use crate::problem::{Loaded, NetProblem, Problem, TrainingHyper, training_hyper};

use super::ResidualInfo;
use super::cost::{CostEstimate, estimate_cost, gram_seconds_estimate};

/// A checkpoint and its data, as the stability sweep sees it (implemented by [`Problem`] and
/// [`NetProblem`]; [`super::sweep`] takes either).
pub trait Subject {
    /// Number of samples n.
    fn n(&self) -> usize;
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// Number of parameters P.
    fn params(&self) -> usize;
    /// The checkpoint's metadata (training η, B, sampling).
    fn metadata(&self) -> &BTreeMap<String, String>;
    /// The checkpoint's path as the documents record it.
    fn model_path(&self) -> &str;
    /// The activation the T4/T5 context records (the first one of a layered network; T4 and T5
    /// do not depend on it).
    fn activation(&self) -> Activation;
    /// The notes every document of this checkpoint starts with.
    fn opening_notes(&self) -> Vec<String>;
    /// The note of a bundled example (None for user files).
    fn embedded_note(&self) -> Option<String>;
    /// The `inputs` record of the document.
    fn measurement_inputs(&self, k: &[u32]) -> MeasurementInputs;
    /// Residual diagnostics and ‖∇ℒ‖ (None without targets; THEORY T5 failure mode (i)).
    fn residual(&self) -> Result<Option<ResidualInfo>>;
    /// The assumed hypotheses behind K a reader of the brackets must see.
    fn jacobian_notes(&self, residual: Option<&ResidualInfo>) -> Vec<String>;
    /// The cost model of the Gram path and the cone steps ([`estimate_cost`]).
    fn cost(&self, rank_cap: usize) -> CostEstimate;
    /// The exact Gram spectrum (THEORY §4).
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum>;
    /// The matrix-free evidence beyond the Gram limit (THEORY T5(i), §3 item 8).
    fn scale_evidence(
        &self,
        opts: &UpperBoundOptions,
        memory_limit: usize,
    ) -> Result<ScaleEvidence>;
    /// η, its convention and B from the checkpoint's metadata.
    fn metadata_hyper(&self) -> TrainingHyper {
        training_hyper(self.metadata(), None, None, None)
    }
}

const DIGITS_NOTE: &str =
    "bundled example: digits (UCI, CC BY 4.0), x scaled by 1/16, labels one-hot";

impl Subject for Problem {
    fn n(&self) -> usize {
        self.data.len()
    }
    fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }
    fn params(&self) -> usize {
        self.mlp.num_params()
    }
    fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    fn model_path(&self) -> &str {
        &self.model_file.path
    }
    fn activation(&self) -> Activation {
        self.mlp.activation()
    }
    fn opening_notes(&self) -> Vec<String> {
        self.default_activation_notes()
    }
    fn embedded_note(&self) -> Option<String> {
        self.embedded.then(|| DIGITS_NOTE.to_string())
    }
    fn measurement_inputs(&self, k: &[u32]) -> MeasurementInputs {
        Problem::measurement_inputs(self, k)
    }
    fn residual(&self) -> Result<Option<ResidualInfo>> {
        super::document::residual_info(self)
    }
    fn jacobian_notes(&self, residual: Option<&ResidualInfo>) -> Vec<String> {
        super::document::jacobian_notes(&self.mlp, residual)
    }
    fn cost(&self, rank_cap: usize) -> CostEstimate {
        let n = self.data.len();
        let gram = (
            gram_memory_bytes(&self.mlp, n),
            gram_seconds_estimate(&self.mlp, n),
        );
        estimate_cost(n * self.outputs(), self.params(), gram, rank_cap)
    }
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum> {
        gauss_newton_gram(&self.mlp, &self.data, opts)
    }
    fn scale_evidence(
        &self,
        opts: &UpperBoundOptions,
        memory_limit: usize,
    ) -> Result<ScaleEvidence> {
        scale_evidence(&self.mlp, &self.data, opts, memory_limit)
    }
}

impl Subject for NetProblem {
    fn n(&self) -> usize {
        self.data.len()
    }
    fn outputs(&self) -> usize {
        self.net.output_dim()
    }
    fn params(&self) -> usize {
        self.net.num_params()
    }
    fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    fn model_path(&self) -> &str {
        &self.model_file.path
    }
    fn activation(&self) -> Activation {
        self.net
            .activations()
            .first()
            .copied()
            .unwrap_or(Activation::Identity)
    }
    fn opening_notes(&self) -> Vec<String> {
        network_notes(&self.net)
    }
    fn embedded_note(&self) -> Option<String> {
        self.embedded
            .then(|| format!("{DIGITS_NOTE}, 8×8 images as [n, 1, 8, 8]"))
    }
    fn measurement_inputs(&self, k: &[u32]) -> MeasurementInputs {
        measurement_inputs(self, k)
    }
    /// From [`crate::measure::layered::residual_quantities`]: max|res| with its rigorous upper
    /// side (the IBP output enclosure at radius 0, or none when IBP does not apply), √(2ℒ) and
    /// ‖∇ℒ‖; H = G is never proven (a layered network reports no near-kink count, so a ReLU kink
    /// at a training point cannot be excluded).
    fn residual(&self) -> Result<Option<ResidualInfo>> {
        let q = crate::measure::layered::residual_quantities(self, 64)?;
        let (Some(max_abs), Some(loss), Some(grad)) = (
            q.get(names::MAX_ABS_RESIDUAL),
            q.get(names::TRAIN_LOSS),
            q.get(names::LOSS_GRADIENT_NORM),
        ) else {
            return Ok(None);
        };
        let ev = crate::certify::evidence::Evidence::from_map(&q);
        let residual = crate::certify::theorems::residual_evidence(&ev);
        Ok(Some(ResidualInfo {
            max_abs_residual: max_abs.value,
            max_abs_residual_upper: residual.upper(),
            hessian_is_gauss_newton: residual.hessian_is_gauss_newton(),
            rms_residual: (2.0 * loss.value).sqrt(),
            loss_gradient_norm: grad.value,
            near_kink_units: 0,
        }))
    }
    fn jacobian_notes(&self, _residual: Option<&ResidualInfo>) -> Vec<String> {
        vec![format!(
            "assumed: the rounding of K is within the a-priori relative estimate 2γ_K = {:.3e} of \
             the conv/pool backward pass, and the activation pattern (ReLU kinks, max-pool ties) \
             at the training points is as computed (THEORY §3 item 1, §7(c); certify: \
             backward_rounding)",
            crate::measure::layered::layered_jacobian_rel_tol(&self.net)
        )]
    }
    fn cost(&self, rank_cap: usize) -> CostEstimate {
        let n = self.n();
        let gram = layered_gram_cost(&self.net, n);
        estimate_cost(n * self.outputs(), self.params(), gram, rank_cap)
    }
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum> {
        LayeredSource::of(self)?.gram(opts)
    }
    fn scale_evidence(
        &self,
        opts: &UpperBoundOptions,
        memory_limit: usize,
    ) -> Result<ScaleEvidence> {
        layered_scale_evidence(self, opts, memory_limit)
    }
}

impl Loaded {
    /// The loaded checkpoint as a stability [`Subject`].
    pub fn stability_subject(&self) -> &dyn Subject {
        match self {
            Loaded::Dense(p) => p.as_ref(),
            Loaded::Layered(p) => p.as_ref(),
        }
    }
}
