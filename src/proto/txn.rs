//! Transactions: what the replica produces, the txnlog stores and the tree applies.
//! The body's encoding depends on the header's type, exactly as in ZooKeeper's `SerializeUtils`.

use super::jute::{JuteError, Reader, Record, Result, Writer};
use super::records::*;
use super::types::OpCode;

/// A transaction body, keyed by the `TxnHeader.type` it is logged under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnBody {
    /// `create` and `create2` (both log a CreateTxn; the header type says which).
    Create(CreateTxn),
    CreateContainer(CreateContainerTxn),
    CreateTtl(CreateTtlTxn),
    /// `delete` and `deleteContainer`.
    Delete(DeleteTxn),
    SetData(SetDataTxn),
    SetAcl(SetAclTxn),
    Check(CheckVersionTxn),
    CreateSession(CreateSessionTxn),
    /// Old logs write closeSession with an empty body: decoded as no paths.
    CloseSession(CloseSessionTxn),
    Error(ErrorTxn),
    /// Each element carries the opcode it was logged under.
    Multi(Vec<(i32, TxnBody)>),
    /// A header type zkd does not interpret (e.g. reconfig), kept byte for byte.
    Other(Vec<u8>),
}

/// Bytes of an `Acl` vector in jute: count, then perms and the id's two strings per entry.
fn acl_len(acl: &[Acl]) -> usize {
    4 + acl.iter().map(|a| 4 + 4 + a.id.scheme.len() + 4 + a.id.id.len()).sum::<usize>()
}

impl TxnBody {
    /// The encoded length in bytes, computed without encoding for the bodies a client's writes
    /// log most (create, setData, delete, error); the others are encoded to count.
    pub fn encoded_len(&self) -> usize {
        let data = |d: &Option<Vec<u8>>| 4 + d.as_ref().map_or(0, Vec::len);
        let len = match self {
            TxnBody::Create(t) => 4 + t.path.len() + data(&t.data) + acl_len(&t.acl) + 1 + 4,
            TxnBody::SetData(t) => 4 + t.path.len() + data(&t.data) + 4,
            TxnBody::Delete(t) => 4 + t.path.len(),
            TxnBody::Error(_) => 4,
            _ => {
                let mut w = Writer::with_capacity(256);
                self.encode(&mut w);
                return w.buf.len();
            }
        };
        // Debug builds only: it encodes the whole body a second time, which is what this
        // function exists to avoid.
        debug_assert_eq!(len, {
            let mut w = Writer::with_capacity(256);
            self.encode(&mut w);
            w.buf.len()
        });
        len
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            TxnBody::Create(t) => t.encode(w),
            TxnBody::CreateContainer(t) => t.encode(w),
            TxnBody::CreateTtl(t) => t.encode(w),
            TxnBody::Delete(t) => t.encode(w),
            TxnBody::SetData(t) => t.encode(w),
            TxnBody::SetAcl(t) => t.encode(w),
            TxnBody::Check(t) => t.encode(w),
            TxnBody::CreateSession(t) => t.encode(w),
            TxnBody::CloseSession(t) => t.encode(w),
            TxnBody::Error(t) => t.encode(w),
            TxnBody::Multi(ops) => {
                let txns: Vec<Txn> = ops
                    .iter()
                    .map(|(ty, b)| {
                        let mut inner = Writer::new();
                        b.encode(&mut inner);
                        Txn { txn_type: *ty, data: inner.buf }
                    })
                    .collect();
                MultiTxn { txns }.encode(w)
            }
            TxnBody::Other(raw) => w.raw(raw),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.buf
    }

    /// Decodes the body that follows a header of type `txn_type`.
    pub fn decode(txn_type: i32, r: &mut Reader<'_>) -> Result<TxnBody> {
        let op = OpCode::from_i32(txn_type);
        Ok(match op {
            Some(OpCode::Create) | Some(OpCode::Create2) => {
                // Pre-3.3 logs wrote CreateTxnV0 (no parentCVersion); tell by the bytes left.
                let start = r.rest();
                match CreateTxn::decode(r) {
                    Ok(t) => TxnBody::Create(t),
                    Err(_) => {
                        let mut r0 = Reader::new(start);
                        let v0 = CreateTxnV0::decode(&mut r0)?;
                        r.take(start.len() - r0.remaining())?;
                        TxnBody::Create(CreateTxn {
                            path: v0.path,
                            data: v0.data,
                            acl: v0.acl,
                            ephemeral: v0.ephemeral,
                            parent_c_version: -1,
                        })
                    }
                }
            }
            Some(OpCode::CreateContainer) => TxnBody::CreateContainer(CreateContainerTxn::decode(r)?),
            Some(OpCode::CreateTtl) => TxnBody::CreateTtl(CreateTtlTxn::decode(r)?),
            Some(OpCode::Delete) | Some(OpCode::DeleteContainer) => TxnBody::Delete(DeleteTxn::decode(r)?),
            Some(OpCode::SetData) => TxnBody::SetData(SetDataTxn::decode(r)?),
            Some(OpCode::SetAcl) => TxnBody::SetAcl(SetAclTxn::decode(r)?),
            Some(OpCode::Check) => TxnBody::Check(CheckVersionTxn::decode(r)?),
            Some(OpCode::CreateSession) => TxnBody::CreateSession(CreateSessionTxn::decode(r)?),
            Some(OpCode::CloseSession) => {
                if r.remaining() == 0 {
                    TxnBody::CloseSession(CloseSessionTxn::default())
                } else {
                    TxnBody::CloseSession(CloseSessionTxn::decode(r)?)
                }
            }
            Some(OpCode::Error) => TxnBody::Error(ErrorTxn::decode(r)?),
            Some(OpCode::Multi) => {
                let m = MultiTxn::decode(r)?;
                let mut ops = Vec::with_capacity(m.txns.len());
                for t in m.txns {
                    if t.txn_type == OpCode::Multi as i32 {
                        return Err(JuteError::BadValue {
                            what: "nested multi txn",
                            value: t.txn_type as i64,
                        });
                    }
                    let mut ir = Reader::new(&t.data);
                    let body = TxnBody::decode(t.txn_type, &mut ir)?;
                    ops.push((t.txn_type, body));
                }
                TxnBody::Multi(ops)
            }
            _ => TxnBody::Other(r.take(r.remaining())?.to_vec()),
        })
    }
}

/// A whole transaction as logged: header, body, and (ZooKeeper 3.6+) an optional digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedTxn {
    pub hdr: TxnHeader,
    pub body: TxnBody,
    pub digest: Option<TxnDigest>,
}

impl LoggedTxn {
    pub fn encode(&self, w: &mut Writer) {
        self.hdr.encode(w);
        self.body.encode(w);
        if let Some(d) = &self.digest {
            d.encode(w);
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.buf
    }
    /// Decodes header + body (+ digest if bytes remain), as `SerializeUtils.deserializeTxn`.
    pub fn from_bytes(b: &[u8]) -> Result<LoggedTxn> {
        let mut r = Reader::new(b);
        let hdr = TxnHeader::decode(&mut r)?;
        let body = TxnBody::decode(hdr.txn_type, &mut r)?;
        let digest =
            if r.remaining() >= TxnDigest::MIN_SIZE { Some(TxnDigest::decode(&mut r)?) } else { None };
        Ok(LoggedTxn { hdr, body, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_round_trips() {
        let t = LoggedTxn {
            hdr: TxnHeader {
                client_id: 7,
                cxid: 3,
                zxid: 0x100000001,
                time: 99,
                txn_type: OpCode::Multi as i32,
            },
            body: TxnBody::Multi(vec![
                (
                    OpCode::Create as i32,
                    TxnBody::Create(CreateTxn { path: "/a".into(), ..Default::default() }),
                ),
                (OpCode::Error as i32, TxnBody::Error(ErrorTxn { err: -101 })),
            ]),
            digest: Some(TxnDigest { version: 2, tree_digest: 1234 }),
        };
        assert_eq!(LoggedTxn::from_bytes(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn empty_close_session_body_decodes() {
        let hdr = TxnHeader { txn_type: OpCode::CloseSession as i32, ..Default::default() };
        let t = LoggedTxn::from_bytes(&hdr.to_bytes()).unwrap();
        assert_eq!(t.body, TxnBody::CloseSession(CloseSessionTxn::default()));
    }

    #[test]
    fn encoded_len_is_the_encoding_length() {
        let acl = vec![
            Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } },
            Acl { perms: 1, id: Id { scheme: "digest".into(), id: "u:abc".into() } },
        ];
        let bodies = [
            TxnBody::Create(CreateTxn {
                path: "/a/b".into(),
                data: Some(vec![7; 100]),
                acl: acl.clone(),
                ephemeral: true,
                parent_c_version: 3,
            }),
            TxnBody::Create(CreateTxn { path: "/é".into(), data: None, acl: vec![], ..Default::default() }),
            TxnBody::SetData(SetDataTxn { path: "/x".into(), data: Some(vec![]), version: 2 }),
            TxnBody::SetData(SetDataTxn { path: "/x".into(), data: None, version: 2 }),
            TxnBody::Delete(DeleteTxn { path: "/abc".into() }),
            TxnBody::Error(ErrorTxn { err: -101 }),
            TxnBody::SetAcl(SetAclTxn { path: "/q".into(), acl, version: 1 }),
            TxnBody::CloseSession(CloseSessionTxn { paths2_delete: vec!["/e".into()] }),
        ];
        for b in bodies {
            let mut w = Writer::new();
            b.encode(&mut w);
            assert_eq!(b.encoded_len(), w.buf.len(), "{b:?}");
        }
    }
}
