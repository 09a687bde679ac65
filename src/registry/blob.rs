//! Blobs: a streaming, resumable reader for layers, and a verified
//! in-memory fetch for small blobs (configs).
//!
//! [`BlobReader`] never holds more than one read buffer of a blob. When the
//! connection breaks or the body ends before the descriptor's size, it asks
//! again from where it stopped (`Range: bytes=N-`); a server that ignores
//! Range and answers 200 has its first N bytes skipped. Consecutive breaks
//! without progress are bounded by `max_retries`, with backoff. It refuses
//! to yield more bytes than the descriptor's size and fails if the blob ends
//! short, but it does not hash: the caller hashes in the same pass that
//! stores and unpacks (`oci::verify`), so the bytes are read once.

use std::io::{self, Read};

use ureq::http::{Method, StatusCode, header};

use super::auth::pull_scope;
use super::client::{Call, CallBody, Client, status_error};
use super::error::RegistryError;
use crate::oci::{Descriptor, Digest};
use crate::reference::ImageRef;

/// The largest blob [`Client::fetch_blob_verified_bytes`] holds in memory.
/// Image configs are kilobytes; a bigger "config" is a layer by mistake or
/// an attack on memory.
pub const VERIFIED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The bytes of one blob, streamed from the registry. Implements [`Read`];
/// errors are `io::Error`s whose inner error is a [`RegistryError`].
pub struct BlobReader {
    client: Client,
    registry: String,
    repository: String,
    digest: Digest,
    size: u64,
    what: String,
    body: Option<ureq::BodyReader<'static>>,
    /// Bytes handed to the caller so far.
    pos: u64,
    /// Breaks since the last byte of progress.
    failures: u32,
    /// Times the transfer was resumed, for logs and tests.
    resumes: u32,
}

impl Client {
    /// Opens `GET /v2/REPO/blobs/DIGEST` (following redirects) and returns a
    /// reader of exactly `desc.size` bytes. The first response is checked
    /// here, so "not found" and auth errors come back as `Err` rather than on
    /// the first read.
    pub fn fetch_blob(&self, r: &ImageRef, desc: &Descriptor) -> Result<BlobReader, RegistryError> {
        let mut reader = BlobReader {
            client: self.clone(),
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            digest: desc.digest.clone(),
            size: desc.size,
            what: format!("fetch blob `{}` of `{}`", desc.digest, r.name()),
            body: None,
            pos: 0,
            failures: 0,
            resumes: 0,
        };
        reader.open()?;
        Ok(reader)
    }

    /// Fetches a small blob (a config) whole and checks its size and digest.
    pub fn fetch_blob_verified_bytes(
        &self,
        r: &ImageRef,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("fetch blob `{}` of `{}`", desc.digest, r.name());
        if desc.size > VERIFIED_BYTES_MAX {
            return Err(RegistryError::TooLarge {
                what,
                limit: VERIFIED_BYTES_MAX,
            });
        }
        let mut reader = self.fetch_blob(r, desc)?;
        let mut bytes = Vec::with_capacity(desc.size as usize);
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| into_registry_error(e, &what))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

impl BlobReader {
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// How often the transfer was resumed after a break.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// (Re)requests the blob from `pos` on and positions the body there.
    fn open(&mut self) -> Result<(), RegistryError> {
        let mut headers = Vec::new();
        if self.pos > 0 {
            headers.push((header::RANGE, format!("bytes={}-", self.pos)));
        }
        let call = Call {
            method: Method::GET,
            registry: &self.registry,
            repository: Some(&self.repository),
            scope: Some(pull_scope(&self.repository)),
            path: format!("/v2/{}/blobs/{}", self.repository, self.digest),
            headers,
            body: CallBody::None,
            retry: true,
            what: &self.what,
        };
        let resp = self.client.execute(&call)?;
        let status = resp.status();
        let skip = match status {
            StatusCode::OK => {
                if let Some(len) = content_length(&resp)
                    && len != self.size
                {
                    return Err(RegistryError::SizeMismatch {
                        what: self.what.clone(),
                        expected: self.size,
                        actual: len,
                    });
                }
                self.pos
            }
            StatusCode::PARTIAL_CONTENT if self.pos > 0 => {
                let start = content_range_start(&resp);
                match start {
                    Some(start) if start <= self.pos => self.pos - start,
                    _ => {
                        return Err(RegistryError::InvalidResponse {
                            what: self.what.clone(),
                            detail: format!(
                                "asked for bytes from {} on, got Content-Range `{}`",
                                self.pos,
                                resp.headers()
                                    .get(header::CONTENT_RANGE)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                            ),
                        });
                    }
                }
            }
            _ => return Err(status_error(&self.what, resp)),
        };
        let mut body = resp.into_body().into_reader();
        if skip > 0 {
            let skipped = io::copy(&mut (&mut body).take(skip), &mut io::sink()).map_err(|e| {
                RegistryError::Read {
                    what: self.what.clone(),
                    source: e,
                }
            })?;
            if skipped < skip {
                return Err(RegistryError::Read {
                    what: self.what.clone(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the resumed response ended before reaching the resume offset",
                    ),
                });
            }
        }
        self.body = Some(body);
        Ok(())
    }

    /// Records a break in the transfer; fails once there have been too many
    /// in a row, else waits before the caller reopens.
    fn note_break(&mut self, cause: io::Error) -> io::Result<()> {
        self.body = None;
        self.failures += 1;
        let max = self.client.options().max_retries;
        if self.failures > max {
            return Err(io::Error::other(RegistryError::Interrupted {
                what: self.what.clone(),
                offset: self.pos,
                size: self.size,
                source: cause,
            }));
        }
        let wait = self.client.backoff(self.failures - 1);
        tracing::warn!(
            blob = %self.digest, offset = self.pos, size = self.size, error = %cause, ?wait,
            "blob transfer broke off; resuming"
        );
        std::thread::sleep(wait);
        Ok(())
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos == self.size {
                // Anything past the declared size means the descriptor and
                // the blob disagree; a stream that is merely still open is
                // fine, so only data counts.
                if let Some(mut body) = self.body.take() {
                    let mut probe = [0u8; 1];
                    if let Ok(n) = body.read(&mut probe)
                        && n > 0
                    {
                        return Err(io::Error::other(RegistryError::SizeMismatch {
                            what: self.what.clone(),
                            expected: self.size,
                            actual: self.size + n as u64,
                        }));
                    }
                }
                return Ok(0);
            }
            if self.body.is_none() {
                // The first request is made by `fetch_blob`; a missing body
                // here means a break.
                self.resumes += 1;
                match self.open() {
                    Ok(()) => {}
                    // Read errors while skipping are another break.
                    Err(RegistryError::Read { source, .. }) => {
                        self.note_break(source)?;
                        continue;
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            }
            let want = buf
                .len()
                .min((self.size - self.pos).min(usize::MAX as u64) as usize);
            let body = self.body.as_mut().expect("opened above");
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    self.note_break(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the response ended after {} of {} bytes",
                            self.pos, self.size
                        ),
                    ))?;
                }
                Ok(n) => {
                    self.pos += n as u64;
                    self.failures = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.note_break(e)?,
            }
        }
    }
}

/// Turns an `io::Error` from a [`BlobReader`] back into the registry error
/// inside it, or wraps it.
pub fn into_registry_error(e: io::Error, what: &str) -> RegistryError {
    if e.get_ref().is_some_and(|i| i.is::<RegistryError>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<RegistryError>().expect("checked above");
    }
    RegistryError::Read {
        what: what.to_string(),
        source: e,
    }
}

fn content_length(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The first byte of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let v = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_reader_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<BlobReader>();
    }

    #[test]
    fn registry_errors_survive_the_io_round_trip() {
        let e = io::Error::other(RegistryError::SizeMismatch {
            what: "w".into(),
            expected: 1,
            actual: 2,
        });
        assert!(matches!(
            into_registry_error(e, "x"),
            RegistryError::SizeMismatch {
                expected: 1,
                actual: 2,
                ..
            }
        ));
        let plain = io::Error::new(io::ErrorKind::UnexpectedEof, "eof");
        assert!(matches!(
            into_registry_error(plain, "x"),
            RegistryError::Read { .. }
        ));
    }
}
