//! What `load` reads from: an archive file or a directory, as a set of
//! named members (`index.json`, `blobs/sha256/<hex>`, `<id>/layer.tar`).
//!
//! A tar is indexed once: headers are read and data is seeked over, and
//! each regular member is remembered by its offset and size. Members are
//! then read by offset (`pread`), so any order of members works, several
//! layers can be read at once, and nothing is extracted to disk. Symlinks
//! and hard links between members (older `docker save` and podman link
//! duplicate layers) are followed inside the archive. A compressed archive
//! (`docker save | gzip`) cannot be read by offset: it is decompressed once
//! into a store transaction's scratch directory, which goes away with the
//! load; so is standard input (`-i -`), which cannot seek either.
//!
//! Member names are normalised (`./a//b` is `a/b`); a name with `..` that
//! would leave the archive, or an absolute one, is never found. A directory
//! is read with `openat2(RESOLVE_IN_ROOT)`, so its symlinks cannot lead
//! outside it either, and only regular files are read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ArchiveError;
use crate::layer::compression::{Format as Compressed, MAGIC_LEN, format_decoder};
use crate::store::{Store, Transaction};

/// The input name that means standard input.
pub(super) const STDIN: &str = "-";

/// How many links are followed to find one member.
const MAX_LINKS: usize = 16;

/// An archive opened for reading.
pub(super) struct Source {
    path: PathBuf,
    kind: Kind,
}

enum Kind {
    Dir(OwnedFd),
    Tar {
        file: File,
        members: BTreeMap<String, Member>,
        /// Holds the decompressed copy of a compressed archive.
        _scratch: Option<Transaction>,
    },
}

#[derive(Debug, Clone)]
enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// Target resolved to a member name (symlinks relative to the link's
    /// directory, hard links from the archive root).
    Link(String),
    Other,
}

/// A member opened for reading.
pub(super) struct Opened<'a> {
    pub reader: Box<dyn Read + Send + 'a>,
    pub size: u64,
}

impl Source {
    /// Opens `path`: a directory, a tar file, or a compressed tar file.
    pub(super) fn read_from(path: &Path, store: &Store) -> Result<Source, ArchiveError> {
        if path == Path::new(STDIN) {
            let mut stdin = io::stdin().lock();
            let mut head = [0u8; MAGIC_LEN];
            let mut n = 0;
            while n < head.len() {
                match stdin.read(&mut head[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(ArchiveError::io("read", path, e)),
                }
            }
            let compressed = Compressed::detect(&head[..n]);
            let reader = io::Cursor::new(head[..n].to_vec()).chain(stdin);
            let (file, txn) = spool(reader, compressed, path, store)?;
            return Self::tar(path, file, Some(txn));
        }
        let meta = std::fs::metadata(path).map_err(|e| ArchiveError::io("open", path, e))?;
        if meta.is_dir() {
            let fd =
                crate::sys::fs::open_dir(path).map_err(|e| ArchiveError::io("open", path, e))?;
            return Ok(Source {
                path: path.to_path_buf(),
                kind: Kind::Dir(fd),
            });
        }
        let file = File::open(path).map_err(|e| ArchiveError::io("open", path, e))?;
        let mut head = [0u8; MAGIC_LEN];
        let n = read_head(&file, &mut head).map_err(|e| ArchiveError::io("read", path, e))?;
        let compressed = Compressed::detect(&head[..n]);
        if compressed == Compressed::Plain {
            return Self::tar(path, file, None);
        }
        let (file, txn) = spool(file, compressed, path, store)?;
        Self::tar(path, file, Some(txn))
    }

    fn tar(path: &Path, file: File, scratch: Option<Transaction>) -> Result<Source, ArchiveError> {
        let members = index_tar(&file, path)?;
        Ok(Source {
            path: path.to_path_buf(),
            kind: Kind::Tar {
                file,
                members,
                _scratch: scratch,
            },
        })
    }

    /// Whether `name` is a member (a regular file, possibly via links).
    pub(super) fn has(&self, name: &str) -> bool {
        match &self.kind {
            Kind::Dir(_) => matches!(self.member(name), Ok(Some(_))),
            Kind::Tar { members, .. } => {
                normalise(name).is_some_and(|n| matches!(resolve(members, &n), Ok(Some(_))))
            }
        }
    }

    /// Opens member `name`; `Ok(None)` when there is no such regular file.
    pub(super) fn member(&self, name: &str) -> Result<Option<Opened<'_>>, ArchiveError> {
        let Some(norm) = normalise(name) else {
            return Ok(None);
        };
        match &self.kind {
            Kind::Dir(root) => {
                use rustix::fs::OFlags;
                use std::os::fd::AsFd;
                // O_NONBLOCK: opening a fifo must not hang; it is refused
                // below as not a regular file.
                let fd = match crate::sys::fs::open_in_root(
                    root.as_fd(),
                    Path::new(&norm),
                    OFlags::RDONLY | OFlags::NONBLOCK,
                ) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(ArchiveError::io("open", &self.path.join(&norm), e)),
                };
                let file = File::from(fd);
                let meta = file
                    .metadata()
                    .map_err(|e| ArchiveError::io("stat", &self.path.join(&norm), e))?;
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some(Opened {
                    size: meta.len(),
                    reader: Box::new(file),
                }))
            }
            Kind::Tar { file, members, .. } => match resolve(members, &norm)? {
                Some((offset, size)) => Ok(Some(Opened {
                    reader: Box::new(Section {
                        file,
                        pos: offset,
                        end: offset + size,
                    }),
                    size,
                })),
                None => Ok(None),
            },
        }
    }

    /// Reads a small member whole (JSON documents), refusing one larger
    /// than `limit`.
    pub(super) fn read_small(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(mut opened) = self.member(name)? else {
            return Ok(None);
        };
        if opened.size > limit {
            return Err(ArchiveError::Invalid {
                entry: name.to_string(),
                reason: format!("{} bytes, more than the {limit} allowed", opened.size),
            });
        }
        let mut bytes = Vec::with_capacity(opened.size as usize);
        opened
            .reader
            .by_ref()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Read {
                entry: name.to_string(),
                source,
            })?;
        Ok(Some(bytes))
    }
}

/// Copies (decoding `compressed`) `reader` into a file in a new
/// transaction's scratch directory, for reading by offset.
fn spool<R: Read>(
    reader: R,
    compressed: Compressed,
    path: &Path,
    store: &Store,
) -> Result<(File, Transaction), ArchiveError> {
    let txn = store.begin()?;
    let dir = txn.scratch_dir()?;
    let copy_path = dir.join("archive.tar");
    let mut copy =
        File::create(&copy_path).map_err(|e| ArchiveError::io("create", &copy_path, e))?;
    let mut decoder =
        format_decoder(compressed, reader).map_err(|e| ArchiveError::io("read", path, e))?;
    io::copy(&mut decoder, &mut copy).map_err(|e| ArchiveError::Damaged {
        path: path.to_path_buf(),
        reason: match compressed {
            Compressed::Plain => format!("read: {e}"),
            c => format!("cannot decompress it as {}: {e}", c.name()),
        },
    })?;
    drop(copy);
    let file = File::open(&copy_path).map_err(|e| ArchiveError::io("open", &copy_path, e))?;
    Ok((file, txn))
}

/// The first bytes of `file`, read without moving its offset.
fn read_head(file: &File, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Reads every header of the tar in `file`, seeking over the data.
fn index_tar(file: &File, path: &Path) -> Result<BTreeMap<String, Member>, ArchiveError> {
    let len = file
        .metadata()
        .map_err(|e| ArchiveError::io("stat", path, e))?
        .len();
    let not_tar = |reason: String| ArchiveError::NotAnArchive {
        path: path.to_path_buf(),
        reason,
    };
    let damaged = |reason: String| ArchiveError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let mut archive = tar::Archive::new(file);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| not_tar(format!("not a tar file: {e}")))?;
    let mut members = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            if members.is_empty() {
                not_tar(format!("not a tar file: {e}"))
            } else {
                damaged(format!(
                    "the tar is truncated or corrupt after {} members: {e}",
                    members.len()
                ))
            }
        })?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = normalise(&raw_name) else {
            continue;
        };
        let header = entry.header();
        let member = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let offset = entry.raw_file_position();
                let size = entry.size();
                if offset.checked_add(size).is_none_or(|end| end > len) {
                    return Err(damaged(format!(
                        "it is truncated: member `{name}` ends past the end of the file"
                    )));
                }
                Member::File { offset, size }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                match join_relative(dir, &target) {
                    Some(t) => Member::Link(t),
                    None => Member::Other,
                }
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                match normalise(&target) {
                    Some(t) => Member::Link(t),
                    None => Member::Other,
                }
            }
            _ => Member::Other,
        };
        members.insert(name, member);
    }
    if members.is_empty() {
        return Err(not_tar("it is empty, or not a tar file".to_string()));
    }
    Ok(members)
}

/// Follows links from `name` to a regular member: `(offset, size)`.
fn resolve(
    members: &BTreeMap<String, Member>,
    name: &str,
) -> Result<Option<(u64, u64)>, ArchiveError> {
    let mut current = name.to_string();
    for _ in 0..MAX_LINKS {
        match members.get(&current) {
            None | Some(Member::Other) => return Ok(None),
            Some(Member::File { offset, size }) => return Ok(Some((*offset, *size))),
            Some(Member::Link(target)) => current = target.clone(),
        }
    }
    Err(ArchiveError::Invalid {
        entry: name.to_string(),
        reason: format!("more than {MAX_LINKS} links to follow"),
    })
}

/// `a/./b//c` → `a/b/c`; `None` for an absolute name or one with `..`.
pub(super) fn normalise(name: &str) -> Option<String> {
    if name.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A symlink target relative to directory `dir` (both inside the archive),
/// as a member name; `None` if it leaves the archive or is absolute.
fn join_relative(dir: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A byte range of the archive file, read with `pread` so that several
/// sections can be read at once from one file.
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(left) as usize;
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this member",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_kept_inside() {
        assert_eq!(normalise("./a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise("manifest.json").as_deref(), Some("manifest.json"));
        assert_eq!(normalise("a/../b"), None);
        assert_eq!(normalise("/etc/passwd"), None);
        assert_eq!(normalise("./"), None);
        assert_eq!(
            join_relative("abc", "../def.tar").as_deref(),
            Some("def.tar")
        );
        assert_eq!(join_relative("abc", "x/./y").as_deref(), Some("abc/x/y"));
        assert_eq!(join_relative("abc", "../../x"), None);
        assert_eq!(join_relative("abc", "/x"), None);
    }

    #[test]
    fn links_resolve_to_files_and_loops_are_refused() {
        let mut m = BTreeMap::new();
        m.insert(
            "f".to_string(),
            Member::File {
                offset: 512,
                size: 7,
            },
        );
        m.insert("a/l".to_string(), Member::Link("f".to_string()));
        m.insert("b".to_string(), Member::Link("a/l".to_string()));
        m.insert("loop1".to_string(), Member::Link("loop2".to_string()));
        m.insert("loop2".to_string(), Member::Link("loop1".to_string()));
        m.insert("d".to_string(), Member::Other);
        assert_eq!(resolve(&m, "b").unwrap(), Some((512, 7)));
        assert_eq!(resolve(&m, "d").unwrap(), None);
        assert_eq!(resolve(&m, "missing").unwrap(), None);
        assert!(resolve(&m, "loop1").is_err());
    }
}
