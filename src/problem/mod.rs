//! A validated problem: a dense MLP, the data it was trained on, and where both came from
//! (files with their SHA-256, or the bundled example). Every command and every library entry
//! point ([`crate::certify()`], [`crate::measure()`], [`crate::stability::sweep`],
//! [`crate::simulate::run`]) starts from one.
//!
//! Loading checks what THEORY.md §0 needs of the pair: x has d = the first layer's columns, and
//! the targets (if any) have C = the last layer's rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod layered;
pub use layered::{Loaded, NetProblem};

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::example;
use crate::io::{ActivationSource, CheckpointOptions, DataOptions, LoadedCheckpoint};
use crate::measurements::{InputFile, MeasurementInputs, sha256_hex};
use crate::model::{Activation, Mlp};

/// Where a [`Problem`] comes from on disk, and how to read it (the library side of
/// `--model/--x/--y/--activation/--layers/--one-hot/--x-scale`).
#[derive(Debug, Clone, Default)]
pub struct ProblemFiles {
    /// Checkpoint (.safetensors, PyTorch state_dict).
    pub model: PathBuf,
    /// Inputs x (.npy or .csv), n × d (N-D arrays are flattened per sample).
    pub x: PathBuf,
    /// Targets y (.npy or .csv): n × C real values, or integer labels `[n]` with `one_hot`.
    pub y: Option<PathBuf>,
    /// Activation between layers; `None`: the checkpoint's metadata, else relu.
    pub activation: Option<Activation>,
    /// Explicit layer names in order (see [`CheckpointOptions::layers`]).
    pub layers: Option<Vec<String>>,
    /// Turn integer labels into one-hot targets with C classes.
    pub one_hot: Option<usize>,
    /// Multiply every input by this factor.
    pub x_scale: Option<f64>,
    /// An architecture spec (docs/cnn.md) for a layered checkpoint; it takes precedence over
    /// the checkpoint's `flatcert_arch` metadata ([`Loaded::load`]).
    pub arch: Option<PathBuf>,
    /// The per-sample input shape `[C, H, W]` of flat data rows for a layered network (must
    /// equal the architecture's; see [`crate::io::SampleShape`]).
    pub input_shape: Option<Vec<usize>>,
}

impl ProblemFiles {
    /// The files `model` and `x`, everything else at its default (no targets).
    pub fn new(model: impl Into<PathBuf>, x: impl Into<PathBuf>) -> Self {
        ProblemFiles {
            model: model.into(),
            x: x.into(),
            ..ProblemFiles::default()
        }
    }

    /// With targets `y`.
    pub fn targets(mut self, y: impl Into<PathBuf>) -> Self {
        self.y = Some(y.into());
        self
    }

    /// With an explicit activation (overrides the checkpoint's metadata).
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = Some(activation);
        self
    }

    /// With integer labels turned into one-hot targets with `classes` classes.
    pub fn one_hot(mut self, classes: usize) -> Self {
        self.one_hot = Some(classes);
        self
    }

    /// With every input multiplied by `scale`.
    pub fn x_scale(mut self, scale: f64) -> Self {
        self.x_scale = Some(scale);
        self
    }

    /// With explicit layer names.
    pub fn layers(mut self, layers: Vec<String>) -> Self {
        self.layers = Some(layers);
        self
    }
}

/// A loaded network, data set and provenance, with matching shapes.
#[derive(Debug, Clone)]
pub struct Problem {
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
    pub metadata: BTreeMap<String, String>,
    /// True for the embedded example.
    pub embedded: bool,
    /// Where the activation came from: the caller, the checkpoint's metadata, or the default
    /// (relu).
    pub activation_source: ActivationSource,
}

/// The data set of `files` (x and, if given, y, each read once and hashed) with `opts`, and the
/// records of both files.
pub(crate) fn read_data(
    files: &ProblemFiles,
    opts: &DataOptions,
) -> Result<(Dataset, InputFile, Option<InputFile>)> {
    let (x_bytes, x_file) = read_input(&files.x)?;
    let y_read = files.y.as_deref().map(read_input).transpose()?;
    let data = crate::io::load_dataset_bytes(
        &x_bytes,
        &x_file.path,
        y_read
            .as_ref()
            .map(|(b, f)| (b.as_slice(), f.path.as_str())),
        opts,
    )?;
    Ok((data, x_file, y_read.map(|(_, f)| f)))
}

/// A file's bytes, read once, and its record (path as given, SHA-256 of those bytes).
pub(crate) fn read_input(path: &Path) -> Result<(Vec<u8>, InputFile)> {
    let bytes = crate::io::read_file(path)?;
    let info = InputFile {
        path: path.display().to_string(),
        sha256: sha256_hex(&bytes),
    };
    Ok((bytes, info))
}

impl Problem {
    /// The bundled digits example ([`crate::example`]): the checkpoint's own activation, x
    /// scaled by 1/16, labels one-hot with 10 classes.
    pub fn bundled() -> Result<Problem> {
        Problem::bundled_with(None)
    }

    /// The bundled example with an explicit activation (`None`: the checkpoint's metadata).
    pub fn bundled_with(activation: Option<Activation>) -> Result<Problem> {
        let ckpt_opts = CheckpointOptions {
            layers: None,
            activation,
        };
        let LoadedCheckpoint {
            mlp,
            metadata,
            activation_source,
            ..
        } = crate::io::load_checkpoint_bytes(
            example::MODEL,
            "<embedded:digits/model.safetensors>",
            &ckpt_opts,
        )?;
        let opts = DataOptions {
            one_hot: Some(example::CLASSES),
            x_scale: Some(example::X_SCALE),
            expected_dim: Some(mlp.input_dim()),
            sample_shape: None,
        };
        let data = crate::io::load_dataset_bytes(
            example::X,
            "<embedded:digits/train_x.npy>",
            Some((example::LABELS, "<embedded:digits/train_labels.npy>")),
            &opts,
        )?;
        let info = |name: &str, bytes: &[u8]| InputFile {
            path: format!("<embedded:{name}>"),
            sha256: sha256_hex(bytes),
        };
        Ok(Problem {
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

    /// Load a checkpoint and its data from files. Each file is read once (parsed and hashed
    /// from the same bytes). Fails with [`Error::BadInput`] naming the file when x does not have
    /// the first layer's d columns or the targets do not have the network's C outputs.
    pub fn load(files: &ProblemFiles) -> Result<Problem> {
        let (model_bytes, model_file) = read_input(&files.model)?;
        Problem::load_with(files, &model_bytes, model_file)
    }

    /// [`Problem::load`] with the checkpoint's bytes already read (and hashed).
    pub(crate) fn load_with(
        files: &ProblemFiles,
        model_bytes: &[u8],
        model_file: InputFile,
    ) -> Result<Problem> {
        let ckpt_opts = CheckpointOptions {
            layers: files.layers.clone(),
            activation: files.activation,
        };
        let LoadedCheckpoint {
            mlp,
            metadata,
            activation_source,
            ..
        } = crate::io::load_checkpoint_bytes(model_bytes, &model_file.path, &ckpt_opts)?;
        let opts = DataOptions {
            one_hot: files.one_hot,
            x_scale: files.x_scale,
            expected_dim: Some(mlp.input_dim()),
            sample_shape: None,
        };
        let (data, x_file, y_file) = read_data(files, &opts)?;
        check_shapes(&mlp, &data)?;
        Ok(Problem {
            mlp,
            model_file,
            x_file,
            y_file,
            data,
            x_scale: files.x_scale.unwrap_or(1.0),
            metadata,
            embedded: false,
            activation_source,
        })
    }

    /// Number of samples n.
    pub fn n(&self) -> usize {
        self.data.len()
    }

    /// Number of outputs C.
    pub fn outputs(&self) -> usize {
        self.mlp.output_dim()
    }

    /// The `inputs` record of a measurements or stability document: the files with their SHA-256,
    /// the network's shape and activation (with its source), n, the input scaling and the orders k.
    pub fn measurement_inputs(&self, k: &[u32]) -> MeasurementInputs {
        MeasurementInputs {
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
            architecture: None,
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

/// The shape contract of a (network, data) pair (THEORY.md §0): x has the first layer's d
/// columns, and targets, when present, have the network's C outputs. [`Error::BadInput`] names
/// the data file and the field `shape`.
pub fn check_shapes(mlp: &Mlp, data: &Dataset) -> Result<()> {
    check_inputs(mlp, data)?;
    if let Some(c) = data.outputs()
        && c != mlp.output_dim()
    {
        return Err(Error::bad_input(
            &data.y_source,
            "shape",
            format!(
                "targets have {c} columns, the model has C = {} outputs",
                mlp.output_dim()
            ),
        ));
    }
    Ok(())
}

/// The input half of [`check_shapes`]: x has the first layer's d columns (for computations that
/// do not read the targets).
pub fn check_inputs(mlp: &Mlp, data: &Dataset) -> Result<()> {
    if data.dim() != mlp.input_dim() {
        return Err(Error::bad_input(
            &data.x_source,
            "shape",
            format!(
                "samples have {} features, the model expects d = {}",
                data.dim(),
                mlp.input_dim()
            ),
        ));
    }
    Ok(())
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

/// Where one training hyper-parameter (η, its convention, B) of a run comes from: given by the
/// caller, read from the checkpoint's metadata, absent from both, or present in the metadata
/// but unusable (the raw text, for the caller's message).
#[derive(Debug, Clone, PartialEq)]
pub enum Source<T> {
    /// Given explicitly (a flag or a plan field).
    Given(T),
    /// Read from the checkpoint's metadata.
    Metadata(T),
    /// Neither given nor in the metadata.
    Missing,
    /// In the metadata, but not parseable as the expected type.
    Unusable(String),
}

impl<T: Copy> Source<T> {
    /// The value, given or read.
    pub fn value(&self) -> Option<T> {
        match self {
            Source::Given(v) | Source::Metadata(v) => Some(*v),
            Source::Missing | Source::Unusable(_) => None,
        }
    }
}

/// The learning rate, its convention and the batch size of a run, each with its [`Source`]: the
/// one resolver of η and B behind `certify`, `stability` and `simulate` (THEORY.md §0 fixes the
/// theory convention; [`crate::certify::LrConventionName`] converts the others).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingHyper {
    /// The learning rate as given or recorded (in `lr_convention`, not yet converted).
    pub lr: Source<f64>,
    /// Its convention: the caller's; else, when the lr itself comes from the metadata, the
    /// metadata's `lr_convention` (the same names and aliases as the flag); else
    /// [`Source::Missing`] (callers use theory).
    pub lr_convention: Source<crate::certify::LrConventionName>,
    /// The batch size as given or recorded.
    pub batch: Source<usize>,
}

/// One metadata value parsed as `T` (surrounding whitespace ignored).
fn from_metadata<T: std::str::FromStr>(meta: &BTreeMap<String, String>, key: &str) -> Source<T> {
    match meta.get(key) {
        None => Source::Missing,
        Some(text) => match text.trim().parse() {
            Ok(v) => Source::Metadata(v),
            Err(_) => Source::Unusable(text.clone()),
        },
    }
}

impl Problem {
    /// Resolve η, its convention and B from the caller's values, else from the checkpoint's
    /// metadata (`lr`, `lr_convention`, `batch`), recording where each came from.
    pub fn training_hyper(
        &self,
        lr: Option<f64>,
        lr_convention: Option<crate::certify::LrConventionName>,
        batch: Option<usize>,
    ) -> TrainingHyper {
        training_hyper(&self.metadata, lr, lr_convention, batch)
    }
}

impl NetProblem {
    /// [`Problem::training_hyper`] for a layered checkpoint (the same metadata keys).
    pub fn training_hyper(
        &self,
        lr: Option<f64>,
        lr_convention: Option<crate::certify::LrConventionName>,
        batch: Option<usize>,
    ) -> TrainingHyper {
        training_hyper(&self.metadata, lr, lr_convention, batch)
    }
}

/// The one resolver of η, its convention and B: the caller's values, else the checkpoint
/// metadata's `lr`, `lr_convention` and `batch`, each with its [`Source`].
pub fn training_hyper(
    meta: &BTreeMap<String, String>,
    lr: Option<f64>,
    lr_convention: Option<crate::certify::LrConventionName>,
    batch: Option<usize>,
) -> TrainingHyper {
    let lr_source = match lr {
        Some(v) => Source::Given(v),
        None => from_metadata(meta, "lr"),
    };
    let convention = match (lr_convention, lr) {
        (Some(c), _) => Source::Given(c),
        (None, Some(_)) => Source::Missing,
        (None, None) => match meta.get("lr_convention") {
            None => Source::Missing,
            Some(text) => match crate::certify::LrConventionName::parse(text) {
                Ok(c) => Source::Metadata(c),
                Err(_) => Source::Unusable(text.clone()),
            },
        },
    };
    TrainingHyper {
        lr: lr_source,
        lr_convention: convention,
        batch: match batch {
            Some(b) => Source::Given(b),
            None => from_metadata(meta, "batch"),
        },
    }
}
