//! Session tracker: ZooKeeper's `SessionTrackerImpl` as a pure state machine (`now_ms` passed in).
//!
//! Expiry uses ZooKeeper's bucket scheme: a session's deadline is rounded *up* to the next multiple
//! of the expiration interval (tickTime), so one tick expires a whole bucket at once and touching a
//! session moves it between buckets only when its deadline bucket changes.

use std::collections::{BTreeMap, HashMap, HashSet};

/// `java.util.Random`, bit for bit: ZooKeeper derives a session's password from
/// `new Random(sessionId ^ 0xB3415C00L).nextBytes(byte[16])`, so zkd generating the same password
/// lets clients keep their sessions across a ZooKeeper ⇄ zkd migration.
pub struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    const MULT: i64 = 0x5DEECE66D;
    const MASK: i64 = (1 << 48) - 1;
    pub fn new(seed: i64) -> Self {
        JavaRandom { seed: (seed ^ Self::MULT) & Self::MASK }
    }
    fn next(&mut self, bits: u32) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        ((self.seed as u64) >> (48 - bits)) as i32
    }
    pub fn next_int(&mut self) -> i32 {
        self.next(32)
    }
    pub fn next_bytes(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() {
            let mut rnd = self.next_int();
            let n = (out.len() - i).min(4);
            for _ in 0..n {
                out[i] = rnd as u8;
                rnd >>= 8;
                i += 1;
            }
        }
    }
}

/// ZooKeeper's `SessionTrackerImpl.superSecret`.
const SUPER_SECRET: i64 = 0xB3415C00;

/// The 16-byte password of a session, as ZooKeeper generates it.
pub fn session_password(session_id: i64) -> [u8; 16] {
    let mut p = [0u8; 16];
    JavaRandom::new(session_id ^ SUPER_SECRET).next_bytes(&mut p);
    p
}

/// ZooKeeper's `SessionTrackerImpl.initializeNextSession`: server id in the top byte, the start time
/// in milliseconds below it, so ids stay unique across restarts of the same server.
pub fn initial_session_id(server_id: u8, now_ms: i64) -> i64 {
    let time_bits = ((now_ms << 24) as u64 >> 8) as i64;
    time_bits | ((server_id as i64) << 56)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: i64,
    pub timeout_ms: i32,
    /// The bucket (rounded deadline) the session currently sits in.
    pub expire_at_ms: i64,
    /// Set once a closeSession txn was issued; a closing session accepts no new requests.
    pub closing: bool,
}

pub struct SessionTracker {
    interval_ms: i64,
    next_id: i64,
    sessions: HashMap<i64, Session, ahash::RandomState>,
    buckets: BTreeMap<i64, HashSet<i64, ahash::RandomState>>,
}

impl SessionTracker {
    /// `wall_ms` seeds the session ids (as ZooKeeper does); every other time here is monotonic.
    pub fn new(server_id: u8, tick_ms: i64, wall_ms: i64) -> Self {
        assert!(tick_ms > 0, "tickTime must be positive");
        SessionTracker {
            interval_ms: tick_ms,
            next_id: initial_session_id(server_id, wall_ms),
            sessions: HashMap::default(),
            buckets: BTreeMap::new(),
        }
    }

    fn round_up(&self, t: i64) -> i64 {
        (t / self.interval_ms + 1) * self.interval_ms
    }

    fn place(&mut self, id: i64, deadline: i64) {
        let bucket = self.round_up(deadline);
        let s = self.sessions.get_mut(&id).expect("placing an untracked session");
        if s.expire_at_ms == bucket {
            return;
        }
        let old = s.expire_at_ms;
        s.expire_at_ms = bucket;
        if let Some(set) = self.buckets.get_mut(&old) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&old);
            }
        }
        self.buckets.entry(bucket).or_default().insert(id);
    }

    /// Allocates the next session id (the createSession txn then calls `add`).
    pub fn next_session_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Tracks a session (new, or restored from a snapshot/log).
    pub fn add(&mut self, id: i64, timeout_ms: i32, now_ms: i64) {
        self.sessions.entry(id).or_insert(Session { id, timeout_ms, expire_at_ms: 0, closing: false });
        self.sessions.get_mut(&id).unwrap().timeout_ms = timeout_ms;
        self.place(id, now_ms + timeout_ms as i64);
        // Keep fresh ids clear of restored ones.
        if id >= self.next_id && (id >> 56) == (self.next_id >> 56) {
            self.next_id = id + 1;
        }
    }

    /// Replaces every session with these (id, timeout ms), as restored from a snapshot the
    /// leader sent; each expires a full timeout from `now_ms`.
    pub fn replace_all(&mut self, sessions: impl IntoIterator<Item = (i64, i32)>, now_ms: i64) {
        self.sessions.clear();
        self.buckets.clear();
        for (id, timeout_ms) in sessions {
            self.add(id, timeout_ms, now_ms);
        }
    }

    /// Records activity. False if the session is unknown or closing (the caller answers
    /// SessionExpired / closes the connection).
    pub fn touch(&mut self, id: i64, now_ms: i64) -> bool {
        match self.sessions.get(&id) {
            Some(s) if !s.closing => {
                let t = s.timeout_ms as i64;
                self.place(id, now_ms + t);
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, id: i64) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn is_valid(&self, id: i64) -> bool {
        self.sessions.get(&id).is_some_and(|s| !s.closing)
    }

    pub fn set_closing(&mut self, id: i64) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.closing = true;
        }
    }

    pub fn remove(&mut self, id: i64) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(set) = self.buckets.get_mut(&s.expire_at_ms) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&s.expire_at_ms);
            }
        }
        Some(s)
    }

    /// Sessions whose bucket deadline has passed and that are not already closing; they are marked
    /// closing (the caller issues their closeSession txns).
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        let due: Vec<i64> = self.buckets.range(..=now_ms).map(|(k, _)| *k).collect();
        for b in due {
            if let Some(ids) = self.buckets.remove(&b) {
                for id in ids {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        assert!(
                            s.expire_at_ms <= now_ms,
                            "session 0x{id:x} in a due bucket expires at {}",
                            s.expire_at_ms
                        );
                        if !s.closing {
                            s.closing = true;
                            out.push(id);
                        }
                        // Parked in a far bucket; removed when its closeSession txn applies.
                        s.expire_at_ms = i64::MAX;
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Expiry buckets (deadline ms) with their session ids, both ascending (for `dump`).
    pub fn buckets(&self) -> Vec<(i64, Vec<i64>)> {
        self.buckets
            .iter()
            .map(|(t, ids)| {
                let mut v: Vec<i64> = ids.iter().copied().collect();
                v.sort_unstable();
                (*t, v)
            })
            .collect()
    }

    /// The tracker's contents, as the operations surface shows them (`dump`).
    pub fn dump(&self) -> SessionsDump {
        SessionsDump { buckets: self.buckets(), count: self.len() }
    }

    /// Sessions with their timeouts, for snapshots and `dump`.
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// Session tracker contents, as the replica reports them for `dump`.
#[derive(Debug, Clone, Default)]
pub struct SessionsDump {
    /// Expiry bucket (epoch ms) → session ids, ascending.
    pub buckets: Vec<(i64, Vec<i64>)>,
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_matches_jdk() {
        // new java.util.Random(42).nextInt() == -1170105035 ; nextInt() == 234785527
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next_int(), -1170105035);
        assert_eq!(r.next_int(), 234785527);
    }

    #[test]
    fn session_ids_carry_server_id_and_time() {
        let id = initial_session_id(1, 1_700_000_000_000);
        assert_eq!(id >> 56, 1);
        assert_ne!(id & 0x00ff_ffff_ffff_ffff, 0);
    }

    #[test]
    fn expiry_by_bucket_and_touch() {
        let mut t = SessionTracker::new(0, 2000, 0);
        let a = t.next_session_id();
        let b = t.next_session_id();
        t.add(a, 4000, 0);
        t.add(b, 4000, 0);
        // Deadline 4000 rounds up to bucket 6000.
        assert_eq!(t.get(a).unwrap().expire_at_ms, 6000);
        assert!(t.expire(5999).is_empty());
        assert!(t.touch(b, 3000)); // 7000 → bucket 8000
        assert_eq!(t.expire(6000), vec![a]);
        assert!(!t.touch(a, 6001), "a closing session cannot be revived");
        assert_eq!(t.expire(8000), vec![b]);
        t.remove(a);
        t.remove(b);
        assert!(t.is_empty());
    }
}
