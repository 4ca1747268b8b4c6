//! What running jobs use (SPEC 11.7): memory and CPU time for `status`,
//! `--json` and metrics — from each job's cgroup where pmtr contains it,
//! else summed over its process group from `/proc` — and OOM kills, which
//! the kernel counts per cgroup (`memory.events`) or for the whole machine
//! (`/proc/vmstat`).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use nix::sys::epoll::EpollFlags;
use pmtr_core::proto::local::Response;
use pmtr_core::resources::{self, ProcStat};
use pmtr_core::status::JobStatus;
use pmtr_core::supervise::event::Pid;

use super::cgroups::Containment;
use super::registry::{Registry, Source, Token};

/// Memory (bytes) and CPU time (ms) of each running job, by its leader.
pub type Measured = HashMap<Pid, (Option<u64>, Option<u64>)>;

/// What to measure: each running job's leader, and its cgroup if pmtr
/// contains it.
pub type Query = Vec<(Pid, Option<PathBuf>)>;

/// The query for the running jobs of `jobs`.
pub fn query(jobs: &[JobStatus], containment: Option<&Containment>) -> Query {
    let dir = |pid| containment.and_then(|c| c.dir_of(pid));
    jobs.iter()
        .filter_map(|job| job.pid)
        .map(|pid| (pid, dir(pid)))
        .collect()
}

/// Reads what each job of `query` uses: from its cgroup, and where that
/// says nothing, from one pass over `/proc` summed by process group. It
/// reads a file per process or per job — 10 000 jobs take about 100 ms —
/// so the loop has it done on a thread ([`Measurer`]).
pub fn measure(query: &[(Pid, Option<PathBuf>)]) -> Measured {
    let mut groups: Option<HashMap<Pid, GroupUsage>> = None;
    let mut measured = HashMap::with_capacity(query.len());
    for (pid, dir) in query {
        let (mut memory, cpu_micros) = dir.as_deref().map_or((None, None), cgroup_usage);
        let mut cpu = cpu_micros.map(|micros| micros / 1000);
        if memory.is_none() || cpu.is_none() {
            let groups = groups.get_or_insert_with(process_groups);
            let group = groups.get(pid).copied().unwrap_or_default();
            memory = memory.or(Some(group.memory_bytes));
            cpu = cpu.or(Some(group.cpu_millis));
        }
        measured.insert(*pid, (memory, cpu));
    }
    measured
}

/// A cgroup's memory (bytes; none without the memory controller) and CPU
/// time (microseconds).
fn cgroup_usage(dir: &Path) -> (Option<u64>, Option<u64>) {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let memory = read("memory.current").and_then(|t| t.trim().parse().ok());
    let cpu = read("cpu.stat").and_then(|t| resources::cpu_usage_micros(&t));
    (memory, cpu)
}

/// Puts what was measured into the statuses of `jobs`.
pub fn apply(jobs: &mut [JobStatus], measured: &Measured) {
    for job in jobs {
        if let Some(&(memory, cpu)) = job.pid.and_then(|pid| measured.get(&pid)) {
            (job.memory_bytes, job.cpu_millis) = (memory, cpu);
        }
    }
}

/// What a measurement is for.
pub enum Purpose {
    /// A `status` answer, sent once its usage is in.
    Status {
        client: Token,
        responses: Vec<Response>,
    },
    /// The metrics file's usage series.
    Metrics,
}

/// A measurement under way on a thread: its result, and the pipe the
/// thread writes a byte to when it is in.
struct Pending {
    purpose: Purpose,
    result: Arc<Mutex<Option<Measured>>>,
    pipe: OwnedFd,
}

/// Measurements made on threads, so that reading thousands of files does
/// not hold up the loop: each ends with a byte on a pipe the loop watches.
#[derive(Default)]
pub struct Measurer {
    pending: HashMap<Token, Pending>,
}

impl Measurer {
    /// Measures `query` on a thread for `purpose`. Without a pipe to
    /// watch, measures it here and gives it back at once; without a thread,
    /// gives back nothing measured.
    pub fn start(
        &mut self,
        registry: &mut Registry,
        query: Query,
        purpose: Purpose,
    ) -> Option<(Purpose, Measured)> {
        let Ok((read, write)) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) else {
            return Some((purpose, measure(&query)));
        };
        let Ok(token) = registry.add(read.as_fd(), EpollFlags::EPOLLIN, Source::Usage) else {
            return Some((purpose, measure(&query)));
        };
        let result = Arc::new(Mutex::new(None));
        let slot = result.clone();
        let spawned = std::thread::Builder::new()
            .name("usage".into())
            .spawn(move || {
                let measured = measure(&query);
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(measured);
                }
                let _ = nix::unistd::write(&write, b"x");
            });
        if spawned.is_err() {
            // Out of threads: the answer goes without usage this time.
            registry.remove(read.as_fd(), token);
            return Some((purpose, HashMap::new()));
        }
        let pending = Pending {
            purpose,
            result,
            pipe: read,
        };
        self.pending.insert(token, pending);
        None
    }

    /// The measurement whose pipe `token` is, if it is in.
    pub fn finished(
        &mut self,
        registry: &mut Registry,
        token: Token,
    ) -> Option<(Purpose, Measured)> {
        let measured = {
            let pending = self.pending.get(&token)?;
            let mut slot = pending.result.lock().ok()?;
            slot.take()?
        };
        let pending = self.pending.remove(&token)?;
        registry.remove(pending.pipe.as_fd(), token);
        Some((pending.purpose, measured))
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct GroupUsage {
    memory_bytes: u64,
    cpu_millis: u64,
}

/// The resident memory and CPU time of every process group, from one pass
/// over `/proc`.
fn process_groups() -> HashMap<Pid, GroupUsage> {
    let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
    let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100).max(1);
    let mut groups: HashMap<Pid, GroupUsage> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    // One open and one read per process, into one buffer: a status of
    // 1 000 jobs reads at least as many files.
    let mut buffer = [0u8; 2048];
    let mut path = String::with_capacity(32);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        path.clear();
        path.push_str("/proc/");
        path.push_str(pid);
        path.push_str("/stat");
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue; // gone meanwhile
        };
        let Ok(read) = std::io::Read::read(&mut file, &mut buffer) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&buffer[..read]) else {
            continue;
        };
        let Some(ProcStat {
            pgid,
            cpu_ticks,
            rss_pages,
            ..
        }) = resources::proc_stat(text)
        else {
            continue;
        };
        let group = groups.entry(pgid).or_default();
        group.memory_bytes = group.memory_bytes.saturating_add(rss_pages * page);
        group.cpu_millis = group
            .cpu_millis
            .saturating_add(cpu_ticks.saturating_mul(1000) / ticks);
    }
    groups
}

fn sysconf(variable: nix::unistd::SysconfVar, fallback: u64) -> u64 {
    match nix::unistd::sysconf(variable) {
        Ok(Some(value)) => u64::try_from(value).unwrap_or(fallback),
        _ => fallback,
    }
}

/// The machine's count of OOM kills (`oom_kill` in `/proc/vmstat`).
fn machine_oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Tells whether a job killed by SIGKILL was killed by the OOM killer.
pub struct OomWatch {
    /// The machine's count when last looked at.
    machine: Option<u64>,
}

impl OomWatch {
    pub fn new() -> OomWatch {
        OomWatch {
            machine: machine_oom_kills(),
        }
    }

    /// OOM kills the machine counted since the last look (none when it
    /// cannot tell): when there are none, no SIGKILL was the OOM killer's
    /// and nothing needs looking at — a shutdown's thousands of SIGKILLs
    /// cost one read of `/proc/vmstat`.
    pub fn counted_since(&mut self) -> u64 {
        let machine = machine_oom_kills();
        let before = std::mem::replace(&mut self.machine, machine);
        match (before, machine) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        }
    }
}

/// Which of the jobs led by `leaders`, which SIGKILL just ended, the OOM
/// killer killed, given the `counted` kills of the machine: one whose cgroup
/// counted a kill since the last look, or, without a cgroup, one of as many
/// as the machine counted (the kernel does not say whom).
pub fn oom_killed(
    leaders: &[Pid],
    mut counted: u64,
    mut containment: Option<&mut Containment>,
) -> Vec<Pid> {
    let mut oom = Vec::new();
    for &pid in leaders {
        let by_cgroup = containment
            .as_deref_mut()
            .and_then(|c| c.new_oom_kills(pid));
        let was = by_cgroup.unwrap_or_else(|| {
            let one = counted > 0;
            counted = counted.saturating_sub(1);
            one
        });
        if was {
            oom.push(pid);
        }
    }
    oom
}
