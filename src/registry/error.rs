//! The registry client's error type. Every variant names what was being
//! done (`what`, e.g. "fetch manifest `latest` of `docker.io/library/busybox`")
//! so a message read alone says which registry, repository and object failed.

use std::io;
use std::path::PathBuf;

use crate::oci::Digest;

use super::credentials::CredentialsError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP response at all (connection refused, reset, DNS, timeout),
    /// after the retries.
    #[error("{what}: request to `{url}` failed")]
    Transport {
        what: String,
        url: String,
        #[source]
        source: ureq::Error,
    },

    #[error(
        "{what}: the TLS certificate of `{host}` was rejected; put the registry's CA certificate in /etc/containers/certs.d/{host}/ca.crt (or a directory given with --cert-dir), or use --tls-verify=false to skip verification"
    )]
    CertificateRejected {
        what: String,
        host: String,
        #[source]
        source: ureq::Error,
    },

    /// The registry answered with an unexpected status; `message` is what its
    /// error JSON said, if anything.
    #[error("{what}: HTTP {status}{}", message_suffix(.message))]
    Status {
        what: String,
        status: u16,
        message: String,
    },

    #[error(
        "{what}: authentication required by `{registry}` (or the repository does not exist){}; run `builder login {registry}`",
        message_suffix(.message)
    )]
    AuthenticationRequired {
        what: String,
        registry: String,
        message: String,
    },

    #[error(
        "{what}: credentials rejected by `{registry}` (or they grant no access to this repository){}; run `builder login {registry}`",
        message_suffix(.message)
    )]
    CredentialsRejected {
        what: String,
        registry: String,
        message: String,
    },

    /// HTTP 403: authenticated, but not allowed (a push to a repository the
    /// account may only read, say).
    #[error(
        "{what}: `{registry}` denied access to `{repository}`{}; check that this account may push there, or log in as one that may with `builder login {registry}`",
        message_suffix(.message)
    )]
    Denied {
        what: String,
        registry: String,
        repository: String,
        message: String,
    },

    #[error("{what}: `{registry}` sent an unusable WWW-Authenticate header `{header}`")]
    BadChallenge {
        what: String,
        registry: String,
        header: String,
    },

    #[error("{what}: invalid response from the registry: {detail}")]
    InvalidResponse { what: String, detail: String },

    #[error(
        "{what}: refusing plain HTTP to `{url}`: `{host}` is not an insecure registry (pass --tls-verify=false or mark it `insecure = true` in registries.conf if that is really wanted)"
    )]
    PlainHttpRefused {
        what: String,
        url: String,
        host: String,
    },

    #[error("{what}: read the response body")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("{what}: more than {max} redirects, last to `{url}`")]
    TooManyRedirects { what: String, url: String, max: u32 },

    #[error("{what}: the document is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },

    #[error("{what}: digest mismatch: expected `{expected}`, got `{actual}`")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error(
        "{what}: the registry's Docker-Content-Digest `{header}` does not match the content's digest `{actual}`"
    )]
    ContentDigestMismatch {
        what: String,
        header: String,
        actual: Digest,
    },

    #[error("{what}: size mismatch: the descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{what}: the transfer broke off at byte {offset} of {size} and could not be resumed")]
    Interrupted {
        what: String,
        offset: u64,
        size: u64,
        #[source]
        source: io::Error,
    },

    #[error("{what}: invalid manifest JSON")]
    InvalidManifest {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what}: unsupported manifest media type `{media_type}`{}", schema1_hint(.media_type))]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("no manifest for platform {wanted} in `{reference}`; available: {available}")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },

    #[error("read CA certificates from `{path}`")]
    CaFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl RegistryError {
    /// The HTTP status the registry answered with, for errors that have one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::AuthenticationRequired { .. } | Self::CredentialsRejected { .. } => Some(401),
            Self::Denied { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether the object does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn schema1_hint(media_type: &str) -> &'static str {
    if media_type.contains("manifest.v1") {
        " (Docker schema 1 is obsolete and not supported; re-push the image with a current tool)"
    } else {
        ""
    }
}
