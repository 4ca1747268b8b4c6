//! Upgrade without restarting jobs, and re-adoption (SPEC 11.8):
//! `pmtr-ctl reexec` keeps every job's pid, output and timers; a binary
//! that refuses the state leaves pmtr running; a pmtr that died is
//! followed by one that takes its jobs over instead of starting
//! duplicates; a state file that lies adopts nothing.

use std::time::{Duration, Instant};

use crate::harness::{
    alive, text, wait_until, Background, Pmtr, Sandbox, Signal, GUARD, PMTR, SHORT,
};

/// `pmtr-ctl status --json`: each job's name and pid.
fn pids(sandbox: &Sandbox) -> Vec<(String, Option<i64>)> {
    let out = sandbox.ctl(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    jobs.as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j["pid"].as_i64()))
        .collect()
}

/// The processes whose command line is exactly `argv` (zombies have
/// none: they have ended).
fn count_argv(argv: &[&str]) -> usize {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .count()
}

/// The `tick N` numbers a job logged, in order.
fn ticks(pmtr: &Pmtr) -> Vec<u64> {
    pmtr.lines()
        .iter()
        .filter_map(|l| {
            l.split_once("]: tick ")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect()
}

/// A job that logs `tick 1`, `tick 2`, ... through pmtr: about a
/// thousand lines a second, in bursts of 50.
const TICKER: &str = concat!(
    "job {\n name ticker\n cmd /bin/sh -c \"",
    "i=0; while :; do for j in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50; do i=$((i+1)); echo tick $i; done; sleep 0.05; done",
    "\"\n}\n"
);

#[test]
fn reexec_keeps_1000_jobs_their_output_and_a_pending_restart() {
    let sandbox = Sandbox::new();
    let sleepers: String = (0..1000)
        .map(|i| format!("job {{\n name s{i}\n cmd /bin/sleep 86400.{i}\n out /dev/null\n}}\n"))
        .collect();
    // Started last, exits at once, restarted 6 s later: after the reexec.
    let later = "job {\n name later\n cmd /bin/sh -c \"exit 1\"\n backoff 6s 6s\n order 1\n}\n";
    let pmtr = Pmtr::start(&sandbox, &format!("{TICKER}{later}{sleepers}"));
    pmtr.expect_started("s999", 1, GUARD);
    pmtr.expect("job later exited within", SHORT);
    let exited = Instant::now();
    assert!(wait_until(SHORT, || ticks(&pmtr).len() > 100));
    let before = pids(&sandbox);
    assert_eq!(before.len(), 1002);

    let out = sandbox.ctl(&["reexec"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("re-executing"),
        "{}",
        text(&out.stdout)
    );
    pmtr.expect("reexec: handing 1002 jobs to", SHORT);
    pmtr.expect("adopted job s999 [", SHORT);
    // The new pmtr answers with the same pids.
    assert!(wait_until(SHORT, || sandbox
        .ctl(&["status", "s0"])
        .status
        .success()));
    let after = pids(&sandbox);
    let running = |jobs: &[(String, Option<i64>)]| -> Vec<(String, Option<i64>)> {
        jobs.iter()
            .filter(|(name, _)| name != "later")
            .cloned()
            .collect()
    };
    assert_eq!(running(&after), running(&before), "every pid unchanged");

    // Output: every line before and after the exec, once each, in order.
    let seen = ticks(&pmtr).len();
    assert!(wait_until(SHORT, || ticks(&pmtr).len() > seen + 1000));
    let numbers = ticks(&pmtr);
    let wrong = numbers
        .iter()
        .zip(1u64..)
        .position(|(n, expected)| *n != expected);
    if let Some(at) = wrong {
        let around = &numbers[at.saturating_sub(3)..(at + 3).min(numbers.len())];
        panic!("a line lost or doubled across the reexec: line {at} reads {around:?}");
    }

    // The pending restart fires, not before its time.
    pmtr.expect_started("later", 2, GUARD);
    let later: Vec<String> = (pmtr.lines().into_iter())
        .filter(|l| l.contains("later") || l.contains("reexec"))
        .collect();
    assert!(
        exited.elapsed() >= Duration::from_millis(5500),
        "restarted early: {later:?}"
    );
    let handed = pmtr.first_line(|l| l.contains("reexec: handing")).unwrap();
    let restarted = (pmtr.lines().iter())
        .rposition(|l| l.contains("started job later ["))
        .unwrap();
    assert!(
        handed < restarted,
        "the restart was due after the reexec: {later:?}"
    );
    assert_eq!(pmtr.count("started job s0 ["), 1, "no job started twice");
}

/// A copy of pmtr's binary in the sandbox, which the test may replace.
fn own_binary(sandbox: &Sandbox) -> String {
    let copy = sandbox.path("pmtr-bin");
    std::fs::copy(PMTR, &copy).unwrap();
    copy.to_string_lossy().into_owned()
}

/// Replaces the file at `path` by a shell script (rename over it, as a
/// package manager does).
fn replace_with_script(path: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let new = format!("{path}.new");
    std::fs::write(&new, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, path).unwrap();
}

#[test]
fn a_binary_that_refuses_the_state_leaves_pmtr_running() {
    let sandbox = Sandbox::new();
    let binary = own_binary(&sandbox);
    let config = "job {\n name a\n cmd /bin/sleep 86401.1\n}\n";
    let pmtr = Pmtr::start_program(&sandbox, config, &[], &[&binary], &[]);
    let pid = pmtr.expect_started("a", 1, SHORT);
    replace_with_script(
        &binary,
        "echo 'state version 1 is not known here' >&2; exit 1",
    );
    let out = sandbox.ctl(&["reexec"]);
    assert!(!out.status.success());
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains(
            "the new pmtr refused the state (exit status 1): state version 1 is not known here"
        ),
        "{said}"
    );
    assert_eq!(pids(&sandbox), [("a".to_string(), Some(pid as i64))]);
    assert!(alive(pid));
}

/// The new binary accepts the state but dies at start: the jobs run on,
/// and the next pmtr takes them over from the state file.
#[test]
fn a_binary_that_crashes_after_the_exec_leaves_jobs_the_next_pmtr_adopts() {
    let sandbox = Sandbox::new();
    let binary = own_binary(&sandbox);
    let config = "job {\n name a\n cmd /bin/sleep 86401.2\n out /dev/null\n err /dev/null\n}\n";
    let mut first = Pmtr::start_program(&sandbox, config, &[], &[&binary], &[]);
    let pid = first.expect_started("a", 1, SHORT);
    replace_with_script(
        &binary,
        "case \"$1\" in --check-state) exit 0;; esac\nkill -SEGV $$",
    );
    assert!(sandbox.ctl(&["reexec"]).status.success());
    assert!(first.wait_exit(SHORT).is_some(), "the new binary ended");
    assert!(alive(pid), "the job outlived its pmtr");

    let second = Pmtr::start(&sandbox, config);
    second.expect(&format!("adopted job a [{pid}]"), SHORT);
    assert_eq!(pids(&sandbox), [("a".to_string(), Some(pid as i64))]);
    assert_eq!(count_argv(&["/bin/sleep", "86401.2"]), 1);
    drop(second);
    assert!(
        wait_until(SHORT, || !alive(pid)),
        "an adopted job stops with pmtr"
    );
}

#[test]
fn after_kill_9_the_next_pmtr_adopts_instead_of_starting_duplicates() {
    let sandbox = Sandbox::new();
    let config = "job {\n name quiet\n cmd /bin/sleep 86401.3\n out /dev/null\n err /dev/null\n}\n\
                  job {\n name chatty\n cmd /bin/sleep 86401.4\n}\n";
    let mut first = Pmtr::start(&sandbox, config);
    let quiet = first.expect_started("quiet", 1, SHORT);
    let chatty = first.expect_started("chatty", 1, SHORT);
    // The state file follows the jobs a moment later (SPEC 11.8).
    let state = sandbox.path("pmtr.state");
    let written = || std::fs::read_to_string(&state).unwrap_or_default();
    assert!(wait_until(SHORT, || written().contains(&format!("\"pid\":{chatty},"))));
    first.signal(Signal::SIGKILL);
    assert!(first.wait_exit(SHORT).is_some());
    assert!(alive(quiet) && alive(chatty));

    let mut second = Pmtr::start(&sandbox, config);
    second.expect("ended without stopping its jobs", SHORT);
    second.expect(&format!("adopted job quiet [{quiet}]"), SHORT);
    second.expect(
        &format!("job chatty [{chatty}]: its output went to the pmtr that died and cannot be recovered; restarting it"),
        SHORT,
    );
    second.expect(&format!("job chatty [{chatty}] exited after"), SHORT);
    second.expect("exit status unknown (adopted)", SHORT);
    let new_chatty = second.expect_started("chatty", 1, SHORT);
    assert_ne!(new_chatty, chatty);
    assert_eq!(count_argv(&["/bin/sleep", "86401.3"]), 1, "no duplicate");
    let chatties = || count_argv(&["/bin/sleep", "86401.4"]);
    assert!(
        wait_until(SHORT, || chatties() == 1),
        "{} running",
        chatties()
    );
    // The adopted job is followed: its end is seen and it is restarted.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(quiet), Signal::SIGTERM).unwrap();
    second.expect(&format!("job quiet [{quiet}] exited after"), SHORT);
    let new_quiet = second.expect_started("quiet", 1, GUARD);
    second.signal(Signal::SIGTERM);
    assert!(second.wait_exit(SHORT).is_some());
    assert!(!alive(new_quiet) && !alive(new_chatty));
    assert!(
        !sandbox.path("pmtr.state").exists(),
        "a clean exit leaves no state"
    );
}

/// A state file naming a live process that is not the job's (the pid
/// reused: another start time) adopts nothing, and harms nothing.
#[test]
fn a_state_file_naming_an_unrelated_process_adopts_nothing() {
    let sandbox = Sandbox::new();
    let unrelated = Background::start(&sandbox, "/bin/sleep", &["1005"]);
    let config = "job {\n name web\n cmd /bin/sleep 86401.6\n out /dev/null\n err /dev/null\n}\n";
    let state = format!(
        "{{\"format\":\"pmtr-state\",\"version\":1,\"owner\":999999,\"owner_start\":1,\
         \"jobs\":[{{\"name\":\"web\",\"fingerprint\":\"x\",\"run\":{{\"pid\":{},\"started\":0,\"ready\":true}},\
         \"process_start\":1}}]}}\n",
        unrelated.pid()
    );
    sandbox.write("pmtr.state", &state);
    let pmtr = Pmtr::start(&sandbox, config);
    let web = pmtr.expect_started("web", 1, SHORT);
    assert_ne!(web, unrelated.pid());
    assert!(pmtr
        .transcript()
        .contains(&format!("job web [{}] no longer runs", unrelated.pid())));
    std::thread::sleep(Duration::from_millis(200)); // a window for a wrong signal
    assert!(
        alive(unrelated.pid()),
        "the unrelated process was signalled"
    );
}

/// Corrupt, truncated, foreign and future state files: one log line each,
/// and pmtr starts its jobs as if there were none.
#[test]
fn bad_state_files_are_ignored_with_a_line() {
    let good =
        "{\"format\":\"pmtr-state\",\"version\":1,\"owner\":999999,\"owner_start\":1,\"jobs\":[]}";
    let cases = [
        ("garbage \u{0}\u{1}", "not JSON of a pmtr state"),
        (&good[..good.len() / 2], "not JSON of a pmtr state"),
        (
            &good.replace("pmtr-state", "something-else")[..],
            "not a pmtr state file",
        ),
        (
            &good.replace("\"version\":1", "\"version\":7")[..],
            "written by a later pmtr (state version 7",
        ),
    ];
    for (content, said) in cases {
        let sandbox = Sandbox::new();
        sandbox.write("pmtr.state", content);
        let pmtr = Pmtr::start(&sandbox, "job {\n name a\n cmd /bin/sleep 86401.7\n}\n");
        pmtr.expect_started("a", 1, SHORT);
        let transcript = pmtr.transcript();
        assert!(
            transcript.contains("ignoring the state file") && transcript.contains(said),
            "{transcript}"
        );
    }
}

/// The sd_notify socket is handed over: a job speaking `systemd-notify`
/// (the real client) to the old pmtr goes on speaking to the new one.
#[test]
fn sd_notify_reaches_the_new_pmtr() {
    let missing = crate::readiness::which("systemd-notify").is_none();
    if crate::harness::skip_if(
        missing,
        "sd_notify_reaches_the_new_pmtr",
        "systemd-notify is not installed",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let text = format!(
        "job {{\n name db\n cmd /bin/sh -c \"systemd-notify --ready --status=before; \
         while [ ! -e {} ]; do sleep 0.05; done; systemd-notify --status=after; exec sleep 86401.8\"\n ready notify\n}}\n",
        sandbox.path("go").display()
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let db = pmtr.expect_started("db", 1, SHORT);
    pmtr.expect(&format!("job db [{db}] is ready"), SHORT);
    let status = |sandbox: &Sandbox| {
        let out = sandbox.ctl(&["status", "db", "--json"]);
        let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        jobs[0]["notify_status"].as_str().unwrap_or("").to_string()
    };
    assert!(wait_until(SHORT, || status(&sandbox) == "before"));
    assert!(sandbox.ctl(&["reexec"]).status.success());
    pmtr.expect(&format!("adopted job db [{db}]"), SHORT);
    sandbox.write("go", "");
    assert!(
        wait_until(SHORT, || status(&sandbox) == "after"),
        "the new pmtr did not hear the job: {}",
        pmtr.transcript()
    );
}

/// A second `reexec` while the new binary still checks the state of the
/// first is refused; the first then ends as its check says.
#[test]
fn a_reexec_while_one_is_in_progress_is_refused() {
    let sandbox = Sandbox::new();
    let binary = own_binary(&sandbox);
    let config = "job {\n name a\n cmd /bin/sleep 86401.9\n}\n";
    let pmtr = Pmtr::start_program(&sandbox, config, &[], &[&binary], &[]);
    pmtr.expect_started("a", 1, SHORT);
    let gate = sandbox.path("let-the-check-end");
    replace_with_script(
        &binary,
        &format!(
            "while [ ! -e {} ]; do sleep 0.05; done; echo 'not today' >&2; exit 1",
            gate.display()
        ),
    );
    let first = std::thread::spawn({
        let socket = sandbox.socket();
        move || {
            std::process::Command::new(crate::harness::PMTR_CTL)
                .args(["--socket", socket.to_str().unwrap(), "reexec"])
                .output()
                .unwrap()
        }
    });
    pmtr.expect("checks the state", SHORT);
    let second = sandbox.ctl(&["reexec"]);
    assert!(!second.status.success());
    let said = text(&second.stdout) + &text(&second.stderr);
    assert!(
        said.contains("reexec refused: a reexec is in progress"),
        "{said}"
    );
    sandbox.write("let-the-check-end", "");
    let first = first.join().unwrap();
    assert!(!first.status.success());
    let said = text(&first.stdout) + &text(&first.stderr);
    assert!(said.contains("not today"), "{said}");
}

/// A state file another user could have written (another owner, or
/// writable by others) is not read: it could name any process for pmtr to
/// signal.
#[test]
fn a_state_file_pmtr_did_not_write_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let good =
        "{\"format\":\"pmtr-state\",\"version\":1,\"owner\":999999,\"owner_start\":1,\"jobs\":[]}";
    let state = sandbox.write("pmtr.state", good);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o666)).unwrap();
    let pmtr = Pmtr::start(&sandbox, "job {\n name a\n cmd /bin/sleep 86401.10\n}\n");
    pmtr.expect_started("a", 1, SHORT);
    pmtr.expect("is not pmtr's: it belongs to uid", SHORT);
    assert!(!pmtr
        .transcript()
        .contains("ended without stopping its jobs"));
}

/// A new binary that never finishes checking the state is killed at the
/// check's deadline: the reexec is refused, and a later one is not kept
/// out by it.
#[test]
fn a_check_that_hangs_is_killed_and_the_reexec_refused() {
    let sandbox = Sandbox::new();
    let binary = own_binary(&sandbox);
    let config = "job {\n name a\n cmd /bin/sleep 86401.11\n}\n";
    let times = format!("{},reexec_check=500", crate::harness::TEST_TIMES);
    let env = [(crate::harness::TEST_TIMES_VARIABLE, times.as_str())];
    let pmtr = Pmtr::start_program(&sandbox, config, &[], &[&binary], &env);
    let pid = pmtr.expect_started("a", 1, SHORT);
    replace_with_script(&binary, "exec sleep 86406");
    let out = sandbox.ctl(&["reexec"]);
    assert!(!out.status.success());
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains("the new pmtr refused the state (signal 9 (SIGKILL))"),
        "{said}"
    );
    pmtr.expect("did not check the state within 0.5 sec: killing it", SHORT);
    assert_eq!(pids(&sandbox), [("a".to_string(), Some(pid as i64))]);
}
