//! `save` and `load`: images to and from archives (`crate::archive`).

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::find_image;
use crate::archive::{self, Format, LoadOptions, SaveImage, SaveTo};
use crate::cli::args::{ArchiveFormatArg, LoadArgs, SaveArgs};
use crate::oci::Platform;
use crate::reference::ImageRef;
use crate::store::Store;

#[allow(clippy::print_stderr)]
pub fn save(store: &Store, args: SaveArgs) -> Result<ExitCode> {
    let mut images = Vec::new();
    for input in &args.images {
        // By name: saved under that name. By ID: saved without one.
        let by_name = ImageRef::parse(input)
            .ok()
            .and_then(|r| store.image(&r.to_string()).ok().flatten());
        let listed = match &by_name {
            Some(record) => record.is_list(),
            None => find_image(store, input)?.is_list(),
        };
        if listed {
            anyhow::bail!(
                "`{input}` is a manifest list; `save` writes images: save the list's images by name or ID (`builder manifest inspect {input}` lists them), or push the list with `builder manifest push`"
            );
        }
        let image = match by_name {
            Some(record) if !record.is_unnamed() => SaveImage {
                name: Some(record.name),
                manifest: record.manifest,
            },
            _ => SaveImage {
                name: None,
                manifest: find_image(store, input)?.manifest,
            },
        };
        images.push(image);
    }
    let format = match args.format {
        ArchiveFormatArg::OciArchive => Format::OciArchive,
        ArchiveFormatArg::DockerArchive => Format::DockerArchive,
        ArchiveFormatArg::OciDir => Format::OciDir,
    };
    let to = match args.output.as_deref() {
        Some(path) if path != Path::new("-") => SaveTo::Path(path),
        _ if format == Format::OciDir => {
            anyhow::bail!("--format oci-dir writes a directory; give it with `-o DIR`")
        }
        _ if std::io::stdout().is_terminal() => anyhow::bail!(
            "refusing to write an archive to a terminal; give `-o FILE` or redirect stdout (`builder save IMAGE > image.tar`)"
        ),
        _ => SaveTo::Stdout,
    };
    let shown = match to {
        SaveTo::Path(path) => path.display().to_string(),
        SaveTo::Stdout => "stdout".to_string(),
    };
    let started = std::time::Instant::now();
    let reporter = crate::cli::progress::reporter(args.quiet);
    let saved = archive::save(store, &images, format, to, reporter.as_ref())
        .with_context(|| format!("save to `{shown}`"))?;
    if !args.quiet {
        eprintln!(
            "Saved {} image{} ({} blobs) to {shown} as {format} in {:.2}s",
            saved.images,
            if saved.images == 1 { "" } else { "s" },
            saved.blobs,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn load(store: &Store, args: LoadArgs) -> Result<ExitCode> {
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let options = LoadOptions {
        platform,
        concurrency: args.jobs,
    };
    let started = std::time::Instant::now();
    let reporter = crate::cli::progress::reporter(args.quiet);
    let loaded = archive::load(store, &args.input, &options, reporter.as_ref())
        .with_context(|| format!("load `{}`", args.input.display()))?;
    if !args.quiet {
        for (name, why) in &loaded.ignored_names {
            eprintln!("warning: ignored the name `{name}` in the archive: {why}");
        }
    }
    for image in &loaded.images {
        if image.names.is_empty() {
            if !args.quiet {
                match &image.kept_as {
                    Some(name) if !name.starts_with("sha256:") => {
                        eprintln!("Loaded image {} (already named {name})", image.id)
                    }
                    _ => eprintln!(
                        "Loaded image {} without a name; name it with `builder tag {} NAME`",
                        image.id,
                        image.id.short()
                    ),
                }
            }
            println!("{}", image.id);
        } else {
            for name in &image.names {
                if !args.quiet {
                    eprintln!("Loaded image {name} (ID {})", image.id.short());
                }
                println!("{name}");
            }
        }
    }
    if !args.quiet {
        eprintln!(
            "Loaded {} image{} from {} ({}; {} layers stored, {} already present) in {:.2}s",
            loaded.images.len(),
            if loaded.images.len() == 1 { "" } else { "s" },
            args.input.display(),
            loaded.format,
            loaded.layers_stored,
            loaded.layers_present,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
