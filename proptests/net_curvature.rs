//! Curvature of random small CNNs (issue 14 items 3 and 7, THEORY.md §7(c)): the exact Gram path
//! against the operator path, and the symmetry of the R-op Hessian product.
//!
//! Networks: 1–3 convolutions (kernel 1–3, stride 1–2, padding 0–1, 1–3 channels), each followed
//! by ReLU or tanh and optionally a max- or average-pool (kernel 2, stride 1–2), then flatten and
//! a dense layer to C ∈ {1, 2}; inputs 1–2 × 5–8 × 5–8, n = 2–4, random targets.
//!
//! - Gram vs operator: `gram_spectrum`'s rigorous bracket of λ_max(G) (THEORY §3 items 2–4) and
//!   Lanczos on the Gram operator (§3 item 5) must agree: the Lanczos rigorous lower bound is
//!   ≤ the Gram upper bound, and the Lanczos estimate is within its Kato–Temple error estimate
//!   plus 1e-8 relative (the Lanczos stopping tolerance) of the dense top eigenvalue.
//! - HVP symmetry: `uᵀHv = vᵀHu` up to the products' rounding, 1e-11 relative to
//!   `‖u‖‖Hv‖ + ‖v‖‖Hu‖` (each product is a chain of ≲ 100 roundings on O(1) numbers).
//! - T5(i) below the exact η* (issue 14 item 7): for every batch size, the matrix-free
//!   η_suff(B) = 2/[(1−p)·upper(λ_max(G)) + p·upper(max_i λ_i)] from the layered per-sample λ_i
//!   never exceeds the certified upper end of the exact T5(f) bracket of η*(B) from the layered
//!   Gram path. Targets := outputs (interpolation, so H = G and T5(i)'s H_i ⪰ 0 hold). Both are
//!   rigorous sides up to the layered a-priori tolerances carried by each; 1e-12 relative covers
//!   the outward rounding of the final division.

use flatcert::measure::gram::{GramOptions, gram_spectrum};
use flatcert::measure::hvp::OperatorOptions;
use flatcert::measure::lanczos::{LanczosOptions, gauss_newton_lambda_max};
use flatcert::measure::stability::{
    BracketOptions, ReducedModel, Sampling, critical_lr_sweep, noise_p,
};
use flatcert::model::Activation;
use flatcert::net::{
    Act, AvgPool2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, NetCurvatureOperator, Sequential,
    Shape, Tensor, Window, build_gram, per_sample_curvature,
};
use flatcert_bounds::Value;
use flatcert_bounds::t5::eta_suff;
use nalgebra::DMatrix;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

fn config() -> Config {
    let base = Config::default();
    Config {
        cases: base.cases.min(48),
        rng_seed: RngSeed::Fixed(0x1414_u64),
        failure_persistence: None,
        ..base
    }
}

/// One conv block: (c_out, kernel, stride, padding, tanh?, pool: 0 none / 1 max / 2 avg, pool stride).
type ConvSpec = (usize, usize, usize, usize, bool, u8, usize);

fn conv_spec() -> impl Strategy<Value = ConvSpec> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=2,
        0usize..=1,
        any::<bool>(),
        0u8..=2,
        1usize..=2,
    )
}

fn rvec(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Build the network, skipping any conv or pool that would not fit the current image size.
fn build(c_in: usize, side: usize, specs: &[ConvSpec], c: usize, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ch, mut h) = (c_in, side);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for &(co, k, s, p, tanh, pool, ps) in specs {
        if h + 2 * p < k {
            continue;
        }
        let win = Window {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
        };
        let scale = 1.0 / ((ch * k * k) as f64).sqrt();
        let w = rvec(&mut rng, co * ch * k * k, scale);
        let b = rvec(&mut rng, co, 0.1);
        layers.push(Box::new(
            Conv2d::new(None, ch, co, win, w, b).expect("lengths"),
        ));
        let act = if tanh {
            Activation::Tanh
        } else {
            Activation::Relu
        };
        layers.push(Box::new(Act(act)));
        ch = co;
        h = (h + 2 * p - k) / s + 1;
        if pool > 0 && h >= 2 {
            if pool == 1 {
                layers.push(Box::new(MaxPool2d::new((2, 2), (ps, ps))));
            } else {
                layers.push(Box::new(AvgPool2d::new((2, 2), (ps, ps))));
            }
            h = (h - 2) / ps + 1;
        }
    }
    layers.push(Box::new(Flatten));
    let flat = ch * h * h;
    let scale = 1.0 / (flat as f64).sqrt();
    layers.push(Box::new(Linear::new(
        None,
        DMatrix::from_fn(c, flat, |_, _| rng.random_range(-scale..scale)),
        rvec(&mut rng, c, 0.1),
    )));
    Sequential::new(
        Shape::Image {
            c: c_in,
            h: side,
            w: side,
        },
        layers,
    )
    .expect("shapes chain by construction")
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cnn_gram_path_matches_operator_path_and_hvp_is_symmetric(
        c_in in 1usize..=2,
        side in 5usize..=8,
        specs in prop::collection::vec(conv_spec(), 1..=3),
        c in 1usize..=2,
        n in 2usize..=4,
        seed in any::<u64>(),
    ) {
        let net = build(c_in, side, &specs, c, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let shape = net.input_shape();
        let x = Tensor::new(n, shape, rvec(&mut rng, n * shape.len(), 1.0)).expect("len");
        let y = Tensor::new(n, Shape::Flat(c), rvec(&mut rng, n * c, 1.0)).expect("len");
        let gopts = GramOptions { block: 2, ..GramOptions::default() };
        let spec = gram_spectrum(build_gram(&net, &x, &gopts).expect("gram"), 1e-12).expect("eig");
        let opts = OperatorOptions { block: 3, ..OperatorOptions::default() };
        let op = NetCurvatureOperator::new(&net, &x, Some(&y), opts).expect("operator");
        let est = gauss_newton_lambda_max(&op, &LanczosOptions::default()).expect("lanczos");
        let top = spec.values[0];
        prop_assert!(est.bound.value <= spec.lambda_max_upper,
            "Lanczos lower {} > Gram upper {}", est.bound.value, spec.lambda_max_upper);
        prop_assert!((est.estimate.value - top).abs() <= est.estimate.tol + 1e-8 * top.abs() + 1e-300,
            "Lanczos {} vs Gram {}", est.estimate.value, top);
        let p = net.num_params();
        let u = rvec(&mut rng, p, 1.0);
        let v = rvec(&mut rng, p, 1.0);
        let hu = op.hessian_product_flat(&u).expect("hvp");
        let hv = op.hessian_product_flat(&v).expect("hvp");
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        let scale = dot(&u, &u).sqrt() * dot(&hv, &hv).sqrt() + dot(&v, &v).sqrt() * dot(&hu, &hu).sqrt();
        prop_assert!((a - b).abs() <= 1e-11 * scale, "uᵀHv = {a}, vᵀHu = {b}");
    }

    #[test]
    fn cnn_eta_suff_is_below_the_exact_eta_star_for_every_batch(
        c_in in 1usize..=2,
        side in 5usize..=8,
        specs in prop::collection::vec(conv_spec(), 1..=3),
        c in 1usize..=2,
        n in 2usize..=5,
        with_replacement in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let net = build(c_in, side, &specs, c, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7515);
        let shape = net.input_shape();
        let x = Tensor::new(n, shape, rvec(&mut rng, n * shape.len(), 1.0)).expect("len");
        let spec = gram_spectrum(build_gram(&net, &x, &GramOptions::default()).expect("gram"), 1e-12)
            .expect("eig");
        let a = Value::upper_bound(spec.lambda_max().value, 0.0);
        let curv = per_sample_curvature(&net, &x, 2).expect("per-sample");
        let (lmax, lerr) = (0..n).fold((0.0f64, 0.0f64), |(m, e), i| (m.max(curv.lambda[i]), e.max(curv.err(i))));
        let l = Value::exact(lmax, lerr).only_upper();
        let model = ReducedModel::from_spectrum(&spec);
        let sampling = if with_replacement { Sampling::WithReplacement } else { Sampling::WithoutReplacement };
        let batches: Vec<usize> = (1..=n).collect();
        let crits = critical_lr_sweep(&model, &batches, sampling, &BracketOptions::default())
            .expect("exact route");
        for crit in &crits {
            let p = noise_p(n, crit.batch, sampling).expect("valid B");
            let suff = eta_suff(Value::exact(p, 0.0), a, l);
            prop_assert!(suff.has_lower());
            if let Some(hi) = crit.eta_upper() {
                prop_assert!(
                    suff.lower() <= hi * (1.0 + 1e-12),
                    "B = {}: η_suff = {} > upper(η*) = {hi}", crit.batch, suff.lower()
                );
            }
        }
    }
}
