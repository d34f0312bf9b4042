//! `flatcert verify cert.json`: recompute the certificate from the files it references (SHA-256
//! checked first; the bundled example is supported) and recheck every verdict's arithmetic.
//! Exit 0 when everything agrees within the stated tolerances, 1 when something disagrees (the
//! first disagreeing field is named), 2 when the certificate is malformed or an input file is
//! missing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use flatcert::certify::verify::verify;

/// Arguments of `flatcert verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The certificate (JSON) to verify.
    pub certificate: PathBuf,
    /// Print only the verdict line.
    #[arg(long)]
    pub quiet: bool,
}

/// `flatcert verify`.
pub fn run_cmd(args: &VerifyArgs) -> Result<i32> {
    let path = &args.certificate;
    let text = flatcert::io::read_text_file(path)?;
    let out = verify(&text, path)?;
    if !args.quiet {
        for c in &out.checked {
            println!("ok: {c}");
        }
    }
    match &out.disagreement {
        None => {
            println!("verified: {} agrees with its recomputation", path.display());
            Ok(0)
        }
        Some(d) => {
            println!("DISAGREES: {d}");
            Ok(1)
        }
    }
}
