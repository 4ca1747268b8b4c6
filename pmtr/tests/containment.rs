//! Containment (SPEC 11.7): what a job starts ends with it — through its
//! cgroup where pmtr manages one (a real cgroup v2 directory of this
//! machine), and at shutdown without one — and `limit`s reach the job's
//! cgroup or are warned about.

use std::path::{Path, PathBuf};

use crate::harness::{
    alive, note_partial, skip_if, text, wait_until, Pmtr, Sandbox, Signal, SHORT,
};

/// The first mount whose filesystem type and super options `wanted`
/// accepts (`/proc/self/mountinfo`).
fn mount_point(wanted: impl Fn(&str, &str) -> bool) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fields = right.split(' ');
        let (kind, options) = (fields.next()?, fields.nth(1).unwrap_or(""));
        let point = left.split(' ').nth(4)?;
        wanted(kind, options).then(|| PathBuf::from(point))
    })
}

/// A new directory for `test` under `mount`; none if it cannot be made.
fn test_dir(mount: &Path, test: &str) -> Option<PathBuf> {
    let dir = mount.join(format!("pmtr-test-{}-{test}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

/// A cgroup v2 directory for one test, removed (with what pmtr left in
/// it) when the test ends.
struct TestCgroup(PathBuf);

impl TestCgroup {
    /// A new directory for `test` under a writable cgroup v2 mount; none,
    /// and the test said skipped, on a machine without one.
    fn new(test: &str) -> Option<TestCgroup> {
        let mount = mount_point(|kind, _| kind == "cgroup2");
        let made = mount.and_then(|mount| test_dir(&mount, test));
        skip_if(made.is_none(), test, "no writable cgroup v2 mount");
        made.map(TestCgroup)
    }

    fn job(&self, name: &str) -> PathBuf {
        self.0.join(format!("job.{name}"))
    }

    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // What a failed test left running in the test's own cgroup ends
        // (pmtr, dropped before, is gone).
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        let events = self.0.join("cgroup.events");
        wait_until(SHORT, || {
            std::fs::read_to_string(&events).map_or(true, |e| e.contains("populated 0"))
        });
        // Children first: job cgroups pmtr left, and its own leaf, empty
        // once it has exited.
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A job whose `setsid` child leaves its process group, and one whose
/// grandchild does (a double fork): each writes its escapee's pid.
fn escaping_jobs(sandbox: &Sandbox) -> String {
    let esc = sandbox.path("esc.pid");
    let daemon = sandbox.path("daemon.pid");
    format!(
        "job {{\n name esc\n cmd /bin/sh -c \"setsid sleep 301 & echo $! > {}; exec sleep 1000\"\n}}\n\
         job {{\n name daemon\n cmd /bin/sh -c \"setsid sh -c 'sleep 302 & echo $! > {}'; exec sleep 1000\"\n}}\n",
        esc.display(),
        daemon.display()
    )
}

fn pid_in(path: &Path) -> i32 {
    assert!(
        wait_until(SHORT, || std::fs::read_to_string(path)
            .is_ok_and(|t| t.trim().parse::<i32>().is_ok())),
        "{} never written",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn pgid_of(pid: i32) -> i32 {
    nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid)))
        .map(|p| p.as_raw())
        .unwrap_or(-1)
}

/// Waits until `pid`, still alive, has left process group `group`: the
/// shell writes `$!` before the background child has run `setsid`.
fn assert_left_group(pid: i32, group: i32) {
    assert!(
        wait_until(SHORT, || ![group, -1].contains(&pgid_of(pid))),
        "{pid} never left process group {group} (or is gone)"
    );
}

#[test]
fn escapees_end_with_their_job_and_with_pmtr_in_cgroups() {
    let Some(cgroup) = TestCgroup::new("escapees_end_with_their_job_and_with_pmtr_in_cgroups")
    else {
        return;
    };
    let sandbox = Sandbox::new();
    let config = escaping_jobs(&sandbox);
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", &cgroup.arg()], None);
    pmtr.expect("jobs are contained in cgroups under", SHORT);
    let esc_job = pmtr.expect_started("esc", 1, SHORT);
    let daemon_job = pmtr.expect_started("daemon", 1, SHORT);
    let (esc, daemon) = (
        pid_in(&sandbox.path("esc.pid")),
        pid_in(&sandbox.path("daemon.pid")),
    );
    assert_left_group(esc, esc_job);
    assert_left_group(daemon, daemon_job);
    let procs = |job: &str| std::fs::read_to_string(cgroup.job(job).join("cgroup.procs")).unwrap();
    assert!(procs("esc")
        .split_whitespace()
        .any(|p| p == esc.to_string()));
    assert!(procs("daemon")
        .split_whitespace()
        .any(|p| p == daemon.to_string()));
    let own = std::fs::read_to_string(cgroup.0.join("supervisor/cgroup.procs")).unwrap();
    assert_eq!(own.trim(), pmtr.pid().to_string(), "pmtr in its own leaf");

    // A stop ends the escapee too: cgroup.kill at the stop timeout.
    let out = sandbox.ctl(&["disable", "esc"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        wait_until(SHORT, || !alive(esc)),
        "escapee {esc} outlived its job's stop"
    );
    assert!(!alive(esc_job));

    // Shutdown ends the other, and removes the jobs' cgroups.
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(!alive(daemon), "escapee {daemon} outlived pmtr");
    assert!(!cgroup.job("esc").exists() && !cgroup.job("daemon").exists());
}

#[test]
fn escapees_end_at_shutdown_without_cgroups() {
    let sandbox = Sandbox::new();
    let config = escaping_jobs(&sandbox);
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", "off", "-v"], None);
    pmtr.expect(
        "jobs are contained in their process groups: --cgroup off",
        SHORT,
    );
    let esc_job = pmtr.expect_started("esc", 1, SHORT);
    pmtr.expect_started("daemon", 1, SHORT);
    let (esc, daemon) = (
        pid_in(&sandbox.path("esc.pid")),
        pid_in(&sandbox.path("daemon.pid")),
    );
    assert_left_group(esc, esc_job);
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(pmtr
        .transcript()
        .contains("ending 2 processes the jobs left behind"));
    assert!(!alive(esc) && !alive(daemon), "escapees outlived pmtr");
}

#[test]
fn escapees_of_a_removed_job_end_without_cgroups() {
    let sandbox = Sandbox::new();
    // `keep` leaves a process re-parented to pmtr too, which stays.
    let keep = format!(
        "job {{\n name keep\n cmd /bin/sh -c \"setsid sh -c 'sleep 303 & echo $! > {}'; exec sleep 1000\"\n}}\n",
        sandbox.path("keep.pid").display()
    );
    // `stubborn` leaves one that ignores SIGTERM.
    let stubborn = format!(
        "job {{\n name stubborn\n stop timeout 1s\n cmd /bin/sh -c \"setsid sh -c 'trap : TERM; echo $$ > {}; while :; do sleep 1; done' & exec sleep 1000\"\n}}\n",
        sandbox.path("stubborn.pid").display()
    );
    let config = format!("{}{keep}{stubborn}", escaping_jobs(&sandbox));
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", "off", "-v"], None);
    let esc_job = pmtr.expect_started("esc", 1, SHORT);
    let daemon_job = pmtr.expect_started("daemon", 1, SHORT);
    let keep_job = pmtr.expect_started("keep", 1, SHORT);
    pmtr.expect_started("stubborn", 1, SHORT);
    let (esc, daemon, kept, stubborn) = (
        pid_in(&sandbox.path("esc.pid")),
        pid_in(&sandbox.path("daemon.pid")),
        pid_in(&sandbox.path("keep.pid")),
        pid_in(&sandbox.path("stubborn.pid")),
    );
    assert_left_group(esc, esc_job);
    assert_left_group(daemon, daemon_job);

    // Both escaping jobs leave the file: what they left outside their
    // groups ends with them, and nothing of the job that stays.
    sandbox.write("pmtr.conf", &keep);
    for name in ["esc", "daemon", "stubborn"] {
        let line =
            format!("job {name} left 1 processes outside its group: sending SIGTERM to them");
        pmtr.expect(&line, SHORT);
    }
    // SIGKILL for the one that ignored SIGTERM, at its job's stop timeout.
    let line = "job stubborn left 1 processes outside its group: sending SIGKILL to them";
    pmtr.expect(line, SHORT);
    assert!(
        wait_until(SHORT, || !alive(esc) && !alive(daemon) && !alive(stubborn)),
        "escapees {esc}, {daemon} and {stubborn} outlived their removed jobs"
    );
    assert!(!alive(esc_job) && !alive(daemon_job));
    assert!(
        alive(keep_job) && alive(kept),
        "the job that stays was touched"
    );

    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(!alive(kept), "escapee {kept} outlived pmtr");
}

/// A limit reaches the job's cgroup file where its controller is there;
/// where it is not, pmtr says so and runs the job anyway.
#[test]
fn limits_are_written_or_warned_about() {
    let Some(cgroup) = TestCgroup::new("limits_are_written_or_warned_about") else {
        return;
    };
    let available =
        std::fs::read_to_string(cgroup.0.join("cgroup.controllers")).unwrap_or_default();
    let sandbox = Sandbox::new();
    let config =
        "job {\n name capped\n cmd /bin/sleep 1000\n limit memory 64M\n limit tasks 16\n}\n";
    let mut pmtr = Pmtr::start_with(&sandbox, config, &["--cgroup", &cgroup.arg()], None);
    pmtr.expect_started("capped", 1, SHORT);
    for (controller, file, value, option) in [
        ("memory", "memory.max", "67108864", "limit memory"),
        ("pids", "pids.max", "16", "limit tasks"),
    ] {
        if available.split_whitespace().any(|c| c == controller) {
            let written = std::fs::read_to_string(cgroup.job("capped").join(file)).unwrap();
            assert_eq!(written.trim(), value, "{file}");
        } else {
            note_partial(
                "limits_are_written_or_warned_about",
                &format!("the {controller} controller is not in this cgroup v2 mount: only its warning is checked"),
            );
            pmtr.expect(&format!("job capped: {option} is not applied: the {controller} controller is not available"), SHORT);
        }
    }
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
}

#[test]
fn pmtr_t_warns_of_limits_it_cannot_apply() {
    let sandbox = Sandbox::new();
    let config = sandbox.write(
        "pmtr.conf",
        "job {\n name capped\n cmd /bin/sleep 1000\n limit memory 64M\n}\n",
    );
    let out = sandbox.pmtr(&["-t", "-c", config.to_str().unwrap(), "--cgroup", "off"]);
    assert!(out.status.success(), "a warning, not an error");
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "job capped: limit memory is not applied: pmtr manages no cgroup (--cgroup off)"
        ),
        "{err}"
    );
    assert!(text(&out.stdout).contains("1 warning"));
}

/// A v1 memory cgroup of 32 MiB for one test, removed when it ends.
struct MemoryCgroupV1(PathBuf);

impl MemoryCgroupV1 {
    fn new(test: &str) -> Option<MemoryCgroupV1> {
        let memory = |kind: &str, options: &str| {
            kind == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        let dir = test_dir(&mount_point(memory)?, test)?;
        std::fs::write(dir.join("memory.limit_in_bytes"), "32M").ok()?;
        Some(MemoryCgroupV1(dir))
    }
}

impl Drop for MemoryCgroupV1 {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A job the OOM killer ends is logged as such. Without a cgroup v2
/// memory controller (this machine's may have none), pmtr learns it from
/// the kernel's count of OOM kills: the job enters a v1 memory cgroup of
/// its own to be killed for real.
#[test]
fn an_oom_kill_is_logged_as_such() {
    let test = "an_oom_kill_is_logged_as_such";
    let python = Path::new("/usr/bin/python3");
    if skip_if(!python.exists(), test, "no /usr/bin/python3 to use memory") {
        return;
    }
    let Some(memory) = MemoryCgroupV1::new("oom") else {
        skip_if(true, test, "no writable cgroup v1 memory hierarchy");
        return;
    };
    let sandbox = Sandbox::new();
    let config = format!(
        "job {{\n name hog\n once\n cmd /bin/sh -c \"echo $$ > {}/cgroup.procs; \
         exec /usr/bin/python3 -c 'a = bytearray(256 << 20); a[::4096] = bytes(len(a) // 4096)'\"\n}}\n",
        memory.0.display()
    );
    let pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", "off"], None);
    let pid = pmtr.expect_started("hog", 1, SHORT);
    pmtr.expect(&format!("job hog [{pid}] exited after"), SHORT);
    assert!(
        pmtr.transcript().contains("signal 9 (SIGKILL)"),
        "{}",
        pmtr.transcript()
    );
    pmtr.expect("job hog killed by the OOM killer", SHORT);
}

/// A start pmtr forks (its stdin is a FIFO, whose open waits) is placed
/// by the child itself, before anything else: it is in its cgroup while
/// it still waits for a writer.
#[test]
fn a_forked_start_enters_its_cgroup_too() {
    let Some(cgroup) = TestCgroup::new("a_forked_start_enters_its_cgroup_too") else {
        return;
    };
    let sandbox = Sandbox::new();
    let fifo = sandbox.path("in.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let config = format!(
        "job {{\n name reader\n cmd /bin/sleep 86403\n in {}\n}}\n",
        fifo.display()
    );
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", &cgroup.arg()], None);
    let pid = pmtr.expect_started("reader", 1, SHORT);
    let placed = || {
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|t| {
            t.lines()
                .any(|l| l.starts_with("0::") && l.ends_with("/job.reader"))
        })
    };
    assert!(wait_until(SHORT, placed), "not in its cgroup");
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
}

/// `--cgroup auto` takes pmtr's own cgroup when systemd marked it
/// delegated (`trusted.delegate`, as `Delegate=yes` does), and leaves an
/// unmarked one alone, which root could write as well.
#[test]
fn auto_takes_a_delegated_cgroup_and_only_that() {
    let test = "auto_takes_a_delegated_cgroup_and_only_that";
    let Some(cgroup) = TestCgroup::new(test) else {
        return;
    };
    for marked in [false, true] {
        if marked {
            // As systemd marks a delegated cgroup (Python has setxattr).
            let set = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import os, sys; os.setxattr(sys.argv[1], 'trusted.delegate', b'1')",
                ])
                .arg(&cgroup.0)
                .status();
            if skip_if(
                !set.is_ok_and(|s| s.success()),
                test,
                "unable to set trusted.delegate",
            ) {
                return;
            }
        }
        let sandbox = Sandbox::new();
        // Started inside the test's cgroup, as systemd starts a service.
        let enter = format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
            cgroup.0.display()
        );
        let command = ["/bin/sh", "-c", &enter, crate::harness::PMTR];
        let config = "job {\n name a\n cmd /bin/sleep 86405\n}\n";
        let mut pmtr = Pmtr::start_program(&sandbox, config, &["-v"], &command, &[]);
        pmtr.expect_started("a", 1, SHORT);
        let expected = match marked {
            true => format!("jobs are contained in cgroups under {}", cgroup.0.display()),
            false => "is not delegated to pmtr (Delegate=yes)".to_string(),
        };
        pmtr.expect(&expected, SHORT);
        assert_eq!(cgroup.job("a").exists(), marked);
        pmtr.signal(Signal::SIGTERM);
        assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    }
}

/// A job deleted from the file loses its cgroup once it is empty — also
/// when what it left (an escapee) keeps it occupied until the kill.
#[test]
fn a_deleted_jobs_cgroup_goes_once_it_is_empty() {
    let Some(cgroup) = TestCgroup::new("a_deleted_jobs_cgroup_goes_once_it_is_empty") else {
        return;
    };
    let sandbox = Sandbox::new();
    let keep = "job {\n name keep\n cmd /bin/sleep 86407\n}\n";
    let config = format!("{keep}{}", escaping_jobs(&sandbox));
    let pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", &cgroup.arg()], None);
    pmtr.expect_started("esc", 1, SHORT);
    let esc = pid_in(&sandbox.path("esc.pid"));
    assert!(cgroup.job("esc").exists());
    sandbox.write("pmtr.conf", keep);
    pmtr.signal(Signal::SIGHUP);
    assert!(
        wait_until(SHORT, || !alive(esc)),
        "the escapee outlived its job"
    );
    assert!(
        wait_until(SHORT, || !cgroup.job("esc").exists()
            && !cgroup.job("daemon").exists()),
        "a deleted job's cgroup stayed"
    );
    assert!(cgroup.job("keep").exists());
}

/// Starts made by two threads side by side, in cgroups: each job's
/// process is its own job's, in its own job's cgroup.
#[test]
fn a_batch_started_side_by_side_puts_each_job_in_its_cgroup() {
    let test = "a_batch_started_side_by_side_puts_each_job_in_its_cgroup";
    let Some(cgroup) = TestCgroup::new(test) else {
        return;
    };
    let sandbox = Sandbox::new();
    let config = crate::spawning::batch_config(&sandbox);
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", &cgroup.arg()], None);
    let running = crate::spawning::each_start_belongs_to_its_job(&pmtr, &sandbox);
    assert_eq!(running.len(), 21);
    for (i, pid) in running {
        let procs = std::fs::read_to_string(cgroup.job(&format!("job{i}")).join("cgroup.procs"));
        assert_eq!(procs.unwrap_or_default().trim(), pid.to_string(), "job{i}");
    }
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
}

/// Jobs whose cgroups cannot be made (the subtree may hold no more
/// than pmtr's own leaf: `cgroup.max.descendants`) run in their process
/// groups only, each said in the log, and end with pmtr all the same.
#[test]
fn jobs_whose_cgroups_cannot_be_made_run_uncontained() {
    let test = "jobs_whose_cgroups_cannot_be_made_run_uncontained";
    let Some(cgroup) = TestCgroup::new(test) else {
        return;
    };
    std::fs::write(cgroup.0.join("cgroup.max.descendants"), "1").unwrap();
    let sandbox = Sandbox::new();
    let mut config = String::new();
    for i in 0..4 {
        config += &format!("job {{\n name job{i}\n cmd /bin/sleep {}\n}}\n", 86902 + i);
    }
    let mut pmtr = Pmtr::start_with(&sandbox, &config, &["--cgroup", &cgroup.arg()], None);
    let leaf = format!(
        "{}/supervisor",
        cgroup.0.file_name().unwrap().to_string_lossy()
    );
    let mut pids = Vec::new();
    for i in 0..4 {
        let name = format!("job{i}");
        let line = pmtr.expect(&format!("job {name}: unable to create "), SHORT);
        assert!(
            line.contains(&cgroup.job(&name).display().to_string())
                && line.ends_with("; it runs in its process group only"),
            "{line}"
        );
        let pid = pmtr.expect_started(&name, 1, SHORT);
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            own.lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&leaf)),
            "{name} runs in {own}"
        );
        pids.push(pid);
    }
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    assert!(pids.iter().all(|&pid| !alive(pid)), "a job outlived pmtr");
}

/// A pmtr started in its leaf already — systemd's `DelegateSubgroup=`
/// puts it there — stays in it and contains its jobs beside it.
#[test]
fn a_pmtr_started_in_its_leaf_stays_there() {
    let test = "a_pmtr_started_in_its_leaf_stays_there";
    let Some(cgroup) = TestCgroup::new(test) else {
        return;
    };
    let leaf = cgroup.0.join("supervisor");
    std::fs::create_dir(&leaf).unwrap();
    let sandbox = Sandbox::new();
    let enter = format!(
        "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
        leaf.display()
    );
    let command = ["/bin/sh", "-c", &enter, crate::harness::PMTR];
    let config = "job {\n name a\n cmd /bin/sleep 86406\n}\n";
    let args = ["--cgroup", &cgroup.arg()];
    let mut pmtr = Pmtr::start_program(&sandbox, config, &args, &command, &[]);
    let pid = pmtr.expect_started("a", 1, SHORT);
    let procs = std::fs::read_to_string(cgroup.job("a").join("cgroup.procs"));
    assert_eq!(procs.unwrap_or_default().trim(), pid.to_string());
    let own = std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
    assert_eq!(own.trim(), pmtr.pid().to_string());
    assert!(!leaf.join("supervisor").exists(), "a leaf in the leaf");
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
}
