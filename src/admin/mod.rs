//! The operations surface: four-letter words on the client port (AdminServer and Prometheus
//! come with the operations issue).

use std::fmt::Write;

use crate::shard::Shard;

/// The version string monitoring tools parse: ZooKeeper's form, with zkd's own version.
pub const VERSION_LINE: &str =
    concat!("3.8.0-zkd-", env!("CARGO_PKG_VERSION"), ", built on 1970-01-01 00:00 UTC");

fn allowed(shard: &Shard, word: &str) -> bool {
    match &shard.settings.four_letter_whitelist {
        None => true,
        Some(list) => list.iter().any(|w| w == word),
    }
}

/// Answers a four-letter word; the connection is closed after the text is sent.
pub fn four_letter(shard: &Shard, w: &[u8; 4]) -> String {
    let word = String::from_utf8_lossy(w).into_owned();
    if !allowed(shard, &word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    let m = shard.metrics.snapshot();
    match word.as_str() {
        "ruok" => "imok".into(),
        "srvr" | "stat" => {
            let mut s = String::new();
            let _ = writeln!(s, "Zookeeper version: {VERSION_LINE}");
            if word == "stat" {
                let _ = writeln!(s, "Clients:");
                let _ = writeln!(s);
            }
            let _ = writeln!(
                s,
                "Latency min/avg/max: {}/{:?}/{}",
                m.latency_min_ms, m.latency_avg_ms, m.latency_max_ms
            );
            let _ = writeln!(s, "Received: {}", m.packets_received);
            let _ = writeln!(s, "Sent: {}", m.packets_sent);
            let _ = writeln!(s, "Connections: {}", m.connections);
            let _ = writeln!(s, "Outstanding: {}", m.outstanding);
            let _ = writeln!(s, "Zxid: 0x{:x}", shard.tree.last_processed_zxid());
            let _ = writeln!(s, "Mode: standalone");
            let _ = writeln!(s, "Node count: {}", shard.tree.node_count());
            s
        }
        "isro" => "rw".into(),
        _ => format!("{word} is not executed because it is not in the whitelist.\n"),
    }
}
