//! The operations surface of an ensemble member, on hand-made quorum statuses, against what a
//! ZooKeeper 3.8 ensemble printed (captured from three `QuorumPeerMain`s on loopback, servers 1-3
//! with the ports below; server 3 led).

use std::sync::Arc;

use super::json::J;
use super::*;
use crate::quorum::election::ElectionStatus;
use crate::quorum::peer::{Decision, Role};
use crate::quorum::status::{LeaderStatus, LearnerSide, LearnerStatus, QuorumStatus, StatusBoard, ZabState};
use crate::quorum::{LearnerType, PeerState};

const CLIENT: [u16; 3] = [36557, 45381, 40635];
const QUORUM: [u16; 3] = [39671, 34381, 40743];
const ELECTION: [u16; 3] = [45665, 38355, 43597];

/// Server `me`'s OpsState, with `status` on its board (None: nothing published).
fn ops(me: u64, status: Option<QuorumStatus>, dir: &std::path::Path) -> Arc<OpsState> {
    let mut text = format!(
        "tickTime=200\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n",
        dir.display(),
        CLIENT[me as usize - 1]
    );
    for i in 0..3 {
        text += &format!("server.{}=127.0.0.1:{}:{}\n", i + 1, QUORUM[i], ELECTION[i]);
    }
    let (mut cfg, _) = Config::parse_str(&text, dir).unwrap();
    cfg.my_id = Some(me);
    let settings = Arc::new(crate::server::settings_from(&cfg).unwrap());
    let (tx, _) = crossbeam_channel::bounded(1);
    let board = Arc::new(StatusBoard::default());
    if let Some(s) = status {
        board.publish(s);
    }
    let client = format!("127.0.0.1:{}", CLIENT[me as usize - 1]).parse().unwrap();
    OpsState::new(
        &cfg,
        settings,
        Arc::new(DataTree::new()),
        Arc::new(Metrics::new(1)),
        Arc::new(ConnLimits::default()),
        ReplicaTx::new(tx, None),
        None,
        board,
        client,
    )
}

fn learner(sid: i64, typ: LearnerType, up_to_date: bool) -> LearnerStatus {
    LearnerStatus {
        sid,
        learner_type: typ,
        voter: typ == LearnerType::Participant,
        waiting_for: if up_to_date { "broadcast" } else { "synchronisation (waiting for the NEWLEADER ACK)" },
        forwarding: true,
        up_to_date,
        last_heard_ago_ms: 40,
        last_ack_zxid: 0x1_0000_0002,
        pings_sent: 9,
        pings_answered: 9,
    }
}

/// Server `me` of servers 1-3 (server 3 leads) in `state`, serving when in broadcast.
fn status(me: i64, state: PeerState, zab: ZabState) -> QuorumStatus {
    let serving = (zab == ZabState::Broadcast).then(|| match state {
        PeerState::Leading => Role::Leader,
        PeerState::Following => Role::Follower,
        PeerState::Observing => Role::Observer,
        PeerState::Looking => unreachable!("a looking server does not serve"),
    });
    let leading = state == PeerState::Leading;
    // Built "later" than any read in these tests: readers age a status by the time since it was
    // built (`QuorumStatus::at`), and these figures must read as given.
    let at_ms = crate::clock::mono_ms() as u64 + 3_600_000;
    QuorumStatus {
        at_ms,
        my_id: me,
        standalone: false,
        learner_type: LearnerType::Participant,
        state,
        zab_state: zab,
        sync_mode: None,
        leader: (state != PeerState::Looking).then_some(3),
        serving,
        serving_for_ms: serving.map(|_| 1282),
        accepted_epoch: 1,
        current_epoch: 1,
        last_zxid: 0x1_0000_0002,
        voters: vec![1, 2, 3],
        observers: vec![],
        election: None::<ElectionStatus>,
        last_election: Some(Decision { leader: 3, state, duration_ms: 440, round: 1, at_ms: at_ms - 2_000 }),
        lookings: 1,
        leader_side: leading.then(|| LeaderStatus {
            learners: vec![
                learner(1, LearnerType::Participant, true),
                learner(2, LearnerType::Participant, true),
            ],
            pending_syncs: 0,
            outstanding_proposals: 0,
            last_proposed: 0x1_0000_0002,
            proposal_sizes: (48, 36, 60),
        }),
        learner_side: (!leading && state != PeerState::Looking)
            .then_some(LearnerSide { leader_heard_ago_ms: Some(30) }),
        config_mismatches: vec![],
    }
}

fn looking(me: i64) -> QuorumStatus {
    QuorumStatus { last_election: None, lookings: 2, ..status(me, PeerState::Looking, ZabState::Election) }
}

#[test]
fn srvr_and_stat_say_the_role_served_and_nothing_while_not_serving() {
    let d = tempfile::tempdir().unwrap();
    let leader = ops(3, Some(status(3, PeerState::Leading, ZabState::Broadcast)), d.path());
    let srvr = words::run(&leader, "srvr");
    assert!(srvr.contains("\nMode: leader\nNode count: "), "{srvr}");
    assert!(srvr.ends_with("\nProposal sizes last/min/max: 48/36/60\n"), "{srvr}");
    assert!(words::run(&leader, "stat").contains("\nMode: leader\n"));
    let follower = ops(1, Some(status(1, PeerState::Following, ZabState::Broadcast)), d.path());
    let srvr = words::run(&follower, "srvr");
    assert!(srvr.ends_with("\nMode: follower\nNode count: 5\n"), "{srvr}");
    let not = "This ZooKeeper instance is not currently serving requests\n";
    for s in [looking(1), status(1, PeerState::Following, ZabState::Synchronization)] {
        let o = ops(1, Some(s), d.path());
        for w in ["srvr", "stat", "mntr", "conf", "cons", "dump", "wchs", "dirs", "srst", "crst"] {
            assert_eq!(words::run(&o, w), not, "{w}");
        }
        assert_eq!(words::run(&o, "hash"), not.trim_end());
        assert_eq!(words::run(&o, "isro"), "null");
        assert_eq!(words::run(&o, "ruok"), "imok");
        assert!(words::run(&o, "envi").starts_with("Environment:\n"));
        assert!(words::run(&o, "elec").starts_with("leader: "));
    }
    assert_eq!(words::run(&follower, "isro"), "rw");
}

#[test]
fn mntr_prints_the_quorum_keys_where_zookeeper_does() {
    // The keys of a ZooKeeper 3.8 leader's and follower's mntr up to quorum_size.
    const LEADER: &[&str] = &[
        "version",
        "server_state",
        "peer_state",
        "ephemerals_count",
        "num_alive_connections",
        "avg_latency",
        "min_proposal_size",
        "outstanding_requests",
        "znode_count",
        "global_sessions",
        "non_mtls_remote_conn_count",
        "last_client_response_size",
        "packets_sent",
        "packets_received",
        "max_proposal_size",
        "max_client_response_size",
        "synced_followers",
        "connection_drop_probability",
        "watch_count",
        "synced_non_voting_followers",
        "synced_observers",
        "auth_failed_count",
        "min_latency",
        "max_file_descriptor_count",
        "approximate_data_size",
        "open_file_descriptor_count",
        "last_proposal_size",
        "pending_syncs",
        "leader_uptime",
        "local_sessions",
        "uptime",
        "max_latency",
        "outstanding_tls_handshake",
        "learners",
        "min_client_response_size",
        "non_mtls_local_conn_count",
        "quorum_size",
    ];
    let d = tempfile::tempdir().unwrap();
    let o = ops(3, Some(status(3, PeerState::Leading, ZabState::Broadcast)), d.path());
    let m = words::monitor(&o);
    let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).take(LEADER.len()).collect();
    assert_eq!(keys, LEADER);
    let get = |m: &[(String, String)], k: &str| m.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    for (k, v) in [
        ("server_state", "leader"),
        ("peer_state", "leading - broadcast"),
        ("learners", "2"),
        ("synced_followers", "2"),
        ("synced_non_voting_followers", "0"),
        ("synced_observers", "0"),
        ("pending_syncs", "0"),
        ("leader_uptime", "1282"),
        ("last_proposal_size", "48"),
        ("min_proposal_size", "36"),
        ("max_proposal_size", "60"),
        ("quorum_size", "3"),
        ("looking_count", "1"),
        ("cnt_election_time", "0"),
    ] {
        assert_eq!(get(&m, k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(get(&m, "proposal_count"), None, "zkd does not count proposals one by one");
    let text = words::run(&o, "mntr");
    assert!(text.contains("\nzk_peer_state\tleading - broadcast\n"), "{text}");

    o.quorum.record_election(440);
    o.quorum.record_sync(false);
    let m = words::monitor(&o);
    assert_eq!(get(&m, "cnt_election_time").as_deref(), Some("1"));
    assert_eq!(get(&m, "max_election_time").as_deref(), Some("440"));
    assert_eq!(get(&m, "diff_count").as_deref(), Some("1"));

    // A follower: no leader gauges, the rest in the same order.
    let o = ops(1, Some(status(1, PeerState::Following, ZabState::Broadcast)), d.path());
    let m = words::monitor(&o);
    let want: Vec<&str> = LEADER
        .iter()
        .copied()
        .filter(|k| {
            !k.contains("proposal_size")
                && !k.starts_with("synced_")
                && !["pending_syncs", "leader_uptime", "learners"].contains(k)
        })
        .collect();
    let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).take(want.len()).collect();
    assert_eq!(keys, want);
    assert_eq!(get(&m, "peer_state").as_deref(), Some("following - broadcast"));

    // Standalone stays as it was: no quorum keys.
    let server = crate::quorum::peer::Peer::new(
        crate::quorum::peer::PeerConfig {
            zab: crate::quorum::zab::ZabConfig {
                my_id: 0,
                tick_ms: 200,
                init_limit: 10,
                sync_limit: 5,
                commit_log_count: 500,
                epoch_counter_start: 0,
            },
            members: crate::quorum::Members::new([0], []),
            standalone: true,
            election: Default::default(),
            announced_config: None,
        },
        crate::quorum::peer::PeerInit { accepted_epoch: 0, current_epoch: 0, last_zxid: 0, log_tail: vec![] },
        0,
    )
    .unwrap()
    .0;
    let s = QuorumStatus::of(&server, 5);
    let (cfg, _) =
        Config::parse_str(&format!("dataDir={}\nclientPort=2181\n", d.path().display()), d.path()).unwrap();
    let board = Arc::new(StatusBoard::default());
    board.publish(s);
    let (tx, _) = crossbeam_channel::bounded(1);
    let o = OpsState::new(
        &cfg,
        Arc::new(crate::server::settings_from(&cfg).unwrap()),
        Arc::new(DataTree::new()),
        Arc::new(Metrics::new(1)),
        Arc::new(ConnLimits::default()),
        ReplicaTx::new(tx, None),
        None,
        board,
        "127.0.0.1:2181".parse().unwrap(),
    );
    let m = words::monitor(&o);
    assert_eq!(get(&m, "server_state").as_deref(), Some("standalone"));
    assert_eq!(get(&m, "peer_state"), None);
    assert_eq!(get(&m, "proposal_count").as_deref(), Some("0"));
    assert!(words::run(&o, "srvr").contains("\nMode: standalone\n"));
    assert!(!words::run(&o, "conf").contains("initLimit"));
}

#[test]
fn conf_ends_with_the_quorum_lines_zookeeper_prints() {
    let d = tempfile::tempdir().unwrap();
    let o = ops(3, Some(status(3, PeerState::Leading, ZabState::Broadcast)), d.path());
    let conf = words::run(&o, "conf");
    let want = "\nserverId=3\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=43597\nquorumPort=40743\n\
                peerType=0\nmembership: \nserver.1=127.0.0.1:39671:45665:participant\n\
                server.2=127.0.0.1:34381:38355:participant\nserver.3=127.0.0.1:40743:43597:participant\nversion=0";
    assert!(conf.ends_with(want), "{conf}");
    assert!(conf.starts_with("clientPort=40635\nsecureClientPort=-1\n"), "{conf}");
}

#[test]
fn admin_commands_match_zookeepers_json() {
    let d = tempfile::tempdir().unwrap();
    let run = |o: &OpsState, c: &str| json::pretty(&json::run(o, c, ""));
    let leader = ops(3, Some(status(3, PeerState::Leading, ZabState::Broadcast)), d.path());
    assert_eq!(
        run(&leader, "leader"),
        "{\n  \"is_leader\" : true,\n  \"leader_id\" : 3,\n  \"leader_ip\" : \"127.0.0.1\",\n  \"command\" : \"leader\",\n  \"error\" : null\n}"
    );
    assert_eq!(run(&leader, "voting_view"), "{\n  \"current_config\" : {\n    \"1\" : {\n      \"server_addresses\" : [ \"127.0.0.1:39671\" ],\n      \"election_addresses\" : [ \"127.0.0.1:45665\" ],\n      \"client_address\" : \"\",\n      \"learner_type\" : \"participant\"\n    },\n    \"2\" : {\n      \"server_addresses\" : [ \"127.0.0.1:34381\" ],\n      \"election_addresses\" : [ \"127.0.0.1:38355\" ],\n      \"client_address\" : \"\",\n      \"learner_type\" : \"participant\"\n    },\n    \"3\" : {\n      \"server_addresses\" : [ \"127.0.0.1:40743\" ],\n      \"election_addresses\" : [ \"127.0.0.1:43597\" ],\n      \"client_address\" : \"127.0.0.1:40635\",\n      \"learner_type\" : \"participant\"\n    }\n  },\n  \"command\" : \"voting_view\",\n  \"error\" : null\n}");
    let srvr = run(&leader, "srvr");
    assert!(srvr.contains("\"server_state\" : \"leader\""), "{srvr}");
    assert!(
        srvr.contains("\"proposal_stats\" : {\n    \"last_buffer_size\" : 48,\n    \"min_buffer_size\" : 36,\n    \"max_buffer_size\" : 60\n  },\n  \"node_count\" : 5,"),
        "{srvr}"
    );
    assert!(run(&leader, "stat").contains("\"server_state\" : \"leader\""));
    assert_eq!(
        run(&leader, "observers"),
        "{\n  \"synced_observers\" : 0,\n  \"observers\" : [ ],\n  \"command\" : \"observers\",\n  \"error\" : null\n}"
    );

    let follower = ops(1, Some(status(1, PeerState::Following, ZabState::Broadcast)), d.path());
    assert_eq!(
        run(&follower, "leader"),
        "{\n  \"is_leader\" : false,\n  \"leader_id\" : 3,\n  \"leader_ip\" : \"127.0.0.1\",\n  \"command\" : \"leader\",\n  \"error\" : null\n}"
    );
    assert_eq!(run(&follower, "zabstate"), "{\n  \"myid\" : 1,\n  \"is_leader\" : false,\n  \"quorum_address\" : {\n    \"empty\" : false,\n    \"all_addresses\" : [ \"127.0.0.1:39671\" ],\n    \"all_reachable_addresses\" : [ \"127.0.0.1:39671\" ],\n    \"one\" : \"127.0.0.1:39671\",\n    \"reachable_address\" : \"127.0.0.1:39671\",\n    \"wildcard_addresses\" : [ \"0.0.0.0:39671\" ],\n    \"all_ports\" : [ 39671 ],\n    \"all_host_strings\" : [ \"127.0.0.1\" ],\n    \"all_reachable_addresses_or_all\" : [ \"127.0.0.1:39671\" ],\n    \"reachable_or_one\" : \"127.0.0.1:39671\"\n  },\n  \"election_address\" : {\n    \"empty\" : false,\n    \"all_addresses\" : [ \"127.0.0.1:45665\" ],\n    \"all_reachable_addresses\" : [ \"127.0.0.1:45665\" ],\n    \"one\" : \"127.0.0.1:45665\",\n    \"reachable_address\" : \"127.0.0.1:45665\",\n    \"wildcard_addresses\" : [ \"0.0.0.0:45665\" ],\n    \"all_ports\" : [ 45665 ],\n    \"all_host_strings\" : [ \"127.0.0.1\" ],\n    \"all_reachable_addresses_or_all\" : [ \"127.0.0.1:45665\" ],\n    \"reachable_or_one\" : \"127.0.0.1:45665\"\n  },\n  \"client_address\" : \"127.0.0.1:36557\",\n  \"voting\" : true,\n  \"last_zxid\" : \"0x0\",\n  \"zab_epoch\" : 0,\n  \"zab_counter\" : 0,\n  \"zabstate\" : \"broadcast\",\n  \"command\" : \"zabstate\",\n  \"error\" : null\n}");

    // Not serving: ZooKeeper's error for commands that need a server; zabstate and monitor answer.
    let o = ops(1, Some(looking(1)), d.path());
    assert_eq!(
        run(&o, "lead"),
        "{\n  \"command\" : \"lead\",\n  \"error\" : \"This ZooKeeper instance is not currently serving requests\"\n}"
    );
    assert!(run(&o, "zabstate").contains("\"zabstate\" : \"election\""));
    let m = run(&o, "monitor");
    assert!(m.contains("\"server_state\" : \"looking\",\n  \"peer_state\" : \"looking\""), "{m}");
    let e = json::run(&o, "election", "");
    let J::Obj(fields) = &e else { panic!() };
    let text = fields.iter().find(|(k, _)| k == "text").map(|(_, v)| v.clone());
    assert_eq!(text, Some(J::Str(looking(1).election_report())));
}

#[test]
fn prometheus_exports_the_quorum_gauges_and_election_metrics() {
    let d = tempfile::tempdir().unwrap();
    let o = ops(3, Some(status(3, PeerState::Leading, ZabState::Broadcast)), d.path());
    o.quorum.record_election(240);
    o.quorum.record_election(3_000);
    let text = prom::render(&o);
    for line in [
        "quorum_size 3.0",
        "learners 2.0",
        "synced_followers 2.0",
        "synced_observers 0.0",
        "pending_syncs 0.0",
        "leader_uptime 1282.0",
        "looking_count 1.0",
        "election_time{quantile=\"0.5\"} 240.0",
        "election_time_count 2.0",
        "zkd_peer_state{state=\"leading\"} 1",
        "zkd_peer_state{state=\"looking\"} 0",
        "zkd_zab_state{state=\"broadcast\"} 1",
        "zkd_election_info{round=\"0\",state=\"leading\",leader=\"3\"} 1",
        "zkd_election_duration_seconds_bucket{le=\"0.25\"} 1",
        "zkd_election_duration_seconds_bucket{le=\"2.5\"} 1",
        "zkd_election_duration_seconds_bucket{le=\"5.0\"} 2",
        "zkd_election_duration_seconds_bucket{le=\"+Inf\"} 2",
        "zkd_election_duration_seconds_count 2",
        "zkd_learner_up_to_date{sid=\"1\",type=\"participant\"} 1",
        "zkd_learner_last_heard_seconds{sid=\"2\",type=\"participant\"} 0.04",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let f = ops(1, Some(status(1, PeerState::Following, ZabState::Broadcast)), d.path());
    let text = prom::render(&f);
    assert!(text.lines().any(|l| l == "zkd_leader_last_heard_seconds 0.03"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("learners ")), "only a leader has learners");
}
