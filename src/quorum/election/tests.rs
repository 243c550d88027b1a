//! Scenario tests: each step's whole action list, as ZooKeeper's FastLeaderElection would act.

use super::*;
use crate::quorum::make_zxid;

const Z5: i64 = 0x1_0000_0005; // epoch 1, counter 5

pub(super) fn config_text(m: &Members) -> Vec<u8> {
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

use PeerState::{Following, Leading, Looking, Observing};

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

/// A quorum whose missing votes are all from servers the driver reports unreachable decides at
/// once, whether the report comes before the quorum forms or while it waits out the window.
#[test]
fn unreachable_voters_are_not_waited_for() {
    let m = Members::new([1, 2, 3, 4, 5], []);
    let mut e = node(5, &m);
    start(&mut e, Z5, 1, 0);
    step(&mut e, Input::PeerUnreachable { sid: 4 }, 1);
    recv(&mut e, 1, note(&m, Looking, vote(5, Z5, 1, 1)), 10);
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(5, Z5, 1, 1)), 20),
        vec![],
        "3 is neither heard nor unreachable"
    );
    assert_eq!(e.next_deadline_ms(), Some(220));
    assert_eq!(
        step(&mut e, Input::PeerUnreachable { sid: 3 }, 30),
        vec![Action::Decided { vote: vote(5, Z5, 1, 1), state: Leading, duration_ms: 30 }]
    );

    // Reported unreachable before the votes arrive: the quorum's last vote decides.
    let mut e = node(5, &m);
    start(&mut e, Z5, 1, 0);
    step(&mut e, Input::PeerUnreachable { sid: 3 }, 1);
    step(&mut e, Input::PeerUnreachable { sid: 4 }, 1);
    recv(&mut e, 1, note(&m, Looking, vote(5, Z5, 1, 1)), 10);
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(5, Z5, 1, 1)), 20),
        vec![Action::Decided { vote: vote(5, Z5, 1, 1), state: Leading, duration_ms: 20 }]
    );
    // One that comes back counts again.
    let mut e = node(5, &m);
    start(&mut e, Z5, 1, 0);
    step(&mut e, Input::PeerUnreachable { sid: 3 }, 1);
    step(&mut e, Input::PeerReachable { sid: 3 }, 2);
    step(&mut e, Input::PeerUnreachable { sid: 4 }, 2);
    recv(&mut e, 1, note(&m, Looking, vote(5, Z5, 1, 1)), 10);
    assert_eq!(recv(&mut e, 2, note(&m, Looking, vote(5, Z5, 1, 1)), 20), vec![]);
    assert_eq!(e.next_deadline_ms(), Some(220));
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

#[test]
fn a_late_joiner_follows_the_leader_a_quorum_reports_out_of_election() {
    let m = three();
    let mut e = node(2, &m);
    let z3 = make_zxid(1, 3);
    start(&mut e, z3, 1, 0);
    // The others decided in round 5; we are in round 1, so their votes are out of election.
    assert_eq!(recv(&mut e, 1, note(&m, Following, vote(3, Z5, 5, 1)), 3), vec![]);
    assert_eq!(
        e.status(3).waiting.as_deref(),
        Some(
            "have 1 of 3 votes for 2 in round 1; a quorum needs 2; waiting for votes from 1, 3; \
             1 out of election with leader 3 (1 of 3 voters, a quorum needs 2)"
        )
    );
    assert_eq!(
        recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 5, 1)), 4),
        vec![Action::Decided { vote: vote(3, Z5, 5, 1), state: Following, duration_ms: 4 }]
    );
    assert_eq!(e.logical_clock(), 5, "the round becomes the leader's");
}

#[test]
fn a_quorum_of_followers_is_not_enough_until_the_leader_says_leading() {
    let m = Members::new([1, 2, 3, 4, 5], []);
    let mut e = node(5, &m);
    start(&mut e, Z5, 1, 0);
    start(&mut e, Z5, 1, 0); // round 2: the ensemble's round 1 is out of election
    for from in [1, 2, 4] {
        assert_eq!(recv(&mut e, from, note(&m, Following, vote(3, Z5, 1, 1)), 10), vec![]);
    }
    assert_eq!(
        e.status(10).waiting.as_deref(),
        Some(
            "have 1 of 5 votes for 5 in round 2; a quorum needs 3; waiting for votes from 1, 2, 3, 4; \
             1, 2, 4 out of election with leader 3 (3 has not told us it is leading)"
        )
    );
    assert_eq!(
        recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 1, 1)), 12),
        vec![Action::Decided { vote: vote(3, Z5, 1, 1), state: Following, duration_ms: 12 }]
    );
}

#[test]
fn a_joiner_in_the_leaders_round_counts_followers_by_leader_only() {
    // Followers report the vote they were elected with; the leader has since moved its peer
    // epoch on (updateElectionVote). Against votes of our round a 3.4.6+ notification is
    // matched by leader id alone, so the joiner follows.
    let m = three();
    let mut e = node(2, &m);
    start(&mut e, make_zxid(1, 3), 1, 0);
    assert_eq!(recv(&mut e, 1, note(&m, Following, vote(3, make_zxid(1, 4), 1, 1)), 1), vec![]);
    assert_eq!(
        recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 1, 2)), 2),
        vec![Action::Decided { vote: vote(3, Z5, 1, 2), state: Following, duration_ms: 2 }]
    );
}

#[test]
fn out_of_election_votes_must_agree_on_the_peer_epoch() {
    // The same two votes seen from a later round: out of election the peer epoch counts too.
    let m = three();
    let mut e = node(2, &m);
    start(&mut e, make_zxid(1, 3), 1, 0);
    start(&mut e, make_zxid(1, 3), 1, 0);
    assert_eq!(recv(&mut e, 1, note(&m, Following, vote(3, make_zxid(1, 4), 1, 1)), 1), vec![]);
    assert_eq!(recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 1, 2)), 2), vec![]);
    // Once 1 has synced with the leader it reports epoch 2 as well.
    assert_eq!(
        recv(&mut e, 1, note(&m, Following, vote(3, make_zxid(1, 4), 1, 2)), 3),
        vec![Action::Decided { vote: vote(3, make_zxid(1, 4), 1, 2), state: Following, duration_ms: 3 }]
    );
    assert_eq!(e.logical_clock(), 1);
}

#[test]
fn a_higher_round_forgets_the_votes_of_the_old_round() {
    let m = three();
    let mut e = node(2, &m);
    start(&mut e, Z5, 1, 0);
    // Round 1: 1 follows 3.
    assert_eq!(recv(&mut e, 1, note(&m, Following, vote(3, Z5, 1, 1)), 1), vec![]);
    // 3 looks in round 5 with a worse vote: we move to round 5 and vote for ourselves.
    let z1 = make_zxid(1, 1);
    assert_eq!(
        recv(&mut e, 3, note(&m, Looking, vote(3, z1, 5, 1)), 2),
        vec![send(&m, 1, Looking, vote(2, Z5, 5, 1)), send(&m, 3, Looking, vote(2, Z5, 5, 1))]
    );
    // 3 now says it leads round 5 at epoch 2. 1's round-1 vote was forgotten with round 1 and,
    // out of election, its peer epoch differs: no quorum for 3.
    assert_eq!(recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 5, 2)), 3), vec![]);
    assert!(e.is_looking());
}

#[test]
fn a_lone_voter_decides_at_once() {
    // Every voter (just us) has our vote: nothing better can come, so no finalize window.
    let m = Members::new([1], [2]);
    let mut e = node(1, &m);
    assert_eq!(
        start(&mut e, Z5, 1, 0),
        vec![Action::Decided { vote: vote(1, Z5, 1, 1), state: Leading, duration_ms: 0 }]
    );
}

#[test]
fn when_not_looking_a_looking_voter_gets_our_current_vote() {
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, Z5, 1, 0);
    recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 1);
    recv(&mut e, 2, note(&m, Looking, vote(3, Z5, 1, 1)), 2);
    assert_eq!(e.state(), Following);
    // A LOOKING voter (of any round) is answered; FOLLOWING/LEADING ones are not.
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(2, Z5, 7, 1)), 3),
        vec![send(&m, 2, Following, vote(3, Z5, 1, 1))]
    );
    assert_eq!(recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 1, 1)), 4), vec![]);
    assert_eq!(step(&mut e, Input::Tick, 100_000), vec![], "no timers once decided");
    // ZAB moved us to epoch 2 (updateElectionVote): that is what LOOKING peers learn now.
    assert_eq!(step(&mut e, Input::Serving { state: Following, vote: vote(3, Z5, 1, 2) }, 5), vec![]);
    assert_eq!(
        recv(&mut e, 2, note(&m, Looking, vote(2, Z5, 8, 1)), 6),
        vec![send(&m, 2, Following, vote(3, Z5, 1, 2))]
    );
}

#[test]
fn a_leader_tells_looking_voters_it_is_leading_and_then_looks_again() {
    let m = three();
    let mut e = node(3, &m);
    start(&mut e, Z5, 1, 0);
    recv(&mut e, 1, note(&m, Looking, vote(3, Z5, 1, 1)), 1);
    recv(&mut e, 2, note(&m, Looking, vote(3, Z5, 1, 1)), 1);
    assert_eq!(e.state(), Leading);
    assert_eq!(
        recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 2, 1)), 2),
        vec![send(&m, 1, Leading, vote(3, Z5, 1, 1))]
    );
    // Lost the quorum: a new round (2) with our newer zxid; the current vote stays the old one.
    let z6 = make_zxid(1, 6);
    assert_eq!(
        start(&mut e, z6, 1, 10),
        vec![send(&m, 1, Looking, vote(3, z6, 2, 1)), send(&m, 2, Looking, vote(3, z6, 2, 1))]
    );
    assert_eq!(e.current_vote(), Some(vote(3, Z5, 1, 1)));
}

#[test]
fn a_zxid_of_minus_one_ignores_looking_votes() {
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, -1, 0, 0);
    assert_eq!(recv(&mut e, 2, note(&m, Looking, vote(2, Z5, 1, 1)), 1), vec![]);
    assert_eq!(e.proposal(), Some(vote(1, -1, 1, 0)));
    let mut f = node(2, &m);
    start(&mut f, Z5, 1, 0);
    assert_eq!(recv(&mut f, 1, note(&m, Looking, vote(1, -1, 1, 0)), 1), vec![]);
    assert!(!f.status(1).peers.iter().any(|p| p.agrees));
    // Out-of-election votes still count.
    recv(&mut e, 2, note(&m, Following, vote(3, Z5, 1, 1)), 2);
    assert_eq!(
        recv(&mut e, 3, note(&m, Leading, vote(3, Z5, 1, 1)), 3),
        vec![Action::Decided { vote: vote(3, Z5, 1, 1), state: Following, duration_ms: 3 }]
    );
}

#[test]
fn observers_never_count_and_only_observe() {
    let m = Members::new([1, 2, 3], [4]);
    let mut obs = node(4, &m);
    let none = vote(i64::MIN, i64::MIN, 1, i64::MIN);
    // An observer's initial vote is (MIN, MIN, MIN); it notifies the voters only.
    assert_eq!(
        start(&mut obs, Z5, 1, 0),
        vec![send(&m, 1, Looking, none), send(&m, 2, Looking, none), send(&m, 3, Looking, none)]
    );
    // A voter answers the observer at once with its current vote (the initial one until it has
    // decided, with its round), not with the vote it proposes, and does not count it.
    let mut v1 = node(1, &m);
    start(&mut v1, Z5, 1, 0);
    let voting_for_1 = note(&m, Looking, vote(1, Z5, 1, 1));
    assert_eq!(recv(&mut v1, 4, voting_for_1, 1), vec![send(&m, 4, Looking, vote(1, Z5, 1, 1))]);
    assert_eq!(
        v1.status(1).waiting.as_deref(),
        Some("have 1 of 3 votes for 1 in round 1; a quorum needs 2; waiting for votes from 2, 3"),
        "an observer's vote is not counted"
    );
    recv(&mut v1, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 2);
    assert_eq!(v1.proposal(), Some(vote(3, Z5, 1, 1)));
    assert_eq!(recv(&mut v1, 4, note(&m, Looking, none), 3), vec![send(&m, 4, Looking, vote(1, Z5, 1, 1))]);
    // The observer adopts voters' votes but has no vote of its own in the count.
    assert_eq!(
        recv(&mut obs, 1, note(&m, Looking, vote(1, Z5, 1, 1)), 4),
        vec![
            send(&m, 1, Looking, vote(1, Z5, 1, 1)),
            send(&m, 2, Looking, vote(1, Z5, 1, 1)),
            send(&m, 3, Looking, vote(1, Z5, 1, 1))
        ]
    );
    assert_eq!(recv(&mut obs, 2, note(&m, Looking, vote(1, Z5, 1, 1)), 5), vec![]);
    assert_eq!(obs.next_deadline_ms(), Some(205), "two voters for 1: a quorum, so the window runs");
    // ... and it ends observing, never following or leading.
    assert_eq!(
        step(&mut obs, Input::Tick, 205),
        vec![Action::Decided { vote: vote(1, Z5, 1, 1), state: Observing, duration_ms: 205 }]
    );
    // Observing, it answers a LOOKING voter (ZooKeeper does; the voter answers back while it
    // looks, since the observer is not a voter).
    assert_eq!(
        recv(&mut obs, 3, note(&m, Looking, vote(3, Z5, 2, 1)), 6),
        vec![send(&m, 3, Observing, vote(1, Z5, 1, 1))]
    );
}

#[test]
fn an_observer_learns_the_leader_when_it_asks_again_after_the_voters_decided() {
    let m = Members::new([1, 2, 3], [4]);
    let mut obs = node(4, &m);
    start(&mut obs, Z5, 1, 0);
    // While they look, voters answer with their initial votes: 1 for 1, 3 for 3.
    recv(&mut obs, 1, note(&m, Looking, vote(1, Z5, 1, 1)), 1);
    recv(&mut obs, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 2);
    assert_eq!(obs.next_deadline_ms(), Some(202));
    let again: Vec<Action> = [1, 2, 3]
        .into_iter()
        .map(|to| send(&m, to, Looking, vote(3, Z5, 1, 1)))
        .chain([Action::NotificationTimeout { next_timeout_ms: 400 }])
        .collect();
    assert_eq!(step(&mut obs, Input::Tick, 202), again);
    // Now decided, they answer FOLLOWING/LEADING.
    assert_eq!(recv(&mut obs, 1, note(&m, Following, vote(3, Z5, 1, 1)), 203), vec![]);
    assert_eq!(
        recv(&mut obs, 3, note(&m, Leading, vote(3, Z5, 1, 1)), 204),
        vec![Action::Decided { vote: vote(3, Z5, 1, 1), state: Observing, duration_ms: 204 }]
    );
}

fn five() -> Members {
    Members::new([1, 2, 3, 4, 5], [])
}

#[test]
fn a_different_server_list_is_reported_once_per_peer() {
    // Seed 001: server 1 restarted with 3 servers while the others run with 5.
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, Z5, 1, 0);
    let ours = ServerList::from_members(&m);
    let theirs = ServerList::from_members(&five());
    // 4 is not in our list: reported, and answered as a non-voter.
    assert_eq!(
        recv(&mut e, 4, note(&five(), Looking, vote(4, Z5, 1, 1)), 1),
        vec![
            Action::ConfigMismatch { sid: 4, ours: ours.clone(), theirs: theirs.clone() },
            send(&m, 4, Looking, vote(1, Z5, 1, 1))
        ]
    );
    assert_eq!(
        recv(&mut e, 4, note(&five(), Looking, vote(4, Z5, 1, 1)), 2),
        vec![send(&m, 4, Looking, vote(1, Z5, 1, 1))]
    );
    // 2 is ours but runs with 5; its vote for 5 (not one of ours) is ignored.
    assert_eq!(
        recv(&mut e, 2, note(&five(), Looking, vote(5, Z5, 1, 1)), 3),
        vec![Action::ConfigMismatch { sid: 2, ours: ours.clone(), theirs: theirs.clone() }]
    );
    assert_eq!(recv(&mut e, 2, note(&five(), Looking, vote(5, Z5, 1, 1)), 4), vec![]);
    assert_eq!(e.proposal(), Some(vote(1, Z5, 1, 1)));
    // 3 agrees with us (a quorum); an old-format notification (no list) is never reported, and
    // with it every voter agrees.
    assert_eq!(recv(&mut e, 3, note(&m, Looking, vote(1, Z5, 1, 1)), 5), vec![]);
    let old = Notification { state: Looking, vote: vote(1, Z5, 1, 1), version: 1, config: None };
    assert_eq!(
        recv(&mut e, 2, old, 6),
        vec![Action::Decided { vote: vote(1, Z5, 1, 1), state: Leading, duration_ms: 6 }]
    );
    // The line an operator sees names both lists.
    assert_eq!(
        ServerList::mismatch_message(4, &ours, &theirs),
        "server 4 runs with servers 1, 2, 3, 4, 5 but this server runs with 1, 2, 3; votes from and for \
         servers outside this server's list are not counted: make the server.N lines of zoo.cfg the \
         same on every server"
    );
}

#[test]
fn status_says_why_the_election_has_not_finished() {
    let m = five();
    let mut e = node(1, &m);
    let z9 = make_zxid(1, 9);
    assert_eq!(e.status(0).waiting.as_deref(), Some("the election has not started"));
    start(&mut e, z9, 1, 1000);
    step(&mut e, Input::PeerReachable { sid: 2 }, 1000);
    step(&mut e, Input::PeerReachable { sid: 3 }, 1000);
    step(&mut e, Input::PeerUnreachable { sid: 4 }, 1000);
    step(&mut e, Input::PeerUnreachable { sid: 5 }, 1000);
    recv(&mut e, 2, note(&m, Looking, vote(1, z9, 1, 1)), 1010);
    recv(&mut e, 3, note(&m, Looking, vote(3, Z5, 1, 1)), 1020);
    let st = e.status(1100);
    assert_eq!(
        st.waiting.as_deref(),
        Some(
            "have 2 of 5 votes for 1 in round 1; a quorum needs 3; waiting for votes from 4, 5 \
             (unreachable); 3 votes for 3"
        )
    );
    assert_eq!(
        st.to_string(),
        "server 1 (participant): LOOKING, round 1, looking for 100 ms; 5 voters, a quorum is 3\n\
         our vote: 1 (zxid 0x100000009, peer epoch 0x1, round 1); notifying everyone again in 120 ms\n\
         current vote: 1 (zxid 0x100000009, peer epoch 0x1, round -1)\n\
         waiting: have 2 of 5 votes for 1 in round 1; a quorum needs 3; waiting for votes from 4, 5 (unreachable); 3 votes for 3\n\
         sid  role         link  state    leader  zxid         round  peer epoch  age    agrees\n\
         2    participant  up    LOOKING  1       0x100000009  1      0x1         90 ms  yes\n\
         3    participant  up    LOOKING  3       0x100000005  1      0x1         80 ms\n\
         4    participant  down  -        -       -            -      -           -\n\
         5    participant  down  -        -       -            -      -           -\n"
    );
    // 4 comes back and votes for us: a quorum, the finalize window.
    step(&mut e, Input::PeerReachable { sid: 4 }, 1150);
    recv(&mut e, 4, note(&m, Looking, vote(1, z9, 1, 1)), 1150);
    assert_eq!(
        e.status(1200).waiting.as_deref(),
        Some("have 3 of 5 votes for 1 in round 1, a quorum; waiting 150 ms more for a better vote before deciding")
    );
    step(&mut e, Input::Tick, 1350);
    let st = e.status(1400);
    assert_eq!((st.state, st.waiting, st.vote), (Leading, None, None));
}

#[test]
fn serving_ends_a_round_and_sets_what_peers_are_told() {
    let m = three();
    let mut e = node(2, &m);
    // Before anything, there is nothing to answer with.
    assert_eq!(recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 1, 1)), 0), vec![]);
    start(&mut e, Z5, 1, 0);
    assert_eq!(step(&mut e, Input::Serving { state: Following, vote: vote(3, Z5, 1, 2) }, 1), vec![]);
    assert_eq!((e.is_looking(), e.next_deadline_ms(), e.state()), (false, None, Following));
    assert_eq!(step(&mut e, Input::Tick, 10_000), vec![]);
    assert_eq!(
        recv(&mut e, 1, note(&m, Looking, vote(1, Z5, 2, 1)), 2),
        vec![send(&m, 1, Following, vote(3, Z5, 1, 2))]
    );
    assert_eq!(e.status(2).waiting, None);
}

#[test]
fn servers_outside_the_configuration_are_remembered_up_to_a_bound() {
    let m = three();
    let mut e = node(1, &m);
    start(&mut e, Z5, 1, 0);
    let mut mismatches = 0;
    for sid in 100..100 + STRANGERS_MAX as Sid + 10 {
        for a in recv(&mut e, sid, note(&five(), Looking, vote(sid, Z5, 1, 1)), 1) {
            match a {
                Action::ConfigMismatch { .. } => mismatches += 1,
                // Every one is still answered, as ZooKeeper answers any non-voter.
                Action::Send { to, .. } => assert_eq!(to, sid),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(mismatches, STRANGERS_MAX);
    assert_eq!(e.status(1).peers.len(), 2 + STRANGERS_MAX);
}
