//! The collector's inputs are bounded (SPEC 11.9): a client of its HTTP
//! side that stalls, never reads, or sends an endless header holds only
//! its own connection; reports beyond the limits are dropped and counted;
//! a signed report is taken once; its files are not written through links.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::fleet::http_get;
use crate::harness::{free_port, wait_until, Background, Sandbox, RPTSERVER, SHORT};

fn collector(sandbox: &Sandbox) -> (Background, u16, u16) {
    collector_with(sandbox, &[])
}

fn collector_with(sandbox: &Sandbox, extra: &[&str]) -> (Background, u16, u16) {
    let (udp, http) = (free_port(), free_port());
    let file = sandbox.path("status.txt");
    let (udp_text, http_address) = (udp.to_string(), format!("127.0.0.1:{http}"));
    let mut args = vec![
        "-p",
        &udp_text,
        "-f",
        file.to_str().unwrap(),
        "--http",
        &http_address,
    ];
    args.extend_from_slice(extra);
    let server = Background::start(sandbox, RPTSERVER, &args);
    assert!(
        wait_until(SHORT, || http_get(http, "/status.json").is_some()),
        "{}",
        server.transcript()
    );
    (server, udp, http)
}

fn received(http: u16) -> u64 {
    http_get(http, "/status.json?problems=1")
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|json| json["datagrams_received"].as_u64())
        .unwrap_or(0)
}

/// A fleet whose JSON and metrics are about 10 MB each: 100 hosts of 400
/// jobs with long commands, each report (52 KB) counted before the next.
fn large_fleet(udp: u16, http: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let command = format!("/opt/{}/bin/service", "long-path".repeat(8));
    for h in 0..100 {
        let mut report = format!("report big{h:03}\n");
        for j in 0..400 {
            report.push_str(&format!("job{j:03} e {j} {} {command}\n", 1000 + j));
        }
        socket
            .send_to(report.as_bytes(), ("127.0.0.1", udp))
            .unwrap();
        let sent = h + 1;
        assert!(
            wait_until(SHORT, || received(http) >= sent),
            "the collector took in {} of {sent} reports",
            received(http)
        );
    }
}

#[test]
fn a_client_that_never_reads_holds_up_no_one() {
    let sandbox = Sandbox::new();
    let (_server, udp, http) = collector(&sandbox);
    large_fleet(udp, http);
    // Three large answers asked for and never read: more than the
    // kernel's buffers hold, so the collector's writes to it stall.
    let mut stalled = TcpStream::connect(("127.0.0.1", http)).unwrap();
    for _ in 0..3 {
        write!(stalled, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    }
    // Let the collector start writing to it: its first bytes arrive.
    let mut first = [0u8; 16];
    stalled.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    assert!(
        wait_until(SHORT, || http_get(http, "/status.json?problems=1")
            .is_some()),
        "another client waits for the one that does not read"
    );
    drop(stalled);
}

#[test]
fn a_thousand_stalled_headers_leave_room_for_a_client() {
    let sandbox = Sandbox::new();
    let (server, _udp, http) = collector(&sandbox);
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], http));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, SHORT) else {
            break;
        };
        let _ = stream.write_all(b"GET /status.json HTTP/1.1\r\nHost: 127.");
        stalled.push(stream);
    }
    assert_eq!(stalled.len(), 1000, "connections opened");
    assert!(
        wait_until(SHORT, || http_get(http, "/status.json").is_some()),
        "no answer beside 1 000 stalled headers:\n{}",
        server.transcript()
    );
    // The stalled ones are dropped when their time to send a header is
    // up: each reads the end of its connection.
    let stream = &mut stalled[0];
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let closed = stream.read_to_end(&mut rest).is_ok();
    assert!(closed, "a stalled header is not cut off");
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[test]
fn an_endless_header_is_refused_early() {
    let sandbox = Sandbox::new();
    let (_server, _udp, http) = collector(&sandbox);
    let mut stream = TcpStream::connect(("127.0.0.1", http)).unwrap();
    stream.set_read_timeout(Some(SHORT)).unwrap();
    stream.set_write_timeout(Some(SHORT)).unwrap();
    stream
        .write_all(b"GET /status.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ")
        .unwrap();
    // 200 MiB offered; the collector stops reading long before.
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 200 << 20 {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 200 << 20, "the collector read a 200 MiB header");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert!(http_get(http, "/status.json").is_some(), "still serving");
}

fn metric(http: u16, name: &str) -> Option<u64> {
    http_get(http, "/metrics")?
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} "))?.parse().ok())
}

#[test]
fn reports_beyond_the_limits_are_dropped_counted_and_logged_once() {
    let sandbox = Sandbox::new();
    let (server, udp, http) = collector_with(&sandbox, &["--max-hosts", "3", "--max-jobs", "4"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for h in 0..10u64 {
        let report = format!("report flood{h}\na e 1 2 /a\nb e 1 3 /b\n");
        socket
            .send_to(report.as_bytes(), ("127.0.0.1", udp))
            .unwrap();
        assert!(wait_until(SHORT, || received(http) > h));
    }
    let json: serde_json::Value =
        serde_json::from_str(&http_get(http, "/status.json").unwrap()).unwrap();
    assert_eq!(json["summary"]["hosts"], 3);
    assert_eq!(json["summary"]["jobs"], 4, "{json}");
    assert_eq!(metric(http, "pmtr_fleet_reports_dropped_total"), Some(7));
    assert_eq!(metric(http, "pmtr_fleet_jobs_dropped_total"), Some(2));
    assert!(wait_until(SHORT, || server.count("dropped") >= 1));
    assert_eq!(server.count("dropped"), 1, "{}", server.transcript());
}

#[test]
fn a_signed_report_is_taken_once() {
    use pmtr_core::proto::auth::{sign, Key, Kind};
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let secret = "a shared secret of some length";
    let key = sandbox.write("pmtr.key", format!("{secret}\n"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_server, udp, http) = collector_with(&sandbox, &["-k", key.to_str().unwrap()]);
    let key = Key::new(secret.as_bytes()).unwrap();
    let now = pmtr_common::keyfile::unix_now();
    let report = sign(&key, Kind::Report, now, 1, b"report once\na e 1 2 /a\n");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&report, ("127.0.0.1", udp)).unwrap();
    socket.send_to(&report, ("127.0.0.1", udp)).unwrap();
    // A barrier: another report, sent after the replay.
    let other = sign(&key, Kind::Report, now, 2, b"report after\na e 1 2 /a\n");
    socket.send_to(&other, ("127.0.0.1", udp)).unwrap();
    let counts = || {
        let json: serde_json::Value =
            serde_json::from_str(&http_get(http, "/status.json?problems=1")?).ok()?;
        Some((
            json["datagrams_received"].as_u64()?,
            json["datagrams_refused"].as_u64()?,
        ))
    };
    assert!(
        wait_until(SHORT, || counts() == Some((2, 1))),
        "{:?}",
        counts()
    );
}

#[test]
fn the_status_file_is_never_written_through_a_planted_link() {
    let sandbox = Sandbox::new();
    let precious = sandbox.write("precious", "keep me\n");
    let (server, udp, http) = collector(&sandbox);
    let planted = sandbox.path(&format!(".status.txt.{}.tmp", server.pid()));
    std::os::unix::fs::symlink(&precious, &planted).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(b"report linked\na e 1 2 /a\n", ("127.0.0.1", udp))
        .unwrap();
    assert!(wait_until(SHORT, || received(http) == 1));
    // The status file is rewritten at most every 10 s.
    let status = sandbox.path("status.txt");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&status)
            .is_ok_and(|t| t.contains("linked:"))),
        "{}",
        server.transcript()
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    assert!(!std::fs::symlink_metadata(&status).unwrap().is_symlink());
}

#[test]
fn the_collector_listens_only_on_the_address_given() {
    let sandbox = Sandbox::new();
    let (_server, udp, _http) = collector_with(&sandbox, &["-a", "127.0.0.1"]);
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let local = |line: &str| line.split_whitespace().nth(1).map(str::to_string);
    let bound: Vec<String> = table
        .lines()
        .filter_map(local)
        .filter(|address| address.ends_with(&format!(":{udp:04X}")))
        .collect();
    assert_eq!(bound, [format!("0100007F:{udp:04X}")], "{table}");
}
