//! Fuzz the certificate reader (`Certificate::from_json`, schema `flatcert.certificate/v1`) and
//! the file-free steps `flatcert verify` takes next: the arithmetic recheck of every verdict and
//! the summary, and rebuilding the plan from the recorded hyper-parameters. (The recomputation
//! step reads the referenced files and is not fuzzed.) Input bytes are decoded lossily, as in
//! `fuzz_measurements`.
#![no_main]

use flatcert::certify::Certificate;
use flatcert::certify::bound::read_source;
use flatcert::certify::verify::{plan_of, recheck_arithmetic};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let cert = Certificate::from_json(&text, "fuzz.json");
    common::check("Certificate::from_json", &cert);
    common::check("read_source", &read_source(&text, "fuzz.json"));
    if let Ok(cert) = cert {
        let _ = recheck_arithmetic(&cert);
        plan_of(&cert).expect("an accepted certificate's hyper-parameters give a plan");
        let json = cert.to_json().expect("an accepted certificate serializes");
        let back = Certificate::from_json(&json, "again.json").expect("it reads back");
        assert_eq!(back, cert, "JSON round trip changed the certificate");
    }
});
