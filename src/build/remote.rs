//! ADD's remote sources: an `http://` or `https://` URL is downloaded into a
//! scratch directory while the step is planned, so that the step's content
//! digest (and so its cache key) covers the bytes actually fetched.
//!
//! What the file becomes follows BuildKit's HTTP source (`source/http`),
//! which Docker's builder uses today:
//! - its name, when the destination is a directory, is the last segment of
//!   the URL's (percent-decoded) path, trailing slashes ignored; where
//!   BuildKit falls back to `__unnamed__`, we refuse, as Docker's classic
//!   builder did, because a file nobody named is never what was meant;
//! - its mode is 0600 unless `--chmod` says otherwise (BuildKit writes the
//!   download with `perm := 0600`);
//! - its mtime is the response's `Last-Modified` (the three HTTP date forms
//!   Go's `http.ParseTime` takes), else the epoch; an unparsable header
//!   also gives the epoch, as in BuildKit;
//! - it is never extracted, even when it is an archive;
//! - `--checksum=sha256:HEX` is checked against the bytes received (after
//!   any `Content-Encoding` is undone, as Go's client does); on a mismatch
//!   the download is deleted and nothing is written.
//!
//! Any 2xx answer is the file; redirects are followed (at most
//! [`MAX_REDIRECTS`]); anything else is an error naming the URL and the
//! status. Proxies: `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`
//! from the environment (ureq's default), except that loopback hosts never
//! use one, as with Go's `ProxyFromEnvironment`. TLS trusts the system's
//! CA bundle file, as Go's client (so BuildKit) does, so a company CA the
//! host trusts works: `SSL_CERT_FILE` overrides it (`SSL_CERT_DIR` is not
//! read); without any bundle, the Mozilla roots compiled into ureq. Not
//! the per-registry CA directories, which are for registries.

use std::ffi::OsString;
use std::io::{self, Read as _, Write as _};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tempfile::TempPath;
use ureq::Agent;
use ureq::http::header;

use super::{At, BuildError};
use crate::oci::Digest;
use crate::oci::verify::HashingWriter;

/// Redirect hops followed before giving up (Go's client stops at 10 too).
pub const MAX_REDIRECTS: u32 = 10;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a read may wait for data before the download fails.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether an ADD source is a URL rather than a path in the context.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// A downloaded file.
#[derive(Debug, Clone)]
pub(crate) struct Download {
    /// The file in the scratch directory; deleted when the last clone of
    /// the plan holding it is dropped.
    pub path: Arc<TempPath>,
    /// From `Last-Modified`, else the epoch.
    pub mtime: (i64, u32),
}

/// The file name ADD gives `url` in a directory destination: the last
/// segment of its percent-decoded path, or `None` when there is none (or it
/// is `.` or `..`).
pub fn file_name(url: &str) -> Option<OsString> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let decoded = percent_decode(path);
    // Trailing slashes do not count, as with Go's `path.Base`.
    let end = decoded.len() - decoded.iter().rev().take_while(|&&b| b == b'/').count();
    let name = decoded[..end]
        .rsplit(|&b| b == b'/')
        .next()
        .unwrap_or_default();
    if name.is_empty() || name == b"." || name == b".." || name.contains(&0) {
        return None;
    }
    Some(OsString::from_vec(name.to_vec()))
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits is kept.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_value(b[i + 1]), hex_value(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Downloads `url` into a new file in `scratch`, checking `expected` when
/// given. On any error the partial file is removed.
pub(crate) fn download(
    url: &str,
    scratch: &Path,
    expected: Option<&Digest>,
) -> Result<Download, BuildError> {
    let failed = |source: io::Error| BuildError::Download {
        at: At::default(),
        url: url.to_owned(),
        source,
    };
    let tls = crate::registry::system_tls_config().map_err(|e| failed(io::Error::other(e)))?;
    let resp = agent_for(url, tls).get(url).call().map_err(|e| {
        let Some(why) = crate::registry::rejected_certificate(&e) else {
            return failed(e.into_io());
        };
        let advice = match why {
            rustls::CertificateError::UnknownIssuer => {
                ": ADD trusts the system's CA bundle, so install the issuing CA there (or point SSL_CERT_FILE at a bundle that has it)"
            }
            _ => "",
        };
        BuildError::DownloadCertificate {
            at: At::default(),
            url: url.to_owned(),
            advice,
            source: e.into_io(),
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(BuildError::DownloadStatus {
            at: At::default(),
            url: url.to_owned(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("").to_owned(),
        });
    }
    let mtime = resp
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .map_or((0, 0), unix_time);

    let file = tempfile::Builder::new()
        .prefix(".add-url-")
        .tempfile_in(scratch)
        .map_err(|e| BuildError::write(scratch, e))?;
    let (file, path) = file.into_parts();
    let mut to = HashingWriter::new(file);
    let mut body = resp.into_body().into_reader();
    // By hand rather than io::copy, to tell the server's failures (a cut
    // connection) from ours (a full disk).
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| BuildError::write(&*path, e))?;
    }
    let (actual, _, _file) = to.finish();
    if let Some(expected) = expected
        && *expected != actual
    {
        // Dropping `path` deletes the download.
        return Err(BuildError::ChecksumMismatch {
            at: At::default(),
            url: url.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(Download {
        path: Arc::new(path),
        mtime,
    })
}

fn agent_for(url: &str, tls: ureq::tls::TlsConfig) -> Agent {
    let mut config = Agent::config_builder().tls_config(tls);
    if is_loopback(host_of(url)) {
        // A proxy cannot reach our own loopback interface.
        config = config.proxy(None);
    }
    config
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .user_agent(format!("builder/{}", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .build()
        .into()
}

/// The host of `url`, without user info, port or IPv6 brackets.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    host_port.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Seconds and nanoseconds since the epoch (negative before it).
fn unix_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            match d.subsec_nanos() {
                0 => (-(d.as_secs() as i64), 0),
                n => (-(d.as_secs() as i64) - 1, 1_000_000_000 - n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_path() {
        let name = |u: &str| file_name(u).map(|n| n.into_string().unwrap());
        assert_eq!(
            name("https://h/a/b/tool.tar.gz").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(
            name("https://h/a/b.txt?x=1/y#frag/z").as_deref(),
            Some("b.txt")
        );
        assert_eq!(name("http://h:8080/dir/").as_deref(), Some("dir"));
        assert_eq!(name("http://h/a%20b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(name("http://h/x/a%2Fb").as_deref(), Some("b"));
        assert_eq!(name("http://h/100%").as_deref(), Some("100%"));
        assert_eq!(name("http://user:pw@h/f").as_deref(), Some("f"));
        for none in [
            "http://h",
            "http://h/",
            "http://h//",
            "http://h?q=/x",
            "http://h/a/..",
            "http://h/.",
            "http://h/%00",
        ] {
            assert_eq!(name(none), None, "{none}");
        }
    }

    #[test]
    fn hosts_and_loopback() {
        assert_eq!(host_of("http://u:p@Example.com:80/x"), "Example.com");
        assert_eq!(host_of("https://[::1]:8443/x"), "::1");
        assert_eq!(host_of("http://h?x"), "h");
        assert!(is_loopback(host_of("http://127.0.0.2:1/")));
        assert!(is_loopback(host_of("http://LOCALHOST/")));
        assert!(is_loopback(host_of("http://[::1]/")));
        assert!(!is_loopback(host_of("http://10.0.0.1/")));
        assert!(is_url("https://x") && is_url("http://x") && !is_url("ftp://x"));
    }

    #[test]
    fn times_before_and_after_the_epoch() {
        let t = |s: i64, n: u32| {
            if s >= 0 {
                SystemTime::UNIX_EPOCH + Duration::new(s as u64, n)
            } else {
                SystemTime::UNIX_EPOCH - Duration::new(s.unsigned_abs(), 0) + Duration::new(0, n)
            }
        };
        assert_eq!(unix_time(t(784_111_777, 0)), (784_111_777, 0));
        assert_eq!(unix_time(t(5, 7)), (5, 7));
        assert_eq!(unix_time(t(-10, 0)), (-10, 0));
        assert_eq!(unix_time(t(-10, 250)), (-10, 250));
        assert_eq!(
            httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
                .map(unix_time)
                .unwrap(),
            (784_111_777, 0)
        );
    }
}
