//! pmtr as PID 1 (a container's entrypoint), tested without a container
//! engine: in a new PID namespace made by `unshare`.

use crate::harness::{alive, children_of, wait_until, Pmtr, Sandbox, Signal, GUARD, SHORT};
use crate::start::is_root;

/// `unshare` makes no cgroup namespace: as PID 1 with `--cgroup auto`,
/// pmtr would take this machine's root cgroup, shared by every test
/// (containment is tested in containment.rs, in cgroups of its own).
const PID1_FLAGS: &[&str] = &["-v", "--cgroup", "off"];

#[test]
fn as_pid_1_pmtr_reaps_orphans_and_shuts_down_cleanly() {
    if crate::harness::skip_if(
        !is_root(),
        "as_pid_1_pmtr_reaps_orphans_and_shuts_down_cleanly",
        "a new PID namespace needs root",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let wrapper = ["unshare", "--fork", "--pid", "--mount-proc"];
    let mut pmtr = Pmtr::start_with(
        &sandbox,
        "job {\n name orphaner\n cmd /bin/sh -c \"(sleep 0.2 &); (sleep 0.3 &); exec sleep 1000\"\n}\n\
         job {\n name tree\n cmd /bin/sh -c \"sleep 1000 & sleep 1000 & wait\"\n}\n",
        PID1_FLAGS,
        Some(&wrapper),
    );
    pmtr.expect("pmtr[1]: pmtr: starting", SHORT);
    pmtr.expect_started("orphaner", 1, SHORT);
    pmtr.expect_started("tree", 1, SHORT);
    let host_pid = pmtr.pid();
    // The orphans are re-parented to PID 1 and reaped when they end.
    pmtr.expect_count("reaped orphan [", 2, SHORT);
    assert!(
        wait_until(SHORT, || children_of(host_pid).len() == 2
            && children_of(host_pid).into_iter().all(alive)),
        "pmtr's children: {:?}",
        children_of(host_pid)
    );
    let jobs = children_of(host_pid);
    let grandchildren: Vec<i32> = jobs.iter().flat_map(|&j| children_of(j)).collect();
    assert_eq!(grandchildren.len(), 2, "the tree job's two sleeps");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), Signal::SIGTERM);
    let status = pmtr.wait_exit(SHORT).expect("pmtr exits");
    assert_eq!(status.code(), Some(0), "{}", pmtr.transcript());
    for pid in jobs.into_iter().chain(grandchildren) {
        assert!(!alive(pid), "{pid} left behind");
    }
}

/// The shipped container example, as `docker run` would run it: pmtr as
/// PID 1, then `docker stop`'s SIGTERM.
#[test]
fn the_container_example_runs_as_pid_1() {
    if crate::harness::skip_if(
        !is_root(),
        "the_container_example_runs_as_pid_1",
        "a new PID namespace needs root",
    ) {
        return;
    }
    let sandbox = Sandbox::new();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/container/pmtr.conf"
    ))
    .unwrap();
    let wrapper = ["unshare", "--fork", "--pid", "--mount-proc"];
    let mut pmtr = Pmtr::start_with(&sandbox, &text, PID1_FLAGS, Some(&wrapper));
    pmtr.expect("pmtr[1]: pmtr: starting", SHORT);
    pmtr.expect("job setup will not be restarted (once)", SHORT);
    pmtr.expect_started("app", 1, SHORT);
    pmtr.expect_started("housekeeping", 1, SHORT);
    // `app` writes to pmtr's own stdout (`out stdout`), which the harness
    // does not read: containers::output_passes_through_byte_for_byte.
    let host_pid = pmtr.pid();
    // The housekeeping helpers (2 s and 3 s) end as orphans of PID 1.
    pmtr.expect_count("reaped orphan [", 2, GUARD);
    assert!(
        wait_until(SHORT, || children_of(host_pid).len() == 2),
        "orphans not reaped: {:?}",
        children_of(host_pid)
    );
    assert!(children_of(host_pid).into_iter().all(alive), "no zombies");
    let jobs = children_of(host_pid);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), Signal::SIGTERM);
    let status = pmtr.wait_exit(GUARD).expect("pmtr exits");
    assert_eq!(status.code(), Some(0));
    assert!(jobs.into_iter().all(|pid| !alive(pid)));
}
