//! Project automation: `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`). Dependency-free on purpose: it must build on a
//! fresh machine before anything else works, and `std::process::Command` is
//! all it needs.
//!
//! Commands:
//! - `test [ARGS…]`  install missing Debian packages, then `cargo test --all-targets ARGS…`
//! - `lint`          `cargo fmt --check`, clippy and rustdoc with `-D warnings`
//! - `ci`            `lint`, then the same as `test` (`.ci/run` runs `lint` and `test`)
//! - `demo`          end to end, offline: a local docker-registry seeded with the busybox
//!   fixture, `builder pull` it, `images`, `inspect`, `check`
//! - `fixtures`      build (or find cached) the fixture images and print their directory
//! - `packages`      only install missing Debian packages

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Debian packages the test suite and the demo use, by what needs them:
/// real peers (docker-registry, skopeo, umoci, oci-image-tool, podman,
/// buildah, runc), fixture tools (busybox-static, attr for setfattr,
/// libcap2-bin for setcap, jq, file, zstd, pigz), TLS and auth for the test
/// registry (openssl, apache2-utils for htpasswd), benchmarks (hyperfine).
const PACKAGES: &[&str] = &[
    "docker-registry",
    "skopeo",
    "umoci",
    "buildah",
    "podman",
    "runc",
    "oci-image-tool",
    "busybox-static",
    "apache2-utils",
    "openssl",
    "pigz",
    "hyperfine",
    "attr",
    "libcap2-bin",
    "jq",
    "file",
    "zstd",
];

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "test" => ensure_packages().and_then(|()| test(rest)),
        "lint" => lint(),
        "ci" => lint()
            .and_then(|()| ensure_packages())
            .and_then(|()| test(&[])),
        "demo" => ensure_packages().and_then(|()| demo()),
        "fixtures" => {
            ensure_packages().and_then(|()| fixtures().map(|d| println!("{}", d.display())))
        }
        "packages" => ensure_packages(),
        "help" | "-h" | "--help" => {
            println!("usage: cargo xtask <test [ARGS…] | lint | ci | demo | fixtures | packages>");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd` with inherited stdio, failing unless it exits 0.
fn run(cmd: Command) -> Result {
    eprintln!("xtask: $ {}", describe(&cmd));
    run_silently(cmd)
}

/// [`run`] without echoing the command line.
fn run_silently(mut cmd: Command) -> Result {
    let desc = describe(&cmd);
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{desc} failed ({status})"))
    }
}

/// Runs `cmd` and returns its stdout, failing (with its stderr) unless it exits 0.
fn capture(mut cmd: Command) -> Result<String> {
    let desc = describe(&cmd);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{desc} failed ({})", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

// ------------------------------------------------------------------ packages

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs whichever of [`PACKAGES`] are missing (`apt-get update` once,
/// only when something is missing).
fn ensure_packages() -> Result {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("dpkg-query not found: the test suite expects a Debian-like system".into());
    }
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut id = Command::new("id");
    id.arg("-u");
    let is_root = capture(id).map(|u| u.trim() == "0").unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut c = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    eprintln!("xtask: installing missing packages: {}", missing.join(" "));
    run(apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run(install).map_err(|e| {
        format!(
            "{e}\nhint: install them by hand: apt-get install {}",
            missing.join(" ")
        )
    })
}

// ------------------------------------------------------------------ test, ci

fn test(extra: &[String]) -> Result {
    let mut c = cargo();
    c.args(["test", "--all-targets"]).args(extra);
    run(c)
}

fn lint() -> Result {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut doc = cargo();
    doc.args(["doc", "--no-deps", "--document-private-items"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run(doc)
}

// ------------------------------------------------------------------ fixtures

/// Runs `tests/fixtures/build.sh` (the same script the tests use, with the
/// same cache) and returns the fixture directory.
fn fixtures() -> Result<PathBuf> {
    let mut c = Command::new(root().join("tests/fixtures/build.sh"));
    c.arg(target_dir().join("tmp/fixtures"));
    let out = capture(c)?;
    Ok(PathBuf::from(out.trim()))
}

// ------------------------------------------------------------------ demo

/// A docker-registry process, killed when dropped.
struct LocalRegistry {
    child: Child,
    addr: String,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("xtask: stopped docker-registry on {}", self.addr);
    }
}

/// Starts `docker-registry serve` on a free 127.0.0.1 port with storage in
/// `dir`, and waits until it answers `GET /v2/`.
fn start_registry(dir: &Path) -> Result<LocalRegistry> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("find a free port: {e}"))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: builder-demo\n",
        dir.join("data").display()
    );
    fs::write(&config, yaml).map_err(|e| format!("write {}: {e}", config.display()))?;
    let log = fs::File::create(dir.join("registry.log"))
        .map_err(|e| format!("create registry log: {e}"))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("start docker-registry: {e}"))?;
    let mut reg = LocalRegistry { child, addr };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = reg.child.try_wait() {
            let log = fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            return Err(format!("docker-registry exited ({status}):\n{log}"));
        }
        if http_status(&reg.addr, "/v2/") == Some(200) {
            eprintln!("xtask: docker-registry listening on {}", reg.addr);
            return Ok(reg);
        }
        if Instant::now() > deadline {
            let _ = reg.child.kill();
            return Err(format!("docker-registry did not answer on {}", reg.addr));
        }
        sleep(Duration::from_millis(50));
    }
}

/// The status code of a plain-HTTP GET, or None if nothing answered.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

fn demo() -> Result {
    let fixtures = fixtures()?;
    let mut build = cargo();
    build.args(["build", "--bin", "builder"]);
    run(build)?;
    let builder = target_dir().join("debug/builder");

    let scratch_parent = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        env::temp_dir()
    };
    let scratch = scratch_parent.join(format!("builder-demo-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let result = (|| -> Result {
        let registry_dir = scratch.join("registry");
        fs::create_dir_all(&registry_dir).map_err(|e| e.to_string())?;
        let registry = start_registry(&registry_dir)?;
        let image = format!("{}/busybox:latest", registry.addr);

        let mut push = Command::new("skopeo");
        push.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", fixtures.join("busybox").display()))
            .arg(format!("docker://{image}"));
        run(push)?;

        let store = scratch.join("store");
        let builder_cmd = |args: &[&str]| {
            let mut c = Command::new(&builder);
            c.arg("--root")
                .arg(&store)
                .args(args)
                .env_remove("BUILDER_ROOT");
            println!("\n$ builder --root {} {}", store.display(), args.join(" "));
            c
        };
        run_silently(builder_cmd(&["pull", "--tls-verify=false", &image]))?;
        run_silently(builder_cmd(&["images"]))?;
        run_silently(builder_cmd(&["inspect", &image]))?;
        run_silently(builder_cmd(&["check"]))?;
        println!(
            "\nThe store is an OCI image layout:\n$ ls {}",
            store.display()
        );
        let mut ls = Command::new("ls");
        ls.arg(&store);
        run_silently(ls)?;
        drop(registry);
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result?;
    println!(
        "\ndemo finished: busybox pulled from a local registry, listed, inspected and checked"
    );
    Ok(())
}
