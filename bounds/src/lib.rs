//! # flatcert-bounds
//!
//! The theorems T1–T10 of flatcert's mathematical specification (THEORY.md) as pure functions on
//! measured numbers: no model, no I/O, no printing. Each theorem has a typed input and a `check`
//! that returns a [`Verdict`]: its hypotheses as [`Check`]s (certified, violated, inconclusive,
//! estimated or assumed, with margins), diagnostics, and conclusions that are numbers with their
//! [`Kind`] (exact, upper, lower, interval, estimate). The formulas are also exposed as small
//! public functions, generic over [`Scalar`] so that the same formula evaluates on `f64` (the
//! number) or on [`Value`] (outward-rounded rigorous sides, THEORY §3).
//!
//! | theorem | module | what it decides or bounds |
//! |---|---|---|
//! | T1 | [`t1`] | first-layer identity ∇_x f·xᵀ = Wᵀ∇_W f (residual check) |
//! | T2 | [`t2`] | ‖J_x‖_F‖x‖ ≤ ‖W‖₂‖J_W‖_F, spectral and entrywise (N_q) forms |
//! | T3 | [`t3`] | (1/n)Σ‖J_x‖_F²‖x‖² ≤ ‖W‖₂² tr G_W ≤ ‖W‖₂² tr G |
//! | T4 | [`t4`] | first moment: λ_max(H) ≤ 2/η, η_GD* |
//! | T5 | [`t5`] | mean-square stability by the η* route, necessary tests, Wu–Ma–E |
//! | T5(f) | [`truncation`] | the proven truncation allowance of a rank-r spectrum and the rank-search rules |
//! | T6 | [`t6`] | k-th moments: β_k, exact directional test (DP and closed forms) |
//! | T7 | [`t7`] | Sobolev bounds (a)–(e) next to measured values |
//! | T8 | [`t8`] | generalization near the training set |
//! | T9 | [`t9`] | robustness radii, certified fraction, Markov fraction bound |
//! | T10 | [`t10`] | certified local Lipschitz bound: min of three bounds, looseness |
//!
//! Shared pieces: [`kind`] (values and their arithmetic), [`verdict`] (the §3 rules),
//! [`sampling`] (p, π, the learning-rate convention), [`moments`] (the orders k each theorem and
//! command accepts), [`round`] (directed rounding, γ_k).
//!
//! **JSON.** Every type is `Serialize + Deserialize`. Infinite floats (vacuous bounds such as
//! 2C/(ηp) at p = 0, η* = +∞ at r = 0, one-sided margins) are written as the strings `"+inf"` and
//! `"-inf"`, so every JSON number is finite; conclusions with an infinite value also carry
//! `vacuous: true`. NaN is never produced and cannot be serialized.
//!
//! ```
//! use flatcert_bounds::{BatchModel, Sampling, Status, Value};
//! use flatcert_bounds::t5::{check, T5Input};
//!
//! // THEORY §5, B = 2 without replacement, η = 0.3, given λ_max(𝒟̃) = 2.7557778462.
//! let input = T5Input {
//!     eta: 0.3,
//!     batch: BatchModel::new(3, 2, Sampling::WithoutReplacement)?,
//!     outputs: 1,
//!     lambda_max_d: Value::interval(2.7557778462, 2.7557778462),
//!     sufficient: None,
//!     diagnostics: Default::default(),
//!     model: Default::default(),
//! };
//! let verdict = check(&input)?;
//! assert_eq!(verdict.status(), Status::Certified);
//! let margin = verdict.conclusion("relative_margin").unwrap().value.lower();
//! assert!((margin - 0.2095798426).abs() < 1e-9);
//! # Ok::<(), flatcert_bounds::BoundsError>(())
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod kind;
pub mod minimum;
pub mod moments;
pub mod radial;
pub mod randomized;
pub mod residual;
pub mod round;
pub mod sampling;
mod serde_ext;
pub mod t1;
pub mod t10;
pub mod t2;
pub mod t3;
pub mod t4;
pub mod t5;
pub mod t6;
pub mod t7;
pub mod t8;
pub mod t9;
pub mod truncation;
pub mod verdict;

pub use error::{BoundsError, Result};
pub use kind::{Confidence, Kind, Scalar, Sides, Value};
pub use sampling::{BatchModel, LrConvention, Sampling};
pub use verdict::{Check, Conclusion, Relation, Status, Verdict};
