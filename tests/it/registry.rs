//! The registry client against a real docker-registry (plain HTTP; TLS with
//! the per-run CA and htpasswd basic auth) and, for what a real registry
//! can't show, through the fault proxy: Bearer challenges, tampered bytes,
//! 5xx and 429, connections cut mid-blob, redirects to a CDN.

use std::io::Read;
use std::time::{Duration, Instant};

use builder::oci::verify::HashingReader;
use builder::oci::{Descriptor, Digest, Manifest, MediaType, Platform};
use builder::reference::ImageRef;
use builder::registry::credentials::{self, AuthFiles, Credential};
use builder::registry::{Client, RegistryError, RegistryOptions};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::support::fixtures;
use crate::support::registry::Registry;

/// A client that reads no credentials from the environment or the
/// machine's cert dirs, and retries quickly.
fn client_with(f: impl FnOnce(&mut RegistryOptions)) -> Client {
    let mut opts = RegistryOptions {
        auth_files: Some(AuthFiles { files: Vec::new() }),
        certs_dirs: Vec::new(),
        retry_delay: Duration::from_millis(5),
        max_retry_delay: Duration::from_millis(40),
        ..Default::default()
    };
    f(&mut opts);
    Client::new(opts)
}

fn client() -> Client {
    client_with(|_| {})
}

/// The error and its causes on one line, as the CLI would show them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// Pseudo-random bytes (a blob that compresses badly, like a real layer).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A one-layer image put into a canned proxy as `repo:tag`.
struct CannedImage {
    reference: ImageRef,
    manifest_digest: String,
    config: Descriptor,
    layer: Descriptor,
    layer_bytes: Vec<u8>,
}

fn canned_image(proxy: &FaultProxy, repo: &str, layer_len: usize) -> CannedImage {
    let layer_bytes = noise(layer_len, layer_len as u64);
    let config_bytes =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer_digest = proxy.put_blob(repo, &layer_bytes);
    let config_digest = proxy.put_blob(repo, config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_bytes.len()}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = proxy.put_manifest(
        repo,
        Some("latest"),
        "application/vnd.oci.image.manifest.v1+json",
        &manifest_bytes,
    );
    CannedImage {
        reference: ImageRef::parse(&format!("{}/{repo}:latest", proxy.addr())).unwrap(),
        manifest_digest,
        config: Descriptor::new(
            "application/vnd.oci.image.config.v1+json",
            Digest::parse(&config_digest).unwrap(),
            config_bytes.len() as u64,
        ),
        layer: Descriptor::new(
            "application/vnd.oci.image.layer.v1.tar",
            Digest::parse(&layer_digest).unwrap(),
            layer_bytes.len() as u64,
        ),
        layer_bytes,
    }
}

/// Streams a blob through the client, hashing it as the pull pipeline does.
fn stream_blob(
    c: &Client,
    r: &ImageRef,
    desc: &Descriptor,
) -> Result<(Digest, u64, u32), RegistryError> {
    let reader = c.fetch_blob(r, desc)?;
    let mut hashing = HashingReader::new(reader);
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| builder::registry::into_registry_error(e, "stream"))?;
    let resumes = hashing.get_mut().resumes();
    let (digest, n) = hashing.finish().unwrap();
    Ok((digest, n, resumes))
}

// ---------------------------------------------------------------- real registry

#[test]
fn pulls_a_fixture_from_a_plain_registry() {
    let fx = fixtures::ensure().get("busybox");
    let reg = Registry::shared();
    reg.push_fixture(fx, "client/busybox:latest");
    let c = client();
    let r = ImageRef::parse(&reg.reference("client/busybox:latest")).unwrap();

    let resolved = c.resolve(&r, &Platform::host()).unwrap();
    assert!(resolved.index.is_none());
    assert_eq!(
        resolved.manifest.bytes, fx.manifest_bytes,
        "manifest bytes as pushed"
    );
    assert_eq!(resolved.manifest.digest.to_string(), fx.digest());
    let image = fx.image();
    assert_eq!(
        resolved.parsed.config.digest.to_string(),
        image.config_digest
    );

    let config = c
        .fetch_blob_verified_bytes(&r, &resolved.parsed.config)
        .unwrap();
    assert_eq!(Digest::of_bytes(&config).to_string(), image.config_digest);
    assert_eq!(resolved.parsed.layers.len(), image.layers.len());
    for layer in &resolved.parsed.layers {
        let (digest, size, resumes) = stream_blob(&c, &r, layer).unwrap();
        assert_eq!(digest, layer.digest);
        assert_eq!(size, layer.size);
        assert_eq!(resumes, 0);
    }

    // By digest, the same bytes; pinned references are verified.
    let pinned = r.with_digest(resolved.manifest.digest.clone());
    assert_eq!(c.fetch_manifest(&pinned).unwrap().bytes, fx.manifest_bytes);
}

#[test]
fn resolves_each_platform_of_an_index() {
    let fx = fixtures::ensure().get("multiarch");
    let reg = Registry::shared();
    reg.push_fixture(fx, "client/multiarch:latest");
    let c = client();
    let r = ImageRef::parse(&reg.reference("client/multiarch:latest")).unwrap();
    for platform in ["linux/amd64", "linux/arm64"] {
        let want = Platform::parse(platform).unwrap();
        let resolved = c.resolve(&r, &want).unwrap();
        let index = resolved.index.as_ref().expect("the tag names an index");
        assert_eq!(index.digest.to_string(), fx.digest());
        assert!(index.media_type.is_index());
        assert_eq!(
            resolved.manifest.digest.to_string(),
            fx.platform(platform).manifest_digest,
            "{platform}"
        );
        assert!(want.matches(resolved.platform.as_ref().unwrap()));
    }
    let err = c
        .resolve(&r, &Platform::parse("linux/s390x").unwrap())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "no manifest for platform linux/s390x in `{r}`; available: linux/amd64, linux/arm64"
        )),
        "{msg}"
    );
}

#[test]
fn reads_docker_schema2_manifests() {
    let fx = fixtures::ensure().get("docker");
    let reg = Registry::shared();
    reg.push_fixture(fx, "client/docker:latest");
    let c = client();
    let r = ImageRef::parse(&reg.reference("client/docker:latest")).unwrap();
    let m = c.fetch_manifest(&r).unwrap();
    assert_eq!(m.media_type, MediaType::DockerManifest);
    assert_eq!(m.bytes, fx.manifest_bytes);
    let resolved = c.resolve(&r, &Platform::host()).unwrap();
    let config = c
        .fetch_blob_verified_bytes(&r, &resolved.parsed.config)
        .unwrap();
    assert_eq!(
        Digest::of_bytes(&config).to_string(),
        fx.image().config_digest
    );
}

#[test]
fn missing_things_are_404s_with_the_registry_message() {
    let reg = Registry::shared();
    reg.push_fixture(fixtures::ensure().get("busybox"), "client/busybox:latest");
    let c = client();
    let r = ImageRef::parse(&reg.reference("client/busybox:no-such-tag")).unwrap();
    let err = c.fetch_manifest(&r).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("fetch manifest `no-such-tag` of"), "{msg}");
    assert!(msg.contains("HTTP 404: MANIFEST_UNKNOWN"), "{msg}");

    let missing = Descriptor::new("x", Digest::of_bytes(b"not there"), 9);
    let r = ImageRef::parse(&reg.reference("client/busybox:latest")).unwrap();
    let err = c.fetch_blob(&r, &missing).err().expect("missing blob");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("BLOB_UNKNOWN"), "{err}");
}

#[test]
fn tls_registry_with_basic_auth() {
    let reg = Registry::start_tls_auth("tlsuser", "tlspass");
    reg.push_fixture(fixtures::ensure().get("busybox"), "secure/busybox:latest");
    let cert_dir = reg.cert_dir.clone().unwrap();
    let r = ImageRef::parse(&reg.reference("secure/busybox:latest")).unwrap();
    let good = Credential::new("tlsuser", "tlspass");

    // Credentials from an auth.json, CA from --cert-dir.
    let tmp = tempfile::tempdir().unwrap();
    let auth_file = tmp.path().join("auth.json");
    credentials::store_in(&auth_file, &reg.addr, &good).unwrap();
    let c = client_with(|o| {
        o.cert_dir = Some(cert_dir.clone());
        o.auth_files = Some(AuthFiles::single(&auth_file));
    });
    c.ping(&reg.addr).unwrap();
    let resolved = c.resolve(&r, &Platform::host()).unwrap();
    let layer = &resolved.parsed.layers[0];
    assert_eq!(stream_blob(&c, &r, layer).unwrap().0, layer.digest);

    // The CA found in a certs.d-style directory per host:port.
    let certs_d = tmp.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&reg.addr)).unwrap();
    std::fs::copy(
        cert_dir.join("ca.crt"),
        certs_d.join(&reg.addr).join("ca.crt"),
    )
    .unwrap();
    let c = client_with(|o| {
        o.certs_dirs = vec![certs_d.clone()];
        o.credentials = Some(good.clone());
    });
    c.fetch_manifest(&r).unwrap();

    // Without the CA: refused, and not silently downgraded to plain HTTP
    // although the registry is on loopback.
    let err = client_with(|o| o.credentials = Some(good.clone()))
        .fetch_manifest(&r)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::CertificateRejected { .. }),
        "{}",
        chain(&err)
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("/etc/containers/certs.d/{}/ca.crt", reg.addr)),
        "{msg}"
    );
    assert!(msg.contains("--tls-verify=false"), "{msg}");

    // --tls-verify=false accepts the unknown certificate.
    let c = client_with(|o| {
        o.tls_verify = Some(false);
        o.credentials = Some(good.clone());
    });
    c.fetch_manifest(&r).unwrap();

    // No credentials, wrong credentials.
    let err = client_with(|o| o.cert_dir = Some(cert_dir.clone()))
        .fetch_manifest(&r)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationRequired { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("run `builder login {}`", reg.addr)),
        "{err}"
    );
    let bad = client_with(|o| {
        o.cert_dir = Some(cert_dir.clone());
        o.credentials = Some(Credential::new("tlsuser", "wrong"));
    });
    let err = bad.ping(&reg.addr).unwrap_err();
    assert!(
        matches!(err, RegistryError::CredentialsRejected { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("credentials rejected by `{}`", reg.addr)),
        "{err}"
    );
}

#[test]
fn faults_in_front_of_a_real_registry() {
    let fx = fixtures::ensure().get("busybox");
    let reg = Registry::shared();
    reg.push_fixture(fx, "client/busybox:latest");
    let proxy = FaultProxy::forward(&reg.addr);
    proxy.require_bearer(Some(("tok-user", "tok-pass")), 300);
    let c = client_with(|o| o.credentials = Some(Credential::new("tok-user", "tok-pass")));
    let r = ImageRef::parse(&format!("{}/client/busybox:latest", proxy.addr())).unwrap();

    // A 503 on the manifest, then a cut in the middle of the layer.
    proxy.inject(Some("GET"), "/manifests/", Fault::Status(503), Some(1));
    let resolved = c.resolve(&r, &Platform::host()).unwrap();
    assert_eq!(resolved.manifest.bytes, fx.manifest_bytes);
    let layer = resolved.parsed.layers[0].clone();
    assert!(layer.size > 20_000, "busybox layer is {} bytes", layer.size);
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(10_000), Some(1));
    let (digest, size, resumes) = stream_blob(&c, &r, &layer).unwrap();
    assert_eq!(
        (digest, size, resumes),
        (layer.digest.clone(), layer.size, 1)
    );
    let log = proxy.log();
    let ranged: Vec<_> = log.iter().filter(|e| e.range.is_some()).collect();
    assert_eq!(ranged.len(), 1, "{}", proxy.log_text());
    assert_eq!(ranged[0].range.as_deref(), Some("bytes=10000-"));
    assert_eq!(ranged[0].status, 206, "docker-registry serves the range");
    assert_eq!(
        proxy.count("GET", "/token"),
        1,
        "one token for the repository:\n{}",
        proxy.log_text()
    );

    // A tampered blob streams, and the hash the caller computes shows it.
    proxy.inject(Some("GET"), "/blobs/", Fault::Tamper, Some(1));
    let (digest, size, _) = stream_blob(&c, &r, &layer).unwrap();
    assert_eq!(size, layer.size);
    assert_ne!(digest, layer.digest);
    proxy.inject(Some("GET"), "/blobs/", Fault::Tamper, Some(1));
    let err = c
        .fetch_blob_verified_bytes(&r, &resolved.parsed.config)
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &resolved.parsed.config.digest);
            assert_ne!(actual, expected);
        }
        other => panic!("want a digest mismatch, got {other}"),
    }
}

// ---------------------------------------------------------------- auth, via the proxy

#[test]
fn bearer_tokens_are_fetched_once_per_scope_and_cached() {
    let proxy = FaultProxy::canned();
    proxy.require_bearer(None, 300);
    let a = canned_image(&proxy, "team/a", 1000);
    let b = canned_image(&proxy, "team/b", 1000);
    let c = client();

    c.fetch_manifest(&a.reference).unwrap();
    c.fetch_blob_verified_bytes(&a.reference, &a.config)
        .unwrap();
    assert_eq!(
        stream_blob(&c, &a.reference, &a.layer).unwrap().0,
        a.layer.digest
    );
    assert_eq!(proxy.count("GET", "/token"), 1, "{}", proxy.log_text());
    let token_req = proxy
        .log()
        .into_iter()
        .find(|e| e.path.starts_with("/token"))
        .unwrap();
    assert!(
        token_req.path.contains("service=fault-proxy"),
        "{}",
        token_req.path
    );
    assert!(
        token_req
            .path
            .contains("scope=repository%3Ateam%2Fa%3Apull"),
        "{}",
        token_req.path
    );
    assert_eq!(
        token_req.authorization, None,
        "anonymous: no Basic to the realm"
    );

    // Another repository is another scope: one more token, fetched up front
    // (the challenge is remembered), so no 401 on the way.
    proxy.clear_log();
    c.fetch_manifest(&b.reference).unwrap();
    assert_eq!(proxy.count("GET", "/token"), 1, "{}", proxy.log_text());
    assert!(
        proxy.log().iter().all(|e| e.status != 401),
        "{}",
        proxy.log_text()
    );
    // Every registry request carried a token.
    assert!(
        proxy
            .log()
            .iter()
            .filter(|e| e.path.starts_with("/v2/team/"))
            .all(|e| e
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer tok-")))
    );

    // A revoked token is replaced after one 401.
    proxy.revoke_tokens();
    proxy.clear_log();
    c.fetch_manifest(&a.reference).unwrap();
    assert_eq!(proxy.count("GET", "/token"), 1, "{}", proxy.log_text());
    assert_eq!(proxy.count("GET", "/manifests/"), 2, "{}", proxy.log_text());
}

#[test]
fn short_lived_tokens_are_refetched() {
    let proxy = FaultProxy::canned();
    // A 1 s token is inside the expiry margin: never reused.
    proxy.require_bearer(None, 1);
    let img = canned_image(&proxy, "short", 100);
    let c = client();
    c.fetch_manifest(&img.reference).unwrap();
    c.fetch_manifest(&img.reference).unwrap();
    assert_eq!(proxy.count("GET", "/token"), 2, "{}", proxy.log_text());
    // Only the scheme probe saw a 401; no request went out with a stale token.
    assert!(
        proxy
            .log()
            .iter()
            .all(|e| e.status != 401 || e.path == "/v2/"),
        "{}",
        proxy.log_text()
    );
}

#[test]
fn oauth_style_access_tokens_are_accepted() {
    let proxy = FaultProxy::canned();
    proxy.require_bearer_oauth_style(0);
    let img = canned_image(&proxy, "oauth", 100);
    client().fetch_manifest(&img.reference).unwrap();
}

#[test]
fn token_endpoint_with_credentials() {
    let proxy = FaultProxy::canned();
    proxy.require_bearer(Some(("alice", "s3cret")), 300);
    let img = canned_image(&proxy, "private/app", 100);
    let registry = proxy.addr().to_string();

    let err = client().fetch_manifest(&img.reference).unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationRequired { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("authentication required by `{registry}`")),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!("; run `builder login {registry}`")),
        "{msg}"
    );

    let err = client_with(|o| o.credentials = Some(Credential::new("alice", "nope")))
        .fetch_manifest(&img.reference)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::CredentialsRejected { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("get a token for `repository:private/app:pull`"),
        "{err}"
    );

    // Stored credentials (auth.json written by `credentials::store_in`).
    let tmp = tempfile::tempdir().unwrap();
    let auth_file = tmp.path().join("auth.json");
    credentials::store_in(&auth_file, &registry, &Credential::new("alice", "s3cret")).unwrap();
    let c = client_with(|o| o.auth_files = Some(AuthFiles::single(&auth_file)));
    proxy.clear_log();
    c.fetch_manifest(&img.reference).unwrap();
    c.ping(&registry).unwrap();
    let token_reqs: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.path.starts_with("/token"))
        .collect();
    assert!(!token_reqs.is_empty());
    let basic = format!("Basic {}", Credential::new("alice", "s3cret").basic_token());
    assert!(
        token_reqs
            .iter()
            .all(|e| e.authorization.as_deref() == Some(basic.as_str()))
    );
    // The registry itself only ever sees the token, never the password.
    assert!(
        proxy
            .log()
            .iter()
            .filter(|e| e.path.starts_with("/v2/"))
            .all(|e| e
                .authorization
                .as_deref()
                .is_none_or(|a| a.starts_with("Bearer ")))
    );
}

#[test]
fn basic_auth_challenge() {
    let proxy = FaultProxy::canned();
    proxy.require_basic("bob", "pw");
    let img = canned_image(&proxy, "basic", 100);
    let c = client_with(|o| o.credentials = Some(Credential::new("bob", "pw")));
    c.fetch_manifest(&img.reference).unwrap();
    // The probe learned the challenge: the first real request already
    // carries the credentials.
    let manifest_gets: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|e| e.path.contains("/manifests/"))
        .collect();
    assert_eq!(manifest_gets.len(), 1, "{}", proxy.log_text());
    assert_eq!(manifest_gets[0].status, 200);

    let err = client().fetch_manifest(&img.reference).unwrap_err();
    assert!(
        matches!(err, RegistryError::AuthenticationRequired { .. }),
        "{err}"
    );
    let err = client_with(|o| o.credentials = Some(Credential::new("bob", "bad")))
        .fetch_manifest(&img.reference)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::CredentialsRejected { .. }),
        "{err}"
    );
}

#[test]
fn redirects_to_another_origin_drop_credentials() {
    let registry = FaultProxy::canned();
    registry.require_bearer(None, 300);
    let cdn = FaultProxy::canned();
    let img = canned_image(&registry, "redirected", 50_000);
    cdn.put_blob("redirected", &img.layer_bytes);
    registry.inject(Some("GET"), "/blobs/", Fault::Redirect(cdn.url()), None);

    let c = client();
    let (digest, size, _) = stream_blob(&c, &img.reference, &img.layer).unwrap();
    assert_eq!((digest, size), (img.layer.digest.clone(), img.layer.size));

    let at_registry: Vec<_> = registry
        .log()
        .into_iter()
        .filter(|e| e.path.contains("/blobs/"))
        .collect();
    assert_eq!(at_registry.len(), 1, "{}", registry.log_text());
    assert!(
        at_registry[0]
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Bearer ")
    );
    let at_cdn = cdn.log();
    assert_eq!(at_cdn.len(), 1, "{}", cdn.log_text());
    assert!(at_cdn[0].path.ends_with("?redirected=1"));
    assert_eq!(
        at_cdn[0].authorization, None,
        "the token must not reach the CDN"
    );

    // A cut at the CDN resumes through the registry's redirect again.
    cdn.inject(Some("GET"), "/blobs/", Fault::CutAfter(20_000), Some(1));
    cdn.clear_log();
    let (digest, _, resumes) = stream_blob(&c, &img.reference, &img.layer).unwrap();
    assert_eq!((digest, resumes), (img.layer.digest.clone(), 1));
    assert_eq!(
        cdn.log()[1].range.as_deref(),
        Some("bytes=20000-"),
        "{}",
        cdn.log_text()
    );
    assert!(cdn.log().iter().all(|e| e.authorization.is_none()));
}

// ---------------------------------------------------------------- retries and resumption

#[test]
fn server_errors_are_retried_then_reported() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "flaky", 100);
    let c = client_with(|o| o.max_retries = 3);

    proxy.inject(Some("GET"), "/manifests/", Fault::Status(503), Some(2));
    c.fetch_manifest(&img.reference).unwrap();
    assert_eq!(proxy.count("GET", "/manifests/"), 3, "{}", proxy.log_text());

    proxy.clear_log();
    proxy.inject(Some("GET"), "/manifests/", Fault::Status(500), None);
    let err = c.fetch_manifest(&img.reference).unwrap_err();
    assert_eq!(err.status(), Some(500), "{err}");
    assert!(
        err.to_string()
            .ends_with("HTTP 500: INJECTED: injected by the fault proxy"),
        "{err}"
    );
    assert_eq!(
        proxy.count("GET", "/manifests/"),
        4,
        "1 + max_retries attempts:\n{}",
        proxy.log_text()
    );

    // A 4xx other than 429 is not retried.
    proxy.clear_faults();
    proxy.clear_log();
    proxy.inject(Some("GET"), "/manifests/", Fault::Status(403), None);
    assert_eq!(
        c.fetch_manifest(&img.reference).unwrap_err().status(),
        Some(403)
    );
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
}

#[test]
fn retry_after_is_honoured_when_short() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "limited", 100);
    let c = client();

    proxy.inject(
        Some("GET"),
        "/manifests/",
        Fault::StatusRetryAfter(429, 1),
        Some(1),
    );
    let start = Instant::now();
    c.fetch_manifest(&img.reference).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );

    proxy.clear_log();
    proxy.inject(
        Some("GET"),
        "/manifests/",
        Fault::StatusRetryAfter(429, 3600),
        Some(1),
    );
    let start = Instant::now();
    let err = c.fetch_manifest(&img.reference).unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(proxy.count("GET", "/manifests/"), 1);
}

#[test]
fn cut_blob_transfers_resume_with_range() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "cut", 300_000);
    let c = client();

    // Two cuts in a row, each after some progress.
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(100_000), Some(1));
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(50_000), Some(1));
    let mut reader = c.fetch_blob(&img.reference, &img.layer).unwrap();
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, img.layer_bytes);
    assert_eq!(reader.resumes(), 2);
    let ranges: Vec<_> = proxy
        .log()
        .into_iter()
        .filter_map(|e| e.range.map(|r| (r, e.status)))
        .collect();
    assert_eq!(
        ranges,
        vec![
            ("bytes=100000-".to_string(), 206),
            ("bytes=150000-".to_string(), 206)
        ]
    );

    // A server that ignores Range: the reader skips what it already has.
    proxy.clear_log();
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(70_000), Some(1));
    proxy.inject(Some("GET"), "/blobs/", Fault::IgnoreRange, Some(1));
    let mut bytes = Vec::new();
    let mut reader = c.fetch_blob(&img.reference, &img.layer).unwrap();
    reader.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, img.layer_bytes);
    let statuses: Vec<u16> = proxy.log().iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![200, 200], "{}", proxy.log_text());
}

#[test]
fn stalled_transfers_time_out_and_resume() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "stall", 200_000);
    let c = client_with(|o| o.read_timeout = Duration::from_millis(300));
    proxy.inject(
        Some("GET"),
        "/blobs/",
        Fault::StallAfter(80_000, Duration::from_secs(5)),
        Some(1),
    );
    let start = Instant::now();
    let (digest, _, resumes) = stream_blob(&c, &img.reference, &img.layer).unwrap();
    assert_eq!((digest, resumes), (img.layer.digest.clone(), 1));
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let ranges: Vec<_> = proxy.log().into_iter().filter_map(|e| e.range).collect();
    assert_eq!(
        ranges,
        vec!["bytes=80000-".to_string()],
        "{}",
        proxy.log_text()
    );
}

#[test]
fn transfers_that_never_progress_fail_after_the_retries() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "dead", 10_000);
    let c = client_with(|o| o.max_retries = 2);
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(4_000), Some(1));
    proxy.inject(Some("GET"), "/blobs/", Fault::CutAfter(0), None);
    let mut reader = c.fetch_blob(&img.reference, &img.layer).unwrap();
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    let err = builder::registry::into_registry_error(err, "x");
    assert!(
        matches!(
            err,
            RegistryError::Interrupted {
                offset: 4000,
                size: 10000,
                ..
            }
        ),
        "{}",
        chain(&err)
    );
    assert!(
        err.to_string()
            .contains("the transfer broke off at byte 4000 of 10000"),
        "{err}"
    );
    // The first request, then max_retries resumptions: the break after
    // 4000 bytes is the first failure, each resumption that brings nothing
    // another.
    assert_eq!(proxy.count("GET", "/blobs/"), 3, "{}", proxy.log_text());
}

#[test]
fn blob_sizes_must_match_the_descriptor() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "sizes", 1000);
    let c = client();
    for wrong in [999, 1001] {
        let desc = Descriptor::new(
            img.layer.media_type.clone(),
            img.layer.digest.clone(),
            wrong,
        );
        let err = c
            .fetch_blob(&img.reference, &desc)
            .err()
            .expect("size mismatch");
        assert!(
            matches!(err, RegistryError::SizeMismatch { expected, actual: 1000, .. } if expected == wrong),
            "{err}"
        );
    }
    // Configs must hash to their digest.
    proxy.inject(Some("GET"), "/blobs/", Fault::Tamper, Some(1));
    let err = c
        .fetch_blob_verified_bytes(&img.reference, &img.config)
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expected `{}`", img.config.digest)),
        "{msg}"
    );
}

// ---------------------------------------------------------------- manifests

#[test]
fn manifest_digests_are_verified() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "verify", 100);
    let c = client();
    let pinned = img
        .reference
        .with_digest(Digest::parse(&img.manifest_digest).unwrap());
    let m = c.fetch_manifest(&pinned).unwrap();
    assert_eq!(m.digest.to_string(), img.manifest_digest);
    assert_eq!(m.media_type, MediaType::OciManifest);

    proxy.inject(Some("GET"), "/manifests/", Fault::Tamper, Some(1));
    let err = c.fetch_manifest(&pinned).unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");

    // By tag, a Docker-Content-Digest that disagrees with the bytes.
    let other = format!("sha256:{}", "ab".repeat(32));
    proxy.inject(
        Some("GET"),
        "/manifests/latest",
        Fault::SetHeader("Docker-Content-Digest", Some(other.clone())),
        Some(1),
    );
    let err = c.fetch_manifest(&img.reference).unwrap_err();
    assert!(
        matches!(err, RegistryError::ContentDigestMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&other), "{err}");

    // Content-Type missing: the document's mediaType decides.
    proxy.inject(
        Some("GET"),
        "/manifests/",
        Fault::SetHeader("Content-Type", None),
        Some(1),
    );
    assert_eq!(
        c.fetch_manifest(&img.reference).unwrap().media_type,
        MediaType::OciManifest
    );
}

#[test]
fn index_platform_errors_list_what_is_available() {
    let proxy = FaultProxy::canned();
    let amd = canned_image(&proxy, "multi", 100);
    let arm = canned_image(&proxy, "multi", 200);
    let entry = |img: &CannedImage, platform: serde_json::Value| {
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": img.config, "layers": [img.layer],
        }))
        .unwrap();
        let digest = proxy.put_manifest(
            "multi",
            None,
            "application/vnd.oci.image.manifest.v1+json",
            &m,
        );
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": digest, "size": m.len(), "platform": platform})
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [
            entry(&amd, serde_json::json!({"os": "linux", "architecture": "amd64"})),
            entry(&arm, serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})),
        ],
    });
    proxy.put_manifest(
        "multi",
        Some("latest"),
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    let c = client();
    let r = ImageRef::parse(&format!("{}/multi:latest", proxy.addr())).unwrap();
    let arm64 = c
        .resolve(&r, &Platform::parse("linux/arm64").unwrap())
        .unwrap();
    assert_eq!(arm64.parsed.layers[0].digest, arm.layer.digest);
    assert_eq!(
        arm64.index.unwrap().media_type,
        MediaType::DockerManifestList
    );
    let parsed: Manifest = serde_json::from_slice(&arm64.manifest.bytes).unwrap();
    assert_eq!(parsed.config.digest, arm.config.digest);

    let err = c
        .resolve(&r, &Platform::parse("linux/s390x").unwrap())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no manifest for platform linux/s390x in `{r}`; available: linux/amd64, linux/arm64/v8"
        )
    );
}

// ---------------------------------------------------------------- transport

#[test]
fn loopback_registries_fall_back_to_plain_http() {
    let proxy = FaultProxy::canned();
    let img = canned_image(&proxy, "plain", 100);
    let port = proxy.addr().rsplit(':').next().unwrap().to_string();

    // 127.0.0.1 and localhost: HTTPS fails (not TLS), HTTP works; the probe
    // happens once per client and registry.
    let c = client();
    c.fetch_manifest(&img.reference).unwrap();
    c.fetch_manifest(&img.reference).unwrap();
    assert_eq!(
        proxy.count("GET", "/v2/"),
        3,
        "one probe, two manifests:\n{}",
        proxy.log_text()
    );
    let local = ImageRef::parse(&format!("localhost:{port}/plain:latest")).unwrap();
    c.fetch_manifest(&local).unwrap();

    // Required TLS: no fallback, and the error names the URL tried.
    let err = client_with(|o| o.tls_verify = Some(true))
        .fetch_manifest(&img.reference)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Transport { .. }),
        "{}",
        chain(&err)
    );
    assert!(
        err.to_string()
            .contains(&format!("request to `https://{}/v2/", proxy.addr())),
        "{err}"
    );

    // Nothing listening: a transport error after the retries.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let r = ImageRef::parse(&format!("{dead}/x:latest")).unwrap();
    let err = client().fetch_manifest(&r).unwrap_err();
    assert!(
        matches!(err, RegistryError::Transport { .. }),
        "{}",
        chain(&err)
    );
}
