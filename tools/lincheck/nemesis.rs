//! The nemesis: faults drawn from a seed (so a failing run replays its faults), injected one at a
//! time into a node, each logged in the history when it starts and when it heals.
//!
//! Fault model (each on one node; with N nodes the node is drawn too):
//! - `kill`: SIGKILL, down for 0-500 ms, restart: whatever was not durable is lost, the node
//!   recovers from its snapshot and log.
//! - `pause`: SIGSTOP for 1.2-2x the session timeout, then SIGCONT: clients time out and move on,
//!   sessions expire, the node resumes with requests it read before the pause.
//! - `clock`: SIGKILL and restart in a new time namespace whose monotonic (and boot) clock is
//!   hours to weeks ahead of, or minutes behind, the last life's: a node must keep no monotonic
//!   instant across a restart. The wall clock cannot be stepped this way: time namespaces
//!   virtualize CLOCK_MONOTONIC and CLOCK_BOOTTIME only, and stepping CLOCK_REALTIME would step
//!   the whole machine (and every other test on it).
//! - `fs-shutdown` (root): the node's ext4 is shut down as a pulled disk (EXT4_IOC_SHUTDOWN,
//!   journal not flushed); the node must stop by itself; then remount (the journal replays) and
//!   restart.
//! - `disk-full` (root): the node's file system is filled to the last block for 0.5-2.5 s, then
//!   freed.
//! - `slow-disk` (root): the node's writes to its disk are throttled to 10-50 I/Os a second for
//!   1-3 s (blkio cgroup on its loop device: this kernel has no device-mapper, so no dm-delay).
//!
//! - `partition`, `one-way` (root, ensembles): planned on an even-numbered node, they go to
//!   whichever node leads when they start (a cut-off leader is the case that must step down while
//!   the others elect another); on an odd-numbered node, to that node.
//!
//! Between faults the system runs 0.3-1.5 s undisturbed, and the last 3 s of a run are quiet, so
//! the history ends with reads of whatever the faults left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cluster::Cluster;
use super::record::Recording;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    Kill,
    Pause,
    Clock,
    FsShutdown,
    DiskFull,
    SlowDisk,
    /// A node cut off from the other nodes, both ways (ensembles; network namespaces, root).
    Partition,
    /// A node whose packets the other nodes drop while it still hears them.
    OneWay,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Clock,
        FaultKind::FsShutdown,
        FaultKind::DiskFull,
        FaultKind::SlowDisk,
        FaultKind::Partition,
        FaultKind::OneWay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::FsShutdown => "fs-shutdown",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
        }
    }

    /// "kill,pause", "all", "none" or "" (none).
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<FaultKind>> {
        match s.trim() {
            "all" => return Ok(Self::ALL.to_vec()),
            "" | "none" => return Ok(Vec::new()),
            _ => {}
        }
        s.split(',')
            .map(|w| {
                Self::ALL.into_iter().find(|k| k.name() == w.trim()).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                    anyhow::anyhow!("unknown fault {w:?} (known: {}, all, none)", names.join(", "))
                })
            })
            .collect()
    }

    /// Needs each node's data on a disk of its own (root).
    pub fn needs_disk(self) -> bool {
        matches!(self, FaultKind::FsShutdown | FaultKind::DiskFull | FaultKind::SlowDisk)
    }

    /// Needs the nodes in network namespaces of their own (root), and two nodes at least.
    pub fn needs_net(self) -> bool {
        matches!(self, FaultKind::Partition | FaultKind::OneWay)
    }
}

/// One fault with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill { down_ms: u64 },
    Pause { ms: u64 },
    Clock { down_ms: u64, offset_s: i64 },
    FsShutdown,
    DiskFull { ms: u64 },
    SlowDisk { ms: u64, iops: u32 },
    Partition { ms: u64 },
    OneWay { ms: u64 },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill { .. } => FaultKind::Kill,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Clock { .. } => FaultKind::Clock,
            Fault::FsShutdown => FaultKind::FsShutdown,
            Fault::DiskFull { .. } => FaultKind::DiskFull,
            Fault::SlowDisk { .. } => FaultKind::SlowDisk,
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::OneWay { .. } => FaultKind::OneWay,
        }
    }

    /// How long the fault lasts, at most (for scheduling; a restart may take longer).
    fn span_ms(&self) -> u64 {
        match *self {
            Fault::Kill { down_ms } | Fault::Clock { down_ms, .. } => down_ms + 1000,
            Fault::Pause { ms }
            | Fault::DiskFull { ms }
            | Fault::SlowDisk { ms, .. }
            | Fault::Partition { ms }
            | Fault::OneWay { ms } => ms,
            Fault::FsShutdown => 3000,
        }
    }
}

/// A fault to inject at `at_ms` after the run began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub at_ms: u64,
    pub node: usize,
    pub fault: Fault,
}

/// The schedule of a run (pure: the same arguments give the same schedule).
pub fn schedule(
    seed: u64,
    kinds: &[FaultKind],
    nodes: usize,
    duration_ms: u64,
    session_timeout_ms: u64,
) -> Vec<Planned> {
    const QUIET_TAIL_MS: u64 = 3000;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let mut plan = Vec::new();
    // A partition needs two nodes at least.
    let kinds: Vec<FaultKind> = kinds.iter().copied().filter(|k| nodes > 1 || !k.needs_net()).collect();
    if kinds.is_empty() || nodes == 0 {
        return plan;
    }
    let mut at = 1000;
    loop {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let fault = match kind {
            FaultKind::Kill => Fault::Kill { down_ms: rng.gen_range(0..=500) },
            FaultKind::Pause => Fault::Pause { ms: session_timeout_ms * rng.gen_range(12..=20) / 10 },
            FaultKind::Clock => Fault::Clock {
                down_ms: rng.gen_range(0..=300),
                offset_s: if rng.gen_bool(0.7) {
                    rng.gen_range(3600..=30 * 86400)
                } else {
                    // Behind, by less than the machine has been up (a clock cannot go below 0).
                    -rng.gen_range(60..=600)
                },
            },
            FaultKind::FsShutdown => Fault::FsShutdown,
            FaultKind::DiskFull => Fault::DiskFull { ms: rng.gen_range(500..=2500) },
            FaultKind::SlowDisk => {
                Fault::SlowDisk { ms: rng.gen_range(1000..=3000), iops: rng.gen_range(10..=50) }
            }
            // Shorter and longer than syncLimit (25 ticks of 200 ms in cluster.rs): a cut-off
            // leader keeps leading for a while, then steps down.
            FaultKind::Partition => Fault::Partition { ms: rng.gen_range(1500..=8000) },
            FaultKind::OneWay => Fault::OneWay { ms: rng.gen_range(1500..=8000) },
        };
        if at + fault.span_ms() + QUIET_TAIL_MS > duration_ms {
            break;
        }
        plan.push(Planned { at_ms: at, node: rng.gen_range(0..nodes), fault });
        at += fault.span_ms() + rng.gen_range(300..=1500);
    }
    plan
}

/// Injects the planned faults (`t0` is when the run began) until the plan ends or `stop` is set;
/// logs every fault in `rec`. Leaves every node up and healed. An error is a node that would not
/// come back (a finding in itself: the log tail says why).
pub fn inject(
    cluster: &mut Cluster,
    plan: &[Planned],
    rec: &Recording,
    t0: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let sleep_until = |t: Instant| {
        while Instant::now() < t && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((t - Instant::now()).min(Duration::from_millis(50)));
        }
    };
    let ms = Duration::from_millis;
    for p in plan {
        sleep_until(t0 + ms(p.at_ms));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut i = p.node;
        let mut whom = String::new();
        if p.fault.kind().needs_net() && p.node % 2 == 0 {
            if let Some(l) = cluster.leader() {
                i = l;
                whom = " (the leader)".into();
            }
        }
        match p.fault {
            Fault::Kill { down_ms } => {
                cluster.kill(i)?;
                rec.fault(i, "kill", String::new());
                std::thread::sleep(ms(down_ms));
                cluster.restart(i, cluster.clock_offset_s(i))?;
                rec.fault(i, "restart", String::new());
            }
            Fault::Clock { down_ms, offset_s } => {
                cluster.kill(i)?;
                rec.fault(i, "kill", "for a clock jump".into());
                std::thread::sleep(ms(down_ms));
                let offset = cluster.clock_offset_s(i) + offset_s;
                cluster.restart(i, offset)?;
                rec.fault(i, "restart", format!("monotonic clock {offset_s:+} s (offset now {offset} s)"));
            }
            Fault::Pause { ms: len } => {
                cluster.pause(i)?;
                rec.fault(i, "pause", format!("{len} ms"));
                sleep_until(Instant::now() + ms(len));
                cluster.resume(i)?;
                rec.fault(i, "resume", String::new());
            }
            Fault::FsShutdown => {
                cluster.shutdown_fs(i)?;
                rec.fault(i, "fs-shutdown", String::new());
                // A server whose log cannot be written stops by itself (fail-stop). One that does
                // not is noted (and killed) before the disk comes back.
                match cluster.wait_exit(i, Duration::from_secs(30))? {
                    Some(st) => rec.fault(i, "stopped", st.to_string()),
                    None => {
                        cluster.kill(i)?;
                        rec.fault(i, "kill", "still running 30 s after its disk died".into());
                    }
                }
                cluster.remount(i)?;
                cluster.restart(i, cluster.clock_offset_s(i))?;
                rec.fault(i, "restart", "after remounting its disk".into());
            }
            Fault::DiskFull { ms: len } => {
                let bytes = cluster.fill_disk(i)?;
                rec.fault(i, "disk-full", format!("{} MiB filler", bytes >> 20));
                sleep_until(Instant::now() + ms(len));
                cluster.unfill_disk(i)?;
                rec.fault(i, "disk-freed", String::new());
            }
            Fault::SlowDisk { ms: len, iops } => {
                cluster.throttle(i, iops)?;
                rec.fault(i, "slow-disk", format!("{iops} writes/s"));
                sleep_until(Instant::now() + ms(len));
                cluster.throttle(i, 0)?;
                rec.fault(i, "disk-speed", String::new());
            }
            Fault::Partition { ms: len } => {
                cluster.isolate(i)?;
                rec.fault(i, "partition", format!("cut off from the other nodes for {len} ms{whom}"));
                sleep_until(Instant::now() + ms(len));
                cluster.heal()?;
                rec.fault(i, "heal", String::new());
            }
            Fault::OneWay { ms: len } => {
                cluster.mute(i)?;
                rec.fault(i, "one-way", format!("the other nodes drop its packets for {len} ms{whom}"));
                sleep_until(Instant::now() + ms(len));
                cluster.heal()?;
                rec.fault(i, "heal", String::new());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_a_function_of_its_seed_and_fits_the_run() {
        let all = FaultKind::ALL;
        let a = schedule(42, &all, 3, 120_000, 2000);
        assert_eq!(a, schedule(42, &all, 3, 120_000, 2000));
        assert_ne!(a, schedule(43, &all, 3, 120_000, 2000));
        assert!(a.len() >= 10, "{a:?}");
        for w in a.windows(2) {
            assert!(w[1].at_ms >= w[0].at_ms + w[0].fault.span_ms() + 300, "{w:?}");
        }
        let last = a.last().unwrap();
        assert!(last.at_ms + last.fault.span_ms() + 3000 <= 120_000);
        // One node: no partitions.
        assert!(schedule(42, &all, 1, 120_000, 2000).iter().all(|p| !p.fault.kind().needs_net()));
        assert!(a.iter().all(|p| p.node < 3));
        for k in all {
            assert!(a.iter().any(|p| p.fault.kind() == k), "{k:?} never drawn in {a:?}");
        }
        // Pauses outlast the session timeout.
        assert!(a.iter().all(|p| !matches!(p.fault, Fault::Pause { ms } if ms <= 2000)));
        assert!(schedule(42, &[], 1, 60_000, 2000).is_empty());
        assert!(schedule(42, &all, 1, 2_000, 2000).is_empty());
    }

    #[test]
    fn fault_lists_parse() {
        assert_eq!(FaultKind::parse_list("kill,pause").unwrap(), vec![FaultKind::Kill, FaultKind::Pause]);
        assert_eq!(FaultKind::parse_list("all").unwrap().len(), 8);
        assert!(FaultKind::parse_list("none").unwrap().is_empty());
        assert!(FaultKind::parse_list("kill,meteor").is_err());
    }
}
