//! Cross-checks of the T6(d) batch moments: dynamic programme vs closed forms vs brute-force
//! enumeration of every batch, both sampling schemes, on seeded pseudo-random inputs.
//!
//! Tolerance. Every quantity is a sum of at most a few thousand products of ≤ 8 rounded factors,
//! so its rounding error is ≤ γ_{~10⁴}·M ≈ 1e-12·M, where M = E[(Σ_{j∈ξ}|z_j|)^k] bounds every
//! term in absolute value; comparisons use 1e-11·M (and M ≥ 1 is not assumed).

use flatcert_bounds::Sampling;
use flatcert_bounds::t6::{
    batch_sum_moment_closed, batch_sum_moment_dp, batch_sum_moments_dp, directional_test,
};

/// xorshift64* — a tiny deterministic generator for the property loops.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.unit()
    }
}

/// E[S^k] and E[(Σ|z|)^k] by enumerating every batch.
fn brute_force(z: &[f64], batch: usize, k: u32, sampling: Sampling) -> (f64, f64) {
    let n = z.len();
    let mut total = (0.0, 0.0);
    let mut count = 0usize;
    let mut visit = |idx: &[usize]| {
        let s: f64 = idx.iter().map(|&i| z[i]).sum();
        let a: f64 = idx.iter().map(|&i| z[i].abs()).sum();
        total.0 += s.powi(k as i32);
        total.1 += a.powi(k as i32);
        count += 1;
    };
    match sampling {
        Sampling::WithReplacement => {
            // All n^B ordered tuples.
            let mut idx = vec![0usize; batch];
            loop {
                visit(&idx);
                let mut pos = 0;
                loop {
                    if pos == batch {
                        return (total.0 / count as f64, total.1 / count as f64);
                    }
                    idx[pos] += 1;
                    if idx[pos] < n {
                        break;
                    }
                    idx[pos] = 0;
                    pos += 1;
                }
            }
        }
        Sampling::WithoutReplacement => {
            // All B-subsets, lexicographic.
            let mut idx: Vec<usize> = (0..batch).collect();
            loop {
                visit(&idx);
                let mut i = batch;
                loop {
                    if i == 0 {
                        return (total.0 / count as f64, total.1 / count as f64);
                    }
                    i -= 1;
                    if idx[i] < n - batch + i {
                        idx[i] += 1;
                        for j in i + 1..batch {
                            idx[j] = idx[j - 1] + 1;
                        }
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn dp_and_closed_forms_match_enumeration() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for _ in 0..300 {
        let n = rng.range(1, 6);
        let z: Vec<f64> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        for sampling in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
            let b_max = match sampling {
                Sampling::WithoutReplacement => n,
                Sampling::WithReplacement => (n + 1).min(4),
            };
            let batch = rng.range(1, b_max);
            let all = batch_sum_moments_dp(&z, batch, 6, sampling).unwrap();
            for k in 0..=6u32 {
                let (bf, mag) = brute_force(&z, batch, k, sampling);
                let tol = 1e-11 * mag.max(1e-300);
                let dp = batch_sum_moment_dp(&z, batch, k, sampling).unwrap();
                assert!(
                    (dp - bf).abs() <= tol,
                    "DP n={n} B={batch} k={k} {sampling:?}: {dp} vs {bf}"
                );
                assert!((all[k as usize] - dp).abs() <= tol);
                match batch_sum_moment_closed(&z, batch, k, sampling).unwrap() {
                    Some(c) => {
                        assert!(k <= 4);
                        assert!(
                            (c - bf).abs() <= tol,
                            "closed n={n} B={batch} k={k} {sampling:?}: {c} vs {bf}"
                        );
                    }
                    None => assert!(k > 4),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4000);
}

#[test]
fn directional_test_agrees_with_the_moment_formula() {
    // B = 1: E[(1 − ηX)^k] = Σ_q C(k,q)(−η)^q m_q (THEORY T6d), k = 2 and 4.
    let mut rng = Rng(42);
    for _ in 0..100 {
        let n = rng.range(1, 8);
        let x: Vec<f64> = (0..n).map(|_| rng.uniform(0.0, 3.0)).collect();
        let eta = rng.uniform(0.01, 0.5);
        let m = |q: i32| x.iter().map(|v| v.powi(q)).sum::<f64>() / n as f64;
        let k2 = 1.0 - 2.0 * eta * m(1) + eta * eta * m(2);
        let k4 = 1.0 - 4.0 * eta * m(1) + 6.0 * eta.powi(2) * m(2) - 4.0 * eta.powi(3) * m(3)
            + eta.powi(4) * m(4);
        for (k, want) in [(2, k2), (4, k4)] {
            let t = directional_test(&x, eta, 1, k, Sampling::WithoutReplacement).unwrap();
            assert!(
                (t.value - want).abs() <= 1e-12,
                "k={k}: {} vs {want}",
                t.value
            );
            let t = directional_test(&x, eta, 1, k, Sampling::WithReplacement).unwrap();
            assert!(
                (t.value - want).abs() <= 1e-12,
                "k={k}, B = 1 with replacement"
            );
        }
    }
}

#[test]
fn large_n_dp_and_closed_agree_within_their_tolerances() {
    // n·B·(k+1)² above the DP budget uses the closed form; compare with the DP directly.
    let mut rng = Rng(7);
    let n = 3000;
    let x: Vec<f64> = (0..n).map(|_| rng.uniform(0.0, 4.0)).collect();
    let eta = 0.3;
    for sampling in [Sampling::WithoutReplacement, Sampling::WithReplacement] {
        for k in [2, 4] {
            let batch = 300;
            let t = directional_test(&x, eta, batch, k, sampling).unwrap();
            let z: Vec<f64> = x.iter().map(|v| 1.0 - eta * v).collect();
            let dp = batch_sum_moment_dp(&z, batch, k, sampling).unwrap()
                / (batch as f64).powi(k as i32);
            assert!(t.tol > 0.0);
            assert!(
                (t.value - dp).abs() <= 2.0 * t.tol,
                "{sampling:?} k={k}: {} vs {dp} (tol {})",
                t.value,
                t.tol
            );
        }
    }
}

#[test]
fn with_replacement_b1_equals_without() {
    let z = [0.3, -1.2, 2.5, 0.7];
    for k in 0..=6 {
        let a = batch_sum_moment_dp(&z, 1, k, Sampling::WithoutReplacement).unwrap();
        let b = batch_sum_moment_dp(&z, 1, k, Sampling::WithReplacement).unwrap();
        assert!((a - b).abs() <= 1e-13 * (1.0 + a.abs()));
    }
    // B = n without replacement: S is the full sum, deterministic.
    let full: f64 = z.iter().sum();
    let e = batch_sum_moment_dp(&z, 4, 3, Sampling::WithoutReplacement).unwrap();
    assert!((e - full.powi(3)).abs() <= 1e-12);
}

#[test]
fn matches_the_numpy_oracle() {
    // Values printed by `check_theory.directional_test_z(x, 0.2, B, k, repl)` (THEORY's
    // independent oracle) for x = (0.1, 3.6, 10): (B, sampling, k, E[(1 − ηX_ξ)^k]).
    let wo = Sampling::WithoutReplacement;
    let wr = Sampling::WithReplacement;
    let cases = [
        (2, wo, 2, 0.17553333333333332),
        (2, wo, 4, 0.05810859333333329),
        (2, wo, 6, 0.021566761515333297),
        (2, wr, 2, 0.3435555555555556),
        (2, wr, 4, 0.2530184755555556),
        (2, wr, 6, 0.22396942669555558),
        (3, wo, 2, 0.007511111111111123),
        (3, wo, 4, 5.641679012345515e-05),
        (3, wo, 6, 4.237527791463316e-07),
        (5, wr, 2, 0.1419288888888889),
        (5, wr, 4, 0.05229566544592594),
        (5, wr, 6, 0.02796300049226032),
    ];
    for (b, s, k, want) in cases {
        let t = directional_test(&[0.1, 3.6, 10.0], 0.2, b, k, s).unwrap();
        // Both sides round in f64 (≤ ~50 operations on values ≤ 10⁴): 1e-12 relative + the
        // running-error tol of our own value.
        assert!(
            (t.value - want).abs() <= 1e-12 * want.abs() + t.tol + 1e-15,
            "B={b} {s:?} k={k}: {} vs {want}",
            t.value
        );
    }
}
