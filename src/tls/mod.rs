//! TLS on the client port with rustls: the server's configuration built from ZooKeeper's
//! `ssl.*` keys, reloaded when its files change (`client.certReload`), and the x509 identity of a
//! verified client (its subject as Java prints it, `dn`).
//!
//! rustls is a state machine (bytes in, bytes out): each shard drives one `ServerConnection` per
//! TLS connection on its own io_uring socket (see `shard::conn`), with no thread per connection
//! and nothing that blocks. Building a configuration reads files: it happens at start-up and on
//! the reload thread, never on a shard.

pub mod dn;
pub mod quorum;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::config::security::{ClientAuth, SslConfig, TlsVersion};

/// ZooKeeper 3.8's default cipher suites on Java 9+ (`X509Util.DEFAULT_CIPHERS_JAVA9`), in its
/// order. rustls offers the AES-GCM ones (it has no CBC suites: they are weaker and need no
/// support); with TLSv1.3 enabled its TLS 1.3 suites are added.
pub const ZOOKEEPER_DEFAULT_CIPHERS: [&str; 12] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
];

/// The IANA name of a rustls suite (rustls spells TLS 1.3 suites `TLS13_*`).
fn iana_name(s: &SupportedCipherSuite) -> String {
    let n = format!("{:?}", s.suite());
    match n.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => n,
    }
}

/// The suites for `names` (Java/IANA names) that rustls has; the names it lacks come back too.
pub fn select_suites(names: &[String], tls13: bool) -> (Vec<SupportedCipherSuite>, Vec<String>) {
    let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for n in names {
        match all.iter().find(|s| iana_name(s) == *n) {
            Some(s) if !out.iter().any(|o: &SupportedCipherSuite| o.suite() == s.suite()) => out.push(*s),
            Some(_) => {}
            None => missing.push(n.clone()),
        }
    }
    if tls13 && !out.iter().any(|s| s.version() == &rustls::version::TLS13) {
        // ZooKeeper's list names no TLS 1.3 suite; without one TLSv1.3 could never be agreed.
        out.extend(all.iter().filter(|s| s.version() == &rustls::version::TLS13).copied());
    }
    (out, missing)
}

/// A store file's identity on disk: a change of any of these means "reload".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &str) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok();
    Stamp {
        path: PathBuf::from(path),
        modified: m.as_ref().and_then(|m| m.modified().ok()),
        len: m.as_ref().map_or(0, |m| m.len()),
        inode: m.as_ref().map_or(0, |m| m.ino()),
    }
}

/// The TLS side of the client port: the current rustls configuration, swapped when the store
/// files change. Shards take the current one for each new connection; connections keep the
/// one they started with.
pub struct TlsContext {
    ssl: SslConfig,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Stamp>>,
    /// How many times a changed store was loaded (for tests and logs).
    pub reloads: std::sync::atomic::AtomicU64,
}

impl TlsContext {
    /// Builds the configuration (reading the stores). The error is a sentence naming the key or
    /// file at fault.
    pub fn new(ssl: &SslConfig) -> Result<Arc<TlsContext>, String> {
        let stamps = stamps_of(ssl);
        let cfg = build(ssl)?;
        Ok(Arc::new(TlsContext {
            ssl: ssl.clone(),
            current: RwLock::new(Arc::new(cfg)),
            stamps: Mutex::new(stamps),
            reloads: Default::default(),
        }))
    }

    /// The configuration for a new connection.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Rebuilds the configuration if a store file changed. None: nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = stamps_of(&self.ssl);
        {
            let mut old = self.stamps.lock();
            if *old == now {
                return None;
            }
            *old = now;
        }
        Some(build(&self.ssl).map(|cfg| {
            *self.current.write() = Arc::new(cfg);
            self.reloads.fetch_add(1, Ordering::Relaxed);
        }))
    }

    /// With `client.certReload=true`: a thread that checks the store files every `every` and
    /// swaps in a new configuration when they changed (a half-written file fails to load, is
    /// logged, and is retried at its next change; the old configuration stays meanwhile).
    pub fn start_reloader(self: &Arc<Self>, stop: Arc<AtomicBool>, every: Duration) -> std::io::Result<()> {
        if !self.ssl.cert_reload {
            return Ok(());
        }
        let me = self.clone();
        std::thread::Builder::new().name("zkd-tls-reload".into()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(every); // own thread: the reloader, never a shard
                match me.reload_if_changed() {
                    None => {}
                    Some(Ok(())) => tracing::info!("TLS: the key/trust store changed; new connections use it"),
                    Some(Err(e)) => tracing::error!("TLS: cannot reload the changed store ({e}); connections keep the previous certificates"),
                }
            }
        })?;
        Ok(())
    }
}

/// The files whose change means "reload".
pub(crate) fn stamps_of(ssl: &SslConfig) -> Vec<Stamp> {
    let mut v = Vec::new();
    for s in [&ssl.key_store, &ssl.trust_store].into_iter().flatten() {
        v.push(stamp(&s.location));
        if let Some(p) = &s.password_path {
            v.push(stamp(p));
        }
    }
    v
}

/// How messages name the keys of one TLS context.
#[derive(Clone, Copy)]
pub(crate) struct Names {
    /// The key prefix: `ssl.` or `ssl.quorum.`.
    pre: &'static str,
    /// The stores as `store` names them (`ssl.{which}`).
    key_store: &'static str,
    trust_store: &'static str,
    /// A refused certificate's error names its subject (the quorum's logs name the member).
    name_rejected: bool,
}

pub(crate) const CLIENT_NAMES: Names =
    Names { pre: "ssl.", key_store: "keyStore", trust_store: "trustStore", name_rejected: false };
pub(crate) const QUORUM_NAMES: Names = Names {
    pre: "ssl.quorum.",
    key_store: "quorum.keyStore",
    trust_store: "quorum.trustStore",
    name_rejected: true,
};

/// The rustls configuration for `ssl`.
pub fn build(ssl: &SslConfig) -> Result<ServerConfig, String> {
    build_named(ssl, CLIENT_NAMES)
}

/// The crypto provider with the configured suites, and the protocol versions.
pub(crate) fn provider_and_versions(
    ssl: &SslConfig,
    n: Names,
) -> Result<(Arc<rustls::crypto::CryptoProvider>, Vec<&'static rustls::SupportedProtocolVersion>), String> {
    let tls13 = ssl.protocols.contains(&TlsVersion::Tls13);
    let names: Vec<String> = match &ssl.cipher_suites {
        Some(n) => n.clone(),
        None => ZOOKEEPER_DEFAULT_CIPHERS.iter().map(|s| s.to_string()).collect(),
    };
    let (suites, missing) = select_suites(&names, tls13);
    let usable: Vec<SupportedCipherSuite> = suites
        .into_iter()
        .filter(|s| {
            ssl.protocols.contains(if s.version() == &rustls::version::TLS13 {
                &TlsVersion::Tls13
            } else {
                &TlsVersion::Tls12
            })
        })
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "{}ciphersuites: none of {} is available for the enabled protocols (zkd has \
             TLS_ECDHE_{{ECDSA,RSA}}_WITH_AES_{{128,256}}_GCM_SHA{{256,384}}, \
             TLS_ECDHE_{{ECDSA,RSA}}_WITH_CHACHA20_POLY1305_SHA256 and the TLS 1.3 suites)",
            n.pre,
            names.join(",")
        ));
    }
    if ssl.cipher_suites.is_some() && !missing.is_empty() {
        tracing::warn!("{}ciphersuites: {} not available in zkd, ignored", n.pre, missing.join(", "));
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = usable;
    let provider = Arc::new(provider);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = ssl
        .protocols
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    Ok((provider, versions))
}

/// The server side's rustls configuration, messages naming the keys as `n` says.
pub(crate) fn build_named(ssl: &SslConfig, n: Names) -> Result<ServerConfig, String> {
    let (provider, versions) = provider_and_versions(ssl, n)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{}enabledProtocols: {e}", n.pre))?;
    let builder = match (ssl.client_auth, &ssl.trust_store) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(ts)) => {
            let mut roots = RootCertStore::empty();
            for c in store::load_trust(n.trust_store, ts)? {
                roots.add(c).map_err(|e| {
                    format!(
                        "ssl.{} {}: a certificate cannot be used as a CA ({e})",
                        n.trust_store, ts.location
                    )
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let v = if auth == ClientAuth::Want { v.allow_unauthenticated() } else { v };
            let v = v.build().map_err(|e| format!("ssl.{} {}: {e}", n.trust_store, ts.location))?;
            if n.name_rejected {
                builder.with_client_cert_verifier(Arc::new(quorum::NamingClientVerifier(v)))
            } else {
                builder.with_client_cert_verifier(v)
            }
        }
    };
    let ks = ssl.key_store.as_ref().ok_or_else(|| format!("ssl.{}.location is not set", n.key_store))?;
    let id = store::load_identity(n.key_store, ks)?;
    let mut cfg = builder.with_single_cert(id.chain, id.key).map_err(|e| {
        format!("ssl.{} {}: the certificate and key do not make an identity ({e})", n.key_store, ks.location)
    })?;
    // ZooKeeper speaks its own protocol on the socket: no ALPN; renegotiation does not exist in
    // rustls (ZooKeeper turns client-initiated renegotiation off too).
    cfg.ignore_client_order = false;
    Ok(cfg)
}

/// The x509 id of a verified client: the leaf certificate's subject, as Java prints it.
pub fn client_id(chain: &[rustls::pki_types::CertificateDer<'_>]) -> Option<String> {
    chain.first().and_then(|c| dn::subject_of(c.as_ref()).ok())
}

/// What the first bytes of a connection on a port-unified client port say: a TLS handshake
/// record starts with 0x16 (`NettyServerCnxnFactory.DualModeSslHandler`); ZooKeeper's own
/// protocol starts with a 4-byte length or a four-letter word, never 0x16.
pub fn looks_like_tls(first: u8) -> bool {
    first == 0x16
}
