//! What `builder pull` prints in each output mode: progress bars on a
//! terminal, one plain line per event in CI logs, and only the manifest
//! digest with `-q`. stdout carries the digest in every mode.

use std::process::Command;

use crate::support::{TestEnv, process, serve_fixture};

/// `builder pull` of a fresh image, stdout and stderr kept apart.
fn pull(env: &TestEnv, reference: &str, extra: &[&str], ci: bool) -> (String, String) {
    let mut args = vec!["pull", "--tls-verify=false"];
    args.extend_from_slice(extra);
    args.push(reference);
    let mut cmd = env.command(&args);
    cmd.env_remove("BUILDER_NO_PROGRESS");
    if ci {
        cmd.env("CI", "true");
    } else {
        cmd.env_remove("CI");
    }
    let out = process::output(cmd).expect("run builder pull");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ci_logs_get_one_line_per_layer_and_stdout_only_the_digest() {
    let env = TestEnv::new();
    let (reference, fixture) = serve_fixture("multilayer");
    let (stdout, stderr) = pull(&env, &reference, &[], true);
    assert_eq!(stdout.trim(), fixture.digest(), "stdout is data only");
    for (_, layer, _) in &fixture.image().layers {
        let short = &layer.strip_prefix("sha256:").unwrap()[..12];
        assert!(
            stderr.contains(&format!("Copying layer {short}"))
                && stderr.contains(&format!("Copied {short} done")),
            "no start/done lines for layer {short}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "no terminal control codes in CI logs:\n{stderr:?}"
    );

    // A second pull of the same image: every layer already exists.
    let (_, again) = pull(&env, &reference, &[], true);
    assert_eq!(
        again.matches("already exists").count(),
        fixture.image().layers.len(),
        "{again}"
    );
}

#[test]
fn quiet_prints_only_the_manifest_digest() {
    let env = TestEnv::new();
    let (reference, fixture) = serve_fixture("busybox");
    let (stdout, stderr) = pull(&env, &reference, &["-q"], true);
    assert_eq!(stdout, format!("{}\n", fixture.digest()));
    assert_eq!(stderr, "", "-q prints nothing on stderr");
}

#[test]
fn a_terminal_gets_progress_bars() {
    let env = TestEnv::new();
    let (reference, fixture) = serve_fixture("large");
    // Python's `pty.spawn` runs the pull on a pseudo-terminal and copies
    // what the terminal was sent (stdout and stderr both) to its stdout.
    let builder = env.command(&["pull", "--tls-verify=false", &reference]);
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
    ])
    .arg(builder.get_program())
    .args(builder.get_args())
    .env_remove("CI")
    .env_remove("BUILDER_NO_PROGRESS")
    .env_remove("NO_COLOR")
    .env("TERM", "xterm")
    .env("COLUMNS", "120");
    for (key, value) in builder.get_envs() {
        match value {
            Some(v) if key != "BUILDER_NO_PROGRESS" && key != "NO_COLOR" => {
                cmd.env(key, v);
            }
            _ => {}
        }
    }
    let out = process::output(cmd).expect("run python3 pty.spawn");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pull on a pty failed:\n{screen}");
    assert!(
        screen.contains(&fixture.digest()),
        "the digest is printed:\n{screen}"
    );
    // indicatif draws `[====>   ]` bars with byte counts and redraws in place.
    assert!(
        screen.contains("[=") && screen.contains("B/s"),
        "no progress bar drawn:\n{screen}"
    );
    assert!(
        screen.contains("\x1b["),
        "bars redraw with terminal escapes:\n{screen:?}"
    );
    for (_, layer, _) in &fixture.image().layers {
        let short = &layer.strip_prefix("sha256:").unwrap()[..12];
        assert!(
            screen.contains(short),
            "no bar for layer {short}:\n{screen}"
        );
    }
}
