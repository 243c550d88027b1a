//! The operations surface: four-letter words on the client port, the AdminServer (JSON over
//! HTTP), Prometheus `/metrics`, reports of the shards' per-IP limits and churn, logging control.
//!
//! Nothing here runs on a shard's event loop for more than a registry insert: a four-letter word
//! is handed to the `zkd-ops` thread, which gathers what it needs from shared structures (per-shard
//! connection registries, the tree's watch tables, the metrics cells — each behind short locks) and
//! from the replica (sessions, by message), then hands the text back. The AdminServer and
//! Prometheus threads call the same gatherers.

pub mod http;
pub mod json;
pub mod logging;
pub mod prom;
pub mod remote;
pub mod words;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::config::{Config, Settings};
use crate::mesh::msg::ToReplica;
use crate::mesh::ReplicaTx;
use crate::metrics::Metrics;
use crate::quorum::status::{QuorumStatus, StatusBoard};
use crate::session::SessionsDump;
use crate::shard::{ConnLimits, ConnStats};
use crate::tree::DataTree;

/// The version string monitoring tools parse: ZooKeeper's form, with zkd's own version.
pub const VERSION_LINE: &str =
    concat!("3.8.0-zkd-", env!("CARGO_PKG_VERSION"), ", built on 1970-01-01 00:00 UTC");

/// A four-letter word to answer on the ops thread.
struct Job {
    word: String,
    /// Wakes the shard task that waits for the text (a cross-thread wake-up, no polling).
    reply: futures_channel::oneshot::Sender<String>,
}

/// Everything the operations surface reads. Shared by shards, the ops thread and the HTTP threads.
pub struct OpsState {
    pub cfg: Config,
    pub settings: Arc<Settings>,
    pub tree: Arc<DataTree>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<ConnLimits>,
    replica_tx: ReplicaTx,
    /// Per shard: its live connections.
    conns: Vec<Mutex<HashMap<u64, Arc<ConnStats>>>>,
    pub started: Instant,
    pub global_outstanding_limit: i64,
    jobs: Mutex<Option<Sender<Job>>>,
    /// The log writer's counters and fsync histogram (None for an in-memory server).
    pub log_stats: Option<Arc<Mutex<crate::txnlog::LogStats>>>,
    /// The quorum plane as the replica core last published it (standalone too: a one-voter peer).
    pub quorum: Arc<StatusBoard>,
    /// The server lines and quorum settings, for a member of an ensemble.
    pub ensemble: Option<crate::config::Ensemble>,
    /// Where the client port listens (the port the kernel chose when clientPort is 0).
    pub client_addr: std::net::SocketAddr,
}

/// What ZooKeeper answers (four-letter words and AdminServer commands that need a running
/// server) while it does not serve: looking for a leader, or syncing with it.
pub const ZK_NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

impl OpsState {
    #[allow(clippy::too_many_arguments)] // one handle per thing the operations surface reports on
    pub fn new(
        cfg: &Config,
        settings: Arc<Settings>,
        tree: Arc<DataTree>,
        metrics: Arc<Metrics>,
        limits: Arc<ConnLimits>,
        replica_tx: ReplicaTx,
        log_stats: Option<Arc<Mutex<crate::txnlog::LogStats>>>,
        quorum: Arc<StatusBoard>,
        client_addr: std::net::SocketAddr,
    ) -> Arc<Self> {
        let shards = metrics.shard_count();
        Arc::new(OpsState {
            // The server started with this configuration, so it describes a valid ensemble or
            // none.
            ensemble: cfg.ensemble().ok().flatten(),
            quorum,
            client_addr,
            cfg: cfg.clone(),
            global_outstanding_limit: settings.max_outstanding as i64,
            settings,
            tree,
            metrics,
            limits,
            replica_tx,
            conns: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            started: Instant::now(),
            jobs: Mutex::new(None),
            log_stats,
        })
    }

    /// The quorum status last published (None only before the replica core published one).
    pub fn quorum_status(&self) -> Option<QuorumStatus> {
        // The driver's clock: `clock::mono_ms`, as the replica core steps the peer with.
        let now = crate::clock::mono_ms().max(0) as u64;
        self.quorum.status().map(|s| s.at(now))
    }
    /// Whether clients are served now (ZooKeeper's `isZKServerRunning`): standalone always;
    /// a member of an ensemble once synced with a leader, until it looks for one again.
    pub fn serving(&self) -> bool {
        self.quorum_status().is_some_and(|s| s.serving.is_some())
    }

    /// A copy of the log writer's statistics, if there is a log.
    pub fn log_stats(&self) -> Option<crate::txnlog::LogStats> {
        self.log_stats.as_ref().map(|s| s.lock().clone())
    }

    /// Every live connection, ordered by shard then id (each shard's lock held only to clone).
    pub fn connections(&self) -> Vec<Arc<ConnStats>> {
        let mut v = Vec::new();
        for s in &self.conns {
            let g = s.lock();
            let mut part: Vec<Arc<ConnStats>> = g.values().cloned().collect();
            drop(g);
            part.sort_by_key(|c| c.id);
            v.extend(part);
        }
        v
    }
    /// The session of a watcher, if its connection is still there.
    pub fn session_of(&self, shard: u16, conn: u64) -> Option<i64> {
        let g = self.conns.get(shard as usize)?.lock();
        g.get(&conn).map(|c| c.session.load(Ordering::Relaxed))
    }
    pub fn sessions(&self) -> SessionsDump {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.replica_tx.send(ToReplica::DumpSessions { reply: tx }).is_err() {
            return SessionsDump::default();
        }
        rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default() // own thread: ops and HTTP only
    }
    /// ZooKeeper's node count: its `DataTree.nodes` holds the root twice (as "" and "/"), and
    /// every monitoring surface reports that map's size.
    pub fn zk_node_count(&self) -> usize {
        self.tree.node_count() + 1
    }
    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    /// Starts the thread that answers four-letter words.
    pub fn start_worker(self: &Arc<Self>) -> std::io::Result<()> {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::bounded(1024);
        let me = self.clone();
        std::thread::Builder::new().name("zkd-ops".into()).spawn(move || {
            while let Ok(job) = rx.recv() {
                let text = words::run(&me, &job.word);
                let _ = job.reply.send(text);
            }
        })?;
        *self.jobs.lock() = Some(tx);
        Ok(())
    }
    pub fn stop_worker(&self) {
        self.jobs.lock().take();
    }

    /// Answers a four-letter word from a shard without blocking its event loop: the text is
    /// built on the ops thread; the calling task awaits it (at most 10 s).
    async fn answer_four_letter(&self, w: [u8; 4]) -> String {
        let word = String::from_utf8_lossy(&w).into_owned();
        if !words::allowed(&self.settings, &word) {
            return words::not_whitelisted(&word);
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        let sent = match &*self.jobs.lock() {
            Some(j) => j.try_send(Job { word: word.clone(), reply: tx }).is_ok(),
            None => false,
        };
        if !sent {
            // No worker (shutting down) or a flood of words: answer cheap ones here.
            return words::run_local(self, &word);
        }
        let answer = async { rx.await.unwrap_or_default() };
        let give_up = async {
            // not a poll: the deadline for a word the ops thread never answers
            glommio::timer::sleep(Duration::from_secs(10)).await;
            String::new()
        };
        futures_lite::future::or(answer, give_up).await
    }
}

/// What the shards ask of the operations surface.
impl crate::shard::Ops for OpsState {
    fn register(&self, c: Arc<ConnStats>) {
        self.conns[c.shard as usize].lock().insert(c.id, c);
    }
    fn unregister(&self, shard: u16, id: u64) {
        self.conns[shard as usize].lock().remove(&id);
    }
    fn four_letter(&self, w: [u8; 4]) -> Pin<Box<dyn Future<Output = String> + '_>> {
        Box::pin(self.answer_four_letter(w))
    }
}

#[cfg(test)]
mod tests;
