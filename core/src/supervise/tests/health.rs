//! SPEC 11.3 and 11.4 through the whole machine, with a fake clock:
//! `ready notify`, `ready cmd`, health retries and timeouts, the
//! watchdog, `after` over a dependency that fails, restarts or is
//! disabled, `pmtr-ctl wait`, pmtr's own READY=1, and reloads that change
//! only how a job is checked.

use super::requests::replies;
use super::*;
use crate::proto::notify::Notice;
use crate::status::job_status;
use crate::supervise::checks::Verdict;

/// The checks the shell is asked to run: (pid, what).
fn checks(actions: &[Action]) -> Vec<(Pid, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Check { pid, check, .. } => Some((
                *pid,
                match check {
                    Check::File(path) => path.clone(),
                    Check::Tcp(address) => address.to_string(),
                    Check::Cmd { argv, .. } => argv.join(" "),
                },
            )),
            _ => None,
        })
        .collect()
}

fn cancelled(actions: &[Action]) -> usize {
    let cancel = |a: &&Action| matches!(a, Action::CancelCheck { .. });
    actions.iter().filter(cancel).count()
}

fn answered(run: &mut Run, name: &str, ok: bool, output: &str, now: Mono) -> Vec<Action> {
    let state = run.state(name);
    let (job, pid) = (state.id, state.leader().unwrap());
    let output = (!output.is_empty()).then(|| output.to_string());
    run.event(
        Event::Checked {
            job,
            pid,
            ok,
            output,
        },
        now,
    )
}

fn notice(run: &mut Run, name: &str, text: &[u8], now: Mono) -> Vec<Action> {
    let pgid = run.pid(name).unwrap();
    let notice = crate::proto::notify::decode(text);
    run.event(Event::Notified { pgid, notice }, now)
}

fn ready(run: &Run, name: &str) -> bool {
    matches!(run.phase(name), Phase::Running(r) if r.ready)
}

fn ms(millis: u64) -> Mono {
    Mono::from_millis(millis)
}

#[test]
fn ready_notify_waits_for_ready_1_from_the_jobs_group() {
    let text = "job {\n name db\n cmd /bin/db\n ready notify\n}\n\
                job {\n name web\n cmd /bin/web\n after db\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(spawned_names(&actions), ["db"]);
    assert!(checks(&actions).is_empty(), "notify needs no check");
    assert!(!ready(&run, "db"));
    // Someone else's group, and lines pmtr does not act on, change nothing.
    run.event(
        Event::Notified {
            pgid: 999,
            notice: Notice {
                ready: true,
                ..Notice::default()
            },
        },
        at(1),
    );
    notice(&mut run, "db", b"MAINPID=5\nSTATUS=loading", at(1));
    assert!(!ready(&run, "db"));
    assert_eq!(run.state("db").notify_status.as_deref(), Some("loading"));
    let actions = notice(&mut run, "db", b"READY=1\nSTATUS=serving", at(2));
    assert!(logs(&actions).contains(&"job db [101] is ready"));
    assert_eq!(spawned_names(&actions), ["web"]);
    let status = job_status(run.state("db"), at(2));
    assert_eq!(status.notify_status.as_deref(), Some("serving"));
}

#[test]
fn a_failing_ready_cmd_keeps_its_last_line_then_times_out() {
    let text =
        "job {\n name db\n cmd /bin/db\n ready cmd /bin/pg_isready -q\n ready timeout 3s\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert!(checks(&actions).is_empty());
    let actions = run.event(Event::Timer, at(0));
    assert_eq!(checks(&actions), [(101, "/bin/pg_isready -q".to_string())]);
    assert_eq!(run.sup.next_deadline(), Some(at(3)), "one check at a time");
    answered(&mut run, "db", false, "no response", ms(100));
    assert_eq!(run.sup.next_deadline(), Some(ms(150)));
    let status = job_status(run.state("db"), ms(100));
    assert_eq!(status.check_output.as_deref(), Some("no response"));
    run.event(Event::Timer, ms(150));
    let actions = run.event(Event::Timer, at(3));
    assert!(logs(&actions).contains(&"job db [101] not ready after 3 sec: stopping it"));
    assert_eq!(cancelled(&actions), 1, "the check under way is abandoned");
}

/// A health check fails `retries` times in a row: the job is restarted,
/// logged with the last line; one pass in between resets the count.
#[test]
fn health_retries_restart_the_job_with_the_reason() {
    let text = "job {\n name web\n cmd /bin/web\n health cmd /bin/curl -sf http://127.0.0.1/\n health every 5s\n health retries 2\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    assert!(ready(&run, "web"));
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(5)),
        "first check one `every` in"
    );
    let actions = run.event(Event::Timer, at(5));
    assert_eq!(checks(&actions).len(), 1);
    answered(&mut run, "web", false, "curl: (7) Failed to connect", at(6));
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(11)),
        "from the end of the check"
    );
    assert_eq!(job_status(run.state("web"), at(6)).healthy, Some(false));
    run.event(Event::Timer, at(11));
    let actions = answered(&mut run, "web", true, "", at(11));
    assert!(logs(&actions).contains(&"job web is healthy again"));
    assert_eq!(job_status(run.state("web"), at(11)).healthy, Some(true));
    run.event(Event::Timer, at(16));
    answered(
        &mut run,
        "web",
        false,
        "curl: (7) Failed to connect",
        at(16),
    );
    assert!(matches!(run.phase("web"), Phase::Running(_)), "1 of 2");
    run.event(Event::Timer, at(21));
    let actions = answered(
        &mut run,
        "web",
        false,
        "curl: (7) Failed to connect",
        at(21),
    );
    assert!(
        logs(&actions).contains(
            &"job web unhealthy: 2 checks failed (last: \"curl: (7) Failed to connect\"); restarting"
        ),
        "{actions:?}"
    );
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
    let actions = run.exit("web", TERMINATED, at(21));
    assert_eq!(spawned_names(&actions), ["web"], "started again at once");
    let status = job_status(run.state("web"), at(22));
    assert_eq!(status.healthy, None, "a new run has no verdict yet");
}

/// A check still running at `health timeout` is killed and counts as
/// failed; its late answer is ignored.
#[test]
fn a_hung_health_check_is_cancelled_and_counted() {
    let text = "job {\n name web\n cmd /bin/web\n health tcp 8080\n health every 1s\n health timeout 2s\n health retries 1\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let actions = run.event(Event::Timer, at(1));
    assert_eq!(checks(&actions), [(101, "127.0.0.1:8080".to_string())]);
    assert_eq!(run.sup.next_deadline(), Some(at(3)));
    let actions = run.event(Event::Timer, at(3));
    assert_eq!(cancelled(&actions), 1);
    assert!(
        logs(&actions).contains(
            &"job web unhealthy: 1 check failed (last: \"timed out after 2 sec\"); restarting"
        ),
        "{actions:?}"
    );
    let late = answered(&mut run, "web", true, "", at(3));
    assert!(logs(&late).is_empty(), "{late:?}");
}

#[test]
fn the_watchdog_restarts_a_job_that_stops_petting_it() {
    let text = "job {\n name w\n cmd /bin/w\n ready notify\n health watchdog 10s\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    assert_eq!(
        run.sup.next_deadline(),
        Some(at(60)),
        "only the ready timeout"
    );
    notice(&mut run, "w", b"READY=1", at(1));
    assert_eq!(run.sup.next_deadline(), Some(at(11)));
    notice(&mut run, "w", b"WATCHDOG=1", at(9));
    assert_eq!(run.sup.next_deadline(), Some(at(19)));
    let actions = run.event(Event::Timer, at(19));
    assert!(
        logs(&actions).contains(&"job w [101] unhealthy: no WATCHDOG=1 for 10 sec; restarting"),
        "{actions:?}"
    );
    assert_eq!(signals(&actions), [(101, StopSignal::Term)]);
}

#[test]
fn stopping_1_ends_the_checks_of_a_job_on_its_way_out() {
    let text =
        "job {\n name w\n cmd /bin/w\n health watchdog 10s\n health tcp 80\n health every 5s\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    run.event(Event::Timer, at(5));
    let actions = notice(&mut run, "w", b"STOPPING=1", at(5));
    assert_eq!(cancelled(&actions), 1);
    assert_eq!(run.sup.next_deadline(), None, "no watchdog, no check");
}

/// `after` orders, it does not bind (SPEC 11.3): a dependency that
/// restarts does not stop its dependants, and one that fails or is
/// disabled holds them back.
#[test]
fn after_over_a_dependency_that_restarts_fails_or_is_disabled() {
    let text = "job {\n name db\n cmd /bin/db\n give up after 1\n}\n\
                job {\n name web\n cmd /bin/web\n after db\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    assert!(run.pid("web").is_some());
    // db exits and gives up: web keeps running, but a restart of web waits.
    run.exit("db", ExitStatus::Code(1), at(1));
    assert_eq!(run.phase("db"), Phase::Failed);
    assert!(run.pid("web").is_some(), "web is not stopped");
    let actions = run.exit("web", ExitStatus::Code(1), at(30));
    assert!(spawned_names(&actions).is_empty());
    assert_eq!(run.sup.next_deadline(), None, "held: no timer");
    let waiting = run.sup.verdict("web");
    assert_eq!(waiting, Verdict::Pending);
    // Disabled, db still holds web; enabled, db starts and web follows.
    run.event(enable("db", false), at(31));
    let actions = run.event(enable("db", true), at(32));
    assert_eq!(spawned_names(&actions), ["db", "web"]);
}

#[test]
fn wait_answers_ready_failed_or_timed_out() {
    let text = "job {\n name db\n cmd /bin/db\n ready notify\n ready timeout 5s\n}\n\
                job {\n name off\n cmd /bin/off\n disable\n}\n";
    let mut run = Run::new(config(text));
    run.event(Event::Start, at(0));
    let wait = |jobs: &[&str], timeout: Option<u64>, token| Event::Wait {
        jobs: jobs.iter().map(|s| s.to_string()).collect(),
        timeout_millis: timeout,
        reply: ReplyToken(token),
    };
    assert!(replies(&run.event(wait(&["db"], None, 1), at(0))).is_empty());
    assert!(replies(&run.event(wait(&["db"], Some(1_000), 2), at(0))).is_empty());
    assert_eq!(
        replies(&run.event(wait(&["off", "db"], None, 3), at(0))),
        [(3, false, "off: disabled")]
    );
    assert_eq!(
        replies(&run.event(wait(&["ghost"], None, 4), at(0))),
        [(4, false, "ghost: no job named ghost")]
    );
    assert_eq!(run.sup.next_deadline(), Some(at(1)));
    assert_eq!(
        replies(&run.event(Event::Timer, at(1))),
        [(2, false, "timed out waiting for db")]
    );
    assert_eq!(
        replies(&notice(&mut run, "db", b"READY=1", at(2))),
        [(1, true, "ready")]
    );
    // Not ready in time: a failed start fails the waiters.
    run.exit("db", ExitStatus::Code(1), at(3));
    run.event(Event::Timer, at(13));
    run.event(wait(&["db"], None, 5), at(13));
    let actions = run.event(Event::Timer, at(18));
    assert!(replies(&actions).is_empty(), "stopping, not failed yet");
    let actions = run.exit("db", TERMINATED, at(18));
    assert_eq!(replies(&actions), [(5, false, "db: its last start failed")]);
}

/// pmtr's own READY=1 goes out once, when nothing is still coming up.
#[test]
fn pmtr_is_ready_once_every_job_is_ready_or_failed() {
    let readies = |actions: &[Action]| actions.iter().filter(|a| **a == Action::Ready).count();
    let plain = "job {\n name a\n cmd /bin/a\n}\n";
    let mut run = Run::new(config(plain));
    assert_eq!(readies(&run.event(Event::Start, at(0))), 1);
    let text =
        "job {\n name db\n cmd /bin/db\n ready notify\n ready timeout 5s\n give up after 1\n}\n\
                job {\n name web\n cmd /bin/web\n after db\n}\n\
                job {\n name c\n cmd /bin/c\n ready notify\n}\n";
    let mut run = Run::new(config(text));
    assert_eq!(readies(&run.event(Event::Start, at(0))), 0);
    assert_eq!(readies(&notice(&mut run, "db", b"STATUS=x", at(1))), 0);
    run.event(Event::Timer, at(5));
    let actions = run.exit("db", TERMINATED, at(5));
    assert_eq!(run.phase("db"), Phase::Failed);
    assert_eq!(readies(&actions), 0, "c is still coming");
    let actions = notice(&mut run, "c", b"READY=1", at(6));
    assert_eq!(readies(&actions), 1, "db failed, web is held for good");
    assert_eq!(
        readies(&notice(&mut run, "c", b"READY=1", at(7))),
        0,
        "once"
    );
}

/// A `once` job that others come after is on its way until it exits.
#[test]
fn pmtr_waits_for_a_migration_that_others_come_after() {
    let text = "job {\n name migrate\n cmd /bin/m\n once\n}\n\
                job {\n name web\n cmd /bin/web\n after migrate\n}\n";
    let mut run = Run::new(config(text));
    let actions = run.event(Event::Start, at(0));
    assert!(!actions.contains(&Action::Ready));
    let actions = run.exit("migrate", ExitStatus::Code(0), at(1));
    assert_eq!(spawned_names(&actions), ["web"]);
    assert!(actions.contains(&Action::Ready), "{actions:?}");
}

/// A job whose new definition brings `after` in is held by it once its
/// old process is gone.
#[test]
fn a_changed_job_that_gains_after_is_held_by_it() {
    let before = "job {\n name b\n cmd /bin/b\n}\n";
    let after = "job {\n name c\n cmd /bin/c\n ready notify\n}\n\
                 job {\n name b\n cmd /bin/b2\n after c\n}\n";
    let mut run = Run::new(config(before));
    run.event(Event::Start, at(0));
    let actions = run.event(read(after, 2), at(1));
    assert_eq!(spawned_names(&actions), ["c"]);
    let actions = run.exit("b", TERMINATED, at(1));
    assert!(spawned_names(&actions).is_empty(), "{actions:?}");
    let status = run.sup.statuses(at(1));
    assert_eq!(status[1].waiting_for.as_deref(), Some("c"));
    let actions = notice(&mut run, "c", b"READY=1", at(2));
    assert_eq!(spawned_names(&actions), ["b"]);
}

/// SPEC 11.3, 11.4 on reload: new checks on a running job, same pid.
#[test]
fn a_reload_that_changes_only_checks_keeps_the_job_running() {
    let before = "job {\n name web\n cmd /bin/web\n health tcp 80\n health every 5s\n}\n";
    let after =
        "job {\n name web\n cmd /bin/web\n health tcp 81\n health every 2s\n ready timeout 9s\n}\n";
    let mut run = Run::new(config(before));
    run.event(Event::Start, at(0));
    run.event(Event::Timer, at(5));
    let actions = run.event(read(after, 2), at(6));
    assert!(
        logs(&actions)
            .contains(&"job web: readiness or health settings changed, applied without a restart"),
        "{actions:?}"
    );
    assert_eq!(cancelled(&actions), 1, "the old check is abandoned");
    assert!(signals(&actions).is_empty());
    assert_eq!(run.pid("web"), Some(101));
    assert_eq!(run.sup.next_deadline(), Some(at(8)));
    let actions = run.event(Event::Timer, at(8));
    assert_eq!(checks(&actions), [(101, "127.0.0.1:81".to_string())]);
}

fn enable(name: &str, enabled: bool) -> Event {
    Event::SetEnabled {
        name: name.into(),
        enabled,
        reply: None,
    }
}
