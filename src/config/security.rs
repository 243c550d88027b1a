//! The client-side security keys of zoo.cfg (TLS on the client port, x509 and SASL
//! authentication, enforced authentication), read with ZooKeeper 3.8's names and defaults. Pure:
//! keys in, a `SecurityConfig` out, plus one sentence per key this build refuses.
//!
//! Where ZooKeeper reads them: `QuorumPeerConfig` (secureClientPort[Address]; every other key of
//! zoo.cfg it does not know becomes the system property `zookeeper.<key>`), `X509Util` /
//! `ClientX509Util` (`zookeeper.ssl.*`), `NettyServerCnxnFactory` (`zookeeper.client.portUnification`,
//! `zookeeper.client.certReload`, `zookeeper.ssl.authProvider`), `ProviderRegistry`
//! (`zookeeper.authProvider.*`), `X509AuthenticationProvider`
//! (`zookeeper.X509AuthenticationProvider.superUser`), `ZooKeeperServer` (`zookeeper.superUser`,
//! `zookeeper.allowSaslFailedClients`), `SaslServerCallbackHandler`
//! (`zookeeper.SASLAuthenticationProvider.superPassword`, `zookeeper.kerberos.remove*`),
//! `AuthenticationHelper` (`zookeeper.enforce.auth.*`, `zookeeper.sessionRequireClientSASLAuth`).
//! The quorum's keys: `sslQuorum`, `ssl.quorum.*`, `portUnification` and
//! `sslQuorumReloadCertFiles` (`QuorumPeerConfig`, `QuorumX509Util`), `quorum.auth.*`
//! (`QuorumAuth`).

use std::fmt;

/// A password: never printed (`Debug` shows `***`, as ZooKeeper's log redactor does for every key
/// ending in "password").
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it (decrypting a store, checking a digest).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Whether a zoo.cfg key holds a secret (ZooKeeper's `ZKConfig.logRedactor`: a key ending in
/// "password", any case). Such values are shown as `***` wherever zkd shows configuration.
pub fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().ends_with("password")
}

/// Store file formats: `ssl.*Store.type`, or the file's extension (`KeyStoreFileType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    Pem,
    Pkcs12,
}

/// One key or trust store as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub location: String,
    pub password: Secret,
    /// `ssl.*.passwordPath`: read the password from this file instead (ZooKeeper's
    /// `SecretUtils.readSecret`).
    pub password_path: Option<String>,
    pub store_type: StoreType,
}

/// `ssl.clientAuth` (`X509Util.ClientAuth`): absent or empty means NEED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Want,
    Need,
}

/// The TLS protocol versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What the TLS listener needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    pub key_store: Option<Store>,
    pub trust_store: Option<Store>,
    pub client_auth: ClientAuth,
    /// `ssl.enabledProtocols`, or `[ssl.protocol]` (default TLSv1.2), as ZooKeeper 3.8 does.
    pub protocols: Vec<TlsVersion>,
    /// `ssl.ciphersuites` as IANA names (None: ZooKeeper's default list).
    pub cipher_suites: Option<Vec<String>>,
    /// `client.certReload` (`sslQuorumReloadCertFiles` for the quorum): new connections use
    /// store files changed on disk.
    pub cert_reload: bool,
    /// `ssl.quorum.hostnameVerification` (default true): a member that opens a quorum connection
    /// checks that the other's certificate names the host of its server line. (The client
    /// port's `ssl.hostnameVerification` has no effect on a server.)
    pub hostname_verification: bool,
}

/// `quorum.auth.*` with `quorum.auth.enableSasl=true` (ZooKeeper's `QuorumAuth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSasl {
    /// `quorum.auth.learnerRequireSasl`: this server, connecting as a learner, fails when the
    /// other does not authenticate it.
    pub learner_require: bool,
    /// `quorum.auth.serverRequireSasl`: this server refuses connections that do not authenticate.
    pub server_require: bool,
    /// JAAS sections: `quorum.auth.learner.saslLoginContext` (QuorumLearner) and
    /// `quorum.auth.server.saslLoginContext` (QuorumServer).
    pub learner_context: String,
    pub server_context: String,
}

/// Which authentication providers are registered, as `ProviderRegistry` would hold them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityConfig {
    /// `secureClientPort` (None: absent or 0).
    pub secure_client_port: Option<u16>,
    pub secure_client_port_address: Option<String>,
    /// `client.portUnification`: the plain client port also accepts TLS.
    pub port_unification: bool,
    /// Present when a TLS listener exists (secure port or port unification).
    pub ssl: Option<SslConfig>,
    /// `authProvider.*=...X509AuthenticationProvider`, or implied by TLS (`configureSSLAuth`).
    pub x509_provider: bool,
    pub x509_super_user: Option<String>,
    /// `authProvider.*=...SASLAuthenticationProvider`: `sasl` ids match in ACLs.
    pub sasl_provider: bool,
    /// `superUser` and `superUser.*`: SASL users that get the `super` id.
    pub sasl_super_users: Vec<String>,
    pub sasl_super_password: Option<Secret>,
    pub sasl_login_context: String,
    pub kerberos_remove_host: bool,
    pub kerberos_remove_realm: bool,
    pub allow_sasl_failed_clients: bool,
    /// `enforce.auth.enabled` (or `sessionRequireClientSASLAuth`): sessions must authenticate
    /// with one of `enforce_schemes` before anything else.
    pub enforce_auth: bool,
    pub enforce_schemes: Vec<String>,
    /// `DigestAuthenticationProvider.enabled` (default true).
    pub digest_enabled: bool,
    /// `ssl.quorum.*`: present with `sslQuorum=true` or `portUnification=true`.
    pub quorum_ssl: Option<SslConfig>,
    /// `sslQuorum`: this server opens its quorum connections with TLS.
    pub ssl_quorum: bool,
    /// `portUnification`: the election and quorum listeners accept TLS and plain TCP.
    pub quorum_port_unification: bool,
    /// `quorum.auth.enableSasl=true`: DIGEST-MD5 between members.
    pub quorum_sasl: Option<QuorumSasl>,
    /// The JAAS login file (`-Djava.security.auth.login.config=` of SERVER_JVMFLAGS/JVMFLAGS, or
    /// `zkd serve --jaas-config`): set by the caller, not by zoo.cfg.
    pub jaas_config: Option<String>,
}

impl SecurityConfig {
    /// `AuthenticationHelper.isSaslAuthRequired`.
    pub fn sasl_auth_required(&self) -> bool {
        self.enforce_auth && self.enforce_schemes.iter().any(|s| s == "sasl")
    }
}

const X509_PROVIDER: &str = "org.apache.zookeeper.server.auth.X509AuthenticationProvider";
const SASL_PROVIDER: &str = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider";
const BUILTIN_PROVIDERS: [&str; 2] = [
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
];

/// ZooKeeper 3.8's boolean: `Boolean.parseBoolean` (only "true" is true); "yes" counts too, so
/// that a switch meant to be on is never taken as off.
fn on(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
}

/// Collects the security keys of one zoo.cfg.
#[derive(Default)]
pub struct SecurityParser {
    secure_port: Option<String>,
    secure_addr: Option<String>,
    port_unification: bool,
    cert_reload: bool,
    /// `ssl.*`: the client port's TLS.
    client: SslKeys,
    /// `ssl.quorum.*`: TLS between ensemble members.
    quorum: SslKeys,
    ssl_quorum: bool,
    quorum_port_unification: bool,
    quorum_cert_reload: bool,
    quorum_sasl: QuorumSaslKeys,
    ssl_auth_provider: Option<String>,
    /// `authProvider.<name>` → class.
    providers: Vec<(String, String, String)>,
    x509_super_user: Option<String>,
    sasl_super_users: Vec<String>,
    sasl_super_password: Option<Secret>,
    sasl_login_context: Option<String>,
    kerberos_remove_host: bool,
    kerberos_remove_realm: bool,
    allow_sasl_failed_clients: bool,
    enforce_enabled: bool,
    enforce_schemes: Option<String>,
    require_sasl: bool,
    digest_enabled: Option<bool>,
    /// Sentences for keys this build refuses.
    pub refusals: Vec<String>,
    /// Keys accepted without effect, with why.
    pub warnings: Vec<String>,
}

/// The keys of one TLS context (`X509Util`'s, under `ssl.` or `ssl.quorum.`).
#[derive(Default)]
struct SslKeys {
    ks_location: String,
    ks_password: Secret,
    ks_password_path: Option<String>,
    ks_type: Option<String>,
    ts_location: String,
    ts_password: Secret,
    ts_password_path: Option<String>,
    ts_type: Option<String>,
    client_auth: Option<String>,
    protocol: Option<String>,
    enabled_protocols: Option<String>,
    ciphersuites: Option<String>,
    hostname_verification: Option<bool>,
}

impl SslKeys {
    /// Takes `rest`, the key after `ssl.` or `ssl.quorum.`; false if it is not a store key.
    fn take(&mut self, rest: &str, v: &str) -> bool {
        let opt = |v: &str| Some(v.to_owned()).filter(|s| !s.is_empty());
        match rest {
            "keyStore.location" => self.ks_location = v.to_owned(),
            "keyStore.password" => self.ks_password = Secret::new(v),
            "keyStore.passwordPath" => self.ks_password_path = opt(v),
            "keyStore.type" => self.ks_type = opt(v),
            "trustStore.location" => self.ts_location = v.to_owned(),
            "trustStore.password" => self.ts_password = Secret::new(v),
            "trustStore.passwordPath" => self.ts_password_path = opt(v),
            "trustStore.type" => self.ts_type = opt(v),
            "clientAuth" => self.client_auth = Some(v.to_owned()),
            "protocol" => self.protocol = opt(v),
            "enabledProtocols" => self.enabled_protocols = Some(v.to_owned()),
            "ciphersuites" => self.ciphersuites = Some(v.to_owned()),
            "hostnameVerification" => {
                self.hostname_verification = Some(!v.trim().eq_ignore_ascii_case("false"))
            }
            _ => return false,
        }
        true
    }
}

/// `quorum.auth.*` (QuorumAuth's keys).
#[derive(Default)]
struct QuorumSaslKeys {
    enable: bool,
    learner_require: bool,
    server_require: bool,
    learner_context: Option<String>,
    server_context: Option<String>,
    kerberos_keys: Vec<String>,
}

/// A key as a message names it: with its value unless the value may be a secret or a path.
fn named(key: &str, v: &str) -> String {
    if is_secret_key(key) || v.is_empty() || key.contains("location") || key.contains("Path") {
        key.to_owned()
    } else {
        format!("{key}={v}")
    }
}

impl SecurityParser {
    /// Takes `key` (as written) if it is a security key; `k` is the key without its
    /// `zookeeper.` prefix. False: not a security key.
    pub fn take(&mut self, key: &str, k: &str, v: &str) -> bool {
        match k {
            "secureClientPort" => self.secure_port = Some(v.to_owned()),
            "secureClientPortAddress" => self.secure_addr = Some(v.to_owned()).filter(|s| !s.is_empty()),
            "client.portUnification" => self.port_unification = on(v),
            "client.certReload" => self.cert_reload = on(v),
            "serverCnxnFactory" => {
                // ZooKeeper needs Netty for TLS; zkd has one connection layer that does both.
                if !(v.is_empty()
                    || v.ends_with(".NettyServerCnxnFactory")
                    || v.ends_with(".NIOServerCnxnFactory"))
                {
                    self.warnings.push(format!(
                        "{key}={v} ignored: zkd has its own connection layer (plain TCP and TLS)"
                    ));
                }
            }
            _ if k.starts_with("ssl.") && !k.starts_with("ssl.quorum.") && self.client.take(&k[4..], v) => {}
            "ssl.authProvider" => self.ssl_auth_provider = Some(v.to_owned()).filter(|s| !s.is_empty()),
            // The server does not verify its clients' host names (ClientX509Util), nor look them up.
            "ssl.hostnameVerification"
            | "ssl.allowReverseDnsLookup"
            | "ssl.handshakeDetectionTimeoutMillis" => {}
            "ssl.crl" | "ssl.ocsp" => {
                if on(v) {
                    self.refusals.push(format!(
                        "{key}=true asks for certificate revocation checks, which this build does not \
                         support: remove it, and revoke a client by removing its CA from \
                         ssl.trustStore (or by rotating the CA)."
                    ));
                }
            }
            "ssl.context.supplier.class" => self.refusals.push(format!(
                "{key}={v} names a Java class, which zkd cannot load: configure the stores with \
                 ssl.keyStore.* and ssl.trustStore.* instead."
            )),
            "X509AuthenticationProvider.superUser" => {
                self.x509_super_user = Some(v.to_owned()).filter(|s| !s.is_empty())
            }
            "SASLAuthenticationProvider.superPassword" => self.sasl_super_password = Some(Secret::new(v)),
            "sasl.serverconfig" => self.sasl_login_context = Some(v.to_owned()).filter(|s| !s.is_empty()),
            "kerberos.removeHostFromPrincipal" => self.kerberos_remove_host = v == "true",
            "kerberos.removeRealmFromPrincipal" => self.kerberos_remove_realm = v == "true",
            "allowSaslFailedClients" => self.allow_sasl_failed_clients = on(v),
            "letAnySaslUserDoX" => {
                if !v.is_empty() {
                    self.refusals.push(format!(
                        "{key}={v} is not supported by this build: remove it and grant that id \
                         (sasl:{v}) to the users who need it in the ACLs."
                    ));
                }
            }
            "enforce.auth.enabled" => self.enforce_enabled = on(v),
            "enforce.auth.schemes" => self.enforce_schemes = Some(v.to_owned()),
            "sessionRequireClientSASLAuth" => self.require_sasl = on(v),
            "DigestAuthenticationProvider.enabled" => self.digest_enabled = Some(v == "true"),
            "superUser" => self.sasl_super_users.push(v.to_owned()),
            _ if k.starts_with("superUser.") => self.sasl_super_users.push(v.to_owned()),
            "requireClientAuthScheme" => {
                if !v.is_empty() {
                    self.warnings.push(format!(
                        "{key}={v} ignored, as ZooKeeper 3.8 ignores it: use \
                         sessionRequireClientSASLAuth=true or enforce.auth.enabled=true with \
                         enforce.auth.schemes"
                    ));
                }
            }
            // A client-side key (ZKClientConfig): without effect on a server.
            "client.secure" => {}
            _ if k.starts_with("authProvider.") => {
                if !v.is_empty() {
                    let name = k["authProvider.".len()..].to_owned();
                    self.providers.push((key.to_owned(), name, v.to_owned()));
                }
            }
            // The quorum's TLS and SASL.
            "sslQuorum" => self.ssl_quorum = on(v),
            "portUnification" => self.quorum_port_unification = on(v),
            "sslQuorumReloadCertFiles" => self.quorum_cert_reload = on(v),
            _ if k.starts_with("ssl.quorum.") => {
                let rest = &k["ssl.quorum.".len()..];
                match rest {
                    // ZooKeeper's quorum context has these too; the client port's rules apply.
                    "allowReverseDnsLookup" | "handshakeDetectionTimeoutMillis" => {}
                    "crl" | "ocsp" => {
                        if on(v) {
                            self.refusals.push(format!(
                                "{key}=true asks for certificate revocation checks, which this build \
                                 does not support: remove it, and keep a server out by removing its \
                                 CA from ssl.quorum.trustStore (or by rotating the CA)."
                            ));
                        }
                    }
                    "context.supplier.class" => self.refusals.push(format!(
                        "{key}={v} names a Java class, which zkd cannot load: configure the stores \
                         with ssl.quorum.keyStore.* and ssl.quorum.trustStore.* instead."
                    )),
                    _ if self.quorum.take(rest, v) => {}
                    _ => self.warnings.push(format!("unknown TLS key {key:?} ignored")),
                }
            }
            "quorum.auth.enableSasl" => self.quorum_sasl.enable = on(v),
            "quorum.auth.learnerRequireSasl" => self.quorum_sasl.learner_require = on(v),
            "quorum.auth.serverRequireSasl" => self.quorum_sasl.server_require = on(v),
            "quorum.auth.learner.saslLoginContext" => {
                self.quorum_sasl.learner_context = Some(v.to_owned()).filter(|s| !s.is_empty())
            }
            "quorum.auth.server.saslLoginContext" => {
                self.quorum_sasl.server_context = Some(v.to_owned()).filter(|s| !s.is_empty())
            }
            // QuorumCnxManager's pool of threads that authenticate accepted election
            // connections: zkd gives each connection its own task.
            "quorum.cnxn.threads.size" => {
                if !v.is_empty() {
                    self.warnings.push(format!(
                        "{} ignored: zkd authenticates each quorum connection on its own task",
                        named(key, v)
                    ));
                }
            }
            _ if k.starts_with("quorum.auth.") => {
                // quorum.auth.kerberos.servicePrincipal, quorum.cnxn.threads.size and the like.
                if !v.is_empty() {
                    self.quorum_sasl.kerberos_keys.push(named(key, v));
                }
            }
            _ if k.starts_with("ssl.") => {
                self.warnings.push(format!("unknown TLS key {key:?} ignored"));
            }
            _ => return false,
        }
        true
    }

    /// Cross-key rules, ZooKeeper's defaults, and the sentences for what is refused.
    pub fn finish(mut self) -> (SecurityConfig, Vec<String>, Vec<String>) {
        let mut c = SecurityConfig {
            sasl_login_context: self.sasl_login_context.clone().unwrap_or_else(|| "Server".into()),
            kerberos_remove_host: self.kerberos_remove_host,
            kerberos_remove_realm: self.kerberos_remove_realm,
            allow_sasl_failed_clients: self.allow_sasl_failed_clients,
            sasl_super_users: std::mem::take(&mut self.sasl_super_users),
            sasl_super_password: self.sasl_super_password.clone(),
            x509_super_user: self.x509_super_user.clone(),
            digest_enabled: self.digest_enabled.unwrap_or(true),
            ..Default::default()
        };
        if self.ssl_quorum || self.quorum_port_unification {
            // QuorumPeer: sslQuorum makes every quorum connection TLS; portUnification makes
            // the quorum listeners accept TLS and plain TCP alike (a rolling upgrade's middle
            // step); both read the ssl.quorum.* stores.
            c.quorum_ssl = self.ssl_config(true);
            c.ssl_quorum = self.ssl_quorum;
            c.quorum_port_unification = self.quorum_port_unification;
        } else if !self.quorum.ks_location.is_empty() || !self.quorum.ts_location.is_empty() {
            self.warnings.push(
                "ssl.quorum.keyStore/ssl.quorum.trustStore ignored: neither sslQuorum=true nor \
                 portUnification=true"
                    .into(),
            );
        }
        for k in std::mem::take(&mut self.quorum_sasl.kerberos_keys) {
            if k.contains("kerberos") {
                self.refusals.push(format!(
                    "{k} asks for Kerberos (GSSAPI) between ensemble members, which this build does \
                     not support: remove it, and use DIGEST-MD5 (a QuorumServer/QuorumLearner JAAS \
                     section with user_<name>=\"<password>\" and username/password)."
                ));
            } else {
                self.warnings.push(format!("{k} ignored: zkd authenticates members on their own tasks"));
            }
        }
        if self.quorum_sasl.enable {
            c.quorum_sasl = Some(QuorumSasl {
                learner_require: self.quorum_sasl.learner_require,
                server_require: self.quorum_sasl.server_require,
                learner_context: self
                    .quorum_sasl
                    .learner_context
                    .clone()
                    .unwrap_or_else(|| "QuorumLearner".into()),
                server_context: self
                    .quorum_sasl
                    .server_context
                    .clone()
                    .unwrap_or_else(|| "QuorumServer".into()),
            });
        } else if self.quorum_sasl.learner_require || self.quorum_sasl.server_require {
            // QuorumPeer.initialize: without enableSasl the require keys have no effect.
            self.warnings.push(
                "quorum.auth.learnerRequireSasl/serverRequireSasl ignored: quorum.auth.enableSasl \
                 is not true"
                    .into(),
            );
        }
        match self.secure_port.as_deref().map(str::trim) {
            None | Some("") | Some("0") => {
                if self.secure_addr.is_some() {
                    self.refusals.push(
                        "secureClientPortAddress is set but secureClientPort is not set (ZooKeeper \
                         refuses this too): set secureClientPort or remove secureClientPortAddress."
                            .into(),
                    );
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) => c.secure_client_port = Some(p),
                Err(_) => self.refusals.push(format!("secureClientPort={p:?}: expected a port number.")),
            },
        }
        c.secure_client_port_address = self.secure_addr.clone();
        c.port_unification = self.port_unification;
        for (key, name, class) in &self.providers {
            match class.as_str() {
                X509_PROVIDER => {
                    // X509AuthenticationProvider's scheme is always "x509", whatever the name.
                    c.x509_provider = true;
                }
                SASL_PROVIDER => c.sasl_provider = true,
                cl if BUILTIN_PROVIDERS.contains(&cl) => {}
                cl => self.refusals.push(format!(
                    "{key}={cl} names a Java authentication provider, which zkd cannot load \
                     (built in: digest, ip, x509 with {X509_PROVIDER}, sasl with {SASL_PROVIDER}): \
                     remove it."
                )),
            }
            let _ = name;
        }
        if c.secure_client_port.is_some() || c.port_unification {
            c.ssl = self.ssl_config(false);
            // QuorumPeerConfig.configureSSLAuth: ssl.authProvider (default x509) must name a
            // registered provider; x509 registers itself when nothing else is configured.
            match self.ssl_auth_provider.as_deref() {
                None | Some("x509") => c.x509_provider = true,
                Some(other) => {
                    let registered = self.providers.iter().find(|(_, n, _)| n == other);
                    match registered {
                        Some((_, _, class)) if class == X509_PROVIDER => c.x509_provider = true,
                        Some((key, _, _)) => self.refusals.push(format!(
                            "ssl.authProvider={other} names {key}, which is not {X509_PROVIDER}: zkd \
                             authenticates TLS clients with x509 only; remove ssl.authProvider."
                        )),
                        None => self.refusals.push(format!(
                            "ssl.authProvider={other}: no auth provider is configured for the SSL \
                             authentication scheme '{other}' (ZooKeeper refuses this too): remove \
                             ssl.authProvider or add authProvider.{other}={X509_PROVIDER}."
                        )),
                    }
                }
            }
        } else if !self.client.ks_location.is_empty() || !self.client.ts_location.is_empty() {
            // ZooKeeper reads the stores only for a TLS listener; without one they do nothing.
            self.warnings.push(
                "ssl.keyStore/ssl.trustStore ignored: no secureClientPort and no \
                 client.portUnification=true, so nothing listens for TLS"
                    .into(),
            );
        }
        // AuthenticationHelper: sessionRequireClientSASLAuth=true wins and means "sasl".
        if self.require_sasl {
            c.enforce_auth = true;
            c.enforce_schemes = vec!["sasl".into()];
        } else if self.enforce_enabled {
            c.enforce_auth = true;
            c.enforce_schemes = self
                .enforce_schemes
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            if c.enforce_schemes.is_empty() {
                self.refusals.push(
                    "enforce.auth.enabled is true but enforce.auth.schemes is empty (ZooKeeper \
                     refuses this too): list the schemes sessions must use, e.g. \
                     enforce.auth.schemes=sasl."
                        .into(),
                );
            }
        }
        for s in &c.enforce_schemes {
            let available = match s.as_str() {
                "ip" => true,
                "digest" => c.digest_enabled,
                "x509" => c.x509_provider,
                "sasl" => c.sasl_provider,
                _ => false,
            };
            if !available {
                self.refusals.push(format!(
                    "enforce.auth.schemes names {s}, and authentication scheme {s} is not available \
                     (ZooKeeper refuses this too): {}",
                    match s.as_str() {
                        "sasl" => format!("add authProvider.sasl={SASL_PROVIDER}."),
                        "x509" => "configure a secureClientPort with ssl.* stores.".to_owned(),
                        _ => "use sasl, digest, x509 or ip.".to_owned(),
                    }
                ));
            }
        }
        (c, self.refusals, self.warnings)
    }

    fn store(
        &mut self,
        which: &str,
        location: &str,
        password: &Secret,
        password_path: &Option<String>,
        ty: &Option<String>,
    ) -> Option<Store> {
        if location.is_empty() {
            return None;
        }
        let store_type = match ty.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("PEM") => StoreType::Pem,
            Some("PKCS12") => StoreType::Pkcs12,
            Some("JKS") => return self.jks(which, location),
            Some("BCFKS") => {
                self.refusals.push(format!(
                    "ssl.{which}.type=BCFKS is not supported by this build: convert the store to \
                     PKCS12 or PEM."
                ));
                return None;
            }
            Some(other) => {
                self.refusals.push(format!(
                    "ssl.{which}.type={other}: expected PEM, PKCS12 or JKS (ZooKeeper's KeyStoreFileType)."
                ));
                return None;
            }
            None => {
                // KeyStoreFileType.fromFilename: the extension decides.
                let ext = location.rfind('.').map(|i| &location[i..]);
                match ext {
                    Some(".pem") => StoreType::Pem,
                    Some(".p12") => StoreType::Pkcs12,
                    Some(".jks") => return self.jks(which, location),
                    _ => {
                        self.refusals.push(format!(
                            "ssl.{which}.location: unable to auto-detect the store file type from \
                             the file name (ZooKeeper refuses this too): set ssl.{which}.type to PEM \
                             or PKCS12, or name the file .pem or .p12."
                        ));
                        return None;
                    }
                }
            }
        };
        Some(Store {
            location: location.to_owned(),
            password: password.clone(),
            password_path: password_path.clone(),
            store_type,
        })
    }

    fn jks(&mut self, which: &str, location: &str) -> Option<Store> {
        let out = location.strip_suffix(".jks").unwrap_or(location);
        self.refusals.push(format!(
            "ssl.{which} is a JKS store, which zkd cannot read: convert it once with `keytool \
             -importkeystore -srckeystore {location} -srcstoretype JKS -destkeystore {out}.p12 \
             -deststoretype PKCS12` (same password), then point ssl.{which}.location at {out}.p12 \
             and set ssl.{which}.type=PKCS12."
        ));
        None
    }

    /// The client port's (`quorum` false: `ssl.*`) or the quorum's (`ssl.quorum.*`) TLS.
    fn ssl_config(&mut self, quorum: bool) -> Option<SslConfig> {
        let keys = std::mem::take(if quorum { &mut self.quorum } else { &mut self.client });
        let who = if self.ssl_quorum { "sslQuorum=true" } else { "portUnification=true" };
        let (pre, ks, ts) = if quorum {
            ("ssl.quorum.", "quorum.keyStore", "quorum.trustStore")
        } else {
            ("ssl.", "keyStore", "trustStore")
        };
        let key_store =
            self.store(ks, &keys.ks_location, &keys.ks_password, &keys.ks_password_path, &keys.ks_type);
        let trust_store =
            self.store(ts, &keys.ts_location, &keys.ts_password, &keys.ts_password_path, &keys.ts_type);
        if quorum && (keys.ks_location.is_empty() || keys.ts_location.is_empty()) {
            let mut missing = Vec::new();
            if keys.ks_location.is_empty() {
                missing.push(
                    "ssl.quorum.keyStore.location (this server's certificate and key, PEM or \
                     PKCS12, which it shows the other members in both directions)",
                );
            }
            if keys.ts_location.is_empty() {
                missing.push(
                    "ssl.quorum.trustStore.location (the CA certificates the other members' \
                     certificates are signed by: zkd has no default trust store)",
                );
            }
            self.refusals.push(format!("{who} needs {}.", missing.join(" and ")));
        } else if !quorum && keys.ks_location.is_empty() {
            self.refusals.push(
                "a TLS listener (secureClientPort or client.portUnification=true) needs \
                 ssl.keyStore.location: the server's certificate and key (PEM or PKCS12)."
                    .into(),
            );
        }
        let client_auth = match keys.client_auth.as_deref().map(str::trim) {
            None | Some("") => ClientAuth::Need,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "none" => ClientAuth::None,
                "want" => ClientAuth::Want,
                "need" => ClientAuth::Need,
                _ => {
                    self.refusals.push(format!("{pre}clientAuth={v}: expected none, want or need."));
                    ClientAuth::Need
                }
            },
        };
        if !quorum && client_auth != ClientAuth::None && keys.ts_location.is_empty() {
            self.refusals.push(format!(
                "ssl.clientAuth={} asks for client certificates, and without ssl.trustStore.location \
                 none can be verified: set ssl.trustStore.location (the CA certificates clients are \
                 signed by), or ssl.clientAuth=none.",
                match client_auth {
                    ClientAuth::Want => "want",
                    _ => "need (the default)",
                }
            ));
        }
        // SSLContextAndOptions: enabledProtocols, else just the context's protocol. That default
        // differs between 3.8 releases (TLSv1.2 in the early ones, TLSv1.3 on Java 11+ since
        // `X509Util.defaultTlsProtocol`), so the quorum, whose members must agree, enables both
        // unless told: rustls then agrees with either kind of Java member.
        let default_protocol = if quorum { "TLSv1.2,TLSv1.3" } else { "TLSv1.2" };
        let protocol = keys.protocol.clone().unwrap_or_else(|| default_protocol.into());
        let (list, key) = match &keys.enabled_protocols {
            Some(e) if !e.trim().is_empty() => (e.clone(), format!("{pre}enabledProtocols")),
            _ => (protocol.clone(), format!("{pre}protocol")),
        };
        let mut protocols = Vec::new();
        let mut dropped = Vec::new();
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p {
                "TLSv1.2" => protocols.push(TlsVersion::Tls12),
                "TLSv1.3" => protocols.push(TlsVersion::Tls13),
                "TLS" => protocols.extend([TlsVersion::Tls12, TlsVersion::Tls13]),
                other => dropped.push(other.to_owned()),
            }
        }
        protocols.sort();
        protocols.dedup();
        if protocols.is_empty() {
            self.refusals.push(format!(
                "{key}={list}: zkd speaks TLSv1.2 and TLSv1.3 only (older versions are insecure): \
                 use TLSv1.2 or TLSv1.3."
            ));
        } else if !dropped.is_empty() {
            self.warnings.push(format!(
                "{key}: {} not supported (insecure), using {}",
                dropped.join(", "),
                protocols
                    .iter()
                    .map(|v| if *v == TlsVersion::Tls12 { "TLSv1.2" } else { "TLSv1.3" })
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        let cipher_suites = keys
            .ciphersuites
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect());
        Some(SslConfig {
            key_store,
            trust_store,
            client_auth,
            protocols,
            cipher_suites,
            cert_reload: if quorum { self.quorum_cert_reload } else { self.cert_reload },
            hostname_verification: keys.hostname_verification.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[(&str, &str)]) -> (SecurityConfig, Vec<String>, Vec<String>) {
        let mut p = SecurityParser::default();
        for (k, v) in lines {
            let bare = k.strip_prefix("zookeeper.").unwrap_or(k);
            assert!(p.take(k, bare, v), "{k} is a security key");
        }
        p.finish()
    }

    #[test]
    fn zookeeper_defaults_for_a_secure_port() {
        let (c, refused, warned) = parse(&[
            ("secureClientPort", "2281"),
            ("serverCnxnFactory", "org.apache.zookeeper.server.NettyServerCnxnFactory"),
            ("ssl.keyStore.location", "/k/server.pem"),
            ("ssl.keyStore.password", "hunter2"),
            ("ssl.trustStore.location", "/k/ca.p12"),
        ]);
        assert!(refused.is_empty() && warned.is_empty(), "{refused:?} {warned:?}");
        assert_eq!(c.secure_client_port, Some(2281));
        let ssl = c.ssl.unwrap();
        assert_eq!(ssl.client_auth, ClientAuth::Need, "ZooKeeper's default is need");
        assert_eq!(ssl.protocols, vec![TlsVersion::Tls12], "3.8: ssl.protocol TLSv1.2 only");
        assert_eq!(ssl.key_store.as_ref().unwrap().store_type, StoreType::Pem);
        assert_eq!(ssl.trust_store.as_ref().unwrap().store_type, StoreType::Pkcs12);
        assert!(c.x509_provider, "TLS registers x509 (configureSSLAuth)");
        assert_eq!(format!("{:?}", ssl.key_store.unwrap().password), "***");
    }

    #[test]
    fn jks_gets_the_keytool_command() {
        let (_, refused, _) = parse(&[
            ("secureClientPort", "2281"),
            ("ssl.keyStore.location", "/etc/zk/keystore.jks"),
            ("ssl.clientAuth", "none"),
        ]);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(
            refused[0].contains(
                "keytool -importkeystore -srckeystore /etc/zk/keystore.jks -srcstoretype JKS \
                 -destkeystore /etc/zk/keystore.p12 -deststoretype PKCS12"
            ),
            "{}",
            refused[0]
        );
    }

    #[test]
    fn protocols_and_client_auth() {
        let base = [
            ("secureClientPort", "1"),
            ("ssl.keyStore.location", "/k.pem"),
            ("ssl.trustStore.location", "/t.pem"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            parse(&v)
        };
        let (c, r, _) = with(("ssl.enabledProtocols", "TLSv1.3,TLSv1.2"));
        assert!(r.is_empty());
        assert_eq!(c.ssl.unwrap().protocols, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
        let (_, r, _) = with(("ssl.protocol", "TLSv1.1"));
        assert!(r[0].starts_with("ssl.protocol=TLSv1.1: zkd speaks TLSv1.2 and TLSv1.3 only"), "{r:?}");
        let (c, r, w) = with(("ssl.enabledProtocols", "TLSv1.1,TLSv1.3"));
        assert!(r.is_empty() && w.len() == 1, "{r:?} {w:?}");
        assert_eq!(c.ssl.unwrap().protocols, vec![TlsVersion::Tls13]);
        let (c, _, _) = with(("ssl.clientAuth", "WANT"));
        assert_eq!(c.ssl.unwrap().client_auth, ClientAuth::Want);
        let (_, r, _) = with(("ssl.clientAuth", "maybe"));
        assert_eq!(r, vec!["ssl.clientAuth=maybe: expected none, want or need.".to_string()]);
        // need without a trust store cannot verify anyone.
        let (_, r, _) = parse(&[("secureClientPort", "1"), ("ssl.keyStore.location", "/k.pem")]);
        assert!(r[0].contains("without ssl.trustStore.location"), "{r:?}");
    }

    #[test]
    fn enforcement_follows_authentication_helper() {
        let (c, r, _) = parse(&[("sessionRequireClientSASLAuth", "true")]);
        assert!(c.enforce_auth && c.sasl_auth_required());
        assert!(r[0].contains("authentication scheme sasl is not available"), "{r:?}");
        let (c, r, _) =
            parse(&[("sessionRequireClientSASLAuth", "true"), ("authProvider.sasl", SASL_PROVIDER)]);
        assert!(r.is_empty() && c.enforce_schemes == vec!["sasl".to_string()]);
        let (_, r, _) = parse(&[("enforce.auth.enabled", "true")]);
        assert!(r[0].contains("enforce.auth.schemes is empty"), "{r:?}");
        let (c, r, _) = parse(&[("enforce.auth.enabled", "true"), ("enforce.auth.schemes", "digest, ip")]);
        assert!(r.is_empty() && c.enforce_schemes == vec!["digest".to_string(), "ip".to_string()]);
        assert!(!c.sasl_auth_required());
        let (c, r, _) = parse(&[("enforce.auth.enabled", "false"), ("enforce.auth.schemes", "sasl")]);
        assert!(r.is_empty() && !c.enforce_auth);
    }

    #[test]
    fn quorum_tls_keys() {
        let (c, r, _) = parse(&[
            ("sslQuorum", "true"),
            ("ssl.quorum.keyStore.location", "/q.p12"),
            ("ssl.quorum.keyStore.password", "pw"),
            ("ssl.quorum.trustStore.location", "/t.pem"),
            ("ssl.quorum.hostnameVerification", "false"),
        ]);
        assert!(r.is_empty(), "{r:?}");
        assert!(c.ssl_quorum && !c.quorum_port_unification && c.ssl.is_none());
        let q = c.quorum_ssl.unwrap();
        assert_eq!(q.key_store.unwrap().store_type, StoreType::Pkcs12);
        assert_eq!(q.trust_store.unwrap().store_type, StoreType::Pem);
        assert_eq!(q.client_auth, ClientAuth::Need);
        assert_eq!(q.protocols, vec![TlsVersion::Tls12, TlsVersion::Tls13], "either 3.8 default");
        assert!(!q.hostname_verification);
        // portUnification alone reads the stores too (the listeners accept TLS).
        let (c, r, _) = parse(&[
            ("portUnification", "true"),
            ("ssl.quorum.keyStore.location", "/q.pem"),
            ("ssl.quorum.trustStore.location", "/t.pem"),
            ("ssl.quorum.protocol", "TLSv1.3"),
        ]);
        assert!(r.is_empty(), "{r:?}");
        assert!(!c.ssl_quorum && c.quorum_port_unification);
        let q = c.quorum_ssl.unwrap();
        assert!(q.hostname_verification);
        assert_eq!(q.protocols, vec![TlsVersion::Tls13]);
        // Missing stores and JKS are refused with the quorum's key names.
        let (_, r, _) = parse(&[("sslQuorum", "true"), ("ssl.quorum.keyStore.location", "/q.jks")]);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].starts_with("ssl.quorum.keyStore is a JKS store"), "{r:?}");
        assert!(r[1].starts_with("sslQuorum=true needs ssl.quorum.trustStore.location"), "{r:?}");
        let (_, r, _) = parse(&[("sslQuorum", "true")]);
        assert!(
            r == vec!["sslQuorum=true needs ssl.quorum.keyStore.location (this server's certificate and \
                       key, PEM or PKCS12, which it shows the other members in both directions) and \
                       ssl.quorum.trustStore.location (the CA certificates the other members' \
                       certificates are signed by: zkd has no default trust store)."
                .to_string()],
            "{r:?}"
        );
        // The stores alone do nothing.
        let (c, r, w) = parse(&[("ssl.quorum.keyStore.location", "/q.pem")]);
        assert!(r.is_empty() && c.quorum_ssl.is_none());
        assert!(w[0].starts_with("ssl.quorum.keyStore/ssl.quorum.trustStore ignored"), "{w:?}");
    }

    #[test]
    fn quorum_sasl_keys_and_java_only_keys_are_refused() {
        let (c, r, _) =
            parse(&[("quorum.auth.enableSasl", "true"), ("quorum.auth.serverRequireSasl", "true")]);
        assert!(r.is_empty(), "{r:?}");
        let q = c.quorum_sasl.unwrap();
        assert!(q.server_require && !q.learner_require);
        assert_eq!(
            (q.learner_context.as_str(), q.server_context.as_str()),
            ("QuorumLearner", "QuorumServer")
        );
        let (_, r, _) = parse(&[("quorum.auth.kerberos.servicePrincipal", "zkquorum/_HOST")]);
        assert!(
            r[0].starts_with("quorum.auth.kerberos.servicePrincipal=zkquorum/_HOST asks for Kerberos"),
            "{r:?}"
        );
        let (_, r, _) = parse(&[("authProvider.1", "com.example.Custom")]);
        assert!(
            r[0].starts_with("authProvider.1=com.example.Custom names a Java authentication provider"),
            "{r:?}"
        );
        let (c, r, _) = parse(&[("sslQuorum", "false"), ("quorum.auth.enableSasl", "false")]);
        assert!(r.is_empty() && c.quorum_ssl.is_none() && c.quorum_sasl.is_none());
    }
}
