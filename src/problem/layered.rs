//! A validated layered problem (issue 14, THEORY.md §7): a [`Sequential`] network read with its
//! architecture spec (docs/cnn.md), the data it was trained on (each row one sample flattened in
//! NCHW order), and where both came from.
//!
//! Loading checks what §0 and §7 need of the pair: each sample has the network's input shape
//! (an `[n, C, H, W]` array, or flat rows declared with `--input-shape`), and the targets have
//! the network's C outputs. Every mismatch is [`Error::BadInput`] naming the file and the field
//! (or the layer), exit code 2.

use std::collections::BTreeMap;

use super::{ProblemFiles, read_data, read_input};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::{DataOptions, SampleShape};
use crate::measurements::{InputFile, sha256_hex};
use crate::net::ArchSpec;
use crate::net::{ArchSource, LoadedNet, in_file, load_net_bytes};
use crate::net::{Sequential, Shape};

/// A loaded layered network, its data set and provenance, with matching shapes.
#[derive(Debug)]
pub struct NetProblem {
    /// The network.
    pub net: Sequential,
    /// Its architecture (every size filled in).
    pub spec: ArchSpec,
    /// Where the architecture came from (`--arch` or the checkpoint's metadata).
    pub arch_source: ArchSource,
    /// The data: row i is sample i flattened in NCHW order.
    pub data: Dataset,
    /// Provenance of the checkpoint.
    pub model_file: InputFile,
    /// Provenance of the architecture file (`--arch`), if one was given.
    pub arch_file: Option<InputFile>,
    /// Provenance of x.
    pub x_file: InputFile,
    /// Provenance of y.
    pub y_file: Option<InputFile>,
    /// Scaling applied to x.
    pub x_scale: f64,
    /// Checkpoint metadata.
    pub metadata: BTreeMap<String, String>,
    /// True for an embedded example.
    pub embedded: bool,
}

/// The options that only a dense checkpoint reads, refused for a layered one (its activations
/// and layer names are in its architecture spec).
fn refuse_dense_options(files: &ProblemFiles, model: &str) -> Result<()> {
    if files.activation.is_some() {
        return Err(Error::bad_input(
            model,
            "activation",
            "--activation applies to dense checkpoints; a layered network's activations are \
             layers of its architecture spec (docs/cnn.md)",
        ));
    }
    if files.layers.is_some() {
        return Err(Error::bad_input(
            model,
            "layers",
            "--layers applies to dense checkpoints; a layered network's layers and their names \
             are in its architecture spec (docs/cnn.md)",
        ));
    }
    Ok(())
}

/// The per-sample shape check of the data for `net`, with `declared` the caller's
/// `--input-shape` (which must equal the network's).
fn sample_shape(net: &Sequential, declared: Option<&[usize]>, model: &str) -> Result<SampleShape> {
    let dims = net.input_shape().dims();
    if let Some(d) = declared
        && d != dims.as_slice()
    {
        return Err(Error::bad_input(
            model,
            "input_shape",
            format!(
                "--input-shape {} differs from the architecture's input shape {}",
                d.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                net.input_shape()
            ),
        ));
    }
    Ok(SampleShape {
        dims,
        flat_declared: declared.is_some(),
    })
}

/// Targets must have the network's C outputs.
fn check_targets(net: &Sequential, data: &Dataset) -> Result<()> {
    if let Some(c) = data.outputs()
        && c != net.output_dim()
    {
        return Err(Error::bad_input(
            &data.y_source,
            "shape",
            format!(
                "targets have {c} columns, the network has C = {} outputs",
                net.output_dim()
            ),
        ));
    }
    Ok(())
}

impl NetProblem {
    /// Load a layered checkpoint and its data from files; `model_bytes` are the checkpoint's
    /// bytes, already read (and hashed) by the caller ([`super::Loaded::load`]).
    pub(super) fn load_with(
        files: &ProblemFiles,
        model_bytes: &[u8],
        model_file: InputFile,
    ) -> Result<NetProblem> {
        refuse_dense_options(files, &model_file.path)?;
        let (spec, arch_file) = match &files.arch {
            Some(p) => {
                let (bytes, info) = read_input(p)?;
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    Error::bad_input(&info.path, "architecture", "not UTF-8 text; expected JSON")
                })?;
                let spec = ArchSpec::from_json(text).map_err(|e| in_file(&info.path, e))?;
                (Some(spec), Some(info))
            }
            None => (None, None),
        };
        let LoadedNet {
            net,
            spec,
            arch_source,
            metadata,
        } = load_net_bytes(model_bytes, &model_file.path, spec.as_ref())?;
        let shape = sample_shape(&net, files.input_shape.as_deref(), &model_file.path)?;
        let opts = DataOptions {
            one_hot: files.one_hot,
            x_scale: files.x_scale,
            expected_dim: Some(net.input_shape().len()),
            sample_shape: Some(shape),
        };
        let (data, x_file, y_file) = read_data(files, &opts)?;
        check_targets(&net, &data)?;
        Ok(NetProblem {
            net,
            spec,
            arch_source,
            data,
            model_file,
            arch_file,
            x_file,
            y_file,
            x_scale: files.x_scale.unwrap_or(1.0),
            metadata,
            embedded: false,
        })
    }

    /// An embedded layered example: the checkpoint `model` (architecture in its metadata) on
    /// embedded data `x` (flat rows, one image per row in NCHW order) with integer `labels`
    /// turned into one-hot targets of `classes` classes, inputs scaled by `x_scale`. The names
    /// are the `<embedded:…>` paths the documents record.
    pub fn embedded(
        model: (&[u8], &str),
        x: (&[u8], &str),
        labels: (&[u8], &str),
        classes: usize,
        x_scale: f64,
    ) -> Result<NetProblem> {
        let model_name = format!("<embedded:{}>", model.1);
        let LoadedNet {
            net,
            spec,
            arch_source,
            metadata,
        } = load_net_bytes(model.0, &model_name, None)?;
        let x_name = format!("<embedded:{}>", x.1);
        let y_name = format!("<embedded:{}>", labels.1);
        let opts = DataOptions {
            one_hot: Some(classes),
            x_scale: Some(x_scale),
            expected_dim: Some(net.input_shape().len()),
            sample_shape: Some(SampleShape {
                dims: net.input_shape().dims(),
                flat_declared: true,
            }),
        };
        let data = crate::io::load_dataset_bytes(x.0, &x_name, Some((labels.0, &y_name)), &opts)?;
        check_targets(&net, &data)?;
        let info = |path: String, bytes: &[u8]| InputFile {
            path,
            sha256: sha256_hex(bytes),
        };
        Ok(NetProblem {
            net,
            spec,
            arch_source,
            data,
            model_file: info(model_name, model.0),
            arch_file: None,
            x_file: info(x_name, x.0),
            y_file: Some(info(y_name, labels.0)),
            x_scale,
            metadata,
            embedded: true,
        })
    }

    /// The bundled digits-cnn example ([`crate::example::Example::DigitsCnn`]): the CNN
    /// checkpoint with its architecture in the metadata, on the digits training set (x scaled by
    /// 1/16, labels one-hot with 10 classes).
    pub fn bundled_cnn() -> Result<NetProblem> {
        use crate::example;
        NetProblem::embedded(
            (example::CNN_MODEL, "digits/cnn.safetensors"),
            (example::X, "digits/train_x.npy"),
            (example::LABELS, "digits/train_labels.npy"),
            example::CLASSES,
            example::X_SCALE,
        )
    }

    /// Number of samples n.
    pub fn n(&self) -> usize {
        self.data.len()
    }

    /// Held-out data (T8's coverage) read with the training data's options: the network's
    /// per-sample shape (flat rows only when `flat_declared`, i.e. `--input-shape`), its C
    /// outputs, the same input scaling; integer labels one-hot with `one_hot` classes.
    pub fn load_held_out(
        &self,
        x: &std::path::Path,
        y: Option<&std::path::Path>,
        one_hot: Option<usize>,
        flat_declared: bool,
    ) -> Result<Dataset> {
        let opts = DataOptions {
            one_hot: if y.is_some() { one_hot } else { None },
            x_scale: (self.x_scale != 1.0).then_some(self.x_scale),
            expected_dim: Some(self.net.input_shape().len()),
            sample_shape: Some(SampleShape {
                dims: self.net.input_shape().dims(),
                flat_declared,
            }),
        };
        let data = crate::io::load_dataset(x, y, &opts)?;
        check_targets(&self.net, &data)?;
        Ok(data)
    }

    /// Number of outputs C.
    pub fn outputs(&self) -> usize {
        self.net.output_dim()
    }

    /// The per-sample input shape.
    pub fn input_shape(&self) -> Shape {
        self.net.input_shape()
    }
}

/// A problem of either kind: a dense MLP (the fast engine of THEORY §4) or a layered network
/// (§7). [`Loaded::load`] decides by the architecture: a `--arch` file or the checkpoint's
/// `flatcert_arch` metadata key makes it layered.
#[derive(Debug)]
pub enum Loaded {
    /// A dense MLP checkpoint.
    Dense(Box<super::Problem>),
    /// A layered (e.g. convolutional) checkpoint.
    Layered(Box<NetProblem>),
}

/// True when the safetensors bytes carry an architecture spec in their metadata. A file whose
/// header does not parse is not layered here: the dense reader then reports its error.
pub fn has_arch_metadata(bytes: &[u8]) -> bool {
    safetensors::SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone())
        .is_some_and(|m| m.contains_key(crate::net::ARCH_METADATA_KEY))
}

impl Loaded {
    /// Read the checkpoint once and load the problem of its kind.
    pub fn load(files: &ProblemFiles) -> Result<Loaded> {
        let (bytes, model_file) = read_input(&files.model)?;
        if files.arch.is_some() || has_arch_metadata(&bytes) {
            return Ok(Loaded::Layered(Box::new(NetProblem::load_with(
                files, &bytes, model_file,
            )?)));
        }
        if files.input_shape.is_some() {
            return Err(Error::bad_input(
                &model_file.path,
                "input_shape",
                "--input-shape applies to layered networks (a --arch spec or the checkpoint's \
                 flatcert_arch metadata, docs/cnn.md); this checkpoint is a dense MLP",
            ));
        }
        Ok(Loaded::Dense(Box::new(super::Problem::load_with(
            files, &bytes, model_file,
        )?)))
    }
}
