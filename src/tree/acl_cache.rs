//! ZooKeeper's `ReferenceCountedACLCache`: each distinct ACL list is stored once under an i64 id;
//! nodes hold the id. Snapshots store the id → list map and each node's id, so ids must be kept
//! exactly (a snapshot written by either server is read by the other). -1 is OPEN_ACL_UNSAFE.

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::jute::{Record, Writer};
use crate::proto::{perms, Acl, Id};

pub const OPEN_ACL_UNSAFE_ID: i64 = -1;

pub fn open_acl_unsafe() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

fn key(acl: &[Acl]) -> Vec<u8> {
    let mut w = Writer::new();
    for a in acl {
        a.encode(&mut w);
    }
    w.buf
}

#[derive(Default)]
pub struct AclCache {
    by_id: HashMap<i64, (Arc<Vec<Acl>>, u64)>,
    by_key: HashMap<Vec<u8>, i64>,
    next: i64,
}

impl AclCache {
    /// The id for `acl`, adding one reference.
    pub fn intern(&mut self, acl: &[Acl]) -> i64 {
        let k = key(acl);
        let id = match self.by_key.get(&k) {
            Some(id) => *id,
            None => {
                self.next += 1;
                let id = self.next;
                self.by_key.insert(k, id);
                self.by_id.insert(id, (Arc::new(acl.to_vec()), 0));
                id
            }
        };
        self.by_id.get_mut(&id).expect("interned").1 += 1;
        id
    }

    pub fn add_usage(&mut self, id: i64) {
        self.add_usage_n(id, 1);
    }

    /// Counts `n` more nodes using `id`. An id the cache does not hold (a fuzzy snapshot's
    /// node whose ACL changed after the cache was written; its setACL follows in the log) is
    /// never handed out to another list: `intern` would otherwise give that list the node's
    /// stale id, and the replayed setACL, dropping the stale id's use, would free the list
    /// under its real users.
    pub fn add_usage_n(&mut self, id: i64, n: u64) {
        match self.by_id.get_mut(&id) {
            Some(e) => e.1 += n,
            None => self.next = self.next.max(id),
        }
    }

    pub fn remove_usage(&mut self, id: i64) {
        if id == OPEN_ACL_UNSAFE_ID {
            return;
        }
        let gone = match self.by_id.get_mut(&id) {
            Some(e) => {
                e.1 = e.1.saturating_sub(1);
                e.1 == 0
            }
            None => false,
        };
        if gone {
            if let Some((acl, _)) = self.by_id.remove(&id) {
                self.by_key.remove(&key(&acl));
            }
        }
    }

    pub fn get(&self, id: i64) -> Arc<Vec<Acl>> {
        if id == OPEN_ACL_UNSAFE_ID {
            return Arc::new(open_acl_unsafe());
        }
        match self.by_id.get(&id) {
            Some((a, _)) => a.clone(),
            // ZooKeeper throws here; an unknown id is a corrupt snapshot. Deny everything
            // rather than open the node up.
            None => Arc::new(Vec::new()),
        }
    }

    /// Loads a snapshot's map (reference counts are rebuilt as nodes are inserted).
    pub fn import(&mut self, entries: &[(i64, Vec<Acl>)]) {
        for (id, acl) in entries {
            self.by_key.insert(key(acl), *id);
            self.by_id.insert(*id, (Arc::new(acl.clone()), 0));
            self.next = self.next.max(*id);
        }
    }

    /// Drops entries no node uses (after a snapshot load).
    pub fn purge_unused(&mut self) {
        let unused: Vec<i64> = self.by_id.iter().filter(|(_, (_, n))| *n == 0).map(|(id, _)| *id).collect();
        for id in unused {
            if let Some((acl, _)) = self.by_id.remove(&id) {
                self.by_key.remove(&key(&acl));
            }
        }
    }

    pub fn export(&self) -> Vec<(i64, Vec<Acl>)> {
        let mut v: Vec<(i64, Vec<Acl>)> =
            self.by_id.iter().map(|(id, (a, _))| (*id, (**a).clone())).collect();
        v.sort_by_key(|e| e.0);
        v
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_id_in_use_is_never_handed_out() {
        let a =
            |who: &str| vec![Acl { perms: perms::ALL, id: Id { scheme: "digest".into(), id: who.into() } }];
        let mut c = AclCache::default();
        c.import(&[(1, a("x")), (2, a("y"))]);
        // A loaded node refers to id 5, which the snapshot's cache does not hold.
        c.add_usage(5);
        c.add_usage(1);
        let id = c.intern(&a("z"));
        assert!(id > 5, "a new list got id {id}, which a node still refers to");
        // The node's replayed setACL drops its stale id: z keeps its user.
        c.remove_usage(5);
        assert_eq!(*c.get(id), a("z"));
    }
}
