//! Loading a [`Dataset`] from `.npy`/`.csv` files (`docs/checkpoints.md`, "Data files"): inputs `x` as
//! `[n, d]` (N-D arrays flattened per sample), targets `y` as real `[n, C]` or integer labels
//! `[n]` / `[n, 1]` turned into one-hot rows with `--one-hot C`, optional `--x-scale`.

use std::path::Path;

use super::csv::parse_csv_matrix;
use super::npy::{array_to_matrix, parse_npy, parse_npy_labels};
use super::{display_name, one_line, read_file};
use crate::data::{Dataset, one_hot};
use crate::error::{Error, Result};

/// Options of [`load_dataset`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataOptions {
    /// `--one-hot C`: turn integer labels `[n]` or `[n, 1]` into one-hot targets of width C.
    pub one_hot: Option<usize>,
    /// `--x-scale s`: multiply every input by `s` after loading.
    pub x_scale: Option<f64>,
    /// The model's input dimension d; a different feature count is an error saying so.
    pub expected_dim: Option<usize>,
    /// The per-sample shape a layered network expects (issue 14, docs/cnn.md): see
    /// [`SampleShape`].
    pub sample_shape: Option<SampleShape>,
}

/// The per-sample input shape of a layered network (e.g. `[C, H, W]`, NCHW as PyTorch stores
/// it). An N-D array `[n, …]` must have exactly these trailing dimensions. A flat array `[n, d]`
/// (or a CSV file) is accepted only when the caller vouches for its layout (`--input-shape`),
/// because flattening loses the difference between NCHW and NHWC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleShape {
    /// The network's per-sample input shape.
    pub dims: Vec<usize>,
    /// Flat rows are declared to be this shape flattened in row-major (NCHW) order.
    pub flat_declared: bool,
}

impl SampleShape {
    /// Check the trailing dimensions `got` of an x array (`[d]` for a flat one).
    fn check(&self, got: &[usize], name: &str) -> Result<()> {
        let want: usize = self.dims.iter().product();
        let shown = |d: &[usize]| {
            d.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if got == self.dims.as_slice() {
            return Ok(());
        }
        if got.len() == 1 && self.dims.len() > 1 {
            if got[0] != want {
                return Err(Error::bad_input(
                    name,
                    "shape",
                    format!(
                        "samples have {} features; the network's input shape [{}] has {want}",
                        got[0],
                        shown(&self.dims)
                    ),
                ));
            }
            if self.flat_declared {
                return Ok(());
            }
            return Err(Error::bad_input(
                name,
                "shape",
                format!(
                    "flat samples of {} features, but the network takes [{}] images: save x as                      [n, {}] (NCHW), or pass --input-shape {} to declare that each row is one                      image flattened in NCHW order",
                    got[0],
                    shown(&self.dims),
                    shown(&self.dims),
                    self.dims
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ));
        }
        let mut hint = String::new();
        if got.len() == 3
            && self.dims.len() == 3
            && got == [self.dims[1], self.dims[2], self.dims[0]]
        {
            hint =
                " (this looks like NHWC: transpose to NCHW, e.g. x.transpose(0, 3, 1, 2))".into();
        }
        Err(Error::bad_input(
            name,
            "shape",
            format!(
                "each sample has shape [{}]; the network's input shape is [{}]{hint}",
                shown(got),
                shown(&self.dims)
            ),
        ))
    }
}

/// Supported data file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Npy,
    Csv,
}

fn format_of(name: &str) -> Result<Format> {
    // Embedded data is named like `<embedded:digits/x.npy>`.
    let ext = Path::new(name.trim_end_matches('>'))
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("npy") => Ok(Format::Npy),
        Some("csv") => Ok(Format::Csv),
        other => Err(Error::bad_input(
            name,
            "extension",
            format!(
                "unsupported data file type {}; expected a .npy or .csv file",
                other.map_or("(no extension)".to_string(), |e| format!("'.{e}'"))
            ),
        )),
    }
}

/// `(x, n, d, per-sample dims)`: the dims are `[d]` for a 2-D array or a CSV file.
fn load_x(bytes: &[u8], name: &str) -> Result<(Vec<f64>, usize, usize, Vec<usize>)> {
    match format_of(name)? {
        Format::Npy => {
            let arr = parse_npy(bytes, name)?;
            let dims = arr
                .shape
                .get(1..)
                .map(<[usize]>::to_vec)
                .unwrap_or_default();
            let (x, n, d) = array_to_matrix(arr, name)?;
            Ok((x, n, d, dims))
        }
        Format::Csv => {
            let (x, n, d) = parse_csv_matrix(bytes, name)?;
            Ok((x, n, d, vec![d]))
        }
    }
}

/// Targets as read, before one-hot encoding: row-major real values, or class labels.
enum Targets {
    Real(Vec<f64>, usize, usize),
    Labels(Vec<i64>),
}

const ONE_HOT_HINT: &str = "integer class labels need --one-hot C (the number of classes) to become one-hot targets; to use them as real-valued targets save y as a float array";

fn labels_from_reals(values: &[f64], name: &str) -> Result<Vec<i64>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && v.abs() <= 9.0e15 {
                Ok(v as i64)
            } else {
                Err(Error::bad_input(
                    name,
                    format!("label[{i}]"),
                    format!(
                        "value {v} is not an integer class label (--one-hot expects integer labels)"
                    ),
                ))
            }
        })
        .collect()
}

fn load_y(bytes: &[u8], name: &str, one_hot: Option<usize>) -> Result<Targets> {
    let too_wide = |c: usize, rows: usize| {
        Error::invalid_argument(
            "--one-hot",
            format!(
                "{name} already has {c} columns (shape ({rows}, {c})); --one-hot applies to a column of integer class labels"
            ),
        )
    };
    match format_of(name)? {
        Format::Npy => {
            let arr = parse_npy(bytes, name)?;
            let column = matches!(arr.shape.as_slice(), [_] | [_, 1]);
            match (column, one_hot, arr.is_integer) {
                (true, Some(_), _) => Ok(Targets::Labels(parse_npy_labels(bytes, name)?)),
                (true, None, true) => Err(Error::bad_input(name, "dtype", ONE_HOT_HINT)),
                (true, None, false) => {
                    let n = arr.shape[0];
                    Ok(Targets::Real(arr.data, n, 1))
                }
                (false, Some(_), _) if arr.shape.len() >= 2 => {
                    let (n, c) = (arr.shape[0], arr.shape[1..].iter().product());
                    Err(too_wide(c, n))
                }
                (false, _, _) => {
                    let (data, n, c) = array_to_matrix(arr, name)?;
                    Ok(Targets::Real(data, n, c))
                }
            }
        }
        Format::Csv => {
            let (data, n, c) = parse_csv_matrix(bytes, name)?;
            match one_hot {
                Some(_) if c == 1 => Ok(Targets::Labels(labels_from_reals(&data, name)?)),
                Some(_) => Err(too_wide(c, n)),
                None => Ok(Targets::Real(data, n, c)),
            }
        }
    }
}

/// Build a dataset from in-memory files (e.g. embedded example data). The format of each is
/// chosen by the extension of its name (`.npy` or `.csv`); names are used in error messages.
pub fn load_dataset_bytes(
    x_bytes: &[u8],
    x_name: &str,
    y: Option<(&[u8], &str)>,
    opts: &DataOptions,
) -> Result<Dataset> {
    build_dataset(x_bytes, x_name, y, opts).map_err(one_line)
}

fn build_dataset(
    x_bytes: &[u8],
    x_name: &str,
    y: Option<(&[u8], &str)>,
    opts: &DataOptions,
) -> Result<Dataset> {
    let (x, n, d, dims) = load_x(x_bytes, x_name)?;
    if n == 0 {
        return Err(Error::bad_input(
            x_name,
            "shape",
            "the data set is empty (n = 0 samples)",
        ));
    }
    if let Some(shape) = &opts.sample_shape {
        shape.check(&dims, x_name)?;
    }
    if let Some(e) = opts.expected_dim
        && d != e
    {
        return Err(Error::bad_input(
            x_name,
            "shape",
            format!(
                "samples have {d} features but the model expects d = {e} inputs (its first weight has {e} columns)"
            ),
        ));
    }
    let targets = match y {
        Some((bytes, y_name)) => {
            let (values, rows, c) = match load_y(bytes, y_name, opts.one_hot)? {
                Targets::Real(v, rows, c) => (v, rows, c),
                Targets::Labels(labels) => {
                    let classes = opts.one_hot.unwrap_or(0);
                    let rows = labels.len();
                    if rows != n {
                        (Vec::new(), rows, classes)
                    } else {
                        (one_hot(&labels, classes, y_name)?, rows, classes)
                    }
                }
            };
            if rows != n {
                return Err(Error::bad_input(
                    y_name,
                    "shape",
                    format!(
                        "y has {rows} rows but x ({x_name}) has {n} samples; expected {n} rows, one per sample"
                    ),
                ));
            }
            Some((values, c, y_name))
        }
        None => {
            if opts.one_hot.is_some() {
                return Err(Error::invalid_argument(
                    "--one-hot",
                    "given without targets (--y); it converts integer labels in y",
                ));
            }
            None
        }
    };
    let mut ds = match targets {
        Some((values, c, y_name)) => Dataset::new(x, n, d, Some((values, c)), x_name, y_name)?,
        None => Dataset::new(x, n, d, None, x_name, "")?,
    };
    if let Some(s) = opts.x_scale {
        ds.scale_inputs(s)?;
    }
    Ok(ds)
}

/// Load inputs `x` and optional targets `y` from `.npy` or `.csv` files into a [`Dataset`].
///
/// `y` is either real-valued `[n, C]` (N-D flattened per sample), or integer labels `[n]` /
/// `[n, 1]` which require [`DataOptions::one_hot`]. Errors name the file and what was expected:
/// unsupported extension, wrong feature count (the model's d), mismatched sample counts, labels
/// outside `0..C`, empty data, non-finite values (by index).
pub fn load_dataset(x: &Path, y: Option<&Path>, opts: &DataOptions) -> Result<Dataset> {
    let (x_name, x_bytes) = (display_name(x), read_file(x)?);
    let y_loaded = match y {
        Some(p) => Some((read_file(p)?, display_name(p))),
        None => None,
    };
    load_dataset_bytes(
        &x_bytes,
        &x_name,
        y_loaded.as_ref().map(|(b, n)| (b.as_slice(), n.as_str())),
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::npy::npy_matrix_bytes;
    use crate::io::npy::tests::npyz_bytes;

    fn x3x2() -> Vec<u8> {
        npy_matrix_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 2).unwrap()
    }

    fn opts(one_hot: Option<usize>, expected_dim: Option<usize>) -> DataOptions {
        DataOptions {
            one_hot,
            x_scale: None,
            expected_dim,
            sample_shape: None,
        }
    }

    fn err(x: &[u8], xn: &str, y: Option<(&[u8], &str)>, o: &DataOptions) -> String {
        let e = load_dataset_bytes(x, xn, y, o).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        e.to_string()
    }

    #[test]
    fn labels_become_one_hot_and_x_is_scaled() {
        let y = npyz_bytes(&[2i64, 0, 1], &[3]);
        let o = DataOptions {
            one_hot: Some(3),
            x_scale: Some(0.5),
            expected_dim: Some(2),
            sample_shape: None,
        };
        let ds = load_dataset_bytes(&x3x2(), "x.npy", Some((&y, "y.npy")), &o).unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.outputs()), (3, 2, Some(3)));
        assert_eq!(ds.y_row(0).unwrap(), &[0.0, 0.0, 1.0]);
        assert_eq!(ds.x_row(2), &[2.5, 3.0]);
        // A (n, 1) integer column works the same.
        let y = npyz_bytes(&[2i32, 0, 1], &[3, 1]);
        let ds = load_dataset_bytes(&x3x2(), "x.npy", Some((&y, "y.npy")), &opts(Some(3), None))
            .unwrap();
        assert_eq!(ds.y_row(1).unwrap(), &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn real_targets_from_npy_and_csv() {
        let y = npyz_bytes(&[0.5f32, 1.0, 1.5, 2.0, 2.5, 3.0], &[3, 2]);
        let ds = load_dataset_bytes(
            &x3x2(),
            "x.npy",
            Some((&y, "y.npy")),
            &DataOptions::default(),
        )
        .unwrap();
        assert_eq!(ds.y_row(2).unwrap(), &[2.5, 3.0]);
        let ds = load_dataset_bytes(
            b"a,b\n1,2\n3,4\n",
            "x.csv",
            Some((b"t\n0.5\n-1\n", "y.CSV")),
            &DataOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (ds.dim(), ds.outputs(), ds.y()),
            (2, Some(1), Some(&[0.5, -1.0][..]))
        );
        let ds = load_dataset_bytes(
            b"1,2\n3,4\n",
            "x.csv",
            Some((b"1\n0\n", "y.csv")),
            &opts(Some(2), None),
        )
        .unwrap();
        assert_eq!(ds.y(), Some(&[0.0, 1.0, 1.0, 0.0][..]));
    }

    #[test]
    fn bad_integer_labels_without_one_hot_explain_the_flag() {
        let y = npyz_bytes(&[2i64, 0, 1], &[3]);
        let e = err(
            &x3x2(),
            "x.npy",
            Some((&y, "y.npy")),
            &DataOptions::default(),
        );
        assert!(
            e.contains("y.npy: dtype") && e.contains("--one-hot C"),
            "{e}"
        );
        let y = npyz_bytes(&[0.0f64; 6], &[3, 2]);
        let e = err(&x3x2(), "x.npy", Some((&y, "y.npy")), &opts(Some(2), None));
        assert!(
            e.contains("--one-hot") && e.contains("already has 2 columns"),
            "{e}"
        );
    }

    #[test]
    fn bad_x_with_wrong_feature_count_names_expected_d() {
        let e = err(&x3x2(), "x.npy", None, &opts(None, Some(64)));
        assert!(
            e.contains("x.npy: shape: samples have 2 features") && e.contains("expects d = 64"),
            "{e}"
        );
    }

    #[test]
    fn bad_y_with_wrong_n_names_both_counts() {
        let y = npyz_bytes(&[0.0f64; 4], &[4, 1]);
        let e = err(
            &x3x2(),
            "x.npy",
            Some((&y, "y.npy")),
            &DataOptions::default(),
        );
        assert!(
            e.contains("y.npy: shape: y has 4 rows but x (x.npy) has 3 samples"),
            "{e}"
        );
        let y = npyz_bytes(&[0i64; 2], &[2]);
        let e = err(&x3x2(), "x.npy", Some((&y, "y.npy")), &opts(Some(3), None));
        assert!(
            e.contains("y has 2 rows") && e.contains("has 3 samples"),
            "{e}"
        );
    }

    #[test]
    fn bad_empty_data() {
        let x = npy_matrix_bytes(&[], 0, 5).unwrap();
        assert!(
            err(&x, "x.npy", None, &DataOptions::default())
                .contains("x.npy: shape: the data set is empty")
        );
        assert!(
            err(b"", "x.csv", None, &DataOptions::default())
                .contains("x.csv: rows: the file is empty")
        );
    }

    #[test]
    fn bad_labels_outside_one_hot_range_name_the_index() {
        let y = npyz_bytes(&[0i64, 3, 1], &[3]);
        let e = err(&x3x2(), "x.npy", Some((&y, "y.npy")), &opts(Some(3), None));
        assert!(
            e.contains("y.npy: label[1]: label 3 is outside 0..3"),
            "{e}"
        );
        let e = err(
            b"1\n2\n",
            "x.csv",
            Some((b"0\n1.5\n", "y.csv")),
            &opts(Some(3), None),
        );
        assert!(e.contains("y.csv: label[1]") && e.contains("1.5"), "{e}");
    }

    #[test]
    fn bad_nonfinite_data_names_the_index() {
        let x = npy_matrix_bytes(&[1.0, 2.0, f64::INFINITY, 4.0], 2, 2).unwrap();
        let e = err(&x, "x.npy", None, &DataOptions::default());
        assert!(e.contains("x.npy: x[1, 0]"), "{e}");
    }

    #[test]
    fn embedded_names_choose_the_format() {
        let ds = load_dataset_bytes(
            &x3x2(),
            "<embedded:digits/x.npy>",
            None,
            &DataOptions::default(),
        )
        .unwrap();
        assert_eq!(ds.x_source, "<embedded:digits/x.npy>");
    }

    #[test]
    fn bad_extension_and_missing_file() {
        let e = err(b"1,2", "x.txt", None, &DataOptions::default());
        assert!(
            e.contains("x.txt: extension") && e.contains(".npy or .csv"),
            "{e}"
        );
        let e = load_dataset(
            Path::new("/nonexistent/x.npy"),
            None,
            &DataOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        let e = err(&x3x2(), "x.npy", None, &opts(Some(3), None));
        assert!(e.contains("--one-hot"), "{e}");
    }

    #[test]
    fn digits_dataset_loads_from_disk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/digits");
        if !dir.join("x.npy").exists() {
            eprintln!("skipping: digits data not present");
            return;
        }
        let o = DataOptions {
            one_hot: Some(10),
            x_scale: Some(0.0625),
            expected_dim: Some(64),
            sample_shape: None,
        };
        let ds = load_dataset(&dir.join("x.npy"), Some(&dir.join("labels.npy")), &o).unwrap();
        assert_eq!((ds.len(), ds.dim(), ds.outputs()), (1797, 64, Some(10)));
        assert!(ds.x().iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(ds.y().unwrap().iter().all(|v| *v == 0.0 || *v == 1.0));
    }
}
