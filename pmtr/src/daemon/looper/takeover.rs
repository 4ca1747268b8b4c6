//! The loop's part in a handover (SPEC 11.8): keeping the state file
//! current, taking jobs over at the start (from a pmtr that died, or from
//! the one that exec'd this one), following adopted processes that are
//! not pmtr's children, and `pmtr-ctl reexec` — the new binary checks the
//! state as a child first, and pmtr execs it only if it accepts.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sys::epoll::EpollFlags;
use pmtr_core::config::StopSignal;
use pmtr_core::proto::state::{Handed, State};
use pmtr_core::supervise::event::{Action, Event, ExitStatus, Level, Pid, Reply, ReplyToken};
use pmtr_core::supervise::handover::Liveness;
use pmtr_core::time::Mono;

use super::Daemon;
use crate::daemon::handover::{self, Inherited};
use crate::daemon::output::Capture;
use crate::daemon::registry::{Source, Token};
use crate::daemon::spawner::pipe_sinks;
use crate::sys::process;
use pmtr_common::reason::Text;

/// A reexec under way: the new binary checks the state.
pub struct PendingReexec {
    checker: std::process::Child,
    reply: ReplyToken,
    binary: PathBuf,
    /// How the check ended, once it has.
    outcome: Option<ExitStatus>,
    /// When a check that has not ended is killed: a new binary that hangs
    /// must not keep every later reexec refused.
    deadline: Mono,
}

impl PendingReexec {
    pub fn checker(&self) -> Pid {
        self.checker.id() as Pid
    }

    /// When the check must have ended, while it has not.
    pub fn deadline(&self) -> Option<Mono> {
        self.outcome.is_none().then_some(self.deadline)
    }
}

/// The signal's name, for an exit saved by number.
fn signal_name(number: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(number).map_or("unknown signal", |s| s.as_str())
}

/// Whether each handed descriptor is named once: a state naming one twice
/// would have pmtr close it twice.
fn distinct(handed: &Handed) -> bool {
    let mut seen = HashSet::new();
    handed.fds().all(|fd| seen.insert(fd))
}

impl Daemon {
    /// Takes over the jobs `inherited` names, before the first start.
    pub(super) fn take_over(&mut self, inherited: Inherited) {
        let (mut state, crashed) = match inherited {
            Inherited::Nothing => return,
            Inherited::Crashed(state) => (state, true),
            Inherited::Exec(state) => (state, false),
        };
        // Descriptors are numbers in the process that wrote them: only the
        // same process, after its exec, may take them.
        let handed = state.handed.take().filter(|h| !crashed && distinct(h));
        let handed = handed.unwrap_or_default();
        if let Some(state_file) = &mut self.state_file {
            state_file.remember_starts(&state);
        }
        let lives: HashMap<String, Liveness> = state
            .jobs
            .iter()
            .map(|job| (job.saved.name.clone(), handover::liveness(job, crashed)))
            .collect();
        let saved = state.jobs.into_iter().map(|job| job.saved).collect();
        let now = self.clock.now();
        let liveness = |job: &pmtr_core::supervise::handover::SavedJob| {
            lives.get(&job.name).copied().unwrap_or(Liveness::Gone)
        };
        let actions = self.supervisor.adopt(saved, liveness, signal_name, now);
        for action in actions {
            match action {
                Action::Log { level, message } => self.logger.log(level, &message),
                Action::Signal { pgid, signal } => self.signal(pgid, signal),
                other => {
                    let message = format!("takeover: unexpected {other:?}");
                    self.logger.log(Level::Error, &message);
                }
            }
        }
        let running: Vec<(String, Pid)> = self
            .supervisor
            .jobs()
            .iter()
            .filter_map(|j| Some((j.def.name.clone(), j.phase.run()?.pid)))
            .collect();
        for (name, pid) in &running {
            if let Some(containment) = &mut self.containment {
                containment.adopt(name, *pid);
            }
            // After a crash none is pmtr's child; after an exec, those the
            // pmtr before had adopted are not either.
            if crashed || !process::is_child(*pid) {
                self.follow_adopted(name, *pid);
            }
        }
        self.resume_captures(handed, &running);
        self.state_dirty = true;
    }

    /// Follows a process pmtr adopted but did not start through a pidfd:
    /// its end is not reported to pmtr otherwise.
    fn follow_adopted(&mut self, name: &str, pid: Pid) {
        let followed = process::pidfd_open(pid).map_err(|errno| errno.to_string());
        let registered = followed.and_then(|pidfd| {
            let token = self
                .registry
                .add(pidfd.as_fd(), EpollFlags::EPOLLIN, Source::Adopted)
                .map_err(|errno| errno.to_string())?;
            Ok((token, pidfd))
        });
        match registered {
            Ok((token, pidfd)) => {
                self.adopted.insert(token, (pid, pidfd));
            }
            Err(why) => {
                // Its end would never be seen: ended now, and started again
                // once its group is gone, as after any exit.
                let message = format!(
                    "job {name} [{pid}]: unable to follow the adopted process ({why}): ending it"
                );
                self.logger.log(Level::Warning, &message);
                self.signal(pid, StopSignal::Kill);
                let status = ExitStatus::Unknown;
                self.apply(Event::Reaped { pid, status });
            }
        }
    }

    /// Adopted processes that ended: reaped as far as pmtr can tell.
    pub(super) fn adopted_ended(&mut self, tokens: &[Token]) {
        let mut events = Vec::new();
        for token in tokens {
            if let Some((pid, pidfd)) = self.adopted.remove(token) {
                self.registry.remove(pidfd.as_fd(), *token);
                events.push(Event::Reaped {
                    pid,
                    status: ExitStatus::Unknown,
                });
            }
        }
        self.apply_all(events);
    }

    /// The output pipes a reexec handed over, read again by this pmtr —
    /// those of jobs still running under the same pid; the others closed.
    fn resume_captures(&mut self, handed: Handed, running: &[(String, Pid)]) {
        for capture in handed.captures {
            let Some(pipe) = process::take_handed(capture.fd) else {
                continue;
            };
            let runs = running
                .iter()
                .any(|(name, pid)| *name == capture.job && *pid == capture.pid);
            let job = self
                .supervisor
                .jobs()
                .iter()
                .find(|j| j.def.name == capture.job);
            let sink = job.and_then(|j| pipe_sinks(&j.def).into_iter().nth(capture.index));
            let (true, Some(sink)) = (runs, sink) else {
                continue; // dropped: closed
            };
            let resumed = Capture::resume(capture, pipe, sink);
            if let Err(errno) = self.captures.watch(&mut self.registry, resumed) {
                let message = format!("unable to watch job output: {}", Text(errno));
                self.logger.log(Level::Error, &message);
            }
        }
    }

    /// After a turn that changed jobs: when to rewrite the state file
    /// (`state_due`) — in a turn of its own (at 10 000 jobs it takes
    /// 20 ms), once the starts of a round are all made, not sooner after
    /// the last write than its size allows; never while pmtr shuts down
    /// (the file goes at the exit).
    pub(super) fn state_changed(&mut self) {
        let busy = self.spawner.has_queued() || self.supervisor.is_shutting_down();
        if !self.state_dirty || busy || self.exit.is_some() || self.state_due.is_some() {
            return;
        }
        let Some(state_file) = &self.state_file else {
            return;
        };
        let now = self.clock.now();
        let jobs = self.supervisor.jobs().len();
        self.state_due = Some(state_file.next_write(now, jobs));
    }

    /// Rewrites the state file (`state_due` has come).
    pub(super) fn write_state(&mut self) {
        self.state_due = None;
        let busy = self.spawner.has_queued() || self.supervisor.is_shutting_down();
        if !self.state_dirty || busy || self.exit.is_some() {
            return;
        }
        let Some(state_file) = &mut self.state_file else {
            return;
        };
        let now = self.clock.now();
        self.state_dirty = false;
        let state = state_file.snapshot(&self.supervisor);
        if let Err(message) = state_file.write(&state, now) {
            self.logger.log(Level::Warning, &message);
        }
    }

    /// `pmtr-ctl reexec`, which the core let through: the binary now at
    /// pmtr's path checks the state as a child; the loop goes on meanwhile.
    pub(super) fn begin_reexec(&mut self, reply: ReplyToken) {
        if self.reexec.is_some() {
            return self.refuse_reexec(reply, "a reexec is in progress".into());
        }
        let started = handover::binary_path().and_then(|binary| {
            let Some(state_file) = &mut self.state_file else {
                return Err("pmtr has no control socket directory for its state".into());
            };
            let check = state_file.path().with_extension("check");
            let state = state_file.snapshot(&self.supervisor);
            pmtr_common::files::replace(
                &check,
                &check.with_extension("check.tmp"),
                &state.encode(),
            )
            .map_err(|e| format!("unable to write {}: {e}", check.display()))?;
            let checker = std::process::Command::new(&binary)
                .arg("--check-state")
                .arg(&check)
                .arg("-c")
                .arg(&self.config_path)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("unable to run {}: {e}", binary.display()))?;
            Ok(PendingReexec {
                checker,
                reply,
                binary,
                outcome: None,
                deadline: self.clock.now().plus_millis(self.reexec_check_millis),
            })
        });
        match started {
            Ok(pending) => {
                let message = format!("reexec: {} checks the state", pending.binary.display());
                self.logger.log(Level::Info, &message);
                self.reexec = Some(pending);
            }
            Err(why) => self.refuse_reexec(reply, why),
        }
    }

    fn refuse_reexec(&mut self, reply: ReplyToken, why: String) {
        self.logger
            .log(Level::Warning, &format!("reexec refused: {why}"));
        let message = format!("reexec refused: {why}");
        self.replies
            .push((reply, Reply::Done { ok: false, message }));
        self.answer_waiting();
    }

    /// The check of a reexec ended (reaped): the exec follows at the end
    /// of this turn, once the turn's events are applied.
    pub(super) fn reexec_checked(&mut self, status: ExitStatus) {
        if let Some(pending) = &mut self.reexec {
            pending.outcome = Some(status);
        }
    }

    /// Execs the new binary if its check accepted the state; says why not
    /// otherwise, and goes on. A check past its deadline is killed (its
    /// end comes with its reaping).
    pub(super) fn finish_reexec(&mut self) {
        let now = self.clock.now();
        if let Some(pending) = &mut self.reexec {
            if pending.deadline().is_some_and(|t| t <= now) {
                let message = format!(
                    "reexec: {} did not check the state within {:.1} sec: killing it",
                    pending.binary.display(),
                    self.reexec_check_millis as f64 / 1000.0
                );
                let _ = pending.checker.kill();
                pending.deadline = now.plus_millis(self.reexec_check_millis);
                self.logger.log(Level::Warning, &message);
            }
        }
        if self.reexec.as_ref().is_none_or(|p| p.outcome.is_none()) {
            return;
        }
        let Some(mut pending) = self.reexec.take() else {
            return;
        };
        if let Some(state_file) = &self.state_file {
            let _ = std::fs::remove_file(state_file.path().with_extension("check"));
        }
        if pending.outcome != Some(ExitStatus::Code(0)) {
            let mut said = String::new();
            if let Some(mut stderr) = pending.checker.stderr.take() {
                use std::io::Read;
                let _ = (&mut stderr).take(4096).read_to_string(&mut said);
            }
            let said = said.trim().replace('\n', "; ");
            let status = pending.outcome.map_or("?".into(), |s| s.to_string());
            let why = format!("the new pmtr refused the state ({status}): {said}");
            return self.refuse_reexec(pending.reply, why);
        }
        if let Some(why) = self.supervisor.handover_blocked() {
            return self.refuse_reexec(pending.reply, why);
        }
        self.exec_new(pending);
    }

    /// Hands everything over and execs the new binary; if the exec fails,
    /// takes the descriptors back and goes on.
    fn exec_new(&mut self, pending: PendingReexec) {
        let mut handed = Handed {
            control: self.control.as_ref().map(|c| c.listener_fd()),
            notify: self
                .notices
                .as_ref()
                .map(|n| (n.raw_fd(), n.address().to_string())),
            captures: Vec::new(),
        };
        let Daemon {
            captures,
            registry,
            logger,
            ..
        } = self;
        handed.captures = captures.hand_over(registry, &mut |job, pid, line, to_log| {
            if to_log {
                logger.log(Level::Info, &format!("{job}[{pid}]: {line}"));
            }
        });
        let Some(state_file) = &mut self.state_file else {
            return;
        };
        let mut state: State = state_file.snapshot(&self.supervisor);
        state.handed = Some(handed.clone());
        if let Err(message) = state_file.write(&state, self.clock.now()) {
            return self.refuse_reexec(pending.reply, message);
        }
        let path = state_file.path().to_path_buf();
        let fds: Vec<i32> = handed.fds().collect();
        let message = format!(
            "reexec: handing {} jobs to {}",
            self.supervisor.jobs().len(),
            pending.binary.display()
        );
        self.logger.log(Level::Info, &message);
        let message = format!("re-executing {}", pending.binary.display());
        self.replies
            .push((pending.reply, Reply::Done { ok: true, message }));
        self.answer_waiting();
        // To systemd (Type=notify) a reexec is a reload: the same pid, then
        // READY=1 from the new binary once its jobs are taken over.
        self.notifier.reloading();
        for &fd in &fds {
            let _ = process::keep_across_exec(fd, true);
        }
        let errno = process::exec(&pending.binary, &handover::next_args(&path));
        for &fd in &fds {
            let _ = process::keep_across_exec(fd, false);
        }
        let message = format!(
            "reexec: unable to exec {}: {}; going on",
            pending.binary.display(),
            Text(errno)
        );
        self.logger.log(Level::Error, &message);
        self.state_dirty = true;
    }
}
