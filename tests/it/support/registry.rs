//! Real `docker-registry` (CNCF distribution 2.8) instances on loopback.
//!
//! Each [`Registry`] is one `docker-registry serve` process on a free
//! `127.0.0.1` port with its storage in a scratch directory (see
//! [`super::scratch_root`]). Two variants: plain HTTP, and TLS with a CA
//! generated once per test process by the `openssl` CLI plus htpasswd (bcrypt)
//! basic auth. Dropping a `Registry` kills and reaps the process and removes
//! its storage; the process is also killed by the kernel if the test binary
//! dies first (see [`super::process`]).
//!
//! [`Registry::shared`] is one plain registry per test binary, for tests that
//! only need to pull fixtures: each fixture is pushed to it once.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::fixtures::Fixture;
use super::process;

/// A running docker-registry.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The CA certificate that signed the server certificate (TLS only).
    pub ca_cert: Option<PathBuf>,
    /// A directory holding only `ca.crt`, usable as `--cert-dir` (TLS only).
    pub cert_dir: Option<PathBuf>,
    /// The one htpasswd user (TLS only).
    pub credentials: Option<(String, String)>,
    child: Mutex<Child>,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
    /// `repo:tag` references already pushed (see `push_*`), so a shared
    /// registry gets each fixture once.
    pushed: Mutex<HashSet<String>>,
}

/// Files of the per-process test CA.
struct TlsMaterial {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start_plain() -> Registry {
        Self::start(None, None)
    }

    /// A TLS registry (certificate for `127.0.0.1` and `localhost`, signed by
    /// the per-run test CA) requiring HTTP basic auth as `user`/`pass`.
    pub fn start_tls_auth(user: &str, pass: &str) -> Registry {
        Self::start(
            Some(tls_material()),
            Some((user.to_string(), pass.to_string())),
        )
    }

    /// One plain registry shared by all tests of this process. It is never
    /// dropped; the kernel kills it when the test binary exits, and its
    /// storage lives in the per-process scratch root, swept by the next run.
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(Registry::start_plain)
    }

    fn start(tls: Option<&'static TlsMaterial>, credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("registry-")
            .tempdir_in(super::scratch_root())
            .expect("create registry scratch dir");
        let htpasswd = credentials.as_ref().map(|(user, pass)| {
            let mut cmd = Command::new("htpasswd");
            cmd.args(["-Bbn", user, pass]);
            let line = process::run_ok(cmd);
            let path = dir.path().join("htpasswd");
            fs::write(&path, line.trim_end().to_string() + "\n").expect("write htpasswd");
            path
        });
        let cert_dir = tls.map(|t| {
            let d = dir.path().join("certs");
            fs::create_dir_all(&d).expect("create cert dir");
            fs::copy(&t.ca_cert, d.join("ca.crt")).expect("copy ca.crt");
            d
        });
        let agent = http_agent(tls.map(|t| t.ca_cert.as_path()));

        // A port picked by binding :0 may be taken again before the registry
        // binds it (parallel tests); retry with a new one in that case.
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                config_yaml(dir.path(), &addr, tls, htpasswd.as_deref()),
            )
            .expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).expect("create registry log");
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log fd"))
                .stderr(log);
            let mut child = process::spawn(cmd).expect("spawn docker-registry (is it installed?)");
            let scheme = if tls.is_some() { "https" } else { "http" };
            let url = format!("{scheme}://{addr}/v2/");
            let mut exited = false;
            let ready = process::wait_for(Duration::from_secs(15), || {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    return Some(false);
                }
                // Any HTTP answer (200, or 401 with auth) means it serves.
                match agent.get(&url).call() {
                    Ok(resp) if [200, 401].contains(&resp.status().as_u16()) => Some(true),
                    _ => None,
                }
            });
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
            match ready {
                Some(true) => {
                    return Registry {
                        addr,
                        ca_cert: tls.map(|t| t.ca_cert.clone()),
                        cert_dir,
                        credentials,
                        child: Mutex::new(child),
                        dir,
                        agent,
                        pushed: Mutex::new(HashSet::new()),
                    };
                }
                _ => {
                    process::kill_and_wait(&mut child);
                    if exited && last_log.contains("address already in use") {
                        continue;
                    }
                    panic!("docker-registry did not come up on {addr}; its log:\n{last_log}");
                }
            }
        }
        panic!("docker-registry could not bind a free port; last log:\n{last_log}");
    }

    /// `https://ADDR` or `http://ADDR`.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `ADDR/REPO:TAG` for a `repo:tag` (or `repo@digest`) in this registry.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// PID of the registry process.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// The registry's own log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// GET `path` (e.g. `/v2/busybox/manifests/latest`) with this registry's
    /// credentials, if any. Returns the status and body.
    pub fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base_url()))
            .header("Accept", accept);
        if let Some((u, p)) = &self.credentials {
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            req = req.header("Authorization", format!("Basic {token}"));
        }
        let mut resp = req
            .call()
            .unwrap_or_else(|e| panic!("GET {path} on {}: {e}", self.addr));
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("read body");
        (status, body)
    }

    /// `skopeo` flags that let it write to this registry.
    pub fn skopeo_dest_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        match &self.cert_dir {
            Some(d) => flags.push(format!("--dest-cert-dir={}", d.display())),
            None => flags.push("--dest-tls-verify=false".into()),
        }
        if let Some((u, p)) = &self.credentials {
            flags.push(format!("--dest-creds={u}:{p}"));
        }
        flags
    }

    /// Pushes a fixture to `ADDR/repo_tag` (every platform of an index),
    /// keeping its manifest digests. Pushing the same `repo_tag` twice is a
    /// no-op, so tests sharing a registry can all call it.
    pub fn push_fixture(&self, fixture: &Fixture, repo_tag: &str) {
        self.push_source(&fixture.source, repo_tag);
    }

    /// Pushes `oci:LAYOUT:TAG` to `ADDR/repo_tag` (see [`Self::push_source`]).
    pub fn push_oci(&self, layout: &Path, tag: &str, repo_tag: &str) {
        self.push_source(&format!("oci:{}:{tag}", layout.display()), repo_tag);
    }

    /// `skopeo copy --all --preserve-digests SOURCE docker://ADDR/repo_tag`,
    /// once per `repo_tag`.
    pub fn push_source(&self, source: &str, repo_tag: &str) {
        let mut pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
        if pushed.contains(repo_tag) {
            return;
        }
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--quiet", "--preserve-digests"])
            .args(self.skopeo_dest_flags())
            .arg(source)
            .arg(format!("docker://{}", self.reference(repo_tag)));
        process::run_ok(cmd);
        pushed.insert(repo_tag.to_string());
    }

    /// The digest the registry reports for `repo:reference` (HEAD-like GET of
    /// the manifest, accepting every manifest type).
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> String {
        let (status, body) = self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            MANIFEST_ACCEPT,
        );
        assert_eq!(
            status,
            200,
            "GET manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&body)
        );
        super::fixtures::sha256_digest(&body)
    }
}

/// Every manifest media type, for GETs that must not trigger conversion.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

impl Drop for Registry {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        process::kill_and_wait(child);
        // `dir` (storage, config, log) is removed when the TempDir drops.
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn config_yaml(
    dir: &Path,
    addr: &str,
    tls: Option<&TlsMaterial>,
    htpasswd: Option<&Path>,
) -> String {
    let mut y = format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: builder-tests-not-a-secret
",
        data = dir.join("data").display()
    );
    if let Some(t) = tls {
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            t.server_cert.display(),
            t.server_key.display()
        );
    }
    if let Some(h) = htpasswd {
        y += &format!(
            "auth:\n  htpasswd:\n    realm: builder-tests\n    path: {}\n",
            h.display()
        );
    }
    y
}

/// The HTTP client used for readiness checks and [`Registry::get`]; trusts
/// only `ca` when given.
fn http_agent(ca: Option<&Path>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)));
    if let Some(ca) = ca {
        let pem = fs::read(ca).expect("read CA cert");
        let cert = ureq::tls::Certificate::from_pem(&pem).expect("parse CA cert");
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
                .build(),
        );
    }
    config.build().new_agent()
}

/// The per-process test CA and a server certificate for 127.0.0.1 and
/// localhost, made with the `openssl` CLI (EC P-256: fast to generate).
fn tls_material() -> &'static TlsMaterial {
    static TLS: OnceLock<TlsMaterial> = OnceLock::new();
    TLS.get_or_init(|| {
        let dir = super::scratch_root().join("tls");
        fs::create_dir_all(&dir).expect("create tls dir");
        let p = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let mut cmd = Command::new("openssl");
            cmd.args(args).current_dir(&dir);
            process::run_ok(cmd);
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=builder test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        fs::write(
            p("server.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("write server.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TlsMaterial {
            ca_cert: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_registry_serves_v2_and_dies_on_drop() {
        let reg = Registry::start_plain();
        let (status, _) = reg.get("/v2/", "application/json");
        assert_eq!(status, 200, "registry log:\n{}", reg.log());
        let pid = reg.pid();
        let data = reg.dir.path().to_path_buf();
        drop(reg);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "docker-registry {pid} survived drop"
        );
        assert!(
            !data.exists(),
            "registry storage {} survived drop",
            data.display()
        );
    }

    #[test]
    fn tls_registry_requires_auth_and_verifies_with_the_test_ca() {
        let reg = Registry::start_tls_auth("alice", "s3cret");
        assert!(reg.base_url().starts_with("https://"));
        let (status, _) = reg.get("/v2/", "application/json");
        assert_eq!(
            status,
            200,
            "with credentials; registry log:\n{}",
            reg.log()
        );
        let anon = http_agent(reg.ca_cert.as_deref());
        let resp = anon
            .get(format!("{}/v2/", reg.base_url()))
            .call()
            .expect("anonymous GET");
        assert_eq!(resp.status().as_u16(), 401);
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .expect("challenge header");
        assert!(
            challenge.to_str().unwrap().starts_with("Basic "),
            "{challenge:?}"
        );
        // An agent that does not trust the test CA must refuse the server.
        let untrusting = http_agent(None);
        assert!(
            untrusting
                .get(format!("{}/v2/", reg.base_url()))
                .call()
                .is_err()
        );
        assert!(reg.cert_dir.as_ref().unwrap().join("ca.crt").is_file());
    }

    #[test]
    fn shared_registry_is_one_process() {
        let a = Registry::shared();
        let b = Registry::shared();
        assert_eq!(a.addr, b.addr);
        assert_eq!(a.get("/v2/", "application/json").0, 200);
    }

    #[test]
    fn skopeo_pushes_an_oci_layout() {
        let reg = Registry::start_tls_auth("bob", "pw");
        let work = tempfile::tempdir_in(crate::support::scratch_root()).unwrap();
        let layout = work.path().join("layout");
        let umoci = |args: &[&str]| {
            let mut cmd = Command::new("umoci");
            cmd.args(args);
            process::run_ok(cmd);
        };
        let layout_s = layout.to_str().unwrap();
        umoci(&["init", "--layout", layout_s]);
        umoci(&["new", "--image", &format!("{layout_s}:empty")]);
        reg.push_oci(&layout, "empty", "tiny/empty:v1");
        let (status, body) = reg.get(
            "/v2/tiny/empty/manifests/v1",
            "application/vnd.oci.image.manifest.v1+json",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
    }
}
