//! Tests of the SGD trainer for [`Sequential`] networks against THEORY.md §0 and the dense trainer.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use super::*;
use crate::model::Activation;
use crate::testutil::random_data;
use crate::train::{TrainConfig, init_pytorch_default, train};

fn dataset(x: Vec<f64>, n: usize, d: usize, y: Vec<f64>, c: usize) -> Dataset {
    Dataset::new(x, n, d, Some((y, c)), "x.npy", "y.npy").unwrap()
}

fn cfg(lr: f64, batch: usize, steps: u64) -> NetTrainConfig {
    NetTrainConfig {
        lr,
        batch,
        steps,
        seed: 5,
        sampling: BatchScheme::IidSubsets,
        log_every: 0,
        stop_at_loss: None,
    }
}

const MLP_SPEC: &str = r#"{"input_shape":[3],"layers":[
  {"type":"linear","name":"0","out_features":6},{"type":"tanh"},
  {"type":"linear","name":"2","out_features":5},{"type":"tanh"},
  {"type":"linear","name":"4","out_features":2}]}"#;

/// Small CNN on 1×6×6 images (conv pad 1, relu, 2×2 max-pool, dense head).
const CNN_SPEC: &str = r#"{"input_shape":[1,6,6],"layers":[
  {"type":"conv2d","name":"c","out_channels":4,"kernel":3,"padding":1},{"type":"relu"},
  {"type":"maxpool2d","kernel":2},{"type":"flatten"},
  {"type":"linear","name":"l","out_features":2}]}"#;

/// The initialization of an MLP spec is the dense trainer's, value for value (same stream, θ
/// order), so both trainers start from the same point.
#[test]
fn mlp_spec_init_equals_dense_init() {
    let spec = ArchSpec::from_json(MLP_SPEC).unwrap();
    let net = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    let mlp = init_pytorch_default(
        &[3, 6, 5, 2],
        Activation::Tanh,
        &mut ChaCha8Rng::seed_from_u64(9),
    )
    .unwrap();
    assert_eq!(net.params(), Sequential::from_mlp(&mlp).params());
}

/// `train_net` on `Sequential::from_mlp` follows the dense trainer's SGD trajectory: same init,
/// same batches (stream 1), same update. The two engines compute the same gradient sums with
/// different GEMM orderings, so iterates may differ by rounding: each step's gradient agrees to a
/// few ulp of its terms (|θ| ≤ 1, |x| ≤ √3), and 30 steps of a contraction-free map with η = 0.1
/// accumulate ≲ 30·η·P·u ≈ 1e-13; 1e-11 absolute leaves a margin while catching any
/// one-sample or one-step discrepancy (≥ 1e-4 here).
#[test]
fn matches_dense_trainer_trajectory() {
    let (n, d, c) = (12, 3, 2);
    let x = random_data(d, n, 1).as_slice().to_vec();
    let y = random_data(c, n, 2).as_slice().to_vec();
    let ds = dataset(x, n, d, y, c);
    let dense_cfg = TrainConfig {
        sizes: vec![3, 6, 5, 2],
        activation: Activation::Tanh,
        lr: 0.1,
        batch: 4,
        steps: 30,
        seed: 5,
        sampling: BatchScheme::IidSubsets,
        log_every: 0,
    };
    let dense = train(&ds, &dense_cfg, None, &|_, _| {}).unwrap();
    let spec = ArchSpec::from_json(MLP_SPEC).unwrap();
    let init = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
    let ours = train_net(&ds, &cfg(0.1, 4, 30), init, &|_, _| {}).unwrap();
    let a = ours.net.params();
    let b = Sequential::from_mlp(&dense.mlp).params();
    let max = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(max <= 1e-11, "max |Δθ| = {max:e}");
    let moved = Sequential::from_mlp(
        &init_pytorch_default(
            &[3, 6, 5, 2],
            Activation::Tanh,
            &mut ChaCha8Rng::seed_from_u64(5),
        )
        .unwrap(),
    )
    .params()
    .iter()
    .zip(&a)
    .map(|(p, q)| (p - q).abs())
    .fold(0.0, f64::max);
    assert!(moved > 1e-4, "training did not move θ ({moved:e})");
    let rel = (ours.final_train_loss - dense.final_train_loss).abs() / dense.final_train_loss;
    assert!(
        rel <= 1e-10,
        "losses {} vs {}",
        ours.final_train_loss,
        dense.final_train_loss
    );
}

/// One full-batch step (B = n, so the batch is the whole set whatever the sampler draws) on a
/// tiny conv → max-pool network, against the update computed by hand.
///
/// Network: conv 1→1, kernel 1×2, no padding, on 1×1×3 images → 1×1×2 (`z_t = w₀x_t + w₁x_{t+1}
/// + b`), max-pool (1, 2) → the larger z, flatten → f. So `∂f/∂w_k = x_{t*+k}`, `∂f/∂b = 1`.
#[test]
fn one_step_equals_hand_computed_step() {
    let spec = ArchSpec::from_json(
        r#"{"input_shape":[1,1,3],"layers":[
          {"type":"conv2d","name":"c","out_channels":1,"kernel":[1,2]},
          {"type":"maxpool2d","kernel":[1,2]},{"type":"flatten"}]}"#,
    )
    .unwrap();
    let mut tensors = std::collections::BTreeMap::new();
    let (w0, w1, b) = (0.5, -0.25, 0.125);
    tensors.insert("c.weight".to_string(), (vec![1, 1, 1, 2], vec![w0, w1]));
    tensors.insert("c.bias".to_string(), (vec![1], vec![b]));
    let net = spec.build(&tensors).unwrap();
    // Sample 0: z = (0.5·1 − 0.25·2, 0.5·2 − 0.25·(−1)) + b = (0, 1.25) + b → t* = 1.
    // Sample 1: z = (0.5·3 − 0.25·0, 0.5·0 − 0.25·4) + b = (1.5, −1) + b → t* = 0.
    let x = vec![1.0, 2.0, -1.0, 3.0, 0.0, 4.0];
    let y = vec![1.0, 0.5];
    let ds = dataset(x, 2, 3, y, 1);
    let f = [1.25 + b, 1.5 + b];
    let r = [f[0] - 1.0, f[1] - 0.5];
    let lr = 0.3;
    // ∇ℒ_ξ = (1/2) Σ_i r_i ∂f_i/∂θ with the patches of the selected positions.
    let g_w0 = 0.5 * (r[0] * 2.0 + r[1] * 3.0);
    // Patches (x_{t*+1}): sample 0 → x₂ = −1, sample 1 → x₁ = 0.
    let g_w1 = 0.5 * (-r[0] + r[1] * 0.0);
    let g_b = 0.5 * (r[0] + r[1]);
    let want = [w0 - lr * g_w0, w1 - lr * g_w1, b - lr * g_b];
    let out = train_net(&ds, &cfg(lr, 2, 1), net, &|_, _| {}).unwrap();
    let got = out.net.params();
    // Each entry is a sum of two products of dyadic rationals; both computations round the
    // same few operations, so 4u relative (u = 2⁻⁵³) covers any reordering.
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 4.0 * f64::EPSILON * w.abs().max(1.0),
            "{got:?} vs {want:?}"
        );
    }
    let loss0 = 0.25 * (r[0] * r[0] + r[1] * r[1]);
    assert_eq!(out.history[0], (0, loss0));
}

/// SGD on a small CNN decreases the training loss substantially, and a run is bit-identical for
/// a fixed seed.
#[test]
fn cnn_loss_decreases_and_is_deterministic() {
    let spec = ArchSpec::from_json(CNN_SPEC).unwrap();
    let n = 24;
    let x = random_data(36, n, 3).as_slice().to_vec();
    // Targets: two smooth functions of the image (mean intensity and a left/right contrast).
    let y: Vec<f64> = x
        .chunks(36)
        .flat_map(|im| {
            let mean = im.iter().sum::<f64>() / 36.0;
            let lr: f64 = im
                .iter()
                .enumerate()
                .map(|(k, v)| if k % 6 < 3 { *v } else { -*v })
                .sum();
            [mean, 0.1 * lr]
        })
        .collect();
    let ds = dataset(x, n, 36, y, 2);
    let run = || {
        let init = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        train_net(&ds, &cfg(0.05, 6, 300), init, &|_, _| {}).unwrap()
    };
    let a = run();
    assert!(!a.diverged);
    let (l0, l1) = (a.history[0].1, a.final_train_loss);
    assert!(l1 < 0.3 * l0, "loss {l0} → {l1}");
    let b = run();
    assert_eq!(a.net.params(), b.net.params());
    // The recorded final loss is the loss of the returned network.
    assert_eq!(a.final_train_loss, net_dataset_loss(&a.net, &ds).unwrap());
}

#[test]
fn init_errors_name_the_spec_field() {
    let spec = ArchSpec::from_json(
        r#"{"input_shape":[1,4,4],"layers":[{"type":"conv2d","name":"c","kernel":3},{"type":"flatten"}]}"#,
    )
    .unwrap();
    let err = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    assert!(err.to_string().contains("layers[0].out_channels"), "{err}");
    let spec = ArchSpec::from_json(
        r#"{"input_shape":[1,4,4],"layers":[{"type":"linear","name":"l","out_features":2}]}"#,
    )
    .unwrap();
    let err = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    assert!(
        err.to_string().contains("layers[0].type") && err.to_string().contains("flatten"),
        "{err}"
    );
}

#[test]
fn data_that_does_not_fit_the_network_is_refused() {
    let spec = ArchSpec::from_json(CNN_SPEC).unwrap();
    let net = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let ds = dataset(vec![0.0; 4 * 35], 4, 35, vec![0.0; 8], 2);
    let err = train_net(&ds, &cfg(0.1, 2, 1), net, &|_, _| {}).unwrap_err();
    assert!(
        matches!(err, Error::BadInput { .. }) && err.to_string().contains("x.npy"),
        "{err}"
    );
    let net = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let ds = dataset(vec![0.0; 4 * 36], 4, 36, vec![0.0; 12], 3);
    let err = train_net(&ds, &cfg(0.1, 2, 1), net, &|_, _| {}).unwrap_err();
    assert!(err.to_string().contains("y.npy"), "{err}");
}

/// A huge learning rate diverges; the result keeps finite parameters and refuses to be saved.
#[test]
fn divergence_is_reported() {
    let spec = ArchSpec::from_json(CNN_SPEC).unwrap();
    let net = init_net_pytorch_default(&spec, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    let x = random_data(36, 8, 4).as_slice().to_vec();
    let ds = dataset(x, 8, 36, vec![1.0; 16], 2);
    let c = cfg(1e6, 4, 50);
    let out = train_net(&ds, &c, net, &|_, _| {}).unwrap();
    assert!(out.diverged);
    assert!(out.net.params().iter().all(|v| v.is_finite()));
    assert!(matches!(out.into_converged(&c), Err(Error::Numerical(_))));
}
