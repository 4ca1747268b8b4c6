//! SPEC 11.8: the jobs of one pmtr taken over by the next — adopted with
//! the same pid, restarted when their definition changed, stopped when
//! they left the file, started when their process is gone — with timers,
//! overrides and counters carried over.

use super::*;
use crate::config::Job;
use crate::supervise::handover::{fingerprint, Liveness, SavedJob};

fn name_of(_: i32) -> &'static str {
    "SIGX"
}

fn saved(run: &Run) -> Vec<SavedJob> {
    run.sup.saved_jobs(&mut |def| fingerprint(def))
}

/// A pmtr that ran `text` from 0 s to `secs`, and the jobs it saved.
fn ran(text: &str, secs: u64) -> (Run, Vec<SavedJob>) {
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let _ = run.event(Event::Timer, at(secs));
    let saved = saved(&run);
    (run, saved)
}

/// The next pmtr on `text`, adopting `saved` at `secs`.
fn next(text: &str, saved: Vec<SavedJob>, live: Liveness, secs: u64) -> (Run, Vec<Action>) {
    let mut next = Run::new(config(text));
    let mut actions = next.sup.adopt(saved, |_| live, name_of, at(secs));
    actions.extend(next.event(Event::Start, at(secs)));
    (next, actions)
}

#[test]
fn running_jobs_are_adopted_with_their_pid_and_start_time() {
    let text = job("a", "/bin/sleep 100", "") + &job("b", "/bin/sleep 100", "");
    let (before, saved) = ran(&text, 30);
    let (after, actions) = next(&text, saved, Liveness::Alive, 31);
    assert!(spawned_names(&actions).is_empty(), "no duplicate starts");
    assert_eq!(after.pid("a"), before.pid("a"));
    assert_eq!(after.pid("b"), before.pid("b"));
    assert!(logs(&actions).contains(&"adopted job a [101], running for 31 sec"));
    let status = crate::status::job_status(after.state("a"), at(40));
    assert_eq!(status.uptime_seconds, Some(40), "the uptime goes on");
}

#[test]
fn a_changed_definition_is_adopted_then_restarted() {
    let (_, saved) = ran(&job("a", "/bin/sleep 100", ""), 5);
    let changed = job("a", "/bin/sleep 200", "");
    let (mut after, actions) = next(&changed, saved, Liveness::Alive, 6);
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
    assert!(
        logs(&actions).contains(&"job a [101]: its definition changed meanwhile; restarting it")
    );
    let actions = after.exit("a", TERMINATED, at(6));
    assert_eq!(
        spawned_names(&actions),
        ["a"],
        "started again with the new one"
    );
}

#[test]
fn a_job_gone_from_the_file_is_stopped_and_a_dead_one_started() {
    let text = job("a", "/bin/sleep 100", "") + &job("b", "/bin/sleep 100", "");
    let (_, saved) = ran(&text, 5);
    let (_, actions) = next(
        &job("b", "/bin/sleep 100", ""),
        saved.clone(),
        Liveness::Alive,
        6,
    );
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
    assert!(logs(&actions).contains(&"job a [101] is no longer in the configuration: stopping it"));
    let (_, actions) = next(&text, saved, Liveness::Gone, 6);
    assert_eq!(spawned_names(&actions), ["a", "b"]);
    assert!(logs(&actions).contains(&"job a [101] no longer runs: starting it"));
}

#[test]
fn pending_restarts_overrides_and_counters_carry_over() {
    let text = job("a", "/bin/sleep 100", "") + &job("off", "/bin/sleep 100", "");
    let mut before = Run::new(config(&text));
    before.event(Event::Start, at(0));
    // A rapid exit: the restart is due 10 s later.
    before.exit("a", ExitStatus::Code(1), at(2));
    before.event(
        Event::SetEnabled {
            name: "off".into(),
            enabled: false,
            reply: None,
        },
        at(2),
    );
    before.exit("off", TERMINATED, at(2));
    let saved = saved(&before);
    let (mut after, actions) = next(&text, saved, Liveness::Alive, 3);
    assert!(spawned_names(&actions).is_empty());
    assert_eq!(after.phase("off"), Phase::Disabled, "the override holds");
    assert_eq!(
        after.sup.next_deadline(),
        Some(at(12)),
        "the restart keeps its time"
    );
    let actions = after.event(Event::Timer, at(12));
    assert_eq!(spawned_names(&actions), ["a"]);
    assert_eq!(after.state("a").restarts(), 1);
}

#[test]
fn a_handover_waits_for_stops_and_starts_to_end() {
    let text = job("a", "/bin/sleep 100", "");
    let mut run = Run::new(config(&text));
    assert_eq!(run.sup.handover_blocked(), None);
    run.event(Event::Start, at(0));
    assert_eq!(run.sup.handover_blocked(), None);
    run.event(
        Event::SetEnabled {
            name: "a".into(),
            enabled: false,
            reply: None,
        },
        at(1),
    );
    assert_eq!(
        run.sup.handover_blocked().as_deref(),
        Some("1 jobs are starting or stopping; try again")
    );
    run.exit("a", TERMINATED, at(1));
    assert_eq!(run.sup.handover_blocked(), None);
}

/// The fingerprint hashes the options a definition sets, not how pmtr
/// lays definitions out: the value of a plain job is pinned, since a new
/// value would restart every such job at the next upgrade by reexec.
#[test]
fn fingerprints_name_only_the_options_set() {
    let plain = Job {
        name: "web".into(),
        cmd: vec!["/bin/sleep".into(), "100".into()],
        ..Job::default()
    };
    assert_eq!(fingerprint(&plain).to_string(), "67ffbcb63cf9e941");
    let mut cleared = plain.clone();
    cleared.extras.health.retries = Some(5);
    assert_ne!(fingerprint(&cleared), fingerprint(&plain));
    cleared.extras.health.retries = None;
    assert_eq!(fingerprint(&cleared), fingerprint(&plain));
    let mut moved = plain.clone();
    moved.order = 1;
    assert_ne!(fingerprint(&moved), fingerprint(&plain));
}
