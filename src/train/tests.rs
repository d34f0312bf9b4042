//! Tests of the SGD trainer against THEORY.md §0 (model (S), loss and update conventions).

use std::cell::RefCell;

use nalgebra::{DMatrix, dmatrix, dvector};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use super::*;
use crate::testutil::{random_data, random_mlp};

const ALL_ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Softplus,
    Activation::Identity,
];

/// A dataset with `n` samples, random inputs (`d`) and targets (`c`).
fn random_dataset(n: usize, d: usize, c: usize, seed: u64) -> Dataset {
    // random_data is d × n column-major, i.e. row-major n × d: exactly Dataset's layout.
    let x = random_data(d, n, seed).as_slice().to_vec();
    let y = random_data(c, n, seed + 1000).as_slice().to_vec();
    Dataset::new(x, n, d, Some((y, c)), "x", "y").unwrap()
}

fn config(
    sizes: &[usize],
    activation: Activation,
    lr: f64,
    batch: usize,
    steps: u64,
) -> TrainConfig {
    TrainConfig {
        sizes: sizes.to_vec(),
        activation,
        lr,
        batch,
        steps,
        seed: 7,
        sampling: BatchScheme::IidSubsets,
        log_every: 0,
    }
}

fn arg_name(err: Error) -> String {
    match err {
        Error::InvalidArgument { name, .. } => name,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

/// Batch loss by plain forward evaluation, independent of the gradient path.
fn naive_batch_loss(mlp: &Mlp, x: &DMatrix<f64>, y: &DMatrix<f64>) -> f64 {
    let out = mlp.forward(x.as_view());
    0.5 * (out - y).norm_squared() / x.ncols() as f64
}

#[test]
fn gradient_matches_central_finite_differences_for_every_activation() {
    let ds = random_dataset(8, 3, 2, 11);
    let batch = [4usize, 1, 6];
    let mut buf = BatchBuffers::new(3, 2, batch.len());
    buf.gather(&ds, &batch);
    for (a, act) in ALL_ACTIVATIONS.into_iter().enumerate() {
        let mlp = random_mlp(&[3, 5, 4, 2], act, 100 + a as u64);
        let (loss, grad) = batch_loss_and_grad(&mlp, &buf.x, &buf.y, &mut buf.cotangent);
        assert!((loss - naive_batch_loss(&mlp, &buf.x, &buf.y)).abs() <= 1e-14 * loss.max(1.0));
        let theta = mlp.params_flat();
        let g = grad.to_flat();
        let h = 1e-6;
        for k in 0..theta.len() {
            let mut tp = theta.clone();
            tp[k] += h;
            let mut tm = theta.clone();
            tm[k] -= h;
            let lp = naive_batch_loss(&mlp.with_params_flat(&tp).unwrap(), &buf.x, &buf.y);
            let lm = naive_batch_loss(&mlp.with_params_flat(&tm).unwrap(), &buf.x, &buf.y);
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g[k]).abs() <= 1e-7 * (1.0 + g[k].abs()),
                "{}: parameter {k}: vjp {} vs finite difference {fd}",
                act.name(),
                g[k]
            );
        }
    }
}

#[test]
fn one_sgd_step_matches_hand_computation() {
    // f(x) = w2·tanh(w1 x + b1) + b2, B = n = 3 so the batch is the whole data set.
    let (w1, b1, w2, b2) = (0.8, -0.3, 1.5, 0.2);
    let xs = [0.5, -1.0, 2.0];
    let ys = [0.3, -0.2, 0.7];
    let ds = Dataset::new(xs.to_vec(), 3, 1, Some((ys.to_vec(), 1)), "x", "y").unwrap();
    let init = Mlp::new(
        vec![
            Dense {
                weight: dmatrix![w1],
                bias: dvector![b1],
            },
            Dense {
                weight: dmatrix![w2],
                bias: dvector![b2],
            },
        ],
        Activation::Tanh,
    )
    .unwrap();
    let lr = 0.25;
    let (mut gw1, mut gb1, mut gw2, mut gb2, mut loss) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(&ys) {
        let hidden = (w1 * x + b1).tanh();
        let r = w2 * hidden + b2 - y;
        loss += 0.5 * r * r / 3.0;
        gw2 += r * hidden / 3.0;
        gb2 += r / 3.0;
        let back = r * w2 * (1.0 - hidden * hidden);
        gw1 += back * x / 3.0;
        gb1 += back / 3.0;
    }
    let seen = RefCell::new(Vec::new());
    let cfg = config(&[1, 1, 1], Activation::Tanh, lr, 3, 1);
    let res = train(&ds, &cfg, Some(init), &|s, l| {
        seen.borrow_mut().push((s, l))
    })
    .unwrap();
    let got = res.mlp.params_flat();
    let want = [w1 - lr * gw1, b1 - lr * gb1, w2 - lr * gw2, b2 - lr * gb2];
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-15 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 1);
    assert!((seen[0].1 - loss).abs() <= 1e-15);
    assert_eq!(res.steps_done, 1);
    assert!(!res.diverged);
    assert!(
        (res.history[0].1 - loss).abs() <= 1e-15,
        "initial full-data loss"
    );
}

#[test]
fn one_step_sums_the_loss_over_outputs() {
    // Linear f(x) = Wx + b with C = 2: ∇_W ℒ = (1/n) Σ_i res_i x_iᵀ (ℓ_i summed over outputs).
    let x = vec![1.0, 2.0, -1.0, 0.5];
    let y = vec![0.0, 1.0, 2.0, -1.0];
    let ds = Dataset::new(x.clone(), 2, 2, Some((y.clone(), 2)), "x", "y").unwrap();
    let w = dmatrix![0.1, -0.2; 0.3, 0.4];
    let b = dvector![0.05, -0.05];
    let init = Mlp::new(
        vec![Dense {
            weight: w.clone(),
            bias: b.clone(),
        }],
        Activation::Relu,
    )
    .unwrap();
    let lr = 0.1;
    let mut gw = DMatrix::<f64>::zeros(2, 2);
    let mut gb = dvector![0.0, 0.0];
    for i in 0..2 {
        let xi = dvector![x[2 * i], x[2 * i + 1]];
        let res = &w * &xi + &b - dvector![y[2 * i], y[2 * i + 1]];
        gw += &res * xi.transpose() / 2.0;
        gb += res / 2.0;
    }
    let cfg = config(&[2, 2], Activation::Relu, lr, 2, 1);
    let out = train(&ds, &cfg, Some(init), &|_, _| {}).unwrap();
    let layer = &out.mlp.layers()[0];
    assert!((&layer.weight - (w - lr * gw)).amax() <= 1e-15);
    assert!((&layer.bias - (b - lr * gb)).amax() <= 1e-15);
}

/// Frequencies of single indices and of pairs over many (S) draws, each compared with its exact
/// mean under model (S) using a 5σ band. Counts over T independent steps are binomial:
/// `P(i ∈ ξ) = B/n`, `P(i, j ∈ ξ) = B(B−1)/(n(n−1))` (THEORY.md §0, batch facts), so
/// `sd = √(T q (1 − q))`. With a fixed seed the check is deterministic; for a correct sampler a
/// 5σ excursion among the 10 + 45 counts has probability < 4·10⁻⁵ under the normal approximation.
#[test]
fn subset_sampler_is_uniform_distinct_and_independent() {
    let (n, b, t) = (10usize, 3usize, 100_000usize);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut sampler = BatchSampler::new(BatchScheme::IidSubsets, n, b).unwrap();
    let mut single = vec![0usize; n];
    let mut pair = vec![0usize; n * n];
    let mut prev: Vec<usize> = Vec::new();
    let mut overlap_total = 0usize;
    for _ in 0..t {
        let batch = sampler.next_batch(&mut rng).to_vec();
        assert!(sampler.buffer_is_identity());
        assert_eq!(batch.len(), b);
        for (k, &i) in batch.iter().enumerate() {
            assert!(i < n);
            single[i] += 1;
            for &j in &batch[k + 1..] {
                assert_ne!(i, j, "indices in a batch must be distinct");
                pair[i.min(j) * n + i.max(j)] += 1;
            }
        }
        overlap_total += batch.iter().filter(|i| prev.contains(i)).count();
        prev = batch;
    }
    let tf = t as f64;
    let within = |count: usize, q: f64| {
        let (mean, sd) = (tf * q, (tf * q * (1.0 - q)).sqrt());
        (count as f64 - mean).abs() <= 5.0 * sd
    };
    let q1 = b as f64 / n as f64;
    for (i, &cnt) in single.iter().enumerate() {
        assert!(
            within(cnt, q1),
            "index {i}: {cnt} draws, expected {}",
            tf * q1
        );
    }
    let q2 = (b * (b - 1)) as f64 / (n * (n - 1)) as f64;
    for i in 0..n {
        for j in i + 1..n {
            let cnt = pair[i * n + j];
            assert!(
                within(cnt, q2),
                "pair ({i},{j}): {cnt}, expected {}",
                tf * q2
            );
        }
    }
    // Independence across steps: E|ξ_t ∩ ξ_{t+1}| = B²/n. Consecutive overlaps are uncorrelated
    // (given ξ_{t+1}, the overlaps with ξ_t and ξ_{t+2} are independent with mean B²/n) and each
    // has the hypergeometric variance B·(B/n)(1 − B/n)(n − B)/(n − 1).
    let var = b as f64 * q1 * (1.0 - q1) * (n - b) as f64 / (n - 1) as f64;
    let mean = (tf - 1.0) * b as f64 * q1;
    let sd = ((tf - 1.0) * var).sqrt();
    assert!(
        (overlap_total as f64 - mean).abs() <= 5.0 * sd,
        "overlap {overlap_total} vs {mean} ± {sd}"
    );
}

#[test]
fn with_replacement_sampler_has_mean_b_over_n() {
    let (n, b, t) = (7usize, 4usize, 50_000usize);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut sampler = BatchSampler::new(BatchScheme::IidWithReplacement, n, b).unwrap();
    let mut counts = vec![0usize; n];
    let mut duplicates = 0usize;
    for _ in 0..t {
        let batch = sampler.next_batch(&mut rng);
        for &i in batch {
            counts[i] += 1;
        }
        let mut s = batch.to_vec();
        s.sort_unstable();
        s.dedup();
        duplicates += usize::from(s.len() < b);
    }
    // Per step the count of i is Binomial(B, 1/n): mean B/n, variance B(1/n)(1 − 1/n).
    let q = 1.0 / n as f64;
    let (mean, sd) = (
        t as f64 * b as f64 * q,
        (t as f64 * b as f64 * q * (1.0 - q)).sqrt(),
    );
    for &c in &counts {
        assert!((c as f64 - mean).abs() <= 5.0 * sd);
    }
    assert!(duplicates > 0, "(S′) must produce repeated indices");
    assert!(BatchSampler::new(BatchScheme::IidWithReplacement, 3, 5).is_ok());
}

#[test]
fn epoch_reshuffle_covers_each_epoch_once() {
    let (n, b) = (12usize, 5usize); // 2 batches per epoch, last 2 samples dropped
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut sampler = BatchSampler::new(BatchScheme::EpochReshuffle, n, b).unwrap();
    for _ in 0..50 {
        let mut epoch = sampler.next_batch(&mut rng).to_vec();
        epoch.extend_from_slice(sampler.next_batch(&mut rng));
        let mut s = epoch.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 2 * b, "batches of one epoch are disjoint");
    }
    assert!(!BatchScheme::EpochReshuffle.covered_by_theory());
    assert!(BatchScheme::IidSubsets.covered_by_theory());
}

#[test]
fn sampling_names_round_trip() {
    for s in [
        BatchScheme::IidSubsets,
        BatchScheme::IidWithReplacement,
        BatchScheme::EpochReshuffle,
    ] {
        assert_eq!(BatchScheme::parse(s.name()).unwrap(), s);
    }
    assert_eq!(BatchScheme::default(), BatchScheme::IidSubsets);
    assert_eq!(
        arg_name(BatchScheme::parse("bogus").unwrap_err()),
        "--sampling"
    );
}

#[test]
fn same_seed_is_bit_identical_and_other_seed_differs() {
    let ds = random_dataset(40, 4, 2, 21);
    for sampling in [
        BatchScheme::IidSubsets,
        BatchScheme::IidWithReplacement,
        BatchScheme::EpochReshuffle,
    ] {
        let mut cfg = config(&[4, 8, 2], Activation::Tanh, 0.05, 6, 200);
        cfg.sampling = sampling;
        cfg.log_every = 50;
        let a = train(&ds, &cfg, None, &|_, _| {}).unwrap();
        let b = train(&ds, &cfg, None, &|_, _| {}).unwrap();
        let (ta, tb) = (a.mlp.params_flat(), b.mlp.params_flat());
        assert!(ta.iter().zip(&tb).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert_eq!(a.history, b.history);
        assert_eq!(a.history.len(), 5);
        cfg.seed += 1;
        let c = train(&ds, &cfg, None, &|_, _| {}).unwrap();
        assert_ne!(ta, c.mlp.params_flat());
    }
}

#[test]
fn batches_do_not_depend_on_the_initialization() {
    // Stream 1 draws batches: starting from the default init explicitly gives the same run.
    let ds = random_dataset(30, 3, 1, 4);
    let cfg = config(&[3, 6, 1], Activation::Relu, 0.05, 4, 100);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let init = init_pytorch_default(&cfg.sizes, cfg.activation, &mut rng).unwrap();
    let a = train(&ds, &cfg, None, &|_, _| {}).unwrap();
    let b = train(&ds, &cfg, Some(init), &|_, _| {}).unwrap();
    assert_eq!(a.mlp.params_flat(), b.mlp.params_flat());
}

#[test]
fn training_a_toy_regression_decreases_the_loss() {
    // y = sin(x₁) + x₂²/2 on 64 points.
    let n = 64;
    let x = random_data(2, n, 31).as_slice().to_vec();
    let y: Vec<f64> = (0..n)
        .map(|i| x[2 * i].sin() + 0.5 * x[2 * i + 1] * x[2 * i + 1])
        .collect();
    let ds = Dataset::new(x, n, 2, Some((y, 1)), "x", "y").unwrap();
    let mut cfg = config(&[2, 32, 1], Activation::Tanh, 0.1, 8, 6000);
    cfg.log_every = 1000;
    let res = train(&ds, &cfg, None, &|_, _| {}).unwrap();
    assert!(!res.diverged);
    assert_eq!(res.steps_done, 6000);
    let (first, last) = (res.history[0].1, res.final_train_loss);
    assert_eq!(res.history.last().unwrap(), &(6000, last));
    assert!(last < first / 30.0, "loss {first} → {last}");
}

#[test]
fn divergence_is_detected_and_weights_stay_finite() {
    let ds = random_dataset(20, 3, 2, 8);
    let cfg = config(&[3, 8, 2], Activation::Relu, 1e4, 4, 10_000);
    let res = train(&ds, &cfg, None, &|_, _| {}).unwrap();
    assert!(res.diverged);
    assert!(res.steps_done < cfg.steps);
    assert!(res.mlp.params_flat().iter().all(|v| v.is_finite()));
    let err = res.into_converged(&cfg).unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("--lr"));
}

#[test]
fn config_validation_names_the_flag() {
    let ok = config(&[4, 8, 2], Activation::Relu, 0.1, 5, 10);
    ok.validate(10, 4, 2).unwrap();
    let check = |f: &dyn Fn(&mut TrainConfig), n: usize, flag: &str| {
        let mut c = ok.clone();
        f(&mut c);
        assert_eq!(arg_name(c.validate(n, 4, 2).unwrap_err()), flag);
    };
    check(&|c| c.lr = 0.0, 10, "--lr");
    check(&|c| c.lr = -1.0, 10, "--lr");
    check(&|c| c.lr = f64::NAN, 10, "--lr");
    check(&|c| c.lr = f64::INFINITY, 10, "--lr");
    check(&|c| c.batch = 0, 10, "--batch");
    check(&|c| c.batch = 11, 10, "--batch");
    check(&|c| c.sampling = BatchScheme::EpochReshuffle, 4, "--batch");
    check(&|c| c.sizes = vec![4], 10, "--sizes");
    check(&|c| c.sizes = vec![4, 0, 2], 10, "--sizes");
    check(&|c| c.sizes = vec![3, 8, 2], 10, "--sizes");
    check(&|c| c.sizes = vec![4, 8, 3], 10, "--sizes");
    check(&|c| c.steps = 0, 10, "--steps");
    let mut repl = ok.clone();
    repl.sampling = BatchScheme::IidWithReplacement;
    repl.validate(4, 4, 2).unwrap(); // B > n is fine with replacement

    let ds = random_dataset(10, 4, 2, 1);
    let wrong = random_mlp(&[4, 7, 2], Activation::Relu, 1);
    assert_eq!(
        arg_name(train(&ds, &ok, Some(wrong), &|_, _| {}).unwrap_err()),
        "--sizes"
    );
    let wrong_act = random_mlp(&[4, 8, 2], Activation::Tanh, 1);
    assert_eq!(
        arg_name(train(&ds, &ok, Some(wrong_act), &|_, _| {}).unwrap_err()),
        "--activation"
    );
    let no_y = Dataset::new(ds.x().to_vec(), 10, 4, None, "x", "y").unwrap();
    assert_eq!(
        arg_name(train(&no_y, &ok, None, &|_, _| {}).unwrap_err()),
        "--y"
    );
}

#[test]
fn pytorch_default_init_has_the_right_bounds_and_spread() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mlp = init_pytorch_default(&[64, 200, 10], Activation::Relu, &mut rng).unwrap();
    assert_eq!(mlp.widths(), vec![64, 200, 10]);
    for layer in mlp.layers() {
        let bound = 1.0 / (layer.fan_in() as f64).sqrt();
        assert!(
            layer
                .weight
                .iter()
                .chain(layer.bias.iter())
                .all(|v| v.abs() < bound)
        );
        // U(−a, a) has variance a²/3; the sample variance of N entries has relative sd √(0.8/N).
        let vals: Vec<f64> = layer.weight.iter().copied().collect();
        let var = vals.iter().map(|v| v * v).sum::<f64>() / vals.len() as f64;
        let rel = (0.8 / vals.len() as f64).sqrt();
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 5.0 * rel);
    }
    let mut again = ChaCha8Rng::seed_from_u64(1);
    let same = init_pytorch_default(&[64, 200, 10], Activation::Relu, &mut again).unwrap();
    assert_eq!(mlp, same);
    assert_eq!(
        arg_name(init_pytorch_default(&[3], Activation::Relu, &mut again).unwrap_err()),
        "--sizes"
    );
}

#[test]
fn metadata_has_the_documented_keys() {
    let ds = random_dataset(10, 4, 2, 1);
    let mut cfg = config(&[4, 8, 2], Activation::LeakyRelu { alpha: 0.01 }, 0.1, 5, 3);
    cfg.sampling = BatchScheme::IidSubsets;
    let res = train(&ds, &cfg, None, &|_, _| {}).unwrap();
    let md = res.metadata(&cfg);
    let keys: Vec<&str> = md.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "activation",
            "batch",
            "final_train_loss",
            "lr",
            "lr_convention",
            "sampling",
            "seed",
            "sizes",
            "steps",
            "trainer"
        ]
    );
    assert_eq!(md["sizes"], "4,8,2");
    assert_eq!(md["lr"], "0.1");
    assert_eq!(md["lr_convention"], "theory");
    assert_eq!(md["sampling"], "iid_subsets");
    assert_eq!(md["activation"], "leaky_relu:0.01");
    assert_eq!(
        md["final_train_loss"].parse::<f64>().unwrap(),
        res.final_train_loss
    );
    assert!(md["trainer"].starts_with("flatcert "));
    assert_eq!(
        Activation::parse(&md["activation"]).unwrap(),
        cfg.activation
    );
}
