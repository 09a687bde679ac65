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

use std::path::PathBuf;
use std::process::Command;

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
    let layout = env.scratch("copy").join("oci");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"])
        .arg(format!("oci:{}:{image}", env.root.join("oci").display()))
        .arg(format!("oci:{}:x", layout.display()));
    process::run_ok(cmd);
    layout
}

/// Item 3.
fn unpack_equals_mount(env: &TestEnv, image: &str, layout: &std::path::Path) {
    let bundle = env.scratch("umoci").join("bundle");
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
