//! Command-line configuration of the `shardcast` process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

/// Shardcast: a thread-per-core WebRTC SFU that speaks the mediasoup-demo protocol.
#[derive(Debug, Clone, Parser)]
#[command(name = "shardcast", version, about)]
pub struct Config {
    /// Address of the HTTPS/WSS listener (protoo signalling, the web client, /metrics).
    #[arg(long, default_value = "0.0.0.0:4443")]
    pub listen: SocketAddr,

    /// Serve plain HTTP/WS instead of HTTPS/WSS.
    #[arg(long)]
    pub no_tls: bool,

    /// PEM certificate (chain) for the HTTPS/WSS listener; without it a self-signed one is made.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Number of media shards (one per core by default).
    #[arg(long)]
    pub shards: Option<usize>,

    /// IP the media shards bind their UDP sockets and ICE-TCP listeners to.
    #[arg(long, default_value = "0.0.0.0")]
    pub rtc_ip: IpAddr,

    /// First media port: shard i listens on udp/tcp `rtc-port + i`.
    #[arg(long, default_value_t = 40000)]
    pub rtc_port: u16,

    /// Address announced in ICE candidates (default: --rtc-ip, or 127.0.0.1 when that is 0.0.0.0).
    #[arg(long)]
    pub announced_ip: Option<String>,

    /// ICE consent timeout in seconds (mediasoup's iceConsentTimeout; the demo uses 20).
    #[arg(long, default_value_t = 20)]
    pub ice_consent_timeout: u8,

    /// Directory of the web client to serve at `/` (built by tools/web).
    #[arg(long)]
    pub web_root: Option<PathBuf>,

    /// Secret that allows applyNetworkThrottle / resetNetworkThrottle (env NETWORK_THROTTLE_SECRET).
    #[arg(long, env = "NETWORK_THROTTLE_SECRET")]
    pub throttle_secret: Option<String>,

    /// Do not pin executors to cores (useful when sharing a small machine with load tools).
    #[arg(long)]
    pub no_pin: bool,
}

impl Config {
    /// The address written into ICE candidates.
    pub fn announced_address(&self) -> String {
        match &self.announced_ip {
            Some(ip) => ip.clone(),
            None if self.rtc_ip.is_unspecified() => "127.0.0.1".to_string(),
            None => self.rtc_ip.to_string(),
        }
    }
}
