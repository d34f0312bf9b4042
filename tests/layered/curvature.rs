//! Curvature of a `net::Sequential` (issue 14 item 3, THEORY.md §4 and §7(c), (e)): the Gram
//! path, the per-sample λ_i / tr H_i / ‖H_i‖_F², the Gauss–Newton and Gram products and the
//! R-op Hessian-vector product, against (a) the dense MLP engine on `Sequential::from_mlp` and
//! (b) independent dense references and finite differences on small random CNNs.

use flatcert::Dataset;
use flatcert::measure::gram::{self, GramOptions, gram_spectrum};
use flatcert::measure::hvp::{CurvatureOp, CurvatureOperator, OperatorOptions};
use flatcert::measure::lanczos::{LanczosOptions, gauss_newton_lambda_max};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::model::Activation;
use flatcert::net::{
    Act, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Layer, Linear, MaxPool2d, NetCurvatureOperator,
    Sequential, Shape, Tensor, Window, build_gram, jacobian_chain_length, net_gram_memory_bytes,
    per_sample_curvature, stacked_jacobian,
};
use flatcert::testutil::{random_data, random_mlp};
use nalgebra::DMatrix;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use flatcert::testutil::ALL_ACTIVATIONS as ACTS;

fn small_opts() -> OperatorOptions {
    // Blocks of 2 samples so that every test exercises the block reduction.
    OperatorOptions {
        block: 2,
        ..OperatorOptions::default()
    }
}

fn gram_opts() -> GramOptions {
    GramOptions {
        block: 2,
        ..GramOptions::default()
    }
}

use flatcert::testutil::rel_err;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn tensor_of(m: &DMatrix<f64>) -> Tensor {
    Tensor::new(m.ncols(), Shape::Flat(m.nrows()), m.as_slice().to_vec()).unwrap()
}

fn dataset(x: &DMatrix<f64>, y: Option<&DMatrix<f64>>) -> Dataset {
    let (d, n) = x.shape();
    let y = y.map(|y| (y.as_slice().to_vec(), y.nrows()));
    Dataset::new(x.as_slice().to_vec(), n, d, y, "<test>", "<test>").unwrap()
}

// ---------------------------------------------------------------------------------------------
// (a) Sequential::from_mlp against the dense MLP engine.

#[test]
fn from_mlp_matches_the_dense_engine() {
    for (s, act) in ACTS.iter().enumerate() {
        let s = s as u64;
        let mlp = random_mlp(&[3, 4, 3, 2], *act, 300 + s);
        let net = Sequential::from_mlp(&mlp);
        let xm = random_data(3, 5, 310 + s);
        let ym = random_data(2, 5, 320 + s);
        let ds = dataset(&xm, Some(&ym));
        let (x, y) = (tensor_of(&xm), tensor_of(&ym));

        // Gram K: both sides are within their own formation error of K built from their own
        // passes; the passes differ only in the summation order of their GEMMs (nalgebra vs
        // faer), the pass rounding of THEORY §3 item 1, of relative size ≤ 2γ_K (K =
        // jacobian_chain_length) on ‖K_abs‖_F. The sum of the three is the tolerance.
        let kd = gram::build_gram(&mlp, &ds, &gram_opts()).unwrap();
        let kn = build_gram(&net, &x, &gram_opts()).unwrap();
        assert_eq!((kn.n, kn.outputs), (kd.n, kd.outputs));
        let pass = 2.0 * flatcert::quantity::gamma(jacobian_chain_length(&net)) * kn.abs_frobenius;
        let diff = (&kn.k - &kd.k).norm();
        assert!(
            diff <= kn.formation_error + kd.formation_error + pass,
            "{act}: ‖ΔK‖ = {diff:e}, allowed {:e}",
            kn.formation_error + kd.formation_error + pass
        );

        // Per-sample λ_i, tr H_i, ‖H_i‖_F²: within the two sides' tolerances.
        let pd = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {}).unwrap();
        let pn = per_sample_curvature(&net, &x, 2).unwrap();
        let c = 2;
        for i in 0..5 {
            let tol = pn.err(i) + pd.param_sq_err(i);
            assert!(
                (pn.trace[i] - pd.param_sq[i]).abs() <= tol,
                "{act} tr H_{i}"
            );
            assert!((pn.lambda[i] - pd.lambda[i]).abs() <= tol, "{act} λ_{i}");
            let fro_d: f64 = pd.jjt[i * c * c..(i + 1) * c * c]
                .iter()
                .map(|v| v * v)
                .sum();
            // |‖A‖² − ‖B‖²| ≤ (‖A‖ + ‖B‖)‖A − B‖ and ‖A − B‖_F ≤ tol.
            let ftol = (pn.fro_sq[i].sqrt() + fro_d.sqrt() + tol) * tol;
            assert!((pn.fro_sq[i] - fro_d).abs() <= ftol, "{act} ‖H_{i}‖_F²");
        }
        let q = pn.quantities();
        assert!(q["per_sample_lambda_max"].value > 0.0);

        // Products: the same arithmetic up to summation order, 1e-13 relative (as the dense
        // engine's own tests against its dense references).
        let od = CurvatureOperator::new(&mlp, &ds, small_opts()).unwrap();
        let on = NetCurvatureOperator::new(&net, &x, Some(&y), small_opts()).unwrap();
        assert_eq!(on.gram_dim(), od.gram_dim());
        assert_eq!(CurvatureOp::num_params(&on), mlp.num_params());
        let v = random_data(mlp.num_params(), 1, 330 + s);
        let w = random_data(10, 1, 340 + s);
        let pairs = [
            (
                od.gn_product_flat(v.as_slice()).unwrap(),
                on.gn_product_flat(v.as_slice()).unwrap(),
            ),
            (
                od.gram_product(w.as_slice()).unwrap(),
                on.gram_product(w.as_slice()).unwrap(),
            ),
            (
                od.hessian_product_flat(v.as_slice()).unwrap(),
                on.hessian_product_flat(v.as_slice()).unwrap(),
            ),
            (
                od.loss_gradient().unwrap().to_flat(),
                on.loss_gradient_flat().unwrap(),
            ),
        ];
        for (k, (a, b)) in pairs.iter().enumerate() {
            assert!(
                rel_err(b, a) < 1e-13,
                "{act} product {k}: {}",
                rel_err(b, a)
            );
        }
        let (td, tn) = (od.gauss_newton_trace(), on.gauss_newton_trace());
        assert!((td.value - tn.value).abs() <= td.tol + tn.tol, "{act} tr G");

        // The generic operator path gives the same λ_max on both.
        let lo = LanczosOptions::default();
        let ld = gauss_newton_lambda_max(&od, &lo).unwrap();
        let ln = gauss_newton_lambda_max(&on, &lo).unwrap();
        assert!(
            (ld.estimate.value - ln.estimate.value).abs()
                <= 1e-10 * ld.estimate.value + ld.estimate.tol + ln.estimate.tol,
            "{act}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Small random CNNs.

fn rvec(rng: &mut ChaCha8Rng, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn conv(rng: &mut ChaCha8Rng, c_in: usize, c_out: usize, k: usize, s: usize, p: usize) -> Conv2d {
    let win = Window {
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
    };
    let scale = 1.0 / ((c_in * k * k) as f64).sqrt();
    Conv2d::new(
        None,
        c_in,
        c_out,
        win,
        rvec(rng, c_out * c_in * k * k, scale),
        rvec(rng, c_out, 0.1),
    )
    .unwrap()
}

/// Four CNNs on 2×7×7 inputs covering conv padding/stride, max and average pooling (overlapping
/// and not), ReLU/tanh/softplus and a dense head; C = 2. Variants ≥ 4 repeat them with an
/// eval-mode batch normalization after the first convolution.
fn cnn(variant: usize, seed: u64) -> Sequential {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (act1, act2) = match variant % 4 {
        0 => (Activation::Relu, Activation::Tanh),
        1 => (Activation::Tanh, Activation::Relu),
        2 => (Activation::Softplus, Activation::Sigmoid),
        _ => (Activation::Relu, Activation::Relu),
    };
    let mut layers: Vec<Box<dyn Layer>> = vec![Box::new(conv(&mut rng, 2, 3, 3, 1, 1))];
    if variant >= 4 {
        layers.push(Box::new(
            BatchNorm2d::new(
                Some("bn".into()),
                rvec(&mut rng, 3, 1.5),
                rvec(&mut rng, 3, 0.3),
                rvec(&mut rng, 3, 0.3),
                vec![0.4, 1.0, 2.5],
                1e-5,
            )
            .unwrap(),
        ));
    }
    layers.push(Box::new(Act(act1)));
    // 3×7×7 → pool → conv → act → flatten → linear.
    let (pool, side): (Box<dyn Layer>, usize) = if variant.is_multiple_of(2) {
        (Box::new(MaxPool2d::new((2, 2), (1, 1))), 6)
    } else {
        (Box::new(AvgPool2d::new((3, 3), (2, 2))), 3)
    };
    layers.push(pool);
    let (k2, s2, p2) = if variant.is_multiple_of(2) {
        (3, 2, 1)
    } else {
        (2, 1, 0)
    };
    layers.push(Box::new(conv(&mut rng, 3, 2, k2, s2, p2)));
    layers.push(Box::new(Act(act2)));
    let out_side = (side + 2 * p2 - k2) / s2 + 1;
    let flat = 2 * out_side * out_side;
    layers.push(Box::new(Flatten));
    layers.push(Box::new(Linear::new(
        None,
        DMatrix::from_fn(2, flat, |_, _| {
            rng.random_range(-1.0..1.0) / (flat as f64).sqrt()
        }),
        vec![0.05, -0.05],
    )));
    Sequential::new(Shape::Image { c: 2, h: 7, w: 7 }, layers).unwrap()
}

fn images(n: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape = Shape::Image { c: 2, h: 7, w: 7 };
    Tensor::new(n, shape, rvec(&mut rng, n * shape.len(), 1.0)).unwrap()
}

fn targets(n: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Tensor::new(n, Shape::Flat(2), rvec(&mut rng, 2 * n, 1.0)).unwrap()
}

/// The stacked Jacobian column by column from forward mode (`Sequential::jvp_params` on unit
/// vectors): independent of the backward pass and of `row_param_grads`.
fn jacobian_by_jvp(net: &Sequential, x: &Tensor) -> DMatrix<f64> {
    let cache = net.forward_cache(x).unwrap();
    let (p, c, n) = (net.num_params(), net.output_dim(), x.batch);
    let mut jac = DMatrix::zeros(n * c, p);
    let mut e = vec![0.0; p];
    for q in 0..p {
        e[q] = 1.0;
        let u = net.jvp_params(&cache, &e).unwrap();
        for r in 0..n * c {
            jac[(r, q)] = u.data[r];
        }
        e[q] = 0.0;
    }
    jac
}

/// `Σ a_i b_i` in double-double (TwoProduct by FMA, TwoSum): the error is O(u²·Σ|a_ib_i|),
/// so this is K of the same Ĵ to ~1e-30 relative.
fn dot_dd(a: &[f64], b: &[f64]) -> f64 {
    let (mut hi, mut lo) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let p = x * y;
        let pe = x.mul_add(*y, -p);
        let s = hi + p;
        let bb = s - hi;
        let se = (hi - (s - bb)) + (p - bb);
        hi = s;
        lo += se + pe;
    }
    hi + lo
}

#[test]
fn cnn_gram_matches_dense_references_and_its_formation_error() {
    for variant in 0..4 {
        let net = cnn(variant, 700 + variant as u64);
        let n = 5;
        let x = images(n, 710 + variant as u64);
        let gm = build_gram(&net, &x, &gram_opts()).unwrap();
        let nf = n as f64;
        // Independent dense K from forward-mode columns: differs from the backward-pass K only
        // by the passes' rounding (THEORY §3 item 1), ≲ 2γ_K‖K_abs‖_F + the formation error.
        let jf = jacobian_by_jvp(&net, &x);
        let k_ref = &jf * jf.transpose() / nf;
        let pass = 2.0 * flatcert::quantity::gamma(jacobian_chain_length(&net)) * gm.abs_frobenius;
        let d = (&gm.k - &k_ref).norm();
        assert!(d <= gm.formation_error + pass, "variant {variant}: {d:e}");
        assert!(d <= 1e-13 * k_ref.norm(), "variant {variant}: {d:e}");
        // The formation error bounds K̂ − K(Ĵ) for the same materialized Ĵ, with K(Ĵ) in
        // double-double (a different summation and ~u² accuracy).
        let jb = stacked_jacobian(&net, &x).unwrap();
        let mut worst = 0.0f64;
        let mut frob = 0.0;
        for a in 0..n * 2 {
            for b in 0..n * 2 {
                let exact = dot_dd(
                    jb.row(a).transpose().as_slice(),
                    jb.row(b).transpose().as_slice(),
                ) / nf;
                let e = gm.k[(a, b)] - exact;
                frob += e * e;
                worst = worst.max(e.abs());
            }
        }
        assert!(frob.sqrt() <= gm.formation_error, "variant {variant}");
        // The stacked rows agree with forward mode entrywise (the backward path, per layer).
        assert!(
            (&jb - &jf).amax() <= 1e-14 * jf.amax().max(1.0) * 10.0,
            "variant {variant}"
        );
    }
}

#[test]
fn cnn_products_match_dense_references_and_finite_differences() {
    for variant in 0..6 {
        let seed = 800 + 10 * variant as u64;
        let net = cnn(variant, seed);
        let n = 5;
        let x = images(n, seed + 1);
        let y = targets(n, seed + 2);
        let op = NetCurvatureOperator::new(&net, &x, Some(&y), small_opts()).unwrap();
        let p = net.num_params();
        let jf = jacobian_by_jvp(&net, &x);
        let nf = n as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 3);
        let v = rvec(&mut rng, p, 1.0);
        let u = rvec(&mut rng, p, 1.0);
        let w = rvec(&mut rng, n * 2, 1.0);

        // GN and Gram products against the dense Jacobian: same arithmetic up to summation
        // order, 1e-13 relative.
        let vm = nalgebra::DVector::from_column_slice(&v);
        let gv_ref = jf.transpose() * (&jf * &vm) / nf;
        let gv = op.gn_product_flat(&v).unwrap();
        assert!(rel_err(&gv, gv_ref.as_slice()) < 1e-13, "variant {variant}");
        let wm = nalgebra::DVector::from_column_slice(&w);
        let kw_ref = &jf * (jf.transpose() * &wm) / nf;
        let kw = op.gram_product(&w).unwrap();
        assert!(rel_err(&kw, kw_ref.as_slice()) < 1e-13, "variant {variant}");
        // tr G = ‖𝐉‖_F²/n within its a-priori tol.
        let tr = op.gauss_newton_trace();
        assert!((tr.value - jf.norm_squared() / nf).abs() <= tr.tol + 1e-14 * tr.value);

        // HVP against central differences of the loss gradient along v, h = 1e-5: truncation
        // O(h²‖∇³ℒ‖) ≈ 1e-10, cancellation O(u‖∇ℒ‖/h) ≈ 1e-11 on these O(1) quantities; 1e-6
        // relative leaves a wide margin yet catches any missing term (the residual terms are
        // O(1) relative with random targets).
        // The difference quotient is only meaningful if the segment θ ± hv crosses no ReLU or
        // max-pool kink: checked by a second step 2h (a crossing changes the gradient by O(1),
        // so the two quotients would differ by O(1/h)). Random inputs with a pre-activation
        // within ~h of 0 are redrawn (at most 4 times, deterministically).
        let theta = net.params();
        let hv = op.hessian_product_flat(&v).unwrap();
        let h = 1e-5;
        let fd_at = |x: &Tensor, y: &Tensor, h: f64| -> Vec<f64> {
            let grad = |t: &[f64]| {
                let m = net.with_params(t).unwrap();
                NetCurvatureOperator::new(&m, x, Some(y), small_opts())
                    .unwrap()
                    .loss_gradient_flat()
                    .unwrap()
            };
            let tp: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t + h * d).collect();
            let tm: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t - h * d).collect();
            let (gp, gm) = (grad(&tp), grad(&tm));
            gp.iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect()
        };
        let mut kink_free = None;
        for attempt in 0..5u64 {
            let xa = if attempt == 0 {
                x.clone()
            } else {
                images(n, seed + 1 + 1000 * attempt)
            };
            let (f1, f2) = (fd_at(&xa, &y, h), fd_at(&xa, &y, 2.0 * h));
            if rel_err(&f1, &f2) < 1e-6 {
                kink_free = Some((xa, f1));
                break;
            }
        }
        let (xk, fd) = kink_free.expect("a kink-free draw within 5 attempts");
        let opk = NetCurvatureOperator::new(&net, &xk, Some(&y), small_opts()).unwrap();
        let hvk = opk.hessian_product_flat(&v).unwrap();
        assert!(
            rel_err(&hvk, &fd) < 1e-6,
            "variant {variant}: {}",
            rel_err(&hvk, &fd)
        );
        // With a residual, H ≠ G.
        assert!(rel_err(&hv, &gv) > 1e-3, "variant {variant}");
        // Symmetry: uᵀHv = vᵀHu up to the products' rounding (1e-12 relative to ‖u‖‖Hv‖).
        let hu = op.hessian_product_flat(&u).unwrap();
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        let scale = dot(&u, &u).sqrt() * dot(&hv, &hv).sqrt();
        assert!(
            (a - b).abs() <= 1e-12 * scale,
            "variant {variant}: {a} vs {b}"
        );

        // Loss gradient against central differences of ℒ = (1/n)Σ ½‖f − y‖² (THEORY §0):
        // h = 1e-6, error ≲ 1e-9 on O(1) losses.
        let loss = |t: &[f64]| {
            let f = net.with_params(t).unwrap().forward(&x).unwrap();
            f.data
                .iter()
                .zip(&y.data)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
                / (2.0 * nf)
        };
        let g = op.loss_gradient_flat().unwrap();
        for q in (0..p).step_by(7) {
            let h = 1e-6;
            let mut tp = theta.clone();
            tp[q] += h;
            let mut tm = theta.clone();
            tm[q] -= h;
            let fdq = (loss(&tp) - loss(&tm)) / (2.0 * h);
            assert!(
                (fdq - g[q]).abs() < 1e-8,
                "variant {variant} q={q}: {fdq} vs {}",
                g[q]
            );
        }

        // At interpolation (y = f(x)) every residual term is an exact zero: Hv = Gv.
        let fx = net.forward(&x).unwrap();
        let op0 = NetCurvatureOperator::new(&net, &x, Some(&fx), small_opts()).unwrap();
        let hv0 = op0.hessian_product_flat(&v).unwrap();
        assert!(rel_err(&hv0, &gv) < 1e-15, "variant {variant}");
    }
}

#[test]
fn cnn_gram_spectrum_agrees_with_the_operator_path_and_per_sample_stats() {
    for variant in 0..4 {
        let seed = 900 + 10 * variant as u64;
        let net = cnn(variant, seed);
        let n = 6;
        let x = images(n, seed + 1);
        let spec = gram_spectrum(build_gram(&net, &x, &gram_opts()).unwrap(), 1e-12).unwrap();
        let op = NetCurvatureOperator::new(&net, &x, None, small_opts()).unwrap();
        let est = gauss_newton_lambda_max(&op, &LanczosOptions::default()).unwrap();
        // The rigorous brackets overlap, and the converged Lanczos value (nC = 12 ≤ P: full
        // Krylov space) equals the dense top eigenvalue to the Lanczos tolerance 1e-8.
        assert!(
            est.bound.value <= spec.lambda_max_upper,
            "variant {variant}"
        );
        assert!(
            (est.estimate.value - spec.values[0]).abs() <= 1e-8 * spec.values[0],
            "variant {variant}: {} vs {}",
            est.estimate.value,
            spec.values[0]
        );
        // tr G: the Gram path's exact trace against the operator's.
        let tr = op.gauss_newton_trace();
        assert!((tr.value - spec.trace).abs() <= tr.tol + spec.trace_tol);
        // Per sample: tr H_i is the diagonal C×C block's trace of nK; λ_i ≤ tr H_i ≤ C·λ_i.
        let ps = per_sample_curvature(&net, &x, 4).unwrap();
        for i in 0..n {
            let blk = spec.block(i, i) * n as f64;
            assert!(
                (ps.trace[i] - blk.trace()).abs() <= ps.err(i),
                "variant {variant}"
            );
            let lam = blk.symmetric_eigenvalues().max();
            assert!((ps.lambda[i] - lam).abs() <= ps.err(i), "variant {variant}");
            assert!((ps.fro_sq[i] - blk.norm_squared()).abs() <= 1e-12 * ps.fro_sq[i]);
            assert!(ps.lambda[i] <= ps.trace[i] * (1.0 + 1e-12));
            assert!(ps.trace[i] <= 2.0 * ps.lambda[i] * (1.0 + 1e-12));
        }
    }
}

#[test]
fn cnn_gram_refuses_above_the_memory_limit_and_checks_shapes() {
    let net = cnn(0, 1);
    let x = images(3, 2);
    let opts = GramOptions {
        memory_limit_bytes: 1000,
        ..GramOptions::default()
    };
    let err = build_gram(&net, &x, &opts).unwrap_err();
    assert!(err.to_string().contains("--max-memory"), "{err}");
    // At exactly the estimated need no block is kept (every row re-materializes its blocks);
    // with room, blocks are kept: the same GEMMs on the same rows, so the same bits.
    let tight = GramOptions {
        block: 1,
        memory_limit_bytes: net_gram_memory_bytes(&net, 3, 1),
        ..GramOptions::default()
    };
    let roomy = GramOptions {
        block: 1,
        ..GramOptions::default()
    };
    let (a, b) = (
        build_gram(&net, &x, &tight).unwrap(),
        build_gram(&net, &x, &roomy).unwrap(),
    );
    assert_eq!(a.k, b.k);
    assert_eq!(a.formation_error, b.formation_error);
    let bad = Tensor::new(3, Shape::Flat(98), vec![0.0; 294]).unwrap();
    assert!(build_gram(&net, &bad, &GramOptions::default()).is_err());
    assert!(NetCurvatureOperator::new(&net, &bad, None, small_opts()).is_err());
    let op = NetCurvatureOperator::new(&net, &x, None, small_opts()).unwrap();
    assert!(op.hessian_product_flat(&net.params()).is_err());
    assert!(op.gram_product(&[1.0; 5]).is_err());
    // Without the forward cache the products are the same bits.
    let uncached = NetCurvatureOperator::new(
        &net,
        &x,
        None,
        OperatorOptions {
            block: 2,
            cache_limit_bytes: 0,
        },
    )
    .unwrap();
    assert!(!uncached.is_cached() && op.is_cached());
    let v = net.params();
    assert_eq!(
        uncached.gn_product_flat(&v).unwrap(),
        op.gn_product_flat(&v).unwrap()
    );
}

#[test]
fn cnn_products_and_gram_are_bit_identical_for_any_thread_count() {
    let net = cnn(1, 77);
    let n = 7;
    let x = images(n, 78);
    let y = targets(n, 79);
    let mut rng = ChaCha8Rng::seed_from_u64(80);
    let v = rvec(&mut rng, net.num_params(), 1.0);
    let w = rvec(&mut rng, 2 * n, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let op = NetCurvatureOperator::new(
                &net,
                &x,
                Some(&y),
                OperatorOptions {
                    block: 2,
                    ..OperatorOptions::default()
                },
            )
            .unwrap();
            (
                op.gn_product_flat(&v).unwrap(),
                op.hessian_product_flat(&v).unwrap(),
                op.gram_product(&w).unwrap(),
                build_gram(&net, &x, &gram_opts()).unwrap().k,
                per_sample_curvature(&net, &x, 3).unwrap(),
            )
        })
    };
    let (a, b, c) = (run(1), run(2), run(3));
    assert!(a == b && b == c);
}

/// Timing of the CNN curvature paths on the seed's VGG config 'A' ([16, M, 16, M, 32, M, 64, M,
/// 64, M], 3×3 convs with padding 1, ReLU, 2×2 max-pool, then 64 → 128 → 2) on 32×32×3 inputs,
/// n = 200 random samples (nC = 400). Prints; asserts only consistency (not a timed test).
/// `cargo test --test net_curvature vgg_a_timing -- --ignored --nocapture`
#[test]
#[ignore]
fn vgg_a_timing() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut ch = 3;
    for co in [16, 16, 32, 64, 64] {
        layers.push(Box::new(conv(&mut rng, ch, co, 3, 1, 1)));
        layers.push(Box::new(Act(Activation::Relu)));
        layers.push(Box::new(MaxPool2d::new((2, 2), (2, 2))));
        ch = co;
    }
    layers.push(Box::new(Flatten));
    for (i, o) in [(64, 128), (128, 2)] {
        layers.push(Box::new(Linear::new(
            None,
            DMatrix::from_fn(o, i, |_, _| rng.random_range(-1.0..1.0) / (i as f64).sqrt()),
            vec![0.0; o],
        )));
        if o == 128 {
            layers.push(Box::new(Act(Activation::Relu)));
        }
    }
    let net = Sequential::new(Shape::Image { c: 3, h: 32, w: 32 }, layers).unwrap();
    let n = 200;
    let shape = net.input_shape();
    let x = Tensor::new(n, shape, rvec(&mut rng, n * shape.len(), 1.0)).unwrap();
    let y = Tensor::new(n, Shape::Flat(2), rvec(&mut rng, 2 * n, 1.0)).unwrap();
    println!("P = {}, n = {n}, nC = {}", net.num_params(), 2 * n);
    let t = std::time::Instant::now();
    let opts = GramOptions {
        block: 64,
        ..GramOptions::default()
    };
    let g = build_gram(&net, &x, &opts).unwrap();
    let t_gram = t.elapsed().as_secs_f64();
    let fe = g.formation_error;
    let spec = gram_spectrum(g, 1e-12).unwrap();
    println!(
        "build_gram (block 64): {t_gram:.2}s, +eig {:.2}s; λ_max ∈ [{:e}, {:e}], formation error {fe:e}",
        t.elapsed().as_secs_f64() - t_gram,
        spec.lambda_max_lower,
        spec.lambda_max_upper
    );
    let t = std::time::Instant::now();
    let ps = per_sample_curvature(&net, &x, 64).unwrap();
    println!("per_sample_curvature: {:.2}s", t.elapsed().as_secs_f64());
    let op = NetCurvatureOperator::new(&net, &x, Some(&y), OperatorOptions::default()).unwrap();
    let v = net.params();
    let t = std::time::Instant::now();
    op.gn_product_flat(&v).unwrap();
    println!("one GN product: {:.3}s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    op.hessian_product_flat(&v).unwrap();
    println!("one Hessian product: {:.3}s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let est = gauss_newton_lambda_max(&op, &LanczosOptions::default()).unwrap();
    println!(
        "Lanczos λ_max(G): {:.2}s, {} products, {:e} (Gram top {:e})",
        t.elapsed().as_secs_f64(),
        est.lanczos.products,
        est.estimate.value,
        spec.values[0]
    );
    assert!(est.bound.value <= spec.lambda_max_upper);
    assert!(ps.lambda.iter().all(|l| l.is_finite()));
}
