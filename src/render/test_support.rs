//! Test helpers of the report: a small certificate with chosen verdicts (unit tests only).

use flatcert_bounds::Verdict;

use crate::certify::certificate::{CertificateInputs, Measurements, VerdictEntry, Verdicts};
use crate::certify::summary::summarize;
use crate::certify::{CERTIFICATE_SCHEMA, Certificate, Hyper, Plan};
use crate::measure::QuantityMap;

/// A certificate for n = 256, C = 10, η = 0.2, B = 16 with `verdicts` (the other theorems
/// `not_computed`), moment orders `ks` and optional ε.
pub fn certificate_with(verdicts: Vec<Verdict>, ks: &[u32], epsilon: Option<f64>) -> Certificate {
    let mut plan = Plan::new(0.2, 16);
    plan.ks = ks.to_vec();
    plan.epsilon = epsilon;
    let hyper = Hyper::of(&plan, 256, 8970, 10).expect("valid plan");
    let mut vs = Verdicts::default();
    for id in crate::certify::certificate::THEOREMS {
        vs.set(
            id,
            VerdictEntry::NotComputed(format!("{id} not in this test")),
        );
    }
    for v in verdicts {
        let id = v.theorem.clone();
        vs.set(&id, VerdictEntry::Computed(Box::new(v)));
    }
    let summary = summarize(&vs, None, hyper.sampling_model.clone());
    Certificate {
        schema: CERTIFICATE_SCHEMA.into(),
        inputs: CertificateInputs {
            files: None,
            activation: "relu".into(),
            widths: vec![64, 64, 64, 10],
            n: 256,
            parameters: 8970,
            test_n: None,
            architecture: None,
        },
        hyper,
        measurements: Measurements {
            notes: vec!["a note with a | pipe".into()],
            quantities: QuantityMap::new(),
        },
        verdicts: vs,
        summary,
        per_point: None,
    }
}
