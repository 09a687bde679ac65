//! Layer compression: turns a compressed layer stream into the tar stream
//! (the "diff") that the layer's DiffID hashes. Streaming only; nothing is
//! buffered beyond the decoders' own windows.

use std::io::{self, BufReader, Read};

use crate::oci::Compression;

/// Input buffer in front of the decoders: large enough that a network or
/// hashing reader below is called rarely, small enough to stay in cache.
const INPUT_BUFFER: usize = 128 * 1024;

/// A reader that yields the decompressed bytes of `reader`.
///
/// gzip accepts concatenated members (as `pigz` and some registries emit);
/// zstd accepts concatenated frames.
pub fn decoder<'a, R: Read + 'a>(
    compression: Compression,
    reader: R,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(INPUT_BUFFER, reader),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(
            BufReader::with_capacity(INPUT_BUFFER, reader),
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn decode(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decoder(c, data).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_round_trip_including_multiple_members() {
        let data = sample();
        let (a, b) = data.split_at(data.len() / 3);
        let mut gz = Vec::new();
        for part in [a, b] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            gz.extend(enc.finish().unwrap());
        }
        assert_eq!(decode(Compression::Gzip, &gz), data);
    }

    #[test]
    fn zstd_round_trip_including_multiple_frames() {
        let data = sample();
        let (a, b) = data.split_at(data.len() / 2);
        let mut zst = zstd::encode_all(a, 3).unwrap();
        zst.extend(zstd::encode_all(b, 3).unwrap());
        assert_eq!(decode(Compression::Zstd, &zst), data);
    }

    #[test]
    fn none_passes_through_and_corrupt_input_fails() {
        let data = sample();
        assert_eq!(decode(Compression::None, &data), data);
        let mut out = Vec::new();
        let err = decoder(Compression::Gzip, &b"not gzip at all"[..])
            .unwrap()
            .read_to_end(&mut out);
        assert!(err.is_err());
        let err = decoder(Compression::Zstd, &b"not zstd at all"[..])
            .unwrap()
            .read_to_end(&mut out);
        assert!(err.is_err());
    }
}
