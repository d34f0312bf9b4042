//! # digits_batch_sweep — SGD outcomes over (B, η) against the predicted η*(B)
//!
//! On the bundled digits problem (the 64-64-64-10 ReLU network θ* of `data/digits/TRAINING.md`,
//! trained on the first n = 256 digits with η = 0.2, B = 16), this example sets what plain SGD does
//! against the linear-stability predictions of THEORY.md:
//!
//! - **T4** (first moment, the GD condition): a minimum can be stable only if η ≤ 2/λ_max(H).
//! - **T5(f)** (second moment): θ* is mean-square stable for SGD model (S) at (η, B) iff
//!   η ≤ η*(B) = 1/λ_max(𝒟̃), and η*(B) is nondecreasing in B. Its bracket is the certified
//!   cone bracket of T5(h) plus the proven truncation allowance of T5(f).
//!
//! All SGD is model (S) of THEORY.md §0: a fresh uniform B-subset at every step, constant η in the
//! theory convention ℓ_i = ½‖f(x_i) − y_i‖² (summed over the 10 outputs), no momentum, no weight
//! decay. Steps:
//!
//! 1. η*(B) for B ∈ {1, 4, 16, 64} at θ* (exact Gram path, nC = 2560, then the reduced model of
//!    T5(e) with rank threshold `--tau`, see "Cost").
//! 2. For each B and each η = f·η̂*(B), f ∈ {0.5, 0.8, 0.95, 1.05, 1.25, 2}, where η̂*(B) is the
//!    upper end of the bracket (1/lower(λ_max(𝒟̃)), the value of the compressed problem):
//!    - (a) **perturbation test**: `--trials` runs of SGD from θ* + 10⁻⁴·u for `--steps` steps, u a
//!      seeded random unit vector in the span of the per-sample gradients (range G). The full-data
//!      loss is evaluated every 10 steps. A run *diverged* when a loss or parameter became
//!      non-finite or the loss exceeded 10⁶; else it *left* when the loss exceeded 100·ℒ(θ*); else
//!      it *stayed*.
//!    - (b) **training test**: SGD from the PyTorch-default initialization of `--seed` for
//!      `--train-steps` steps. The run *diverged* if a loss or parameter became non-finite or the
//!      loss (checked every 1000 steps) exceeded 10⁶; else it *converged* if its final ℒ ≤ 10⁻³;
//!      else it *stayed high*. At the final network of the converged runs with the `--minima`
//!      largest η per B, η*(B) is computed again and the claim "SGD settles only where
//!      η ≤ η*(B)" is checked: *violated* (certified) if η is above the upper end, *holds*
//!      (certified) if η is at most the certified lower end, else *inconclusive*.
//!
//! **Cost.** A certified full-rank η* bracket here (r ≈ 2300–2560) costs tens of minutes per batch
//! size on 2 cores. The example keeps the eigenvalues of K above τ·λ_max (default τ = 3·10⁻³,
//! r ≈ 280) and adds the proven allowance (1−p)λ_d + 4pω to the upper side of λ_max(𝒟̃). The
//! lower side is valid for the compressed problem as well, so the upper end of η* is certified and
//! "η > upper end" is a certified instability. The certified lower end is loose, most of all at
//! small B where p is large.
//!
//! θ* is not an exact interpolating minimum (ℒ ≈ 3·10⁻⁶), nor are the networks the training runs
//! reach. Every η* here is therefore that of the Gauss–Newton model (G in place of H, THEORY.md T5
//! failure mode (i)), and SGD near θ* feels residual noise.
//!
//! Usage: `cargo run --release --example digits_batch_sweep [-- --out DIR --steps T]`; see `--help`
//! for the other options. Writes DIR/digits_batch_sweep.json, DIR/digits_batch_sweep.svg and
//! DIR/digits_batch_sweep_minima.svg (DIR defaults to docs/figures) and prints a summary.
//! Deterministic for fixed seeds.

use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use flatcert::example;
use flatcert::io::{
    CheckpointOptions, DataOptions, load_checkpoint_bytes, load_dataset_bytes, write_atomic,
};
use flatcert::measure::gram::{GramOptions, gauss_newton_gram};
use flatcert::measure::stability::{
    BracketOptions, CriticalLr, ReducedModel, Sampling as StabSampling, Verdict, critical_lr_sweep,
};
use flatcert::train::{BatchScheme, TrainConfig, init_pytorch_default, train};
use flatcert::{Activation, Dataset, Mlp};
use nalgebra::DMatrix;
use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::prelude::*;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

/// Batch sizes of the sweep.
const BATCHES: [usize; 4] = [1, 4, 16, 64];
/// Learning rates as multiples of η̂*(B), the upper end of the η*(B) bracket at θ*.
const FACTORS: [f64; 6] = [0.5, 0.8, 0.95, 1.05, 1.25, 2.0];
/// Widths of the bundled network.
const SIZES: [usize; 4] = [64, 64, 64, 10];
/// Norm of the initial perturbation of θ*.
const PERTURBATION: f64 = 1e-4;
/// Distance checks per perturbation run.
const CHECKS: u64 = 20;
/// Steps between two full-data loss evaluations of a perturbation run.
const LOSS_EVERY: u64 = 10;
/// A perturbation run *left* when its loss exceeded this multiple of ℒ(θ*).
const LEFT_LOSS_FACTOR: f64 = 100.0;
/// Steps between two loss checks of a training run.
const TRAIN_WINDOW: u64 = 1000;
/// A run *diverged* (blew up) when a loss or parameter became non-finite or the full-data loss
/// exceeded this at some evaluation (about 2·10⁶ times the loss at the initialization).
const BLOWUP_LOSS: f64 = 1e6;
/// A training run *converged* when its final full-data loss is at most this.
const CONVERGED_LOSS: f64 = 1e-3;
/// ChaCha8 stream of the perturbation direction (0: initialization, 1: batches).
const DIRECTION_STREAM: u64 = 2;
/// Relative tolerance at which the cone bracket stops.
const CONE_REL_TOL: f64 = 1e-3;
/// Marker colours of the batch sizes in the minima figure.
const BATCH_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// Marker and band colours.
const GOOD: RGBColor = RGBColor(30, 140, 60);
const BAD: RGBColor = RGBColor(200, 40, 40);
const ORANGE: RGBColor = RGBColor(230, 140, 0);
const BAND: RGBColor = RGBColor(70, 130, 200);
const GREY: RGBColor = RGBColor(110, 110, 110);
const REACHED: RGBColor = RGBColor(148, 60, 170);

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Digits: SGD outcomes over (B, η) against the predicted η*(B) (THEORY T4, T5)")]
struct Args {
    /// Output directory for the JSON and SVG files.
    #[arg(long, default_value = "docs/figures")]
    out: PathBuf,
    /// SGD steps of each perturbation run (test a).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Perturbation runs per (B, η); trial k uses seed + k for its direction u and its batches.
    #[arg(long, default_value_t = 3)]
    trials: u64,
    /// SGD steps of each training run from the initialization (test b).
    #[arg(long, default_value_t = 20_000)]
    train_steps: u64,
    /// Seed of the initialization (stream 0), the batches (stream 1) and the direction u
    /// (stream 2). Seed 1 is the initialization of the bundled model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Per batch size, analyse the minima of this many converged training runs (those with the
    /// largest η); each costs a Gram eigendecomposition (10–30 s). 6 analyses all.
    #[arg(long, default_value_t = 1)]
    minima: usize,
    /// Relative rank threshold τ of K for the reduced model (THEORY T5e); smaller is tighter and
    /// much slower.
    #[arg(long, default_value_t = 3e-3)]
    tau: f64,
    /// Cap on the cone steps of each η* bracket (THEORY T5h).
    #[arg(long, default_value_t = 40)]
    cone_steps: usize,
}

/// The certified η*(B) bracket at one batch size (THEORY T5f/h).
#[derive(Debug, Clone, Serialize)]
struct EtaStar {
    batch: usize,
    /// Noise parameter p = (n−B)/(B(n−1)).
    p: f64,
    /// Certified lower end 1/upper(λ_max(𝒟̃)).
    eta_lower: f64,
    /// Upper end η̂* = 1/lower(λ_max(𝒟̃)); η above it is certified unstable.
    eta_upper: f64,
    dtilde_lower: f64,
    dtilde_upper: f64,
    /// The cone bracket of the compressed 𝒟̃_r, before the allowances.
    reduced_cone: (f64, f64),
    /// Proven truncation allowance (1−p)λ_d + 4pω added to the upper side.
    truncation_allowance: f64,
    cone_steps: usize,
    seconds: f64,
}

impl EtaStar {
    fn from_critical(c: &CriticalLr, seconds: f64) -> Result<Self, Box<dyn Error>> {
        let b = c.bracket.as_ref().ok_or("G = 0: η* is vacuous")?;
        Ok(Self {
            batch: c.batch,
            p: c.p,
            eta_lower: c.eta_lower().ok_or("no lower end of η*")?,
            eta_upper: c.eta_upper().ok_or("no upper end of η* (lower side ≤ 0)")?,
            dtilde_lower: b.lower,
            dtilde_upper: b.upper,
            reduced_cone: b.cone,
            truncation_allowance: b.truncation_allowance,
            cone_steps: b.steps,
            seconds,
        })
    }

    /// The T5(f) verdict at η: certified stable iff η ≤ lower end, unstable iff η > upper end.
    fn verdict(&self, eta: f64) -> Verdict {
        if eta <= self.eta_lower {
            Verdict::CertifiedStable
        } else if eta > self.eta_upper {
            Verdict::CertifiedUnstable
        } else {
            Verdict::Inconclusive
        }
    }
}

/// The stability analysis of one network (θ* or the final network of a training run).
#[derive(Debug, Clone, Serialize)]
struct Analysis {
    /// ℒ = (1/n)Σ½‖res_i‖².
    train_loss: f64,
    /// ‖∇ℒ‖ (0 at an exact minimum).
    grad_norm: f64,
    /// max_i ‖res_i‖ (0 at an interpolating minimum).
    max_residual: f64,
    /// Rigorous bracket of λ_max(G).
    lambda_max: (f64, f64),
    /// T4: the bracket of 2/λ_max(G).
    gd_eta_star: (f64, f64),
    trace_g: f64,
    tau: f64,
    rank: usize,
    largest_discarded: f64,
    omega: f64,
    eta_star: Vec<EtaStar>,
    seconds: f64,
}

/// Outcome of a perturbation run started at θ* + 10⁻⁴u.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Escape {
    Stayed,
    Left,
    Diverged,
}

/// Outcome of a training run from the initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Fate {
    Converged,
    Diverged,
    StayedHigh,
}

/// One check of a run: steps done, distance to the start point's anchor (θ* for perturbation
/// runs, the initialization for training runs) and full-data loss.
#[derive(Debug, Clone, Serialize)]
struct Check {
    step: u64,
    distance: f64,
    loss: f64,
}

/// SGD hyper-parameters and recording schedule of one run.
#[derive(Debug, Clone, Copy)]
struct RunSpec {
    eta: f64,
    batch: usize,
    steps: u64,
    /// Steps between two distance checks.
    window: u64,
    /// Steps between two loss evaluations inside a window (0: only at its end).
    log_every: u64,
    seed: u64,
}

/// What [`sgd_with_checks`] returns.
struct Trajectory {
    checks: Vec<Check>,
    /// Largest full-data loss seen (+∞ once non-finite).
    max_loss: f64,
    mlp: Mlp,
    steps_done: u64,
    /// A loss or parameter became non-finite (the run stopped there).
    non_finite: bool,
    /// Non-finite, or the loss exceeded [`BLOWUP_LOSS`] at some evaluation.
    diverged: bool,
}

/// One perturbation run.
#[derive(Debug, Clone, Serialize)]
struct PerturbTrial {
    seed: u64,
    steps_done: u64,
    non_finite: bool,
    max_distance: f64,
    max_loss: f64,
    /// max ℒ / ℒ(θ*).
    max_loss_ratio: f64,
    final_loss: Option<f64>,
    outcome: Escape,
    checks: Vec<Check>,
}

/// Test (a) at one (B, f).
#[derive(Debug, Clone, Serialize)]
struct PerturbCell {
    batch: usize,
    factor: f64,
    eta: f64,
    /// T5(f) verdict at θ* for (η, B).
    verdict: &'static str,
    /// Whether the prediction is "stays" (η ≤ η̂*(B)).
    predicted_stay: bool,
    stayed: usize,
    left: usize,
    diverged: usize,
    trials: Vec<PerturbTrial>,
}

/// The claim "SGD settles only where η ≤ η*(B)" at one reached network.
#[derive(Debug, Clone, Serialize)]
struct MinimumCheck {
    analysis: Analysis,
    /// "holds" (η ≤ certified lower end), "violated" (η > upper end), or "inconclusive".
    claim: &'static str,
    /// η / η̂*(B) at the reached network (η̂* the upper end).
    eta_over_eta_star: f64,
}

/// Test (b) at one (B, f).
#[derive(Debug, Clone, Serialize)]
struct TrainRun {
    batch: usize,
    factor: f64,
    eta: f64,
    verdict_at_theta_star: &'static str,
    steps_done: u64,
    non_finite: bool,
    /// Largest full-data loss at the checks (every 1000 steps).
    max_loss: f64,
    final_loss: Option<f64>,
    min_loss: f64,
    outcome: Fate,
    checks: Vec<Check>,
    minimum: Option<MinimumCheck>,
}

/// The whole output file.
#[derive(Debug, Serialize)]
struct Report {
    experiment: &'static str,
    theory: &'static str,
    setup: serde_json::Value,
    theta_star: Analysis,
    perturbation: Vec<PerturbCell>,
    training: Vec<TrainRun>,
    agreement: Agreement,
    seconds: f64,
}

/// Counts of agreement between predictions and outcomes.
#[derive(Debug, Clone, Serialize)]
struct Agreement {
    /// Perturbation cells whose every trial did what η ≤ η̂*(B) predicts.
    perturbation_cells_agree: usize,
    perturbation_cells: usize,
    training_converged: usize,
    training_diverged: usize,
    training_stayed_high: usize,
    minima_analysed: usize,
    claim_holds: usize,
    claim_inconclusive: usize,
    claim_violated: usize,
    /// Largest η/η̂*(B) over the analysed minima.
    max_eta_over_eta_star: Option<f64>,
}

/// The bundled network θ* and its training data (first 256 digits, one-hot, pixels/16).
fn load_digits() -> Result<(Mlp, Dataset), Box<dyn Error>> {
    let ck = load_checkpoint_bytes(
        example::MODEL,
        "<embedded:digits/model.safetensors>",
        &CheckpointOptions::default(),
    )?;
    let ds = load_dataset_bytes(
        example::X,
        "<embedded:digits/train_x.npy>",
        Some((example::LABELS, "<embedded:digits/train_labels.npy>")),
        &DataOptions {
            one_hot: Some(example::CLASSES),
            x_scale: Some(example::X_SCALE),
            expected_dim: Some(SIZES[0]),
            sample_shape: None,
        },
    )?;
    if ck.mlp.widths() != SIZES || ck.mlp.activation() != Activation::Relu {
        return Err(format!("unexpected bundled model: widths {:?}", ck.mlp.widths()).into());
    }
    Ok((ck.mlp, ds))
}

/// Residuals `f(x_i) − y_i` of all samples as a `C × n` matrix (samples as columns).
fn residuals(mlp: &Mlp, ds: &Dataset) -> Result<DMatrix<f64>, Box<dyn Error>> {
    let out = mlp.forward(ds.x_block(0, ds.len()));
    let y = ds
        .y_block(0, ds.len())
        .ok_or("the data set has no targets")?;
    Ok(out - y)
}

/// (ℒ, ‖∇ℒ‖, max_i‖res_i‖) of a network.
fn residual_info(mlp: &Mlp, ds: &Dataset) -> Result<(f64, f64, f64), Box<dyn Error>> {
    let res = residuals(mlp, ds)?;
    let n = ds.len() as f64;
    let cache = mlp.forward_cache(ds.x_block(0, ds.len()));
    let grad = mlp.vjp_params(&cache, &(&res / n));
    let max_res = res.column_iter().map(|c| c.norm()).fold(0.0f64, f64::max);
    Ok((0.5 * res.norm_squared() / n, grad.norm(), max_res))
}

/// Gram path, reduced model and η*(B) brackets of `mlp` for the given batch sizes.
fn analyse(
    mlp: &Mlp,
    ds: &Dataset,
    batches: &[usize],
    args: &Args,
) -> Result<Analysis, Box<dyn Error>> {
    let start = Instant::now();
    let (train_loss, grad_norm, max_residual) = residual_info(mlp, ds)?;
    let gram_opts = GramOptions {
        tau: args.tau,
        ..GramOptions::default()
    };
    let spec = gauss_newton_gram(mlp, ds, &gram_opts)?;
    let model = ReducedModel::from_spectrum(&spec);
    let opts = BracketOptions {
        rel_tol: CONE_REL_TOL,
        max_steps: args.cone_steps,
        dense_limit: 0,
        ..BracketOptions::default()
    };
    let mut eta_star = Vec::with_capacity(batches.len());
    for &b in batches {
        let t = Instant::now();
        let c = critical_lr_sweep(&model, &[b], StabSampling::WithoutReplacement, &opts)?;
        let c = c.first().ok_or("critical_lr_sweep returned nothing")?;
        eta_star.push(EtaStar::from_critical(c, t.elapsed().as_secs_f64())?);
    }
    let (lo, hi) = model.lambda_max_bracket;
    Ok(Analysis {
        train_loss,
        grad_norm,
        max_residual,
        lambda_max: (lo, hi),
        gd_eta_star: (2.0 / hi, 2.0 / lo),
        trace_g: spec.trace,
        tau: spec.tau,
        rank: spec.rank,
        largest_discarded: spec.largest_discarded,
        omega: model.omega,
        eta_star,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A seeded random unit vector in the span of the per-sample gradients: `𝐉ᵀa/‖𝐉ᵀa‖` with
/// `a ~ N(0, I_{nC})`, so it lies in range G (THEORY T5e).
fn gradient_span_direction(mlp: &Mlp, ds: &Dataset, seed: u64) -> Result<Vec<f64>, Box<dyn Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(DIRECTION_STREAM);
    let a = DMatrix::from_fn(mlp.output_dim(), ds.len(), |_, _| {
        <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)
    });
    let cache = mlp.forward_cache(ds.x_block(0, ds.len()));
    let v = mlp.vjp_params(&cache, &a).to_flat();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm <= 0.0 || !norm.is_finite() {
        return Err("the per-sample gradients span nothing (G = 0)".into());
    }
    Ok(v.into_iter().map(|x| x / norm).collect())
}

/// Seed of the batches of window `w` (window 0 uses the seed itself, like `flatcert train`).
fn window_seed(seed: u64, w: u64) -> u64 {
    seed.wrapping_add(w << 32)
}

/// Euclidean distance between two flat parameter vectors.
fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Largest value, +∞ if any is NaN.
fn max_of(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(
        0.0f64,
        |m, x| if x.is_nan() { f64::INFINITY } else { m.max(x) },
    )
}

/// SGD (model S) from `init` in windows of `spec.window` steps (window w draws its batches from
/// seed + w·2³²), recording the loss and the distance to `anchor` after every window and the
/// maximum of the loss evaluated every `spec.log_every` steps. Stops at a divergence.
fn sgd_with_checks(
    ds: &Dataset,
    init: Mlp,
    spec: &RunSpec,
    anchor: &[f64],
) -> Result<Trajectory, Box<dyn Error>> {
    let mut mlp = init;
    let first = Check {
        step: 0,
        distance: distance(&mlp.params_flat(), anchor),
        loss: residuals(&mlp, ds)?.norm_squared() * 0.5 / ds.len() as f64,
    };
    let mut max_loss = first.loss;
    let mut checks = vec![first];
    let (mut done, mut w, mut non_finite) = (0u64, 0u64, false);
    while done < spec.steps && !non_finite {
        let cfg = TrainConfig {
            sizes: SIZES.to_vec(),
            activation: Activation::Relu,
            lr: spec.eta,
            batch: spec.batch,
            steps: spec.window.min(spec.steps - done),
            seed: window_seed(spec.seed, w),
            sampling: BatchScheme::IidSubsets,
            log_every: spec.log_every,
        };
        let res = train(ds, &cfg, Some(mlp), &|_, _| {})?;
        max_loss = max_of(res.history.iter().map(|h| h.1).chain([max_loss]));
        done += res.steps_done;
        non_finite = res.diverged;
        mlp = res.mlp;
        w += 1;
        checks.push(Check {
            step: done,
            distance: distance(&mlp.params_flat(), anchor),
            loss: res.final_train_loss,
        });
    }
    let max_loss = if non_finite { f64::INFINITY } else { max_loss };
    Ok(Trajectory {
        checks,
        max_loss,
        mlp,
        steps_done: done,
        non_finite,
        diverged: non_finite || max_loss > BLOWUP_LOSS,
    })
}

/// One perturbation run from θ* + 10⁻⁴u at (η, B), with direction and batches from `seed`.
fn perturbation_trial(
    ds: &Dataset,
    star: &Mlp,
    loss_star: f64,
    spec: &RunSpec,
) -> Result<PerturbTrial, Box<dyn Error>> {
    let theta_star = star.params_flat();
    let u = gradient_span_direction(star, ds, spec.seed)?;
    let start: Vec<f64> = theta_star
        .iter()
        .zip(&u)
        .map(|(t, d)| t + PERTURBATION * d)
        .collect();
    let tr = sgd_with_checks(ds, star.with_params_flat(&start)?, spec, &theta_star)?;
    let outcome = if tr.diverged {
        Escape::Diverged
    } else if tr.max_loss > LEFT_LOSS_FACTOR * loss_star {
        Escape::Left
    } else {
        Escape::Stayed
    };
    Ok(PerturbTrial {
        seed: spec.seed,
        steps_done: tr.steps_done,
        non_finite: tr.non_finite,
        max_distance: max_of(tr.checks.iter().map(|c| c.distance)),
        max_loss: tr.max_loss,
        max_loss_ratio: tr.max_loss / loss_star,
        final_loss: tr.checks.last().map(|c| c.loss).filter(|l| l.is_finite()),
        outcome,
        checks: tr.checks,
    })
}

/// Test (a) at one (B, f): `--trials` perturbation runs.
fn perturbation_cell(
    ds: &Dataset,
    star: &Mlp,
    loss_star: f64,
    est: &EtaStar,
    factor: f64,
    args: &Args,
) -> Result<PerturbCell, Box<dyn Error>> {
    let eta = factor * est.eta_upper;
    let trials = (0..args.trials)
        .map(|k| {
            let spec = RunSpec {
                eta,
                batch: est.batch,
                steps: args.steps,
                window: (args.steps / CHECKS).max(1),
                log_every: LOSS_EVERY,
                seed: args.seed.wrapping_add(k),
            };
            perturbation_trial(ds, star, loss_star, &spec)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = |o: Escape| trials.iter().filter(|t| t.outcome == o).count();
    Ok(PerturbCell {
        batch: est.batch,
        factor,
        eta,
        verdict: est.verdict(eta).name(),
        predicted_stay: eta <= est.eta_upper,
        stayed: count(Escape::Stayed),
        left: count(Escape::Left),
        diverged: count(Escape::Diverged),
        trials,
    })
}

/// Test (b) at one (B, f): SGD from the PyTorch-default initialization of the seed.
fn training_run(
    ds: &Dataset,
    est: &EtaStar,
    factor: f64,
    args: &Args,
) -> Result<(TrainRun, Mlp), Box<dyn Error>> {
    let eta = factor * est.eta_upper;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let init = init_pytorch_default(&SIZES, Activation::Relu, &mut rng)?;
    let anchor = init.params_flat();
    let spec = RunSpec {
        eta,
        batch: est.batch,
        steps: args.train_steps,
        window: TRAIN_WINDOW,
        log_every: 0,
        seed: args.seed,
    };
    let tr = sgd_with_checks(ds, init, &spec, &anchor)?;
    let final_loss = tr.checks.last().map(|c| c.loss).filter(|l| l.is_finite());
    let outcome = match final_loss {
        _ if tr.diverged => Fate::Diverged,
        Some(l) if l <= CONVERGED_LOSS => Fate::Converged,
        _ => Fate::StayedHigh,
    };
    let min_loss = tr
        .checks
        .iter()
        .map(|c| c.loss)
        .filter(|l| l.is_finite())
        .fold(f64::INFINITY, f64::min);
    let run = TrainRun {
        batch: est.batch,
        factor,
        eta,
        verdict_at_theta_star: est.verdict(eta).name(),
        steps_done: tr.steps_done,
        non_finite: tr.non_finite,
        max_loss: tr.max_loss,
        final_loss,
        min_loss,
        outcome,
        checks: tr.checks,
        minimum: None,
    };
    Ok((run, tr.mlp))
}

/// η*(B) at the network a converged run reached, and the claim η ≤ η*(B) there.
fn check_minimum(
    mlp: &Mlp,
    ds: &Dataset,
    run: &TrainRun,
    args: &Args,
) -> Result<MinimumCheck, Box<dyn Error>> {
    let analysis = analyse(mlp, ds, &[run.batch], args)?;
    let at = analysis.eta_star.first().ok_or("no η* at the minimum")?;
    let claim = match at.verdict(run.eta) {
        Verdict::CertifiedStable => "holds",
        Verdict::CertifiedUnstable => "violated",
        Verdict::Inconclusive => "inconclusive",
    };
    Ok(MinimumCheck {
        eta_over_eta_star: run.eta / at.eta_upper,
        claim,
        analysis,
    })
}

/// All training runs of one batch size; the minima of the `--minima` converged runs with the
/// largest η are analysed.
fn training_for_batch(
    ds: &Dataset,
    est: &EtaStar,
    args: &Args,
) -> Result<Vec<TrainRun>, Box<dyn Error>> {
    let mut runs = Vec::with_capacity(FACTORS.len());
    for &f in &FACTORS {
        let t = Instant::now();
        let (run, mlp) = training_run(ds, est, f, args)?;
        eprintln!(
            "  train B = {:>2}, η = {:.4} ({f}·η̂*): {:?}, final ℒ = {} ({:.1} s)",
            run.batch,
            run.eta,
            run.outcome,
            fmt_opt(run.final_loss),
            t.elapsed().as_secs_f64()
        );
        runs.push((run, mlp));
    }
    let mut converged: Vec<usize> = (0..runs.len())
        .filter(|&i| runs[i].0.outcome == Fate::Converged)
        .collect();
    converged.sort_by(|&a, &b| runs[b].0.eta.total_cmp(&runs[a].0.eta));
    for &i in converged.iter().take(args.minima) {
        let t = Instant::now();
        let (run, mlp) = &runs[i];
        let check = check_minimum(mlp, ds, run, args)?;
        eprintln!(
            "  minimum of B = {}, η = {:.4}: η/η̂* = {:.3}, claim {} ({:.1} s)",
            run.batch,
            run.eta,
            check.eta_over_eta_star,
            check.claim,
            t.elapsed().as_secs_f64()
        );
        runs[i].0.minimum = Some(check);
    }
    Ok(runs.into_iter().map(|(r, _)| r).collect())
}

fn agreement(cells: &[PerturbCell], runs: &[TrainRun]) -> Agreement {
    let agree = cells
        .iter()
        .filter(|c| {
            let n = c.trials.len();
            if c.predicted_stay {
                c.stayed == n
            } else {
                c.stayed == 0
            }
        })
        .count();
    let minima: Vec<&MinimumCheck> = runs.iter().filter_map(|r| r.minimum.as_ref()).collect();
    let claims = |c: &str| minima.iter().filter(|m| m.claim == c).count();
    let fates = |f: Fate| runs.iter().filter(|r| r.outcome == f).count();
    Agreement {
        perturbation_cells_agree: agree,
        perturbation_cells: cells.len(),
        training_converged: fates(Fate::Converged),
        training_diverged: fates(Fate::Diverged),
        training_stayed_high: fates(Fate::StayedHigh),
        minima_analysed: minima.len(),
        claim_holds: claims("holds"),
        claim_inconclusive: claims("inconclusive"),
        claim_violated: claims("violated"),
        max_eta_over_eta_star: minima.iter().map(|m| m.eta_over_eta_star).reduce(f64::max),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |x| format!("{x:.2e}"))
}

fn print_theta_star(a: &Analysis) {
    println!(
        "\nθ* (bundled): ℒ = {:.2e}, ‖∇ℒ‖ = {:.2e}, max_i‖res_i‖ = {:.2e} (Gauss–Newton model)",
        a.train_loss, a.grad_norm, a.max_residual
    );
    println!(
        "  λ_max(G) ∈ [{:.6}, {:.6}], T4: 2/λ_max = {:.4}; tr G = {:.2}; τ = {:e}, r = {}, λ_d = {:.2e}, ω = {:.3}",
        a.lambda_max.0,
        a.lambda_max.1,
        a.gd_eta_star.0,
        a.trace_g,
        a.tau,
        a.rank,
        a.largest_discarded,
        a.omega
    );
    println!(
        "| B | p | η*(B) certified bracket | λ_max(𝒟̃_r) cone | truncation allowance | cone steps |"
    );
    println!("|---|---|---|---|---|---|");
    for e in &a.eta_star {
        println!(
            "| {} | {:.4} | [{:.4}, {:.4}] | [{:.4}, {:.4}] | {:.3} | {} |",
            e.batch,
            e.p,
            e.eta_lower,
            e.eta_upper,
            e.reduced_cone.0,
            e.reduced_cone.1,
            e.truncation_allowance,
            e.cone_steps
        );
    }
}

fn print_perturbation(cells: &[PerturbCell]) {
    println!(
        "\n(a) perturbation test: SGD from θ* + 1e-4·u; cell = stayed/left/diverged of the trials, \
         and the largest max ℒ/ℒ(θ*) over the trials"
    );
    println!("| B | η̂*(B) | {} |", factor_header());
    println!("|---|---|{}", "---|".repeat(FACTORS.len()));
    for b in BATCHES {
        let row: Vec<&PerturbCell> = cells.iter().filter(|c| c.batch == b).collect();
        let eta_hat = row.first().map_or(f64::NAN, |c| c.eta / c.factor);
        let cells: Vec<String> = row
            .iter()
            .map(|c| {
                let worst = max_of(c.trials.iter().map(|t| t.max_loss_ratio));
                format!(
                    "{}/{}/{} ({})",
                    c.stayed,
                    c.left,
                    c.diverged,
                    fmt_ratio(worst)
                )
            })
            .collect();
        println!("| {b} | {eta_hat:.4} | {} |", cells.join(" | "));
    }
}

/// A loss ratio for the tables: `12×`, or `4e5×` above 10⁴.
fn fmt_ratio(r: f64) -> String {
    if r < 1e4 {
        format!("{r:.0}×")
    } else {
        format!("{r:.0e}×")
    }
}

fn factor_header() -> String {
    FACTORS
        .iter()
        .map(|f| format!("{f}·η̂*"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn print_training(runs: &[TrainRun]) {
    println!(
        "\n(b) training test from the initialization: outcome, final ℒ; for analysed minima \
         η/η̂*(B) there and the claim η ≤ η*(B)"
    );
    println!("| B | {} |", factor_header());
    println!("|---|{}", "---|".repeat(FACTORS.len()));
    for b in BATCHES {
        let cells: Vec<String> = runs
            .iter()
            .filter(|r| r.batch == b)
            .map(|r| {
                let fate = match r.outcome {
                    Fate::Converged => "conv",
                    Fate::Diverged => "DIV",
                    Fate::StayedHigh => "high",
                };
                let m = r.minimum.as_ref().map_or(String::new(), |m| {
                    format!("; {:.2}, {}", m.eta_over_eta_star, m.claim)
                });
                format!("{fate} {}{m}", fmt_opt(r.final_loss))
            })
            .collect();
        println!("| {b} | {} |", cells.join(" | "));
    }
}

fn print_agreement(a: &Agreement) {
    println!(
        "\nperturbation cells in which every trial did what η ≤ η̂*(B) predicts: {}/{}",
        a.perturbation_cells_agree, a.perturbation_cells
    );
    println!(
        "training runs: {} converged, {} diverged, {} stayed high; minima analysed: {} \
         (claim holds {}, inconclusive {}, violated {}; max η/η̂* = {})",
        a.training_converged,
        a.training_diverged,
        a.training_stayed_high,
        a.minima_analysed,
        a.claim_holds,
        a.claim_inconclusive,
        a.claim_violated,
        a.max_eta_over_eta_star
            .map_or("—".into(), |v| format!("{v:.3}"))
    );
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Log-scale tick label.
fn tick(v: &f64) -> String {
    if *v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

/// Tick positions 1, 2, 5 × 10^j inside `range`.
fn ticks_125(range: &Range<f64>) -> Vec<f64> {
    let (lo, hi) = (
        range.start.log10().floor() as i32,
        range.end.log10().ceil() as i32,
    );
    (lo..=hi)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(|v| range.contains(v))
        .collect()
}

/// The η range of the (B, η) panels.
fn eta_range(star: &Analysis, reached: &[(f64, f64)]) -> Range<f64> {
    let lo = star
        .eta_star
        .iter()
        .map(|e| e.eta_lower.min(FACTORS[0] * e.eta_upper))
        .fold(f64::INFINITY, f64::min);
    let hi = star
        .eta_star
        .iter()
        .map(|e| FACTORS[FACTORS.len() - 1] * e.eta_upper)
        .chain(reached.iter().map(|r| r.1))
        .fold(star.gd_eta_star.1, f64::max);
    lo / 1.3..hi * 1.3
}

/// Log-log chart coordinates with explicit key points.
type LogLog = Cartesian2d<WithKeyPoints<LogCoord<f64>>, WithKeyPoints<LogCoord<f64>>>;

/// Points drawn with one marker, and their legend text.
type MarkerGroup<'a> = (Marker, &'a str, Vec<(f64, f64)>);

/// Outcome markers: filled circle (stayed / converged), filled triangle (left), cross
/// (diverged), hollow square (stayed high), filled diamond (mixed outcomes across trials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Good,
    Left,
    Diverged,
    High,
    Mixed,
}

fn cell_marker(c: &PerturbCell) -> Marker {
    let n = c.trials.len();
    if c.stayed == n {
        Marker::Good
    } else if c.left == n {
        Marker::Left
    } else if c.diverged == n {
        Marker::Diverged
    } else {
        Marker::Mixed
    }
}

fn run_marker(r: &TrainRun) -> Marker {
    match r.outcome {
        Fate::Converged => Marker::Good,
        Fate::Diverged => Marker::Diverged,
        Fate::StayedHigh => Marker::High,
    }
}

/// x position of factor `i` at batch size `b`: spread around B so that neighbours do not overlap.
fn jitter(b: usize, i: usize) -> f64 {
    b as f64 * 1.07f64.powf(i as f64 - 2.5)
}

/// Draw `pts` with marker `m` and a legend entry `label`.
fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, LogLog>,
    m: Marker,
    pts: &[(f64, f64)],
    label: &str,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    if pts.is_empty() {
        return Ok(());
    }
    let pts = pts.to_vec();
    let anno = match m {
        Marker::Good => chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, GOOD.filled())))?
            .legend(|(x, y)| Circle::new((x + 10, y), 5, GOOD.filled())),
        Marker::Left => chart
            .draw_series(
                pts.into_iter()
                    .map(|p| TriangleMarker::new(p, 7, BAD.filled())),
            )?
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 7, BAD.filled())),
        Marker::Diverged => chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Cross::new(p, 6, BLACK.stroke_width(2))),
            )?
            .legend(|(x, y)| Cross::new((x + 10, y), 6, BLACK.stroke_width(2))),
        Marker::High => chart
            .draw_series(pts.into_iter().map(|p| {
                EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], ORANGE.stroke_width(2))
            }))?
            .legend(|(x, y)| {
                Rectangle::new([(x + 5, y - 5), (x + 15, y + 5)], ORANGE.stroke_width(2))
            }),
        Marker::Mixed => chart
            .draw_series(pts.into_iter().map(|p| {
                EmptyElement::at(p)
                    + Polygon::new(vec![(0, -7), (7, 0), (0, 7), (-7, 0)], ORANGE.filled())
            }))?
            .legend(|(x, y)| {
                Polygon::new(
                    vec![(x + 10, y - 7), (x + 17, y), (x + 10, y + 7), (x + 3, y)],
                    ORANGE.filled(),
                )
            }),
    };
    anno.label(label);
    Ok(())
}

/// The predicted stable region at θ*: the η*(B) bracket as a band, its upper end η̂*(B) as a
/// line, the certified lower end dashed, the T4 limit 2/λ_max(G) and the bundled run's (B, η).
fn draw_prediction<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, LogLog>,
    star: &Analysis,
    x_range: &Range<f64>,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let upper: Vec<(f64, f64)> = star
        .eta_star
        .iter()
        .map(|e| (e.batch as f64, e.eta_upper))
        .collect();
    let lower: Vec<(f64, f64)> = star
        .eta_star
        .iter()
        .map(|e| (e.batch as f64, e.eta_lower))
        .collect();
    let band: Vec<(f64, f64)> = lower.iter().chain(upper.iter().rev()).copied().collect();
    chart
        .draw_series(std::iter::once(Polygon::new(band, BAND.mix(0.15).filled())))?
        .label("certified η*(B) bracket at θ* (T5f)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BAND.mix(0.3).filled()));
    chart
        .draw_series(LineSeries::new(upper, BAND.stroke_width(2)))?
        .label("η̂*(B): upper end of the bracket (above it: certified unstable)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BAND.stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(lower, 6, 4, BAND.stroke_width(1)))?
        .label("certified lower end (with truncation allowance)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BAND));
    let gd = star.gd_eta_star.0;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x_range.start, gd), (x_range.end, gd)],
            3,
            4,
            GREY.stroke_width(1),
        ))?
        .label("T4 (GD): 2/λ_max(G) at θ*")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREY));
    chart
        .draw_series(std::iter::once(Circle::new(
            (16.0, 0.2),
            9,
            BLACK.stroke_width(1),
        )))?
        .label("θ* was trained here (B = 16, η = 0.2)")
        .legend(|(x, y)| Circle::new((x + 10, y), 7, BLACK.stroke_width(1)));
    Ok(())
}

/// One (B, η) panel: the prediction, `groups` of (marker, label, points) and a dash at each
/// `reached` (x, η̂*) of an analysed network. The η axis also covers the η̂* values of `y_extra`,
/// so that both panels share one axis.
fn outcome_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    star: &Analysis,
    groups: &[MarkerGroup],
    reached: &[(f64, f64)],
    y_extra: &[(f64, f64)],
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let xs = 0.7..100.0;
    let ys = eta_range(star, y_extra);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            xs.clone()
                .log_scale()
                .with_key_points(BATCHES.map(|b| b as f64).to_vec()),
            ys.clone().log_scale().with_key_points(ticks_125(&ys)),
        )?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("batch size B (log)")
        .y_desc("learning rate η (theory convention, log)")
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    draw_prediction(&mut chart, star, &xs)?;
    if !reached.is_empty() {
        chart
            .draw_series(reached.iter().map(|&(x, eta)| {
                PathElement::new(
                    vec![(x / 1.12, eta), (x * 1.12, eta)],
                    REACHED.stroke_width(3),
                )
            }))?
            .label("η̂*(B) at the network a converged run reached")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], REACHED.stroke_width(3)));
    }
    for (m, label, pts) in groups {
        draw_markers(&mut chart, *m, pts, label)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Points of `items` grouped by marker, at (jittered B, η).
fn group_points<T>(
    items: &[T],
    key: impl Fn(&T) -> (usize, f64, f64, Marker),
) -> Vec<(Marker, Vec<(f64, f64)>)> {
    let all = [
        Marker::Good,
        Marker::Left,
        Marker::Mixed,
        Marker::Diverged,
        Marker::High,
    ];
    all.into_iter()
        .map(|m| {
            let pts = items
                .iter()
                .map(&key)
                .filter(|k| k.3 == m)
                .map(|(b, f, eta, _)| {
                    let i = FACTORS.iter().position(|&x| x == f).unwrap_or(0);
                    (jitter(b, i), eta)
                })
                .collect();
            (m, pts)
        })
        .collect()
}

/// Render an SVG into a string with `draw` and write it atomically to `path`.
fn write_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Box<dyn Error>>,
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

/// Figure 1: outcomes of the perturbation test (left) and the training test (right) over the
/// predicted stable region.
fn plot_outcomes(path: &Path, report: &Report, args: &Args) -> Result<(), Box<dyn Error>> {
    let pert = group_points(&report.perturbation, |c| {
        (c.batch, c.factor, c.eta, cell_marker(c))
    });
    let trained = group_points(&report.training, |r| {
        (r.batch, r.factor, r.eta, run_marker(r))
    });
    let label_a = |m: Marker| match m {
        Marker::Good => "stayed near θ* (all trials)",
        Marker::Left => "left θ* (all trials: max ℒ > 100·ℒ(θ*))",
        Marker::Mixed => "mixed outcomes across the trials",
        Marker::Diverged => "diverged: non-finite or ℒ > 1e6 (all trials)",
        Marker::High => "",
    };
    let label_b = |m: Marker| match m {
        Marker::Good => "converged (final ℒ ≤ 1e-3)",
        Marker::Diverged => "diverged: non-finite or ℒ > 1e6",
        Marker::High => "stayed high (final ℒ > 1e-3)",
        Marker::Left | Marker::Mixed => "",
    };
    let reached: Vec<(f64, f64)> = report
        .training
        .iter()
        .filter_map(|r| {
            let e = r.minimum.as_ref()?.analysis.eta_star.first()?;
            let i = FACTORS.iter().position(|&x| x == r.factor)?;
            Some((jitter(r.batch, i), e.eta_upper))
        })
        .collect();
    let title_a = format!(
        "(a) SGD from θ* + 1e-4·u, {} steps, {} trials",
        args.steps, args.trials
    );
    let title_b = format!(
        "(b) SGD from the initialization (seed {}), {} steps",
        args.seed, args.train_steps
    );
    write_svg(path, (1400, 620), |root| {
        let halves = root.split_evenly((1, 2));
        let a: Vec<_> = pert.into_iter().map(|(m, p)| (m, label_a(m), p)).collect();
        let b: Vec<_> = trained
            .into_iter()
            .map(|(m, p)| (m, label_b(m), p))
            .collect();
        outcome_panel(&halves[0], &title_a, &report.theta_star, &a, &[], &reached)?;
        outcome_panel(
            &halves[1],
            &title_b,
            &report.theta_star,
            &b,
            &reached,
            &reached,
        )
    })
}

/// Figure 2: η of each analysed converged run against η*(B) at the network it reached.
fn plot_minima(path: &Path, report: &Report) -> Result<(), Box<dyn Error>> {
    let analysed: Vec<(&TrainRun, &EtaStar)> = report
        .training
        .iter()
        .filter_map(|r| Some((r, r.minimum.as_ref()?.analysis.eta_star.first()?)))
        .collect();
    let values = analysed
        .iter()
        .flat_map(|(r, e)| [r.eta, e.eta_lower, e.eta_upper])
        .chain(report.theta_star.eta_star.iter().map(|e| e.eta_upper));
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let range = if lo.is_finite() {
        lo / 1.3..hi * 1.3
    } else {
        0.01..1.0
    };
    write_svg(path, (820, 640), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "Converged runs: η against η*(B) at the network reached",
                ("sans-serif", 17),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                range.clone().log_scale().with_key_points(ticks_125(&range)),
                range.clone().log_scale().with_key_points(ticks_125(&range)),
            )?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("η used by SGD (log)")
            .y_desc("η*(B) bracket at the reached network (log)")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                vec![(range.start, range.start), (range.end, range.end)],
                BLACK.stroke_width(1),
            ))?
            .label("η = η*: below the line η > η̂* (certified unstable there)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        for (k, b) in BATCHES.iter().enumerate() {
            let colour = BATCH_COLOURS[k];
            let mine: Vec<&(&TrainRun, &EtaStar)> =
                analysed.iter().filter(|(r, _)| r.batch == *b).collect();
            for (r, e) in &mine {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(r.eta, e.eta_lower), (r.eta, e.eta_upper)],
                    colour.stroke_width(2),
                )))?;
            }
            chart
                .draw_series(
                    mine.iter()
                        .map(|(r, e)| Circle::new((r.eta, e.eta_upper), 5, colour.filled())),
                )?
                .label(format!("B = {b}: η̂*(B) (dot) and certified bracket (bar)"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
            let at_star = report
                .theta_star
                .eta_star
                .get(k)
                .map_or(f64::NAN, |e| e.eta_upper);
            chart.draw_series(
                mine.iter()
                    .map(|(r, _)| Circle::new((r.eta, at_star), 5, colour.stroke_width(2))),
            )?;
        }
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
            .label("hollow: η̂*(B) at θ*, for comparison")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------

fn setup_json(args: &Args, n: usize) -> serde_json::Value {
    serde_json::json!({
        "data": format!("first {n} UCI digits (data/digits/train_x.npy), pixels/16, one-hot 10 classes"),
        "network": "bundled ReLU 64-64-64-10 (data/digits/model.safetensors), trained with eta = 0.2, B = 16, 200000 steps, seed 1",
        "sgd": "model (S): fresh uniform B-subset per step, constant eta (theory convention, loss 1/2 ||f - y||^2 summed over outputs), no momentum, no weight decay",
        "batches": BATCHES,
        "factors": FACTORS,
        "eta_grid": "eta = factor * eta_hat*(B), eta_hat* = upper end of the eta*(B) bracket at theta*",
        "eta_star": format!("Gram path (nC = {}), reduced model with tau = {:e}, cone bracket (rel_tol {CONE_REL_TOL:e}, at most {} steps, no dense route) plus the proven truncation allowance; Gauss-Newton model", n * SIZES[3], args.tau, args.cone_steps),
        "perturbation": format!("theta* + {PERTURBATION:e} u, u = J^T a / ||J^T a||, a ~ N(0, I) from ChaCha8 stream {DIRECTION_STREAM} of seed + trial; {} steps; loss every {LOSS_EVERY} steps; diverged iff non-finite or max loss > {BLOWUP_LOSS:e}; else left iff max loss > {LEFT_LOSS_FACTOR} * L(theta*); else stayed", args.steps),
        "trials": args.trials,
        "training": format!("PyTorch-default init from ChaCha8 stream 0 of the seed; {} steps; diverged iff non-finite or loss > {BLOWUP_LOSS:e} at a check (every {TRAIN_WINDOW} steps); else converged iff final loss <= {CONVERGED_LOSS:e}; else stayed high", args.train_steps),
        "minima_per_batch": args.minima,
        "claim": "holds iff eta <= certified lower end of eta*(B) at the reached network; violated iff eta > its upper end; else inconclusive",
        "seed": args.seed,
        "window_seed": "window w of a run draws its batches from seed + w * 2^32 (stream 1)",
    })
}

fn run_perturbation(
    ds: &Dataset,
    star: &Mlp,
    analysis: &Analysis,
    args: &Args,
) -> Result<Vec<PerturbCell>, Box<dyn Error>> {
    let mut cells = Vec::new();
    for est in &analysis.eta_star {
        let t = Instant::now();
        for &f in &FACTORS {
            cells.push(perturbation_cell(
                ds,
                star,
                analysis.train_loss,
                est,
                f,
                args,
            )?);
        }
        eprintln!(
            "  perturbation runs at B = {}: {:.1} s",
            est.batch,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(cells)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    if args.steps == 0 || args.train_steps == 0 || args.trials == 0 {
        return Err("--steps, --train-steps and --trials must be ≥ 1".into());
    }
    std::fs::create_dir_all(&args.out)?;
    let start = Instant::now();
    let (star, ds) = load_digits()?;
    println!(
        "digits_batch_sweep: bundled 64-64-64-10 ReLU, n = {}, SGD model (S), B ∈ {BATCHES:?}, η = f·η̂*(B), f ∈ {FACTORS:?}",
        ds.len()
    );
    eprintln!("η*(B) at θ* (Gram path, τ = {:e}) …", args.tau);
    let theta_star = analyse(&star, &ds, &BATCHES, &args)?;
    eprintln!("  done in {:.1} s", theta_star.seconds);
    print_theta_star(&theta_star);
    let perturbation = run_perturbation(&ds, &star, &theta_star, &args)?;
    let mut training = Vec::new();
    for est in &theta_star.eta_star {
        training.extend(training_for_batch(&ds, est, &args)?);
    }
    print_perturbation(&perturbation);
    print_training(&training);
    let agreement = agreement(&perturbation, &training);
    print_agreement(&agreement);
    let report = Report {
        experiment: "digits_batch_sweep",
        theory: "THEORY.md §0 (model S), T4, T5(e, f, h)",
        setup: setup_json(&args, ds.len()),
        theta_star,
        perturbation,
        training,
        agreement,
        seconds: start.elapsed().as_secs_f64(),
    };
    let json_path = args.out.join("digits_batch_sweep.json");
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    plot_outcomes(&args.out.join("digits_batch_sweep.svg"), &report, &args)?;
    plot_minima(&args.out.join("digits_batch_sweep_minima.svg"), &report)?;
    println!(
        "\nwrote {} and the figures digits_batch_sweep.svg, digits_batch_sweep_minima.svg ({:.1} s)",
        json_path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
