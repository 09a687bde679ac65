//! `pull`: reference → registry → verified blobs and unpacked layers in the store.
