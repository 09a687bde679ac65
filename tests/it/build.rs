//! `builder build` end to end through the real CLI: RUN steps in real
//! containers, the busybox fixture (pulled from the shared registry and
//! tagged `busybox`) as the base image, and contexts each test writes into
//! its own scratch directory. Every successful build is followed by a
//! clean `builder check`.
//!
//! Build issue acceptance items and engine features, by test:
//! - the step cache: hits print CACHED and start no container, a changed
//!   COPY source or `--build-arg` misses from that step on, mtimes alone
//!   never miss, `--explain-cache` names the changed file or ARG,
//!   `--no-cache`, `--no-cache-filter` (`cache_hits_and_misses`,
//!   `no_cache_filter_reruns_only_that_stage`,
//!   `a_rebuild_from_cache_gives_the_same_image`,
//!   `compression_applies_to_cached_steps_too`);
//! - reproducible builds: SOURCE_DATE_EPOCH or `--timestamp` in fresh
//!   stores give one image ID and manifest digest, layer mtimes clamped
//!   (`same_epoch_gives_the_same_image_in_fresh_stores`), also in a store
//!   whose cache holds a build without the epoch
//!   (`epoch_build_in_a_warm_store_matches_a_fresh_store`);
//! - failures commit nothing and leave no container, mount or cgroup
//!   (`failing_run_names_the_step_and_commits_nothing`,
//!   `oom_in_run_names_the_memory_limit`, `ctrl_c_stops_the_build_with_130`),
//!   and what `kill -9` of builder leaves the next command removes
//!   (`kill_9_mid_run_is_cleaned_up_by_the_next_command`);
//! - errors located at a Containerfile line (`errors_name_the_line_and_the_culprit`);
//! - what a RUN layer holds: whiteouts, an opaque directory, never the
//!   files and mount points the runtime made
//!   (`run_layers_hold_whiteouts_and_nothing_of_the_runtime`);
//! - output options (`docker_format_names_the_docker_manifest`,
//!   `zstd_layers_run`, `containerfile_from_stdin_or_outside_iidfile_quiet`);
//! - ONBUILD (`onbuild_triggers_run_in_the_child_build`);
//! - prune and check of the cache (`prune_keeps_the_build_cache_until_all`,
//!   `check_reports_a_cache_record_whose_layer_is_gone`);
//! - multi-stage builds (`target_builds_only_the_stages_it_needs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::run::{cgroups_of, processes_with};
use crate::support::{Run, TestEnv, process, serve_fixture};

/// The SOURCE_DATE_EPOCH of the reproducibility test.
const EPOCH: i64 = 1_700_000_000;
/// [`EPOCH`] as `TZ=UTC tar --full-time -tv` prints it.
const EPOCH_TAR: &str = "2023-11-14 22:13:20";
/// [`EPOCH`] as RFC 3339.
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";

// ------------------------------------------------------------ helpers

/// A fresh store with the busybox fixture pulled from the shared registry
/// and tagged `busybox` (so `FROM busybox` never goes to the network).
fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    let (reference, _) = serve_fixture("busybox");
    env.pull_plain(&reference, &[]);
    env.builder(&["tag", &reference, "busybox"]).success();
    env
}

/// Writes `files` (path relative to the context, content) into the
/// env's scratch directory `name` and returns it.
fn context(env: &TestEnv, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.scratch(name);
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }
    dir
}

/// `builder build ARGS… CONTEXT`, without any inherited SOURCE_DATE_EPOCH.
fn build_command(env: &TestEnv, ctx: &Path, args: &[&str]) -> Command {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let mut cmd = env.command(&full);
    cmd.arg(ctx).env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs `cmd` (stdin from /dev/null) to completion.
fn finish(cmd: Command) -> Run {
    let cmdline = process::describe(&cmd);
    let out = process::output(cmd).unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    Run {
        cmdline,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build(env: &TestEnv, ctx: &Path, args: &[&str]) -> Run {
    finish(build_command(env, ctx, args))
}

/// A successful build: its run, the image ID it printed, its step lines.
struct Built {
    run: Run,
    id: String,
    steps: Steps,
}

#[track_caller]
fn build_ok(env: &TestEnv, ctx: &Path, args: &[&str]) -> Built {
    built(env, build(env, ctx, args))
}

/// Checks a build's success, its stdout, that it left no container or
/// mount behind, then `builder check`.
#[track_caller]
fn built(env: &TestEnv, run: Run) -> Built {
    let run = run.success();
    let id = printed_id(&run);
    assert_eq!(
        dir_entries(&env.root.join("containers")),
        BTreeSet::new(),
        "the build left container directories:\n{run}"
    );
    assert_eq!(
        env.mounts(),
        Vec::<PathBuf>::new(),
        "the build left mounts:\n{run}"
    );
    env.assert_check_clean();
    let steps = Steps::parse(&run.stderr);
    Built { run, id, steps }
}

/// The image ID on stdout's last line.
#[track_caller]
fn printed_id(run: &Run) -> String {
    let last = run.stdout.lines().last().unwrap_or("");
    assert!(
        is_image_id(last),
        "stdout's last line is not an image ID:\n{run}"
    );
    last.to_string()
}

fn is_image_id(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Whether `text` has a line that is exactly `line` (RUN output, as
/// opposed to the step line that shows the command).
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// What the step lines of a build said.
#[derive(Debug, Default)]
struct Steps {
    /// `(id, instruction)` of every step started, in order; ids keep their
    /// brackets: `[2/5]`, `[base 2/3]`.
    started: Vec<(String, String)>,
    cached: BTreeSet<String>,
    /// `--explain-cache` reasons by step id.
    misses: BTreeMap<String, String>,
    /// From the `Built …` line: steps run and steps from the cache.
    run: Option<usize>,
    from_cache: Option<usize>,
}

impl Steps {
    fn parse(stderr: &str) -> Steps {
        let mut steps = Steps::default();
        for line in stderr.lines() {
            if let Some(rest) = line.strip_prefix('[')
                && let Some((id, text)) = rest.split_once("] ")
            {
                let id = format!("[{id}]");
                if text == "CACHED" {
                    steps.cached.insert(id);
                } else if let Some(reason) = text.strip_prefix("cache miss: ") {
                    steps.misses.insert(id, reason.to_string());
                } else if !text.starts_with("DONE ") {
                    steps.started.push((id, text.to_string()));
                }
            } else if line.starts_with("Built ")
                && let Some((_, tail)) = line.rsplit_once('(')
                && let Some((run, rest)) = tail.split_once(" steps run, ")
                && let Some(cached) = rest.strip_suffix(" from cache)")
            {
                steps.run = run.parse().ok();
                steps.from_cache = cached.parse().ok();
            }
        }
        steps
    }

    /// The id of the one step whose instruction starts with `prefix`.
    #[track_caller]
    fn id(&self, prefix: &str) -> String {
        let found: Vec<&String> = self
            .started
            .iter()
            .filter(|(_, text)| text.starts_with(prefix))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one step starting with {prefix:?}: {self:#?}"
        );
        found[0].clone()
    }

    /// Ids of the steps that make a layer.
    fn layer_steps(&self) -> BTreeSet<String> {
        self.started
            .iter()
            .filter(|(_, text)| {
                let text = text.strip_prefix("ONBUILD ").unwrap_or(text);
                ["RUN ", "COPY ", "ADD "]
                    .iter()
                    .any(|k| text.starts_with(k))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// `(steps run, steps from cache)` from the summary line.
    fn counts(&self) -> (usize, usize) {
        (
            self.run.expect("no `Built …` summary line"),
            self.from_cache.expect("no `Built …` summary line"),
        )
    }
}

fn ids(list: &[&String]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `builder inspect IMAGE` as JSON.
#[track_caller]
fn inspect(env: &TestEnv, image: &str) -> Value {
    env.builder(&["inspect", image]).success().json()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The config's `rootfs.diff_ids`.
#[track_caller]
fn diff_ids(env: &TestEnv, image: &str) -> Vec<String> {
    strings(&inspect(env, image)["config"]["rootfs"]["diff_ids"])
}

/// The manifest's layers: `(media type, digest)`.
#[track_caller]
fn manifest_layers(env: &TestEnv, image: &str) -> Vec<(String, String)> {
    inspect(env, image)["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blob_path(env: &TestEnv, digest: &str) -> PathBuf {
    env.root
        .join("oci/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// `builder run --rm IMAGE`'s stdout.
#[track_caller]
fn run_image(env: &TestEnv, image: &str) -> String {
    env.builder(&["run", "--rm", image]).success().stdout
}

/// One entry of `tar -tv`.
#[derive(Debug, Clone)]
struct TarEntry {
    /// `-rw-r--r--`, `drwxr-xr-x`, …
    mode: String,
    /// Without `./` and without a trailing `/`.
    path: String,
    /// `YYYY-MM-DD HH:MM:SS` in UTC.
    mtime: String,
}

/// Lists a gzip layer blob with GNU tar.
fn list_layer(blob: &Path) -> Vec<TarEntry> {
    let mut cmd = Command::new("tar");
    cmd.env("TZ", "UTC")
        .args(["--full-time", "--numeric-owner", "-tvzf"])
        .arg(blob);
    process::run_ok(cmd)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected tar line {line:?}");
            let name = fields[5..].join(" ");
            let name = name
                .split(" -> ")
                .next()
                .unwrap()
                .split(" link to ")
                .next()
                .unwrap();
            TarEntry {
                mode: fields[0].to_string(),
                path: name
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string(),
                mtime: format!("{} {}", fields[3], fields[4]),
            }
        })
        .collect()
}

fn paths(entries: &[TarEntry]) -> BTreeSet<String> {
    entries.iter().map(|e| e.path.clone()).collect()
}

/// Names in a directory (empty if it does not exist).
fn dir_entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The store's blobs and unpacked layers, by name.
fn store_objects(env: &TestEnv) -> (BTreeSet<String>, BTreeSet<String>) {
    (
        dir_entries(&env.root.join("oci/blobs/sha256")),
        dir_entries(&env.root.join("layers")),
    )
}

/// No container directory, temp entry or mount in the store, and no
/// cgroup of the container whose hostname (ID prefix) a RUN printed.
#[track_caller]
fn assert_nothing_left(env: &TestEnv, container: &str) {
    assert_eq!(
        dir_entries(&env.root.join("containers")),
        BTreeSet::new(),
        "container directories left behind"
    );
    assert_eq!(env.mounts(), Vec::<PathBuf>::new(), "mounts left behind");
    assert_eq!(
        dir_entries(&env.root.join("tmp")),
        BTreeSet::new(),
        "temp entries left behind"
    );
    assert!(
        container.len() >= 12,
        "container ID prefix {container:?} too short to identify a cgroup"
    );
    assert_eq!(
        cgroups_of(container),
        Vec::<PathBuf>::new(),
        "cgroups of the RUN's container left behind"
    );
}

/// The container ID (hostname) a RUN printed as `cid=<hostname>`.
#[track_caller]
fn printed_container(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("cid="))
        .unwrap_or_else(|| panic!("no `cid=` line in:\n{text}"))
        .to_string()
}

/// The `error: …` message and what follows it.
fn error_text(run: &Run) -> &str {
    match run.stderr.find("error: ") {
        Some(i) => &run.stderr[i..],
        None => "",
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

// ------------------------------------------------------------ the cache

const CACHE_FILE: &str = "\
FROM busybox
ARG X=a
COPY a.txt /a.txt
RUN echo \"first-run-$X\" && cat /a.txt > /copy-of-a
COPY b.txt /b.txt
RUN echo second-run && cat /b.txt > /copy-of-b
CMD [\"cat\", \"/copy-of-a\", \"/copy-of-b\"]
";

#[test]
fn cache_hits_and_misses() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Containerfile", CACHE_FILE),
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
        ],
    );
    let first = build_ok(&env, &ctx, &["-t", "cached"]);
    let s = &first.steps;
    let copy_a = s.id("COPY a.txt");
    let run_first = s.id("RUN echo \"first-run");
    let copy_b = s.id("COPY b.txt");
    let run_second = s.id("RUN echo second-run");
    let all = ids(&[&copy_a, &run_first, &copy_b, &run_second]);
    assert_eq!(s.layer_steps(), all, "{}", first.run);
    assert!(s.cached.is_empty(), "a first build hit:\n{}", first.run);
    assert_eq!(s.counts(), (4, 0), "{}", first.run);
    assert!(has_line(&first.run.stderr, "first-run-a"), "{}", first.run);
    assert!(has_line(&first.run.stderr, "second-run"), "{}", first.run);
    let layers = diff_ids(&env, "cached");
    assert_eq!(layers.len(), 5, "busybox's layer and four more");
    assert_eq!(run_image(&env, "cached"), "alpha\nbeta\n");

    // The same build again: every layer step CACHED, no RUN printed its
    // output (so none ran), the same layers.
    let second = build_ok(&env, &ctx, &["-t", "cached"]);
    assert_eq!(second.steps.cached, all, "{}", second.run);
    assert_eq!(second.steps.counts(), (0, 4), "{}", second.run);
    assert!(second.run.stderr.contains("0 steps run"), "{}", second.run);
    assert!(
        !has_line(&second.run.stderr, "first-run-a") && !has_line(&second.run.stderr, "second-run"),
        "a cached RUN ran:\n{}",
        second.run
    );
    assert_eq!(diff_ids(&env, "cached"), layers);

    // New mtimes, same bytes: still all hits.
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
    set_mtime(&ctx.join("a.txt"), past);
    set_mtime(&ctx.join("b.txt"), past);
    let touched = build_ok(&env, &ctx, &["-t", "cached"]);
    assert_eq!(touched.steps.cached, all, "{}", touched.run);
    assert_eq!(diff_ids(&env, "cached"), layers);

    // A changed COPY source: the steps before it hit, it and the RUN after
    // it run again; --explain-cache names the file.
    fs::write(ctx.join("b.txt"), "BETA\n").unwrap();
    let changed = build_ok(&env, &ctx, &["-t", "cached", "--explain-cache"]);
    let c = &changed.steps;
    assert_eq!(c.cached, ids(&[&copy_a, &run_first]), "{}", changed.run);
    assert_eq!(c.counts(), (2, 2), "{}", changed.run);
    let why = c.misses.get(&copy_b).map(String::as_str).unwrap_or("");
    assert!(
        why.contains("file `b.txt` changed"),
        "--explain-cache does not name b.txt for {copy_b}:\n{}",
        changed.run
    );
    assert!(c.misses.contains_key(&run_second), "{}", changed.run);
    assert!(
        has_line(&changed.run.stderr, "second-run"),
        "{}",
        changed.run
    );
    assert!(
        !has_line(&changed.run.stderr, "first-run-a"),
        "{}",
        changed.run
    );
    let now = diff_ids(&env, "cached");
    assert_eq!(now[..3], layers[..3], "layers before the change differ");
    assert_ne!(
        now[3], layers[3],
        "the COPY of a changed file gave the same layer"
    );
    assert_ne!(now[4], layers[4], "the RUN after it gave the same layer");
    assert_eq!(run_image(&env, "cached"), "alpha\nBETA\n");

    // A changed ARG misses from the RUN that sees it; the COPY before hits.
    let arg = build_ok(
        &env,
        &ctx,
        &["-t", "cached", "--build-arg", "X=b", "--explain-cache"],
    );
    let a = &arg.steps;
    assert_eq!(a.cached, ids(&[&copy_a]), "{}", arg.run);
    let why = a.misses.get(&run_first).map(String::as_str).unwrap_or("");
    assert!(
        why.contains("ARG X changed: `a` → `b`"),
        "--explain-cache does not name the ARG for {run_first}:\n{}",
        arg.run
    );
    assert!(has_line(&arg.run.stderr, "first-run-b"), "{}", arg.run);
    assert_eq!(diff_ids(&env, "cached")[..2], layers[..2]);

    // --no-cache: everything runs (and is cached again).
    let no_cache = build_ok(&env, &ctx, &["-t", "cached", "--no-cache"]);
    assert!(no_cache.steps.cached.is_empty(), "{}", no_cache.run);
    assert_eq!(no_cache.steps.counts(), (4, 0), "{}", no_cache.run);
    assert!(
        has_line(&no_cache.run.stderr, "first-run-a"),
        "{}",
        no_cache.run
    );
    assert!(
        has_line(&no_cache.run.stderr, "second-run"),
        "{}",
        no_cache.run
    );
    assert_eq!(run_image(&env, "cached"), "alpha\nBETA\n");
}

#[test]
fn no_cache_filter_reruns_only_that_stage() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox AS base\nCOPY a.txt /a.txt\nRUN echo base-ran > /base\n\
                 FROM base AS final\nCOPY b.txt /b.txt\nRUN echo final-ran > /final\n\
                 CMD [\"cat\", \"/base\", \"/final\"]\n",
            ),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let first = build_ok(&env, &ctx, &["-t", "stages"]);
    let s = &first.steps;
    let base = ids(&[&s.id("COPY a.txt"), &s.id("RUN echo base-ran")]);
    let fin = ids(&[&s.id("COPY b.txt"), &s.id("RUN echo final-ran")]);
    assert!(
        base.iter().all(|id| id.starts_with("[base "))
            && fin.iter().all(|id| id.starts_with("[final ")),
        "step ids do not name their stages:\n{}",
        first.run
    );

    for filter in ["final", "1"] {
        let b = build_ok(&env, &ctx, &["-t", "stages", "--no-cache-filter", filter]);
        assert_eq!(
            b.steps.cached, base,
            "--no-cache-filter {filter}:\n{}",
            b.run
        );
        assert_eq!(b.steps.counts(), (2, 2), "{}", b.run);
    }
    let b = build_ok(&env, &ctx, &["-t", "stages", "--no-cache-filter", "base"]);
    assert!(
        b.steps.cached.is_disjoint(&base),
        "--no-cache-filter base used the cache for a base step:\n{}",
        b.run
    );
    assert_eq!(run_image(&env, "stages"), "base-ran\nfinal-ran\n");
}

// A hit reuses the layer and the history entry's time, and metadata steps
// and the config take the newest layer's time, so a rebuild from cache
// gives the same image ID (as BuildKit and `buildah bud --layers` do).
#[test]
fn a_rebuild_from_cache_gives_the_same_image() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            ("Containerfile", CACHE_FILE),
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
        ],
    );
    let first = build_ok(&env, &ctx, &["-t", "again"]);
    let second = build_ok(&env, &ctx, &["-t", "again"]);
    assert_eq!(second.steps.counts(), (0, 4), "{}", second.run);
    assert_eq!(
        second.id, first.id,
        "a build entirely from cache gave another image ID:\n{}\n{}",
        first.run, second.run
    );
}

// ------------------------------------------------------------ reproducibility

#[test]
fn same_epoch_gives_the_same_image_in_fresh_stores() {
    let containerfile = "\
FROM busybox
COPY app /app
RUN mkdir /out && sort /app/list > /out/sorted && touch /out/stamp
ENV MODE=release
LABEL org.example.version=1
WORKDIR /out
CMD [\"cat\", \"/out/sorted\"]
";
    let files = [("Containerfile", containerfile), ("app/list", "b\nc\na\n")];
    let epoch = EPOCH.to_string();
    // Two stores with SOURCE_DATE_EPOCH, one with --timestamp; contexts at
    // different paths, their files with different mtimes.
    let mut results = Vec::new();
    let mut envs = Vec::new();
    for (i, how) in ["env", "env", "flag"].into_iter().enumerate() {
        let env = env_with_busybox();
        let ctx = context(&env, &format!("context-{i}"), &files);
        if i == 1 {
            let future = SystemTime::now() + Duration::from_secs(86_400 * 400);
            set_mtime(&ctx.join("app/list"), future);
        }
        let cmd = match how {
            "env" => {
                let mut cmd = build_command(&env, &ctx, &["-t", "repro"]);
                cmd.env("SOURCE_DATE_EPOCH", &epoch);
                cmd
            }
            _ => build_command(&env, &ctx, &["-t", "repro", "--timestamp", &epoch]),
        };
        let b = built(&env, finish(cmd));
        let info = inspect(&env, "repro");
        assert_eq!(info["id"].as_str(), Some(b.id.as_str()));
        results.push((
            how,
            info["id"].as_str().unwrap().to_string(),
            info["digest"].as_str().unwrap().to_string(),
        ));
        envs.push(env);
        if i == 0 {
            // Sleep past a second so "now" differs between the builds.
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    for r in &results[1..] {
        assert_eq!(
            (&r.1, &r.2),
            (&results[0].1, &results[0].2),
            "(image ID, manifest digest) differ between builds: {results:?}"
        );
    }

    let env = &envs[0];
    let info = inspect(env, "repro");
    assert_eq!(info["config"]["created"].as_str(), Some(EPOCH_RFC3339));
    let base = manifest_layers(env, "busybox");
    let layers = manifest_layers(env, "repro");
    assert_eq!(layers[..base.len()], base[..]);
    let made = &layers[base.len()..];
    assert_eq!(made.len(), 2, "COPY and RUN layers");
    let mut stamped = false;
    for (_, digest) in made {
        let entries = list_layer(&blob_path(env, digest));
        assert!(!entries.is_empty(), "layer {digest} is empty");
        for e in &entries {
            assert!(
                e.mtime.as_str() <= EPOCH_TAR,
                "{} in layer {digest} has mtime {} after the epoch {EPOCH_TAR}",
                e.path,
                e.mtime
            );
            stamped |= e.path == "out/stamp" && e.mtime == EPOCH_TAR;
        }
    }
    assert!(stamped, "out/stamp (made now) is not clamped to the epoch");
    assert_eq!(run_image(env, "repro"), "a\nb\nc\n");
}

// The timestamp is part of a cache record's name: a build with an epoch
// never reuses a layer made without it (its mtimes are not clamped), so a
// warm store gives the same image as a fresh one.
#[test]
fn epoch_build_in_a_warm_store_matches_a_fresh_store() {
    let containerfile = "FROM busybox\nCOPY list /list\nRUN sort /list > /sorted && touch /stamp\n";
    let files = [("Containerfile", containerfile), ("list", "b\na\n")];
    let epoch = EPOCH.to_string();

    let fresh = env_with_busybox();
    let ctx = context(&fresh, "ctx", &files);
    build_ok(&fresh, &ctx, &["-t", "r", "--timestamp", &epoch]);
    let want = inspect(&fresh, "r");

    let warm = env_with_busybox();
    let ctx = context(&warm, "ctx", &files);
    build_ok(&warm, &ctx, &["-t", "r"]);
    build_ok(&warm, &ctx, &["-t", "r", "--timestamp", &epoch]);
    let got = inspect(&warm, "r");
    let base = manifest_layers(&warm, "busybox").len();
    for (_, digest) in &manifest_layers(&warm, "r")[base..] {
        for e in list_layer(&blob_path(&warm, digest)) {
            assert!(
                e.mtime.as_str() <= EPOCH_TAR,
                "{} in layer {digest} has mtime {} after the epoch {EPOCH_TAR}",
                e.path,
                e.mtime
            );
        }
    }
    assert_eq!(
        (&got["id"], &got["digest"]),
        (&want["id"], &want["digest"]),
        "--timestamp in a store with a cache of a build without it"
    );
}

// ------------------------------------------------------------ failures

#[test]
fn failing_run_names_the_step_and_commits_nothing() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            "FROM busybox\n\
             RUN echo \"cid=$(hostname)\"; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo out-line-$i; done; echo to-stderr >&2; exit 3\n\
             RUN echo never-reached\n",
        )],
    );
    let before = store_objects(&env);
    let run = build(&env, &ctx, &[]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    let error = error_text(&run);
    let location = format!("{}:2", ctx.join("Containerfile").display());
    for needle in [
        location.as_str(),
        "[2/3] RUN",
        "exit code 3",
        "| out-line-12",
        "| to-stderr",
    ] {
        assert!(error.contains(needle), "the error lacks {needle:?}:\n{run}");
    }
    assert!(!has_line(&run.stderr, "never-reached"), "{run}");
    assert_eq!(
        store_objects(&env),
        before,
        "the failed build committed something"
    );
    assert_nothing_left(&env, &printed_container(&run.stderr));
    env.assert_check_clean();
}

#[test]
fn oom_in_run_names_the_memory_limit() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            "FROM busybox\nRUN echo \"cid=$(hostname)\"; head -c 200m /dev/zero | tail\n",
        )],
    );
    let before = store_objects(&env);
    let run = build(&env, &ctx, &["--memory", "32m"]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    let error = error_text(&run);
    let location = format!("{}:2", ctx.join("Containerfile").display());
    for needle in [location.as_str(), "[2/2] RUN", "OOM", "32 MiB"] {
        assert!(error.contains(needle), "the error lacks {needle:?}:\n{run}");
    }
    assert_eq!(
        store_objects(&env),
        before,
        "the failed build committed something"
    );
    assert_nothing_left(&env, &printed_container(&run.stderr));
}

#[test]
fn ctrl_c_stops_the_build_with_130() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            "FROM busybox\nRUN echo \"cid=$(hostname)\"; echo sleeping-now; sleep 37\nRUN echo never-reached\n",
        )],
    );
    let before = store_objects(&env);
    let (mut child, rx, mut output) = spawn_until_sleeping(&env, &ctx);
    let container = printed_container(&output);
    let sent = Instant::now();
    let mut kill = Command::new("kill");
    kill.args(["-INT", &child.id().to_string()]);
    process::run_ok(kill);
    let status = process::wait_for(Duration::from_secs(10), || child.try_wait().unwrap());
    let Some(status) = status else {
        process::kill_and_wait(&mut child);
        panic!("builder build did not stop within 10 s of SIGINT:\n{output}");
    };
    let took = sent.elapsed();
    // The reader ends at EOF, now that builder has exited.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        output.push_str(&line);
        output.push('\n');
    }
    assert_eq!(status.code(), Some(130), "exit status {status}:\n{output}");
    assert!(
        took < Duration::from_secs(5),
        "SIGINT took {took:?} to stop the build"
    );
    assert!(output.contains("interrupted"), "{output}");
    assert!(!has_line(&output, "never-reached"), "{output}");
    assert_eq!(
        processes_with("sleep 37"),
        Vec::<u32>::new(),
        "the RUN's process survived"
    );
    assert_eq!(
        store_objects(&env),
        before,
        "the interrupted build committed something"
    );
    assert_nothing_left(&env, &container);
    env.assert_check_clean();
}

/// Starts `builder build CTX` and waits until its output has the line
/// `sleeping-now`; returns the child and the output so far.
fn spawn_until_sleeping(
    env: &TestEnv,
    ctx: &Path,
) -> (std::process::Child, mpsc::Receiver<String>, String) {
    let mut child = env.spawn(&["build", ctx.to_str().unwrap()]);
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_line(&output, "sleeping-now") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                output.push_str(&line);
                output.push('\n');
            }
            Err(_) => {
                process::kill_and_wait(&mut child);
                panic!("the RUN step never started; stderr so far:\n{output}");
            }
        }
    }
    (child, rx, output)
}

#[test]
fn kill_9_mid_run_is_cleaned_up_by_the_next_command() {
    use std::os::unix::process::ExitStatusExt;
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY data /copied\nRUN echo \"cid=$(hostname)\"; echo sleeping-now; sleep 38\n",
            ),
            ("data", "committed before the kill\n"),
        ],
    );
    let (mut child, _rx, output) = spawn_until_sleeping(&env, &ctx);
    let container = printed_container(&output);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    process::wait_for(Duration::from_secs(10), || {
        processes_with("sleep 38").is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("the RUN outlived builder: {:?}", processes_with("sleep 38")));

    // Any command cleans up what the killed build left.
    env.builder(&["images"]).success();
    assert_nothing_left(&env, &container);
    env.assert_check_clean();
    // The next build works, and the COPY committed before the kill is a hit.
    let other = env.scratch("other").join("Containerfile");
    fs::write(
        &other,
        "FROM busybox\nCOPY data /copied\nRUN echo after-the-kill\n",
    )
    .unwrap();
    let b = build_ok(&env, &ctx, &["-f", other.to_str().unwrap()]);
    assert_eq!(
        b.steps.cached,
        ids(&[&b.steps.id("COPY data")]),
        "{}",
        b.run
    );
    assert!(has_line(&b.run.stderr, "after-the-kill"), "{}", b.run);
}

#[test]
fn errors_name_the_line_and_the_culprit() {
    let env = env_with_busybox();
    // (what, Containerfile, extra args, what the error must say)
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "missing COPY source",
            "FROM busybox\nCOPY missing.txt /m\n",
            &[],
            &[":2", "`missing.txt`", "not found"],
        ),
        (
            "COPY source outside the context",
            "FROM busybox\nCOPY ../outside.txt /x\n",
            &[],
            &[":2", "`../outside.txt`", "outside the build context"],
        ),
        (
            "unknown --target",
            "FROM busybox AS one\nRUN true\nFROM busybox AS two\n",
            &["--target", "three"],
            &["`three`", "one, two"],
        ),
        (
            "RUN --mount",
            "FROM busybox\nRUN --mount=type=cache,target=/root/.cache echo hi\n",
            &[],
            &[":2", "--mount", "not supported"],
        ),
        (
            "base image missing with --pull=never",
            "FROM busybox\nRUN true\nFROM no-such-image:1\n",
            &["--pull=never"],
            &[":3", "`no-such-image:1`", "not in the store"],
        ),
        (
            "unterminated heredoc",
            "FROM busybox\nRUN <<EOF\necho hi\n",
            &[],
            &[":", "unterminated heredoc", "EOF", "line 2"],
        ),
        (
            "unknown instruction",
            "FROM busybox\nFROBNICATE x\n",
            &[],
            &[":2", "unknown instruction", "FROBNICATE"],
        ),
    ];
    for (i, (what, containerfile, args, needles)) in cases.iter().enumerate() {
        let ctx = context(
            &env,
            &format!("case-{i}/ctx"),
            &[("Containerfile", containerfile)],
        );
        // What `../outside.txt` would reach.
        fs::write(ctx.parent().unwrap().join("outside.txt"), "x\n").unwrap();
        let run = build(&env, &ctx, args);
        assert_eq!(run.status.code(), Some(1), "{what}:\n{run}");
        let error = error_text(&run);
        let file = ctx.join("Containerfile").display().to_string();
        for needle in *needles {
            let needle = match needle.strip_prefix(':') {
                Some(line) => format!("{file}:{line}"),
                None => needle.to_string(),
            };
            assert!(
                error.contains(&needle),
                "{what}: the error lacks {needle:?}:\n{run}"
            );
        }
    }
    env.assert_check_clean();
}

// ------------------------------------------------------------ RUN layers

#[test]
fn run_layers_hold_whiteouts_and_nothing_of_the_runtime() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            "FROM busybox\n\
             RUN echo motd > /etc/motd && mkdir -p /somedir/sub /optdir && echo 1 > /somedir/a && echo 2 > /somedir/sub/b && echo old > /optdir/old\n\
             RUN echo x > /f && rm /etc/motd && rm -rf /somedir/* && rm -rf /optdir && mkdir /optdir && echo new > /optdir/new\n\
             CMD [\"sh\", \"-c\", \"cat /f; ls /somedir; ls /optdir; test -e /etc/motd || echo motd-gone\"]\n",
        )],
    );
    build_ok(&env, &ctx, &["-t", "layers"]);
    let base = manifest_layers(&env, "busybox");
    let layers = manifest_layers(&env, "layers");
    assert_eq!(layers.len(), base.len() + 2);

    // What the runtime makes in a container: mount points and /etc files.
    // The RUNs touch none of them, so no RUN layer may hold one (busybox
    // has some: /dev, /proc, /sys, /etc/hostname; the runtime creates
    // /etc/hosts and /etc/resolv.conf).
    let runtime_made = [
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
        "proc",
        "sys",
        "dev",
    ];
    let is_runtime_made = |path: &str| {
        runtime_made
            .iter()
            .any(|m| path == *m || path.starts_with(&format!("{m}/")))
    };
    let mut base_paths = BTreeSet::new();
    for (_, digest) in &base {
        base_paths.extend(paths(&list_layer(&blob_path(&env, digest))));
    }
    for created in ["etc/hosts", "etc/resolv.conf"] {
        assert!(
            !base_paths.contains(created),
            "the busybox fixture has {created}: the test needs a base without it"
        );
    }

    let first = list_layer(&blob_path(&env, &layers[base.len()].1));
    let second = list_layer(&blob_path(&env, &layers[base.len() + 1].1));
    for (name, entries) in [("first", &first), ("second", &second)] {
        let leaked: Vec<&String> = entries
            .iter()
            .map(|e| &e.path)
            .filter(|p| is_runtime_made(p))
            .collect();
        assert!(
            leaked.is_empty(),
            "the {name} RUN layer holds what the runtime made: {leaked:?}\n{entries:#?}"
        );
    }
    let first = paths(&first);
    for p in ["etc/motd", "somedir/a", "somedir/sub/b", "optdir/old"] {
        assert!(first.contains(p), "first RUN layer lacks {p}: {first:?}");
    }
    let second_paths = paths(&second);
    for p in ["f", "etc/.wh.motd", "optdir/.wh..wh..opq", "optdir/new"] {
        assert!(
            second_paths.contains(p),
            "second RUN layer lacks {p}: {second_paths:?}"
        );
    }
    // `rm -rf /somedir/*` leaves /somedir empty: one whiteout per removed
    // entry, or the directory marked opaque.
    let somedir: BTreeSet<&str> = second_paths
        .iter()
        .filter_map(|p| p.strip_prefix("somedir/"))
        .collect();
    assert!(
        somedir == BTreeSet::from([".wh.a", ".wh.sub"])
            || somedir == BTreeSet::from([".wh..wh..opq"]),
        "somedir/ in the second RUN layer: {somedir:?}"
    );
    assert!(!second_paths.contains("optdir/old"), "{second_paths:?}");
    for e in &second {
        if e.path.rsplit('/').next().unwrap().starts_with(".wh.") {
            assert!(
                e.mode.starts_with('-'),
                "whiteout {} is not a regular file",
                e.path
            );
        }
    }
    assert_eq!(run_image(&env, "layers"), "x\nnew\nmotd-gone\n");
}

// ------------------------------------------------------------ output options

#[test]
fn docker_format_names_the_docker_manifest() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY hello /hello\nCMD [\"cat\", \"/hello\"]\n",
            ),
            ("hello", "hello docker\n"),
        ],
    );
    let b = build_ok(&env, &ctx, &["-t", "dockerish", "--format", "docker"]);
    let name = "docker.io/library/dockerish:latest";
    let index: Value =
        serde_json::from_slice(&fs::read(env.root.join("oci/index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("index.json does not name {name}: {index:#}"));
    let source = entry["annotations"]["dev.builder.source-manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} has no dev.builder.source-manifest: {entry:#}"));
    let bytes = fs::read(blob_path(&env, source)).unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        source,
        "the Docker manifest blob does not hash to its digest"
    );
    let docker: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        docker["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        docker["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(docker["config"]["digest"].as_str(), Some(b.id.as_str()));
    let layers = docker["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for l in layers {
        assert_eq!(
            l["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    let mut skopeo = Command::new("skopeo");
    skopeo
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:{name}", env.root.join("oci").display()));
    let raw: Value = serde_json::from_str(&process::run_ok(skopeo)).unwrap();
    assert_eq!(raw["config"]["digest"].as_str(), Some(b.id.as_str()));
    assert_eq!(run_image(&env, "dockerish"), "hello docker\n");
}

#[test]
fn zstd_layers_run() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY hello /hello\nRUN cat /hello > /again\nCMD [\"cat\", \"/again\"]\n",
            ),
            ("hello", "hello zstd\n"),
        ],
    );
    build_ok(&env, &ctx, &["-t", "zstd", "--compression", "zstd"]);
    let base = manifest_layers(&env, "busybox");
    let layers = manifest_layers(&env, "zstd");
    assert_eq!(layers.len(), base.len() + 2);
    for (media_type, digest) in &layers[base.len()..] {
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
        let magic = fs::read(blob_path(&env, digest)).unwrap();
        assert_eq!(
            magic[..4],
            [0x28, 0xb5, 0x2f, 0xfd],
            "layer {digest} is not a zstd frame"
        );
    }
    assert_eq!(run_image(&env, "zstd"), "hello zstd\n");
}

// A step cached in one compression is reused in another: its unpacked
// layer is diffed again into a blob of the asked compression (same DiffID),
// so `--compression zstd` after a gzip build, and `--format docker` after
// a zstd one, give the asked layers without rerunning anything.
#[test]
fn compression_applies_to_cached_steps_too() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY hello /hello\nRUN cat /hello > /again\nCMD [\"cat\", \"/again\"]\n",
            ),
            ("hello", "hello again\n"),
        ],
    );
    let base = manifest_layers(&env, "busybox").len();
    build_ok(&env, &ctx, &["-t", "gz"]);
    build_ok(&env, &ctx, &["-t", "zs", "--compression", "zstd"]);
    let zs = manifest_layers(&env, "zs");
    for (media_type, digest) in &zs[base..] {
        assert_eq!(
            media_type, "application/vnd.oci.image.layer.v1.tar+zstd",
            "--compression zstd after a gzip build: layer {digest}"
        );
    }
    assert_eq!(diff_ids(&env, "zs"), diff_ids(&env, "gz"));
    assert_eq!(run_image(&env, "zs"), "hello again\n");
    let docker = build_ok(&env, &ctx, &["-t", "dk", "--format", "docker"]);
    assert_eq!(inspect(&env, "dk")["id"].as_str(), Some(docker.id.as_str()));
    assert_eq!(run_image(&env, "dk"), "hello again\n");
}

#[test]
fn containerfile_from_stdin_or_outside_iidfile_quiet() {
    let env = env_with_busybox();
    let ctx = context(&env, "ctx", &[("data.txt", "from the context\n")]);
    let containerfile = "FROM busybox\nCOPY data.txt /data.txt\nCMD [\"cat\", \"/data.txt\"]\n";

    // -f - reads stdin.
    let run = env.builder_stdin(
        &["build", "-f", "-", "-t", "stdin", ctx.to_str().unwrap()],
        containerfile,
    );
    let stdin_id = built(&env, run).id;
    assert_eq!(run_image(&env, "stdin"), "from the context\n");

    // -f outside the context; --iidfile.
    let elsewhere = env.scratch("elsewhere").join("Build.file");
    fs::write(&elsewhere, containerfile).unwrap();
    let iidfile = env.scratch("out").join("iid");
    let b = build_ok(
        &env,
        &ctx,
        &[
            "-f",
            elsewhere.to_str().unwrap(),
            "-t",
            "outside",
            "--iidfile",
            iidfile.to_str().unwrap(),
        ],
    );
    assert_eq!(fs::read_to_string(&iidfile).unwrap().trim_end(), b.id);
    assert_eq!(inspect(&env, "outside")["id"].as_str(), Some(b.id.as_str()));
    assert_eq!(run_image(&env, "outside"), "from the context\n");
    // Both builds made the same layers (the COPY is cached across them).
    assert_eq!(diff_ids(&env, "outside"), diff_ids(&env, "stdin"));
    let _ = stdin_id;

    // -q: the ID alone on stdout, nothing on stderr.
    let quiet = build(
        &env,
        &ctx,
        &["-q", "-f", elsewhere.to_str().unwrap(), "-t", "quiet"],
    )
    .success();
    assert!(
        is_image_id(quiet.stdout.strip_suffix('\n').unwrap_or(""))
            && quiet.stdout.lines().count() == 1,
        "-q printed more than the ID:\n{quiet}"
    );
    assert_eq!(quiet.stderr, "", "-q wrote to stderr:\n{quiet}");
    assert_eq!(
        inspect(&env, "quiet")["id"].as_str(),
        Some(quiet.stdout.trim_end())
    );
    env.assert_check_clean();
}

// ------------------------------------------------------------ ONBUILD

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let env = env_with_busybox();
    let parent = context(
        &env,
        "parent",
        &[(
            "Containerfile",
            "FROM busybox\nONBUILD RUN echo triggered > /onbuild\n",
        )],
    );
    build_ok(&env, &parent, &["-t", "onbuild-parent"]);
    let config = inspect(&env, "onbuild-parent")["config"]["config"].clone();
    assert_eq!(
        strings(&config["OnBuild"]),
        vec!["RUN echo triggered > /onbuild"],
        "the parent's config: {config:#}"
    );
    // The trigger does not run in the image that declares it.
    assert_eq!(
        diff_ids(&env, "onbuild-parent"),
        diff_ids(&env, "busybox"),
        "ONBUILD made a layer in its own image"
    );

    let child = context(
        &env,
        "child",
        &[(
            "Containerfile",
            "FROM onbuild-parent\nCMD [\"cat\", \"/onbuild\"]\n",
        )],
    );
    let b = build_ok(&env, &child, &["-t", "onbuild-child"]);
    assert!(
        b.steps
            .started
            .iter()
            .any(|(_, t)| t.starts_with("ONBUILD RUN")),
        "no trigger step line:\n{}",
        b.run
    );
    assert_eq!(run_image(&env, "onbuild-child"), "triggered\n");
    let config = inspect(&env, "onbuild-child")["config"]["config"].clone();
    assert!(
        config.get("OnBuild").is_none_or(Value::is_null),
        "the child still carries OnBuild: {config:#}"
    );
}

// ------------------------------------------------------------ prune, check

#[test]
fn prune_keeps_the_build_cache_until_all() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY a.txt /a.txt\nRUN echo pruned-run && cp /a.txt /b.txt\nCMD [\"cat\", \"/b.txt\"]\n",
            ),
            ("a.txt", "kept\n"),
        ],
    );
    let first = build_ok(&env, &ctx, &["-t", "p"]);
    let layers = diff_ids(&env, "p");
    let all = first.steps.layer_steps();

    env.builder(&["rmi", "p"]).success();
    env.builder(&["prune"]).success();
    env.assert_check_clean();
    for d in &layers {
        assert!(
            env.root
                .join("layers")
                .join(d.strip_prefix("sha256:").unwrap())
                .is_dir(),
            "prune removed cached layer {d}"
        );
    }
    let again = build_ok(&env, &ctx, &["-t", "p"]);
    assert_eq!(again.steps.cached, all, "{}", again.run);
    assert!(!has_line(&again.run.stderr, "pruned-run"), "{}", again.run);
    assert_eq!(diff_ids(&env, "p"), layers);
    assert_eq!(run_image(&env, "p"), "kept\n");

    env.builder(&["rmi", "p"]).success();
    env.builder(&["prune", "--all"]).success();
    env.assert_check_clean();
    let made = &layers[1..];
    for d in made {
        assert!(
            !env.root
                .join("layers")
                .join(d.strip_prefix("sha256:").unwrap())
                .exists(),
            "prune --all kept layer {d}, which only the cache held"
        );
    }
    let rebuilt = build_ok(&env, &ctx, &["-t", "p"]);
    assert!(rebuilt.steps.cached.is_empty(), "{}", rebuilt.run);
    assert!(
        has_line(&rebuilt.run.stderr, "pruned-run"),
        "{}",
        rebuilt.run
    );
    assert_eq!(run_image(&env, "p"), "kept\n");
}

#[test]
fn check_reports_a_cache_record_whose_layer_is_gone() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            "FROM busybox\nRUN echo check-run | tee /c\nCMD [\"cat\", \"/c\"]\n",
        )],
    );
    build_ok(&env, &ctx, &["-t", "c"]);
    let layer = diff_ids(&env, "c").pop().unwrap();
    // Only the cache record refers to the layer now.
    env.builder(&["rmi", "c"]).success();
    env.assert_check_clean();
    let hex = layer.strip_prefix("sha256:").unwrap();
    fs::remove_dir_all(env.root.join("layers").join(hex)).unwrap();
    let run = env.builder(&["check"]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    let problem = run
        .stdout
        .lines()
        .find(|l| l.contains(hex))
        .unwrap_or_else(|| panic!("check does not name the layer {layer}:\n{run}"));
    assert!(problem.contains("cache record"), "{run}");
    let json = env.builder(&["check", "--json"]).json();
    assert!(
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.to_string().contains("cache record")),
        "check --json: {json:#}"
    );

    // The record no longer counts as a hit: the step runs again and the
    // store is whole after it.
    let b = build_ok(&env, &ctx, &["-t", "c"]);
    assert!(b.steps.cached.is_empty(), "{}", b.run);
    assert!(has_line(&b.run.stderr, "check-run"), "{}", b.run);
    assert_eq!(run_image(&env, "c"), "check-run\n");
}

// ------------------------------------------------------------ multi-stage

#[test]
fn target_builds_only_the_stages_it_needs() {
    let env = env_with_busybox();
    // An image to COPY --from by name.
    let helper = context(
        &env,
        "helper",
        &[(
            "Containerfile",
            "FROM busybox\nRUN echo from-the-helper-image > /helper.txt\n",
        )],
    );
    build_ok(&env, &helper, &["-t", "helper-image"]);

    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox AS unrelated\nRUN echo unrelated-ran\n\
                 FROM busybox AS compile\nCOPY src.txt /src.txt\nRUN sort /src.txt > /built\n\
                 FROM busybox AS final\nCOPY --from=compile /built /result\n\
                 COPY --from=helper-image /helper.txt /helper.txt\n\
                 CMD [\"cat\", \"/result\", \"/helper.txt\"]\n\
                 FROM final AS extra\nRUN echo extra-ran\n",
            ),
            ("src.txt", "2\n3\n1\n"),
        ],
    );
    let b = build_ok(&env, &ctx, &["--target", "final", "-t", "final"]);
    for unwanted in ["[unrelated ", "[extra "] {
        assert!(
            !b.run.stderr.lines().any(|l| l.starts_with(unwanted)),
            "--target final ran a step of a stage it does not need ({unwanted}):\n{}",
            b.run
        );
    }
    assert!(!has_line(&b.run.stderr, "unrelated-ran"), "{}", b.run);
    assert!(!has_line(&b.run.stderr, "extra-ran"), "{}", b.run);
    assert!(
        b.steps
            .started
            .iter()
            .any(|(id, _)| id.starts_with("[compile ")),
        "the stage final copies from was not built:\n{}",
        b.run
    );
    assert_eq!(run_image(&env, "final"), "1\n2\n3\nfrom-the-helper-image\n");

    // The default target is the last stage; `unrelated` is still not built.
    let b = build_ok(&env, &ctx, &["-t", "extra"]);
    assert!(
        !b.run.stderr.lines().any(|l| l.starts_with("[unrelated ")),
        "{}",
        b.run
    );
    assert!(has_line(&b.run.stderr, "extra-ran"), "{}", b.run);
    assert_eq!(run_image(&env, "extra"), "1\n2\n3\nfrom-the-helper-image\n");
}

/// A base image missing from the store is pulled with the build's pull
/// options (`--pull=missing` by default; `--tls-verify=false` for the plain
/// local registry), and `--pull=never` refuses to.
#[test]
fn a_missing_base_image_is_pulled_with_the_pull_options() {
    let env = TestEnv::new();
    let (reference, _) = serve_fixture("busybox");
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Containerfile",
            &format!(
                "FROM {reference}\nRUN echo pulled-and-built > /out\nCMD [\"cat\", \"/out\"]\n"
            ),
        )],
    );
    let never = build(&env, &ctx, &["-t", "p", "--pull=never"]).failure();
    assert!(never.stderr.contains("not in the store"), "{never}");
    build_ok(&env, &ctx, &["-t", "p", "--tls-verify=false"]);
    let names = env.builder(&["images", "--json"]).success().stdout;
    assert!(
        names.contains(&reference),
        "the base was not stored: {names}"
    );
    assert_eq!(run_image(&env, "p"), "pulled-and-built\n");
}

/// `--push` (and `--output type=registry`) pushes every `-t` name after the
/// build; skopeo reads what was pushed, and its digest is the one builder
/// prints.
#[test]
fn push_sends_every_name_to_its_registry() {
    let env = env_with_busybox();
    let registry = crate::support::registry::Registry::shared();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n",
            ),
            ("f", "pushed by build\n"),
        ],
    );
    let first = registry.reference("built/one:1");
    let second = registry.reference("built/two:2");
    let run = build_ok(
        &env,
        &ctx,
        &["-t", &first, "-t", &second, "--push", "--tls-verify=false"],
    );
    for name in [&first, &second] {
        assert!(
            run.run.stderr.contains(&format!("Pushed {name}")),
            "{}",
            run.run
        );
        let raw = process::run_ok({
            let mut c = std::process::Command::new("skopeo");
            c.args(["inspect", "--tls-verify=false", "--raw"])
                .arg(format!("docker://{name}"));
            c
        });
        let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(run.id.as_str()),
            "{name}: {raw}"
        );
    }
    let bad = build(&env, &ctx, &["--push"]).failure();
    assert!(bad.stderr.contains("needs at least one -t"), "{bad}");
}

/// `--output type=oci,dest=FILE` writes an OCI archive, `dest=DIR/` an OCI
/// layout, `type=docker,dest=FILE` a docker-archive; skopeo reads each,
/// with the built image's config.
#[test]
fn outputs_write_archives_and_layouts_that_skopeo_reads() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Containerfile",
                "FROM busybox\nCOPY f /f\nCMD [\"cat\", \"/f\"]\n",
            ),
            ("f", "exported\n"),
        ],
    );
    let out = env.scratch("out");
    let oci_tar = out.join("image.oci.tar");
    let oci_dir = format!("{}/layout/", out.display());
    let docker_tar = out.join("image.docker.tar");
    let run = build_ok(
        &env,
        &ctx,
        &[
            "-t",
            "exported:1",
            "--output",
            &format!("type=oci,dest={}", oci_tar.display()),
            "--output",
            &format!("type=oci,dest={oci_dir}"),
            "-o",
            &format!("type=docker,dest={}", docker_tar.display()),
        ],
    );
    let skopeo_config = |source: String| -> Value {
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--config"]).arg(&source);
        serde_json::from_str(&process::run_ok(c)).unwrap()
    };
    let want = inspect(&env, "exported:1")["config"].clone();
    for source in [
        format!("oci-archive:{}", oci_tar.display()),
        format!("oci:{oci_dir}"),
        format!("docker-archive:{}", docker_tar.display()),
    ] {
        let config = skopeo_config(source.clone());
        assert_eq!(config["rootfs"], want["rootfs"], "{source}");
        assert_eq!(config["config"]["Cmd"], want["config"]["Cmd"], "{source}");
    }
    assert!(
        run.run.stderr.contains("Wrote docker-archive"),
        "{}",
        run.run
    );
    let bad = build(&env, &ctx, &["-o", "type=tarball"]).failure();
    assert!(bad.stderr.contains("invalid --output"), "{bad}");
}

/// `--cache-to` pushes the build's cache to a registry; a fresh store with
/// `--cache-from` then hits every step, runs nothing, produces the same
/// image, and downloads only the layers the final image needs: the layers
/// of a build stage it only copies from stay in the registry.
#[test]
fn a_registry_cache_makes_a_fresh_store_hit_every_step() {
    let registry = crate::support::registry::Registry::shared();
    let cache = registry.reference("cache/registry-cache-test");
    let containerfile = "\
FROM busybox AS compile
WORKDIR /src
RUN echo compiled > artifact && head -c 100000 /dev/urandom > noise
FROM busybox
COPY --from=compile /src/artifact /artifact
COPY app.txt /app.txt
RUN cat /artifact /app.txt > /both
CMD [\"cat\", \"/both\"]
";
    let files = [("Containerfile", containerfile), ("app.txt", "app\n")];
    let a = env_with_busybox();
    let ctx_a = context(&a, "ctx", &files);
    let first = build_ok(
        &a,
        &ctx_a,
        &["-t", "cached", "--cache-to", &cache, "--tls-verify=false"],
    );
    assert!(
        first.run.stderr.contains("Exported 5 cache records"),
        "{}",
        first.run
    );

    let b = env_with_busybox();
    let ctx_b = context(&b, "elsewhere", &files);
    let before: BTreeSet<String> = dir_entries(&b.root.join("layers"));
    let second = build_ok(
        &b,
        &ctx_b,
        &["-t", "cached", "--cache-from", &cache, "--tls-verify=false"],
    );
    assert_eq!(second.id, first.id, "{}", second.run);
    assert_eq!(second.steps.counts(), (0, 5), "{}", second.run);
    assert!(
        !second.run.stderr.contains("DONE"),
        "a step ran:\n{}",
        second.run
    );
    assert_eq!(run_image(&b, "cached"), "compiled\napp\n");
    // Store B holds busybox's layer and the final image's three, not the
    // compile stage's WORKDIR and RUN layers.
    let final_layers: BTreeSet<String> = diff_ids(&b, "cached")
        .iter()
        .map(|d| d.strip_prefix("sha256:").unwrap().to_string())
        .collect();
    let after: BTreeSet<String> = dir_entries(&b.root.join("layers"));
    assert_eq!(
        after, final_layers,
        "store B downloaded layers the image does not need"
    );
    assert_eq!(before.len(), 1, "busybox only: {before:?}");
    let all_a: BTreeSet<String> = dir_entries(&a.root.join("layers"));
    assert_eq!(
        all_a.len(),
        6,
        "store A made both stages' layers: {all_a:?}"
    );
}

/// ADD's `https://` sources trust the system's CA bundle (here the test
/// CA, given as `SSL_CERT_FILE` the way a host would install a company
/// CA): the TLS handshake succeeds and the server's answer (401 from the
/// registry's `/v2/`) is what fails the step. Without that CA in the
/// bundle, the certificate is refused.
#[test]
fn add_https_trusts_the_systems_ca_bundle() {
    let env = TestEnv::new();
    let registry = crate::support::registry::Registry::start_tls_auth("u", "p");
    let ca = registry.ca_cert.clone().expect("a TLS registry has a CA");
    let url = format!("{}/v2/", registry.base_url());
    let ctx = context(
        &env,
        "ctx-add-https",
        &[("Containerfile", &format!("FROM scratch\nADD {url} /v2\n"))],
    );
    let mut trusted = build_command(&env, &ctx, &["-q"]);
    trusted.env("SSL_CERT_FILE", &ca);
    let run = finish(trusted).failure();
    assert!(
        run.stderr.contains("401"),
        "TLS passed, HTTP refused:\n{run}"
    );
    assert!(!run.stderr.contains("certificate"), "{run}");

    // A bundle without the test CA: one unrelated self-signed CA.
    let other = env.scratch("other-ca");
    let mut openssl = Command::new("openssl");
    openssl
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "k.pem"])
        .args(["-out", "ca.crt", "-days", "1", "-subj", "/CN=unrelated CA"])
        .current_dir(&other);
    process::run_ok(openssl);
    let mut untrusted = build_command(&env, &ctx, &["-q"]);
    untrusted.env("SSL_CERT_FILE", other.join("ca.crt"));
    let run = finish(untrusted).failure();
    assert!(
        run.stderr
            .contains("its TLS certificate was rejected: ADD trusts the system's CA bundle"),
        "{run}"
    );
    assert!(run.stderr.contains("UnknownIssuer"), "{run}");
    assert!(!run.stderr.contains("401"), "{run}");
}

/// `cmd` run through `sh` with `umask 002` (a desktop user's usual umask):
/// same program, arguments and environment.
fn with_umask_002(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 002 && exec \"$0\" \"$@\""])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => sh.env(key, v),
            None => sh.env_remove(key),
        };
    }
    sh
}

/// Under `umask 002` the directories builder creates (a RUN's upper, a
/// COPY's layer) start as 0775; the layers still have a 0755 root, and
/// their inventories say what is on disk (`check` is clean).
#[test]
fn layers_built_under_umask_002_have_a_0755_root_and_check_clean() {
    let env = env_with_busybox();
    let ctx = context(
        &env,
        "ctx-umask",
        &[
            ("Containerfile", "FROM busybox\nCOPY a /a\nRUN touch /b\n"),
            ("a", "a\n"),
        ],
    );
    let build = build_command(&env, &ctx, &["-q", "-t", "umask:1"]);
    finish(with_umask_002(&build)).success();
    env.assert_check_clean();
    let mode = env
        .builder(&["run", "--rm", "umask:1", "stat", "-c", "%a", "/"])
        .success();
    assert_eq!(mode.out(), "755");
}
