//! T1, T2, T3 and the per-sample identities of THEORY.md §0/§4 on random networks.

use flatcert::measure::first_order::first_layer_norms;
use flatcert::measure::per_sample::{PerSampleOptions, ScaledPowerSum, per_sample_stats};
use flatcert::testutil::{random_data, random_mlp};
use flatcert::{Activation, Dataset};
use proptest::prelude::*;

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        (0.0f64..1.0).prop_map(|alpha| Activation::LeakyRelu { alpha }),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
        Just(Activation::Softplus),
        Just(Activation::Identity),
    ]
}

fn network() -> impl Strategy<Value = (Vec<usize>, Activation, u64)> {
    (
        prop::collection::vec(1usize..=16, 2..=5),
        activation(),
        any::<u64>(),
    )
}

const U: f64 = f64::EPSILON / 2.0;

proptest! {
    #[test]
    fn t1_t2_t3_hold_on_random_networks((widths, act, seed) in network(), n in 1usize..12, scale in 0.1f64..4.0) {
        let mlp = random_mlp(&widths, act, seed);
        let x = random_data(widths[0], n, seed ^ 0x5eed) * scale;
        let ds = Dataset::new(x.as_slice().to_vec(), n, widths[0], None, "x", "").unwrap();
        let st = per_sample_stats(&mlp, &ds, &PerSampleOptions { block: 5, ks: vec![1, 2, 3], t1_points: 6 }, &|_| {}).unwrap();
        let norms = first_layer_norms(&mlp).unwrap();
        let c = mlp.output_dim() as f64;
        // Rounding allowance for the identities below: the quantities are sums of at most
        // P·C products of moderately sized numbers; 1e-10 relative is ≫ P·C·u for P ≤ 1300.
        let rel = 1e-10;
        // T1 (non-circular: forward mode vs backward pass). Both sides are computed to a few ulps
        // of |W|·|δ|·|x|-sized sums; 1e3·u times the largest input-gradient entry scale.
        let jmax = st.input_sq.iter().fold(0.0f64, |m, v| m.max(v.sqrt()));
        let xmax = x.amax();
        let w1 = mlp.first_layer().weight.amax() * widths[1] as f64;
        prop_assert!(st.t1.max_abs_residual <= 1e3 * U * (1.0 + jmax + w1) * (1.0 + xmax) * widths.len() as f64,
            "T1 residual {:?}", st.t1);
        let mut lhs_t3 = 0.0;
        for i in 0..n {
            // rank J_iᵀJ_i ≤ C: λ_i ≤ ‖J_i‖_F² ≤ C·λ_i.
            prop_assert!(st.lambda[i] <= st.param_sq[i] * (1.0 + rel));
            prop_assert!(st.param_sq[i] <= c * st.lambda[i] * (1.0 + rel) + 1e-300);
            // J_W is a column block of J_θ.
            prop_assert!(st.first_layer_sq[i] <= st.param_sq[i] * (1.0 + rel));
            // T2a upper: ‖J_x‖_F‖x‖ ≤ ‖W‖₂‖J_W‖_F (with the upper bound of ‖W‖₂).
            let l = st.input_sq[i].sqrt() * st.x_norm[i];
            let r = norms.spectral.upper * st.first_layer_sq[i].sqrt();
            prop_assert!(l <= r * (1.0 + rel) + 1e-300, "T2a: {l} > {r}");
            // T2b: ‖J_x‖₂‖x‖ ≤ ‖W‖₂‖J_W‖₂ ≤ ‖W‖₂‖J_W‖_F.
            prop_assert!(st.input_spectral_sq[i].sqrt() * st.x_norm[i] <= r * (1.0 + rel) + 1e-300);
            lhs_t3 += st.input_sq[i] * st.x_norm[i] * st.x_norm[i];
        }
        // T3: (1/n)Σ‖J_x‖²‖x‖² ≤ ‖W‖₂² tr G_W ≤ ‖W‖₂² tr G.
        let nf = n as f64;
        let tr_gw = st.first_layer_sq.iter().sum::<f64>() / nf;
        let tr_g = st.param_sq.iter().sum::<f64>() / nf;
        let w2 = norms.spectral.upper.powi(2);
        prop_assert!(lhs_t3 / nf <= w2 * tr_gw * (1.0 + rel) + 1e-300);
        prop_assert!(tr_gw <= tr_g * (1.0 + rel));
        // g_W(1)² = tr G (T7e).
        let gw1 = ScaledPowerSum::mean_root(&st.param_power[0].1, 1);
        prop_assert!((gw1 * gw1 - tr_g).abs() <= rel * (1.0 + tr_g));
        // g_x(k) ≤ |f|_{1,2k} (T7e: ‖v‖_{2k} ≤ ‖v‖₂ and Σ_c‖g_c‖^{2k} ≤ (Σ_c‖g_c‖²)^k).
        for (q, &k) in [1u32, 2, 3].iter().enumerate() {
            let gx = ScaledPowerSum::mean_root(&st.input_power[q].1, k);
            let sob = flatcert::measure::first_order::moment_of_squares(&st.input_sq, k);
            prop_assert!(gx <= sob * (1.0 + rel) + 1e-300, "g_x({k}) = {gx} > {sob}");
        }
    }
}
