//! Deterministic byte-mutation test of every file reader (issue 6 item 1), the CI-sized companion
//! of the coverage-guided fuzzers in `fuzz/` (docs/fuzzing.md).
//!
//! For each reader — safetensors checkpoint, `.npy`, `.csv`, measurements document, certificate —
//! valid seed files are mutated a few thousand times with a fixed-seed xorshift generator (bit
//! flips, bytes set to 0/0xFF/random, truncation, insertion, duplicated and deleted chunks, edits
//! of the binary length fields, format tokens, and for JSON also edits of single values of the
//! parsed tree). Every mutant must give `Ok` or a one-line bad-input error (exit code 2), never a
//! panic; a failure prints the mutant as hex. The crashers the fuzzers found are replayed from
//! `tests/data/fuzz_regressions/<target>/`.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use flatcert::certify::bound::read_source;
use flatcert::certify::verify::{plan_of, recheck_arithmetic};
use flatcert::certify::{Certificate, Plan, Provenance, run};
use flatcert::io::{
    CheckpointOptions, DataOptions, SaveDtype, checkpoint_to_bytes, load_checkpoint_bytes,
    load_dataset_bytes, npy_matrix_bytes, parse_csv_matrix, parse_npy, parse_npy_labels,
    parse_npy_matrix,
};
use flatcert::measurements::{InputFile, MEASUREMENTS_SCHEMA, MeasurementInputs, MeasurementsDoc};
use flatcert::model::{Activation, Dense, Mlp};
use flatcert::testutil::{random_data, random_mlp};
use flatcert::{Dataset, Error};
use nalgebra::{dmatrix, dvector};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness and mutations.

/// xorshift64* (Vigna): tiny, fixed, independent of any crate's version.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a format looks like to the mutator.
struct Format {
    /// Little-endian length fields `(offset, width)` of the binary framing.
    length_fields: &'static [(usize, usize)],
    /// Tokens of the format, written over or inserted at random places.
    tokens: &'static [&'static [u8]],
}

const SAFETENSORS: Format = Format {
    length_fields: &[(0, 8)],
    tokens: &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"0",
        b"-1",
        b"1e999",
        b"18446744073709551615",
        b"4294967296",
        b"\"F64\"",
        b"\"BF16\"",
        b"\"I64\"",
        b"\"BOOL\"",
        b"\"F8_E4M3\"",
        b"\"shape\"",
        b"\"dtype\"",
        b"\"data_offsets\"",
        b"\"__metadata__\"",
        b".weight",
        b".bias",
        b"null",
        b"[]",
        b"{}",
    ],
};

const NPY: Format = Format {
    // Version 1.0 has a 2-byte header length at 8, versions 2.0/3.0 a 4-byte one; byte 6 is the
    // major version.
    length_fields: &[(8, 2), (8, 4), (6, 1)],
    tokens: &[
        b"(",
        b")",
        b"[",
        b"]",
        b",",
        b":",
        b"'",
        b"{",
        b"}",
        b"0",
        b"-1",
        b"1L",
        b"()",
        b"18446744073709551616",
        b"99999999999",
        b"True",
        b"False",
        b"None",
        b"'<f8'",
        b"'>i2'",
        b"'|u1'",
        b"'<f2'",
        b"'|b1'",
        b"'<c16'",
        b"'descr'",
        b"'shape'",
        b"'fortran_order'",
        b"\\",
        b"\n",
        b"\x93NUMPY\x03\x00",
    ],
};

const CSV: Format = Format {
    length_fields: &[],
    tokens: &[
        b",",
        b";",
        b"\t",
        b"\n",
        b"\r\n",
        b"\"",
        b" ",
        b"-",
        b"e",
        b"E",
        b".",
        b"nan",
        b"inf",
        b"-Infinity",
        b"1e309",
        b"1e-400",
        b"0x10",
        b"\xef\xbb\xbf",
        b"\xff",
        b"",
        b"1,2,3",
    ],
};

const JSON: Format = Format {
    length_fields: &[],
    tokens: &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"0",
        b"-1",
        b"1e999",
        b"-0",
        b"1e-400",
        b"18446744073709551616",
        b"null",
        b"true",
        b"\"+inf\"",
        b"\"-inf\"",
        b"\"NaN\"",
        b"\"T11\"",
        b"\"value\"",
        b"\"tol\"",
        b"\"kind\"",
        b"\"schema\"",
        b"\\u0000",
        b"\\ud800",
    ],
};

/// One random edit of `b`; returns a short description for failure messages.
fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, f: &Format) -> String {
    if b.is_empty() {
        b.push(rng.byte());
        return "push".into();
    }
    let i = rng.below(b.len());
    match rng.below(11) {
        0 => {
            let bit = rng.below(8);
            b[i] ^= 1 << bit;
            format!("flip bit {bit} of byte {i}")
        }
        1 => {
            b[i] = 0;
            format!("byte {i} = 0")
        }
        2 => {
            b[i] = 0xFF;
            format!("byte {i} = 0xFF")
        }
        3 => {
            b[i] = rng.byte();
            format!("byte {i} random")
        }
        4 => {
            b.truncate(i);
            format!("truncate to {i}")
        }
        5 => {
            let k = 1 + rng.below(16);
            let ins: Vec<u8> = (0..k).map(|_| rng.byte()).collect();
            b.splice(i..i, ins);
            format!("insert {k} random bytes at {i}")
        }
        6 => {
            let len = 1 + rng.below((b.len() - i).min(256));
            let chunk = b[i..i + len].to_vec();
            let at = rng.below(b.len() + 1);
            b.splice(at..at, chunk);
            format!("duplicate {i}..{} at {at}", i + len)
        }
        7 => {
            let len = 1 + rng.below((b.len() - i).min(64));
            b.drain(i..i + len);
            format!("delete {i}..{}", i + len)
        }
        8 if !f.length_fields.is_empty() => {
            let &(off, width) = rng.pick(f.length_fields);
            if b.len() < off + width {
                return "length field beyond the end".into();
            }
            let mut le = [0u8; 8];
            le[..width].copy_from_slice(&b[off..off + width]);
            let old = u64::from_le_bytes(le);
            let max = if width == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * width)) - 1
            };
            let new = match rng.below(6) {
                0 => 0,
                1 => max,
                2 => old.wrapping_add(1 + rng.below(16) as u64),
                3 => old.wrapping_sub(1 + rng.below(16) as u64),
                4 => b.len() as u64,
                _ => rng.next(),
            } & max;
            b[off..off + width].copy_from_slice(&new.to_le_bytes()[..width]);
            format!("length field at {off} ({width} bytes): {old} -> {new}")
        }
        9 | 10 if !f.tokens.is_empty() => {
            let tok = *rng.pick(f.tokens);
            if rng.below(2) == 0 {
                let end = (i + tok.len()).min(b.len());
                b.splice(i..end, tok.iter().copied());
                format!("overwrite at {i} with {:?}", String::from_utf8_lossy(tok))
            } else {
                b.splice(i..i, tok.iter().copied());
                format!("insert {:?} at {i}", String::from_utf8_lossy(tok))
            }
        }
        _ => {
            let j = rng.below(b.len());
            b.swap(i, j);
            format!("swap bytes {i} and {j}")
        }
    }
}

/// `seed` with one to four random edits.
fn mutant(rng: &mut Rng, seed: &[u8], f: &Format) -> (Vec<u8>, Vec<String>) {
    let mut b = seed.to_vec();
    let edits = (0..1 + rng.below(4))
        .map(|_| mutate_once(rng, &mut b, f))
        .collect();
    (b, edits)
}

/// Number of nodes of a JSON tree.
fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// The `k`-th node in depth-first order.
fn nth_node(v: &mut Value, k: usize) -> &mut Value {
    if k == 0 {
        return v;
    }
    let mut k = k - 1;
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => unreachable!("k is smaller than the node count"),
    };
    for c in children {
        let n = count_nodes(c);
        if k < n {
            return nth_node(c, k);
        }
        k -= n;
    }
    unreachable!("k is smaller than the node count")
}

/// Replace, drop or duplicate one value of a JSON tree: reaches the validation behind the parser.
fn mutate_json(rng: &mut Rng, root: &mut Value) -> String {
    let k = rng.below(count_nodes(root));
    let node = nth_node(root, k);
    let replacement = match rng.below(14) {
        0 => serde_json::json!(0),
        1 => serde_json::json!(-1),
        2 => serde_json::json!(1e308),
        3 => serde_json::json!(-1e308),
        4 => serde_json::json!(u64::MAX),
        5 => serde_json::json!(0.5),
        6 => serde_json::json!("+inf"),
        7 => serde_json::json!(""),
        8 => Value::Null,
        9 => serde_json::json!([]),
        10 => serde_json::json!({}),
        11 => serde_json::json!(true),
        _ => {
            // Structural edits of arrays and objects.
            match node {
                Value::Array(a) if !a.is_empty() => {
                    let i = rng.below(a.len());
                    if rng.below(2) == 0 {
                        a.remove(i);
                        return format!("node {k}: remove element {i}");
                    }
                    let dup = a[i].clone();
                    a.push(dup);
                    return format!("node {k}: duplicate element {i}");
                }
                Value::Object(o) if !o.is_empty() => {
                    let key = o
                        .keys()
                        .nth(rng.below(o.len()))
                        .cloned()
                        .unwrap_or_default();
                    let v = o.remove(&key).unwrap_or(Value::Null);
                    if rng.below(2) == 0 {
                        o.insert(format!("{key}_"), v);
                        return format!("node {k}: rename key {key:?}");
                    }
                    return format!("node {k}: remove key {key:?}");
                }
                _ => serde_json::json!("T1"),
            }
        }
    };
    let desc = format!("node {k}: {} -> {replacement}", short(node));
    *node = replacement;
    desc
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The readers, exactly as the fuzz targets call them.

/// Ok, or an error that is a non-empty one-line bad-input message (exit code 2, docs/bad_inputs.md).
fn check<T>(what: &str, r: &Result<T, Error>) -> Result<(), String> {
    let Err(e) = r else {
        return Ok(());
    };
    let msg = e.to_string();
    if msg.trim().is_empty() {
        Err(format!("{what}: empty error message: {e:?}"))
    } else if e.exit_code() != 2 {
        Err(format!(
            "{what}: exit code {} for bad input: {e:?}",
            e.exit_code()
        ))
    } else if msg.contains(['\n', '\r']) {
        Err(format!("{what}: multi-line error message {msg:?}"))
    } else {
        Ok(())
    }
}

fn read_checkpoint(b: &[u8]) -> Result<bool, String> {
    let r = load_checkpoint_bytes(b, "m.safetensors", &CheckpointOptions::default());
    check("load_checkpoint_bytes", &r)?;
    let explicit = CheckpointOptions {
        layers: Some(vec!["0".into(), "net".into()]),
        activation: Some(Activation::Tanh),
    };
    check(
        "load_checkpoint_bytes --layers",
        &load_checkpoint_bytes(b, "m.safetensors", &explicit),
    )?;
    let Ok(c) = r else { return Ok(false) };
    let again = checkpoint_to_bytes(&c.mlp, &BTreeMap::new(), SaveDtype::F64)
        .and_then(|bytes| load_checkpoint_bytes(&bytes, "again", &Default::default()));
    match again {
        Ok(a) if a.mlp == c.mlp => Ok(true),
        other => Err(format!(
            "accepted checkpoint does not round-trip: {other:?}"
        )),
    }
}

fn read_npy(b: &[u8]) -> Result<bool, String> {
    let a = parse_npy(b, "x.npy");
    check("parse_npy", &a)?;
    if let Ok(a) = &a
        && a.data.len() != a.shape.iter().product::<usize>()
    {
        return Err(format!("{} values for shape {:?}", a.data.len(), a.shape));
    }
    check("parse_npy_matrix", &parse_npy_matrix(b, "x.npy"))?;
    check("parse_npy_labels", &parse_npy_labels(b, "y.npy"))?;
    check(
        "load_dataset_bytes",
        &load_dataset_bytes(b, "x.npy", Some((b, "y.npy")), &DataOptions::default()),
    )?;
    let one_hot = DataOptions {
        one_hot: Some(10),
        x_scale: Some(0.0625),
        expected_dim: None,
        sample_shape: None,
    };
    check(
        "load_dataset_bytes --one-hot",
        &load_dataset_bytes(b, "x.npy", Some((b, "y.npy")), &one_hot),
    )?;
    Ok(a.is_ok())
}

fn read_csv(b: &[u8]) -> Result<bool, String> {
    let m = parse_csv_matrix(b, "x.csv");
    check("parse_csv_matrix", &m)?;
    if let Ok((v, n, d)) = &m
        && (v.len() != n * d || !v.iter().all(|x| x.is_finite()))
    {
        return Err(format!(
            "inconsistent matrix: {} values, {n} × {d}",
            v.len()
        ));
    }
    check(
        "load_dataset_bytes",
        &load_dataset_bytes(b, "x.csv", Some((b, "y.csv")), &DataOptions::default()),
    )?;
    let one_hot = DataOptions {
        one_hot: Some(4),
        x_scale: None,
        expected_dim: Some(1),
        sample_shape: None,
    };
    check(
        "load_dataset_bytes --one-hot",
        &load_dataset_bytes(b, "x.csv", Some((b, "y.csv")), &one_hot),
    )?;
    Ok(m.is_ok())
}

fn read_measurements(b: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(b);
    let doc = MeasurementsDoc::from_json(&text, Path::new("m.json"));
    check("MeasurementsDoc::from_json", &doc)?;
    check("read_source", &read_source(&text, "m.json"))?;
    let Ok(doc) = doc else { return Ok(false) };
    let back = doc
        .to_json()
        .and_then(|j| MeasurementsDoc::from_json(&j, Path::new("again.json")));
    match back {
        Ok(d) if d == doc => Ok(true),
        other => Err(format!("accepted document does not round-trip: {other:?}")),
    }
}

fn read_certificate(b: &[u8]) -> Result<bool, String> {
    let text = String::from_utf8_lossy(b);
    let cert = Certificate::from_json(&text, "cert.json");
    check("Certificate::from_json", &cert)?;
    check("read_source", &read_source(&text, "cert.json"))?;
    let Ok(cert) = cert else { return Ok(false) };
    let _ = recheck_arithmetic(&cert);
    if let Err(e) = plan_of(&cert) {
        return Err(format!("accepted certificate gives no plan: {e}"));
    }
    let back = cert
        .to_json()
        .and_then(|j| Certificate::from_json(&j, "again.json"));
    match back {
        Ok(c) if c == cert => Ok(true),
        other => Err(format!(
            "accepted certificate does not round-trip: {other:?}"
        )),
    }
}

/// A reader under test: `Ok(accepted)` or a description of the contract violation.
type Reader = fn(&[u8]) -> Result<bool, String>;

/// Run `reader` on `input`, turning a panic or a contract violation into a message with the
/// input as hex.
/// Returns whether the reader accepted the input.
fn exercise(reader: Reader, what: &str, input: &[u8]) -> Result<bool, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| reader(input)));
    let problem = match outcome {
        Ok(Ok(accepted)) => return Ok(accepted),
        Ok(Err(msg)) => msg,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic payload".into());
            format!("PANIC: {msg}")
        }
    };
    const SHOWN: usize = 4096;
    let hex: String = input
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    let saved = std::env::temp_dir().join(format!(
        "flatcert_byte_mutation_{}.bin",
        what.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let _ = std::fs::write(&saved, input);
    Err(format!(
        "{what}: {problem}\ninput ({} bytes, saved to {}{}):\n{hex}",
        input.len(),
        saved.display(),
        if input.len() > SHOWN {
            format!("; first {SHOWN} bytes shown")
        } else {
            String::new()
        }
    ))
}

/// Mutate every seed `rounds` times; JSON seeds also get value-level edits of their tree. Both
/// outcomes must occur, so that the mutants exercise the validation and not only the parser.
fn fuzz_reader(
    name: &str,
    reader: Reader,
    seeds: &[(&str, Vec<u8>)],
    format: &Format,
    rounds: usize,
    json_edits: bool,
    rng_seed: u64,
) {
    let mut rng = Rng::new(rng_seed);
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for (seed_name, seed) in seeds {
        // The seeds themselves are valid and must be accepted cleanly.
        match exercise(reader, &format!("{name} seed {seed_name}"), seed) {
            Ok(true) => {}
            Ok(false) => panic!("{name}: seed {seed_name} is rejected"),
            Err(e) => panic!("{e}"),
        }
        let tree: Option<Value> = if json_edits {
            serde_json::from_slice(seed).ok()
        } else {
            None
        };
        for round in 0..rounds {
            let (bytes, edits) = match &tree {
                Some(t) if round % 2 == 1 => {
                    let mut t = t.clone();
                    let edits: Vec<String> = (0..1 + rng.below(3))
                        .map(|_| mutate_json(&mut rng, &mut t))
                        .collect();
                    (serde_json::to_vec(&t).expect("JSON"), edits)
                }
                _ => mutant(&mut rng, seed, format),
            };
            match exercise(reader, &format!("{name} {seed_name} #{round}"), &bytes) {
                Ok(true) => accepted += 1,
                Ok(false) => rejected += 1,
                Err(e) => panic!("{e}\nedits of seed {seed_name}: {edits:?}"),
            }
        }
    }
    eprintln!("{name}: {accepted} mutants accepted, {rejected} rejected");
    assert!(
        accepted > 0 && rejected > 0,
        "{name}: {accepted} accepted, {rejected} rejected"
    );
}

// ---------------------------------------------------------------------------------------------
// Seeds.

/// A safetensors file with one tensor-header entry re-encoded as JSON with its exact length.
fn safetensors_with_header(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("JSON");
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

fn checkpoint_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut meta = BTreeMap::new();
    meta.insert("lr".to_string(), "0.1".to_string());
    let relu = random_mlp(&[3, 4, 2], Activation::Relu, 1);
    let tanh = random_mlp(&[2, 3, 3, 1], Activation::Tanh, 2);
    let f64_seed = checkpoint_to_bytes(&relu, &meta, SaveDtype::F64).expect("save");
    let f32_seed = checkpoint_to_bytes(&tanh, &BTreeMap::new(), SaveDtype::F32).expect("save");
    // PyTorch-style names with a prefix, f16 and bf16 tensors, written by hand.
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    let bf16 = |v: f32| half::bf16::from_f32(v).to_le_bytes();
    let mut data = Vec::new();
    for v in [0.5f32, -1.0] {
        data.extend_from_slice(&f16(v));
    }
    data.extend_from_slice(&f16(0.25));
    data.extend_from_slice(&bf16(2.0));
    data.extend_from_slice(&bf16(-0.125));
    let header = serde_json::json!({
        "__metadata__": {"activation": "leaky_relu:0.1", "format": "pt"},
        "net.0.weight": {"dtype": "F16", "shape": [1, 2], "data_offsets": [0, 4]},
        "net.0.bias": {"dtype": "F16", "shape": [1], "data_offsets": [4, 6]},
        "net.2.weight": {"dtype": "BF16", "shape": [1, 1], "data_offsets": [6, 8]},
        "net.2.bias": {"dtype": "BF16", "shape": [1], "data_offsets": [8, 10]},
    });
    let prefixed = safetensors_with_header(&header, &data);
    vec![
        ("f64 3-4-2", f64_seed),
        ("f32 2-3-3-1", f32_seed),
        ("f16/bf16 net.*", prefixed),
    ]
}

/// A `.npy` file with a hand-written header (format `major`.0) and raw data.
fn raw_npy(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    let mut header = dict.to_string();
    header.push('\n');
    if major == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn npy_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let x: Vec<f64> = (0..12).map(|i| f64::from(i) * 0.5 - 2.0).collect();
    let be_i16: Vec<u8> = [3i16, -1, 7, 0, 2, 9]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let labels: Vec<u8> = [1i64, 0, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    vec![
        ("f8 4x3", npy_matrix_bytes(&x, 4, 3).expect("npy")),
        (
            "v2 fortran >i2 2x3",
            raw_npy(
                2,
                "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }",
                &be_i16,
            ),
        ),
        (
            "v3 <i8 labels",
            raw_npy(
                3,
                "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                &labels,
            ),
        ),
        (
            "u1 3-D",
            raw_npy(
                1,
                "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }",
                &[0, 1, 2, 3, 4, 5, 6, 7],
            ),
        ),
        ("embedded labels", flatcert::example::LABELS.to_vec()),
    ]
}

fn csv_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("header", b"a,b,c\n1,2,3\n-4.5,5e-1,6\n".to_vec()),
        ("no header", b"1;2\n3;4\n5;6\n".to_vec()),
        ("labels", b"1\n0\n3\n2\n".to_vec()),
        (
            "bom crlf quotes tabs",
            b"\xef\xbb\xbf\"x\"\t\"y\"\r\n\"1\"\t 2\r\n3\t4\r\n\r\n".to_vec(),
        ),
    ]
}

/// THEORY §5: f(x) = |x| as the ReLU 1–2–1 network.
fn abs_net() -> Mlp {
    Mlp::new(
        vec![
            Dense {
                weight: dmatrix![1.0; -1.0],
                bias: dvector![0.0, 0.0],
            },
            Dense {
                weight: dmatrix![1.0, 1.0],
                bias: dvector![0.0],
            },
        ],
        Activation::Relu,
    )
    .expect("valid network")
}

fn file(path: &str) -> InputFile {
    InputFile {
        path: path.into(),
        sha256: "0".repeat(64),
    }
}

/// Two certificates from the library pipeline: the golden example (with file records and
/// ε) and a small random tanh network.
fn certificates() -> Vec<Certificate> {
    let data = Dataset::new(
        vec![-1.0, 1.0, 2.0],
        3,
        1,
        Some((vec![1.0, 1.0, 2.0], 1)),
        "x.npy",
        "y.npy",
    )
    .expect("data");
    let mut plan = Plan::new(0.2, 2);
    plan.epsilon = Some(0.1);
    plan.tau = Some(0.5);
    plan.provenance = Some(Provenance {
        model: file("abs.safetensors"),
        x: file("x.npy"),
        y: Some(file("y.npy")),
        test_x: None,
        test_y: None,
        x_scale: 1.0,
        one_hot: None,
        activation_flag: None,
        activation_source: None,
        layers: None,
        embedded: false,
    });
    let golden = run(&abs_net(), &data, None, &plan).expect("golden certificate");
    let mlp = random_mlp(&[2, 3, 1], Activation::Tanh, 5);
    let x = random_data(2, 4, 6);
    let y: Vec<f64> = (0..4).map(|i| f64::from(i) * 0.1).collect();
    let xs: Vec<f64> = x.transpose().iter().copied().collect();
    let small = Dataset::new(xs, 4, 2, Some((y, 1)), "x.npy", "y.npy").expect("data");
    let cert = run(&mlp, &small, None, &Plan::new(0.05, 2)).expect("certificate");
    vec![golden, cert]
}

fn measurements_of(c: &Certificate) -> MeasurementsDoc {
    MeasurementsDoc {
        schema: MEASUREMENTS_SCHEMA.into(),
        inputs: MeasurementInputs {
            model: file("m.safetensors"),
            x: file("x.npy"),
            y: Some(file("y.npy")),
            activation: c.inputs.activation.clone(),
            activation_source: None,
            widths: c.inputs.widths.clone(),
            n: c.inputs.n,
            parameters: c.inputs.parameters,
            x_scale: 1.0,
            k: vec![1, 2],
            flatcert_version: "0.1.0".into(),
            architecture: None,
        },
        notes: vec!["a note".into()],
        quantities: c.measurements.quantities.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn checkpoint_reader_survives_byte_mutations() {
    let seeds = checkpoint_seeds();
    fuzz_reader(
        "checkpoint",
        read_checkpoint,
        &seeds,
        &SAFETENSORS,
        1000,
        false,
        1,
    );
    // The bundled checkpoint (72 KB) too, less often.
    let embedded = [("embedded digits", flatcert::example::MODEL.to_vec())];
    fuzz_reader(
        "checkpoint",
        read_checkpoint,
        &embedded,
        &SAFETENSORS,
        200,
        false,
        2,
    );
}

#[test]
fn safetensors_header_edits_are_rejected_cleanly() {
    // Value-level edits of the JSON header, re-framed with the right length, reach the checks of
    // dtype, shape and data_offsets against each other and the file.
    let relu = random_mlp(&[3, 4, 2], Activation::Relu, 1);
    let bytes = checkpoint_to_bytes(&relu, &BTreeMap::new(), SaveDtype::F64).expect("save");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let data = &bytes[8 + n..];
    let mut rng = Rng::new(3);
    for round in 0..1500 {
        let mut h = header.clone();
        let edits: Vec<String> = (0..1 + rng.below(3))
            .map(|_| mutate_json(&mut rng, &mut h))
            .collect();
        let b = safetensors_with_header(&h, data);
        if let Err(e) = exercise(read_checkpoint, &format!("header edit #{round}"), &b) {
            panic!("{e}\nedits: {edits:?}");
        }
    }
}

#[test]
fn npy_reader_survives_byte_mutations() {
    fuzz_reader("npy", read_npy, &npy_seeds(), &NPY, 700, false, 4);
}

#[test]
fn csv_reader_survives_byte_mutations() {
    fuzz_reader("csv", read_csv, &csv_seeds(), &CSV, 800, false, 5);
}

#[test]
fn measurements_reader_survives_byte_mutations() {
    let seeds: Vec<(&str, Vec<u8>)> = certificates()
        .iter()
        .zip(["golden", "tanh"])
        .map(|(c, name)| {
            let json = measurements_of(c).to_json().expect("measurements JSON");
            (name, json.into_bytes())
        })
        .collect();
    fuzz_reader(
        "measurements",
        read_measurements,
        &seeds,
        &JSON,
        1500,
        true,
        6,
    );
}

#[test]
fn certificate_reader_survives_byte_mutations() {
    let seeds: Vec<(&str, Vec<u8>)> = certificates()
        .iter()
        .zip(["golden", "tanh"])
        .map(|(c, name)| {
            // Compact JSON: the same document in two thirds of the bytes, so more mutants per
            // second in a debug build.
            let json = c.to_json().expect("certificate JSON");
            let v: Value = serde_json::from_str(&json).expect("JSON");
            (name, serde_json::to_vec(&v).expect("JSON"))
        })
        .collect();
    fuzz_reader(
        "certificate",
        read_certificate,
        &seeds,
        &JSON,
        1000,
        true,
        7,
    );
}

/// The five readers by fuzz-target name.
const READERS: [(&str, Reader); 5] = [
    ("fuzz_checkpoint", read_checkpoint),
    ("fuzz_npy", read_npy),
    ("fuzz_csv", read_csv),
    ("fuzz_measurements", read_measurements),
    ("fuzz_certificate", read_certificate),
];

/// Replay every file of `root/<target>/` through its reader (a missing folder is skipped);
/// returns how many files were replayed.
fn replay_tree(root: &Path) -> usize {
    let mut replayed = 0;
    for (target, reader) in READERS {
        let dir = root.join(target);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => continue,
        };
        files.sort();
        for f in files.iter().filter(|f| f.is_file()) {
            let bytes = std::fs::read(f).expect("read a replayed input");
            if let Err(e) = exercise(reader, &format!("{}", f.display()), &bytes) {
                panic!("{e}");
            }
            replayed += 1;
        }
    }
    replayed
}

/// Every crasher the fuzzers found (docs/fuzzing.md), replayed through the same entry points.
#[test]
fn fuzz_regressions_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions");
    let replayed = replay_tree(&root);
    assert!(
        replayed >= 2,
        "the regression inputs are missing from {root:?}"
    );
    eprintln!("replayed {replayed} fuzz regression inputs");
}

/// The committed, minimized fuzz corpora (`fuzz/corpus/`, `cargo fuzz cmin`) and the seeds,
/// replayed through the same entry points: every input the fuzzers kept for its coverage stays
/// a clean accept or a one-line bad-input error as the code changes.
#[test]
fn committed_fuzz_corpus_replays_cleanly() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = replay_tree(&fuzz.join("corpus"));
    let seeds = replay_tree(&fuzz.join("seeds"));
    assert!(
        corpus > 0 && seeds > 0,
        "fuzz/corpus or fuzz/seeds is empty"
    );
    eprintln!("replayed {corpus} corpus and {seeds} seed inputs");
}

/// Text quoted from a file — a dtype string, a CSV cell, a tensor name, a JSON string — is
/// escaped, so that the CLI's error message stays on one line and cannot carry terminal escape
/// sequences (found by `fuzz_npy`: a newline inside `descr`; the other readers had the same flaw).
#[test]
fn quoted_file_text_stays_on_one_line() {
    let one_line = |e: Error, want: &str| {
        let msg = e.to_string();
        assert!(
            msg.contains(want) && !msg.contains(['\n', '\r', '\u{1b}']),
            "{msg:?} should contain {want:?} and no control character"
        );
    };
    let npy = raw_npy(
        1,
        "{'descr': '<f\n8', 'fortran_order': False, 'shape': (1,), }",
        &[0; 8],
    );
    one_line(parse_npy(&npy, "x.npy").unwrap_err(), "'<f\\n8'");
    one_line(
        parse_npy_labels(&npy, "y.npy").unwrap_err(),
        "unsupported dtype",
    );
    one_line(
        parse_csv_matrix(b"1,2\n3,4\r5\n", "x.csv").unwrap_err(),
        "line 2, column 2: '4\\r5' is not a number",
    );
    one_line(
        load_dataset_bytes(b"1\n2\x1b[2J\n", "x.csv", None, &DataOptions::default()).unwrap_err(),
        "'2\\u{1b}[2J'",
    );
    let st = safetensors_with_header(
        &serde_json::json!({"a\nb.weight": {"dtype": "F64", "shape": [1, 1], "data_offsets": [0, 8]}}),
        &[0; 8],
    );
    one_line(
        load_checkpoint_bytes(&st, "m.safetensors", &CheckpointOptions::default()).unwrap_err(),
        "tensor 'a\\nb.weight'",
    );
    one_line(
        MeasurementsDoc::from_json(r#"{"schema": "x\ny"}"#, Path::new("m.json")).unwrap_err(),
        "m.json: json",
    );
    let mut doc = serde_json::to_value(measurements_of(&certificates()[1])).expect("JSON");
    doc["schema"] = Value::String("flatcert\n/v0".into());
    one_line(
        MeasurementsDoc::from_json(&doc.to_string(), Path::new("m.json")).unwrap_err(),
        "found 'flatcert\\n/v0'",
    );
    one_line(
        Certificate::from_json(r#"{"schema": "\u001b[31mred"}"#, "cert.json").unwrap_err(),
        "found '\\u{1b}[31mred'",
    );
}

/// A certificate whose `hyper.sampling` is not a sampling model is rejected when it is read,
/// naming the field (before, `bound`/`verify` reported it as a bad `--sampling` flag).
#[test]
fn certificate_with_unknown_sampling_names_the_field() {
    let mut cert = serde_json::to_value(&certificates()[1]).expect("JSON");
    cert["hyper"]["sampling"] = Value::String("sideways".into());
    let e = Certificate::from_json(&cert.to_string(), "cert.json").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let msg = e.to_string();
    assert!(
        msg.starts_with("cert.json: hyper.sampling: 'sideways' is not a sampling model"),
        "{msg}"
    );
}

/// Headers with very many entries load in linear time. Found by timing the readers on inputs
/// beyond the fuzzers' `-max_len`: duplicate-name checks and name lookups scanned every entry, so
/// a 3 MB checkpoint of 40 000 tensors took 10 s to reject and 16 MB took 6 minutes; an `.npy`
/// header dict of 200 000 keys took 80 s. Each case below takes well under a second now (the
/// bound is loose on purpose: it only catches a return to quadratic time).
#[test]
fn headers_with_many_entries_load_in_linear_time() {
    let start = std::time::Instant::now();
    let layers = 20_000;
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for i in 0..layers {
        for (suffix, shape) in [
            ("weight", serde_json::json!([1, 1])),
            ("bias", serde_json::json!([1])),
        ] {
            let at = data.len();
            data.extend_from_slice(&1.0f32.to_le_bytes());
            header.insert(
                format!("net.{}.{suffix}", 2 * i),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [at, at + 4]}),
            );
        }
    }
    let header = Value::Object(header);
    let st = safetensors_with_header(&header, &data);
    let c = load_checkpoint_bytes(&st, "many.safetensors", &CheckpointOptions::default())
        .expect("a deep 1-wide network");
    assert_eq!(c.mlp.depth(), layers);
    // `--layers net,net.0`: the prefix selects every layer, then layer net.0 a second time.
    let explicit = CheckpointOptions {
        layers: Some(vec!["net".into(), "net.0".into()]),
        activation: None,
    };
    let e = load_checkpoint_bytes(&st, "many.safetensors", &explicit).unwrap_err();
    assert!(
        e.to_string().contains("layer 'net.0' is selected twice"),
        "{e}"
    );
    // The same tensors with one duplicate name at the very end.
    let mut text = serde_json::to_string(&header).expect("JSON");
    text.pop();
    text.push_str(r#","net.0.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]}}"#);
    let mut dup = (text.len() as u64).to_le_bytes().to_vec();
    dup.extend_from_slice(text.as_bytes());
    dup.extend_from_slice(&data);
    let e = load_checkpoint_bytes(&dup, "dup.safetensors", &CheckpointOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor 'net.0.weight': duplicate tensor name"),
        "{e}"
    );
    // An .npy header dict with 100 000 extra keys.
    let keys: String = (0..100_000).map(|i| format!("'k{i}': 0, ")).collect();
    let npy = raw_npy(
        2,
        &format!("{{{keys}'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }}"),
        &1.0f64.to_le_bytes(),
    );
    assert_eq!(
        parse_npy(&npy, "x.npy")
            .expect("extra keys are ignored")
            .data,
        [1.0]
    );
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs() < 60, "took {elapsed:?}: quadratic again?");
}
