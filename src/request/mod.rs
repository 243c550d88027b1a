//! The request pipeline's pure parts: prep (request → txn), ACLs, and replies built from apply
//! outcomes, as ZooKeeper's PrepRequestProcessor and FinalRequestProcessor do them.

pub mod acl;
pub mod prep;

use crate::proto::jute::{Record, Writer};
use crate::proto::ops::{Request, MULTI_END};
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

/// The reply (error code, body) for an applied write, as FinalRequestProcessor builds it.
/// A failed single op has no body; a multi always answers 0 with per-op results.
pub fn reply_body(opcode: i32, req: &Request, r: &ApplyResult) -> (i32, Vec<u8>) {
    if let Request::Multi(_) = req {
        let mut w = Writer::new();
        for o in &r.multi {
            let ty = OpCode::from_i32(o.txn_type);
            let stat = o.stat.clone().unwrap_or_default();
            let path = o.path.clone().unwrap_or_default();
            match ty {
                Some(OpCode::Error) => {
                    MultiHeader { op_type: -1, done: false, err: o.err as i32 }.encode(&mut w);
                    ErrorResponse { err: o.err as i32 }.encode(&mut w);
                }
                Some(OpCode::Create) => {
                    MultiHeader { op_type: OpCode::Create as i32, done: false, err: 0 }.encode(&mut w);
                    CreateResponse { path }.encode(&mut w);
                }
                Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
                    MultiHeader { op_type: OpCode::Create2 as i32, done: false, err: 0 }.encode(&mut w);
                    Create2Response { path, stat }.encode(&mut w);
                }
                Some(OpCode::Delete | OpCode::DeleteContainer) => {
                    MultiHeader { op_type: OpCode::Delete as i32, done: false, err: 0 }.encode(&mut w);
                }
                Some(OpCode::SetData) => {
                    MultiHeader { op_type: OpCode::SetData as i32, done: false, err: 0 }.encode(&mut w);
                    SetDataResponse { stat }.encode(&mut w);
                }
                Some(OpCode::Check) => {
                    MultiHeader { op_type: OpCode::Check as i32, done: false, err: 0 }.encode(&mut w);
                }
                _ => {
                    MultiHeader { op_type: -1, done: false, err: ErrorCode::SystemError as i32 }
                        .encode(&mut w);
                    ErrorResponse { err: ErrorCode::SystemError as i32 }.encode(&mut w);
                }
            }
        }
        MULTI_END.encode(&mut w);
        return (0, w.buf);
    }
    if r.err != ErrorCode::Ok {
        return (r.err as i32, Vec::new());
    }
    let stat = r.stat.clone().unwrap_or_default();
    let path = r.path.clone().unwrap_or_default();
    let body = match OpCode::from_i32(opcode) {
        Some(OpCode::Create) => CreateResponse { path }.to_bytes(),
        Some(OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer) => {
            Create2Response { path, stat }.to_bytes()
        }
        Some(OpCode::SetData) => SetDataResponse { stat }.to_bytes(),
        Some(OpCode::SetAcl) => SetAclResponse { stat }.to_bytes(),
        _ => Vec::new(),
    };
    (0, body)
}
