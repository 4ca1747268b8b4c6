//! The socket jobs speak sd_notify to (SPEC 11.3): one datagram socket in
//! the abstract namespace, named in the `NOTIFY_SOCKET` of each job with
//! `ready notify` or `health watchdog`. A sender is known by the
//! credentials the kernel attaches (`SO_PASSCRED`): its pid, whose process
//! group names the job. Descriptors sent along (`BARRIER=1`) are closed,
//! which is the answer `systemd-notify` waits for.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use nix::unistd::getpgid;
use pmtr_core::proto::notify::{self, Notice, MAX_DATAGRAM};
use pmtr_core::supervise::event::Pid;

use super::registry::{Registry, Source};
use pmtr_common::reason::Text;

/// Most datagrams read per wakeup, so that a job that floods the socket
/// cannot keep the loop from everything else; the rest wait for the next
/// turn (the socket stays readable).
const MAX_PER_WAKEUP: usize = 64;

/// Most descriptors taken (and closed) from one datagram; the kernel
/// closes any beyond.
const MAX_FDS: usize = 16;

pub struct NotifySocket {
    socket: OwnedFd,
    /// `@name`, as `NOTIFY_SOCKET` gives it.
    address: String,
}

#[derive(Debug, thiserror::Error)]
#[error("unable to {what} the notify socket: {}", Text(*.errno))]
pub struct NotifyError {
    what: &'static str,
    errno: Errno,
}

impl NotifySocket {
    /// Binds a socket of pmtr's own (named after its pid and start time,
    /// so that pmtrs in one network namespace never meet) and watches it.
    pub fn open(registry: &mut Registry) -> Result<NotifySocket, NotifyError> {
        let fail = |what| move |errno| NotifyError { what, errno };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let socket =
            socket(AddressFamily::Unix, SockType::Datagram, flags, None).map_err(fail("create"))?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(fail("set up"))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("pmtr/{}/{stamp:x}/notify", std::process::id());
        let address = UnixAddr::new_abstract(name.as_bytes()).map_err(fail("name"))?;
        bind(socket.as_raw_fd(), &address).map_err(fail("bind"))?;
        // Watched for pmtr's whole life: the token is never needed again.
        registry
            .add(socket.as_fd(), EpollFlags::EPOLLIN, Source::Notify)
            .map_err(fail("watch"))?;
        Ok(NotifySocket {
            socket,
            address: format!("@{name}"),
        })
    }

    /// The socket the pmtr before this one handed over (SPEC 11.8), which
    /// jobs know by `address`.
    pub fn adopt(
        socket: OwnedFd,
        address: String,
        registry: &mut Registry,
    ) -> Result<NotifySocket, NotifyError> {
        registry
            .add(socket.as_fd(), EpollFlags::EPOLLIN, Source::Notify)
            .map_err(|errno| NotifyError {
                what: "watch",
                errno,
            })?;
        Ok(NotifySocket { socket, address })
    }

    /// The descriptor, for a reexec to hand over.
    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// What jobs find in `NOTIFY_SOCKET`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The datagrams waiting, up to a bound: the process group each came
    /// from and what it says. Datagrams without credentials, or that say
    /// nothing pmtr acts on, are dropped.
    pub fn receive(&self) -> Vec<(Pid, Notice)> {
        let mut notices = Vec::new();
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        for _ in 0..MAX_PER_WAKEUP {
            let mut control = nix::cmsg_space!(libc::ucred, [RawFd; MAX_FDS]);
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let received =
                recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut control), flags);
            let message = match received {
                Ok(message) => message,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            let length = message.bytes;
            let mut sender = None;
            if let Ok(messages) = message.cmsgs() {
                for cmsg in messages {
                    match cmsg {
                        ControlMessageOwned::ScmCredentials(credentials) => {
                            sender = Some(credentials.pid())
                        }
                        ControlMessageOwned::ScmRights(fds) => {
                            for fd in fds {
                                let _ = nix::unistd::close(fd);
                            }
                        }
                        _ => {}
                    }
                }
            }
            let notice = notify::decode(&buffer[..length.min(MAX_DATAGRAM)]);
            if let Some(pid) = sender.filter(|&pid| pid > 0) {
                if !notice.is_empty() {
                    notices.push((group_of(pid), notice));
                }
            }
        }
        notices
    }
}

/// The process group of `pid`; a sender that is gone already is taken to
/// lead its group (a job's main process does).
fn group_of(pid: Pid) -> Pid {
    getpgid(Some(nix::unistd::Pid::from_raw(pid))).map_or(pid, |pgid| pgid.as_raw())
}
