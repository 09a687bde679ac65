//! Readers and writers that hash (and count) what flows through them, so a
//! stream is verified (or its digest computed) in the same pass that
//! consumes or produces it — never read twice.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::Digest;

/// Hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Reads whatever is left (a tar stream's trailing padding, say), so the
    /// digest covers the whole stream, then returns it with the byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.bytes))
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Copies every byte read through it into a writer (the blob's temp file)
/// while hashing it: the download is written, hashed and handed on to the
/// decompressor in one pass.
pub struct TeeHashingReader<R, W> {
    inner: HashingReader<R>,
    sink: W,
}

impl<R: Read, W: Write> TeeHashingReader<R, W> {
    pub fn new(inner: R, sink: W) -> Self {
        Self {
            inner: HashingReader::new(inner),
            sink,
        }
    }

    pub fn bytes_read(&self) -> u64 {
        self.inner.bytes_read()
    }

    /// Drains the rest of the stream into the sink and returns the digest,
    /// the byte count, and the sink.
    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        io::copy(&mut self, &mut io::sink())?;
        let (digest, bytes) = (Digest::from_hasher(self.inner.hasher), self.inner.bytes);
        Ok((digest, bytes, self.sink))
    }
}

impl<R: Read, W: Write> Read for TeeHashingReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Hashes and counts every byte written through it: a layer's tar on its
/// way to the compressor (the DiffID), or the compressed stream on its way
/// to the blob file (the digest).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and count of everything written, and the inner writer
    /// (not flushed: the caller finishes it as its kind requires).
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.bytes, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Hash only what the inner writer accepted: a short write must not
        // hash bytes that will be offered again.
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_hashes_and_copies() {
        let data = b"hello world".repeat(1000);
        let mut tee = TeeHashingReader::new(&data[..], Vec::new());
        let mut first = [0u8; 100];
        tee.read_exact(&mut first).unwrap();
        let (digest, bytes, copy) = tee.finish().unwrap();
        assert_eq!(digest, Digest::of_bytes(&data));
        assert_eq!(bytes, data.len() as u64);
        assert_eq!(copy, data);
    }

    /// Accepts at most 7 bytes per call, to exercise short writes.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn hashing_writer_hashes_exactly_what_was_accepted() {
        let data = b"some layer bytes ".repeat(300);
        let mut w = HashingWriter::new(Trickle(Vec::new()));
        w.write_all(&data).unwrap();
        assert_eq!(w.bytes_written(), data.len() as u64);
        let (digest, bytes, inner) = w.finish();
        assert_eq!(digest, Digest::of_bytes(&data));
        assert_eq!(bytes, data.len() as u64);
        assert_eq!(inner.0, data);
    }
}
