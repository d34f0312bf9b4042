//! The human-readable report of a simulation and its SVG figure.

use std::fmt::Write;

use super::Prediction;
use super::plan::{DISTANCE_FACTOR, LOSS_FACTOR};
use super::session::{MomentDoc, SimulateDoc, TrueSgdDoc};
use crate::error::Result;
use crate::render::figures::simulation::{Panel, Series, render_svg};

/// The report printed by `flatcert simulate` (one line per fact, notes last).
pub fn render_text(doc: &SimulateDoc) -> String {
    let mut out = String::new();
    macro_rules! say {
        ($($t:tt)*) => {{
            // Writing to a String cannot fail.
            let _ = writeln!(out, $($t)*);
        }};
    }
    let i = &doc.inputs;
    let args = &doc.config;
    let (eta, lr_source, batch, batch_source, p) = (
        args.lr,
        args.lr_source,
        args.batch,
        args.batch_source,
        args.p,
    );
    let n = i.n;
    let t_lin = doc.linearized.seconds;
    let t_true = doc.timing.true_sgd;
    let per_trial_1000 = doc.linearized.seconds_per_1000_steps_per_trial;
    let per_1000 = doc.linearized.seconds_per_1000_steps;
    let pred = &doc.prediction;
    let moments = &doc.linearized.moments;
    let exact_rate = doc.linearized.exact_window_rate;
    let true_pred = doc.true_prediction;
    let kick = doc.forcing.kick_per_step;
    let true_docs = &doc.true_sgd;
    let notes = &doc.notes;
    say!(
        "flatcert simulate — model {} ({}), data {} (n = {n})",
        i.model.path,
        crate::measurements::network_label(
            &i.activation,
            &i.widths,
            i.parameters,
            i.architecture.as_ref()
        ),
        i.x.path
    );
    say!(
        "η = {eta} ({lr_source}), B = {batch} ({batch_source}), model S (fresh uniform B-subset per step), p = {p:.6}; T = {}, R = {}, seed {}",
        args.steps,
        args.trials,
        args.seed
    );
    say!(
        "prediction ({}, {:.1} s):",
        if pred.rank.is_some() {
            "Gram path"
        } else {
            "none"
        },
        pred.seconds
    );
    if let Some(ms) = &pred.mean_square {
        say!(
            "  T5(f) η* ∈ [{}, {}] → {} at η = {eta} (certified margin η*/η − 1 ≥ {})",
            fmt_opt(ms.eta_star_lower, 6),
            fmt_opt(ms.eta_star_upper, 6),
            ms.verdict,
            ms.margin
                .map_or("+∞".into(), |m| format!("{:+.2}%", 100.0 * m))
        );
    }
    if let Some(gd) = &pred.gd {
        say!(
            "  T4 (GD) η_GD* ∈ [{:.6}, {}] → {}",
            gd.eta_star_lower,
            fmt_opt(gd.eta_star_upper, 6),
            gd.verdict
        );
    }
    if let (Some(l), Some(r)) = (pred.minimum_loss, pred.max_residual) {
        say!(
            "  at θ*: ℒ = {l:.3e}, max_i‖res_i‖ = {r:.3e} (rank r = {})",
            pred.rank.map_or("—".into(), |r| r.to_string())
        );
    }
    say!(
        "(a) linearized u_(t+1) = (I − ηH_ξ)u_t, matrix-free: {} trials × {} steps in {t_lin:.2} s ({per_1000:.3} s per 1000 steps of all trials, {:.4} s per 1000 steps per trial amortized; {} threads{})",
        args.trials,
        args.steps,
        per_trial_1000,
        rayon::current_num_threads(),
        if pred.rank.is_some() {
            ", alongside the prediction"
        } else {
            ""
        }
    );
    for m in moments {
        let ci = m.fit.ci.map_or("no interval (R = 1)".into(), |(a, b)| {
            format!("95% CI [{a:.6}, {b:.6}]")
        });
        say!(
            "  k = {}: E‖u_t‖^{} rate/step {} ({ci}, fit t ∈ [{}, {}]); typical {}",
            m.k,
            m.k,
            fmt_opt(m.fit.rate, 6),
            m.fit.window.0,
            m.fit.window.1,
            fmt_opt(m.fit.typical_rate, 6)
        );
        if let Some(mp) = pred.moment(m.k) {
            match mp.lambda_max {
                Some(v) => say!(
                    "         λ_max(𝒬_{}) = {v:.9} ({}){}",
                    m.k,
                    mp.method,
                    if m.k == 2 {
                        format!(
                            " — diagnostic: 1 − λ_max(𝒬_r) ≤ 2ηλ_min(K_r) = {:.2e}; it tracks the flattest direction and depends on τ",
                            flatcert_bounds::t5::q_r_floor_gap(
                                eta,
                                pred.lambda_min_kept.unwrap_or(0.0)
                            )
                        )
                    } else {
                        String::new()
                    }
                ),
                None => say!("         λ_max(𝒬_{}): {}", m.k, mp.note),
            }
        }
        if m.k == 2
            && let Some(r) = exact_rate
        {
            let inside = m.fit.ci.is_some_and(|(a, b)| a <= r && r <= b);
            say!(
                "         exact E over batches (same starts): rate {r:.6} over the window ({} the CI)",
                if inside { "inside" } else { "outside" }
            );
        }
        say!(
            "         prediction: {} ({}) → {}",
            m.expectation.unwrap_or("none"),
            m.expectation_source,
            m.comparison
        );
    }
    say!(
        "(b) true SGD from θ* + δ·u_0 (batches of trial 0; escape = distance > {DISTANCE_FACTOR}× start or loss > {LOSS_FACTOR}× start), {t_true:.2} s; prediction: {true_pred}"
    );
    if kick > 0.0 {
        say!(
            "  residual forcing at θ* (T5 failure mode (i)): η·√E‖g_ξ‖² = {kick:.3e} per step, ×√T = {:.3e}; δ near or below that is dominated by it",
            kick * (args.steps as f64).sqrt()
        );
    }
    for d in true_docs {
        let r = &d.run;
        let last_d = r.distance.last().copied().unwrap_or(f64::NAN);
        let last_l = r.loss.last().copied().unwrap_or(f64::NAN);
        let escaped = match (r.escape_step, r.escape_reason) {
            (Some(s), Some(why)) => format!("ESCAPED at step {s} ({why:?})"),
            _ => "stays".into(),
        };
        say!(
            "  δ = {:<8e} ‖θ_T − θ*‖/δ = {:.3e} (linear {:.3e}), ℒ_T/ℒ_0 = {:.3e}, max distance/δ = {:.3e}: {escaped} → {}",
            r.delta,
            last_d / r.delta,
            d.linear_final_distance.map_or(f64::NAN, |v| v / r.delta),
            last_l / r.start_loss,
            r.max_distance_ratio,
            d.comparison
        );
    }
    for note in notes {
        say!("note: {note}");
    }

    out
}

/// The SVG figure of a simulation: E‖u_t‖^k with its fit and prediction, and the true-SGD
/// distances against t.
pub fn render_plot(doc: &SimulateDoc) -> Result<String> {
    build_plot(
        &doc.linearized.times,
        &doc.linearized.moments,
        doc.linearized.exact_log_second_moment.as_ref(),
        &doc.linearized.trial0_log_norm,
        &doc.true_sgd,
        &doc.prediction,
        doc.config.lr,
        doc.config.batch,
        doc.config.trials,
    )
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.prec$}"))
}

const LN10: f64 = std::f64::consts::LN_10;

#[allow(clippy::too_many_arguments)]
fn build_plot(
    times: &[u64],
    moments: &[MomentDoc],
    exact: Option<&Vec<f64>>,
    trial0: &[f64],
    runs: &[TrueSgdDoc],
    pred: &Prediction,
    eta: f64,
    batch: usize,
    trials: usize,
) -> Result<String> {
    let tf: Vec<f64> = times.iter().map(|&t| t as f64).collect();
    let last = tf.last().copied().unwrap_or(1.0);
    let mut top = Vec::new();
    for (idx, m) in moments.iter().enumerate() {
        top.push(Series {
            label: format!("E‖u_t‖^{} (mean of {trials} trials)", m.k),
            points: tf
                .iter()
                .zip(&m.log_mean)
                .map(|(&t, &y)| (t, y / LN10))
                .collect(),
            dashed: false,
            colour: idx,
        });
        if let (Some(a), Some(b)) = (m.fit.intercept, m.fit.slope) {
            let t0 = m.fit.window.0 as f64;
            top.push(Series {
                label: format!(
                    "fit over t ≥ {}: log-linear, rate {:.6}",
                    m.fit.window.0,
                    b.exp()
                ),
                points: vec![(t0, (a + b * t0) / LN10), (last, (a + b * last) / LN10)],
                dashed: true,
                colour: idx,
            });
            if let Some(lam) = m.predicted_lambda_max
                && lam > 0.0
            {
                let y0 = a + b * t0;
                top.push(Series {
                    label: format!("prediction λ_max(𝒬_{})^t = {lam:.6}^t", m.k),
                    points: vec![
                        (t0, y0 / LN10),
                        (last, (y0 + lam.ln() * (last - t0)) / LN10),
                    ],
                    dashed: true,
                    colour: 6,
                });
            }
        }
    }
    if let Some(ex) = exact {
        top.push(Series {
            label: "exact E‖u_t‖² over batches (same starts, 𝒬_r)".into(),
            points: tf.iter().zip(ex).map(|(&t, &y)| (t, y / LN10)).collect(),
            dashed: true,
            colour: 2,
        });
    }
    let verdict = pred
        .mean_square
        .as_ref()
        .map_or("no verdict".to_string(), |m| m.verdict.clone());
    top.push(Series {
        label: format!("rate 1 = stability boundary (T5f at η: {verdict})"),
        points: vec![(0.0, 0.0), (last, 0.0)],
        dashed: true,
        colour: 7,
    });
    let mut bottom = Vec::new();
    for (idx, r) in runs.iter().enumerate() {
        bottom.push(Series {
            label: format!(
                "δ = {:e}: ‖θ_t − θ*‖/δ{}",
                r.run.delta,
                if r.run.escaped { " (escaped)" } else { "" }
            ),
            points: r
                .run
                .times
                .iter()
                .zip(&r.run.distance)
                .map(|(&t, &d)| (t as f64, (d / r.run.delta).log10()))
                .collect(),
            dashed: false,
            colour: [0, 2, 3, 4, 5][idx % 5],
        });
    }
    bottom.push(Series {
        label: "linearization ‖u_t‖ (trial 0, same batches)".into(),
        points: tf
            .iter()
            .zip(trial0)
            .map(|(&t, &l)| (t, l / LN10))
            .collect(),
        dashed: true,
        colour: 6,
    });
    bottom.push(Series {
        label: format!("escape threshold: {DISTANCE_FACTOR}× the start distance"),
        points: vec![
            (0.0, DISTANCE_FACTOR.log10()),
            (last, DISTANCE_FACTOR.log10()),
        ],
        dashed: true,
        colour: 1,
    });
    let panels = [
        Panel {
            title: format!(
                "Linearized SGD u_(t+1) = (I − ηH_ξ)u_t, η = {eta}, B = {batch} (model S)"
            ),
            y_label: "E‖u_t‖^k (log scale)".into(),
            series: top,
        },
        Panel {
            title: "True SGD from θ* + δ·u_0 (batches of trial 0)".into(),
            y_label: "‖θ_t − θ*‖ / δ (log scale)".into(),
            series: bottom,
        },
    ];
    render_svg(&panels, 1000, 520)
}
