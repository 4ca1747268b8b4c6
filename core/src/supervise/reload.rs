//! The difference between the running jobs and a newly read configuration:
//! which jobs are new, gone, changed or kept. Pure; applying it is the
//! supervisor's business.

use std::collections::{HashMap, HashSet};

use crate::config::{Config, Job};

/// What a reload means for one job name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// In the file, not running before: start it.
    Add(Job),
    /// Running before, not in the file: stop it, do not restart it.
    Remove(String),
    /// In both, with another definition: stop it, start the new one.
    Replace(Job),
    /// In both, the same: leave it alone (same pid, same timers).
    Keep(String),
    /// In both, differing only in how it is checked (`after`, `ready`,
    /// `health`): take the new checks without a restart.
    Recheck(Job),
}

/// The changes that turn `current` (name and definition of each job pmtr
/// knows) into `next`, in `next`'s start order, then the removals.
pub fn diff(current: &[(&str, &Job)], next: &Config) -> Vec<Change> {
    let before: HashMap<&str, &Job> = current.iter().copied().collect();
    let after: HashSet<&str> = next.jobs.iter().map(|j| j.name.as_str()).collect();
    let mut changes = Vec::with_capacity(next.jobs.len());
    for index in next.start_order() {
        let job = &next.jobs[index];
        changes.push(match before.get(job.name.as_str()) {
            None => Change::Add(job.clone()),
            Some(old) if *old == job => Change::Keep(job.name.clone()),
            Some(old) if old.without_checks() == job.without_checks() => {
                Change::Recheck(job.clone())
            }
            Some(_) => Change::Replace(job.clone()),
        });
    }
    for (name, _) in current {
        if !after.contains(name) {
            changes.push(Change::Remove(name.to_string()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn config(text: &str) -> Config {
        parse(text.as_bytes()).unwrap()
    }

    fn changes(before: &str, after: &str) -> Vec<Change> {
        let before = config(before);
        let current: Vec<(&str, &Job)> = before.jobs.iter().map(|j| (j.name.as_str(), j)).collect();
        diff(&current, &config(after))
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Add(job) => format!("add {}", job.name),
                Change::Remove(name) => format!("remove {name}"),
                Change::Replace(job) => format!("replace {}", job.name),
                Change::Keep(name) => format!("keep {name}"),
                Change::Recheck(job) => format!("recheck {}", job.name),
            })
            .collect()
    }

    const A: &str = "job {\n name a\n cmd /bin/sleep 1\n}\n";
    const B: &str = "job {\n name b\n cmd /bin/sleep 2\n}\n";

    #[test]
    fn add_remove_change_keep() {
        assert_eq!(names(&changes(A, &format!("{A}{B}"))), ["keep a", "add b"]);
        assert_eq!(
            names(&changes(&format!("{A}{B}"), B)),
            ["keep b", "remove a"]
        );
        let a2 = "job {\n name a\n cmd /bin/sleep 99\n}\n";
        assert_eq!(
            names(&changes(&format!("{A}{B}"), &format!("{a2}{B}"))),
            ["replace a", "keep b"]
        );
        assert_eq!(names(&changes("", "")), Vec::<String>::new());
    }

    #[test]
    fn layout_and_comments_do_not_count_as_changes() {
        let same = "# a comment\njob { name a\n   cmd   /bin/sleep 1 }\n";
        // `}` ends the cmd line above: write it apart.
        let same = same.replace(" }\n", "\n}\n");
        assert_eq!(names(&changes(A, &same)), ["keep a"]);
    }

    #[test]
    fn every_option_is_part_of_the_definition() {
        for option in [
            "disable",
            "once",
            "wait",
            "nice 3",
            "env X=1",
            "dir /tmp",
            "user root",
            "order 4",
            "bounce every 5m",
            "depends { f }",
            "cpu 0",
            "ulimit -n 10",
            "out o.log",
        ] {
            let after = format!("job {{\n name a\n cmd /bin/sleep 1\n {option}\n}}\n");
            assert_eq!(names(&changes(A, &after)), ["replace a"], "{option}");
        }
    }

    /// SPEC 11.3, 11.4: how a job is checked is not what it runs.
    #[test]
    fn checks_alone_change_without_a_restart() {
        for option in [
            "ready tcp 80",
            "ready timeout 5s",
            "health cmd /bin/true",
            "health every 5s",
            "health watchdog 1m",
            "after b",
        ] {
            let after = format!("job {{\n name a\n cmd /bin/sleep 1\n {option}\n}}\n{B}");
            assert_eq!(
                names(&changes(&format!("{A}{B}"), &after)),
                ["recheck a", "keep b"],
                "{option}"
            );
        }
        let both = "job {\n name a\n cmd /bin/sleep 9\n ready tcp 80\n}\n";
        assert_eq!(names(&changes(A, both)), ["replace a"]);
    }

    #[test]
    fn changes_follow_the_new_start_order() {
        let after = format!("{B}job {{\n name a\n cmd /bin/sleep 1\n order -1\n}}\n");
        assert_eq!(
            names(&changes(&format!("{A}{B}"), &after)),
            ["replace a", "keep b"]
        );
    }
}
