//! The quorum verifier as text (`quorum::wire::QuorumView::parse`, `QuorumPeer.configFromString`'s
//! reading of the `server.N=...` lines and `version=` a peer sends in notifications and
//! NEWLEADER), and the election's reading of the same text (`ServerList::parse`). What parses
//! must write back (`to_text`, ZooKeeper's `QuorumMaj.toString`) to text that parses the same,
//! and the election must read the members and roles the view has.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zkd::quorum::election::ServerList;
use zkd::quorum::wire::QuorumView;

fuzz_target!(|data: &[u8]| {
    let list = ServerList::parse(data);
    let Ok(v) = QuorumView::parse(data) else { return };
    assert!(v.same_as(&v));
    let m = v.members();
    assert_eq!(m.voters.len() + m.observers.len(), v.servers.len());
    let text = v.to_text();
    // ZooKeeper writes the version as an unsigned hex long and reads it back as a signed one:
    // a negative version does not read back there either.
    // A host that starts or ends with whitespace loses it when written as the first or last
    // thing of a properties value (Properties trims values; ZooKeeper's do too): no host is so.
    let spaced = |h: &str| h.trim() != h;
    let trimmable = v.servers.values().any(|s| {
        s.addrs.iter().any(|a| spaced(&a.host)) || s.client.as_ref().is_some_and(|c| spaced(&c.host))
    });
    if v.version >= 0 && !trimmable {
        let again = QuorumView::parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{v:?} writes {text:?}, which does not parse: {e}"));
        // The text lists a server's addresses sorted by host (QuorumServer.toString).
        assert!(again.same_members(&v) && again.version == v.version, "parse(to_text({v:?})) is {again:?}");
        assert_eq!(again.to_text(), text, "to_text is not stable");
    }
    // The election reads the same servers from the text this server writes.
    if !v.servers.is_empty() {
        let from_text = ServerList::parse(text.as_bytes()).expect("a view with servers has a server list");
        assert_eq!(from_text, ServerList::from_members(&m), "the election misreads {text:?}");
        let list = list.expect("a view with servers has a server list");
        let sids: Vec<_> = list.servers.keys().collect();
        assert_eq!(sids, v.servers.keys().collect::<Vec<_>>(), "the election reads other sids");
    }
});
