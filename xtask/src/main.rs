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
//! - `bench pull [--runs N]`  median of N (default 5) cold pulls of busybox and the large
//!   fixture: builder (release build) vs `skopeo copy` vs `podman pull`, stores on tmpfs;
//!   writes BENCHMARKS.md
//! - `bench run [--runs N]`  median of N (default 30, ≥ 20 to write) runs of
//!   `builder run --rm busybox true` (release build, image in a tmpfs store) next to
//!   `podman run --rm --network none` and `runc run` on an unpacked bundle of the same
//!   image; writes the `run` section of BENCHMARKS.md
//! - `bench build [--runs N]`  median of N (default 5) `builder build`s (release build) next
//!   to `buildah bud --runtime runc --layers` on the same Containerfiles: cold, no-op and
//!   one-file-changed rebuilds, a 200 MB RUN, 20 × `RUN true`, two stages; all on tmpfs;
//!   writes the `build` section of BENCHMARKS.md
//! - `bench push [--runs N]`  median of N (default 5) pushes of the large fixture into an
//!   emptied local registry: `builder push` from its store vs `skopeo copy oci:DIR docker://…`
//!   and `buildah push` (image in an isolated buildah root), then warm pushes (every blob
//!   already there); writes the `push` section of BENCHMARKS.md
//! - `dist`          the static binary users install: musl, `dist` profile, checked to be
//!   static and smoke-tested (load, build, run, rebuild, check); `target/dist/`
//! - `fixtures`      build (or find cached) the fixture images and print their directory
//! - `packages`      only install missing Debian packages

mod bench_build;
mod bench_push;
mod dist;

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
        "bench" => ensure_packages().and_then(|()| bench(rest)),
        "fixtures" => {
            ensure_packages().and_then(|()| fixtures().map(|d| println!("{}", d.display())))
        }
        "packages" => ensure_packages(),
        "dist" => ensure_packages().and_then(|()| dist::dist()),
        "help" | "-h" | "--help" => {
            println!(
                "usage: cargo xtask <test [ARGS…] | lint | ci | demo | dist | bench pull|run|build|push [--runs N] | fixtures | packages>"
            );
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
    ensure_debian_packages(PACKAGES)
}

/// Installs whichever of `packages` are missing.
fn ensure_debian_packages(packages: &[&str]) -> Result {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err("dpkg-query not found: the test suite expects a Debian-like system".into());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
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
    // With recommends, as the machines the suite was written on have them
    // (podman recommends its helpers: catatonit, slirp4netns, uidmap…).
    let mut install = apt(&["install", "-y", "-q"]);
    install.args(&missing);
    run(install).map_err(|e| {
        format!(
            "{e}\nhint: install them by hand: apt-get install {}",
            missing.join(" ")
        )
    })
}

// ------------------------------------------------------------------ test, ci

/// `cargo test --all-targets`, passing its output through, then one
/// closing line with the totals over every test binary: cargo prints a
/// `test result:` line per binary, and the last one (xtask's own, with no
/// tests) would otherwise read as "0 passed" to anyone skimming the end.
fn test(extra: &[String]) -> Result {
    use std::io::BufRead;
    let mut c = cargo();
    c.args(["test", "--all-targets", "--no-fail-fast"])
        .args(extra)
        .stdout(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("run cargo test: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("read cargo test output: {e}"))?;
        println!("{line}");
        if let Some(summary) = line.strip_prefix("test result: ") {
            for part in summary.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    "ignored" => ignored += n,
                    _ => {}
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for cargo test: {e}"))?;
    println!("\ntotal: {passed} passed, {failed} failed, {ignored} skipped");
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
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
        .env(
            // The docs include private items, so links to them resolve; every
            // other rustdoc warning (broken links, bad HTML…) fails.
            "RUSTDOCFLAGS",
            "-D warnings -A rustdoc::private_intra_doc_links",
        );
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
            "\nThe store's oci/ is an OCI image layout, so skopeo reads it directly:\n$ ls {}",
            store.display()
        );
        let mut ls = Command::new("ls");
        ls.arg(&store);
        run_silently(ls)?;
        println!("$ skopeo inspect oci:{}/oci:{image}", store.display());
        let mut skopeo = Command::new("skopeo");
        skopeo
            .arg("inspect")
            .arg(format!("oci:{}/oci:{image}", store.display()));
        run_silently(skopeo)?;
        println!("\nThe image's layers mount as one read-only overlay:");
        let mounted = Command::new(&builder)
            .args(["--root"])
            .arg(&store)
            .args(["mount", &image])
            .output()
            .map_err(|e| format!("run builder mount: {e}"))?;
        if !mounted.status.success() {
            return Err(format!(
                "builder mount failed: {}",
                String::from_utf8_lossy(&mounted.stderr)
            ));
        }
        let rootfs = String::from_utf8_lossy(&mounted.stdout).trim().to_string();
        println!("$ builder mount {image}\n{rootfs}\n$ ls {rootfs}");
        let mut ls = Command::new("ls");
        ls.arg(&rootfs);
        run_silently(ls)?;
        run_silently(builder_cmd(&["umount", &image]))?;

        println!("\nBuild the multi-stage example on top of it, run it, build again from cache:");
        run_silently(builder_cmd(&["tag", &image, "busybox"]))?;
        let example = root().join("Containerfile-examples/multi-stage");
        let example_str = example.to_string_lossy().into_owned();
        run_silently(builder_cmd(&["build", "-t", "demo/hello", &example_str]))?;
        run_silently(builder_cmd(&["run", "--rm", "demo/hello"]))?;
        run_silently(builder_cmd(&["build", "-t", "demo/hello", &example_str]))?;
        run_silently(builder_cmd(&["images"]))?;
        run_silently(builder_cmd(&["check"]))?;
        println!(
            "$ skopeo inspect oci:{}/oci:docker.io/demo/hello:latest",
            store.display()
        );
        let mut skopeo = Command::new("skopeo");
        skopeo.arg("inspect").arg(format!(
            "oci:{}/oci:docker.io/demo/hello:latest",
            store.display()
        ));
        run_silently(skopeo)?;
        drop(registry);
        Ok(())
    })();
    let _ = fs::remove_dir_all(&scratch);
    result?;
    println!(
        "\ndemo finished: busybox pulled from a local registry, listed, inspected, checked; an image built on it, run, rebuilt from cache, and read by skopeo"
    );
    Ok(())
}

// ------------------------------------------------------------------ bench

/// The `--runs N` option shared by every bench.
fn bench_runs(args: &[String], default: usize) -> Result<usize> {
    let mut runs = default;
    let mut rest = args.iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--runs" => {
                runs = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            other => return Err(format!("unknown bench option `{other}`")),
        }
    }
    Ok(runs)
}

/// The builder binary a bench measures: a release build, or
/// `BUILDER_BENCH_BIN` (to try a bench itself without the build).
fn release_builder() -> Result<PathBuf> {
    if let Some(bin) = env::var_os("BUILDER_BENCH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let mut build = cargo();
    build.args(["build", "--release", "--bin", "builder"]);
    run(build)?;
    Ok(target_dir().join("release/builder"))
}

/// One benchmarked image.
struct BenchImage {
    label: &'static str,
    fixture: &'static str,
    description: String,
}

/// `cargo xtask bench pull [--runs N]`, and the dispatch to the other benches.
fn bench(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("pull") => {}
        Some("run") => return bench_run(&args[1..]),
        Some("build") => return bench_build::bench_build(&args[1..]),
        Some("push") => return bench_push::bench_push(&args[1..]),
        other => {
            return Err(format!(
                "usage: cargo xtask bench pull|run|build|push [--runs N] (got {other:?})"
            ));
        }
    }
    let runs = bench_runs(&args[1..], 5)?;
    let fixtures = fixtures()?;
    let builder = release_builder()?;

    let images = [
        BenchImage {
            label: "busybox",
            fixture: "busybox",
            description: describe_fixture(&fixtures, "busybox")?,
        },
        BenchImage {
            label: "large",
            fixture: "large",
            description: describe_fixture(&fixtures, "large")?,
        },
    ];

    // Every store, and the registry's storage, on tmpfs: the disk here is
    // ext4 without a journal and would measure the disk, not the tools.
    let scratch = PathBuf::from(format!("/dev/shm/builder-bench-{}", std::process::id()));
    fs::create_dir_all(scratch.join("registry"))
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let result = (|| -> Result<Vec<(String, [f64; 3])>> {
        let registry = start_registry(&scratch.join("registry"))?;
        let mut medians = Vec::new();
        for image in &images {
            let reference = format!("{}/bench/{}:latest", registry.addr, image.fixture);
            let mut push = Command::new("skopeo");
            push.args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!(
                    "oci:{}:latest",
                    fixtures.join(image.fixture).display()
                ))
                .arg(format!("docker://{reference}"));
            run(push)?;
            let b = scratch.join("builder-store");
            let s = scratch.join("skopeo-layout");
            let (pr, prr) = (scratch.join("podman-root"), scratch.join("podman-runroot"));
            let podman = format!(
                "podman --root {} --runroot {} --storage-driver overlay",
                pr.display(),
                prr.display()
            );
            let csv = scratch.join(format!("{}.csv", image.label));
            let mut h = Command::new("hyperfine");
            h.arg("--runs")
                .arg(runs.to_string())
                .args(["--style", "basic", "--export-csv"])
                .arg(&csv)
                .arg("--prepare")
                .arg(format!("rm -rf {}", b.display()))
                .arg("--prepare")
                .arg(format!("rm -rf {}", s.display()))
                .arg("--prepare")
                .arg(format!(
                    "{podman} rmi -af >/dev/null 2>&1; umount -R -l {pr} 2>/dev/null; rm -rf {pr} {prr}",
                    pr = pr.display(),
                    prr = prr.display()
                ))
                .args(["-n", "builder pull"])
                .arg(format!(
                    "{} --root {} pull -q --tls-verify=false {reference}",
                    builder.display(),
                    b.display()
                ))
                .args(["-n", "skopeo copy"])
                .arg(format!("skopeo copy --quiet --src-tls-verify=false docker://{reference} oci:{}:latest", s.display()))
                .args(["-n", "podman pull"])
                .arg(format!("{podman} pull -q --tls-verify=false {reference}"))
                .env("BUILDER_NO_PROGRESS", "1");
            run(h)?;
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{podman} rmi -af >/dev/null 2>&1; umount -R -l {} 2>/dev/null",
                    pr.display()
                ))
                .status();
            medians.push((image.label.to_string(), read_medians(&csv)?));
        }
        drop(registry);
        Ok(medians)
    })();
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = fs::remove_dir_all(&scratch);
    let medians = result?;

    let report = bench_report(&images, &medians, runs, &load_before, &load_after);
    println!("\n{report}");
    if runs < 5 {
        println!("(fewer than 5 runs: BENCHMARKS.md not written)");
    } else {
        write_bench_section("pull", &report)?;
        println!("wrote the pull section of BENCHMARKS.md");
    }
    Ok(())
}

/// Medians (seconds) of builder, skopeo, podman from a hyperfine CSV
/// (`command,mean,stddev,median,user,system,min,max`).
fn read_medians(csv: &Path) -> Result<[f64; 3]> {
    let text = fs::read_to_string(csv).map_err(|e| format!("read {}: {e}", csv.display()))?;
    let mut out = [f64::NAN; 3];
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let median: f64 = cols
            .get(3)
            .and_then(|m| m.parse().ok())
            .ok_or(format!("bad hyperfine CSV line {line:?}"))?;
        let slot = match cols[0] {
            "builder pull" => 0,
            "skopeo copy" => 1,
            "podman pull" => 2,
            other => return Err(format!("unexpected command {other:?} in {}", csv.display())),
        };
        out[slot] = median;
    }
    Ok(out)
}

/// "N layers, X MB compressed, Y files" for a fixture, read with jq and tar.
fn describe_fixture(fixtures: &Path, name: &str) -> Result<String> {
    let layout = fixtures.join(name);
    let mut jq = Command::new("jq");
    jq.args(["-r", r#".manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="latest") | .digest"#])
        .arg(layout.join("index.json"));
    let manifest = capture(jq)?
        .trim()
        .trim_start_matches("sha256:")
        .to_string();
    let mut jq = Command::new("jq");
    jq.args(["-r", ".layers[] | \"\\(.digest) \\(.size)\""])
        .arg(layout.join("blobs/sha256").join(&manifest));
    let layers = capture(jq)?;
    let (mut bytes, mut files, mut count) = (0u64, 0usize, 0usize);
    for line in layers.lines() {
        let (digest, size) = line.split_once(' ').ok_or("bad jq output")?;
        bytes += size.parse::<u64>().map_err(|e| e.to_string())?;
        count += 1;
        let mut tar = Command::new("tar");
        tar.arg("-tzf").arg(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        );
        files += capture(tar)?.lines().filter(|l| !l.ends_with('/')).count();
    }
    Ok(format!(
        "{count} layer(s), {:.1} MB compressed, {files} files",
        bytes as f64 / 1e6
    ))
}

/// The short commit the benches ran at, for their "Machine state" lines.
fn git_commit() -> String {
    let mut git = Command::new("git");
    git.args(["rev-parse", "--short", "HEAD"])
        .current_dir(root());
    capture(git)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// CPUs available, for the benches' "Machine state" lines (0 if unknown).
fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

fn tool_version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

fn bench_report(
    images: &[BenchImage],
    medians: &[(String, [f64; 3])],
    runs: usize,
    load_before: &str,
    load_after: &str,
) -> String {
    let ms = |s: f64| format!("{:.0} ms", s * 1000.0);
    let mut r = String::new();
    r += "## `builder pull`\n\n";
    r += &format!(
        "Written by `cargo xtask bench pull`. Each time is the median of {runs} cold runs \
         (hyperfine; every run starts from an empty store). All three tools pull from the same \
         local docker-registry (127.0.0.1, plain HTTP, storage on tmpfs), and every store is on \
         tmpfs (`/dev/shm`).\n\n"
    );
    r += "- `builder pull`: download, verify both digests, unpack every layer (ready to mount and run).\n";
    r += "- `skopeo copy docker://… oci:DIR`: download and verify only (no unpacking).\n";
    r += "- `podman pull` (overlay driver, empty store): download, verify, unpack.\n\n";
    r += "| image | builder pull | skopeo copy | podman pull | builder / skopeo | builder / podman |\n";
    r += "| --- | ---: | ---: | ---: | ---: | ---: |\n";
    for (label, m) in medians {
        let desc = images
            .iter()
            .find(|i| i.label == label)
            .map(|i| i.description.as_str())
            .unwrap_or("");
        r += &format!(
            "| {label} ({desc}) | {} | {} | {} | {:.2}× | {:.2}× |\n",
            ms(m[0]),
            ms(m[1]),
            ms(m[2]),
            m[0] / m[1],
            m[0] / m[2]
        );
    }
    r += "\nTargets (issue 2): busybox no slower than skopeo copy (≤ 1.00×); the large image ≤ 3× skopeo copy and ≤ 0.25× podman pull.\n";
    for (label, m) in medians {
        let verdict = match label.as_str() {
            "busybox" => format!(
                "busybox ≤ 1.00× skopeo: {}",
                if m[0] <= m[1] { "met" } else { "NOT met" }
            ),
            _ => format!(
                "{label} ≤ 3× skopeo: {}; ≤ 0.25× podman: {}",
                if m[0] <= 3.0 * m[1] { "met" } else { "NOT met" },
                if m[0] <= 0.25 * m[2] {
                    "met"
                } else {
                    "NOT met"
                }
            ),
        };
        r += &format!("- {verdict}\n");
    }
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_default();
    let cpus = cpu_count();
    let commit = git_commit();
    r += "\n### Machine state\n\n";
    r += &format!("- date: {}\n", tool_version("date", "-u"));
    r += &format!("- commit: {commit}\n");
    r += &format!("- kernel: {}\n", tool_version("uname", "-r"));
    r += &format!(
        "- CPUs: {cpus}; memory: {} MB\n",
        mem.parse::<u64>().map(|k| k / 1024).unwrap_or(0)
    );
    r += &format!(
        "- load average before / after: {} / {}\n",
        load_before.trim(),
        load_after.trim()
    );
    r += "- filesystem: tmpfs for every store and for the registry\n";
    r += &format!(
        "- tools: {}; {}; {}; {}\n",
        tool_version("skopeo", "--version"),
        tool_version("podman", "--version"),
        tool_version("docker-registry", "--version"),
        tool_version("hyperfine", "--version")
    );
    r
}

/// Replaces one bench's section of BENCHMARKS.md (between
/// `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`), keeping the others, so
/// each `cargo xtask bench NAME` owns only its own table.
fn write_bench_section(name: &str, body: &str) -> Result {
    let path = root().join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let (start, end) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let section = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &old[..a], &old[b + end.len()..]),
        _ if old.trim().is_empty() => format!(
            "# Benchmarks\n\nEach section is written by `cargo xtask bench NAME`, which runs builder and its peers side by side in one run on this machine and reports ratios.\n\n{section}\n"
        ),
        _ => format!("{}\n\n{section}\n", old.trim_end()),
    };
    fs::write(&path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

// ------------------------------------------------------------------ bench run

/// Share of CPU time the machine was busy over `window` (from /proc/stat).
fn busy_share(window: Duration) -> f64 {
    let sample = || -> Option<(u64, u64)> {
        let stat = fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = cpu.get(3)? + cpu.get(4).unwrap_or(&0);
        Some((cpu.iter().sum(), idle))
    };
    let Some((t0, i0)) = sample() else {
        return f64::NAN;
    };
    sleep(window);
    match sample() {
        Some((t1, i1)) if t1 > t0 => 1.0 - (i1 - i0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

/// `cargo xtask bench run [--runs N]`: container start-to-exit latency.
fn bench_run(args: &[String]) -> Result {
    let runs = bench_runs(args, 30)?;
    let fixtures = fixtures()?;
    let builder = release_builder()?;
    // Stores, the bundle and the registry on tmpfs: the disk here is ext4
    // without a journal, and a container start writes a few files.
    let scratch = PathBuf::from(format!("/dev/shm/builder-bench-run-{}", std::process::id()));
    fs::create_dir_all(scratch.join("registry"))
        .map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let (pr, prr) = (scratch.join("podman-root"), scratch.join("podman-runroot"));
    let podman_base = format!(
        "podman --root {} --runroot {} --storage-driver overlay",
        pr.display(),
        prr.display()
    );
    let result = (|| -> Result<String> {
        let registry = start_registry(&scratch.join("registry"))?;
        let reference = format!("{}/bench/busybox:latest", registry.addr);
        let mut push = Command::new("skopeo");
        push.args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", fixtures.join("busybox").display()))
            .arg(format!("docker://{reference}"));
        run(push)?;
        let store = scratch.join("store");
        let mut pull = Command::new(&builder);
        pull.arg("--root")
            .arg(&store)
            .args(["pull", "-q", "--tls-verify=false", &reference])
            .env("BUILDER_NO_PROGRESS", "1");
        run_silently(pull)?;
        let mut podman_pull = Command::new("sh");
        podman_pull.arg("-c").arg(format!(
            "{podman_base} pull -q --tls-verify=false {reference}"
        ));
        run_silently(podman_pull)?;

        // runc on a bundle of the same image: umoci's rootfs, runc's default
        // spec (new PID, network, IPC, UTS, mount and cgroup namespaces) with
        // `true` as the command and no terminal.
        let bundle = scratch.join("bundle");
        let mut unpack = Command::new("umoci");
        unpack
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", fixtures.join("busybox").display()))
            .arg(&bundle);
        run_silently(unpack)?;
        fs::remove_file(bundle.join("config.json")).map_err(|e| e.to_string())?;
        let mut spec = Command::new("runc");
        spec.args(["spec", "--bundle"]).arg(&bundle);
        run_silently(spec)?;
        let mut edit = Command::new("sh");
        edit.arg("-c").arg(format!(
            "cd {b} && jq '.process.terminal=false | .process.args=[\"true\"] | .root.path=\"rootfs\"' config.json > c.tmp && mv c.tmp config.json",
            b = bundle.display()
        ));
        run_silently(edit)?;

        let builder_cmd = format!(
            "{} --root {} run --rm {reference} true",
            builder.display(),
            store.display()
        );
        let runc_cmd = format!(
            "runc --root {} run --bundle {} bench-run-{}",
            scratch.join("runc-state").display(),
            bundle.display(),
            std::process::id()
        );
        // podman's default `run` sets RLIMIT_NOFILE/NPROC above this
        // machine's hard limits, which fails without CAP_SYS_RESOURCE; try
        // its variants in order and say which one ran.
        let podman_variants = [
            ("podman run --rm --network none", String::new()),
            (
                "podman run --rm --network none --ulimit host",
                " --ulimit host".to_string(),
            ),
            (
                "podman run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024",
                " --ulimit nofile=1024:1024 --ulimit nproc=1024:1024".to_string(),
            ),
        ];
        let mut podman_notes = Vec::new();
        let mut podman_cmd = None;
        for (label, extra) in &podman_variants {
            let cmd = format!("{podman_base} run --rm --network none{extra} {reference} true");
            let out = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                podman_cmd = Some((label.to_string(), cmd));
                break;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            podman_notes.push(format!(
                "`{label}` fails here: {}",
                err.lines().last().unwrap_or("").trim()
            ));
        }
        for (name, cmd) in [("builder", &builder_cmd), ("runc", &runc_cmd)] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "{name} does not run: {cmd}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }

        let busy_before = busy_share(Duration::from_secs(2));
        let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let csv = scratch.join("run.csv");
        let mut h = Command::new("hyperfine");
        h.args(["-N", "--warmup", "3", "--runs"])
            .arg(runs.to_string())
            .args(["--style", "basic", "--export-csv"])
            .arg(&csv)
            .args(["-n", "builder run"])
            .arg(&builder_cmd)
            .args(["-n", "runc run"])
            .arg(&runc_cmd);
        if let Some((_, cmd)) = &podman_cmd {
            h.args(["-n", "podman run"]).arg(cmd);
        }
        run(h)?;
        let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let busy_after = busy_share(Duration::from_secs(2));
        let text = fs::read_to_string(&csv).map_err(|e| e.to_string())?;
        let mut medians: Vec<(String, f64, f64)> = Vec::new();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            let num = |i: usize| cols.get(i).and_then(|v| v.parse::<f64>().ok());
            let (Some(median), Some(stddev)) = (num(3), num(2)) else {
                return Err(format!("bad hyperfine CSV line {line:?}"));
            };
            medians.push((cols[0].to_string(), median, stddev));
        }
        let get = |n: &str| medians.iter().find(|m| m.0 == n).map(|m| m.1);
        let (b, r, p) = (
            get("builder run").unwrap_or(f64::NAN),
            get("runc run").unwrap_or(f64::NAN),
            get("podman run"),
        );
        drop(registry);

        let ms = |s: f64| format!("{:.1} ms", s * 1000.0);
        let mut out = String::new();
        out += "## `builder run`\n\n";
        out += &format!(
            "Written by `cargo xtask bench run`: the median of {runs} runs each (hyperfine `-N`, 3 warm-up runs), \
             all three in the same hyperfine invocation, of starting a container from the busybox fixture \
             (already in each tool's store) whose command is `true`, until it has exited and been torn down. \
             Stores and the runc bundle are on **tmpfs** (`/dev/shm`); builder is a release build.\n\n"
        );
        out += "| command | median | ± σ | ratio to builder |\n| --- | ---: | ---: | ---: |\n";
        for (name, median, sd) in &medians {
            let label = match name.as_str() {
                "builder run" => "`builder run --rm IMAGE true`".to_string(),
                "runc run" => "`runc run` (bundle: umoci unpack + `runc spec`, `true`)".to_string(),
                _ => format!(
                    "`{}`",
                    podman_cmd
                        .as_ref()
                        .map(|c| c.0.as_str())
                        .unwrap_or("podman run")
                        .to_string()
                        + " IMAGE true"
                ),
            };
            out += &format!(
                "| {label} | {} | {} | {:.2}× |\n",
                ms(*median),
                ms(*sd),
                median / b
            );
        }
        if podman_cmd.is_none() {
            out +=
                "| `podman run --rm --network none IMAGE true` | did not run (see below) | | |\n";
        }
        out += &format!(
            "\nbuilder / runc = **{:.2}×**{}.\n",
            b / r,
            p.map(|p| format!("; podman / builder = **{:.1}×**", p / b))
                .unwrap_or_default()
        );
        out += &format!(
            "\nTargets (issue 3): builder ≤ 10 ms: {}; ≤ 0.3× runc: {}; ≥ 15× faster than podman: {}.\n",
            if b <= 0.010 { "met" } else { "NOT met" },
            if b <= 0.3 * r { "met" } else { "NOT met" },
            match p {
                Some(p) if p >= 15.0 * b => "met".to_string(),
                Some(_) => "NOT met".to_string(),
                None => "not measured (podman did not run)".to_string(),
            }
        );
        if !podman_notes.is_empty() {
            out += "\npodman on this machine, which lacks CAP_SYS_RESOURCE: podman 4.3's default spec raises \
                    RLIMIT_NOFILE/RLIMIT_NPROC above the hard limits, so its runtime fails to set them:\n";
            for n in &podman_notes {
                out += &format!("- {n}\n");
            }
            if let Some((label, _)) = &podman_cmd {
                out += &format!(
                    "- measured instead: `{label}` (limits lowered, which podman then only has to set)\n"
                );
            }
        }
        let commit = git_commit();
        let cpus = cpu_count();
        out += "\n### Machine state\n\n";
        out += &format!("- date: {}\n", tool_version("date", "-u"));
        out += &format!("- commit: {commit}\n");
        out += &format!("- kernel: {}; CPUs: {cpus}\n", tool_version("uname", "-r"));
        out += &format!(
            "- machine busy (/proc/stat, 2 s) before / after: {:.0} % / {:.0} %\n",
            busy_before * 100.0,
            busy_after * 100.0
        );
        out += &format!(
            "- load average before / after: {} / {}\n",
            load_before.trim(),
            load_after.trim()
        );
        out += "- store: tmpfs (`/dev/shm`) for builder, podman and the runc bundle; cgroups v1 (hybrid)\n";
        out += &format!(
            "- tools: {}; {}; {}\n",
            tool_version("runc", "--version"),
            tool_version("podman", "--version"),
            tool_version("hyperfine", "--version")
        );
        Ok(out)
    })();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{podman_base} rm -af >/dev/null 2>&1; {podman_base} rmi -af >/dev/null 2>&1; umount -R -l {} 2>/dev/null",
            pr.display()
        ))
        .status();
    let _ = fs::remove_dir_all(&scratch);
    let report = result?;
    println!("\n{report}");
    if runs < 20 {
        println!("(fewer than 20 runs: BENCHMARKS.md not written)");
    } else {
        write_bench_section("run", &report)?;
        println!("wrote the run section of BENCHMARKS.md");
    }
    Ok(())
}
