//! How a start is made (sys/spawn.rs): sharing pmtr's memory until the
//! job's `execve`, or with `fork` where the start could wait — a FIFO to
//! open, a remote filesystem — so that pmtr never waits with it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::harness::{note_partial, text, wait_until, Pmtr, Sandbox, SHORT};

/// A job whose stdin is a FIFO waits in `open` for a writer, as with the
/// original; pmtr meanwhile answers, and the job reads what is written.
#[test]
fn a_start_that_waits_on_a_fifo_does_not_hold_up_pmtr() {
    let sandbox = Sandbox::new();
    let fifo = sandbox.path("in.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name reader\n cmd /bin/sh -c \"read line; echo got:$line; exec sleep 100\"\n in {}\n}}\n",
            fifo.display()
        ),
    );
    let pid = pmtr.expect_started("reader", 1, SHORT);
    let status = sandbox.ctl(&["status"]);
    assert!(
        status.status.success(),
        "pmtr did not answer while the job waited: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("reader"));
    // The job holds the read end open (waiting in open): a non-blocking
    // open for writing succeeds only then.
    let mut writer = None;
    assert!(wait_until(SHORT, || {
        writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .ok();
        writer.is_some()
    }));
    writer.unwrap().write_all(b"hello\n").unwrap();
    let line = pmtr.expect(&format!("reader[{pid}]: got:"), SHORT);
    assert!(line.ends_with("got:hello"), "{line}");
}

/// A start on a filesystem taken as remote is forked; a failed step still
/// comes back as the job's setup failure, from the child's pipe.
#[test]
fn a_start_on_a_remote_filesystem_reports_its_failure() {
    let sandbox = Sandbox::new();
    let fstype = filesystem_type(sandbox.root());
    let missing = sandbox.path("missing-program");
    let pmtr = Pmtr::start_env(
        &sandbox,
        &format!(
            "job {{\n name absent\n cmd {}\n dir {}\n}}\njob {{\n name present\n cmd /bin/sleep 100\n dir {}\n}}\n",
            missing.display(),
            sandbox.root().display(),
            sandbox.root().display()
        ),
        &[],
        None,
        &[("PMTR_REMOTE_FSTYPES", &fstype)],
    );
    pmtr.expect(
        &format!(
            "can't exec {}: No such file or directory",
            missing.display()
        ),
        SHORT,
    );
    let pid = pmtr.expect_started("present", 1, SHORT);
    assert!(wait_until(SHORT, || std::fs::read_link(format!(
        "/proc/{pid}/exe"
    ))
    .is_ok_and(|exe| exe.ends_with("sleep"))));
}

/// The type of the filesystem `path` is on, from the innermost mount
/// above it in /proc/self/mountinfo.
fn filesystem_type(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let point = mount.split(' ').nth(4)?;
            let fstype = fs.split(' ').next()?;
            path.starts_with(point)
                .then(|| (point.len(), fstype.to_string()))
        })
        .max()
        .map(|(_, fstype)| fstype)
        .unwrap()
}

/// A batch of 24 starts, three of which fail to exec, spread over the two
/// halves a batch is made in side by side (spawner.rs).
pub fn batch_config(sandbox: &Sandbox) -> String {
    let mut config = String::new();
    for i in 0..24 {
        config += &match failing(i) {
            true => format!(
                "job {{\n name job{i}\n cmd {}/missing{i}\n}}\n",
                sandbox.root().display()
            ),
            false => format!("job {{\n name job{i}\n cmd /bin/sleep {}\n}}\n", 87000 + i),
        };
    }
    config
}

fn failing(i: usize) -> bool {
    i % 7 == 3
}

/// Checks that every start of `batch_config` belongs to its job: the pid
/// pmtr logs for a job runs that job's command, and a failed exec is
/// logged as its own job's. The pids of the jobs that run, by job.
pub fn each_start_belongs_to_its_job(pmtr: &Pmtr, sandbox: &Sandbox) -> Vec<(usize, i32)> {
    if std::thread::available_parallelism().map_or(true, |n| n.get() < 2) {
        let reason = "one CPU: pmtr made the batch's starts one by one, not side by side";
        note_partial("each_start_belongs_to_its_job", reason);
    }
    let mut running = Vec::new();
    for i in 0..24 {
        let pid = pmtr.expect_started(&format!("job{i}"), 1, SHORT);
        if failing(i) {
            let missing = sandbox.path(&format!("missing{i}"));
            pmtr.expect(
                &format!("job job{i} [{pid}]: can't exec {}", missing.display()),
                SHORT,
            );
            continue;
        }
        // Made with CLONE_VFORK, the child is in its `execve` once pmtr
        // logs it — but the kernel wakes pmtr when the new program's
        // memory is in place, before its arguments are: on a loaded
        // machine the command line is read a moment too early.
        let wanted = format!("/bin/sleep\0{}\0", 87000 + i);
        let read = || text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
        wait_until(SHORT, || read() == wanted);
        let cmdline = read();
        assert_eq!(cmdline, wanted, "job{i}'s pid {pid} runs something else");
        running.push((i, pid));
    }
    running
}

/// Starts made by two threads side by side are each their own job's.
#[test]
fn a_batch_started_side_by_side_gives_each_job_its_own_process() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start_with(
        &sandbox,
        &batch_config(&sandbox),
        &["--cgroup", "off"],
        None,
    );
    let running = each_start_belongs_to_its_job(&pmtr, &sandbox);
    assert_eq!(running.len(), 21);
}
