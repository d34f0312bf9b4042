//! The bound calculator (`flatcert bound`): every theorem that the numbers of a measurements
//! document (or of a certificate's `measurements`) allow, at the user's (η, B, k, ε); the rest
//! are `not_computed` with the missing quantity named. The verdicts are built by the same
//! functions as `certify` ([`super::theorems`]), so on a certificate's own measurements at its
//! own (η, B) they reproduce its verdicts for T1, T3, T4, T5, T6 and T7.

use serde::{Deserialize, Serialize};

use super::certificate::{Certificate, Verdicts};
use super::evidence::Evidence;
use super::pipeline::gauss_newton_line;
use super::plan::{Hyper, Plan};
use super::summary::{Summary, summarize};
use super::theorems::{Context, Network, evaluate};
use crate::error::{Error, Result};
use crate::measure::QuantityMap;
use crate::measurements::{MEASUREMENTS_SCHEMA, MeasurementsDoc, sha256_hex};
use crate::model::Activation;

/// Schema identifier of the bound calculator's output.
pub const BOUND_SCHEMA: &str = "flatcert.bound/v1";

/// The numbers the calculator works from.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Every quantity.
    pub quantities: QuantityMap,
    /// n.
    pub n: usize,
    /// `[d, m_1, …, C]`.
    pub widths: Vec<usize>,
    /// P.
    pub parameters: usize,
    /// Activation name.
    pub activation: String,
    /// Where the measuring command took the activation from (`flag`, `metadata`, `default`), when
    /// the document records it.
    pub activation_source: Option<String>,
    /// Schema of the document read (measurements or certificate).
    pub schema: String,
    /// For a certificate: its hyper-parameters (η-dependent diagnostics are reused at the same η).
    pub hyper: Option<Hyper>,
}

/// Where the numbers came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path as given.
    pub path: String,
    /// SHA-256 of the document.
    pub sha256: String,
    /// Its schema.
    pub schema: String,
}

/// The calculator's output (schema [`BOUND_SCHEMA`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundReport {
    /// Always [`BOUND_SCHEMA`].
    pub schema: String,
    /// The document the numbers came from.
    pub source: SourceFile,
    /// The hyper-parameters used.
    pub hyper: Hyper,
    /// One entry per theorem.
    pub verdicts: Verdicts,
    /// Overall status (over the computed theorems only).
    pub summary: Summary,
}

/// Read a measurements document (`flatcert.measurements/v1`) or a certificate
/// (`flatcert.certificate/v1`); `file` names it in errors (exit code 2), which stay on one line
/// whatever the document contains (control characters are escaped, `docs/bad_inputs.md`).
pub fn read_source(text: &str, file: &str) -> Result<Source> {
    read_source_unescaped(text, file).map_err(crate::io::one_line)
}

fn read_source_unescaped(text: &str, file: &str) -> Result<Source> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::bad_input(file, "json", format!("not JSON: {e}")))?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    match schema.as_str() {
        MEASUREMENTS_SCHEMA => {
            check_quantities(&value, "", file)?;
            let doc = MeasurementsDoc::from_json(text, std::path::Path::new(file))?;
            let i = doc.inputs;
            Ok(Source {
                quantities: doc.quantities,
                n: i.n,
                widths: i.widths,
                parameters: i.parameters,
                activation: i.activation,
                activation_source: i.activation_source,
                schema,
                hyper: None,
            })
        }
        super::certificate::CERTIFICATE_SCHEMA => {
            if let Some(m) = value.get("measurements") {
                check_quantities(m, "measurements.", file)?;
            }
            let c = Certificate::from_json(text, file)?;
            Ok(Source {
                quantities: c.measurements.quantities,
                n: c.inputs.n,
                widths: c.inputs.widths,
                parameters: c.inputs.parameters,
                activation_source: c
                    .inputs
                    .files
                    .as_ref()
                    .and_then(|f| f.activation_source.clone()),
                activation: c.inputs.activation,
                schema,
                hyper: Some(c.hyper),
            })
        }
        other => Err(Error::bad_input(
            file,
            "schema",
            format!(
                "found '{other}', expected '{MEASUREMENTS_SCHEMA}' or '{}'",
                super::certificate::CERTIFICATE_SCHEMA
            ),
        )),
    }
}

/// Every quantity of a document (the members of `obj` other than `schema`, `inputs` and `notes`)
/// is a `{value, kind, tol, …}` with finite numbers: the first that is not is named (exit code 2),
/// where a whole-document parse could only give a line and column.
fn check_quantities(obj: &serde_json::Value, prefix: &str, file: &str) -> Result<()> {
    let Some(map) = obj.as_object() else {
        return Ok(());
    };
    for (name, v) in map {
        if ["schema", "inputs", "notes"].contains(&name.as_str()) {
            continue;
        }
        let q: crate::quantity::Quantity = serde_json::from_value(v.clone()).map_err(|e| {
            crate::io::one_line(Error::bad_input(
                file,
                format!("{prefix}{name}"),
                format!("not a quantity {{value, kind, tol}}: {e}"),
            ))
        })?;
        if !q.value.is_finite() || !q.tol.is_finite() || q.tol < 0.0 {
            return Err(crate::io::one_line(Error::bad_input(
                file,
                format!("{prefix}{name}"),
                "value and tol must be finite numbers with tol ≥ 0",
            )));
        }
    }
    Ok(())
}

/// Evaluate every theorem the numbers of `src` allow at the plan's hyper-parameters.
pub fn compute(src: &Source, plan: &Plan, file: &str, text: &str) -> Result<BoundReport> {
    let outputs = match src.widths.last() {
        Some(&c) if c > 0 && src.widths.len() >= 2 => c,
        _ => {
            return Err(Error::bad_input(
                file,
                "inputs.widths",
                "expected [d, m_1, …, C] with C ≥ 1",
            ));
        }
    };
    if src.n == 0 {
        return Err(Error::bad_input(file, "inputs.n", "must be at least 1"));
    }
    plan.validate(src.n, outputs)?;
    // A layered network's documents list its distinct activations, comma-separated; the first
    // one stands for the kink hypotheses (the layered engine measures no near-kink units).
    let first_activation = src.activation.split(',').next().unwrap_or_default();
    let activation = Activation::parse(first_activation).map_err(|_| {
        Error::bad_input(
            file,
            "inputs.activation",
            format!("'{}' is not a known activation", src.activation),
        )
    })?;
    let hyper = Hyper::of(plan, src.n, src.parameters, outputs)?;
    let same_run = src.hyper.as_ref().is_some_and(|h| {
        h.eta == hyper.eta && h.batch == hyper.batch && h.sampling == hyper.sampling
    });
    let evidence = Evidence::from_map(&src.quantities);
    // A document of a layered network has ‖W‖_F and no T1a residual (THEORY §7(a)).
    let network =
        if evidence.radial.w_frobenius.is_some() && evidence.identity.matrix_residual.is_none() {
            Network::Layered {
                samples: Vec::new(),
                rel_tol: 0.0,
            }
        } else {
            Network::Dense
        };
    let ctx = Context {
        network,
        eta: hyper.eta,
        batch: plan.batch_model(src.n)?,
        outputs,
        ks: plan.ks.clone(),
        activation,
        epsilon: plan.epsilon,
        epsilon_y: plan.epsilon_y,
        tau: plan.tau,
        same_run,
        t5_reason: None,
        robust_reason: None,
        curvature: plan.curvature,
        // `--kinks strict` recorded in a certificate stays strict in the bound calculator.
        kinks_strict: plan.kinks == super::plan::KinksMode::Strict
            || src
                .hyper
                .as_ref()
                .is_some_and(|h| h.kinks == super::plan::KinksMode::Strict),
    };
    let verdicts = evaluate(&ctx, &evidence, None).map_err(|(id, e)| {
        Error::bad_input(
            file,
            format!("verdicts.{id}"),
            format!("the numbers are not valid inputs of {id}: {e}"),
        )
    })?;
    let summary = summarize(
        &verdicts,
        gauss_newton_line(&evidence),
        hyper.sampling_model.clone(),
    );
    Ok(BoundReport {
        schema: BOUND_SCHEMA.into(),
        source: SourceFile {
            path: file.to_string(),
            sha256: sha256_hex(text.as_bytes()),
            schema: src.schema.clone(),
        },
        hyper,
        verdicts,
        summary,
    })
}

impl BoundReport {
    /// Pretty JSON (every float finite; ±∞ as `"+inf"`/`"-inf"` inside verdicts).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Internal(format!("JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_schemas_and_bad_json() {
        let e = read_source("{\"schema\": \"x\"}", "m.json").unwrap_err();
        assert!(e.to_string().contains("schema"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(read_source("{", "m.json").unwrap_err().exit_code(), 2);
    }

    /// The unknown `schema` string is quoted in the message; a newline or a terminal escape in it
    /// must not break the one-line error contract (found by `fuzz_certificate`).
    #[test]
    fn quoted_schema_with_control_characters_stays_on_one_line() {
        let e = read_source("{\"schema\": \"a\\nb\\u001b[2J\"}", "m.json").unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains(['\n', '\r', '\u{1b}']), "{msg:?}");
        assert!(msg.contains("a\\nb"), "{msg:?}");
        assert_eq!(e.exit_code(), 2);
    }
}
