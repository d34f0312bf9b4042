//! The thin clap front end: parse → validated plan → run → exit code (DESIGN.md §4:
//! 0 ok/certified, 1 computed but not certified, 2 bad input or usage, 3 internal error).

use clap::{Parser, Subcommand};

pub mod bound;
pub mod certify;
mod certify_plan;
pub mod inputs;
pub mod measure;
pub mod render;
pub mod simulate;
pub mod stability;
pub mod train;
pub mod verify;

/// flatcert: certify trained neural-network checkpoints (MLPs and CNNs) with the linear-stability
/// theory of SGD.
#[derive(Debug, Parser)]
#[command(name = "flatcert", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure a checkpoint on its data (numbers only, each labelled exact/upper/lower/estimate).
    /// With no --model/--x: the bundled digits example.
    Measure(measure::MeasureArgs),
    /// Certify a checkpoint: measure, check T1–T10, issue a certificate (exit 0 certified, 1 not
    /// certified). With no --model/--x: the bundled digits example at its training η and B.
    Certify(certify::CertifyArgs),
    /// Bound calculator: every theorem the numbers of a measurements document allow.
    Bound(bound::BoundArgs),
    /// Recompute a certificate from its files and recheck its arithmetic.
    Verify(verify::VerifyArgs),
    /// Train an MLP (or, with --arch, a CNN) with plain SGD exactly as the theory assumes (model S)
    /// and save safetensors.
    Train(train::TrainArgs),
    /// Critical learning rates η*(B) per batch size (T4, T5, T6) as a table, JSON and SVG plot.
    Stability(stability::StabilityArgs),
    /// Simulate linearized and true SGD from perturbations of the minimum and compare with T4–T6.
    Simulate(simulate::SimulateArgs),
}

/// Exit code for an error: the library's typed code if there is one, else 2 (usage).
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<flatcert::Error>() {
            return e.exit_code();
        }
    }
    2
}

/// The flag of a library argument name (`rel_tol` → `--rel-tol`) when some subcommand has that
/// flag; `None` for a name that is already a flag or names no flag.
fn flag_of(name: &str) -> Option<String> {
    if name.starts_with('-') {
        return None;
    }
    let long = name.replace('_', "-");
    let command = <Cli as clap::CommandFactory>::command();
    let known = command
        .get_subcommands()
        .flat_map(|s| s.get_arguments())
        .any(|a| a.get_long() == Some(long.as_str()));
    known.then(|| format!("--{long}"))
}

/// The text of one cause: the library names arguments by their field (`lr`, `rel_tol`), the
/// user by the flag (`--lr`, `--rel-tol`).
fn cause_text(cause: &(dyn std::error::Error + 'static)) -> String {
    if let Some(flatcert::Error::InvalidArgument { name, message }) =
        cause.downcast_ref::<flatcert::Error>()
        && let Some(flag) = flag_of(name)
    {
        return format!("invalid argument {flag}: {message}");
    }
    cause.to_string()
}

/// One line for an error chain: each cause appended unless its text is already contained in
/// what was printed (typed errors include their source in their own message).
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause_text(cause);
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Measure(args) => measure::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Certify(args) => certify::run_cmd(&args),
        Command::Bound(args) => bound::run_cmd(&args),
        Command::Verify(args) => verify::run_cmd(&args),
        Command::Stability(args) => stability::run(&args),
        Command::Simulate(args) => simulate::run(&args),
    }
}
