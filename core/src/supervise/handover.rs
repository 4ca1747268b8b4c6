//! Handing the jobs to the next pmtr (SPEC 11.8): what of each job
//! survives an exec of a new binary (`pmtr-ctl reexec`) or a crash (the
//! state file), when a handover may happen, and taking the jobs back. The
//! shell checks which saved processes still run the same program and
//! carries the file and the descriptors; what is adopted, restarted or
//! stopped is decided here.
//!
//! Times are `Mono` values, which the shell reads from the system's
//! monotonic clock: they mean the same in the next pmtr.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event::{Action, ExitStatus, Level, Pid};
use super::job::{Phase, Run, StopReason};
use super::messages;
use super::{Actions, Supervisor};
use crate::config::{CgroupLimits, Health, Job, JobExtras, LogFiles};
use crate::time::Mono;

/// A running process of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRun {
    pub pid: Pid,
    /// When it started (`Mono` milliseconds).
    pub started: u64,
    pub ready: bool,
}

/// How a job last ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedExit {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// One job as the next pmtr needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedJob {
    pub name: String,
    /// [`fingerprint`] of the definition it runs under.
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<SavedRun>,
    /// A pending start (`Mono` milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// Ended and not restarted (`once`, status 33, given up on).
    #[serde(default)]
    pub ended: bool,
    #[serde(default)]
    pub failed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_override: Option<bool>,
    #[serde(default)]
    pub starts: u32,
    #[serde(default)]
    pub rapid_exits: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<SavedExit>,
    #[serde(default)]
    pub gate_open: bool,
}

/// A job definition's fingerprint, written in the state as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A job definition's fingerprint: FNV-1a over each option it sets, named,
/// in a fixed order; unset options are left out. A pmtr that learns a new
/// option, or lays its definitions out anew, so keeps the fingerprints of
/// definitions that do not use it: an upgrade by `pmtr-ctl reexec`
/// restarts no job whose definition did not change.
pub fn fingerprint(job: &Job) -> Fingerprint {
    /// FNV-1a over what is written to it: the description is hashed as it
    /// is made, never held.
    struct Fnv(u64);
    impl std::fmt::Write for Fnv {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            for byte in text.bytes() {
                self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
            Ok(())
        }
    }
    fn option<T: PartialEq + Default + std::fmt::Debug>(hash: &mut Fnv, name: &str, value: &T) {
        if *value != T::default() {
            let _ = std::fmt::Write::write_fmt(hash, format_args!("{name}={value:?};"));
        }
    }
    // Taken apart field by field, without `..`: a new field does not
    // compile until it is named here.
    let Job {
        name,
        cmd,
        dir,
        stdout,
        stderr,
        user,
        env,
        disabled,
        wait,
        once,
        critical,
        order,
        nice,
        restart,
        stop_signal,
        instances,
        extras,
    } = job;
    let JobExtras {
        stdin,
        cpu,
        ulimits,
        bounce_every_secs,
        depends,
        env_files,
        limits,
        backoff_millis,
        stable_millis,
        give_up_after,
        stop_timeout_millis,
        after,
        ready,
        ready_timeout_millis,
        health,
        log,
        instance,
    } = &**extras;
    let CgroupLimits {
        memory_max,
        memory_high,
        cpu_percent,
        cpu_weight,
        tasks,
    } = limits;
    let Health {
        check,
        every_millis,
        timeout_millis,
        retries,
        watchdog_millis,
    } = health;
    let LogFiles { rotate, timestamps } = log;
    let hash = &mut Fnv(0xcbf2_9ce4_8422_2325);
    option(hash, "name", name);
    option(hash, "cmd", cmd);
    option(hash, "dir", dir);
    option(hash, "stdin", stdin);
    option(hash, "stdout", stdout);
    option(hash, "stderr", stderr);
    option(hash, "user", user);
    option(hash, "env", env);
    option(hash, "disabled", disabled);
    option(hash, "wait", wait);
    option(hash, "once", once);
    option(hash, "critical", critical);
    option(hash, "order", order);
    option(hash, "nice", nice);
    option(hash, "cpu", cpu);
    option(hash, "ulimits", ulimits);
    option(hash, "bounce_every_secs", bounce_every_secs);
    option(hash, "depends", depends);
    option(hash, "restart", restart);
    option(hash, "stop_signal", stop_signal);
    option(hash, "instances", instances);
    option(hash, "env_files", env_files);
    option(hash, "limits.memory_max", memory_max);
    option(hash, "limits.memory_high", memory_high);
    option(hash, "limits.cpu_percent", cpu_percent);
    option(hash, "limits.cpu_weight", cpu_weight);
    option(hash, "limits.tasks", tasks);
    option(hash, "backoff_millis", backoff_millis);
    option(hash, "stable_millis", stable_millis);
    option(hash, "give_up_after", give_up_after);
    option(hash, "stop_timeout_millis", stop_timeout_millis);
    option(hash, "after", after);
    option(hash, "ready", ready);
    option(hash, "ready_timeout_millis", ready_timeout_millis);
    option(hash, "health.check", check);
    option(hash, "health.every_millis", every_millis);
    option(hash, "health.timeout_millis", timeout_millis);
    option(hash, "health.retries", retries);
    option(hash, "health.watchdog_millis", watchdog_millis);
    option(hash, "log.rotate", rotate);
    option(hash, "log.timestamps", timestamps);
    option(hash, "instance", instance);
    Fingerprint(hash.0)
}

/// What the next pmtr is told of a saved running job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its process still runs the same program.
    Alive,
    /// Its process is gone (or the pid is another process's now).
    Gone,
    /// It runs, but cannot be taken over as it is (its output went to the
    /// pmtr that died): it is adopted to be restarted.
    Restart(&'static str),
}

impl Supervisor {
    /// The state of every job, for the next pmtr. `fingerprint_of` gives a
    /// definition's [`fingerprint`] (the shell keeps them: each takes a few
    /// microseconds, and a state of 10 000 jobs is written again and again).
    pub fn saved_jobs(
        &self,
        fingerprint_of: &mut dyn FnMut(&Arc<Job>) -> Fingerprint,
    ) -> Vec<SavedJob> {
        self.jobs
            .iter()
            .map(|job| {
                let run = job.phase.leader().and(job.phase.run()).map(|run| SavedRun {
                    pid: run.pid,
                    started: run.started.millis(),
                    ready: run.ready,
                });
                let start_at = match job.phase {
                    Phase::Waiting { until, .. } => Some(until.millis()),
                    _ => None,
                };
                SavedJob {
                    name: job.def.name.clone(),
                    fingerprint: fingerprint_of(&job.def).to_string(),
                    run,
                    start_at,
                    ended: matches!(job.phase, Phase::Done(_)),
                    failed: matches!(job.phase, Phase::Failed),
                    enabled_override: job.enabled_override,
                    starts: job.starts,
                    rapid_exits: job.rapid_exits,
                    last_exit: job.last_exit.map(|status| match status {
                        ExitStatus::Code(code) => SavedExit::Code(code),
                        ExitStatus::Signal { number, .. } => SavedExit::Signal(number),
                        ExitStatus::Unknown => SavedExit::Unknown,
                    }),
                    gate_open: job.gate_open,
                }
            })
            .collect()
    }

    /// Why the jobs cannot be handed over now, if they cannot: a job is
    /// between two states whose end only this pmtr would see (starting,
    /// stopping), a reload is under way, or pmtr is shutting down.
    pub fn handover_blocked(&self) -> Option<String> {
        if self.shutdown.is_some() {
            return Some("pmtr is shutting down".into());
        }
        let removing = !self.escapee_kills.is_empty();
        if self.reload_due.is_some()
            || !self.rolls.is_empty()
            || !self.to_stop.is_empty()
            || removing
        {
            return Some("a reload is under way".into());
        }
        let busy = |p: &Phase| {
            matches!(
                p,
                Phase::Starting { .. } | Phase::Stopping { .. } | Phase::Draining { .. }
            )
        };
        let count = self.jobs.iter().filter(|j| busy(&j.phase)).count();
        (count > 0).then(|| format!("{count} jobs are starting or stopping; try again"))
    }

    /// Takes back the jobs of the pmtr before, before the first `Start`:
    /// a job of the same name and fingerprint whose process `liveness`
    /// says still runs is adopted as running; one whose definition changed
    /// meanwhile is adopted and restarted; pending starts, ended jobs,
    /// overrides and counters carry over. A running job no longer in the
    /// file is stopped. `signal_name` names a signal number.
    pub fn adopt(
        &mut self,
        saved: Vec<SavedJob>,
        liveness: impl Fn(&SavedJob) -> Liveness,
        signal_name: fn(i32) -> &'static str,
        now: Mono,
    ) -> Vec<Action> {
        let mut out = Actions::default();
        for saved in saved {
            let live = saved.run.as_ref().map(|_| liveness(&saved));
            let Some(index) = self.jobs.iter().position(|j| j.def.name == saved.name) else {
                if let (Some(run), Some(Liveness::Alive | Liveness::Restart(_))) =
                    (&saved.run, live)
                {
                    out.log(
                        Level::Warning,
                        messages::adopted_unknown(&saved.name, run.pid),
                    );
                    out.push(Action::Signal {
                        pgid: run.pid,
                        signal: crate::config::StopSignal::Term,
                    });
                }
                continue;
            };
            let unchanged = saved.fingerprint == fingerprint(&self.jobs[index].def).to_string();
            let job = &mut self.jobs[index];
            job.enabled_override = saved.enabled_override;
            job.starts = saved.starts;
            job.rapid_exits = saved.rapid_exits;
            job.gate_open = saved.gate_open;
            job.last_exit = saved.last_exit.map(|exit| match exit {
                SavedExit::Code(code) => ExitStatus::Code(code),
                SavedExit::Signal(number) => ExitStatus::Signal {
                    number,
                    name: signal_name(number),
                },
                SavedExit::Unknown => ExitStatus::Unknown,
            });
            let run = match (&saved.run, live) {
                (Some(run), Some(Liveness::Alive | Liveness::Restart(_))) => run,
                (Some(run), _) => {
                    out.log(Level::Info, messages::adoption_gone(&saved.name, run.pid));
                    continue;
                }
                (None, _) => {
                    if !job.enabled() {
                        job.phase = Phase::Disabled;
                    } else if unchanged {
                        if saved.ended {
                            job.phase = Phase::Done("ended before the handover");
                        } else if saved.failed {
                            job.phase = Phase::Failed;
                        } else if let Some(at) = saved.start_at {
                            job.phase = Phase::waiting(Mono::from_millis(at));
                        }
                    }
                    continue;
                }
            };
            let started = Mono::from_millis(run.started.min(now.millis()));
            let mut adopted = Run::new(run.pid, started, &job.def);
            if run.ready {
                adopted.become_ready(now, &job.def);
            }
            job.phase = Phase::Running(adopted);
            let id = job.id;
            self.groups.insert(run.pid, id);
            let ran = now.millis_since(started) / 1000;
            let name = job.def.name.clone();
            out.log(Level::Info, messages::adopted(&name, run.pid, ran));
            let why = match live {
                Some(Liveness::Restart(why)) => Some(why),
                _ if !unchanged => Some("its definition changed meanwhile"),
                _ => None,
            };
            if let Some(why) = why {
                out.log(Level::Info, messages::adopted_restart(&name, run.pid, why));
                self.stop(index, StopReason::Restart, now, &mut out);
            } else if !self.jobs[index].enabled() {
                self.stop(index, StopReason::Disable, now, &mut out);
            }
        }
        self.reindex();
        out.0
    }
}
