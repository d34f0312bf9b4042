//! The cost model of the stability sweep (THEORY.md §4, T5 failure mode (iv)): memory and time
//! of the Gram path and of one cone step, from a live GEMM benchmark of this machine.

use std::time::Instant;

use nalgebra::DMatrix;

use crate::model::Mlp;

/// Format bytes as MiB/GiB.
pub fn fmt_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", (b / (1u64 << 20) as f64).max(1.0))
    }
}

/// Format seconds.
pub fn fmt_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// Memory and time model of one run (THEORY.md §4, T5 failure mode (iv)).
#[derive(Debug, Clone, Copy)]
pub struct CostEstimate {
    /// Peak bytes: the Gram path plus the reduced model and the cone iteration.
    pub bytes: usize,
    /// Seconds for K, its eigendecomposition and the Weyl bounds.
    pub gram_seconds: f64,
    /// Seconds per cone step of the η* bracket (one application of 𝒟̃ and |𝒟̃| and the
    /// certificate's eigendecompositions).
    pub step_seconds: f64,
}

/// Sustained GEMM rate of this machine in flop/s, measured once on a small product (a few ms).
pub fn gemm_rate() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let m = 192;
        let a = DMatrix::<f64>::from_fn(m, m, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            let c = &a * &a;
            std::hint::black_box(&c);
            best = best.min(t.elapsed().as_secs_f64());
        }
        (2.0 * (m * m * m) as f64 / best.max(1e-9)).clamp(1e8, 1e12)
    })
}

/// How much slower than a GEMM the eigensolver and the per-sample loops run per flop (measured on
/// the bundled example, nC = r = 2560, on 2 cores).
const EIGEN_SLOWDOWN: f64 = 1.5;

/// Estimated seconds of the Gram path (THEORY.md §4): forming K costs about `4N²Σm` flops
/// (signed and absolute), the eigensolver and its Weyl bound about `14N³` at a third of the GEMM
/// rate, N = nC.
pub fn gram_seconds_estimate(mlp: &Mlp, n: usize) -> f64 {
    let big_n = (n * mlp.output_dim()) as f64;
    let m_sum: usize = mlp.widths()[1..].iter().sum();
    (4.0 * big_n * big_n * m_sum as f64 + EIGEN_SLOWDOWN * 14.0 * big_n.powi(3)) / gemm_rate()
}

/// Estimated seconds of the Gram path of a layered network (THEORY §4, §7(c)): the N × P
/// Jacobian blocks cost about `(C + 1)` passes per sample, each about `2P·s` flops with `s` the
/// mean spatial size a weight is applied at (`work_per_sample / P`), then forming K costs
/// `2N²P` flops and the eigensolver and its Weyl bound about `14N³` at a third of the GEMM rate,
/// N = nC. `work_per_sample` is the forward multiply-adds of one sample.
pub fn layered_gram_seconds_estimate(
    big_n: usize,
    params: usize,
    outputs: usize,
    work_per_sample: f64,
) -> f64 {
    let nf = big_n as f64;
    let samples = nf / outputs.max(1) as f64;
    let jacobians = samples * (outputs as f64 + 1.0) * 2.0 * work_per_sample;
    (jacobians + 2.0 * nf * nf * params as f64 + EIGEN_SLOWDOWN * 14.0 * nf.powi(3)) / gemm_rate()
}

/// Seconds of one cone step at rank r on N = nC rows (see [`estimate_cost`]).
pub fn step_seconds(big_n: usize, r: usize) -> f64 {
    let big_n = big_n as f64;
    let r = r as f64;
    (2.0 * 8.0 * big_n * r * r + EIGEN_SLOWDOWN * 40.0 * r.powi(3)) / gemm_rate()
}

/// The cost model of `flatcert stability` on N = nC rows and P parameters: the Gram path
/// (`gram`: its bytes and seconds, from the network's own model), then per cone step `8Nr²`
/// flops for 𝒟̃ and |𝒟̃| plus about `40r³` for the certificate's eigendecompositions (at a
/// third of the GEMM rate), with r ≤ min(N, P, `rank_cap`).
pub fn estimate_cost(
    big_n: usize,
    params: usize,
    gram: (usize, f64),
    rank_cap: usize,
) -> CostEstimate {
    let r_full = big_n.min(params);
    // Memory: the full reduced basis Y (N × r) and its |Y| are built once (T4, k-moments).
    let (nf, r) = (big_n as f64, r_full as f64);
    let extra = 8.0 * (4.0 * nf * r + 24.0 * r * r);
    CostEstimate {
        bytes: gram.0.saturating_add(extra as usize),
        gram_seconds: gram.1,
        step_seconds: step_seconds(big_n, r_full.min(rank_cap)),
    }
}
