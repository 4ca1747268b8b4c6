//! The validated configuration: what a `pmtr.conf` means once it has been
//! accepted. Values compare with `==` so that a reload can tell which jobs
//! changed.

use super::diagnostic::Location;

/// A whole accepted configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Jobs in file order; [`Config::start_order`] gives the start order.
    pub jobs: Vec<Job>,
    pub globals: Globals,
    /// Where each job's options were written, index for index with `jobs`,
    /// so that run-time checks (`pmtr -t` warnings) can point at the text.
    pub origins: Vec<Origin>,
    /// Where the global statements were written (named by first keyword).
    pub globals_origin: Origin,
}

impl Config {
    /// Gives every job without `dir` this one (absolute): the directory
    /// pmtr was started in, which only the shell knows.
    pub fn set_default_dir(&mut self, dir: &str) {
        for job in &mut self.jobs {
            if job.dir.is_none() {
                job.dir = Some(dir.to_string());
            }
        }
    }

    /// Indices of `jobs` in start order: by `order`, file order breaking ties.
    pub fn start_order(&self) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..self.jobs.len()).collect();
        indices.sort_by_key(|&i| self.jobs[i].order);
        indices
    }
}

/// The statements outside any job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Globals {
    pub report_to: Vec<UdpEndpoint>,
    pub listen_on: Option<UdpEndpoint>,
    pub udp_key: Option<String>,
    pub metrics_to: Option<String>,
}

/// `udp://HOST:PORT[@IFACE]`. The host stays a name: it is resolved when
/// the socket is made, never while parsing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UdpEndpoint {
    /// A name, an IPv4 address, or an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
    /// Egress interface for multicast destinations.
    pub interface: Option<String>,
}

/// One job's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// `argv`; `argv[0]` is an absolute path.
    pub cmd: Vec<String>,
    /// Working directory, absolute. `None` in a file without `dir`; the
    /// shell then sets the directory pmtr was started in
    /// ([`Config::set_default_dir`]), and `/` is the last resort.
    pub dir: Option<String>,
    pub stdout: Output,
    pub stderr: Output,
    pub user: Option<String>,
    pub env: Vec<EnvVar>,
    pub disabled: bool,
    pub wait: bool,
    pub once: bool,
    /// `critical` (SPEC 11.5): its end, when not restarted, ends pmtr.
    pub critical: bool,
    pub order: i32,
    pub nice: Option<i32>,
    /// `restart`: which exits are followed by a restart.
    pub restart: RestartPolicy,
    /// `stop signal`: sent to stop the job (SIGTERM by default).
    pub stop_signal: StopSignal,
    /// `instances N` as written; 0 without it. The parser turns such a
    /// job into its N copies, which have 0 here.
    pub instances: u32,
    /// The options that take room and that most jobs leave unset.
    pub extras: Extras,
}

/// The options of a job that take room and that most jobs leave unset:
/// kept out of line, and not at all while every one is unset, so that a
/// file of a thousand plain jobs costs a thousand small definitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobExtras {
    pub stdin: Option<String>,
    pub cpu: Option<CpuSet>,
    pub ulimits: Vec<Ulimit>,
    /// `bounce every`: restart after the job has run this many seconds.
    pub bounce_every_secs: Option<u64>,
    /// Files whose content the job depends on, as written (relative ones
    /// are under `dir`: see [`Job::resolve`]).
    pub depends: Vec<String>,
    /// `env file [-]PATH`: read at every start, before `env`.
    pub env_files: Vec<EnvFile>,
    /// `limit ...` (SPEC 11.7): written to the job's cgroup, when pmtr has
    /// one to manage.
    pub limits: CgroupLimits,
    /// `backoff INITIAL MAX`, milliseconds; `None`: both are the
    /// rapid-restart guard (10 s), as SPEC 4.2.
    pub backoff_millis: Option<(u64, u64)>,
    /// `stable`, milliseconds: a shorter run is a rapid exit. `None`: the
    /// rapid-restart guard (10 s).
    pub stable_millis: Option<u64>,
    /// `give up after N`: after N rapid exits in a row the job is failed.
    pub give_up_after: Option<u32>,
    /// `stop timeout`, milliseconds: SIGKILL follows the stop signal after
    /// this. `None`: the kill grace (10 s).
    pub stop_timeout_millis: Option<u64>,
    /// `after JOB...`: started only while each of these jobs is ready.
    pub after: Vec<String>,
    /// `ready ...`: when the job counts as ready.
    pub ready: Readiness,
    /// `ready timeout`, milliseconds; `None`: 60 s.
    pub ready_timeout_millis: Option<u64>,
    /// `health ...` (SPEC 11.4): how pmtr tells that a ready job still works.
    pub health: Health,
    /// `log rotate`, `log timestamps` (SPEC 11.6): pmtr writes the job's
    /// `out`/`err` files itself.
    pub log: LogFiles,
    /// Which copy of an `instances` job this is.
    pub instance: Option<Instance>,
}

/// Every extra option unset, for the jobs that hold none.
static NO_EXTRAS: JobExtras = JobExtras {
    stdin: None,
    cpu: None,
    ulimits: Vec::new(),
    bounce_every_secs: None,
    depends: Vec::new(),
    env_files: Vec::new(),
    limits: CgroupLimits {
        memory_max: None,
        memory_high: None,
        cpu_percent: None,
        cpu_weight: None,
        tasks: None,
    },
    backoff_millis: None,
    stable_millis: None,
    give_up_after: None,
    stop_timeout_millis: None,
    after: Vec::new(),
    ready: Readiness::Started,
    ready_timeout_millis: None,
    health: Health {
        check: None,
        every_millis: None,
        timeout_millis: None,
        retries: None,
        watchdog_millis: None,
    },
    log: LogFiles {
        rotate: None,
        timestamps: false,
    },
    instance: None,
};

/// A job's [`JobExtras`]: read through it as through a `Box`; nothing is
/// allocated until one is set. Equal when the options are, whether held
/// or not.
#[derive(Clone, Default)]
pub struct Extras(Option<Box<JobExtras>>);

impl std::ops::Deref for Extras {
    type Target = JobExtras;

    fn deref(&self) -> &JobExtras {
        self.0.as_deref().unwrap_or(&NO_EXTRAS)
    }
}

impl std::ops::DerefMut for Extras {
    fn deref_mut(&mut self) -> &mut JobExtras {
        self.0.get_or_insert_with(Box::default)
    }
}

impl PartialEq for Extras {
    fn eq(&self, other: &Extras) -> bool {
        **self == **other
    }
}

impl Eq for Extras {}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// One copy of a job defined with `instances N` (SPEC 11.10): named
/// `GROUP.INDEX`, supervised on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The `name` written in the file.
    pub group: String,
    /// 1 to N.
    pub index: u32,
}

/// `env file [-]PATH` (SPEC 11.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    /// As written: a relative one is under the job's `dir`.
    pub path: String,
    /// Written `-PATH`: a missing file is skipped, not a failed start.
    pub optional: bool,
}

/// `log rotate SIZE KEEP` and `log timestamps` (SPEC 11.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogFiles {
    /// Rotate a file when it would grow past `size` bytes, keeping `keep`
    /// old files (FILE.1 ... FILE.KEEP).
    pub rotate: Option<Rotate>,
    /// Prefix each line with the local time, RFC 3339 with milliseconds.
    pub timestamps: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotate {
    pub size: u64,
    pub keep: u32,
}

impl LogFiles {
    /// True when pmtr, not the job, writes the job's output files.
    pub fn written_by_pmtr(&self) -> bool {
        self.rotate.is_some() || self.timestamps
    }
}

impl Job {
    /// The definition without the readiness and health settings, which a
    /// reload applies to a running job without restarting it (SPEC 11.3,
    /// 11.4): two jobs equal here differ only in how they are watched.
    pub fn without_checks(&self) -> Job {
        let mut job = self.clone();
        let extras = &mut *job.extras;
        extras.after = Vec::new();
        extras.ready = Readiness::Started;
        extras.ready_timeout_millis = None;
        extras.health = Health::default();
        job
    }

    /// Copy `index` of this `instances` job: named `NAME.index`, with
    /// `PMTR_INSTANCE=index` last in its environment, and `%i` in `cmd`,
    /// `dir`, `out` and `err` replaced by the index (`%%` by `%`).
    pub fn instance_copy(&self, index: u32) -> Job {
        let number = index.to_string();
        let expand = |text: &str| expand_instance(text, &number);
        let output = |output: &Output| match output {
            Output::File(path) => Output::File(expand(path)),
            other => other.clone(),
        };
        let mut env = self.env.clone();
        env.push(EnvVar {
            name: "PMTR_INSTANCE".into(),
            value: number.clone(),
        });
        let mut copy = Job {
            name: format!("{}.{index}", self.name),
            cmd: self.cmd.iter().map(|arg| expand(arg)).collect(),
            dir: self.dir.as_deref().map(expand),
            stdout: output(&self.stdout),
            stderr: output(&self.stderr),
            env,
            instances: 0,
            ..self.clone()
        };
        copy.extras.instance = Some(Instance {
            group: self.name.clone(),
            index,
        });
        copy
    }

    /// True when `%i` appears where a copy would expand it: meant for a
    /// job with `instances`.
    pub fn mentions_instance(&self) -> bool {
        let file = |output: &Output| matches!(output, Output::File(path) if path.contains("%i"));
        self.cmd.iter().any(|arg| arg.contains("%i"))
            || self.dir.as_deref().is_some_and(|dir| dir.contains("%i"))
            || file(&self.stdout)
            || file(&self.stderr)
    }

    /// True when the job talks to pmtr by the sd_notify protocol and so
    /// gets `NOTIFY_SOCKET`.
    pub fn uses_notify(&self) -> bool {
        self.extras.ready == Readiness::Notify || self.extras.health.watchdog_millis.is_some()
    }
}

/// `text` with `%i` made `number` and `%%` made `%`; any other `%` stays.
fn expand_instance(text: &str, number: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('i') => {
                chars.next();
                out.push_str(number);
            }
            Some('%') => {
                chars.next();
                out.push('%');
            }
            _ => out.push('%'),
        }
    }
    out
}

/// When a job is ready (SPEC 11.3), for `after` and `pmtr-ctl status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Once started, as in the original.
    #[default]
    Started,
    /// Once this file exists (as written; relative: under `dir`).
    File(String),
    /// Once a TCP connection to this address succeeds.
    Tcp(std::net::SocketAddr),
    /// Once the job sends `READY=1` by the sd_notify protocol.
    Notify,
    /// Once this command (`argv`, `argv[0]` absolute) exits 0, run as the
    /// job's user, in its `dir`, with its `env`.
    Cmd(Vec<String>),
}

/// `health ...` (SPEC 11.4). Checks run only with a `check`; the watchdog
/// works with or without one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub check: Option<HealthCheck>,
    /// `health every`, milliseconds; `None`: 30 s.
    pub every_millis: Option<u64>,
    /// `health timeout`, milliseconds; `None`: 10 s.
    pub timeout_millis: Option<u64>,
    /// `health retries`: failed checks in a row that restart the job;
    /// `None`: 3.
    pub retries: Option<u32>,
    /// `health watchdog`, milliseconds: the job must send `WATCHDOG=1` at
    /// least this often.
    pub watchdog_millis: Option<u64>,
}

/// What a health check does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// Run this command (like `ready cmd`); healthy when it exits 0.
    Cmd(Vec<String>),
    /// Healthy when a TCP connection to this address succeeds.
    Tcp(std::net::SocketAddr),
}

impl Health {
    pub const EVERY_MILLIS: u64 = 30_000;
    pub const TIMEOUT_MILLIS: u64 = 10_000;
    pub const RETRIES: u32 = 3;

    pub fn every(&self) -> u64 {
        self.every_millis.unwrap_or(Health::EVERY_MILLIS)
    }

    pub fn timeout(&self) -> u64 {
        self.timeout_millis.unwrap_or(Health::TIMEOUT_MILLIS)
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(Health::RETRIES)
    }
}

/// `stop signal NAME` (SPEC 11.2): what pmtr sends to stop a job; SIGKILL
/// follows after `stop timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StopSignal {
    #[default]
    Term,
    Int,
    Quit,
    Hup,
    Usr1,
    Usr2,
    Kill,
    Winch,
}

impl StopSignal {
    pub const ALL: [StopSignal; 8] = [
        StopSignal::Term,
        StopSignal::Int,
        StopSignal::Quit,
        StopSignal::Hup,
        StopSignal::Usr1,
        StopSignal::Usr2,
        StopSignal::Kill,
        StopSignal::Winch,
    ];

    /// `SIGTERM`, as logs name it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Quit => "SIGQUIT",
            StopSignal::Hup => "SIGHUP",
            StopSignal::Usr1 => "SIGUSR1",
            StopSignal::Usr2 => "SIGUSR2",
            StopSignal::Kill => "SIGKILL",
            StopSignal::Winch => "SIGWINCH",
        }
    }

    /// `TERM` or `SIGTERM`, as the file may write it.
    pub fn from_name(text: &str) -> Option<StopSignal> {
        let bare = text.strip_prefix("SIG").unwrap_or(text);
        StopSignal::ALL.into_iter().find(|s| &s.name()[3..] == bare)
    }
}

/// `restart always|on-failure|never` (SPEC 11.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    /// An exit with status 0 ends the job, as `once` does.
    OnFailure,
    /// Every exit ends the job, as `once` does.
    Never,
}

impl Job {
    pub fn working_dir(&self) -> &str {
        self.dir.as_deref().unwrap_or("/")
    }

    /// A path of this job as the job sees it: relative paths are under `dir`.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            let dir = self.working_dir().trim_end_matches('/');
            format!("{dir}/{path}")
        }
    }

    pub fn stdin_path(&self) -> String {
        self.resolve(self.extras.stdin.as_deref().unwrap_or("/dev/null"))
    }
}

/// Where a job's stdout or stderr goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Captured by pmtr and logged line by line (the default).
    #[default]
    Syslog,
    /// Appended to this file (relative to `dir`), created 0644.
    File(String),
    /// pmtr's own standard output, inherited: no pipe, no prefix, no copy
    /// (SPEC 11.5, for `docker logs`).
    Stdout,
    /// pmtr's own standard error, inherited.
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// A set of CPUs, one bit per CPU: word `i` holds CPUs `64*i .. 64*i+63`.
/// Trailing zero words are never kept, so equal sets compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet {
    words: Vec<u64>,
}

impl CpuSet {
    /// CPUs beyond this are refused: glibc's `cpu_set_t` holds 1024.
    pub const LIMIT: usize = 1024;

    pub fn insert(&mut self, cpu: usize) {
        let word = cpu / 64;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (cpu % 64);
    }

    pub fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / 64)
            .is_some_and(|w| w & (1 << (cpu % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The CPUs in the set, ascending.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.words.len() * 64).filter(|&cpu| self.contains(cpu))
    }
}

/// A job's `limit`s, each a cgroup v2 file (SPEC 11.7). `None`: not set,
/// the file is left as the kernel made it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// `limit memory SIZE`: `memory.max`, bytes.
    pub memory_max: Option<u64>,
    /// `limit memory-high SIZE`: `memory.high`, bytes.
    pub memory_high: Option<u64>,
    /// `limit cpu PERCENT`: `cpu.max`; 100 is one CPU.
    pub cpu_percent: Option<u64>,
    /// `limit cpu-weight N`: `cpu.weight`, 1–10000.
    pub cpu_weight: Option<u64>,
    /// `limit tasks N`: `pids.max`.
    pub tasks: Option<u64>,
}

impl CgroupLimits {
    pub fn is_empty(&self) -> bool {
        *self == CgroupLimits::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ulimit {
    pub resource: Resource,
    /// Soft and hard limit alike.
    pub value: Limit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Value(u64),
    Infinity,
}

/// The resources `ulimit` can set, as `prlimit(2)` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Core,
    Data,
    Nice,
    Fsize,
    Sigpending,
    Memlock,
    Rss,
    Nofile,
    Msgqueue,
    Rtprio,
    Stack,
    Cpu,
    Nproc,
    As,
}

impl Resource {
    /// Every resource with its `ulimit` flag and its `RLIMIT_*` name.
    pub const ALL: [(Resource, &'static str, &'static str); 14] = [
        (Resource::Core, "-c", "RLIMIT_CORE"),
        (Resource::Data, "-d", "RLIMIT_DATA"),
        (Resource::Nice, "-e", "RLIMIT_NICE"),
        (Resource::Fsize, "-f", "RLIMIT_FSIZE"),
        (Resource::Sigpending, "-i", "RLIMIT_SIGPENDING"),
        (Resource::Memlock, "-l", "RLIMIT_MEMLOCK"),
        (Resource::Rss, "-m", "RLIMIT_RSS"),
        (Resource::Nofile, "-n", "RLIMIT_NOFILE"),
        (Resource::Msgqueue, "-q", "RLIMIT_MSGQUEUE"),
        (Resource::Rtprio, "-r", "RLIMIT_RTPRIO"),
        (Resource::Stack, "-s", "RLIMIT_STACK"),
        (Resource::Cpu, "-t", "RLIMIT_CPU"),
        (Resource::Nproc, "-u", "RLIMIT_NPROC"),
        (Resource::As, "-v", "RLIMIT_AS"),
    ];

    /// Looks a resource up by flag (`-n`) or name (`RLIMIT_NOFILE`).
    pub fn from_flag_or_name(text: &str) -> Option<Resource> {
        Self::ALL
            .iter()
            .find(|(_, flag, name)| *flag == text || *name == text)
            .map(|(resource, _, _)| *resource)
    }

    pub fn flag(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(resource, _, _)| *resource == self)
            .map_or("?", |(_, flag, _)| flag)
    }
}

/// Where a job (or the global statements) was written: its `job` keyword
/// and each option given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub at: Location,
    /// Option name and the location of its (first) value, in file order.
    pub options: Vec<(&'static str, Location, usize)>,
}

impl Origin {
    /// Location and width of the first value of option `name`.
    pub fn value_of(&self, name: &str) -> Option<(Location, usize)> {
        self.options
            .iter()
            .find(|(option, _, _)| *option == name)
            .map(|(_, at, width)| (*at, *width))
    }

    /// Locations of every value of a repeatable option, in file order.
    pub fn values_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (Location, usize)> + 'a {
        self.options
            .iter()
            .filter(move |(option, _, _)| *option == name)
            .map(|(_, at, width)| (*at, *width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_order_sorts_by_order_and_keeps_file_order_for_ties() {
        let job = |name: &str, order| Job {
            name: name.into(),
            order,
            ..Job::default()
        };
        let config = Config {
            jobs: vec![job("a", 5), job("b", 0), job("c", 5), job("d", -1)],
            ..Config::default()
        };
        assert_eq!(config.start_order(), [3, 1, 0, 2]);
    }

    #[test]
    fn relative_paths_resolve_under_dir() {
        let mut job = Job::default();
        assert_eq!(job.resolve("out.log"), "/out.log");
        job.dir = Some("/srv/app/".into());
        assert_eq!(job.resolve("out.log"), "/srv/app/out.log");
        assert_eq!(job.resolve("/var/log/x"), "/var/log/x");
        assert_eq!(job.stdin_path(), "/dev/null");
    }

    #[test]
    fn extras_are_held_only_once_one_is_set_and_compare_by_content() {
        assert_eq!(NO_EXTRAS, JobExtras::default());
        let parsed = crate::config::parse(b"job {\n name a\n cmd /bin/true\n}\n").unwrap();
        assert!(parsed.jobs[0].extras.0.is_none());
        let mut held = Job::default();
        held.extras.stable_millis = Some(1);
        assert!(held.extras.0.is_some());
        assert_ne!(held, Job::default());
        held.extras.stable_millis = None;
        assert_eq!(held, Job::default());
        assert_eq!(format!("{held:?}"), format!("{:?}", Job::default()));
    }

    #[test]
    fn cpu_sets_compare_by_content() {
        let mut a = CpuSet::default();
        a.insert(3);
        a.insert(200);
        let mut b = CpuSet::default();
        b.insert(200);
        b.insert(3);
        assert_eq!(a, b);
        assert_eq!(a.cpus().collect::<Vec<_>>(), [3, 200]);
    }

    #[test]
    fn resources_by_flag_or_name() {
        assert_eq!(Resource::from_flag_or_name("-n"), Some(Resource::Nofile));
        assert_eq!(Resource::from_flag_or_name("RLIMIT_AS"), Some(Resource::As));
        assert_eq!(Resource::from_flag_or_name("-z"), None);
        assert_eq!(Resource::Core.flag(), "-c");
    }
}
