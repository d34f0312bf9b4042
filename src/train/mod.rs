//! Plain SGD exactly as THEORY.md §0 assumes (model (S)), for `flatcert train`.
//!
//! - Loss: `ℓ_i = ½‖f(x_i) − y_i‖²` summed over the C outputs, `ℒ = (1/n) Σ_i ℓ_i` (THEORY.md §0).
//!   The learning rate is in this *theory* convention; a PyTorch `nn.MSELoss(reduction='mean')`
//!   rate converts as `η = 2·η_torch / C` (THEORY.md §0, "learning-rate conversion").
//! - Update: `θ_{t+1} = θ_t − η (1/B) Σ_{i∈ξ_t} ∇ℓ_i(θ_t)`, constant η, no momentum, no weight decay.
//! - Batches: [`BatchScheme::IidSubsets`] (model (S), default) draws a fresh uniform `B`-subset at
//!   every step; [`BatchScheme::IidWithReplacement`] is (S′); [`BatchScheme::EpochReshuffle`] is the
//!   labelled option the theory does not cover. See [`sampler`] for the algorithms.
//! - Gradient: one batched [`Mlp::forward_cache`] and one [`Mlp::vjp_params`] with cotangent
//!   `(f(x_i) − y_i)/B`, i.e. `∇ℒ_ξ = (1/B) Σ_{i∈ξ} J_iᵀ res_i`.
//! - Randomness: one seed, ChaCha8. Stream 0 initializes the weights
//!   ([`init_pytorch_default`]); stream 1 draws the batches, so the batch sequence depends only
//!   on the seed, not on whether an initial network was supplied. Runs are bit-identical for a
//!   fixed seed (the full-data loss is reduced over fixed blocks in a fixed order).
//! - Divergence: training stops at the first non-finite batch loss, full-data loss or parameter;
//!   the result keeps the last finite parameters and sets [`TrainResult::diverged`], and
//!   [`TrainResult::into_converged`] turns that into an error so that nothing is saved.

pub mod net;
pub mod sampler;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use nalgebra::{DMatrix, DVector};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{Activation, Dense, Mlp, Params};

pub use net::{
    NetTrainConfig, NetTrainResult, init_net_pytorch_default, net_checkpoint_bytes,
    net_dataset_loss, read_arch, save_net, train_net,
};
pub use sampler::{BatchSampler, BatchScheme};

/// Samples per block when the full-data loss `ℒ` is evaluated.
const LOSS_BLOCK: usize = 512;

/// ChaCha8 stream used for the batch sequence (stream 0 is the initialization).
const SAMPLING_STREAM: u64 = 1;

/// Hyper-parameters of one SGD run in the conventions of THEORY.md §0 (model (S) by default).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Widths `[d, m_1, …, m_{L−1}, C]` (`--sizes`).
    pub sizes: Vec<usize>,
    /// Activation σ between layers (`--activation`).
    pub activation: Activation,
    /// Learning rate η in the theory convention `ℓ_i = ½‖res_i‖²` (`--lr`); THEORY.md §0 gives
    /// the conversion from PyTorch (`η = 2·η_torch/C` for `MSELoss(reduction='mean')`).
    pub lr: f64,
    /// Batch size B (`--batch`).
    pub batch: usize,
    /// Number of SGD steps T (`--steps`).
    pub steps: u64,
    /// Seed of the ChaCha8 streams for initialization and batches (`--seed`).
    pub seed: u64,
    /// Batch scheme (`--sampling`); [`BatchScheme::IidSubsets`] is model (S).
    pub sampling: BatchScheme,
    /// Record the full-data loss every `log_every` steps (`--log-every`); 0 records only the
    /// initial and final losses.
    pub log_every: u64,
}

impl TrainConfig {
    /// Check the configuration against data with `n` samples, `d` features and `c` outputs.
    /// Each error is a [`Error::InvalidArgument`] naming the flag (`--lr`, `--batch`, `--sizes`,
    /// `--steps`) and saying what is allowed.
    pub fn validate(&self, n: usize, d: usize, c: usize) -> Result<()> {
        check_lr(self.lr)?;
        if self.sizes.len() < 2 {
            return Err(Error::invalid_argument(
                "--sizes",
                format!(
                    "expected at least two widths d,…,C (e.g. {d},32,{c}), got {:?}",
                    self.sizes
                ),
            ));
        }
        if let Some(pos) = self.sizes.iter().position(|&w| w == 0) {
            return Err(Error::invalid_argument(
                "--sizes",
                format!("width number {} is 0; every width must be ≥ 1", pos + 1),
            ));
        }
        if self.sizes[0] != d {
            return Err(Error::invalid_argument(
                "--sizes",
                format!(
                    "first width {} does not match the {d} input features of x",
                    self.sizes[0]
                ),
            ));
        }
        let last = *self.sizes.last().expect("len ≥ 2");
        if last != c {
            return Err(Error::invalid_argument(
                "--sizes",
                format!("last width {last} does not match the {c} target columns of y"),
            ));
        }
        check_batch_steps(self.batch, self.steps, self.sampling, n)
    }
}

/// `--lr` must be finite and positive (shared by the dense and the [`net`] trainer).
fn check_lr(lr: f64) -> Result<()> {
    if !lr.is_finite() || lr <= 0.0 {
        return Err(Error::invalid_argument(
            "--lr",
            format!("learning rate must be a finite number > 0, got {lr}"),
        ));
    }
    Ok(())
}

/// `--batch` in `1..=n` (without replacement) or ≥ 1, and `--steps` ≥ 1 (shared by both trainers).
fn check_batch_steps(batch: usize, steps: u64, sampling: BatchScheme, n: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::invalid_argument("--batch", "batch size must be ≥ 1"));
    }
    if sampling.without_replacement() && batch > n {
        return Err(Error::invalid_argument(
            "--batch",
            format!(
                "batch size {batch} exceeds the n = {n} samples ({} sampling draws without replacement)",
                sampling.name()
            ),
        ));
    }
    if steps == 0 {
        return Err(Error::invalid_argument("--steps", "must be ≥ 1"));
    }
    Ok(())
}

/// Outcome of [`train`].
#[derive(Debug, Clone)]
pub struct TrainResult {
    /// The trained network. Its parameters are always finite: after a divergence it holds the
    /// last finite iterate, and [`TrainResult::diverged`] is set.
    pub mlp: Mlp,
    /// Full-data loss `ℒ = (1/n) Σ_i ½‖res_i‖²` (THEORY.md §0) of [`TrainResult::mlp`]; may be
    /// non-finite after a divergence.
    pub final_train_loss: f64,
    /// `(step, ℒ)` at step 0, every `log_every` steps, and at the last step done.
    pub history: Vec<(u64, f64)>,
    /// Number of SGD updates applied.
    pub steps_done: u64,
    /// True when training stopped because a loss or a parameter became non-finite. The CLI must
    /// then refuse to save (see [`TrainResult::into_converged`]).
    pub diverged: bool,
}

/// The error of a diverged run (either trainer): at which step, and a smaller `--lr` to try.
pub(crate) fn diverged(steps_done: u64, steps: u64, lr: f64) -> Error {
    Error::Numerical(format!(
        "SGD diverged at step {} of {steps} (loss or parameters became non-finite) with --lr {lr}; \
         no model written, try a smaller --lr",
        steps_done + 1
    ))
}

impl TrainResult {
    /// `Ok(self)` unless the run diverged, in which case an [`Error::Numerical`] saying at which
    /// step and suggesting a smaller `--lr` (exit code 3; nothing should be written).
    pub fn into_converged(self, cfg: &TrainConfig) -> Result<Self> {
        if self.diverged {
            return Err(diverged(self.steps_done, cfg.steps, cfg.lr));
        }
        Ok(self)
    }

    /// Hyper-parameters and outcome as string pairs for the safetensors `__metadata__`: keys
    /// `activation`, `lr`, `lr_convention` (`theory`: THEORY.md §0), `batch`, `steps`, `seed`,
    /// `sampling`, `sizes` (comma-separated), `final_train_loss` and `trainer`
    /// (`flatcert <version>`). Floats use Rust's shortest round-trip formatting.
    pub fn metadata(&self, cfg: &TrainConfig) -> BTreeMap<String, String> {
        let sizes = cfg
            .sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        [
            ("activation", cfg.activation.name()),
            ("lr", format!("{}", cfg.lr)),
            ("lr_convention", "theory".to_string()),
            ("batch", cfg.batch.to_string()),
            ("steps", cfg.steps.to_string()),
            ("seed", cfg.seed.to_string()),
            ("sampling", cfg.sampling.name().to_string()),
            ("sizes", sizes),
            ("final_train_loss", format!("{}", self.final_train_loss)),
            ("trainer", format!("flatcert {}", env!("CARGO_PKG_VERSION"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// A network with PyTorch's default `nn.Linear` initialization: for each layer, weight and bias
/// entries i.i.d. `U(−1/√fan_in, 1/√fan_in)` (`kaiming_uniform_(a = √5)` gives exactly this bound
/// for the weight). Entries are drawn layer by layer, the weight in row-major order (THEORY.md §0
/// flattening order) and then the bias. The values cannot match PyTorch's own generator.
/// Errors (naming `--sizes`) if fewer than two widths or a zero width are given.
pub fn init_pytorch_default(
    sizes: &[usize],
    activation: Activation,
    rng: &mut ChaCha8Rng,
) -> Result<Mlp> {
    if sizes.len() < 2 || sizes.contains(&0) {
        return Err(Error::invalid_argument(
            "--sizes",
            format!("expected at least two widths, all ≥ 1; got {sizes:?}"),
        ));
    }
    let layers = sizes
        .windows(2)
        .map(|w| {
            let (fan_in, fan_out) = (w[0], w[1]);
            let bound = 1.0 / (fan_in as f64).sqrt();
            let mut flat = Vec::with_capacity(fan_out * fan_in);
            for _ in 0..fan_out * fan_in {
                flat.push(rng.random_range(-bound..bound));
            }
            let weight = DMatrix::from_row_slice(fan_out, fan_in, &flat);
            let bias = DVector::from_fn(fan_out, |_, _| rng.random_range(-bound..bound));
            Dense { weight, bias }
        })
        .collect();
    Mlp::new(layers, activation)
}

/// Train a dense MLP by plain SGD, model (S) of THEORY.md §0 by default:
/// `θ ← θ − η (1/B) Σ_{i∈ξ_t} ∇ℓ_i(θ)` with `ℓ_i = ½‖f(x_i) − y_i‖²`, no momentum, no weight decay.
///
/// - `init`: start from this network (its widths must equal `cfg.sizes` and its activation
///   `cfg.activation`); `None` draws [`init_pytorch_default`] from ChaCha8 stream 0 of
///   `cfg.seed`. Batches come from stream 1 (see [`BatchSampler`]).
/// - `progress(step, batch_loss)` is called after every update with the number of updates done
///   and the batch loss `ℒ_ξ = (1/B) Σ_{i∈ξ} ℓ_i` at the parameters *before* that update.
/// - Stops early with `diverged = true` if a loss or a parameter becomes non-finite; the returned
///   network is then the last finite iterate (never NaN weights).
///
/// Errors: no targets in `ds` (`--y`), an invalid configuration ([`TrainConfig::validate`]), or
/// an `init` of the wrong shape.
pub fn train(
    ds: &Dataset,
    cfg: &TrainConfig,
    init: Option<Mlp>,
    progress: &dyn Fn(u64, f64),
) -> Result<TrainResult> {
    let (n, d) = (ds.len(), ds.dim());
    let c = ds.outputs().ok_or_else(|| {
        Error::invalid_argument("--y", "training needs targets y (one row per sample of x)")
    })?;
    cfg.validate(n, d, c)?;
    let mut mlp = match init {
        Some(m) => {
            if m.widths() != cfg.sizes {
                return Err(Error::invalid_argument(
                    "--sizes",
                    format!(
                        "the initial network has widths {:?}, the configuration {:?}",
                        m.widths(),
                        cfg.sizes
                    ),
                ));
            }
            if m.activation() != cfg.activation {
                return Err(Error::invalid_argument(
                    "--activation",
                    format!(
                        "the initial network uses {}, the configuration {}",
                        m.activation().name(),
                        cfg.activation.name()
                    ),
                ));
            }
            m
        }
        None => {
            let mut init_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            init_pytorch_default(&cfg.sizes, cfg.activation, &mut init_rng)?
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(SAMPLING_STREAM);
    let mut sampler = BatchSampler::new(cfg.sampling, n, cfg.batch)?;
    let mut buf = BatchBuffers::new(d, c, cfg.batch);

    let mut history = Vec::new();
    let initial = dataset_loss(&mlp, ds);
    history.push((0, initial));
    let mut diverged = !initial.is_finite();
    let mut steps_done = 0u64;
    let mut last_logged = Some(initial);

    while !diverged && steps_done < cfg.steps {
        let batch = sampler.next_batch(&mut rng);
        buf.gather(ds, batch);
        let (batch_loss, grad) = batch_loss_and_grad(&mlp, &buf.x, &buf.y, &mut buf.cotangent);
        if !batch_loss.is_finite() {
            diverged = true;
            break;
        }
        let mut layers = mlp.layers().to_vec();
        sgd_update(&mut layers, cfg.lr, &grad);
        match Mlp::new(layers, cfg.activation) {
            Ok(next) => mlp = next,
            Err(_) => {
                // A parameter became non-finite: keep the last finite iterate.
                diverged = true;
                break;
            }
        }
        steps_done += 1;
        last_logged = None;
        progress(steps_done, batch_loss);
        if cfg.log_every > 0 && steps_done.is_multiple_of(cfg.log_every) {
            let loss = dataset_loss(&mlp, ds);
            history.push((steps_done, loss));
            last_logged = Some(loss);
            diverged = !loss.is_finite();
        }
    }

    let final_train_loss = match last_logged {
        Some(loss) => loss,
        None => {
            let loss = dataset_loss(&mlp, ds);
            history.push((steps_done, loss));
            loss
        }
    };
    diverged |= !final_train_loss.is_finite();
    Ok(TrainResult {
        mlp,
        final_train_loss,
        history,
        steps_done,
        diverged,
    })
}

/// Preallocated batch buffers: inputs `d × B` and targets `C × B` (samples as columns) and the
/// cotangent `C × B`.
struct BatchBuffers {
    x: DMatrix<f64>,
    y: DMatrix<f64>,
    cotangent: DMatrix<f64>,
}

impl BatchBuffers {
    fn new(d: usize, c: usize, b: usize) -> Self {
        Self {
            x: DMatrix::zeros(d, b),
            y: DMatrix::zeros(c, b),
            cotangent: DMatrix::zeros(c, b),
        }
    }

    /// Copy rows `batch` of the (row-major) data into the column-major buffers.
    fn gather(&mut self, ds: &Dataset, batch: &[usize]) {
        let (d, c) = (self.x.nrows(), self.y.nrows());
        let (xs, ys) = (self.x.as_mut_slice(), self.y.as_mut_slice());
        for (k, &i) in batch.iter().enumerate() {
            xs[k * d..(k + 1) * d].copy_from_slice(ds.x_row(i));
            ys[k * c..(k + 1) * c].copy_from_slice(ds.y_row(i).expect("targets checked"));
        }
    }
}

/// Batch loss `ℒ_ξ = (1/B) Σ_{i∈ξ} ½‖f(x_i) − y_i‖²` and its gradient `(1/B) Σ_i J_iᵀ res_i`, by one
/// batched forward pass and one VJP with cotangent `res/B` (written into `cotangent`, `C × B`).
fn batch_loss_and_grad(
    mlp: &Mlp,
    x: &DMatrix<f64>,
    y: &DMatrix<f64>,
    cotangent: &mut DMatrix<f64>,
) -> (f64, Params) {
    let cache = mlp.forward_cache(x.as_view());
    let inv_b = 1.0 / x.ncols() as f64;
    let mut sq = 0.0;
    for ((g, &out), &target) in cotangent
        .iter_mut()
        .zip(cache.output().iter())
        .zip(y.iter())
    {
        let r = out - target;
        sq += r * r;
        *g = r * inv_b;
    }
    let loss = 0.5 * sq * inv_b;
    (loss, mlp.vjp_params(&cache, cotangent))
}

/// `θ ← θ − η g` in place.
fn sgd_update(layers: &mut [Dense], lr: f64, grad: &Params) {
    for (l, g) in layers.iter_mut().zip(&grad.layers) {
        l.weight.zip_apply(&g.weight, |w, gw| *w -= lr * gw);
        l.bias.zip_apply(&g.bias, |b, gb| *b -= lr * gb);
    }
}

/// Full-data loss `ℒ = (1/n) Σ_i ½‖f(x_i) − y_i‖²` (THEORY.md §0), over fixed blocks of
/// [`LOSS_BLOCK`] samples in parallel, summed in block order (bit-identical for any thread count).
/// The data must have targets.
fn dataset_loss(mlp: &Mlp, ds: &Dataset) -> f64 {
    let sums: Vec<f64> = ds
        .blocks(LOSS_BLOCK)
        .into_par_iter()
        .map(|(s, e)| {
            let out = mlp.forward(ds.x_block(s, e));
            let y = ds.y_block(s, e).expect("targets checked");
            out.iter()
                .zip(y.iter())
                .map(|(o, t)| (o - t) * (o - t))
                .sum::<f64>()
        })
        .collect();
    0.5 * sums.iter().sum::<f64>() / ds.len() as f64
}
