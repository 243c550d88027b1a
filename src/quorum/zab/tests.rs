//! Short stories of ZAB, each step checked against the exact list of actions it returns.

use std::sync::Arc;

use super::*;
use crate::quorum::election::ElectionConfig;
use crate::quorum::peer::{Peer, PeerConfig, PeerInit};
use crate::quorum::{epoch_of, make_zxid, Members};

fn zcfg(my_id: Sid) -> ZabConfig {
    ZabConfig {
        my_id,
        tick_ms: 2000,
        init_limit: 10,
        sync_limit: 5,
        commit_log_count: COMMIT_LOG_COUNT_DEFAULT,
    }
}

fn prop(zxid: i64) -> Proposal {
    Proposal { zxid, data: Arc::from(format!("txn {zxid:x}").as_bytes()) }
}

fn standalone(last_zxid: i64) -> Peer {
    let cfg = PeerConfig {
        zab: zcfg(1),
        members: Members::new([1], []),
        standalone: true,
        election: ElectionConfig::default(),
        announced_config: None,
    };
    let init = PeerInit { accepted_epoch: 0, current_epoch: 0, last_zxid, log_tail: vec![] };
    let (p, out) = Peer::new(cfg, init, 0).unwrap();
    assert_eq!(
        out,
        vec![
            Action::State { state: PeerState::Leading, leader: Some(1) },
            Action::Serving {
                role: Role::Standalone,
                epoch: epoch_of(last_zxid),
                next_zxid: Some(last_zxid + 1)
            },
        ]
    );
    p
}

#[test]
fn standalone_durable_commits_at_once() {
    let mut p = standalone(make_zxid(3, 7));
    let z = make_zxid(3, 8);
    assert_eq!(p.step(Input::Propose(prop(z)), 10), vec![Action::Append(prop(z))]);
    assert_eq!(p.step(Input::Propose(prop(z + 1)), 10), vec![Action::Append(prop(z + 1))]);
    assert_eq!(p.step(Input::Durable { zxid: z + 1 }, 11), vec![Action::Commit { zxid: z + 1 }]);
    // A sync with nothing outstanding is answered at once: the leader alone is a quorum.
    let sync = Input::Sync { session: 1, cxid: 1, data: vec![], authinfo: vec![] };
    assert_eq!(p.step(sync.clone(), 12), vec![Action::SyncDone]);
    // With a proposal outstanding, it waits for its commit.
    assert_eq!(p.step(Input::Propose(prop(z + 2)), 13), vec![Action::Append(prop(z + 2))]);
    assert_eq!(p.step(sync, 13), vec![]);
    assert_eq!(
        p.step(Input::Durable { zxid: z + 2 }, 14),
        vec![Action::Commit { zxid: z + 2 }, Action::SyncDone]
    );
    // The reused-buffer entry point.
    let mut out = Vec::with_capacity(4);
    p.step_into(Input::Propose(prop(z + 3)), 15, &mut out);
    p.step_into(Input::Durable { zxid: z + 3 }, 15, &mut out);
    assert_eq!(out, vec![Action::Append(prop(z + 3)), Action::Commit { zxid: z + 3 }]);
}
