//! RUN steps: one container (the same `container` code path as `builder
//! run`) on the stage's layers with a fresh upper dir, its output streamed
//! to the reporter and its last lines kept for the error message; on
//! success the upper dir is what the step wrote.
//!
//! The container runs with a tiny init as PID 1, so Ctrl-C reaches the
//! command even when it is a shell that ignores signals as PID 1, and with
//! the mount points the runtime had to create (`/etc/hosts`, `/proc`, …)
//! reported, so the commit leaves them out of the layer. The working
//! directory the runtime creates is kept: Docker's WORKDIR creates it.

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{At, BuildError};
use crate::container::{self, Container, Stdio};
use crate::progress::Reporter;
use crate::store::Store;

/// How many lines of a failing RUN's output its error shows.
const TAIL_LINES: usize = 10;
/// Longest line kept for the error (longer ones are cut).
const TAIL_LINE_MAX: usize = 400;

/// A RUN that completed successfully; its upper dir holds what it wrote.
/// The rootfs is still mounted (the commit unmounts it while it diffs).
pub struct Finished<'s> {
    pub container: Container<'s>,
    /// Relative paths of mount points the runtime created in the upper.
    pub created_mount_points: Vec<PathBuf>,
}

/// Runs `config` as step `step` and waits for it.
pub fn run_step<'s>(
    store: &'s Store,
    config: &container::Config,
    step: &str,
    reporter: &dyn Reporter,
) -> Result<Finished<'s>, BuildError> {
    let container_err = |source| BuildError::Container {
        at: At::default(),
        step: step.to_string(),
        source: Box::new(source),
    };
    let mut container = Container::create(store, config).map_err(container_err)?;
    let (read, write) = rustix::pipe::pipe().map_err(|e| BuildError::io("pipe", e.into()))?;
    let stdin: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| BuildError::io("/dev/null", e))?
        .into();
    let write2 = write.try_clone().map_err(|e| BuildError::io("pipe", e))?;
    let (outcome, tail) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || collect_output(read, reporter));
        let outcome = container.start(Stdio::Fds([stdin, write, write2]));
        // The write ends went into `start` and are closed by now, so the
        // reader sees EOF once the container's processes are gone.
        let tail = reader.join().unwrap_or_default();
        (outcome, tail)
    });
    let outcome = outcome.map_err(container_err)?;
    let code = outcome.status.code();
    if code != 0 || outcome.oom_killed {
        return Err(BuildError::RunFailed {
            at: At::default(),
            step: step.to_string(),
            code,
            oom_limit: outcome.oom_killed.then_some(outcome.memory_limit),
            tail,
        });
    }
    let workdir = Path::new(if config.workdir.is_empty() {
        "/"
    } else {
        &config.workdir
    });
    let created_mount_points = outcome
        .created
        .iter()
        .filter(|p| !workdir.starts_with(p))
        .filter_map(|p| p.strip_prefix("/").ok().map(Path::to_path_buf))
        .collect();
    Ok(Finished {
        container,
        created_mount_points,
    })
}

/// Copies the container's output to the reporter until EOF; returns its
/// last lines.
fn collect_output(read: OwnedFd, reporter: &dyn Reporter) -> Vec<String> {
    let mut file = std::fs::File::from(read);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        reporter.step_output(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\n' {
                push_line(&mut tail, &partial);
                partial.clear();
            } else if partial.len() < TAIL_LINE_MAX {
                partial.push(b);
            }
        }
    }
    if !partial.is_empty() {
        push_line(&mut tail, &partial);
    }
    tail.into()
}

fn push_line(tail: &mut VecDeque<String>, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    // Carriage-return progress output: keep what the terminal would show.
    let shown = text.rsplit('\r').next().unwrap_or(text);
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(shown.to_string());
}
