//! `flatcert verify`: recompute a certificate from the files it references and recheck every
//! verdict's arithmetic.
//!
//! Order of the checks (the first disagreement is reported):
//! 1. the document parses as schema `flatcert.certificate/v1`, every number finite (else
//!    [`Error::BadInput`], exit code 2: it cannot be verified);
//! 2. the arithmetic of every check: its status recomputed from its own `lhs`, `rhs` and relation
//!    (THEORY §3 rule) equals the stored status; the summary recomputed from the verdicts equals
//!    the stored summary;
//! 3. the SHA-256 of every referenced file (embedded example supported) equals the recorded one;
//!    a relative recorded path is resolved against the certificate's directory first, then the
//!    current directory, and the file actually read is reported (`checked`);
//! 4. the whole pipeline re-run on those files at the recorded hyper-parameters gives the same
//!    inputs, hyper-parameters, measurements, verdicts and summary: numbers within the stated
//!    tolerance (the larger `tol` of the two, plus 1e-9 relative), strings equal (free-text
//!    `note`/`notes` excepted).
//!
//! Steps 2–4 failing is a *disagreement* (exit code 1, the first disagreeing field named);
//! missing files or a certificate without file records are exit code 2.

use std::path::Path;

use serde_json::Value as Json;

use super::certificate::{Certificate, VerdictEntry};
use super::inputs::{RecordedNetwork, load};
use super::pipeline::run;
use super::plan::{Plan, parse_sampling};
use super::summary::{status_name, summarize};
use crate::error::{Error, Result};

/// Relative slack on top of the stated tolerances.
pub const REL_SLACK: f64 = 1e-9;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The first disagreeing field and why; `None` when everything agrees.
    pub disagreement: Option<String>,
    /// What was checked, one line each.
    pub checked: Vec<String>,
}

impl Outcome {
    /// True when everything agrees.
    pub fn agrees(&self) -> bool {
        self.disagreement.is_none()
    }
}

/// Step 2: the arithmetic of every check and the summary.
pub fn recheck_arithmetic(cert: &Certificate) -> Option<String> {
    for (id, entry) in cert.verdicts.iter() {
        let VerdictEntry::Computed(v) = entry else {
            continue;
        };
        for (list, checks) in [
            ("hypotheses", &v.hypotheses),
            ("diagnostics", &v.diagnostics),
        ] {
            for c in checks.iter() {
                let again = c.recompute();
                if again != c.status {
                    return Some(format!(
                        "verdicts.{id}.{list}.{}.status: stored '{}', but its lhs/rhs give '{}'",
                        c.name,
                        status_name(c.status),
                        status_name(again)
                    ));
                }
                if c.recompute_confidence() != c.confidence {
                    return Some(format!(
                        "verdicts.{id}.{list}.{}.confidence: stored {:?}, but its lhs/rhs give {:?}",
                        c.name,
                        c.confidence.map(|c| c.delta),
                        c.recompute_confidence().map(|c| c.delta)
                    ));
                }
            }
        }
    }
    let s = summarize(
        &cert.verdicts,
        cert.summary.gauss_newton.clone(),
        cert.summary.sampling_caveat.clone(),
    );
    if s != cert.summary {
        let a = serde_json::to_value(&cert.summary).unwrap_or(Json::Null);
        let b = serde_json::to_value(&s).unwrap_or(Json::Null);
        let field = diff("summary", &a, &b, 0.0).unwrap_or_else(|| "summary".into());
        return Some(format!(
            "{field}: the summary does not follow from the verdicts"
        ));
    }
    None
}

/// The plan that produced `cert` (from its hyper-parameters and file records).
pub fn plan_of(cert: &Certificate) -> Result<Plan> {
    let h = &cert.hyper;
    let mut p = Plan::new(h.lr_given, h.batch);
    p.lr_convention = h.lr_convention;
    p.sampling = parse_sampling(&h.sampling)?;
    p.ks = h.k.clone();
    p.epsilon = h.epsilon;
    p.epsilon_y = h.epsilon_y;
    p.tau = h.tau;
    p.gram_limit = h.gram_limit;
    p.seed = h.seed;
    p.t10_samples = h.t10_samples;
    p.radius_steps = h.radius_steps;
    p.t5_steps = h.t5_steps;
    p.t5_rank = h.t5_rank;
    p.delta = h.delta;
    p.max_products = h.max_products;
    p.curvature = h.curvature;
    p.kinks = h.kinks;
    p.provenance = cert.inputs.files.clone();
    Ok(p)
}

/// Verify the certificate text read from `path`.
pub fn verify(text: &str, path: &Path) -> Result<Outcome> {
    let file = path.display().to_string();
    let cert = Certificate::from_json(text, &file)?;
    let mut checked = Vec::new();
    if let Some(d) = recheck_arithmetic(&cert) {
        return Ok(Outcome {
            disagreement: Some(d),
            checked,
        });
    }
    checked.push("arithmetic of every check and the summary".to_string());
    let Some(prov) = &cert.inputs.files else {
        return Err(Error::bad_input(
            &file,
            "inputs.files",
            "the certificate records no input files (issued on in-memory data): nothing to \
             recompute from",
        ));
    };
    let base = path.parent();
    let loaded = load(prov, base, cert.inputs.architecture.as_ref())?;
    for (role, from) in &loaded.read_from {
        checked.push(format!("read {role} from {from}"));
    }
    for (role, recorded, now) in &loaded.hashes {
        if recorded != now {
            return Ok(Outcome {
                disagreement: Some(format!(
                    "inputs.files.{role}.sha256: the file changed since certification (recorded \
                     {recorded}, now {now})"
                )),
                checked,
            });
        }
    }
    checked.push(format!("SHA-256 of {} input files", loaded.hashes.len()));
    let plan = plan_of(&cert)?;
    let again = match loaded.network {
        RecordedNetwork::Dense(mlp) => run(&mlp, &loaded.data, loaded.test.as_ref(), &plan)?,
        RecordedNetwork::Layered(net, spec) => {
            let problem = crate::problem::NetProblem {
                net: *net,
                spec: *spec,
                arch_source: crate::net::ArchSource::Given,
                data: loaded.data,
                model_file: prov.model.clone(),
                arch_file: None,
                x_file: prov.x.clone(),
                y_file: prov.y.clone(),
                x_scale: prov.x_scale,
                metadata: Default::default(),
                embedded: prov.embedded,
            };
            super::layered::run_detailed(&problem, loaded.test.as_ref(), &plan)?.0
        }
    };
    let a = serde_json::to_value(&cert).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
    let b = serde_json::to_value(&again).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
    for key in ["inputs", "hyper", "measurements", "verdicts", "summary"] {
        if let Some(d) = diff(key, &a[key], &b[key], 0.0) {
            return Ok(Outcome {
                disagreement: Some(d),
                checked,
            });
        }
    }
    checked.push(format!(
        "recomputation: {} quantities and {} verdicts agree within their tolerances",
        cert.measurements.quantities.len(),
        cert.verdicts.0.len()
    ));
    Ok(Outcome {
        disagreement: None,
        checked,
    })
}

fn as_num(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) if s == "+inf" || s == "inf" => Some(f64::INFINITY),
        Json::String(s) if s == "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// The first difference between two JSON trees (`None` if they agree): numbers within
/// `tol + REL_SLACK·max(|a|, |b|)`, where an object with a numeric `tol` field (a quantity or a
/// value) widens `tol` for its members; strings and booleans equal; `note`/`notes` skipped.
pub fn diff(path: &str, a: &Json, b: &Json, tol: f64) -> Option<String> {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let own = |o: &serde_json::Map<String, Json>| o.get("tol").and_then(as_num);
            let t = match (own(x), own(y)) {
                (Some(p), Some(q)) if p.is_finite() && q.is_finite() => tol.max(p).max(q),
                _ => tol,
            };
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if k == "note" || k == "notes" {
                    continue;
                }
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = diff(&p, u, v, t) {
                            return Some(d);
                        }
                    }
                    (Some(_), None) => return Some(format!("{p}: not in the recomputation")),
                    (None, Some(_)) => return Some(format!("{p}: missing from the certificate")),
                    (None, None) => {}
                }
            }
            None
        }
        (Json::Array(x), Json::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!(
                    "{path}: {} entries in the certificate, {} recomputed",
                    x.len(),
                    y.len()
                ));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (u, v))| diff(&format!("{path}[{i}]"), u, v, tol))
        }
        _ => match (as_num(a), as_num(b)) {
            (Some(p), Some(q)) => {
                let agree = p == q
                    || (p.is_finite()
                        && q.is_finite()
                        && (p - q).abs() <= tol + REL_SLACK * p.abs().max(q.abs()));
                (!agree).then(|| {
                    format!("{path}: certificate has {p:e}, recomputed {q:e} (tolerance {tol:e})")
                })
            }
            _ => (a != b).then(|| format!("{path}: certificate has {a}, recomputed {b}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_respects_tolerances_and_names_the_field() {
        let a =
            json!({"q": {"value": 1.0, "kind": "exact", "tol": 1e-3}, "s": "x", "notes": ["a"]});
        let b =
            json!({"q": {"value": 1.0005, "kind": "exact", "tol": 1e-3}, "s": "x", "notes": ["b"]});
        assert_eq!(diff("m", &a, &b, 0.0), None);
        let c = json!({"q": {"value": 1.01, "kind": "exact", "tol": 1e-3}, "s": "x"});
        assert!(diff("m", &a, &c, 0.0).unwrap().starts_with("m.q.value"));
        let d = json!({"q": {"value": 1.0, "kind": "upper", "tol": 1e-3}, "s": "x"});
        assert!(diff("m", &a, &d, 0.0).unwrap().starts_with("m.q.kind"));
        assert_eq!(diff("v", &json!("+inf"), &json!("+inf"), 0.0), None);
        assert!(diff("v", &json!([1, 2]), &json!([1]), 0.0).is_some());
    }
}
