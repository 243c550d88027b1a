//! Is a history linearizable? Decided per key (linearizability is local: a history is
//! linearizable iff each object's subhistory is), with the search of Wing & Gong as Lowe made it
//! practical and Porcupine implements it: walk the history's call and return events in time
//! order, linearize one pending operation at a time, backtrack at a return whose operation cannot
//! be linearized, and never explore a configuration (set of linearized operations, state) twice.
//!
//! Operations whose outcome is unknown are not forced: they have no return event, so the search
//! linearizes one only when something later needs it (a read of its value, a version that counts
//! it), at any point after its call, or leaves it out ("never happened"). Unknown writes of values
//! nobody read are interchangeable when their requests are equal, and are used in call order
//! (any linearization can be rearranged so), which keeps many of them from multiplying the search.
//!
//! A multi touches several keys; each key checks its projection (its requests, atomically). That
//! finds every anomaly visible on one key, not a multi that is atomic on each key but not across.
//!
//! On a violation the checker reports the smallest failing window: the earliest time `t` such that
//! the history cut at `t` is already not linearizable (operations still pending then become
//! optional), and the latest start `m` such that the operations from `m` to `t`, started from an
//! arbitrary state, are still not linearizable.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use super::history::{seq_number, History, Op, Outcome, Res, Sub};
use super::model::{step, Err, KeyOutcome, Node, Prim, PrimOut, State, Val, UNSEEN};

/// One operation's projection onto one key.
#[derive(Debug, Clone)]
pub struct KeyOp {
    /// Index of the operation in `History::ops`.
    pub src: usize,
    pub call: u64,
    /// None: the outcome is unknown.
    pub ret: Option<u64>,
    /// An operation with an unknown outcome that must have taken effect by this time if at all:
    /// it wrote a value some read returned (and nothing else wrote that value), so it came
    /// before that read.
    pub deadline: Option<u64>,
    pub prims: Vec<Prim>,
    pub out: KeyOutcome,
}

/// The subhistory of one key, ready to check.
#[derive(Debug, Clone)]
pub struct KeyHistory {
    pub key: String,
    pub init: State,
    pub ops: Vec<KeyOp>,
    /// Value ids back to the values (for reports).
    pub values: Vec<Option<String>>,
}

/// Splits a history into its keys. Values nobody read become [`UNSEEN`]. Keys the run line
/// declares start as it says (data znodes created empty, sequential parents with no children);
/// any other key starts as "anything".
pub fn project(h: &History) -> anyhow::Result<Vec<KeyHistory>> {
    let mut keys: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, Vec<(usize, Vec<usize>)>> = HashMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        anyhow::ensure!(!op.subs.is_empty(), "operation {} has no requests", op.id);
        if let Some(r) = op.ret_ns {
            anyhow::ensure!(r >= op.call_ns, "operation {} returns before its call", op.id);
        }
        let mut mine: Vec<(String, Vec<usize>)> = Vec::new();
        for (j, s) in op.subs.iter().enumerate() {
            match mine.iter_mut().find(|(k, _)| k == s.key()) {
                Some((_, v)) => v.push(j),
                None => mine.push((s.key().to_string(), vec![j])),
            }
        }
        for (k, subs) in mine {
            if !by_key.contains_key(&k) {
                keys.push(k.clone());
            }
            by_key.entry(k).or_default().push((i, subs));
        }
    }
    let run = h.run.clone().unwrap_or_default();
    let mut out = Vec::new();
    for key in keys {
        let entries = &by_key[&key];
        let counter = entries.iter().any(|(i, subs)| {
            subs.iter()
                .any(|&j| matches!(h.ops[*i].subs[j], Sub::CreateSeq { .. } | Sub::ReadCversion { .. }))
        });
        let mut values = Interner::default();
        // Values some read returned get ids of their own; every other value is UNSEEN.
        for (i, subs) in entries {
            if let Outcome::Ok { results } = &h.ops[*i].outcome {
                for &j in subs {
                    if let Some(Res::Read { value, .. }) = results.get(j) {
                        values.seen(value.as_deref());
                    }
                }
            }
        }
        let init = if counter {
            State::Counter(run.seq_parents.contains(&key).then_some(0))
        } else if run.keys.contains(&key) {
            State::Node(Node { exists: Some(true), value: Some(values.id(Some(""))), version: Some(0) })
        } else {
            State::Node(Node::ANYTHING)
        };
        let mut ops = Vec::new();
        for (i, subs) in entries {
            if let Some(k) = project_op(&h.ops[*i], *i, subs, counter, &mut values)
                .map_err(|e| anyhow::anyhow!("operation {} on {key}: {e}", h.ops[*i].id))?
            {
                ops.push(k);
            }
        }
        bound_unknown_writes(&mut ops);
        out.push(KeyHistory { key, init, ops, values: values.names });
    }
    Ok(out)
}

/// Gives each unknown write of a value that a read returned, and that no other operation wrote,
/// the deadline of the first read that returned it.
fn bound_unknown_writes(ops: &mut [KeyOp]) {
    let mut writers: HashMap<Val, Vec<usize>> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        for p in &o.prims {
            if let Prim::Set { value, .. } | Prim::Create { value } = p {
                if *value != UNSEEN {
                    writers.entry(*value).or_default().push(i);
                }
            }
        }
    }
    let mut first_read: HashMap<Val, u64> = HashMap::new();
    for o in ops.iter() {
        if let (KeyOutcome::Ok(outs), Some(ret)) = (&o.out, o.ret) {
            for out in outs {
                if let PrimOut::Read { value, .. } = out {
                    let r = first_read.entry(*value).or_insert(ret);
                    *r = (*r).min(ret);
                }
            }
        }
    }
    for (value, w) in writers {
        if let ([i], Some(&read)) = (w.as_slice(), first_read.get(&value)) {
            if ops[*i].out == KeyOutcome::Unknown {
                ops[*i].deadline = Some(read);
            }
        }
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Option<String>, Val>,
    names: Vec<Option<String>>,
}

impl Interner {
    fn seen(&mut self, v: Option<&str>) -> Val {
        let k = v.map(str::to_string);
        if let Some(id) = self.ids.get(&k) {
            return *id;
        }
        if self.names.is_empty() {
            self.names.push(Some("(a value no read returned)".into()));
        }
        let id = self.names.len() as Val;
        self.names.push(k.clone());
        self.ids.insert(k, id);
        id
    }

    /// A written value: its id if some read returned it, else UNSEEN.
    fn id(&mut self, v: Option<&str>) -> Val {
        self.ids.get(&v.map(str::to_string)).copied().unwrap_or(UNSEEN)
    }
}

fn project_op(
    op: &Op,
    src: usize,
    subs: &[usize],
    counter: bool,
    values: &mut Interner,
) -> Result<Option<KeyOp>, String> {
    let prims: Vec<Prim> = subs.iter().map(|&j| prim(&op.subs[j], values)).collect::<Result<_, _>>()?;
    if counter != prims.iter().all(|p| matches!(p, Prim::CreateSeq | Prim::ReadCounter)) {
        return Err("mixes sequential creates with other requests on one key".into());
    }
    let (prims, out) = match &op.outcome {
        Outcome::Ok { results } => {
            if results.len() != op.subs.len() {
                return Err(format!("{} results for {} requests", results.len(), op.subs.len()));
            }
            let outs = subs
                .iter()
                .map(|&j| prim_out(&op.subs[j], &results[j], values))
                .collect::<Result<Vec<_>, _>>()?;
            (prims, KeyOutcome::Ok(outs))
        }
        Outcome::Fail { index, code, .. } => {
            if *index >= op.subs.len() {
                return Err(format!("failed request {index} of {}", op.subs.len()));
            }
            let passed = subs.iter().filter(|&&j| j < *index).count();
            let here = subs.contains(index);
            if passed == 0 && !here {
                return Ok(None);
            }
            let n = passed + usize::from(here);
            let err = here.then(|| Err::from_code(*code));
            (prims[..n].to_vec(), KeyOutcome::Fail { passed, err })
        }
        Outcome::Unknown { .. } => {
            // A read that may or may not have happened tells nothing.
            if !prims.iter().any(Prim::writes) {
                return Ok(None);
            }
            (prims, KeyOutcome::Unknown)
        }
    };
    let ret = match op.outcome {
        Outcome::Unknown { .. } => None,
        _ => Some(op.ret_ns.ok_or("a definite outcome without ret_ns")?),
    };
    Ok(Some(KeyOp { src, call: op.call_ns, ret, deadline: None, prims, out }))
}

fn prim(s: &Sub, values: &mut Interner) -> Result<Prim, String> {
    let expect = |v: i32| (v != -1).then_some(v);
    Ok(match s {
        Sub::Read { .. } => Prim::Read,
        Sub::Set { value, version, .. } => {
            Prim::Set { value: values.id(Some(value)), expect: expect(*version) }
        }
        Sub::Create { value, .. } => Prim::Create { value: values.id(Some(value)) },
        Sub::Delete { version, .. } => Prim::Delete { expect: expect(*version) },
        Sub::Check { version, .. } => Prim::Check { expect: *version },
        Sub::CreateSeq { .. } => Prim::CreateSeq,
        Sub::ReadCversion { .. } => Prim::ReadCounter,
    })
}

fn prim_out(s: &Sub, r: &Res, values: &mut Interner) -> Result<PrimOut, String> {
    Ok(match (s, r) {
        (Sub::Read { .. }, Res::Read { value, version }) => {
            PrimOut::Read { value: values.seen(value.as_deref()), version: *version }
        }
        (Sub::Set { .. }, Res::Set { version }) => PrimOut::Set { version: *version },
        (Sub::CreateSeq { .. }, Res::Created { path }) => {
            PrimOut::Seq { n: seq_number(path).ok_or_else(|| format!("{path} has no sequence number"))? }
        }
        (Sub::Create { .. }, Res::Created { .. }) => PrimOut::Done,
        (Sub::Delete { .. } | Sub::Check { .. }, Res::Done) => PrimOut::Done,
        (Sub::ReadCversion { .. }, Res::Cversion { cversion }) => PrimOut::Counter { cversion: *cversion },
        (s, r) => return Err(format!("result {r:?} does not fit request {s:?}")),
    })
}

/// The outcome of one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The step budget ran out first.
    GaveUp,
}

/// A search problem: operations with time bounds, from an initial state.
struct Task<'a> {
    init: State,
    ops: Vec<TaskOp<'a>>,
}

struct TaskOp<'a> {
    call: u64,
    /// Forced: linearized by this time (a definite reply). Optional: may be linearized, no later
    /// than `deadline`, or left out.
    forced_ret: Option<u64>,
    deadline: u64,
    prims: &'a [Prim],
    out: &'a KeyOutcome,
}

impl<'a> Task<'a> {
    /// The part of `kh` between `from` and `to`, from `init`. Operations that returned before
    /// `from` are gone (their effect is in `init`); ones pending at `from` or at `to` become
    /// optional: they may have taken effect outside the window, which is neither seen nor checked.
    fn cut(kh: &'a KeyHistory, from: u64, to: u64, init: State) -> Task<'a> {
        let mut ops = Vec::new();
        for o in &kh.ops {
            let deadline = o.ret.or(o.deadline);
            if o.call > to || deadline.is_some_and(|d| d < from) {
                continue;
            }
            let forced = o.call >= from && o.ret.is_some_and(|r| r <= to);
            if !forced && (!o.prims.iter().any(Prim::writes) || matches!(o.out, KeyOutcome::Fail { .. })) {
                // Optional and without effect: leaving it out is always allowed.
                continue;
            }
            ops.push(TaskOp {
                call: o.call.max(from),
                forced_ret: if forced { o.ret } else { None },
                deadline: deadline.unwrap_or(u64::MAX),
                prims: &o.prims,
                out: &o.out,
            });
        }
        Task { init, ops }
    }
}

/// What a search explored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub steps: u64,
    pub configurations: usize,
}

const NIL: u32 = u32::MAX;

/// The version an operation's first request insists on (a conditional write or check), if any:
/// in a state whose version is known, only operations with no guard or that guard can apply.
fn guard(prims: &[Prim]) -> Option<i32> {
    match prims.first() {
        Some(
            Prim::Set { expect: Some(e), .. } | Prim::Delete { expect: Some(e) } | Prim::Check { expect: e },
        ) => Some(*e),
        _ => None,
    }
}

fn known_version(s: &State) -> Option<i32> {
    match s {
        State::Node(Node { exists: Some(true), version, .. }) => *version,
        _ => None,
    }
}

/// Optional operations, in classes of interchangeable ones (unknown outcome, no deadline, equal
/// requests), each used in call order; indexed by guard.
struct Optionals {
    /// Members of each class, by call time.
    members: Vec<Vec<u32>>,
    used: Vec<u32>,
    unguarded: Vec<u32>,
    guarded: HashMap<i32, Vec<u32>>,
    class_of: Vec<u32>,
}

impl Optionals {
    fn new(t: &Task) -> Optionals {
        let mut idx: Vec<u32> =
            (0..t.ops.len() as u32).filter(|&i| t.ops[i as usize].forced_ret.is_none()).collect();
        idx.sort_by_key(|&i| (t.ops[i as usize].call, i));
        let mut o = Optionals {
            members: Vec::new(),
            used: Vec::new(),
            unguarded: Vec::new(),
            guarded: HashMap::new(),
            class_of: vec![NIL; t.ops.len()],
        };
        let mut classes: HashMap<&[Prim], u32> = HashMap::new();
        for i in idx {
            let op = &t.ops[i as usize];
            let interchangeable = op.deadline == u64::MAX && *op.out == KeyOutcome::Unknown;
            let existing = if interchangeable { classes.get(op.prims).copied() } else { None };
            let c = existing.unwrap_or_else(|| {
                let c = o.members.len() as u32;
                o.members.push(Vec::new());
                o.used.push(0);
                match guard(op.prims) {
                    Some(g) => o.guarded.entry(g).or_default().push(c),
                    None => o.unguarded.push(c),
                }
                if interchangeable {
                    classes.insert(op.prims, c);
                }
                c
            });
            o.class_of[i as usize] = c;
            o.members[c as usize].push(i);
        }
        o
    }

    /// The classes worth trying in `s`, in a fixed order (so that a search can resume a scan).
    fn candidates(&self, s: &State, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unguarded);
        match known_version(s) {
            Some(v) => out.extend(self.guarded.get(&v).into_iter().flatten()),
            None => {
                for cs in self.guarded.values() {
                    out.extend_from_slice(cs);
                }
                out.sort_unstable();
            }
        }
    }

    /// The class's next unused member, if any.
    fn next(&self, c: u32) -> Option<u32> {
        self.members[c as usize].get(self.used[c as usize] as usize).copied()
    }
}

/// The search. `budget` bounds the number of steps tried.
fn search(t: &Task, budget: u64) -> (Verdict, Stats) {
    // Forced operations: a call and a return event each, in one doubly linked list (node 0 is
    // the head) sorted by time, calls before returns at equal times (overlapping, to be lenient).
    let mut evs: Vec<(u64, bool, u32)> = Vec::new();
    for (i, o) in t.ops.iter().enumerate() {
        if let Some(r) = o.forced_ret {
            evs.push((o.call, false, i as u32));
            evs.push((r, true, i as u32));
        }
    }
    evs.sort_unstable();
    let n_ev = evs.len();
    let mut next: Vec<u32> = (1..=n_ev as u32 + 1).collect();
    next[n_ev] = NIL;
    let mut prev: Vec<u32> = (0..=n_ev as u32).map(|i| i.wrapping_sub(1)).collect();
    let mut ev_of = vec![(NIL, NIL); t.ops.len()];
    for (k, &(_, is_ret, op)) in evs.iter().enumerate() {
        let e = &mut ev_of[op as usize];
        if is_ret {
            e.1 = k as u32 + 1;
        } else {
            e.0 = k as u32 + 1;
        }
    }
    let ev = |k: u32| evs[k as usize - 1];
    let mut opt = Optionals::new(t);

    // Each operation's random 128-bit key: a set of linearized operations is the XOR of its
    // members' keys. Two different sets collide with probability 2^-128 per pair, so the cache
    // keeps no set itself (a collision could only prune a branch not yet explored).
    let zob: Vec<u128> = (0..t.ops.len() as u64)
        .map(|i| (u128::from(splitmix(i * 2 + 1)) << 64) | u128::from(splitmix(i * 2 + 2)))
        .collect();
    let mut seen: HashSet<(u128, State), BuildHasherDefault<Mix>> = HashSet::default();

    /// Where to go on: the next forced event to try, or the next candidate class of optional
    /// operations (by position in `Optionals::candidates`) below the earliest pending return;
    /// `Done` when the configuration has nothing else to try.
    #[derive(Clone, Copy)]
    enum Cursor {
        Forced(u32),
        Optional { pos: u32, bound: u64 },
        Done,
    }
    struct Frame {
        op: u32,
        state: State,
        max_call: u64,
        resume: Cursor,
    }
    // Optional operations with a deadline (few: those pending at the window's start): the rule
    // below must not move an operation called after one of them ahead of it.
    let deadlined: Vec<u32> = (0..t.ops.len() as u32)
        .filter(|&i| t.ops[i as usize].forced_ret.is_none() && t.ops[i as usize].deadline != u64::MAX)
        .collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = t.init;
    let mut set: u128 = 0;
    // The latest call among the linearized operations: an optional one whose deadline is
    // earlier can no longer come next.
    let mut max_call = 0u64;
    let mut steps = 0u64;
    let mut classes: Vec<u32> = Vec::new();
    let mut cur = Cursor::Forced(next[0]);
    let mut fresh = true;
    loop {
        if next[0] == NIL {
            return (Verdict::Linearizable, Stats { steps, configurations: seen.len() });
        }
        if steps >= budget {
            return (Verdict::GaveUp, Stats { steps, configurations: seen.len() });
        }
        // The operation to try, and where this configuration goes on if that fails.
        let mut attempt: Option<(u32, Cursor)> = None;
        if fresh {
            fresh = false;
            // A pending operation that succeeds here without changing the state is linearized
            // now, with no alternative: any linearization from here can be rearranged to take
            // it first (it changes nothing, so no later operation notices; it is pending, so no
            // real-time order forbids it; no optional operation's deadline precedes its call).
            let min_deadline = deadlined
                .iter()
                .filter(|&&i| {
                    let c = opt.class_of[i as usize] as usize;
                    opt.used[c] == 0 && t.ops[i as usize].deadline >= max_call
                })
                .map(|&i| t.ops[i as usize].deadline)
                .min()
                .unwrap_or(u64::MAX);
            let mut e = next[0];
            while e != NIL && !ev(e).1 {
                let op = ev(e).2;
                let o = &t.ops[op as usize];
                if o.call <= min_deadline && !o.prims.iter().any(Prim::writes) {
                    steps += 1;
                    if step(&state, o.prims, o.out) == Some(state) {
                        attempt = Some((op, Cursor::Done));
                        break;
                    }
                }
                e = next[e as usize];
            }
        }
        if attempt.is_none() {
            attempt = match cur {
                Cursor::Done => None,
                Cursor::Forced(e) => {
                    let (time, is_ret, op) = ev(e);
                    if is_ret {
                        // The earliest pending return: only optional operations are left to try.
                        cur = Cursor::Optional { pos: 0, bound: time };
                        continue;
                    }
                    cur = Cursor::Forced(next[e as usize]);
                    Some((op, cur))
                }
                Cursor::Optional { pos, bound } => {
                    opt.candidates(&state, &mut classes);
                    match classes.get(pos as usize) {
                        None => None,
                        Some(&c) => {
                            cur = Cursor::Optional { pos: pos + 1, bound };
                            match opt.next(c) {
                                Some(op)
                                    if t.ops[op as usize].call <= bound
                                        && t.ops[op as usize].deadline >= max_call =>
                                {
                                    Some((op, cur))
                                }
                                _ => continue,
                            }
                        }
                    }
                }
            };
        }
        match attempt {
            Some((op, resume)) => {
                cur = resume;
                steps += 1;
                let o = &t.ops[op as usize];
                let Some(s) = step(&state, o.prims, o.out) else { continue };
                // An optional operation that leaves a state no wider than before is dominated by
                // leaving it out here (it stays available for later).
                if o.forced_ret.is_none() && state.covers(&s) {
                    continue;
                }
                if !seen.insert((set ^ zob[op as usize], s)) {
                    continue;
                }
                stack.push(Frame { op, state, max_call, resume });
                if o.forced_ret.is_some() {
                    let (c, r) = ev_of[op as usize];
                    for k in [c, r] {
                        let (p, n) = (prev[k as usize], next[k as usize]);
                        next[p as usize] = n;
                        if n != NIL {
                            prev[n as usize] = p;
                        }
                    }
                } else {
                    opt.used[opt.class_of[op as usize] as usize] += 1;
                }
                state = s;
                set ^= zob[op as usize];
                max_call = max_call.max(o.call);
                cur = Cursor::Forced(next[0]);
                fresh = true;
            }
            None => {
                let Some(f) = stack.pop() else {
                    return (Verdict::NotLinearizable, Stats { steps, configurations: seen.len() });
                };
                let op = f.op as usize;
                if t.ops[op].forced_ret.is_some() {
                    // Relink in the reverse order of the unlinking.
                    let (c, r) = ev_of[op];
                    for k in [r, c] {
                        let (p, n) = (prev[k as usize], next[k as usize]);
                        next[p as usize] = k;
                        if n != NIL {
                            prev[n as usize] = k;
                        }
                    }
                } else {
                    opt.used[opt.class_of[op] as usize] -= 1;
                }
                state = f.state;
                max_call = f.max_call;
                set ^= zob[op];
                cur = f.resume;
            }
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A fast hasher for the cache: its keys start with 128 random bits already.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        splitmix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u64(i as u64);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// The smallest failing window of a key's history.
#[derive(Debug, Clone)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
    /// False: the window needs the key's initial state (it starts at the beginning).
    pub from_anything: bool,
    /// Operations in the window (indices into `KeyHistory::ops`), by call time.
    pub ops: Vec<usize>,
    /// Operations with an unknown outcome, called before the window, that may take effect in it.
    pub earlier_unknown: usize,
}

/// The verdict on one key.
#[derive(Debug, Clone)]
pub struct KeyReport {
    pub key: String,
    pub ops: usize,
    pub unknown: usize,
    pub verdict: Verdict,
    pub stats: Stats,
    pub elapsed: Duration,
    pub window: Option<Window>,
}

/// Checks one key; on a violation, finds its smallest failing window.
///
/// The search over the whole history decides; when it fails or runs out of budget, windows of the
/// history started from "anything" are searched, shortest first: one that fails proves a violation
/// (see [`Task::cut`]) and is cheap to search, where proving that a long history fails means
/// exhausting every way to linearize its prefix.
pub fn check_key(kh: &KeyHistory, budget: u64) -> KeyReport {
    let t0 = Instant::now();
    let (full, stats) = search(&Task::cut(kh, 0, u64::MAX, kh.init), budget);
    let (verdict, window) = match full {
        Verdict::Linearizable => (full, None),
        _ => match failing_window(kh, budget) {
            Some((from, to)) => (Verdict::NotLinearizable, Some(shrink_from_anything(kh, from, to, budget))),
            None if full == Verdict::NotLinearizable => {
                (Verdict::NotLinearizable, Some(shrink_from_start(kh, budget)))
            }
            None => (Verdict::GaveUp, None),
        },
    };
    KeyReport {
        key: kh.key.clone(),
        ops: kh.ops.len(),
        unknown: kh.ops.iter().filter(|o| o.ret.is_none()).count(),
        verdict,
        stats,
        elapsed: t0.elapsed(),
        window,
    }
}

fn fails(t: &Task, budget: u64) -> bool {
    search(t, budget).0 == Verdict::NotLinearizable
}

/// Smallest window sizes first, each window overlapping the next by half: the first window,
/// started from "anything", that is not linearizable, as (from, to).
fn failing_window(kh: &KeyHistory, budget: u64) -> Option<(u64, u64)> {
    let mut by_call: Vec<&KeyOp> = kh.ops.iter().collect();
    by_call.sort_by_key(|o| o.call);
    let n = by_call.len();
    let anything = kh.init.anything();
    let mut size = 32usize;
    loop {
        let mut i = 0;
        while i < n {
            let j = (i + size).min(n) - 1;
            let from = by_call[i].call;
            // The window ends when its last operation has returned (or, unknown, was called).
            let to = by_call[i..=j].iter().map(|o| o.ret.unwrap_or(o.call)).max().unwrap_or(from);
            if fails(&Task::cut(kh, from, to, anything), budget / 16) {
                return Some((from, to));
            }
            if j + 1 == n {
                break;
            }
            i += size / 2;
        }
        if size >= n {
            return None;
        }
        size *= 4;
    }
}

/// Shrinks a failing window [from, to] (from "anything"): first its end, then its start.
fn shrink_from_anything(kh: &KeyHistory, from: u64, to: u64, budget: u64) -> Window {
    let anything = kh.init.anything();
    let mut rets: Vec<u64> = kh.ops.iter().filter_map(|o| o.ret).filter(|r| *r >= from && *r <= to).collect();
    rets.push(to);
    rets.sort_unstable();
    rets.dedup();
    // Invariant: the window ending at rets[hi] fails.
    let (mut lo, mut hi) = (0usize, rets.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&Task::cut(kh, from, rets[mid], anything), budget) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let to = rets[hi];
    let from = latest_failing_start(kh, from, to, budget);
    window(kh, from, to, true)
}

/// The window of a history that fails only from its initial state: the earliest cut that fails,
/// then (if some start from "anything" fails too) the latest such start.
fn shrink_from_start(kh: &KeyHistory, budget: u64) -> Window {
    let mut rets: Vec<u64> = kh.ops.iter().filter_map(|o| o.ret).collect();
    rets.sort_unstable();
    rets.dedup();
    let (mut lo, mut hi) = (0usize, rets.len());
    // Invariant: the cut at rets[hi] fails (hi == len: the whole history, known to fail).
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&Task::cut(kh, 0, rets[mid], kh.init), budget) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let to = rets.get(hi).copied().unwrap_or(u64::MAX);
    if fails(&Task::cut(kh, 0, to, kh.init.anything()), budget) {
        let from = latest_failing_start(kh, 0, to, budget);
        window(kh, from, to, true)
    } else {
        window(kh, 0, to, false)
    }
}

/// The latest call time `m` >= `from` such that the window [m, to] from "anything" fails
/// (monotone: an earlier start only adds operations); [from, to] is known to fail.
fn latest_failing_start(kh: &KeyHistory, from: u64, to: u64, budget: u64) -> u64 {
    let anything = kh.init.anything();
    let mut calls: Vec<u64> = kh.ops.iter().map(|o| o.call).filter(|c| *c >= from && *c <= to).collect();
    calls.push(from);
    calls.sort_unstable();
    calls.dedup();
    // Invariant: the window from calls[lo] fails.
    let (mut lo, mut hi) = (0usize, calls.len() - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fails(&Task::cut(kh, calls[mid], to, anything), budget) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    calls[lo]
}

fn window(kh: &KeyHistory, from: u64, to: u64, from_anything: bool) -> Window {
    let mut ops: Vec<usize> = (0..kh.ops.len())
        .filter(|&i| {
            let o = &kh.ops[i];
            o.call <= to && (o.call >= from || o.ret.is_some_and(|r| r >= from))
        })
        .collect();
    ops.sort_by_key(|&i| (kh.ops[i].call, i));
    let earlier_unknown = kh
        .ops
        .iter()
        .filter(|o| {
            o.call < from
                && o.ret.is_none()
                && o.deadline.is_none_or(|d| d >= from)
                && o.prims.iter().any(Prim::writes)
        })
        .count();
    Window { from_ns: from, to_ns: to, from_anything, ops, earlier_unknown }
}

/// The verdict on a whole history.
#[derive(Debug, Clone)]
pub struct Report {
    pub keys: Vec<KeyReport>,
    pub ops: usize,
    pub faults: usize,
}

impl Report {
    pub fn linearizable(&self) -> bool {
        self.keys.iter().all(|k| k.verdict == Verdict::Linearizable)
    }
    pub fn violations(&self) -> impl Iterator<Item = &KeyReport> {
        self.keys.iter().filter(|k| k.verdict == Verdict::NotLinearizable)
    }
}

/// Default step budget per search: a few seconds' worth.
pub const BUDGET_DEFAULT: u64 = 20_000_000;

pub fn check(h: &History, budget: u64) -> anyhow::Result<(Report, Vec<KeyHistory>)> {
    let khs = project(h)?;
    let keys = khs.iter().map(|kh| check_key(kh, budget)).collect();
    Ok((Report { keys, ops: h.ops.len(), faults: h.faults.len() }, khs))
}

/// The report as text: a line per key, and each violation's window, operation by operation,
/// with the faults injected during it.
pub fn render(h: &History, r: &Report, khs: &[KeyHistory]) -> String {
    let mut s = String::new();
    let unknown = h.ops.iter().filter(|o| matches!(o.outcome, Outcome::Unknown { .. })).count();
    let _ =
        writeln!(s, "lincheck: {} operations ({unknown} with unknown outcome), {} faults", r.ops, r.faults);
    if let Some(run) = &h.run {
        let _ = writeln!(
            s,
            "  run: seed {} server {} nodes {} clients {} faults [{}]",
            run.seed,
            run.server,
            run.nodes,
            run.clients,
            run.faults.join(",")
        );
    }
    for (k, kh) in r.keys.iter().zip(khs) {
        let what = match k.verdict {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "NOT LINEARIZABLE",
            Verdict::GaveUp => "UNDECIDED (search budget exhausted)",
        };
        let _ = writeln!(
            s,
            "  {}: {} ops ({} unknown): {what} ({} ms, {} configurations)",
            k.key,
            k.ops,
            k.unknown,
            k.elapsed.as_millis(),
            k.stats.configurations
        );
        if let Some(w) = &k.window {
            let _ = writeln!(
                s,
                "    smallest failing window: {} ops, {:.6}s .. {:.6}s, {}",
                w.ops.len(),
                secs(w.from_ns),
                secs(w.to_ns),
                if w.from_anything { "from any state of the key" } else { "from the key's initial state" }
            );
            if w.earlier_unknown > 0 {
                let _ = writeln!(
                    s,
                    "    (and {} earlier writes with unknown outcome that may take effect in it)",
                    w.earlier_unknown
                );
            }
            let mut lines: Vec<(u64, String)> = w
                .ops
                .iter()
                .map(|&i| {
                    let o = &h.ops[kh.ops[i].src];
                    (o.call_ns, format!("    {}", describe(o)))
                })
                .collect();
            for f in &h.faults {
                if f.at_ns >= w.from_ns && f.at_ns <= w.to_ns {
                    lines.push((
                        f.at_ns,
                        format!("    [{:.6}s] FAULT node {}: {} {}", secs(f.at_ns), f.node, f.what, f.detail),
                    ));
                }
            }
            lines.sort_by_key(|l| l.0);
            for (_, l) in lines {
                let _ = writeln!(s, "{l}");
            }
        }
    }
    let bad = r.keys.iter().filter(|k| k.verdict != Verdict::Linearizable).count();
    let _ = writeln!(
        s,
        "lincheck: {}",
        if bad == 0 {
            "linearizable".to_string()
        } else {
            format!("{bad} of {} keys not shown linearizable", r.keys.len())
        }
    );
    s
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// One operation on one line: times, who, what, and what came back.
pub fn describe(o: &Op) -> String {
    let ret = match o.ret_ns {
        Some(r) => format!("{:.6}", secs(r)),
        None => "?".into(),
    };
    let subs: Vec<String> = o.subs.iter().map(describe_sub).collect();
    let what = if o.multi { format!("multi[{}]", subs.join(", ")) } else { subs.join(", ") };
    let out = match &o.outcome {
        Outcome::Ok { results } => {
            let r: Vec<String> = results.iter().map(describe_res).collect();
            format!("ok {}", r.join(", "))
        }
        Outcome::Fail { index, error, .. } => {
            if o.subs.len() > 1 {
                format!("FAILED {error} at request {index}")
            } else {
                format!("FAILED {error}")
            }
        }
        Outcome::Unknown { why } => format!("UNKNOWN ({why})"),
    };
    format!(
        "[{:.6}s .. {ret}s] #{} client {} session {} node {}: {what} -> {out}",
        secs(o.call_ns),
        o.id,
        o.client,
        o.session,
        o.node
    )
}

fn describe_sub(s: &Sub) -> String {
    let v = |v: &i32| if *v == -1 { String::new() } else { format!(" @v{v}") };
    match s {
        Sub::Read { path } => format!("read {path}"),
        Sub::Set { path, value, version } => format!("set {path}={value:?}{}", v(version)),
        Sub::Create { path, value } => format!("create {path}={value:?}"),
        Sub::CreateSeq { prefix } => format!("create-seq {prefix}"),
        Sub::Delete { path, version } => format!("delete {path}{}", v(version)),
        Sub::Check { path, version } => format!("check {path} @v{version}"),
        Sub::ReadCversion { path } => format!("read-cversion {path}"),
    }
}

fn describe_res(r: &Res) -> String {
    match r {
        Res::Read { value: Some(v), version } => format!("{v:?} v{version}"),
        Res::Read { value: None, version } => format!("null v{version}"),
        Res::Set { version } => format!("v{version}"),
        Res::Created { path } => path.clone(),
        Res::Done => "done".into(),
        Res::Cversion { cversion } => format!("cversion {cversion}"),
    }
}

/// Searches the window [from, to] of a key's history, from its initial state or from "anything".
pub fn check_window(
    kh: &KeyHistory,
    from: u64,
    to: u64,
    from_anything: bool,
    budget: u64,
) -> (Verdict, Stats) {
    let init = if from_anything { kh.init.anything() } else { kh.init };
    search(&Task::cut(kh, from, to, init), budget)
}
