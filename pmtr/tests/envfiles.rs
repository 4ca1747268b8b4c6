//! `env file` (SPEC 11.10): read at every start of the job, a missing one
//! is a failed start saying why, `pmtr -t` warns about it.

use crate::harness::{text, wait_until, Pmtr, Sandbox, GUARD, SHORT};

fn environ(pid: i32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    bytes
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn a_missing_file_fails_the_start_and_the_file_is_read_at_each_start() {
    let sandbox = Sandbox::new();
    let env = sandbox.path("app.env");
    let config = format!(
        "job {{\n name app\n cmd /bin/sleep 1000\n env file {}\n env file -{}\n env FIXED=line\n}}\n",
        env.display(),
        sandbox.path("optional.env").display()
    );
    let pmtr = Pmtr::start(&sandbox, &config);
    pmtr.expect(
        &format!(
            "unable to start job app: env file {}: No such file or directory",
            env.display()
        ),
        SHORT,
    );

    std::fs::write(
        &env,
        "# written by config management\nMODE=\"first run\"\nFIXED=file\n",
    )
    .unwrap();
    let first = pmtr.expect_started("app", 1, GUARD);
    assert!(wait_until(SHORT, || environ(first)
        .contains(&"MODE=first run".to_string())));
    assert!(
        environ(first).contains(&"FIXED=line".to_string()),
        "env lines win"
    );

    std::fs::write(&env, "MODE=second\n").unwrap();
    let restarted = sandbox.ctl(&["restart", "app"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let second = pmtr.expect_started("app", 2, GUARD);
    assert!(wait_until(SHORT, || environ(second)
        .contains(&"MODE=second".to_string())));
}

#[test]
fn check_warns_about_a_missing_or_malformed_env_file() {
    let sandbox = Sandbox::new();
    let bad = sandbox.write("bad.env", "GOOD=1\nnot a setting\n");
    let missing = sandbox.path("missing.env");
    let main = sandbox.write(
        "pmtr.conf",
        format!(
            "job {{\n name app\n cmd /bin/true\n env file {}\n env file {}\n env file -/no/such.env\n}}\n",
            missing.display(),
            bad.display()
        ),
    );
    let out = sandbox.pmtr(&["-t", "-c", main.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("pmtr.conf:4:11: warning: job `app`: env file {}: No such file or directory; the job will not start", missing.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "pmtr.conf:5:11: warning: job `app`: env file {}: line 2: `not a setting` has no `=`",
            bad.display()
        )),
        "{err}"
    );
    assert!(text(&out.stdout).contains("configuration ok: 1 job, 2 warnings"));
}
