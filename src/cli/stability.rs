//! `flatcert stability` (being written).

use anyhow::Result;
use clap::Args;

/// Arguments of `flatcert stability`.
#[derive(Debug, Args)]
pub struct StabilityArgs {}

/// `flatcert stability`.
pub fn run(_args: &StabilityArgs) -> Result<i32> {
    anyhow::bail!("flatcert stability is not available in this build")
}
