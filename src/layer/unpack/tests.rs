//! Tests of [`unpack`]: every tar feature real images use, whiteouts,
//! replacements, a table of hostile archives, an overlay mount of two
//! unpacked layers, and a speed self-check. Every successful unpack is also
//! checked against [`scan`] of its result.
//!
//! These run as root (as in CI): they create devices, set `trusted.*` and
//! `security.*` xattrs, chown, and mount overlays.

use super::*;
use crate::layer::inventory::{compare, scan};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

const T0: u64 = 1_600_000_000;

/// A tiny tar writer. Headers are written by hand so names the `tar`
/// builder would refuse (`..`, absolute) can be produced; long names become
/// GNU `L`/`K` records or PAX records as asked.
#[derive(Default)]
struct Tar {
    out: Vec<u8>,
    use_pax: bool,
}

#[derive(Clone)]
struct H {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    uname: &'static str,
    dev: (u32, u32),
    pax: Vec<(String, Vec<u8>)>,
}

impl Default for H {
    fn default() -> Self {
        H {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: T0,
            uname: "",
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
}

impl H {
    fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn mtime(mut self, t: u64) -> Self {
        self.mtime = t;
        self
    }
    fn uname(mut self, n: &'static str) -> Self {
        self.uname = n;
        self
    }
    fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.pax
            .push((format!("SCHILY.xattr.{name}"), value.to_vec()));
        self
    }
    fn pax(mut self, key: &str, value: &[u8]) -> Self {
        self.pax.push((key.to_string(), value.to_vec()));
        self
    }
}

fn pax_records(recs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in recs {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        out.extend(format!("{len} {k}=").as_bytes());
        out.extend(v);
        out.push(b'\n');
    }
    out
}

impl Tar {
    fn new() -> Self {
        Self::default()
    }

    /// Long names go into PAX records instead of GNU `L`/`K` entries.
    fn pax_names() -> Self {
        Tar {
            use_pax: true,
            ..Self::default()
        }
    }

    fn block(&mut self, header: &tar::Header, data: &[u8]) {
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn special(&mut self, kind: EntryType, name: &[u8], data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.block(&h, data);
    }

    fn entry(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        h: H,
        data: &[u8],
    ) -> &mut Self {
        let mut pax = h.pax.clone();
        if self.use_pax {
            if name.len() > 100 {
                pax.push(("path".into(), name.to_vec()));
            }
            if let Some(l) = link.filter(|l| l.len() > 100) {
                pax.push(("linkpath".into(), l.to_vec()));
            }
        } else {
            if name.len() > 100 {
                self.special(
                    EntryType::GNULongName,
                    b"././@LongLink",
                    &[name, b"\0"].concat(),
                );
            }
            if let Some(l) = link.filter(|l| l.len() > 100) {
                self.special(
                    EntryType::GNULongLink,
                    b"././@LongLink",
                    &[l, b"\0"].concat(),
                );
            }
        }
        if !pax.is_empty() {
            self.special(EntryType::XHeader, b"PaxHeaders/entry", &pax_records(&pax));
        }
        let mut hd = tar::Header::new_gnu();
        let short = &name[..name.len().min(100)];
        hd.as_old_mut().name[..short.len()].copy_from_slice(short);
        if let Some(l) = link {
            let short = &l[..l.len().min(100)];
            hd.as_old_mut().linkname[..short.len()].copy_from_slice(short);
        }
        hd.set_entry_type(kind);
        hd.set_mode(h.mode);
        hd.set_uid(h.uid);
        hd.set_gid(h.gid);
        hd.set_mtime(h.mtime);
        if !h.uname.is_empty() {
            hd.set_username(h.uname).unwrap();
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            hd.set_device_major(h.dev.0).unwrap();
            hd.set_device_minor(h.dev.1).unwrap();
        }
        hd.set_size(data.len() as u64);
        hd.set_cksum();
        self.block(&hd, data);
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_h(name, H::default().mode(0o755))
    }
    fn dir_h(&mut self, name: &str, h: H) -> &mut Self {
        self.entry(EntryType::Directory, name.as_bytes(), None, h, b"")
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_h(name, data, H::default())
    }
    fn file_h(&mut self, name: &str, data: &[u8], h: H) -> &mut Self {
        self.entry(EntryType::Regular, name.as_bytes(), None, h, data)
    }
    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.symlink_h(name, target, H::default().mode(0o777))
    }
    fn symlink_h(&mut self, name: &str, target: &str, h: H) -> &mut Self {
        self.entry(
            EntryType::Symlink,
            name.as_bytes(),
            Some(target.as_bytes()),
            h,
            b"",
        )
    }
    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(
            EntryType::Link,
            name.as_bytes(),
            Some(target.as_bytes()),
            H::default(),
            b"",
        )
    }
    fn fifo(&mut self, name: &str) -> &mut Self {
        self.entry(EntryType::Fifo, name.as_bytes(), None, H::default(), b"")
    }
    fn dev(&mut self, kind: EntryType, name: &str, major: u32, minor: u32) -> &mut Self {
        let h = H {
            dev: (major, minor),
            mode: 0o666,
            ..H::default()
        };
        self.entry(kind, name.as_bytes(), None, h, b"")
    }
    fn global_pax(&mut self, recs: &[(&str, &[u8])]) -> &mut Self {
        let recs: Vec<(String, Vec<u8>)> = recs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        self.special(
            EntryType::XGlobalHeader,
            b"pax_global_header",
            &pax_records(&recs),
        );
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.extend([0u8; 1024]);
        out
    }
}

/// Scratch space on tmpfs when there is one: fast, and the disk here is
/// ext4 without a journal, which slows down after mass deletes.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("builder-layer-test")
            .tempdir_in(shm)
            .unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

struct Out {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    unpacked: Unpacked,
}

impl Out {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
    fn md(&self, rel: &str) -> std::fs::Metadata {
        std::fs::symlink_metadata(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
    fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }
    fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap()
    }
    fn xattr(&self, rel: &str, name: &str) -> Option<Vec<u8>> {
        sysfs::lxattrs(&self.path(rel))
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Asserts that the inventory built while unpacking equals a scan of the
/// result.
fn assert_inventory_matches(unpacked: &Unpacked, dir: &Path) {
    let scanned = scan(dir).unwrap();
    let diffs: Vec<String> = compare(&unpacked.inventory, &scanned)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        diffs.is_empty(),
        "unpack inventory != scan:\n{}",
        diffs.join("\n")
    );
    assert_eq!(unpacked.inventory, scanned);
}

fn unpack_with(tar: &[u8], opts: &UnpackOptions) -> Out {
    let tmp = scratch();
    let dir = tmp.path().join("layer");
    std::fs::create_dir(&dir).unwrap();
    let unpacked = unpack(&mut &tar[..], &dir, opts).unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert_inventory_matches(&unpacked, &dir);
    Out {
        _tmp: tmp,
        dir,
        unpacked,
    }
}

fn unpack_ok(tar: &Tar) -> Out {
    unpack_with(&tar.bytes(), &UnpackOptions::default())
}

fn unpack_err(tar: &Tar) -> LayerError {
    let tmp = scratch();
    let dir = tmp.path().join("layer");
    std::fs::create_dir(&dir).unwrap();
    match unpack(&mut &tar.bytes()[..], &dir, &UnpackOptions::default()) {
        Ok(_) => panic!("unpack succeeded"),
        Err(e) => e,
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn files_dirs_modes_owners_and_mtimes() {
    let out = unpack_ok(
        Tar::new()
            .dir_h("./", H::default().mode(0o751).mtime(T0 + 9))
            .dir_h("./etc/", H::default().mode(0o755).mtime(T0 + 1))
            .file_h("./etc/passwd", b"root:x:0:0\n", H::default().mtime(T0 + 2))
            .file_h(
                "etc/shadow",
                b"secret",
                H::default().mode(0o640).owner(0, 42),
            )
            // The name says `nobody`, the ids say 1234:5678; ids win.
            .file_h(
                "etc/owned",
                b"",
                H::default().owner(1234, 5678).uname("nobody"),
            )
            .dir_h(
                "home/",
                H::default().mode(0o700).owner(1000, 1000).mtime(T0 + 3),
            )
            .file("home/.profile", b"export X=1\n"),
    );
    assert_eq!(out.read("etc/passwd"), b"root:x:0:0\n");
    assert_eq!(out.md("etc/passwd").mtime(), (T0 + 2) as i64);
    let shadow = out.md("etc/shadow");
    assert_eq!(
        (shadow.mode() & 0o7777, shadow.uid(), shadow.gid()),
        (0o640, 0, 42)
    );
    let owned = out.md("etc/owned");
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    let home = out.md("home");
    assert_eq!(
        (home.mode() & 0o7777, home.uid(), home.gid()),
        (0o700, 1000, 1000)
    );
    // Directory mtimes are set after their children were created.
    assert_eq!(home.mtime(), (T0 + 3) as i64);
    assert_eq!(out.md("etc").mtime(), (T0 + 1) as i64);
    // `./` is the layer root.
    let root = out.md("");
    assert_eq!(
        (root.mode() & 0o7777, root.mtime()),
        (0o751, (T0 + 9) as i64)
    );
    assert_eq!(out.unpacked.entries, 7);
    assert_eq!(out.unpacked.bytes, 11 + 6 + 11);
}

#[test]
fn setuid_setgid_sticky_survive_chown() {
    let out = unpack_ok(
        Tar::new()
            .file_h("suid", b"#!", H::default().mode(0o4755).owner(1000, 1000))
            .file_h("sgid", b"#!", H::default().mode(0o2755).owner(1000, 50))
            .dir_h("tmp/", H::default().mode(0o1777).owner(0, 0))
            .dir_h("shared/", H::default().mode(0o2775).owner(1000, 100))
            .file("shared/f", b""),
    );
    assert_eq!(out.md("suid").mode() & 0o7777, 0o4755);
    assert_eq!(out.md("suid").uid(), 1000);
    assert_eq!(out.md("sgid").mode() & 0o7777, 0o2755);
    assert_eq!(out.md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(out.md("shared").mode() & 0o7777, 0o2775);
    // The header's gid, not the setgid directory's.
    assert_eq!(out.md("shared/f").gid(), 0);
}

#[test]
fn symlinks_keep_any_target_and_their_own_mtime_and_owner() {
    let out = unpack_ok(
        Tar::new()
            .dir("var/")
            .symlink_h("var/run", "/run", H::default().mtime(T0 + 5).owner(7, 8))
            .symlink("rel", "../../../outside/anything")
            .symlink("dangling", "does/not/exist"),
    );
    let run = out.md("var/run");
    assert!(run.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(out.path("var/run")).unwrap(),
        Path::new("/run")
    );
    assert_eq!((run.mtime(), run.uid(), run.gid()), ((T0 + 5) as i64, 7, 8));
    assert_eq!(
        std::fs::read_link(out.path("rel")).unwrap(),
        Path::new("../../../outside/anything")
    );
    assert!(out.md("dangling").file_type().is_symlink());
}

#[test]
fn hardlinks_share_the_inode_and_form_a_group() {
    let out = unpack_ok(
        Tar::new()
            .dir("bin/")
            .file_h("bin/busybox", b"ELF", H::default().mode(0o755))
            .hardlink("bin/sh", "bin/busybox")
            .hardlink("./bin/ls", "./bin/busybox")
            .symlink("bin/link-to-symlink-target", "busybox")
            .hardlink("bin/hl-of-symlink", "bin/link-to-symlink-target"),
    );
    let ino = out.md("bin/busybox").ino();
    assert_eq!(out.md("bin/sh").ino(), ino);
    assert_eq!(out.md("bin/ls").ino(), ino);
    assert_eq!(out.md("bin/busybox").nlink(), 3);
    // A hard link to a symlink links the symlink itself.
    assert!(out.md("bin/hl-of-symlink").file_type().is_symlink());
    let group: Vec<_> = out
        .unpacked
        .inventory
        .entries
        .iter()
        .filter(|e| e.link.as_ref().map(|l| l.as_bytes()) == Some(b"bin/busybox"))
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(group, ["bin/busybox", "bin/ls", "bin/sh"]);
}

#[test]
fn hardlink_to_a_replaced_file_keeps_the_old_content() {
    let out = unpack_ok(
        Tar::new()
            .file("a", b"old")
            .hardlink("b", "a")
            .file("a", b"new"),
    );
    assert_eq!(out.read("a"), b"new");
    assert_eq!(out.read("b"), b"old");
    assert!(
        out.unpacked
            .inventory
            .entries
            .iter()
            .all(|e| e.link.is_none())
    );
}

fn long_name_tar(tar: &mut Tar) -> (String, String) {
    let deep = format!("{}/", ["directory-with-a-long-name"; 6].join("/"));
    let file = format!("{deep}{}", "f".repeat(120));
    let target = format!("/{}", "t".repeat(150));
    let mut parents = String::new();
    for part in deep.trim_end_matches('/').split('/') {
        parents.push_str(part);
        parents.push('/');
        tar.dir(&parents.clone());
    }
    tar.file(&file, b"long")
        .symlink(&format!("{deep}sym"), &target)
        .hardlink("short-link", &file)
        .hardlink(&format!("{deep}{}", "h".repeat(110)), &file);
    (file, target)
}

#[test]
fn gnu_long_names_and_long_link_names() {
    let mut tar = Tar::new();
    let (file, target) = long_name_tar(&mut tar);
    assert!(tar.out.windows(13).any(|w| w == b"././@LongLink"));
    let out = unpack_ok(&tar);
    check_long_names(&out, &file, &target);
}

#[test]
fn pax_long_names_and_long_link_names() {
    let mut tar = Tar::pax_names();
    let (file, target) = long_name_tar(&mut tar);
    assert!(!tar.out.windows(13).any(|w| w == b"././@LongLink"));
    let out = unpack_ok(&tar);
    check_long_names(&out, &file, &target);
}

fn check_long_names(out: &Out, file: &str, target: &str) {
    assert_eq!(out.read(file), b"long");
    let deep = &file[..file.rfind('/').unwrap()];
    assert_eq!(
        std::fs::read_link(out.path(&format!("{deep}/sym"))).unwrap(),
        Path::new(target)
    );
    let ino = out.md(file).ino();
    assert_eq!(out.md("short-link").ino(), ino);
    assert_eq!(out.md(&format!("{deep}/{}", "h".repeat(110))).ino(), ino);
}

#[test]
fn fifos_and_devices() {
    let out = unpack_ok(
        Tar::new()
            .dir("dev/")
            .fifo("dev/initctl")
            .dev(EntryType::Char, "dev/null", 1, 3)
            .dev(EntryType::Block, "dev/loop0", 7, 0),
    );
    assert!(out.md("dev/initctl").file_type().is_fifo());
    let null = out.md("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = out.md("dev/loop0");
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
}

/// A valid VFS_CAP_REVISION_2 `security.capability`: effective,
/// permitted = CAP_NET_BIND_SERVICE.
const CAP_NET_BIND: [u8; 20] = [
    0x01, 0, 0, 0x02, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

#[test]
fn xattrs_from_pax_including_security_capability() {
    let out = unpack_ok(
        Tar::new()
            .dir_h(
                "d/",
                H::default().mode(0o755).xattr("user.dir", b"on a dir"),
            )
            .file_h(
                "d/ping",
                b"ELF",
                H::default()
                    .mode(0o755)
                    // chown would clear the capability: it must be set after.
                    .owner(1000, 1000)
                    .xattr("security.capability", &CAP_NET_BIND)
                    .xattr("user.binary", b"\x00\xff\x10"),
            )
            .symlink_h(
                "d/sym",
                "ping",
                H::default().xattr("trusted.on-symlink", b"yes"),
            )
            .entry(
                EntryType::Fifo,
                b"d/fifo",
                None,
                H::default().xattr("trusted.on-fifo", b"1"),
                b"",
            ),
    );
    assert_eq!(
        out.xattr("d/ping", "security.capability").unwrap(),
        CAP_NET_BIND
    );
    assert_eq!(out.xattr("d/ping", "user.binary").unwrap(), b"\x00\xff\x10");
    assert_eq!(out.xattr("d", "user.dir").unwrap(), b"on a dir");
    assert_eq!(out.xattr("d/sym", "trusted.on-symlink").unwrap(), b"yes");
    assert_eq!(out.xattr("d/fifo", "trusted.on-fifo").unwrap(), b"1");
}

#[test]
fn pax_mtime_with_fraction_and_pax_ids() {
    let out = unpack_ok(
        Tar::new()
            .file_h(
                "precise",
                b"",
                H::default().pax("mtime", b"1700000000.123456789"),
            )
            .file_h(
                "big-ids",
                b"",
                H::default().pax("uid", b"3000000000").pax("gid", b"70000"),
            ),
    );
    let md = out.md("precise");
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 123_456_789));
    let md = out.md("big-ids");
    assert_eq!((md.uid(), md.gid()), (3_000_000_000, 70000));
    assert_eq!(parse_pax_time(b"-1.5"), Some(Mtime(-2, 500_000_000)));
    assert_eq!(parse_pax_time(b"12"), Some(Mtime(12, 0)));
    assert_eq!(parse_pax_time(b"x"), None);
}

#[test]
fn later_entries_replace_earlier_ones() {
    let out = unpack_ok(
        Tar::new()
            // file over file
            .file("f", b"first")
            .file("f", b"second")
            // dir over file
            .file("d", b"was a file")
            .dir("d/")
            .file("d/inside", b"x")
            // file over a non-empty dir
            .dir("e/")
            .dir("e/sub/")
            .file("e/sub/deep", b"x")
            .file("e", b"now a file")
            // symlink over a dir
            .dir("s/")
            .file("s/x", b"x")
            .symlink("s", "/somewhere")
            // dir over dir: metadata only, children stay
            .dir_h("keep/", H::default().mode(0o755).owner(1, 1))
            .file("keep/child", b"x")
            .dir_h(
                "keep/",
                H::default().mode(0o700).owner(2, 2).xattr("user.k", b"v"),
            )
            // fifo over symlink, hard link over file
            .symlink("n", "/dev/null")
            .fifo("n")
            .file("target", b"t")
            .file("h", b"will be replaced")
            .hardlink("h", "target"),
    );
    assert_eq!(out.read("f"), b"second");
    assert!(out.md("d").is_dir());
    assert_eq!(out.read("d/inside"), b"x");
    assert_eq!(out.read("e"), b"now a file");
    assert!(out.md("s").file_type().is_symlink());
    let keep = out.md("keep");
    assert_eq!(
        (keep.mode() & 0o7777, keep.uid(), keep.gid()),
        (0o700, 2, 2)
    );
    assert_eq!(out.read("keep/child"), b"x");
    assert_eq!(out.xattr("keep", "user.k").unwrap(), b"v");
    assert!(out.md("n").file_type().is_fifo());
    assert_eq!(out.md("h").ino(), out.md("target").ino());
}

#[test]
fn old_style_directory_by_trailing_slash() {
    let out = unpack_ok(
        Tar::new()
            .file_h("olddir/", b"", H::default().mode(0o711))
            .file("olddir/f", b"x"),
    );
    assert!(out.md("olddir").is_dir());
    assert_eq!(out.md("olddir").mode() & 0o7777, 0o711);
}

#[test]
fn implicit_parents_are_created() {
    let out = unpack_ok(Tar::new().file("a/b/c/file", b"x").file("a/other", b"y"));
    for d in ["a", "a/b", "a/b/c"] {
        let md = out.md(d);
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o7777, 0o755);
    }
    assert_eq!(out.read("a/b/c/file"), b"x");
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let out = unpack_ok(
        Tar::new()
            .dir("etc/")
            .file_h("etc/.wh.passwd", b"", H::default().mtime(T0 + 4))
            .file("etc/.wh..hidden", b"")
            // a whiteout replaces whatever the same layer had there
            .file("etc/present", b"x")
            .file("etc/.wh.present", b"")
            .dir("gone/")
            .file("gone/x", b"")
            .file(".wh.gone", b"")
            .dir("opq/")
            .file("opq/.wh..wh..opq", b"")
            .file("opq/new", b"x")
            // a whiteout in a directory the tar never listed
            .file("implicit/.wh.x", b""),
    );
    for wh in [
        "etc/passwd",
        "etc/.hidden",
        "etc/present",
        "gone",
        "implicit/x",
    ] {
        let md = out.md(wh);
        assert!(md.file_type().is_char_device(), "{wh}");
        assert_eq!(md.rdev(), 0, "{wh}");
    }
    assert_eq!(out.md("etc/passwd").mtime(), (T0 + 4) as i64);
    assert!(!out.exists("etc/.wh.passwd"));
    assert!(!out.exists("opq/.wh..wh..opq"));
    assert_eq!(out.xattr("opq", "trusted.overlay.opaque").unwrap(), b"y");
    assert_eq!(out.xattr("etc", "trusted.overlay.opaque"), None);
    let kinds: Vec<_> = out
        .unpacked
        .inventory
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Whiteout)
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "etc/.hidden",
            "etc/passwd",
            "etc/present",
            "gone",
            "implicit/x"
        ]
    );
}

#[test]
fn opaque_marker_uses_user_namespace_when_asked() {
    let tar = Tar::new()
        .dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file(".wh..wh..opq", b"")
        .bytes();
    let out = unpack_with(
        &tar,
        &UnpackOptions {
            overlay_xattr: OverlayXattr::User,
        },
    );
    assert_eq!(out.xattr("d", "user.overlay.opaque").unwrap(), b"y");
    assert_eq!(out.xattr("d", "trusted.overlay.opaque"), None);
    assert_eq!(out.xattr("", "user.overlay.opaque").unwrap(), b"y");
}

#[test]
fn overlay_xattrs_inside_the_tar_are_never_applied() {
    let out = unpack_ok(
        Tar::new()
            .dir_h(
                "d/",
                H::default()
                    .mode(0o755)
                    .xattr("trusted.overlay.opaque", b"y")
                    .xattr("user.overlay.opaque", b"y")
                    .xattr("user.fine", b"kept"),
            )
            .file_h(
                "d/f",
                b"",
                H::default()
                    .xattr("trusted.overlay.redirect", b"/etc")
                    .xattr("trusted.overlay.metacopy", b""),
            ),
    );
    assert_eq!(out.xattr("d", "trusted.overlay.opaque"), None);
    assert_eq!(out.xattr("d", "user.overlay.opaque"), None);
    assert_eq!(out.xattr("d", "user.fine").unwrap(), b"kept");
    assert_eq!(out.xattr("d/f", "trusted.overlay.redirect"), None);
    assert_eq!(out.xattr("d/f", "trusted.overlay.metacopy"), None);
}

#[test]
fn global_pax_headers_and_aufs_metadata_are_skipped() {
    let out = unpack_ok(
        Tar::new()
            .global_pax(&[("comment", b"made by a test")])
            .dir(".wh..wh.plnk/")
            .file(".wh..wh.plnk/123.456", b"x")
            .file(".wh..wh.aufs", b"")
            .file("real", b"x"),
    );
    assert!(!out.exists(".wh..wh.plnk"));
    assert!(!out.exists(".wh..wh.aufs"));
    assert!(!out.exists("pax_global_header"));
    assert_eq!(out.read("real"), b"x");
}

#[test]
fn malformed_entries_are_rejected_by_name() {
    let e = unpack_err(Tar::new().file("ok", b"").entry(
        EntryType::new(b'V'),
        b"volume-label",
        None,
        H::default(),
        b"",
    ));
    assert_eq!(e.entry(), Some("volume-label"));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::Unsupported('V'),
                ..
            }
        ),
        "{e}"
    );

    let e = unpack_err(Tar::new().symlink("./", "elsewhere"));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::RootNotDir,
                ..
            }
        ),
        "{e}"
    );

    let e = unpack_err(Tar::new().file("a/.wh.", b""));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::BadWhiteout,
                ..
            }
        ),
        "{e}"
    );

    let e = unpack_err(Tar::new().file("f", b"").file("f/child", b""));
    assert_eq!(e.entry(), Some("f/child"));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::NotADirectory(_),
                ..
            }
        ),
        "{e}"
    );

    let e = unpack_err(Tar::new().dir("d/").hardlink("h", "d"));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::LinkToDir(_),
                ..
            }
        ),
        "{e}"
    );

    let e = unpack_err(Tar::new().hardlink("h", "not-there"));
    assert!(
        matches!(
            e,
            LayerError::Rejected {
                reason: Reject::LinkMissing(_),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn truncated_stream_names_the_entry() {
    let mut tar = Tar::new();
    tar.file("first", b"ok").file("big", &[7u8; 4000]);
    let bytes = tar.bytes();
    // Cut inside the content of `big`.
    let cut = &bytes[..512 * 3 + 1000];
    let tmp = scratch();
    let e = unpack(&mut &cut[..], tmp.path(), &UnpackOptions::default()).unwrap_err();
    assert_eq!(e.entry(), Some("big"), "{}", chain(&e));

    // Cut inside the header after `first`.
    let cut = &bytes[..512 * 2 + 100];
    let tmp = scratch();
    let e = unpack(&mut &cut[..], tmp.path(), &UnpackOptions::default()).unwrap_err();
    assert!(chain(&e).contains("after entry `first`"), "{}", chain(&e));
}

#[test]
fn a_tar_ending_right_after_the_last_data_is_complete() {
    // What `umoci insert` writes: no padding after the last file's data and
    // no end-of-archive blocks.
    let mut tar = Tar::new();
    tar.file("first", b"ok").file("last", b"nine byte");
    let bytes = tar.bytes();
    let unpadded = &bytes[..512 * 3 + 9];
    let tmp = scratch();
    let unpacked = unpack(&mut &unpadded[..], tmp.path(), &UnpackOptions::default()).unwrap();
    assert_eq!(unpacked.entries, 2);
    assert_eq!(
        std::fs::read(tmp.path().join("last")).unwrap(),
        b"nine byte"
    );
    assert_inventory_matches(&unpacked, tmp.path());

    // But a stream cut a byte into the padding or the next header is not.
    for cut in [512 * 3 + 10, 512 * 4 + 1] {
        let tmp = scratch();
        let e = unpack(&mut &bytes[..cut], tmp.path(), &UnpackOptions::default());
        assert!(e.is_err(), "a stream cut at {cut} must fail");
    }
}

#[test]
fn reader_stays_usable_and_hashing_covers_the_whole_stream() {
    let mut bytes = Tar::new().file("a", b"content").bytes();
    bytes.extend([0u8; 10_000]); // trailing padding some writers add
    let expected = crate::oci::Digest::of_bytes(&bytes);
    let tmp = scratch();
    let mut hashing = crate::oci::verify::HashingReader::new(&bytes[..]);
    unpack(&mut hashing, tmp.path(), &UnpackOptions::default()).unwrap();
    let (digest, n) = hashing.finish().unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(digest, expected);
}

#[test]
fn compressed_layers_unpack_through_the_decoder() {
    use std::io::Write;
    let tar = Tar::new().dir("x/").file("x/y", &[1u8; 100_000]).bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (c, data) in [
        (crate::oci::Compression::Gzip, gz),
        (crate::oci::Compression::Zstd, zst),
        (crate::oci::Compression::None, tar.clone()),
    ] {
        let tmp = scratch();
        let mut r = crate::layer::decoder(c, &data[..]).unwrap();
        let u = unpack(&mut r, tmp.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(u.bytes, 100_000, "{c:?}");
        assert_inventory_matches(&u, tmp.path());
        assert_eq!(
            std::fs::read(tmp.path().join("x/y")).unwrap(),
            vec![1u8; 100_000]
        );
    }
}

#[test]
fn normalize_rules() {
    assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
    assert_eq!(normalize(b"./").unwrap(), b"");
    assert_eq!(normalize(b"a/../b"), Err(Reject::DotDot));
    assert_eq!(normalize(b"/etc"), Err(Reject::Absolute));
    assert_eq!(normalize(b"a\0b"), Err(Reject::Nul));
}

// ---------------------------------------------------------------------
// Hostile archives (acceptance item 7). Model: containerd's TestBreakouts.
// ---------------------------------------------------------------------

/// What a hostile archive must lead to.
enum Expect {
    /// Unpack fails with this [`Reject`] variant (by name), and the error
    /// names this entry.
    Rejected(&'static str, &'static str),
    /// Unpack succeeds (confinement), and this path inside the layer holds
    /// these bytes.
    Confined(String, &'static [u8]),
}

struct Hostile {
    name: &'static str,
    /// Builds the archive; gets the absolute path of the directory around
    /// the layer (which holds the sentinels).
    build: fn(&str) -> Tar,
    expect: fn(&str) -> Expect,
}

/// The path of `outer` as seen from inside the layer when an absolute
/// symlink to it is confined: `target/<outer without leading />`.
fn inside(outer: &str, rest: &str) -> String {
    format!("{}/{rest}", outer.trim_start_matches('/'))
}

fn hostile_table() -> Vec<Hostile> {
    vec![
        Hostile {
            name: "dotdot in name",
            build: |_| {
                let mut t = Tar::new();
                t.file("../sentinel", b"pwned");
                t
            },
            expect: |_| Expect::Rejected("../sentinel", "DotDot"),
        },
        Hostile {
            name: "dotdot in the middle of a name",
            build: |_| {
                let mut t = Tar::new();
                t.dir("a/").file("a/../../sentinel", b"pwned");
                t
            },
            expect: |_| Expect::Rejected("a/../../sentinel", "DotDot"),
        },
        Hostile {
            name: "absolute name",
            build: |outer| {
                let mut t = Tar::new();
                t.file(&format!("{outer}/sentinel"), b"pwned");
                t
            },
            expect: |_| Expect::Rejected("<abs>/sentinel", "Absolute"),
        },
        Hostile {
            name: "GNU long name with dotdot",
            build: |_| {
                let mut t = Tar::new();
                let name = format!("{}{}sentinel", "d/".repeat(60), "../".repeat(61));
                t.file(&name, b"pwned");
                t
            },
            expect: |_| Expect::Rejected("<long>", "DotDot"),
        },
        Hostile {
            name: "PAX path with dotdot",
            build: |_| {
                let mut t = Tar::pax_names();
                let name = format!("{}{}sentinel", "d/".repeat(60), "../".repeat(61));
                t.file(&name, b"pwned");
                t
            },
            expect: |_| Expect::Rejected("<long>", "DotDot"),
        },
        Hostile {
            name: "symlink up and out, then write through it",
            build: |_| {
                let mut t = Tar::new();
                t.symlink("up", "..").file("up/sentinel", b"pwned");
                t
            },
            expect: |_| Expect::Confined("sentinel".into(), b"pwned"),
        },
        Hostile {
            name: "deep relative symlink, then write through it",
            build: |_| {
                let mut t = Tar::new();
                t.dir("a/")
                    .symlink("a/up", &"../".repeat(30))
                    .file("a/up/sentinel", b"pwned");
                t
            },
            expect: |_| Expect::Confined("sentinel".into(), b"pwned"),
        },
        Hostile {
            name: "absolute symlink, then write through it",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("abs", outer).file("abs/sentinel", b"pwned");
                t
            },
            expect: |outer| Expect::Confined(inside(outer, "sentinel"), b"pwned"),
        },
        Hostile {
            name: "absolute symlink to a dir, then a dir and a file through it",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("abs", &format!("{outer}/sentdir"))
                    .dir("abs/sub/")
                    .file("abs/sub/f", b"pwned");
                t
            },
            expect: |outer| Expect::Confined(inside(outer, "sentdir/sub/f"), b"pwned"),
        },
        Hostile {
            name: "relative symlink chain",
            build: |_| {
                let mut t = Tar::new();
                t.dir("x/")
                    .symlink("x/l1", "../l2")
                    .symlink("l2", "x/l3")
                    .symlink("x/l3", "../../../..")
                    .file("x/l1/sentinel", b"pwned");
                t
            },
            expect: |_| Expect::Confined("sentinel".into(), b"pwned"),
        },
        Hostile {
            name: "symlink loop",
            build: |_| {
                let mut t = Tar::new();
                t.symlink("a", "b").symlink("b", "a").file("a/f", b"x");
                t
            },
            expect: |_| Expect::Rejected("a/f", "SymlinkLoop"),
        },
        Hostile {
            name: "dir replaced by a symlink mid-archive, then written through",
            build: |outer| {
                let mut t = Tar::new();
                t.dir("d/")
                    .file("d/ok", b"fine")
                    .symlink("d", outer)
                    .file("d/sentinel", b"pwned");
                t
            },
            expect: |outer| Expect::Confined(inside(outer, "sentinel"), b"pwned"),
        },
        Hostile {
            name: "file over a symlink pointing outside replaces the symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("f", &format!("{outer}/sentinel"))
                    .file("f", b"pwned");
                t
            },
            expect: |_| Expect::Confined("f".into(), b"pwned"),
        },
        Hostile {
            name: "dir over a symlink pointing outside replaces the symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("d", &format!("{outer}/sentdir"))
                    .dir("d/")
                    .file("d/f", b"pwned");
                t
            },
            expect: |_| Expect::Confined("d/f".into(), b"pwned"),
        },
        Hostile {
            name: "fifo, device and whiteout over symlinks pointing outside",
            build: |outer| {
                let mut t = Tar::new();
                let s = format!("{outer}/sentinel");
                t.symlink("n", &s)
                    .fifo("n")
                    .symlink("c", &s)
                    .dev(EntryType::Char, "c", 1, 3)
                    .symlink("w", &s)
                    .file(".wh.w", b"")
                    .file("ok", b"pwned");
                t
            },
            expect: |_| Expect::Confined("ok".into(), b"pwned"),
        },
        Hostile {
            name: "hard link to a relative path outside",
            build: |_| {
                let mut t = Tar::new();
                t.hardlink("h", "../sentinel");
                t
            },
            expect: |_| Expect::Rejected("h", "LinkOutside"),
        },
        Hostile {
            name: "hard link to an absolute path",
            build: |outer| {
                let mut t = Tar::new();
                t.hardlink("h", &format!("{outer}/sentinel"));
                t
            },
            expect: |_| Expect::Rejected("h", "LinkOutside"),
        },
        Hostile {
            name: "hard link through a symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("s", outer).hardlink("h", "s/sentinel");
                t
            },
            expect: |_| Expect::Rejected("h", "LinkThroughSymlink"),
        },
        Hostile {
            name: "hard link through a relative symlink to the parent",
            build: |_| {
                let mut t = Tar::new();
                t.symlink("s", "..").hardlink("h", "s/sentinel");
                t
            },
            expect: |_| Expect::Rejected("h", "LinkThroughSymlink"),
        },
        Hostile {
            name: "hard link with a GNU long link name leaving the layer",
            build: |_| {
                let mut t = Tar::new();
                let target = format!("{}{}sentinel", "d/".repeat(60), "../".repeat(61));
                t.hardlink("h", &target);
                t
            },
            expect: |_| Expect::Rejected("h", "LinkOutside"),
        },
        Hostile {
            name: "hard link with a PAX linkpath leaving the layer",
            build: |_| {
                let mut t = Tar::pax_names();
                let target = format!("{}{}sentinel", "d/".repeat(60), "../".repeat(61));
                t.hardlink("h", &target);
                t
            },
            expect: |_| Expect::Rejected("h", "LinkOutside"),
        },
        Hostile {
            name: "hard link to a file outside, then write to the link",
            build: |_| {
                let mut t = Tar::new();
                t.hardlink("h", "../sentinel").file("h", b"pwned");
                t
            },
            expect: |_| Expect::Rejected("h", "LinkOutside"),
        },
        Hostile {
            name: "whiteout of dotdot",
            build: |_| {
                let mut t = Tar::new();
                t.dir("a/").file("a/.wh...", b"");
                t
            },
            expect: |_| Expect::Rejected("a/.wh...", "BadWhiteout"),
        },
        Hostile {
            name: "whiteout of dot",
            build: |_| {
                let mut t = Tar::new();
                t.file(".wh..", b"");
                t
            },
            expect: |_| Expect::Rejected(".wh..", "BadWhiteout"),
        },
        Hostile {
            name: "whiteout through an absolute symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("s", outer).file("s/.wh.sentinel", b"");
                t
            },
            expect: |_| Expect::Rejected("s/.wh.sentinel", "ThroughSymlink"),
        },
        Hostile {
            name: "whiteout through a relative symlink to the parent",
            build: |_| {
                let mut t = Tar::new();
                t.symlink("s", "..").file("s/.wh.sentinel", b"");
                t
            },
            expect: |_| Expect::Rejected("s/.wh.sentinel", "ThroughSymlink"),
        },
        Hostile {
            name: "opaque marker through a symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.symlink("s", &format!("{outer}/sentdir"))
                    .file("s/.wh..wh..opq", b"");
                t
            },
            expect: |_| Expect::Rejected("s/.wh..wh..opq", "ThroughSymlink"),
        },
        Hostile {
            name: "whiteout through a dir replaced by a symlink",
            build: |outer| {
                let mut t = Tar::new();
                t.dir("d/").symlink("d", outer).file("d/.wh.sentinel", b"");
                t
            },
            expect: |_| Expect::Rejected("d/.wh.sentinel", "ThroughSymlink"),
        },
        Hostile {
            name: "symlink named like a parent of later entries, through a long name",
            build: |outer| {
                let mut t = Tar::new();
                let long = "l".repeat(120);
                t.symlink(&long, outer)
                    .file(&format!("{long}/sentinel"), b"pwned");
                t
            },
            expect: |outer| Expect::Confined(inside(outer, "sentinel"), b"pwned"),
        },
    ]
}

/// Lists everything below `dir` except `skip`, with mode, owner, size,
/// mtime, xattrs and a content hash or link target, so any write outside
/// the layer shows up.
fn listing(dir: &Path, skip: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.path() != skip)
    {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let content = if md.is_file() {
            format!(
                "{:x}",
                xxhash_rust::xxh3::xxh3_64(&std::fs::read(e.path()).unwrap())
            )
        } else if md.file_type().is_symlink() {
            std::fs::read_link(e.path()).unwrap().display().to_string()
        } else {
            String::new()
        };
        let xattrs = sysfs::lxattrs(e.path()).unwrap();
        out.push(format!(
            "{} {:o} {} {} {} {content} {xattrs:?}",
            e.path().display(),
            md.mode(),
            md.uid(),
            md.len(),
            md.mtime()
        ));
    }
    out
}

#[test]
fn hostile_archives_never_escape() {
    let mut failures = Vec::new();
    for case in hostile_table() {
        let tmp = scratch();
        let outer = tmp.path().to_str().unwrap().to_string();
        std::fs::write(tmp.path().join("sentinel"), b"original").unwrap();
        std::fs::create_dir(tmp.path().join("sentdir")).unwrap();
        std::fs::write(tmp.path().join("sentdir/inner"), b"original").unwrap();
        let layer = tmp.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let before = listing(tmp.path(), &layer);

        let tar = (case.build)(&outer).bytes();
        let result = unpack(&mut &tar[..], &layer, &UnpackOptions::default());

        let after = listing(tmp.path(), &layer);
        if before != after {
            failures.push(format!(
                "{}: wrote outside the layer:\nbefore {before:#?}\nafter {after:#?}",
                case.name
            ));
        }
        match ((case.expect)(&outer), result) {
            (Expect::Rejected(entry, reason), Err(e)) => {
                let named = e.entry().unwrap_or("");
                let reason_ok = matches!(&e, LayerError::Rejected { reason: r, .. }
                    if format!("{r:?}").split('(').next() == Some(reason));
                if !reason_ok {
                    failures.push(format!(
                        "{}: expected reason {reason}, got: {e:?}",
                        case.name
                    ));
                }
                let ok = match entry {
                    "<abs>/sentinel" => named == format!("{outer}/sentinel"),
                    "<long>" => named.ends_with("sentinel") && named.len() > 100,
                    _ => named == entry,
                };
                if !ok || !matches!(e, LayerError::Rejected { .. }) {
                    failures.push(format!(
                        "{}: expected a rejection naming `{entry}`, got: {}",
                        case.name,
                        chain(&e)
                    ));
                }
                if !e.to_string().contains(named) || named.is_empty() {
                    failures.push(format!(
                        "{}: message does not name the entry: {e}",
                        case.name
                    ));
                }
            }
            (Expect::Rejected(entry, _), Ok(_)) => failures.push(format!(
                "{}: expected rejection of `{entry}`, but unpacked",
                case.name
            )),
            (Expect::Confined(path, content), Ok(u)) => {
                match std::fs::read(layer.join(&path)) {
                    Ok(c) if c == content => {}
                    other => failures.push(format!(
                        "{}: expected `{path}` inside the layer, got {other:?}",
                        case.name
                    )),
                }
                let scanned = scan(&layer).unwrap();
                let diffs: Vec<String> = compare(&u.inventory, &scanned)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if !diffs.is_empty() {
                    failures.push(format!("{}: inventory differs: {diffs:?}", case.name));
                }
            }
            (Expect::Confined(path, _), Err(e)) => failures.push(format!(
                "{}: expected `{path}` confined inside the layer, got error {}",
                case.name,
                chain(&e)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------
// Overlay: two unpacked layers mounted read-only behave as the image says.
// ---------------------------------------------------------------------

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH) {
            eprintln!("unmount {}: {e}", self.0.display());
        }
    }
}

#[test]
fn overlay_mount_of_two_unpacked_layers() {
    let tmp = scratch();
    let lower = tmp.path().join("lower");
    let upper = tmp.path().join("upper");
    let mnt = tmp.path().join("mnt");
    for d in [&lower, &upper, &mnt] {
        std::fs::create_dir(d).unwrap();
    }
    let lower_tar = Tar::new()
        .file("a", b"a")
        .file("b", b"b")
        .dir("d/")
        .file("d/x", b"x")
        .bytes();
    let upper_tar = Tar::new()
        .file(".wh.a", b"")
        .dir("d/")
        .file("d/.wh..wh..opq", b"")
        .file("d/y", b"y")
        .bytes();
    let opts = UnpackOptions::default();
    let u1 = unpack(&mut &lower_tar[..], &lower, &opts).unwrap();
    assert_inventory_matches(&u1, &lower);
    let u2 = unpack(&mut &upper_tar[..], &upper, &opts).unwrap();
    assert_inventory_matches(&u2, &upper);

    let options = format!("lowerdir={}:{}", upper.display(), lower.display());
    let options = std::ffi::CString::new(options).unwrap();
    rustix::mount::mount(
        "overlay",
        &mnt,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        options.as_c_str(),
    )
    .expect("mount overlay");
    let guard = MountGuard(mnt.clone());

    assert!(!mnt.join("a").exists(), "whiteout must hide `a`");
    assert_eq!(std::fs::read(mnt.join("b")).unwrap(), b"b");
    let mut names: Vec<String> = std::fs::read_dir(mnt.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["y"],
        "opaque `d` must show only this layer's entries"
    );
    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["b", "d"]);

    drop(guard);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(mnt.to_str().unwrap()),
        "mount left behind"
    );
}

// ---------------------------------------------------------------------
// Speed self-check: not a timing assertion; prints entries/s.
// ---------------------------------------------------------------------

#[test]
fn speed_self_check_small_files() {
    let dirs = 100;
    let per_dir = 200;
    let mut tar = Tar::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut content = vec![0u8; 8192];
    for b in content.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    for d in 0..dirs {
        tar.dir(&format!("usr/share/d{d:03}/"));
        for f in 0..per_dir {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 8192) as usize;
            tar.file_h(
                &format!("usr/share/d{d:03}/file{f:04}.txt"),
                &content[..len],
                H::default().mode(0o644),
            );
        }
    }
    let bytes = tar.bytes();
    let tmp = scratch();
    let start = std::time::Instant::now();
    let u = unpack(&mut &bytes[..], tmp.path(), &UnpackOptions::default()).unwrap();
    let took = start.elapsed();
    let rate = u.entries as f64 / took.as_secs_f64();
    eprintln!(
        "unpack self-check: {} entries, {} MB of tar in {:.3} s on {}: {:.0} entries/s, {:.0} MB/s",
        u.entries,
        bytes.len() / 1_000_000,
        took.as_secs_f64(),
        tmp.path().parent().unwrap().display(),
        rate,
        bytes.len() as f64 / 1e6 / took.as_secs_f64()
    );
    assert_eq!(u.entries, (dirs * (per_dir + 1)) as u64);
    let start = std::time::Instant::now();
    assert_inventory_matches(&u, tmp.path());
    eprintln!("scan + compare: {:.3} s", start.elapsed().as_secs_f64());
    let mode = std::fs::metadata(tmp.path().join("usr/share/d000/file0000.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}
