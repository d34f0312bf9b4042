//! The factorized per-sample engine against materialized Jacobians built by an independent path
//! (one reverse-mode VJP per sample and output, `vjp_params` with a unit cotangent), and against
//! central finite differences.

use nalgebra::DMatrix;

use super::*;
use crate::model::Activation;
use crate::testutil::{random_data, random_mlp};

const ACTS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Softplus,
    Activation::Identity,
];

fn dataset(x: &DMatrix<f64>, y: Option<&DMatrix<f64>>) -> Dataset {
    // x is d × n (samples as columns) = row-major n × d.
    let (d, n) = x.shape();
    let y = y.map(|y| (y.as_slice().to_vec(), y.nrows()));
    Dataset::new(x.as_slice().to_vec(), n, d, y, "x", "y").unwrap()
}

/// `J_θ(x_i)` (C × P) materialized row by row with VJPs.
fn materialized_jacobian(mlp: &Mlp, x: &DMatrix<f64>, i: usize) -> DMatrix<f64> {
    let c = mlp.output_dim();
    let xi = x.columns(i, 1).into_owned();
    let cache = mlp.forward_cache(xi.as_view());
    let mut jac = DMatrix::zeros(c, mlp.num_params());
    for r in 0..c {
        let mut e = DMatrix::zeros(c, 1);
        e[(r, 0)] = 1.0;
        let g = mlp.vjp_params(&cache, &e).to_flat();
        jac.row_mut(r).copy_from_slice(&g);
    }
    jac
}

#[test]
fn factorized_norms_match_materialized_jacobians() {
    for (seed, act) in ACTS.iter().enumerate() {
        for widths in [
            vec![3, 5, 2],
            vec![4, 6, 5, 3],
            vec![2, 3],
            vec![5, 4, 4, 4, 1],
        ] {
            let mlp = random_mlp(&widths, *act, seed as u64 * 17 + widths.len() as u64);
            let n = 7;
            let x = random_data(widths[0], n, 99 + seed as u64);
            let ds = dataset(&x, None);
            let opts = PerSampleOptions {
                block: 3,
                ks: vec![1, 2, 3],
                t1_points: 4,
            };
            let st = per_sample_stats(&mlp, &ds, &opts, &|_| {}).unwrap();
            let d = widths[0];
            let m1 = mlp.first_layer().fan_out();
            for i in 0..n {
                let jac = materialized_jacobian(&mlp, &x, i);
                let jjt = &jac * jac.transpose();
                // Both sides are sums of the same O(P) products in a different order; relative
                // error ≲ P·u ≈ 1e-14 for these sizes, so 1e-12 is a safe bound.
                let tol = |v: f64| 1e-12 * (1.0 + v.abs());
                assert!((st.param_sq[i] - jac.norm_squared()).abs() < tol(st.param_sq[i]));
                let c = mlp.output_dim();
                for a in 0..c {
                    for b in 0..c {
                        let v = st.jjt[i * c * c + a * c + b];
                        assert!((v - jjt[(a, b)]).abs() < tol(v), "{act} jjt");
                    }
                }
                let lmax = jjt.clone().symmetric_eigenvalues().max();
                assert!((st.lambda[i] - lmax).abs() < tol(lmax));
                // First layer: the first m1·d entries of θ are W_1 (row-major).
                let jw = jac.columns(0, m1 * d);
                assert!(
                    (st.first_layer_sq[i] - jw.norm_squared()).abs() < tol(st.first_layer_sq[i])
                );
                // Input Jacobian by forward mode (independent of the backward pass).
                let xi: Vec<f64> = x.column(i).iter().copied().collect();
                let jx = mlp.input_jacobian_forward(&xi);
                assert!((st.input_sq[i] - jx.norm_squared()).abs() < tol(st.input_sq[i]));
                let s = jx.clone().svd(false, false).singular_values.max();
                assert!((st.input_spectral_sq[i] - s * s).abs() < tol(s * s));
                // Entrywise power sums.
                for (q, &k) in opts.ks.iter().enumerate() {
                    let p_ref: f64 = jac.iter().map(|v| v.abs().powi(2 * k as i32)).sum();
                    let p = st.param_power[q].1[i];
                    let p_val = p.sum * p.scale.powi(2 * k as i32);
                    assert!((p_val - p_ref).abs() < 1e-11 * (1.0 + p_ref), "{act} k={k}");
                    let x_ref: f64 = jx.iter().map(|v| v.abs().powi(2 * k as i32)).sum();
                    let xp = st.input_power[q].1[i];
                    let x_val = xp.sum * xp.scale.powi(2 * k as i32);
                    assert!((x_val - x_ref).abs() < 1e-11 * (1.0 + x_ref), "{act} k={k}");
                }
            }
            // T1 on every checked point: forward vs backward agree to rounding.
            assert_eq!(st.t1.points, 4);
            assert!(st.t1.max_abs_residual <= 1e-12, "{act}: {:?}", st.t1);
        }
    }
}

#[test]
fn per_sample_gradient_matches_finite_differences() {
    // An independent check of the whole chain: ‖J_θ(x_i)‖_F² from central differences of f in θ.
    // FD error per entry ≲ 1e-9 (h = 1e-6); summed over P ≈ 40 entries of size ≲ 1: 1e-6.
    let mlp = random_mlp(&[3, 4, 2], Activation::Tanh, 5);
    let x = random_data(3, 3, 6);
    let ds = dataset(&x, None);
    let st = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {}).unwrap();
    let theta = mlp.params_flat();
    for i in 0..3 {
        let xi = x.columns(i, 1);
        let mut total = 0.0;
        for p in 0..theta.len() {
            let h = 1e-6;
            let mut tp = theta.clone();
            tp[p] += h;
            let mut tm = theta.clone();
            tm[p] -= h;
            let fp = mlp.with_params_flat(&tp).unwrap().forward(xi);
            let fm = mlp.with_params_flat(&tm).unwrap().forward(xi);
            for c in 0..2 {
                let g = (fp[(c, 0)] - fm[(c, 0)]) / (2.0 * h);
                total += g * g;
            }
        }
        assert!(
            (total - st.param_sq[i]).abs() < 1e-6,
            "{total} vs {}",
            st.param_sq[i]
        );
    }
}

#[test]
fn results_do_not_depend_on_block_size_or_threads() {
    let mlp = random_mlp(&[6, 9, 7, 3], Activation::Softplus, 11);
    let x = random_data(6, 37, 12);
    let ds = dataset(&x, None);
    let a = per_sample_stats(
        &mlp,
        &ds,
        &PerSampleOptions {
            block: 5,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let b = pool
        .install(|| {
            per_sample_stats(
                &mlp,
                &ds,
                &PerSampleOptions {
                    block: 5,
                    ..Default::default()
                },
                &|_| {},
            )
        })
        .unwrap();
    // Same block size: bit-identical for any thread count.
    assert_eq!(a.param_sq, b.param_sq);
    assert_eq!(a.lambda, b.lambda);
    // Another block size: per-sample values are computed per column, GEMM blocking may change
    // the summation order: agreement to rounding.
    let c = per_sample_stats(
        &mlp,
        &ds,
        &PerSampleOptions {
            block: 64,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    for (u, v) in a.param_sq.iter().zip(&c.param_sq) {
        assert!((u - v).abs() < 1e-13 * u.abs().max(1.0));
    }
}

#[test]
fn scaled_power_sums_do_not_overflow() {
    // Entries of 1e30 to the power 32 overflow f64; the scaled form does not.
    let items: Vec<ScaledPowerSum> = (0..4)
        .map(|i| {
            let mut out = [ScaledPowerSum { scale: 0.0, sum: 0.0 }];
            ScaledPowerSum::of_slice(&[1e30 * (i + 1) as f64, 2e29], &[16], &mut out);
            out[0]
        })
        .collect();
    let m = ScaledPowerSum::mean_root(&items, 16);
    assert!(m.is_finite() && m > 3e30 && m < 4e30 * 1.01, "{m}");
    // Exact small case: entries (1, 2), k = 1 → mean over one sample of 1 + 4 = 5, root √5.
    let mut one = [ScaledPowerSum { scale: 0.0, sum: 0.0 }];
    ScaledPowerSum::of_slice(&[1.0, 2.0], &[1], &mut one);
    let one = one[0];
    assert!((ScaledPowerSum::mean_root(&[one], 1) - 5f64.sqrt()).abs() < 1e-15);
}

#[test]
fn residuals_and_shape_errors() {
    let mlp = random_mlp(&[2, 3, 2], Activation::Relu, 3);
    let x = random_data(2, 4, 4);
    let y = DMatrix::from_fn(2, 4, |r, c| (r + c) as f64);
    let ds = dataset(&x, Some(&y));
    let st = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {}).unwrap();
    let f = mlp.forward(x.as_view());
    let r = st.residual.unwrap();
    assert_eq!(r[2 + 1], f[(1, 1)] - y[(1, 1)]);
    let bad = dataset(&random_data(3, 4, 1), None);
    let e = per_sample_stats(&mlp, &bad, &PerSampleOptions::default(), &|_| {}).unwrap_err();
    assert!(e.to_string().contains("expects d = 2"), "{e}");
    let e = per_sample_stats(
        &mlp,
        &ds,
        &PerSampleOptions {
            ks: vec![0],
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("k must be"), "{e}");
}
