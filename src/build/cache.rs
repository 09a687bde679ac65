//! Cache keys of build steps.
//!
//! A step's key is a sha256 over a canonical encoding of everything its
//! result depends on: the parent key (the previous step, or the base
//! image), the instruction after expansion, the ARG values the step can
//! see (sorted by name), and for COPY/ADD a [`ContentDigest`] of what is
//! copied: destination paths, file types, modes, ownership after
//! `--chown`, symlink targets and bytes. Never mtimes, absolute paths, the
//! store root or the uid of the user running builder: two checkouts of the
//! same tree, anywhere, by anyone, give the same keys.
//!
//! Encoding: every field is a one-byte tag, a little-endian u64 length and
//! the bytes, so no two different inputs share an encoding.

use std::fmt;
use std::io::Read;

use sha2::{Digest as _, Sha256};

/// The key of a build step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The root of a chain of keys: the image a stage starts from, named
    /// by its image ID (config digest), or `scratch`.
    pub fn base(image_id: &str) -> CacheKey {
        let mut h = Canonical::new(b"builder-cache-base-v1");
        h.field(b'b', image_id.as_bytes());
        CacheKey(h.finish())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

/// What a step's key covers.
#[derive(Debug, Clone, Copy)]
pub struct StepInputs<'a> {
    pub parent: &'a CacheKey,
    /// The instruction after expansion, as the history records it.
    pub instruction: &'a str,
    /// The ARGs in scope (name, value), in any order.
    pub args: &'a [(String, String)],
    /// For COPY/ADD: the digest of what is copied.
    pub content: Option<&'a ContentDigest>,
}

impl StepInputs<'_> {
    pub fn key(&self) -> CacheKey {
        let mut h = Canonical::new(b"builder-cache-step-v1");
        h.field(b'p', &self.parent.0);
        h.field(b'i', self.instruction.as_bytes());
        let mut args: Vec<&(String, String)> = self.args.iter().collect();
        args.sort();
        h.count(b'a', args.len());
        for (k, v) in args {
            h.field(b'k', k.as_bytes());
            h.field(b'v', v.as_bytes());
        }
        match self.content {
            Some(c) => h.field(b'c', &c.0),
            None => h.field(b'n', b""),
        }
        CacheKey(h.finish())
    }
}

/// The digest of the content a COPY/ADD writes; see [`ContentHasher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentDigest([u8; 32]);

/// Hashes copied entries one by one, in the order they are written. Each
/// entry is hashed on its own and its digest fed into the whole, so the
/// per-entry digests ([`ContentHasher::finish_with_entries`]) can say which
/// file changed (`build --explain-cache`) without reading anything twice.
pub struct ContentHasher {
    h: Canonical,
    entries: Vec<(Vec<u8>, [u8; 32])>,
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

fn entry_header(tag: u8, dest: &[u8], mode: u32, uid: u32, gid: u32) -> Canonical {
    let mut e = Canonical::new(b"builder-cache-entry-v1");
    e.field(tag, dest);
    e.field(b'm', &mode.to_le_bytes());
    e.field(b'u', &uid.to_le_bytes());
    e.field(b'g', &gid.to_le_bytes());
    e
}

impl ContentHasher {
    pub fn new() -> Self {
        ContentHasher {
            h: Canonical::new(b"builder-cache-content-v2"),
            entries: Vec::new(),
        }
    }

    fn push(&mut self, dest: &[u8], entry: Canonical) {
        let d = entry.finish();
        self.h.field(b'e', &d);
        self.entries.push((dest.to_vec(), d));
    }

    pub fn dir(&mut self, dest: &[u8], mode: u32, uid: u32, gid: u32) {
        let e = entry_header(b'D', dest, mode, uid, gid);
        self.push(dest, e);
    }

    pub fn symlink(&mut self, dest: &[u8], target: &[u8], uid: u32, gid: u32) {
        let mut e = entry_header(b'L', dest, 0o777, uid, gid);
        e.field(b't', target);
        self.push(dest, e);
    }

    /// A device or FIFO (`kind` from the file type bits, `rdev`).
    pub fn special(&mut self, dest: &[u8], kind: u32, rdev: u64, mode: u32, uid: u32, gid: u32) {
        let mut e = entry_header(b'S', dest, mode, uid, gid);
        e.field(b'k', &kind.to_le_bytes());
        e.field(b'r', &rdev.to_le_bytes());
        self.push(dest, e);
    }

    /// A regular file: its bytes are streamed from `content`, `len`
    /// announced first.
    pub fn file(
        &mut self,
        dest: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        len: u64,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let mut e = entry_header(b'F', dest, mode, uid, gid);
        e.stream(b'f', len, content)?;
        self.push(dest, e);
        Ok(())
    }

    /// An archive ADD extracts at `dest`.
    pub fn archive(
        &mut self,
        dest: &[u8],
        len: u64,
        content: &mut dyn Read,
    ) -> std::io::Result<()> {
        let mut e = entry_header(b'A', dest, 0, 0, 0);
        e.stream(b'f', len, content)?;
        self.push(dest, e);
        Ok(())
    }

    pub fn finish(self) -> ContentDigest {
        ContentDigest(self.h.finish())
    }

    /// The digest and each entry's own digest (destination path, hex).
    pub fn finish_with_entries(self) -> (ContentDigest, Vec<(String, String)>) {
        let entries = self
            .entries
            .into_iter()
            .map(|(d, h)| (String::from_utf8_lossy(&d).into_owned(), hex::encode(h)))
            .collect();
        (ContentDigest(self.h.finish()), entries)
    }
}

struct Canonical(Sha256);

impl Canonical {
    fn new(domain: &[u8]) -> Self {
        let mut c = Canonical(Sha256::new());
        c.field(b'#', domain);
        c
    }

    fn field(&mut self, tag: u8, bytes: &[u8]) {
        self.0.update([tag]);
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn count(&mut self, tag: u8, n: usize) {
        self.field(tag, &(n as u64).to_le_bytes());
    }

    /// A field whose bytes come from a reader; `len` must be exact (a file
    /// that changes while being hashed is an error, not a wrong key).
    fn stream(&mut self, tag: u8, len: u64, r: &mut dyn Read) -> std::io::Result<()> {
        self.0.update([tag]);
        self.0.update(len.to_le_bytes());
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            seen += n as u64;
            self.0.update(&buf[..n]);
        }
        if seen != len {
            return Err(std::io::Error::other(format!(
                "file changed while hashing: expected {len} bytes, read {seen}"
            )));
        }
        Ok(())
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::context::Context;
    use crate::build::copy::{CopyOptions, CopySource, plan_copy};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("app/src")).unwrap();
        std::fs::write(root.join("app/src/main.c"), "int main(){}").unwrap();
        std::fs::write(root.join("app/README"), "readme").unwrap();
        std::os::unix::fs::symlink("src/main.c", root.join("app/link")).unwrap();
    }

    fn content(root: &Path, chown: Option<&str>) -> ContentDigest {
        let ctx = Context::open(root, None).unwrap();
        let rootfs = tempfile::tempdir().unwrap();
        let o = CopyOptions {
            sources: vec![CopySource::Path("app".into())],
            dest: "/dst/".into(),
            workdir: "/",
            chown: chown.map(String::from),
            chmod: None,
            add: false,
            rootfs: rootfs.path(),
            scratch: None,
            checksum: None,
        };
        plan_copy(&ctx, &o).unwrap().content_digest().unwrap()
    }

    fn key(parent: &CacheKey, args: &[(&str, &str)], c: &ContentDigest) -> CacheKey {
        let args: Vec<(String, String)> = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StepInputs {
            parent,
            instruction: "COPY app /dst/",
            args: &args,
            content: Some(c),
        }
        .key()
    }

    #[test]
    fn keys_depend_on_content_not_on_where_or_when() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        tree(a.path());
        tree(b.path());
        let base = CacheKey::base("sha256:abc");
        let args = [("B", "2"), ("A", "1")];
        let k = key(&base, &args, &content(a.path(), None));
        // Same tree elsewhere; args in another order.
        assert_eq!(
            k,
            key(&base, &[("A", "1"), ("B", "2")], &content(b.path(), None))
        );
        // An mtime touched.
        let f = std::fs::File::options()
            .write(true)
            .open(b.path().join("app/README"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(k, key(&base, &args, &content(b.path(), None)));

        // What must change the key.
        let differs = |c: ContentDigest| assert_ne!(k, key(&base, &args, &c));
        std::fs::write(b.path().join("app/README"), "readmE").unwrap();
        differs(content(b.path(), None));
        std::fs::write(b.path().join("app/README"), "readme").unwrap();
        assert_eq!(k, key(&base, &args, &content(b.path(), None)));
        std::fs::set_permissions(
            b.path().join("app/README"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        differs(content(b.path(), None));
        differs(content(a.path(), Some("1:1")));
        std::fs::remove_file(a.path().join("app/link")).unwrap();
        std::os::unix::fs::symlink("README", a.path().join("app/link")).unwrap();
        differs(content(a.path(), None));

        let c = content(b.path(), None);
        let k2 = key(&base, &args, &c);
        assert_ne!(k2, key(&base, &[("A", "1"), ("B", "3")], &c));
        assert_ne!(k2, key(&base, &[("A", "1")], &c));
        assert_ne!(k2, key(&CacheKey::base("sha256:abd"), &args, &c));
        assert_ne!(k2, key(&k, &args, &c));
    }

    #[test]
    fn instruction_text_and_content_presence_matter() {
        let base = CacheKey::base("scratch");
        let k = |i: &str| {
            StepInputs {
                parent: &base,
                instruction: i,
                args: &[],
                content: None,
            }
            .key()
        };
        assert_eq!(k("RUN make"), k("RUN make"));
        assert_ne!(k("RUN make"), k("RUN make "));
        // Field boundaries are unambiguous.
        let a = [("AB".to_string(), "C".to_string())];
        let b = [("A".to_string(), "BC".to_string())];
        let with = |args: &[(String, String)]| {
            StepInputs {
                parent: &base,
                instruction: "RUN x",
                args,
                content: None,
            }
            .key()
        };
        assert_ne!(with(&a), with(&b));
        assert_eq!(k("RUN make").to_string().len(), "sha256:".len() + 64);
    }
}
