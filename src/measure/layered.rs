//! The measurements of a layered (convolutional) network (issue 14, THEORY.md §7): the same
//! canonical names as the dense engine where the quantity is the same, plus the radial
//! quantities of §7(b), each labelled with its kind.
//!
//! What differs from the dense engine (and why):
//! - T1 checks T1b only (§7(a)): ⟨x, ∇_x f_c⟩ by forward mode against ⟨W, ∇_W f_c⟩ from the
//!   backward pass. T1a, T2 and the full-gradient T3/T7 forms are specific to dense first layers.
//! - The Jacobian tolerances are a-priori estimates 2γ_K·value, K = Σ_l (fan-in_l + 1) + C (the
//!   dense engine's smooth-σ convention, THEORY §3 item 1): no absolute-value backward bound is
//!   propagated through convolutions and pooling. `smooth_backward_rounding` carries that size,
//!   so every Jacobian-dependent verdict lists it as an assumed hypothesis.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::measure::document::{CurvatureSource, curvature_quantities_of, hessian_product_cap};
use crate::measure::gram::{GramOptions, GramSpectrum, gram_spectrum};
use crate::measure::hvp::OperatorOptions;
use crate::measure::lanczos::UpperBoundOptions;
use crate::measure::lipschitz::BallNorm;
use crate::measure::names;
use crate::net::{LayerSpec, NetPerSample, PerSampleOptions, Sequential, Shape, Tensor};
use crate::net::{NetCurvatureOperator, build_gram, net_gram_memory_bytes, per_sample_curvature};
use crate::problem::NetProblem;
use crate::quantity::{Quantity, UNIT_ROUNDOFF, gamma, round_up};

/// The inputs of a data set as one tensor of the network's input shape.
pub fn input_tensor(net: &Sequential, x: &[f64], n: usize) -> Result<Tensor> {
    Tensor::new(n, net.input_shape(), x.to_vec()).ok_or_else(|| {
        Error::Internal(format!(
            "{} values are not {n} samples of shape {}",
            x.len(),
            net.input_shape()
        ))
    })
}

/// The fan-in of a layer's inner products (THEORY §7(d): C_in·k_h·k_w for a convolution, the
/// window for an average pool, 0 for layers that do no sums).
fn fan_in(spec: &LayerSpec, input: Shape) -> usize {
    match spec {
        LayerSpec::Conv2d { window, .. } => {
            let c_in = match input {
                Shape::Image { c, .. } => c,
                Shape::Flat(f) => f,
            };
            c_in * window.kernel.0 * window.kernel.1
        }
        LayerSpec::Linear { .. } => input.len(),
        LayerSpec::AvgPool2d { kernel, .. } => kernel.0 * kernel.1,
        _ => 0,
    }
}

/// `2γ_K`, `K = Σ_l (fan-in_l + 1) + C`: the relative a-priori rounding estimate of the Jacobian
/// quantities of a layered network (THEORY §3 item 1, the convention of
/// [`crate::measure::per_sample::jacobian_rel_tol`] with §7(d)'s fan-ins).
pub fn layered_jacobian_rel_tol(net: &Sequential) -> f64 {
    let shapes = net.shapes();
    let k: usize = net
        .layers()
        .iter()
        .zip(shapes)
        .map(|(l, &s)| fan_in(&l.spec(), s) + 1)
        .sum::<usize>()
        + net.output_dim();
    2.0 * gamma(k)
}

/// `((1/n) Σ a_i^k)^{1/(2k)}` of squares `a_i`, scaled by the largest so that high k does not
/// overflow.
fn moment_of_squares(sq: &[f64], k: u32) -> f64 {
    let m = sq.iter().copied().fold(0.0f64, f64::max);
    if m == 0.0 {
        return 0.0;
    }
    let s = sq.iter().map(|&a| (a / m).powi(k as i32)).sum::<f64>() / sq.len() as f64;
    m.sqrt() * s.powf(1.0 / (2.0 * f64::from(k)))
}

/// The first-order quantities of a layered problem (THEORY §7(a), (b), (e); T7(e)'s g_W(k) and
/// g_x(k)), with the per-sample numbers they come from.
pub fn first_order(
    p: &NetProblem,
    ks: &[u32],
    block: usize,
) -> Result<(QuantityMap, NetPerSample)> {
    let net = &p.net;
    let n = p.n();
    let c = net.output_dim();
    let x = input_tensor(net, p.data.x(), n)?;
    let st = crate::net::per_sample_stats(
        net,
        &x,
        &PerSampleOptions {
            ks: ks.to_vec(),
            block,
        },
    )
    .map_err(|e| crate::net::in_file(&p.model_file.path, e))?;
    if let Some(i) =
        (0..n).find(|&i| !(st.jacobian_sq[i].is_finite() && st.input_sq[i].is_finite()))
    {
        return Err(Error::Numerical(format!(
            "per-sample gradient norms of sample {i} are not finite (overflow in the network)"
        )));
    }
    let rel = layered_jacobian_rel_tol(net);
    let mean_tol = |v: f64, squared: bool| {
        let r = if squared { 2.0 * rel } else { rel };
        round_up(v * (r + gamma(n + 2)))
    };
    let apriori = "tol: a-priori rounding estimate 2γ_K·value (THEORY §3 item 1; no |W| backward \
                   bound through conv/pool)";
    let mut q = QuantityMap::new();
    q.insert(
        names::SMOOTH_BACKWARD_ROUNDING.into(),
        Quantity::exact(rel, round_up(rel * UNIT_ROUNDOFF)).with_method(
            "relative a-priori rounding estimate 2γ_K, K = Σ_l(fan-in_l + 1) + C, of the Jacobian \
             quantities of a layered network (THEORY §3 item 1, §7(d) fan-ins): no absolute-value \
             backward bound is propagated through convolutions and pooling, so this size is an \
             assumed hypothesis of every Jacobian-dependent verdict",
        ),
    );
    // First layer W (without its bias): ‖W‖_F, rounded up (a sum of nw squares: γ_{nw+1}).
    let first = &net.layers()[0];
    let nw = first.weight_len().unwrap_or(0);
    let w = first.params();
    let w_sq: f64 = w[..nw].iter().map(|v| v * v).sum();
    let w_fro = w_sq.sqrt();
    q.insert(
        names::FIRST_LAYER_FROBENIUS_NORM.into(),
        Quantity::upper(round_up(w_fro * (1.0 + gamma(nw + 2))), 0.0).with_method(
            "‖W‖_F of the first layer's weight (THEORY §7(b)); rigorous upper bound: the sum of \
             squares within γ_{nw+1}, the square root rounded up",
        ),
    );
    // Input norms.
    let x_norm: Vec<f64> = (0..n)
        .map(|i| p.data.x_row(i).iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let d = net.input_shape().len();
    let xr = gamma(d + 2);
    let xmin = x_norm.iter().copied().fold(f64::INFINITY, f64::min);
    let xmean = x_norm.iter().sum::<f64>() / n as f64;
    q.insert(
        names::INPUT_NORM_MIN.into(),
        Quantity::exact(xmin, round_up(xmin * xr)).with_method("min_i ‖x_i‖₂"),
    );
    q.insert(
        names::INPUT_NORM_MEAN.into(),
        Quantity::exact(xmean, round_up(xmean * (xr + gamma(n + 1))))
            .with_method("(1/n) Σ_i ‖x_i‖₂"),
    );
    // T1b.
    let mut t1_abs = 0.0f64;
    let mut t1_scale = 0.0f64;
    for (i, xn) in x_norm.iter().enumerate() {
        let scale = xn * st.input_sq[i].sqrt() + w_fro * st.first_layer_sq[i].sqrt();
        t1_scale = t1_scale.max(scale);
    }
    for (a, b) in st.t1b_input_side.iter().zip(&st.t1b_weight_side) {
        t1_abs = t1_abs.max((a - b).abs());
    }
    // Expected size: both sides are inner products bounded by the Cauchy–Schwarz scale; each is
    // within (γ_K-sized) relative rounding of it, as for the dense T1 (10u·scale, THEORY §3).
    let t1_tol = round_up(t1_scale * (rel + 10.0 * UNIT_ROUNDOFF));
    q.insert(
        names::IDENTITY_SCALAR_MAX_ABS_RESIDUAL.into(),
        Quantity::exact(t1_abs, t1_tol)
            .with_method(
                "T1b (THEORY §7(a)): max_ic |⟨x_i, ∇_x f_c⟩ − ⟨W, ∇_W f_c⟩|, the left side by \
                 forward mode (a JVP along x_i), the right from the backward pass; tol: the \
                 expected rounding size (2γ_K + 10u)·max_i(‖x_i‖‖J_x‖_F + ‖W‖_F‖J_W‖_F)",
            )
            .with_note(format!(
                "all {n} samples checked; largest relative residual {:.3e}",
                st.t1b_max_rel_residual
            )),
    );
    q.insert(
        names::IDENTITY_POINTS_CHECKED.into(),
        Quantity::exact(n as f64, 0.0).with_method("samples at which T1b was checked"),
    );
    // Traces and per-sample traces.
    let nf = n as f64;
    let tr_g = st.jacobian_sq.iter().sum::<f64>() / nf;
    q.insert(
        names::GAUSS_NEWTON_TRACE.into(),
        Quantity::exact(tr_g, mean_tol(tr_g, true))
            .with_method(format!("tr G = (1/n) Σ_i ‖J_θ(x_i)‖_F²; {apriori}")),
    );
    let tr_gw = st.first_layer_sq.iter().sum::<f64>() / nf;
    q.insert(
        names::FIRST_LAYER_GAUSS_NEWTON_TRACE.into(),
        Quantity::exact(tr_gw, mean_tol(tr_gw, true)).with_method(format!(
            "tr G_W = (1/n) Σ_i ‖J_W(x_i)‖_F² (weight, no bias); {apriori}"
        )),
    );
    let tr_sq = st.jacobian_sq.iter().map(|t| t * t).sum::<f64>() / nf;
    q.insert(
        names::PER_SAMPLE_TRACE_SQ_MEAN.into(),
        Quantity::exact(tr_sq, round_up(tr_sq * (4.0 * rel + gamma(n + 2))))
            .with_method(format!("(1/n) Σ_i (tr H_i)², tr H_i = ‖J_i‖_F²; {apriori}")),
    );
    // Radial quantities (§7(b)): ‖J_x(x_i) x_i‖² = Σ_c ⟨x_i, ∇_x f_c⟩², from the forward-mode side.
    let radial_sq: Vec<f64> = (0..n)
        .map(|i| (0..c).map(|ci| st.t1b_input_side[i * c + ci].powi(2)).sum())
        .collect();
    let radial_mean = radial_sq.iter().sum::<f64>() / nf;
    q.insert(
        names::INPUT_GRAD_RADIAL_MEAN_SQ.into(),
        Quantity::exact(radial_mean, mean_tol(radial_mean, true)).with_method(format!(
            "(1/n) Σ_i ‖J_x(x_i) x_i‖² (THEORY §7(b)), J_x x_i by forward mode; {apriori}"
        )),
    );
    let radial_max = radial_sq.iter().copied().fold(0.0f64, f64::max).sqrt();
    q.insert(
        names::INPUT_GRAD_RADIAL_MAX.into(),
        Quantity::exact(radial_max, mean_tol(radial_max, false))
            .with_method(format!("max_i ‖J_x(x_i) x_i‖ (THEORY §7(b)); {apriori}")),
    );
    for (kj, &k) in ks.iter().enumerate() {
        let named = |prefix: &str| format!("{prefix}{k}");
        // The power means ((1/n) Σ_i a_i^k)^{1/(2k)} of the per-sample squared norms a_i.
        for (prefix, squares, what) in [
            (
                names::INPUT_GRAD_RADIAL_MOMENT_K,
                &radial_sq,
                "‖J_x(x_i) x_i‖ (THEORY §7(b))",
            ),
            (
                names::FIRST_LAYER_GRAD_MOMENT_K,
                &st.first_layer_sq,
                "‖J_W(x_i)‖_F",
            ),
            (names::PARAM_GRAD_MOMENT_K, &st.jacobian_sq, "‖J_θ(x_i)‖_F"),
            (names::INPUT_GRAD_MOMENT_K, &st.input_sq, "‖J_x(x_i)‖_F"),
        ] {
            let m = moment_of_squares(squares, k);
            q.insert(
                named(prefix),
                Quantity::exact(m, mean_tol(m, false)).with_method(format!(
                    "((1/n) Σ_i a_i^{k})^(1/{}), a_i = {what}²; {apriori}",
                    2 * k
                )),
            );
        }
        q.insert(
            named(names::PARAM_GRAD_ELEMENTWISE_K),
            Quantity::exact(st.g_w[kj], mean_tol(st.g_w[kj], false)).with_method(format!(
                "g_W(k), T7(e): all parameters incl. biases (conv gradients materialized per \
                 sample, THEORY §7(e)); {apriori}"
            )),
        );
        q.insert(
            named(names::INPUT_GRAD_ELEMENTWISE_K),
            Quantity::exact(st.g_x[kj], mean_tol(st.g_x[kj], false))
                .with_method(format!("g_x(k), T7(e); {apriori}")),
        );
        let lq = (0..n)
            .map(|i| {
                let row = p.data.x_row(i);
                let m = row.iter().fold(0.0f64, |a, v| a.max(v.abs()));
                if m == 0.0 {
                    return 0.0;
                }
                m * row
                    .iter()
                    .map(|v| (v / m).powi(2 * k as i32))
                    .sum::<f64>()
                    .powf(1.0 / (2.0 * f64::from(k)))
            })
            .fold(f64::INFINITY, f64::min);
        q.insert(
            named(names::INPUT_LQ_NORM_MIN_K),
            Quantity::exact(lq, round_up(lq * (gamma(d + 2) + 4.0 * UNIT_ROUNDOFF)))
                .with_method(format!("min_i ‖x_i‖_{}", 2 * k)),
        );
    }
    Ok((q, st))
}

/// The residual quantities (THEORY §0: ℒ = (1/n) Σ ½‖f(x_i) − y_i‖², res = f − y): `train_loss`,
/// `max_abs_residual`, `max_residual_norm` and `loss_gradient_norm` = ‖∇ℒ‖ (one backward pass
/// with the residuals as cotangents). `max_abs_residual`'s upper side is rigorous (the IBP
/// output enclosure at radius 0); the others' tolerances are the a-priori 2γ_K relative size on
/// f (the forward pass itself carries no running bound).
/// Empty without targets.
pub fn residual_quantities(p: &NetProblem, block: usize) -> Result<QuantityMap> {
    let mut q = QuantityMap::new();
    let Some(y) = p.data.y() else {
        return Ok(q);
    };
    let net = &p.net;
    let (n, c) = (p.n(), net.output_dim());
    let rel = layered_jacobian_rel_tol(net);
    let mut grad = vec![0.0; net.num_params()];
    let (mut loss, mut max_abs, mut max_norm, mut max_f) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let block = block.max(1);
    for s in (0..n).step_by(block) {
        let e = (s + block).min(n);
        let x = input_tensor(
            net,
            &p.data.x()[s * net.input_shape().len()..e * net.input_shape().len()],
            e - s,
        )?;
        let cache = net
            .forward_cache(&x)
            .map_err(|err| crate::net::in_file(&p.model_file.path, err))?;
        let mut res = cache.output().clone();
        for (i, row) in res.data.chunks_mut(c).enumerate() {
            let mut sq = 0.0;
            for (j, f) in row.iter_mut().enumerate() {
                max_f = max_f.max(f.abs());
                *f -= y[(s + i) * c + j];
                max_abs = max_abs.max(f.abs());
                sq += *f * *f;
            }
            loss += 0.5 * sq;
            max_norm = max_norm.max(sq.sqrt());
        }
        for g in net.vjp_params(&cache, &res).iter().zip(grad.iter_mut()) {
            *g.1 += g.0;
        }
    }
    let nf = n as f64;
    loss /= nf;
    let gnorm = grad.iter().map(|g| g * g).sum::<f64>().sqrt() / nf;
    let ymax = y.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    // |f̂ − f| ≲ 2γ_K·max|f| per entry (a-priori), and the subtraction rounds once.
    let res_tol = round_up(rel * max_f + UNIT_ROUNDOFF * (max_f + ymax));
    let apriori = "tol: a-priori 2γ_K relative on f (THEORY §3 item 1)";
    // max|res_ic| is what decides whether H = G may be assumed, and documents call its upper
    // side rigorous: it comes from the IBP output enclosure at radius 0 (THEORY T10 / §7(d),
    // outward rounded), one box per sample.
    let residual = match crate::net::NetIbp::new(net) {
        Ok(ibp) => {
            let d = net.input_shape().len();
            let rigorous = (0..n)
                .into_par_iter()
                .map(|i| -> Result<f64> {
                    let x = &p.data.x()[i * d..(i + 1) * d];
                    let b = ibp.output_enclosure(x, 0.0, BallNorm::L2)?;
                    Ok((0..c).fold(0.0f64, |m, j| {
                        let t = y[i * c + j];
                        m.max(round_up(b.hi[j] - t)).max(round_up(t - b.lo[j]))
                    }))
                })
                .collect::<Result<Vec<f64>>>()?
                .into_iter()
                .fold(0.0f64, f64::max);
            Quantity::exact(max_abs, round_up(rigorous - max_abs).max(0.0)).with_method(
                "max_ic |f_c(x_i) − y_ic|; value + tol is a rigorous upper bound (IBP output \
                 enclosure at radius 0, THEORY §7(d))",
            )
        }
        // A network IBP does not certify (e.g. a leaky slope > 1): the a-priori size only, so the
        // value is an estimate — an exact kind would make value + tol a "rigorous" upper side
        // (the theorems would then call the Gauss–Newton hypothesis's size proven).
        Err(e) => Quantity::estimate(max_abs, res_tol).with_method(format!(
            "max_ic |f_c(x_i) − y_ic|; {apriori} — no rigorous upper side: {e}"
        )),
    };
    q.insert(names::MAX_ABS_RESIDUAL.into(), residual);
    q.insert(
        names::MAX_RESIDUAL_NORM.into(),
        Quantity::exact(
            max_norm,
            round_up(res_tol * (c as f64).sqrt() + max_norm * gamma(c + 2)),
        )
        .with_method(format!("max_i ‖f(x_i) − y_i‖₂; {apriori}")),
    );
    q.insert(
        names::TRAIN_LOSS.into(),
        Quantity::exact(
            loss,
            // |ℒ̂ − ℒ| ≤ (1/n) Σ_i (‖r_i‖‖δr_i‖ + ½‖δr_i‖²), ‖δr_i‖ ≤ √C·res_tol.
            round_up(
                max_norm * (c as f64).sqrt() * res_tol
                    + 0.5 * c as f64 * res_tol * res_tol
                    + loss * gamma(n * c + 2),
            ),
        )
        .with_method(format!("ℒ = (1/n) Σ_i ½‖f(x_i) − y_i‖²; {apriori}")),
    );
    q.insert(
        names::LOSS_GRADIENT_NORM.into(),
        Quantity::exact(gnorm, round_up(gnorm * (2.0 * rel + gamma(n + 2)))).with_method(format!(
            "‖∇ℒ‖ = ‖(1/n) Σ_i J_iᵀ res_i‖ (one backward pass); {apriori}"
        )),
    );
    Ok(q)
}

/// The `inputs` record of a layered problem's documents: `widths` are `[d, output size of each
/// layer with parameters…]` (the last is C), `activation` the distinct activations in order,
/// `architecture` the full spec.
pub fn measurement_inputs(p: &NetProblem, k: &[u32]) -> crate::measurements::MeasurementInputs {
    let net = &p.net;
    let mut widths = vec![net.input_shape().len()];
    let shapes = net.shapes();
    for (j, l) in net.layers().iter().enumerate() {
        if l.num_params() > 0 {
            widths.push(shapes[j + 1].len());
        }
    }
    let acts: Vec<String> = net.activations().iter().map(|a| a.name()).collect();
    crate::measurements::MeasurementInputs {
        model: p.model_file.clone(),
        x: p.x_file.clone(),
        y: p.y_file.clone(),
        activation: if acts.is_empty() {
            "identity".into()
        } else {
            acts.join(",")
        },
        activation_source: Some("architecture".into()),
        widths,
        n: p.n(),
        parameters: net.num_params(),
        x_scale: p.x_scale,
        k: k.to_vec(),
        flatcert_version: env!("CARGO_PKG_VERSION").into(),
        architecture: serde_json::from_str(&p.spec.to_json()).ok(),
    }
}

/// `flatcert measure` on a layered network (issue 14): the first-order and residual quantities
/// above and, unless `plan.curvature` is off, the curvature quantities.
pub fn measure_document(
    p: &NetProblem,
    plan: &crate::measure::document::MeasurePlan,
) -> Result<crate::measurements::MeasurementsDoc> {
    plan.validate()?;
    let (mut quantities, _) = first_order(p, &plan.k, plan.block)?;
    quantities.extend(residual_quantities(p, plan.block)?);
    let mut notes = network_notes(&p.net);
    if plan.curvature {
        let residual_nonzero = quantities
            .get(names::MAX_ABS_RESIDUAL)
            .is_some_and(|r| r.value > 0.0);
        quantities.extend(curvature_quantities(p, plan, residual_nonzero, &mut notes)?);
    }
    Ok(crate::measurements::MeasurementsDoc {
        schema: crate::measurements::MEASUREMENTS_SCHEMA.into(),
        inputs: measurement_inputs(p, &plan.k),
        notes,
        quantities,
    })
}

/// What a layered network's documents say once, up front (THEORY §7): [`layered_notes`], and
/// for a network with batch normalization, that it is read in eval mode.
pub fn network_notes(net: &Sequential) -> Vec<String> {
    let mut notes = layered_notes();
    notes.extend(batchnorm_note(net));
    notes
}

/// For a network with batch normalization: that it is read in eval mode, and what that means for
/// the theory (docs/cnn.md).
pub fn batchnorm_note(net: &Sequential) -> Option<String> {
    let bn: Vec<String> = net
        .layers()
        .iter()
        .filter(|l| matches!(l.spec(), LayerSpec::BatchNorm2d { .. }))
        .map(|l| l.name().unwrap_or("?").to_string())
        .collect();
    (!bn.is_empty()).then(|| {
        format!(
            "batchnorm2d layers ({}) are read in eval mode: the running statistics are constants \
             and γ, β are parameters, so every number is about this per-sample map; SGD with \
             train-mode batch normalization (statistics of each batch) couples the samples and \
             is not model (S) of THEORY §0, so the stability verdicts describe SGD on the \
             eval-mode network",
            bn.join(", ")
        )
    })
}

/// The note every layered network's documents start with (THEORY §7).
pub fn layered_notes() -> Vec<String> {
    vec![
        "layered network (THEORY §7): T1 checks T1b only; T2, T3 and T7 are in the radial form of \
         §7(b) (J_x(x_i)x_i and ‖W‖_F), because a convolution's weight gradient does not bound \
         the full input gradient (§7(a)); Jacobian tolerances are a-priori 2γ_K estimates \
         (smooth_backward_rounding)"
            .into(),
    ]
}

/// Multiply-adds of one sample's forward pass through the layers with parameters: each weight is
/// applied once per output pixel (a `Linear` layer's output is one "pixel"). The time model of
/// the layered Gram path ([`crate::stability::cost::layered_gram_seconds_estimate`]) uses it.
pub fn forward_work_per_sample(net: &Sequential) -> f64 {
    net.layers()
        .iter()
        .zip(net.shapes().windows(2))
        .map(|(layer, io)| {
            let pixels = match io[1] {
                Shape::Flat(_) => 1,
                Shape::Image { h, w, .. } => h * w,
            };
            layer.weight_len().unwrap_or(0) as f64 * pixels as f64
        })
        .sum()
}

/// The Gram path's memory (bytes) and time (seconds) of a layered network on `n` samples
/// ([`net_gram_memory_bytes`], [`crate::stability::cost::layered_gram_seconds_estimate`]).
pub fn layered_gram_cost(net: &Sequential, n: usize) -> (usize, f64) {
    let c = net.output_dim();
    (
        net_gram_memory_bytes(net, n, 256),
        crate::stability::cost::layered_gram_seconds_estimate(
            n * c,
            net.num_params(),
            c,
            forward_work_per_sample(net),
        ),
    )
}

/// A layered network and its data as a [`CurvatureSource`] (THEORY §7(c): the Gram and
/// operator paths hold unchanged for any architecture).
pub struct LayeredSource<'d> {
    /// The network.
    pub net: &'d Sequential,
    /// The inputs.
    pub x: Tensor,
    /// The targets, `n × C`, if any.
    pub y: Option<Tensor>,
}

impl<'d> LayeredSource<'d> {
    /// The problem's inputs and targets as tensors.
    pub fn of(p: &'d NetProblem) -> Result<Self> {
        let n = p.n();
        let c = p.outputs();
        let y = match p.data.y() {
            Some(y) => Some(
                Tensor::new(n, Shape::Flat(c), y.to_vec())
                    .ok_or_else(|| Error::Internal("targets do not form n × C".into()))?,
            ),
            None => None,
        };
        Ok(LayeredSource {
            net: &p.net,
            x: input_tensor(&p.net, p.data.x(), n)?,
            y,
        })
    }
}

impl CurvatureSource for LayeredSource<'_> {
    type Op<'a>
        = NetCurvatureOperator<'a>
    where
        Self: 'a;
    fn samples(&self) -> usize {
        self.x.batch
    }
    fn outputs(&self) -> usize {
        self.net.output_dim()
    }
    fn params(&self) -> usize {
        self.net.num_params()
    }
    fn has_targets(&self) -> bool {
        self.y.is_some()
    }
    fn gram_cost(&self) -> (usize, f64) {
        layered_gram_cost(self.net, self.x.batch)
    }
    fn gram(&self, opts: &GramOptions) -> Result<GramSpectrum> {
        gram_spectrum(build_gram(self.net, &self.x, opts)?, opts.tau)
    }
    fn operator(&self, max_memory: usize) -> Result<NetCurvatureOperator<'_>> {
        NetCurvatureOperator::new(
            self.net,
            &self.x,
            self.y.as_ref(),
            OperatorOptions::within_memory(max_memory),
        )
    }
}

/// The curvature quantities of a layered network (THEORY §7(c)): the per-sample λ_i, (tr H_i)²,
/// ‖H_i‖_F² from the materialized J_i, and the Gram or operator path as for a dense MLP.
fn curvature_quantities(
    p: &NetProblem,
    plan: &crate::measure::document::MeasurePlan,
    residual_nonzero: bool,
    notes: &mut Vec<String>,
) -> Result<QuantityMap> {
    let src = LayeredSource::of(p)?;
    let mut q = per_sample_curvature(&p.net, &src.x, plan.block)?.quantities();
    let upper = UpperBoundOptions {
        delta: plan.delta,
        max_products: plan.max_products,
        seed: plan.seed,
        ..UpperBoundOptions::default()
    };
    q.extend(curvature_quantities_of(
        &src,
        plan.gram_limit,
        residual_nonzero,
        hessian_product_cap(plan.hessian_products, p.n(), p.net.num_params()),
        plan.memory_limit_bytes(),
        &upper,
        plan.quiet,
        notes,
    )?);
    Ok(q)
}
