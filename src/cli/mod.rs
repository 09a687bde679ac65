//! The command line: argument parsing, output, exit codes, progress drawing.
//! The only module that prints, and the only one that uses `anyhow`.
//!
//! Output rules: stdout carries data only (digests, JSON, tables); progress,
//! status and errors go to stderr. Errors render as `error: …` followed by
//! `  caused by: …` lines and, where we know what to do, a `hint: …`.

mod args;
mod commands;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;

/// Exit status for a failure builder detected (as opposed to bad usage, 2).
const EXIT_FAILURE: u8 = 1;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            report_error(&err);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BUILDER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("builder={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[allow(clippy::print_stderr)]
pub(crate) fn report_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint_for(err) {
        eprintln!("\nhint: {hint}");
    }
}

/// Suggestions for errors whose fix we know, found by type anywhere in the
/// error's chain.
fn hint_for(err: &anyhow::Error) -> Option<String> {
    use crate::pull::PullError;
    use crate::store::StoreError;
    err.chain().find_map(|cause| {
        if let Some(StoreError::Busy { .. }) = cause.downcast_ref::<StoreError>() {
            return Some(
                "wait for running builder commands to finish, then run `builder prune` again".into(),
            );
        }
        if let Some(PullError::DigestMismatch { .. }) = cause.downcast_ref::<PullError>() {
            return Some(
                "the registry (or something between it and us) served bytes that do not match the image; retry, and report it to the registry's operator if it persists".into(),
            );
        }
        None
    })
}

/// The store root: `--root`/`BUILDER_ROOT`, else `/var/lib/builder` for
/// root, else `$XDG_DATA_HOME/builder` (or `~/.local/share/builder`).
fn default_root(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(root) = explicit {
        return root;
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/builder");
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data_home.join("builder")
}
