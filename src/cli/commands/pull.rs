use std::process::ExitCode;

use anyhow::Result;

use super::registry_client;
use crate::cli::args::PullArgs;
use crate::oci::Platform;
use crate::pull::{PullOptions, pull as pull_image};
use crate::reference::ImageRef;
use crate::store::Store;

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn pull(store: &Store, args: PullArgs) -> Result<ExitCode> {
    let reference = ImageRef::parse(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let client = registry_client(&args.registry)?;
    let reporter = crate::cli::progress::reporter(args.quiet);
    let options = PullOptions {
        platform,
        concurrency: args.jobs,
    };
    let started = std::time::Instant::now();
    let pulled = pull_image(&client, store, &reference, &options, reporter.as_ref())?;
    if !args.quiet {
        eprintln!(
            "Pulled {} ({} layers downloaded, {} already present) in {:.2}s",
            pulled.name,
            pulled.layers_downloaded,
            pulled.layers_present,
            started.elapsed().as_secs_f64()
        );
        eprintln!("Image ID: {}", pulled.config_digest);
    }
    println!("{}", pulled.manifest.digest);
    Ok(ExitCode::SUCCESS)
}
