//! Acceptance tests of `builder pull` for what a real registry will not do,
//! through the fault proxy (`fault_proxy.rs`) in front of the shared
//! docker-registry:
//! - item 3: a Bearer-token challenge (`bearer_*`);
//! - item 4: tampered bytes → an error naming the expected and the actual
//!   digest, nothing committed, `check` clean (`tampered_*`).

use std::fs;
use std::path::Path;

use crate::fault_proxy::{Fault, FaultProxy};
use crate::support::fixtures::{self, Fixture, sha256_digest};
use crate::support::{Registry, TestEnv, serve_fixture};

/// A proxy in front of the shared registry, which holds fixture `name`.
fn proxy_for(name: &str) -> (FaultProxy, String, &'static Fixture) {
    let (_, fixture) = serve_fixture(name);
    let proxy = FaultProxy::forward(&Registry::shared().addr);
    let reference = format!("{}/fixture/{name}:latest", proxy.addr());
    (proxy, reference, fixture)
}

/// The bytes of a blob of a fixture, as the registry serves them.
fn fixture_blob(fixture: &Fixture, digest: &str) -> Vec<u8> {
    let dir = fixtures::ensure().dir.join(fixture.name);
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = if fixture.name == "docker" {
        dir.join(hex)
    } else {
        dir.join("blobs/sha256").join(hex)
    };
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The digest of `bytes` after the proxy's tampering (middle byte flipped).
fn tampered_digest(mut bytes: Vec<u8>) -> String {
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    sha256_digest(&bytes)
}

fn has_blob(root: &Path, digest: &str) -> bool {
    root.join("oci/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
        .exists()
}

/// Serves `digest` tampered (every time, so retries see it too), pulls, and
/// checks the error and that nothing of that blob or the image was stored.
fn assert_tampered_pull_fails(name: &str, digest: &str, diff_id: Option<&str>) {
    let (proxy, reference, fixture) = proxy_for(name);
    let actual = tampered_digest(fixture_blob(fixture, digest));
    proxy.inject(
        Some("GET"),
        &format!("/blobs/{digest}"),
        Fault::Tamper,
        None,
    );

    let env = TestEnv::new();
    let run = env
        .builder(&["pull", "--tls-verify=false", &reference])
        .failure();
    let ctx = format!("{run}\nproxy log:\n{}", proxy.log_text());
    assert!(
        proxy.count("GET", digest) > 0,
        "the tampered blob was never fetched:\n{ctx}"
    );
    assert!(
        run.stderr.contains(digest),
        "the error does not name the expected digest {digest}:\n{ctx}"
    );
    assert!(
        run.stderr.contains(&actual),
        "the error does not name the actual digest {actual}:\n{ctx}"
    );
    assert!(
        run.stderr.contains(&format!("fixture/{name}")),
        "the error does not name the image:\n{ctx}"
    );

    // Nothing of it committed: neither digest's blob, no layer, no image.
    assert!(
        !has_blob(&env.root, digest),
        "the expected-digest blob was stored:\n{ctx}"
    );
    assert!(
        !has_blob(&env.root, &actual),
        "the tampered bytes were stored:\n{ctx}"
    );
    if let Some(diff_id) = diff_id {
        let layer = env
            .root
            .join("layers")
            .join(diff_id.strip_prefix("sha256:").unwrap());
        assert!(
            !layer.exists(),
            "the tampered layer was unpacked into {}",
            layer.display()
        );
    }
    let images = env.builder(&["images", "--json"]).success().json();
    assert_eq!(
        images.as_array().map(Vec::len),
        Some(0),
        "an image was named: {images:#}"
    );
    env.assert_check_clean();

    // Once the registry serves the right bytes, the same store pulls fine.
    proxy.clear_faults();
    let digest_out = env.pull_plain(&reference, &[]);
    assert_eq!(digest_out, fixture.digest());
    env.assert_check_clean();
}

/// A gzip layer with one byte flipped: the decompressor may choke before
/// the digest is known, but the error must still be the digest mismatch.
#[test]
fn tampered_gzip_layer() {
    let ml = fixtures::ensure().get("multilayer").image();
    assert_tampered_pull_fails("multilayer", &ml.layers[1].1, Some(&ml.diff_ids[1]));
}

/// An uncompressed layer with one byte of file content flipped: both the
/// blob digest and the diffID are wrong.
#[test]
fn tampered_uncompressed_layer() {
    let un = fixtures::ensure().get("uncompressed").image();
    assert_tampered_pull_fails("uncompressed", &un.layers[0].1, Some(&un.diff_ids[0]));
}

#[test]
fn tampered_config() {
    let bb = fixtures::ensure().get("busybox").image();
    assert_tampered_pull_fails("busybox", &bb.config_digest, None);
}

/// A manifest fetched by digest whose bytes do not hash to that digest.
#[test]
fn tampered_manifest_by_digest() {
    let (proxy, _, fixture) = proxy_for("busybox");
    let digest = fixture.digest();
    let actual = tampered_digest(fixture.manifest_bytes.clone());
    proxy.inject(
        Some("GET"),
        &format!("/manifests/{digest}"),
        Fault::Tamper,
        None,
    );
    let reference = format!("{}/fixture/busybox@{digest}", proxy.addr());
    let env = TestEnv::new();
    let run = env
        .builder(&["pull", "--tls-verify=false", &reference])
        .failure();
    assert!(
        run.stderr.contains(&digest) && run.stderr.contains(&actual),
        "{run}\n{}",
        proxy.log_text()
    );
    assert!(
        !has_blob(&env.root, &digest) && !has_blob(&env.root, &actual),
        "{run}"
    );
    let images = env.builder(&["images", "--json"]).success().json();
    assert_eq!(images.as_array().map(Vec::len), Some(0), "{images:#}");
    env.assert_check_clean();
}

// ------------------------------------------------------------------ Bearer

/// Token auth as registries such as Docker Hub do it: `/v2/` answers 401
/// with `WWW-Authenticate: Bearer realm=…,service=…`; builder gets a token
/// from the realm with its credentials (Basic) and the repository scope, and
/// retries with `Authorization: Bearer`.
#[test]
fn bearer_token_challenge_with_credentials() {
    let (proxy, reference, fixture) = proxy_for("busybox");
    proxy.require_bearer(Some(("tokenuser", "tokenpass")), 300);
    let env = TestEnv::new();

    let run = env
        .builder(&["pull", "--tls-verify=false", &reference])
        .failure();
    assert!(
        proxy.count("GET", "/token") > 0,
        "no token request without credentials:\n{}",
        proxy.log_text()
    );
    drop(run);

    proxy.clear_log();
    let run = env
        .builder(&[
            "pull",
            "--tls-verify=false",
            "-q",
            "--creds",
            "tokenuser:tokenpass",
            &reference,
        ])
        .success();
    assert_eq!(run.out(), fixture.digest());
    let log = proxy.log();
    let token_requests: Vec<_> = log
        .iter()
        .filter(|e| e.path.starts_with("/token"))
        .collect();
    assert!(
        !token_requests.is_empty(),
        "no token fetched:\n{}",
        proxy.log_text()
    );
    for t in &token_requests {
        assert!(
            t.path
                .contains("scope=repository%3Afixture%2Fbusybox%3Apull")
                || t.path.contains("scope=repository:fixture/busybox:pull"),
            "token request without the repository pull scope: {}",
            t.path
        );
        assert!(
            t.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Basic ")),
            "token request without Basic credentials: {t:?}"
        );
    }
    let blob_gets: Vec<_> = log
        .iter()
        .filter(|e| e.path.contains("/blobs/") && e.status == 200)
        .collect();
    assert!(!blob_gets.is_empty(), "{}", proxy.log_text());
    for b in blob_gets {
        assert!(
            b.authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer ")),
            "blob fetched without the token: {b:?}"
        );
    }
    env.assert_check_clean();
}

/// Anonymous token auth (public images on token registries): no
/// credentials, the realm issues a token anyway.
#[test]
fn bearer_token_challenge_anonymous() {
    let (proxy, reference, fixture) = proxy_for("busybox");
    proxy.require_bearer(None, 300);
    let env = TestEnv::new();
    assert_eq!(env.pull_plain(&reference, &[]), fixture.digest());
    assert!(proxy.count("GET", "/token") > 0, "{}", proxy.log_text());
}

/// `login` stores credentials that a later Bearer-protected pull uses.
#[test]
fn bearer_token_challenge_after_login() {
    let (proxy, reference, fixture) = proxy_for("busybox");
    proxy.require_bearer(Some(("tokenuser", "tokenpass")), 300);
    let env = TestEnv::new();
    env.builder_stdin(
        &[
            "login",
            proxy.addr(),
            "-u",
            "tokenuser",
            "--password-stdin",
            "--tls-verify=false",
        ],
        "tokenpass\n",
    )
    .success();
    assert_eq!(env.pull_plain(&reference, &[]), fixture.digest());
}
