//! Rolling restarts of a job with `instances` (SPEC 11.10): a reload that
//! changes its definition restarts the copies one at a time, each up again
//! (running, and ready if it says how to tell) before the next is stopped,
//! so that a pool never goes fully down. A copy that does not come up
//! holds the roll: the others keep running their old definition.

use std::collections::VecDeque;

use super::event::{JobId, Level};
use super::job::{Phase, StopReason};
use super::{messages, Actions, Supervisor};
use crate::time::Mono;

#[derive(Debug)]
pub(super) struct Roll {
    /// The name of the job with instances.
    group: String,
    /// Copies still running their old definition, in order.
    queue: VecDeque<JobId>,
    /// The copy being restarted.
    current: Option<JobId>,
}

impl Supervisor {
    /// Queues running copies of `group` that a reload changed, to be
    /// restarted one after the other.
    pub(super) fn roll(&mut self, group: &str, copies: Vec<JobId>) {
        let Some(roll) = self.rolls.iter_mut().find(|r| r.group == group) else {
            self.rolls.push(Roll {
                group: group.to_string(),
                queue: copies.into(),
                current: None,
            });
            return;
        };
        for id in copies {
            if roll.current != Some(id) && !roll.queue.contains(&id) {
                roll.queue.push_back(id);
            }
        }
    }

    /// Moves every roll on: once its current copy is up, or will not come
    /// up by itself (done, failed, disabled, gone), stops the next copy
    /// that still runs its old definition.
    pub(super) fn advance_rolls(&mut self, now: Mono, out: &mut Actions) {
        if self.rolls.is_empty() {
            return;
        }
        if self.shutdown.is_some() {
            self.rolls.clear();
            return;
        }
        let mut rolls = std::mem::take(&mut self.rolls);
        for roll in &mut rolls {
            if let Some(id) = roll.current {
                match self.index_of(id) {
                    Some(index) if !self.is_settled(index) => continue,
                    _ => roll.current = None,
                }
            }
            while let Some(id) = roll.queue.pop_front() {
                let Some(index) = self.index_of(id) else {
                    continue;
                };
                let job = &self.jobs[index];
                // A copy that restarted meanwhile took its new definition.
                if job.pending.is_none() || job.is_being_removed() || !job.phase.is_active() {
                    continue;
                }
                let (name, left) = (job.def.name.clone(), roll.queue.len());
                out.log(Level::Info, messages::rolling_restart(&name, left));
                self.stop(index, StopReason::Restart, now, out);
                roll.current = Some(id);
                break;
            }
        }
        rolls.retain(|r| r.current.is_some() || !r.queue.is_empty());
        self.rolls = rolls;
    }

    fn index_of(&self, id: JobId) -> Option<usize> {
        self.position(id)
    }

    /// The copy at `index` is up with its new definition, or settled where
    /// waiting for it would hold the roll forever.
    fn is_settled(&self, index: usize) -> bool {
        let job = &self.jobs[index];
        if !job.enabled() {
            return true;
        }
        match job.phase {
            Phase::Running(run) => run.ready && job.pending.is_none(),
            Phase::Done(_) | Phase::Failed | Phase::Disabled => true,
            Phase::Waiting { .. }
            | Phase::Starting { .. }
            | Phase::Stopping { .. }
            | Phase::Draining { .. } => false,
        }
    }
}
