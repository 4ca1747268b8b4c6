//! The loop's part in containment and usage (SPEC 11.7): signals that
//! also reach a job's cgroup, cgroups that emptied, OOM kills, what jobs
//! use (measured on a helper thread for a status or the metrics), and the
//! end of whatever the jobs left re-parented to pmtr once they are gone.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use pmtr_core::config::StopSignal;
use pmtr_core::proto::local::Response;
use pmtr_core::supervise::event::{Event, Level, Pid};
use pmtr_core::time::Mono;

use super::{Daemon, USAGE_EVERY_MILLIS};
use crate::daemon::usage::{self, Purpose};
use crate::sys::process;
use pmtr_common::reason::Text;

impl Daemon {
    /// After every job is gone: ends each process still re-parented to
    /// pmtr — what a job left behind outside its process group and its
    /// cgroup, or every such process where pmtr has no cgroup — with
    /// SIGTERM, then SIGKILL after the kill grace (or at once on a second
    /// TERM or INT); then removes the jobs' cgroups. Nothing a job started
    /// outlives pmtr (SPEC 11.7).
    pub(super) fn end_leftovers(&mut self) {
        let left = process::children();
        if !left.is_empty() {
            let message = format!("ending {} processes the jobs left behind", left.len());
            self.logger.log(Level::Info, &message);
            for &pid in &left {
                process::signal_process(pid, Signal::SIGTERM);
            }
            let grace = self.supervisor.policy().kill_after_millis;
            if !self.wait_for_children(self.clock.now().plus_millis(grace)) {
                let left = process::children();
                let message = format!("sending SIGKILL to {} processes left behind", left.len());
                self.logger.log(Level::Info, &message);
                for pid in left {
                    process::signal_process(pid, Signal::SIGKILL);
                }
                self.wait_for_children(self.clock.now().plus_millis(grace));
            }
        }
        if let Some(containment) = &mut self.containment {
            containment.remove_unless(|_| false);
        }
    }

    /// Reaps until pmtr has no children or `deadline` passes (false), or
    /// a second TERM or INT asks for the end now (false).
    pub(super) fn wait_for_children(&mut self, deadline: Mono) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            process::reap_some(usize::MAX);
            if process::children().is_empty() {
                return true;
            }
            let now = self.clock.now();
            if deadline <= now {
                return false;
            }
            let millis = deadline.millis_since(now).min(i32::MAX as u64) as i32;
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
            if let Err(errno) = poll(&mut fds, timeout) {
                if errno != Errno::EINTR {
                    return false;
                }
            }
            while let Ok(Some(info)) = self.signals.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == Signal::SIGTERM as i32 || signo == Signal::SIGINT as i32 {
                    return false;
                }
            }
        }
    }

    /// Sends each removed job's signal to the processes it left behind
    /// re-parented to pmtr (`Action::EndEscapees`): pmtr's children that
    /// lead no job and carry the removed job's mark. One look at pmtr's
    /// children serves every job removed in the turn.
    pub(super) fn end_escapees(&mut self, removed: &[(String, StopSignal)]) {
        let leaders: HashSet<Pid> = self
            .supervisor
            .jobs()
            .iter()
            .filter_map(|j| j.phase.leader())
            .collect();
        let mut ended: HashMap<&str, usize> = HashMap::new();
        for pid in process::children() {
            if leaders.contains(&pid) {
                continue;
            }
            let Some(mark) = process::job_mark(pid) else {
                continue;
            };
            if let Some((name, signal)) = removed.iter().find(|(n, _)| n.as_bytes() == mark) {
                process::signal_process_and_group(pid, *signal);
                *ended.entry(name).or_default() += 1;
            }
        }
        for (name, signal) in removed {
            if let Some(count) = ended.get(name.as_str()) {
                let signal = signal.name();
                let message = format!(
                    "job {name} left {count} processes outside its group: sending {signal} to them"
                );
                self.logger.log(Level::Info, &message);
            }
        }
    }

    /// Says which of the jobs whose leaders SIGKILL ended (`killed`, reaped
    /// together) the OOM killer ended.
    pub(super) fn log_oom_kills(&mut self, killed: &[Pid]) {
        let counted = self.oom.counted_since();
        if counted == 0 {
            return;
        }
        let leaders: Vec<Pid> = killed
            .iter()
            .copied()
            .filter(|&pid| {
                self.supervisor
                    .jobs()
                    .iter()
                    .any(|j| j.phase.leader() == Some(pid))
            })
            .collect();
        for pid in usage::oom_killed(&leaders, counted, self.containment.as_mut()) {
            let jobs = self.supervisor.jobs();
            if let Some(job) = jobs.iter().find(|j| j.phase.leader() == Some(pid)) {
                let message = format!("job {} killed by the OOM killer", job.def.name);
                self.logger.log(Level::Warning, &message);
            }
        }
    }

    /// Jobs whose cgroup emptied: gone, if they were draining.
    pub(super) fn cgroups_emptied(&mut self) {
        let Some(containment) = &mut self.containment else {
            return;
        };
        let events = containment
            .emptied()
            .into_iter()
            .map(|pgid| Event::Probed { pgid, alive: false })
            .collect();
        self.apply_all(events);
        // A deleted job's cgroup goes once it is empty.
        self.forget_deleted_jobs();
    }

    /// Sends `signal` to a job's process group; a kill also ends what left
    /// the group, through the job's cgroup.
    pub(super) fn signal(&mut self, pgid: Pid, signal: StopSignal) {
        if let Err(errno) = process::signal_group(pgid, signal) {
            let message = format!("unable to signal process group {pgid}: {}", Text(errno));
            self.logger.log(Level::Error, &message);
        }
        if signal != StopSignal::Kill {
            return;
        }
        if let Some(Err(message)) = self.containment.as_ref().map(|c| c.kill(pgid)) {
            self.logger.log(Level::Error, &message);
        }
    }

    /// Reads what running jobs use, for the metrics file, and rewrites it.
    pub(super) fn refresh_usage(&mut self, now: Mono) {
        self.usage_due = self
            .metrics
            .is_some()
            .then(|| now.plus_millis(USAGE_EVERY_MILLIS));
        let statuses = self.supervisor.statuses(now);
        let query = usage::query(&statuses, self.containment.as_ref());
        self.measure(query, Purpose::Metrics);
    }

    /// Measures what jobs use on a thread; what it is for follows when it
    /// is in (`measured`), at once if no thread could be had.
    pub(super) fn measure(&mut self, query: usage::Query, purpose: Purpose) {
        if let Some((purpose, measured)) = self.measurer.start(&mut self.registry, query, purpose) {
            self.measured(purpose, measured);
        }
    }

    /// A measurement is in: the status answer it was for goes out, or the
    /// metrics file is brought up to date.
    pub(super) fn measured(&mut self, purpose: Purpose, measured: usage::Measured) {
        match purpose {
            Purpose::Status {
                client,
                mut responses,
            } => {
                for response in &mut responses {
                    if let Response::Status { jobs } = response {
                        usage::apply(jobs, &measured);
                    }
                }
                let now = self.clock.now();
                if let Some(control) = &mut self.control {
                    control.respond(&mut self.registry, client, &responses, now);
                }
            }
            Purpose::Metrics => {
                self.usage = measured;
                self.update_metrics();
            }
        }
    }
}
