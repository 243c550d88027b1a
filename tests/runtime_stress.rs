//! The runtime never hangs. glommio 0.9.0 can park an executor that still has runnable tasks
//! when the CPU is contended. zkd keeps a timer armed on every executor; this
//! test proves the containment: many start → serve → stop cycles while busy threads fight for the
//! cores, each cycle under a watchdog. A hang fails the test with the cycle number instead of
//! blocking CI. `ZKD_STRESS_CYCLES` raises the count for a soak.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;

fn cycle(i: usize) {
    let srv = start(2, "");
    let port = srv.port;
    let clients: Vec<_> = (0..8)
        .map(|c| {
            std::thread::spawn(move || {
                let mut r = Raw::connect(port);
                let path = format!("/c{i}-{c}");
                assert_eq!(r.create(&path, b"v"), 0);
                for _ in 0..20 {
                    let (d, _) = r.get_data(&path).unwrap();
                    assert_eq!(d.as_deref(), Some(&b"v"[..]));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(four_letter(port, "ruok"), "imok");
    drop(srv); // shutdown joins every executor thread
}

#[test]
fn start_serve_stop_cycles_under_cpu_contention_never_hang() {
    let cycles: usize = std::env::var("ZKD_STRESS_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    for i in 0..cycles {
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            cycle(i);
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(()) => worker.join().unwrap(),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                panic!("cycle {i} of {cycles} did not finish within 30 s: the runtime hung");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
}
