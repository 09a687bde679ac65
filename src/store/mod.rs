//! The on-disk store: an OCI image layout of blobs, image records, unpacked
//! layer directories, locks and garbage collection. See store-layout.md.
