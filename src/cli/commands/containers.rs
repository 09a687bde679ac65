//! `ps` and `rm`: the store's containers.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::{PsArgs, RmArgs};
use crate::container;
use crate::store::{ContainerState, Store};

#[allow(clippy::print_stdout)]
pub fn ps(store: &Store, args: PsArgs) -> Result<ExitCode> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let entries: Vec<_> = store
        .list_containers()?
        .into_iter()
        .filter(|e| args.all || e.alive)
        .collect();
    if args.quiet {
        for e in &entries {
            println!("{}", if args.no_trunc { &e.id } else { &e.id[..12] });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "NAME".into(),
        "IMAGE".into(),
        "COMMAND".into(),
        "STATUS".into(),
    ]];
    for e in entries {
        let id = if args.no_trunc {
            e.id.clone()
        } else {
            e.id[..12].to_string()
        };
        let Some(r) = e.record else {
            rows.push([
                id,
                "?".into(),
                "?".into(),
                "?".into(),
                "unreadable record".into(),
            ]);
            continue;
        };
        let mut command = r.command.join(" ");
        if !args.no_trunc && command.chars().count() > 30 {
            command = command.chars().take(29).collect::<String>() + "…";
        }
        let ago = |t: u64| human_duration(now.saturating_sub(t));
        let status = match (&r.state, e.alive) {
            (ContainerState::Running { started }, true) => format!("Up {}", ago(*started)),
            (_, true) => "Starting".into(),
            (
                ContainerState::Exited {
                    code,
                    finished,
                    oom_killed,
                },
                _,
            ) => format!(
                "Exited ({code}) {} ago{}",
                ago(*finished),
                if *oom_killed { ", out of memory" } else { "" }
            ),
            (ContainerState::Failed { code, finished, .. }, _) => {
                format!("Failed ({code}) {} ago", ago(*finished))
            }
            (ContainerState::Killed { finished }, _) => {
                format!("Killed with its builder {} ago", ago(*finished))
            }
            (ContainerState::Created | ContainerState::Running { .. }, false) => {
                "Dead (builder gone; cleaned up by the next command)".into()
            }
        };
        rows.push([id, r.name, r.image, format!("\"{command}\""), status]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn human_duration(secs: u64) -> String {
    match secs {
        0..=1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "1 minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        3600..=7199 => "1 hour".into(),
        7200..=172_799 => format!("{} hours", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[allow(clippy::print_stdout)]
pub fn rm(store: &Store, args: RmArgs) -> Result<ExitCode> {
    let mut failed = None;
    for input in &args.containers {
        match container::remove(store, input, args.force) {
            Ok(_) => println!("{input}"),
            Err(e) => {
                crate::cli::report_error(&anyhow::Error::new(e));
                failed = Some(ExitCode::from(1));
            }
        }
    }
    Ok(failed.unwrap_or(ExitCode::SUCCESS))
}
