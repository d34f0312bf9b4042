//! The bundled examples compiled into the binary, trained by `flatcert train` on the UCI digits
//! test set (1797 8×8 images, CC BY 4.0; `data/digits/README.md`):
//!
//! - `digits`: a dense ReLU network ([`MODEL`]); the exact command that produced
//!   `data/digits/model.safetensors` is in `data/digits/TRAINING.md` and in its metadata;
//! - `digits-cnn`: a small CNN ([`CNN_MODEL`], THEORY.md §7) trained on the same 256 images read
//!   as 1×8×8 NCHW inputs; `data/digits/TRAINING.md` gives the command that regenerates it
//!   (`cargo run --release --example make_digits_cnn`, [`train_digits_cnn`]).
//!
//! Both use the same data ([`X`], [`LABELS`], [`X_SCALE`], [`CLASSES`]). [`Example`] names them.

use crate::data::Dataset;
use crate::error::Result;
use crate::io::DataOptions;
use crate::train::{BatchScheme, NetTrainConfig, NetTrainResult};

/// The checkpoint bytes of the dense `digits` example (safetensors).
pub const MODEL: &[u8] = include_bytes!("../data/digits/model.safetensors");
/// The training inputs: the first 256 digits (uint8 `[256, 64]`, pixel values 0..16).
pub const X: &[u8] = include_bytes!("../data/digits/train_x.npy");
/// The training labels (int64 `[256]`, 0..9).
pub const LABELS: &[u8] = include_bytes!("../data/digits/train_labels.npy");
/// Input scaling used in training (pixels / 16 ∈ [0, 1]).
pub const X_SCALE: f64 = 1.0 / 16.0;
/// Number of classes (labels are one-hot encoded).
pub const CLASSES: usize = 10;

/// The checkpoint bytes of the `digits-cnn` example (safetensors, F64, architecture [`CNN_ARCH`]
/// in the metadata key `flatcert_arch`, training hyper-parameters [`CNN_TRAIN`] in the metadata;
/// final training loss 7.68e-7).
pub const CNN_MODEL: &[u8] = include_bytes!("../data/digits/cnn.safetensors");

/// Per-sample input shape of the CNN example: `[C, H, W] = [1, 8, 8]` (each row of [`X`] is one
/// 8×8 image, row-major, which is NCHW with one channel).
pub const CNN_INPUT_SHAPE: [usize; 3] = [1, 8, 8];

/// The architecture of the `digits-cnn` example (docs/cnn.md format, also stored in the
/// checkpoint's metadata): conv(1→8, 3×3, pad 1) ReLU max-pool 2 → conv(8→16, 3×3, pad 1) ReLU
/// max-pool 2 → flatten (64) → linear(64→64) ReLU → linear(64→10); P = 6058 parameters, more than
/// nC = 2560 so that SGD can interpolate the 256 one-hot targets (THEORY.md §0 linearization).
pub const CNN_ARCH: &str = r#"{"input_shape":[1,8,8],"layers":[
 {"type":"conv2d","name":"features.0","in_channels":1,"out_channels":8,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"conv2d","name":"features.3","in_channels":8,"out_channels":16,"kernel":3,"padding":1},{"type":"relu"},{"type":"maxpool2d","kernel":2},
 {"type":"flatten"},
 {"type":"linear","name":"classifier.0","in_features":64,"out_features":64},{"type":"relu"},
 {"type":"linear","name":"classifier.2","in_features":64,"out_features":10}]}"#;

/// SGD hyper-parameters of the committed `digits-cnn` checkpoint (THEORY.md §0 model (S), η in
/// the theory convention, PyTorch-default initialization from ChaCha8 stream 0 of the seed).
pub const CNN_TRAIN: NetTrainConfig = NetTrainConfig {
    lr: 1.0,
    batch: 16,
    steps: 40_000,
    seed: 1,
    sampling: BatchScheme::IidSubsets,
    log_every: 2_000,
    stop_at_loss: None,
};

/// The bundled training set: [`X`] scaled by [`X_SCALE`], [`LABELS`] one-hot with [`CLASSES`]
/// columns (`n = 256`, `d = 64`, `C = 10`).
pub fn digits_dataset() -> Result<Dataset> {
    let opts = DataOptions {
        one_hot: Some(CLASSES),
        x_scale: Some(X_SCALE),
        expected_dim: None,
        sample_shape: None,
    };
    crate::io::load_dataset_bytes(
        X,
        "<embedded:digits/train_x.npy>",
        Some((LABELS, "<embedded:digits/train_labels.npy>")),
        &opts,
    )
}

/// Train the `digits-cnn` network: [`CNN_ARCH`] initialized from `cfg.seed`, trained on
/// [`digits_dataset`] by [`crate::train::train_net`] with `cfg` ([`CNN_TRAIN`] reproduces the
/// committed checkpoint). The metadata to store is `result.metadata(cfg)` plus `x_scale` and
/// `one_hot` ([`cnn_metadata`]).
pub fn train_digits_cnn(
    cfg: &NetTrainConfig,
    progress: &dyn Fn(u64, f64),
) -> Result<NetTrainResult> {
    use rand::SeedableRng;
    let spec = crate::net::ArchSpec::from_json(CNN_ARCH)
        .map_err(|e| crate::net::in_file("<embedded:digits-cnn arch>", e))?;
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(cfg.seed);
    let net = crate::train::init_net_pytorch_default(&spec, &mut rng)
        .map_err(|e| crate::net::in_file("<embedded:digits-cnn arch>", e))?;
    crate::train::train_net(&digits_dataset()?, cfg, net, progress)
}

/// The checkpoint metadata of a [`train_digits_cnn`] result: the trainer's keys plus `x_scale`
/// and `one_hot`, as `flatcert train --x-scale 0.0625 --one-hot 10` writes them.
pub fn cnn_metadata(
    result: &NetTrainResult,
    cfg: &NetTrainConfig,
) -> std::collections::BTreeMap<String, String> {
    let mut meta = result.metadata(cfg);
    meta.insert("x_scale".into(), format!("{X_SCALE}"));
    meta.insert("one_hot".into(), CLASSES.to_string());
    meta
}

/// The bundled examples, by the name of `--example` (`digits`, `digits-cnn`). Both share the
/// data [`X`], [`LABELS`] (with [`X_SCALE`] and [`CLASSES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Example {
    /// The dense ReLU network 64-64-64-10 ([`MODEL`]).
    Digits,
    /// The CNN of [`CNN_ARCH`] ([`CNN_MODEL`]), inputs 1×8×8.
    DigitsCnn,
}

impl Example {
    /// Every example, in the order of `--example` help texts.
    pub const ALL: [Example; 2] = [Example::Digits, Example::DigitsCnn];

    /// Parse an `--example` value (`digits` or `digits-cnn`, also `digits_cnn`); an unknown
    /// name is an [`crate::Error::InvalidArgument`] naming `--example` and the choices.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "digits" => Ok(Example::Digits),
            "digits-cnn" => Ok(Example::DigitsCnn),
            _ => Err(crate::Error::invalid_argument(
                "--example",
                format!("unknown example '{name}'; expected digits or digits-cnn"),
            )),
        }
    }
    /// The name accepted by [`Example::parse`].
    pub fn name(&self) -> &'static str {
        match self {
            Example::Digits => "digits",
            Example::DigitsCnn => "digits-cnn",
        }
    }
    /// The checkpoint bytes.
    pub fn model_bytes(&self) -> &'static [u8] {
        match self {
            Example::Digits => MODEL,
            Example::DigitsCnn => CNN_MODEL,
        }
    }
    /// The embedded file name of the checkpoint (shown as `<embedded:NAME>`).
    pub fn model_name(&self) -> &'static str {
        match self {
            Example::Digits => "digits/model.safetensors",
            Example::DigitsCnn => "digits/cnn.safetensors",
        }
    }
    /// The per-sample input shape `[C, H, W]` for a convolutional example, `None` for the dense
    /// one (its inputs are the flat 64-vectors).
    pub fn input_shape(&self) -> Option<[usize; 3]> {
        match self {
            Example::Digits => None,
            Example::DigitsCnn => Some(CNN_INPUT_SHAPE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ArchSpec, load_net_bytes};

    /// The committed `digits-cnn` bytes load from their own metadata with the architecture of
    /// [`CNN_ARCH`], carry the hyper-parameters of [`CNN_TRAIN`], and their recorded final loss
    /// is the loss of the stored weights on [`digits_dataset`] (same blocks, same order:
    /// bit-equal).
    #[test]
    fn committed_digits_cnn_loads_with_its_arch_and_metadata() {
        let l = load_net_bytes(CNN_MODEL, "<embedded:digits/cnn.safetensors>", None).unwrap();
        assert_eq!(l.spec, ArchSpec::from_json(CNN_ARCH).unwrap());
        assert_eq!(l.net.num_params(), 6058);
        assert_eq!(l.net.input_shape().dims(), CNN_INPUT_SHAPE.to_vec());
        assert_eq!(l.net.output_dim(), CLASSES);
        let m = |k: &str| l.metadata.get(k).cloned().unwrap_or_default();
        assert_eq!(m("lr").parse::<f64>().unwrap(), CNN_TRAIN.lr);
        assert_eq!(m("batch"), CNN_TRAIN.batch.to_string());
        assert_eq!(m("steps"), CNN_TRAIN.steps.to_string());
        assert_eq!(m("seed"), CNN_TRAIN.seed.to_string());
        assert_eq!(m("sampling"), CNN_TRAIN.sampling.name());
        assert_eq!(m("x_scale").parse::<f64>().unwrap(), X_SCALE);
        assert_eq!(m("one_hot"), CLASSES.to_string());
        let loss = crate::train::net_dataset_loss(&l.net, &digits_dataset().unwrap()).unwrap();
        assert_eq!(m("final_train_loss").parse::<f64>().unwrap(), loss);
        assert!(loss < 1e-5, "not a near-minimum: {loss}");
    }

    #[test]
    fn example_names_round_trip() {
        for e in Example::ALL {
            assert_eq!(Example::parse(e.name()).unwrap(), e);
        }
        assert_eq!(Example::parse("digits_cnn").unwrap(), Example::DigitsCnn);
        assert!(Example::parse("mnist").is_err());
        assert_eq!(Example::Digits.model_bytes(), MODEL);
        assert_eq!(Example::DigitsCnn.model_bytes(), CNN_MODEL);
        assert_eq!(Example::DigitsCnn.input_shape(), Some([1, 8, 8]));
    }
}
