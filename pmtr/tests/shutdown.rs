//! Stopping: shutdown on TERM/INT/QUIT stops every job's process group,
//! escalates to SIGKILL, removes the pidfile and exits 0 (SPEC 4.3, 4.4).

use std::time::{Duration, Instant};

use crate::harness::{alive, wait_until, Pmtr, Sandbox, Signal, SHORT};

#[test]
fn sigterm_stops_every_job_and_exits_zero() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.path("pmtr.pid");
    let mut pmtr = Pmtr::start_with(
        &sandbox,
        "job {\n name a\n cmd /bin/sleep 1000\n}\njob {\n name b\n cmd /bin/sleep 1000\n}\n",
        &["-p", pidfile.to_str().unwrap()],
        None,
    );
    let a = pmtr.expect_started("a", 1, SHORT);
    let b = pmtr.expect_started("b", 1, SHORT);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", pmtr.pid())
    );
    pmtr.signal(Signal::SIGTERM);
    let status = pmtr.wait_exit(SHORT).expect("pmtr exits");
    assert_eq!(status.code(), Some(0));
    assert!(!alive(a) && !alive(b));
    assert!(!pidfile.exists(), "pidfile removed");
    let transcript = pmtr.transcript();
    assert!(transcript.contains("pmtr: exiting on signal 15"));
    assert!(transcript.contains(&format!("sending SIGTERM to job a [{a}]")));
    assert!(transcript.contains(&format!(
        "job b [{b}] exited after 0 sec: signal 15 (SIGTERM)"
    )));
}

#[test]
fn sigint_and_sigquit_shut_down_too() {
    for (signal, number) in [(Signal::SIGINT, 2), (Signal::SIGQUIT, 3)] {
        let sandbox = Sandbox::new();
        let mut pmtr = Pmtr::start(&sandbox, "job {\n name a\n cmd /bin/sleep 1000\n}\n");
        pmtr.expect_started("a", 1, SHORT);
        pmtr.signal(signal);
        assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
        assert!(pmtr
            .transcript()
            .contains(&format!("exiting on signal {number}")));
    }
}

/// The whole group is stopped, grandchildren included.
#[test]
fn a_stop_reaches_the_jobs_grandchildren() {
    let sandbox = Sandbox::new();
    let mut pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name tree\n cmd /bin/sh -c \"sleep 1000 & echo $! > {}; wait\"\n}}\n",
            sandbox.path("grandchild").display()
        ),
    );
    pmtr.expect_started("tree", 1, SHORT);
    assert!(wait_until(SHORT, || std::fs::read_to_string(
        sandbox.path("grandchild")
    )
    .is_ok_and(|s| s.ends_with('\n'))));
    let grandchild: i32 = std::fs::read_to_string(sandbox.path("grandchild"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(!alive(grandchild), "grandchild {grandchild} left behind");
}

#[test]
fn a_job_that_ignores_sigterm_is_killed_after_ten_seconds() {
    let sandbox = Sandbox::new();
    let mut pmtr = Pmtr::start(
        &sandbox,
        "job {\n name stubborn\n cmd /bin/sh -c \"trap '' TERM; while true; do sleep 1; done\"\n}\n",
    );
    let pid = pmtr.expect_started("stubborn", 1, SHORT);
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    pmtr.signal(Signal::SIGTERM);
    let status = pmtr.wait_exit(Duration::from_secs(20)).expect("pmtr exits");
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(9_500) && took < Duration::from_secs(12),
        "took {took:?}"
    );
    assert!(pmtr
        .transcript()
        .contains(&format!("sending SIGKILL to job stubborn [{pid}]")));
    assert!(!alive(pid));
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let sandbox = Sandbox::new();
    let mut pmtr = Pmtr::start(
        &sandbox,
        "job {\n name stubborn\n cmd /bin/sh -c \"trap '' TERM; while true; do sleep 1; done\"\n}\n",
    );
    let pid = pmtr.expect_started("stubborn", 1, SHORT);
    std::thread::sleep(Duration::from_millis(200));
    pmtr.signal(Signal::SIGTERM);
    pmtr.expect("sending SIGTERM to job stubborn", SHORT);
    let asked = Instant::now();
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(asked.elapsed() < Duration::from_secs(3));
    assert!(!alive(pid));
}

/// A job that forks a grandchild and exits: the grandchild is stopped
/// with the rest of the group, and the job is restarted once, not doubled.
#[test]
fn a_job_that_forks_and_exits_is_not_duplicated() {
    let sandbox = Sandbox::new();
    let pidfile = sandbox.path("daemon.pid");
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name forker\n cmd /bin/sh -c \"sleep 1000 & echo $! >> {}\"\n}}\n",
            pidfile.display()
        ),
    );
    let first = pmtr.expect_started("forker", 1, SHORT);
    pmtr.expect(
        &format!("job forker [{first}] left processes in its group"),
        SHORT,
    );
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        wait_until(SHORT, || !alive(grandchild)),
        "the leftover was not stopped"
    );
    pmtr.expect_started("forker", 2, crate::harness::GUARD);
}
