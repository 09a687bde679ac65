//! Table-driven tests of the whole front end: BuildKit's word-expansion
//! vectors (shared with the other anchors in `../shared/conformance`), the
//! parser golden files under `tests/data/containerfile`, and the examples.

use std::path::{Path, PathBuf};

use super::expand::Expander;
use super::{parse, parse_syntax};

/// `shared/` sits beside the repository (CI clones it there). A git
/// worktree elsewhere can point at it with `BUILDER_SHARED_DIR`.
fn vectors_dir() -> PathBuf {
    let shared = std::env::var_os("BUILDER_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    shared.join("conformance/dockerfile-shell")
}

fn read_vectors(name: &str) -> String {
    let path = vectors_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the shell vectors `{}`: {e}\n\
             they live in the `shared/` checkout next to the repository \
             (CI clones it beside the repo; elsewhere set BUILDER_SHARED_DIR); \
             without them this test cannot check anything",
            path.display()
        )
    })
}

/// `envVarTest`: `PLATFORM | INPUT | EXPECTED` with a fixed environment.
#[test]
fn buildkit_env_var_vectors() {
    let text = read_vectors("envVarTest");
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lexer = Expander::new('\\');
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        assert_eq!(fields.len(), 3, "envVarTest:{}: expected 3 fields", n + 1);
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            other => panic!("envVarTest:{}: unknown platform `{other}`", n + 1),
        }
        checked += 1;
        let got = lexer.expand_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), expected) => word == expected && expected != "error",
            (Err(_), _) => false,
        };
        if !ok {
            failures.push(format!(
                "envVarTest:{}: {input:?} -> {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 200, "only {checked} vectors read");
}

/// `wordsTest`: `INPUT | W1,W2,…`, with `ENV name=value` lines adding to
/// the environment.
#[test]
fn buildkit_words_vectors() {
    let text = read_vectors("wordsTest");
    let lexer = Expander::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line
            .split_once('|')
            .unwrap_or_else(|| panic!("wordsTest:{}: no `|`", n + 1));
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let got = lexer
            .expand_words(input, &env)
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if got != expected {
            failures.push(format!(
                "wordsTest:{}: {input:?} -> {got:?}, expected {expected:?}",
                n + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 20, "only {checked} vectors read");
}

fn golden_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/containerfile")
        .join(kind)
}

/// The `.Containerfile` cases of a golden directory, sorted.
fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = golden_dir(kind);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read `{}`: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Containerfile"))
        .collect();
    out.sort();
    out
}

/// Compares `actual` with the file, or rewrites it when `UPDATE_EXPECT=1`.
fn check_golden(expected_path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::write(expected_path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(expected_path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            expected_path.display()
        )),
        Err(e) => failures.push(format!(
            "{}: {e} (run with UPDATE_EXPECT=1 to create it)",
            expected_path.display()
        )),
    }
}

fn case_label(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `ok/NNNN_name.Containerfile` parse, and print as `NNNN_name.json`.
#[test]
fn golden_ok() {
    let cases = cases("ok");
    assert!(
        cases.len() >= 25,
        "expected at least 25 ok cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for path in &cases {
        let text = std::fs::read_to_string(path).unwrap();
        let label = case_label(path);
        let syntax = match parse_syntax(&label, &text) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{label}: {e}"));
                continue;
            }
        };
        if let Err(e) = super::Containerfile::from_syntax(&syntax) {
            failures.push(format!("{label}: {e}"));
            continue;
        }
        let json = serde_json::to_string_pretty(&syntax.dump()).unwrap() + "\n";
        check_golden(&path.with_extension("json"), &json, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `err/NNNN_name.Containerfile` fail with the message in `NNNN_name.txt`.
#[test]
fn golden_err() {
    let cases = cases("err");
    assert!(
        cases.len() >= 10,
        "expected at least 10 error cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for path in &cases {
        let text = std::fs::read_to_string(path).unwrap();
        let label = case_label(path);
        match parse(&label, &text) {
            Ok(_) => failures.push(format!("{label}: parsed, but should fail")),
            Err(e) => check_golden(
                &path.with_extension("txt"),
                &format!("{e}\n"),
                &mut failures,
            ),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every file under `Containerfile-examples/` parses (the build tests build
/// the runnable ones).
#[test]
fn examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile-examples");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    let mut stack: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    let mut failures = Vec::new();
    let mut parsed = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy();
        let is_containerfile = name.contains("Containerfile") || name.contains("Dockerfile");
        if !is_containerfile || name.ends_with(".dockerignore") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = parse(&path.display().to_string(), &text) {
            failures.push(e.to_string());
        }
        parsed += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        parsed >= 2,
        "only {parsed} examples found in {}",
        dir.display()
    );
}

/// Arbitrary text never panics the parser or the expander, and errors are
/// always located inside the file. Deterministic pseudo-random inputs from
/// an alphabet of everything the grammar treats specially.
#[test]
fn arbitrary_text_never_panics() {
    const PIECES: &[&str] = &[
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "ARG ",
        "LABEL ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "SHELL ",
        "EXPOSE ",
        "VOLUME ",
        "WORKDIR ",
        "USER ",
        "x",
        "é",
        "한",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\\",
        "`",
        "\"",
        "'",
        "$",
        "${",
        "}",
        ":-",
        ":?",
        "#",
        "##",
        "%",
        "/",
        "//",
        "*",
        "?",
        "<<",
        "<<-",
        "EOF",
        "\nEOF\n",
        "--",
        "--from=",
        "--mount=x",
        "=",
        "[",
        "]",
        "[\"a\"]",
        ",",
        "# escape=`\n",
        "\u{feff}",
        "3",
        "\u{a0}",
        "NONE",
        "AS ",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let env = vec![("x".to_string(), "a b".to_string())];
    let mut parsed = 0;
    for case in 0..20_000 {
        // Mostly well-formed skeletons (FROM first, keywords at line
        // starts) so that deep paths run, with random pieces in between.
        let mut text = String::new();
        if case % 2 == 0 {
            text.push_str("FROM a\n");
        }
        for _ in 0..(next() % 4) {
            text.push_str(PIECES[(next() % 15) as usize]);
            for _ in 0..(next() % 12) {
                text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            text.push('\n');
        }
        for _ in 0..(next() % 10) {
            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let lines = text.lines().count().max(1) + 1;
        match parse("t", &text) {
            Ok(cf) => {
                parsed += 1;
                for stage in &cf.stages {
                    let _ = cf.expand(&stage.base, &env);
                }
            }
            Err(e) => assert!(
                e.line >= 1 && e.line <= lines,
                "case {case}: line {} outside 1..={lines}: {e}\n{text:?}",
                e.line
            ),
        }
        let _ = Expander::new('\\').expand_words(&text, &env);
        let _ = Expander::new('`').expand_word(&text, &env);
    }
    // The skeletons must reach the typed layer often enough to matter.
    assert!(parsed > 500, "only {parsed} of 20000 inputs parsed");
}
