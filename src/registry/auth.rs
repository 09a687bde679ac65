//! Registry authentication: `WWW-Authenticate` challenges, Bearer tokens
//! (the distribution token protocol, `docs/spec/auth/token.md`) and HTTP
//! Basic.
//!
//! Flow: a request goes out with whatever auth is already known for its
//! registry and scope. On a 401 the challenge is parsed; for `Bearer`, a
//! token is fetched from the challenge's `realm` with `service` and
//! the call's scope — `repository:REPO:pull` for a pull,
//! `repository:REPO:pull,push` for a push, plus `repository:FROM:pull` for a
//! cross-repository mount (two `scope` parameters) — sending Basic
//! credentials to the realm when there are any, and the request is retried once with
//! `Authorization: Bearer TOKEN`; for `Basic`, it is retried with the
//! credentials. The challenge is remembered per registry, so later requests
//! for other repositories fetch their token up front instead of taking a 401
//! first.
//!
//! Tokens are cached per (registry, scope) until `expires_in` (default
//! [`DEFAULT_TOKEN_LIFETIME`]) minus [`TOKEN_EXPIRY_MARGIN`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a token without `expires_in` lives: the token spec's default.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A token is treated as expired this long before it really is, so a request
/// sent just before expiry does not arrive just after it.
pub const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        /// `invalid_token`, `insufficient_scope`, … (RFC 6750 §3).
        error: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
    /// A scheme builder does not speak (Negotiate, Digest, …).
    Other {
        scheme: String,
    },
}

/// Parses a `WWW-Authenticate` value (RFC 7235 §4.1): one or more
/// challenges, each a scheme followed by comma-separated `name=value`
/// parameters whose values are tokens or quoted strings. Returns `None` when
/// the header does not follow that grammar or a Bearer challenge has no
/// realm.
pub fn parse_challenges(header: &str) -> Option<Vec<Challenge>> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip_ws_and_commas();
        if p.done() {
            break;
        }
        let scheme = p.token()?;
        let mut params: HashMap<String, String> = HashMap::new();
        p.skip_ws();
        // Parameters: `name = value` separated by commas, until a token not
        // followed by `=` (the next challenge's scheme) or the end.
        loop {
            let save = p.i;
            p.skip_ws_and_commas();
            if p.done() {
                break;
            }
            let Some(name) = p.token() else {
                // token68 (`Basic dXNlcg==`-style credentials in a challenge)
                // is not used by registries; reject rather than guess.
                return None;
            };
            p.skip_ws();
            if !p.eat(b'=') {
                p.i = save;
                break;
            }
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()?
            } else {
                p.bare_value()?
            };
            params.insert(name.to_ascii_lowercase(), value);
        }
        let challenge = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Challenge::Bearer {
                realm: params.remove("realm")?,
                service: params.remove("service"),
                scope: params.remove("scope"),
                error: params.remove("error"),
            },
            "basic" => Challenge::Basic {
                realm: params.remove("realm"),
            },
            _ => Challenge::Other { scheme },
        };
        out.push(challenge);
    }
    if out.is_empty() { None } else { Some(out) }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    /// RFC 7230 `token`.
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    /// An unquoted parameter value. RFC 7235 allows only a `token`, but some
    /// servers send URLs unquoted (`realm=https://…`), so take everything up
    /// to the next comma or space; a value starting with `=` is token68
    /// padding, not a parameter.
    fn bare_value(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b',' | b' ' | b'\t' | b'"') {
                break;
            }
            self.i += 1;
        }
        let value = &self.s[start..self.i];
        (!value.is_empty() && value[0] != b'=').then(|| String::from_utf8_lossy(value).into_owned())
    }
    /// RFC 7230 `quoted-string`, with `\` escapes.
    fn quoted(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                    self.i += 1;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// Picks the challenge to answer: Bearer over Basic, others never.
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| matches!(c, Challenge::Bearer { .. }))
        .or_else(|| {
            challenges
                .iter()
                .find(|c| matches!(c, Challenge::Basic { .. }))
        })
}

/// The pull scope of a repository, as the token protocol spells it.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The scope a push to `repository` needs: it reads (HEAD) and writes.
pub fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

/// The scope of a cross-repository mount: push to `repository`, and pull
/// from `from`, the repository the blob is mounted from. Several scopes are
/// joined by spaces, as OAuth2 does; [`token_url`] sends each as its own
/// `scope` parameter, as the token protocol asks.
pub fn mount_scope(repository: &str, from: &str) -> String {
    format!("{} {}", push_scope(repository), pull_scope(from))
}

/// A token endpoint's answer. `token` is the spec's field; `access_token` is
/// the OAuth2 one some servers send instead (or as well).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn token(&self) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(self.access_token.as_deref().filter(|t| !t.is_empty()))
    }

    pub fn lifetime(&self) -> Duration {
        match self.expires_in {
            Some(s) if s > 0 => Duration::from_secs(s),
            _ => DEFAULT_TOKEN_LIFETIME,
        }
    }
}

/// The URL of a token request: the realm plus `service` and `scope`
/// query parameters (the realm may carry a query of its own). A scope
/// holding several space-separated scopes becomes one `scope` parameter
/// each (distribution's `token.md`: "scope … may be specified multiple
/// times").
pub fn token_url(realm: &str, service: Option<&str>, scope: Option<&str>) -> String {
    let mut url = realm.to_string();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    let scopes = scope.into_iter().flat_map(str::split_whitespace);
    let params = service
        .map(|s| ("service", s))
        .into_iter()
        .chain(scopes.map(|s| ("scope", s)));
    for (name, value) in params {
        url.push(sep);
        url.push_str(name);
        url.push('=');
        url.push_str(&percent_encode(value));
        sep = '&';
    }
    url
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
/// Ten lines here instead of a URL crate: this is the only encoding the
/// client needs.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Tokens and challenges learned so far, shared by every thread using one
/// client.
#[derive(Default)]
pub struct AuthCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    challenges: Mutex<HashMap<String, Challenge>>,
}

impl AuthCache {
    /// A still-valid token for `registry` and `scope`.
    pub fn token(&self, registry: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (token, expires) = tokens.get(&(registry.to_string(), scope.to_string()))?;
        (Instant::now() < *expires).then(|| token.clone())
    }

    pub fn put_token(&self, registry: &str, scope: &str, token: String, lifetime: Duration) {
        let expires = Instant::now() + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((registry.to_string(), scope.to_string()), (token, expires));
    }

    pub fn forget_token(&self, registry: &str, scope: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(registry.to_string(), scope.to_string()));
    }

    /// The challenge `registry` answered with last time, if any.
    pub fn challenge(&self, registry: &str) -> Option<Challenge> {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(registry)
            .cloned()
    }

    pub fn put_challenge(&self, registry: &str, challenge: Challenge) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry.to_string(), challenge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn parses_challenges() {
        #[rustfmt::skip]
        let table: Vec<(&str, Vec<Challenge>)> = vec![
            (r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
             vec![bearer("https://auth.docker.io/token", Some("registry.docker.io"), Some("repository:library/busybox:pull"))]),
            (r#"Bearer realm="https://r.example/token", service="svc""#,
             vec![bearer("https://r.example/token", Some("svc"), None)]),
            (r#"bearer   REALM = "http://127.0.0.1:1/t""#,
             vec![bearer("http://127.0.0.1:1/t", None, None)]),
            (r#"Bearer realm=https://unquoted.example/token,service=svc"#,
             vec![bearer("https://unquoted.example/token", Some("svc"), None)]),
            (r#"Bearer realm="x",scope="repository:a:pull,push""#,
             vec![bearer("x", None, Some("repository:a:pull,push"))]),
            (r#"Bearer realm="a\"b""#, vec![bearer("a\"b", None, None)]),
            (r#"Basic realm="Registry Realm""#,
             vec![Challenge::Basic { realm: Some("Registry Realm".into()) }]),
            ("Basic", vec![Challenge::Basic { realm: None }]),
            (r#"Negotiate, Basic realm="r", Bearer realm="t",service="s""#,
             vec![Challenge::Other { scheme: "Negotiate".into() },
                  Challenge::Basic { realm: Some("r".into()) },
                  bearer("t", Some("s"), None)]),
        ];
        for (header, want) in table {
            assert_eq!(parse_challenges(header), Some(want), "{header}");
        }
        let with_error = parse_challenges(
            r#"Bearer realm="t",error="insufficient_scope",scope="repository:x:pull""#,
        )
        .unwrap();
        assert!(matches!(
            &with_error[0],
            Challenge::Bearer { error: Some(e), .. } if e == "insufficient_scope"
        ));
    }

    #[test]
    fn rejects_malformed_challenges() {
        for header in [
            "",
            "   ",
            r#"Bearer service="no realm""#,
            r#"Bearer realm="unterminated"#,
            "Basic dXNlcjpwYXNz==",
            r#"Bearer realm=="#,
        ] {
            assert_eq!(parse_challenges(header), None, "{header:?}");
        }
    }

    #[test]
    fn prefers_bearer_then_basic() {
        let cs = parse_challenges(r#"Basic realm="r", Bearer realm="t""#).unwrap();
        assert!(matches!(preferred(&cs), Some(Challenge::Bearer { .. })));
        let cs = parse_challenges("Negotiate").unwrap();
        assert_eq!(preferred(&cs), None);
    }

    #[test]
    fn token_urls_and_responses() {
        assert_eq!(
            token_url(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull")
            ),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
        assert_eq!(
            token_url("http://h/t?a=b", None, Some("x y")),
            "http://h/t?a=b&scope=x&scope=y"
        );
        assert_eq!(
            token_url(
                "https://a/t",
                Some("s"),
                Some(&mount_scope("to/repo", "from"))
            ),
            "https://a/t?service=s&scope=repository%3Ato%2Frepo%3Apull%2Cpush&scope=repository%3Afrom%3Apull"
        );
        assert_eq!(token_url("http://h/t", None, None), "http://h/t");

        let r: TokenResponse =
            serde_json::from_str(r#"{"access_token":"A","expires_in":300}"#).unwrap();
        assert_eq!(r.token(), Some("A"));
        assert_eq!(r.lifetime(), Duration::from_secs(300));
        let r: TokenResponse = serde_json::from_str(r#"{"token":"T","access_token":"A"}"#).unwrap();
        assert_eq!(r.token(), Some("T"));
        assert_eq!(r.lifetime(), DEFAULT_TOKEN_LIFETIME);
        let r: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(r.token(), None);
    }

    #[test]
    fn cached_tokens_expire_early() {
        let cache = AuthCache::default();
        cache.put_token("r", "s", "tok".into(), Duration::from_secs(60));
        assert_eq!(cache.token("r", "s").as_deref(), Some("tok"));
        assert_eq!(cache.token("r", "other"), None);
        // A lifetime within the margin is already expired.
        cache.put_token("r", "short", "tok".into(), TOKEN_EXPIRY_MARGIN);
        assert_eq!(cache.token("r", "short"), None);
        cache.forget_token("r", "s");
        assert_eq!(cache.token("r", "s"), None);
    }
}
