//! The request pipeline's pure parts: prep (request → txn), ACLs, and replies built from apply
//! outcomes, as ZooKeeper's PrepRequestProcessor and FinalRequestProcessor do them.

pub mod acl;
pub mod prep;
pub mod read;
pub mod sasl;

use crate::proto::jute::{Record, Writer};
use crate::proto::ops::MULTI_END;
use crate::proto::*;
use crate::tree::ApplyResult;

pub use prep::Prep;

/// Who is writing, with what rights.
#[derive(Clone, Copy)]
pub struct WriteCtx<'a> {
    pub session_id: i64,
    pub cxid: i32,
    pub opcode: i32,
    pub auth: &'a [Id],
    pub super_digest: Option<&'a str>,
    pub skip_acl: bool,
    pub extended_types_enabled: bool,
}

/// A failed write as ZooKeeper logs it: an ErrorTxn under the request's zxid.
pub fn error_txn(session: i64, cxid: i32, zxid: i64, now_ms: i64, err: ErrorCode) -> (TxnHeader, TxnBody) {
    (
        TxnHeader { client_id: session, cxid, zxid, time: now_ms, txn_type: OpCode::Error as i32 },
        TxnBody::Error(ErrorTxn { err: err as i32 }),
    )
}

/// The reply body for an applied write, as FinalRequestProcessor builds it, appended to `w`;
/// returns the reply's error code. A failed single op has no body; a multi always answers 0
/// with per-op results.
pub fn encode_reply(opcode: i32, multi: bool, r: &ApplyResult, w: &mut Writer) -> i32 {
    fn stat(o: &Option<Stat>) -> Stat {
        o.clone().unwrap_or_default() // Stat is plain integers
    }
    fn path(o: &Option<String>) -> &str {
        o.as_deref().unwrap_or("")
    }
    if multi {
        for o in &r.multi {
            let ty = OpCode::from_i32(o.txn_type);
            match ty {
                Some(OpCode::Error) => {
                    MultiHeader { op_type: -1, done: false, err: o.err as i32 }.encode(w);
                    ErrorResponse { err: o.err as i32 }.encode(w);
                }
                Some(OpCode::Create) => {
                    MultiHeader { op_type: OpCode::Create as i32, done: false, err: 0 }.encode(w);
                    w.string(path(&o.path)); // CreateResponse
                }
                Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
                    MultiHeader { op_type: OpCode::Create2 as i32, done: false, err: 0 }.encode(w);
                    w.string(path(&o.path)); // Create2Response
                    stat(&o.stat).encode(w);
                }
                Some(OpCode::Delete | OpCode::DeleteContainer) => {
                    MultiHeader { op_type: OpCode::Delete as i32, done: false, err: 0 }.encode(w);
                }
                Some(OpCode::SetData) => {
                    MultiHeader { op_type: OpCode::SetData as i32, done: false, err: 0 }.encode(w);
                    stat(&o.stat).encode(w); // SetDataResponse
                }
                Some(OpCode::Check) => {
                    MultiHeader { op_type: OpCode::Check as i32, done: false, err: 0 }.encode(w);
                }
                _ => {
                    MultiHeader { op_type: -1, done: false, err: ErrorCode::SystemError as i32 }.encode(w);
                    ErrorResponse { err: ErrorCode::SystemError as i32 }.encode(w);
                }
            }
        }
        MULTI_END.encode(w);
        return 0;
    }
    if r.err != ErrorCode::Ok {
        return r.err as i32;
    }
    match OpCode::from_i32(opcode) {
        Some(OpCode::Create) => w.string(path(&r.path)), // CreateResponse
        Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
            w.string(path(&r.path)); // Create2Response
            stat(&r.stat).encode(w);
        }
        // SetDataResponse, SetACLResponse
        Some(OpCode::SetData | OpCode::SetAcl) => stat(&r.stat).encode(w),
        _ => {}
    }
    0
}
