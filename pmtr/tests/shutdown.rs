//! Stopping: shutdown on TERM/INT/QUIT stops every job's process group,
//! escalates to SIGKILL, removes the pidfile and exits 0 (SPEC 4.3, 4.4).

use std::time::{Duration, Instant};

use crate::harness::{
    alive, stubborn, wait_until, Pmtr, Sandbox, Signal, GUARD, KILL_AFTER, SHORT,
};

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
fn a_job_that_ignores_sigterm_is_killed_after_the_grace() {
    let sandbox = Sandbox::new();
    let (cmd, ignoring) = stubborn(&sandbox, "stubborn");
    let mut pmtr = Pmtr::start(
        &sandbox,
        &format!("job {{\n name stubborn\n cmd {cmd}\n}}\n"),
    );
    let pid = pmtr.expect_started("stubborn", 1, SHORT);
    assert!(wait_until(SHORT, || ignoring.exists()));
    let asked = Instant::now();
    pmtr.signal(Signal::SIGTERM);
    let status = pmtr.wait_exit(GUARD).expect("pmtr exits");
    let took = asked.elapsed();
    assert_eq!(status.code(), Some(0));
    // pmtr's clock counts whole milliseconds: up to 1 ms early.
    let grace = KILL_AFTER - std::time::Duration::from_millis(1);
    assert!(took >= grace, "took {took:?}");
    assert!(pmtr
        .transcript()
        .contains(&format!("sending SIGKILL to job stubborn [{pid}]")));
    assert!(!alive(pid));
}

#[test]
fn a_second_sigterm_kills_at_once() {
    let sandbox = Sandbox::new();
    // A grace far longer than the wait below: only the second SIGTERM can
    // end pmtr in time.
    let (cmd, ignoring) = stubborn(&sandbox, "stubborn");
    let text = format!("job {{\n name stubborn\n cmd {cmd}\n}}\n");
    let mut pmtr = Pmtr::start_with_times(&sandbox, &text, "kill_after=600000");
    let pid = pmtr.expect_started("stubborn", 1, SHORT);
    assert!(wait_until(SHORT, || ignoring.exists()));
    pmtr.signal(Signal::SIGTERM);
    pmtr.expect("sending SIGTERM to job stubborn", SHORT);
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(GUARD).and_then(|s| s.code()), Some(0));
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

/// SPEC 11.2 through the daemon: the job's own stop signal, and its own
/// timeout before SIGKILL.
#[test]
fn a_job_is_stopped_with_its_own_signal_and_timeout() {
    let sandbox = Sandbox::new();
    let quit = sandbox.path("quit");
    let (stubborn_cmd, ignoring) = stubborn(&sandbox, "stubborn");
    let text = format!(
        "job {{\n name nginx\n cmd /bin/sh -c \"trap 'echo > {}; exit 0' QUIT; while true; do sleep 0.1; done\"\n stop signal QUIT\n}}\n\
         job {{\n name stubborn\n cmd {stubborn_cmd}\n stop timeout 1s\n}}\n",
        quit.display()
    );
    // A long default grace: only the job's own timeout can end it in time.
    let mut pmtr = Pmtr::start_with_times(&sandbox, &text, "kill_after=600000");
    let nginx = pmtr.expect_started("nginx", 1, SHORT);
    let pid = pmtr.expect_started("stubborn", 1, SHORT);
    assert!(wait_until(SHORT, || ignoring.exists()));
    let asked = Instant::now();
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(GUARD).and_then(|s| s.code()), Some(0));
    assert!(asked.elapsed() >= Duration::from_millis(999));
    let transcript = pmtr.transcript();
    assert!(
        transcript.contains(&format!("sending SIGQUIT to job nginx [{nginx}]")),
        "{transcript}"
    );
    assert!(
        transcript.contains(&format!("sending SIGKILL to job stubborn [{pid}]")),
        "{transcript}"
    );
    assert!(quit.exists(), "the job's QUIT handler ran");
    assert!(!alive(pid) && !alive(nginx));
}
