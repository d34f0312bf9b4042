//! In-memory training data: inputs `x` (`n × d`) and optional targets `y` (`n × C`), f64,
//! row-major, so that a block of samples is a zero-copy `d × b` column-major view (samples as
//! columns, the layout of [`crate::model`]).

use nalgebra::DMatrixView;

use crate::error::{Error, Result};

/// Training inputs and (optionally) targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    x: Vec<f64>,
    y: Option<Vec<f64>>,
    n: usize,
    d: usize,
    c: usize,
    /// Where the inputs came from (file name or `<embedded>`), for error messages.
    pub x_source: String,
    /// Where the targets came from.
    pub y_source: String,
}

impl Dataset {
    /// Build from row-major `x` (`n × d`) and optional row-major `y` (`n × C`). Rejects empty data,
    /// inconsistent lengths and non-finite entries (naming the sample and feature).
    pub fn new(
        x: Vec<f64>,
        n: usize,
        d: usize,
        y: Option<(Vec<f64>, usize)>,
        x_source: impl Into<String>,
        y_source: impl Into<String>,
    ) -> Result<Self> {
        let x_source = x_source.into();
        let y_source = y_source.into();
        if n == 0 {
            return Err(Error::bad_input(
                &x_source,
                "shape",
                "the data set is empty (n = 0 samples)",
            ));
        }
        if d == 0 {
            return Err(Error::bad_input(
                &x_source,
                "shape",
                "samples have no features (d = 0)",
            ));
        }
        if x.len() != n * d {
            return Err(Error::bad_input(
                &x_source,
                "shape",
                format!("{} values do not form {n} samples of {d} features", x.len()),
            ));
        }
        if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::bad_input(
                &x_source,
                format!("x[{}, {}]", pos / d, pos % d),
                format!("value {} is not finite; expected finite numbers", x[pos]),
            ));
        }
        let (y, c) = match y {
            Some((y, c)) => {
                if c == 0 || y.len() != n * c {
                    return Err(Error::bad_input(
                        &y_source,
                        "shape",
                        format!(
                            "{} target values do not form {n} rows (one per sample of x) of {c} outputs",
                            y.len()
                        ),
                    ));
                }
                if let Some(pos) = y.iter().position(|v| !v.is_finite()) {
                    return Err(Error::bad_input(
                        &y_source,
                        format!("y[{}, {}]", pos / c, pos % c),
                        format!("value {} is not finite; expected finite numbers", y[pos]),
                    ));
                }
                (Some(y), c)
            }
            None => (None, 0),
        };
        Ok(Self {
            x,
            y,
            n,
            d,
            c,
            x_source,
            y_source,
        })
    }

    /// Number of samples n.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Always false (construction rejects empty data); present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Input dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }
    /// Number of target columns C, if targets are present.
    pub fn outputs(&self) -> Option<usize> {
        self.y.as_ref().map(|_| self.c)
    }
    /// True when targets are present.
    pub fn has_targets(&self) -> bool {
        self.y.is_some()
    }
    /// Row-major inputs.
    pub fn x(&self) -> &[f64] {
        &self.x
    }
    /// Row-major targets, if any.
    pub fn y(&self) -> Option<&[f64]> {
        self.y.as_deref()
    }
    /// Input `x_i`.
    pub fn x_row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }
    /// Target `y_i`, if targets are present.
    pub fn y_row(&self, i: usize) -> Option<&[f64]> {
        self.y.as_ref().map(|y| &y[i * self.c..(i + 1) * self.c])
    }
    /// Samples `start..end` as a `d × (end − start)` view (samples as columns), zero-copy.
    pub fn x_block(&self, start: usize, end: usize) -> DMatrixView<'_, f64> {
        DMatrixView::from_slice(&self.x[start * self.d..end * self.d], self.d, end - start)
    }
    /// Targets of samples `start..end` as a `C × (end − start)` view, if present.
    pub fn y_block(&self, start: usize, end: usize) -> Option<DMatrixView<'_, f64>> {
        self.y
            .as_ref()
            .map(|y| DMatrixView::from_slice(&y[start * self.c..end * self.c], self.c, end - start))
    }
    /// The fixed block partition `[(start, end), …]` of `0..n` with blocks of `block` samples.
    /// Reductions over blocks in this order are bit-identical for any thread count.
    pub fn blocks(&self, block: usize) -> Vec<(usize, usize)> {
        let block = block.max(1);
        (0..self.n.div_ceil(block))
            .map(|k| (k * block, ((k + 1) * block).min(self.n)))
            .collect()
    }
    /// Multiply every input by `s` (`--x-scale`).
    pub fn scale_inputs(&mut self, s: f64) -> Result<()> {
        if !s.is_finite() || s == 0.0 {
            return Err(Error::invalid_argument(
                "--x-scale",
                format!("must be finite and nonzero, got {s}"),
            ));
        }
        self.x.iter_mut().for_each(|v| *v *= s);
        Ok(())
    }
    /// The same inputs with new targets (row-major `n × c`).
    pub fn with_targets(
        mut self,
        y: Vec<f64>,
        c: usize,
        source: impl Into<String>,
    ) -> Result<Self> {
        let src = source.into();
        let ds = Dataset::new(
            std::mem::take(&mut self.x),
            self.n,
            self.d,
            Some((y, c)),
            self.x_source,
            src,
        )?;
        Ok(ds)
    }
}

/// Turn integer labels into one-hot rows of width `classes` (`--one-hot C`). Labels outside
/// `0..classes` are an error naming the index.
pub fn one_hot(labels: &[i64], classes: usize, source: &str) -> Result<Vec<f64>> {
    if classes == 0 {
        return Err(Error::invalid_argument(
            "--one-hot",
            "the number of classes must be at least 1",
        ));
    }
    let mut y = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if l < 0 || l as u64 >= classes as u64 {
            return Err(Error::bad_input(
                source,
                format!("label[{i}]"),
                format!("label {l} is outside 0..{classes} (--one-hot {classes})"),
            ));
        }
        y[i * classes + l as usize] = 1.0;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_views_of_rows() {
        let ds = Dataset::new((0..12).map(f64::from).collect(), 4, 3, None, "x", "y").unwrap();
        let b = ds.x_block(1, 3);
        assert_eq!(b.shape(), (3, 2));
        assert_eq!(b[(0, 0)], 3.0);
        assert_eq!(b[(2, 1)], 8.0);
        assert_eq!(ds.blocks(3), vec![(0, 3), (3, 4)]);
    }

    #[test]
    fn rejects_nonfinite_and_empty() {
        let e = Dataset::new(vec![1.0, f64::NAN], 1, 2, None, "x.npy", "").unwrap_err();
        assert!(e.to_string().contains("x[0, 1]"), "{e}");
        assert!(Dataset::new(vec![], 0, 2, None, "x.npy", "").is_err());
        assert!(
            one_hot(&[0, 3], 3, "labels.npy")
                .unwrap_err()
                .to_string()
                .contains("label[1]")
        );
    }
}
