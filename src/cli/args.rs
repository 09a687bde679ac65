//! What the user typed: clap definitions only, no behaviour.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "builder",
    version,
    about = "Build, pull, store and run OCI container images, with no daemon",
    after_help = "Exit status: 0 success, 1 failure (the error says what failed and why), 2 bad usage. \
                  `check` exits 1 when it finds corruption. `run` exits with the command's status \
                  (see `builder run --help`)."
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
    /// Build an image from a Containerfile (Dockerfile)
    Build(Box<BuildArgs>),
    /// Pull an image from a registry into the store
    Pull(PullArgs),
    /// Push an image from the store to a registry
    Push(PushArgs),
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
    /// Create, fill, inspect and push manifest lists (multi-platform images)
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Write images to an archive: oci-archive, docker-archive (`docker load`), or an OCI layout directory
    Save(SaveArgs),
    /// Import every image of an archive (docker-archive, oci-archive, or an OCI layout directory)
    Load(LoadArgs),
    /// Delete blobs and layers no image references, and temp leftovers
    Prune(PruneArgs),
    /// Verify every blob and unpacked layer in the store
    Check(CheckArgs),
    /// Run a command in a new container from an image
    Run(Box<RunArgs>),
    /// List containers
    Ps(PsArgs),
    /// Remove containers
    Rm(RmArgs),
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
#[command(
    after_help = "Blobs the registry has are skipped; blobs that another repository of the same \
                  registry holds are mounted from it instead of uploaded. Without --compression \
                  the manifest is pushed byte for byte, so the image keeps its digest. The pushed \
                  manifest digest is printed on stdout."
)]
pub struct PushArgs {
    /// Image name or ID in the store
    pub image: String,

    /// Where to push, e.g. registry.example.com/team/app:1.2 [default: the image's own name]
    pub destination: Option<String>,

    /// Also write the pushed manifest digest to FILE
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,

    #[command(flatten)]
    pub recompress: RecompressArgs,

    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,

    /// How many blobs to push at once
    #[arg(long, default_value_t = crate::push::DEFAULT_CONCURRENCY, value_name = "N")]
    pub jobs: usize,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `push` and `manifest push`: re-encoding layers on the way out.
#[derive(Debug, Args)]
pub struct RecompressArgs {
    /// Recompress layers that are compressed otherwise (new layer digests, so new manifest digests)
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub compression: Option<PushCompression>,

    /// Level for the layers --compression re-encodes (gzip 0-9, default 5; zstd 1-22 or negative for faster, default 3)
    #[arg(
        long,
        value_name = "N",
        requires = "compression",
        allow_negative_numbers = true
    )]
    pub compression_level: Option<i32>,
}

/// Layer compression for `push --compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushCompression {
    Gzip,
    Zstd,
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
    /// For a manifest list: the platform whose image to use, os/arch[/variant] [default: this machine's]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `builder manifest …`: manifest lists are OCI image indexes named in the
/// store like images; each lists one image per platform.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Create an empty manifest list; prints its digest
    Create(ManifestCreateArgs),
    /// Add an image to a manifest list, replacing the list's image for the same platform; prints the list's new digest
    Add(ManifestAddArgs),
    /// Print a manifest list (its OCI image index) as JSON
    Inspect(ManifestInspectArgs),
    /// Push every image of a manifest list, then the list itself; prints the list's digest
    Push(ManifestPushArgs),
    /// Remove manifest lists (their images stay; data stays until `prune`)
    Rm(ManifestRmArgs),
}

#[derive(Debug, Args)]
pub struct ManifestCreateArgs {
    /// Name of the new list, e.g. registry.example/app:1.0
    pub list: String,
}

#[derive(Debug, Args)]
pub struct ManifestAddArgs {
    /// The manifest list
    pub list: String,
    /// The image to add (name or ID)
    pub image: String,
    /// The platform to list the image under, os/arch[/variant] [default: the os, architecture and variant of the image's config]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManifestInspectArgs {
    /// The manifest list (name or digest)
    pub list: String,
}

#[derive(Debug, Args)]
pub struct ManifestRmArgs {
    /// Manifest list names
    #[arg(required = true)]
    pub lists: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ManifestPushArgs {
    /// The manifest list
    pub list: String,
    /// Where to push it, e.g. registry.example/app:1.0 [default: the list's name]
    pub destination: Option<String>,
    /// Also write the pushed list's digest to FILE
    #[arg(long, value_name = "FILE")]
    pub digestfile: Option<PathBuf>,
    #[command(flatten)]
    pub recompress: RecompressArgs,
    /// Print only the list's digest
    #[arg(short, long)]
    pub quiet: bool,
    /// How many blobs to upload at once
    #[arg(long, default_value_t = crate::push::DEFAULT_CONCURRENCY, value_name = "N")]
    pub jobs: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
#[command(
    after_help = "An image given by name is saved under that name; one given by ID is saved without a name \
                  (as `docker save` does). The archive is written under a temp name beside FILE and renamed \
                  into place, so a failed save leaves no partial file."
)]
pub struct SaveArgs {
    /// Image names or IDs
    #[arg(required = true)]
    pub images: Vec<String>,

    /// Where to write the archive (a directory for oci-dir); `-` or none: stdout (not a terminal)
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Archive format
    #[arg(long, value_enum, default_value = "oci-archive", value_name = "FORMAT")]
    pub format: ArchiveFormatArg,

    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveFormatArg {
    /// A tar of an OCI image layout (`skopeo copy oci-archive:…`, `podman load`)
    OciArchive,
    /// The `docker save` format (`docker load`, `podman load`); layers uncompressed
    DockerArchive,
    /// An OCI image layout directory (`skopeo copy oci:DIR`, `umoci`)
    OciDir,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The format is detected: docker-archive (manifest.json), oci-archive (a tar of an OCI \
                  layout), an OCI layout directory, or either archive compressed (gzip, zstd, bzip2, xz). \
                  stdout gets each loaded image's names, one per line, or its ID (sha256:…) when the \
                  archive gives it no name; name such an image with `builder tag ID NAME`."
)]
pub struct LoadArgs {
    /// The archive file or layout directory; `-` reads the archive from stdin
    #[arg(short = 'i', long, value_name = "FILE")]
    pub input: PathBuf,

    /// Platform to pick from a multi-platform image: os/arch[/variant] [default: this machine's]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// How many layers to read at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,

    /// Print only the names or IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print what was removed as JSON
    #[arg(long)]
    pub json: bool,
    /// Also drop the build cache (and the layers only it kept)
    #[arg(long)]
    pub all: bool,
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

/// When `run` pulls its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only if the image is not in the store
    Missing,
    /// Pull every time (the registry's image may have changed)
    Always,
    /// Never pull; fail if the image is not in the store
    Never,
}

/// Network modes of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// Only a loopback interface
    None,
    /// The host's network
    Host,
}

#[derive(Debug, Args)]
#[command(
    disable_help_flag = true,
    after_help = "Exit status: the command's own exit status; 128+N when it is killed by signal N \
                  (137 for SIGKILL, also after an out-of-memory kill, which is reported on stderr); \
                  127 when the command is not found in the container; 126 when it cannot be executed; \
                  125 when builder itself fails (image not found, pull failed, bad options, setup error).\n\n\
                  Everything after IMAGE is the command and its arguments, options included."
)]
pub struct RunArgs {
    /// Image name or ID; pulled if missing (see --pull)
    pub image: String,

    /// Command and arguments [default: the image's entrypoint and command]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,

    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,

    /// Name of the container [default: its short ID]
    #[arg(long)]
    pub name: Option<String>,

    /// When to pull the image
    #[arg(long, value_enum, default_value = "missing", value_name = "POLICY")]
    pub pull: PullPolicy,

    /// Set an environment variable (KEY alone takes builder's value)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,

    /// Working directory in the container (created if missing)
    #[arg(short = 'w', long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Override the image's entrypoint ("" clears it)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,

    /// User to run as: name, UID, name:group or UID:GID
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    /// Hostname of the container [default: its short ID]
    #[arg(short = 'h', long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Add a capability to Docker's default set (ALL for all)
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,

    /// Drop a capability from the set (ALL for all)
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,

    /// Security options; supported: no-new-privileges
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,

    /// Same as --security-opt no-new-privileges
    #[arg(long)]
    pub no_new_privileges: bool,

    /// Network: none (only loopback) or host
    #[arg(long, value_enum, default_value = "none", value_name = "MODE")]
    pub network: NetworkMode,

    /// Memory limit, e.g. 64m, 1g (bytes without a suffix)
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Maximum number of processes
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,

    /// CPU limit in CPUs, e.g. 0.5
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,

    #[arg(
        short = 'v',
        long = "volume",
        value_name = "HOST:CONTAINER[:ro]",
        help = "Bind-mount a host directory or file: HOST:CONTAINER[:ro]"
    )]
    pub volumes: Vec<String>,

    /// Mount an empty tmpfs at PATH
    #[arg(long, value_name = "PATH")]
    pub tmpfs: Vec<String>,

    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,

    /// Run a minimal init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    pub init: bool,

    /// Keep stdin open and connect it to the container
    #[arg(short = 'i', long)]
    pub interactive: bool,

    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,

    /// Run with this OCI runtime binary (e.g. runc) instead of builder's own, given the same spec
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,

    /// Platform to pull: os/arch[/variant] [default: this machine's]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Print only container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Print full IDs and commands
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Container names or IDs (any unique prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Kill a running container first
    #[arg(short, long)]
    pub force: bool,
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

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 built; 1 the build failed (the error names the \
                  Containerfile line, and for a RUN its exit code and last lines of output); \
                  130 interrupted; 2 bad usage. stdout gets the image ID only."
)]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD read from
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,

    /// The Containerfile [default: CONTEXT/Containerfile, else CONTEXT/Dockerfile]; `-` reads stdin
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Name the image (repeatable)
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,

    /// Set a build argument (KEY alone takes builder's environment value)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// The stage to build [default: the last]
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Do not use cached steps (results are still cached)
    #[arg(long)]
    pub no_cache: bool,

    /// Do not use cached steps of this stage (name or index; repeatable)
    #[arg(long, value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,

    /// For each step that misses the cache, say what changed since the last build
    #[arg(long)]
    pub explain_cache: bool,

    /// When to pull base images
    #[arg(long, value_enum, default_value = "missing", value_name = "POLICY")]
    pub pull: PullPolicy,

    /// Platform of the image and of its base images: os/arch[/variant]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Network of RUN steps: host (default, so package managers work) or none
    #[arg(long, value_enum, default_value = "host", value_name = "MODE")]
    pub network: NetworkMode,

    /// Memory limit of each RUN step, e.g. 512m
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Process limit of each RUN step
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<i64>,

    /// CPU limit of each RUN step, in CPUs
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,

    /// Manifest format
    #[arg(long, value_enum, default_value = "oci", value_name = "FORMAT")]
    pub format: ImageFormatArg,

    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip", value_name = "ALGORITHM")]
    pub compression: CompressionArg,

    /// Compression level: gzip 0-9 (libdeflate's levels), zstd 1-22 or negative [default: gzip 5, zstd 3]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub compression_level: Option<i32>,

    /// Reproducible build: clamp file times to EPOCH and set every `created` to it [default: $SOURCE_DATE_EPOCH]
    #[arg(long, value_name = "EPOCH")]
    pub timestamp: Option<i64>,

    /// Write the image ID to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Push every -t name to its registry after the build
    #[arg(long)]
    pub push: bool,

    /// After the build, push its cache (every layer step's record and layer) to `REGISTRY/REPOSITORY[:TAG]` (tag default `buildcache`)
    #[arg(long, value_name = "REF")]
    pub cache_to: Option<String>,

    /// Take cache hits from a cache pushed with --cache-to; layers are downloaded only when needed
    #[arg(long, value_name = "REF")]
    pub cache_from: Option<String>,

    /// Also export the image: type=registry (= --push), type=oci,dest=FILE|DIR/ (OCI archive, or an OCI layout for a path ending in / or an existing directory), type=docker,dest=FILE (docker-archive)
    #[arg(short = 'o', long = "output", value_name = "type=TYPE[,dest=PATH]")]
    pub outputs: Vec<String>,

    /// Print only the image ID
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormatArg {
    Oci,
    Docker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
    None,
}
