//! Network namespaces for the partition faults: a hub namespace holding a bridge, one namespace
//! per node with a veth into the hub and the address 10.78.X.<i+1>/24, and a veth from the root
//! namespace into the hub with 10.78.X.254, so the recording clients (here, in the root namespace)
//! reach every node's client port whatever the partition.
//!
//! A partition is a set of iptables DROP rules on INPUT inside the node namespaces that spare the
//! root namespace's address: the servers lose each other, the clients keep their connections and
//! see what a client of a partitioned ZooKeeper sees. Everything is deleted on drop.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

fn run(args: &[&str]) -> anyhow::Result<String> {
    super::cluster::run(Command::new(args[0]).args(&args[1..]))
}

/// Root, `ip` and `iptables`.
pub fn net_prerequisites() -> Result<(), String> {
    super::cluster::root_and_tools("network namespaces, iptables", &["ip", "iptables"])
}

pub struct NetLab {
    tag: String,
    subnet: [u8; 3],
    nodes: usize,
    /// Namespaces made so far, deleted in reverse order.
    made: Vec<String>,
}

impl NetLab {
    pub fn new(nodes: usize) -> anyhow::Result<NetLab> {
        net_prerequisites().map_err(|why| anyhow::anyhow!("the partition faults cannot run: {why}"))?;
        let pid = std::process::id();
        let tag = format!("zkdl{pid}");
        // Stale labs of dead runs would hold their subnets: delete them first.
        for line in run(&["ip", "netns", "list"])?.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if let Some(owner) = name.strip_prefix("zkdl").and_then(|s| s.split('-').next()) {
                if owner.parse::<i32>().is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = run(&["ip", "netns", "del", name]);
                }
            }
        }
        let used = run(&["ip", "-4", "addr"])? + &run(&["ip", "-4", "route"])?;
        let x = (0..250u32)
            .map(|k| ((pid + k) % 250 + 1) as u8)
            .find(|x| !used.contains(&format!("10.78.{x}.")))
            .ok_or_else(|| anyhow::anyhow!("no free 10.78.X.0/24 subnet"))?;
        let mut lab = NetLab { tag, subnet: [10, 78, x], nodes, made: Vec::new() };
        lab.build()?;
        Ok(lab)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], last)
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.addr(i as u8 + 1)
    }

    fn root_ip(&self) -> Ipv4Addr {
        self.addr(254)
    }

    /// The file a process enters node `i`'s namespace through (setns).
    pub fn ns_path(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.ns(i)))
    }

    fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        run(&["ip", "netns", "add", name])?;
        self.made.push(name.to_string());
        run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.hub();
        self.add_ns(&hub)?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        // The root end goes with the hub namespace when that is deleted.
        let root_if = format!("zl{}r", std::process::id());
        run(&["ip", "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns", &hub])?;
        run(&["ip", "-n", &hub, "link", "set", "up0", "master", "br0", "up"])?;
        run(&["ip", "addr", "add", &format!("{}/24", self.root_ip()), "dev", &root_if])?;
        run(&["ip", "link", "set", &root_if, "up"])?;
        for i in 0..self.nodes {
            let ns = self.ns(i);
            self.add_ns(&ns)?;
            let hub_end = format!("v{i}");
            run(&[
                "ip", "-n", &hub, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            run(&["ip", "-n", &hub, "link", "set", &hub_end, "master", "br0", "up"])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{}/24", self.ip(i)), "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            self.iptables(i, &["-L", "-n"])?;
        }
        Ok(())
    }

    fn iptables(&self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        let ns = self.ns(i);
        let mut a = vec!["ip", "netns", "exec", &ns, "iptables", "-w"];
        a.extend_from_slice(args);
        run(&a).map(|_| ())
    }

    /// Cuts node `i` off from every other node, both ways.
    pub fn isolate(&self, i: usize) -> anyhow::Result<()> {
        let (root, me) = (self.root_ip().to_string(), self.ip(i).to_string());
        let subnet = format!("{}/24", self.addr(0));
        self.iptables(i, &["-A", "INPUT", "-s", &root, "-j", "ACCEPT"])?;
        self.iptables(i, &["-A", "INPUT", "-s", &subnet, "-j", "DROP"])?;
        for j in (0..self.nodes).filter(|&j| j != i) {
            self.iptables(j, &["-A", "INPUT", "-s", &me, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drops node `i`'s packets at every other node: it hears them, they do not hear it.
    pub fn mute(&self, i: usize) -> anyhow::Result<()> {
        let me = self.ip(i).to_string();
        for j in (0..self.nodes).filter(|&j| j != i) {
            self.iptables(j, &["-A", "INPUT", "-s", &me, "-j", "DROP"])?;
        }
        Ok(())
    }

    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            self.iptables(i, &["-F", "INPUT"])?;
        }
        Ok(())
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for name in self.made.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &name]);
        }
    }
}
