//! Tests of checkpoint loading and saving: round trips for every dtype, layer naming and
//! ordering, activation sources, and every kind of bad input.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;

const FILE: &str = "m.safetensors";

type Spec = (String, Dtype, Vec<usize>, Vec<u8>);

fn enc(dtype: Dtype, v: &[f64]) -> Vec<u8> {
    match dtype {
        Dtype::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F32 => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f64(*x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|x| half::bf16::from_f64(*x).to_le_bytes())
            .collect(),
        Dtype::I64 => v.iter().flat_map(|x| (*x as i64).to_le_bytes()).collect(),
        Dtype::I32 => v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect(),
        other => panic!("test encoder lacks {other}"),
    }
}

fn t(name: &str, dtype: Dtype, shape: &[usize], v: &[f64]) -> Spec {
    (name.to_string(), dtype, shape.to_vec(), enc(dtype, v))
}

/// A safetensors file written by the `safetensors` crate itself.
fn st(tensors: &[Spec], meta: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = (!meta.is_empty()).then(|| {
        meta.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    safetensors::serialize(views, meta).unwrap()
}

/// Dense-layer tensors `<stem>.weight` [w_{j+1}, w_j] and `<stem>.bias` with small exact values.
fn mlp_specs(stems: &[&str], widths: &[usize], dtype: Dtype) -> Vec<Spec> {
    let mut out = Vec::new();
    for (j, stem) in stems.iter().enumerate() {
        let (i, o) = (widths[j], widths[j + 1]);
        let w: Vec<f64> = (0..o * i)
            .map(|k| (k as f64 - 3.0) / 8.0 + j as f64)
            .collect();
        let b: Vec<f64> = (0..o).map(|k| k as f64 / 4.0 - 0.5).collect();
        out.push(t(&format!("{stem}.weight"), dtype, &[o, i], &w));
        out.push(t(&format!("{stem}.bias"), dtype, &[o], &b));
    }
    out
}

/// A file with a hand-written JSON header (8-byte aligned like the reference writer).
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn load(bytes: &[u8]) -> Result<LoadedCheckpoint> {
    load_checkpoint_bytes(bytes, FILE, &CheckpointOptions::default())
}

fn layers_opt(list: &[&str]) -> CheckpointOptions {
    CheckpointOptions {
        layers: Some(list.iter().map(|s| s.to_string()).collect()),
        activation: None,
    }
}

fn err(bytes: &[u8]) -> String {
    let e = load(bytes).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().starts_with(FILE), "{e}");
    e.to_string()
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks {p:?}: {msg}");
    }
}

#[test]
fn every_float_dtype_converts_exactly() {
    // Values at the extremes of each format, exactly representable in it.
    let cases: [(Dtype, [f64; 4]); 4] = [
        (Dtype::F16, [2f64.powi(-24), 65504.0, -0.333251953125, 1.0]),
        (
            Dtype::BF16,
            [2f64.powi(-133), 3.3895313892515355e38, -0.333984375, 1.0],
        ),
        (
            Dtype::F32,
            [
                2f64.powi(-149),
                f64::from(f32::MAX),
                f64::from(0.1f32),
                -1.0,
            ],
        ),
        (Dtype::F64, [2f64.powi(-1074), f64::MAX, 0.1, -1.0 / 3.0]),
    ];
    for (dtype, w) in cases {
        let bytes = st(
            &[
                t("0.weight", dtype, &[2, 2], &w),
                t("0.bias", dtype, &[2], &w[2..]),
            ],
            &[],
        );
        let c = load(&bytes).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let l = &c.mlp.layers()[0];
        assert_eq!(l.weight.transpose().as_slice(), &w, "{dtype}");
        assert_eq!(l.bias.as_slice(), &w[2..], "{dtype}");
    }
}

#[test]
fn weight_layout_is_row_major_out_by_in() {
    let bytes = st(&mlp_specs(&["0", "2"], &[3, 2, 1], Dtype::F32), &[]);
    let c = load(&bytes).unwrap();
    assert_eq!(c.mlp.widths(), vec![3, 2, 1]);
    let w = &c.mlp.layers()[0].weight;
    // Row-major values (k − 3)/8: row 1 starts at k = 3.
    assert_eq!((w[(0, 1)], w[(1, 0)]), (-2.0 / 8.0, 0.0));
    assert_eq!(c.layer_names, vec!["0", "2"]);
    assert_eq!(c.activation_source, ActivationSource::Default);
    assert_eq!(c.mlp.activation(), Activation::Relu);
}

#[test]
fn save_load_round_trip_f64_exact_and_f32_rounded() {
    let mlp = crate::testutil::random_mlp(&[5, 4, 3, 2], Activation::Tanh, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let meta = BTreeMap::from([("lr".to_string(), "0.1".to_string())]);
    save_checkpoint(&path, &mlp, &meta, SaveDtype::F64).unwrap();
    let c = load_checkpoint(&path, &CheckpointOptions::default()).unwrap();
    assert_eq!(c.mlp, mlp);
    assert_eq!(c.layer_names, vec!["0", "2", "4"]);
    assert_eq!(c.activation_source, ActivationSource::Metadata);
    assert_eq!(c.metadata.get("lr").map(String::as_str), Some("0.1"));
    assert_eq!(
        c.metadata.get("activation").map(String::as_str),
        Some("tanh")
    );
    assert_eq!(c.metadata.get("format").map(String::as_str), Some("pt"));
    // The reference reader accepts the file and sees PyTorch names.
    let bytes = std::fs::read(&path).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = parsed.names();
    names.sort();
    assert_eq!(
        names,
        [
            "0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"
        ]
    );
    assert_eq!(parsed.tensor("2.weight").unwrap().shape(), &[3, 4]);

    save_checkpoint(&path, &mlp, &BTreeMap::new(), SaveDtype::F32).unwrap();
    let c = load_checkpoint(&path, &CheckpointOptions::default()).unwrap();
    let rounded: Vec<f64> = mlp
        .params_flat()
        .iter()
        .map(|v| f64::from(*v as f32))
        .collect();
    assert_eq!(c.mlp.params_flat(), rounded);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn leaky_relu_alpha_survives_metadata() {
    let mlp = crate::testutil::random_mlp(&[2, 3, 1], Activation::LeakyRelu { alpha: 0.2 }, 1);
    let bytes = checkpoint_to_bytes(&mlp, &BTreeMap::new(), SaveDtype::F64).unwrap();
    assert_eq!(
        load(&bytes).unwrap().mlp.activation(),
        Activation::LeakyRelu { alpha: 0.2 }
    );
}

#[test]
fn fc_names_are_ordered_numerically() {
    // Widths all differ, so any other order would fail to chain.
    let stems: Vec<String> = (1..=11).map(|i| format!("fc{i}")).collect();
    let refs: Vec<&str> = stems.iter().map(String::as_str).collect();
    let widths: Vec<usize> = (1..=12).collect();
    let c = load(&st(&mlp_specs(&refs, &widths, Dtype::F32), &[])).unwrap();
    assert_eq!(c.layer_names, stems);
    assert_eq!(c.mlp.widths(), widths);
}

#[test]
fn sequential_and_prefixed_names() {
    let c = load(&st(
        &mlp_specs(&["net.0", "net.2", "net.4"], &[4, 3, 2, 1], Dtype::F16),
        &[],
    ))
    .unwrap();
    assert_eq!(c.layer_names, vec!["net.0", "net.2", "net.4"]);
    // Numeric, not lexicographic: "2" before "10".
    let c = load(&st(&mlp_specs(&["2", "10"], &[2, 3, 1], Dtype::F64), &[])).unwrap();
    assert_eq!(c.layer_names, vec!["2", "10"]);
}

#[test]
fn explicit_layers_by_name_weight_name_and_prefix() {
    let mut specs = mlp_specs(&["encoder", "decoder"], &[3, 2, 1], Dtype::F32);
    specs.push(t("bn.running_mean", Dtype::F32, &[2], &[0.0, 0.0]));
    let bytes = st(&specs, &[]);
    let e = err(&bytes);
    assert_has(
        &e,
        &[
            "tensor 'bn.running_mean'",
            "not a plain dense MLP",
            "--layers",
        ],
    );
    let c =
        load_checkpoint_bytes(&bytes, FILE, &layers_opt(&["encoder", "decoder.weight"])).unwrap();
    assert_eq!(c.layer_names, vec!["encoder", "decoder"]);
    assert_eq!(c.ignored_tensors, vec!["bn.running_mean"]);
    assert_eq!(c.mlp.widths(), vec![3, 2, 1]);

    let bytes = st(
        &mlp_specs(&["body.0", "body.2", "head"], &[3, 4, 2, 1], Dtype::F32),
        &[],
    );
    let c = load_checkpoint_bytes(&bytes, FILE, &layers_opt(&["body", "head"])).unwrap();
    assert_eq!(c.layer_names, vec!["body.0", "body.2", "head"]);

    let e = load_checkpoint_bytes(&bytes, FILE, &layers_opt(&["body", "tail"]))
        .unwrap_err()
        .to_string();
    assert_has(&e, &["--layers", "'tail' matches no tensor", "head.weight"]);
    let e = load_checkpoint_bytes(&bytes, FILE, &layers_opt(&["head", "head"]))
        .unwrap_err()
        .to_string();
    assert_has(&e, &["'head' is selected twice"]);
}

#[test]
fn activation_from_flag_metadata_or_default() {
    let specs = mlp_specs(&["0", "2"], &[2, 2, 1], Dtype::F32);
    let c = load(&st(&specs, &[("activation", "tanh")])).unwrap();
    assert_eq!(
        (c.mlp.activation(), c.activation_source),
        (Activation::Tanh, ActivationSource::Metadata)
    );
    let opts = CheckpointOptions {
        layers: None,
        activation: Some(Activation::Sigmoid),
    };
    let c = load_checkpoint_bytes(&st(&specs, &[("activation", "tanh")]), FILE, &opts).unwrap();
    assert_eq!(
        (c.mlp.activation(), c.activation_source.as_str()),
        (Activation::Sigmoid, "flag")
    );
    let c = load(&st(&specs, &[("format", "pt")])).unwrap();
    assert_eq!(
        (c.mlp.activation(), c.activation_source.to_string()),
        (Activation::Relu, "default".into())
    );
    let e = err(&st(&specs, &[("activation", "gelu")]));
    assert_has(&e, &["__metadata__.activation", "'gelu'", "relu"]);
}

// ---- bad input: one test per kind ----

#[test]
fn bad_missing_file() {
    let e = load_checkpoint(
        Path::new("/nonexistent/model.safetensors"),
        &CheckpointOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().contains("/nonexistent/model.safetensors"),
        "{e}"
    );
}

#[test]
fn bad_not_safetensors() {
    assert_has(
        &err(b"PK\x03\x04 this is a zip file, not safetensors"),
        &["header", "not a safetensors file"],
    );
    assert_has(&err(b"abc"), &["not a safetensors file", "only 3 bytes"]);
    assert_has(&err(&raw("[1, 2, 3]", &[])), &["not a safetensors file"]);
    assert_has(
        &err(&raw("{\"a\": 1}", &[])),
        &["tensor 'a'", "not an object"],
    );
    assert_has(&err(&raw("{\"a\": ", &[])), &["JSON header is malformed"]);
}

#[test]
fn bad_truncated_file() {
    let bytes = st(&mlp_specs(&["0", "2"], &[3, 2, 1], Dtype::F32), &[]);
    let e = err(&bytes[..bytes.len() - 5]);
    let total = (6 + 2 + 2 + 1) * 4;
    assert_has(
        &e,
        &[
            "data: file truncated",
            &format!("describes {total} bytes"),
            &format!("only {} are present", total - 5),
        ],
    );
    assert_has(&err(&bytes[..8]), &["truncated"]);
}

#[test]
fn bad_header_length_beyond_file() {
    let mut bytes = st(&mlp_specs(&["0"], &[2, 1], Dtype::F32), &[]);
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert_has(
        &err(&bytes),
        &[
            "header length",
            "1099511627776",
            "beyond the end of the file",
        ],
    );
    // Truncated inside the header.
    let bytes = st(&mlp_specs(&["0"], &[2, 1], Dtype::F32), &[]);
    assert_has(&err(&bytes[..20]), &["header length", "beyond the end"]);
}

#[test]
fn bad_tensor_offsets_beyond_file() {
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[4096,4104]},"0.bias":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    assert_has(
        &err(&raw(h, &[0; 12])),
        &[
            "tensor '0.weight'",
            "[4096, 4104]",
            "beyond the end of the file",
            "12 bytes",
        ],
    );
}

#[test]
fn bad_size_overlap_gap_and_trailing() {
    let h = r#"{"0.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#;
    assert_has(
        &err(&raw(h, &[0; 8])),
        &[
            "tensor '0.weight'",
            "[2, 2] of F32 needs 16 bytes",
            "span 8",
        ],
    );
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"0.bias":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#;
    assert_has(
        &err(&raw(h, &[0; 8])),
        &["tensor '0.bias'", "overlap tensor '0.weight'"],
    );
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"0.bias":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
    assert_has(
        &err(&raw(h, &[0; 12])),
        &["tensor '0.bias'", "gap of 4 bytes"],
    );
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"0.bias":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    assert_has(
        &err(&raw(h, &[0; 11])),
        &["data", "3 bytes follow the last tensor"],
    );
    let h = r#"{"0.weight":{"dtype":"Q7","shape":[1,1],"data_offsets":[0,4]}}"#;
    assert_has(
        &err(&raw(h, &[0; 4])),
        &["tensor '0.weight'", "unknown dtype \"Q7\""],
    );
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,-1],"data_offsets":[0,4]}}"#;
    assert_has(
        &err(&raw(h, &[0; 4])),
        &["tensor '0.weight'", "'shape' must be"],
    );
    let h = r#"{"0.weight":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#;
    assert_has(&err(&raw(h, &[0; 4])), &["too large"]);
}

#[test]
fn bad_duplicate_names() {
    let h = r#"{"0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8]}}"#;
    assert_has(
        &err(&raw(h, &[0; 8])),
        &["tensor '0.weight'", "duplicate tensor name"],
    );
}

#[test]
fn bad_shapes_do_not_chain() {
    let mut specs = mlp_specs(&["net.0"], &[4, 3], Dtype::F32);
    specs.extend(mlp_specs(&["net.2"], &[5, 2], Dtype::F32));
    let e = err(&st(&specs, &[]));
    assert_has(
        &e,
        &[
            "tensor 'net.2.weight'",
            "[2, 5]",
            "'net.0.weight'",
            "[3, 4]",
            "expected 3 input columns",
        ],
    );
}

#[test]
fn bad_missing_bias() {
    let mut specs = mlp_specs(&["0", "2"], &[3, 2, 1], Dtype::F32);
    specs.retain(|s| s.0 != "2.bias");
    let e = err(&st(&specs, &[]));
    assert_has(
        &e,
        &["tensor '2.bias'", "missing", "shape [1]", "'2.weight'"],
    );
    // A bias of the wrong length.
    let mut specs = mlp_specs(&["0"], &[3, 2], Dtype::F32);
    specs[1] = t("0.bias", Dtype::F32, &[3], &[0.0; 3]);
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '0.bias'", "shape [3]", "expected [2]"],
    );
}

#[test]
fn bad_integer_weights() {
    let mut specs = mlp_specs(&["0"], &[2, 2], Dtype::F32);
    specs[0] = t("0.weight", Dtype::I64, &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '0.weight'", "dtype I64", "integer weights"],
    );
    let mut specs = mlp_specs(&["0"], &[2, 2], Dtype::F32);
    specs[1] = t("0.bias", Dtype::I32, &[2], &[1.0, 2.0]);
    assert_has(&err(&st(&specs, &[])), &["tensor '0.bias'", "dtype I32"]);
}

#[test]
fn bad_nonfinite_weights_name_the_index() {
    let mut specs = mlp_specs(&["0", "2"], &[3, 2, 1], Dtype::F32);
    let mut w = vec![0.5; 6];
    w[4] = f64::NAN;
    specs[0] = t("0.weight", Dtype::F32, &[2, 3], &w);
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '0.weight'[1, 1]", "NaN is not finite"],
    );
    specs[0] = t("0.weight", Dtype::F32, &[2, 3], &[0.5; 6]);
    specs[3] = t("2.bias", Dtype::BF16, &[1], &[f64::INFINITY]);
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '2.bias'[0]", "inf is not finite"],
    );
}

#[test]
fn bad_tensors_that_do_not_fit_a_dense_mlp() {
    let mut specs = mlp_specs(&["1"], &[27, 2], Dtype::F32);
    specs.push(t("0.weight", Dtype::F32, &[16, 3, 3, 3], &[0.0; 432]));
    specs.push(t("0.bias", Dtype::F32, &[16], &[0.0; 16]));
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '0.weight'", "rank 4", "not a plain dense MLP"],
    );
    let mut specs = mlp_specs(&["0", "2"], &[2, 2, 1], Dtype::F32);
    specs.push(t("1.running_mean", Dtype::F32, &[2], &[0.0; 2]));
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '1.running_mean'", "--layers"],
    );
    let mut specs = mlp_specs(&["0"], &[2, 2], Dtype::F32);
    specs.push(t("5.bias", Dtype::F32, &[2], &[0.0; 2]));
    assert_has(
        &err(&st(&specs, &[])),
        &["tensor '5.bias'", "no weight '5.weight'"],
    );
    let specs = mlp_specs(&["hidden.0", "head.1"], &[2, 2, 1], Dtype::F32);
    assert_has(&err(&st(&specs, &[])), &["prefix", "ambiguous"]);
    let specs = mlp_specs(&["fc1", "fc01"], &[2, 2, 1], Dtype::F32);
    assert_has(&err(&st(&specs, &[])), &["layer index 1 is also used"]);
    assert_has(
        &err(&st(&[], &[("activation", "relu")])),
        &["tensors: no dense layer weights"],
    );
}

#[test]
fn byte_mutations_never_panic() {
    use rand::rngs::ChaCha8Rng;
    use rand::{RngExt, SeedableRng};
    let valid = st(
        &mlp_specs(&["0", "2"], &[3, 2, 2], Dtype::F32),
        &[("activation", "tanh")],
    );
    let header_end = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
    let explicit = layers_opt(&["0", "2"]);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut oks = 0;
    for round in 0..2000 {
        let mut b = valid.clone();
        match round % 5 {
            0 => b.truncate(rng.random_range(0..valid.len())),
            1 => {
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..b.len());
                    b[i] = rng.random();
                }
            }
            2 => {
                let n: u64 = match rng.random_range(0..3) {
                    0 => rng.random(),
                    1 => (header_end as u64 - 8)
                        .wrapping_add(rng.random_range(0..16))
                        .wrapping_sub(8),
                    _ => rng.random_range(0..valid.len() as u64),
                };
                b[..8].copy_from_slice(&n.to_le_bytes());
            }
            3 => {
                // Printable edits inside the JSON header (digits, quotes, brackets …).
                let i = rng.random_range(8..header_end);
                b[i] = *b"0123456789[]{},:\"-eE. x"
                    .get(rng.random_range(0..23))
                    .unwrap();
            }
            _ => {
                let i = rng.random_range(header_end..b.len());
                b[i] = rng.random();
            }
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            let a = load(&b).is_ok();
            let _ = load_checkpoint_bytes(&b, FILE, &explicit);
            a
        }));
        match r {
            Ok(ok) => oks += usize::from(ok),
            Err(_) => panic!("panic on mutation round {round}"),
        }
    }
    // Data-only byte flips usually still load: the loop exercised both outcomes.
    assert!(oks > 0);
}
