//! `zkd`: one binary — the server and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "zkd", version, about = "A ZooKeeper-compatible server, thread-per-core on io_uring")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server in the foreground (standalone). Without --config: port 2181, data in ./zkd-data.
    Serve {
        /// A ZooKeeper zoo.cfg (same keys and defaults as Apache ZooKeeper 3.8).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Number of shards (executors owning client connections); default one per core.
        #[arg(long)]
        shards: Option<usize>,
        /// CPU ids to use, e.g. 0,1,2 (default: every CPU this process may run on).
        #[arg(long, value_delimiter = ',')]
        cores: Option<Vec<usize>>,
        /// Run the replica core on a thread of its own even on a small machine (by default, on
        /// 1-3 cores it runs on the executor of the shard that shares its core).
        // `alias` is hidden from --help: the flag's old name still works in scripts.
        #[arg(long, alias = "dedicated-sequencer")]
        dedicated_replica: bool,
        /// Once serving, write the client port bound to this file (a line with the number;
        /// written to a temporary name and renamed): with clientPort=0 the kernel picks a free
        /// port, and this is where a supervisor or a test reads which.
        #[arg(long)]
        port_file: Option<PathBuf>,
        /// The JAAS file whose `Server` section lists the SASL DIGEST-MD5 users (what Java's
        /// -Djava.security.auth.login.config names). Without it, zkd takes that flag from the
        /// SERVER_JVMFLAGS and JVMFLAGS environment variables, as zkServer.sh passes them to
        /// ZooKeeper; their -Dzookeeper.* properties are read too, as zoo.cfg keys (the file's own
        /// lines win).
        #[arg(long)]
        jaas_config: Option<PathBuf>,
    },
    /// Transaction log tools.
    Txnlog {
        #[command(subcommand)]
        cmd: DumpCmd,
    },
    /// Snapshot tools.
    Snapshot {
        #[command(subcommand)]
        cmd: DumpCmd,
    },
    /// The leader election of a running ensemble member.
    Election {
        #[command(subcommand)]
        cmd: ElectionCmd,
    },
    /// Load generator speaking the ZooKeeper client protocol (.hgrm + plots).
    Bench(zkd_tools::bench::BenchArgs),
    /// What the txnlog writer would see on a disk: sync latency and throughput per method, and the
    /// zoo.cfg settings recommended for it.
    FsyncTest(zkd_tools::fsync_test::FsyncTestArgs),
    /// jute.maxbuffer edge cases against a running server, optionally compared with another.
    MaxbufferStress(zkd_tools::maxbuffer_stress::MaxbufferStressArgs),
    /// Linearizability: record histories against servers under injected faults, and check them.
    Lincheck(zkd_tools::lincheck::LincheckArgs),
    /// Delete old snapshots and logs, keeping the newest N snapshots and the logs they need
    /// (ZooKeeper's PurgeTxnLog).
    Purge {
        /// dataDir (snapshots).
        #[arg(long)]
        data_dir: PathBuf,
        /// dataLogDir (logs); defaults to dataDir.
        #[arg(long)]
        data_log_dir: Option<PathBuf>,
        /// Snapshots to keep (at least 3).
        #[arg(short = 'n', long, default_value_t = 3)]
        count: usize,
    },
}

#[derive(Subcommand)]
enum ElectionCmd {
    /// Print a server's view of the election: the leader, the last election, each peer's last
    /// vote, state, epoch and reachability, the round, and why the election has not finished.
    /// Asks the AdminServer's `election` command (or the `elec` four-letter word on the client
    /// port when the configuration has no AdminServer).
    Status {
        /// The server's AdminServer, host:adminPort (default 127.0.0.1:8080, ZooKeeper's
        /// admin.serverPort).
        #[arg(long, conflicts_with = "config")]
        server: Option<String>,
        /// The server's zoo.cfg: where its AdminServer (or client port) listens.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the AdminServer's JSON instead of the text.
        #[arg(long)]
        json: bool,
        /// How long to wait for the server, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand)]
enum DumpCmd {
    /// Print a file written by zkd or Apache ZooKeeper, as ZooKeeper's LogFormatter /
    /// SnapshotFormatter print it.
    Dump {
        file: PathBuf,
        /// JSON instead of ZooKeeper's text format.
        #[arg(long)]
        json: bool,
    },
}

fn dump(snapshot: bool, file: &std::path::Path, json: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let res = if snapshot {
        zkd::snapshot::dump::dump_snapshot(file, json, &mut out).map_err(|e| e.to_string())
    } else {
        zkd::txnlog::dump::dump_txnlog(file, json, &mut out).map_err(|e| e.to_string())
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkd: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn init_logging(opts: &zkd::admin::logging::LogOptions) -> Option<zkd::admin::logging::LogGuard> {
    match zkd::admin::logging::init(opts) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("zkd: cannot set up logging: {e}");
            None
        }
    }
}

/// Writes `port` to `path` so that a reader sees either no file or the whole line.
fn write_port_file(path: &std::path::Path, port: u16) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

fn serve(
    config: Option<PathBuf>,
    shards: Option<usize>,
    cores: Option<Vec<usize>>,
    dedicated_replica: bool,
    port_file: Option<PathBuf>,
    jaas_config: Option<PathBuf>,
) -> ExitCode {
    // A port file left by an earlier run must not be taken for this run's.
    if let Some(p) = &port_file {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("zkd: cannot remove the old port file {}: {e}", p.display());
                return ExitCode::from(1);
            }
            _ => {}
        }
    }
    let jvmflags = std::env::var("JVMFLAGS").ok();
    let server_jvmflags = std::env::var("SERVER_JVMFLAGS").ok();
    let props = zkd::config::jvm_properties(jvmflags.as_deref(), server_jvmflags.as_deref());
    let (mut cfg, warnings) = match &config {
        None => (zkd::config::Config::embedded_default(), Vec::new()),
        Some(p) => match zkd::config::Config::load_with(p, &props) {
            Ok(l) => (l.config, l.warnings),
            // 2: the configuration must be changed by a person; nothing was started.
            Err(e @ zkd::config::ConfigError::Unsupported(_)) => {
                eprintln!("zkd: refusing to start with {}: {e}", p.display());
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("zkd: invalid configuration {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
    };
    cfg.security.jaas_config = jaas_config.map(|p| p.display().to_string()).or_else(|| {
        zkd::config::jaas::login_config_from_jvm_flags(jvmflags.as_deref(), server_jvmflags.as_deref())
    });
    let log_opts = match zkd::admin::logging::LogOptions::from_zkd_keys(&cfg.zkd) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("zkd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let _log_guard = init_logging(&log_opts);
    // A panic is a broken invariant (bad input never panics): a thread of the server that died
    // would leave a port open that nobody answers, so the whole process stops, loudly.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("zkd is stopping on a broken invariant: {info}");
        default_hook(info);
        std::process::abort();
    }));
    for w in warnings {
        tracing::warn!("{}: {w}", config.as_deref().unwrap_or(std::path::Path::new("zoo.cfg")).display());
    }
    let handle = match zkd::server::start(
        &cfg,
        zkd::server::RunOptions { shards, cores, in_memory: false, dedicated_replica },
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("zkd: cannot start: {e}");
            // 2: the data directory, the TLS/SASL files or zoo.cfg must be looked at by a
            // person (as for a bad config).
            let code = match e {
                zkd::server::StartError::Load(_)
                | zkd::server::StartError::Security(_)
                | zkd::server::StartError::Config(_) => 2,
                _ => 1,
            };
            return ExitCode::from(code);
        }
    };
    if let Some(p) = &port_file {
        if let Err(e) = write_port_file(p, handle.addr.port()) {
            eprintln!("zkd: cannot write the port file {}: {e}", p.display());
            handle.shutdown();
            return ExitCode::from(1);
        }
    }
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zkd: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // The server may also stop itself (its transaction log failed): that ends the wait too.
    let fatal = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let (fatal, rx, signals) = (fatal.clone(), handle.fatal.clone(), signals.handle());
        std::thread::spawn(move || {
            if let Ok(why) = rx.recv() {
                *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                signals.close();
            }
        });
    }
    if let Some(sig) = signals.forever().next() {
        tracing::info!("received signal {sig}, shutting down");
    }
    handle.shutdown();
    if let Some(why) = fatal.lock().unwrap_or_else(|e| e.into_inner()).take() {
        eprintln!("zkd: stopped: {why}");
        return ExitCode::from(1);
    }
    tracing::info!("zkd stopped");
    ExitCode::SUCCESS
}

fn election_status(server: Option<String>, config: Option<PathBuf>, json: bool, timeout_ms: u64) -> ExitCode {
    use zkd::admin::remote::{election_status, Target};
    let target = match (server, config) {
        (Some(s), _) => Target::Admin { host_port: s, command_url: "/commands".into() },
        (None, Some(p)) => match zkd::config::Config::load(&p)
            .map_err(|e| e.to_string())
            .and_then(|l| Target::from_config(&l.config))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("zkd: {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => Target::Admin { host_port: "127.0.0.1:8080".into(), command_url: "/commands".into() },
    };
    match election_status(&target, std::time::Duration::from_millis(timeout_ms)) {
        Ok((text, v)) => {
            match (json, v) {
                (true, Some(v)) => println!("{v:#}"),
                (true, None) => {
                    eprintln!("zkd: --json needs the AdminServer (the four-letter word answers text)");
                    return ExitCode::from(2);
                }
                _ => print!("{text}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zkd: {e}");
            ExitCode::from(1)
        }
    }
}

fn tool(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_guard = match &cli.cmd {
        None | Some(Cmd::Serve { .. }) => None, // serve sets logging up from zoo.cfg
        Some(_) => init_logging(&zkd::admin::logging::LogOptions::default()),
    };
    match cli.cmd {
        None => serve(None, None, None, false, None, None),
        Some(Cmd::Serve { config, shards, cores, dedicated_replica, port_file, jaas_config }) => {
            serve(config, shards, cores, dedicated_replica, port_file, jaas_config)
        }
        Some(Cmd::Txnlog { cmd: DumpCmd::Dump { file, json } }) => dump(false, &file, json),
        Some(Cmd::Snapshot { cmd: DumpCmd::Dump { file, json } }) => dump(true, &file, json),
        Some(Cmd::Election { cmd: ElectionCmd::Status { server, config, json, timeout_ms } }) => {
            election_status(server, config, json, timeout_ms)
        }
        Some(Cmd::Bench(a)) => tool(zkd_tools::bench::run(a)),
        Some(Cmd::FsyncTest(a)) => tool(zkd_tools::fsync_test::run(a)),
        Some(Cmd::MaxbufferStress(a)) => tool(zkd_tools::maxbuffer_stress::run(a)),
        Some(Cmd::Lincheck(a)) => match zkd_tools::lincheck::run(a) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("zkd lincheck: {e:#}");
                ExitCode::from(2)
            }
        },
        Some(Cmd::Purge { data_dir, data_log_dir, count }) => {
            let log_dir = data_log_dir.unwrap_or_else(|| data_dir.clone());
            match zkd::db::purge(&data_dir, &log_dir, count) {
                Ok(removed) => {
                    for p in removed {
                        println!("removed {}", p.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("zkd: purge failed: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
