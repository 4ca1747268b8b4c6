//! Finding the job an event names — by id, or by the process group it
//! leads — without reading every job. The maps are hints: each answer is
//! checked against `jobs`, and a miss falls back to a scan, so a stale or
//! missing entry costs time, never a wrong job.

use super::event::{JobId, Pid};
use super::job::Phase;
use super::Supervisor;

impl Supervisor {
    /// Where job `id` is in `jobs`.
    pub(super) fn position(&self, id: JobId) -> Option<usize> {
        match self.positions.get(&id) {
            Some(&index) if self.jobs.get(index).is_some_and(|j| j.id == id) => Some(index),
            _ => self.jobs.iter().position(|j| j.id == id),
        }
    }

    /// Rebuilds the positions after jobs were added, removed or moved.
    pub(super) fn index_positions(&mut self) {
        self.positions = self
            .jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.id, i))
            .collect();
        self.names.clear();
        for (i, job) in self.jobs.iter().enumerate() {
            self.names.entry(job.def.name.clone()).or_default().push(i);
            if let Some(group) = job.group() {
                if group != job.def.name {
                    self.names.entry(group.to_string()).or_default().push(i);
                }
            }
        }
        // Entries of runs long over, kept since no event named them.
        if self.groups.len() > 2 * self.jobs.len() + 64 {
            let jobs = &self.jobs;
            let positions = &self.positions;
            self.groups.retain(|pid, id| {
                positions
                    .get(id)
                    .is_some_and(|&i| jobs[i].phase.group() == Some(*pid))
            });
        }
    }

    /// The job whose phase matches `wanted` for group `pid`: its leader
    /// (`Phase::leader`) or its draining group, as the caller asks.
    pub(super) fn position_of_group(
        &self,
        pid: Pid,
        wanted: impl Fn(&Phase) -> bool,
    ) -> Option<usize> {
        let hinted = self
            .groups
            .get(&pid)
            .and_then(|&id| self.position(id))
            .filter(|&i| wanted(&self.jobs[i].phase));
        hinted.or_else(|| self.jobs.iter().position(|j| wanted(&j.phase)))
    }

    /// The jobs that the map says `name` may name (by their name or their
    /// group), checked against `jobs`. A name the map does not know names
    /// no job: the map is rebuilt whenever the list changes, and a job's
    /// name and group never change in place.
    pub(super) fn candidates(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        self.names
            .get(name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| i < self.jobs.len())
    }

    /// Forgets group `pid`: it is gone.
    pub(super) fn forget_group(&mut self, pid: Pid) {
        self.groups.remove(&pid);
    }
}
