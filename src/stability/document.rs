//! The stability document on the exact Gram path (THEORY.md §4, T4, T5f/h, T6): η*(B) from one
//! eigendecomposition of K for every batch size, the verdicts at η, the refinement of
//! inconclusive verdicts, the k-moment rates and the notes a reader must see.

use std::time::Instant;

use rayon::prelude::*;
use serde_json::Value;

use super::cost::{fmt_bytes, fmt_seconds, step_seconds};
use super::plan::{SweepPlan, default_batches, resolve_eta};
use super::render::fmt_percent;
use super::subject::Subject;
use super::{
    ANNOUNCE_BYTES, ANNOUNCE_SECONDS, Bracket, K_MOMENT_MAX_RANK, K_MOMENT_WORK_LIMIT, Marker,
    MeanSquareBracket, REFINE_SECONDS_LIMIT, ResidualInfo, Row, RowVerdict, SAFE_MEMORY_FRACTION,
    STABILITY_SCHEMA, StabilityDoc, TYPICAL_CONE_STEPS, TYPICAL_LOOSE_STEPS,
};
use crate::error::{Error, Result};
use crate::measure::gram::GramOptions;
use crate::measure::kmoment::k_moment_critical_lr;
use crate::measure::names;
use crate::measure::stability::{
    BracketOptions, CriticalLr, ReducedModel, Sampling, Verdict, critical_lr_sweep, noise_p,
};
use crate::measure::truncation::{Goal, RankBudget};
use crate::model::{Mlp, Params};
use crate::problem::Problem;
use crate::progress;
use crate::quantity::{round_down, round_up};
use crate::render::figures::stability::{PlotMarker, PlotRow, StabilityPlot};

/// Why the exact 𝒬_k cannot be built for (r, n, B, k), or Ok.
fn k_moment_feasible(
    r: usize,
    n: usize,
    batch: usize,
    k: usize,
    sampling: Sampling,
) -> std::result::Result<(), String> {
    if r == 0 {
        return Err("not computed: G = 0 (η*_k = +∞)".into());
    }
    if r > K_MOMENT_MAX_RANK {
        return Err(format!(
            "not computed: r too large (r = {r}; the exact 𝒬_{k} on Sym^{k}(ℝ^r) needs r ≤ \
             {K_MOMENT_MAX_RANK})"
        ));
    }
    let (batches, work) = crate::measure::kmoment::enumeration_work(r, n, batch, k, sampling);
    if work > K_MOMENT_WORK_LIMIT {
        return Err(format!(
            "not computed: too many batches to enumerate ({batches:.3e} batches, ~{work:.1e} \
             operations for the exact 𝒬_{k})"
        ));
    }
    Ok(())
}

/// The `k_moment_critical_lr_k{k}` entry of one row.
fn k_moment_entry(model: &ReducedModel, crit: &CriticalLr, k: usize, sampling: Sampling) -> Value {
    if let Err(why) = k_moment_feasible(model.rank(), model.n, crit.batch, k, sampling) {
        return Value::String(why);
    }
    let Some(eta2_upper) = crit.eta_upper() else {
        return Value::String("not computed: η*_2 has no finite upper end".into());
    };
    match k_moment_critical_lr(model, crit.batch, k, sampling, eta2_upper) {
        Ok(q) => serde_json::json!({
            "value": q.value,
            "lower": q.value,
            "upper": q.value + q.tol,
            "kind": "estimate",
            "tol": q.tol,
            "method": q.method,
            "note": q.note,
        }),
        Err(e) => Value::String(format!("not computed: {e}")),
    }
}

/// T4 at η from the certified λ_max(G) bracket: stable iff upper ≤ 2/η, unstable iff
/// lower > 2/η.
fn gd_verdict(lambda: (f64, f64), eta: f64) -> &'static str {
    flatcert_bounds::t4::gd_status(lambda.0, lambda.1, eta)
        .0
        .name()
}

/// The `mean_square_critical_lr` entry of a row from the library's [`CriticalLr`].
fn ms_bracket(crit: &CriticalLr, rank: usize) -> MeanSquareBracket {
    match &crit.bracket {
        None => MeanSquareBracket {
            lower: None,
            upper: None,
            kind: "vacuous",
            lambda_max_dtilde: Bracket {
                lower: Some(0.0),
                upper: Some(0.0),
                confidence: None,
            },
            method: "theory-T5f",
            rank: 0,
            cone_steps: 0,
            truncation_allowance: 0.0,
            rounding_allowance_assumed: 0.0,
            confidence: None,
        },
        Some(b) => MeanSquareBracket {
            lower: crit.eta_lower(),
            upper: crit.eta_upper(),
            kind: "certified bracket",
            lambda_max_dtilde: Bracket {
                lower: Some(b.lower),
                upper: Some(b.upper),
                confidence: None,
            },
            method: if b.dense.is_some() {
                "dtilde-cone+dense"
            } else {
                "dtilde-cone"
            },
            rank,
            cone_steps: b.steps,
            truncation_allowance: b.truncation_allowance,
            rounding_allowance_assumed: b.phi_allowance,
            confidence: None,
        },
    }
}

/// Residual diagnostics and ‖∇ℒ‖ (with targets).
pub fn residual_info(loaded: &Problem) -> Result<Option<ResidualInfo>> {
    let (mlp, data) = (&loaded.mlp, &loaded.data);
    if !data.has_targets() {
        return Ok(None);
    }
    // One forward pass (blocks of 256, up to REDUCE_GROUP of them in parallel, folded in block
    // order so the result does not depend on the thread count) gives the residuals, the running
    // forward-error bound (THEORY §3 item 1) — a rigorous upper side of max|res|; only a 0 upper
    // side with no possible kink proves H = G (bounds `residual`) — and, by one VJP on the same
    // cache, the block's part of ∇ℒ = (1/n) Σ_i J_iᵀ res_i.
    let (mut max_abs, mut sum_sq, mut max_upper, mut near_kinks) = (0.0f64, 0.0f64, 0.0f64, 0);
    let mut grad = Params::zeros_like(mlp);
    let blocks = data.blocks(256);
    for group in blocks.chunks(crate::measure::hvp::REDUCE_GROUP) {
        let parts: Vec<_> = group
            .par_iter()
            .map(|&(s, e)| {
                let cache = mlp.forward_cache(data.x_block(s, e));
                let fe = crate::measure::forward_error::forward_errors(mlp, &cache);
                let part = data
                    .y_block(s, e)
                    .map(|y| mlp.vjp_params(&cache, &(cache.output() - y)));
                (s, e, cache, fe, part)
            })
            .collect();
        for (s, e, cache, fe, part) in parts {
            near_kinks += fe.near_kinks.len();
            let (Some(y), Some(part)) = (data.y_block(s, e), part) else {
                return Ok(None);
            };
            grad.axpy(1.0, &part);
            for ((a, b), bound) in cache.output().iter().zip(y.iter()).zip(fe.output().iter()) {
                let r = a - b;
                max_abs = max_abs.max(r.abs());
                let err = crate::measure::forward_error::residual_error(*bound, *a, *b);
                max_upper = max_upper.max(r.abs() + err);
                sum_sq += r * r;
            }
        }
    }
    grad.scale(1.0 / data.len() as f64);
    let evidence = flatcert_bounds::residual::ResidualEvidence {
        max_abs: Some(flatcert_bounds::Value::upper_bound(max_upper, 0.0)),
        piecewise_linear: mlp.activation().is_piecewise_linear(),
        near_kink_units: Some(near_kinks),
    };
    Ok(Some(ResidualInfo {
        max_abs_residual: max_abs,
        max_abs_residual_upper: max_upper,
        rms_residual: (sum_sq / data.len() as f64).sqrt(),
        loss_gradient_norm: grad.dot(&grad).sqrt(),
        hessian_is_gauss_newton: evidence.hessian_is_gauss_newton(),
        near_kink_units: near_kinks,
    }))
}

/// The assumed hypotheses behind K that a reader of the brackets must see (THEORY §3 item 1 and
/// Rules; `certify` lists the same ones as `activation_pattern` and `backward_rounding`): the
/// activation pattern at near-kink units, and, for a smooth σ, the a-priori backward rounding.
pub(super) fn jacobian_notes(mlp: &Mlp, residual: Option<&ResidualInfo>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(r) = residual.filter(|r| r.near_kink_units > 0) {
        notes.push(format!(
            "assumed: the activation pattern at {} near-kink units, as computed (|ẑ| ≤ e, the \
             rigorous running forward bound): the Jacobians behind K use the computed σ′ there \
             (flatcert certify lists them as activation_pattern, with the samples)",
            r.near_kink_units
        ));
    }
    if !mlp.activation().is_piecewise_linear() {
        notes.push(format!(
            "assumed: for a smooth activation the rounding of K is within the a-priori relative \
             estimate 2γ_K = {:.3e}; the |W| backward bound is evaluated at the computed σ′(ẑ), \
             without σ′(ẑ) − σ′(z) (THEORY §3 item 1; certify: backward_rounding)",
            crate::measure::per_sample::jacobian_rel_tol(mlp)
        ));
    }
    notes
}

/// What [`refine_inconclusive`] works on.
struct RefineInputs<'s, 'a> {
    spec: &'s crate::measure::gram::GramSpectrum,
    budget: &'s RankBudget<'a>,
    refine_rank: usize,
    /// Cone steps assumed by the time estimate.
    typical_steps: f64,
    eta: f64,
    sampling: Sampling,
    opts: &'s BracketOptions,
    quiet: bool,
    crits: &'s mut Vec<(CriticalLr, f64)>,
    rank_used: &'s mut std::collections::BTreeMap<usize, usize>,
    notes: &'s mut Vec<String>,
}

/// Second attempt (THEORY T5f with a larger rank) for every batch size whose verdict at η is
/// inconclusive at `--t5-rank`: ranks up to `--refine-rank` are tried in increasing order until
/// the verdict is decided ([`Goal::DecideAt`]). A decided result replaces the row's bracket (both
/// are certified; the refined one has the smaller allowance); an undecided one is kept only if
/// its bracket is narrower. Each outcome is recorded in a note.
fn refine_inconclusive(r: RefineInputs<'_, '_>) -> Result<()> {
    let cap = r.refine_rank.min(r.spec.rank);
    if r.budget.is_exact() || cap <= r.budget.cap() {
        return Ok(());
    }
    let open: Vec<usize> = r
        .crits
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| c.verdict(r.eta).0 == Verdict::Inconclusive)
        .map(|(i, _)| i)
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let open_batches = open
        .iter()
        .map(|&i| format!("B = {}", r.crits[i].0.batch))
        .collect::<Vec<_>>()
        .join(", ");
    let seconds = step_seconds(r.spec.n, cap) * r.typical_steps * open.len() as f64;
    if seconds > REFINE_SECONDS_LIMIT {
        r.notes.push(format!(
            "verdict at η = {} inconclusive at rank {} for {}; a second attempt at ranks up to \
             {cap} would take ≈ {} and was skipped: run those batch sizes alone with --t5-rank \
             {cap} (or a larger --rel-tol) to decide them",
            r.eta,
            r.budget.cap(),
            open_batches,
            fmt_seconds(seconds)
        ));
        return Ok(());
    }
    if !r.quiet {
        eprintln!(
            "verdict at η inconclusive at rank {} for {}: trying ranks up to {cap} (≈ {})",
            r.budget.cap(),
            open_batches,
            fmt_seconds(seconds)
        );
    }
    let big = RankBudget::new(r.spec, cap)?;
    let mut decided = Vec::new();
    let mut undecided = Vec::new();
    for &i in &open {
        let t = Instant::now();
        let b = r.crits[i].0.batch;
        let (used, cl) = big.critical_lr(b, r.sampling, r.opts, Goal::DecideAt(r.eta))?;
        let secs = r.crits[i].1 + t.elapsed().as_secs_f64();
        let width = |c: &CriticalLr| match (c.eta_lower(), c.eta_upper()) {
            (Some(lo), Some(hi)) => hi - lo,
            _ => f64::INFINITY,
        };
        let is_decided = cl.verdict(r.eta).0 != Verdict::Inconclusive;
        if is_decided || width(&cl) < width(&r.crits[i].0) {
            r.rank_used.insert(b, used.rank());
            r.crits[i] = (cl, secs);
        } else {
            r.crits[i].1 = secs;
        }
        if is_decided {
            decided.push(format!("B = {b} at rank {}", used.rank()));
        } else {
            undecided.push(format!("B = {b}"));
        }
    }
    let mut note = format!(
        "verdict at η = {} was inconclusive at rank {} (--t5-rank) for {}; retried with ranks up \
         to {cap} (--refine-rank)",
        r.eta,
        r.budget.cap(),
        open_batches
    );
    if !decided.is_empty() {
        note.push_str(&format!("; decided for {}", decided.join(", ")));
    }
    if !undecided.is_empty() {
        note.push_str(&format!(
            "; still inconclusive for {} (η is within the bracket's width of η*)",
            undecided.join(", ")
        ));
    }
    r.notes.push(note);
    Ok(())
}

/// Run the whole computation and build the document (and the figure's data).
pub fn stability_document(
    loaded: &dyn Subject,
    args: &SweepPlan,
) -> Result<(StabilityDoc, StabilityPlot)> {
    let t0 = Instant::now();
    args.validate()?;
    let (n, c) = (loaded.n(), loaded.outputs());
    let mut notes = loaded.opening_notes();

    let md_sampling = loaded
        .metadata()
        .get("sampling")
        .and_then(|s| crate::train::BatchScheme::parse(s).ok());
    let sampling: Sampling = match args.sampling {
        Some(s) => s,
        None if md_sampling == Some(crate::train::BatchScheme::IidWithReplacement) => {
            Sampling::WithReplacement
        }
        None => Sampling::WithoutReplacement,
    };

    let mut batches = args.batch.clone().unwrap_or_else(|| default_batches(n));
    for &b in &batches {
        noise_p(n, b, sampling)?;
    }
    batches.sort_unstable();
    batches.dedup();

    let (eta, mut marker_batch) = resolve_eta(args, loaded, &mut notes);
    if let Some(b) = marker_batch
        && noise_p(n, b, sampling).is_err()
    {
        notes.push(format!(
            "checkpoint metadata batch = {b} is not a valid batch size for n = {n}: no marker"
        ));
        marker_batch = None;
    }

    // The Gram path: refuse beyond --gram-limit or a safe fraction of the memory.
    let big_n = n.saturating_mul(c);
    let mut sweep_batches = batches.clone();
    if let Some(b) = marker_batch
        && !sweep_batches.contains(&b)
    {
        sweep_batches.push(b);
    }
    let cost = loaded.cost(args.t5_rank);
    // Typical: the plain cone steps, then (tight targets) a Lanczos restart worth ~10 steps.
    let typical_steps = if args.rel_tol >= 1e-2 {
        args.max_steps.min(TYPICAL_LOOSE_STEPS)
    } else {
        args.max_steps.min(TYPICAL_CONE_STEPS) + 10
    } as f64;
    let per_batch_seconds = cost.step_seconds * typical_steps;
    let total_seconds = cost.gram_seconds + per_batch_seconds * sweep_batches.len() as f64;
    if big_n > args.gram_limit {
        return super::scale::document(super::scale::ScaleInputs {
            args,
            loaded,
            sampling,
            batches,
            eta,
            marker_batch,
            notes,
            t0,
        });
    }
    let safe = args.memory_limit_bytes();
    if cost.bytes > safe {
        return Err(Error::invalid_argument(
            "max_memory",
            format!(
                "the Gram path for nC = {big_n} needs ≈ {}, more than the memory limit of {} \
                 (default {:.0}% of the available memory); raise --max-memory if the machine has \
                 it, subsample the data, or use `flatcert measure` (operator path)",
                crate::measure::gram::format_bytes(cost.bytes),
                crate::measure::gram::format_bytes(safe),
                SAFE_MEMORY_FRACTION * 100.0
            ),
        ));
    }
    if !args.quiet && (total_seconds >= ANNOUNCE_SECONDS || cost.bytes >= ANNOUNCE_BYTES) {
        eprintln!(
            "Gram path: nC = {big_n}, memory ≈ {}, estimated time ≈ {} (K and its \
             eigendecomposition ≈ {}, then ≈ {} per batch size × {})",
            fmt_bytes(cost.bytes),
            fmt_seconds(total_seconds),
            fmt_seconds(cost.gram_seconds),
            fmt_seconds(per_batch_seconds),
            sweep_batches.len()
        );
    }

    let residual = loaded.residual()?;
    notes.extend(loaded.jacobian_notes(residual.as_ref()));
    let spec = loaded.gram(&GramOptions {
        tau: args.tau,
        memory_limit_bytes: safe.max(cost.bytes),
        ..GramOptions::default()
    })?;
    let model = ReducedModel::from_spectrum(&spec);
    let r = model.rank();
    let lambda = model.lambda_max_bracket;
    let budget = RankBudget::new(&spec, args.t5_rank)?;
    let refined =
        step_seconds(big_n, r.min(args.t5_rank)) * typical_steps * sweep_batches.len() as f64;
    if !args.quiet && refined >= ANNOUNCE_SECONDS {
        eprintln!(
            "η*(B): r = {r} (τ = {:e}); estimated ≈ {} for {} batch size(s) (rough; a looser \
             --rel-tol or a larger --tau is faster, the brackets stay certified)",
            args.tau,
            fmt_seconds(refined),
            sweep_batches.len()
        );
    }

    // η*(B) for every batch size from the one eigendecomposition.
    let opts = BracketOptions {
        max_steps: args.max_steps,
        rel_tol: args.rel_tol,
        ..BracketOptions::default()
    };
    let pb = progress::bar(sweep_batches.len() as u64, "η*(B)", args.quiet);
    let mut crits: Vec<(CriticalLr, f64)> = Vec::with_capacity(sweep_batches.len());
    let mut rank_used = std::collections::BTreeMap::new();
    let dense = r > 0 && r * (r + 1) / 2 <= opts.dense_limit;
    if dense && budget.is_exact() {
        // Small r: one sweep shares the dense matrices of 𝒟̃.
        let t = Instant::now();
        let all = critical_lr_sweep(&model, &sweep_batches, sampling, &opts)?;
        let each = t.elapsed().as_secs_f64() / all.len().max(1) as f64;
        crits.extend(all.into_iter().map(|cl| (cl, each)));
        pb.inc(sweep_batches.len() as u64);
    } else {
        for &b in &sweep_batches {
            let t = Instant::now();
            let (used, cl) = budget.critical_lr(b, sampling, &opts, Goal::Bracket)?;
            rank_used.insert(b, used.rank());
            crits.push((cl, t.elapsed().as_secs_f64()));
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    if let Some(e) = eta.as_ref().map(|e| e.theory) {
        refine_inconclusive(RefineInputs {
            spec: &spec,
            budget: &budget,
            refine_rank: args.refine_rank,
            typical_steps,
            eta: e,
            sampling,
            opts: &opts,
            quiet: args.quiet,
            crits: &mut crits,
            rank_used: &mut rank_used,
            notes: &mut notes,
        })?;
    }

    let ks: Vec<usize> = {
        let mut v: Vec<usize> = args
            .k
            .iter()
            .map(|&k| k as usize)
            .filter(|&k| k >= 4)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let eta_theory = eta.as_ref().map(|e| e.theory);
    let mut rows = Vec::with_capacity(batches.len());
    for (crit, secs) in crits.iter().filter(|(c, _)| batches.contains(&c.batch)) {
        let t = Instant::now();
        let mut k_moments = serde_json::Map::new();
        for &k in &ks {
            k_moments.insert(
                names::per_k(names::K_MOMENT_CRITICAL_LR_K, k),
                k_moment_entry(&model, crit, k, sampling),
            );
        }
        let verdict = eta_theory.map(|e| {
            let (v, margin) = crit.verdict(e);
            RowVerdict {
                eta: e,
                mean_square: v.name(),
                certified_relative_margin: margin,
                gd: gd_verdict(lambda, e),
                confidence: None,
            }
        });
        rows.push(Row {
            batch: crit.batch,
            p: crit.p,
            gd_critical_lr: gd_bracket(lambda),
            mean_square_critical_lr: ms_bracket(
                crit,
                rank_used.get(&crit.batch).copied().unwrap_or(r),
            ),
            k_moments,
            verdict,
            seconds: secs + t.elapsed().as_secs_f64(),
        });
    }
    rows.sort_by_key(|r| r.batch);

    let marker = match (marker_batch, &eta) {
        (Some(b), Some(e)) => crits.iter().find(|(c, _)| c.batch == b).map(|(crit, _)| {
            let (v, margin) = crit.verdict(e.theory);
            Marker {
                batch: b,
                eta: e.theory,
                source: "checkpoint metadata (training B and η)".into(),
                verdict: v.name(),
                certified_relative_margin: margin,
                mean_square_critical_lr: Bracket {
                    lower: crit.eta_lower(),
                    upper: crit.eta_upper(),
                    confidence: None,
                },
            }
        }),
        _ => None,
    };

    // Notes: the Gauss–Newton model, the sampling model, k-moment caveats.
    match &residual {
        Some(res) if res.hessian_is_gauss_newton => {}
        Some(res) => notes.push(format!(
            "Gauss–Newton model: the residual is not proven 0 (max |f − y| = {:.3e}, rigorous \
             upper bound {:.3e}; √(2ℒ) = {:.3e}, ‖∇ℒ‖ = {:.3e}); G = (1/n)ΣJ_iᵀJ_i replaced the \
             Hessian H in every verdict, which certifies the linearization only where H = G \
             (THEORY T5 failure mode (i))",
            res.max_abs_residual,
            res.max_abs_residual_upper,
            res.rms_residual,
            res.loss_gradient_norm
        )),
        None => notes.push(
            "Gauss–Newton model: no targets (--y), so the residual is unknown; G replaced the \
             Hessian H in every verdict (exact only at an interpolating minimum)"
                .into(),
        ),
    }
    notes.push(format!(
        "sampling model {}: {}; the theory assumes batches independent across steps — \
         per-epoch reshuffling (what most training loops do) is not covered",
        if sampling == Sampling::WithoutReplacement {
            "(S)"
        } else {
            "(S′)"
        },
        if sampling == Sampling::WithoutReplacement {
            "a fresh uniform B-subset at every step, p = (n−B)/(B(n−1))"
        } else {
            "B i.i.d. uniform indices at every step, p = 1/B"
        }
    ));
    if md_sampling == Some(crate::train::BatchScheme::EpochReshuffle) {
        notes.push(
            "the checkpoint metadata says it was trained with per-epoch reshuffling, which the \
             theory does not cover: the verdicts describe model (S) SGD at the same (B, η)"
                .into(),
        );
    }
    let any_k_moment = rows
        .iter()
        .any(|r| r.k_moments.values().any(Value::is_object));
    if any_k_moment {
        notes.push(format!(
            "k-th moment rates (k = {}) come from the exact 𝒬_k by batch enumeration (tiny r \
             only), kind estimate (bisection on a computed λ_max; τ and the rounding of K not \
             covered); η*_k ≤ η*_2, and k-th moment instability does not mean SGD diverges",
            ks.iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !budget.is_exact() {
        let used: std::collections::BTreeSet<usize> = rank_used.values().copied().collect();
        notes.push(format!(
            "η*(B) brackets computed on the top {} of r = {r} eigenpairs of K (--t5-rank {}, \
             --rel-tol {:e}); the rest enter the proven truncation allowance (1−p)λ_d + 4pω of \
             THEORY T5f, which widens the bracket but keeps it certified",
            used.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            args.t5_rank,
            args.rel_tol
        ));
    }
    if spec.rank < spec.values.len() {
        notes.push(format!(
            "{} eigenvalues of K below τ·λ_max (τ = {:e}) were discarded (mass {:.3e}); the \
             η* brackets include the proven truncation allowance",
            spec.values.len() - spec.rank,
            spec.tau,
            spec.discarded_mass
        ));
    }
    notes.extend(loaded.embedded_note());

    let sampling_name = sampling.name();
    let plot = StabilityPlot {
        title: "Where SGD can stay: mean-square stable region in the (B, η) plane".into(),
        subtitle: format!(
            "{} — n = {n}, C = {c}, r = {r}, sampling {sampling_name}{}",
            loaded.model_path(),
            if residual.as_ref().is_some_and(|r| r.hessian_is_gauss_newton) {
                ", interpolating (H = G, proven)"
            } else {
                ", Gauss–Newton model"
            }
        ),
        rows: rows
            .iter()
            .map(|row| PlotRow {
                batch: row.batch,
                eta_lower: row.mean_square_critical_lr.lower,
                eta_upper: row.mean_square_critical_lr.upper,
                eta_k: ks.first().and_then(|k| {
                    row.k_moments
                        .get(&names::per_k(names::K_MOMENT_CRITICAL_LR_K, k))
                        .and_then(|v| v.get("value"))
                        .and_then(Value::as_f64)
                }),
                verdict: row.verdict.as_ref().map(|v| verdict_of(v.mean_square)),
            })
            .collect(),
        gd: match gd_bracket(lambda) {
            Bracket {
                lower: Some(a),
                upper: Some(b),
                ..
            } => Some((a, b)),
            _ => None,
        },
        k: ks.first().copied().unwrap_or(4),
        eta: eta_theory,
        marker: marker.as_ref().map(|m| PlotMarker {
            batch: m.batch,
            eta: m.eta,
            verdict: verdict_of(m.verdict),
            label: format!(
                "trained (B = {}, η = {}): {}{}",
                m.batch,
                m.eta,
                m.verdict,
                m.certified_relative_margin
                    .map(|x| format!(", margin {}", fmt_percent(x)))
                    .unwrap_or_default()
            ),
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
        r: Some(r),
        tau: Some(spec.tau),
        discarded_mass: Some(spec.discarded_mass),
        sampling: sampling_name,
        gauss_newton_lambda_max: Bracket {
            lower: Some(lambda.0),
            upper: Some(lambda.1),
            confidence: None,
        },
        residual,
        marker,
        rows,
        notes,
        runtime_seconds: 0.0,
    };
    let mut doc = doc;
    doc.runtime_seconds = t0.elapsed().as_secs_f64();
    Ok((doc, plot))
}

/// The [`Verdict`] whose name is `name` (inconclusive if none matches).
pub fn verdict_of(name: &str) -> Verdict {
    [
        Verdict::CertifiedStable,
        Verdict::CertifiedUnstable,
        Verdict::Inconclusive,
    ]
    .into_iter()
    .find(|v| v.name() == name)
    .unwrap_or(Verdict::Inconclusive)
}

/// T4 bracket of η_GD* = 2/λ_max(G): `[2/upper, 2/lower]`, rounded outwards.
fn gd_bracket(lambda: (f64, f64)) -> Bracket {
    let (lo, hi) = lambda;
    Bracket {
        lower: (hi > 0.0).then(|| round_down(2.0 / hi)),
        upper: (lo > 0.0).then(|| round_up(2.0 / lo)),
        confidence: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;
    use crate::testutil::random_mlp;

    fn residual(near_kink_units: usize) -> ResidualInfo {
        ResidualInfo {
            max_abs_residual: 0.1,
            max_abs_residual_upper: 0.1,
            hessian_is_gauss_newton: false,
            rms_residual: 0.1,
            loss_gradient_norm: 0.1,
            near_kink_units,
        }
    }

    /// The stability document states the same assumed hypotheses as `certify`: the activation
    /// pattern at near-kink units, and a smooth σ's a-priori backward rounding with its size.
    #[test]
    fn jacobian_notes_state_the_assumed_hypotheses() {
        let relu = random_mlp(&[2, 3, 1], Activation::Relu, 1);
        assert!(jacobian_notes(&relu, Some(&residual(0))).is_empty());
        assert!(jacobian_notes(&relu, None).is_empty());
        let kinks = jacobian_notes(&relu, Some(&residual(3)));
        assert_eq!(kinks.len(), 1);
        assert!(kinks[0].contains("3 near-kink units"), "{kinks:?}");
        let tanh = random_mlp(&[2, 3, 1], Activation::Tanh, 1);
        let smooth = jacobian_notes(&tanh, None);
        assert_eq!(smooth.len(), 1);
        // K = (2 + 1) + (3 + 1) + C = 8: 2γ_8 printed to 4 significant digits.
        let want = format!("{:.3e}", 2.0 * crate::quantity::gamma(8));
        assert!(smooth[0].contains(&want), "{smooth:?} lacks {want}");
    }
}
