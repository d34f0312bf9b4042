//! Fuzz the safetensors checkpoint loader (`flatcert::io::load_checkpoint_bytes`): layer
//! detection by name, explicit `--layers`, and the writer round trip of anything accepted.
#![no_main]

use std::collections::BTreeMap;

use flatcert::io::{CheckpointOptions, SaveDtype, checkpoint_to_bytes, load_checkpoint_bytes};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const NAME: &str = "fuzz.safetensors";

fuzz_target!(|data: &[u8]| {
    let detected = load_checkpoint_bytes(data, NAME, &CheckpointOptions::default());
    common::check("detected layers", &detected);
    let explicit = CheckpointOptions {
        layers: Some(vec!["0".into(), "net".into(), "fc".into()]),
        activation: None,
    };
    common::check(
        "explicit layers",
        &load_checkpoint_bytes(data, NAME, &explicit),
    );
    // Whatever is accepted must survive our own writer and reader unchanged.
    if let Ok(c) = detected {
        let bytes = checkpoint_to_bytes(&c.mlp, &BTreeMap::new(), SaveDtype::F64)
            .expect("an accepted checkpoint re-serializes as F64");
        let again = load_checkpoint_bytes(&bytes, NAME, &CheckpointOptions::default())
            .expect("a re-serialized checkpoint loads");
        assert_eq!(again.mlp, c.mlp, "F64 round trip changed the network");
    }
});
