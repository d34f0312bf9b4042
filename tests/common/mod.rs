#![allow(dead_code)] // shared by several test crates; each uses a subset
//! Helpers for the CLI end-to-end tests: a temporary working directory with an (initially empty)
//! `out/` sub-directory for every output the commands write, builders for valid and hostile input
//! files, and assertions on exit codes and on the one-line error contract (docs/bad_inputs.md).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use flatcert::io::SaveDtype;
use flatcert::testutil::{random_data, random_mlp};
use flatcert::{Activation, Mlp};

/// Default test problem: d inputs, C outputs, n samples.
pub const D: usize = 3;
pub const C: usize = 2;
pub const N: usize = 10;

/// The `flatcert` binary built by Cargo for this test target.
pub fn flatcert() -> Command {
    Command::cargo_bin("flatcert").expect("the flatcert binary is built for integration tests")
}

/// A temporary directory holding inputs, plus an empty `out/` directory for outputs.
pub struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("out")).expect("out dir");
        Self { dir }
    }

    /// A path inside the working directory (the file need not exist).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A path inside `out/`, where every command of a test writes.
    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    /// Names of the entries in `out/` (sorted).
    pub fn out_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("out"))
            .expect("read out dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        v.sort();
        v
    }

    /// Nothing at all was written to `out/`: neither the output nor a partial/temporary file.
    pub fn assert_no_output(&self) {
        let entries = self.out_entries();
        assert!(
            entries.is_empty(),
            "output left behind after a failure: {entries:?}"
        );
    }

    /// Write a CSV of `N` lines (after `header`) equal to `good`, except line `bad_row` (0-based
    /// among the data lines), which is `bad`.
    pub fn csv_with_row(
        &self,
        name: &str,
        header: &str,
        good: &str,
        bad_row: usize,
        bad: &str,
    ) -> PathBuf {
        let mut text = String::from(header);
        for i in 0..N {
            text += if i == bad_row { bad } else { good };
        }
        self.bytes(name, text.as_bytes())
    }

    /// Write raw bytes.
    pub fn bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write input");
        p
    }

    /// Write a row-major `n × d` f64 matrix as `.npy`.
    pub fn npy(&self, name: &str, data: &[f64], n: usize, d: usize) -> PathBuf {
        let p = self.path(name);
        flatcert::io::save_npy_matrix(&p, data, n, d).expect("save npy");
        p
    }

    /// Write a network as an f64 safetensors checkpoint (exact parameters).
    pub fn model(&self, name: &str, mlp: &Mlp) -> PathBuf {
        let p = self.path(name);
        flatcert::io::save_checkpoint(&p, mlp, &Default::default(), SaveDtype::F64)
            .expect("save checkpoint");
        p
    }

    /// The standard valid inputs: a tanh 3-5-2 network, x (N × D) and real targets y (N × C).
    pub fn standard(&self) -> (PathBuf, PathBuf, PathBuf) {
        let mlp = random_mlp(&[D, 5, C], Activation::Tanh, 11);
        let x = random_data(D, N, 12);
        let y = random_data(C, N, 13);
        (
            self.model("m.safetensors", &mlp),
            self.npy("x.npy", x.as_slice(), N, D),
            self.npy("y.npy", y.as_slice(), N, C),
        )
    }
}

/// Little-endian bytes of f64 values.
pub fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A safetensors file from a header JSON text and a data section, exactly as given (the header is
/// padded with spaces to a multiple of 8, as the reference implementation does).
pub fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A well-formed safetensors file whose tensors (name, dtype, shape, bytes) tile the data section
/// in the order given.
pub fn safetensors_of(tensors: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    raw_safetensors(&serde_json::Value::Object(header).to_string(), &data)
}

/// `n` f64 values 0.1, 0.2, … (finite, distinct).
pub fn ramp(n: usize) -> Vec<f64> {
    (1..=n).map(|i| i as f64 / 10.0).collect()
}

/// The `__metadata__` of a safetensors file, read independently of flatcert.
pub fn safetensors_metadata(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    safetensors_parts(path).0["__metadata__"]
        .as_object()
        .expect("__metadata__ object")
        .clone()
}

/// The parsed JSON header and the data section of a safetensors file.
pub fn safetensors_parts(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read checkpoint");
    let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + len]).expect("header is JSON");
    (header, bytes[8 + len..].to_vec())
}

/// Characters that only a progress bar (indicatif) would put on stderr.
pub fn assert_no_progress_bar(stderr: &str) {
    for pat in ["\r", "\u{1b}[", "[=", "=>", "█", "░"] {
        assert!(
            !stderr.contains(pat),
            "progress-bar residue {pat:?} in stderr: {stderr:?}"
        );
    }
}

/// Run `cmd`, require exit code `code` and the one-line error contract: stderr is exactly one line
/// `error: …` (no panic, no usage dump) containing every needle. Returns that line.
pub fn expect_error(cmd: &mut Command, code: i32, needles: &[&str]) -> String {
    let out = cmd.output().expect("run flatcert");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit code {code}; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let line = stderr.trim_end_matches('\n');
    assert!(
        !line.is_empty() && !line.contains('\n'),
        "stderr must be exactly one line, got: {stderr:?}"
    );
    assert!(line.starts_with("error: "), "not an error line: {line}");
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
    line.to_string()
}

/// [`expect_error`] with exit code 2 (bad input or usage, docs/bad_inputs.md).
pub fn expect_bad_input(cmd: &mut Command, needles: &[&str]) -> String {
    expect_error(cmd, 2, needles)
}

/// A path as it appears in messages.
pub fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Run `cmd`, refuse a panic, and return (exit code, stdout, stderr).
pub fn run_cmd(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run flatcert");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!se.contains("panicked"), "panic: {se}");
    (out.status.code().unwrap_or(-1), so, se)
}

/// The JSON document at `p` (it must have been written).
pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("JSON written")).expect("valid JSON")
}

/// The summary status of theorem `id` in a certificate document ("" when absent).
pub fn theorem_status(cert: &serde_json::Value, id: &str) -> String {
    cert["summary"]["theorems"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["theorem"] == id)
        .and_then(|t| t["status"].as_str())
        .unwrap_or_default()
        .to_string()
}
