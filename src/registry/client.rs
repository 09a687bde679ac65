//! The HTTP side of the registry client: options, one `ureq` agent per host,
//! scheme choice (HTTPS, or plain HTTP where allowed), redirects, retries,
//! and the 401 → authenticate → retry loop. `manifest.rs`, `blob.rs` and
//! `upload.rs` build on [`Client::execute`]. A request body ([`CallBody`])
//! is borrowed, never consumed, so every attempt (a retry, the resend after
//! a 401, a 307 redirect) sends the same bytes again; only calls marked
//! `retry` are resent after a failure, because POST/PATCH/PUT are not
//! idempotent in general (upload.rs recovers from failed chunks itself).
//!
//! Terms: the *registry* is the name in the image reference (`docker.io`,
//! `127.0.0.1:5000`); its *API host* is where requests go
//! (`registry-1.docker.io` for `docker.io`); the registry's *origin* is
//! scheme + API host. Credentials (`Authorization`) are only ever sent to the
//! registry's origin, or to a token realm that origin named: redirects are
//! followed by hand so that a blob redirect to a CDN never carries them
//! (ureq would drop them too, but would also use the registry's TLS settings
//! for the CDN host).
//!
//! Scheme: HTTPS always, except that a registry that allows plain HTTP
//! (`tls_verify: Some(false)`, listed in `insecure_registries`, or a
//! loopback registry — `localhost`, `127.0.0.0/8`, `::1` — unless
//! `tls_verify: Some(true)`) is probed once per client: `GET /v2/` over
//! HTTPS, and over HTTP if that fails for any reason other than a rejected
//! certificate (a rejected certificate means a TLS server is there, and
//! silently downgrading would hide the problem). The answer is cached.
//!
//! Proxies: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY` from the
//! environment (ureq's default), except that loopback hosts never use one.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, HeaderName, Method, Response, StatusCode, header};
use ureq::{Agent, SendBody};

use super::auth::{self, AuthCache, Challenge, TokenResponse};
use super::credentials::{AuthFiles, Credential};
use super::error::RegistryError;
use super::tls;
use crate::reference::{api_host, normalize_registry};

/// Redirect hops followed before giving up. Registries redirect a blob once
/// (to storage or a CDN); ten leaves room for chains without allowing loops.
pub const MAX_REDIRECTS: u32 = 10;

/// The most a `Retry-After` header may ask us to wait; a registry asking for
/// longer is treated as refusing, so a pull fails promptly with its status.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The most of an error response body read to find the registry's message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// Token responses are small JSON documents; anything bigger is not one.
const TOKEN_BODY_LIMIT: u64 = 1024 * 1024;

/// How the client talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `None`: verify certificates, allow plain HTTP for loopback
    /// registries. `Some(true)`: verify and require HTTPS everywhere.
    /// `Some(false)`: accept any certificate and allow plain HTTP.
    pub tls_verify: Option<bool>,
    /// A directory of `*.crt` CA files used for every registry instead of
    /// the per-host `certs_dirs` (`--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// Parents of per-host CA directories (`DIR/HOST:PORT/*.crt`).
    pub certs_dirs: Vec<PathBuf>,
    /// Registries that may use plain HTTP or unverified TLS: `host`,
    /// `host:port`, or `*.domain`. A `host` entry covers every port.
    pub insecure_registries: Vec<String>,
    /// Credentials used for every registry instead of stored ones.
    pub credentials: Option<Credential>,
    /// Where stored credentials are looked up; `None` means the default
    /// search list from the environment ([`AuthFiles::from_env`]).
    pub auth_files: Option<AuthFiles>,
    pub user_agent: String,
    /// Retries of an idempotent request after a connection error, a 5xx or
    /// a 429 (so `max_retries + 1` attempts), and of a blob transfer cut
    /// short without progress in between.
    pub max_retries: u32,
    /// The first retry's delay; it doubles per retry up to `max_retry_delay`.
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub connect_timeout: Duration,
    /// How long a read may wait for data before the connection counts as
    /// stalled (and a blob transfer is resumed on a new one).
    pub read_timeout: Duration,
    /// Blobs up to this size are uploaded in one PUT; bigger ones in PATCH
    /// chunks of this size, so a broken connection costs one chunk.
    pub upload_chunk_size: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            tls_verify: None,
            cert_dir: None,
            certs_dirs: tls::DEFAULT_CERTS_DIRS.iter().map(PathBuf::from).collect(),
            insecure_registries: Vec::new(),
            credentials: None,
            auth_files: None,
            user_agent: format!("builder/{}", env!("CARGO_PKG_VERSION")),
            max_retries: 4,
            retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            upload_chunk_size: super::upload::CHUNK_SIZE,
        }
    }
}

/// A registry client. Cheap to clone (an `Arc` inside); `Send + Sync`, so
/// several download threads share one client, its connections and tokens.
#[derive(Clone)]
pub struct Client {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) opts: RegistryOptions,
    auth_files: AuthFiles,
    /// One agent per (host, verify): each has its own TLS roots.
    agents: Mutex<HashMap<(String, bool), Agent>>,
    schemes: Mutex<HashMap<String, Scheme>>,
    /// Held while a scheme is probed, so that threads starting at once (a
    /// push's blob workers) wait for one probe instead of each probing.
    probing: Mutex<()>,
    auth: AuthCache,
    credentials: Mutex<HashMap<CredentialKey, Option<Credential>>>,
}

/// (registry, repository) of a credential lookup.
type CredentialKey = (String, Option<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
        }
    }
}

/// One logical request to a registry's API. `what` describes it for errors.
pub(super) struct Call<'a> {
    pub method: Method,
    pub registry: &'a str,
    /// For namespace-scoped credentials.
    pub repository: Option<&'a str>,
    /// The token scope (`repository:REPO:pull`); `None` for `/v2/`.
    pub scope: Option<String>,
    /// `/v2/…`, or an absolute URL the registry handed out (an upload's
    /// `Location`).
    pub path: String,
    pub headers: Vec<(HeaderName, String)>,
    pub body: CallBody<'a>,
    /// Whether the call may be resent after a connection error, a 5xx or a
    /// 429. GET and HEAD always may.
    pub retry: bool,
    pub what: &'a str,
}

/// The body of a request, borrowed so that it can be sent again.
#[derive(Clone, Copy)]
pub(super) enum CallBody<'a> {
    None,
    Bytes(&'a [u8]),
    /// `len` bytes of `file` from `offset`, read with `pread`, so the file's
    /// position is untouched and a resend reads the same range.
    File {
        file: &'a File,
        offset: u64,
        len: u64,
    },
}

/// One request as `follow` and `send` see it: after scheme and auth are
/// settled.
struct Request<'a> {
    method: &'a Method,
    headers: &'a [(HeaderName, String)],
    body: CallBody<'a>,
    retry: bool,
    what: &'a str,
}

/// Reads a [`CallBody::File`] range.
struct FileRange<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before the range to send",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Client {
    pub fn new(opts: RegistryOptions) -> Self {
        let auth_files = opts.auth_files.clone().unwrap_or_else(AuthFiles::from_env);
        Self {
            inner: Arc::new(Inner {
                opts,
                auth_files,
                agents: Mutex::default(),
                schemes: Mutex::default(),
                probing: Mutex::default(),
                auth: AuthCache::default(),
                credentials: Mutex::default(),
            }),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.opts
    }

    /// `GET /v2/` with authentication: succeeds when the registry is
    /// reachable and accepts our credentials (or needs none). `builder
    /// login` uses it to check credentials before storing them.
    pub fn ping(&self, registry: &str) -> Result<(), RegistryError> {
        let registry = normalize_registry(registry);
        let what = format!("check registry `{registry}`");
        let call = Call {
            method: Method::GET,
            registry: &registry,
            repository: None,
            scope: None,
            path: "/v2/".into(),
            headers: Vec::new(),
            body: CallBody::None,
            retry: true,
            what: &what,
        };
        let resp = self.execute(&call)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(&what, resp))
        }
    }

    /// Sends `call` to its registry: picks the scheme, attaches known auth,
    /// follows redirects, retries transient failures, and answers one 401
    /// challenge. Returns the final response whatever its status, except a
    /// 401 that survives authentication, which becomes an error.
    pub(super) fn execute(&self, call: &Call) -> Result<Response<ureq::Body>, RegistryError> {
        let scheme = self.scheme(call.registry, call.what)?;
        let origin = format!("{}://{}", scheme.as_str(), api_host(call.registry));
        let url = if call.path.starts_with("https://") || call.path.starts_with("http://") {
            // An upload location: it may name another host (the registry's
            // storage), which then gets no credentials (see `follow`).
            self.refuse_plain_http(&call.path, call.what)?;
            call.path.clone()
        } else {
            format!("{origin}{}", call.path)
        };
        let mut authorization = self.known_authorization(call)?;
        let mut answered = false;
        loop {
            let auth = authorization.as_deref().map(|a| (a, origin.as_str()));
            let request = Request {
                method: &call.method,
                headers: &call.headers,
                body: call.body,
                retry: call.retry,
                what: call.what,
            };
            let (resp, final_url) = self.follow(&request, &url, auth)?;
            if resp.status() != StatusCode::UNAUTHORIZED || origin_of(&final_url) != origin {
                return Ok(resp);
            }
            if answered {
                return Err(self.unauthorized(call, resp));
            }
            answered = true;
            let header = www_authenticate(&resp);
            let challenges =
                auth::parse_challenges(&header).ok_or_else(|| RegistryError::BadChallenge {
                    what: call.what.to_string(),
                    registry: call.registry.to_string(),
                    header: header.clone(),
                })?;
            let Some(challenge) = auth::preferred(&challenges).cloned() else {
                return Err(self.unauthorized(call, resp));
            };
            self.inner
                .auth
                .put_challenge(call.registry, challenge.clone());
            if let Challenge::Bearer { .. } = challenge {
                // A cached token was refused (revoked, or expired early).
                self.inner
                    .auth
                    .forget_token(call.registry, call.scope.as_deref().unwrap_or(""));
            }
            match self.answer(call, &challenge)? {
                Some(a) => authorization = Some(a),
                None => return Err(self.unauthorized(call, resp)),
            }
        }
    }

    /// The absolute URL of `location` (a `Location` header) in the answer
    /// to a request for `base` (a `/v2/…` path of `registry`, or an
    /// absolute URL).
    pub(super) fn absolute_location(
        &self,
        registry: &str,
        base: &str,
        location: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let base = if base.starts_with("https://") || base.starts_with("http://") {
            base.to_string()
        } else {
            let scheme = self.scheme(registry, what)?;
            format!("{}://{}{base}", scheme.as_str(), api_host(registry))
        };
        resolve_location(&base, location).ok_or_else(|| RegistryError::InvalidResponse {
            what: what.to_string(),
            detail: format!("unusable location `{location}`"),
        })
    }

    /// The `Authorization` value to send before any 401: a cached token, a
    /// fresh token when the registry is known to want one, or Basic
    /// credentials when it is known to take them.
    fn known_authorization(&self, call: &Call) -> Result<Option<String>, RegistryError> {
        let scope_key = call.scope.as_deref().unwrap_or("");
        if let Some(token) = self.inner.auth.token(call.registry, scope_key) {
            return Ok(Some(format!("Bearer {token}")));
        }
        match self.inner.auth.challenge(call.registry) {
            Some(challenge) => self.answer(call, &challenge),
            None => Ok(None),
        }
    }

    /// The `Authorization` value that answers `challenge`, or `None` when we
    /// have nothing to answer it with (Basic without credentials).
    fn answer(&self, call: &Call, challenge: &Challenge) -> Result<Option<String>, RegistryError> {
        match challenge {
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => {
                let scope = call.scope.as_deref().or(scope.as_deref());
                let token = self.fetch_token(call, realm, service.as_deref(), scope)?;
                Ok(Some(format!("Bearer {token}")))
            }
            Challenge::Basic { .. } => Ok(self
                .credential(call.registry, call.repository)?
                .map(|c| format!("Basic {}", c.basic_token()))),
            Challenge::Other { .. } => Ok(None),
        }
    }

    /// Gets a token from `realm` (with Basic credentials when we have some)
    /// and caches it for the call's registry and scope.
    fn fetch_token(
        &self,
        call: &Call,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let what = match scope {
            Some(s) => format!("{}: get a token for `{s}` from `{realm}`", call.what),
            None => format!("{}: get a token from `{realm}`", call.what),
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(RegistryError::InvalidResponse {
                what,
                detail: format!("token realm `{realm}` is not an http(s) URL"),
            });
        }
        // Credentials go to the realm: never in clear text unless its host
        // may be spoken to in plain HTTP anyway.
        self.refuse_plain_http(realm, &what)?;
        let url = auth::token_url(realm, service, scope);
        let credential = self.credential(call.registry, call.repository)?;
        let basic = credential
            .as_ref()
            .map(|c| format!("Basic {}", c.basic_token()));
        let realm_origin = origin_of(realm);
        let auth = basic.as_deref().map(|b| (b, realm_origin.as_str()));
        let request = Request {
            method: &Method::GET,
            headers: &[],
            body: CallBody::None,
            retry: true,
            what: &what,
        };
        let (resp, _) = self.follow(&request, &url, auth)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let message = error_message(resp);
            return Err(if credential.is_some() {
                RegistryError::CredentialsRejected {
                    what,
                    registry: call.registry.to_string(),
                    message,
                }
            } else {
                RegistryError::AuthenticationRequired {
                    what,
                    registry: call.registry.to_string(),
                    message,
                }
            });
        }
        if !status.is_success() {
            return Err(status_error(&what, resp));
        }
        let body = read_limited(resp, TOKEN_BODY_LIMIT, &what)?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                what: what.clone(),
                detail: format!("token response is not the expected JSON: {e}"),
            })?;
        let token = parsed
            .token()
            .ok_or_else(|| RegistryError::InvalidResponse {
                what: what.clone(),
                detail: "token response has neither `token` nor `access_token`".into(),
            })?
            .to_string();
        self.inner.auth.put_token(
            call.registry,
            call.scope.as_deref().unwrap_or(""),
            token.clone(),
            parsed.lifetime(),
        );
        Ok(token)
    }

    /// The credential for a registry: the options' override, else the auth
    /// files (looked up once per client).
    fn credential(
        &self,
        registry: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credential>, RegistryError> {
        if let Some(c) = &self.inner.opts.credentials {
            return Ok(Some(c.clone()));
        }
        let key = (registry.to_string(), repository.map(str::to_string));
        if let Some(c) = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let found = self.inner.auth_files.lookup(registry, repository)?;
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    fn unauthorized(&self, call: &Call, resp: Response<ureq::Body>) -> RegistryError {
        let message = error_message(resp);
        let have_credentials =
            matches!(self.credential(call.registry, call.repository), Ok(Some(_)));
        if have_credentials {
            RegistryError::CredentialsRejected {
                what: call.what.to_string(),
                registry: call.registry.to_string(),
                message,
            }
        } else {
            RegistryError::AuthenticationRequired {
                what: call.what.to_string(),
                registry: call.registry.to_string(),
                message,
            }
        }
    }

    /// Sends a request and follows redirects. `auth` is an `Authorization`
    /// value and the one origin it may be sent to. Returns the final
    /// response and its URL.
    fn follow(
        &self,
        request: &Request,
        url: &str,
        auth: Option<(&str, &str)>,
    ) -> Result<(Response<ureq::Body>, String), RegistryError> {
        let what = request.what;
        let mut url = url.to_string();
        let mut method = request.method.clone();
        let mut body = request.body;
        for _ in 0..=MAX_REDIRECTS {
            let mut hop_headers = request.headers.to_vec();
            if let Some((value, origin)) = auth
                && origin_of(&url) == origin
            {
                hop_headers.push((header::AUTHORIZATION, value.to_string()));
            }
            let hop = Request {
                method: &method,
                headers: &hop_headers,
                body,
                retry: request.retry,
                what,
            };
            let resp = self.send(&hop, &url)?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok());
            match (status.as_u16(), location) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => {
                    let next = resolve_location(&url, location).ok_or_else(|| {
                        RegistryError::InvalidResponse {
                            what: what.to_string(),
                            detail: format!("unusable redirect location `{location}`"),
                        }
                    })?;
                    // A redirect must not downgrade a pull to plain HTTP.
                    self.refuse_plain_http(&next, what)?;
                    tracing::debug!(from = %url, to = %next, "following redirect");
                    if status == StatusCode::SEE_OTHER {
                        method = Method::GET;
                        body = CallBody::None;
                    }
                    url = next;
                }
                _ => return Ok((resp, url)),
            }
        }
        Err(RegistryError::TooManyRedirects {
            what: what.to_string(),
            url,
            max: MAX_REDIRECTS,
        })
    }

    /// One HTTP exchange, retried (for GET, HEAD and calls marked `retry`)
    /// on connection errors and on 429/5xx with exponential backoff,
    /// honouring a short `Retry-After`. A retryable status that outlasts the
    /// retries is returned as a response for the caller to report.
    fn send(&self, request: &Request, url: &str) -> Result<Response<ureq::Body>, RegistryError> {
        let method = request.method;
        let idempotent = request.retry || *method == Method::GET || *method == Method::HEAD;
        let max_retries = if idempotent {
            self.inner.opts.max_retries
        } else {
            0
        };
        let mut attempt = 0;
        loop {
            match self.send_once(request, url) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if attempt < max_retries && is_retryable_status(status) {
                        let wait = match retry_after(&resp) {
                            Some(d) if d > MAX_RETRY_AFTER => return Ok(resp),
                            Some(d) => d,
                            None => self.backoff(attempt),
                        };
                        tracing::debug!(%url, status, ?wait, attempt, "retrying");
                        drop(resp);
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    if attempt < max_retries && is_retryable_error(&e) {
                        let wait = self.backoff(attempt);
                        tracing::debug!(%url, error = %e, ?wait, attempt, "retrying");
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_error(request.what, url, e));
                }
            }
        }
    }

    fn send_once(&self, request: &Request, url: &str) -> Result<Response<ureq::Body>, ureq::Error> {
        let agent = self
            .agent_for(url)
            .map_err(|e| ureq::Error::Other(Box::new(e)))?;
        let mut req = http::Request::builder()
            .method(request.method.clone())
            .uri(url);
        for (name, value) in request.headers {
            req = req.header(name, value);
        }
        tracing::trace!(method = %request.method, %url, what = request.what, "request");
        match request.body {
            CallBody::None => agent.run(req.body(()).map_err(ureq::Error::Http)?),
            CallBody::Bytes(bytes) => agent.run(req.body(bytes).map_err(ureq::Error::Http)?),
            CallBody::File { file, offset, len } => {
                let mut range = FileRange {
                    file,
                    pos: offset,
                    end: offset + len,
                };
                // An explicit length: ureq would otherwise send a reader
                // chunked, which not every registry (or proxy) accepts.
                let req = req
                    .header(header::CONTENT_LENGTH, len.to_string())
                    .body(SendBody::from_reader(&mut range))
                    .map_err(ureq::Error::Http)?;
                agent.run(req)
            }
        }
    }

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let opts = &self.inner.opts;
        opts.retry_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(opts.max_retry_delay)
    }

    /// The agent for a URL's host, with that host's TLS trust.
    fn agent_for(&self, url: &str) -> Result<Agent, RegistryError> {
        let host = authority_of(url).to_ascii_lowercase();
        let verify = self.verify_tls(&host);
        let key = (host, verify);
        let mut agents = self.inner.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(agent) = agents.get(&key) {
            return Ok(agent.clone());
        }
        let opts = &self.inner.opts;
        let ca_files = if verify {
            tls::ca_files(&key.0, opts.cert_dir.as_deref(), &opts.certs_dirs)
        } else {
            Vec::new()
        };
        let tls_config = tls::config_for(verify, &ca_files)?;
        let mut config = Agent::config_builder();
        if is_loopback(&key.0) {
            // As Go's ProxyFromEnvironment does: a proxy cannot reach our
            // own loopback interface.
            config = config.proxy(None);
        }
        let config = config
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(opts.user_agent.as_str())
            // Blobs must arrive byte for byte as stored: their digest is of
            // the encoded bytes, and Range offsets count them.
            .accept_encoding("")
            .tls_config(tls_config)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .max_idle_connections_per_host(8)
            .build();
        let agent: Agent = config.into();
        agents.insert(key, agent.clone());
        Ok(agent)
    }

    /// Whether certificates of `host` are checked.
    fn verify_tls(&self, host: &str) -> bool {
        self.inner.opts.tls_verify != Some(false) && !self.is_insecure(host)
    }

    fn is_insecure(&self, host: &str) -> bool {
        let host = normalize_registry(host).to_ascii_lowercase();
        let bare = host_without_port(&host);
        self.inner.opts.insecure_registries.iter().any(|entry| {
            let entry = normalize_registry(entry).to_ascii_lowercase();
            if let Some(suffix) = entry.strip_prefix("*.") {
                return bare.ends_with(&format!(".{suffix}"));
            }
            let entry_has_port = host_without_port(&entry) != entry;
            entry == host || (!entry_has_port && entry == bare)
        })
    }

    /// Whether `registry` may be reached over plain HTTP.
    /// Errors when `url` is plain HTTP to a host that may not be spoken to
    /// that way (see [`Client::allows_http`]).
    fn refuse_plain_http(&self, url: &str, what: &str) -> Result<(), RegistryError> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Ok(());
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        if self.allows_http(host) {
            return Ok(());
        }
        Err(RegistryError::PlainHttpRefused {
            what: what.to_string(),
            url: url.to_string(),
            host: host.to_string(),
        })
    }

    fn allows_http(&self, registry: &str) -> bool {
        match self.inner.opts.tls_verify {
            Some(false) => true,
            Some(true) => false,
            None => self.is_insecure(api_host(registry)) || is_loopback(registry),
        }
    }

    /// The scheme for `registry`, probing once where plain HTTP is allowed.
    fn scheme(&self, registry: &str, what: &str) -> Result<Scheme, RegistryError> {
        let known = || {
            self.inner
                .schemes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(registry)
                .copied()
        };
        if let Some(s) = known() {
            return Ok(s);
        }
        if !self.allows_http(registry) {
            return Ok(Scheme::Https);
        }
        let _probing = self.inner.probing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = known() {
            return Ok(s);
        }
        let scheme = if self.allows_http(registry) {
            self.probe(registry, what)?
        } else {
            Scheme::Https
        };
        self.inner
            .schemes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_string(), scheme);
        Ok(scheme)
    }

    /// `GET /v2/` over HTTPS, then over HTTP if HTTPS fails other than by a
    /// rejected certificate; retried as a whole on connection errors. A 401
    /// seen here is remembered, so the first real request can authenticate
    /// up front.
    fn probe(&self, registry: &str, what: &str) -> Result<Scheme, RegistryError> {
        let host = api_host(registry);
        let https = format!("https://{host}/v2/");
        let http = format!("http://{host}/v2/");
        let get = Request {
            method: &Method::GET,
            headers: &[],
            body: CallBody::None,
            retry: true,
            what,
        };
        let mut attempt = 0;
        loop {
            let https_error = match self.send_once(&get, &https) {
                Ok(resp) => {
                    self.note_challenge(registry, &resp);
                    return Ok(Scheme::Https);
                }
                Err(e) if is_certificate_error(&e) => return Err(transport_error(what, &https, e)),
                Err(e) => e,
            };
            match self.send_once(&get, &http) {
                Ok(resp) => {
                    tracing::debug!(registry, error = %https_error, "using plain HTTP");
                    self.note_challenge(registry, &resp);
                    return Ok(Scheme::Http);
                }
                Err(http_error) => {
                    tracing::debug!(registry, %https_error, %http_error, "probe failed");
                    if attempt < self.inner.opts.max_retries && is_retryable_error(&http_error) {
                        std::thread::sleep(self.backoff(attempt));
                        attempt += 1;
                        continue;
                    }
                    return Err(transport_error(what, &https, https_error));
                }
            }
        }
    }

    fn note_challenge(&self, registry: &str, resp: &Response<ureq::Body>) {
        if resp.status() != StatusCode::UNAUTHORIZED {
            return;
        }
        if let Some(challenges) = auth::parse_challenges(&www_authenticate(resp))
            && let Some(c) = auth::preferred(&challenges)
        {
            self.inner.auth.put_challenge(registry, c.clone());
        }
    }
}

/// All `WWW-Authenticate` headers of a response, joined as one list.
fn www_authenticate(resp: &Response<ureq::Body>) -> String {
    resp.headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by registries).
fn retry_after(resp: &Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Errors worth another attempt: the network, not the peer's TLS or name.
fn is_retryable_error(e: &ureq::Error) -> bool {
    if rustls_error(e).is_some() {
        return false;
    }
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

fn rustls_error(e: &ureq::Error) -> Option<&rustls::Error> {
    match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Why the peer's TLS certificate was refused, if that is what `e` is.
pub fn rejected_certificate(e: &ureq::Error) -> Option<&rustls::CertificateError> {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(why)) => Some(why),
        _ => None,
    }
}

fn is_certificate_error(e: &ureq::Error) -> bool {
    matches!(rustls_error(e), Some(rustls::Error::InvalidCertificate(_)))
}

fn transport_error(what: &str, url: &str, source: ureq::Error) -> RegistryError {
    if is_certificate_error(&source) {
        RegistryError::CertificateRejected {
            what: what.to_string(),
            host: authority_of(url).to_string(),
            source,
        }
    } else {
        RegistryError::Transport {
            what: what.to_string(),
            url: url.to_string(),
            source,
        }
    }
}

/// A status error carrying the registry's message from the body.
pub(super) fn status_error(what: &str, resp: Response<ureq::Body>) -> RegistryError {
    let status = resp.status().as_u16();
    RegistryError::Status {
        what: what.to_string(),
        status,
        message: error_message(resp),
    }
}

/// The registry's explanation of an error response: `CODE: message` for
/// each entry of distribution's `{"errors": [...]}`, else the start of a
/// plain-text body.
pub(super) fn error_message(resp: Response<ureq::Body>) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(body) = resp
        .into_body()
        .into_with_config()
        .limit(ERROR_BODY_LIMIT)
        .read_to_vec()
    else {
        return String::new();
    };
    if let Ok(parsed) = serde_json::from_slice::<Errors>(&body) {
        return parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.starts_with('<') {
        // An HTML error page says nothing a person needs here.
        return String::new();
    }
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short.replace(['\n', '\r'], " ")
}

/// Reads a whole body of at most `limit` bytes.
pub(super) fn read_limited(
    resp: Response<ureq::Body>,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    match resp
        .into_body()
        .into_with_config()
        .limit(limit)
        .read_to_vec()
    {
        Ok(v) => Ok(v),
        Err(ureq::Error::BodyExceedsLimit(_)) => Err(RegistryError::TooLarge {
            what: what.to_string(),
            limit,
        }),
        Err(e) => Err(RegistryError::Read {
            what: what.to_string(),
            source: e.into_io(),
        }),
    }
}

/// `scheme://host[:port]` of a URL, lowercased, with the scheme's default
/// port left out, so equal origins compare equal.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Userinfo never appears in registry URLs; drop it rather than compare it.
    let authority = authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => "",
    };
    let authority = authority
        .strip_suffix(default_port)
        .filter(|_| !default_port.is_empty())
        .unwrap_or(&authority);
    format!("{scheme}://{authority}")
}

/// `host[:port]` of a URL.
fn authority_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit('@').next().unwrap_or(authority)
}

fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Whether a registry is on this machine (docker's rule for allowing plain
/// HTTP without configuration).
fn is_loopback(registry: &str) -> bool {
    let host = host_without_port(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Resolves a `Location` header against the URL it answered.
fn resolve_location(base: &str, location: &str) -> Option<String> {
    if location.starts_with("https://") || location.starts_with("http://") {
        return Some(location.to_string());
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(net_path) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{net_path}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    if location.contains("://") || location.is_empty() {
        return None;
    }
    // Relative path: replace the last segment of the base path.
    let path = &rest[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    Some(format!("{scheme}://{authority}{dir}{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(origin_of("https://Reg.io/v2/x"), "https://reg.io");
        assert_eq!(origin_of("https://reg.io:443/v2/"), "https://reg.io");
        assert_eq!(origin_of("http://reg.io:80"), "http://reg.io");
        assert_eq!(
            origin_of("http://127.0.0.1:5000/v2/"),
            "http://127.0.0.1:5000"
        );
        assert_ne!(
            origin_of("http://127.0.0.1:5000/"),
            origin_of("http://127.0.0.1:5001/")
        );
        assert_ne!(origin_of("http://reg.io/"), origin_of("https://reg.io/"));
        assert_eq!(origin_of("https://u:p@cdn.io/x"), "https://cdn.io");
        assert_eq!(authority_of("https://[::1]:5000/v2/"), "[::1]:5000");
    }

    #[test]
    fn redirect_locations_resolve() {
        let base = "https://reg.io:5000/v2/a/blobs/sha256:x?y=1";
        for (loc, want) in [
            ("https://cdn.io/b?sig=1", "https://cdn.io/b?sig=1"),
            ("//cdn.io/b", "https://cdn.io/b"),
            ("/other/path", "https://reg.io:5000/other/path"),
            ("sibling", "https://reg.io:5000/v2/a/blobs/sibling"),
        ] {
            assert_eq!(resolve_location(base, loc).as_deref(), Some(want), "{loc}");
        }
        assert_eq!(resolve_location(base, ""), None);
        assert_eq!(resolve_location(base, "ftp://x/y"), None);
    }

    #[test]
    fn loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    fn client(opts: RegistryOptions) -> Client {
        Client::new(RegistryOptions {
            auth_files: Some(AuthFiles { files: Vec::new() }),
            ..opts
        })
    }

    #[test]
    fn plain_http_only_when_allowed() {
        let c = client(RegistryOptions {
            insecure_registries: vec![
                "lab.example.com".into(),
                "other.io:5000".into(),
                "*.corp".into(),
            ],
            ..Default::default()
        });
        assert!(c.allows_http("127.0.0.1:5000"));
        assert!(c.allows_http("localhost"));
        assert!(c.allows_http("lab.example.com:8443"));
        assert!(c.allows_http("other.io:5000"));
        assert!(!c.allows_http("other.io:5001"));
        assert!(c.allows_http("reg.corp"));
        assert!(!c.allows_http("corp"));
        assert!(!c.allows_http("docker.io"));
        assert!(!c.verify_tls("lab.example.com"));
        assert!(c.verify_tls("127.0.0.1:5000"));

        let strict = client(RegistryOptions {
            tls_verify: Some(true),
            ..Default::default()
        });
        assert!(!strict.allows_http("127.0.0.1:5000"));

        let lax = client(RegistryOptions {
            tls_verify: Some(false),
            ..Default::default()
        });
        assert!(lax.allows_http("docker.io"));
        assert!(!lax.verify_tls("registry-1.docker.io"));
    }

    #[test]
    fn redirects_and_token_realms_never_downgrade_to_plain_http() {
        let client = Client::new(RegistryOptions::default());
        let err = client
            .refuse_plain_http("http://cdn.example.com/blob?sig=1", "fetch blob")
            .unwrap_err();
        assert!(
            matches!(&err, RegistryError::PlainHttpRefused { host, .. } if host == "cdn.example.com"),
            "{err}"
        );
        assert!(
            client
                .refuse_plain_http("https://cdn.example.com/blob", "x")
                .is_ok()
        );
        assert!(
            client
                .refuse_plain_http("http://127.0.0.1:5000/token", "x")
                .is_ok()
        );
        let insecure = Client::new(RegistryOptions {
            insecure_registries: vec!["cdn.example.com".into()],
            ..RegistryOptions::default()
        });
        assert!(
            insecure
                .refuse_plain_http("http://cdn.example.com/b", "x")
                .is_ok()
        );
        let strict = Client::new(RegistryOptions {
            tls_verify: Some(true),
            ..RegistryOptions::default()
        });
        assert!(
            strict
                .refuse_plain_http("http://127.0.0.1:5000/token", "x")
                .is_err()
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = client(RegistryOptions {
            retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(2),
            ..Default::default()
        });
        let delays: Vec<u128> = (0..7).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn client_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }
}
