//! Network details the standard library does not cover: the egress
//! interface of multicast datagrams, an interface's IPv4 address, the
//! host name.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::errno::Errno;

/// The IPv4 address of interface `name`, if it has one.
pub fn interface_address(name: &str) -> Option<Ipv4Addr> {
    let addresses = nix::ifaddrs::getifaddrs().ok()?;
    for entry in addresses {
        if entry.interface_name != name {
            continue;
        }
        if let Some(address) = entry.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Some(address.ip());
        }
    }
    None
}

/// Sends this socket's multicast datagrams out of the interface with
/// address `interface`.
pub fn set_multicast_interface(socket: &UdpSocket, interface: Ipv4Addr) -> Result<(), Errno> {
    let address = libc::in_addr {
        s_addr: u32::from(interface).to_be(),
    };
    // SAFETY: setsockopt on a socket we own, with a pointer to a local
    // in_addr and its exact size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&address as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if result == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}
