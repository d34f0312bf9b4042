//! Shared `--model/--x/--y` arguments and how they become a network and a data set (or the
//! embedded example when none is given).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use flatcert::example::Example;
use flatcert::io::DataOptions;
use flatcert::problem::{Loaded, NetProblem, Problem, ProblemFiles};
use flatcert::{Activation, Dataset};

/// Model and data arguments shared by the subcommands.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Checkpoint (.safetensors, PyTorch state_dict). Omit --model and --x to use a bundled
    /// example (--example).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The bundled example to run when --model and --x are omitted: digits (a dense MLP, the
    /// default) or digits-cnn (a small CNN, THEORY §7).
    #[arg(long, value_name = "NAME")]
    pub example: Option<String>,
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
    /// Architecture spec (JSON, docs/cnn.md) of a layered (convolutional) checkpoint; default:
    /// the checkpoint's `flatcert_arch` metadata. Either one makes the checkpoint layered.
    #[arg(long)]
    pub arch: Option<PathBuf>,
    /// Per-sample input shape C,H,W of flat x rows for a layered network (each row one image
    /// flattened in NCHW order); [n, C, H, W] arrays need no flag.
    #[arg(long = "input-shape", value_delimiter = ',', value_name = "C,H,W")]
    pub input_shape: Option<Vec<usize>>,
    /// Memory limit of the large allocations (the exact Gram path): bytes, or a size such as
    /// 512M, 4G, 4GiB (K/M/G/T are powers of 1024; KB/MB/GB/TB powers of 1000). A run that needs
    /// more is refused before allocating. Default: 50% of the available memory (MemAvailable).
    #[arg(long = "max-memory", value_name = "SIZE", allow_hyphen_values = true)]
    pub max_memory: Option<String>,
}

impl InputArgs {
    /// The memory limit in bytes: `--max-memory` parsed (exit code 2 naming the flag when it is
    /// not a positive size), else [`flatcert::memory::default_memory_limit`].
    pub fn memory_limit(&self) -> Result<usize> {
        Ok(match &self.max_memory {
            Some(s) => flatcert::memory::parse_size(s)?,
            None => flatcert::memory::default_memory_limit(),
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
            sample_shape: None,
        };
        Ok(flatcert::io::load_dataset(x, Some(y), &opts)?)
    }

    /// The bundled example asked for (`--example`, default digits); an error if it is combined
    /// with --model/--x or with options that only apply to one's own files.
    pub fn example(&self) -> Result<Example> {
        let Some(name) = &self.example else {
            return Ok(Example::Digits);
        };
        let e = Example::parse(name)?;
        if self.model.is_some() || self.x.is_some() || self.y.is_some() {
            bail!("--example runs a bundled example: give it without --model, --x and --y");
        }
        if e == Example::DigitsCnn
            && (self.activation.is_some()
                || self.layers.is_some()
                || self.arch.is_some()
                || self.one_hot.is_some()
                || self.x_scale.is_some()
                || self.input_shape.is_some())
        {
            bail!(
                "--activation, --layers, --arch, --one-hot, --x-scale and --input-shape do not apply to the bundled digits-cnn (it uses its own: one-hot 10, x-scale 1/16, [1, 8, 8] images)"
            );
        }
        Ok(e)
    }

    /// The files as the library takes them.
    fn files(&self, model: &std::path::Path, x: &std::path::Path) -> Result<ProblemFiles> {
        Ok(ProblemFiles {
            model: model.to_path_buf(),
            x: x.to_path_buf(),
            y: self.y.clone(),
            activation: self
                .activation
                .as_deref()
                .map(Activation::parse)
                .transpose()?,
            layers: self.layers.clone(),
            one_hot: self.one_hot,
            x_scale: self.x_scale,
            arch: self.arch.clone(),
            input_shape: self.input_shape.clone(),
        })
    }

    /// Load a dense or a layered problem (the embedded example when neither --model nor --x
    /// is given), for the commands that take both kinds.
    pub fn load_any(&self, require_targets: bool) -> Result<Loaded> {
        if self.example()? == Example::DigitsCnn {
            return Ok(Loaded::Layered(Box::new(NetProblem::bundled_cnn()?)));
        }
        match (&self.model, &self.x) {
            (Some(model), Some(x)) if self.arch.is_some() || is_layered(model)? => {
                let loaded = Loaded::load(&self.files(model, x)?)?;
                if require_targets && self.y.is_none() {
                    bail!("--y is required for this command (targets of the training data)");
                }
                Ok(loaded)
            }
            _ => Ok(Loaded::Dense(Box::new(self.load(require_targets)?))),
        }
    }

    /// Load the network and data (the embedded example when neither --model nor --x is given):
    /// the flag combinations are checked here, the files by [`Problem::load`].
    fn load(&self, require_targets: bool) -> Result<Problem> {
        if self.input_shape.is_some() {
            bail!("--input-shape applies to layered networks (--arch or flatcert_arch metadata)");
        }
        let activation = self
            .activation
            .as_deref()
            .map(Activation::parse)
            .transpose()?;
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
                Ok(Problem::bundled_with(activation)?)
            }
            (Some(model), Some(x)) => {
                if require_targets && self.y.is_none() {
                    // The checkpoint is read first, so that a broken checkpoint is reported
                    // before a missing --y.
                    let bytes = flatcert::io::read_file(model)?;
                    let opts = flatcert::io::CheckpointOptions {
                        layers: self.layers.clone(),
                        activation,
                    };
                    flatcert::io::load_checkpoint_bytes(
                        &bytes,
                        &model.display().to_string(),
                        &opts,
                    )?;
                    bail!("--y is required for this command (targets of the training data)");
                }
                let loaded = Problem::load(&self.files(model, x)?)?;
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

/// True when the checkpoint at `model` carries an architecture spec in its metadata (read
/// once more by the loader; checkpoints are small next to the work done on them).
fn is_layered(model: &std::path::Path) -> Result<bool> {
    Ok(flatcert::problem::layered::has_arch_metadata(
        &flatcert::io::read_file(model)?,
    ))
}
