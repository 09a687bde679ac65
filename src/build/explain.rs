//! `--explain-cache`: why a step missed the cache, said against the
//! previous build of the same Containerfile.
//!
//! Every build stores a [`BuildRecord`] in the store (keyed by the
//! Containerfile's identity: its path and the context's): for each step in
//! order, its stage, number, key text, key, parent key, the ARGs a RUN saw
//! and, for COPY/ADD, the digest of every copied entry. A missed step is
//! compared with the step at the same place in the previous record: a
//! different instruction, a changed ARG, a changed/added/removed file — or,
//! when the step itself is the same, the earliest earlier step of the stage
//! whose key changed ("an earlier step changed").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// One build's steps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildRecord {
    pub steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub stage: usize,
    pub number: usize,
    pub text: String,
    pub key: String,
    pub parent: String,
    #[serde(default)]
    pub args: Vec<(String, String)>,
    #[serde(default)]
    pub files: Vec<(String, String)>,
}

impl BuildRecord {
    /// The store's name for the record of the build identified by `identity`.
    pub fn id(identity: &str) -> String {
        hex::encode(Sha256::digest(identity.as_bytes()))
    }

    fn find(&self, stage: usize, number: usize) -> Option<&StepRecord> {
        self.steps
            .iter()
            .find(|s| s.stage == stage && s.number == number)
    }
}

/// Why the step (`stage`, `number`) missed. `current` holds this build's
/// steps so far (this one included).
#[allow(clippy::too_many_arguments)]
pub fn why(
    previous: Option<&BuildRecord>,
    current: &BuildRecord,
    stage: usize,
    number: usize,
    text: &str,
    args: &[(String, String)],
    files: &[(String, String)],
    parent: &str,
    cache_disabled: bool,
) -> String {
    if cache_disabled {
        return "the cache is disabled for this step (--no-cache / --no-cache-filter)".into();
    }
    let Some(previous) = previous else {
        return "no earlier build of this Containerfile is recorded".into();
    };
    let Some(before) = previous.find(stage, number) else {
        return "the step is new: the earlier build had no step here".into();
    };
    if before.text != text {
        return format!("the instruction changed (was `{}`)", before.text);
    }
    let mut reasons = Vec::new();
    let old: BTreeMap<&str, &str> = before
        .args
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (k, v) in &new {
        match old.get(k) {
            Some(o) if o != v => reasons.push(format!("ARG {k} changed: `{o}` → `{v}`")),
            None => reasons.push(format!("ARG {k} is new: `{v}`")),
            _ => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        reasons.push(format!("ARG {k} is no longer set"));
    }
    let old_files: BTreeMap<&str, &str> = before
        .files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let new_files: BTreeMap<&str, &str> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    const MAX_FILES: usize = 10;
    let mut file_reasons = Vec::new();
    for (path, digest) in &new_files {
        match old_files.get(path) {
            Some(d) if d != digest => file_reasons.push(format!("file `{path}` changed")),
            None => file_reasons.push(format!("file `{path}` was added")),
            _ => {}
        }
    }
    for path in old_files.keys().filter(|p| !new_files.contains_key(*p)) {
        file_reasons.push(format!("file `{path}` was removed"));
    }
    if file_reasons.len() > MAX_FILES {
        let more = file_reasons.len() - MAX_FILES;
        file_reasons.truncate(MAX_FILES);
        file_reasons.push(format!("and {more} more files"));
    }
    reasons.extend(file_reasons);
    if !reasons.is_empty() {
        return reasons.join("; ");
    }
    if before.parent != parent {
        // The earliest step of this stage whose key differs from before.
        let changed = current
            .steps
            .iter()
            .filter(|s| s.stage == stage && s.number < number)
            .find(|s| previous.find(s.stage, s.number).map(|p| &p.key) != Some(&s.key));
        return match changed {
            Some(s) => format!("an earlier step changed: step {} `{}`", s.number, s.text),
            None => "the stage's base image changed".into(),
        };
    }
    "the same step was built before, but its result is no longer in the cache (pruned?)".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(number: usize, text: &str, key: &str, parent: &str) -> StepRecord {
        StepRecord {
            stage: 0,
            number,
            text: text.into(),
            key: key.into(),
            parent: parent.into(),
            args: Vec::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn names_the_changed_input() {
        let mut prev = BuildRecord::default();
        let mut copy = step(2, "COPY", "k2", "k1");
        copy.files = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        prev.steps.push(step(1, "ENV A=1", "k1", "k0"));
        prev.steps.push(copy);
        let mut run = step(3, "RUN make", "k3", "k2");
        run.args = vec![("V".into(), "1".into())];
        prev.steps.push(run);

        let cur = BuildRecord::default();
        let files = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "X".to_string()),
        ];
        let r = why(Some(&prev), &cur, 0, 2, "COPY", &[], &files, "k1", false);
        assert_eq!(r, "file `b` changed");

        let args = vec![("V".to_string(), "2".to_string())];
        let r = why(Some(&prev), &cur, 0, 3, "RUN make", &args, &[], "k2", false);
        assert_eq!(r, "ARG V changed: `1` → `2`");

        let r = why(Some(&prev), &cur, 0, 3, "RUN make2", &[], &[], "k2", false);
        assert!(r.starts_with("the instruction changed"), "{r}");

        let mut cur = BuildRecord::default();
        cur.steps.push(step(1, "ENV A=2", "k1b", "k0"));
        let run_args = vec![("V".to_string(), "1".to_string())];
        let r = why(
            Some(&prev),
            &cur,
            0,
            3,
            "RUN make",
            &run_args,
            &[],
            "k2b",
            false,
        );
        assert_eq!(r, "an earlier step changed: step 1 `ENV A=2`");

        let r = why(None, &cur, 0, 3, "RUN make", &[], &[], "k2", false);
        assert!(r.contains("no earlier build"), "{r}");
    }
}
