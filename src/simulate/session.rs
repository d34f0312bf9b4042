//! One simulation run (the library behind `flatcert simulate`): the linearized trials and the
//! true-SGD runs side by side with the predictions, the growth fits and their comparison.

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::exact::{reduced_log_trace_curve, reduced_start_moment};
use super::growth::curve_rate;
use super::linearized::Linearization;
use super::network::SimNetwork;
use super::plan::{
    DISTANCE_FACTOR, EXACT_CURVE_BUDGET, LOSS_FACTOR, LrAndBatch, RECORD_POINTS, SimulatePlan,
    resolve_hyper,
};
use super::predict::not_computed;
use super::{
    GrowthFit, GrowthOptions, LinearizedRun, Prediction, TrueSgdOptions, TrueSgdRun, fit_growth,
    forcing_kick, log_moment_curve, predict, run_true_sgd,
};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::measure::stability::Sampling as TheorySampling;
use crate::measurements::InputFile;
use crate::problem::{Loaded, NetProblem, Problem};
use crate::progress;
use crate::train::BatchScheme;

/// The inputs of a simulation (files with SHA-256, network shape).
#[derive(Serialize)]
pub struct InputsDoc {
    pub(crate) model: InputFile,
    pub(crate) x: InputFile,
    pub(crate) y: Option<InputFile>,
    pub(crate) activation: String,
    /// `flag`, `metadata` or `default` (relu assumed).
    pub(crate) activation_source: &'static str,
    pub(crate) widths: Vec<usize>,
    pub(crate) n: usize,
    pub(crate) outputs: usize,
    pub(crate) parameters: usize,
    pub(crate) x_scale: f64,
    pub(crate) embedded: bool,
    /// A layered network's architecture spec (docs/cnn.md), every size filled in; absent for a
    /// dense MLP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) architecture: Option<serde_json::Value>,
}

/// The configuration a simulation ran with (η and B with their sources).
#[derive(Serialize)]
pub struct ConfigDoc {
    pub(crate) lr: f64,
    pub(crate) lr_source: &'static str,
    pub(crate) batch: usize,
    pub(crate) batch_source: &'static str,
    pub(crate) sampling: &'static str,
    pub(crate) p: f64,
    pub(crate) steps: u64,
    pub(crate) trials: usize,
    pub(crate) k: Vec<usize>,
    pub(crate) seed: u64,
    pub(crate) deltas: Vec<f64>,
    pub(crate) record_points: usize,
    pub(crate) escape_distance_factor: f64,
    pub(crate) escape_loss_factor: f64,
}

/// The fitted growth of one moment E‖u_t‖^k next to its prediction.
#[derive(Serialize)]
pub struct MomentDoc {
    pub(crate) k: usize,
    /// log E‖u_t‖^k (natural log, trial mean) at `times`.
    pub(crate) log_mean: Vec<f64>,
    pub(crate) fit: GrowthFit,
    /// λ_max(𝒬_k), when computed.
    pub(crate) predicted_lambda_max: Option<f64>,
    /// "bounded", "grows" or null.
    pub(crate) expectation: Option<&'static str>,
    /// Where the expectation comes from.
    pub(crate) expectation_source: String,
    pub(crate) comparison: &'static str,
}

/// The linearized recursion's curves and fits.
#[derive(Serialize)]
pub struct LinearizedDoc {
    pub(crate) times: Vec<u64>,
    pub(crate) moments: Vec<MomentDoc>,
    /// log‖u_t‖ of trial 0 (its batches are those of the true-SGD runs).
    pub(crate) trial0_log_norm: Vec<f64>,
    /// log tr 𝒬_r^t(Σ̂_0), the exact E‖u_t‖² over batches given the same starts (small problems).
    pub(crate) exact_log_second_moment: Option<Vec<f64>>,
    /// Per-step rate of that exact curve over the fit window.
    pub(crate) exact_window_rate: Option<f64>,
    pub(crate) seconds: f64,
    /// Wall time per 1000 steps per trial, amortized over the parallel trials.
    pub(crate) seconds_per_1000_steps_per_trial: f64,
    /// Wall time of 1000 steps of all R trials.
    pub(crate) seconds_per_1000_steps: f64,
}

/// One true-SGD run from θ* + δ·u_0 next to its prediction.
#[derive(Serialize)]
pub struct TrueSgdDoc {
    #[serde(flatten)]
    pub(crate) run: TrueSgdRun,
    /// δ·‖u_T‖ of linearized trial 0 (the same batches): the linear prediction of the final distance.
    pub(crate) linear_final_distance: Option<f64>,
    pub(crate) prediction: &'static str,
    pub(crate) comparison: &'static str,
}

/// The residual forcing at θ* (THEORY T5 failure mode (i)).
#[derive(Serialize)]
pub struct ForcingDoc {
    /// η·√E‖g_ξ(θ*)‖²: the RMS step SGD takes at θ* itself (0 at an exact interpolating minimum).
    pub(crate) kick_per_step: f64,
    /// kick·√T: the random-walk scale of that noise over the run.
    pub(crate) kick_random_walk: f64,
}

/// Wall-clock seconds of each phase.
#[derive(Serialize)]
pub struct TimingDoc {
    pub(crate) load: f64,
    pub(crate) prediction: f64,
    pub(crate) linearized: f64,
    pub(crate) true_sgd: f64,
    pub(crate) total: f64,
}

/// The simulation report (`flatcert.simulate/1`): read it with its methods, serialize it with
/// [`SimulateDoc::to_json`], render it with [`super::render_text`] and [`super::render_plot`].
#[derive(Serialize)]
pub struct SimulateDoc {
    pub(crate) schema: &'static str,
    pub(crate) flatcert_version: &'static str,
    pub(crate) inputs: InputsDoc,
    pub(crate) config: ConfigDoc,
    pub(crate) prediction: Prediction,
    pub(crate) linearized: LinearizedDoc,
    pub(crate) true_sgd: Vec<TrueSgdDoc>,
    /// Residual forcing at θ* (THEORY T5 failure mode (i)).
    pub(crate) forcing: ForcingDoc,
    pub(crate) notes: Vec<String>,
    pub(crate) timing: TimingDoc,
    /// The prediction for the true-SGD runs (also in each run's record).
    #[serde(skip)]
    pub(crate) true_prediction: &'static str,
}

/// Compare a fitted rate interval with an expectation.
fn compare(fit: &GrowthFit, expectation: Option<&str>) -> &'static str {
    let Some(rate) = fit.rate else {
        return "no fit";
    };
    let (lo, hi) = fit.ci.unwrap_or((rate, rate));
    match expectation {
        Some("bounded") if lo > 1.0 => "inconsistent",
        Some("bounded") => "consistent",
        Some("grows") if lo > 1.0 => "consistent",
        Some("grows") if hi < 1.0 => "growth not observed",
        Some(_) => "inconclusive",
        None => "no prediction",
    }
}

/// What the theory says about the k-th moment at (η, B).
fn expectation(pred: &Prediction, k: usize) -> (Option<&'static str>, String) {
    if let Some(v) = pred.moment(k).and_then(|m| m.lambda_max)
        && k > 2
    {
        return if v > 1.0 {
            (
                Some("grows"),
                format!("λ_max(𝒬_{k}) = {v:.9} > 1 (exact, T6)"),
            )
        } else {
            (
                Some("bounded"),
                format!("λ_max(𝒬_{k}) = {v:.9} ≤ 1 (exact, T6)"),
            )
        };
    }
    if pred.certified_unstable() {
        return (
            Some("grows"),
            if k == 2 {
                "η* verdict: certified unstable (T5f)".into()
            } else {
                format!("η* verdict: certified unstable (T5f), and {k}-stable ⇒ 2-stable (T6)")
            },
        );
    }
    if pred.gd.as_ref().is_some_and(|g| g.verdict == "unstable") {
        return (
            Some("grows"),
            "T4: λ_max(G) > 2/η, the first moment already grows (necessary for every k)".into(),
        );
    }
    if pred.certified_stable() {
        return if k == 2 {
            (Some("bounded"), "η* verdict: certified stable (T5f)".into())
        } else {
            (
                None,
                format!(
                    "2-stable does not imply {k}-stable (η*_{k} ≤ η*_2, T6); λ_max(𝒬_{k}) not exact here"
                ),
            )
        };
    }
    match &pred.mean_square {
        Some(_) => (None, "η* verdict inconclusive at this η".into()),
        None if pred.gd.is_some() => (
            None,
            "η* not computed; the T4 condition holds but is only necessary".into(),
        ),
        None => (None, "not computed".into()),
    }
}

impl SimulateDoc {
    /// The predictions (T4, T5(f), T6) the simulation was compared with.
    pub fn prediction(&self) -> &Prediction {
        &self.prediction
    }

    /// η (theory convention) and B of the run.
    pub fn lr_and_batch(&self) -> (f64, usize) {
        (self.config.lr, self.config.batch)
    }

    /// Per moment order k: the fitted per-step growth rate of E‖u_t‖^k (estimate) and how it
    /// compares with the prediction (`consistent`, `inconsistent`, …).
    pub fn growth(&self) -> Vec<(usize, Option<f64>, &'static str)> {
        self.linearized
            .moments
            .iter()
            .map(|m| (m.k, m.fit.rate, m.comparison))
            .collect()
    }

    /// Per δ: whether the true-SGD run escaped and how that compares with the prediction.
    pub fn true_sgd(&self) -> Vec<(f64, bool, &'static str)> {
        self.true_sgd
            .iter()
            .map(|d| (d.run.delta, d.run.escaped, d.comparison))
            .collect()
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Internal(format!("serializing the report: {e}")))
    }
}

/// Simulate linearized and true SGD near the minimum of a dense `loaded` at the plan's (η, B) and
/// compare with the predictions of T4–T6 (THEORY.md §0, T4, T5, T6). `loaded` needs targets.
pub fn run(loaded: &Problem, args: &SimulatePlan) -> Result<SimulateDoc> {
    let t_all = Instant::now();
    let mlp = &loaded.mlp;
    let inputs = InputsDoc {
        model: loaded.model_file.clone(),
        x: loaded.x_file.clone(),
        y: loaded.y_file.clone(),
        activation: mlp.activation().name(),
        activation_source: loaded.activation_source.as_str(),
        widths: mlp.widths(),
        n: loaded.data.len(),
        outputs: mlp.output_dim(),
        parameters: mlp.num_params(),
        x_scale: loaded.x_scale,
        embedded: loaded.embedded,
        architecture: None,
    };
    let subject = Subject {
        net: mlp,
        data: &loaded.data,
        metadata: &loaded.metadata,
        inputs,
        notes: loaded.default_activation_notes(),
    };
    run_network(subject, args, t_all)
}

/// [`run`] on a layered (e.g. convolutional) network (issue 14, THEORY.md §7(c)): the same
/// recursion, true SGD, predictions and document; `inputs.architecture` records the spec and
/// the notes say what differs ([`super::layered::layered_simulation_notes`]).
pub fn run_layered(p: &NetProblem, args: &SimulatePlan) -> Result<SimulateDoc> {
    let t_all = Instant::now();
    let m = crate::measure::layered::measurement_inputs(p, &[]);
    let inputs = InputsDoc {
        model: m.model,
        x: m.x,
        y: m.y,
        activation: m.activation,
        activation_source: "architecture",
        widths: m.widths,
        n: m.n,
        outputs: p.outputs(),
        parameters: m.parameters,
        x_scale: m.x_scale,
        embedded: p.embedded,
        architecture: m.architecture,
    };
    let subject = Subject {
        net: &p.net,
        data: &p.data,
        metadata: &p.metadata,
        inputs,
        notes: super::layered::layered_simulation_notes(&p.net),
    };
    run_network(subject, args, t_all)
}

/// [`run`] or [`run_layered`], by the kind of the problem.
pub fn run_loaded(loaded: &Loaded, args: &SimulatePlan) -> Result<SimulateDoc> {
    match loaded {
        Loaded::Dense(p) => run(p, args),
        Loaded::Layered(p) => run_layered(p, args),
    }
}

/// What a session reads of a problem of either kind.
struct Subject<'p, N> {
    net: &'p N,
    data: &'p Dataset,
    metadata: &'p BTreeMap<String, String>,
    inputs: InputsDoc,
    /// Notes that open the document (before the prediction's).
    notes: Vec<String>,
}

/// The one session for every network kind ([`SimNetwork`]).
fn run_network<N: SimNetwork>(
    subject: Subject<'_, N>,
    args: &SimulatePlan,
    t_all: Instant,
) -> Result<SimulateDoc> {
    args.validate()?;
    let max_memory = args.memory_limit_bytes();
    let Subject {
        net,
        data,
        metadata,
        inputs,
        notes: front_notes,
    } = subject;
    if !data.has_targets() {
        return Err(Error::invalid_argument(
            "problem",
            "simulate needs targets (y) of the training data",
        ));
    }
    let LrAndBatch {
        lr: eta,
        lr_source,
        batch,
        batch_source,
    } = resolve_hyper(args, metadata, net.outputs())?;
    let n = data.len();
    if batch > n {
        return Err(Error::invalid_argument(
            "batch",
            format!("batch size {batch} is outside 1..={n} (n = {n} samples, model S)"),
        ));
    }
    let sampling = BatchScheme::IidSubsets;
    let p = crate::measure::stability::noise_p(n, batch, TheorySampling::WithoutReplacement)?;
    let sim = net.linearize(data, max_memory)?;
    let t_load = t_all.elapsed().as_secs_f64();

    let total_work = args.steps * (args.trials + args.deltas.len()) as u64;
    let pb = progress::bar(total_work, "simulate", args.quiet);
    let on_step = |k: u64| pb.inc(k);

    // Predictions (Gram path) and the linearized trials run side by side.
    let ((pred, t_pred), (lin, t_lin)) = rayon::join(
        || {
            let t = Instant::now();
            let r = match args.predict.options() {
                Some(mut opts) => {
                    opts.gram.memory_limit_bytes = max_memory;
                    predict(
                        net,
                        data,
                        eta,
                        batch,
                        TheorySampling::WithoutReplacement,
                        &args.k,
                        &opts,
                    )
                }
                None => not_computed(
                    net,
                    data,
                    eta,
                    batch,
                    TheorySampling::WithoutReplacement,
                    &args.k,
                    "predictions not requested (--predict none)".into(),
                ),
            };
            (r, t.elapsed().as_secs_f64())
        },
        || {
            let t = Instant::now();
            let r = sim.run(
                eta,
                batch,
                sampling,
                args.steps,
                args.trials,
                args.seed,
                RECORD_POINTS,
                &on_step,
            );
            (r, t.elapsed().as_secs_f64())
        },
    );
    let pred = pred?;
    let lin: LinearizedRun = lin?;

    // True SGD from θ* + δ·u_0 with u_0 and the batches of trial 0.
    let t = Instant::now();
    let (u0, _, _) = sim.trial_start(args.seed, 0)?;
    let opts = TrueSgdOptions {
        lr: eta,
        batch,
        sampling,
        seed: args.seed,
        trial: 0,
        distance_factor: DISTANCE_FACTOR,
        loss_factor: LOSS_FACTOR,
    };
    let runs: Vec<TrueSgdRun> = args
        .deltas
        .par_iter()
        .map(|&delta| run_true_sgd(net, data, &u0, delta, &lin.times, &opts, &on_step))
        .collect::<crate::Result<_>>()?;
    let kick = forcing_kick(net, data, eta, p)?;
    let t_true = t.elapsed().as_secs_f64();
    pb.finish_and_clear();

    // Fits and comparisons.
    let log_norms = lin.log_norms();
    let gopts = GrowthOptions {
        seed: args.seed,
        ..GrowthOptions::default()
    };
    let mut moments = Vec::new();
    for &k in &args.k {
        let fit = fit_growth(&lin.times, &log_norms, k, &gopts)?;
        let (exp, source) = expectation(&pred, k);
        moments.push(MomentDoc {
            k,
            log_mean: log_moment_curve(&log_norms, k),
            comparison: compare(&fit, exp),
            fit,
            predicted_lambda_max: pred.moment(k).and_then(|m| m.lambda_max),
            expectation: exp,
            expectation_source: source,
        });
    }
    let mut notes = front_notes;
    notes.extend(pred.notes.iter().cloned());
    let exact = match &pred.model {
        Some(model) if model.rank() > 0 => {
            let r = model.rank() as f64;
            let cost = (model.y.nrows() as f64) * r * r * args.steps as f64;
            if cost <= EXACT_CURVE_BUDGET {
                // The starts are regenerated from their seeded streams (not stored by the run).
                let regenerated = (0..lin.trials.len())
                    .map(|r| sim.trial_start(args.seed, r).map(|(_, w, norm)| (w, norm)))
                    .collect::<crate::Result<Vec<_>>>()?;
                let starts: Vec<(&[f64], f64)> = regenerated
                    .iter()
                    .map(|(w, norm)| (w.as_slice(), *norm))
                    .collect();
                let s0 = reduced_start_moment(model, &starts)?;
                Some(reduced_log_trace_curve(model, eta, p, &s0, &lin.times)?)
            } else {
                notes.push(format!(
                    "exact E‖u_t‖² curve skipped: nC·r²·T = {cost:.1e} > {EXACT_CURVE_BUDGET:.0e}"
                ));
                None
            }
        }
        _ => None,
    };
    let exact_rate = exact
        .as_ref()
        .and_then(|c| curve_rate(&lin.times, c, gopts.window_start));

    let trial0 = log_norms.first().cloned().unwrap_or_default();
    let gd_unstable = pred.gd.as_ref().is_some_and(|g| g.verdict == "unstable");
    let predicted_unstable = pred.certified_unstable() || gd_unstable;
    let true_pred = if pred.certified_stable() {
        "stays (certified mean-square stable)"
    } else if pred.certified_unstable() {
        "escapes (certified mean-square unstable)"
    } else if gd_unstable {
        "escapes (T4: the mean already grows)"
    } else {
        "no certified prediction"
    };
    let true_docs: Vec<TrueSgdDoc> = runs
        .into_iter()
        .map(|run| {
            let linear = trial0
                .get(run.times.len().saturating_sub(1))
                .map(|l| run.delta * l.exp());
            let comparison = match (pred.certified_stable(), predicted_unstable, run.escaped)
            {
                (true, _, false) | (_, true, true) => "consistent",
                (true, _, true) => "escaped although stable (δ beyond the linear regime?)",
                (_, true, false) => {
                    "no escape observed (δ beyond the linear regime, or growth only along rare paths)"
                }
                _ => "no prediction",
            };
            TrueSgdDoc {
                linear_final_distance: linear,
                prediction: true_pred,
                comparison,
                run,
            }
        })
        .collect();

    let steps_total = args.steps as f64 * args.trials as f64;
    let per_trial_1000 = t_lin / steps_total * 1000.0;
    let per_1000 = t_lin / args.steps as f64 * 1000.0;
    let doc = SimulateDoc {
        schema: "flatcert.simulate/1",
        flatcert_version: env!("CARGO_PKG_VERSION"),
        inputs,
        config: ConfigDoc {
            lr: eta,
            lr_source,
            batch,
            batch_source,
            sampling: "iid_subsets (model S)",
            p,
            steps: args.steps,
            trials: args.trials,
            k: args.k.clone(),
            seed: args.seed,
            deltas: args.deltas.clone(),
            record_points: RECORD_POINTS,
            escape_distance_factor: DISTANCE_FACTOR,
            escape_loss_factor: LOSS_FACTOR,
        },
        linearized: LinearizedDoc {
            times: lin.times.clone(),
            moments,
            trial0_log_norm: trial0.clone(),
            exact_log_second_moment: exact,
            exact_window_rate: exact_rate,
            seconds: t_lin,
            seconds_per_1000_steps_per_trial: per_trial_1000,
            seconds_per_1000_steps: per_1000,
        },
        true_sgd: true_docs,
        forcing: ForcingDoc {
            kick_per_step: kick,
            kick_random_walk: kick * (args.steps as f64).sqrt(),
        },
        notes,
        timing: TimingDoc {
            load: t_load,
            prediction: t_pred,
            linearized: t_lin,
            true_sgd: t_true,
            total: t_all.elapsed().as_secs_f64(),
        },
        prediction: pred,
        true_prediction: true_pred,
    };
    Ok(doc)
}
