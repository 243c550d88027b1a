//! Running seeds: the node count follows from the seed, a failure is replayed with the trace on
//! (and must fail at the same step: the run is deterministic), and the environment picks the
//! seeds (`ZKD_SIM_SEED=n` reruns one, `ZKD_SIM_SEEDS=count` runs more than the CI budget).

use super::world::{Config, Failure, Stats, World};
use super::SimNode;

/// 3, 5 or 7 nodes, by seed.
pub fn nodes_for(seed: u64) -> usize {
    [3, 5, 7][(seed % 3) as usize]
}

/// Runs one seed with the default shape for its node count.
pub fn run_seed<N: SimNode>(seed: u64) -> Result<Stats, Failure> {
    run_with::<N>(Config::new(nodes_for(seed)), seed)
}

/// Runs one seed; on failure runs it again with the trace on, checks that it fails at the same
/// step with the same complaint, and returns that failure (with its trace).
pub fn run_with<N: SimNode>(cfg: Config, seed: u64) -> Result<Stats, Failure> {
    let first = run_once::<N>(cfg.clone(), seed);
    let Err(f) = first else { return first };
    if cfg.trace {
        return Err(f);
    }
    let traced = run_once::<N>(Config { trace: true, ..cfg }, seed);
    match traced {
        Err(g) if (g.step, g.invariant, &g.what) == (f.step, f.invariant, &f.what) => Err(g),
        other => panic!("seed {seed} did not replay: it first failed with\n{f}\nthen gave {other:?}"),
    }
}

/// One run; a panic inside (a node's assertion, or the world's) is a failure of the seed too.
fn run_once<N: SimNode>(cfg: Config, seed: u64) -> Result<Stats, Failure> {
    let mut world = World::<N>::new(cfg, seed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run_until_done()));
    r.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(world.failure_after_panic(what))
    })
}

/// The seeds to run: `ZKD_SIM_SEED=n` for one, else `ZKD_SIM_SEEDS` (or `default_count`)
/// seeds from `ZKD_SIM_FIRST_SEED` (or `first`).
pub fn seeds(first: u64, default_count: u64) -> Vec<u64> {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(s) = env("ZKD_SIM_SEED") {
        return vec![s];
    }
    let count = env("ZKD_SIM_SEEDS").unwrap_or(default_count);
    let first = env("ZKD_SIM_FIRST_SEED").unwrap_or(first);
    (first..first + count).collect()
}

/// What a batch of passing seeds did, summed.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub seeds: u64,
    pub totals: Stats,
    pub recovery_ms_max: u64,
}

/// Runs every seed; stops at the first failure.
pub fn run_many<N: SimNode>(seeds: &[u64]) -> Result<Summary, Failure> {
    let mut sum = Summary::default();
    for &seed in seeds {
        let s = run_seed::<N>(seed)?;
        sum.seeds += 1;
        let t = &mut sum.totals;
        t.steps += s.steps;
        t.crashes += s.crashes;
        t.torn_tails += s.torn_tails;
        t.stops += s.stops;
        t.partitions += s.partitions;
        t.breaks += s.breaks;
        t.duplicates += s.duplicates;
        t.writes_acked += s.writes_acked;
        t.syncs_done += s.syncs_done;
        t.leaders += s.leaders;
        sum.recovery_ms_max = sum.recovery_ms_max.max(s.recovery_ms);
    }
    Ok(sum)
}

/// The first failing seed of `seeds`, if any (to show a broken variant is caught).
pub fn first_failure<N: SimNode>(seeds: impl IntoIterator<Item = u64>) -> Option<Failure> {
    seeds.into_iter().find_map(|s| run_seed::<N>(s).err())
}
