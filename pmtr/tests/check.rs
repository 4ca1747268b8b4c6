//! `pmtr -t` end to end through the real binary: verdicts, the shape of
//! errors and warnings, flags, and hostile files.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{text, Sandbox, PMTR};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/differential/corpus");
const DIFFERENCES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/differential/expected-differences.tsv"
);

/// Our verdict on every file of the differential corpus is the one its
/// name (or expected-differences.tsv) promises.
#[test]
fn corpus_verdicts() {
    let differences = std::fs::read_to_string(DIFFERENCES).unwrap();
    let sandbox = Sandbox::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(CORPUS).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = match name.split('-').next().unwrap() {
            "valid" => "valid",
            "invalid" => "invalid",
            "diff" => differences
                .lines()
                .find_map(|line| {
                    let fields: Vec<&str> = line.split('\t').collect();
                    (fields[0] == name).then(|| fields[1])
                })
                .unwrap_or_else(|| panic!("{name} is not in expected-differences.tsv")),
            other => panic!("corpus file {name}: unknown prefix {other}"),
        };
        let output = sandbox.pmtr(&["-t", "-c", path.to_str().unwrap()]);
        let verdict = if output.status.success() {
            "valid"
        } else {
            "invalid"
        };
        assert_eq!(verdict, expected, "{name}: {}", text(&output.stderr));
        match verdict {
            "valid" => assert_eq!(output.status.code(), Some(0)),
            _ => assert_eq!(output.status.code(), Some(1)),
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} corpus files");
}

#[test]
fn errors_show_file_line_column_the_line_and_a_caret() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write(
        "bad.conf",
        "job {\n  name a\n  onse\n  cmd /bin/true\n}\njob {\n  name b\n  cmd sleep\n}\n",
    );
    let output = sandbox.pmtr(&["-tc", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let conf = conf.display();
    assert_eq!(
        text(&output.stderr),
        format!(
            "{conf}:3:3: error: unknown option `onse`; did you mean `once`?\n\
             3 |   onse\n  |   ^^^^\n\
             {conf}:8:7: error: cmd must be an absolute path (pmtr does no $PATH search): `sleep`\n\
             8 |   cmd sleep\n  |       ^^^^^\n\
             pmtr: {conf}: 2 errors in configuration\n"
        )
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn a_valid_file_says_ok_and_exits_zero() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("ok.conf", "job {\n name a\n cmd /bin/sleep 1\n}\n");
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).ends_with("configuration ok: 1 job\n"));
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
}

#[test]
fn run_time_problems_are_warnings_that_do_not_fail_the_check() {
    let sandbox = Sandbox::new();
    let key = sandbox.write("key", "secret");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = sandbox.write("not-executable.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = sandbox.write(
        "warn.conf",
        format!(
            "job {{\n name a\n cmd {}\n user no-such-user-here\n dir /no/such/dir\n}}\n\
             job {{\n name b\n cmd /no/such/program\n dir {}\n depends {{ missing.conf }}\n}}\n\
             udp key {}\n",
            script.display(),
            sandbox.root().display(),
            key.display()
        ),
    );
    let output = sandbox.pmtr(&["--test", "--config", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for expected in [
        ":3:6: warning: job `a`: ",
        "is not executable",
        ":4:7: warning: job `a`: unknown user `no-such-user-here`",
        ":5:6: warning: job `a`: directory `/no/such/dir` does not exist",
        ":9:6: warning: job `b`: `/no/such/program` cannot be run: No such file or directory",
        "warning: job `b`: dependency `",
        "missing.conf` does not exist",
        ":13:9: warning: udp key `",
        "readable by group or others",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(text(&output.stdout).ends_with("configuration ok: 2 jobs, 6 warnings\n"));
}

#[test]
fn flags_combine_and_have_long_forms() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("x.conf", "");
    let conf = conf.to_str().unwrap();
    for args in [
        vec!["-tc", conf],
        vec!["-t", "-c", conf],
        vec!["--test", "--config", conf],
        vec!["-vtc", conf],
    ] {
        let output = sandbox.pmtr(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    let help = sandbox.pmtr(&["-h"]);
    assert!(help.status.success());
    for flag in [
        "--config",
        "--foreground",
        "--test",
        "--verbose",
        "--pidfile",
    ] {
        assert!(text(&help.stdout).contains(flag), "{flag}");
    }
    let version = sandbox.pmtr(&["-V"]);
    assert!(text(&version.stdout).starts_with("pmtr "));
    let bad = sandbox.pmtr(&["--no-such-flag"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_missing_file_is_an_error() {
    let sandbox = Sandbox::new();
    let output = sandbox.pmtr(&["-t", "-c", "missing.conf"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "pmtr: unable to read missing.conf: No such file or directory\n"
    );
}

#[test]
fn hostile_files_get_a_clear_verdict() {
    let sandbox = Sandbox::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.conf", Vec::new(), "configuration ok: 0 jobs"),
        (
            "binary.conf",
            b"\x7fELF\x02\x01\x01\0\0\0garbage".to_vec(),
            "not a text file",
        ),
        (
            "latin1.conf",
            b"job {\n name caf\xe9\n cmd /bin/true\n}\n".to_vec(),
            "not valid UTF-8",
        ),
        (
            "nul.conf",
            b"job {\n name a\0b\n}\n".to_vec(),
            ":2:8: error: the file holds a NUL byte",
        ),
    ];
    for (name, contents, expected) in cases {
        let conf = sandbox.write(name, &contents);
        let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
        let all = text(&output.stdout) + &text(&output.stderr);
        assert!(all.contains(expected), "{name}: {all}");
    }
}

#[test]
fn a_ten_megabyte_line_is_reported_briefly() {
    let sandbox = Sandbox::new();
    let mut contents = b"job {\n name ".to_vec();
    contents.extend(std::iter::repeat_n(b'x', 10 << 20));
    contents.extend_from_slice(b"\n cmd /bin/true\n}\n");
    let conf = sandbox.write("long.conf", &contents);
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(":2:7: error: the job name is longer than 255 bytes"),
        "{}",
        &stderr[..200.min(stderr.len())]
    );
    assert!(stderr.len() < 1000, "{} bytes of diagnostics", stderr.len());
}

#[test]
fn a_hundred_thousand_jobs_check() {
    let sandbox = Sandbox::new();
    let mut contents = String::new();
    for i in 0..100_000 {
        contents.push_str(&format!("job {{\n name job{i}\n cmd /bin/true\n}}\n"));
    }
    let conf = sandbox.write("many.conf", contents);
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("100000 jobs"));
}

#[test]
fn a_flood_of_errors_is_capped() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write("flood.conf", "bogus\n".repeat(5000));
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.matches("error: unknown statement").count(), 100);
    assert!(stderr.contains("4900 more not shown"));
    assert!(stderr.ends_with("5000 errors in configuration\n"));
}

/// SPEC 11.3: a cycle of `after` is an error at FILE:LINE:COL that names
/// every job of the cycle.
#[test]
fn a_cycle_of_after_is_reported_with_every_job_in_it() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write(
        "cycle.conf",
        "job {\n name a\n cmd /bin/true\n after b\n}\njob {\n name b\n cmd /bin/true\n after c\n}\n\
         job {\n name c\n cmd /bin/true\n after a\n}\n",
    );
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let path = conf.display();
    assert!(
        stderr.contains(&format!("{path}:4:8: error: after: a cycle: a → b → c → a")),
        "{stderr}"
    );
}

/// The shipped examples are valid configurations.
#[test]
fn the_shipped_examples_check() {
    for example in [
        "pmtr.conf",
        "ordered.conf",
        "ranked.conf",
        "container/pmtr.conf",
        "include/pmtr.conf",
    ] {
        let path = format!("{}/../examples/{example}", env!("CARGO_MANIFEST_DIR"));
        // From the top of the repository, as the examples say.
        let output = std::process::Command::new(PMTR)
            .args(["-t", "-c", &path])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{example}: {}",
            text(&output.stderr)
        );
        assert!(
            !text(&output.stderr).contains("warning"),
            "{example}: {}",
            text(&output.stderr)
        );
    }
}

/// The new options' bad input, through `pmtr -t`: each error at its
/// FILE:LINE:COL, with the hint.
#[test]
fn bad_values_of_the_newer_options_are_reported_where_they_are() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write(
        "bad.conf",
        "job {\n name a\n cmd /bin/true\n restart allways\n backoff 5s 1s\n stop signal TREM\n give up after 0\n ready fiel x\n}\n",
    );
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let path = conf.display();
    for expected in [
        format!("{path}:4:10: error: restart: `allways` is not always, on-failure or never; did you mean `always`?"),
        format!("{path}:5:13: error: backoff: MAX `1s` is below INITIAL `5s`"),
        format!("{path}:6:14: error: stop signal: `TREM` is not one of TERM, INT, QUIT, HUP, USR1, USR2, KILL, WINCH; did you mean `TERM`?"),
        format!("{path}:7:16: error: give up after: `0` is not a count from 1 to 1000000"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(stderr.contains("did you mean `file`?"), "{stderr}");
}

/// SPEC 11.5: a critical job that is disabled is a warning, not an error.
#[test]
fn a_disabled_critical_job_is_a_warning() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write(
        "c.conf",
        "job {\n name main\n cmd /bin/true\n critical\n disable\n}\n",
    );
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    let expected = format!(
        "{}:4:2: warning: job `main` is critical and disabled: pmtr will never start the job it exists for",
        conf.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

/// SPEC 11.3, 11.4: the readiness and health lines' bad input, each at
/// its FILE:LINE:COL.
#[test]
fn bad_readiness_and_health_lines_are_reported_where_they_are() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write(
        "bad.conf",
        "job {\n name a\n cmd /bin/true\n ready notify\n ready tcp 80\n health every 0s\n health retries 0\n health cmd curl -sf x\n health evry 5s\n}\njob {\n name b\n cmd /bin/true\n ready cmd\n}\n",
    );
    let output = sandbox.pmtr(&["-t", "-c", conf.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let path = conf.display();
    for expected in [
        format!("{path}:5:8: error: `ready` is given twice"),
        format!("{path}:6:15: error: health every: the duration must be more than 0"),
        format!("{path}:7:17: error: health retries: `0` is not a count from 1 to 1000"),
        format!("{path}:8:13: error: health cmd must start with an absolute path (pmtr does no $PATH search): `curl`"),
        format!("{path}:9:9: error: write `health cmd /PATH [ARG...]`"),
        format!("{path}:14:8: error: `ready cmd` needs a command"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(stderr.contains("did you mean `every`?"), "{stderr}");
}

/// `listen on` without `udp key` is valid (as the original) but warned
/// about: anyone who reaches the port can enable and disable jobs.
#[test]
fn listening_without_a_key_is_warned_about() {
    let sandbox = Sandbox::new();
    let open = sandbox.write(
        "open.conf",
        "listen on udp://127.0.0.1:0\njob {\n name a\n cmd /bin/sleep 1\n}\n",
    );
    let output = sandbox.pmtr(&["-t", "-c", open.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("listen on without udp key"),
        "{}",
        text(&output.stderr)
    );
    let key = sandbox.write("pmtr.key", "a shared secret of some length\n");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let signed = sandbox.write(
        "signed.conf",
        format!(
            "udp key {}\nlisten on udp://127.0.0.1:0\njob {{\n name a\n cmd /bin/sleep 1\n}}\n",
            key.display()
        ),
    );
    let output = sandbox.pmtr(&["-t", "-c", signed.to_str().unwrap()]);
    assert!(
        !text(&output.stderr).contains("without udp key"),
        "{}",
        text(&output.stderr)
    );
}
