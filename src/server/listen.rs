//! Binding a listening socket as nats-server (Go's `net.Listen("tcp", host:port)`) does, for
//! every port the server opens.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn`. Go's net.Listen
/// asks for somaxconn, so nats-server takes a burst of thousands of connects at once; tokio's
/// and std's `bind` ask for 128, and past that the kernel drops handshakes, leaving clients
/// waiting for retransmits (`tests/stress.rs` `ten_thousand_clients` connects 500 at a time).
const LISTEN_BACKLOG: u32 = 65535;

/// Listens on `host:port` (port 0 picks a free port) with nats-server's accept backlog.
///
/// A wildcard host, `0.0.0.0` or `::`, is one dual-stack socket on `[::]` with IPV6_V6ONLY off,
/// which takes IPv4 and IPv6 clients alike, as Go binds it (`favoriteAddrFamily` in Go's
/// `net/ipsock_posix.go`); where the host cannot make such a socket, Go falls back to the
/// address's own family and so does this. Any other host is resolved and its first address
/// that binds is used.
pub async fn listen(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let (socket, addr) = match dual_stack_socket() {
            Some(socket) if addr.ip().is_unspecified() => (
                socket,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port())),
            ),
            _ => match addr {
                SocketAddr::V4(_) => (TcpSocket::new_v4()?, addr),
                SocketAddr::V6(_) => (TcpSocket::new_v6()?, addr),
            },
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(err) => last_error = Some(err),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// An IPv6 socket that also takes IPv4 (IPV6_V6ONLY off), or `None` where the host has no IPv6
/// or refuses the option (Go's `supportsIPv4map` probe).
fn dual_stack_socket() -> Option<TcpSocket> {
    let socket = TcpSocket::new_v6().ok()?;
    socket2::SockRef::from(&socket).set_only_v6(false).ok()?;
    Some(socket)
}

/// The addresses a listener bound to a wildcard address is reached at, as nats-server's ports
/// file lists them (`resolveHostPorts`: Go's `net.Interfaces()`, then each one's `Addrs()`):
/// interface by interface in index order, each one's addresses in the kernel's order (IPv4
/// first). Empty when the interfaces cannot be listed.
pub fn interface_addresses() -> Vec<std::net::IpAddr> {
    let Ok(mut addresses) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    // getifaddrs lists every interface's IPv4 addresses before any IPv6 one; a stable sort
    // regroups them by interface and keeps each interface's own order.
    addresses.sort_by_key(|a| a.index.unwrap_or(u32::MAX));
    addresses.into_iter().map(|a| a.ip()).collect()
}
