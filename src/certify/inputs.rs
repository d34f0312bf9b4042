//! Loading what a certificate certifies from its recorded [`Provenance`] (used by `verify`), and
//! the bundled example's held-out split (T8 coverage for `flatcert certify --epsilon` with no
//! inputs).

use std::path::{Path, PathBuf};

use super::plan::Provenance;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::example;
use crate::io::{CheckpointOptions, DataOptions, LoadedCheckpoint};
use crate::measurements::{InputFile, sha256_hex};
use crate::model::{Activation, Mlp};

/// The held-out inputs of the bundled example: digits 257 … 1797 (uint8 `[1541, 64]`).
pub const EMBEDDED_TEST_X: &[u8] = include_bytes!("../../data/digits/test_x.npy");
/// Their labels (int64 `[1541]`).
pub const EMBEDDED_TEST_LABELS: &[u8] = include_bytes!("../../data/digits/test_labels.npy");

/// The bytes of an embedded file by its name (`digits/model.safetensors`, …).
pub fn embedded_bytes(name: &str) -> Option<&'static [u8]> {
    match name {
        "digits/model.safetensors" => Some(example::MODEL),
        "digits/cnn.safetensors" => Some(example::CNN_MODEL),
        "digits/train_x.npy" => Some(example::X),
        "digits/train_labels.npy" => Some(example::LABELS),
        "digits/test_x.npy" => Some(EMBEDDED_TEST_X),
        "digits/test_labels.npy" => Some(EMBEDDED_TEST_LABELS),
        _ => None,
    }
}

/// `<embedded:name>` → `name`.
pub fn embedded_name(path: &str) -> Option<&str> {
    path.strip_prefix("<embedded:")?.strip_suffix('>')
}

/// The record of an embedded file.
pub fn embedded_file(name: &str) -> Option<InputFile> {
    embedded_bytes(name).map(|b| InputFile {
        path: format!("<embedded:{name}>"),
        sha256: sha256_hex(b),
    })
}

/// The record of a file on disk.
pub fn file_record(path: &Path) -> Result<InputFile> {
    let bytes = crate::io::read_file(path)?;
    Ok(InputFile {
        path: path.display().to_string(),
        sha256: sha256_hex(&bytes),
    })
}

/// The bytes of a recorded input and where they were read: embedded (`<embedded:…>`), or a path.
/// A relative recorded path is resolved **relative to `base`** (the certificate's directory)
/// first, and only if no such file exists there relative to the current directory, so that a
/// same-named file in the current directory never shadows the certified one (issue 12 item 5).
pub fn read_recorded(f: &InputFile, base: Option<&Path>) -> Result<(Vec<u8>, String)> {
    if let Some(name) = embedded_name(&f.path) {
        return embedded_bytes(name)
            .map(|b| (b.to_vec(), f.path.clone()))
            .ok_or_else(|| {
                Error::bad_input(
                    &f.path,
                    "path",
                    "not an embedded file of this flatcert version",
                )
            });
    }
    let direct = PathBuf::from(&f.path);
    let candidates: Vec<PathBuf> = match base {
        Some(b) if direct.is_relative() => vec![b.join(&direct), direct.clone()],
        _ => vec![direct.clone()],
    };
    // The first candidate that exists is the file: an unreadable one is an error, not a reason
    // to fall back to a different file of the same name.
    if let Some(c) = candidates.iter().find(|c| c.exists()) {
        let bytes = crate::io::read_file(c)?;
        return Ok((bytes, c.display().to_string()));
    }
    Err(Error::Io {
        path: direct,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the certified input file cannot be read (looked relative to the certificate's \
             directory, then to the current directory)",
        ),
    })
}

/// The recorded network: a dense MLP, or a layered network built with the certificate's
/// recorded architecture (`inputs.architecture`).
#[derive(Debug)]
pub enum RecordedNetwork {
    /// A dense MLP.
    Dense(Mlp),
    /// A layered network and its architecture.
    Layered(Box<crate::net::Sequential>, Box<crate::net::ArchSpec>),
}

/// What [`load`] returns.
#[derive(Debug)]
pub struct LoadedInputs {
    /// The network.
    pub network: RecordedNetwork,
    /// The training data.
    pub data: Dataset,
    /// Held-out data, if recorded.
    pub test: Option<Dataset>,
    /// The SHA-256 of every recorded file as read now, by its role (`model`, `x`, `y`, `test_x`,
    /// `test_y`).
    pub hashes: Vec<(String, String, String)>,
    /// Per role, the file actually read (a path as resolved, or `<embedded:…>`).
    pub read_from: Vec<(String, String)>,
}

/// The recorded files in a fixed order: (role, record).
pub fn recorded_files(p: &Provenance) -> Vec<(&'static str, &InputFile)> {
    let mut v = vec![("model", &p.model), ("x", &p.x)];
    if let Some(y) = &p.y {
        v.push(("y", y));
    }
    if let Some(t) = &p.test_x {
        v.push(("test_x", t));
    }
    if let Some(t) = &p.test_y {
        v.push(("test_y", t));
    }
    v
}

/// Reload the network and the data exactly as recorded (options included; `architecture` is a
/// layered certificate's recorded spec). `hashes` holds, per role, (role, recorded sha256,
/// sha256 now) so that the caller can name a changed file.
pub fn load(
    p: &Provenance,
    base: Option<&Path>,
    architecture: Option<&serde_json::Value>,
) -> Result<LoadedInputs> {
    let mut hashes = Vec::new();
    let mut read_from = Vec::new();
    let mut read = |role: &str, f: &InputFile| -> Result<Vec<u8>> {
        let (b, from) = read_recorded(f, base)?;
        hashes.push((role.to_string(), f.sha256.clone(), sha256_hex(&b)));
        read_from.push((role.to_string(), from));
        Ok(b)
    };
    let model = read("model", &p.model)?;
    let x = read("x", &p.x)?;
    let y = p.y.as_ref().map(|f| read("y", f)).transpose()?;
    let tx = p.test_x.as_ref().map(|f| read("test_x", f)).transpose()?;
    let ty = p.test_y.as_ref().map(|f| read("test_y", f)).transpose()?;
    let activation = p
        .activation_flag
        .as_deref()
        .map(Activation::parse)
        .transpose()?;
    let (network, input_dim, sample_shape) = match architecture {
        Some(a) => {
            let spec = crate::net::ArchSpec::from_json(&a.to_string())
                .map_err(|e| crate::net::in_file("certificate inputs.architecture", e))?;
            let net = crate::net::load_net_bytes(&model, &p.model.path, Some(&spec))?.net;
            let shape = crate::io::SampleShape {
                dims: net.input_shape().dims(),
                flat_declared: true,
            };
            let d = net.input_shape().len();
            (
                RecordedNetwork::Layered(Box::new(net), Box::new(spec)),
                d,
                Some(shape),
            )
        }
        None => {
            let LoadedCheckpoint { mlp, .. } = crate::io::load_checkpoint_bytes(
                &model,
                &p.model.path,
                &CheckpointOptions {
                    layers: p.layers.clone(),
                    activation,
                },
            )?;
            let d = mlp.input_dim();
            (RecordedNetwork::Dense(mlp), d, None)
        }
    };
    let opts = DataOptions {
        one_hot: p.one_hot,
        x_scale: (p.x_scale != 1.0).then_some(p.x_scale),
        expected_dim: Some(input_dim),
        sample_shape,
    };
    let y_pair = match (&y, &p.y) {
        (Some(b), Some(f)) => Some((b.as_slice(), f.path.as_str())),
        _ => None,
    };
    let data = crate::io::load_dataset_bytes(&x, &p.x.path, y_pair, &opts)?;
    let test = match (&tx, &p.test_x) {
        (Some(b), Some(f)) => {
            let ty_pair = match (&ty, &p.test_y) {
                (Some(tb), Some(tf)) => Some((tb.as_slice(), tf.path.as_str())),
                _ => None,
            };
            let topts = DataOptions {
                one_hot: if ty_pair.is_some() { p.one_hot } else { None },
                ..opts.clone()
            };
            Some(crate::io::load_dataset_bytes(b, &f.path, ty_pair, &topts)?)
        }
        _ => None,
    };
    Ok(LoadedInputs {
        network,
        data,
        test,
        hashes,
        read_from,
    })
}

/// Load held-out data given on the command line (`--test-x`, `--test-y`) with the training
/// data's options.
pub fn load_test(
    x: &Path,
    y: Option<&Path>,
    one_hot: Option<usize>,
    x_scale: f64,
    d: usize,
) -> Result<Dataset> {
    let opts = DataOptions {
        one_hot: if y.is_some() { one_hot } else { None },
        x_scale: (x_scale != 1.0).then_some(x_scale),
        expected_dim: Some(d),
        sample_shape: None,
    };
    crate::io::load_dataset(x, y, &opts)
}

/// The bundled example's held-out split as a data set (x scaled by 1/16, labels one-hot).
pub fn embedded_test() -> Result<Dataset> {
    let opts = DataOptions {
        one_hot: Some(example::CLASSES),
        x_scale: Some(example::X_SCALE),
        expected_dim: None,
        sample_shape: None,
    };
    crate::io::load_dataset_bytes(
        EMBEDDED_TEST_X,
        "<embedded:digits/test_x.npy>",
        Some((EMBEDDED_TEST_LABELS, "<embedded:digits/test_labels.npy>")),
        &opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_names_resolve() {
        assert_eq!(
            embedded_name("<embedded:digits/test_x.npy>"),
            Some("digits/test_x.npy")
        );
        assert!(embedded_file("digits/model.safetensors").is_some());
        assert!(embedded_file("nope").is_none());
        let t = embedded_test().unwrap();
        assert_eq!((t.len(), t.dim(), t.outputs()), (1541, 64, Some(10)));
    }
}
