//! `containerfile parse`: read a Containerfile, check it, print it as
//! written (JSON for tools, or one line per instruction).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::cli::args::{ContainerfileCommand, ContainerfileParseArgs};
use crate::containerfile::{self, Args, Containerfile, RawInstruction};

pub fn run(cmd: ContainerfileCommand) -> Result<ExitCode> {
    match cmd {
        ContainerfileCommand::Parse(args) => parse(args),
    }
}

/// Reads the file `-f` names (`-` for stdin), or `./Containerfile`, or
/// `./Dockerfile`; returns its label for messages and its text.
pub fn read_containerfile(file: Option<&Path>) -> Result<(String, String)> {
    let path: PathBuf = match file {
        Some(p) if p == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("read the Containerfile from stdin")?;
            let text = String::from_utf8(bytes).context("the Containerfile on stdin is not UTF-8")?;
            return Ok(("<stdin>".into(), text));
        }
        Some(p) => p.to_path_buf(),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .with_context(|| "no `Containerfile` or `Dockerfile` in the current directory (give one with -f FILE)")?,
    };
    let bytes = std::fs::read(&path).with_context(|| format!("read `{}`", path.display()))?;
    let label = path.display().to_string();
    match String::from_utf8(bytes) {
        Ok(text) => Ok((label, text)),
        Err(_) => bail!("`{label}` is not UTF-8 text"),
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn parse(args: ContainerfileParseArgs) -> Result<ExitCode> {
    let (label, text) = read_containerfile(args.file.as_deref())?;
    let syntax = containerfile::parse_syntax(&label, &text)?;
    // The typed layer catches what the syntax allows but a build would
    // refuse (unsupported flags, bad argument counts, missing FROM).
    let cf = Containerfile::from_syntax(&syntax)?;
    for w in &cf.warnings {
        eprintln!("warning: {label}:{}: {}", w.line, w.message);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&syntax.dump())?);
        return Ok(ExitCode::SUCCESS);
    }
    for (name, value) in syntax.directives.iter().map(|d| (&d.name, &d.value)) {
        println!("# {name}={value}");
    }
    for ins in &syntax.instructions {
        print_instruction(ins);
    }
    Ok(ExitCode::SUCCESS)
}

/// `LINE  TEXT` (the logical line as written) and the heredoc bodies below
/// it.
#[allow(clippy::print_stdout)]
fn print_instruction(ins: &RawInstruction) {
    println!("{:>4}  {}", ins.start_line, ins.source);
    let mut owner = ins;
    while let Args::Trigger(inner) = &owner.args {
        owner = inner;
    }
    for h in &owner.heredocs {
        for body_line in h.body().lines() {
            println!("      | {body_line}");
        }
        println!("      | {}", h.name);
    }
}
