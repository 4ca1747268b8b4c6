//! SPEC 11.1 through the whole machine: backoff, its reset after a stable
//! run, giving up, and what status and reports say of it.

use super::*;
use crate::status::{job_status, State};
use crate::supervise::event::Check;

fn failing(options: &str) -> Run {
    let text = format!("job {{\n name a\n cmd /bin/false\n {options}\n}}\n");
    let mut run = Run::new(config(&text));
    run.event(Event::Start, at(0));
    run
}

/// Exits at once each time it starts; returns the start times (ms).
fn starts_of(run: &mut Run, exits: usize) -> Vec<u64> {
    let mut starts = vec![0];
    let mut now = at(0);
    for _ in 0..exits {
        run.exit("a", ExitStatus::Code(1), now);
        let Some(due) = run.sup.next_deadline() else {
            break;
        };
        now = due;
        let actions = run.event(Event::Timer, now);
        assert_eq!(spawned_names(&actions), ["a"]);
        starts.push(now.millis());
    }
    starts
}

#[test]
fn the_backoff_doubles_up_to_its_maximum() {
    let mut run = failing("backoff 1s 8s");
    let starts = starts_of(&mut run, 6);
    assert_eq!(starts, [0, 1_000, 3_000, 7_000, 15_000, 23_000, 31_000]);
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let mut run = failing("backoff 1s 1m\n stable 5s");
    starts_of(&mut run, 3); // waits 1, 2, 4 s: started again at 7 s
    let actions = run.exit("a", ExitStatus::Code(1), at(20)); // ran 13 s
    assert_eq!(spawned_names(&actions), ["a"], "restarted at once");
    run.exit("a", ExitStatus::Code(1), at(21));
    assert_eq!(run.sup.next_deadline(), Some(at(22)), "back to INITIAL");
}

#[test]
fn giving_up_leaves_the_job_failed_until_asked() {
    let mut run = failing("give up after 3");
    let starts = starts_of(&mut run, 2);
    let third = Mono::from_millis(starts[2]);
    let actions = run.exit("a", ExitStatus::Code(1), third);
    assert!(
        logs(&actions).contains(
            &"job a exited 3 times in a row soon after its start: giving up \
              (pmtr-ctl restart or enable starts it again)"
        ),
        "{actions:?}"
    );
    assert_eq!(run.phase("a"), Phase::Failed);
    assert_eq!(run.sup.next_deadline(), None, "nothing due: it stays down");
    let status = job_status(run.state("a"), at(101));
    assert_eq!(status.state, State::Failed);
    assert_eq!(status.state.label(), "failed");
    let report = run.sup.report(at(101));
    assert!(!report[0].enabled, "reported as `d` to old collectors");
    // A restart request starts it, with the count of rapid exits reset.
    let restart = Event::Restart {
        name: "a".into(),
        reply: None,
    };
    let actions = run.event(restart, at(102));
    assert_eq!(spawned_names(&actions), ["a"]);
    run.exit("a", ExitStatus::Code(1), at(103));
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(113)),
        "counting from 1 again"
    );
}

#[test]
fn status_shows_backoff_with_the_next_start() {
    let mut run = failing("backoff 2s 1m");
    run.exit("a", ExitStatus::Code(1), at(1));
    let status = job_status(run.state("a"), at(2));
    assert_eq!(
        (status.state, status.restart_in_seconds),
        (State::Backoff, Some(1))
    );
    // Without `backoff` the original's rule keeps its name.
    let mut plain = failing("");
    plain.exit("a", ExitStatus::Code(1), at(1));
    assert_eq!(
        job_status(plain.state("a"), at(2)).state,
        State::WaitingToRestart
    );
}

#[test]
fn on_failure_ends_the_job_on_status_0_and_restarts_it_otherwise() {
    let mut run = failing("restart on-failure");
    let actions = run.exit("a", ExitStatus::Code(2), at(30));
    assert_eq!(spawned_names(&actions), ["a"]);
    let actions = run.exit("a", ExitStatus::Code(0), at(60));
    assert!(
        logs(&actions).contains(&"job a will not be restarted (exit status 0, restart on-failure)")
    );
    assert_eq!(
        run.phase("a"),
        Phase::Done("exit status 0, restart on-failure")
    );
}

/// SPEC 11.2: a job's stop signal and timeout in every kind of stop, and a
/// shutdown that waits for the longest timeout.
#[test]
fn stops_use_the_jobs_signal_and_timeout() {
    let text = "job {\n name q\n cmd /bin/q\n stop signal QUIT\n stop timeout 30s\n}\n\
                job {\n name t\n cmd /bin/t\n stop timeout 2s\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let disable = Event::SetEnabled {
        name: "q".into(),
        enabled: false,
        reply: None,
    };
    let actions = run.event(disable, at(1));
    assert_eq!(signals(&actions), [(101, StopSignal::Quit)]);
    assert!(logs(&actions).contains(&"sending SIGQUIT to job q [101]"));
    assert_eq!(run.sup.next_deadline(), Some(at(31)), "SIGKILL after 30 s");
    let actions = run.event(Event::Shutdown { signal: 15 }, at(2));
    assert_eq!(signals(&actions), [(102, StopSignal::Term)]);
    // t's 2 s pass first; q's 30 s still run: pmtr does not exit before.
    let actions = run.event(Event::Timer, at(4));
    assert_eq!(signals(&actions), [(102, StopSignal::Kill)]);
    run.exit(
        "t",
        ExitStatus::Signal {
            number: 9,
            name: "SIGKILL",
        },
        at(4),
    );
    assert_eq!(run.sup.next_deadline(), Some(at(31)));
    let actions = run.event(Event::Timer, at(31));
    assert_eq!(signals(&actions), [(101, StopSignal::Kill)]);
    let actions = run.exit(
        "q",
        ExitStatus::Signal {
            number: 9,
            name: "SIGKILL",
        },
        at(31),
    );
    assert_eq!(actions.last(), Some(&Action::Exit { status: 0 }));
}

#[test]
fn leftovers_get_the_jobs_stop_signal() {
    let text = "job {\n name q\n cmd /bin/q\n stop signal INT\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    run.leftovers.insert(101);
    let actions = run.exit("q", ExitStatus::Code(0), at(20));
    assert_eq!(signals(&actions), [(101, StopSignal::Int)]);
    assert!(
        logs(&actions).contains(&"job q [101] left processes in its group: sending SIGINT to them")
    );
}

/// SPEC 11.3 `after`, with the default readiness (started): a job starts
/// only while the jobs it comes after run; it orders, it does not bind.
#[test]
fn after_holds_a_job_until_what_it_needs_runs() {
    let text = "job {\n name web\n cmd /bin/web\n after db\n}\n\
                job {\n name db\n cmd /bin/db\n disable\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert!(spawned_names(&actions).is_empty(), "db is disabled");
    let web = &run.sup.statuses(at(1))[0];
    assert_eq!(
        (web.name.as_str(), web.waiting_for.as_deref()),
        ("web", Some("db"))
    );
    assert_eq!(
        run.sup.next_deadline(),
        None,
        "held: waits for an event, not a time"
    );
    let enable = Event::SetEnabled {
        name: "db".into(),
        enabled: true,
        reply: None,
    };
    let actions = run.event(enable, at(5));
    assert_eq!(
        spawned_names(&actions),
        ["db", "web"],
        "web follows once db runs"
    );
    // db restarts: web is not stopped.
    let actions = run.exit("db", ExitStatus::Code(1), at(30));
    assert_eq!(spawned_names(&actions), ["db"], "ran 25 s: at once");
    assert!(signals(&actions).is_empty());
    assert_eq!(run.pid("web"), Some(102));
    // db exits again at once: 10 s guard. A web that exits meanwhile waits
    // for db to run again.
    run.exit("db", ExitStatus::Code(1), Mono::from_millis(30_500));
    let actions = run.exit("web", ExitStatus::Code(1), at(31));
    assert!(spawned_names(&actions).is_empty(), "held by db");
    let actions = run.event(Event::Timer, Mono::from_millis(40_500));
    assert_eq!(spawned_names(&actions), ["db", "web"]);
}

#[test]
fn after_a_once_job_waits_for_its_exit_with_status_0() {
    let text = "job {\n name migrate\n cmd /bin/migrate\n once\n}\n\
                job {\n name app\n cmd /bin/app\n after migrate\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["migrate"], "running is not done");
    let actions = run.exit("migrate", ExitStatus::Code(0), at(3));
    assert_eq!(spawned_names(&actions), ["app"]);

    let mut failed = Run::new(config(text));
    failed.event(Event::Start, at(0));
    let actions = failed.exit("migrate", ExitStatus::Code(1), at(3));
    assert!(
        spawned_names(&actions).is_empty(),
        "a failed migration holds app"
    );
    assert_eq!(failed.sup.next_deadline(), None);
}

/// The checks the shell is asked for: (pid, path).
fn checks(actions: &[Action]) -> Vec<(Pid, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Check {
                pid,
                check: Check::File(path),
                ..
            } => Some((*pid, path.clone())),
            _ => None,
        })
        .collect()
}

/// SPEC 11.3 `ready file`: checked at once, then 50 ms, 100 ms ... 1 s
/// apart; `after` waits for it; status says `starting` meanwhile.
#[test]
fn ready_file_is_checked_with_a_backoff_and_releases_after() {
    let text = "job {\n name db\n cmd /bin/db\n dir /srv\n ready file run/up\n}\n\
                job {\n name web\n cmd /bin/web\n after db\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["db"]);
    assert_eq!(run.sup.next_deadline(), Some(at(0)), "first check at once");
    let db = run.state("db").id;
    let mut now = at(0);
    let mut gaps = Vec::new();
    for _ in 0..7 {
        let actions = run.event(Event::Timer, now);
        assert_eq!(checks(&actions), [(101, "/srv/run/up".to_string())]);
        run.event(
            Event::Checked {
                job: db,
                pid: 101,
                ok: false,
                output: None,
            },
            now,
        );
        let next = run.sup.next_deadline().unwrap();
        gaps.push(next.millis_since(now));
        now = next;
    }
    assert_eq!(gaps, [50, 100, 200, 400, 800, 1000, 1000]);
    let status = job_status(run.state("db"), now);
    assert_eq!(status.state, State::Starting);
    run.event(Event::Timer, now);
    let actions = run.event(
        Event::Checked {
            job: db,
            pid: 101,
            ok: true,
            output: None,
        },
        now,
    );
    assert!(logs(&actions).contains(&"job db [101] is ready"));
    assert_eq!(spawned_names(&actions), ["web"]);
    assert_eq!(job_status(run.state("db"), now).state, State::Running);
}

/// Not ready within `ready timeout`: logged, stopped, and restarted under
/// the restart policy as a failed start.
#[test]
fn not_ready_in_time_is_a_failed_start() {
    let text = "job {\n name db\n cmd /bin/db\n ready file /run/up\n ready timeout 5s\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let actions = run.event(Event::Timer, at(5));
    assert!(
        logs(&actions).contains(&"job db [101] not ready after 5 sec: stopping it"),
        "{actions:?}"
    );
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
    let actions = run.exit("db", TERMINATED, at(5));
    assert!(
        logs(&actions)
            .iter()
            .any(|l| l.contains("restarting it in 10 sec")),
        "{actions:?}"
    );
    assert_eq!(run.sup.next_deadline(), Some(at(15)));
    assert!(run.state("db").start_failed);
}
