//! Typed errors of the flatcert library.
//!
//! Every error that depends on user input names the file (or argument), the field and what was
//! expected, so that the CLI can print one line and exit with code 2 (`docs/bad_inputs.md`). Numerical
//! breakdowns and invariant violations map to exit code 3.

use std::path::PathBuf;

/// The error type of every fallible function in the `flatcert` library.
///
/// `#[non_exhaustive]`: new failure kinds may be added without a breaking change; match the
/// variants you handle and keep a wildcard arm (or use [`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what was expected.
    #[error("{file}: {field}: {message}")]
    BadInput {
        /// The file (or `<embedded>` for built-in data).
        file: String,
        /// The field, tensor name, array index or header entry at fault.
        field: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A command-line or API argument is out of its domain (η ≤ 0, B > n, k = 0, …).
    #[error("invalid argument {name}: {message}")]
    InvalidArgument {
        /// The argument's name as the user wrote it (e.g. `--lr`).
        name: String,
        /// What was given and what is allowed.
        message: String,
    },
    /// A network that is not a plain dense MLP, or whose shapes do not chain.
    #[error("model: {0}")]
    Model(String),
    /// A computation produced a non-finite value or failed to converge where that is not allowed.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// A broken internal invariant (a bug).
    #[error("internal error: {0}")]
    Internal(String),
    /// A theorem of the `flatcert_bounds` crate could not be evaluated on the given numbers
    /// (B = 0, B > n, η ≤ 0, odd k, a non-finite or malformed value, …).
    #[error("{0}")]
    Bounds(#[from] flatcert_bounds::BoundsError),
}

impl Error {
    /// Exit code of the CLI for this error (`docs/bad_inputs.md`): 2 for bad input or usage, 3
    /// otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. }
            | Error::BadInput { .. }
            | Error::InvalidArgument { .. }
            | Error::Model(_) => 2,
            Error::Bounds(e) => bounds_exit_code(e),
            Error::Numerical(_) | Error::Internal(_) => 3,
        }
    }

    /// Shorthand for [`Error::BadInput`].
    pub fn bad_input(
        file: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::BadInput {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid_argument(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// Exit code of a [`flatcert_bounds::BoundsError`]: 2 when an argument a user chooses is out of
/// its domain (n, B, η, k), 3 when a number handed to a theorem is malformed (a computed value:
/// a bug or a numerical breakdown).
fn bounds_exit_code(e: &flatcert_bounds::BoundsError) -> i32 {
    use flatcert_bounds::BoundsError as B;
    match e {
        B::NoSamples
        | B::ZeroBatch
        | B::BatchTooLarge { .. }
        | B::InvalidLearningRate(_)
        | B::InvalidMomentOrder(_) => 2,
        _ => 3,
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
