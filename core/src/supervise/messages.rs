//! The log lines operators grep for, worded as the original pmtr words
//! them. Every message the supervisor logs is built here.

use super::event::{ExitStatus, Pid, SetupStep, StopSignal};
use crate::config::Job;

pub fn starting() -> String {
    "pmtr: starting".into()
}

pub fn managing(jobs: usize) -> String {
    format!("managing {jobs} jobs")
}

pub fn started(name: &str, pid: Pid) -> String {
    format!("started job {name} [{pid}]")
}

pub fn exited(name: &str, pid: Pid, ran_secs: u64, status: ExitStatus) -> String {
    format!("job {name} [{pid}] exited after {ran_secs} sec: {status}")
}

pub fn sending_stop(name: &str, pid: Pid, signal: StopSignal) -> String {
    format!("sending {} to job {name} [{pid}]", signal.name())
}

pub fn sending_kill(name: &str, pid: Pid) -> String {
    format!("sending SIGKILL to job {name} [{pid}]")
}

pub fn leftovers(name: &str, pid: Pid, signal: StopSignal) -> String {
    let signal = signal.name();
    format!("job {name} [{pid}] left processes in its group: sending {signal} to them")
}

pub fn exiting(signal: i32) -> String {
    format!("pmtr: exiting on signal {signal}")
}

pub fn waiting_for(name: &str) -> String {
    format!("pausing for job {name} to finish")
}

pub fn not_restarting(name: &str, why: &str) -> String {
    format!("job {name} will not be restarted ({why})")
}

pub fn restarting_in(name: &str, guard_millis: u64, in_millis: u64) -> String {
    let (guard, delay) = (secs(guard_millis), secs(in_millis));
    format!("job {name} exited within {guard} sec of its start: restarting it in {delay} sec")
}

pub fn ready(name: &str, pid: Pid) -> String {
    format!("job {name} [{pid}] is ready")
}

pub fn not_ready(name: &str, pid: Pid, waited_millis: u64) -> String {
    let waited = secs(waited_millis);
    format!("job {name} [{pid}] not ready after {waited} sec: stopping it")
}

/// SPEC 11.4's wording: `job web unhealthy: 3 checks failed (last:
/// "curl: (7) Failed to connect"); restarting`.
pub fn unhealthy(name: &str, failures: u32, last: Option<&str>) -> String {
    let checks = if failures == 1 { "check" } else { "checks" };
    let last = last.map_or(String::new(), |line| format!(" (last: {line:?})"));
    format!("job {name} unhealthy: {failures} {checks} failed{last}; restarting")
}

pub fn health_check_failed(name: &str, failures: u32, retries: u32, last: Option<&str>) -> String {
    let last = last.map_or(String::new(), |line| format!(": {line:?}"));
    format!("job {name}: health check failed ({failures} of {retries} in a row){last}")
}

pub fn healthy_again(name: &str) -> String {
    format!("job {name} is healthy again")
}

pub fn watchdog_missed(name: &str, pid: Pid, watchdog_millis: u64) -> String {
    let watchdog = secs(watchdog_millis);
    format!("job {name} [{pid}] unhealthy: no WATCHDOG=1 for {watchdog} sec; restarting")
}

pub fn check_timed_out(timeout_millis: u64) -> String {
    format!("timed out after {} sec", secs(timeout_millis))
}

pub fn announced_stopping(name: &str, pid: Pid) -> String {
    format!("job {name} [{pid}] says it is stopping (STOPPING=1)")
}

pub fn too_many_waiting() -> &'static str {
    "too many clients are waiting already"
}

pub fn ready_reply() -> &'static str {
    "ready"
}

pub fn wait_timed_out(pending: &[&str]) -> String {
    format!("timed out waiting for {}", pending.join(", "))
}

pub fn job_rechecked(name: &str) -> String {
    format!("job {name}: readiness or health settings changed, applied without a restart")
}

pub fn critical_ended(name: &str, last: Option<ExitStatus>, status: u8) -> String {
    let how = last.map_or("never ran".to_string(), |s| s.to_string());
    format!(
        "critical job {name} ended ({how}): stopping every job, then exiting with status {status}"
    )
}

pub fn all_ready() -> String {
    "all jobs are ready (or failed to become so)".into()
}

pub fn giving_up(name: &str, rapid_exits: u32) -> String {
    format!(
        "job {name} exited {rapid_exits} times in a row soon after its start: giving up \
         (pmtr-ctl restart or enable starts it again)"
    )
}

pub fn spawn_retry(name: &str, reason: &str, in_millis: u64) -> String {
    let delay = secs(in_millis);
    format!("unable to start job {name}: {reason}; retrying in {delay} sec")
}

/// Whole seconds as the original logs them ("10"); the shortened times of
/// the test suite keep their tenths ("0.2").
fn secs(millis: u64) -> String {
    if millis % 1000 == 0 || millis >= 10_000 {
        (millis / 1000).to_string()
    } else {
        format!("{}.{}", millis / 1000, millis % 1000 / 100)
    }
}

pub fn spawn_failed(name: &str, reason: &str) -> String {
    format!("unable to start job {name}: {reason}")
}

pub fn rolling_restart(name: &str, left: usize) -> String {
    format!("rolling restart: restarting job {name} with its new definition ({left} more after it)")
}

pub fn logs_of_instances_reply(group: &str) -> String {
    format!("job {group} has instances: ask for the lines of one, as {group}.1")
}

pub fn rescanning() -> String {
    "rescanning job configuration".into()
}

pub fn config_unchanged() -> String {
    "configuration unchanged: nothing to do".into()
}

pub fn reload_failed(errors: &str) -> String {
    format!(
        "FAILED to parse the configuration; using the PREVIOUS job config:\n{}",
        errors.trim_end()
    )
}

pub fn job_added(name: &str) -> String {
    format!("job {name} added")
}

pub fn job_changed(name: &str) -> String {
    format!("job {name} changed: restarting it with its new definition")
}

pub fn job_removed(name: &str) -> String {
    format!("job {name} deleted: it will not be restarted")
}

pub fn bouncing(name: &str, pid: Pid, secs: u64) -> String {
    format!("bouncing job {name} [{pid}] after {secs} sec")
}

pub fn dependency_changed(name: &str, path: &str) -> String {
    format!("dependency {path} of job {name} changed: restarting it")
}

pub fn dependency_missing(name: &str, path: &str) -> String {
    format!("job {name}: dependency {path} is missing; the job starts when it appears")
}

pub fn unknown_job(name: &str) -> String {
    format!("{}: request ignored", unknown_job_reply(name))
}

/// An unknown name in a control datagram, with how many went unlogged
/// before it (they are rate-limited).
pub fn unknown_job_from_afar(name: &str, unlogged: u64) -> String {
    match unlogged {
        0 => unknown_job(name),
        n => format!(
            "{} (and {n} unknown names not logged before it)",
            unknown_job(name)
        ),
    }
}

pub fn overridden(name: &str, enabled: bool) -> String {
    let what = if enabled { "enabling" } else { "disabling" };
    format!("{what} job {name} until the next reload")
}

/// What `pmtr-ctl` prints for a job an enable or disable reached.
pub fn override_reply(enabled: bool) -> &'static str {
    if enabled {
        "enabled until the next reload"
    } else {
        "disabled until the next reload"
    }
}

pub fn restart_reply() -> &'static str {
    "restarting"
}

pub fn restart_disabled_reply() -> &'static str {
    "disabled: enable it to run it"
}

pub fn unknown_job_reply(name: &str) -> String {
    format!("no job named {name}")
}

pub fn reloaded_reply() -> &'static str {
    "configuration reloaded"
}

pub fn reload_refused_reply(errors: &str) -> String {
    format!("the configuration was not applied:\n{}", errors.trim_end())
}

pub fn shutting_down_reply() -> &'static str {
    "pmtr is shutting down"
}

pub fn restart_requested(name: &str) -> String {
    format!("restarting job {name} on request")
}

pub fn orphan(pid: Pid, status: ExitStatus) -> String {
    format!("reaped orphan [{pid}]: {status}")
}

/// A job the pmtr before started, taken over (SPEC 11.8).
pub fn adopted(name: &str, pid: Pid, ran_secs: u64) -> String {
    format!("adopted job {name} [{pid}], running for {ran_secs} sec")
}

/// An adopted job that is restarted at once, and why.
pub fn adopted_restart(name: &str, pid: Pid, why: &str) -> String {
    format!("job {name} [{pid}]: {why}; restarting it")
}

/// A process of a job no longer in the configuration, found running.
pub fn adopted_unknown(name: &str, pid: Pid) -> String {
    format!("job {name} [{pid}] is no longer in the configuration: stopping it")
}

/// A saved job whose process did not survive the handover.
pub fn adoption_gone(name: &str, pid: Pid) -> String {
    format!("job {name} [{pid}] no longer runs: starting it")
}

/// `can't exec /x/y: No such file or directory`, prefixed with the job.
pub fn setup_failed(job: &Job, pid: Pid, step: SetupStep, reason: &str) -> String {
    let what = setup_step(job, step);
    format!("job {} [{pid}]: {what}: {reason}", job.name)
}

/// The step of `job`'s start that failed, as `can't exec /x/y`.
pub fn setup_step(job: &Job, step: SetupStep) -> String {
    match step {
        SetupStep::Cgroup => "can't enter its cgroup".to_string(),
        SetupStep::Descriptors => "can't unshare its descriptors".to_string(),
        SetupStep::ProcessGroup => "can't create its process group".to_string(),
        SetupStep::Chdir => format!("can't chdir {}", job.working_dir()),
        SetupStep::Nice => "can't setpriority".to_string(),
        SetupStep::Affinity => "can't set cpu affinity".to_string(),
        SetupStep::Rlimit => "can't setrlimit".to_string(),
        SetupStep::Groups => format!("can't initgroups {}", user(job)),
        SetupStep::Gid => format!("can't setgid {}", user(job)),
        SetupStep::Uid => format!("can't setuid {}", user(job)),
        SetupStep::Stdin => format!("can't open {}", job.stdin_path()),
        SetupStep::Stdout => format!("can't open {}", output(job, &job.stdout)),
        SetupStep::Stderr => format!("can't open {}", output(job, &job.stderr)),
        SetupStep::Exec => format!("can't exec {}", job.cmd.first().map_or("", String::as_str)),
    }
}

fn user(job: &Job) -> &str {
    job.user.as_deref().unwrap_or("")
}

fn output(job: &Job, output: &crate::config::Output) -> String {
    match output {
        crate::config::Output::Syslog => "syslog pipe".into(),
        crate::config::Output::File(path) => job.resolve(path),
        crate::config::Output::Stdout => "pmtr's stdout".into(),
        crate::config::Output::Stderr => "pmtr's stderr".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_wording() {
        assert_eq!(started("web", 42), "started job web [42]");
        assert_eq!(
            exited("web", 42, 3, ExitStatus::Code(1)),
            "job web [42] exited after 3 sec: exit status 1"
        );
        assert_eq!(
            exited(
                "web",
                42,
                0,
                ExitStatus::Signal {
                    number: 9,
                    name: "SIGKILL"
                }
            ),
            "job web [42] exited after 0 sec: signal 9 (SIGKILL)"
        );
        assert_eq!(
            sending_stop("web", 42, StopSignal::Term),
            "sending SIGTERM to job web [42]"
        );
        assert_eq!(sending_kill("web", 42), "sending SIGKILL to job web [42]");
        assert_eq!(exiting(15), "pmtr: exiting on signal 15");
        assert_eq!(managing(3), "managing 3 jobs");
    }

    #[test]
    fn setup_failures_name_the_step_and_its_object() {
        let job = Job {
            name: "web".into(),
            cmd: vec!["/x/y".into()],
            dir: Some("/srv".into()),
            stdout: crate::config::Output::File("out.log".into()),
            ..Job::default()
        };
        let reason = "No such file or directory";
        assert_eq!(
            setup_failed(&job, 7, SetupStep::Exec, reason),
            "job web [7]: can't exec /x/y: No such file or directory"
        );
        assert_eq!(
            setup_failed(&job, 7, SetupStep::Stdout, "Permission denied"),
            "job web [7]: can't open /srv/out.log: Permission denied"
        );
        assert!(setup_failed(&job, 7, SetupStep::Chdir, reason).contains("can't chdir /srv"));
    }
}
