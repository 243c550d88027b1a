//! Watches: registering, checking and removing them, re-registering a reconnecting client's
//! (`setWatches`), and firing them when a txn changes a node (`trigger`, under the stripe locks the
//! txn holds).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{parent_of, stripe_of, DataTree};
use crate::proto::{Acl, EventType, WatcherType};

/// A connection that set a watch: its shard and its id there.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct WatcherId {
    pub shard: u16,
    pub conn: u64,
}

/// Receives fired watches. `apply` calls it while holding the changed path's lock. `acl` is the
/// ACL of the znode the event is about: the event reaches a connection only if that connection
/// may READ it (checked at delivery with the connection's current auth, as ZooKeeper does since
/// the CVE-2024-23944 fix, which Debian's 3.8 carries). An empty ACL means "no check".
pub trait WatchSink {
    fn deliver(&mut self, w: WatcherId, event: EventType, path: &str, acl: &Arc<Vec<Acl>>);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    Standard,
    Persistent,
    Recursive,
}

pub(super) type WatchList = SmallVec<[(WatcherId, Mode); 2]>;

#[derive(Default)]
pub(super) struct Watches {
    pub(super) data: HashMap<Box<str>, WatchList, ahash::RandomState>,
    pub(super) child: HashMap<Box<str>, WatchList, ahash::RandomState>,
}

impl DataTree {
    pub(super) fn add_watch(
        &self,
        table: &mut HashMap<Box<str>, WatchList, ahash::RandomState>,
        path: &str,
        w: WatcherId,
        mode: Mode,
    ) {
        let list = table.entry(path.into()).or_default();
        match list.iter_mut().find(|(x, _)| *x == w) {
            Some(e) => {
                if e.1 == Mode::Recursive && mode != Mode::Recursive {
                    self.recursive_watches.fetch_sub(1, Ordering::Relaxed);
                } else if e.1 != Mode::Recursive && mode == Mode::Recursive {
                    self.recursive_watches.fetch_add(1, Ordering::Relaxed);
                }
                e.1 = mode;
            }
            None => {
                if mode == Mode::Recursive {
                    self.recursive_watches.fetch_add(1, Ordering::Relaxed);
                }
                self.watch_count.fetch_add(1, Ordering::Relaxed);
                list.push((w, mode));
            }
        }
    }

    /// Every data watch as (path, watchers), taking one stripe's watch lock at a time (the
    /// `wchc`/`wchp`/`wchs` words; ZooKeeper reports its data-watch table there). Persistent
    /// watches are in this table too.
    pub fn data_watches(&self) -> Vec<(String, Vec<WatcherId>)> {
        let mut out = Vec::new();
        for st in self.stripes.iter() {
            let ws = st.watches.lock();
            out.extend(ws.data.iter().map(|(p, l)| (p.to_string(), l.iter().map(|(w, _)| *w).collect())));
        }
        out
    }

    pub fn add_persistent_watch(&self, path: &str, recursive: bool, w: WatcherId) {
        let _nodes = self.read(path);
        let mode = if recursive { Mode::Recursive } else { Mode::Persistent };
        let mut ws = self.stripes[stripe_of(path)].watches.lock();
        // As ZooKeeper's DataTree.addWatch: in both tables.
        let ws = &mut *ws;
        self.add_watch(&mut ws.data, path, w, mode);
        self.add_watch(&mut ws.child, path, w, mode);
    }

    fn matches(mode: Mode, ty: WatcherType) -> bool {
        match ty {
            WatcherType::Any | WatcherType::Data | WatcherType::Children => true,
            WatcherType::Persistent => mode == Mode::Persistent,
            WatcherType::PersistentRecursive => mode == Mode::Recursive,
        }
    }

    fn tables(ty: WatcherType) -> (bool, bool) {
        match ty {
            WatcherType::Children => (false, true),
            WatcherType::Data => (true, false),
            _ => (true, true),
        }
    }

    pub fn check_watches(&self, path: &str, ty: WatcherType, w: WatcherId) -> bool {
        let _nodes = self.read(path);
        let ws = self.stripes[stripe_of(path)].watches.lock();
        let (d, c) = Self::tables(ty);
        let has = |t: &HashMap<Box<str>, WatchList, ahash::RandomState>| {
            t.get(path).is_some_and(|l| l.iter().any(|(x, m)| *x == w && Self::matches(*m, ty)))
        };
        (d && has(&ws.data)) || (c && has(&ws.child))
    }

    /// Removes the watches of `w` on `path` of type `ty`; false if there were none.
    pub fn remove_watches(&self, path: &str, ty: WatcherType, w: WatcherId) -> bool {
        let _nodes = self.read(path);
        let mut ws = self.stripes[stripe_of(path)].watches.lock();
        let (d, c) = Self::tables(ty);
        let mut removed = false;
        let ws = &mut *ws;
        for (use_it, table) in [(d, &mut ws.data), (c, &mut ws.child)] {
            if !use_it {
                continue;
            }
            if let Some(l) = table.get_mut(path) {
                let before = l.len();
                l.retain(|(x, m)| {
                    let hit = *x == w && Self::matches(*m, ty);
                    if hit && *m == Mode::Recursive {
                        self.recursive_watches.fetch_sub(1, Ordering::Relaxed);
                    }
                    !hit
                });
                let n = before - l.len();
                if n > 0 {
                    removed = true;
                    self.watch_count.fetch_sub(n, Ordering::Relaxed);
                }
                if l.is_empty() {
                    table.remove(path);
                }
            }
        }
        removed
    }

    /// Drops every watch of a closed connection on the given paths (the shard tracks which
    /// paths each connection watched, so this never scans the whole tree).
    pub fn remove_watcher<'a>(&self, w: WatcherId, paths: impl IntoIterator<Item = &'a str>) {
        for p in paths {
            self.remove_watches(p, WatcherType::Any, w);
        }
    }

    /// ZooKeeper's `DataTree.setWatches` (a reconnecting client re-registers its watches; those
    /// whose node changed since `relative_zxid` fire at once).
    #[allow(clippy::too_many_arguments)]
    pub fn set_watches(
        &self,
        relative_zxid: i64,
        data: &[String],
        exist: &[String],
        child: &[String],
        persistent: &[String],
        recursive: &[String],
        w: WatcherId,
        sink: &mut dyn WatchSink,
    ) {
        // Immediate events of setWatches are not filtered by ACL (ZooKeeper passes none).
        let no_acl: Arc<Vec<Acl>> = Arc::new(Vec::new());
        for p in data {
            let nodes = self.read(p);
            match nodes.get(p.as_str()) {
                None => sink.deliver(w, EventType::NodeDeleted, p, &no_acl),
                Some(n) if n.mzxid() > relative_zxid => {
                    sink.deliver(w, EventType::NodeDataChanged, p, &no_acl)
                }
                Some(_) => {
                    let mut ws = self.stripes[stripe_of(p)].watches.lock();
                    self.add_watch(&mut ws.data, p, w, Mode::Standard);
                }
            }
        }
        for p in exist {
            let nodes = self.read(p);
            if nodes.get(p.as_str()).is_some() {
                sink.deliver(w, EventType::NodeCreated, p, &no_acl);
            } else {
                let mut ws = self.stripes[stripe_of(p)].watches.lock();
                self.add_watch(&mut ws.data, p, w, Mode::Standard);
            }
        }
        for p in child {
            let nodes = self.read(p);
            match nodes.get(p.as_str()) {
                None => sink.deliver(w, EventType::NodeDeleted, p, &no_acl),
                Some(n) if n.pzxid() > relative_zxid => {
                    sink.deliver(w, EventType::NodeChildrenChanged, p, &no_acl)
                }
                Some(_) => {
                    let mut ws = self.stripes[stripe_of(p)].watches.lock();
                    self.add_watch(&mut ws.child, p, w, Mode::Standard);
                }
            }
        }
        for p in persistent {
            self.add_persistent_watch(p, false, w);
        }
        for p in recursive {
            self.add_persistent_watch(p, true, w);
        }
    }

    /// ZooKeeper's `WatchManager.triggerWatch`. Returns who fired.
    pub(super) fn trigger(
        &self,
        child_table: bool,
        path: &str,
        event: EventType,
        suppress: &[WatcherId],
        acl: &Arc<Vec<Acl>>,
        sink: &mut dyn WatchSink,
    ) -> SmallVec<[WatcherId; 4]> {
        let mut fired: SmallVec<[WatcherId; 4]> = SmallVec::new();
        let walk_parents = self.recursive_watches.load(Ordering::Relaxed) > 0;
        let mut local = path;
        loop {
            let at_parent = local != path;
            let mut ws = self.stripes[stripe_of(local)].watches.lock();
            let table = if child_table { &mut ws.child } else { &mut ws.data };
            if let Some(list) = table.get_mut(local) {
                let mut removed = 0;
                list.retain(|(w, mode)| {
                    let keep = match mode {
                        Mode::Recursive => {
                            if event != EventType::NodeChildrenChanged && !fired.contains(w) {
                                fired.push(*w);
                            }
                            true
                        }
                        _ if !at_parent => {
                            if !fired.contains(w) {
                                fired.push(*w);
                            }
                            *mode == Mode::Persistent
                        }
                        _ => true,
                    };
                    if !keep {
                        removed += 1;
                    }
                    keep
                });
                if removed > 0 {
                    self.watch_count.fetch_sub(removed, Ordering::Relaxed);
                }
                if list.is_empty() {
                    table.remove(local);
                }
            }
            drop(ws);
            if !walk_parents || local == "/" {
                break;
            }
            local = parent_of(local);
        }
        for w in &fired {
            if !suppress.contains(w) {
                sink.deliver(*w, event, path, acl);
            }
        }
        fired
    }
}
