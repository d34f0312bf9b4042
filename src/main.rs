//! The `flatcert` binary: a thin front end over the `flatcert` library.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Exit code of an interrupted run (SIGINT or SIGTERM): 128 + SIGINT, as shells report Ctrl-C.
const INTERRUPTED_EXIT_CODE: i32 = 130;

/// On SIGINT/SIGTERM (and SIGHUP): wait until no output file is being written (an in-flight
/// atomic write removes its temporary file instead of renaming it into place; see
/// `flatcert::io::atomic`), print "interrupted" and exit with code 130. Long computations need no
/// polling: the process ends from the handler thread, and nothing partial is ever on disk.
fn install_interrupt_handler() {
    // Failing to install the handler (e.g. in an unusual embedding) only loses the cleanup: the
    // default action still ends the process, and outputs are still written atomically.
    let _ = ctrlc::set_handler(|| {
        let guard = flatcert::io::atomic::begin_interrupt();
        let _ = writeln!(std::io::stderr(), "interrupted");
        // Exit while holding the guard, so that no write can start in the meantime.
        std::mem::forget(guard);
        std::process::exit(INTERRUPTED_EXIT_CODE);
    });
}

/// A reader that closes stdout early (`flatcert measure | head -1`) ends the process quietly, as
/// for every Unix filter: the Rust runtime ignores SIGPIPE, so the next `println!` would panic
/// with "Broken pipe" instead. Output files are written atomically, so nothing partial remains.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: called first in `main`, before any thread exists; `signal` with SIG_DFL has no
    // other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn default_sigpipe() {}

/// After an interrupt the handler thread owns the exit (code 130): never report anything else.
fn yield_to_interrupt() {
    if flatcert::io::atomic::interrupted() {
        loop {
            std::thread::park();
        }
    }
}

/// `--opt -inf` → `--opt=-inf` for every option of the subcommand that takes a value, when the
/// value is a negative number in Rust's syntax (`-inf`, `-infinity`, `-nan`, `-1e-3`, …): clap
/// recognizes only digit-led negative numbers, and would otherwise report an unknown flag `-i`
/// with a usage dump instead of the option's own one-line domain error.
fn join_negative_values(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let command = cli::Cli::command();
    let sub = args
        .get(1)
        .and_then(|s| s.to_str())
        .and_then(|s| command.find_subcommand(s));
    let Some(sub) = sub else {
        return args;
    };
    let takes_value = |long: &str| {
        sub.get_arguments()
            .any(|a| a.get_long() == Some(long) && a.get_action().takes_values())
    };
    let mut out: Vec<std::ffi::OsString> = Vec::with_capacity(args.len());
    for arg in args {
        let joined = match (out.last().and_then(|p| p.to_str()), arg.to_str()) {
            (Some(prev), Some(value))
                if prev.len() > 2
                    && !prev.contains('=')
                    && value.starts_with('-')
                    && !value.starts_with("--")
                    && value.parse::<f64>().is_ok()
                    && prev.strip_prefix("--").is_some_and(takes_value) =>
            {
                Some(format!("{prev}={value}"))
            }
            _ => None,
        };
        match joined {
            Some(j) => {
                out.pop();
                out.push(j.into());
            }
            None => out.push(arg),
        }
    }
    out
}

fn main() -> ExitCode {
    default_sigpipe();
    install_interrupt_handler();
    let cli = match cli::Cli::try_parse_from(join_negative_values(std::env::args_os().collect())) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = cli::run(cli);
    yield_to_interrupt();
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            eprintln!("error: {}", cli::error_line(&err));
            ExitCode::from(cli::exit_code(&err) as u8)
        }
    }
}
