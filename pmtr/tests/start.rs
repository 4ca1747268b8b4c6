//! Starting jobs: order, `wait`, `disable`, `once`, the clean context of
//! SPEC 4.1, and output capture.

use std::time::Duration;

use crate::harness::{alive, children_of, proc_status, skip_if, wait_until, Pmtr, Sandbox, SHORT};

#[test]
fn jobs_start_in_order_then_file_order() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name c\n cmd /bin/sleep 100\n order 2\n}\n\
         job {\n name a\n cmd /bin/sleep 100\n}\n\
         job {\n name b\n cmd /bin/sleep 100\n order -1\n}\n",
    );
    pmtr.expect_count("started job", 3, SHORT);
    let order: Vec<String> = pmtr
        .lines()
        .iter()
        .filter_map(|l| {
            l.split_once("started job ")
                .map(|(_, r)| r.split(' ').next().unwrap().to_string())
        })
        .collect();
    assert_eq!(order, ["b", "a", "c"]);
    assert!(pmtr.lines()[0].ends_with("pmtr: starting"));
    assert!(pmtr.lines()[1].ends_with("managing 3 jobs"));
}

#[test]
fn wait_gates_later_jobs_and_once_is_not_restarted() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name setup\n cmd /bin/sh -c \"sleep 1; echo done > setup.flag\"\n dir DIR\n wait\n once\n}\n\
         job {\n name web\n cmd /bin/sh -c \"test -f setup.flag && exec sleep 100\"\n dir DIR\n}\n"
            .replace("DIR", sandbox.root().to_str().unwrap())
            .as_str(),
    );
    pmtr.expect("pausing for job setup to finish", SHORT);
    let web = pmtr.expect_started("web", 1, SHORT);
    let exited = pmtr.first_line(|l| l.contains("job setup [")).unwrap();
    let started = pmtr.first_line(|l| l.contains("started job web")).unwrap();
    assert!(exited < started, "{}", pmtr.transcript());
    // web found the flag: it runs, it did not exit (an absence, watched
    // for a moment).
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(web), "{}", pmtr.transcript());
    assert!(pmtr
        .transcript()
        .contains("job setup will not be restarted (once)"));
    assert_eq!(pmtr.count("started job setup"), 1);
}

#[test]
fn a_disabled_job_does_not_run() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name off\n cmd /bin/sleep 100\n disable\n}\njob {\n name on\n cmd /bin/sleep 100\n}\n",
    );
    pmtr.expect_started("on", 1, SHORT);
    assert_eq!(pmtr.count("started job off"), 0);
}

/// SPEC 4.1: only fds 0-2, empty mask, default dispositions, own process
/// group, then dir, env, nice, cpu, ulimit.
#[test]
fn a_job_starts_in_a_clean_context() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name clean\n cmd /bin/sleep 100\n dir {}\n env GREETING=\"hello world\"\n nice 7\n cpu 0\n ulimit {{ -n 77 -c 0 }}\n}}\n",
            sandbox.root().display()
        ),
    );
    let pid = pmtr.expect_started("clean", 1, SHORT);
    assert!(wait_until(SHORT, || std::fs::read_link(format!(
        "/proc/{pid}/exe"
    ))
    .is_ok_and(|exe| exe.ends_with("sleep"))));
    assert_only_standard_descriptors(pid);
    assert_eq!(proc_status(pid, "SigBlk").unwrap(), "0000000000000000");
    assert_eq!(proc_status(pid, "SigIgn").unwrap(), "0000000000000000");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(
        fields[2].parse::<i32>().unwrap(),
        pid,
        "its own process group"
    );
    assert_eq!(fields[16], "7", "nice");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        sandbox.root()
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ
        .split(|&b| b == 0)
        .any(|v| v == b"GREETING=hello world"));
    assert_eq!(proc_status(pid, "Cpus_allowed_list").unwrap(), "0");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 77 ")),
        "{limits}"
    );
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max core file size") && l.contains(" 0 ")),
        "{limits}"
    );
    // stdin is /dev/null, stdout and stderr the capture pipe.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/fd/0"))
            .unwrap()
            .to_str(),
        Some("/dev/null")
    );
    assert!(std::fs::read_link(format!("/proc/{pid}/fd/1"))
        .unwrap()
        .to_string_lossy()
        .starts_with("pipe:"));
}

#[test]
fn output_is_captured_line_by_line_and_made_harmless() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name talker\n cmd /bin/sh -c \"printf 'one\\ntwo\\033[31m\\n'; echo err >&2; printf partial; exec sleep 100\"\n}\n",
    );
    let pid = pmtr.expect_started("talker", 1, SHORT);
    pmtr.expect(&format!("talker[{pid}]: one"), SHORT);
    pmtr.expect(&format!("talker[{pid}]: two?[31m"), SHORT);
    pmtr.expect(&format!("talker[{pid}]: err"), SHORT);
    drop(pmtr);
}

#[test]
fn out_and_err_files_are_appended_and_relative_to_dir() {
    let sandbox = Sandbox::new();
    sandbox.write("out.log", "before\n");
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "job {{\n name files\n cmd /bin/sh -c \"echo out; echo err >&2\"\n dir {}\n out out.log\n err err.log\n once\n}}\n",
            sandbox.root().display()
        ),
    );
    pmtr.expect("job files will not be restarted", SHORT);
    assert_eq!(
        std::fs::read_to_string(sandbox.path("out.log")).unwrap(),
        "before\nout\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.path("err.log")).unwrap(),
        "err\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sandbox.path("err.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn a_user_job_runs_with_that_users_ids_and_home() {
    if crate::harness::skip_if(
        !is_root(),
        "a_user_job_runs_with_that_users_ids_and_home",
        "needs root to run a job as another user",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name nobody\n cmd /bin/sleep 100\n user nobody\n}\n",
    );
    let pid = pmtr.expect_started("nobody", 1, SHORT);
    assert!(wait_until(SHORT, || proc_status(pid, "Uid")
        .is_some_and(|u| u.starts_with("65534"))));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
    assert!(vars.contains(&&b"USER=nobody"[..]));
    assert!(vars.contains(&&b"LOGNAME=nobody"[..]));
    assert!(vars.iter().any(|v| v.starts_with(b"HOME=")));
}

#[test]
fn pmtr_reaps_what_jobs_leave_behind() {
    let sandbox = Sandbox::new();
    // The job leaves a grandchild in a new session (out of the job's
    // group) whose parent exits at once: it is re-parented to pmtr, the
    // subreaper, which must reap it when it ends.
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name parent\n cmd /bin/sh -c \"(setsid sleep 1 &); exec sleep 100\"\n}\n",
    );
    let job = pmtr.expect_started("parent", 1, SHORT);
    assert!(
        wait_until(SHORT, || children_of(pmtr.pid()).len() == 2),
        "the grandchild was not re-parented to pmtr"
    );
    assert!(
        wait_until(SHORT, || children_of(pmtr.pid()) == [job]),
        "left under pmtr: {:?}",
        children_of(pmtr.pid())
    );
}

/// A child shares pmtr's descriptor table until it makes the low part its
/// own (sys/child.rs): its redirections must never reach pmtr's table,
/// and pmtr keeps the pipes it holds above the part children copy.
#[test]
fn starts_leave_pmtrs_descriptors_alone() {
    let sandbox = Sandbox::new();
    let jobs: String = (0..40)
        .map(|i| format!("job {{\n name j{i}\n cmd /bin/sleep 100\n}}\n"))
        .collect();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("{jobs}job {{\n name last\n cmd /bin/sleep 100\n}}\n"),
    );
    let link = |pid: i32, fd: &str| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok();
    let own: Vec<_> = ["0", "1", "2"]
        .iter()
        .map(|fd| link(pmtr.pid(), fd))
        .collect();
    let last = pmtr.expect_started("last", 1, SHORT);
    assert!(wait_until(SHORT, || std::fs::read_link(format!(
        "/proc/{last}/exe"
    ))
    .is_ok_and(|exe| exe.ends_with("sleep"))));
    let after: Vec<_> = ["0", "1", "2"]
        .iter()
        .map(|fd| link(pmtr.pid(), fd))
        .collect();
    assert_eq!(own, after, "pmtr's standard descriptors changed");
    let pipes: Vec<i32> = std::fs::read_dir(format!("/proc/{}/fd", pmtr.pid()))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            target.to_string_lossy().starts_with("pipe:").then_some(fd)
        })
        .collect();
    // One capture pipe per job, above the part children copy (when the
    // open-file limit leaves room there; pmtr raises it to the hard one).
    // Below are pmtr's own standard streams and whatever it inherited.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if !skip_if(
        hard < 512,
        "starts_leave_pmtrs_descriptors_alone",
        "open-file limit below 512",
    ) {
        let high = pipes.iter().filter(|&&fd| fd >= 256).count();
        assert_eq!(high, 41, "{pipes:?}");
    }
    // The jobs still have their own three, and pmtr still logs.
    assert_only_standard_descriptors(last);
    sandbox.ctl(&["disable", "j0"]);
    pmtr.expect("disabling job j0", SHORT);
}

/// Process `pid` holds descriptors 0, 1 and 2 and no other, once sleep's
/// start-up (which opens the locale archive for a moment) is over.
fn assert_only_standard_descriptors(pid: i32) {
    let fds = || {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        fds
    };
    assert!(
        wait_until(SHORT, || fds() == ["0", "1", "2"]),
        "{:?}",
        fds()
    );
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// SPEC 11.3 `after` through the daemon: web waits for db, and starts as
/// soon as db runs.
#[test]
fn a_job_after_another_starts_once_that_one_runs() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "job {\n name web\n cmd /bin/sleep 1000\n after db\n}\njob {\n name db\n cmd /bin/sleep 1001\n disable\n}\n",
    );
    pmtr.expect("pmtr: starting", SHORT);
    assert!(wait_until(SHORT, || sandbox.socket().exists()));
    let status = crate::harness::text(&sandbox.ctl(&["status", "web", "--json"]).stdout);
    assert!(status.contains("\"state\": \"waiting\""), "{status}");
    assert!(status.contains("\"waiting_for\": \"db\""), "{status}");
    let table = crate::harness::text(&sandbox.ctl(&["status"]).stdout);
    assert!(table.contains("waiting for db"), "{table}");
    assert_eq!(sandbox.ctl(&["enable", "db"]).status.code(), Some(0));
    pmtr.expect_started("web", 1, SHORT);
    let db = pmtr.first_line(|l| l.contains("started job db")).unwrap();
    let web = pmtr.first_line(|l| l.contains("started job web")).unwrap();
    assert!(db < web, "{}", pmtr.transcript());
}

/// SPEC 11.3 `ready file` through the daemon: web comes after db, and db
/// is ready only once it has created its file.
#[test]
fn after_waits_for_a_ready_file() {
    let sandbox = Sandbox::new();
    let text = format!(
        "job {{\n name db\n cmd /bin/sh -c \"sleep 0.3; : > up; exec sleep 1000\"\n dir {}\n ready file up\n}}\n\
         job {{\n name web\n cmd /bin/sleep 1001\n after db\n}}\n",
        sandbox.root().display()
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let db = pmtr.expect_started("db", 1, SHORT);
    pmtr.expect_started("web", 1, SHORT);
    let ready = pmtr.first_line(|l| l.ends_with(&format!("job db [{db}] is ready")));
    let web = pmtr.first_line(|l| l.contains("started job web"));
    assert!(ready.is_some() && ready < web, "{}", pmtr.transcript());
    assert!(sandbox.path("up").exists());
}

/// SPEC 11.3 `ready tcp` through the daemon, with a real listener (our
/// `onconnect`): web starts once a connection to db's port succeeds.
#[test]
fn after_waits_for_a_tcp_port() {
    let sandbox = Sandbox::new();
    let port = crate::harness::free_port();
    let onconnect = crate::harness::ONCONNECT;
    let text = format!(
        "job {{\n name db\n cmd /bin/sh -c \"sleep 0.3; exec {onconnect} -a 127.0.0.1 -p {port} /bin/true\"\n ready tcp {port}\n}}\n\
         job {{\n name web\n cmd /bin/sleep 1001\n after db\n}}\n"
    );
    let pmtr = Pmtr::start(&sandbox, &text);
    let db = pmtr.expect_started("db", 1, SHORT);
    pmtr.expect_started("web", 1, SHORT);
    let ready = pmtr.first_line(|l| l.ends_with(&format!("job db [{db}] is ready")));
    let web = pmtr.first_line(|l| l.contains("started job web"));
    assert!(ready.is_some() && ready < web, "{}", pmtr.transcript());
}

/// A descriptor pmtr inherits (here fd 7, opened by the shell that starts
/// it) is marked close-on-exec at once: no job can get it, even on a
/// kernel whose close_range lacks CLOSE_RANGE_CLOEXEC.
#[test]
fn inherited_descriptors_are_closed_on_exec() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start_env(
        &sandbox,
        "job {\n name a\n cmd /bin/sleep 1000\n}\n",
        &[],
        Some(&["/bin/sh", "-c", "exec 7</dev/null; exec \"$0\" \"$@\""]),
        &[],
    );
    pmtr.expect_started("a", 1, SHORT);
    let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/7", pmtr.pid())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
        .unwrap();
    assert_ne!(flags & 0o2000000, 0, "fd 7 not close-on-exec: {info}");
}

/// A pmtr that is not root runs a job whose `user` is its own: there is
/// nothing to change, and it must not try (setgroups would be refused).
#[test]
fn a_pmtr_not_root_runs_a_job_as_its_own_user() {
    if skip_if(
        !is_root() || !crate::faults::have("setpriv"),
        "a_pmtr_not_root_runs_a_job_as_its_own_user",
        "needs root and setpriv (util-linux) to run a pmtr as nobody",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let (pmtr, _) = crate::harness::pmtr_as_nobody(
        &sandbox,
        "job {\n name mine\n cmd /bin/sleep 1000\n user nobody\n}\n",
        false,
    );
    let started = wait_until(SHORT, || pmtr.count("started job mine") > 0);
    // Stopped by pmtr itself, so that its job goes with it.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pmtr.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(wait_until(SHORT, || pmtr.count("exiting on signal") > 0));
    assert!(started, "{}", pmtr.transcript());
    assert_eq!(pmtr.count("initgroups"), 0, "{}", pmtr.transcript());
}
