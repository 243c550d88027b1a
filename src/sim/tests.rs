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
