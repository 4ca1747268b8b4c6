//! What the collector shows of the fleet: the JSON of `/status.json` —
//! the whole fleet, only the hosts with a problem, or only what changed
//! since a generation — and the status file of the original collector.
//! Pure: `now` comes from the caller.

use std::fmt::Write as _;

use pmtr_core::status::duration_text;
use serde::Serialize;

use crate::fleet::{Fleet, Host, Job};

/// What a viewer asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Only the hosts changed after this generation (and the names of
    /// those gone); the whole fleet when the collector cannot tell.
    pub since: Option<u64>,
    /// Only the hosts with a problem.
    pub problems: bool,
}

/// One job in the JSON view.
#[derive(Debug, Serialize, PartialEq)]
pub struct JobView {
    pub name: String,
    pub enabled: bool,
    /// Running: enabled, with a pid (or, from the original's three-field
    /// lines, simply enabled).
    pub up: bool,
    pub uptime_seconds: Option<u64>,
    pub pid: Option<i32>,
    pub cmd: Option<String>,
    /// Seen to restart at least twice in 10 minutes.
    pub flapping: bool,
    /// Restarts seen in the last 10 minutes.
    pub restarts_seen: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HostView {
    pub name: String,
    pub sender: String,
    pub interface_address: Option<String>,
    pub last_report_seconds_ago: u64,
    pub stale: bool,
    /// A job down, disabled or flapping, or the host stale.
    pub problem: bool,
    pub jobs: Vec<JobView>,
}

/// Counts over the whole fleet, whatever the query.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub hosts: usize,
    pub hosts_stale: usize,
    pub hosts_with_problems: usize,
    pub jobs: usize,
    pub jobs_up: usize,
    pub jobs_down: usize,
    pub jobs_disabled: usize,
    pub jobs_flapping: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FleetView {
    /// The generation this view is of: the next `since`.
    pub generation: u64,
    /// True when `hosts` is every host the query selects; false when it
    /// is only those changed since the generation asked for.
    pub complete: bool,
    pub hosts: Vec<HostView>,
    /// Hosts to drop from a view patched with this one: forgotten, or
    /// (with `problems`) no longer with a problem.
    pub removed: Vec<String>,
    pub summary: Summary,
    pub datagrams_received: u64,
    pub datagrams_refused: u64,
}

impl Fleet {
    /// Whether a viewer at generation `since` can be sent only what
    /// changed: it comes from this collector and has missed no removal
    /// that is no longer kept.
    pub fn knows(&self, since: u64) -> bool {
        (self.oldest_known..=self.generation).contains(&since)
    }

    pub fn view(&self, now: f64, query: &Query) -> FleetView {
        let since = query.since.filter(|&since| self.knows(since));
        let mut hosts = Vec::new();
        let mut removed = Vec::new();
        for (name, host) in &self.hosts {
            if since.is_some_and(|since| host.changed <= since) {
                continue;
            }
            if query.problems && !host.has_problem() {
                if since.is_some() {
                    removed.push(name.clone());
                }
                continue;
            }
            hosts.push(host_view(name, host, now));
        }
        if let Some(since) = since {
            removed.extend(
                self.removals
                    .iter()
                    .filter(|(generation, _)| *generation > since)
                    .map(|(_, name)| name.clone()),
            );
        }
        FleetView {
            generation: self.generation,
            complete: since.is_none(),
            hosts,
            removed,
            summary: self.summary(),
            datagrams_received: self.received,
            datagrams_refused: self.refused,
        }
    }

    /// Counted once per generation: every viewer's poll asks for it.
    pub fn summary(&self) -> Summary {
        if let Some((generation, summary)) = self.summary_cache.get() {
            if generation == self.generation {
                return summary;
            }
        }
        let summary = self.count();
        self.summary_cache.set(Some((self.generation, summary)));
        summary
    }

    fn count(&self) -> Summary {
        let mut summary = Summary {
            hosts: self.hosts.len(),
            ..Summary::default()
        };
        for host in self.hosts.values() {
            summary.hosts_stale += usize::from(host.stale);
            summary.hosts_with_problems += usize::from(host.has_problem());
            for job in host.jobs.values() {
                summary.jobs += 1;
                match (job.enabled, job.up()) {
                    (false, _) => summary.jobs_disabled += 1,
                    (true, true) => summary.jobs_up += 1,
                    (true, false) => summary.jobs_down += 1,
                }
                summary.jobs_flapping += usize::from(job.flapping());
            }
        }
        summary
    }

    /// The status file, in the original collector's layout.
    pub fn status_file(&self, now: f64, local_time: &str) -> String {
        let mut out = format!(
            "update at {local_time}\n{} systems reporting\n\n",
            self.hosts.len()
        );
        for (name, host) in &self.hosts {
            let _ = writeln!(out, "{name}:");
            for (job_name, job) in &host.jobs {
                let state = if job.enabled { "enabled" } else { "disabled" };
                let shown = match job.uptime(now) {
                    Some(secs) if job.enabled => duration_text(secs),
                    _ => "-".to_string(),
                };
                let _ = writeln!(out, "\t{job_name:<40} {state:<10} {shown:>20}");
            }
            out.push('\n');
        }
        out
    }
}

pub(crate) fn host_view(name: &str, host: &Host, now: f64) -> HostView {
    HostView {
        name: name.to_string(),
        sender: host.sender.clone(),
        interface_address: host.interface_address.clone(),
        last_report_seconds_ago: (now - host.reported_at).max(0.0) as u64,
        stale: host.stale,
        problem: host.has_problem(),
        jobs: host
            .jobs
            .iter()
            .map(|(name, job)| job_view(name, job, now))
            .collect(),
    }
}

fn job_view(name: &str, job: &Job, now: f64) -> JobView {
    JobView {
        name: name.to_string(),
        enabled: job.enabled,
        up: job.up(),
        // A job down has no uptime to show (the status file keeps the
        // original's: the seconds reported for an enabled job).
        uptime_seconds: job.uptime(now).filter(|_| job.up()),
        pid: job.pid.filter(|&p| p != 0),
        cmd: job.cmd.clone(),
        flapping: job.flapping(),
        restarts_seen: job.restarts_seen(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmtr_core::proto::report::decode;

    fn fleet() -> Fleet {
        crate::fleet::sample(100, "")
    }

    fn names(view: &FleetView) -> Vec<&str> {
        view.hosts.iter().map(|h| h.name.as_str()).collect()
    }

    #[test]
    fn the_status_file_keeps_the_original_layout() {
        let text = fleet().status_file(100.0, "Wed Nov 25 11:24:09 2026");
        // A tab, the name left in 40, a space, the state left in 10, a
        // space, the uptime right in 20.
        let line = |name: &str, state: &str, uptime: &str| {
            format!("\t{name:<40} {state:<10} {uptime:>20}\n")
        };
        let expected = format!(
            "update at Wed Nov 25 11:24:09 2026\n2 systems reporting\n\ndb01:\n{}\nweb01:\n{}{}\n",
            line("postgres", "enabled", "1m 0s"),
            line("backup", "disabled", "-"),
            line("nginx", "enabled", "3d 5h 1m 9s"),
        );
        assert_eq!(text, expected);
        let nginx = text.lines().find(|l| l.contains("nginx")).unwrap();
        assert_eq!(nginx.len(), 1 + 40 + 1 + 10 + 1 + 20);
        assert!(nginx.ends_with(" 3d 5h 1m 9s"));
    }

    #[test]
    fn uptimes_grow_between_reports() {
        let mut fleet = fleet();
        fleet.settle(130.0);
        let view = fleet.view(130.0, &Query::default());
        let web = view.hosts.iter().find(|h| h.name == "web01").unwrap();
        let nginx = web.jobs.iter().find(|j| j.name == "nginx").unwrap();
        assert_eq!(nginx.uptime_seconds, Some(277_299));
        assert!(nginx.up);
        assert_eq!(nginx.pid, Some(812));
        assert!(web.stale, "30 s without a report");
        let backup = web.jobs.iter().find(|j| j.name == "backup").unwrap();
        assert_eq!(
            (backup.up, backup.uptime_seconds, backup.pid),
            (false, None, None)
        );
    }

    #[test]
    fn problems_and_the_summary() {
        let fleet = fleet();
        let view = fleet.view(
            100.0,
            &Query {
                since: None,
                problems: true,
            },
        );
        assert_eq!(names(&view), ["web01"], "backup is disabled");
        assert!(view.complete);
        assert_eq!(
            view.summary,
            Summary {
                hosts: 2,
                hosts_stale: 0,
                hosts_with_problems: 1,
                jobs: 3,
                jobs_up: 2,
                jobs_down: 0,
                jobs_disabled: 1,
                jobs_flapping: 0,
            }
        );
    }

    #[test]
    fn since_a_generation_only_what_changed() {
        let mut fleet = fleet();
        let seen = fleet.generation();
        let all = Query {
            since: Some(seen),
            problems: false,
        };
        let nothing = fleet.view(105.0, &all);
        assert!(nothing.hosts.is_empty() && nothing.removed.is_empty());
        assert!(!nothing.complete);
        assert_eq!(nothing.generation, seen);

        // db01's job goes down; web01 reports as before.
        fleet.record(
            decode(b"report db01 10.1.0.9\npostgres e 0 0\n").unwrap(),
            "10.0.0.6:40000",
            110.0,
        );
        fleet.record(
            decode(
                b"report web01\nnginx e 277279 812 /usr/sbin/nginx\nbackup d 0 0 /usr/bin/backup\n",
            )
            .unwrap(),
            "10.0.0.5:40000",
            110.0,
        );
        let changed = fleet.view(110.0, &all);
        assert_eq!(names(&changed), ["db01"]);
        assert!(changed.hosts[0].problem);

        // db01 recovers: with `problems`, it is removed from the view.
        let problems_at = fleet.generation();
        fleet.record(
            decode(b"report db01 10.1.0.9\npostgres e 1 95\n").unwrap(),
            "10.0.0.6:40000",
            111.0,
        );
        let problems = fleet.view(
            111.0,
            &Query {
                since: Some(problems_at),
                problems: true,
            },
        );
        assert!(problems.hosts.is_empty());
        assert_eq!(problems.removed, ["db01"]);

        // A forgotten host is removed; a generation from elsewhere gets
        // the whole fleet.
        let before = fleet.generation();
        fleet.record(
            decode(b"report db01 10.1.0.9\npostgres e 60 95\n").unwrap(),
            "10.0.0.6:40000",
            170.0,
        );
        assert!(fleet.settle(170.0));
        let gone = fleet.view(
            170.0,
            &Query {
                since: Some(before),
                problems: false,
            },
        );
        assert_eq!(gone.removed, ["web01"]);
        for foreign in [Some(1), Some(fleet.generation() + 1), None] {
            let view = fleet.view(
                170.0,
                &Query {
                    since: foreign,
                    problems: false,
                },
            );
            assert!(view.complete && view.removed.is_empty());
            assert_eq!(names(&view), ["db01"]);
        }
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(fleet().view(100.0, &Query::default())).unwrap();
        assert_eq!(json["hosts"][0]["name"], "db01");
        assert_eq!(json["hosts"][0]["interface_address"], "10.1.0.9");
        assert_eq!(json["hosts"][1]["jobs"][1]["name"], "nginx");
        assert_eq!(json["hosts"][1]["jobs"][1]["uptime_seconds"], 277_269);
        assert_eq!(json["hosts"][1]["problem"], true);
        assert_eq!(json["generation"], 102);
        assert_eq!(json["summary"]["jobs_disabled"], 1);
        assert_eq!(json["complete"], true);
    }
}
