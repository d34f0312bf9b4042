//! Reading and writing CNN checkpoints: safetensors state_dicts whose architecture comes from
//! the metadata key [`ARCH_METADATA_KEY`] or from a separate spec (`--arch`), docs/cnn.md.
//!
//! The file layout is validated by the `safetensors` crate (header length, offsets, sizes); the
//! dense-MLP reader `io::checkpoint` is left untouched.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::arch::{ARCH_METADATA_KEY, ArchSpec};
use super::error::NetError;
use super::sequential::Sequential;
use crate::error::{Error, Result};
use crate::io::{read_file, read_text_file};

/// Where a loaded network's architecture came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchSource {
    /// Given explicitly (`--arch` or the API).
    Given,
    /// The checkpoint's `__metadata__.flatcert_arch`.
    Metadata,
}

/// A checkpoint read into a [`Sequential`].
#[derive(Debug)]
pub struct LoadedNet {
    /// The network, parameters converted exactly to f64.
    pub net: Sequential,
    /// The architecture used.
    pub spec: ArchSpec,
    /// Where it came from.
    pub arch_source: ArchSource,
    /// The safetensors `__metadata__` (empty when absent).
    pub metadata: BTreeMap<String, String>,
}

/// The crate error for a [`NetError`] met while reading `file`: [`Error::BadInput`] naming the
/// file and the field, tensor or layer at fault (exit code 2).
pub fn in_file(file: &str, e: NetError) -> Error {
    match e {
        NetError::Spec { field, message } => {
            Error::bad_input(file, format!("architecture {field}"), message)
        }
        NetError::Weights { tensor, message } => {
            Error::bad_input(file, format!("tensor '{tensor}'"), message)
        }
        NetError::Shape {
            layer,
            got,
            expected,
        } => Error::bad_input(
            file,
            layer.to_string(),
            format!("input shape {got}: {expected}"),
        ),
        NetError::Layer { layer, message } => Error::bad_input(file, layer.to_string(), message),
        other => Error::bad_input(file, "model", other.to_string()),
    }
}

/// The float dtypes [`decode`] reads.
fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16)
}

/// Decode a float tensor exactly to f64; integer dtypes and non-finite values are refused.
fn decode(file: &str, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f64>> {
    let vals: Vec<f64> = match dtype {
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8")))
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("chunks of 4"))))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        other => {
            return Err(Error::bad_input(
                file,
                format!("tensor '{name}'"),
                format!("dtype {other} is not supported; expected F16, BF16, F32 or F64"),
            ));
        }
    };
    if let Some(pos) = vals.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_input(
            file,
            format!("tensor '{name}'[{pos}] (flat index)"),
            format!(
                "value {} is not finite; expected finite parameters",
                vals[pos]
            ),
        ));
    }
    Ok(vals)
}

/// Read a CNN checkpoint from memory; `file` names it in errors. With `arch = None` the
/// architecture must be in the metadata key [`ARCH_METADATA_KEY`].
pub fn load_net_bytes(bytes: &[u8], file: &str, arch: Option<&ArchSpec>) -> Result<LoadedNet> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::bad_input(
            file,
            "header",
            format!("not a valid safetensors file ({e}); save with safetensors.torch.save_file"),
        )
    })?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::bad_input(file, "header", e.to_string()))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let (spec, arch_source) = match arch {
        Some(a) => (a.clone(), ArchSource::Given),
        None => {
            let text = metadata.get(ARCH_METADATA_KEY).ok_or_else(|| {
                Error::bad_input(
                    file,
                    format!("__metadata__.{ARCH_METADATA_KEY}"),
                    "missing: a state_dict has no strides, paddings or pools, so a CNN checkpoint needs its architecture in the metadata or from --arch (docs/cnn.md)",
                )
            })?;
            let spec = ArchSpec::from_json(text).map_err(|e| in_file(file, e))?;
            (spec, ArchSource::Metadata)
        }
    };
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        // PyTorch's BatchNorm step counter is an integer and has no role in eval mode: kept
        // undecoded, so that the spec decides whether it belongs to a batchnorm2d layer.
        if name.ends_with(".num_batches_tracked") && !is_float(view.dtype()) {
            tensors.insert(name, (view.shape().to_vec(), Vec::new()));
            continue;
        }
        let vals = decode(file, &name, view.dtype(), view.data())?;
        tensors.insert(name, (view.shape().to_vec(), vals));
    }
    let net = spec.build(&tensors).map_err(|e| in_file(file, e))?;
    Ok(LoadedNet {
        net,
        spec,
        arch_source,
        metadata,
    })
}

/// Read a CNN checkpoint; `arch` is an optional spec file (`--arch`) in the same JSON format,
/// which takes precedence over the metadata.
pub fn load_net(path: &Path, arch: Option<&Path>) -> Result<LoadedNet> {
    let spec = match arch {
        Some(p) => {
            let text = read_text_file(p)?;
            let name = p.display().to_string();
            Some(ArchSpec::from_json(&text).map_err(|e| in_file(&name, e))?)
        }
        None => None,
    };
    load_net_bytes(
        &read_file(path)?,
        &path.display().to_string(),
        spec.as_ref(),
    )
}

/// Serialize `net` as a safetensors state_dict (F64, exact) with tensors `<name>.weight` and
/// `<name>.bias` and its architecture under [`ARCH_METADATA_KEY`], plus `metadata`.
pub fn net_to_safetensors(
    net: &Sequential,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let spec = ArchSpec::of(net);
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (j, l) in net.layers().iter().enumerate() {
        let Some(nw) = l.weight_len() else { continue };
        let name = l.name().filter(|n| !n.is_empty()).ok_or_else(|| {
            Error::Internal(format!(
                "layer {j} ({}) has parameters but no name",
                l.kind()
            ))
        })?;
        let p = l.params();
        let nb = p.len() - nw;
        let wshape = match l.spec() {
            super::arch::LayerSpec::Conv2d {
                window,
                in_channels,
                ..
            } => {
                let ci = in_channels.unwrap_or(1);
                vec![nb, ci, window.kernel.0, window.kernel.1]
            }
            super::arch::LayerSpec::BatchNorm2d { .. } => vec![nw],
            _ => vec![nb, nw / nb],
        };
        let bytes = |v: &[f64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        owned.push((format!("{name}.weight"), wshape, bytes(&p[..nw])));
        owned.push((format!("{name}.bias"), vec![nb], bytes(&p[nw..])));
        for (suffix, values) in l.buffers() {
            owned.push((
                format!("{name}.{suffix}"),
                vec![values.len()],
                bytes(&values),
            ));
        }
    }
    let mut meta = metadata.clone();
    meta.insert(ARCH_METADATA_KEY.into(), spec.to_json());
    crate::io::checkpoint::safetensors_bytes(&meta, "F64", &owned)
}
