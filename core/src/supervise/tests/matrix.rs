//! The transition table as a matrix (STYLE habit 5): one job brought into
//! each phase, then every event that concerns a job, and the phase it is
//! in afterwards. A cell that says the phase is unchanged is an event the
//! phase ignores on purpose; the handlers name those phases explicitly.

use super::*;

const JOB: &str = "job {\n name a\n cmd /bin/sleep 100\n}\n";
const GIVES_UP: &str = "job {\n name a\n cmd /bin/sleep 100\n give up after 1\n}\n";
const CHANGED: &str = "job {\n name a\n cmd /bin/sleep 200\n}\n";

/// The phases, in the table's row order.
const PHASES: [&str; 8] = [
    "waiting", "starting", "running", "stopping", "draining", "done", "failed", "disabled",
];

/// The events, in the table's column order.
const EVENTS: [&str; 16] = [
    "spawned",
    "spawn failed (system)",
    "spawn failed (job)",
    "setup failed",
    "reaped (pid 101)",
    "probed: alive",
    "probed: gone",
    "timer (all due)",
    "shutdown",
    "enable",
    "disable",
    "restart",
    "reload: changed",
    "reload: deleted",
    "checked",
    "notified",
];

/// Where each phase goes on each event: `PHASES` down, `EVENTS` across.
#[rustfmt::skip]
const TABLE: [[&str; 16]; 8] = [
    // spawned    sys-fail    job-fail    setup       reaped      alive       gone        timer       shutdown    enable      disable     restart     changed     deleted       checked     notified
    ["waiting",  "waiting",  "waiting",  "waiting",  "waiting",  "waiting",  "waiting",  "running",  "waiting",  "waiting",  "disabled", "running",  "running",  "gone", "waiting", "waiting"],
    ["running",  "waiting",  "waiting",  "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting", "starting"],
    ["running",  "running",  "running",  "running",  "waiting",  "running",  "running",  "running",  "stopping", "running",  "stopping", "stopping", "stopping", "stopping", "running", "running"],
    ["stopping", "stopping", "stopping", "stopping", "running",  "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping", "stopping"],
    ["draining", "draining", "draining", "draining", "draining", "draining", "waiting",  "draining", "draining", "draining", "draining", "draining", "draining", "draining", "draining", "draining"],
    ["done",     "done",     "done",     "done",     "done",     "done",     "done",     "done",     "done",     "done",     "disabled", "running",  "running",  "gone", "done", "done"],
    ["failed",   "failed",   "failed",   "failed",   "failed",   "failed",   "failed",   "failed",   "failed",   "running",  "disabled", "running",  "running",  "gone", "failed", "failed"],
    ["disabled", "disabled", "disabled", "disabled", "disabled", "disabled", "disabled", "disabled", "disabled", "running",  "disabled", "disabled", "running",  "gone", "disabled", "disabled"],
];

fn kind(run: &Run) -> &'static str {
    let Some(job) = run.sup.jobs().iter().find(|j| j.def.name == "a") else {
        return "gone";
    };
    match job.phase {
        Phase::Waiting { .. } => "waiting",
        Phase::Starting { .. } => "starting",
        Phase::Running(_) => "running",
        Phase::Stopping { .. } => "stopping",
        Phase::Draining { .. } => "draining",
        Phase::Done(_) => "done",
        Phase::Failed => "failed",
        Phase::Disabled => "disabled",
    }
}

/// Job `a` in `phase`, reached through events between 0 s and 1 s; its
/// first process (if it had one) was pid 101.
fn in_phase(phase: &str) -> Run {
    let text = if phase == "failed" { GIVES_UP } else { JOB };
    let mut run = Run::new(config(text));
    if phase == "starting" {
        // The shell has not forked yet: no `Spawned` is fed back.
        run.sup.handle(Event::Start, at(0));
        return run;
    }
    run.event(Event::Start, at(0));
    match phase {
        "waiting" => drop(run.exit("a", ExitStatus::Code(1), at(1))),
        "running" => {}
        "stopping" => drop(run.event(restart("a"), at(1))),
        "draining" => {
            run.leftovers.insert(101);
            run.exit("a", ExitStatus::Code(0), at(1));
        }
        "done" => drop(run.exit("a", ExitStatus::Code(33), at(1))),
        "failed" => drop(run.exit("a", ExitStatus::Code(1), at(1))),
        "disabled" => {
            run.event(enable("a", false), at(1));
            run.exit("a", TERMINATED, at(1));
        }
        _ => unreachable!("no phase {phase}"),
    }
    run
}

fn restart(name: &str) -> Event {
    Event::Restart {
        name: name.into(),
        reply: None,
    }
}

fn enable(name: &str, enabled: bool) -> Event {
    Event::SetEnabled {
        name: name.into(),
        enabled,
        reply: None,
    }
}

fn reload(text: &str) -> Event {
    Event::ConfigRead {
        hash: 7,
        forced: false,
        result: Ok(Box::new(config(text))),
    }
}

/// Event `name` for job `a` of `run`, and when it comes.
fn event(run: &Run, name: &str) -> (Event, Mono) {
    let job = run.state("a").id;
    let event = match name {
        "spawned" => Event::Spawned { job, pid: 500 },
        "spawn failed (system)" => Event::SpawnFailed {
            job,
            failure: SpawnFailure::Transient("fork: EAGAIN".into()),
        },
        "spawn failed (job)" => Event::SpawnFailed {
            job,
            failure: SpawnFailure::Job("unknown user".into()),
        },
        "setup failed" => Event::SetupFailed {
            pid: 101,
            step: SetupStep::Exec,
            reason: "No such file or directory".into(),
        },
        "reaped (pid 101)" => Event::Reaped {
            pid: 101,
            status: ExitStatus::Code(0),
        },
        "probed: alive" => Event::Probed {
            pgid: 101,
            alive: true,
        },
        "probed: gone" => Event::Probed {
            pgid: 101,
            alive: false,
        },
        "timer (all due)" => return (Event::Timer, at(1000)),
        "shutdown" => Event::Shutdown { signal: 15 },
        "enable" => enable("a", true),
        "disable" => enable("a", false),
        "restart" => restart("a"),
        "reload: changed" => reload(CHANGED),
        "reload: deleted" => reload(""),
        "checked" => Event::Checked {
            job,
            pid: 101,
            ok: true,
            output: None,
        },
        "notified" => Event::Notified {
            pgid: 101,
            notice: crate::proto::notify::Notice {
                ready: true,
                watchdog: true,
                stopping: true,
                status: Some("up".into()),
            },
        },
        _ => unreachable!("no event {name}"),
    };
    (event, at(5))
}

#[test]
fn every_phase_meets_every_event() {
    let mut wrong = Vec::new();
    for (row, phase) in PHASES.iter().enumerate() {
        assert_eq!(kind(&in_phase(phase)), *phase, "the setup of {phase}");
        for (column, name) in EVENTS.iter().enumerate() {
            let mut run = in_phase(phase);
            let (event, now) = event(&run, name);
            run.event(event, now);
            let expected = TABLE[row][column];
            if kind(&run) != expected {
                wrong.push(format!(
                    "{phase} + {name}: {} (the table says {expected})",
                    kind(&run)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// A stop asked for while the fork is on its way is carried out when it
/// lands: pmtr never exits, forgets or keeps a job the request was about.
#[test]
fn a_stop_during_a_start_is_carried_out_when_the_fork_lands() {
    for (request, after_spawn, after_exit) in [
        (Event::Shutdown { signal: 15 }, "stopping", "done"),
        (enable("a", false), "stopping", "disabled"),
        (reload(CHANGED), "stopping", "running"),
        (reload(""), "stopping", "gone"),
    ] {
        let mut run = in_phase("starting");
        let id = run.state("a").id;
        let actions = run.event(request.clone(), at(0));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Exit { .. })),
            "{request:?}: the fork is in flight"
        );
        let actions = run.event(Event::Spawned { job: id, pid: 101 }, at(0));
        assert_eq!(signals(&actions), [(101, StopSignal::Term)], "{request:?}");
        assert_eq!(kind(&run), after_spawn, "{request:?}");
        run.exit("a", TERMINATED, at(1));
        assert_eq!(kind(&run), after_exit, "{request:?}");
    }
}
