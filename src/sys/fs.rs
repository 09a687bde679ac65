//! File-system syscalls relative to directory fds (`*at` calls, `openat2`,
//! xattrs, device nodes), each returning `io::Error` whose message names the
//! call and the path it was given ("mknodat `dev/null`"). The error keeps the
//! errno reachable through [`errno`], so callers can branch on `EEXIST`,
//! `ENOENT`, `ELOOP` without parsing text.
//!
//! Paths given to the `*at` wrappers are relative to the dirfd; none of these
//! wrappers follows a symlink in the final component unless its name says so.
//! Everything here is safe rustix; no `unsafe` is needed.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
pub use rustix::fs::{FileType, Stat};
pub use rustix::io::Errno;

/// The error of one syscall: which call, on which path, and the OS error.
#[derive(Debug)]
pub struct SysError {
    pub call: &'static str,
    pub path: PathBuf,
    pub errno: Errno,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`: {}", self.call, self.path.display(), self.errno)
    }
}

impl std::error::Error for SysError {}

fn err(call: &'static str, path: &Path, errno: Errno) -> io::Error {
    let kind = io::Error::from(errno).kind();
    io::Error::new(
        kind,
        SysError {
            call,
            path: path.to_path_buf(),
            errno,
        },
    )
}

/// The errno behind an error from this module (or a raw OS error).
pub fn errno(e: &io::Error) -> Option<Errno> {
    if let Some(raw) = e.raw_os_error() {
        return Some(Errno::from_raw_os_error(raw));
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
        .map(|s| s.errno)
}

/// Views raw path bytes (as found in a tar header) as a `Path`.
pub fn path_from_bytes(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// An empty relative path means "the directory itself": `*at` calls want
/// `"."` for that.
fn dot(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

/// Opens a directory (following symlinks) to serve as the root of `*at` calls.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("open", path, e))
}

/// Opens the directory `path` below `root` with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)`: the kernel refuses any symlink on the way (`ELOOP`)
/// and any `..` that would leave `root` (`EXDEV`), so the result is always
/// the literal path inside `root`. `EAGAIN` (a concurrent rename somewhere
/// on the system) is retried.
pub fn open_dir_beneath(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let path = dot(path);
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            // No O_NOFOLLOW: it would turn a final symlink into ENOTDIR,
            // while RESOLVE_NO_SYMLINKS reports every symlink as ELOOP.
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(|e| err("openat2", path, e)),
        }
    }
}

/// Opens `path` below `root` with `openat2(RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)`: symlinks, absolute ones included, resolve as if
/// `root` were `/`, so the result never lies outside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let path = dot(path);
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(|e| err("openat2", path, e)),
        }
    }
}

/// Opens the directory `name` in `dir` without following a symlink there.
pub fn open_subdir(dir: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        dot(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| err("openat", name, e))
}

/// Creates the regular file `name` in `dir` for writing. `O_EXCL` makes an
/// existing entry (a symlink included) fail with `EEXIST` instead of being
/// followed or truncated.
pub fn create_file(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .map_err(|e| err("openat", name, e))
}

/// Opens the regular file `name` in `dir` for reading, refusing a symlink.
pub fn open_file_nofollow(dir: BorrowedFd<'_>, name: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| err("openat", name, e))
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)).map_err(|e| err("mkdirat", name, e))
}

/// Creates a fifo, character or block device `name` in `dir`.
pub fn mknodat(
    dir: BorrowedFd<'_>,
    name: &Path,
    kind: FileType,
    mode: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(mode), dev)
        .map_err(|e| err("mknodat", name, e))
}

/// Creates the symlink `name` in `dir` pointing at `target` (any text).
pub fn symlinkat(target: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    rustix::fs::symlinkat(target, dir, name).map_err(|e| err("symlinkat", name, e))
}

/// Hard-links `old_name` in `old_dir` as `new_name` in `new_dir`. Flags are
/// empty, so a symlink at `old_name` is linked itself, never followed.
pub fn linkat(
    old_dir: BorrowedFd<'_>,
    old_name: &Path,
    new_dir: BorrowedFd<'_>,
    new_name: &Path,
) -> io::Result<()> {
    rustix::fs::linkat(old_dir, old_name, new_dir, new_name, AtFlags::empty())
        .map_err(|e| err("linkat", new_name, e))
}

/// Removes `name` in `dir`; `is_dir` selects `AT_REMOVEDIR`.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &Path, is_dir: bool) -> io::Result<()> {
    let flags = if is_dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    rustix::fs::unlinkat(dir, name, flags).map_err(|e| err("unlinkat", name, e))
}

/// Removes `name` in `dir` and, if it is a directory, everything below it,
/// never following a symlink (the walk goes through fds opened with
/// `O_NOFOLLOW`).
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let st = fstatat_nofollow(dir, name)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return unlinkat(dir, name, false);
    }
    let sub = open_subdir(dir, name)?;
    let mut children = Vec::new();
    {
        let mut reader = rustix::fs::Dir::read_from(&sub).map_err(|e| err("opendir", name, e))?;
        while let Some(ent) = reader.read() {
            let ent = ent.map_err(|e| err("readdir", name, e))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                children.push(n.to_vec());
            }
        }
    }
    for child in children {
        remove_all_at(sub.as_fd(), path_from_bytes(&child))?;
    }
    unlinkat(dir, name, true)
}

pub fn fstat(fd: BorrowedFd<'_>, what: &Path) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(|e| err("fstat", what, e))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn fstatat_nofollow(dir: BorrowedFd<'_>, name: &Path) -> io::Result<Stat> {
    rustix::fs::statat(dir, dot(name), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| err("fstatat", name, e))
}

pub fn readlinkat(dir: BorrowedFd<'_>, name: &Path) -> io::Result<Vec<u8>> {
    rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|c| c.into_bytes())
        .map_err(|e| err("readlinkat", name, e))
}

/// `fchown` of an open file; `what` only names it in errors.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32, what: &Path) -> io::Result<()> {
    rustix::fs::fchown(fd, Some(uid_of(uid)), Some(gid_of(gid))).map_err(|e| err("fchown", what, e))
}

/// `fchownat(dir, name, AT_SYMLINK_NOFOLLOW)`: owns a symlink itself.
pub fn fchownat_nofollow(dir: BorrowedFd<'_>, name: &Path, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(uid_of(uid)),
        Some(gid_of(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| err("fchownat", name, e))
}

pub fn fchmod(fd: BorrowedFd<'_>, mode: u32, what: &Path) -> io::Result<()> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| err("fchmod", what, e))
}

/// `fchmodat(dir, name, mode, 0)`. Linux has no `AT_SYMLINK_NOFOLLOW` for
/// it, so callers use it only on a node they just created (fifo, device).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())
        .map_err(|e| err("fchmodat", name, e))
}

fn timestamps(sec: i64, nsec: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets atime and mtime of an open file.
pub fn futimens(fd: BorrowedFd<'_>, sec: i64, nsec: u32, what: &Path) -> io::Result<()> {
    rustix::fs::futimens(fd, &timestamps(sec, nsec)).map_err(|e| err("futimens", what, e))
}

/// Sets atime and mtime of `name` in `dir`, of a symlink itself.
pub fn utimensat_nofollow(dir: BorrowedFd<'_>, name: &Path, sec: i64, nsec: u32) -> io::Result<()> {
    rustix::fs::utimensat(dir, name, &timestamps(sec, nsec), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| err("utimensat", name, e))
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

/// The path `/proc/self/fd/<dir>/<name>`: lets the path-only `l*xattr`
/// calls reach `name` relative to a dirfd. The directory part is a magic
/// link to an fd we hold, and `l*` calls never follow the final `name`.
pub fn proc_path(dir: BorrowedFd<'_>, name: &Path) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.as_os_str().is_empty() {
        p.push(name);
    }
    p
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8], what: &Path) -> io::Result<()> {
    rustix::fs::fsetxattr(fd, name, value, rustix::fs::XattrFlags::empty())
        .map_err(|e| err_xattr("fsetxattr", what, name, e))
}

/// Sets an xattr on `path` itself, not on what a symlink there points to.
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .map_err(|e| err_xattr("lsetxattr", path, name, e))
}

/// Removes an xattr from `path` itself; one that is not there is fine.
pub fn lremovexattr(path: &Path, name: &[u8]) -> io::Result<()> {
    match rustix::fs::lremovexattr(path, name) {
        Ok(()) | Err(Errno::NODATA) => Ok(()),
        Err(e) => Err(err_xattr("lremovexattr", path, name, e)),
    }
}

fn err_xattr(call: &'static str, path: &Path, name: &[u8], e: Errno) -> io::Error {
    let mut shown = path.as_os_str().to_owned();
    shown.push(" (");
    shown.push(OsStr::from_bytes(name));
    shown.push(")");
    err(call, Path::new(&shown), e)
}

/// Every xattr (name, value) of an open file, sorted by name.
pub fn fxattrs(fd: BorrowedFd<'_>, what: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names =
        grow(|buf| rustix::fs::flistxattr(fd, buf)).map_err(|e| err("flistxattr", what, e))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = grow(|buf| rustix::fs::fgetxattr(fd, name, buf))
            .map_err(|e| err_xattr("fgetxattr", what, name, e))?;
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Every xattr (name, value) of `path` itself (symlinks not followed),
/// sorted by name.
pub fn lxattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names =
        grow(|buf| rustix::fs::llistxattr(path, buf)).map_err(|e| err("llistxattr", path, e))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = grow(|buf| rustix::fs::lgetxattr(path, name, buf))
            .map_err(|e| err_xattr("lgetxattr", path, name, e))?;
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Calls an xattr getter with a growing buffer until the value fits
/// (`ERANGE` means the buffer was too small; values can grow between calls).
fn grow(
    mut call: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match call(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_call_and_path_and_keep_errno() {
        let dir = tempfile::tempdir().unwrap();
        let root = open_dir(dir.path()).unwrap();
        let e = open_dir_beneath(root.as_fd(), Path::new("missing/sub")).unwrap_err();
        assert_eq!(errno(&e), Some(Errno::NOENT));
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("openat2 `missing/sub`"), "{e}");
    }

    #[test]
    fn beneath_refuses_symlinks_and_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("d", dir.path().join("l")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        assert!(open_dir_beneath(root.as_fd(), Path::new("d")).is_ok());
        let e = open_dir_beneath(root.as_fd(), Path::new("l")).unwrap_err();
        assert_eq!(errno(&e), Some(Errno::LOOP));
        let e = open_dir_beneath(root.as_fd(), Path::new("d/../..")).unwrap_err();
        assert_eq!(errno(&e), Some(Errno::XDEV));
    }

    #[test]
    fn in_root_confines_absolute_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/marker"), b"inside").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("l")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        let fd = open_in_root(root.as_fd(), Path::new("l/marker"), OFlags::RDONLY).unwrap();
        let text = std::io::read_to_string(std::fs::File::from(fd)).unwrap();
        assert_eq!(text, "inside");
    }

    #[test]
    fn xattrs_round_trip_on_fd_and_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = open_dir(dir.path()).unwrap();
        let f = create_file(root.as_fd(), Path::new("f"), 0o644).unwrap();
        fsetxattr(f.as_fd(), b"user.b", b"2", Path::new("f")).unwrap();
        fsetxattr(f.as_fd(), b"user.a", b"1", Path::new("f")).unwrap();
        assert_eq!(
            fxattrs(f.as_fd(), Path::new("f")).unwrap(),
            vec![
                (b"user.a".to_vec(), b"1".to_vec()),
                (b"user.b".to_vec(), b"2".to_vec())
            ]
        );
        symlinkat(Path::new("/nowhere"), root.as_fd(), Path::new("s")).unwrap();
        let p = proc_path(root.as_fd(), Path::new("s"));
        lsetxattr(&p, b"trusted.t", b"v").unwrap();
        assert_eq!(
            lxattrs(&p).unwrap(),
            vec![(b"trusted.t".to_vec(), b"v".to_vec())]
        );
        // The target was never created by following the link.
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t/sub")).unwrap();
        std::fs::write(dir.path().join("t/sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("t/link")).unwrap();
        let root = open_dir(dir.path()).unwrap();
        remove_all_at(root.as_fd(), Path::new("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
    }
}
