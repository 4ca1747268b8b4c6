//! Jobs with `instances` (SPEC 11.10): a reload that changes N touches
//! only the difference, one that changes the definition rolls through the
//! copies one at a time, and requests for `NAME` act on every copy.

use super::requests::{replies, restart, set};
use super::*;

fn pool(n: u32, cmd: &str, extra: &str) -> String {
    format!("job {{\n name web\n cmd {cmd}\n instances {n}\n {extra}\n}}\njob {{\n name other\n cmd /bin/sleep 5\n}}\n")
}

fn running(run: &Run) -> Vec<String> {
    run.sup
        .jobs()
        .iter()
        .filter(|j| matches!(j.phase, Phase::Running(_)))
        .map(|j| j.def.name.clone())
        .collect()
}

#[test]
fn changing_the_number_starts_or_stops_only_the_difference() {
    let mut run = Run::new(config(&pool(4, "/bin/web", "")));
    let actions = run.event(Event::Start, at(0));
    assert_eq!(
        spawned_names(&actions),
        ["web.1", "web.2", "web.3", "web.4", "other"]
    );
    let pids: Vec<Option<Pid>> = ["web.1", "web.2"].iter().map(|n| run.pid(n)).collect();

    let actions = run.event(read(&pool(2, "/bin/web", ""), 1), at(1));
    let mut stopped: Vec<Pid> = signals(&actions).into_iter().map(|(pid, _)| pid).collect();
    stopped.sort();
    assert_eq!(
        stopped,
        [run.pid("web.3").unwrap(), run.pid("web.4").unwrap()]
    );
    assert!(spawned_names(&actions).is_empty());

    run.exit("web.3", TERMINATED, at(1));
    run.exit("web.4", TERMINATED, at(1));
    let actions = run.event(read(&pool(4, "/bin/web", ""), 2), at(2));
    assert_eq!(spawned_names(&actions), ["web.3", "web.4"]);
    assert!(signals(&actions).is_empty());
    let after: Vec<Option<Pid>> = ["web.1", "web.2"].iter().map(|n| run.pid(n)).collect();
    assert_eq!(after, pids, "web.1 and web.2 were never touched");
}

#[test]
fn a_changed_definition_rolls_through_the_copies_one_at_a_time() {
    let mut run = Run::new(config(&pool(4, "/bin/web", "")));
    run.event(Event::Start, at(0));
    let old: Vec<Pid> = (1..=4)
        .map(|i| run.pid(&format!("web.{i}")).unwrap())
        .collect();

    let actions = run.event(read(&pool(4, "/bin/web --new", ""), 1), at(1));
    assert_eq!(signals(&actions).len(), 1, "only the first copy stops");
    assert_eq!(signals(&actions)[0].0, old[0]);
    assert!(logs(&actions)
        .iter()
        .any(|l| l.contains("rolling restart: restarting job web.1")));

    for i in 1..=4 {
        let name = format!("web.{i}");
        assert_eq!(running(&run).len(), 5 - 1, "one copy down at a time");
        // The stopped copy ends; the new one starts; the next one stops.
        let actions = run.exit(&name, TERMINATED, at(1 + i));
        assert_eq!(spawned_names(&actions), std::slice::from_ref(&name));
        assert_eq!(run.state(&name).def.cmd, ["/bin/web", "--new"]);
        let stops = signals(&actions);
        if i < 4 {
            assert_eq!(
                stops,
                [(old[i as usize], StopSignal::Term)],
                "then web.{}",
                i + 1
            );
        } else {
            assert!(stops.is_empty());
            assert_eq!(running(&run).len(), 5);
        }
    }
    assert!(run.sup.rolls.is_empty());
}

#[test]
fn a_roll_waits_for_readiness_and_holds_on_a_copy_that_does_not_come_up() {
    let ready = "ready file /tmp/ready.%i";
    let mut run = Run::new(config(&pool(3, "/bin/web", ready)));
    run.event(Event::Start, at(0));
    // Readiness of the first run does not matter here: mark all ready.
    for job in run.sup.jobs.iter_mut() {
        if let Phase::Running(r) = &mut job.phase {
            r.ready = true;
        }
    }
    run.event(read(&pool(3, "/bin/web --new", ready), 1), at(1));
    let actions = run.exit("web.1", TERMINATED, at(2));
    assert_eq!(spawned_names(&actions), ["web.1"]);
    assert!(
        signals(&actions).is_empty(),
        "web.2 waits until web.1 is ready"
    );
    // The new web.1 crashes: it is not up, web.2 and web.3 keep running.
    run.exit("web.1", ExitStatus::Code(1), at(3));
    assert_eq!(running(&run), ["web.2", "web.3", "other"]);
    assert_eq!(run.state("web.2").def.cmd, ["/bin/web"]);
}

#[test]
fn a_queued_copy_that_restarts_by_itself_takes_its_new_definition() {
    let mut run = Run::new(config(&pool(2, "/bin/web", "")));
    run.event(Event::Start, at(0));
    run.event(read(&pool(2, "/bin/web --new", ""), 1), at(1));
    // web.2 crashes while web.1 is being stopped.
    let actions = run.exit("web.2", ExitStatus::Code(1), at(20));
    assert_eq!(spawned_names(&actions), ["web.2"]);
    assert_eq!(run.state("web.2").def.cmd, ["/bin/web", "--new"]);
    let actions = run.exit("web.1", TERMINATED, at(21));
    assert_eq!(spawned_names(&actions), ["web.1"]);
    assert!(
        signals(&actions).is_empty(),
        "web.2 already runs the new definition"
    );
}

#[test]
fn requests_for_the_name_act_on_every_copy_and_a_copy_alone() {
    let mut run = Run::new(config(&pool(3, "/bin/web", "")));
    run.event(Event::Start, at(0));
    let actions = run.event(set("web", false), at(1));
    assert_eq!(signals(&actions).len(), 3);
    let actions = run.event(set("web.2", true), at(1));
    assert!(logs(&actions).contains(&"enabling job web.2 until the next reload"));
    for i in [1, 2, 3] {
        let actions = run.exit(&format!("web.{i}"), TERMINATED, at(2));
        let again: &[&str] = if i == 2 { &["web.2"] } else { &[] };
        assert_eq!(spawned_names(&actions), again);
    }
    let actions = run.event(restart("web"), at(3));
    // web.2 (enabled) restarts; web.1 and web.3 stay disabled.
    assert_eq!(signals(&actions).len(), 1);
    assert_eq!(replies(&actions), []);
}
