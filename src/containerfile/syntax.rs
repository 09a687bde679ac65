//! Logical lines → raw instructions: the keyword, its `--flags`, its
//! arguments as written, and its heredoc bodies, each with a [`Span`].
//!
//! Nothing is expanded or interpreted here beyond what decides the shape of
//! the arguments, and that shape follows BuildKit's per-instruction line
//! parsers (`parser/line_parsers.go`):
//!
//! | instructions | arguments |
//! | --- | --- |
//! | RUN, CMD, ENTRYPOINT, SHELL | JSON array of strings, else the rest of the line (shell form) |
//! | COPY, ADD, VOLUME | JSON array of strings, else words split at blanks (quotes do not group!) |
//! | FROM, EXPOSE | words split at blanks |
//! | ENV, LABEL | `k=v` words (quotes group, and stay), or the legacy `k v…` form |
//! | ARG | `name` or `name=default` words |
//! | HEALTHCHECK | a type word (`CMD`, `NONE`) then like CMD |
//! | MAINTAINER, STOPSIGNAL, USER, WORKDIR | the rest of the line as one word |
//! | ONBUILD | a whole nested instruction |
//!
//! Flags are the leading words that start with `--`, with quotes removed and
//! `\` escaping (always backslash, as in BuildKit); a bare `--` ends them.
//! A text that starts with `[` but is not valid JSON is shell form, as in
//! BuildKit (we record why in [`RawInstruction::json_error`] so a later
//! layer can say so when JSON was required). A JSON array holding anything
//! but strings is an error.
//!
//! Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`, `3<<EOF`) are found on
//! RUN, COPY and ADD lines in shell form (also behind ONBUILD): every word of
//! the line, split with quotes kept, that is `[digits]<<[-]delimiter`. Their
//! bodies follow the line in the order the words appear. A quoted delimiter
//! (any quote anywhere in it) turns off expansion of the body.

use super::error::{ErrorKind, ParseError};
use super::expand::{ExpandError, Expander, NoEnv};
use super::lexer::{Directive, LineLexer, LogicalLine};

/// A place in the file: 1-based line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub column: usize,
}

/// A word exactly as written, quotes and `$VARS` included. Expanding it
/// gives a plain `String` ([`super::Containerfile::expand`]); the two are
/// deliberately different types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawWord {
    pub text: String,
    pub span: Span,
}

impl RawWord {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

macro_rules! keywords {
    ($($variant:ident => $name:literal,)*) => {
        /// The instructions a Containerfile may contain.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Keyword { $($variant,)* }

        impl Keyword {
            pub const ALL: &'static [Keyword] = &[$(Keyword::$variant,)*];

            /// The canonical (uppercase) spelling.
            pub fn name(self) -> &'static str {
                match self { $(Keyword::$variant => $name,)* }
            }
        }
    };
}

keywords! {
    Add => "ADD",
    Arg => "ARG",
    Cmd => "CMD",
    Copy => "COPY",
    Entrypoint => "ENTRYPOINT",
    Env => "ENV",
    Expose => "EXPOSE",
    From => "FROM",
    Healthcheck => "HEALTHCHECK",
    Label => "LABEL",
    Maintainer => "MAINTAINER",
    Onbuild => "ONBUILD",
    Run => "RUN",
    Shell => "SHELL",
    StopSignal => "STOPSIGNAL",
    User => "USER",
    Volume => "VOLUME",
    Workdir => "WORKDIR",
}

impl Keyword {
    /// Instructions are case-insensitive.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Whether Docker expands `$VARIABLES` in this instruction's arguments
    /// (and flag values). RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK are
    /// left to the shell; MAINTAINER is taken literally; ONBUILD's trigger
    /// is expanded when it runs, by its own rule.
    pub fn expands(self) -> bool {
        matches!(
            self,
            Keyword::Add
                | Keyword::Arg
                | Keyword::Copy
                | Keyword::Env
                | Keyword::Expose
                | Keyword::From
                | Keyword::Label
                | Keyword::StopSignal
                | Keyword::User
                | Keyword::Volume
                | Keyword::Workdir
        )
    }

    /// The closest instruction name, for "did you mean".
    fn suggest(name: &str) -> Option<&'static str> {
        let upper = name.to_ascii_uppercase();
        Self::ALL
            .iter()
            .map(|k| (edit_distance(&upper, k.name()), k.name()))
            .filter(|&(d, _)| d <= 2 && d < upper.len())
            .min_by_key(|&(d, _)| d)
            .map(|(_, n)| n)
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `--name[=value]` before the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    /// `None` for `--name` without `=`.
    pub value: Option<String>,
    /// As written in the file (quotes and escapes included).
    pub raw: String,
    pub span: Span,
}

/// `key=value` (ENV, LABEL); both parts as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: RawWord,
    pub value: RawWord,
}

/// `name` or `name=default` (ARG); both parts as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: RawWord,
    pub default: Option<RawWord>,
}

/// An instruction's arguments, shaped by its kind (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Nothing after the keyword and flags.
    None,
    /// The rest of the line as one word (shell form, or a single-value
    /// instruction).
    Text(RawWord),
    /// A JSON array of strings (exec form).
    Json { items: Vec<String>, span: Span },
    /// Blank-separated words.
    Words(Vec<RawWord>),
    /// ENV / LABEL pairs; `legacy` for the `KEY value with spaces` form.
    Pairs { pairs: Vec<KeyValue>, legacy: bool },
    /// ARG declarations.
    Decls(Vec<ArgDecl>),
    /// HEALTHCHECK: the type word, then the command like CMD's.
    Healthcheck { kind: RawWord, command: Box<Args> },
    /// ONBUILD's trigger instruction.
    Trigger(Box<RawInstruction>),
}

/// A heredoc body attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The lines between the instruction and the delimiter line, line
    /// endings included, leading tabs included even for `<<-`.
    pub content: String,
    /// `<<-`: leading tabs are removed from the body and the delimiter.
    pub chomp: bool,
    /// Variables in the body expand (the delimiter was not quoted).
    pub expand: bool,
    /// `N<<EOF`: the file descriptor the body is meant for.
    pub fd: Option<u32>,
    /// The line of the instruction that opened it.
    pub line: usize,
}

impl Heredoc {
    /// The body as the instruction uses it: for `<<-`, without the leading
    /// tabs of each line.
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawInstruction {
    pub keyword: Keyword,
    /// Where the keyword is.
    pub span: Span,
    /// First and last line, heredoc bodies included.
    pub start_line: usize,
    pub end_line: usize,
    pub flags: Vec<Flag>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The instruction's text (the logical line, trimmed): what image
    /// history records and what ONBUILD stores.
    pub source: String,
    /// Why text starting with `[` was not taken as JSON.
    pub json_error: Option<String>,
}

impl RawInstruction {
    fn can_contain_heredoc(&self) -> bool {
        match (&self.keyword, &self.args) {
            (Keyword::Onbuild, Args::Trigger(inner)) => inner.can_contain_heredoc(),
            (Keyword::Run | Keyword::Copy | Keyword::Add, Args::Json { .. }) => false,
            (Keyword::Run | Keyword::Copy | Keyword::Add, _) => true,
            _ => false,
        }
    }

    /// The instruction that receives heredoc bodies: ONBUILD's trigger, or
    /// the instruction itself.
    fn heredoc_owner(&mut self) -> &mut RawInstruction {
        match self.args {
            Args::Trigger(ref mut inner) => inner.heredoc_owner(),
            _ => self,
        }
    }

    /// The arguments (or HEALTHCHECK's command) are a JSON array.
    pub fn exec_form(&self) -> bool {
        match &self.args {
            Args::Json { .. } => true,
            Args::Healthcheck { command, .. } => matches!(**command, Args::Json { .. }),
            _ => false,
        }
    }
}

/// A non-fatal remark about the file (BuildKit prints these as warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// The whole file as raw instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syntax {
    pub label: String,
    pub escape: char,
    pub directives: Vec<Directive>,
    pub instructions: Vec<RawInstruction>,
    pub warnings: Vec<Warning>,
    /// Number of physical lines.
    pub lines: usize,
}

/// Parses `text` (the file called `label` in messages) into raw
/// instructions.
pub fn parse_syntax(label: &str, text: &str) -> Result<Syntax, ParseError> {
    let mut lexer = LineLexer::new(label, text);
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    while let Some(line) = lexer.next_line()? {
        let cx = Cx {
            label,
            line: &line,
            escape: lexer.escape(),
        };
        let mut ins = cx.instruction(0, false)?;
        if line.had_empty_continuation {
            warnings.push(Warning {
                line: line.start_line,
                message: "empty continuation line (a blank line inside a `\\` continuation)".into(),
            });
        }
        if let Some(e) = &ins.json_error {
            warnings.push(Warning {
                line: line.start_line,
                message: format!(
                    "`{}` arguments start with `[` but are not a JSON array ({e}); using shell form",
                    ins.keyword.name()
                ),
            });
        }
        if ins.can_contain_heredoc() {
            for start in cx.heredoc_starts()? {
                let content = lexer.read_heredoc(&start.name, start.chomp, line.start_line)?;
                ins.heredoc_owner().heredocs.push(Heredoc {
                    name: start.name,
                    content,
                    chomp: start.chomp,
                    expand: start.expand,
                    fd: start.fd,
                    line: line.start_line,
                });
            }
        }
        let end_line = lexer.lines_read().max(line.end_line);
        let mut owner = &mut ins;
        loop {
            owner.end_line = end_line;
            match owner.args {
                Args::Trigger(ref mut inner) => owner = inner,
                _ => break,
            }
        }
        instructions.push(ins);
    }
    Ok(Syntax {
        label: label.to_string(),
        escape: lexer.escape(),
        directives: lexer.directives().to_vec(),
        instructions,
        warnings,
        lines: lexer.lines_read(),
    })
}

impl Syntax {
    /// The document `builder containerfile parse --json` prints:
    ///
    /// ```text
    /// {"directives": {"escape": "`", "syntax": "…"},
    ///  "instructions": [{"line": 3, "end_line": 5, "instruction": "RUN",
    ///                    "flags": ["--network=none"], "args": ["echo hi"],
    ///                    "exec_form": false,
    ///                    "heredocs": [{"name": "EOF", "content": "…", "expand": true, "chomp": false}]},
    ///                   …]}
    /// ```
    ///
    /// Everything is as written, before expansion: `flags` verbatim, `args`
    /// the instruction's arguments in the shape it parses them (one string
    /// for shell form, the array items for exec form, the words otherwise).
    /// ENV, LABEL and ARG also get `"pairs": [[key, value], …]` in order,
    /// with `null` for an ARG without default; their `args` are the words
    /// (`KEY=VALUE`, or for legacy `ENV KEY VALUE` the key and the value).
    /// HEALTHCHECK's `args` start with its type (`CMD`, `NONE`). ONBUILD's
    /// `args` hold the trigger's text and `"trigger"` the trigger itself in
    /// this same shape. A heredoc's `content` is its body as the
    /// instruction uses it (leading tabs removed for `<<-`); `fd` appears
    /// for `N<<EOF`.
    pub fn dump(&self) -> Dump<'_> {
        Dump(self)
    }
}

/// [`Syntax::dump`]: serialises with keys in a fixed, readable order.
pub struct Dump<'a>(&'a Syntax);

impl serde::Serialize for Dump<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Directives<'a>(&'a [Directive]);
        impl serde::Serialize for Directives<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|d| (&d.name, &d.value)))
            }
        }
        let mut out = serializer.serialize_struct("Syntax", 2)?;
        out.serialize_field("directives", &Directives(&self.0.directives))?;
        let instructions: Vec<InstructionDump<'_>> = self
            .0
            .instructions
            .iter()
            .map(InstructionDump::new)
            .collect();
        out.serialize_field("instructions", &instructions)?;
        out.end()
    }
}

#[derive(serde::Serialize)]
struct InstructionDump<'a> {
    line: usize,
    end_line: usize,
    instruction: &'static str,
    flags: Vec<&'a str>,
    args: Vec<String>,
    exec_form: bool,
    heredocs: Vec<HeredocDump<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pairs: Option<Vec<(&'a str, Option<&'a str>)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<Box<InstructionDump<'a>>>,
}

#[derive(serde::Serialize)]
struct HeredocDump<'a> {
    name: &'a str,
    content: String,
    expand: bool,
    chomp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<u32>,
}

impl<'a> InstructionDump<'a> {
    fn new(ins: &'a RawInstruction) -> Self {
        fn args(a: &Args) -> Vec<String> {
            match a {
                Args::None => Vec::new(),
                Args::Text(w) => vec![w.text.clone()],
                Args::Json { items, .. } => items.clone(),
                Args::Words(w) => w.iter().map(|w| w.text.clone()).collect(),
                Args::Pairs {
                    pairs,
                    legacy: true,
                } => pairs
                    .iter()
                    .flat_map(|p| [p.key.text.clone(), p.value.text.clone()])
                    .collect(),
                // The word as written is exactly key, `=`, value.
                Args::Pairs { pairs, .. } => pairs
                    .iter()
                    .map(|p| format!("{}={}", p.key.text, p.value.text))
                    .collect(),
                Args::Decls(decls) => decls
                    .iter()
                    .map(|d| match &d.default {
                        Some(v) => format!("{}={}", d.name.text, v.text),
                        None => d.name.text.clone(),
                    })
                    .collect(),
                Args::Healthcheck { kind, command } => {
                    let mut out = vec![kind.text.clone()];
                    out.extend(args(command));
                    out
                }
                Args::Trigger(inner) => vec![inner.source.clone()],
            }
        }
        let pairs = match &ins.args {
            Args::Pairs { pairs, .. } => Some(
                pairs
                    .iter()
                    .map(|p| (p.key.as_str(), Some(p.value.as_str())))
                    .collect(),
            ),
            Args::Decls(decls) => Some(
                decls
                    .iter()
                    .map(|d| (d.name.as_str(), d.default.as_ref().map(RawWord::as_str)))
                    .collect(),
            ),
            _ => None,
        };
        InstructionDump {
            line: ins.start_line,
            end_line: ins.end_line,
            instruction: ins.keyword.name(),
            flags: ins.flags.iter().map(|f| f.raw.as_str()).collect(),
            args: args(&ins.args),
            exec_form: ins.exec_form(),
            heredocs: ins
                .heredocs
                .iter()
                .map(|h| HeredocDump {
                    name: &h.name,
                    content: h.body(),
                    expand: h.expand,
                    chomp: h.chomp,
                    fd: h.fd,
                })
                .collect(),
            pairs,
            trigger: match &ins.args {
                Args::Trigger(inner) => Some(Box::new(InstructionDump::new(inner))),
                _ => None,
            },
        }
    }
}

/// A heredoc operator found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocStart {
    pub name: String,
    pub chomp: bool,
    pub expand: bool,
    pub fd: Option<u32>,
}

/// Whether `word` (as written) is a heredoc operator such as `<<EOF`,
/// `<<-"EOF"` or `3<<EOF`, and which. `Ok(None)` for ordinary words; an
/// error for an operator whose delimiter cannot be lexed (`<<"EOF`).
pub fn parse_heredoc_word(word: &str) -> Result<Option<HeredocStart>, ExpandError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let words = Expander::for_heredoc_name(false).expand_words(rest, &NoEnv)?;
    let Ok([name]) = <[String; 1]>::try_from(words) else {
        return Ok(None);
    };
    // Quotes anywhere in the delimiter turn expansion off: compare the
    // quote count with quotes removed and kept.
    let raw = Expander::for_heredoc_name(true).expand_words(rest, &NoEnv)?;
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let expand = raw.len() == 1 && quotes(&raw[0]) == quotes(&name);
    Ok(Some(HeredocStart {
        name,
        chomp,
        expand,
        fd: word[..digits].parse().ok(),
    }))
}

/// Blanks that separate words in BuildKit's line parsers
/// (`[\t\v\f\r ]`, not Unicode whitespace).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Parsing context: one logical line.
struct Cx<'a> {
    label: &'a str,
    line: &'a LogicalLine,
    escape: char,
}

impl Cx<'_> {
    fn span(&self, offset: usize) -> Span {
        let (line, column) = self.line.position(offset);
        Span { line, column }
    }

    fn error(&self, offset: Option<usize>, kind: ErrorKind) -> ParseError {
        let (line, column) = match offset {
            Some(o) => {
                let s = self.span(o);
                (s.line, Some(s.column))
            }
            None => (self.line.start_line, None),
        };
        ParseError {
            file: self.label.to_string(),
            line,
            column,
            kind: Box::new(kind),
        }
    }

    fn word(&self, text: impl Into<String>, offset: usize) -> RawWord {
        RawWord {
            text: text.into(),
            span: self.span(offset),
        }
    }

    /// Trims Unicode whitespace from `start..end` of the line.
    fn trim(&self, start: usize, end: usize) -> (usize, usize) {
        let s = &self.line.text[start..end];
        let lead = s.len() - s.trim_start().len();
        let trail = s.len() - s.trim_end().len();
        if lead == s.len() {
            return (end, end);
        }
        (start + lead, end - trail)
    }

    /// Parses the instruction that starts at `start` and runs to the end of
    /// the line (ONBUILD recurses with the rest of its line).
    /// `nested` is set for ONBUILD's trigger: an ONBUILD inside it is not
    /// parsed further (it is an error later), so nesting stays shallow.
    fn instruction(&self, start: usize, nested: bool) -> Result<RawInstruction, ParseError> {
        let (start, end) = self.trim(start, self.line.text.len());
        let text = &self.line.text[start..end];
        let kw_len = text.find(is_blank).unwrap_or(text.len());
        let name = &text[..kw_len];
        let Some(keyword) = Keyword::from_name(name) else {
            return Err(self.error(
                None,
                ErrorKind::UnknownInstruction {
                    name: name.to_string(),
                    suggestion: Keyword::suggest(name),
                },
            ));
        };
        let after = start + kw_len;
        let args_start =
            after + (text[kw_len..].len() - text[kw_len..].trim_start_matches(is_blank).len());
        let (flags, rest_start) = self.flags(args_start, end);
        let (rest_start, rest_end) = self.trim(rest_start, end);
        let mut ins = RawInstruction {
            keyword,
            span: self.span(start),
            start_line: self.span(start).line,
            end_line: self.line.end_line,
            flags,
            args: Args::None,
            heredocs: Vec::new(),
            source: text.to_string(),
            json_error: None,
        };
        ins.args = self.args(keyword, rest_start, rest_end, &mut ins.json_error, nested)?;
        Ok(ins)
    }

    fn args(
        &self,
        keyword: Keyword,
        start: usize,
        end: usize,
        json_error: &mut Option<String>,
        nested: bool,
    ) -> Result<Args, ParseError> {
        let rest = &self.line.text[start..end];
        Ok(match keyword {
            Keyword::Run | Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell => {
                self.maybe_json(start, end, json_error)?
            }
            Keyword::Copy | Keyword::Add | Keyword::Volume => {
                match self.json(start, end, json_error)? {
                    Some(args) => args,
                    None => Args::Words(self.blank_words(start, end)),
                }
            }
            Keyword::From | Keyword::Expose => Args::Words(self.blank_words(start, end)),
            Keyword::Env | Keyword::Label => self.pairs(keyword, start, end)?,
            Keyword::Arg => self.decls(start, end)?,
            Keyword::Maintainer | Keyword::StopSignal | Keyword::User | Keyword::Workdir => {
                if rest.is_empty() {
                    Args::None
                } else {
                    Args::Text(self.word(rest, start))
                }
            }
            Keyword::Healthcheck => {
                if rest.is_empty() {
                    return Ok(Args::None);
                }
                // The type word ends at the first blank (byte-wise in BuildKit).
                let sep = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
                let kind = self.word(&rest[..sep], start);
                let (cmd_start, cmd_end) = self.trim(start + sep, end);
                let command = self.maybe_json(cmd_start, cmd_end, json_error)?;
                Args::Healthcheck {
                    kind,
                    command: Box::new(command),
                }
            }
            Keyword::Onbuild => {
                if rest.is_empty() {
                    Args::None
                } else if nested {
                    Args::Text(self.word(rest, start))
                } else {
                    Args::Trigger(Box::new(self.instruction(start, true)?))
                }
            }
        })
    }

    /// `parseMaybeJSON`: a JSON array, or the whole text.
    fn maybe_json(
        &self,
        start: usize,
        end: usize,
        json_error: &mut Option<String>,
    ) -> Result<Args, ParseError> {
        if start == end {
            return Ok(Args::None);
        }
        Ok(match self.json(start, end, json_error)? {
            Some(args) => args,
            None => Args::Text(self.word(&self.line.text[start..end], start)),
        })
    }

    /// A JSON array of strings, `None` if the text is not JSON at all.
    fn json(
        &self,
        start: usize,
        end: usize,
        json_error: &mut Option<String>,
    ) -> Result<Option<Args>, ParseError> {
        let text = &self.line.text[start..end];
        if !text.starts_with('[') {
            return Ok(None);
        }
        let values: Vec<serde_json::Value> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                *json_error = Some(e.to_string());
                return Ok(None);
            }
        };
        let mut items = Vec::with_capacity(values.len());
        for value in values {
            match value {
                serde_json::Value::String(s) => items.push(s),
                other => {
                    return Err(
                        self.error(Some(start), ErrorKind::JsonNotStrings(other.to_string()))
                    );
                }
            }
        }
        Ok(Some(Args::Json {
            items,
            span: self.span(start),
        }))
    }

    /// `parseStringsWhitespaceDelimited`: split at runs of blanks; quotes
    /// mean nothing here.
    fn blank_words(&self, start: usize, end: usize) -> Vec<RawWord> {
        let text = &self.line.text[start..end];
        let mut words = Vec::new();
        let mut offset = 0;
        for piece in text.split(is_blank) {
            if !piece.is_empty() {
                words.push(self.word(piece, start + offset));
            }
            offset += piece.len() + 1;
        }
        words
    }

    /// `parseWords`: words separated by whitespace, where quotes group and
    /// the escape character protects the next character; quotes and
    /// escapes stay in the words (expansion removes them later).
    fn quoted_words(&self, start: usize, end: usize) -> Vec<RawWord> {
        #[derive(PartialEq)]
        enum Phase {
            Spaces,
            Word,
            Quote(char),
        }
        let text = &self.line.text[start..end];
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut words = Vec::new();
        let mut phase = Phase::Spaces;
        let mut word = String::new();
        let mut word_start = 0;
        let mut blank_ok = false;
        let mut i = 0;
        loop {
            let current = chars.get(i).map(|&(_, c)| c);
            if phase == Phase::Spaces {
                match current {
                    None => break,
                    Some(c) if c.is_whitespace() => {
                        i += 1;
                        continue;
                    }
                    Some(_) => {
                        phase = Phase::Word;
                        word_start = chars[i].0;
                    }
                }
            }
            let Some(mut c) = current else {
                if blank_ok || !word.is_empty() {
                    words.push(self.word(std::mem::take(&mut word), start + word_start));
                }
                break;
            };
            let last = i + 1 == chars.len();
            match phase {
                Phase::Word => {
                    if c.is_whitespace() {
                        phase = Phase::Spaces;
                        if blank_ok || !word.is_empty() {
                            words.push(self.word(std::mem::take(&mut word), start + word_start));
                        }
                        word.clear();
                        blank_ok = false;
                        i += 1;
                        continue;
                    }
                    if c == '\'' || c == '"' {
                        phase = Phase::Quote(c);
                        blank_ok = true;
                    }
                    if c == self.escape {
                        if last {
                            i += 1;
                            continue;
                        }
                        word.push(c);
                        i += 1;
                        c = chars[i].1;
                    }
                    word.push(c);
                }
                Phase::Quote(q) => {
                    if c == q {
                        phase = Phase::Word;
                    }
                    if c == self.escape && q != '\'' {
                        if last {
                            phase = Phase::Word;
                            i += 1;
                            continue;
                        }
                        word.push(c);
                        i += 1;
                        c = chars[i].1;
                    }
                    word.push(c);
                }
                Phase::Spaces => unreachable!("handled above"),
            }
            i += 1;
        }
        words
    }

    /// ENV / LABEL (`parseNameVal`).
    fn pairs(&self, keyword: Keyword, start: usize, end: usize) -> Result<Args, ParseError> {
        let words = self.quoted_words(start, end);
        let Some(first) = words.first() else {
            return Ok(Args::Pairs {
                pairs: Vec::new(),
                legacy: false,
            });
        };
        if !first.text.contains('=') {
            // `ENV KEY value with spaces`: the key is up to the first blank.
            let text = &self.line.text[start..end];
            let Some(key_len) = text.find(is_blank) else {
                return Err(self.error(
                    None,
                    ErrorKind::BadArguments {
                        instruction: keyword.name(),
                        message: format!("`{text}` has no value"),
                        usage: if keyword == Keyword::Env {
                            "`ENV KEY=VALUE [KEY=VALUE…]`"
                        } else {
                            "`LABEL KEY=VALUE [KEY=VALUE…]`"
                        },
                    },
                ));
            };
            let value_start = start
                + key_len
                + (text[key_len..].len() - text[key_len..].trim_start_matches(is_blank).len());
            return Ok(Args::Pairs {
                pairs: vec![KeyValue {
                    key: self.word(&text[..key_len], start),
                    value: self.word(&self.line.text[value_start..end], value_start),
                }],
                legacy: true,
            });
        }
        let mut pairs = Vec::with_capacity(words.len());
        for word in words {
            let Some((key, value)) = word.text.split_once('=') else {
                return Err(ParseError {
                    file: self.label.to_string(),
                    line: word.span.line,
                    column: Some(word.span.column),
                    kind: Box::new(ErrorKind::BadArguments {
                        instruction: keyword.name(),
                        message: format!("`{}` has no `=`", word.text),
                        usage: if keyword == Keyword::Env {
                            "`ENV KEY=VALUE [KEY=VALUE…]`"
                        } else {
                            "`LABEL KEY=VALUE [KEY=VALUE…]`"
                        },
                    }),
                });
            };
            let value_span = Span {
                line: word.span.line,
                column: word.span.column + key.chars().count() + 1,
            };
            pairs.push(KeyValue {
                key: RawWord {
                    text: key.to_string(),
                    span: word.span,
                },
                value: RawWord {
                    text: value.to_string(),
                    span: value_span,
                },
            });
        }
        Ok(Args::Pairs {
            pairs,
            legacy: false,
        })
    }

    /// ARG (`parseNameOrNameVal`).
    fn decls(&self, start: usize, end: usize) -> Result<Args, ParseError> {
        let mut decls = Vec::new();
        for word in self.quoted_words(start, end) {
            let decl = match word.text.split_once('=') {
                None => ArgDecl {
                    name: word,
                    default: None,
                },
                Some((name, value)) => {
                    let value_span = Span {
                        line: word.span.line,
                        column: word.span.column + name.chars().count() + 1,
                    };
                    ArgDecl {
                        name: RawWord {
                            text: name.to_string(),
                            span: word.span,
                        },
                        default: Some(RawWord {
                            text: value.to_string(),
                            span: value_span,
                        }),
                    }
                }
            };
            decls.push(decl);
        }
        Ok(Args::Decls(decls))
    }

    /// Leading `--flag` words (`extractBuilderFlags`); returns them and the
    /// offset where the arguments start.
    fn flags(&self, start: usize, end: usize) -> (Vec<Flag>, usize) {
        let text = &self.line.text[start..end];
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut flags = Vec::new();
        let mut i = 0;
        loop {
            while chars.get(i).is_some_and(|&(_, c)| c.is_whitespace()) {
                i += 1;
            }
            let Some(&(word_offset, c)) = chars.get(i) else {
                return (flags, end);
            };
            if c != '-' || chars.get(i + 1).map(|&(_, c)| c) != Some('-') {
                return (flags, start + word_offset);
            }
            let mut word = String::new();
            let mut quote = None;
            let mut blank_ok = false;
            loop {
                let Some(&(offset, c)) = chars.get(i) else {
                    if word != "--" && (blank_ok || !word.is_empty()) {
                        flags.push(self.flag(word, &text[word_offset..], start + word_offset));
                    }
                    return (flags, end);
                };
                let last = i + 1 == chars.len();
                match quote {
                    None if c.is_whitespace() => {
                        if word == "--" {
                            return (flags, start + offset);
                        }
                        if blank_ok || !word.is_empty() {
                            let raw = &text[word_offset..offset];
                            flags.push(self.flag(word, raw, start + word_offset));
                        }
                        break;
                    }
                    None if c == '\'' || c == '"' => {
                        quote = Some(c);
                        blank_ok = true;
                    }
                    Some(q) if c == q => quote = None,
                    _ if c == '\\' => {
                        if last {
                            quote = None;
                        } else {
                            i += 1;
                            word.push(chars[i].1);
                        }
                    }
                    _ => word.push(c),
                }
                i += 1;
            }
        }
    }

    fn flag(&self, text: String, raw: &str, offset: usize) -> Flag {
        let body = text.strip_prefix("--").unwrap_or(&text);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        Flag {
            name,
            value,
            raw: raw.to_string(),
            span: self.span(offset),
        }
    }

    /// Heredoc operators on the whole line, in order (`heredocsFromLine`).
    fn heredoc_starts(&self) -> Result<Vec<HeredocStart>, ParseError> {
        // A line the raw lexer cannot split has no heredocs, as in BuildKit.
        let Ok(words) = Expander::for_heredoc_detection().expand_words(&self.line.text, &NoEnv)
        else {
            return Ok(Vec::new());
        };
        let mut starts = Vec::new();
        for word in words {
            match parse_heredoc_word(&word) {
                Ok(Some(start)) => starts.push(start),
                Ok(None) => {}
                Err(source) => {
                    let offset = self.line.text.find(&word);
                    return Err(self.error(offset, ErrorKind::BadHeredoc { word, source }));
                }
            }
        }
        Ok(starts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> RawInstruction {
        let syntax = parse_syntax("f", text).unwrap();
        assert_eq!(syntax.instructions.len(), 1, "{text:?}");
        syntax.instructions.into_iter().next().unwrap()
    }

    fn texts(words: &[RawWord]) -> Vec<&str> {
        words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn keywords_are_case_insensitive_and_unknown_ones_suggest() {
        assert_eq!(one("run  echo").keyword, Keyword::Run);
        assert_eq!(one("HealthCheck NONE").keyword, Keyword::Healthcheck);
        let err = parse_syntax("f", "FROM a\n  RUNN x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:2: unknown instruction `RUNN` (did you mean `RUN`?)"
        );
        let err = parse_syntax("f", "BOGUSWORD x\n").unwrap_err();
        assert_eq!(err.to_string(), "f:1: unknown instruction `BOGUSWORD`");
    }

    #[test]
    fn flags_are_split_off_with_quotes_removed() {
        let ins = one(r#"COPY --from=build --chown="a b" --link  --  --x /d"#);
        let flags: Vec<_> = ins
            .flags
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.value.as_deref(),
                    f.raw.as_str(),
                    f.span.column,
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                ("from", Some("build"), "--from=build", 6),
                ("chown", Some("a b"), r#"--chown="a b""#, 19),
                ("link", None, "--link", 33),
            ]
        );
        let Args::Words(words) = &ins.args else {
            panic!()
        };
        assert_eq!(texts(words), ["--x", "/d"]);
    }

    #[test]
    fn shell_and_exec_forms() {
        assert_eq!(
            one(r#"RUN ["a", "b c"]"#).args,
            Args::Json {
                items: vec!["a".into(), "b c".into()],
                span: Span { line: 1, column: 5 }
            }
        );
        let ins = one("CMD ['a']");
        assert!(matches!(&ins.args, Args::Text(w) if w.text == "['a']"));
        assert!(ins.json_error.is_some());
        let err = parse_syntax("f", "CMD [\"a\", 1]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1:5: a JSON array here must contain only strings, not `1`"
        );
    }

    #[test]
    fn copy_words_ignore_quotes() {
        let Args::Words(words) = one(r#"COPY "a b" c"#).args else {
            panic!()
        };
        assert_eq!(texts(&words), ["\"a", "b\"", "c"]);
    }

    #[test]
    fn env_forms() {
        let Args::Pairs { pairs, legacy } = one(r#"ENV A=1 B="x y" C=a\ b D="""#).args else {
            panic!()
        };
        assert!(!legacy);
        let got: Vec<_> = pairs
            .iter()
            .map(|p| {
                (
                    p.key.text.as_str(),
                    p.value.text.as_str(),
                    p.value.span.column,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("A", "1", 7),
                ("B", "\"x y\"", 11),
                ("C", "a\\ b", 19),
                ("D", "\"\"", 26)
            ]
        );
        let Args::Pairs { pairs, legacy } = one("ENV PATH  /a b  c").args else {
            panic!()
        };
        assert!(legacy);
        assert_eq!(pairs[0].key.text, "PATH");
        assert_eq!(pairs[0].value.text, "/a b  c");
        assert_eq!(pairs[0].value.span.column, 11);
        assert!(parse_syntax("f", "ENV A=1 B\n").is_err());
        assert!(parse_syntax("f", "ENV A\n").is_err());
    }

    #[test]
    fn arg_decls() {
        let Args::Decls(decls) = one("ARG A B=2 C=").args else {
            panic!()
        };
        let got: Vec<_> = decls
            .iter()
            .map(|d| {
                (
                    d.name.text.as_str(),
                    d.default.as_ref().map(|w| w.text.as_str()),
                )
            })
            .collect();
        assert_eq!(got, [("A", None), ("B", Some("2")), ("C", Some(""))]);
    }

    #[test]
    fn heredocs_of_every_kind() {
        let text = "RUN <<A 3<<-'B' cat <<\"C\"\n$x\nA\n\tb\n\tB\nc\nC\nCMD x\n";
        let syntax = parse_syntax("f", text).unwrap();
        let run = &syntax.instructions[0];
        assert_eq!(run.end_line, 7);
        let got: Vec<_> = run
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.body(), h.chomp, h.expand, h.fd))
            .collect();
        assert_eq!(
            got,
            [
                ("A", "$x\n".to_string(), false, true, None),
                ("B", "b\n".to_string(), true, false, Some(3)),
                ("C", "c\n".to_string(), false, false, None),
            ]
        );
        assert_eq!(syntax.instructions[1].start_line, 8);
    }

    #[test]
    fn heredocs_only_where_allowed() {
        let syntax = parse_syntax("f", "RUN [\"<<EOF\"]\nCMD <<EOF\nRUN echo '<<EOF'\n").unwrap();
        assert_eq!(syntax.instructions.len(), 3);
        assert!(syntax.instructions.iter().all(|i| i.heredocs.is_empty()));
    }

    #[test]
    fn onbuild_nests_with_heredocs() {
        let ins = one("ONBUILD RUN <<EOF\necho hi\nEOF\n");
        let Args::Trigger(inner) = &ins.args else {
            panic!()
        };
        assert_eq!(inner.keyword, Keyword::Run);
        assert_eq!(inner.source, "RUN <<EOF");
        assert_eq!(inner.heredocs[0].content, "echo hi\n");
    }

    #[test]
    fn healthcheck_shapes() {
        let Args::Healthcheck { kind, command } =
            one("HEALTHCHECK --interval=5s CMD [\"true\"]").args
        else {
            panic!()
        };
        assert_eq!(kind.text, "CMD");
        assert!(matches!(*command, Args::Json { .. }));
    }
}
