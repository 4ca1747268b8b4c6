//! What running jobs use (SPEC 11.7): memory and CPU time for `status`,
//! `--json` and metrics — from each job's cgroup where pmtr contains it,
//! else summed over its process group from `/proc` — and OOM kills, which
//! the kernel counts per cgroup (`memory.events`) or for the whole machine
//! (`/proc/vmstat`).

use std::collections::HashMap;

use pmtr_core::resources::{self, ProcStat};
use pmtr_core::status::JobStatus;
use pmtr_core::supervise::event::Pid;

use super::cgroups::Containment;

/// Fills in the memory and CPU time of every running job of `jobs`. `/proc`
/// is read (once for all) only for what no cgroup says.
pub fn fill(jobs: &mut [JobStatus], containment: Option<&Containment>) {
    let mut groups: Option<HashMap<Pid, GroupUsage>> = None;
    for job in jobs.iter_mut() {
        let Some(pid) = job.pid else { continue };
        let (memory, cpu_micros) = containment
            .and_then(|c| c.usage(pid))
            .unwrap_or((None, None));
        job.memory_bytes = memory;
        job.cpu_millis = cpu_micros.map(|micros| micros / 1000);
        if memory.is_none() || cpu_micros.is_none() {
            let groups = groups.get_or_insert_with(process_groups);
            let group = groups.get(&pid).copied().unwrap_or_default();
            job.memory_bytes = job.memory_bytes.or(Some(group.memory_bytes));
            job.cpu_millis = job.cpu_millis.or(Some(group.cpu_millis));
        }
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

    /// Whether the OOM killer killed the job led by `pgid`, which SIGKILL
    /// just ended: its cgroup counted a kill since the last look, or,
    /// without one, the machine did (the kernel does not say whom).
    pub fn killed(&mut self, pgid: Pid, containment: Option<&mut Containment>) -> bool {
        let machine = machine_oom_kills();
        let before = std::mem::replace(&mut self.machine, machine);
        if let Some(new) = containment.and_then(|c| c.new_oom_kills(pgid)) {
            return new;
        }
        matches!((before, machine), (Some(before), Some(now)) if now > before)
    }
}
