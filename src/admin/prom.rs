//! Prometheus text exposition (`/metrics` on `metricsProvider.httpPort`), with the names
//! ZooKeeper 3.8's PrometheusMetricsProvider uses (gauges and counters without prefix; `readlatency`
//! and `updatelatency` summaries in milliseconds with quantiles 0.5/0.9/0.99), then zkd's own
//! (`zkd_`), including per-shard gauges labelled by shard.

use std::fmt::Write;

use hdrhistogram::Histogram;

use super::words::{fd_counts, jdouble};
use super::OpsState;
use crate::quorum::peer::Role;
use crate::quorum::status::ZabState;
use crate::quorum::{LearnerType, PeerState};

/// The className that turns the provider on.
pub const PROVIDER_CLASS: &str = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, v: f64) {
    family(out, name, "gauge", name);
    let _ = writeln!(out, "{name} {}", jdouble(v));
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    family(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", jdouble(v as f64));
}

fn label_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A summary from a microsecond histogram, reported in `unit_div` units.
fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>, quantiles: &[f64], unit_div: f64) {
    family(out, name, "summary", help);
    for q in quantiles {
        let v = if h.is_empty() { 0.0 } else { h.value_at_quantile(*q) as f64 / unit_div };
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {}", jdouble(v));
    }
    let sum: u64 = h.iter_recorded().map(|x| x.value_iterated_to() * x.count_at_value()).sum();
    let _ = writeln!(out, "{name}_count {}", jdouble(h.len() as f64));
    let _ = writeln!(out, "{name}_sum {}", jdouble(sum as f64 / unit_div));
}

/// Bucket bounds of `zkd_election_duration_seconds`.
pub const ELECTION_BUCKETS_S: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A member of an ensemble: ZooKeeper's quorum gauges (a serving leader's only on it, as
/// ZooKeeper registers them), counters and `election_time` summary (ms, its BASIC detail: the
/// median), then zkd's: peer and ZAB state, the election round, learners, election durations.
fn quorum(o: &mut String, ops: &OpsState) {
    let Some(q) = ops.quorum_status().filter(|q| !q.standalone) else { return };
    let c = ops.quorum.counters();
    gauge(o, "quorum_size", q.quorum_size() as f64);
    if let (Some(Role::Leader), Some(l)) = (q.serving, &q.leader_side) {
        gauge(o, "learners", l.learners.len() as f64);
        gauge(o, "synced_followers", q.synced_followers() as f64);
        gauge(o, "synced_non_voting_followers", q.synced_non_voting_followers() as f64);
        gauge(o, "synced_observers", q.synced_observers() as f64);
        gauge(o, "pending_syncs", l.pending_syncs as f64);
        gauge(o, "leader_uptime", q.serving_for_ms.unwrap_or(0) as f64);
        let (last, min, max) = l.proposal_sizes;
        gauge(o, "last_proposal_size", last as f64);
        gauge(o, "min_proposal_size", min as f64);
        gauge(o, "max_proposal_size", max as f64);
    }
    counter(o, "looking_count", "looking_count", q.lookings);
    counter(o, "digest_mismatches_count", "digest_mismatches_count", crate::tree::digest::mismatches());
    counter(o, "diff_count", "diff_count", c.diff_syncs);
    counter(o, "snap_count", "snap_count", c.snap_syncs);
    summary(o, "election_time", "election_time", &c.election_ms, &[0.5], 1.0);

    family(o, "zkd_peer_state", "gauge", "1 for the peer state this server is in");
    for st in [PeerState::Looking, PeerState::Following, PeerState::Leading, PeerState::Observing] {
        let _ = writeln!(o, "zkd_peer_state{{state=\"{}\"}} {}", st.name(), (q.state == st) as u8);
    }
    family(o, "zkd_zab_state", "gauge", "1 for the phase of the quorum protocol this server is in");
    for z in [ZabState::Election, ZabState::Discovery, ZabState::Synchronization, ZabState::Broadcast] {
        let _ = writeln!(o, "zkd_zab_state{{state=\"{}\"}} {}", z.name(), (q.zab_state == z) as u8);
    }
    gauge(o, "zkd_serving", q.serving.is_some() as u8 as f64);
    let round = q.election.as_ref().map_or(0, |e| e.round);
    family(
        o,
        "zkd_election_info",
        "gauge",
        "The election as this server sees it: its round, state and leader",
    );
    let leader = q.leader.map_or(String::new(), |l| l.to_string());
    let _ = writeln!(
        o,
        "zkd_election_info{{round=\"{round}\",state=\"{}\",leader=\"{leader}\"}} 1",
        q.state.name()
    );
    gauge(o, "zkd_election_round", round as f64);
    gauge(o, "zkd_accepted_epoch", q.accepted_epoch as f64);
    gauge(o, "zkd_current_epoch", q.current_epoch as f64);
    gauge(o, "zkd_config_mismatches", q.config_mismatches.len() as f64);
    family(
        o,
        "zkd_election_duration_seconds",
        "histogram",
        "How long each election took, from LOOKING to a decision",
    );
    let h = &c.election_ms;
    for b in ELECTION_BUCKETS_S {
        let n = h.count_between(0, (b * 1000.0) as u64);
        let _ = writeln!(o, "zkd_election_duration_seconds_bucket{{le=\"{}\"}} {n}", jdouble(*b));
    }
    let sum_ms: u64 = h.iter_recorded().map(|x| x.value_iterated_to() * x.count_at_value()).sum();
    let _ = writeln!(o, "zkd_election_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(o, "zkd_election_duration_seconds_sum {}", jdouble(sum_ms as f64 / 1000.0));
    let _ = writeln!(o, "zkd_election_duration_seconds_count {}", h.len());
    if let Some(l) = &q.leader_side {
        family(o, "zkd_learner_up_to_date", "gauge", "1 for a learner this leader sent UPTODATE (it serves)");
        for x in &l.learners {
            let _ = writeln!(
                o,
                "zkd_learner_up_to_date{{sid=\"{}\",type=\"{}\"}} {}",
                x.sid,
                learner_type(x.learner_type),
                x.up_to_date as u8
            );
        }
        family(o, "zkd_learner_last_heard_seconds", "gauge", "Since this leader last heard from a learner");
        for x in &l.learners {
            let _ = writeln!(
                o,
                "zkd_learner_last_heard_seconds{{sid=\"{}\",type=\"{}\"}} {}",
                x.sid,
                learner_type(x.learner_type),
                jdouble(x.last_heard_ago_ms as f64 / 1000.0)
            );
        }
    }
    if let Some(ms) = q.learner_side.and_then(|l| l.leader_heard_ago_ms) {
        gauge(o, "zkd_leader_last_heard_seconds", ms as f64 / 1000.0);
    }
}

fn learner_type(t: LearnerType) -> &'static str {
    match t {
        LearnerType::Participant => "participant",
        LearnerType::Observer => "observer",
    }
}

pub fn render(ops: &OpsState) -> String {
    let mut o = String::with_capacity(8192);
    let m = ops.metrics.snapshot();
    let (open_fds, max_fds) = fd_counts();
    let sessions = ops.sessions();
    // ZooKeeper's gauges (ZooKeeperServer.registerMetrics).
    gauge(&mut o, "avg_latency", m.latency_avg_ms);
    gauge(&mut o, "max_latency", m.latency_max_ms as f64);
    gauge(&mut o, "min_latency", m.latency_min_ms as f64);
    gauge(&mut o, "packets_received", m.packets_received as f64);
    gauge(&mut o, "packets_sent", m.packets_sent as f64);
    gauge(&mut o, "num_alive_connections", m.connections as f64);
    gauge(&mut o, "outstanding_requests", m.outstanding.max(0) as f64);
    gauge(&mut o, "uptime", ops.uptime_ms() as f64);
    gauge(&mut o, "znode_count", ops.zk_node_count() as f64);
    gauge(&mut o, "watch_count", ops.tree.watch_count() as f64);
    gauge(&mut o, "ephemerals_count", ops.tree.ephemerals_count() as f64);
    gauge(&mut o, "approximate_data_size", ops.tree.approximate_data_size() as f64);
    gauge(&mut o, "global_sessions", sessions.count as f64);
    gauge(&mut o, "local_sessions", 0.0);
    gauge(&mut o, "open_file_descriptor_count", open_fds as f64);
    gauge(&mut o, "max_file_descriptor_count", max_fds as f64);
    gauge(&mut o, "connection_drop_probability", 0.0);
    gauge(&mut o, "outstanding_tls_handshake", 0.0);
    gauge(&mut o, "auth_failed_count", m.auth_failed as f64);
    gauge(&mut o, "non_mtls_remote_conn_count", 0.0);
    gauge(&mut o, "non_mtls_local_conn_count", 0.0);
    // ZooKeeper's counters (ServerMetrics) that zkd measures.
    counter(&mut o, "connection_rejected", "connection_rejected", m.rejected_max_cnxns);
    counter(&mut o, "large_requests_rejected", "large_requests_rejected", m.frames_rejected);
    counter(&mut o, "bytes_received_count", "bytes_received_count", m.bytes_received);
    // ZooKeeper's latency summaries (ms).
    let lat = ops.metrics.latency();
    summary(&mut o, "readlatency", "readlatency", &lat.read_us, &[0.5, 0.9, 0.99], 1000.0);
    summary(&mut o, "updatelatency", "updatelatency", &lat.update_us, &[0.5, 0.9, 0.99], 1000.0);

    if let Some(ls) = ops.log_stats() {
        summary(&mut o, "fsynctime", "fsynctime", &ls.fsync_us, &[0.5, 0.9, 0.99], 1000.0);
        summary(
            &mut o,
            "sync_processor_batch_size",
            "sync_processor_batch_size",
            &ls.sync_batch_txns,
            &[0.5, 0.9, 0.99],
            1.0,
        );
    }

    quorum(&mut o, ops);

    // zkd's own.
    if let Some(ls) = ops.log_stats() {
        counter(&mut o, "zkd_log_syncs_total", "Syncs (fdatasync or msync) of the transaction log", ls.syncs);
        counter(&mut o, "zkd_log_txns_written_total", "Txns written to the transaction log", ls.txns_written);
        counter(
            &mut o,
            "zkd_log_bytes_written_total",
            "Bytes written to the transaction log",
            ls.bytes_written,
        );
        counter(&mut o, "zkd_log_files_created_total", "Transaction log files created", ls.files_created);
        summary(
            &mut o,
            "zkd_log_fsync_seconds",
            "Time one sync of the transaction log took",
            &ls.fsync_us,
            &[0.5, 0.9, 0.99, 0.999],
            1e6,
        );
    }
    let mut all = lat.read_us.clone();
    let _ = all.add(&lat.update_us);
    summary(
        &mut o,
        "zkd_request_latency_seconds",
        "Request latency from frame received to reply queued",
        &all,
        &[0.5, 0.9, 0.99, 0.999],
        1e6,
    );
    let shards = ops.metrics.per_shard();
    family(&mut o, "zkd_shard_connections", "gauge", "Open client connections per shard");
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "zkd_shard_connections{{shard=\"{i}\"}} {}", s.connections);
    }
    family(
        &mut o,
        "zkd_shard_outstanding_requests",
        "gauge",
        "Requests received and not yet answered, per shard",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "zkd_shard_outstanding_requests{{shard=\"{i}\"}} {}", s.outstanding.max(0));
    }
    family(
        &mut o,
        "zkd_shard_backpressured",
        "gauge",
        "1 while the shard stopped reading sockets (globalOutstandingLimit)",
    );
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "zkd_shard_backpressured{{shard=\"{i}\"}} {}", s.backpressured as u8);
    }
    family(&mut o, "zkd_shard_requests_total", "counter", "Requests answered per shard");
    for (i, s) in shards.iter().enumerate() {
        let _ = writeln!(o, "zkd_shard_requests_total{{shard=\"{i}\"}} {}", s.requests);
    }
    gauge(&mut o, "zkd_global_outstanding_limit", ops.global_outstanding_limit as f64);
    counter(
        &mut o,
        "zkd_backpressure_pauses_total",
        "Times a shard stopped reading because of globalOutstandingLimit",
        m.backpressure_pauses,
    );
    counter(
        &mut o,
        "zkd_reads_ordered_behind_writes_total",
        "Reads that waited for their own session's earlier writes and ran at their place in the apply order",
        m.reads_ordered_behind_writes,
    );
    counter(
        &mut o,
        "zkd_replica_queue_full_total",
        "Messages shards held back because the replica's queue was full (they stopped reading meanwhile)",
        m.replica_queue_full,
    );
    counter(
        &mut o,
        "zkd_shard_inbox_full_total",
        "Messages the replica held back because a shard's inbox was full",
        m.shard_inbox_full,
    );
    counter(&mut o, "zkd_connections_accepted_total", "Client connections accepted", m.conns_accepted);
    counter(
        &mut o,
        "zkd_connections_refused_total",
        "Connections refused by maxClientCnxns",
        m.rejected_max_cnxns,
    );
    counter(
        &mut o,
        "zkd_connections_closed_without_session_total",
        "Connections closed before a session was established",
        m.conns_closed_without_session,
    );
    counter(&mut o, "zkd_four_letter_words_total", "Four-letter words answered", m.four_letter_words);
    let off = ops.limits.offenders(20);
    family(&mut o, "zkd_ip_refused_total", "counter", "maxClientCnxns refusals by client IP (top offenders)");
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_refused_total{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.refused
        );
    }
    family(
        &mut o,
        "zkd_ip_maxbuffer_rejected_total",
        "counter",
        "jute.maxbuffer rejects by client IP (top offenders)",
    );
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_maxbuffer_rejected_total{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.maxbuffer_rejects
        );
    }
    family(
        &mut o,
        "zkd_ip_closed_without_session_total",
        "counter",
        "Connections closed without a session by client IP (top offenders)",
    );
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_closed_without_session_total{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.closed_without_session
        );
    }
    family(
        &mut o,
        "zkd_ip_auth_failures_total",
        "counter",
        "Failed authentications (TLS handshakes, SASL, addauth) by client IP (top offenders)",
    );
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_auth_failures_total{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.auth_failures
        );
    }
    family(
        &mut o,
        "zkd_ip_unauthenticated_sessions_total",
        "counter",
        "Sessions closed for not authenticating with an enforced scheme, by client IP (top offenders)",
    );
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_unauthenticated_sessions_total{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.unauthenticated
        );
    }
    family(&mut o, "zkd_ip_connects_per_second", "gauge", "Connects per second by client IP (top offenders)");
    for r in &off {
        let _ = writeln!(
            o,
            "zkd_ip_connects_per_second{{ip=\"{}\"}} {}",
            label_escape(&r.ip.to_string()),
            r.entry.rate_per_s
        );
    }
    o
}
