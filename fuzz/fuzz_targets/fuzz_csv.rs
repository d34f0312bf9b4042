//! Fuzz the `.csv` reader (`parse_csv_matrix`) and the data set builder on `.csv` inputs (real
//! targets and `--one-hot` labels).
#![no_main]

use flatcert::io::{DataOptions, load_dataset_bytes, parse_csv_matrix};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let m = parse_csv_matrix(data, "fuzz.csv");
    common::check("parse_csv_matrix", &m);
    if let Ok((values, n, d)) = &m {
        assert_eq!(values.len(), n * d, "{} values for {n} × {d}", values.len());
        assert!(
            values.iter().all(|v| v.is_finite()),
            "non-finite value accepted"
        );
    }
    let plain = DataOptions::default();
    common::check(
        "dataset x, y",
        &load_dataset_bytes(data, "x.csv", Some((data, "y.csv")), &plain),
    );
    let one_hot = DataOptions {
        one_hot: Some(4),
        x_scale: None,
        expected_dim: Some(1),
    };
    common::check(
        "dataset x, labels",
        &load_dataset_bytes(data, "x.csv", Some((data, "y.csv")), &one_hot),
    );
});
