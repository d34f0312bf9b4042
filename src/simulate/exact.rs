//! Exact expectations of the linearized recursion, without Monte Carlo noise (THEORY.md T5(a),
//! T5(e)).
//!
//! `Σ_t := E[u_tu_tᵀ]` obeys `Σ_{t+1} = 𝒬(Σ_t)` and `E‖u_t‖² = tr Σ_t`, with
//! `𝒬(Σ) = (1−p)(I−ηH)Σ(I−ηH) + (p/n)Σ_i(I−ηH_i)Σ(I−ηH_i)` (T5a; p of THEORY.md §0).
//!
//! - [`reduced_log_trace_curve`] iterates the reduced operator `𝒬_r` of T5(e) in the Y-basis of
//!   the Gram path (`O(nCr² + nC²r)` per step) from `Σ_0` in reduced coordinates;
//!   [`reduced_start_moment`] gives `Σ_0 = (1/R)Σ_r α_rα_rᵀ` for the simulator's random starts
//!   (`α = Vᵀu_0 = Yᵀw/‖𝐉ᵀw‖`, since `Vᵀ𝐉ᵀ = Yᵀ` for `V = 𝐉ᵀU_rΛ_r^{−1/2}/√n`), so that the exact
//!   curve is the expectation over batches *conditional on the same starts* as the trials.
//! - [`DenseSecondMoment`] is the full-space `𝒬` built from materialized `H_i = J_iᵀJ_i`
//!   ([`per_sample_jacobians`]): `P × P` matrices, for tiny problems and tests only. It shares no
//!   code with the Gram path, so it is an independent check of η\*.

use nalgebra::DMatrix;

use super::network::SimNetwork;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::stability::ReducedModel;

/// The per-sample Jacobians `J_i` (`C × P`, columns in THEORY.md §0 order): for an MLP one
/// reverse pass per output and sample, for a layered network the materialized rows of
/// [`crate::net::jacobian_block`]. `O(nC·P)` memory: tiny problems only.
pub fn per_sample_jacobians<N: SimNetwork>(net: &N, data: &Dataset) -> Result<Vec<DMatrix<f64>>> {
    net.jacobians(data)
}

/// The full-space second-moment operator `𝒬` of THEORY.md T5(a) from materialized
/// `H_i = J_iᵀJ_i`.
#[derive(Debug, Clone)]
pub struct DenseSecondMoment {
    /// `I − ηH`, `H = (1/n)Σ_i H_i`.
    pub mean_step: DMatrix<f64>,
    /// `I − ηH_i` for every sample.
    pub sample_steps: Vec<DMatrix<f64>>,
    /// p.
    pub p: f64,
}

impl DenseSecondMoment {
    /// Build from the per-sample Hessians `H_i` (`P × P`), η and p.
    pub fn new(hs: &[DMatrix<f64>], eta: f64, p: f64) -> Result<Self> {
        let Some(first) = hs.first() else {
            return Err(Error::invalid_argument("n", "no samples"));
        };
        let dim = first.nrows();
        if hs.iter().any(|h| h.nrows() != dim || h.ncols() != dim) {
            return Err(Error::Internal("H_i of different shapes".into()));
        }
        let id = DMatrix::<f64>::identity(dim, dim);
        let mut mean = DMatrix::zeros(dim, dim);
        for h in hs {
            mean += h;
        }
        mean /= hs.len() as f64;
        Ok(Self {
            mean_step: &id - mean * eta,
            sample_steps: hs.iter().map(|h| &id - h * eta).collect(),
            p,
        })
    }

    /// From per-sample Jacobians (`H_i = J_iᵀJ_i`).
    pub fn from_jacobians(js: &[DMatrix<f64>], eta: f64, p: f64) -> Result<Self> {
        let hs: Vec<DMatrix<f64>> = js.iter().map(|j| j.transpose() * j).collect();
        Self::new(&hs, eta, p)
    }

    /// `𝒬(Σ)`.
    pub fn apply(&self, s: &DMatrix<f64>) -> DMatrix<f64> {
        let a = &self.mean_step;
        let mut out = (a * s * a) * (1.0 - self.p);
        if self.p > 0.0 {
            let w = self.p / self.sample_steps.len() as f64;
            for ai in &self.sample_steps {
                out += (ai * s * ai) * w;
            }
        }
        out
    }
}

/// `log tr Σ_t` at the recording `times` (increasing, from 0) for `Σ_{t+1} = step(Σ_t)` with
/// `Σ_0 = sigma0` (PSD, nonzero). Renormalized after each step (the map is linear), so the
/// curve neither overflows nor underflows.
pub fn log_trace_curve(
    sigma0: &DMatrix<f64>,
    times: &[u64],
    step: impl Fn(&DMatrix<f64>) -> DMatrix<f64>,
) -> Result<Vec<f64>> {
    let tr0 = sigma0.trace();
    if !(tr0.is_finite() && tr0 > 0.0) {
        return Err(Error::Internal(format!(
            "Σ_0 must be PSD and nonzero (trace {tr0})"
        )));
    }
    let mut s = sigma0 / tr0;
    let mut acc = tr0.ln();
    let steps = times.last().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(times.len());
    let mut next = 0;
    for t in 0..=steps {
        while next < times.len() && times[next] == t {
            out.push(acc);
            next += 1;
        }
        if t == steps {
            break;
        }
        s = step(&s);
        let tr = s.trace();
        if !(tr.is_finite() && tr > 0.0) {
            return Err(Error::Numerical(format!(
                "exact second moment: tr Σ_t = {tr} at step {}",
                t + 1
            )));
        }
        acc += tr.ln();
        s /= tr;
    }
    Ok(out)
}

/// `log E‖α_t‖²` of the reduced recursion (THEORY.md T5e) at `times`, exactly, from `Σ_0` in
/// reduced coordinates (`r × r`).
pub fn reduced_log_trace_curve(
    model: &ReducedModel,
    eta: f64,
    p: f64,
    sigma0: &DMatrix<f64>,
    times: &[u64],
) -> Result<Vec<f64>> {
    log_trace_curve(sigma0, times, |s| model.q_op(eta, p, s))
}

/// `Σ_0 = (1/R)Σ_r α_rα_rᵀ`, `α_r = Yᵀw_r/‖Σ_i J_iᵀw_{r,i}‖` (module docs) from the simulator's
/// start cotangents and norms.
pub fn reduced_start_moment(
    model: &ReducedModel,
    starts: &[(&[f64], f64)],
) -> Result<DMatrix<f64>> {
    let r = model.rank();
    let nc = model.y.nrows();
    let mut s = DMatrix::zeros(r, r);
    if starts.is_empty() {
        return Err(Error::Internal("no start vectors".into()));
    }
    for (w, norm) in starts {
        if w.len() != nc {
            return Err(Error::Internal(format!(
                "start cotangent has {} entries, expected nC = {nc}",
                w.len()
            )));
        }
        let wv = DMatrix::from_column_slice(nc, 1, w);
        let alpha = model.y.transpose() * wv / *norm;
        s += &alpha * alpha.transpose();
    }
    s /= starts.len() as f64;
    Ok(s)
}
