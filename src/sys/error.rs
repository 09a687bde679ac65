//! Context for syscall errors: which call failed and on what.
//!
//! Every wrapper in `sys` returns a `std::io::Error` whose payload is a
//! [`SysError`], so the message reads "mount `/x`: No such file or directory"
//! through the `source()` chain while the errno stays available to callers
//! that must branch on it (see [`errno`]).

use std::fmt;
use std::io;

/// One failed system call: its name, the object it acted on, the errno and,
/// for the new mount API, the kernel's own message from the fs context log.
#[derive(Debug)]
pub struct SysError {
    pub call: &'static str,
    pub object: String,
    pub errno: rustix::io::Errno,
    pub detail: Option<String>,
    source: io::Error,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.object.is_empty() {
            write!(f, "{}", self.call)?;
        } else {
            write!(f, "{} `{}`", self.call, self.object)?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " (kernel: {detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SysError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Wraps `errno` from `call` on `object` into an `io::Error` of the same kind.
pub fn error(call: &'static str, object: impl fmt::Display, errno: rustix::io::Errno) -> io::Error {
    error_with_detail(call, object, errno, None)
}

/// Like [`error`], with a message the kernel gave alongside the errno.
pub fn error_with_detail(
    call: &'static str,
    object: impl fmt::Display,
    errno: rustix::io::Errno,
    detail: Option<String>,
) -> io::Error {
    let source = io::Error::from_raw_os_error(errno.raw_os_error());
    io::Error::new(
        source.kind(),
        SysError {
            call,
            object: object.to_string(),
            errno,
            detail,
            source,
        },
    )
}

/// The errno behind an error returned by a `sys` wrapper (or a plain OS error).
pub fn errno(err: &io::Error) -> Option<rustix::io::Errno> {
    if let Some(raw) = err.raw_os_error() {
        return Some(rustix::io::Errno::from_raw_os_error(raw));
    }
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
        .map(|e| e.errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_call_and_object_and_keeps_errno() {
        let err = error("mount", "/x/y", rustix::io::Errno::NOENT);
        assert_eq!(err.to_string(), "mount `/x/y`");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(errno(&err), Some(rustix::io::Errno::NOENT));
        let inner = err.get_ref().unwrap();
        assert!(inner.source().unwrap().to_string().contains("No such file"));
    }
}
