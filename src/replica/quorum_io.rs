//! The quorum plane's I/O, on its own glommio executor thread (`zkd-quorum`): the election
//! connections (`quorum::peers`, ZooKeeper's QuorumCnxManager) and the quorum port
//! (`quorum::link`: leader ↔ learners, snapshot streams). It decides nothing: events become the
//! peer's inputs, sent to the replica core as `ToReplica::Quorum`; the peer's network actions
//! come back through a bounded queue and a doorbell, and are performed in order.
//!
//! Why a thread of its own: the sockets need an executor on every topology (on large machines
//! the replica core is a plain thread), and elections must go on while the replica core is
//! busy applying a large batch.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::mesh::doorbell::Doorbell;
use crate::mesh::msg::ToReplica;
use crate::mesh::ReplicaTx;
use crate::quorum::link::{LinkConfig, LinkEvent, QuorumLink};
use crate::quorum::peer::{Action, Input};
use crate::quorum::peers::{PeerEvent, Peers, PeersConfig};
use crate::quorum::sync_storage::SyncStorage;
use crate::quorum::{wire, Sid};

/// Commands queued for the quorum thread: far more than an election or a sync burst needs; a
/// full queue means the thread is stuck, and the replica stops the process rather than lose a
/// packet of the protocol.
pub const COMMANDS_MAX: usize = 1 << 16;

/// What the replica core asks of the quorum thread, in order.
#[derive(Debug)]
pub enum QuorumCmd {
    /// A network action of the peer (`SendNotification`, `Connect`, `Send`, `Disconnect`,
    /// `LoadSnapshot`).
    Peer(Action),
    /// Stream the tree as of `zxid` to learner `to`, with the replica's sessions.
    SendSnapshot { to: Sid, zxid: i64, sessions: Vec<(i64, i32)> },
    /// Start (or stop) accepting learners on the quorum port: this server leads (or not).
    Leading(bool),
}

pub struct QuorumIoConfig {
    pub peers: PeersConfig,
    pub link: LinkConfig,
    pub storage: SyncStorage,
}

/// The handle the replica core holds.
pub struct QuorumIo {
    tx: Sender<QuorumCmd>,
    bell: Arc<Doorbell>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl QuorumIo {
    /// Starts the thread; the election listener is bound before this returns (a port that
    /// cannot be bound stops the process, as ZooKeeper's does).
    pub fn start(cfg: QuorumIoConfig, replica: ReplicaTx) -> std::io::Result<QuorumIo> {
        let (bell, bell_rx) = Doorbell::new()?;
        let bell = Arc::new(bell);
        let (tx, rx) = crossbeam_channel::bounded(COMMANDS_MAX);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let thread = {
            let (bell, stop) = (bell.clone(), stop.clone());
            std::thread::Builder::new().name("zkd-quorum".into()).spawn(move || {
                let ex =
                    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).name("zkd-quorum").make();
                let ex = match ex {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the quorum executor: {e}")));
                        return;
                    }
                };
                ex.run(run(cfg, rx, bell, bell_rx, stop, replica, ready_tx));
            })?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(QuorumIo { tx, bell, stop, thread: Some(thread) }),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other("the quorum thread ended while starting")),
        }
    }

    /// Queues a command; never blocks. False if the queue is full (see `COMMANDS_MAX`).
    pub fn send(&self, cmd: QuorumCmd) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                self.bell.ring();
                true
            }
            Err(TrySendError::Full(_)) => false,
            // Stopping: nothing more goes out.
            Err(TrySendError::Disconnected(_)) => true,
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.bell.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QuorumIo {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    cfg: QuorumIoConfig,
    rx: Receiver<QuorumCmd>,
    bell: Arc<Doorbell>,
    bell_rx: std::os::unix::net::UnixStream,
    stop: Arc<AtomicBool>,
    replica: ReplicaTx,
    ready: Sender<Result<(), String>>,
) {
    let (peers, inbox) = Peers::start(cfg.peers);
    let link = QuorumLink::new(cfg.link, cfg.storage);
    let _ = ready.send(Ok(()));
    let replica = Rc::new(replica);

    // Election events → the peer.
    {
        let replica = replica.clone();
        glommio::spawn_local(async move {
            loop {
                let input = match inbox.recv().await {
                    PeerEvent::Message { sid, data } => match wire::decode_notification(&data) {
                        Ok(n) => Input::Notification { from: sid, n },
                        Err(e) => {
                            tracing::warn!("election message from server {sid} does not decode: {e}");
                            continue;
                        }
                    },
                    PeerEvent::Connected { sid, .. } => Input::ElectionPeer { sid, reachable: true },
                    PeerEvent::Lost { sid, reason } => {
                        tracing::info!("election connection to server {sid} lost: {reason}");
                        Input::ElectionPeer { sid, reachable: false }
                    }
                    PeerEvent::DialFailed { sid, reason } => {
                        tracing::debug!("cannot reach server {sid}'s election port: {reason}");
                        Input::ElectionPeer { sid, reachable: false }
                    }
                    PeerEvent::ListenerFailed { reason } => {
                        // With OnFatal::ExitProcess the driver exits itself; this is the
                        // report form.
                        tracing::error!("election listener failed: {reason}; stopping");
                        std::process::exit(crate::quorum::peers::EXIT_UNABLE_TO_BIND_QUORUM_PORT);
                    }
                };
                // A full replica inbox drops a notification: the election sends again.
                if replica.try_send(ToReplica::Quorum(input), true).is_err() {
                    tracing::debug!("replica inbox full: an election event was dropped");
                }
            }
        })
        .detach();
    }

    // Quorum-port events → the peer.
    {
        let (replica, link) = (replica.clone(), link.clone());
        glommio::spawn_local(async move {
            loop {
                let msg = match link.next_event().await {
                    LinkEvent::Input(input) => ToReplica::Quorum(input),
                    LinkEvent::SnapshotLoaded { zxid, sessions, current } => {
                        ToReplica::SnapshotInstalled { zxid, sessions, current }
                    }
                    LinkEvent::Fatal(reason) => {
                        tracing::error!("{reason}; stopping");
                        std::process::exit(1);
                    }
                };
                // A quorum packet cannot be dropped: the protocol has no retransmission.
                if let Err(e) = replica.try_send(msg, true) {
                    let sid = match e.into_inner() {
                        ToReplica::Quorum(Input::Packet { from, .. })
                        | ToReplica::Quorum(Input::Connected { sid: from })
                        | ToReplica::Quorum(Input::Disconnected { sid: from }) => Some(from),
                        _ => None,
                    };
                    tracing::error!(
                        "replica inbox full: dropping the quorum connection to {sid:?} rather than a packet of it"
                    );
                    if let Some(sid) = sid {
                        link.disconnect(sid, "replica inbox full");
                        let _ = replica.try_send(ToReplica::Quorum(Input::Disconnected { sid }), true);
                    }
                }
            }
        })
        .detach();
    }

    // Commands from the replica core, in order.
    let mut bell_rx = unsafe {
        use std::os::fd::{FromRawFd, IntoRawFd};
        glommio::net::UnixStream::from_raw_fd(bell_rx.into_raw_fd())
    };
    let mut buf = [0u8; 64];
    loop {
        while let Ok(cmd) = rx.try_recv() {
            perform(&peers, &link, &replica, cmd);
        }
        bell.arm();
        while let Ok(cmd) = rx.try_recv() {
            perform(&peers, &link, &replica, cmd);
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        use futures_lite::AsyncReadExt;
        match bell_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    peers.halt();
    link.close();
}

fn perform(peers: &Peers, link: &QuorumLink, replica: &Rc<ReplicaTx>, cmd: QuorumCmd) {
    match cmd {
        QuorumCmd::Peer(Action::Truncate { zxid }) => {
            // The replica holds its appends and applies until it hears back (`Truncated`).
            let (link, replica) = (link.clone(), replica.clone());
            glommio::spawn_local(async move {
                match link.storage().truncate(zxid).await {
                    Ok(t) => {
                        let m = ToReplica::Truncated { zxid, sessions: t.sessions, last_zxid: t.last_zxid };
                        if replica.send(m).is_err() {
                            tracing::debug!("replica stopped before the truncation finished");
                        }
                    }
                    Err(e) => {
                        // The disk may no longer match the tree: ZooKeeper exits here too.
                        tracing::error!("{e}; stopping");
                        std::process::exit(1);
                    }
                }
            })
            .detach();
        }
        QuorumCmd::Peer(Action::SendNotification { to, n }) => {
            let bytes = wire::encode_notification(&n);
            if let Err(e) = peers.send(to, &bytes) {
                tracing::debug!("notification to server {to} not queued: {e}");
            }
        }
        QuorumCmd::Peer(Action::Connect { leader }) => link.connect(leader),
        QuorumCmd::Peer(Action::Send { to, packet }) => link.send(to, &packet),
        QuorumCmd::Peer(Action::Disconnect { sid, reason }) => link.disconnect(sid, &reason),
        QuorumCmd::Peer(Action::LoadSnapshot { zxid }) => link.load_snapshot(zxid),
        QuorumCmd::Peer(other) => unreachable!("the replica core performs {other:?} itself"),
        QuorumCmd::SendSnapshot { to, zxid, sessions } => link.send_snapshot(to, zxid, sessions),
        QuorumCmd::Leading(true) => {
            if let Err(e) = link.listen() {
                // Learners cannot reach a leader that cannot listen; ZooKeeper exits here too.
                tracing::error!("cannot listen on the quorum port: {e}; stopping");
                std::process::exit(crate::quorum::peers::EXIT_UNABLE_TO_BIND_QUORUM_PORT);
            }
        }
        QuorumCmd::Leading(false) => link.stop_listening(),
    }
}
