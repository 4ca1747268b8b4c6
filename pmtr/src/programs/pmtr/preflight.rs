//! Checks a valid configuration against this machine for what would fail at
//! run time — a command that is not executable, an unknown user, a missing
//! directory, dependency or environment file, an unusable key, a critical job that is
//! disabled — without rejecting the file: the machine may change before the
//! job starts, and a request may enable the job.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{access, AccessFlags, User};
use pmtr_core::config::{Config, Diagnostic, Location, Origin};

use pmtr_common::reason::{Reason, Text};

use crate::config_file;
use crate::daemon::cgroups;

/// Warnings about `config` on this machine, in file order; `cgroup` is
/// what `--cgroup` says (SPEC 11.7: limits that will not be applied).
pub fn warnings(config: &Config, cgroup: &str) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    let is_init = nix::unistd::getpid().as_raw() == 1;
    let subtree = cgroups::find(&cgroups::Choice::parse(cgroup), is_init);
    // Many jobs share a program, user or directory: ask the system once.
    let mut programs: HashMap<&str, Option<String>> = HashMap::new();
    let mut users: HashMap<&str, bool> = HashMap::new();
    let mut dirs: HashMap<&str, bool> = HashMap::new();
    for (job, origin) in config.jobs.iter().zip(&config.origins) {
        let warn = |found: &mut Vec<Diagnostic>, option: &str, message: String| {
            let (at, width) = located(origin, option);
            found.push(Diagnostic::warning(at, width, message));
        };
        if let Some(program) = job.cmd.first() {
            let problem = programs
                .entry(program)
                .or_insert_with(|| not_executable(Path::new(program)));
            if let Some(problem) = problem {
                warn(
                    &mut found,
                    "cmd",
                    format!("job `{}`: `{program}` {problem}", job.name),
                );
            }
        }
        if job.extras.instance.is_none() && job.mentions_instance() {
            let message = format!(
                "job `{}`: `%i` stands for the copy's number only in a job with `instances`; here it stays `%i`",
                job.name
            );
            warn(&mut found, "cmd", message);
        }
        for warning in cgroups::limit_warnings([job], subtree.as_ref().map_err(String::as_str)) {
            warn(&mut found, "limit", warning);
        }
        if job.critical && job.disabled {
            warn(
                &mut found,
                "critical",
                format!(
                    "job `{}` is critical and disabled: pmtr will never start the job it exists for",
                    job.name
                ),
            );
        }
        if let Some(user) = &job.user {
            let known = *users
                .entry(user)
                .or_insert_with(|| matches!(User::from_name(user), Ok(Some(_))));
            if !known {
                warn(
                    &mut found,
                    "user",
                    format!("job `{}`: unknown user `{user}`", job.name),
                );
            }
        }
        if let Some(dir) = &job.dir {
            if !*dirs.entry(dir).or_insert_with(|| Path::new(dir).is_dir()) {
                warn(
                    &mut found,
                    "dir",
                    format!("job `{}`: directory `{dir}` does not exist", job.name),
                );
            }
        }
        for (dependency, (at, width)) in job.extras.depends.iter().zip(origin.values_of("depends"))
        {
            let path = job.resolve(dependency);
            if !Path::new(&path).exists() {
                found.push(Diagnostic::warning(
                    at,
                    width,
                    format!(
                        "job `{}`: dependency `{path}` does not exist; the job will not start until it does",
                        job.name
                    ),
                ));
            }
        }
        for (file, (at, width)) in job
            .extras
            .env_files
            .iter()
            .zip(origin.values_of("env file"))
        {
            let path = job.resolve(&file.path);
            if let Err(problem) = config_file::read_env_file(&path, file.optional) {
                let message = format!(
                    "job `{}`: env file {path}: {problem}; the job will not start",
                    job.name
                );
                found.push(Diagnostic::warning(at, width, message));
            }
        }
    }
    if let Some(key) = &config.globals.udp_key {
        if let Some(problem) = unusable_key(Path::new(key)) {
            let (at, width) = located(&config.globals_origin, "udp");
            found.push(Diagnostic::warning(
                at,
                width,
                format!("udp key `{key}` {problem}"),
            ));
        }
    }
    if config.globals.listen_on.is_some() && config.globals.udp_key.is_none() {
        let (at, width) = located(&config.globals_origin, "listen");
        found.push(Diagnostic::warning(
            at,
            width,
            crate::daemon::udp::UNSIGNED_CONTROL_WARNING.to_string(),
        ));
    }
    found.sort_by_key(|d| (d.at.file, d.at.offset));
    found
}

fn located(origin: &Origin, option: &str) -> (Location, usize) {
    origin.value_of(option).unwrap_or((origin.at, 1))
}

fn not_executable(program: &Path) -> Option<String> {
    match std::fs::metadata(program) {
        Err(error) => Some(format!("cannot be run: {}", Reason(&error))),
        Ok(meta) if !meta.is_file() => Some("is not a regular file".into()),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Some("is not executable".into()),
        Ok(_) => match access(program, AccessFlags::X_OK) {
            Err(error) => Some(format!("cannot be run by pmtr's user: {}", Text(error))),
            Ok(()) => None,
        },
    }
}

fn unusable_key(key: &Path) -> Option<String> {
    match std::fs::metadata(key) {
        Err(error) => Some(format!("cannot be read: {}", Reason(&error))),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            Some("is readable by group or others: pmtr will refuse it (chmod 600)".into())
        }
        Ok(_) => match std::fs::File::open(key) {
            Err(error) => Some(format!("cannot be read: {}", Reason(&error))),
            Ok(_) => None,
        },
    }
}
