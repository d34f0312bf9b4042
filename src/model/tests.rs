//! Independent checks of the batched passes: central finite differences and dense references.

use nalgebra::{DMatrix, DVector};

use super::*;
use crate::testutil::{random_data, random_mlp};

use crate::testutil::ALL_ACTIVATIONS as ACTS;

/// Central-difference Jacobian of the outputs at sample `i` with respect to θ: `C × P`.
fn fd_param_jacobian(mlp: &Mlp, x: &DMatrix<f64>, i: usize) -> DMatrix<f64> {
    let theta = mlp.params_flat();
    let c_out = mlp.output_dim();
    let xi = x.columns(i, 1);
    let mut jac = DMatrix::zeros(c_out, theta.len());
    let h = 1e-6;
    for p in 0..theta.len() {
        let mut tp = theta.clone();
        tp[p] += h;
        let mut tm = theta.clone();
        tm[p] -= h;
        let fp = mlp.with_params_flat(&tp).unwrap().forward(xi);
        let fm = mlp.with_params_flat(&tm).unwrap().forward(xi);
        for c in 0..c_out {
            jac[(c, p)] = (fp[(c, 0)] - fm[(c, 0)]) / (2.0 * h);
        }
    }
    jac
}

/// Materialized per-sample parameter Jacobian from the output deltas (row c = ∇_θ f_c(x_i)).
fn jacobian_from_deltas(
    mlp: &Mlp,
    cache: &ForwardCache,
    d: &OutputDeltas,
    i: usize,
) -> DMatrix<f64> {
    let c_out = mlp.output_dim();
    let mut jac = DMatrix::zeros(c_out, mlp.num_params());
    for c in 0..c_out {
        let mut layers = Vec::new();
        for (j, layer) in mlp.layers().iter().enumerate() {
            let delta: DVector<f64> = if j + 1 == mlp.depth() {
                DVector::from_fn(c_out, |r, _| if r == c { 1.0 } else { 0.0 })
            } else {
                d.hidden[j].column(i * c_out + c).into_owned()
            };
            let h = cache.post[j].column(i).into_owned();
            layers.push(Dense {
                weight: &delta * h.transpose(),
                bias: delta,
            });
            let _ = layer;
        }
        let flat = Params { layers }.to_flat();
        jac.row_mut(c).copy_from_slice(&flat);
    }
    jac
}

#[test]
fn output_deltas_match_finite_differences() {
    // FD error: truncation O(h²·|f'''|) ≈ 1e-12 plus cancellation O(u·|f|/h) ≈ 1e-10 for
    // |f| ≲ 1; 1e-6 absolute leaves ample room while catching any wrong factor. Smooth
    // activations only: ReLU kinks make FD ill-posed at measure-zero points, and the random
    // points here avoid them with probability 1, so ReLU is included too.
    for (seed, act) in ACTS.iter().enumerate() {
        let mlp = random_mlp(&[3, 5, 4, 2], *act, seed as u64);
        let x = random_data(3, 4, 100 + seed as u64);
        let cache = mlp.forward_cache(x.as_view());
        let deltas = mlp.output_deltas(&cache);
        for i in 0..4 {
            let a = jacobian_from_deltas(&mlp, &cache, &deltas, i);
            let b = fd_param_jacobian(&mlp, &x, i);
            let err = (&a - &b).amax();
            assert!(err < 1e-6, "{act}: max |J - J_fd| = {err}");
        }
    }
}

#[test]
fn input_gradients_three_ways() {
    for (seed, act) in ACTS.iter().enumerate() {
        let mlp = random_mlp(&[4, 6, 3], *act, 7 + seed as u64);
        let x = random_data(4, 3, 9 + seed as u64);
        let cache = mlp.forward_cache(x.as_view());
        let deltas = mlp.output_deltas(&cache);
        let jx = mlp.input_gradients(&deltas, 3);
        for i in 0..3 {
            let col: Vec<f64> = x.column(i).iter().copied().collect();
            let fwd = mlp.input_jacobian_forward(&col);
            for c in 0..3 {
                for k in 0..4 {
                    let a = jx[(k, i * 3 + c)];
                    // Forward and reverse mode evaluate the same chain-rule sums in a different
                    // order: agreement to a few ulps of the magnitudes involved.
                    assert!((a - fwd[(c, k)]).abs() < 1e-13, "{act}");
                    let h = 1e-6;
                    let mut xp = col.clone();
                    xp[k] += h;
                    let mut xm = col.clone();
                    xm[k] -= h;
                    let fp = mlp.forward(DMatrix::from_column_slice(4, 1, &xp).as_view());
                    let fm = mlp.forward(DMatrix::from_column_slice(4, 1, &xm).as_view());
                    let fd = (fp[(c, 0)] - fm[(c, 0)]) / (2.0 * h);
                    assert!((a - fd).abs() < 1e-6, "{act}: {a} vs fd {fd}");
                }
            }
        }
    }
}

#[test]
fn jvp_and_vjp_are_adjoint_and_match_materialized_jacobians() {
    for (seed, act) in ACTS.iter().enumerate() {
        let mlp = random_mlp(&[3, 4, 4, 2], *act, 30 + seed as u64);
        let x = random_data(3, 5, 40 + seed as u64);
        let cache = mlp.forward_cache(x.as_view());
        let deltas = mlp.output_deltas(&cache);
        let p = mlp.num_params();
        let v_flat: Vec<f64> = (0..p).map(|k| ((k * 37 % 11) as f64 - 5.0) / 7.0).collect();
        let v = Params::from_flat(&mlp, &v_flat).unwrap();
        let jv = mlp.jvp_params(&cache, &v);
        let u = DMatrix::from_fn(2, 5, |r, c| (r as f64 + 1.0) * 0.3 - c as f64 * 0.2);
        let jtu = mlp.vjp_params(&cache, &u);
        let mut jtu_ref = vec![0.0; p];
        for i in 0..5 {
            let jac = jacobian_from_deltas(&mlp, &cache, &deltas, i);
            let vv = DVector::from_vec(v_flat.clone());
            let ref_jv = &jac * vv;
            for c in 0..2 {
                // Same sums in a different association order: relative 1e-12.
                assert!((ref_jv[c] - jv[(c, i)]).abs() < 1e-12 * (1.0 + ref_jv[c].abs()));
            }
            let uc = u.column(i).into_owned();
            let contrib = jac.transpose() * uc;
            for k in 0..p {
                jtu_ref[k] += contrib[k];
            }
        }
        for (a, b) in jtu.to_flat().iter().zip(&jtu_ref) {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{act}");
        }
        // Adjointness ⟨u, Jv⟩ = ⟨Jᵀu, v⟩.
        let lhs = u.dot(&jv);
        let rhs = jtu.dot(&v);
        assert!((lhs - rhs).abs() < 1e-12 * (1.0 + lhs.abs()));
    }
}

#[test]
fn flat_parameter_order_is_row_major_weight_then_bias() {
    let mlp = random_mlp(&[2, 3, 1], Activation::Tanh, 1);
    let flat = mlp.params_flat();
    let w = &mlp.layers()[0].weight;
    assert_eq!(flat[0], w[(0, 0)]);
    assert_eq!(flat[1], w[(0, 1)]);
    assert_eq!(flat[2], w[(1, 0)]);
    assert_eq!(flat[6], mlp.layers()[0].bias[0]);
    let back = mlp.with_params_flat(&flat).unwrap();
    assert_eq!(back, mlp);
}

#[test]
fn shapes_must_chain() {
    let a = Dense {
        weight: DMatrix::zeros(3, 2),
        bias: DVector::zeros(3),
    };
    let b = Dense {
        weight: DMatrix::zeros(1, 4),
        bias: DVector::zeros(1),
    };
    let err = Mlp::new(vec![a, b], Activation::Relu).unwrap_err();
    assert!(err.to_string().contains("does not chain"), "{err}");
}
