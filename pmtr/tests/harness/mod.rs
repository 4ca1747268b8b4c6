//! The test harness: a sandbox directory per test, the real binaries, and
//! waiting for conditions with a deadline instead of sleeping.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub use nix::sys::signal::Signal;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A workspace binary: Cargo names it for the package under test; the
/// other packages' tests (pmtr-rptserver's) find it in the target dir,
/// which `cargo test --workspace` fills before any test runs.
macro_rules! binary {
    ($name:literal) => {
        match option_env!(concat!("CARGO_BIN_EXE_", $name)) {
            Some(path) => path,
            None => concat!(env!("CARGO_MANIFEST_DIR"), "/../target/debug/", $name),
        }
    };
}

pub const PMTR: &str = binary!("pmtr");
pub const PMTR_CTL: &str = binary!("pmtr-ctl");
pub const ONCONNECT: &str = binary!("onconnect");
pub const RPTSERVER: &str = binary!("pmtr-rptserver");

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `cmd` of a job that ignores SIGTERM, and the file it creates once
/// it does: wait for the file before asking pmtr to stop the job.
pub fn stubborn(sandbox: &Sandbox, name: &str) -> (String, PathBuf) {
    let marker = sandbox.path(&format!("{name}.ignoring-term"));
    let cmd = format!(
        "/bin/sh -c \"trap '' TERM; : > {}; while true; do sleep 1; done\"",
        marker.display()
    );
    (cmd, marker)
}

/// A directory of the test's own, removed when the test ends.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("pmtr-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `relative` and returns its full path.
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// The control socket of the sandbox's pmtr.
    pub fn socket(&self) -> PathBuf {
        self.path("pmtr.sock")
    }

    /// `pmtr-ctl` with these arguments, talking to the sandbox's pmtr.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(PMTR_CTL)
            .args(args)
            .env("PMTR_SOCKET", self.socket())
            .current_dir(self.root())
            .output()
            .expect("run pmtr-ctl")
    }

    /// `pmtr` with these arguments, run in the sandbox.
    pub fn pmtr(&self, args: &[&str]) -> Output {
        Command::new(PMTR)
            .args(args)
            .env(TEST_TIMES_VARIABLE, TEST_TIMES)
            .current_dir(self.root())
            .output()
            .expect("run pmtr")
    }
}

/// Set by `.ci/run`: every tool a test needs is installed there, so a
/// missing one is a failure, not a skip.
pub const REQUIRE_ALL: &str = "PMTR_TESTS_REQUIRE_ALL";

/// True when the test must be skipped because `missing` holds. The skip is
/// said on the process's own stderr, which libtest does not capture (it
/// captures `eprintln!` of passing tests), so `SKIP test: reason` shows in
/// every run; with `PMTR_TESTS_REQUIRE_ALL` set the test fails instead.
pub fn skip_if(missing: bool, test: &str, reason: &str) -> bool {
    use std::io::Write;
    if !missing {
        return false;
    }
    if std::env::var_os(REQUIRE_ALL).is_some() {
        panic!("{test}: {reason}, and {REQUIRE_ALL} says this run has everything");
    }
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
    true
}

/// Says, as visibly as a skip, that `test` checks less on this machine for
/// want of something no install provides (a kernel's layout): the test
/// still runs and checks the rest, so it is no failure in CI either.
pub fn note_partial(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "PARTIAL {test}: {reason}");
}

/// Polls `condition` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pmtr run in the foreground on a configuration of the sandbox, its
/// stderr log collected line by line. Dropping it stops pmtr (SIGTERM,
/// then SIGKILL) and kills the process groups of the jobs it started.
pub struct Pmtr {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub config: PathBuf,
}

impl Pmtr {
    /// Starts `pmtr -F -c pmtr.conf` with `text` as the configuration.
    pub fn start(sandbox: &Sandbox, text: &str) -> Pmtr {
        Pmtr::start_with(sandbox, text, &[], None)
    }

    /// As `start`, with extra arguments and optionally a wrapper command
    /// (`strace ...`, `prlimit ...`) in front of pmtr.
    pub fn start_with(
        sandbox: &Sandbox,
        text: &str,
        args: &[&str],
        wrapper: Option<&[&str]>,
    ) -> Pmtr {
        Pmtr::start_env(sandbox, text, args, wrapper, &[])
    }

    /// As `start`, with some of `TEST_TIMES` overridden (`kill_after=600000`):
    /// a rule set far longer than a test keeps it out of the way.
    pub fn start_with_times(sandbox: &Sandbox, text: &str, times: &str) -> Pmtr {
        let times = format!("{TEST_TIMES},{times}");
        Pmtr::start_env(sandbox, text, &[], None, &[(TEST_TIMES_VARIABLE, &times)])
    }

    /// As `start_with`, with extra environment variables for pmtr.
    pub fn start_env(
        sandbox: &Sandbox,
        text: &str,
        args: &[&str],
        wrapper: Option<&[&str]>,
        env: &[(&str, &str)],
    ) -> Pmtr {
        let wrapper: Vec<&str> = wrapper
            .unwrap_or(&[])
            .iter()
            .copied()
            .chain([PMTR])
            .collect();
        Pmtr::start_program(sandbox, text, args, &wrapper, env)
    }

    /// As `start_with`, running `program` (the last word of `command`,
    /// after any wrapper) as pmtr: a copy of the binary a test replaces.
    pub fn start_program(
        sandbox: &Sandbox,
        text: &str,
        args: &[&str],
        command: &[&str],
        env: &[(&str, &str)],
    ) -> Pmtr {
        let config = sandbox.write("pmtr.conf", text);
        let mut argv: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        argv.extend(["-F", "-c", config.to_str().unwrap()].map(String::from));
        if !args.contains(&"--socket") {
            argv.extend([
                "--socket".to_string(),
                sandbox.socket().to_string_lossy().into_owned(),
            ]);
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env(TEST_TIMES_VARIABLE, TEST_TIMES)
            .envs(env.iter().copied())
            .current_dir(sandbox.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // A binary a test just copied can be "busy" for a moment: another
        // test's fork may hold a copy of the descriptor it was written
        // through until that child execs.
        let mut spawned = None;
        wait_until(SHORT, || match command.spawn() {
            Ok(child) => {
                spawned = Some(child);
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => false,
            Err(e) => panic!("start pmtr: {e}"),
        });
        let mut child = spawned.expect("start pmtr: text file busy");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Pmtr {
            child,
            log,
            reader: Some(reader),
            config,
        }
    }

    /// pmtr's pid, as it logs it (`pmtr[PID]: ...`): with a wrapper such
    /// as strace, pmtr is not the process the harness started.
    pub fn pid(&self) -> i32 {
        let logged = |line: &String| {
            line.strip_prefix("pmtr[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(pid, _)| pid.parse().ok())
        };
        wait_until(SHORT, || !self.lines().is_empty());
        match self.lines().first().and_then(logged) {
            // PID 1 of its own namespace: from here, the wrapper's child.
            Some(1) => children_of(self.child.id() as i32)
                .first()
                .copied()
                .unwrap_or(-1),
            Some(pid) => pid,
            None => self.child.id() as i32,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Every log line, joined, for assertion messages.
    pub fn transcript(&self) -> String {
        self.lines().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `count` lines contain `needle`; panics with the log if
    /// that does not happen within `timeout`.
    pub fn expect_count(&self, needle: &str, count: usize, timeout: Duration) {
        if !wait_until(timeout, || self.count(needle) >= count) {
            panic!(
                "waited {timeout:?} for {count} line(s) with {needle:?}, saw {}:\n{}",
                self.count(needle),
                self.transcript()
            );
        }
    }

    /// The index of the first log line `matches` accepts: for checking the
    /// order of two events.
    pub fn first_line(&self, matches: impl Fn(&str) -> bool) -> Option<usize> {
        self.lines().iter().position(|l| matches(l))
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn expect(&self, needle: &str, timeout: Duration) -> String {
        self.expect_count(needle, 1, timeout);
        self.lines()
            .into_iter()
            .find(|l| l.contains(needle))
            .unwrap()
    }

    /// The pid of the latest start of job `name`, from `started job NAME [PID]`.
    pub fn job_pid(&self, name: &str) -> Option<i32> {
        let prefix = format!("started job {name} [");
        self.lines().iter().rev().find_map(|l| {
            l.split_once(&prefix)
                .and_then(|(_, rest)| rest.trim_end_matches(']').parse().ok())
        })
    }

    /// Waits for job `name` to have started `starts` times; returns its pid.
    pub fn expect_started(&self, name: &str, starts: usize, timeout: Duration) -> i32 {
        self.expect_count(&format!("started job {name} ["), starts, timeout);
        self.job_pid(name).unwrap()
    }

    /// Every pid pmtr logged as a job start.
    pub fn started_pids(&self) -> Vec<i32> {
        self.lines()
            .iter()
            .filter_map(|l| l.split_once("started job ").map(|(_, rest)| rest))
            .filter_map(|rest| {
                rest.rsplit_once('[')
                    .and_then(|(_, pid)| pid.trim_end_matches(']').parse().ok())
            })
            .collect()
    }

    pub fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }

    /// Shuts pmtr down without waiting for the kill grace: SIGTERM, and
    /// once pmtr logged it, a second SIGTERM (SIGKILL to every job).
    pub fn stop_now(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.expect("exiting on signal 15", SHORT);
        self.signal(Signal::SIGTERM);
        self.wait_exit(GUARD)
    }

    /// Waits for pmtr to exit; its exit code, or None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Pmtr {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // Whatever pmtr could not stop: only the groups of jobs it started.
        for pid in self.started_pids() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// One field of /proc/PID/status (`SigBlk`, `voluntary_ctxt_switches`, ...).
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
                    children.push(pid);
                }
            }
        }
    }
    children
}

pub const SHORT: Duration = Duration::from_secs(5);
/// Long enough for the rapid-restart guard or kill grace, with room for a
/// loaded machine.
pub const GUARD: Duration = Duration::from_secs(10);

/// The policy times every pmtr of the suite runs with (a debug build reads
/// them; docs/ARCHITECTURE.md, "Fast deterministic tests"): the 10 s rules
/// of the original shortened so that a test of one takes well under 1 s.
pub const TEST_TIMES: &str = "rapid_restart=500,kill_after=400,spawn_retry=200,\
                              reprobe=100,report_every=1000,client_deadline=2000,\
                              release_after=50";
/// The rapid-restart guard of `TEST_TIMES`, and its text in log lines.
pub const RAPID_RESTART: Duration = Duration::from_millis(500);
pub const RAPID_RESTART_TEXT: &str = "0.5";
/// The kill grace of `TEST_TIMES`.
pub const KILL_AFTER: Duration = Duration::from_millis(400);
/// The status report period of `TEST_TIMES`.
pub const REPORT_EVERY: Duration = Duration::from_millis(1000);
/// The control client deadline of `TEST_TIMES`.
pub const CLIENT_DEADLINE: Duration = Duration::from_millis(2000);
pub const TEST_TIMES_VARIABLE: &str = "PMTR_TEST_TIMES";

/// pmtr run as `nobody` (uid 65534) through setpriv, on `config` (text),
/// with its socket in a directory of nobody's: the sandbox is opened to
/// others (0755) for it to read the file. Returns it and its socket's
/// path. The caller checks that it may (root, setpriv installed).
pub fn pmtr_as_nobody(sandbox: &Sandbox, config: &str, group: bool) -> (Background, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let open = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(sandbox.root(), 0o755);
    let config = sandbox.write("nobody.conf", config);
    open(&config, 0o644);
    let theirs = sandbox.path("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let nobody = (
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    );
    nix::unistd::chown(&theirs, nobody.0, nobody.1).unwrap();
    let socket = theirs.join("pmtr.sock");
    let args = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        PMTR,
        "-F",
        "-c",
        config.to_str().unwrap(),
        "--socket",
        socket.to_str().unwrap(),
    ];
    let process = if group {
        Background::start_group(sandbox, "setpriv", &args)
    } else {
        Background::start(sandbox, "setpriv", &args)
    };
    (process, socket)
}

/// Another long-running program of the test (pmtr-rptserver, the original
/// pmtr), its stderr collected; killed on drop (its pid only, or with
/// `start_group` the process group it leads).
pub struct Background {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    group: bool,
}

impl Background {
    pub fn start(sandbox: &Sandbox, program: &str, args: &[&str]) -> Background {
        Background::spawn(sandbox, program, args, false)
    }

    /// As `start`, the program leading a process group of its own, which
    /// is killed on drop: for a supervisor (the original pmtr) whose jobs
    /// stay in its group and may outlive it.
    pub fn start_group(sandbox: &Sandbox, program: &str, args: &[&str]) -> Background {
        Background::spawn(sandbox, program, args, true)
    }

    fn spawn(sandbox: &Sandbox, program: &str, args: &[&str], group: bool) -> Background {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        if group {
            command.process_group(0);
        }
        let mut child = command
            .args(args)
            .current_dir(sandbox.root())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Background { child, log, group }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn transcript(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.group {
            let group = nix::unistd::Pid::from_raw(self.pid());
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
