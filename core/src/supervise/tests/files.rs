//! Reload, `depends` and `bounce every` through the state machine, with a
//! fake clock.

use super::*;
use crate::supervise::job::Phase;
use crate::supervise::policy;

#[test]
fn a_reload_adds_removes_changes_and_keeps_minimally() {
    let before = format!(
        "{}{}{}",
        job("keep", "/bin/a", ""),
        job("change", "/bin/b", ""),
        job("drop", "/bin/c", "")
    );
    let mut run = Run::new(config(&before));
    started(&mut run, &before);
    let (keep, change, dropped) = (
        run.pid("keep").unwrap(),
        run.pid("change").unwrap(),
        run.pid("drop").unwrap(),
    );

    let after = format!(
        "{}{}{}",
        job("keep", "/bin/a", ""),
        job("change", "/bin/b2", ""),
        job("new", "/bin/d", "")
    );
    let actions = run.event(read(&after, 2), at(60));
    assert_eq!(logs(&actions)[0], "rescanning job configuration");
    assert_eq!(spawned_names(&actions), ["new"]);
    assert_eq!(
        signals(&actions),
        [(dropped, StopSignal::Term), (change, StopSignal::Term)]
    );
    assert_eq!(
        run.pid("keep"),
        Some(keep),
        "an unchanged job keeps its pid"
    );
    assert!(actions.contains(&Action::WatchFiles { paths: vec![] }));

    // The changed job is started with its new definition at once once it
    // is gone: the 10 s guard is for jobs that die by themselves.
    let actions = run.exit("change", TERMINATED, at(61));
    assert_eq!(spawned_names(&actions), ["change"]);
    assert_eq!(run.state("change").def.cmd, ["/bin/b2"]);

    // The deleted job is not restarted, and forgotten once gone.
    let pid = dropped;
    let actions = run.event(
        Event::Reaped {
            pid,
            status: TERMINATED,
        },
        at(61),
    );
    assert!(spawned_names(&actions).is_empty());
    assert!(run.sup.jobs().iter().all(|j| j.def.name != "drop"));
}

#[test]
fn unchanged_content_does_nothing_and_sighup_forces_a_rescan() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(read(&text, 0), at(5));
    assert_eq!(
        actions,
        [Action::Log {
            level: Level::Debug,
            message: "configuration unchanged: nothing to do".into()
        }]
    );
    let actions = run.event(Event::ReloadRequested { reply: None }, at(6));
    assert_eq!(actions, [Action::ReadConfig { forced: true }]);
    let actions = run.event(
        Event::ConfigRead {
            hash: 0,
            forced: true,
            result: Ok(Box::new(config(&text))),
        },
        at(6),
    );
    assert_eq!(logs(&actions), ["rescanning job configuration"]);
    assert!(signals(&actions).is_empty());
}

#[test]
fn an_invalid_file_is_logged_and_nothing_stops() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let pid = run.pid("a");
    let actions = run.event(
        Event::ConfigRead {
            hash: 9,
            forced: false,
            result: Err("pmtr.conf:3:2: error: unknown option `onse`".into()),
        },
        at(5),
    );
    assert_eq!(
        logs(&actions),
        ["rescanning job configuration", "FAILED to parse the configuration; using the PREVIOUS job config:\npmtr.conf:3:2: error: unknown option `onse`"]
    );
    assert!(signals(&actions).is_empty());
    assert_eq!(run.pid("a"), pid);
    // The next valid save is applied against the running set.
    let after = format!("{text}{}", job("b", "/bin/b", ""));
    let actions = run.event(read(&after, 10), at(6));
    assert_eq!(spawned_names(&actions), ["b"]);
    assert_eq!(run.pid("a"), pid);
}

/// A rename over the file or a close after writing: one read at once, no
/// settle timer armed.
#[test]
fn a_finished_save_is_read_at_once_without_a_settle_timer() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(Event::ConfigTouched { saved: true }, at(1));
    assert_eq!(actions, [Action::ReadConfig { forced: false }]);
    assert_eq!(run.sup.next_deadline(), None);
    // Writes to a file still open, then its close: one read, at the close.
    assert!(run
        .event(
            Event::ConfigTouched { saved: false },
            Mono::from_millis(2000)
        )
        .is_empty());
    assert!(run.sup.next_deadline().is_some());
    let actions = run.event(
        Event::ConfigTouched { saved: true },
        Mono::from_millis(2005),
    );
    assert_eq!(actions, [Action::ReadConfig { forced: false }]);
    assert_eq!(
        run.sup.next_deadline(),
        None,
        "the settle timer is disarmed"
    );
    assert!(run.event(Event::Timer, Mono::from_millis(3000)).is_empty());
}

#[test]
fn a_burst_of_touches_is_read_once_after_it_settles() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    for ms in [0, 10, 20, 25] {
        assert!(run
            .event(
                Event::ConfigTouched { saved: false },
                Mono::from_millis(1000 + ms)
            )
            .is_empty());
    }
    let due = Mono::from_millis(1025 + policy::SETTLE_MILLIS);
    assert_eq!(run.sup.next_deadline(), Some(due));
    assert!(run
        .event(Event::Timer, Mono::from_millis(due.millis() - 1))
        .is_empty());
    assert_eq!(
        run.event(Event::Timer, due),
        [Action::ReadConfig { forced: false }]
    );
    assert_eq!(run.sup.next_deadline(), None);
}

#[test]
fn an_endless_burst_is_still_read_within_a_second() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let step = policy::SETTLE_MILLIS / 2;
    for ms in (0..2000).step_by(step as usize) {
        let actions = run.event(Event::ConfigTouched { saved: false }, Mono::from_millis(ms));
        if ms < policy::SETTLE_MAX_MILLIS {
            assert!(actions.is_empty());
        }
        let due = run.sup.next_deadline().unwrap();
        if due < Mono::from_millis(ms + step) {
            assert_eq!(due, Mono::from_millis(policy::SETTLE_MAX_MILLIS));
            assert_eq!(
                run.event(Event::Timer, due),
                [Action::ReadConfig { forced: false }]
            );
            return;
        }
    }
    panic!("never read");
}

#[test]
fn a_reload_during_the_guard_keeps_an_unchanged_jobs_timer_and_starts_a_changed_one() {
    let text = format!(
        "{}{}",
        job("same", "/bin/a", ""),
        job("edited", "/bin/b", "")
    );
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.exit("same", ExitStatus::Code(1), at(1));
    run.exit("edited", ExitStatus::Code(1), at(1));
    assert_eq!(run.sup.next_deadline(), Some(at(11)));
    let after = format!(
        "{}{}",
        job("same", "/bin/a", ""),
        job("edited", "/bin/b", "nice 5")
    );
    let actions = run.event(read(&after, 3), at(2));
    assert_eq!(spawned_names(&actions), ["edited"]);
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(11)),
        "the unchanged job keeps its guard"
    );
}

#[test]
fn a_job_changed_while_stopping_starts_with_the_latest_definition() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.event(read(&job("a", "/bin/a2", ""), 1), at(1));
    run.event(read(&job("a", "/bin/a3", ""), 2), at(2));
    let actions = run.exit("a", TERMINATED, at(3));
    assert_eq!(spawned_names(&actions), ["a"]);
    assert_eq!(run.state("a").def.cmd, ["/bin/a3"]);
}

#[test]
fn deleted_then_restored_while_stopping_starts_again() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.event(read("", 1), at(1));
    assert!(run.state("a").is_being_removed());
    run.event(read(&text, 2), at(2));
    let actions = run.exit("a", TERMINATED, at(3));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn disabling_in_the_file_stops_and_enabling_starts() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(read(&job("a", "/bin/a", "disable"), 1), at(1));
    assert_eq!(signals(&actions).len(), 1);
    let actions = run.exit("a", TERMINATED, at(1));
    assert!(spawned_names(&actions).is_empty());
    assert_eq!(run.phase("a"), Phase::Disabled);
    let actions = run.event(read(&text, 2), at(2));
    assert_eq!(spawned_names(&actions), ["a"]);
}

#[test]
fn bounce_every_restarts_exactly_when_due() {
    let text = job("b", "/bin/b", "bounce every 90s");
    let mut run = Run::new(config(&text));
    run.event(Event::Start, at(5));
    let pid = run.pid("b").unwrap();
    assert_eq!(run.sup.next_deadline(), Some(at(95)));
    assert!(run
        .event(Event::Timer, Mono::from_millis(94_999))
        .is_empty());
    let actions = run.event(Event::Timer, at(95));
    assert_eq!(
        logs(&actions),
        [
            format!("bouncing job b [{pid}] after 90 sec"),
            format!("sending SIGTERM to job b [{pid}]")
        ]
    );
    let actions = run.exit("b", TERMINATED, at(95));
    assert_eq!(
        spawned_names(&actions),
        ["b"],
        "restarted at once, not under the guard"
    );
    assert_eq!(run.sup.next_deadline(), Some(at(185)));
}

fn hashed(path: &str, hash: Option<u64>) -> Event {
    Event::FilesHashed {
        hashes: vec![(path.to_string(), hash)],
    }
}

#[test]
fn a_missing_dependency_holds_the_job_until_it_appears() {
    let text = job("d", "/bin/d", "dir /srv\n depends { app.conf }");
    let mut run = Run::new(config(&text));
    assert_eq!(run.sup.dependency_paths(), ["/srv/app.conf"]);
    run.event(hashed("/srv/app.conf", None), at(0));
    let actions = run.event(Event::Start, at(0));
    assert!(spawned_names(&actions).is_empty());
    assert!(logs(&actions)
        .contains(&"job d: dependency /srv/app.conf is missing; the job starts when it appears"));
    assert_eq!(
        run.sup.next_deadline(),
        None,
        "waiting for the file, not for a timer"
    );
    let actions = run.event(Event::Timer, at(1));
    assert!(logs(&actions).is_empty(), "logged once");
    let actions = run.event(hashed("/srv/app.conf", Some(7)), at(3));
    assert_eq!(spawned_names(&actions), ["d"]);
}

#[test]
fn a_dependency_whose_content_changes_restarts_the_job() {
    let text = job("d", "/bin/d", "depends { /etc/app.conf }");
    let mut run = Run::new(config(&text));
    run.event(hashed("/etc/app.conf", Some(1)), at(0));
    run.event(Event::Start, at(0));
    let pid = run.pid("d").unwrap();
    // Touches settle, then the shell hashes; the same content does nothing.
    run.event(
        Event::DependencyTouched {
            path: "/etc/app.conf".into(),
        },
        at(20),
    );
    let actions = run.event(
        Event::Timer,
        Mono::from_millis(20_000 + policy::SETTLE_MILLIS),
    );
    assert_eq!(
        actions,
        [Action::HashFiles {
            paths: vec!["/etc/app.conf".into()]
        }]
    );
    assert!(run
        .event(hashed("/etc/app.conf", Some(1)), at(21))
        .is_empty());
    let actions = run.event(hashed("/etc/app.conf", Some(2)), at(22));
    assert_eq!(
        logs(&actions)[0],
        "dependency /etc/app.conf of job d changed: restarting it"
    );
    assert_eq!(signals(&actions), [(pid, StopSignal::Term)]);
    let actions = run.exit("d", TERMINATED, at(22));
    assert_eq!(spawned_names(&actions), ["d"]);
}

#[test]
fn a_reload_asks_to_watch_the_new_dependencies() {
    let mut run = Run::new(config(""));
    run.event(Event::Start, at(0));
    let text = job("d", "/bin/d", "depends { /etc/a /etc/b }");
    let actions = run.event(read(&text, 1), at(1));
    assert!(actions.contains(&Action::WatchFiles {
        paths: vec!["/etc/a".into(), "/etc/b".into()]
    }));
    assert!(spawned_names(&actions).is_empty(), "not hashed yet");
    let actions = run.event(
        Event::FilesHashed {
            hashes: vec![("/etc/a".into(), Some(1)), ("/etc/b".into(), Some(2))],
        },
        at(1),
    );
    assert_eq!(spawned_names(&actions), ["d"]);
}

#[test]
fn nothing_is_reloaded_during_shutdown() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.event(Event::Shutdown { signal: 15 }, at(1));
    assert!(run
        .event(Event::ConfigTouched { saved: false }, at(1))
        .is_empty());
    assert!(run
        .event(Event::ReloadRequested { reply: None }, at(1))
        .is_empty());
    assert!(run
        .event(read(&job("b", "/bin/b", ""), 5), at(2))
        .is_empty());
}

fn escapee_ends(actions: &[Action]) -> Vec<(String, StopSignal)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::EndEscapees { name, signal } => Some((name.clone(), *signal)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_removed_job_ends_what_it_left_behind_with_its_stop_signal_then_sigkill() {
    let before = format!(
        "{}{}",
        job("keep", "/bin/a", ""),
        job("drop", "/bin/c", "stop signal INT\n stop timeout 4s")
    );
    let mut run = Run::new(config(&before));
    started(&mut run, &before);
    let dropped = run.pid("drop").unwrap();
    let actions = run.event(read(&job("keep", "/bin/a", ""), 2), at(60));
    assert!(escapee_ends(&actions).is_empty(), "not while it still runs");
    assert_eq!(
        run.sup.handover_blocked().as_deref(),
        Some("1 jobs are starting or stopping; try again")
    );

    let status = TERMINATED;
    let actions = run.event(
        Event::Reaped {
            pid: dropped,
            status,
        },
        at(61),
    );
    assert_eq!(
        escapee_ends(&actions),
        [("drop".to_string(), StopSignal::Int)]
    );
    // Its stop timeout later, SIGKILL for whatever is still there; a
    // reexec waits for that.
    assert_eq!(run.sup.next_deadline(), Some(at(65)));
    assert!(run.sup.handover_blocked().is_some());
    assert!(escapee_ends(&run.event(Event::Timer, at(64))).is_empty());
    let actions = run.event(Event::Timer, at(65));
    assert_eq!(
        escapee_ends(&actions),
        [("drop".to_string(), StopSignal::Kill)]
    );
    assert_eq!(run.sup.next_deadline(), None);
    assert_eq!(run.sup.handover_blocked(), None);
}

#[test]
fn no_sigkill_for_escapees_once_a_job_has_the_removed_name_again() {
    let before = format!("{}{}", job("keep", "/bin/a", ""), job("drop", "/bin/c", ""));
    let mut run = Run::new(config(&before));
    started(&mut run, &before);
    let dropped = run.pid("drop").unwrap();
    run.event(read(&job("keep", "/bin/a", ""), 2), at(60));
    let status = TERMINATED;
    run.event(
        Event::Reaped {
            pid: dropped,
            status,
        },
        at(61),
    );
    // Back in the file before the kill timeout: its new processes carry
    // the same mark.
    run.event(read(&before, 3), at(62));
    assert!(run.pid("drop").is_some());
    let actions = run.event(Event::Timer, at(71));
    assert!(escapee_ends(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_job_removed_while_not_running_ends_what_it_left_behind_too() {
    let before = format!(
        "{}{}",
        job("keep", "/bin/a", ""),
        job("setup", "/bin/c", "once")
    );
    let mut run = Run::new(config(&before));
    started(&mut run, &before);
    run.exit("setup", ExitStatus::Code(0), at(1));
    let actions = run.event(read(&job("keep", "/bin/a", ""), 2), at(60));
    assert_eq!(
        escapee_ends(&actions),
        [("setup".to_string(), StopSignal::Term)]
    );
}
