//! # paper_1d — the one-dimensional experiment of the Sobolev-regularization paper
//!
//! Fits the Runge function f*(x) = 1/(1+25x²) on n = 10 equispaced points of [−1, 1] with a ReLU
//! 1-20-20-1 network trained by plain SGD, model (S) of THEORY.md §0 (a fresh uniform 2-subset at
//! every step, no momentum, no weight decay), at three learning rates given in the PyTorch
//! `MSELoss` convention (η_torch = 0.02, 0.1, 0.5) and converted to the theory convention
//! η = 2η_torch/C = 2η_torch (THEORY.md §0, C = 1), for several seeds each.
//!
//! At every final network it measures the entrywise gradient moments of THEORY.md T7(e),
//! g_W(k) over all parameters and g_x(k) over the input, for k = 1, 2, together with ‖W‖₂ (the
//! rigorous upper bound), the per-sample curvatures λ_i and the test error on 1001 points, and it
//! sets each measured value against its bound:
//!
//! - T6(e): max_i λ_i ≤ β_k = (B/η)(1 + (n/B)^{1/k}), k = 2, 4, at the run's (η, B = 2, n = 10);
//! - T7(e): g_W(k) ≤ √(Cβ_k);
//! - T7(a)/(b)/(c): |f′(x_i)| ≤ ‖W‖₂√β_k/|x_i|, g_x(k) ≤ |f|_{1,2k} ≤ √C‖W‖₂√β_k/min_i|x_i|, and
//!   the weighted form ((1/n)Σ(|f′(x_i)||x_i|)^{2k})^{1/(2k)} ≤ √C‖W‖₂√β_k;
//! - T2(c), no stability needed: g_x(k) ≤ N_{2k}(W)·g_W(k)/min_i|x_i|.
//!
//! The stability bounds *assume* k-th moment stability at (η, B) and interpolation; neither is
//! certified here. Every ratio is bound/measured (≥ 1 when the bound holds).
//!
//! **Stopping rule.** SGD runs in windows of 1000 steps; after each window the full-data loss ℒ
//! is evaluated. A check *improves* when ℒ < (1 − 1e-3)·(the best ℒ so far, the initial loss
//! included). Training stops when ℒ ≤ 1e-12, when no check has improved for 20,000 steps (the
//! loss has stopped improving), when ℒ or a parameter becomes non-finite (recorded as
//! diverged), or after `--max-steps` steps (default 100,000). The patience absorbs the
//! fluctuations of the SGD loss. Window w ≥ 1 draws its batches from the seed `seed + w·2³²`
//! (window 0 uses `seed` itself, as `flatcert train` does), so the batches stay i.i.d. uniform
//! 2-subsets across windows. The network measured is the last iterate.
//!
//! Usage: `cargo run --release --example paper_1d [-- --out DIR --seeds N --max-steps T]`.
//! Writes DIR/paper_1d.json, DIR/paper_1d_gw_gx.svg and DIR/paper_1d_test_gx.svg (DIR defaults to
//! docs/figures) and prints a summary to stdout. Runs are deterministic for fixed seeds.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use flatcert::io::write_atomic;
use flatcert::measure::first_order::{FirstLayerNorms, first_layer_norms, moment_of_squares};
use flatcert::measure::per_sample::{
    PerSampleOptions, PerSampleStats, ScaledPowerSum, per_sample_stats,
};
use flatcert::train::{BatchScheme, TrainConfig, init_pytorch_default, train};
use flatcert::{Activation, Dataset, Mlp};
use flatcert_bounds::t6::beta_k;
use flatcert_bounds::t7::{
    bound_a_spectral, bound_c_seminorm, bound_c_weighted, bound_e_gw, bound_e_gx,
};
use flatcert_bounds::{BatchModel, LrConvention, Sampling as BoundsSampling};
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::Serialize;

/// Learning rates in the PyTorch `MSELoss(reduction='mean')` convention.
const LRS_TORCH: [f64; 3] = [0.02, 0.1, 0.5];
/// Widths d, m_1, m_2, C.
const SIZES: [usize; 4] = [1, 20, 20, 1];
const N_TRAIN: usize = 10;
const N_TEST: usize = 1001;
const BATCH: usize = 2;
/// Number of outputs C.
const OUTPUTS: f64 = 1.0;
/// Steps between two loss checks of the stopping rule.
const WINDOW: u64 = 1000;
/// Training stops when no check has improved the best loss for this many steps.
const PATIENCE: u64 = 20_000;
/// Relative decrease of the best full-data loss that counts as an improvement.
const REL_IMPROVEMENT: f64 = 1e-3;
/// Loss at which training stops as converged.
const LOSS_FLOOR: f64 = 1e-12;
/// Final training loss above which a run is counted as a poor fit (not near interpolation).
const POOR_FIT: f64 = 1e-4;
/// Colours of the three learning rates in the figures.
const LR_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Runge 1-D experiment: SGD learning rate against g_W, g_x and the T7 bounds")]
struct Args {
    /// Output directory for paper_1d.json and the SVG figures.
    #[arg(long, default_value = "docs/figures")]
    out: PathBuf,
    /// Seeds 0..N per learning rate.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Maximum number of SGD steps per run.
    #[arg(long, default_value_t = 100_000)]
    max_steps: u64,
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Stop {
    LossFloor,
    Plateau,
    MaxSteps,
    Diverged,
}

/// A trained network and how training ended.
struct Trained {
    mlp: Mlp,
    steps: u64,
    loss: f64,
    stop: Stop,
}

/// Everything measured on one final network, with the T6/T7 bounds and bound/measured ratios.
#[derive(Debug, Clone, Serialize)]
struct Metrics {
    test_mse: f64,
    g_w1: f64,
    g_w2: f64,
    g_x1: f64,
    g_x2: f64,
    /// Rigorous upper bound of ‖W‖₂ (W is 20×1, so ‖W‖₂ = ‖W‖_F).
    w_spectral_upper: f64,
    min_abs_x: f64,
    /// max_i λ_i = max_i ‖∇_θ f(x_i)‖².
    max_lambda: f64,
    /// max_i |f′(x_i)|.
    max_abs_fx: f64,
    /// ((1/n)Σ(|f′(x_i)||x_i|)⁴)^{1/4} (T7c weighted, k = 2).
    weighted_4: f64,
    /// ((1/n)Σ(|f′(x_i)||x_i|)⁸)^{1/8} (T7c weighted, k = 4).
    weighted_8: f64,
    /// Training points within rounding of a ReLU kink (σ′(0) = 0 was used).
    kink_samples: usize,
    beta2: f64,
    beta4: f64,
    at_beta2: BoundSet,
    at_beta4: BoundSet,
    /// T2(c) without stability: bound/measured for g_x(1) and g_x(2).
    t2c_ratio_gx1: f64,
    t2c_ratio_gx2: f64,
}

/// The T6(e)/T7 bounds at one β_k and their bound/measured ratios.
#[derive(Debug, Clone, Serialize)]
struct BoundSet {
    k: u32,
    beta: f64,
    /// T6(e): β_k / max_i λ_i.
    t6e_ratio: f64,
    /// T7(e): √(Cβ_k).
    gw_bound: f64,
    gw1_ratio: f64,
    gw2_ratio: f64,
    /// T7(b)/(c): √C‖W‖₂√β_k / min|x_i|.
    gx_bound: f64,
    gx1_ratio: f64,
    gx2_ratio: f64,
    /// T7(b): bound / max_i |f′(x_i)|.
    b_ratio: f64,
    /// T7(a): min over training points of (‖W‖₂√β_k/|x_i|) / |f′(x_i)|.
    a_min_ratio: f64,
    /// T7(c) weighted: √C‖W‖₂√β_k / ((1/n)Σ(|f′||x|)^{2k})^{1/(2k)}.
    c_weighted_ratio: f64,
}

impl BoundSet {
    /// Smallest bound/measured ratio of the set.
    fn min_ratio(&self) -> f64 {
        [
            self.t6e_ratio,
            self.gw1_ratio,
            self.gw2_ratio,
            self.gx1_ratio,
            self.gx2_ratio,
            self.b_ratio,
            self.a_min_ratio,
            self.c_weighted_ratio,
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min)
    }
}

impl Metrics {
    /// Smallest bound/measured ratio over all bounds (< 1 means a bound is violated).
    fn min_ratio(&self) -> f64 {
        self.at_beta2
            .min_ratio()
            .min(self.at_beta4.min_ratio())
            .min(self.t2c_ratio_gx1)
            .min(self.t2c_ratio_gx2)
    }
}

/// One run of the sweep.
#[derive(Debug, Clone, Serialize)]
struct RunRecord {
    lr_torch: f64,
    lr_theory: f64,
    seed: u64,
    steps: u64,
    stop: Stop,
    /// Full-data loss (1/n)Σ½(f − y)² at the end (null if non-finite).
    final_train_loss: Option<f64>,
    /// Null for diverged runs.
    metrics: Option<Metrics>,
}

/// Per-learning-rate medians over the runs that did not diverge.
#[derive(Debug, Clone, Serialize)]
struct LrSummary {
    lr_torch: f64,
    lr_theory: f64,
    runs: usize,
    diverged: usize,
    /// Non-diverged runs whose final loss exceeds [`POOR_FIT`].
    poor_fits: usize,
    median_steps: Option<f64>,
    median_train_loss: Option<f64>,
    median_test_mse: Option<f64>,
    median_g_w1: Option<f64>,
    median_g_w2: Option<f64>,
    median_g_x1: Option<f64>,
    median_g_x2: Option<f64>,
    median_w_spectral: Option<f64>,
    median_max_lambda: Option<f64>,
    beta2: f64,
    beta4: f64,
    median_t6e_ratio_beta2: Option<f64>,
    median_t6e_ratio_beta4: Option<f64>,
    median_gw1_ratio_beta4: Option<f64>,
    median_gw2_ratio_beta4: Option<f64>,
    median_gx2_ratio_beta4: Option<f64>,
    median_b_ratio_beta4: Option<f64>,
    median_c_weighted_ratio_beta2: Option<f64>,
    median_t2c_ratio_gx1: Option<f64>,
}

/// Trend of a per-lr median as the learning rate grows.
#[derive(Debug, Clone, Serialize)]
struct Trend {
    quantity: &'static str,
    medians: Vec<Option<f64>>,
    trend: &'static str,
    /// For consecutive learning rates (η_torch 0.02→0.1, 0.1→0.5): fraction of run pairs in which the
    /// larger learning rate gave the smaller value.
    smaller_at_larger_lr: Vec<Option<f64>>,
}

/// The whole output file.
#[derive(Debug, Serialize)]
struct Report {
    experiment: &'static str,
    theory: &'static str,
    setup: serde_json::Value,
    runs: Vec<RunRecord>,
    summary: Vec<LrSummary>,
    trends: Vec<Trend>,
}

fn runge(x: f64) -> f64 {
    1.0 / (1.0 + 25.0 * x * x)
}

/// Derivative of the Runge function.
fn runge_derivative(x: f64) -> f64 {
    let q = 1.0 + 25.0 * x * x;
    -50.0 * x / (q * q)
}

/// g_x(k) of the target itself on the training points: ((1/n)Σ|f*′(x_i)|^{2k})^{1/(2k)}.
fn target_g_x(k: u32) -> f64 {
    let sq: Vec<f64> = grid(N_TRAIN)
        .iter()
        .map(|&x| runge_derivative(x).powi(2))
        .collect();
    moment_of_squares(&sq, k)
}

/// `n` equispaced points of [−1, 1], endpoints included.
fn grid(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
        .collect()
}

/// The Runge data set on `n` equispaced points.
fn runge_dataset(n: usize, name: &str) -> Result<Dataset, Box<dyn Error>> {
    let x = grid(n);
    let y = x.iter().map(|&v| runge(v)).collect();
    Ok(Dataset::new(x, n, 1, Some((y, 1)), name, name)?)
}

/// Mean of ½(f(x_i) − y_i)² over a 1-D data set (train loss ℒ, or the test MSE).
fn half_mse(mlp: &Mlp, ds: &Dataset) -> f64 {
    let out = mlp.forward(ds.x_block(0, ds.len()));
    let y = ds.y().unwrap_or(&[]);
    let sq: f64 = out.iter().zip(y).map(|(f, t)| (f - t) * (f - t)).sum();
    0.5 * sq / ds.len() as f64
}

/// Seed of the batches of window `w` (window 0 uses the run's seed, like `flatcert train`).
fn window_seed(seed: u64, w: u64) -> u64 {
    seed.wrapping_add(w << 32)
}

/// Best loss so far and the step at which it was reached (stopping rule state).
struct Progress {
    best: f64,
    best_step: u64,
}

impl Progress {
    /// Record the check at `steps` with loss `loss`; return why training stops, if it does.
    fn check(&mut self, loss: f64, steps: u64, max_steps: u64) -> Option<Stop> {
        if loss <= LOSS_FLOOR {
            return Some(Stop::LossFloor);
        }
        if loss < (1.0 - REL_IMPROVEMENT) * self.best {
            self.best = loss;
            self.best_step = steps;
        } else if steps - self.best_step >= PATIENCE {
            return Some(Stop::Plateau);
        }
        (steps >= max_steps).then_some(Stop::MaxSteps)
    }
}

/// SGD (model S) from the PyTorch-default initialization of `seed` until the stopping rule fires.
fn train_until_flat(
    ds: &Dataset,
    eta: f64,
    seed: u64,
    max_steps: u64,
) -> Result<Trained, Box<dyn Error>> {
    let mut mlp = init_pytorch_default(
        &SIZES,
        Activation::Relu,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )?;
    let mut progress = Progress {
        best: half_mse(&mlp, ds),
        best_step: 0,
    };
    let (mut steps, mut w) = (0u64, 0u64);
    loop {
        let cfg = TrainConfig {
            sizes: SIZES.to_vec(),
            activation: Activation::Relu,
            lr: eta,
            batch: BATCH,
            steps: WINDOW.min(max_steps - steps),
            seed: window_seed(seed, w),
            sampling: BatchScheme::IidSubsets,
            log_every: 0,
        };
        let res = train(ds, &cfg, Some(mlp), &|_, _| {})?;
        steps += res.steps_done;
        mlp = res.mlp;
        let loss = res.final_train_loss;
        let stop = if res.diverged {
            Some(Stop::Diverged)
        } else {
            progress.check(loss, steps, max_steps)
        };
        if let Some(stop) = stop {
            return Ok(Trained {
                mlp,
                steps,
                loss,
                stop,
            });
        }
        w += 1;
    }
}

/// g(k) from the per-sample power sums of order k.
fn g_of(power: &[(u32, Vec<ScaledPowerSum>)], k: u32) -> Result<f64, Box<dyn Error>> {
    let (_, items) = power
        .iter()
        .find(|(kk, _)| *kk == k)
        .ok_or_else(|| format!("power sums of order {k} were not computed"))?;
    Ok(ScaledPowerSum::mean_root(items, k))
}

/// Measured values that the bounds are compared with.
struct Measured {
    g_w: [f64; 2],
    g_x: [f64; 2],
    w_upper: f64,
    min_x: f64,
    max_lambda: f64,
    max_abs_fx: f64,
    weighted: [f64; 2],
    abs_fx: Vec<f64>,
    x_norm: Vec<f64>,
}

fn measured(st: &PerSampleStats, norms: &FirstLayerNorms) -> Result<Measured, Box<dyn Error>> {
    let abs_fx: Vec<f64> = st.input_sq.iter().map(|v| v.sqrt()).collect();
    let weighted_sq: Vec<f64> = st
        .input_sq
        .iter()
        .zip(&st.x_norm)
        .map(|(j, x)| j * x * x)
        .collect();
    Ok(Measured {
        g_w: [g_of(&st.param_power, 1)?, g_of(&st.param_power, 2)?],
        g_x: [g_of(&st.input_power, 1)?, g_of(&st.input_power, 2)?],
        w_upper: norms.spectral.upper,
        min_x: st.x_norm.iter().copied().fold(f64::INFINITY, f64::min),
        max_lambda: st.lambda.iter().copied().fold(0.0, f64::max),
        max_abs_fx: abs_fx.iter().copied().fold(0.0, f64::max),
        weighted: [
            moment_of_squares(&weighted_sq, 2),
            moment_of_squares(&weighted_sq, 4),
        ],
        abs_fx,
        x_norm: st.x_norm.clone(),
    })
}

/// The T6(e)/T7 bounds at β_k for k ∈ {2, 4}, with bound/measured ratios.
fn bound_set(m: &Measured, k: u32, beta: f64) -> BoundSet {
    let gw_bound = bound_e_gw(OUTPUTS, beta);
    let gx_bound = bound_c_seminorm(m.w_upper, beta, m.min_x, OUTPUTS);
    let a_min_ratio = m
        .abs_fx
        .iter()
        .zip(&m.x_norm)
        .filter(|(fx, _)| **fx > 0.0)
        .map(|(fx, x)| bound_a_spectral(m.w_upper, beta, *x) / fx)
        .fold(f64::INFINITY, f64::min);
    let weighted = if k == 2 { m.weighted[0] } else { m.weighted[1] };
    BoundSet {
        k,
        beta,
        t6e_ratio: beta / m.max_lambda,
        gw_bound,
        gw1_ratio: gw_bound / m.g_w[0],
        gw2_ratio: gw_bound / m.g_w[1],
        gx_bound,
        gx1_ratio: gx_bound / m.g_x[0],
        gx2_ratio: gx_bound / m.g_x[1],
        b_ratio: gx_bound / m.max_abs_fx,
        a_min_ratio,
        c_weighted_ratio: bound_c_weighted(m.w_upper, beta, OUTPUTS) / weighted,
    }
}

/// Measure a trained network and compare with the T6/T7 bounds at its η.
fn metrics(
    mlp: &Mlp,
    train_ds: &Dataset,
    test_ds: &Dataset,
    eta: f64,
) -> Result<Metrics, Box<dyn Error>> {
    let opts = PerSampleOptions {
        ks: vec![1, 2],
        ..PerSampleOptions::default()
    };
    let st = per_sample_stats(mlp, train_ds, &opts, &|_| {})?;
    let norms = first_layer_norms(mlp)?;
    let m = measured(&st, &norms)?;
    let model = BatchModel::new(N_TRAIN, BATCH, BoundsSampling::WithoutReplacement)?;
    let (beta2, beta4) = (beta_k(eta, &model, 2)?.value, beta_k(eta, &model, 4)?.value);
    // T2(c): N_2(W) = ‖W‖₂; N_4(W) ≤ rowsum^{1/4}·colsum^{3/4}; ‖x_i‖_{2k} = |x_i| for d = 1.
    let n4 = norms.max_row_sum.powf(0.25) * norms.max_col_sum.powf(0.75);
    Ok(Metrics {
        test_mse: half_mse(mlp, test_ds),
        g_w1: m.g_w[0],
        g_w2: m.g_w[1],
        g_x1: m.g_x[0],
        g_x2: m.g_x[1],
        w_spectral_upper: m.w_upper,
        min_abs_x: m.min_x,
        max_lambda: m.max_lambda,
        max_abs_fx: m.max_abs_fx,
        weighted_4: m.weighted[0],
        weighted_8: m.weighted[1],
        kink_samples: st.kink_samples.len(),
        beta2,
        beta4,
        at_beta2: bound_set(&m, 2, beta2),
        at_beta4: bound_set(&m, 4, beta4),
        t2c_ratio_gx1: bound_e_gx(m.w_upper, m.g_w[0], m.min_x) / m.g_x[0],
        t2c_ratio_gx2: bound_e_gx(n4, m.g_w[1], m.min_x) / m.g_x[1],
    })
}

/// Train and measure one (learning rate, seed) pair.
fn run_one(
    lr_torch: f64,
    seed: u64,
    max_steps: u64,
    train_ds: &Dataset,
    test_ds: &Dataset,
) -> Result<RunRecord, Box<dyn Error>> {
    let eta = LrConvention::TorchMse { outputs: 1 }.to_theory(lr_torch)?;
    let t = train_until_flat(train_ds, eta, seed, max_steps)?;
    let metrics = match t.stop {
        Stop::Diverged => None,
        _ => Some(metrics(&t.mlp, train_ds, test_ds, eta)?),
    };
    Ok(RunRecord {
        lr_torch,
        lr_theory: eta,
        seed,
        steps: t.steps,
        stop: t.stop,
        final_train_loss: t.loss.is_finite().then_some(t.loss),
        metrics,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[h]
    } else {
        0.5 * (v[h - 1] + v[h])
    })
}

/// Median of `f` over the non-diverged runs in `runs`.
fn med(runs: &[&RunRecord], f: impl Fn(&RunRecord, &Metrics) -> f64) -> Option<f64> {
    median(
        runs.iter()
            .filter_map(|r| r.metrics.as_ref().map(|m| f(r, m)))
            .collect(),
    )
}

fn summarize(lr_torch: f64, all: &[RunRecord]) -> Result<LrSummary, Box<dyn Error>> {
    let runs: Vec<&RunRecord> = all.iter().filter(|r| r.lr_torch == lr_torch).collect();
    let eta = LrConvention::TorchMse { outputs: 1 }.to_theory(lr_torch)?;
    let model = BatchModel::new(N_TRAIN, BATCH, BoundsSampling::WithoutReplacement)?;
    Ok(LrSummary {
        lr_torch,
        lr_theory: eta,
        runs: runs.len(),
        diverged: runs.iter().filter(|r| r.stop == Stop::Diverged).count(),
        poor_fits: runs
            .iter()
            .filter(|r| r.metrics.is_some() && r.final_train_loss.is_none_or(|l| l > POOR_FIT))
            .count(),
        median_steps: med(&runs, |r, _| r.steps as f64),
        median_train_loss: med(&runs, |r, _| r.final_train_loss.unwrap_or(f64::NAN)),
        median_test_mse: med(&runs, |_, m| m.test_mse),
        median_g_w1: med(&runs, |_, m| m.g_w1),
        median_g_w2: med(&runs, |_, m| m.g_w2),
        median_g_x1: med(&runs, |_, m| m.g_x1),
        median_g_x2: med(&runs, |_, m| m.g_x2),
        median_w_spectral: med(&runs, |_, m| m.w_spectral_upper),
        median_max_lambda: med(&runs, |_, m| m.max_lambda),
        beta2: beta_k(eta, &model, 2)?.value,
        beta4: beta_k(eta, &model, 4)?.value,
        median_t6e_ratio_beta2: med(&runs, |_, m| m.at_beta2.t6e_ratio),
        median_t6e_ratio_beta4: med(&runs, |_, m| m.at_beta4.t6e_ratio),
        median_gw1_ratio_beta4: med(&runs, |_, m| m.at_beta4.gw1_ratio),
        median_gw2_ratio_beta4: med(&runs, |_, m| m.at_beta4.gw2_ratio),
        median_gx2_ratio_beta4: med(&runs, |_, m| m.at_beta4.gx2_ratio),
        median_b_ratio_beta4: med(&runs, |_, m| m.at_beta4.b_ratio),
        median_c_weighted_ratio_beta2: med(&runs, |_, m| m.at_beta2.c_weighted_ratio),
        median_t2c_ratio_gx1: med(&runs, |_, m| m.t2c_ratio_gx1),
    })
}

/// Values of `f` over the non-diverged runs at learning rate `lr_torch`.
fn values_at(runs: &[RunRecord], lr_torch: f64, f: fn(&Metrics) -> f64) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.lr_torch == lr_torch)
        .filter_map(|r| r.metrics.as_ref().map(f))
        .collect()
}

/// Fraction of pairs (run at the larger lr, run at the smaller lr) where the larger lr gives
/// the smaller value (a Mann–Whitney-type score; 1 = always smaller, 0.5 = no effect).
fn smaller_fraction(larger_lr: &[f64], smaller_lr: &[f64]) -> Option<f64> {
    let pairs = larger_lr.len() * smaller_lr.len();
    let wins: usize = larger_lr
        .iter()
        .map(|a| smaller_lr.iter().filter(|b| a < b).count())
        .sum();
    (pairs > 0).then(|| wins as f64 / pairs as f64)
}

/// Per-lr medians of `f`, their trend and the pairwise scores as the learning rate grows.
fn trend(quantity: &'static str, runs: &[RunRecord], f: fn(&Metrics) -> f64) -> Trend {
    let per_lr: Vec<Vec<f64>> = LRS_TORCH.iter().map(|&lr| values_at(runs, lr, f)).collect();
    let medians: Vec<Option<f64>> = per_lr.iter().map(|v| median(v.clone())).collect();
    let v: Vec<f64> = medians.iter().flatten().copied().collect();
    let label = if v.len() < 2 {
        "undetermined (fewer than two learning rates without divergence)"
    } else if v.windows(2).all(|w| w[1] < w[0]) {
        "decreasing"
    } else if v.windows(2).all(|w| w[1] > w[0]) {
        "increasing"
    } else {
        "not monotone"
    };
    Trend {
        quantity,
        medians,
        trend: label,
        smaller_at_larger_lr: per_lr
            .windows(2)
            .map(|w| smaller_fraction(&w[1], &w[0]))
            .collect(),
    }
}

fn trends(runs: &[RunRecord]) -> Vec<Trend> {
    vec![
        trend("g_W(1)", runs, |m| m.g_w1),
        trend("g_W(2)", runs, |m| m.g_w2),
        trend("g_x(1)", runs, |m| m.g_x1),
        trend("g_x(2)", runs, |m| m.g_x2),
        trend("test MSE", runs, |m| m.test_mse),
        trend("‖W‖₂", runs, |m| m.w_spectral_upper),
        trend("max λ_i", runs, |m| m.max_lambda),
    ]
}

/// Format an optional number for the table.
fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.3e}"))
}

fn print_runs(runs: &[RunRecord]) {
    println!("\nper run (ratios are bound/measured; β at the run's η, B = 2, n = 10):");
    println!(
        "{:>6} {:>5} {:>4} {:>7} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9}",
        "η_torch",
        "η",
        "seed",
        "steps",
        "stop",
        "loss",
        "test MSE",
        "g_W(1)",
        "g_W(2)",
        "g_x(1)",
        "‖W‖₂",
        "β4/maxλ",
        "√β4/gW2"
    );
    for r in runs {
        let m = r.metrics.as_ref();
        let g = |f: fn(&Metrics) -> f64| fmt(m.map(f));
        println!(
            "{:>6} {:>5} {:>4} {:>7} {:>10} {:>9} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9} {:>9}",
            r.lr_torch,
            r.lr_theory,
            r.seed,
            r.steps,
            format!("{:?}", r.stop),
            fmt(r.final_train_loss),
            g(|m| m.test_mse),
            g(|m| m.g_w1),
            g(|m| m.g_w2),
            g(|m| m.g_x1),
            m.map_or("—".into(), |m| format!("{:.3}", m.w_spectral_upper)),
            m.map_or("—".into(), |m| format!("{:.2}", m.at_beta4.t6e_ratio)),
            m.map_or("—".into(), |m| format!("{:.2}", m.at_beta4.gw2_ratio)),
        );
    }
}

fn print_summary(summary: &[LrSummary]) {
    println!("\nper-lr medians over non-diverged runs:");
    println!(
        "| η_torch | η | runs (div., ℒ > {POOR_FIT:e}) | steps | train loss | test MSE | g_W(1) | g_W(2) | g_x(1) | g_x(2) | ‖W‖₂ | max λ_i |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in summary {
        println!(
            "| {} | {} | {} ({}, {}) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.lr_torch,
            s.lr_theory,
            s.runs,
            s.diverged,
            s.poor_fits,
            s.median_steps.map_or("—".into(), |v| format!("{v:.0}")),
            fmt(s.median_train_loss),
            fmt(s.median_test_mse),
            fmt(s.median_g_w1),
            fmt(s.median_g_w2),
            fmt(s.median_g_x1),
            fmt(s.median_g_x2),
            fmt(s.median_w_spectral),
            fmt(s.median_max_lambda),
        );
    }
    println!("\nT6/T7 bounds, per-lr medians of bound/measured (≥ 1: bound holds):");
    println!(
        "| η | β_2 | β_4 | T6e: β_2/max λ_i | T6e: β_4/max λ_i | T7e: √β_4/g_W(1) | T7e: √β_4/g_W(2) | T7c (β_4): g_x(2) | T7b (β_4): max abs f′(x_i) | T7c weighted (β_2) | T2c (no stability): g_x(1) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let r = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.2}"));
    for s in summary {
        println!(
            "| {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.lr_theory,
            s.beta2,
            s.beta4,
            r(s.median_t6e_ratio_beta2),
            r(s.median_t6e_ratio_beta4),
            r(s.median_gw1_ratio_beta4),
            r(s.median_gw2_ratio_beta4),
            r(s.median_gx2_ratio_beta4),
            r(s.median_b_ratio_beta4),
            r(s.median_c_weighted_ratio_beta2),
            r(s.median_t2c_ratio_gx1),
        );
    }
}

/// "0.02→0.1, 0.1→0.5": the consecutive learning-rate steps (torch convention).
fn lr_steps_label() -> String {
    LRS_TORCH
        .windows(2)
        .map(|w| format!("{}→{}", w[0], w[1]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_trends(trends: &[Trend], runs: &[RunRecord]) {
    println!(
        "\nas the learning rate grows ({LRS_TORCH:?} torch): per-lr medians, trend, and the fraction \
         of run pairs in which the larger lr gave the smaller value ({}):",
        lr_steps_label()
    );
    for t in trends {
        let v: Vec<String> = t.medians.iter().map(|m| fmt(*m)).collect();
        let p: Vec<String> = t
            .smaller_at_larger_lr
            .iter()
            .map(|x| x.map_or("—".into(), |x| format!("{x:.2}")))
            .collect();
        println!(
            "  {:<8} {:<36} {:<13} {}",
            t.quantity,
            v.join(" → "),
            t.trend,
            p.join(", ")
        );
    }
    let violated: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let worst = r.metrics.as_ref()?.min_ratio();
            (worst < 1.0).then(|| {
                format!(
                    "η_torch {} seed {} (min ratio {worst:.3})",
                    r.lr_torch, r.seed
                )
            })
        })
        .collect();
    if violated.is_empty() {
        let all: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.metrics.as_ref().map(Metrics::min_ratio))
            .collect();
        println!(
            "every T6(e)/T7/T2(c) bound holds in every non-diverged run; the tightest ratio of a run \
             ranges over [{:.2}, {:.2}]",
            all.iter().copied().fold(f64::INFINITY, f64::min),
            all.iter().copied().fold(0.0, f64::max)
        );
    } else {
        println!(
            "bounds violated (the assumed 4th-moment stability or interpolation fails) in: {}",
            violated.join("; ")
        );
    }
}

/// Runs with metrics, grouped by learning-rate index.
fn points(runs: &[RunRecord], f: impl Fn(&Metrics) -> (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    LRS_TORCH
        .iter()
        .map(|&lr| {
            runs.iter()
                .filter(|r| r.lr_torch == lr)
                .filter_map(|r| r.metrics.as_ref().map(&f))
                .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
                .collect()
        })
        .collect()
}

/// Log-range that covers `values` with a margin (a decade wide at least).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() || hi <= 0.0 {
        return 0.1..10.0;
    }
    let (lo, hi) = (lo / 1.5, hi * 1.5);
    if hi / lo < 10.0 {
        let mid = (lo * hi).sqrt();
        return mid / 10f64.sqrt()..mid * 10f64.sqrt();
    }
    lo..hi
}

/// What one log-log scatter panel shows besides its points.
struct Panel<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    legend: SeriesLabelPosition,
    /// A dashed horizontal line per learning rate, in its colour (a bound).
    hlines: Vec<f64>,
    /// A dotted vertical reference line and its legend text.
    vline: Option<(f64, &'a str)>,
}

/// Tick label: three significant digits.
fn tick(v: &f64) -> String {
    if (0.01..1000.0).contains(&v.abs()) {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        format!("{v:.1e}")
    }
}

/// Tick positions 1, 2, 5 × 10^j inside `range`.
fn ticks_125(range: &std::ops::Range<f64>) -> Vec<f64> {
    let (lo, hi) = (
        range.start.log10().floor() as i32,
        range.end.log10().ceil() as i32,
    );
    (lo..=hi)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| range.contains(v))
        .collect()
}

/// One log-log scatter panel: points per learning rate (`groups[i]` at `LRS_TORCH[i]`).
fn scatter_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    groups: &[Vec<(f64, f64)>],
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let xs = log_range(
        groups
            .iter()
            .flatten()
            .map(|p| p.0)
            .chain(panel.vline.map(|v| v.0)),
    );
    let ys = log_range(
        groups
            .iter()
            .flatten()
            .map(|p| p.1)
            .chain(panel.hlines.iter().copied()),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            xs.clone().log_scale().with_key_points(ticks_125(&xs)),
            ys.clone().log_scale().with_key_points(ticks_125(&ys)),
        )?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(panel.x_label)
        .y_desc(panel.y_label)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    for (i, group) in groups.iter().enumerate() {
        let colour = LR_COLOURS[i % LR_COLOURS.len()];
        chart
            .draw_series(group.iter().map(|&p| Circle::new(p, 5, colour.filled())))?
            .label(format!(
                "η_torch = {} (η = {})",
                LRS_TORCH[i],
                2.0 * LRS_TORCH[i]
            ))
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        if let Some(&h) = panel.hlines.get(i) {
            let line = vec![(xs.start, h), (xs.end, h)];
            chart.draw_series(DashedLineSeries::new(line, 8, 5, colour.stroke_width(2)))?;
        }
    }
    if let Some((v, label)) = panel.vline {
        let line = vec![(v, ys.start), (v, ys.end)];
        chart
            .draw_series(DashedLineSeries::new(line, 3, 4, BLACK.stroke_width(1)))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Render an SVG into a string with `draw` and write it atomically to `path`.
fn write_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    write_atomic(path, svg.as_bytes())?;
    Ok(())
}

/// Figure 1: g_W(k) against g_x(k), k = 1 (left) and 2 (right); dashed: √β_4 per learning rate.
fn plot_gw_gx(
    path: &Path,
    runs: &[RunRecord],
    summary: &[LrSummary],
) -> Result<(), Box<dyn Error>> {
    let target = "g_x of the target f* on the training points";
    write_svg(path, (1200, 540), |root| {
        let halves = root.split_evenly((1, 2));
        for (k, half) in [1u32, 2].into_iter().zip(&halves) {
            let (title, x_label, y_label) = if k == 1 {
                (
                    "k = 1; dashed: T7(e) bound √β₄ at each η",
                    "g_x(1)",
                    "g_W(1)",
                )
            } else {
                (
                    "k = 2; dashed: T7(e) bound √β₄ at each η",
                    "g_x(2)",
                    "g_W(2)",
                )
            };
            let panel = Panel {
                title,
                x_label,
                y_label,
                legend: SeriesLabelPosition::UpperLeft,
                hlines: summary.iter().map(|s| s.beta4.sqrt()).collect(),
                vline: Some((target_g_x(k), target)),
            };
            let groups = if k == 1 {
                points(runs, |m| (m.g_x1, m.g_w1))
            } else {
                points(runs, |m| (m.g_x2, m.g_w2))
            };
            scatter_panel(half, &panel, &groups)?;
        }
        Ok(())
    })
}

/// Figure 2: test error against g_x(1).
fn plot_test_gx(path: &Path, runs: &[RunRecord]) -> Result<(), Box<dyn Error>> {
    write_svg(path, (760, 540), |root| {
        let panel = Panel {
            title: "Runge 1-D: test error against g_x(1)",
            x_label: "g_x(1)",
            y_label: "test MSE: mean of ½(f − f*)² over 1001 points",
            legend: SeriesLabelPosition::UpperRight,
            hlines: Vec::new(),
            vline: Some((target_g_x(1), "g_x(1) of the target f*")),
        };
        scatter_panel(root, &panel, &points(runs, |m| (m.g_x1, m.test_mse)))
    })
}

fn setup_json(args: &Args) -> serde_json::Value {
    serde_json::json!({
        "target": "f*(x) = 1/(1+25x^2)",
        "train_points": "10 equispaced on [-1, 1] (min |x_i| = 1/9)",
        "test_points": "1001 equispaced on [-1, 1]",
        "network": "ReLU 1-20-20-1, PyTorch-default init (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) from ChaCha8 stream 0 of the seed",
        "sgd": "model (S): fresh uniform 2-subset per step, constant eta, no momentum, no weight decay",
        "batch": BATCH,
        "lr_torch": LRS_TORCH,
        "lr_theory": LRS_TORCH.map(|l| 2.0 * l),
        "lr_conversion": "eta = 2 eta_torch / C, C = 1 (THEORY.md §0)",
        "seeds": args.seeds,
        "max_steps": args.max_steps,
        "stopping_rule": format!(
            "check the full-data loss every {WINDOW} steps; a check improves when the loss < (1 - {REL_IMPROVEMENT:e}) x the best loss so far (initial loss included); stop when the loss <= {LOSS_FLOOR:e}, when no check improved for {PATIENCE} steps, when the loss or a parameter is non-finite (diverged), or at max_steps; the last iterate is measured"
        ),
        "window_seed": "window w draws its batches from seed + w*2^32 (stream 1)",
        "test_mse": "mean over the 1001 test points of 1/2 (f - f*)^2",
        "target_g_x": {"k1": target_g_x(1), "k2": target_g_x(2)},
        "ratios": "bound/measured; stability bounds assume k-th moment stability at (eta, B) and interpolation",
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    if args.max_steps == 0 {
        return Err("--max-steps must be ≥ 1".into());
    }
    std::fs::create_dir_all(&args.out)?;
    let train_ds = runge_dataset(N_TRAIN, "runge-train")?;
    let test_ds = runge_dataset(N_TEST, "runge-test")?;
    println!("paper_1d: Runge target, ReLU 1-20-20-1, SGD model (S), B = {BATCH}, n = {N_TRAIN}");
    for lr in LRS_TORCH {
        println!(
            "  η_torch = {lr} (PyTorch MSELoss)  →  η = 2η_torch/C = {} (theory, C = 1)",
            2.0 * lr
        );
    }
    println!(
        "  reference: the target's own g_x(1) = {:.3}, g_x(2) = {:.3} on the training points",
        target_g_x(1),
        target_g_x(2)
    );
    let start = std::time::Instant::now();
    let mut runs = Vec::new();
    for lr in LRS_TORCH {
        for seed in 0..args.seeds {
            runs.push(run_one(lr, seed, args.max_steps, &train_ds, &test_ds)?);
        }
    }
    let summary = LRS_TORCH
        .iter()
        .map(|&lr| summarize(lr, &runs))
        .collect::<Result<Vec<_>, _>>()?;
    let trends = trends(&runs);
    print_runs(&runs);
    print_summary(&summary);
    print_trends(&trends, &runs);
    let report = Report {
        experiment: "paper_1d",
        theory: "THEORY.md §0 (model S, eta = 2 eta_torch / C), T2(c), T6(e), T7",
        setup: setup_json(&args),
        runs,
        summary,
        trends,
    };
    let json_path = args.out.join("paper_1d.json");
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    plot_gw_gx(
        &args.out.join("paper_1d_gw_gx.svg"),
        &report.runs,
        &report.summary,
    )?;
    plot_test_gx(&args.out.join("paper_1d_test_gx.svg"), &report.runs)?;
    println!(
        "\nwrote {} and the figures paper_1d_gw_gx.svg, paper_1d_test_gx.svg ({:.1} s)",
        json_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
