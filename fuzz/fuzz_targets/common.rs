//! Checks shared by every fuzz target: a reader may accept or reject its input, but a rejection
//! must be a typed bad-input error (exit code 2) with a non-empty one-line message.

use flatcert::Error;

/// Panic (so that libFuzzer records a crasher) unless `r` is `Ok` or a well-formed input error:
/// exit code 2 (docs/bad_inputs.md) and a non-empty message on one line.
pub fn check<T>(what: &str, r: &Result<T, Error>) {
    if let Err(e) = r {
        let msg = e.to_string();
        assert!(!msg.trim().is_empty(), "{what}: empty error message: {e:?}");
        assert_eq!(
            e.exit_code(),
            2,
            "{what}: bad input must be exit code 2 (docs/bad_inputs.md), got {e:?}"
        );
        assert!(
            !msg.contains(['\n', '\r']),
            "{what}: multi-line error message: {msg:?}"
        );
    }
}
