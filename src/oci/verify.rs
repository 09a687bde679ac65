//! Readers that hash (and count) what flows through them, so a stream is
//! verified in the same pass that consumes it — never read twice.

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
}
