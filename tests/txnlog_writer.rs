//! The group-commit log writer: files it writes read back (by zkd and by recovery), group
//! commit bounds syncs, completions cover their zxids, rolling, both write paths.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;
use zkd::proto::records::*;
use zkd::proto::types::OpCode;
use zkd::proto::{LoggedTxn, TxnBody};
use zkd::txnlog::format::{LogReader, Stop, DEFAULT_MAX_TXN_BYTES};
use zkd::txnlog::{LogOptions, LogWriter, WritePath};

fn txn(zxid: i64) -> LoggedTxn {
    LoggedTxn {
        hdr: TxnHeader { client_id: 7, cxid: zxid as i32, zxid, time: 5, txn_type: OpCode::Create as i32 },
        body: TxnBody::Create(CreateTxn {
            path: format!("/n{zxid}"),
            data: Some(vec![1; 32]),
            ..Default::default()
        }),
        digest: Some(TxnDigest { version: 2, tree_digest: zxid }),
    }
}

#[derive(Default)]
struct Durable {
    zxid: Mutex<i64>,
    cv: Condvar,
    calls: Mutex<Vec<i64>>,
}

impl Durable {
    fn wait_for(&self, z: i64) -> i64 {
        let mut g = self.zxid.lock();
        while *g < z {
            if self.cv.wait_for(&mut g, Duration::from_secs(20)).timed_out() {
                panic!("zxid 0x{z:x} never became durable");
            }
        }
        *g
    }
}

fn start(dir: &std::path::Path, opts: LogOptions) -> (zkd::txnlog::LogHandle, Arc<Durable>) {
    let d = Arc::new(Durable::default());
    let d2 = d.clone();
    let h = LogWriter::start(
        dir.to_owned(),
        opts,
        Box::new(move |z| {
            d2.calls.lock().push(z);
            let mut g = d2.zxid.lock();
            assert!(z > *g, "completions ascend");
            *g = z;
            d2.cv.notify_all();
        }),
        Box::new(|e| panic!("log writer error: {e}")),
    )
    .unwrap();
    (h, d)
}

fn small() -> LogOptions {
    LogOptions { pre_alloc_size_bytes: 64 * 1024, ..Default::default() }
}

fn read_all(dir: &std::path::Path) -> Vec<(String, Vec<i64>)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log."))
        .collect();
    names.sort_by_key(|n| i64::from_str_radix(&n[4..], 16).unwrap());
    names
        .into_iter()
        .map(|n| {
            let b = std::fs::read(dir.join(&n)).unwrap();
            let mut r = LogReader::new(&b, DEFAULT_MAX_TXN_BYTES).unwrap();
            let z = r.by_ref().map(|e| e.txn.hdr.zxid).collect();
            assert!(matches!(r.stop(), Stop::Padding { .. }), "{n}: {:?}", r.stop());
            (n, z)
        })
        .collect()
}

#[test]
fn every_write_path_round_trips_and_preallocates() {
    for path in [WritePath::Pwrite, WritePath::Mmap, WritePath::Direct] {
        let d = tempfile::tempdir().unwrap();
        let (h, dur) = start(d.path(), LogOptions { write_path: path, ..small() });
        for z in 1..=300 {
            h.append(vec![txn(z)]).unwrap();
        }
        dur.wait_for(300);
        let stats = h.stats();
        h.shutdown();
        let files = read_all(d.path());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, "log.1");
        assert_eq!(files[0].1, (1..=300).collect::<Vec<_>>());
        // Preallocated in 64 KiB steps of zeros.
        let len = std::fs::metadata(d.path().join("log.1")).unwrap().len();
        assert_eq!(len % (64 * 1024), 0, "{path:?}");
        assert!(len as u64 >= stats.bytes_written + 16);
        assert_eq!(stats.txns_written, 300);
        assert!(stats.syncs >= 1 && stats.syncs <= 300);
        assert_eq!(stats.fsync_us.len(), stats.syncs);
    }
}

#[test]
fn group_commit_from_several_threads() {
    let d = tempfile::tempdir().unwrap();
    let (h, dur) = start(d.path(), small());
    let h = Arc::new(h);
    // Like the replica: zxids are assigned and sent under one lock, so the log order is the
    // zxid order; each thread then waits for its own zxid to be durable.
    let next = Arc::new(Mutex::new(0i64));
    const THREADS: usize = 4;
    const PER_THREAD: usize = 100;
    let mut joins = Vec::new();
    for _ in 0..THREADS {
        let (h, dur, next) = (h.clone(), dur.clone(), next.clone());
        joins.push(std::thread::spawn(move || {
            for _ in 0..PER_THREAD {
                let z = {
                    let mut n = next.lock();
                    *n += 1;
                    h.append(vec![txn(*n)]).unwrap();
                    *n
                };
                let got = dur.wait_for(z);
                assert!(got >= z);
            }
        }));
    }
    for j in joins {
        j.join().unwrap();
    }
    let n = (THREADS * PER_THREAD) as u64;
    let stats = h.stats();
    assert!(stats.syncs <= n, "{} syncs for {n} appends", stats.syncs);
    assert_eq!(stats.txns_written, n);
    let calls = dur.calls.lock().clone();
    assert_eq!(calls.len() as u64, stats.syncs, "one completion per sync");
    assert_eq!(*calls.last().unwrap(), n as i64);
    println!("{n} appends from {THREADS} threads: {} syncs", stats.syncs);
    Arc::try_unwrap(h).ok().unwrap().shutdown();
    assert_eq!(read_all(d.path())[0].1, (1..=n as i64).collect::<Vec<_>>());
}

#[test]
fn batches_queued_during_a_sync_share_the_next_sync() {
    let d = tempfile::tempdir().unwrap();
    let (h, dur) = start(d.path(), small());
    // 1000 batches sent without waiting: far fewer syncs than batches.
    for z in 1..=1000 {
        h.append(vec![txn(z)]).unwrap();
    }
    dur.wait_for(1000);
    let s = h.stats();
    assert!(s.syncs < 1000, "{}", s.syncs);
    h.shutdown();
}

#[test]
fn roll_and_size_limit_start_new_files_named_by_first_zxid() {
    let d = tempfile::tempdir().unwrap();
    let (h, dur) = start(d.path(), LogOptions { log_size_limit_bytes: Some(4096), ..small() });
    h.append((1..=3).map(txn).collect()).unwrap();
    h.roll().unwrap();
    h.append((4..=5).map(txn).collect()).unwrap();
    dur.wait_for(5);
    h.roll().unwrap();
    h.roll().unwrap(); // a roll with nothing written creates nothing
    for z in 6..=100 {
        h.append(vec![txn(z)]).unwrap();
    }
    dur.wait_for(100);
    h.shutdown();
    let files = read_all(d.path());
    assert_eq!(files[0], ("log.1".to_string(), vec![1, 2, 3]));
    assert_eq!(files[1], ("log.4".to_string(), vec![4, 5]));
    assert!(
        files.len() > 3,
        "the 4 KiB limit rolls the rest: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let all: Vec<i64> = files.iter().flat_map(|f| f.1.clone()).collect();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    // Recovery reads the whole chain.
    let snap =
        zkd::snapshot::SnapshotNode { path: String::new(), data: None, acl_id: -1, stat: Default::default() };
    zkd::snapshot::write_snapshot_file(d.path(), 0, Default::default(), &[], &[], [snap], None).unwrap();
    let r = zkd::db::recovery::recover(d.path(), d.path(), &Default::default()).unwrap();
    assert_eq!(r.txns.len(), 100);
    assert_eq!(r.last_zxid, 100);
}

#[test]
fn force_sync_false_completes_without_syncing() {
    let d = tempfile::tempdir().unwrap();
    let (h, dur) = start(d.path(), LogOptions { force_sync: false, ..small() });
    h.append((1..=10).map(txn).collect()).unwrap();
    dur.wait_for(10);
    assert_eq!(h.stats().syncs, 0);
    h.shutdown();
    assert_eq!(read_all(d.path())[0].1.len(), 10);
}

/// Everything logged at WARN or above, by any thread of this test binary (the writer logs from
/// its own thread, so a thread-local subscriber would not see it).
fn captured_warnings() -> Arc<Mutex<Vec<u8>>> {
    static BUF: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| {
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b2 = buf.clone();
        tracing::subscriber::set_global_default(
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::WARN)
                .with_writer(move || W(b2.clone()))
                .finish(),
        )
        .expect("the only global subscriber of this test binary");
        buf
    })
    .clone()
}

#[test]
fn a_sync_slower_than_the_threshold_logs_zookeepers_warning() {
    let warnings = captured_warnings();
    // The writer warns when a sync takes more whole milliseconds than fsync.warningthresholdms
    // (`took_ms > threshold`, as ZooKeeper's FileTxnLog compares), so with 0 any sync of 1 ms or
    // more warns. Syncs of 512 KiB of buffered writes on a disk-backed directory (the target
    // dir, not a tmpfs /tmp, where a sync costs nothing) take that long; a few are enough, the
    // deadline bounds the wait.
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let name = "zkd-txnlog-slow-fsync-test";
    let (h, dur) = start(
        d.path(),
        LogOptions {
            fsync_warning_threshold_ms: 0,
            write_path: WritePath::Pwrite,
            thread_name: name.into(),
            pre_alloc_size_bytes: 4 << 20,
            ..Default::default()
        },
    );
    let want = format!("fsync-ing the write ahead log in {name} took ");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut z = 0;
    let seen = loop {
        if let Some(line) =
            String::from_utf8_lossy(&warnings.lock()).lines().find(|l| l.contains(&want)).map(str::to_owned)
        {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "no slow-fsync warning after {z} syncs of 512 KiB");
        z += 1;
        let mut t = txn(z);
        t.body =
            TxnBody::SetData(SetDataTxn { path: "/big".into(), data: Some(vec![7; 512 << 10]), version: 0 });
        t.hdr.txn_type = OpCode::SetData as i32;
        h.append(vec![t]).unwrap();
        dur.wait_for(z);
    };
    h.shutdown();
    assert!(seen.contains(" WARN "), "{seen}");
    assert!(seen.contains("ms which will adversely effect operation latency"), "{seen}");
    // The time is a whole number of milliseconds, above the threshold.
    let ms: u64 = seen[seen.find(&want).unwrap() + want.len()..].split("ms").next().unwrap().parse().unwrap();
    assert!(ms >= 1, "{seen}");
}

#[test]
fn a_sync_within_the_threshold_logs_nothing() {
    let warnings = captured_warnings();
    let d = tempfile::tempdir().unwrap();
    let name = "zkd-txnlog-fast-fsync-test";
    // No sync of a few bytes takes ten minutes.
    let (h, dur) = start(
        d.path(),
        LogOptions { fsync_warning_threshold_ms: 600_000, thread_name: name.into(), ..small() },
    );
    for z in 1..=20 {
        h.append(vec![txn(z)]).unwrap();
        dur.wait_for(z);
    }
    assert!(h.stats().syncs >= 1);
    h.shutdown();
    assert!(!String::from_utf8_lossy(&warnings.lock()).contains(name));
}

/// Unmounts a test filesystem on drop.
struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn run_ok(cmd: &str, args: &[&std::ffi::OsStr]) -> bool {
    std::process::Command::new(cmd)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

/// A 256 KiB tmpfs: the writer falls back from O_DIRECT to buffered pwrite there.
#[test]
#[ignore = "needs root (mounts a tmpfs); run with --include-ignored, as tests/run-all.sh does"]
fn enospc_on_tmpfs_rejects_the_group_refuses_until_resume_and_leaves_no_hole() {
    let d = tempfile::tempdir().unwrap();
    let o = std::ffi::OsStr::new;
    assert!(
        run_ok("mount", &[o("-t"), o("tmpfs"), o("-o"), o("size=256k"), o("tmpfs"), d.path().as_os_str()]),
        "prerequisite missing: cannot mount a small tmpfs here (needs root) to provoke ENOSPC"
    );
    let _guard = Mounted(d.path().to_owned());
    enospc_case(d.path(), 128 * 1024);
}

/// A 4 MiB ext4 image on a loop device: O_DIRECT page writes, and the zeroing after ENOSPC.
#[test]
#[ignore = "needs root and mkfs.ext4 (loop-mounts an image); run with --include-ignored, as tests/run-all.sh does"]
fn enospc_on_ext4_with_direct_writes_rejects_the_group_and_leaves_no_hole() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("fs.img");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&img).unwrap().set_len(4 << 20).unwrap();
    let o = std::ffi::OsStr::new;
    assert!(
        run_ok("mkfs.ext4", &[o("-q"), o("-F"), img.as_os_str()])
            && run_ok("mount", &[o("-o"), o("loop"), img.as_os_str(), mnt.as_os_str()]),
        "prerequisite missing: cannot make and loop-mount an ext4 image here (needs root and mkfs.ext4)"
    );
    let _guard = Mounted(mnt.clone());
    // Leave ~96 KiB: a few 32 KiB preallocations, then ENOSPC.
    let free = free_bytes(&mnt);
    enospc_case(&mnt, free.saturating_sub(96 * 1024));
}

fn enospc_case(dir: &std::path::Path, filler_bytes: u64) {
    // A filler to delete later, freeing room.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![1u8; filler_bytes as usize]).unwrap();

    let errors = Arc::new(Mutex::new(Vec::new()));
    let e2 = errors.clone();
    let dur = Arc::new(Durable::default());
    let d2 = dur.clone();
    let h = LogWriter::start(
        dir.to_owned(),
        LogOptions { pre_alloc_size_bytes: 32 * 1024, write_path: WritePath::Direct, ..Default::default() },
        Box::new(move |z| {
            *d2.zxid.lock() = z;
            d2.cv.notify_all();
        }),
        Box::new(move |e| match e {
            zkd::txnlog::LogWriteError::NoSpace {
                last_durable_zxid,
                first_rejected_zxid,
                last_rejected_zxid,
                ..
            } => e2.lock().push((last_durable_zxid, first_rejected_zxid, last_rejected_zxid)),
            e => panic!("unexpected {e}"),
        }),
    )
    .unwrap();
    let big = |z: i64| {
        let mut t = txn(z);
        t.body = TxnBody::SetData(SetDataTxn { path: "/big".into(), data: Some(vec![9; 2000]), version: 0 });
        t.hdr.txn_type = OpCode::SetData as i32;
        t
    };
    // Append one at a time until the disk is full.
    let mut z = 0;
    while errors.lock().is_empty() {
        z += 1;
        assert!(z < 1000, "never ran out of space");
        h.append(vec![big(z)]).unwrap();
        let t0 = std::time::Instant::now();
        while *dur.zxid.lock() < z && errors.lock().is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (last_durable, first_rej, last_rej) = errors.lock()[0];
    assert_eq!((first_rej, last_rej), (z, z));
    assert_eq!(last_durable, z - 1);
    assert_eq!(*dur.zxid.lock(), z - 1);
    // Before resume(): refused, reported again.
    h.append(vec![big(z)]).unwrap();
    let t0 = std::time::Instant::now();
    while errors.lock().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Free space, resume, and the caller re-sends from last_durable + 1.
    std::fs::remove_file(&filler).unwrap();
    h.resume().unwrap();
    h.append(vec![big(z), big(z + 1)]).unwrap();
    dur.wait_for(z + 1);
    h.shutdown();
    let files = read_all(dir);
    let all: Vec<i64> = files.iter().flat_map(|f| f.1.clone()).collect();
    assert_eq!(all, (1..=z + 1).collect::<Vec<_>>(), "no hole, no duplicate");
}

#[test]
fn a_full_file_rolls_to_the_preallocated_next_file_without_gaps() {
    for path in [WritePath::Pwrite, WritePath::Mmap, WritePath::Direct] {
        let d = tempfile::tempdir().unwrap();
        let (h, dur) = start(d.path(), LogOptions { write_path: path, ..small() });
        // Groups well under a file (a group larger than a whole file grows it inline instead).
        for z in 1..=3000 {
            h.append(vec![txn(z)]).unwrap();
            if z % 50 == 0 {
                dur.wait_for(z);
            }
        }
        h.shutdown();
        let files = read_all(d.path());
        let names: Vec<&String> = files.iter().map(|f| &f.0).collect();
        assert!(files.len() > 2, "{path:?}: 3000 txns of ~100 B need several 64 KiB files: {names:?}");
        let mut all = Vec::new();
        for (name, zs) in &files {
            assert_eq!(name, &format!("log.{:x}", zs[0]), "a file is named by its first zxid");
            // Every file is exactly one preallocation (the spare), never grown inline.
            assert_eq!(std::fs::metadata(d.path().join(name)).unwrap().len(), 64 * 1024, "{name}");
            all.extend_from_slice(zs);
        }
        assert_eq!(all, (1..=3000).collect::<Vec<_>>(), "{path:?}: every zxid once, in order");
        // The prepared spare is not a log file to any reader.
        assert!(d.path().join(zkd::txnlog::writer::SPARE_NAME).exists());
        assert!(!zkd::txnlog::writer::SPARE_NAME.starts_with("log."));
    }
}
