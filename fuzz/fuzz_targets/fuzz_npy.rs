//! Fuzz the `.npy` reader: `parse_npy`, `parse_npy_matrix`, `parse_npy_labels`, and the data set
//! builder on `.npy` inputs (real targets and `--one-hot` labels).
#![no_main]

use flatcert::io::{
    DataOptions, load_dataset_bytes, parse_npy, parse_npy_labels, parse_npy_matrix,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let any = parse_npy(data, "fuzz.npy");
    common::check("parse_npy", &any);
    if let Ok(a) = &any {
        let count: usize = a.shape.iter().product();
        assert_eq!(a.data.len(), count, "element count differs from the shape");
    }
    common::check("parse_npy_matrix", &parse_npy_matrix(data, "fuzz.npy"));
    common::check("parse_npy_labels", &parse_npy_labels(data, "fuzz.npy"));
    let plain = DataOptions::default();
    common::check(
        "dataset x, y",
        &load_dataset_bytes(data, "x.npy", Some((data, "y.npy")), &plain),
    );
    let one_hot = DataOptions {
        one_hot: Some(10),
        x_scale: Some(0.0625),
        expected_dim: None,
    };
    common::check(
        "dataset x, labels",
        &load_dataset_bytes(data, "x.npy", Some((data, "y.npy")), &one_hot),
    );
});
