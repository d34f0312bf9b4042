//! The bundled example compiled into the binary: a ReLU network trained by `flatcert train` on
//! the UCI digits test set (1797 8×8 images, CC BY 4.0; `data/digits/README.md`). The exact
//! command that produced `data/digits/model.safetensors` is in `data/digits/TRAINING.md` and in
//! the checkpoint's metadata, so `flatcert measure` / `flatcert certify` work with no arguments.

/// The checkpoint bytes (safetensors).
pub const MODEL: &[u8] = include_bytes!("../data/digits/model.safetensors");
/// The training inputs: the first 256 digits (uint8 `[256, 64]`, pixel values 0..16).
pub const X: &[u8] = include_bytes!("../data/digits/train_x.npy");
/// The training labels (int64 `[256]`, 0..9).
pub const LABELS: &[u8] = include_bytes!("../data/digits/train_labels.npy");
/// Input scaling used in training (pixels / 16 ∈ [0, 1]).
pub const X_SCALE: f64 = 1.0 / 16.0;
/// Number of classes (labels are one-hot encoded).
pub const CLASSES: usize = 10;
