//! Plain SGD for [`Sequential`] networks (issue 14 item 5): the same model (S), loss, learning-rate
//! convention and batch sampler as the dense trainer ([`super::train`], THEORY.md §0), on a
//! network built from an architecture spec ([`ArchSpec`], docs/cnn.md).
//!
//! - Loss `ℓ_i = ½‖f(x_i) − y_i‖²` summed over the C outputs, `ℒ = (1/n) Σ_i ℓ_i`; η in the theory
//!   convention (`η = 2·η_torch/C` for PyTorch `MSELoss(reduction='mean')`).
//! - Update `θ ← θ − η (1/B) Σ_{i∈ξ_t} ∇ℓ_i(θ)`: one batched [`Sequential::forward_cache`] and
//!   one [`Sequential::vjp_params`] with cotangent `(f(x_i) − y_i)/B`.
//! - Batches: [`BatchSampler`] on ChaCha8 stream 1 of the seed, exactly as the dense trainer, so
//!   a dense network trained here sees the same batch sequence.
//! - Initialization ([`init_net_pytorch_default`]): PyTorch's default for `nn.Conv2d` and
//!   `nn.Linear`, drawn from ChaCha8 stream 0 of the seed in θ order. For an MLP spec it draws
//!   exactly the values of [`super::init_pytorch_default`].
//! - Inputs: a [`Dataset`] whose rows are the samples flattened in NCHW order (`d = C·H·W`).

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;

use std::collections::BTreeMap;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use super::{BatchSampler, BatchScheme, LOSS_BLOCK, SAMPLING_STREAM, check_batch_steps, check_lr};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::net::{
    Act, ArchSpec, AvgPool2d, Conv2d, Flatten, Layer, LayerId, LayerSpec, Linear, MaxPool2d,
    NetError, NetResult, Sequential, Shape, Tensor,
};

/// Hyper-parameters of one SGD run on a [`Sequential`] network (THEORY.md §0, model (S) by
/// default). The architecture is the network's own.
#[derive(Debug, Clone, PartialEq)]
pub struct NetTrainConfig {
    /// Learning rate η in the theory convention `ℓ_i = ½‖res_i‖²` (`--lr`).
    pub lr: f64,
    /// Batch size B (`--batch`).
    pub batch: usize,
    /// Number of SGD steps T (`--steps`).
    pub steps: u64,
    /// Seed of the ChaCha8 streams: 0 initializes, 1 draws batches (`--seed`).
    pub seed: u64,
    /// Batch scheme (`--sampling`); [`BatchScheme::IidSubsets`] is model (S).
    pub sampling: BatchScheme,
    /// Record the full-data loss every `log_every` steps; 0 records only the first and last.
    pub log_every: u64,
    /// Stop at the first recorded full-data loss (every `log_every` steps) that is ≤ this value
    /// ("train to a fixed loss"); `None` always runs `steps` updates.
    pub stop_at_loss: Option<f64>,
}

impl NetTrainConfig {
    /// Check the configuration against `n` samples (errors name `--lr`, `--batch`, `--steps`).
    pub fn validate(&self, n: usize) -> Result<()> {
        check_lr(self.lr)?;
        check_batch_steps(self.batch, self.steps, self.sampling, n)
    }
}

/// Outcome of [`train_net`].
#[derive(Debug)]
pub struct NetTrainResult {
    /// The trained network; always finite (the last finite iterate after a divergence).
    pub net: Sequential,
    /// Full-data loss `ℒ` of [`NetTrainResult::net`] (kind: exact up to rounding).
    pub final_train_loss: f64,
    /// `(step, ℒ)` at step 0, every `log_every` steps and at the last step done.
    pub history: Vec<(u64, f64)>,
    /// Number of SGD updates applied.
    pub steps_done: u64,
    /// True when a loss or a parameter became non-finite.
    pub diverged: bool,
}

impl NetTrainResult {
    /// `Ok(self)` unless the run diverged: then an [`Error::Numerical`] (exit code 3, nothing
    /// should be written), as [`super::TrainResult::into_converged`].
    pub fn into_converged(self, cfg: &NetTrainConfig) -> Result<Self> {
        if self.diverged {
            return Err(super::diverged(self.steps_done, cfg.steps, cfg.lr));
        }
        Ok(self)
    }

    /// The training metadata, with the keys of [`super::TrainResult::metadata`] that apply to
    /// any architecture: `lr`, `lr_convention` (`theory`), `batch`, `steps` (the updates done,
    /// fewer than `cfg.steps` after [`NetTrainConfig::stop_at_loss`]), `seed`, `sampling`,
    /// `final_train_loss`, `trainer`, plus `init` (`pytorch_default`) and `params` (P). The
    /// architecture itself is stored by [`crate::net::net_to_safetensors`] under
    /// [`crate::net::ARCH_METADATA_KEY`].
    pub fn metadata(&self, cfg: &NetTrainConfig) -> BTreeMap<String, String> {
        [
            ("lr", format!("{}", cfg.lr)),
            ("lr_convention", "theory".to_string()),
            ("batch", cfg.batch.to_string()),
            ("steps", self.steps_done.to_string()),
            ("seed", cfg.seed.to_string()),
            ("sampling", cfg.sampling.name().to_string()),
            ("init", "pytorch_default".to_string()),
            ("params", self.net.num_params().to_string()),
            ("final_train_loss", format!("{}", self.final_train_loss)),
            ("trainer", format!("flatcert {}", env!("CARGO_PKG_VERSION"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn spec_err(j: usize, key: &str, message: String) -> NetError {
    NetError::Spec {
        field: format!("layers[{j}].{key}"),
        message,
    }
}

/// Draw `len` values `U(−bound, bound)`.
fn uniform(rng: &mut ChaCha8Rng, len: usize, bound: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-bound..bound)).collect()
}

/// A network of architecture `spec` with PyTorch's default initialization of `nn.Conv2d` and
/// `nn.Linear` (`reset_parameters`: `kaiming_uniform_(a = √5)` for the weight, which is
/// `U(−1/√fan_in, 1/√fan_in)`, and the bias `U(−1/√fan_in, 1/√fan_in)`, with
/// `fan_in = C_in·k_h·k_w` for a convolution and `in_features` for a dense layer).
///
/// Values are drawn from `rng` layer by layer, each weight in PyTorch layout (row-major
/// `[out, in(, k_h, k_w)]`), then its bias: θ order, so an MLP spec gets the same values as
/// [`super::init_pytorch_default`]. They cannot match PyTorch's own generator.
///
/// Every parameterized layer needs its output size in the spec (`out_channels`,
/// `out_features`): the error names the field (`layers[3].out_channels`). Input sizes are
/// inferred and cross-checked against the optional `in_channels` / `in_features`.
pub fn init_net_pytorch_default(spec: &ArchSpec, rng: &mut ChaCha8Rng) -> NetResult<Sequential> {
    let mut shape = spec.input_shape;
    let mut layers: Vec<Box<dyn Layer>> = Vec::with_capacity(spec.layers.len());
    for (j, l) in spec.layers.iter().enumerate() {
        let layer: Box<dyn Layer> = match l {
            LayerSpec::Conv2d {
                name,
                in_channels,
                out_channels,
                window,
            } => {
                let Shape::Image { c, .. } = shape else {
                    return Err(spec_err(
                        j,
                        "type",
                        format!("conv2d '{name}' needs an image input [C, H, W], got {shape}"),
                    ));
                };
                if in_channels.is_some_and(|ci| ci != c) {
                    return Err(spec_err(
                        j,
                        "in_channels",
                        format!(
                            "{in_channels:?} but the input of conv2d '{name}' has {c} channels"
                        ),
                    ));
                }
                let out = out_channels.ok_or_else(|| {
                    spec_err(j, "out_channels", format!("missing: training initializes conv2d '{name}' and needs its number of output channels"))
                })?;
                let fan_in = c * window.kernel.0 * window.kernel.1;
                let bound = 1.0 / (fan_in as f64).sqrt();
                let w = uniform(rng, out * fan_in, bound);
                let b = uniform(rng, out, bound);
                Box::new(
                    Conv2d::new(Some(name.clone()), c, out, *window, w, b)
                        .expect("lengths computed from the window"),
                )
            }
            LayerSpec::Linear {
                name,
                in_features,
                out_features,
            } => {
                let Shape::Flat(f) = shape else {
                    return Err(spec_err(
                        j,
                        "type",
                        format!(
                            "linear '{name}' needs a flat input, got {shape}; put a flatten layer before it"
                        ),
                    ));
                };
                if in_features.is_some_and(|i| i != f) {
                    return Err(spec_err(
                        j,
                        "in_features",
                        format!(
                            "{in_features:?} but the input of linear '{name}' has {f} features"
                        ),
                    ));
                }
                let out = out_features.ok_or_else(|| {
                    spec_err(j, "out_features", format!("missing: training initializes linear '{name}' and needs its number of outputs"))
                })?;
                let bound = 1.0 / (f as f64).sqrt();
                let w = uniform(rng, out * f, bound);
                let b = uniform(rng, out, bound);
                Box::new(Linear::new(
                    Some(name.clone()),
                    nalgebra::DMatrix::from_row_slice(out, f, &w),
                    b,
                ))
            }
            LayerSpec::BatchNorm2d { name, .. } => {
                return Err(spec_err(
                    j,
                    "type",
                    format!(
                        "batchnorm2d '{name}': training with batch normalization uses the statistics of each batch, which couples the samples (not model S of THEORY §0); flatcert trains networks without it and reads trained BatchNorm2d layers in eval mode only"
                    ),
                ));
            }
            LayerSpec::MaxPool2d { kernel, stride } => Box::new(MaxPool2d::new(*kernel, *stride)),
            LayerSpec::AvgPool2d { kernel, stride } => Box::new(AvgPool2d::new(*kernel, *stride)),
            LayerSpec::Flatten => Box::new(Flatten),
            LayerSpec::Activation(a) => Box::new(Act(*a)),
        };
        shape = layer
            .output_shape(shape)
            .map_err(|expected| NetError::Shape {
                layer: LayerId {
                    index: j,
                    kind: layer.kind(),
                    name: layer.name().map(str::to_string),
                },
                got: shape.to_string(),
                expected,
            })?;
        layers.push(layer);
    }
    Sequential::new(spec.input_shape, layers)
}

/// Check that `ds` fits `net`: targets present, `d = C·H·W` of the input shape and `C` outputs.
/// Errors name the data file ([`Error::BadInput`], exit code 2) or `--y`.
pub fn check_net_data(net: &Sequential, ds: &Dataset) -> Result<usize> {
    let c = ds.outputs().ok_or_else(|| {
        Error::invalid_argument("--y", "training needs targets y (one row per sample of x)")
    })?;
    let shape = net.input_shape();
    if ds.dim() != shape.len() {
        return Err(Error::bad_input(
            &ds.x_source,
            "shape",
            format!(
                "samples have {} values, the network's input shape {shape} needs {} (flattened NCHW)",
                ds.dim(),
                shape.len()
            ),
        ));
    }
    if c != net.output_dim() {
        return Err(Error::bad_input(
            &ds.y_source,
            "shape",
            format!(
                "targets have {c} columns, the network has {} outputs",
                net.output_dim()
            ),
        ));
    }
    Ok(c)
}

/// Train a [`Sequential`] network by plain SGD, model (S) of THEORY.md §0 by default (see the
/// module docs). `net` is the initial network (e.g. [`init_net_pytorch_default`] on stream 0 of
/// `cfg.seed`); batches come from stream 1 of `cfg.seed`. `progress(step, batch_loss)` is called
/// after every update with the batch loss before it. Stops early with `diverged = true` on a
/// non-finite loss or parameter, keeping the last finite iterate.
pub fn train_net(
    ds: &Dataset,
    cfg: &NetTrainConfig,
    mut net: Sequential,
    progress: &dyn Fn(u64, f64),
) -> Result<NetTrainResult> {
    let n = ds.len();
    let c = check_net_data(&net, ds)?;
    cfg.validate(n)?;
    let shape = net.input_shape();
    let d = shape.len();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(SAMPLING_STREAM);
    let mut sampler = BatchSampler::new(cfg.sampling, n, cfg.batch)?;
    let mut xb = Tensor::zeros(cfg.batch, shape);
    let mut yb = vec![0.0; cfg.batch * c];

    let mut history = Vec::new();
    let initial = net_dataset_loss(&net, ds)?;
    history.push((0, initial));
    let mut diverged = !initial.is_finite();
    let mut steps_done = 0u64;
    let mut last_logged = Some(initial);
    let mut theta = net.params();

    while !diverged && steps_done < cfg.steps {
        let batch = sampler.next_batch(&mut rng);
        for (k, &i) in batch.iter().enumerate() {
            xb.data[k * d..(k + 1) * d].copy_from_slice(ds.x_row(i));
            yb[k * c..(k + 1) * c].copy_from_slice(ds.y_row(i).expect("targets checked"));
        }
        let (batch_loss, grad) = net_batch_loss_and_grad(&net, &xb, &yb)?;
        if !batch_loss.is_finite() {
            diverged = true;
            break;
        }
        theta
            .iter_mut()
            .zip(&grad)
            .for_each(|(t, g)| *t -= cfg.lr * g);
        match net.with_params(&theta) {
            Ok(next) => net = next,
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
            let loss = net_dataset_loss(&net, ds)?;
            history.push((steps_done, loss));
            last_logged = Some(loss);
            diverged = !loss.is_finite();
            if cfg.stop_at_loss.is_some_and(|t| loss <= t) {
                break;
            }
        }
    }
    let final_train_loss = match last_logged {
        Some(loss) => loss,
        None => {
            let loss = net_dataset_loss(&net, ds)?;
            history.push((steps_done, loss));
            loss
        }
    };
    diverged |= !final_train_loss.is_finite();
    Ok(NetTrainResult {
        net,
        final_train_loss,
        history,
        steps_done,
        diverged,
    })
}

/// Batch loss `ℒ_ξ = (1/B) Σ_{i∈ξ} ½‖f(x_i) − y_i‖²` and its gradient `(1/B) Σ_i J_iᵀ res_i` (θ
/// order) for the batch `x` with row-major targets `y` (`B × C`).
pub fn net_batch_loss_and_grad(net: &Sequential, x: &Tensor, y: &[f64]) -> Result<(f64, Vec<f64>)> {
    let cache = net.forward_cache(x)?;
    let inv_b = 1.0 / x.batch as f64;
    let mut cot = cache.output().clone();
    let mut sq = 0.0;
    for (g, &t) in cot.data.iter_mut().zip(y) {
        let r = *g - t;
        sq += r * r;
        *g = r * inv_b;
    }
    let loss = 0.5 * sq * inv_b;
    Ok((loss, net.vjp_params(&cache, &cot)))
}

/// Full-data loss `ℒ = (1/n) Σ_i ½‖f(x_i) − y_i‖²` over fixed blocks of samples, summed in block
/// order (bit-identical for any thread count). The data must fit the network
/// ([`check_net_data`]).
pub fn net_dataset_loss(net: &Sequential, ds: &Dataset) -> Result<f64> {
    let shape = net.input_shape();
    let d = shape.len();
    let sums: Vec<f64> = ds
        .blocks(LOSS_BLOCK)
        .into_par_iter()
        .map(|(s, e)| -> Result<f64> {
            let x = Tensor::new(e - s, shape, ds.x()[s * d..e * d].to_vec())
                .ok_or_else(|| Error::Internal("data block shape".into()))?;
            let out = net.forward(&x)?;
            let y = ds
                .y_block(s, e)
                .ok_or_else(|| Error::invalid_argument("--y", "training needs targets y"))?;
            Ok(out
                .data
                .iter()
                .zip(y.iter())
                .map(|(o, t)| (o - t) * (o - t))
                .sum::<f64>())
        })
        .collect::<Result<_>>()?;
    Ok(0.5 * sums.iter().sum::<f64>() / ds.len() as f64)
}

/// Read an architecture spec file (`--arch`, docs/cnn.md). With `input_shape` (`--input-shape
/// C,H,W` for flat data), it must equal the spec's `input_shape`. Errors name the file and the
/// JSON field (exit code 2), or `--input-shape`.
pub fn read_arch(path: &std::path::Path, input_shape: Option<&[usize]>) -> Result<ArchSpec> {
    let name = path.display().to_string();
    let text = crate::io::read_text_file(path)?;
    let spec = ArchSpec::from_json(&text).map_err(|e| crate::net::in_file(&name, e))?;
    if let Some(dims) = input_shape {
        let given = Shape::from_dims(dims)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid_argument(
                    "--input-shape",
                    format!("{dims:?}: expected C,H,W (or F) of positive integers"),
                )
            })?;
        if given != spec.input_shape {
            return Err(Error::invalid_argument(
                "--input-shape",
                format!(
                    "{given} differs from the input_shape {} of {name}",
                    spec.input_shape
                ),
            ));
        }
    }
    Ok(spec)
}

/// Write `net` with `metadata` as a safetensors checkpoint (F64, architecture under
/// [`crate::net::ARCH_METADATA_KEY`]) atomically ([`crate::io::write_atomic`]), byte-identical
/// for identical inputs ([`net_checkpoint_bytes`]).
pub fn save_net(
    path: &std::path::Path,
    net: &Sequential,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    crate::io::write_atomic(path, &net_checkpoint_bytes(net, metadata)?)
}

/// [`crate::net::net_to_safetensors`] with a canonical header: the `safetensors` crate writes
/// the `__metadata__` map in hash order, which differs between processes, so the header JSON is
/// re-serialized with sorted keys and re-padded with spaces to a multiple of 8 bytes (the
/// safetensors alignment). Data offsets are relative to the end of the header and unchanged.
/// Same network and metadata → the same bytes.
pub fn net_checkpoint_bytes(
    net: &Sequential,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes = crate::net::net_to_safetensors(net, metadata)?;
    let bad = |m: &str| Error::Internal(format!("safetensors header: {m}"));
    let len = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad("too short"))?);
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(8))
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("length"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes[8..end]).map_err(|e| bad(&e.to_string()))?;
    // serde_json without `preserve_order` keeps object keys sorted.
    let mut text = serde_json::to_string(&header).map_err(|e| bad(&e.to_string()))?;
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}
