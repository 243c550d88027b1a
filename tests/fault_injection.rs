//! Damaged data directories, end to end through `zkd serve`: a flipped byte inside the log with
//! valid entries after it refuses to start (exit code 2, a message naming file and offset); a
//! torn log tail is cut and everything before it served; a truncated or empty newest snapshot is
//! skipped for the older one.

mod common;

use std::process::{Command, Stdio};

use common::*;

struct Zkd {
    cfg: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Zkd {
    fn new(extra: &str) -> Zkd {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\npreAllocSize=256\n{extra}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        Zkd { cfg, dir }
    }
    fn v2(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("version-2")
    }
    fn files(&self, prefix: &str) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.v2())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        v.sort_by_key(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            i64::from_str_radix(n.rsplit('.').next().unwrap(), 16).unwrap()
        });
        v
    }
    /// Runs the server, lets `f` talk to it, stops it with SIGKILL.
    fn run<R>(&self, f: impl FnOnce(u16) -> R) -> R {
        let (mut child, port) = spawn_zkd(&self.cfg, |c| {
            c.env("ZKD_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped());
        });
        let r = f(port);
        child.kill().unwrap();
        child.wait().unwrap();
        r
    }
    /// Starts the server expecting it to refuse: returns (exit code, stderr).
    fn refuse(&self) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_zkd"))
            .args(["serve", "--config"])
            .arg(&self.cfg)
            .env("ZKD_LOG", "warn")
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn write_nodes(port: u16, from: usize, to: usize) {
    let mut c = Raw::connect(port);
    for i in from..to {
        assert_eq!(c.create(&format!("/n{i}"), &[b'x'; 200]), 0);
    }
}

fn count_nodes(port: u16, upto: usize) -> usize {
    let mut c = Raw::connect(port);
    (0..upto).filter(|i| c.get_data(&format!("/n{i}")).is_ok()).count()
}

#[test]
fn a_flipped_byte_before_valid_entries_refuses_to_start_with_exit_2() {
    let z = Zkd::new("");
    z.run(|p| write_nodes(p, 0, 200));
    let log = z.files("log.").pop().unwrap();
    let mut b = std::fs::read(&log).unwrap();
    b[5000] ^= 0xFF;
    std::fs::write(&log, &b).unwrap();
    let (code, err) = z.refuse();
    assert_eq!(code, 2, "{err}");
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("offset"), "the message names file and offset: {err}");
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_served() {
    let z = Zkd::new("");
    z.run(|p| write_nodes(p, 0, 100));
    let log = z.files("log.").pop().unwrap();
    let b = std::fs::read(&log).unwrap();
    // The end of the data: one past the last entry's end-of-record byte ('B'); zeros follow.
    let end = b.iter().rposition(|&x| x != 0).unwrap() + 1;
    assert_eq!(b[end - 1], b'B');
    let mut torn = b.clone();
    for x in &mut torn[end - 30..end] {
        *x = 0; // the last entry loses its tail (a write cut short by a power loss)
    }
    std::fs::write(&log, &torn).unwrap();
    let n = z.run(|p| count_nodes(p, 100));
    assert_eq!(n, 99, "all but the torn last create survive");
}

#[test]
fn a_truncated_or_empty_newest_snapshot_falls_back_to_the_older_one() {
    for damage in ["truncate", "empty"] {
        let z = Zkd::new("snapCount=100");
        z.run(|p| write_nodes(p, 0, 400));
        let snaps = z.files("snapshot.");
        assert!(snaps.len() >= 2, "{damage}: snapCount=100 took several snapshots: {snaps:?}");
        let newest = snaps.last().unwrap();
        let len = std::fs::metadata(newest).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(newest).unwrap();
        f.set_len(if damage == "empty" { 0 } else { len / 2 }).unwrap();
        let n = z.run(|p| count_nodes(p, 400));
        assert_eq!(n, 400, "{damage}: the older snapshot plus the logs restore everything");
    }
}
