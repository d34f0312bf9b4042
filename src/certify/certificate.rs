//! The certificate document (schema `flatcert.certificate/v1`, field by field in
//! `docs/certificate.md`): inputs with SHA-256, hyper-parameters, measurements (the format of
//! `flatcert measure`), one verdict per theorem keyed `"T1"` … `"T10"` (or a `not_computed`
//! reason) and a summary. Every JSON number is finite: infinite bounds are written as the strings
//! `"+inf"`/`"-inf"` exactly as the bounds crate does.

use serde::{Deserialize, Serialize};

use super::plan::{Hyper, Provenance, parse_sampling};
use super::summary::Summary;
pub use super::verdicts::{THEOREMS, VerdictEntry, Verdicts, theorem_rank};
use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::quantity::Quantity;

/// Schema identifier of the certificate.
pub const CERTIFICATE_SCHEMA: &str = "flatcert.certificate/v1";

/// What was certified: the network, the data and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateInputs {
    /// Files (paths as given or `<embedded:…>`, SHA-256) and load options; `None` when the
    /// library was called on in-memory data (such a certificate cannot be verified).
    pub files: Option<Provenance>,
    /// Activation name.
    pub activation: String,
    /// Layer widths `[d, m_1, …, C]`.
    pub widths: Vec<usize>,
    /// Number of training samples n.
    pub n: usize,
    /// Number of parameters P.
    pub parameters: usize,
    /// Number of held-out samples (T8 coverage), if any.
    #[serde(default)]
    pub test_n: Option<usize>,
    /// A layered network's architecture spec (docs/cnn.md); absent for dense MLPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<serde_json::Value>,
}

/// The measurements: every quantity under its canonical name at the top level (the format of
/// `flatcert measure --json`, `docs/measurements.md`), plus notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Warnings a reader must see (kinks, residual, Gauss–Newton substitution, …).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Every quantity.
    #[serde(flatten)]
    pub quantities: QuantityMap,
}

/// One training point of the optional per-point section (`--per-point`, issue 12 item 4): its
/// T10 Lipschitz bound and T9 results at ε, each number with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointEntry {
    /// Sample index i (0-based, order of the training data).
    pub index: usize,
    /// T10: L_i(ε), an upper bound of the Lipschitz constant of f on the ε-ball around x_i
    /// (kind upper).
    pub lipschitz: Quantity,
    /// T9(b)/(c): whether the point's prediction is certified on the whole ε-ball.
    pub certified_at_eps: bool,
    /// T9: the certified radius, a rigorous lower bound of the largest certified radius (kind
    /// lower; a value equal to the search cap 4ε means "at least this"), if searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_radius: Option<Quantity>,
    /// Classification: a lower bound of the margin f_y − max_{c≠y} f_c at x_i (kind lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<Quantity>,
    /// With targets: an upper bound of ‖f(x_i) − y_i‖ (kind upper).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residual_norm: Option<Quantity>,
}

/// The optional per-point section of a certificate (`--per-point`; T9, T10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerPoint {
    /// The radius ε (ℓ2, units of the inputs after `--x-scale`).
    pub epsilon: f64,
    /// One entry per training point, in sample order.
    pub points: Vec<PointEntry>,
}

impl PerPoint {
    /// The section from T8–T10's per-point certificates.
    pub fn of(certs: &crate::measure::robustness::PointCertificates) -> Self {
        Self {
            epsilon: certs.eps,
            points: certs
                .points
                .iter()
                .map(|p| PointEntry {
                    index: p.index,
                    lipschitz: p.lipschitz.lip.clone(),
                    certified_at_eps: p.certified_at_eps,
                    certified_radius: p.certified_radius.clone(),
                    margin: p.margin.clone(),
                    residual_norm: p.residual_norm.clone(),
                })
                .collect(),
        }
    }

    /// The `k` worst points: smallest certified radius first (uncertified before certified when
    /// no radius was searched), ties by the largest Lipschitz bound.
    pub fn worst(&self, k: usize) -> Vec<&PointEntry> {
        let mut v: Vec<&PointEntry> = self.points.iter().collect();
        let radius = |p: &PointEntry| p.certified_radius.as_ref().map_or(0.0, |q| q.value);
        v.sort_by(|a, b| {
            (a.certified_at_eps, radius(a))
                .partial_cmp(&(b.certified_at_eps, radius(b)))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.lipschitz.value.total_cmp(&a.lipschitz.value))
        });
        v.truncate(k);
        v
    }
}

/// A certificate (schema [`CERTIFICATE_SCHEMA`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// Always [`CERTIFICATE_SCHEMA`].
    pub schema: String,
    /// What was certified.
    pub inputs: CertificateInputs,
    /// The hyper-parameters (η in both conventions, B, n, p, π, k, sampling, ε, seeds, version).
    pub hyper: Hyper,
    /// Every measured quantity.
    pub measurements: Measurements,
    /// One entry per theorem T1 … T10.
    pub verdicts: Verdicts,
    /// Overall status and the lists of open and assumed hypotheses.
    pub summary: Summary,
    /// Per training point T9/T10 results (`--per-point`, with `--epsilon`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_point: Option<PerPoint>,
}

impl Certificate {
    /// Pretty JSON. Fails (internal error) if a measured number is not finite; infinite bounds
    /// inside verdicts are written as `"+inf"`/`"-inf"` and NaN is never written.
    pub fn to_json(&self) -> Result<String> {
        check_quantities_finite(&self.measurements.quantities)?;
        for (id, e) in self.verdicts.iter() {
            if let Some(v) = e.verdict()
                && !v.is_well_formed()
            {
                return Err(Error::Numerical(format!(
                    "verdict {id} holds a NaN (a bug: every float must be finite or ±∞)"
                )));
            }
        }
        serde_json::to_string_pretty(self).map_err(|e| Error::Internal(format!("JSON: {e}")))
    }

    /// Parse and validate a certificate; `file` names it in error messages (exit code 2 for
    /// anything malformed, on one line: text quoted from the document is escaped).
    pub fn from_json(text: &str, file: &str) -> Result<Self> {
        Self::parse(text, file).map_err(crate::io::one_line)
    }

    fn parse(text: &str, file: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::bad_input(file, "json", format!("not JSON: {e}")))?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(CERTIFICATE_SCHEMA) => {}
            Some(other) => {
                return Err(Error::bad_input(
                    file,
                    "schema",
                    format!("found '{other}', expected '{CERTIFICATE_SCHEMA}'"),
                ));
            }
            None => {
                return Err(Error::bad_input(
                    file,
                    "schema",
                    format!("missing; expected '{CERTIFICATE_SCHEMA}'"),
                ));
            }
        }
        let cert: Certificate = serde_json::from_value(value)
            .map_err(|e| Error::bad_input(file, "certificate", e.to_string()))?;
        // `bound` and `verify` rebuild the plan from this string: reject it here, naming the
        // field, rather than later as if the user had passed a bad `--sampling`.
        if parse_sampling(&cert.hyper.sampling).is_err() {
            return Err(Error::bad_input(
                file,
                "hyper.sampling",
                format!(
                    "'{}' is not a sampling model; expected without_replacement or with_replacement",
                    cert.hyper.sampling
                ),
            ));
        }
        for (name, q) in &cert.measurements.quantities {
            if !q.value.is_finite() || !q.tol.is_finite() || q.tol < 0.0 {
                return Err(Error::bad_input(
                    file,
                    format!("measurements.{name}"),
                    "value and tol must be finite numbers with tol >= 0",
                ));
            }
        }
        for (id, e) in cert.verdicts.iter() {
            if let Some(v) = e.verdict()
                && !v.is_well_formed()
            {
                return Err(Error::bad_input(
                    file,
                    format!("verdicts.{id}"),
                    "a number is NaN or malformed",
                ));
            }
        }
        Ok(cert)
    }
}

/// Every quantity's value and tol finite.
pub fn check_quantities_finite(q: &QuantityMap) -> Result<()> {
    for (name, q) in q {
        if !q.value.is_finite() || !q.tol.is_finite() {
            return Err(Error::Numerical(format!(
                "quantity {name} is not finite (value {}, tol {})",
                q.value, q.tol
            )));
        }
    }
    Ok(())
}
