//! Uploads: what a push asks of a registry (distribution spec, "Pushing
//! blobs" and "Pushing Manifests").
//!
//! A blob reaches the target repository in the cheapest way that works:
//!
//! 1. `HEAD /v2/REPO/blobs/DIGEST`: the repository has it already.
//! 2. Cross-repository mount, for each candidate source repository of the
//!    same registry: `POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=SRC`.
//!    201 means mounted; 202 means the registry did not (it lacks the blob
//!    there, or we may not read SRC) and opened an upload session instead,
//!    which the upload then uses. Any other failure of a mount only makes
//!    the blob go the normal way.
//! 3. Upload. `POST /v2/REPO/blobs/uploads/` opens a session (202 and its
//!    `Location`); then a blob of at most `upload_chunk_size` bytes is sent
//!    in one `PUT LOCATION?digest=DIGEST` (monolithic), a bigger one in
//!    `PATCH LOCATION` chunks of that size (`Content-Range: START-END`,
//!    each answer's `Location` being the next URL) closed by an empty
//!    `PUT LOCATION?digest=DIGEST`. The registry checks the digest.
//!
//! Recovery. A chunk that fails (connection cut, 5xx) is not simply resent:
//! the registry may have stored some or all of it. `GET LOCATION` asks the
//! session's state (204, `Range: 0-LAST`, a fresh `Location`) and the upload
//! goes on from the offset the registry reports. A session the registry no
//! longer accepts (distribution answers 404 `BLOB_UPLOAD_INVALID` once data
//! arrived that the session's `_state` token does not account for) is
//! abandoned for a new one from byte 0. A final `PUT` that fails is checked
//! with `HEAD`: the blob may have been committed before the answer was lost.
//! Failures in a row without progress are bounded by `max_retries`, with
//! the client's backoff in between.
//!
//! Distribution reports an empty session and a one-byte one alike
//! (`Range: 0-0`); an offset is only taken from `0-0` when the session is
//! known to be empty, otherwise the session is restarted.
//!
//! Auth scopes: every call on the target asks for
//! `repository:REPO:pull,push`; a mount adds `repository:SRC:pull`.
//!
//! Manifests are `PUT` as the exact bytes given, with their own media type
//! as `Content-Type`, so the registry's digest is the digest of those bytes
//! (checked against its `Docker-Content-Digest`).

use std::fs::File;

use ureq::http::{Method, Response, StatusCode, header};

use super::auth::{mount_scope, push_scope};
use super::client::{Call, CallBody, Client, error_message, status_error};
use super::error::RegistryError;
use crate::oci::{Descriptor, Digest};
use crate::reference::ImageRef;

/// The default `upload_chunk_size`: big enough that a chunk's round trip
/// costs little next to its transfer, small enough that a cut connection
/// costs seconds, not the whole layer.
pub const CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// How [`Client::upload_blob`] put a blob into the target repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobPushed {
    /// Mounted from another repository of the same registry.
    Mounted { from: String },
    /// Uploaded: in `chunks` PATCH requests (0 for one monolithic PUT),
    /// after `recoveries` failures that were recovered from.
    Uploaded { chunks: u32, recoveries: u32 },
}

impl Client {
    /// `HEAD /v2/REPO/blobs/DIGEST`: whether `target`'s repository has the
    /// blob.
    pub fn blob_exists(&self, target: &ImageRef, digest: &Digest) -> Result<bool, RegistryError> {
        let what = format!("check for blob `{digest}` in `{}`", target.name());
        let call = Call {
            method: Method::HEAD,
            registry: target.registry(),
            repository: Some(target.repository()),
            scope: Some(push_scope(target.repository())),
            path: format!("/v2/{}/blobs/{digest}", target.repository()),
            headers: Vec::new(),
            body: CallBody::None,
            retry: true,
            what: &what,
        };
        let resp = self.execute(&call)?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(push_status_error(&what, target, resp)),
        }
    }

    /// Puts the blob `desc`, whose bytes are `file`, into `target`'s
    /// repository: mounted from one of `mount_from` (other repositories of
    /// the same registry, tried in order), or uploaded. The caller has
    /// checked with [`Client::blob_exists`] that it is not there yet.
    /// `progress` is told how many more bytes the registry has confirmed.
    pub fn upload_blob(
        &self,
        target: &ImageRef,
        desc: &Descriptor,
        file: &File,
        mount_from: &[String],
        progress: &dyn Fn(u64),
    ) -> Result<BlobPushed, RegistryError> {
        let mut session = None;
        let candidates: Vec<&String> = mount_from
            .iter()
            .filter(|from| from.as_str() != target.repository())
            .collect();
        for (i, from) in candidates.iter().enumerate() {
            match self.mount_blob(target, &desc.digest, from) {
                Ok(Mount::Mounted) => {
                    return Ok(BlobPushed::Mounted {
                        from: from.to_string(),
                    });
                }
                Ok(Mount::Session(location)) if i + 1 == candidates.len() => {
                    session = Some(location);
                }
                Ok(Mount::Session(location)) => self.cancel_upload(target, &location),
                Err(e) => {
                    tracing::debug!(blob = %desc.digest, %from, error = %e, "mount failed; uploading");
                }
            }
        }
        let mut upload = Upload {
            client: self,
            target,
            desc,
            file,
            what: format!("push blob `{}` to `{}`", desc.digest, target.name()),
            progress,
            confirmed_max: 0,
            failures: 0,
            recoveries: 0,
            chunks: 0,
        };
        upload.run(session)
    }

    /// `POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=FROM`.
    fn mount_blob(
        &self,
        target: &ImageRef,
        digest: &Digest,
        from: &str,
    ) -> Result<Mount, RegistryError> {
        let what = format!(
            "mount blob `{digest}` from `{from}` into `{}`",
            target.name()
        );
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={from}",
            target.repository()
        );
        let call = Call {
            method: Method::POST,
            registry: target.registry(),
            repository: Some(target.repository()),
            scope: Some(mount_scope(target.repository(), from)),
            path: path.clone(),
            headers: Vec::new(),
            body: CallBody::Bytes(&[]),
            // A mount changes nothing when repeated.
            retry: true,
            what: &what,
        };
        let resp = self.execute(&call)?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => {
                let location = location_of(&resp, &what)?;
                let location =
                    self.absolute_location(target.registry(), &path, &location, &what)?;
                Ok(Mount::Session(location))
            }
            _ => Err(push_status_error(&what, target, resp)),
        }
    }

    /// `DELETE LOCATION`: gives an unused upload session back. Best effort;
    /// registries expire sessions anyway.
    fn cancel_upload(&self, target: &ImageRef, location: &str) {
        let what = format!("cancel an upload to `{}`", target.name());
        let call = Call {
            method: Method::DELETE,
            registry: target.registry(),
            repository: Some(target.repository()),
            scope: Some(push_scope(target.repository())),
            path: location.to_string(),
            headers: Vec::new(),
            body: CallBody::None,
            retry: false,
            what: &what,
        };
        if let Err(e) = self.execute(&call) {
            tracing::debug!(error = %e, "could not cancel an upload session");
        }
    }

    /// `PUT /v2/REPO/manifests/REF` of exactly `bytes`, typed `media_type`;
    /// REF is `target`'s tag, or its digest (which must be that of
    /// `bytes`). Returns the manifest's digest.
    pub fn push_manifest(
        &self,
        target: &ImageRef,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of_bytes(bytes);
        let reference = target.reference_for_manifest();
        let what = format!("push manifest `{reference}` to `{}`", target.name());
        if let Some(named) = target.digest()
            && *named != digest
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: named.clone(),
                actual: digest,
            });
        }
        let call = Call {
            method: Method::PUT,
            registry: target.registry(),
            repository: Some(target.repository()),
            scope: Some(push_scope(target.repository())),
            path: format!("/v2/{}/manifests/{reference}", target.repository()),
            headers: vec![(header::CONTENT_TYPE, media_type.to_string())],
            body: CallBody::Bytes(bytes),
            // Putting the same manifest twice is the same as once.
            retry: true,
            what: &what,
        };
        let resp = self.execute(&call)?;
        if !resp.status().is_success() {
            return Err(push_status_error(&what, target, resp));
        }
        if let Some(header) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && let Ok(claimed) = Digest::parse(header.trim())
            && claimed != digest
        {
            return Err(RegistryError::ContentDigestMismatch {
                what,
                header: header.to_string(),
                actual: digest,
            });
        }
        Ok(digest)
    }
}

enum Mount {
    Mounted,
    /// The registry opened an upload session instead (its URL).
    Session(String),
}

/// One blob's upload, across sessions.
struct Upload<'a> {
    client: &'a Client,
    target: &'a ImageRef,
    desc: &'a Descriptor,
    file: &'a File,
    what: String,
    progress: &'a dyn Fn(u64),
    /// The highest offset reported to `progress` (a restarted session
    /// reports nothing until it passes it).
    confirmed_max: u64,
    /// Failures since the last progress.
    failures: u32,
    recoveries: u32,
    chunks: u32,
}

/// Why a step of an upload stopped.
enum Stop {
    /// Worth another try in a new session (after backoff).
    Restart(RegistryError),
    Fatal(RegistryError),
}

impl From<RegistryError> for Stop {
    fn from(e: RegistryError) -> Self {
        if is_transient(&e) {
            Stop::Restart(e)
        } else {
            Stop::Fatal(e)
        }
    }
}

impl Upload<'_> {
    fn run(&mut self, mut session: Option<String>) -> Result<BlobPushed, RegistryError> {
        loop {
            let attempt = match session.take() {
                Some(location) => self.send(location),
                None => self.start().map_err(Stop::from).and_then(|l| self.send(l)),
            };
            match attempt {
                Ok(()) => {
                    return Ok(BlobPushed::Uploaded {
                        chunks: self.chunks,
                        recoveries: self.recoveries,
                    });
                }
                Err(Stop::Fatal(e)) => return Err(e),
                Err(Stop::Restart(e)) => {
                    // The blob may be complete although the answer was lost.
                    if let Ok(true) = self.client.blob_exists(self.target, &self.desc.digest) {
                        return Ok(BlobPushed::Uploaded {
                            chunks: self.chunks,
                            recoveries: self.recoveries,
                        });
                    }
                    self.note_failure(e)?;
                    tracing::warn!(blob = %self.desc.digest, "upload failed; starting it again");
                }
            }
        }
    }

    /// Counts a failure; errors once there were too many in a row, else
    /// waits before the caller tries again.
    fn note_failure(&mut self, e: RegistryError) -> Result<(), RegistryError> {
        self.failures += 1;
        if self.failures > self.client.options().max_retries {
            return Err(e);
        }
        self.recoveries += 1;
        let wait = self.client.backoff(self.failures - 1);
        tracing::debug!(blob = %self.desc.digest, error = %e, ?wait, "upload step failed");
        std::thread::sleep(wait);
        Ok(())
    }

    fn confirmed(&mut self, offset: u64) {
        if offset > self.confirmed_max {
            (self.progress)(offset - self.confirmed_max);
            self.confirmed_max = offset;
        }
        self.failures = 0;
    }

    fn call<'b>(
        &'b self,
        method: Method,
        url: String,
        headers: Vec<(header::HeaderName, String)>,
        body: CallBody<'b>,
    ) -> Call<'b> {
        Call {
            method,
            registry: self.target.registry(),
            repository: Some(self.target.repository()),
            scope: Some(push_scope(self.target.repository())),
            path: url,
            headers,
            body,
            retry: false,
            what: &self.what,
        }
    }

    /// Opens a session: `POST /v2/REPO/blobs/uploads/`.
    fn start(&self) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/blobs/uploads/", self.target.repository());
        let mut call = self.call(Method::POST, path.clone(), Vec::new(), CallBody::Bytes(&[]));
        // An extra session from a resent POST is harmless.
        call.retry = true;
        let resp = self.client.execute(&call)?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(push_status_error(&self.what, self.target, resp));
        }
        let location = location_of(&resp, &self.what)?;
        self.client
            .absolute_location(self.target.registry(), &path, &location, &self.what)
    }

    /// Sends the blob through the session at `location` and closes it.
    fn send(&mut self, location: String) -> Result<(), Stop> {
        let size = self.desc.size;
        let chunk = self.client.options().upload_chunk_size.max(1);
        if size <= chunk {
            let body = CallBody::File {
                file: self.file,
                offset: 0,
                len: size,
            };
            self.finish(&location, body)?;
            self.confirmed(size);
            return Ok(());
        }
        let mut location = location;
        let mut offset = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            match self.patch(&location, offset, len) {
                Ok((next, end)) => {
                    location = next;
                    offset = end;
                    self.chunks += 1;
                    self.confirmed(offset);
                }
                Err(Stop::Fatal(e)) => return Err(Stop::Fatal(e)),
                Err(Stop::Restart(e)) => {
                    self.note_failure(e).map_err(Stop::Fatal)?;
                    // Where did the registry get to? A session it no longer
                    // knows means a new one.
                    let (next, at) = self.status(&location, offset)?;
                    tracing::warn!(
                        blob = %self.desc.digest, offset = at, size,
                        "chunk upload broke off; resuming"
                    );
                    location = next;
                    offset = at;
                }
            }
        }
        self.finish(&location, CallBody::Bytes(&[]))
    }

    /// `PATCH LOCATION` with `len` bytes from `offset`. Returns the next
    /// location and the offset the registry has reached.
    fn patch(&self, location: &str, offset: u64, len: u64) -> Result<(String, u64), Stop> {
        let headers = vec![
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_RANGE,
                format!("{offset}-{}", offset + len - 1),
            ),
        ];
        let body = CallBody::File {
            file: self.file,
            offset,
            len,
        };
        let call = self.call(Method::PATCH, location.to_string(), headers, body);
        let resp = self.client.execute(&call)?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(session_failure(&self.what, self.target, resp));
        }
        let next = self.next_location(&resp, location)?;
        let reached = match range_end(&resp) {
            Some(Some(end)) if end >= offset && end < self.desc.size => end + 1,
            // No usable Range: the chunk was accepted whole.
            _ => offset + len,
        };
        Ok((next, reached))
    }

    /// `GET LOCATION`: the session's fresh location and offset. `known` is
    /// the offset the registry had confirmed before (see the module doc on
    /// `0-0`). A session the registry no longer accepts is a restart.
    fn status(&self, location: &str, known: u64) -> Result<(String, u64), Stop> {
        let call = self.call(
            Method::GET,
            location.to_string(),
            Vec::new(),
            CallBody::None,
        );
        let resp = self.client.execute(&call)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Stop::Restart(push_status_error(
                &self.what,
                self.target,
                resp,
            )));
        }
        let next = self.next_location(&resp, location)?;
        let offset = match range_end(&resp) {
            Some(Some(0)) | None if known == 0 => 0,
            Some(Some(end)) if end > 0 && end < self.desc.size => end + 1,
            _ => {
                return Err(Stop::Restart(RegistryError::InvalidResponse {
                    what: self.what.clone(),
                    detail: format!(
                        "the upload session reports an unusable range `{}` after {known} bytes",
                        header_str(&resp, header::RANGE)
                    ),
                }));
            }
        };
        Ok((next, offset))
    }

    /// `PUT LOCATION?digest=DIGEST` with `body` (the whole blob, or nothing
    /// after chunks): the registry checks the digest and commits the blob.
    fn finish(&self, location: &str, body: CallBody<'_>) -> Result<(), Stop> {
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={}", self.desc.digest);
        let headers = vec![(header::CONTENT_TYPE, "application/octet-stream".to_string())];
        let call = self.call(Method::PUT, url, headers, body);
        let resp = self.client.execute(&call)?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(session_failure(&self.what, self.target, resp))
    }

    fn next_location(&self, resp: &Response<ureq::Body>, base: &str) -> Result<String, Stop> {
        let location = location_of(resp, &self.what).map_err(Stop::Fatal)?;
        self.client
            .absolute_location(self.target.registry(), base, &location, &self.what)
            .map_err(Stop::Fatal)
    }
}

/// Errors a new attempt may get past: the network, and the registry's
/// momentary trouble.
fn is_transient(e: &RegistryError) -> bool {
    match e {
        RegistryError::Transport { .. } | RegistryError::Read { .. } => true,
        RegistryError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
        _ => false,
    }
}

/// A failed PATCH or closing PUT: worth a new session when the registry
/// lost the session (404 `BLOB_UPLOAD_UNKNOWN`/`BLOB_UPLOAD_INVALID`), the
/// offsets disagree (416) or the failure is transient; otherwise final (a
/// 400 `DIGEST_INVALID` says the bytes are not the blob).
fn session_failure(what: &str, target: &ImageRef, resp: Response<ureq::Body>) -> Stop {
    let status = resp.status().as_u16();
    let e = push_status_error(what, target, resp);
    if is_transient(&e) || status == 404 || status == 416 {
        Stop::Restart(e)
    } else {
        Stop::Fatal(e)
    }
}

fn location_of(resp: &Response<ureq::Body>, what: &str) -> Result<String, RegistryError> {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| RegistryError::InvalidResponse {
            what: what.to_string(),
            detail: format!("HTTP {} without a Location header", resp.status().as_u16()),
        })
}

fn header_str(resp: &Response<ureq::Body>, name: header::HeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The last byte of an upload's `Range: 0-LAST` (distribution writes no
/// unit; `bytes=` is accepted too). `None`: no header; `Some(None)`: one
/// that does not parse or does not start at 0.
fn range_end(resp: &Response<ureq::Body>) -> Option<Option<u64>> {
    let v = resp.headers().get(header::RANGE)?.to_str().ok();
    Some(v.and_then(parse_range_end))
}

fn parse_range_end(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

/// A failed push call's error: 403 says who refused what; everything else
/// is the registry's status and message.
fn push_status_error(what: &str, target: &ImageRef, resp: Response<ureq::Body>) -> RegistryError {
    if resp.status() == StatusCode::FORBIDDEN {
        return RegistryError::Denied {
            what: what.to_string(),
            registry: target.registry().to_string(),
            repository: target.repository().to_string(),
            message: error_message(resp),
        };
    }
    status_error(what, resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_parse() {
        assert_eq!(parse_range_end("0-999"), Some(999));
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("bytes=0-15"), Some(15));
        assert_eq!(parse_range_end(" 0 - 7 "), Some(7));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("0-"), None);
        assert_eq!(parse_range_end("garbage"), None);
    }

    #[test]
    fn transient_errors_are_retried_others_are_not() {
        let status = |status| RegistryError::Status {
            what: "w".into(),
            status,
            message: String::new(),
        };
        assert!(is_transient(&status(503)));
        assert!(is_transient(&status(429)));
        assert!(!is_transient(&status(400)));
        assert!(!is_transient(&status(404)));
        assert!(!is_transient(&RegistryError::Denied {
            what: "w".into(),
            registry: "r".into(),
            repository: "p".into(),
            message: String::new(),
        }));
    }
}
