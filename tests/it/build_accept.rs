//! What `builder build` makes is an image every other tool takes: for each
//! build of `Containerfile-examples/` (the table in `support::examples`),
//! in a fresh store,
//! 1. `oci-image-tool validate --type image ROOT/oci` succeeds (Debian's
//!    1.0.0-rc1 has no `imageLayout` type; `image` on a layout validates
//!    every ref in it, see `pull.rs`);
//! 2. `skopeo copy oci:ROOT/oci:NAME oci:OTHER:x` copies it;
//! 3. `umoci unpack` of that copy is the tree `builder mount NAME` shows,
//!    mtimes included (both come from the same layer tars);
//! 4. `builder run --rm NAME` runs its ENTRYPOINT/CMD and prints what the
//!    table says.
//!
//! Plus the output contract of `builder build` (BUILD-CLI.md): step lines on
//! stderr, the ID last on stdout, CACHED on a rebuild, exit status 1 naming
//! a failed RUN step; and `--timestamp`/SOURCE_DATE_EPOCH builds that are
//! identical across stores.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::examples::{self, Example};
use crate::support::{TestEnv, process, tree};

fn accepted(name: &str) {
    let example = examples::get(name);
    let env = examples::env_with_busybox();
    examples::build(&env, example);
    let image = example.image_name();

    validates(&env);
    let copy = skopeo_copy(&env, &image);
    unpack_equals_mount(&env, &image, &copy);
    runs(&env, example);
    env.assert_check_clean();
}

/// `image` as one path component.
fn file_name(image: &str) -> String {
    image
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Item 1.
fn validates(env: &TestEnv) {
    let mut cmd = Command::new("oci-image-tool");
    cmd.args(["validate", "--type", "image"])
        .arg(env.root.join("oci"));
    let stdout = process::run_ok(cmd);
    assert!(
        stdout.contains("Validation succeeded"),
        "oci-image-tool said:\n{stdout}"
    );
}

/// Item 2: returns the layout the image was copied to (tag `x`).
fn skopeo_copy(env: &TestEnv, image: &str) -> PathBuf {
    let layout = env
        .scratch(&format!("copy-{}", file_name(image)))
        .join("oci");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"])
        .arg(format!("oci:{}:{image}", env.root.join("oci").display()))
        .arg(format!("oci:{}:x", layout.display()));
    process::run_ok(cmd);
    layout
}

/// Item 3.
fn unpack_equals_mount(env: &TestEnv, image: &str, layout: &std::path::Path) {
    let bundle = env
        .scratch(&format!("umoci-{}", file_name(image)))
        .join("bundle");
    let mut cmd = Command::new("umoci");
    cmd.arg("unpack")
        .arg("--image")
        .arg(format!("{}:x", layout.display()))
        .arg(&bundle);
    process::run_ok(cmd);
    let mounted = env.mount(image);
    tree::assert_same(&bundle.join("rootfs"), &mounted);
    env.umount(image, &mounted);
}

/// Item 4.
fn runs(env: &TestEnv, example: &Example) {
    let run = env
        .builder(&["run", "--rm", &example.image_name()])
        .success();
    assert_eq!(
        run.stdout, example.output,
        "output of example {}:\n{run}",
        example.name
    );
    assert_eq!(env.mounts(), Vec::<PathBuf>::new(), "mounts left by run");
}

examples::example_tests!(accepted);

// ------------------------------------------------------------------ the CLI contract

/// Without `-q`: `[n/m] INSTRUCTION` lines on stderr, the image ID alone on
/// stdout's last line; built again, the same ID with the steps CACHED.
#[test]
fn steps_on_stderr_and_the_id_last_on_stdout() {
    let env = examples::env_with_busybox();
    let example = examples::get("hello");
    let name = example.image_name();
    let context = example.context();
    let args = ["build", "-t", &name, context.to_str().unwrap()];
    let run = env.builder(&args).success();
    let id = run.stdout.lines().last().unwrap_or_default().to_string();
    let inspect = env.builder(&["inspect", &name]).success().json();
    assert_eq!(
        inspect["id"], id,
        "last stdout line is the image ID:\n{run}"
    );
    for step in [
        "[1/6] FROM ${BASE}",
        "[2/6] ENV GREETING=\"hello from builder\"",
        "[4/6] COPY greeting.txt ./",
        "[6/6] CMD [\"cat\", \"/app/greeting.txt\"]",
    ] {
        assert!(
            run.stderr.lines().any(|l| l.starts_with(step)),
            "no step line {step:?}:\n{run}"
        );
    }
    assert!(!run.stderr.contains("CACHED"), "first build:\n{run}");

    let again = env.builder(&args).success();
    assert!(again.stderr.contains("CACHED"), "rebuild:\n{again}");
    let inspect = env.builder(&["inspect", &name]).success().json();
    assert_eq!(
        inspect["id"],
        again.stdout.lines().last().unwrap_or_default(),
        "{again}"
    );
    // A fully cached rebuild is the same image, as with `buildah bud
    // --layers` and BuildKit.
    assert_eq!(
        again.stdout.lines().last().unwrap_or_default(),
        id,
        "{again}"
    );
}

/// A RUN exiting 3 fails the build with exit status 1; the message names the
/// step, the exit code and the last lines of its output; nothing is stored
/// under the name and nothing is left mounted.
#[test]
fn a_failing_run_exits_1_naming_the_step() {
    let env = examples::env_with_busybox();
    let context = env.scratch("failing");
    std::fs::write(
        context.join("Containerfile"),
        "FROM busybox\nRUN echo first step\nRUN echo last words && exit 3\n",
    )
    .unwrap();
    let run = env.builder(&[
        "build",
        "-q",
        "-t",
        "localhost/failing:latest",
        context.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    for needle in [
        "[3/3] RUN echo last words && exit 3",
        "exit code 3",
        "last words",
    ] {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{run}"
        );
    }
    env.builder(&["inspect", "localhost/failing:latest"])
        .failure();
    assert_eq!(env.mounts(), Vec::<PathBuf>::new(), "mounts left behind");
    env.assert_check_clean();
}

/// `--timestamp` and SOURCE_DATE_EPOCH: two stores building an example with
/// RUN layers, over a second apart, make the same image, created at that
/// time.
#[test]
fn timestamp_makes_builds_reproducible() {
    let example = examples::get("whiteouts");
    let a = examples::env_with_busybox();
    let id_a = examples::build_with(&a, example, &["--timestamp", "1700000000"], &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let b = examples::env_with_busybox();
    let id_b = examples::build_with(&b, example, &[], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_eq!(id_a, id_b, "the two builds differ");
    let inspect = b
        .builder(&["inspect", &example.image_name()])
        .success()
        .json();
    assert_eq!(inspect["config"]["created"], "2023-11-14T22:13:20Z");
}

/// A layer whose tar is over a megabyte is written as several gzip members
/// (one per 1 MiB piece, see `layer::compression`). Built again with
/// another `--compression-level`, the cached step's layer is re-encoded:
/// other bytes, the same tar (the RUN does not run again). Go's
/// readers must take the members as one stream: skopeo copies the image
/// (verifying digests), umoci unpacks it to the tree builder mounts, and
/// system `gzip -t` accepts the blob.
#[test]
fn multi_member_gzip_layers_are_read_by_skopeo_umoci_and_gzip() {
    let env = examples::env_with_busybox();
    let context = env.scratch("context");
    std::fs::write(
        context.join("Containerfile"),
        "FROM busybox\n\
         RUN seq 1 400000 > /numbers && cat /bin/busybox /bin/busybox /bin/busybox > /three\n",
    )
    .unwrap();
    let context = context.to_str().unwrap();
    let mut blobs = Vec::new();
    for (image, level) in [
        ("localhost/test/big:default", None),
        ("localhost/test/big:level-1", Some("1")),
    ] {
        let mut args = vec!["build", "-q", "-t", image];
        if let Some(level) = level {
            args.extend(["--compression-level", level]);
        }
        args.push(context);
        env.builder(&args).success();
        let inspect = env.builder(&["inspect", image]).success().json();
        let layer = inspect["manifest"]["layers"][1].clone();
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let digest = layer["digest"].as_str().unwrap().to_string();
        let blob = env
            .root
            .join("oci/blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap());
        let bytes = std::fs::read(&blob).unwrap();
        let members = bytes
            .windows(4)
            .filter(|w| w == &[0x1f, 0x8b, 8, 0])
            .count();
        assert!(
            members >= 3,
            "{image}: expected several gzip members, saw {members} magics"
        );
        let mut gzip = Command::new("gzip");
        gzip.arg("-t").arg(&blob);
        process::run_ok(gzip);
        blobs.push((digest, inspect["config"]["rootfs"]["diff_ids"][1].clone()));

        validates(&env);
        let copy = skopeo_copy(&env, image);
        unpack_equals_mount(&env, image, &copy);
    }
    assert_ne!(blobs[0].0, blobs[1].0, "another level gave the same blob");
    assert_eq!(blobs[0].1, blobs[1].1, "another level changed the tar");
    env.assert_check_clean();
}
