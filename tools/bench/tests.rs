//! The bench against the fake server of `crate::fake_server`, whose latency and errors are known.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::fake_server::{FakeConfig, FakeServer};
use zkd::proto::ErrorCode;

fn args(server: &FakeServer, workload: Workload) -> BenchArgs {
    let mut a = BenchArgs::new(vec![server.addr.clone()], workload);
    a.sessions = 4;
    a.depth = 4;
    a.keys = 10;
    a.warmup = 0.2;
    a.duration = 1.0;
    a
}

#[test]
fn percentiles_bracket_the_injected_delay_and_hgrm_round_trips() {
    let server = FakeServer::start(FakeConfig { delay: Duration::from_millis(2), ..FakeConfig::default() });
    let s = run_bench(&args(&server, Workload::Read)).unwrap();
    assert!(s.ops_ok > 100, "{s:?}");
    assert_eq!(s.ops_error, 0, "{:?}", s.errors);
    assert!(s.errors.is_empty());
    // The server never answers sooner than 2 ms after it read the request.
    assert!(s.hist.min() >= 2000, "min {} us", s.hist.min());
    assert!(s.latency_us.p50 >= 2000 && s.latency_us.p50 <= 12_000, "{:?}", s.latency_us);
    assert!(s.latency_us.p99 >= s.latency_us.p50 && s.latency_us.max >= s.latency_us.p99_99);
    assert_eq!(s.hist.len(), s.ops_ok);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.hgrm");
    std::fs::write(&path, hgrm::render_ms(&s.hist)).unwrap();
    let parsed = hgrm::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(parsed.total_count, Some(s.ops_ok));
    assert_eq!(parsed.points.last().unwrap().total_count, s.ops_ok);
    assert_eq!(parsed.points.last().unwrap().percentile, 1.0);
    assert!(parsed.points[0].value >= 2.0, "first value {} ms", parsed.points[0].value);
}

#[test]
fn errors_are_counted_exactly_by_code_name() {
    let server = FakeServer::start(FakeConfig {
        delay: Duration::from_millis(1),
        error_every_nth_get: 7,
        error_code: ErrorCode::NoNode.code(),
        ..FakeConfig::default()
    });
    let mut a = args(&server, Workload::Read);
    a.warmup = 0.0; // every getData the server sees is in the window
    a.duration = 0.5;
    let s = run_bench(&a).unwrap();
    let gets = server.stats.get_data.load(Ordering::Relaxed);
    let injected = server.stats.injected_errors.load(Ordering::Relaxed);
    assert!(injected > 10, "only {injected} errors injected");
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors["NoNode"], injected);
    assert_eq!(s.ops_error, injected);
    assert_eq!(s.ops_ok + s.ops_error, gets);
    assert_eq!(s.warmup_ops, 0);
    // Error replies are latencies too.
    assert_eq!(s.hist.len(), gets);
}

#[test]
fn coordinated_omission_correction_charges_a_stall_to_every_delayed_request() {
    let stall = Some((Duration::from_millis(300), Duration::from_millis(300)));
    let cfg = |stall| FakeConfig { delay: Duration::from_millis(2), stall, ..FakeConfig::default() };
    let run = |stall, rate: Option<f64>, sessions, depth| {
        let server = FakeServer::start(cfg(stall));
        let mut a = args(&server, Workload::Read);
        a.warmup = 0.0;
        a.duration = 1.2;
        a.sessions = sessions;
        a.depth = depth;
        a.rate = rate;
        run_bench(&a).unwrap()
    };
    let open_calm = run(None, Some(400.0), 2, 4);
    let open_stalled = run(stall, Some(400.0), 2, 4);
    let closed_stalled = run(stall, None, 2, 1);
    // ~25% of the intended requests fall in the 300 ms stall: p90 sees it only with correction.
    assert!(open_calm.latency_us.p90 < 50_000, "calm {:?}", open_calm.latency_us);
    assert!(open_stalled.latency_us.p90 >= 100_000, "stalled open loop {:?}", open_stalled.latency_us);
    assert!(closed_stalled.latency_us.p90 < 50_000, "stalled closed loop {:?}", closed_stalled.latency_us);
    // Both saw the stall itself.
    assert!(open_stalled.latency_us.max >= 250_000 && closed_stalled.latency_us.max >= 250_000);
    // The open loop kept its rate: ~400/s over 1.2 s.
    let total = open_stalled.ops_ok + open_stalled.ops_error;
    assert!((420..=500).contains(&total), "{total} ops");
}

#[test]
fn write_verify_and_other_workloads_run_clean_against_the_fake() {
    let server = FakeServer::start(FakeConfig { delay: Duration::from_millis(1), ..FakeConfig::default() });
    for w in [Workload::Write, Workload::Mixed, Workload::CreateDelete, Workload::ConnectStorm] {
        let mut a = args(&server, w);
        a.duration = 0.4;
        a.warmup = 0.1;
        let s = run_bench(&a).unwrap();
        assert!(s.ops_ok > 10, "{w:?}: {s:?}");
        assert!(s.errors.is_empty(), "{w:?}: {:?}", s.errors);
    }
}

#[test]
fn a_dead_server_fails_the_setup_loudly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut a = BenchArgs::new(vec![addr], Workload::ConnectStorm);
    a.sessions = 1;
    a.warmup = 0.0;
    a.duration = 0.3;
    let e = run_bench(&a).unwrap_err();
    assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
}

#[test]
fn bad_arguments_are_refused() {
    let mut a = BenchArgs::new(vec!["nohostport".into()], Workload::Read);
    assert!(run_bench(&a).is_err());
    a.servers = vec!["127.0.0.1:1".into()];
    a.depth = 0;
    assert!(run_bench(&a).is_err());
}
