//! Running as a daemon (no `-F`), the pidfile lock, and the cost of idling.

use std::process::Command;
use std::time::Duration;

use crate::harness::{
    alive, children_of, proc_status, text, wait_until, Pmtr, Sandbox, Signal, PMTR, SHORT,
};

/// A daemon this test started, stopped (and its jobs killed) on drop.
struct Daemon(i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0);
        let jobs = children_of(self.0);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if !wait_until(SHORT, || !alive(self.0)) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            for job in jobs {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(job), Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn without_f_pmtr_daemonizes_after_the_config_parsed() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("pmtr.conf", "job {\n name bg\n cmd /bin/sleep 1000\n}\n");
    let pidfile = sandbox.path("pmtr.pid");
    let output = Command::new(PMTR)
        .env("PMTR_SOCKET", sandbox.socket())
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            pidfile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon = Daemon(pid);
    assert!(alive(pid));
    // A new session of its own, stdio on /dev/null.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3].parse::<i32>().unwrap(), pid, "session leader");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/1"))
            .unwrap()
            .to_str(),
        Some("/dev/null")
    );
    assert!(
        wait_until(SHORT, || children_of(pid).len() == 1),
        "the job runs"
    );

    // A second pmtr on the same pidfile refuses to start.
    let second = Command::new(PMTR)
        .env("PMTR_SOCKET", sandbox.socket())
        .args([
            "-F",
            "-c",
            conf.to_str().unwrap(),
            "-p",
            pidfile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert_eq!(
        text(&second.stderr),
        format!(
            "pmtr: pidfile {} is locked by another pmtr (pid {pid})\n",
            pidfile.display()
        )
    );

    let job = children_of(pid)[0];
    drop(daemon);
    assert!(wait_until(SHORT, || !alive(pid) && !alive(job)));
    assert!(!pidfile.exists());
}

#[test]
fn a_bad_config_at_start_is_an_error_exit_with_the_errors() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("pmtr.conf", "job {\n name x\n cmd relative\n}\n");
    for args in [
        vec!["-c", conf.to_str().unwrap()],
        vec!["-F", "-c", conf.to_str().unwrap()],
    ] {
        let output = Command::new(PMTR)
            .env("PMTR_SOCKET", sandbox.socket())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(":3:6: error: cmd must be an absolute path"),
            "{stderr}"
        );
        assert!(stderr.ends_with("1 error in configuration\n"), "{stderr}");
    }
    let missing = Command::new(PMTR)
        .env("PMTR_SOCKET", sandbox.socket())
        .args(["-c", "/no/such.conf"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        text(&missing.stderr),
        "pmtr: unable to read /no/such.conf: No such file or directory\n"
    );
}

#[test]
fn a_pidfile_in_a_missing_directory_fails_the_start() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("pmtr.conf", "");
    let output = Command::new(PMTR)
        .env("PMTR_SOCKET", sandbox.socket())
        .args(["-c", conf.to_str().unwrap(), "-p", "/no/such/dir/pmtr.pid"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "pmtr: unable to open pidfile /no/such/dir/pmtr.pid: No such file or directory\n"
    );
}

/// SPEC 4.7: with jobs running and nothing due, pmtr does not wake up.
#[test]
fn an_idle_pmtr_makes_no_wakeups() {
    let sandbox = Sandbox::new();
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("job {{\n name j{i}\n cmd /bin/sleep 1000\n}}\n"));
    }
    let pmtr = Pmtr::start(&sandbox, &text);
    pmtr.expect_count("started job", 100, Duration::from_secs(20));
    let switches = || proc_status(pmtr.pid(), "voluntary_ctxt_switches").unwrap();
    // Let the start settle (the last exec status pipes close): quiet for
    // a moment.
    assert!(wait_until(SHORT, || {
        let before = switches();
        std::thread::sleep(Duration::from_millis(200));
        switches() == before
    }));
    let before = switches();
    // An absence cannot be awaited: watch for a wake-up this long.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(switches(), before, "pmtr woke up while idle");
}

/// A link planted at the pidfile's name, in a directory others can write,
/// is refused: pmtr never writes through it.
#[test]
fn a_link_planted_as_the_pidfile_is_refused() {
    let sandbox = crate::harness::Sandbox::new();
    let precious = sandbox.write("precious", "keep me\n");
    let planted = sandbox.path("pmtr.pid");
    std::os::unix::fs::symlink(&precious, &planted).unwrap();
    let pmtr = crate::harness::Pmtr::start_env(
        &sandbox,
        "job {\n name a\n cmd /bin/sleep 1000\n}\n",
        &["-p", planted.to_str().unwrap()],
        None,
        &[],
    );
    pmtr.expect("unable to open pidfile", crate::harness::SHORT);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
}
