//! zoo.cfg and myid, read as Apache ZooKeeper 3.8 reads them (`QuorumPeerConfig`,
//! `ServerConfig`), with ZooKeeper's defaults. Pure: text in, `Config` out.
//!
//! Keys that ZooKeeper takes as `-Dzookeeper.*` system properties are accepted in zoo.cfg too,
//! with or without the `zookeeper.` prefix. Unknown keys are warnings (ZooKeeper ignores them
//! silently); a bad value is an error naming the key, the value and what is expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod settings;
pub use settings::Settings;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{key}={value:?}: {expected}")]
    BadValue { key: String, value: String, expected: &'static str },
    #[error("missing required key {0}")]
    Missing(&'static str),
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// Settings this build cannot honour (a replicated ensemble, TLS, SASL): refused rather than
    /// ignored, one sentence per kind.
    #[error("{}", .0.join(" "))]
    Unsupported(Vec<String>),
}

/// One `server.N=host:quorumPort:electionPort[:role][;[clientAddr:]clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    pub id: u64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub observer: bool,
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub client_port: u16,
    pub client_port_address: Option<String>,
    pub max_client_cnxns: u32,
    /// -1: 2 × tickTime.
    pub min_session_timeout_raw: i32,
    /// -1: 20 × tickTime.
    pub max_session_timeout_raw: i32,
    pub jute_max_buffer: u32,
    pub global_outstanding_limit: u32,
    /// `4lw.commands.whitelist`, as written (None: ZooKeeper's default, `srvr` only).
    pub four_letter_whitelist_raw: Option<String>,
    pub extended_types_enabled: bool,
    pub container_check_interval_ms: u64,
    pub container_max_per_minute: u32,
    pub super_digest: Option<String>,
    pub skip_acl: bool,
    /// `zookeeper.enforceQuota` (zoo.cfg `enforceQuota`): quota hard limits fail writes with
    /// QuotaExceeded.
    pub enforce_quota: bool,
    pub snap_count: u64,
    pub snap_size_limit_kb: u64,
    pub pre_alloc_size_kb: u64,
    pub force_sync: bool,
    pub fsync_warning_threshold_ms: u64,
    pub snapshot_compression_method: String,
    pub snapshot_trust_empty: bool,
    pub digest_enabled: bool,
    pub autopurge_snap_retain_count: u32,
    pub autopurge_purge_interval_hours: u32,
    pub admin_enable_server: bool,
    pub admin_server_address: String,
    pub admin_server_port: u16,
    pub admin_command_url: String,
    pub metrics_provider_class_name: Option<String>,
    pub metrics_http_host: String,
    pub metrics_http_port: u16,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub standalone_enabled: bool,
    pub reconfig_enabled: bool,
    pub local_session_enabled: bool,
    pub servers: Vec<ServerLine>,
    /// From `dataDir/myid` when server lines exist.
    pub my_id: Option<u64>,
    /// zkd's own keys (`zkd.*`), kept as written.
    pub zkd: BTreeMap<String, String>,
    /// Every key as written (for `conf`).
    pub raw: Vec<(String, String)>,
}

impl Config {
    /// The embedded default: standalone, port 2181, data in ./zkd-data.
    pub fn embedded_default() -> Config {
        let mut c = Config::base(PathBuf::from("./zkd-data"));
        c.client_port = 2181;
        c
    }

    fn base(data_dir: PathBuf) -> Config {
        Config {
            tick_time_ms: 2000,
            data_log_dir: data_dir.clone(),
            data_dir,
            client_port: 2181,
            client_port_address: None,
            max_client_cnxns: 60,
            min_session_timeout_raw: -1,
            max_session_timeout_raw: -1,
            jute_max_buffer: 0xfffff,
            global_outstanding_limit: 1000,
            four_letter_whitelist_raw: None,
            extended_types_enabled: false,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            super_digest: None,
            skip_acl: false,
            enforce_quota: false,
            snap_count: 100_000,
            snap_size_limit_kb: 4_194_304,
            pre_alloc_size_kb: 65_536,
            force_sync: true,
            fsync_warning_threshold_ms: 1000,
            snapshot_compression_method: String::new(),
            snapshot_trust_empty: false,
            digest_enabled: true,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            admin_enable_server: true,
            admin_server_address: "0.0.0.0".into(),
            admin_server_port: 8080,
            admin_command_url: "/commands".into(),
            metrics_provider_class_name: None,
            metrics_http_host: "0.0.0.0".into(),
            metrics_http_port: 7000,
            init_limit: 10,
            sync_limit: 5,
            standalone_enabled: true,
            reconfig_enabled: false,
            local_session_enabled: false,
            servers: Vec::new(),
            my_id: None,
            zkd: BTreeMap::new(),
            raw: Vec::new(),
        }
    }

    /// -1 in zoo.cfg: 2 × tickTime, at most i32::MAX (a tickTime above 1,073,741,823 ms would
    /// overflow the int ZooKeeper computes it in).
    pub fn min_session_timeout_ms(&self) -> i32 {
        if self.min_session_timeout_raw < 0 {
            ticks_ms(2, self.tick_time_ms)
        } else {
            self.min_session_timeout_raw
        }
    }
    /// -1 in zoo.cfg: 20 × tickTime, at most i32::MAX.
    pub fn max_session_timeout_ms(&self) -> i32 {
        if self.max_session_timeout_raw < 0 {
            ticks_ms(20, self.tick_time_ms)
        } else {
            self.max_session_timeout_raw
        }
    }
    /// The words allowed on the client port; None means all (`*`).
    pub fn four_letter_words_whitelist(&self) -> Option<Vec<String>> {
        match &self.four_letter_whitelist_raw {
            None => Some(vec!["srvr".into()]),
            Some(s) if s.trim() == "*" => None,
            Some(s) => Some(s.split(',').map(|w| w.trim().to_owned()).filter(|w| !w.is_empty()).collect()),
        }
    }
    pub fn server_id(&self) -> Option<u64> {
        self.my_id
    }

    pub fn from_file(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { path: path.to_owned(), reason: e.to_string() })?;
        let (mut cfg, warnings, mut refusals) = Config::parse_unchecked(&text)?;
        // ZooKeeper 3.5+ reads the server lines from dynamicConfigFile when it is set.
        if let Some((key, file)) =
            cfg.raw.iter().find(|(k, _)| k.strip_prefix("zookeeper.").unwrap_or(k) == "dynamicConfigFile")
        {
            let file = PathBuf::from(file.trim());
            let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::Io {
                path: file.clone(),
                reason: format!("{e} (named by {key})"),
            })?;
            for (k, v) in parse_properties(&text) {
                if k.strip_prefix("zookeeper.").unwrap_or(&k).starts_with("server.") {
                    cfg.servers.push(server_line(&k, v.trim())?);
                }
            }
        }
        // A standalone ZooKeeper needs no myid; when the file exists it is read (and must be a
        // number), as ZooKeeper 3.8 reads it.
        let myid_path = cfg.data_dir.join("myid");
        if !cfg.servers.is_empty() && myid_path.is_file() {
            cfg.my_id = Some(read_myid(&cfg.data_dir)?);
        }
        refusals.splice(0..0, cfg.ensemble_refusal(Some(&myid_path)));
        if !refusals.is_empty() {
            return Err(ConfigError::Unsupported(refusals));
        }
        Ok((cfg, warnings))
    }

    /// Parses zoo.cfg text. `_base` is the config's directory (ZooKeeper does not resolve
    /// relative paths against it, and neither do we; kept for messages). A replicated ensemble
    /// or a TLS/SASL setting is an `Unsupported` error.
    pub fn parse_str(text: &str, _base: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let (cfg, warnings, mut refusals) = Config::parse_unchecked(text)?;
        refusals.splice(0..0, cfg.ensemble_refusal(None));
        if !refusals.is_empty() {
            return Err(ConfigError::Unsupported(refusals));
        }
        Ok((cfg, warnings))
    }

    /// The sentence refusing a replicated ensemble, if the server lines describe one: two or
    /// more `server.N` lines, or one with `standaloneEnabled=false` (ZooKeeper 3.8 runs a single
    /// server line standalone only while standaloneEnabled is true, its default).
    fn ensemble_refusal(&self, myid: Option<&Path>) -> Option<String> {
        if self.servers.len() < 2 && (self.servers.is_empty() || self.standalone_enabled) {
            return None;
        }
        let keys: Vec<String> = self.servers.iter().map(|s| format!("server.{}", s.id)).collect();
        let (mut what, mut verb) = if self.servers.len() == 1 {
            (format!("{} with standaloneEnabled=false", keys[0]), "describes")
        } else {
            (keys.join(", "), "describe")
        };
        if let (Some(id), Some(p)) = (self.my_id, myid) {
            what.push_str(&format!(" and {} (server id {id})", p.display()));
            verb = "describe";
        }
        Some(format!(
            "{what} {verb} a replicated ensemble, and replicated ensembles are not supported yet by \
             this build: remove the server.N lines (and standaloneEnabled=false) to run this server \
             standalone."
        ))
    }

    /// Parses without refusing: the config, the warnings, and the TLS/SASL refusal (if any).
    fn parse_unchecked(text: &str) -> Result<(Config, Vec<String>, Vec<String>), ConfigError> {
        let props = parse_properties(text);
        let mut warnings = Vec::new();
        let mut c = Config::base(PathBuf::new());
        let mut data_dir = None;
        let mut data_log_dir = None;
        let mut client_port = None;
        let mut security = Vec::new();
        // enforce.auth.schemes only matters with enforce.auth.enabled=true (itself refused); it is
        // refused too unless enforce.auth.enabled=false says enforcement is off.
        let mut enforce_schemes = None;
        let mut enforce_explicitly_off = false;
        for (key, value) in &props {
            let v = value.trim();
            let k = key.strip_prefix("zookeeper.").unwrap_or(key);
            if k == "enforce.auth.schemes" {
                if !v.is_empty() {
                    enforce_schemes = Some(key.clone());
                }
                continue;
            }
            if k == "enforce.auth.enabled" && !on(v) {
                enforce_explicitly_off = true;
            }
            match security_key(k, v) {
                Some(Security::Refuse) => {
                    security.push(describe(key, k, v));
                    continue;
                }
                Some(Security::Off) => continue,
                Some(Security::Ignored(why)) => {
                    warnings.push(format!("{key}={v} ignored: {why}"));
                    continue;
                }
                None => {}
            }
            match k {
                "tickTime" => c.tick_time_ms = num(key, v)?,
                "dataDir" => data_dir = Some(PathBuf::from(v)),
                "dataLogDir" => data_log_dir = Some(PathBuf::from(v)),
                "clientPort" => client_port = Some(num::<u16>(key, v)?),
                "clientPortAddress" => c.client_port_address = Some(v.to_owned()),
                "maxClientCnxns" => c.max_client_cnxns = num(key, v)?,
                "minSessionTimeout" => c.min_session_timeout_raw = num(key, v)?,
                "maxSessionTimeout" => c.max_session_timeout_raw = num(key, v)?,
                "jute.maxbuffer" => c.jute_max_buffer = num(key, v)?,
                "globalOutstandingLimit" => c.global_outstanding_limit = num(key, v)?,
                "4lw.commands.whitelist" => c.four_letter_whitelist_raw = Some(v.to_owned()),
                "extendedTypesEnabled" => c.extended_types_enabled = boolean(key, v)?,
                "znode.container.checkIntervalMs" => c.container_check_interval_ms = num(key, v)?,
                "znode.container.maxPerMinute" => c.container_max_per_minute = num(key, v)?,
                "DigestAuthenticationProvider.superDigest" => c.super_digest = Some(v.to_owned()),
                "skipACL" => c.skip_acl = v == "yes" || v == "true",
                "enforceQuota" => c.enforce_quota = boolean(key, v)?,
                "snapCount" => c.snap_count = num(key, v)?,
                "snapSizeLimitInKb" => c.snap_size_limit_kb = num(key, v)?,
                "preAllocSize" => c.pre_alloc_size_kb = num(key, v)?,
                "forceSync" => c.force_sync = !v.eq_ignore_ascii_case("no"),
                "fsync.warningthresholdms" => c.fsync_warning_threshold_ms = num(key, v)?,
                "snapshot.compression.method" => {
                    if !["", "gz", "snappy"].contains(&v) {
                        return Err(bad(key, v, "one of gz, snappy or empty"));
                    }
                    c.snapshot_compression_method = v.to_owned()
                }
                "snapshot.trust.empty" => c.snapshot_trust_empty = boolean(key, v)?,
                "digest.enabled" => c.digest_enabled = boolean(key, v)?,
                "autopurge.snapRetainCount" => c.autopurge_snap_retain_count = num(key, v)?,
                "autopurge.purgeInterval" => c.autopurge_purge_interval_hours = num(key, v)?,
                "admin.enableServer" => c.admin_enable_server = boolean(key, v)?,
                "admin.serverAddress" => c.admin_server_address = v.to_owned(),
                "admin.serverPort" => c.admin_server_port = num(key, v)?,
                "admin.commandURL" => c.admin_command_url = v.to_owned(),
                "metricsProvider.className" => c.metrics_provider_class_name = Some(v.to_owned()),
                "metricsProvider.httpHost" => c.metrics_http_host = v.to_owned(),
                "metricsProvider.httpPort" => c.metrics_http_port = num(key, v)?,
                "initLimit" => c.init_limit = num(key, v)?,
                "syncLimit" => c.sync_limit = num(key, v)?,
                "standaloneEnabled" => c.standalone_enabled = boolean(key, v)?,
                "reconfigEnabled" => c.reconfig_enabled = boolean(key, v)?,
                "localSessionsEnabled" => c.local_session_enabled = boolean(key, v)?,
                // Accepted and without effect in standalone zkd (ZooKeeper keys operators use).
                "maxCnxns"
                | "localSessionsUpgradingEnabled"
                | "electionAlg"
                | "peerType"
                | "syncEnabled"
                | "dynamicConfigFile"
                | "quorumListenOnAllIPs"
                | "clientCnxnSocket"
                | "4lw.commands.enabled"
                | "admin.idleTimeout"
                | "metricsProvider.exportJvmInfo"
                | "cnxTimeout"
                | "connectToLearnerMasterLimit"
                | "leaderServes"
                | "maxSessionTimeoutMs"
                | "commitLogCount"
                | "txnLogSizeLimitInKb"
                | "audit.enable"
                | "multiAddress.enabled"
                | "jute.maxbuffer.extrasize"
                | "watchManagerName"
                | "admin.portUnification"
                | "request.throttler.maxRequests"
                | "metricsProvider.summaryMode"
                | "flushDelay"
                | "maxWriteQueuePollTime"
                | "maxBatchSize" => {}
                _ if k.starts_with("server.") => c.servers.push(server_line(key, v)?),
                _ if k.starts_with("group.") || k.starts_with("weight.") => {}
                _ if k.starts_with("zkd.") => {
                    c.zkd.insert(k.to_owned(), v.to_owned());
                }
                _ => warnings.push(format!("unknown key {key:?} ignored")),
            }
        }
        c.data_dir = data_dir.ok_or(ConfigError::Missing("dataDir"))?;
        c.data_log_dir = data_log_dir.unwrap_or_else(|| c.data_dir.clone());
        c.client_port = match client_port {
            Some(p) => p,
            // A standalone ZooKeeper refuses to start without clientPort.
            None if c.servers.is_empty() => return Err(ConfigError::Missing("clientPort")),
            None => 2181,
        };
        if c.tick_time_ms == 0 {
            return Err(bad("tickTime", "0", "a positive number of milliseconds"));
        }
        if c.min_session_timeout_ms() > c.max_session_timeout_ms() {
            return Err(ConfigError::Invalid(format!(
                "minSessionTimeout ({}) must not be larger than maxSessionTimeout ({})",
                c.min_session_timeout_ms(),
                c.max_session_timeout_ms()
            )));
        }
        c.raw = props;
        if let Some(key) = enforce_schemes.filter(|_| !enforce_explicitly_off) {
            security.push(key);
        }
        let mut refusals = Vec::new();
        if !security.is_empty() {
            refusals.push(format!(
                "{} {} TLS or SASL, and TLS/SASL are not supported yet by this build: remove {} to \
                 serve plain TCP with digest/ip authentication.",
                security.join(", "),
                if security.len() == 1 { "asks for" } else { "ask for" },
                if security.len() == 1 { "it" } else { "them" },
            ));
        }
        Ok((c, warnings, refusals))
    }

    /// `conf` four-letter word lines, in ZooKeeper's order and format.
    pub fn to_conf_lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("clientPort={}", self.client_port),
            format!("secureClientPort=-1"),
            format!("dataDir={}", self.data_dir.join("version-2").display()),
            format!("dataDirSize=0"),
            format!("dataLogDir={}", self.data_log_dir.join("version-2").display()),
            format!("dataLogSize=0"),
            format!("tickTime={}", self.tick_time_ms),
            format!("maxClientCnxns={}", self.max_client_cnxns),
            format!("minSessionTimeout={}", self.min_session_timeout_ms()),
            format!("maxSessionTimeout={}", self.max_session_timeout_ms()),
            format!("clientPortListenBacklog=-1"),
        ];
        v.push(format!("serverId={}", self.my_id.unwrap_or(0)));
        v
    }
}

/// What zkd does with a key that belongs to ZooKeeper's TLS/SASL machinery.
#[derive(Debug, PartialEq, Eq)]
enum Security {
    /// It turns TLS or SASL on (or configures them): refused.
    Refuse,
    /// Explicitly off, empty, or the plain-TCP default: accepted.
    Off,
    /// Not TLS/SASL after all, and without effect in zkd: a warning.
    Ignored(&'static str),
}

/// ZooKeeper 3.8's boolean parsing is `Boolean.parseBoolean` (only "true" is true); "yes" is
/// taken as on too, so that a switch meant to be on is never accepted as off.
fn on(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
}

/// The built-in authentication providers zkd implements (digest, ip); naming them in
/// `authProvider.N` changes nothing.
const BUILTIN_AUTH_PROVIDERS: [&str; 2] = [
    "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
    "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
];

/// Classifies a key (without its `zookeeper.` prefix) that ZooKeeper 3.8 reads for TLS or SASL:
/// `QuorumPeerConfig` (secureClientPort[Address], sslQuorum, portUnification, quorum.auth.*),
/// `X509Util` / `ClientX509Util` / `QuorumX509Util` (`zookeeper.ssl.*`, `zookeeper.ssl.quorum.*`),
/// `ProviderRegistry` (`zookeeper.authProvider.*`), `AuthenticationHelper`
/// (`zookeeper.enforce.auth.*`, `zookeeper.sessionRequireClientSASLAuth`), `ServerCnxnFactory`
/// (`zookeeper.serverCnxnFactory`), `ZKClientConfig` (`zookeeper.client.secure`). None: not such a
/// key.
fn security_key(k: &str, v: &str) -> Option<Security> {
    let set = |refuse: bool| Some(if refuse { Security::Refuse } else { Security::Off });
    match k {
        // secureClientPort=0 is ZooKeeper's "no secure port".
        "secureClientPort" => set(!v.is_empty() && v != "0"),
        "sslQuorum"
        | "sslQuorumReloadCertFiles"
        | "portUnification"
        | "client.portUnification"
        | "admin.portUnification"
        | "client.secure"
        | "enforce.auth.enabled"
        | "sessionRequireClientSASLAuth"
        | "quorum.auth.enableSasl"
        | "quorum.auth.learnerRequireSasl"
        | "quorum.auth.serverRequireSasl" => set(on(v)),
        "secureClientPortAddress"
        | "requireClientAuthScheme"
        | "superUser"
        | "X509AuthenticationProvider.superUser" => set(!v.is_empty()),
        "serverCnxnFactory" => {
            if v.contains("NettyServerCnxnFactory") {
                Some(Security::Refuse)
            } else if v.is_empty() || v == "org.apache.zookeeper.server.NIOServerCnxnFactory" {
                Some(Security::Off)
            } else {
                Some(Security::Ignored("zkd has its own connection layer (plain TCP)"))
            }
        }
        _ if k.starts_with("ssl.") || k.starts_with("quorum.auth.") => set(!v.is_empty()),
        _ if k.starts_with("authProvider.") => set(!v.is_empty() && !BUILTIN_AUTH_PROVIDERS.contains(&v)),
        _ => None,
    }
}

/// A refused key as the message names it: with its value where the value is the point (a class
/// name, a switch), without it where it may be a secret or a path.
fn describe(key: &str, k: &str, v: &str) -> String {
    let secret_or_path = k.starts_with("ssl.") || k.starts_with("quorum.auth.") || k.contains("superUser");
    if secret_or_path || v.is_empty() {
        key.to_owned()
    } else {
        format!("{key}={v}")
    }
}

/// `n` ticks in milliseconds, saturated to the i32 that session timeouts are.
fn ticks_ms(n: i64, tick_ms: u32) -> i32 {
    (n * i64::from(tick_ms)).min(i64::from(i32::MAX)) as i32
}

fn bad(key: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::BadValue { key: key.to_owned(), value: value.to_owned(), expected }
}

fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse().map_err(|_| bad(key, v, "a number in range"))
}

fn boolean(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(bad(key, v, "true or false")),
    }
}

fn server_line(key: &str, v: &str) -> Result<ServerLine, ConfigError> {
    let id: u64 = key
        .trim_start_matches("zookeeper.")
        .trim_start_matches("server.")
        .parse()
        .map_err(|_| bad(key, v, "server.N with a numeric N"))?;
    let (addr, client) = match v.split_once(';') {
        Some((a, c)) => (a, Some(c.trim().to_owned())),
        None => (v, None),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    if parts.len() < 3 {
        return Err(bad(
            key,
            v,
            "host:quorumPort:electionPort[:participant|observer][;[clientAddress:]clientPort]",
        ));
    }
    let quorum_port = num(key, parts[1])?;
    let election_port = num(key, parts[2])?;
    let observer = match parts.get(3).copied() {
        None | Some("participant") => false,
        Some("observer") => true,
        Some(_) => return Err(bad(key, v, "role participant or observer")),
    };
    Ok(ServerLine { id, host: parts[0].to_owned(), quorum_port, election_port, observer, client })
}

/// Reads `dataDir/myid` as ZooKeeper does.
pub fn read_myid(data_dir: &Path) -> Result<u64, ConfigError> {
    let p = data_dir.join("myid");
    let text = std::fs::read_to_string(&p)
        .map_err(|e| ConfigError::Io { path: p.clone(), reason: e.to_string() })?;
    parse_myid(&text)
}

/// The text of a `myid` file: a server id, whitespace around it ignored.
pub fn parse_myid(text: &str) -> Result<u64, ConfigError> {
    text.trim().parse().map_err(|_| ConfigError::Invalid(format!("serverid {} is not a number", text.trim())))
}

/// Java `Properties` syntax: `#`/`!` comments, `key=value`, `key: value`, `key value`,
/// backslash line continuations.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut l = line.trim_start().to_owned();
        if l.is_empty() || l.starts_with('#') || l.starts_with('!') {
            continue;
        }
        while l.ends_with('\\') && !l.ends_with("\\\\") {
            l.pop();
            match lines.next() {
                Some(n) => l.push_str(n.trim_start()),
                None => break,
            }
        }
        let idx = l.find(['=', ':', ' ', '\t']);
        let (k, v) = match idx {
            Some(i) => {
                let (k, rest) = l.split_at(i);
                let rest = rest.trim_start_matches([' ', '\t']);
                let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                (k.to_owned(), rest.trim().to_owned())
            }
            None => (l.clone(), String::new()),
        };
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_zoo_cfg() {
        let text = "# The number of milliseconds of each tick\ntickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/var/lib/zookeeper\nclientPort=2181\n#autopurge.purgeInterval=1\n";
        let (c, w) = Config::parse_str(text, Path::new(".")).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/zookeeper"));
        assert_eq!(c.data_log_dir, c.data_dir);
        assert_eq!((c.client_port, c.tick_time_ms), (2181, 2000));
        assert_eq!((c.min_session_timeout_ms(), c.max_session_timeout_ms()), (4000, 40000));
        assert_eq!(c.max_client_cnxns, 60);
        assert_eq!(c.jute_max_buffer, 1048575);
        assert_eq!(c.four_letter_words_whitelist(), Some(vec!["srvr".to_string()]));
    }

    /// Found by fuzz/fuzz_targets/zoo_cfg.rs: 20 × tickTime overflowed the i32 session timeout
    /// (a panic in debug builds, a negative maxSessionTimeout in release builds).
    #[test]
    fn huge_tick_time_saturates_the_session_timeouts() {
        let (c, _) =
            Config::parse_str("tickTime=200333333\ndataDir=/d\nclientPort=0\n", Path::new(".")).unwrap();
        assert_eq!((c.min_session_timeout_ms(), c.max_session_timeout_ms()), (400_666_666, i32::MAX));
        let (c, _) =
            Config::parse_str("tickTime=4294967295\ndataDir=/d\nclientPort=0\n", Path::new(".")).unwrap();
        assert_eq!((c.min_session_timeout_ms(), c.max_session_timeout_ms()), (i32::MAX, i32::MAX));
    }

    #[test]
    fn system_properties_and_unknown_keys() {
        let text = "dataDir=/d\nclientPort=1\nzookeeper.extendedTypesEnabled=true\njute.maxbuffer=4096\n4lw.commands.whitelist=ruok, srvr\nbogus=1\nzookeeper.DigestAuthenticationProvider.superDigest=super:abc\n";
        let (c, w) = Config::parse_str(text, Path::new(".")).unwrap();
        assert!(c.extended_types_enabled);
        assert_eq!(c.jute_max_buffer, 4096);
        assert_eq!(c.super_digest.as_deref(), Some("super:abc"));
        assert_eq!(c.four_letter_words_whitelist(), Some(vec!["ruok".to_string(), "srvr".to_string()]));
        assert_eq!(w, vec!["unknown key \"bogus\" ignored".to_string()]);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::parse_str("dataDir=/d\nclientPort=abc\n", Path::new(".")).unwrap_err();
        assert_eq!(
            e,
            ConfigError::BadValue {
                key: "clientPort".into(),
                value: "abc".into(),
                expected: "a number in range"
            }
        );
        assert_eq!(
            Config::parse_str("clientPort=1\n", Path::new(".")).unwrap_err(),
            ConfigError::Missing("dataDir")
        );
        assert!(Config::parse_str(
            "dataDir=/d\nclientPort=1\nminSessionTimeout=9000\nmaxSessionTimeout=10\n",
            Path::new(".")
        )
        .is_err());
    }

    #[test]
    fn server_lines() {
        let (c, _, refusals) = Config::parse_unchecked(
            "dataDir=/d\nserver.1=a:2888:3888\nserver.2=b:2888:3888:observer;0.0.0.0:2181\n",
        )
        .unwrap();
        assert!(refusals.is_empty(), "{refusals:?}");
        assert_eq!(c.servers.len(), 2);
        assert!(c.servers[1].observer);
        assert_eq!(c.servers[1].client.as_deref(), Some("0.0.0.0:2181"));
    }

    fn unsupported(text: &str) -> String {
        match Config::parse_str(text, Path::new(".")) {
            Err(ConfigError::Unsupported(sentences)) => {
                assert_eq!(sentences.len(), 1, "{sentences:?}");
                sentences[0].clone()
            }
            other => panic!("{text:?} must be refused, got {other:?}"),
        }
    }

    #[test]
    fn an_ensemble_is_refused_naming_its_server_lines() {
        let m = unsupported(
            "dataDir=/d\nclientPort=2181\nserver.1=a:2888:3888\nserver.2=b:2888:3888\nserver.3=c:2888:3888\n",
        );
        assert!(m.starts_with("server.1, server.2, server.3 describe a replicated ensemble"), "{m}");
        assert!(m.contains("replicated ensembles are not supported yet by this build"), "{m}");
        // With the zookeeper. prefix (a system property written in zoo.cfg) too.
        let m = unsupported("dataDir=/d\nzookeeper.server.1=a:2888:3888\nserver.2=b:2888:3888\n");
        assert!(m.contains("server.1, server.2 describe"), "{m}");
        // One server line with standaloneEnabled=false: ZooKeeper runs it as a one-member quorum.
        let m = unsupported("dataDir=/d\nclientPort=1\nstandaloneEnabled=false\nserver.7=a:2888:3888\n");
        assert!(
            m.starts_with("server.7 with standaloneEnabled=false describes a replicated ensemble"),
            "{m}"
        );
    }

    #[test]
    fn a_single_server_line_runs_standalone() {
        let (c, w) =
            Config::parse_str("dataDir=/d\nclientPort=2181\nserver.1=localhost:2888:3888\n", Path::new("."))
                .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.client_port, 2181);
    }

    #[test]
    fn from_file_names_myid_and_reads_dynamic_config_files() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("zoo.cfg");
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("myid"), "2\n").unwrap();
        let body = format!("dataDir={}\nclientPort=2181\n", data.display());
        std::fs::write(&cfg, format!("{body}server.1=a:2888:3888\nserver.2=b:2888:3888\n")).unwrap();
        let e = Config::from_file(&cfg).unwrap_err().to_string();
        let myid = data.join("myid");
        assert!(
            e.starts_with(&format!(
                "server.1, server.2 and {} (server id 2) describe a replicated",
                myid.display()
            )),
            "{e}"
        );
        assert!(e.contains("not supported yet by this build"), "{e}");

        // A single server line: standalone, myid read when present, and not needed when absent.
        std::fs::write(&cfg, format!("{body}server.2=b:2888:3888\n")).unwrap();
        assert_eq!(Config::from_file(&cfg).unwrap().0.my_id, Some(2));
        std::fs::remove_file(&myid).unwrap();
        assert_eq!(Config::from_file(&cfg).unwrap().0.my_id, None);

        // The server lines of a dynamicConfigFile count (ZooKeeper 3.5+ reads them from there).
        let dynamic = d.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(&dynamic, "server.1=a:2888:3888:participant;2181\nserver.2=b:2888:3888;2181\n")
            .unwrap();
        std::fs::write(&cfg, format!("{body}dynamicConfigFile={}\n", dynamic.display())).unwrap();
        let e = Config::from_file(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("server.1, server.2 describe a replicated ensemble"), "{e}");
    }

    #[test]
    fn tls_and_sasl_settings_are_refused_naming_the_key() {
        let base = "dataDir=/d\nclientPort=2181\n";
        for (line, named) in [
            ("secureClientPort=2281", "secureClientPort=2281"),
            ("secureClientPortAddress=0.0.0.0", "secureClientPortAddress=0.0.0.0"),
            ("ssl.keyStore.location=/k.jks", "ssl.keyStore.location"),
            ("ssl.keyStore.password=hunter2", "ssl.keyStore.password"),
            ("ssl.trustStore.location=/t.jks", "ssl.trustStore.location"),
            ("ssl.trustStore.type=PKCS12", "ssl.trustStore.type"),
            ("ssl.clientAuth=need", "ssl.clientAuth"),
            ("ssl.protocol=TLSv1.3", "ssl.protocol"),
            ("ssl.authProvider=x509", "ssl.authProvider"),
            ("ssl.quorum.keyStore.location=/q.jks", "ssl.quorum.keyStore.location"),
            ("zookeeper.ssl.hostnameVerification=false", "zookeeper.ssl.hostnameVerification"),
            ("serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory", "serverCnxnFactory="),
            (
                "zookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                "zookeeper.serverCnxnFactory=",
            ),
            (
                "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
                "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            ),
            (
                "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
                "authProvider.x509=",
            ),
            (
                "zookeeper.authProvider.sasl=com.example.Custom",
                "zookeeper.authProvider.sasl=com.example.Custom",
            ),
            ("enforce.auth.enabled=true", "enforce.auth.enabled=true"),
            ("zookeeper.enforce.auth.enabled=TRUE", "zookeeper.enforce.auth.enabled=TRUE"),
            ("enforce.auth.schemes=sasl", "enforce.auth.schemes"),
            ("sessionRequireClientSASLAuth=true", "sessionRequireClientSASLAuth=true"),
            ("zookeeper.sessionRequireClientSASLAuth=true", "zookeeper.sessionRequireClientSASLAuth=true"),
            ("requireClientAuthScheme=sasl", "requireClientAuthScheme=sasl"),
            ("quorum.auth.enableSasl=true", "quorum.auth.enableSasl"),
            ("quorum.auth.learnerRequireSasl=true", "quorum.auth.learnerRequireSasl"),
            ("quorum.auth.serverRequireSasl=true", "quorum.auth.serverRequireSasl"),
            ("quorum.auth.kerberos.servicePrincipal=zkquorum/host", "quorum.auth.kerberos.servicePrincipal"),
            ("sslQuorum=true", "sslQuorum=true"),
            ("portUnification=true", "portUnification=true"),
            ("client.portUnification=true", "client.portUnification=true"),
            ("client.secure=true", "client.secure=true"),
            ("zookeeper.client.secure=true", "zookeeper.client.secure=true"),
            ("X509AuthenticationProvider.superUser=CN=admin", "X509AuthenticationProvider.superUser"),
        ] {
            let m = unsupported(&format!("{base}{line}\n"));
            assert!(m.starts_with(named), "{line}: {m}");
            assert!(m.contains("TLS/SASL are not supported yet by this build"), "{line}: {m}");
        }
        // Secrets are never echoed.
        assert!(!unsupported(&format!("{base}ssl.keyStore.password=hunter2\n")).contains("hunter2"));
        // Several keys: one sentence naming each.
        let m = unsupported(&format!("{base}secureClientPort=2281\nssl.keyStore.location=/k\n"));
        assert!(m.starts_with("secureClientPort=2281, ssl.keyStore.location ask for TLS or SASL"), "{m}");
    }

    #[test]
    fn security_keys_that_are_off_or_harmless_are_accepted() {
        for line in [
            "enforce.auth.enabled=false",
            "zookeeper.enforce.auth.enabled=false\nzookeeper.enforce.auth.schemes=sasl",
            "sessionRequireClientSASLAuth=false",
            "serverCnxnFactory=org.apache.zookeeper.server.NIOServerCnxnFactory",
            "secureClientPort=0",
            "sslQuorum=false",
            "portUnification=false",
            "admin.portUnification=false",
            "client.secure=false",
            "quorum.auth.enableSasl=false",
            "ssl.keyStore.location=",
            "authProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            "authProvider.2=org.apache.zookeeper.server.auth.IPAuthenticationProvider",
            "zookeeper.DigestAuthenticationProvider.superDigest=super:abc",
        ] {
            let (_, w) = Config::parse_str(&format!("dataDir=/d\nclientPort=1\n{line}\n"), Path::new("."))
                .unwrap_or_else(|e| panic!("{line:?} must be accepted: {e}"));
            assert!(w.is_empty(), "{line}: {w:?}");
        }
        // Another connection factory is not TLS: a warning, not a refusal.
        let (_, w) = Config::parse_str(
            "dataDir=/d\nclientPort=1\nserverCnxnFactory=com.example.Mine\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn an_ensemble_and_tls_are_both_reported() {
        let e = Config::parse_str(
            "dataDir=/d\nserver.1=a:1:2\nserver.2=b:1:2\nsecureClientPort=2281\n",
            Path::new("."),
        )
        .unwrap_err();
        let ConfigError::Unsupported(s) = e else { panic!("{e:?}") };
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].contains("replicated ensembles are not supported yet") && s[1].contains("TLS/SASL"));
    }

    #[test]
    fn properties_syntax() {
        let p = parse_properties("a = 1\nb: 2\n! c\nd \\\n  3\n");
        assert_eq!(p, vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("d".into(), "3".into())]);
    }
}
