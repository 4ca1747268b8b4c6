//! examples/container/ in a real container engine (podman, rootful): the
//! image built from the shipped Dockerfile and configuration, run, stopped
//! as `docker stop` does, and ended by its critical job. The base image
//! comes from `.ci/container-base.sh` (no registry is reachable here).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{skip_if, text, wait_until, Sandbox, ONCONNECT, PMTR, PMTR_CTL};
use crate::start::is_root;

const BASE_IMAGE: &str = "docker.io/library/debian:bookworm-slim";
/// The engine's own grace between `stop`'s SIGTERM and its SIGKILL.
const ENGINE_GRACE: Duration = Duration::from_secs(10);
/// Building, starting and ending a container on a loaded machine.
const ENGINE_DEADLINE: Duration = Duration::from_secs(120);

fn podman_usable(test: &str) -> bool {
    let has_podman = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if skip_if(!is_root(), test, "a rootful container engine needs root")
        || skip_if(!has_podman, test, "podman is not installed")
    {
        return false;
    }
    let has_base = Command::new("podman")
        .args(["image", "exists", BASE_IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    !skip_if(
        !has_base,
        test,
        "no base image debian:bookworm-slim (make it with .ci/container-base.sh)",
    )
}

/// The settings this machine kind needs (the notes): runc, where
/// crun refuses a hybrid cgroup layout, and ulimits root may not raise.
fn run_settings() -> Vec<&'static str> {
    let mut settings = vec![
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
    ];
    if ["/usr/bin/runc", "/usr/sbin/runc"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        settings.extend(["--runtime", "runc"]);
    }
    settings
}

/// Runs `podman ARGS` to its end, output to files of the sandbox (so that
/// no pipe fills while it runs); panics past `ENGINE_DEADLINE`.
fn podman(sandbox: &Sandbox, args: &[&str]) -> (Option<i32>, String, String) {
    let out = sandbox.path("podman.out");
    let err = sandbox.path("podman.err");
    let mut child = Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run podman");
    let mut status = None;
    let ended = wait_until(ENGINE_DEADLINE, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("podman {args:?} still running after {ENGINE_DEADLINE:?}");
    }
    let read = |path| text(&std::fs::read(path).unwrap_or_default());
    (status.and_then(|s| s.code()), read(&out), read(&err))
}

/// The image of examples/container/, with this build's binaries where the
/// Dockerfile expects `make build`'s; removed with its containers on drop.
struct Image {
    tag: String,
}

impl Image {
    fn build(sandbox: &Sandbox) -> Image {
        let context = sandbox.path("context");
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/container");
        std::fs::create_dir_all(context.join("target/release")).unwrap();
        std::fs::create_dir_all(context.join("examples/container")).unwrap();
        for (binary, name) in [
            (PMTR, "pmtr"),
            (PMTR_CTL, "pmtr-ctl"),
            (ONCONNECT, "onconnect"),
        ] {
            std::fs::copy(binary, context.join("target/release").join(name)).unwrap();
        }
        for file in ["Dockerfile", "pmtr.conf"] {
            std::fs::copy(
                Path::new(example).join(file),
                context.join("examples/container").join(file),
            )
            .unwrap();
        }
        let tag = format!("localhost/pmtr-test-{}", unique(sandbox));
        let dockerfile = context.join("examples/container/Dockerfile");
        let (code, out, err) = podman(
            sandbox,
            &[
                "build",
                "--pull=never",
                "--layers=false",
                "-f",
                dockerfile.to_str().unwrap(),
                "-t",
                &tag,
                context.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(0), "podman build:\n{out}\n{err}");
        Image { tag }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "--force", &self.tag])
            .output();
    }
}

/// A container of this test's, by a name no other test uses; removed on
/// drop.
struct Container {
    name: String,
}

impl Container {
    /// `podman run` of `image` as this container, with `options`.
    fn run(
        &self,
        sandbox: &Sandbox,
        image: &Image,
        options: &[&str],
    ) -> (Option<i32>, String, String) {
        let mut args = vec!["run", "--name", &self.name];
        args.extend(options);
        args.extend(run_settings());
        args.push(&image.tag);
        podman(sandbox, &args)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// A name part unique to this sandbox (its temp dir's own suffix).
fn unique(sandbox: &Sandbox) -> String {
    let dir = sandbox.root().file_name().unwrap().to_string_lossy();
    dir.trim_start_matches("pmtr-test-").to_ascii_lowercase()
}

/// A sandbox, the example's image and a container name of the test's
/// own; `None` when the test is skipped.
fn prepare(test: &str) -> Option<(Sandbox, Image, Container)> {
    if !podman_usable(test) {
        return None;
    }
    let sandbox = Sandbox::new();
    let image = Image::build(&sandbox);
    let container = Container {
        name: format!("pmtr-test-{}", unique(&sandbox)),
    };
    Some((sandbox, image, container))
}

#[test]
fn the_container_example_stops_on_sigterm_with_0_and_logs_pass_through() {
    let Some((sandbox, image, container)) =
        prepare("the_container_example_stops_on_sigterm_with_0_and_logs_pass_through")
    else {
        return;
    };
    let (code, out, err) = container.run(&sandbox, &image, &["--detach"]);
    assert_eq!(code, Some(0), "podman run:\n{out}\n{err}");

    // The app job writes `app alive` to the container's stdout, untouched;
    // pmtr's own log goes to its stderr.
    let mut logs = (String::new(), String::new());
    let app_logged = wait_until(ENGINE_DEADLINE, || {
        let (_, out, err) = podman(&sandbox, &["logs", &container.name]);
        logs = (out, err);
        logs.0.lines().any(|l| l == "app alive") && logs.1.contains("started job housekeeping")
    });
    assert!(app_logged, "podman logs:\n{}\n---\n{}", logs.0, logs.1);
    assert!(
        !logs.0.contains("pmtr["),
        "pass-through stdout carries only the job's lines:\n{}",
        logs.0
    );

    let asked = Instant::now();
    let (code, out, err) = podman(&sandbox, &["stop", &container.name]);
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "podman stop:\n{out}\n{err}");
    eprintln!("podman stop took {took:?} (the engine's grace: {ENGINE_GRACE:?})");
    let (_, exit_code, _) = podman(
        &sandbox,
        &[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &container.name,
        ],
    );
    // Had pmtr not ended on SIGTERM, the engine would have killed it at the
    // end of its grace: exit code 137, not 0.
    assert_eq!(exit_code.trim(), "0", "the container's exit code");
    assert!(took < ENGINE_GRACE, "stop took {took:?}");
    let (_, _, log) = podman(&sandbox, &["logs", &container.name]);
    assert!(log.contains("pmtr[1]: pmtr: exiting on signal 15"), "{log}");
}

#[test]
fn the_container_ends_with_its_critical_jobs_exit_code() {
    let Some((sandbox, image, container)) =
        prepare("the_container_ends_with_its_critical_jobs_exit_code")
    else {
        return;
    };
    // The example's image with a main program that fails with status 3.
    let config = sandbox.write(
        "pmtr.conf",
        "job {\n name app\n cmd /bin/sh -c \"echo app failing; exit 3\"\n critical\n once\n\
         out stdout\n}\njob {\n name side\n cmd /bin/sleep 3600\n}\n",
    );
    let mount = format!("{}:/etc/pmtr.conf:ro", config.display());
    let (code, out, err) = container.run(&sandbox, &image, &["--volume", &mount]);
    assert_eq!(code, Some(3), "podman run:\n{out}\n{err}");
    assert!(out.lines().any(|l| l == "app failing"), "{out}");
    assert!(err.contains("sending SIGTERM to job side"), "{err}");
}
