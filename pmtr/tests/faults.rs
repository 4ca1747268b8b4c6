//! A job's fault is never pmtr's fault: each of these is logged and
//! survived, and no job is lost or duplicated.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::{
    alive, children_of, wait_until, Pmtr, Sandbox, Signal, GUARD, RAPID_RESTART, SHORT,
};
use crate::start::is_root;

pub fn have(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// pmtr still works after the fault: it shuts down cleanly on SIGTERM.
fn still_serves(mut pmtr: Pmtr) {
    pmtr.signal(Signal::SIGTERM);
    let status = pmtr.wait_exit(GUARD).expect("pmtr exits");
    assert_eq!(status.code(), Some(0), "{}", pmtr.transcript());
}

#[test]
fn a_missing_command_is_logged_as_cant_exec() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name ghost\n cmd /no/such/program --flag\n}\n",
    );
    let pid = pmtr.expect_started("ghost", 1, SHORT);
    let line = pmtr.expect("can't exec", SHORT);
    assert!(
        line.ends_with(&format!(
            "job ghost [{pid}]: can't exec /no/such/program: No such file or directory"
        )),
        "{line}"
    );
    // Logged after the reap: the exit has been handled by then.
    pmtr.expect("restarting it in", SHORT);
    assert_eq!(
        pmtr.count("exited after"),
        0,
        "a failed exec is not a run:\n{}",
        pmtr.transcript()
    );
    still_serves(pmtr);
}

#[test]
fn a_command_that_is_not_executable_is_logged() {
    let sandbox = Sandbox::new();
    let script = sandbox.write("script.sh", "#!/bin/sh\nsleep 100\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("job {{\n name noexec\n cmd {}\n}}\n", script.display()),
    );
    pmtr.expect(
        &format!("can't exec {}: Permission denied", script.display()),
        SHORT,
    );
    still_serves(pmtr);
}

#[test]
fn a_missing_dir_is_logged_as_cant_chdir() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name lost\n cmd /bin/true\n dir /no/such/dir\n}\n",
    );
    pmtr.expect("can't chdir /no/such/dir: No such file or directory", SHORT);
    still_serves(pmtr);
}

#[test]
fn an_unknown_user_at_start_time_is_logged_and_retried() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name who\n cmd /bin/true\n user no-such-user-pmtr\n}\njob {\n name fine\n cmd /bin/sleep 100\n}\n",
    );
    pmtr.expect(
        "unable to start job who: unknown user no-such-user-pmtr",
        SHORT,
    );
    pmtr.expect_started("fine", 1, SHORT);
    still_serves(pmtr);
}

#[test]
fn output_in_a_directory_the_user_cannot_write_is_logged() {
    if crate::harness::skip_if(
        !is_root(),
        "output_in_a_directory_the_user_cannot_write_is_logged",
        "needs root to run a job as another user",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let private = sandbox.path("private");
    std::fs::create_dir(&private).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name writer\n cmd /bin/echo hi\n user nobody\n out {}/out.log\n}}\n",
            private.display()
        ),
    );
    pmtr.expect(
        &format!(
            "can't open {}/out.log: Permission denied",
            private.display()
        ),
        SHORT,
    );
    assert!(
        !private.join("out.log").exists(),
        "opened after the privilege drop"
    );
    still_serves(pmtr);
}

/// fork failing with EAGAIN: the start is retried at a deadline.
#[test]
fn fork_failing_with_eagain_is_retried() {
    if crate::harness::skip_if(
        !have("strace"),
        "fork_failing_with_eagain_is_retried",
        "strace is not installed (.ci/run installs it)",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let wrapper = [
        "strace",
        "-o",
        "/dev/null",
        "-e",
        "trace=clone,clone3",
        "-e",
        "inject=clone:error=EAGAIN:when=2",
        "-e",
        "inject=clone3:error=ENOSYS",
    ];
    let pmtr = Pmtr::start_with(
        &sandbox,
        "job {\n name first\n cmd /bin/sleep 100\n}\njob {\n name second\n cmd /bin/sleep 100\n}\n",
        &[],
        Some(&wrapper),
    );
    // The second clone (the first made the starter thread) is the start
    // of whichever job the two starting threads took first.
    let line = pmtr.expect(
        ": fork: Resource temporarily unavailable; retrying in 0.2 sec",
        SHORT,
    );
    let (failed, other) = match line.contains("unable to start job second:") {
        true => ("second", "first"),
        false => ("first", "second"),
    };
    assert!(
        line.contains(&format!("unable to start job {failed}:")),
        "{line}"
    );
    pmtr.expect_started(failed, 1, SHORT);
    pmtr.expect_started(other, 1, SHORT);
    assert_eq!(pmtr.count(&format!("started job {other} [")), 1);
    still_serves(pmtr);
}

/// EMFILE in the daemon: starts that need a pipe wait until descriptors
/// are free again; pmtr itself keeps working.
#[test]
fn running_out_of_descriptors_is_survived() {
    if crate::harness::skip_if(
        !have("prlimit"),
        "running_out_of_descriptors_is_survived",
        "prlimit is not installed (util-linux; .ci/run installs it)",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let mut text = String::new();
    for i in 0..6 {
        text.push_str(&format!("job {{\n name j{i}\n cmd /bin/sleep 100\n}}\n"));
    }
    let wrapper = ["prlimit", "--nofile=14:14"];
    let pmtr = Pmtr::start_with(&sandbox, &text, &[], Some(&wrapper));
    pmtr.expect("Too many open files; retrying in 0.2 sec", SHORT);
    let running = pmtr.count("started job");
    assert!(running >= 1, "{}", pmtr.transcript());
    // A running job exits: its descriptors are freed and a waiting job
    // gets them.
    let victim = pmtr.started_pids()[0];
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL);
    pmtr.expect_count("started job", running + 1, SHORT);
    still_serves(pmtr);
}

#[test]
fn five_hundred_jobs_dying_at_once_all_come_back_once() {
    let sandbox = Sandbox::new();
    let mut text = String::new();
    for i in 0..500 {
        text.push_str(&format!(
            "job {{\n name j{i}\n cmd /bin/sleep 1000\n out /dev/null\n err /dev/null\n}}\n"
        ));
    }
    let pmtr = Pmtr::start(&sandbox, &text);
    pmtr.expect_count("started job", 500, Duration::from_secs(20));
    let first: Vec<i32> = pmtr.started_pids();
    assert!(wait_until(SHORT, || children_of(pmtr.pid()).len() == 500));
    for &pid in &first {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    pmtr.expect_count("started job", 1000, Duration::from_secs(40));
    assert!(wait_until(SHORT, || {
        let children = children_of(pmtr.pid());
        children.len() == 500 && children.iter().all(|&p| alive(p))
    }));
    let children: HashSet<i32> = children_of(pmtr.pid()).into_iter().collect();
    let second: HashSet<i32> = pmtr.started_pids()[500..].iter().copied().collect();
    assert_eq!(children, second, "exactly the 500 restarted jobs run");
    // Past the rapid-restart guard, a second restart would have come.
    std::thread::sleep(RAPID_RESTART * 2);
    assert_eq!(pmtr.count("started job"), 1000, "none started twice");
}

/// Syslog missing when pmtr starts, then there; then restarted (its socket
/// gone for a while, then back): pmtr finds it each time, and says how
/// many lines it did not get.
#[test]
fn syslog_is_found_again_and_lost_lines_are_counted() {
    use std::os::unix::net::UnixDatagram;
    let sandbox = crate::harness::Sandbox::new();
    let path = sandbox.path("log.sock");
    let pmtr = crate::harness::Pmtr::start_env(
        &sandbox,
        "job {\n name a\n cmd /bin/sleep 1000\n}\n",
        &[],
        None,
        &[("PMTR_TEST_SYSLOG", path.to_str().unwrap())],
    );
    pmtr.expect_started("a", 1, SHORT);
    let received = |socket: &UnixDatagram| {
        let mut lines = Vec::new();
        let mut buffer = [0u8; 8192];
        while let Ok(n) = socket.recv(&mut buffer) {
            lines.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
        }
        lines
    };
    // A line to log, on demand: a request for a job that does not exist.
    let poke = || sandbox.ctl(&["enable", "ghost"]);
    let listen = || {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket
    };
    // Pokes pmtr until a line with `needle` reaches `syslog`; the lines.
    let until_seen = |syslog: &UnixDatagram, needle: &str| {
        let mut seen = Vec::new();
        let found = wait_until(Duration::from_secs(10), || {
            poke();
            seen.extend(received(syslog));
            seen.iter().any(|l: &String| l.contains(needle))
        });
        assert!(found, "syslog never got {needle:?}: {seen:?}");
        seen
    };
    let syslog = listen();
    let seen = until_seen(&syslog, "no job named ghost");
    assert!(seen[0].starts_with("<132>pmtr["), "{seen:?}");
    // Restarted: gone while lines are logged, then back.
    drop(syslog);
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        poke();
    }
    let syslog = listen();
    until_seen(&syslog, "did not reach syslog");
}

/// In the foreground, standard error is a pipe whose reader stopped
/// reading: pmtr logs on (the lines it cannot write are counted), and
/// keeps answering instead of waiting for the reader.
#[test]
fn a_stalled_reader_of_stderr_does_not_stall_pmtr() {
    let sandbox = crate::harness::Sandbox::new();
    // No job: pmtr is killed at the end, and would leave one behind.
    let config = sandbox.write("pmtr.conf", "");
    let mut pmtr = std::process::Command::new(crate::harness::PMTR)
        .args(["-F", "-c", config.to_str().unwrap(), "--socket"])
        .arg(sandbox.socket())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped()) // never read
        .spawn()
        .unwrap();
    let answers = || sandbox.ctl(&["status"]).status.success();
    assert!(wait_until(SHORT, answers), "pmtr never answered");
    // Each request for an unknown job logs a line of about 60 bytes: far
    // more than the pipe holds (64 KiB).
    for _ in 0..1500 {
        let refused = sandbox.ctl(&["enable", "a-job-that-does-not-exist-here"]);
        if refused.status.code() != Some(1) {
            break; // no answer: pmtr is stuck (the assertion below says so)
        }
    }
    let answered = wait_until(SHORT, answers);
    let _ = pmtr.kill();
    let _ = pmtr.wait();
    assert!(answered, "pmtr stopped answering once its stderr was full");
}
