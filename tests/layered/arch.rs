//! The architecture spec and CNN checkpoints (src/net/arch.rs, src/net/load.rs; issue 14 item
//! 2; docs/cnn.md): round trips, the documented example, and every hostile-input error naming
//! the field, tensor or layer at fault.

use std::collections::{BTreeMap, HashMap};

use flatcert::net::{
    ARCH_METADATA_KEY, ArchSource, ArchSpec, LayerSpec, Shape, Tensor, load_net, load_net_bytes,
    net_to_safetensors,
};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// A named tensor: (name, shape, values).
type Named = (String, Vec<usize>, Vec<f64>);

/// The JSON block of docs/cnn.md (VGG config 'A', 3×32×32, K = 2).
fn doc_example() -> String {
    let doc = include_str!("../../docs/cnn.md");
    let start = doc.find("```json\n").expect("docs/cnn.md has a json block") + 8;
    let end = start + doc[start..].find("```").expect("closed");
    doc[start..end].to_string()
}

/// Random F32 or F64 tensors for a spec's layers, as a PyTorch state_dict would hold them.
fn state_dict(shapes: &[(&str, Vec<usize>)], seed: u64) -> Vec<Named> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    shapes
        .iter()
        .map(|(n, s)| {
            let len: usize = s.iter().product();
            let v = (0..len)
                .map(|_| f64::from(rng.random_range(-0.5f32..0.5)))
                .collect();
            (n.to_string(), s.clone(), v)
        })
        .collect()
}

fn to_bytes(tensors: &[Named], dtype: Dtype, meta: Option<&str>) -> Vec<u8> {
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            Dtype::F32 => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&raw)
        .map(|((n, s, _), b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    let meta = meta.map(|m| HashMap::from([(ARCH_METADATA_KEY.to_string(), m.to_string())]));
    safetensors::serialize(views, meta).unwrap()
}

fn vgg_a_tensors(seed: u64) -> Vec<Named> {
    state_dict(
        &[
            ("features.0.weight", vec![16, 3, 3, 3]),
            ("features.0.bias", vec![16]),
            ("features.3.weight", vec![16, 16, 3, 3]),
            ("features.3.bias", vec![16]),
            ("features.6.weight", vec![32, 16, 3, 3]),
            ("features.6.bias", vec![32]),
            ("features.9.weight", vec![64, 32, 3, 3]),
            ("features.9.bias", vec![64]),
            ("features.12.weight", vec![64, 64, 3, 3]),
            ("features.12.bias", vec![64]),
            ("classifier.0.weight", vec![128, 64]),
            ("classifier.0.bias", vec![128]),
            ("classifier.2.weight", vec![2, 128]),
            ("classifier.2.bias", vec![2]),
        ],
        seed,
    )
}

fn err(bytes: &[u8], arch: Option<&ArchSpec>) -> String {
    load_net_bytes(bytes, "m.safetensors", arch)
        .unwrap_err()
        .to_string()
}

#[test]
fn the_documented_vgg_a_example_loads_and_round_trips() {
    let spec = ArchSpec::from_json(&doc_example()).unwrap();
    assert_eq!(spec.input_shape, Shape::Image { c: 3, h: 32, w: 32 });
    assert_eq!(spec.layers.len(), 19);
    let tensors = vgg_a_tensors(1);
    let bytes = to_bytes(&tensors, Dtype::F32, Some(&doc_example()));
    let loaded = load_net_bytes(&bytes, "vgg.safetensors", None).unwrap();
    assert_eq!(loaded.arch_source, ArchSource::Metadata);
    let net = &loaded.net;
    assert_eq!(net.output_dim(), 2);
    assert_eq!(net.shapes()[15], Shape::Image { c: 64, h: 1, w: 1 });
    // F32 → f64 is exact: θ is the state_dict in order.
    let want: Vec<f64> = tensors.iter().flat_map(|t| t.2.clone()).collect();
    assert_eq!(net.params(), want);
    // Written back (F64) and read again: identical parameters, spec and outputs.
    let bytes2 = net_to_safetensors(net, &BTreeMap::new()).unwrap();
    let again = load_net_bytes(&bytes2, "again", None).unwrap();
    assert_eq!(again.net.params(), want);
    assert_eq!(
        ArchSpec::from_json(&again.spec.to_json()).unwrap(),
        again.spec
    );
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = Tensor::new(
        2,
        net.input_shape(),
        (0..2 * 3072).map(|_| rng.random_range(-1.0..1.0)).collect(),
    )
    .unwrap();
    assert_eq!(net.forward(&x).unwrap(), again.net.forward(&x).unwrap());
    // The same spec given explicitly (as --arch) to a file without metadata.
    let bare = to_bytes(&tensors, Dtype::F32, None);
    let given = load_net_bytes(&bare, "bare", Some(&spec)).unwrap();
    assert_eq!(given.arch_source, ArchSource::Given);
    assert_eq!(given.net.params(), want);
    // And from files on disk, the spec as a separate --arch file.
    let dir = tempfile::tempdir().unwrap();
    let (mp, ap) = (
        dir.path().join("m.safetensors"),
        dir.path().join("arch.json"),
    );
    std::fs::write(&mp, &bare).unwrap();
    std::fs::write(&ap, doc_example()).unwrap();
    assert_eq!(load_net(&mp, Some(&ap)).unwrap().net.params(), want);
    let msg = load_net(&mp, None).unwrap_err().to_string();
    assert!(
        msg.contains("__metadata__.flatcert_arch") && msg.contains("--arch"),
        "{msg}"
    );
}

#[test]
fn spec_errors_name_the_field() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"batchnorm1d","name":"bn"}]}"#,
            &[
                "layers[0].type",
                "unknown layer type 'batchnorm1d'",
                "supported: conv2d, linear, batchnorm2d (eval mode), maxpool2d",
            ],
        ),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"conv2d","name":"c","kernel":3,"paddding":1}]}"#,
            &["layers[0].paddding", "unknown field", "padding"],
        ),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"conv2d","name":"c","kernel":3,"dilation":2}]}"#,
            &["layers[0].dilation", "only dilation = 1"],
        ),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"conv2d","name":"c"}]}"#,
            &["layers[0].kernel", "missing"],
        ),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"conv2d","kernel":3}]}"#,
            &["layers[0].name", "state_dict name"],
        ),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"maxpool2d","kernel":[2,0]}]}"#,
            &["layers[0].kernel", "positive"],
        ),
        (
            r#"{"input_shape":[1,8],"layers":[]}"#,
            &["input_shape", "[C, H, W]"],
        ),
        (r#"{"input_shape":[1,8,8]}"#, &["layers", "missing"]),
        (
            r#"{"input_shape":[1,8,8],"layers":[{"type":"leaky_relu","negative_slope":2}]}"#,
            &["negative_slope", "[0, 1]"],
        ),
        (r#"[1,2]"#, &["expected an object"]),
        (r#"{"input_shape":"#, &["not valid JSON"]),
    ];
    for (json, needles) in cases {
        let msg = ArchSpec::from_json(json).unwrap_err().to_string();
        for n in *needles {
            assert!(msg.contains(n), "{json}: {msg} lacks {n}");
        }
    }
    // Integer and pair forms, and PyTorch's pool default stride = kernel.
    let s = ArchSpec::from_json(r#"{"input_shape":[2,9,9],"layers":[{"type":"maxpool2d","kernel":3},{"type":"leaky_relu"}]}"#).unwrap();
    assert_eq!(
        s.layers[0],
        LayerSpec::MaxPool2d {
            kernel: (3, 3),
            stride: (3, 3)
        }
    );
}

#[test]
fn weight_errors_name_the_tensor_or_layer() {
    let spec = doc_example();
    let arch = ArchSpec::from_json(&spec).unwrap();
    let good = vgg_a_tensors(3);
    let with = |f: &dyn Fn(&mut Vec<Named>)| {
        let mut t = good.clone();
        f(&mut t);
        to_bytes(&t, Dtype::F64, Some(&spec))
    };
    // A 5×5 kernel where the spec says 3×3.
    let msg = err(
        &with(&|t| {
            t[2].1 = vec![16, 16, 5, 5];
            t[2].2 = vec![0.0; 16 * 16 * 25];
        }),
        None,
    );
    assert!(
        msg.contains("tensor 'features.3.weight'")
            && msg.contains("[16, 16, 5, 5]")
            && msg.contains("out_channels = 16"),
        "{msg}"
    );
    // Channel chain broken (features.3 takes 8 channels, features.0 produces 16): names layer 3.
    let msg = err(
        &with(&|t| {
            t[2].1 = vec![16, 8, 3, 3];
            t[2].2 = vec![0.0; 16 * 8 * 9];
        }),
        None,
    );
    assert!(
        msg.contains("layer 3 (conv2d 'features.3')")
            && msg.contains("[16, 16, 16]")
            && msg.contains("[8, H, W]"),
        "{msg}"
    );
    // Missing bias.
    let msg = err(
        &with(&|t| {
            t.remove(1);
        }),
        None,
    );
    assert!(
        msg.contains("tensor 'features.0.bias'") && msg.contains("missing"),
        "{msg}"
    );
    // Bias of the wrong length.
    let msg = err(
        &with(&|t| {
            t[1].1 = vec![15];
            t[1].2.pop();
        }),
        None,
    );
    assert!(
        msg.contains("tensor 'features.0.bias'") && msg.contains("expected [16]"),
        "{msg}"
    );
    // A left-over tensor (BatchNorm statistics).
    let msg = err(
        &with(&|t| t.push(("features.1.running_mean".into(), vec![16], vec![0.0; 16]))),
        None,
    );
    assert!(
        msg.contains("features.1.running_mean") && msg.contains("not used"),
        "{msg}"
    );
    // A classifier that does not fit the flattened features: names the linear layer.
    let msg = err(
        &with(&|t| {
            t[10].1 = vec![128, 63];
            t[10].2 = vec![0.0; 128 * 63];
        }),
        None,
    );
    assert!(
        msg.contains("layer 16 (linear 'classifier.0')")
            && msg.contains("[64]")
            && msg.contains("[63]"),
        "{msg}"
    );
    // A non-finite weight.
    let msg = err(&with(&|t| t[4].2[7] = f64::INFINITY), None);
    assert!(
        msg.contains("features.6.weight") && msg.contains("not finite"),
        "{msg}"
    );
    // Not a safetensors file; an architecture error inside the metadata names the file and field.
    assert!(err(b"garbage bytes here", None).contains("not a valid safetensors file"));
    let bad_meta = to_bytes(
        &good,
        Dtype::F64,
        Some(r#"{"input_shape":[3,32,32],"layers":[{"type":"conv3d"}]}"#),
    );
    let e = load_net_bytes(&bad_meta, "m.safetensors", None).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(
        msg.starts_with("m.safetensors: architecture layers[0].type") && msg.contains("conv3d"),
        "{msg}"
    );
    // Integer weights are refused.
    let ints = {
        let b = vec![0u8; 16 * 3 * 3 * 3 * 4];
        let v = vec![(
            "features.0.weight".to_string(),
            TensorView::new(Dtype::I32, vec![16, 3, 3, 3], &b).unwrap(),
        )];
        safetensors::serialize(v, None).unwrap()
    };
    let msg = err(&ints, Some(&arch));
    assert!(
        msg.contains("features.0.weight") && msg.contains("dtype I32"),
        "{msg}"
    );
}

/// A PyTorch `nn.Sequential(Conv2d(1, 2, 3, padding=1), BatchNorm2d(2), ReLU(), Flatten(),
/// Linear(2·4·4, 2))` state_dict as `torch.save`'s safetensors holds it: F32 floats and the step
/// counter `num_batches_tracked` as an I64 scalar.
fn batchnorm_checkpoint(spec: &str, counter: bool) -> Vec<u8> {
    let mut tensors = state_dict(
        &[
            ("0.weight", vec![2, 1, 3, 3]),
            ("0.bias", vec![2]),
            ("1.weight", vec![2]),
            ("1.bias", vec![2]),
            ("1.running_mean", vec![2]),
        ],
        7,
    );
    tensors.push(("1.running_var".into(), vec![2], vec![0.25, 2.0]));
    tensors.extend(state_dict(
        &[("4.weight", vec![2, 32]), ("4.bias", vec![2])],
        8,
    ));
    let raw: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect())
        .collect();
    let steps = 1234i64.to_le_bytes();
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&raw)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    if counter {
        views.push((
            "1.num_batches_tracked".into(),
            TensorView::new(Dtype::I64, vec![], &steps).unwrap(),
        ));
    }
    let meta = HashMap::from([(ARCH_METADATA_KEY.to_string(), spec.to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

const BN_SPEC: &str = r#"{"input_shape":[1,4,4],"layers":[
 {"type":"conv2d","name":"0","kernel":3,"padding":1},
 {"type":"batchnorm2d","name":"1","eps":1e-5,"momentum":0.1,"affine":true,"track_running_stats":true},
 {"type":"relu"},{"type":"flatten"},{"type":"linear","name":"4"}]}"#;

#[test]
fn batchnorm_checkpoints_load_in_eval_mode_and_round_trip() {
    let loaded =
        load_net_bytes(&batchnorm_checkpoint(BN_SPEC, true), "bn.safetensors", None).unwrap();
    let net = &loaded.net;
    assert_eq!(net.num_params(), 2 * 9 + 2 + 2 + 2 + 64 + 2);
    // The layer is PyTorch's eval-mode formula, checked on one input against a direct
    // evaluation (same operations in the same order: equal to the last bit).
    let bn = &net.layers()[1];
    assert_eq!(bn.kind(), "batchnorm2d");
    let x = Tensor::new(
        1,
        Shape::Image { c: 2, h: 4, w: 4 },
        (0..32).map(|i| i as f64 / 7.0 - 2.0).collect(),
    )
    .unwrap();
    let y = bn.forward(&x);
    let (p, buffers) = (bn.params(), bn.buffers());
    let (mean, var) = (&buffers[0].1, &buffers[1].1);
    for (i, (xi, yi)) in x.data.iter().zip(&y.data).enumerate() {
        let c = i / 16;
        let want = (xi - mean[c]) * (p[c] / (var[c] + 1e-5).sqrt()) + p[2 + c];
        assert_eq!(*yi, want, "entry {i}");
    }
    // Written back (F64, with the running statistics) and read again: the same network.
    let bytes = net_to_safetensors(net, &BTreeMap::new()).unwrap();
    let again = load_net_bytes(&bytes, "again", None).unwrap();
    assert_eq!(again.net.params(), net.params());
    assert_eq!(again.net.layers()[1].buffers(), bn.buffers());
    assert_eq!(again.spec, ArchSpec::of(net));
    // Byte-deterministic (the same checkpoint has one SHA-256): with several metadata keys, a
    // HashMap-ordered header would differ between two writes.
    let meta: BTreeMap<String, String> = (0..8).map(|i| (format!("k{i}"), i.to_string())).collect();
    assert_eq!(
        net_to_safetensors(net, &meta).unwrap(),
        net_to_safetensors(net, &meta).unwrap()
    );
    // Without the step counter it loads as well; a counter of a layer that is not a batch
    // normalization is a left-over tensor.
    assert!(load_net_bytes(&batchnorm_checkpoint(BN_SPEC, false), "b", None).is_ok());
    let renamed = BN_SPEC.replace(r#""name":"1""#, r#""name":"bn""#);
    let msg = err(&batchnorm_checkpoint(&renamed, true), None);
    assert!(
        msg.contains("tensor 'bn.weight'") && msg.contains("missing"),
        "{msg}"
    );
    // Train-mode statistics and non-affine batch normalization are refused by field.
    for (field, spec) in [
        (
            "track_running_stats",
            BN_SPEC.replace(
                r#""track_running_stats":true"#,
                r#""track_running_stats":false"#,
            ),
        ),
        (
            "affine",
            BN_SPEC.replace(r#""affine":true"#, r#""affine":false"#),
        ),
        ("eps", BN_SPEC.replace(r#""eps":1e-5"#, r#""eps":-1"#)),
    ] {
        let msg = err(&batchnorm_checkpoint(&spec, true), None);
        assert!(
            msg.contains(&format!("layers[1].{field}")),
            "{field}: {msg}"
        );
    }
    // A negative running variance names the tensor.
    let mut t = state_dict(&[("0.weight", vec![2, 1, 3, 3]), ("0.bias", vec![2])], 1);
    t.extend([
        ("1.weight".to_string(), vec![2], vec![1.0, 1.0]),
        ("1.bias".to_string(), vec![2], vec![0.0, 0.0]),
        ("1.running_mean".to_string(), vec![2], vec![0.0, 0.0]),
        ("1.running_var".to_string(), vec![2], vec![1.0, -0.5]),
    ]);
    t.extend(state_dict(
        &[("4.weight", vec![2, 32]), ("4.bias", vec![2])],
        2,
    ));
    let msg = err(&to_bytes(&t, Dtype::F64, Some(BN_SPEC)), None);
    assert!(
        msg.contains("1.running_var") && msg.contains("≥ 0"),
        "{msg}"
    );
    // Training a spec with batch normalization is refused (train mode is not model S).
    let spec = ArchSpec::from_json(
        BN_SPEC
            .replace(r#""name":"0""#, r#""name":"0","out_channels":2"#)
            .replace(r#""name":"4""#, r#""name":"4","out_features":2"#)
            .as_str(),
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let e = flatcert::train::init_net_pytorch_default(&spec, &mut rng)
        .unwrap_err()
        .to_string();
    assert!(e.contains("batchnorm2d") && e.contains("eval mode"), "{e}");
    assert!(matches!(spec.layers[1], LayerSpec::BatchNorm2d { .. }));
}

#[test]
fn batchnorm_as_the_first_layer_is_refused_for_t1b() {
    let spec = r#"{"input_shape":[2,4,4],"layers":[
     {"type":"batchnorm2d","name":"0"},{"type":"flatten"},{"type":"linear","name":"2"}]}"#;
    let t = state_dict(
        &[
            ("0.weight", vec![2]),
            ("0.bias", vec![2]),
            ("0.running_mean", vec![2]),
        ],
        3,
    );
    let mut t = t;
    t.push(("0.running_var".into(), vec![2], vec![1.0, 1.0]));
    t.extend(state_dict(
        &[("2.weight", vec![2, 32]), ("2.bias", vec![2])],
        4,
    ));
    let net = load_net_bytes(&to_bytes(&t, Dtype::F64, Some(spec)), "m", None)
        .unwrap()
        .net;
    let x = Tensor::new(1, net.input_shape(), vec![0.5; 32]).unwrap();
    let e = flatcert::net::per_sample_stats(&net, &x, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batchnorm2d") && e.contains("bilinear first layer"),
        "{e}"
    );
}
