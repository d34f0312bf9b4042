//! Reading and writing what users have: safetensors checkpoints, `.npy`/`.csv` data, and the
//! measurement/certificate JSON files (written atomically).
//!
//! Every loader validates its input completely before trusting it: sizes declared by a header are
//! checked against the actual file length before anything is allocated, and every problem becomes
//! an [`crate::Error::BadInput`] naming the file, the field and what was expected
//! (`docs/bad_inputs.md`). Nothing here panics on any input.

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
pub use data::{DataOptions, SampleShape, load_dataset, load_dataset_bytes};
pub use npy::{
    NpyArray, load_npy_any, load_npy_labels, load_npy_matrix, npy_matrix_bytes, parse_npy,
    parse_npy_labels, parse_npy_matrix, save_npy_matrix,
};

use std::path::Path;

use crate::error::{Error, Result};

/// Read a whole input file. A directory, a device (`/dev/zero` and `/dev/urandom` never end: they
/// would fill the memory) or a socket is refused with an [`Error::BadInput`] naming the path;
/// regular files, symbolic links to them and pipes (`<(…)`) are read. Operating-system failures
/// become [`Error::Io`] with the path. Exit code 2 either way.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let kind = std::fs::metadata(path).map_err(io)?.file_type();
    if let Some(what) = not_a_file(&kind) {
        return Err(Error::bad_input(
            display_name(path),
            "path",
            format!("is {what}; expected a regular file"),
        ));
    }
    std::fs::read(path).map_err(io)
}

/// [`read_file`] for a text file (JSON documents): invalid UTF-8 is an [`Error::BadInput`].
pub fn read_text_file(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?).map_err(|e| {
        Error::bad_input(
            display_name(path),
            "encoding",
            format!(
                "not UTF-8 text (invalid byte at offset {}); expected a JSON document",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// What a path that cannot be read as a file is, if anything.
fn not_a_file(kind: &std::fs::FileType) -> Option<&'static str> {
    if kind.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() || kind.is_block_device() {
            return Some("a device, not a file (a device such as /dev/zero may never end)");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
    }
    None
}

/// The display name of a path used in error messages.
pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Keep an error about untrusted input printable on one line (`docs/bad_inputs.md`): control characters
/// that a file smuggled into a message — a tensor name, dtype string, CSV cell or JSON string
/// with a newline or a terminal escape sequence — are replaced by their Rust escapes (`\n`,
/// `\u{1b}`). Every reader applies this to the errors of its public entry points.
pub(crate) fn one_line(e: Error) -> Error {
    match e {
        Error::BadInput {
            file,
            field,
            message,
        } => Error::BadInput {
            file: escape_controls(file),
            field: escape_controls(field),
            message: escape_controls(message),
        },
        Error::InvalidArgument { name, message } => Error::InvalidArgument {
            name: escape_controls(name),
            message: escape_controls(message),
        },
        Error::Model(m) => Error::Model(escape_controls(m)),
        Error::Numerical(m) => Error::Numerical(escape_controls(m)),
        Error::Internal(m) => Error::Internal(escape_controls(m)),
        // Io carries a path and an OS message; Bounds carries only numbers and static text.
        other @ (Error::Io { .. } | Error::Bounds(_)) => other,
    }
}

/// `s` with control characters (and the Unicode line and paragraph separators) escaped.
fn escape_controls(s: String) -> String {
    let unprintable = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(unprintable) {
        return s;
    }
    s.chars()
        .map(|c| {
            if unprintable(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
