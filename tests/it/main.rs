//! The one integration-test binary. Each module is a feature area.

mod support; // registries, fixtures, the builder runner (shared by all areas)

mod add; // ADD of http(s) URLs against a loopback HTTP server: names, modes, mtimes, checksums, errors
mod archive; // `builder save` / `load` with podman, skopeo, umoci as peers: formats, round trips, tampering
mod build; // `builder build` end to end: cache, reproducibility, failures leaving nothing, layer content, formats, ONBUILD, prune, multi-stage
mod build_accept; // `builder build` images pass oci-image-tool, skopeo copy, umoci unpack = mount, and run
mod build_buildah; // `builder build` vs `buildah bud` on every Containerfile example: rootfs and config
mod check; // `builder check` detects every kind of store corruption it claims to
mod containerfile; // `builder containerfile parse`: JSON dump = golden files, errors, stdin, default names
mod crafted; // hand-edited images: repeated layers, one blob with two diffIDs
mod diff; // layer::diff on a real overlay upper: exact entries, applies back to the merged view
mod fault_proxy; // loopback server injecting what a real registry won't: token challenges, tampering, 5xx, cuts
mod images; // tag, rmi, inspect by ID, prune keeping what is referenced
mod manifest; // `builder manifest`: lists of the multiarch fixture's platforms, prune/check/mount through a list, errors
mod mount; // overlay mounts (new API and legacy), guards
mod progress; // what `builder pull` prints: bars on a terminal, lines in CI, -q
mod pull; // `builder pull` end to end: rootfs vs umoci, TLS/auth, platforms, kill -9, concurrency
mod pull_faults; // `builder pull` through the fault proxy: Bearer challenge, tampered blobs
mod push; // `builder push` end to end: peers read it, digests kept, HEAD-skips, mounts, chunks, cuts, Bearer, TLS
mod registry; // the registry client against docker-registry and the fault proxy
mod run; // `builder run` / `ps` / `rm` end to end: exit codes, signals, pty, users, teardown after kill -9, runc parity
mod runtime; // the container runtime on a busybox overlay rootfs: isolation, limits, users, exit codes, runc parity
mod store; // the store after real pulls vs store-layout.md
mod tidy; // architecture rules on the source: layering, unsafe only in sys, only cli prints, module docs
