//! Certification (THEORY.md §3, issue 4): measure a checkpoint on its training data, build every
//! theorem's typed input from the measured numbers with their kinds, run T1 … T10 through the
//! `flatcert-bounds` crate, and issue a certificate (schema `flatcert.certificate/v1`,
//! `docs/certificate.md`). One module per job:
//!
//! | module | job |
//! |---|---|
//! | [`plan`] | validated hyper-parameters (η in the theory convention, B, sampling, k, ε, τ) |
//! | [`collect`] | the measurement stage (per-sample engine, Gram or operator path, residual, T8–T10 evidence) |
//! | [`evidence`] | the typed evidence collect produces and the theorems consume; the one table of canonical names |
//! | [`theorems`] | measured numbers → bounds-crate inputs → verdicts T1 … T10 |
//! | [`verdicts`] | one entry per theorem (verdict or `not_computed` reason), in report order |
//! | [`summary`] | overall status and the lists of open / assumed hypotheses |
//! | [`certificate`] | the document and its JSON (every float finite; ±∞ as `"+inf"`/`"-inf"`) |
//! | [`inputs`] | reloading the recorded files (and the bundled example's held-out split) |
//! | [`pipeline`] | [`run`]: plan → certificate |
//! | [`bound`] | the bound calculator: verdicts from a measurements document |
//! | [`verify`] | recompute a certificate from its files and recheck its arithmetic |

pub mod bound;
pub mod certificate;
pub mod collect;
pub mod evidence;
pub mod inputs;
pub mod layered;
pub mod pipeline;
pub mod plan;
pub mod scale;
pub mod summary;
pub mod theorems;
pub mod verdicts;
pub mod verify;

pub use certificate::{CERTIFICATE_SCHEMA, Certificate};
pub use pipeline::run;
pub use plan::{Hyper, KinksMode, LrConventionName, Plan, Provenance};
pub use summary::Summary;
pub use verdicts::{VerdictEntry, Verdicts};
