//! THEORY T5(i) against the exact route on tiny random networks (issue 11, "Tests"): for every
//! batch size B, the matrix-free η_suff(B) = 2/[(1−p)·upper(λ_max(G)) + p·upper(max_i λ_i)] is a
//! lower bound of the exact η*(B), so it never exceeds the certified *upper* end of the T5(f)
//! bracket of η*(B) from the Gram path. The two share only the forward/backward passes:
//! η_suff uses λ_max(G) and the per-sample C×C Grams, η* the reduced operator 𝒟̃ on Sym(r).
//!
//! Problems: widths ≤ 4, depth ≤ 2, every activation, n ≤ 7 random inputs, targets := outputs
//! (interpolation, so G = H exactly and T5(i)'s H_i ⪰ 0 holds). The comparison is between two
//! rigorous sides (both include their rounding allowances), so no tolerance is needed; a 1e-12
//! relative slack covers only the outward rounding of the final division.

use flatcert::Dataset;
use flatcert::measure::gram::{GramOptions, gauss_newton_gram};
use flatcert::measure::per_sample::{PerSampleOptions, per_sample_stats};
use flatcert::measure::stability::{
    BracketOptions, ReducedModel, Sampling, critical_lr_sweep, noise_p,
};
use flatcert::model::Activation;
use flatcert::testutil::{random_data, random_mlp};
use flatcert_bounds::Value;
use flatcert_bounds::t5::eta_suff;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config() -> Config {
    let base = Config::default();
    Config {
        cases: base.cases.min(48),
        rng_seed: RngSeed::Fixed(0x7515_u64),
        failure_persistence: None,
        ..base
    }
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
        Just(Activation::Softplus),
        Just(Activation::Identity),
        Just(Activation::LeakyRelu { alpha: 0.1 }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn eta_suff_is_below_the_exact_eta_star_for_every_batch(
        d in 1usize..=3,
        m in 1usize..=4,
        c in 1usize..=2,
        act in activation(),
        n in 2usize..=7,
        with_replacement in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let widths = [d, m, c];
        let mlp = random_mlp(&widths, act, seed);
        let x = random_data(d, n, seed ^ 0x3c3c);
        let y = mlp.forward(x.as_view());
        let ds = Dataset::new(x.as_slice().to_vec(), n, d, Some((y.as_slice().to_vec(), c)), "x", "y")
            .expect("finite random data");
        let spec = gauss_newton_gram(&mlp, &ds, &GramOptions::default()).expect("gram");
        let a = Value::upper_bound(spec.lambda_max().value, 0.0);
        let stats = per_sample_stats(&mlp, &ds, &PerSampleOptions::default(), &|_| {})
            .expect("per-sample");
        let lmax = stats.lambda.iter().copied().fold(0.0, f64::max);
        // The exact per-sample λ_i carry a relative rounding tol (docs/measurements.md).
        let l = Value::exact(lmax, lmax * stats.rel_tol).only_upper();
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
            // p = 0 (B = n without replacement): η_suff = 2/upper(λ_max(G)) = the certified
            // lower end of η_GD*, up to the one outward rounding of the division.
            if p == 0.0 && a.upper() > 0.0 {
                let gd = 2.0 / a.upper();
                prop_assert!((suff.lower() - gd).abs() <= 4.0 * f64::EPSILON * gd);
            }
        }
    }
}
