//! The factorized per-sample engine against materialized Jacobians built by an independent path
//! (one reverse-mode VJP per sample and output, `vjp_params` with a unit cotangent), and against
//! central finite differences.

use nalgebra::DMatrix;

use super::*;
use crate::model::Activation;
use crate::testutil::{random_data, random_mlp};

use crate::testutil::ALL_ACTIVATIONS as ACTS;

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
            for bw in backwards(&mlp) {
                let st = stats_with(&mlp, &ds, &opts, bw);
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
                        (st.first_layer_sq[i] - jw.norm_squared()).abs()
                            < tol(st.first_layer_sq[i])
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
            let mut out = [ScaledPowerSum {
                scale: 0.0,
                sum: 0.0,
            }];
            ScaledPowerSum::of_slice(&[1e30 * (i + 1) as f64, 2e29], &[16], &mut out);
            out[0]
        })
        .collect();
    let m = ScaledPowerSum::mean_root(&items, 16);
    assert!(m.is_finite() && m > 3e30 && m < 4e30 * 1.01, "{m}");
    // Exact small case: entries (1, 2), k = 1 → mean over one sample of 1 + 4 = 5, root √5.
    let mut one = [ScaledPowerSum {
        scale: 0.0,
        sum: 0.0,
    }];
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

// ------------------------------------------------------------------------------------------------
// The sparse (ReLU) backward path against the dense one.
// ------------------------------------------------------------------------------------------------

/// Every backward path that applies to `mlp`: dense, and for ReLU networks with a hidden layer
/// the sparse path with the portable kernel and with this CPU's SIMD kernel (when there is one).
fn backwards(mlp: &Mlp) -> Vec<Backward> {
    let mut v = vec![Backward::Dense];
    if Backward::sparse_applies(mlp) {
        v.push(Backward::Sparse(Kernel::Portable));
        v.extend(Kernel::detect().map(Backward::Sparse));
    }
    v
}

fn stats_with(mlp: &Mlp, ds: &Dataset, opts: &PerSampleOptions, bw: Backward) -> PerSampleStats {
    per_sample_stats_with(mlp, ds, opts, &|_| {}, bw).unwrap()
}

fn power_value(p: ScaledPowerSum, k: u32) -> f64 {
    p.sum * p.scale.powi(2 * k as i32)
}

/// The two paths evaluate the same sums of products and differ only in summation order and in
/// skipping exact zeros. For the sizes used here (≤ 64 terms per sum, entries O(1)) each value
/// is within `γ_64·Σ|terms| ≈ 1e-14·Σ|terms|` of the exact one; `Σ|terms|` is bounded by the
/// trace of the Gram for `J_iJ_iᵀ` (Cauchy–Schwarz) and is within a small factor of the value
/// for the norms, so `1e-12·(1 + scale)` leaves a wide margin. Power sums of order 2k amplify
/// relative entry errors by 2k ≤ 6: `1e-11` relative. Forward-pass quantities (x norms,
/// residuals, kinks, T1) do not depend on the path and must be bit-identical.
fn assert_same_stats(a: &PerSampleStats, b: &PerSampleStats, what: &str) {
    assert_eq!(a.len(), b.len());
    let c = a.outputs;
    let close = |u: f64, v: f64, scale: f64| (u - v).abs() <= 1e-12 * (1.0 + scale.abs());
    for i in 0..a.len() {
        let s = a.param_sq[i];
        assert!(
            close(a.param_sq[i], b.param_sq[i], s),
            "{what} param_sq[{i}]"
        );
        assert!(close(a.lambda[i], b.lambda[i], s), "{what} lambda[{i}]");
        for e in i * c * c..(i + 1) * c * c {
            assert!(close(a.jjt[e], b.jjt[e], s), "{what} jjt[{e}]");
        }
        let s1 = a.delta1_sq[i];
        assert!(
            close(a.delta1_sq[i], b.delta1_sq[i], s1),
            "{what} delta1_sq[{i}]"
        );
        let sf = a.first_layer_sq[i];
        assert!(
            close(a.first_layer_sq[i], b.first_layer_sq[i], sf),
            "{what} first_layer[{i}]"
        );
        let sx = a.input_sq[i];
        assert!(
            close(a.input_sq[i], b.input_sq[i], sx),
            "{what} input_sq[{i}]"
        );
        assert!(
            close(a.input_spectral_sq[i], b.input_spectral_sq[i], sx),
            "{what} input_spectral_sq[{i}]"
        );
        for (pa, pb) in [
            (&a.param_power, &b.param_power),
            (&a.input_power, &b.input_power),
        ] {
            for ((k, va), (kb, vb)) in pa.iter().zip(pb.iter()) {
                assert_eq!(k, kb);
                let (u, v) = (power_value(va[i], *k), power_value(vb[i], *k));
                assert!(
                    (u - v).abs() <= 1e-11 * (1e-300 + u.abs()),
                    "{what} power k={k} {u} {v}"
                );
            }
        }
    }
    assert_eq!(a.x_norm, b.x_norm, "{what} x_norm");
    assert_eq!(a.residual, b.residual, "{what} residual");
    assert_eq!(a.kink_samples, b.kink_samples, "{what} kinks");
    assert_eq!(a.t1, b.t1, "{what} t1");
}

#[test]
fn sparse_path_is_chosen_only_for_relu_with_hidden_layers() {
    let relu = random_mlp(&[3, 5, 2], Activation::Relu, 1);
    assert_eq!(
        Backward::choose(&relu),
        Kernel::detect().map_or(Backward::Dense, Backward::Sparse)
    );
    // No hidden layer, or σ′ ∉ {0, 1}: dense.
    assert_eq!(
        Backward::choose(&random_mlp(&[3, 2], Activation::Relu, 1)),
        Backward::Dense
    );
    for act in [
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Tanh,
        Activation::Identity,
    ] {
        assert_eq!(
            Backward::choose(&random_mlp(&[3, 5, 2], act, 1)),
            Backward::Dense
        );
    }
}

#[test]
fn sparse_relu_matches_dense_on_random_nets() {
    // Depths 2–5; widths below, at and above the panel height MR = 16 (tail panels), and C above
    // NC_MAX = 12 (two column chunks).
    for (seed, widths) in [
        vec![3, 5, 2],
        vec![4, 6, 5, 3],
        vec![5, 4, 4, 4, 1],
        vec![19, 37, 21, 13],
        vec![16, 16, 32, 10],
        vec![7, 33, 17, 9, 25],
        vec![40, 3, 50, 4],
    ]
    .into_iter()
    .enumerate()
    {
        let mlp = random_mlp(&widths, Activation::Relu, 300 + seed as u64);
        let n = 23;
        let x = random_data(widths[0], n, 400 + seed as u64);
        let y = random_data(*widths.last().unwrap(), n, 500 + seed as u64);
        let ds = dataset(&x, Some(&y));
        let opts = PerSampleOptions {
            block: 5,
            ks: vec![1, 2, 3],
            t1_points: 3,
        };
        let dense = stats_with(&mlp, &ds, &opts, Backward::Dense);
        let bws = backwards(&mlp);
        assert!(bws.len() >= 2);
        for bw in bws {
            let st = stats_with(&mlp, &ds, &opts, bw);
            assert_same_stats(&dense, &st, &format!("{widths:?} {bw:?}"));
        }
    }
}

/// A ReLU network on which chosen samples switch whole layers off: hidden weights ≥ 0, `b_1 = 0`
/// and `b_l = −1` for the deeper hidden layers. Then `x < 0` leaves layer 1 inactive (`A_1 = ∅`),
/// a small positive `x` leaves layer 2 inactive with layer 1 fully active, a large positive `x`
/// activates everything, and random `x` give partial activity.
fn switching_net(widths: &[usize], seed: u64) -> (Mlp, DMatrix<f64>) {
    let base = random_mlp(widths, Activation::Relu, seed);
    let depth = base.depth();
    let layers = base
        .layers()
        .iter()
        .enumerate()
        .map(|(j, l)| {
            if j + 1 == depth {
                return l.clone();
            }
            crate::model::Dense {
                weight: l.weight.abs(),
                bias: l.bias.map(|_| if j == 0 { 0.0 } else { -1.0 }),
            }
        })
        .collect();
    let mlp = Mlp::new(layers, Activation::Relu).unwrap();
    let d = widths[0];
    let u = random_data(d, 1, seed + 1).map(|v| 1.0 + v.abs() / 4.0); // entries in [1, 1.44]
    let mut x = random_data(d, 12, seed + 2);
    for (col, s) in [
        (0, -1.0),
        (3, 0.01),
        (4, -0.2),
        (7, 5.0),
        (8, 0.02),
        (11, -3.0),
    ] {
        x.set_column(col, &(&u * s).column(0));
    }
    (mlp, x)
}

#[test]
fn sparse_path_with_empty_active_sets() {
    for widths in [vec![5, 20, 3], vec![5, 20, 18, 3], vec![6, 17, 18, 16, 4]] {
        let (mlp, x) = switching_net(&widths, 77 + widths.len() as u64);
        let n = x.ncols();
        let ds = dataset(&x, None);
        // The constructed samples do switch layers off (and on) entirely.
        let cache = mlp.forward_cache(x.as_view());
        let active =
            |h: usize, i: usize| cache.pre[h].column(i).iter().filter(|&&z| z > 0.0).count();
        assert_eq!(active(0, 0), 0);
        assert_eq!(active(0, 3), widths[1]);
        if widths.len() > 3 {
            assert_eq!(active(1, 3), 0, "{widths:?}");
            assert_eq!(active(1, 7), widths[2]);
        }
        let opts = PerSampleOptions {
            block: 4,
            ks: vec![1, 2],
            t1_points: 2,
        };
        let dense = stats_with(&mlp, &ds, &opts, Backward::Dense);
        for bw in backwards(&mlp) {
            let st = stats_with(&mlp, &ds, &opts, bw);
            assert_same_stats(&dense, &st, &format!("{widths:?} {bw:?}"));
            // A_1 = ∅: no gradient reaches the input or the first layer.
            for i in [0, 4, 11] {
                assert_eq!(st.delta1_sq[i], 0.0);
                assert_eq!(st.input_sq[i], 0.0);
                assert_eq!(st.input_spectral_sq[i], 0.0);
                assert_eq!(st.input_power[0].1[i], ScaledPowerSum::ZERO);
            }
            // Against the materialized Jacobian (independent VJPs).
            for i in 0..n {
                let jac = materialized_jacobian(&mlp, &x, i);
                let v = jac.norm_squared();
                assert!((st.param_sq[i] - v).abs() < 1e-12 * (1.0 + v), "{bw:?} {i}");
                let jjt = &jac * jac.transpose();
                let lmax = jjt.symmetric_eigenvalues().max();
                assert!((st.lambda[i] - lmax).abs() < 1e-12 * (1.0 + lmax));
            }
        }
    }
}

#[test]
fn sparse_path_is_bit_identical_for_any_thread_count() {
    let mlp = random_mlp(&[9, 40, 24, 5], Activation::Relu, 21);
    let x = random_data(9, 53, 22);
    let ds = dataset(&x, None);
    let opts = PerSampleOptions {
        block: 6,
        ..Default::default()
    };
    for bw in backwards(&mlp) {
        let a = stats_with(&mlp, &ds, &opts, bw);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| stats_with(&mlp, &ds, &opts, bw));
        assert_eq!(a.param_sq, b.param_sq);
        assert_eq!(a.lambda, b.lambda);
        assert_eq!(a.jjt, b.jjt);
        assert_eq!(a.input_sq, b.input_sq);
        assert_eq!(a.input_spectral_sq, b.input_spectral_sq);
        assert_eq!(a.param_power, b.param_power);
        assert_eq!(a.input_power, b.input_power);
    }
}
