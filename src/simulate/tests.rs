//! Unit tests of the simulation module against dense references (THEORY.md §0 linearization,
//! T5(a) and T5(e)).

use nalgebra::DMatrix;

use super::exact::{
    DenseSecondMoment, log_trace_curve, per_sample_jacobians, reduced_log_trace_curve,
    reduced_start_moment,
};
use super::growth::{GrowthOptions, fit_growth, log_moment_curve};
use super::linearized::LinearizedSgd;
use super::true_sgd::{TrueSgdOptions, run_true_sgd};
use super::*;
use crate::Dataset;
use crate::measure::gram::{GramOptions, gauss_newton_gram};
use crate::measure::stability::{ReducedModel, noise_p};
use crate::model::{Activation, Mlp, Params};
use crate::testutil::{random_data, random_mlp};
use crate::train::BatchScheme;

/// A tiny interpolation problem: random network, targets := its outputs.
fn problem(widths: &[usize], act: Activation, n: usize, seed: u64) -> (Mlp, Dataset) {
    let mlp = random_mlp(widths, act, seed);
    let x = random_data(widths[0], n, seed + 1);
    let y = mlp.forward(x.as_view());
    let ds = Dataset::new(
        x.as_slice().to_vec(),
        n,
        widths[0],
        Some((y.as_slice().to_vec(), widths[widths.len() - 1])),
        "x",
        "y",
    )
    .expect("valid data");
    (mlp, ds)
}

fn flat(p: &Params) -> DMatrix<f64> {
    let v = p.to_flat();
    DMatrix::from_column_slice(v.len(), 1, &v)
}

#[test]
fn matrix_free_step_equals_dense_step() {
    for (widths, act) in [
        (vec![3, 4, 2], Activation::Tanh),
        (vec![2, 5, 3, 2], Activation::Relu),
        (vec![4, 3], Activation::Identity),
        (vec![3, 4, 4, 1], Activation::Softplus),
    ] {
        let (mlp, ds) = problem(&widths, act, 6, 7);
        let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
        let js = per_sample_jacobians(&mlp, &ds).expect("jacobians");
        let (u0, _, _) = sim.trial_start(3, 0).expect("start");
        for xi in [vec![0usize, 2, 3], vec![5], vec![1, 1, 4]] {
            let eta = 0.37;
            let mut u = u0.clone();
            sim.step(&mut u, &xi, eta).expect("step");
            let mut hx = DMatrix::zeros(mlp.num_params(), mlp.num_params());
            for &i in &xi {
                hx += js[i].transpose() * &js[i];
            }
            hx /= xi.len() as f64;
            let want = flat(&u0) - &hx * flat(&u0) * eta;
            let got = flat(&u);
            let err = (&got - &want).amax();
            assert!(
                err <= 1e-12 * (1.0 + want.amax()),
                "{widths:?} {act:?} batch {xi:?}: error {err}"
            );
        }
    }
}

#[test]
fn start_vector_is_in_the_span_and_unit() {
    let (mlp, ds) = problem(&[3, 4, 2], Activation::Tanh, 5, 11);
    let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
    let js = per_sample_jacobians(&mlp, &ds).expect("jacobians");
    let (u, w, norm) = sim.trial_start(9, 2).expect("start");
    assert!((u.norm() - 1.0).abs() < 1e-14);
    let mut want = DMatrix::zeros(mlp.num_params(), 1);
    for (i, j) in js.iter().enumerate() {
        let wi = DMatrix::from_column_slice(2, 1, &w[2 * i..2 * i + 2]);
        want += j.transpose() * wi;
    }
    assert!((want.norm() - norm).abs() <= 1e-12 * norm);
    assert!((flat(&u) - want / norm).amax() <= 1e-13);
}

#[test]
fn record_times_cover_the_run() {
    assert_eq!(record_times(10, 4), vec![0, 3, 6, 9, 10]);
    assert_eq!(record_times(4, 100), vec![0, 1, 2, 3, 4]);
    assert_eq!(record_times(1, 1), vec![0, 1]);
}

#[test]
fn growth_fit_recovers_an_exact_rate() {
    let times: Vec<u64> = (0..=100).collect();
    // Three trials with log‖u_t‖ = a_r + s·t: the moment E‖u‖^k grows at e^{k s} exactly.
    let s = -0.01;
    let logs: Vec<Vec<f64>> = [0.0, 0.3, -0.2]
        .iter()
        .map(|a| times.iter().map(|&t| a + s * t as f64).collect())
        .collect();
    for k in [2usize, 4] {
        let fit = fit_growth(&times, &logs, k, &GrowthOptions::default()).expect("fit");
        let want = (k as f64 * s).exp();
        let rate = fit.rate.expect("rate");
        assert!((rate - want).abs() < 1e-12, "k = {k}: {rate} vs {want}");
        let (lo, hi) = fit.ci.expect("ci");
        assert!(lo <= rate + 1e-12 && rate <= hi + 1e-12);
        assert!((fit.typical_rate.expect("typical") - want).abs() < 1e-12);
        assert_eq!(fit.window, (50, 100));
    }
    let curve = log_moment_curve(&logs, 2);
    let direct = ((0.0f64).exp() + (0.6f64).exp() + (-0.4f64).exp()) / 3.0;
    assert!((curve[0] - direct.ln()).abs() < 1e-14);
}

#[test]
fn reduced_exact_curve_equals_the_dense_full_space_curve() {
    // T5(e): E‖u_t‖² = E‖α_t‖² for u_0 in range G; the reduced curve from Σ_0 = α_0α_0ᵀ
    // (α_0 = Yᵀw/‖𝐉ᵀw‖) must equal the full-space dense curve from u_0u_0ᵀ.
    let (mlp, ds) = problem(&[3, 4, 2], Activation::Tanh, 4, 5);
    let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
    let (u0, w, norm) = sim.trial_start(1, 0).expect("start");
    let spec = gauss_newton_gram(&mlp, &ds, &GramOptions::default()).expect("gram");
    let model = ReducedModel::from_spectrum(&spec);
    let p = noise_p(
        4,
        2,
        crate::measure::stability::Sampling::WithoutReplacement,
    )
    .expect("p");
    let eta = 0.8 / spec.lambda_max_upper;
    let times: Vec<u64> = (0..=40).collect();
    let s0 = reduced_start_moment(&model, &[(&w, norm)]).expect("sigma0");
    let reduced = reduced_log_trace_curve(&model, eta, p, &s0, &times).expect("reduced");
    let js = per_sample_jacobians(&mlp, &ds).expect("jacobians");
    let q = DenseSecondMoment::from_jacobians(&js, eta, p).expect("dense");
    let u = flat(&u0);
    let dense = log_trace_curve(&(&u * u.transpose()), &times, |s| q.apply(s)).expect("dense");
    for (a, b) in reduced.iter().zip(&dense) {
        assert!((a - b).abs() < 1e-8, "{a} vs {b}");
    }
}

#[test]
fn monte_carlo_second_moment_matches_the_exact_expectation() {
    // Conditional on the same R starts, the trial mean of ‖u_t‖² is an unbiased estimate of
    // tr 𝒬^t(Σ̂_0). R = 3000, t ≤ 6: the seeds are fixed, so the outcome is deterministic; the
    // margin is 6 standard errors of the trial mean (estimated from the trials themselves).
    let (mlp, ds) = problem(&[2, 3, 1], Activation::Tanh, 5, 21);
    let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
    let spec = gauss_newton_gram(&mlp, &ds, &GramOptions::default()).expect("gram");
    let model = ReducedModel::from_spectrum(&spec);
    let eta = 1.2 / spec.lambda_max_upper;
    let run = sim
        .run(eta, 2, BatchScheme::IidSubsets, 6, 3000, 4, 100, &|_| {})
        .expect("run");
    let regenerated: Vec<(Vec<f64>, f64)> = (0..run.trials.len())
        .map(|r| {
            let (_, w, norm) = sim.trial_start(4, r).expect("start");
            (w, norm)
        })
        .collect();
    let starts: Vec<(&[f64], f64)> = regenerated
        .iter()
        .map(|(w, norm)| (w.as_slice(), *norm))
        .collect();
    let s0 = reduced_start_moment(&model, &starts).expect("sigma0");
    let p = noise_p(
        5,
        2,
        crate::measure::stability::Sampling::WithoutReplacement,
    )
    .expect("p");
    let exact = reduced_log_trace_curve(&model, eta, p, &s0, &run.times).expect("exact");
    let logs = run.log_norms();
    for (j, e) in exact.iter().enumerate() {
        let v: Vec<f64> = logs.iter().map(|l| (2.0 * l[j]).exp()).collect();
        let r = v.len() as f64;
        let mean = v.iter().sum::<f64>() / r;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r - 1.0)).sqrt();
        let z = ((mean - e.exp()).abs() - 1e-12) / (sd / r.sqrt()).max(1e-300);
        assert!(
            z <= 6.0,
            "t = {}: MC E‖u‖² = {mean}, exact {}, z = {z}",
            run.times[j],
            e.exp()
        );
    }
}

#[test]
fn true_sgd_on_a_linear_model_is_the_linearized_recursion() {
    // f(x) = Wx + b: the loss is exactly quadratic, so θ_t − θ* = δ·u_t (same batches) for every
    // δ, up to rounding.
    let (mlp, ds) = problem(&[4, 2], Activation::Identity, 6, 3);
    let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
    let (u0, _, _) = sim.trial_start(8, 0).expect("start");
    let eta = 0.3;
    let times = record_times(50, 50);
    let lin = sim
        .run_trial(eta, 3, BatchScheme::IidSubsets, 8, 0, &times, &|_| {})
        .expect("linearized");
    let opts = TrueSgdOptions {
        lr: eta,
        batch: 3,
        seed: 8,
        trial: 0,
        ..TrueSgdOptions::default()
    };
    for delta in [1e-3, 1.0] {
        let run = run_true_sgd(&mlp, &ds, &u0, delta, &times, &opts, &|_| {}).expect("sgd");
        assert_eq!(run.times, times);
        for (d, l) in run.distance.iter().zip(&lin.log_norm) {
            let want = delta * l.exp();
            assert!((d - want).abs() <= 1e-9 * (want + delta), "{d} vs {want}");
        }
        assert!(run.minimum_loss < 1e-25);
    }
}

#[test]
fn true_sgd_escapes_far_above_the_gd_limit() {
    let (mlp, ds) = problem(&[3, 2], Activation::Identity, 5, 4);
    let sim = LinearizedSgd::new(&mlp, &ds).expect("simulator");
    let spec = gauss_newton_gram(&mlp, &ds, &GramOptions::default()).expect("gram");
    let (u0, _, _) = sim.trial_start(0, 0).expect("start");
    let opts = TrueSgdOptions {
        lr: 5.0 / spec.lambda_max_upper,
        batch: 5,
        ..TrueSgdOptions::default()
    };
    let run = run_true_sgd(
        &mlp,
        &ds,
        &u0,
        1e-3,
        &record_times(400, 100),
        &opts,
        &|_| {},
    )
    .expect("sgd");
    assert!(run.escaped, "{run:?}");
}

#[test]
fn forcing_kick_matches_batch_enumeration() {
    use super::true_sgd::forcing_kick;
    // Non-interpolating targets: E‖g_ξ‖² by enumerating the 6 batches of size 2 from n = 4.
    let mlp = random_mlp(&[2, 3, 2], Activation::Tanh, 31);
    let x = random_data(2, 4, 32);
    let y = random_data(2, 4, 33);
    let ds = Dataset::new(
        x.as_slice().to_vec(),
        4,
        2,
        Some((y.as_slice().to_vec(), 2)),
        "x",
        "y",
    )
    .expect("data");
    let grads: Vec<DMatrix<f64>> = (0..4)
        .map(|i| {
            let cache = mlp.forward_cache(ds.x_block(i, i + 1));
            let res = cache.output() - y.columns(i, 1);
            flat(&mlp.vjp_params(&cache, &res))
        })
        .collect();
    let mut e = 0.0;
    let mut count = 0.0;
    for i in 0..4 {
        for j in i + 1..4 {
            let g = (&grads[i] + &grads[j]) / 2.0;
            e += g.norm_squared();
            count += 1.0;
        }
    }
    let want = 0.3 * (e / count).sqrt();
    let p = noise_p(
        4,
        2,
        crate::measure::stability::Sampling::WithoutReplacement,
    )
    .expect("p");
    let got = forcing_kick(&mlp, &ds, 0.3, p).expect("kick");
    assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
    // At an interpolating minimum the forcing vanishes.
    let (mlp, ds) = problem(&[2, 3, 2], Activation::Tanh, 4, 34);
    assert!(forcing_kick(&mlp, &ds, 0.3, p).expect("kick") < 1e-14);
}
