//! THEORY.md §5 worked example through the measurement engine (T1, T3 golden values): the ReLU
//! 1–2–1 network f(x) = |x| on x = (−1, 1, 2), y = (1, 1, 2).

use flatcert::measure::first_order::{first_layer_norms, first_order_quantities};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::{Activation, Dataset, Dense, Mlp};
use nalgebra::{dmatrix, dvector};

fn golden() -> (Mlp, Dataset) {
    let mlp = Mlp::new(
        vec![
            Dense {
                weight: dmatrix![1.0; -1.0],
                bias: dvector![0.0, 0.0],
            },
            Dense {
                weight: dmatrix![1.0, 1.0],
                bias: dvector![0.0],
            },
        ],
        Activation::Relu,
    )
    .expect("valid network");
    let ds = Dataset::new(
        vec![-1.0, 1.0, 2.0],
        3,
        1,
        Some((vec![1.0, 1.0, 2.0], 1)),
        "x",
        "y",
    )
    .expect("valid data");
    (mlp, ds)
}

/// Every number of the example is a small integer or √2 computed from exact inputs, so the
/// engine must reproduce it to a few ulps: 1e-14 absolute.
const TOL: f64 = 1e-14;

#[test]
fn t1_t3_golden_values() {
    let (mlp, ds) = golden();
    let st = per_sample_stats(
        &mlp,
        &ds,
        &PerSampleOptions {
            ks: vec![1, 2],
            ..Default::default()
        },
        &|_| {},
    )
    .expect("runs");
    // λ_i = ‖a_i‖² = 4, 4, 10 (C = 1: λ_i = ‖J_θ(x_i)‖²).
    for (got, want) in st.lambda.iter().zip([4.0, 4.0, 10.0]) {
        assert!((got - want).abs() < TOL, "λ_i {got} vs {want}");
    }
    // tr G = (4 + 4 + 10)/3 = 6 = tr H (interpolation).
    let tr_g = st.param_sq.iter().sum::<f64>() / 3.0;
    assert!((tr_g - 6.0).abs() < TOL);
    // tr G_W = (1/n) Σ‖J_W(x_i)‖_F² = (1 + 1 + 4)/3 = 2.
    let tr_gw = st.first_layer_sq.iter().sum::<f64>() / 3.0;
    assert!((tr_gw - 2.0).abs() < TOL);
    // mean |f'(x_i)|² x_i² = (1 + 1 + 4)/3 = 2 ≤ ‖W‖₂² tr G_W = 4 ≤ ‖W‖₂² tr G = 12.
    let lhs: f64 = (0..3)
        .map(|i| st.input_sq[i] * st.x_norm[i].powi(2))
        .sum::<f64>()
        / 3.0;
    assert!((lhs - 2.0).abs() < TOL);
    let norms = first_layer_norms(&mlp).expect("norms");
    let w2 = 2f64.sqrt();
    assert!(norms.spectral.lower <= w2 && w2 <= norms.spectral.upper);
    assert!((norms.spectral.upper.powi(2) * tr_gw - 4.0).abs() < 1e-13);
    assert!((norms.spectral.upper.powi(2) * tr_g - 12.0).abs() < 1e-13);
    // T1b at x = −1: ⟨x, f'(x)⟩ = |x| = 1 = ⟨W, ∇_W f⟩; the engine's forward-mode check agrees.
    assert_eq!(st.t1.max_scalar_residual, 0.0);
    assert_eq!(st.t1.max_abs_residual, 0.0);
    // The residual is exactly zero: f(x) = |x| interpolates.
    let q = first_order_quantities(&mlp, &st, &norms, &[1, 2]);
    assert_eq!(q["train_loss"].value, 0.0);
    assert_eq!(q["max_abs_residual"].value, 0.0);
    // g_W(1)² = tr G; T2 ratio: |f'(x)||x| / (‖W‖₂ ‖J_W‖) = 1/√2 at every point.
    assert!((q["param_grad_elementwise_k1"].value.powi(2) - 6.0).abs() < 1e-13);
    assert!((q["first_layer_inequality_max_ratio"].value - 1.0 / w2).abs() < 1e-13);
}
