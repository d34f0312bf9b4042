//! safetensors checkpoints of dense MLPs, as written by
//! `safetensors.torch.save_file(model.state_dict(), path)` (`docs/checkpoints.md`).
//!
//! The file layout is validated here before anything is trusted: the 8-byte little-endian header
//! length against the file size, the JSON header (duplicate names rejected), each tensor's dtype,
//! shape and `data_offsets` against each other and against the bytes present. Each kind of damage
//! (not safetensors, header length beyond the file, truncated file, offsets beyond the file, size
//! mismatch) has its own message.
//!
//! Dense layers are found by name, `<prefix><index>.weight` / `<prefix><index>.bias`, ordered by
//! the numeric index (`0, 2, 4` for `nn.Sequential`; `fc1 … fc10`), or named explicitly with
//! `--layers` ([`CheckpointOptions::layers`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use nalgebra::{DMatrix, DVector};
use safetensors::Dtype;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::{display_name, one_line, read_file, write_atomic};
use crate::error::{Error, Result};
use crate::model::{Activation, Dense, Mlp};

/// How to read a checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointOptions {
    /// `--layers`: the dense layers in order, each a layer name such as `net.0` (meaning the
    /// tensors `net.0.weight` and `net.0.bias`), an explicit weight name `net.0.weight`, or a
    /// prefix such as `net` or `fc` that selects every `<prefix>.<i>.weight` / `<prefix><i>.weight`
    /// in numeric order. With `None`, layers are detected by name and every tensor must belong to
    /// one; with `Some`, tensors not named are ignored (and listed in
    /// [`LoadedCheckpoint::ignored_tensors`]).
    pub layers: Option<Vec<String>>,
    /// `--activation`; overrides the checkpoint's metadata.
    pub activation: Option<Activation>,
}

/// Where the activation of a loaded checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationSource {
    /// Given explicitly (`--activation`).
    Flag,
    /// The `activation` key of the safetensors `__metadata__`.
    Metadata,
    /// Neither was given: ReLU.
    Default,
}

impl ActivationSource {
    /// `"flag"`, `"metadata"` or `"default"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ActivationSource::Flag => "flag",
            ActivationSource::Metadata => "metadata",
            ActivationSource::Default => "default",
        }
    }
}

impl fmt::Display for ActivationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checkpoint read into an [`Mlp`].
#[derive(Debug, Clone)]
pub struct LoadedCheckpoint {
    /// The network, parameters converted exactly to f64.
    pub mlp: Mlp,
    /// The safetensors `__metadata__` (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// The layer names in order (`0`, `2`, … or `net.0`, … or `fc1`, …): the tensors are
    /// `<name>.weight` and `<name>.bias`. Passing them back as `--layers` selects the same layers.
    pub layer_names: Vec<String>,
    /// Where the activation came from.
    pub activation_source: ActivationSource,
    /// Tensors present in the file but not used (only possible with explicit `--layers`).
    pub ignored_tensors: Vec<String>,
}

/// Floating-point type of the tensors written by [`save_checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveDtype {
    /// float32 (PyTorch's default; parameters rounded to nearest).
    F32,
    /// float64 (exact).
    F64,
}

/// One tensor entry of a validated header.
#[derive(Debug, Clone)]
struct TensorEntry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A validated safetensors file: entries in file (offset) order, metadata, and the data section.
#[derive(Debug)]
struct Parsed<'a> {
    tensors: Vec<TensorEntry>,
    /// Position of each tensor in `tensors` by name: lookups stay O(1), so that a header with
    /// very many entries cannot make loading quadratic.
    by_name: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
    data: &'a [u8],
}

impl Parsed<'_> {
    fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
    fn bytes(&self, t: &TensorEntry) -> &[u8] {
        &self.data[t.start..t.end]
    }
}

/// The JSON header's top-level entries in order, duplicates kept (serde maps would drop them).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(e) = m.next_entry::<String, serde_json::Value>()? {
                    out.push(e);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn shape_str(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn tensor_field(name: &str) -> String {
    format!("tensor '{name}'")
}

/// Parse one tensor entry of the header, checking its dtype, shape and size.
fn parse_entry(file: &str, name: &str, v: &serde_json::Value) -> Result<TensorEntry> {
    let bad = |msg: String| Error::bad_input(file, tensor_field(name), msg);
    let obj = v.as_object().ok_or_else(|| {
        bad("header entry is not an object with dtype, shape and data_offsets".into())
    })?;
    let dtype_v = obj
        .get("dtype")
        .ok_or_else(|| bad("header entry has no 'dtype'".into()))?;
    let dtype: Dtype = serde_json::from_value(dtype_v.clone()).map_err(|_| {
        bad(format!(
            "unknown dtype {dtype_v}; expected a safetensors dtype such as \"F32\""
        ))
    })?;
    let shape: Vec<usize> = obj
        .get("shape")
        .and_then(|s| s.as_array())
        .and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        })
        .ok_or_else(|| bad("'shape' must be a list of non-negative integers".into()))?;
    let offsets: Vec<usize> = obj
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect()
        })
        .filter(|o: &Vec<usize>| o.len() == 2)
        .ok_or_else(|| {
            bad("'data_offsets' must be a list [begin, end] of two non-negative integers".into())
        })?;
    let (start, end) = (offsets[0], offsets[1]);
    if end < start {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] end before they begin"
        )));
    }
    let needed_bits = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.bitsize()))
        .ok_or_else(|| bad(format!("shape {} is too large", shape_str(&shape))))?;
    if needed_bits % 8 != 0 || needed_bits / 8 != end - start {
        return Err(bad(format!(
            "shape {} of {dtype} needs {} bytes but data_offsets [{start}, {end}] span {} bytes",
            shape_str(&shape),
            needed_bits.div_ceil(8),
            end - start
        )));
    }
    Ok(TensorEntry {
        name: name.to_string(),
        dtype,
        shape,
        start,
        end,
    })
}

/// Validate the whole file layout before trusting any of it.
fn parse_safetensors<'a>(bytes: &'a [u8], file: &str) -> Result<Parsed<'a>> {
    const NOT_ST: &str = "not a safetensors file: expected an 8-byte little-endian header length followed by a JSON header starting with '{' (save with safetensors.torch.save_file)";
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(Error::bad_input(
            file,
            "header",
            format!("{NOT_ST}; the file has only {} bytes", bytes.len()),
        ));
    };
    let mut le = [0u8; 8];
    le.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(le);
    let rest = bytes.len() - 8;
    match bytes.get(8) {
        Some(b'{') => {}
        Some(_) => return Err(Error::bad_input(file, "header", NOT_ST)),
        None => {
            return Err(Error::bad_input(
                file,
                "header",
                "file truncated: it ends right after the 8-byte header length",
            ));
        }
    }
    let header_len = match usize::try_from(n) {
        Ok(h) if h <= rest => h,
        _ => {
            return Err(Error::bad_input(
                file,
                "header length",
                format!(
                    "the header length {n} lies beyond the end of the file (only {rest} bytes follow the length field): file truncated or corrupt"
                ),
            ));
        }
    };
    let header = &bytes[8..8 + header_len];
    let entries: Entries = serde_json::from_slice(header).map_err(|e| {
        Error::bad_input(
            file,
            "header",
            format!("the JSON header is malformed ({e}); not a safetensors file or corrupt"),
        )
    })?;
    let data = &bytes[8 + header_len..];
    let mut tensors: Vec<TensorEntry> = Vec::new();
    let mut metadata = BTreeMap::new();
    let mut seen_meta = false;
    let mut names: HashSet<&str> = HashSet::with_capacity(entries.0.len());
    for (key, v) in &entries.0 {
        if key == "__metadata__" {
            if seen_meta {
                return Err(Error::bad_input(
                    file,
                    "__metadata__",
                    "appears twice in the header",
                ));
            }
            seen_meta = true;
            let obj = v.as_object().ok_or_else(|| {
                Error::bad_input(
                    file,
                    "__metadata__",
                    "expected a JSON object of string values",
                )
            })?;
            for (k, val) in obj {
                let s = val.as_str().ok_or_else(|| {
                    Error::bad_input(
                        file,
                        format!("__metadata__.{k}"),
                        format!(
                            "value {val} is not a string; safetensors metadata values are strings"
                        ),
                    )
                })?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        if !names.insert(key.as_str()) {
            return Err(Error::bad_input(
                file,
                tensor_field(key),
                "duplicate tensor name in the header; every name must be unique",
            ));
        }
        tensors.push(parse_entry(file, key, v)?);
    }
    // Layout: tensors must tile the data section exactly, in offset order.
    tensors.sort_by_key(|t| (t.start, t.end));
    let total = tensors.iter().map(|t| t.end).max().unwrap_or(0);
    let contiguous = tensors
        .iter()
        .try_fold(0usize, |pos, t| (t.start == pos).then_some(t.end))
        .is_some();
    if total > data.len() {
        if contiguous {
            return Err(Error::bad_input(
                file,
                "data",
                format!(
                    "file truncated: the header describes {total} bytes of tensor data but only {} are present",
                    data.len()
                ),
            ));
        }
        if let Some(t) = tensors.iter().find(|t| t.end > data.len()) {
            return Err(Error::bad_input(
                file,
                tensor_field(&t.name),
                format!(
                    "data_offsets [{}, {}] lie beyond the end of the file (the data section has {} bytes)",
                    t.start,
                    t.end,
                    data.len()
                ),
            ));
        }
    }
    let mut pos = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        if t.start != pos {
            let what = if t.start < pos {
                format!("overlap tensor '{}'", tensors[i - 1].name)
            } else {
                format!("leave a gap of {} bytes before them", t.start - pos)
            };
            return Err(Error::bad_input(
                file,
                tensor_field(&t.name),
                format!(
                    "data_offsets [{}, {}] {what}; tensors must tile the data section",
                    t.start, t.end
                ),
            ));
        }
        pos = t.end;
    }
    if pos != data.len() {
        return Err(Error::bad_input(
            file,
            "data",
            format!(
                "{} bytes follow the last tensor; the header accounts for only {pos} of {} data bytes",
                data.len() - pos,
                data.len()
            ),
        ));
    }
    let by_name = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    Ok(Parsed {
        tensors,
        by_name,
        metadata,
        data,
    })
}

/// `"net.0"` → `("net.", 0)`, `"fc10"` → `("fc", 10)`; `None` without a trailing number.
fn split_indexed(stem: &str) -> Option<(&str, u64)> {
    let digits = stem.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (prefix, num) = stem.split_at(stem.len() - digits);
    num.parse().ok().map(|i| (prefix, i))
}

const PATTERN_HINT: &str = "expected only '<prefix><index>.weight' [out, in] and '<prefix><index>.bias' [out] tensors of dense layers (e.g. 0.weight, net.0.weight, fc1.weight); use --layers to name the dense layers explicitly";

/// Detect the dense layers by name; every tensor must belong to one.
fn detect_layers(p: &Parsed<'_>, file: &str) -> Result<Vec<String>> {
    let mut layers: Vec<(String, &str, u64)> = Vec::new(); // (stem, prefix, index)
    let mut position_of_index: HashMap<u64, usize> = HashMap::new();
    for t in &p.tensors {
        let not_fit = |why: String| {
            Error::bad_input(
                file,
                tensor_field(&t.name),
                format!("{why}: the checkpoint is not a plain dense MLP; {PATTERN_HINT}"),
            )
        };
        if let Some(stem) = t.name.strip_suffix(".weight") {
            let Some((prefix, index)) = split_indexed(stem) else {
                return Err(not_fit("the name has no layer index".into()));
            };
            if t.shape.len() != 2 {
                return Err(not_fit(format!(
                    "shape {} has rank {}, a dense weight has rank 2 [out, in]",
                    shape_str(&t.shape),
                    t.shape.len()
                )));
            }
            // Every layer so far has the first one's prefix, so comparing with it suffices.
            if let Some((other, _, _)) = layers.first().filter(|(_, p, _)| *p != prefix) {
                return Err(not_fit(format!(
                    "prefix '{prefix}' differs from that of '{other}.weight', so the layer order is ambiguous"
                )));
            }
            if let Some(&j) = position_of_index.get(&index) {
                return Err(not_fit(format!(
                    "layer index {index} is also used by '{}.weight'",
                    layers[j].0
                )));
            }
            position_of_index.insert(index, layers.len());
            layers.push((stem.to_string(), prefix, index));
        } else if let Some(stem) = t.name.strip_suffix(".bias") {
            if p.get(&format!("{stem}.weight")).is_none() {
                return Err(not_fit(format!(
                    "there is no weight '{stem}.weight' for this bias"
                )));
            }
        } else {
            return Err(not_fit("neither a '.weight' nor a '.bias' tensor".into()));
        }
    }
    if layers.is_empty() {
        return Err(Error::bad_input(
            file,
            "tensors",
            format!("no dense layer weights found; {PATTERN_HINT}"),
        ));
    }
    layers.sort_by_key(|&(_, _, i)| i);
    Ok(layers.into_iter().map(|(s, _, _)| s).collect())
}

/// Resolve explicit `--layers` entries into layer stems.
fn explicit_layers(p: &Parsed<'_>, file: &str, spec: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut selected: HashSet<String> = HashSet::new();
    for raw in spec {
        let e = raw.trim();
        let mut found: Vec<String> = Vec::new();
        if let Some(stem) = e.strip_suffix(".weight").filter(|_| p.get(e).is_some()) {
            found.push(stem.to_string());
        } else if p.get(&format!("{e}.weight")).is_some() {
            found.push(e.to_string());
        } else if !e.is_empty() {
            // A prefix: every `<e><i>.weight` or `<e>.<i>.weight`, in numeric order.
            let mut group: Vec<(u64, String)> = p
                .tensors
                .iter()
                .filter_map(|t| {
                    let stem = t.name.strip_suffix(".weight")?;
                    let (prefix, i) = split_indexed(stem)?;
                    (prefix == e || prefix.strip_suffix('.') == Some(e))
                        .then(|| (i, stem.to_string()))
                })
                .collect();
            group.sort();
            found.extend(group.into_iter().map(|(_, s)| s));
        }
        if found.is_empty() {
            let weights: Vec<&str> = p
                .tensors
                .iter()
                .filter(|t| t.name.ends_with(".weight"))
                .map(|t| t.name.as_str())
                .take(12)
                .collect();
            return Err(Error::bad_input(
                file,
                "--layers",
                format!(
                    "'{e}' matches no tensor: expected '{e}.weight' to exist (or '{e}.<i>.weight' layers); weight tensors in the file: {}",
                    if weights.is_empty() {
                        "none".to_string()
                    } else {
                        weights.join(", ")
                    }
                ),
            ));
        }
        for s in found {
            if !selected.insert(s.clone()) {
                return Err(Error::bad_input(
                    file,
                    "--layers",
                    format!("layer '{s}' is selected twice"),
                ));
            }
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid_argument("--layers", "no layer names given"));
    }
    Ok(out)
}

/// Decode a float tensor exactly to f64, rejecting non-float dtypes and non-finite values.
fn tensor_values(p: &Parsed<'_>, file: &str, t: &TensorEntry) -> Result<Vec<f64>> {
    let bytes = p.bytes(t);
    let values: Vec<f64> = match t.dtype {
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BOOL
        | Dtype::U8
        | Dtype::I8
        | Dtype::I16
        | Dtype::U16
        | Dtype::I32
        | Dtype::U32
        | Dtype::I64
        | Dtype::U64 => {
            return Err(Error::bad_input(
                file,
                tensor_field(&t.name),
                format!(
                    "dtype {}: integer weights are not supported; expected a floating-point dtype (F16, BF16, F32 or F64)",
                    t.dtype
                ),
            ));
        }
        other => {
            return Err(Error::bad_input(
                file,
                tensor_field(&t.name),
                format!("dtype {other} is not supported; expected F16, BF16, F32 or F64"),
            ));
        }
    };
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        let index = match t.shape.as_slice() {
            [_, cols] if *cols > 0 => format!("[{}, {}]", pos / cols, pos % cols),
            _ => format!("[{pos}]"),
        };
        return Err(Error::bad_input(
            file,
            format!("tensor '{}'{index}", t.name),
            format!(
                "value {} is not finite; expected finite parameters",
                values[pos]
            ),
        ));
    }
    Ok(values)
}

/// Build the dense layers from the stems, checking shapes, biases and values.
fn build_layers(p: &Parsed<'_>, file: &str, stems: &[String]) -> Result<Vec<Dense>> {
    let mut layers = Vec::with_capacity(stems.len());
    let mut prev: Option<&TensorEntry> = None;
    for stem in stems {
        let wname = format!("{stem}.weight");
        let bname = format!("{stem}.bias");
        let w = p
            .get(&wname)
            .ok_or_else(|| Error::Internal(format!("selected weight {wname} vanished")))?;
        let (out, inp) = match w.shape.as_slice() {
            [o, i] if *o > 0 && *i > 0 => (*o, *i),
            _ => {
                return Err(Error::bad_input(
                    file,
                    tensor_field(&wname),
                    format!(
                        "shape {}: a dense layer weight must be a non-empty matrix [out, in]",
                        shape_str(&w.shape)
                    ),
                ));
            }
        };
        if let Some(pw) = prev
            && pw.shape[0] != inp
        {
            return Err(Error::bad_input(
                file,
                tensor_field(&wname),
                format!(
                    "shape {} does not chain with '{}' of shape {}: expected {} input columns [out, {}]",
                    shape_str(&w.shape),
                    pw.name,
                    shape_str(&pw.shape),
                    pw.shape[0],
                    pw.shape[0]
                ),
            ));
        }
        let b = p.get(&bname).ok_or_else(|| {
            Error::bad_input(
                file,
                tensor_field(&bname),
                format!(
                    "missing: expected the bias '{bname}' of shape [{out}] for weight '{wname}' of shape {} (layers without bias are not supported)",
                    shape_str(&w.shape)
                ),
            )
        })?;
        if b.shape != [out] {
            return Err(Error::bad_input(
                file,
                tensor_field(&bname),
                format!(
                    "shape {} does not match weight '{wname}' of shape {}: expected [{out}]",
                    shape_str(&b.shape),
                    shape_str(&w.shape)
                ),
            ));
        }
        let wv = tensor_values(p, file, w)?;
        let bv = tensor_values(p, file, b)?;
        layers.push(Dense {
            weight: DMatrix::from_row_slice(out, inp, &wv),
            bias: DVector::from_vec(bv),
        });
        prev = Some(w);
    }
    Ok(layers)
}

/// Read a checkpoint from memory (e.g. an embedded example); `name` is used in error messages.
pub fn load_checkpoint_bytes(
    bytes: &[u8],
    name: &str,
    opts: &CheckpointOptions,
) -> Result<LoadedCheckpoint> {
    load_parsed(bytes, name, opts).map_err(one_line)
}

fn load_parsed(bytes: &[u8], name: &str, opts: &CheckpointOptions) -> Result<LoadedCheckpoint> {
    let p = parse_safetensors(bytes, name)?;
    let stems = match &opts.layers {
        Some(spec) => explicit_layers(&p, name, spec)?,
        None => detect_layers(&p, name)?,
    };
    let layers = build_layers(&p, name, &stems)?;
    let (activation, activation_source) = match (opts.activation, p.metadata.get("activation")) {
        (Some(a), _) => (a, ActivationSource::Flag),
        (None, Some(s)) => {
            let a = Activation::parse(s).map_err(|_| {
                Error::bad_input(
                    name,
                    "__metadata__.activation",
                    format!(
                        "'{s}' is not a known activation; expected relu, leaky_relu[:alpha], tanh, sigmoid, softplus or identity (or pass --activation)"
                    ),
                )
            })?;
            (a, ActivationSource::Metadata)
        }
        (None, None) => (Activation::Relu, ActivationSource::Default),
    };
    let mlp =
        Mlp::new(layers, activation).map_err(|e| Error::bad_input(name, "model", e.to_string()))?;
    let used: HashSet<String> = stems
        .iter()
        .flat_map(|s| [format!("{s}.weight"), format!("{s}.bias")])
        .collect();
    let ignored_tensors = p
        .tensors
        .iter()
        .filter(|t| !used.contains(&t.name))
        .map(|t| t.name.clone())
        .collect();
    Ok(LoadedCheckpoint {
        mlp,
        metadata: p.metadata,
        layer_names: stems,
        activation_source,
        ignored_tensors,
    })
}

/// Read a safetensors checkpoint of a dense MLP (see the module documentation for the naming
/// rules). Missing or unreadable files are [`Error::Io`]; everything else wrong with the file is
/// [`Error::BadInput`] naming the tensor or header field at fault.
pub fn load_checkpoint(path: &Path, opts: &CheckpointOptions) -> Result<LoadedCheckpoint> {
    load_checkpoint_bytes(&read_file(path)?, &display_name(path), opts)
}

/// Serialize `mlp` as safetensors with PyTorch `nn.Sequential` names (`0.weight`, `0.bias`,
/// `2.weight`, … — activations sit at the odd indices). The metadata is `metadata` plus
/// `activation` (always set from the network, overriding any given value) and `format: pt`
/// (unless given).
pub fn checkpoint_to_bytes(
    mlp: &Mlp,
    metadata: &BTreeMap<String, String>,
    dtype: SaveDtype,
) -> Result<Vec<u8>> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(2 * mlp.depth());
    let encode = |name: &str, values: &mut dyn Iterator<Item = f64>| -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (i, v) in values.enumerate() {
            match dtype {
                SaveDtype::F64 => out.extend_from_slice(&v.to_le_bytes()),
                SaveDtype::F32 => {
                    let f = v as f32;
                    if !f.is_finite() {
                        return Err(Error::invalid_argument(
                            "dtype",
                            format!("{name} entry {i} = {v} does not fit in float32; save as F64"),
                        ));
                    }
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
        }
        Ok(out)
    };
    for (j, l) in mlp.layers().iter().enumerate() {
        let (wn, bn) = (format!("{}.weight", 2 * j), format!("{}.bias", 2 * j));
        // PyTorch stores [out, in] row-major; nalgebra is column-major, so walk the rows.
        let (out, inp, weight) = (l.fan_out(), l.fan_in(), &l.weight);
        let mut row_major = (0..out).flat_map(|r| (0..inp).map(move |c| weight[(r, c)]));
        let w = encode(&wn, &mut row_major)?;
        let b = encode(&bn, &mut l.bias.iter().copied())?;
        tensors.push((wn, vec![l.fan_out(), l.fan_in()], w));
        tensors.push((bn, vec![l.fan_out()], b));
    }
    let dtype_name = match dtype {
        SaveDtype::F32 => "F32",
        SaveDtype::F64 => "F64",
    };
    let mut meta: BTreeMap<String, String> = metadata.clone();
    meta.insert("activation".into(), mlp.activation().name());
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    safetensors_bytes(&meta, dtype_name, &tensors)
}

/// The safetensors file of `tensors` (name, shape, little-endian bytes, all of dtype
/// `dtype_name`) with `metadata`, byte-deterministic: our own writer (the format is tiny), because
/// `safetensors::serialize` takes the metadata as a HashMap and writes it in a random order, so
/// the same checkpoint would get a different SHA-256 in every run.
pub(crate) fn safetensors_bytes(
    metadata: &BTreeMap<String, String>,
    dtype_name: &str,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).map_err(|e| Error::Internal(format!("metadata: {e}")))?,
    );
    let mut offset = 0usize;
    for (name, shape, bytes) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype_name,
                "shape": shape,
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        offset += bytes.len();
    }
    let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| Error::Internal(format!("safetensors header: {e}")))?;
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for (_, _, bytes) in tensors {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Write `mlp` to `path` as a PyTorch-compatible safetensors checkpoint (see
/// [`checkpoint_to_bytes`]), atomically: nothing partial is ever left at `path`.
pub fn save_checkpoint(
    path: &Path,
    mlp: &Mlp,
    metadata: &BTreeMap<String, String>,
    dtype: SaveDtype,
) -> Result<()> {
    write_atomic(path, &checkpoint_to_bytes(mlp, metadata, dtype)?)
}

#[cfg(test)]
mod tests;
