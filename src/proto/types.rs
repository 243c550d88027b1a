//! Protocol constants of Apache ZooKeeper 3.8/3.9: opcodes, error codes, create modes, permissions,
//! watch event types and states, and the zxid layout (epoch in the high 32 bits, counter below).

use super::jute::JuteError;

macro_rules! int_enum {
    ($(#[$m:meta])* $name:ident : $repr:ty { $($v:ident = $n:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name { $($v = $n),* }
        impl $name {
            pub fn from_i32(v: $repr) -> Option<Self> {
                match v { $($n => Some($name::$v),)* _ => None }
            }
            pub fn code(self) -> $repr { self as $repr }
            pub fn name(self) -> &'static str { match self { $($name::$v => stringify!($v)),* } }
        }
    };
}

int_enum! {
    /// `ZooDefs.OpCode`.
    OpCode: i32 {
        Notification = 0, Create = 1, Delete = 2, Exists = 3, GetData = 4, SetData = 5, GetAcl = 6,
        SetAcl = 7, GetChildren = 8, Sync = 9, Ping = 11, GetChildren2 = 12, Check = 13, Multi = 14,
        Create2 = 15, Reconfig = 16, CheckWatches = 17, RemoveWatches = 18, CreateContainer = 19,
        DeleteContainer = 20, CreateTtl = 21, MultiRead = 22, Auth = 100, SetWatches = 101, Sasl = 102,
        GetEphemerals = 103, GetAllChildrenNumber = 104, SetWatches2 = 105, AddWatch = 106, WhoAmI = 107,
        CreateSession = -10, CloseSession = -11, Error = -1,
    }
}

int_enum! {
    /// `KeeperException.Code`.
    ErrorCode: i32 {
        Ok = 0, SystemError = -1, RuntimeInconsistency = -2, DataInconsistency = -3, ConnectionLoss = -4,
        MarshallingError = -5, Unimplemented = -6, OperationTimeout = -7, BadArguments = -8,
        UnknownSession = -12, NewConfigNoQuorum = -13, ReconfigInProgress = -14, ApiError = -100,
        NoNode = -101, NoAuth = -102, BadVersion = -103, NoChildrenForEphemerals = -108, NodeExists = -110,
        NotEmpty = -111, SessionExpired = -112, InvalidCallback = -113, InvalidAcl = -114, AuthFailed = -115,
        SessionMoved = -118, NotReadOnly = -119, EphemeralOnLocalSession = -120, NoWatcher = -121,
        RequestTimeout = -122, ReconfigDisabled = -123, SessionClosedRequireSasl = -124, QuotaExceeded = -125,
        Throttled = -127,
    }
}

int_enum! {
    /// `Watcher.Event.EventType`.
    EventType: i32 {
        None = -1, NodeCreated = 1, NodeDeleted = 2, NodeDataChanged = 3, NodeChildrenChanged = 4,
        DataWatchRemoved = 5, ChildWatchRemoved = 6, PersistentWatchRemoved = 7,
    }
}

int_enum! {
    /// `Watcher.Event.KeeperState`.
    KeeperState: i32 {
        Disconnected = 0, SyncConnected = 3, AuthFailed = 4, ConnectedReadOnly = 5, SaslAuthenticated = 6,
        Expired = -112, Closed = 7,
    }
}

int_enum! {
    /// `Watcher.WatcherType` as used by checkWatches/removeWatches.
    WatcherType: i32 { Children = 1, Data = 2, Any = 3, Persistent = 4, PersistentRecursive = 5 }
}

int_enum! {
    /// `AddWatchMode`.
    AddWatchMode: i32 { Persistent = 0, PersistentRecursive = 1 }
}

/// `CreateMode`, decoded from the request's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
}

impl CreateMode {
    pub fn from_flag(flag: i32) -> Option<Self> {
        Some(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return None,
        })
    }
    pub fn flag(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl => 5,
            CreateMode::PersistentSequentialWithTtl => 6,
        }
    }
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }
    pub fn is_ephemeral(self) -> bool {
        matches!(self, CreateMode::Ephemeral | CreateMode::EphemeralSequential)
    }
    pub fn is_container(self) -> bool {
        self == CreateMode::Container
    }
    pub fn is_ttl(self) -> bool {
        matches!(self, CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl)
    }
}

/// `ZooDefs.Perms`.
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// Reserved xids in reply headers.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}

/// A zxid: epoch in the high 32 bits, counter in the low 32 bits. Carried from day one so that ZAB
/// epochs need no format change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Zxid(pub i64);

impl Zxid {
    pub fn new(epoch: u32, counter: u32) -> Self {
        Zxid(((epoch as i64) << 32) | counter as i64)
    }
    pub fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn counter(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for Zxid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// A protocol-level failure that maps onto a ZooKeeper error code.
impl From<JuteError> for ErrorCode {
    fn from(_: JuteError) -> Self {
        ErrorCode::MarshallingError
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}
impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn zxid_layout() {
        let z = Zxid::new(3, 7);
        assert_eq!(z.0, 0x0000_0003_0000_0007);
        assert_eq!((z.epoch(), z.counter()), (3, 7));
    }
    #[test]
    fn codes_round_trip() {
        for c in [-101, -110, -112, -125, 0] {
            assert_eq!(ErrorCode::from_i32(c).unwrap().code(), c);
        }
        assert_eq!(OpCode::from_i32(106), Some(OpCode::AddWatch));
        assert_eq!(OpCode::from_i32(10), None);
    }
}
