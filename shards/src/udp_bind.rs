//! UDP sockets for glommio without `SO_REUSEPORT`.
//!
//! glommio's `UdpSocket::bind` always sets `SO_REUSEPORT`. On Linux a port-0 bind of another
//! reuseport socket of the same user may then be given a port that is already bound (the two
//! share it and the kernel splits incoming datagrams between them): the load tool's sockets
//! landed on the shard's media port that way, and that peer's ICE checks reached itself instead of
//! the server. Bound by std (no reuseport) and handed to glommio, a port is never shared.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::net::UdpSocket;

/// A glommio UDP socket bound to `addr` with the kernel's ordinary exclusive-port rules.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    // SAFETY: the fd is a bound UDP socket we own; glommio takes it over.
    Ok(unsafe { UdpSocket::from_raw_fd(socket.into_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn reuseport(fd: i32) -> i32 {
        let mut v: libc::c_int = -1;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`, a live c_int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    #[test]
    fn sockets_are_exclusive_and_usable() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 << 10)
            .ring_depth(64)
            .make()
            .expect("executor")
            .run(async {
                let a = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
                let addr = a.local_addr().unwrap();
                assert_eq!(reuseport(a.as_raw_fd()), 0);
                // The port is taken: a second bind fails instead of sharing it.
                assert!(bind_udp(addr).is_err());
                let b = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
                b.send_to(b"ping", addr).await.unwrap();
                let mut buf = [0u8; 8];
                let (n, from) = a.recv_from(&mut buf).await.unwrap();
                assert_eq!((&buf[..n], from), (&b"ping"[..], b.local_addr().unwrap()));
            });
    }
}
