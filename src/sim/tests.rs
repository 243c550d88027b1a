//! The simulator's own tests: the world runs the test double through chaos and liveness, and
//! every invariant is shown to fire on a deliberately broken variant.

use super::double::{with_bug, Bug, RefZab};
use super::run::{first_failure, run_many, run_seed, seeds};
use super::world::{Config, World};

#[test]
fn double_holds_every_invariant_and_recovers() {
    let seeds = seeds(0, 30);
    match run_many::<RefZab>(&seeds) {
        Ok(sum) => {
            eprintln!("{sum:?}");
            assert!(sum.totals.crashes > 0 && sum.totals.torn_tails > 0 && sum.totals.partitions > 0);
            assert!(sum.totals.writes_acked > 0 && sum.totals.syncs_done > 0);
        }
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn a_seed_replays_exactly() {
    let a = World::<RefZab>::new(Config::new(5), 42).run().expect("seed 42 passes");
    let b = World::<RefZab>::new(Config { trace: true, ..Config::new(5) }, 42).run().expect("seed 42 passes");
    assert_eq!(a, b);
    assert!(run_seed::<RefZab>(43).is_ok());
}

/// Each broken variant of the double is caught within a few seeds, and between them every
/// invariant fires at least once: the checks can fail.
#[test]
fn every_invariant_fires_on_some_broken_variant() {
    let bugs = [
        Bug::ApplyOnPropose,
        Bug::CommitOnOneAck,
        Bug::EpochNotPersisted,
        Bug::VoteIgnoresLog,
        Bug::NoTruncate,
        Bug::ReorderRequests,
        Bug::NumberOnArrival,
        Bug::StaleEpochOnDisk,
        Bug::VoteTwice,
        Bug::ZxidFromLastLogged,
    ];
    let mut fired = std::collections::BTreeMap::new();
    for bug in bugs {
        let f = with_bug(bug, || first_failure::<RefZab>(0..60));
        let f = f.unwrap_or_else(|| panic!("{bug:?} went unnoticed for 60 seeds"));
        eprintln!("{bug:?}: seed {} step {}: {}: {}", f.seed, f.step, f.invariant, f.what);
        fired.entry(f.invariant).or_insert_with(Vec::new).push(bug);
    }
    eprintln!("{fired:?}");
}

/// The real peer (election + ZAB) under the same chaos.
#[test]
fn peer_holds_every_invariant_and_recovers() {
    let seeds = seeds(0, 30);
    match run_many::<super::peer::PeerNode>(&seeds) {
        Ok(sum) => {
            eprintln!("{sum:?}");
            assert!(sum.totals.crashes > 0 && sum.totals.partitions > 0 && sum.totals.writes_acked > 0);
        }
        Err(f) => panic!("{f}"),
    }
}
