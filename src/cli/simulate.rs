//! `flatcert simulate` (being written).

use anyhow::Result;
use clap::Args;

/// Arguments of `flatcert simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {}

/// `flatcert simulate`.
pub fn run(_args: &SimulateArgs) -> Result<i32> {
    anyhow::bail!("flatcert simulate is not available in this build")
}
