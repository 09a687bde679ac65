//! Diffing: an overlay upper directory → one OCI layer (tar, compressed),
//! hashed twice in the same pass: the tar as written (the DiffID) and the
//! compressed stream (the blob digest). The reverse of [`super::unpack()`].
//!
//! Terms: the *upper* is the overlay upper dir a RUN step wrote into; the
//! *lowers* are the layer directories it was mounted over, topmost first.
//!
//! # What the layer says
//!
//! Only the upper is walked, never the merged view:
//! - an overlay whiteout (char device 0/0) `NAME` becomes the empty file
//!   `.wh.NAME`, unless `NAME` exists in none of the lowers (a file created
//!   and deleted in the same step leaves a whiteout that deletes nothing;
//!   BuildKit drops those too). The check is a plain `lstat` in each lower,
//!   topmost first, stopping at a lower whiteout; whatever it gets wrong
//!   errs towards emitting a whiteout, which is harmless;
//! - a directory with the opaque xattr (`overlay.opaque=y` in the
//!   configured namespace) becomes its entry followed by
//!   `DIR/.wh..wh..opq`;
//! - every directory of the upper is emitted with its metadata as it is in
//!   the upper, also those that exist only because something below them
//!   changed (overlay copies a directory's metadata up faithfully), so
//!   every entry has its parent in the layer, as Docker and Buildah do;
//! - overlay's own xattrs (`trusted.overlay.*`, `user.overlay.*`) are never
//!   emitted; an upper using redirects, metacopy or xattr whiteouts (which a
//!   layer cannot represent; our mounts turn them off) is refused, as is a
//!   name starting with `.wh.` (in a layer it would mean a whiteout);
//! - hard links among the upper's files (nlink > 1, same inode) become
//!   link entries to the first path of the group in entry order; overlay's
//!   shared whiteout inode is not a hard link group;
//! - sockets are skipped (a tar cannot hold them; Docker skips them too);
//! - the upper's root itself is not an entry (its metadata is the lower's).
//!
//! # Reproducibility
//!
//! The same tree always gives the same bytes: entries are sorted by their
//! path bytes (a directory before its contents; the opaque marker right
//! after its directory's entry and before any of its contents); ownership
//! is numeric with empty user and group names; mtimes are whole seconds
//! (as Docker writes them), clamped to [`DiffOptions::timestamp`] when set;
//! no atime or ctime; the compressors are deterministic (see
//! [`super::compression`]).
//!
//! # Format
//!
//! A POSIX pax archive: ustar headers, and a pax extended header (never GNU
//! `L`/`K` records) when a name or link target does not fit ustar, when a
//! number does not fit its octal field, and for xattrs
//! (`SCHILY.xattr.NAME`, as GNU tar, Docker and containerd write them).
//!
//! # Exclusions
//!
//! [`DiffOptions::exclude`] names mount points the runtime created in the
//! upper (`etc/hosts`, `proc`, …). Such a path is left out only while it is
//! an empty file or a directory with nothing else in it: if the step wrote
//! content there, it stays. A directory whose only change is that it now
//! holds an excluded mount point (it exists as a directory in a lower and
//! is not opaque) is left out too, since it was copied up only for that.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::compression::{self, Encoder};
use super::inventory::{self, ContentHasher, Entry, Hash64, Inventory, Kind, Recorder};
use super::whiteout::{self, OverlayXattr};
use super::{LayerError, join};
use crate::oci::verify::HashingWriter;
use crate::oci::{Compression, DiffId, Digest, media_type};
use crate::sys::fs::{self as sysfs, path_from_bytes as p};

/// How to diff.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub compression: Compression,
    /// Compression level; `None` is the default (gzip 5, zstd 3).
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: every later mtime is clamped to it. (The gzip
    /// header's mtime is always 0, so it needs no clamping.)
    pub timestamp: Option<i64>,
    /// The namespace the overlay was mounted with (`userxattr` → `User`).
    pub overlay_xattr: OverlayXattr,
    /// Relative paths of runtime-created mount points to leave out (see
    /// the module docs for when they are left out).
    pub exclude: Vec<PathBuf>,
    /// Compression threads.
    pub threads: usize,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Gzip,
            level: None,
            timestamp: None,
            overlay_xattr: OverlayXattr::Trusted,
            exclude: Vec::new(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What a diff produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diffed {
    /// sha256 of the uncompressed tar.
    pub diff_id: DiffId,
    /// sha256 of the bytes written to `out`.
    pub digest: Digest,
    /// Bytes written to `out`.
    pub size: u64,
    /// The OCI layer media type for the compression used.
    pub media_type: &'static str,
    /// Tar entries written (pax extended headers not counted).
    pub entries: u64,
    /// What the upper holds that the layer does not say, for
    /// [`Diffed::tidy_upper`]: paths left out (excluded mount points and
    /// the directories copied up only for them, whiteouts of nothing,
    /// sockets) in walk order (a directory after its contents), and
    /// overlay-internal xattrs (`origin`, `impure`, …) as (path, name).
    pub left_out: Vec<PathBuf>,
    pub internal_xattrs: Vec<(PathBuf, Vec<u8>)>,
    /// The inventory of the upper as [`Diffed::tidy_upper`] leaves it,
    /// made from what the walk and the write already saw (each file's
    /// metadata and the content hash taken while copying it into the tar),
    /// so adopting the upper as the layer directory needs no second walk.
    pub inventory: Inventory,
}

impl Diffed {
    /// Makes `upper` hold exactly what the layer says, so that it can be
    /// adopted as the layer's unpacked directory instead of unpacking the
    /// tar again: removes what was left out (a directory only when it is
    /// empty by then) and overlay's internal xattrs. mtimes stay as they
    /// are (the tar may have clamped them).
    ///
    /// Returns whether the upper now is what [`Diffed::inventory`] says:
    /// false only when a left-out directory could not be removed because
    /// something appeared in it since the walk (nothing should write to an
    /// upper being committed); the caller then scans the upper instead.
    pub fn tidy_upper(&self, upper: &Path) -> Result<bool, LayerError> {
        let mut exact = true;
        let err = |path: PathBuf, source: io::Error| LayerError::Upper { path, source };
        for rel in &self.left_out {
            let path = upper.join(rel);
            let md = match std::fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(path, e)),
            };
            // The parent keeps its mtime: the tar recorded it before the
            // removal, and the directory must match the tar.
            let parent = path.parent().unwrap_or(upper).to_path_buf();
            let parent_md =
                std::fs::symlink_metadata(&parent).map_err(|e| err(parent.clone(), e))?;
            let removed = if md.is_dir() {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {
                    let dir = sysfs::open_dir(&parent).map_err(|e| err(parent.clone(), e))?;
                    sysfs::futimens(
                        std::os::fd::AsFd::as_fd(&dir),
                        parent_md.mtime(),
                        parent_md.mtime_nsec() as u32,
                        &parent,
                    )
                    .map_err(|e| err(parent.clone(), e))?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => exact = false,
                Err(e) => return Err(err(path, e)),
            }
        }
        for (rel, name) in &self.internal_xattrs {
            let path = upper.join(rel);
            match sysfs::lremovexattr(&path, name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(path, e)),
            }
        }
        Ok(exact)
    }
}

/// Walks `upper` and writes the OCI layer tar through the compressor into
/// `out`, hashing the tar (DiffID) and the compressed stream (digest) in
/// the same pass. `lowers` (topmost first) are only looked at to decide
/// which whiteouts delete something and which directories were copied up
/// for an excluded mount point.
///
/// `out` is not flushed to disk; the caller syncs it before committing.
/// On error, what was written to `out` is garbage.
pub fn diff<W: Write + Send>(
    upper: &Path,
    lowers: &[PathBuf],
    out: W,
    opts: &DiffOptions,
) -> Result<Diffed, LayerError> {
    compression::effective_level(opts.compression, opts.level)
        .map_err(|reason| LayerError::Options { reason })?;
    let started = std::time::Instant::now();
    let Planned {
        items,
        left_out,
        internal_xattrs,
    } = plan(upper, lowers, opts)?;
    let planned = started.elapsed();
    std::thread::scope(|scope| {
        let sink = HashingWriter::new(out);
        let encoder = Encoder::new(opts.compression, opts.level, opts.threads, sink, scope)
            .map_err(|source| LayerError::Write { source })?;
        let mut tar = BufWriter::with_capacity(WRITE_BUFFER, HashingWriter::new(encoder));
        // On any error the compressor is dropped unfinished (its workers
        // stop); `into_parts` keeps the buffer from being flushed into it
        // first.
        let abort = |tar: BufWriter<HashingWriter<Encoder<_>>>| drop(tar.into_parts());
        let mut content = HashMap::new();
        let entries = match write_all(&mut tar, upper, &items, &mut content) {
            Ok(n) => n,
            Err(e) => {
                abort(tar);
                return Err(e);
            }
        };
        let write_err = |source| LayerError::Write { source };
        let hashing = match tar.into_inner() {
            Ok(h) => h,
            Err(e) => {
                let source = io::Error::new(e.error().kind(), e.error().to_string());
                abort(e.into_inner());
                return Err(write_err(source));
            }
        };
        let (diff_id, _, encoder) = hashing.finish();
        let mut sink = encoder.finish().map_err(write_err)?;
        sink.flush().map_err(write_err)?;
        let (digest, size, _) = sink.finish();
        let inventory = inventory_of(upper, items, &content)?;
        tracing::debug!(
            upper = %upper.display(),
            entries,
            plan_ms = planned.as_millis() as u64,
            write_ms = (started.elapsed() - planned).as_millis() as u64,
            "layer diffed"
        );
        Ok(Diffed {
            diff_id: DiffId(diff_id),
            digest,
            size,
            media_type: match opts.compression {
                Compression::None => media_type::OCI_LAYER_TAR,
                Compression::Gzip => media_type::OCI_LAYER_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
            },
            entries,
            left_out: left_out.into_iter().map(|r| p(&r).to_path_buf()).collect(),
            internal_xattrs: internal_xattrs
                .into_iter()
                .map(|(r, n)| (p(&r).to_path_buf(), n))
                .collect(),
            inventory,
        })
    })
}

/// Buffer in front of the hashers and compressor: tar headers are 512-byte
/// writes.
const WRITE_BUFFER: usize = 256 * 1024;
/// Copy buffer for file content.
const COPY_BUFFER: usize = 256 * 1024;
/// Largest value of an 8-byte octal ustar field (uid, gid, mode).
const MAX_OCTAL_8: u64 = 0o7777777;
/// Largest value of a 12-byte octal ustar field (size, mtime).
const MAX_OCTAL_12: u64 = 0o77777777777;

/// What one tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    Dir,
    File {
        size: u64,
    },
    /// A later member of a hard link group: links to this tar name.
    Hardlink(Vec<u8>),
    Symlink(Vec<u8>),
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
    /// `.wh.NAME` or `.wh..wh..opq`: an empty regular file.
    Marker,
}

/// One planned tar entry.
#[derive(Debug)]
struct Item {
    /// Sort key: the name without a directory's trailing slash; the opaque
    /// marker of `d` sorts as `d/\0`, right after `d` and before `d/*`.
    key: Vec<u8>,
    /// The path in the upper to read content from (regular files).
    source: Vec<u8>,
    body: Body,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// (dev, ino) of a regular file or other non-directory with nlink > 1.
    inode: Option<(u64, u64)>,
    /// The inode number, to find a regular file's content hash.
    ino: u64,
    nlink: u64,
    /// What [`Diffed::inventory`] records for the upper's path `source`
    /// (the metadata as the walk saw it, before any clamping); `None` for
    /// an opaque marker, which is an xattr of its directory in the upper.
    record: Option<Entry>,
}

impl Item {
    /// The tar name: directories end with `/`, as every layer writer does.
    fn name(&self) -> Vec<u8> {
        let mut name = if self.key.ends_with(b"\0") {
            let mut n = self.key[..self.key.len() - 1].to_vec();
            n.extend_from_slice(whiteout::OPAQUE_MARKER);
            n
        } else {
            self.key.clone()
        };
        if self.body == Body::Dir {
            name.push(b'/');
        }
        name
    }
}

/// The walk's result: entries to write, sorted, and what is left out.
struct Planned {
    items: Vec<Item>,
    left_out: Vec<Vec<u8>>,
    internal_xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Walks the upper into the sorted list of entries to write.
fn plan(upper: &Path, lowers: &[PathBuf], opts: &DiffOptions) -> Result<Planned, LayerError> {
    let mut w = Walker {
        upper,
        lowers,
        opts,
        exclude: opts
            .exclude
            .iter()
            .map(|e| normalize_relative(e.as_os_str().as_bytes()))
            .collect(),
        items: Vec::new(),
        left_out: Vec::new(),
        internal_xattrs: Vec::new(),
    };
    w.dir(b"")?;
    let mut items = w.items;
    items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    // Hard link groups, in entry order: the first member carries the data.
    let mut first: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for item in &mut items {
        if let Some(inode) = item.inode {
            match first.get(&inode) {
                Some(target) => item.body = Body::Hardlink(target.clone()),
                None => {
                    first.insert(inode, item.name());
                }
            }
        }
    }
    Ok(Planned {
        items,
        left_out: w.left_out,
        internal_xattrs: w.internal_xattrs,
    })
}

struct Walker<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    opts: &'a DiffOptions,
    exclude: HashSet<Vec<u8>>,
    items: Vec<Item>,
    left_out: Vec<Vec<u8>>,
    internal_xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What a directory's walk found below it.
#[derive(Default)]
struct Below {
    emitted: usize,
    excluded: bool,
}

impl Walker<'_> {
    fn read_err(&self, rel: &[u8], source: io::Error) -> LayerError {
        LayerError::Upper {
            path: self.upper.join(p(rel)),
            source,
        }
    }

    fn refuse(&self, rel: &[u8], reason: String) -> LayerError {
        LayerError::Unrepresentable {
            path: self.upper.join(p(rel)),
            reason,
        }
    }

    /// Walks the directory `rel` ("" is the upper itself) and plans its
    /// children.
    fn dir(&mut self, rel: &[u8]) -> Result<Below, LayerError> {
        let path = self.upper.join(p(rel));
        let mut below = Below::default();
        let read = std::fs::read_dir(&path).map_err(|e| self.read_err(rel, e))?;
        for child in read {
            let child = child.map_err(|e| self.read_err(rel, e))?;
            let name = child.file_name();
            let name = name.as_bytes();
            let crel = join(rel, name);
            if name.starts_with(whiteout::WHITEOUT_PREFIX) {
                return Err(self.refuse(
                    &crel,
                    "its name starts with `.wh.`, which in a layer means a whiteout".into(),
                ));
            }
            let md =
                std::fs::symlink_metadata(child.path()).map_err(|e| self.read_err(&crel, e))?;
            let ft = md.file_type();
            let rdev = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
            let is_whiteout =
                ft.is_char_device() && whiteout::is_overlay_whiteout_dev(rdev.0, rdev.1);
            let excluded = self.exclude.contains(&crel);
            let mut record = Entry::from_metadata(&md);
            let mut item = Item {
                key: crel.clone(),
                source: crel.clone(),
                body: Body::Marker,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: self.clamp(md.mtime()),
                xattrs: Vec::new(),
                inode: None,
                ino: md.ino(),
                nlink: md.nlink(),
                record: None,
            };
            if is_whiteout {
                if self.in_lowers(&crel) {
                    // Whatever xattrs a whiteout has stay in the upper.
                    record.xattrs = inventory::xattr_pairs(
                        sysfs::lxattrs(&child.path()).map_err(|e| self.read_err(&crel, e))?,
                    );
                    item.record = Some(record);
                    item.key = join(rel, &whiteout::oci_whiteout_name(name));
                    self.items.push(item);
                    below.emitted += 1;
                } else {
                    tracing::debug!(path = %String::from_utf8_lossy(&crel), "whiteout of nothing in the lowers; not emitted");
                    self.left_out.push(crel);
                }
                continue;
            }
            let (xattrs, opaque, staying) = self.xattrs(&child.path(), &crel)?;
            item.xattrs = xattrs;
            record.xattrs = inventory::xattr_pairs(staying);
            if ft.is_dir() {
                let sub = self.dir(&crel)?;
                below.excluded |= sub.excluded;
                if sub.emitted == 0 && !opaque {
                    if excluded {
                        below.excluded = true;
                        self.left_out.push(crel);
                        continue;
                    }
                    if sub.excluded && self.dir_in_lowers(&crel) {
                        self.left_out.push(crel);
                        continue;
                    }
                }
                item.body = Body::Dir;
                if opaque {
                    let mut key = below_prefix(&crel);
                    key.push(0);
                    self.items.push(Item {
                        key,
                        source: crel.clone(),
                        body: Body::Marker,
                        mode: 0,
                        uid: item.uid,
                        gid: item.gid,
                        mtime: item.mtime,
                        xattrs: Vec::new(),
                        inode: None,
                        ino: 0,
                        nlink: 1,
                        record: None,
                    });
                    below.emitted += 1;
                }
                below.emitted += sub.emitted + 1;
                item.record = Some(record);
                self.items.push(item);
                continue;
            }
            if ft.is_file() && md.len() == 0 && excluded {
                below.excluded = true;
                self.left_out.push(crel);
                continue;
            }
            item.body = if ft.is_file() {
                Body::File { size: md.len() }
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(child.path()).map_err(|e| self.read_err(&crel, e))?;
                let target = target.as_os_str().as_bytes().to_vec();
                record.target = Some(inventory::ByteStr(target.clone()));
                Body::Symlink(target)
            } else if ft.is_fifo() {
                Body::Fifo
            } else if ft.is_char_device() {
                Body::Char(rdev.0, rdev.1)
            } else if ft.is_block_device() {
                Body::Block(rdev.0, rdev.1)
            } else {
                tracing::debug!(path = %String::from_utf8_lossy(&crel), "socket not representable in a layer; skipped");
                self.left_out.push(crel);
                continue;
            };
            if md.nlink() > 1 {
                item.inode = Some((md.dev(), md.ino()));
            }
            item.record = Some(record);
            self.items.push(item);
            below.emitted += 1;
        }
        Ok(below)
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.opts.timestamp {
            Some(t) => mtime.min(t),
            None => mtime,
        }
    }

    /// The xattrs to emit (overlay's own removed), whether the entry is an
    /// opaque directory, and the xattrs that stay in the upper once
    /// [`Diffed::tidy_upper`] removed overlay's internal ones (the emitted
    /// ones and the opaque marker, sorted by name); refuses overlay
    /// features a layer cannot say.
    #[allow(clippy::type_complexity)]
    fn xattrs(
        &mut self,
        path: &Path,
        rel: &[u8],
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, bool, Vec<(Vec<u8>, Vec<u8>)>), LayerError> {
        let all = sysfs::lxattrs(path).map_err(|e| self.read_err(rel, e))?;
        let ns: &[u8] = match self.opts.overlay_xattr {
            OverlayXattr::Trusted => b"trusted.overlay.",
            OverlayXattr::User => b"user.overlay.",
        };
        let mut opaque = false;
        let mut keep = Vec::with_capacity(all.len());
        let mut staying = Vec::with_capacity(all.len());
        for (name, value) in all {
            if let Some(key) = name.strip_prefix(ns) {
                match key {
                    b"opaque" => {
                        opaque = value == whiteout::OVERLAY_OPAQUE_VALUE;
                        staying.push((name, value));
                    }
                    b"redirect" | b"metacopy" | b"whiteout" => {
                        return Err(self.refuse(
                            rel,
                            format!(
                                "it carries the overlay xattr `{}` (mount the overlay with redirect_dir=off, metacopy=off)",
                                String::from_utf8_lossy(&name)
                            ),
                        ));
                    }
                    _ => self.internal_xattrs.push((rel.to_vec(), name.clone())),
                }
                continue;
            }
            if whiteout::is_overlay_xattr(&name) {
                self.internal_xattrs.push((rel.to_vec(), name.clone()));
                continue;
            }
            if name.contains(&b'=') {
                return Err(self.refuse(
                    rel,
                    format!(
                        "its xattr name `{}` contains `=`",
                        String::from_utf8_lossy(&name)
                    ),
                ));
            }
            staying.push((name.clone(), value.clone()));
            keep.push((name, value));
        }
        Ok((keep, opaque, staying))
    }

    /// Whether `rel` is visible in the lowers: the topmost lower that has
    /// anything at `rel` decides (a whiteout there means "deleted").
    fn in_lowers(&self, rel: &[u8]) -> bool {
        for lower in self.lowers {
            match std::fs::symlink_metadata(lower.join(p(rel))) {
                Ok(md) => {
                    let rdev = md.rdev();
                    return !(md.file_type().is_char_device()
                        && whiteout::is_overlay_whiteout_dev(
                            rustix::fs::major(rdev),
                            rustix::fs::minor(rdev),
                        ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                // Unknown: emitting the whiteout is the safe answer.
                Err(_) => return true,
            }
        }
        false
    }

    /// Whether the topmost lower that has `rel` has a directory there.
    fn dir_in_lowers(&self, rel: &[u8]) -> bool {
        for lower in self.lowers {
            match std::fs::symlink_metadata(lower.join(p(rel))) {
                Ok(md) => return md.is_dir(),
                Err(_) => continue,
            }
        }
        false
    }
}

/// The inventory of `upper` once tidied: the walk's record of every
/// entry, the content hashes the write took (by inode, so every path of a
/// link group gets one), link groups by inode as [`inventory::scan`] finds
/// them (overlay's shared whiteout inode included), and the upper's root.
fn inventory_of(
    upper: &Path,
    items: Vec<Item>,
    content: &HashMap<u64, Hash64>,
) -> Result<Inventory, LayerError> {
    let mut recorder = Recorder::default();
    let mut nodes: HashMap<u64, u64> = HashMap::new();
    for item in items {
        let Some(mut record) = item.record else {
            continue;
        };
        if record.kind == Kind::File {
            record.xxh3 = content.get(&item.ino).copied();
        }
        let shared = record.kind != Kind::Dir && item.nlink > 1;
        if shared {
            let next = recorder.fresh_node();
            let node = *nodes.entry(item.ino).or_insert(next);
            recorder.insert_node(item.source, record, node);
        } else {
            recorder.insert(item.source, record);
        }
    }
    let mut inventory = recorder.finish();
    inventory.refresh_root(upper)?;
    Ok(inventory)
}

/// Writes every item and the end-of-archive blocks; returns the entry count.
fn write_all<W: Write>(
    out: &mut W,
    upper: &Path,
    items: &[Item],
    content: &mut HashMap<u64, Hash64>,
) -> Result<u64, LayerError> {
    let write_err = |source| LayerError::Write { source };
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut pax = Vec::new();
    for item in items {
        let name = item.name();
        let header = header(item, &name, &mut pax);
        if !pax.is_empty() {
            let pax_header = pax_header(&name, pax.len() as u64);
            out.write_all(pax_header.as_bytes()).map_err(write_err)?;
            out.write_all(&pax).map_err(write_err)?;
            pad(out, pax.len() as u64).map_err(write_err)?;
        }
        out.write_all(header.as_bytes()).map_err(write_err)?;
        if let Body::File { size } = item.body {
            let hash = copy_file(out, upper, &item.source, size, &mut buf)?;
            content.insert(item.ino, hash);
            pad(out, size).map_err(write_err)?;
        }
    }
    out.write_all(&[0u8; 1024]).map_err(write_err)?;
    Ok(items.len() as u64)
}

/// Copies exactly `size` bytes of the upper's file `rel` into `out`;
/// returns their content hash (see [`super::inventory`]).
fn copy_file<W: Write>(
    out: &mut W,
    upper: &Path,
    rel: &[u8],
    size: u64,
    buf: &mut [u8],
) -> Result<Hash64, LayerError> {
    let path = upper.join(p(rel));
    let read_err = |source| LayerError::Upper {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&path)
        .map_err(read_err)?;
    let mut hasher = ContentHasher::new();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|source| LayerError::Write { source })?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let grew = left == 0 && read_more(&mut file).map_err(read_err)?;
    if left > 0 || grew {
        return Err(read_err(io::Error::other(format!(
            "file changed size while the layer was written (expected {size} bytes)"
        ))));
    }
    Ok(hasher.finish())
}

fn read_more(file: &mut File) -> io::Result<bool> {
    let mut one = [0u8; 1];
    loop {
        match file.read(&mut one) {
            Ok(n) => return Ok(n > 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Zero padding to the next 512-byte block after `len` bytes of data.
fn pad<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % 512) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// The ustar header of `item`; what does not fit goes into `pax` as pax
/// records (cleared first; empty when everything fits).
fn header(item: &Item, name: &[u8], pax: &mut Vec<u8>) -> tar::Header {
    pax.clear();
    let mut h = tar::Header::new_ustar();
    let (etype, size, link) = match &item.body {
        Body::Dir => (tar::EntryType::Directory, 0, None),
        Body::File { size } => (tar::EntryType::Regular, *size, None),
        Body::Marker => (tar::EntryType::Regular, 0, None),
        Body::Hardlink(t) => (tar::EntryType::Link, 0, Some(t.as_slice())),
        Body::Symlink(t) => (tar::EntryType::Symlink, 0, Some(t.as_slice())),
        Body::Fifo => (tar::EntryType::Fifo, 0, None),
        Body::Char(..) => (tar::EntryType::Char, 0, None),
        Body::Block(..) => (tar::EntryType::Block, 0, None),
    };
    h.set_entry_type(etype);
    let ustar = h.as_ustar_mut().expect("a ustar header");
    match split_ustar(name) {
        Some((prefix, base)) => {
            ustar.prefix[..prefix.len()].copy_from_slice(prefix);
            ustar.name[..base.len()].copy_from_slice(base);
        }
        None => {
            pax_record(pax, b"path", name);
            let cut = &name[..name.len().min(100)];
            ustar.name[..cut.len()].copy_from_slice(cut);
        }
    }
    if let Some(link) = link {
        if link.len() <= 100 {
            ustar.linkname[..link.len()].copy_from_slice(link);
        } else {
            pax_record(pax, b"linkpath", link);
        }
    }
    h.set_mode(item.mode);
    for (key, value, set) in [
        (
            &b"uid"[..],
            item.uid,
            tar::Header::set_uid as fn(&mut tar::Header, u64),
        ),
        (&b"gid"[..], item.gid, tar::Header::set_gid),
    ] {
        if u64::from(value) <= MAX_OCTAL_8 {
            set(&mut h, value.into());
        } else {
            pax_record(pax, key, value.to_string().as_bytes());
            set(&mut h, 0);
        }
    }
    if size <= MAX_OCTAL_12 {
        h.set_size(size);
    } else {
        pax_record(pax, b"size", size.to_string().as_bytes());
        // Base-256, for readers that ignore pax (tar writes it itself).
        h.set_size(size);
    }
    match u64::try_from(item.mtime) {
        Ok(t) if t <= MAX_OCTAL_12 => h.set_mtime(t),
        _ => {
            pax_record(pax, b"mtime", item.mtime.to_string().as_bytes());
            h.set_mtime(0);
        }
    }
    if let Body::Char(major, minor) | Body::Block(major, minor) = item.body {
        // Device numbers fit: majors are 12 bits, minors 20 (< 8^7).
        let _ = h.set_device_major(major);
        let _ = h.set_device_minor(minor);
    }
    for (xname, value) in &item.xattrs {
        let key = [&b"SCHILY.xattr."[..], xname].concat();
        pax_record(pax, &key, value);
    }
    h.set_cksum();
    h
}

/// The header of a pax extended header entry for `name`: a fixed,
/// name-derived path (as Go's archive/tar writes: `PaxHeaders.0/BASE`),
/// mode 0644, owner 0, mtime 0.
fn pax_header(name: &[u8], len: u64) -> tar::Header {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let base = trimmed.rsplit(|&b| b == b'/').next().unwrap_or(trimmed);
    let mut pname = b"PaxHeaders.0/".to_vec();
    pname.extend_from_slice(&base[..base.len().min(100 - pname.len())]);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    let ustar = h.as_ustar_mut().expect("a ustar header");
    ustar.name[..pname.len()].copy_from_slice(&pname);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(len);
    h.set_cksum();
    h
}

/// Appends one pax record: `LEN KEY=VALUE\n`, where LEN counts the whole
/// record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Splits `name` into ustar (prefix, name) fields, or `None` if it does not
/// fit (then it goes into a pax `path` record).
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    if name.len() > 256 {
        return None;
    }
    // The prefix ends at a slash (not stored); the longest prefix that fits
    // leaves the shortest name. A trailing slash belongs to the name part.
    let body = name.strip_suffix(b"/").unwrap_or(name);
    (0..body.len().min(156))
        .rev()
        .filter(|&i| body[i] == b'/')
        .map(|i| (&name[..i], &name[i + 1..]))
        .find(|(pre, rest)| {
            !pre.is_empty() && pre.len() <= 155 && !rest.is_empty() && rest.len() <= 100
        })
}

/// `a/./b/` or `/a/b` → `a/b`.
fn normalize_relative(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    out
}

fn below_prefix(path: &[u8]) -> Vec<u8> {
    super::inventory::below_prefix(path)
}

#[cfg(test)]
mod tests;
