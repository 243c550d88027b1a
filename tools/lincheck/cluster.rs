//! The servers under test: N nodes (zkd, or Apache ZooKeeper as the oracle), each a process with
//! a directory of its own and, for the disk faults, a data directory on a loop-mounted ext4 image
//! of its own (root), in a blkio cgroup of its own (to slow its disk down), started in a time
//! namespace of its own (to jump its monotonic clock).
//!
//! zkd binds port 0 and reports its port (`--port-file`), so a restarted node comes back on a new
//! port: the client address table ([`Addrs`]) follows. Apache ZooKeeper cannot report its port; it
//! gets a held one (a socket bound with SO_REUSEADDR and never listened on, kept while it runs).
//! An ensemble's quorum and election ports are in every member's zoo.cfg, so they are held too.
//! For the partition faults each node runs in a network namespace of its own ([`NetLab`]) with an
//! address of its own, where the ports are ZooKeeper's defaults (2181, 2888, 3888).

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::netlab::NetLab;
use super::record::Addrs;

/// Which server runs on the nodes.
#[derive(Debug, Clone)]
pub enum ServerKind {
    Zkd {
        bin: PathBuf,
    },
    /// Apache ZooKeeper 3.8 (QuorumPeerMain/ZooKeeperServerMain) with this class path.
    Oracle {
        classpath: String,
    },
}

impl ServerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServerKind::Zkd { .. } => "zkd",
            ServerKind::Oracle { .. } => "oracle",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub kind: ServerKind,
    pub nodes: usize,
    /// Each node's data directory on a loop-mounted ext4 image of its own (needs root).
    pub disks: bool,
    /// Each node in a blkio cgroup of its own (needs root and `disks`).
    pub cgroups: bool,
    /// Each node in a network namespace of its own (needs root; the partition faults).
    pub netns: bool,
    /// The directory the nodes live in (created; removed with the cluster unless kept).
    pub dir: PathBuf,
}

/// How long a node may take to start serving.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
const IMAGE_BYTES: u64 = 256 << 20;

struct Node {
    dir: PathBuf,
    data: PathBuf,
    mnt: Option<PathBuf>,
    image: Option<PathBuf>,
    loopdev: Option<String>,
    /// "major:minor" of the loop device.
    devno: Option<String>,
    cgroup: Option<PathBuf>,
    child: Option<Child>,
    hold: Option<HeldPort>,
    /// The quorum and election ports of an ensemble member (held).
    peer_ports: Option<(HeldPort, HeldPort)>,
    port: Option<u16>,
    /// The address the node listens on (its namespace's, or loopback).
    ip: Ipv4Addr,
    paused: bool,
    /// The monotonic clock offset of the node's current life, seconds.
    clock_offset_s: i64,
}

pub struct Cluster {
    cfg: ClusterConfig,
    nodes: Vec<Node>,
    addrs: Addrs,
    net: Option<NetLab>,
}

/// The ports of a node in a namespace of its own.
const NS_PORTS: (u16, u16, u16) = (2181, 2888, 3888);

pub(super) fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().map_err(|e| anyhow::anyhow!("{cmd:?}: {e}"))?;
    anyhow::ensure!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Root (for `why`) and these commands on the PATH.
pub(super) fn root_and_tools(why: &str, tools: &[&str]) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("not root ({why})"));
    }
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{tool} is missing"));
        }
    }
    Ok(())
}

/// Root, and the commands the disk faults need.
pub fn disk_prerequisites() -> Result<(), String> {
    root_and_tools(
        "loop devices, mount, cgroups, time namespaces",
        &["mkfs.ext4", "mount", "umount", "losetup"],
    )?;
    if !Path::new("/sys/fs/cgroup/blkio/blkio.throttle.write_iops_device").exists() {
        return Err("no cgroup-v1 blkio throttling at /sys/fs/cgroup/blkio".into());
    }
    Ok(())
}

impl Cluster {
    pub fn start(cfg: ClusterConfig) -> anyhow::Result<Cluster> {
        anyhow::ensure!(cfg.nodes >= 1, "--nodes must be at least 1");
        std::fs::create_dir_all(&cfg.dir)?;
        let addrs: Addrs = Arc::new(Mutex::new(vec![None; cfg.nodes]));
        let net = if cfg.netns { Some(NetLab::new(cfg.nodes)?) } else { None };
        let mut c = Cluster { cfg, nodes: Vec::new(), addrs, net };
        for i in 0..c.cfg.nodes {
            let n = c.prepare_node(i)?;
            c.nodes.push(n);
        }
        for i in 0..c.cfg.nodes {
            c.write_config(i)?;
        }
        // An ensemble serves only once a quorum is up: start every member, then wait for each.
        for i in 0..c.cfg.nodes {
            c.spawn(i, 0)?;
        }
        for i in 0..c.cfg.nodes {
            c.wait_serving(i)?;
        }
        Ok(c)
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs.clone()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn prepare_node(&self, i: usize) -> anyhow::Result<Node> {
        let dir = self.cfg.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut n = Node {
            data: dir.join("data"),
            dir: dir.clone(),
            mnt: None,
            image: None,
            loopdev: None,
            devno: None,
            cgroup: None,
            child: None,
            hold: None,
            peer_ports: None,
            port: None,
            ip: self.net.as_ref().map_or(Ipv4Addr::LOCALHOST, |net| net.ip(i)),
            paused: false,
            clock_offset_s: 0,
        };
        if self.cfg.disks {
            let image = dir.join("disk.img");
            std::fs::File::create(&image)?.set_len(IMAGE_BYTES)?;
            // No blocks reserved for root: the disk-full fault fills what the server can use.
            run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&image))?;
            let mnt = dir.join("mnt");
            std::fs::create_dir_all(&mnt)?;
            n.image = Some(image);
            n.mnt = Some(mnt.clone());
            mount(&mut n)?;
            n.data = mnt.join("data");
        }
        std::fs::create_dir_all(&n.data)?;
        if self.cfg.cgroups {
            let cg = PathBuf::from(format!("/sys/fs/cgroup/blkio/zkd-lincheck-{}-n{i}", std::process::id()));
            std::fs::create_dir_all(&cg).map_err(|e| anyhow::anyhow!("{}: {e}", cg.display()))?;
            n.cgroup = Some(cg);
        }
        if self.net.is_some() {
            // A namespace of its own: its ports are free.
            if let ServerKind::Oracle { .. } = self.cfg.kind {
                n.port = Some(NS_PORTS.0);
            }
            return Ok(n);
        }
        if let ServerKind::Oracle { .. } = self.cfg.kind {
            n.hold = Some(HeldPort::new()?);
            n.port = n.hold.as_ref().map(|h| h.port);
        }
        // Quorum and election ports are in every member's zoo.cfg, so they are fixed (held) for
        // zkd too; both servers bind them with SO_REUSEADDR, beside the held socket.
        if self.cfg.nodes > 1 {
            n.peer_ports = Some((HeldPort::new()?, HeldPort::new()?));
        }
        Ok(n)
    }

    fn write_config(&self, i: usize) -> anyhow::Result<()> {
        let n = &self.nodes[i];
        let port = if self.net.is_some() { NS_PORTS.0 } else { n.port.unwrap_or(0) };
        let ip = n.ip;
        let mut cfg = format!(
            "tickTime=200\ninitLimit=50\nsyncLimit=25\ndataDir={}\nclientPort={port}\nclientPortAddress={ip}\n\
             maxClientCnxns=0\nminSessionTimeout=400\nmaxSessionTimeout=20000\n4lw.commands.whitelist=*\n\
             admin.enableServer=false\nsnapCount=5000\npreAllocSize=512\n",
            n.data.display()
        );
        if self.cfg.nodes > 1 {
            for (j, m) in self.nodes.iter().enumerate() {
                if let Some((q, e)) = &m.peer_ports {
                    cfg.push_str(&format!("server.{}=127.0.0.1:{}:{}\n", j + 1, q.port, e.port));
                } else if self.net.is_some() {
                    cfg.push_str(&format!("server.{}={}:{}:{}\n", j + 1, m.ip, NS_PORTS.1, NS_PORTS.2));
                }
            }
            std::fs::write(n.data.join("myid"), format!("{}\n", i + 1))?;
        }
        std::fs::write(n.dir.join("zoo.cfg"), cfg)?;
        // The data directory and myid are the operator's, in place before the server ever runs:
        // durable, or a disk shut down in the first seconds would take them (and the server's
        // identity) with it.
        if let Some(mnt) = &n.mnt {
            syncfs(mnt)?;
        }
        Ok(())
    }

    /// Starts node `i` (its process only), in a time namespace whose monotonic clock is
    /// `clock_offset_s` away from the machine's when that is not 0.
    fn spawn(&mut self, i: usize, clock_offset_s: i64) -> anyhow::Result<()> {
        let kind = self.cfg.kind.clone();
        let nodes = self.cfg.nodes;
        // The node's network namespace, entered between fork and exec (the file stays open
        // until the child has been spawned).
        let netns = match &self.net {
            Some(net) => Some(std::fs::File::open(net.ns_path(i))?),
            None => None,
        };
        let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let n = &mut self.nodes[i];
        let cfg = n.dir.join("zoo.cfg");
        let port_file = n.dir.join("zkd.port");
        let mut cmd = match &kind {
            ServerKind::Zkd { bin } => {
                let _ = std::fs::remove_file(&port_file);
                let mut c = Command::new(bin);
                c.args(["serve", "--config"])
                    .arg(&cfg)
                    .arg("--port-file")
                    .arg(&port_file)
                    .env("ZKD_LOG", "info");
                c
            }
            ServerKind::Oracle { classpath } => {
                let mut c = Command::new("java");
                c.args([
                    "-Xmx256m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Dzookeeper.admin.enableServer=false",
                ])
                .arg("-cp")
                .arg(classpath)
                .arg(if nodes > 1 {
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain"
                } else {
                    "org.apache.zookeeper.server.ZooKeeperServerMain"
                })
                .arg(&cfg);
                c
            }
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(n.dir.join("server.log"))?;
        writeln!(&log, "==== start (monotonic clock offset {clock_offset_s} s)")?;
        cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null());
        // What the child does between fork and exec, prepared here: it may not allocate there.
        let cgroup_procs = match &n.cgroup {
            Some(cg) => Some(CString::new(cg.join("cgroup.procs").as_os_str().as_encoded_bytes())?),
            None => None,
        };
        let offsets = (clock_offset_s != 0)
            .then(|| format!("monotonic {clock_offset_s} 0\nboottime {clock_offset_s} 0\n").into_bytes());
        let timens = CString::new("/proc/self/timens_offsets")?;
        // SAFETY: the closure only makes async-signal-safe system calls (open, write, close,
        // unshare, getpid) on buffers prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(p) = &cgroup_procs {
                    // "0" moves the writing process itself.
                    write_file(p, b"0")?;
                }
                if let Some(o) = &offsets {
                    if libc::unshare(libc::CLONE_NEWTIME) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The offsets of a new time namespace can be set until a process enters
                    // it, which this one does at exec.
                    write_file(&timens, o)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| anyhow::anyhow!("starting node {i}: {e}"))?;
        drop(netns);
        n.child = Some(child);
        n.paused = false;
        n.clock_offset_s = clock_offset_s;
        if let ServerKind::Zkd { .. } = kind {
            n.port = None;
        }
        Ok(())
    }

    fn wait_serving(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let zkd = matches!(self.cfg.kind, ServerKind::Zkd { .. });
        loop {
            let n = &mut self.nodes[i];
            if let Some(st) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                n.child = None;
                anyhow::bail!("node {i} exited during start-up ({st}); log:\n{}", self.log_tail(i, 3000));
            }
            if zkd && n.port.is_none() {
                n.port =
                    std::fs::read_to_string(n.dir.join("zkd.port")).ok().and_then(|t| t.trim().parse().ok());
            }
            if let Some(p) = n.port {
                let at = SocketAddr::new(IpAddr::V4(n.ip), p);
                if four_letter(at, "ruok") == "imok" && four_letter(at, "srvr").contains("Mode: ") {
                    self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(at);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "node {i} did not serve within {START_TIMEOUT:?}; log:\n{}",
                    self.log_tail(i, 3000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `bytes` of node `i`'s log.
    pub fn log_tail(&self, i: usize, bytes: usize) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = std::fs::File::open(self.nodes[i].dir.join("server.log")) {
            let _ = f.read_to_end(&mut s);
        }
        let from = s.len().saturating_sub(bytes);
        String::from_utf8_lossy(&s[from..]).into_owned()
    }

    fn mark_down(&self, i: usize) {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
    }

    fn pid(&self, i: usize) -> anyhow::Result<libc::pid_t> {
        let c = self.nodes[i].child.as_ref().ok_or_else(|| anyhow::anyhow!("node {i} is not running"))?;
        Ok(c.id() as libc::pid_t)
    }

    /// SIGKILL; waits for the process to be gone.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.mark_down(i);
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Starts node `i` again and waits until it serves.
    pub fn restart(&mut self, i: usize, clock_offset_s: i64) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].child.is_none(), "node {i} is still running");
        self.spawn(i, clock_offset_s)?;
        self.wait_serving(i)
    }

    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.pid(i)?;
        // SAFETY: pid is our own child's, not yet waited for.
        anyhow::ensure!(unsafe { libc::kill(pid, libc::SIGSTOP) } == 0, "SIGSTOP node {i}");
        self.nodes[i].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.pid(i)?;
        // SAFETY: as in pause.
        anyhow::ensure!(unsafe { libc::kill(pid, libc::SIGCONT) } == 0, "SIGCONT node {i}");
        self.nodes[i].paused = false;
        Ok(())
    }

    /// Waits up to `timeout` for node `i` to exit by itself; None if it is still running.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(c) = self.nodes[i].child.as_mut() else { return Ok(None) };
            if let Some(st) = c.try_wait()? {
                self.nodes[i].child = None;
                self.mark_down(i);
                return Ok(Some(st));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn mnt(&self, i: usize) -> anyhow::Result<&Path> {
        self.nodes[i]
            .mnt
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("node {i} has no disk of its own (--disks)"))
    }

    /// Shuts node `i`'s file system down as a pulled disk would (EXT4_IOC_SHUTDOWN with
    /// EXT4_GOING_FLAGS_NOLOGFLUSH: the journal is not flushed, only what was synced survives).
    pub fn shutdown_fs(&self, i: usize) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        // _IOR('X', 125, __u32)
        const EXT4_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
        let dir = std::fs::File::open(self.mnt(i)?)?;
        let flags: u32 = 2;
        // SAFETY: the ioctl reads one u32 from the pointer given.
        let rc = unsafe { libc::ioctl(dir.as_raw_fd(), EXT4_IOC_SHUTDOWN as _, &flags) };
        anyhow::ensure!(rc == 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
        Ok(())
    }

    /// Unmounts and mounts node `i`'s disk again ("power back": the journal replays). The node
    /// must not be running.
    pub fn remount(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.nodes[i].child.is_none(), "node {i} is still running");
        let n = &mut self.nodes[i];
        unmount(n);
        mount(n)
    }

    /// Fills node `i`'s disk (a file of preallocated blocks) until not one more 4 KiB block fits.
    pub fn fill_disk(&self, i: usize) -> anyhow::Result<u64> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::create(self.mnt(i)?.join("filler"))?;
        let mut len: u64 = 0;
        let mut chunk: u64 = 64 << 20;
        while chunk >= 4096 {
            // SAFETY: fallocate on an open file; the range is within off_t.
            let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, len as libc::off_t, chunk as libc::off_t) };
            if rc == 0 {
                len += chunk;
            } else {
                chunk /= 2;
            }
        }
        Ok(len)
    }

    /// Frees what `fill_disk` took, durably: an unsynced delete would come back after a later
    /// fs-shutdown (the journal not flushed), and the disk would be full again.
    pub fn unfill_disk(&self, i: usize) -> anyhow::Result<()> {
        let mnt = self.mnt(i)?;
        std::fs::remove_file(mnt.join("filler"))?;
        syncfs(mnt)
    }

    /// Limits node `i`'s writes to its disk to `iops` a second (0: no limit).
    pub fn throttle(&self, i: usize, iops: u32) -> anyhow::Result<()> {
        let n = &self.nodes[i];
        let (Some(cg), Some(dev)) = (&n.cgroup, &n.devno) else {
            anyhow::bail!("node {i} has no disk and cgroup of its own");
        };
        let p = cg.join("blkio.throttle.write_iops_device");
        std::fs::write(&p, format!("{dev} {iops}")).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        Ok(())
    }

    fn net(&self) -> anyhow::Result<&NetLab> {
        self.net.as_ref().ok_or_else(|| anyhow::anyhow!("the cluster was started without network namespaces"))
    }

    /// Cuts node `i` off from the other nodes, both ways (clients still reach it).
    pub fn isolate(&self, i: usize) -> anyhow::Result<()> {
        self.net()?.isolate(i)
    }

    /// The other nodes stop hearing node `i`; it still hears them.
    pub fn mute(&self, i: usize) -> anyhow::Result<()> {
        self.net()?.mute(i)
    }

    /// Every node hears every other again.
    pub fn heal(&self) -> anyhow::Result<()> {
        self.net()?.heal()
    }

    /// The node that says it leads (`srvr`), if one does.
    pub fn leader(&self) -> Option<usize> {
        let addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        addrs.iter().position(|a| a.is_some_and(|at| four_letter(at, "srvr").contains("Mode: leader")))
    }

    pub fn clock_offset_s(&self, i: usize) -> i64 {
        self.nodes[i].clock_offset_s
    }

    /// Stops every node (SIGTERM, then SIGKILL) and releases its disk and cgroup.
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.mark_down(i);
            let n = &mut self.nodes[i];
            if let Some(mut c) = n.child.take() {
                if n.paused {
                    // SAFETY: our own child.
                    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
                }
                // SAFETY: our own child.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            if let (Some(cg), Some(dev)) = (&n.cgroup, &n.devno) {
                let _ = std::fs::write(cg.join("blkio.throttle.write_iops_device"), format!("{dev} 0"));
            }
            unmount(n);
            if let Some(cg) = n.cgroup.take() {
                let _ = std::fs::remove_dir(&cg);
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn mount(n: &mut Node) -> anyhow::Result<()> {
    let (Some(image), Some(mnt)) = (&n.image, &n.mnt) else { return Ok(()) };
    let dev = run(Command::new("losetup").args(["--find", "--show"]).arg(image))?;
    if let Err(e) = run(Command::new("mount").arg(&dev).arg(mnt)) {
        let _ = run(Command::new("losetup").args(["-d", &dev]));
        return Err(e);
    }
    let c = CString::new(dev.clone())?;
    // SAFETY: an all-zero stat is a valid value; stat writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated path; st is a valid stat buffer.
    anyhow::ensure!(unsafe { libc::stat(c.as_ptr(), &mut st) } == 0, "stat {dev}");
    n.devno = Some(format!("{}:{}", libc::major(st.st_rdev), libc::minor(st.st_rdev)));
    n.loopdev = Some(dev);
    Ok(())
}

fn unmount(n: &mut Node) {
    if n.loopdev.is_none() {
        return;
    }
    if let Some(mnt) = &n.mnt {
        for _ in 0..50 {
            match Command::new("umount").arg(mnt).output() {
                Ok(o) if o.status.success() => break,
                // Busy for a moment after the server died.
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
    if let Some(dev) = n.loopdev.take() {
        let _ = Command::new("losetup").args(["-d", &dev]).output();
    }
    n.devno = None;
}

/// Makes everything written to the file system holding `path` durable.
fn syncfs(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs on an open descriptor.
    anyhow::ensure!(
        unsafe { libc::syncfs(dir.as_raw_fd()) } == 0,
        "syncfs {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// open(path, O_WRONLY), write, close: for the child between fork and exec.
fn write_file(path: &CString, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: path is NUL-terminated; bytes is a valid buffer; the fd is closed before return.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != bytes.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// A four-letter word's answer ("" if the server does not answer within a second).
pub fn four_letter(at: SocketAddr, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&at, Duration::from_secs(1)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A port for a server that cannot bind port 0 and report it: a socket bound to 0.0.0.0:0 with
/// SO_REUSEADDR and never listened on, kept open while the server runs. The server's listener
/// (SO_REUSEADDR too) binds beside it; meanwhile the kernel hands the port to no other bind of
/// port 0 and uses it for no outgoing connection.
struct HeldPort {
    fd: libc::c_int,
    port: u16,
}

impl HeldPort {
    fn new() -> anyhow::Result<HeldPort> {
        // SAFETY: plain socket calls on a descriptor owned here; sockaddr_in is plain data.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut held = HeldPort { fd, port: 0 };
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            anyhow::ensure!(
                libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len) == 0,
                "bind: {}",
                std::io::Error::last_os_error()
            );
            let mut got: libc::sockaddr_in = std::mem::zeroed();
            let mut glen = len;
            anyhow::ensure!(
                libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut glen) == 0,
                "getsockname: {}",
                std::io::Error::last_os_error()
            );
            held.port = u16::from_be(got.sin_port);
            Ok(held)
        }
    }
}

impl Drop for HeldPort {
    fn drop(&mut self) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}
