//! The one message the child sends the parent: which setup step failed and
//! the errno. It is written to a close-on-exec pipe, so a successful
//! `execve` shows up as end-of-file with nothing read.
//!
//! The child cannot allocate, so the message is three integers and the
//! parent, which holds the same plan, turns them into a sentence.
//!
//! The only other thing the child sends is the pty master, as a descriptor
//! over a unix socket (`sys::tty::send_fd`), when the spec asks for a
//! terminal.

/// Setup stages of the child, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    JoinCgroup = 1,
    CgroupNamespace,
    Hostname,
    Loopback,
    /// `index` is the position in [`super::plan::ChildPlan::steps`].
    Mount,
    PivotRoot,
    ReadOnlyRoot,
    Chdir,
    Rlimit,
    Terminal,
    Capabilities,
    Groups,
    Gid,
    Uid,
    NoNewPrivs,
    ParentDeath,
    CloseFds,
    Init,
    /// `index` tells which candidate path failed (`errno` is the decisive one).
    Exec,
}

impl Stage {
    fn from_u32(v: u32) -> Option<Stage> {
        use Stage::*;
        [
            JoinCgroup,
            CgroupNamespace,
            Hostname,
            Loopback,
            Mount,
            PivotRoot,
            ReadOnlyRoot,
            Chdir,
            Rlimit,
            Terminal,
            Capabilities,
            Groups,
            Gid,
            Uid,
            NoNewPrivs,
            ParentDeath,
            CloseFds,
            Init,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }
}

/// A failed setup step as sent through the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildFailure {
    pub stage: Stage,
    pub index: u32,
    pub errno: i32,
}

pub const MESSAGE_LEN: usize = 12;

impl ChildFailure {
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut b = [0u8; MESSAGE_LEN];
        b[..4].copy_from_slice(&(self.stage as u32).to_le_bytes());
        b[4..8].copy_from_slice(&self.index.to_le_bytes());
        b[8..].copy_from_slice(&self.errno.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<ChildFailure> {
        if b.len() != MESSAGE_LEN {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Some(ChildFailure {
            stage: Stage::from_u32(word(0))?,
            index: word(4),
            errno: word(8) as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = ChildFailure {
            stage: Stage::Exec,
            index: 3,
            errno: libc::ENOENT,
        };
        assert_eq!(ChildFailure::decode(&m.encode()), Some(m));
        assert_eq!(ChildFailure::decode(&[0; 5]), None);
        assert_eq!(ChildFailure::decode(&[0xff; MESSAGE_LEN]), None);
    }
}
