//! Reading and writing what users have: safetensors checkpoints, `.npy`/`.csv` data, and the
//! measurement/certificate JSON files (written atomically).
//!
//! Every loader validates its input completely before trusting it: sizes declared by a header are
//! checked against the actual file length before anything is allocated, and every problem becomes
//! an [`crate::Error::BadInput`] naming the file, the field and what was expected
//! (DESIGN.md §4). Nothing here panics on any input.

pub mod atomic;
pub mod checkpoint;
pub mod csv;
pub mod data;
pub mod npy;

pub use atomic::write_atomic;
pub use checkpoint::{
    ActivationSource, CheckpointOptions, LoadedCheckpoint, SaveDtype, checkpoint_to_bytes,
    load_checkpoint, load_checkpoint_bytes, save_checkpoint,
};
pub use csv::{load_csv_matrix, parse_csv_matrix};
pub use data::{DataOptions, load_dataset, load_dataset_bytes};
pub use npy::{
    NpyArray, load_npy_any, load_npy_labels, load_npy_matrix, npy_matrix_bytes, parse_npy,
    parse_npy_labels, parse_npy_matrix, save_npy_matrix,
};

use std::path::Path;

use crate::error::{Error, Result};

/// Read a whole file, mapping failures to [`Error::Io`] with the path.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The display name of a path used in error messages.
pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}
