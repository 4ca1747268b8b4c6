//! Enabling, disabling and restarting jobs on request (UDP control,
//! `pmtr-ctl`): an override of the file's `disable` that lasts until the
//! next reload, and the answer each request gets. The shell only carries
//! the answer to the client: whether a name is known, or a job is being
//! removed, is decided here and nowhere else.

use super::event::{Level, Reply, ReplyToken};
use super::job::{JobState, Phase, StopReason, Then};
use super::{messages, Actions, Supervisor};
use crate::time::Mono;

/// Unknown names from control datagrams are logged at most this often.
const UNKNOWN_LOG_EVERY_MILLIS: u64 = 10_000;

impl Supervisor {
    /// Enables or disables job `name` until the next reload. Unknown names
    /// are logged and skipped.
    pub(super) fn on_override(
        &mut self,
        name: &str,
        enabled: bool,
        reply: Option<ReplyToken>,
        now: Mono,
        out: &mut Actions,
    ) {
        let indices = self.requested_jobs(name, reply, now, out);
        if indices.is_empty() {
            return;
        }
        let mut changed = false;
        for index in indices {
            let job = &mut self.jobs[index];
            let already = job.enabled() == enabled
                && match job.phase {
                    Phase::Running(_) | Phase::Waiting { .. } => enabled,
                    // Disabled, or on its way there.
                    Phase::Disabled
                    | Phase::Stopping {
                        why: StopReason::Disable,
                        ..
                    }
                    | Phase::Draining {
                        then: Then::Stopped(StopReason::Disable),
                        ..
                    }
                    | Phase::Starting {
                        stop: Some(StopReason::Disable),
                    } => !enabled,
                    _ => false,
                };
            job.enabled_override = Some(enabled);
            // Asked for what is so: nothing to do, and nothing to log (a
            // flood of the same request is one line, not one each).
            if already {
                continue;
            }
            changed = true;
            out.log(Level::Info, messages::overridden(&job.def.name, enabled));
            self.apply_enabled(index, enabled, now, out);
        }
        if changed {
            self.report_soon(now);
        }
        out.reply(reply, true, messages::override_reply(enabled));
    }

    /// Restarts job `name` (every copy of a job with instances) now: stops
    /// it if it runs (then starts it at once), or starts it if it waits to
    /// restart or is done. A disabled job stays disabled.
    pub(super) fn on_restart(
        &mut self,
        name: &str,
        reply: Option<ReplyToken>,
        now: Mono,
        out: &mut Actions,
    ) {
        let indices = self.requested_jobs(name, reply, now, out);
        if indices.is_empty() {
            return;
        }
        let enabled: Vec<usize> = indices
            .into_iter()
            .filter(|&i| self.jobs[i].enabled())
            .collect();
        if enabled.is_empty() {
            out.reply(reply, false, messages::restart_disabled_reply());
            return;
        }
        out.reply(reply, true, messages::restart_reply());
        for index in enabled {
            let job = &mut self.jobs[index];
            out.log(Level::Info, messages::restart_requested(&job.def.name));
            match job.phase {
                Phase::Running(_) | Phase::Stopping { .. } | Phase::Draining { .. } => {
                    self.stop(index, StopReason::Restart, now, out)
                }
                Phase::Waiting { .. } | Phase::Done(_) | Phase::Failed => {
                    job.rapid_exits = 0;
                    job.phase = Phase::waiting(now);
                }
                // On its way up; and disabled jobs were left out above.
                Phase::Starting { .. } | Phase::Disabled => {}
            }
        }
    }

    /// `pmtr-ctl status`: every job, or the one named (refused if none
    /// is). A job still stopping after a reload deleted it is shown: it
    /// still has processes.
    pub(super) fn on_status(
        &self,
        job: Option<&str>,
        reply: ReplyToken,
        now: Mono,
        out: &mut Actions,
    ) {
        let named = |j: &JobState| job.is_none_or(|name| j.is_named(name));
        let jobs = self.statuses_of(named, now);
        match job {
            Some(name) if jobs.is_empty() => {
                out.reply(Some(reply), false, messages::unknown_job_reply(name))
            }
            _ => out.answer(reply, Reply::Status(jobs)),
        }
    }

    /// `pmtr-ctl logs JOB`: the shell holds the lines; the core says
    /// whether the job exists (a job being removed still has its lines).
    pub(super) fn on_logs(&self, job: String, reply: ReplyToken, out: &mut Actions) {
        if self.jobs.iter().any(|j| j.def.name == job) {
            out.answer(reply, Reply::Logs { job });
        } else if !self.copies_of(&job).is_empty() {
            out.reply(Some(reply), false, messages::logs_of_instances_reply(&job));
        } else {
            out.reply(Some(reply), false, messages::unknown_job_reply(&job));
        }
    }

    /// The jobs a request names — the job, or every copy of a job with
    /// instances — unless pmtr is shutting down. A job that a reload
    /// deleted is unknown even while it still stops. A request that names
    /// no job is logged, answered and skipped (an empty list).
    fn requested_jobs(
        &mut self,
        name: &str,
        reply: Option<ReplyToken>,
        now: Mono,
        out: &mut Actions,
    ) -> Vec<usize> {
        if self.shutdown.is_some() {
            out.reply(reply, false, messages::shutting_down_reply());
            return Vec::new();
        }
        let indices = self.named(name);
        if indices.is_empty() {
            match reply {
                // A local client is told; the log says it too.
                Some(_) => out.log(Level::Warning, messages::unknown_job(name)),
                None => self.log_unknown_from_afar(name, now, out),
            }
            out.reply(reply, false, messages::unknown_job_reply(name));
        }
        indices
    }

    /// An unknown name in a control datagram: logged at most once every
    /// 10 s, with the count of those not logged since.
    fn log_unknown_from_afar(&mut self, name: &str, now: Mono, out: &mut Actions) {
        match self.unknown_logged {
            Some((at, unlogged)) if now.millis_since(at) < UNKNOWN_LOG_EVERY_MILLIS => {
                self.unknown_logged = Some((at, unlogged + 1));
            }
            last => {
                let unlogged = last.map_or(0, |(_, n)| n);
                out.log(
                    Level::Warning,
                    messages::unknown_job_from_afar(name, unlogged),
                );
                self.unknown_logged = Some((now, 0));
            }
        }
    }

    /// Where the jobs `name` names are: the job of that name, else every
    /// copy of the job with instances so named. A job that a reload
    /// deleted is not named even while it still stops.
    pub(super) fn named(&self, name: &str) -> Vec<usize> {
        let exact = self
            .candidates(name)
            .find(|&i| self.jobs[i].def.name == name && !self.jobs[i].is_being_removed());
        match exact {
            Some(index) => vec![index],
            None => self
                .candidates(name)
                .filter(|&i| {
                    let job = &self.jobs[i];
                    !job.is_being_removed() && job.group() == Some(name)
                })
                .collect(),
        }
    }

    /// Where the copies of job `group` (defined with instances) are.
    pub(super) fn copies_of(&self, group: &str) -> Vec<usize> {
        let copy = |j: &JobState| !j.is_being_removed() && j.group() == Some(group);
        (0..self.jobs.len())
            .filter(|&i| copy(&self.jobs[i]))
            .collect()
    }

    /// Brings job `index` to the enabled state given: stop a running job
    /// being disabled, start a stopped job being enabled.
    pub(super) fn apply_enabled(
        &mut self,
        index: usize,
        enabled: bool,
        now: Mono,
        out: &mut Actions,
    ) {
        let job = &mut self.jobs[index];
        match (enabled, job.phase) {
            // Being stopped to stay down: come back once gone.
            (
                true,
                Phase::Stopping {
                    why: StopReason::Disable,
                    ..
                }
                | Phase::Draining {
                    then: Then::Stopped(StopReason::Disable),
                    ..
                },
            ) => job.phase.set_stop_reason(StopReason::Restart),
            (
                true,
                Phase::Starting {
                    stop: Some(StopReason::Disable),
                },
            ) => job.phase.set_stop_reason(StopReason::Restart),
            (true, Phase::Disabled | Phase::Failed) => {
                job.rapid_exits = 0;
                job.phase = Phase::waiting(now);
            }
            (
                true,
                Phase::Waiting { .. }
                | Phase::Starting { .. }
                | Phase::Running(_)
                | Phase::Stopping { .. }
                | Phase::Draining { .. }
                | Phase::Done(_),
            ) => {}
            (
                false,
                Phase::Starting { .. }
                | Phase::Running(_)
                | Phase::Stopping { .. }
                | Phase::Draining { .. },
            ) => {
                if !job.is_being_removed() {
                    self.stop(index, StopReason::Disable, now, out);
                }
            }
            (false, Phase::Waiting { .. } | Phase::Done(_) | Phase::Failed | Phase::Disabled) => {
                job.phase = Phase::Disabled
            }
        }
    }
}
