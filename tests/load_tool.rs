//! The bundled load tool against the real server: a small scenario on loopback at a low rate
//! must deliver every packet each publisher sent to every consumer, write a JSON report with
//! every field scripts read, draw the plot, and turn thresholds into the exit code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::Server;
use serde_json::Value;

/// The `shardcast-load` binary of this build (another package of the workspace, so not in
/// `CARGO_BIN_EXE_*`): next to the server binary, where `cargo test --workspace` (the README's
/// test command) builds it; built here when this test runs alone without it.
fn load_tool() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_BIN_EXE_shardcast")).with_file_name("shardcast-load");
        if path.exists() {
            return path;
        }
        let release = path.parent().is_some_and(|d| d.ends_with("release"));
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", "shardcast-tools", "--bin", "shardcast-load"]);
        if release {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("cannot run cargo to build shardcast-load");
        assert!(status.success(), "building shardcast-load failed");
        assert!(path.exists(), "{} missing after the build", path.display());
        path
    })
}

fn base_url(server: &Server) -> String {
    let scheme = if server.tls() { "wss" } else { "ws" };
    format!("{scheme}://{}", server.addr())
}

fn run_load(args: &[&str]) -> Output {
    Command::new(load_tool())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run shardcast-load")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is JSON")
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shardcast-load-test-{}-{name}", std::process::id()))
}

/// Every field the issue names, per role and overall.
const ROLE_FIELDS: [&str; 20] = [
    "peers",
    "joined",
    "join_failed",
    "join_ms",
    "first_packet_ms",
    "packets_sent_per_s",
    "packets_received_per_s",
    "mbps_sent",
    "mbps_received",
    "packets_sent",
    "packets_received",
    "loss_pct",
    "nacks_sent",
    "nack_seqs_received",
    "plis_sent",
    "plis_received",
    "jitter_ms",
    "latency_ms",
    "rtx_sent",
    "verified",
];
const PERCENTILES: [&str; 5] = ["mean", "p50", "p95", "p99", "max"];

#[test]
fn small_scenario_delivers_every_packet_and_reports_every_field() {
    let server = Server::start(&["--shards", "1"]);
    let json = temp("ok.json");
    let svg = temp("ok.svg");
    let pid = server.pid().to_string();
    let url = base_url(&server);
    let out = run_load(&[
        "--url",
        &url,
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--audio-publishers",
        "1",
        "--subscribers",
        "2",
        "--bitrate",
        "300k",
        "--fps",
        "15",
        "--ramp",
        "10",
        "--warmup",
        "1",
        "--duration",
        "3",
        "--drain",
        "1.5",
        "--verify",
        "1/1",
        // Receivers poll their sockets (the bench's mode); the other tests use armed receives.
        "--poll-us",
        "1000",
        "--server-pid",
        &pid,
        "--json",
        json.to_str().expect("utf-8 path"),
        "--plot",
        svg.to_str().expect("utf-8 path"),
        "--max-loss",
        "0",
        "--max-p99-ms",
        "5000",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = read_json(&json);

    // Every consumer got every packet its publisher sent from its first packet on: 2
    // subscribers × 2 producers, plus each publisher consuming the other.
    let deliveries = r["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 6, "{deliveries:#?}");
    for d in deliveries {
        assert!(
            d["received"].as_u64() > Some(10),
            "too little received: {d}"
        );
        assert_eq!(d["missing_vs_sent"], 0, "packets missing: {d}");
        assert_eq!(d["lost"], 0, "{d}");
    }
    assert_eq!(r["delivery"]["consumers_checked"], 6, "{}", r["delivery"]);
    assert_eq!(r["delivery"]["consumers_incomplete"], 0);
    let sent = r["sent_streams"].as_array().expect("sent_streams");
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter().all(|s| s["packets"].as_u64() > Some(20)),
        "{sent:#?}"
    );
    assert_eq!(r["overall"]["loss_pct"], 0.0);
    assert_eq!(r["overall"]["verify_failed"], 0);
    assert!(r["overall"]["verified"].as_u64() > Some(100));

    // The fields scripts read.
    for role in ["video-publisher", "audio-publisher", "subscriber"] {
        let x = &r["roles"][role];
        for f in ROLE_FIELDS {
            assert!(!x[f].is_null(), "roles.{role}.{f} missing");
        }
    }
    for f in ROLE_FIELDS {
        assert!(!r["overall"][f].is_null(), "overall.{f} missing");
    }
    for h in ["join_ms", "first_packet_ms", "latency_ms", "jitter_ms"] {
        for p in PERCENTILES {
            assert!(r["overall"][h][p].is_number(), "overall.{h}.{p} missing");
        }
    }
    let subs = &r["roles"]["subscriber"];
    assert_eq!(subs["peers"], 2);
    assert_eq!(subs["joined"], 2);
    assert!(
        subs["packets_received_per_s"].as_f64() > Some(10.0),
        "{subs}"
    );
    assert!(subs["latency_ms"]["samples"].as_u64() > Some(50), "{subs}");
    assert!(
        subs["first_packet_ms"]["samples"].as_u64() == Some(2),
        "{subs}"
    );
    assert!(r["roles"]["video-publisher"]["mbps_sent"].as_f64() > Some(0.1));
    assert!(r["roles"]["audio-publisher"]["packets_sent_per_s"].as_f64() > Some(40.0));
    let server_report = &r["server"];
    for f in [
        "cpu_pct",
        "cpu_seconds",
        "forwarded_packets",
        "forwarded_pps",
        "cpu_us_per_forwarded_packet",
    ] {
        assert!(
            server_report[f].is_number(),
            "server.{f} missing: {server_report}"
        );
    }
    assert_eq!(server_report["pid"], server.pid());
    assert!(r["load_tool"]["cpu_pct"].is_number());
    assert_eq!(r["load_tool"]["saturated"], false, "{}", r["load_tool"]);
    assert!(r["timeline"].as_array().is_some_and(|t| t.len() >= 4));
    assert_eq!(r["thresholds"]["passed"], true);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("µs CPU per forwarded packet"), "{table}");

    let plot = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(
        plot.contains("<svg") && plot.contains("latency"),
        "not an SVG plot"
    );
    let _ = std::fs::remove_file(json);
    let _ = std::fs::remove_file(svg);
}

#[test]
fn simulated_loss_is_nacked_and_repaired_by_rtx() {
    let server = Server::start(&["--shards", "1"]);
    let json = temp("loss.json");
    let url = base_url(&server);
    let out = run_load(&[
        "--url",
        &url,
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--audio-publishers",
        "1",
        "--subscribers",
        "2",
        "--bitrate",
        "400k",
        "--fps",
        "15",
        "--ramp",
        "10",
        "--warmup",
        "1",
        "--duration",
        "3",
        "--drain",
        "2",
        "--verify",
        "1",
        "--recv-loss",
        "5",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--max-loss",
        "0",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let r = read_json(&json);
    let o = &r["overall"];
    assert!(o["totals"]["simulated_drops"].as_u64() > Some(0), "{o}");
    // Every drop was seen as a gap, NACKed, and repaired: by RTX for video, by a resend on the
    // same SSRC for audio (no RTX for Opus).
    assert!(
        o["nack_seqs_sent"].as_u64() >= o["totals"]["simulated_drops"].as_u64(),
        "{o}"
    );
    assert!(o["rtx_received"].as_u64() > Some(0), "{o}");
    assert!(o["repaired"].as_u64() > Some(0), "{o}");
    assert!(r["roles"]["video-publisher"]["rtx_sent"].as_u64().is_some());
    assert_eq!(o["loss_pct"], 0.0, "{o}");
    assert_eq!(o["verify_failed"], 0, "{o}");
    assert_eq!(r["delivery"]["consumers_checked"], 6, "{}", r["delivery"]);
    assert_eq!(
        r["delivery"]["consumers_incomplete"], 0,
        "{}",
        r["delivery"]
    );
    let _ = std::fs::remove_file(json);
}

#[test]
fn thresholds_set_the_exit_code() {
    let server = Server::start(&["--shards", "1"]);
    let url = base_url(&server);
    let json = temp("p99.json");
    // A latency bound nothing can meet: exit 1, and the report says why.
    let out = run_load(&[
        "--url",
        &url,
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--subscribers",
        "1",
        "--bitrate",
        "200k",
        "--warmup",
        "0.5",
        "--duration",
        "1.5",
        "--drain",
        "0.5",
        "--verify",
        "1",
        "--max-p99-ms",
        "0.000001",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let r = read_json(&json);
    assert_eq!(r["thresholds"]["passed"], false);
    let failures = r["thresholds"]["failures"].to_string();
    assert!(failures.contains("p99"), "{failures}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("threshold FAILED"));

    // Peers that cannot join (nothing listens there) break --max-join-failures (default 0).
    let dead = format!("ws://127.0.0.1:{}", free_port());
    let out = run_load(&[
        "--url",
        &dead,
        "--rooms",
        "1",
        "--publishers",
        "1",
        "--subscribers",
        "1",
        "--warmup",
        "0",
        "--duration",
        "0.5",
        "--drain",
        "0",
        "--quiet",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failed to join"),
        "{}",
        describe(&out)
    );

    // Bad options are a usage error, not a run.
    let out = run_load(&["--url", "http://x", "--quiet"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let _ = std::fs::remove_file(json);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
