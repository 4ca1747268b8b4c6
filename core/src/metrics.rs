//! The `metrics to FILE` text: job state in the Prometheus text format, as
//! node_exporter's textfile collector reads it. Pure: the shell gives the
//! wall-clock time and writes the file when the text changes.

use std::fmt::Write as _;

use crate::status::{JobStatus, State};

/// A metric family: name, type, help, and the value of a job (none: no
/// series for that job).
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&JobStatus, f64) -> Option<f64>,
);

/// The metrics of `jobs`. `wall_offset_secs` turns pmtr's monotonic clock
/// into Unix time (wall-clock time at monotonic zero), for start times that
/// do not jitter from one rendering to the next.
pub fn render(jobs: &[JobStatus], wall_offset_secs: f64) -> String {
    let mut out = String::with_capacity(200 + jobs.len() * 200);
    let families: [Family; 7] = [
        (
            "pmtr_job_up",
            "gauge",
            "1 if the job's process is running.",
            |j, _| Some(f64::from(u8::from(j.state == State::Running))),
        ),
        (
            "pmtr_job_enabled",
            "gauge",
            "1 if the job is enabled (by the file, or a request until the next reload).",
            |j, _| Some(f64::from(u8::from(j.enabled))),
        ),
        (
            "pmtr_job_restarts_total",
            "counter",
            "Starts of the job after its first since pmtr started.",
            |j, _| Some(f64::from(j.restarts)),
        ),
        (
            "pmtr_job_start_time_seconds",
            "gauge",
            "Start time of the running job, in Unix seconds.",
            |j, offset| {
                j.started
                    .map(|t| ((offset + t.millis() as f64 / 1000.0) * 1000.0).round() / 1000.0)
            },
        ),
        (
            "pmtr_job_last_exit_status",
            "gauge",
            "Exit status of the job's last exit; absent when a signal ended it.",
            |j, _| j.last_exit.as_ref().and_then(|e| e.code).map(f64::from),
        ),
        (
            "pmtr_job_memory_bytes",
            "gauge",
            "Memory the running job uses: its cgroup's, else its process group's resident memory.",
            |j, _| j.memory_bytes.map(|b| b as f64),
        ),
        (
            "pmtr_job_cpu_seconds_total",
            "counter",
            "CPU time the running job has used: its cgroup's, else its process group's living processes'.",
            |j, _| j.cpu_millis.map(|m| m as f64 / 1000.0),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for job in jobs {
            if let Some(v) = value(job, wall_offset_secs) {
                let _ = writeln!(out, "{name}{{job=\"{}\"}} {v}", escape(&job.name));
            }
        }
    }
    // Only jobs whose health checks have answered: no series is better
    // than a guess.
    let _ = writeln!(
        out,
        "# HELP pmtr_job_healthy 1 if the job's last health check passed, 0 if it failed."
    );
    let _ = writeln!(out, "# TYPE pmtr_job_healthy gauge");
    for job in jobs {
        if let Some(healthy) = job.healthy {
            let name = escape(&job.name);
            let _ = writeln!(
                out,
                "pmtr_job_healthy{{job=\"{name}\"}} {}",
                u8::from(healthy)
            );
        }
    }
    // One series per job, for the state it is in (as `pmtr-ctl status
    // --json` names it): `pmtr_job_state{state="failed"} == 1` alerts.
    let _ = writeln!(out, "# HELP pmtr_job_state 1 for the state the job is in.");
    let _ = writeln!(out, "# TYPE pmtr_job_state gauge");
    for job in jobs {
        let (name, state) = (escape(&job.name), job.state.key());
        let _ = writeln!(out, "pmtr_job_state{{job=\"{name}\",state=\"{state}\"}} 1");
    }
    out
}

/// A label value: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::LastExit;

    fn job(name: &str, state: State, uptime: Option<u64>) -> JobStatus {
        let started = uptime.map(|_| crate::time::Mono::from_millis(2_500));
        JobStatus {
            name: name.into(),
            state,
            enabled: state != State::Disabled,
            pid: uptime.map(|_| 42),
            uptime_seconds: uptime,
            restart_in_seconds: None,
            restarts: 3,
            last_exit: Some(LastExit {
                code: Some(1),
                signal: None,
            }),
            started,
            waiting_for: None,
            healthy: None,
            health_failures: 0,
            check_output: None,
            notify_status: None,
            memory_bytes: None,
            cpu_millis: None,
        }
    }

    #[test]
    fn one_series_per_job_and_family() {
        let text = render(
            &[
                job("web", State::Running, Some(100)),
                job("off", State::Disabled, None),
            ],
            1_700_000_000.0,
        );
        assert!(text.contains("pmtr_job_up{job=\"web\"} 1\n"));
        assert!(text.contains("pmtr_job_up{job=\"off\"} 0\n"));
        assert!(text.contains("pmtr_job_enabled{job=\"off\"} 0\n"));
        assert!(text.contains("pmtr_job_restarts_total{job=\"web\"} 3\n"));
        assert!(text.contains("pmtr_job_state{job=\"web\",state=\"running\"} 1\n"));
        assert!(text.contains("pmtr_job_state{job=\"off\",state=\"disabled\"} 1\n"));
        assert!(
            text.contains("pmtr_job_start_time_seconds{job=\"web\"} 1700000002.5\n"),
            "{text}"
        );
        assert!(!text.contains("pmtr_job_start_time_seconds{job=\"off\"}"));
        assert!(text.contains("# TYPE pmtr_job_restarts_total counter\n"));
        assert!(text.contains("pmtr_job_last_exit_status{job=\"web\"} 1\n"));
    }

    /// SPEC 11.7: memory and CPU time of running jobs only.
    #[test]
    fn usage_series_for_running_jobs() {
        let mut web = job("web", State::Running, Some(100));
        (web.memory_bytes, web.cpu_millis) = (Some(12_345_678), Some(1_250));
        let text = render(&[web, job("off", State::Disabled, None)], 0.0);
        assert!(
            text.contains("pmtr_job_memory_bytes{job=\"web\"} 12345678\n"),
            "{text}"
        );
        assert!(text.contains("pmtr_job_cpu_seconds_total{job=\"web\"} 1.25\n"));
        assert!(text.contains("# TYPE pmtr_job_cpu_seconds_total counter\n"));
        assert!(!text.contains("pmtr_job_memory_bytes{job=\"off\"}"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    #[test]
    fn no_jobs_is_still_valid_text() {
        let text = render(&[], 0.0);
        assert!(text.lines().all(|l| l.starts_with('#')));
    }
}
