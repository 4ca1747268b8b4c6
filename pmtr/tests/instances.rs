//! `instances N` (SPEC 11.10): copies shown and controlled on their own and
//! as a whole, a change of N applied minimally, a change of definition
//! rolled through the pool without taking it down.

use crate::harness::{alive, children_of, text, wait_until, Pmtr, Sandbox, GUARD, SHORT};

fn pool(n: u32, seconds: &str, metrics: &str) -> String {
    format!("metrics to {metrics}\njob {{\n name pool\n cmd /bin/sleep {seconds}%i\n instances {n}\n}}\n")
}

fn save(path: &std::path::Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Live children of pmtr: the copies, each from its fork on (before its
/// exec it is pmtr's image, and already a started copy for pmtr).
fn live_copies(pmtr: i32) -> Vec<i32> {
    children_of(pmtr)
        .into_iter()
        .filter(|&pid| alive(pid))
        .collect()
}

#[test]
fn copies_are_shown_controlled_and_resized_on_their_own() {
    let sandbox = Sandbox::new();
    let metrics = sandbox.path("pmtr.prom");
    let metrics_path = metrics.to_string_lossy().into_owned();
    let pmtr = Pmtr::start(&sandbox, &pool(4, "100", &metrics_path));
    for i in 1..=4 {
        pmtr.expect_started(&format!("pool.{i}"), 1, SHORT);
    }
    let second = pmtr.job_pid("pool.2").unwrap();
    assert!(
        wait_until(SHORT, || cmdline(second) == "/bin/sleep 1002 "),
        "{}",
        cmdline(second)
    );
    let environ = std::fs::read(format!("/proc/{second}/environ")).unwrap();
    assert!(environ.split(|&b| b == 0).any(|v| v == b"PMTR_INSTANCE=2"));

    let status = sandbox.ctl(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pool.1", "pool.2", "pool.3", "pool.4"]);
    assert!(wait_until(SHORT, || std::fs::read_to_string(&metrics)
        .is_ok_and(|m| m.contains("pmtr_job_up{job=\"pool.4\"} 1"))));
    let one = sandbox.ctl(&["status", "pool", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4, "`pool` names every copy");

    // One copy, then all of them.
    let restarted = sandbox.ctl(&["restart", "pool.3"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    pmtr.expect_started("pool.3", 2, GUARD);
    assert_eq!(pmtr.count("started job pool.1 ["), 1);
    let disabled = sandbox.ctl(&["disable", "pool"]);
    assert!(disabled.status.success(), "{}", text(&disabled.stderr));
    assert!(wait_until(GUARD, || live_copies(pmtr.pid()).is_empty()));
    let enabled = sandbox.ctl(&["enable", "pool"]);
    assert!(enabled.status.success(), "{}", text(&enabled.stderr));
    for i in 1..=4 {
        pmtr.expect_started(&format!("pool.{i}"), if i == 3 { 3 } else { 2 }, GUARD);
    }

    // 4 -> 2 stops pool.3 and pool.4 only; 2 -> 4 starts them only.
    let kept: Vec<i32> = (1..=2)
        .map(|i| pmtr.job_pid(&format!("pool.{i}")).unwrap())
        .collect();
    save(&pmtr.config, &pool(2, "100", &metrics_path));
    pmtr.expect("job pool.4 deleted", GUARD);
    pmtr.expect("job pool.3 deleted", GUARD);
    assert!(wait_until(GUARD, || live_copies(pmtr.pid()).len() == 2));
    save(&pmtr.config, &pool(4, "100", &metrics_path));
    pmtr.expect_started("pool.4", 3, GUARD);
    let now: Vec<i32> = (1..=2)
        .map(|i| pmtr.job_pid(&format!("pool.{i}")).unwrap())
        .collect();
    assert_eq!(now, kept, "pool.1 and pool.2 were never touched");
    assert!(kept.iter().all(|&pid| alive(pid)));
}

/// A copy that takes 0.3 s to stop, named after `version`: long enough
/// for a pool stopped all at once to be seen with no copy running.
fn slow_pool(version: &str) -> String {
    format!(
        "job {{\n name pool\n cmd /bin/sh -c \"trap 'sleep 0.3; exit 0' TERM; sleep 1000 & wait\" {version}-%i\n instances 4\n}}\n"
    )
}

/// The copies pmtr shows as running (not starting, not stopping).
fn running_copies(sandbox: &Sandbox) -> Option<usize> {
    let status = sandbox.ctl(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
    let jobs = json.as_array()?;
    Some(jobs.iter().filter(|j| j["state"] == "running").count())
}

#[test]
fn a_changed_definition_restarts_the_copies_one_at_a_time() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(&sandbox, &slow_pool("v1"));
    for i in 1..=4 {
        pmtr.expect_started(&format!("pool.{i}"), 1, SHORT);
    }
    assert!(wait_until(SHORT, || running_copies(&sandbox) == Some(4)));

    save(&pmtr.config, &slow_pool("v2"));
    let mut fewest = usize::MAX;
    let mut samples = 0;
    let rolled = wait_until(GUARD, || {
        let running = running_copies(&sandbox).unwrap_or(0);
        fewest = fewest.min(running);
        samples += 1;
        pmtr.count("started job pool.4 [") == 2 && running == 4
    });
    assert!(
        rolled,
        "the pool never ran the new definition\n{}",
        pmtr.transcript()
    );
    assert!(
        fewest >= 3,
        "{fewest} copies were running at one point ({samples} samples)"
    );
    assert_eq!(
        pmtr.count("rolling restart: restarting job pool."),
        4,
        "{}",
        pmtr.transcript()
    );
    let supervisor = pmtr.pid();
    let copies = live_copies(supervisor);
    assert_eq!(copies.len(), 4);
    assert!(
        copies.iter().all(|&pid| cmdline(pid).contains(" v2-")),
        "every copy runs v2"
    );
}

#[test]
fn check_warns_about_percent_i_without_instances() {
    let sandbox = Sandbox::new();
    let main = sandbox.write("pmtr.conf", "job {\n name one\n cmd /bin/sleep 10%i\n}\n");
    let out = sandbox.pmtr(&["-t", "-c", main.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("pmtr.conf:3:6: warning: job `one`: `%i` stands for the copy's number only in a job with `instances`"),
        "{err}"
    );
}
