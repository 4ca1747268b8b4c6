//! The fleet protocol end to end over 127.0.0.1: pmtr reports to
//! pmtr-rptserver (status file, JSON, metrics, the web page in a real
//! browser), pmtr-ctl enables and disables over UDP, with and without a
//! key, and the original C pmtr reports to our collector.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::{
    free_port, text, wait_until, Background, Pmtr, Sandbox, PMTR_CTL, RPTSERVER, SHORT,
};

/// Reports come every 10 s: long enough for two of them.
const REPORTS: Duration = Duration::from_secs(25);

pub(crate) fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(SHORT)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

pub(crate) fn status_json(port: u16) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(port, "/status.json")?).ok()
}

fn host_name() -> String {
    pmtr_common::host::host_name()
}

fn key_file(sandbox: &Sandbox, name: &str, secret: &str) -> PathBuf {
    let path = sandbox.write(name, secret);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn collector(sandbox: &Sandbox, extra: &[&str]) -> (Background, u16, u16) {
    let (udp, http) = (free_port(), free_port());
    let file = sandbox.path("status.txt");
    let mut args = vec![
        "-p".to_string(),
        udp.to_string(),
        "-f".into(),
        file.to_string_lossy().into_owned(),
    ];
    args.extend([
        "--http".to_string(),
        format!("127.0.0.1:{http}"),
        "-v".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Background::start(sandbox, RPTSERVER, &refs);
    assert!(
        wait_until(SHORT, || http_get(http, "/status.json").is_some()),
        "{}",
        server.transcript()
    );
    (server, udp, http)
}

fn jobs_of(json: &serde_json::Value, host: &str) -> Vec<String> {
    json["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["name"] == host)
        .flat_map(|h| h["jobs"].as_array().cloned().unwrap_or_default())
        .map(|j| j["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn reports_reach_the_status_file_json_and_metrics() {
    let sandbox = Sandbox::new();
    let (_server, udp, http) = collector(&sandbox, &[]);
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "report to udp://127.0.0.1:{udp}\njob {{\n name web\n cmd /bin/sleep 1000\n}}\n\
             job {{\n name spare\n cmd /bin/sleep 1001\n disable\n}}\njob {{\n name setup\n cmd /bin/true\n once\n}}\n"
        ),
    );
    let web = pmtr.expect_started("web", 1, SHORT);
    let host = host_name();
    assert!(wait_until(REPORTS, || status_json(http)
        .is_some_and(|j| jobs_of(&j, &host) == ["spare", "web"])));
    let json = status_json(http).unwrap();
    let jobs = &json["hosts"][0]["jobs"];
    assert_eq!(jobs[1]["pid"], web, "{json}");
    assert_eq!(jobs[1]["cmd"], "/bin/sleep");
    assert_eq!(jobs[0]["enabled"], false);
    assert!(
        !jobs_of(&json, &host).contains(&"setup".to_string()),
        "once jobs are not reported"
    );

    let file = sandbox.path("status.txt");
    assert!(wait_until(REPORTS, || std::fs::read_to_string(&file)
        .is_ok_and(|t| t.contains("1 systems reporting"))));
    let status = std::fs::read_to_string(&file).unwrap();
    assert!(status.starts_with("update at "));
    assert!(status.contains(&format!("\n{host}:\n")), "{status}");
    assert!(
        status.contains(&format!(
            "\t{:<40} {:<10} {:>20}\n",
            "spare", "disabled", "-"
        )),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("\tweb ") && l.contains(" enabled ") && l.ends_with('s')),
        "{status}"
    );

    let metrics = http_get(http, "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "pmtr_fleet_job_up{{host=\"{host}\",job=\"web\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "pmtr_fleet_job_enabled{{host=\"{host}\",job=\"spare\"}} 0"
    )));
    if Command::new("promtool").arg("--version").output().is_ok() {
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let page = http_get(http, "/").unwrap();
    assert!(page.contains("<title>pmtr fleet</title>"));
}

#[test]
fn remote_enable_and_disable_without_a_key() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("listen on udp://127.0.0.1:{port}\njob {{\n name a\n cmd /bin/sleep 1000\n}}\n"),
    );
    let first = pmtr.expect_started("a", 1, SHORT);
    pmtr.expect("listening for control datagrams", SHORT);
    pmtr.expect("listen on without udp key: anyone who can send", SHORT);
    let ctl = |verb: &str| {
        Command::new(PMTR_CTL)
            .args(["-s", "127.0.0.1", "-p", &port.to_string(), verb, "a"])
            .output()
            .unwrap()
    };
    assert_eq!(ctl("disable").status.code(), Some(0));
    pmtr.expect(&format!("sending SIGTERM to job a [{first}]"), SHORT);
    assert_eq!(ctl("enable").status.code(), Some(0));
    pmtr.expect_started("a", 2, SHORT);
    // An original-style datagram from anything that can send UDP.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"disable a ghost", ("127.0.0.1", port))
        .unwrap();
    pmtr.expect("no job named ghost: request ignored", SHORT);
    pmtr.expect_count("sending SIGTERM to job a", 2, SHORT);
    // pmtr-ctl says why it cannot send.
    let bad = Command::new(PMTR_CTL)
        .args(["-s", "no-such-host.invalid", "disable", "a"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).starts_with("pmtr-ctl: cannot resolve no-such-host.invalid"),
        "{}",
        text(&bad.stderr)
    );
}

/// As the original: `listen on ADDR:0` binds an ephemeral port, and the
/// log says which, so that a sender can find it.
#[test]
fn listen_on_port_zero_binds_an_ephemeral_port_it_logs() {
    let sandbox = Sandbox::new();
    let pmtr = Pmtr::start(
        &sandbox,
        "listen on udp://127.0.0.1:0\njob {\n name a\n cmd /bin/sleep 1000\n}\n",
    );
    let first = pmtr.expect_started("a", 1, SHORT);
    let line = pmtr.expect("listening for control datagrams on udp://127.0.0.1:", SHORT);
    let port: u16 = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    assert_ne!(port, 0, "{line}");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"disable a", ("127.0.0.1", port)).unwrap();
    pmtr.expect(&format!("sending SIGTERM to job a [{first}]"), SHORT);
}

#[test]
fn with_a_key_only_fresh_signed_datagrams_are_obeyed() {
    let sandbox = Sandbox::new();
    let key = key_file(&sandbox, "pmtr.key", "a shared secret of some length\n");
    let wrong = key_file(&sandbox, "wrong.key", "another secret, not the same\n");
    let port = free_port();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("udp key {}\nlisten on udp://127.0.0.1:{port}\njob {{\n name a\n cmd /bin/sleep 1000\n}}\n", key.display()),
    );
    pmtr.expect_started("a", 1, SHORT);
    pmtr.expect("listening for control datagrams", SHORT);
    let port_text = port.to_string();
    let ctl = |args: &[&str]| {
        let mut all = vec!["-s", "127.0.0.1", "-p", &port_text];
        all.extend_from_slice(args);
        Command::new(PMTR_CTL).args(&all).output().unwrap()
    };

    // Unsigned, and signed with the wrong key: refused.
    assert_eq!(ctl(&["disable", "a"]).status.code(), Some(0), "sent");
    pmtr.expect("refused a control datagram from 127.0.0.1:", SHORT);
    assert!(
        pmtr.transcript().contains(": unsigned"),
        "{}",
        pmtr.transcript()
    );
    assert_eq!(pmtr.count("sending SIGTERM"), 0);

    // Signed with the key: obeyed.
    let ok = ctl(&["-k", key.to_str().unwrap(), "disable", "a"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    pmtr.expect("sending SIGTERM to job a", SHORT);

    // A replay of a good datagram, a stale one, a wrong key: refused (the
    // refusal log is rate-limited, so the effect is what is checked).
    let secret = pmtr_core::proto::auth::Key::new(b"a shared secret of some length").unwrap();
    let now = pmtr_common::keyfile::unix_now();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let enable = pmtr_core::proto::auth::sign(
        &secret,
        pmtr_core::proto::auth::Kind::Control,
        now,
        77,
        b"enable a",
    );
    socket.send_to(&enable, ("127.0.0.1", port)).unwrap();
    pmtr.expect_started("a", 2, SHORT);
    let disable = pmtr_core::proto::auth::sign(
        &secret,
        pmtr_core::proto::auth::Kind::Control,
        now,
        78,
        b"disable a",
    );
    socket.send_to(&disable, ("127.0.0.1", port)).unwrap();
    pmtr.expect_count("sending SIGTERM to job a", 2, SHORT);
    socket.send_to(&enable, ("127.0.0.1", port)).unwrap();
    let stale = pmtr_core::proto::auth::sign(
        &secret,
        pmtr_core::proto::auth::Kind::Control,
        now - 60,
        79,
        b"enable a",
    );
    socket.send_to(&stale, ("127.0.0.1", port)).unwrap();
    let wrong_key = ctl(&["-k", wrong.to_str().unwrap(), "enable", "a"]);
    assert_eq!(wrong_key.status.code(), Some(0));
    // A barrier: a good datagram queued after the bad ones is handled
    // after them.
    let barrier = pmtr_core::proto::auth::sign(
        &secret,
        pmtr_core::proto::auth::Kind::Control,
        now,
        80,
        b"enable ghost",
    );
    socket.send_to(&barrier, ("127.0.0.1", port)).unwrap();
    pmtr.expect("no job named ghost: request ignored", SHORT);
    assert_eq!(
        pmtr.count("started job a"),
        2,
        "replayed, stale and wrongly signed enables ignored:\n{}",
        pmtr.transcript()
    );

    // pmtr-ctl refuses a key file others can read.
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exposed = ctl(&["-k", wrong.to_str().unwrap(), "enable", "a"]);
    assert_eq!(exposed.status.code(), Some(1));
    assert!(text(&exposed.stderr).contains("readable by group or others"));
}

#[test]
fn signed_reports_are_checked_by_a_collector_with_the_key() {
    let sandbox = Sandbox::new();
    let key = key_file(&sandbox, "pmtr.key", "a shared secret of some length\n");
    let (_good, good_udp, good_http) = collector(&sandbox, &["-k", key.to_str().unwrap()]);
    let other = Sandbox::new();
    let wrong = key_file(&other, "wrong.key", "another secret, not the same\n");
    let (bad_server, bad_udp, bad_http) = collector(&other, &["-k", wrong.to_str().unwrap()]);
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "udp key {}\nreport to udp://127.0.0.1:{good_udp}\nreport to udp://127.0.0.1:{bad_udp}\njob {{\n name a\n cmd /bin/sleep 1000\n}}\n",
            key.display()
        ),
    );
    pmtr.expect_started("a", 1, SHORT);
    let host = host_name();
    assert!(wait_until(REPORTS, || status_json(good_http)
        .is_some_and(|j| jobs_of(&j, &host) == ["a"])));
    assert!(wait_until(SHORT, || status_json(bad_http)
        .is_some_and(|j| j["datagrams_refused"].as_u64() > Some(0))));
    assert_eq!(
        status_json(bad_http).unwrap()["hosts"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // The log is read on a thread of the harness: it may lag the counter.
    assert!(
        wait_until(SHORT, || bad_server
            .transcript()
            .contains("signed with another key")),
        "{}",
        bad_server.transcript()
    );
}

#[test]
fn malformed_datagrams_never_harm_pmtr() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!("listen on udp://127.0.0.1:{port}\njob {{\n name a\n cmd /bin/sleep 1000\n}}\n"),
    );
    pmtr.expect_started("a", 1, SHORT);
    pmtr.expect("listening for control datagrams", SHORT);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![0xff; 100],
        vec![0; 10],
        b"PMTR1 control".to_vec(),
        vec![b'a'; 3000],
        b"enable".to_vec(),
        Vec::new(),
    ];
    junk.extend((0..2000).map(|i| format!("junk {i}").into_bytes()));
    for datagram in &junk {
        let _ = socket.send_to(datagram, ("127.0.0.1", port));
    }
    // Still serving: a good datagram after the junk is obeyed, and only
    // it. The kernel drops datagrams while pmtr's buffer is full of junk,
    // so it is sent again until it gets through (a repeat is harmless).
    let obeyed = wait_until(SHORT, || {
        socket.send_to(b"disable a", ("127.0.0.1", port)).unwrap();
        wait_until(Duration::from_millis(200), || {
            pmtr.count("sending SIGTERM to job a") > 0
        })
    });
    assert!(obeyed, "{}", pmtr.transcript());
    assert_eq!(pmtr.count("sending SIGTERM"), 1, "{}", pmtr.transcript());
    assert!(
        pmtr.count("refused a control datagram") <= 2,
        "rate-limited:\n{}",
        pmtr.transcript()
    );
}

/// The original C pmtr reporting to our collector: its wire format is the
/// one we read.
#[test]
fn the_original_pmtr_reports_to_our_collector() {
    let Some(original) = original_pmtr() else {
        crate::harness::skip_if(
            true,
            "the_original_pmtr_reports_to_our_collector",
            "the original pmtr is not built here (../shared/reference/build-original.sh)",
        );
        return;
    };
    let sandbox = Sandbox::new();
    let (_server, udp, http) = collector(&sandbox, &[]);
    let conf = sandbox.write(
        "original.conf",
        format!(
            "report to udp://127.0.0.1:{udp}\njob {{\n  name legacy\n  cmd /bin/sleep 1000\n}}\n"
        ),
    );
    // Its job stays in its group and can outlive it: the group goes too.
    let process = crate::harness::Background::start_group(
        &sandbox,
        &original,
        &["-F", "-c", conf.to_str().unwrap()],
    );
    let host = host_name();
    let shown = wait_until(REPORTS, || {
        status_json(http).is_some_and(|j| jobs_of(&j, &host) == ["legacy"])
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(process.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    assert!(shown, "{}", process.transcript());
    let json = status_json(http).unwrap();
    assert_eq!(json["hosts"][0]["jobs"][0]["cmd"], "/bin/sleep");
}

fn original_pmtr() -> Option<String> {
    if let Some(path) = std::env::var_os("PMTR_ORIGINAL") {
        return Some(path.to_string_lossy().into_owned());
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/build-original.sh"
    );
    if !std::path::Path::new(script).exists() {
        return None;
    }
    let output = Command::new(script).output().ok()?;
    let path = text(&output.stdout).lines().last()?.trim().to_string();
    std::path::Path::new(&path).exists().then_some(path)
}

/// The web page in a real browser: headless Chromium loads it, its script
/// fetches /status.json and draws the fleet; a screenshot is taken.
#[test]
fn the_web_page_shows_the_fleet_in_a_browser() {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        crate::harness::skip_if(
            true,
            "the_web_page_shows_the_fleet_in_a_browser",
            "chromium is not installed (.ci/run installs Debian's)",
        );
        return;
    };
    let sandbox = Sandbox::new();
    let (_server, udp, http) = collector(&sandbox, &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(
            b"report alpha-host\nnginx e 3725 812 /usr/sbin/nginx\nbackup d 0 0 /usr/bin/backup\n",
            ("127.0.0.1", udp),
        )
        .unwrap();
    socket
        .send_to(
            b"report beta-host 10.1.0.9\npostgres e 60 91 /usr/lib/postgresql/bin/postgres\n",
            ("127.0.0.1", udp),
        )
        .unwrap();
    assert!(wait_until(SHORT, || status_json(http)
        .is_some_and(|j| j["hosts"]
            .as_array()
            .is_some_and(|h| h.len() == 2))));
    let url = format!("http://127.0.0.1:{http}/");
    let profile = sandbox.path("chromium-profile");
    let screenshot = sandbox.path("fleet.png");
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
    ];
    let run = |extra: &[String]| {
        Command::new(chromium)
            .args(base)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let dom = run(&["--dump-dom".into()]);
    let dom = text(&dom.stdout);
    for expected in [
        "data-host=\"alpha-host\"",
        "data-host=\"beta-host\"",
        "data-job=\"nginx\"",
        "data-job=\"postgres\"",
        "1h 2m ",
        "disabled",
        "10.1.0.9",
    ] {
        assert!(
            dom.contains(expected),
            "the page does not show {expected}:\n{dom}"
        );
    }
    let shot = run(&[
        format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,800".into(),
    ]);
    assert!(screenshot.exists(), "no screenshot: {}", text(&shot.stderr));
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real picture, {} bytes",
        png.len()
    );
    // Kept for people: target/fleet-page.png.
    let _ = std::fs::copy(
        &screenshot,
        concat!(env!("CARGO_MANIFEST_DIR"), "/../target/fleet-page.png"),
    );
}

/// A flood of control datagrams without a key (the original-compatible
/// default) naming jobs already disabled and jobs that do not exist: one
/// log line per change of state, and unknown names rate-limited.
#[test]
fn a_flood_of_control_datagrams_logs_only_what_changes() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let mut text = format!("listen on udp://127.0.0.1:{port}\n");
    for j in 0..100 {
        text.push_str(&format!("job {{\n name j{j}\n cmd /bin/sleep 1000\n}}\n"));
    }
    let pmtr = Pmtr::start(&sandbox, &text);
    pmtr.expect("listening for control datagrams", SHORT);
    pmtr.expect_count("started job j", 100, SHORT);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let first: Vec<String> = (0..10).map(|j| format!("j{j}")).collect();
    let disable_first = format!("disable {}", first.join(" "));
    socket
        .send_to(disable_first.as_bytes(), ("127.0.0.1", port))
        .unwrap();
    pmtr.expect_count("disabling job j", 10, SHORT);
    let mut flood = disable_first.clone();
    for g in 0.. {
        let name = format!(" ghost{g}");
        if flood.len() + name.len() > 2000 {
            break;
        }
        flood.push_str(&name);
    }
    for _ in 0..300 {
        let _ = socket.send_to(flood.as_bytes(), ("127.0.0.1", port));
    }
    // A barrier: a change sent after the flood (again until it gets
    // through: the flood may fill pmtr's buffer; repeats change nothing).
    let through = wait_until(SHORT, || {
        socket.send_to(b"disable j99", ("127.0.0.1", port)).unwrap();
        wait_until(Duration::from_millis(200), || {
            pmtr.count("disabling job j99") > 0
        })
    });
    assert!(through, "{}", pmtr.transcript());
    assert_eq!(pmtr.count("disabling job"), 11, "{}", pmtr.transcript());
    assert!(
        pmtr.count("no job named") <= 2,
        "unknown names rate-limited:\n{}",
        pmtr.transcript()
    );
}

/// The alert rules shipped in dist/prometheus pass their promtool unit
/// tests, and name only metrics that pmtr or the collector export.
#[test]
fn the_alert_rules_pass_promtool_and_name_real_metrics() {
    let rules_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/prometheus");
    let rules = std::fs::read_to_string(format!("{rules_dir}/pmtr.rules.yml")).unwrap();
    let mut exported = pmtr_core::metrics::render(&[], 0.0);
    let mut fleet = pmtr_rptserver::fleet::Fleet::default();
    fleet.record(
        pmtr_core::proto::report::decode(b"report h\na e 1 2 /a\n").unwrap(),
        "s",
        0.0,
    );
    exported.push_str(&fleet.metrics(0.0, pmtr_rptserver::metrics::MetricsJobs::All));
    let mut named: Vec<&str> = rules
        .lines()
        .filter(|line| line.trim_start().starts_with("expr:"))
        .flat_map(|line| {
            line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("pmtr_"))
        })
        .collect();
    named.sort();
    named.dedup();
    assert!(named.len() >= 8, "{named:?}");
    for name in named {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "the rules name {name}, which nothing exports"
        );
    }
    if crate::harness::skip_if(
        Command::new("promtool").arg("--version").output().is_err(),
        "the_alert_rules_pass_promtool_and_name_real_metrics",
        "promtool is not installed (.ci/run installs Debian's prometheus)",
    ) {
        return;
    }
    let test = Command::new("promtool")
        .args(["test", "rules", "pmtr.rules.test.yml"])
        .current_dir(rules_dir)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        text(&test.stdout),
        text(&test.stderr)
    );
}

/// A `udp key` rotated in place (same path, new secret) is taken at the
/// next reload: datagrams signed with the new key are obeyed, with the old
/// one refused.
#[test]
fn a_key_rotated_in_place_is_taken_at_the_next_reload() {
    use pmtr_core::proto::auth::{sign, Key, Kind};
    let sandbox = Sandbox::new();
    let path = key_file(&sandbox, "pmtr.key", "the first secret, long enough\n");
    let port = free_port();
    let pmtr = Pmtr::start(
        &sandbox,
        &format!(
            "udp key {}\nlisten on udp://127.0.0.1:{port}\njob {{\n name a\n cmd /bin/sleep 1000\n}}\n",
            path.display()
        ),
    );
    pmtr.expect_started("a", 1, SHORT);
    pmtr.expect("listening for control datagrams", SHORT);
    std::fs::write(&path, "the second secret, long enough\n").unwrap();
    pmtr.signal(nix::sys::signal::Signal::SIGHUP);
    pmtr.expect_count("udp key", 2, SHORT);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now = pmtr_common::keyfile::unix_now();
    let old = Key::new(b"the first secret, long enough").unwrap();
    let new = Key::new(b"the second secret, long enough").unwrap();
    socket
        .send_to(
            &sign(&old, Kind::Control, now, 1, b"disable a"),
            ("127.0.0.1", port),
        )
        .unwrap();
    socket
        .send_to(
            &sign(&new, Kind::Control, now, 2, b"enable ghost"),
            ("127.0.0.1", port),
        )
        .unwrap();
    pmtr.expect("no job named ghost", SHORT);
    assert_eq!(
        pmtr.count("sending SIGTERM to job a"),
        0,
        "{}",
        pmtr.transcript()
    );
}
