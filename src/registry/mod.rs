//! OCI distribution-spec client: auth, TLS, manifests, blobs.
