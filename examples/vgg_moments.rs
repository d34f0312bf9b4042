//! Benchmark (issue 14 item 8): per-sample moments k = 1, 2, 4 of the seed's VGG config 'A'
//! ([16, M, 16, M, 32, M, 64, M, 64, M], 3×3 convs with padding 1, ReLU, 2×2 max-pool, then
//! 64 → 128 → K) on 3×32×32 inputs, K = 2, n = 1000, f64, with the `flatcert::net` engine.
//!
//! Weights: PyTorch's default scale (uniform ±1/√fan_in), seeded; inputs: synthetic, uniform in
//! [0, 1) (CIFAR-like pixel range), seeded. Not a timed test: run under `/usr/bin/time -v` for
//! the peak memory, e.g.
//! `cargo run --profile test --example vgg_moments -- [n] [out_dir]`; with `out_dir` it also writes
//! `model.safetensors` (F64, with the `flatcert_arch` metadata) and `x.npy` (`n × 3072`) for the
//! JAX peer `bench/jax_vgg_moments.py`, which recomputes the same moments.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use flatcert::net::{ArchSpec, PerSampleOptions, Tensor, net_to_safetensors, per_sample_stats};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const SPEC: &str = r#"{"input_shape":[3,32,32],"layers":[
 {"type":"conv2d","name":"features.0","kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.3","kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.6","kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.9","kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.12","kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"flatten"},{"type":"linear","name":"classifier.0"},{"type":"relu"},{"type":"linear","name":"classifier.2"}]}"#;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let out_dir = args.get(2).map(Path::new);
    let spec = ArchSpec::from_json(SPEC)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    // (name, shape, fan_in) of config 'A' with K = 2.
    let shapes: [(&str, Vec<usize>); 7] = [
        ("features.0", vec![16, 3, 3, 3]),
        ("features.3", vec![16, 16, 3, 3]),
        ("features.6", vec![32, 16, 3, 3]),
        ("features.9", vec![64, 32, 3, 3]),
        ("features.12", vec![64, 64, 3, 3]),
        ("classifier.0", vec![128, 64]),
        ("classifier.2", vec![2, 128]),
    ];
    let mut tensors = BTreeMap::new();
    for (name, shape) in shapes {
        let fan_in: usize = shape[1..].iter().product();
        let b = 1.0 / (fan_in as f64).sqrt();
        let len: usize = shape.iter().product();
        let w: Vec<f64> = (0..len).map(|_| rng.random_range(-b..b)).collect();
        let bias: Vec<f64> = (0..shape[0]).map(|_| rng.random_range(-b..b)).collect();
        tensors.insert(format!("{name}.bias"), (vec![shape[0]], bias));
        tensors.insert(format!("{name}.weight"), (shape, w));
    }
    let net = spec.build(&tensors)?;
    let d = net.input_shape().len();
    let x = Tensor::new(
        n,
        net.input_shape(),
        (0..n * d).map(|_| rng.random_range(0.0..1.0)).collect(),
    )
    .expect("sizes match");
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("model.safetensors"),
            net_to_safetensors(&net, &BTreeMap::new())?,
        )?;
        flatcert::io::npy::save_npy_matrix(&dir.join("x.npy"), &x.data, n, d)?;
    }
    let opts = PerSampleOptions {
        ks: vec![1, 2, 4],
        block: 50,
    };
    let t0 = Instant::now();
    let st = per_sample_stats(&net, &x, &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "network": "VGG config A, 3x32x32, K=2, f64",
            "n": n,
            "params": net.num_params(),
            "threads": rayon::current_num_threads(),
            "wall_s_per_sample_stats": secs,
            "ks": st.ks,
            "g_W": st.g_w,
            "g_x": st.g_x,
            "tr_G": st.jacobian_sq.iter().sum::<f64>() / n as f64,
            "t1b_max_rel_residual": st.t1b_max_rel_residual,
        })
    );
    Ok(())
}
