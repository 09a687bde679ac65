//! Image references (`busybox`, `host:5000/a/b:tag@sha256:…`): parsing and
//! normalisation per the docker/distribution grammar.
//!
//! # Grammar
//!
//! As in docker/distribution's `reference` package (`regexp.go`), with the
//! normalisation of its `normalize.go`:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ registry "/" ] path
//! registry         := host [ ":" port ]
//! host             := domain-name | IPv4address | "[" IPv6address "]"
//! domain-name      := domain-component ( "." domain-component )*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! port             := [0-9]+
//! path             := path-component ( "/" path-component )*
//! path-component   := alpha-numeric ( separator alpha-numeric )*
//! alpha-numeric    := [a-z0-9]+
//! separator        := [_.] | "__" | [-]*
//! tag              := [\w][\w.-]{0,127}
//! digest           := "sha256:" [0-9a-f]{64}
//! ```
//!
//! The name as written (registry and path, before defaults are added) is at
//! most [`NAME_TOTAL_LENGTH_MAX`] characters.
//!
//! # Normalisation
//!
//! - The first `/`-separated component is the registry only when it contains
//!   `.` or `:` or is `localhost`; otherwise the whole name is a path on
//!   [`DEFAULT_REGISTRY`]. So `user/repo` is `docker.io/user/repo` while
//!   `localhost/x` and `example.com/x` name their own registries.
//! - [`LEGACY_DEFAULT_REGISTRY`] (`index.docker.io`) is the same registry as
//!   [`DEFAULT_REGISTRY`] and is rewritten to it.
//! - A one-component path on the default registry gets
//!   [`OFFICIAL_REPO_PREFIX`]: `busybox` is `library/busybox`.
//! - Without tag or digest the tag is [`DEFAULT_TAG`]. With a digest and no
//!   tag there is no tag; with both, both are kept and the digest wins when
//!   fetching (`name:tag@digest` pins content, the tag is informational).
//!
//! Parsing does no I/O. The only network knowledge here is
//! [`DOCKER_HUB_API_HOST`], the host that serves the default registry's API.

use std::fmt;
use std::str::FromStr;

use crate::oci::{Digest, DigestError};

/// The registry of a name without a registry component. Every docker-family
/// tool resolves short names here, so `busybox` must mean the same image in
/// builder as in `docker pull busybox`.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// An older spelling of [`DEFAULT_REGISTRY`] still found in scripts and
/// credential files; it names the same registry, so it is normalised away to
/// keep one name per image.
pub const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// The host that actually serves the Docker Hub distribution API:
/// `docker.io` itself only redirects browsers to the web site.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Docker Hub keeps its official images under this namespace, and a
/// one-component name there (`busybox`) refers to one of them.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";

/// The tag a reference without tag or digest means, as in every
/// docker-family tool.
pub const DEFAULT_TAG: &str = "latest";

/// The longest name (registry and path, as written) distribution accepts.
/// Registries reject longer names, so failing early gives a clearer error.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// The longest tag (`[\w][\w.-]{0,127}`).
pub const TAG_LENGTH_MAX: usize = 128;

/// Why a string is not an image reference. Every variant carries the whole
/// reference and the part that is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error(
        "invalid tag `{tag}` in `{reference}`: a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
    )]
    InvalidTag { reference: String, tag: String },
    #[error("invalid digest `{digest}` in `{reference}`")]
    InvalidDigest {
        reference: String,
        digest: String,
        #[source]
        source: DigestError,
    },
    #[error("repository name must be lowercase: `{reference}`")]
    Uppercase { reference: String },
    #[error(
        "invalid repository path component `{component}` in `{reference}`: components are lowercase letters and digits, separated by `.`, `_`, `__` or dashes"
    )]
    InvalidPathComponent {
        reference: String,
        component: String,
    },
    #[error("invalid registry `{registry}` in `{reference}`: expected HOST or HOST:PORT")]
    InvalidRegistry { reference: String, registry: String },
    #[error(
        "repository name `{name}` is {len} characters long; the limit is {NAME_TOTAL_LENGTH_MAX}"
    )]
    NameTooLong { name: String, len: usize },
    #[error(
        "invalid reference `{reference}`: a 64-character hex string is an image ID, not a repository name"
    )]
    LooksLikeId { reference: String },
}

/// A parsed and normalised image reference.
///
/// Invariants: `registry` is a valid registry and never `index.docker.io`;
/// `repository` is a valid path (with `library/` added for official images
/// on the default registry); at least one of `tag` and `digest` is set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises `s` (see the module doc for the grammar).
    pub fn parse(s: &str) -> Result<ImageRef, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex64(s) {
            return Err(ReferenceError::LooksLikeId {
                reference: s.to_string(),
            });
        }

        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|source| ReferenceError::InvalidDigest {
                    reference: s.to_string(),
                    digest: d.to_string(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };

        // A tag is what follows the last `:` that comes after the last `/`;
        // an earlier `:` belongs to the registry's port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (name, tag) = (&rest[..last_slash + i], &rest[last_slash + i + 1..]);
                if !is_valid_tag(tag) {
                    return Err(ReferenceError::InvalidTag {
                        reference: s.to_string(),
                        tag: tag.to_string(),
                    });
                }
                (name, Some(tag.to_string()))
            }
            None => (rest, None),
        };

        if name.is_empty() {
            return Err(ReferenceError::InvalidPathComponent {
                reference: s.to_string(),
                component: String::new(),
            });
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                name: name.to_string(),
                len: name.len(),
            });
        }

        let (registry, path) = split_registry(name);
        if let Some(registry) = registry
            && !is_valid_registry(registry)
        {
            return Err(ReferenceError::InvalidRegistry {
                reference: s.to_string(),
                registry: registry.to_string(),
            });
        }
        validate_path(path, s)?;

        let registry = match registry {
            None | Some(LEGACY_DEFAULT_REGISTRY) => DEFAULT_REGISTRY,
            Some(r) => r,
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_string()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The normalised registry: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry's HTTP API.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/`: the digest when there is one (it
    /// pins the content), else the tag.
    pub fn reference_for_manifest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => unreachable!("an ImageRef always has a tag or a digest"),
        }
    }

    /// The same repository with tag `tag` and no digest: a new tag is a new
    /// pointer, and keeping the old digest would make fetches ignore it.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::InvalidTag {
                reference: format!("{}:{tag}", self.name()),
                tag: tag.to_string(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same reference pinned to `digest`; the tag, if any, is kept
    /// (`name:tag@digest`).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// The host serving `registry`'s API: [`DOCKER_HUB_API_HOST`] for the
/// default registry, the registry itself otherwise.
pub fn api_host(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY || registry == LEGACY_DEFAULT_REGISTRY {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// Normalises a registry name as given on a command line (`builder login
/// index.docker.io`, `https://host:5000/`): drops a scheme and a path, maps
/// the legacy Docker Hub names to [`DEFAULT_REGISTRY`].
pub fn normalize_registry(registry: &str) -> String {
    let r = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    let r = r.split('/').next().unwrap_or(r);
    match r {
        LEGACY_DEFAULT_REGISTRY | DOCKER_HUB_API_HOST => DEFAULT_REGISTRY.to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits `name` into (registry, path) by distribution's rule: the first
/// component is a registry only if it contains `.` or `:` or is `localhost`.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_path(path: &str, reference: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if !is_valid_path_component(component) {
            if is_valid_path_component(&component.to_ascii_lowercase()) {
                return Err(ReferenceError::Uppercase {
                    reference: reference.to_string(),
                });
            }
            return Err(ReferenceError::InvalidPathComponent {
                reference: reference.to_string(),
                component: component.to_string(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // One alpha-numeric run.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // One separator: `.`, `_`, `__`, or any number of dashes.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= TAG_LENGTH_MAX
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `host [":" port]` with host a domain name, an IPv4 address or a bracketed
/// IPv6 address.
fn is_valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    match host {
        None => true,
        Some(h) => !h.is_empty() && h.split('.').all(is_valid_domain_component),
    }
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// (input, registry, repository, tag, has a digest, normalised display)
    type Row<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, bool, String);

    #[test]
    fn valid_references_normalise() {
        let d = D;
        #[rustfmt::skip]
        let table: &[Row] = &[
            ("busybox", "docker.io", "library/busybox", Some("latest"), false,
             "docker.io/library/busybox:latest".into()),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), false,
             "docker.io/library/busybox:1.36".into()),
            ("user/repo", "docker.io", "user/repo", Some("latest"), false,
             "docker.io/user/repo:latest".into()),
            ("user/repo/deeper:v1", "docker.io", "user/repo/deeper", Some("v1"), false,
             "docker.io/user/repo/deeper:v1".into()),
            ("docker.io/busybox", "docker.io", "library/busybox", Some("latest"), false,
             "docker.io/library/busybox:latest".into()),
            ("index.docker.io/busybox", "docker.io", "library/busybox", Some("latest"), false,
             "docker.io/library/busybox:latest".into()),
            ("index.docker.io/library/busybox:1", "docker.io", "library/busybox", Some("1"), false,
             "docker.io/library/busybox:1".into()),
            ("docker.io/user/repo", "docker.io", "user/repo", Some("latest"), false,
             "docker.io/user/repo:latest".into()),
            ("host:5000/a/b:tag", "host:5000", "a/b", Some("tag"), false,
             "host:5000/a/b:tag".into()),
            ("example.com/x", "example.com", "x", Some("latest"), false,
             "example.com/x:latest".into()),
            ("localhost/x", "localhost", "x", Some("latest"), false,
             "localhost/x:latest".into()),
            ("localhost:5000/x", "localhost:5000", "x", Some("latest"), false,
             "localhost:5000/x:latest".into()),
            ("127.0.0.1:5000/fixtures/busybox:v1", "127.0.0.1:5000", "fixtures/busybox", Some("v1"), false,
             "127.0.0.1:5000/fixtures/busybox:v1".into()),
            ("[::1]:5000/x:y", "[::1]:5000", "x", Some("y"), false,
             "[::1]:5000/x:y".into()),
            ("[fe80::1]/x", "[fe80::1]", "x", Some("latest"), false,
             "[fe80::1]/x:latest".into()),
            ("Registry.Example.COM/x", "Registry.Example.COM", "x", Some("latest"), false,
             "Registry.Example.COM/x:latest".into()),
            // `localhost:5000` without a slash is docker.io's `localhost` at tag 5000.
            ("localhost:5000", "docker.io", "library/localhost", Some("5000"), false,
             "docker.io/library/localhost:5000".into()),
            // A first component without `.`/`:` that isn't localhost is a path.
            ("myhost/x", "docker.io", "myhost/x", Some("latest"), false,
             "docker.io/myhost/x:latest".into()),
            (&format!("busybox@{d}"), "docker.io", "library/busybox", None, true,
             format!("docker.io/library/busybox@{d}")),
            (&format!("busybox:1.36@{d}"), "docker.io", "library/busybox", Some("1.36"), true,
             format!("docker.io/library/busybox:1.36@{d}")),
            (&format!("host:5000/a/b:t@{d}"), "host:5000", "a/b", Some("t"), true,
             format!("host:5000/a/b:t@{d}")),
            (&format!("localhost:5000/x@{d}"), "localhost:5000", "x", None, true,
             format!("localhost:5000/x@{d}")),
            ("my-reg.example.com:443/d__e---f_g.h", "my-reg.example.com:443", "d__e---f_g.h", Some("latest"), false,
             "my-reg.example.com:443/d__e---f_g.h:latest".into()),
            ("docker.io/a__b/c-d.e---f:TAG_x.y-z", "docker.io", "a__b/c-d.e---f", Some("TAG_x.y-z"), false,
             "docker.io/a__b/c-d.e---f:TAG_x.y-z".into()),
            ("x:_tag", "docker.io", "library/x", Some("_tag"), false,
             "docker.io/library/x:_tag".into()),
            (&format!("x:{}", "t".repeat(128)), "docker.io", "library/x", Some(&"t".repeat(128)), false,
             format!("docker.io/library/x:{}", "t".repeat(128))),
            ("0/1", "docker.io", "0/1", Some("latest"), false,
             "docker.io/0/1:latest".into()),
        ];
        for (input, registry, repository, tag, has_digest, display) in table {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *registry, "{input}");
            assert_eq!(r.repository(), *repository, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest().is_some(), *has_digest, "{input}");
            assert_eq!(&r.to_string(), display, "{input}");
            // Normalised output parses back to the same reference.
            assert_eq!(ImageRef::parse(display).unwrap(), r, "{input} round trip");
            assert_eq!(input.parse::<ImageRef>().unwrap(), r);
        }
    }

    #[test]
    fn invalid_references_name_the_bad_part() {
        let long_component = "a".repeat(256);
        let long_name = format!("host.io/{}", vec!["abcdefghi"; 26].join("/"));
        #[rustfmt::skip]
        let table: &[(&str, &str)] = &[
            ("", "empty image reference"),
            ("Busybox", "repository name must be lowercase: `Busybox`"),
            ("user/Repo:tag", "repository name must be lowercase: `user/Repo:tag`"),
            ("docker.io/LIBRARY/busybox", "repository name must be lowercase"),
            ("busybox:", "invalid tag `` in `busybox:`"),
            ("busybox:.hidden", "invalid tag `.hidden` in `busybox:.hidden`"),
            ("busybox:-x", "invalid tag `-x`"),
            ("busybox:a+b", "invalid tag `a+b`"),
            ("busybox:a:b", "invalid repository path component `busybox:a`"),
            ("busybox@sha256:abc", "invalid digest `sha256:abc` in `busybox@sha256:abc`"),
            ("busybox@", "invalid digest `` in `busybox@`"),
            ("busybox@sha512:abcd", "invalid digest `sha512:abcd`"),
            ("a@b@sha256:x", "invalid digest `b@sha256:x`"),
            ("-busybox", "invalid repository path component `-busybox`"),
            ("busybox-", "invalid repository path component `busybox-`"),
            ("bus..ybox", "invalid repository path component `bus..ybox`"),
            ("bus___ybox", "invalid repository path component `bus___ybox`"),
            ("a/.b", "invalid repository path component `.b`"),
            ("a//b", "invalid repository path component `` in `a//b`"),
            ("a/", "invalid repository path component `` in `a/`"),
            ("/a", "invalid repository path component `` in `/a`"),
            ("host:5000/", "invalid repository path component `` in `host:5000/`"),
            (":tag", "invalid repository path component `` in `:tag`"),
            ("b@y.com/x", "invalid digest"),
            ("host:port/x", "invalid registry `host:port` in `host:port/x`"),
            ("host:/x", "invalid registry `host:`"),
            ("-host.com/x", "invalid registry `-host.com`"),
            ("host..com/x", "invalid registry `host..com`"),
            ("under_score.com/x", "invalid registry `under_score.com`"),
            ("[::1/x", "invalid registry `[::1`"),
            ("[zz::1]:5000/x", "invalid registry `[zz::1]:5000`"),
            ("[::1]5000/x", "invalid registry `[::1]5000`"),
            ("a b", "invalid repository path component `a b`"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
             "a 64-character hex string is an image ID"),
        ];
        for (input, want) in table {
            let err = ImageRef::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: got `{err}`, want `{want}`");
        }
        let err = ImageRef::parse(&format!("x:{}", "t".repeat(129))).unwrap_err();
        assert!(matches!(err, ReferenceError::InvalidTag { .. }), "{err}");
        let err = ImageRef::parse(&long_component).unwrap_err();
        assert!(
            matches!(err, ReferenceError::NameTooLong { len: 256, .. }),
            "{err}"
        );
        assert!(long_name.len() > NAME_TOTAL_LENGTH_MAX);
        let err = ImageRef::parse(&format!("{long_name}:tag")).unwrap_err();
        assert!(err.to_string().contains("the limit is 255"), "{err}");
        // Exactly at the limit is fine.
        let at_limit = format!("x/{}", "a".repeat(253));
        assert_eq!(at_limit.len(), NAME_TOTAL_LENGTH_MAX);
        ImageRef::parse(&at_limit).unwrap();
    }

    #[test]
    fn wire_host_and_manifest_reference() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.api_host(), DOCKER_HUB_API_HOST);
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.reference_for_manifest(), "latest");
        let r = ImageRef::parse("127.0.0.1:5000/a:t").unwrap();
        assert_eq!(r.api_host(), "127.0.0.1:5000");
        let pinned = ImageRef::parse(&format!("a:t@{D}")).unwrap();
        assert_eq!(pinned.reference_for_manifest(), D);
    }

    #[test]
    fn with_tag_and_with_digest() {
        let d = Digest::parse(D).unwrap();
        let r = ImageRef::parse("localhost:5000/a/b:one").unwrap();
        let pinned = r.with_digest(d.clone());
        assert_eq!(pinned.to_string(), format!("localhost:5000/a/b:one@{D}"));
        let retagged = pinned.with_tag("two").unwrap();
        assert_eq!(retagged.to_string(), "localhost:5000/a/b:two");
        assert_eq!(retagged.digest(), None);
        let err = r.with_tag("no/slash").unwrap_err();
        assert!(err.to_string().contains("invalid tag `no/slash`"), "{err}");
    }

    #[test]
    fn registry_names_from_the_command_line() {
        for (input, want) in [
            ("docker.io", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            ("quay.io", "quay.io"),
        ] {
            assert_eq!(normalize_registry(input), want, "{input}");
        }
    }
}
