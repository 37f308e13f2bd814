//! The peer's path to the server: a glommio UDP socket, or a TCP stream carrying RFC 4571 frames
//! (ICE-TCP, RFC 6544: a 16-bit big-endian length before every STUN/DTLS/RTP/RTCP packet).

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use futures::lock::Mutex;
use glommio::net::{TcpStream, UdpSocket};

use super::params::Protocol;

/// Largest packet the peer reads; anything bigger than a jumbo datagram is not media.
pub(crate) const MAX_PACKET: usize = 65535;

/// `packet` with its RFC 4571 length prefix; `None` if it is longer than 65535 bytes.
pub fn frame_rfc4571(packet: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut framed = Vec::with_capacity(2 + packet.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    Some(framed)
}

/// Reassembles RFC 4571 frames from TCP reads of any size.
#[derive(Debug, Default)]
pub struct Rfc4571Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Rfc4571Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes as read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, if one has fully arrived. Zero-length frames are
    /// returned as empty packets.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let pending = &self.buf[self.start..];
        let header: [u8; 2] = pending.get(..2)?.try_into().ok()?;
        let len = usize::from(u16::from_be_bytes(header));
        let frame = pending.get(2..2 + len)?.to_vec();
        self.start += 2 + len;
        if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Some(frame)
    }

    /// Bytes received but not yet returned as a frame (a partial frame at EOF is a framing error).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The sending side, shared by every task of the transport.
pub(crate) enum PeerSocket {
    Udp {
        socket: Rc<UdpSocket>,
        remote: SocketAddr,
        local: SocketAddr,
        poll: Option<Duration>,
    },
    Tcp {
        writer: Mutex<WriteHalf<TcpStream>>,
        reader: RefCell<Option<ReadHalf<TcpStream>>>,
        remote: SocketAddr,
        local: SocketAddr,
    },
}

impl PeerSocket {
    /// Binds a UDP socket at `local` (default `127.0.0.1:0`) or connects a TCP stream to `remote`.
    /// `poll`: the UDP socket is connected to `remote` (the kernel filters other senders) so the
    /// reader can poll it (see [`PacketReader`]).
    pub(crate) async fn open(
        protocol: Protocol,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        poll: Option<Duration>,
    ) -> io::Result<Self> {
        match protocol {
            Protocol::Udp => {
                // Loopback for a loopback candidate (the tests), else let routing pick.
                let local = local.unwrap_or_else(|| match remote.ip() {
                    IpAddr::V4(ip) if ip.is_loopback() => SocketAddr::from(([127, 0, 0, 1], 0)),
                    IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                    IpAddr::V6(ip) if ip.is_loopback() => {
                        SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
                    }
                    IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
                });
                // Not glommio's bind: its SO_REUSEPORT lets a port-0 bind land on a port this
                // user already holds (e.g. the server's media port on the same machine), which
                // then gets half of that port's datagrams.
                let socket = {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    let std_socket = std::net::UdpSocket::bind(local)?;
                    if poll.is_some() {
                        std_socket.connect(remote)?;
                    }
                    // SAFETY: a bound UDP socket we own; glommio takes it over.
                    unsafe { UdpSocket::from_raw_fd(std_socket.into_raw_fd()) }
                };
                let local = socket.local_addr()?;
                Ok(Self::Udp {
                    socket: Rc::new(socket),
                    remote,
                    local,
                    poll,
                })
            }
            Protocol::Tcp => {
                if local.is_some() {
                    log::debug!("local_addr is ignored for TCP: the kernel picks the source");
                }
                let stream = TcpStream::connect(remote).await?;
                stream.set_nodelay(true)?;
                let local = stream.local_addr()?;
                let (reader, writer) = stream.split();
                Ok(Self::Tcp {
                    writer: Mutex::new(writer),
                    reader: RefCell::new(Some(reader)),
                    remote,
                    local,
                })
            }
        }
    }

    /// Asks for a UDP receive buffer of `bytes` (the kernel caps it at `net.core.rmem_max`);
    /// nothing for TCP.
    pub(crate) fn set_recv_buffer(&self, bytes: usize) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let Self::Udp { socket, .. } = self else {
            return Ok(());
        };
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt reads size_of::<c_int>() bytes from `value`, a live c_int.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Udp { local, .. } | Self::Tcp { local, .. } => *local,
        }
    }

    pub(crate) fn remote_addr(&self) -> SocketAddr {
        match self {
            Self::Udp { remote, .. } | Self::Tcp { remote, .. } => *remote,
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        match self {
            Self::Udp { .. } => Protocol::Udp,
            Self::Tcp { .. } => Protocol::Tcp,
        }
    }

    /// Sends one packet (one datagram, or one RFC 4571 frame).
    pub(crate) async fn send(&self, packet: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp { socket, remote, .. } => socket
                .send_to(packet, *remote)
                .await
                .map(drop)
                .map_err(io::Error::from),
            Self::Tcp { .. } => {
                let framed = frame_rfc4571(packet).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "packet too long to frame")
                })?;
                self.send_stream_bytes(&framed).await
            }
        }
    }

    /// TCP: writes `bytes` to the stream as they are (no framing), for framing tests.
    /// UDP: sends them as one datagram.
    pub(crate) async fn send_stream_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Udp { socket, remote, .. } => socket
                .send_to(bytes, *remote)
                .await
                .map(drop)
                .map_err(io::Error::from),
            Self::Tcp { writer, .. } => {
                let mut w = writer.lock().await;
                w.write_all(bytes).await?;
                w.flush().await
            }
        }
    }

    /// The receiving side; there is one, taken by the transport's reader task.
    pub(crate) fn take_reader(&self) -> io::Result<PacketReader> {
        match self {
            Self::Udp {
                socket,
                remote,
                poll,
                ..
            } => Ok(PacketReader::Udp {
                socket: socket.clone(),
                remote: *remote,
                poll: *poll,
            }),
            Self::Tcp { reader, .. } => {
                let half = reader
                    .borrow_mut()
                    .take()
                    .ok_or_else(|| io::Error::other("TCP reader already taken"))?;
                Ok(PacketReader::Tcp {
                    half,
                    decoder: Rfc4571Decoder::new(),
                })
            }
        }
    }

    /// Closes the TCP stream's write side (the server sees EOF); nothing for UDP.
    pub(crate) async fn shutdown(&self) {
        if let Self::Tcp { writer, .. } = self {
            let _ = writer.lock().await.close().await;
        }
    }
}

/// Reads whole packets: datagrams from the server's address only, or decoded TCP frames.
/// With `poll`, the UDP reader never leaves a receive armed on the socket: it reads without
/// waiting and sleeps `poll` when nothing is queued. A sender on the same host (the SFU under
/// load) then never has to wake this thread per datagram — on loopback that wake-up is charged
/// to the sender, which a receiver across a network never costs it.
pub(crate) enum PacketReader {
    Udp {
        socket: Rc<UdpSocket>,
        remote: SocketAddr,
        poll: Option<Duration>,
    },
    Tcp {
        half: ReadHalf<TcpStream>,
        decoder: Rfc4571Decoder,
    },
}

impl PacketReader {
    /// Reads the next packet into `buf` (at least [`MAX_PACKET`] bytes, reused across calls so
    /// nothing is allocated per datagram); its length, or `Ok(None)` when the TCP stream ended.
    pub(crate) async fn next(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Self::Udp {
                socket,
                poll: Some(interval),
                ..
            } => loop {
                use std::os::fd::AsRawFd;
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                let n = unsafe {
                    libc::recv(
                        socket.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n >= 0 {
                    return Ok(Some(n as usize));
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                        glommio::timer::sleep(*interval).await
                    }
                    // ICMP port unreachable reported on the connected socket: not fatal.
                    io::ErrorKind::ConnectionRefused => {}
                    _ => return Err(e),
                }
            },
            Self::Udp { socket, remote, .. } => loop {
                let (n, from) = socket.recv_from(buf).await?;
                if from == *remote {
                    return Ok(Some(n));
                }
                log::debug!("peer: dropping {n} bytes from unexpected {from}");
            },
            Self::Tcp { half, decoder } => loop {
                if let Some(frame) = decoder.next_frame() {
                    let len = frame.len().min(buf.len());
                    buf[..len].copy_from_slice(&frame[..len]);
                    return Ok(Some(len));
                }
                let n = half.read(buf).await?;
                if n == 0 {
                    if decoder.buffered() > 0 {
                        log::debug!(
                            "peer: TCP EOF inside a frame ({} bytes)",
                            decoder.buffered()
                        );
                    }
                    return Ok(None);
                }
                decoder.push(&buf[..n]);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let packets: Vec<Vec<u8>> = vec![vec![1, 2, 3], vec![], vec![9; 1500], vec![0x80; 300]];
        let stream: Vec<u8> = packets
            .iter()
            .flat_map(|p| frame_rfc4571(p).unwrap())
            .collect();
        // Every split point, one byte at a time.
        let mut decoder = Rfc4571Decoder::new();
        let mut out = Vec::new();
        for b in &stream {
            decoder.push(std::slice::from_ref(b));
            while let Some(frame) = decoder.next_frame() {
                out.push(frame);
            }
        }
        assert_eq!(out, packets);
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn partial_header_and_body_wait_for_more() {
        let framed = frame_rfc4571(&[7; 10]).unwrap();
        let mut decoder = Rfc4571Decoder::new();
        decoder.push(&framed[..1]);
        assert_eq!(decoder.next_frame(), None);
        decoder.push(&framed[1..5]);
        assert_eq!(decoder.next_frame(), None);
        assert_eq!(decoder.buffered(), 5);
        // The rest plus the start of a second frame in one read.
        let second = frame_rfc4571(&[8; 3]).unwrap();
        let mut chunk = framed[5..].to_vec();
        chunk.extend_from_slice(&second[..3]);
        decoder.push(&chunk);
        assert_eq!(decoder.next_frame(), Some(vec![7; 10]));
        assert_eq!(decoder.next_frame(), None);
        decoder.push(&second[3..]);
        assert_eq!(decoder.next_frame(), Some(vec![8; 3]));
    }

    #[test]
    fn oversized_packets_cannot_be_framed() {
        assert!(frame_rfc4571(&vec![0; 65536]).is_none());
        assert_eq!(frame_rfc4571(&vec![0; 65535]).unwrap()[..2], [0xff, 0xff]);
    }

    #[test]
    fn long_streams_do_not_grow_the_buffer() {
        let framed = frame_rfc4571(&[1; 1000]).unwrap();
        let mut decoder = Rfc4571Decoder::new();
        for _ in 0..500 {
            decoder.push(&framed);
            decoder.push(&framed[..500]);
            assert_eq!(decoder.next_frame(), Some(vec![1; 1000]));
            decoder.push(&framed[500..]);
            assert_eq!(decoder.next_frame(), Some(vec![1; 1000]));
        }
        assert!(decoder.buf.len() < 200 * 1024);
    }
}
