//! Per-step growth rates of `E‖u_t‖^k` from Monte Carlo trials (THEORY.md T5(d), T6(b):
//! `ρ(𝒬_k) = lim_t (sup_{‖u_0‖=1} E‖u_t‖^k)^{1/t}`).
//!
//! - **Moment rate.** `M_k(t) := (1/R)Σ_r ‖u_t^{(r)}‖^k` (computed in log space), and the slope
//!   `s` of an ordinary least-squares line through `log M_k(t)` over the fit window (by default
//!   the second half of the run, `t ≥ T/2`); the rate per step is `e^s`. Its confidence interval
//!   is the percentile bootstrap over trials (resample the R trials with replacement, refit;
//!   fixed seed).
//! - **Typical rate.** The per-trial slopes `s_r` of `k·log‖u_t^{(r)}‖` over the same window, and
//!   `exp(mean s_r)` with the normal interval `mean ± z·sd/√R`. By Jensen,
//!   `E log‖u‖^k ≤ log E‖u‖^k`, so asymptotically typical ≤ moment rate; a gap means the moment
//!   grows through rare large trajectories, which R trials may miss (the bootstrap cannot see
//!   what no trial sampled).

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::error::{Error, Result};

/// Options of [`fit_growth`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrowthOptions {
    /// The fit window is `t ≥ window_start · T` (default 0.5: the second half of the run).
    pub window_start: f64,
    /// Bootstrap resamples (default 400).
    pub bootstrap: usize,
    /// Two-sided confidence level (default 0.95).
    pub confidence: f64,
    /// Seed of the bootstrap resampling.
    pub seed: u64,
}

impl Default for GrowthOptions {
    fn default() -> Self {
        Self {
            window_start: 0.5,
            bootstrap: 400,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// A fitted growth rate of `E‖u_t‖^k`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrowthFit {
    /// The moment order k.
    pub k: usize,
    /// `e^s`, the per-step growth rate of the trial mean of `‖u_t‖^k` over the window (None if
    /// a trial collapsed to exactly 0 or the fit is undefined).
    pub rate: Option<f64>,
    /// Bootstrap percentile interval of the rate (None with one trial).
    pub ci: Option<(f64, f64)>,
    /// The fitted line `log M_k(t) ≈ intercept + slope·t` over the window.
    pub slope: Option<f64>,
    /// Intercept of that line.
    pub intercept: Option<f64>,
    /// First and last step of the window.
    pub window: (u64, u64),
    /// Recorded points in the window.
    pub points: usize,
    /// Number of trials R.
    pub trials: usize,
    /// Bootstrap resamples used.
    pub bootstrap: usize,
    /// Confidence level of both intervals.
    pub confidence: f64,
    /// `exp(mean_r s_r)`: the typical per-step rate of `‖u_t‖^k` (THEORY.md T5/T6 speak about
    /// the moment; this is a diagnostic).
    pub typical_rate: Option<f64>,
    /// Normal interval of the typical rate (None with one trial).
    pub typical_ci: Option<(f64, f64)>,
}

/// `log((1/R)Σ_r e^{k·L_r(t)})` at every recorded time, for `log_norms[r][t] = log‖u_t^{(r)}‖`
/// (log-sum-exp, so it never overflows).
pub fn log_moment_curve(log_norms: &[Vec<f64>], k: usize) -> Vec<f64> {
    let m = log_norms.first().map_or(0, Vec::len);
    (0..m)
        .map(|j| log_mean_exp(log_norms.iter().map(|l| k as f64 * l[j])))
        .collect()
}

fn log_mean_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let (mut sum, mut count) = (0.0, 0usize);
    for v in values {
        sum += (v - max).exp();
        count += 1;
    }
    max + (sum / count as f64).ln()
}

/// Ordinary least squares `y ≈ a + b·t`; None if fewer than two points, a non-finite value, or
/// all t equal.
pub fn ols(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let m = t.len();
    if m < 2 || y.len() != m || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let tm = t.iter().sum::<f64>() / m as f64;
    let ym = y.iter().sum::<f64>() / m as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (ti, yi) in t.iter().zip(y) {
        sxy += (ti - tm) * (yi - ym);
        sxx += (ti - tm) * (ti - tm);
    }
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    Some((ym - b * tm, b))
}

/// Standard normal quantile by Acklam's rational approximation (relative error < 1.2e-9), for
/// the two-sided level of the typical-rate interval.
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p_low = 0.02425;
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Empirical quantile (linear interpolation) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Fit the growth of `E‖u_t‖^k` (see the module docs). `times` are the recording steps
/// (increasing) and `log_norms[r][j] = log‖u^{(r)}_{times[j]}‖`.
pub fn fit_growth(
    times: &[u64],
    log_norms: &[Vec<f64>],
    k: usize,
    opts: &GrowthOptions,
) -> Result<GrowthFit> {
    let trials = log_norms.len();
    if trials == 0 || k == 0 {
        return Err(Error::invalid_argument(
            "--trials",
            "a growth fit needs at least one trial and k ≥ 1",
        ));
    }
    if log_norms.iter().any(|l| l.len() != times.len()) || times.len() < 2 {
        return Err(Error::Internal(
            "growth fit: every trial needs one value per recording time (at least two)".into(),
        ));
    }
    if !(opts.confidence > 0.0 && opts.confidence < 1.0) {
        return Err(Error::invalid_argument(
            "confidence",
            "must lie strictly between 0 and 1",
        ));
    }
    let last = times[times.len() - 1];
    let start = (opts.window_start.clamp(0.0, 1.0) * last as f64).ceil() as u64;
    let mut first = times.iter().position(|&t| t >= start).unwrap_or(0);
    first = first.min(times.len() - 2);
    let window = &times[first..];
    let tw: Vec<f64> = window.iter().map(|&t| t as f64).collect();
    let kf = k as f64;

    let curve = |idx: &mut dyn Iterator<Item = usize>| -> Vec<f64> {
        let rows: Vec<&Vec<f64>> = idx.map(|r| &log_norms[r]).collect();
        (first..times.len())
            .map(|j| log_mean_exp(rows.iter().map(|l| kf * l[j])))
            .collect()
    };
    let y = curve(&mut (0..trials));
    let fit = ols(&tw, &y);

    let alpha = 1.0 - opts.confidence;
    let ci = if trials >= 2 && opts.bootstrap >= 2 && fit.is_some() {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        rng.set_stream(u64::MAX);
        let mut rates = Vec::with_capacity(opts.bootstrap);
        for _ in 0..opts.bootstrap {
            let picks: Vec<usize> = (0..trials).map(|_| rng.random_range(0..trials)).collect();
            if let Some((_, b)) = ols(&tw, &curve(&mut picks.into_iter())) {
                rates.push(b.exp());
            }
        }
        rates.sort_by(f64::total_cmp);
        (!rates.is_empty()).then(|| {
            (
                quantile(&rates, alpha / 2.0),
                quantile(&rates, 1.0 - alpha / 2.0),
            )
        })
    } else {
        None
    };

    let slopes: Option<Vec<f64>> = log_norms
        .iter()
        .map(|l| {
            let y: Vec<f64> = l[first..].iter().map(|v| kf * v).collect();
            ols(&tw, &y).map(|(_, b)| b)
        })
        .collect();
    let (typical_rate, typical_ci) = match slopes {
        Some(s) => {
            let m = s.len() as f64;
            let mean = s.iter().sum::<f64>() / m;
            let ci = (s.len() >= 2).then(|| {
                let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
                let half = normal_quantile(1.0 - alpha / 2.0) * (var / m).sqrt();
                ((mean - half).exp(), (mean + half).exp())
            });
            (Some(mean.exp()), ci)
        }
        None => (None, None),
    };

    Ok(GrowthFit {
        k,
        rate: fit.map(|(_, b)| b.exp()),
        ci,
        slope: fit.map(|(_, b)| b),
        intercept: fit.map(|(a, _)| a),
        window: (window[0], last),
        points: window.len(),
        trials,
        bootstrap: if ci.is_some() { opts.bootstrap } else { 0 },
        confidence: opts.confidence,
        typical_rate,
        typical_ci,
    })
}

/// Per-step rate of an exact curve `log E‖u_t‖^k` (one value per recording time) over the same
/// window as [`fit_growth`]: `exp` of the least-squares slope.
pub fn curve_rate(times: &[u64], log_curve: &[f64], window_start: f64) -> Option<f64> {
    if times.len() < 2 || log_curve.len() != times.len() {
        return None;
    }
    let last = times[times.len() - 1];
    let start = (window_start.clamp(0.0, 1.0) * last as f64).ceil() as u64;
    let first = times
        .iter()
        .position(|&t| t >= start)
        .unwrap_or(0)
        .min(times.len() - 2);
    let tw: Vec<f64> = times[first..].iter().map(|&t| t as f64).collect();
    ols(&tw, &log_curve[first..]).map(|(_, b)| b.exp())
}
