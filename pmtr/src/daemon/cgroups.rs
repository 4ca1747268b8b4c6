//! Containment (SPEC 11.7): the cgroup v2 subtree pmtr manages, if it may
//! manage one. pmtr moves itself into the leaf `supervisor`; each job gets
//! the child cgroup `job.NAME`, which the job's first process enters
//! before it execs (sys/child.rs). A job whose cgroup is empty is gone,
//! which `cgroup.events` says without polling (inotify); `cgroup.kill`
//! ends what left the job's process group. What the files mean is decided
//! in `pmtr_core::resources`.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::AT_FDCWD;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use pmtr_core::config::{CgroupLimits, Job};
use pmtr_core::resources::{self, limit_files};
use pmtr_core::supervise::event::Pid;

use crate::sys::{mounts, process};
use entering::{make, oom_kills_in, open_dir};
pub use entering::{Entered, ToEnter};
use pmtr_common::reason::Text;

mod entering;

/// What `--cgroup` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// A delegated cgroup, or pmtr as PID 1 with a writable one.
    Auto,
    /// Process groups only.
    Off,
    /// This cgroup v2 directory, created if missing.
    Dir(PathBuf),
}

impl Choice {
    pub fn parse(text: &str) -> Choice {
        match text {
            "auto" | "" => Choice::Auto,
            "off" => Choice::Off,
            dir => Choice::Dir(PathBuf::from(dir)),
        }
    }
}

/// The subtree pmtr may manage, found without changing anything.
#[derive(Clone, Debug)]
pub struct Subtree {
    pub base: PathBuf,
    /// The controllers the subtree can have (`cgroup.controllers`).
    pub available: Vec<String>,
}

/// The leaf pmtr moves itself into.
const SUPERVISOR_LEAF: &str = "supervisor";

/// Finds the subtree `choice` names; the reason there is none otherwise,
/// for the log.
pub fn find(choice: &Choice, is_init: bool) -> Result<Subtree, String> {
    let base = match choice {
        Choice::Off => return Err("--cgroup off".into()),
        Choice::Dir(dir) => {
            let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(dir);
            if !is_cgroup2(existing) {
                return Err(format!(
                    "{} is not in a cgroup v2 filesystem",
                    dir.display()
                ));
            }
            dir.clone()
        }
        Choice::Auto => {
            let own = own_cgroup()?;
            // A pmtr started again inside its own leaf manages its parent.
            let own = match own.file_name().and_then(|n| n.to_str()) {
                Some(SUPERVISOR_LEAF) => own.parent().map_or(own.clone(), Path::to_path_buf),
                _ => own,
            };
            let delegated = delegated(&own);
            let writable = is_init && writable(&own);
            if !delegated && !writable {
                let why = match is_init {
                    true => "is not writable",
                    false => "is not delegated to pmtr (Delegate=yes)",
                };
                return Err(format!("its cgroup {} {why}", own.display()));
            }
            own
        }
    };
    let available = fs::read_to_string(base.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Ok(Subtree { base, available })
}

/// The warnings for `limit`s that will not be applied: no subtree, or
/// no controller for them in it (SPEC 11.7: a warning, never an error).
pub fn limit_warnings<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    subtree: Result<&Subtree, &str>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for job in jobs {
        for (controller, option) in resources::controllers_needed(&job.extras.limits) {
            let why = match subtree {
                Err(why) => format!("pmtr manages no cgroup ({why})"),
                Ok(subtree) if !subtree.available.iter().any(|c| c == controller) => format!(
                    "the {controller} controller is not available in {}",
                    subtree.base.display()
                ),
                Ok(_) => continue,
            };
            warnings.push(format!("job {}: {option} is not applied: {why}", job.name));
        }
    }
    warnings
}

fn is_cgroup2(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// pmtr's own cgroup v2 directory: the mount of cgroup2 joined with the
/// `0::` line of `/proc/self/cgroup`.
fn own_cgroup() -> Result<PathBuf, String> {
    let mount = mounts::first_of_type("cgroup2").ok_or("no cgroup v2 filesystem is mounted")?;
    let cgroups = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("unable to read /proc/self/cgroup: {e}"))?;
    let own = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("pmtr is in no cgroup v2")?;
    Ok(Path::new(&mount).join(own.trim_start_matches('/')))
}

/// Whether `dir` was delegated to pmtr: systemd (251 and later) marks a
/// cgroup it delegates (`Delegate=yes`) with the `trusted.delegate`
/// attribute (`user.delegate` in a user's manager), and hands a service
/// that runs as an ordinary user its cgroup by owner. Root may write any
/// cgroup: for root, only the mark says.
fn delegated(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let euid = nix::unistd::geteuid().as_raw();
    let owned = fs::metadata(dir).is_ok_and(|m| m.uid() == euid);
    marked(dir) || (euid != 0 && owned && writable(dir))
}

fn marked(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let name = CString::new(*name).unwrap_or_default();
        process::small_xattr(&path, &name).is_some_and(|value| value == b"1")
    })
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(&dir.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok()
        && nix::unistd::access(
            &dir.join("cgroup.subtree_control"),
            nix::unistd::AccessFlags::W_OK,
        )
        .is_ok()
}

/// Writes `text` to an existing cgroup file (never creates one).
fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Writes `limits` to the cgroup `dir`: each file its controller gave the
/// cgroup. The options that could not be written, with why.
pub fn write_limits(dir: &Path, limits: &CgroupLimits) -> Vec<String> {
    let mut failed = Vec::new();
    for file in limit_files(limits) {
        let path = dir.join(file.file);
        if !path.exists() {
            continue; // no controller: warned about once (limit_warnings)
        }
        if let Err(error) = write_file(&path, &file.value) {
            failed.push(format!(
                "{}: unable to write {}: {error}",
                file.option,
                path.display()
            ));
        }
    }
    failed
}

/// A job's cgroup.
struct JobCgroup {
    dir: PathBuf,
    /// pmtr made it, or found it made: until then, the thread that makes
    /// the job's start makes it first.
    made: bool,
    /// The leader of the job's current or last run.
    leader: Option<Pid>,
    /// The limits written last: written again only when they change.
    written: CgroupLimits,
    /// OOM kills its `memory.events` counted when last looked at.
    oom_kills: u64,
    /// Its `cgroup.events` is watched: from the first time pmtr waited for
    /// it to empty. Not before: every start would wake pmtr for nothing.
    watched: bool,
}

impl JobCgroup {
    /// What making and opening the cgroup found.
    fn entered(&mut self, entered: Entered) {
        match entered {
            Entered::Made => self.made = true,
            // Kills counted before (a cgroup a previous pmtr made) are
            // not this pmtr's news.
            Entered::Found { oom_kills } => {
                self.made = true;
                self.oom_kills = oom_kills;
            }
            Entered::Opened | Entered::Failed { .. } => {}
        }
    }
}

/// The subtree pmtr manages, entered.
pub struct Containment {
    base: PathBuf,
    /// `base`, open: where the starting threads make and open the jobs'
    /// cgroups.
    base_dir: Arc<OwnedFd>,
    available: Vec<String>,
    /// Controllers enabled for the jobs' cgroups.
    enabled: Vec<String>,
    inotify: Inotify,
    jobs: HashMap<String, JobCgroup>,
    leaders: HashMap<Pid, String>,
    watches: HashMap<WatchDescriptor, String>,
    /// The limits said not to be applied, by job: said once.
    warned: HashSet<(String, &'static str)>,
}

/// The controllers enabled for every job's cgroup, for its usage in
/// `status`; the others only when a `limit` needs them (`cpu` changes
/// how CPU time is shared, a job's cgroup against the rest).
const ALWAYS_ENABLED: [&str; 2] = ["memory", "pids"];

impl Containment {
    /// Moves pmtr into its leaf of `subtree` and enables the controllers
    /// every job gets.
    pub fn enter(subtree: Subtree) -> Result<Containment, String> {
        let base = subtree.base;
        let leaf = base.join(SUPERVISOR_LEAF);
        let context = |what: &str, path: &Path, e: std::io::Error| {
            format!("unable to {what} {}: {e}", path.display())
        };
        fs::create_dir_all(&leaf).map_err(|e| context("create", &leaf, e))?;
        // Already there — started there (systemd's `DelegateSubgroup=`),
        // or a pmtr before this one moved it (`reexec`) — the move would
        // still wait for an RCU grace period (~15 ms here), mkdir and
        // every start into a cgroup with it.
        if own_cgroup().ok().as_deref() != Some(leaf.as_path()) {
            let procs = leaf.join("cgroup.procs");
            write_file(&procs, "0").map_err(|e| context("move pmtr into", &leaf, e))?;
        }
        let base_dir = open_dir(AT_FDCWD, &base)
            .map_err(|errno| format!("unable to open {}: {}", base.display(), Text(errno)))?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|errno| format!("unable to watch cgroups: {errno}"))?;
        let mut containment = Containment {
            base,
            base_dir: Arc::new(base_dir),
            available: subtree.available,
            enabled: Vec::new(),
            inotify,
            jobs: HashMap::new(),
            leaders: HashMap::new(),
            watches: HashMap::new(),
            warned: HashSet::new(),
        };
        for controller in ALWAYS_ENABLED {
            let _ = containment.enable(controller);
        }
        Ok(containment)
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The inotify descriptor of the jobs' `cgroup.events`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// Enables `controller` for the jobs' cgroups, if it is not yet.
    fn enable(&mut self, controller: &str) -> Result<(), String> {
        if self.enabled.iter().any(|c| c == controller) {
            return Ok(());
        }
        if !self.available.iter().any(|c| c == controller) {
            return Err(format!("the {controller} controller is not available"));
        }
        let control = self.base.join("cgroup.subtree_control");
        write_file(&control, &format!("+{controller}"))
            .map_err(|e| format!("unable to enable the {controller} controller: {e}"))?;
        self.enabled.push(controller.to_string());
        Ok(())
    }

    /// Makes the cgroup of job `name` ready for a start: its limits
    /// written, if they changed. What is left — making the cgroup the
    /// first time, opening it — the thread that makes the start does
    /// (`enter`); what went wrong with the limits, for the log.
    pub fn prepare(
        &mut self,
        name: &str,
        limits: &CgroupLimits,
    ) -> Result<(ToEnter, Vec<String>), String> {
        let mut warnings = Vec::new();
        for (controller, option) in resources::controllers_needed(limits) {
            if let Err(why) = self.enable(controller) {
                // An unavailable one was warned about at start; one that
                // would not be enabled is said once per job and limit.
                let available = self.available.iter().any(|c| c == controller);
                if available && self.warned.insert((name.to_string(), option)) {
                    warnings.push(format!("job {name}: {option} is not applied: {why}"));
                }
            }
        }
        let cgroup_name = CString::new(dir_name(name))
            .map_err(|_| format!("job {name}: its name holds a NUL byte"))?;
        let (base, base_dir) = (&self.base, self.base_dir.as_fd());
        let job = self
            .jobs
            .entry(name.to_string())
            .or_insert_with(|| JobCgroup {
                dir: base.join(dir_name(name)),
                made: false,
                leader: None,
                written: CgroupLimits::default(),
                oom_kills: 0,
                watched: false,
            });
        if job.written != *limits {
            // The limits hold from the job's first instruction: its
            // cgroup is made here, before the start.
            if !job.made {
                let entered = match make(base_dir, &cgroup_name) {
                    Ok(true) => Entered::Made,
                    Ok(false) => Entered::Found {
                        oom_kills: oom_kills_in(&job.dir),
                    },
                    Err(errno) => {
                        let why =
                            format!("unable to create {}: {}", job.dir.display(), Text(errno));
                        return Err(why);
                    }
                };
                job.entered(entered);
            }
            for failure in write_limits(&job.dir, limits) {
                warnings.push(format!("job {name}: {failure}"));
            }
            job.written = *limits;
        }
        let to_enter = ToEnter {
            base: self.base_dir.clone(),
            name: cgroup_name,
            make: !job.made,
        };
        Ok((to_enter, warnings))
    }

    /// What the thread that made a start of job `name` found entering its
    /// cgroup (`enter`): why the job runs uncontained, if it does.
    pub fn entered(&mut self, name: &str, entered: Entered) -> Option<String> {
        let job = self.jobs.get_mut(name)?;
        match entered {
            Entered::Failed { what, errno } => {
                let why = format!("unable to {what} {}: {}", job.dir.display(), Text(errno));
                // Removed behind pmtr's back, perhaps: made again next time.
                self.forget(name);
                Some(why)
            }
            entered => {
                job.entered(entered);
                None
            }
        }
    }

    /// Job `name`'s process `pid`, which a pmtr before this one started
    /// (SPEC 11.8), if it runs in the job's cgroup.
    pub fn adopt(&mut self, name: &str, pid: Pid) {
        let wanted = format!("/{}", dir_name(name));
        let placed = fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
            text.lines()
                .any(|l| l.starts_with("0::") && l.ends_with(&wanted))
        });
        if placed && self.prepare(name, &CgroupLimits::default()).is_ok() {
            if let Some(job) = self.jobs.get_mut(name) {
                if !job.made {
                    job.entered(Entered::Found {
                        oom_kills: oom_kills_in(&job.dir),
                    });
                }
            }
            self.started(name, pid);
        }
    }

    /// Job `name`'s start made `pid`, the leader of its group.
    pub fn started(&mut self, name: &str, pid: Pid) {
        if let Some(job) = self.jobs.get_mut(name) {
            if let Some(old) = job.leader.replace(pid) {
                self.leaders.remove(&old);
            }
            self.leaders.insert(pid, name.to_string());
        }
    }

    fn of_leader(&self, pgid: Pid) -> Option<&JobCgroup> {
        self.jobs.get(self.leaders.get(&pgid)?)
    }

    /// Whether the cgroup of the job led by `pgid` still holds a process;
    /// `None`: pmtr does not contain that job. A cgroup found occupied is
    /// watched from then on, and read again: it may have emptied before
    /// the watch began.
    pub fn populated(&mut self, pgid: Pid) -> Option<bool> {
        let name = self.leaders.get(&pgid)?.clone();
        let job = self.jobs.get_mut(&name)?;
        let occupied = populated(&job.dir)?;
        if !occupied || job.watched {
            return Some(occupied);
        }
        let flags = AddWatchFlags::IN_MODIFY;
        if let Ok(watch) = self
            .inotify
            .add_watch(&job.dir.join("cgroup.events"), flags)
        {
            self.watches.insert(watch, name);
            job.watched = true;
        }
        populated(&job.dir)
    }

    /// Kills every process in the cgroup of the job led by `pgid`. False:
    /// pmtr does not contain the job, or the kernel has no `cgroup.kill`
    /// (before 5.14), and the process group is all there is to signal.
    pub fn kill(&self, pgid: Pid) -> Result<bool, String> {
        let Some(job) = self.of_leader(pgid) else {
            return Ok(false);
        };
        let kill = job.dir.join("cgroup.kill");
        match write_file(&kill, "1") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("unable to write {}: {e}", kill.display())),
        }
    }

    /// Reads the changes of the jobs' `cgroup.events`: the leaders of the
    /// jobs whose cgroup is now empty.
    pub fn emptied(&mut self) -> Vec<Pid> {
        let mut emptied = Vec::new();
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                let Some(job) = self.watches.get(&event.wd).and_then(|n| self.jobs.get(n)) else {
                    continue;
                };
                let Some(leader) = job.leader else { continue };
                if !emptied.contains(&leader) && populated(&job.dir) == Some(false) {
                    emptied.push(leader);
                }
            }
        }
        emptied
    }

    /// Removes the cgroups of jobs `keep` says no longer exist, when they
    /// are empty (an occupied one is tried again at the next call).
    pub fn remove_unless(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.jobs.keys().filter(|n| !keep(n)).cloned().collect();
        for name in gone {
            let Some(job) = self.jobs.get(&name) else {
                continue;
            };
            match fs::remove_dir(&job.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => continue,
            }
            self.forget(&name);
        }
    }

    /// Drops what pmtr knows of job `name`'s cgroup.
    fn forget(&mut self, name: &str) {
        if let Some(job) = self.jobs.remove(name) {
            if let Some(leader) = job.leader {
                self.leaders.remove(&leader);
            }
        }
        self.watches.retain(|_, n| n != name);
    }

    /// The cgroup of the job led by `pgid`, if pmtr contains it: where
    /// its usage is read (daemon/usage.rs).
    pub fn dir_of(&self, pgid: Pid) -> Option<PathBuf> {
        Some(self.of_leader(pgid)?.dir.clone())
    }

    /// Whether the cgroup of the job led by `pgid` counted an OOM kill
    /// since the last look; `None` where it counts none (not contained,
    /// no memory controller).
    pub fn new_oom_kills(&mut self, pgid: Pid) -> Option<bool> {
        let name = self.leaders.get(&pgid)?;
        let job = self.jobs.get_mut(name)?;
        let events = fs::read_to_string(job.dir.join("memory.events")).ok()?;
        let kills = resources::oom_kills(&events)?;
        let before = std::mem::replace(&mut job.oom_kills, kills);
        Some(kills > before)
    }
}

/// What the `cgroup.events` of the cgroup `dir` says: does it hold a
/// process?
fn populated(dir: &Path) -> Option<bool> {
    let events = fs::read_to_string(dir.join("cgroup.events")).ok()?;
    resources::populated(&events)
}

/// The cgroup directory name of job `name`: `job.` and the name, with
/// `/` and control characters escaped (`%2F`) — what a cgroup name cannot
/// hold.
pub fn dir_name(name: &str) -> String {
    let mut dir = String::from("job.");
    for c in name.chars() {
        match c {
            '/' | '%' => dir.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => dir.push_str(&format!("%{:02X}", c as u32)),
            c => dir.push(c),
        }
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_cgroups_are_named_after_jobs_with_slashes_escaped() {
        assert_eq!(dir_name("web"), "job.web");
        assert_eq!(dir_name("a/b%c"), "job.a%2Fb%25c");
        assert_eq!(dir_name(".."), "job...");
        assert_eq!(dir_name("x\ny"), "job.x%0Ay");
    }

    /// The files a job's limits are written to, against a fake cgroup
    /// directory: those of its controllers, and nothing created where a
    /// controller is missing.
    #[test]
    fn limits_are_written_to_the_files_of_available_controllers() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["memory.max", "memory.high", "pids.max"] {
            fs::write(dir.path().join(file), "max\n").unwrap();
        }
        let limits = CgroupLimits {
            memory_max: Some(256 << 20),
            cpu_percent: Some(50),
            tasks: Some(32),
            ..CgroupLimits::default()
        };
        assert!(write_limits(dir.path(), &limits).is_empty());
        let read = |file: &str| fs::read_to_string(dir.path().join(file)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.high"), "max");
        assert_eq!(read("pids.max"), "32");
        assert!(!dir.path().join("cpu.max").exists(), "no cpu controller");
    }

    #[test]
    fn limits_without_a_controller_or_a_subtree_are_warnings() {
        let text = "job {\n name web\n cmd /bin/true\n limit memory 1G\n limit cpu 50%\n}\n\
                    job {\n name plain\n cmd /bin/true\n}\n";
        let config = pmtr_core::config::parse(text.as_bytes()).unwrap();
        let subtree = Subtree {
            base: PathBuf::from("/sys/fs/cgroup/x"),
            available: vec!["memory".into()],
        };
        assert_eq!(
            limit_warnings(&config.jobs, Ok(&subtree)),
            ["job web: limit cpu is not applied: the cpu controller is not available in /sys/fs/cgroup/x"]
        );
        let none = limit_warnings(&config.jobs, Err("--cgroup off"));
        assert_eq!(none.len(), 2);
        assert!(none[0].contains("pmtr manages no cgroup (--cgroup off)"));
    }
}
