//! What the kernel's resource files say and what pmtr writes to them, as
//! pure functions on their text (SPEC 11.7): the cgroup files a job's
//! `limit`s become, `cgroup.events`, `memory.events` and `cpu.stat` of a
//! job's cgroup, and `/proc/PID/stat` where there is no cgroup. The shell
//! reads and writes the files; what they mean is decided here.

use crate::config::CgroupLimits;

/// `cpu.max`'s period, microseconds: the kernel's default.
const CPU_PERIOD_MICROS: u64 = 100_000;

/// One cgroup file a limit is written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitFile {
    /// The controller the file belongs to, as `cgroup.controllers` names it.
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
    /// The option as the operator wrote it: `limit memory`.
    pub option: &'static str,
}

/// The files `limits` set, in a fixed order. A limit not given is written
/// as the kernel's default, so that a limit taken out of the file is
/// lifted at the next start.
pub fn limit_files(limits: &CgroupLimits) -> Vec<LimitFile> {
    let max = |value: Option<u64>| value.map_or("max".to_string(), |v| v.to_string());
    let cpu_max = match limits.cpu_percent {
        Some(percent) => format!("{} {CPU_PERIOD_MICROS}", percent * CPU_PERIOD_MICROS / 100),
        None => format!("max {CPU_PERIOD_MICROS}"),
    };
    let file = |controller, file, value, option| LimitFile {
        controller,
        file,
        value,
        option,
    };
    vec![
        file(
            "memory",
            "memory.max",
            max(limits.memory_max),
            "limit memory",
        ),
        file(
            "memory",
            "memory.high",
            max(limits.memory_high),
            "limit memory-high",
        ),
        file("cpu", "cpu.max", cpu_max, "limit cpu"),
        file(
            "cpu",
            "cpu.weight",
            limits.cpu_weight.unwrap_or(100).to_string(),
            "limit cpu-weight",
        ),
        file("pids", "pids.max", max(limits.tasks), "limit tasks"),
    ]
}

/// The controllers `limits` need, each once, in the order of
/// [`limit_files`].
pub fn controllers_needed(limits: &CgroupLimits) -> Vec<(&'static str, &'static str)> {
    let given = [
        ("memory", "limit memory", limits.memory_max.is_some()),
        ("memory", "limit memory-high", limits.memory_high.is_some()),
        ("cpu", "limit cpu", limits.cpu_percent.is_some()),
        ("cpu", "limit cpu-weight", limits.cpu_weight.is_some()),
        ("pids", "limit tasks", limits.tasks.is_some()),
    ];
    given
        .into_iter()
        .filter(|(_, _, set)| *set)
        .map(|(controller, option, _)| (controller, option))
        .collect()
}

/// A `KEY VALUE` line of a flat-keyed cgroup file (`cgroup.events`,
/// `memory.events`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, value) = line.split_once(' ')?;
        (k == key).then(|| value.trim().parse().ok())?
    })
}

/// `cgroup.events`: does the cgroup still hold a process? `None`: the
/// text says nothing readable.
pub fn populated(events: &str) -> Option<bool> {
    keyed(events, "populated").map(|n| n != 0)
}

/// `memory.events`: how many processes the OOM killer killed in the
/// cgroup.
pub fn oom_kills(events: &str) -> Option<u64> {
    keyed(events, "oom_kill")
}

/// `cpu.stat`: CPU time used by the cgroup, microseconds.
pub fn cpu_usage_micros(stat: &str) -> Option<u64> {
    keyed(stat, "usage_usec")
}

/// The fields of `/proc/PID/stat` pmtr uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: i32,
    pub pgid: i32,
    /// User plus system time, clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks: with the pid, a process's
    /// identity (a reused pid has a later one).
    pub start_ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may hold spaces
/// and parentheses: the fields are counted from its last `)`.
pub fn proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Fields from 3 (state) on; field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let number = |field: usize| fields.get(field - 3)?.parse::<i64>().ok();
    let unsigned = |field: usize| number(field).and_then(|n| u64::try_from(n).ok());
    Some(ProcStat {
        ppid: i32::try_from(number(4)?).ok()?,
        pgid: i32::try_from(number(5)?).ok()?,
        cpu_ticks: unsigned(14)?.saturating_add(unsigned(15)?),
        start_ticks: unsigned(22)?,
        rss_pages: unsigned(24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_cgroup_files_and_absent_ones_the_defaults() {
        let limits = CgroupLimits {
            memory_max: Some(512 << 20),
            cpu_percent: Some(150),
            tasks: Some(64),
            ..CgroupLimits::default()
        };
        let files: Vec<(&str, String)> = limit_files(&limits)
            .into_iter()
            .map(|f| (f.file, f.value))
            .collect();
        let expected = [
            ("memory.max", "536870912"),
            ("memory.high", "max"),
            ("cpu.max", "150000 100000"),
            ("cpu.weight", "100"),
            ("pids.max", "64"),
        ];
        let expected: Vec<(&str, String)> =
            expected.iter().map(|(f, v)| (*f, v.to_string())).collect();
        assert_eq!(files, expected);
        assert_eq!(
            controllers_needed(&limits),
            [
                ("memory", "limit memory"),
                ("cpu", "limit cpu"),
                ("pids", "limit tasks")
            ]
        );
        assert!(controllers_needed(&CgroupLimits::default()).is_empty());
    }

    #[test]
    fn cgroup_files_are_read_by_key() {
        assert_eq!(populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(populated("frozen 0\n"), None);
        assert_eq!(populated(""), None);
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(events), Some(1));
        let stat = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n";
        assert_eq!(cpu_usage_micros(stat), Some(1_234_567));
    }

    #[test]
    fn proc_stat_counts_fields_from_the_last_parenthesis() {
        let text = "4242 (a b) c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    150 50 0 0 20 0 1 0 987654 10000000 321 18446744073709551615";
        let stat = proc_stat(text).expect("parsed");
        assert_eq!(
            stat,
            ProcStat {
                ppid: 1,
                pgid: 4242,
                cpu_ticks: 200,
                start_ticks: 987_654,
                rss_pages: 321,
            }
        );
        assert_eq!(proc_stat("4242 (x) S 1"), None);
        assert_eq!(proc_stat("garbage"), None);
    }
}
