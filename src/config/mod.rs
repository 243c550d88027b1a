//! zoo.cfg and myid, read as Apache ZooKeeper 3.8 reads them (`QuorumPeerConfig`,
//! `ServerConfig`), with ZooKeeper's defaults. Pure: text in, `Config` out.
//!
//! Keys that ZooKeeper takes as `-Dzookeeper.*` system properties are accepted in zoo.cfg too,
//! with or without the `zookeeper.` prefix. Unknown keys are warnings (ZooKeeper ignores them
//! silently); a bad value is an error naming the key, the value and what is expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod ensemble;
pub mod jaas;
pub mod security;
mod settings;
pub use ensemble::{
    host_port, is_distributed, parse_server_line, version_from_filename, ClientAddr, Ensemble, PeerType,
    QuorumKeys, ServerLine, COMMIT_LOG_COUNT_MIN, SERVER_ID_MAX,
};
pub use security::{is_secret_key, Secret, SecurityConfig};
pub use settings::{AuthSettings, Settings};

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

/// A configuration file read with everything it names (`dynamicConfigFile`, `dataDir/myid`):
/// the configuration, the ensemble it describes (None: standalone) and the warnings to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub ensemble: Option<Ensemble>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u32,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    /// None: no plain client port (only `secureClientPort`).
    pub client_port: Option<u16>,
    /// Whether `clientPort` was written (an ensemble member may take it from its server line).
    pub client_port_given: bool,
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
    /// 0: not set (an ensemble refuses to start without it, as ZooKeeper does).
    pub init_limit: u32,
    /// 0: not set (an ensemble refuses to start without it, as ZooKeeper does).
    pub sync_limit: u32,
    pub standalone_enabled: bool,
    pub reconfig_enabled: bool,
    pub local_session_enabled: bool,
    /// The `server.N` lines, from zoo.cfg or its `dynamicConfigFile`, in the order written.
    pub servers: Vec<ServerLine>,
    /// The other quorum keys (timeouts, switches, the dynamic config file).
    pub quorum: QuorumKeys,
    /// From `dataDir/myid` when server lines exist.
    pub my_id: Option<u64>,
    /// TLS on the client port, x509/SASL authentication, enforced authentication.
    pub security: SecurityConfig,
    /// zkd's own keys (`zkd.*`), kept as written.
    pub zkd: BTreeMap<String, String>,
    /// Every key as written (for `icfg`), secrets as "***".
    pub raw: Vec<(String, String)>,
}

impl Config {
    /// The embedded default: standalone, port 2181, data in ./zkd-data.
    pub fn embedded_default() -> Config {
        let mut c = Config::base(PathBuf::from("./zkd-data"));
        c.client_port = Some(2181);
        c
    }

    fn base(data_dir: PathBuf) -> Config {
        Config {
            tick_time_ms: 2000,
            data_log_dir: data_dir.clone(),
            data_dir,
            client_port: Some(2181),
            client_port_given: false,
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
            init_limit: 0,
            sync_limit: 0,
            standalone_enabled: true,
            reconfig_enabled: false,
            local_session_enabled: false,
            servers: Vec::new(),
            quorum: QuorumKeys::default(),
            my_id: None,
            security: SecurityConfig::default(),
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

    /// Reads zoo.cfg, its `dynamicConfigFile` and `dataDir/myid`, and checks the ensemble they
    /// describe as ZooKeeper does (`Loaded::ensemble` is None for a standalone server). TLS/SASL
    /// settings are still refused.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        Config::load_with(path, &[])
    }

    /// `load`, with `props` (system properties given to a Java ZooKeeper, see `jvm_properties`)
    /// read before the file's own lines, which win.
    pub fn load_with(path: &Path, props: &[(String, String)]) -> Result<Loaded, ConfigError> {
        let file = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { path: path.to_owned(), reason: e.to_string() })?;
        let mut text = String::new();
        for (k, v) in props {
            text.push_str(&format!("{k}={v}\n"));
        }
        text.push_str(&file);
        let (mut cfg, mut warnings, refusals) = Config::parse_unchecked(&text)?;
        // ZooKeeper 3.5+ reads the server lines from dynamicConfigFile when it is set.
        if let Some(file) = cfg.quorum.dynamic_config_file.clone() {
            let file = PathBuf::from(file);
            let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::Io {
                path: file.clone(),
                reason: format!("{e} (named by dynamicConfigFile)"),
            })?;
            cfg.apply_dynamic(&file.display().to_string(), &text)?;
        }
        // A standalone ZooKeeper needs no myid; when the file exists it is read (and must be a
        // number), as ZooKeeper 3.8 reads it.
        let myid_path = cfg.data_dir.join("myid");
        if !cfg.servers.is_empty() && myid_path.is_file() {
            cfg.my_id = Some(read_myid(&cfg.data_dir)?);
        }
        ensemble::check_servers(&cfg)?;
        if !refusals.is_empty() {
            return Err(ConfigError::Unsupported(refusals));
        }
        let ensemble = ensemble::build(&cfg, &myid_path.display().to_string())?;
        if let Some(e) = &ensemble {
            warnings.extend(ensemble::warnings(e, cfg.quorum.peer_type));
        }
        Ok(Loaded { config: cfg, ensemble, warnings })
    }

    /// Takes the server lines from a dynamic config file's text, as ZooKeeper reads that file:
    /// only `server.N` (and `group`/`weight`) keys, no `version` key (the version is the file
    /// name's hex suffix). `file` names it in messages.
    pub fn apply_dynamic(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        for (k, v) in parse_properties(text) {
            let key = k.strip_prefix("zookeeper.").unwrap_or(&k);
            if key.starts_with("server.") {
                self.servers.push(parse_server_line(&k, v.trim())?);
            } else if key.starts_with("group") || key.starts_with("weight") {
                self.quorum.hierarchical.push(k.clone());
            } else if key == "version" {
                return Err(ConfigError::Invalid(format!(
                    "{file} has a version key: a dynamic config file takes its version from its \
                     name (zoo.cfg.dynamic.<hex version>)."
                )));
            } else {
                return Err(ConfigError::Invalid(format!(
                    "{file} has the key {k}: a dynamic config file holds only server.N lines."
                )));
            }
        }
        self.quorum.config_version = version_from_filename(file).unwrap_or(0);
        Ok(())
    }

    /// The ensemble this configuration describes (None: it runs standalone), checked as
    /// ZooKeeper checks it. `my_id` must have been read (`load` does).
    pub fn ensemble(&self) -> Result<Option<Ensemble>, ConfigError> {
        ensemble::build(self, &self.data_dir.join("myid").display().to_string())
    }

    /// Parses zoo.cfg text. `_base` is the config's directory (ZooKeeper does not resolve
    /// relative paths against it, and neither do we; kept for messages). A replicated ensemble
    /// or a TLS/SASL setting is an `Unsupported` error.
    pub fn parse_str(text: &str, _base: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let (cfg, warnings, refusals) = Config::parse_unchecked(text)?;
        ensemble::check_servers(&cfg)?;
        if !refusals.is_empty() {
            return Err(ConfigError::Unsupported(refusals));
        }
        Ok((cfg, warnings))
    }

    /// Parses without refusing: the config, the warnings, and the TLS/SASL refusal (if any).
    fn parse_unchecked(text: &str) -> Result<(Config, Vec<String>, Vec<String>), ConfigError> {
        let props = parse_properties(text);
        let mut warnings = Vec::new();
        let mut c = Config::base(PathBuf::new());
        let mut data_dir = None;
        let mut data_log_dir = None;
        let mut client_port = None;
        let mut security = security::SecurityParser::default();
        // ZooKeeper refuses server lines in zoo.cfg beside a dynamicConfigFile.
        let has_dynamic =
            props.iter().any(|(k, _)| k.strip_prefix("zookeeper.").unwrap_or(k) == "dynamicConfigFile");
        for (key, value) in &props {
            let v = value.trim();
            let k = key.strip_prefix("zookeeper.").unwrap_or(key);
            if security.take(key, k, v) {
                continue;
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
                "peerType" => {
                    c.quorum.peer_type =
                        Some(PeerType::parse(v).ok_or_else(|| bad(key, v, "participant or observer"))?)
                }
                "electionAlg" => {
                    if v != "3" {
                        return Err(bad(key, v, "3 (fast leader election, the only one ZooKeeper 3.8 has)"));
                    }
                }
                "cnxTimeout" => c.quorum.cnx_timeout_ms = num(key, v)?,
                "quorumCnxnTimeoutMs" => c.quorum.quorum_cnxn_timeout_ms = num(key, v)?,
                "electionPortBindRetry" => {
                    let n: i64 = num(key, v)?;
                    c.quorum.election_port_bind_retry = match u32::try_from(n) {
                        Ok(n) => n,
                        Err(_) if n < 0 => {
                            warnings.push(format!(
                                "{key}={v} must be >= 0 (0: retry forever): using ZooKeeper's default 3"
                            ));
                            3
                        }
                        Err(_) => u32::MAX,
                    }
                }
                "quorumListenOnAllIPs" => c.quorum.quorum_listen_on_all_ips = boolean(key, v)?,
                // ZooKeeper's Leader turns serving off only for the exact word "no".
                "leaderServes" => {
                    c.quorum.leader_serves = v != "no";
                    if !matches!(v, "yes" | "no") {
                        warnings.push(format!(
                            "{key}={v} is read as yes, as ZooKeeper reads it: only \"no\" turns it off"
                        ));
                    }
                }
                "commitLogCount" => {
                    let n: u32 = num(key, v)?;
                    if n < COMMIT_LOG_COUNT_MIN {
                        warnings.push(format!(
                            "{key}={v} is below ZooKeeper's minimum: using {COMMIT_LOG_COUNT_MIN}"
                        ));
                    }
                    c.quorum.commit_log_count = n.max(COMMIT_LOG_COUNT_MIN);
                }
                "dynamicConfigFile" => c.quorum.dynamic_config_file = Some(v.to_owned()),
                "syncLimit" => c.sync_limit = num(key, v)?,
                "standaloneEnabled" => c.standalone_enabled = boolean(key, v)?,
                "reconfigEnabled" => c.reconfig_enabled = boolean(key, v)?,
                "localSessionsEnabled" => c.local_session_enabled = boolean(key, v)?,
                // Accepted and without effect in standalone zkd (ZooKeeper keys operators use).
                "maxCnxns"
                | "localSessionsUpgradingEnabled"
                | "syncEnabled"
                | "clientCnxnSocket"
                | "4lw.commands.enabled"
                | "admin.idleTimeout"
                | "metricsProvider.exportJvmInfo"
                | "connectToLearnerMasterLimit"
                | "maxSessionTimeoutMs"
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
                _ if k.starts_with("server.") && has_dynamic => {
                    c.quorum.static_lines_beside_dynamic.push(key.clone())
                }
                _ if k.starts_with("server.") => c.servers.push(parse_server_line(key, v)?),
                _ if k.starts_with("group.") || k.starts_with("weight.") => {
                    c.quorum.hierarchical.push(key.clone())
                }
                _ if k.starts_with("zkd.") => {
                    c.zkd.insert(k.to_owned(), v.to_owned());
                }
                _ => warnings.push(format!("unknown key {key:?} ignored")),
            }
        }
        c.data_dir = data_dir.ok_or(ConfigError::Missing("dataDir"))?;
        c.data_log_dir = data_log_dir.unwrap_or_else(|| c.data_dir.clone());
        let (sec, refusals, sec_warnings) = security.finish();
        warnings.extend(sec_warnings);
        c.client_port_given = client_port.is_some();
        c.client_port = match client_port {
            Some(p) => Some(p),
            // secureClientPort alone: ZooKeeper then serves TLS only.
            None if sec.secure_client_port.is_some() => None,
            // A standalone ZooKeeper refuses to start without clientPort.
            None if c.servers.is_empty() => return Err(ConfigError::Missing("clientPort")),
            None => Some(2181),
        };
        c.security = sec;
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
        // What `icfg` and friends show: a secret (a key ending in "password") only as "***".
        c.raw = props
            .into_iter()
            .map(|(k, v)| if is_secret_key(&k) { (k, "***".to_owned()) } else { (k, v) })
            .collect();
        Ok((c, warnings, refusals))
    }

    /// `conf` four-letter word lines, in ZooKeeper's order and format.
    pub fn to_conf_lines(&self) -> Vec<String> {
        let mut v = vec![
            format!("clientPort={}", self.client_port.map_or(-1, i32::from)),
            format!("secureClientPort={}", self.security.secure_client_port.map_or(-1, i32::from)),
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

/// The `-Dzookeeper.*=value` system properties of `JVMFLAGS` and `SERVER_JVMFLAGS` (in that
/// order, as zkServer.sh hands them to the JVM), which a Java ZooKeeper reads like zoo.cfg keys
/// (zoo.cfg keys it does not know become `zookeeper.*` properties): SASL and TLS set-ups often
/// put `-Dzookeeper.authProvider.1=...` or `-Dzookeeper.sessionRequireClientSASLAuth=true` there.
pub fn jvm_properties(jvmflags: Option<&str>, server_jvmflags: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for flags in [jvmflags, server_jvmflags].into_iter().flatten() {
        for tok in flags.split_whitespace() {
            if let Some((k, v)) = tok.strip_prefix("-Dzookeeper.").and_then(|kv| kv.split_once('=')) {
                out.push((format!("zookeeper.{k}"), v.trim_matches(|c| c == '"' || c == '\'').to_owned()));
            }
        }
    }
    out
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
        assert_eq!((c.client_port, c.tick_time_ms), (Some(2181), 2000));
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
        assert!(c.servers[1].is_observer());
        assert_eq!(c.servers[1].client, Some(ClientAddr { host: Some("0.0.0.0".into()), port: 2181 }));
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
    fn an_ensemble_parses_with_its_server_lines() {
        let (c, _) = Config::parse_str(
            "dataDir=/d\nclientPort=2181\ninitLimit=10\nsyncLimit=5\nserver.1=a:2888:3888\nserver.2=b:2888:3888\nserver.3=c:2888:3888\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.servers.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);
        // With the zookeeper. prefix (a system property written in zoo.cfg) too.
        let (c, _) = Config::parse_str(
            "dataDir=/d\ninitLimit=1\nsyncLimit=1\nzookeeper.server.1=a:2888:3888\nserver.2=b:2888:3888\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
    }

    #[test]
    fn a_single_server_line_runs_standalone() {
        let (c, w) =
            Config::parse_str("dataDir=/d\nclientPort=2181\nserver.1=localhost:2888:3888\n", Path::new("."))
                .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.servers.len(), 1);
        assert_eq!(c.client_port, Some(2181));
    }

    #[test]
    fn load_reads_myid_and_dynamic_config_files() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("zoo.cfg");
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("myid"), "2\n").unwrap();
        let body = format!("dataDir={}\nclientPort=2181\ninitLimit=10\nsyncLimit=5\n", data.display());
        std::fs::write(&cfg, format!("{body}server.1=a:2888:3888\nserver.2=b:2888:3888\n")).unwrap();
        let l = Config::load(&cfg).unwrap();
        assert_eq!(l.config.my_id, Some(2));
        let e = l.ensemble.expect("two participants are an ensemble");
        assert_eq!((e.my_id, e.servers.len()), (2, 2));

        // A single server line: standalone, myid read when present, and not needed when absent.
        let myid = data.join("myid");
        std::fs::write(&cfg, format!("{body}server.2=b:2888:3888\n")).unwrap();
        let l = Config::load(&cfg).unwrap();
        assert_eq!((l.config.my_id, l.ensemble.is_none()), (Some(2), true));
        std::fs::remove_file(&myid).unwrap();
        assert_eq!(Config::load(&cfg).unwrap().config.my_id, None);

        // The server lines of a dynamicConfigFile count (ZooKeeper 3.5+ reads them from there).
        std::fs::write(&myid, "1").unwrap();
        let dynamic = d.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(&dynamic, "server.1=a:2888:3888:participant;2181\nserver.2=b:2888:3888;2181\n")
            .unwrap();
        std::fs::write(&cfg, format!("{body}dynamicConfigFile={}\n", dynamic.display())).unwrap();
        let e = Config::load(&cfg).unwrap().ensemble.expect("from the dynamic file");
        assert_eq!((e.my_id, e.servers.len(), e.config_version), (1, 2, 0x1_0000_0000));
    }

    #[test]
    fn quorum_tls_sasl_and_java_only_settings_are_refused_naming_the_key() {
        let base = "dataDir=/d\nclientPort=2181\n";
        for (line, named) in [
            ("sslQuorum=true", "sslQuorum=true needs ssl.quorum.keyStore.location"),
            ("portUnification=true", "portUnification=true needs ssl.quorum.keyStore.location"),
            (
                "quorum.auth.kerberos.servicePrincipal=zkquorum/host",
                "quorum.auth.kerberos.servicePrincipal=zkquorum/host asks for Kerberos",
            ),
            ("authProvider.1=com.example.Custom", "authProvider.1=com.example.Custom names a Java"),
            (
                "zookeeper.authProvider.sasl=com.example.Custom",
                "zookeeper.authProvider.sasl=com.example.Custom names",
            ),
            (
                "ssl.context.supplier.class=com.example.Ctx",
                "ssl.context.supplier.class=com.example.Ctx names a Java class",
            ),
            ("ssl.crl=true", "ssl.crl=true asks for certificate revocation"),
            ("enforce.auth.enabled=true", "enforce.auth.enabled is true but enforce.auth.schemes is empty"),
            ("sessionRequireClientSASLAuth=true", "enforce.auth.schemes names sasl"),
            (
                "secureClientPortAddress=0.0.0.0",
                "secureClientPortAddress is set but secureClientPort is not set",
            ),
        ] {
            let m = unsupported(&format!("{base}{line}\n"));
            assert!(m.starts_with(named), "{line}: {m}");
        }
        // Secrets are never echoed.
        let m = unsupported(&format!(
            "{base}secureClientPort=2281\nssl.keyStore.location=/k.jks\nssl.keyStore.password=hunter2\nssl.clientAuth=none\n"
        ));
        assert!(m.contains("keytool -importkeystore") && !m.contains("hunter2"), "{m}");
    }

    #[test]
    fn client_tls_and_sasl_settings_are_accepted() {
        let text = "dataDir=/d\nsecureClientPort=2281\n\
                    serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                    ssl.keyStore.location=/k/server.pem\nssl.keyStore.password=hunter2\n\
                    ssl.trustStore.location=/k/ca.pem\nssl.clientAuth=want\n\
                    ssl.hostnameVerification=false\n\
                    authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n\
                    authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n\
                    zookeeper.sessionRequireClientSASLAuth=true\nX509AuthenticationProvider.superUser=CN=admin\n";
        let (c, w) = Config::parse_str(text, Path::new(".")).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.client_port, None, "secureClientPort alone: TLS only");
        assert_eq!(c.security.secure_client_port, Some(2281));
        assert!(c.security.x509_provider && c.security.sasl_provider && c.security.sasl_auth_required());
        assert_eq!(c.security.x509_super_user.as_deref(), Some("CN=admin"));
        assert_eq!(
            c.to_conf_lines()[..2],
            ["clientPort=-1".to_string(), "secureClientPort=2281".to_string()]
        );
        assert!(!format!("{c:?}").contains("hunter2"), "Debug never shows a password");
    }

    #[test]
    fn security_keys_that_are_off_or_harmless_are_accepted() {
        for line in [
            "enforce.auth.enabled=false",
            "zookeeper.enforce.auth.enabled=false\nzookeeper.enforce.auth.schemes=sasl",
            "sessionRequireClientSASLAuth=false",
            "serverCnxnFactory=org.apache.zookeeper.server.NIOServerCnxnFactory",
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            "secureClientPort=0",
            "sslQuorum=false",
            "portUnification=false",
            "admin.portUnification=false",
            "client.secure=true",
            "quorum.auth.enableSasl=false",
            "ssl.keyStore.location=",
            "authProvider.1=org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
            "authProvider.2=org.apache.zookeeper.server.auth.IPAuthenticationProvider",
            "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "zookeeper.DigestAuthenticationProvider.superDigest=super:abc",
            "superUser=bob",
        ] {
            let (_, w) = Config::parse_str(&format!("dataDir=/d\nclientPort=1\n{line}\n"), Path::new("."))
                .unwrap_or_else(|e| panic!("{line:?} must be accepted: {e}"));
            assert!(w.is_empty(), "{line}: {w:?}");
        }
        // Another connection factory: a warning, not a refusal.
        let (_, w) = Config::parse_str(
            "dataDir=/d\nclientPort=1\nserverCnxnFactory=com.example.Mine\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn an_ensemble_with_quorum_tls_reads_the_quorum_stores() {
        let base = "dataDir=/d\ninitLimit=1\nsyncLimit=1\nserver.1=a:1:2\nserver.2=b:1:2\nsslQuorum=true\n";
        let e = Config::parse_str(base, Path::new(".")).unwrap_err();
        let ConfigError::Unsupported(s) = e else { panic!("{e:?}") };
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0].starts_with("sslQuorum=true needs ssl.quorum.keyStore.location"), "{s:?}");
        let text = format!(
            "{base}ssl.quorum.keyStore.location=/k/q.p12\nssl.quorum.keyStore.password=pw\n\
             ssl.quorum.trustStore.location=/k/ca.pem\n"
        );
        let (c, _) = Config::parse_str(&text, Path::new(".")).unwrap();
        assert!(c.security.ssl_quorum && c.security.quorum_ssl.is_some());
    }

    #[test]
    fn jvm_flags_are_read_as_keys_before_the_file() {
        let props = jvm_properties(
            Some("-Xmx1g -Dzookeeper.authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
            Some("-Djava.security.auth.login.config=/j.conf -Dzookeeper.sessionRequireClientSASLAuth=true"),
        );
        assert_eq!(props.len(), 2);
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("zoo.cfg");
        std::fs::write(&cfg, "dataDir=/d\nclientPort=1\n").unwrap();
        let (c, _) = Config::load_with(&cfg, &props).map(|l| (l.config, l.warnings)).unwrap();
        assert!(c.security.sasl_auth_required() && c.security.sasl_provider);
        // The file wins over a property.
        std::fs::write(&cfg, "dataDir=/d\nclientPort=1\nsessionRequireClientSASLAuth=false\n").unwrap();
        let (c, _) = Config::load_with(&cfg, &props).map(|l| (l.config, l.warnings)).unwrap();
        assert!(!c.security.enforce_auth);
    }

    #[test]
    fn properties_syntax() {
        let p = parse_properties("a = 1\nb: 2\n! c\nd \\\n  3\n");
        assert_eq!(p, vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("d".into(), "3".into())]);
    }
}
