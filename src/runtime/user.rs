//! Resolving a Docker-style user (`name`, `uid`, `name:group`, `uid:gid`)
//! against the image's own `/etc/passwd` and `/etc/group`, read under the
//! rootfs (symlinks followed inside it, never into the host).
//!
//! Rules (as Docker's): a numeric uid works without a passwd entry (gid 0,
//! HOME `/`); a name must exist; a group name must exist in `/etc/group`;
//! supplementary groups are the groups listing the user's name as member,
//! and only when no group is given explicitly (runc's `GetExecUser`:
//! "supplementary group ids only make sense in the implicit form").

use std::path::Path;

use super::plan::resolve_in_root;

/// A user as the process will run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user `{0}` not found in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group `{0}` not found in the image's /etc/group")]
    NoSuchGroup(String),
    #[error("invalid user specification `{0}`")]
    Invalid(String),
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_in_root(rootfs: &Path, path: &str) -> String {
    resolve_in_root(rootfs, Path::new(path))
        .ok()
        .and_then(|rel| std::fs::read_to_string(rootfs.join(rel)).ok())
        .unwrap_or_default()
}

fn passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (empty = root) inside `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    if group == Some("") {
        return Err(UserError::Invalid(spec.to_owned()));
    }
    let users = passwd(&read_in_root(rootfs, "/etc/passwd"));
    let all_groups = groups(&read_in_root(rootfs, "/etc/group"));

    let entry = match user.parse::<u32>() {
        Ok(uid) => users.iter().find(|p| p.uid == uid),
        Err(_) => Some(
            users
                .iter()
                .find(|p| p.name == user)
                .ok_or_else(|| UserError::NoSuchUser(user.to_owned()))?,
        ),
    };
    let uid = match entry {
        Some(p) => p.uid,
        None => user
            .parse()
            .map_err(|_| UserError::Invalid(spec.to_owned()))?,
    };
    let gid = match group {
        None => entry.map(|p| p.gid).unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => all_groups
                .iter()
                .find(|gr| gr.name == g)
                .map(|gr| gr.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_owned()))?,
        },
    };
    let mut additional_gids: Vec<u32> = match entry {
        Some(p) if group.is_none() => all_groups
            .iter()
            .filter(|g| g.members.contains(&p.name))
            .map(|g| g.gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|p| p.home.clone()).unwrap_or_else(|| "/".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("/real", t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("real/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("real/group"),
            "root:x:0:\nalice:x:1000:\nwheel:x:10:alice,bob\naudio:x:29:alice\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn by_name_uid_and_group() {
        let r = rootfs();
        let alice = resolve(r.path(), "alice").unwrap();
        assert_eq!(
            alice,
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
                home: "/home/alice".into()
            }
        );
        assert_eq!(resolve(r.path(), "1000").unwrap(), alice);
        let root = resolve(r.path(), "").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let ug = resolve(r.path(), "1000:29").unwrap();
        assert_eq!((ug.uid, ug.gid, ug.additional_gids), (1000, 29, vec![]));
        assert_eq!(resolve(r.path(), "alice:wheel").unwrap().gid, 10);
        let unknown = resolve(r.path(), "4242:4343").unwrap();
        assert_eq!(
            unknown,
            ResolvedUser {
                uid: 4242,
                gid: 4343,
                additional_gids: vec![],
                home: "/".into()
            }
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = rootfs();
        assert!(matches!(
            resolve(r.path(), "bob"),
            Err(UserError::NoSuchUser(_))
        ));
        assert!(matches!(
            resolve(r.path(), "alice:nogroup"),
            Err(UserError::NoSuchGroup(_))
        ));
        assert!(matches!(
            resolve(r.path(), "alice:"),
            Err(UserError::Invalid(_))
        ));
    }

    #[test]
    fn numeric_ids_work_without_files() {
        let t = tempfile::tempdir().unwrap();
        let u = resolve(t.path(), "12:34").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (12, 34, "/"));
        assert!(matches!(
            resolve(t.path(), "nobody"),
            Err(UserError::NoSuchUser(_))
        ));
    }
}
