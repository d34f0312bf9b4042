//! # sharpness — λ_max of the Gauss–Newton matrix on the operator path, for side-by-side timing
//!
//! `cargo run --release --example sharpness -- MODEL X Y [TOL]` loads a checkpoint and its data,
//! builds the matrix-free Gauss–Newton operator G = (1/n)Σ J_iᵀJ_i (THEORY.md §4: one JVP and one
//! VJP per product, no P × P matrix) and runs Lanczos with full reorthogonalization until the
//! relative error estimate of the Ritz value is at most TOL (default 1e-6; THEORY.md T4 uses
//! λ_max(G), equal to λ_max(H) at an interpolating minimum). It prints one JSON object:
//! `lambda_max` (the Ritz value), `lower` (its rigorous Rayleigh lower bound), `error_estimate`
//! (the Kato–Temple / residual estimate of |λ_max − Ritz|), `products` (operator applications),
//! `setup_s` (loading) and `wall_s` (the Lanczos run alone, comparable with the peers'
//! compile-excluded `wall_s`).
//!
//! This is what `bench/compare.sh` times against `jax_peer.py sharpness --history` on workload W2.

use std::path::PathBuf;
use std::time::Instant;

use flatcert::io::{CheckpointOptions, DataOptions, load_checkpoint, load_dataset};
use flatcert::measure::hvp::{CurvatureOperator, OperatorOptions};
use flatcert::measure::lanczos::{LanczosOptions, gauss_newton_lambda_max};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 4 {
        anyhow::bail!("usage: sharpness MODEL X Y [TOL]");
    }
    let tol: f64 = match args.get(3) {
        Some(s) => s.parse()?,
        None => 1e-6,
    };
    let t0 = Instant::now();
    let mlp = load_checkpoint(&PathBuf::from(&args[0]), &CheckpointOptions::default())?.mlp;
    let data = load_dataset(
        &PathBuf::from(&args[1]),
        Some(&PathBuf::from(&args[2])),
        &DataOptions::default(),
    )?;
    let setup = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let op = CurvatureOperator::new(&mlp, &data, OperatorOptions::default())?;
    let est = gauss_newton_lambda_max(
        &op,
        &LanczosOptions {
            tol,
            max_iter: 600,
            ..LanczosOptions::default()
        },
    )?;
    let wall = t1.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "task": "gauss_newton_lambda_max",
            "lambda_max": est.estimate.value,
            "lower": est.bound.value,
            "error_estimate": est.estimate.tol,
            "products": est.lanczos.products,
            "tol": tol,
            "setup_s": setup,
            "wall_s": wall,
        })
    );
    Ok(())
}
