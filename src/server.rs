//! Builds a running server from a `Config`: topology (which core does what), listeners, the
//! replica thread, the log, and one glommio executor per shard. Startup failures come back as
//! `StartError`s whose messages name the cause and the fix.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::bounded;
use thiserror::Error;

use crate::config::{Config, Settings};
use crate::mesh::doorbell::Doorbell;
use crate::mesh::msg::ToReplica;
use crate::mesh::{self, ReplicaTx, ShardLink, ShardLinks};
use crate::metrics::Metrics;
use crate::replica::driver::{self, LogSink, MemoryLog, ReplicaHost};
use crate::replica::{Replica, ReplicaConfig};
use crate::session::SessionTracker;
use crate::shard::{self, ConnLimits, ShardInit};
use crate::tree::DataTree;

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: the address is already in use. Is another ZooKeeper or zkd running on it? Stop it or set clientPort/clientPortAddress in zoo.cfg")]
    PortInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("shard {shard} could not start its io_uring executor: {reason}")]
    Executor { shard: u16, reason: String },
    /// Recovery refused the data directory (continuing would lose acknowledged data, or the
    /// files are not a database zkd can read). The process exits with code 2.
    #[error("cannot load the database: {0}")]
    Load(String),
    /// The TLS or SASL set-up cannot be used (a store that does not load, a JAAS file without
    /// its section): the configuration must be fixed, exit code 2.
    #[error("{0}")]
    Security(String),
    /// zoo.cfg describes something that cannot run (exit code 2, as a refused config).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// Which cores run what. Small machines share: on 1–3 cores the replica runs ON the executor of
/// the shard that owns the last core (`replica_host`: no thread hand-off between that shard and
/// the replica, and no context switch per round on a core they would share anyway) and the log
/// writer's thread is pinned there too; from 4 cores on the replica and the log writer get
/// cores (and threads) of their own.
#[derive(Debug, Clone)]
pub struct Topology {
    pub shard_cores: Vec<usize>,
    pub replica_core: Option<usize>,
    pub log_core: Option<usize>,
    /// The shard whose executor runs the replica; None: a dedicated thread.
    pub replica_host: Option<usize>,
}

impl Topology {
    pub fn plan(available: &[usize], shards: Option<usize>) -> Topology {
        if available.is_empty() {
            return Topology {
                shard_cores: vec![usize::MAX; shards.unwrap_or(1).max(1)],
                replica_core: None,
                log_core: None,
                replica_host: Some(0),
            };
        }
        let n = available.len();
        let (replica, log, shard_pool): (usize, usize, &[usize]) = if n >= 4 {
            (available[n - 1], available[n - 2], &available[..n - 2])
        } else {
            (available[n - 1], available[n - 1], available)
        };
        let count = shards.unwrap_or(shard_pool.len()).max(1);
        let shard_cores: Vec<usize> = (0..count).map(|i| shard_pool[i % shard_pool.len()]).collect();
        let replica_host = if n >= 4 { None } else { shard_cores.iter().rposition(|&c| c == replica) };
        Topology { shard_cores, replica_core: Some(replica), log_core: Some(log), replica_host }
    }
}

pub struct RunOptions {
    pub shards: Option<usize>,
    pub cores: Option<Vec<usize>>,
    /// Keep the tree in memory only (tests and benchmarks of the request path).
    pub in_memory: bool,
    /// Run the replica on its own thread even where the topology would host it on a shard.
    pub dedicated_replica: bool,
}

pub struct ServerHandle {
    pub replica_tx: ReplicaTx,
    /// The plain client port's address (the secure one's when there is no plain port).
    pub addr: SocketAddr,
    /// `secureClientPort`'s address, when configured.
    pub secure_addr: Option<SocketAddr>,
    /// The TLS configuration in use (reloaded in place with `client.certReload`).
    pub tls: Option<Arc<crate::tls::TlsContext>>,
    pub metrics: Arc<Metrics>,
    pub tree: Arc<DataTree>,
    pub ops: Arc<crate::admin::OpsState>,
    /// Where the AdminServer and the Prometheus endpoint listen, when enabled and bound.
    pub admin_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    http: Vec<crate::admin::http::HttpServer>,
    stop: Arc<AtomicBool>,
    shards: Vec<JoinHandle<()>>,
    replica_thread: Option<JoinHandle<()>>,
    /// Receives why, if the server stopped itself (its transaction log failed).
    pub fatal: crossbeam_channel::Receiver<String>,
}

impl ServerHandle {
    /// Stops accepting, closes connections, stops the replica and the log, and waits.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.replica_tx.send(ToReplica::Shutdown);
        if let Some(s) = self.replica_thread.take() {
            let _ = s.join();
        }
        for s in self.shards.drain(..) {
            let _ = s.join();
        }
        self.ops.stop_worker();
        for h in self.http.drain(..) {
            h.stop();
        }
    }
}

fn listener(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

fn pin(core: Option<usize>) {
    if let Some(c) = core {
        if c != usize::MAX {
            core_affinity::set_for_current(core_affinity::CoreId { id: c });
        }
    }
}

fn ip_of(key: &str, a: &Option<String>) -> Result<std::net::IpAddr, StartError> {
    match a {
        Some(a) => a.parse().map_err(|_| StartError::Other(format!("{key} {a:?} is not an IP address"))),
        None => Ok(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
    }
}

pub fn settings_from(cfg: &Config) -> Result<Settings, StartError> {
    let ip = ip_of("clientPortAddress", &cfg.client_port_address)?;
    let sec = &cfg.security;
    let secure_ip = ip_of("secureClientPortAddress", &sec.secure_client_port_address)?;
    Ok(Settings {
        jute_max_buffer: cfg.jute_max_buffer as usize,
        max_client_cnxns: cfg.max_client_cnxns,
        super_digest: cfg.super_digest.clone(),
        skip_acl: cfg.skip_acl,
        four_letter_whitelist: cfg.four_letter_words_whitelist(),
        server_id: cfg.server_id().unwrap_or(0) as u8,
        client_addr: cfg.client_port.map(|p| SocketAddr::new(ip, p)),
        secure_client_addr: sec.secure_client_port.map(|p| SocketAddr::new(secure_ip, p)),
        port_unification: sec.port_unification && cfg.client_port.is_some(),
        auth: crate::config::AuthSettings {
            sasl: None,
            sasl_super_users: sec.sasl_super_users.clone(),
            x509_super_user: sec.x509_super_user.clone(),
            enforce_auth: sec.enforce_auth,
            enforce_schemes: sec.enforce_schemes.clone(),
            allow_sasl_failed_clients: sec.allow_sasl_failed_clients,
            digest_enabled: sec.digest_enabled,
        },
        data_dir: cfg.data_dir.clone(),
        data_log_dir: cfg.data_log_dir.clone(),
        tick_ms: cfg.tick_time_ms as i64,
        min_session_timeout_ms: cfg.min_session_timeout_ms(),
        max_session_timeout_ms: cfg.max_session_timeout_ms(),
        max_outstanding: cfg.global_outstanding_limit as usize,
    })
}

/// The DIGEST-MD5 users of the JAAS file, when one is named (ZooKeeper's
/// `ServerCnxnFactory.configureSaslLogin`: a named file without the server's section stops it).
pub fn load_sasl(cfg: &Config) -> Result<Option<crate::config::jaas::SaslUsers>, StartError> {
    let sec = &cfg.security;
    let Some(path) = &sec.jaas_config else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Security(format!("cannot read the JAAS file {path}: {e}")))?;
    let bad = |e: String| StartError::Security(format!("the JAAS file {path} cannot be used: {e}"));
    let sections = crate::config::jaas::parse(&text).map_err(bad)?;
    if sec.quorum_sasl.is_some() && !sections.iter().any(|s| s.name == sec.sasl_login_context) {
        // A file for quorum SASL alone (QuorumServer/QuorumLearner): ZooKeeper then serves
        // clients without SASL, as it does for any file without the server's section.
        return Ok(None);
    }
    let users = crate::config::jaas::digest_users(&sections, &sec.sasl_login_context).map_err(bad)?;
    Ok(Some(crate::config::jaas::SaslUsers {
        users,
        super_password: sec.sasl_super_password.clone(),
        remove_host: sec.kerberos_remove_host,
        remove_realm: sec.kerberos_remove_realm,
    }))
}

/// Quorum SASL's settings (`quorum.auth.enableSasl=true`): the JAAS file's `QuorumServer`
/// users and `QuorumLearner` login, both needed, as ZooKeeper's `SaslQuorumAuthServer` and
/// `SaslQuorumAuthLearner` need them even when authentication is not required.
pub fn load_quorum_sasl(cfg: &Config) -> Result<Option<crate::quorum::auth::QuorumSaslSettings>, StartError> {
    let sec = &cfg.security;
    let Some(q) = &sec.quorum_sasl else { return Ok(None) };
    let Some(path) = &sec.jaas_config else {
        return Err(StartError::Security(
            "quorum.auth.enableSasl=true needs a JAAS file with the QuorumServer and QuorumLearner \
             sections: give -Djava.security.auth.login.config=PATH in SERVER_JVMFLAGS (or \
             zkd serve --jaas-config PATH), or remove quorum.auth.enableSasl"
                .into(),
        ));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::Security(format!("cannot read the JAAS file {path}: {e}")))?;
    let bad = |e: String| {
        StartError::Security(format!(
            "the JAAS file {path} cannot be used for quorum.auth.enableSasl=true \
             (quorum.auth.server.saslLoginContext={}, quorum.auth.learner.saslLoginContext={}): {e}",
            q.server_context, q.learner_context
        ))
    };
    let sections = crate::config::jaas::parse(&text).map_err(bad)?;
    let users = crate::config::jaas::digest_users(&sections, &q.server_context).map_err(bad)?;
    let (username, password) =
        crate::config::jaas::digest_login(&sections, &q.learner_context).map_err(bad)?;
    Ok(Some(crate::quorum::auth::QuorumSaslSettings {
        learner_require: q.learner_require,
        server_require: q.server_require,
        username,
        password,
        users: crate::config::jaas::SaslUsers { users, ..Default::default() },
    }))
}

/// Binds the port every shard listens on (SO_REUSEPORT), after probing it without: a second
/// zkd must not silently share it.
fn bind_all(addr: SocketAddr, shards: usize) -> Result<Vec<TcpListener>, StartError> {
    // A process killed with -9 releases the sockets its io_uring rings held a moment AFTER it
    // was reaped (the kernel tears rings down asynchronously), so a supervisor's immediate
    // restart can find the port still taken: wait for that, briefly, before calling it in use.
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    let mut said = false;
    loop {
        match listener(addr, false) {
            Ok(l) => {
                drop(l);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    return Err(StartError::PortInUse { addr });
                }
                if !said {
                    tracing::info!(
                        "{addr} is still in use; waiting up to {PORT_RELEASE_WAIT:?} for it to be released"
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(StartError::Listen { addr, source: e }),
        }
    }
    let mut listeners: Vec<TcpListener> = Vec::new();
    for _ in 0..shards {
        // Every shard listens on the port the first one bound: with port 0 each bind would
        // otherwise get a port of its own, and clients (told the first) would reach one shard.
        let at = match listeners.first() {
            Some(l) => l.local_addr().map_err(|e| StartError::Listen { addr, source: e })?,
            None => addr,
        };
        let l = listener(at, true).map_err(|e| StartError::Listen { addr: at, source: e })?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// How long start-up waits for a client port that is in use to be released.
const PORT_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts a server; returns once every shard is listening.
pub fn start(cfg: &Config, opts: RunOptions) -> Result<ServerHandle, StartError> {
    let mut settings = settings_from(cfg)?;
    settings.auth.sasl = load_sasl(cfg)?;
    let settings = Arc::new(settings);
    let tls = match &cfg.security.ssl {
        Some(ssl) => Some(crate::tls::TlsContext::new(ssl).map_err(StartError::Security)?),
        None => None,
    };
    let available: Vec<usize> = match &opts.cores {
        Some(c) => c.clone(),
        None => core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect(),
    };
    let mut topo = Topology::plan(&available, opts.shards);
    if opts.dedicated_replica {
        topo.replica_host = None;
    }
    tracing::info!(
        "topology: {} shard(s) on cores {:?}, replica on {:?} ({}), log writer on {:?}",
        topo.shard_cores.len(),
        topo.shard_cores,
        topo.replica_core,
        match topo.replica_host {
            Some(h) => format!("hosted by shard {h}"),
            None => "own thread".to_string(),
        },
        topo.log_core
    );
    let n = topo.shard_cores.len();
    let listeners: Vec<Option<TcpListener>> = match settings.client_addr {
        Some(a) => bind_all(a, n)?.into_iter().map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    };
    let secure: Vec<Option<TcpListener>> = match settings.secure_client_addr {
        Some(a) => bind_all(a, n)?.into_iter().map(Some).collect(),
        None => (0..n).map(|_| None).collect(),
    };
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let secure_bound = local(&secure[0]);
    let bound = match local(&listeners[0]).or(secure_bound) {
        Some(b) => b,
        None => {
            return Err(StartError::Other(
                "no client port configured (clientPort or secureClientPort)".into(),
            ))
        }
    };

    let metrics = Arc::new(Metrics::new(topo.shard_cores.len()));
    let now = driver::now();
    let (replica_chan, replica_rx) = bounded(mesh::REPLICA_QUEUE_MAX);
    // Every shard's inbox and doorbell exist before anything can send to the replica, so that
    // a hosted replica's senders (other shards, the log writer, the ops thread) ring its host.
    let mut shard_chans = Vec::new();
    for _ in &topo.shard_cores {
        let (tx, rx) = bounded(mesh::SHARD_INBOX_MAX);
        let (bell, bell_rx) = Doorbell::new().map_err(|e| StartError::Other(format!("socketpair: {e}")))?;
        shard_chans.push((tx, rx, Arc::new(bell), bell_rx));
    }
    let replica_tx = ReplicaTx::new(replica_chan, topo.replica_host.map(|h| shard_chans[h].2.clone()));
    let mut sessions = SessionTracker::new(settings.server_id, settings.tick_ms, now.wall_ms);
    type LogStatsHandle = Option<Arc<parking_lot::Mutex<crate::txnlog::LogStats>>>;
    // Process-wide, as ZooKeeper's `zookeeper.digest.enabled`: read before the database loads.
    crate::tree::digest::set_enabled(cfg.digest_enabled);
    let (tree, log, snapshotter, log_stats): (
        Arc<DataTree>,
        Box<dyn LogSink>,
        Option<crate::db::Snapshotter>,
        LogStatsHandle,
    ) = if opts.in_memory {
        (Arc::new(DataTree::new()), Box::new(MemoryLog { replica_tx: replica_tx.clone() }), None, None)
    } else {
        let max_txn_bytes = settings.jute_max_buffer + 1024;
        let loaded = crate::db::load(
            &settings.data_dir,
            &settings.data_log_dir,
            max_txn_bytes,
            cfg.snapshot_trust_empty,
        )
        .map_err(|e| StartError::Load(e.to_string()))?;
        for (id, timeout) in &loaded.sessions {
            // Sessions get a full timeout from now to reconnect, as in ZooKeeper.
            sessions.add(*id, *timeout, now.mono_ms);
        }
        let durable_tx = replica_tx.clone();
        let error_tx = replica_tx.clone();
        let log_opts = crate::txnlog::writer::LogOptions {
            pre_alloc_size_bytes: cfg.pre_alloc_size_kb.max(1) * 1024,
            force_sync: cfg.force_sync,
            fsync_warning_threshold_ms: cfg.fsync_warning_threshold_ms,
            pin_to_core: topo.log_core,
            write_path: log_write_path(cfg)?,
            ..Default::default()
        };
        let handle = crate::txnlog::writer::LogWriter::start(
            crate::db::version_dir(&settings.data_log_dir),
            log_opts,
            Box::new(move |zxid| {
                let _ = durable_tx.send(ToReplica::Durable { zxid });
            }),
            Box::new(move |e| {
                let msg = match e {
                    crate::txnlog::writer::LogWriteError::NoSpace { last_durable_zxid, .. } => {
                        tracing::error!("{e}");
                        ToReplica::LogNoSpace { last_durable_zxid }
                    }
                    e => {
                        tracing::error!("{e}");
                        ToReplica::LogFailed { reason: e.to_string() }
                    }
                };
                let _ = error_tx.send(msg);
            }),
        )
        .map_err(|e| {
            StartError::Other(format!(
                "cannot start the transaction log in {}: {e}",
                settings.data_log_dir.display()
            ))
        })?;
        crate::db::start_autopurge(
            settings.data_dir.clone(),
            settings.data_log_dir.clone(),
            cfg.autopurge_snap_retain_count as usize,
            cfg.autopurge_purge_interval_hours,
        );
        let snapshotter = crate::db::Snapshotter::new(
            &settings.data_dir,
            crate::snapshot::format::Compression::from_config(&cfg.snapshot_compression_method),
        );
        let stats = handle.stats_handle();
        (
            Arc::new(loaded.tree),
            Box::new(crate::replica::driver::DurableLog::new(handle, replica_tx.clone())),
            Some(snapshotter),
            Some(stats),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));

    let mut links = Vec::new();
    let mut inits = Vec::new();
    let limits = Arc::new(ConnLimits::new(limits_config(cfg)?));
    // The replica core publishes the quorum status here; the operations surface reads it.
    let status_board = Arc::new(crate::quorum::status::StatusBoard::default());
    let ops = crate::admin::OpsState::new(
        cfg,
        settings.clone(),
        tree.clone(),
        metrics.clone(),
        limits.clone(),
        replica_tx.clone(),
        log_stats,
        status_board.clone(),
        bound,
    );
    ops.start_worker().map_err(|e| StartError::Other(format!("spawn the ops thread: {e}")))?;
    let stop_reload = stop.clone();
    if let Some(t) = &tls {
        t.start_reloader(stop_reload, Duration::from_secs(1))
            .map_err(|e| StartError::Other(format!("spawn the TLS reload thread: {e}")))?;
    }
    for (i, ((l, sl), (tx, rx, bell, bell_rx))) in
        listeners.into_iter().zip(secure).zip(shard_chans).enumerate()
    {
        links.push(ShardLink { tx, bell: bell.clone(), probe: metrics.shard(i) });
        inits.push(ShardInit {
            id: i as u16,
            tree: tree.clone(),
            replica_tx: replica_tx.clone(),
            replica_host: None,
            inbox: rx,
            bell,
            bell_rx,
            settings: settings.clone(),
            listener: l,
            secure_listener: sl,
            tls: tls.clone(),
            limits: limits.clone(),
            stop: stop.clone(),
            probe: metrics.shard(i),
            metrics: metrics.clone(),
            ops: ops.clone(),
        });
    }

    let replica_cfg = ReplicaConfig {
        server_id: settings.server_id,
        tick_ms: settings.tick_ms,
        min_session_timeout_ms: settings.min_session_timeout_ms,
        max_session_timeout_ms: settings.max_session_timeout_ms,
        container_check_interval_ms: cfg.container_check_interval_ms as i64,
        extended_types_enabled: cfg.extended_types_enabled,
        super_digest: settings.super_digest.clone(),
        skip_acl: settings.skip_acl,
        enforce_quota: cfg.enforce_quota,
        snap_count: cfg.snap_count.max(2),
        snap_size_limit_bytes: cfg.snap_size_limit_kb.saturating_mul(1024),
    };
    let last_zxid = tree.last_processed_zxid();
    let ensemble = cfg.ensemble().map_err(|e| StartError::Config(e.to_string()))?;
    let (replica, first_actions) = match &ensemble {
        None => {
            (Replica::new(replica_cfg, tree.clone(), sessions, ShardLinks::new(links), last_zxid, now), None)
        }
        Some(e) => {
            let (peer, acts) = quorum_peer(e, &settings, epoch_counter_start(cfg)?, last_zxid, now)?;
            let r = Replica::with_peer(
                replica_cfg,
                tree.clone(),
                sessions,
                ShardLinks::new(links),
                last_zxid,
                peer,
                now,
            );
            (r, Some(acts))
        }
    };
    let replica_core = topo.replica_core;
    let tick = Duration::from_millis((settings.tick_ms / 2).clamp(10, 500) as u64);
    let mut host = ReplicaHost::new(replica, replica_rx, log, snapshotter, tick);
    let (fatal_tx, fatal_rx) = crossbeam_channel::bounded(1);
    host.set_fatal_notify(fatal_tx);
    host.set_status_board(status_board);
    if let (Some(e), Some(acts)) = (&ensemble, first_actions) {
        let mut io_cfg = quorum_io_config(
            e,
            &settings,
            tree.clone(),
            host.log_truncator(settings.jute_max_buffer + 1024),
            cfg.snapshot_trust_empty,
        )?;
        if let Some(q) = &cfg.security.quorum_ssl {
            let sec = &cfg.security;
            let t = crate::tls::quorum::QuorumTls::new(q, sec.ssl_quorum, sec.quorum_port_unification)
                .map_err(StartError::Security)?;
            t.start_reloader(stop.clone(), Duration::from_secs(1))
                .map_err(|e| StartError::Other(format!("spawn the quorum TLS reload thread: {e}")))?;
            tracing::info!(
                "quorum TLS: {}{}",
                if sec.ssl_quorum {
                    "quorum connections open with TLS (sslQuorum=true)"
                } else {
                    "quorum connections open in plain TCP"
                },
                if sec.quorum_port_unification {
                    "; the quorum listeners accept TLS and plain TCP (portUnification=true)"
                } else {
                    ""
                }
            );
            io_cfg.peers.tls = Some(t.clone());
            io_cfg.link.tls = Some(t);
        }
        if let Some(q) = load_quorum_sasl(cfg)? {
            tracing::info!(
                "quorum SASL (DIGEST-MD5): joining as user {}, {} known users; \
                 quorum.auth.learnerRequireSasl={}, quorum.auth.serverRequireSasl={}",
                q.username,
                q.users.users.len(),
                q.learner_require,
                q.server_require
            );
            let q = Arc::new(q);
            io_cfg.peers.sasl = Some(q.clone());
            io_cfg.link.sasl = Some(q);
        }
        let io = crate::replica::quorum_io::QuorumIo::start(io_cfg, replica_tx.clone())
            .map_err(|err| StartError::Other(format!("cannot start the quorum plane: {err}")))?;
        host.set_quorum(driver::QuorumParts { io, data_dir: settings.data_dir.clone() });
        host.start_peer(acts, now);
    }
    let replica_thread = match topo.replica_host {
        Some(h) => {
            host.set_host_shard(h as u16);
            inits[h].replica_host = Some(host);
            None
        }
        None => Some(
            std::thread::Builder::new()
                .name("zkd-replica".into())
                .spawn(move || {
                    pin(replica_core);
                    driver::run(host);
                })
                .map_err(|e| StartError::Other(format!("spawn replica: {e}")))?,
        ),
    };

    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<u16, StartError>>(inits.len());
    // Bound before the client port answers, so that a server answering `ruok` has its
    // AdminServer and metrics endpoint up too.
    let (mut http, admin_addr, metrics_addr) = start_http(cfg, &ops);
    let mut shards = Vec::new();
    for (init, core) in inits.into_iter().zip(topo.shard_cores.iter().copied()) {
        let ready = ready_tx.clone();
        let id = init.id;
        let h = std::thread::Builder::new()
            .name(format!("zkd-shard-{id}"))
            .spawn(move || {
                let placement = if core == usize::MAX {
                    glommio::Placement::Unbound
                } else {
                    glommio::Placement::Fixed(core)
                };
                let ex =
                    glommio::LocalExecutorBuilder::new(placement).name(&format!("zkd-shard-{id}")).make();
                let ex = match ex {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = ready.send(Err(StartError::Executor {
                            shard: id,
                            reason: explain_glommio(&e.to_string()),
                        }));
                        return;
                    }
                };
                let _ = ready.send(Ok(id));
                ex.run(shard::run(init));
            })
            .map_err(|e| StartError::Other(format!("spawn shard: {e}")))?;
        shards.push(h);
    }
    drop(ready_tx);
    for _ in 0..shards.len() {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::Release);
                let _ = replica_tx.send(ToReplica::Shutdown);
                http.drain(..).for_each(|h| h.stop());
                return Err(e);
            }
            Err(_) => return Err(StartError::Other("a shard did not start within 30 s".into())),
        }
    }
    match secure_bound {
        Some(s) if s != bound => tracing::info!("zkd serving clients on {bound}, and over TLS on {s}"),
        Some(_) => tracing::info!("zkd serving clients over TLS on {bound}"),
        None if settings.port_unification => tracing::info!("zkd serving clients on {bound} (plain and TLS)"),
        None => tracing::info!("zkd serving clients on {bound}"),
    }
    Ok(ServerHandle {
        replica_tx,
        addr: bound,
        secure_addr: secure_bound,
        tls,
        metrics,
        tree,
        ops,
        admin_addr,
        metrics_addr,
        http,
        stop,
        shards,
        replica_thread,
        fatal: fatal_rx,
    })
}

/// `zkd.txnlog.writePath`: direct (default), pwrite or mmap; see `txnlog::writer::WritePath`.
/// The election and ZAB state of a member of `e`: its epochs from the data dir (created from the
/// last zxid when missing, as ZooKeeper does) and its settings from zoo.cfg.
fn quorum_peer(
    e: &crate::config::Ensemble,
    settings: &Settings,
    epoch_counter_start: u32,
    last_zxid: i64,
    now: crate::replica::Now,
) -> Result<(crate::quorum::peer::Peer, Vec<crate::quorum::peer::Action>), StartError> {
    use crate::quorum::{epochs, peer, zab, Members, Sid};
    let dir = &settings.data_dir;
    let write = |name: &str, v: u32| {
        epochs::write(dir, name, v)
            .map_err(|err| StartError::Other(format!("cannot write {name} in {}: {err}", dir.display())))
    };
    let current = match epochs::read(dir, epochs::CURRENT_EPOCH).map_err(StartError::Load)? {
        Some(c) => c,
        None => {
            let c = crate::quorum::epoch_of(last_zxid.max(0));
            tracing::info!("{} not found! Creating with a reasonable default of {c}. This should only happen when you are upgrading your installation", epochs::CURRENT_EPOCH);
            write(epochs::CURRENT_EPOCH, c)?;
            c
        }
    };
    let accepted = match epochs::read(dir, epochs::ACCEPTED_EPOCH).map_err(StartError::Load)? {
        Some(a) => a,
        None => {
            tracing::info!("{} not found! Creating with a reasonable default of {current}. This should only happen when you are upgrading your installation", epochs::ACCEPTED_EPOCH);
            write(epochs::ACCEPTED_EPOCH, current)?;
            current
        }
    };
    let cfg = peer::PeerConfig {
        zab: zab::ZabConfig {
            my_id: e.my_id as Sid,
            tick_ms: i64::from(e.tick_time_ms),
            init_limit: i64::from(e.init_limit),
            sync_limit: i64::from(e.sync_limit),
            commit_log_count: e.commit_log_count.max(1) as usize,
            epoch_counter_start,
        },
        members: Members::from_ensemble(e),
        standalone: false,
        election: Default::default(),
        announced_config: Some(crate::quorum::wire::QuorumView::from_ensemble(e).to_text().into_bytes()),
    };
    let init =
        peer::PeerInit { accepted_epoch: accepted, current_epoch: current, last_zxid, log_tail: Vec::new() };
    tracing::info!(
        "server {} of an ensemble of {} voter(s) and {} observer(s): acceptedEpoch {accepted}, currentEpoch {current}, last zxid 0x{last_zxid:x}",
        e.my_id,
        cfg.members.voters.len(),
        cfg.members.observers.len()
    );
    peer::Peer::new(cfg, init, now.mono_ms as u64).map_err(|err| StartError::Load(err.to_string()))
}

/// The quorum thread's settings: election connections, the quorum port, and the storage a
/// learner's sync changes.
fn quorum_io_config(
    e: &crate::config::Ensemble,
    settings: &Settings,
    tree: Arc<DataTree>,
    log: Option<crate::txnlog::LogTruncator>,
    trust_empty: bool,
) -> Result<crate::replica::quorum_io::QuorumIoConfig, StartError> {
    use std::net::ToSocketAddrs;
    let resolve = |host: &str, port: u16| -> Result<SocketAddr, StartError> {
        (host, port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
            StartError::Config(format!("{host}:{port} (a server line's address) does not resolve"))
        })
    };
    let peers = crate::quorum::peers::PeersConfig::from_ensemble(e)
        .map_err(|err| StartError::Config(format!("the election address: {err}")))?;
    let mut quorum_addrs = std::collections::HashMap::new();
    let mut quorum_hosts = std::collections::HashMap::new();
    for s in e.servers.values() {
        quorum_addrs.insert(s.id as crate::quorum::Sid, resolve(&s.host, s.quorum_port)?);
        quorum_hosts.insert(s.id as crate::quorum::Sid, s.host.clone());
    }
    let me = e.me();
    let listen = crate::quorum::link::LinkConfig::listen_addrs(
        resolve(&me.host, me.quorum_port)?,
        e.quorum_listen_on_all_ips,
    );
    let connect_timeout = Duration::from_millis(u64::from(e.tick_time_ms) * u64::from(e.init_limit));
    let mut link = crate::quorum::link::LinkConfig::new(
        e.my_id as crate::quorum::Sid,
        listen,
        quorum_addrs,
        settings.jute_max_buffer,
        connect_timeout,
    );
    link.quorum_hosts = quorum_hosts;
    let disk = log.map(|log| crate::quorum::sync_storage::Disk {
        data_dir: settings.data_dir.clone(),
        data_log_dir: settings.data_log_dir.clone(),
        log,
        max_txn_bytes: settings.jute_max_buffer + 1024,
        trust_empty,
    });
    let storage = crate::quorum::sync_storage::SyncStorage::new(tree, disk);
    Ok(crate::replica::quorum_io::QuorumIoConfig { peers, link, storage })
}

fn log_write_path(cfg: &Config) -> Result<crate::txnlog::WritePath, StartError> {
    use crate::txnlog::WritePath;
    match cfg.zkd.get("zkd.txnlog.writePath").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(crate::txnlog::writer::DEFAULT_WRITE_PATH),
        Some("direct") => Ok(WritePath::Direct),
        Some("pwrite") => Ok(WritePath::Pwrite),
        Some("mmap") => Ok(WritePath::Mmap),
        Some(v) => {
            Err(StartError::Other(format!("zkd.txnlog.writePath={v:?}: expected direct, pwrite or mmap")))
        }
    }
}

/// `zkd.testing.epochCounterStart` (decimal or 0x-hex; default 0): see
/// `quorum::zab::ZabConfig::epoch_counter_start`. For tests only.
fn epoch_counter_start(cfg: &Config) -> Result<u32, StartError> {
    const KEY: &str = "zkd.testing.epochCounterStart";
    let Some(v) = cfg.zkd.get(KEY) else { return Ok(0) };
    let t = v.trim();
    let n = match t.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse(),
    };
    // u32::MAX would leave a leader nothing to propose: it would step down at its first write.
    match n {
        Ok(n) if n < u32::MAX => {
            tracing::warn!("{KEY}={t}: every new epoch's zxids start at counter 0x{n:x} (for tests only)");
            Ok(n)
        }
        _ => Err(StartError::Other(format!("{KEY}={v:?}: expected a counter below 0xffffffff"))),
    }
}

/// `maxClientCnxns` and zkd's `zkd.limits.*` keys.
fn limits_config(cfg: &Config) -> Result<crate::shard::limits::LimitsConfig, StartError> {
    let mut l = crate::shard::limits::LimitsConfig { max_cnxns: cfg.max_client_cnxns, ..Default::default() };
    let num = |key: &str, default: u64| -> Result<u64, StartError> {
        match cfg.zkd.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| StartError::Other(format!("{key}={v:?}: expected a number"))),
        }
    };
    l.log_interval_ms = num("zkd.limits.logIntervalMs", l.log_interval_ms)?;
    l.churn_threshold_per_s = num("zkd.limits.churnThresholdPerSecond", l.churn_threshold_per_s)?;
    l.max_ips = num("zkd.limits.maxTrackedIps", l.max_ips as u64)?.max(1) as usize;
    Ok(l)
}

/// The AdminServer (`admin.*`) and the Prometheus endpoint (`metricsProvider.*`). As in
/// ZooKeeper, a port that cannot be bound is logged and the server runs on without it.
fn start_http(
    cfg: &Config,
    ops: &Arc<crate::admin::OpsState>,
) -> (Vec<crate::admin::http::HttpServer>, Option<SocketAddr>, Option<SocketAddr>) {
    use crate::admin::http::{Handler, HttpServer, Response};
    let mut servers = Vec::new();
    let (mut admin_addr, mut metrics_addr) = (None, None);
    if cfg.admin_enable_server {
        let base = cfg.admin_command_url.trim_end_matches('/').to_string();
        let o = ops.clone();
        let h: Handler = Arc::new(move |path: &str, query: &str| {
            let path = path.trim_end_matches('/');
            if path == base {
                return Response::ok("text/html", crate::admin::json::index_html(&base));
            }
            match path.strip_prefix(&base).and_then(|p| p.strip_prefix('/')) {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    let v = crate::admin::json::run(&o, name, query);
                    Response::ok("application/json", crate::admin::json::pretty(&v))
                }
                _ => Response::not_found(),
            }
        });
        match format!("{}:{}", cfg.admin_server_address, cfg.admin_server_port).parse::<SocketAddr>() {
            Ok(addr) => match HttpServer::start("zkd-admin", addr, h) {
                Ok(s) => {
                    tracing::info!("AdminServer on http://{}{}", s.addr, cfg.admin_command_url);
                    admin_addr = Some(s.addr);
                    servers.push(s);
                }
                Err(e) => tracing::error!("Problem starting AdminServer on {addr}: {e} (set admin.serverPort, or admin.enableServer=false)"),
            },
            Err(_) => tracing::error!("admin.serverAddress {:?} is not an IP address; AdminServer not started", cfg.admin_server_address),
        }
    }
    if cfg.metrics_provider_class_name.as_deref() == Some(crate::admin::prom::PROVIDER_CLASS) {
        let o = ops.clone();
        let h: Handler = Arc::new(move |path: &str, _q: &str| match path {
            "/metrics" | "/" => {
                Response::ok("text/plain; version=0.0.4; charset=utf-8", crate::admin::prom::render(&o))
            }
            _ => Response::not_found(),
        });
        match format!("{}:{}", cfg.metrics_http_host, cfg.metrics_http_port).parse::<SocketAddr>() {
            Ok(addr) => match HttpServer::start("zkd-prometheus", addr, h) {
                Ok(s) => {
                    tracing::info!("Prometheus metrics on http://{}/metrics", s.addr);
                    metrics_addr = Some(s.addr);
                    servers.push(s);
                }
                Err(e) => tracing::error!(
                    "cannot serve Prometheus metrics on {addr}: {e} (set metricsProvider.httpPort)"
                ),
            },
            Err(_) => tracing::error!(
                "metricsProvider.httpHost {:?} is not an IP address; Prometheus endpoint not started",
                cfg.metrics_http_host
            ),
        }
    } else if let Some(other) = &cfg.metrics_provider_class_name {
        tracing::warn!(
            "metricsProvider.className={other} is not supported; zkd serves {}",
            crate::admin::prom::PROVIDER_CLASS
        );
    }
    (servers, admin_addr, metrics_addr)
}

/// Turns glommio's start-up errors into a cause and a fix.
fn explain_glommio(e: &str) -> String {
    if e.contains("memlock") || e.contains("MemLock") {
        format!("{e}. io_uring needs locked memory: raise it (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in a systemd unit)")
    } else if e.contains("Operation not permitted")
        || e.contains("EPERM")
        || e.contains("Function not implemented")
    {
        format!("{e}. io_uring_setup was refused: a container seccomp profile (Docker's default) or kernel.io_uring_disabled blocks io_uring; allow io_uring_setup/io_uring_enter/io_uring_register or run with --security-opt seccomp=unconfined")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_shares_on_small_machines_and_spreads_on_big_ones() {
        let t = Topology::plan(&[0], None);
        assert_eq!((t.shard_cores, t.replica_core, t.log_core), (vec![0], Some(0), Some(0)));
        assert_eq!(t.replica_host, Some(0), "one core: the only shard hosts the replica");
        let t = Topology::plan(&[0, 1], None);
        assert_eq!((t.shard_cores, t.replica_core), (vec![0, 1], Some(1)));
        assert_eq!(t.replica_host, Some(1), "the shard on the replica's core hosts it");
        let cores: Vec<usize> = (0..64).collect();
        let t = Topology::plan(&cores, None);
        assert_eq!(t.shard_cores.len(), 62);
        assert_eq!((t.replica_core, t.log_core), (Some(63), Some(62)));
        assert_eq!(t.replica_host, None, "big machines: a core and thread of its own");
        let t = Topology::plan(&[0, 1], Some(1));
        assert_eq!(t.shard_cores, vec![0]);
        assert_eq!(t.replica_host, None, "no shard on the replica's core");
        assert_eq!(Topology::plan(&[], Some(3)).replica_host, Some(0));
    }
}
