//! Recovery's decision over the log files after a snapshot (`db::recovery::plan_logs`, pure):
//! up to three files cut from one input. Whatever it decides to repair (truncate a torn tail,
//! remove a file torn at creation), carried out on the bytes, must leave logs that plan again
//! with nothing to repair and the same transactions to replay.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use zkd::db::recovery::{plan_logs, LogAction};
use zkd::txnlog::format::FileHeader;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ctl, mut rest) = data.split_at(4);
    let snap_zxid = i16::from_be_bytes([ctl[1], ctl[2]]) as i64;
    let max = if ctl[3] & 1 != 0 { 64 } else { zkd::txnlog::format::DEFAULT_MAX_TXN_BYTES };
    let n_files = 1 + ctl[0] as usize % 3;
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for i in 0..n_files {
        // Each file but the last takes as many bytes as its length byte says.
        let take = if i + 1 == n_files {
            rest.len()
        } else {
            match rest.split_first() {
                Some((&n, r)) => {
                    rest = r;
                    (n as usize * 4).min(rest.len())
                }
                None => 0,
            }
        };
        let (mine, r) = rest.split_at(take);
        rest = r;
        let mut f = Vec::new();
        if ctl[0] & (0x10 << i) == 0 {
            FileHeader::txnlog().encode(&mut f);
        }
        f.extend_from_slice(mine);
        files.push((PathBuf::from(format!("log.{i}")), f));
    }
    let Ok(plan) = plan_logs(&files, snap_zxid, max) else { return };
    assert!(plan.txns.iter().all(|t| t.hdr.zxid > snap_zxid));
    assert!(plan.txns.windows(2).all(|w| w[0].hdr.zxid < w[1].hdr.zxid));
    if plan.actions.is_empty() {
        return;
    }
    for a in &plan.actions {
        match a {
            LogAction::Truncate { file, offset, .. } => {
                let f = files.iter_mut().find(|(p, _)| p == file).expect("a file of the plan");
                assert!(*offset as usize <= f.1.len());
                f.1.truncate(*offset as usize);
            }
            LogAction::Remove { file, .. } => files.retain(|(p, _)| p != file),
        }
    }
    let again =
        plan_logs(&files, snap_zxid, max).unwrap_or_else(|e| panic!("the repaired logs are refused: {e}"));
    assert_eq!(again.actions, vec![], "repairs are not done in one pass");
    assert_eq!(again.txns, plan.txns, "repairs changed what is replayed");
    assert_eq!(again.last_logged_zxid, plan.last_logged_zxid);
});
