//! When pmtr sends its status report (`report to`): at start, every 10 s,
//! and soon after an enable or disable. The shell builds and sends it.

use super::event::Action;
use super::job::{JobState, Phase};
use super::{Actions, Supervisor};
use crate::proto::report::{self, ReportJob};
use crate::status::{job_status, JobStatus};
use crate::time::Mono;

impl Supervisor {
    /// Every job's status at `now`, in start order (for metrics).
    pub fn statuses(&self, now: Mono) -> Vec<JobStatus> {
        self.statuses_of(|_| true, now)
    }

    /// The status of the jobs `wanted` picks, with the job each waits for
    /// when `after` holds it.
    pub(super) fn statuses_of(
        &self,
        wanted: impl Fn(&JobState) -> bool,
        now: Mono,
    ) -> Vec<JobStatus> {
        let status_of = |job: &JobState| {
            let mut status = job_status(job, now);
            if let Phase::Waiting { .. } = job.phase {
                status.waiting_for = self.unready_dependency(job).cloned();
            }
            status
        };
        self.jobs
            .iter()
            .filter(|j| wanted(j))
            .map(status_of)
            .collect()
    }

    /// What the status report lists at `now`: the jobs that are restarted
    /// when they exit (not `once` jobs, nor jobs done), with their command.
    pub fn report(&self, now: Mono) -> Vec<ReportJob> {
        let restartable: Vec<_> = self.jobs.iter().filter(|j| !j.def.once).collect();
        let statuses: Vec<_> = restartable.iter().map(|j| job_status(j, now)).collect();
        let commands: Vec<&str> = restartable
            .iter()
            .map(|j| j.def.cmd.first().map_or("", String::as_str))
            .collect();
        report::jobs_of(&statuses, &commands)
    }

    /// Reports are sent only with a `report to` destination.
    pub(super) fn set_reporting(&mut self, reporting: bool, now: Mono) {
        self.report_due = match (reporting, self.report_due) {
            (false, _) => None,
            (true, Some(due)) => Some(due),
            (true, None) => Some(now),
        };
    }

    /// A report soon: the state changed in a way a collector shows.
    pub(super) fn report_soon(&mut self, now: Mono) {
        if let Some(due) = &mut self.report_due {
            *due = (*due).min(now.plus_millis(self.policy.report_soon_millis));
        }
    }

    pub(super) fn report_if_due(&mut self, now: Mono, out: &mut Actions) {
        if self.started && self.shutdown.is_none() && self.report_due.is_some_and(|due| due <= now)
        {
            out.push(Action::SendReport);
            self.report_due = Some(now.plus_millis(self.policy.report_every_millis));
        }
    }
}
