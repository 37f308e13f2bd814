//! `shardcast-load`: puts a realistic mediasoup-demo load on an SFU and reports throughput,
//! loss, latency and the server's CPU per forwarded packet. See `--help`.
//!
//! Exit status: 0 when every threshold held, 1 when one did not, 2 when the run itself failed.

use std::io::Write;

use clap::Parser;
use shardcast_tools::load::{self, config::LoadArgs, plot, report};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let args = LoadArgs::parse();
    let json = args.json.clone();
    let svg = args.plot.clone();
    let report = match load::run(args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shardcast-load: {e}");
            std::process::exit(2);
        }
    };
    let table = report::table(&report);
    let to_stdout_json = json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if to_stdout_json {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    if let Some(path) = json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("shardcast-load: cannot encode the report: {e}");
                std::process::exit(2);
            }
        };
        let written = if to_stdout_json {
            writeln!(std::io::stdout(), "{text}")
        } else {
            std::fs::write(&path, text)
        };
        if let Err(e) = written {
            eprintln!("shardcast-load: cannot write {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    if let Some(path) = svg {
        let title = format!(
            "shardcast-load: {} rooms x ({} video + {} audio publishers, {} subscribers)",
            report.config.rooms,
            report.config.publishers,
            report.config.audio_publishers,
            report.config.subscribers
        );
        if let Err(e) = plot::draw(&path, &report.timeline, &title) {
            eprintln!("shardcast-load: cannot draw {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    std::process::exit(if report.thresholds.passed { 0 } else { 1 });
}
