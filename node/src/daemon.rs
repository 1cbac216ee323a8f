//! `passalong run`: open the store, serve the API, release held attestations on time, shut
//! down cleanly on SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use passalong_api::{now_ms, AppState, Identities, Writer};
use passalong_store::Store;
use tracing::{info, warn};

use crate::cli::RunArgs;
use crate::config::Config;
use crate::datadir::DataDir;

/// Runs the daemon until a signal stops it.
pub fn run(dir: &DataDir, args: &RunArgs) -> Result<()> {
    let created = dir.init()?;
    // Refuse a key or token others can read before anything else starts.
    dir.keypair()?;
    dir.token()?;
    let config = Config::load(&dir.config_file())?.with_flags(args)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow!("invalid log filter {:?}: {e}", config.log))?;
    crate::logging::init(filter);
    if created {
        info!(data_dir = %dir.root().display(), "initialised a new data dir");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve(dir, config));
    // Whatever still runs (a handler's blocking store call past the shutdown deadline) is
    // left behind rather than waited for: the store was flushed or closed in `serve`.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}

async fn serve(dir: &DataDir, config: Config) -> Result<()> {
    let cache = match config.store_cache_mib {
        0 => passalong_store::auto_cache_bytes(&dir.store_dir()),
        mib => mib << 20,
    };
    let store = Arc::new(Store::open_with_cache(dir.store_dir(), cache)?);
    store.set_checkpoint_every(config.checkpoint_every);
    // An imported key's markets, on the first start: before the network, which follows what
    // the store does.
    crate::keyfile::follow_imported(dir.root(), &store)
        .context("cannot follow the imported key's markets")?;
    let keys = dir.keypair()?;
    let public_key = keys.public();
    let identities = Identities::single(keys);
    let listener = tokio::net::TcpListener::bind(config.api).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!("the API address {} is in use: is another daemon running? Use --api 127.0.0.1:0 for a free port", config.api)
        } else {
            anyhow!("cannot listen on {}: {e}", config.api)
        }
    })?;
    let addr = listener.local_addr()?;
    let public = if config.public_url.trim().is_empty() {
        passalong_web::PublicUrl::default()
    } else {
        passalong_web::PublicUrl::parse(&config.public_url).map_err(|e| anyhow!(e))?
    };
    let (fresh_tx, fresh_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut state = AppState::new(
        store.clone(),
        Writer::spawn_with(store.clone(), (!config.offline).then(|| fresh_tx.clone())),
        identities,
        dir.token()?,
        public
            .base
            .clone()
            .unwrap_or_else(|| format!("http://{addr}")),
        dir.root().to_path_buf(),
    )
    .context("cannot open the community's files")?;
    // Whether the relay is for members only, unless the config says, is decided here.
    let runs_community = state.community.current().is_some();
    // One registry for /metrics: libp2p's families (the network registers and records them)
    // and the node's (the API's collector).
    let mut registry = passalong_api::Registry::default();
    let net = if config.offline {
        info!("running offline: no peer-to-peer networking");
        None
    } else {
        let backend = Arc::new(crate::network::StoreBackend::new(store.clone()));
        let members = backend.members.clone();
        let net_config = config.net(runs_community)?;
        let net = passalong_net::Network::start_with_metrics(
            dir.keypair()?.seed(),
            net_config.clone(),
            backend,
            &mut registry,
        )
        .await
            .context("cannot start the peer-to-peer network (is another node using its port? use --listen with another port, or --offline)")?;
        let info = net.info().await?;
        info!(peer_id = %info.peer_id, listen = ?info.listen, "network started");
        if net_config.relay_server {
            let l = &net_config.relay.limits;
            info!(
                members_only = net_config.relay.members_only,
                max_reservations = l.max_reservations,
                max_circuits = l.max_circuits,
                max_circuit_bytes = l.max_circuit_bytes,
                max_circuit_secs = l.max_circuit_duration.as_secs(),
                "relay server on"
            );
            if config.external.is_empty() {
                warn!("the relay server has no external address to hand out in reservations until AutoNAT confirms one: set external in config.toml (or run with --external MULTIADDR)");
            }
        } else if runs_community {
            info!("this node runs a community without a relay: members behind NAT reach it only by hole punching through others' relays; set relay_server = true and external in config.toml if it is reachable from outside");
        }
        tokio::spawn(crate::network::publish_fresh(
            store.clone(),
            net.clone(),
            fresh_rx,
        ));
        tokio::spawn(crate::network::keep_community(crate::network::Upkeep {
            store: store.clone(),
            community: state.community.clone(),
            members,
            net: net.clone(),
            data_dir: dir.root().to_path_buf(),
            open_relay_by_default: net_config.relay_server
                && !net_config.relay.members_only
                && config.relay_members_only.is_none(),
        }));
        Some(net)
    };
    state.net = net
        .clone()
        .map(|n| Arc::new(crate::network::ApiNetwork(n)) as Arc<dyn passalong_api::Network>);
    state.metrics = passalong_api::Metrics::new(registry);
    state.member_kdf = config.member_kdf()?;
    state.signin = Arc::new(passalong_api::signin::SignInGate::new(
        config.signin_concurrency(),
        passalong_api::signin::DEFAULT_MAX_WAITING,
        Default::default(),
        config.client_ip_header()?,
    ));
    if let Some(c) = state.community.current() {
        if public.base.is_none() {
            warn!(
                community = %c.id,
                name = %c.name,
                api = %addr,
                "this node runs a community but public_url is unset: invite links and share pages point at the local API address, which members cannot open; set public_url in config.toml (or run with --public-url https://HOST) to the address members reach"
            );
        } else if config.client_ip_header.trim().is_empty() {
            warn!(
                community = %c.id,
                name = %c.name,
                "this node runs a community at a public_url but client_ip_header is unset: behind a reverse proxy every member's sign-in comes from 127.0.0.1, so failed sign-ins are slowed for everyone together; set client_ip_header = \"x-forwarded-for\" in config.toml (see docs/limits.md)"
            );
        } else {
            info!(community = %c.id, name = %c.name, "running community");
        }
    }
    dir.write_addr(addr)?;
    info!(api = %addr, dashboard = %format!("http://{addr}/"), %public_key, data_dir = %dir.root().display(), "passalong node running");
    let ticker = tokio::spawn(release_held(store.clone(), fresh_tx));
    // Expired sessions end (and members' keys leave memory) without waiting for a request.
    let sweeper = tokio::spawn(passalong_api::sessions::sweep_every(
        state.sessions.clone(),
        passalong_api::sessions::SWEEP_EVERY,
    ));
    let limits = config.serve_limits();
    passalong_api::serve_app(
        listener,
        passalong_web::app(state, &public),
        limits,
        shutdown_signal(),
    )
    .await
    .context("the API server failed")?;
    let _ = (dir.api_addr().ok() == Some(addr)).then(|| std::fs::remove_file(dir.addr_file()));
    ticker.abort();
    let _ = ticker.await;
    sweeper.abort();
    let _ = sweeper.await;
    if let Some(net) = &net {
        net.shutdown().await;
    }
    drop(net);
    close(store).await?;
    info!("stopped");
    Ok(())
}

/// Closes the store once the API's writer has let go of it, so that the next start opens it
/// fast (see `Store::close`); if something still holds it, a flush is enough for durability.
async fn close(mut store: Arc<Store>) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Arc::try_unwrap(store) {
            Ok(s) => {
                info!("closing the store");
                tokio::task::spawn_blocking(move || s.close())
                    .await
                    .context("closing the store")??;
                return Ok(());
            }
            Err(s) if std::time::Instant::now() < deadline => {
                store = s;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => {
                s.flush()?;
                return Ok(());
            }
        }
    }
}

/// Releases held (future-dated) attestations when their time comes.
async fn release_held(
    store: Arc<Store>,
    fresh: tokio::sync::mpsc::UnboundedSender<Vec<passalong_protocol::Id>>,
) {
    loop {
        let now = now_ms();
        let next = store.next_release_ms().ok().flatten();
        let wait_ms = next.map_or(1_000, |t| t.saturating_sub(now).clamp(10, 1_000));
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        if next.is_some_and(|t| t <= now_ms()) {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.tick(now_ms())).await {
                Ok(Ok(acks)) if !acks.is_empty() => {
                    info!(released = acks.len(), "held attestations released");
                    let valid = acks
                        .iter()
                        .filter(|a| a.status == passalong_store::Status::Valid)
                        .map(|a| a.id)
                        .collect();
                    let _ = fresh.send(valid);
                }
                Ok(Err(e)) => warn!(error = %e, "releasing held attestations failed"),
                _ => {}
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutting down");
}
