//! Acceptance tests of `builder push` against real docker-registry
//! processes, with the fault proxy in front where a request log or a fault
//! is needed. Images come from the fixtures (made by umoci/skopeo), pulled
//! into a builder store first; peers (skopeo, umoci) read what was pushed.
//!
//! Issue 5, Push acceptance items:
//! 1. a pushed image is read by `skopeo inspect` and `skopeo copy`, and
//!    `umoci unpack` of that copy equals builder's rootfs
//!    (`pushed_image_is_read_by_skopeo_and_umoci`); a second push uploads
//!    no blob (`second_push_sends_only_heads_and_the_manifest`);
//! 2. cross-repository mounts (`same_layers_to_another_repository_are_mounted`,
//!    `a_pusher_mounts_from_repositories_it_pushed_to`);
//! 3. a 200 MB layer goes in chunks (`a_200_mb_layer_is_pushed_in_chunks`), a
//!    cut connection is recovered from (`a_cut_chunk_*`,
//!    `an_unanswered_chunk_*`, `a_cut_monolithic_upload_*`), a Bearer
//!    challenge (`bearer_challenge_*`), TLS + basic auth
//!    (`tls_registry_with_basic_auth`).
//!
//! Also: manifest digests survive a pull/push hop, Docker schema2 included
//! (`docker_schema2_image_keeps_its_digest`); `--compression zstd`
//! re-encodes layers without changing their content
//! (`compression_zstd_changes_blobs_not_content`); a 403 names who refused
//! what (`denied_push_says_who_refused_and_what_to_do`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fault_proxy::{Fault, FaultProxy, LogEntry};
use crate::support::fixtures::{self, Fixture};
use crate::support::registry::MANIFEST_ACCEPT;
use crate::support::{Registry, Run, TestEnv, process, serve_fixture, tree};

/// The chunk size builder uses by default (`registry::CHUNK_SIZE`).
const CHUNK: u64 = 16 * 1024 * 1024;

/// A store with fixture `name` pulled from the shared registry; returns the
/// env, the stored name and the fixture.
fn pulled(name: &str) -> (TestEnv, String, &'static Fixture) {
    let (reference, fixture) = serve_fixture(name);
    let env = TestEnv::new();
    env.pull_plain(&reference, &[]);
    (env, reference, fixture)
}

/// `builder push --tls-verify=false ARGS…` (the registries here are plain
/// HTTP on loopback).
fn push(env: &TestEnv, args: &[&str]) -> Run {
    let mut all = vec!["push", "--tls-verify=false"];
    all.extend_from_slice(args);
    env.builder(&all)
}

/// The digests a fixture's manifest lists: config and layers.
fn blob_digests(fixture: &Fixture) -> BTreeSet<String> {
    let image = fixture.image();
    let mut out: BTreeSet<String> = image.layers.iter().map(|l| l.1.clone()).collect();
    out.insert(image.config_digest.clone());
    out
}

fn skopeo(args: &[&str]) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(args);
    process::run_ok(cmd)
}

/// The manifest a registry serves for `reference`, as skopeo reads it.
fn raw_manifest(reference: &str) -> Value {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{reference}: {e}:\n{raw}"))
}

/// Upload requests of a log (POST/PATCH/PUT on `/blobs/uploads/`).
fn uploads(log: &[LogEntry]) -> Vec<&LogEntry> {
    log.iter()
        .filter(|e| e.method != "GET" && e.method != "HEAD" && e.path.contains("/blobs/uploads/"))
        .collect()
}

// ------------------------------------------------------------------ item 1

#[test]
fn pushed_image_is_read_by_skopeo_and_umoci() {
    let (env, source, fixture) = pulled("multilayer");
    let registry = Registry::start_plain();
    let destination = registry.reference("pushed/multilayer:v1");
    let digestfile = env.scratch("out").join("digest");
    let run = push(
        &env,
        &[
            "-q",
            "--digestfile",
            digestfile.to_str().unwrap(),
            &source,
            &destination,
        ],
    )
    .success();
    assert_eq!(run.out(), fixture.digest(), "stdout is the manifest digest");
    assert_eq!(
        fs::read_to_string(&digestfile).unwrap().trim(),
        fixture.digest()
    );
    assert_eq!(run.stderr, "", "-q prints nothing else");

    let inspect: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{destination}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], fixture.digest(), "{inspect:#}");
    let layers: Vec<&str> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let want: Vec<&str> = fixture
        .image()
        .layers
        .iter()
        .map(|l| l.1.as_str())
        .collect();
    assert_eq!(layers, want);

    // skopeo copies it back out (verifying every blob), umoci unpacks the
    // copy, and that equals builder's own mount of the image.
    let scratch = env.scratch("copy");
    let layout = scratch.join("layout");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{destination}"),
        &format!("oci:{}:copy", layout.display()),
    ]);
    let bundle = scratch.join("bundle");
    let mut umoci = Command::new("umoci");
    umoci
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:copy", layout.display()))
        .arg(&bundle);
    process::run_ok(umoci);
    let mounted = env.mount(&source);
    tree::assert_same(&bundle.join("rootfs"), &mounted);
    env.umount(&source, &mounted);
}

#[test]
fn second_push_sends_only_heads_and_the_manifest() {
    let (env, source, fixture) = pulled("multilayer");
    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    let destination = format!("{}/again/multilayer:v1", proxy.addr());
    let blobs = blob_digests(fixture);

    let first = push(&env, &[&source, &destination]).success();
    assert_eq!(first.out(), fixture.digest());
    let log = proxy.log();
    assert_eq!(
        uploads(&log)
            .iter()
            .filter(|e| e.method == "PUT" && e.status == 201)
            .count(),
        blobs.len(),
        "the first push uploads every blob:\n{}",
        proxy.log_text()
    );

    proxy.clear_log();
    let second = push(&env, &[&source, &destination]).success();
    assert_eq!(second.out(), fixture.digest());
    assert!(second.stderr.contains("0 uploaded, 0 mounted"), "{second}");
    let log = proxy.log();
    for e in &log {
        let allowed = (e.method == "GET" && e.path == "/v2/")
            || (e.method == "HEAD" && e.path.contains("/blobs/sha256:") && e.status == 200)
            || (e.method == "PUT" && e.path == "/v2/again/multilayer/manifests/v1");
        assert!(
            allowed,
            "unexpected request `{} {}` in the second push:\n{}",
            e.method,
            e.path,
            proxy.log_text()
        );
    }
    let heads: BTreeSet<String> = log
        .iter()
        .filter(|e| e.method == "HEAD")
        .map(|e| e.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(heads, blobs, "one HEAD per blob");
    assert_eq!(proxy.count("PUT", "/manifests/"), 1, "{}", proxy.log_text());
}

// ------------------------------------------------------------------ item 2

#[test]
fn same_layers_to_another_repository_are_mounted() {
    let fixture = fixtures::ensure().get("multilayer");
    let registry = Registry::start_plain();
    registry.push_fixture(fixture, "src/multilayer:latest");
    let proxy = FaultProxy::forward(&registry.addr);
    let env = TestEnv::new();
    let source = format!("{}/src/multilayer:latest", proxy.addr());
    env.pull_plain(&source, &[]);

    proxy.clear_log();
    let destination = format!("{}/dst/multilayer:v1", proxy.addr());
    let run = push(&env, &[&source, &destination]).success();
    assert_eq!(run.out(), fixture.digest(), "the digest survives the hop");
    let blobs = blob_digests(fixture);
    assert!(
        run.stderr
            .contains(&format!("0 uploaded, {} mounted", blobs.len())),
        "{run}"
    );

    let log = proxy.log();
    let mounted: BTreeSet<String> = log
        .iter()
        .filter(|e| e.method == "POST" && e.status == 201)
        .filter_map(|e| {
            let query = e.path.split_once('?')?.1;
            assert!(
                query.contains("from=src/multilayer"),
                "mount from the source repository: {}",
                e.path
            );
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mount="))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(mounted, blobs, "every blob mounted:\n{}", proxy.log_text());
    assert_eq!(proxy.count("PATCH", ""), 0, "{}", proxy.log_text());
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path.contains("/blobs/")),
        "no blob PUT:\n{}",
        proxy.log_text()
    );
    for digest in &blobs {
        let (status, _) = registry.get(&format!("/v2/dst/multilayer/blobs/{digest}"), "*/*");
        assert_eq!(status, 200, "{digest} in the destination repository");
    }
}

/// Through the library: one `Pusher` pushing an image (pulled from another
/// registry, so its own name offers no mount source) to two repositories
/// mounts the second time from the first.
#[test]
fn a_pusher_mounts_from_repositories_it_pushed_to() {
    use builder::progress::NoProgress;
    use builder::push::{PushOptions, Pusher};
    use builder::reference::ImageRef;
    use builder::registry::{Client, RegistryOptions};
    use builder::store::{LockMode, Store};

    let (env, source, fixture) = pulled("busybox");
    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    let store = Store::open(&env.root, LockMode::Shared).unwrap();
    let image = store.image(&source).unwrap().expect("pulled image");
    let client = Client::new(RegistryOptions::default());
    let pusher = Pusher::new(&client, &store);
    let options = PushOptions::default();

    let first = ImageRef::parse(&format!("{}/first/busybox:1", proxy.addr())).unwrap();
    let pushed = pusher.push(&image, &first, &options, &NoProgress).unwrap();
    assert_eq!(pushed.uploaded, 2, "{}", proxy.log_text());
    assert_eq!(pushed.manifest.digest.to_string(), fixture.digest());

    proxy.clear_log();
    let second = ImageRef::parse(&format!("{}/second/busybox:1", proxy.addr())).unwrap();
    let pushed = pusher.push(&image, &second, &options, &NoProgress).unwrap();
    assert_eq!(
        (pushed.uploaded, pushed.mounted, pushed.present),
        (0, 2, 0),
        "{}",
        proxy.log_text()
    );
    let log = proxy.log();
    let mounts: Vec<&LogEntry> = log.iter().filter(|e| e.method == "POST").collect();
    assert_eq!(mounts.len(), 2, "{}", proxy.log_text());
    for m in mounts {
        assert!(m.path.contains("from=first/busybox"), "{}", m.path);
        assert_eq!(m.status, 201, "{}", proxy.log_text());
    }
}

// ------------------------------------------------------------------ item 3

/// Writes an OCI layout with one uncompressed layer holding `size` bytes
/// of incompressible data, by hand (GNU tar, sha256sum, JSON), and returns
/// the layout and its manifest digest.
fn big_layer_layout(dir: &Path, size: u64) -> (PathBuf, String) {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let mut random = Command::new("sh");
    random.arg("-c").arg(format!(
        "openssl enc -aes-128-ctr -nosalt -K {:032x} -iv {:032x} -in /dev/zero 2>/dev/null | head -c {size} > {}/big.bin",
        7,
        0,
        rootfs.display()
    ));
    process::run_ok(random);
    assert_eq!(fs::metadata(rootfs.join("big.bin")).unwrap().len(), size);
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let tar_path = dir.join("layer.tar");
    let mut tar = Command::new("tar");
    tar.args([
        "--numeric-owner",
        "--owner=0",
        "--group=0",
        "--mtime=@0",
        "-cf",
    ])
    .arg(&tar_path)
    .arg("-C")
    .arg(&rootfs)
    .arg(".");
    process::run_ok(tar);
    let mut sum = Command::new("sha256sum");
    sum.arg(&tar_path);
    let hex = process::run_ok(sum)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let layer_size = fs::metadata(&tar_path).unwrap().len();
    fs::rename(&tar_path, blobs.join(&hex)).unwrap();
    let put = |bytes: Vec<u8>| -> (String, usize) {
        let digest = fixtures::sha256_digest(&bytes);
        fs::write(blobs.join(digest.trim_start_matches("sha256:")), &bytes).unwrap();
        (digest, bytes.len())
    };
    let (config, config_size) = put(serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    }))
    .unwrap());
    let (manifest, manifest_size) = put(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{hex}"),
            "size": layer_size,
        }],
    }))
    .unwrap());
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    fs::remove_dir_all(&rootfs).unwrap();
    (layout, manifest)
}

/// The Content-Ranges of PATCH requests in a log, as (start, end).
fn patch_ranges(log: &[LogEntry]) -> Vec<(u64, u64)> {
    log.iter()
        .filter(|e| e.method == "PATCH")
        .map(|e| {
            let range = e.content_range.as_deref().expect("PATCH has Content-Range");
            let (a, b) = range.split_once('-').expect("START-END");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_200_mb_layer_is_pushed_in_chunks() {
    const SIZE: u64 = 200 * 1000 * 1000;
    let env = TestEnv::new();
    let (layout, manifest) = big_layer_layout(&env.scratch("big"), SIZE);
    let shared = Registry::shared();
    shared.push_oci(&layout, "latest", "fixture/big200:latest");
    let source = shared.reference("fixture/big200:latest");
    assert_eq!(env.pull_plain(&source, &[]), manifest);
    fs::remove_dir_all(&layout).unwrap();

    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    let destination = format!("{}/big/layer:v1", proxy.addr());
    let run = push(&env, &["-q", &source, &destination]).success();
    assert_eq!(run.out(), manifest);

    let log = proxy.log();
    let ranges = patch_ranges(&log);
    // The tar is a little over SIZE bytes: headers and padding.
    let chunks = SIZE.div_ceil(CHUNK) as usize;
    assert!(
        ranges.len() >= chunks,
        "{} PATCHes for a {SIZE}-byte layer:\n{}",
        ranges.len(),
        proxy.log_text()
    );
    let mut next = 0;
    for (i, (start, end)) in ranges.iter().enumerate() {
        assert_eq!(*start, next, "chunk {i} starts where the last ended");
        if i + 1 < ranges.len() {
            assert_eq!(end - start + 1, CHUNK, "chunk {i} is full");
        }
        next = end + 1;
    }
    assert!(next > SIZE, "the chunks cover the layer");
    let patches: Vec<&LogEntry> = log.iter().filter(|e| e.method == "PATCH").collect();
    assert!(patches.iter().all(|e| e.status == 202));
    assert!(
        patches
            .iter()
            .zip(&ranges)
            .all(|(e, (s, t))| e.body_len as u64 == t - s + 1),
        "each PATCH carries exactly its range"
    );
    let closing: Vec<&LogEntry> = log
        .iter()
        .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/") && e.body_len == 0)
        .collect();
    assert_eq!(closing.len(), 1, "one empty PUT closes the chunked upload");
    assert_eq!(closing[0].status, 201);
    assert_eq!(registry.manifest_digest("big/layer", "v1"), manifest);
}

/// `large` (two ~52 MB layers of four chunks each, two small layers, a
/// config) pushed one blob at a time through a proxy that applies `fault`
/// to the first PATCH. Checks that the push succeeded with the fixture's
/// digest; returns the proxy's log, as entries and as text, and the number
/// of blobs.
fn push_large_with_patch_fault(fault: Fault) -> (Vec<LogEntry>, String, usize) {
    let (env, source, fixture) = pulled("large");
    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    proxy.inject(Some("PATCH"), "/blobs/uploads/", fault, Some(1));
    let destination = format!("{}/faulty/large:v1", proxy.addr());
    let run = push(&env, &["--jobs", "1", &source, &destination]).success();
    assert_eq!(run.out(), fixture.digest(), "{}", proxy.log_text());
    assert_eq!(
        registry.manifest_digest("faulty/large", "v1"),
        fixture.digest()
    );
    // skopeo reads every blob back and checks its digest.
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}", registry.reference("faulty/large:v1")),
    ]);
    (proxy.log(), proxy.log_text(), blob_digests(fixture).len())
}

#[test]
fn a_cut_chunk_is_resumed_from_the_registrys_offset() {
    let (log, text, blobs) = push_large_with_patch_fault(Fault::CutRequest(1 << 20));
    let cut = log
        .iter()
        .position(|e| e.fault == Some("cut-request"))
        .unwrap_or_else(|| panic!("no cut:\n{text}"));
    assert!(log[cut].body_len > 0, "cut mid-body:\n{text}");
    let rest = &log[cut + 1..];
    // The status query, then the same chunk again in the same session.
    assert_eq!(rest[0].method, "GET", "{text}");
    assert!(rest[0].path.contains("/blobs/uploads/"), "{text}");
    assert_eq!(rest[0].status, 204, "{text}");
    assert_eq!(rest[1].method, "PATCH", "{text}");
    assert_eq!(rest[1].content_range, log[cut].content_range, "{text}");
    assert_eq!(rest[1].status, 202, "{text}");
    assert_eq!(
        log.iter().filter(|e| e.method == "POST").count(),
        blobs,
        "one session per blob, none restarted:\n{text}"
    );
}

#[test]
fn an_unanswered_chunk_restarts_the_upload_session() {
    let (log, text, blobs) = push_large_with_patch_fault(Fault::HangUpAfterForward);
    let lost = log
        .iter()
        .position(|e| e.fault == Some("hang-up"))
        .unwrap_or_else(|| panic!("no hang-up:\n{text}"));
    let rest = &log[lost + 1..];
    // The registry took the chunk, so the old session state is stale: the
    // status query fails and a new session starts from byte 0.
    assert_eq!(rest[0].method, "GET", "{text}");
    assert_eq!(rest[0].status, 404, "{text}");
    let restart = rest
        .iter()
        .position(|e| e.method == "POST")
        .unwrap_or_else(|| panic!("no new session:\n{text}"));
    let after: Vec<(u64, u64)> = patch_ranges(&rest[restart..]);
    assert_eq!(after.first().map(|r| r.0), Some(0), "{text}");
    assert_eq!(
        log.iter().filter(|e| e.method == "POST").count(),
        blobs + 1,
        "one session restarted:\n{text}"
    );
}

#[test]
fn a_cut_monolithic_upload_is_retried() {
    let (env, source, fixture) = pulled("busybox");
    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    proxy.inject(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::CutRequest(100_000),
        Some(1),
    );
    let destination = format!("{}/mono/busybox:v1", proxy.addr());
    let run = push(&env, &["--jobs", "1", &source, &destination]).success();
    assert_eq!(run.out(), fixture.digest());
    let log = proxy.log();
    assert_eq!(
        log.iter()
            .filter(|e| e.fault == Some("cut-request"))
            .count(),
        1,
        "{}",
        proxy.log_text()
    );
    assert_eq!(
        log.iter()
            .filter(|e| e.method == "PUT" && e.path.contains("/blobs/uploads/") && e.status == 201)
            .count(),
        2,
        "both blobs arrive, each in one PUT:\n{}",
        proxy.log_text()
    );
    assert_eq!(
        registry.manifest_digest("mono/busybox", "v1"),
        fixture.digest()
    );
}

#[test]
fn bearer_challenge_gives_push_and_mount_scopes() {
    let fixture = fixtures::ensure().get("multilayer");
    let registry = Registry::start_plain();
    registry.push_fixture(fixture, "src/multilayer:latest");
    let proxy = FaultProxy::forward(&registry.addr);
    proxy.require_bearer(Some(("tokuser", "tokpass")), 300);
    let env = TestEnv::new();
    let source = format!("{}/src/multilayer:latest", proxy.addr());
    env.pull_plain(&source, &["--creds", "tokuser:tokpass"]);

    // Without credentials the token service refuses, and the error says
    // what to do.
    let destination = format!("{}/dst/multilayer:v1", proxy.addr());
    push(&env, &[&source, &destination])
        .failure()
        .stderr_has("builder login");

    proxy.clear_log();
    let run = push(&env, &["--creds", "tokuser:tokpass", &source, &destination]).success();
    assert_eq!(run.out(), fixture.digest());
    let log = proxy.log();
    let tokens: Vec<&str> = log
        .iter()
        .filter(|e| e.path.starts_with("/token"))
        .map(|e| e.path.as_str())
        .collect();
    let push_scope = "scope=repository%3Adst%2Fmultilayer%3Apull%2Cpush";
    let from_scope = "scope=repository%3Asrc%2Fmultilayer%3Apull";
    assert!(
        tokens.iter().any(|t| t.contains(push_scope)),
        "a token for pull,push on the destination:\n{}",
        proxy.log_text()
    );
    assert!(
        tokens
            .iter()
            .any(|t| t.contains(push_scope) && t.contains(from_scope)),
        "a mount token also covers pull on the source:\n{}",
        proxy.log_text()
    );
    let mounts = log
        .iter()
        .filter(|e| e.method == "POST" && e.path.contains("mount=") && e.status == 201)
        .count();
    assert_eq!(mounts, blob_digests(fixture).len(), "{}", proxy.log_text());
    let manifest_put = log
        .iter()
        .find(|e| e.method == "PUT" && e.path.contains("/manifests/") && e.status == 201)
        .unwrap_or_else(|| panic!("no manifest PUT:\n{}", proxy.log_text()));
    assert!(
        manifest_put
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ")),
        "{manifest_put:?}"
    );
    assert_eq!(
        registry.manifest_digest("dst/multilayer", "v1"),
        fixture.digest()
    );
}

#[test]
fn tls_registry_with_basic_auth() {
    let (env, source, fixture) = pulled("busybox");
    let registry = Registry::start_tls_auth("pushuser", "pushpass");
    let cert_dir = registry.cert_dir.clone().unwrap();
    let cert_dir = cert_dir.to_str().unwrap();
    let destination = registry.reference("secure/busybox:v1");

    let denied = env
        .builder(&["push", "--cert-dir", cert_dir, &source, &destination])
        .failure();
    assert!(
        denied
            .stderr
            .contains(&format!("builder login {}", registry.addr)),
        "{denied}"
    );
    assert!(denied.stderr.contains("secure/busybox"), "{denied}");

    let run = env
        .builder(&[
            "push",
            "-q",
            "--cert-dir",
            cert_dir,
            "--creds",
            "pushuser:pushpass",
            &source,
            &destination,
        ])
        .success();
    assert_eq!(run.out(), fixture.digest());
    assert_eq!(
        registry.manifest_digest("secure/busybox", "v1"),
        fixture.digest()
    );
}

// ------------------------------------------------------------------ more

#[test]
fn docker_schema2_image_keeps_its_digest() {
    let (env, source, fixture) = pulled("docker");
    let inspect = env.builder(&["inspect", &source]).success().json();
    assert_eq!(inspect["digest"], fixture.digest());
    let registry = Registry::start_plain();
    let destination = registry.reference("pushed/docker:v1");
    let run = push(&env, &["-q", &source, &destination]).success();
    assert_eq!(run.out(), fixture.digest());
    let (status, body) = registry.get("/v2/pushed/docker/manifests/v1", MANIFEST_ACCEPT);
    assert_eq!(status, 200);
    assert_eq!(body, fixture.manifest_bytes, "the original bytes");
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        served["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn compression_zstd_changes_blobs_not_content() {
    let (env, source, fixture) = pulled("busybox");
    let registry = Registry::start_plain();
    let destination = registry.reference("zstd/busybox:v1");
    let run = push(&env, &["--compression", "zstd", &source, &destination]).success();
    let digest = run.out().to_string();
    assert_ne!(digest, fixture.digest(), "new layer blobs, new manifest");
    assert!(run.stderr.contains("1 recompressed"), "{run}");

    let raw = raw_manifest(&destination);
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        raw["config"]["digest"],
        fixture.image().config_digest,
        "the config (image ID) is unchanged"
    );

    // Pulled back into a fresh store, it has the original's content.
    let again = TestEnv::new();
    assert_eq!(again.pull_plain(&destination, &[]), digest);
    let expected = fixture
        .image()
        .umoci_unpack(&again.scratch("umoci").join("bundle"));
    let mounted = again.mount(&destination);
    tree::assert_same(&expected, &mounted);
    again.umount(&destination, &mounted);

    // Pushing it again recompresses to the same bytes: nothing to upload.
    let rerun = push(&env, &["--compression", "zstd", &source, &destination]).success();
    assert_eq!(rerun.out(), digest, "recompression is deterministic");
    assert!(rerun.stderr.contains("0 uploaded"), "{rerun}");
}

/// `--compression-level` sets the level of the layers `--compression`
/// re-encodes: level 1 and level 9 give different gzip blobs of the same
/// tar (the config, which names the DiffIDs, is unchanged), level 9's the
/// smaller; a level out of range is refused before anything is sent.
#[test]
fn compression_level_sets_the_reencoded_layers_level() {
    let (env, source, fixture) = pulled("zstd");
    let registry = Registry::start_plain();
    let mut layers = Vec::new();
    for level in ["1", "9"] {
        let destination = registry.reference(&format!("level/busybox:l{level}"));
        push(
            &env,
            &[
                "-q",
                "--compression",
                "gzip",
                "--compression-level",
                level,
                &source,
                &destination,
            ],
        )
        .success();
        let raw = raw_manifest(&destination);
        assert_eq!(
            raw["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(raw["config"]["digest"], fixture.image().config_digest);
        layers.push((
            raw["layers"][0]["digest"].as_str().unwrap().to_string(),
            raw["layers"][0]["size"].as_u64().unwrap(),
        ));
    }
    assert_ne!(layers[0].0, layers[1].0, "{layers:?}");
    assert!(layers[1].1 < layers[0].1, "level 9 is smaller: {layers:?}");

    let refused = push(
        &env,
        &[
            "--compression",
            "gzip",
            "--compression-level",
            "42",
            &source,
            &registry.reference("level/busybox:bad"),
        ],
    )
    .failure()
    .stderr_has("--compression-level: gzip level 42 is not in 0..=9");
    assert_eq!(refused.status.code(), Some(1), "{refused}");
    let (status, _) = registry.get("/v2/level/busybox/manifests/bad", MANIFEST_ACCEPT);
    assert_eq!(status, 404);
    // A level means nothing without a compression to re-encode into.
    push(
        &env,
        &[
            "--compression-level",
            "1",
            &source,
            &registry.reference("level/busybox:x"),
        ],
    )
    .failure()
    .stderr_has("--compression");
}

#[test]
fn denied_push_says_who_refused_and_what_to_do() {
    let (env, source, _) = pulled("busybox");
    let registry = Registry::start_plain();
    let proxy = FaultProxy::forward(&registry.addr);
    proxy.inject(Some("POST"), "/blobs/uploads/", Fault::Status(403), None);
    let destination = format!("{}/denied/busybox:v1", proxy.addr());
    let run = push(&env, &[&source, &destination]).failure();
    assert!(
        run.stderr.contains("denied access to `denied/busybox`"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains(&format!("builder login {}", proxy.addr())),
        "{run}"
    );
    assert_eq!(
        proxy.count("PUT", "/manifests/"),
        0,
        "no manifest without its blobs"
    );
}

#[test]
fn destination_defaults_to_the_images_own_name() {
    let fixture = fixtures::ensure().get("busybox");
    let registry = Registry::start_plain();
    registry.push_fixture(fixture, "own/busybox:latest");
    let env = TestEnv::new();
    let source = registry.reference("own/busybox:latest");
    env.pull_plain(&source, &[]);
    env.builder(&["tag", &source, &registry.reference("own/busybox:copy")])
        .success();
    let run = push(&env, &["-q", &registry.reference("own/busybox:copy")]).success();
    assert_eq!(run.out(), fixture.digest());
    assert_eq!(
        registry.manifest_digest("own/busybox", "copy"),
        fixture.digest()
    );

    // By image ID, the image's first name is the destination... unless a
    // destination is given.
    let id = &fixture.image().config_digest["sha256:".len()..][..12];
    let run = push(&env, &["-q", id, &registry.reference("own/busybox:by-id")]).success();
    assert_eq!(run.out(), fixture.digest());
}

/// The other direction: a zstd image pushed with `--compression gzip` is
/// one umoci (which reads no zstd) unpacks to the original's content.
#[test]
fn compression_gzip_of_a_zstd_image_is_read_by_umoci() {
    let (env, source, fixture) = pulled("zstd");
    let registry = Registry::start_plain();
    let destination = registry.reference("gzip/busybox:v1");
    let run = push(
        &env,
        &["-q", "--compression", "gzip", &source, &destination],
    )
    .success();
    assert_ne!(run.out(), fixture.digest());
    let raw = raw_manifest(&destination);
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(raw["config"]["digest"], fixture.image().config_digest);

    let scratch = env.scratch("copy");
    let layout = scratch.join("layout");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{destination}"),
        &format!("oci:{}:copy", layout.display()),
    ]);
    let bundle = scratch.join("bundle");
    let mut umoci = Command::new("umoci");
    umoci
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:copy", layout.display()))
        .arg(&bundle);
    process::run_ok(umoci);
    let expected = fixture.image().umoci_unpack(&scratch.join("expected"));
    tree::assert_same(&expected, &bundle.join("rootfs"));
}
