//! The sequential specification of one key, as the checker sees it.
//!
//! Two kinds of key: a data znode (exists?, value, Stat.version) and a sequential parent (its
//! counter: the next sequential suffix, which is also its cversion while it only gains children).
//! An operation on a key is a list of primitives applied atomically (a plain call is one; a multi
//! projected onto one key may be several) with an outcome.
//!
//! A state may be partly unknown (`None` fields): the checker starts a window of the history in
//! the state "anything" and learns it from what the operations return. Every rule below accepts
//! whatever some concrete state in the partial one would accept, so a window found not
//! linearizable from "anything" is not linearizable from any state. Where a rule would need a
//! constraint a partial state cannot hold ("version is not 5") it drops it, which only accepts
//! more.

/// An interned znode value. [`UNSEEN`] stands for every value no read ever returned: such values
/// are indistinguishable to the checker, and writes of them become interchangeable.
pub type Val = u32;
pub const UNSEEN: Val = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prim {
    /// getData (after sync).
    Read,
    /// setData; `expect` None is version -1.
    Set {
        value: Val,
        expect: Option<i32>,
    },
    Create {
        value: Val,
    },
    Delete {
        expect: Option<i32>,
    },
    Check {
        expect: i32,
    },
    /// A sequential create under this key.
    CreateSeq,
    /// The parent's cversion (after sync).
    ReadCounter,
}

impl Prim {
    /// Whether the primitive can change the state (a skipped optional op without effect is free).
    pub fn writes(&self) -> bool {
        !matches!(self, Prim::Read | Prim::Check { .. } | Prim::ReadCounter)
    }
}

/// What a primitive returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrimOut {
    Read { value: Val, version: i32 },
    Set { version: i32 },
    Seq { n: i64 },
    Counter { cversion: i32 },
    Done,
}

/// A definite error, as far as the model cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Err {
    NoNode,
    NodeExists,
    BadVersion,
    /// Any other error (SystemError on a full disk, ...): no effect, no constraint on the state.
    Other,
}

impl Err {
    pub fn from_code(code: i32) -> Err {
        match code {
            -101 => Err::NoNode,
            -110 => Err::NodeExists,
            -103 => Err::BadVersion,
            _ => Err::Other,
        }
    }
}

/// An operation's outcome on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOutcome {
    /// Every primitive took effect and returned this.
    Ok(Vec<PrimOut>),
    /// Nothing took effect. The first `passed` primitives would have succeeded (the multi got
    /// past them); then `err` is how the next one failed, or None when the multi failed on
    /// another key.
    Fail { passed: usize, err: Option<Err> },
    /// No reply: every primitive took effect (so each precondition held), or none did.
    Unknown,
}

/// The state of a data znode; `None` = not known (only in a window started from "anything").
/// Canonical: an absent znode has no value and no version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    pub exists: Option<bool>,
    pub value: Option<Val>,
    pub version: Option<i32>,
}

impl Node {
    pub const ABSENT: Node = Node { exists: Some(false), value: None, version: None };
    pub const ANYTHING: Node = Node { exists: None, value: None, version: None };

    fn must_exist(&mut self) -> bool {
        if self.exists == Some(false) {
            return false;
        }
        self.exists = Some(true);
        true
    }

    fn must_not_exist(&mut self) -> bool {
        if self.exists == Some(true) {
            return false;
        }
        *self = Node::ABSENT;
        true
    }

    /// A conditional write's version check, if both sides are known.
    fn version_matches(&self, expect: Option<i32>) -> bool {
        match (expect, self.version) {
            (Some(e), Some(v)) => e == v,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Node(Node),
    /// A sequential parent's counter; None = not known.
    Counter(Option<i64>),
}

impl State {
    /// Whether every concrete state `other` stands for is one `self` stands for (each field of
    /// `self` unknown or equal). The rules are monotone in this order: what `other` accepts,
    /// `self` accepts, and leads to a state that covers the one `other` leads to.
    pub fn covers(&self, other: &State) -> bool {
        fn field<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || a == b
        }
        match (self, other) {
            (State::Node(a), State::Node(b)) => {
                field(&a.exists, &b.exists) && field(&a.value, &b.value) && field(&a.version, &b.version)
            }
            (State::Counter(a), State::Counter(b)) => field(a, b),
            _ => false,
        }
    }

    /// The same kind of state with nothing known.
    pub fn anything(&self) -> State {
        match self {
            State::Node(_) => State::Node(Node::ANYTHING),
            State::Counter(_) => State::Counter(None),
        }
    }
}

/// Applies a primitive that succeeded; `out` is what it returned, if known.
fn apply_ok(s: &mut State, p: &Prim, out: Option<&PrimOut>) -> bool {
    match (s, p) {
        (State::Node(n), Prim::Read) => {
            if !n.must_exist() {
                return false;
            }
            if let Some(PrimOut::Read { value, version }) = out {
                if n.value.is_some_and(|v| v != *value) || n.version.is_some_and(|v| v != *version) {
                    return false;
                }
                n.value = Some(*value);
                n.version = Some(*version);
            }
            true
        }
        (State::Node(n), Prim::Set { value, expect }) => {
            if !n.must_exist() || !n.version_matches(*expect) {
                return false;
            }
            let mut next = n.version.or(*expect).map(|v| v.wrapping_add(1));
            if let Some(PrimOut::Set { version }) = out {
                if next.is_some_and(|v| v != *version) {
                    return false;
                }
                next = Some(*version);
            }
            n.value = Some(*value);
            n.version = next;
            true
        }
        (State::Node(n), Prim::Create { value }) => {
            if n.exists == Some(true) {
                return false;
            }
            *n = Node { exists: Some(true), value: Some(*value), version: Some(0) };
            true
        }
        (State::Node(n), Prim::Delete { expect }) => {
            if !n.must_exist() || !n.version_matches(*expect) {
                return false;
            }
            *n = Node::ABSENT;
            true
        }
        (State::Node(n), Prim::Check { expect }) => {
            if !n.must_exist() || !n.version_matches(Some(*expect)) {
                return false;
            }
            n.version = Some(*expect);
            true
        }
        (State::Counter(c), Prim::CreateSeq) => {
            if let Some(PrimOut::Seq { n }) = out {
                if c.is_some_and(|c| c != *n) {
                    return false;
                }
                *c = Some(*n);
            }
            *c = c.map(|c| c + 1);
            true
        }
        (State::Counter(c), Prim::ReadCounter) => {
            if let Some(PrimOut::Counter { cversion }) = out {
                let seen = i64::from(*cversion);
                if c.is_some_and(|c| c != seen) {
                    return false;
                }
                *c = Some(seen);
            }
            true
        }
        // A primitive of the other kind of key: the history mixes them up.
        _ => false,
    }
}

/// Checks a primitive that failed with `err` (the state does not change, but a partial state may
/// learn from it).
fn check_fail(s: &mut State, p: &Prim, err: Err) -> bool {
    let State::Node(n) = s else {
        // A sequential parent: a failed create tells nothing about the counter.
        return matches!(p, Prim::CreateSeq);
    };
    match (err, p) {
        (Err::Other, _) => true,
        (Err::NoNode, Prim::Read | Prim::Set { .. } | Prim::Delete { .. } | Prim::Check { .. }) => {
            n.must_not_exist()
        }
        (Err::NodeExists, Prim::Create { .. }) => n.must_exist(),
        (Err::BadVersion, Prim::Set { expect: Some(e), .. } | Prim::Delete { expect: Some(e) })
        | (Err::BadVersion, Prim::Check { expect: e }) => n.must_exist() && n.version != Some(*e),
        // An error the request cannot get (BadVersion for version -1, NodeExists on a setData).
        _ => false,
    }
}

/// The state an operation leads to from `s`; None if it cannot happen in `s`. (Deterministic:
/// an unknown outcome's "or never" is the search's business, not the model's.)
pub fn step(s: &State, prims: &[Prim], out: &KeyOutcome) -> Option<State> {
    let mut next = *s;
    match out {
        KeyOutcome::Ok(outs) => {
            if outs.len() != prims.len() {
                return None;
            }
            for (p, o) in prims.iter().zip(outs) {
                if !apply_ok(&mut next, p, Some(o)) {
                    return None;
                }
            }
            Some(next)
        }
        KeyOutcome::Unknown => {
            for p in prims {
                if !apply_ok(&mut next, p, None) {
                    return None;
                }
            }
            Some(next)
        }
        KeyOutcome::Fail { passed, err } => {
            if *passed > prims.len() || (err.is_some() && *passed >= prims.len()) {
                return None;
            }
            for p in &prims[..*passed] {
                if !apply_ok(&mut next, p, None) {
                    return None;
                }
            }
            if let Some(e) = err {
                if !check_fail(&mut next, &prims[*passed], *e) {
                    return None;
                }
            }
            // Nothing took effect. What the failure taught about a partial state holds for the
            // state before the operation only when no primitive ran before the failing one.
            if *passed == 0 {
                Some(next)
            } else {
                Some(*s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: Val, ver: i32) -> State {
        State::Node(Node { exists: Some(true), value: Some(v), version: Some(ver) })
    }

    fn ok(s: State, p: Prim, o: PrimOut) -> Option<State> {
        step(&s, &[p], &KeyOutcome::Ok(vec![o]))
    }

    #[test]
    fn set_and_read_on_a_known_znode() {
        let s = node(1, 3);
        assert_eq!(
            ok(s, Prim::Set { value: 2, expect: None }, PrimOut::Set { version: 4 }),
            Some(node(2, 4))
        );
        assert_eq!(ok(s, Prim::Set { value: 2, expect: None }, PrimOut::Set { version: 5 }), None);
        assert_eq!(
            ok(s, Prim::Set { value: 2, expect: Some(3) }, PrimOut::Set { version: 4 }),
            Some(node(2, 4))
        );
        assert_eq!(ok(s, Prim::Set { value: 2, expect: Some(2) }, PrimOut::Set { version: 3 }), None);
        assert_eq!(ok(s, Prim::Read, PrimOut::Read { value: 1, version: 3 }), Some(s));
        assert_eq!(ok(s, Prim::Read, PrimOut::Read { value: 9, version: 3 }), None);
        let bad = KeyOutcome::Fail { passed: 0, err: Some(Err::BadVersion) };
        assert_eq!(step(&s, &[Prim::Set { value: 2, expect: Some(3) }], &bad), None);
        assert_eq!(step(&s, &[Prim::Set { value: 2, expect: Some(2) }], &bad), Some(s));
        assert_eq!(step(&s, &[Prim::Set { value: 2, expect: None }], &bad), None);
        let nonode = KeyOutcome::Fail { passed: 0, err: Some(Err::NoNode) };
        assert_eq!(step(&s, &[Prim::Read], &nonode), None);
        let absent = State::Node(Node::ABSENT);
        assert_eq!(step(&absent, &[Prim::Read], &nonode), Some(absent));
    }

    #[test]
    fn create_delete_and_check() {
        let absent = State::Node(Node::ABSENT);
        let created = ok(absent, Prim::Create { value: 5 }, PrimOut::Done).unwrap();
        assert_eq!(created, node(5, 0));
        assert_eq!(ok(created, Prim::Create { value: 6 }, PrimOut::Done), None);
        let exists = KeyOutcome::Fail { passed: 0, err: Some(Err::NodeExists) };
        assert_eq!(step(&created, &[Prim::Create { value: 6 }], &exists), Some(created));
        assert_eq!(step(&absent, &[Prim::Create { value: 6 }], &exists), None);
        assert_eq!(ok(created, Prim::Delete { expect: Some(0) }, PrimOut::Done), Some(absent));
        assert_eq!(ok(created, Prim::Delete { expect: Some(1) }, PrimOut::Done), None);
        assert_eq!(ok(created, Prim::Check { expect: 0 }, PrimOut::Done), Some(created));
        assert_eq!(ok(created, Prim::Check { expect: 1 }, PrimOut::Done), None);
    }

    #[test]
    fn a_multi_is_atomic_on_its_key() {
        let s = node(1, 3);
        let prims = [Prim::Check { expect: 3 }, Prim::Set { value: 2, expect: None }];
        let out = KeyOutcome::Ok(vec![PrimOut::Done, PrimOut::Set { version: 4 }]);
        assert_eq!(step(&s, &prims, &out), Some(node(2, 4)));
        // Failed at the set (NoNode cannot be: the check passed) vs failed elsewhere.
        let f = KeyOutcome::Fail { passed: 1, err: Some(Err::NoNode) };
        assert_eq!(step(&s, &prims, &f), None);
        let elsewhere = KeyOutcome::Fail { passed: 2, err: None };
        assert_eq!(step(&s, &prims, &elsewhere), Some(s));
        // ... but the check must have passed.
        assert_eq!(step(&node(1, 4), &prims, &elsewhere), None);
        // Unknown: applies only where every precondition holds.
        assert_eq!(step(&s, &prims, &KeyOutcome::Unknown), Some(node(2, 4)));
        assert_eq!(step(&node(1, 5), &prims, &KeyOutcome::Unknown), None);
    }

    #[test]
    fn a_partial_state_learns_and_never_refuses_what_a_concrete_one_accepts() {
        let any = State::Node(Node::ANYTHING);
        // A read from "anything" fixes the state.
        assert_eq!(ok(any, Prim::Read, PrimOut::Read { value: 4, version: 9 }), Some(node(4, 9)));
        // A conditional set fixes the version from its expectation.
        assert_eq!(
            ok(any, Prim::Set { value: 4, expect: Some(2) }, PrimOut::Set { version: 3 }),
            Some(node(4, 3))
        );
        assert_eq!(ok(any, Prim::Set { value: 4, expect: Some(2) }, PrimOut::Set { version: 7 }), None);
        // An unknown unconditional set: the value is known, the version is not.
        let u = step(&any, &[Prim::Set { value: 4, expect: None }], &KeyOutcome::Unknown).unwrap();
        assert_eq!(u, State::Node(Node { exists: Some(true), value: Some(4), version: None }));
        // BadVersion from "anything": it exists, the version stays unknown.
        let f = KeyOutcome::Fail { passed: 0, err: Some(Err::BadVersion) };
        let s = step(&any, &[Prim::Check { expect: 1 }], &f).unwrap();
        assert_eq!(s, State::Node(Node { exists: Some(true), value: None, version: None }));
        assert!(any.covers(&s) && !s.covers(&any) && s.covers(&node(1, 2)) && !node(1, 2).covers(&s));
        assert!(any.covers(&State::Node(Node::ABSENT)) && !s.covers(&State::Node(Node::ABSENT)));
    }

    #[test]
    fn the_sequence_counter() {
        let c = State::Counter(Some(4));
        assert_eq!(ok(c, Prim::CreateSeq, PrimOut::Seq { n: 4 }), Some(State::Counter(Some(5))));
        assert_eq!(ok(c, Prim::CreateSeq, PrimOut::Seq { n: 3 }), None, "a number used again");
        assert_eq!(ok(c, Prim::CreateSeq, PrimOut::Seq { n: 6 }), None, "a number skipped");
        assert_eq!(ok(c, Prim::ReadCounter, PrimOut::Counter { cversion: 4 }), Some(c));
        assert_eq!(ok(c, Prim::ReadCounter, PrimOut::Counter { cversion: 3 }), None);
        assert_eq!(step(&c, &[Prim::CreateSeq], &KeyOutcome::Unknown), Some(State::Counter(Some(5))));
        let any = State::Counter(None);
        assert_eq!(ok(any, Prim::CreateSeq, PrimOut::Seq { n: 8 }), Some(State::Counter(Some(9))));
        assert_eq!(step(&any, &[Prim::CreateSeq], &KeyOutcome::Unknown), Some(any));
    }
}
