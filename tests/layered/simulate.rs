//! `simulate` on layered networks (issue 14 item 4, THEORY.md §0 linearization, T4–T6, §7(c)):
//! the matrix-free recursion against the dense engine on `Sequential::from_mlp` and against a
//! dense-matrix recursion on materialized J_i of a tiny CNN, one true-SGD step against finite
//! differences, the predictions against the dense engine, and the command on CNN checkpoints.

use std::collections::BTreeMap;

use crate::common::{Fx as TempDir, flatcert, read_json, run_cmd};
use flatcert::Dataset;
use flatcert::measure::stability::Sampling;
use flatcert::model::{Activation, Mlp};
use flatcert::net::{Sequential, Shape, Tensor};
use flatcert::simulate::exact::per_sample_jacobians;
use flatcert::simulate::{
    LayeredLinearization, Linearization, LinearizedSgd, PredictMode, SimNetwork, TrueSgdOptions,
    batch_stream, predict, record_times, run_true_sgd,
};
use flatcert::testutil::{random_data, random_mlp};
use flatcert::train::{BatchSampler, BatchScheme};
use nalgebra::{DMatrix, DVector};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// A tiny CNN: conv (padding, 2 channels) → tanh → max-pool → conv (stride 1) → relu → flatten
/// → linear, on 1×6×6 inputs, C = 2, P = 64.
const SPEC: &str = r#"{"input_shape":[1,6,6],"layers":[
 {"type":"conv2d","name":"c1","out_channels":2,"kernel":3,"padding":1},
 {"type":"tanh"},
 {"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"c2","out_channels":2,"kernel":2,"stride":1},
 {"type":"relu"},
 {"type":"flatten"},
 {"type":"linear","name":"fc","out_features":2}]}"#;
const D: usize = 36;

fn tiny_cnn(seed: u64) -> Sequential {
    let shapes = [
        ("c1.weight", vec![2, 1, 3, 3]),
        ("c1.bias", vec![2]),
        ("c2.weight", vec![2, 2, 2, 2]),
        ("c2.bias", vec![2]),
        ("fc.weight", vec![2, 8]),
        ("fc.bias", vec![2]),
    ];
    super::commands::seeded_net(SPEC, &shapes, seed, 0.7)
}

/// `n` random inputs with targets `f(x)` (an interpolating minimum, THEORY.md §0) plus
/// `noise`·N(0,1)-ish perturbations.
fn cnn_data(net: &Sequential, n: usize, seed: u64, noise: f64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f64> = (0..n * D).map(|_| rng.random_range(-1.0..1.0)).collect();
    let out = net
        .forward(&Tensor::new(n, net.input_shape(), x.clone()).unwrap())
        .unwrap();
    let y: Vec<f64> = out
        .data
        .iter()
        .map(|v| v + noise * rng.random_range(-1.0..1.0))
        .collect();
    Dataset::new(x, n, D, Some((y, 2)), "<x>", "<y>").unwrap()
}

fn dense_problem(widths: &[usize], n: usize, seed: u64) -> (Mlp, Dataset) {
    let mlp = random_mlp(widths, Activation::Tanh, seed);
    let x = random_data(widths[0], n, seed + 1);
    let y = mlp.forward(x.as_view());
    let c = widths[widths.len() - 1];
    let ds = Dataset::new(
        x.as_slice().to_vec(),
        n,
        widths[0],
        Some((y.as_slice().to_vec(), c)),
        "x",
        "y",
    )
    .unwrap();
    (mlp, ds)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The layered recursion on `Sequential::from_mlp(mlp)` is the dense one: the same start
/// (cotangents w from the same stream), the same batches, the same trajectory to rounding.
#[test]
fn layered_recursion_equals_the_dense_one_on_from_mlp() {
    let (mlp, ds) = dense_problem(&[4, 6, 5, 3], 12, 21);
    let seq = Sequential::from_mlp(&mlp);
    let dense = LinearizedSgd::new(&mlp, &ds).unwrap();
    let lay = LayeredLinearization::with_memory_limit(&seq, &ds, 1 << 30).unwrap();
    let (ud, wd, nd) = dense.trial_start(5, 1).unwrap();
    let (ul, wl, nl) = lay.trial_start(5, 1).unwrap();
    assert_eq!(wd, wl, "the start cotangents come from the same stream");
    // Two engines summing the same products in different orders: a few ulps per entry.
    assert!((nd - nl).abs() <= 1e-13 * nd, "{nd} vs {nl}");
    assert!(max_abs_diff(&ud.to_flat(), &ul) <= 1e-13);

    let (eta, batch, steps) = (0.4, 4, 200);
    let times = record_times(steps, 40);
    let td = dense
        .run_trial(eta, batch, BatchScheme::IidSubsets, 5, 1, &times, &|_| {})
        .unwrap();
    let tl = lay
        .run_trial(eta, batch, BatchScheme::IidSubsets, 5, 1, &times, &|_| {})
        .unwrap();
    // log‖u_t‖ accumulates one relative rounding of ~P·ε ≈ 1e-14 per step: 200 steps stay
    // far below 1e-10, while a different batch or step would change it at O(1e-3).
    let err = max_abs_diff(&td.log_norm, &tl.log_norm);
    assert!(err <= 1e-10, "log-norm trajectories differ by {err}");
    assert!(td.log_norm.last().unwrap().abs() > 1e-3, "the run moved");
}

/// On a tiny CNN, the matrix-free step equals `(I − (η/B)Σ_{i∈ξ}J_iᵀJ_i)u` with materialized
/// J_i (checked against central finite differences of f), the start is `Σ J_iᵀw_i/‖·‖`, and
/// a whole trial's log‖u_t‖ equals the dense-matrix recursion on the same batch stream.
#[test]
fn layered_recursion_equals_a_dense_matrix_recursion_on_a_tiny_cnn() {
    let net = tiny_cnn(3);
    let n = 10;
    let ds = cnn_data(&net, n, 4, 0.0);
    let p = net.num_params();
    let js = per_sample_jacobians(&net, &ds).unwrap();
    assert_eq!((js.len(), js[0].nrows(), js[0].ncols()), (n, 2, p));

    // J_i v against central differences of f(x_i; θ ± hv): error O(h²) ≈ 1e-10 relative.
    let theta = net.params();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let v: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
    let h = 1e-5;
    let shifted = |s: f64| {
        let t: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + s * h * b).collect();
        let x = Tensor::new(n, Shape::Image { c: 1, h: 6, w: 6 }, ds.x().to_vec()).unwrap();
        net.with_params(&t).unwrap().forward(&x).unwrap().data
    };
    let (fp, fm) = (shifted(1.0), shifted(-1.0));
    let vv = DVector::from_column_slice(&v);
    for (i, j) in js.iter().enumerate() {
        let jv = j * &vv;
        for c in 0..2 {
            let fd = (fp[i * 2 + c] - fm[i * 2 + c]) / (2.0 * h);
            assert!(
                (jv[c] - fd).abs() <= 1e-7 * (1.0 + fd.abs()),
                "J_{i} v: {} vs {fd}",
                jv[c]
            );
        }
    }

    let lay = LayeredLinearization::with_memory_limit(&net, &ds, 1 << 30).unwrap();
    let (u0, w, norm) = lay.trial_start(7, 0).unwrap();
    let mut span = DVector::zeros(p);
    for (i, j) in js.iter().enumerate() {
        span += j.transpose() * DVector::from_column_slice(&w[2 * i..2 * i + 2]);
    }
    assert!((span.norm() - norm).abs() <= 1e-12 * norm);
    assert!(max_abs_diff(&u0, (span / norm).as_slice()) <= 1e-13);

    let eta = 0.9;
    let h_of = |xi: &[usize]| {
        let mut hx = DMatrix::zeros(p, p);
        for &i in xi {
            hx += js[i].transpose() * &js[i];
        }
        hx / xi.len() as f64
    };
    for xi in [vec![0usize, 3, 7], vec![9], vec![2, 2, 5]] {
        let mut u = u0.clone();
        lay.step(&mut u, &xi, eta).unwrap();
        let want =
            DVector::from_column_slice(&u0) - h_of(&xi) * DVector::from_column_slice(&u0) * eta;
        let err = max_abs_diff(&u, want.as_slice());
        assert!(
            err <= 1e-12 * (1.0 + want.amax()),
            "batch {xi:?}: error {err}"
        );
    }

    // A whole trial against the dense-matrix recursion on the same batches (stream
    // batch_stream(0)), renormalized each step like the driver.
    let (batch, steps, seed) = (3, 60, 7);
    let times = record_times(steps, 60);
    let trial = lay
        .run_trial(
            eta,
            batch,
            BatchScheme::IidSubsets,
            seed,
            0,
            &times,
            &|_| {},
        )
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(batch_stream(0));
    let mut sampler = BatchSampler::new(BatchScheme::IidSubsets, n, batch).unwrap();
    let mut u = DVector::from_column_slice(&u0);
    let mut acc = 0.0;
    let mut want = vec![0.0];
    for _ in 0..steps {
        let xi = sampler.next_batch(&mut rng).to_vec();
        u = &u - h_of(&xi) * &u * eta;
        let nrm = u.norm();
        acc += nrm.ln();
        u /= nrm;
        want.push(acc);
    }
    // One rounding of ~P·ε per step in either recursion: 60 steps stay below 1e-11.
    let err = max_abs_diff(&trial.log_norm, &want);
    assert!(err <= 1e-11, "trial vs dense-matrix recursion: {err}");
}

/// One true-SGD step on a tiny CNN is θ_0 − η∇ℒ_ξ(θ_0), with the gradient by central finite
/// differences of the batch loss and θ_0 = θ* + δu_0: its distance to θ* and its loss match.
#[test]
fn one_true_sgd_step_is_a_finite_difference_gradient_step() {
    let net = tiny_cnn(5);
    let n = 8;
    let ds = cnn_data(&net, n, 6, 0.05);
    let lay = LayeredLinearization::with_memory_limit(&net, &ds, 1 << 30).unwrap();
    let (u0, _, _) = lay.trial_start(2, 0).unwrap();
    let (eta, batch, delta, seed) = (0.3, 3, 0.2, 2);
    let opts = TrueSgdOptions {
        lr: eta,
        batch,
        seed,
        trial: 0,
        ..TrueSgdOptions::default()
    };
    let run = run_true_sgd(&net, &ds, &u0, delta, &[0, 1], &opts, &|_| {}).unwrap();
    assert_eq!(run.steps_done, 1);

    let star = net.params();
    let theta0: Vec<f64> = star.iter().zip(&u0).map(|(a, b)| a + delta * b).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(batch_stream(0));
    let xi = BatchSampler::new(BatchScheme::IidSubsets, n, batch)
        .unwrap()
        .next_batch(&mut rng)
        .to_vec();
    let shape = net.input_shape();
    let loss_on = |theta: &[f64], idx: &[usize]| {
        let m = net.with_params(theta).unwrap();
        let x: Vec<f64> = idx.iter().flat_map(|&i| ds.x_row(i).to_vec()).collect();
        let out = m
            .forward(&Tensor::new(idx.len(), shape, x).unwrap())
            .unwrap();
        let mut s = 0.0;
        for (k, &i) in idx.iter().enumerate() {
            let y = ds.y_row(i).unwrap();
            s += (0..2)
                .map(|c| (out.data[k * 2 + c] - y[c]).powi(2))
                .sum::<f64>();
        }
        0.5 * s / idx.len() as f64
    };
    let h = 1e-6;
    let grad: Vec<f64> = (0..star.len())
        .map(|k| {
            let (mut a, mut b) = (theta0.clone(), theta0.clone());
            a[k] += h;
            b[k] -= h;
            (loss_on(&a, &xi) - loss_on(&b, &xi)) / (2.0 * h)
        })
        .collect();
    // The library's batch gradient is the trainer's; central differences agree to O(h²) plus
    // cancellation ε·ℒ/h ≈ 1e-10 (relative to the gradient's size ~1e-1).
    let g = net.at(&theta0).unwrap().batch_gradient(&ds, &xi).unwrap();
    assert!(max_abs_diff(&g, &grad) <= 1e-8, "{g:?} vs {grad:?}");

    let theta1: Vec<f64> = theta0.iter().zip(&grad).map(|(t, g)| t - eta * g).collect();
    let dist1 = theta1
        .iter()
        .zip(&star)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        .sqrt();
    let all: Vec<usize> = (0..n).collect();
    let loss1 = loss_on(&theta1, &all);
    // η·1e-8 absolute in θ: relative 1e-7 on the distance δ·O(1) and on the loss.
    assert!(
        (run.distance[1] - dist1).abs() <= 1e-7 * dist1,
        "{} vs {dist1}",
        run.distance[1]
    );
    assert!(
        (run.loss[1] - loss1).abs() <= 1e-7 * loss1,
        "{} vs {loss1}",
        run.loss[1]
    );
    assert!((run.distance[0] - delta).abs() <= 1e-14);
}

/// The predictions read the layered Gram spectrum: on `Sequential::from_mlp` they equal the
/// dense engine's (rank, the certified λ_max(G) bracket, λ_max(𝒬_2)) to rounding.
#[test]
fn layered_predictions_equal_the_dense_ones_on_from_mlp() {
    let (mlp, ds) = dense_problem(&[3, 5, 2], 10, 31);
    let seq = Sequential::from_mlp(&mlp);
    let opts = PredictMode::Auto.options().unwrap();
    let (eta, b) = (0.3, 3);
    let pd = predict(&mlp, &ds, eta, b, Sampling::WithoutReplacement, &[2], &opts).unwrap();
    let pl = predict(&seq, &ds, eta, b, Sampling::WithoutReplacement, &[2], &opts).unwrap();
    assert!(
        pd.rank.is_some() && pd.rank == pl.rank,
        "{:?} vs {:?}",
        pd.rank,
        pl.rank
    );
    let (gd, gl) = (pd.gd.as_ref().unwrap(), pl.gd.as_ref().unwrap());
    // Two Gram formations of the same K: the eigenvalues agree to ~nC·ε relative.
    for (a, b) in [
        (gd.lambda_max.0, gl.lambda_max.0),
        (gd.lambda_max.1, gl.lambda_max.1),
    ] {
        assert!((a - b).abs() <= 1e-10 * a.abs(), "{a} vs {b}");
    }
    let (qd, ql) = (
        pd.moment(2).unwrap().lambda_max.unwrap(),
        pl.moment(2).unwrap().lambda_max.unwrap(),
    );
    assert!((qd - ql).abs() <= 1e-9, "λ_max(𝒬_2): {qd} vs {ql}");
    assert_eq!(
        pd.mean_square.as_ref().unwrap().verdict,
        pl.mean_square.as_ref().unwrap().verdict
    );
}

/// True SGD and the residual forcing on `Sequential::from_mlp` equal the dense engine's: the
/// same start, batches and steps give the same losses and distances to rounding.
#[test]
fn true_sgd_and_forcing_equal_the_dense_ones_on_from_mlp() {
    let (mlp, mut ds) = dense_problem(&[3, 6, 2], 9, 41);
    // A nonzero residual, so that the forcing and the loss are not 0.
    let y: Vec<f64> = ds.y().unwrap().iter().map(|v| v + 0.1 * v.sin()).collect();
    ds = Dataset::new(ds.x().to_vec(), 9, 3, Some((y, 2)), "x", "y").unwrap();
    let seq = Sequential::from_mlp(&mlp);
    let dense = LinearizedSgd::new(&mlp, &ds).unwrap();
    let (ud, _, _) = dense.trial_start(3, 0).unwrap();
    let ul = ud.to_flat();
    let opts = TrueSgdOptions {
        lr: 0.5,
        batch: 3,
        seed: 3,
        ..TrueSgdOptions::default()
    };
    let times = record_times(50, 10);
    let rd = run_true_sgd(&mlp, &ds, &ud, 0.05, &times, &opts, &|_| {}).unwrap();
    let rl = run_true_sgd(&seq, &ds, &ul, 0.05, &times, &opts, &|_| {}).unwrap();
    assert_eq!(rd.times, rl.times);
    // 50 steps of two engines that sum in different orders: ~1e-15 relative per step.
    for (a, b) in rd
        .loss
        .iter()
        .zip(&rl.loss)
        .chain(rd.distance.iter().zip(&rl.distance))
    {
        assert!((a - b).abs() <= 1e-11 * a.abs(), "{a} vs {b}");
    }
    assert!(rd.loss[10] != rd.loss[0], "the run moved");
    let p = 0.25;
    let (kd, kl) = (
        flatcert::simulate::forcing_kick(&mlp, &ds, 0.5, p).unwrap(),
        flatcert::simulate::forcing_kick(&seq, &ds, 0.5, p).unwrap(),
    );
    assert!(kd > 0.0 && (kd - kl).abs() <= 1e-12 * kd, "{kd} vs {kl}");
}

/// `flatcert simulate` on a CNN checkpoint file (architecture in its metadata) with the same
/// flags as for an MLP: predictions from the layered Gram path, the exact reduced curve, the
/// architecture in `inputs`, the layered note; certified stable at half the certified η*
/// lower end, and the trials agree with it.
#[test]
fn simulate_runs_on_a_cnn_checkpoint_with_predictions() {
    let net = tiny_cnn(3);
    let n = 12;
    let ds = cnn_data(&net, n, 4, 0.0);
    let opts = PredictMode::Auto.options().unwrap();
    let pred = predict(&net, &ds, 1.0, 4, Sampling::WithoutReplacement, &[], &opts).unwrap();
    let eta = 0.5 * pred.mean_square.unwrap().eta_star_lower.unwrap();

    let dir = TempDir::new();
    let model = dir.bytes(
        "cnn.safetensors",
        &flatcert::net::net_to_safetensors(&net, &BTreeMap::new()).unwrap(),
    );
    let x = super::commands::npy(&dir, "x.npy", ds.x(), &[n, 1, 6, 6]);
    let y = super::commands::npy(&dir, "y.npy", ds.y().unwrap(), &[n, 2]);
    let out = dir.out("sim.json");
    let lr = format!("{eta}");
    let mut c = flatcert();
    c.args(["simulate", "--quiet", "--model"])
        .arg(&model)
        .arg("--x")
        .arg(&x)
        .arg("--y")
        .arg(&y)
        .args([
            "--lr", &lr, "--batch", "4", "--steps", "200", "--trials", "8",
        ])
        .args(["--deltas", "1e-3", "--json"])
        .arg(&out);
    let (code, stdout, stderr) = run_cmd(&mut c);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let doc = read_json(&out);
    assert!(doc["inputs"]["architecture"]["layers"].is_array(), "{doc}");
    assert_eq!(doc["inputs"]["parameters"], net.num_params());
    assert_eq!(
        doc["prediction"]["mean_square"]["verdict"],
        "certified stable"
    );
    assert!(doc["linearized"]["exact_log_second_moment"].is_array());
    assert_eq!(doc["linearized"]["moments"][0]["comparison"], "consistent");
    assert_eq!(doc["true_sgd"][0]["escaped"], false);
    let notes = doc["notes"].to_string();
    assert!(notes.contains("layered network"), "{notes}");
    assert!(stdout.contains("layered"), "{stdout}");
}

/// The bundled CNN runs with `--example digits-cnn` (exit 0 or 1) and records its architecture;
/// dense-only flags are refused with exit 2 naming the flag.
#[test]
fn simulate_runs_the_bundled_cnn_and_refuses_dense_only_flags() {
    let dir = TempDir::new();
    let out = dir.out("sim.json");
    let (code, stdout, stderr) = run_cmd(
        flatcert()
            .args([
                "simulate",
                "--quiet",
                "--example",
                "digits-cnn",
                "--predict",
                "none",
            ])
            .args([
                "--steps", "4", "--trials", "1", "--deltas", "1e-2", "--json",
            ])
            .arg(&out),
    );
    assert!(code == 0 || code == 1, "{code}: {stdout}\n{stderr}");
    let doc = read_json(&out);
    assert!(doc["inputs"]["architecture"]["layers"].is_array(), "{doc}");
    assert_eq!(doc["inputs"]["embedded"], true);

    let (code, _, err) = run_cmd(flatcert().args([
        "simulate",
        "--quiet",
        "--example",
        "digits-cnn",
        "--activation",
        "tanh",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--activation"), "{err}");

    let net = tiny_cnn(1);
    let ds = cnn_data(&net, 4, 2, 0.0);
    let model = dir.bytes(
        "cnn.safetensors",
        &flatcert::net::net_to_safetensors(&net, &BTreeMap::new()).unwrap(),
    );
    let x = super::commands::npy(&dir, "x.npy", ds.x(), &[4, 1, 6, 6]);
    let y = super::commands::npy(&dir, "y.npy", ds.y().unwrap(), &[4, 2]);
    let (code, _, err) = run_cmd(
        flatcert()
            .args(["simulate", "--quiet", "--model"])
            .arg(&model)
            .arg("--x")
            .arg(&x)
            .arg("--y")
            .arg(&y)
            .args(["--batch", "2", "--lr", "0.1", "--layers", "c1,fc"]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--layers"), "{err}");

    // The cached forward pass is the one allocation simulate cannot do without.
    let (code, _, err) = run_cmd(
        flatcert()
            .args(["simulate", "--quiet", "--model"])
            .arg(&model)
            .arg("--x")
            .arg(&x)
            .arg("--y")
            .arg(&y)
            .args(["--batch", "2", "--lr", "0.1", "--max-memory", "100"]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--max-memory") && err.contains("caches the forward pass"),
        "{err}"
    );
}
