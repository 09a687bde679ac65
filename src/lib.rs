//! builder: a daemonless OCI image builder and layered storage manager.
//!
//! Modules are listed by layer; a module may only use modules of a lower
//! layer (see ARCHITECTURE.md, enforced by `tests/it/tidy.rs`).

// Layer 0: leaves; `oci` is the shared vocabulary the others may use.
pub mod containerfile; // Containerfile text -> typed stages; word expansion, ARG/ENV scoping (pure)
pub mod oci; // digests, descriptors, media types, verifying readers
pub mod progress; // `Reporter` trait: libraries emit events, only `cli` draws
pub mod reference; // image-name grammar and normalisation
pub mod sys; // the only `unsafe`: thin syscall wrappers

// Layer 1: one concern each.
pub mod layer; // tar stream <-> directory in overlay format, whiteouts, compression
pub mod mount; // overlay option values and mount guards
pub mod registry; // OCI distribution client: auth, TLS, manifests, blobs
pub mod runtime; // namespaces, cgroups, pivot_root, exec, wait: one process in a prepared rootfs
pub mod store; // content-addressed blobs (an OCI layout), image records, unpacked layers, locks

// Layer 2: moving and assembling images.
pub mod archive; // images <-> docker-archive / oci-archive / OCI layout directory (save, load)
pub mod check; // store verification: blobs re-hashed, layer dirs against inventories
pub mod container; // image -> overlay rootfs in the store -> one process -> teardown (`run`, RUN steps)
pub mod ingest; // verified layer intake shared by pull and archive: hash, unpack, commit
pub mod pull; // reference -> registry -> store
pub mod push; // store -> registry: HEAD, cross-repo mount or upload per blob, then the manifest
pub mod rootfs; // an image's layers as one overlay mount

// Layer 3: building images.
pub mod build; // Containerfile -> image: context, COPY/ADD, cache keys, config

// Layer 4: the only module that prints.
pub mod cli;
