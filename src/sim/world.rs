//! The world around the nodes: simulated time, the event queue, clocks, disks, the network,
//! clients and the chaos that breaks them, and the step loop that checks the invariants after
//! every event. One `StdRng` drives all of it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::invariants::{chain_next, NodeView, Seen, Watch};
use super::net::{Link, Net, Sent};
use super::{Boot, Channel, Effect, Entry, Input, Ms, SimNode, Txn};
use crate::quorum::{Members, PeerState, Sid};

/// How a run is shaped. `Config::new(n)` gives the defaults CI uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    /// Length of the chaos phase (simulated ms).
    pub chaos_ms: Ms,
    /// Once faults stop, a leader must serve and a write must reach every node within this.
    pub liveness_ms: Ms,
    pub clients: usize,
    /// Mean time between injected faults in the chaos phase.
    pub fault_every_ms: Ms,
    /// Keep a trace of every event (the runner turns it on to replay a failing seed).
    pub trace: bool,
    /// How many trace lines a failure report prints.
    pub trace_tail: usize,
}

impl Config {
    pub fn new(nodes: usize) -> Config {
        assert!((1..=63).contains(&nodes), "node bitmasks are 64 bits wide");
        Config {
            nodes,
            chaos_ms: 4_000,
            // FastLeaderElection's notification timeout doubles up to 60 s while a node looks
            // in vain; after a long chaos phase recovery may wait that long.
            liveness_ms: 90_000,
            clients: 3,
            fault_every_ms: 150,
            trace: false,
            // ZKD_SIM_TRACE=n prints the last n events of a failure instead.
            trace_tail: std::env::var("ZKD_SIM_TRACE").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(80),
        }
    }
}

/// Why a run failed: the seed and step replay it exactly.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub nodes: usize,
    pub step: u64,
    pub time_ms: Ms,
    /// The invariant that broke (a function of `invariants`), or `liveness`.
    pub invariant: &'static str,
    pub what: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sim failure: seed {} ({} nodes) at step {}, t={} ms: {}: {}",
            self.seed, self.nodes, self.step, self.time_ms, self.invariant, self.what
        )?;
        writeln!(f, "rerun: ZKD_SIM_SEED={} (the last {} events follow)", self.seed, self.trace.len())?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// What a passing run did (to see that the chaos really happened).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub crashes: u64,
    pub torn_tails: u64,
    pub stops: u64,
    pub partitions: u64,
    pub breaks: u64,
    pub duplicates: u64,
    pub writes_acked: u64,
    pub syncs_done: u64,
    pub leaders: u64,
    /// Simulated ms from the end of chaos until the liveness write reached every node.
    pub recovery_ms: Ms,
}

#[derive(Debug)]
enum Ev<M> {
    /// `gen` tells the node's current timer from one a stop ended.
    Tick {
        node: usize,
        inc: u64,
        gen: u64,
    },
    Deliver {
        link: Link,
        to: usize,
    },
    /// The node learns that a connection broke.
    Lost {
        link: Link,
        node: usize,
        gen: u64,
        inc: u64,
    },
    /// A connection the node asked for is up.
    Connected {
        link: Link,
        node: usize,
        gen: u64,
        inc: u64,
    },
    /// TCP gives up on a connection with a blocked direction.
    TcpTimeout {
        link: Link,
        gen: u64,
    },
    /// The log's sync of its first `len` entries (the last being `zxid`) completes.
    Synced {
        node: usize,
        inc: u64,
        len: usize,
        zxid: i64,
    },
    Restart {
        node: usize,
    },
    Resume {
        node: usize,
    },
    Chaos,
    Liveness,
    Client {
        c: usize,
    },
    /// A client's request reaches its node.
    Request {
        node: usize,
        inc: u64,
        input: Input<M>,
    },
}

struct Scheduled<M> {
    at: Ms,
    seq: u64,
    ev: Ev<M>,
}

impl<M> PartialEq for Scheduled<M> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<M> Eq for Scheduled<M> {}
impl<M> PartialOrd for Scheduled<M> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<M> Ord for Scheduled<M> {
    /// Earliest first (the heap is a max-heap), then in scheduling order.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A node's monotonic clock: its own rate, and it may stand still while the node is stopped.
struct Clock {
    local_us: u64,
    at: Ms,
    rate_permille: u64,
    running: bool,
}

impl Clock {
    fn advance(&mut self, now: Ms) {
        if self.running {
            self.local_us += (now - self.at) * self.rate_permille;
        }
        self.at = now;
    }

    fn read(&mut self, now: Ms) -> Ms {
        self.advance(now);
        self.local_us / 1000
    }

    /// Global ms until the node's clock has moved `local_ms` (at least 1).
    fn global_for(&self, local_ms: Ms) -> Ms {
        (local_ms * 1000).div_ceil(self.rate_permille).max(1)
    }
}

struct Disk {
    log: Vec<Entry>,
    durable: usize,
    accepted: u32,
    current: u32,
    /// A sync is under way (group commit: one at a time covers everything appended before it).
    syncing: bool,
}

struct Node<N: SimNode> {
    sid: Sid,
    sm: Option<N>,
    /// Bumped at every crash: events of an earlier life are dropped.
    inc: u64,
    disk: Disk,
    state: Vec<Entry>,
    chain: Vec<u64>,
    role: PeerState,
    epoch: u32,
    serving: bool,
    clock: Clock,
    stopped: bool,
    /// The timer's generation (a resume starts a new one).
    ticks: u64,
    /// Events that reached the node while it was stopped, handled when it resumes.
    deferred: Vec<Ev<N::Msg>>,
}

impl<N: SimNode> Node<N> {
    fn rebuild_state(&mut self, entries: Vec<Entry>) {
        self.chain.clear();
        let mut h = 0;
        for e in &entries {
            h = chain_next(h, e);
            self.chain.push(h);
        }
        self.state = entries;
    }
}

struct Client {
    session: i64,
    /// The node (and its life) this client's session is on.
    node: Option<(usize, u64)>,
    next_cxid: i32,
    /// Writes sent and not answered, in order.
    outstanding: VecDeque<Txn>,
    syncs: u64,
    /// When the last request was handed to the node (the client's own link is FIFO too).
    last_sent: Ms,
}

/// The liveness phase's write and what became of it.
struct Probe {
    started: Ms,
    client: usize,
    txn: Option<Txn>,
    zxid: Option<i64>,
}

pub struct World<N: SimNode> {
    cfg: Config,
    seed: u64,
    rng: StdRng,
    now: Ms,
    step: u64,
    seq: u64,
    events: BinaryHeap<Scheduled<N::Msg>>,
    members: Members,
    nodes: Vec<Node<N>>,
    net: Net<N::Msg>,
    clients: Vec<Client>,
    next_session: i64,
    chaos: bool,
    probe: Option<Probe>,
    watch: Watch,
    seen: Vec<Seen>,
    trace: VecDeque<String>,
    /// Every write a client was told committed, with its zxid.
    acked: Vec<(i64, Txn)>,
    /// A node that could not restart from its disk.
    boot_failure: Option<String>,
    pub stats: Stats,
}

/// What the node's effects did to the world that the step loop must follow up.
impl<N: SimNode> World<N> {
    pub fn new(cfg: Config, seed: u64) -> World<N> {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = cfg.nodes;
        let members = Members::new((1..=n as Sid).collect::<Vec<_>>(), []);
        let nodes = (0..n)
            .map(|i| Node {
                sid: i as Sid + 1,
                sm: None,
                inc: 0,
                disk: Disk { log: Vec::new(), durable: 0, accepted: 0, current: 0, syncing: false },
                state: Vec::new(),
                chain: Vec::new(),
                role: PeerState::Looking,
                epoch: 0,
                serving: false,
                clock: Clock {
                    local_us: rng.gen_range(0..1_000_000_000),
                    at: 0,
                    rate_permille: rng.gen_range(900..=1100),
                    running: true,
                },
                stopped: false,
                ticks: 0,
                deferred: Vec::new(),
            })
            .collect();
        let clients = (0..cfg.clients)
            .map(|_| Client {
                session: 0,
                node: None,
                next_cxid: 1,
                outstanding: VecDeque::new(),
                syncs: 0,
                last_sent: 0,
            })
            .collect();
        let mut w = World {
            seed,
            rng,
            now: 0,
            step: 0,
            seq: 0,
            events: BinaryHeap::new(),
            members,
            nodes,
            net: Net::new(n),
            clients,
            next_session: 0x100_0000_0000,
            chaos: true,
            probe: None,
            watch: Watch::default(),
            seen: Vec::new(),
            trace: VecDeque::new(),
            acked: Vec::new(),
            boot_failure: None,
            stats: Stats::default(),
            cfg,
        };
        for i in 0..n {
            // Nodes come up over the first 100 ms, as an ensemble started by hand would.
            let at = w.rng.gen_range(0..100);
            w.schedule(at, Ev::Restart { node: i });
        }
        for c in 0..w.cfg.clients {
            let at = w.rng.gen_range(0..200);
            w.schedule(at, Ev::Client { c });
        }
        let first = w.rng.gen_range(0..2 * w.cfg.fault_every_ms);
        w.schedule(first, Ev::Chaos);
        w.schedule(w.cfg.chaos_ms, Ev::Liveness);
        w
    }

    fn schedule(&mut self, at: Ms, ev: Ev<N::Msg>) {
        self.seq += 1;
        self.events.push(Scheduled { at, seq: self.seq, ev });
    }

    fn fail(&self, invariant: &'static str, what: String) -> Failure {
        let tail = self.trace.len().saturating_sub(self.cfg.trace_tail);
        Failure {
            seed: self.seed,
            nodes: self.cfg.nodes,
            step: self.step,
            time_ms: self.now,
            invariant,
            what,
            trace: self.trace.iter().skip(tail).cloned().collect(),
        }
    }

    fn note(&mut self, f: impl FnOnce() -> String) {
        if self.cfg.trace {
            let line = format!("#{} t={} {}", self.step, self.now, f());
            self.trace.push_back(line);
            if self.trace.len() > 100_000 {
                self.trace.pop_front();
            }
        }
    }

    /// Runs chaos then liveness; Ok with the stats if every invariant held and the cluster
    /// recovered in time.
    pub fn run(mut self) -> Result<Stats, Failure> {
        self.run_until_done()
    }

    /// The failure report for a run that panicked (the world is as the panic left it).
    pub fn failure_after_panic(&self, what: String) -> Failure {
        self.fail("no_node_panics", what)
    }

    /// `run`, on a borrowed world (so that a panic leaves the world to report from).
    pub fn run_until_done(&mut self) -> Result<Stats, Failure> {
        let deadline = self.cfg.chaos_ms + self.cfg.liveness_ms;
        while let Some(s) = self.events.pop() {
            assert!(s.at >= self.now, "time never runs backwards");
            self.now = s.at;
            if self.now > deadline {
                let what = self.liveness_report();
                return Err(self.fail("liveness", what));
            }
            self.step += 1;
            self.handle(s.ev);
            if let Some(what) = self.boot_failure.take() {
                return Err(self.fail("nodes_restart_from_their_disk", what));
            }
            let seen = std::mem::take(&mut self.seen);
            let views: Vec<NodeView<'_>> = self
                .nodes
                .iter()
                .map(|n| NodeView {
                    sid: n.sid,
                    up: n.sm.is_some(),
                    role: n.role,
                    epoch: n.epoch,
                    serving: n.serving,
                    state: &n.state,
                    chain: &n.chain,
                    log: &n.disk.log,
                })
                .collect();
            let checked = self.watch.after_step(&self.members, &seen, &views);
            drop(views);
            if let Err((invariant, what)) = checked {
                return Err(self.fail(invariant, what));
            }
            if self.liveness_done() {
                self.final_checks()?;
                self.stats.steps = self.step;
                return Ok(self.stats.clone());
            }
        }
        Err(self.fail("liveness", "the event queue ran dry (no node keeps a timer?)".into()))
    }

    fn handle(&mut self, ev: Ev<N::Msg>) {
        match ev {
            Ev::Tick { node, inc, gen } => {
                if !self.current(node, inc) || self.nodes[node].stopped || self.nodes[node].ticks != gen {
                    return; // a stopped node's ticks resume with it
                }
                self.input(node, Input::Tick);
                let next = self.nodes[node].clock.global_for(N::tick_ms());
                self.schedule(self.now + next, Ev::Tick { node, inc, gen });
            }
            Ev::Deliver { link, to } => {
                if self.nodes[to].sm.is_none() || self.nodes[to].stopped {
                    return; // rescheduled when it resumes; a crash drops the connection anyway
                }
                let Some(msg) = self.net.take(self.now, link, to) else { return };
                let from = if to == link.lo { link.hi } else { link.lo };
                if N::duplicates_ok(link.channel) && self.chaos && self.rng.gen_ratio(1, 50) {
                    self.stats.duplicates += 1;
                    self.net.push_front(self.now, link, from, msg.clone());
                    self.schedule(self.now, Ev::Deliver { link, to });
                }
                let (fs, ts) = (self.nodes[from].sid, self.nodes[to].sid);
                self.note(|| format!("n{ts} <- n{fs} {:?}: {msg:?}", link.channel));
                self.input(to, Input::Message { from: fs, channel: link.channel, msg });
            }
            Ev::Lost { link, node, gen, inc } => {
                if !self.current(node, inc) {
                    return;
                }
                if self.nodes[node].stopped {
                    self.nodes[node].deferred.push(Ev::Lost { link, node, gen, inc });
                    return;
                }
                self.net.told(link, node, gen, self.now);
                let peer = self.nodes[if node == link.lo { link.hi } else { link.lo }].sid;
                let sid = self.nodes[node].sid;
                self.note(|| format!("n{sid} lost connection to n{peer} ({:?})", link.channel));
                self.input(node, Input::ConnectionLost { peer, channel: link.channel });
            }
            Ev::Connected { link, node, gen, inc } => {
                if !self.current(node, inc) || self.net.gen(link) != gen || !self.net.is_live(link) {
                    return;
                }
                if self.nodes[node].stopped {
                    self.nodes[node].deferred.push(Ev::Connected { link, node, gen, inc });
                    return;
                }
                let peer = self.nodes[if node == link.lo { link.hi } else { link.lo }].sid;
                self.input(node, Input::Connected { peer, channel: link.channel });
            }
            Ev::TcpTimeout { link, gen } => {
                if self.net.gen(link) == gen && self.net.pair_blocked(link.lo, link.hi) {
                    self.break_link(link, false);
                }
            }
            Ev::Synced { node, inc, len, zxid } => {
                if !self.current(node, inc) {
                    return;
                }
                let d = &mut self.nodes[node].disk;
                d.syncing = false;
                let intact = len <= d.log.len() && len > 0 && d.log[len - 1].zxid == zxid;
                if intact && len > d.durable {
                    let zxids = d.log[d.durable..len].iter().map(|e| e.zxid).collect();
                    d.durable = len;
                    let sid = self.nodes[node].sid;
                    self.seen.push(Seen::Durable { sid, zxids });
                    if self.nodes[node].stopped {
                        self.nodes[node].deferred.push(Ev::Synced { node, inc, len, zxid });
                    } else {
                        self.input(node, Input::LogDurable { zxid });
                    }
                }
                self.maybe_sync(node);
            }
            Ev::Restart { node } => self.boot(node),
            Ev::Resume { node } => self.resume(node),
            Ev::Chaos => {
                if self.chaos {
                    self.inject_fault();
                    let next = self.rng.gen_range(1..2 * self.cfg.fault_every_ms);
                    self.schedule(self.now + next, Ev::Chaos);
                }
            }
            Ev::Liveness => self.start_liveness(),
            Ev::Client { c } => self.client_act(c),
            Ev::Request { node, inc, input } => {
                if !self.current(node, inc) {
                    return;
                }
                let session = match &input {
                    Input::ClientWrite { txn } => txn.session,
                    Input::ClientSync { session, .. } => *session,
                    _ => unreachable!("only client inputs travel as requests"),
                };
                if !self.clients.iter().any(|c| c.session == session && c.node == Some((node, inc))) {
                    return; // the server closed that connection: what was in flight is gone
                }
                if self.nodes[node].stopped {
                    self.nodes[node].deferred.push(Ev::Request { node, inc, input });
                    return;
                }
                self.input(node, input);
            }
        }
    }

    fn current(&self, node: usize, inc: u64) -> bool {
        self.nodes[node].sm.is_some() && self.nodes[node].inc == inc
    }

    /// Feeds one input to a node and carries out what it asks.
    fn input(&mut self, node: usize, input: Input<N::Msg>) {
        let now_local = self.nodes[node].clock.read(self.now);
        let effects = {
            let n = &mut self.nodes[node];
            let sm = n.sm.as_mut().expect("inputs go to running nodes");
            sm.step(input, now_local)
        };
        self.apply_effects(node, effects);
    }

    fn apply_effects(&mut self, node: usize, effects: Vec<Effect<N::Msg>>) {
        let sid = self.nodes[node].sid;
        for e in effects {
            match e {
                Effect::Send { to, channel, msg } => {
                    let Some(to_idx) = self.index_of(to) else {
                        panic!("sid {sid} sent to unknown sid {to}");
                    };
                    if let Some(entry) = N::proposal_in(&msg) {
                        self.seen.push(Seen::Proposed { sid, entry });
                    }
                    self.send(node, to_idx, channel, msg);
                }
                Effect::Connect { peer, channel } => {
                    let Some(p) = self.index_of(peer) else {
                        panic!("sid {sid} connects to unknown sid {peer}")
                    };
                    self.connect(node, p, channel);
                }
                Effect::Disconnect { peer, channel } => {
                    if let Some(p) = self.index_of(peer) {
                        let link = Link::new(node, p, channel);
                        self.note(|| format!("n{sid} closes its connection to n{peer} ({channel:?})"));
                        self.close_link(link, node);
                    }
                }
                Effect::LogAppend(entry) => {
                    let d = &mut self.nodes[node].disk;
                    self.seen.push(Seen::Proposed { sid, entry });
                    if let Some(last) = d.log.last().filter(|l| l.zxid >= entry.zxid) {
                        self.seen.push(Seen::LoggedOutOfOrder { sid, zxid: entry.zxid, after: last.zxid });
                        continue;
                    }
                    d.log.push(entry);
                    self.note(|| format!("n{sid} logs {:#x} {:?}", entry.zxid, entry.txn));
                    self.maybe_sync(node);
                }
                Effect::LogTruncate { zxid } => {
                    let n = &mut self.nodes[node];
                    n.disk.log.retain(|e| e.zxid <= zxid);
                    n.disk.durable = n.disk.durable.min(n.disk.log.len());
                    let log = n.disk.log.clone();
                    n.rebuild_state(log);
                    self.seen.push(Seen::Rebuilt { sid });
                    self.note(|| format!("n{sid} truncates its log after {zxid:#x}"));
                }
                Effect::InstallSnapshot(entries) => {
                    for e in &entries {
                        self.seen.push(Seen::Proposed { sid, entry: *e });
                    }
                    self.seen.push(Seen::Durable { sid, zxids: entries.iter().map(|e| e.zxid).collect() });
                    let n = &mut self.nodes[node];
                    n.disk.log = entries.clone();
                    n.disk.durable = entries.len();
                    n.rebuild_state(entries);
                    self.seen.push(Seen::Rebuilt { sid });
                    let len = self.nodes[node].state.len();
                    self.note(|| format!("n{sid} installs a snapshot of {len} txns"));
                }
                Effect::Apply(entry) => {
                    let n = &mut self.nodes[node];
                    let h = chain_next(n.chain.last().copied().unwrap_or(0), &entry);
                    n.chain.push(h);
                    n.state.push(entry);
                    let (role, serving) = (n.role, n.serving);
                    self.seen.push(Seen::Applied { sid, entry, role, serving });
                    self.note(|| format!("n{sid} applies {:#x} {:?}", entry.zxid, entry.txn));
                    self.client_applied(node, entry);
                }
                Effect::PersistAcceptedEpoch(e) => {
                    let d = &mut self.nodes[node].disk;
                    self.seen.push(Seen::PersistedAccepted {
                        sid,
                        old: d.accepted,
                        new: e,
                        current: d.current,
                    });
                    d.accepted = e;
                    self.note(|| format!("n{sid} persists acceptedEpoch {e}"));
                }
                Effect::PersistCurrentEpoch(e) => {
                    let d = &mut self.nodes[node].disk;
                    self.seen.push(Seen::PersistedCurrent {
                        sid,
                        old: d.current,
                        new: e,
                        accepted: d.accepted,
                    });
                    d.current = e;
                    self.note(|| format!("n{sid} persists currentEpoch {e}"));
                }
                Effect::Role { state, epoch, serving } => {
                    let n = &mut self.nodes[node];
                    let was = n.serving;
                    (n.role, n.epoch, n.serving) = (state, epoch, serving);
                    if serving && !was {
                        self.seen.push(Seen::StartedServing { sid });
                        if state == PeerState::Leading {
                            self.stats.leaders += 1;
                        }
                    }
                    if !serving {
                        self.drop_clients_of(node);
                    }
                    self.note(|| {
                        format!(
                            "n{sid} is {} in epoch {epoch}{}",
                            state.name(),
                            if serving { ", serving" } else { "" }
                        )
                    });
                }
                Effect::SyncDone { session, id } => {
                    self.note(|| format!("n{sid} answers sync {id} of session {session:#x}"));
                    if let Some(c) = self.clients.iter_mut().find(|c| c.session == session) {
                        c.syncs += 1;
                        self.stats.syncs_done += 1;
                    }
                }
            }
        }
    }

    fn index_of(&self, sid: Sid) -> Option<usize> {
        self.nodes.iter().position(|n| n.sid == sid)
    }

    fn delay(&mut self) -> Ms {
        match self.rng.gen_range(0..100) {
            0..=89 => self.rng.gen_range(0..5),
            90..=98 => self.rng.gen_range(5..60),
            _ if self.chaos => self.rng.gen_range(60..600),
            _ => self.rng.gen_range(5..60),
        }
    }

    fn send(&mut self, from: usize, to: usize, channel: Channel, msg: N::Msg) {
        let link = Link::new(from, to, channel);
        let delay = self.delay();
        let connect = self.rng.gen_range(0..3);
        // A connect to a crashed node is refused at once; across a partition it times out.
        let down = self.nodes[to].sm.is_none();
        let timeout = if down { self.rng.gen_range(0..10) } else { self.rng.gen_range(20..500) };
        match self.net.send(self.now, from, link, msg, delay, connect, timeout, down) {
            Sent::Queued(at) => self.schedule(at, Ev::Deliver { link, to }),
            Sent::IntoDeadSocket => {}
            Sent::ConnectFailed { gen, told_at } => {
                let inc = self.nodes[from].inc;
                self.schedule(told_at, Ev::Lost { link, node: from, gen, inc });
            }
        }
        if self.net.pair_blocked(from, to) {
            self.arm_tcp_timeout(link);
        }
    }

    /// A node opens a new connection (closing the one it had, if any).
    fn connect(&mut self, from: usize, to: usize, channel: Channel) {
        let link = Link::new(from, to, channel);
        if self.net.is_live(link) {
            self.close_link(link, from);
        }
        let down = self.nodes[to].sm.is_none();
        let connect = self.rng.gen_range(0..3);
        let timeout = if down { self.rng.gen_range(0..10) } else { self.rng.gen_range(20..500) };
        let inc = self.nodes[from].inc;
        match self.net.open(self.now, from, link, connect, timeout, down) {
            Ok(ready_at) => {
                let gen = self.net.gen(link);
                self.schedule(ready_at, Ev::Connected { link, node: from, gen, inc });
                if self.net.pair_blocked(from, to) {
                    self.arm_tcp_timeout(link);
                }
            }
            // The old connection's notice is on its way: the node takes it as a failed connect.
            Err(Sent::IntoDeadSocket) => {}
            Err(Sent::ConnectFailed { gen, told_at }) => {
                self.schedule(told_at, Ev::Lost { link, node: from, gen, inc })
            }
            Err(Sent::Queued(_)) => unreachable!("open never queues"),
        }
    }

    /// A node closes a connection: the peer learns after a short delay (the FIN or RST travels),
    /// or when TCP gives up if the way back is blocked.
    fn close_link(&mut self, link: Link, closer: usize) {
        let other = if closer == link.lo { link.hi } else { link.lo };
        let late = if self.net.is_blocked(closer, other) {
            self.rng.gen_range(200..3000)
        } else {
            self.rng.gen_range(0..10)
        };
        let told_other = self.now + late;
        let (tl, th) = if closer == link.lo { (self.now, told_other) } else { (told_other, self.now) };
        if let Some(gen) = self.net.break_link(link, tl, th) {
            let inc = self.nodes[other].inc;
            self.schedule(told_other, Ev::Lost { link, node: other, gen, inc });
        }
    }

    /// A connection breaks under both ends (a reset, or TCP giving up): each learns on its own.
    fn break_link(&mut self, link: Link, fast: bool) {
        let mut when = || if fast { self.rng.gen_range(0..20) } else { self.rng.gen_range(0..300) };
        let (tl, th) = (self.now + when(), self.now + when());
        if let Some(gen) = self.net.break_link(link, tl, th) {
            self.stats.breaks += 1;
            self.note(|| format!("connection n{}-n{} ({:?}) breaks", link.lo + 1, link.hi + 1, link.channel));
            for (node, at) in [(link.lo, tl), (link.hi, th)] {
                let inc = self.nodes[node].inc;
                self.schedule(at, Ev::Lost { link, node, gen, inc });
            }
        }
    }

    fn arm_tcp_timeout(&mut self, link: Link) {
        if self.net.is_live(link) {
            let gen = self.net.gen(link);
            let at = self.now + self.rng.gen_range(200..4000);
            self.schedule(at, Ev::TcpTimeout { link, gen });
        }
    }

    fn maybe_sync(&mut self, node: usize) {
        let d = &mut self.nodes[node].disk;
        if d.syncing || d.durable >= d.log.len() {
            return;
        }
        d.syncing = true;
        let (len, zxid) = (d.log.len(), d.log[d.log.len() - 1].zxid);
        let inc = self.nodes[node].inc;
        let took =
            if self.rng.gen_ratio(1, 10) { self.rng.gen_range(20..300) } else { self.rng.gen_range(0..15) };
        self.schedule(self.now + took, Ev::Synced { node, inc, len, zxid });
    }

    fn boot(&mut self, node: usize) {
        if self.nodes[node].sm.is_some() {
            return;
        }
        let now_local = self.nodes[node].clock.read(self.now);
        let n = &mut self.nodes[node];
        // Whatever survived on disk is durable now.
        n.disk.durable = n.disk.log.len();
        n.disk.syncing = false;
        n.stopped = false;
        n.clock.running = true;
        (n.role, n.epoch, n.serving) = (PeerState::Looking, 0, false);
        // The replica rebuilds its state by replaying the log, as ZooKeeper loads its database.
        let log = n.disk.log.clone();
        n.rebuild_state(log);
        let booted = N::boot(
            Boot {
                sid: n.sid,
                members: &self.members,
                log: &n.disk.log,
                accepted_epoch: n.disk.accepted,
                current_epoch: n.disk.current,
            },
            now_local,
        );
        let (sm, effects) = match booted {
            Ok(b) => b,
            Err(e) => {
                let sid = n.sid;
                self.boot_failure = Some(format!("sid {sid} cannot start from its disk: {e}"));
                return;
            }
        };
        n.sm = Some(sm);
        let (sid, inc) = (n.sid, n.inc);
        self.seen.push(Seen::Rebuilt { sid });
        let loglen = self.nodes[node].disk.log.len();
        self.note(|| format!("n{sid} boots with {loglen} logged txns"));
        self.apply_effects(node, effects);
        self.nodes[node].ticks += 1;
        let gen = self.nodes[node].ticks;
        self.schedule(self.now + 1, Ev::Tick { node, inc, gen });
    }

    fn crash(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.sm.is_none() {
            return;
        }
        n.sm = None;
        n.inc += 1;
        n.deferred.clear();
        let tail = n.disk.log.len() - n.disk.durable;
        let keep = if tail == 0 { 0 } else { self.rng.gen_range(0..=tail) };
        if keep < tail {
            self.stats.torn_tails += 1;
        }
        n.disk.log.truncate(n.disk.durable + keep);
        n.rebuild_state(Vec::new());
        (n.serving, n.role) = (false, PeerState::Looking);
        self.stats.crashes += 1;
        let sid = n.sid;
        self.note(|| format!("n{sid} crashes, keeping {keep} of {tail} unsynced entries"));
        self.drop_clients_of(node);
        for other in 0..self.nodes.len() {
            if other == node {
                continue;
            }
            for channel in [Channel::Election, Channel::Quorum] {
                let link = Link::new(node, other, channel);
                // The kernel resets the connections at once, unless the way is cut.
                let fast = !self.net.pair_blocked(node, other);
                self.break_link(link, fast);
            }
        }
    }

    fn stop(&mut self, node: usize, for_ms: Ms, clock_runs: bool) {
        let n = &mut self.nodes[node];
        if n.sm.is_none() || n.stopped {
            return;
        }
        n.clock.advance(self.now);
        n.stopped = true;
        n.clock.running = clock_runs;
        self.stats.stops += 1;
        let sid = n.sid;
        self.note(|| {
            format!("n{sid} stopped for {for_ms} ms (clock {})", if clock_runs { "runs" } else { "stands" })
        });
        self.schedule(self.now + for_ms, Ev::Resume { node });
    }

    fn resume(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if !n.stopped {
            return;
        }
        n.clock.advance(self.now);
        n.stopped = false;
        n.clock.running = true;
        let (sid, inc) = (n.sid, n.inc);
        let deferred = std::mem::take(&mut n.deferred);
        self.note(|| format!("n{sid} resumes"));
        for ev in deferred {
            match ev {
                Ev::Synced { zxid, .. } => self.input(node, Input::LogDurable { zxid }),
                ev => self.handle(ev),
            }
            if self.nodes[node].sm.is_none() || self.nodes[node].stopped {
                return;
            }
        }
        self.reschedule_deliveries_to(node);
        self.nodes[node].ticks += 1;
        let gen = self.nodes[node].ticks;
        self.schedule(self.now, Ev::Tick { node, inc, gen });
    }

    fn reschedule_deliveries_to(&mut self, to: usize) {
        for from in 0..self.nodes.len() {
            if from != to {
                for channel in [Channel::Election, Channel::Quorum] {
                    let link = Link::new(from, to, channel);
                    for t in self.net.pending_times(link, to) {
                        self.schedule(t.max(self.now), Ev::Deliver { link, to });
                    }
                }
            }
        }
    }

    fn heal(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    self.net.set_blocked(a, b, false);
                }
            }
        }
        for to in 0..n {
            self.reschedule_deliveries_to(to);
        }
        self.note(|| "the network heals".into());
    }

    fn block(&mut self, from: usize, to: usize) {
        self.net.set_blocked(from, to, true);
        for channel in [Channel::Election, Channel::Quorum] {
            self.arm_tcp_timeout(Link::new(from, to, channel));
        }
    }

    fn inject_fault(&mut self) {
        let n = self.nodes.len();
        let node = self.rng.gen_range(0..n);
        let sid = self.nodes[node].sid;
        match self.rng.gen_range(0..100) {
            0..=14 => {
                self.crash(node);
                let back = self.rng.gen_range(10..3000);
                self.schedule(self.now + back, Ev::Restart { node });
            }
            15..=24 => {
                let for_ms = self.rng.gen_range(10..3000);
                let runs = self.rng.gen_bool(0.7);
                self.stop(node, for_ms, runs);
            }
            25..=39 => {
                // Symmetric: a random side is cut off from the rest.
                let side: Vec<usize> = (0..n).filter(|_| self.rng.gen_bool(0.4)).collect();
                self.stats.partitions += 1;
                self.note(|| {
                    format!("partition: {:?} | rest", side.iter().map(|i| i + 1).collect::<Vec<_>>())
                });
                for &a in &side {
                    for b in (0..n).filter(|b| !side.contains(b)) {
                        self.block(a, b);
                        self.block(b, a);
                    }
                }
            }
            40..=49 => {
                // One-way: a node stops hearing from, or being heard by, some others.
                let inbound = self.rng.gen_bool(0.5);
                self.stats.partitions += 1;
                for other in (0..n).filter(|&o| o != node) {
                    if self.rng.gen_bool(0.6) {
                        let (f, t) = if inbound { (other, node) } else { (node, other) };
                        self.note(|| format!("one-way partition: n{} -/-> n{}", f + 1, t + 1));
                        self.block(f, t);
                    }
                }
            }
            50..=64 => self.heal(),
            65..=79 => {
                let other = (node + self.rng.gen_range(1..n.max(2))) % n;
                if other != node {
                    let channel = if self.rng.gen_bool(0.5) { Channel::Election } else { Channel::Quorum };
                    self.break_link(Link::new(node, other, channel), true);
                }
            }
            80..=89 => {
                let rate = self.rng.gen_range(900..=1100);
                let c = &mut self.nodes[node].clock;
                c.advance(self.now);
                c.rate_permille = rate;
                self.note(|| format!("n{sid}'s clock now runs at {rate}/1000"));
            }
            _ => {
                // A crash of a node with an unsynced tail, the case a torn write matters in.
                let unsynced: Vec<usize> = (0..n)
                    .filter(|&i| {
                        self.nodes[i].sm.is_some()
                            && self.nodes[i].disk.log.len() > self.nodes[i].disk.durable
                    })
                    .collect();
                if !unsynced.is_empty() {
                    let node = unsynced[self.rng.gen_range(0..unsynced.len())];
                    self.crash(node);
                    let back = self.rng.gen_range(10..1000);
                    self.schedule(self.now + back, Ev::Restart { node });
                }
            }
        }
    }

    fn start_liveness(&mut self) {
        self.chaos = false;
        self.note(|| "liveness: faults stop, the network heals, every node runs".into());
        self.heal();
        for node in 0..self.nodes.len() {
            if self.nodes[node].sm.is_none() {
                self.boot(node);
            } else if self.nodes[node].stopped {
                self.resume(node);
            }
        }
        let client = self.clients.len();
        self.clients.push(Client {
            session: 0,
            node: None,
            next_cxid: 1,
            outstanding: VecDeque::new(),
            syncs: 0,
            last_sent: 0,
        });
        self.probe = Some(Probe { started: self.now, client, txn: None, zxid: None });
        self.schedule(self.now, Ev::Client { c: client });
    }

    /// Liveness holds once a leader serves, every node serves, and the probe write that a
    /// client got acknowledged is in every node's state.
    fn liveness_done(&mut self) -> bool {
        let Some(p) = &self.probe else { return false };
        let Some(z) = p.zxid else { return false };
        let leader = self.nodes.iter().any(|n| n.sm.is_some() && n.serving && n.role == PeerState::Leading);
        let all =
            self.nodes.iter().all(|n| n.sm.is_some() && n.serving && n.state.iter().any(|e| e.zxid == z));
        if leader && all {
            self.stats.recovery_ms = self.now - p.started;
            return true;
        }
        false
    }

    fn liveness_report(&self) -> String {
        let mut s = format!("liveness: not recovered {} ms after the faults stopped:", self.cfg.liveness_ms);
        for n in &self.nodes {
            let _ = write!(
                s,
                " [n{} {} epoch {} {} state {} log {}/{} acc {} cur {}]",
                n.sid,
                n.role.name(),
                n.epoch,
                if n.serving { "serving" } else { "not serving" },
                n.state.len(),
                n.disk.durable,
                n.disk.log.len(),
                n.disk.accepted,
                n.disk.current
            );
        }
        if let Some(p) = &self.probe {
            let _ = write!(s, "; probe write {:?} zxid {:?}", p.txn, p.zxid);
        }
        s
    }

    /// At the end: the committed history up to the probe write, and every write a client saw
    /// acknowledged with a zxid up to the probe's, is in every node's state, in place. (Later
    /// commits may still be on their way to some nodes.)
    fn final_checks(&self) -> Result<(), Failure> {
        let committed = self.watch.committed();
        let Some(probe) = self.probe.as_ref().and_then(|p| p.zxid) else { return Ok(()) };
        for n in &self.nodes {
            let Some(p) = n.state.iter().position(|e| e.zxid == probe) else { continue };
            let k = committed.len().min(p + 1);
            if n.state[..k] != committed[..k] {
                return Err(self.fail(
                    "committed_txn_never_lost_or_reordered",
                    format!(
                        "after recovery sid {} holds a state that differs from the committed history",
                        n.sid
                    ),
                ));
            }
            for (z, t) in self.acked.iter().filter(|(z, _)| *z <= probe) {
                if !n.state[..=p].iter().any(|e| e.zxid == *z && e.txn == *t) {
                    return Err(self.fail(
                        "committed_txn_never_lost_or_reordered",
                        format!("write {t:?} (zxid {z:#x}) was acknowledged to its client but sid {} lacks it after recovery", n.sid),
                    ));
                }
            }
        }
        Ok(())
    }

    fn drop_clients_of(&mut self, node: usize) {
        for c in self.clients.iter_mut() {
            if c.node.is_some_and(|(n, _)| n == node) {
                c.node = None;
                c.outstanding.clear();
            }
        }
    }

    fn client_applied(&mut self, node: usize, entry: Entry) {
        let inc = self.nodes[node].inc;
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.node != Some((node, inc)) || entry.txn.session != c.session {
                continue;
            }
            // Answers come in order; earlier outstanding writes that were skipped are lost.
            while let Some(t) = c.outstanding.pop_front() {
                if t == entry.txn {
                    self.acked.push((entry.zxid, t));
                    self.stats.writes_acked += 1;
                    if let Some(p) = self.probe.as_mut().filter(|p| p.client == i && p.txn == Some(t)) {
                        p.zxid = Some(entry.zxid);
                    }
                    break;
                }
            }
        }
    }

    fn client_act(&mut self, c: usize) {
        let probe = self.probe.as_ref().is_some_and(|p| p.client == c);
        let next = if probe { 20 } else { self.rng.gen_range(5..80) };
        if !self.chaos && !probe && self.rng.gen_ratio(1, 2) {
            // Quieter in the liveness phase, but still writing.
            self.schedule(self.now + next, Ev::Client { c });
            return;
        }
        if probe && self.probe.as_ref().is_some_and(|p| p.zxid.is_some()) {
            return;
        }
        let connected =
            self.clients[c].node.filter(|&(n, inc)| self.current(n, inc) && self.nodes[n].serving);
        match connected {
            None => {
                let serving: Vec<usize> = (0..self.nodes.len())
                    .filter(|&n| self.nodes[n].sm.is_some() && self.nodes[n].serving)
                    .collect();
                if !serving.is_empty() {
                    let n = serving[self.rng.gen_range(0..serving.len())];
                    self.next_session += 1;
                    let cl = &mut self.clients[c];
                    cl.session = self.next_session;
                    cl.node = Some((n, self.nodes[n].inc));
                    cl.next_cxid = 1;
                    cl.outstanding.clear();
                    if probe {
                        if let Some(p) = self.probe.as_mut() {
                            p.txn = None;
                        }
                    }
                }
            }
            Some((n, inc)) => {
                let full = self.clients[c].outstanding.len() >= 3;
                let probe_waiting = probe && self.probe.as_ref().is_some_and(|p| p.txn.is_some());
                if !full && !probe_waiting {
                    let cl = &mut self.clients[c];
                    let cxid = cl.next_cxid;
                    cl.next_cxid += 1;
                    let session = cl.session;
                    let input = if !probe && self.rng.gen_ratio(1, 6) {
                        Input::ClientSync { session, id: cxid as u64 }
                    } else {
                        let txn = Txn { session, cxid, value: self.rng.gen() };
                        self.clients[c].outstanding.push_back(txn);
                        if probe {
                            if let Some(p) = self.probe.as_mut() {
                                p.txn = Some(txn);
                            }
                        }
                        Input::ClientWrite { txn }
                    };
                    let at = (self.now + self.rng.gen_range(0..3)).max(self.clients[c].last_sent);
                    self.clients[c].last_sent = at;
                    self.schedule(at, Ev::Request { node: n, inc, input });
                }
            }
        }
        self.schedule(self.now + next, Ev::Client { c });
    }
}
