//! Local control (SPEC 7): `pmtr-ctl` over pmtr's Unix socket — every
//! command, the JSON shape, exit codes, SO_PEERCRED, slow and silent
//! clients, stale and live sockets, follow mode, the metrics file.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    proc_status, skip_if, stubborn, text, wait_until, Pmtr, Sandbox, CLIENT_DEADLINE, GUARD,
    PMTR_CTL, SHORT,
};
use crate::start::is_root;

const TICKER: &str = "job {\n name ticker\n cmd /bin/sh -c \"i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done\"\n}\n";
const QUIET: &str = "job {\n name quiet\n cmd /bin/sleep 1000\n}\njob {\n name off\n cmd /bin/sleep 1001\n disable\n}\n";

fn ctl_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let output = sandbox.ctl(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn status_shows_a_table_and_stable_json() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, QUIET);
    let pid = pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    let table = ctl_ok(&sandbox, &["status"]);
    let lines: Vec<&str> = table.lines().collect();
    fn columns(line: &str) -> Vec<&str> {
        line.split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect()
    }
    assert_eq!(
        columns(lines[0]),
        [
            "JOB",
            "STATE",
            "PID",
            "UPTIME",
            "MEM",
            "CPU",
            "RESTARTS",
            "LAST EXIT",
            "NOTE"
        ]
    );
    assert_eq!(
        columns(lines[1])[..3],
        ["quiet", "running", &pid.to_string()],
        "{table}"
    );
    assert_eq!(
        columns(lines[2]),
        ["off", "disabled", "-", "-", "-", "-", "0", "-"],
        "{table}"
    );
    // Aligned: each column starts at the same offset on every line.
    let offset = |line: &str, cell: &str| line.find(cell).unwrap();
    assert_eq!(offset(lines[0], "STATE"), offset(lines[1], "running"));
    assert_eq!(offset(lines[0], "PID"), offset(lines[1], &pid.to_string()));
    assert_eq!(offset(lines[0], "PID"), offset(lines[2], "-"));
    assert!(!table.contains('\x1b'), "no colour when not on a terminal");

    let json: serde_json::Value =
        serde_json::from_str(&ctl_ok(&sandbox, &["status", "--json"])).unwrap();
    let jobs = json.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let quiet = &jobs[0];
    for field in [
        "name",
        "state",
        "enabled",
        "pid",
        "uptime_seconds",
        "restart_in_seconds",
        "restarts",
        "last_exit",
    ] {
        assert!(quiet.get(field).is_some(), "missing {field} in {quiet}");
    }
    assert_eq!(quiet["name"], "quiet");
    assert_eq!(quiet["state"], "running");
    assert_eq!(quiet["pid"], pid);
    // What it uses, from its process group here (no cgroup): a sleeping
    // process has some resident memory and little CPU time.
    assert!(
        quiet["memory_bytes"].as_u64().is_some_and(|b| b > 0),
        "{quiet}"
    );
    assert!(
        quiet["cpu_seconds"].as_f64().is_some_and(|s| s >= 0.0),
        "{quiet}"
    );
    assert!(
        jobs[1].get("memory_bytes").is_none(),
        "not running: no usage"
    );
    assert_eq!(jobs[1]["state"], "disabled");
    assert_eq!(jobs[1]["enabled"], false);

    let one: serde_json::Value =
        serde_json::from_str(&ctl_ok(&sandbox, &["status", "off", "--json"])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    drop(pmtr);
}

/// An answer larger than the cap on a follower's unread output (1 MiB)
/// is sent whole: `status --json` of thousands of jobs.
#[test]
fn a_large_answer_is_sent_whole() {
    let sandbox = Sandbox::new();
    let long = "x".repeat(100);
    let jobs: String = (0..8000)
        .map(|i| format!("job {{\n name job{i}-{long}\n cmd /bin/true\n disable\n}}\n"))
        .collect();
    let pmtr = Pmtr::start(&sandbox, &jobs);
    pmtr.expect("managing 8000 jobs", SHORT);
    let json = ctl_ok(&sandbox, &["status", "--json"]);
    assert!(json.len() > 1 << 20, "{} bytes", json.len());
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value.as_array().map(Vec::len), Some(8000));
}

#[test]
fn enable_disable_restart_reload_and_exit_codes() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, QUIET);
    let first = pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));

    assert_eq!(
        ctl_ok(&sandbox, &["disable", "quiet"]),
        "quiet: disabled until the next reload\n"
    );
    pmtr.expect(&format!("sending SIGTERM to job quiet [{first}]"), SHORT);
    assert_eq!(
        ctl_ok(&sandbox, &["enable", "quiet", "off"]),
        "quiet: enabled until the next reload\noff: enabled until the next reload\n"
    );
    let second = pmtr.expect_started("quiet", 2, SHORT);
    pmtr.expect_started("off", 1, SHORT);

    assert_eq!(
        ctl_ok(&sandbox, &["restart", "quiet"]),
        "quiet: restarting\n"
    );
    let third = pmtr.expect_started("quiet", 3, SHORT);
    assert!(second != third);

    // The file rules again after a reload: `off` is disabled in it.
    assert_eq!(ctl_ok(&sandbox, &["reload"]), "configuration reloaded\n");
    pmtr.expect("sending SIGTERM to job off", SHORT);

    // Refused: unknown job (1); a bad file on reload (1); no pmtr (2).
    let unknown = sandbox.ctl(&["disable", "ghost", "quiet"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(
        text(&unknown.stderr),
        "pmtr-ctl: ghost: no job named ghost\n"
    );
    assert_eq!(
        text(&unknown.stdout),
        "quiet: disabled until the next reload\n"
    );
    std::fs::write(&pmtr.config, "job {\n name quiet\n").unwrap();
    let bad = sandbox.ctl(&["reload"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("the configuration was not applied"),
        "{}",
        text(&bad.stderr)
    );
    assert!(text(&bad.stderr).contains("has no closing `}`"));
    let status = sandbox.ctl(&["status", "ghost"]);
    assert_eq!(
        (status.status.code(), text(&status.stderr)),
        (Some(1), "pmtr-ctl: no job named ghost\n".to_string())
    );
    drop(pmtr);
    let gone = sandbox.ctl(&["status"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        text(&gone.stderr).starts_with("pmtr-ctl: cannot reach pmtr at "),
        "{}",
        text(&gone.stderr)
    );
}

#[test]
fn logs_show_the_last_lines_and_follow_new_ones() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, TICKER);
    pmtr.expect("ticker[", SHORT);
    pmtr.expect(": tick 5", SHORT);
    let last = ctl_ok(&sandbox, &["logs", "ticker", "-n", "3"]);
    let lines: Vec<&str> = last.lines().collect();
    assert_eq!(lines.len(), 3, "{last}");
    assert!(lines.iter().all(|l| l.starts_with("tick ")));

    let mut follower = Command::new(PMTR_CTL)
        .args(["logs", "ticker", "-n", "1", "-f"])
        .env("PMTR_SOCKET", sandbox.socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(follower.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        seen.push(line.trim().to_string());
    }
    let numbers: Vec<u32> = seen
        .iter()
        .map(|l| l.trim_start_matches("tick ").parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive new lines: {seen:?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(sandbox.ctl(&["logs", "ghost"]).status.code(), Some(1));
}

/// An idle follower costs pmtr nothing: no wake-ups while the job is quiet.
#[test]
fn an_idle_follower_makes_no_wakeups() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, QUIET);
    pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    // The follower's connection is one more socket among pmtr's
    // descriptors (pipes of starting jobs come and go; sockets stay).
    let is_socket = |entry: &std::fs::DirEntry| {
        std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
    };
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", pmtr.pid()))
            .map_or(0, |dir| dir.flatten().filter(is_socket).count())
    };
    let idle = descriptors();
    let mut follower = Command::new(PMTR_CTL)
        .args(["logs", "quiet", "-f"])
        .env("PMTR_SOCKET", sandbox.socket())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let switches = || proc_status(pmtr.pid(), "voluntary_ctxt_switches").unwrap();
    // The follower is accepted, then pmtr is quiet for a moment.
    assert!(wait_until(SHORT, || descriptors() > idle));
    assert!(wait_until(SHORT, || {
        let before = switches();
        std::thread::sleep(Duration::from_millis(200));
        switches() == before
    }));
    let before = switches();
    // An absence cannot be awaited: watch for a wake-up this long.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(switches(), before);
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn a_silent_client_and_a_client_that_reads_nothing_are_dropped() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, TICKER);
    pmtr.expect(": tick 3", SHORT);
    // The deadline runs from pmtr's accept, which may come before connect
    // returns here (pmtr runs on the other core): measure from before it.
    let connected = Instant::now();
    let mut silent = UnixStream::connect(sandbox.socket()).unwrap();
    // A reader that never reads: ask for a lot and leave it unread.
    let mut stuck = UnixStream::connect(sandbox.socket()).unwrap();
    stuck.write_all(b"logs ticker 100000\n").unwrap();
    // pmtr serves others meanwhile: the answer comes while the silent
    // client is still connected.
    assert_eq!(sandbox.ctl(&["status"]).status.code(), Some(0));
    let mut byte = [0u8; 1];
    silent.set_nonblocking(true).unwrap();
    let early = silent.read(&mut byte);
    assert!(
        early
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "{early:?} after {:?}",
        connected.elapsed()
    );
    silent.set_nonblocking(false).unwrap();
    silent.set_read_timeout(Some(GUARD)).unwrap();
    let read = silent.read(&mut byte);
    let waited = connected.elapsed();
    assert!(matches!(read, Ok(0)), "{read:?} after {waited:?}");
    // pmtr's clock counts whole milliseconds: up to 1 ms early.
    let deadline = CLIENT_DEADLINE - Duration::from_millis(1);
    assert!(waited >= deadline, "dropped after {waited:?}");
    drop(stuck);
    assert_eq!(sandbox.ctl(&["status"]).status.code(), Some(0));
}

#[test]
fn a_bad_request_gets_an_error_line() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, QUIET);
    pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    let mut stream = UnixStream::connect(sandbox.socket()).unwrap();
    stream.write_all(b"frobnicate\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(
        answer,
        "{\"type\":\"error\",\"message\":\"unknown request `frobnicate`\"}\n"
    );
    let mut stream = UnixStream::connect(sandbox.socket()).unwrap();
    stream.write_all(&vec![b'x'; 5_000]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains("request longer than 4096 bytes"),
        "{answer}"
    );
}

/// SO_PEERCRED: only pmtr's uid and root are served, even where the
/// socket's file permissions would let others connect.
#[test]
fn another_uid_is_refused() {
    if skip_if(
        !is_root(),
        "another_uid_is_refused",
        "needs root for a second uid",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, QUIET);
    pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sandbox.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(sandbox.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    use std::os::unix::process::CommandExt;
    let output = Command::new(PMTR_CTL)
        .arg("status")
        .env("PMTR_SOCKET", sandbox.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "pmtr-ctl: permission denied: only root may control this pmtr\n"
    );
    pmtr.expect("refused a control connection from uid 65534", SHORT);
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
    let sandbox = Sandbox::new();
    // A crashed pmtr's socket: the file is there, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(sandbox.socket()).unwrap());
    assert!(sandbox.socket().exists());
    let first = Pmtr::start(&sandbox, QUIET);
    first.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.ctl(&["status"]).status.code() == Some(0)));

    let other = Sandbox::new();
    let second = Pmtr::start_with(
        &other,
        "",
        &["--socket", sandbox.socket().to_str().unwrap()],
        None,
    );
    second.expect(
        &format!("another pmtr listens on {}", sandbox.socket().display()),
        SHORT,
    );
    let status = ctl_ok(&sandbox, &["status"]);
    assert!(
        status.contains("quiet"),
        "the first pmtr still answers: {status}"
    );
}

#[test]
fn the_socket_is_removed_at_exit() {
    let sandbox = Sandbox::new();
    let mut pmtr = Pmtr::start(&sandbox, QUIET);
    pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    pmtr.signal(crate::harness::Signal::SIGTERM);
    pmtr.wait_exit(SHORT).unwrap();
    assert!(!sandbox.socket().exists());
}

#[test]
fn the_metrics_file_follows_changes_and_passes_promtool() {
    let sandbox = Sandbox::new();
    let metrics = sandbox.path("pmtr.prom");
    let checked = "job {\n name checked\n cmd /bin/sleep 1000\n health cmd /bin/true\n health every 100ms\n}\n";
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("{QUIET}{checked}metrics to {}\n", metrics.display()),
    );
    pmtr.expect_started("quiet", 1, SHORT);
    assert!(wait_until(SHORT, || std::fs::read_to_string(&metrics)
        .is_ok_and(|t| t.contains("pmtr_job_up{job=\"quiet\"} 1")
            && t.contains("pmtr_job_healthy{job=\"checked\"} 1")
            && t.contains("pmtr_job_memory_bytes{job=\"quiet\"}")
            && t.contains("pmtr_job_cpu_seconds_total{job=\"quiet\"}"))));
    let written = std::fs::metadata(&metrics).unwrap().modified().unwrap();
    // An absence cannot be awaited: watch for a rewrite this long.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::metadata(&metrics).unwrap().modified().unwrap(),
        written,
        "not rewritten on a timer"
    );
    ctl_ok(&sandbox, &["disable", "quiet"]);
    assert!(wait_until(SHORT, || std::fs::read_to_string(&metrics)
        .is_ok_and(|t| t.contains("pmtr_job_up{job=\"quiet\"} 0"))));
    let text_now = std::fs::read_to_string(&metrics).unwrap();
    assert!(text_now.contains("pmtr_job_enabled{job=\"quiet\"} 0"));
    let no_promtool = !crate::faults::have("promtool");
    if !skip_if(
        no_promtool,
        "the_metrics_file_follows_changes",
        "promtool is not installed",
    ) {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .output_with_stdin(text_now.as_bytes());
        assert!(
            check.status.success(),
            "promtool: {}{}",
            text(&check.stdout),
            text(&check.stderr)
        );
        check.stdout.clear();
    }
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// A reload deleted a job that ignores SIGTERM: while it still stops, the
/// core no longer knows it, and `pmtr-ctl restart` says so (exit 1) just
/// as the daemon's log does — it used to answer "restarting".
#[test]
fn restart_of_a_job_being_removed_is_refused_like_the_log_says() {
    let sandbox = Sandbox::new();
    let (cmd, ignoring) = stubborn(&sandbox, "stubborn");
    // A kill grace longer than the test: the job stays "stopping".
    let mut pmtr = Pmtr::start_with_times(
        &sandbox,
        &format!("job {{\n name stubborn\n cmd {cmd}\n}}\n"),
        "kill_after=600000",
    );
    pmtr.expect_started("stubborn", 1, SHORT);
    assert!(wait_until(SHORT, || ignoring.exists()));
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    std::fs::write(&pmtr.config, "").unwrap();
    pmtr.expect("sending SIGTERM to job stubborn", SHORT);
    // Still there, still stopping: the request meets a job being removed.
    let table = ctl_ok(&sandbox, &["status"]);
    assert!(table.contains("stopping"), "{table}");
    let restart = sandbox.ctl(&["restart", "stubborn"]);
    assert_eq!(
        (restart.status.code(), text(&restart.stderr)),
        (
            Some(1),
            "pmtr-ctl: stubborn: no job named stubborn\n".to_string()
        ),
        "stdout: {}",
        text(&restart.stdout)
    );
    pmtr.expect("no job named stubborn: request ignored", SHORT);
    assert_eq!(pmtr.count("restarting job stubborn on request"), 0);
    assert!(pmtr.stop_now().is_some());
}

/// pmtr's CPU time so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of descriptors, a failed accept leaves the listener readable: pmtr
/// must wait, not spin on it. Its descriptor limit is lowered under it
/// (prlimit), then clients are opened until accepts fail.
#[test]
fn out_of_descriptors_pmtr_waits_instead_of_spinning() {
    if skip_if(
        Command::new("prlimit").arg("--version").output().is_err(),
        "out_of_descriptors_pmtr_waits_instead_of_spinning",
        "prlimit is not installed (util-linux)",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    // Idle clients that never reach their deadline: the table stays full
    // for the whole test, one spell of failures.
    let config = "job {\n name a\n cmd /bin/sleep 1000\n}\n";
    let pmtr = Pmtr::start_with_times(&sandbox, config, "client_deadline=600000");
    pmtr.expect_started("a", 1, SHORT);
    let limited = Command::new("prlimit")
        .args(["--pid", &pmtr.pid().to_string(), "--nofile=24:24"])
        .output()
        .unwrap();
    assert!(limited.status.success(), "{}", text(&limited.stderr));
    let idle: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(sandbox.socket()).ok())
        .collect();
    assert_eq!(idle.len(), 40, "the backlog takes them");
    pmtr.expect("unable to accept a control connection", SHORT);
    let hz = 100; // USER_HZ on Linux
    let before = cpu_ticks(pmtr.pid());
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pmtr.pid()) - before;
    let elapsed = window.elapsed().as_secs_f64();
    // A spin takes the whole window; waiting takes next to nothing.
    assert!(
        (used as f64 / hz as f64) < elapsed / 2.0,
        "pmtr used {used} ticks in {elapsed:.1} s while out of descriptors"
    );
    // Said once per spell of failures, not at each of the retries, four
    // a second.
    assert_eq!(
        pmtr.count("unable to accept a control connection"),
        1,
        "{}",
        pmtr.transcript()
    );
    // The idle clients hang up; then pmtr answers again.
    drop(idle);
    assert!(wait_until(SHORT, || sandbox
        .ctl(&["status"])
        .status
        .success()));
}

#[test]
fn a_socket_path_naming_a_file_leaves_the_file_alone() {
    let sandbox = Sandbox::new();
    let file = sandbox.write("notes.txt", "mine\n");
    let pmtr = Pmtr::start_with(&sandbox, QUIET, &["--socket", file.to_str().unwrap()], None);
    pmtr.expect(
        &format!("not replacing {}: it is not a socket", file.display()),
        SHORT,
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
}

#[test]
fn the_socket_is_refused_in_a_directory_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let open = sandbox.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("pmtr.sock");
    let pmtr = Pmtr::start_with(
        &sandbox,
        QUIET,
        &["--socket", socket.to_str().unwrap()],
        None,
    );
    pmtr.expect("writable by group or others (mode 777)", SHORT);
    assert!(!socket.exists());
}

/// pmtr-ctl tells its request only to a pmtr of root or of its own user:
/// here a pmtr run as `nobody`, on a socket in a directory of nobody's.
#[test]
fn pmtr_ctl_talks_only_to_root_or_itself() {
    if skip_if(
        !is_root() || !crate::faults::have("setpriv"),
        "pmtr_ctl_talks_only_to_root_or_itself",
        "needs root and setpriv (util-linux) to run a pmtr as nobody",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    // No job: pmtr is killed with its group, and would leave jobs behind.
    let (other, socket) = crate::harness::pmtr_as_nobody(&sandbox, "", true);
    assert!(
        wait_until(SHORT, || socket.exists()),
        "{}",
        other.transcript()
    );
    let output = Command::new(PMTR_CTL)
        .args(["status"])
        .env("PMTR_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("is served by uid 65534, neither root nor you"),
        "{}",
        text(&output.stderr)
    );
}
