//! systemd `Type=notify`: the sd_notify datagrams pmtr sends, driven with
//! a fake NOTIFY_SOCKET the test owns.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::harness::{Pmtr, Sandbox, Signal, SHORT};

fn next(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 512];
    let n = socket.recv(&mut buffer).expect("a notification");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// pmtr on `config` with a NOTIFY_SOCKET the test reads.
fn with_notify_socket(sandbox: &Sandbox, config: &str) -> (Pmtr, UnixDatagram) {
    let path = sandbox.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(SHORT)).unwrap();
    let notify = [("NOTIFY_SOCKET", path.to_str().unwrap())];
    (Pmtr::start_env(sandbox, config, &[], None, &notify), socket)
}

#[test]
fn ready_reloading_ready_stopping() {
    let sandbox = Sandbox::new();
    let (mut pmtr, socket) = with_notify_socket(
        &sandbox,
        "job {\n name env\n cmd /bin/sh -c \"echo notify=${NOTIFY_SOCKET:-unset}; exec sleep 1000\"\n}\n",
    );
    assert_eq!(next(&socket), "READY=1");
    pmtr.expect_started("env", 1, SHORT);
    pmtr.expect("notify=unset", SHORT);

    pmtr.signal(Signal::SIGHUP);
    let reloading = next(&socket);
    let (first, usec) = reloading.split_once('\n').unwrap();
    assert_eq!(first, "RELOADING=1");
    let micros: u64 = usec
        .strip_prefix("MONOTONIC_USEC=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(micros > 0);
    assert_eq!(next(&socket), "READY=1");

    pmtr.signal(Signal::SIGTERM);
    assert_eq!(next(&socket), "STOPPING=1");
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buffer = [0u8; 64];
    assert!(socket.recv(&mut buffer).is_err(), "nothing after STOPPING");
}

/// SPEC 11.8: a reexec is, to systemd, a reload of the same process —
/// RELOADING=1, then READY=1 from the new binary — and the new binary
/// speaks to systemd as the old one did.
#[test]
fn a_reexec_is_a_reload_to_systemd() {
    let sandbox = Sandbox::new();
    let (mut pmtr, socket) =
        with_notify_socket(&sandbox, "job {\n name a\n cmd /bin/sleep 1000\n}\n");
    assert_eq!(next(&socket), "READY=1");
    let pid = pmtr.pid();
    assert!(sandbox.ctl(&["reexec"]).status.success());
    assert!(next(&socket).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(next(&socket), "READY=1");
    pmtr.expect("adopted job a [", SHORT);
    assert_eq!(pmtr.pid(), pid, "MAINPID unchanged");
    pmtr.signal(Signal::SIGTERM);
    assert_eq!(next(&socket), "STOPPING=1");
    assert_eq!(pmtr.wait_exit(SHORT).and_then(|s| s.code()), Some(0));
}

#[test]
fn nothing_is_sent_without_notify_socket() {
    // Without the variable pmtr runs as ever; a stray socket in its
    // directory receives nothing.
    let sandbox = Sandbox::new();
    let socket = UnixDatagram::bind(sandbox.path("notify.sock")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let pmtr = Pmtr::start(&sandbox, "job {\n name a\n cmd /bin/sleep 1000\n}\n");
    pmtr.expect_started("a", 1, SHORT);
    let mut buffer = [0u8; 64];
    assert!(socket.recv(&mut buffer).is_err());
}
