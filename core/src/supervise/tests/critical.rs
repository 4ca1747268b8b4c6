//! SPEC 11.5 `critical`: the end of the job a container is for ends pmtr,
//! with that job's status, after the normal shutdown of every other job.

use super::*;
use crate::supervise::exit_status_of;

const OTHER: &str = "job {\n name side\n cmd /bin/side\n}\n";

fn exits(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Exit { status } => Some(*status),
            _ => None,
        })
        .collect()
}

#[test]
fn a_critical_job_that_ends_ends_pmtr_with_its_status() {
    let text = format!("job {{\n name main\n cmd /bin/main\n critical\n once\n}}\n{OTHER}");
    let mut run = Run::new(config(&text));
    run.event(Event::Start, at(0));
    let actions = run.exit("main", ExitStatus::Code(3), at(5));
    assert!(
        logs(&actions).contains(
            &"critical job main ended (exit status 3): stopping every job, then exiting with status 3"
        ),
        "{actions:?}"
    );
    assert_eq!(
        signals(&actions),
        [(102, StopSignal::Term)],
        "side is stopped"
    );
    assert!(exits(&actions).is_empty(), "not before side is gone");
    let actions = run.exit("side", TERMINATED, at(5));
    assert_eq!(exits(&actions), [3]);
}

#[test]
fn killed_by_a_signal_it_is_128_plus_the_signal() {
    let text = "job {\n name main\n cmd /bin/main\n critical\n restart never\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let killed = ExitStatus::Signal {
        number: 9,
        name: "SIGKILL",
    };
    assert_eq!(exits(&run.exit("main", killed, at(1))), [137]);
}

#[test]
fn a_critical_job_that_is_restarted_does_not_end_pmtr() {
    let text =
        format!("job {{\n name main\n cmd /bin/main\n critical\n restart on-failure\n}}\n{OTHER}");
    let mut run = Run::new(config(&text));
    run.event(Event::Start, at(0));
    let actions = run.exit("main", ExitStatus::Code(1), at(20));
    assert_eq!(spawned_names(&actions), ["main"], "on-failure restarts it");
    assert!(!run.sup.is_shutting_down());
    // Status 0 under on-failure ends it, and pmtr with it.
    run.exit("main", ExitStatus::Code(0), at(40));
    assert!(run.sup.is_shutting_down());
    assert_eq!(exits(&run.exit("side", TERMINATED, at(40))), [0]);
}

#[test]
fn giving_up_on_a_critical_job_ends_pmtr() {
    let text = "job {\n name main\n cmd /bin/main\n critical\n give up after 1\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    assert_eq!(exits(&run.exit("main", ExitStatus::Code(2), at(1))), [2]);
}

/// A shutdown by signal exits 0 even with a critical job; its stop is
/// pmtr's doing, not its end.
#[test]
fn a_shutdown_by_signal_exits_0() {
    let text = "job {\n name main\n cmd /bin/main\n critical\n once\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    run.event(Event::Shutdown { signal: 15 }, at(1));
    assert_eq!(exits(&run.exit("main", TERMINATED, at(1))), [0]);
}

#[test]
fn exit_statuses_as_a_shell_gives_them() {
    assert_eq!(exit_status_of(Some(ExitStatus::Code(0))), 0);
    assert_eq!(exit_status_of(Some(ExitStatus::Code(33))), 33);
    assert_eq!(exit_status_of(Some(ExitStatus::Code(256 + 4))), 4);
    let term = ExitStatus::Signal {
        number: 15,
        name: "SIGTERM",
    };
    assert_eq!(exit_status_of(Some(term)), 143);
    assert_eq!(exit_status_of(None), 127);
}
