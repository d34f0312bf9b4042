//! Shared `--model/--x/--y` arguments and how they become a network and a data set (or the
//! embedded example when none is given).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use flatcert::io::{CheckpointOptions, DataOptions, LoadedCheckpoint};
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
                let LoadedCheckpoint { mlp, metadata, .. } = flatcert::io::load_checkpoint_bytes(
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
                })
            }
            (Some(model), Some(x)) => {
                // Each file is read once: parsed and hashed from the same bytes.
                let (model_bytes, model_file) = read_input(model)?;
                let LoadedCheckpoint { mlp, metadata, .. } = flatcert::io::load_checkpoint_bytes(
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
                Ok(Loaded {
                    mlp,
                    model_file,
                    x_file,
                    y_file: y_read.map(|(_, f)| f),
                    data,
                    x_scale: self.x_scale.unwrap_or(1.0),
                    metadata,
                    embedded: false,
                })
            }
            (Some(_), None) => {
                bail!("--model given without --x: the data the model was trained on is needed")
            }
            (None, Some(_)) => bail!("--x given without --model"),
        }
    }
}
