//! Scenario tests: each step's whole action list, as ZooKeeper's FastLeaderElection would act.

use super::*;
use crate::quorum::make_zxid;

const Z5: i64 = 0x1_0000_0005; // epoch 1, counter 5

fn config_text(m: &Members) -> Vec<u8> {
    let mut s = String::new();
    for sid in m.all() {
        let role = if m.is_voter(sid) { "participant" } else { "observer" };
        s += &format!("server.{sid}=127.0.0.1:{}:{}:{role};0.0.0.0:{}\n", 2880 + sid, 3880 + sid, 2180 + sid);
    }
    s += "version=0\n";
    s.into_bytes()
}

fn three() -> Members {
    Members::new([1, 2, 3], [])
}

fn node(sid: Sid, m: &Members) -> Election {
    Election::new(sid, m.clone(), Some(config_text(m)), ElectionConfig::default())
}

fn vote(leader: Sid, zxid: i64, round: i64, peer_epoch: i64) -> Vote {
    Vote { leader, zxid, election_epoch: round, peer_epoch }
}

/// A notification as a member of `m` sends it.
fn note(m: &Members, state: PeerState, v: Vote) -> Notification {
    Notification { state, vote: v, version: NOTIFICATION_VERSION, config: Some(config_text(m)) }
}

fn send(m: &Members, to: Sid, state: PeerState, v: Vote) -> Action {
    Action::Send { to, n: note(m, state, v) }
}

fn step(e: &mut Election, input: Input, now_ms: u64) -> Vec<Action> {
    let mut out = Vec::new();
    e.step(input, now_ms, &mut out);
    out
}

fn start(e: &mut Election, last_zxid: i64, current_epoch: i64, now_ms: u64) -> Vec<Action> {
    step(e, Input::Start { last_zxid, current_epoch }, now_ms)
}

fn recv(e: &mut Election, from: Sid, n: Notification, now_ms: u64) -> Vec<Action> {
    step(e, Input::Received { from, n }, now_ms)
}

use PeerState::{Following, Leading, Looking};

#[test]
fn three_nodes_start_together_and_the_highest_sid_wins() {
    let m = three();
    let mut e = node(1, &m);
    // Round 1: we vote for ourselves and tell the other voters (our own copy loops back).
    assert_eq!(
        start(&mut e, Z5, 1, 0),
        vec![send(&m, 2, Looking, vote(1, Z5, 1, 1)), send(&m, 3, Looking, vote(1, Z5, 1, 1))]
    );
    assert_eq!(e.state(), Looking);
    assert_eq!(e.logical_clock(), 1);
    // 2 has the same zxid and a higher sid: adopt and re-notify. 1 and 2 now vote for 2, a
    // quorum of 3 but not every voter: the finalize window starts.
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(2, Z5, 1, 1)), 5),
        vec![send(&m, 2, Looking, vote(2, Z5, 1, 1)), send(&m, 3, Looking, vote(2, Z5, 1, 1))]
    );
    assert_eq!(e.next_deadline_ms(), Some(205));
    // 3 beats 2: the wait ends, 3 is adopted; 1 and 3 vote for 3, so the wait starts over.
    assert_eq!(
        recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 7),
        vec![send(&m, 2, Looking, vote(3, Z5, 1, 1)), send(&m, 3, Looking, vote(3, Z5, 1, 1))]
    );
    assert_eq!(e.next_deadline_ms(), Some(207));
    // 2 moves to 3 as well: every voter agrees, so we decide without the rest of the window.
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(3, Z5, 1, 1)), 9),
        vec![Action::Decided { vote: vote(3, Z5, 1, 1), state: Following, duration_ms: 9 }]
    );
    assert_eq!(e.state(), Following);
    assert_eq!(e.current_vote(), Some(vote(3, Z5, 1, 1)));
    assert_eq!(e.next_deadline_ms(), None);
}

#[test]
fn the_winner_leads() {
    let m = three();
    let mut e = node(3, &m);
    start(&mut e, Z5, 1, 0);
    // 1's vote is worse: recorded, not adopted, no notification; 1 and 3 do not agree yet.
    assert_eq!(recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 1, 1)), 1), vec![]);
    assert_eq!(recv(&mut e, 1, note(&m, Looking, vote(3, Z5, 1, 1)), 2), vec![]);
    assert_eq!(e.next_deadline_ms(), Some(202), "a quorum (1, 3) waits the finalize window");
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(3, Z5, 1, 1)), 3),
        vec![Action::Decided { vote: vote(3, Z5, 1, 1), state: Leading, duration_ms: 3 }]
    );
}

#[test]
fn a_newer_zxid_beats_a_higher_sid_and_a_newer_epoch_beats_a_newer_zxid() {
    let m = three();
    let mut e = node(3, &m);
    start(&mut e, Z5, 1, 0);
    let newer = make_zxid(1, 9);
    assert_eq!(
        recv(&mut e, 1, note(&m, Looking, vote(1, newer, 1, 1)), 1),
        vec![send(&m, 1, Looking, vote(1, newer, 1, 1)), send(&m, 2, Looking, vote(1, newer, 1, 1))]
    );
    // A vote with a newer peer epoch wins although its zxid is older.
    let older = make_zxid(1, 1);
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(2, older, 1, 2)), 2),
        vec![send(&m, 1, Looking, vote(2, older, 1, 2)), send(&m, 2, Looking, vote(2, older, 1, 2))]
    );
    assert_eq!(e.proposal(), Some(vote(2, older, 1, 2)));
}

#[test]
fn a_stale_round_is_ignored_and_its_sender_gets_our_vote() {
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, Z5, 1, 0);
    start(&mut e, Z5, 1, 10); // a second round: logicalclock 2
    assert_eq!(e.logical_clock(), 2);
    // 3's round-1 vote is better than ours but stale: not adopted, and 3 is told our round-2 vote.
    assert_eq!(
        recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 11),
        vec![send(&m, 3, Looking, vote(1, Z5, 2, 1))]
    );
    assert_eq!(e.proposal(), Some(vote(1, Z5, 2, 1)));
    let st = e.status(11);
    assert!(!st.peers.iter().any(|p| p.agrees));
    assert_eq!(
        st.waiting.as_deref(),
        Some("have 1 of 3 votes for 1 in round 2; a quorum needs 2; waiting for votes from 2, 3")
    );
}

#[test]
fn a_higher_round_is_adopted() {
    let m = three();
    let mut e = node(2, &m);
    start(&mut e, Z5, 1, 0);
    // 1 is in round 4 with a worse vote: we join round 4, forget round 1, vote for ourselves.
    assert_eq!(
        recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 4, 1)), 1),
        vec![send(&m, 1, Looking, vote(2, Z5, 4, 1)), send(&m, 3, Looking, vote(2, Z5, 4, 1))]
    );
    assert_eq!(e.logical_clock(), 4);
    // 3 in round 6 with a better vote: join round 6 voting for 3. 1's round-4 vote is gone, so
    // 2 and 3 (round 6) are the quorum.
    assert_eq!(
        recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 6, 1)), 2),
        vec![send(&m, 1, Looking, vote(3, Z5, 6, 1)), send(&m, 3, Looking, vote(3, Z5, 6, 1))]
    );
    assert_eq!(e.logical_clock(), 6);
    assert_eq!(e.next_deadline_ms(), Some(202));
    assert_eq!(
        step(&mut e, Input::Tick, 202),
        vec![Action::Decided { vote: vote(3, Z5, 6, 1), state: Following, duration_ms: 202 }]
    );
}

#[test]
fn the_finalize_window_restarts_at_every_vote_that_is_not_better() {
    let m = Members::new([1, 2, 3, 4, 5], []);
    let mut e = node(5, &m);
    start(&mut e, Z5, 1, 0);
    assert_eq!(recv(&mut e, 1, note(&m, Looking, vote(5, Z5, 1, 1)), 10), vec![]);
    assert_eq!(recv(&mut e, 2, note(&m, Looking, vote(5, Z5, 1, 1)), 20), vec![]);
    // 1, 2 and 5 of 5 voters: a quorum, not everyone. Wait 200 ms for a better vote.
    assert_eq!(e.next_deadline_ms(), Some(220));
    assert_eq!(step(&mut e, Input::Tick, 149), vec![]);
    // A worse vote is dropped but restarts the window, as ZooKeeper's poll(finalizeWait) does.
    assert_eq!(recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 150), vec![]);
    assert_eq!(e.next_deadline_ms(), Some(350));
    assert_eq!(step(&mut e, Input::Tick, 349), vec![]);
    assert_eq!(
        step(&mut e, Input::Tick, 350),
        vec![Action::Decided { vote: vote(5, Z5, 1, 1), state: Leading, duration_ms: 350 }]
    );
}

#[test]
fn a_better_vote_ends_the_finalize_window() {
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, Z5, 1, 0);
    recv(&mut e, 2, note(&m, Looking, vote(2, Z5, 1, 1)), 1);
    assert_eq!(e.next_deadline_ms(), Some(201));
    let newer = make_zxid(1, 6);
    assert_eq!(
        recv(&mut e, 3, note(&m, Looking, vote(3, newer, 1, 1)), 50),
        vec![send(&m, 2, Looking, vote(3, newer, 1, 1)), send(&m, 3, Looking, vote(3, newer, 1, 1))]
    );
    // 1 and 3 for 3: a new window from now.
    assert_eq!(e.next_deadline_ms(), Some(250));
    assert_eq!(
        step(&mut e, Input::Tick, 250),
        vec![Action::Decided { vote: vote(3, newer, 1, 1), state: Following, duration_ms: 250 }]
    );
}

#[test]
fn notification_timeout_doubles_up_to_the_cap() {
    let m = three();
    let mut e = node(3, &m);
    let all = |round| {
        vec![send(&m, 1, Looking, vote(3, Z5, round, 1)), send(&m, 2, Looking, vote(3, Z5, round, 1))]
    };
    assert_eq!(start(&mut e, Z5, 1, 0), all(1));
    assert_eq!(step(&mut e, Input::Tick, 199), vec![]);
    let mut now = 200;
    for next in [400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 60_000, 60_000] {
        let mut acts = all(1);
        acts.push(Action::NotificationTimeout { next_timeout_ms: next });
        assert_eq!(step(&mut e, Input::Tick, now), acts, "at {now} ms");
        assert_eq!(step(&mut e, Input::Tick, now + next - 1), vec![]);
        now += next;
    }
    // A notification restarts the wait (ZooKeeper's poll returns), at the doubled length.
    assert_eq!(recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 1, 1)), now - 10), vec![]);
    assert_eq!(e.next_deadline_ms(), Some(now - 10 + 60_000));
    // A new round starts again at 200 ms.
    assert_eq!(start(&mut e, Z5, 1, now), all(2));
    assert_eq!(e.next_deadline_ms(), Some(now + 200));
}
