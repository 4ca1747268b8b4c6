//! `ExecPlan`: everything a job's child process needs, resolved in the
//! parent before `fork` — C strings, pointer arrays, the user's ids and
//! groups, limits, CPU set, the variables of its environment files — so
//! that the child only interprets it.

use std::ffi::CString;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::unistd::{getgrouplist, User};
use pmtr_core::config::{CpuSet, EnvVar, Job, Limit, Output, Resource};

use crate::config_file;
use crate::sys::process;

/// Where the child points one of its standard streams.
pub enum Stream {
    /// Open this file (input read-only; output appended, created 0644).
    File(CString),
    /// Duplicate this descriptor (the write end of pmtr's capture pipe).
    Fd(RawFd),
}

/// The write ends of pmtr's capture pipes a start points the job's
/// stdout and stderr at; a stream without one goes where the job's
/// definition says (a file the child opens, pmtr's own descriptor, or
/// /dev/null for a `syslog` stream pmtr could not capture).
#[derive(Clone, Copy, Debug, Default)]
pub struct Captured {
    pub stdout: Option<RawFd>,
    pub stderr: Option<RawFd>,
}

impl Captured {
    /// Both streams into one pipe.
    pub fn both(fd: RawFd) -> Captured {
        Captured {
            stdout: Some(fd),
            stderr: Some(fd),
        }
    }
}

/// The user a job runs as, resolved.
pub struct Identity {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
}

/// The prebuilt plan of one start. `argv` and `envp` are the pointer
/// arrays `execve` takes: they point into the plan's own strings and into
/// the environment of the `PlanContext` it was built from, which the
/// lifetime keeps alive and unchanged for as long as the plan exists.
pub struct ExecPlan<'context> {
    pub program: CString,
    _argv: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    pub envp: Vec<*const libc::c_char>,
    pub dir: CString,
    /// Signals to set back to their default action (ignored in pmtr).
    pub ignored_signals: Vec<libc::c_int>,
    pub nice: Option<libc::c_int>,
    pub cpu: Option<libc::cpu_set_t>,
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    pub identity: Option<Identity>,
    pub stdin: Stream,
    pub stdout: Stream,
    pub stderr: Stream,
    /// Every descriptor the streams name is below this: the child copies
    /// only those of pmtr's table (child.rs).
    pub keep_below: libc::c_uint,
    /// The job's cgroup directory, or -1 (SPEC 11.7): the child is made in
    /// it (`CLONE_INTO_CGROUP`) where the kernel can.
    pub cgroup_dir: libc::c_int,
    /// `cgroup.procs` of the job's cgroup, opened for writing, or -1: where
    /// the child is not made in its cgroup, it moves itself there first.
    pub cgroup_procs: libc::c_int,
    context: PhantomData<&'context PlanContext>,
}

// SAFETY: the only members that are not `Send` of themselves are `argv`
// and `envp`, pointers into the plan's own `CString`s (on the heap: moving
// the plan moves no string) and into the `PlanContext`'s environment,
// which the lifetime borrows unchanged. Nothing in them is tied to the
// thread that built the plan; the helper that makes half of a batch's
// starts (spawner.rs) uses plans the loop built, one thread per plan.
unsafe impl Send for ExecPlan<'_> {}

/// Why a plan could not be made: the job cannot start as defined.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("unable to look up user {user}: {reason}")]
    UserLookup {
        user: String,
        reason: nix::errno::Errno,
    },
    #[error("unable to look up the groups of {user}: {reason}")]
    GroupLookup {
        user: String,
        reason: nix::errno::Errno,
    },
    #[error("{0:?} holds a NUL byte")]
    Nul(String),
    #[error("env file {path}: {reason}")]
    EnvFile { path: String, reason: String },
}

/// The variables of the job's `env file`s, in order, read now: a missing
/// optional file (`-PATH`) adds nothing, any other fault fails the start.
fn env_files_of(job: &Job) -> Result<Vec<EnvVar>, PlanError> {
    let mut vars = Vec::new();
    for file in &job.extras.env_files {
        let path = job.resolve(&file.path);
        match config_file::read_env_file(&path, file.optional) {
            Ok(more) => vars.extend(more),
            Err(reason) => return Err(PlanError::EnvFile { path, reason }),
        }
    }
    Ok(vars)
}

/// What every plan starts from, captured once when pmtr starts.
pub struct PlanContext {
    /// pmtr's own environment, as `NAME=VALUE` C strings.
    pub environment: Vec<CString>,
    /// The CPUs pmtr may run on; a job's CPUs outside them are left out.
    pub available_cpus: Option<CpuSet>,
    /// The open-file limit pmtr was started with (soft, hard): pmtr raises
    /// its own, and gives jobs this one back unless their `ulimit -n` says
    /// otherwise.
    pub open_files: Option<(u64, u64)>,
    /// Signals pmtr ignores, which jobs must not inherit ignored.
    pub ignored_signals: Vec<libc::c_int>,
    /// /dev/null, open for reading and writing: the stream most jobs
    /// have, handed over instead of opened at every start.
    pub dev_null: Option<std::os::fd::OwnedFd>,
    /// Which paths are on remote filesystems: where a start is forked.
    pub mounts: super::mounts::MountTable,
}

impl PlanContext {
    pub fn capture(open_files: Option<(u64, u64)>) -> PlanContext {
        PlanContext {
            // systemd's notification socket is pmtr's, not its jobs'.
            environment: std::env::vars_os()
                .filter(|(name, _)| name != "NOTIFY_SOCKET")
                .filter_map(|(name, value)| {
                    let mut entry = name.into_vec();
                    entry.push(b'=');
                    entry.extend_from_slice(value.as_bytes());
                    CString::new(entry).ok()
                })
                .collect(),
            available_cpus: available_cpus(),
            open_files,
            ignored_signals: super::signals::ignored_signals(),
            dev_null: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .ok()
                .map(std::os::fd::OwnedFd::from),
            mounts: super::mounts::MountTable::open(),
        }
    }
}

/// The CPUs this process may run on, to leave out CPUs a job names that
/// the machine does not have.
pub fn available_cpus() -> Option<CpuSet> {
    let mask = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let mut set = CpuSet::default();
    for cpu in 0..nix::sched::CpuSet::count() {
        if mask.is_set(cpu).unwrap_or(false) {
            set.insert(cpu);
        }
    }
    Some(set)
}

fn c_string(text: impl Into<Vec<u8>>) -> Result<CString, PlanError> {
    CString::new(text).map_err(|e| Nul(String::from_utf8_lossy(&e.into_vec()).into_owned()))
}

use PlanError::Nul;

impl<'context> ExecPlan<'context> {
    /// Resolves `job` into a plan, its streams into the pipes `captured`
    /// names.
    pub fn build(
        job: &Job,
        context: &'context PlanContext,
        captured: Captured,
    ) -> Result<ExecPlan<'context>, PlanError> {
        let program = c_string(job.cmd.first().map_or("", String::as_str))?;
        let argv_strings = job
            .cmd
            .iter()
            .map(|arg| c_string(arg.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let user = match &job.user {
            None => None,
            Some(name) => match User::from_name(name) {
                Ok(Some(user)) => Some(user),
                Ok(None) => return Err(PlanError::UnknownUser(name.clone())),
                Err(reason) => {
                    return Err(PlanError::UserLookup {
                        user: name.clone(),
                        reason,
                    })
                }
            },
        };
        let (env_strings, envp) = environment_of(job, &context.environment, user.as_ref())?;
        let identity = match &user {
            None => None,
            // pmtr not root, and the job's user is pmtr's own: nothing to
            // change, and setgroups would be refused.
            Some(user)
                if user.uid == nix::unistd::geteuid() && !nix::unistd::geteuid().is_root() =>
            {
                None
            }
            Some(user) => {
                let name = c_string(user.name.as_str())?;
                let groups =
                    getgrouplist(&name, user.gid).map_err(|reason| PlanError::GroupLookup {
                        user: user.name.clone(),
                        reason,
                    })?;
                Some(Identity {
                    uid: user.uid.as_raw(),
                    gid: user.gid.as_raw(),
                    groups: groups.iter().map(|g| g.as_raw()).collect(),
                })
            }
        };
        let dev_null = context.dev_null.as_ref().map(|fd| fd.as_raw_fd());
        let file = |path: &str| -> Result<Stream, PlanError> {
            match dev_null {
                Some(fd) if path == "/dev/null" => Ok(Stream::Fd(fd)),
                _ => Ok(Stream::File(c_string(path)?)),
            }
        };
        let stream = |output: &Output, capture: Option<RawFd>| -> Result<Stream, PlanError> {
            if let Some(fd) = capture {
                return Ok(Stream::Fd(fd));
            }
            Ok(match output {
                Output::Syslog => file("/dev/null")?,
                Output::File(path) => file(&job.resolve(path))?,
                // pmtr's own descriptors, which the child inherits.
                Output::Stdout => Stream::Fd(1),
                Output::Stderr => Stream::Fd(2),
            })
        };
        let stdin = file(&job.stdin_path())?;
        let stdout = stream(&job.stdout, captured.stdout)?;
        let stderr = stream(&job.stderr, captured.stderr)?;
        let keep_below = [&stdin, &stdout, &stderr]
            .into_iter()
            .filter_map(|stream| match stream {
                Stream::Fd(fd) => libc::c_uint::try_from(*fd).ok(),
                Stream::File(_) => None,
            })
            .fold(3, |below, fd| below.max(fd.saturating_add(1)));
        // The pointer arrays point into the strings' heap buffers, which do
        // not move when the strings are moved into the plan.
        Ok(ExecPlan {
            program,
            argv: null_terminated(&argv_strings),
            _argv: argv_strings,
            envp,
            _envp: env_strings,
            dir: c_string(job.working_dir())?,
            ignored_signals: context.ignored_signals.clone(),
            nice: job.nice,
            cpu: job
                .extras
                .cpu
                .as_ref()
                .and_then(|set| cpu_mask(set, context.available_cpus.as_ref())),
            rlimits: rlimits(job, context.open_files),
            identity,
            stdin,
            stdout,
            stderr,
            keep_below,
            cgroup_dir: -1,
            cgroup_procs: -1,
            context: PhantomData,
        })
    }
}

impl ExecPlan<'_> {
    /// The paths the child touches before its program runs: its program,
    /// its directory, the files of its streams.
    pub fn paths(&self) -> impl Iterator<Item = &std::ffi::CStr> {
        [self.program.as_c_str(), self.dir.as_c_str()]
            .into_iter()
            .chain(self.files())
    }

    /// The files the child opens for its streams.
    pub fn files(&self) -> impl Iterator<Item = &std::ffi::CStr> {
        [&self.stdin, &self.stdout, &self.stderr]
            .into_iter()
            .filter_map(|stream| match stream {
                Stream::File(path) => Some(path.as_c_str()),
                Stream::Fd(_) => None,
            })
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// pmtr's environment, then the job's mark (`PMTR_JOB=NAME`: how pmtr
/// knows what a job left behind, process::job_mark), then `HOME`, `USER`,
/// `LOGNAME` of the job's user, then the job's `env`: later entries
/// replace earlier ones. Entries of the base environment are pointed at,
/// not copied.
fn environment_of(
    job: &Job,
    base: &[CString],
    user: Option<&User>,
) -> Result<(Vec<CString>, Vec<*const libc::c_char>), PlanError> {
    let mut overrides: Vec<CString> = Vec::new();
    let mut set = |name: &[u8], value: &[u8]| -> Result<(), PlanError> {
        overrides.retain(|entry| variable_name(entry) != name);
        let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
        entry.extend_from_slice(name);
        entry.push(b'=');
        entry.extend_from_slice(value);
        overrides.push(c_string(entry)?);
        Ok(())
    };
    set(process::JOB_MARK.as_bytes(), job.name.as_bytes())?;
    if let Some(user) = user {
        set(b"HOME", user.dir.as_os_str().as_bytes())?;
        set(b"USER", user.name.as_bytes())?;
        set(b"LOGNAME", user.name.as_bytes())?;
    }
    for var in env_files_of(job)?.iter().chain(&job.env) {
        set(var.name.as_bytes(), var.value.as_bytes())?;
    }
    let mut pointers: Vec<*const libc::c_char> =
        Vec::with_capacity(base.len() + overrides.len() + 1);
    for entry in base {
        let name = variable_name(entry);
        if !overrides.iter().any(|o| variable_name(o) == name) {
            pointers.push(entry.as_ptr());
        }
    }
    pointers.extend(overrides.iter().map(|entry| entry.as_ptr()));
    pointers.push(std::ptr::null());
    Ok((overrides, pointers))
}

/// `NAME` of a `NAME=VALUE` entry.
fn variable_name(entry: &CString) -> &[u8] {
    let bytes = entry.as_bytes();
    let end = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
    &bytes[..end]
}

fn cpu_mask(set: &CpuSet, available: Option<&CpuSet>) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut any = false;
    for cpu in set.cpus() {
        if cpu < CpuSet::LIMIT && available.is_none_or(|a| a.contains(cpu)) {
            // SAFETY: `cpu` is below CPU_SETSIZE (CpuSet::LIMIT), the size
            // of the mask, so CPU_SET writes inside it.
            unsafe { libc::CPU_SET(cpu, &mut mask) };
            any = true;
        }
    }
    // Only CPUs the machine lacks: run where pmtr runs rather than fail.
    any.then_some(mask)
}

fn rlimits(
    job: &Job,
    open_files: Option<(u64, u64)>,
) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    let mut limits: Vec<_> = job
        .extras
        .ulimits
        .iter()
        .map(|u| (resource(u.resource), limit(u.value)))
        .collect();
    let sets_open_files = job
        .extras
        .ulimits
        .iter()
        .any(|u| u.resource == Resource::Nofile);
    if let (false, Some((soft, hard))) = (sets_open_files, open_files) {
        let inherited = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        limits.push((libc::RLIMIT_NOFILE, inherited));
    }
    limits
}

fn resource(resource: Resource) -> libc::__rlimit_resource_t {
    match resource {
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Stack => libc::RLIMIT_STACK,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::As => libc::RLIMIT_AS,
    }
}

fn limit(value: Limit) -> libc::rlimit {
    let value = match value {
        Limit::Value(v) => v as libc::rlim_t,
        Limit::Infinity => libc::RLIM_INFINITY,
    };
    libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn job(text: &str) -> Job {
        pmtr_core::config::parse(text.as_bytes())
            .unwrap()
            .jobs
            .remove(0)
    }

    fn context(environment: Vec<(&str, &str)>) -> PlanContext {
        PlanContext {
            environment: environment
                .into_iter()
                .map(|(name, value)| CString::new(format!("{name}={value}")).unwrap())
                .collect(),
            available_cpus: None,
            open_files: None,
            ignored_signals: Vec::new(),
            dev_null: None,
            mounts: crate::sys::mounts::MountTable::open(),
        }
    }

    #[test]
    fn jobs_get_the_inherited_open_file_limit_back() {
        let job = job("job {\n name t\n cmd /bin/true\n}");
        let mut context = context(vec![]);
        context.open_files = Some((1024, 4096));
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert_eq!(plan.rlimits.len(), 1);
        assert_eq!(
            (plan.rlimits[0].1.rlim_cur, plan.rlimits[0].1.rlim_max),
            (1024, 4096)
        );
        let job = self::job("job {\n name t\n cmd /bin/true\n ulimit -n 50\n}");
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert_eq!((plan.rlimits[0].1.rlim_cur, plan.rlimits.len()), (50, 1));
    }

    fn env_of(plan: &ExecPlan) -> Vec<String> {
        plan.envp
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: each pointer comes from a CString the plan owns.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn env_files_are_read_at_each_build_and_env_lines_win() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first.env");
        let second = dir.path().join("second.env");
        std::fs::write(&first, "# settings\nA=from-first\nB='b b'\nC=1\n").unwrap();
        std::fs::write(&second, "A=from-second\n").unwrap();
        let text = format!(
            "job {{\n name t\n cmd /bin/true\n env file {}\n env file {}\n env file -/no/such.env\n env C=line\n}}",
            first.display(),
            second.display()
        );
        let job = job(&text);
        let context = context(vec![("PATH", "/bin"), ("B", "inherited")]);
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert_eq!(
            env_of(&plan),
            [
                "PATH=/bin",
                "PMTR_JOB=t",
                "B=b b",
                "A=from-second",
                "C=line"
            ]
        );
        drop(plan);
        // Read again at the next start.
        std::fs::write(&second, "A=changed\n").unwrap();
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert!(env_of(&plan).contains(&"A=changed".to_string()));
    }

    #[test]
    fn a_missing_or_malformed_env_file_fails_the_start_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        let text = format!(
            "job {{\n name t\n cmd /bin/true\n env file {}\n}}",
            path.display()
        );
        let job = job(&text);
        let context = context(vec![]);
        let error = ExecPlan::build(&job, &context, Captured::default())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            format!("env file {}: No such file or directory", path.display())
        );
        std::fs::write(&path, "OK=1\n2BAD=x\n").unwrap();
        let error = ExecPlan::build(&job, &context, Captured::default())
            .err()
            .unwrap();
        assert!(error.to_string().ends_with(": line 2: `2BAD` is not a variable name (letters, digits and `_`, not starting with a digit)"), "{error}");
    }

    #[test]
    fn argv_and_environment() {
        let context = context(vec![("PATH", "/bin"), ("MODE", "a")]);
        let job =
            job("job {\n name t\n cmd /bin/echo \"a b\" c\n env MODE=b\n env NEW=1\n dir /tmp\n}");
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert_eq!(plan.argv.len(), 4);
        assert!(plan.argv[3].is_null());
        // SAFETY: argv[1] points into a CString of the plan.
        assert_eq!(
            unsafe { CStr::from_ptr(plan.argv[1]) }.to_str().unwrap(),
            "a b"
        );
        assert_eq!(
            env_of(&plan),
            ["PATH=/bin", "PMTR_JOB=t", "MODE=b", "NEW=1"]
        );
        assert_eq!(plan.dir.to_str().unwrap(), "/tmp");
        assert!(plan.identity.is_none());
    }

    #[test]
    fn every_job_is_marked_with_its_name_unless_its_env_says_otherwise() {
        let context = context(vec![("PMTR_JOB", "pmtr's own")]);
        let plan = ExecPlan::build(
            &job("job {\n name web.2\n cmd /bin/true\n}"),
            &context,
            Captured::default(),
        )
        .unwrap();
        assert_eq!(env_of(&plan), ["PMTR_JOB=web.2"]);
        let job = job("job {\n name t\n cmd /bin/true\n env PMTR_JOB=mine\n}");
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert_eq!(env_of(&plan), ["PMTR_JOB=mine"]);
    }

    #[test]
    fn a_user_brings_home_user_and_logname_unless_env_sets_them() {
        let context = context(vec![("HOME", "/root")]);
        let job = job("job {\n name t\n cmd /bin/true\n user root\n env LOGNAME=custom\n}");
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        let identity = plan.identity.as_ref().unwrap();
        assert_eq!((identity.uid, identity.gid), (0, 0));
        assert!(identity.groups.contains(&0));
        let env = env_of(&plan);
        assert!(env.contains(&"HOME=/root".to_string()), "{env:?}");
        assert!(env.contains(&"USER=root".to_string()));
        assert!(env.contains(&"LOGNAME=custom".to_string()));
    }

    #[test]
    fn an_unknown_user_is_a_plan_error() {
        let job = job("job {\n name t\n cmd /bin/true\n user no-such-user-pmtr\n}");
        let error = ExecPlan::build(&job, &context(vec![]), Captured::default())
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "unknown user no-such-user-pmtr");
    }

    #[test]
    fn absent_cpus_are_left_out() {
        let mut available = CpuSet::default();
        available.insert(0);
        available.insert(1);
        let job = job("job {\n name t\n cmd /bin/true\n cpu 1,7\n}");
        let mut context = context(vec![]);
        context.available_cpus = Some(available);
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        let mask = plan.cpu.unwrap();
        // SAFETY: 1 and 7 are below CPU_SETSIZE.
        assert!(unsafe { libc::CPU_ISSET(1, &mask) } && !unsafe { libc::CPU_ISSET(7, &mask) });
        let job = self::job("job {\n name t\n cmd /bin/true\n cpu 7\n}");
        let plan = ExecPlan::build(&job, &context, Captured::default()).unwrap();
        assert!(plan.cpu.is_none());
    }

    #[test]
    fn relative_streams_are_under_dir_and_syslog_uses_the_pipe() {
        let job = job("job {\n name t\n cmd /bin/true\n dir /srv\n out o.log\n in i.txt\n}");
        // The plan points into the context: it must outlive the plan.
        let context = context(vec![]);
        let captured = Captured {
            stdout: None,
            stderr: Some(9),
        };
        let plan = ExecPlan::build(&job, &context, captured).unwrap();
        assert!(matches!(&plan.stdout, Stream::File(p) if p.to_str().unwrap() == "/srv/o.log"));
        assert!(matches!(&plan.stdin, Stream::File(p) if p.to_str().unwrap() == "/srv/i.txt"));
        assert!(matches!(plan.stderr, Stream::Fd(9)));
        // The child copies descriptors up to the pipe's, no further.
        assert_eq!(plan.keep_below, 10);
    }
}
