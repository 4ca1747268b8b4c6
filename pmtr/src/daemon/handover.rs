//! The shell's side of a handover (SPEC 11.8): the state file beside the
//! control socket, rewritten when the jobs change; whether a saved process
//! is still the one pmtr started (pid and start time); and what pmtr
//! starts with — the state of a pmtr that died, or the one a reexec handed
//! over with its descriptors. What is adopted is decided in the core
//! (`Supervisor::adopt`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pmtr_core::config::Job;
use pmtr_core::proto::state::{State, StateJob};
use pmtr_core::resources;
use pmtr_core::supervise::event::Pid;
use pmtr_core::supervise::handover::{self as handover_core, Fingerprint, Liveness};
use pmtr_core::supervise::Supervisor;
use pmtr_core::time::Mono;
use std::sync::Arc;

use super::spawner::pipe_sinks;
use crate::sys::process;

/// What pmtr starts with.
pub enum Inherited {
    /// Nothing to take over.
    Nothing,
    /// The state file of a pmtr that is gone: its jobs' processes are not
    /// pmtr's children, and their pipes died with it.
    Crashed(State),
    /// The state a reexec handed over (the same process): the jobs are
    /// pmtr's children, their pipes and pmtr's sockets open.
    Exec(State),
}

/// Start time of process `pid` (clock ticks after boot) and its process
/// group, while it runs (a zombie has ended).
fn identity(pid: Pid) -> Option<(u64, Pid)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = text.rsplit_once(')')?.1.split_whitespace().next()?;
    if matches!(state, "Z" | "X") {
        return None;
    }
    resources::proc_stat(&text).map(|stat| (stat.start_ticks, stat.pgid))
}

/// How far before pmtr's own reading of the clock (`now_ticks`, taken
/// when the start returned) the kernel may have stamped a process's start:
/// under load, a second.
const START_SLACK_TICKS: u64 = 100;

/// Whether the kernel's start time of a process (`kernel`) is the one the
/// state file gives (`saved`): equal, or — for a start pmtr stamped itself
/// right after making the process — up to a second before it. Another
/// process would have to get the same pid within that second: after four
/// million others.
fn same_start(kernel: u64, saved: u64) -> bool {
    kernel <= saved && saved - kernel <= START_SLACK_TICKS
}

/// Now, as the kernel stamps a process's start: clock ticks since boot
/// (`CLOCK_BOOTTIME`, which counts suspended time as the kernel does).
pub fn now_ticks() -> Option<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let ticks = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    };
    let nanos = (now.tv_sec() as u64).saturating_mul(1_000_000_000) + now.tv_nsec() as u64;
    Some(nanos / (1_000_000_000 / ticks))
}

/// pmtr's own start time.
pub fn own_start() -> u64 {
    identity(std::process::id() as Pid).map_or(0, |(start, _)| start)
}

/// Whether the saved job's process still runs — the same process, by pid
/// and start time, still leading its group — and can be taken over as it
/// is. After a crash, output that went through pmtr's pipes, and sd_notify
/// to pmtr's socket, died with it: such a job is adopted to be restarted.
pub fn liveness(job: &StateJob, crashed: bool) -> Liveness {
    let Some(run) = &job.saved.run else {
        return Liveness::Gone;
    };
    // After an exec the jobs pmtr started are its children, whose pids no
    // one else can have: no need to look further.
    if !crashed && process::is_child(run.pid) {
        return Liveness::Alive;
    }
    match (identity(run.pid), job.process_start) {
        (Some((start, pgid)), Some(saved)) if same_start(start, saved) && pgid == run.pid => {}
        _ => return Liveness::Gone,
    }
    if crashed && job.captured {
        return Liveness::Restart("its output went to the pmtr that died and cannot be recovered");
    }
    if crashed && job.notify {
        return Liveness::Restart("it spoke sd_notify to the pmtr that died");
    }
    Liveness::Alive
}

/// Whether the pmtr that wrote `state` still runs (another pmtr on the
/// same socket directory, or this one).
pub fn owner_runs(state: &State) -> bool {
    identity(state.owner).is_some_and(|(start, _)| start == state.owner_start)
}

/// The state file, rewritten only when something changed.
pub struct StateFile {
    path: PathBuf,
    temporary: PathBuf,
    /// Hash of the bytes written last.
    written: Option<u64>,
    /// Start times of running jobs' processes, read once per process.
    starts: HashMap<Pid, u64>,
    /// When it was written last, and when it may be again.
    written_at: Option<Mono>,
    /// Each job's definition and its fingerprint, made once per definition:
    /// keyed by where the definition is, which the `Arc` kept here holds.
    fingerprints: HashMap<*const Job, (Arc<Job>, Fingerprint)>,
    own_start: u64,
}

impl StateFile {
    /// The state file beside the control socket `socket`.
    pub fn beside(socket: &Path) -> StateFile {
        let path = StateFile::path_beside(socket);
        let temporary = socket.with_file_name(".pmtr.state.tmp");
        StateFile {
            path,
            temporary,
            written: None,
            starts: HashMap::new(),
            fingerprints: HashMap::new(),
            written_at: None,
            own_start: own_start(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the state file of a pmtr with control socket `socket` is.
    pub fn path_beside(socket: &Path) -> PathBuf {
        socket.with_file_name("pmtr.state")
    }

    /// When the file of `jobs` jobs is next written after a change at
    /// `now`: writes are apart by 0.1 ms per job, 10 ms to 1 s (one of
    /// 10 000 jobs is 2 MB and takes about 15 ms), and the first after a
    /// quiet spell waits half that, so that what a change sets off — the
    /// start after a reload's stop — comes first and is in the same write
    /// (a write between them held the restart of a changed job back by
    /// 3 ms at 1 000 jobs).
    pub fn next_write(&self, now: Mono, jobs: usize) -> Mono {
        let interval = (jobs as u64 / 10).clamp(10, 1_000);
        let settled = now.plus_millis(interval / 2);
        match self.written_at {
            Some(written) => settled.max(written.plus_millis(interval)),
            None => settled,
        }
    }

    /// The file a pmtr before left; none if there is none.
    pub fn read(path: &Path) -> Result<Option<State>, String> {
        let bytes = match pmtr_common::files::open_regular(path) {
            Ok((file, metadata)) => {
                use std::io::Read;
                use std::os::unix::fs::MetadataExt;
                // A file someone else could have written would have pmtr
                // signal any process it names: only pmtr's own is read.
                let euid = nix::unistd::geteuid().as_raw();
                if (metadata.uid() != euid && metadata.uid() != 0) || metadata.mode() & 0o022 != 0 {
                    return Err(format!(
                        "{} is not pmtr's: it belongs to uid {} (mode {:o}); pmtr reads only its own, writable by no one else",
                        path.display(),
                        metadata.uid(),
                        metadata.mode() & 0o7777
                    ));
                }
                let most = pmtr_core::proto::state::MAX_BYTES as u64 + 1;
                let mut bytes = Vec::with_capacity(metadata.len().min(most) as usize);
                file.take(most)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("unable to read {}: {e}", path.display()))?;
                bytes
            }
            Err(pmtr_common::files::NotOpened::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(pmtr_common::files::NotOpened::Io(e)) => {
                return Err(format!("unable to open {}: {e}", path.display()))
            }
            Err(pmtr_common::files::NotOpened::NotRegular) => {
                return Err(format!("{} is not a regular file", path.display()))
            }
        };
        State::decode(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Process `pid` was just started: its start time is stamped now, not
    /// read from `/proc` later (10 000 reads are 150 ms).
    pub fn started(&mut self, pid: Pid) {
        if let Some(ticks) = now_ticks() {
            self.starts.insert(pid, ticks);
        }
    }

    /// Knows the start times `state` gives, of processes taken over: they
    /// are not read again.
    pub fn remember_starts(&mut self, state: &State) {
        for job in &state.jobs {
            if let (Some(run), Some(start)) = (&job.saved.run, job.process_start) {
                self.starts.insert(run.pid, start);
            }
        }
    }

    /// The state of `supervisor`'s jobs now.
    pub fn snapshot(&mut self, supervisor: &Supervisor) -> State {
        let known = std::mem::take(&mut self.fingerprints);
        let mut fingerprints = HashMap::with_capacity(known.len());
        let saved = supervisor.saved_jobs(&mut |def: &Arc<Job>| {
            let fingerprint = match known.get(&Arc::as_ptr(def)) {
                Some((_, fingerprint)) => *fingerprint,
                None => handover_core::fingerprint(def),
            };
            fingerprints.insert(Arc::as_ptr(def), (def.clone(), fingerprint));
            fingerprint
        });
        self.fingerprints = fingerprints;
        let mut starts = HashMap::with_capacity(self.starts.len());
        let jobs = saved
            .into_iter()
            .zip(supervisor.jobs())
            .map(|(saved, job)| {
                let process_start = saved.run.as_ref().and_then(|run| {
                    let known = self.starts.get(&run.pid).copied();
                    let start = known.or_else(|| identity(run.pid).map(|(start, _)| start))?;
                    starts.insert(run.pid, start);
                    Some(start)
                });
                StateJob {
                    process_start,
                    captured: !pipe_sinks(&job.def).is_empty(),
                    notify: job.def.uses_notify(),
                    saved,
                }
            })
            .collect();
        self.starts = starts;
        State::new(std::process::id() as Pid, self.own_start, jobs)
    }

    /// Writes `state` if it differs from what was written last.
    pub fn write(&mut self, state: &State, now: Mono) -> Result<(), String> {
        let bytes = state.encode();
        let hash = crate::config_file::content_hash(&[&bytes]);
        if self.written == Some(hash) {
            return Ok(());
        }
        pmtr_common::files::replace(&self.path, &self.temporary, &bytes).map_err(|e| {
            format!(
                "unable to write the state file {}: {e}",
                self.path.display()
            )
        })?;
        self.written = Some(hash);
        self.written_at = Some(now);
        Ok(())
    }

    /// At a clean exit: nothing is left to take over.
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The path of the binary now at pmtr's path: `/proc/self/exe` names the
/// file pmtr was started from, "(deleted)" once a package replaced it.
pub fn binary_path() -> Result<PathBuf, String> {
    let link = std::fs::read_link("/proc/self/exe")
        .map_err(|e| format!("unable to read /proc/self/exe: {e}"))?;
    let text = link.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => link,
    })
}

/// pmtr's command line for the next pmtr: its own, with `--handover FILE`
/// in place of any it was given.
pub fn next_args(state: &Path) -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    let mut skip = false;
    for arg in std::env::args_os() {
        if std::mem::take(&mut skip) {
            continue;
        }
        if arg == "--handover" {
            skip = true;
            continue;
        }
        if arg.to_string_lossy().starts_with("--handover=") {
            continue;
        }
        args.push(arg);
    }
    args.push("--handover".into());
    args.push(state.as_os_str().to_owned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_matches_exactly_or_up_to_a_second_before_pmtr_stamped_it() {
        assert!(same_start(5_000, 5_000));
        assert!(same_start(4_990, 5_000), "stamped 100 ms after the fork");
        assert!(same_start(4_900, 5_000));
        assert!(!same_start(4_899, 5_000), "more than a second before");
        assert!(
            !same_start(5_001, 5_000),
            "a later process with the same pid"
        );
    }

    #[test]
    fn now_in_ticks_is_past_pmtrs_own_start() {
        let now = now_ticks().expect("CLOCK_BOOTTIME");
        assert!(now >= own_start() && own_start() > 0);
    }
}
