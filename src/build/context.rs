//! The build context: a directory, the ignore file that hides parts of it,
//! and the resolution of COPY/ADD source paths inside it.
//!
//! # Ignore patterns
//!
//! `.dockerignore` (or `<Containerfile>.dockerignore` beside the
//! Containerfile) with moby's `patternmatcher` semantics, reimplemented
//! here because gitignore-style crates (`ignore`) mean something else:
//! - one pattern a line; lines *starting* with `#` are comments; lines are
//!   trimmed; blank lines are skipped; a UTF-8 BOM is dropped;
//! - a leading `!` makes an exception (re-inclusion);
//! - patterns are cleaned like Go's `filepath.Clean` and a leading `/` is
//!   dropped: they are always relative to the context root;
//! - `*` matches within one path segment, `?` one character other than
//!   `/`, `[...]` a character class (`^` negates), `\` escapes, `**`
//!   any number of segments (also none);
//! - a pattern matching a directory matches everything below it;
//! - the last matching pattern wins, so `!` re-includes paths even below an
//!   excluded parent;
//! - a directory is skipped as a whole only when no exception could match
//!   anything inside it ([`Context::may_include_below`]).
//!
//! # Sources
//!
//! COPY/ADD sources are relative to the context root (a leading `/` is the
//! root too), may not leave it (`../x` is an error), and may hold
//! wildcards per path segment with Go's `filepath.Match` syntax. Symlinks
//! among the parents are resolved with the context as `/` (never out); a
//! source that is itself a symlink is followed only when its target stays
//! inside the context, and copied as a symlink otherwise. Ignored paths do
//! not exist as far as sources are concerned.

use std::path::{Component, Path, PathBuf};

use super::{At, BuildError};
use crate::runtime::plan::resolve_in_root;

/// What a resolved source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Dir,
    Symlink,
    /// A device, FIFO or socket: copied as what it is.
    Other,
}

/// One COPY/ADD source, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The pattern it came from, as the Containerfile gave it.
    pub pattern: String,
    /// Path relative to the context root (after resolving symlinks).
    pub rel: PathBuf,
    /// The path on disk.
    pub path: PathBuf,
    pub kind: SourceKind,
    /// Found by a wildcard (so the destination must be a directory).
    pub wildcard: bool,
}

/// A build context: a directory and its ignore patterns.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    matcher: Matcher,
}

impl Context {
    /// Opens `dir` as the build context. `ignore_file` is the ignore file
    /// to use; `None` uses `dir/.dockerignore` when it exists. See
    /// [`Context::ignore_file_for`] for the Containerfile-specific one.
    pub fn open(dir: &Path, ignore_file: Option<&Path>) -> Result<Context, BuildError> {
        let meta = std::fs::metadata(dir).map_err(|e| BuildError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(BuildError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let root = std::fs::canonicalize(dir).map_err(|e| BuildError::io(dir, e))?;
        let default = root.join(".dockerignore");
        let file = match ignore_file {
            Some(f) => Some(f.to_owned()),
            None => default.exists().then_some(default),
        };
        let matcher = match file {
            Some(f) => {
                let bytes = std::fs::read(&f).map_err(|e| BuildError::io(&f, e))?;
                Matcher::from_ignore_file(&String::from_utf8_lossy(&bytes), &f)?
            }
            None => Matcher::default(),
        };
        Ok(Context { root, matcher })
    }

    /// A directory without ignore patterns: an earlier stage's rootfs for
    /// `COPY --from`.
    pub fn directory(dir: &Path) -> Result<Context, BuildError> {
        let root = std::fs::canonicalize(dir).map_err(|e| BuildError::io(dir, e))?;
        Ok(Context {
            root,
            matcher: Matcher::default(),
        })
    }

    /// The ignore file BuildKit uses for `containerfile`:
    /// `<Containerfile>.dockerignore` beside it when that exists, else the
    /// context's `.dockerignore` (or `None`).
    pub fn ignore_file_for(context: &Path, containerfile: Option<&Path>) -> Option<PathBuf> {
        if let Some(cf) = containerfile
            && let Some(name) = cf.file_name()
        {
            let mut n = name.to_owned();
            n.push(".dockerignore");
            let specific = cf.with_file_name(n);
            if specific.is_file() {
                return Some(specific);
            }
        }
        let default = context.join(".dockerignore");
        default.is_file().then_some(default)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `rel` (relative to the root, `/`-separated) is hidden by the
    /// ignore file.
    pub fn is_excluded(&self, rel: &Path) -> bool {
        let s = rel.to_string_lossy();
        let s = go_clean(s.trim_start_matches('/'));
        if s == "." {
            return false;
        }
        self.matcher.matches(&s)
    }

    /// Whether a walk must enter the directory `rel` even though it is
    /// excluded: some exception could re-include a path below it.
    pub fn may_include_below(&self, rel: &Path) -> bool {
        let s = go_clean(rel.to_string_lossy().trim_start_matches('/'));
        self.matcher.may_include_below(&s)
    }

    /// Resolves COPY/ADD source patterns (already expanded) to what they
    /// name, in order; each wildcard's matches sorted by name.
    pub fn resolve_sources(&self, patterns: &[String]) -> Result<Vec<Source>, BuildError> {
        let mut out = Vec::new();
        for p in patterns {
            out.extend(self.resolve_one(p)?);
        }
        Ok(out)
    }

    fn resolve_one(&self, pattern: &str) -> Result<Vec<Source>, BuildError> {
        let not_found = || BuildError::SourceNotFound {
            at: At::default(),
            source_path: pattern.to_owned(),
        };
        let cleaned = go_clean(pattern.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(BuildError::SourceOutside {
                at: At::default(),
                source_path: pattern.to_owned(),
            });
        }
        let wildcard = has_meta(&cleaned);
        // Candidates: paths relative to the root, all symlinks among the
        // parents already resolved.
        let mut candidates = vec![PathBuf::new()];
        let segments: Vec<&str> = if cleaned == "." {
            Vec::new()
        } else {
            cleaned.split('/').collect()
        };
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let mut next = Vec::new();
            for c in &candidates {
                // Parents are confined to the root.
                let dir = if c.as_os_str().is_empty() {
                    PathBuf::new()
                } else {
                    resolve_in_root(&self.root, c)
                        .map_err(|e| BuildError::io(self.root.join(c), e))?
                };
                if has_meta(seg) {
                    let glob =
                        Glob::compile(seg, false).map_err(|reason| BuildError::SourcePattern {
                            at: At::default(),
                            source_path: pattern.to_owned(),
                            reason,
                        })?;
                    let Ok(rd) = std::fs::read_dir(self.root.join(&dir)) else {
                        continue;
                    };
                    let mut names: Vec<_> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name())
                        .filter(|n| glob.matches(&n.to_string_lossy(), false))
                        .collect();
                    names.sort();
                    next.extend(names.into_iter().map(|n| dir.join(n)));
                } else {
                    let unescaped = unescape(seg);
                    next.push(dir.join(unescaped));
                }
            }
            // A candidate that does not exist or is ignored drops out.
            next.retain(|c| {
                std::fs::symlink_metadata(self.root.join(c)).is_ok()
                    && (!self.is_excluded(c)
                        || (!last || self.may_include_below(c)) && self.root.join(c).is_dir())
            });
            candidates = next;
        }
        let mut out = Vec::new();
        for rel in candidates {
            let (rel, kind) = self.follow_final(&rel)?;
            out.push(Source {
                pattern: pattern.to_owned(),
                path: self.root.join(&rel),
                rel,
                kind,
                wildcard,
            });
        }
        if out.is_empty() {
            return Err(not_found());
        }
        Ok(out)
    }

    /// Follows a source that is a symlink while its target stays inside
    /// the context; stops at one that points out (or is dangling).
    fn follow_final(&self, rel: &Path) -> Result<(PathBuf, SourceKind), BuildError> {
        let mut rel = rel.to_owned();
        for _ in 0..40 {
            let path = self.root.join(&rel);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
            let ft = meta.file_type();
            if !ft.is_symlink() {
                let kind = if ft.is_dir() {
                    SourceKind::Dir
                } else if ft.is_file() {
                    SourceKind::File
                } else {
                    SourceKind::Other
                };
                return Ok((rel, kind));
            }
            let target = std::fs::read_link(&path).map_err(|e| BuildError::io(&path, e))?;
            let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
            match lexical_inside(&parent, &target) {
                Some(t) if std::fs::symlink_metadata(self.root.join(&t)).is_ok() => rel = t,
                _ => return Ok((rel, SourceKind::Symlink)),
            }
        }
        Ok((rel, SourceKind::Symlink))
    }
}

/// `parent/target` cleaned, if it is relative and stays inside the root.
fn lexical_inside(parent: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in parent.join(target).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a pattern has Go `filepath.Match` metacharacters.
fn has_meta(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, '*' | '?' | '[') {
            return true;
        }
    }
    false
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `filepath.Clean` on a `/`-separated path.
pub fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: any number of whole segments,
    /// including none (moby's `(.*/)?`).
    Segments,
    /// `**` at the end: anything.
    Rest,
    /// `?`: one character other than `/`.
    Any,
    /// `[...]`: ranges, negated by a leading `^`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone)]
struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// `double_star`: moby's `**` (ignore files); Go's `filepath.Match`
    /// (COPY sources) has no such thing and `**` is two `*`.
    fn compile(pattern: &str, double_star: bool) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i == chars.len() {
                        Tok::Rest
                    } else {
                        Tok::Segments
                    });
                }
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        toks.push(Tok::Char(n));
                        i += 1;
                    }
                    None => return Err("trailing `\\`".to_owned()),
                },
                '[' => {
                    let mut negated = false;
                    if chars.get(i) == Some(&'^') {
                        negated = true;
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    let mut first = true;
                    while i < chars.len() {
                        let mut lo = chars[i];
                        i += 1;
                        if lo == ']' && !first {
                            closed = true;
                            break;
                        }
                        first = false;
                        if lo == '\\' {
                            lo = *chars.get(i).ok_or("trailing `\\` in `[...]`")?;
                            i += 1;
                        }
                        let mut hi = lo;
                        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']')
                        {
                            hi = chars[i + 1];
                            i += 2;
                            if hi == '\\' {
                                hi = *chars.get(i).ok_or("trailing `\\` in `[...]`")?;
                                i += 1;
                            }
                            if hi < lo {
                                return Err(format!("bad range `{lo}-{hi}`"));
                            }
                        }
                        ranges.push((lo, hi));
                    }
                    if !closed {
                        return Err("unterminated `[`".to_owned());
                    }
                    toks.push(Tok::Class { negated, ranges });
                }
                c => toks.push(Tok::Char(c)),
            }
        }
        Ok(Glob { toks })
    }

    /// Whether the whole of `s` matches. With `tail`, `s` may also be
    /// anything below a match (`PATTERN(/.*)?`). With `prefix` (see
    /// [`Glob::matches_prefix`]), running out of input is a success.
    fn matches(&self, s: &str, tail: bool) -> bool {
        let chars: Vec<char> = s.chars().collect();
        m(&self.toks, &chars, tail, false)
    }

    /// Whether some extension of `s` matches.
    fn matches_prefix(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        m(&self.toks, &chars, true, true)
    }
}

fn m(toks: &[Tok], s: &[char], tail: bool, prefix: bool) -> bool {
    if s.is_empty() && prefix {
        return true;
    }
    let Some(t) = toks.first() else {
        return s.is_empty() || (tail && s[0] == '/');
    };
    let rest = &toks[1..];
    match t {
        Tok::Char(c) => s.first() == Some(c) && m(rest, &s[1..], tail, prefix),
        Tok::Any => s.first().is_some_and(|c| *c != '/') && m(rest, &s[1..], tail, prefix),
        Tok::Class { negated, ranges } => {
            s.first().is_some_and(|c| {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && (*c != '/' || !*negated)
            }) && m(rest, &s[1..], tail, prefix)
        }
        Tok::Star => {
            for i in 0..=s.len() {
                if m(rest, &s[i..], tail, prefix) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    break;
                }
            }
            false
        }
        Tok::Rest => true,
        Tok::Segments => {
            // Zero segments, or any prefix ending in `/`.
            if m(rest, s, tail, prefix) {
                return true;
            }
            (0..s.len()).any(|i| s[i] == '/' && m(rest, &s[i + 1..], tail, prefix))
        }
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    glob: Glob,
}

/// moby's `PatternMatcher`.
#[derive(Debug, Clone, Default)]
struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    /// Reads an ignore file the way moby's `ignorefile.ReadAll` does, then
    /// compiles the patterns.
    fn from_ignore_file(text: &str, path: &Path) -> Result<Matcher, BuildError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let err = |reason: String| BuildError::IgnorePattern {
                path: path.to_owned(),
                line: i + 1,
                pattern: line.to_owned(),
                reason,
            };
            if p.is_empty() {
                return Err(err("`!` without a pattern".to_owned()));
            }
            let mut cleaned = go_clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let glob = Glob::compile(&cleaned, true).map_err(err)?;
            patterns.push(Pattern { exclusion, glob });
        }
        Ok(Matcher { patterns })
    }

    /// moby's `MatchesOrParentMatches`: the last matching pattern wins; a
    /// pattern matching a parent directory matches the path.
    fn matches(&self, file: &str) -> bool {
        let parents: Vec<&str> = {
            let mut v = Vec::new();
            let mut idx = 0;
            while let Some(pos) = file[idx..].find('/') {
                v.push(&file[..idx + pos]);
                idx += pos + 1;
            }
            v
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let hit = p.glob.matches(file, true) || parents.iter().any(|d| p.glob.matches(d, true));
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    fn may_include_below(&self, dir: &str) -> bool {
        let with_slash = format!("{dir}/");
        self.patterns
            .iter()
            .any(|p| p.exclusion && p.glob.matches_prefix(&with_slash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn go_clean_is_go_filepath_clean() {
        for (i, o) in [
            ("", "."),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/./b/.", "a/b"),
            ("..", ".."),
        ] {
            assert_eq!(go_clean(i), o, "clean({i:?})");
        }
    }

    /// (ignore file, path, excluded): moby patternmatcher semantics.
    #[test]
    fn ignore_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "foobar", false),
            ("foo", "x/foo", false),
            ("/foo", "foo", true),
            ("./foo/", "foo/x", true),
            ("foo/../bar", "bar", true),
            ("foo/../bar", "foo", false),
            ("*", "a", true),
            ("*", "a/b", true),
            ("*.go", "a.go", true),
            ("*.go", "x/a.go", false),
            ("*/*.go", "x/a.go", true),
            ("*/*.go", "x/y/a.go", false),
            ("*/*.go", "x/a.go/inner", true),
            ("**/*.go", "a.go", true),
            ("**/*.go", "x/y/z/a.go", true),
            ("**/*.go", "x/a.gox", false),
            ("**", "anything/at/all", true),
            ("a/**", "a/b/c", true),
            ("a/**", "a", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/b/c", true),
            ("a/**/b", "a/x/yb", false),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("[a-c].txt", "b.txt", true),
            ("[a-c].txt", "d.txt", false),
            ("[^a-c].txt", "d.txt", true),
            ("[^a-c].txt", "a.txt", false),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("a.b", "axb", false),
            ("a+b", "a+b", true),
            ("# comment\nfoo", "# comment", false),
            (" # not a comment", "# not a comment", true),
            ("  foo  ", "foo", true),
            ("\n\nfoo\n\n", "foo", true),
            ("\u{feff}foo", "foo", true),
            // Last match wins.
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            // Exceptions re-include below an excluded parent.
            ("docs\n!docs/keep.txt", "docs/keep.txt", false),
            ("docs\n!docs/keep.txt", "docs/other.txt", true),
            ("docs\n!docs/keep.txt", "docs", true),
            ("docs\n!docs/keep.txt\ndocs/keep.txt", "docs/keep.txt", true),
            ("**/*.log\n!important/*.log", "important/a.log", false),
            ("**/*.log\n!important/*.log", "x/important/a.log", true),
            ("! foo\nfoo", "foo", true),
            ("*\n!src", "src/main.rs", false),
            ("*\n!src", "target/x", true),
            ("*\n!src\nsrc/*.tmp", "src/a.tmp", true),
            ("*\n! src ", "src", false),
            ("a/b", "a", false),
            ("a/b", "a/b/c/d", true),
            (".git", ".git/config", true),
            (".*", ".env", true),
            (".*", "a/.env", false),
            ("**/.*", "a/.env", true),
        ];
        for (i, (file, path, want)) in cases.iter().enumerate() {
            let m = Matcher::from_ignore_file(file, Path::new(".dockerignore")).unwrap();
            assert_eq!(
                m.matches(path),
                *want,
                "case {i}: patterns {file:?}, path {path:?}"
            );
        }
    }

    /// (ignore file, directory, must the walk enter it).
    #[test]
    fn directories_are_skipped_only_when_no_exception_can_match_inside() {
        let cases: &[(&str, &str, bool)] = &[
            ("docs", "docs", false),
            ("docs\n!docs/keep.txt", "docs", true),
            ("docs\n!docs/keep.txt", "other", false),
            ("docs\n!*/keep.txt", "docs", true),
            ("docs\n!**/keep.txt", "docs/deep/er", true),
            ("a\n!a/b/c", "a/b", true),
            ("a\n!a/b/c", "a/x", false),
            ("a\n![ab]/x", "a", true),
            ("a\n![bc]/x", "a", false),
        ];
        for (i, (file, dir, want)) in cases.iter().enumerate() {
            let m = Matcher::from_ignore_file(file, Path::new(".dockerignore")).unwrap();
            assert_eq!(
                m.may_include_below(dir),
                *want,
                "case {i}: {file:?} {dir:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_located_errors() {
        for bad in ["!", "[abc", "foo\\"] {
            let e =
                Matcher::from_ignore_file(&format!("# c\n{bad}"), Path::new("/ctx/.dockerignore"))
                    .unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("/ctx/.dockerignore` line 2"), "{msg}");
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("src/sub")).unwrap();
        std::fs::create_dir_all(r.join("docs")).unwrap();
        for f in [
            "a.txt",
            "b.txt",
            "c.md",
            "src/main.rs",
            "src/sub/x.rs",
            "docs/keep.txt",
            "docs/drop.txt",
        ] {
            std::fs::write(r.join(f), f).unwrap();
        }
        symlink("src", r.join("srclink")).unwrap();
        symlink("/etc/passwd", r.join("abs")).unwrap();
        symlink("../../outside", r.join("src/up")).unwrap();
        symlink("a.txt", r.join("alink")).unwrap();
        std::fs::write(r.join(".dockerignore"), "*.md\ndocs\n!docs/keep.txt\n").unwrap();
        d
    }

    fn rels(v: &[Source]) -> Vec<String> {
        v.iter()
            .map(|s| s.rel.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn resolves_sources() {
        let d = tree();
        let ctx = Context::open(d.path(), None).unwrap();
        let r =
            |p: &[&str]| ctx.resolve_sources(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(rels(&r(&["a.txt"]).unwrap()), ["a.txt"]);
        assert_eq!(rels(&r(&["/a.txt"]).unwrap()), ["a.txt"]);
        assert_eq!(rels(&r(&["./src/../a.txt"]).unwrap()), ["a.txt"]);
        assert_eq!(rels(&r(&["*.txt"]).unwrap()), ["a.txt", "b.txt"]);
        assert!(r(&["*.txt"]).unwrap().iter().all(|s| s.wildcard));
        assert!(!r(&["a.txt"]).unwrap()[0].wildcard);
        assert_eq!(
            rels(&r(&["?.txt", "src"]).unwrap()),
            ["a.txt", "b.txt", "src"]
        );
        assert_eq!(rels(&r(&["src/*/*.rs"]).unwrap()), ["src/sub/x.rs"]);
        assert_eq!(rels(&r(&["[ab].txt"]).unwrap()), ["a.txt", "b.txt"]);
        assert_eq!(r(&["src"]).unwrap()[0].kind, SourceKind::Dir);
        assert_eq!(rels(&r(&["."]).unwrap()), [""]);
        // Symlinks among parents resolve inside the context.
        assert_eq!(rels(&r(&["srclink/main.rs"]).unwrap()), ["src/main.rs"]);
        // A source symlink inside the context is followed...
        let s = &r(&["alink"]).unwrap()[0];
        assert_eq!(
            (s.rel.to_str().unwrap(), s.kind),
            ("a.txt", SourceKind::File)
        );
        // ...one pointing out is kept as a symlink.
        assert_eq!(r(&["abs"]).unwrap()[0].kind, SourceKind::Symlink);
        assert_eq!(r(&["src/up"]).unwrap()[0].kind, SourceKind::Symlink);
        // Ignored files do not exist; exceptions do.
        assert_eq!(rels(&r(&["docs/keep.txt"]).unwrap()), ["docs/keep.txt"]);
        assert_eq!(rels(&r(&["docs/*"]).unwrap()), ["docs/keep.txt"]);
        assert!(matches!(
            r(&["c.md"]),
            Err(BuildError::SourceNotFound { .. })
        ));
        assert!(matches!(
            r(&["docs/drop.txt"]),
            Err(BuildError::SourceNotFound { .. })
        ));
        assert!(ctx.is_excluded(Path::new("docs")));
        assert!(ctx.may_include_below(Path::new("docs")));
        // Missing, escaping.
        assert!(matches!(
            r(&["nope"]),
            Err(BuildError::SourceNotFound { .. })
        ));
        assert!(matches!(
            r(&["*.nope"]),
            Err(BuildError::SourceNotFound { .. })
        ));
        assert!(matches!(
            r(&["../x"]),
            Err(BuildError::SourceOutside { .. })
        ));
        assert!(matches!(
            r(&["src/../../x"]),
            Err(BuildError::SourceOutside { .. })
        ));
        let e = r(&["nope"]).unwrap_err().located(super::super::Location {
            file: "Containerfile".into(),
            line: 7,
        });
        assert_eq!(
            e.to_string(),
            "Containerfile:7: source `nope` not found in the build context"
        );
    }

    #[test]
    fn containerfile_specific_ignore_file_wins() {
        let d = tree();
        let cf = d.path().join("app.Containerfile");
        std::fs::write(&cf, "FROM scratch\n").unwrap();
        assert_eq!(
            Context::ignore_file_for(d.path(), Some(&cf)),
            Some(d.path().join(".dockerignore"))
        );
        std::fs::write(d.path().join("app.Containerfile.dockerignore"), "a.txt\n").unwrap();
        let f = Context::ignore_file_for(d.path(), Some(&cf)).unwrap();
        let ctx = Context::open(d.path(), Some(&f)).unwrap();
        assert!(ctx.is_excluded(Path::new("a.txt")));
        assert!(!ctx.is_excluded(Path::new("c.md")));
    }
}
