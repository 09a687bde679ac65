//! Image references (`busybox`, `host:5000/a/b:tag@sha256:…`): parsing and
//! normalisation per the docker/distribution grammar.
