//! `builder containerfile parse`: the CLI prints exactly what the golden
//! files record, reads stdin and the default file names, and fails with
//! exit status 1 and the located message.

use std::path::{Path, PathBuf};

use crate::support::TestEnv;

fn golden(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/containerfile")
        .join(kind);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Containerfile"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no golden files in {}", dir.display());
    out
}

/// Runs `builder containerfile parse ARGS…` in `dir`.
fn parse_in(env: &TestEnv, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["containerfile", "parse"];
    full.extend_from_slice(args);
    let mut cmd = env.command(&full);
    cmd.current_dir(dir);
    cmd.output().expect("run builder")
}

#[test]
fn json_output_is_the_golden_dump() {
    let env = TestEnv::new();
    for path in golden("ok") {
        // The label is the path as given; run from the golden directory so
        // it is the bare file name, as in the library's golden test.
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = parse_in(&env, dir, &["-f", name, "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read_to_string(path.with_extension("json")).unwrap();
        assert_eq!(stdout, expected, "{name}");
    }
}

#[test]
fn errors_exit_1_with_the_located_message() {
    let env = TestEnv::new();
    for path in golden("err") {
        let dir = path.parent().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = parse_in(&env, dir, &["-f", name, "--json"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty(), "{name}: printed something on stdout");
        let expected = std::fs::read_to_string(path.with_extension("txt")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("error: {expected}"),
            "{name}"
        );
    }
}

#[test]
fn reads_stdin_with_dash() {
    let env = TestEnv::new();
    let run = env
        .builder_stdin(
            &["containerfile", "parse", "-f", "-", "--json"],
            "# escape=`\nfrom busybox\nenv A=1 `\n  B=2\n",
        )
        .success();
    let json = run.json();
    assert_eq!(json["directives"]["escape"], "`");
    assert_eq!(
        json["instructions"][1]["pairs"],
        serde_json::json!([["A", "1"], ["B", "2"]])
    );
    assert_eq!(json["instructions"][1]["line"], 3);
    assert_eq!(json["instructions"][1]["end_line"], 4);

    env.builder_stdin(&["containerfile", "parse", "-f", "-"], "FROM a\nRUNN x\n")
        .failure()
        .stderr_has("error: <stdin>:2: unknown instruction `RUNN` (did you mean `RUN`?)");
}

#[test]
fn default_file_is_containerfile_then_dockerfile() {
    let env = TestEnv::new();
    let dir = env.scratch("context");
    let out = parse_in(&env, &dir, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no `Containerfile` or `Dockerfile` in the current directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(dir.join("Dockerfile"), "FROM from-dockerfile\n").unwrap();
    let out = parse_in(&env, &dir, &["--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["instructions"][0]["args"][0], "from-dockerfile");

    std::fs::write(
        dir.join("Containerfile"),
        "FROM from-containerfile\nRUN true\n",
    )
    .unwrap();
    let out = parse_in(&env, &dir, &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "   1  FROM from-containerfile\n   2  RUN true\n"
    );

    let out = parse_in(&env, &dir, &["-f", "missing.Containerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read `missing.Containerfile`"));
}

#[test]
fn warnings_go_to_stderr() {
    let env = TestEnv::new();
    let run = env
        .builder_stdin(
            &["containerfile", "parse", "-f", "-", "--json"],
            "FROM a\nCMD ['x']\nRUN a \\\n\n b\n",
        )
        .success();
    assert!(
        run.stderr.contains(
            "warning: <stdin>:2: `CMD` arguments start with `[` but are not a JSON array"
        ),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("warning: <stdin>:3: empty continuation line"),
        "{run}"
    );
    assert_eq!(run.json()["instructions"][2]["args"][0], "a  b");
}
