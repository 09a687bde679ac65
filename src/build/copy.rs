//! COPY and ADD without a container: sources from the build context (or
//! from a directory, such as an earlier stage's rootfs) are written into a
//! fresh upper directory, which [`crate::layer::diff()`] then turns into a
//! layer.
//!
//! Two phases: [`plan_copy`] decides every entry the step writes (its
//! destination, type, mode and owner) without writing into the upper, so
//! that [`CopyPlan::content_digest`] can key the cache on exactly what will
//! be written; [`CopyPlan::apply`] then writes it. ADD's URL sources are
//! downloaded during planning, into the caller's scratch directory, so the
//! key covers the bytes received; the plan owns those files.
//!
//! Docker's rules:
//! - a directory source copies its *contents*; a file goes to `DEST` or,
//!   when `DEST` is a directory, to `DEST/NAME`;
//! - several sources or a wildcard need a destination that is a directory:
//!   ending in `/` (or `.`), or a directory in the image; else an error;
//! - a relative destination is relative to WORKDIR;
//! - missing parents of the destination are created 0755, owned by root,
//!   or by the `--chown` owner (as BuildKit does); parents that exist in
//!   the image are recreated in the upper with the image's metadata (what
//!   an overlay copy-up would do), and symlinks among them are resolved in
//!   the image;
//! - ownership is root's unless `--chown USER[:GROUP]` is given (names are
//!   looked up in the image's /etc/passwd and /etc/group; a user alone
//!   means the same number as group, as Docker documents); `--chmod` (octal)
//!   replaces every copied entry's permission bits; modes otherwise are
//!   the source's;
//! - ADD extracts local tar archives into the destination, keeping the
//!   archive's owners: plain, gzip, bzip2, xz or zstd, told by magic bytes
//!   and not by the file name, and only when the (decompressed) file starts
//!   with a valid tar header, as Docker's `isArchivePath` checks; anything
//!   else, a gzipped text file say, is copied as it is;
//! - ADD downloads `http://` and `https://` sources while planning (see
//!   [`super::remote`] for names, modes, mtimes and checksums); COPY
//!   refuses them, as BuildKit does;
//! - `--checksum` is for ADD only, with exactly one source, which must be a
//!   URL (BuildKit's rules).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::cache::{ContentDigest, ContentHasher};
use super::context::{Context, Source, SourceKind};
use super::remote::{self, Download};
use super::{At, BuildError};
use crate::layer;
use crate::layer::compression::{Format, MAGIC_LEN};
use crate::oci::Digest;
use crate::runtime::plan::resolve_in_root;

/// A COPY/ADD source after expansion.
#[derive(Debug, Clone)]
pub enum CopySource {
    /// A path or wildcard, resolved with [`Context::resolve_sources`].
    Path(String),
    /// `<<NAME`: a file NAME with this content.
    Heredoc { name: String, content: String },
}

/// One COPY or ADD, expanded.
#[derive(Debug, Clone)]
pub struct CopyOptions<'a> {
    pub sources: Vec<CopySource>,
    pub dest: String,
    /// The stage's WORKDIR (absolute; `/` when unset).
    pub workdir: &'a str,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// ADD: extract local archives and download URLs.
    pub add: bool,
    /// The merged view of the image the step builds on: owners are looked
    /// up in its /etc files, and existing destination parents read.
    pub rootfs: &'a Path,
    /// Where ADD downloads URL sources (an existing directory, ideally on
    /// the same filesystem as the upper). Required when a source is a URL.
    /// The files live as long as the [`CopyPlan`] (and its clones).
    pub scratch: Option<&'a Path>,
    /// ADD `--checksum`: `sha256:HEX` the one URL source must match.
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(PathBuf),
    Symlink(PathBuf),
    Bytes(Vec<u8>),
    /// A device or FIFO copied as is: (file type bits, rdev).
    Special(u32, u64),
    Archive(PathBuf, Format),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Relative to the upper's root.
    dest: PathBuf,
    kind: Kind,
    /// Permission bits (with setuid/setgid/sticky).
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
}

/// Everything one COPY/ADD writes, decided before writing.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    entries: Vec<Entry>,
    /// ADD's downloads, which `entries` copy from: held (never read) so
    /// that they are deleted only when the plan's last clone is dropped.
    _downloads: Vec<Download>,
}

/// One source of the instruction, before anything is read.
enum Picked {
    Path(Source),
    Heredoc { name: String, content: String },
    Url(String),
}

/// Decides what `opts` copies from `ctx`.
pub fn plan_copy(ctx: &Context, opts: &CopyOptions) -> Result<CopyPlan, BuildError> {
    let owner = match &opts.chown {
        None => None,
        Some(spec) => {
            let user = crate::runtime::user::resolve(opts.rootfs, spec).map_err(|source| {
                BuildError::Chown {
                    at: At::default(),
                    value: spec.clone(),
                    source,
                }
            })?;
            let gid = if spec.contains(':') {
                user.gid
            } else {
                user.uid
            };
            Some((user.uid, gid))
        }
    };
    let chmod = match &opts.chmod {
        None => None,
        Some(v) => Some(
            u32::from_str_radix(v, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| BuildError::Chmod {
                    at: At::default(),
                    value: v.clone(),
                })?,
        ),
    };

    let checksum = checked_checksum(opts)?;
    let mut sources: Vec<Picked> = Vec::new();
    let mut wildcard = false;
    for s in &opts.sources {
        match s {
            CopySource::Path(p) if remote::is_url(p) => {
                if !opts.add {
                    return Err(BuildError::UrlInCopy {
                        at: At::default(),
                        url: p.clone(),
                    });
                }
                if opts.scratch.is_none() {
                    return Err(BuildError::UrlWithoutScratch {
                        at: At::default(),
                        url: p.clone(),
                    });
                }
                sources.push(Picked::Url(p.clone()));
            }
            CopySource::Path(p) => {
                for r in ctx.resolve_sources(std::slice::from_ref(p))? {
                    wildcard |= r.wildcard;
                    sources.push(Picked::Path(r));
                }
            }
            CopySource::Heredoc { name, content } => sources.push(Picked::Heredoc {
                name: name.clone(),
                content: content.clone(),
            }),
        }
    }

    // Destination, as the image sees it.
    let dest_abs = if opts.dest.starts_with('/') {
        opts.dest.clone()
    } else {
        format!("{}/{}", opts.workdir.trim_end_matches('/'), opts.dest)
    };
    let dest_says_dir = opts.dest.ends_with('/')
        || opts.dest.ends_with("/.")
        || opts.dest == "."
        || opts.dest.is_empty();
    let resolved = resolve_in_root(opts.rootfs, Path::new(&dest_abs))
        .map_err(|e| BuildError::io(&dest_abs, e))?;
    let dest_is_dir_in_image = opts.rootfs.join(&resolved).is_dir()
        && !resolved.as_os_str().is_empty()
        || resolved.as_os_str().is_empty();
    let dest_dir = dest_says_dir || dest_is_dir_in_image;
    if (sources.len() > 1 || wildcard) && !dest_dir {
        return Err(BuildError::DestNotDir {
            at: At::default(),
            dest: opts.dest.clone(),
        });
    }

    let (uid, gid) = owner.unwrap_or((0, 0));
    let mut entries = Vec::new();
    // Parents of the destination (and the destination itself when it is a
    // directory). A file destination's own name is not a parent.
    let mut parents: Vec<PathBuf> = resolved.ancestors().map(Path::to_path_buf).collect();
    parents.reverse();
    parents.retain(|p| !p.as_os_str().is_empty());
    let any_dir_source = sources
        .iter()
        .any(|s| matches!(s, Picked::Path(s) if s.kind == SourceKind::Dir));
    if !(dest_dir || any_dir_source) {
        parents.pop();
    }
    for p in parents {
        let on_image = opts.rootfs.join(&p);
        match std::fs::symlink_metadata(&on_image) {
            Ok(m) if m.is_dir() => entries.push(Entry {
                dest: p,
                kind: Kind::Dir,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec() as u32),
            }),
            Ok(_) => {
                return Err(BuildError::DestParentNotDir {
                    at: At::default(),
                    dest: opts.dest.clone(),
                });
            }
            Err(_) => entries.push(Entry {
                dest: p,
                kind: Kind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: (0, 0),
            }),
        }
    }

    let mode_of = |m: u32| chmod.unwrap_or(m & 0o7777);
    let mut downloads = Vec::new();
    for picked in &sources {
        let src = match picked {
            Picked::Path(src) => src,
            Picked::Heredoc { name, content } => {
                let dest = if dest_dir {
                    resolved.join(name)
                } else {
                    resolved.clone()
                };
                entries.push(Entry {
                    dest,
                    kind: Kind::Bytes(content.clone().into_bytes()),
                    mode: chmod.unwrap_or(0o644),
                    uid,
                    gid,
                    mtime: (0, 0),
                });
                continue;
            }
            Picked::Url(url) => {
                let dest = if dest_dir {
                    let name = remote::file_name(url).ok_or_else(|| BuildError::UrlFileName {
                        at: At::default(),
                        url: url.clone(),
                    })?;
                    resolved.join(name)
                } else {
                    resolved.clone()
                };
                let scratch = opts.scratch.expect("checked when the sources were picked");
                let download = remote::download(url, scratch, checksum.as_ref())?;
                entries.push(Entry {
                    dest,
                    kind: Kind::File(download.path.to_path_buf()),
                    // BuildKit writes downloads 0600; --chmod replaces it.
                    mode: chmod.unwrap_or(0o600),
                    uid,
                    gid,
                    mtime: download.mtime,
                });
                downloads.push(download);
                continue;
            }
        };
        let name = src.rel.file_name().map(PathBuf::from).unwrap_or_default();
        let one = if dest_dir {
            resolved.join(&name)
        } else {
            resolved.clone()
        };
        match src.kind {
            SourceKind::Dir => walk_dir(
                ctx,
                &src.rel,
                &resolved,
                &mut entries,
                &|m| mode_of(m),
                uid,
                gid,
            )?,
            SourceKind::File if opts.add => match archive_format(&src.path)? {
                Some(format) => entries.push(Entry {
                    dest: resolved.clone(),
                    kind: Kind::Archive(src.path.clone(), format),
                    mode: 0,
                    uid,
                    gid,
                    mtime: (0, 0),
                }),
                None => entries.push(entry_for(ctx, &src.rel, one, &|m| mode_of(m), uid, gid)?),
            },
            _ => entries.push(entry_for(ctx, &src.rel, one, &|m| mode_of(m), uid, gid)?),
        }
    }
    Ok(CopyPlan {
        entries,
        _downloads: downloads,
    })
}

/// `--checksum`, parsed, after BuildKit's checks: ADD only, one source,
/// a URL.
fn checked_checksum(opts: &CopyOptions) -> Result<Option<Digest>, BuildError> {
    let Some(value) = &opts.checksum else {
        return Ok(None);
    };
    let misuse = |reason| {
        Err(BuildError::ChecksumMisuse {
            at: At::default(),
            reason,
        })
    };
    if !opts.add {
        return misuse("is only valid for ADD, not COPY");
    }
    match opts.sources.as_slice() {
        [CopySource::Path(p)] if remote::is_url(p) => {}
        [_] => return misuse("needs an http:// or https:// source"),
        _ => return misuse("needs exactly one source"),
    }
    Digest::parse(value)
        .map(Some)
        .map_err(|source| BuildError::Checksum {
            at: At::default(),
            value: value.clone(),
            source,
        })
}

/// The format of `path` when ADD extracts it: a tar archive, plain or
/// compressed, whose (decompressed) start is a valid tar header. `None`
/// for any other file, including one that fails to decompress: Docker
/// copies such a file as it is, and so do we.
fn archive_format(path: &Path) -> Result<Option<Format>, BuildError> {
    let mut f = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut head = [0u8; MAGIC_LEN];
    let n = read_full(&mut f, &mut head).map_err(|e| BuildError::io(path, e))?;
    let format = Format::detect(&head[..n]);
    let f = File::open(path).map_err(|e| BuildError::io(path, e))?;
    let Ok(decoded) = layer::compression::format_decoder(format, f) else {
        return Ok(None);
    };
    let mut archive = tar::Archive::new(decoded);
    let first = archive.entries().ok().and_then(|mut e| e.next());
    Ok(matches!(first, Some(Ok(_))).then_some(format))
}

/// Reads until `buf` is full or the end; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(r) => n += r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn entry_for(
    ctx: &Context,
    rel: &Path,
    dest: PathBuf,
    mode_of: &dyn Fn(u32) -> u32,
    uid: u32,
    gid: u32,
) -> Result<Entry, BuildError> {
    let path = ctx.root().join(rel);
    let m = std::fs::symlink_metadata(&path).map_err(|e| BuildError::io(&path, e))?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File(path.clone())
    } else if ft.is_symlink() {
        Kind::Symlink(std::fs::read_link(&path).map_err(|e| BuildError::io(&path, e))?)
    } else {
        Kind::Special(m.mode() & libc::S_IFMT, m.rdev())
    };
    let mode = if ft.is_symlink() {
        0o777
    } else {
        mode_of(m.mode())
    };
    Ok(Entry {
        dest,
        kind,
        mode,
        uid,
        gid,
        mtime: (m.mtime(), m.mtime_nsec() as u32),
    })
}

/// The contents of directory `rel` into `dest`, in sorted order, skipping
/// what the ignore file hides (entering an excluded directory only when an
/// exception may re-include something below it, and then only as a parent).
fn walk_dir(
    ctx: &Context,
    rel: &Path,
    dest: &Path,
    out: &mut Vec<Entry>,
    mode_of: &dyn Fn(u32) -> u32,
    uid: u32,
    gid: u32,
) -> Result<(), BuildError> {
    let dir = ctx.root().join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| BuildError::io(&dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| BuildError::io(&dir, e))?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let child_dest = dest.join(&name);
        let is_dir = std::fs::symlink_metadata(ctx.root().join(&child))
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if ctx.is_excluded(&child) {
            if is_dir && ctx.may_include_below(&child) {
                let before = out.len();
                let parent = entry_for(ctx, &child, child_dest.clone(), mode_of, uid, gid)?;
                out.push(parent);
                walk_dir(ctx, &child, &child_dest, out, mode_of, uid, gid)?;
                if out.len() == before + 1 {
                    // Nothing re-included: the directory stays hidden.
                    out.pop();
                }
            }
            continue;
        }
        out.push(entry_for(
            ctx,
            &child,
            child_dest.clone(),
            mode_of,
            uid,
            gid,
        )?);
        if is_dir {
            walk_dir(ctx, &child, &child_dest, out, mode_of, uid, gid)?;
        }
    }
    Ok(())
}

impl CopyPlan {
    /// The digest of what [`CopyPlan::apply`] writes (see [`super::cache`]).
    pub fn content_digest(&self) -> Result<ContentDigest, BuildError> {
        Ok(self.content()?.0)
    }

    /// The digest of what [`CopyPlan::apply`] writes, and the digest of
    /// each entry by destination path (for `--explain-cache`).
    #[allow(clippy::type_complexity)]
    pub fn content(&self) -> Result<(ContentDigest, Vec<(String, String)>), BuildError> {
        let mut h = ContentHasher::new();
        for e in &self.entries {
            let dest = e.dest.as_os_str().as_bytes();
            match &e.kind {
                Kind::Dir => h.dir(dest, e.mode, e.uid, e.gid),
                Kind::Symlink(t) => h.symlink(dest, t.as_os_str().as_bytes(), e.uid, e.gid),
                Kind::Special(k, rdev) => h.special(dest, *k, *rdev, e.mode, e.uid, e.gid),
                Kind::Bytes(b) => h
                    .file(
                        dest,
                        e.mode,
                        e.uid,
                        e.gid,
                        b.len() as u64,
                        &mut b.as_slice(),
                    )
                    .map_err(|err| BuildError::io(&e.dest, err))?,
                Kind::File(src) | Kind::Archive(src, _) => {
                    let mut f = File::open(src).map_err(|err| BuildError::io(src, err))?;
                    let len = f.metadata().map_err(|err| BuildError::io(src, err))?.len();
                    let r = if matches!(e.kind, Kind::File(_)) {
                        h.file(dest, e.mode, e.uid, e.gid, len, &mut f)
                    } else {
                        h.archive(dest, len, &mut f)
                    };
                    r.map_err(|err| BuildError::io(src, err))?;
                }
            }
        }
        Ok(h.finish_with_entries())
    }

    /// Writes the plan below `upper` (a fresh, empty directory).
    pub fn apply(&self, upper: &Path) -> Result<(), BuildError> {
        let mut dirs = Vec::new();
        for e in &self.entries {
            let path = upper.join(&e.dest);
            let w = |err| BuildError::write(&path, err);
            match &e.kind {
                Kind::Dir => {
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => {
                            std::fs::remove_file(&path).map_err(w)?;
                            std::fs::create_dir(&path).map_err(w)?;
                        }
                        Err(_) => std::fs::create_dir(&path).map_err(w)?,
                    }
                    std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(w)?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                        .map_err(w)?;
                    dirs.push(e);
                    continue;
                }
                Kind::Archive(src, format) => {
                    extract(src, *format, upper, &e.dest)?;
                    continue;
                }
                _ => {}
            }
            remove_existing(&path).map_err(w)?;
            match &e.kind {
                Kind::File(src) => {
                    let mut from = File::open(src).map_err(|err| BuildError::io(src, err))?;
                    let mut to = File::create(&path).map_err(w)?;
                    io::copy(&mut from, &mut to).map_err(w)?;
                }
                Kind::Bytes(b) => std::fs::write(&path, b).map_err(w)?,
                Kind::Symlink(t) => std::os::unix::fs::symlink(t, &path).map_err(w)?,
                Kind::Special(k, rdev) => {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &path,
                        rustix::fs::FileType::from_raw_mode(*k),
                        rustix::fs::Mode::from_raw_mode(e.mode),
                        *rdev,
                    )
                    .map_err(|err| w(err.into()))?;
                }
                Kind::Dir | Kind::Archive(..) => unreachable!("handled above"),
            }
            std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).map_err(w)?;
            if !matches!(e.kind, Kind::Symlink(_)) {
                // After chown, which clears setuid/setgid.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                    .map_err(w)?;
            }
            set_mtime(&path, e.mtime).map_err(w)?;
        }
        // Directory mtimes last: writing children changes them.
        for e in dirs.iter().rev() {
            let path = upper.join(&e.dest);
            set_mtime(&path, e.mtime).map_err(|err| BuildError::write(&path, err))?;
        }
        Ok(())
    }
}

fn remove_existing(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

fn set_mtime(path: &Path, (sec, nsec): (i64, u32)) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = crate::sys::fs::open_dir(parent)?;
    let name = path.file_name().map(Path::new).unwrap_or(Path::new("."));
    crate::sys::fs::utimensat_nofollow(std::os::fd::AsFd::as_fd(&dir), name, sec, nsec)
}

/// Extracts an archive into `upper/dest`: unpacked with the layer
/// unpacker's path safety into a scratch directory beside `upper` (so
/// nothing can land outside), then moved into place.
fn extract(src: &Path, format: Format, upper: &Path, dest: &Path) -> Result<(), BuildError> {
    let label = src.display().to_string();
    let scratch_parent = upper.parent().unwrap_or(upper);
    let scratch = tempfile::Builder::new()
        .prefix(".add-")
        .tempdir_in(scratch_parent)
        .map_err(|e| BuildError::write(scratch_parent, e))?;
    let file = File::open(src).map_err(|e| BuildError::io(src, e))?;
    let mut reader =
        layer::compression::format_decoder(format, file).map_err(|e| BuildError::io(src, e))?;
    let unpacked =
        layer::unpack(&mut reader, scratch.path(), &Default::default()).map_err(|source| {
            BuildError::Extract {
                at: At::default(),
                source_path: label.clone(),
                source,
            }
        })?;
    // The archive's `./` entry describes the destination directory itself.
    let root_meta = if unpacked.root_entry {
        Some(std::fs::symlink_metadata(scratch.path()).map_err(|e| BuildError::io(src, e))?)
    } else {
        None
    };
    let target = upper.join(dest);
    std::fs::create_dir_all(&target).map_err(|e| BuildError::write(&target, e))?;
    merge(scratch.path(), &target)?;
    if let Some(md) = root_meta {
        use std::os::unix::fs::MetadataExt;
        let w = |e| BuildError::write(&target, e);
        std::os::unix::fs::lchown(&target, Some(md.uid()), Some(md.gid())).map_err(w)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(w)?;
        set_mtime(&target, (md.mtime(), md.mtime_nsec() as u32)).map_err(w)?;
    }
    Ok(())
}

/// Moves the contents of `from` into `to`, merging directories.
fn merge(from: &Path, to: &Path) -> Result<(), BuildError> {
    let rd = std::fs::read_dir(from).map_err(|e| BuildError::io(from, e))?;
    for e in rd {
        let e = e.map_err(|e| BuildError::io(from, e))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let src_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let dst_dir = std::fs::symlink_metadata(&dst)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if src_dir && dst_dir {
            merge(&src, &dst)?;
        } else {
            remove_existing(&dst).map_err(|err| BuildError::write(&dst, err))?;
            std::fs::rename(&src, &dst).map_err(|err| BuildError::write(&dst, err))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dirs: Vec<tempfile::TempDir>,
        ctx: Context,
        rootfs: PathBuf,
        upper: PathBuf,
    }

    fn fixture() -> Fixture {
        let c = tempfile::tempdir().unwrap();
        let r = c.path();
        std::fs::create_dir_all(r.join("dir/sub")).unwrap();
        std::fs::write(r.join("dir/a"), "a").unwrap();
        std::fs::write(r.join("dir/sub/b"), "b").unwrap();
        std::fs::write(r.join("one.txt"), "one").unwrap();
        std::fs::write(r.join("two.txt"), "two").unwrap();
        std::fs::set_permissions(r.join("one.txt"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        symlink("/etc/shadow", r.join("dir/link")).unwrap();
        std::fs::write(r.join("dir/secret"), "s").unwrap();
        std::fs::write(r.join(".dockerignore"), "dir/secret\n").unwrap();

        let rootfs = tempfile::tempdir().unwrap();
        let rf = rootfs.path();
        std::fs::create_dir_all(rf.join("etc")).unwrap();
        std::fs::create_dir_all(rf.join("usr/share")).unwrap();
        std::fs::set_permissions(rf.join("usr"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(
            rf.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(rf.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        symlink("/usr/share", rf.join("share")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let upper = scratch.path().join("upper");
        std::fs::create_dir(&upper).unwrap();
        Fixture {
            ctx: Context::open(r, None).unwrap(),
            rootfs: rf.to_owned(),
            upper,
            _dirs: vec![c, rootfs, scratch],
        }
    }

    fn opts<'a>(f: &'a Fixture, srcs: &[&str], dest: &str) -> CopyOptions<'a> {
        CopyOptions {
            sources: srcs
                .iter()
                .map(|s| CopySource::Path(s.to_string()))
                .collect(),
            dest: dest.to_owned(),
            workdir: "/work",
            chown: None,
            chmod: None,
            add: false,
            rootfs: &f.rootfs,
            scratch: None,
            checksum: None,
        }
    }

    fn run(f: &Fixture, o: &CopyOptions) -> Result<(), BuildError> {
        plan_copy(&f.ctx, o)?.apply(&f.upper)
    }

    /// Every path below the upper with type, mode, owner.
    fn listing(upper: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(upper)
            .sort_by_file_name()
            .min_depth(1)
        {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            let rel = e.path().strip_prefix(upper).unwrap().display().to_string();
            let t = if m.is_dir() {
                "d"
            } else if m.file_type().is_symlink() {
                "l"
            } else {
                "f"
            };
            out.push(format!(
                "{t} {rel} {:o} {}:{}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
        }
        out
    }

    #[test]
    fn a_directory_copies_its_contents_minus_ignored_files() {
        let f = fixture();
        run(&f, &opts(&f, &["dir"], "/dst")).unwrap();
        let l = listing(&f.upper);
        assert_eq!(
            l.iter()
                .map(|s| s.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>(),
            ["d dst", "f dst/a", "l dst/link", "d dst/sub", "f dst/sub/b"]
        );
        assert_eq!(
            std::fs::read_link(f.upper.join("dst/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert!(l.iter().all(|s| s.ends_with(" 0:0")), "{l:?}");
    }

    #[test]
    fn files_relative_to_workdir_with_created_parents() {
        let f = fixture();
        run(&f, &opts(&f, &["one.txt"], "renamed")).unwrap();
        assert_eq!(
            listing(&f.upper),
            ["d work 755 0:0", "f work/renamed 640 0:0"]
        );
        assert_eq!(std::fs::read(f.upper.join("work/renamed")).unwrap(), b"one");
    }

    #[test]
    fn existing_parents_keep_image_metadata_and_symlinks_resolve_in_image() {
        let f = fixture();
        run(&f, &opts(&f, &["one.txt"], "/share/")).unwrap();
        assert_eq!(
            listing(&f.upper),
            [
                "d usr 750 0:0",
                "d usr/share 755 0:0",
                "f usr/share/one.txt 640 0:0"
            ]
        );
    }

    #[test]
    fn several_sources_or_wildcards_need_a_directory_destination() {
        let f = fixture();
        for (srcs, dest) in [(&["one.txt", "two.txt"][..], "/x"), (&["*.txt"][..], "/x")] {
            let e = plan_copy(&f.ctx, &opts(&f, srcs, dest)).unwrap_err();
            assert!(matches!(e, BuildError::DestNotDir { .. }), "{e}");
        }
        run(&f, &opts(&f, &["*.txt"], "/x/")).unwrap();
        assert!(f.upper.join("x/one.txt").is_file() && f.upper.join("x/two.txt").is_file());
        // An existing directory in the image is a directory destination.
        run(&f, &opts(&f, &["one.txt", "two.txt"], "/etc")).unwrap();
        assert!(f.upper.join("etc/two.txt").is_file());
    }

    #[test]
    fn chown_by_name_and_number_and_chmod() {
        let f = fixture();
        let mut o = opts(&f, &["dir/sub"], "/new/place/");
        o.chown = Some("app".into());
        o.chmod = Some("0700".into());
        run(&f, &o).unwrap();
        assert_eq!(
            listing(&f.upper),
            [
                "d new 755 1000:1000",
                "d new/place 755 1000:1000",
                "f new/place/b 700 1000:1000"
            ]
        );
        let f = fixture();
        let mut o = opts(&f, &["one.txt"], "/o");
        o.chown = Some("7:staff".into());
        run(&f, &o).unwrap();
        assert_eq!(listing(&f.upper), ["f o 640 7:50"]);
        let mut o = opts(&f, &["one.txt"], "/o");
        o.chown = Some("nobody-here".into());
        assert!(matches!(
            plan_copy(&f.ctx, &o),
            Err(BuildError::Chown { .. })
        ));
        let mut o = opts(&f, &["one.txt"], "/o");
        o.chmod = Some("u+x".into());
        assert!(matches!(
            plan_copy(&f.ctx, &o),
            Err(BuildError::Chmod { .. })
        ));
    }

    #[test]
    fn heredoc_sources_write_their_content() {
        let f = fixture();
        let mut o = opts(&f, &[], "/etc/motd");
        o.sources = vec![CopySource::Heredoc {
            name: "EOF".into(),
            content: "hello\n".into(),
        }];
        run(&f, &o).unwrap();
        assert_eq!(std::fs::read(f.upper.join("etc/motd")).unwrap(), b"hello\n");
    }

    /// A tree packed by the system's `tar` with `flag` (`-z`, `-j`, `-J`,
    /// `--zstd`, or none), owned 5:6 inside the archive.
    fn system_tar(dir: &Path, archive: &Path, flag: Option<&str>) {
        let tree = dir.join("tree");
        if !tree.exists() {
            std::fs::create_dir_all(tree.join("pkg/sub")).unwrap();
            std::fs::write(tree.join("pkg/file"), "hi").unwrap();
            std::fs::set_permissions(
                tree.join("pkg/file"),
                std::fs::Permissions::from_mode(0o640),
            )
            .unwrap();
            std::fs::write(tree.join("pkg/sub/deep"), "deep").unwrap();
            symlink("../file", tree.join("pkg/sub/link")).unwrap();
        }
        let mut cmd = std::process::Command::new("tar");
        cmd.args(["--numeric-owner", "--owner=5", "--group=6", "-c"]);
        cmd.args(flag);
        let status = cmd
            .arg("-f")
            .arg(archive)
            .arg("-C")
            .arg(&tree)
            .arg("pkg")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar {flag:?} failed");
    }

    fn add_opts<'a>(f: &'a Fixture, srcs: &[&str], dest: &str) -> CopyOptions<'a> {
        CopyOptions {
            add: true,
            ..opts(f, srcs, dest)
        }
    }

    #[test]
    fn add_extracts_every_archive_format_by_magic_not_by_name() {
        let f = fixture();
        let work = tempfile::tempdir().unwrap();
        // Names that lie about the content: detection is by magic bytes.
        let cases = [
            ("plain.data", None, Format::Plain),
            ("gz.txt", Some("-z"), Format::Gzip),
            ("bz.tar.gz", Some("-j"), Format::Bzip2),
            ("xz.bin", Some("-J"), Format::Xz),
            ("zst", Some("--zstd"), Format::Zstd),
        ];
        for (name, flag, format) in cases {
            let archive = f.ctx.root().join(name);
            system_tar(work.path(), &archive, flag);
            assert_eq!(archive_format(&archive).unwrap(), Some(format), "{name}");
            let dest = format!("/opt/{name}/");
            run(&f, &add_opts(&f, &[name], &dest)).unwrap();
            let at = f.upper.join(format!("opt/{name}/pkg"));
            assert_eq!(std::fs::read(at.join("file")).unwrap(), b"hi", "{name}");
            assert_eq!(
                std::fs::read(at.join("sub/deep")).unwrap(),
                b"deep",
                "{name}"
            );
            assert_eq!(
                std::fs::read_link(at.join("sub/link")).unwrap(),
                Path::new("../file"),
                "{name}"
            );
            let m = std::fs::metadata(at.join("file")).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o777),
                (5, 6, 0o640),
                "{name}"
            );
            // COPY never extracts.
            let copied = format!("/copied/{name}");
            run(&f, &opts(&f, &[name], &copied)).unwrap();
            assert_eq!(
                std::fs::read(f.upper.join(&copied[1..])).unwrap(),
                std::fs::read(&archive).unwrap()
            );
        }
    }

    #[test]
    fn add_copies_files_that_only_look_like_archives() {
        let f = fixture();
        let root = f.ctx.root();
        // Compressed, but not a tar inside.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[b'x'; 2000]).unwrap();
        std::fs::write(root.join("notes.txt.gz"), gz.finish().unwrap()).unwrap();
        // Magic bytes, then garbage: fails to decompress.
        std::fs::write(root.join("broken.tar.bz2"), b"BZh91AY&SY garbage").unwrap();
        // A tar's name, text content.
        std::fs::write(root.join("fake.tar"), b"just text").unwrap();
        // All zeros: a tar end marker and nothing else (Go's reader: EOF).
        std::fs::write(root.join("empty.tar"), vec![0u8; 1024]).unwrap();
        for name in ["notes.txt.gz", "broken.tar.bz2", "fake.tar", "empty.tar"] {
            assert_eq!(archive_format(&root.join(name)).unwrap(), None, "{name}");
            run(&f, &add_opts(&f, &[name], "/in/")).unwrap();
            assert_eq!(
                std::fs::read(f.upper.join("in").join(name)).unwrap(),
                std::fs::read(root.join(name)).unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn archives_merge_into_an_existing_destination_and_key_on_their_bytes() {
        let f = fixture();
        let work = tempfile::tempdir().unwrap();
        system_tar(work.path(), &f.ctx.root().join("a.tar.xz"), Some("-J"));
        // `/etc` exists in the image: the archive lands inside it.
        let o = add_opts(&f, &["a.tar.xz"], "/etc");
        let plan = plan_copy(&f.ctx, &o).unwrap();
        let before = plan.content_digest().unwrap();
        plan.apply(&f.upper).unwrap();
        assert!(f.upper.join("etc/pkg/sub/deep").is_file());
        // Same archive again: same key; repacked with other content: not.
        assert_eq!(
            plan_copy(&f.ctx, &o).unwrap().content_digest().unwrap(),
            before
        );
        std::fs::write(work.path().join("tree/pkg/file"), "changed").unwrap();
        system_tar(work.path(), &f.ctx.root().join("a.tar.xz"), Some("-J"));
        assert_ne!(
            plan_copy(&f.ctx, &o).unwrap().content_digest().unwrap(),
            before
        );
    }

    #[test]
    fn urls_are_refused_where_docker_refuses_them_before_any_request() {
        let f = fixture();
        // Port 9 (discard) on loopback: nothing listens there, and none of
        // these may get as far as connecting anyway.
        let url = "http://127.0.0.1:9/file.txt";
        let e = plan_copy(&f.ctx, &opts(&f, &[url], "/opt/")).unwrap_err();
        assert!(matches!(e, BuildError::UrlInCopy { .. }), "{e}");
        assert!(e.to_string().contains("only ADD takes URL sources"), "{e}");

        let e = plan_copy(&f.ctx, &add_opts(&f, &[url], "/opt/")).unwrap_err();
        assert!(matches!(e, BuildError::UrlWithoutScratch { .. }), "{e}");

        let scratch = tempfile::tempdir().unwrap();
        let mut o = add_opts(&f, &["http://127.0.0.1:9/"], "/opt/");
        o.scratch = Some(scratch.path());
        let e = plan_copy(&f.ctx, &o).unwrap_err();
        assert!(matches!(e, BuildError::UrlFileName { .. }), "{e}");
        assert!(e.to_string().contains("`http://127.0.0.1:9/`"), "{e}");
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
    }

    #[test]
    fn checksum_follows_buildkit_rules() {
        let f = fixture();
        let scratch = tempfile::tempdir().unwrap();
        let good = format!("sha256:{}", "ab".repeat(32));
        let url = "http://127.0.0.1:9/file.txt";
        let with = |srcs: &[&str], add: bool, sum: &str| {
            let mut o = if add {
                add_opts(&f, srcs, "/opt/")
            } else {
                opts(&f, srcs, "/opt/")
            };
            o.scratch = Some(scratch.path());
            o.checksum = Some(sum.to_owned());
            plan_copy(&f.ctx, &o).unwrap_err().to_string()
        };
        assert!(with(&[url], false, &good).contains("only valid for ADD"));
        assert!(with(&[url, url], true, &good).contains("exactly one source"));
        assert!(with(&["one.txt"], true, &good).contains("needs an http:// or https:// source"));
        let e = with(&[url], true, "sha256:ABC");
        assert!(e.contains("invalid --checksum `sha256:ABC`"), "{e}");
        let e = with(&[url], true, &format!("sha512:{}", "0".repeat(128)));
        assert!(e.contains("invalid --checksum"), "{e}");
        // A heredoc is not a URL either.
        let mut o = add_opts(&f, &[], "/opt/x");
        o.sources = vec![CopySource::Heredoc {
            name: "EOF".into(),
            content: "x".into(),
        }];
        o.checksum = Some(good.clone());
        assert!(matches!(
            plan_copy(&f.ctx, &o),
            Err(BuildError::ChecksumMisuse { .. })
        ));
    }

    #[test]
    fn new_errors_take_a_location() {
        let loc = super::super::Location {
            file: "Containerfile".into(),
            line: 7,
        };
        let e = BuildError::ChecksumMismatch {
            at: At::default(),
            url: "http://h/f".into(),
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        }
        .located(loc.clone());
        assert_eq!(
            e.to_string(),
            "Containerfile:7: download `http://h/f`: checksum mismatch: expected `sha256:aa`, got `sha256:bb`"
        );
        let e = BuildError::DownloadStatus {
            at: At::default(),
            url: "http://h/f".into(),
            status: 404,
            reason: "Not Found".into(),
        }
        .located(loc);
        assert!(
            e.to_string().starts_with("Containerfile:7: download"),
            "{e}"
        );
    }
}
