//! `shardcast-floor`: the physical yardstick for the SFU. On this machine, what is the cheapest
//! possible forwarding of 1.2 KB SRTP video packets, in CPU µs per forwarded packet?
//!
//! A generator thread (pinned to `--gen-core`) sends SRTP packets (AES-128-GCM, RFC 7714: 12-byte
//! RTP header + a one-byte header extension, AAD = the RTP header, 16-byte tag, `--size` bytes in
//! all) over loopback UDP, in frames of `--frame-packets` packets sharing one RTP timestamp, paced
//! at `--pps` input packets per second. A forwarder thread (pinned to `--core`) does only what a
//! forwarding SFU cannot avoid: receive (`recvmmsg`, batches of up to 64), AES-GCM decrypt in
//! place with the real per-packet nonce and AAD, then for every one of `--consumers` consumers:
//! copy into that consumer's preallocated buffer, rewrite SSRC, sequence number and timestamp,
//! AES-GCM encrypt with that consumer's own key and send to that consumer's sink socket. No
//! signalling, no RTCP, no stream bookkeeping, no allocation per packet. Sink sockets are drained
//! by a thread on the generator's core so nothing backs up.
//!
//! Three ways of sending, run one after the other with a fresh setup (`--variant`):
//! - `sendto`: one `sendto` system call per forwarded packet;
//! - `sendmmsg`: all forwarded packets of one received batch in `sendmmsg` calls (≤ 1024 each);
//! - `gso`: per consumer, that consumer's packets of one frame (within one received batch) in one
//!   `sendmsg` with a `UDP_SEGMENT` control message (Linux UDP GSO: the kernel cuts the burst
//!   into datagrams of the segment size, the last one possibly shorter).
//!
//! CPU is the forwarder thread's own, from `getrusage(RUSAGE_THREAD)` (user + system), taken when
//! its first packet arrives and after its last: system time matters here, because the system
//! calls are most of the cost. The kernel samples the user/system split at timer ticks, so the
//! split is rough; the total is the scheduler's exact runtime, which `CLOCK_THREAD_CPUTIME_ID`
//! also reports (the JSON carries it as a cross-check). On loopback the receiving side's kernel
//! work (UDP receive path, GSO segmentation, queueing on the sink socket) runs in the sender's
//! system call, as softirq work in its context, and is charged to the forwarder too (unless the
//! kernel has `CONFIG_IRQ_TIME_ACCOUNTING`), as it is to the SFU measured the same way.
//!
//! Measured on the 2-vCPU development VM (Xeon with VAES, Linux 6.18, 50 and 10 consumers,
//! 200,000 forwarded packets/s): sendto 1.3–1.65 µs, sendmmsg 1.2–1.6 µs, gso 0.95–1.2 µs per
//! forwarded packet; runs vary by about 15%.
//!
//! Why: `tools/bench.sh` divides the SFU's "server CPU µs per forwarded packet" by this floor's
//! figure. The ratio says how far the SFU is from the physical limit of the machine, with the
//! same kernel, the same crypto library and the same packet size; absolute µs alone mean little
//! across machines.
//!
//! Output: one human line per variant (`floor sendto consumers=50 size=1200 forwarded=...
//! cpu_us_per_fwd=...`) and, with `--json FILE` (or `--json -` for stdout, the human lines then
//! going to stderr), a JSON array with one object per variant.
//!
//! Nothing received from the network is trusted: malformed packets and packets that fail to
//! authenticate are counted as drops, system call errors are counted and reported.

use std::io::{self, Write};
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// `SOL_UDP` (= `IPPROTO_UDP`), the level of `UDP_SEGMENT`.
const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT` (Linux 4.18): the segment size of a GSO send, as a control message.
const UDP_SEGMENT: libc::c_int = 103;
/// Most datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// Most messages per `sendmmsg`.
const SENDMMSG_MAX: usize = 1024;
/// Most segments per GSO send (the kernel's `UDP_MAX_SEGMENTS` was 64 before Linux 6.9).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes per GSO send (one IPv4 packet before segmentation).
const GSO_MAX_BYTES: usize = 65_507;
/// AES-GCM authentication tag.
const TAG_LEN: usize = 16;
/// The generator's RTP header: 12 fixed bytes, then a one-byte-header extension block (0xBEDE,
/// length 1 word) holding abs-send-time (id 3, 3 bytes).
const GEN_HEADER_LEN: usize = 20;
/// The generator's SSRC: the one stream the forwarder accepts.
const INPUT_SSRC: u32 = 0x1234_5678;
/// Receive and send buffer asked for on every socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// Bytes of each datagram a sink copies out (the rest is discarded by the kernel, MSG_TRUNC):
/// the sinks only count.
const SINK_COPY: usize = 64;

/// How the sinks receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Sinks {
    /// Poll without ever sleeping on a socket: the forwarder's sends wake nobody (the floor
    /// proper).
    Poll,
    /// Sleep in `epoll_wait` like a receiving process (the load tool's receivers sleep in
    /// io_uring): on loopback the forwarder's send then also pays the receiver's wake-up, as the
    /// SFU does in `tools/bench.sh`.
    Wait,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Variant {
    Sendto,
    Sendmmsg,
    Gso,
    All,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Sendto => "sendto",
            Variant::Sendmmsg => "sendmmsg",
            Variant::Gso => "gso",
            Variant::All => "all",
        }
    }
}

/// The cheapest possible SRTP forwarding on this machine, in CPU µs per forwarded packet.
#[derive(Parser, Debug)]
#[command(name = "shardcast-floor", version)]
struct Args {
    /// Which way of sending to measure; `all` runs sendto, sendmmsg and gso in turn.
    #[arg(long, value_enum, default_value = "all")]
    variant: Variant,
    /// Consumers every input packet is forwarded to.
    #[arg(long, default_value_t = 50)]
    consumers: usize,
    /// SRTP packet size in bytes (header, payload and tag).
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Packets per video frame (one RTP timestamp; the unit of a GSO burst).
    #[arg(long, default_value_t = 8)]
    frame_packets: usize,
    /// Input packets per second. Default: 200,000 forwarded packets per second spread over the
    /// consumers (e.g. 4,000 for 50 consumers), at most 20,000, so the forwarder is not overrun.
    #[arg(long)]
    pps: Option<u32>,
    /// Seconds the generator sends, per variant.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// CPU core of the forwarder thread.
    #[arg(long, default_value_t = 0)]
    core: usize,
    /// How the sinks receive: `poll` (nobody is woken) or `wait` (sleeping receivers).
    #[arg(long, value_enum, default_value = "poll")]
    sinks: Sinks,
    /// CPU core of the generator and sink threads.
    #[arg(long, default_value_t = 1)]
    gen_core: usize,
    /// Write the results as a JSON array to this file (`-` for stdout).
    #[arg(long)]
    json: Option<String>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("shardcast-floor: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if args.consumers == 0 {
        return Err("--consumers must be at least 1".into());
    }
    if args.frame_packets == 0 {
        return Err("--frame-packets must be at least 1".into());
    }
    if args.size < GEN_HEADER_LEN + TAG_LEN + 1 || args.size > 9000 {
        return Err(format!(
            "--size must be between {} and 9000",
            GEN_HEADER_LEN + TAG_LEN + 1
        ));
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return Err("--seconds must be positive".into());
    }
    let pps = args
        .pps
        .unwrap_or_else(|| (200_000 / args.consumers as u32).clamp(1, 20_000));
    if pps == 0 {
        return Err("--pps must be at least 1".into());
    }
    let variants: &[Variant] = match args.variant {
        Variant::All => &[Variant::Sendto, Variant::Sendmmsg, Variant::Gso],
        Variant::Sendto => &[Variant::Sendto],
        Variant::Sendmmsg => &[Variant::Sendmmsg],
        Variant::Gso => &[Variant::Gso],
    };
    let json_to_stdout = args.json.as_deref() == Some("-");
    let mut results = Vec::new();
    for &variant in variants {
        let r = run_variant(args, variant, pps)?;
        let line = r.human_line();
        if json_to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
        results.push(r.to_json());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&Value::Array(results))
            .map_err(|e| format!("json: {e}"))?;
        if path == "-" {
            println!("{text}");
        } else {
            let mut f = std::fs::File::create(path).map_err(|e| format!("create {path}: {e}"))?;
            writeln!(f, "{text}").map_err(|e| format!("write {path}: {e}"))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SRTP (AES-128-GCM, RFC 7714) with session keys given directly: no key derivation, which an SFU
// does once per transport, not per packet.

struct SrtpKey {
    key: LessSafeKey,
    salt: [u8; 12],
}

impl SrtpKey {
    fn new(key: &[u8; 16], salt: [u8; 12]) -> Result<Self, String> {
        let unbound = UnboundKey::new(&AES_128_GCM, key).map_err(|_| "aes-128-gcm key")?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            salt,
        })
    }

    fn random() -> Result<Self, String> {
        Self::new(&rand::random(), rand::random())
    }

    /// RFC 7714 §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
    fn nonce(&self, ssrc: u32, roc: u32, seq: u16) -> Nonce {
        let mut iv = self.salt;
        for (d, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[6..10].iter_mut().zip(roc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[10..12].iter_mut().zip(seq.to_be_bytes()) {
            *d ^= s;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypts `buf[header_len..len]` in place, AAD = `buf[..header_len]`, and appends the tag.
    /// `buf` must have room for it. Returns the SRTP length.
    fn protect(
        &self,
        buf: &mut [u8],
        header_len: usize,
        len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
    ) -> Option<usize> {
        if buf.len() < len + TAG_LEN || header_len > len {
            return None;
        }
        let (header, rest) = buf.split_at_mut(header_len);
        let payload_len = len - header_len;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(ssrc, roc, seq),
                Aad::from(&*header),
                &mut rest[..payload_len],
            )
            .ok()?;
        rest[payload_len..payload_len + TAG_LEN].copy_from_slice(tag.as_ref());
        Some(len + TAG_LEN)
    }
}

/// RFC 3711 §3.3.1 rollover counter estimation for one received stream.
#[derive(Default)]
struct RocTracker {
    /// Highest authenticated packet index (ROC << 16 | SEQ).
    highest: Option<u64>,
}

impl RocTracker {
    fn estimate(&self, seq: u16) -> u32 {
        let Some(highest) = self.highest else {
            return 0;
        };
        let s_l = highest as u16;
        let roc = (highest >> 16) as u32;
        if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc.wrapping_add(1)
        } else {
            roc
        }
    }

    /// Called only once the packet authenticated.
    fn update(&mut self, roc: u32, seq: u16) -> u64 {
        let index = (roc as u64) << 16 | seq as u64;
        if self.highest.is_none_or(|h| index > h) {
            self.highest = Some(index);
        }
        index
    }
}

/// A packet received and decrypted in place: where its header ends and how long it now is.
#[derive(Clone, Copy, Default)]
struct Plain {
    header_len: usize,
    len: usize,
    /// 48-bit packet index (ROC << 16 | SEQ).
    index: u64,
    timestamp: u32,
    /// Length of the SRTP packet forwarded to each consumer (all get the same length).
    out_len: usize,
}

/// Parses and authenticates/decrypts one received SRTP packet in place. None: malformed, not our
/// stream or failed authentication (a drop).
fn unprotect(buf: &mut [u8], key: &SrtpKey, roc: &mut RocTracker) -> Option<Plain> {
    if buf.len() < 12 + TAG_LEN || buf[0] >> 6 != 2 {
        return None;
    }
    let mut header_len = 12 + 4 * (buf[0] & 0x0f) as usize;
    if buf[0] & 0x10 != 0 {
        let words = buf.get(header_len + 2..header_len + 4)?;
        header_len += 4 + 4 * u16::from_be_bytes([words[0], words[1]]) as usize;
    }
    if header_len + TAG_LEN > buf.len() {
        return None;
    }
    let seq = u16::from_be_bytes([buf[2], buf[3]]);
    let timestamp = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if ssrc != INPUT_SSRC {
        return None;
    }
    let estimated_roc = roc.estimate(seq);
    let (header, body) = buf.split_at_mut(header_len);
    let plain_len = key
        .key
        .open_in_place(
            key.nonce(ssrc, estimated_roc, seq),
            Aad::from(&*header),
            body,
        )
        .ok()?
        .len();
    let index = roc.update(estimated_roc, seq);
    Some(Plain {
        header_len,
        len: header_len + plain_len,
        index,
        timestamp,
        out_len: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The forwarder.

struct Consumer {
    key: SrtpKey,
    ssrc: u32,
    seq_offset: u64,
    ts_offset: u32,
    addr: libc::sockaddr_in,
}

/// Copies a decrypted packet into `out`, rewrites SSRC, sequence number and timestamp for the
/// consumer and encrypts it with the consumer's key. Returns the SRTP length.
fn rewrite_and_protect(
    packet: &[u8],
    plain: &Plain,
    consumer: &Consumer,
    out: &mut [u8],
) -> Option<usize> {
    let len = plain.len;
    out.get_mut(..len)?.copy_from_slice(packet.get(..len)?);
    let index = plain.index + consumer.seq_offset;
    let seq = index as u16;
    let roc = (index >> 16) as u32;
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(
        &plain
            .timestamp
            .wrapping_add(consumer.ts_offset)
            .to_be_bytes(),
    );
    out[8..12].copy_from_slice(&consumer.ssrc.to_be_bytes());
    consumer
        .key
        .protect(out, plain.header_len, len, consumer.ssrc, roc, seq)
}

#[derive(Default, Clone, Copy)]
struct ForwardStats {
    received: u64,
    drops: u64,
    forwarded: u64,
    send_failures: u64,
    send_calls: u64,
    recv_calls: u64,
    recv_errors: u64,
    first_send_errno: Option<i32>,
    user_s: f64,
    sys_s: f64,
    /// CLOCK_THREAD_CPUTIME_ID over the same span.
    clock_s: f64,
    wall_s: f64,
}

/// The forwarder thread's CPU time (user, system) in seconds, from `getrusage(RUSAGE_THREAD)`.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// The calling thread's CPU time in seconds from `CLOCK_THREAD_CPUTIME_ID` (the scheduler's exact
/// runtime), a cross-check of [`thread_cpu`]'s total.
fn thread_clock() -> f64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime only writes into it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Preallocated receive buffers and headers for one `recvmmsg` of up to [`BATCH`] datagrams.
struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    /// Never read here: kept alive because `msgs` point into it.
    _iov: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    fn new(count: usize, slot: usize) -> Self {
        // Non-zero fill: every page is written now, not on first use inside the measurement.
        let mut bufs = vec![0xA5u8; count * slot];
        let base = bufs.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..count)
            .map(|i| libc::iovec {
                // SAFETY: i * slot is within `bufs` (count * slot bytes).
                iov_base: unsafe { base.add(i * slot) }.cast(),
                iov_len: slot,
            })
            .collect();
        let iov_base = iov.as_mut_ptr();
        let msgs = (0..count)
            .map(|i| {
                // SAFETY: an all-zero mmsghdr is a valid empty header.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                // SAFETY: i < count = iov.len().
                m.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Self {
            bufs,
            slot,
            _iov: iov,
            msgs,
        }
    }

    /// One `recvmmsg` with `flags`; the number of datagrams or the errno.
    fn recv(&mut self, fd: RawFd, flags: libc::c_int) -> Result<usize, i32> {
        // SAFETY: `msgs` point at `iov`, which point at `bufs`; all live as long as `self` and
        // are not moved (the vectors never grow). The kernel writes at most `slot` bytes per
        // datagram and the lengths into `msgs`.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            Err(errno())
        } else {
            Ok(n as usize)
        }
    }

    /// Datagram `i` of the last receive, or None if it was truncated (larger than a slot).
    fn datagram(&mut self, i: usize) -> Option<&mut [u8]> {
        let m = &self.msgs[i];
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (m.msg_len as usize).min(self.slot);
        Some(&mut self.bufs[i * self.slot..i * self.slot + len])
    }
}

/// Buffers for forwarded packets, one slot per (received packet in the batch, consumer),
/// allocated once. `sendto` reuses one slot per consumer (the buffer goes back to the pool
/// right after its system call); `sendmmsg` and `gso` need every slot of the batch at once.
struct SendPool {
    bufs: Vec<u8>,
    slot: usize,
}

impl SendPool {
    fn new(slots: usize, slot: usize) -> Self {
        Self {
            bufs: vec![0x5Au8; slots * slot],
            slot,
        }
    }

    fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.bufs[i * self.slot..(i + 1) * self.slot]
    }

    fn ptr(&mut self, i: usize) -> *mut libc::c_void {
        self.slot(i).as_mut_ptr().cast()
    }
}

struct Forwarder {
    fd: RawFd,
    variant: Variant,
    input_key: SrtpKey,
    roc: RocTracker,
    consumers: Vec<Consumer>,
    recv: RecvBatch,
    pool: SendPool,
    plains: Vec<Plain>,
    /// Which received datagram each entry of `plains` came from.
    origin: Vec<usize>,
    /// sendmmsg scratch: one header and iovec per pool slot, built once.
    mmsg: Vec<libc::mmsghdr>,
    mmsg_iov: Vec<libc::iovec>,
    /// GSO scratch.
    gso_iov: Vec<libc::iovec>,
    cmsg: CmsgBuf,
    stats: ForwardStats,
}

/// Room for one `cmsghdr` carrying a `u16`, aligned like `cmsghdr`.
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

impl Forwarder {
    fn new(
        fd: RawFd,
        variant: Variant,
        input_key: SrtpKey,
        consumers: Vec<Consumer>,
        size: usize,
    ) -> Self {
        // Room for the expected packets; a larger datagram is truncated and dropped.
        let slot = size.next_multiple_of(64).max(2048);
        let n = consumers.len();
        let slots = match variant {
            Variant::Sendto => n,
            _ => BATCH * n,
        };
        let mut pool = SendPool::new(slots, slot);
        let mut mmsg_iov = Vec::new();
        let mut mmsg = Vec::new();
        if variant == Variant::Sendmmsg {
            // Slot k * n + c holds received packet k for consumer c: a batch's messages are
            // the first (packets × n) entries, in order.
            mmsg_iov = (0..slots)
                .map(|i| libc::iovec {
                    iov_base: pool.ptr(i),
                    iov_len: 0,
                })
                .collect();
            let iov_base = mmsg_iov.as_mut_ptr();
            mmsg = (0..slots)
                .map(|i| {
                    // SAFETY: an all-zero mmsghdr is a valid empty header.
                    let mut m: libc::mmsghdr = unsafe { zeroed() };
                    m.msg_hdr.msg_name = (&consumers[i % n].addr as *const libc::sockaddr_in)
                        .cast_mut()
                        .cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    // SAFETY: i < slots = mmsg_iov.len().
                    m.msg_hdr.msg_iov = unsafe { iov_base.add(i) };
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
        }
        Self {
            fd,
            variant,
            input_key,
            roc: RocTracker::default(),
            consumers,
            recv: RecvBatch::new(BATCH, slot),
            pool,
            plains: Vec::with_capacity(BATCH),
            origin: Vec::with_capacity(BATCH),
            mmsg,
            mmsg_iov,
            gso_iov: Vec::with_capacity(GSO_MAX_SEGMENTS),
            cmsg: CmsgBuf([0; 32]),
            stats: ForwardStats::default(),
        }
    }

    /// Receives until the generator is done and the socket has been quiet for its receive
    /// timeout. CPU and wall time count from the first received packet to the last processed.
    fn run(&mut self, generator_done: &AtomicBool) {
        let mut start: Option<(Instant, (f64, f64), f64)> = None;
        let mut last = Instant::now();
        loop {
            self.stats.recv_calls += 1;
            match self.recv.recv(self.fd, libc::MSG_WAITFORONE) {
                Ok(0) => {}
                Ok(n) => {
                    if start.is_none() {
                        start = Some((Instant::now(), thread_cpu(), thread_clock()));
                    }
                    self.stats.received += n as u64;
                    self.forward_batch(n);
                    last = Instant::now();
                    continue;
                }
                Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::EINTR => {}
                Err(_) => self.stats.recv_errors += 1,
            }
            if generator_done.load(Ordering::Acquire) {
                break;
            }
        }
        let end_cpu = thread_cpu();
        let end_clock = thread_clock();
        if let Some((t0, cpu0, clock0)) = start {
            self.stats.clock_s = end_clock - clock0;
            self.stats.user_s = end_cpu.0 - cpu0.0;
            self.stats.sys_s = end_cpu.1 - cpu0.1;
            self.stats.wall_s = last.duration_since(t0).as_secs_f64();
        }
    }

    fn forward_batch(&mut self, n: usize) {
        self.plains.clear();
        self.origin.clear();
        for i in 0..n {
            let plain = match self.recv.datagram(i) {
                Some(buf) => unprotect(buf, &self.input_key, &mut self.roc),
                None => None,
            };
            match plain {
                Some(p) => {
                    self.plains.push(p);
                    self.origin.push(i);
                }
                None => self.stats.drops += 1,
            }
        }
        match self.variant {
            Variant::Sendto => self.send_each(),
            Variant::Sendmmsg => self.send_mmsg(),
            Variant::Gso | Variant::All => self.send_gso(),
        }
    }

    /// Fills pool slot `slot` with packet `k` of the batch for consumer `c`; its length or None.
    fn fill(&mut self, k: usize, c: usize, slot: usize) -> Option<usize> {
        let plain = self.plains[k];
        let i = self.origin[k];
        let recv_slot = self.recv.slot;
        let packet = &self.recv.bufs[i * recv_slot..i * recv_slot + plain.len];
        let out = &mut self.pool.bufs[slot * self.pool.slot..(slot + 1) * self.pool.slot];
        rewrite_and_protect(packet, &plain, &self.consumers[c], out)
    }

    fn send_failed(&mut self, packets: u64) {
        self.stats.send_failures += packets;
        if self.stats.first_send_errno.is_none() {
            self.stats.first_send_errno = Some(errno());
        }
    }

    fn send_each(&mut self) {
        for k in 0..self.plains.len() {
            for c in 0..self.consumers.len() {
                let Some(len) = self.fill(k, c, c) else {
                    self.stats.drops += 1;
                    continue;
                };
                let buf = self.pool.slot(c).as_ptr();
                self.stats.send_calls += 1;
                // SAFETY: `buf` holds `len` initialised bytes; `addr` is a valid sockaddr_in.
                let r = unsafe {
                    libc::sendto(
                        self.fd,
                        buf.cast(),
                        len,
                        0,
                        (&self.consumers[c].addr as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                if r < 0 {
                    self.send_failed(1);
                } else {
                    self.stats.forwarded += 1;
                }
            }
        }
    }

    fn send_mmsg(&mut self) {
        let n = self.consumers.len();
        let mut ready = 0;
        for k in 0..self.plains.len() {
            for c in 0..n {
                // Slot k * n + c. Protecting cannot fail (the slot has room); if it did, the
                // datagram would go out empty and not count as forwarded.
                let slot = k * n + c;
                let len = self.fill(k, c, slot).unwrap_or(0);
                if len == 0 {
                    self.stats.drops += 1;
                }
                self.mmsg_iov[slot].iov_len = len;
                ready = slot + 1;
            }
        }
        let mut off = 0;
        while off < ready {
            let count = (ready - off).min(SENDMMSG_MAX);
            self.stats.send_calls += 1;
            // SAFETY: `mmsg[off..off + count]` are headers built in `new`, pointing at
            // `mmsg_iov`, the pool's slots and the consumers' addresses, all alive and unmoved.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd,
                    self.mmsg.as_mut_ptr().add(off),
                    count as libc::c_uint,
                    0,
                )
            };
            if r < 0 {
                // The first message failed: count it and go on with the next.
                self.send_failed(1);
                off += 1;
            } else {
                let sent = &self.mmsg_iov[off..off + r as usize];
                self.stats.forwarded += sent.iter().filter(|v| v.iov_len > 0).count() as u64;
                off += r as usize;
            }
        }
    }

    fn send_gso(&mut self) {
        let n = self.consumers.len();
        let packets = self.plains.len();
        // Protect everything first: slot c * BATCH + k holds packet k for consumer c.
        for k in 0..packets {
            for c in 0..n {
                let len = self.fill(k, c, c * BATCH + k).unwrap_or(0);
                if len == 0 {
                    self.stats.drops += 1;
                }
                if c == 0 {
                    self.plains[k].out_len = len;
                }
            }
        }
        // Runs of one frame's packets within the batch, every segment the size of the first
        // except a shorter last one: one GSO send per run and consumer.
        let mut k0 = 0;
        while k0 < packets {
            let first = self.plains[k0];
            let segment = first.out_len;
            let mut k1 = k0 + 1;
            let mut total = segment;
            if segment > 0 {
                while k1 < packets && k1 - k0 < GSO_MAX_SEGMENTS {
                    let p = self.plains[k1];
                    if p.timestamp != first.timestamp
                        || p.out_len == 0
                        || p.out_len > segment
                        || total + p.out_len > GSO_MAX_BYTES
                    {
                        break;
                    }
                    total += p.out_len;
                    k1 += 1;
                    if p.out_len < segment {
                        break;
                    }
                }
                for c in 0..n {
                    self.send_burst(c, k0, k1, segment);
                }
            }
            k0 = k1;
        }
    }

    /// One `sendmsg` of packets `k0..k1` for consumer `c`, with `UDP_SEGMENT` if more than one.
    fn send_burst(&mut self, c: usize, k0: usize, k1: usize, segment: usize) {
        self.gso_iov.clear();
        for k in k0..k1 {
            let len = self.plains[k].out_len;
            let base = self.pool.ptr(c * BATCH + k);
            self.gso_iov.push(libc::iovec {
                iov_base: base,
                iov_len: len,
            });
        }
        let segments = k1 - k0;
        // SAFETY: an all-zero msghdr is a valid empty header.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&self.consumers[c].addr as *const libc::sockaddr_in)
            .cast_mut()
            .cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = self.gso_iov.as_mut_ptr();
        msg.msg_iovlen = segments as _;
        if segments > 1 {
            msg.msg_control = self.cmsg.0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is arithmetic on its argument.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
            // SAFETY: `msg_control` points at `self.cmsg`: 8-aligned, 32 bytes ≥ CMSG_SPACE(2),
            // so CMSG_FIRSTHDR is its start, with room for the header and the u16 (possibly
            // unaligned, hence write_unaligned).
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = SOL_UDP;
                (*cmsg).cmsg_type = UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
            }
        }
        self.stats.send_calls += 1;
        // SAFETY: `msg` points at the consumer's address, `gso_iov` (pointing at initialised
        // pool slots) and `cmsg`, all alive for the call.
        let r = unsafe { libc::sendmsg(self.fd, &msg, 0) };
        if r < 0 {
            self.send_failed(segments as u64);
        } else {
            self.stats.forwarded += segments as u64;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets, generator, sinks.

fn set_buffer(fd: RawFd, bytes: usize) -> usize {
    let v = bytes as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        // SAFETY: setsockopt reads one c_int from `v`.
        let forced = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                force,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if !forced {
            // Without CAP_NET_ADMIN: capped by net.core.[rw]mem_max.
            // SAFETY: as above.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    plain,
                    (&v as *const libc::c_int).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int into `got` and its length into `len`.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    got.max(0) as usize
}

fn sockaddr_in(addr: SocketAddr) -> Result<libc::sockaddr_in, String> {
    let SocketAddr::V4(a) = addr else {
        return Err(format!("{addr} is not IPv4"));
    };
    Ok(libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    })
}

fn core_id(core: usize) -> Result<core_affinity::CoreId, String> {
    core_affinity::get_core_ids()
        .ok_or("cannot list CPU cores")?
        .into_iter()
        .find(|c| c.id == core)
        .ok_or_else(|| format!("no CPU core {core}"))
}

/// Pins the calling thread; a failure is reported, not fatal (the figures are then less clean).
fn pin(core: core_affinity::CoreId) {
    if !core_affinity::set_for_current(core) {
        eprintln!("warning: cannot pin a thread to core {}", core.id);
    }
}

struct GenConfig {
    size: usize,
    frame_packets: usize,
    pps: u32,
    seconds: f64,
}

/// Sends paced frames of SRTP packets to `to` until the time is up; returns packets sent.
fn generate(socket: UdpSocket, key: SrtpKey, cfg: GenConfig) -> u64 {
    let fd = socket.as_raw_fd();
    let fp = cfg.frame_packets;
    let mut bufs = vec![0u8; fp * cfg.size];
    let mut template = vec![0u8; cfg.size];
    for (i, b) in template.iter_mut().enumerate().skip(GEN_HEADER_LEN) {
        *b = (i * 7) as u8;
    }
    let plain_len = cfg.size - TAG_LEN;
    let interval = Duration::from_secs_f64(fp as f64 / cfg.pps as f64);
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(cfg.seconds);
    // Start close to a wrap of the sequence number, so the rollover counter path is exercised.
    let mut index: u64 = 65_000;
    let mut timestamp: u32 = rand::random();
    let mut sent = 0u64;
    let mut frame: u32 = 0;
    loop {
        let due = start + interval * frame;
        if due.duration_since(start) >= run_for {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let abs_send_time = (start.elapsed().as_micros() as u64 * 262_144 / 1_000_000) as u32;
        for p in 0..fp {
            let buf = &mut bufs[p * cfg.size..(p + 1) * cfg.size];
            buf.copy_from_slice(&template);
            let seq = index as u16;
            let roc = (index >> 16) as u32;
            buf[0] = 0x90;
            buf[1] = 96 | if p + 1 == fp { 0x80 } else { 0 };
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
            buf[8..12].copy_from_slice(&INPUT_SSRC.to_be_bytes());
            buf[12..16].copy_from_slice(&[0xBE, 0xDE, 0, 1]);
            buf[16] = 0x32; // id 3, 3 bytes
            buf[17..20].copy_from_slice(&abs_send_time.to_be_bytes()[1..]);
            // The buffer is exactly plain_len + TAG_LEN long: protect cannot fail for room.
            let _ = key.protect(buf, GEN_HEADER_LEN, plain_len, INPUT_SSRC, roc, seq);
            index += 1;
        }
        let mut iov: Vec<libc::iovec> = (0..fp)
            .map(|p| libc::iovec {
                iov_base: bufs[p * cfg.size..].as_mut_ptr().cast(),
                iov_len: cfg.size,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is a valid empty header.
                let mut m: libc::mmsghdr = unsafe { zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut off = 0;
        while off < msgs.len() {
            // SAFETY: the headers point at `iov`, which point at `bufs`, all alive; the socket
            // is connected, so no address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(off),
                    (msgs.len() - off) as libc::c_uint,
                    0,
                )
            };
            if r <= 0 {
                off += 1;
            } else {
                off += r as usize;
                sent += r as u64;
            }
        }
        timestamp = timestamp.wrapping_add(3000);
        frame += 1;
    }
    sent
}

/// Drains all sink sockets (non-blocking `recvmmsg`, only the first bytes of each datagram
/// copied) until `stop`, then once more until they are empty. Between passes it sleeps 500 µs
/// (unless a socket still had a full batch queued): nobody ever waits on a sink socket, so the
/// forwarder's sends never pay for waking a receiver, and the core stays free for the generator.
/// The 4 MiB receive buffers hold far more than 500 µs of traffic.
fn drain_sinks(sinks: Vec<UdpSocket>, stop: Arc<AtomicBool>, received: Arc<AtomicU64>) {
    let mut batch = RecvBatch::new(BATCH, SINK_COPY);
    let mut stopping = false;
    loop {
        let mut pass = 0u64;
        let mut more = false;
        for s in &sinks {
            if let Ok(n) = batch.recv(s.as_raw_fd(), libc::MSG_DONTWAIT) {
                pass += n as u64;
                more |= n == BATCH;
            }
        }
        received.fetch_add(pass, Ordering::Relaxed);
        if more {
            continue;
        }
        if pass == 0 && stopping {
            return;
        }
        if stop.load(Ordering::Acquire) {
            stopping = true;
        } else {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Like [`drain_sinks`], but sleeps in `epoll_wait` (level-triggered, 10 ms timeout to see
/// `stop`) until a sink has data, so each arrival on an idle sink wakes this thread.
fn wait_sinks(sinks: Vec<UdpSocket>, stop: Arc<AtomicBool>, received: Arc<AtomicU64>) {
    // SAFETY: epoll_create1 has no preconditions; the fd is closed below.
    let ep = unsafe { libc::epoll_create1(0) };
    if ep < 0 {
        eprintln!("shardcast-floor: epoll_create1 failed; sinks poll instead");
        return drain_sinks(sinks, stop, received);
    }
    for (i, s) in sinks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a valid epoll_event and both fds are open.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut batch = RecvBatch::new(BATCH, SINK_COPY);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; sinks.len().max(1)];
    let mut stopping = false;
    loop {
        // SAFETY: `events` has room for `events.len()` entries.
        let n =
            unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as libc::c_int, 10) };
        let mut pass = 0u64;
        for ev in events.iter().take(n.max(0) as usize) {
            let Some(s) = sinks.get(ev.u64 as usize) else {
                continue;
            };
            while let Ok(k) = batch.recv(s.as_raw_fd(), libc::MSG_DONTWAIT) {
                pass += k as u64;
                if k < BATCH {
                    break;
                }
            }
        }
        received.fetch_add(pass, Ordering::Relaxed);
        if pass == 0 && stopping {
            break;
        }
        if stop.load(Ordering::Acquire) {
            stopping = true;
        }
    }
    // SAFETY: `ep` is our epoll fd, closed once.
    unsafe { libc::close(ep) };
}

struct VariantResult {
    sinks: Sinks,
    variant: Variant,
    consumers: usize,
    size: usize,
    frame_packets: usize,
    pps: u32,
    input_packets: u64,
    sink_received: u64,
    rcvbuf: usize,
    stats: ForwardStats,
}

impl VariantResult {
    fn cpu_s(&self) -> f64 {
        self.stats.user_s + self.stats.sys_s
    }

    fn us_per_fwd(&self) -> f64 {
        if self.stats.forwarded == 0 {
            0.0
        } else {
            self.cpu_s() * 1e6 / self.stats.forwarded as f64
        }
    }

    fn forwarded_pps(&self) -> f64 {
        if self.stats.wall_s > 0.0 {
            self.stats.forwarded as f64 / self.stats.wall_s
        } else {
            0.0
        }
    }

    fn sink_loss(&self) -> f64 {
        if self.stats.forwarded == 0 {
            0.0
        } else {
            1.0 - self.sink_received as f64 / self.stats.forwarded as f64
        }
    }

    fn input_loss(&self) -> f64 {
        if self.input_packets == 0 {
            0.0
        } else {
            1.0 - self.stats.received as f64 / self.input_packets as f64
        }
    }

    fn human_line(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "floor {:<8} consumers={} size={}  forwarded={} pps={:.0}  cpu_us_per_fwd={:.2}  \
             sink_loss={:.1}%  (input {} pps, input_loss={:.1}%, drops={}, send_failures={}, \
             syscalls/fwd={:.3}, user={:.3}s sys={:.3}s thread_clock={:.3}s, busy={:.0}%)",
            self.variant.name(),
            self.consumers,
            self.size,
            s.forwarded,
            self.forwarded_pps(),
            self.us_per_fwd(),
            self.sink_loss() * 100.0,
            self.pps,
            self.input_loss() * 100.0,
            s.drops,
            s.send_failures,
            if s.forwarded > 0 {
                (s.send_calls + s.recv_calls) as f64 / s.forwarded as f64
            } else {
                0.0
            },
            s.user_s,
            s.sys_s,
            s.clock_s,
            if s.wall_s > 0.0 {
                self.cpu_s() / s.wall_s * 100.0
            } else {
                0.0
            },
        );
        if let Some(e) = s.first_send_errno {
            line.push_str(&format!(
                "  first send error: {}",
                io::Error::from_raw_os_error(e)
            ));
        }
        if s.recv_errors > 0 {
            line.push_str(&format!("  recv errors: {}", s.recv_errors));
        }
        line
    }

    fn to_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "variant": self.variant.name(),
            "sinks": if self.sinks == Sinks::Wait { "wait" } else { "poll" },
            "consumers": self.consumers,
            "size": self.size,
            "frame_packets": self.frame_packets,
            "input_packets": self.input_packets,
            "forwarded_packets": s.forwarded,
            "sink_received": self.sink_received,
            "forwarded_pps": self.forwarded_pps(),
            "cpu_seconds": self.cpu_s(),
            "cpu_us_per_forwarded_packet": self.us_per_fwd(),
            // Extra detail.
            "input_pps": self.pps,
            "input_received": s.received,
            "drops": s.drops,
            "send_failures": s.send_failures,
            "send_calls": s.send_calls,
            "recv_calls": s.recv_calls,
            "user_seconds": s.user_s,
            "sys_seconds": s.sys_s,
            "thread_clock_seconds": s.clock_s,
            "wall_seconds": s.wall_s,
            "socket_rcvbuf_bytes": self.rcvbuf,
        })
    }
}

fn run_variant(args: &Args, variant: Variant, pps: u32) -> Result<VariantResult, String> {
    let bind = || UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"));
    let local = |s: &UdpSocket| s.local_addr().map_err(|e| format!("local address: {e}"));

    let forwarder_socket = bind()?;
    let rcvbuf = set_buffer(forwarder_socket.as_raw_fd(), SOCKET_BUFFER);
    // The receive timeout ends the forwarder's blocking receive once the generator is done.
    forwarder_socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    let forwarder_addr = local(&forwarder_socket)?;

    let mut sinks = Vec::with_capacity(args.consumers);
    let mut consumers = Vec::with_capacity(args.consumers);
    for i in 0..args.consumers {
        let s = bind()?;
        set_buffer(s.as_raw_fd(), SOCKET_BUFFER);
        consumers.push(Consumer {
            key: SrtpKey::random()?,
            ssrc: 0x1000_0000 + i as u32,
            seq_offset: rand::random::<u16>() as u64,
            ts_offset: rand::random(),
            addr: sockaddr_in(local(&s)?)?,
        });
        sinks.push(s);
    }

    let generator_socket = bind()?;
    set_buffer(generator_socket.as_raw_fd(), SOCKET_BUFFER);
    generator_socket
        .connect(forwarder_addr)
        .map_err(|e| format!("connect: {e}"))?;

    // Both ends of the input stream share one key (each with its own context).
    let secret: [u8; 16] = rand::random();
    let salt: [u8; 12] = rand::random();
    let input_key = SrtpKey::new(&secret, salt)?;
    let generator_key = SrtpKey::new(&secret, salt)?;

    let forwarder_core = core_id(args.core)?;
    let gen_core = core_id(args.gen_core)?;

    let stop_sinks = Arc::new(AtomicBool::new(false));
    let sink_count = Arc::new(AtomicU64::new(0));
    let generator_done = Arc::new(AtomicBool::new(false));

    let sink_thread = {
        let mode = args.sinks;
        let stop = stop_sinks.clone();
        let count = sink_count.clone();
        std::thread::Builder::new()
            .name("floor-sinks".into())
            .spawn(move || {
                pin(gen_core);
                match mode {
                    Sinks::Poll => drain_sinks(sinks, stop, count),
                    Sinks::Wait => wait_sinks(sinks, stop, count),
                }
            })
            .map_err(|e| format!("spawn: {e}"))?
    };

    let forwarder_thread = {
        let done = generator_done.clone();
        let size = args.size;
        std::thread::Builder::new()
            .name("floor-forwarder".into())
            .spawn(move || {
                pin(forwarder_core);
                let mut f = Forwarder::new(
                    forwarder_socket.as_raw_fd(),
                    variant,
                    input_key,
                    consumers,
                    size,
                );
                f.run(&done);
                drop(forwarder_socket);
                f.stats
            })
            .map_err(|e| format!("spawn: {e}"))?
    };

    // Let the receivers reach their loops before the first packet.
    std::thread::sleep(Duration::from_millis(50));
    let generator_thread = {
        let cfg = GenConfig {
            size: args.size,
            frame_packets: args.frame_packets,
            pps,
            seconds: args.seconds,
        };
        let done = generator_done.clone();
        std::thread::Builder::new()
            .name("floor-generator".into())
            .spawn(move || {
                pin(gen_core);
                let sent = generate(generator_socket, generator_key, cfg);
                done.store(true, Ordering::Release);
                sent
            })
            .map_err(|e| format!("spawn: {e}"))?
    };

    let input_packets = generator_thread
        .join()
        .map_err(|_| "generator thread panicked")?;
    let stats = forwarder_thread
        .join()
        .map_err(|_| "forwarder thread panicked")?;
    stop_sinks.store(true, Ordering::Release);
    sink_thread.join().map_err(|_| "sink thread panicked")?;

    Ok(VariantResult {
        sinks: args.sinks,
        variant,
        consumers: args.consumers,
        size: args.size,
        frame_packets: args.frame_packets,
        pps,
        input_packets,
        sink_received: sink_count.load(Ordering::Relaxed),
        rcvbuf,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_packet(key: &SrtpKey, index: u64, size: usize) -> Vec<u8> {
        let mut buf = vec![0x33u8; size];
        buf[0] = 0x90;
        buf[1] = 96;
        buf[2..4].copy_from_slice(&(index as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&1234u32.to_be_bytes());
        buf[8..12].copy_from_slice(&INPUT_SSRC.to_be_bytes());
        buf[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x32, 1, 2, 3]);
        let n = key.protect(
            &mut buf,
            GEN_HEADER_LEN,
            size - TAG_LEN,
            INPUT_SSRC,
            (index >> 16) as u32,
            index as u16,
        );
        assert_eq!(n, Some(size));
        buf
    }

    #[test]
    fn forwarded_packets_decrypt_with_the_consumer_key() {
        let secret = [7u8; 16];
        let salt = [9u8; 12];
        let sender = SrtpKey::new(&secret, salt).unwrap();
        let receiver = SrtpKey::new(&secret, salt).unwrap();
        let mut roc = RocTracker::default();
        let consumer = Consumer {
            key: SrtpKey::new(&[1; 16], [2; 12]).unwrap(),
            ssrc: 0xABCD,
            seq_offset: 100,
            ts_offset: 10,
            addr: sockaddr_in("127.0.0.1:9".parse().unwrap()).unwrap(),
        };
        // Across the input's sequence number wrap and the consumer's.
        for index in 65_400u64..65_700 {
            let mut packet = input_packet(&sender, index, 1200);
            let plain = unprotect(&mut packet, &receiver, &mut roc).expect("authenticates");
            assert_eq!(plain.index, index);
            assert_eq!(plain.len, 1200 - TAG_LEN);
            let mut out = vec![0u8; 2048];
            let n = rewrite_and_protect(&packet, &plain, &consumer, &mut out).unwrap();
            assert_eq!(n, 1200);
            // The consumer's side: its own key, SSRC and (ROC, SEQ).
            let out_index = index + 100;
            assert_eq!(out[2..4], (out_index as u16).to_be_bytes());
            assert_eq!(out[8..12], 0xABCDu32.to_be_bytes());
            let (header, body) = out[..n].split_at_mut(GEN_HEADER_LEN);
            let opened = consumer
                .key
                .key
                .open_in_place(
                    consumer
                        .key
                        .nonce(0xABCD, (out_index >> 16) as u32, out_index as u16),
                    Aad::from(&*header),
                    body,
                )
                .expect("consumer decrypts");
            assert!(opened.iter().all(|&b| b == 0x33));
        }
    }

    #[test]
    fn tampered_or_malformed_packets_are_drops() {
        let key = SrtpKey::new(&[7; 16], [9; 12]).unwrap();
        let mut roc = RocTracker::default();
        let mut packet = input_packet(&key, 5, 1200);
        packet[100] ^= 1;
        assert!(unprotect(&mut packet, &key, &mut roc).is_none());
        for len in 0..40 {
            let mut short = input_packet(&key, 6, 1200);
            short.truncate(len);
            assert!(unprotect(&mut short, &key, &mut roc).is_none());
        }
        // Extension length pointing past the end.
        let mut packet = input_packet(&key, 7, 1200);
        packet[14..16].copy_from_slice(&0xFFFFu16.to_be_bytes());
        assert!(unprotect(&mut packet, &key, &mut roc).is_none());
    }
}
