//! Speed self-check of the layer commit (benchmark (d) of the build issue):
//! `layer::diff` of a 20k-file / 200 MB tree with gzip (default level) on 2 threads
//! against `tar -c DIR | pigz -6 -p 2 > /dev/null` on the same tree, and
//! zstd -3 and no compression (the walk, reads and hashing alone) for
//! reference. Prints times; asserts nothing. Build it with
//! optimizations, or it measures the debug build:
//!
//! `cargo run --release --example diff_speed [-- DIR [ROUNDS]]`
//!
//! DIR (default `/dev/shm/builder-diff-speed`) is created and filled if
//! missing, and removed at the end only if this run created it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use builder::layer::{self, DiffOptions};
use builder::oci::Compression;

const DIRS: usize = 100;
const FILES_PER_DIR: usize = 200;
const TOTAL_BYTES: usize = 200 << 20;

/// Text-like content (words from a small vocabulary, pseudo-random), so the
/// compressors work about as hard as on real files.
fn make_tree(root: &Path) -> std::io::Result<()> {
    const WORDS: &[&str] = &[
        "the",
        "layer",
        "overlay",
        "build",
        "image",
        "container",
        "static",
        "binary",
        "config",
        "manifest",
        "digest",
        "sha256",
        "gzip",
        "zstd",
        "parallel",
        "deterministic",
        "upper",
        "whiteout",
        "opaque",
        "hardlink",
        "xattr",
        "capability",
        "0x7f",
        "ELF",
        "lib",
        "usr",
        "share",
        "doc",
        "README",
        "license",
        "version",
        "1.2.3",
        "{",
        "}",
        "(",
        ")",
        ";",
        "\n",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let files = DIRS * FILES_PER_DIR;
    let mean = TOTAL_BYTES / files;
    for d in 0..DIRS {
        let dir = root.join(format!("usr/lib/pkg{d:03}"));
        std::fs::create_dir_all(&dir)?;
        for f in 0..FILES_PER_DIR {
            let len = (next() as usize) % (2 * mean);
            let mut data = Vec::with_capacity(len + 16);
            while data.len() < len {
                let r = next();
                data.extend_from_slice(WORDS[(r as usize) % WORDS.len()].as_bytes());
                data.push(b' ');
                if r % 7 == 0 {
                    data.extend_from_slice(&(r >> 40).to_le_bytes()[..3]);
                }
            }
            data.truncate(len);
            std::fs::write(dir.join(format!("f{f:04}.dat")), &data)?;
        }
    }
    Ok(())
}

fn time_diff(tree: &Path, compression: Compression) -> anyhow::Result<(f64, u64)> {
    let start = Instant::now();
    let d = layer::diff(
        tree,
        &[],
        std::io::sink(),
        &DiffOptions {
            compression,
            threads: 2,
            ..DiffOptions::default()
        },
    )?;
    Ok((start.elapsed().as_secs_f64(), d.size))
}

fn time_pigz(tree: &Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -c -C \"$1\" . | pigz -6 -p 2 > /dev/null")
        .arg("sh")
        .arg(tree)
        .status()?;
    anyhow::ensure!(status.success(), "tar | pigz failed: {status}");
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let tree = PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("/dev/shm/builder-diff-speed"),
    );
    let rounds: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(5);
    let created = !tree.exists();
    if created {
        make_tree(&tree)?;
    }
    let sizes: Vec<u64> = walkdir::WalkDir::new(&tree)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .collect();
    let mb = sizes.iter().sum::<u64>() as f64 / 1e6;
    println!("tree {}: {} files, {mb:.0} MB", tree.display(), sizes.len());
    let (mut ours, mut pigz, mut zstd, mut plain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sizes = (0, 0);
    // Interleaved, so both see the same machine load.
    for _ in 0..rounds {
        let (t, s) = time_diff(&tree, Compression::Gzip)?;
        ours.push(t);
        sizes.0 = s;
        pigz.push(time_pigz(&tree)?);
        let (t, s) = time_diff(&tree, Compression::Zstd)?;
        zstd.push(t);
        sizes.1 = s;
        plain.push(time_diff(&tree, Compression::None)?.0);
        print!(".");
        std::io::stdout().flush()?;
    }
    println!();
    let report = |name: &str, times: &[f64]| {
        let m = median(times.to_vec());
        let all: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "{name:<34} median {m:.2} s ({:.0} MB/s)  runs: {}",
            mb / m,
            all.join(" ")
        );
    };
    report("layer::diff gzip (default), 2 thr", &ours);
    report("tar -c | pigz -6 -p 2", &pigz);
    report("layer::diff zstd -3, 2 threads", &zstd);
    report("layer::diff uncompressed (walk+hash)", &plain);
    println!(
        "compressed: gzip {:.1} MB, zstd {:.1} MB",
        sizes.0 as f64 / 1e6,
        sizes.1 as f64 / 1e6
    );
    if created {
        std::fs::remove_dir_all(&tree)?;
    }
    Ok(())
}
