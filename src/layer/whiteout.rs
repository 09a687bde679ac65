//! Whiteouts: how a layer says "this path of a lower layer is gone", in the
//! two formats builder deals with, and the conversion between them.
//!
//! - OCI layer tars ([image-spec layer.md, "Whiteouts"][oci]): an empty file
//!   `.wh.NAME` deletes `NAME` of the lower layers; `.wh..wh..opq` in a
//!   directory hides every lower-layer entry of that directory ("opaque").
//!   Other `.wh..wh.*` names are AUFS bookkeeping (`.wh..wh.plnk`,
//!   `.wh..wh.aufs`) that old Docker layers may carry; they mean nothing to
//!   overlay and are dropped.
//! - overlayfs directories ([overlayfs.rst, "whiteouts and opaque
//!   directories"][ovl]): a character device 0/0 named `NAME`; the xattr
//!   `trusted.overlay.opaque=y` on a directory (`user.overlay.opaque=y` when
//!   the overlay is mounted with `userxattr`, as rootless mounts are).
//!
//! This module only knows names and values; creating the nodes is the job of
//! the unpacker (OCI → overlay) and, later, the differ (overlay → OCI).
//!
//! [oci]: https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts
//! [ovl]: https://docs.kernel.org/filesystems/overlayfs.html#whiteouts-and-opaque-directories

/// Prefix of an OCI whiteout file name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of whiteout-namespace metadata (AUFS); never a path of the image.
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// The OCI opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Device number of an overlay whiteout (a character device).
pub const OVERLAY_WHITEOUT_DEV: (u32, u32) = (0, 0);
/// Value of the overlay opaque xattr.
pub const OVERLAY_OPAQUE_VALUE: &[u8] = b"y";

/// Which xattr namespace the overlay mount reads its own attributes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OverlayXattr {
    /// `trusted.overlay.*`: the kernel default; needs CAP_SYS_ADMIN.
    #[default]
    Trusted,
    /// `user.overlay.*`: overlays mounted with `userxattr` (rootless).
    User,
}

impl OverlayXattr {
    /// The xattr name that marks a directory opaque.
    pub fn opaque_name(self) -> &'static [u8] {
        match self {
            Self::Trusted => b"trusted.overlay.opaque",
            Self::User => b"user.overlay.opaque",
        }
    }
}

/// Whether an xattr name belongs to overlayfs itself (either namespace).
/// Such xattrs are never taken from a tar: they would let a layer forge
/// whiteouts, opaque dirs or redirects that its tar entries do not say.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Whether a character device with this number is an overlay whiteout.
pub fn is_overlay_whiteout_dev(major: u32, minor: u32) -> bool {
    (major, minor) == OVERLAY_WHITEOUT_DEV
}

/// What the last component of an OCI tar entry name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OciName<'a> {
    /// An ordinary name.
    Plain,
    /// `.wh.NAME`: delete `NAME` (the slice).
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the containing directory is opaque.
    Opaque,
    /// Other `.wh..wh.*` metadata, to be dropped.
    Meta,
    /// `.wh.`, `.wh..` or `.wh...`: a whiteout of nothing, of the directory
    /// itself or of its parent. Never valid.
    Invalid,
}

/// Classifies one path component of an OCI layer entry.
pub fn classify(component: &[u8]) -> OciName<'_> {
    if component == OPAQUE_MARKER {
        OciName::Opaque
    } else if component.starts_with(META_PREFIX) {
        OciName::Meta
    } else if let Some(name) = component.strip_prefix(WHITEOUT_PREFIX) {
        match name {
            b"" | b"." | b".." => OciName::Invalid,
            _ => OciName::Whiteout(name),
        }
    } else {
        OciName::Plain
    }
}

/// The OCI whiteout file name for an overlay whiteout named `name`
/// (overlay → OCI, for the differ).
pub fn oci_whiteout_name(name: &[u8]) -> Vec<u8> {
    [WHITEOUT_PREFIX, name].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"etc"), OciName::Plain);
        assert_eq!(classify(b".whatever"), OciName::Plain);
        assert_eq!(classify(b".wh.passwd"), OciName::Whiteout(b"passwd"));
        assert_eq!(classify(b".wh..hidden"), OciName::Whiteout(b".hidden"));
        assert_eq!(classify(b".wh..wh..opq"), OciName::Opaque);
        assert_eq!(classify(b".wh..wh.plnk"), OciName::Meta);
        assert_eq!(classify(b".wh."), OciName::Invalid);
        assert_eq!(classify(b".wh.."), OciName::Invalid);
        assert_eq!(classify(b".wh..."), OciName::Invalid);
    }

    #[test]
    fn names_round_trip_both_directions() {
        for name in [&b"a"[..], b".hidden", b"with space", b"\xff\xfe"] {
            let oci = oci_whiteout_name(name);
            assert_eq!(classify(&oci), OciName::Whiteout(name));
        }
    }

    #[test]
    fn overlay_xattrs_are_recognised_in_both_namespaces() {
        assert!(is_overlay_xattr(b"trusted.overlay.opaque"));
        assert!(is_overlay_xattr(b"user.overlay.redirect"));
        assert!(!is_overlay_xattr(b"security.capability"));
        assert!(!is_overlay_xattr(b"user.overlayish"));
        assert_eq!(
            OverlayXattr::default().opaque_name(),
            b"trusted.overlay.opaque"
        );
        assert_eq!(OverlayXattr::User.opaque_name(), b"user.overlay.opaque");
    }
}
