//! Per-sample quantities of CNNs (src/net/per_sample.rs; issue 14 items 3 and 7, THEORY.md §4,
//! §7(a), §7(e), T7(e)) against brute force: full per-sample gradients by one reverse pass per
//! (sample, output) and input Jacobians by forward mode along unit vectors; and a property test
//! of T1b on random small CNNs.

use flatcert::model::Activation;
use flatcert::net::{
    Act, AvgPool2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, PerSampleOptions, Sequential, Shape,
    Tensor, Window, loss_gradient_norms, per_sample_stats,
};
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

fn rvec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Layer choices of a random small CNN: per conv layer (channels, kernel, stride, padding,
/// activation, pool), pool 0 none / 1 max 2×2 / 2 avg 2×2 / 3 max 3×3 stride 2 (overlapping) /
/// 4 avg 3×3 stride 1 (overlapping).
type ConvChoice = (usize, usize, usize, usize, usize, usize);

fn random_cnn(
    seed: u64,
    c_in: usize,
    hw: usize,
    convs: &[ConvChoice],
    outputs: usize,
) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let acts = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Softplus,
        Activation::LeakyRelu { alpha: 0.1 },
    ];
    let mut shape = Shape::Image {
        c: c_in,
        h: hw,
        w: hw,
    };
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    for (j, &(ch, k, s, p, act, pool)) in convs.iter().enumerate() {
        let Shape::Image { c, .. } = shape else {
            unreachable!()
        };
        let win = Window {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
        };
        let bound = 1.0 / ((c * k * k) as f64).sqrt();
        let w: Vec<f64> = rvec(&mut rng, ch * c * k * k)
            .iter()
            .map(|v| v * bound * 2.0)
            .collect();
        let conv = Conv2d::new(
            Some(format!("features.{j}")),
            c,
            ch,
            win,
            w,
            rvec(&mut rng, ch),
        )
        .unwrap();
        let Ok(out) = conv.output_shape(shape) else {
            continue;
        };
        layers.push(Box::new(conv));
        layers.push(Box::new(Act(acts[act % acts.len()])));
        shape = out;
        let pool: Option<Box<dyn Layer>> = match pool {
            1 => Some(Box::new(MaxPool2d::new((2, 2), (2, 2)))),
            2 => Some(Box::new(AvgPool2d::new((2, 2), (2, 2)))),
            3 => Some(Box::new(MaxPool2d::new((3, 3), (2, 2)))),
            4 => Some(Box::new(AvgPool2d::new((3, 3), (1, 1)))),
            _ => None,
        };
        if let Some(pl) = pool
            && let Ok(out) = pl.output_shape(shape)
        {
            layers.push(pl);
            shape = out;
        }
    }
    layers.push(Box::new(Flatten));
    let f = shape.len();
    let w = DMatrix::from_fn(outputs, f, |_, _| {
        rng.random_range(-1.0..1.0) / (f as f64).sqrt()
    });
    layers.push(Box::new(Linear::new(
        Some("fc".into()),
        w,
        rvec(&mut rng, outputs),
    )));
    Sequential::new(
        Shape::Image {
            c: c_in,
            h: hw,
            w: hw,
        },
        layers,
    )
    .unwrap()
}

fn data(net: &Sequential, n: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = net.input_shape();
    Tensor::new(n, s, rvec(&mut rng, n * s.len())).unwrap()
}

#[test]
fn per_sample_stats_match_brute_force() {
    let net = random_cnn(1, 2, 9, &[(3, 3, 1, 1, 1, 1), (4, 2, 1, 0, 0, 3)], 3);
    let (n, c) = (5, 3);
    let x = data(&net, n, 2);
    // Block size 2 so that the block merge is exercised (5 = 2 + 2 + 1).
    let opts = PerSampleOptions {
        ks: vec![1, 2, 4],
        block: 2,
    };
    let st = per_sample_stats(&net, &x, &opts).unwrap();
    let nw0 = net.layers()[0].weight_len().unwrap();
    let d = net.input_shape().len();
    let (mut sw, mut sx) = (vec![0.0; 3], vec![0.0; 3]);
    for i in 0..n {
        let xi = Tensor::new(1, x.shape, x.row(i).to_vec()).unwrap();
        let cache = net.forward_cache(&xi).unwrap();
        let (mut jac, mut first) = (0.0, 0.0);
        // Full per-sample gradients ∇_θ f_c(x_i): one reverse pass per output (no factorization,
        // no batching of outputs).
        for ci in 0..c {
            let mut e = Tensor::zeros(1, Shape::Flat(c));
            e.data[ci] = 1.0;
            let g = net.vjp_params(&cache, &e);
            jac += g.iter().map(|v| v * v).sum::<f64>();
            first += g[..nw0].iter().map(|v| v * v).sum::<f64>();
            for (kj, k) in [1, 2, 4].iter().enumerate() {
                sw[kj] += g.iter().map(|v| v.powi(2 * k)).sum::<f64>();
            }
        }
        // Input Jacobian by forward mode along the d unit vectors (independent of the backward
        // pass that per_sample_stats uses).
        let mut eye = Tensor::zeros(d, x.shape);
        for j in 0..d {
            eye.data[j * d + j] = 1.0;
        }
        let jx = net.jvp_input(&cache, &eye).unwrap(); // d rows × C: column j of J_x
        let input: f64 = jx.data.iter().map(|v| v * v).sum();
        for (kj, k) in [1, 2, 4].iter().enumerate() {
            sx[kj] += jx.data.iter().map(|v| v.powi(2 * k)).sum::<f64>();
        }
        // Sums of ≤ 10³ non-negative terms in different orders, products of ≤ 6 factors through
        // the layers: relative differences ≤ ~1e-14. Tolerance 1e-12 relative.
        let rel = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-300);
        assert!(
            rel(st.jacobian_sq[i], jac),
            "‖J_i‖² {i}: {} vs {jac}",
            st.jacobian_sq[i]
        );
        assert!(rel(st.first_layer_sq[i], first), "‖J_W‖² {i}");
        assert!(rel(st.input_sq[i], input), "‖J_x‖² {i}");
    }
    for kj in 0..3 {
        let e = 1.0 / (2.0 * [1.0, 2.0, 4.0][kj]);
        let (gw, gx) = ((sw[kj] / n as f64).powf(e), (sx[kj] / n as f64).powf(e));
        assert!((st.g_w[kj] - gw).abs() <= 1e-12 * gw, "g_W k-index {kj}");
        assert!((st.g_x[kj] - gx).abs() <= 1e-12 * gx, "g_x k-index {kj}");
    }
    // g_W(1)² = tr G = (1/n) Σ ‖J_i‖_F² (THEORY.md T7(e)).
    let tr_g: f64 = st.jacobian_sq.iter().sum::<f64>() / n as f64;
    assert!((st.g_w[0].powi(2) - tr_g).abs() <= 1e-12 * tr_g);
    eprintln!("T1b max relative residual: {:e}", st.t1b_max_rel_residual);
    // T1b to rounding (scale: Cauchy–Schwarz bound of each side; u = 1.1e-16).
    assert!(
        st.t1b_max_rel_residual < 1e-13,
        "T1b residual {}",
        st.t1b_max_rel_residual
    );
    // ...and the residual is not trivially zero: both sides are O(1) numbers.
    assert!(st.t1b_input_side.iter().any(|v| v.abs() > 1e-3));
}

#[test]
fn loss_gradient_norms_match_per_sample_reverse_passes() {
    let net = random_cnn(3, 1, 8, &[(2, 3, 2, 1, 0, 0), (3, 3, 1, 1, 1, 2)], 2);
    let x = data(&net, 4, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let y = Tensor::new(4, Shape::Flat(2), rvec(&mut rng, 8)).unwrap();
    let norms = loss_gradient_norms(&net, &x, &y).unwrap();
    for (i, &got) in norms.iter().enumerate() {
        let xi = Tensor::new(1, x.shape, x.row(i).to_vec()).unwrap();
        let cache = net.forward_cache(&xi).unwrap();
        let mut res = cache.output().clone();
        res.data.iter_mut().zip(y.row(i)).for_each(|(f, t)| *f -= t);
        let g = net.vjp_params(&cache, &res);
        let want = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        // Same tolerance argument as above.
        assert!((got - want).abs() <= 1e-12 * want, "{i}: {} vs {want}", got);
    }
    assert!(loss_gradient_norms(&net, &x, &Tensor::zeros(3, Shape::Flat(2))).is_err());
}

#[test]
fn per_sample_stats_refuses_a_parameterless_first_layer() {
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Flatten),
        Box::new(Linear::new(None, DMatrix::zeros(1, 4), vec![0.0])),
    ];
    let net = Sequential::new(Shape::Image { c: 1, h: 2, w: 2 }, layers).unwrap();
    let x = Tensor::zeros(1, net.input_shape());
    let msg = per_sample_stats(&net, &x, &PerSampleOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bilinear first layer"), "{msg}");
}

fn conv_choice() -> impl Strategy<Value = ConvChoice> {
    (
        1usize..=3,
        1usize..=3,
        1usize..=2,
        0usize..=1,
        0usize..4,
        0usize..5,
    )
}

proptest! {
    // CI-sized: 24 random CNNs, each a few milliseconds.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// T1b (THEORY.md §7(a)): ⟨x, ∇_x f_c⟩ (forward mode) = ⟨W, ∇_W f_c⟩ (backward pass) for every
    /// sample and output, on random CNNs with 1–3 conv layers and random padding, stride and
    /// pooling, to rounding.
    #[test]
    fn t1b_holds_on_random_cnns(
        seed in 0u64..1_000_000,
        c_in in 1usize..=3,
        hw in 5usize..=10,
        convs in prop::collection::vec(conv_choice(), 1..=3),
        outputs in 1usize..=3,
    ) {
        let net = random_cnn(seed, c_in, hw, &convs, outputs);
        let x = data(&net, 3, seed ^ 0xabc);
        let st = per_sample_stats(&net, &x, &PerSampleOptions::default()).unwrap();
        // Both sides are sums of O(10²) products through ≤ 8 layers; relative to the
        // Cauchy–Schwarz scale the rounding is ≲ 1e-14. Tolerance 1e-12.
        prop_assert!(st.t1b_max_rel_residual < 1e-12, "residual {}", st.t1b_max_rel_residual);
    }
}
