//! Inventory: a record of what an unpacked layer directory holds, written
//! beside it by the store, so `builder check` can later tell whether the
//! directory still is what the layer tar said.
//!
//! Terms: an *entry* is one path below the layer directory (the directory
//! itself is the entry with the empty path, shown as `.`). A *link group* is
//! a set of paths that are hard links to one inode; every member records the
//! group's first path (in byte order) as `link`.
//!
//! What is recorded, per entry: kind, permission bits including
//! setuid/setgid/sticky, numeric owner, size and an xxh3-64 hash of regular
//! files' content, symlink targets, device numbers, all xattrs (overlay ones
//! included, so a lost opaque marker is noticed), and the mtime of every
//! entry that is not a directory. Directory mtimes are left out on purpose:
//! any create or remove inside a directory changes its mtime, so they say
//! nothing about corruption and would only make checks flaky. Atime and
//! ctime are not recorded either.
//!
//! Invariant: the inventory [`unpack`](super::unpack::unpack) builds while
//! writing equals [`scan`] of the directory it wrote (tested on every test
//! archive).
//!
//! Paths, symlink targets and xattrs are bytes on Linux; they are stored in
//! JSON as strings where a backslash escapes `\\` and any byte that is not
//! valid UTF-8 (`\xff`), so every value round-trips and readable names stay
//! readable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::LayerError;
use crate::sys::fs as sysfs;

/// The format version written into every inventory.
pub const INVENTORY_VERSION: u32 = 1;

/// A record of an unpacked layer directory; entries sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub version: u32,
    pub entries: Vec<Entry>,
}

/// What kind of file system object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Char,
    Block,
    /// An overlay whiteout: a character device 0/0.
    Whiteout,
    /// Never produced by unpacking; only seen by [`scan`] of a tampered dir.
    Socket,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Whiteout => "whiteout",
            Kind::Socket => "socket",
        };
        f.write_str(s)
    }
}

/// Modification time: seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mtime(pub i64, pub u32);

/// One path of the layer directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: ByteStr,
    pub kind: Kind,
    /// `st_mode & 0o7777`, written in octal.
    #[serde(with = "octal")]
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content length of regular files; 0 for everything else.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// Not recorded for directories (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<Mtime>,
    /// xxh3-64 of a regular file's content, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3: Option<Hash64>,
    /// A symlink's target text, as stored (never resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ByteStr>,
    /// Device number (major, minor) of char and block devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<(u32, u32)>,
    /// Every xattr, sorted by name: (name, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(ByteStr, ByteStr)>,
    /// The first path of this entry's link group, if it has other hard links
    /// inside the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<ByteStr>,
}

impl Entry {
    /// What `lstat` says of an entry (no path, content hash, symlink
    /// target or xattrs yet): kind, permissions, owner, and by kind the
    /// size, mtime (not for directories) and device number. What
    /// [`scan`] and the layer diff both record from one `lstat`.
    pub(crate) fn from_metadata(md: &std::fs::Metadata) -> Entry {
        let rdev = (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()));
        let kind = kind_of(md.file_type(), rdev);
        let mut entry = Entry::new(kind, md.mode(), md.uid(), md.gid());
        if kind != Kind::Dir {
            entry.mtime = Some(Mtime(md.mtime(), md.mtime_nsec() as u32));
        }
        match kind {
            Kind::File => entry.size = md.len(),
            Kind::Char | Kind::Block => entry.rdev = Some(rdev),
            _ => {}
        }
        entry
    }

    /// An entry with only the common fields set (no path yet: the recorder
    /// or the caller fills it in); `mode` keeps only the permission bits.
    pub fn new(kind: Kind, mode: u32, uid: u32, gid: u32) -> Entry {
        Entry {
            path: ByteStr::default(),
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            size: 0,
            mtime: None,
            xxh3: None,
            target: None,
            rdev: None,
            xattrs: Vec::new(),
            link: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

mod octal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        u32::from_str_radix(&s, 8).map_err(serde::de::Error::custom)
    }
}

/// A 64-bit content hash, serialized as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hash64(pub u64);

impl fmt::Display for Hash64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Hash64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16)
            .map(Hash64)
            .map_err(serde::de::Error::custom)
    }
}

/// Bytes that are usually text (paths, link targets, xattrs). Serialized as
/// a string with `\\` and `\xNN` escapes for non-UTF-8 bytes; the empty path
/// (the layer root) shows as `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteStr(pub Vec<u8>);

impl ByteStr {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(".");
        }
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' {
                    f.write_str("\\\\")?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for ByteStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        unescape(&s).map(ByteStr).map_err(serde::de::Error::custom)
    }
}

fn unescape(s: &str) -> Result<Vec<u8>, String> {
    if s == "." {
        return Ok(Vec::new());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = s
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("truncated escape in `{s}`"))?;
                let v = u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad escape `\\x{hex}` in `{s}`"))?;
                out.push(v);
                i += 4;
            }
            _ => return Err(format!("bad escape in `{s}`")),
        }
    }
    Ok(out)
}

/// One way the actual directory differs from its inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub path: ByteStr,
    pub difference: Difference,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// In the inventory, not in the directory.
    Missing,
    /// In the directory, not in the inventory.
    Unexpected,
    /// Both have it, but one property differs.
    Field {
        field: &'static str,
        expected: String,
        actual: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.difference {
            Difference::Missing => write!(f, "`{}`: missing", self.path),
            Difference::Unexpected => write!(f, "`{}`: not in the inventory", self.path),
            Difference::Field {
                field,
                expected,
                actual,
            } => write!(
                f,
                "`{}`: {field} is {actual}, expected {expected}",
                self.path
            ),
        }
    }
}

/// Every difference between an expected and an actual inventory, in path
/// order. Empty means the directory is intact.
pub fn compare(expected: &Inventory, actual: &Inventory) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut e = expected.entries.iter().peekable();
    let mut a = actual.entries.iter().peekable();
    loop {
        match (e.peek(), a.peek()) {
            (None, None) => break,
            (Some(x), None) => {
                out.push(missing(x));
                e.next();
            }
            (None, Some(y)) => {
                out.push(unexpected(y));
                a.next();
            }
            (Some(x), Some(y)) => match x.path.cmp(&y.path) {
                std::cmp::Ordering::Less => {
                    out.push(missing(x));
                    e.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(unexpected(y));
                    a.next();
                }
                std::cmp::Ordering::Equal => {
                    compare_entry(x, y, &mut out);
                    e.next();
                    a.next();
                }
            },
        }
    }
    out
}

fn missing(e: &Entry) -> Mismatch {
    Mismatch {
        path: e.path.clone(),
        difference: Difference::Missing,
    }
}

fn unexpected(e: &Entry) -> Mismatch {
    Mismatch {
        path: e.path.clone(),
        difference: Difference::Unexpected,
    }
}

fn compare_entry(x: &Entry, y: &Entry, out: &mut Vec<Mismatch>) {
    let mut field = |field: &'static str, expected: String, actual: String| {
        if expected != actual {
            out.push(Mismatch {
                path: x.path.clone(),
                difference: Difference::Field {
                    field,
                    expected,
                    actual,
                },
            });
        }
    };
    field("kind", x.kind.to_string(), y.kind.to_string());
    field("mode", format!("{:04o}", x.mode), format!("{:04o}", y.mode));
    field("uid", x.uid.to_string(), y.uid.to_string());
    field("gid", x.gid.to_string(), y.gid.to_string());
    field("size", x.size.to_string(), y.size.to_string());
    field("mtime", show(&x.mtime), show(&y.mtime));
    field("content hash", show(&x.xxh3), show(&y.xxh3));
    field("symlink target", show(&x.target), show(&y.target));
    field("device", show(&x.rdev), show(&y.rdev));
    field("xattrs", show_xattrs(&x.xattrs), show_xattrs(&y.xattrs));
    field("hard link group", show(&x.link), show(&y.link));
}

fn show<T: fmt::Debug>(v: &Option<T>) -> String {
    match v {
        None => "none".to_string(),
        Some(v) => format!("{v:?}"),
    }
}

fn show_xattrs(x: &[(ByteStr, ByteStr)]) -> String {
    let parts: Vec<String> = x.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Builds an inventory path by path. Entries can be replaced and subtrees
/// forgotten as an archive overwrites earlier entries; hard links share a
/// node number, from which link groups are derived at the end.
#[derive(Default)]
pub(crate) struct Recorder {
    map: BTreeMap<Vec<u8>, (Entry, u64)>,
    next_node: u64,
}

impl Recorder {
    /// Records `path` as a new inode (replacing any earlier record).
    pub(crate) fn insert(&mut self, path: Vec<u8>, entry: Entry) {
        let node = self.next_node;
        self.next_node += 1;
        self.map.insert(path, (entry, node));
    }

    /// A node number no entry has yet, for [`Recorder::insert_node`].
    pub(crate) fn fresh_node(&mut self) -> u64 {
        let node = self.next_node;
        self.next_node += 1;
        node
    }

    /// Records `path` as one name of the inode `node` (from
    /// [`Recorder::fresh_node`]); all names of a node form a link group.
    pub(crate) fn insert_node(&mut self, path: Vec<u8>, entry: Entry, node: u64) {
        self.map.insert(path, (entry, node));
    }

    /// Records `path` as another hard link to the inode at `target`.
    pub(crate) fn insert_link(&mut self, path: Vec<u8>, target: &[u8]) -> bool {
        match self.map.get(target) {
            Some((entry, node)) => {
                let rec = (entry.clone(), *node);
                self.map.insert(path, rec);
                true
            }
            None => false,
        }
    }

    pub(crate) fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.map.get(path).map(|(e, _)| e)
    }

    pub(crate) fn get_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        self.map.get_mut(path).map(|(e, _)| e)
    }

    /// Forgets `path` and, if it was a directory, everything below it.
    pub(crate) fn remove_subtree(&mut self, path: &[u8]) {
        self.map.remove(path);
        let below = below_prefix(path);
        let keys: Vec<Vec<u8>> = self
            .map
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.map.remove(&k);
        }
    }

    pub(crate) fn finish(self) -> Inventory {
        let mut groups: HashMap<u64, (Vec<u8>, usize)> = HashMap::new();
        for (path, (_, node)) in &self.map {
            groups
                .entry(*node)
                .and_modify(|g| g.1 += 1)
                .or_insert_with(|| (path.clone(), 1));
        }
        let entries = self
            .map
            .into_iter()
            .map(|(path, (mut entry, node))| {
                entry.path = ByteStr(path);
                entry.link = match groups.get(&node) {
                    Some((first, n)) if *n > 1 => Some(ByteStr(first.clone())),
                    _ => None,
                };
                entry
            })
            .collect();
        Inventory {
            version: INVENTORY_VERSION,
            entries,
        }
    }
}

impl Inventory {
    /// Records `dir`'s root as it is now (adding it, or replacing what was
    /// recorded: adopting a directory as a layer sets its root's owner and
    /// mode after its entries were recorded).
    pub fn refresh_root(&mut self, dir: &Path) -> Result<(), LayerError> {
        let scan_err = |source| LayerError::Scan {
            path: dir.to_path_buf(),
            source,
        };
        let md = std::fs::symlink_metadata(dir).map_err(scan_err)?;
        let mut root = Entry::from_metadata(&md);
        root.xattrs = xattr_pairs(sysfs::lxattrs(dir).map_err(scan_err)?);
        match self.entries.first_mut() {
            Some(first) if first.path.0.is_empty() => *first = root,
            _ => self.entries.insert(0, root),
        }
        Ok(())
    }
}

/// xattrs as (name, value) pairs for an [`Entry`].
pub(crate) fn xattr_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(ByteStr, ByteStr)> {
    pairs
        .into_iter()
        .map(|(n, v)| (ByteStr(n), ByteStr(v)))
        .collect()
}

/// `path/` (or the empty prefix for the root): what every path strictly
/// below `path` starts with.
pub(crate) fn below_prefix(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        Vec::new()
    } else {
        let mut p = path.to_vec();
        p.push(b'/');
        p
    }
}

/// Hashes regular-file content as unpack and scan both do.
pub(crate) struct ContentHasher(xxhash_rust::xxh3::Xxh3Default);

impl ContentHasher {
    pub(crate) fn new() -> Self {
        Self(xxhash_rust::xxh3::Xxh3Default::new())
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data)
    }
    pub(crate) fn finish(&self) -> Hash64 {
        Hash64(self.0.digest())
    }
}

/// Maps a raw `st_mode` (and device number) to a [`Kind`].
pub(crate) fn kind_of(ft: std::fs::FileType, rdev: (u32, u32)) -> Kind {
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        if super::whiteout::is_overlay_whiteout_dev(rdev.0, rdev.1) {
            Kind::Whiteout
        } else {
            Kind::Char
        }
    } else if ft.is_block_device() {
        Kind::Block
    } else {
        Kind::Socket
    }
}

/// Walks `dir` (never following symlinks) into an [`Inventory`].
pub fn scan(dir: &Path) -> Result<Inventory, LayerError> {
    let scan_err = |path: &Path, source: std::io::Error| LayerError::Scan {
        path: path.to_path_buf(),
        source,
    };
    let mut rec = Recorder::default();
    let mut inodes: HashMap<u64, u64> = HashMap::new();
    let mut next_shared = 1u64 << 62;
    let mut buf = vec![0u8; 256 * 1024];
    for item in walkdir::WalkDir::new(dir).follow_links(false) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            scan_err(&path, e.into())
        })?;
        let path = item.path();
        let md = std::fs::symlink_metadata(path).map_err(|e| scan_err(path, e))?;
        let rel = path
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let mut entry = Entry::from_metadata(&md);
        let kind = entry.kind;
        match kind {
            Kind::File => {
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
                    .open(path)
                    .map_err(|e| scan_err(path, e))?;
                let mut h = ContentHasher::new();
                loop {
                    let n = f.read(&mut buf).map_err(|e| scan_err(path, e))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                entry.xxh3 = Some(h.finish());
            }
            Kind::Symlink => {
                let t = std::fs::read_link(path).map_err(|e| scan_err(path, e))?;
                entry.target = Some(ByteStr(t.as_os_str().as_bytes().to_vec()));
            }
            _ => {}
        }
        entry.xattrs = xattr_pairs(sysfs::lxattrs(path).map_err(|e| scan_err(path, e))?);
        if kind != Kind::Dir && md.nlink() > 1 {
            let node = *inodes.entry(md.ino()).or_insert_with(|| {
                next_shared += 1;
                next_shared
            });
            rec.insert_node(rel, entry, node);
        } else {
            rec.insert(rel, entry);
        }
    }
    Ok(rec.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytestr_round_trips_through_json() {
        for raw in [
            &b""[..],
            b"usr/bin/env",
            b"back\\slash",
            b"caf\xc3\xa9",
            b"bad\xff\xfeutf8",
            b"\x00\x01",
            b"literal \\x41",
        ] {
            let s = serde_json::to_string(&ByteStr(raw.to_vec())).unwrap();
            let back: ByteStr = serde_json::from_str(&s).unwrap();
            assert_eq!(back.0, raw, "via {s}");
        }
        assert_eq!(ByteStr(b"a\xffb".to_vec()).to_string(), "a\\xffb");
    }

    #[test]
    fn compare_reports_each_difference() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        std::fs::write(dir.path().join("b"), b"two").unwrap();
        let before = scan(dir.path()).unwrap();
        assert!(compare(&before, &before).is_empty());

        std::fs::write(dir.path().join("a"), b"uno").unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("c"), b"").unwrap();
        let after = scan(dir.path()).unwrap();
        let diffs: Vec<String> = compare(&before, &after)
            .iter()
            .map(|m| m.to_string())
            .collect();
        assert!(
            diffs.iter().any(|d| d.starts_with("`a`: content hash is")),
            "{diffs:?}"
        );
        assert!(diffs.contains(&"`b`: missing".to_string()), "{diffs:?}");
        assert!(
            diffs.contains(&"`c`: not in the inventory".to_string()),
            "{diffs:?}"
        );
    }

    #[test]
    fn scan_finds_link_groups_and_json_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), b"data").unwrap();
        std::fs::hard_link(dir.path().join("x"), dir.path().join("y")).unwrap();
        std::os::unix::fs::symlink("/abs/target", dir.path().join("s")).unwrap();
        let inv = scan(dir.path()).unwrap();
        let by = |p: &[u8]| inv.entries.iter().find(|e| e.path.0 == p).unwrap();
        assert_eq!(by(b"x").link, Some(ByteStr(b"x".to_vec())));
        assert_eq!(by(b"y").link, Some(ByteStr(b"x".to_vec())));
        assert_eq!(by(b"s").target, Some(ByteStr(b"/abs/target".to_vec())));
        assert_eq!(by(b"").kind, Kind::Dir);
        let json = serde_json::to_string(&inv).unwrap();
        let back: Inventory = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inv);
    }
}
