//! `builder save` and `builder load` against real peers (issue 5,
//! acceptance item 4): podman reads builder's docker-archive, skopeo and
//! umoci its oci-archive; builder loads what podman and skopeo write. Base
//! images reach builder's store the way pulls do: fixtures (made by umoci
//! and skopeo) pushed to the shared local registry, then `builder pull`.
//!
//! Root filesystems are compared with `umoci unpack` of the fixture (the
//! reference tree every pull test uses), so "equal to the original" means
//! equal to what an independent tool unpacks.
//!
//! podman runs with a private store (`--root`/`--runroot` in the test's
//! scratch directory, the vfs driver, no cgroup manager or event log of the
//! host's). `podman run` fails here with podman's default rlimits (it asks
//! for an `RLIMIT_NOFILE` above the machine's hard limit), so it is given
//! explicit ones.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::fixtures::Fixture;
use crate::support::{TestEnv, process, serve_fixture, tree};

/// podman with a store of its own in a temp directory. Not below the
/// test's scratch directory: podman refuses a runroot path longer than 50
/// characters, so it lives in a short-named directory of its own.
struct Podman {
    root: PathBuf,
    runroot: PathBuf,
    tmp: PathBuf,
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let parent = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("bpod")
            .tempdir_in(parent)
            .unwrap();
        let p = Podman {
            root: dir.path().join("root"),
            runroot: dir.path().join("run"),
            tmp: dir.path().join("tmp"),
            dir,
        };
        fs::create_dir_all(&p.tmp).unwrap();
        p
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(&self.tmp)
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args);
        cmd
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        process::run_ok(self.command(args))
    }

    /// `podman image inspect IMAGE`, the one object of the array.
    #[track_caller]
    fn inspect(&self, image: &str) -> Value {
        let out = self.run(&["image", "inspect", image]);
        let v: Value = serde_json::from_str(&out).expect("podman inspect prints JSON");
        v[0].clone()
    }

    /// `podman pull` from the shared plain registry.
    #[track_caller]
    fn pull(&self, reference: &str) {
        self.run(&["pull", "-q", "--tls-verify=false", reference]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers are `--rm`, image mounts are vfs directories (no
        // mount); this is for a test that failed halfway.
        let _ = process::output(self.command(&["rm", "-af"]));
        let _ = process::output(self.command(&["image", "unmount", "-a"]));
        crate::support::unmount_below(self.dir.path());
    }
}

/// The fixture's root filesystem as `umoci unpack` makes it.
fn umoci_rootfs(env: &TestEnv, fixture: &Fixture, name: &str) -> PathBuf {
    fixture
        .image()
        .umoci_unpack(&env.scratch("umoci").join(name))
}

/// Asserts that builder's mounted rootfs of `image` equals `expected`.
#[track_caller]
fn assert_mount_equals(env: &TestEnv, image: &str, expected: &Path) {
    let mounted = env.mount(image);
    tree::assert_same(expected, &mounted);
    env.umount(image, &mounted);
}

#[track_caller]
fn inspect(env: &TestEnv, image: &str) -> Value {
    env.builder(&["inspect", image]).success().json()
}

/// Names in `builder images --json`.
fn image_names(env: &TestEnv) -> Vec<String> {
    let mut names: Vec<String> = env
        .builder(&["images", "--json"])
        .success()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Entries below a store directory (`tmp`, `layers`, `oci/blobs/sha256`).
fn entries(root: &Path, dir: &str) -> Vec<String> {
    match fs::read_dir(root.join(dir)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pulls fixtures into a fresh env; returns it with their references.
fn env_with(names: &[&str]) -> (TestEnv, Vec<(String, &'static Fixture)>) {
    let env = TestEnv::new();
    let mut pulled = Vec::new();
    for name in names {
        let (reference, fixture) = serve_fixture(name);
        env.pull_plain(&reference, &[]);
        pulled.push((reference, fixture));
    }
    (env, pulled)
}

// ------------------------------------------------------------------ builder save → peers

/// A docker-archive of two images from `builder save` loads with `podman
/// load`: same image IDs (the configs byte for byte), same config, same
/// layers, and podman's rootfs of each equals umoci's; the busybox-based
/// one runs under `podman run`.
#[test]
fn docker_archive_from_save_loads_in_podman() {
    let (env, images) = env_with(&["derived", "multilayer"]);
    let archive = env.scratch("out").join("images.tar");
    let refs: Vec<&str> = images.iter().map(|(r, _)| r.as_str()).collect();
    let mut args = vec!["save", "--format", "docker-archive", "-o"];
    let archive_arg = archive.to_str().unwrap();
    args.push(archive_arg);
    args.extend(&refs);
    env.builder(&args).success();
    assert_eq!(
        entries(archive.parent().unwrap(), ""),
        vec!["images.tar".to_string()],
        "only the archive in the output directory (no temp file left)"
    );

    let podman = Podman::new();
    let out = podman.run(&["load", "-i", archive_arg]);
    for (reference, fixture) in &images {
        assert!(out.contains(reference.as_str()), "podman load said:\n{out}");
        let ours = inspect(&env, reference);
        let theirs = podman.inspect(reference);
        let id = fixture
            .image()
            .config_digest
            .strip_prefix("sha256:")
            .unwrap();
        assert_eq!(theirs["Id"], id, "podman's image ID is the config digest");
        assert_eq!(ours["id"], fixture.image().config_digest);
        for (ours_key, theirs_key) in [
            ("Env", "Env"),
            ("Cmd", "Cmd"),
            ("Entrypoint", "Entrypoint"),
            ("WorkingDir", "WorkingDir"),
            ("User", "User"),
            ("Labels", "Labels"),
        ] {
            let a = &ours["config"]["config"][ours_key];
            let b = &theirs["Config"][theirs_key];
            let empty = |v: &Value| v.is_null() || v == "" || v == &serde_json::json!({});
            assert!(
                a == b || (empty(a) && empty(b)),
                "{reference}: config {ours_key}: builder {a}, podman {b}"
            );
        }
        assert_eq!(theirs["Architecture"], ours["config"]["architecture"]);
        assert_eq!(theirs["Os"], ours["config"]["os"]);
        assert_eq!(
            theirs["RootFS"]["Layers"],
            serde_json::json!(fixture.image().diff_ids),
            "{reference}: layers"
        );

        let expected = umoci_rootfs(&env, fixture, fixture.name);
        let mounted = podman.run(&["image", "mount", reference]);
        tree::assert_same(&expected, Path::new(mounted.trim()));
        podman.run(&["image", "unmount", reference]);
        assert_mount_equals(&env, reference, &expected);
    }

    let derived = &images[0].0;
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        derived,
        "cat",
        "/etc/derived",
    ]);
    assert_eq!(out.trim(), "derived from busybox");
}

/// `save` without `-o` (or with `-o -`) writes the archive to stdout, in
/// both tar formats byte for byte what `-o FILE` writes (docker-archive
/// layers, decompressed on the fly, are spooled to learn their size first);
/// an oci-dir needs a directory.
#[test]
fn save_to_stdout_writes_the_same_bytes_as_to_a_file() {
    let (env, images) = env_with(&["multilayer", "docker"]);
    let refs: Vec<&str> = images.iter().map(|(r, _)| r.as_str()).collect();
    let out = env.scratch("out");
    for (format, dash) in [("oci-archive", false), ("docker-archive", true)] {
        let file = out.join(format!("{format}.tar"));
        let mut args = vec!["save", "--format", format, "-o", file.to_str().unwrap()];
        args.extend(&refs);
        env.builder(&args).success();

        let mut args = vec!["save", "--format", format];
        if dash {
            args.extend(["-o", "-"]);
        }
        args.extend(&refs);
        let streamed = env.command(&args).output().unwrap();
        assert!(
            streamed.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&streamed.stderr)
        );
        assert!(
            String::from_utf8_lossy(&streamed.stderr).contains("to stdout"),
            "{format}: {}",
            String::from_utf8_lossy(&streamed.stderr)
        );
        let written = fs::read(&file).unwrap();
        assert!(written.len() > 1024, "{format}: a real archive");
        assert!(
            streamed.stdout == written,
            "{format}: stdout ({} bytes) differs from the file ({} bytes)",
            streamed.stdout.len(),
            written.len()
        );
    }
    env.builder(&["save", "--format", "oci-dir", refs[0]])
        .failure()
        .stderr_has("give it with `-o DIR`");
}

/// An oci-archive from `builder save` is read by `skopeo copy
/// oci-archive:FILE:NAME`, keeping the manifest digest, and `umoci unpack`
/// of skopeo's copy equals the original; the Docker-schema2 image's layout
/// manifest travels too. The same images as `--format oci-dir` pass
/// `oci-image-tool validate`.
#[test]
fn oci_archive_from_save_is_read_by_skopeo_and_umoci() {
    let (env, images) = env_with(&["multilayer", "docker"]);
    let out = env.scratch("out");
    let archive = out.join("images.oci.tar");
    let mut args = vec!["save", "-o", archive.to_str().unwrap()];
    args.extend(images.iter().map(|(r, _)| r.as_str()));
    env.builder(&args).success();

    for (reference, fixture) in &images {
        let layout_digest = inspect(&env, reference)["layoutDigest"]
            .as_str()
            .unwrap()
            .to_string();
        let dir = out.join(format!("skopeo-{}", fixture.name));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}:{reference}", archive.display()))
            .arg(format!("oci:{}:copy", dir.display()));
        process::run_ok(cmd);
        let index: Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"], layout_digest,
            "{reference}: skopeo copied the manifest unchanged"
        );
        if fixture.name == "multilayer" {
            assert_eq!(layout_digest, fixture.digest(), "OCI manifest as pulled");
        }
        let bundle = out.join(format!("umoci-{}", fixture.name));
        let mut cmd = Command::new("umoci");
        cmd.args(["unpack", "--image"])
            .arg(format!("{}:copy", dir.display()))
            .arg(&bundle);
        process::run_ok(cmd);
        let expected = umoci_rootfs(&env, fixture, fixture.name);
        tree::assert_same(&expected, &bundle.join("rootfs"));
    }

    let dir = out.join("layout");
    let mut args = vec!["save", "--format", "oci-dir", "-o", dir.to_str().unwrap()];
    args.extend(images.iter().map(|(r, _)| r.as_str()));
    env.builder(&args).success();
    let mut cmd = Command::new("oci-image-tool");
    cmd.args(["validate", "--type", "image"]).arg(&dir);
    let said = process::run_ok(cmd);
    assert!(said.contains("Validation succeeded"), "{said}");
    // A second save into a non-empty directory is refused.
    env.builder(&args)
        .failure()
        .stderr_has("already exists and is not an empty directory");
}

// ------------------------------------------------------------------ peers → builder load

/// Loads `archive` into a fresh store and checks the image: `load` prints
/// its name, its ID is the fixture's, `builder run` runs it (for the
/// busybox-based fixture), and its rootfs equals umoci's.
#[track_caller]
fn assert_loads(archive: &Path, reference: &str, fixture: &Fixture, what: &str) {
    let env = TestEnv::new();
    let run = env
        .builder(&["load", "-i", archive.to_str().unwrap()])
        .success();
    assert_eq!(run.out(), reference, "{what}: load prints the name\n{run}");
    let image = inspect(&env, reference);
    assert_eq!(
        image["id"],
        fixture.image().config_digest,
        "{what}: image ID"
    );
    if fixture.name == "derived" {
        let run = env
            .builder(&["run", "--rm", reference, "cat", "/etc/derived"])
            .success();
        assert_eq!(run.out(), "derived from busybox", "{what}");
    }
    let expected = umoci_rootfs(&env, fixture, fixture.name);
    assert_mount_equals(&env, reference, &expected);
    env.assert_check_clean();
}

/// `podman save` in both formats (and its docker-archive gzipped, as
/// `docker save | gzip` makes them), of a busybox-based image and of the
/// one with whiteouts, hardlinks, devices and xattrs.
#[test]
fn load_reads_podman_save_in_both_formats() {
    let env = TestEnv::new();
    let podman = Podman::new();
    let out = env.scratch("out");
    for name in ["derived", "multilayer"] {
        let (reference, fixture) = serve_fixture(name);
        podman.pull(&reference);
        for format in ["docker-archive", "oci-archive"] {
            let archive = out.join(format!("{name}.{format}.tar"));
            podman.run(&[
                "save",
                "--format",
                format,
                "-o",
                archive.to_str().unwrap(),
                &reference,
            ]);
            assert_loads(
                &archive,
                &reference,
                fixture,
                &format!("podman {format} {name}"),
            );
        }
        let docker = out.join(format!("{name}.docker-archive.tar"));
        let mut gzip = Command::new("gzip");
        gzip.arg("-k").arg(&docker);
        process::run_ok(gzip);
        let gz = PathBuf::from(format!("{}.gz", docker.display()));
        assert_loads(
            &gz,
            &reference,
            fixture,
            &format!("gzipped podman docker-archive {name}"),
        );
    }

    // Both images in one archive (`podman save -m`): both load, named.
    let (derived, dv) = serve_fixture("derived");
    let (multilayer, ml) = serve_fixture("multilayer");
    let multi = out.join("multi.tar");
    podman.run(&[
        "save",
        "-m",
        "--format",
        "docker-archive",
        "-o",
        multi.to_str().unwrap(),
        &derived,
        &multilayer,
    ]);
    let fresh = TestEnv::new();
    let run = fresh
        .builder(&["load", "-i", multi.to_str().unwrap()])
        .success();
    let mut printed: Vec<&str> = run.out().lines().collect();
    printed.sort();
    let mut want = vec![derived.as_str(), multilayer.as_str()];
    want.sort();
    assert_eq!(printed, want, "{run}");
    for (reference, fixture) in [(&derived, dv), (&multilayer, ml)] {
        assert_eq!(
            inspect(&fresh, reference)["id"],
            fixture.image().config_digest
        );
    }
    assert_mount_equals(&fresh, &multilayer, &umoci_rootfs(&fresh, ml, "multi"));
    fresh.assert_check_clean();
}

/// `skopeo copy docker://… oci-archive:FILE:NAME`.
#[test]
fn load_reads_skopeo_oci_archive() {
    let env = TestEnv::new();
    let out = env.scratch("out");
    for name in ["derived", "multilayer"] {
        let (reference, fixture) = serve_fixture(name);
        let archive = out.join(format!("{name}.tar"));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci-archive:{}:{reference}", archive.display()));
        process::run_ok(cmd);
        assert_loads(&archive, &reference, fixture, &format!("skopeo {name}"));
    }
}

/// A multi-platform oci-archive (`skopeo copy --all`): the host's image by
/// default, another with `--platform`.
#[test]
fn load_picks_the_platform_from_an_index() {
    let (reference, fixture) = serve_fixture("multiarch");
    let scratch = TestEnv::new();
    let archive = scratch.scratch("out").join("multiarch.tar");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--all", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci-archive:{}:{reference}", archive.display()));
    process::run_ok(cmd);
    let host = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64/v8",
        other => panic!("the multiarch fixture has no image for this host ({other})"),
    };
    for (flag, want) in [(None, host), (Some("linux/arm64"), "linux/arm64/v8")] {
        let env = TestEnv::new();
        let mut args = vec!["load", "-i", archive.to_str().unwrap()];
        if let Some(p) = flag {
            args.extend(["--platform", p]);
        }
        env.builder(&args).success();
        let image = inspect(&env, &reference);
        assert_eq!(
            image["id"],
            fixture.platform(want).config_digest,
            "{flag:?}"
        );
        assert_eq!(
            image["layoutDigest"],
            fixture.platform(want).manifest_digest
        );
    }
    let env = TestEnv::new();
    env.builder(&[
        "load",
        "-i",
        archive.to_str().unwrap(),
        "--platform",
        "linux/s390x",
    ])
    .failure()
    .stderr_has("linux/s390x")
    .stderr_has("linux/arm64");
    assert_eq!(image_names(&env), Vec::<String>::new());
}

// ------------------------------------------------------------------ round trips

/// save → load into a fresh store keeps the image ID, and for the OCI
/// formats the manifest digest; a Docker-schema2 image keeps its registry
/// digest too. The loaded images mount to the same trees.
#[test]
fn round_trip_keeps_ids_and_manifest_digests() {
    let (env, images) = env_with(&["multilayer", "docker", "busybox"]);
    let out = env.scratch("out");
    for format in ["oci-archive", "oci-dir", "docker-archive"] {
        let archive = out.join(format);
        let mut args = vec!["save", "--format", format, "-o", archive.to_str().unwrap()];
        args.extend(images.iter().map(|(r, _)| r.as_str()));
        env.builder(&args).success();

        let fresh = TestEnv::new();
        let run = fresh
            .builder(&["load", "-i", archive.to_str().unwrap()])
            .success();
        let mut printed: Vec<&str> = run.out().lines().collect();
        printed.sort();
        let mut want: Vec<&str> = images.iter().map(|(r, _)| r.as_str()).collect();
        want.sort();
        assert_eq!(printed, want, "{format}: names printed\n{run}");
        for (reference, fixture) in &images {
            let before = inspect(&env, reference);
            let after = inspect(&fresh, reference);
            assert_eq!(after["id"], before["id"], "{format} {reference}: image ID");
            if format != "docker-archive" {
                assert_eq!(
                    after["layoutDigest"], before["layoutDigest"],
                    "{format} {reference}: manifest digest"
                );
                assert_eq!(
                    after["digest"], before["digest"],
                    "{format} {reference}: registry digest"
                );
                assert_eq!(after["digest"], fixture.digest(), "{format} {reference}");
            }
            let expected = env.mount(reference);
            assert_mount_equals(&fresh, reference, &expected);
            env.umount(reference, &expected);
        }
        fresh.assert_check_clean();
        // Loading the same archive again stores nothing new.
        let again = fresh
            .builder(&["load", "-i", archive.to_str().unwrap()])
            .success();
        assert!(
            again.stderr.contains("0 layers stored"),
            "{format}: second load\n{again}"
        );
    }
}

/// An image saved by ID has no name in the archive: `load` prints its ID,
/// `images` shows it as `<none>`, and `builder tag` names it (the
/// placeholder goes away).
#[test]
fn an_image_saved_by_id_loads_unnamed_and_can_be_tagged() {
    let (env, images) = env_with(&["derived"]);
    let (_, fixture) = &images[0];
    let id = fixture.image().config_digest.clone();
    let short = &id["sha256:".len().."sha256:".len() + 12];
    for format in ["oci-archive", "docker-archive"] {
        let archive = env.scratch("out").join(format);
        env.builder(&[
            "save",
            "--format",
            format,
            "-o",
            archive.to_str().unwrap(),
            short,
        ])
        .success();
        let fresh = TestEnv::new();
        let run = fresh
            .builder(&["load", "-i", archive.to_str().unwrap()])
            .success()
            .stderr_has("without a name");
        assert_eq!(run.out(), id, "{format}: load prints the ID");
        let table = fresh.builder(&["images"]).success();
        assert!(table.stdout.contains("<none>"), "{format}:\n{table}");
        let run = fresh
            .builder(&["run", "--rm", short, "cat", "/etc/derived"])
            .success();
        assert_eq!(run.out(), "derived from busybox");
        fresh
            .builder(&["tag", short, "example.com/named:1"])
            .success();
        assert_eq!(
            image_names(&fresh),
            vec!["example.com/named:1".to_string()],
            "{format}: the placeholder is replaced by the name"
        );
        fresh.builder(&["prune"]).success();
        fresh.assert_check_clean();
    }
}

// ------------------------------------------------------------------ failures

/// Flips one byte at `offset` of `file`.
fn flip_byte(file: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x55;
    f.write_all_at(&b, offset).unwrap();
}

/// Where member `name`'s data starts in tar `file`, and its size.
fn member_offset(file: &Path, name: &str) -> (u64, u64) {
    let f = fs::File::open(file).unwrap();
    let mut archive = tar::Archive::new(f);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(name) {
            return (entry.raw_file_position(), entry.size());
        }
    }
    panic!("{} has no member {name}", file.display());
}

/// Asserts a failed load left the store as it was: no image, no blob, no
/// layer, no temp entry, `check` clean.
#[track_caller]
fn assert_nothing_loaded(env: &TestEnv, what: &str) {
    assert_eq!(image_names(env), Vec::<String>::new(), "{what}: images");
    assert_eq!(
        entries(&env.root, "oci/blobs/sha256"),
        Vec::<String>::new(),
        "{what}: blobs"
    );
    assert_eq!(
        entries(&env.root, "layers"),
        Vec::<String>::new(),
        "{what}: layers"
    );
    assert_eq!(
        entries(&env.root, "tmp"),
        Vec::<String>::new(),
        "{what}: temp"
    );
    env.assert_check_clean();
}

/// A truncated archive and archives with one byte changed in a layer fail
/// with an error naming the cause, and nothing is committed, although the
/// other layers of the image verified (they are staged, then dropped).
#[test]
fn truncated_or_tampered_archives_fail_and_commit_nothing() {
    let (env, images) = env_with(&["multilayer"]);
    let (reference, fixture) = &images[0];
    let out = env.scratch("out");
    let oci = out.join("oci.tar");
    let docker = out.join("docker.tar");
    env.builder(&["save", "-o", oci.to_str().unwrap(), reference])
        .success();
    env.builder(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        docker.to_str().unwrap(),
        reference,
    ])
    .success();
    // The last layer: the two before it verify and are staged first.
    let last_layer = &fixture.image().layers[2].1;
    let last_diff = &fixture.image().diff_ids[2];

    let cases: Vec<(&str, PathBuf, &str)> = {
        let truncated = out.join("truncated.tar");
        let bytes = fs::read(&oci).unwrap();
        fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();

        let tampered_oci = out.join("tampered-oci.tar");
        fs::copy(&oci, &tampered_oci).unwrap();
        let (off, size) = member_offset(
            &tampered_oci,
            &format!(
                "blobs/sha256/{}",
                last_layer.strip_prefix("sha256:").unwrap()
            ),
        );
        flip_byte(&tampered_oci, off + size / 2);

        let tampered_docker = out.join("tampered-docker.tar");
        fs::copy(&docker, &tampered_docker).unwrap();
        let (off, size) = member_offset(
            &tampered_docker,
            &format!("{}/layer.tar", last_diff.strip_prefix("sha256:").unwrap()),
        );
        // Inside a file's content, not a tar header: the tar still
        // parses, only the hash can tell.
        flip_byte(&tampered_docker, off + size - 2048);

        let tampered_config = out.join("tampered-config.tar");
        fs::copy(&oci, &tampered_config).unwrap();
        let config = &fixture.image().config_digest;
        let (off, _) = member_offset(
            &tampered_config,
            &format!("blobs/sha256/{}", config.strip_prefix("sha256:").unwrap()),
        );
        flip_byte(&tampered_config, off + 1);
        vec![
            ("truncated", truncated, "truncated"),
            ("tampered oci layer", tampered_oci, "failed verification"),
            (
                "tampered docker layer",
                tampered_docker,
                "failed verification",
            ),
            ("tampered config", tampered_config, "failed verification"),
        ]
    };
    for (what, archive, needle) in cases {
        let fresh = TestEnv::new();
        let run = fresh
            .builder(&["load", "-i", archive.to_str().unwrap()])
            .failure()
            .stderr_has(needle);
        assert!(run.stdout.trim().is_empty(), "{what}: stdout\n{run}");
        assert_nothing_loaded(&fresh, what);
    }

    let fresh = TestEnv::new();
    let not_archive = out.join("not-an-archive");
    fs::write(&not_archive, b"hello, not a tar at all\n").unwrap();
    fresh
        .builder(&["load", "-i", not_archive.to_str().unwrap()])
        .failure()
        .stderr_has("is not an image archive");
    assert_nothing_loaded(&fresh, "not an archive");
}

/// A docker-archive whose `manifest.json` points outside the archive, or
/// through a symlink out of it, is refused; nothing is read from the host.
#[test]
fn load_never_reads_outside_the_archive() {
    let env = TestEnv::new();
    let out = env.scratch("out");
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    for (what, layer_path, link) in [
        ("dot-dot path", "../../../etc/passwd", None),
        (
            "symlink out",
            "evil/layer.tar",
            Some("../../../../etc/passwd"),
        ),
        ("absolute symlink", "evil/layer.tar", Some("/etc/passwd")),
    ] {
        let archive = out.join(format!("{}.tar", what.replace(' ', "-")));
        let mut b = tar::Builder::new(fs::File::create(&archive).unwrap());
        let manifest = format!(
            r#"[{{"Config":"c.json","RepoTags":["example.com/evil:1"],"Layers":["{layer_path}"]}}]"#
        );
        for (name, data) in [
            ("manifest.json", manifest.as_bytes()),
            ("c.json", &config[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        if let Some(target) = link {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, layer_path, target).unwrap();
        }
        b.finish().unwrap();
        drop(b);
        let fresh = TestEnv::new();
        let run = fresh
            .builder(&["load", "-i", archive.to_str().unwrap()])
            .failure();
        assert!(
            run.stderr.contains("leaves the archive") || run.stderr.contains("has no `"),
            "{what}:\n{run}"
        );
        assert_nothing_loaded(&fresh, what);
    }
}

/// `save` hashes what it copies: a stored layer blob that no longer
/// matches its digest stops the save, and no archive (or temp file) is
/// left at the destination.
#[test]
fn save_of_a_corrupt_blob_fails_and_leaves_no_file() {
    let (env, images) = env_with(&["busybox"]);
    let (reference, fixture) = &images[0];
    let layer = &fixture.image().layers[0].1;
    let blob = env
        .root
        .join("oci/blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let len = fs::metadata(&blob).unwrap().len();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
    }
    flip_byte(&blob, len / 2);
    let out = env.scratch("out");
    for format in ["oci-archive", "docker-archive"] {
        let dest = out.join(format);
        env.builder(&[
            "save",
            "--format",
            format,
            "-o",
            dest.to_str().unwrap(),
            reference,
        ])
        .failure()
        .stderr_has("builder check");
        assert_eq!(
            entries(&out, ""),
            Vec::<String>::new(),
            "{format}: files left"
        );
    }
}

/// `docker save IMAGE | gzip | builder load -i -`: the archive from stdin,
/// compressed, as CI pipelines pipe it.
#[test]
fn load_reads_a_compressed_archive_from_stdin() {
    let (env, images) = env_with(&["derived"]);
    let (reference, fixture) = &images[0];
    let archive = env.scratch("out").join("derived.tar");
    env.builder(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().unwrap(),
        reference,
    ])
    .success();
    let mut gzip = Command::new("gzip");
    gzip.arg(&archive);
    process::run_ok(gzip);
    let gz = PathBuf::from(format!("{}.gz", archive.display()));

    let fresh = TestEnv::new();
    let mut cmd = fresh.command(&["load", "-i", "-"]);
    cmd.stdin(fs::File::open(&gz).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = process::spawn(cmd).unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "load from stdin: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), reference);
    assert_eq!(
        inspect(&fresh, reference)["id"],
        fixture.image().config_digest
    );
    let run = fresh
        .builder(&["run", "--rm", reference, "cat", "/etc/derived"])
        .success();
    assert_eq!(run.out(), "derived from busybox");
    assert_eq!(
        entries(&fresh.root, "tmp"),
        Vec::<String>::new(),
        "scratch copy removed"
    );
    fresh.assert_check_clean();
}

/// `kill -9` at spread-out moments of a load of the large image (~180 MB
/// of layer tars, 25k files): right after the kill the store is consistent
/// and names no image; the next command cleans up, and a new load
/// completes the image.
#[test]
fn killed_loads_leave_no_image_and_a_consistent_store() {
    let (env, images) = env_with(&["large"]);
    let (reference, fixture) = &images[0];
    let archive = env.scratch("out").join("large.tar");
    env.builder(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        archive.to_str().unwrap(),
        reference,
    ])
    .success();
    let archive = archive.to_str().unwrap();

    let timing = TestEnv::new();
    let started = std::time::Instant::now();
    timing.builder(&["load", "-q", "-i", archive]).success();
    let full = started.elapsed();
    drop(timing);

    let mut killed = 0;
    for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let fresh = TestEnv::new();
        let mut child = fresh.spawn(&["load", "-q", "-i", archive]);
        let delay = full.mul_f64(fraction);
        let exited = process::wait_for(delay, || child.try_wait().unwrap());
        process::kill_and_wait(&mut child);
        fresh.assert_check_clean();
        if exited.is_none() {
            killed += 1;
            assert_eq!(
                image_names(&fresh),
                Vec::<String>::new(),
                "killed after {delay:?}: no image is named before every layer is in"
            );
            // What a killed load staged or committed is garbage to prune.
            fresh.builder(&["prune"]).success();
            assert_eq!(entries(&fresh.root, "tmp"), Vec::<String>::new());
            assert_eq!(entries(&fresh.root, "layers"), Vec::<String>::new());
        }
        fresh.builder(&["load", "-q", "-i", archive]).success();
        assert_eq!(
            inspect(&fresh, reference)["id"],
            fixture.image().config_digest,
            "load after a kill at {delay:?}"
        );
        fresh.assert_check_clean();
    }
    assert!(
        killed >= 3,
        "only {killed} of 5 kills landed during a load ({full:?})"
    );
}
