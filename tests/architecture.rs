//! Rules of the design that a reader could break without any other test noticing, checked on
//! the source itself:
//! - nothing blocks or polls on an executor thread: the code shards run (and the replica core,
//!   which a shard's executor hosts on small machines) never calls `std::thread::sleep`, and its
//!   only timers are the shard heartbeat and the accept back-off;
//! - every queue between threads has a bound: no `unbounded` channel anywhere in the server.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code before its `#[cfg(test)]` part, without comments. A line whose comment (on
/// it or just above it) says it runs on its "own thread" (not an executor), or that its timer is
/// "not a poll" (a deadline), is left out.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut prev = "";
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let marked = |l: &str| l.contains("// own thread") || l.contains("// not a poll");
        let own_thread = marked(line) || (prev.trim_start().starts_with("//") && marked(prev));
        prev = line;
        if own_thread {
            continue;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push((i + 1, code.to_string()));
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules whose code runs on shard executors: the shards, the replica core (hosted by a
/// shard on 1-3 cores), the request and tree code both call, the four-letter-word path, and the
/// quorum port's driver.
fn executor_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["shard", "replica", "sequencer", "request", "tree", "session"] {
        rust_files(&src().join(dir), &mut files);
    }
    files.push(src().join("admin").join("mod.rs"));
    // The quorum port and the learner's storage steps run on the replica core's executor.
    rust_files(&src().join("quorum").join("link"), &mut files);
    files.push(src().join("quorum").join("sync_storage.rs"));
    files.retain(|f| !f.ends_with("tests.rs"));
    assert!(files.len() > 10, "the executor modules moved: update this test ({files:?})");
    files
}

#[test]
fn nothing_sleeps_on_an_executor_thread() {
    let mut found = Vec::new();
    for f in executor_files() {
        for (n, line) in code_lines(&f) {
            if line.contains("thread::sleep") || line.contains("recv_timeout") {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
            // Timers are fine as events, not as polling: only the heartbeat and accept back-off.
            if line.contains("timer::sleep(")
                && !line.contains("timer::sleep(HEARTBEAT)")
                && !line.contains("Duration::from_millis(100)")
            {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "blocking or polling on an executor thread:\n{}", found.join("\n"));
}

#[test]
fn every_channel_between_threads_is_bounded() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for f in files {
        for (n, line) in code_lines(&f) {
            if line.contains("unbounded") {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "unbounded queues:\n{}", found.join("\n"));
}
