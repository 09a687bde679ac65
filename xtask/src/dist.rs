//! `cargo xtask dist`: the binary users install. One static executable
//! (musl, static-pie, no interpreter, no shared libraries), so it runs on
//! any x86_64 Linux whatever its libc, as a CI image or a laptop gets it.
//!
//! Steps: make sure the musl target and `musl-gcc` (for the C in
//! libdeflate and zstd) are there, build with the `dist` profile, check
//! the result really is static, then use it: load the busybox fixture into
//! a scratch store on tmpfs, build the multi-stage example, run it, rebuild
//! it from cache and `check` the store. The binary lands in
//! `target/dist/` with its sha256.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Result, capture, cargo, ensure_debian_packages, fixtures, root, run, target_dir};

const TARGET: &str = "x86_64-unknown-linux-musl";
/// The name of the installed artefact.
const ARTEFACT: &str = "builder-x86_64-linux-static";

pub fn dist() -> Result {
    ensure_debian_packages(&["musl-tools"])?;
    ensure_rust_target()?;
    let mut build = cargo();
    build.args([
        "build",
        "--profile",
        "dist",
        "--target",
        TARGET,
        "--bin",
        "builder",
    ]);
    run(build)?;
    let built = target_dir().join(TARGET).join("dist/builder");
    check_static(&built)?;
    smoke_test(&built)?;

    let out_dir = target_dir().join("dist");
    fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let artefact = out_dir.join(ARTEFACT);
    fs::copy(&built, &artefact).map_err(|e| format!("copy to {}: {e}", artefact.display()))?;
    let mut sum = Command::new("sha256sum");
    sum.arg(ARTEFACT).current_dir(&out_dir);
    let line = capture(sum)?;
    let sum_file = out_dir.join(format!("{ARTEFACT}.sha256"));
    fs::write(&sum_file, &line).map_err(|e| format!("write {}: {e}", sum_file.display()))?;
    let size = fs::metadata(&artefact).map(|m| m.len()).unwrap_or(0);
    println!(
        "dist: {} ({:.1} MB, static), sha256 in {}",
        artefact.display(),
        size as f64 / 1e6,
        sum_file.display()
    );
    Ok(())
}

/// Adds the musl standard library with rustup when it is missing.
fn ensure_rust_target() -> Result {
    let mut list = Command::new("rustup");
    list.args(["target", "list", "--installed"])
        .current_dir(root());
    let installed = capture(list).map_err(|e| {
        format!("{e}\nhint: the static build needs rustup to add the {TARGET} target")
    })?;
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]).current_dir(root());
    run(add).map_err(|e| {
        format!("{e}\nhint: `rustup target add {TARGET}` downloads musl's Rust standard library")
    })
}

/// Fails unless `file` reports a statically linked executable (no
/// `interpreter`, no shared libraries).
fn check_static(bin: &Path) -> Result {
    let mut file = Command::new("file");
    file.arg("-b").arg(bin);
    let kind = capture(file)?;
    if (kind.contains("statically linked") || kind.contains("static-pie linked"))
        && !kind.contains("interpreter")
    {
        println!("dist: {}: {}", bin.display(), kind.trim());
        Ok(())
    } else {
        Err(format!("{} is not static: {}", bin.display(), kind.trim()))
    }
}

/// Uses the static binary for builder's main jobs in a scratch store.
fn smoke_test(bin: &Path) -> Result {
    let fixtures = fixtures()?;
    let scratch = scratch_dir();
    fs::create_dir_all(&scratch).map_err(|e| format!("create {}: {e}", scratch.display()))?;
    let result = (|| -> Result {
        let store = scratch.join("store");
        let builder = |args: &[&str]| {
            let mut c = Command::new(bin);
            c.arg("--root")
                .arg(&store)
                .args(args)
                .env_remove("BUILDER_ROOT");
            c
        };
        let busybox = fixtures.join("busybox").to_string_lossy().into_owned();
        run(builder(&["--version"]))?;
        run(builder(&["load", "-q", "-i", &busybox]))?;
        let id = capture(builder(&["images", "-q"]))?;
        let id = id
            .lines()
            .next()
            .ok_or("no image after load")?
            .trim()
            .to_string();
        run(builder(&["tag", &id, "busybox"]))?;
        let example = root().join("Containerfile-examples/multi-stage");
        let example = example.to_string_lossy().into_owned();
        run(builder(&["build", "-q", "-t", "dist/hello", &example]))?;
        let said = capture(builder(&["run", "--rm", "dist/hello"]))?;
        if said.trim() != "built in a separate stage" {
            return Err(format!("the example image printed {said:?}"));
        }
        run(builder(&["build", "-q", "-t", "dist/hello", &example]))?;
        run(builder(&["check"]))
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn scratch_dir() -> PathBuf {
    let parent = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    parent.join(format!("builder-dist-{}", std::process::id()))
}
