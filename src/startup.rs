//! Process start-up: media shards (one per core), then the signalling shard that owns the
//! listener and talks to the media shards over channels.

use std::net::SocketAddr;
use std::rc::Rc;

use futures_rustls::TlsAcceptor;
use glommio::net::TcpListener;
use glommio::Placement;
use shards::runtime::{executor_builder, keep_awake, spawn_media_shard, ShardConfig, ShardLink};
use shards::transport::webrtc_transport::ListenInfo;

use crate::app::App;
use crate::config::Config;
use crate::placement::{ShardClient, ShardPool};
use crate::signalling::server;
use crate::tls;

/// Starts every shard and serves until the signalling shard ends. Errors are start-up failures.
pub fn run(config: Config) -> Result<(), String> {
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let shard_count = config.shards.unwrap_or(cores.len().max(1)).clamp(1, 256);
    let announced = config.announced_address();
    let mut links: Vec<ShardLink> = Vec::with_capacity(shard_count);
    let mut handles = Vec::with_capacity(shard_count);
    for index in 0..shard_count {
        let port = config
            .rtc_port
            .checked_add(index as u16)
            .ok_or_else(|| format!("--rtc-port {} + {index} overflows", config.rtc_port))?;
        let cpu = if config.no_pin || cores.is_empty() {
            None
        } else {
            Some(cores[index % cores.len()])
        };
        let shard_config = ShardConfig {
            index,
            cpu,
            listen: ListenInfo {
                local: SocketAddr::new(config.rtc_ip, port),
                announced_address: announced.clone(),
            },
        };
        let (link, handle) = spawn_media_shard(shard_config).map_err(|e| e.to_string())?;
        log::info!(
            "media shard {index}: udp/tcp port {} on cpu {}",
            link.udp_port,
            cpu.map_or("any".to_string(), |c| c.to_string())
        );
        links.push(link);
        handles.push(handle);
    }

    let acceptor = if config.no_tls {
        None
    } else {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => tls::from_pem_files(cert, key)?,
            _ => tls::self_signed(std::slice::from_ref(&announced))?,
        };
        log::info!("TLS: {}", tls.description);
        Some(TlsAcceptor::from(tls.config))
    };

    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr, String>>();
    let signalling = executor_builder("signalling", Placement::Unbound)
        .spawn(move || async move {
            let mut clients = Vec::new();
            for link in links {
                let client = Rc::new(ShardClient::new(link.index, link.udp_port));
                let sender = keep_awake(link.requests.connect()).await;
                let receiver = keep_awake(link.messages.connect()).await;
                glommio::spawn_local(client.clone().run_sender(sender)).detach();
                clients.push((client, receiver));
            }
            // Bound only once the shards are reachable: a client that gets in is served.
            // Bound by std (SO_REUSEADDR, no SO_REUSEPORT) and handed to glommio: glommio's own
            // bind sets SO_REUSEPORT, which would silently share a port another process holds,
            // and no SO_REUSEADDR, so a restart failed while the last run's connections sat in
            // TIME_WAIT (found by tools/bench.sh restarting the server between scenarios).
            let bound = std::net::TcpListener::bind(config.listen)
                .map(|std_listener| {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    // SAFETY: the fd is a bound, listening TCP socket we own; glommio takes it.
                    unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) }
                })
                .map_err(|e| e.to_string());
            let listener = match bound {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot listen on {}: {e}", config.listen)));
                    return;
                }
            };
            let pool = ShardPool {
                shards: clients.iter().map(|(c, _)| c.clone()).collect(),
            };
            let app = match App::new(config, pool) {
                Ok(app) => Rc::new(app),
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            for (client, receiver) in clients {
                let events_app = app.clone();
                glommio::spawn_local(
                    client.run_receiver(receiver, move |event| events_app.on_shard_event(event)),
                )
                .detach();
            }
            // A heartbeat keeps this executor from parking for long: a wake-up from a media
            // shard's channel can be missed by a parked glommio executor (seen under CPU load),
            // and the next timer then picks the message up.
            glommio::spawn_local(async {
                loop {
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                }
            })
            .detach();
            let addr = listener.local_addr().unwrap_or(app.config.listen);
            let _ = ready_tx.send(Ok(addr));
            server::serve(app, listener, acceptor).await;
        })
        .map_err(|e| format!("cannot start the signalling shard: {e}"))?;
    let addr = ready_rx
        .recv()
        .map_err(|_| "the signalling shard ended during start-up".to_string())??;
    println!("shardcast ready: {scheme}://{addr}/ with {shard_count} media shard(s)");
    let _ = signalling.join();
    for handle in handles {
        let _ = handle.join();
    }
    Ok(())
}
