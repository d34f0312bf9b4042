//! The measurements document (`flatcert measure --json`): every quantity under its canonical
//! name at the top level, as `{value, kind, tol, method?, note?}`, plus the inputs that produced
//! it. The same document is what the bound calculator reads (`flatcert bound --measurements`).
//! Field names are a contract, documented in `docs/measurements.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::measure::QuantityMap;

/// Schema identifier of the measurements document.
pub const MEASUREMENTS_SCHEMA: &str = "flatcert.measurements/v1";

/// Where an input came from: path (or `<embedded:…>`) and SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path as given, or `<embedded:name>`.
    pub path: String,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The inputs of a measurement run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementInputs {
    /// The checkpoint.
    pub model: InputFile,
    /// The inputs x.
    pub x: InputFile,
    /// The targets, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<InputFile>,
    /// Activation name.
    pub activation: String,
    /// Where the activation came from: `flag` (`--activation`), `metadata` (the checkpoint's
    /// `activation` key) or `default` (neither: relu assumed, and the notes say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_source: Option<String>,
    /// Layer widths `[d, m_1, …, C]`.
    pub widths: Vec<usize>,
    /// Number of samples n.
    pub n: usize,
    /// Number of parameters P.
    pub parameters: usize,
    /// Input scaling applied (`--x-scale`), 1 if none.
    pub x_scale: f64,
    /// Orders k of the moments.
    pub k: Vec<u32>,
    /// flatcert version that computed the document.
    pub flatcert_version: String,
    /// A layered network's architecture spec (docs/cnn.md), every size filled in; absent for
    /// dense MLPs (whose `widths` and `activation` say it all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<serde_json::Value>,
}

/// A measurements document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementsDoc {
    /// Always [`MEASUREMENTS_SCHEMA`].
    pub schema: String,
    /// What was measured.
    pub inputs: MeasurementInputs,
    /// Free-form notes (warnings about kinks, substitutions, …).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Every quantity by canonical name (flattened to the top level).
    #[serde(flatten)]
    pub quantities: QuantityMap,
}

impl MeasurementsDoc {
    /// Serialize to pretty JSON. Fails if any number is not finite (JSON has no ∞/NaN and a
    /// certificate must never carry one silently).
    pub fn to_json(&self) -> Result<String> {
        for (name, q) in &self.quantities {
            if !q.value.is_finite() || !q.tol.is_finite() {
                return Err(Error::Numerical(format!(
                    "quantity {name} is not finite (value {}, tol {})",
                    q.value, q.tol
                )));
            }
        }
        serde_json::to_string_pretty(self).map_err(|e| Error::Internal(format!("JSON: {e}")))
    }

    /// Parse and validate a document read from `path` (for error messages). Errors are
    /// [`Error::BadInput`] naming the file and the field, on one line (text quoted from the
    /// document is escaped).
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        Self::parse(text, path).map_err(crate::io::one_line)
    }

    fn parse(text: &str, path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let doc: MeasurementsDoc = serde_json::from_str(text).map_err(|e| {
            Error::bad_input(&file, "json", format!("not a measurements document: {e}"))
        })?;
        if doc.schema != MEASUREMENTS_SCHEMA {
            return Err(Error::bad_input(
                &file,
                "schema",
                format!("found '{}', expected '{MEASUREMENTS_SCHEMA}'", doc.schema),
            ));
        }
        for (name, q) in &doc.quantities {
            if !q.value.is_finite() || !q.tol.is_finite() || q.tol < 0.0 {
                return Err(Error::bad_input(
                    &file,
                    name,
                    "value and tol must be finite numbers with tol ≥ 0",
                ));
            }
        }
        Ok(doc)
    }
}

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Render a quantity map as an aligned text table (name, value, kind, tol).
pub fn quantity_table(q: &QuantityMap) -> String {
    let width = q.keys().map(|k| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<width$}  {:>16}  {:<8}  {:>10}\n",
        "quantity", "value", "kind", "tol"
    ));
    for (name, v) in q {
        let kind = serde_json::to_value(v.kind)
            .ok()
            .and_then(|j| j.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{name:<width$}  {:>16.9e}  {kind:<8}  {:>10.2e}\n",
            v.value, v.tol
        ));
    }
    out
}

/// A BTreeMap alias re-exported for the CLI's metadata maps.
pub type Metadata = BTreeMap<String, String>;

/// The network in one line for the headers of every text and Markdown output: a dense MLP as
/// `relu MLP [64, 64, 10], P = 4810`; a layered network (`architecture` = its spec JSON,
/// docs/cnn.md) as its layers, `CNN [1, 8, 8] → conv2d 8@3×3 p1 → relu → maxpool2d 2×2 → … →
/// linear 10, P = 6058`.
pub fn network_label(
    activation: &str,
    widths: &[usize],
    parameters: usize,
    architecture: Option<&serde_json::Value>,
) -> String {
    let Some(arch) = architecture else {
        return format!("{activation} MLP {widths:?}, P = {parameters}");
    };
    // A kernel as `3×3`; a stride or padding as one number when both sides agree.
    let pair_as = |v: &serde_json::Value, square: bool| -> String {
        match v
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect::<Vec<_>>())
        {
            Some(a) if a.len() == 2 && a[0] == a[1] && !square => a[0].to_string(),
            Some(a) if a.len() == 2 => format!("{}×{}", a[0], a[1]),
            _ => v.to_string(),
        }
    };
    let pair = |v: &serde_json::Value| pair_as(v, true);
    let one = |v: &serde_json::Value| pair_as(v, false);
    let is_one = |v: &serde_json::Value, one: u64| {
        v.as_array()
            .is_none_or(|a| a.iter().all(|x| x.as_u64() == Some(one)))
    };
    let mut parts = vec![format!(
        "CNN {}",
        arch.get("input_shape")
            .map_or_else(|| "?".to_string(), |s| s.to_string().replace(',', ", "))
    )];
    for l in arch
        .get("layers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let ty = l
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        let get = |k: &str| l.get(k).cloned().unwrap_or(serde_json::Value::Null);
        parts.push(match ty {
            "conv2d" => {
                let mut t = format!("conv2d {}@{}", get("out_channels"), pair(&get("kernel")));
                if !is_one(&get("stride"), 1) {
                    t.push_str(&format!(" s{}", one(&get("stride"))));
                }
                if !is_one(&get("padding"), 0) {
                    t.push_str(&format!(" p{}", one(&get("padding"))));
                }
                t
            }
            "linear" => format!("linear {}", get("out_features")),
            "maxpool2d" | "avgpool2d" => {
                let (k, s) = (get("kernel"), get("stride"));
                if k == s {
                    format!("{ty} {}", pair(&k))
                } else {
                    format!("{ty} {} s{}", pair(&k), one(&s))
                }
            }
            other => other.to_string(),
        });
    }
    format!("{}, P = {parameters}", parts.join(" → "))
}

impl MeasurementInputs {
    /// [`network_label`] of these inputs.
    pub fn network_label(&self) -> String {
        network_label(
            &self.activation,
            &self.widths,
            self.parameters,
            self.architecture.as_ref(),
        )
    }
}

#[cfg(test)]
mod label_tests {
    use super::network_label;

    #[test]
    fn dense_and_layered_networks_are_named_for_what_they_are() {
        assert_eq!(
            network_label("relu", &[64, 64, 10], 4810, None),
            "relu MLP [64, 64, 10], P = 4810"
        );
        let arch = serde_json::json!({"input_shape": [3, 32, 32], "layers": [
            {"type": "conv2d", "name": "c", "out_channels": 16, "kernel": [3, 3],
             "stride": [2, 2], "padding": [1, 0]},
            {"type": "batchnorm2d", "name": "bn", "eps": 1e-5},
            {"type": "leaky_relu", "negative_slope": 0.1},
            {"type": "maxpool2d", "kernel": [3, 3], "stride": [2, 2]},
            {"type": "avgpool2d", "kernel": [2, 2], "stride": [2, 2]},
            {"type": "flatten"},
            {"type": "linear", "name": "fc", "out_features": 2}]});
        assert_eq!(
            network_label("relu", &[3072, 16, 2], 99, Some(&arch)),
            "CNN [3, 32, 32] → conv2d 16@3×3 s2 p1×0 → batchnorm2d → leaky_relu → maxpool2d 3×3 s2 \
             → avgpool2d 2×2 → flatten → linear 2, P = 99"
        );
    }
}
