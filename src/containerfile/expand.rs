//! Word expansion: `$VAR`, `${VAR…}` substitutions, quotes and escapes, as
//! Docker/BuildKit's shell lexer (`frontend/dockerfile/shell/lex.go`) does
//! them for the instructions that expand (ADD, ARG, COPY, ENV, EXPOSE, FROM,
//! LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR; RUN, CMD and ENTRYPOINT are
//! left to the shell).
//!
//! Terms:
//! - a *word* is the text of one argument as written (quotes included);
//! - [`Expander::expand_word`] turns it into one string (BuildKit's
//!   `ProcessWord`): quotes removed, variables substituted, whitespace kept;
//! - [`Expander::expand_words`] also splits the result into fields at unquoted
//!   whitespace, including whitespace that came out of a variable
//!   (`ProcessWords`).
//!
//! This is not a POSIX shell, and the differences are deliberate because
//! Containerfiles in the wild depend on them:
//! - the escape character (`\`, or `` ` `` with `# escape=`) escapes any
//!   character outside quotes; inside double quotes only `"`, `$` and the
//!   escape character itself; a trailing escape is dropped;
//! - `${VAR:=x}` and other modifiers outside the list below are errors;
//! - positional and special parameters (`$1`, `$@`, `$#`…) are never set;
//! - patterns in `#`, `%`, `/` are globs with only `*` and `?` (no bracket
//!   expressions), escaped with a backslash whatever the escape character;
//! - in `${VAR//p/r}` the replacement goes through Go's regexp template
//!   expansion (`$0` is the match, `$$` a dollar, other `$name` empty)
//!   while `${VAR/p/r}` inserts it literally — an accident of BuildKit's
//!   implementation that we keep so the same file gives the same image.
//!
//! Supported substitutions: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`,
//! `${V+w}`, `${V:?w}`, `${V?w}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`,
//! `${V/p/r}`, `${V//p/r}`.
//!
//! Variable names are case-sensitive. "Letter" and "digit" in names follow
//! Rust's `char::is_alphabetic` and decimal digits, which agree with Go's
//! `unicode.IsLetter`/`IsDigit` on everything but a few exotic code points.
//!
//! Everything here is pure; the cost is linear in the word except for glob
//! substitutions, which are O(value × pattern) per match attempt.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Where the expander looks variables up. `None` means unset, which differs
/// from set-but-empty for `${V-w}`, `${V+w}` and `${V?w}`.
pub trait Env {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs; a later pair overrides an earlier one,
/// as in a process environment built up in order.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why a word could not be expanded. The word itself and its location are
/// added by the caller ([`super::ParseError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    #[error("missing `{0}`")]
    Missing(char),
    #[error("bad substitution (expected a variable name after `${{`)")]
    BadSubstitution,
    #[error(
        "unsupported modifier `{0}` in substitution (expected one of :- - :+ + :? ? # ## % %% / //)"
    )]
    UnsupportedModifier(String),
    /// `${V?msg}` / `${V:?msg}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern `{pattern}` in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
}

/// The expander's settings. [`Expander::new`] is what instructions use; the
/// other modes exist for heredocs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expander {
    escape: char,
    /// Keep quote characters in the output (heredoc delimiter detection).
    raw_quotes: bool,
    /// Keep escape characters in the output (heredoc delimiter detection).
    raw_escapes: bool,
    /// Quotes are ordinary characters (heredoc bodies).
    skip_quotes: bool,
    /// Leave unset variables as written instead of substituting "".
    skip_unset: bool,
}

impl Expander {
    /// The lexer for instruction arguments, with the file's escape
    /// character (`\` unless `# escape=` says otherwise).
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
            skip_unset: false,
        }
    }

    /// The lexer for the body of an expanding heredoc (`COPY <<EOF`):
    /// quotes are plain text and the escape character is always `\`, as in
    /// BuildKit whatever the file's escape directive says.
    pub fn for_heredoc_body() -> Self {
        Self {
            skip_quotes: true,
            ..Self::new('\\')
        }
    }

    /// Splits text into words with quotes, escapes and unset variables left
    /// as written: how BuildKit finds `<<WORD` tokens on an instruction line.
    pub(crate) fn for_heredoc_detection() -> Self {
        Self {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: true,
            ..Self::new('\\')
        }
    }

    /// Heredoc delimiters with quotes removed but variables left alone.
    pub(crate) fn for_heredoc_name(raw_quotes: bool) -> Self {
        Self {
            raw_quotes,
            skip_unset: true,
            ..Self::new('\\')
        }
    }

    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` to a single string (BuildKit `ProcessWord`).
    pub fn expand_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.process(word, env)?.0)
    }

    /// Expands `word` and splits the result into fields at whitespace that
    /// is not quoted (BuildKit `ProcessWords`). Quoted empty strings do not
    /// make a field.
    pub fn expand_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.process(word, env)?.1)
    }

    fn process(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ExpandError> {
        let mut state = Shell {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
        };
        state.process_until(None, self.raw_escapes)
    }
}

/// Accumulates fields for [`Expander::expand_words`]: characters that came from
/// variables split at whitespace, quoted or escaped ones never do.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Shell<'e> {
    lex: Expander,
    chars: Vec<char>,
    pos: usize,
    env: &'e dyn Env,
    /// Changes while a pattern (`#`, `%`, `/`) is read.
    raw_escapes: bool,
}

impl Shell<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to `stop` (consumed) or the end of the word.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, fields.finish()));
            }
            if ch == '$' {
                let value = self.dollar()?;
                result.push_str(&value);
                fields.add_string(&value);
            } else if ch == '\'' && !self.lex.skip_quotes {
                let value = self.single_quoted()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else if ch == '"' && !self.lex.skip_quotes {
                let value = self.double_quoted()?;
                result.push_str(&value);
                fields.add_raw_string(&value);
            } else {
                self.pos += 1;
                let mut ch = ch;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        fields.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    ch = escaped;
                    fields.add_raw_char(ch);
                } else {
                    fields.add_char(ch);
                }
                result.push(ch);
            }
        }
        match stop {
            Some(c) => Err(ExpandError::Missing(c)),
            None => Ok((result, fields.finish())),
        }
    }

    /// `'…'`: everything literal, no escapes at all.
    fn single_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        self.pos += 1;
        if self.lex.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// `"…"`: variables expand; the escape character escapes only `"`, `$`
    /// and itself and is otherwise literal.
    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        self.pos += 1;
        if self.lex.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    out.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            // Dropped; the loop then reports the missing quote.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                ch = n;
                                self.pos += 1;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.env.lookup(name).map(str::to_string)
    }

    /// At a `$`: a substitution, or a literal `$` when no name follows.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::Missing('}')),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err(ExpandError::Missing('}'));
        };
        match ch {
            '}' => Ok(match self.get(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.modifier(name, ch),
            '/' => self.replace(name),
            other => Err(ExpandError::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${NAME` has been read, then `first` (`:` or an operator).
    fn modifier(&mut self, name: String, first: char) -> Result<String, ExpandError> {
        let mut op_text = first.to_string();
        let mut op = Some(first);
        let null_is_unset = first == ':';
        if null_is_unset {
            op = self.next();
            op_text.extend(op);
        }
        let pattern_op = matches!(op, Some('#' | '%'));
        let word = match self.process_until(Some('}'), pattern_op) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandError::Missing('}')),
            Err(e) => return Err(e),
        };
        let value = self.get(&name);
        if self.lex.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{op_text}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if unset_or_null { String::new() } else { word }),
            Some('?') => match value {
                Some(v) if !unset_or_null => Ok(v),
                _ => {
                    let message = if !word.is_empty() {
                        word
                    } else if value.is_none() {
                        "is not allowed to be unset".into()
                    } else {
                        "is not allowed to be empty".into()
                    };
                    Err(ExpandError::Required { name, message })
                }
            },
            Some(c @ ('#' | '%')) => {
                let (greedy, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                let glob = Glob::parse(pattern).map_err(|reason| ExpandError::InvalidPattern {
                    pattern: pattern.to_string(),
                    reason,
                })?;
                Ok(if c == '#' {
                    glob.trim_prefix(&value, greedy)
                } else {
                    glob.trim_suffix(&value, greedy)
                })
            }
            _ => Err(ExpandError::UnsupportedModifier(op_text)),
        }
    }

    /// `${NAME/` has been read.
    fn replace(&mut self, name: String) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = match self.process_until(Some('/'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandError::Missing('/')),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_until(Some('}'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return Err(ExpandError::Missing('}')),
            Err(e) => return Err(e),
        };
        let value = self.get(&name);
        if self.lex.skip_unset && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let glob = Glob::parse(&pattern).map_err(|reason| ExpandError::InvalidPattern {
            pattern: pattern.clone(),
            reason,
        })?;
        // An unset variable is the empty string here: patterns that match
        // it (`*`, nothing) still insert the replacement, as in BuildKit.
        let value = value.unwrap_or_default();
        Ok(glob.replace(&value, &replacement, all))
    }

    /// A variable name: letters, digits and `_`; or a run of digits
    /// (positional); or one special-parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| is_digit(*c)) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

/// Go's `unicode.IsDigit`: ASCII digits, and decimal digits of other
/// scripts (but not Latin-1's `²`, `½`…, which Rust calls numeric).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (u32::from(c) > 0xff && c.is_numeric())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Char(char),
    /// `?`
    Any,
    /// `*`
    Star,
}

/// A substitution pattern: `*` any run, `?` any one character, `\*`, `\?`,
/// `\\` literal; `\}` and `\/` are the literal characters (escaped only so
/// they do not end the substitution). Any other `\x` is an error.
///
/// We match with a small NFA instead of translating to a regex: with only
/// `*` and `?`, "shortest" and "longest" match (what `#`/`##` ask for) are
/// simply the first and last accepting end position.
#[derive(Debug, Clone)]
struct Glob {
    tokens: Vec<GlobToken>,
}

impl Glob {
    fn parse(pattern: &str) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' => tokens.push(GlobToken::Star),
                '?' => tokens.push(GlobToken::Any),
                '\\' => match chars.get(i) {
                    // The backslash only kept the character from ending the
                    // substitution; the character itself comes next.
                    Some('}' | '/') => {}
                    Some(&e @ ('*' | '?' | '\\')) => {
                        tokens.push(GlobToken::Char(e));
                        i += 1;
                    }
                    Some(other) => return Err(format!("invalid escape `\\{other}`")),
                    None => return Err("trailing `\\`".into()),
                },
                other => tokens.push(GlobToken::Char(other)),
            }
        }
        Ok(Self { tokens })
    }

    fn reversed(&self) -> Self {
        Self {
            tokens: self.tokens.iter().rev().copied().collect(),
        }
    }

    /// Adds the states reachable without consuming input (a `*` may match
    /// nothing).
    fn close(&self, states: &mut [bool]) {
        for i in 0..self.tokens.len() {
            if states[i] && self.tokens[i] == GlobToken::Star {
                states[i + 1] = true;
            }
        }
    }

    /// End positions `e` (in chars, ≥ `start`) such that the pattern matches
    /// `value[start..e]` exactly; the first and the last one.
    fn match_ends(&self, value: &[char], start: usize) -> Option<(usize, usize)> {
        let n = self.tokens.len();
        let mut states = vec![false; n + 1];
        states[0] = true;
        self.close(&mut states);
        let mut first = None;
        let mut last = None;
        let mut pos = start;
        loop {
            if states[n] {
                first.get_or_insert(pos);
                last = Some(pos);
            }
            let Some(&c) = value.get(pos) else { break };
            let mut next = vec![false; n + 1];
            let mut any = false;
            for i in 0..n {
                if !states[i] {
                    continue;
                }
                match self.tokens[i] {
                    GlobToken::Star => next[i] = true,
                    GlobToken::Any => next[i + 1] = true,
                    GlobToken::Char(t) if t == c => next[i + 1] = true,
                    GlobToken::Char(_) => {}
                }
            }
            self.close(&mut next);
            for s in &next {
                any |= *s;
            }
            if !any {
                break;
            }
            states = next;
            pos += 1;
        }
        Some((first?, last?))
    }

    /// `${V#p}` (shortest) and `${V##p}` (longest, `greedy`).
    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match self.match_ends(&chars, 0) {
            Some((first, last)) => chars[if greedy { last } else { first }..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `${V%p}` and `${V%%p}`: a prefix trim of the reversed value with the
    /// reversed pattern, as BuildKit does it.
    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed: String = value.chars().rev().collect();
        self.reversed()
            .trim_prefix(&reversed, greedy)
            .chars()
            .rev()
            .collect()
    }

    /// Leftmost match at or after `from`, longest at that start (BuildKit
    /// compiles these patterns greedy): `(start, end)`.
    fn find(&self, value: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=value.len()).find_map(|s| self.match_ends(value, s).map(|(_, last)| (s, last)))
    }

    /// `${V/p/r}` (first match, replacement literal) and `${V//p/r}` (every
    /// non-overlapping match, replacement through Go's template expansion,
    /// with Go's rule for empty matches right after a match).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        if !all {
            return match self.find(&chars, 0) {
                Some((s, e)) => {
                    let mut out: String = chars[..s].iter().collect();
                    out.push_str(replacement);
                    out.extend(&chars[e..]);
                    out
                }
                None => value.to_string(),
            };
        }
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= chars.len() {
            let Some((s, e)) = self.find(&chars, search) else {
                break;
            };
            out.extend(&chars[last_end..s]);
            if e > last_end || s == 0 {
                let matched: String = chars[s..e].iter().collect();
                out.push_str(&go_template(replacement, &matched));
            }
            last_end = e;
            search = if search + 1 > e { search + 1 } else { e };
        }
        out.extend(&chars[last_end..]);
        out
    }
}

/// Go's `Regexp.Expand` for a pattern without capture groups: `$$` is `$`,
/// `$0`/`${0}` the whole match, any other well-formed `$name`/`${name}`
/// nothing, and a malformed `$` stays literal.
fn go_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (brace, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len: usize = body
            .chars()
            .take_while(|c| c.is_alphabetic() || is_digit(*c) || *c == '_')
            .map(char::len_utf8)
            .sum();
        let name = &body[..len];
        let after = &body[len..];
        let well_formed = !name.is_empty() && (!brace || after.starts_with('}'));
        if !well_formed {
            out.push('$');
            continue;
        }
        rest = if brace { &after[1..] } else { after };
        if name == "0" {
            out.push_str(matched);
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(input: &str, pairs: &[(&str, &str)]) -> Result<String, ExpandError> {
        Expander::new('\\').expand_word(input, &env(pairs))
    }

    fn ok(input: &str, pairs: &[(&str, &str)]) -> String {
        word(input, pairs).unwrap_or_else(|e| panic!("{input:?}: {e}"))
    }

    #[test]
    fn plain_and_braced_variables() {
        let e = [("NAME", "world"), ("EMPTY", "")];
        assert_eq!(ok("hello $NAME!", &e), "hello world!");
        assert_eq!(ok("hello ${NAME}s", &e), "hello worlds");
        assert_eq!(ok("[$EMPTY][$UNSET]", &e), "[][]");
        assert_eq!(ok("$NAME_x", &e), "");
        assert_eq!(ok("cost: $5", &e), "cost: ");
        assert_eq!(ok("100$", &e), "100$");
    }

    #[test]
    fn default_operators_distinguish_unset_from_empty() {
        let e = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(ok("${SET:-d}|${EMPTY:-d}|${UNSET:-d}", &e), "v|d|d");
        assert_eq!(ok("${SET-d}|${EMPTY-d}|${UNSET-d}", &e), "v||d");
    }

    #[test]
    fn alternative_operators_distinguish_unset_from_empty() {
        let e = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(ok("${SET:+a}|${EMPTY:+a}|${UNSET:+a}", &e), "a||");
        assert_eq!(ok("${SET+a}|${EMPTY+a}|${UNSET+a}", &e), "a|a|");
    }

    #[test]
    fn required_operators_report_the_message() {
        let e = [("SET", "v"), ("EMPTY", ""), ("WHO", "ops")];
        assert_eq!(ok("${SET:?x}${SET?x}${EMPTY?x}", &e), "vv");
        assert_eq!(
            word("${EMPTY:?ask $WHO}", &e).unwrap_err().to_string(),
            "EMPTY: ask ops"
        );
        assert_eq!(
            word("${UNSET?}", &e).unwrap_err().to_string(),
            "UNSET: is not allowed to be unset"
        );
        assert_eq!(
            word("${EMPTY:?}", &e).unwrap_err().to_string(),
            "EMPTY: is not allowed to be empty"
        );
    }

    #[test]
    fn prefix_trim_shortest_and_longest() {
        let e = [("P", "/usr/local/bin/tool"), ("X", "aXbXc")];
        assert_eq!(ok("${P#*/}", &e), "usr/local/bin/tool");
        assert_eq!(ok("${P##*/}", &e), "tool");
        assert_eq!(ok("${X#?X}", &e), "bXc");
        assert_eq!(ok("${X#nomatch}", &e), "aXbXc");
        assert_eq!(ok("${X#*}", &e), "aXbXc");
        assert_eq!(ok("${X##*}", &e), "");
    }

    #[test]
    fn suffix_trim_shortest_and_longest() {
        let e = [("F", "archive.tar.gz")];
        assert_eq!(ok("${F%.*}", &e), "archive.tar");
        assert_eq!(ok("${F%%.*}", &e), "archive");
        assert_eq!(ok("${F%.g?}", &e), "archive.tar");
        assert_eq!(ok("${F%zip}", &e), "archive.tar.gz");
    }

    #[test]
    fn pattern_escapes() {
        let e = [("S", "a*b?c}d/e\\f")];
        assert_eq!(ok("${S#a\\*}", &e), "b?c}d/e\\f");
        assert_eq!(ok("${S#*\\?}", &e), "c}d/e\\f");
        assert_eq!(ok("${S#*\\}}", &e), "d/e\\f");
        assert_eq!(ok("${S%\\\\f}", &e), "a*b?c}d/e");
        assert!(matches!(
            word("${S#\\x}", &e),
            Err(ExpandError::InvalidPattern { .. })
        ));
    }

    #[test]
    fn replace_first_and_all() {
        let e = [("V", "one.two.three"), ("DOT", ".")];
        assert_eq!(ok("${V/./-}", &e), "one-two.three");
        assert_eq!(ok("${V//./-}", &e), "one-two-three");
        assert_eq!(ok("${V//$DOT/}", &e), "onetwothree");
        assert_eq!(ok("${V/t*/X}", &e), "one.X");
        assert_eq!(ok("${V/#/X}", &e), "one.two.three");
        assert_eq!(ok("${V//\\//x}", &[("V", "a/b/c")]), "axbxc");
        // Empty pattern: first form inserts once, the all form between every char.
        assert_eq!(ok("${V/$NONE/>}", &[("V", "ab")]), ">ab");
        assert_eq!(ok("${V//$NONE/-}", &[("V", "ab")]), "-a-b-");
        // Go template expansion only in the "all" form.
        assert_eq!(ok("${V//b/[\\$0]}", &[("V", "abc")]), "a[\\b]c");
        assert_eq!(ok("${V/b/[\\$0]}", &[("V", "abc")]), "a[\\$0]c");
        assert!(word("${V//x}", &e).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        let e = [("A", "a  b")];
        assert_eq!(ok(r#"'$A' "$A" \$A"#, &e), "$A a  b $A");
        assert_eq!(ok(r#""a\"b" "a\tb""#, &e), "a\"b a\\tb");
        assert_eq!(word("'open", &e), Err(ExpandError::UnterminatedSingleQuote));
        assert_eq!(
            word("\"open", &e),
            Err(ExpandError::UnterminatedDoubleQuote)
        );
    }

    #[test]
    fn backtick_escape() {
        let lex = Expander::new('`');
        let e = env(&[("A", "x")]);
        assert_eq!(lex.expand_word("c:\\dir\\`$A", &e).unwrap(), "c:\\dir\\$A");
        assert_eq!(lex.expand_word("\"`\"q`\"\"", &e).unwrap(), "\"q\"");
    }

    #[test]
    fn words_split_only_unquoted_variable_whitespace() {
        let lex = Expander::new('\\');
        let e = env(&[("A", " x  y ")]);
        assert_eq!(
            lex.expand_words("a${A}b", &e).unwrap(),
            ["a", "x", "y", "b"]
        );
        assert!(lex.expand_words("a${A:1}", &e).is_err());
        assert_eq!(lex.expand_words("\"a${A}b\"", &e).unwrap(), ["a x  y b"]);
        assert_eq!(lex.expand_words("'' \"\" c", &e).unwrap(), ["c"]);
    }

    #[test]
    fn heredoc_body_treats_quotes_as_text() {
        let lex = Expander::for_heredoc_body();
        let e = env(&[("A", "x")]);
        assert_eq!(
            lex.expand_word("'$A' \"$A\" \\$A\n", &e).unwrap(),
            "'x' \"x\" $A\n"
        );
    }

    #[test]
    fn go_template_rules() {
        assert_eq!(go_template("a$$b", "M"), "a$b");
        assert_eq!(go_template("<$0|${0}>", "M"), "<M|M>");
        assert_eq!(go_template("<$1$x${y}>", "M"), "<>");
        assert_eq!(go_template("$ ${ ${x", "M"), "$ ${ ${x");
    }
}
