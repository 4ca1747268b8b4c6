//! The fleet as the collector knows it: each reporting host and its jobs,
//! from the reports received, and the views of it — the status file of the
//! original collector, JSON, Prometheus text. Pure: every function takes
//! `now` (seconds, monotonic) from the caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use pmtr_core::proto::report::Report;
use pmtr_core::status::duration_text;
use serde::Serialize;

/// A host not heard from for this long is marked stale...
pub const STALE_SECS: f64 = 25.0;
/// ...and forgotten after this long.
pub const FORGET_SECS: f64 = 60.0;
/// A job missing from a host's reports for this long is gone from it (a
/// split report sends jobs in several datagrams, so a job is not dropped
/// for being absent from one).
pub const JOB_GONE_SECS: f64 = 25.0;

#[derive(Clone, Debug)]
struct Job {
    enabled: bool,
    /// Seconds since start, as reported...
    seconds: u64,
    /// ...at this time.
    seen_at: f64,
    pid: Option<i32>,
    cmd: Option<String>,
}

#[derive(Clone, Debug)]
struct Host {
    sender: String,
    interface_address: Option<String>,
    reported_at: f64,
    jobs: BTreeMap<String, Job>,
}

#[derive(Debug, Default)]
pub struct Fleet {
    hosts: BTreeMap<String, Host>,
    pub received: u64,
    pub refused: u64,
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
}

#[derive(Debug, Serialize, PartialEq)]
pub struct HostView {
    pub name: String,
    pub sender: String,
    pub interface_address: Option<String>,
    pub last_report_seconds_ago: u64,
    pub stale: bool,
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FleetView {
    pub hosts: Vec<HostView>,
    pub datagrams_received: u64,
    pub datagrams_refused: u64,
}

impl Fleet {
    /// Takes in a report from `sender` at `now`.
    pub fn record(&mut self, report: Report, sender: &str, now: f64) {
        let host = self.hosts.entry(report.host).or_insert_with(|| Host {
            sender: sender.to_string(),
            interface_address: None,
            reported_at: now,
            jobs: BTreeMap::new(),
        });
        host.sender = sender.to_string();
        host.interface_address = report.address;
        host.reported_at = now;
        for job in report.jobs {
            host.jobs.insert(
                job.name,
                Job {
                    enabled: job.enabled,
                    seconds: job.seconds,
                    seen_at: now,
                    pid: job.pid,
                    cmd: job.cmd,
                },
            );
        }
    }

    /// Forgets hosts silent for a minute and jobs no longer reported.
    /// Returns true if anything went.
    pub fn expire(&mut self, now: f64) -> bool {
        let before: usize = self.hosts.values().map(|h| h.jobs.len() + 1).sum();
        self.hosts
            .retain(|_, host| now - host.reported_at < FORGET_SECS);
        for host in self.hosts.values_mut() {
            let reported_at = host.reported_at;
            host.jobs
                .retain(|_, job| reported_at - job.seen_at < JOB_GONE_SECS);
        }
        let after: usize = self.hosts.values().map(|h| h.jobs.len() + 1).sum();
        before != after
    }

    pub fn view(&self, now: f64) -> FleetView {
        FleetView {
            hosts: self
                .hosts
                .iter()
                .map(|(name, host)| HostView {
                    name: name.clone(),
                    sender: host.sender.clone(),
                    interface_address: host.interface_address.clone(),
                    last_report_seconds_ago: (now - host.reported_at).max(0.0) as u64,
                    stale: now - host.reported_at >= STALE_SECS,
                    jobs: host
                        .jobs
                        .iter()
                        .map(|(name, job)| JobView {
                            name: name.clone(),
                            enabled: job.enabled,
                            up: job.enabled && job.pid.is_none_or(|p| p != 0),
                            uptime_seconds: uptime(job, now),
                            pid: job.pid.filter(|&p| p != 0),
                            cmd: job.cmd.clone(),
                        })
                        .collect(),
                })
                .collect(),
            datagrams_received: self.received,
            datagrams_refused: self.refused,
        }
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
                let shown = match uptime(job, now) {
                    Some(secs) if job.enabled => duration_text(secs),
                    _ => "-".to_string(),
                };
                let _ = writeln!(out, "\t{job_name:<40} {state:<10} {shown:>20}");
            }
            out.push('\n');
        }
        out
    }

    /// Prometheus text: one series per host and job (up, uptime, enabled),
    /// for a Prometheus to scrape and federate.
    pub fn metrics(&self, now: f64) -> String {
        let view = self.view(now);
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(
            &mut out,
            "pmtr_fleet_hosts",
            "Hosts reporting (heard from in the last minute).",
        );
        let _ = writeln!(out, "pmtr_fleet_hosts {}", view.hosts.len());
        gauge(
            &mut out,
            "pmtr_fleet_host_stale",
            "1 if the host has not reported for 25 s.",
        );
        for host in &view.hosts {
            let _ = writeln!(
                out,
                "pmtr_fleet_host_stale{{host=\"{}\"}} {}",
                escape(&host.name),
                u8::from(host.stale)
            );
        }
        let families: [JobFamily; 3] = [
            ("pmtr_fleet_job_up", "1 if the job runs on the host.", |j| {
                Some(u64::from(j.up))
            }),
            (
                "pmtr_fleet_job_enabled",
                "1 if the job is enabled on the host.",
                |j| Some(u64::from(j.enabled)),
            ),
            (
                "pmtr_fleet_job_uptime_seconds",
                "Seconds since the job started.",
                |j| j.uptime_seconds,
            ),
        ];
        for (name, help, value) in families {
            gauge(&mut out, name, help);
            for host in &view.hosts {
                for job in &host.jobs {
                    if let Some(v) = value(job) {
                        let _ = writeln!(
                            out,
                            "{name}{{host=\"{}\",job=\"{}\"}} {v}",
                            escape(&host.name),
                            escape(&job.name)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "# HELP pmtr_fleet_datagrams_received_total Report datagrams received.\n# TYPE pmtr_fleet_datagrams_received_total counter");
        let _ = writeln!(out, "pmtr_fleet_datagrams_received_total {}", self.received);
        let _ = writeln!(out, "# HELP pmtr_fleet_datagrams_refused_total Datagrams refused (malformed, unsigned, bad signature).\n# TYPE pmtr_fleet_datagrams_refused_total counter");
        let _ = writeln!(out, "pmtr_fleet_datagrams_refused_total {}", self.refused);
        out
    }
}

/// A per-job metric: name, help, and the job's value (none: no series).
type JobFamily = (&'static str, &'static str, fn(&JobView) -> Option<u64>);

fn uptime(job: &Job, now: f64) -> Option<u64> {
    job.enabled
        .then(|| job.seconds + (now - job.seen_at).max(0.0) as u64)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmtr_core::proto::report::decode;

    fn fleet() -> Fleet {
        let mut fleet = Fleet::default();
        fleet.record(
            decode(
                b"report web01\nnginx e 277269 812 /usr/sbin/nginx\nbackup d 0 0 /usr/bin/backup\n",
            )
            .unwrap(),
            "10.0.0.5:40000",
            100.0,
        );
        fleet.record(
            decode(b"report db01 10.1.0.9\npostgres e 60 91\n").unwrap(),
            "10.0.0.6:40000",
            100.0,
        );
        fleet
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
        let view = fleet().view(130.0);
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
    fn hosts_are_forgotten_after_a_minute_and_dropped_jobs_after_two_rounds() {
        let mut fleet = fleet();
        fleet.record(
            decode(b"report web01\nnginx e 277289 812 /usr/sbin/nginx\n").unwrap(),
            "10.0.0.5:40000",
            120.0,
        );
        assert!(!fleet.expire(120.0));
        fleet.record(
            decode(b"report web01\nnginx e 277299 812 /usr/sbin/nginx\n").unwrap(),
            "10.0.0.5:40000",
            130.0,
        );
        assert!(fleet.expire(130.0), "backup not reported since 100");
        assert_eq!(
            fleet
                .view(130.0)
                .hosts
                .iter()
                .find(|h| h.name == "web01")
                .unwrap()
                .jobs
                .len(),
            1
        );
        assert!(fleet.expire(165.0), "db01 silent since 100");
        assert_eq!(fleet.view(165.0).hosts.len(), 1);
    }

    #[test]
    fn metrics_have_a_series_per_host_and_job() {
        let text = fleet().metrics(100.0);
        assert!(text.contains("pmtr_fleet_hosts 2\n"));
        assert!(text.contains("pmtr_fleet_job_up{host=\"web01\",job=\"nginx\"} 1\n"));
        assert!(text.contains("pmtr_fleet_job_up{host=\"web01\",job=\"backup\"} 0\n"));
        assert!(text.contains("pmtr_fleet_job_enabled{host=\"db01\",job=\"postgres\"} 1\n"));
        assert!(text.contains("pmtr_fleet_job_uptime_seconds{host=\"db01\",job=\"postgres\"} 60\n"));
    }

    #[test]
    fn json_shape() {
        let json = serde_json::to_value(fleet().view(100.0)).unwrap();
        assert_eq!(json["hosts"][0]["name"], "db01");
        assert_eq!(json["hosts"][0]["interface_address"], "10.1.0.9");
        assert_eq!(json["hosts"][1]["jobs"][1]["name"], "nginx");
        assert_eq!(json["hosts"][1]["jobs"][1]["uptime_seconds"], 277_269);
    }
}
