//! How a start is made (sys/spawn.rs): sharing pmtr's memory until the
//! job's `execve`, or with `fork` where the start could wait — a FIFO to
//! open, a remote filesystem — so that pmtr never waits with it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use crate::harness::{wait_until, Pmtr, Sandbox, SHORT};

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
