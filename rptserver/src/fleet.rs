//! The fleet as the collector knows it: each reporting host and its jobs,
//! from the reports received, and what changed when. Every change an
//! operator would see (a job up or down, enabled or disabled, restarted,
//! flapping, a host stale, gone or new) takes a new generation number, so
//! that a viewer can ask only for what changed since the generation it has
//! (`views.rs`). Pure: every function takes `now` (seconds, monotonic) from
//! the caller.

use std::collections::{BTreeMap, VecDeque};

use pmtr_core::proto::report::Report;

/// A host not heard from for this long is marked stale...
pub const STALE_SECS: f64 = 25.0;
/// ...and forgotten after this long.
pub const FORGET_SECS: f64 = 60.0;
/// A job missing from a host's reports for this long is gone from it (a
/// split report sends jobs in several datagrams, so a job is not dropped
/// for being absent from one).
pub const JOB_GONE_SECS: f64 = 25.0;
/// A job seen to restart this many times...
pub const FLAP_RESTARTS: usize = 2;
/// ...within this long is flapping.
pub const FLAP_WINDOW_SECS: f64 = 600.0;
/// Reports carry whole seconds and arrive late by up to a few: a start
/// time that moves by less is the same start.
const SAME_START_SECS: f64 = 2.5;
/// Names of forgotten hosts kept for viewers that ask what changed; a
/// viewer further behind gets the whole fleet.
const REMOVALS_KEPT: usize = 100_000;

/// How much reports may make the collector keep (SPEC 11.9): anyone who
/// reaches the UDP port can send reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Reports from more hosts are dropped.
    pub max_hosts: usize,
    /// Jobs in all; reported jobs beyond are dropped.
    pub max_jobs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_hosts: 20_000,
            max_jobs: 200_000,
        }
    }
}

/// What `record` kept of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// All of it.
    Whole,
    /// The host, without this many jobs (`max_jobs`).
    WithoutJobs(usize),
    /// Nothing: a new host, and `max_hosts` are known.
    Dropped,
}

#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) enabled: bool,
    /// Seconds since start, as reported...
    pub(crate) seconds: u64,
    /// ...at this time.
    pub(crate) seen_at: f64,
    pub(crate) pid: Option<i32>,
    pub(crate) cmd: Option<String>,
    /// When the running instance started (`seen_at - seconds`), kept from
    /// its first report so that report jitter does not move it.
    started_at: Option<f64>,
    /// The pid of the last instance seen running.
    last_running_pid: Option<i32>,
    /// When restarts were seen, within the flapping window.
    restarts: Vec<f64>,
}

impl Job {
    /// Running: enabled, with a pid (or, from the original's three-field
    /// lines, simply enabled).
    pub(crate) fn up(&self) -> bool {
        self.enabled && self.pid.is_none_or(|p| p != 0)
    }

    pub(crate) fn flapping(&self) -> bool {
        self.restarts.len() >= FLAP_RESTARTS
    }

    pub(crate) fn restarts_seen(&self) -> usize {
        self.restarts.len()
    }

    pub(crate) fn uptime(&self, now: f64) -> Option<u64> {
        self.enabled
            .then(|| self.seconds + (now - self.seen_at).max(0.0) as u64)
    }

    /// What a viewer sees of the job, to tell a change from a routine
    /// report.
    fn looks(&self) -> (bool, Option<i32>, Option<&str>, bool, Option<f64>) {
        (
            self.enabled,
            self.pid,
            self.cmd.as_deref(),
            self.flapping(),
            self.started_at,
        )
    }

    fn forget_old_restarts(&mut self, now: f64) {
        self.restarts.retain(|&t| now - t < FLAP_WINDOW_SECS);
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Host {
    pub(crate) sender: String,
    pub(crate) interface_address: Option<String>,
    pub(crate) reported_at: f64,
    pub(crate) jobs: BTreeMap<String, Job>,
    /// The generation of the host's last change.
    pub(crate) changed: u64,
    /// Stale as last published (a change when it flips).
    pub(crate) stale: bool,
}

impl Host {
    /// A job down, disabled (a job pmtr gave up on reads as disabled on
    /// the wire) or flapping, or the host stale.
    pub(crate) fn has_problem(&self) -> bool {
        self.stale || self.jobs.values().any(|j| !j.up() || j.flapping())
    }
}

#[derive(Clone, Debug)]
pub struct Fleet {
    pub(crate) hosts: BTreeMap<String, Host>,
    pub received: u64,
    pub refused: u64,
    /// HTTP connections closed at once: too many open.
    pub connections_refused: u64,
    /// Reports dropped for `max_hosts`, and jobs for `max_jobs`.
    pub reports_dropped: u64,
    pub jobs_dropped: u64,
    limits: Limits,
    /// Jobs known, in all hosts.
    jobs: usize,
    /// The generation of the last change.
    pub(crate) generation: u64,
    /// Hosts forgotten, with the generation of their going.
    pub(crate) removals: VecDeque<(u64, String)>,
    /// A viewer whose generation is below this has missed removals no
    /// longer kept, or came from another collector: it gets everything.
    pub(crate) oldest_known: u64,
    /// Nothing changes with time alone before this: `settle` is free
    /// until then (viewers call it at every poll).
    settle_due: f64,
    /// The summary of the fleet at a generation (`views.rs`).
    pub(crate) summary_cache: std::cell::Cell<Option<(u64, crate::views::Summary)>>,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet::starting_at(0)
    }
}

impl Fleet {
    /// A fleet whose generations start at `first`. The collector starts
    /// from the time it started, in microseconds since the epoch, so that
    /// the generations of a collector restarted are above those of the
    /// one before, and a page open across the restart reloads the whole.
    pub fn starting_at(first: u64) -> Fleet {
        Fleet {
            hosts: BTreeMap::new(),
            received: 0,
            refused: 0,
            connections_refused: 0,
            reports_dropped: 0,
            jobs_dropped: 0,
            limits: Limits::default(),
            jobs: 0,
            generation: first,
            removals: VecDeque::new(),
            oldest_known: first,
            settle_due: f64::INFINITY,
            summary_cache: std::cell::Cell::new(None),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> Fleet {
        self.limits = limits;
        self
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Takes in a report from `sender` at `now`, within the limits.
    pub fn record(&mut self, report: Report, sender: &str, now: f64) -> Taken {
        let mut changed = !self.hosts.contains_key(&report.host);
        if changed && self.hosts.len() >= self.limits.max_hosts {
            self.reports_dropped += 1;
            return Taken::Dropped;
        }
        let mut dropped = 0;
        let host = self.hosts.entry(report.host).or_insert_with(|| Host {
            sender: sender.to_string(),
            interface_address: None,
            reported_at: now,
            jobs: BTreeMap::new(),
            changed: 0,
            stale: false,
        });
        changed |= host.sender != sender || host.interface_address != report.address;
        changed |= host.stale;
        host.sender = sender.to_string();
        host.interface_address = report.address;
        host.reported_at = now;
        host.stale = false;
        for reported in report.jobs {
            let known = host.jobs.contains_key(&reported.name);
            if !known {
                if self.jobs >= self.limits.max_jobs {
                    dropped += 1;
                    continue;
                }
                self.jobs += 1;
            }
            let mut job = Job {
                enabled: reported.enabled,
                seconds: reported.seconds,
                seen_at: now,
                pid: reported.pid,
                cmd: reported.cmd,
                started_at: None,
                last_running_pid: None,
                restarts: Vec::new(),
            };
            if job.up() {
                job.started_at = Some(now - job.seconds as f64);
                job.last_running_pid = job.pid;
            }
            match host.jobs.get_mut(&reported.name) {
                None => changed = true,
                Some(before) => {
                    carry_history(before, &mut job, now);
                    changed |= before.looks() != job.looks();
                }
            }
            host.jobs.insert(reported.name, job);
        }
        let jobs = host.jobs.len();
        host.jobs.retain(|_, job| now - job.seen_at < JOB_GONE_SECS);
        changed |= jobs != host.jobs.len();
        self.jobs = self.jobs.saturating_sub(jobs - host.jobs.len());
        // The earliest a report can make time matter: stale (restarts
        // leave their window later still).
        self.settle_due = self.settle_due.min(now + STALE_SECS);
        if changed {
            host.changed = self.generation + 1;
            self.generation += 1;
        }
        self.jobs_dropped += dropped as u64;
        if dropped == 0 {
            Taken::Whole
        } else {
            Taken::WithoutJobs(dropped)
        }
    }

    /// Applies what time alone changes: hosts become stale, then are
    /// forgotten; restarts leave the flapping window. (A job no longer
    /// reported goes when its host reports without it.) Returns true if anything a viewer sees changed.
    pub fn settle(&mut self, now: f64) -> bool {
        if now < self.settle_due {
            return false;
        }
        let before = self.generation;
        let forgotten: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, host)| now - host.reported_at >= FORGET_SECS)
            .map(|(name, _)| name.clone())
            .collect();
        for name in forgotten {
            if let Some(host) = self.hosts.remove(&name) {
                self.jobs = self.jobs.saturating_sub(host.jobs.len());
            }
            let generation = self.next_generation();
            self.removals.push_back((generation, name));
        }
        while self.removals.len() > REMOVALS_KEPT {
            if let Some((generation, _)) = self.removals.pop_front() {
                self.oldest_known = generation;
            }
        }
        let mut generation = self.generation;
        let mut due = f64::INFINITY;
        for host in self.hosts.values_mut() {
            let stale = now - host.reported_at >= STALE_SECS;
            let mut changed = stale != host.stale;
            host.stale = stale;
            due = due.min(host.reported_at + if stale { FORGET_SECS } else { STALE_SECS });
            for job in host.jobs.values_mut() {
                let flapping = job.flapping();
                job.forget_old_restarts(now);
                changed |= flapping != job.flapping();
                if let Some(oldest) = job.restarts.first() {
                    due = due.min(oldest + FLAP_WINDOW_SECS);
                }
            }
            if changed {
                generation += 1;
                host.changed = generation;
            }
        }
        self.settle_due = due;
        self.generation = generation;
        self.generation != before
    }
}

/// Carries a job's start and restart history from its last report into
/// this one, and counts a restart when a new instance is running.
fn carry_history(before: &Job, job: &mut Job, now: f64) {
    job.restarts = before.restarts.clone();
    job.forget_old_restarts(now);
    job.last_running_pid = job.last_running_pid.or(before.last_running_pid);
    let Some(started) = job.started_at else {
        return;
    };
    // The pid tells, when there is one: a start time read from a report
    // handled late (a busy collector) would look moved. The original's
    // three-field lines have only the start time.
    let restarted = match (job.pid, before.last_running_pid) {
        (Some(now_pid), Some(then_pid)) => now_pid != then_pid,
        _ => before
            .started_at
            .is_some_and(|then| (started - then).abs() >= SAME_START_SECS),
    };
    if restarted {
        job.restarts.push(now);
    } else if let Some(then) = before.started_at {
        job.started_at = Some(then);
    } else if before.last_running_pid.is_none() && before.enabled && !before.up() {
        // Down, then up with no instance seen before: a restart.
        job.restarts.push(now);
    }
}

/// Two hosts for the views' tests, reported at 100 s: web01 (nginx up,
/// backup disabled, and the job lines `more`) and db01 (postgres, with an
/// interface address).
#[cfg(test)]
pub(crate) fn sample(first_generation: u64, more: &str) -> Fleet {
    use pmtr_core::proto::report::decode;
    let mut fleet = Fleet::starting_at(first_generation);
    let web = format!(
        "report web01\nnginx e 277269 812 /usr/sbin/nginx\nbackup d 0 0 /usr/bin/backup\n{more}"
    );
    fleet.record(decode(web.as_bytes()).unwrap(), "10.0.0.5:40000", 100.0);
    fleet.record(
        decode(b"report db01 10.1.0.9\npostgres e 60 91\n").unwrap(),
        "10.0.0.6:40000",
        100.0,
    );
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmtr_core::proto::report::decode;

    fn report(text: &str) -> Report {
        decode(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_routine_report_is_no_change() {
        let mut fleet = Fleet::starting_at(1000);
        fleet.record(report("report web01\nnginx e 100 812 /n\n"), "s", 10.0);
        assert_eq!(fleet.generation(), 1001);
        fleet.record(report("report web01\nnginx e 110 812 /n\n"), "s", 20.4);
        fleet.record(report("report web01\nnginx e 120 812 /n\n"), "s", 29.9);
        assert_eq!(fleet.generation(), 1001, "uptime grows: nothing to redraw");
        assert!(!fleet.settle(30.0));
    }

    #[test]
    fn a_restart_is_a_change_and_two_in_ten_minutes_are_flapping() {
        let mut fleet = Fleet::default();
        fleet.record(report("report h\na e 100 812 /a\n"), "s", 10.0);
        fleet.record(report("report h\na e 0 0 /a\n"), "s", 20.0);
        let down = fleet.generation();
        assert!(fleet.hosts["h"].has_problem(), "down");
        fleet.record(report("report h\na e 5 900 /a\n"), "s", 30.0);
        assert!(fleet.generation() > down);
        let job = &fleet.hosts["h"].jobs["a"];
        assert_eq!((job.restarts_seen(), job.flapping()), (1, false));
        assert!(!fleet.hosts["h"].has_problem());
        fleet.record(report("report h\na e 2 901 /a\n"), "s", 40.0);
        assert!(fleet.hosts["h"].jobs["a"].flapping());
        assert!(fleet.hosts["h"].has_problem());
        let flapping = fleet.generation();
        fleet.record(report("report h\na e 12 901 /a\n"), "s", 50.0);
        assert_eq!(fleet.generation(), flapping);
        // The first restart leaves the window: no longer flapping, a
        // change, whether a report or the clock sees it first.
        let mut by_clock = fleet.clone();
        by_clock.record(report("report h\na e 587 901 /a\n"), "s", 625.0);
        assert_eq!(by_clock.generation(), flapping);
        assert!(by_clock.settle(631.0));
        assert!(!by_clock.hosts["h"].jobs["a"].flapping());
        fleet.record(report("report h\na e 600 901 /a\n"), "s", 638.0);
        assert!(!fleet.hosts["h"].jobs["a"].flapping());
        assert!(fleet.generation() > flapping);
        assert!(!fleet.settle(639.0), "nothing more to change");
    }

    #[test]
    fn a_report_handled_late_is_no_restart() {
        let mut fleet = Fleet::default();
        fleet.record(report("report h\na e 100 812 /a\n"), "s", 10.0);
        let seen = fleet.generation();
        // Sent at 20 with 110 s of uptime, handled 4 s late.
        fleet.record(report("report h\na e 110 812 /a\n"), "s", 24.0);
        assert_eq!(fleet.hosts["h"].jobs["a"].restarts_seen(), 0);
        assert_eq!(fleet.generation(), seen);
    }

    #[test]
    fn a_restart_seen_only_by_its_start_time_counts() {
        // The original's three-field lines carry no pid.
        let mut fleet = Fleet::default();
        fleet.record(report("report old\napp e 100\n"), "s", 10.0);
        fleet.record(report("report old\napp e 3\n"), "s", 20.0);
        assert_eq!(fleet.hosts["old"].jobs["app"].restarts_seen(), 1);
        fleet.record(report("report old\napp e 13\n"), "s", 30.0);
        assert_eq!(fleet.hosts["old"].jobs["app"].restarts_seen(), 1);
    }

    #[test]
    fn a_host_going_stale_then_forgotten_are_changes_kept_for_viewers() {
        let mut fleet = Fleet::starting_at(50);
        fleet.record(report("report a\nx e 1 2 /x\n"), "s", 0.0);
        fleet.record(report("report b\nx e 1 2 /x\n"), "s", 20.0);
        assert!(!fleet.settle(24.0));
        assert!(fleet.settle(25.0));
        assert!(fleet.hosts["a"].stale && !fleet.hosts["b"].stale);
        let stale = fleet.generation();
        assert_eq!(fleet.hosts["a"].changed, stale);
        assert!(fleet.settle(60.0));
        assert!(!fleet.hosts.contains_key("a"));
        assert_eq!(fleet.removals.back(), Some(&(stale + 1, "a".to_string())));
        // Back again: new, and no longer stale.
        fleet.record(report("report a\nx e 1 2 /x\n"), "s", 61.0);
        assert!(!fleet.hosts["a"].stale);
        assert!(fleet.generation() > stale + 1);
    }

    #[test]
    fn jobs_absent_from_reports_go_after_two_rounds() {
        let mut fleet = Fleet::default();
        fleet.record(report("report h\na e 1 2 /a\nb d 0 0 /b\n"), "s", 100.0);
        fleet.record(report("report h\na e 21 2 /a\n"), "s", 120.0);
        assert!(!fleet.settle(120.0));
        let before = fleet.generation();
        fleet.record(report("report h\na e 31 2 /a\n"), "s", 130.0);
        assert!(fleet.generation() > before, "b not reported since 100");
        assert_eq!(fleet.hosts["h"].jobs.len(), 1);
    }

    #[test]
    fn hosts_and_jobs_beyond_the_limits_are_dropped_and_counted() {
        let mut fleet = Fleet::default().with_limits(Limits {
            max_hosts: 2,
            max_jobs: 3,
        });
        assert_eq!(
            fleet.record(report("report a\nx e 1 2 /x\ny e 1 3 /y\n"), "s", 0.0),
            Taken::Whole
        );
        assert_eq!(
            fleet.record(report("report b\nx e 1 2 /x\ny e 1 3 /y\n"), "s", 0.0),
            Taken::WithoutJobs(1)
        );
        assert_eq!(
            fleet.record(report("report c\nx e 1 2 /x\n"), "s", 0.0),
            Taken::Dropped
        );
        assert_eq!((fleet.reports_dropped, fleet.jobs_dropped), (1, 1));
        assert_eq!(fleet.hosts.len(), 2);
        // Known jobs are still taken in; room made by forgetting is used.
        assert_eq!(
            fleet.record(report("report a\nx e 11 2 /x\n"), "s", 10.0),
            Taken::Whole
        );
        assert!(fleet.settle(60.0), "b forgotten");
        assert_eq!(
            fleet.record(report("report c\nx e 1 2 /x\n"), "s", 60.0),
            Taken::Whole
        );
        assert_eq!(fleet.jobs, 3);
    }

    #[test]
    fn forgotten_names_are_kept_up_to_a_bound() {
        let mut fleet = Fleet::default().with_limits(Limits {
            max_hosts: REMOVALS_KEPT + 3,
            max_jobs: 0,
        });
        for i in 0..REMOVALS_KEPT + 3 {
            fleet.record(report(&format!("report h{i}\n")), "s", 0.0);
        }
        assert!(fleet.settle(FORGET_SECS));
        assert_eq!(fleet.removals.len(), REMOVALS_KEPT);
        assert!(fleet.oldest_known > REMOVALS_KEPT as u64);
    }
}
