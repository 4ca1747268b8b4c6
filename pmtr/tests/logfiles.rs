//! SPEC 11.6 through the real daemon: output files pmtr writes itself —
//! rotation while the job writes, timestamps, SIGUSR1 after an outside
//! `mv`, the owner and mode, and a full disk that drops lines without
//! blocking pmtr or the job.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use crate::harness::{skip_if, text, wait_until, Pmtr, Sandbox, Signal, SHORT};

fn job(sandbox: &Sandbox, script: &str, options: &str) -> String {
    let script = sandbox.write("job.sh", script);
    format!(
        "job {{\n name app\n cmd /bin/sh {}\n dir {}\n {options}\n}}\n",
        script.display(),
        sandbox.root().display()
    )
}

fn read(sandbox: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(sandbox.path(name)).unwrap_or_default()
}

/// 3000 numbered lines written as fast as the job can through `log rotate
/// 10K 3`: no file past 10 KiB, three old files and no fourth, every line
/// whole, and the lines that are kept follow each other without a gap.
#[test]
fn rotation_while_the_job_writes_loses_and_splits_no_line() {
    let sandbox = Sandbox::new();
    let script = "i=0\nwhile [ $i -lt 3000 ]; do echo \"line $i of the job's output\"; i=$((i+1)); done\nexec sleep 1000\n";
    let pmtr = Pmtr::start(
        &sandbox,
        &job(&sandbox, script, "out app.log\n log rotate 10K 3"),
    );
    pmtr.expect_started("app", 1, SHORT);
    assert!(
        wait_until(SHORT, || read(&sandbox, "app.log")
            .ends_with("line 2999 of the job's output\n")),
        "{}",
        pmtr.transcript()
    );
    let names = ["app.log.3", "app.log.2", "app.log.1", "app.log"];
    let mut numbers = Vec::new();
    for name in names {
        let content = read(&sandbox, name);
        assert!(!content.is_empty(), "{name} is missing");
        assert!(
            content.len() <= 10 * 1024,
            "{name}: {} bytes",
            content.len()
        );
        for line in content.lines() {
            let number = line
                .strip_prefix("line ")
                .and_then(|rest| rest.strip_suffix(" of the job's output"))
                .unwrap_or_else(|| panic!("split line in {name}: {line:?}"));
            numbers.push(number.parse::<u32>().unwrap());
        }
    }
    assert!(!sandbox.path("app.log.4").exists());
    let first = numbers[0];
    assert_eq!(numbers, (first..3000).collect::<Vec<_>>(), "a gap");
}

/// `log timestamps`: each line starts with an RFC 3339 local time with
/// milliseconds; the lines also reach `pmtr-ctl logs` (without it).
#[test]
fn timestamps_are_rfc_3339_and_lines_reach_pmtr_ctl_logs() {
    let sandbox = Sandbox::new();
    let script = "echo first\necho second >&2\nexec sleep 1000\n";
    let options = "out app.log\n err app.log\n log timestamps";
    let pmtr = Pmtr::start(&sandbox, &job(&sandbox, script, options));
    pmtr.expect_started("app", 1, SHORT);
    assert!(wait_until(SHORT, || read(&sandbox, "app.log")
        .lines()
        .count()
        == 2));
    for line in read(&sandbox, "app.log").lines() {
        let (stamp, rest) = line.split_once(' ').unwrap();
        assert!(rest == "first" || rest == "second", "{line}");
        let check = Command::new("date")
            .args(["-d", stamp, "+%s"])
            .output()
            .unwrap();
        assert!(check.status.success(), "not RFC 3339: {stamp}");
        let bytes = stamp.as_bytes();
        assert_eq!(bytes.len(), 29, "{stamp}");
        assert_eq!((bytes[10], bytes[19]), (b'T', b'.'), "{stamp}");
        assert!(bytes[23] == b'+' || bytes[23] == b'-', "{stamp}");
    }
    assert!(!pmtr.transcript().contains("app["), "not in pmtr's log");
    let logs = sandbox.ctl(&["logs", "app"]);
    let logs = text(&logs.stdout);
    assert!(logs.contains("first") && logs.contains("second"), "{logs}");
}

/// logrotate's way: move the file away, then SIGUSR1; pmtr opens a new
/// file by the name, and nothing is written to the moved one after.
#[test]
fn sigusr1_reopens_after_the_file_was_moved() {
    let sandbox = Sandbox::new();
    let script = "i=0\nwhile :; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done\n";
    let pmtr = Pmtr::start(
        &sandbox,
        &job(&sandbox, script, "out app.log\n log timestamps"),
    );
    pmtr.expect_started("app", 1, SHORT);
    assert!(wait_until(SHORT, || read(&sandbox, "app.log").contains("tick 2")));
    std::fs::rename(sandbox.path("app.log"), sandbox.path("app.log.old")).unwrap();
    pmtr.signal(Signal::SIGUSR1);
    pmtr.expect("reopening the output files", SHORT);
    assert!(wait_until(SHORT, || read(&sandbox, "app.log")
        .lines()
        .count()
        >= 2));
    let old = read(&sandbox, "app.log.old");
    let new = read(&sandbox, "app.log");
    let last_old = old
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let first_new = new
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let (last_old, first_new): (u32, u32) = (last_old.parse().unwrap(), first_new.parse().unwrap());
    assert!(
        first_new > last_old,
        "old ends {last_old}, new starts {first_new}"
    );
}

#[test]
fn files_are_created_0640_for_the_jobs_user() {
    let sandbox = Sandbox::new();
    let root = nix::unistd::geteuid().is_root();
    let options = if root {
        "out app.log\n log rotate 1M 2\n user nobody"
    } else {
        "out app.log\n log rotate 1M 2"
    };
    // nobody may not enter the sandbox: pmtr, not the job, opens the file.
    let script = "echo hello\nexec sleep 1000\n";
    let config = job(&sandbox, script, options)
        .replace(&format!(" dir {}\n", sandbox.root().display()), " dir /\n");
    let pmtr = Pmtr::start(
        &sandbox,
        &config.replace(
            "out app.log",
            &format!("out {}", sandbox.path("app.log").display()),
        ),
    );
    pmtr.expect_started("app", 1, SHORT);
    assert!(
        wait_until(SHORT, || read(&sandbox, "app.log") == "hello\n"),
        "{}",
        pmtr.transcript()
    );
    let meta = std::fs::metadata(sandbox.path("app.log")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    if root {
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(meta.uid(), nobody.uid.as_raw());
    }
}

/// A full disk (a 64 KiB tmpfs): lines are dropped and the drop logged,
/// while pmtr keeps answering and the job keeps running — its pipe is
/// drained whatever happens.
#[test]
fn a_full_disk_drops_lines_without_blocking_anyone() {
    let root = nix::unistd::geteuid().is_root();
    if skip_if(
        !root,
        "a_full_disk_drops_lines_without_blocking_anyone",
        "mounting a tmpfs needs root",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let small = sandbox.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if skip_if(
        !mounted,
        "a_full_disk_drops_lines_without_blocking_anyone",
        "mount -t tmpfs failed",
    ) {
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let progress = sandbox.path("progress");
    let script = format!(
        "i=0\nwhile :; do echo \"line $i, long enough to fill a small disk soon\"; i=$((i+1)); echo $i > {}; done\n",
        progress.display()
    );
    let out = small.join("app.log");
    let pmtr = Pmtr::start(
        &sandbox,
        &job(
            &sandbox,
            &script,
            &format!("out {}\n log timestamps", out.display()),
        ),
    );
    pmtr.expect_started("app", 1, SHORT);
    pmtr.expect("line(s) of output to", Duration::from_secs(20));
    let count = || {
        read(&sandbox, "progress")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let before = count();
    assert!(
        wait_until(SHORT, || count() > before + 100),
        "the job is blocked at {before}"
    );
    let status = sandbox.ctl(&["status", "app"]);
    assert_eq!(status.status.code(), Some(0), "pmtr answers");
    assert!(
        pmtr.transcript().contains("No space left on device"),
        "{}",
        pmtr.transcript()
    );
}
