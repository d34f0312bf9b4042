//! What the theory predicts for the simulation at (η, B) (THEORY.md T4, T5, T6), from the exact
//! Gram path when `nC` is small enough.
//!
//! - **T5(f) η\* and verdict** — the stability decision: certified stable iff η·upper(λ_max(𝒟̃))
//!   ≤ 1, certified unstable iff η·lower > 1. Stable ⇒ `E‖u_t‖²` stays bounded (rate ≤ 1);
//!   unstable ⇒ it grows for some start.
//! - **T4** the first-moment (GD) condition λ_max(G) ≤ 2/η (necessary).
//! - **λ_max(𝒬_r)** (T5e) for k = 2 — a *diagnostic estimate*: `1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r)`, so
//!   at a stable η it tracks the flattest kept direction and depends on τ; at an unstable η it is
//!   the asymptotic growth rate of `sup E‖u_t‖²`. Dense on Sym(r) for small r, Lanczos up to
//!   [`PredictionOptions::rho_max_rank`], else skipped.
//! - **λ_max(𝒬_k)** for even k ≥ 4 (T6a, b) where the batch enumeration of
//!   [`crate::measure::kmoment::exact_qk`] is feasible (tiny r and n), else "not exact here".
//!
//! All of it is on range G in the Gauss–Newton model (`H_i = J_iᵀJ_i`); with a residual ≠ 0 the
//! true linearization differs (T5 failure mode (i)); ℒ(θ*) and the largest residual are reported.

use std::time::Instant;

use serde::Serialize;

use super::network::SimNetwork;
use crate::data::Dataset;
use crate::error::Result;
use crate::measure::gram::GramOptions;
use crate::measure::kmoment::exact_qk;
use crate::measure::stability::{BracketOptions, ReducedModel, Sampling, mean_square_rho, noise_p};
use crate::measure::truncation::{Goal, RankBudget};

/// Options of [`predict`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionOptions {
    /// Gram path options (τ, blocks, memory limit).
    pub gram: GramOptions,
    /// Options of the 𝒟̃ bracket (and the dense limit of λ_max(𝒬_r)).
    pub bracket: BracketOptions,
    /// Skip the Gram path when `nC` exceeds this (default 4096).
    pub max_gram_dim: usize,
    /// Compute λ_max(𝒬_r) only when r ≤ this (default 200; the Lanczos vectors live on
    /// Sym(r), of dimension r(r+1)/2).
    pub rho_max_rank: usize,
    /// Exact λ_max(𝒬_k) for k ≥ 4 only when `batches · dim(Sym^k)² · k!` ≤ this (default 2e9).
    pub qk_work_limit: f64,
    /// Cap on the eigenpairs of K the η\* bracket is computed on (THEORY T5f; the rest enter
    /// the proven truncation allowance, [`crate::measure::truncation`]). One application of 𝒟̃
    /// costs `O(nCr²)` plus an `r × r` eigenproblem for its certificate, and the bracket takes
    /// tens of them: seconds at r = 256, minutes at r in the thousands. Default: no cap.
    pub t5_rank: usize,
}

impl Default for PredictionOptions {
    fn default() -> Self {
        Self {
            gram: GramOptions::default(),
            bracket: BracketOptions::default(),
            max_gram_dim: 4096,
            rho_max_rank: 200,
            qk_work_limit: 2e9,
            t5_rank: usize::MAX,
        }
    }
}

/// T4 at η.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GdPrediction {
    /// Certified bracket of λ_max(G).
    pub lambda_max: (f64, f64),
    /// `2/upper` (certified lower end of η_GD\*).
    pub eta_star_lower: f64,
    /// `2/lower` (None if lower ≤ 0).
    pub eta_star_upper: Option<f64>,
    /// "stable", "unstable" or "inconclusive".
    pub verdict: String,
}

/// T5(f) at (η, B).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeanSquarePrediction {
    /// Certified lower end of η\* (None when vacuous: η\* = +∞).
    pub eta_star_lower: Option<f64>,
    /// Upper end of η\* (None when vacuous or unbounded).
    pub eta_star_upper: Option<f64>,
    /// "certified stable", "certified unstable" or "inconclusive".
    pub verdict: String,
    /// Certified relative margin `1/(η·upper) − 1` (a lower bound of η\*/η − 1).
    pub margin: Option<f64>,
    /// r = 0: every η is stable.
    pub vacuous: bool,
}

/// λ_max(𝒬_k) at (η, B).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MomentPrediction {
    /// Moment order k.
    pub k: usize,
    /// λ_max(𝒬_k) on range G (the predicted asymptotic per-step rate of `sup E‖u_t‖^k`), or None.
    pub lambda_max: Option<f64>,
    /// Its tolerance (eigen-bound width or Lanczos error estimate).
    pub tol: Option<f64>,
    /// How it was computed, or why not.
    pub method: String,
    /// Caveat.
    pub note: String,
}

/// Everything the theory predicts at (η, B).
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// η.
    pub lr: f64,
    /// B.
    pub batch: usize,
    /// Sampling scheme (theory name).
    pub sampling: String,
    /// p of THEORY.md §0.
    pub p: f64,
    /// ℒ(θ*) (0 at an exact interpolating minimum; None without targets).
    pub minimum_loss: Option<f64>,
    /// `max_i ‖res_i‖` (None without targets).
    pub max_residual: Option<f64>,
    /// r = rank of the kept spectrum of K (None when the Gram path was skipped).
    pub rank: Option<usize>,
    /// τ.
    pub tau: Option<f64>,
    /// Smallest kept eigenvalue of K (`1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r)`).
    pub lambda_min_kept: Option<f64>,
    /// T4.
    pub gd: Option<GdPrediction>,
    /// T5(f): the stability decision.
    pub mean_square: Option<MeanSquarePrediction>,
    /// λ_max(𝒬_k) per requested k.
    pub moments: Vec<MomentPrediction>,
    /// Notes (skips, caveats).
    pub notes: Vec<String>,
    /// Wall time of the prediction (s).
    pub seconds: f64,
    /// The reduced model (for exact curves), when built.
    #[serde(skip)]
    pub model: Option<ReducedModel>,
}

impl Prediction {
    /// True when T5(f) certifies stability at η.
    pub fn certified_stable(&self) -> bool {
        self.mean_square
            .as_ref()
            .is_some_and(|m| m.verdict == "certified stable")
    }
    /// True when T5(f) certifies instability at η.
    pub fn certified_unstable(&self) -> bool {
        self.mean_square
            .as_ref()
            .is_some_and(|m| m.verdict == "certified unstable")
    }
    /// The λ_max(𝒬_k) prediction for k, if computed.
    pub fn moment(&self, k: usize) -> Option<&MomentPrediction> {
        self.moments.iter().find(|m| m.k == k)
    }
}

/// A [`Prediction`] with nothing computed but p and the residuals, every moment marked "not
/// computed" with `why` (also the first note). For `--predict none` and skipped Gram paths.
pub fn not_computed<N: SimNetwork>(
    net: &N,
    data: &Dataset,
    eta: f64,
    batch: usize,
    sampling: Sampling,
    ks: &[usize],
    why: String,
) -> Result<Prediction> {
    let p = noise_p(data.len(), batch, sampling)?;
    let res = net.residuals(data);
    Ok(Prediction {
        lr: eta,
        batch,
        sampling: sampling.name().into(),
        p,
        minimum_loss: res.map(|r| r.0),
        max_residual: res.map(|r| r.1),
        rank: None,
        tau: None,
        lambda_min_kept: None,
        gd: None,
        mean_square: None,
        moments: ks
            .iter()
            .map(|&k| MomentPrediction {
                k,
                lambda_max: None,
                tol: None,
                method: "not computed".into(),
                note: why.clone(),
            })
            .collect(),
        notes: vec![why],
        seconds: 0.0,
        model: None,
    })
}

/// The predictions at (η, B) for the moments `ks` (see the module docs). Never fails because a
/// part is too expensive: skipped parts are None with a note. Errors only on invalid (η, B).
pub fn predict<N: SimNetwork>(
    net: &N,
    data: &Dataset,
    eta: f64,
    batch: usize,
    sampling: Sampling,
    ks: &[usize],
    opts: &PredictionOptions,
) -> Result<Prediction> {
    let start = Instant::now();
    if !(eta.is_finite() && eta > 0.0) {
        return Err(crate::error::Error::invalid_argument(
            "--lr",
            format!("must be finite and > 0, got {eta}"),
        ));
    }
    let n = data.len();
    noise_p(n, batch, sampling)?;
    let nc = n * net.outputs();
    if nc > opts.max_gram_dim {
        let mut pred = not_computed(
            net,
            data,
            eta,
            batch,
            sampling,
            ks,
            format!(
                "Gram path skipped: nC = {nc} > {} (no η*, verdict or λ_max(𝒬_k))",
                opts.max_gram_dim
            ),
        )?;
        pred.seconds = start.elapsed().as_secs_f64();
        return Ok(pred);
    }
    let spec = match net.gram(data, &opts.gram) {
        Ok(s) => s,
        Err(e) => {
            let mut pred = not_computed(
                net,
                data,
                eta,
                batch,
                sampling,
                ks,
                format!("Gram path failed: {e}"),
            )?;
            pred.seconds = start.elapsed().as_secs_f64();
            return Ok(pred);
        }
    };
    let mut pred = not_computed(net, data, eta, batch, sampling, ks, String::new())?;
    pred.moments.clear();
    pred.notes.clear();
    let p = pred.p;
    let res = pred.minimum_loss.zip(pred.max_residual);
    let model = ReducedModel::from_spectrum(&spec);
    let r = model.rank();
    pred.rank = Some(r);
    pred.tau = Some(model.tau);
    pred.lambda_min_kept = model.lambda.last().copied();

    let (lo, hi) = model.lambda_max_bracket;
    if hi > 0.0 {
        // η_GD* = 2/λ_max ∈ [2/upper, 2/lower], rounded outward (T4).
        let eta_gd =
            flatcert_bounds::t4::eta_gd(flatcert_bounds::Value::interval(lo, hi).clamp_nonneg());
        pred.gd = Some(GdPrediction {
            lambda_max: (lo, hi),
            eta_star_lower: eta_gd.lower(),
            eta_star_upper: Some(eta_gd.upper()).filter(|e| e.is_finite()),
            verdict: flatcert_bounds::t4::gd_status(lo, hi, eta).0.name().into(),
        });
    }

    {
        {
            // One rank policy with `flatcert certify` and `flatcert stability`: a verdict at η
            // is decided by trying ranks 16, 32, … up to the cap until the certified bracket is on
            // one side of η (issue 12 item 7).
            let budget = RankBudget::new(&spec, opts.t5_rank)?;
            let (used, crit) =
                budget.critical_lr(batch, sampling, &opts.bracket, Goal::DecideAt(eta))?;
            if used.rank() < r {
                pred.notes.push(format!(
                    "η* bracket (T5f) on the top {} of r = {r} eigenpairs of K; the rest enter \
                     the proven truncation allowance (certified, wider)",
                    used.rank()
                ));
            }
            let (verdict, margin) = crit.verdict(eta);
            pred.mean_square = Some(MeanSquarePrediction {
                eta_star_lower: crit.eta_lower(),
                eta_star_upper: crit.eta_upper(),
                verdict: verdict.name().into(),
                margin,
                vacuous: crit.vacuous,
            });
        }
    }

    for &k in ks {
        let mp = if r == 0 {
            MomentPrediction {
                k,
                lambda_max: None,
                tol: None,
                method: "not computed".into(),
                note: "G = 0 (r = 0): nothing moves".into(),
            }
        } else if k == 2 {
            if r <= opts.rho_max_rank {
                match mean_square_rho(&model, eta, p, &opts.bracket) {
                    Ok(q) => MomentPrediction {
                        k,
                        lambda_max: Some(q.value),
                        tol: Some(q.tol),
                        method: q.method.unwrap_or_default(),
                        note: q.note.unwrap_or_default(),
                    },
                    Err(e) => MomentPrediction {
                        k,
                        lambda_max: None,
                        tol: None,
                        method: "failed".into(),
                        note: e.to_string(),
                    },
                }
            } else {
                MomentPrediction {
                    k,
                    lambda_max: None,
                    tol: None,
                    method: "not computed".into(),
                    note: format!(
                        "λ_max(𝒬_r) skipped: r = {r} > {} (Sym(r) of dimension {}); the η* verdict is the prediction",
                        opts.rho_max_rank,
                        r * (r + 1) / 2
                    ),
                }
            }
        } else {
            let (batches, work) =
                crate::measure::kmoment::enumeration_work(r, n, batch, k, sampling);
            if work <= opts.qk_work_limit {
                match exact_qk(&model, batch, k, sampling).and_then(|q| q.lambda_max(eta)) {
                    Ok(v) => MomentPrediction {
                        k,
                        lambda_max: Some(v),
                        tol: None,
                        method: "exact-Qk".into(),
                        note: format!(
                            "exact λ_max(𝒬_{k}) on Sym^{k}(ℝ^{r}) by enumerating {batches:.0} batches (THEORY T6a; reduced space)"
                        ),
                    },
                    Err(e) => MomentPrediction {
                        k,
                        lambda_max: None,
                        tol: None,
                        method: "failed".into(),
                        note: e.to_string(),
                    },
                }
            } else {
                MomentPrediction {
                    k,
                    lambda_max: None,
                    tol: None,
                    method: "not computed".into(),
                    note: format!(
                        "not exact here: 𝒬_{k} on Sym^{k}(ℝ^{r}) with {batches:.2e} batches needs ~{work:.1e} operations; \
                         the k-th moment is checked only where batches can be enumerated (THEORY T6)"
                    ),
                }
            }
        };
        pred.moments.push(mp);
    }
    if let Some((loss, max_res)) = res
        && max_res > 1e-10
    {
        pred.notes.push(format!(
            "Gauss–Newton model (H_i = J_iᵀJ_i): ℒ(θ*) = {loss:.3e}, max_i‖res_i‖ = {max_res:.3e}; a residual adds forcing noise the linearization ignores (THEORY T5 failure mode (i))"
        ));
    }
    pred.model = Some(model);
    pred.seconds = start.elapsed().as_secs_f64();
    Ok(pred)
}
