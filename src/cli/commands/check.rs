use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::CheckArgs;
use crate::cli::progress::human_bytes;
use crate::store::Store;

/// Exits 1 when the store has problems, so scripts can `builder check || …`.
#[allow(clippy::print_stdout)]
pub fn check(store: &Store, args: CheckArgs) -> Result<ExitCode> {
    let report = crate::check::check(store)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} blobs ({}), {} layers, {} images",
            report.blobs_checked,
            human_bytes(report.blob_bytes_checked),
            report.layers_checked,
            report.images_checked
        );
        for p in &report.problems {
            println!("{}: {}", p.object, p.problem);
        }
        if report.problems.is_empty() {
            println!("no problems found");
        } else {
            println!("{} problems found", report.problems.len());
        }
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
