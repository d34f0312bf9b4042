//! The layer engine (src/net, issue 14 item 1, THEORY.md §7): each layer against central finite
//! differences, the convolution against an explicitly built dense (Toeplitz) matrix, and a
//! `Sequential` built from an `Mlp` against the dense MLP engine.

use flatcert::model::{Activation, Params};
use flatcert::net::{
    Act, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, NetError, Sequential,
    Shape, Tensor, Window,
};
use flatcert::testutil::{random_data, random_mlp};
use nalgebra::DMatrix;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

fn rvec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn rtensor(rng: &mut ChaCha8Rng, batch: usize, shape: Shape) -> Tensor {
    Tensor::new(batch, shape, rvec(rng, batch * shape.len())).unwrap()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn conv(
    rng: &mut ChaCha8Rng,
    c_in: usize,
    c_out: usize,
    k: (usize, usize),
    s: usize,
    p: usize,
) -> Conv2d {
    let w = Window {
        kernel: k,
        stride: (s, s),
        padding: (p, p),
    };
    let n = c_out * c_in * k.0 * k.1;
    Conv2d::new(
        Some("c".into()),
        c_in,
        c_out,
        w,
        rvec(rng, n),
        rvec(rng, c_out),
    )
    .unwrap()
}

/// Central-difference checks of one layer on input shape `shape` (batch 2, 3 reps for the
/// tangent/cotangent passes). Step h = 1e-6 on inputs of size O(1): for the linear layers
/// (linear, conv, avg-pool, flatten) and the piecewise-linear ones away from kinks (ReLU, max-pool
/// with distinct window entries, which random inputs have with probability 1 and this seed has)
/// the difference quotient is exact up to cancellation, |y|·u/h ≈ 10·1.1e-16/1e-6 ≈ 1e-9; for tanh
/// the truncation error h²|σ‴|/6 ≈ 1e-13 adds nothing. Tolerance 1e-7 (absolute, on O(1)
/// quantities).
fn check_layer_fd(layer: &dyn Layer, shape: Shape, seed: u64) {
    const H: f64 = 1e-6;
    const TOL: f64 = 1e-7;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let out_shape = layer.output_shape(shape).unwrap();
    let x = rtensor(&mut rng, 2, shape);
    let reps = 3;
    let dx = rtensor(&mut rng, 2 * reps, shape);
    let gy = rtensor(&mut rng, 2 * reps, out_shape);
    let y = layer.forward(&x);
    assert_eq!(y.shape, out_shape);
    let jvp = layer.jvp_input(&x, &dx);
    let vjp = layer.vjp_input(&x, &gy);
    assert_eq!((jvp.batch, jvp.shape), (2 * reps, out_shape));
    assert_eq!((vjp.batch, vjp.shape), (2 * reps, shape));
    for r in 0..2 * reps {
        let i = r / reps;
        let shift = |sgn: f64| {
            let mut xs = Tensor::new(1, shape, x.row(i).to_vec()).unwrap();
            for (a, d) in xs.data.iter_mut().zip(dx.row(r)) {
                *a += sgn * H * d;
            }
            layer.forward(&xs).data
        };
        let (yp, ym) = (shift(1.0), shift(-1.0));
        let fd: Vec<f64> = yp
            .iter()
            .zip(&ym)
            .map(|(a, b)| (a - b) / (2.0 * H))
            .collect();
        let err: Vec<f64> = fd.iter().zip(jvp.row(r)).map(|(a, b)| a - b).collect();
        assert!(
            max_abs(&err) < TOL,
            "{}: jvp row {r} off by {}",
            layer.kind(),
            max_abs(&err)
        );
        // Adjoint: ⟨gy_r, J dx_r⟩ = ⟨Jᵀ gy_r, dx_r⟩, the FD side independent of the VJP.
        let lhs = dot(gy.row(r), &fd);
        let rhs = dot(vjp.row(r), dx.row(r));
        assert!(
            (lhs - rhs).abs() < TOL,
            "{}: vjp row {r}: {lhs} vs {rhs}",
            layer.kind()
        );
    }
    let p = layer.num_params();
    if p == 0 {
        assert!(layer.jvp_params(&x, &[]).is_none());
        return;
    }
    let theta = layer.params();
    let v = rvec(&mut rng, p);
    let moved = |sgn: f64| {
        let t: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + sgn * H * b).collect();
        layer.with_params(&t).forward(&x).data
    };
    let (yp, ym) = (moved(1.0), moved(-1.0));
    let fd: Vec<f64> = yp
        .iter()
        .zip(&ym)
        .map(|(a, b)| (a - b) / (2.0 * H))
        .collect();
    let jp = layer.jvp_params(&x, &v).unwrap();
    let err: Vec<f64> = fd.iter().zip(&jp.data).map(|(a, b)| a - b).collect();
    assert!(
        max_abs(&err) < TOL,
        "{}: jvp_params off by {}",
        layer.kind(),
        max_abs(&err)
    );
    // Parameter VJP against FD: Σ_r ⟨gy_r, ∂y_{r/reps}/∂θ · v⟩.
    let mut g = vec![0.0; p];
    layer.vjp_params(&x, &gy, &mut g);
    let lhs: f64 = (0..2 * reps)
        .map(|r| {
            dot(
                gy.row(r),
                &fd[(r / reps) * out_shape.len()..][..out_shape.len()],
            )
        })
        .sum();
    assert!(
        (lhs - dot(&g, &v)).abs() < TOL,
        "{}: vjp_params",
        layer.kind()
    );
    // Per-row gradients: each row against FD, and their sum is the summed gradient.
    let rows = layer.row_param_grads(&x, &gy);
    assert_eq!(rows.len(), 2 * reps * p);
    let mut sum = vec![0.0; p];
    for r in 0..2 * reps {
        let row = &rows[r * p..(r + 1) * p];
        let fdr = dot(
            gy.row(r),
            &fd[(r / reps) * out_shape.len()..][..out_shape.len()],
        );
        assert!(
            (fdr - dot(row, &v)).abs() < TOL,
            "{}: row grad {r}",
            layer.kind()
        );
        sum.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    let err: Vec<f64> = sum.iter().zip(&g).map(|(a, b)| a - b).collect();
    // Same products summed in another order: rounding only (≤ 1e-13 on O(10) sums).
    assert!(
        max_abs(&err) < 1e-12,
        "{}: Σ rows ≠ vjp_params",
        layer.kind()
    );
    // Power sums (factorized for linear, materialized for conv) against the brute force.
    let powers = [2, 4, 8];
    let ps = layer.row_param_power_sums(&x, &gy, &powers);
    for r in 0..2 * reps {
        for (qi, &q) in powers.iter().enumerate() {
            let nw = layer.weight_len().unwrap();
            let row = &rows[r * p..(r + 1) * p];
            let bw: f64 = row[..nw].iter().map(|v| v.powi(q)).sum();
            let bb: f64 = row[nw..].iter().map(|v| v.powi(q)).sum();
            let (gw, gb) = (
                ps.weight[r * powers.len() + qi],
                ps.bias[r * powers.len() + qi],
            );
            // Sums of non-negative terms, differently associated: relative 1e-13.
            assert!(
                (gw - bw).abs() <= 1e-13 * bw,
                "{}: weight q={q}",
                layer.kind()
            );
            assert!(
                (gb - bb).abs() <= 1e-13 * bb,
                "{}: bias q={q}",
                layer.kind()
            );
        }
    }
}

#[test]
fn every_layer_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let img = Shape::Image { c: 2, h: 7, w: 6 };
    let lin = Linear::new(
        None,
        DMatrix::from_fn(4, 5, |_, _| rng.random_range(-1.0..1.0)),
        rvec(&mut rng, 4),
    );
    check_layer_fd(&lin, Shape::Flat(5), 10);
    for (k, s, p) in [
        ((3, 3), 1, 1),
        ((3, 2), 2, 0),
        ((2, 3), 1, 2),
        ((1, 1), 3, 0),
        ((5, 5), 2, 2),
    ] {
        let c = conv(&mut rng, 2, 3, k, s, p);
        check_layer_fd(&c, img, 11);
    }
    for act in [
        Activation::Relu,
        Activation::Tanh,
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Softplus,
    ] {
        check_layer_fd(&Act(act), img, 12);
    }
    for (k, s) in [
        ((2, 2), (2, 2)),
        ((3, 3), (2, 2)),
        ((3, 2), (1, 1)),
        ((7, 6), (1, 1)),
    ] {
        check_layer_fd(&MaxPool2d::new(k, s), img, 13);
        check_layer_fd(&AvgPool2d::new(k, s), img, 14);
    }
    check_layer_fd(&Flatten, img, 15);
    // Eval-mode batch normalization (the slope γ/√(σ² + ε) and the (x − μ) term of ∂y/∂γ).
    let bn = BatchNorm2d::new(
        Some("bn".into()),
        vec![1.3, -0.7],
        vec![0.2, -0.1],
        vec![0.4, -0.3],
        vec![0.5, 2.0],
        1e-5,
    )
    .unwrap();
    check_layer_fd(&bn, img, 16);
    assert!(bn.output_shape(Shape::Flat(98)).is_err());
    assert!(BatchNorm2d::new(None, vec![1.0], vec![0.0], vec![0.0], vec![0.0], 0.0).is_none());
}

/// The dense matrix of a convolution, built entry by entry from the definition
/// `y[o, oy, ox] = Σ_{c,u,v} W[o, c, u, v]·x[c, oy·s + u − p, ox·s + v − p]` (zero outside),
/// independently of the im2col code.
fn toeplitz(c: &Conv2d, h: usize, w: usize) -> (DMatrix<f64>, usize, usize) {
    let win = c.window();
    let (kh, kw) = win.kernel;
    let (ho, wo) = win.output_hw(h, w).unwrap();
    let (ci_n, co_n) = (c.in_channels(), c.out_channels());
    let mut m = DMatrix::zeros(co_n * ho * wo, ci_n * h * w);
    for o in 0..co_n {
        for oy in 0..ho {
            for ox in 0..wo {
                for ci in 0..ci_n {
                    for u in 0..kh {
                        for v in 0..kw {
                            let iy = (oy * win.stride.0 + u) as isize - win.padding.0 as isize;
                            let ix = (ox * win.stride.1 + v) as isize - win.padding.1 as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let row = (o * ho + oy) * wo + ox;
                            let col = (ci * h + iy as usize) * w + ix as usize;
                            m[(row, col)] += c.weight()[((o * ci_n + ci) * kh + u) * kw + v];
                        }
                    }
                }
            }
        }
    }
    (m, ho, wo)
}

#[test]
fn conv_matches_its_dense_toeplitz_matrix() {
    // Each output is a sum of ≤ K = 2·5·5 = 50 products of O(1) terms in both computations, in
    // different orders: |difference| ≤ 2·50·u·50 ≈ 1e-12 at worst. Tolerance 1e-12.
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (k, s, p, h, w) in [
        ((3, 3), 1, 1, 6, 5),
        ((3, 3), 2, 1, 7, 7),
        ((2, 4), 1, 0, 5, 6),
        ((5, 5), 3, 2, 8, 4),
    ] {
        let c = conv(&mut rng, 2, 3, k, s, p);
        let shape = Shape::Image { c: 2, h, w };
        let (m, ho, wo) = toeplitz(&c, h, w);
        let x = rtensor(&mut rng, 3, shape);
        let y = c.forward(&x);
        let gy = rtensor(&mut rng, 3, y.shape);
        let gx = c.vjp_input(&x, &gy);
        let jx = c.jvp_input(&x, &x);
        for i in 0..3 {
            let xv = nalgebra::DVector::from_column_slice(x.row(i));
            let mx = &m * &xv;
            for (j, v) in mx.iter().enumerate() {
                let want = v + c.bias()[j / (ho * wo)];
                assert!(
                    (y.row(i)[j] - want).abs() < 1e-12,
                    "forward {k:?} s{s} p{p}"
                );
                assert!((jx.row(i)[j] - v).abs() < 1e-12, "jvp {k:?} s{s} p{p}");
            }
            let mtg = m.tr_mul(&nalgebra::DVector::from_column_slice(gy.row(i)));
            for (a, b) in mtg.iter().zip(gx.row(i)) {
                assert!((a - b).abs() < 1e-12, "vjp {k:?} s{s} p{p}");
            }
        }
        // Weight gradient: ∂⟨gy, Mx⟩/∂W[e] = ⟨gy, M_e x⟩ with M_e the Toeplitz matrix of the unit
        // kernel e — the dense rewrite again, one kernel entry at a time.
        let mut g = vec![0.0; c.num_params()];
        c.vjp_params(&x, &gy, &mut g);
        let nw = c.weight().len();
        for e in 0..nw {
            let mut unit = vec![0.0; nw];
            unit[e] = 1.0;
            let ce = Conv2d::new(None, 2, 3, c.window(), unit, vec![0.0; 3]).unwrap();
            let (me, _, _) = toeplitz(&ce, h, w);
            let want: f64 = (0..3)
                .map(|i| {
                    let mx = &me * nalgebra::DVector::from_column_slice(x.row(i));
                    dot(gy.row(i), mx.as_slice())
                })
                .sum();
            assert!((g[e] - want).abs() < 1e-12, "weight grad {e}");
        }
    }
}

#[test]
fn sequential_from_mlp_agrees_with_the_mlp_engine() {
    // Same arithmetic up to the association order of the GEMMs: every entry is a sum of ≤ 16
    // O(1) products per layer through 3 layers, so differences stay ≤ ~1e-14; tolerance 1e-12
    // relative to the largest entry.
    for act in [Activation::Relu, Activation::Tanh, Activation::Softplus] {
        let mlp = random_mlp(&[6, 16, 9, 3], act, 5);
        let net = Sequential::from_mlp(&mlp);
        assert_eq!(net.num_params(), mlp.num_params());
        assert_eq!(net.params(), mlp.params_flat());
        let (d, n, c) = (6, 7, 3);
        let xm = random_data(d, n, 6);
        let x = Tensor::new(n, Shape::Flat(d), xm.as_slice().to_vec()).unwrap();
        let close = |a: &[f64], b: &[f64], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = max_abs(b).max(1.0);
            let err: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
            assert!(
                max_abs(&err) <= 1e-12 * scale,
                "{act}: {what} off by {}",
                max_abs(&err)
            );
        };
        let cache = net.forward_cache(&x).unwrap();
        let mcache = mlp.forward_cache(xm.as_view());
        close(&cache.output().data, mcache.output().as_slice(), "forward");
        // Input Jacobians for all C outputs: row i·C + c = ∇_x f_c(x_i) in both layouts.
        let cot = net.backward_outputs(&cache);
        let deltas = mlp.output_deltas(&mcache);
        let jx = mlp.input_gradients(&deltas, n);
        close(&cot[0].data, jx.as_slice(), "input gradients");
        // Forward mode along input directions.
        let v = random_data(d, n, 7);
        let jv = net
            .jvp_input(
                &cache,
                &Tensor::new(n, Shape::Flat(d), v.as_slice().to_vec()).unwrap(),
            )
            .unwrap();
        close(
            &jv.data,
            mlp.jvp_input(&mcache, v.as_view()).as_slice(),
            "jvp_input",
        );
        // Parameter VJP and JVP.
        let u = random_data(c, n, 8);
        let g = net.vjp_params(
            &cache,
            &Tensor::new(n, Shape::Flat(c), u.as_slice().to_vec()).unwrap(),
        );
        close(&g, &mlp.vjp_params(&mcache, &u).to_flat(), "vjp_params");
        let theta_dir: Vec<f64> = (0..mlp.num_params())
            .map(|k| ((k * 37 % 11) as f64 - 5.0) / 7.0)
            .collect();
        let jp = net.jvp_params(&cache, &theta_dir).unwrap();
        let pm = Params::from_flat(&mlp, &theta_dir).unwrap();
        close(
            &jp.data,
            mlp.jvp_params(&mcache, &pm).as_slice(),
            "jvp_params",
        );
    }
}

/// A small CNN on 2×12×12 inputs: conv(2→3, 3×3, pad 1) → tanh → maxpool 2 → conv(3→4, 2×2, stride 2) → relu →
/// avgpool(2, stride 1) → flatten → linear → C = 2.
fn small_cnn(seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c1 = conv(&mut rng, 2, 3, (3, 3), 1, 1);
    let c2 = conv(&mut rng, 3, 4, (2, 2), 2, 0);
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(c1),
        Box::new(Act(Activation::Tanh)),
        Box::new(MaxPool2d::new((2, 2), (2, 2))),
        Box::new(c2),
        Box::new(Act(Activation::Relu)),
        Box::new(AvgPool2d::new((2, 2), (1, 1))),
        Box::new(Flatten),
        Box::new(Linear::new(
            Some("fc".into()),
            DMatrix::from_fn(2, 4 * 2 * 2, |_, _| rng.random_range(-1.0..1.0)),
            vec![0.1, -0.2],
        )),
    ];
    Sequential::new(Shape::Image { c: 2, h: 12, w: 12 }, layers).unwrap()
}

#[test]
fn sequential_cnn_passes_match_finite_differences() {
    // Same step and tolerance argument as `check_layer_fd` (kinks of ReLU/max-pool are met with
    // probability 0 at h = 1e-6 for this fixed seed).
    const H: f64 = 1e-6;
    const TOL: f64 = 1e-7;
    let net = small_cnn(3);
    assert_eq!(net.output_dim(), 2);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = rtensor(&mut rng, 3, net.input_shape());
    let cache = net.forward_cache(&x).unwrap();
    let cot = net.backward_outputs(&cache);
    let dx = rtensor(&mut rng, 3, net.input_shape());
    let jv = net.jvp_input(&cache, &dx).unwrap();
    let shifted = |sgn: f64| {
        let mut xs = x.clone();
        xs.data
            .iter_mut()
            .zip(&dx.data)
            .for_each(|(a, d)| *a += sgn * H * d);
        net.forward(&xs).unwrap().data
    };
    let (yp, ym) = (shifted(1.0), shifted(-1.0));
    for i in 0..3 {
        for c in 0..2 {
            let fd = (yp[i * 2 + c] - ym[i * 2 + c]) / (2.0 * H);
            assert!((fd - jv.row(i)[c]).abs() < TOL, "jvp_input");
            let back = dot(cot[0].row(i * 2 + c), dx.row(i));
            assert!((fd - back).abs() < TOL, "backward_outputs");
        }
    }
    let theta = net.params();
    let v = rvec(&mut rng, theta.len());
    let moved = |sgn: f64| {
        let t: Vec<f64> = theta.iter().zip(&v).map(|(a, b)| a + sgn * H * b).collect();
        net.with_params(&t).unwrap().forward(&x).unwrap().data
    };
    let (yp, ym) = (moved(1.0), moved(-1.0));
    let fd: Vec<f64> = yp
        .iter()
        .zip(&ym)
        .map(|(a, b)| (a - b) / (2.0 * H))
        .collect();
    let jp = net.jvp_params(&cache, &v).unwrap();
    assert!(
        max_abs(
            &fd.iter()
                .zip(&jp.data)
                .map(|(a, b)| a - b)
                .collect::<Vec<_>>()
        ) < TOL
    );
    let u = rtensor(&mut rng, 3, Shape::Flat(2));
    let g = net.vjp_params(&cache, &u);
    assert!((dot(&g, &v) - dot(&u.data, &fd)).abs() < TOL, "vjp_params");
}

fn kinds(e: &NetError) -> String {
    e.to_string()
}

#[test]
fn shape_errors_name_the_layer_and_what_was_expected() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let img = Shape::Image { c: 3, h: 8, w: 8 };
    // Conv with the wrong input channel count.
    let e = Sequential::new(
        img,
        vec![
            Box::new(conv(&mut rng, 2, 4, (3, 3), 1, 1)),
            Box::new(Flatten),
        ],
    )
    .unwrap_err();
    let msg = kinds(&e);
    assert!(
        msg.contains("layer 0 (conv2d 'c')")
            && msg.contains("[3, 8, 8]")
            && msg.contains("[2, H, W]"),
        "{msg}"
    );
    // Linear directly on an image.
    let lin = Linear::new(Some("fc".into()), DMatrix::zeros(2, 192), vec![0.0; 2]);
    let msg = kinds(&Sequential::new(img, vec![Box::new(lin.clone())]).unwrap_err());
    assert!(
        msg.contains("layer 0 (linear 'fc')") && msg.contains("flatten"),
        "{msg}"
    );
    // Kernel larger than the (pooled) image.
    let layers: Vec<Box<dyn Layer>> = vec![
        Box::new(MaxPool2d::new((2, 2), (2, 2))),
        Box::new(MaxPool2d::new((5, 5), (1, 1))),
        Box::new(Flatten),
    ];
    let msg = kinds(&Sequential::new(img, layers).unwrap_err());
    assert!(
        msg.contains("layer 1 (maxpool2d)") && msg.contains("does not fit"),
        "{msg}"
    );
    // Image output.
    let msg = kinds(&Sequential::new(img, vec![Box::new(Act(Activation::Relu))]).unwrap_err());
    assert!(msg.contains("flat vector [C]"), "{msg}");
    // Flatten then a linear layer of the wrong width.
    let msg = kinds(
        &Sequential::new(
            img,
            vec![
                Box::new(Flatten),
                Box::new(Linear::new(None, DMatrix::zeros(2, 100), vec![0.0; 2])),
            ],
        )
        .unwrap_err(),
    );
    assert!(
        msg.contains("layer 1 (linear)")
            && msg.contains("[192]")
            && msg.contains("expected a flat input [100]"),
        "{msg}"
    );
    // Non-finite parameter.
    let mut bad = DMatrix::zeros(2, 192);
    bad[(1, 3)] = f64::NAN;
    let msg = kinds(
        &Sequential::new(
            img,
            vec![
                Box::new(Flatten),
                Box::new(Linear::new(None, bad, vec![0.0; 2])),
            ],
        )
        .unwrap_err(),
    );
    assert!(
        msg.contains("layer 1 (linear)") && msg.contains("not finite"),
        "{msg}"
    );
    // Data of the wrong shape.
    let net = Sequential::new(img, vec![Box::new(Flatten), Box::new(lin)]).unwrap();
    let x = Tensor::zeros(2, Shape::Image { c: 1, h: 8, w: 8 });
    let msg = kinds(&net.forward(&x).unwrap_err());
    assert!(
        msg.contains("[1, 8, 8]") && msg.contains("expected [3, 8, 8]"),
        "{msg}"
    );
    // Converted into the crate error: exit code 2.
    assert_eq!(
        flatcert::Error::from(net.forward(&x).unwrap_err()).exit_code(),
        2
    );
}
