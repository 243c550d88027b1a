//! `zkd serve` start-up, through the binary: `--port-file` reports the port of a clientPort=0
//! config, and every shard listens on it.

mod common;

use std::process::Stdio;

use common::*;

/// A directory with a zoo.cfg: `dataDir` (created), clientPort=0, and `extra`.
fn config(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\n{extra}\n",
            data.display()
        ),
    )
    .unwrap();
    (dir, cfg)
}

#[test]
fn port_file_reports_the_port_every_shard_listens_on() {
    let (_d, cfg) = config("maxClientCnxns=0");
    let (mut child, port) = spawn_zkd(&cfg, |c| {
        c.arg("--shards").arg("2").stdout(Stdio::null()).stderr(Stdio::null());
    });
    assert_ne!(port, 0);
    // SO_REUSEPORT spreads connections over the shards by a hash of the 4-tuple: with 32 of them,
    // both shards get some unless both listen on the reported port (chance of a false failure:
    // 2 in 2^32).
    let conns: Vec<Raw> = (0..32).map(|_| Raw::connect(port)).collect();
    let mntr = four_letter(port, "mntr");
    drop(conns);
    child.kill().unwrap();
    child.wait().unwrap();
    let per_shard: Vec<u64> = (0..2)
        .map(|i| {
            let key = format!("zkd_shard_{i}_connections\t");
            let line = mntr.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key}: {mntr}"));
            line[key.len()..].parse().unwrap()
        })
        .collect();
    assert!(per_shard.iter().all(|&n| n > 0), "connections per shard {per_shard:?}:\n{mntr}");
    assert!(per_shard.iter().sum::<u64>() >= 32, "{per_shard:?}");
}
