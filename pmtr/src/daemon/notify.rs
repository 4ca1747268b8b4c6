//! systemd's readiness protocol (`sd_notify`) for `Type=notify`: `READY=1`
//! once the jobs are launched, `RELOADING=1` and `READY=1` around a
//! reload, `STOPPING=1` at shutdown — datagrams to `$NOTIFY_SOCKET`, and
//! nothing at all without it.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::time::{clock_gettime, ClockId};

pub const VARIABLE: &str = "NOTIFY_SOCKET";

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET` (a path, or `@name` for an abstract
    /// socket), or a silent one.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os(VARIABLE).and_then(|value| {
            let bytes = value.as_encoded_bytes();
            let address = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(std::path::Path::new(&value)).ok()?,
            };
            let socket = UnixDatagram::unbound().ok()?;
            socket.set_nonblocking(true).ok()?;
            Some((socket, address))
        });
        Notifier { target }
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.target {
            let _ = socket.send_to_addr(message.as_bytes(), address);
        }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn reloading(&self) {
        let micros = clock_gettime(ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={micros}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }
}
