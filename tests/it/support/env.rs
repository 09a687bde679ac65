//! `TestEnv`: one test's private store root and the `builder` command runner.
//!
//! The store root is a fresh directory under [`super::scratch_root`] (tmpfs:
//! big unpacked trees are cheap to create and delete there). Each `builder`
//! run gets that root via `--root`, `BUILDER_NO_PROGRESS=1`, and a private
//! HOME / XDG dirs / `REGISTRY_AUTH_FILE`, so `login` and credential lookup
//! never touch the real user's files; `BUILDER_ROOT` and other inherited
//! `BUILDER_*` / `REGISTRY_*` variables are removed.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use super::process;

/// A private store root and environment for `builder` runs.
pub struct TestEnv {
    /// The store root passed as `--root`.
    pub root: PathBuf,
    /// Private HOME; `REGISTRY_AUTH_FILE` is `home/auth.json`.
    pub home: PathBuf,
    dir: tempfile::TempDir,
}

/// The outcome of one `builder` run.
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("env-")
            .tempdir_in(super::scratch_root())
            .expect("create test env dir");
        let root = dir.path().join("store");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        TestEnv { root, home, dir }
    }

    /// A scratch directory private to this test (deleted with the env).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }

    /// Path of the `builder` binary under test.
    pub fn bin() -> &'static Path {
        Path::new(env!("CARGO_BIN_EXE_builder"))
    }

    /// A `builder --root ROOT ARGS…` command with the test environment,
    /// stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(Self::bin());
        cmd.arg("--root").arg(&self.root).args(args);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("BUILDER_") || k.starts_with("REGISTRY_") || k.starts_with("XDG_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("BUILDER_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", self.home.join("run"))
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .env("REGISTRY_AUTH_FILE", self.home.join("auth.json"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `builder ARGS…` to completion.
    pub fn builder(&self, args: &[&str]) -> Run {
        self.run(self.command(args), None)
    }

    /// Runs `builder ARGS…` with `input` on stdin.
    pub fn builder_stdin(&self, args: &[&str], input: &str) -> Run {
        self.run(self.command(args), Some(input))
    }

    /// Starts `builder ARGS…` without waiting (stdout/stderr piped).
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = self.command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        process::spawn(cmd).expect("spawn builder")
    }

    /// Runs a command made by [`Self::command`] (and perhaps given more
    /// arguments or variables) to completion.
    pub fn run_command(&self, cmd: Command) -> Run {
        self.run(cmd, None)
    }

    fn run(&self, mut cmd: Command, input: Option<&str>) -> Run {
        let cmdline = process::describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = process::spawn(cmd).unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(input.as_bytes())
                .expect("write builder stdin");
        }
        let out = child.wait_with_output().expect("wait for builder");
        Run {
            cmdline,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `builder pull --tls-verify=false -q REF` (for the plain shared
    /// registry); asserts success and returns the printed digest.
    #[track_caller]
    pub fn pull_plain(&self, reference: &str, extra: &[&str]) -> String {
        let mut args = vec!["pull", "--tls-verify=false", "-q"];
        args.extend_from_slice(extra);
        args.push(reference);
        let run = self.builder(&args).success();
        run.out().to_string()
    }

    /// `builder check --json`; asserts exit 0 and an empty problem list.
    #[track_caller]
    pub fn assert_check_clean(&self) {
        let run = self.builder(&["check", "--json"]);
        assert!(
            run.status.success(),
            "`builder check` found problems:\n{run}"
        );
        let report = run.json();
        if let Some(problems) = report.get("problems") {
            assert_eq!(
                problems.as_array().map(Vec::len),
                Some(0),
                "check reports problems:\n{run}"
            );
        }
    }

    /// `builder mount REF`; asserts that the printed path is a read-only
    /// overlay mount and returns it.
    #[track_caller]
    pub fn mount(&self, image: &str) -> PathBuf {
        let run = self.builder(&["mount", image]).success();
        let path = PathBuf::from(run.out());
        let info = super::mount_info(&path).unwrap_or_else(|| {
            panic!(
                "`builder mount` printed {}, which is not a mount point:\n{run}",
                path.display()
            )
        });
        assert_eq!(
            info.fs_type,
            "overlay",
            "{} is not an overlay mount: {info:?}",
            path.display()
        );
        assert!(
            info.read_only,
            "{} is mounted read-write: {info:?}",
            path.display()
        );
        path
    }

    /// `builder umount REF`; asserts success and that `path` is no longer a
    /// mount point.
    #[track_caller]
    pub fn umount(&self, image: &str, path: &Path) {
        self.builder(&["umount", image]).success();
        assert!(
            super::mount_info(path).is_none(),
            "{} still mounted after `builder umount`",
            path.display()
        );
    }

    /// Mount points currently mounted inside this env's directory.
    pub fn mounts(&self) -> Vec<PathBuf> {
        super::mounts_below(self.dir.path())
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // A failed test may leave `builder mount`s behind; never leak them.
        super::unmount_below(self.dir.path());
    }
}

impl Run {
    /// Asserts exit status 0, showing the output otherwise.
    #[track_caller]
    pub fn success(self) -> Run {
        assert!(self.status.success(), "expected success:\n{self}");
        self
    }

    /// Asserts a non-zero exit (not a crash by signal), showing the output
    /// otherwise.
    #[track_caller]
    pub fn failure(self) -> Run {
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit:\n{self}"
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{self}"
        );
        self
    }

    /// stdout without the trailing newline.
    pub fn out(&self) -> &str {
        self.stdout.trim_end()
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n[{}]\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
}
