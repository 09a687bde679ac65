//! Text → logical lines: the first of the front end's three layers.
//!
//! Terms:
//! - a *physical line* is a line of the file as stored (its `\n` or `\r\n`
//!   is not part of it);
//! - a *logical line* is one instruction's text: a physical line plus the
//!   lines joined to it by a trailing escape character (the *continuation*),
//!   with comment lines and blank lines inside the continuation dropped;
//! - *parser directives* (`# escape=…`, `# syntax=…`, `# check=…`) are
//!   comments at the very top of the file, before any other line (a blank
//!   line, another comment or an instruction ends the directive section);
//! - a *heredoc body* is read on demand ([`LineLexer::read_heredoc`]) right
//!   after the logical line that opened it, because only the instruction
//!   parser knows whether `<<EOF` opens one.
//!
//! The rules follow BuildKit's `parser.Parse`, quirks included:
//! - a line continues when it ends with the escape character, optionally
//!   followed by spaces or tabs, unless that character is itself escaped
//!   (`\\` at the end does not continue);
//! - continuation lines are appended without a separator and keep their
//!   leading whitespace; the first line of an instruction loses it;
//! - a `#` line is a comment only when `#` is its first non-blank character;
//!   `#` anywhere else is text;
//! - a byte-order mark at the start of the file is ignored.
//!
//! Every byte of a logical line keeps its origin ([`LogicalLine::position`]),
//! so later layers can point at the physical line and column.

use super::error::{ErrorKind, ParseError};

/// A `# name=value` directive from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lowercased: `escape`, `syntax` or `check`.
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// One instruction's text with a map back to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    /// First and last physical line (1-based) the text came from.
    pub start_line: usize,
    pub end_line: usize,
    /// Where each appended piece of `text` starts: (offset in `text`, line,
    /// column of that offset), in increasing offset order.
    segments: Vec<(usize, usize, usize)>,
    /// Blank lines were skipped inside the continuation (BuildKit warns).
    pub had_empty_continuation: bool,
}

impl LogicalLine {
    /// The (line, column) of byte `offset` of [`Self::text`]; columns are
    /// 1-based and count characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let i = self
            .segments
            .partition_point(|&(start, _, _)| start <= offset)
            .saturating_sub(1);
        let (start, line, column) = self.segments[i];
        let end = offset.min(self.text.len()).max(start);
        let chars = self.text.get(start..end).map_or(0, |s| s.chars().count());
        (line, column + chars)
    }
}

/// Reads a Containerfile's text one logical line at a time.
pub struct LineLexer<'a> {
    label: String,
    /// Physical lines, each with its line ending still attached.
    lines: Vec<&'a str>,
    /// Index into `lines` of the next line to read (= lines read so far).
    next: usize,
    escape: char,
    directives: Vec<Directive>,
    directives_done: bool,
}

impl<'a> LineLexer<'a> {
    pub fn new(label: &str, text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self {
            label: label.to_string(),
            lines: text.split_inclusive('\n').collect(),
            next: 0,
            escape: '\\',
            directives: Vec::new(),
            directives_done: false,
        }
    }

    /// The escape character: `\` unless a directive changed it.
    pub fn escape(&self) -> char {
        self.escape
    }

    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }

    /// Number of physical lines read so far (the current line number).
    pub fn lines_read(&self) -> usize {
        self.next
    }

    fn error(&self, line: usize, kind: ErrorKind) -> ParseError {
        ParseError {
            file: self.label.clone(),
            line,
            column: None,
            kind: Box::new(kind),
        }
    }

    /// The next physical line without its line ending, and its number.
    fn physical(&mut self) -> Option<(&'a str, usize)> {
        let raw = *self.lines.get(self.next)?;
        self.next += 1;
        Some((trim_newline(raw), self.next))
    }

    /// Parser directives: only in comment lines before anything else.
    fn directive(&mut self, line: &str, number: usize) -> Result<(), ParseError> {
        if self.directives_done {
            return Ok(());
        }
        let Some((name, value)) = parse_directive(line) else {
            self.directives_done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            // Unknown directives are comments, and end the section.
            self.directives_done = true;
            return Ok(());
        }
        if let Some(first) = self.directives.iter().find(|d| d.name == name) {
            return Err(self.error(
                number,
                ErrorKind::DuplicateDirective {
                    name,
                    first_line: first.line,
                },
            ));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                other => return Err(self.error(number, ErrorKind::InvalidEscape(other.into()))),
            };
        }
        self.directives.push(Directive {
            name,
            value: value.to_string(),
            line: number,
        });
        Ok(())
    }

    /// The next logical line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<LogicalLine>, ParseError> {
        loop {
            let Some((raw, number)) = self.physical() else {
                return Ok(None);
            };
            let trimmed = raw.trim_start();
            self.directive(trimmed, number)?;
            if trimmed.starts_with('#') {
                continue;
            }
            let (content, mut done) = trim_continuation(trimmed, self.escape);
            if done && content.is_empty() {
                continue;
            }
            let column = raw[..raw.len() - trimmed.len()].chars().count() + 1;
            let mut line = LogicalLine {
                text: content.to_string(),
                start_line: number,
                end_line: number,
                segments: vec![(0, number, column)],
                had_empty_continuation: false,
            };
            while !done {
                let Some((raw, number)) = self.physical() else {
                    break;
                };
                self.directive(raw, number)?;
                line.end_line = number;
                let trimmed = raw.trim_start();
                if trimmed.starts_with('#') {
                    continue;
                }
                if trimmed.is_empty() {
                    line.had_empty_continuation = true;
                    continue;
                }
                let (content, end) = trim_continuation(raw, self.escape);
                done = end;
                line.segments.push((line.text.len(), number, 1));
                line.text.push_str(content);
            }
            return Ok(Some(line));
        }
    }

    /// Reads a heredoc body up to the line that is exactly `name` (after
    /// removing leading tabs when `chomp`, for `<<-`). The body keeps its
    /// line endings and, even for `<<-`, its tabs ([`super::Heredoc::body`]
    /// removes them).
    pub fn read_heredoc(
        &mut self,
        name: &str,
        chomp: bool,
        start_line: usize,
    ) -> Result<String, ParseError> {
        let mut content = String::new();
        while let Some(&raw) = self.lines.get(self.next) {
            self.next += 1;
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Ok(content);
            }
            content.push_str(raw);
        }
        Err(self.error(
            self.next.max(1),
            ErrorKind::UnterminatedHeredoc {
                name: name.to_string(),
                start_line,
            },
        ))
    }
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a continuation (escape character, then only spaces or tabs, at
/// the end) and says whether the instruction ends on this line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape)
        && !before.ends_with(escape)
    {
        return (before, false);
    }
    (line, true)
}

/// `#` `name` `=` `value` with optional blanks around each part, as BuildKit's
/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` (where `\s` is ASCII
/// whitespace). A value of only blanks is kept as its last blank, which is
/// what that expression captures.
fn parse_directive(line: &str) -> Option<(&str, &str)> {
    let is_blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_blank);
    let name_len = rest
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_blank).strip_prefix('=')?;
    let value = rest.trim_matches(is_blank);
    if !value.is_empty() {
        return Some((name, value));
    }
    let last = rest.chars().last()?;
    Some((name, &rest[rest.len() - last.len_utf8()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(String, usize, usize)> {
        let mut lexer = LineLexer::new("Containerfile", text);
        let mut out = Vec::new();
        while let Some(l) = lexer.next_line().unwrap() {
            out.push((l.text, l.start_line, l.end_line));
        }
        out
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let text = "FROM a\n\n  RUN one \\\n  # inside\n\n    two\\  \n three\n# after\nCMD x\n";
        assert_eq!(
            lines(text),
            vec![
                ("FROM a".to_string(), 1, 1),
                ("RUN one     two three".to_string(), 3, 7),
                ("CMD x".to_string(), 9, 9),
            ]
        );
    }

    #[test]
    fn escaped_escape_does_not_continue() {
        assert_eq!(
            lines("RUN a\\\\\nRUN b\n"),
            vec![("RUN a\\\\".into(), 1, 1), ("RUN b".into(), 2, 2)]
        );
        assert_eq!(lines("RUN a \\\n\\\nb"), vec![("RUN a b".into(), 1, 3)]);
    }

    #[test]
    fn crlf_and_bom() {
        assert_eq!(
            lines("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n"),
            vec![("FROM a".into(), 1, 1), ("RUN b  c".into(), 2, 3)]
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let mut lexer = LineLexer::new(
            "f",
            "# syntax=x/y:1\n#ESCAPE = `\nFROM a `\n b\n# escape=\\\n",
        );
        let first = lexer.next_line().unwrap().unwrap();
        assert_eq!(first.text, "FROM a  b");
        assert!(lexer.next_line().unwrap().is_none());
        assert_eq!(lexer.escape(), '`');
        let names: Vec<_> = lexer
            .directives()
            .iter()
            .map(|d| (d.name.as_str(), d.value.as_str(), d.line))
            .collect();
        assert_eq!(names, [("syntax", "x/y:1", 1), ("escape", "`", 2)]);
    }

    #[test]
    fn unknown_directive_or_comment_ends_the_section() {
        let mut lexer = LineLexer::new("f", "# foo=bar\n# escape=`\nFROM a\n");
        lexer.next_line().unwrap();
        assert_eq!(lexer.escape(), '\\');
        let mut lexer = LineLexer::new("f", "\n# escape=`\nFROM a\n");
        lexer.next_line().unwrap();
        assert_eq!(lexer.escape(), '\\');
    }

    #[test]
    fn directive_errors() {
        let err = LineLexer::new("f", "# escape=x\nFROM a\n")
            .next_line()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:1: invalid escape directive `x`: expected `\\` or `` ` ``"
        );
        let err = LineLexer::new("f", "# escape=`\n# escape=`\n")
            .next_line()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:2: duplicate `escape` parser directive (first given at line 1)"
        );
    }

    #[test]
    fn positions_follow_continuations() {
        let mut lexer = LineLexer::new("f", "  RUN a \\\n    bé \\\n c\n");
        let l = lexer.next_line().unwrap().unwrap();
        assert_eq!(l.text, "RUN a     bé  c");
        assert_eq!(l.position(0), (1, 3));
        assert_eq!(l.position(4), (1, 7));
        let b = l.text.find('b').unwrap();
        assert_eq!(l.position(b), (2, 5));
        let c = l.text.find('c').unwrap();
        assert_eq!(l.position(c), (3, 2));
    }

    #[test]
    fn heredoc_bodies() {
        let text = "RUN <<A <<-B\nline 1\n\tA\nA\n\tx\n\tB\nCMD y\n";
        let mut lexer = LineLexer::new("f", text);
        lexer.next_line().unwrap().unwrap();
        assert_eq!(lexer.read_heredoc("A", false, 1).unwrap(), "line 1\n\tA\n");
        assert_eq!(lexer.read_heredoc("B", true, 1).unwrap(), "\tx\n");
        assert_eq!(lexer.next_line().unwrap().unwrap().text, "CMD y");
        let err = lexer.read_heredoc("EOF", false, 7).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f:7: unterminated heredoc `EOF` (started at line 7; expected a line `EOF`)"
        );
    }
}
