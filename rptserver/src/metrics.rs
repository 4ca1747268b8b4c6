//! `/metrics`: the fleet in the Prometheus text format, for a Prometheus
//! to scrape and federate. One series per host, and three per job — or,
//! with `--metrics-jobs=problems`, per job only for the jobs not up.

use std::fmt::Write as _;

use crate::fleet::{Fleet, Job};

/// Which jobs have series of their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsJobs {
    /// Every job: three series each.
    #[default]
    All,
    /// Only jobs not up (down or disabled), for very large fleets.
    Problems,
}

/// A per-job metric: name, help, and the job's value (none: no series).
type JobFamily = (&'static str, &'static str, fn(&Job, f64) -> Option<u64>);

const JOB_FAMILIES: [JobFamily; 3] = [
    (
        "pmtr_fleet_job_up",
        "1 if the job runs on the host.",
        |j, _| Some(u64::from(j.up())),
    ),
    (
        "pmtr_fleet_job_enabled",
        "1 if the job is enabled on the host.",
        |j, _| Some(u64::from(j.enabled)),
    ),
    (
        "pmtr_fleet_job_uptime_seconds",
        "Seconds since the job started.",
        |j, now| j.uptime(now).filter(|_| j.up()),
    ),
];

impl Fleet {
    pub fn metrics(&self, now: f64, jobs: MetricsJobs) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(
            &mut out,
            "pmtr_fleet_hosts",
            "Hosts reporting (heard from in the last minute).",
        );
        let _ = writeln!(out, "pmtr_fleet_hosts {}", self.hosts.len());
        gauge(
            &mut out,
            "pmtr_fleet_host_stale",
            "1 if the host has not reported for 25 s.",
        );
        for (name, host) in &self.hosts {
            let _ = writeln!(
                out,
                "pmtr_fleet_host_stale{{host=\"{}\"}} {}",
                escape(name),
                u8::from(host.stale)
            );
        }
        for (family, help, value) in JOB_FAMILIES {
            gauge(&mut out, family, help);
            for (host_name, host) in &self.hosts {
                for (job_name, job) in &host.jobs {
                    if jobs == MetricsJobs::Problems && job.up() {
                        continue;
                    }
                    if let Some(v) = value(job, now) {
                        let _ = writeln!(
                            out,
                            "{family}{{host=\"{}\",job=\"{}\"}} {v}",
                            escape(host_name),
                            escape(job_name)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "# HELP pmtr_fleet_datagrams_received_total Report datagrams received.\n# TYPE pmtr_fleet_datagrams_received_total counter");
        let _ = writeln!(out, "pmtr_fleet_datagrams_received_total {}", self.received);
        let _ = writeln!(out, "# HELP pmtr_fleet_datagrams_refused_total Datagrams refused (malformed, unsigned, bad signature).\n# TYPE pmtr_fleet_datagrams_refused_total counter");
        let _ = writeln!(out, "pmtr_fleet_datagrams_refused_total {}", self.refused);
        let _ = writeln!(out, "# HELP pmtr_fleet_reports_dropped_total Reports of new hosts dropped: --max-hosts were known.\n# TYPE pmtr_fleet_reports_dropped_total counter");
        let _ = writeln!(
            out,
            "pmtr_fleet_reports_dropped_total {}",
            self.reports_dropped
        );
        let _ = writeln!(out, "# HELP pmtr_fleet_jobs_dropped_total Reported jobs dropped: --max-jobs were known.\n# TYPE pmtr_fleet_jobs_dropped_total counter");
        let _ = writeln!(out, "pmtr_fleet_jobs_dropped_total {}", self.jobs_dropped);
        let _ = writeln!(out, "# HELP pmtr_fleet_http_connections_refused_total HTTP connections closed at once: too many open.\n# TYPE pmtr_fleet_http_connections_refused_total counter");
        let _ = writeln!(
            out,
            "pmtr_fleet_http_connections_refused_total {}",
            self.connections_refused
        );
        out
    }
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

    fn fleet() -> Fleet {
        crate::fleet::sample(0, "worker e 0 0 /w\n")
    }

    #[test]
    fn metrics_have_a_series_per_host_and_job() {
        let text = fleet().metrics(100.0, MetricsJobs::All);
        assert!(text.contains("pmtr_fleet_hosts 2\n"));
        assert!(text.contains("pmtr_fleet_job_up{host=\"web01\",job=\"nginx\"} 1\n"));
        assert!(text.contains("pmtr_fleet_job_up{host=\"web01\",job=\"backup\"} 0\n"));
        assert!(text.contains("pmtr_fleet_job_enabled{host=\"db01\",job=\"postgres\"} 1\n"));
        assert!(text.contains("pmtr_fleet_job_uptime_seconds{host=\"db01\",job=\"postgres\"} 60\n"));
    }

    #[test]
    fn with_problems_only_the_jobs_not_up_have_series() {
        let text = fleet().metrics(100.0, MetricsJobs::Problems);
        let jobs: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pmtr_fleet_job_up{"))
            .collect();
        assert_eq!(
            jobs,
            [
                "pmtr_fleet_job_up{host=\"web01\",job=\"backup\"} 0",
                "pmtr_fleet_job_up{host=\"web01\",job=\"worker\"} 0"
            ]
        );
        assert!(text.contains("pmtr_fleet_host_stale{host=\"db01\"} 0\n"));
        assert!(!text.contains("job=\"nginx\""));
        assert!(
            !text.contains("pmtr_fleet_job_uptime_seconds{host=\"web01\",job=\"worker\"}"),
            "a job down has no uptime"
        );
    }
}
