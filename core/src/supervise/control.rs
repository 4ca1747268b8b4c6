//! Enabling and disabling jobs on request (UDP control, `pmtr-ctl`): an
//! override of the file's `disable` that lasts until the next reload.

use super::event::Level;
use super::job::{Next, Rest, StopReason};
use super::{messages, Actions, Supervisor};
use crate::time::Mono;

impl Supervisor {
    /// Enables or disables job `name` until the next reload. Unknown names
    /// are logged and skipped.
    pub(super) fn on_override(&mut self, name: &str, enabled: bool, now: Mono, out: &mut Actions) {
        let Some(index) = self.requested_job(name, out) else {
            return;
        };
        let job = &mut self.jobs[index];
        job.enabled_override = Some(enabled);
        out.log(Level::Info, messages::overridden(name, enabled));
        self.apply_enabled(index, enabled, now, out);
        self.report_soon(now);
    }

    /// Restarts job `name` now: stops it if it runs (then starts it at
    /// once), or starts it if it waits to restart or is done. A disabled
    /// job stays disabled.
    pub(super) fn on_restart(&mut self, name: &str, now: Mono, out: &mut Actions) {
        let Some(index) = self.requested_job(name, out) else {
            return;
        };
        let job = &mut self.jobs[index];
        if !job.enabled() {
            return;
        }
        out.log(Level::Info, messages::restart_requested(name));
        if job.instance.is_some() {
            self.stop(index, StopReason::Restart, now, out);
        } else if job.next != Next::Spawning {
            job.next = Next::StartAt(now);
        }
    }

    /// The job a request names, unless pmtr is shutting down; an unknown
    /// name is logged and skipped.
    fn requested_job(&self, name: &str, out: &mut Actions) -> Option<usize> {
        if self.shutdown.is_some() {
            return None;
        }
        let index = self
            .jobs
            .iter()
            .position(|j| j.def.name == name && j.stop != Some(StopReason::Remove));
        if index.is_none() {
            out.log(Level::Warning, messages::unknown_job(name));
        }
        index
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
        if enabled {
            match (job.instance, job.stop) {
                // Being stopped to stay down: come back once gone.
                (Some(_), Some(StopReason::Disable)) => job.stop = Some(StopReason::Restart),
                (None, _) if job.next == Next::Rest(Rest::Disabled) => {
                    job.next = Next::StartAt(now)
                }
                _ => {}
            }
        } else if job.instance.is_some() {
            if job.stop != Some(StopReason::Remove) {
                self.stop(index, StopReason::Disable, now, out);
            }
        } else {
            job.next = Next::Rest(Rest::Disabled);
        }
    }
}
