//! Unpacks one layer tar (plain, gzip or zstd, detected by magic bytes) into
//! an empty directory and prints how long it took: a quick way to measure
//! the unpacker against `tar -xf` on the same input.
//!
//! `cargo run --example unpack_layer -- LAYER.tar[.gz|.zst] EMPTY_DIR [OTHER_DIR]`
//!
//! With `OTHER_DIR` (say, the same tar extracted by GNU tar), the inventory
//! of the unpack is compared with a scan of that directory and every
//! difference is printed.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use builder::layer::{self, UnpackOptions};
use builder::oci::Compression;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (input, target, other) = match &args[..] {
        [_, input, target] => (input, target, None),
        [_, input, target, other] => (input, target, Some(other)),
        _ => anyhow::bail!("usage: unpack_layer LAYER.tar[.gz|.zst] EMPTY_DIR [OTHER_DIR]"),
    };
    let mut file = BufReader::with_capacity(1 << 20, std::fs::File::open(input)?);
    let magic = file.fill_buf()?;
    let compression = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    std::fs::create_dir_all(target)?;
    let start = Instant::now();
    let mut reader = layer::decoder(compression, file)?;
    let unpacked = layer::unpack(&mut reader, target.as_ref(), &UnpackOptions::default())?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{compression:?}: {} entries, {} content bytes in {secs:.3} s: {:.0} entries/s",
        unpacked.entries,
        unpacked.bytes,
        unpacked.entries as f64 / secs
    );
    if let Some(other) = other {
        let scanned = layer::scan(other.as_ref())?;
        let diffs = layer::compare(&unpacked.inventory, &scanned);
        for d in &diffs {
            println!("{d}");
        }
        println!("{} differences against {other}", diffs.len());
    }
    Ok(())
}
