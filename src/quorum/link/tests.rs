//! Loopback tests of the quorum port: real sockets on port 0, one glommio executor, every wait
//! bounded by a deadline (no sleeps).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::quorum::packet_type as pt;
use crate::quorum::sync_storage::SyncStorage;
use crate::quorum::wire::{encode_packet, LearnerInfo, LearnerMessage};
use crate::tree::DataTree;

/// Runs a test on its own executor, with a heartbeat timer armed (a parked reactor wakes; see
/// PLATFORM notes on glommio 0.9).
pub(super) fn run<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("quorum-link-test")
        .spawn(move || async move {
            glommio::spawn_local(async {
                loop {
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            })
            .detach();
            f().await
        })
        .expect("start a glommio executor (io_uring, locked memory)");
    h.join().expect("test executor");
}

/// `fut`, or a panic naming `what` after 20 s.
pub(super) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match glommio::timer::timeout(Duration::from_secs(20), async { Ok(fut.await) }).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub(super) fn cfg(my_id: Sid, leaders: &[(Sid, SocketAddr)]) -> LinkConfig {
    LinkConfig::new(
        my_id,
        vec!["127.0.0.1:0".parse().unwrap()],
        leaders.iter().copied().collect::<HashMap<_, _>>(),
        1 << 20,
        Duration::from_secs(5),
    )
}

pub(super) fn link(c: LinkConfig) -> QuorumLink {
    QuorumLink::new(c, SyncStorage::new(Arc::new(DataTree::new()), None))
}

pub(super) fn follower_info(sid: Sid) -> QuorumPacket {
    LearnerMessage::FollowerInfo {
        zxid: 0x1_0000_0000,
        info: LearnerInfo { sid, protocol_version: 0x10000, config_version: 0 },
    }
    .to_packet()
}

pub(super) fn ping(zxid: i64) -> QuorumPacket {
    QuorumPacket { typ: pt::PING, zxid, data: None, authinfo: None }
}

/// The next event, within the deadline.
pub(super) async fn event(l: &QuorumLink, what: &str) -> LinkEvent {
    within(what, l.next_event()).await
}

/// The next event, which must be an input.
pub(super) async fn input(l: &QuorumLink, what: &str) -> Input {
    match event(l, what).await {
        LinkEvent::Input(i) => i,
        e => panic!("{what}: expected an input, got {e:?}"),
    }
}

/// A leader listening, and a learner `sid` connected to it and identified.
pub(super) async fn leader_and_learner(sid: Sid) -> (QuorumLink, SocketAddr, QuorumLink) {
    let leader = link(cfg(1, &[]));
    let addr = leader.listen().unwrap()[0];
    let learner = link(cfg(sid, &[(1, addr)]));
    learner.connect(1);
    assert_eq!(input(&learner, "connected").await, Input::Connected { sid: 1 });
    learner.send(1, &follower_info(sid));
    assert_eq!(input(&leader, "followerinfo").await, Input::Packet { from: sid, packet: follower_info(sid) });
    (leader, addr, learner)
}

/// A raw TCP client of the leader.
async fn raw(addr: SocketAddr) -> glommio::net::TcpStream {
    within("raw connect", glommio::net::TcpStream::connect(addr)).await.unwrap()
}

/// True once the other end closed `s` (reads until EOF or an error).
async fn closed_by_peer(s: &mut glommio::net::TcpStream) {
    let mut b = [0u8; 4096];
    within("the leader to close a bad connection", async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
}

#[test]
fn a_leader_and_two_learners_exchange_packets_both_ways() {
    run(|| async {
        let (leader, addr, a) = leader_and_learner(2).await;
        let b = link(cfg(3, &[(1, addr)]));
        b.connect(1);
        assert_eq!(input(&b, "b connected").await, Input::Connected { sid: 1 });
        b.send(1, &follower_info(3));
        assert_eq!(
            input(&leader, "b's followerinfo").await,
            Input::Packet { from: 3, packet: follower_info(3) }
        );
        assert_eq!(leader.connected(), vec![2, 3]);

        // A burst each way, in order: many packets queued at once go out together.
        for i in 0..200 {
            leader.send(2, &ping(i));
            leader.send(3, &ping(1000 + i));
            a.send(1, &ping(2000 + i));
        }
        for i in 0..200 {
            assert_eq!(input(&a, "a's ping").await, Input::Packet { from: 1, packet: ping(i) });
            assert_eq!(input(&b, "b's ping").await, Input::Packet { from: 1, packet: ping(1000 + i) });
            assert_eq!(input(&leader, "a's answer").await, Input::Packet { from: 2, packet: ping(2000 + i) });
        }
        // Data and authinfo survive the trip.
        let p = QuorumPacket {
            typ: pt::REQUEST,
            zxid: -1,
            data: Some(vec![7; 100_000]),
            authinfo: Some(vec![crate::proto::Id { scheme: "digest".into(), id: "u:x".into() }]),
        };
        b.send(1, &p);
        assert_eq!(input(&leader, "a request").await, Input::Packet { from: 3, packet: p });

        // The leader drops a learner: the learner is told, the leader is not (it asked).
        leader.disconnect(2, "test");
        assert_eq!(input(&a, "a disconnected").await, Input::Disconnected { sid: 1 });
        b.send(1, &ping(5));
        assert_eq!(input(&leader, "b still there").await, Input::Packet { from: 3, packet: ping(5) });
        assert!(leader.try_next_event().is_none());
        assert_eq!(leader.connected(), vec![3]);
    });
}

#[test]
fn a_second_connection_from_the_same_sid_replaces_the_first() {
    run(|| async {
        let (leader, addr, first) = leader_and_learner(2).await;
        first.send(1, &ping(1));
        assert_eq!(input(&leader, "first's ping").await, Input::Packet { from: 2, packet: ping(1) });

        let second = link(cfg(2, &[(1, addr)]));
        second.connect(1);
        assert_eq!(input(&second, "second connected").await, Input::Connected { sid: 1 });
        second.send(1, &follower_info(2));
        // The old connection's end comes first, then the new one's packets.
        assert_eq!(input(&leader, "the old one's end").await, Input::Disconnected { sid: 2 });
        assert_eq!(input(&leader, "the new one").await, Input::Packet { from: 2, packet: follower_info(2) });
        assert_eq!(input(&first, "first dropped").await, Input::Disconnected { sid: 1 });

        leader.send(2, &ping(9));
        assert_eq!(input(&second, "to the new one").await, Input::Packet { from: 1, packet: ping(9) });
        assert_eq!(leader.connected(), vec![2]);
    });
}

#[test]
fn bad_streams_cost_one_connection_while_others_go_on() {
    run(|| async {
        let (leader, addr, good) = leader_and_learner(2).await;
        let still_good = |n: i64| {
            let (leader, good) = (leader.clone(), good.clone());
            async move {
                good.send(1, &ping(n));
                assert_eq!(
                    input(&leader, "the good learner").await,
                    Input::Packet { from: 2, packet: ping(n) }
                );
                leader.send(2, &ping(-n));
                assert_eq!(input(&good, "the leader").await, Input::Packet { from: 1, packet: ping(-n) });
            }
        };

        // Garbage: a first packet that is not FOLLOWERINFO / OBSERVERINFO.
        let mut s = raw(addr).await;
        s.write_all(&encode_packet(&ping(1))).await.unwrap();
        closed_by_peer(&mut s).await;
        still_good(1).await;

        // A length far beyond jute.maxbuffer: refused before its bytes arrive.
        let mut s = raw(addr).await;
        let mut b = pt::FOLLOWERINFO.to_be_bytes().to_vec();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        s.write_all(&b).await.unwrap();
        closed_by_peer(&mut s).await;
        still_good(2).await;

        // Random bytes.
        let mut s = raw(addr).await;
        s.write_all(&[0xff; 64]).await.unwrap();
        closed_by_peer(&mut s).await;
        still_good(3).await;

        // An identified learner that sends a truncated packet and goes away: reported.
        let mut s = raw(addr).await;
        s.write_all(&encode_packet(&follower_info(7))).await.unwrap();
        assert_eq!(
            input(&leader, "7's followerinfo").await,
            Input::Packet { from: 7, packet: follower_info(7) }
        );
        let half = encode_packet(&ping(1));
        s.write_all(&half[..half.len() / 2]).await.unwrap();
        drop(s);
        assert_eq!(input(&leader, "7 gone").await, Input::Disconnected { sid: 7 });
        still_good(4).await;

        // An identified learner that sends garbage after its first packet: reported.
        let mut s = raw(addr).await;
        s.write_all(&encode_packet(&follower_info(8))).await.unwrap();
        assert_eq!(
            input(&leader, "8's followerinfo").await,
            Input::Packet { from: 8, packet: follower_info(8) }
        );
        let mut bad = pt::PING.to_be_bytes().to_vec();
        bad.extend_from_slice(&0i64.to_be_bytes());
        bad.extend_from_slice(&(-5i32).to_be_bytes());
        s.write_all(&bad).await.unwrap();
        closed_by_peer(&mut s).await;
        assert_eq!(input(&leader, "8 dropped").await, Input::Disconnected { sid: 8 });
        still_good(5).await;
        assert!(leader.try_next_event().is_none(), "unidentified connections are not reported");
    });
}

#[test]
fn a_slow_learner_is_disconnected_and_does_not_delay_another() {
    run(|| async {
        let mut c = cfg(1, &[]);
        c.send_queue_max_bytes = 1 << 20;
        let leader = link(c);
        let addr = leader.listen().unwrap()[0];
        let fast = link(cfg(2, &[(1, addr)]));
        fast.connect(1);
        assert_eq!(input(&fast, "connected").await, Input::Connected { sid: 1 });
        fast.send(1, &follower_info(2));
        input(&leader, "fast's followerinfo").await;
        // The slow one never reads.
        let mut slow = raw(addr).await;
        slow.write_all(&encode_packet(&follower_info(9))).await.unwrap();
        assert_eq!(
            input(&leader, "slow's followerinfo").await,
            Input::Packet { from: 9, packet: follower_info(9) }
        );

        let big = QuorumPacket { typ: pt::PROPOSAL, zxid: 1, data: Some(vec![1; 64 << 10]), authinfo: None };
        let mut rounds = 0i64;
        loop {
            rounds += 1;
            assert!(rounds < 2_000, "the slow learner was never disconnected");
            leader.send(9, &big);
            leader.send(2, &ping(rounds));
            // The fast learner gets each round's packet while the slow one's pile up.
            assert_eq!(
                input(&fast, "the fast learner's packet").await,
                Input::Packet { from: 1, packet: ping(rounds) }
            );
            if let Some(e) = leader.try_next_event() {
                assert!(matches!(e, LinkEvent::Input(Input::Disconnected { sid: 9 })), "{e:?}");
                break;
            }
        }
        // Several MiB went into the socket buffers before the queue filled.
        assert!(rounds > 16, "disconnected after {rounds} rounds");
        closed_by_peer(&mut slow).await;
        leader.send(2, &ping(-1));
        assert_eq!(input(&fast, "after").await, Input::Packet { from: 1, packet: ping(-1) });
        assert_eq!(leader.connected(), vec![2]);
    });
}

#[test]
fn connecting_gives_up_after_the_tries_and_a_disconnect_cancels_it() {
    run(|| async {
        // A bound socket that does not listen refuses connections.
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        let nowhere = s.local_addr().unwrap().as_socket().unwrap();
        let l = link(cfg(2, &[(1, nowhere), (3, nowhere)]));
        let t0 = std::time::Instant::now();
        l.connect(1);
        assert_eq!(input(&l, "gave up").await, Input::Disconnected { sid: 1 });
        // Five tries, four pauses of 100 ms between them.
        assert!(t0.elapsed() >= Duration::from_millis(400), "{:?}", t0.elapsed());

        // Cancelled: nothing is reported.
        l.connect(3);
        l.disconnect(3, "test");
        l.connect(1);
        assert_eq!(input(&l, "the second attempt gave up").await, Input::Disconnected { sid: 1 });
        assert!(l.try_next_event().is_none(), "the cancelled attempt reported something");

        // No address: told at once.
        l.connect(42);
        assert_eq!(input(&l, "no address").await, Input::Disconnected { sid: 42 });
        drop(s);
    });
}

#[test]
fn stale_events_are_dropped_once_the_peer_starts_over() {
    run(|| async {
        let (leader, addr, learner) = leader_and_learner(2).await;
        // Packets queued for the host, then the peer disconnects and reconnects the learner:
        // what was queued from the old connection is not delivered.
        learner.send(1, &ping(1));
        learner.send(1, &ping(2));
        within("the packets to arrive", async {
            while leader.inner.events.borrow().len() < 2 {
                leader.inner.event_ready.wait().await;
            }
        })
        .await;
        leader.disconnect(2, "test");
        assert!(leader.try_next_event().is_none());
        let again = link(cfg(2, &[(1, addr)]));
        again.connect(1);
        input(&again, "reconnected").await;
        again.send(1, &follower_info(2));
        assert_eq!(
            input(&leader, "the new connection").await,
            Input::Packet { from: 2, packet: follower_info(2) }
        );
    });
}

#[test]
fn stop_listening_closes_learners_and_the_port_opens_again() {
    run(|| async {
        let (leader, addr, learner) = leader_and_learner(2).await;
        leader.stop_listening();
        assert_eq!(
            input(&learner, "dropped when the leader stops leading").await,
            Input::Disconnected { sid: 1 }
        );
        assert!(leader.try_next_event().is_none(), "the peer knows its role ended");
        assert!(leader.connected().is_empty());
        // Refused while not leading: the learner gives up after its tries.
        learner.connect(1);
        assert_eq!(input(&learner, "refused").await, Input::Disconnected { sid: 1 });

        // Leading again, on the same port (SO_REUSEADDR, as ZooKeeper's leader socket).
        let mut c = cfg(1, &[]);
        c.listen = vec![addr];
        let again = link(c);
        assert_eq!(again.listen().unwrap(), vec![addr]);
        assert_eq!(again.listen().unwrap(), vec![addr], "listening twice is listening once");
        learner.connect(1);
        assert_eq!(input(&learner, "connected again").await, Input::Connected { sid: 1 });
        learner.send(1, &follower_info(2));
        assert_eq!(input(&again, "identified").await, Input::Packet { from: 2, packet: follower_info(2) });
    });
}
