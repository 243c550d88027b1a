//! What the server's threads (shards, the operations surface) need of the configuration: resolved
//! from a `Config` once at start-up, then shared read-only.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::jaas::SaslUsers;

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
    /// The plain client port (None: `secureClientPort` only).
    pub client_addr: Option<SocketAddr>,
    /// `secureClientPort[Address]`: TLS only.
    pub secure_client_addr: Option<SocketAddr>,
    /// `client.portUnification`: the plain port also accepts TLS.
    pub port_unification: bool,
    pub auth: AuthSettings,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub tick_ms: i64,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_outstanding: usize,
}

/// How connections authenticate, resolved once (ZooKeeper's ProviderRegistry, the JAAS login and
/// AuthenticationHelper).
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// DIGEST-MD5 users of the JAAS `Server` section; None without a JAAS file (ZooKeeper then
    /// has no SASL server, and answers SASL requests with an empty token).
    pub sasl: Option<SaslUsers>,
    /// `zookeeper.superUser[.*]`: SASL ids that also get the `super` id.
    pub sasl_super_users: Vec<String>,
    /// `zookeeper.X509AuthenticationProvider.superUser`.
    pub x509_super_user: Option<String>,
    /// `enforce.auth.enabled` / `sessionRequireClientSASLAuth`.
    pub enforce_auth: bool,
    pub enforce_schemes: Vec<String>,
    /// `zookeeper.allowSaslFailedClients`.
    pub allow_sasl_failed_clients: bool,
    /// `DigestAuthenticationProvider.enabled` (default true).
    pub digest_enabled: bool,
}

impl AuthSettings {
    /// `AuthenticationHelper.isSaslAuthRequired`.
    pub fn sasl_auth_required(&self) -> bool {
        self.enforce_auth && self.enforce_schemes.iter().any(|s| s == "sasl")
    }
}
