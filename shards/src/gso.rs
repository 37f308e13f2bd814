//! Batched UDP I/O on a socket's raw fd, for what glommio does not offer: UDP GSO egress (one
//! `sendmsg` with a `UDP_SEGMENT` control message carries a run of equal-sized datagrams to one
//! address; the kernel cuts it into datagrams) and non-blocking `recvmmsg` ingress (drain what is
//! already queued without another wake-up). `sendmmsg` is here too, as the bench's comparison point.
//!
//! Everything works on a plain [`RawFd`], so it serves glommio's socket in the shard and std's in
//! the bench alike. Every call is non-blocking (`MSG_DONTWAIT`): the caller decides what to do on
//! `EAGAIN`. The scratch (iovecs, headers, control buffer) lives in the structs and is reused: no
//! call allocates once the vectors have grown to the batch size. This is the only unsafe code of
//! the shard's I/O shell; each block says why it is sound.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// `SOL_UDP` (= `IPPROTO_UDP`), the level of the `UDP_SEGMENT` option.
pub const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (Linux 4.18): segment size of a GSO send, as socket option or control message.
pub const UDP_SEGMENT: libc::c_int = 103;
/// Most segments per GSO send (the kernel's `UDP_MAX_SEGMENTS` was 64 before Linux 6.9).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload bytes per GSO send: the whole burst is one IP packet before segmentation, so it
/// must fit IPv4's 65,535-byte total length (minus the 20-byte IP and 8-byte UDP headers).
pub const MAX_BURST_BYTES: usize = 65_507;

/// How many of the next datagrams to one address can leave as one GSO burst: every segment the
/// size of the first, except that the last may be shorter (UDP GSO's rule), at most
/// [`MAX_SEGMENTS`] and [`MAX_BURST_BYTES`]. `lens` are the lengths of the consecutive datagrams
/// to that address, in order. Returns 0 only for an empty `lens`; 1 means "send it alone".
pub fn burst_len(lens: impl IntoIterator<Item = usize>) -> usize {
    let mut lens = lens.into_iter();
    let Some(segment) = lens.next() else {
        return 0;
    };
    if segment == 0 {
        return 1;
    }
    let mut count = 1;
    let mut total = segment;
    for len in lens {
        if count == MAX_SEGMENTS || len == 0 || len > segment || total + len > MAX_BURST_BYTES {
            break;
        }
        count += 1;
        total += len;
        if len < segment {
            // A shorter segment ends the burst.
            break;
        }
    }
    count
}

/// A socket address in the kernel's layout, ready to pass as `msg_name`.
#[repr(C)]
#[derive(Clone, Copy)]
union RawAddrInner {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

#[derive(Clone, Copy)]
struct RawAddr {
    inner: RawAddrInner,
    len: libc::socklen_t,
}

impl RawAddr {
    fn new(addr: &SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => RawAddr {
                inner: RawAddrInner {
                    v4: libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    },
                },
                len: size_of::<libc::sockaddr_in>() as libc::socklen_t,
            },
            SocketAddr::V6(a) => RawAddr {
                inner: RawAddrInner {
                    v6: libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    },
                },
                len: size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            },
        }
    }

    fn as_ptr(&mut self) -> *mut libc::c_void {
        (&mut self.inner as *mut RawAddrInner).cast()
    }
}

/// Reads the address the kernel wrote into a `sockaddr_storage`.
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET, length checked);
            // `sockaddr_storage` is larger than and aligned at least like every sockaddr type.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Room for one `cmsghdr` carrying a `u16`, aligned like `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

const CMSG_U16_SPACE: usize = {
    // SAFETY: CMSG_SPACE is plain arithmetic on its argument (unsafe only by libc's macro style).
    unsafe { libc::CMSG_SPACE(size_of::<u16>() as libc::c_uint) as usize }
};
const _: () = assert!(CMSG_U16_SPACE <= 32);

/// Sends GSO bursts: the reusable scratch of one `sendmsg` with `UDP_SEGMENT`.
pub struct GsoBurst {
    iov: Vec<libc::iovec>,
    cmsg: CmsgBuf,
    /// Segments of the last successful send.
    sent_segments: usize,
}

impl Default for GsoBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl GsoBurst {
    pub fn new() -> Self {
        Self {
            iov: Vec::with_capacity(MAX_SEGMENTS),
            cmsg: CmsgBuf([0; 32]),
            sent_segments: 0,
        }
    }

    /// Sends `segments` to `to` as one UDP GSO burst on `fd` (non-blocking). The segments must
    /// obey [`burst_len`]'s rules (all the size of the first, the last possibly shorter, at most
    /// [`MAX_SEGMENTS`] and [`MAX_BURST_BYTES`]); otherwise nothing is sent and the error is
    /// `InvalidInput`. Returns the bytes sent (all of them: UDP sends are all or nothing).
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        to: &SocketAddr,
        segments: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        self.iov.clear();
        let mut segment = 0usize;
        let mut total = 0usize;
        let mut ended = false;
        for data in segments {
            let ok = !ended
                && !data.is_empty()
                && self.iov.len() < MAX_SEGMENTS
                && (self.iov.is_empty() || data.len() <= segment)
                && total + data.len() <= MAX_BURST_BYTES;
            if !ok {
                self.iov.clear();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "segments do not form a UDP GSO burst",
                ));
            }
            if self.iov.is_empty() {
                segment = data.len();
            } else if data.len() < segment {
                ended = true;
            }
            total += data.len();
            self.iov.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
        }
        if self.iov.is_empty() {
            return Ok(0);
        }
        let mut addr = RawAddr::new(to);
        // SAFETY: an all-zero msghdr is a valid empty header (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = addr.as_ptr();
        msg.msg_namelen = addr.len;
        msg.msg_iov = self.iov.as_mut_ptr();
        msg.msg_iovlen = self.iov.len() as _;
        msg.msg_control = self.cmsg.0.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_U16_SPACE as _;
        // SAFETY: `msg_control` points at `self.cmsg`, 8-aligned and CMSG_U16_SPACE (≤ 32) bytes
        // long, so CMSG_FIRSTHDR returns a pointer to its start, with room for the header and
        // the u16 written through CMSG_DATA (which may be unaligned, hence write_unaligned).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            debug_assert!(!cmsg.is_null());
            (*cmsg).cmsg_level = SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as libc::c_uint) as _;
            libc::CMSG_DATA(cmsg)
                .cast::<u16>()
                .write_unaligned(segment as u16);
        }
        // SAFETY: every pointer in `msg` is valid for the call: the address lives on this stack
        // frame, the iovecs point into the borrowed `segments` (alive for 'a, i.e. the whole
        // call) and the control buffer into `self`. The kernel only reads them.
        let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
        self.sent_segments = self.iov.len();
        self.iov.clear();
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    }
}

/// Whether the kernel knows `UDP_SEGMENT` on this socket (Linux ≥ 4.18). A cheap probe at start;
/// a device without checksum offload can still refuse a burst later (EIO).
pub fn gso_supported(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, a live c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_UDP,
            UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Sends one datagram without waiting (`MSG_DONTWAIT`). A full send buffer or queue is an
/// error (`WouldBlock`) for the caller to count as a drop: a shard never stalls on one
/// destination.
pub fn send_datagram(fd: RawFd, data: &[u8], to: &SocketAddr) -> io::Result<()> {
    let mut addr = RawAddr::new(to);
    // SAFETY: `data` and `addr` are valid for the duration of the call; the kernel only reads.
    let sent = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT,
            addr.as_ptr().cast_const().cast(),
            addr.len,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets a socket's send buffer (`SO_SNDBUF`; doubled by the kernel, capped at
/// `net.core.wmem_max`). Returns the size the kernel reports afterwards.
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    set_buffer(fd, libc::SO_SNDBUF, bytes)
}

/// Sets a socket's receive buffer (`SO_RCVBUF`; the kernel doubles it and caps it at
/// `net.core.rmem_max`). Returns the size the kernel reports afterwards.
pub fn set_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    set_buffer(fd, libc::SO_RCVBUF, bytes)
}

fn set_buffer(fd: RawFd, option: libc::c_int, bytes: usize) -> io::Result<usize> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`, a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut actual: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `actual`, a live c_int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut actual as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(actual.max(0) as usize)
}

/// Counters of a [`GsoSender`].
#[derive(Debug, Default, Clone, Copy)]
pub struct GsoStats {
    /// GSO sends that went out.
    pub bursts: u64,
    /// Datagrams those carried.
    pub segments: u64,
    /// Bursts handed back to the caller's per-datagram path (full buffers, refusals).
    pub fallbacks: u64,
}

/// What the caller does after [`GsoSender::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoOutcome {
    /// All segments left in one send.
    Sent,
    /// Nothing was sent: send each datagram the normal way.
    Fallback,
}

/// A [`GsoBurst`] with the shard's policy: off when configured off or unsupported; a refusal of
/// the kind a kernel or device without GSO gives (EINVAL, EIO, ENOPROTOOPT, EOPNOTSUPP) before
/// any burst has gone out turns it off for good; anything else (EAGAIN, ENOBUFS, ...) falls
/// back for that burst only.
pub struct GsoSender {
    burst: GsoBurst,
    enabled: bool,
    proven: bool,
    pub stats: GsoStats,
}

impl GsoSender {
    pub fn new(enabled: bool) -> Self {
        Self {
            burst: GsoBurst::new(),
            enabled,
            proven: false,
            stats: GsoStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sends a burst (see [`GsoBurst::send`]); on `Fallback` nothing was sent.
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        to: &SocketAddr,
        segments: impl IntoIterator<Item = &'a [u8]>,
    ) -> GsoOutcome {
        if !self.enabled {
            return GsoOutcome::Fallback;
        }
        match self.burst.send(fd, to, segments) {
            Ok(_) => {
                self.proven = true;
                self.stats.bursts += 1;
                self.stats.segments += self.burst.sent_segments as u64;
                GsoOutcome::Sent
            }
            Err(e) => {
                self.stats.fallbacks += 1;
                let unsupported = matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
                );
                if unsupported && !self.proven {
                    self.enabled = false;
                    log::warn!(
                        "udp gso refused at first use ({e}): one send per datagram from now"
                    );
                } else {
                    log::debug!("udp gso burst to {to} not sent ({e}): sending one by one");
                }
                GsoOutcome::Fallback
            }
        }
    }
}

/// Receives up to `capacity` datagrams already queued on a socket, in one non-blocking
/// `recvmmsg`, into buffers it owns and reuses.
pub struct RecvBatch {
    datagram_size: usize,
    buffers: Vec<u8>,
    iov: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    headers: Vec<libc::mmsghdr>,
    received: usize,
}

impl RecvBatch {
    /// Room for `capacity` datagrams of up to `datagram_size` bytes each (longer ones are cut).
    pub fn new(capacity: usize, datagram_size: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            datagram_size,
            buffers: vec![0; capacity * datagram_size],
            iov: Vec::with_capacity(capacity),
            // SAFETY: an all-zero sockaddr_storage / mmsghdr is valid (plain integers, null
            // pointers).
            names: vec![unsafe { zeroed() }; capacity],
            headers: vec![unsafe { zeroed() }; capacity],
            received: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Receives what is queued on `fd` without waiting: the number of datagrams, 0 when none
    /// (EAGAIN). Replaces the previous batch.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        let capacity = self.headers.len();
        self.iov.clear();
        for chunk in self.buffers.chunks_exact_mut(self.datagram_size) {
            self.iov.push(libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            });
        }
        for (i, header) in self.headers.iter_mut().enumerate() {
            header.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &mut self.iov[i];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = std::ptr::null_mut();
            header.msg_hdr.msg_controllen = 0;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // SAFETY: `headers` holds `capacity` initialised mmsghdrs whose name and iovec pointers
        // point into `self.names`, `self.iov` and `self.buffers`, all alive and not moved during
        // the call; each iovec covers its own `datagram_size` bytes of `buffers`. A null
        // timeout is allowed (MSG_DONTWAIT makes the call return at once anyway).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                capacity as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last [`recv`](Self::recv): its bytes and sender. `None` past the
    /// batch, or for a sender address of an unknown family.
    pub fn get_mut(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let header = &self.headers[i];
        let from = socket_addr(&self.names[i], header.msg_hdr.msg_namelen)?;
        let len = (header.msg_len as usize).min(self.datagram_size);
        let start = i * self.datagram_size;
        Some((&mut self.buffers[start..start + len], from))
    }
}

/// Sends a batch of datagrams to one address in one non-blocking `sendmmsg` (the bench's
/// comparison point: it saves system calls, not the kernel's per-datagram work).
pub struct MmsgSender {
    iov: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl Default for MmsgSender {
    fn default() -> Self {
        Self::new()
    }
}

impl MmsgSender {
    pub fn new() -> Self {
        Self {
            iov: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Sends `datagrams` to `to`; returns how many the kernel took (it may stop early).
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        to: &SocketAddr,
        datagrams: impl IntoIterator<Item = &'a [u8]>,
    ) -> io::Result<usize> {
        let mut addr = RawAddr::new(to);
        self.iov.clear();
        for data in datagrams {
            self.iov.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
        }
        let count = self.iov.len();
        // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
        self.headers.resize(count, unsafe { zeroed() });
        for (header, iov) in self.headers.iter_mut().zip(self.iov.iter_mut()) {
            header.msg_hdr.msg_name = addr.as_ptr();
            header.msg_hdr.msg_namelen = addr.len;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_len = 0;
        }
        // SAFETY: `count` headers, each pointing at the address on this stack frame and at one
        // iovec of `self.iov`, which points into the borrowed datagrams (alive for the call).
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        self.iov.clear();
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_datagrams_are_errors_returned_at_once() {
        let sender = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        assert!(send_datagram(sender.as_raw_fd(), b"ok", &to).is_ok());
        // Broadcast without SO_BROADCAST: the kernel refuses (EACCES) instead of sending.
        let broadcast: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let err = send_datagram(sender.as_raw_fd(), b"no", &broadcast).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        let mut buf = [0u8; 4];
        assert_eq!(receiver.recv(&mut buf).unwrap(), 2);
    }
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn bursts_follow_the_gso_rules() {
        assert_eq!(burst_len([]), 0);
        assert_eq!(burst_len([1200]), 1);
        assert_eq!(burst_len([1200, 1200, 1200]), 3);
        // The last may be shorter, and ends the burst.
        assert_eq!(burst_len([1200, 1200, 500, 500]), 3);
        // A longer one cannot follow.
        assert_eq!(burst_len([500, 1200]), 1);
        assert_eq!(burst_len([600; 100]), MAX_SEGMENTS);
        // 64 KiB at most: 54 × 1200 = 64,800.
        assert_eq!(burst_len([1200; 60].iter().copied().chain([1200])), 54);
        assert_eq!(burst_len([1400; 64]), MAX_BURST_BYTES / 1400);
    }

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        (tx, rx)
    }

    #[test]
    fn a_burst_arrives_as_separate_datagrams() {
        let (tx, rx) = pair();
        if !gso_supported(tx.as_raw_fd()) {
            eprintln!("no UDP_SEGMENT on this kernel: skipped");
            return;
        }
        let a = vec![1u8; 1200];
        let b = vec![2u8; 1200];
        let c = vec![3u8; 300];
        let mut burst = GsoBurst::new();
        let to = rx.local_addr().unwrap();
        let sent = burst
            .send(tx.as_raw_fd(), &to, [&a[..], &b[..], &c[..]])
            .unwrap();
        assert_eq!(sent, 2700);
        let mut buf = [0u8; 2048];
        for (fill, len) in [(1u8, 1200), (2, 1200), (3, 300)] {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(n, len);
            assert_eq!(from, tx.local_addr().unwrap());
            assert!(buf[..n].iter().all(|&x| x == fill));
        }
        // Not a burst: a longer segment after a shorter one.
        let err = burst
            .send(tx.as_raw_fd(), &to, [&c[..], &a[..]])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn sender_counts_and_falls_back_when_off() {
        let (tx, rx) = pair();
        let to = rx.local_addr().unwrap();
        let data = [7u8; 100];
        let mut off = GsoSender::new(false);
        assert_eq!(
            off.send(tx.as_raw_fd(), &to, [&data[..], &data[..]]),
            GsoOutcome::Fallback
        );
        if gso_supported(tx.as_raw_fd()) {
            let mut on = GsoSender::new(true);
            assert_eq!(
                on.send(tx.as_raw_fd(), &to, [&data[..], &data[..]]),
                GsoOutcome::Sent
            );
            assert_eq!(on.stats.bursts, 1);
            assert_eq!(on.stats.segments, 2);
        }
    }

    #[test]
    fn recv_batch_drains_without_waiting() {
        let (tx, rx) = pair();
        let mut batch = RecvBatch::new(4, 2048);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0);
        let to = rx.local_addr().unwrap();
        for i in 0..6u8 {
            tx.send_to(&[i; 10][..(i as usize + 1)], to).unwrap();
        }
        // Loopback delivers synchronously, but allow the stack a moment.
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 4);
        for i in 0..4 {
            let (data, from) = batch.get_mut(i).unwrap();
            assert_eq!(data.len(), i + 1);
            assert!(data.iter().all(|&x| x == i as u8));
            assert_eq!(from, tx.local_addr().unwrap());
        }
        assert!(batch.get_mut(4).is_none());
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 2);
        assert_eq!(batch.get_mut(1).unwrap().0.len(), 6);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0);
    }

    #[test]
    fn mmsg_sends_a_batch() {
        let (tx, rx) = pair();
        let data = [9u8; 200];
        let mut mmsg = MmsgSender::new();
        let to = rx.local_addr().unwrap();
        let n = mmsg.send(tx.as_raw_fd(), &to, [&data[..]; 5]).unwrap();
        assert_eq!(n, 5);
        let mut buf = [0u8; 2048];
        for _ in 0..5 {
            assert_eq!(rx.recv_from(&mut buf).unwrap().0, 200);
        }
    }
}
