//! Readiness checks the core asks for (`ready file`, `ready tcp`): a file
//! is looked at on the spot; a TCP connect is started non-blocking and its
//! outcome read when the socket becomes writable, so that a slow or silent
//! port never holds up the loop. Each outcome is a `ReadyChecked` event.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use pmtr_core::supervise::event::{Event, JobId, Pid, ReadyCheck};

use super::registry::{Registry, Source, Token};

/// A connect under way.
struct Connecting {
    job: JobId,
    pid: Pid,
    socket: OwnedFd,
}

#[derive(Default)]
pub struct Probes {
    connecting: HashMap<Token, Connecting>,
}

impl Probes {
    /// Starts a check; its outcome at once when it is known at once.
    pub fn check(
        &mut self,
        registry: &mut Registry,
        job: JobId,
        pid: Pid,
        check: ReadyCheck,
    ) -> Option<Event> {
        let outcome = |ready| Some(Event::ReadyChecked { job, pid, ready });
        let address = match check {
            // A stat, as for dependency files.
            ReadyCheck::File(path) => return outcome(Path::new(&path).exists()),
            ReadyCheck::Tcp(address) => address,
        };
        let family = match address {
            std::net::SocketAddr::V4(_) => AddressFamily::Inet,
            std::net::SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        // Out of descriptors: not ready this time; the core asks again.
        let Ok(socket) = socket(family, SockType::Stream, flags, None) else {
            return outcome(false);
        };
        match connect(socket.as_raw_fd(), &SockaddrStorage::from(address)) {
            Ok(()) => outcome(true),
            Err(Errno::EINPROGRESS) => {
                match registry.add(socket.as_fd(), EpollFlags::EPOLLOUT, Source::Probe) {
                    Ok(token) => {
                        let pending = Connecting { job, pid, socket };
                        self.connecting.insert(token, pending);
                        None
                    }
                    Err(_) => outcome(false),
                }
            }
            Err(_) => outcome(false),
        }
    }

    /// A connect finished, one way or the other.
    pub fn ready(&mut self, registry: &mut Registry, token: Token) -> Option<Event> {
        let Connecting { job, pid, socket } = self.connecting.remove(&token)?;
        registry.remove(socket.as_fd(), token);
        let ready = getsockopt(&socket, sockopt::SocketError) == Ok(0);
        Some(Event::ReadyChecked { job, pid, ready })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(event: Option<Event>) -> Option<bool> {
        match event {
            Some(Event::ReadyChecked { ready, .. }) => Some(ready),
            _ => None,
        }
    }

    /// A listening port is ready, a closed one is not, and neither blocks:
    /// the answer comes at once or through the registry.
    #[test]
    fn a_tcp_check_connects_without_blocking() {
        let mut registry = Registry::new().unwrap();
        let mut probes = Probes::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        // A port that was free a moment ago: nobody listens there.
        let closed = {
            let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            spare.local_addr().unwrap()
        };
        let mut answer = |address| {
            let started = probes.check(&mut registry, JobId(1), 7, ReadyCheck::Tcp(address));
            if started.is_some() {
                return outcome(started);
            }
            let mut events = vec![nix::sys::epoll::EpollEvent::empty(); 4];
            let timeout = nix::sys::epoll::EpollTimeout::from(5_000u16);
            let count = registry.wait(&mut events, timeout).unwrap();
            let (_, token) = registry.resolve(&events[..count][0]).unwrap();
            outcome(probes.ready(&mut registry, token))
        };
        assert_eq!(answer(open), Some(true));
        assert_eq!(answer(closed), Some(false));
    }
}
