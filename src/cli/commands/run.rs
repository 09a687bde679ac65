//! `run`: image (pulled if needed) → container → the command's exit status.
//!
//! Exit status (Docker's): the command's code, 128 + N for signal N, 127
//! for a command not found, 126 for one that cannot be executed, 125 for a
//! failure of builder itself. Errors are rendered here, since they do not
//! travel up to `cli::main`'s generic status 1.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::args::{NetworkMode, RunArgs};
use crate::container::{
    self, Config, ContainerError, Network, ProcessOverrides, RootfsSource, Runtime, Stdio,
};
use crate::oci::{ImageConfig, Platform};
use crate::runtime::cgroup::Limits;
use crate::runtime::spec::Bind;
use crate::store::{ImageRecord, Store};
use crate::sys;

/// builder's own failures.
const EXIT_BUILDER: u8 = 125;

pub fn run(store: &Store, args: RunArgs) -> ExitCode {
    match run_inner(store, args) {
        Ok(code) => code,
        Err(err) => {
            crate::cli::report_error(&err);
            let code = err
                .chain()
                .find_map(|c| c.downcast_ref::<ContainerError>())
                .map(|e| e.exit_code())
                .unwrap_or(i32::from(EXIT_BUILDER));
            ExitCode::from(code as u8)
        }
    }
}

#[allow(clippy::print_stderr)]
fn run_inner(store: &Store, args: RunArgs) -> Result<ExitCode> {
    let image = image_for(store, &args)?;
    let image_config = image_config(store, &image)?;
    let layers = crate::rootfs::image_layers(store, &image)?;

    let mut env = Vec::new();
    let lookup = |k: &str| std::env::var_os(k);
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("read env file `{}`", file.display()))?;
        env.extend(container::parse_env_file(&text, lookup));
    }
    env.extend(
        args.env
            .iter()
            .filter_map(|e| container::resolve_env_entry(e, lookup)),
    );
    let process = container::docker_process(
        image_config.config.as_ref(),
        &ProcessOverrides {
            entrypoint: args.entrypoint.clone(),
            command: args.command.clone(),
            env,
            workdir: args.workdir.clone(),
            user: args.user.clone(),
        },
    )?;

    let mut no_new_privileges = args.no_new_privileges;
    for opt in &args.security_opt {
        match opt.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => {
                no_new_privileges = true
            }
            "no-new-privileges:false" | "no-new-privileges=false" => no_new_privileges = false,
            other => bail!(
                "unsupported --security-opt `{other}` (builder supports no-new-privileges; \
                 no seccomp or LSM profiles yet)"
            ),
        }
    }
    let capabilities = if args.cap_add.is_empty() && args.cap_drop.is_empty() {
        None
    } else {
        Some(
            crate::runtime::caps::docker_set(&args.cap_add, &args.cap_drop)
                .map_err(|name| anyhow!("unknown capability `{name}`"))?,
        )
    };
    let limits = limits(args.memory.as_deref(), args.pids_limit, args.cpus)?;
    let volumes = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>>>()?;
    let tmpfs = args
        .tmpfs
        .iter()
        .map(|t| {
            if !t.starts_with('/') || t.contains(':') {
                bail!("--tmpfs takes an absolute container path (no options), not `{t}`");
            }
            Ok(PathBuf::from(t))
        })
        .collect::<Result<Vec<_>>>()?;

    let runtime = match &args.runtime {
        Some(p) => Runtime::Oci(p.clone()),
        None => Runtime::Builtin,
    };
    let own_terminal = args.tty && runtime == Runtime::Builtin;
    let stdin_tty = sys::tty::is_terminal(std::io::stdin().as_fd());
    let size = if args.tty {
        sys::tty::window_size(std::io::stdout().as_fd())
            .or_else(|| sys::tty::window_size(std::io::stdin().as_fd()))
            .or(Some((0, 0)))
    } else {
        None
    };
    let config = Config {
        name: args.name.clone(),
        rootfs: RootfsSource {
            name: image.name.clone(),
            id: Some(image_id(store, &image)?),
            layers,
        },
        args: process.args,
        env: process.env,
        workdir: process.workdir,
        user: process.user,
        hostname: args.hostname.clone(),
        network: match args.network {
            NetworkMode::None => Network::None,
            NetworkMode::Host => Network::Host,
        },
        limits,
        capabilities,
        no_new_privileges,
        read_only: args.read_only,
        init: args.init,
        volumes,
        tmpfs,
        terminal: size,
        auto_remove: args.rm,
        runtime,
    };

    let outcome = if own_terminal {
        with_terminal(args.interactive && stdin_tty, args.interactive, |stdio| {
            container::run(store, &config, stdio)
        })?
    } else if args.tty {
        // The OCI runtime allocates and drives the pty on our stdio.
        container::run(store, &config, Stdio::Inherit)?
    } else {
        let stdin: OwnedFd = if args.interactive {
            std::io::stdin().as_fd().try_clone_to_owned()?
        } else {
            std::fs::File::open("/dev/null")?.into()
        };
        let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        container::run(store, &config, Stdio::Fds([stdin, stdout, stderr]))?
    };
    if outcome.oom_killed {
        let limit = outcome
            .memory_limit
            .map(|m| format!(" (limit {})", human_limit(m)))
            .unwrap_or_default();
        eprintln!("killed: out of memory{limit}");
    }
    Ok(ExitCode::from(outcome.status.code().clamp(0, 255) as u8))
}

/// The image, pulled according to `--pull`.
fn image_for(store: &Store, args: &RunArgs) -> Result<ImageRecord> {
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    super::image_by_policy(
        store,
        &args.image,
        args.pull,
        &platform,
        &args.registry,
        false,
    )
}

fn image_config(store: &Store, image: &ImageRecord) -> Result<ImageConfig> {
    let (_, manifest) = store.manifest(&image.manifest.digest)?;
    let bytes = store.read_blob(&manifest.config.digest)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("image `{}`: config is not valid JSON", image.name))
}

fn image_id(store: &Store, image: &ImageRecord) -> Result<crate::oci::Digest> {
    Ok(store.manifest(&image.manifest.digest)?.1.config.digest)
}

/// Resource limits from `--memory`, `--pids-limit` and `--cpus`.
pub(super) fn limits(memory: Option<&str>, pids: Option<i64>, cpus: Option<f64>) -> Result<Limits> {
    Ok(Limits {
        memory: memory.map(parse_size).transpose()?,
        memory_swap: None,
        pids,
        cpu_quota: match cpus {
            None => None,
            Some(c) if c > 0.0 && c.is_finite() => Some((c * 100_000.0).round() as i64),
            Some(c) => bail!("--cpus must be a positive number, not {c}"),
        },
        cpu_period: cpus.map(|_| 100_000),
    })
}

/// `64m`, `1g`, `512k`, `100b`, `100` → bytes (binary units, as Docker).
fn parse_size(s: &str) -> Result<i64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => bail!("invalid size `{s}`: use a number with an optional b, k, m, g suffix"),
    };
    let n: f64 = digits.parse().map_err(|_| {
        anyhow!("invalid size `{s}`: use a number with an optional b, k, m, g suffix")
    })?;
    let bytes = (n * (1u64 << shift) as f64) as i64;
    if bytes <= 0 {
        bail!("invalid size `{s}`: must be positive");
    }
    Ok(bytes)
}

fn human_limit(bytes: i64) -> String {
    const MIB: i64 = 1 << 20;
    if bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// `HOST:CONTAINER[:ro|rw]`; a missing host directory is created, as Docker does.
fn parse_volume(v: &str) -> Result<Bind> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, ctr, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        _ => bail!("invalid volume `{v}`: use HOST:CONTAINER[:ro]"),
    };
    if !host.starts_with('/') {
        bail!(
            "invalid volume `{v}`: the host path must be absolute (named volumes are not supported)"
        );
    }
    if !ctr.starts_with('/') {
        bail!("invalid volume `{v}`: the container path must be absolute");
    }
    let host = Path::new(host);
    if !host.exists() {
        std::fs::create_dir_all(host)
            .with_context(|| format!("create volume directory `{}`", host.display()))?;
    }
    Ok(Bind {
        source: host.to_owned(),
        destination: PathBuf::from(ctr),
        read_only,
    })
}

/// Runs `f` with a pty: builder's terminal in raw mode (when `raw`), the
/// container's output copied to our stdout, our stdin to the container
/// (when `input`), window-size changes (SIGWINCH) passed on.
fn with_terminal<T>(
    raw: bool,
    input: bool,
    f: impl FnOnce(Stdio) -> Result<T, ContainerError>,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel::<OwnedFd>();
    let raw_mode = if raw {
        Some(
            sys::tty::RawMode::enable(std::io::stdin().as_fd())
                .context("put the terminal in raw mode")?,
        )
    } else {
        None
    };
    let winch = sys::tty::WinchPipe::open()?;
    let host_tty: Option<OwnedFd> = [std::io::stdout().as_fd(), std::io::stdin().as_fd()]
        .into_iter()
        .find(|fd| sys::tty::is_terminal(*fd))
        .and_then(|fd| fd.try_clone_to_owned().ok());

    let pump = std::thread::spawn(move || -> Option<std::thread::JoinHandle<()>> {
        // The master arrives once the command runs, or never (setup failed).
        let master = rx.recv().ok()?;
        if input && let Ok(to_master) = master.try_clone() {
            std::thread::spawn(move || copy_stdin(to_master));
        }
        if let (Some(host), Ok(for_winch)) = (host_tty, master.try_clone()) {
            std::thread::spawn(move || {
                let winch = winch;
                loop {
                    use rustix::event::{PollFd, PollFlags, poll};
                    let fd = winch.fd();
                    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                    if poll(&mut fds, None).is_err() {
                        continue;
                    }
                    if winch.drain()
                        && sys::tty::copy_window_size(host.as_fd(), for_winch.as_fd()).is_err()
                    {
                        return; // the pty is gone
                    }
                }
            });
        }
        copy_output(master);
        None
    });
    let result = f(Stdio::Terminal(tx));
    // `f` has returned: every holder of the pty's user side is gone, so the
    // output copy ends (EIO) once it has drained what is buffered.
    let _ = pump.join();
    drop(raw_mode);
    Ok(result?)
}

/// Copies the pty master to our stdout until the pty closes.
fn copy_output(master: OwnedFd) {
    let mut master = std::fs::File::from(master);
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 8192];
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break, // EIO: the last user of the pty is gone
        }
    }
}

/// Copies our stdin to the pty master (a detached thread: it may block in
/// `read` until builder exits).
fn copy_stdin(master: OwnedFd) {
    let mut master = std::fs::File::from(master);
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 4096];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if master.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("0").is_err());
        assert_eq!(human_limit(64 << 20), "64 MiB");
        assert_eq!(human_limit(2 << 30), "2 GiB");
    }

    #[test]
    fn volumes() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("new");
        let b = parse_volume(&format!("{}:/data:ro", host.display())).unwrap();
        assert!(b.read_only && host.is_dir());
        assert_eq!(b.destination, PathBuf::from("/data"));
        assert!(parse_volume("named:/data").is_err());
        assert!(parse_volume("/x:rel").is_err());
        assert!(parse_volume("/x:/y:zz").is_err());
    }
}
