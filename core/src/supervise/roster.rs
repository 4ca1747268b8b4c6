//! The jobs in start order, and an index of the few that each turn's
//! decisions look at: the jobs waiting to start, the `wait` jobs holding
//! the rest back, each job's next deadline, the jobs still on their way
//! up, the `critical` jobs that ended. Every mutable access to a job marks
//! it, and the index is brought up to date for the marked jobs only, when
//! it is next read: a turn that starts 64 jobs of 10 000 updates 64
//! entries instead of reading 10 000 jobs four times.

use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, Index, IndexMut};

use super::job::{JobState, Phase};
use super::lifecycle::stop_timeout;
use super::policy::Policy;
use crate::time::Mono;

#[derive(Debug, Default)]
pub(super) struct Roster {
    jobs: Vec<JobState>,
    index: RosterIndex,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct RosterIndex {
    /// Jobs changed since the index was last brought up to date (repeats
    /// allowed); with `stale`, every job is.
    changed: Vec<usize>,
    stale: bool,
    /// What the entries were computed under: a change of either
    /// changes every running job's deadline.
    policy: Option<Policy>,
    shutting_down: bool,
    /// Each job's entry as last indexed, by position: its flags, one
    /// byte per job, and its deadline, kept only for the jobs with one
    /// (most jobs have none; the index costs a byte per job at rest).
    flags: Vec<u8>,
    deadline_of: HashMap<usize, Mono>,
    waiting: BTreeSet<usize>,
    gates: BTreeSet<usize>,
    deadlines: BTreeSet<(Mono, usize)>,
    coming: BTreeSet<usize>,
    ended_critical: BTreeSet<usize>,
    active: usize,
}

/// What the index knows of one job: each a function of the job alone
/// (and of the policy and whether pmtr is shutting down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    waiting: bool,
    gates: bool,
    /// The next time a process of the job needs the supervisor: a check,
    /// a timeout, a bounce, a SIGKILL, a probe. Not a waiting job's start,
    /// which depends on other jobs and files (`Supervisor::next_deadline`).
    deadline: Option<Mono>,
    /// Enabled and may still be on its way up: a candidate for holding
    /// back pmtr's own readiness.
    coming: bool,
    ended_critical: bool,
    active: bool,
}

const WAITING: u8 = 1;
const GATES: u8 = 2;
const COMING: u8 = 4;
const ENDED_CRITICAL: u8 = 8;
const ACTIVE: u8 = 16;

impl Entry {
    fn flags(&self) -> u8 {
        [
            (self.waiting, WAITING),
            (self.gates, GATES),
            (self.coming, COMING),
            (self.ended_critical, ENDED_CRITICAL),
            (self.active, ACTIVE),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, flag)| flags | flag)
    }

    fn from_parts(flags: u8, deadline: Option<Mono>) -> Entry {
        Entry {
            waiting: flags & WAITING != 0,
            gates: flags & GATES != 0,
            deadline,
            coming: flags & COMING != 0,
            ended_critical: flags & ENDED_CRITICAL != 0,
            active: flags & ACTIVE != 0,
        }
    }

    fn of(job: &JobState, policy: &Policy, shutting_down: bool) -> Entry {
        let coming = job.enabled()
            && match job.phase {
                Phase::Starting { .. } => true,
                Phase::Running(run) => !run.ready || job.def.once,
                Phase::Waiting { .. } => job.starts == 0 && !job.start_failed,
                _ => false,
            };
        Entry {
            waiting: matches!(job.phase, Phase::Waiting { .. }),
            gates: job.gates(),
            deadline: own_deadline(job, policy, shutting_down),
            coming,
            ended_critical: matches!(job.phase, Phase::Done(_) | Phase::Failed)
                && job.def.critical
                && !job.is_being_removed(),
            active: job.phase.is_active(),
        }
    }
}

/// When a `bounce every` job is next restarted; never while pmtr shuts
/// down.
pub(super) fn bounce_due(job: &JobState, started: Mono, shutting_down: bool) -> Option<Mono> {
    if shutting_down {
        return None;
    }
    let secs = job.def.extras.bounce_every_secs?;
    Some(started.plus_secs(secs))
}

/// When the process side of `job` next needs the supervisor; each phase
/// names its own deadline.
fn own_deadline(job: &JobState, policy: &Policy, shutting_down: bool) -> Option<Mono> {
    let grace = || stop_timeout(policy, &job.def);
    match job.phase {
        Phase::Running(run) => [
            bounce_due(job, run.started, shutting_down),
            run.check.due(),
            run.check_expires(&job.def),
            run.ready_due(&job.def),
            run.watchdog_due,
        ]
        .into_iter()
        .flatten()
        .min(),
        Phase::Stopping { signals, .. } => signals.kill_due(grace()),
        Phase::Draining {
            signals, probe_at, ..
        } => {
            let kill = signals.and_then(|s| s.kill_due(grace()));
            [kill, probe_at].into_iter().flatten().min()
        }
        Phase::Waiting { .. }
        | Phase::Starting { .. }
        | Phase::Done(_)
        | Phase::Failed
        | Phase::Disabled => None,
    }
}

impl Roster {
    pub(super) fn with_capacity(capacity: usize) -> Roster {
        Roster {
            jobs: Vec::with_capacity(capacity),
            index: RosterIndex {
                stale: true,
                ..RosterIndex::default()
            },
        }
    }

    pub(super) fn push(&mut self, job: JobState) {
        self.jobs.push(job);
        self.index.stale = true;
    }

    pub(super) fn remove(&mut self, position: usize) -> JobState {
        self.index.stale = true;
        self.jobs.remove(position)
    }

    /// Every job, leaving none: for a reload, which hands back the new
    /// list with `replace`.
    pub(super) fn take(&mut self) -> Vec<JobState> {
        self.index.stale = true;
        std::mem::take(&mut self.jobs)
    }

    pub(super) fn replace(&mut self, jobs: Vec<JobState>) {
        self.index.stale = true;
        self.jobs = jobs;
    }

    pub(super) fn iter_mut(&mut self) -> std::slice::IterMut<'_, JobState> {
        self.index.stale = true;
        self.jobs.iter_mut()
    }

    /// Brings the index up to date with every change since it was last.
    pub(super) fn refresh(&mut self, policy: &Policy, shutting_down: bool) {
        let index = &mut self.index;
        if index.policy != Some(*policy) || index.shutting_down != shutting_down {
            index.policy = Some(*policy);
            index.shutting_down = shutting_down;
            index.stale = true;
        }
        if index.stale {
            index.rebuild(&self.jobs, policy);
            return;
        }
        let changed = std::mem::take(&mut index.changed);
        for &position in &changed {
            if let Some(job) = self.jobs.get(position) {
                let entry = Entry::of(job, policy, shutting_down);
                index.update(position, entry);
            }
        }
        // The allocation is kept for the next turn's marks.
        index.changed = changed;
        index.changed.clear();
    }

    /// Positions of the jobs waiting to start, in start order.
    pub(super) fn waiting(&self) -> impl Iterator<Item = usize> + '_ {
        self.fresh().waiting.iter().copied()
    }

    /// The position of the first job that holds back the jobs after it.
    pub(super) fn first_gate(&self) -> Option<usize> {
        self.fresh().gates.first().copied()
    }

    /// The earliest deadline of any job's processes.
    pub(super) fn earliest_deadline(&self) -> Option<Mono> {
        self.fresh().deadlines.first().map(|&(due, _)| due)
    }

    /// Positions of the jobs whose processes' deadline has come by `now`,
    /// in start order.
    pub(super) fn due_by(&self, now: Mono) -> Vec<usize> {
        let mut due: Vec<usize> = self
            .fresh()
            .deadlines
            .range(..=(now, usize::MAX))
            .map(|&(_, position)| position)
            .collect();
        due.sort_unstable();
        due
    }

    /// Positions of the enabled jobs that may still be on their way up,
    /// in start order.
    pub(super) fn coming(&self) -> impl Iterator<Item = usize> + '_ {
        self.fresh().coming.iter().copied()
    }

    /// The first `critical` job that ended for good.
    pub(super) fn first_ended_critical(&self) -> Option<usize> {
        self.fresh().ended_critical.first().copied()
    }

    /// How many jobs have a process group, or are about to.
    pub(super) fn active(&self) -> usize {
        self.fresh().active
    }

    /// Panics unless the index, brought up to date change by change,
    /// equals one built afresh from the jobs: what the tests check after
    /// every event.
    #[cfg(test)]
    pub(super) fn assert_index_matches_a_rebuild(&mut self, policy: &Policy, shutting_down: bool) {
        self.refresh(policy, shutting_down);
        let mut rebuilt = RosterIndex {
            policy: Some(*policy),
            shutting_down,
            ..RosterIndex::default()
        };
        rebuilt.rebuild(&self.jobs, policy);
        assert_eq!(
            self.index, rebuilt,
            "the roster's index drifted from its jobs"
        );
    }

    fn fresh(&self) -> &RosterIndex {
        debug_assert!(
            !self.index.stale && self.index.changed.is_empty(),
            "the roster's index is read before `refresh`"
        );
        &self.index
    }
}

impl RosterIndex {
    fn rebuild(&mut self, jobs: &[JobState], policy: &Policy) {
        let shutting_down = self.shutting_down;
        let entries: Vec<Entry> = jobs
            .iter()
            .map(|job| Entry::of(job, policy, shutting_down))
            .collect();
        let positions = |wanted: fn(&Entry) -> bool| -> BTreeSet<usize> {
            let entries = entries.iter().enumerate();
            entries.filter(|(_, e)| wanted(e)).map(|(i, _)| i).collect()
        };
        self.waiting = positions(|e| e.waiting);
        self.gates = positions(|e| e.gates);
        self.coming = positions(|e| e.coming);
        self.ended_critical = positions(|e| e.ended_critical);
        self.deadline_of = (entries.iter().enumerate())
            .filter_map(|(i, e)| e.deadline.map(|due| (i, due)))
            .collect();
        self.deadlines = self.deadline_of.iter().map(|(&i, &due)| (due, i)).collect();
        self.active = entries.iter().filter(|e| e.active).count();
        self.flags = entries.iter().map(Entry::flags).collect();
        self.changed.clear();
        self.stale = false;
    }

    fn update(&mut self, position: usize, new: Entry) {
        let Some(flags) = self.flags.get_mut(position) else {
            return;
        };
        let old = Entry::from_parts(*flags, self.deadline_of.get(&position).copied());
        if old == new {
            return;
        }
        *flags = new.flags();
        let sets = [
            (&mut self.waiting, old.waiting, new.waiting),
            (&mut self.gates, old.gates, new.gates),
            (&mut self.coming, old.coming, new.coming),
            (
                &mut self.ended_critical,
                old.ended_critical,
                new.ended_critical,
            ),
        ];
        for (set, was, is) in sets {
            if was && !is {
                set.remove(&position);
            } else if is && !was {
                set.insert(position);
            }
        }
        if old.deadline != new.deadline {
            if let Some(due) = old.deadline {
                self.deadlines.remove(&(due, position));
            }
            match new.deadline {
                Some(due) => {
                    self.deadlines.insert((due, position));
                    self.deadline_of.insert(position, due);
                }
                None => {
                    self.deadline_of.remove(&position);
                }
            }
        }
        if new.active != old.active {
            self.active = if new.active {
                self.active + 1
            } else {
                self.active.saturating_sub(1)
            };
        }
    }
}

impl Deref for Roster {
    type Target = [JobState];

    fn deref(&self) -> &[JobState] {
        &self.jobs
    }
}

impl Index<usize> for Roster {
    type Output = JobState;

    fn index(&self, position: usize) -> &JobState {
        &self.jobs[position]
    }
}

/// Marks the job changed: whoever borrows it mutably may change what the
/// index knows of it.
impl IndexMut<usize> for Roster {
    fn index_mut(&mut self, position: usize) -> &mut JobState {
        let index = &mut self.index;
        if !index.stale {
            if index.changed.len() >= self.jobs.len() {
                // Marks repeat; past one per job, rebuilding is cheaper.
                index.stale = true;
                index.changed.clear();
            } else {
                index.changed.push(position);
            }
        }
        &mut self.jobs[position]
    }
}

impl<'a> IntoIterator for &'a Roster {
    type Item = &'a JobState;
    type IntoIter = std::slice::Iter<'a, JobState>;

    fn into_iter(self) -> Self::IntoIter {
        self.jobs.iter()
    }
}
