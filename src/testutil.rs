//! Deterministic random networks and data for tests, benchmarks and examples.

use nalgebra::{DMatrix, DVector, dmatrix, dvector};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::model::{Activation, Dense, Mlp};

/// Every activation kind once (leaky ReLU with slope 0.1): the list the engine tests loop over.
pub const ALL_ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu { alpha: 0.1 },
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Softplus,
    Activation::Identity,
];

/// `‖a − b‖₂ / ‖b‖₂` (the denominator floored at 1e-300): the relative error of a computed vector
/// against a reference, as the engine tests state their tolerances.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-300);
    num / den
}

/// A network with the given widths `[d, m_1, …, C]`, weights uniform in ±1/√fan_in (PyTorch's
/// default scale) and biases uniform in ±0.1, from a seeded ChaCha8 stream.
pub fn random_mlp(widths: &[usize], activation: Activation, seed: u64) -> Mlp {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let layers = widths
        .windows(2)
        .map(|w| {
            let bound = 1.0 / (w[0] as f64).sqrt();
            Dense {
                weight: DMatrix::from_fn(w[1], w[0], |_, _| rng.random_range(-bound..bound)),
                bias: DVector::from_fn(w[1], |_, _| rng.random_range(-0.1..0.1)),
            }
        })
        .collect();
    Mlp::new(layers, activation).expect("random shapes chain")
}

/// A `d × n` block of standard-normal-ish inputs (uniform in ±√3, unit variance).
pub fn random_data(d: usize, n: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = 3f64.sqrt();
    DMatrix::from_fn(d, n, |_, _| rng.random_range(-s..s))
}

/// THEORY.md §5's golden network: f(x) = |x| as the ReLU 1–2–1 network
/// (W₁ = (1, −1)ᵀ, b₁ = 0, W₂ = (1, 1), b₂ = 0).
pub fn abs_net() -> Mlp {
    Mlp::new(
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
    .expect("the golden shapes chain")
}
