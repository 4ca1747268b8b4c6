//! The supervisor as a state machine, driven with a fake clock: no
//! processes, no sleeps. Each test is a row of the behaviour contract.

mod critical;
mod files;
mod handover;
mod health;
mod instances;
mod matrix;
mod policies;
mod requests;

use super::event::*;
use super::job::{JobState, Phase};
use super::Supervisor;
use crate::config::{parse, Config};
use crate::time::Mono;
use std::collections::HashSet;

pub(super) fn config(text: &str) -> Config {
    parse(text.as_bytes()).unwrap()
}

pub(super) fn jobs(names: &[&str]) -> Config {
    let text: String = names
        .iter()
        .map(|n| format!("job {{\n name {n}\n cmd /bin/sleep 100\n}}\n"))
        .collect();
    config(&text)
}

pub(super) fn read(text: &str, hash: u64) -> Event {
    Event::ConfigRead {
        hash,
        forced: false,
        result: Ok(Box::new(config(text))),
    }
}

pub(super) fn job(name: &str, cmd: &str, extra: &str) -> String {
    format!("job {{\n name {name}\n cmd {cmd}\n {extra}\n}}\n")
}

pub(super) fn started(run: &mut Run, text: &str) {
    run.event(Event::Start, at(0));
    let _ = text;
}

pub(super) fn at(secs: u64) -> Mono {
    Mono::from_secs(secs)
}

const KILLED: ExitStatus = ExitStatus::Signal {
    number: 9,
    name: "SIGKILL",
};
pub(super) const TERMINATED: ExitStatus = ExitStatus::Signal {
    number: 15,
    name: "SIGTERM",
};

/// A supervisor with a script of events and a fake shell: it forks on
/// `Spawn` (feeding `Spawned`, pids from 101) and answers `Probe` from
/// its table of groups that outlive their leader. Signals do nothing:
/// each test says when a process ends. Returns every action.
pub(super) struct Run {
    pub(super) sup: Supervisor,
    next_pid: Pid,
    /// Process groups with members left after their leader's exit.
    pub(super) leftovers: HashSet<Pid>,
}

impl Run {
    pub(super) fn new(config: Config) -> Run {
        Run {
            sup: Supervisor::new(&config, 0),
            next_pid: 100,
            leftovers: HashSet::new(),
        }
    }

    pub(super) fn event(&mut self, event: Event, now: Mono) -> Vec<Action> {
        let mut all = Vec::new();
        let mut queue = std::collections::VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            for action in self.sup.handle(event, now) {
                match action {
                    Action::Spawn { job, .. } => {
                        self.next_pid += 1;
                        let pid = self.next_pid;
                        queue.push_back(Event::Spawned { job, pid });
                    }
                    Action::Probe { pgid } => queue.push_back(Event::Probed {
                        pgid,
                        alive: self.leftovers.contains(&pgid),
                    }),
                    _ => {}
                }
                all.push(action);
            }
            self.sup.assert_roster_consistent();
        }
        all
    }

    /// The last member of group `pgid` left behind (reparented to pmtr)
    /// ends.
    pub(super) fn leftovers_end(&mut self, pgid: Pid, now: Mono) -> Vec<Action> {
        self.leftovers.remove(&pgid);
        let status = TERMINATED;
        self.event(Event::Reaped { pid: 9999, status }, now)
    }

    pub(super) fn phase(&self, name: &str) -> Phase {
        self.state(name).phase
    }

    pub(super) fn pid(&self, name: &str) -> Option<Pid> {
        self.sup
            .jobs()
            .iter()
            .find(|j| j.def.name == name)
            .and_then(|j| j.leader())
    }

    pub(super) fn state(&self, name: &str) -> &JobState {
        self.sup.jobs().iter().find(|j| j.def.name == name).unwrap()
    }

    /// The leader of job `name` exits (its group empties too, unless
    /// `leftovers` holds it).
    pub(super) fn exit(&mut self, name: &str, status: ExitStatus, now: Mono) -> Vec<Action> {
        let pid = self.pid(name).unwrap();
        self.event(Event::Reaped { pid, status }, now)
    }
}

pub(super) fn spawned_names(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { def, .. } => Some(def.name.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn logs(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

pub(super) fn signals(actions: &[Action]) -> Vec<(Pid, StopSignal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal { pgid, signal } => Some((*pgid, *signal)),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_happens_before_start() {
    let mut run = Run::new(jobs(&["a"]));
    assert_eq!(run.sup.next_deadline(), None);
}

#[test]
fn start_launches_jobs_in_order_then_file_order() {
    let mut run = Run::new(config(
        "job {\n name c\n cmd /bin/true\n order 2\n}\n\
         job {\n name a\n cmd /bin/true\n}\n\
         job {\n name b\n cmd /bin/true\n order -1\n}\n\
         job {\n name d\n cmd /bin/true\n}\n",
    ));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["b", "a", "d", "c"]);
    let log = logs(&actions);
    assert_eq!(log[0], "pmtr: starting");
    assert_eq!(log[1], "managing 4 jobs");
    assert!(log.contains(&"started job b [101]"));
    assert_eq!(run.sup.next_deadline(), None, "nothing due while all run");
}

#[test]
fn disabled_jobs_do_not_start() {
    let mut run = Run::new(config(
        "job {\n name a\n cmd /bin/true\n disable\n}\njob {\n name b\n cmd /bin/true\n}",
    ));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["b"]);
    assert_eq!(run.phase("a"), Phase::Disabled);
}

#[test]
fn wait_gates_later_jobs_until_it_exits_without_blocking() {
    let mut run = Run::new(config(
        "job {\n name setup\n cmd /bin/true\n wait\n once\n}\n\
         job {\n name web\n cmd /bin/true\n}\n",
    ));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["setup"]);
    assert!(logs(&actions).contains(&"pausing for job setup to finish"));
    assert_eq!(
        run.sup.next_deadline(),
        None,
        "a gated job is not a deadline"
    );
    // Other events are handled meanwhile: the loop never blocks on `wait`.
    assert!(run.event(Event::Timer, at(5)).is_empty());
    let actions = run.exit("setup", ExitStatus::Code(0), at(30));
    assert_eq!(spawned_names(&actions), ["web"]);
    assert_eq!(run.phase("setup"), Phase::Done("once"));
}

#[test]
fn a_disabled_wait_job_does_not_gate() {
    let mut run = Run::new(config(
        "job {\n name setup\n cmd /bin/true\n wait\n disable\n}\njob {\n name web\n cmd /bin/true\n}",
    ));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["web"]);
}

#[test]
fn a_wait_job_that_cannot_start_opens_its_gate() {
    let mut run = Run::new(config(
        "job {\n name setup\n cmd /bin/true\n wait\n}\njob {\n name web\n cmd /bin/true\n}",
    ));
    run.sup.handle(Event::Start, at(0));
    let setup = run.state("setup").id;
    let actions = run.event(
        Event::SpawnFailed {
            job: setup,
            failure: SpawnFailure::Job("unknown user x".into()),
        },
        at(0),
    );
    assert_eq!(spawned_names(&actions), ["web"]);
    assert!(logs(&actions).contains(&"unable to start job setup: unknown user x"));
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(10)),
        "retried under the guard"
    );
}

/// SPEC 4.2: the restart table, through the whole machine.
#[test]
fn restart_after_a_long_run_is_immediate() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    let actions = run.exit("a", ExitStatus::Code(0), at(10));
    assert_eq!(
        logs(&actions)[0],
        "job a [101] exited after 10 sec: exit status 0"
    );
    assert_eq!(spawned_names(&actions), ["a"]);
    assert_eq!(run.pid("a"), Some(102));
    assert_eq!(run.state("a").restarts(), 1);
}

#[test]
fn restart_after_a_short_run_waits_ten_seconds_from_the_exit() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    let actions = run.exit("a", ExitStatus::Code(1), Mono::from_millis(9_999));
    assert!(spawned_names(&actions).is_empty());
    assert_eq!(run.sup.next_deadline(), Some(Mono::from_millis(19_999)));
    assert!(run
        .event(Event::Timer, Mono::from_millis(19_998))
        .is_empty());
    let actions = run.event(Event::Timer, Mono::from_millis(19_999));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn a_job_that_exits_at_once_forever_starts_once_per_ten_seconds() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    let mut starts = vec![0];
    let mut now = at(0);
    for _ in 0..5 {
        run.exit("a", ExitStatus::Code(1), now);
        now = run.sup.next_deadline().unwrap();
        let actions = run.event(Event::Timer, now);
        assert_eq!(spawned_names(&actions), ["a"]);
        starts.push(now.millis() / 1000);
    }
    assert_eq!(starts, [0, 10, 20, 30, 40, 50]);
}

#[test]
fn exit_status_33_and_once_stay_down() {
    let mut run = Run::new(config(
        "job {\n name a\n cmd /bin/true\n}\njob {\n name b\n cmd /bin/true\n once\n}",
    ));
    run.event(Event::Start, at(0));
    let actions = run.exit("a", ExitStatus::Code(33), at(50));
    assert!(logs(&actions).contains(&"job a will not be restarted (exit status 33)"));
    let actions = run.exit("b", KILLED, at(50));
    assert!(logs(&actions).contains(&"job b [102] exited after 50 sec: signal 9 (SIGKILL)"));
    assert_eq!(run.phase("a"), Phase::Done("exit status 33"));
    assert_eq!(run.phase("b"), Phase::Done("once"));
    assert_eq!(run.sup.next_deadline(), None);
}

#[test]
fn a_failed_exec_is_logged_as_such_and_counts_as_an_immediate_exit() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    let pid = run.pid("a").unwrap();
    let actions = run.event(
        Event::SetupFailed {
            pid,
            step: SetupStep::Exec,
            reason: "No such file or directory".into(),
        },
        at(0),
    );
    assert_eq!(
        logs(&actions),
        ["job a [101]: can't exec /bin/sleep: No such file or directory"]
    );
    let actions = run.exit("a", ExitStatus::Code(127), at(0));
    assert!(
        logs(&actions).iter().all(|l| !l.contains("exited after")),
        "{actions:?}"
    );
    assert_eq!(run.sup.next_deadline(), Some(at(10)));
    assert!(run.state("a").start_failed);
}

#[test]
fn a_transient_spawn_failure_is_retried_soon() {
    let mut run = Run::new(jobs(&["a"]));
    run.sup.handle(Event::Start, at(0));
    let id = run.state("a").id;
    let actions = run.event(
        Event::SpawnFailed {
            job: id,
            failure: SpawnFailure::Transient("fork: Resource temporarily unavailable".into()),
        },
        at(0),
    );
    assert_eq!(
        logs(&actions),
        ["unable to start job a: fork: Resource temporarily unavailable; retrying in 1 sec"]
    );
    assert_eq!(run.sup.next_deadline(), Some(at(1)));
    let actions = run.event(Event::Timer, at(1));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn a_job_is_not_restarted_until_its_group_is_gone() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    // A grandchild is left in the group: it is asked to leave.
    run.leftovers.insert(101);
    let actions = run.exit("a", ExitStatus::Code(0), at(20));
    assert!(actions.contains(&Action::Probe { pgid: 101 }));
    assert!(spawned_names(&actions).is_empty());
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
    assert_eq!(
        logs(&actions),
        [
            "job a [101] exited after 20 sec: exit status 0",
            "job a [101] left processes in its group: sending SIGTERM to them"
        ]
    );
    assert_eq!(run.sup.next_deadline(), Some(at(30)));
    // The grandchild (reparented to pmtr) dies: pmtr looks again, finds
    // the group empty and restarts the job.
    let actions = run.leftovers_end(101, at(21));
    assert!(actions.contains(&Action::Probe { pgid: 101 }));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn leftovers_that_ignore_sigterm_get_sigkill_after_ten_seconds() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    run.leftovers.insert(101);
    run.exit("a", ExitStatus::Code(0), at(20));
    let actions = run.event(Event::Timer, at(30));
    assert_eq!(signals(&actions), [(101, StopSignal::Kill)]);
    assert_eq!(run.sup.next_deadline(), Some(Mono::from_millis(31_000)));
    // Still there a second later: probed again a second after that.
    let actions = run.event(Event::Timer, Mono::from_millis(31_000));
    assert_eq!(actions, [Action::Probe { pgid: 101 }]);
    assert_eq!(run.sup.next_deadline(), Some(Mono::from_millis(32_000)));
    // Killed processes that were not pmtr's children: found gone by probe.
    run.leftovers.remove(&101);
    let actions = run.event(Event::Timer, Mono::from_millis(32_000));
    assert_eq!(actions.first(), Some(&Action::Probe { pgid: 101 }));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn shutdown_stops_every_job_at_once_and_exits_when_all_are_gone() {
    let mut run = Run::new(jobs(&["a", "b"]));
    run.event(Event::Start, at(0));
    let actions = run.event(Event::Shutdown { signal: 15 }, at(5));
    assert_eq!(logs(&actions)[0], "pmtr: exiting on signal 15");
    assert_eq!(
        signals(&actions),
        [(101, StopSignal::Term), (102, StopSignal::Term)]
    );
    assert!(logs(&actions).contains(&"sending SIGTERM to job a [101]"));
    let actions = run.exit("a", TERMINATED, at(5));
    assert!(
        spawned_names(&actions).is_empty(),
        "no restart during shutdown"
    );
    assert!(!actions.contains(&Action::Exit { status: 0 }));
    let actions = run.exit("b", TERMINATED, at(6));
    assert_eq!(actions.last(), Some(&Action::Exit { status: 0 }));
    assert_eq!(run.sup.next_deadline(), None);
}

/// Thousands of jobs: a shutdown stops them a batch per turn (the next
/// batch is due at once), every one in the end, and a second signal
/// sends the rest of the stops and SIGKILL at once.
#[test]
fn a_large_shutdown_stops_a_batch_per_turn() {
    let names: Vec<String> = (0..2500).map(|i| format!("j{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut run = Run::new(jobs(&refs));
    run.event(Event::Start, at(0));
    let first = run.event(Event::Shutdown { signal: 15 }, at(5));
    assert_eq!(signals(&first).len(), 1000);
    assert!(run.sup.next_deadline().is_some_and(|t| t <= at(5)));
    let second = run.event(Event::Timer, at(5));
    assert_eq!(signals(&second).len(), 1000);
    let third = run.event(Event::Timer, at(5));
    assert_eq!(signals(&third).len(), 500);
    let all: std::collections::HashSet<Pid> = [first, second, third]
        .iter()
        .flat_map(|actions| signals(actions))
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(all.len(), 2500, "each job stopped once");
    assert!(run.sup.next_deadline().is_some_and(|t| t > at(5)));

    let mut run = Run::new(jobs(&refs));
    run.event(Event::Start, at(0));
    run.event(Event::Shutdown { signal: 15 }, at(5));
    let forced = run.event(Event::Shutdown { signal: 15 }, at(6));
    let terms = signals(&forced)
        .iter()
        .filter(|(_, s)| *s == StopSignal::Term)
        .count();
    let kills = signals(&forced)
        .iter()
        .filter(|(_, s)| *s == StopSignal::Kill)
        .count();
    assert_eq!((terms, kills), (1500, 2500));
}

#[test]
fn shutdown_escalates_to_sigkill_after_ten_seconds() {
    let mut run = Run::new(jobs(&["stubborn"]));
    run.event(Event::Start, at(0));
    run.event(Event::Shutdown { signal: 2 }, at(1));
    assert_eq!(run.sup.next_deadline(), Some(at(11)));
    let actions = run.event(Event::Timer, at(11));
    assert_eq!(logs(&actions), ["sending SIGKILL to job stubborn [101]"]);
    assert_eq!(signals(&actions), [(101, StopSignal::Kill)]);
    let actions = run.exit("stubborn", KILLED, at(11));
    assert_eq!(actions.last(), Some(&Action::Exit { status: 0 }));
}

#[test]
fn a_second_signal_during_shutdown_kills_at_once() {
    let mut run = Run::new(jobs(&["a", "b"]));
    run.event(Event::Start, at(0));
    run.event(Event::Shutdown { signal: 15 }, at(1));
    run.exit("a", TERMINATED, at(1));
    let actions = run.event(Event::Shutdown { signal: 2 }, at(2));
    assert_eq!(signals(&actions), [(102, StopSignal::Kill)]);
    assert!(
        run.event(Event::Shutdown { signal: 2 }, at(2)).is_empty(),
        "only once"
    );
}

#[test]
fn shutdown_with_nothing_running_exits_at_once() {
    let mut run = Run::new(config("job {\n name a\n cmd /bin/true\n disable\n}"));
    run.event(Event::Start, at(0));
    let actions = run.event(Event::Shutdown { signal: 15 }, at(0));
    assert_eq!(actions.last(), Some(&Action::Exit { status: 0 }));
}

#[test]
fn shutdown_waits_for_leftovers_of_a_job_that_already_exited() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    run.leftovers.insert(101);
    run.exit("a", ExitStatus::Code(0), at(20));
    let actions = run.event(Event::Shutdown { signal: 15 }, at(21));
    assert!(!actions.contains(&Action::Exit { status: 0 }));
    let actions = run.leftovers_end(101, at(22));
    assert_eq!(actions.last(), Some(&Action::Exit { status: 0 }));
}

#[test]
fn orphans_are_reaped_quietly() {
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(0));
    let actions = run.event(
        Event::Reaped {
            pid: 999,
            status: ExitStatus::Code(0),
        },
        at(1),
    );
    assert_eq!(
        actions,
        [Action::Log {
            level: Level::Debug,
            message: "reaped orphan [999]: exit status 0".into()
        }]
    );
    assert_eq!(run.pid("a"), Some(101));
}

#[test]
fn five_hundred_jobs_dying_at_once_all_come_back() {
    let names: Vec<String> = (0..500).map(|i| format!("j{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut run = Run::new(jobs(&refs));
    run.event(Event::Start, at(0));
    let mut respawned = 0;
    for name in &names {
        let actions = run.exit(name, KILLED, at(60));
        respawned += spawned_names(&actions).len();
    }
    assert_eq!(respawned, 500);
    let pids: std::collections::HashSet<Pid> = names.iter().filter_map(|n| run.pid(n)).collect();
    assert_eq!(
        pids.len(),
        500,
        "one instance each, none lost, none doubled"
    );
}

/// One wake-up's reaps come as one batch: each job is found by its
/// group, every one comes back once, and what follows (the starts) is
/// decided once for the batch.
#[test]
fn a_batch_of_reaps_brings_every_job_back_once() {
    let names: Vec<String> = (0..500).map(|i| format!("j{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut run = Run::new(jobs(&refs));
    run.event(Event::Start, at(0));
    let first: Vec<Pid> = names.iter().map(|n| run.pid(n).unwrap()).collect();
    let reaps = first
        .iter()
        .map(|&pid| Event::Reaped {
            pid,
            status: KILLED,
        })
        .collect();
    let actions = run.sup.handle_all(reaps, at(60));
    let spawns = actions
        .iter()
        .filter(|a| matches!(a, Action::Spawn { .. }))
        .count();
    // The groups are probed (empty), then the jobs start: here the probes'
    // answers come back one by one.
    let mut respawned = spawns;
    for action in actions {
        if let Action::Probe { pgid } = action {
            let answer = run.event(Event::Probed { pgid, alive: false }, at(60));
            respawned += spawned_names(&answer).len();
        }
    }
    assert_eq!(respawned, 500);
    let again: std::collections::HashSet<Pid> = names.iter().filter_map(|n| run.pid(n)).collect();
    assert_eq!(again.len(), 500, "one run each, none lost, none doubled");
    assert!(first.iter().all(|pid| !again.contains(pid)));
    // A pid reaped again (an old leader's) is nobody's now.
    let stale = run.event(
        Event::Reaped {
            pid: first[0],
            status: KILLED,
        },
        at(61),
    );
    assert!(spawned_names(&stale).is_empty());
    assert_eq!(run.pid("j0").map(|pid| again.contains(&pid)), Some(true));
}

#[test]
fn the_wall_clock_does_not_exist_here() {
    // Every time is a Mono handed in by the shell; a deadline only depends
    // on the monotonic times of events, so a wall-clock jump cannot move it.
    let mut run = Run::new(jobs(&["a"]));
    run.event(Event::Start, at(1000));
    run.exit("a", ExitStatus::Code(1), at(1001));
    assert_eq!(run.sup.next_deadline(), Some(at(1011)));
}
