//! The election connections (Apache ZooKeeper's `QuorumCnxManager`): one TCP connection per pair
//! of servers on their election ports, carrying length-framed notifications.
//!
//! - `manager`: who keeps which connection and what goes out on it, as a pure state machine
//!   (ZooKeeper's rules, so zkd and Java servers agree on every pair).
//! - `driver`: the sockets on a glommio executor — the listener, handshakes, connects with
//!   `cnxTimeout`, one reader and one writer per connection — executing the manager's actions.
//! - `inbox`: where received messages and reachability changes wait for the election, bounded.
//!
//! What the election sees: `Peers::send(sid, bytes)` (never waits; each peer has its own bounded
//! queue, so a peer that is slow, blackholed or down delays nobody else), `connect_all`,
//! `have_delivered`, and `Inbox::recv` yielding `PeerEvent`s. Byte formats are `quorum::wire`'s.

mod driver;
mod inbox;
pub mod manager;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use driver::{Peers, SendError, Stats};
pub use inbox::Inbox;

use crate::quorum::wire::HostPort;
use crate::quorum::Sid;

/// What the election connections report to the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A message (a frame's payload) from `sid`.
    Message { sid: Sid, data: Vec<u8> },
    /// A connection with `sid` is up; `outgoing` when we opened it.
    Connected { sid: Sid, outgoing: bool },
    /// The connection with `sid` is gone, and why.
    Lost { sid: Sid, reason: String },
    /// Opening a connection to `sid` failed (refused, timed out, unresolvable), and how.
    DialFailed { sid: Sid, reason: String },
    /// The election listener stopped for good (only with `OnFatal::Report`).
    ListenerFailed { reason: String },
}

/// Where the election listener listens.
#[derive(Debug)]
pub enum Listen {
    /// Bind this address (retried as `bind_retries` says).
    Addr(SocketAddr),
    /// Use this listener, already bound and listening (tests bind port 0 first).
    Bound(std::net::TcpListener),
}

/// What happens when the election listener cannot go on (its port cannot be bound after the
/// retries): the server can no longer take part in elections, which must not pass silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFatal {
    /// Log it and exit with status 14, as ZooKeeper does (`UNABLE_TO_BIND_QUORUM_PORT`).
    ExitProcess,
    /// Log it and report `PeerEvent::ListenerFailed` (the host stops the process itself).
    Report,
}

/// ZooKeeper's exit status when its election listener gives up.
pub const EXIT_UNABLE_TO_BIND_QUORUM_PORT: i32 = 14;

#[derive(Debug)]
pub struct PeersConfig {
    pub my_sid: Sid,
    /// Our election address as our handshake announces it (our server line's host and port).
    pub advertise: HostPort,
    pub listen: Listen,
    /// The configured servers' election addresses (ours may be among them).
    pub view: BTreeMap<Sid, HostPort>,
    /// How long opening a connection may take (`cnxTimeout`); None: the kernel's limit.
    pub connect_timeout: Option<Duration>,
    /// How long a handshake may take to arrive and one frame to be written before the
    /// connection is given up (ZooKeeper's socket timeout, tickTime × syncLimit).
    pub io_timeout: Duration,
    /// Binding the listener is tried this many times (`electionPortBindRetry`; 0: forever).
    pub bind_retries: u32,
    pub bind_retry_pause: Duration,
    /// Messages waiting per peer; the oldest is dropped beyond it (ZooKeeper: 1).
    pub send_queue_max: usize,
    /// Received messages the inbox holds; the oldest is dropped beyond it (ZooKeeper: 100).
    pub inbox_messages_max: usize,
    /// Accepted connections whose handshake is still awaited; more are closed at once.
    pub pending_handshakes_max: usize,
    pub on_listener_failure: OnFatal,
    /// `sslQuorum` / `portUnification`: TLS on these connections (None: plain TCP).
    pub tls: Option<std::sync::Arc<crate::tls::quorum::QuorumTls>>,
    /// `quorum.auth.enableSasl=true`: DIGEST-MD5 after the handshake (None: no quorum SASL).
    pub sasl: Option<std::sync::Arc<crate::quorum::auth::QuorumSaslSettings>>,
}

impl PeersConfig {
    /// ZooKeeper's settings for `e`'s own server. Resolves the election host to bind (once, at
    /// start-up) unless `quorumListenOnAllIPs` asks for the wildcard address.
    pub fn from_ensemble(e: &crate::config::Ensemble) -> std::io::Result<PeersConfig> {
        let me = e.me();
        let listen = if e.quorum_listen_on_all_ips {
            let any = if me.host.parse::<Ipv6Addr>().is_ok() {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            SocketAddr::new(any, me.election_port)
        } else {
            (me.host.as_str(), me.election_port).to_socket_addrs()?.next().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} (the election host of {}) has no address", me.host, me.key),
                )
            })?
        };
        let view = e
            .servers
            .values()
            .map(|s| (s.id as Sid, HostPort::new(s.host.clone(), s.election_port)))
            .collect();
        Ok(PeersConfig {
            my_sid: e.my_id as Sid,
            advertise: HostPort::new(me.host.clone(), me.election_port),
            listen: Listen::Addr(listen),
            view,
            connect_timeout: (e.cnx_timeout_ms > 0).then(|| Duration::from_millis(e.cnx_timeout_ms.into())),
            io_timeout: Duration::from_millis(u64::from(e.quorum_cnxn_timeout_ms).max(1)),
            bind_retries: e.election_port_bind_retry,
            bind_retry_pause: Duration::from_secs(1),
            send_queue_max: 1,
            inbox_messages_max: 100,
            pending_handshakes_max: 64,
            on_listener_failure: OnFatal::ExitProcess,
            tls: None,
            sasl: None,
        })
    }
}

#[cfg(test)]
mod tests;
