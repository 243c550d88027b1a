//! `zkd-tools`: the performance tools on their own (the `zkd` binary exposes the same subcommands).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "zkd-tools", about = "zkd performance toolkit: bench, fsync-test, maxbuffer-stress")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load generator speaking the ZooKeeper client protocol.
    Bench(zkd::tools::bench::BenchArgs),
    /// What a transaction log writer sees on a disk: sync latency and throughput per method.
    FsyncTest(zkd::tools::fsync_test::FsyncTestArgs),
    /// jute.maxbuffer edge cases against a server, optionally compared with another.
    MaxbufferStress(zkd::tools::maxbuffer_stress::MaxbufferStressArgs),
}

fn main() -> std::process::ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Bench(a) => zkd::tools::bench::run(a),
        Cmd::FsyncTest(a) => zkd::tools::fsync_test::run(a),
        Cmd::MaxbufferStress(a) => zkd::tools::maxbuffer_stress::run(a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
