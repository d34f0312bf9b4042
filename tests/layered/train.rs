//! `flatcert train --arch` end to end (issue 14 item 5): a CNN trained by plain SGD (model S),
//! written as a safetensors checkpoint with the architecture and the training metadata, and the
//! bad-input contract (exit code 2 naming the file, field or flag).

use std::path::{Path, PathBuf};

use crate::common::*;
use assert_cmd::Command;
use flatcert::testutil::random_data;
use serde_json::Value;

const SPEC: &str = r#"{"input_shape":[1,6,6],"layers":[
  {"type":"conv2d","name":"features.0","out_channels":3,"kernel":3,"padding":1},{"type":"relu"},
  {"type":"maxpool2d","kernel":2},{"type":"flatten"},
  {"type":"linear","name":"classifier","out_features":2}]}"#;

/// 16 random 1×6×6 images (flat rows of 36) and two smooth targets.
fn data(fx: &Fx) -> (PathBuf, PathBuf, PathBuf) {
    let n = 16;
    let x = random_data(36, n, 11);
    let y: Vec<f64> = x
        .as_slice()
        .chunks(36)
        .flat_map(|im| [im[..18].iter().sum::<f64>() / 18.0, 0.5 * im[7].sin()])
        .collect();
    (
        fx.npy("x.npy", x.as_slice(), n, 36),
        fx.npy("y.npy", &y, n, 2),
        fx.bytes("arch.json", SPEC.as_bytes()),
    )
}

fn train(x: &Path, y: &Path, arch: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = flatcert();
    cmd.arg("train")
        .arg("--x")
        .arg(x)
        .arg("--y")
        .arg(y)
        .arg("--arch")
        .arg(arch)
        .args([
            "--lr", "0.05", "--batch", "4", "--steps", "100", "--seed", "3",
        ])
        .arg("--quiet")
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

#[test]
fn train_arch_writes_a_loadable_cnn_checkpoint_with_metadata() {
    let fx = Fx::new();
    let (x, y, arch) = data(&fx);
    let m = fx.out("cnn.safetensors");
    let out = train(&x, &y, &arch, &m, &["--input-shape", "1,6,6"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout} {:?}", out.stderr);
    assert!(stdout.contains("final train loss"), "{stdout}");
    let meta = safetensors_metadata(&m);
    let get = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(get("lr"), "0.05");
    assert_eq!(get("lr_convention"), "theory");
    assert_eq!(get("batch"), "4");
    assert_eq!(get("steps"), "100");
    assert_eq!(get("seed"), "3");
    assert_eq!(get("sampling"), "iid_subsets");
    assert_eq!(get("init"), "pytorch_default");
    // conv 3·9 + 3, linear 2·27 + 2.
    assert_eq!(get("params"), "86");
    let loaded = flatcert::net::load_net(&m, None).expect("the checkpoint loads from its metadata");
    assert_eq!(loaded.net.num_params(), 86);
    assert_eq!(loaded.spec.input_shape.dims(), vec![1, 6, 6]);
    // The recorded loss is the loss of the saved weights (same blocks, same order: bit-equal).
    let ds = flatcert::io::load_dataset(&x, Some(&y), &Default::default()).unwrap();
    let loss = flatcert::train::net_dataset_loss(&loaded.net, &ds).unwrap();
    assert_eq!(get("final_train_loss").parse::<f64>().unwrap(), loss);
    // Same seed → the same bytes.
    let m2 = fx.out("cnn2.safetensors");
    let st = train(&x, &y, &arch, &m2, &[]).output().unwrap().status;
    assert!(st.success());
    assert!(std::fs::read(&m).unwrap() == std::fs::read(&m2).unwrap());
}

#[test]
fn train_arch_bad_inputs_exit_2_naming_the_culprit() {
    let fx = Fx::new();
    let (x, y, arch) = data(&fx);
    let m = fx.out("m.safetensors");
    // A spec field that is wrong: named with the file.
    let bad = fx.bytes(
        "bad.json",
        SPEC.replace("\"kernel\":3,", "\"kernal\":3,").as_bytes(),
    );
    expect_bad_input(
        &mut train(&x, &y, &bad, &m, &[]),
        &[&shown(&bad), "layers[0].kernal"],
    );
    // No out_channels: training cannot initialize the layer.
    let bad = fx.bytes(
        "noout.json",
        SPEC.replace("\"out_channels\":3,", "").as_bytes(),
    );
    expect_bad_input(
        &mut train(&x, &y, &bad, &m, &[]),
        &[&shown(&bad), "layers[0].out_channels"],
    );
    // --input-shape disagrees with the spec.
    expect_bad_input(
        &mut train(&x, &y, &arch, &m, &["--input-shape", "1,36,1"]),
        &["--input-shape", "[1, 6, 6]"],
    );
    // Data of the wrong per-sample size.
    let x5 = fx.npy("x5.npy", &vec![0.5; 16 * 35], 16, 35);
    expect_bad_input(
        &mut train(&x5, &y, &arch, &m, &[]),
        &[&shown(&x5), "[1, 6, 6]"],
    );
    // --sizes with --arch is a usage error.
    let (code, _, _) = run_cmd(&mut train(&x, &y, &arch, &m, &["--sizes", "36,2"]));
    assert_eq!(code, 2);
    fx.assert_no_output();
}
