//! The replicated ensemble a configuration describes: the `server.N` lines (from zoo.cfg or from
//! its `dynamicConfigFile`), this server's id (`dataDir/myid`) and the quorum settings, checked as
//! Apache ZooKeeper 3.8's `QuorumPeerConfig` / `QuorumPeer` check them, plus a few mistakes
//! ZooKeeper lets through silently (a server id given twice, one address used by two servers).
//! Pure: a `Config` in, an `Ensemble` or one sentence naming the key out.

use std::collections::BTreeMap;

use super::{bad, ConfigError};

/// Whether a server votes (`participant`, the default) or only learns (`observer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    Participant,
    Observer,
}

impl PeerType {
    /// As ZooKeeper spells it in a server line and in `peerType` (case-insensitive there).
    pub fn parse(v: &str) -> Option<PeerType> {
        match v.trim().to_ascii_lowercase().as_str() {
            "participant" => Some(PeerType::Participant),
            "observer" => Some(PeerType::Observer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerType::Participant => "participant",
            PeerType::Observer => "observer",
        }
    }
}

/// The client address of a server line (`;[clientAddress:]clientPort`). No host: the wildcard
/// address (ZooKeeper writes `0.0.0.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr {
    pub host: Option<String>,
    pub port: u16,
}

impl ClientAddr {
    /// `host:port` as ZooKeeper prints it (`0.0.0.0` for the wildcard, IPv6 in brackets).
    pub fn to_host_port(&self) -> String {
        host_port(self.host.as_deref().unwrap_or("0.0.0.0"), self.port)
    }
}

/// One `server.N=host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]`
/// line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    pub id: u64,
    /// The key as written (`server.1`, `zookeeper.server.01`): messages name it.
    pub key: String,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub peer_type: PeerType,
    pub client: Option<ClientAddr>,
}

impl ServerLine {
    pub fn quorum_addr(&self) -> String {
        host_port(&self.host, self.quorum_port)
    }

    pub fn election_addr(&self) -> String {
        host_port(&self.host, self.election_port)
    }

    pub fn is_observer(&self) -> bool {
        self.peer_type == PeerType::Observer
    }

    /// The line's value, normalised, for messages: `host:quorumPort:electionPort:type[;clientHost:clientPort]`.
    /// (The byte form peers exchange is `quorum::wire::QuorumView`'s.)
    pub fn to_value(&self) -> String {
        let mut s = format!("{}:{}", self.quorum_addr(), self.election_port);
        s.push(':');
        s.push_str(self.peer_type.name());
        if let Some(c) = &self.client {
            s.push(';');
            s.push_str(&c.to_host_port());
        }
        s
    }
}

/// Server ids are Java longs; `Long.MAX_VALUE` is what an observer without an id sends in the
/// election handshake, so the largest id a configuration may use is one less.
pub const SERVER_ID_MAX: u64 = i64::MAX as u64 - 1;

/// ZooKeeper keeps at least this many committed proposals in memory (`ZKDatabase`).
pub const COMMIT_LOG_COUNT_MIN: u32 = 500;

const SERVER_FORMAT: &str =
    "host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]";

/// Parses one server line the way `QuorumPeer.QuorumServer` does. `key` is the key as written.
pub fn parse_server_line(key: &str, v: &str) -> Result<ServerLine, ConfigError> {
    let suffix = key.strip_prefix("zookeeper.").unwrap_or(key).strip_prefix("server.").unwrap_or("");
    let id: u64 = suffix.parse().map_err(|_| bad(key, v, "server.N with a numeric N"))?;
    if id > SERVER_ID_MAX {
        return Err(bad(key, v, "a server id from 0 to 9223372036854775806"));
    }
    let parts: Vec<&str> = v.split(';').collect();
    if parts.len() > 2 {
        return Err(bad(key, v, SERVER_FORMAT));
    }
    if parts[0].contains('|') {
        return Err(ConfigError::Invalid(format!(
            "{key}={v} lists several addresses for one server (ZooKeeper's multiAddress.enabled), \
             which this build does not support: give one host:quorumPort:electionPort."
        )));
    }
    let fields = host_and_port(parts[0]).ok_or_else(|| bad(key, v, SERVER_FORMAT))?;
    if !(3..=4).contains(&fields.len()) || fields[0].is_empty() {
        return Err(bad(key, v, SERVER_FORMAT));
    }
    let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad(key, v, "ports from 0 to 65535"));
    let quorum_port = port(fields[1])?;
    let election_port = port(fields[2])?;
    if quorum_port == election_port {
        return Err(ConfigError::Invalid(format!(
            "{key}={v}: the quorum port and the election port must differ (both are {quorum_port})."
        )));
    }
    let peer_type = match fields.get(3) {
        None => PeerType::Participant,
        Some(t) => PeerType::parse(t).ok_or_else(|| bad(key, v, "participant or observer as the role"))?,
    };
    let client = match parts.get(1) {
        None => None,
        Some(c) => {
            let cp = host_and_port(c.trim()).ok_or_else(|| bad(key, v, SERVER_FORMAT))?;
            let (host, p) = match cp.as_slice() {
                [p] => (None, p),
                [h, p] => (Some((*h).to_owned()), p),
                _ => return Err(bad(key, v, SERVER_FORMAT)),
            };
            Some(ClientAddr { host, port: port(p)? })
        }
    };
    Ok(ServerLine {
        id,
        key: key.to_owned(),
        host: fields[0].to_owned(),
        quorum_port,
        election_port,
        peer_type,
        client,
    })
}

/// ZooKeeper's `ConfigUtils.getHostAndPort`: `[v6addr]:a:b` or `host:a:b`, split on colons.
fn host_and_port(s: &str) -> Option<Vec<&str>> {
    match s.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            let after = after.strip_prefix(':')?;
            if after.is_empty() {
                return None;
            }
            let mut v = vec![host];
            v.extend(after.split(':'));
            Some(v)
        }
        None => Some(s.split(':').collect()),
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Everything an ensemble member needs to start: who it is, who the others are and where, and
/// the quorum's timing and switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensemble {
    /// This server's id (`dataDir/myid`); always one of `servers`.
    pub my_id: u64,
    /// Every server line (participants and observers), by id.
    pub servers: BTreeMap<u64, ServerLine>,
    pub tick_time_ms: u32,
    /// Ticks a follower may take to connect and sync to a leader.
    pub init_limit: u32,
    /// Ticks a follower may fall behind a leader.
    pub sync_limit: u32,
    /// `cnxTimeout`: how long opening an election connection may take (0: the kernel's own).
    pub cnx_timeout_ms: u32,
    /// How long an election handshake may take to arrive: `quorumCnxnTimeoutMs` when set,
    /// else tickTime × syncLimit (ZooKeeper's `QuorumPeer.createCnxnManager`).
    pub quorum_cnxn_timeout_ms: u32,
    /// `electionPortBindRetry`: binding the election port is tried this many times, one second
    /// apart (0: forever).
    pub election_port_bind_retry: u32,
    /// `quorumListenOnAllIPs`: listen on the wildcard address rather than the election host.
    pub quorum_listen_on_all_ips: bool,
    /// `leaderServes`: the leader accepts client connections.
    pub leader_serves: bool,
    pub standalone_enabled: bool,
    pub reconfig_enabled: bool,
    /// `zookeeper.digest.enabled`: followers compare tree digests with the leader's.
    pub digest_enabled: bool,
    /// `zookeeper.commitLogCount`: committed proposals kept in memory for follower syncs.
    pub commit_log_count: u32,
    /// The configuration's version: the hex suffix of the dynamic config file's name, 0 when the
    /// server lines are in zoo.cfg.
    pub config_version: u64,
}

impl Ensemble {
    /// This server's own line.
    pub fn me(&self) -> &ServerLine {
        self.servers.get(&self.my_id).expect("an Ensemble always holds its own server line")
    }

    /// Participant or observer, as the server list says (it wins over `peerType`).
    pub fn my_peer_type(&self) -> PeerType {
        self.me().peer_type
    }

    pub fn voters(&self) -> impl Iterator<Item = &ServerLine> {
        self.servers.values().filter(|s| !s.is_observer())
    }

    pub fn observers(&self) -> impl Iterator<Item = &ServerLine> {
        self.servers.values().filter(|s| s.is_observer())
    }
}

/// The quorum settings as read from zoo.cfg, before the server lines are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumKeys {
    /// `peerType` as written (None: not given).
    pub peer_type: Option<PeerType>,
    pub cnx_timeout_ms: u32,
    /// `quorumCnxnTimeoutMs`; values ≤ 0 mean "tickTime × syncLimit".
    pub quorum_cnxn_timeout_ms: i64,
    pub election_port_bind_retry: u32,
    pub quorum_listen_on_all_ips: bool,
    pub leader_serves: bool,
    pub commit_log_count: u32,
    /// `dynamicConfigFile`, as written.
    pub dynamic_config_file: Option<String>,
    /// Server lines written in zoo.cfg although `dynamicConfigFile` is set (ZooKeeper refuses).
    pub static_lines_beside_dynamic: Vec<String>,
    /// `group.N` / `weight.N` keys (hierarchical quorums), as written.
    pub hierarchical: Vec<String>,
    pub config_version: u64,
}

impl Default for QuorumKeys {
    fn default() -> Self {
        QuorumKeys {
            peer_type: None,
            cnx_timeout_ms: 5000,
            quorum_cnxn_timeout_ms: -1,
            election_port_bind_retry: 3,
            quorum_listen_on_all_ips: false,
            leader_serves: true,
            commit_log_count: COMMIT_LOG_COUNT_MIN,
            dynamic_config_file: None,
            static_lines_beside_dynamic: Vec::new(),
            hierarchical: Vec::new(),
            config_version: 0,
        }
    }
}

/// The version a dynamic config file's name carries (`zoo.cfg.dynamic.100000000` → 0x100000000;
/// ZooKeeper's `getVersionFromFilename`), if its last dotted part is hexadecimal.
pub fn version_from_filename(name: &str) -> Option<u64> {
    let (_, tail) = name.rsplit_once('.')?;
    u64::from_str_radix(tail, 16).ok()
}

/// What the server lines say about how the server runs: ZooKeeper's `isDistributed` (two or more
/// participants, or any with standaloneEnabled=false).
pub fn is_distributed(servers: &[ServerLine], standalone_enabled: bool) -> bool {
    let voters = servers.iter().filter(|s| !s.is_observer()).count();
    !servers.is_empty() && (!standalone_enabled || voters > 1)
}

/// The checks that need no myid: the server lines among themselves and against the switches
/// (ZooKeeper's `parseDynamicConfig`, `checkValidity`, plus duplicate ids and addresses).
pub fn check_servers(cfg: &super::Config) -> Result<(), ConfigError> {
    let q = &cfg.quorum;
    if let Some(file) = &q.dynamic_config_file {
        if let Some(key) = q.static_lines_beside_dynamic.first() {
            return Err(ConfigError::Invalid(format!(
                "{key} is in zoo.cfg although dynamicConfigFile={file} is set: server lines must be \
                 in the dynamic config file only."
            )));
        }
    }
    if !q.hierarchical.is_empty() {
        return Err(ConfigError::Unsupported(vec![format!(
            "{} {} hierarchical quorums (groups and weights), which this build does not support: \
             remove {} to use majority quorums.",
            q.hierarchical.join(", "),
            if q.hierarchical.len() == 1 { "configures" } else { "configure" },
            if q.hierarchical.len() == 1 { "it" } else { "them" },
        )]));
    }
    let mut by_id: BTreeMap<u64, &ServerLine> = BTreeMap::new();
    for s in &cfg.servers {
        if let Some(first) = by_id.insert(s.id, s) {
            return Err(ConfigError::Invalid(format!(
                "{} and {} both name server id {}: each server id must appear once.",
                first.key, s.key, s.id
            )));
        }
    }
    // Two servers cannot listen on one address. Wildcard client addresses are per machine.
    let mut used: BTreeMap<(String, u16), String> = BTreeMap::new();
    for s in &cfg.servers {
        let mut addrs = vec![
            (s.host.to_ascii_lowercase(), s.quorum_port, "quorum address"),
            (s.host.to_ascii_lowercase(), s.election_port, "election address"),
        ];
        if let Some(ClientAddr { host: Some(h), port }) = &s.client {
            if !is_wildcard(h) {
                addrs.push((h.to_ascii_lowercase(), *port, "client address"));
            }
        }
        for (host, port, what) in addrs {
            let name = format!("the {what} of {}", s.key);
            if let Some(other) = used.insert((host.clone(), port), name.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "{} is {other} and also {name}: every server needs its own addresses.",
                    host_port(&host, port)
                )));
            }
        }
    }
    let voters = cfg.servers.iter().filter(|s| !s.is_observer()).count();
    let observers = cfg.servers.len() - voters;
    if voters == 0 {
        if !cfg.standalone_enabled {
            return Err(ConfigError::Invalid(
                "standaloneEnabled=false needs at least one participant server.N line.".into(),
            ));
        }
        if observers > 0 {
            return Err(ConfigError::Invalid(
                "every server.N line is an observer: observers need participants to learn from.".into(),
            ));
        }
    } else if voters == 1 && cfg.standalone_enabled && observers > 0 {
        return Err(ConfigError::Invalid(
            "one participant and observers is not a quorum: add participants, or set \
             standaloneEnabled=false to run the participant as a one-server quorum."
                .into(),
        ));
    }
    if is_distributed(&cfg.servers, cfg.standalone_enabled) {
        if cfg.init_limit == 0 {
            return Err(ConfigError::Invalid(
                "initLimit is not set: an ensemble needs it (ZooKeeper's sample uses initLimit=10).".into(),
            ));
        }
        if cfg.sync_limit == 0 {
            return Err(ConfigError::Invalid(
                "syncLimit is not set: an ensemble needs it (ZooKeeper's sample uses syncLimit=5).".into(),
            ));
        }
    }
    Ok(())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "::" | "0:0:0:0:0:0:0:0")
}

/// The ensemble, or None when the configuration runs standalone. `myid_path` names the myid file
/// in messages.
pub fn build(cfg: &super::Config, myid_path: &str) -> Result<Option<Ensemble>, ConfigError> {
    check_servers(cfg)?;
    if !is_distributed(&cfg.servers, cfg.standalone_enabled) {
        return Ok(None);
    }
    let ids = || cfg.servers.iter().map(|s| s.key.as_str()).collect::<Vec<_>>().join(", ");
    let my_id = cfg.my_id.ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{myid_path} is missing: a member of an ensemble ({}) needs its server id there.",
            ids()
        ))
    })?;
    if my_id > SERVER_ID_MAX {
        return Err(ConfigError::Invalid(format!(
            "{myid_path} holds {my_id}, above the largest server id 9223372036854775806."
        )));
    }
    let servers: BTreeMap<u64, ServerLine> = cfg.servers.iter().map(|s| (s.id, s.clone())).collect();
    let Some(me) = servers.get(&my_id) else {
        return Err(ConfigError::Invalid(format!(
            "{myid_path} says this is server {my_id}, which is not in the server list ({}).",
            ids()
        )));
    };
    if let (Some(ClientAddr { host, port }), true) =
        (&me.client, cfg.client_port_given && cfg.client_port != 0)
    {
        // ZooKeeper's setupClientPort: the static clientPort(Address) must agree with this
        // server's own client address in its server line.
        let static_host = cfg.client_port_address.as_deref().filter(|h| !is_wildcard(h));
        let same = match static_host {
            None => *port == cfg.client_port,
            Some(h) => *port == cfg.client_port && host.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(h)),
        };
        if !same {
            return Err(ConfigError::Invalid(format!(
                "clientPort{} ({}) differs from the client address of this server's line {}={}: \
                 give it in one place.",
                if static_host.is_some() { "Address:clientPort" } else { "" },
                host_port(static_host.unwrap_or("0.0.0.0"), cfg.client_port),
                me.key,
                me.to_value()
            )));
        }
    }
    let q = &cfg.quorum;
    let sync_ms = cfg.tick_time_ms.saturating_mul(cfg.sync_limit);
    Ok(Some(Ensemble {
        my_id,
        servers,
        tick_time_ms: cfg.tick_time_ms,
        init_limit: cfg.init_limit,
        sync_limit: cfg.sync_limit,
        cnx_timeout_ms: q.cnx_timeout_ms,
        quorum_cnxn_timeout_ms: if q.quorum_cnxn_timeout_ms > 0 {
            q.quorum_cnxn_timeout_ms.min(u32::MAX as i64) as u32
        } else {
            sync_ms
        },
        election_port_bind_retry: q.election_port_bind_retry,
        quorum_listen_on_all_ips: q.quorum_listen_on_all_ips,
        leader_serves: q.leader_serves,
        standalone_enabled: cfg.standalone_enabled,
        reconfig_enabled: cfg.reconfig_enabled,
        digest_enabled: cfg.digest_enabled,
        commit_log_count: q.commit_log_count,
        config_version: q.config_version,
    }))
}

/// Advice ZooKeeper logs about an ensemble that still starts: a peerType the server list
/// overrides, too few or an even number of participants.
pub fn warnings(e: &Ensemble, peer_type: Option<PeerType>) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(pt) = peer_type {
        if pt != e.my_peer_type() {
            w.push(format!(
                "peerType={} differs from this server's line {}={} ({}): the server list wins.",
                pt.name(),
                e.me().key,
                e.me().to_value(),
                e.my_peer_type().name()
            ));
        }
    }
    let voters = e.voters().count();
    if voters <= 2 {
        w.push(format!(
            "{voters} participant(s): no server failure will be tolerated; an ensemble needs at least 3."
        ));
    } else if voters.is_multiple_of(2) {
        w.push(format!(
            "{voters} participants tolerate no more failures than {}: consider an odd number.",
            voters - 1
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, ConfigError, Loaded};
    use super::*;

    /// Writes `zoo` (with `dataDir` prepended) and `myid`, then loads it as `zkd serve` will.
    fn load(zoo: &str, myid: Option<&str>) -> (Result<Loaded, ConfigError>, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if let Some(id) = myid {
            std::fs::write(data.join("myid"), id).unwrap();
        }
        let cfg = d.path().join("zoo.cfg");
        std::fs::write(&cfg, format!("dataDir={}\n{zoo}", data.display())).unwrap();
        (Config::load(&cfg), d)
    }

    fn invalid(zoo: &str, myid: Option<&str>) -> String {
        match load(zoo, myid).0 {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("{zoo:?} must be refused as invalid, got {other:?}"),
        }
    }

    const THREE: &str = "tickTime=2000\ninitLimit=10\nsyncLimit=5\nclientPort=2181\n\
        server.1=zk1:2888:3888\nserver.2=zk2:2888:3888\nserver.3=zk3:2888:3888\n";

    #[test]
    fn a_three_server_ensemble_with_zookeepers_defaults() {
        let (l, _d) = load(THREE, Some("2\n"));
        let l = l.unwrap();
        let e = l.ensemble.expect("three participants are an ensemble");
        assert_eq!(e.my_id, 2);
        assert_eq!(e.servers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        let me = e.me();
        assert_eq!((me.host.as_str(), me.quorum_port, me.election_port), ("zk2", 2888, 3888));
        assert_eq!((me.quorum_addr(), me.election_addr()), ("zk2:2888".into(), "zk2:3888".into()));
        assert_eq!(e.my_peer_type(), PeerType::Participant);
        assert_eq!((e.tick_time_ms, e.init_limit, e.sync_limit), (2000, 10, 5));
        assert_eq!(e.cnx_timeout_ms, 5000, "QuorumCnxManager's default cnxTO");
        assert_eq!(e.quorum_cnxn_timeout_ms, 10_000, "tickTime x syncLimit");
        assert_eq!(e.election_port_bind_retry, 3);
        assert!(!e.quorum_listen_on_all_ips);
        assert!(e.leader_serves && e.standalone_enabled && e.digest_enabled && !e.reconfig_enabled);
        assert_eq!(e.commit_log_count, 500);
        assert_eq!(e.config_version, 0);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn every_quorum_key_is_read() {
        let zoo = "tickTime=100\ninitLimit=7\nsyncLimit=3\ncnxTimeout=250\n\
            electionPortBindRetry=0\nquorumListenOnAllIPs=true\nleaderServes=no\nstandaloneEnabled=false\n\
            zookeeper.digest.enabled=false\nzookeeper.commitLogCount=1000\nquorumCnxnTimeoutMs=777\n\
            reconfigEnabled=true\npeerType=observer\n\
            server.1=127.0.0.1:2001:3001:participant\nserver.2=127.0.0.1:2002:3002\n\
            server.3=127.0.0.1:2003:3003:observer;127.0.0.1:2183\n";
        let (l, _d) = load(zoo, Some("3"));
        let l = l.unwrap();
        let e = l.ensemble.unwrap();
        assert_eq!((e.my_id, e.my_peer_type()), (3, PeerType::Observer));
        assert_eq!(e.me().client, Some(ClientAddr { host: Some("127.0.0.1".into()), port: 2183 }));
        assert_eq!((e.tick_time_ms, e.init_limit, e.sync_limit), (100, 7, 3));
        assert_eq!((e.cnx_timeout_ms, e.quorum_cnxn_timeout_ms, e.election_port_bind_retry), (250, 777, 0));
        assert!(e.quorum_listen_on_all_ips && !e.leader_serves && !e.standalone_enabled);
        assert!(!e.digest_enabled && e.reconfig_enabled);
        assert_eq!(e.commit_log_count, 1000);
        assert_eq!(e.voters().map(|s| s.id).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(e.observers().map(|s| s.id).collect::<Vec<_>>(), vec![3]);
        // Two participants: ZooKeeper's warning; peerType agrees with the line, so no other.
        assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
        assert!(l.warnings[0].contains("no server failure will be tolerated"), "{:?}", l.warnings);
    }

    #[test]
    fn odd_values_are_taken_as_zookeeper_takes_them_with_a_warning() {
        let zoo = format!("{THREE}commitLogCount=10\nelectionPortBindRetry=-4\nleaderServes=false\n");
        let (l, _d) = load(&zoo, Some("1"));
        let l = l.unwrap();
        let e = l.ensemble.unwrap();
        assert_eq!(e.commit_log_count, 500, "raised to ZooKeeper's minimum");
        assert_eq!(e.election_port_bind_retry, 3, "negative: ZooKeeper's default");
        assert!(e.leader_serves, "only \"no\" turns leaderServes off");
        assert_eq!(l.warnings.len(), 3, "{:?}", l.warnings);
        for (w, key) in l.warnings.iter().zip(["commitLogCount", "electionPortBindRetry", "leaderServes"]) {
            assert!(w.starts_with(key), "{w}");
        }
    }

    #[test]
    fn standalone_configurations_have_no_ensemble() {
        for zoo in [
            "clientPort=2181\n",
            "clientPort=2181\nserver.1=a:2888:3888\n",
            // ZooKeeper runs a lone participant standalone while standaloneEnabled is true.
            "clientPort=2181\nstandaloneEnabled=true\nserver.5=a:2888:3888:participant\n",
        ] {
            let (l, _d) = load(zoo, None);
            assert_eq!(l.unwrap().ensemble, None, "{zoo}");
        }
        // One participant with standaloneEnabled=false is a one-server ensemble.
        let (l, _d) = load(
            "clientPort=1\ninitLimit=1\nsyncLimit=1\nstandaloneEnabled=false\nserver.5=a:1:2\n",
            Some("5"),
        );
        assert_eq!(l.unwrap().ensemble.unwrap().servers.len(), 1);
    }

    #[test]
    fn a_server_id_given_twice_is_refused() {
        let m = invalid(&format!("{THREE}server.01=zk4:2888:3888\n"), Some("1"));
        assert_eq!(m, "server.1 and server.01 both name server id 1: each server id must appear once.");
        let m = invalid(&format!("{THREE}zookeeper.server.3=zk4:2888:3888\n"), Some("1"));
        assert!(m.starts_with("server.3 and zookeeper.server.3 both name server id 3"), "{m}");
        // Refused before the myid is even looked at, and on the default (refusing) path too.
        let r = Config::parse_str(&format!("dataDir=/d\n{THREE}server.2=x:1:2\n"), Path::new("."));
        assert!(
            matches!(r, Err(ConfigError::Invalid(m)) if m.contains("server.2 and server.2 both name server id 2"))
        );
    }

    #[test]
    fn an_address_used_twice_is_refused() {
        let m = invalid(
            "initLimit=1\nsyncLimit=1\nserver.1=h:2888:3888\nserver.2=H:2888:3889\nserver.3=c:1:2\n",
            Some("1"),
        );
        assert_eq!(
            m,
            "h:2888 is the quorum address of server.1 and also the quorum address of server.2: every \
             server needs its own addresses."
        );
        let m = invalid(
            "initLimit=1\nsyncLimit=1\nserver.1=h:2888:3888\nserver.2=h:3888:4888\nserver.3=c:1:2\n",
            Some("1"),
        );
        assert!(
            m.starts_with(
                "h:3888 is the election address of server.1 and also the quorum address of server.2"
            ),
            "{m}"
        );
        let m = invalid(
            "initLimit=1\nsyncLimit=1\nserver.1=h:2888:3888;h:2181\nserver.2=h:2181:4888\nserver.3=c:1:2\n",
            Some("1"),
        );
        assert!(
            m.starts_with("h:2181 is the client address of server.1 and also the quorum address of server.2"),
            "{m}"
        );
        // One line whose two ports are equal: ZooKeeper's own check.
        let m = invalid("initLimit=1\nsyncLimit=1\nserver.1=h:2888:2888\nserver.2=i:1:2\n", Some("1"));
        assert_eq!(
            m,
            "server.1=h:2888:2888: the quorum port and the election port must differ (both are 2888)."
        );
        // The wildcard client address (`;2181`) is per machine: every server may use it.
        let (l, _d) = load(
            "initLimit=1\nsyncLimit=1\nserver.1=a:1:2;2181\nserver.2=b:1:2;2181\nserver.3=c:1:2;0.0.0.0:2181\n",
            Some("1"),
        );
        assert_eq!(l.unwrap().ensemble.unwrap().servers.len(), 3);
    }

    #[test]
    fn myid_must_exist_be_a_number_and_be_listed() {
        let (l, d) = load(THREE, None);
        let myid = d.path().join("data").join("myid");
        let Err(ConfigError::Invalid(m)) = l else { panic!("{l:?}") };
        assert_eq!(
            m,
            format!(
                "{} is missing: a member of an ensemble (server.1, server.2, server.3) needs its server id there.",
                myid.display()
            )
        );
        let (l, _d) = load(THREE, Some("two\n"));
        assert_eq!(l.unwrap_err().to_string(), "serverid two is not a number");
        let (l, d) = load(THREE, Some("4\n"));
        let myid = d.path().join("data").join("myid");
        assert_eq!(
            l.unwrap_err().to_string(),
            format!(
                "{} says this is server 4, which is not in the server list (server.1, server.2, server.3).",
                myid.display()
            )
        );
        let (l, _d) = load(THREE, Some("9223372036854775807\n"));
        assert!(l.unwrap_err().to_string().contains("above the largest server id"));
    }

    #[test]
    fn observers_need_a_quorum_of_participants() {
        let m = invalid(
            "initLimit=1\nsyncLimit=1\nserver.1=a:1:2:observer\nserver.2=b:1:2:observer\n",
            Some("1"),
        );
        assert_eq!(m, "every server.N line is an observer: observers need participants to learn from.");
        let m = invalid("initLimit=1\nsyncLimit=1\nserver.1=a:1:2\nserver.2=b:1:2:observer\n", Some("1"));
        assert!(m.starts_with("one participant and observers is not a quorum"), "{m}");
        let m = invalid("clientPort=1\nstandaloneEnabled=false\n", None);
        assert_eq!(m, "standaloneEnabled=false needs at least one participant server.N line.");
        // With standaloneEnabled=false, one participant and an observer are an ensemble.
        let (l, _d) = load(
            "initLimit=1\nsyncLimit=1\nstandaloneEnabled=false\nserver.1=a:1:2\nserver.2=b:1:2:OBSERVER\n",
            Some("2"),
        );
        assert_eq!(l.unwrap().ensemble.unwrap().my_peer_type(), PeerType::Observer);
    }

    #[test]
    fn peer_type_disagreeing_with_the_server_list_is_a_warning_and_the_list_wins() {
        let (l, _d) =
            load(&format!("{THREE}server.4=zk4:2888:3888:observer\npeerType=participant\n"), Some("4"));
        let l = l.unwrap();
        assert_eq!(l.ensemble.unwrap().my_peer_type(), PeerType::Observer);
        assert_eq!(
            l.warnings,
            vec!["peerType=participant differs from this server's line server.4=zk4:2888:3888:observer \
                  (observer): the server list wins."
                .to_string()]
        );
        let (l, _d) = load(&format!("{THREE}peerType=observer\n"), Some("1"));
        assert!(l.unwrap().warnings[0].starts_with("peerType=observer differs"));
        let (l, _d) = load(&format!("{THREE}peerType=leader\n"), Some("1"));
        assert_eq!(
            l.unwrap_err(),
            ConfigError::BadValue {
                key: "peerType".into(),
                value: "leader".into(),
                expected: "participant or observer"
            }
        );
    }

    #[test]
    fn an_ensemble_needs_init_and_sync_limits() {
        let m = invalid("server.1=a:1:2\nserver.2=b:1:2\nsyncLimit=5\n", Some("1"));
        assert!(m.starts_with("initLimit is not set"), "{m}");
        let m = invalid("server.1=a:1:2\nserver.2=b:1:2\ninitLimit=5\n", Some("1"));
        assert!(m.starts_with("syncLimit is not set"), "{m}");
    }

    #[test]
    fn the_static_client_address_must_agree_with_the_server_line() {
        let lines = "initLimit=1\nsyncLimit=1\nserver.1=a:1:2;2181\nserver.2=b:1:2;127.0.0.1:2182\n";
        let (l, _d) = load(&format!("clientPort=2181\n{lines}"), Some("1"));
        assert!(l.is_ok(), "{l:?}");
        let m = invalid(&format!("clientPort=2999\n{lines}"), Some("1"));
        assert_eq!(
            m,
            "clientPort (0.0.0.0:2999) differs from the client address of this server's line \
             server.1=a:1:2:participant;0.0.0.0:2181: give it in one place."
        );
        let m = invalid(&format!("clientPort=2182\nclientPortAddress=127.0.0.2\n{lines}"), Some("2"));
        assert!(m.starts_with("clientPortAddress:clientPort (127.0.0.2:2182) differs"), "{m}");
        let (l, _d) = load(&format!("clientPort=2182\nclientPortAddress=127.0.0.1\n{lines}"), Some("2"));
        assert!(l.is_ok(), "{l:?}");
    }

    #[test]
    fn server_line_forms() {
        let p = |v: &str| parse_server_line("server.9", v);
        let s = p("[::1]:2888:3888:observer;[::1]:2181").unwrap();
        assert_eq!(
            (s.host.as_str(), s.quorum_port, s.election_port, s.peer_type),
            ("::1", 2888, 3888, PeerType::Observer)
        );
        assert_eq!(s.client, Some(ClientAddr { host: Some("::1".into()), port: 2181 }));
        assert_eq!(s.election_addr(), "[::1]:3888");
        assert_eq!(s.to_value(), "[::1]:2888:3888:observer;[::1]:2181");
        assert_eq!(p("h:1:2:Participant;2181").unwrap().client, Some(ClientAddr { host: None, port: 2181 }));
        for bad in [
            "h:1",
            "h:1:2:3:4",
            ":1:2",
            "h:1:x",
            "h:1:70000",
            "h:1:2:leader",
            "h:1:2;a:b:c",
            "h:1:2;1;2",
            "[::1:1:2",
        ] {
            assert!(
                matches!(p(bad), Err(ConfigError::BadValue { ref key, .. }) if key == "server.9"),
                "{bad}: {:?}",
                p(bad)
            );
        }
        let m = p("a:1:2|b:1:2").unwrap_err().to_string();
        assert!(m.contains("lists several addresses for one server"), "{m}");
        assert!(parse_server_line("server.9223372036854775807", "h:1:2").is_err());
        assert!(parse_server_line("server.x", "h:1:2").is_err());
        let r = Config::parse_str("dataDir=/d\nclientPort=1\nelectionAlg=1\n", Path::new("."));
        assert!(matches!(r, Err(ConfigError::BadValue { key, .. }) if key == "electionAlg"));
    }

    #[test]
    fn hierarchical_quorums_are_refused() {
        let (l, _d) = load(&format!("{THREE}group.1=1:2:3\nweight.1=1\n"), Some("1"));
        let Err(ConfigError::Unsupported(s)) = l else { panic!("{l:?}") };
        assert!(s[0].starts_with("group.1, weight.1 configure hierarchical quorums"), "{s:?}");
    }

    #[test]
    fn a_dynamic_config_file_gives_the_same_ensemble() {
        let statics = "tickTime=2000\ninitLimit=10\nsyncLimit=5\nclientPort=2181\n";
        let lines = "server.1=zk1:2888:3888:participant;2181\nserver.2=zk2:2888:3888;2181\nserver.3=zk3:2888:3888:observer;2181\n";
        let (inline, _d1) = load(&format!("{statics}{lines}"), Some("2"));
        let inline = inline.unwrap().ensemble.unwrap();

        let d = tempfile::tempdir().unwrap();
        let dynamic = d.path().join("zoo.cfg.dynamic.100000000");
        std::fs::write(&dynamic, lines).unwrap();
        let (l, _d2) = load(&format!("{statics}dynamicConfigFile={}\n", dynamic.display()), Some("2"));
        let from_file = l.unwrap().ensemble.unwrap();
        assert_eq!(from_file.config_version, 0x1_0000_0000, "the version is the file name's hex suffix");
        assert_eq!(Ensemble { config_version: 0, ..from_file.clone() }, inline);

        // ZooKeeper's rules for the dynamic file: no version key, nothing but server lines, and
        // no server lines left in zoo.cfg.
        std::fs::write(&dynamic, format!("{lines}version=100000000\n")).unwrap();
        let m = invalid(&format!("{statics}dynamicConfigFile={}\n", dynamic.display()), Some("2"));
        assert!(m.ends_with("has a version key: a dynamic config file takes its version from its name (zoo.cfg.dynamic.<hex version>)."), "{m}");
        std::fs::write(&dynamic, format!("{lines}tickTime=1\n")).unwrap();
        let m = invalid(&format!("{statics}dynamicConfigFile={}\n", dynamic.display()), Some("2"));
        assert!(m.ends_with("has the key tickTime: a dynamic config file holds only server.N lines."), "{m}");
        std::fs::write(&dynamic, lines).unwrap();
        let m = invalid(
            &format!("{statics}server.1=zk1:2888:3888\ndynamicConfigFile={}\n", dynamic.display()),
            Some("2"),
        );
        assert!(m.starts_with("server.1 is in zoo.cfg although dynamicConfigFile="), "{m}");
        assert_eq!(version_from_filename("zoo.cfg.dynamic"), None);
        assert_eq!(version_from_filename("zoo.cfg.dynamic.0"), Some(0));
    }
}
