//! The supervisor's side of watched files: the configuration file (reload)
//! and the dependency files of jobs. The shell reports that a file was
//! touched; the supervisor reads a finished save at once, lets any other
//! burst of writes settle, asks the shell to read or hash, and applies what
//! changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::event::{Action, JobId, Level, ReplyToken};
use super::job::{JobState, Phase, StopReason};
use super::policy::Policy;
use super::reload::{self, Change};
use super::{messages, Actions, Supervisor};
use crate::config::{Config, Job};
use crate::time::Mono;

/// A pending read of touched files: due after the burst settles.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settle {
    first: Mono,
    pub(super) due: Mono,
}

impl Settle {
    /// Another touch at `now`: wait for quiet again, but not past the cap
    /// counted from the first touch.
    fn touched(policy: &Policy, previous: Option<Settle>, now: Mono) -> Settle {
        let first = previous.map_or(now, |p| p.first);
        let due = now
            .plus_millis(policy.settle_millis)
            .min(first.plus_millis(policy.settle_max_millis));
        Settle { first, due }
    }
}

impl Supervisor {
    /// A save is read at once: its writer is done, and waiting would only
    /// delay it. Anything else may be the middle of a burst.
    pub(super) fn on_config_touched(&mut self, saved: bool, now: Mono, out: &mut Actions) {
        if self.shutdown.is_some() {
            return;
        }
        if saved {
            self.reload_due = None;
            out.push(Action::ReadConfig { forced: false });
        } else {
            self.reload_due = Some(Settle::touched(&self.policy, self.reload_due, now));
        }
    }

    pub(super) fn on_reload_requested(&mut self, reply: Option<ReplyToken>, out: &mut Actions) {
        if self.shutdown.is_some() {
            out.reply(reply, false, messages::shutting_down_reply());
            return;
        }
        self.reload_due = None;
        self.reload_replies.extend(reply);
        out.push(Action::ReadConfig { forced: true });
    }

    pub(super) fn on_dependency_touched(&mut self, path: String, now: Mono) {
        if self.shutdown.is_none() {
            self.touched.insert(path);
            self.hash_due = Some(Settle::touched(&self.policy, self.hash_due, now));
        }
    }

    /// Reads or hashes what settled by `now`.
    pub(super) fn files_due(&mut self, now: Mono, out: &mut Actions) {
        if self.shutdown.is_some() {
            return;
        }
        if self.reload_due.is_some_and(|s| s.due <= now) {
            self.reload_due = None;
            out.push(Action::ReadConfig { forced: false });
        }
        if self.hash_due.is_some_and(|s| s.due <= now) {
            self.hash_due = None;
            let paths = std::mem::take(&mut self.touched).into_iter().collect();
            out.push(Action::HashFiles { paths });
        }
    }

    pub(super) fn on_config_read(
        &mut self,
        hash: u64,
        forced: bool,
        result: Result<Box<Config>, String>,
        now: Mono,
        out: &mut Actions,
    ) {
        if self.shutdown.is_some() {
            for token in std::mem::take(&mut self.reload_replies) {
                out.reply(Some(token), false, messages::shutting_down_reply());
            }
            return;
        }
        if !forced && hash == self.config_hash {
            out.log(Level::Debug, messages::config_unchanged());
            return;
        }
        // A forced read answers the requests that asked for it.
        let waiting = std::mem::take(&mut self.reload_replies);
        self.config_hash = hash;
        out.log(Level::Info, messages::rescanning());
        let (ok, answer) = match &result {
            Err(errors) => (false, messages::reload_refused_reply(errors)),
            Ok(_) => (true, messages::reloaded_reply().to_string()),
        };
        match result {
            Err(errors) => out.log(Level::Error, messages::reload_failed(&errors)),
            Ok(config) => self.apply_config(&config, now, out),
        }
        for token in waiting {
            out.reply(Some(token), ok, answer.clone());
        }
    }

    /// Applies a valid configuration minimally: new jobs start, deleted
    /// jobs stop, changed jobs restart with their new definition, unchanged
    /// jobs are not touched (same pid, same timers).
    fn apply_config(&mut self, config: &Config, now: Mono, out: &mut Actions) {
        self.globals = config.globals.clone();
        out.push(Action::ApplyGlobals {
            globals: Box::new(self.globals.clone()),
        });
        let current: Vec<(&str, &Job)> = self
            .jobs
            .iter()
            .map(|j| (j.def.name.as_str(), j.effective()))
            .collect();
        let changes = reload::diff(&current, config);
        let mut old: Vec<Option<JobState>> = self.jobs.take().into_iter().map(Some).collect();
        // By name, not by scanning: a reload of 10 000 jobs is one pass.
        let slots: HashMap<String, usize> = old
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| Some((slot.as_ref()?.def.name.clone(), i)))
            .collect();
        let mut take = |name: &str| old.get_mut(*slots.get(name)?).and_then(Option::take);
        let mut next = Vec::with_capacity(config.jobs.len());
        let mut leaving = Vec::new();
        let mut stops = Vec::new();
        let mut overridden = Vec::new();
        let mut rechecks = Vec::new();
        let mut rolling: BTreeMap<String, Vec<JobId>> = BTreeMap::new();
        for change in changes {
            match change {
                Change::Add(def) => {
                    out.log(Level::Info, messages::job_added(&def.name));
                    let id = self.new_id();
                    next.push(JobState::new(id, def));
                }
                Change::Keep(name) => {
                    let Some(mut job) = take(&name) else { continue };
                    if keep(&mut job) {
                        overridden.push(next.len());
                    }
                    next.push(job);
                }
                Change::Replace(def) => {
                    let Some(mut job) = take(&def.name) else {
                        continue;
                    };
                    out.log(Level::Info, messages::job_changed(&def.name));
                    let group = def.extras.instance.as_ref().map(|i| i.group.clone());
                    match (replace(&mut job, def, now), group) {
                        // Copies of a pool restart one at a time.
                        (Some(StopReason::Restart), Some(group)) => {
                            rolling.entry(group).or_default().push(job.id)
                        }
                        (Some(reason), _) => stops.push((next.len(), reason)),
                        (None, _) => {}
                    }
                    next.push(job);
                }
                Change::Recheck(def) => {
                    let Some(mut job) = take(&def.name) else {
                        continue;
                    };
                    if job.pending.is_some() || job.is_being_removed() {
                        // On its way to another definition: this one follows.
                        out.log(Level::Info, messages::job_changed(&def.name));
                        if let Some(reason) = replace(&mut job, def, now) {
                            stops.push((next.len(), reason));
                        }
                    } else {
                        out.log(Level::Info, messages::job_rechecked(&def.name));
                        if keep(&mut job) {
                            overridden.push(next.len());
                        }
                        rechecks.push((next.len(), def));
                    }
                    next.push(job);
                }
                Change::Remove(name) => {
                    let Some(job) = take(&name) else { continue };
                    out.log(Level::Info, messages::job_removed(&name));
                    if job.phase.is_active() {
                        leaving.push(job);
                    } else {
                        self.end_escapees(&job.def, now, out);
                    }
                }
            }
        }
        let first_leaving = next.len();
        next.extend(leaving);
        self.jobs.replace(next);
        self.reindex();
        for index in (first_leaving..self.jobs.len()).rev() {
            self.stop(index, StopReason::Remove, now, out);
        }
        for (index, reason) in stops {
            self.stop(index, reason, now, out);
        }
        for (index, def) in rechecks {
            self.recheck(index, def, now, out);
        }
        for (group, copies) in rolling {
            self.roll(&group, copies);
        }
        self.advance_rolls(now, out);
        for index in overridden {
            let enabled = !self.jobs[index].def.disabled;
            self.apply_enabled(index, enabled, now, out);
        }
        // Rechecks may have brought the first `after` in.
        self.reindex();
        out.push(Action::WatchFiles {
            paths: self.dependency_paths(),
        });
        self.set_reporting(!config.globals.report_to.is_empty(), now);
        self.report_soon(now);
    }

    /// New content hashes: a job whose dependency's content changed is
    /// restarted; a job waiting for a missing dependency may now start.
    pub(super) fn on_files_hashed(
        &mut self,
        hashes: Vec<(String, Option<u64>)>,
        now: Mono,
        out: &mut Actions,
    ) {
        let mut changed = BTreeSet::new();
        for (path, hash) in hashes {
            let before = self.dependencies.insert(path.clone(), hash);
            if let (Some(Some(a)), Some(b)) = (before, hash) {
                if a != b {
                    changed.insert(path);
                }
            }
        }
        if changed.is_empty() || self.shutdown.is_some() {
            return;
        }
        for index in 0..self.jobs.len() {
            let job = &self.jobs[index];
            if !matches!(job.phase, Phase::Running(_)) {
                continue;
            }
            let changed_path = job.dependencies().find(|p| changed.contains(p));
            if let Some(path) = changed_path {
                out.log(
                    Level::Info,
                    messages::dependency_changed(&job.def.name, &path),
                );
                self.stop(index, StopReason::Restart, now, out);
            }
        }
    }
}

/// A job the new file keeps as it is. True when a control request's
/// override ended (the file rules again) and must be undone.
fn keep(job: &mut JobState) -> bool {
    if job.is_being_removed() {
        // Deleted, then put back while still stopping.
        job.phase.set_stop_reason(StopReason::Restart);
    }
    job.enabled_override
        .take()
        .is_some_and(|o| o == job.def.disabled)
}

/// A job the new file changes to `def`: taken at once if it has no
/// process, else pending until its stop — the reason returned.
fn replace(job: &mut JobState, def: Job, now: Mono) -> Option<StopReason> {
    if def.wait {
        job.gate_open = false;
    }
    job.start_failed = false;
    job.rapid_exits = 0;
    job.enabled_override = None;
    if job.phase.is_active() {
        let reason = if def.disabled {
            StopReason::Disable
        } else {
            StopReason::Restart
        };
        job.pending = Some(Box::new(def));
        return Some(reason);
    }
    job.phase = if def.disabled {
        Phase::Disabled
    } else {
        Phase::waiting(now)
    };
    job.def = Arc::new(def);
    job.pending = None;
    None
}
