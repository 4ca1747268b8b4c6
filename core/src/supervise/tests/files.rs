//! Reload, `depends` and `bounce every` through the state machine, with a
//! fake clock.

use super::*;
use crate::supervise::job::Phase;
use crate::supervise::policy;

fn read(text: &str, hash: u64) -> Event {
    Event::ConfigRead {
        hash,
        forced: false,
        result: Ok(Box::new(config(text))),
    }
}

fn job(name: &str, cmd: &str, extra: &str) -> String {
    format!("job {{\n name {name}\n cmd {cmd}\n {extra}\n}}\n")
}

fn started(run: &mut Run, text: &str) {
    run.event(Event::Start, at(0));
    let _ = text;
}

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
    assert_eq!(spawned_names(&run, &actions), ["new"]);
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
    assert_eq!(spawned_names(&run, &actions), ["change"]);
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
    assert!(spawned_names(&run, &actions).is_empty());
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
    let actions = run.event(Event::ReloadRequested, at(6));
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
    assert_eq!(spawned_names(&run, &actions), ["b"]);
    assert_eq!(run.pid("a"), pid);
}

#[test]
fn a_burst_of_touches_is_read_once_after_it_settles() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    for ms in [0, 10, 20, 25] {
        assert!(run
            .event(Event::ConfigTouched, Mono::from_millis(1000 + ms))
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
        let actions = run.event(Event::ConfigTouched, Mono::from_millis(ms));
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
    assert_eq!(spawned_names(&run, &actions), ["edited"]);
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
    assert_eq!(spawned_names(&run, &actions), ["a"]);
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
    assert_eq!(spawned_names(&run, &actions), ["a"]);
}

#[test]
fn disabling_in_the_file_stops_and_enabling_starts() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(read(&job("a", "/bin/a", "disable"), 1), at(1));
    assert_eq!(signals(&actions).len(), 1);
    let actions = run.exit("a", TERMINATED, at(1));
    assert!(spawned_names(&run, &actions).is_empty());
    assert_eq!(run.phase("a"), Phase::Disabled);
    let actions = run.event(read(&text, 2), at(2));
    assert_eq!(spawned_names(&run, &actions), ["a"]);
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
        spawned_names(&run, &actions),
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
    assert!(spawned_names(&run, &actions).is_empty());
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
    assert_eq!(spawned_names(&run, &actions), ["d"]);
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
    assert_eq!(spawned_names(&run, &actions), ["d"]);
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
    assert!(spawned_names(&run, &actions).is_empty(), "not hashed yet");
    let actions = run.event(
        Event::FilesHashed {
            hashes: vec![("/etc/a".into(), Some(1)), ("/etc/b".into(), Some(2))],
        },
        at(1),
    );
    assert_eq!(spawned_names(&run, &actions), ["d"]);
}

#[test]
fn nothing_is_reloaded_during_shutdown() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.event(Event::Shutdown { signal: 15 }, at(1));
    assert!(run.event(Event::ConfigTouched, at(1)).is_empty());
    assert!(run.event(Event::ReloadRequested, at(1)).is_empty());
    assert!(run
        .event(read(&job("b", "/bin/b", ""), 5), at(2))
        .is_empty());
}

fn set(name: &str, enabled: bool) -> Event {
    Event::SetEnabled {
        name: name.into(),
        enabled,
        reply: None,
    }
}

fn restart(name: &str) -> Event {
    Event::Restart {
        name: name.into(),
        reply: None,
    }
}

#[test]
fn a_disable_request_lasts_until_the_next_reload() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let pid = run.pid("a").unwrap();
    let actions = run.event(set("a", false), at(5));
    assert_eq!(logs(&actions)[0], "disabling job a until the next reload");
    assert_eq!(signals(&actions), [(pid, StopSignal::Term)]);
    let actions = run.exit("a", TERMINATED, at(5));
    assert!(spawned_names(&run, &actions).is_empty());
    assert!(!run.state("a").enabled());
    // The file rules again after a reload, even an unchanged one.
    let actions = run.event(
        Event::ConfigRead {
            hash: 0,
            forced: true,
            result: Ok(Box::new(config(&text))),
        },
        at(9),
    );
    assert_eq!(spawned_names(&run, &actions), ["a"]);
    assert_eq!(run.state("a").enabled_override, None);
}

#[test]
fn an_enable_request_starts_a_disabled_job_and_can_be_taken_back() {
    let text = job("a", "/bin/a", "disable");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(set("a", true), at(1));
    assert_eq!(spawned_names(&run, &actions), ["a"]);
    // Disabled again while running, then enabled again while stopping: it
    // comes back once gone.
    run.event(set("a", false), at(2));
    run.event(set("a", true), at(2));
    let actions = run.exit("a", TERMINATED, at(3));
    assert_eq!(spawned_names(&run, &actions), ["a"]);
    // A reload puts the file's `disable` back.
    let pid = run.pid("a").unwrap();
    let actions = run.event(read(&text, 4), at(4));
    assert_eq!(signals(&actions), [(pid, StopSignal::Term)]);
}

#[test]
fn a_request_for_an_unknown_job_is_logged_and_skipped() {
    let mut run = Run::new(config(""));
    run.event(Event::Start, at(0));
    let actions = run.event(set("ghost", false), at(1));
    assert_eq!(logs(&actions), ["no job named ghost: request ignored"]);
}

#[test]
fn a_restart_request_restarts_at_once_whatever_the_job_is_doing() {
    let text = format!(
        "{}{}{}",
        job("run", "/bin/a", ""),
        job("guarded", "/bin/b", ""),
        job("off", "/bin/c", "disable")
    );
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let pid = run.pid("run").unwrap();
    let actions = run.event(restart("run"), at(30));
    assert_eq!(logs(&actions)[0], "restarting job run on request");
    assert_eq!(signals(&actions), [(pid, StopSignal::Term)]);
    let actions = run.exit("run", TERMINATED, at(30));
    assert_eq!(spawned_names(&run, &actions), ["run"]);
    // In its 10 s guard: started now.
    let pid = run.pid("guarded").unwrap();
    run.event(
        Event::Reaped {
            pid,
            status: ExitStatus::Code(1),
        },
        Mono::from_millis(30_500),
    );
    let restarted = run
        .sup
        .jobs()
        .iter()
        .find(|j| j.def.name == "guarded")
        .unwrap()
        .starts;
    assert_eq!(restarted, 2, "ran 30 s: restarted at once by itself");
    run.exit("guarded", ExitStatus::Code(1), at(31));
    assert_eq!(run.sup.next_deadline(), Some(at(41)), "under the guard now");
    let actions = run.event(restart("guarded"), at(32));
    assert_eq!(spawned_names(&run, &actions), ["guarded"]);
    // Disabled: stays so.
    assert!(run.event(restart("off"), at(33)).is_empty());
}

/// The replies among `actions`: (token, ok, message).
fn replies(actions: &[Action]) -> Vec<(u64, bool, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply { token, ok, message } => Some((token.0, *ok, message.as_str())),
            _ => None,
        })
        .collect()
}

fn asked(event: Event, token: u64) -> Event {
    let reply = Some(ReplyToken(token));
    match event {
        Event::SetEnabled { name, enabled, .. } => Event::SetEnabled {
            name,
            enabled,
            reply,
        },
        Event::Restart { name, .. } => Event::Restart { name, reply },
        other => panic!("not a control request: {other:?}"),
    }
}

#[test]
fn every_control_request_with_a_token_gets_exactly_one_reply() {
    let text = format!(
        "{}{}",
        job("a", "/bin/a", ""),
        job("off", "/bin/b", "disable")
    );
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let cases = [
        (set("a", false), (true, "disabled until the next reload")),
        (set("a", true), (true, "enabled until the next reload")),
        (restart("a"), (true, "restarting")),
        (restart("off"), (false, "disabled: enable it to run it")),
        (restart("ghost"), (false, "no job named ghost")),
        (set("ghost", true), (false, "no job named ghost")),
    ];
    for (token, (event, (ok, message))) in cases.into_iter().enumerate() {
        let token = token as u64;
        let actions = run.event(asked(event, token), at(5));
        assert_eq!(replies(&actions), [(token, ok, message)], "request {token}");
    }
    run.event(Event::Shutdown { signal: 15 }, at(6));
    let actions = run.event(asked(restart("a"), 9), at(6));
    assert_eq!(replies(&actions), [(9, false, "pmtr is shutting down")]);
}

#[test]
fn a_request_without_a_token_is_not_replied_to() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    assert!(replies(&run.event(set("a", false), at(1))).is_empty());
    assert!(replies(&run.event(restart("ghost"), at(1))).is_empty());
}

/// A reload deleted the job and it still stops (it ignores SIGTERM): a
/// restart request names no job, and the reply says so, as the log does.
#[test]
fn restarting_a_job_being_removed_replies_no_such_job() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let pid = run.pid("a").unwrap();
    let actions = run.event(read("", 1), at(1));
    assert_eq!(signals(&actions), [(pid, StopSignal::Term)]);
    let actions = run.event(asked(restart("a"), 7), at(2));
    assert_eq!(replies(&actions), [(7, false, "no job named a")]);
    assert_eq!(logs(&actions), ["no job named a: request ignored"]);
    assert!(signals(&actions).is_empty());
    assert!(spawned_names(&run, &actions).is_empty());
}

fn reports(actions: &[Action]) -> usize {
    actions.iter().filter(|a| **a == Action::SendReport).count()
}

#[test]
fn reports_go_out_at_start_every_ten_seconds_and_soon_after_a_change() {
    let text = format!("report to udp://127.0.0.1:9999\n{}", job("a", "/bin/a", ""));
    let mut run = Run::new(config(&text));
    assert_eq!(reports(&run.event(Event::Start, at(0))), 1);
    assert_eq!(run.sup.next_deadline(), Some(at(10)));
    assert_eq!(reports(&run.event(Event::Timer, at(10))), 1);
    let actions = run.event(set("a", false), at(12));
    assert_eq!(reports(&actions), 0);
    run.exit("a", TERMINATED, at(12));
    assert_eq!(run.sup.next_deadline(), Some(Mono::from_millis(12_200)));
    assert_eq!(
        reports(&run.event(Event::Timer, Mono::from_millis(12_200))),
        1
    );
    assert_eq!(run.sup.next_deadline(), Some(Mono::from_millis(22_200)));
}

#[test]
fn no_reports_without_a_destination_and_none_once_it_is_removed() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    assert_eq!(reports(&run.event(Event::Start, at(0))), 0);
    assert_eq!(
        run.sup.next_deadline(),
        None,
        "no ticker when nothing is reported"
    );
    let with = format!("report to udp://127.0.0.1:9999\n{text}");
    assert_eq!(
        reports(&run.event(read(&with, 1), at(5))),
        1,
        "a destination added by a reload"
    );
    run.event(read(&text, 2), at(6));
    assert_eq!(run.sup.next_deadline(), None);
}
