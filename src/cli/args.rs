//! What the user typed: clap definitions only, no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "builder",
    version,
    about = "Build, pull, store and run OCI container images, with no daemon",
    after_help = "Exit status: 0 success, 1 failure (the error says what failed and why), 2 bad usage. \
                  `check` exits 1 when it finds corruption."
)]
pub struct Cli {
    /// Store directory [default: /var/lib/builder as root, $XDG_DATA_HOME/builder otherwise]
    #[arg(long, global = true, env = "BUILDER_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log level for diagnostics on stderr: error, warn, info, debug, trace
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image from a registry into the store
    Pull(PullArgs),
    /// List images in the store
    Images(ImagesArgs),
    /// Show an image's manifest, config and identity as JSON
    Inspect(InspectArgs),
    /// Mount an image's root filesystem read-only and print the path
    Mount(ImageArg),
    /// Unmount an image mounted with `builder mount`
    Umount(ImageArg),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove image names (data stays until `prune`)
    Rmi(RmiArgs),
    /// Delete blobs and layers no image references, and temp leftovers
    Prune(PruneArgs),
    /// Verify every blob and unpacked layer in the store
    Check(CheckArgs),
    /// Store credentials for a registry
    Login(LoginArgs),
    /// Remove stored credentials for a registry
    Logout(LogoutArgs),
    /// Inspect Containerfiles without building them
    #[command(subcommand)]
    Containerfile(ContainerfileCommand),
}

/// How to reach registries; shared by every command that talks to one.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Require HTTPS and verify certificates (default true; localhost may fall back to HTTP)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: Option<bool>,

    /// Directory of CA certificates (*.crt) for the registry, instead of /etc/containers/certs.d/HOST
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// Credentials for the registry as USER:PASSWORD (or USER, to be asked for the password), instead of stored ones
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub creds: Option<String>,

    /// Credentials file (containers auth.json format)
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. busybox, quay.io/org/app:1.2, host:5000/app@sha256:…
    pub reference: String,

    /// Platform to pick from a multi-platform image: os/arch[/variant] [default: this machine's]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,

    /// How many layers to download at once
    #[arg(long, default_value_t = crate::pull::DEFAULT_CONCURRENCY, value_name = "N")]
    pub jobs: usize,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Print only image IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name or ID
    pub image: String,
}

#[derive(Debug, Args)]
pub struct ImageArg {
    /// Image name or ID
    pub image: String,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image name or ID
    pub source: String,
    /// New names
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names or IDs
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print what was removed as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, with :port when not 443
    pub registry: String,
    /// User name
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: this one shows in `ps`)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host, with :port when not 443
    pub registry: String,
    /// Credentials file (containers auth.json format)
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ContainerfileCommand {
    /// Parse a Containerfile and print its instructions as written (before
    /// variable expansion); exits 1 with a located message if it is invalid
    Parse(ContainerfileParseArgs),
}

#[derive(Debug, Args)]
pub struct ContainerfileParseArgs {
    /// The Containerfile; `-` reads stdin [default: ./Containerfile, else ./Dockerfile]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Print JSON: {"directives": {NAME: VALUE}, "instructions": [{"line",
    /// "end_line", "instruction", "flags", "args", "exec_form", "heredocs",
    /// and "pairs" for ENV/LABEL/ARG, "trigger" for ONBUILD}]}
    #[arg(long)]
    pub json: bool,
}
