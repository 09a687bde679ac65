//! A small loopback HTTP server for what a real registry won't do: a Bearer
//! token challenge with its own token endpoint, tampered bytes, 5xx that
//! clear up on retry, connections cut mid-blob, redirects to a "CDN", and a
//! log of every request it answered.
//!
//! Two modes:
//! - **forward** ([`FaultProxy::forward`]): a reverse proxy in front of a
//!   real registry (docker-registry on loopback). Every request goes
//!   upstream unless a fault rule or the proxy's own auth answers it first,
//!   so the same pushed fixtures serve plain, faulty and token-protected
//!   tests.
//! - **canned** ([`FaultProxy::canned`]): no upstream; it serves blobs and
//!   manifests put into it ([`FaultProxy::put_blob`],
//!   [`FaultProxy::put_manifest`]), with `Range` support.
//!
//! For pushes, Bearer mode checks actions as a registry does: GET/HEAD need
//! `pull` on the path's repository, other methods `push`, and a
//! cross-repository mount (`?from=SRC`) also `pull` on SRC; the token
//! endpoint grants every `scope` parameter it is asked for. Two faults act
//! on uploads: [`Fault::CutRequest`] hangs up while the request body is
//! still arriving (upstream never sees the request), and
//! [`Fault::HangUpAfterForward`] lets the request reach upstream and then
//! hangs up instead of answering.
//!
//! It speaks just enough HTTP/1.1: one request per connection
//! (`Connection: close`), bodies by `Content-Length` (requests) or
//! `Content-Length`/chunked/EOF (upstream responses), each connection on its
//! own thread. Bodies are held in memory, so it is for test-sized blobs.
//! Written on `std::net` rather than a server crate because faults such as
//! "send the headers and half the body, then hang up" need control below
//! what server crates expose.
//!
//! Fault rules match a method and a path substring, apply to the next
//! `times` matching requests (or all), and are checked in the order added.

#![allow(dead_code)] // each test uses some of the knobs

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

/// What to do instead of (or to) the normal response.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and a distribution error body; upstream is
    /// not asked.
    Status(u16),
    /// Like `Status`, with `Retry-After: SECONDS`.
    StatusRetryAfter(u16, u64),
    /// Serve the normal response with one byte of the body flipped (the
    /// middle one), so its digest no longer matches.
    Tamper,
    /// Send the headers (with the full `Content-Length`) and only the first
    /// N body bytes, then close the connection.
    CutAfter(usize),
    /// Send the headers and the first N body bytes, then go silent for the
    /// given time (a stalled connection), then close.
    StallAfter(usize, Duration),
    /// Drop the request's `Range` header: answer 200 with the whole body.
    IgnoreRange,
    /// Answer `307` to `BASE + path + ?redirected=1` (BASE like
    /// `http://127.0.0.1:PORT`), as registries do to send blobs to a CDN.
    Redirect(String),
    /// Serve the normal response but change a header (`None` removes it).
    SetHeader(&'static str, Option<String>),
    /// Read only the first N bytes of the request body, then close the
    /// connection with the rest unread (the client sees a reset while
    /// sending). Nothing is forwarded.
    CutRequest(usize),
    /// Forward the request upstream, then close the connection without
    /// answering: the registry did the work, the client never hears of it.
    HangUpAfterForward,
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::Status(_) => "status",
            Fault::StatusRetryAfter(..) => "status-retry-after",
            Fault::Tamper => "tamper",
            Fault::CutAfter(_) => "cut",
            Fault::StallAfter(..) => "stall",
            Fault::IgnoreRange => "ignore-range",
            Fault::Redirect(_) => "redirect",
            Fault::SetHeader(..) => "set-header",
            Fault::CutRequest(_) => "cut-request",
            Fault::HangUpAfterForward => "hang-up",
        }
    }
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub method: String,
    /// Path and query as requested.
    pub path: String,
    pub status: u16,
    /// The request's `Authorization` header.
    pub authorization: Option<String>,
    /// The request's `Range` header.
    pub range: Option<String>,
    /// The request's `Content-Range` header (upload chunks).
    pub content_range: Option<String>,
    /// Request body bytes received (for a cut request: before the cut).
    pub body_len: usize,
    /// The fault applied, if any.
    pub fault: Option<&'static str>,
}

/// Authentication the proxy itself demands on `/v2/…` requests.
#[derive(Debug, Clone)]
enum AuthMode {
    None,
    Basic {
        user: String,
        pass: String,
    },
    /// Token protocol with the proxy's `/token` endpoint as realm.
    Bearer {
        /// Basic credentials the token endpoint requires, if any.
        credentials: Option<(String, String)>,
        /// `expires_in` of issued tokens; 0 leaves it out.
        ttl_secs: u64,
        /// Answer with `access_token` only (the OAuth2 field).
        access_token_only: bool,
    },
}

struct Rule {
    method: Option<String>,
    path_contains: String,
    fault: Fault,
    remaining: Option<usize>,
}

#[derive(Default)]
struct Canned {
    /// (repository, digest) → bytes
    blobs: HashMap<(String, String), Vec<u8>>,
    /// (repository, tag or digest) → (media type, bytes)
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
}

struct State {
    addr: String,
    upstream: Option<String>,
    rules: Mutex<Vec<Rule>>,
    canned: Mutex<Canned>,
    auth: Mutex<AuthMode>,
    /// token → (scope, expiry)
    tokens: Mutex<HashMap<String, (String, Option<Instant>)>>,
    next_token: AtomicU64,
    log: Mutex<Vec<LogEntry>>,
    stop: AtomicBool,
}

/// A running fault-injecting server on `127.0.0.1`. Stops when dropped.
pub struct FaultProxy {
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn query_all(&self, name: &str) -> Vec<String> {
        let Some((_, q)) = self.target.split_once('?') else {
            return Vec::new();
        };
        q.split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
            .collect()
    }
    fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// For HEAD: the length the body would have had.
    head_length: Option<usize>,
}

impl Response {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            head_length: None,
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    fn error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }
    fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn set_header(&mut self, name: &str, value: Option<String>) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_string(), v));
        }
    }
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn forward(upstream: &str) -> FaultProxy {
        Self::start(Some(upstream.to_string()))
    }

    /// A server with no upstream, serving what is put into it.
    pub fn canned() -> FaultProxy {
        Self::start(None)
    }

    fn start(upstream: Option<String>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(State {
            addr,
            upstream,
            rules: Mutex::default(),
            canned: Mutex::default(),
            auth: Mutex::new(AuthMode::None),
            tokens: Mutex::default(),
            next_token: AtomicU64::new(1),
            log: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    let _ = std::thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || handle(&st, conn));
                }
            })
            .expect("start the fault proxy thread");
        FaultProxy {
            state,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        &self.state.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// Serves `bytes` as a blob of `repo` (canned mode); returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        lock(&self.state.canned)
            .blobs
            .insert((repo.to_string(), digest.clone()), bytes.to_vec());
        digest
    }

    /// Serves `bytes` as a manifest of `repo`, by digest and (if given) by
    /// `tag` (canned mode); returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let digest = sha256(bytes);
        let mut canned = lock(&self.state.canned);
        let entry = (media_type.to_string(), bytes.to_vec());
        canned
            .manifests
            .insert((repo.to_string(), digest.clone()), entry.clone());
        if let Some(tag) = tag {
            canned
                .manifests
                .insert((repo.to_string(), tag.to_string()), entry);
        }
        digest
    }

    /// Applies `fault` to the next `times` requests (all, if `None`) whose
    /// method is `method` (any, if `None`) and whose path contains
    /// `path_contains`.
    pub fn inject(
        &self,
        method: Option<&str>,
        path_contains: &str,
        fault: Fault,
        times: Option<usize>,
    ) {
        lock(&self.state.rules).push(Rule {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            fault,
            remaining: times,
        });
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.state.rules).clear();
    }

    /// Demands HTTP Basic `user:pass` on `/v2/…`.
    pub fn require_basic(&self, user: &str, pass: &str) {
        *lock(&self.state.auth) = AuthMode::Basic {
            user: user.into(),
            pass: pass.into(),
        };
    }

    /// Demands Bearer tokens from the proxy's `/token` realm on `/v2/…`. With
    /// `credentials`, the token endpoint demands them as Basic auth.
    pub fn require_bearer(&self, credentials: Option<(&str, &str)>, ttl_secs: u64) {
        *lock(&self.state.auth) = AuthMode::Bearer {
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
            ttl_secs,
            access_token_only: false,
        };
    }

    /// Like [`Self::require_bearer`], answering with `access_token` only.
    pub fn require_bearer_oauth_style(&self, ttl_secs: u64) {
        *lock(&self.state.auth) = AuthMode::Bearer {
            credentials: None,
            ttl_secs,
            access_token_only: true,
        };
    }

    /// Invalidates every issued token (as a token service restart would).
    pub fn revoke_tokens(&self) {
        lock(&self.state.tokens).clear();
    }

    /// Every request answered so far.
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.state.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
    }

    /// How many logged requests had `method` and a path containing
    /// `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.state.log)
            .iter()
            .filter(|e| e.method == method && e.path.contains(path_contains))
            .count()
    }

    /// The log as `METHOD PATH STATUS` lines, for assertion messages.
    pub fn log_text(&self) -> String {
        lock(&self.state.log)
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}{}",
                    e.method,
                    e.path,
                    e.status,
                    e.fault.map(|f| format!(" [{f}]")).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.state.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn handle(state: &State, mut conn: TcpStream) {
    if state.stop.load(Ordering::SeqCst) {
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let req = match read_request(state, &conn) {
        Ok(Some(req)) => req,
        Ok(None) => return,
        Err(_) => {
            // Not HTTP (a TLS ClientHello from a client trying HTTPS first):
            // answer as Go's server does, then hang up.
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
    };
    let mut fault_name = None;
    let (resp, cut) = respond(state, req.clone(), &mut fault_name);
    log_request(state, &req, resp.status, req.body.len(), fault_name);
    if fault_name == Some("hang-up") {
        let _ = conn.shutdown(Shutdown::Both);
        return;
    }
    let _ = write_response(&mut conn, &req.method, &resp, cut);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}

fn log_request(
    state: &State,
    req: &Request,
    status: u16,
    body_len: usize,
    fault: Option<&'static str>,
) {
    lock(&state.log).push(LogEntry {
        method: req.method.clone(),
        path: req.target.clone(),
        status,
        authorization: req.header("authorization").map(str::to_string),
        range: req.header("range").map(str::to_string),
        content_range: req.header("content-range").map(str::to_string),
        body_len,
        fault,
    });
}

/// The response to `req` and, for a cut or a stall, how many body bytes to
/// send and how long to stay silent before hanging up.
fn respond(
    state: &State,
    mut req: Request,
    fault_name: &mut Option<&'static str>,
) -> (Response, Option<(usize, Duration)>) {
    let auth = lock(&state.auth).clone();
    if req.path() == "/token" {
        return (token_endpoint(state, &req, &auth), None);
    }
    if req.path().starts_with("/v2")
        && let Some(denied) = check_auth(state, &req, &auth)
    {
        return (denied, None);
    }
    if !matches!(auth, AuthMode::None) {
        // The proxy did the auth; the upstream registry has none.
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
    }

    let fault = take_fault(state, &req);
    *fault_name = fault.as_ref().map(Fault::name);
    match fault {
        Some(Fault::Status(status)) => {
            return (
                Response::error(status, "INJECTED", "injected by the fault proxy"),
                None,
            );
        }
        Some(Fault::StatusRetryAfter(status, secs)) => {
            let resp = Response::error(status, "INJECTED", "injected by the fault proxy")
                .header("Retry-After", secs.to_string());
            return (resp, None);
        }
        Some(Fault::Redirect(base)) => {
            let location = format!("{base}{}?redirected=1", req.path());
            return (Response::new(307).header("Location", location), None);
        }
        Some(Fault::IgnoreRange) => {
            req.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("range"));
        }
        _ => {}
    }

    let mut resp = match &state.upstream {
        Some(upstream) => forward(state, upstream, &req).unwrap_or_else(|e| {
            Response::error(
                502,
                "UPSTREAM",
                &format!("fault proxy: upstream failed: {e}"),
            )
        }),
        None => serve_canned(state, &req),
    };

    match fault {
        Some(Fault::Tamper) if !resp.body.is_empty() => {
            let mid = resp.body.len() / 2;
            resp.body[mid] ^= 0xff;
            (resp, None)
        }
        Some(Fault::CutAfter(n)) => {
            let n = n.min(resp.body.len().saturating_sub(1));
            (resp, Some((n, Duration::ZERO)))
        }
        Some(Fault::StallAfter(n, stall)) => {
            let n = n.min(resp.body.len().saturating_sub(1));
            (resp, Some((n, stall)))
        }
        Some(Fault::SetHeader(name, value)) => {
            resp.set_header(name, value);
            (resp, None)
        }
        _ => (resp, None),
    }
}

fn take_fault(state: &State, req: &Request) -> Option<Fault> {
    take_rule(state, req, false)
}

/// Takes the next matching rule: of the request-cut kind (checked before
/// the body is read) or of every other kind.
fn take_rule(state: &State, req: &Request, request_cut: bool) -> Option<Fault> {
    let mut rules = lock(&state.rules);
    let rule = rules.iter_mut().find(|r| {
        r.remaining != Some(0)
            && matches!(r.fault, Fault::CutRequest(_)) == request_cut
            && r.method.as_deref().is_none_or(|m| m == req.method)
            && req.target.contains(&r.path_contains)
    })?;
    if let Some(n) = &mut rule.remaining {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

/// The repository a `/v2/REPO/{manifests,blobs,tags}/…` path names.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .find_map(|m| rest.find(m).map(|i| &rest[..i]))
}

fn check_auth(state: &State, req: &Request, auth: &AuthMode) -> Option<Response> {
    match auth {
        AuthMode::None => None,
        AuthMode::Basic { user, pass } => {
            let want = format!("Basic {}", BASE64.encode(format!("{user}:{pass}")));
            if req.header("authorization") == Some(want.as_str()) {
                None
            } else {
                Some(
                    Response::error(401, "UNAUTHORIZED", "authentication required")
                        .header("WWW-Authenticate", "Basic realm=\"fault-proxy\""),
                )
            }
        }
        AuthMode::Bearer { .. } => {
            // What the request needs, as (repository, action) pairs.
            let mut needs: Vec<(String, &str)> = Vec::new();
            if let Some(repo) = repository_of(req.path()) {
                let action = if req.method == "GET" || req.method == "HEAD" {
                    "pull"
                } else {
                    "push"
                };
                needs.push((repo.to_string(), action));
            }
            if let Some(from) = req.query("from") {
                needs.push((from, "pull"));
            }
            let token = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "));
            let ok = token.is_some_and(|t| {
                let tokens = lock(&state.tokens);
                let Some((scope, expiry)) = tokens.get(t) else {
                    return false;
                };
                if expiry.is_some_and(|e| Instant::now() >= e) {
                    return false;
                }
                needs.iter().all(|(repo, action)| {
                    scope.split(' ').any(|s| {
                        s.strip_prefix("repository:")
                            .and_then(|s| s.rsplit_once(':'))
                            .is_some_and(|(r, actions)| {
                                r == repo && actions.split(',').any(|a| a == *action)
                            })
                    })
                })
            });
            if ok {
                return None;
            }
            let mut challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"fault-proxy\"",
                state.addr
            );
            if !needs.is_empty() {
                let scopes: Vec<String> = needs
                    .iter()
                    .map(|(repo, action)| match *action {
                        "push" => format!("repository:{repo}:pull,push"),
                        _ => format!("repository:{repo}:pull"),
                    })
                    .collect();
                challenge.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
            }
            if token.is_some() {
                challenge.push_str(",error=\"invalid_token\"");
            }
            Some(
                Response::error(401, "UNAUTHORIZED", "authentication required")
                    .header("WWW-Authenticate", challenge),
            )
        }
    }
}

fn token_endpoint(state: &State, req: &Request, auth: &AuthMode) -> Response {
    let AuthMode::Bearer {
        credentials,
        ttl_secs,
        access_token_only,
    } = auth
    else {
        return Response::error(404, "NOT_FOUND", "no token service");
    };
    if let Some((user, pass)) = credentials {
        let want = format!("Basic {}", BASE64.encode(format!("{user}:{pass}")));
        if req.header("authorization") != Some(want.as_str()) {
            return Response::error(
                401,
                "UNAUTHORIZED",
                "access to the requested resource is not authorized",
            );
        }
    }
    if req.query("service").as_deref() != Some("fault-proxy") {
        return Response::error(400, "INVALID_SERVICE", "unknown service");
    }
    // Every `scope` parameter is granted (the token protocol allows several).
    let scope = req.query_all("scope").join(" ");
    let token = format!("tok-{}", state.next_token.fetch_add(1, Ordering::SeqCst));
    let expiry = (*ttl_secs > 0).then(|| Instant::now() + Duration::from_secs(*ttl_secs));
    lock(&state.tokens).insert(token.clone(), (scope, expiry));
    let mut body = serde_json::Map::new();
    if *access_token_only {
        body.insert("access_token".into(), token.into());
    } else {
        body.insert("token".into(), token.into());
    }
    if *ttl_secs > 0 {
        body.insert("expires_in".into(), (*ttl_secs).into());
    }
    Response::new(200)
        .header("Content-Type", "application/json")
        .body(serde_json::Value::Object(body).to_string())
}

fn serve_canned(state: &State, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "UNSUPPORTED", "canned mode serves GET and HEAD only");
    }
    let path = req.path();
    if path == "/v2/" || path == "/v2" {
        return Response::new(200)
            .header("Content-Type", "application/json")
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body("{}");
    }
    let canned = lock(&state.canned);
    if let Some(rest) = path.strip_prefix("/v2/")
        && let Some((repo, reference)) = rest.rsplit_once("/manifests/")
    {
        return match canned
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
        {
            Some((media_type, bytes)) => Response::new(200)
                .header("Content-Type", media_type.clone())
                .header("Docker-Content-Digest", sha256(bytes))
                .body(bytes.clone()),
            None => Response::error(404, "MANIFEST_UNKNOWN", "manifest unknown"),
        };
    }
    if let Some(rest) = path.strip_prefix("/v2/")
        && let Some((repo, digest)) = rest.rsplit_once("/blobs/")
    {
        let Some(bytes) = canned.blobs.get(&(repo.to_string(), digest.to_string())) else {
            return Response::error(404, "BLOB_UNKNOWN", "blob unknown to registry");
        };
        let base = Response::new(200)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", digest)
            .header("Accept-Ranges", "bytes");
        return match req
            .header("range")
            .and_then(|r| parse_range(r, bytes.len()))
        {
            Some((start, end)) => {
                let mut resp = base.body(bytes[start..=end].to_vec());
                resp.status = 206;
                resp.header(
                    "Content-Range",
                    format!("bytes {start}-{end}/{}", bytes.len()),
                )
            }
            None if req.header("range").is_some() && !bytes.is_empty() => {
                Response::new(416).header("Content-Range", format!("bytes */{}", bytes.len()))
            }
            None => base.body(bytes.clone()),
        };
    }
    Response::error(404, "NOT_FOUND", "not found")
}

/// `bytes=START-[END]` → inclusive byte range within `len`.
fn parse_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.trim().parse().ok()?;
    let end: usize = match end.trim() {
        "" => len.checked_sub(1)?,
        e => e.parse::<usize>().ok()?.min(len.checked_sub(1)?),
    };
    (start <= end).then_some((start, end))
}

fn forward(state: &State, upstream: &str, req: &Request) -> io::Result<Response> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n",
        req.method, req.target
    );
    for (k, v) in &req.headers {
        let lower = k.to_ascii_lowercase();
        if [
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "keep-alive",
        ]
        .contains(&lower.as_str())
        {
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !req.body.is_empty() || ["POST", "PUT", "PATCH"].contains(&req.method.as_str()) {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;

    let mut reader = BufReader::new(up);
    let status_line = read_line(&mut reader)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line `{status_line}`"),
            )
        })?;
    let headers = read_headers(&mut reader)?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let no_body =
        req.method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let mut body = Vec::new();
    if !no_body {
        if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            body = read_chunked(&mut reader)?;
        } else if let Some(len) = get("content-length").and_then(|l| l.trim().parse::<usize>().ok())
        {
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
    }
    let head_length = if req.method == "HEAD" {
        get("content-length").and_then(|l| l.trim().parse().ok())
    } else {
        None
    };
    let upstream_url = format!("http://{upstream}");
    let headers = headers
        .into_iter()
        .filter(|(k, _)| {
            ![
                "connection",
                "content-length",
                "transfer-encoding",
                "keep-alive",
            ]
            .contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case("location") {
                let v = v.replace(&upstream_url, &format!("http://{}", state.addr));
                (k, v)
            } else {
                (k, v)
            }
        })
        .collect();
    Ok(Response {
        status,
        headers,
        body,
        head_length,
    })
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let line = String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (k, v) = line.split_once(':').ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad header `{line}`"))
        })?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
        if headers.len() > 200 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many headers",
            ));
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(r)?;
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r)?;
    }
}

/// Reads one request; `Ok(None)` when the peer connected and closed without
/// sending anything (the accept loop's wake-up, a port probe), or when a
/// [`Fault::CutRequest`] rule cut the request short (it is logged here).
fn read_request(state: &State, conn: &TcpStream) -> io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let line = match read_line(&mut reader) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    }
    let headers = read_headers(&mut reader)?;
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
    };
    if let Some(Fault::CutRequest(n)) = take_rule(state, &req, true) {
        let mut partial = vec![0; n.min(len)];
        let got = read_up_to(&mut reader, &mut partial);
        log_request(state, &req, 0, got, Some("cut-request"));
        // Closing with unread data makes the kernel send a reset: the
        // client fails mid-send, as on a broken network.
        drop(reader);
        let _ = conn.shutdown(Shutdown::Both);
        return Ok(None);
    }
    req.body = vec![0; len];
    reader.read_exact(&mut req.body)?;
    Ok(Some(req))
}

/// Reads until `buf` is full or the peer stops sending; returns the count.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

fn write_response(
    conn: &mut TcpStream,
    method: &str,
    resp: &Response,
    cut: Option<(usize, Duration)>,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let length = resp.head_length.unwrap_or(resp.body.len());
    head.push_str(&format!(
        "Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ));
    conn.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    match cut {
        Some((n, stall)) => {
            conn.write_all(&resp.body[..n])?;
            conn.flush()?;
            std::thread::sleep(stall);
            // Hang up mid-body, as a dying connection does.
            conn.shutdown(Shutdown::Both)
        }
        None => conn.write_all(&resp.body),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn canned_mode_serves_ranges_and_logs() {
    let proxy = FaultProxy::canned();
    let digest = proxy.put_blob("a/b", b"0123456789");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/v2/a/b/blobs/{digest}", proxy.url());
    let mut resp = agent.get(&url).header("Range", "bytes=4-").call().unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.body_mut().read_to_string().unwrap(), "456789");
    let resp = agent
        .get(format!(
            "{}/v2/a/b/blobs/sha256:{}",
            proxy.url(),
            "0".repeat(64)
        ))
        .call()
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(proxy.count("GET", "/blobs/"), 2, "{}", proxy.log_text());
    assert_eq!(parse_range("bytes=2-4", 10), Some((2, 4)));
    assert_eq!(parse_range("bytes=10-", 10), None);
    assert_eq!(
        percent_decode("repository%3Aa%2Fb%3Apull"),
        "repository:a/b:pull"
    );
}
