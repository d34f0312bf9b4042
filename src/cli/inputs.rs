//! Shared `--model/--x/--y` arguments and how they become a network and a data set (or the
//! embedded example when none is given).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use flatcert::io::{ActivationSource, CheckpointOptions, DataOptions, LoadedCheckpoint};
use flatcert::measurements::{InputFile, sha256_hex};
use flatcert::{Activation, Dataset, Mlp, example};

/// Model and data arguments shared by the subcommands.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Checkpoint (.safetensors, PyTorch state_dict). Omit --model and --x to use the bundled
    /// digits example.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Inputs x (.npy or .csv), n × d (N-D arrays are flattened per sample).
    #[arg(long)]
    pub x: Option<PathBuf>,
    /// Targets y (.npy or .csv): n × C real values, or integer labels [n] with --one-hot C.
    #[arg(long)]
    pub y: Option<PathBuf>,
    /// Activation between layers: relu, leaky_relu[:alpha], tanh, sigmoid, softplus, identity.
    /// Default: the checkpoint's metadata, else relu.
    #[arg(long)]
    pub activation: Option<String>,
    /// Explicit layer names in order (e.g. net.0,net.2,net.4), each with .weight and .bias.
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<String>>,
    /// Turn integer labels into one-hot targets with C classes.
    #[arg(long = "one-hot", value_name = "C")]
    pub one_hot: Option<usize>,
    /// Multiply every input by this factor (e.g. 0.0625 for 0..16 pixels).
    #[arg(long = "x-scale", allow_negative_numbers = true)]
    pub x_scale: Option<f64>,
    /// Memory limit of the large allocations (the exact Gram path): bytes, or a size such as
    /// 512M, 4G, 4GiB (K/M/G/T are powers of 1024; KB/MB/GB/TB powers of 1000). A run that needs
    /// more is refused before allocating. Default: 50% of the available memory (MemAvailable).
    #[arg(long = "max-memory", value_name = "SIZE", allow_hyphen_values = true)]
    pub max_memory: Option<String>,
}

/// A loaded network, data set and provenance.
pub struct Loaded {
    /// The network.
    pub mlp: Mlp,
    /// The data.
    pub data: Dataset,
    /// Provenance of the checkpoint.
    pub model_file: InputFile,
    /// Provenance of x.
    pub x_file: InputFile,
    /// Provenance of y.
    pub y_file: Option<InputFile>,
    /// Scaling applied to x.
    pub x_scale: f64,
    /// Checkpoint metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// True for the embedded example.
    pub embedded: bool,
    /// Where the activation came from: `--activation`, the checkpoint's metadata, or the
    /// default (relu).
    pub activation_source: ActivationSource,
}

impl Loaded {
    /// The `inputs` record of a measurements or stability document: the files with their SHA-256,
    /// the network's shape and activation (with its source), n, the input scaling and the orders k.
    pub fn measurement_inputs(&self, k: &[u32]) -> flatcert::measurements::MeasurementInputs {
        flatcert::measurements::MeasurementInputs {
            model: self.model_file.clone(),
            x: self.x_file.clone(),
            y: self.y_file.clone(),
            activation: self.mlp.activation().name(),
            activation_source: Some(self.activation_source.as_str().into()),
            widths: self.mlp.widths(),
            n: self.data.len(),
            parameters: self.mlp.num_params(),
            x_scale: self.x_scale,
            k: k.to_vec(),
            flatcert_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The notes a user must see when the activation came from the default (issue 12 item 2):
    /// that relu was assumed and how to set another, and, when the network then fits its targets
    /// no better than a constant, that the activation is the likely cause. Empty otherwise.
    pub fn default_activation_notes(&self) -> Vec<String> {
        if self.activation_source != ActivationSource::Default {
            return Vec::new();
        }
        let name = self.mlp.activation().name();
        let mut notes = vec![format!(
            "activation {name} assumed by default: no --activation and no 'activation' metadata in \
             {}; if the network was trained with another, pass --activation \
             tanh|sigmoid|softplus|leaky_relu[:alpha]|identity (or write the 'activation' metadata \
             key, docs/checkpoints.md)",
            self.model_file.path
        )];
        if let Some((loss, baseline)) = fit_against_constant(&self.mlp, &self.data)
            && loss > baseline
        {
            notes.push(format!(
                "the training loss ℒ = {} with the assumed activation {name} is larger than \
                 the loss of the best constant prediction (the mean target), {}: the network does \
                 not fit its data as {name}; set its activation with --activation",
                fmt_f64(loss),
                fmt_f64(baseline)
            ));
        }
        notes
    }
}

/// A computed loss for a note (5 significant digits: the comparison is by a wide margin or not
/// at all, so more digits would only be noise to the reader).
fn fmt_f64(x: f64) -> String {
    format!("{x:.4e}")
}

/// (ℒ, ℒ₀): the training loss ℒ = (1/n)Σ½‖f(x_i) − y_i‖² of `mlp` and that of the best constant
/// predictor ȳ (the mean target), ℒ₀ = (1/n)Σ½‖y_i − ȳ‖². `None` without targets. ℒ > ℒ₀ is the
/// threshold of "far from 0": it needs no tuning, and a network that does not beat a constant
/// has learned nothing about its data under this activation.
fn fit_against_constant(mlp: &Mlp, data: &Dataset) -> Option<(f64, f64)> {
    let y = data.y()?;
    let (n, d, c) = (data.len(), data.dim(), data.outputs()?);
    if n == 0 || c != mlp.output_dim() {
        return None;
    }
    // Row-major n × d is column-major d × n: one column per sample.
    let x = nalgebra::DMatrix::from_column_slice(d, n, data.x());
    let f = mlp.forward(x.as_view());
    let mut mean = vec![0.0; c];
    for (j, m) in mean.iter_mut().enumerate() {
        *m = (0..n).map(|i| y[i * c + j]).sum::<f64>() / n as f64;
    }
    let (mut loss, mut base) = (0.0, 0.0);
    for i in 0..n {
        for j in 0..c {
            let t = y[i * c + j];
            loss += 0.5 * (f[(j, i)] - t).powi(2);
            base += 0.5 * (t - mean[j]).powi(2);
        }
    }
    Some((loss / n as f64, base / n as f64))
}

/// A file's bytes, read once, and its record (path as given, SHA-256 of those bytes).
fn read_input(path: &std::path::Path) -> Result<(Vec<u8>, InputFile)> {
    let bytes = flatcert::io::read_file(path)?;
    let info = InputFile {
        path: path.display().to_string(),
        sha256: sha256_hex(&bytes),
    };
    Ok((bytes, info))
}

impl InputArgs {
    /// The memory limit in bytes: `--max-memory` parsed (exit code 2 naming the flag when it is
    /// not a positive size), else [`super::memory::default_memory_limit`].
    pub fn memory_limit(&self) -> Result<usize> {
        Ok(match &self.max_memory {
            Some(s) => super::memory::parse_size(s)?,
            None => super::memory::default_memory_limit(),
        })
    }

    /// Load x and y only (no model), as `train` needs.
    pub fn load_data_only(&self) -> Result<Dataset> {
        let (Some(x), Some(y)) = (&self.x, &self.y) else {
            bail!("--x and --y are required");
        };
        let opts = DataOptions {
            one_hot: self.one_hot,
            x_scale: self.x_scale,
            expected_dim: None,
        };
        Ok(flatcert::io::load_dataset(x, Some(y), &opts)?)
    }

    /// Load the network and data (the embedded example when neither --model nor --x is given).
    pub fn load(&self, require_targets: bool) -> Result<Loaded> {
        let activation = self
            .activation
            .as_deref()
            .map(Activation::parse)
            .transpose()?;
        let ckpt_opts = CheckpointOptions {
            layers: self.layers.clone(),
            activation,
        };
        match (&self.model, &self.x) {
            (None, None) => {
                if self.y.is_some() {
                    bail!(
                        "--y given without --model and --x: give all three, or none for the bundled example"
                    );
                }
                if self.one_hot.is_some() || self.x_scale.is_some() || self.layers.is_some() {
                    bail!(
                        "--one-hot, --x-scale and --layers apply to your own --model/--x; the bundled example uses its own (one-hot 10, x-scale 1/16)"
                    );
                }
                let LoadedCheckpoint {
                    mlp,
                    metadata,
                    activation_source,
                    ..
                } = flatcert::io::load_checkpoint_bytes(
                    example::MODEL,
                    "<embedded:digits/model.safetensors>",
                    &ckpt_opts,
                )?;
                let opts = DataOptions {
                    one_hot: Some(example::CLASSES),
                    x_scale: Some(example::X_SCALE),
                    expected_dim: Some(mlp.input_dim()),
                };
                let data = flatcert::io::load_dataset_bytes(
                    example::X,
                    "<embedded:digits/train_x.npy>",
                    Some((example::LABELS, "<embedded:digits/train_labels.npy>")),
                    &opts,
                )?;
                let info = |name: &str, bytes: &[u8]| InputFile {
                    path: format!("<embedded:{name}>"),
                    sha256: sha256_hex(bytes),
                };
                Ok(Loaded {
                    mlp,
                    data,
                    model_file: info("digits/model.safetensors", example::MODEL),
                    x_file: info("digits/train_x.npy", example::X),
                    y_file: Some(info("digits/train_labels.npy", example::LABELS)),
                    x_scale: example::X_SCALE,
                    metadata,
                    embedded: true,
                    activation_source,
                })
            }
            (Some(model), Some(x)) => {
                // Each file is read once: parsed and hashed from the same bytes.
                let (model_bytes, model_file) = read_input(model)?;
                let LoadedCheckpoint {
                    mlp,
                    metadata,
                    activation_source,
                    ..
                } = flatcert::io::load_checkpoint_bytes(
                    &model_bytes,
                    &model_file.path,
                    &ckpt_opts,
                )?;
                drop(model_bytes);
                if require_targets && self.y.is_none() {
                    bail!("--y is required for this command (targets of the training data)");
                }
                let opts = DataOptions {
                    one_hot: self.one_hot,
                    x_scale: self.x_scale,
                    expected_dim: Some(mlp.input_dim()),
                };
                let (x_bytes, x_file) = read_input(x)?;
                let y_read = self.y.as_deref().map(read_input).transpose()?;
                let data = flatcert::io::load_dataset_bytes(
                    &x_bytes,
                    &x_file.path,
                    y_read
                        .as_ref()
                        .map(|(b, f)| (b.as_slice(), f.path.as_str())),
                    &opts,
                )?;
                drop(x_bytes);
                if let Some(c) = data.outputs()
                    && c != mlp.output_dim()
                {
                    return Err(flatcert::Error::bad_input(
                        data.y_source.clone(),
                        "shape",
                        format!(
                            "targets have {c} columns, the model has C = {} outputs",
                            mlp.output_dim()
                        ),
                    )
                    .into());
                }
                let loaded = Loaded {
                    mlp,
                    model_file,
                    x_file,
                    y_file: y_read.map(|(_, f)| f),
                    data,
                    x_scale: self.x_scale.unwrap_or(1.0),
                    metadata,
                    embedded: false,
                    activation_source,
                };
                // Said on stderr by every command that loads a network; the JSON documents
                // record `activation_source` and carry the same notes.
                for note in loaded.default_activation_notes() {
                    eprintln!("note: {note}");
                }
                Ok(loaded)
            }
            (Some(_), None) => {
                bail!("--model given without --x: the data the model was trained on is needed")
            }
            (None, Some(_)) => bail!("--x given without --model"),
        }
    }
}
