//! The checker on hand-made histories (each anomaly it must find, each legal overlap it must
//! accept) and on long generated ones (speed, and a stale read planted in thousands of ops).

use super::check::{check, render, Verdict, BUDGET_DEFAULT};
use super::history::{History, Op, Outcome, Res, RunInfo, Sub};

const K: &str = "/k";
const S: &str = "/s";

fn history(ops: Vec<Op>) -> History {
    let run = RunInfo {
        seed: 1,
        server: "test".into(),
        keys: vec![K.into(), "/k1".into()],
        seq_parents: vec![S.into()],
        ..Default::default()
    };
    let ops = ops.into_iter().enumerate().map(|(i, o)| Op { id: i as u64, ..o }).collect();
    History { run: Some(run), ops, faults: vec![] }
}

fn op(client: u32, call: u64, ret: Option<u64>, subs: Vec<Sub>, outcome: Outcome) -> Op {
    Op {
        id: 0,
        client,
        session: format!("0x{client}"),
        node: 0,
        call_ns: call,
        ret_ns: ret,
        multi: false,
        subs,
        outcome,
    }
}

fn ok(results: Vec<Res>) -> Outcome {
    Outcome::Ok { results }
}

fn fail(error: &str, code: i32) -> Outcome {
    Outcome::Fail { index: 0, error: error.into(), code }
}

fn unknown() -> Outcome {
    Outcome::Unknown { why: "connection lost".into() }
}

fn read(c: u32, call: u64, ret: u64, value: &str, version: i32) -> Op {
    op(
        c,
        call,
        Some(ret),
        vec![Sub::Read { path: K.into() }],
        ok(vec![Res::Read { value: Some(value.into()), version }]),
    )
}

fn set(c: u32, call: u64, ret: Option<u64>, value: &str, expect: i32, out: Outcome) -> Op {
    op(c, call, ret, vec![Sub::Set { path: K.into(), value: value.into(), version: expect }], out)
}

fn set_ok(c: u32, call: u64, ret: u64, value: &str, version: i32) -> Op {
    set(c, call, Some(ret), value, -1, ok(vec![Res::Set { version }]))
}

fn seq(c: u32, call: u64, ret: u64, n: i64) -> Op {
    op(
        c,
        call,
        Some(ret),
        vec![Sub::CreateSeq { prefix: format!("{S}/n-") }],
        ok(vec![Res::Created { path: format!("{S}/n-{n:010}") }]),
    )
}

fn verdict(ops: Vec<Op>) -> (Verdict, String) {
    let h = history(ops);
    let (r, khs) = check(&h, BUDGET_DEFAULT).unwrap();
    let text = render(&h, &r, &khs);
    let v = if r.linearizable() {
        Verdict::Linearizable
    } else if r.violations().next().is_some() {
        Verdict::NotLinearizable
    } else {
        Verdict::GaveUp
    };
    (v, text)
}

#[track_caller]
fn must_fail(ops: Vec<Op>, window_ops: usize) {
    let (v, text) = verdict(ops);
    assert_eq!(v, Verdict::NotLinearizable, "{text}");
    assert!(
        text.contains(&format!("smallest failing window: {window_ops} ops")),
        "expected a window of {window_ops} ops:\n{text}"
    );
}

#[track_caller]
fn must_pass(ops: Vec<Op>) {
    let (v, text) = verdict(ops);
    assert_eq!(v, Verdict::Linearizable, "{text}");
}

#[test]
fn a_stale_read_after_an_acknowledged_write_fails() {
    must_fail(vec![read(0, 0, 5, "", 0), set_ok(1, 10, 20, "a", 1), read(0, 30, 40, "", 0)], 2);
}

#[test]
fn two_cas_succeeding_on_one_version_fail() {
    let cas = |c, call, ret, v: &str| set(c, call, Some(ret), v, 0, ok(vec![Res::Set { version: 1 }]));
    // Concurrent, both acknowledged with version 1 from version 0.
    must_fail(vec![cas(0, 0, 20, "a"), cas(1, 5, 25, "b")], 2);
}

#[test]
fn a_lost_acknowledged_write_fails() {
    // "a" acknowledged at version 1, then "b" written as if "a" had never been: also version 1.
    must_fail(vec![set_ok(0, 0, 10, "a", 1), set_ok(1, 20, 30, "b", 1), read(0, 40, 50, "b", 1)], 2);
    // Or the next read shows the state from before it.
    must_fail(vec![read(1, 0, 5, "", 0), set_ok(0, 10, 20, "a", 1), read(1, 30, 35, "", 0)], 2);
}

#[test]
fn a_read_that_goes_back_in_time_fails() {
    must_fail(
        vec![
            set_ok(0, 0, 10, "a", 1),
            set_ok(0, 20, 100, "b", 2),
            read(1, 30, 40, "b", 2),
            read(2, 50, 60, "a", 1),
        ],
        // The window needs only the two reads and the write of "b" they straddle.
        3,
    );
}

#[test]
fn a_sequential_number_used_twice_fails() {
    must_fail(vec![seq(0, 0, 10, 0), seq(1, 20, 30, 0)], 2);
    // Or given out of order: 1 was acknowledged before 0 was asked for.
    must_fail(vec![seq(0, 0, 10, 1), seq(1, 20, 30, 0)], 2);
    // Or one skipped: the counter starts at 0 and nothing with an unknown outcome used it.
    must_fail(vec![seq(0, 0, 10, 1)], 1);
}

#[test]
fn a_bad_version_failure_must_be_true() {
    // CAS @v0 failed with BadVersion although nothing changed the version.
    let bad = set(0, 10, Some(20), "x", 0, fail("BadVersion", -103));
    must_fail(vec![read(1, 0, 5, "", 0), bad, read(1, 30, 40, "", 0)], 2);
}

#[test]
fn a_value_nobody_wrote_fails() {
    must_fail(vec![read(0, 0, 10, "ghost", 1)], 1);
}

#[test]
fn concurrent_overlapping_operations_pass() {
    must_pass(vec![
        set_ok(0, 0, 100, "a", 1),
        read(1, 10, 20, "", 0),
        read(2, 15, 30, "a", 1),
        read(1, 40, 50, "a", 1),
        set_ok(3, 5, 60, "b", 2),
        read(2, 70, 80, "b", 2),
    ]);
    // Two CAS on one version, concurrent: one wins, the other fails.
    must_pass(vec![
        set(0, 0, Some(20), "a", 0, ok(vec![Res::Set { version: 1 }])),
        set(1, 5, Some(25), "b", 0, fail("BadVersion", -103)),
        read(2, 30, 40, "a", 1),
    ]);
}

#[test]
fn unknown_outcomes_that_did_or_did_not_happen_pass() {
    // Happened: its value is read later, long after the call.
    must_pass(vec![
        set(0, 0, None, "u", -1, unknown()),
        read(1, 500, 510, "u", 1),
        set_ok(1, 520, 530, "v", 2),
    ]);
    // Did not happen: never read, and the version does not count it.
    must_pass(vec![
        set(0, 0, None, "u", -1, unknown()),
        read(1, 500, 510, "", 0),
        set_ok(1, 520, 530, "v", 1),
    ]);
    // Happened, seen only through the version it used up.
    must_pass(vec![
        set(0, 0, None, "u", -1, unknown()),
        set_ok(1, 520, 530, "v", 2),
        read(1, 540, 550, "v", 2),
    ]);
    // But not before its call.
    must_fail(vec![read(1, 0, 10, "u", 1), set(0, 20, None, "u", -1, unknown())], 1);
    // Many unknown writes, some of them happened: interchangeable ones do not blow up.
    let mut ops: Vec<Op> = (0..60).map(|i| set(i, i as u64, None, &format!("u{i}"), -1, unknown())).collect();
    ops.push(set_ok(100, 1000, 1010, "w", 31));
    ops.push(read(100, 1020, 1030, "w", 31));
    must_pass(ops);
}

#[test]
fn multis_are_atomic_per_key() {
    let multi = |c, call, ret, outcome| Op {
        multi: true,
        ..op(
            c,
            call,
            ret,
            vec![
                Sub::Check { path: K.into(), version: 0 },
                Sub::Set { path: K.into(), value: "m".into(), version: -1 },
                Sub::Set { path: "/k1".into(), value: "m1".into(), version: -1 },
            ],
            outcome,
        )
    };
    let done = ok(vec![Res::Done, Res::Set { version: 1 }, Res::Set { version: 1 }]);
    let k1 = |call, ret, value: &str, version| {
        op(
            3,
            call,
            Some(ret),
            vec![Sub::Read { path: "/k1".into() }],
            ok(vec![Res::Read { value: Some(value.into()), version }]),
        )
    };
    must_pass(vec![multi(0, 0, Some(10), done.clone()), read(1, 20, 30, "m", 1), k1(20, 30, "m1", 1)]);
    // Acknowledged, but one key does not show it.
    must_fail(vec![multi(0, 0, Some(10), done), read(1, 20, 30, "m", 1), k1(20, 30, "", 0)], 2);
    // Failed on its check: nothing of it may show on either key.
    let failed = Outcome::Fail { index: 0, error: "BadVersion".into(), code: -103 };
    must_fail(vec![set_ok(2, 0, 5, "x", 1), multi(0, 10, Some(20), failed.clone()), k1(30, 40, "m1", 1)], 1);
    must_pass(vec![set_ok(2, 0, 5, "x", 1), multi(0, 10, Some(20), failed), k1(30, 40, "", 0)]);
}

#[test]
fn a_violation_names_its_window_and_the_faults_in_it() {
    let mut h = history(vec![read(0, 0, 5, "", 0), set_ok(1, 10, 20, "a", 1), read(0, 30, 40, "", 0)]);
    h.faults.push(super::history::FaultEvent {
        at_ns: 25,
        node: 0,
        what: "kill".into(),
        detail: String::new(),
    });
    let (r, khs) = check(&h, BUDGET_DEFAULT).unwrap();
    let text = render(&h, &r, &khs);
    assert!(!r.linearizable());
    assert!(text.contains("/k: 3 ops (0 unknown): NOT LINEARIZABLE"), "{text}");
    assert!(text.contains("FAULT node 0: kill"), "{text}");
    assert!(text.contains(r#"set /k="a" -> ok v1"#), "{text}");
    assert!(!text.contains("#0 "), "the first read is not needed:\n{text}");
}

/// A linearizable history by construction: clients call operations one after another, each takes
/// effect at a random point between its call and return, applied in that order to a real
/// register; some lose their reply (unknown), whether or not they took effect.
fn generated(seed: u64, clients: u32, per_client: usize, unknown_per_mille: u64) -> History {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    struct Pending {
        client: u32,
        call: u64,
        ret: u64,
        at: u64,
        sub: Sub,
        lost: bool,
        applied_if_lost: bool,
    }
    let mut ops = Vec::new();
    for c in 0..clients {
        let mut t = next(50);
        let mut seen_version = 0;
        for i in 0..per_client {
            let dur = 1 + next(100);
            let sub = match next(10) {
                0..=3 => Sub::Read { path: K.into() },
                4..=5 => Sub::Set { path: K.into(), value: format!("c{c}-{i}"), version: -1 },
                6..=7 => Sub::Set { path: K.into(), value: format!("c{c}-{i}"), version: seen_version },
                8 => Sub::CreateSeq { prefix: format!("{S}/n-") },
                _ => Sub::ReadCversion { path: S.into() },
            };
            ops.push(Pending {
                client: c,
                call: t,
                ret: t + dur,
                at: t + next(dur + 1),
                sub,
                lost: next(1000) < unknown_per_mille,
                applied_if_lost: next(2) == 0,
            });
            t += dur + 1 + next(20);
            // Clients guess the version for their CAS from time to time.
            seen_version = next(per_client as u64 / 2) as i32;
        }
    }
    ops.sort_by_key(|p| (p.at, p.client));
    let (mut value, mut version, mut counter) = (String::new(), 0i32, 0i64);
    let mut out = Vec::new();
    for p in ops {
        let outcome = if p.lost && !p.applied_if_lost {
            unknown()
        } else {
            let o = match &p.sub {
                Sub::Read { .. } => ok(vec![Res::Read { value: Some(value.clone()), version }]),
                Sub::Set { value: v, version: e, .. } => {
                    if *e != -1 && *e != version {
                        fail("BadVersion", -103)
                    } else {
                        value = v.clone();
                        version += 1;
                        ok(vec![Res::Set { version }])
                    }
                }
                Sub::CreateSeq { .. } => {
                    counter += 1;
                    ok(vec![Res::Created { path: format!("{S}/n-{:010}", counter - 1) }])
                }
                Sub::ReadCversion { .. } => ok(vec![Res::Cversion { cversion: counter as i32 }]),
                _ => unreachable!(),
            };
            if p.lost {
                unknown()
            } else {
                o
            }
        };
        let ret = (!matches!(outcome, Outcome::Unknown { .. })).then_some(p.ret);
        out.push(op(p.client, p.call, ret, vec![p.sub], outcome));
    }
    out.sort_by_key(|o| o.call_ns);
    history(out)
}

#[test]
fn thousands_of_operations_per_key_check_in_seconds() {
    let h = generated(7, 8, 1500, 20);
    let t0 = std::time::Instant::now();
    let (r, khs) = check(&h, BUDGET_DEFAULT).unwrap();
    let text = render(&h, &r, &khs);
    assert!(r.linearizable(), "{text}");
    let k = r.keys.iter().find(|k| k.key == K).unwrap();
    assert!(k.ops > 8000, "{text}");
    assert!(k.unknown > 50, "{text}");
    // Generous for a debug build on a busy machine; a release build takes well under a second.
    assert!(t0.elapsed() < std::time::Duration::from_secs(60), "{text}");
    eprintln!("{text}");
}

#[test]
fn a_stale_read_among_thousands_is_found_with_a_small_window() {
    let mut h = generated(11, 8, 1500, 20);
    // Replace a late read's result with what an early read returned: a write acknowledged
    // before the late read was called has moved the version on since.
    let reads: Vec<usize> = (0..h.ops.len())
        .filter(|&i| {
            matches!(&h.ops[i].subs[0], Sub::Read { .. }) && matches!(h.ops[i].outcome, Outcome::Ok { .. })
        })
        .collect();
    let early = reads[reads.len() / 4];
    let late = reads[reads.len() * 3 / 4];
    let stale = h.ops[early].outcome.clone();
    assert_ne!(stale, h.ops[late].outcome);
    h.ops[late].outcome = stale;
    if let Ok(p) = std::env::var("ZKD_LINCHECK_DUMP") {
        h.write(std::fs::File::create(p).unwrap()).unwrap();
    }
    let (r, khs) = check(&h, BUDGET_DEFAULT).unwrap();
    let text = render(&h, &r, &khs);
    let bad: Vec<_> = r.violations().collect();
    assert_eq!(bad.len(), 1, "{text}");
    let w = bad[0].window.as_ref().unwrap();
    assert!(w.ops.len() < 40, "window of {} ops:\n{text}", w.ops.len());
    assert!(text.contains(&format!("#{} ", h.ops[late].id)), "the stale read is in the window:\n{text}");
}
