//! The one error type of the Containerfile front end: what went wrong, in
//! which file (a label the caller chose, such as `Containerfile` or `-`), on
//! which line and, when it narrows things down, at which column.
//!
//! Rendering: `FILE:LINE[:COLUMN]: message`, lowercase, objects in
//! backticks, and where possible what was expected instead.

use std::fmt;

use super::expand::ExpandError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The label the caller gave the file (a path, or `-` for stdin).
    pub file: String,
    /// 1-based line of the problem (for an instruction, its first line).
    pub line: usize,
    /// 1-based column in characters, when a specific place on the line is
    /// at fault (a flag, a word, a JSON array).
    pub column: Option<usize>,
    /// Boxed to keep `Result<_, ParseError>` small.
    pub kind: Box<ErrorKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown instruction `{name}`{}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownInstruction {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error(
        "unterminated heredoc `{name}` (started at line {start_line}; expected a line `{name}`)"
    )]
    UnterminatedHeredoc { name: String, start_line: usize },
    #[error("duplicate `{name}` parser directive (first given at line {first_line})")]
    DuplicateDirective { name: String, first_line: usize },
    #[error("invalid escape directive `{0}`: expected `\\` or `` ` ``")]
    InvalidEscape(String),
    #[error("no instructions (expected at least `FROM IMAGE`)")]
    NoInstructions,
    #[error("no `FROM` instruction (a Containerfile needs at least one stage: `FROM IMAGE`)")]
    NoFrom,
    #[error("`{0}` before the first `FROM` (only `ARG` may come before it)")]
    BeforeFrom(&'static str),
    #[error("unknown flag `--{flag}` for `{instruction}` ({})", known_flags(known))]
    UnknownFlag {
        instruction: &'static str,
        flag: String,
        known: Vec<&'static str>,
    },
    #[error("`{instruction} --{flag}` is not supported yet{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    UnsupportedFlag {
        instruction: &'static str,
        flag: String,
        hint: Option<&'static str>,
    },
    #[error("bad flag `--{flag}`: {message}")]
    BadFlag { flag: String, message: String },
    #[error("`{instruction}` requires a JSON array of strings, like {example}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    JsonRequired {
        instruction: &'static str,
        example: &'static str,
        detail: Option<String>,
    },
    #[error("a JSON array here must contain only strings, not `{0}`")]
    JsonNotStrings(String),
    #[error("`{instruction}`: {message}; expected {usage}")]
    BadArguments {
        instruction: &'static str,
        message: String,
        usage: &'static str,
    },
    #[error("invalid heredoc delimiter `{word}`: {source}")]
    BadHeredoc {
        word: String,
        #[source]
        source: ExpandError,
    },
    #[error("cannot expand `{word}`: {source}")]
    Expand {
        word: String,
        #[source]
        source: ExpandError,
    },
    #[error("duplicate stage name `{name}` (first used at line {first_line})")]
    DuplicateStage { name: String, first_line: usize },
    #[error(
        "invalid stage name `{0}`: a name starts with a letter and has only letters, digits, `-`, `_` and `.`"
    )]
    InvalidStageName(String),
    #[error("{0}")]
    Other(String),
}

fn known_flags(known: &[&str]) -> String {
    if known.is_empty() {
        return "it takes no flags".into();
    }
    let list: Vec<String> = known.iter().map(|f| format!("`--{f}`")).collect();
    format!("expected one of {}", list.join(", "))
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(column) = self.column {
            write!(f, ":{column}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The kind is already part of our message; exposing it as the source
        // would print it twice in `caused by:` chains.
        None
    }
}
