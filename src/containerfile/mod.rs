//! The Containerfile (Dockerfile) front end: text in, a typed
//! [`Containerfile`] out, and the word expansion and ARG/ENV scoping the
//! build needs. Pure: no I/O of any kind, no clock, no environment.
//!
//! Three layers, each usable on its own:
//! 1. [`lexer`]: text → logical lines (continuations, comments, parser
//!    directives, heredoc bodies on demand), each byte mapped back to its
//!    line and column;
//! 2. [`syntax`]: logical lines → [`RawInstruction`]s: keyword, `--flags`,
//!    arguments as written in the shape each instruction uses, heredocs.
//!    This is what `builder containerfile parse --json` prints;
//! 3. [`instruction`]: raw → typed [`Instruction`]s grouped into
//!    [`Stage`]s, with flags and argument counts checked.
//!
//! Beside them, [`expand`] implements Docker/BuildKit's word expansion
//! (`$V`, `${V:-x}`, quotes, escapes), and [`scope`] which variables a word
//! sees (global ARGs, stage ARGs, ENV, `--build-arg`, the predefined ARGs).
//!
//! Terms: a *word* as written is a [`RawWord`]; expanding it gives a plain
//! `String`. A *stage* runs from one FROM to the next. *Global* ARGs are
//! those before the first FROM.
//!
//! Compatibility target: what BuildKit's Dockerfile frontend accepts, with
//! the same meaning, down to its quirks where a file's result depends on
//! them (they are named where they are implemented). Where BuildKit would
//! silently ignore something (an unknown flag, an unsupported `--mount`),
//! we fail with a located error instead.
//!
//! Every error is a [`ParseError`]: `FILE:LINE[:COLUMN]: message`.

pub mod error;
pub mod expand;
pub mod instruction;
pub mod lexer;
pub mod scope;
pub mod syntax;

#[cfg(test)]
mod tests;

pub use error::{ErrorKind, ParseError};
pub use expand::{Env, ExpandError, Expander};
pub use instruction::{
    Add, Command, Containerfile, Copy, Healthcheck, ImageSource, Instruction, Located, Network,
    Onbuild, Run, RunCommand, Security, Source, Stage,
};
pub use lexer::Directive;
pub use scope::{BuildArgs, GlobalScope, PlatformArgs, StageScope};
pub use syntax::{
    ArgDecl, Args, Flag, Heredoc, KeyValue, Keyword, RawInstruction, RawWord, Span, Syntax,
    Warning, parse_syntax,
};

/// Parses the text of a Containerfile. `label` names the file in error
/// messages (a path as the user gave it, or `-` for stdin).
pub fn parse(label: &str, text: &str) -> Result<Containerfile, ParseError> {
    Containerfile::from_syntax(&parse_syntax(label, text)?)
}
