//! Where `save` writes: a tar file ([`TarSink`]) or a directory
//! ([`DirSink`]), both built under a temp name beside the destination and
//! renamed into place by `finish`, so a failed save leaves nothing; or a
//! tar stream ([`StreamSink`], stdout).
//!
//! Tar entries are written by hand with `tar::Header` (GNU format, so
//! sizes past 8 GiB fit), deterministically: mtime 0, owner 0:0, mode 0644
//! for files and 0755 for directories. The tar crate's `Builder` would do
//! the same for sized entries, but not the seek-back an entry of unknown
//! size needs (a layer decompressed on the fly).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::ArchiveError;

/// Why a copy into the output failed: reading the source or writing.
pub(super) enum CopyError {
    Read(io::Error),
    Write(ArchiveError),
}

/// An archive being written.
pub(super) trait Sink {
    fn dir(&mut self, name: &str) -> Result<(), ArchiveError>;
    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError>;
    /// Copies exactly `size` bytes from `reader` (fewer is a read error).
    fn sized(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), CopyError>;
    /// Copies `reader` to its end; returns the byte count.
    fn streamed(&mut self, name: &str, reader: &mut dyn Read) -> Result<u64, CopyError>;
    /// Completes the archive and moves it into place.
    fn finish(self: Box<Self>) -> Result<(), ArchiveError>;
}

const COPY_BUFFER: usize = 1 << 20;
const BLOCK: u64 = 512;

/// Copies `reader` into `out`, at most `limit` bytes, telling read and
/// write errors apart. Returns the count.
fn copy(
    reader: &mut dyn Read,
    out: &mut dyn Write,
    limit: u64,
    dest: &Path,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    while total < limit {
        let want = (limit - total).min(buf.len() as u64) as usize;
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n])
            .map_err(|e| CopyError::Write(ArchiveError::io("write", dest, e)))?;
        total += n as u64;
    }
    Ok(total)
}

fn short_read(name: &str, size: u64, got: u64) -> CopyError {
    CopyError::Read(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("`{name}`: {got} of {size} bytes"),
    ))
}

/// The tar format both tar sinks write, over any writer.
struct TarOut<W: Write> {
    out: W,
    /// What errors name as the destination.
    dest: PathBuf,
    /// Bytes written so far (the offset of the next header).
    pos: u64,
}

impl<W: Write> TarOut<W> {
    fn header(name: &str, kind: tar::EntryType, size: u64) -> Result<tar::Header, ArchiveError> {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).map_err(|e| ArchiveError::Invalid {
            entry: name.to_string(),
            reason: e.to_string(),
        })?;
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        Ok(h)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.out
            .write_all(bytes)
            .map_err(|e| ArchiveError::io("write", &self.dest, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), ArchiveError> {
        let rest = (BLOCK - size % BLOCK) % BLOCK;
        self.write(&[0u8; BLOCK as usize][..rest as usize])
    }

    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        let name = format!("{}/", name.trim_end_matches('/'));
        let h = Self::header(&name, tar::EntryType::Directory, 0)?;
        self.write(h.as_bytes())
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64)?;
        self.write(h.as_bytes())?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    fn sized(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), CopyError> {
        let h = Self::header(name, tar::EntryType::Regular, size).map_err(CopyError::Write)?;
        self.write(h.as_bytes()).map_err(CopyError::Write)?;
        let n = copy(reader, &mut self.out, size, &self.dest)?;
        self.pos += n;
        if n != size {
            return Err(short_read(name, size, n));
        }
        self.pad(size).map_err(CopyError::Write)
    }

    /// The end of a tar: two zero blocks; then flushes.
    fn end(&mut self) -> Result<(), ArchiveError> {
        self.write(&[0u8; 2 * BLOCK as usize])?;
        self.out
            .flush()
            .map_err(|e| ArchiveError::io("write", &self.dest, e))
    }
}

/// A tar file being written.
pub(super) struct TarSink {
    temp: tempfile::NamedTempFile,
    tar: TarOut<BufWriter<File>>,
}

impl TarSink {
    pub(super) fn create(dest: &Path) -> Result<Self, ArchiveError> {
        let (temp, _) = temp_beside(dest, |dir| {
            tempfile::Builder::new()
                .prefix(".builder-save-")
                .tempfile_in(dir)
        })?;
        let file = temp
            .as_file()
            .try_clone()
            .map_err(|e| ArchiveError::io("open", temp.path(), e))?;
        Ok(Self {
            tar: TarOut {
                out: BufWriter::with_capacity(COPY_BUFFER, file),
                dest: dest.to_path_buf(),
                pos: 0,
            },
            temp,
        })
    }
}

impl Sink for TarSink {
    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        self.tar.dir(name)
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.tar.bytes(name, data)
    }

    fn sized(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), CopyError> {
        self.tar.sized(name, size, reader)
    }

    fn streamed(&mut self, name: &str, reader: &mut dyn Read) -> Result<u64, CopyError> {
        type Tar = TarOut<BufWriter<File>>;
        let tar = &mut self.tar;
        let start = tar.pos;
        let placeholder =
            Tar::header(name, tar::EntryType::Regular, 0).map_err(CopyError::Write)?;
        tar.write(placeholder.as_bytes())
            .map_err(CopyError::Write)?;
        let n = copy(reader, &mut tar.out, u64::MAX, &tar.dest)?;
        tar.pos += n;
        tar.pad(n).map_err(CopyError::Write)?;
        // Now the size is known: rewrite the header in place, then go back
        // to the end (seeking flushes the buffer first).
        let header = Tar::header(name, tar::EntryType::Regular, n).map_err(CopyError::Write)?;
        let seek_err = |e| CopyError::Write(ArchiveError::io("seek in", &tar.dest, e));
        tar.out.seek(SeekFrom::Start(start)).map_err(seek_err)?;
        tar.out
            .write_all(header.as_bytes())
            .map_err(|e| CopyError::Write(ArchiveError::io("write", &tar.dest, e)))?;
        tar.out
            .seek(SeekFrom::Start(tar.pos))
            .map_err(|e| CopyError::Write(ArchiveError::io("seek in", &tar.dest, e)))?;
        Ok(n)
    }

    fn finish(mut self: Box<Self>) -> Result<(), ArchiveError> {
        self.tar.end()?;
        let file = self.temp.as_file();
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| ArchiveError::io("chmod", self.temp.path(), e))?;
        file.sync_all()
            .map_err(|e| ArchiveError::io("fsync", self.temp.path(), e))?;
        let TarSink { temp, tar } = *self;
        let dest = tar.dest.clone();
        drop(tar);
        temp.persist(&dest)
            .map_err(|e| ArchiveError::io("rename into place", &dest, e.error))?;
        Ok(())
    }
}

/// A tar written to a stream that cannot seek (stdout, a pipe), in the
/// same bytes as [`TarSink`] writes. An entry of unknown size (a layer
/// decompressed on the fly) is spooled to an unnamed temp file in
/// `spool_dir` first (the store's, not `/tmp`, which is often RAM), since
/// its header, which holds the size, goes before it. What a failed save
/// wrote is a truncated tar; the exit status says so.
pub(super) struct StreamSink<W: Write> {
    tar: TarOut<BufWriter<W>>,
    spool_dir: PathBuf,
}

impl<W: Write> StreamSink<W> {
    /// `label` names the stream in errors (`stdout`).
    pub(super) fn new(out: W, label: &str, spool_dir: PathBuf) -> Self {
        Self {
            tar: TarOut {
                out: BufWriter::with_capacity(COPY_BUFFER, out),
                dest: PathBuf::from(label),
                pos: 0,
            },
            spool_dir,
        }
    }
}

impl<W: Write> Sink for StreamSink<W> {
    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        self.tar.dir(name)
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.tar.bytes(name, data)
    }

    fn sized(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), CopyError> {
        self.tar.sized(name, size, reader)
    }

    fn streamed(&mut self, name: &str, reader: &mut dyn Read) -> Result<u64, CopyError> {
        let spool_path = self.spool_dir.clone();
        let spool_err = |e| CopyError::Write(ArchiveError::io("spool in", &spool_path, e));
        let mut spool = tempfile::tempfile_in(&spool_path).map_err(spool_err)?;
        let n = {
            let mut out = BufWriter::with_capacity(COPY_BUFFER, &mut spool);
            let n = copy(reader, &mut out, u64::MAX, &spool_path)?;
            out.flush().map_err(spool_err)?;
            n
        };
        spool.seek(SeekFrom::Start(0)).map_err(spool_err)?;
        // Spooled bytes that cannot be read back are a write problem here.
        match self.tar.sized(name, n, &mut spool) {
            Err(CopyError::Read(e)) => Err(spool_err(e)),
            other => other.map(|()| n),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<(), ArchiveError> {
        self.tar.end()
    }
}

/// An OCI layout directory being written.
pub(super) struct DirSink {
    dest: PathBuf,
    temp: tempfile::TempDir,
}

impl DirSink {
    /// `dest` must not exist, or be an empty directory.
    pub(super) fn create(dest: &Path) -> Result<Self, ArchiveError> {
        match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ArchiveError::DestinationExists {
                        path: dest.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(ArchiveError::DestinationExists {
                    path: dest.to_path_buf(),
                });
            }
            Err(e) => return Err(ArchiveError::io("read directory", dest, e)),
        }
        let (temp, _) = temp_beside(dest, |dir| {
            tempfile::Builder::new()
                .prefix(".builder-save-")
                .tempdir_in(dir)
        })?;
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| ArchiveError::io("chmod", temp.path(), e))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            temp,
        })
    }

    fn create_file(&self, name: &str) -> Result<(PathBuf, File), ArchiveError> {
        let path = self.temp.path().join(name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| ArchiveError::io("create", &path, e))?;
        Ok((path, file))
    }
}

use std::os::unix::fs::OpenOptionsExt;

impl Sink for DirSink {
    fn dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        let path = self.temp.path().join(name);
        fs::create_dir(&path).map_err(|e| ArchiveError::io("create", &path, e))
    }

    fn bytes(&mut self, name: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let (path, mut file) = self.create_file(name)?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| ArchiveError::io("write", &path, e))
    }

    fn sized(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<(), CopyError> {
        let (path, file) = self.create_file(name).map_err(CopyError::Write)?;
        let mut out = BufWriter::with_capacity(COPY_BUFFER, file);
        let n = copy(reader, &mut out, size, &path)?;
        if n != size {
            return Err(short_read(name, size, n));
        }
        let file = out
            .into_inner()
            .map_err(|e| CopyError::Write(ArchiveError::io("write", &path, e.into_error())))?;
        file.sync_all()
            .map_err(|e| CopyError::Write(ArchiveError::io("fsync", &path, e)))
    }

    fn streamed(&mut self, name: &str, reader: &mut dyn Read) -> Result<u64, CopyError> {
        let (path, file) = self.create_file(name).map_err(CopyError::Write)?;
        let mut out = BufWriter::with_capacity(COPY_BUFFER, file);
        let n = copy(reader, &mut out, u64::MAX, &path)?;
        out.flush()
            .map_err(|e| CopyError::Write(ArchiveError::io("write", &path, e)))?;
        Ok(n)
    }

    fn finish(self: Box<Self>) -> Result<(), ArchiveError> {
        let DirSink { dest, temp } = *self;
        // rename(2) replaces an empty directory, which `create` allowed.
        let kept = temp.keep();
        fs::rename(&kept, &dest).map_err(|e| {
            let _ = fs::remove_dir_all(&kept);
            ArchiveError::io("rename into place", &dest, e)
        })
    }
}

/// Creates a temp file or directory in `dest`'s parent directory.
fn temp_beside<T>(
    dest: &Path,
    make: impl FnOnce(&Path) -> io::Result<T>,
) -> Result<(T, PathBuf), ArchiveError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let made = make(&parent).map_err(|e| ArchiveError::io("create temp file in", &parent, e))?;
    Ok((made, parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of entry reads back with the tar crate, including a
    /// streamed one whose header was patched after its data.
    #[test]
    fn tar_sink_entries_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let mut sink: Box<dyn Sink> = Box::new(TarSink::create(&dest).unwrap());
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        sink.dir("d").unwrap();
        sink.bytes("d/small", b"hello").unwrap();
        let mut r = &big[..];
        assert_eq!(sink.streamed("d/streamed", &mut r).ok(), Some(70_000));
        let mut r = &big[..1000];
        assert!(sink.sized("sized", 1000, &mut r).is_ok());
        // Nothing at the destination until finish.
        assert!(!dest.exists());
        sink.finish().unwrap();

        let mut archive = tar::Archive::new(File::open(&dest).unwrap());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            assert_eq!(entry.header().mtime().unwrap(), 0);
            seen.push((name, data));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["d/", "d/small", "d/streamed", "sized"]);
        assert_eq!(seen[1].1, b"hello");
        assert_eq!(seen[2].1, big);
        assert_eq!(seen[3].1, &big[..1000]);
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }

    /// A source shorter than announced is a read error, and a sink that is
    /// dropped unfinished leaves nothing at the destination.
    #[test]
    fn short_sources_fail_and_unfinished_sinks_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.tar");
        let mut sink: Box<dyn Sink> = Box::new(TarSink::create(&dest).unwrap());
        let mut short: &[u8] = b"0123456789";
        assert!(matches!(
            sink.sized("short", 11, &mut short),
            Err(CopyError::Read(_))
        ));
        drop(sink);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dir_sink_refuses_a_non_empty_destination() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(matches!(
            DirSink::create(dir.path()),
            Err(ArchiveError::DestinationExists { .. })
        ));
        assert!(matches!(
            DirSink::create(&dir.path().join("f")),
            Err(ArchiveError::DestinationExists { .. })
        ));
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let mut sink: Box<dyn Sink> = Box::new(DirSink::create(&empty).unwrap());
        sink.bytes("a", b"1").unwrap();
        sink.finish().unwrap();
        assert_eq!(fs::read(empty.join("a")).unwrap(), b"1");
    }
}
