//! Every record of `zookeeper.jute` that zkd reads or writes, field for field.
//! Field order is the wire order; see `jute_record!`.

use crate::jute_record;

jute_record! { pub struct Id { pub scheme: String, pub id: String } }
jute_record! { pub struct Acl { pub perms: i32, pub id: Id } }
jute_record! {
    /// `org.apache.zookeeper.data.Stat`.
    pub struct Stat {
        pub czxid: i64, pub mzxid: i64, pub ctime: i64, pub mtime: i64, pub version: i32,
        pub cversion: i32, pub aversion: i32, pub ephemeral_owner: i64, pub data_length: i32,
        pub num_children: i32, pub pzxid: i64,
    }
}
jute_record! {
    /// `StatPersisted`: the Stat as snapshots store it (no dataLength/numChildren).
    pub struct StatPersisted {
        pub czxid: i64, pub mzxid: i64, pub ctime: i64, pub mtime: i64, pub version: i32,
        pub cversion: i32, pub aversion: i32, pub ephemeral_owner: i64, pub pzxid: i64,
    }
}
jute_record! { pub struct ClientInfo { pub auth_scheme: String, pub user: String } }

// ---- org.apache.zookeeper.proto ----
jute_record! {
    /// The handshake; `read_only` is absent from very old clients (handled by the framing layer).
    pub struct ConnectRequest {
        pub protocol_version: i32, pub last_zxid_seen: i64, pub time_out: i32, pub session_id: i64,
        pub passwd: Vec<u8>, pub read_only: bool,
    }
}
jute_record! {
    pub struct ConnectResponse {
        pub protocol_version: i32, pub time_out: i32, pub session_id: i64, pub passwd: Vec<u8>,
        pub read_only: bool,
    }
}
jute_record! {
    pub struct SetWatches {
        pub relative_zxid: i64, pub data_watches: Vec<String>, pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}
jute_record! {
    pub struct SetWatches2 {
        pub relative_zxid: i64, pub data_watches: Vec<String>, pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>, pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}
jute_record! { pub struct RequestHeader { pub xid: i32, pub op_type: i32 } }
jute_record! { pub struct MultiHeader { pub op_type: i32, pub done: bool, pub err: i32 } }
jute_record! { pub struct AuthPacket { pub auth_type: i32, pub scheme: String, pub auth: Vec<u8> } }
jute_record! { pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 } }
jute_record! { pub struct GetDataRequest { pub path: String, pub watch: bool } }
jute_record! { pub struct SetDataRequest { pub path: String, pub data: Option<Vec<u8>>, pub version: i32 } }
jute_record! {
    pub struct ReconfigRequest {
        pub joining_servers: String, pub leaving_servers: String, pub new_members: String,
        pub cur_config_id: i64,
    }
}
jute_record! { pub struct SetDataResponse { pub stat: Stat } }
jute_record! { pub struct GetSaslRequest { pub token: Vec<u8> } }
jute_record! { pub struct SetSaslRequest { pub token: Vec<u8> } }
jute_record! { pub struct SetSaslResponse { pub token: Vec<u8> } }
jute_record! {
    pub struct CreateRequest { pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub flags: i32 }
}
jute_record! {
    pub struct CreateTtlRequest {
        pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub flags: i32, pub ttl: i64,
    }
}
jute_record! { pub struct DeleteRequest { pub path: String, pub version: i32 } }
jute_record! { pub struct GetChildrenRequest { pub path: String, pub watch: bool } }
jute_record! { pub struct GetAllChildrenNumberRequest { pub path: String } }
jute_record! { pub struct GetChildren2Request { pub path: String, pub watch: bool } }
jute_record! { pub struct CheckVersionRequest { pub path: String, pub version: i32 } }
jute_record! { pub struct SyncRequest { pub path: String } }
jute_record! { pub struct SyncResponse { pub path: String } }
jute_record! { pub struct GetAclRequest { pub path: String } }
jute_record! { pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 } }
jute_record! { pub struct SetAclResponse { pub stat: Stat } }
jute_record! { pub struct AddWatchRequest { pub path: String, pub mode: i32 } }
jute_record! { pub struct WatcherEvent { pub event_type: i32, pub state: i32, pub path: String } }
jute_record! { pub struct ErrorResponse { pub err: i32 } }
jute_record! { pub struct CreateResponse { pub path: String } }
jute_record! { pub struct Create2Response { pub path: String, pub stat: Stat } }
jute_record! { pub struct ExistsRequest { pub path: String, pub watch: bool } }
jute_record! { pub struct ExistsResponse { pub stat: Stat } }
jute_record! { pub struct GetDataResponse { pub data: Option<Vec<u8>>, pub stat: Stat } }
jute_record! { pub struct GetChildrenResponse { pub children: Vec<String> } }
jute_record! { pub struct GetAllChildrenNumberResponse { pub total_number: i32 } }
jute_record! { pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat } }
jute_record! { pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat } }
jute_record! { pub struct CheckWatchesRequest { pub path: String, pub watcher_type: i32 } }
jute_record! { pub struct RemoveWatchesRequest { pub path: String, pub watcher_type: i32 } }
jute_record! { pub struct GetEphemeralsRequest { pub prefix_path: String } }
jute_record! { pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> } }
jute_record! { pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> } }

// ---- org.apache.zookeeper.txn ----
jute_record! { pub struct TxnDigest { pub version: i32, pub tree_digest: i64 } }
jute_record! {
    pub struct TxnHeader { pub client_id: i64, pub cxid: i32, pub zxid: i64, pub time: i64, pub txn_type: i32 }
}
jute_record! {
    pub struct CreateTxnV0 { pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub ephemeral: bool }
}
jute_record! {
    pub struct CreateTxn {
        pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub ephemeral: bool,
        pub parent_c_version: i32,
    }
}
jute_record! {
    pub struct CreateTtlTxn {
        pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub parent_c_version: i32, pub ttl: i64,
    }
}
jute_record! {
    pub struct CreateContainerTxn {
        pub path: String, pub data: Option<Vec<u8>>, pub acl: Vec<Acl>, pub parent_c_version: i32,
    }
}
jute_record! { pub struct DeleteTxn { pub path: String } }
jute_record! { pub struct SetDataTxn { pub path: String, pub data: Option<Vec<u8>>, pub version: i32 } }
jute_record! { pub struct CheckVersionTxn { pub path: String, pub version: i32 } }
jute_record! { pub struct SetAclTxn { pub path: String, pub acl: Vec<Acl>, pub version: i32 } }
jute_record! { pub struct SetMaxChildrenTxn { pub path: String, pub max: i32 } }
jute_record! { pub struct CreateSessionTxn { pub time_out: i32 } }
jute_record! { pub struct CloseSessionTxn { pub paths2_delete: Vec<String> } }
jute_record! { pub struct ErrorTxn { pub err: i32 } }
jute_record! { pub struct Txn { pub txn_type: i32, pub data: Vec<u8> } }
jute_record! { pub struct MultiTxn { pub txns: Vec<Txn> } }

impl ConnectRequest {
    /// The handshake as a server reads it: clients before 3.4 omit the trailing readOnly byte,
    /// and bytes after it are ignored (ZooKeeper reads the record's fields and no more).
    pub fn decode_handshake(body: &[u8]) -> crate::proto::jute::Result<ConnectRequest> {
        let mut r = crate::proto::jute::Reader::new(body);
        let protocol_version = r.i32()?;
        let last_zxid_seen = r.i64()?;
        let time_out = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?;
        let read_only = if r.remaining() > 0 { r.bool()? } else { false };
        Ok(ConnectRequest { protocol_version, last_zxid_seen, time_out, session_id, passwd, read_only })
    }
}

impl Stat {
    pub fn to_persisted(&self) -> StatPersisted {
        StatPersisted {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion,
            aversion: self.aversion,
            ephemeral_owner: self.ephemeral_owner,
            pzxid: self.pzxid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute::Record;

    #[test]
    fn stat_is_68_bytes_and_round_trips() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), 68);
        assert_eq!(Stat::from_bytes(&b).unwrap(), s);
    }

    #[test]
    fn vector_count_is_bounded_by_input() {
        // A GetChildrenResponse claiming 2^30 children in 8 bytes is refused before allocating.
        let mut b = Vec::new();
        b.extend_from_slice(&(1i32 << 30).to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        assert!(GetChildrenResponse::from_bytes(&b).is_err());
    }
}
