//! OCI distribution-spec client: auth, TLS, manifests, blobs.
//!
//! Owns everything between an [`ImageRef`](crate::reference::ImageRef) and
//! the bytes of its manifests and blobs: which scheme and certificates a
//! registry gets, who gets which credentials, retries and resumption. It
//! knows nothing of the store: it hands out verified manifest bytes and
//! blob streams, and the caller decides where they go; for a push it takes
//! a blob as an open file and a manifest as bytes.
//!
//! # Why a blocking client on `ureq`, not `oci-client`
//!
//! - `oci-client` is async. Its tokio worker threads would be alive when
//!   the runtime forks container processes, which builder's fork rule
//!   forbids (no fork while other threads of ours run).
//! - It builds its reqwest client internally: no retries, and no way to add
//!   Range-based resumption of a broken blob transfer.
//! - It reads neither the containers `auth.json` nor docker's `config.json`.
//! - It has its own manifest types; builder reads the exact bytes into
//!   `oci::image` types, because the digest is of those bytes.
//! - builder streams each layer once into a synchronous
//!   hash → temp file → gunzip → untar pipeline on a plain thread; a
//!   blocking [`Read`](std::io::Read) is exactly that shape.
//!
//! # Layout
//!
//! - `client`: [`RegistryOptions`], [`Client`], scheme choice, redirects,
//!   retries, the 401 → token → retry loop, request bodies.
//! - `auth`: `WWW-Authenticate` parsing, tokens and their cache.
//! - `credentials`: `auth.json` / `config.json`, for the client and for
//!   `builder login`/`logout`.
//! - `tls`: trusted roots per registry host.
//! - `manifest`: manifest fetch and verification, index → platform.
//! - `blob`: the resumable [`BlobReader`] and small verified fetches.
//! - `upload`: push: blob `HEAD`, cross-repository mounts, monolithic and
//!   chunked uploads that resume after a cut, manifest `PUT`.
//!
//! # Invariants
//!
//! - Credentials and tokens go only to the registry's origin and to the
//!   token realm it names, never to a redirect target on another origin.
//! - A manifest fetched by digest is checked against that digest; a
//!   manifest whose `Docker-Content-Digest` disagrees with its bytes is
//!   refused. Blobs are hashed by the caller ([`BlobReader`] only enforces
//!   the size); [`Client::fetch_blob_verified_bytes`] checks the digest.
//! - Plain HTTP and unverified TLS happen only where the options allow them
//!   (see `client`).

mod auth;
mod blob;
mod client;
pub mod credentials;
mod error;
mod manifest;
mod tls;
mod upload;

pub use auth::{Challenge, parse_challenges};
pub use blob::{BlobReader, VERIFIED_BYTES_MAX, into_registry_error};
pub use client::{Client, MAX_REDIRECTS, RegistryOptions, rejected_certificate};
pub use credentials::{AuthFiles, Credential, CredentialsError};
pub use error::RegistryError;
pub use manifest::{FetchedManifest, MANIFEST_SIZE_MAX, Resolved, select_platform};
pub use tls::{DEFAULT_CERTS_DIRS, system_config as system_tls_config};
pub use upload::{BlobPushed, CHUNK_SIZE};
