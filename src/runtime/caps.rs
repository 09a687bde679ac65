//! Capability names and numbers, and Docker's default set.

/// Capability names in kernel number order (`CAP_CHOWN` = 0 …).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The number of a capability name (`CAP_` prefix optional, any case).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// The highest capability number this table knows.
pub fn last() -> u32 {
    NAMES.len() as u32 - 1
}

/// A bit mask from capability names; unknown names are returned as errors.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<u64, String> {
    names.into_iter().try_fold(0u64, |m, n| {
        number(n)
            .map(|b| m | (1u64 << b))
            .ok_or_else(|| n.to_owned())
    })
}

/// Docker's default set with `--cap-add`/`--cap-drop` applied (`ALL` works
/// in both, adds first as Docker does).
pub fn docker_set(add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let mut set: Vec<String> = DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect();
    let canon = |n: &str| -> Result<String, String> {
        number(n)
            .map(|i| NAMES[i as usize].to_owned())
            .ok_or_else(|| n.to_owned())
    };
    for a in add {
        if a.eq_ignore_ascii_case("ALL") {
            set = NAMES.iter().map(|s| s.to_string()).collect();
        } else {
            let c = canon(a)?;
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    for d in drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else {
            let c = canon(d)?;
            set.retain(|s| *s != c);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("net_admin"), Some(12));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn docker_default_mask_is_the_well_known_value() {
        // `CapBnd: 00000000a80425fb` in a default docker container.
        assert_eq!(mask(DOCKER_DEFAULT).unwrap(), 0xa804_25fb);
    }

    #[test]
    fn add_and_drop() {
        let s = docker_set(&["NET_ADMIN".into()], &["chown".into()]).unwrap();
        assert!(s.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!s.contains(&"CAP_CHOWN".to_string()));
        assert!(docker_set(&[], &["ALL".into()]).unwrap().is_empty());
        assert_eq!(docker_set(&["bogus".into()], &[]), Err("bogus".into()));
    }
}
