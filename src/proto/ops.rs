//! Client request bodies by opcode (what follows the RequestHeader), and multi encoding.
//! Decoding is lenient about trailing bytes, as ZooKeeper's `byteBuffer2Record` is, and strict
//! about everything else: a malformed body is a `JuteError`, never a panic.

use super::jute::{JuteError, Reader, Record, Result, Writer};
use super::records::*;
use super::types::OpCode;

/// One write inside a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// create, create2 or createContainer (the opcode says which).
    Create(OpCode, CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
}

impl MultiOp {
    pub fn opcode(&self) -> OpCode {
        match self {
            MultiOp::Create(op, _) => *op,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
        }
    }
}

/// One read inside a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiReadOp {
    GetChildren(GetChildrenRequest),
    GetData(GetDataRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// create, create2 or createContainer.
    Create(OpCode, CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    Sync(SyncRequest),
    Ping,
    Check(CheckVersionRequest),
    Multi(Vec<MultiOp>),
    MultiRead(Vec<MultiReadOp>),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    GetEphemerals(GetEphemeralsRequest),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    AddWatch(AddWatchRequest),
    WhoAmI,
    Auth(AuthPacket),
    CloseSession,
    Reconfig(ReconfigRequest),
}

/// The MultiHeader that ends a multi request or response.
pub const MULTI_END: MultiHeader = MultiHeader { op_type: -1, done: true, err: -1 };

/// Bound on ops in one multi (each takes at least a 9-byte header, so the frame bounds it too).
const MULTI_MAX_OPS: usize = 1 << 20;

impl Request {
    pub fn decode(opcode: i32, body: &[u8]) -> Result<Request> {
        let r = &mut Reader::new(body);
        let op =
            OpCode::from_i32(opcode).ok_or(JuteError::BadValue { what: "opcode", value: opcode as i64 })?;
        Ok(match op {
            OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => {
                Request::Create(op, CreateRequest::decode(r)?)
            }
            OpCode::CreateTtl => Request::CreateTtl(CreateTtlRequest::decode(r)?),
            OpCode::Delete => Request::Delete(DeleteRequest::decode(r)?),
            OpCode::Exists => Request::Exists(ExistsRequest::decode(r)?),
            OpCode::GetData => Request::GetData(GetDataRequest::decode(r)?),
            OpCode::SetData => Request::SetData(SetDataRequest::decode(r)?),
            OpCode::GetAcl => Request::GetAcl(GetAclRequest::decode(r)?),
            OpCode::SetAcl => Request::SetAcl(SetAclRequest::decode(r)?),
            OpCode::GetChildren => Request::GetChildren(GetChildrenRequest::decode(r)?),
            OpCode::GetChildren2 => Request::GetChildren2(GetChildren2Request::decode(r)?),
            OpCode::Sync => Request::Sync(SyncRequest::decode(r)?),
            OpCode::Ping => Request::Ping,
            OpCode::Check => Request::Check(CheckVersionRequest::decode(r)?),
            OpCode::Multi => Request::Multi(decode_multi(r)?),
            OpCode::MultiRead => Request::MultiRead(decode_multi_read(r)?),
            OpCode::CheckWatches => Request::CheckWatches(CheckWatchesRequest::decode(r)?),
            OpCode::RemoveWatches => Request::RemoveWatches(RemoveWatchesRequest::decode(r)?),
            OpCode::GetEphemerals => Request::GetEphemerals(GetEphemeralsRequest::decode(r)?),
            OpCode::GetAllChildrenNumber => {
                Request::GetAllChildrenNumber(GetAllChildrenNumberRequest::decode(r)?)
            }
            OpCode::SetWatches => Request::SetWatches(SetWatches::decode(r)?),
            OpCode::SetWatches2 => Request::SetWatches2(SetWatches2::decode(r)?),
            OpCode::AddWatch => Request::AddWatch(AddWatchRequest::decode(r)?),
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::Auth => Request::Auth(AuthPacket::decode(r)?),
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Reconfig => Request::Reconfig(ReconfigRequest::decode(r)?),
            OpCode::Notification
            | OpCode::DeleteContainer
            | OpCode::Sasl
            | OpCode::CreateSession
            | OpCode::Error => {
                return Err(JuteError::BadValue { what: "client opcode", value: opcode as i64 })
            }
        })
    }

    /// The opcode this request is sent under.
    pub fn opcode(&self) -> OpCode {
        match self {
            Request::Create(op, _) => *op,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::Sync(_) => OpCode::Sync,
            Request::Ping => OpCode::Ping,
            Request::Check(_) => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::Auth(_) => OpCode::Auth,
            Request::CloseSession => OpCode::CloseSession,
            Request::Reconfig(_) => OpCode::Reconfig,
        }
    }

    /// The body a client sends under [`Request::opcode`] (what `decode` reads back).
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Request::Create(_, r) => r.encode(w),
            Request::CreateTtl(r) => r.encode(w),
            Request::Delete(r) => r.encode(w),
            Request::Exists(r) => r.encode(w),
            Request::GetData(r) => r.encode(w),
            Request::SetData(r) => r.encode(w),
            Request::GetAcl(r) => r.encode(w),
            Request::SetAcl(r) => r.encode(w),
            Request::GetChildren(r) => r.encode(w),
            Request::GetChildren2(r) => r.encode(w),
            Request::Sync(r) => r.encode(w),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
            Request::Check(r) => r.encode(w),
            Request::Multi(ops) => {
                for op in ops {
                    MultiHeader { op_type: op.opcode().code(), done: false, err: -1 }.encode(w);
                    match op {
                        MultiOp::Create(_, r) => r.encode(w),
                        MultiOp::CreateTtl(r) => r.encode(w),
                        MultiOp::Delete(r) => r.encode(w),
                        MultiOp::SetData(r) => r.encode(w),
                        MultiOp::Check(r) => r.encode(w),
                    }
                }
                MULTI_END.encode(w);
            }
            Request::MultiRead(ops) => {
                for op in ops {
                    let (code, body): (OpCode, &dyn Fn(&mut Writer)) = match op {
                        MultiReadOp::GetChildren(r) => (OpCode::GetChildren, &|w| r.encode(w)),
                        MultiReadOp::GetData(r) => (OpCode::GetData, &|w| r.encode(w)),
                    };
                    MultiHeader { op_type: code.code(), done: false, err: -1 }.encode(w);
                    body(w);
                }
                MULTI_END.encode(w);
            }
            Request::CheckWatches(r) => r.encode(w),
            Request::RemoveWatches(r) => r.encode(w),
            Request::GetEphemerals(r) => r.encode(w),
            Request::GetAllChildrenNumber(r) => r.encode(w),
            Request::SetWatches(r) => r.encode(w),
            Request::SetWatches2(r) => r.encode(w),
            Request::AddWatch(r) => r.encode(w),
            Request::Auth(r) => r.encode(w),
            Request::Reconfig(r) => r.encode(w),
        }
    }

    /// Writes go through the replica (in session order); everything else is answered by the shard.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(..)
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Sync(_)
                | Request::Check(_)
                | Request::Multi(_)
                | Request::CloseSession
                | Request::Reconfig(_)
        )
    }
}

impl Request {
    /// The request's body as a client sends it, for a write (what a learner forwards to its
    /// leader in a REQUEST packet); None for a read, which is never forwarded.
    pub fn encode_write(&self, w: &mut crate::proto::Writer) -> Option<()> {
        match self {
            Request::Create(_, r) => r.encode(w),
            Request::CreateTtl(r) => r.encode(w),
            Request::Delete(r) => r.encode(w),
            Request::SetData(r) => r.encode(w),
            Request::SetAcl(r) => r.encode(w),
            Request::Sync(r) => r.encode(w),
            Request::Check(r) => r.encode(w),
            Request::Reconfig(r) => r.encode(w),
            Request::CloseSession => {}
            Request::Multi(ops) => {
                for op in ops {
                    MultiHeader { op_type: op.opcode() as i32, done: false, err: -1 }.encode(w);
                    match op {
                        MultiOp::Create(_, r) => r.encode(w),
                        MultiOp::CreateTtl(r) => r.encode(w),
                        MultiOp::Delete(r) => r.encode(w),
                        MultiOp::SetData(r) => r.encode(w),
                        MultiOp::Check(r) => r.encode(w),
                    }
                }
                MULTI_END.encode(w);
            }
            _ => return None,
        }
        Some(())
    }
}

fn decode_multi(r: &mut Reader<'_>) -> Result<Vec<MultiOp>> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::decode(r)?;
        if h.done {
            return Ok(ops);
        }
        if ops.len() >= MULTI_MAX_OPS {
            return Err(JuteError::BadValue { what: "multi op count", value: ops.len() as i64 });
        }
        let op = match OpCode::from_i32(h.op_type) {
            Some(OpCode::Create | OpCode::Create2 | OpCode::CreateContainer) => {
                // ZooKeeper's MultiOperationRecord rebuilds these with Op.create(path, data, acl,
                // flags): the opcode then follows the flags (createContainer for a container,
                // create otherwise), so a create2 inside a multi answers like a plain create.
                let req = CreateRequest::decode(r)?;
                let op = if crate::proto::types::CreateMode::from_flag(req.flags)
                    == Some(crate::proto::types::CreateMode::Container)
                {
                    OpCode::CreateContainer
                } else {
                    OpCode::Create
                };
                MultiOp::Create(op, req)
            }
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(CreateTtlRequest::decode(r)?),
            Some(OpCode::Delete) => MultiOp::Delete(DeleteRequest::decode(r)?),
            Some(OpCode::SetData) => MultiOp::SetData(SetDataRequest::decode(r)?),
            Some(OpCode::Check) => MultiOp::Check(CheckVersionRequest::decode(r)?),
            _ => return Err(JuteError::BadValue { what: "multi op type", value: h.op_type as i64 }),
        };
        ops.push(op);
    }
}

fn decode_multi_read(r: &mut Reader<'_>) -> Result<Vec<MultiReadOp>> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::decode(r)?;
        if h.done {
            return Ok(ops);
        }
        if ops.len() >= MULTI_MAX_OPS {
            return Err(JuteError::BadValue { what: "multiRead op count", value: ops.len() as i64 });
        }
        ops.push(match OpCode::from_i32(h.op_type) {
            Some(OpCode::GetChildren) => MultiReadOp::GetChildren(GetChildrenRequest::decode(r)?),
            Some(OpCode::GetData) => MultiReadOp::GetData(GetDataRequest::decode(r)?),
            _ => return Err(JuteError::BadValue { what: "multiRead op type", value: h.op_type as i64 }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn multi_decodes_until_done() {
        let mut w = Writer::new();
        MultiHeader { op_type: 1, done: false, err: -1 }.encode(&mut w);
        CreateRequest { path: "/a".into(), ..Default::default() }.encode(&mut w);
        MultiHeader { op_type: 13, done: false, err: -1 }.encode(&mut w);
        CheckVersionRequest { path: "/a".into(), version: 3 }.encode(&mut w);
        MULTI_END.encode(&mut w);
        let r = Request::decode(14, &w.buf).unwrap();
        match r {
            Request::Multi(ops) => {
                assert_eq!(ops.len(), 2);
                assert_eq!(ops[1], MultiOp::Check(CheckVersionRequest { path: "/a".into(), version: 3 }));
            }
            other => panic!("{other:?}"),
        }
        // An unterminated multi is an error.
        assert!(Request::decode(14, &w.buf[..w.buf.len() - 9]).is_err());
    }

    #[test]
    fn encode_is_what_decode_reads() {
        let reqs = [
            Request::Create(
                OpCode::Create2,
                CreateRequest { path: "/a".into(), flags: 2, ..Default::default() },
            ),
            Request::Ping,
            Request::Multi(vec![
                MultiOp::Create(OpCode::CreateContainer, CreateRequest { flags: 4, ..Default::default() }),
                MultiOp::Delete(DeleteRequest { path: "/x".into(), version: -1 }),
            ]),
            Request::MultiRead(vec![
                MultiReadOp::GetData(GetDataRequest { path: "/d".into(), watch: true }),
                MultiReadOp::GetChildren(GetChildrenRequest { path: "/c".into(), watch: false }),
            ]),
            Request::Auth(AuthPacket { auth_type: 0, scheme: "digest".into(), auth: b"u:p".to_vec() }),
        ];
        for req in reqs {
            let mut w = Writer::new();
            req.encode(&mut w);
            assert_eq!(Request::decode(req.opcode().code(), &w.buf).unwrap(), req);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(op in prop::sample::select(vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 100, 101, 102, 103, 104, 105, 106, 107, -10, -11, -1, 55]),
                               body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Request::decode(op, &body);
        }

        #[test]
        fn set_data_round_trips(path in "/[a-z]{1,10}", data in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)), version in any::<i32>()) {
            let req = SetDataRequest { path, data, version };
            prop_assert_eq!(Request::decode(5, &req.to_bytes()).unwrap(), Request::SetData(req));
        }
    }
}
