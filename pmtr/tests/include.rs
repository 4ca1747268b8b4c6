//! `include` (SPEC 11.10): a directory of job files read with the main
//! one, checked by `pmtr -t`, and reloaded file by file.

use std::path::Path;

use crate::harness::{alive, text, Pmtr, Sandbox, GUARD, SHORT};

fn job(name: &str, cmd: &str) -> String {
    format!("job {{\n name {name}\n cmd {cmd}\n}}\n")
}

const RESCANNING: &str = "rescanning job configuration";

/// Saves the way editors and configuration management do: renamed over.
fn save(path: &Path, text: &str) {
    let temporary = path.with_file_name(".pmtr-save.tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// Each job's pid, asserting it runs.
fn pids(pmtr: &Pmtr, names: &[&str]) -> Vec<i32> {
    names
        .iter()
        .map(|name| {
            let pid = pmtr
                .job_pid(name)
                .unwrap_or_else(|| panic!("{name} never started"));
            assert!(
                alive(pid),
                "{name} [{pid}] is not running\n{}",
                pmtr.transcript()
            );
            pid
        })
        .collect()
}

#[test]
fn adding_editing_removing_and_breaking_included_files_applies_minimally() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path("pmtr.d");
    std::fs::create_dir(&dir).unwrap();
    for (name, n) in [("a", 1), ("b", 2), ("c", 3)] {
        sandbox.write(
            &format!("pmtr.d/{name}.conf"),
            job(name, &format!("/bin/sleep 100{n}")),
        );
    }
    let pmtr = Pmtr::start(&sandbox, "include pmtr.d/*.conf\n");
    for name in ["a", "b", "c"] {
        pmtr.expect_started(name, 1, SHORT);
    }
    let before = pids(&pmtr, &["a", "b", "c"]);

    save(&dir.join("d.conf"), &job("d", "/bin/sleep 1004"));
    pmtr.expect_started("d", 1, GUARD);
    assert_eq!(
        pids(&pmtr, &["a", "b", "c"]),
        before,
        "adding d touched no other job"
    );

    save(&dir.join("b.conf"), &job("b", "/bin/sleep 2002"));
    let b = pmtr.expect_started("b", 2, GUARD);
    assert!(!before.contains(&b));
    let (a, c) = (before[0], before[2]);
    let d = pids(&pmtr, &["d"])[0];
    assert_eq!(
        pids(&pmtr, &["a", "c", "d"]),
        [a, c, d],
        "editing b touched no other job"
    );

    std::fs::remove_file(dir.join("c.conf")).unwrap();
    pmtr.expect("job c deleted: it will not be restarted", GUARD);
    assert!(
        crate::harness::wait_until(SHORT, || !alive(c)),
        "c still runs"
    );
    assert_eq!(
        pids(&pmtr, &["a", "b", "d"]),
        [a, b, d],
        "removing c touched no other job"
    );

    let started = pmtr.count("started job");
    save(
        &dir.join("a.conf"),
        "job {\n name a\n cmd /bin/sleep 1001\n onse\n}\n",
    );
    let line = pmtr.expect("pmtr.d/a.conf:4:2: error: unknown option `onse`", GUARD);
    assert!(line.contains(&dir.to_string_lossy().into_owned()), "{line}");
    assert_eq!(
        pids(&pmtr, &["a", "b", "d"]),
        [a, b, d],
        "a broken file changed nothing"
    );
    assert_eq!(pmtr.count("started job"), started);

    // Fixed as it was: read, and nothing to do.
    let rescans = pmtr.count(RESCANNING);
    save(&dir.join("a.conf"), &job("a", "/bin/sleep 1001"));
    pmtr.expect_count(RESCANNING, rescans + 1, GUARD);
    assert_eq!(pids(&pmtr, &["a", "b", "d"]), [a, b, d]);
    assert_eq!(pmtr.count("started job"), started);
}

#[test]
fn check_names_the_included_file_of_each_error() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "pmtr.d/web.conf",
        "job {\n  name web\n  cmd /bin/true\n  nice 99\n}\n",
    );
    sandbox.write("pmtr.d/db.conf", job("web", "/bin/true"));
    let main = sandbox.write(
        "pmtr.conf",
        "include pmtr.d/*.conf\ninclude missing/*.conf\n",
    );
    let out = sandbox.pmtr(&["-t", "-c", main.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let dir = sandbox.path("pmtr.d");
    let dir = dir.to_string_lossy();
    assert!(
        err.contains(&format!(
            "{dir}/web.conf:4:8: error: nice: 99 is out of range"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{dir}/web.conf:2:8: error: duplicate job name `web` (first defined at {dir}/db.conf:1)")),
        "{err}"
    );
    assert!(err.contains("2 errors in configuration"), "{err}");

    sandbox.write("pmtr.d/web.conf", job("other", "/bin/true"));
    let out = sandbox.pmtr(&["-t", "-c", main.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration ok: 2 jobs"));
}

#[test]
fn a_fifo_in_place_of_an_included_file_is_refused_without_blocking() {
    let sandbox = Sandbox::new();
    let fifo = sandbox.path("pmtr.d/x.conf");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let main = sandbox.write("pmtr.conf", "include pmtr.d/*.conf\n");
    let out = sandbox.pmtr(&["-t", "-c", main.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains("x.conf: not a regular file"), "{err}");
}
