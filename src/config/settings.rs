//! What the server's threads (shards, the operations surface) need of the configuration: resolved
//! from a `Config` once at start-up, then shared read-only.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What shards need of the configuration, resolved once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub jute_max_buffer: usize,
    pub max_client_cnxns: u32,
    pub super_digest: Option<String>,
    pub skip_acl: bool,
    /// `None` = every word allowed (`*`).
    pub four_letter_whitelist: Option<Vec<String>>,
    pub server_id: u8,
    pub client_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub tick_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_outstanding: usize,
}
