//! `Containerfile-examples/` as build test cases, and building one with
//! builder.
//!
//! [`ALL`] lists each build the tests make of the examples: the directory,
//! the arguments (the same for builder and buildah), and what the image
//! prints when run. One directory may be built more than once (a
//! `--target`). [`build`] builds an example with builder into a store that
//! has the busybox fixture as `busybox`, which is every example's base.

use std::path::{Path, PathBuf};

use super::{TestEnv, serve_fixture};

/// One build of one example.
#[derive(Debug)]
pub struct Example {
    /// Names the build: the directory, plus the target when there is one.
    pub name: &'static str,
    /// The directory under `Containerfile-examples/` (the build context).
    pub dir: &'static str,
    /// Extra `build` arguments, given to builder and to buildah alike.
    pub args: &'static [&'static str],
    /// The Containerfile (relative to the context) buildah builds instead
    /// of `Containerfile`: buildah 1.28 (Debian 12) predates heredocs.
    pub buildah_file: Option<&'static str>,
    /// What running the image with its own ENTRYPOINT/CMD prints on stdout.
    pub output: &'static str,
}

/// Every build of every example.
pub const ALL: &[Example] = &[
    Example {
        name: "hello",
        dir: "hello",
        args: &[],
        buildah_file: None,
        output: "a file from the build context\nhello from builder\n",
    },
    Example {
        name: "multi-stage",
        dir: "multi-stage",
        args: &[],
        buildah_file: None,
        output: "built in a separate stage\n",
    },
    Example {
        name: "multi-stage-target-test",
        dir: "multi-stage",
        args: &["--target", "test"],
        buildah_file: None,
        output: "built in a separate stage\n",
    },
    Example {
        name: "build-args",
        dir: "build-args",
        args: &["--build-arg", "FLAVOUR=spicy", "--build-arg", "VERSION=2.0"],
        buildah_file: None,
        output: "version=2.0 flavour=spicy mode=from-env app=v2.0\n\
                 FLAVOUR=spicy\n\
                 MODE=from-env\n\
                 VERSION=2.0\n",
    },
    Example {
        name: "user",
        dir: "user",
        args: &[],
        buildah_file: None,
        // Supplementary groups as Docker sets them (runc's GetExecUser):
        // the groups listing the user, not its primary group (buildah and
        // podman add that one too, so the example records no `id` output
        // in the image).
        output: "uid=1000(app) gid=1000(app) groups=50(staff)\n\
                 app\n\
                 hello from app\n",
    },
    Example {
        name: "dockerignore",
        dir: "dockerignore",
        args: &[],
        buildah_file: None,
        output: ".\n./.dockerignore\n./Containerfile\n./app.txt\n./docs\n./docs/keep.md\n\
                 ./src\n./src/one.txt\n./src/sub\n./src/sub/nested.txt\n./src/sub/notes.log\n",
    },
    Example {
        name: "heredocs",
        dir: "heredocs",
        args: &[],
        buildah_file: Some("buildah.Containerfile"),
        output: "NAME is heredoc\n\
                 a tab-stripped line fed to cat\n\
                 copied for heredoc\n\
                 made by a RUN heredoc for heredoc\n",
    },
    Example {
        name: "whiteouts",
        dir: "whiteouts",
        args: &[],
        buildah_file: None,
        output: ".\n./keep\n./keep/k\n./old\n./old/new\n./was-a-file\n\
                 /etc/motd is gone\n/bin/vi is gone\n",
    },
    Example {
        name: "metadata",
        dir: "metadata",
        args: &[],
        buildah_file: None,
        output: "entrypoint: default arguments\n",
    },
    Example {
        name: "add-archive",
        dir: "add-archive",
        args: &[],
        buildah_file: None,
        output: ".\n./archive\n./archive/link\n./archive/readme.txt\n./archive/sub\n\
                 ./archive/sub/private\n./plain.txt\n\
                 from the archive\ncopied, not extracted\n",
    },
];

/// Defines, in the module that invokes it, one `#[test]` per build in
/// [`ALL`] calling `$check(name)`, and a test that the list covers the table
/// (a build added to [`ALL`] without a test here fails it).
macro_rules! example_tests {
    ($check:path) => {
        $crate::support::examples::example_tests!(@each $check;
            hello => "hello",
            multi_stage => "multi-stage",
            multi_stage_target_test => "multi-stage-target-test",
            build_args => "build-args",
            user => "user",
            dockerignore => "dockerignore",
            heredocs => "heredocs",
            whiteouts => "whiteouts",
            metadata => "metadata",
            add_archive => "add-archive",
        );
    };
    (@each $check:path; $($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $check($name);
            }
        )*

        #[test]
        fn every_example_build_has_a_test() {
            let tested: &[&str] = &[$($name),*];
            for example in $crate::support::examples::ALL {
                assert!(
                    tested.contains(&example.name),
                    "no test of {} builds {}",
                    module_path!(),
                    example.name
                );
            }
        }
    };
}
pub(crate) use example_tests;

/// The example build called `name`.
pub fn get(name: &str) -> &'static Example {
    ALL.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no example build called `{name}`"))
}

/// `Containerfile-examples/` in this checkout.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("Containerfile-examples")
}

impl Example {
    /// The build context.
    pub fn context(&self) -> PathBuf {
        examples_dir().join(self.dir)
    }

    /// The name the tests give the built image (already normalised, so it
    /// is also the ref name in the store's OCI layout).
    pub fn image_name(&self) -> String {
        format!("localhost/examples/{}:latest", self.name)
    }
}

/// A fresh env whose store has the busybox fixture, pulled from the shared
/// registry and tagged `busybox` (as the examples' `FROM busybox` needs).
pub fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    let (reference, _) = serve_fixture("busybox");
    env.pull_plain(&reference, &[]);
    env.builder(&["tag", &reference, "busybox"]).success();
    env
}

/// `builder build -q -t NAME ARGS… CONTEXT` in `env`. Asserts success, that
/// `-q` printed only the image ID (`sha256:<64 hex>`, nothing on stderr),
/// that the ID is what `inspect` reports for the name, and that the build
/// left no mount behind. Returns the image ID.
#[track_caller]
pub fn build(env: &TestEnv, example: &Example) -> String {
    build_with(env, example, &[], &[])
}

/// [`build`] with `extra` arguments (before the example's own) and
/// environment variables `vars`.
#[track_caller]
pub fn build_with(
    env: &TestEnv,
    example: &Example,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> String {
    let name = example.image_name();
    let context = example.context();
    let mut args = vec!["build", "-q", "-t", &name];
    args.extend_from_slice(extra);
    args.extend_from_slice(example.args);
    let context = context.to_str().unwrap();
    args.push(context);
    let mut cmd = env.command(&args);
    cmd.envs(vars.iter().copied());
    let run = env.run_command(cmd).success();
    assert!(run.stderr.is_empty(), "`build -q` wrote to stderr:\n{run}");
    let id = run.out();
    assert!(
        id.strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
        "`build -q` must print only the image ID:\n{run}"
    );
    let inspect = env.builder(&["inspect", &name]).success().json();
    assert_eq!(inspect["id"], id, "image ID of {name}: {inspect:#}");
    assert_eq!(
        env.mounts(),
        Vec::<PathBuf>::new(),
        "mounts left by the build"
    );
    id.to_string()
}
