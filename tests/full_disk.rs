//! A full disk (ENOSPC) on a small tmpfs mounted for the test: writes fail with a clear error
//! (SystemError to the client, one log line), reads keep working, nothing acknowledged is lost,
//! writes resume once space returns, and a restart finds every acknowledged write. Needs root
//! (mount): ignored by a plain `cargo test`; tests/run-all.sh runs it with `--include-ignored`,
//! and where it cannot mount it fails rather than pass without having run.

mod common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zkd::proto::jute::Record;
use zkd::proto::*;

const DISK_BYTES: u64 = 24 << 20;

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn spawn(cfg: &std::path::Path, log: &std::path::Path) -> (Child, u16) {
    let log = std::fs::File::create(log).unwrap();
    spawn_zkd(cfg, |c| {
        c.env("ZKD_LOG", "info").stdout(Stdio::null()).stderr(log);
    })
}

fn set_data(c: &mut Raw, path: &str, data: &[u8]) -> i32 {
    let req = SetDataRequest { path: path.into(), data: Some(data.to_vec()), version: -1 };
    c.call(OpCode::SetData, &req.to_bytes()).0.err
}

#[test]
#[ignore = "needs root (mounts a tmpfs); run with --include-ignored, as tests/run-all.sh does"]
fn enospc_fails_writes_keeps_reads_and_loses_nothing() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={DISK_BYTES}"), "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "prerequisite missing: cannot mount a tmpfs here (needs root); the full-disk test did not run"
    );
    let _m = Mount(mnt.clone());
    let cfg = base.path().join("zoo.cfg");
    // Small preallocation steps so the log, not the preallocation, meets the full disk.
    std::fs::write(
        &cfg,
        format!(
            "tickTime=200\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\nmaxClientCnxns=0\n\
             preAllocSize=256\nsnapCount=1000000\nadmin.enableServer=false\n",
            mnt.display()
        ),
    )
    .unwrap();
    let log = base.path().join("zkd.log");
    let (mut child, port) = spawn(&cfg, &log);

    let mut c = Raw::connect(port);
    assert_eq!(c.create("/keep", b"before"), 0);
    // Fill the disk with a file we can delete later, leaving ~2 MiB.
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let filler_len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(filler_len - (2 << 20)).unwrap();

    // Write 64 KiB values until the log cannot take more.
    let value = vec![b'v'; 64 << 10];
    let mut acked = Vec::new();
    let mut first_err = None;
    for i in 0..200 {
        let path = format!("/n{i}");
        let err = c.create(&path, &value);
        if err == 0 {
            acked.push(path);
        } else {
            first_err = Some(err);
            break;
        }
    }
    assert!(!acked.is_empty(), "some writes fit before the disk filled");
    assert_eq!(
        first_err,
        Some(ErrorCode::SystemError as i32),
        "a full disk fails the write with SystemError"
    );
    // Reads keep working. (A new session needs a logged createSession, so connecting waits for
    // space like any write.)
    assert_eq!(c.get_data("/keep").unwrap().0.as_deref(), Some(&b"before"[..]));
    assert_eq!(c.get_data(&acked[0]).unwrap().0.unwrap().len(), value.len());
    // Still full: writes keep failing cleanly.
    assert_ne!(set_data(&mut c, "/keep", b"x"), 0);

    // Space returns: writes resume (the log retries about once a second).
    std::fs::remove_file(&filler).unwrap();
    let t0 = Instant::now();
    loop {
        let err = set_data(&mut c, "/keep", b"after");
        if err == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "writes did not resume after space returned: {err}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.create("/after", b"1"), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("no space left on device"), "a clear log line names the cause:\n{text}");

    // Restart: every acknowledged write is there.
    drop(c);
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, port) = spawn(&cfg, &log);
    let mut c = Raw::connect(port);
    for p in &acked {
        assert_eq!(c.get_data(p).unwrap().0.unwrap().len(), value.len(), "{p} lost");
    }
    assert_eq!(c.get_data("/keep").unwrap().0.as_deref(), Some(&b"after"[..]));
    assert!(c.get_data("/after").is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("full disk: {} writes acknowledged before ENOSPC, all present after restart", acked.len());
}
