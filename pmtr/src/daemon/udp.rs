//! The UDP side of pmtr: status reports to each `report to` destination,
//! control datagrams on the `listen on` address, and their signatures with
//! `udp key`. Names resolve when a socket is made, never in the parser, on
//! a helper thread so that a slow DNS cannot stall the loop; a name that
//! does not resolve yet is tried again at the next report.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pmtr_core::config::{Globals, UdpEndpoint};
use pmtr_core::proto::auth::{self, Key, Kind, ReplayGuard};
use pmtr_core::proto::control::{self, MAX_DATAGRAM};
use pmtr_core::time::Mono;

use crate::sys::net;
use pmtr_common::keyfile;
use pmtr_common::reason::Reason;

/// Most datagrams read per wake-up, so that a flood cannot starve the rest
/// of the loop.
const MAX_DATAGRAMS_PER_WAKEUP: usize = 256;
/// At most one refusal line per this period; the rest are counted.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// A `report to` destination and its socket.
struct Destination {
    endpoint: UdpEndpoint,
    socket: Option<UdpSocket>,
    /// Filled by the resolver thread, with when: a name is looked up again
    /// once `RESOLVE_AGAIN` has passed (or a send failed), so that a
    /// collector that moved is followed.
    resolved: Arc<Mutex<Option<(SocketAddr, Instant)>>>,
    /// The destination is an address, not a name: never looked up.
    literal: bool,
    /// A resolver thread is at work.
    resolving: Arc<AtomicBool>,
    /// `HOSTNAME` or `HOSTNAME IFACE-ADDR`.
    report_id: String,
}

/// The UDP configuration in force and its sockets.
pub struct Udp {
    globals: Globals,
    destinations: Vec<Destination>,
    listener: Option<UdpSocket>,
    key: Option<Key>,
    /// Refused without a key: the key file was unusable.
    key_refused: bool,
    replay: ReplayGuard,
    refusals: RefusalLog,
}

/// Looks `host` up on a helper thread, waiting at most `limit`: a resolver
/// that hangs must not hold pmtr's loop.
fn resolve_within(host: &str, port: u16, limit: Duration) -> Result<SocketAddr, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let name = (host.to_string(), port);
    std::thread::Builder::new()
        .name("pmtr-resolve".into())
        .spawn(move || {
            let found = name
                .to_socket_addrs()
                .map_err(|e| e.to_string())
                .and_then(|mut a| a.next().ok_or_else(|| "no such address".to_string()));
            let _ = sender.send(found);
        })
        .map_err(|e| format!("unable to look {host} up: {}", Reason(&e)))?;
    receiver.recv_timeout(limit).unwrap_or_else(|_| {
        Err(format!(
            "{host} did not resolve within {} s (tried again at the next reload)",
            limit.as_secs()
        ))
    })
}

/// A `report to` name is looked up again this often, so that a collector
/// whose address changed is followed.
const RESOLVE_AGAIN: Duration = Duration::from_secs(300);

/// Log lines: what `apply` and `receive` want logged.
pub type Lines = Vec<String>;

/// Said at start (and by `pmtr -t`) when `listen on` has no `udp key`.
pub const UNSIGNED_CONTROL_WARNING: &str = "listen on without udp key: anyone who can send a datagram to it can enable and disable jobs (add `udp key FILE`)";

impl Udp {
    pub fn new() -> Udp {
        Udp {
            globals: Globals::default(),
            destinations: Vec::new(),
            listener: None,
            key: None,
            key_refused: false,
            replay: ReplayGuard::default(),
            refusals: RefusalLog::default(),
        }
    }

    /// The listener's socket, to watch for readability.
    pub fn listener(&self) -> Option<&UdpSocket> {
        self.listener.as_ref()
    }

    /// Applies the global statements of a configuration: reopens what
    /// changed, leaves the rest alone. Returns lines to log.
    pub fn apply(&mut self, globals: &Globals) -> Lines {
        let mut log = Vec::new();
        // Read again at every reload, even at the same path: a key rotated
        // in place is taken then.
        let same_path = globals.udp_key == self.globals.udp_key;
        match &globals.udp_key {
            None => {
                self.key = None;
                self.key_refused = false;
            }
            Some(path) => match keyfile::load(Path::new(path)) {
                Ok(key) => {
                    let known = self.key.as_ref().map(|k| k.id());
                    if !same_path || known != Some(key.id()) {
                        log.push(format!("udp key {path}: key id {}", key.id()));
                    }
                    self.key = Some(key);
                    self.key_refused = false;
                }
                Err(reason) => {
                    if !(same_path && self.key_refused) {
                        log.push(format!(
                            "udp key {path}: {reason}; UDP reports and control are off"
                        ));
                    }
                    self.key = None;
                    self.key_refused = true;
                }
            },
        }
        if globals.report_to != self.globals.report_to {
            let host = pmtr_common::host::host_name();
            self.destinations = globals
                .report_to
                .iter()
                .map(|endpoint| Destination::new(endpoint, &host, &mut log))
                .collect();
        }
        if globals.listen_on != self.globals.listen_on {
            self.listener = None;
            if let Some(endpoint) = &globals.listen_on {
                match bind(endpoint) {
                    Ok(socket) => {
                        // Port 0 is an ephemeral port: say which one.
                        let port = socket.local_addr().map_or(endpoint.port, |a| a.port());
                        log.push(format!(
                            "listening for control datagrams on udp://{}:{port}",
                            endpoint.host
                        ));
                        if globals.udp_key.is_none() {
                            log.push(UNSIGNED_CONTROL_WARNING.to_string());
                        }
                        self.listener = Some(socket);
                    }
                    Err(reason) => log.push(format!(
                        "unable to listen on udp://{}:{}: {reason}",
                        endpoint.host, endpoint.port
                    )),
                }
            }
        }
        self.globals = globals.clone();
        if self.listener.is_none() {
            // Not bound (a name that did not resolve, an address in use):
            // tried again at the next reload, even of the same file.
            self.globals.listen_on = None;
        }
        log
    }

    /// Sends `datagrams` (a report, split) to every destination, signed if
    /// there is a key.
    pub fn send_report(&mut self, payloads: impl Fn(&str) -> Vec<String>) -> Lines {
        let mut log = Vec::new();
        if self.key_refused {
            return log;
        }
        for destination in &mut self.destinations {
            let Some(target) = destination.target() else {
                continue;
            };
            let Some(socket) = &destination.socket else {
                continue;
            };
            let mut failed = false;
            for payload in payloads(&destination.report_id) {
                let datagram = match &self.key {
                    Some(key) => auth::sign(
                        key,
                        Kind::Report,
                        keyfile::unix_now(),
                        keyfile::nonce(),
                        payload.as_bytes(),
                    ),
                    None => payload.into_bytes(),
                };
                if let Err(error) = socket.send_to(&datagram, target) {
                    // Nobody listening yet is the collector's business.
                    if error.kind() != std::io::ErrorKind::ConnectionRefused {
                        log.push(format!(
                            "unable to send a report to {target}: {}",
                            Reason(&error)
                        ));
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                destination.forget_address();
            }
        }
        log
    }

    /// Reads the datagrams waiting on the listener: the (job, enabled)
    /// requests of those that pass, and lines to log.
    pub fn receive(&mut self, most: usize) -> (Vec<(String, bool)>, Lines, usize) {
        let mut requests = Vec::new();
        let mut log = Vec::new();
        let mut read = 0;
        let Some(listener) = &self.listener else {
            return (requests, log, read);
        };
        let mut buffer = [0u8; MAX_DATAGRAM + 256];
        for _ in 0..MAX_DATAGRAMS_PER_WAKEUP.min(most) {
            let (n, from) = match listener.recv_from(&mut buffer) {
                Ok(received) => received,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: all read
            };
            read += 1;
            let datagram = &buffer[..n];
            let payload = match (&self.key, self.key_refused) {
                (_, true) => Err("refused: no usable udp key".to_string()),
                (None, false) if auth::is_signed(datagram) => {
                    Err("signed, but pmtr has no udp key".to_string())
                }
                (None, false) => Ok(datagram),
                (Some(key), false) => auth::verify(key, Kind::Control, datagram)
                    .and_then(|verified| {
                        self.replay.admit(&verified, keyfile::unix_now())?;
                        Ok(verified.payload)
                    })
                    .map_err(|refusal| refusal.to_string()),
            };
            let decoded = payload
                .and_then(|p| control::decode(p).map_err(|e| format!("invalid control msg ({e})")));
            match decoded {
                Ok(found) => requests.extend(found),
                Err(reason) => {
                    if let Some(line) = self.refusals.refused(from, &reason) {
                        log.push(line);
                    }
                }
            }
        }
        (requests, log, read)
    }
}

/// Control datagrams read per second, at most: a flood costs pmtr this
/// much and no more. Beyond it the listener is left unwatched until the
/// second is over, and the kernel drops what comes meanwhile.
pub const CONTROL_PER_SECOND: usize = 200;

/// The per-second budget of control datagrams.
#[derive(Debug, Default)]
pub struct ControlBudget {
    window: Option<Mono>,
    used: usize,
    paused_until: Option<Mono>,
    /// Seconds cut short since the last line that said so, and when that was.
    unsaid: u64,
    said_at: Option<Mono>,
}

impl ControlBudget {
    /// Datagrams that may still be read in the second `now` is in.
    pub fn remaining(&mut self, now: Mono) -> usize {
        if self.window.is_none_or(|w| now.millis_since(w) >= 1000) {
            self.window = Some(now);
            self.used = 0;
        }
        CONTROL_PER_SECOND - self.used
    }

    /// Counts `read` datagrams; true when the budget is spent and the
    /// listener must be left alone until `deadline`. A line to log comes
    /// at most once every 10 s.
    pub fn spend(&mut self, read: usize, now: Mono) -> (bool, Option<String>) {
        self.used = (self.used + read).min(CONTROL_PER_SECOND);
        if self.used < CONTROL_PER_SECOND {
            return (false, None);
        }
        let window = self.window.unwrap_or(now);
        self.paused_until = Some(window.plus_millis(1000));
        self.unsaid += 1;
        if self.said_at.is_some_and(|t| now.millis_since(t) < 10_000) {
            return (true, None);
        }
        let line = format!(
            "more than {CONTROL_PER_SECOND} control datagrams in a second ({} such seconds): the rest of each is left unread",
            std::mem::take(&mut self.unsaid)
        );
        self.said_at = Some(now);
        (true, Some(line))
    }

    /// When the listener is to be watched again, while it is not.
    pub fn deadline(&self) -> Option<Mono> {
        self.paused_until
    }

    /// True (once) when the pause is over at `now`.
    pub fn resume_due(&mut self, now: Mono) -> bool {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }
}

impl Default for Udp {
    fn default() -> Self {
        Udp::new()
    }
}

impl Destination {
    fn new(endpoint: &UdpEndpoint, host: &str, log: &mut Lines) -> Destination {
        let mut report_id = host.to_string();
        let socket = match UdpSocket::bind(if endpoint.host.contains(':') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }) {
            Ok(socket) => Some(socket),
            Err(error) => {
                log.push(format!(
                    "unable to make a report socket: {}",
                    Reason(&error)
                ));
                None
            }
        };
        if let (Some(socket), Some(interface)) = (&socket, &endpoint.interface) {
            match net::interface_address(interface) {
                Some(address) => {
                    report_id = format!("{host} {address}");
                    if let Err(errno) = net::set_multicast_interface(socket, address) {
                        log.push(format!(
                            "unable to send reports out of {interface}: {}",
                            pmtr_common::reason::Text(errno)
                        ));
                    }
                }
                None => log.push(format!(
                    "interface {interface} has no IPv4 address: reports go out the default way"
                )),
            }
        }
        if let Some(socket) = &socket {
            let _ = socket.set_nonblocking(true);
        }
        let literal = endpoint.host.parse::<std::net::IpAddr>().ok();
        Destination {
            endpoint: endpoint.clone(),
            socket,
            resolved: Arc::new(Mutex::new(
                literal.map(|ip| (SocketAddr::new(ip, endpoint.port), Instant::now())),
            )),
            literal: literal.is_some(),
            resolving: Arc::new(AtomicBool::new(false)),
            report_id,
        }
    }

    /// The resolved address; starts a resolution (on a helper thread) if
    /// there is none yet and none under way, for a later report to use.
    fn target(&mut self) -> Option<SocketAddr> {
        let resolved = self.resolved.lock().ok().and_then(|slot| *slot);
        let due = match resolved {
            None => true,
            Some((_, at)) => !self.literal && at.elapsed() >= RESOLVE_AGAIN,
        };
        if due && !self.resolving.swap(true, Ordering::AcqRel) {
            let slot = Arc::clone(&self.resolved);
            let busy = Arc::clone(&self.resolving);
            let name = (self.endpoint.host.clone(), self.endpoint.port);
            let spawned = std::thread::Builder::new()
                .name("pmtr-resolve".into())
                .spawn(move || {
                    // A failed lookup keeps what was known (or nothing): tried
                    // again at a later report.
                    let address = name.to_socket_addrs().ok().and_then(|mut a| a.next());
                    if let (Some(address), Ok(mut slot)) = (address, slot.lock()) {
                        *slot = Some((address, Instant::now()));
                    }
                    busy.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                self.resolving.store(false, Ordering::Release);
            }
        }
        let address = resolved.map(|(address, _)| address)?;
        self.match_family(address);
        Some(address)
    }

    /// A name may resolve to IPv6 (or back to IPv4): the socket follows
    /// the address's family.
    fn match_family(&mut self, address: SocketAddr) {
        let current = self
            .socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.is_ipv6());
        if current == Some(address.is_ipv6()) {
            return;
        }
        let any = if address.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        if let Ok(socket) = UdpSocket::bind(any) {
            let _ = socket.set_nonblocking(true);
            self.socket = Some(socket);
        }
    }

    /// After a failed send, a name is looked up again at the next report.
    fn forget_address(&mut self) {
        if !self.literal {
            if let Ok(mut slot) = self.resolved.lock() {
                *slot = None;
            }
        }
    }
}

/// How long a `listen on` name may take to resolve before pmtr gives up
/// on it (until the next reload): the lookup runs on a helper thread, and
/// the loop waits for it no longer than this.
const LISTEN_LOOKUP: Duration = Duration::from_secs(1);

fn bind(endpoint: &UdpEndpoint) -> Result<UdpSocket, String> {
    let address = match endpoint.host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, endpoint.port),
        Err(_) => resolve_within(&endpoint.host, endpoint.port, LISTEN_LOOKUP)?,
    };
    let socket = UdpSocket::bind(address).map_err(|e| Reason(&e).to_string())?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Reason(&e).to_string())?;
    Ok(socket)
}

/// Refusals logged at most once per period, with the count of the others,
/// so that a flood cannot fill the disk.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn refused(&mut self, from: SocketAddr, reason: &str) -> Option<String> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_PERIOD)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        let more = std::mem::take(&mut self.suppressed);
        let tail = if more > 0 {
            format!(" ({more} more refused before this one)")
        } else {
            String::new()
        };
        Some(format!(
            "refused a control datagram from {from}: {reason}{tail}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(host: &str) -> Destination {
        let endpoint = UdpEndpoint {
            host: host.into(),
            port: 9999,
            interface: None,
        };
        Destination::new(&endpoint, "h", &mut Vec::new())
    }

    #[test]
    fn the_report_socket_follows_the_family_of_the_address_a_name_gives() {
        // A name (no ':' in it) used to get an IPv4 socket for good.
        let mut named = destination("collector.invalid");
        let v6: SocketAddr = "[::1]:9999".parse().unwrap();
        *named.resolved.lock().unwrap() = Some((v6, Instant::now()));
        assert_eq!(named.target(), Some(v6));
        let local = named.socket.as_ref().unwrap().local_addr().unwrap();
        assert!(local.is_ipv6(), "{local}");
        let v4: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        *named.resolved.lock().unwrap() = Some((v4, Instant::now()));
        named.target();
        assert!(named
            .socket
            .as_ref()
            .unwrap()
            .local_addr()
            .unwrap()
            .is_ipv4());
    }

    #[test]
    fn a_name_is_looked_up_again_after_a_failed_send_an_address_never() {
        let mut named = destination("collector.invalid");
        *named.resolved.lock().unwrap() = Some(("127.0.0.1:9".parse().unwrap(), Instant::now()));
        named.forget_address();
        assert!(named.resolved.lock().unwrap().is_none());
        let mut literal = destination("127.0.0.1");
        literal.forget_address();
        assert!(literal.resolved.lock().unwrap().is_some());
        assert!(literal.literal && !named.literal);
    }

    #[test]
    fn a_listen_address_that_failed_is_tried_again_at_the_next_reload() {
        let mut udp = Udp::new();
        let mut globals = Globals {
            listen_on: Some(UdpEndpoint {
                host: "no-such-host.invalid".into(),
                port: 9,
                interface: None,
            }),
            ..Globals::default()
        };
        let first = udp.apply(&globals);
        assert!(
            first.iter().any(|l| l.starts_with("unable to listen on")),
            "{first:?}"
        );
        let again = udp.apply(&globals);
        assert!(
            again.iter().any(|l| l.starts_with("unable to listen on")),
            "{again:?}"
        );
        globals.listen_on = Some(UdpEndpoint {
            host: "127.0.0.1".into(),
            port: 0,
            interface: None,
        });
        let bound = udp.apply(&globals);
        assert!(bound
            .iter()
            .any(|l| l.starts_with("listening for control datagrams")));
        assert!(udp.listener().is_some());
        assert_eq!(
            udp.apply(&globals),
            Vec::<String>::new(),
            "bound: kept as it is"
        );
    }

    #[test]
    fn control_datagrams_are_read_at_most_so_many_a_second() {
        let mut budget = ControlBudget::default();
        let start = Mono::from_millis(5_000);
        assert_eq!(budget.remaining(start), CONTROL_PER_SECOND);
        assert_eq!(budget.spend(150, start), (false, None));
        assert_eq!(budget.remaining(start.plus_millis(10)), 50);
        let (paused, line) = budget.spend(50, start.plus_millis(20));
        assert!(paused && line.is_some_and(|l| l.contains("(1 such seconds)")));
        assert_eq!(budget.deadline(), Some(start.plus_millis(1000)));
        assert!(!budget.resume_due(start.plus_millis(999)));
        assert!(budget.resume_due(start.plus_millis(1000)));
        assert_eq!(
            budget.remaining(start.plus_millis(1000)),
            CONTROL_PER_SECOND
        );
        // Said once every 10 s, with the count since.
        let (paused, line) = budget.spend(CONTROL_PER_SECOND, start.plus_millis(1001));
        assert!(paused && line.is_none());
        budget.resume_due(start.plus_millis(2000));
        budget.remaining(start.plus_millis(12_000));
        let (_, line) = budget.spend(CONTROL_PER_SECOND, start.plus_millis(12_000));
        assert!(line.is_some_and(|l| l.contains("(2 such seconds)")));
    }

    #[test]
    fn refusals_are_rate_limited() {
        let mut log = RefusalLog::default();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(log.refused(from, "bad signature").is_some());
        for _ in 0..1000 {
            assert!(log.refused(from, "bad signature").is_none());
        }
        assert_eq!(log.suppressed, 1000);
    }
}
