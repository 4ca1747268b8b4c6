//! SPEC 11.5 through the real daemon: a `critical` job's end ends pmtr
//! with its status, output passed through to pmtr's own stdout and stderr
//! untouched, and jobs without `dir` started in pmtr's own directory.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::harness::{alive, text, wait_until, Pmtr, Sandbox, Signal, PMTR, SHORT};

#[test]
fn a_critical_job_exiting_3_ends_pmtr_with_3_and_nothing_left() {
    let sandbox = Sandbox::new();
    let text = "job {\n name main\n cmd /bin/sh -c \"sleep 0.3; exit 3\"\n critical\n once\n}\n\
                job {\n name side\n cmd /bin/sleep 1000\n}\n";
    let mut pmtr = Pmtr::start(&sandbox, text);
    let side = pmtr.expect_started("side", 1, SHORT);
    let status = pmtr.wait_exit(SHORT).expect("pmtr exits");
    assert_eq!(status.code(), Some(3), "{}", pmtr.transcript());
    assert!(!alive(side), "side was stopped");
    let log = pmtr.transcript();
    assert!(
        log.contains("critical job main ended (exit status 3)"),
        "{log}"
    );
    assert!(log.contains("sending SIGTERM to job side"), "{log}");
}

#[test]
fn a_critical_job_killed_by_sigkill_ends_pmtr_with_137() {
    let sandbox = Sandbox::new();
    let text = "job {\n name main\n cmd /bin/sh -c \"sleep 0.3; kill -9 $$\"\n critical\n restart never\n}\n";
    let mut pmtr = Pmtr::start(&sandbox, text);
    pmtr.expect_started("main", 1, SHORT);
    let status = pmtr.wait_exit(SHORT).expect("pmtr exits");
    assert_eq!(status.code(), Some(137), "{}", pmtr.transcript());
}

/// `docker stop`: SIGTERM ends pmtr with 0 even with a critical job.
#[test]
fn sigterm_ends_pmtr_with_0() {
    let sandbox = Sandbox::new();
    let text = "job {\n name main\n cmd /bin/sleep 1000\n critical\n}\n";
    let mut pmtr = Pmtr::start(&sandbox, text);
    let main = pmtr.expect_started("main", 1, SHORT);
    pmtr.signal(Signal::SIGTERM);
    let status = pmtr.wait_exit(SHORT).expect("pmtr exits");
    assert_eq!(status.code(), Some(0));
    assert!(!alive(main));
}

/// `out stdout`, `err stderr`: the job writes to pmtr's own descriptors —
/// every byte as written, no prefix, no pipe.
#[test]
fn output_passes_through_byte_for_byte() {
    let sandbox = Sandbox::new();
    let script = sandbox.write(
        "main.sh",
        "printf 'a\\000b\\377\\n{\"json\":1}\\n'\nprintf 'raw error\\n' >&2\nprintf 'no newline'\n",
    );
    let conf = sandbox.write(
        "pmtr.conf",
        format!(
            "job {{\n name main\n cmd /bin/sh {}\n out stdout\n err stderr\n critical\n once\n}}\n",
            script.display()
        ),
    );
    let mut child = Command::new(PMTR)
        .args(["-F", "-c", conf.to_str().unwrap(), "--socket"])
        .arg(sandbox.socket())
        .current_dir(sandbox.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", text(&stderr));
    assert_eq!(stdout, b"a\0b\xff\n{\"json\":1}\nno newline");
    let stderr = text(&stderr);
    assert!(stderr.lines().any(|l| l == "raw error"), "{stderr}");
    assert!(!stderr.contains("main["), "not captured: {stderr}");
}

/// Without `dir`, a job runs in the directory pmtr was started in, in the
/// foreground and as a daemon alike (as the original; a container's
/// WORKDIR).
#[test]
fn a_job_without_dir_runs_where_pmtr_was_started() {
    for foreground in [true, false] {
        let sandbox = Sandbox::new();
        let conf = sandbox.write(
            "pmtr.conf",
            "job {\n name here\n cmd /bin/sh -c \"pwd > here.txt\"\n once\n}\n",
        );
        let pidfile = sandbox.path("pmtr.pid");
        let mut command = Command::new(PMTR);
        command
            .args([
                "-c",
                conf.to_str().unwrap(),
                "-p",
                pidfile.to_str().unwrap(),
            ])
            .arg("--socket")
            .arg(sandbox.socket())
            .current_dir(sandbox.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if foreground {
            command.arg("-F");
        }
        let mut child = command.spawn().unwrap();
        let written = sandbox.path("here.txt");
        assert!(
            wait_until(SHORT, || std::fs::read_to_string(&written)
                .is_ok_and(|t| t.ends_with('\n'))),
            "foreground {foreground}"
        );
        let here = std::fs::read_to_string(&written).unwrap();
        let root = sandbox.root().canonicalize().unwrap();
        assert_eq!(
            here.trim_end(),
            root.to_str().unwrap(),
            "foreground {foreground}"
        );
        // Stop it: the pidfile names pmtr either way.
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        assert!(wait_until(SHORT, || !alive(pid)));
        let _ = child.wait();
    }
}
