//! Control requests through the core: enable, disable, restart, status,
//! logs and reload, each answered exactly once when someone waits; and
//! when the status report goes out and what it lists.

use super::*;

pub(super) fn set(name: &str, enabled: bool) -> Event {
    Event::SetEnabled {
        name: name.into(),
        enabled,
        reply: None,
    }
}

pub(super) fn restart(name: &str) -> Event {
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
    assert!(spawned_names(&actions).is_empty());
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
    assert_eq!(spawned_names(&actions), ["a"]);
    assert_eq!(run.state("a").enabled_override, None);
}

#[test]
fn an_enable_request_starts_a_disabled_job_and_can_be_taken_back() {
    let text = job("a", "/bin/a", "disable");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(set("a", true), at(1));
    assert_eq!(spawned_names(&actions), ["a"]);
    // Disabled again while running, then enabled again while stopping: it
    // comes back once gone.
    run.event(set("a", false), at(2));
    run.event(set("a", true), at(2));
    let actions = run.exit("a", TERMINATED, at(3));
    assert_eq!(spawned_names(&actions), ["a"]);
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
fn unknown_names_from_afar_are_logged_once_every_ten_seconds() {
    let mut run = Run::new(config(&job("a", "/bin/a", "")));
    run.event(Event::Start, at(0));
    let mut lines = Vec::new();
    for i in 0..500 {
        let actions = run.event(set(&format!("ghost{i}"), false), at(1));
        lines.extend(logs(&actions).into_iter().map(str::to_string));
    }
    assert_eq!(lines, ["no job named ghost0: request ignored"]);
    let later = run.event(set("ghost500", true), at(12));
    assert_eq!(
        logs(&later),
        ["no job named ghost500: request ignored (and 499 unknown names not logged before it)"]
    );
    // A local client is answered, and each of its requests logged.
    let local = run.event(
        Event::SetEnabled {
            name: "ghost".into(),
            enabled: false,
            reply: Some(ReplyToken(3)),
        },
        at(12),
    );
    assert_eq!(logs(&local), ["no job named ghost: request ignored"]);
}

#[test]
fn a_request_for_what_is_already_so_does_nothing_and_says_nothing() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    assert!(
        run.event(set("a", true), at(1)).is_empty(),
        "running: enabled"
    );
    let first = run.event(set("a", false), at(2));
    assert_eq!(logs(&first)[0], "disabling job a until the next reload");
    let while_stopping = run.event(set("a", false), at(2));
    assert!(logs(&while_stopping).is_empty() && signals(&while_stopping).is_empty());
    run.exit("a", TERMINATED, at(2));
    for second in 3..10 {
        let again = run.event(set("a", false), at(second));
        assert!(logs(&again).is_empty() && signals(&again).is_empty());
    }
    let enable = run.event(set("a", true), at(10));
    assert_eq!(logs(&enable)[0], "enabling job a until the next reload");
    assert_eq!(spawned_names(&enable), ["a"]);
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
    assert_eq!(spawned_names(&actions), ["run"]);
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
    assert_eq!(spawned_names(&actions), ["guarded"]);
    // Disabled: stays so.
    assert!(run.event(restart("off"), at(33)).is_empty());
}

/// The replies among `actions`: (token, ok, message).
pub(super) fn replies(actions: &[Action]) -> Vec<(u64, bool, &str)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply {
                token,
                reply: Reply::Done { ok, message },
            } => Some((token.0, *ok, message.as_str())),
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
    assert!(spawned_names(&actions).is_empty());
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

fn token(n: u64) -> ReplyToken {
    ReplyToken(n)
}

#[test]
fn status_and_logs_are_answered_by_the_core() {
    let text = format!(
        "{}{}",
        job("a", "/bin/a", ""),
        job("b", "/bin/b", "disable")
    );
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let all = run.event(
        Event::Status {
            job: None,
            reply: token(1),
        },
        at(5),
    );
    let [Action::Reply {
        token: t,
        reply: Reply::Status(jobs),
    }] = all.as_slice()
    else {
        panic!("{all:?}");
    };
    assert_eq!(t.0, 1);
    let names: Vec<_> = jobs.iter().map(|j| (j.name.as_str(), j.pid)).collect();
    assert_eq!(names, [("a", Some(101)), ("b", None)]);
    let ghost = Some("ghost".to_string());
    let actions = run.event(
        Event::Status {
            job: ghost,
            reply: token(2),
        },
        at(5),
    );
    assert_eq!(replies(&actions), [(2, false, "no job named ghost")]);

    let logs = run.event(
        Event::Logs {
            job: "b".into(),
            reply: token(3),
        },
        at(5),
    );
    assert_eq!(
        logs,
        [Action::Reply {
            token: token(3),
            reply: Reply::Logs { job: "b".into() }
        }]
    );
    let actions = run.event(
        Event::Logs {
            job: "ghost".into(),
            reply: token(4),
        },
        at(5),
    );
    assert_eq!(replies(&actions), [(4, false, "no job named ghost")]);
}

/// `pmtr-ctl reload` waits for the read it caused: applied, refused with
/// the errors, or refused because pmtr is shutting down.
#[test]
fn a_reload_request_is_answered_with_what_the_read_found() {
    let text = job("a", "/bin/a", "");
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    let actions = run.event(
        Event::ReloadRequested {
            reply: Some(token(1)),
        },
        at(1),
    );
    assert_eq!(actions, [Action::ReadConfig { forced: true }]);
    // An unforced read of unchanged content in between answers nobody.
    let unchanged = Event::ConfigRead {
        hash: 0,
        forced: false,
        result: Ok(Box::new(config(&text))),
    };
    assert!(replies(&run.event(unchanged, at(1))).is_empty());
    let applied = Event::ConfigRead {
        hash: 0,
        forced: true,
        result: Ok(Box::new(config(&text))),
    };
    assert_eq!(
        replies(&run.event(applied, at(1))),
        [(1, true, "configuration reloaded")]
    );

    run.event(
        Event::ReloadRequested {
            reply: Some(token(2)),
        },
        at(2),
    );
    let refused = Event::ConfigRead {
        hash: 5,
        forced: true,
        result: Err("x:1: error\n".into()),
    };
    assert_eq!(
        replies(&run.event(refused, at(2))),
        [(2, false, "the configuration was not applied:\nx:1: error")]
    );

    run.event(Event::Shutdown { signal: 15 }, at(3));
    let actions = run.event(
        Event::ReloadRequested {
            reply: Some(token(3)),
        },
        at(3),
    );
    assert_eq!(replies(&actions), [(3, false, "pmtr is shutting down")]);
}

/// The shell applies the global statements only when the core says so:
/// at start, and with each configuration the core applies.
#[test]
fn global_statements_are_applied_when_the_core_applies_a_configuration() {
    let globals = |actions: &[Action]| -> Vec<Option<String>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ApplyGlobals { globals } => Some(globals.metrics_to.clone()),
                _ => None,
            })
            .collect()
    };
    let text = format!("metrics to /run/a.prom\n{}", job("a", "/bin/a", ""));
    let mut run = Run::new(config(&text));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(globals(&actions), [Some("/run/a.prom".to_string())]);
    let bad = Event::ConfigRead {
        hash: 5,
        forced: false,
        result: Err("x:1: error\n".into()),
    };
    assert!(
        globals(&run.event(bad, at(1))).is_empty(),
        "a refused file changes nothing"
    );
    let actions = run.event(read(&job("a", "/bin/a", ""), 6), at(2));
    assert_eq!(globals(&actions), [None]);
    run.event(Event::Shutdown { signal: 15 }, at(3));
    let late = read(&text, 7);
    assert!(
        globals(&run.event(late, at(3))).is_empty(),
        "not during shutdown"
    );
}

/// The report lists the jobs that are restarted: neither `once` jobs nor
/// jobs that are done.
#[test]
fn the_report_lists_restartable_jobs_only() {
    let text = format!(
        "{}{}{}",
        job("web", "/bin/web", ""),
        job("setup", "/bin/setup", "once"),
        job("quits", "/bin/quits", "")
    );
    let mut run = Run::new(config(&text));
    started(&mut run, &text);
    run.exit("quits", ExitStatus::Code(33), at(1));
    let listed: Vec<_> = run
        .sup
        .report(at(4))
        .into_iter()
        .map(|j| (j.name, j.seconds, j.cmd))
        .collect();
    assert_eq!(
        listed,
        [("web".to_string(), 4, Some("/bin/web".to_string()))]
    );
}
