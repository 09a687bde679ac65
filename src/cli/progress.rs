//! Drawing progress events: bars on a terminal, plain lines otherwise,
//! nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::oci::Digest;
use crate::progress::{BlobOutcome, NoProgress, Reporter};

/// Picks the reporter for this invocation.
pub fn reporter(quiet: bool) -> Box<dyn Reporter> {
    if quiet {
        return Box::new(NoProgress);
    }
    let bars_allowed = std::io::stderr().is_terminal()
        && std::env::var_os("BUILDER_NO_PROGRESS").is_none()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var_os("CI").is_none();
    if bars_allowed {
        Box::new(Bars::new())
    } else {
        Box::new(Lines)
    }
}

/// One line per event on stderr: for CI logs.
struct Lines;

#[allow(clippy::print_stderr)]
impl Reporter for Lines {
    fn blob_start(&self, digest: &Digest, size: u64, what: &str) {
        eprintln!("Copying {what} {} ({})", digest.short(), human_bytes(size));
    }
    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        match outcome {
            BlobOutcome::Downloaded => eprintln!("Copied {} done", digest.short()),
            BlobOutcome::AlreadyExists => eprintln!("Layer {} already exists", digest.short()),
            BlobOutcome::Uploaded => eprintln!("Pushed {} done", digest.short()),
            BlobOutcome::Mounted => {
                eprintln!("Mounted {} from another repository", digest.short())
            }
        }
    }
    fn status(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// indicatif bars, one per blob.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Reporter for Bars {
    fn blob_start(&self, digest: &Digest, size: u64, what: &str) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{what} {}", digest.short()));
        self.bars
            .lock()
            .expect("not poisoned")
            .insert(digest.clone(), bar);
    }
    fn blob_progress(&self, digest: &Digest, bytes: u64) {
        if let Some(bar) = self.bars.lock().expect("not poisoned").get(digest) {
            bar.inc(bytes);
        }
    }
    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        let bar = self.bars.lock().expect("not poisoned").remove(digest);
        match (bar, outcome) {
            (Some(bar), BlobOutcome::Mounted) => bar.finish_with_message("mounted"),
            (Some(bar), _) => bar.finish_with_message("done"),
            (None, BlobOutcome::AlreadyExists) => {
                let _ = self
                    .multi
                    .println(format!("layer {} already exists", digest.short()));
            }
            (None, BlobOutcome::Mounted) => {
                let _ = self
                    .multi
                    .println(format!("layer {} mounted", digest.short()));
            }
            (None, BlobOutcome::Downloaded | BlobOutcome::Uploaded) => {}
        }
    }
    fn status(&self, message: &str) {
        let _ = self.multi.println(message);
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
