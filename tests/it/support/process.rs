//! Child processes that cannot outlive the test binary.
//!
//! Every helper process (docker-registry, builder, skopeo …) is spawned from
//! one dedicated thread that lives as long as the test process, with
//! `PR_SET_PDEATHSIG = SIGKILL`. The kernel delivers that signal when the
//! *thread* that forked the child exits, which is why spawning happens on a
//! thread that never exits rather than on the (short-lived) test threads:
//! if `cargo test` is killed, or returns, every child dies with it.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Request = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the child-spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that it is killed when the test process dies.
// Tests are their own crate: the library's `unsafe_code = "deny"` is about
// `src/`; this is the one unsafe block of the test harness.
#[allow(unsafe_code)]
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec. It only makes
    // two raw syscalls (prctl, getppid) through rustix, which allocate nothing
    // and take no locks, so it is async-signal-safe as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died between fork and prctl.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    let (tx, rx) = channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .expect("child-spawner thread is alive");
    rx.recv().expect("child-spawner thread replies")
}

/// Runs `cmd` to completion, capturing stdout and stderr.
pub fn output(mut cmd: Command) -> io::Result<Output> {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

/// Runs `cmd`, panicking with its output if it fails to start or exits
/// non-zero. Returns stdout.
#[track_caller]
pub fn run_ok(cmd: Command) -> String {
    let desc = describe(&cmd);
    let out = output(cmd).unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    if !out.status.success() {
        panic!(
            "{desc} failed with {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A shell-like rendering of a command, for failure messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = format!("`{}", cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s.push('`');
    s
}

/// Kills (SIGKILL) and reaps a child; harmless if it already exited.
pub fn kill_and_wait(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
