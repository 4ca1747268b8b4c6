//! What `pmtr-ctl status` shows of a job: its state, pid, uptime,
//! restarts and last exit, derived from the supervisor's state at `now`.
//! The field names are part of the `--json` interface: keep them stable.

use serde::{Deserialize, Serialize};

use crate::supervise::event::ExitStatus;
use crate::supervise::job::{JobState, Phase};
use crate::time::Mono;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    /// Exited; restarts at a deadline (the 10 s guard, a retry).
    WaitingToRestart,
    /// Not started yet: held by a `wait` job or a missing dependency.
    Waiting,
    Stopping,
    Disabled,
    /// Exited and not restarted (`once`, exit status 33).
    Done,
    /// The last start failed before the program ran.
    FailedToStart,
    /// Waiting out a `backoff` after rapid exits in a row.
    Backoff,
    /// Started, not ready yet (`ready`).
    Starting,
    /// `give up after N`: not restarted until asked.
    Failed,
}

impl State {
    /// The name `--json` and metrics use: `waiting_to_restart`.
    pub fn key(self) -> &'static str {
        match self {
            State::Running => "running",
            State::WaitingToRestart => "waiting_to_restart",
            State::Waiting => "waiting",
            State::Stopping => "stopping",
            State::Disabled => "disabled",
            State::Done => "done",
            State::FailedToStart => "failed_to_start",
            State::Backoff => "backoff",
            State::Starting => "starting",
            State::Failed => "failed",
        }
    }

    /// The name `pmtr-ctl status` shows: `waiting to restart`.
    pub fn label(self) -> &'static str {
        match self {
            State::Running => "running",
            State::WaitingToRestart => "waiting to restart",
            State::Waiting => "waiting",
            State::Stopping => "stopping",
            State::Disabled => "disabled",
            State::Done => "done",
            State::FailedToStart => "failed to start",
            State::Backoff => "backoff",
            State::Starting => "starting",
            State::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit status, when the job exited.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<i32>,
    /// Signal name, when a signal killed it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<String>,
}

impl LastExit {
    pub fn describe(&self) -> String {
        match (&self.code, &self.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => signal.clone(),
            (None, None) => "unknown".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub state: State,
    pub enabled: bool,
    pub pid: Option<i32>,
    /// Seconds since the running instance started.
    pub uptime_seconds: Option<u64>,
    /// Seconds until a pending restart.
    pub restart_in_seconds: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// The job named in `after` that holds this one back (SPEC 11.3).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waiting_for: Option<String>,
    /// The verdict of the health checks, once one has answered (SPEC 11.4).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub healthy: Option<bool>,
    /// Health checks failed in a row.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub health_failures: u32,
    /// The last line of the last readiness or health check's output.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub check_output: Option<String>,
    /// The job's last sd_notify `STATUS=` text.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub notify_status: Option<String>,
    /// Memory the running job uses, bytes: its cgroup's `memory.current`,
    /// else the resident memory of its process group's processes (SPEC
    /// 11.7). Filled in by the shell, which reads the kernel's files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory_bytes: Option<u64>,
    /// CPU time the running job used, milliseconds (`cpu_seconds` in JSON):
    /// its cgroup's, else that of its process group's living processes.
    #[serde(
        rename = "cpu_seconds",
        skip_serializing_if = "Option::is_none",
        default,
        with = "millis_as_seconds"
    )]
    pub cpu_millis: Option<u64>,
    /// When the running instance started, on pmtr's monotonic clock (not
    /// sent: for metrics, which turn it into wall-clock time).
    #[serde(skip)]
    pub started: Option<Mono>,
}

/// Milliseconds in Rust, seconds with a fraction in JSON.
mod millis_as_seconds {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(millis: &Option<u64>, out: S) -> Result<S::Ok, S::Error> {
        match millis {
            Some(millis) => out.serialize_f64(*millis as f64 / 1000.0),
            None => out.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<u64>, D::Error> {
        let seconds = Option::<f64>::deserialize(input)?;
        Ok(seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| (s * 1000.0).round() as u64))
    }
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

/// A duration as operators read it: `3d 4h 1m 9s`, leading zero units
/// left out (`4m 0s`, `12s`).
pub fn duration_text(secs: u64) -> String {
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if value > 0 || !parts.is_empty() {
            parts.push(format!("{value}{unit}"));
        }
    }
    parts.push(format!("{seconds}s"));
    parts.join(" ")
}

/// The status of one job at `now`: its phase, as operators name it.
pub fn job_status(job: &JobState, now: Mono) -> JobStatus {
    let not_running = if job.start_failed {
        State::FailedToStart
    } else if job.starts > 0 {
        State::WaitingToRestart
    } else {
        State::Waiting
    };
    let (state, restart_at) = match job.phase {
        Phase::Running(run) if !run.ready => (State::Starting, None),
        Phase::Running(_) => (State::Running, None),
        Phase::Stopping { .. } | Phase::Draining { .. } => (State::Stopping, None),
        Phase::Disabled => (State::Disabled, None),
        Phase::Done(_) => (State::Done, None),
        Phase::Failed => (State::Failed, None),
        Phase::Starting { .. } => (not_running, None),
        // `backoff` only for jobs that set one: the default rule keeps
        // its original name.
        Phase::Waiting { until, .. }
            if until > now && job.def.extras.backoff_millis.is_some() && job.rapid_exits > 0 =>
        {
            (State::Backoff, Some(until))
        }
        Phase::Waiting { until, .. } if until > now && !job.start_failed => {
            (State::WaitingToRestart, Some(until))
        }
        Phase::Waiting { until, .. } => (not_running, Some(until).filter(|&t| t > now)),
    };
    // The leader, while it lives.
    let running = job.phase.leader().and(job.phase.run().copied());
    JobStatus {
        name: job.def.name.clone(),
        state,
        enabled: job.enabled(),
        pid: running.map(|r| r.pid),
        uptime_seconds: running.map(|r| now.millis_since(r.started) / 1000),
        restart_in_seconds: restart_at.map(|t| t.millis_since(now).div_ceil(1000)),
        restarts: job.restarts(),
        started: running.map(|r| r.started),
        waiting_for: None,
        healthy: running.and_then(|r| r.healthy()),
        health_failures: running.map_or(0, |r| r.failures),
        check_output: job.check_output.clone(),
        notify_status: job.notify_status.clone(),
        memory_bytes: None,
        cpu_millis: None,
        last_exit: job.last_exit.map(|status| match status {
            ExitStatus::Code(code) => LastExit {
                code: Some(code),
                signal: None,
            },
            ExitStatus::Signal { name, .. } => LastExit {
                code: None,
                signal: Some(name.to_string()),
            },
            // An adopted job's end: neither is known.
            ExitStatus::Unknown => LastExit {
                code: None,
                signal: None,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_keys_are_the_json_names() {
        for state in [
            State::Running,
            State::WaitingToRestart,
            State::Waiting,
            State::Stopping,
            State::Disabled,
            State::Done,
            State::FailedToStart,
            State::Backoff,
            State::Starting,
            State::Failed,
        ] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.key()));
        }
    }
    use crate::config::parse;
    use crate::supervise::event::{Event, JobId};
    use crate::supervise::Supervisor;

    fn statuses(sup: &Supervisor, now: Mono) -> Vec<(String, State, Option<i32>)> {
        sup.jobs()
            .iter()
            .map(|j| job_status(j, now))
            .map(|s| (s.name, s.state, s.pid))
            .collect()
    }

    #[test]
    fn states_through_a_life() {
        let config = parse(
            b"job {\n name a\n cmd /bin/a\n}\njob {\n name off\n cmd /bin/b\n disable\n}\njob {\n name one\n cmd /bin/c\n once\n}",
        )
        .unwrap();
        let mut sup = Supervisor::new(&config, 0);
        let t = Mono::from_secs;
        assert_eq!(statuses(&sup, t(0))[0].1, State::Waiting);
        sup.handle(Event::Start, t(0));
        for (id, pid) in [(JobId(1), 10), (JobId(3), 30)] {
            sup.handle(Event::Spawned { job: id, pid }, t(0));
        }
        assert_eq!(
            statuses(&sup, t(5)),
            [
                ("a".into(), State::Running, Some(10)),
                ("off".into(), State::Disabled, None),
                ("one".into(), State::Running, Some(30))
            ]
        );
        let status = job_status(&sup.jobs()[0], t(5));
        assert_eq!(status.uptime_seconds, Some(5));
        sup.handle(
            Event::Reaped {
                pid: 10,
                status: ExitStatus::Code(1),
            },
            t(5),
        );
        sup.handle(
            Event::Probed {
                pgid: 10,
                alive: false,
            },
            t(5),
        );
        sup.handle(
            Event::Reaped {
                pid: 30,
                status: ExitStatus::Signal {
                    number: 9,
                    name: "SIGKILL",
                },
            },
            t(5),
        );
        sup.handle(
            Event::Probed {
                pgid: 30,
                alive: false,
            },
            t(5),
        );
        let a = job_status(&sup.jobs()[0], t(6));
        assert_eq!(a.state, State::WaitingToRestart);
        assert_eq!(a.restart_in_seconds, Some(9));
        assert_eq!(a.last_exit.as_ref().unwrap().describe(), "exit 1");
        let one = job_status(&sup.jobs()[2], t(6));
        assert_eq!(one.state, State::Done);
        assert_eq!(one.last_exit.unwrap().describe(), "SIGKILL");
    }

    #[test]
    fn durations_leave_out_leading_zero_units() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(59), "59s");
        assert_eq!(duration_text(240), "4m 0s");
        assert_eq!(
            duration_text(3 * 86_400 + 4 * 3_600 + 60 + 9),
            "3d 4h 1m 9s"
        );
        assert_eq!(duration_text(86_400), "1d 0h 0m 0s");
    }

    #[test]
    fn json_field_names_are_stable() {
        let status = JobStatus {
            name: "web".into(),
            state: State::WaitingToRestart,
            enabled: true,
            pid: None,
            uptime_seconds: None,
            restart_in_seconds: Some(3),
            restarts: 2,
            last_exit: Some(LastExit {
                code: Some(1),
                signal: None,
            }),
            started: None,
            waiting_for: None,
            healthy: None,
            health_failures: 0,
            check_output: None,
            notify_status: None,
            memory_bytes: None,
            cpu_millis: None,
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"name":"web","state":"waiting_to_restart","enabled":true,"pid":null,"uptime_seconds":null,"restart_in_seconds":3,"restarts":2,"last_exit":{"code":1}}"#
        );
    }
}
