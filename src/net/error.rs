//! Typed errors of the layer engine: every error names the layer (index and kind, and its
//! state_dict name when it has one) and what was expected.

use std::fmt;

/// Where in a [`Sequential`](super::Sequential) something went wrong: the 0-based layer index, the
/// layer kind (`conv2d`, `linear`, …) and the optional state_dict name (`features.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerId {
    /// 0-based position in the sequence.
    pub index: usize,
    /// The layer kind as written in the architecture spec (`conv2d`, `maxpool2d`, …).
    pub kind: String,
    /// The state_dict name (`features.0`), when the layer has one.
    pub name: Option<String>,
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {} ({}", self.index, self.kind)?;
        if let Some(n) = &self.name {
            write!(f, " '{n}'")?;
        }
        f.write_str(")")
    }
}

/// Errors of [`crate::net`]. All of them are caused by the network or its input (CLI exit code 2
/// once converted into [`crate::Error`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A layer cannot take the shape its predecessor produces (or the input shape).
    #[error("{layer}: input shape {got}: {expected}")]
    Shape {
        /// The layer at fault.
        layer: LayerId,
        /// The per-sample shape that reached it, e.g. `[16, 8, 8]`.
        got: String,
        /// What the layer expected.
        expected: String,
    },
    /// A layer's own configuration or parameters are invalid (zero kernel, wrong weight length,
    /// non-finite value, …).
    #[error("{layer}: {message}")]
    Layer {
        /// The layer at fault.
        layer: LayerId,
        /// What was found and what was expected.
        message: String,
    },
    /// The architecture spec is malformed (unknown layer type, missing field, bad JSON).
    #[error("architecture spec: {field}: {message}")]
    Spec {
        /// The JSON field at fault, e.g. `layers[3].type`.
        field: String,
        /// What was found and what was expected.
        message: String,
    },
    /// A weight tensor is missing, has the wrong shape or dtype, or is left over.
    #[error("tensor '{tensor}': {message}")]
    Weights {
        /// The safetensors tensor name (`features.0.weight`).
        tensor: String,
        /// What was found and what was expected.
        message: String,
    },
    /// Data whose shape does not match the network's input.
    #[error("input: {0}")]
    Input(String),
}

impl From<NetError> for crate::Error {
    fn from(e: NetError) -> Self {
        crate::Error::Model(e.to_string())
    }
}

/// `Result` with [`NetError`].
pub type NetResult<T> = std::result::Result<T, NetError>;
