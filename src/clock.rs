//! The two clocks. Timeouts (session expiry, retries, sweeps) use the monotonic one, which never
//! steps when the wall clock is set; wall time goes only where it is shown: in the protocol (txn
//! time, and from it Stat ctime/mtime and TTLs) and to operators (connection statistics).

/// Milliseconds since the Unix epoch: only for times the protocol carries (txn time, Stat) or
/// an operator reads (`cons`); never for a timeout.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds of CLOCK_MONOTONIC (as Java's `System.nanoTime`, which ZooKeeper's session
/// expiry uses): never steps when the wall clock is set.
pub fn mono_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}
