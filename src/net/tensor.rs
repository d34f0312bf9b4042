//! Batched f64 tensors in PyTorch's NCHW layout.

use std::fmt;

/// The shape of **one sample**: a flat vector `[F]` or an image `[C, H, W]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A vector of `F` features (the input of `Linear`).
    Flat(usize),
    /// `C` channels of `H × W` pixels, stored channel-major (NCHW without the N).
    Image {
        /// Channels C.
        c: usize,
        /// Height H.
        h: usize,
        /// Width W.
        w: usize,
    },
}

impl Shape {
    /// Number of entries of one sample (`F` or `C·H·W`).
    pub fn len(&self) -> usize {
        match *self {
            Shape::Flat(f) => f,
            Shape::Image { c, h, w } => c * h * w,
        }
    }
    /// True when one sample has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dimensions as a list (`[F]` or `[C, H, W]`).
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Shape::Flat(f) => vec![f],
            Shape::Image { c, h, w } => vec![c, h, w],
        }
    }
    /// `[F]` → `Flat`, `[C, H, W]` → `Image`; `None` for any other rank.
    pub fn from_dims(dims: &[usize]) -> Option<Self> {
        match *dims {
            [f] => Some(Shape::Flat(f)),
            [c, h, w] => Some(Shape::Image { c, h, w }),
            _ => None,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Flat(n) => write!(f, "[{n}]"),
            Shape::Image { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
        }
    }
}

/// A batch of samples of one [`Shape`], sample-major and NCHW inside a sample: entry
/// `(r, c, y, x)` is `data[r·C·H·W + c·H·W + y·W + x]`.
///
/// Tangent and cotangent batches may hold `reps` rows per input sample (for instance the C
/// output cotangents of the backward pass for all outputs, THEORY.md §4): row `r` then belongs
/// to sample `r / reps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Number of rows (samples, or sample × repetition).
    pub batch: usize,
    /// Per-row shape.
    pub shape: Shape,
    /// `batch · shape.len()` entries.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A tensor from its parts; `None` when `data.len() != batch · shape.len()`.
    pub fn new(batch: usize, shape: Shape, data: Vec<f64>) -> Option<Self> {
        (data.len() == batch * shape.len()).then_some(Self { batch, shape, data })
    }
    /// All zeros.
    pub fn zeros(batch: usize, shape: Shape) -> Self {
        Self {
            batch,
            shape,
            data: vec![0.0; batch * shape.len()],
        }
    }
    /// Entries per row.
    pub fn row_len(&self) -> usize {
        self.shape.len()
    }
    /// Row `r` (one sample).
    pub fn row(&self, r: usize) -> &[f64] {
        let s = self.shape.len();
        &self.data[r * s..(r + 1) * s]
    }
    /// The same data with another per-row shape of equal length (Flatten).
    pub fn reshaped(mut self, shape: Shape) -> Self {
        debug_assert_eq!(shape.len(), self.shape.len());
        self.shape = shape;
        self
    }
    /// Rows per sample of `x` (`self.batch / x.batch`); panics unless it divides exactly, which
    /// is an internal invariant of the engine.
    pub(crate) fn reps_over(&self, samples: usize) -> usize {
        assert!(
            samples > 0 && self.batch.is_multiple_of(samples),
            "tangent batch {} is not a multiple of the sample batch {samples}",
            self.batch
        );
        self.batch / samples
    }
}
