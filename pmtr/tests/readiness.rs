//! SPEC 11.3 and 11.4 through the real daemon: `ready notify` with a real
//! sd_notify client (ours below, and `systemd-notify`), `ready cmd`, health
//! checks by command and by TCP against a real listener, a hung check
//! killed at its timeout, the watchdog, `pmtr-ctl wait`, and pmtr's own
//! READY=1 once its jobs are ready.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::harness::{alive, skip_if, text, wait_until, Pmtr, Sandbox, SHORT};

/// Tells [`sd_notify_client`] what to send.
const SEND: &str = "PMTR_TEST_SD_NOTIFY";
const DELAY: &str = "PMTR_TEST_SD_DELAY_MS";
const PETS: &str = "PMTR_TEST_SD_WATCHDOG_PETS";

/// Not a test: the sd_notify client that the jobs of these tests run
/// (this test binary, `--exact` this name). It speaks the protocol as
/// `systemd-notify --ready` does — one datagram to `$NOTIFY_SOCKET`, the
/// kernel attaching the sender's credentials — then pets the watchdog
/// `PETS` times, 100 ms apart, and stays up. Without `SEND` it returns.
#[test]
fn sd_notify_client() {
    let Ok(message) = std::env::var(SEND) else {
        return;
    };
    let delay: u64 = std::env::var(DELAY).map_or(0, |d| d.parse().unwrap());
    std::thread::sleep(Duration::from_millis(delay));
    let target = std::env::var("NOTIFY_SOCKET").expect("pmtr gives NOTIFY_SOCKET");
    let name = target.strip_prefix('@').expect("an abstract socket");
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::unbound().unwrap();
    let message = message.replace("\\n", "\n");
    socket.send_to_addr(message.as_bytes(), &address).unwrap();
    let pets: u32 = std::env::var(PETS).map_or(0, |p| p.parse().unwrap());
    for _ in 0..pets {
        std::thread::sleep(Duration::from_millis(100));
        socket.send_to_addr(b"WATCHDOG=1", &address).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1000));
}

/// A job line that runs [`sd_notify_client`] with `env` settings.
fn client_job(name: &str, env: &[(&str, &str)], extra: &str) -> String {
    let me = std::env::current_exe().unwrap();
    let env: String = env
        .iter()
        .map(|(k, v)| format!(" env \"{k}={v}\"\n"))
        .collect();
    format!(
        "job {{\n name {name}\n cmd {} --exact readiness::sd_notify_client --quiet --test-threads 1\n{env} {extra}\n}}\n",
        me.display()
    )
}

fn json_status(sandbox: &Sandbox, job: &str) -> serde_json::Value {
    let output = sandbox.ctl(&["status", job, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()[0].clone()
}

#[test]
fn ready_notify_with_an_sd_notify_client() {
    let sandbox = Sandbox::new();
    let db = client_job(
        "db",
        &[
            (SEND, "READY=1\\nSTATUS=accepting connections"),
            (DELAY, "300"),
        ],
        "ready notify",
    );
    let text = format!("{db}job {{\n name web\n cmd /bin/sleep 1001\n after db\n}}\n");
    let pmtr = Pmtr::start(&sandbox, &text);
    let db = pmtr.expect_started("db", 1, SHORT);
    pmtr.expect_started("web", 1, SHORT);
    let ready = pmtr.first_line(|l| l.ends_with(&format!("job db [{db}] is ready")));
    let web = pmtr.first_line(|l| l.contains("started job web"));
    assert!(ready.is_some() && ready < web, "{}", pmtr.transcript());
    let status = json_status(&sandbox, "db");
    assert_eq!(status["state"], "running");
    assert_eq!(status["notify_status"], "accepting connections");
}

/// The real `systemd-notify`: it sends with its parent's pid (the job's
/// leader) and waits for pmtr to close the descriptor of its
/// `BARRIER=1`; it exits 0 only if pmtr did.
#[test]
fn ready_notify_with_systemd_notify() {
    let missing = which("systemd-notify").is_none();
    if skip_if(
        missing,
        "ready_notify_with_systemd_notify",
        "systemd-notify is not installed",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let text = format!(
        "job {{\n name db\n cmd /bin/sh -c \"sleep 0.2; systemd-notify --ready --status=warm && : > notified; exec sleep 1000\"\n dir {}\n ready notify\n}}\n",
        sandbox.root().display()
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let db = pmtr.expect_started("db", 1, SHORT);
    pmtr.expect(&format!("job db [{db}] is ready"), SHORT);
    assert!(
        wait_until(SHORT, || sandbox.path("notified").exists()),
        "systemd-notify did not exit 0: {}",
        pmtr.transcript()
    );
    assert_eq!(json_status(&sandbox, "db")["notify_status"], "warm");
}

/// `ready cmd` passes once its command exits 0; a probe command that does
/// not exist is a failed check with the reason, never a crash.
#[test]
fn ready_cmd_and_a_probe_command_that_does_not_exist() {
    let sandbox = Sandbox::new();
    let dir = sandbox.root().display().to_string();
    let text = format!(
        "job {{\n name a\n cmd /bin/sleep 1000\n dir {dir}\n ready cmd /bin/sh -c \"echo waiting for flag; test -e flag\"\n}}\n\
         job {{\n name b\n cmd /bin/sleep 1001\n ready cmd /nonexistent/probe\n ready timeout 1s\n}}\n"
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let a = pmtr.expect_started("a", 1, SHORT);
    assert!(wait_until(SHORT, || {
        json_status(&sandbox, "a")["check_output"] == "waiting for flag"
    }));
    assert_eq!(json_status(&sandbox, "a")["state"], "starting");
    sandbox.write("flag", "");
    pmtr.expect(&format!("job a [{a}] is ready"), SHORT);
    let b = pmtr.expect_started("b", 1, SHORT);
    pmtr.expect(&format!("job b [{b}] not ready after 1 sec"), SHORT);
    let output = json_status(&sandbox, "b")["check_output"].clone();
    assert_eq!(
        output,
        "can't exec /nonexistent/probe: No such file or directory",
        "{}",
        pmtr.transcript()
    );
}

#[test]
fn a_failing_health_check_restarts_the_job_with_its_last_line() {
    let sandbox = Sandbox::new();
    let text = "job {\n name web\n cmd /bin/sleep 1000\n health cmd /bin/sh -c \"echo starting check; echo down; exit 1\"\n health every 100ms\n health retries 2\n}\n";
    let pmtr = Pmtr::start(&sandbox, text);
    pmtr.expect_started("web", 1, SHORT);
    pmtr.expect(
        "job web: health check failed (1 of 2 in a row): \"down\"",
        SHORT,
    );
    pmtr.expect(
        "job web unhealthy: 2 checks failed (last: \"down\"); restarting",
        SHORT,
    );
    pmtr.expect_started("web", 2, SHORT);
}

/// A check still running at `health timeout` is killed with its process
/// group and counts as failed: nothing of it is left behind.
#[test]
fn a_hung_health_check_is_killed_at_its_timeout() {
    let sandbox = Sandbox::new();
    let text = "job {\n name web\n cmd /bin/sleep 1000\n health cmd /bin/sh -c \"sleep 9191 & sleep 9192\"\n health every 100ms\n health timeout 500ms\n health retries 1\n}\n";
    let before = processes_with("sleep 919");
    let pmtr = Pmtr::start(&sandbox, text);
    let web = pmtr.expect_started("web", 1, SHORT);
    // Both processes of the first check (the shell's child in the
    // background too), found by their unusual arguments.
    let mut hung = Vec::new();
    assert!(wait_until(SHORT, || {
        hung = processes_with("sleep 919");
        hung.retain(|pid| !before.contains(pid));
        hung.len() >= 2
    }));
    pmtr.expect(
        "job web unhealthy: 1 check failed (last: \"timed out after 0.5 sec\"); restarting",
        SHORT,
    );
    pmtr.expect_started("web", 2, SHORT);
    assert!(wait_until(SHORT, || !alive(web)));
    assert!(
        wait_until(SHORT, || hung.iter().all(|&pid| !alive(pid))),
        "left behind: {hung:?}"
    );
}

/// What a check leaves running in its process group ends with it.
#[test]
fn a_check_leaves_nothing_behind() {
    let sandbox = Sandbox::new();
    let text = "job {\n name web\n cmd /bin/sleep 1000\n health cmd /bin/sh -c \"sleep 9393 & exit 0\"\n health every 100ms\n}\n";
    let before = processes_with("sleep 9393");
    let pmtr = Pmtr::start(&sandbox, text);
    pmtr.expect_started("web", 1, SHORT);
    assert!(wait_until(SHORT, || {
        json_status(&sandbox, "web")["healthy"] == true
    }));
    // Checks keep coming every 100 ms; each one's leftover is killed as
    // it ends, so at most the latest one's is there.
    std::thread::sleep(Duration::from_millis(1000)); // ten checks, not awaitable
    let mut left = processes_with("sleep 9393");
    left.retain(|pid| !before.contains(pid));
    assert!(left.len() <= 1, "left behind: {left:?}");
}

/// Pids of the processes whose command line contains `needle` (looked at,
/// never signalled).
fn processes_with(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline: Vec<u8> = cmdline
                .iter()
                .map(|&b| if b == 0 { b' ' } else { b })
                .collect();
            crate::harness::text(&cmdline).contains(needle)
        })
        .collect()
}

/// `health tcp` against a real listener: healthy while it listens,
/// restarted once it does not.
#[test]
fn health_tcp_against_a_real_listener() {
    let sandbox = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let text = format!(
        "job {{\n name web\n cmd /bin/sleep 1000\n health tcp {port}\n health every 100ms\n health retries 2\n}}\n"
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    pmtr.expect_started("web", 1, SHORT);
    assert!(wait_until(SHORT, || json_status(&sandbox, "web")
        ["healthy"]
        == true));
    drop(listener);
    pmtr.expect(
        "job web unhealthy: 2 checks failed (last: \"connect: Connection refused\"); restarting",
        SHORT,
    );
    pmtr.expect_started("web", 2, SHORT);
}

#[test]
fn the_watchdog_restarts_a_job_that_goes_quiet() {
    let sandbox = Sandbox::new();
    let text = client_job(
        "w",
        &[(SEND, "READY=1"), (PETS, "5")],
        "ready notify\n health watchdog 400ms",
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let w = pmtr.expect_started("w", 1, SHORT);
    pmtr.expect(&format!("job w [{w}] is ready"), SHORT);
    let ready_seen = std::time::Instant::now();
    pmtr.expect(
        &format!("job w [{w}] unhealthy: no WATCHDOG=1 for 0.4 sec; restarting"),
        SHORT,
    );
    // Five pets 100 ms apart, then 400 ms of silence: at least 0.9 s after
    // READY=1. A watchdog that ignored the pets would fire after 0.4 s;
    // 0.5 s leaves room for the harness reading the log late.
    let quiet_after = ready_seen.elapsed();
    assert!(
        quiet_after >= Duration::from_millis(500),
        "{quiet_after:?}: {}",
        pmtr.transcript()
    );
    pmtr.expect_started("w", 2, SHORT);
}

#[test]
fn pmtr_ctl_wait_returns_when_ready_or_fails_at_its_timeout() {
    let sandbox = Sandbox::new();
    let config = format!(
        "job {{\n name db\n cmd /bin/sleep 1000\n dir {}\n ready file up\n}}\n",
        sandbox.root().display()
    );
    let pmtr = Pmtr::start(&sandbox, &config);
    pmtr.expect_started("db", 1, SHORT);
    let early = sandbox.ctl(&["wait", "db", "--timeout", "300ms"]);
    assert_eq!(early.status.code(), Some(1));
    assert!(text(&early.stderr).contains("timed out waiting for db"));
    let unknown = sandbox.ctl(&["wait", "db", "ghost"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("ghost: no job named ghost"));
    let writer = {
        let flag = sandbox.path("up");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::write(flag, "").unwrap();
        })
    };
    let waited = sandbox.ctl(&["wait", "db", "--timeout", "30s"]);
    writer.join().unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited.stderr));
    assert_eq!(text(&waited.stdout).trim(), "ready");
}

/// pmtr's own READY=1 (Type=notify) waits for its `ready notify` job.
#[test]
fn pmtr_says_ready_once_its_jobs_are() {
    let sandbox = Sandbox::new();
    let path = sandbox.path("systemd.sock");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(SHORT)).unwrap();
    let config = client_job("db", &[(SEND, "READY=1"), (DELAY, "300")], "ready notify");
    let pmtr = Pmtr::start_env(
        &sandbox,
        &config,
        &[],
        None,
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let mut buffer = [0u8; 64];
    let n = systemd.recv(&mut buffer).unwrap();
    assert_eq!(&buffer[..n], b"READY=1");
    let db = pmtr.expect_started("db", 1, SHORT);
    // The log is read on a thread of the harness: it may lag the datagram.
    pmtr.expect("all jobs are ready", SHORT);
    let ready = pmtr.first_line(|l| l.ends_with(&format!("job db [{db}] is ready")));
    let all = pmtr.first_line(|l| l.contains("all jobs are ready"));
    assert!(ready.is_some() && ready < all, "{}", pmtr.transcript());
}

pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.exists())
    })
}
