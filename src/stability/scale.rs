//! The stability sweep beyond the Gram limit (issue 11 item 4): η*(B) brackets for every B from
//! THEORY T5(i) (lower end, with the confidence of the randomized λ_max(G) bound of §3 item 8)
//! and T5(g) (upper end), and the T4/T5 verdicts at η, computed by the library
//! ([`crate::certify::scale`]) with the rules of the bounds crate. This file only maps them
//! onto the stability document.

use std::time::Instant;

use crate::certify::scale::scale_row;
use crate::certify::summary::status_label;
use crate::error::Result;
use crate::measure::lanczos::UpperBoundOptions;
use crate::measure::names;
use crate::measure::stability::{Sampling, Verdict};
use crate::progress;
use crate::render::figures::stability::{PlotMarker, PlotRow, StabilityPlot};
use flatcert_bounds::Value;
use flatcert_bounds::t4::GdStatus;

use super::plan::SweepPlan;
use super::{
    Bracket, EtaInfo, Marker, MeanSquareBracket, Row, RowVerdict, STABILITY_SCHEMA, StabilityDoc,
    verdict_of,
};

/// What [`document`] needs from the shared part of `stability_document`.
pub(super) struct ScaleInputs<'a> {
    pub args: &'a SweepPlan,
    pub loaded: &'a dyn super::subject::Subject,
    pub sampling: Sampling,
    pub batches: Vec<usize>,
    pub eta: Option<EtaInfo>,
    pub marker_batch: Option<usize>,
    pub notes: Vec<String>,
    pub t0: Instant,
}

fn side(v: &Value, lower: bool) -> Option<f64> {
    let x = if lower { v.lower() } else { v.upper() };
    let has = if lower { v.has_lower() } else { v.has_upper() };
    (has && x.is_finite()).then_some(x)
}

fn bracket(v: &Value) -> Bracket {
    Bracket {
        lower: side(v, true).filter(|x| *x > 0.0),
        upper: side(v, false),
        confidence: v.confidence,
    }
}

/// The stability document at scale.
pub(super) fn document(inp: ScaleInputs<'_>) -> Result<(StabilityDoc, StabilityPlot)> {
    let ScaleInputs {
        args,
        loaded,
        sampling,
        batches,
        eta,
        marker_batch,
        mut notes,
        t0,
    } = inp;
    let (n, c) = (loaded.n(), loaded.outputs());
    let opts = UpperBoundOptions {
        delta: args.delta,
        max_products: args.max_products,
        seed: args.seed,
        rel_gap: 1e-4,
    };
    if !args.quiet {
        eprintln!(
            "nC = {} > --gram-limit {}: η*(B) from the matrix-free T5(i) and T5(g) (one \
             per-sample pass and at most {} operator products)",
            n * c,
            args.gram_limit,
            args.max_products
        );
    }
    let residual = loaded.residual()?;
    notes.extend(loaded.jacobian_notes(residual.as_ref()));
    let ev = loaded.scale_evidence(&opts, args.memory_limit_bytes())?;
    let eta_theory = eta.as_ref().map(|e| e.theory);
    let mut sweep = batches.clone();
    if let Some(b) = marker_batch
        && !sweep.contains(&b)
    {
        sweep.push(b);
    }
    let pb = progress::bar(sweep.len() as u64, "η*(B)", args.quiet);
    let mut scale_rows = Vec::with_capacity(sweep.len());
    for &b in &sweep {
        let t = Instant::now();
        scale_rows.push((
            scale_row(&ev, c, loaded.activation(), n, b, sampling, eta_theory)?,
            t.elapsed(),
        ));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let sharp = ev
        .quantities
        .get(names::GAUSS_NEWTON_LAMBDA_MAX_LOWER)
        .map(|q| q.value);
    let sharp_up = ev.quantities.get(names::GAUSS_NEWTON_LAMBDA_MAX_UPPER);
    let lambda = Bracket {
        lower: sharp,
        upper: sharp_up.map(|q| q.value),
        // Only the upper end rests on the randomized bound; the lower end is a Ritz value.
        confidence: sharp_up
            .and_then(|q| q.confidence)
            .map(|c| flatcert_bounds::Confidence {
                sides: flatcert_bounds::Sides::Upper,
                ..c
            }),
    };
    let verdict_of_row = |r: &crate::certify::scale::ScaleRow| {
        let (t5, t4) = (r.t5.as_ref()?, r.t4.as_ref());
        let st = t5.status();
        let margin = t5
            .conclusion("relative_margin")
            .map(|c| c.value)
            .filter(Value::has_lower)
            .map(|v| v.lower());
        Some(RowVerdict {
            eta: eta_theory?,
            mean_square: Verdict::from_status(st).name(),
            certified_relative_margin: margin.filter(|m| m.is_finite()),
            gd: t4
                .map_or(GdStatus::Inconclusive, |v| {
                    GdStatus::from_status(v.status())
                })
                .name(),
            // Either verdict of the row may rest on the randomized bound.
            confidence: flatcert_bounds::Confidence::combine(
                t5.confidence(),
                t4.and_then(|v| v.confidence()),
            ),
        })
    };
    let mut rows = Vec::new();
    let mut marker = None;
    for (r, secs) in &scale_rows {
        let es = bracket(&r.eta_star);
        let d_lo = es.upper.map(|u| 1.0 / u);
        let ms = MeanSquareBracket {
            lower: es.lower,
            upper: es.upper,
            kind: "matrix-free bracket",
            lambda_max_dtilde: Bracket {
                lower: d_lo,
                upper: es.lower.map(|l| 1.0 / l),
                confidence: es.confidence,
            },
            method: "T5(i) sufficient (lower end) + T5(g) necessary tests (upper end)",
            rank: 0,
            cone_steps: 0,
            truncation_allowance: 0.0,
            rounding_allowance_assumed: 0.0,
            confidence: r.eta_star.lower_confidence(),
        };
        let verdict = verdict_of_row(r);
        if Some(r.batch) == marker_batch
            && let (Some(e), Some(v)) = (&eta, &verdict)
        {
            marker = Some(Marker {
                batch: r.batch,
                eta: e.theory,
                source: "checkpoint metadata (training B and η)".into(),
                verdict: v.mean_square,
                certified_relative_margin: v.certified_relative_margin,
                mean_square_critical_lr: es.clone(),
            });
        }
        if batches.contains(&r.batch) {
            rows.push(Row {
                batch: r.batch,
                p: r.p,
                gd_critical_lr: r.eta_gd.as_ref().map_or(
                    Bracket {
                        lower: None,
                        upper: None,
                        confidence: None,
                    },
                    bracket,
                ),
                mean_square_critical_lr: ms,
                k_moments: serde_json::Map::new(),
                verdict,
                seconds: secs.as_secs_f64(),
            });
        }
    }
    rows.sort_by_key(|r| r.batch);
    notes.push(format!(
        "at scale (nC = {} > --gram-limit {}): η*(B) ∈ [η_suff(B), min(2/lower(λ_max(G)), the Σ = I \
         bound)] (THEORY T5(i), T5(g)); the lower ends and every certified verdict rest on the \
         randomized upper bound of λ_max(G) and hold with {} (THEORY §3 item 8; seed {}, {} \
         products); k-th moment rates (k ≥ 4) need the Gram path",
        n * c,
        args.gram_limit,
        status_label("", sharp_up.and_then(|q| q.confidence)).trim(),
        opts.seed,
        ev.products
    ));
    if !residual.as_ref().is_some_and(|r| r.hessian_is_gauss_newton) {
        notes.push(
            "Gauss–Newton model: G replaced the Hessian H in every verdict (exact only at an \
             interpolating minimum; THEORY T5 failure mode (i))"
                .into(),
        );
    }
    notes.push(
        "the theory assumes batches independent across steps (model S/S′); per-epoch \
         reshuffling is not covered"
            .into(),
    );
    notes.extend(loaded.embedded_note());
    let plot = StabilityPlot {
        title: "Where SGD can stay: mean-square stable region in the (B, η) plane".into(),
        subtitle: format!(
            "{} — n = {n}, C = {c}, matrix-free (T5(i), T5(g)), sampling {}",
            loaded.model_path(),
            sampling.name()
        ),
        rows: rows
            .iter()
            .map(|row| PlotRow {
                batch: row.batch,
                eta_lower: row.mean_square_critical_lr.lower,
                eta_upper: row.mean_square_critical_lr.upper,
                eta_k: None,
                verdict: row.verdict.as_ref().map(|v| verdict_of(v.mean_square)),
            })
            .collect(),
        gd: rows
            .first()
            .and_then(|r| r.gd_critical_lr.lower.zip(r.gd_critical_lr.upper)),
        k: 4,
        eta: eta_theory,
        marker: marker.as_ref().map(|m| PlotMarker {
            batch: m.batch,
            eta: m.eta,
            verdict: verdict_of(m.verdict),
            label: format!("trained (B = {}, η = {}): {}", m.batch, m.eta, m.verdict),
        }),
        outputs: c,
    };
    let doc = StabilityDoc {
        schema: STABILITY_SCHEMA,
        inputs: loaded.measurement_inputs(&args.k),
        eta,
        n,
        c,
        p: loaded.params(),
        r: None,
        tau: None,
        discarded_mass: None,
        sampling: sampling.name(),
        gauss_newton_lambda_max: lambda,
        residual,
        marker,
        rows,
        notes,
        runtime_seconds: t0.elapsed().as_secs_f64(),
    };
    Ok((doc, plot))
}
