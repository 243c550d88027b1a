//! A 3-node zkd ensemble on loopback (`zkd serve --config` processes), seen through its
//! operations surface as ZooKeeper 3.8's tools see an ensemble: `srvr` names one leader and two
//! followers, the leader's `mntr` its peer state and learners, the AdminServer's `leader` and
//! `voting_view` the leader and the server lines, Prometheus the peer state, and `zkd election
//! status` the leader. Then the leader is killed with SIGKILL: a new leader appears, and a
//! survivor's `zkd election status` shows the dead server unreachable.
//!
//! Ports: each server's client port is the kernel's choice (clientPort=0, read back from
//! `--port-file`). The quorum, election, AdminServer and metrics ports must be written into all
//! three configurations before any server starts, so each is held (bound with SO_REUSEADDR, never
//! listened on: `common::hold_port`) for the whole test; zkd binds its listeners with SO_REUSEADDR
//! beside the hold. Should a start still fail on a taken port (a process binding that very port
//! explicitly), the whole ensemble starts again on new ports.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTS_MAX: usize = 3;
const DEADLINE: Duration = Duration::from_secs(60);

struct Node {
    id: u64,
    cfg: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: Option<u16>,
    admin: u16,
    metrics: u16,
}

struct Ensemble {
    nodes: Vec<Node>,
    _holds: Vec<common::PortHold>,
    _dir: tempfile::TempDir,
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Why a start did not come up: a port was taken (start again) or anything else (fail).
enum StartFailure {
    PortTaken(String),
    Other(String),
}

fn logs(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| format!("--- server {} ---\n{}", n.id, std::fs::read_to_string(&n.log).unwrap_or_default()))
        .collect()
}

fn port_taken(log: &str) -> bool {
    log.contains("Address already in use")
        || log.contains("Problem starting AdminServer")
        || log.contains("cannot serve Prometheus metrics")
}

impl Ensemble {
    /// Writes three configurations with held ports and starts the servers.
    fn start() -> Result<Ensemble, StartFailure> {
        let dir = tempfile::tempdir().unwrap();
        let mut holds = Vec::new();
        let mut hold = || {
            let h = common::hold_port();
            let p = h.port;
            holds.push(h);
            p
        };
        let ports: Vec<[u16; 4]> = (0..3).map(|_| [hold(), hold(), hold(), hold()]).collect();
        let servers: String =
            (0..3).map(|i| format!("server.{}=127.0.0.1:{}:{}\n", i + 1, ports[i][0], ports[i][1])).collect();
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let data = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(data.join("myid"), format!("{id}\n")).unwrap();
            let text = format!(
                "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
                 4lw.commands.whitelist=*\nadmin.enableServer=true\nadmin.serverAddress=127.0.0.1\n\
                 admin.serverPort={}\nmetricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
                 metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort={}\n{servers}",
                data.display(),
                p[2],
                p[3]
            );
            let cfg = data.join("zoo.cfg");
            std::fs::write(&cfg, text).unwrap();
            nodes.push(Node {
                id,
                cfg,
                log: data.join("zkd.log"),
                child: None,
                client: None,
                admin: p[2],
                metrics: p[3],
            });
        }
        let mut e = Ensemble { nodes, _holds: holds, _dir: dir };
        for n in &mut e.nodes {
            let log = std::fs::File::create(&n.log).unwrap();
            let port_file = n.cfg.parent().unwrap().join("zkd.port");
            let child = Command::new(env!("CARGO_BIN_EXE_zkd"))
                .args(["serve", "--shards", "1", "--config"])
                .arg(&n.cfg)
                .arg("--port-file")
                .arg(&port_file)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            n.child = Some(child);
        }
        // Every server up (its port file written), or the reason one is not.
        let deadline = Instant::now() + DEADLINE;
        loop {
            e.check_alive()?;
            for n in &mut e.nodes {
                let port_file = n.cfg.parent().unwrap().join("zkd.port");
                if n.client.is_none() {
                    n.client = std::fs::read_to_string(&port_file).ok().and_then(|t| t.trim().parse().ok());
                }
            }
            if e.nodes.iter().all(|n| n.client.is_some()) {
                return Ok(e);
            }
            if Instant::now() > deadline {
                return Err(StartFailure::Other(format!(
                    "the servers wrote no port files within {DEADLINE:?}\n{}",
                    logs(&e.nodes)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every server not killed on purpose still runs, and no listener lost its port.
    fn check_alive(&mut self) -> Result<(), StartFailure> {
        for n in &mut self.nodes {
            let exited = match n.child.as_mut() {
                Some(c) => c.try_wait().unwrap(),
                None => continue,
            };
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            if port_taken(&log) {
                return Err(StartFailure::PortTaken(format!("server {}: {}", n.id, log)));
            }
            if let Some(status) = exited {
                let id = n.id;
                return Err(StartFailure::Other(format!(
                    "server {id} exited ({status})\n{}",
                    logs(&self.nodes)
                )));
            }
        }
        Ok(())
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[id as usize - 1]
    }

    fn word(&self, id: u64, w: &str) -> String {
        let n = self.node(id);
        zkd::admin::remote::four_letter(
            &format!("127.0.0.1:{}", n.client.unwrap()),
            w,
            Duration::from_secs(10),
        )
        .unwrap_or_default()
    }

    fn mode(&self, id: u64) -> Option<String> {
        let srvr = self.word(id, "srvr");
        srvr.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_owned)
    }

    fn http(&self, port: u16, path: &str) -> String {
        zkd::admin::remote::http_get(&format!("127.0.0.1:{port}"), path, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET {path} on {port}: {e}\n{}", logs(&self.nodes)))
    }

    fn command(&self, id: u64, name: &str) -> serde_json::Value {
        let body = self.http(self.node(id).admin, &format!("/commands/{name}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"))
    }

    /// Waits until `servers` report exactly one leader and the rest followers through `srvr`;
    /// the leader's id.
    fn wait_for_leader(&mut self, servers: &[u64]) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Err(StartFailure::Other(why) | StartFailure::PortTaken(why)) = self.check_alive() {
                panic!("{why}");
            }
            let modes: Vec<(u64, Option<String>)> = servers.iter().map(|&s| (s, self.mode(s))).collect();
            let leaders: Vec<u64> =
                modes.iter().filter(|(_, m)| m.as_deref() == Some("leader")).map(|(s, _)| *s).collect();
            let followers = modes.iter().filter(|(_, m)| m.as_deref() == Some("follower")).count();
            if leaders.len() == 1 && followers == servers.len() - 1 {
                return leaders[0];
            }
            if Instant::now() > deadline {
                panic!(
                    "no leader with {} followers within {DEADLINE:?}: {modes:?}\n{}",
                    servers.len() - 1,
                    logs(&self.nodes)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `word` on `id` satisfies `ok`; its last answer.
    fn wait_for_word(&self, id: u64, word: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.word(id, word);
            if ok(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "{word} on server {id} never became what was expected:\n{text}\n{}",
                    logs(&self.nodes)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, id: u64) {
        let mut c = self.nodes[id as usize - 1].child.take().unwrap();
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }
}

/// `zkd election status` with these arguments: (exit status, stdout, stderr).
fn election_status(args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zkd"))
        .args(["election", "status"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (c.wait().unwrap().code().unwrap_or(-1), out, err)
}

fn mntr_value(mntr: &str, key: &str) -> Option<String> {
    mntr.lines().find_map(|l| l.strip_prefix(&format!("{key}\t")).map(str::to_owned))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_ensemble_reports_its_leader_and_a_new_one_after_the_leader_is_killed() {
    let mut e = None;
    for attempt in 1..=STARTS_MAX {
        match Ensemble::start() {
            Ok(x) => {
                e = Some(x);
                break;
            }
            Err(StartFailure::PortTaken(why)) if attempt < STARTS_MAX => {
                eprintln!("start {attempt}: a port was taken, starting again on new ports: {why}");
            }
            Err(StartFailure::PortTaken(why) | StartFailure::Other(why)) => panic!("{why}"),
        }
    }
    let mut e = e.unwrap();

    // One leader, two followers, through srvr.
    let leader = e.wait_for_leader(&[1, 2, 3]);
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|s| *s != leader).collect();

    // The leader's mntr: its peer state, its learners, both followers synced.
    let mntr =
        e.wait_for_word(leader, "mntr", |m| mntr_value(m, "zk_synced_followers").as_deref() == Some("2"));
    assert_eq!(mntr_value(&mntr, "zk_server_state").as_deref(), Some("leader"), "{mntr}");
    assert_eq!(mntr_value(&mntr, "zk_peer_state").as_deref(), Some("leading - broadcast"), "{mntr}");
    // ZooKeeper 3.8 calls the followers gauge `learners` (3.4 printed zk_followers).
    assert_eq!(mntr_value(&mntr, "zk_learners").as_deref(), Some("2"), "{mntr}");
    assert_eq!(mntr_value(&mntr, "zk_synced_observers").as_deref(), Some("0"), "{mntr}");
    assert_eq!(mntr_value(&mntr, "zk_quorum_size").as_deref(), Some("3"), "{mntr}");
    assert_eq!(mntr_value(&mntr, "zk_cnt_election_time").as_deref(), Some("1"), "{mntr}");
    for f in &followers {
        let m = e.word(*f, "mntr");
        assert_eq!(mntr_value(&m, "zk_peer_state").as_deref(), Some("following - broadcast"), "{m}");
        assert_eq!(mntr_value(&m, "zk_learners"), None, "only the leader has learners: {m}");
    }
    let conf = e.word(leader, "conf");
    assert!(
        conf.contains("\nelectionAlg=3\n") && conf.contains("\nmembership: \nserver.1=127.0.0.1:"),
        "{conf}"
    );

    // The AdminServer, on every server: who leads, and the voting view.
    for id in [1, 2, 3] {
        let l = e.command(id, "leader");
        assert_eq!(l["is_leader"], id == leader, "server {id}: {l}");
        assert_eq!(l["leader_id"], leader, "server {id}: {l}");
        assert_eq!(l["leader_ip"], "127.0.0.1", "server {id}: {l}");
        assert_eq!(l["error"], serde_json::Value::Null);
        let v = e.command(id, "voting_view");
        let view = v["current_config"].as_object().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(view.keys().collect::<Vec<_>>(), ["1", "2", "3"]);
        for (sid, s) in view {
            assert_eq!(s["learner_type"], "participant");
            let quorum = s["server_addresses"][0].as_str().unwrap();
            let cfg = std::fs::read_to_string(&e.node(id).cfg).unwrap();
            assert!(
                cfg.contains(&format!("server.{sid}={quorum}:")),
                "{quorum} is not server.{sid}'s in\n{cfg}"
            );
        }
        let z = e.command(id, "zabstate");
        assert_eq!(z["zabstate"], "broadcast", "server {id}: {z}");
        assert_eq!(z["is_leader"], id == leader);
    }
    let metrics = e.http(e.node(leader).metrics, "/metrics");
    for line in ["zkd_peer_state{state=\"leading\"} 1", "learners 2.0", "quorum_size 3.0"] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} missing from\n{metrics}");
    }

    // zkd election status, from a follower's zoo.cfg and from the leader's AdminServer.
    let f = followers[0];
    let (code, out, err) = election_status(&["--config", path_str(&e.node(f).cfg)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("leader: {leader}; following - broadcast, serving for ")), "{out}");
    assert!(out.contains(&format!("server {f} (participant): FOLLOWING, round ")), "{out}");
    let admin = format!("127.0.0.1:{}", e.node(leader).admin);
    let (code, out, err) = election_status(&["--server", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("leader: {leader} (this server); leading - broadcast")), "{out}");

    // SIGKILL the leader: the survivors elect a new one.
    e.kill(leader);
    let new_leader = e.wait_for_leader(&followers);
    assert_ne!(new_leader, leader);
    let survivor = followers.iter().copied().find(|s| *s != new_leader).unwrap();
    for id in [new_leader, survivor] {
        let admin = format!("127.0.0.1:{}", e.node(id).admin);
        let (code, out, err) = election_status(&["--server", &admin]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with(&format!("leader: {new_leader}")), "{out}");
        assert!(
            out.contains("\nlast election: round ") && out.contains(&format!(" with leader {new_leader})\n")),
            "{out}"
        );
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{leader} ")))
            .unwrap_or_else(|| panic!("no row for the dead server {leader}:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..3], ["participant", "down"], "the dead server is unreachable: {row}\n{out}");
    }
    let mntr =
        e.wait_for_word(new_leader, "mntr", |m| mntr_value(m, "zk_synced_followers").as_deref() == Some("1"));
    // At least the first election and the one after the kill; every LOOKING ended in a decision.
    // (More when a server decided for a leader that was not leading and looked again.)
    let lookings: u64 = mntr_value(&mntr, "zk_looking_count").unwrap().parse().unwrap();
    assert!(lookings >= 2, "{mntr}");
    assert_eq!(mntr_value(&mntr, "zk_cnt_election_time"), Some(lookings.to_string()), "{mntr}");
    let j = e.command(survivor, "election");
    assert_eq!(j["leader"], new_leader);
    let dead = j["election"]["peers"].as_array().unwrap().iter().find(|p| p["sid"] == leader).cloned();
    assert_eq!(dead.map(|p| p["reachable"].clone()), Some(serde_json::Value::Bool(false)), "{j}");
}
