//! The linearized SGD recursion of THEORY.md §0, matrix-free.
//!
//! At an interpolating minimum θ* (all `res_i = 0`) the Hessian of `ℓ_i` is `H_i = J_iᵀJ_i`, and
//! `u_t := θ_t − θ*` follows, to first order,
//!
//! ```text
//! u_{t+1} = (I − ηH_{ξ_t}) u_t = u_t − (η/B) Σ_{i∈ξ_t} J_iᵀ(J_i u_t),
//! ```
//!
//! with `ξ_t` i.i.d. uniform `B`-subsets (model S). One step is one forward-mode product
//! `ż = J_ξ u` on the `B` sampled columns (`C × B`, THEORY.md §4 "Gauss–Newton product") and one
//! reverse-mode product `J_ξᵀ ż` accumulated straight into `u`; both read the forward pass of the
//! sampled columns from a cache built once for all n samples. Cost per step `O(P·B)`; no `P × P`
//! matrix is ever formed. (With a nonzero residual the true Hessian differs from `J_iᵀJ_i`:
//! THEORY.md T5 failure mode (i); this recursion is then the Gauss–Newton model.)
//!
//! Because the recursion is linear, the iterate is renormalized after every step and
//! `log‖u_t‖` is accumulated, so growth or decay over any horizon neither overflows nor
//! underflows.

use nalgebra::DMatrix;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::Serialize;

use super::network::Tangent;
use super::{batch_stream, record_times, start_stream};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::hvp::{forward_cache_bytes, mm};
use crate::model::{Mlp, Params};
use crate::train::{BatchSampler, BatchScheme};

/// Largest forward-pass cache (bytes) the simulator builds; above it construction fails with a
/// message (the cache holds `h_0 … h_{L−1}` and `σ′(z_1) … σ′(z_{L−1})` for every sample).
pub const CACHE_LIMIT_BYTES: usize = 2 << 30;

/// Columns `cols` of the cached activations, gathered for one batch.
#[derive(Debug, Clone)]
struct Columns {
    /// `h_0 … h_{L−1}`, each `m_{l−1} × b`.
    post: Vec<DMatrix<f64>>,
    /// `σ′(z_1) … σ′(z_{L−1})`, each `m_l × b`.
    dprime: Vec<DMatrix<f64>>,
}

/// Per-trial buffers of the dense recursion, allocated once.
#[derive(Debug, Clone)]
pub struct Workspace {
    cols: Columns,
    /// `ż_l` per layer, `m_l × B`.
    zdot: Vec<DMatrix<f64>>,
    /// Cotangents `g_l` per layer, `m_l × B`.
    g: Vec<DMatrix<f64>>,
}

/// The matrix-free linearized recursion on a network and its training data.
#[derive(Debug)]
pub struct LinearizedSgd<'a> {
    mlp: &'a Mlp,
    n: usize,
    all: Columns,
}

/// One Monte Carlo trial.
#[derive(Debug, Clone, Serialize)]
pub struct LinearizedTrial {
    /// `log‖u_t‖` at the recording times (`‖u_0‖ = 1`, so the first entry is 0); `−∞` (null in
    /// JSON) if the iterate became exactly 0.
    pub log_norm: Vec<f64>,
}

/// R trials of the recursion.
#[derive(Debug, Clone, Serialize)]
pub struct LinearizedRun {
    /// Recording times (steps).
    pub times: Vec<u64>,
    /// The trials, in trial order.
    pub trials: Vec<LinearizedTrial>,
    /// η.
    pub lr: f64,
    /// B.
    pub batch: usize,
    /// Total steps T.
    pub steps: u64,
}

impl LinearizedRun {
    /// `log‖u_t‖` of every trial: `[trial][time]`.
    pub fn log_norms(&self) -> Vec<Vec<f64>> {
        self.trials.iter().map(|t| t.log_norm.clone()).collect()
    }
}

/// The error of a forward-pass cache (dense or layered) above `--max-memory`.
pub(crate) fn cache_too_large(n: usize, bytes: usize, limit_bytes: usize) -> Error {
    Error::invalid_argument(
        "--max-memory",
        format!(
            "the simulation caches the forward pass of all {n} samples, about {}, more than the \
             memory limit of {}; raise --max-memory if the machine has it, or subsample the data",
            crate::measure::gram::format_bytes(bytes),
            crate::measure::gram::format_bytes(limit_bytes)
        ),
    )
}

fn gather_into(src: &DMatrix<f64>, cols: &[usize], dst: &mut DMatrix<f64>) {
    let m = src.nrows();
    let (s, d) = (src.as_slice(), dst.as_mut_slice());
    for (k, &i) in cols.iter().enumerate() {
        d[k * m..(k + 1) * m].copy_from_slice(&s[i * m..(i + 1) * m]);
    }
}

impl<'a> LinearizedSgd<'a> {
    /// Cache the forward pass of every sample (`h_l` and `σ′(z_l)`). Fails when the data's
    /// dimension does not match the network, or when the cache would exceed
    /// [`CACHE_LIMIT_BYTES`].
    pub fn new(mlp: &'a Mlp, data: &Dataset) -> Result<Self> {
        Self::with_memory_limit(mlp, data, CACHE_LIMIT_BYTES)
    }

    /// [`Self::new`] with the cache limited to `limit_bytes` (the CLI's `--max-memory`) instead of
    /// [`CACHE_LIMIT_BYTES`]; above it construction fails with an
    /// [`Error::InvalidArgument`] naming `--max-memory`, the estimate and the limit.
    pub fn with_memory_limit(mlp: &'a Mlp, data: &Dataset, limit_bytes: usize) -> Result<Self> {
        crate::problem::check_inputs(mlp, data)?;
        let n = data.len();
        let bytes = forward_cache_bytes(mlp, n);
        if bytes > limit_bytes {
            return Err(cache_too_large(n, bytes, limit_bytes));
        }
        let widths = mlp.widths();
        let depth = mlp.depth();
        let mut post: Vec<DMatrix<f64>> =
            (0..depth).map(|j| DMatrix::zeros(widths[j], n)).collect();
        let mut dprime: Vec<DMatrix<f64>> =
            (1..depth).map(|j| DMatrix::zeros(widths[j], n)).collect();
        let act = mlp.activation();
        for (s, e) in data.blocks(256) {
            let cache = mlp.forward_cache(data.x_block(s, e));
            for (dst, src) in post.iter_mut().zip(&cache.post) {
                dst.columns_mut(s, e - s).copy_from(src);
            }
            for (j, dst) in dprime.iter_mut().enumerate() {
                dst.columns_mut(s, e - s)
                    .copy_from(&cache.pre[j].map(|z| act.derivative(z)));
            }
        }
        Ok(Self {
            mlp,
            n,
            all: Columns { post, dprime },
        })
    }

    /// The network.
    pub fn mlp(&self) -> &Mlp {
        self.mlp
    }

    /// Number of samples n.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false (a data set is never empty).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn workspace(&self, b: usize) -> Workspace {
        let widths = self.mlp.widths();
        let depth = self.mlp.depth();
        Workspace {
            cols: Columns {
                post: (0..depth).map(|j| DMatrix::zeros(widths[j], b)).collect(),
                dprime: (1..depth).map(|j| DMatrix::zeros(widths[j], b)).collect(),
            },
            zdot: (1..=depth).map(|j| DMatrix::zeros(widths[j], b)).collect(),
            g: (1..=depth).map(|j| DMatrix::zeros(widths[j], b)).collect(),
        }
    }

    /// `ż = J_i u` for every column of `cols` (THEORY.md §4: `ż_l = V_l h_{l−1} + W_l ḣ_{l−1} +
    /// v_{b_l}`, `ḣ_l = σ′(z_l)∘ż_l`); the result is left in `zdot[L−1]` (`C × b`).
    fn jvp(&self, cols: &Columns, u: &Params, zdot: &mut [DMatrix<f64>]) {
        let layers = self.mlp.layers();
        for j in 0..layers.len() {
            let (done, rest) = zdot.split_at_mut(j);
            let next = &mut rest[0];
            let ul = &u.layers[j];
            mm::gemm(
                next,
                false,
                mm::view(&ul.weight),
                mm::view(&cols.post[j]),
                1.0,
            );
            for mut col in next.column_iter_mut() {
                col += &ul.bias;
            }
            if j > 0 {
                let prev = &mut done[j - 1];
                prev.component_mul_assign(&cols.dprime[j - 1]);
                mm::gemm(next, true, mm::view(&layers[j].weight), mm::view(prev), 1.0);
            }
        }
    }

    /// `out += alpha · Σ_i J_iᵀ g_i` for the `C × b` cotangent in `g[L−1]` (THEORY.md §4:
    /// `g_l = σ′(z_l)∘(W_{l+1}ᵀ g_{l+1})`, blocks `g_l h_{l−1}ᵀ` and `Σ_i g_l`). Overwrites the
    /// lower `g` buffers.
    fn vjp_accumulate(&self, cols: &Columns, g: &mut [DMatrix<f64>], alpha: f64, out: &mut Params) {
        let layers = self.mlp.layers();
        for j in (0..layers.len()).rev() {
            let (lower, upper) = g.split_at_mut(j);
            let gl = &upper[0];
            let ol = &mut out.layers[j];
            mm::gemm(
                &mut ol.weight,
                true,
                mm::view(gl),
                mm::view(&cols.post[j]).transpose(),
                alpha,
            );
            for col in gl.column_iter() {
                ol.bias.axpy(alpha, &col, 1.0);
            }
            if j > 0 {
                let below = &mut lower[j - 1];
                mm::gemm(
                    below,
                    false,
                    mm::view(&layers[j].weight).transpose(),
                    mm::view(gl),
                    1.0,
                );
                below.component_mul_assign(&cols.dprime[j - 1]);
            }
        }
    }

    /// One step `u ← (I − ηH_ξ)u` for the batch `xi` (indices in `0..n`, duplicates counted as
    /// in model S′), in place. Exposed for tests; [`Self::run`] is the driver.
    pub fn step(&self, u: &mut Params, xi: &[usize], eta: f64) -> Result<()> {
        Linearization::step(self, u, xi, eta)
    }

    fn step_columns(&self, ws: &mut Workspace, u: &mut Params, xi: &[usize], eta: f64) {
        for (dst, src) in ws.cols.post.iter_mut().zip(&self.all.post) {
            gather_into(src, xi, dst);
        }
        for (dst, src) in ws.cols.dprime.iter_mut().zip(&self.all.dprime) {
            gather_into(src, xi, dst);
        }
        self.jvp(&ws.cols, u, &mut ws.zdot);
        let last = ws.g.len() - 1;
        ws.g[last].copy_from(&ws.zdot[last]);
        let alpha = -eta / xi.len() as f64;
        self.vjp_accumulate(&ws.cols, &mut ws.g, alpha, u);
    }

    /// `Σ_i J_iᵀ w_i` over all n samples for cotangents `w` in `i·C + c` order (a vector in the
    /// span of the per-sample gradients).
    pub fn span_vector(&self, w: &[f64]) -> Result<Params> {
        let c = self.mlp.output_dim();
        if w.len() != self.n * c {
            return Err(Error::Internal(format!(
                "cotangent has {} entries, expected nC = {}",
                w.len(),
                self.n * c
            )));
        }
        let widths = self.mlp.widths();
        let mut g: Vec<DMatrix<f64>> = (1..widths.len())
            .map(|j| DMatrix::zeros(widths[j], self.n))
            .collect();
        let last = g.len() - 1;
        g[last].copy_from_slice(w);
        let mut out = Params::zeros_like(self.mlp);
        self.vjp_accumulate(&self.all, &mut g, 1.0, &mut out);
        Ok(out)
    }

    /// [`Linearization::random_start`].
    pub fn random_start(&self, rng: &mut ChaCha8Rng) -> Result<(Params, Vec<f64>, f64)> {
        Linearization::random_start(self, rng)
    }

    /// [`Linearization::trial_start`].
    pub fn trial_start(&self, seed: u64, trial: usize) -> Result<(Params, Vec<f64>, f64)> {
        Linearization::trial_start(self, seed, trial)
    }

    /// [`Linearization::run_trial`].
    #[allow(clippy::too_many_arguments)]
    pub fn run_trial(
        &self,
        eta: f64,
        batch: usize,
        sampling: BatchScheme,
        seed: u64,
        trial: usize,
        times: &[u64],
        on_step: &(dyn Fn(u64) + Sync),
    ) -> Result<LinearizedTrial> {
        Linearization::run_trial(self, eta, batch, sampling, seed, trial, times, on_step)
    }

    /// [`Linearization::run`].
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        eta: f64,
        batch: usize,
        sampling: BatchScheme,
        steps: u64,
        trials: usize,
        seed: u64,
        max_points: usize,
        on_step: &(dyn Fn(u64) + Sync),
    ) -> Result<LinearizedRun> {
        Linearization::run(
            self, eta, batch, sampling, steps, trials, seed, max_points, on_step,
        )
    }
}

/// The matrix-free linearized recursion on a network whose forward pass over all n samples is
/// cached (THEORY.md §0 "Linearization"): implemented by [`LinearizedSgd`] (dense MLP, cached
/// columns) and [`super::layered::LayeredLinearization`] (any [`crate::net::Sequential`]); the
/// starts, the batches and the driver ([`Linearization::run`]) are shared.
pub trait Linearization: Sync {
    /// Parameter vectors `u`.
    type Vector: Tangent;
    /// Per-trial buffers for a batch of `b` samples.
    type Workspace: Send;

    /// Number of samples n.
    fn samples(&self) -> usize;
    /// Number of outputs C.
    fn outputs(&self) -> usize;
    /// Buffers for batches of `b` samples.
    fn workspace(&self, b: usize) -> Self::Workspace;
    /// One step `u ← (I − ηH_ξ)u = u − (η/B)Σ_{i∈ξ}J_iᵀ(J_i u)` for the batch `xi` (valid
    /// indices, duplicates counted), in place: one JVP and one VJP on the sampled samples.
    fn step_with(
        &self,
        ws: &mut Self::Workspace,
        u: &mut Self::Vector,
        xi: &[usize],
        eta: f64,
    ) -> Result<()>;
    /// `Σ_i J_iᵀ w_i` over all n samples for cotangents `w` in `i·C + c` order (a vector in the
    /// span of the per-sample gradients).
    fn span_vector(&self, w: &[f64]) -> Result<Self::Vector>;

    /// One step for the batch `xi` (indices in `0..n`, duplicates counted as in model S′), in
    /// place, with fresh buffers. For tests; [`Linearization::run`] is the driver.
    fn step(&self, u: &mut Self::Vector, xi: &[usize], eta: f64) -> Result<()> {
        let n = self.samples();
        if xi.is_empty() || xi.iter().any(|&i| i >= n) {
            return Err(Error::Internal(format!(
                "batch indices must be a non-empty subset of 0..{n}"
            )));
        }
        let mut ws = self.workspace(xi.len());
        self.step_with(&mut ws, u, xi, eta)
    }

    /// A random start `u_0 = Σ_i J_iᵀw_i / ‖Σ_i J_iᵀw_i‖` with `w` i.i.d. standard normal from
    /// `rng`; returns `(u_0, w, ‖Σ_i J_iᵀw_i‖)`. Fails if every per-sample Jacobian vanishes
    /// (G = 0: there is nothing to simulate).
    fn random_start(&self, rng: &mut ChaCha8Rng) -> Result<(Self::Vector, Vec<f64>, f64)> {
        let nc = self.samples() * self.outputs();
        let w: Vec<f64> = (0..nc)
            .map(|_| <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng))
            .collect();
        let mut u = self.span_vector(&w)?;
        let norm = u.norm();
        if !(norm.is_finite() && norm > 0.0) {
            return Err(Error::Numerical(format!(
                "the span of the per-sample gradients is trivial (‖Σ_i J_iᵀw_i‖ = {norm}): G = 0, nothing to simulate"
            )));
        }
        u.scale(1.0 / norm);
        Ok((u, w, norm))
    }

    /// The start vector of `trial` for `seed` (ChaCha8 stream [`start_stream`]): `(u_0, w,
    /// ‖Σ_i J_iᵀw_i‖)`. Deterministic, so callers that need the starts of a finished run (e.g. for
    /// [`super::exact::reduced_start_moment`]) regenerate them instead of the run storing them.
    fn trial_start(&self, seed: u64, trial: usize) -> Result<(Self::Vector, Vec<f64>, f64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(start_stream(trial));
        self.random_start(&mut rng)
    }

    /// One trial: start from [`Linearization::trial_start`], draw batches from stream
    /// [`batch_stream`] of `seed`, run `steps` steps at learning rate `eta`, record `log‖u_t‖` at
    /// `times` (increasing, last = steps). `on_step` is called every 64 steps with the count done.
    #[allow(clippy::too_many_arguments)]
    fn run_trial(
        &self,
        eta: f64,
        batch: usize,
        sampling: BatchScheme,
        seed: u64,
        trial: usize,
        times: &[u64],
        on_step: &(dyn Fn(u64) + Sync),
    ) -> Result<LinearizedTrial> {
        let (mut u, _, _) = self.trial_start(seed, trial)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(batch_stream(trial));
        let mut sampler = BatchSampler::new(sampling, self.samples(), batch)?;
        let mut ws = self.workspace(batch);
        let steps = times.last().copied().unwrap_or(0);
        let mut log_norm = Vec::with_capacity(times.len());
        let mut acc = 0.0f64;
        let mut next = 0usize;
        let mut pending = 0u64;
        for t in 0..=steps {
            while next < times.len() && times[next] == t {
                log_norm.push(acc);
                next += 1;
            }
            if t == steps {
                break;
            }
            if acc == f64::NEG_INFINITY {
                continue;
            }
            let xi = sampler.next_batch(&mut rng);
            self.step_with(&mut ws, &mut u, xi, eta)?;
            let nrm = u.norm();
            if !nrm.is_finite() {
                return Err(Error::Numerical(format!(
                    "linearized recursion: ‖u‖ became {nrm} at step {} of trial {trial}",
                    t + 1
                )));
            }
            if nrm == 0.0 {
                acc = f64::NEG_INFINITY;
            } else {
                acc += nrm.ln();
                u.scale(1.0 / nrm);
            }
            pending += 1;
            if pending == 64 {
                on_step(pending);
                pending = 0;
            }
        }
        if pending > 0 {
            on_step(pending);
        }
        Ok(LinearizedTrial { log_norm })
    }

    /// `trials` independent trials in parallel (rayon; each trial has its own streams, so the
    /// result does not depend on the thread count), recording at most `max_points + 1` times.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        eta: f64,
        batch: usize,
        sampling: BatchScheme,
        steps: u64,
        trials: usize,
        seed: u64,
        max_points: usize,
        on_step: &(dyn Fn(u64) + Sync),
    ) -> Result<LinearizedRun> {
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::invalid_argument(
                "--lr",
                format!("must be finite and > 0, got {eta}"),
            ));
        }
        if trials == 0 {
            return Err(Error::invalid_argument("--trials", "must be ≥ 1"));
        }
        BatchSampler::new(sampling, self.samples(), batch)?;
        let times = record_times(steps, max_points);
        let trials: Vec<LinearizedTrial> = (0..trials)
            .into_par_iter()
            .map(|r| self.run_trial(eta, batch, sampling, seed, r, &times, on_step))
            .collect::<Result<_>>()?;
        Ok(LinearizedRun {
            times,
            trials,
            lr: eta,
            batch,
            steps,
        })
    }
}

impl Linearization for LinearizedSgd<'_> {
    type Vector = Params;
    type Workspace = Workspace;

    fn samples(&self) -> usize {
        self.n
    }
    fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }
    fn workspace(&self, b: usize) -> Workspace {
        LinearizedSgd::workspace(self, b)
    }
    fn step_with(&self, ws: &mut Workspace, u: &mut Params, xi: &[usize], eta: f64) -> Result<()> {
        self.step_columns(ws, u, xi, eta);
        Ok(())
    }
    fn span_vector(&self, w: &[f64]) -> Result<Params> {
        LinearizedSgd::span_vector(self, w)
    }
}
