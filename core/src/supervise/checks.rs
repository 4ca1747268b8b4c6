//! Readiness and health (SPEC 11.3, 11.4): when a running job's check goes
//! out, what its answer and the job's sd_notify datagrams mean, the
//! watchdog, and the verdicts that `pmtr-ctl wait` and pmtr's own
//! `READY=1` are decided from.

use std::sync::Arc;

use super::event::{Action, Check, ExitStatus, JobId, Level, Pid, ReplyToken};
use super::job::{
    CheckState, JobState, Phase, StopReason, MAX_CHECK_DELAY_MILLIS, READY_TIMEOUT_MILLIS,
};
use super::{messages, Actions, Supervisor};
use crate::config::{HealthCheck, Job, Readiness};
use crate::proto::notify::Notice;
use crate::time::Mono;

/// Most `pmtr-ctl wait` requests pending at once: as many as there may be
/// control clients.
pub const MAX_WAITERS: usize = 64;

/// A `pmtr-ctl wait` request waiting for its answer.
#[derive(Clone, Debug)]
pub(super) struct Waiter {
    jobs: Vec<String>,
    until: Option<Mono>,
    reply: ReplyToken,
}

/// Where a job stands for `pmtr-ctl wait`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Pending,
    /// It will not become ready without someone's help; why.
    Failed(String),
}

impl Supervisor {
    /// Handles the readiness, watchdog and check deadlines of running job
    /// `index` that have come. True when they stopped the job.
    pub(super) fn check_timers(&mut self, index: usize, now: Mono, out: &mut Actions) -> bool {
        let job = &mut self.jobs[index];
        let Phase::Running(mut run) = job.phase else {
            return false;
        };
        let id = job.id;
        let def = Arc::clone(&job.def);
        if run.ready_due(&def).is_some_and(|t| t <= now) {
            // The timeout, not the time measured: the log reads as the file.
            let waited = def
                .extras
                .ready_timeout_millis
                .unwrap_or(READY_TIMEOUT_MILLIS);
            out.log(
                Level::Warning,
                messages::not_ready(&def.name, run.pid, waited),
            );
            self.stop(index, StopReason::NotReady, now, out);
            return true;
        }
        let watchdog = def.extras.health.watchdog_millis.unwrap_or(0);
        if run.watchdog_due.is_some_and(|t| t <= now) {
            out.log(
                Level::Warning,
                messages::watchdog_missed(&def.name, run.pid, watchdog),
            );
            self.stop(index, StopReason::Restart, now, out);
            return true;
        }
        if run.check_expires(&def).is_some_and(|t| t <= now) {
            out.push(Action::CancelCheck { job: id });
            run.check = CheckState::Idle;
            job.phase = Phase::Running(run);
            job.check_output = Some(messages::check_timed_out(def.extras.health.timeout()));
            return self.health_failed(index, now, out);
        }
        if run.check.due().is_some_and(|t| t <= now) {
            run.check = match check_of(&def, run.ready) {
                Some(check) => {
                    out.push(Action::Check {
                        job: id,
                        pid: run.pid,
                        check,
                    });
                    CheckState::Out(now)
                }
                None => CheckState::Idle,
            };
            job.phase = Phase::Running(run);
        }
        false
    }

    /// A check came back: a readiness check makes the job ready or is
    /// tried again after a while; a health check counts toward `retries`.
    pub(super) fn on_checked(
        &mut self,
        id: JobId,
        pid: Pid,
        ok: bool,
        output: Option<String>,
        now: Mono,
        out: &mut Actions,
    ) {
        let Some(index) = self.position(id) else {
            return;
        };
        let job = &mut self.jobs[index];
        let mut run = match job.phase {
            Phase::Running(run) if run.pid == pid && matches!(run.check, CheckState::Out(_)) => run,
            // An answer for an earlier run, a cancelled check, or a job
            // that is stopping.
            Phase::Running(_)
            | Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Stopping { .. }
            | Phase::Draining { .. }
            | Phase::Done(_)
            | Phase::Failed
            | Phase::Disabled => return,
        };
        job.check_output = output;
        if !run.ready {
            if ok {
                run.become_ready(now, &job.def);
                out.log(Level::Info, messages::ready(&job.def.name, pid));
            } else {
                run.check = CheckState::Due(now.plus_millis(run.check_delay_millis));
                run.check_delay_millis = (run.check_delay_millis * 2).min(MAX_CHECK_DELAY_MILLIS);
            }
            job.phase = Phase::Running(run);
            return;
        }
        if ok {
            if run.failures > 0 {
                out.log(Level::Info, messages::healthy_again(&job.def.name));
            }
            run.checked = true;
            run.failures = 0;
            run.check = CheckState::Due(now.plus_millis(job.def.extras.health.every()));
            job.phase = Phase::Running(run);
        } else {
            self.health_failed(index, now, out);
        }
    }

    /// One more failed health check of running job `index`: restarted at
    /// `retries` in a row (true), else checked again after `every`.
    fn health_failed(&mut self, index: usize, now: Mono, out: &mut Actions) -> bool {
        let job = &mut self.jobs[index];
        let Phase::Running(run) = &mut job.phase else {
            return false;
        };
        run.checked = true;
        run.failures += 1;
        let (failures, retries) = (run.failures, job.def.extras.health.retries());
        let last = job.check_output.as_deref();
        if failures >= retries {
            out.log(
                Level::Warning,
                messages::unhealthy(&job.def.name, failures, last),
            );
            self.stop(index, StopReason::Restart, now, out);
            return true;
        }
        let message = messages::health_check_failed(&job.def.name, failures, retries, last);
        out.log(Level::Warning, message);
        run.check = CheckState::Due(now.plus_millis(job.def.extras.health.every()));
        false
    }

    /// A datagram from a process of group `pgid` on the notify socket.
    pub(super) fn on_notified(&mut self, pgid: Pid, notice: Notice, now: Mono, out: &mut Actions) {
        let running = |p: &Phase| matches!(p, Phase::Running(run) if run.pid == pgid);
        let Some(index) = self.position_of_group(pgid, running) else {
            return;
        };
        let job = &mut self.jobs[index];
        let Phase::Running(run) = &mut job.phase else {
            return;
        };
        if notice.status.is_some() {
            job.notify_status = notice.status;
        }
        if notice.stopping && !run.stopping_announced {
            out.log(
                Level::Info,
                messages::announced_stopping(&job.def.name, pgid),
            );
            if let CheckState::Out(_) = run.check {
                out.push(Action::CancelCheck { job: job.id });
            }
            run.stopping_announced = true;
            run.check = CheckState::Idle;
            run.watchdog_due = None;
        }
        if run.stopping_announced {
            return;
        }
        if notice.ready && !run.ready && job.def.extras.ready == Readiness::Notify {
            run.become_ready(now, &job.def);
            out.log(Level::Info, messages::ready(&job.def.name, pgid));
        }
        if notice.watchdog && run.ready {
            if let Some(millis) = job.def.extras.health.watchdog_millis {
                run.watchdog_due = Some(now.plus_millis(millis));
            }
        }
    }

    /// A reload changed only how job `index` is checked: the new checks
    /// take over where the job stands, without a restart.
    pub(super) fn recheck(&mut self, index: usize, def: Job, now: Mono, out: &mut Actions) {
        let job = &mut self.jobs[index];
        job.def = Arc::new(def);
        let Phase::Running(run) = &mut job.phase else {
            return;
        };
        if let CheckState::Out(_) = run.check {
            out.push(Action::CancelCheck { job: job.id });
        }
        if run.ready {
            run.watch_health(now, &job.def);
        } else {
            let fresh = super::job::Run::new(run.pid, now, &job.def);
            run.check = fresh.check;
            run.check_delay_millis = fresh.check_delay_millis;
            if fresh.ready {
                run.become_ready(now, &job.def);
            }
        }
    }

    pub(super) fn on_wait(
        &mut self,
        jobs: Vec<String>,
        timeout_millis: Option<u64>,
        reply: ReplyToken,
        now: Mono,
        out: &mut Actions,
    ) {
        if self.waiters.len() >= MAX_WAITERS {
            out.reply(Some(reply), false, messages::too_many_waiting());
            return;
        }
        let until = timeout_millis.map(|ms| now.plus_millis(ms));
        // A job with instances: wait for every copy.
        let mut names = Vec::with_capacity(jobs.len());
        for name in jobs {
            let found = self.named(&name);
            if found.is_empty() {
                // Unknown: the verdict says so.
                names.push(name);
            } else {
                names.extend(found.into_iter().map(|i| self.jobs[i].def.name.clone()));
            }
        }
        self.waiters.push(Waiter {
            jobs: names,
            until,
            reply,
        });
    }

    /// Answers every `pmtr-ctl wait` whose jobs are all ready, one of
    /// which failed, or whose time is up.
    pub(super) fn answer_waiters(&mut self, now: Mono, out: &mut Actions) {
        if self.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            let verdicts: Vec<(&String, Verdict)> =
                waiter.jobs.iter().map(|n| (n, self.verdict(n))).collect();
            let failed = verdicts.iter().find_map(|(name, verdict)| match verdict {
                Verdict::Failed(why) => Some(format!("{name}: {why}")),
                Verdict::Ready | Verdict::Pending => None,
            });
            let pending: Vec<&str> = verdicts
                .iter()
                .filter(|(_, v)| *v == Verdict::Pending)
                .map(|(name, _)| name.as_str())
                .collect();
            if let Some(why) = failed {
                out.reply(Some(waiter.reply), false, why);
            } else if pending.is_empty() {
                out.reply(Some(waiter.reply), true, messages::ready_reply());
            } else if waiter.until.is_some_and(|t| t <= now) {
                out.reply(
                    Some(waiter.reply),
                    false,
                    messages::wait_timed_out(&pending),
                );
            } else {
                self.waiters.push(waiter);
            }
        }
    }

    /// The earliest `pmtr-ctl wait` timeout.
    pub(super) fn waiters_due(&self) -> Option<Mono> {
        self.waiters.iter().filter_map(|w| w.until).min()
    }

    /// Where job `name` stands for `pmtr-ctl wait`.
    pub fn verdict(&self, name: &str) -> Verdict {
        let Some(job) = self
            .jobs
            .iter()
            .find(|j| j.def.name == name && !j.is_being_removed())
        else {
            return Verdict::Failed(messages::unknown_job_reply(name));
        };
        if is_ready(job) {
            return Verdict::Ready;
        }
        match job.phase {
            Phase::Failed => Verdict::Failed("failed: pmtr gave up restarting it".into()),
            Phase::Disabled => Verdict::Failed("disabled".into()),
            Phase::Done(why) => Verdict::Failed(format!("not running ({why})")),
            Phase::Waiting { .. } if job.start_failed => {
                Verdict::Failed("its last start failed".into())
            }
            Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Running(_)
            | Phase::Stopping { .. }
            | Phase::Draining { .. } => Verdict::Pending,
        }
    }

    /// Sends pmtr's own `READY=1` once, when no enabled job is still on its
    /// way up: each is ready, or failed, or held by something that is not
    /// coming (a `wait` job, a missing file, a job that failed).
    pub(super) fn ready_if_settled(&mut self, out: &mut Actions) {
        if self.ready_sent || !self.started || self.shutdown.is_some() {
            return;
        }
        self.refresh_roster();
        let first_gate = self.jobs.first_gate().unwrap_or(usize::MAX);
        for position in self.jobs.coming() {
            let job = &self.jobs[position];
            let gated = first_gate < position;
            let held = |job| gated || !self.after_met(job) || !self.files_present(job);
            let coming = job.enabled()
                && match job.phase {
                    Phase::Starting { .. } => true,
                    // A `once` job others come after is ready when it ends.
                    Phase::Running(run) => {
                        !run.ready || (job.def.once && self.awaited(&job.def.name))
                    }
                    Phase::Waiting { .. } => job.starts == 0 && !job.start_failed && !held(job),
                    Phase::Stopping { .. }
                    | Phase::Draining { .. }
                    | Phase::Done(_)
                    | Phase::Failed
                    | Phase::Disabled => false,
                };
            if coming {
                return;
            }
        }
        self.ready_sent = true;
        out.log(Level::Info, messages::all_ready());
        out.push(Action::Ready);
    }

    /// True when an enabled job comes `after` job `name`.
    fn awaited(&self, name: &str) -> bool {
        self.jobs
            .iter()
            .any(|j| j.enabled() && j.def.extras.after.iter().any(|a| a == name))
    }
}

/// Ready for `after` and `pmtr-ctl wait` (SPEC 11.3): running and ready,
/// or for a `once` job, exited with status 0.
pub(super) fn is_ready(job: &JobState) -> bool {
    match job.phase {
        Phase::Running(run) => run.ready && !job.def.once && !job.is_being_removed(),
        Phase::Done(_) => job.def.once && job.last_exit == Some(ExitStatus::Code(0)),
        Phase::Waiting { .. }
        | Phase::Starting { .. }
        | Phase::Stopping { .. }
        | Phase::Draining { .. }
        | Phase::Failed
        | Phase::Disabled => false,
    }
}

/// The check a running job needs next: a readiness check until it is
/// ready, a health check after; none when it has no such option.
fn check_of(def: &Arc<Job>, ready: bool) -> Option<Check> {
    let command = |argv: &Vec<String>| Check::Cmd {
        def: Arc::clone(def),
        argv: argv.clone().into(),
    };
    if ready {
        return match &def.extras.health.check {
            Some(HealthCheck::Cmd(argv)) => Some(command(argv)),
            Some(HealthCheck::Tcp(address)) => Some(Check::Tcp(*address)),
            None => None,
        };
    }
    match &def.extras.ready {
        Readiness::File(path) => Some(Check::File(def.resolve(path))),
        Readiness::Tcp(address) => Some(Check::Tcp(*address)),
        Readiness::Cmd(argv) => Some(command(argv)),
        Readiness::Started | Readiness::Notify => None,
    }
}
