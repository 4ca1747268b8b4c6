//! The timing rules of supervision — their default values, the `Policy`
//! that carries them, and one pure decision: what happens after a job's
//! main process exits on its own.

use super::event::ExitStatus;
use crate::config::{Job, RestartPolicy};
use crate::time::Mono;

/// A job that ran less than this is restarted only this long after its
/// exit (the rapid-restart guard); one that ran longer is restarted at once.
pub const RAPID_RESTART_SECS: u64 = 10;

/// Grace between SIGTERM and SIGKILL when pmtr stops a job.
pub const KILL_AFTER_SECS: u64 = 10;

/// Delay before retrying a start that failed for want of a system resource
/// (fork EAGAIN, EMFILE): the job is not at fault.
pub const SPAWN_RETRY_SECS: u64 = 1;

/// After SIGKILL, how often to look again for a process group whose last
/// members are not pmtr's children (their death sends pmtr no SIGCHLD).
pub const REPROBE_MILLIS: u64 = 1000;

/// A watched file is read this long after the last event of a burst of
/// writes, so that a burst is applied once. The events of one save (an
/// editor's create, write, rename) come within a millisecond or two; a
/// script rewriting a file in a loop is quicker still...
pub const SETTLE_MILLIS: u64 = 30;

/// ...but no later than this after the first: a save is applied within 1 s
/// even while something keeps writing.
pub const SETTLE_MAX_MILLIS: u64 = 900;

/// Time between two status reports (`report to`).
pub const REPORT_EVERY_SECS: u64 = 10;

/// Delay of the report that follows an enable or disable: several
/// requests in a burst share one report.
pub const REPORT_SOON_MILLIS: u64 = 200;

/// A job that exits with this status is not restarted.
pub const NO_RESTART_STATUS: i32 = 33;

/// The times supervision works with, in milliseconds. The daemon always
/// runs with the defaults (the constants above, as the original pmtr);
/// the test suite shortens them so that end-to-end tests of a 10 s rule
/// take a fraction of a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rapid_restart_millis: u64,
    pub kill_after_millis: u64,
    pub spawn_retry_millis: u64,
    pub reprobe_millis: u64,
    pub settle_millis: u64,
    pub settle_max_millis: u64,
    pub report_every_millis: u64,
    pub report_soon_millis: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            rapid_restart_millis: RAPID_RESTART_SECS * 1000,
            kill_after_millis: KILL_AFTER_SECS * 1000,
            spawn_retry_millis: SPAWN_RETRY_SECS * 1000,
            reprobe_millis: REPROBE_MILLIS,
            settle_millis: SETTLE_MILLIS,
            settle_max_millis: SETTLE_MAX_MILLIS,
            report_every_millis: REPORT_EVERY_SECS * 1000,
            report_soon_millis: REPORT_SOON_MILLIS,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterExit {
    RestartAt(Mono),
    /// Not restarted; the reason, for the log.
    Done(&'static str),
    /// `give up after N`: N rapid exits in a row (SPEC 11.1).
    GiveUp,
}

/// What follows an exit, and the count of rapid exits in a row after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub after: AfterExit,
    pub rapid_exits: u32,
}

/// What follows the exit at `exited` of a job started at `started`, after
/// `rapid_exits` rapid exits in a row. `setup_failed` marks a start that
/// never reached `execv`: it counts as an immediate exit. With the default
/// options this is SPEC 4.2: a run shorter than 10 s waits 10 s.
pub fn after_exit(
    policy: &Policy,
    job: &Job,
    status: ExitStatus,
    run: (Mono, Mono),
    setup_failed: bool,
    rapid_exits: u32,
) -> Decision {
    let (started, exited) = run;
    let done = |why| Decision {
        after: AfterExit::Done(why),
        rapid_exits,
    };
    if status == ExitStatus::Code(NO_RESTART_STATUS) {
        return done("exit status 33");
    }
    if job.once {
        return done("once");
    }
    match (job.restart, status) {
        (RestartPolicy::Never, _) => return done("restart never"),
        (RestartPolicy::OnFailure, ExitStatus::Code(0)) => {
            return done("exit status 0, restart on-failure")
        }
        _ => {}
    }
    let guard = policy.rapid_restart_millis;
    let stable = job.extras.stable_millis.unwrap_or(guard);
    if !setup_failed && exited.millis_since(started) >= stable {
        return Decision {
            after: AfterExit::RestartAt(exited),
            rapid_exits: 0,
        };
    }
    let rapid_exits = rapid_exits.saturating_add(1);
    if job.extras.give_up_after.is_some_and(|n| rapid_exits >= n) {
        return Decision {
            after: AfterExit::GiveUp,
            rapid_exits,
        };
    }
    let (initial, max) = job.extras.backoff_millis.unwrap_or((guard, guard));
    let doublings = (rapid_exits - 1).min(63);
    let delay = initial.saturating_mul(1u64 << doublings).min(max);
    Decision {
        after: AfterExit::RestartAt(exited.plus_millis(delay)),
        rapid_exits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGKILL: ExitStatus = ExitStatus::Signal {
        number: 9,
        name: "SIGKILL",
    };

    /// The restart table of SPEC 4.2, row by row.
    #[test]
    fn restart_table() {
        let plain = Job::default();
        let once = Job {
            once: true,
            ..Job::default()
        };
        let t = |s| Mono::from_secs(s);
        let cases = [
            // (job, status, started, exited, setup failed, expected)
            (
                &plain,
                ExitStatus::Code(33),
                t(0),
                t(100),
                false,
                AfterExit::Done("exit status 33"),
            ),
            (
                &plain,
                ExitStatus::Code(33),
                t(0),
                t(1),
                false,
                AfterExit::Done("exit status 33"),
            ),
            (
                &once,
                ExitStatus::Code(0),
                t(0),
                t(100),
                false,
                AfterExit::Done("once"),
            ),
            (&once, SIGKILL, t(0), t(1), false, AfterExit::Done("once")),
            (
                &plain,
                ExitStatus::Code(0),
                t(0),
                t(10),
                false,
                AfterExit::RestartAt(t(10)),
            ),
            (
                &plain,
                SIGKILL,
                t(5),
                t(500),
                false,
                AfterExit::RestartAt(t(500)),
            ),
            (
                &plain,
                ExitStatus::Code(1),
                t(0),
                Mono::from_millis(9_999),
                false,
                AfterExit::RestartAt(Mono::from_millis(19_999)),
            ),
            (
                &plain,
                ExitStatus::Code(0),
                t(3),
                t(3),
                false,
                AfterExit::RestartAt(t(13)),
            ),
            (
                &plain,
                ExitStatus::Code(127),
                t(0),
                t(50),
                true,
                AfterExit::RestartAt(t(60)),
            ),
        ];
        for (job, status, started, exited, setup_failed, expected) in cases {
            assert_eq!(
                after_exit(
                    &Policy::default(),
                    job,
                    status,
                    (started, exited),
                    setup_failed,
                    0
                )
                .after,
                expected,
                "{status} after {started}..{exited}"
            );
        }
    }

    /// SPEC 11.1: the backoff doubles from INITIAL to MAX over rapid exits
    /// in a row, a stable run resets it, and `give up after` ends it.
    #[test]
    fn backoff_doubles_resets_and_gives_up() {
        let mut job = Job::default();
        job.extras.backoff_millis = Some((1_000, 8_000));
        job.extras.stable_millis = Some(5_000);
        job.extras.give_up_after = Some(7);
        let policy = Policy::default();
        let quick = |k| {
            after_exit(
                &policy,
                &job,
                ExitStatus::Code(1),
                (Mono::ZERO, Mono::from_secs(1)),
                false,
                k,
            )
        };
        let delays: Vec<_> = (0..6)
            .map(|k| match quick(k).after {
                AfterExit::RestartAt(at) => at.millis_since(Mono::from_secs(1)),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(
            quick(6),
            Decision {
                after: AfterExit::GiveUp,
                rapid_exits: 7
            }
        );
        let stable = after_exit(
            &policy,
            &job,
            ExitStatus::Code(1),
            (Mono::ZERO, Mono::from_secs(5)),
            false,
            4,
        );
        assert_eq!(
            stable,
            Decision {
                after: AfterExit::RestartAt(Mono::from_secs(5)),
                rapid_exits: 0
            }
        );
    }

    #[test]
    fn on_failure_and_never() {
        let policy = Policy::default();
        let with = |restart| Job {
            restart,
            ..Job::default()
        };
        let after = |job: &Job, status| {
            after_exit(
                &policy,
                job,
                status,
                (Mono::ZERO, Mono::from_secs(60)),
                false,
                0,
            )
            .after
        };
        let on_failure = with(RestartPolicy::OnFailure);
        assert_eq!(
            after(&on_failure, ExitStatus::Code(0)),
            AfterExit::Done("exit status 0, restart on-failure")
        );
        assert_eq!(
            after(&on_failure, ExitStatus::Code(2)),
            AfterExit::RestartAt(Mono::from_secs(60))
        );
        assert_eq!(
            after(&on_failure, SIGKILL),
            AfterExit::RestartAt(Mono::from_secs(60))
        );
        assert_eq!(
            after(&with(RestartPolicy::Never), ExitStatus::Code(2)),
            AfterExit::Done("restart never")
        );
    }
}
