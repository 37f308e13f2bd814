//! CPU cost per 1200-byte UDP datagram sent on loopback, by way of sending: one `sendto` per
//! datagram (std, and glommio's `send_to`, the shard's per-datagram path), `sendmmsg` batches of
//! 32, and UDP GSO bursts (`UDP_SEGMENT`, through `shards::gso`, the shard's burst path) of 8 and
//! 32 segments. Every iteration sends 32 datagrams; criterion's throughput is datagrams per
//! second, so µs per datagram = 1e6 / throughput.
//!
//! On loopback the receiver's kernel work (UDP receive path, GSO segmentation) runs inside the
//! sender's system call and is charged to it. The receiving socket is drained by a thread that
//! spins on non-blocking `recvmmsg`, so the sender never pays for waking a sleeping receiver
//! (a subscriber on another machine would cost it none of that). Datagrams the receiver could
//! not keep up with are dropped at its socket (still charged to the sender); the share is printed.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glommio::Placement;
use shards::gso::{self, GsoBurst, MmsgSender, RecvBatch};

const PACKET: usize = 1200;
/// Datagrams per iteration, in every variant.
const PER_ITER: usize = 32;

/// A loopback socket drained by a spinning thread.
struct Sink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn new() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the sink");
        let rcvbuf = gso::set_recv_buffer(socket.as_raw_fd(), 8 << 20).unwrap_or(0);
        eprintln!("sink receive buffer: {} KiB", rcvbuf >> 10);
        let addr = socket.local_addr().expect("sink address");
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut batch = RecvBatch::new(64, 2048);
                while !stop.load(Ordering::Relaxed) {
                    match batch.recv(socket.as_raw_fd()) {
                        Ok(0) | Err(_) => std::hint::spin_loop(),
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> u64 {
        // Let the receiver catch up with what is queued.
        std::thread::sleep(Duration::from_millis(50));
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints how many of a variant's datagrams reached the sink.
fn report(name: &str, sink: &Sink, before: u64, sent: u64) {
    let got = sink.received() - before;
    let dropped = 100.0 * (sent.saturating_sub(got)) as f64 / sent.max(1) as f64;
    eprintln!("{name}: sent {sent}, received {got} ({dropped:.1}% dropped at the receiver)");
}

fn udp_egress(c: &mut Criterion) {
    let sink = Sink::new();
    let to = sink.addr;
    let payloads: Vec<Vec<u8>> = (0..PER_ITER)
        .map(|i| vec![0x80 | (i as u8 & 0x3f); PACKET])
        .collect();
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    let fd = tx.as_raw_fd();
    let gso_ok = gso::gso_supported(fd);
    eprintln!("UDP_SEGMENT supported: {gso_ok}");

    let mut group = c.benchmark_group("udp_egress_1200B");
    group.throughput(Throughput::Elements(PER_ITER as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));

    // (a) One sendto per datagram.
    let before = sink.received();
    let mut sent = 0u64;
    group.bench_function("sendto", |b| {
        b.iter(|| {
            for p in &payloads {
                if tx.send_to(p, to).is_ok() {
                    sent += 1;
                }
            }
        })
    });
    report("sendto", &sink, before, sent);

    // (a') glommio's send_to, the shard's per-datagram path (a synchronous sendmsg, io_uring
    // only when that would block).
    let executor = shards::runtime::executor_builder("udp-egress-bench", Placement::Unbound)
        .make()
        .expect("glommio executor");
    let before = sink.received();
    let mut sent = 0u64;
    group.bench_function("glommio_send_to", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let socket = glommio::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                let start = Instant::now();
                for _ in 0..iters {
                    for p in &payloads {
                        if socket.send_to(p, to).await.is_ok() {
                            sent += 1;
                        }
                    }
                }
                start.elapsed()
            })
        })
    });
    report("glommio_send_to", &sink, before, sent);

    // (b) sendmmsg, 32 datagrams a call.
    let mut mmsg = MmsgSender::new();
    let before = sink.received();
    let mut sent = 0u64;
    group.bench_function("sendmmsg_32", |b| {
        b.iter(|| {
            let n = mmsg
                .send(fd, &to, payloads.iter().map(Vec::as_slice))
                .unwrap_or(0);
            sent += n as u64;
        })
    });
    report("sendmmsg_32", &sink, before, sent);

    // (c) UDP GSO bursts of 8 and 32 segments.
    if gso_ok {
        for burst_size in [8usize, 32] {
            let name = format!("gso_burst_{burst_size}");
            let mut burst = GsoBurst::new();
            let before = sink.received();
            let mut sent = 0u64;
            group.bench_function(&name, |b| {
                b.iter(|| {
                    for chunk in payloads.chunks(burst_size) {
                        if burst.send(fd, &to, chunk.iter().map(Vec::as_slice)).is_ok() {
                            sent += chunk.len() as u64;
                        }
                    }
                })
            });
            report(&name, &sink, before, sent);
        }
    } else {
        eprintln!("no UDP_SEGMENT on this kernel: GSO variants skipped");
    }
    group.finish();
}

criterion_group!(benches, udp_egress);
criterion_main!(benches);
