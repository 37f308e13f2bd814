//! `shardcast`: the SFU process.

use std::process::ExitCode;

use clap::Parser;
use shardcast::config::Config;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = Config::parse();
    match shardcast::startup::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("shardcast: {e}");
            ExitCode::FAILURE
        }
    }
}
