use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::{find_image, registry_client};
use crate::cli::args::{PushArgs, PushCompression};
use crate::oci::Compression;
use crate::push::{PushOptions, push as push_image};
use crate::reference::ImageRef;
use crate::store::Store;

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn push(store: &Store, args: PushArgs) -> Result<ExitCode> {
    let image = find_image(store, &args.image)?;
    let destination = match &args.destination {
        Some(d) => ImageRef::parse(d)?,
        None => ImageRef::parse(&image.name).with_context(|| {
            format!(
                "`{}` is not a pushable name; give a destination (`builder push {} REGISTRY/REPOSITORY:TAG`)",
                image.name, args.image
            )
        })?,
    };
    if let Some(digest) = destination.digest() {
        bail!(
            "cannot push to `{destination}`: a destination names a tag, not a digest (`{digest}` is fixed by the content)"
        );
    }
    let client = registry_client(&args.registry)?;
    let reporter = crate::cli::progress::reporter(args.quiet);
    let options = PushOptions {
        concurrency: args.jobs,
        compression: args.compression.map(|c| match c {
            PushCompression::Gzip => Compression::Gzip,
            PushCompression::Zstd => Compression::Zstd,
        }),
    };
    let started = std::time::Instant::now();
    let pushed = push_image(
        &client,
        store,
        &image,
        &destination,
        &options,
        reporter.as_ref(),
    )?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, format!("{}\n", pushed.manifest.digest))
            .with_context(|| format!("write digest file `{}`", path.display()))?;
    }
    if !args.quiet {
        let mut counts = vec![
            format!("{} uploaded", pushed.uploaded),
            format!("{} mounted", pushed.mounted),
            format!("{} already present", pushed.present),
        ];
        if pushed.recompressed > 0 {
            counts.push(format!("{} recompressed", pushed.recompressed));
        }
        eprintln!(
            "Pushed {} to {} (blobs: {}) in {:.2}s",
            image.name,
            pushed.destination,
            counts.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
    println!("{}", pushed.manifest.digest);
    Ok(ExitCode::SUCCESS)
}
