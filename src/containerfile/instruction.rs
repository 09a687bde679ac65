//! Raw instructions → typed ones: the third layer. Owns [`Containerfile`],
//! [`Stage`] and [`Instruction`], checks every instruction's flags and
//! argument count, and groups instructions into stages.
//!
//! Values that Docker expands (see [`super::expand`]) stay [`RawWord`]s
//! here: their meaning depends on ARG and ENV values known only while
//! building, so expansion is the build's job, through
//! [`Containerfile::expand`] and [`Containerfile::expand_fields`] (which
//! locate errors in the file). Values that are never expanded (RUN, CMD,
//! ENTRYPOINT, SHELL, HEALTHCHECK, MAINTAINER) are plain strings.
//!
//! Invariants of a parsed [`Containerfile`]: at least one stage; stage
//! names unique (lowercased, as BuildKit compares them); only ARG before
//! the first FROM; no flag is silently ignored — unknown flags are errors
//! and flags we parse but cannot honour yet (`RUN --mount`, `COPY
//! --parents`, `--exclude`, …) are "not supported" errors.

use std::time::Duration;

use super::error::{ErrorKind, ParseError};
use super::expand::{Env, Expander};
use super::lexer::Directive;
use super::syntax::{
    ArgDecl, Args, Flag, Heredoc, KeyValue, Keyword, RawInstruction, RawWord, Span, Syntax,
    Warning, parse_heredoc_word,
};

/// A parsed Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    /// The file's name in messages.
    pub label: String,
    /// `\`, or `` ` `` after `# escape=``.
    pub escape: char,
    pub directives: Vec<Directive>,
    /// ARG declarations before the first FROM: usable in FROM lines, and in
    /// a stage that declares them again.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<Warning>,
}

/// `FROM [--platform=P] BASE [AS NAME]` and the instructions up to the next
/// FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` means).
    pub index: usize,
    /// Lowercased, as BuildKit compares stage names.
    pub name: Option<String>,
    /// An image reference, `scratch`, or an earlier stage's name; may use
    /// global ARGs. Expand it, then [`Containerfile::resolve_base`].
    pub base: RawWord,
    pub platform: Option<RawWord>,
    pub line: usize,
    /// The FROM line as written.
    pub source: String,
    pub instructions: Vec<Located<Instruction>>,
}

/// Something parsed from the file, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub line: usize,
    /// Last line, heredoc bodies included.
    pub end_line: usize,
    /// The instruction's text (its logical line, trimmed), for history.
    pub source: String,
    pub value: T,
}

/// One instruction of a stage. FROM is not here: it starts a [`Stage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `RUN [--network=default|none|host] [--security=sandbox|insecure] COMMAND`
    /// (shell form: run by SHELL, default `/bin/sh -c`) or
    /// `RUN ["EXE", "ARG"…]` (exec form); the command may be or use heredocs
    /// (`RUN <<EOF`, `RUN cat <<A >a`). `--mount` is refused.
    Run(Run),
    /// `CMD COMMAND` or `CMD ["EXE", "ARG"…]`.
    Cmd(Command),
    /// `ENTRYPOINT COMMAND` or `ENTRYPOINT ["EXE", "ARG"…]`.
    Entrypoint(Command),
    /// `SHELL ["EXE", "ARG"…]`, JSON form only.
    Shell(Vec<String>),
    /// `COPY [--from=STAGE|INDEX|IMAGE] [--chown=USER[:GROUP]] [--chmod=MODE]
    /// [--link] SRC… DEST` or `COPY […] ["SRC"…, "DEST"]`; a SRC may be a
    /// heredoc (`COPY <<EOF /etc/motd`).
    Copy(Copy),
    /// `ADD [--chown=…] [--chmod=…] [--link] [--checksum=sha256:HEX] SRC… DEST`
    /// (or JSON); SRC may be a URL, a local archive or a heredoc.
    Add(Add),
    /// `ENV KEY=VALUE [KEY=VALUE…]` or the legacy `ENV KEY VALUE…`.
    Env(Vec<KeyValue>),
    /// `ARG NAME[=DEFAULT] [NAME[=DEFAULT]…]`.
    Arg(Vec<ArgDecl>),
    /// `LABEL KEY=VALUE [KEY=VALUE…]`.
    Label(Vec<KeyValue>),
    /// `EXPOSE PORT[/PROTOCOL]…`; each word may expand to several.
    Expose(Vec<RawWord>),
    /// `VOLUME PATH…` or `VOLUME ["PATH"…]`.
    Volume(Vec<RawWord>),
    /// `WORKDIR PATH`.
    Workdir(RawWord),
    /// `USER USER[:GROUP]`.
    User(RawWord),
    /// `STOPSIGNAL SIGNAL`.
    StopSignal(RawWord),
    /// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D]
    /// [--start-interval=D] [--retries=N] CMD COMMAND` or `HEALTHCHECK NONE`.
    Healthcheck(Healthcheck),
    /// `ONBUILD INSTRUCTION`: stored in the image, run when it is used as a
    /// base. The trigger may not be ONBUILD, FROM or MAINTAINER.
    Onbuild(Onbuild),
    /// `MAINTAINER NAME` (deprecated; becomes the `maintainer` label).
    Maintainer(String),
}

impl Instruction {
    pub fn keyword(&self) -> Keyword {
        match self {
            Instruction::Run(_) => Keyword::Run,
            Instruction::Cmd(_) => Keyword::Cmd,
            Instruction::Entrypoint(_) => Keyword::Entrypoint,
            Instruction::Shell(_) => Keyword::Shell,
            Instruction::Copy(_) => Keyword::Copy,
            Instruction::Add(_) => Keyword::Add,
            Instruction::Env(_) => Keyword::Env,
            Instruction::Arg(_) => Keyword::Arg,
            Instruction::Label(_) => Keyword::Label,
            Instruction::Expose(_) => Keyword::Expose,
            Instruction::Volume(_) => Keyword::Volume,
            Instruction::Workdir(_) => Keyword::Workdir,
            Instruction::User(_) => Keyword::User,
            Instruction::StopSignal(_) => Keyword::StopSignal,
            Instruction::Healthcheck(_) => Keyword::Healthcheck,
            Instruction::Onbuild(_) => Keyword::Onbuild,
            Instruction::Maintainer(_) => Keyword::Maintainer,
        }
    }
}

/// A command as written; never expanded by us (the shell does it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: the text, run as `SHELL + [text]`.
    Shell(String),
    /// Exec form: the argv.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The build's default (`--network` of `builder build`).
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    #[default]
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// Heredoc bodies opened on the RUN line, in order.
    pub heredocs: Vec<Heredoc>,
    pub network: Network,
    pub security: Security,
}

/// What a RUN executes once its heredocs are taken into account (BuildKit's
/// `dispatchRun`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCommand {
    /// Exec form.
    Exec(Vec<String>),
    /// Text for `SHELL`: the command, with any heredoc bodies appended
    /// after it (`cmd <<A\nbody\nA`) for the shell to read.
    Shell(String),
    /// `RUN <<EOF` alone: the body is the script. When it starts with `#!`
    /// the build runs it as an executable file; otherwise it goes to
    /// `SHELL` like shell-form text.
    Script(String),
}

impl Run {
    pub fn effective(&self) -> RunCommand {
        match &self.command {
            Command::Exec(argv) => RunCommand::Exec(argv.clone()),
            Command::Shell(text) if self.heredocs.is_empty() => RunCommand::Shell(text.clone()),
            Command::Shell(text) => {
                if let Ok(Some(_)) = parse_heredoc_word(text) {
                    return RunCommand::Script(self.heredocs[0].body());
                }
                let mut full = text.clone();
                for h in &self.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                RunCommand::Shell(full)
            }
        }
    }
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path (or for ADD, a URL) as written; expands to one string.
    Path(RawWord),
    /// `<<NAME`: a file called NAME with the heredoc's body.
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: RawWord,
    pub from: Option<RawWord>,
    pub chown: Option<RawWord>,
    pub chmod: Option<RawWord>,
    pub link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: RawWord,
    pub chown: Option<RawWord>,
    pub chmod: Option<RawWord>,
    pub link: bool,
    /// `sha256:HEX` the (remote) source must have.
    pub checksum: Option<RawWord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        /// Exec form becomes `["CMD", …]` in the image config, shell form
        /// `["CMD-SHELL", text]`.
        command: Command,
        /// Unset (`None`) means "inherit / engine default"; zero likewise.
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    pub trigger: Box<Instruction>,
    /// What the image config's `OnBuild` list stores: the trigger's text,
    /// followed by each heredoc (`\nBODY` + delimiter) as BuildKit does.
    pub source: String,
}

/// What a FROM or `COPY --from` names, once expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// The empty image.
    Scratch,
    /// A stage of this file, by index.
    Stage(usize),
    /// An image reference to pull or find in the store.
    Image(String),
}

impl Containerfile {
    /// The expander for this file's words (its escape character).
    pub fn expander(&self) -> Expander {
        Expander::new(self.escape)
    }

    fn expand_error(&self, word: &RawWord, source: super::expand::ExpandError) -> ParseError {
        ParseError {
            file: self.label.clone(),
            line: word.span.line,
            column: Some(word.span.column),
            kind: Box::new(ErrorKind::Expand {
                word: word.text.clone(),
                source,
            }),
        }
    }

    /// Expands a word to one string (ENV and LABEL values, WORKDIR, USER,
    /// COPY/ADD/VOLUME paths, flag values, FROM).
    pub fn expand(&self, word: &RawWord, env: &dyn Env) -> Result<String, ParseError> {
        self.expander()
            .expand_word(&word.text, env)
            .map_err(|e| self.expand_error(word, e))
    }

    /// Expands a word and splits it into fields (EXPOSE).
    pub fn expand_fields(&self, word: &RawWord, env: &dyn Env) -> Result<Vec<String>, ParseError> {
        self.expander()
            .expand_words(&word.text, env)
            .map_err(|e| self.expand_error(word, e))
    }

    /// A COPY/ADD heredoc's file content: its body, with variables expanded
    /// unless the delimiter was quoted.
    pub fn expand_heredoc(&self, heredoc: &Heredoc, env: &dyn Env) -> Result<String, ParseError> {
        let body = heredoc.body();
        if !heredoc.expand {
            return Ok(body);
        }
        Expander::for_heredoc_body()
            .expand_word(&body, env)
            .map_err(|source| ParseError {
                file: self.label.clone(),
                line: heredoc.line,
                column: None,
                kind: Box::new(ErrorKind::Expand {
                    word: format!("<<{}", heredoc.name),
                    source,
                }),
            })
    }

    /// The stage called `name` (case-insensitive).
    pub fn stage_by_name(&self, name: &str) -> Option<usize> {
        let name = name.to_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(name.as_str()))
    }

    /// What stage `stage`'s expanded FROM value names: `scratch`, an
    /// earlier stage, or an image.
    pub fn resolve_base(&self, stage: usize, base: &str) -> ImageSource {
        if base == "scratch" {
            return ImageSource::Scratch;
        }
        match self.stage_by_name(base) {
            Some(i) if i < stage => ImageSource::Stage(i),
            _ => ImageSource::Image(base.to_string()),
        }
    }

    /// What an expanded `COPY --from` value names: a stage by name or
    /// index, else an image. The build must still refuse a stage that
    /// depends on itself.
    pub fn resolve_from(&self, from: &str) -> ImageSource {
        if let Some(i) = self.stage_by_name(from) {
            return ImageSource::Stage(i);
        }
        if let Ok(i) = from.parse::<usize>()
            && i < self.stages.len()
        {
            return ImageSource::Stage(i);
        }
        if from == "scratch" {
            return ImageSource::Scratch;
        }
        ImageSource::Image(from.to_string())
    }

    /// Types and groups the raw instructions.
    pub fn from_syntax(syntax: &Syntax) -> Result<Self, ParseError> {
        let mut cf = Containerfile {
            label: syntax.label.clone(),
            escape: syntax.escape,
            directives: syntax.directives.clone(),
            global_args: Vec::new(),
            stages: Vec::new(),
            warnings: syntax.warnings.clone(),
        };
        let cx = Typer {
            label: &syntax.label,
        };
        for raw in &syntax.instructions {
            if raw.keyword == Keyword::From {
                let stage = cx.stage(raw, cf.stages.len())?;
                if let Some(name) = &stage.name
                    && let Some(first) = cf.stages.iter().find(|s| s.name.as_ref() == Some(name))
                {
                    return Err(cx.error(
                        raw,
                        None,
                        ErrorKind::DuplicateStage {
                            name: name.clone(),
                            first_line: first.line,
                        },
                    ));
                }
                cf.stages.push(stage);
                continue;
            }
            let instruction = cx.instruction(raw)?;
            let Some(stage) = cf.stages.last_mut() else {
                match instruction {
                    Instruction::Arg(decls) => {
                        cf.global_args.extend(decls);
                        continue;
                    }
                    other => {
                        return Err(cx.error(
                            raw,
                            None,
                            ErrorKind::BeforeFrom(other.keyword().name()),
                        ));
                    }
                }
            };
            stage.instructions.push(Located {
                line: raw.start_line,
                end_line: raw.end_line,
                source: raw.source.clone(),
                value: instruction,
            });
        }
        if cf.stages.is_empty() {
            let kind = if syntax.instructions.is_empty() {
                ErrorKind::NoInstructions
            } else {
                ErrorKind::NoFrom
            };
            return Err(ParseError {
                file: syntax.label.clone(),
                line: syntax.lines.max(1),
                column: None,
                kind: Box::new(kind),
            });
        }
        Ok(cf)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Bool,
    Text,
    /// May be repeated.
    List,
}

/// A flag an instruction accepts. `unsupported` ones are recognised only
/// to refuse them clearly.
struct FlagSpec {
    name: &'static str,
    kind: FlagType,
    unsupported: Option<Option<&'static str>>,
}

const fn ok(name: &'static str, kind: FlagType) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        unsupported: None,
    }
}

const fn refused(name: &'static str, kind: FlagType, hint: Option<&'static str>) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        unsupported: Some(hint),
    }
}

const FROM_FLAGS: &[FlagSpec] = &[ok("platform", FlagType::Text)];
const RUN_FLAGS: &[FlagSpec] = &[
    refused(
        "mount",
        FlagType::List,
        Some("cache, secret, ssh and bind mounts during RUN are not implemented; remove the flag"),
    ),
    ok("network", FlagType::Text),
    ok("security", FlagType::Text),
];
const COPY_FLAGS: &[FlagSpec] = &[
    ok("from", FlagType::Text),
    ok("chown", FlagType::Text),
    ok("chmod", FlagType::Text),
    ok("link", FlagType::Bool),
    refused("parents", FlagType::Bool, None),
    refused(
        "exclude",
        FlagType::List,
        Some("use a .dockerignore file instead"),
    ),
];
const ADD_FLAGS: &[FlagSpec] = &[
    ok("chown", FlagType::Text),
    ok("chmod", FlagType::Text),
    ok("link", FlagType::Bool),
    ok("checksum", FlagType::Text),
    refused(
        "keep-git-dir",
        FlagType::Bool,
        Some("git sources are not supported"),
    ),
    refused(
        "exclude",
        FlagType::List,
        Some("use a .dockerignore file instead"),
    ),
    refused("parents", FlagType::Bool, None),
    refused("unpack", FlagType::Bool, None),
];
const HEALTHCHECK_FLAGS: &[FlagSpec] = &[
    ok("interval", FlagType::Text),
    ok("timeout", FlagType::Text),
    ok("start-period", FlagType::Text),
    ok("start-interval", FlagType::Text),
    ok("retries", FlagType::Text),
];

/// Flags of one instruction, checked against its table.
struct Flags<'a> {
    flags: Vec<(&'static FlagSpec, &'a Flag)>,
}

impl<'a> Flags<'a> {
    fn text(&self, name: &str) -> Option<RawWord> {
        self.flags
            .iter()
            .find(|(spec, _)| spec.name == name)
            .map(|(_, f)| RawWord {
                text: f.value.clone().unwrap_or_default(),
                span: f.span,
            })
    }

    fn bool(&self, name: &str) -> bool {
        self.flags
            .iter()
            .find(|(spec, _)| spec.name == name)
            .is_some_and(|(_, f)| {
                f.value
                    .as_deref()
                    .is_none_or(|v| v.eq_ignore_ascii_case("true"))
            })
    }

    fn flag(&self, name: &str) -> Option<&'a Flag> {
        self.flags
            .iter()
            .find(|(spec, _)| spec.name == name)
            .map(|(_, f)| *f)
    }
}

struct Typer<'a> {
    label: &'a str,
}

impl Typer<'_> {
    fn error(&self, raw: &RawInstruction, at: Option<Span>, kind: ErrorKind) -> ParseError {
        ParseError {
            file: self.label.to_string(),
            line: at.map_or(raw.start_line, |s| s.line),
            column: at.map(|s| s.column),
            kind: Box::new(kind),
        }
    }

    fn bad_args(
        &self,
        raw: &RawInstruction,
        message: impl Into<String>,
        usage: &'static str,
    ) -> ParseError {
        self.error(
            raw,
            None,
            ErrorKind::BadArguments {
                instruction: raw.keyword.name(),
                message: message.into(),
                usage,
            },
        )
    }

    fn flags<'r>(
        &self,
        raw: &'r RawInstruction,
        specs: &'static [FlagSpec],
    ) -> Result<Flags<'r>, ParseError> {
        let mut flags = Flags { flags: Vec::new() };
        for flag in &raw.flags {
            let at = Some(flag.span);
            let Some(spec) = specs.iter().find(|s| s.name == flag.name) else {
                return Err(self.error(
                    raw,
                    at,
                    ErrorKind::UnknownFlag {
                        instruction: raw.keyword.name(),
                        flag: flag.name.clone(),
                        known: specs.iter().map(|s| s.name).collect(),
                    },
                ));
            };
            if let Some(hint) = spec.unsupported {
                return Err(self.error(
                    raw,
                    at,
                    ErrorKind::UnsupportedFlag {
                        instruction: raw.keyword.name(),
                        flag: flag.name.clone(),
                        hint,
                    },
                ));
            }
            let bad = |message: String| {
                self.error(
                    raw,
                    at,
                    ErrorKind::BadFlag {
                        flag: flag.name.clone(),
                        message,
                    },
                )
            };
            if spec.kind != FlagType::List && flags.flag(spec.name).is_some() {
                return Err(bad("given more than once".into()));
            }
            match (spec.kind, flag.value.as_deref()) {
                (FlagType::Bool, Some("")) => {
                    return Err(bad("expects `true` or `false` after `=`".into()));
                }
                (FlagType::Bool, Some(v))
                    if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") =>
                {
                    return Err(bad(format!("expects `true` or `false`, not `{v}`")));
                }
                (FlagType::Text | FlagType::List, None) => {
                    return Err(bad(format!("needs a value: `--{}=VALUE`", flag.name)));
                }
                _ => {}
            }
            flags.flags.push((spec, flag));
        }
        Ok(flags)
    }

    fn no_flags(&self, raw: &RawInstruction) -> Result<(), ParseError> {
        self.flags(raw, &[]).map(|_| ())
    }

    fn stage(&self, raw: &RawInstruction, index: usize) -> Result<Stage, ParseError> {
        const USAGE: &str = "`FROM [--platform=PLATFORM] IMAGE [AS NAME]`";
        let flags = self.flags(raw, FROM_FLAGS)?;
        let words = match &raw.args {
            Args::Words(w) => w.as_slice(),
            _ => &[],
        };
        let (base, name) = match words {
            [base] => (base, None),
            [base, as_word, name] if as_word.text.eq_ignore_ascii_case("as") => (base, Some(name)),
            [] => return Err(self.bad_args(raw, "missing the base image", USAGE)),
            _ => {
                return Err(self.bad_args(
                    raw,
                    format!("takes one or three arguments, not {}", words.len()),
                    USAGE,
                ));
            }
        };
        let name = match name {
            None => None,
            Some(word) => {
                let lower = word.text.to_lowercase();
                if !lower.contains('$') && !valid_stage_name(&lower) {
                    return Err(self.error(
                        raw,
                        Some(word.span),
                        ErrorKind::InvalidStageName(word.text.clone()),
                    ));
                }
                Some(lower)
            }
        };
        Ok(Stage {
            index,
            name,
            base: base.clone(),
            platform: flags.text("platform"),
            line: raw.start_line,
            source: raw.source.clone(),
            instructions: Vec::new(),
        })
    }

    fn command(
        &self,
        raw: &RawInstruction,
        args: &Args,
        usage: &'static str,
    ) -> Result<Command, ParseError> {
        match args {
            Args::Text(text) => Ok(Command::Shell(text.text.clone())),
            Args::Json { items, .. } => Ok(Command::Exec(items.clone())),
            _ => Err(self.bad_args(raw, "missing the command", usage)),
        }
    }

    fn instruction(&self, raw: &RawInstruction) -> Result<Instruction, ParseError> {
        match raw.keyword {
            Keyword::From => {
                Err(self.bad_args(raw, "FROM cannot be used here", "`ONBUILD INSTRUCTION`"))
            }
            Keyword::Run => self.run(raw),
            Keyword::Cmd => {
                self.no_flags(raw)?;
                Ok(Instruction::Cmd(self.command(
                    raw,
                    &raw.args,
                    "`CMD COMMAND` or `CMD [\"EXE\", \"ARG\"…]` (`CMD []` clears it)",
                )?))
            }
            Keyword::Entrypoint => {
                self.no_flags(raw)?;
                Ok(Instruction::Entrypoint(self.command(
                    raw,
                    &raw.args,
                    "`ENTRYPOINT COMMAND` or `ENTRYPOINT [\"EXE\", \"ARG\"…]` (`ENTRYPOINT []` clears it)",
                )?))
            }
            Keyword::Shell => {
                self.no_flags(raw)?;
                match &raw.args {
                    Args::Json { items, .. } if !items.is_empty() => {
                        Ok(Instruction::Shell(items.clone()))
                    }
                    Args::Json { span, .. } => Err(self.error(
                        raw,
                        Some(*span),
                        ErrorKind::JsonRequired {
                            instruction: "SHELL",
                            example: "`SHELL [\"/bin/sh\", \"-c\"]`",
                            detail: Some("the array is empty".into()),
                        },
                    )),
                    other => {
                        let at = match other {
                            Args::Text(w) => Some(w.span),
                            _ => None,
                        };
                        Err(self.error(
                            raw,
                            at,
                            ErrorKind::JsonRequired {
                                instruction: "SHELL",
                                example: "`SHELL [\"/bin/sh\", \"-c\"]`",
                                detail: raw.json_error.clone(),
                            },
                        ))
                    }
                }
            }
            Keyword::Copy => self.copy(raw),
            Keyword::Add => self.add(raw),
            Keyword::Env | Keyword::Label => {
                self.no_flags(raw)?;
                let usage = if raw.keyword == Keyword::Env {
                    "`ENV KEY=VALUE [KEY=VALUE…]`"
                } else {
                    "`LABEL KEY=VALUE [KEY=VALUE…]`"
                };
                let Args::Pairs { pairs, .. } = &raw.args else {
                    return Err(self.bad_args(raw, "missing KEY=VALUE", usage));
                };
                if pairs.is_empty() {
                    return Err(self.bad_args(raw, "missing KEY=VALUE", usage));
                }
                if let Some(blank) = pairs.iter().find(|p| p.key.text.is_empty()) {
                    return Err(self.error(
                        raw,
                        Some(blank.key.span),
                        ErrorKind::BadArguments {
                            instruction: raw.keyword.name(),
                            message: "a name is empty".into(),
                            usage,
                        },
                    ));
                }
                Ok(if raw.keyword == Keyword::Env {
                    Instruction::Env(pairs.clone())
                } else {
                    Instruction::Label(pairs.clone())
                })
            }
            Keyword::Arg => {
                const USAGE: &str = "`ARG NAME[=DEFAULT] [NAME[=DEFAULT]…]`";
                self.no_flags(raw)?;
                let decls = match &raw.args {
                    Args::Decls(d) if !d.is_empty() => d,
                    _ => return Err(self.bad_args(raw, "missing a name", USAGE)),
                };
                if let Some(blank) = decls.iter().find(|d| d.name.text.is_empty()) {
                    return Err(self.error(
                        raw,
                        Some(blank.name.span),
                        ErrorKind::BadArguments {
                            instruction: "ARG",
                            message: "a name is empty".into(),
                            usage: USAGE,
                        },
                    ));
                }
                Ok(Instruction::Arg(decls.clone()))
            }
            Keyword::Expose => {
                self.no_flags(raw)?;
                match &raw.args {
                    Args::Words(w) if !w.is_empty() => Ok(Instruction::Expose(w.clone())),
                    _ => Err(self.bad_args(raw, "missing a port", "`EXPOSE PORT[/PROTOCOL]…`")),
                }
            }
            Keyword::Volume => {
                const USAGE: &str = "`VOLUME PATH…` or `VOLUME [\"PATH\"…]`";
                self.no_flags(raw)?;
                let words: Vec<RawWord> = match &raw.args {
                    Args::Words(w) => w.clone(),
                    Args::Json { items, span } => items
                        .iter()
                        .map(|i| RawWord {
                            text: i.clone(),
                            span: *span,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                if words.is_empty() {
                    return Err(self.bad_args(raw, "missing a path", USAGE));
                }
                if words.iter().any(|w| w.text.trim().is_empty()) {
                    return Err(self.bad_args(raw, "a path is empty", USAGE));
                }
                Ok(Instruction::Volume(words))
            }
            Keyword::Workdir | Keyword::User | Keyword::StopSignal | Keyword::Maintainer => {
                self.no_flags(raw)?;
                let usage = match raw.keyword {
                    Keyword::Workdir => "`WORKDIR PATH`",
                    Keyword::User => "`USER USER[:GROUP]`",
                    Keyword::StopSignal => "`STOPSIGNAL SIGNAL`",
                    _ => "`MAINTAINER NAME`",
                };
                let Args::Text(word) = &raw.args else {
                    return Err(self.bad_args(raw, "missing its argument", usage));
                };
                Ok(match raw.keyword {
                    Keyword::Workdir => Instruction::Workdir(word.clone()),
                    Keyword::User => Instruction::User(word.clone()),
                    Keyword::StopSignal => Instruction::StopSignal(word.clone()),
                    _ => Instruction::Maintainer(word.text.clone()),
                })
            }
            Keyword::Healthcheck => self.healthcheck(raw),
            Keyword::Onbuild => {
                const USAGE: &str = "`ONBUILD INSTRUCTION`";
                self.no_flags(raw)?;
                let Args::Trigger(inner) = &raw.args else {
                    return Err(self.bad_args(raw, "missing the trigger instruction", USAGE));
                };
                if matches!(
                    inner.keyword,
                    Keyword::Onbuild | Keyword::From | Keyword::Maintainer
                ) {
                    return Err(self.error(
                        raw,
                        Some(inner.span),
                        ErrorKind::Other(format!(
                            "`{}` is not allowed as an `ONBUILD` trigger",
                            inner.keyword.name()
                        )),
                    ));
                }
                let trigger = self.instruction(inner)?;
                let mut source = inner.source.clone();
                for h in &inner.heredocs {
                    source.push('\n');
                    source.push_str(&h.content);
                    source.push_str(&h.name);
                }
                Ok(Instruction::Onbuild(Onbuild {
                    trigger: Box::new(trigger),
                    source,
                }))
            }
        }
    }

    fn run(&self, raw: &RawInstruction) -> Result<Instruction, ParseError> {
        let flags = self.flags(raw, RUN_FLAGS)?;
        let network = match flags.flag("network") {
            None => Network::Default,
            Some(f) => match f.value.as_deref() {
                Some("default") => Network::Default,
                Some("none") => Network::None,
                Some("host") => Network::Host,
                other => {
                    return Err(self.error(
                        raw,
                        Some(f.span),
                        ErrorKind::BadFlag {
                            flag: "network".into(),
                            message: format!(
                                "unknown network mode `{}` (expected `default`, `none` or `host`)",
                                other.unwrap_or_default()
                            ),
                        },
                    ));
                }
            },
        };
        let security = match flags.flag("security") {
            None => Security::Sandbox,
            Some(f) => match f.value.as_deref() {
                Some("sandbox") => Security::Sandbox,
                Some("insecure") => Security::Insecure,
                other => {
                    return Err(self.error(
                        raw,
                        Some(f.span),
                        ErrorKind::BadFlag {
                            flag: "security".into(),
                            message: format!(
                                "unknown security mode `{}` (expected `sandbox` or `insecure`)",
                                other.unwrap_or_default()
                            ),
                        },
                    ));
                }
            },
        };
        let command = self.command(raw, &raw.args, "`RUN COMMAND` or `RUN [\"EXE\", \"ARG\"…]`")?;
        if command == Command::Exec(Vec::new()) {
            return Err(self.bad_args(
                raw,
                "the command is empty",
                "`RUN COMMAND` or `RUN [\"EXE\", \"ARG\"…]`",
            ));
        }
        Ok(Instruction::Run(Run {
            command,
            heredocs: raw.heredocs.clone(),
            network,
            security,
        }))
    }

    /// COPY/ADD arguments: sources (paths or heredocs) and a destination.
    fn sources_and_dest(
        &self,
        raw: &RawInstruction,
        usage: &'static str,
    ) -> Result<(Vec<Source>, RawWord), ParseError> {
        let words: Vec<RawWord> = match &raw.args {
            Args::Words(w) => w.clone(),
            Args::Json { items, span } => items
                .iter()
                .map(|i| RawWord {
                    text: i.clone(),
                    span: *span,
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some((dest, sources)) = words.split_last() else {
            return Err(self.bad_args(raw, "missing sources and destination", usage));
        };
        if sources.is_empty() {
            return Err(self.bad_args(raw, "missing the destination (only one argument)", usage));
        }
        if let Ok(Some(_)) = parse_heredoc_word(&dest.text) {
            return Err(self.error(
                raw,
                Some(dest.span),
                ErrorKind::BadArguments {
                    instruction: raw.keyword.name(),
                    message: "the destination cannot be a heredoc".into(),
                    usage,
                },
            ));
        }
        let mut unused: Vec<&Heredoc> = raw.heredocs.iter().collect();
        let mut out = Vec::with_capacity(sources.len());
        for word in sources {
            let heredoc = match parse_heredoc_word(&word.text) {
                Ok(Some(start)) => unused
                    .iter()
                    .position(|h| h.name == start.name)
                    .map(|i| unused.remove(i).clone()),
                _ => None,
            };
            out.push(match heredoc {
                Some(h) => Source::Heredoc(h),
                None => Source::Path(word.clone()),
            });
        }
        Ok((out, dest.clone()))
    }

    fn copy(&self, raw: &RawInstruction) -> Result<Instruction, ParseError> {
        const USAGE: &str =
            "`COPY [--from=STAGE] [--chown=USER:GROUP] [--chmod=MODE] [--link] SRC… DEST`";
        let flags = self.flags(raw, COPY_FLAGS)?;
        let (sources, dest) = self.sources_and_dest(raw, USAGE)?;
        Ok(Instruction::Copy(Copy {
            sources,
            dest,
            from: flags.text("from"),
            chown: flags.text("chown"),
            chmod: flags.text("chmod"),
            link: flags.bool("link"),
        }))
    }

    fn add(&self, raw: &RawInstruction) -> Result<Instruction, ParseError> {
        const USAGE: &str =
            "`ADD [--chown=USER:GROUP] [--chmod=MODE] [--link] [--checksum=sha256:HEX] SRC… DEST`";
        let flags = self.flags(raw, ADD_FLAGS)?;
        let (sources, dest) = self.sources_and_dest(raw, USAGE)?;
        Ok(Instruction::Add(Add {
            sources,
            dest,
            chown: flags.text("chown"),
            chmod: flags.text("chmod"),
            link: flags.bool("link"),
            checksum: flags.text("checksum"),
        }))
    }

    fn healthcheck(&self, raw: &RawInstruction) -> Result<Instruction, ParseError> {
        const USAGE: &str = "`HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D] [--retries=N] CMD COMMAND` or `HEALTHCHECK NONE`";
        let Args::Healthcheck { kind, command } = &raw.args else {
            return Err(self.bad_args(raw, "missing `CMD` or `NONE`", USAGE));
        };
        let flags = self.flags(raw, HEALTHCHECK_FLAGS)?;
        if kind.text.eq_ignore_ascii_case("none") {
            if !matches!(**command, Args::None) {
                return Err(self.bad_args(raw, "`NONE` takes no arguments", USAGE));
            }
            if let Some(f) = raw.flags.first() {
                return Err(self.error(
                    raw,
                    Some(f.span),
                    ErrorKind::BadFlag {
                        flag: f.name.clone(),
                        message: "`HEALTHCHECK NONE` takes no flags".into(),
                    },
                ));
            }
            return Ok(Instruction::Healthcheck(Healthcheck::None));
        }
        if !kind.text.eq_ignore_ascii_case("cmd") {
            return Err(self.error(
                raw,
                Some(kind.span),
                ErrorKind::BadArguments {
                    instruction: "HEALTHCHECK",
                    message: format!("unknown type `{}`", kind.text),
                    usage: USAGE,
                },
            ));
        }
        let command = self.command(raw, command, USAGE)?;
        if command == Command::Exec(Vec::new()) {
            return Err(self.bad_args(raw, "the command is empty", USAGE));
        }
        let duration = |name: &str| -> Result<Option<Duration>, ParseError> {
            let Some(f) = flags.flag(name) else {
                return Ok(None);
            };
            let value = f.value.as_deref().unwrap_or_default();
            parse_go_duration(value)
                .and_then(|d| {
                    if !d.is_zero() && d < Duration::from_millis(1) {
                        Err("must be at least 1ms (or 0 for the default)".into())
                    } else {
                        Ok(Some(d))
                    }
                })
                .map_err(|message| {
                    self.error(
                        raw,
                        Some(f.span),
                        ErrorKind::BadFlag {
                            flag: name.to_string(),
                            message: format!("invalid duration `{value}`: {message}"),
                        },
                    )
                })
        };
        let retries = match flags.flag("retries") {
            None => None,
            Some(f) => {
                let value = f.value.as_deref().unwrap_or_default();
                match value.parse::<i32>() {
                    Ok(n) if n >= 1 => Some(n as u32),
                    _ => {
                        return Err(self.error(
                            raw,
                            Some(f.span),
                            ErrorKind::BadFlag {
                                flag: "retries".into(),
                                message: format!(
                                    "expects a whole number of at least 1, not `{value}`"
                                ),
                            },
                        ));
                    }
                }
            }
        };
        Ok(Instruction::Healthcheck(Healthcheck::Check {
            command,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start-period")?,
            start_interval: duration("start-interval")?,
            retries,
        }))
    }
}

/// BuildKit's rule for stage names: `^[a-z][a-z0-9-_.]*$` (after
/// lowercasing).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Go's `time.ParseDuration` (what Docker uses for HEALTHCHECK): a
/// sequence of decimal numbers with units `ns`, `us`/`µs`, `ms`, `s`, `m`,
/// `h`, like `1m30s` or `1.5h`; `0` alone needs no unit. Negative values
/// are refused (they are never meaningful here).
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let body = text.strip_prefix('+').unwrap_or(text);
    if body.starts_with('-') {
        return Err("must not be negative".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("expected a number with a unit, like `30s` or `1m30s`".into());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err("expected a number with a unit, like `30s` or `1m30s`".into());
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("bad number `{number}`"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "missing unit after `{number}` (ns, us, ms, s, m, h)"
                ));
            }
            other => return Err(format!("unknown unit `{other}` (ns, us, ms, s, m, h)")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerfile::parse;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("-1s").is_err());
        assert!(parse_go_duration("3 s").is_err());
        assert!(parse_go_duration("1d").is_err());
    }

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-1.x_y"));
        assert!(!valid_stage_name("1build"));
        assert!(!valid_stage_name("a/b"));
    }

    #[test]
    fn resolves_bases_and_copy_from() {
        let cf = parse(
            "f",
            "FROM busybox AS Base\nFROM base\nFROM scratch AS out\nCOPY --from=0 /a /b\n",
        )
        .unwrap();
        assert_eq!(cf.stages[0].name.as_deref(), Some("base"));
        assert_eq!(cf.resolve_base(1, "base"), ImageSource::Stage(0));
        assert_eq!(
            cf.resolve_base(0, "base"),
            ImageSource::Image("base".into())
        );
        assert_eq!(cf.resolve_base(2, "scratch"), ImageSource::Scratch);
        assert_eq!(cf.resolve_from("OUT"), ImageSource::Stage(2));
        assert_eq!(cf.resolve_from("1"), ImageSource::Stage(1));
        assert_eq!(cf.resolve_from("7"), ImageSource::Image("7".into()));
        assert_eq!(
            cf.resolve_from("alpine:3"),
            ImageSource::Image("alpine:3".into())
        );
    }

    #[test]
    fn run_with_heredocs() {
        let cf = parse(
            "f",
            "FROM a\nRUN <<-EOF\n\techo hi\n\tEOF\nRUN cat <<A >/x\nbody\nA\nRUN [\"true\"]\n",
        )
        .unwrap();
        let runs: Vec<RunCommand> = cf.stages[0]
            .instructions
            .iter()
            .map(|i| match &i.value {
                Instruction::Run(r) => r.effective(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            runs,
            [
                RunCommand::Script("echo hi\n".into()),
                RunCommand::Shell("cat <<A >/x\nbody\nA".into()),
                RunCommand::Exec(vec!["true".into()]),
            ]
        );
    }

    #[test]
    fn copy_heredoc_sources_keep_their_place() {
        let cf = parse("f", "FROM a\nCOPY a <<X b <<Y /d/\nx\nX\ny\nY\n").unwrap();
        let Instruction::Copy(copy) = &cf.stages[0].instructions[0].value else {
            panic!()
        };
        let kinds: Vec<String> = copy
            .sources
            .iter()
            .map(|s| match s {
                Source::Path(w) => w.text.clone(),
                Source::Heredoc(h) => format!("<<{}={}", h.name, h.body()),
            })
            .collect();
        assert_eq!(kinds, ["a", "<<X=x\n", "b", "<<Y=y\n"]);
        assert_eq!(copy.dest.text, "/d/");
    }

    #[test]
    fn heredoc_expansion_respects_quoting() {
        let cf = parse("f", "FROM a\nCOPY <<A <<'B' /d/\n$X \"q\"\nA\n$X\nB\n").unwrap();
        let Instruction::Copy(copy) = &cf.stages[0].instructions[0].value else {
            panic!()
        };
        let env = vec![("X".to_string(), "v".to_string())];
        let bodies: Vec<String> = copy
            .sources
            .iter()
            .map(|s| match s {
                Source::Heredoc(h) => cf.expand_heredoc(h, &env).unwrap(),
                Source::Path(_) => panic!(),
            })
            .collect();
        assert_eq!(bodies, ["v \"q\"\n", "$X\n"]);
    }

    #[test]
    fn expansion_errors_are_located() {
        let cf = parse("f", "FROM a\nWORKDIR   /x/${DIR:?set DIR}\n").unwrap();
        let Instruction::Workdir(word) = &cf.stages[0].instructions[0].value else {
            panic!()
        };
        let err = cf
            .expand(word, &crate::containerfile::expand::NoEnv)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:2:11: cannot expand `/x/${DIR:?set DIR}`: DIR: set DIR"
        );
    }

    #[test]
    fn onbuild_source_includes_heredocs() {
        let cf = parse("f", "FROM a\nonbuild run <<EOF\necho\nEOF\n").unwrap();
        let Instruction::Onbuild(ob) = &cf.stages[0].instructions[0].value else {
            panic!()
        };
        assert_eq!(ob.source, "run <<EOF\necho\nEOF");
        assert!(matches!(*ob.trigger, Instruction::Run(_)));
    }
}
