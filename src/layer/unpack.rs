//! Unpacking: one decompressed layer tar → one directory in overlayfs format
//! (usable as an overlay lowerdir), plus the [`Inventory`] of what was
//! written.
//!
//! The `tar` crate is used only as a parser (`Archive::entries`). Its own
//! `unpack` canonicalizes paths against the host's root and so refuses valid
//! layers with absolute symlinks such as `var/run -> /run`, and sets
//! metadata by path; we need in-root semantics and fd-based metadata.
//!
//! # Path safety
//!
//! Nothing is ever written outside `target`:
//! - Entry names and hard-link targets that are absolute or contain a `..`
//!   component are rejected (`./` prefixes and `.` components are dropped,
//!   which is harmless).
//! - The final component of every entry is created with `*at` calls that
//!   never follow it (`O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `mknodat`,
//!   `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`). An existing entry at
//!   that name is removed first (recursively for a directory, without
//!   following symlinks); only a directory over a directory is kept and gets
//!   the new metadata.
//! - Parent directories are *confined*, as containerd and buildah do: a
//!   symlink among the parents, including one planted earlier in the same
//!   tar, is resolved as if `target` were `/` (`a -> /etc` then `a/passwd`
//!   writes `target/etc/passwd`; `..` stops at `target`). Missing parents
//!   are created (mode 0755, owned by the unpacking user), also through a
//!   dangling symlink's target. Confining rather than rejecting keeps real
//!   layers working while making escapes impossible. The walk that resolves
//!   symlinks is ours (so we learn the real path, which the inventory
//!   records), but the directory is then opened with `openat2(RESOLVE_BENEATH
//!   | RESOLVE_NO_SYMLINKS)`, so the kernel guarantees the fd lies below
//!   `target` whatever our walk concluded.
//! - Whiteouts, opaque markers and hard-link targets may not go through a
//!   symlink at all (rejected): they name existing entries of the layer, and
//!   archivers record real paths.
//! - Hard-link targets must be earlier, non-directory entries of this layer.
//!
//! Every rejection names the offending entry ([`LayerError::Rejected`]).
//!
//! # Overlay format
//!
//! `.wh.NAME` becomes a character device 0/0 `NAME`; `.wh..wh..opq` sets the
//! opaque xattr on its directory (see [`super::whiteout`]). Overlay xattrs
//! found in the tar (`trusted.overlay.*`, `user.overlay.*`) are dropped.
//!
//! # Metadata
//!
//! Ownership is numeric (user and group names are ignored). Order on each
//! object: content, `fchown`, `fchmod` (after chown, which clears
//! setuid/setgid), xattrs (after chown, which clears `security.capability`),
//! then times. Directories are created 0700 and get their mode and mtime
//! only after the last entry: creating children changes a directory's mtime,
//! and a read-only directory mode would stop an unprivileged unpacker.
//!
//! # Speed
//!
//! Pull hot path. Metadata is set on open fds, parents are looked up
//! relative to a cached chain of directory fds (entries come in tree order),
//! the common case costs one `openat2` per directory change, and a single
//! copy buffer is reused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use tar::EntryType;

use super::inventory::{ByteStr, ContentHasher, Entry, Inventory, Kind, Mtime, Recorder};
use super::whiteout::{self, OciName, OverlayXattr};
use super::{LayerError, Reject, join};
use crate::sys::fs::{self as sysfs, Errno, FileType, path_from_bytes as p};

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Which namespace the opaque xattr goes into: `trusted.overlay.*` for
    /// a normal overlay mount, `user.overlay.*` for one with `userxattr`.
    pub overlay_xattr: OverlayXattr,
}

/// What an unpack produced.
#[derive(Debug)]
pub struct Unpacked {
    /// Tar entries processed (global PAX headers not counted).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// The record of the resulting directory.
    pub inventory: Inventory,
    /// The archive had an entry for its root (`./`), whose owner, mode and
    /// mtime the root directory now has (ADD applies them to its
    /// destination, as Docker's untar does).
    pub root_entry: bool,
}

/// Read buffer between the tar parser and the (decompressing, hashing)
/// reader: tar headers are 512-byte reads that would otherwise each call
/// into the decompressor.
const READ_BUFFER: usize = 128 * 1024;
/// Copy buffer for file content.
const COPY_BUFFER: usize = 256 * 1024;
/// Symlinks followed while resolving one parent path (Linux's own limit).
const MAX_SYMLINKS: u32 = 40;

/// Reads tar entries from `reader` until the tar end marker and writes them
/// below `target` (an existing, empty directory) in overlay format.
///
/// Takes `&mut R` so the caller can keep reading afterwards (to drain
/// trailing bytes into a digest). The parser reads through an internal
/// buffer, so up to 128 KiB beyond the end marker may already have been
/// consumed from `reader` when this returns; a hashing reader passed in
/// has hashed them all the same.
///
/// On error the directory is left half-written; the caller discards it.
pub fn unpack<R: Read>(
    reader: &mut R,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, LayerError> {
    let mut u = Unpacker::new(target, opts)?;
    let consumed = std::cell::Cell::new(0u64);
    let counted = CountingReader {
        inner: reader,
        count: &consumed,
    };
    let mut buffered = BufReader::with_capacity(READ_BUFFER, counted);
    let mut archive = tar::Archive::new(&mut buffered);
    let mut last: Option<String> = None;
    // Where the previous entry's data ended in the stream.
    let mut last_data_end = 0u64;
    let read_err = |last: &Option<String>, source| LayerError::Read {
        after: last.clone(),
        source,
    };
    for entry in archive.entries().map_err(|e| read_err(&last, e))? {
        let mut entry = match entry {
            Ok(entry) => entry,
            // `umoci insert` (0.4) writes layers that stop right after the
            // last file's data: no padding, no end-of-archive blocks. Go's
            // tar reader and umoci accept them, so images built that way
            // exist. Accept exactly that case — the stream ended where the
            // last entry's data ended — and nothing looser: a stream cut
            // inside data or a header is still an error.
            Err(e) if last.is_some() && consumed.get() == last_data_end => {
                tracing::debug!(after = ?last, error = %e, "layer tar ends without padding or end-of-archive blocks");
                break;
            }
            Err(e) => return Err(read_err(&last, e)),
        };
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            // Global PAX headers carry defaults (often just a comment) that
            // layer writers do not use for anything we apply.
            continue;
        }
        last_data_end = entry.raw_file_position() + entry.size();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        u.entry(&mut entry, &name)?;
        u.entries += 1;
        last = Some(name);
    }
    u.finish()
}

/// Counts the bytes read from the layer stream, so the end of a tar that
/// lacks its end-of-archive blocks can be told from a truncated one.
struct CountingReader<'a, R> {
    inner: R,
    count: &'a std::cell::Cell<u64>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Per-entry metadata gathered from the header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Mtime,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A directory fd with the path it was looked up by (`literal`, as the tar
/// names it) and the path it really has below the root (differs when a
/// symlink was followed).
struct CachedDir {
    literal: Vec<u8>,
    real: Rc<[u8]>,
    fd: Rc<OwnedFd>,
}

#[derive(Clone)]
struct Parent {
    fd: Rc<OwnedFd>,
    real: Rc<[u8]>,
}

impl Parent {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    fn child(&self, name: &[u8]) -> Vec<u8> {
        join(&self.real, name)
    }
}

/// Deferred directory metadata (see the module docs).
struct DirFix {
    mode: u32,
    mtime: Option<Mtime>,
}

enum Made<T> {
    New(T),
    ExistingDir,
}

struct Unpacker<'o> {
    opts: &'o UnpackOptions,
    root: Rc<OwnedFd>,
    /// Chain of directories from the root down, each a (literal) ancestor of
    /// the next: the parents of the entries being written now.
    cache: Vec<CachedDir>,
    rec: Recorder,
    fixups: BTreeMap<Vec<u8>, DirFix>,
    buf: Vec<u8>,
    euid: u32,
    egid: u32,
    /// chown can be skipped for ids equal to ours unless the root is
    /// setgid, which makes new children inherit its group.
    root_setgid: bool,
    entries: u64,
    bytes: u64,
}

impl<'o> Unpacker<'o> {
    fn new(target: &Path, opts: &'o UnpackOptions) -> Result<Self, LayerError> {
        let target_err = |source| LayerError::Target {
            path: target.to_path_buf(),
            source,
        };
        let root = sysfs::open_dir(target).map_err(target_err)?;
        let st = sysfs::fstat(root.as_fd(), target).map_err(target_err)?;
        let xattrs = sysfs::fxattrs(root.as_fd(), target).map_err(target_err)?;
        let mut rec = Recorder::default();
        rec.insert(
            Vec::new(),
            Entry {
                xattrs: xattrs
                    .into_iter()
                    .map(|(n, v)| (ByteStr(n), ByteStr(v)))
                    .collect(),
                ..Entry::new(Kind::Dir, st.st_mode & 0o7777, st.st_uid, st.st_gid)
            },
        );
        Ok(Self {
            opts,
            root: Rc::new(root),
            cache: Vec::new(),
            rec,
            fixups: BTreeMap::new(),
            buf: vec![0; COPY_BUFFER],
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            root_setgid: st.st_mode & 0o2000 != 0,
            entries: 0,
            bytes: 0,
        })
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), LayerError> {
        let reject = LayerError::rejecting(name);
        let io_err = LayerError::entry_io(name);
        let raw = entry.path_bytes();
        let path = normalize(&raw).map_err(reject)?;
        let mut etype = entry.header().entry_type();
        if etype == EntryType::Regular && raw.ends_with(b"/") {
            // Pre-POSIX archives mark directories only by a trailing slash.
            etype = EntryType::Directory;
        }
        drop(raw);
        let meta = read_meta(entry, name).map_err(io_err)?;

        if path.is_empty() {
            if etype != EntryType::Directory {
                return Err(reject(Reject::RootNotDir));
            }
            return self.root_dir(meta).map_err(io_err);
        }
        let (parent, base) = split_parent(&path);
        for comp in parent.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match whiteout::classify(comp) {
                OciName::Plain => {}
                OciName::Meta => {
                    tracing::debug!(entry = name, "skipping whiteout metadata");
                    return Ok(());
                }
                _ => return Err(reject(Reject::WhiteoutAsDir)),
            }
        }
        match whiteout::classify(base) {
            OciName::Plain => {}
            OciName::Meta => {
                tracing::debug!(entry = name, "skipping whiteout metadata");
                return Ok(());
            }
            OciName::Invalid => return Err(reject(Reject::BadWhiteout)),
            OciName::Opaque => {
                let dir = self.dir_at(parent, false, name)?;
                return self.opaque(&dir).map_err(io_err);
            }
            OciName::Whiteout(hidden) => {
                let dir = self.dir_at(parent, false, name)?;
                return self.whiteout(&dir, hidden, &meta).map_err(io_err);
            }
        }

        let dir = self.dir_at(parent, true, name)?;
        match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&dir, base, &meta, entry).map_err(io_err)
            }
            EntryType::Directory => self.dir(&dir, base, &path, &meta).map_err(io_err),
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| reject(Reject::NoLinkTarget))?
                    .into_owned();
                self.symlink(&dir, base, &target, &meta).map_err(io_err)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| reject(Reject::NoLinkTarget))?
                    .into_owned();
                self.hardlink(&dir, base, &target, name)
            }
            EntryType::Fifo | EntryType::Char | EntryType::Block => {
                let kind = match etype {
                    EntryType::Fifo => FileType::Fifo,
                    EntryType::Char => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                // Writers often leave the device fields of a fifo blank.
                let (major, minor) = if kind == FileType::Fifo {
                    (0, 0)
                } else {
                    let h = entry.header();
                    (
                        h.device_major().map_err(io_err)?.unwrap_or(0),
                        h.device_minor().map_err(io_err)?.unwrap_or(0),
                    )
                };
                self.node(&dir, base, kind, (major, minor), &meta)
                    .map_err(io_err)
            }
            other => Err(reject(Reject::Unsupported(other.as_byte() as char))),
        }
    }

    /// Resolves the directory `literal` (a normalized path, `""` for the
    /// root) to an fd below the root, creating missing directories. With
    /// `follow` false, any symlink on the way is a rejection.
    fn dir_at(&mut self, literal: &[u8], follow: bool, name: &str) -> Result<Parent, LayerError> {
        if literal.is_empty() {
            return Ok(Parent {
                fd: self.root.clone(),
                real: Rc::from(&b""[..]),
            });
        }
        while let Some(top) = self.cache.last() {
            if is_ancestor_or_self(&top.literal, literal) {
                break;
            }
            self.cache.pop();
        }
        if let Some(top) = self.cache.last()
            && top.literal == literal
            && (follow || *top.real == *literal)
        {
            return Ok(Parent {
                fd: top.fd.clone(),
                real: top.real.clone(),
            });
        }
        let (fd, real) = match sysfs::open_dir_beneath(self.root.as_fd(), p(literal)) {
            Ok(fd) => (fd, literal.to_vec()),
            Err(e)
                if matches!(
                    sysfs::errno(&e),
                    Some(Errno::NOENT | Errno::LOOP | Errno::NOTDIR)
                ) =>
            {
                self.resolve_slow(literal, follow, name)?
            }
            Err(source) => {
                return Err(LayerError::Entry {
                    entry: name.to_string(),
                    source,
                });
            }
        };
        let parent = Parent {
            fd: Rc::new(fd),
            real: Rc::from(real),
        };
        self.push_cache(literal.to_vec(), &parent);
        Ok(parent)
    }

    fn push_cache(&mut self, literal: Vec<u8>, dir: &Parent) {
        while let Some(top) = self.cache.last() {
            if is_ancestor_or_self(&top.literal, &literal) && top.literal != literal {
                break;
            }
            self.cache.pop();
        }
        self.cache.push(CachedDir {
            literal,
            real: dir.real.clone(),
            fd: dir.fd.clone(),
        });
    }

    /// Walks `literal` component by component below the root, resolving
    /// symlinks as if the root were `/` and creating missing directories.
    /// Returns the directory opened beneath the root (kernel-checked) and
    /// its real path.
    fn resolve_slow(
        &mut self,
        literal: &[u8],
        follow: bool,
        name: &str,
    ) -> Result<(OwnedFd, Vec<u8>), LayerError> {
        let reject = LayerError::rejecting(name);
        let io_err = LayerError::entry_io(name);
        let root = self.root.clone();
        let mut real: Vec<u8> = Vec::new();
        let mut todo: Vec<Vec<u8>> = literal
            .split(|&b| b == b'/')
            .rev()
            .map(<[u8]>::to_vec)
            .collect();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            match &comp[..] {
                b"" | b"." => continue,
                b".." => {
                    // Only symlink targets bring `..` here; at the root it
                    // stays at the root, as in a chroot.
                    let cut = real.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    real.truncate(cut);
                    continue;
                }
                _ => {}
            }
            let candidate = join(&real, &comp);
            match sysfs::fstatat_nofollow(root.as_fd(), p(&candidate)) {
                Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => real = candidate,
                    FileType::Symlink => {
                        if !follow {
                            return Err(reject(Reject::ThroughSymlink(lossy(&candidate))));
                        }
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(reject(Reject::SymlinkLoop(lossy(literal))));
                        }
                        let target =
                            sysfs::readlinkat(root.as_fd(), p(&candidate)).map_err(io_err)?;
                        if target.first() == Some(&b'/') {
                            real.clear();
                        }
                        todo.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                    }
                    _ => return Err(reject(Reject::NotADirectory(lossy(&candidate)))),
                },
                Err(e) if sysfs::errno(&e) == Some(Errno::NOENT) => {
                    self.implicit_dir(&candidate).map_err(io_err)?;
                    real = candidate;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        let fd = sysfs::open_dir_beneath(root.as_fd(), p(&real)).map_err(io_err)?;
        Ok((fd, real))
    }

    /// Creates a directory the tar did not list but an entry needs.
    fn implicit_dir(&mut self, path: &[u8]) -> io::Result<()> {
        sysfs::mkdirat(self.root.as_fd(), p(path), 0o700)?;
        let st = sysfs::fstatat_nofollow(self.root.as_fd(), p(path))?;
        self.rec.insert(
            path.to_vec(),
            Entry::new(Kind::Dir, 0o755, st.st_uid, st.st_gid),
        );
        self.fixups.insert(
            path.to_vec(),
            DirFix {
                mode: 0o755,
                mtime: None,
            },
        );
        Ok(())
    }

    /// Runs `create`; if the name is taken, removes what is there (unless
    /// both are directories) and runs it again.
    fn make<T>(
        &mut self,
        dir: &Parent,
        name: &[u8],
        want_dir: bool,
        mut create: impl FnMut() -> io::Result<T>,
    ) -> io::Result<Made<T>> {
        match create() {
            Ok(v) => Ok(Made::New(v)),
            Err(e) if sysfs::errno(&e) == Some(Errno::EXIST) => {
                let st = sysfs::fstatat_nofollow(dir.fd(), p(name))?;
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if want_dir && is_dir {
                    return Ok(Made::ExistingDir);
                }
                self.remove(dir, name)?;
                create().map(Made::New)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `name` in `dir` (a whole tree for a directory) and forgets
    /// everything recorded about it.
    fn remove(&mut self, dir: &Parent, name: &[u8]) -> io::Result<()> {
        sysfs::remove_all_at(dir.fd(), p(name))?;
        let real = dir.child(name);
        self.rec.remove_subtree(&real);
        let below = super::inventory::below_prefix(&real);
        self.fixups
            .retain(|k, _| *k != real && !k.starts_with(&below));
        // A cached fd could now point at a removed directory, or a path
        // could now resolve through a new symlink: start over.
        self.cache.clear();
        Ok(())
    }

    fn needs_chown(&self, meta: &Meta) -> bool {
        meta.uid != self.euid || meta.gid != self.egid || self.root_setgid
    }

    /// Applies xattrs from the tar through `set` and returns those applied.
    fn xattrs(
        &self,
        meta: &Meta,
        mut set: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
    ) -> io::Result<Vec<(ByteStr, ByteStr)>> {
        let mut applied = Vec::with_capacity(meta.xattrs.len());
        for (name, value) in &meta.xattrs {
            match set(name, value) {
                Ok(()) => applied.push((ByteStr(name.clone()), ByteStr(value.clone()))),
                Err(e) if sysfs::errno(&e) == Some(Errno::OPNOTSUPP) => {
                    tracing::warn!(
                        xattr = %String::from_utf8_lossy(name),
                        "file system does not support this xattr; skipped"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(applied)
    }

    fn file<R: Read>(
        &mut self,
        dir: &Parent,
        name: &[u8],
        meta: &Meta,
        data: &mut tar::Entry<'_, R>,
    ) -> io::Result<()> {
        let expected_size = data.size();
        let made = self.make(dir, name, false, || {
            sysfs::create_file(dir.fd(), p(name), meta.mode & 0o777)
        })?;
        let Made::New(fd) = made else {
            unreachable!("a file is never kept")
        };
        let mut file = File::from(fd);
        let mut hasher = ContentHasher::new();
        let mut size = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&self.buf[..n]);
            file.write_all(&self.buf[..n]).map_err(|e| {
                io::Error::new(e.kind(), format!("write `{}`: {e}", p(name).display()))
            })?;
            size += n as u64;
        }
        if size != expected_size {
            // The parser hands out a short read at the end of the stream;
            // a file cut short must not pass as complete.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("tar stream ended after {size} of {expected_size} content bytes"),
            ));
        }
        let what = p(name);
        if self.needs_chown(meta) {
            sysfs::fchown(file.as_fd(), meta.uid, meta.gid, what)?;
        }
        sysfs::fchmod(file.as_fd(), meta.mode, what)?;
        let xattrs = self.xattrs(meta, |n, v| sysfs::fsetxattr(file.as_fd(), n, v, what))?;
        sysfs::futimens(file.as_fd(), meta.mtime.0, meta.mtime.1, what)?;
        self.bytes += size;
        self.rec.insert(
            dir.child(name),
            Entry {
                size,
                mtime: Some(meta.mtime),
                xxh3: Some(hasher.finish()),
                xattrs,
                ..Entry::new(Kind::File, meta.mode, meta.uid, meta.gid)
            },
        );
        Ok(())
    }

    fn dir(&mut self, parent: &Parent, name: &[u8], literal: &[u8], meta: &Meta) -> io::Result<()> {
        let made = self.make(parent, name, true, || {
            sysfs::mkdirat(parent.fd(), p(name), 0o700)
        })?;
        let fd = sysfs::open_subdir(parent.fd(), p(name))?;
        let what = p(name);
        if self.needs_chown(meta) || matches!(made, Made::ExistingDir) {
            sysfs::fchown(fd.as_fd(), meta.uid, meta.gid, what)?;
        }
        let xattrs = self.xattrs(meta, |n, v| sysfs::fsetxattr(fd.as_fd(), n, v, what))?;
        let real = parent.child(name);
        match (made, self.rec.get_mut(&real)) {
            (Made::ExistingDir, Some(e)) => {
                e.mode = meta.mode;
                e.uid = meta.uid;
                e.gid = meta.gid;
                merge_xattrs(&mut e.xattrs, xattrs);
            }
            _ => self.rec.insert(
                real.clone(),
                Entry {
                    xattrs,
                    ..Entry::new(Kind::Dir, meta.mode, meta.uid, meta.gid)
                },
            ),
        }
        self.fixups.insert(
            real.clone(),
            DirFix {
                mode: meta.mode,
                mtime: Some(meta.mtime),
            },
        );
        let dir = Parent {
            fd: Rc::new(fd),
            real: Rc::from(real),
        };
        self.push_cache(literal.to_vec(), &dir);
        Ok(())
    }

    /// `./` in the tar: metadata for the layer root itself.
    fn root_dir(&mut self, meta: Meta) -> io::Result<()> {
        let root = self.root.clone();
        let what = Path::new(".");
        sysfs::fchown(root.as_fd(), meta.uid, meta.gid, what)?;
        let xattrs = self.xattrs(&meta, |n, v| sysfs::fsetxattr(root.as_fd(), n, v, what))?;
        if let Some(e) = self.rec.get_mut(b"") {
            e.mode = meta.mode;
            e.uid = meta.uid;
            e.gid = meta.gid;
            merge_xattrs(&mut e.xattrs, xattrs);
        }
        self.fixups.insert(
            Vec::new(),
            DirFix {
                mode: meta.mode,
                mtime: Some(meta.mtime),
            },
        );
        Ok(())
    }

    fn symlink(&mut self, dir: &Parent, name: &[u8], target: &[u8], meta: &Meta) -> io::Result<()> {
        self.make(dir, name, false, || {
            sysfs::symlinkat(p(target), dir.fd(), p(name))
        })?;
        if self.needs_chown(meta) {
            sysfs::fchownat_nofollow(dir.fd(), p(name), meta.uid, meta.gid)?;
        }
        let xattrs = if meta.xattrs.is_empty() {
            Vec::new()
        } else {
            let path = sysfs::proc_path(dir.fd(), p(name));
            self.xattrs(meta, |n, v| sysfs::lsetxattr(&path, n, v))?
        };
        sysfs::utimensat_nofollow(dir.fd(), p(name), meta.mtime.0, meta.mtime.1)?;
        self.rec.insert(
            dir.child(name),
            Entry {
                mtime: Some(meta.mtime),
                target: Some(ByteStr(target.to_vec())),
                xattrs,
                ..Entry::new(Kind::Symlink, 0o777, meta.uid, meta.gid)
            },
        );
        Ok(())
    }

    fn hardlink(
        &mut self,
        dir: &Parent,
        name: &[u8],
        target_raw: &[u8],
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let reject = LayerError::rejecting(entry_name);
        let io_err = LayerError::entry_io(entry_name);
        let shown = lossy(target_raw);
        let target = match normalize(target_raw) {
            Ok(t) if t.is_empty() => return Err(reject(Reject::LinkToDir(shown))),
            Ok(t) => t,
            Err(_) => return Err(reject(Reject::LinkOutside(shown))),
        };
        let real = dir.child(name);
        if target == real {
            // A link to itself (some archivers emit these): nothing to do.
            return Ok(());
        }
        let (tdir, tname) = split_parent(&target);
        let tdir_fd = match sysfs::open_dir_beneath(self.root.as_fd(), p(tdir)) {
            Ok(fd) => fd,
            Err(e) => {
                return Err(match sysfs::errno(&e) {
                    Some(Errno::LOOP) => reject(Reject::LinkThroughSymlink(shown)),
                    Some(Errno::NOENT | Errno::NOTDIR) => reject(Reject::LinkMissing(shown)),
                    _ => io_err(e),
                });
            }
        };
        match self.rec.get(&target) {
            None => return Err(reject(Reject::LinkMissing(shown))),
            Some(e) if e.kind == Kind::Dir => return Err(reject(Reject::LinkToDir(shown))),
            Some(_) => {}
        }
        self.make(dir, name, false, || {
            sysfs::linkat(tdir_fd.as_fd(), p(tname), dir.fd(), p(name))
        })
        .map_err(io_err)?;
        self.rec.insert_link(real, &target);
        Ok(())
    }

    fn node(
        &mut self,
        dir: &Parent,
        name: &[u8],
        kind: FileType,
        rdev: (u32, u32),
        meta: &Meta,
    ) -> io::Result<()> {
        self.make(dir, name, false, || {
            sysfs::mknodat(dir.fd(), p(name), kind, meta.mode & 0o777, rdev.0, rdev.1)
        })?;
        if self.needs_chown(meta) {
            sysfs::fchownat_nofollow(dir.fd(), p(name), meta.uid, meta.gid)?;
        }
        // mknod applies the umask, and chown cleared setuid/setgid.
        sysfs::fchmodat(dir.fd(), p(name), meta.mode)?;
        let xattrs = if meta.xattrs.is_empty() {
            Vec::new()
        } else {
            let path = sysfs::proc_path(dir.fd(), p(name));
            self.xattrs(meta, |n, v| sysfs::lsetxattr(&path, n, v))?
        };
        sysfs::utimensat_nofollow(dir.fd(), p(name), meta.mtime.0, meta.mtime.1)?;
        let (kind, rdev) = match kind {
            FileType::Fifo => (Kind::Fifo, None),
            FileType::BlockDevice => (Kind::Block, Some(rdev)),
            _ if whiteout::is_overlay_whiteout_dev(rdev.0, rdev.1) => (Kind::Whiteout, None),
            _ => (Kind::Char, Some(rdev)),
        };
        self.rec.insert(
            dir.child(name),
            Entry {
                mtime: Some(meta.mtime),
                rdev,
                xattrs,
                ..Entry::new(kind, meta.mode, meta.uid, meta.gid)
            },
        );
        Ok(())
    }

    /// `.wh.NAME`: an overlay whiteout (char 0/0) replaces whatever is at
    /// `NAME`.
    fn whiteout(&mut self, dir: &Parent, hidden: &[u8], meta: &Meta) -> io::Result<()> {
        let (major, minor) = whiteout::OVERLAY_WHITEOUT_DEV;
        self.make(dir, hidden, false, || {
            sysfs::mknodat(
                dir.fd(),
                p(hidden),
                FileType::CharacterDevice,
                0,
                major,
                minor,
            )
        })?;
        if self.needs_chown(meta) {
            sysfs::fchownat_nofollow(dir.fd(), p(hidden), meta.uid, meta.gid)?;
        }
        sysfs::utimensat_nofollow(dir.fd(), p(hidden), meta.mtime.0, meta.mtime.1)?;
        self.rec.insert(
            dir.child(hidden),
            Entry {
                mtime: Some(meta.mtime),
                ..Entry::new(Kind::Whiteout, 0, meta.uid, meta.gid)
            },
        );
        Ok(())
    }

    /// `.wh..wh..opq`: mark the directory opaque.
    fn opaque(&mut self, dir: &Parent) -> io::Result<()> {
        let xname = self.opts.overlay_xattr.opaque_name();
        let value = whiteout::OVERLAY_OPAQUE_VALUE;
        sysfs::fsetxattr(dir.fd(), xname, value, p(&dir.real))?;
        if let Some(e) = self.rec.get_mut(&dir.real) {
            merge_xattrs(
                &mut e.xattrs,
                vec![(ByteStr(xname.to_vec()), ByteStr(value.to_vec()))],
            );
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Unpacked, LayerError> {
        self.cache.clear();
        // Children before parents, so a parent made unsearchable (0o000,
        // unprivileged unpack) does not block its children's fix-ups.
        for (path, fix) in self.fixups.iter().rev() {
            let finish_err = |source| LayerError::Finish {
                path: ByteStr(path.clone()).to_string(),
                source,
            };
            let opened;
            let fd = if path.is_empty() {
                self.root.as_fd()
            } else {
                opened = sysfs::open_dir_beneath(self.root.as_fd(), p(path)).map_err(finish_err)?;
                opened.as_fd()
            };
            sysfs::fchmod(fd, fix.mode, p(path)).map_err(finish_err)?;
            if let Some(Mtime(sec, nsec)) = fix.mtime {
                sysfs::futimens(fd, sec, nsec, p(path)).map_err(finish_err)?;
            }
        }
        Ok(Unpacked {
            entries: self.entries,
            bytes: self.bytes,
            root_entry: self.fixups.contains_key(&Vec::new()),
            inventory: self.rec.finish(),
        })
    }
}

/// Adds `new` xattrs to `into`, replacing same-named ones, keeping name order.
fn merge_xattrs(into: &mut Vec<(ByteStr, ByteStr)>, new: Vec<(ByteStr, ByteStr)>) {
    for (n, v) in new {
        match into.binary_search_by(|(k, _)| k.cmp(&n)) {
            Ok(i) => into[i].1 = v,
            Err(i) => into.insert(i, (n, v)),
        }
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> io::Result<Meta> {
    let h = entry.header();
    let mode = h.mode()? & 0o7777;
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what} {v} does not fit in 32 bits"),
            )
        })
    };
    let uid = id(h.uid()?, "uid")?;
    let gid = id(h.gid()?, "gid")?;
    let mut mtime = Mtime(i64::try_from(h.mtime()?).unwrap_or(i64::MAX), 0);
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    mtime = t;
                }
            } else if let Some(xname) = key.strip_prefix(b"SCHILY.xattr.") {
                if whiteout::is_overlay_xattr(xname) {
                    tracing::debug!(
                        entry = name,
                        xattr = %String::from_utf8_lossy(xname),
                        "ignoring overlay xattr from the tar"
                    );
                    continue;
                }
                xattrs.retain(|(n, _)| n != xname);
                xattrs.push((xname.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    xattrs.sort();
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// A PAX time: decimal seconds, optionally negative, with an optional
/// fraction (`1700000000.123456789`).
fn parse_pax_time(v: &[u8]) -> Option<Mtime> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let sec: i64 = sec.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut nsec: u32 = digits.parse().ok()?;
    // `-1.5` means 1.5 s before the epoch: -2 s + 0.5 s.
    let mut sec = sec;
    if s.starts_with('-') && nsec > 0 {
        sec -= 1;
        nsec = 1_000_000_000 - nsec;
    }
    Some(Mtime(sec, nsec))
}

/// Checks and normalizes an entry name: relative, no `..`, no NUL; `.` and
/// empty components (from `./x` or `a//b`) dropped. `""` is the root.
fn normalize(raw: &[u8]) -> Result<Vec<u8>, Reject> {
    if raw.contains(&0) {
        return Err(Reject::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(Reject::Absolute);
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(Reject::DotDot),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

fn is_ancestor_or_self(a: &[u8], path: &[u8]) -> bool {
    path.starts_with(a) && (path.len() == a.len() || path[a.len()] == b'/')
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests;
