//! The restart table of SPEC 4.2 through the real daemon.

use std::time::{Duration, Instant};

use crate::harness::{alive, wait_until, Pmtr, Sandbox, Signal, GUARD, SHORT};

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
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pmtr.count("started job"), 2, "{}", pmtr.transcript());
}

#[test]
fn a_quick_exit_is_restarted_ten_seconds_after_the_exit() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name quick\n cmd /bin/sh -c \"exit 3\"\n}\n",
    );
    pmtr.expect("exited after 0 sec: exit status 3", SHORT);
    let exited = Instant::now();
    pmtr.expect("restarting it in 10 sec", SHORT);
    pmtr.expect_started("quick", 2, GUARD);
    let waited = exited.elapsed();
    assert!(
        waited >= Duration::from_millis(9_500),
        "restarted after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(13),
        "restarted after {waited:?}"
    );
}

#[test]
fn a_job_that_ran_ten_seconds_is_restarted_at_once_and_a_signal_is_named() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, "job {\n name steady\n cmd /bin/sleep 1000\n}\n");
    let first = pmtr.expect_started("steady", 1, SHORT);
    std::thread::sleep(Duration::from_millis(10_200));
    let killed = Instant::now();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), Signal::SIGKILL);
    let second = pmtr.expect_started("steady", 2, SHORT);
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        killed.elapsed()
    );
    assert_ne!(first, second);
    let line = pmtr.expect(&format!("job steady [{first}] exited after"), SHORT);
    assert!(line.ends_with("sec: signal 9 (SIGKILL)"), "{line}");
    assert!(alive(second));
}

/// A job that exits at once forever: the guard holds it to one start per
/// 10 s.
#[test]
fn a_job_that_always_fails_starts_once_per_ten_seconds() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, "job {\n name broken\n cmd /bin/false\n}\n");
    let started = Instant::now();
    pmtr.expect_started("broken", 1, SHORT);
    assert!(wait_until(Duration::from_secs(22), || started.elapsed()
        >= Duration::from_secs(21)));
    let starts = pmtr.count("started job broken");
    assert!(
        (2..=3).contains(&starts),
        "{starts} starts in 21 s:\n{}",
        pmtr.transcript()
    );
}
