//! The restart table of SPEC 4.2 through the real daemon, with the
//! rapid-restart guard shortened to `RAPID_RESTART` (harness `TEST_TIMES`).

use std::time::{Duration, Instant};

use crate::harness::{
    alive, Pmtr, Sandbox, Signal, GUARD, RAPID_RESTART, RAPID_RESTART_TEXT, SHORT,
};

#[test]
fn exit_33_and_once_stay_down() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name quits\n cmd /bin/sh -c \"exit 33\"\n}\njob {\n name one\n cmd /bin/true\n once\n}\n",
    );
    pmtr.expect("job quits will not be restarted (exit status 33)", SHORT);
    pmtr.expect("job one will not be restarted (once)", SHORT);
    let exit_line = pmtr.expect("exit status 33", SHORT);
    assert!(exit_line.contains("job quits ["), "{exit_line}");
    // Past the guard, a restart would have come: none does.
    std::thread::sleep(RAPID_RESTART * 3);
    assert_eq!(pmtr.count("started job"), 2, "{}", pmtr.transcript());
}

#[test]
fn a_quick_exit_is_restarted_one_guard_after_the_exit() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name quick\n cmd /bin/sh -c \"exit 3\"\n}\n",
    );
    pmtr.expect("exited after 0 sec: exit status 3", SHORT);
    let exited = Instant::now();
    let guard = RAPID_RESTART_TEXT;
    pmtr.expect(
        &format!("job quick exited within {guard} sec of its start: restarting it in {guard} sec"),
        SHORT,
    );
    pmtr.expect_started("quick", 2, GUARD);
    let waited = exited.elapsed();
    // Both lines are seen through the harness's reader thread, which a
    // loaded machine may delay: half the guard still tells a guarded
    // restart from an immediate one (the exact time is a core test).
    assert!(waited >= RAPID_RESTART / 2, "restarted after {waited:?}");
}

#[test]
fn a_job_that_ran_past_the_guard_is_restarted_at_once_and_a_signal_is_named() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, "job {\n name steady\n cmd /bin/sleep 1000\n}\n");
    let first = pmtr.expect_started("steady", 1, SHORT);
    // Whatever the machine's load, the job has run longer than this.
    std::thread::sleep(RAPID_RESTART * 2);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL);
    let second = pmtr.expect_started("steady", 2, SHORT);
    assert_eq!(
        pmtr.count("restarting it in"),
        0,
        "restarted at once, not after the guard:\n{}",
        pmtr.transcript()
    );
    assert_ne!(first, second);
    let line = pmtr.expect(&format!("job steady [{first}] exited after"), SHORT);
    assert!(line.ends_with("sec: signal 9 (SIGKILL)"), "{line}");
    assert!(alive(second));
}

/// A job that exits at once forever: the guard holds it to one start per
/// guard period.
#[test]
fn a_job_that_always_fails_starts_once_per_guard() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, "job {\n name broken\n cmd /bin/false\n}\n");
    let started = Instant::now();
    pmtr.expect_started("broken", 4, GUARD);
    // Three restarts, each at least one guard after the exit before it.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= RAPID_RESTART * 3 - Duration::from_millis(100),
        "4 starts in {elapsed:?}:\n{}",
        pmtr.transcript()
    );
}

/// SPEC 11.1 through the daemon: a job that cannot run backs off, doubling,
/// then is given up on; status says `failed` and `pmtr-ctl restart` starts
/// it again.
#[test]
fn a_job_that_keeps_failing_backs_off_then_is_given_up_on() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name broken\n cmd /bin/false\n backoff 200ms 400ms\n give up after 4\n}\n",
    );
    pmtr.expect(
        "giving up (pmtr-ctl restart or enable starts it again)",
        GUARD,
    );
    let delays: Vec<String> = pmtr
        .lines()
        .iter()
        .filter_map(|l| {
            l.split_once("restarting it in ")
                .map(|(_, rest)| rest.to_string())
        })
        .collect();
    assert_eq!(
        delays,
        ["0.2 sec", "0.4 sec", "0.4 sec"],
        "{}",
        pmtr.transcript()
    );
    assert_eq!(pmtr.count("started job broken"), 4);
    let status = sandbox.ctl(&["status", "broken", "--json"]);
    let json = crate::harness::text(&status.stdout);
    assert!(json.contains("\"state\": \"failed\""), "{json}");
    let restart = sandbox.ctl(&["restart", "broken"]);
    assert_eq!(restart.status.code(), Some(0));
    pmtr.expect_started("broken", 5, SHORT);
}
