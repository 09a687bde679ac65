//! The overlay value: parameters for the new mount API, the legacy option
//! string with its one-page limit, and performing the mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use super::{MountError, MountFlags, MountGuard};
use crate::sys;

/// An overlay filesystem as a value. `lowers` are ordered topmost first (the
/// order of overlayfs' `lowerdir=`); the bottom layer of an image is last.
/// `upper` and `work` go together: without them the overlay is read-only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overlay {
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

/// One `fsconfig` parameter of an overlay, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayParam {
    /// `lowerdir+`: appends one lower below those given before.
    LowerAppend(PathBuf),
    Upper(PathBuf),
    Work(PathBuf),
    /// A feature switch the mount should have; skipped if the kernel does not
    /// know the key.
    Optional(&'static str, &'static str),
}

/// Which kernel interface mounts the overlay. `Auto` uses the new API when
/// the kernel supports `lowerdir+` (probed once per process), otherwise the
/// legacy option string; the others force one path (tests use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountApi {
    #[default]
    Auto,
    New,
    Legacy,
}

/// Features that write upper-dir entries an OCI layer cannot represent.
const DIFFABLE: [(&str, &str); 3] = [
    ("redirect_dir", "off"),
    ("index", "off"),
    ("metacopy", "off"),
];

/// `fsconfig` copies at most 256 bytes of a string value, NUL included.
const MAX_PARAM_LEN: usize = 255;

/// `mount(2)` copies one page of options, NUL included.
const MAX_LEGACY_DATA: usize = 4095;

/// 0 = unknown, 1 = `lowerdir+` works, 2 = it does not.
static LOWERDIR_APPEND: AtomicU8 = AtomicU8::new(0);

/// The legacy `mount(2)` data string and how its lowers are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LegacyData {
    /// Absolute lower paths fit in a page.
    Absolute(String),
    /// Lowers named `0`, `1`, … relative to a directory of symlinks.
    Short(String),
}

impl Overlay {
    fn check(&self, target: &Path) -> Result<(), MountError> {
        if self.lowers.is_empty() {
            return Err(MountError::NoLowers {
                target: target.to_owned(),
            });
        }
        if self.upper.is_some() != self.work.is_some() {
            return Err(MountError::UpperWithoutWork {
                target: target.to_owned(),
            });
        }
        Ok(())
    }

    /// True when this overlay is mounted as a read-only bind of its only lower.
    pub fn is_single_lower_bind(&self) -> bool {
        self.lowers.len() == 1 && self.upper.is_none()
    }

    /// The `fsconfig` parameters, in order: lowers topmost first, then upper
    /// and work, then the diffability switches.
    pub fn params(&self) -> Vec<OverlayParam> {
        let mut params: Vec<OverlayParam> = self
            .lowers
            .iter()
            .cloned()
            .map(OverlayParam::LowerAppend)
            .collect();
        if let (Some(upper), Some(work)) = (&self.upper, &self.work) {
            params.push(OverlayParam::Upper(upper.clone()));
            params.push(OverlayParam::Work(work.clone()));
        }
        params.extend(DIFFABLE.iter().map(|&(k, v)| OverlayParam::Optional(k, v)));
        params
    }

    /// The first path too long for one `fsconfig` value, if any.
    fn too_long_for_fsconfig(&self) -> Option<&Path> {
        self.lowers
            .iter()
            .chain(self.upper.iter())
            .chain(self.work.iter())
            .map(PathBuf::as_path)
            .find(|p| p.as_os_str().len() > MAX_PARAM_LEN)
    }

    /// The legacy option string: absolute lowers when they fit in a page,
    /// else short names `0:1:…` to be resolved from a symlink directory.
    pub(crate) fn legacy_data(&self, target: &Path) -> Result<LegacyData, MountError> {
        self.check(target)?;
        for p in self.lowers.iter().chain(&self.upper).chain(&self.work) {
            let bytes = p.as_os_str().as_bytes();
            if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
                return Err(MountError::UnsafePath { path: p.clone() });
            }
        }
        let tail = self.legacy_tail();
        let absolute: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let data = format!("lowerdir={}{tail}", absolute.join(":"));
        if data.len() <= MAX_LEGACY_DATA {
            return Ok(LegacyData::Absolute(data));
        }
        let short: Vec<String> = (0..self.lowers.len()).map(|i| i.to_string()).collect();
        let data = format!("lowerdir={}{tail}", short.join(":"));
        if data.len() <= MAX_LEGACY_DATA {
            return Ok(LegacyData::Short(data));
        }
        Err(MountError::OptionsTooLong {
            target: target.to_owned(),
            len: data.len(),
        })
    }

    fn legacy_tail(&self) -> String {
        let mut tail = String::new();
        if let (Some(upper), Some(work)) = (&self.upper, &self.work) {
            tail.push_str(&format!(
                ",upperdir={},workdir={}",
                upper.display(),
                work.display()
            ));
        }
        for (k, v) in DIFFABLE {
            tail.push_str(&format!(",{k}={v}"));
        }
        tail
    }

    /// Mounts the overlay on `target` and returns the guard that unmounts it.
    pub fn mount(&self, target: &Path, flags: MountFlags) -> Result<MountGuard, MountError> {
        self.mount_with(target, flags, MountApi::Auto)
    }

    /// [`Overlay::mount`] through a chosen kernel interface.
    pub fn mount_with(
        &self,
        target: &Path,
        flags: MountFlags,
        api: MountApi,
    ) -> Result<MountGuard, MountError> {
        self.check(target)?;
        let target = std::path::absolute(target).unwrap_or_else(|_| target.to_owned());
        if self.is_single_lower_bind() {
            bind_read_only(&self.lowers[0], &target, flags)?;
            return Ok(MountGuard::new(target));
        }
        let use_new = match api {
            MountApi::New => true,
            MountApi::Legacy => false,
            MountApi::Auto => {
                LOWERDIR_APPEND.load(Ordering::Relaxed) != 2
                    && self.too_long_for_fsconfig().is_none()
            }
        };
        if use_new {
            match self.mount_new_api(&target, flags) {
                Ok(()) => {
                    LOWERDIR_APPEND.store(1, Ordering::Relaxed);
                    return Ok(MountGuard::new(target));
                }
                Err(NewApiError::Unsupported) if api == MountApi::Auto => {
                    tracing::debug!("kernel lacks overlay `lowerdir+`; using mount(2) options");
                    LOWERDIR_APPEND.store(2, Ordering::Relaxed);
                }
                Err(NewApiError::Unsupported) => {
                    return Err(MountError::Overlay {
                        target,
                        source: std::io::Error::new(
                            std::io::ErrorKind::Unsupported,
                            "the kernel does not support overlay `lowerdir+` (Linux 6.8 or later)",
                        ),
                    });
                }
                Err(NewApiError::Failed(source)) => {
                    return Err(MountError::Overlay { target, source });
                }
            }
        }
        self.mount_legacy(&target, flags)?;
        Ok(MountGuard::new(target))
    }

    fn mount_new_api(&self, target: &Path, flags: MountFlags) -> Result<(), NewApiError> {
        let fs = sys::mount::fs_open("overlay").map_err(NewApiError::Failed)?;
        for (i, param) in self.params().iter().enumerate() {
            let r = match param {
                OverlayParam::LowerAppend(p) => fs.set_string("lowerdir+", p),
                OverlayParam::Upper(p) => fs.set_string("upperdir", p),
                OverlayParam::Work(p) => fs.set_string("workdir", p),
                OverlayParam::Optional(k, v) => {
                    if let Err(e) = fs.set_string(k, Path::new(v)) {
                        tracing::debug!("overlay option {k}={v} not accepted: {e}");
                    }
                    Ok(())
                }
            };
            if let Err(e) = r {
                let unknown = sys::error::errno(&e) == Some(rustix::io::Errno::INVAL);
                if i == 0 && unknown {
                    return Err(NewApiError::Unsupported);
                }
                return Err(NewApiError::Failed(e));
            }
        }
        fs.create().map_err(NewApiError::Failed)?;
        let mnt = fs.mount(flags.attrs()).map_err(NewApiError::Failed)?;
        sys::mount::move_mount_to(std::os::fd::AsFd::as_fd(&mnt), target)
            .map_err(NewApiError::Failed)
    }

    fn mount_legacy(&self, target: &Path, flags: MountFlags) -> Result<(), MountError> {
        let overlay_err = |source| MountError::Overlay {
            target: target.to_owned(),
            source,
        };
        match self.legacy_data(target)? {
            LegacyData::Absolute(data) => {
                let data = CString::new(data).expect("paths carry no NUL");
                sys::mount::mount("overlay", target, "overlay", flags.legacy(), Some(&data))
                    .map_err(overlay_err)
            }
            LegacyData::Short(data) => {
                let short_err = |source| MountError::ShortPaths {
                    target: target.to_owned(),
                    source,
                };
                let dir = tempfile::Builder::new()
                    .prefix(".builder-lowers-")
                    .tempdir()
                    .map_err(short_err)?;
                for (i, lower) in self.lowers.iter().enumerate() {
                    std::os::unix::fs::symlink(lower, dir.path().join(i.to_string()))
                        .map_err(short_err)?;
                }
                let data = CString::new(data).expect("paths carry no NUL");
                sys::mount::mount_from_dir(dir.path(), target, "overlay", flags.legacy(), &data)
                    .map_err(overlay_err)
            }
        }
    }
}

enum NewApiError {
    Unsupported,
    Failed(std::io::Error),
}

/// A read-only bind mount of `source`, read-only before it becomes visible.
fn bind_read_only(source: &Path, target: &Path, flags: MountFlags) -> Result<(), MountError> {
    let err = |source_err| MountError::Bind {
        source_path: source.to_owned(),
        target: target.to_owned(),
        source: source_err,
    };
    let tree = sys::mount::clone_tree(source, false).map_err(err)?;
    let flags = MountFlags {
        read_only: true,
        ..flags
    };
    sys::mount::set_mount_attrs(std::os::fd::AsFd::as_fd(&tree), flags.attrs(), source)
        .map_err(err)?;
    sys::mount::move_mount_to(std::os::fd::AsFd::as_fd(&tree), target).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("/var/lib/builder/layers/{:064x}/diff", i)))
            .collect()
    }

    #[test]
    fn params_keep_lower_order_then_upper_work_then_switches() {
        let o = Overlay {
            lowers: vec!["/top".into(), "/bottom".into()],
            upper: Some("/u".into()),
            work: Some("/w".into()),
        };
        assert_eq!(
            o.params(),
            vec![
                OverlayParam::LowerAppend("/top".into()),
                OverlayParam::LowerAppend("/bottom".into()),
                OverlayParam::Upper("/u".into()),
                OverlayParam::Work("/w".into()),
                OverlayParam::Optional("redirect_dir", "off"),
                OverlayParam::Optional("index", "off"),
                OverlayParam::Optional("metacopy", "off"),
            ]
        );
    }

    #[test]
    fn read_only_overlay_has_no_upper_params() {
        let o = Overlay {
            lowers: layers(2),
            ..Default::default()
        };
        assert!(
            !o.params()
                .iter()
                .any(|p| matches!(p, OverlayParam::Upper(_) | OverlayParam::Work(_)))
        );
        assert!(!o.is_single_lower_bind());
        let one = Overlay {
            lowers: layers(1),
            ..Default::default()
        };
        assert!(one.is_single_lower_bind());
    }

    #[test]
    fn legacy_data_uses_absolute_paths_when_they_fit() {
        let o = Overlay {
            lowers: vec!["/a".into(), "/b".into()],
            upper: Some("/u".into()),
            work: Some("/w".into()),
        };
        assert_eq!(
            o.legacy_data(Path::new("/t")).unwrap(),
            LegacyData::Absolute(
                "lowerdir=/a:/b,upperdir=/u,workdir=/w,redirect_dir=off,index=off,metacopy=off"
                    .into()
            )
        );
    }

    #[test]
    fn legacy_data_switches_to_short_names_past_one_page() {
        // A store path is 93 bytes: 44 of them exceed the 4095 bytes of a page.
        let o = Overlay {
            lowers: layers(250),
            upper: Some("/u".into()),
            work: Some("/w".into()),
        };
        match o.legacy_data(Path::new("/t")).unwrap() {
            LegacyData::Short(data) => {
                assert!(data.starts_with("lowerdir=0:1:2:"));
                assert!(data.contains(":249,upperdir=/u,"));
                assert!(data.len() <= MAX_LEGACY_DATA);
            }
            other => panic!("expected short names, got {other:?}"),
        }
        let over = Overlay {
            lowers: layers(44),
            ..Default::default()
        };
        assert!(matches!(
            over.legacy_data(Path::new("/t")),
            Ok(LegacyData::Short(_))
        ));
        let fits = Overlay {
            lowers: layers(43),
            ..Default::default()
        };
        assert!(matches!(
            fits.legacy_data(Path::new("/t")),
            Ok(LegacyData::Absolute(_))
        ));
    }

    #[test]
    fn legacy_data_refuses_what_no_page_can_hold() {
        let o = Overlay {
            lowers: layers(1200),
            ..Default::default()
        };
        assert!(matches!(
            o.legacy_data(Path::new("/t")),
            Err(MountError::OptionsTooLong { .. })
        ));
    }

    #[test]
    fn legacy_data_refuses_separators_in_paths() {
        let o = Overlay {
            lowers: vec!["/a:b".into(), "/c".into()],
            ..Default::default()
        };
        assert!(matches!(
            o.legacy_data(Path::new("/t")),
            Err(MountError::UnsafePath { .. })
        ));
    }

    #[test]
    fn invalid_shapes_are_errors() {
        let none = Overlay::default();
        assert!(matches!(
            none.check(Path::new("/t")),
            Err(MountError::NoLowers { .. })
        ));
        let half = Overlay {
            lowers: layers(2),
            upper: Some("/u".into()),
            work: None,
        };
        assert!(matches!(
            half.check(Path::new("/t")),
            Err(MountError::UpperWithoutWork { .. })
        ));
    }

    #[test]
    fn long_paths_are_detected_for_fsconfig() {
        let long = PathBuf::from(format!("/{}", "x".repeat(300)));
        let o = Overlay {
            lowers: vec![long.clone(), "/b".into()],
            ..Default::default()
        };
        assert_eq!(o.too_long_for_fsconfig(), Some(long.as_path()));
    }
}
