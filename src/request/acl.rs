//! ACL evaluation as ZooKeeper's `checkACL` and its two built-in providers (ip, digest), plus
//! `fixupACL`. Pure.

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::proto::{Acl, ErrorCode, Id};

/// `DigestAuthenticationProvider.generateDigest("user:password")` → `user:base64(sha1(...))`.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// `IPAuthenticationProvider.addr2Bytes`: IPv4 dotted quad or IPv6.
fn addr_bytes(s: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 4 {
        let mut v = Vec::with_capacity(4);
        for p in parts {
            let n: u32 = p.parse().ok()?;
            if n > 255 {
                return None;
            }
            v.push(n as u8);
        }
        return Some(v);
    }
    if s.contains(':') {
        return s.parse::<std::net::Ipv6Addr>().ok().map(|a| a.octets().to_vec());
    }
    None
}

/// `IPAuthenticationProvider.isValid`: `addr` or `addr/bits`.
pub fn ip_acl_valid(id: &str) -> bool {
    let mut it = id.splitn(2, '/');
    let Some(addr) = it.next().and_then(addr_bytes) else { return false };
    match it.next() {
        None => true,
        Some(b) => b.parse::<i64>().is_ok_and(|bits| bits >= 0 && bits <= addr.len() as i64 * 8),
    }
}

/// `IPAuthenticationProvider.matches`: does client address `client` fall in `acl` (CIDR)?
pub fn ip_matches(client: &str, acl: &str) -> bool {
    let mut it = acl.splitn(2, '/');
    let Some(net) = it.next().and_then(addr_bytes) else { return false };
    let bits = match it.next() {
        None => net.len() * 8,
        Some(b) => match b.parse::<usize>() {
            Ok(b) if b <= net.len() * 8 => b,
            _ => return false,
        },
    };
    let Some(c) = addr_bytes(client) else { return false };
    if c.len() != net.len() {
        return false;
    }
    for i in 0..bits {
        let mask = 0x80u8 >> (i % 8);
        if c[i / 8] & mask != net[i / 8] & mask {
            return false;
        }
    }
    true
}

/// ZooKeeper's `checkACL`: allowed if any ACL entry granting one of `perm`'s bits matches one of
/// the connection's ids; `super` passes everything; an empty ACL passes.
pub fn check_acl(acl: &[Acl], perm: i32, ids: &[Id], _super_digest: Option<&str>) -> Result<(), ErrorCode> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            return Ok(());
        }
        for auth in ids.iter().filter(|i| i.scheme == id.scheme) {
            let hit = match id.scheme.as_str() {
                "digest" => auth.id == id.id,
                "ip" => ip_matches(&auth.id, &id.id),
                _ => false,
            };
            if hit {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

/// ZooKeeper's `fixupACL`: removes duplicates, expands `auth` to the connection's authenticated
/// (digest) ids, and validates every id. InvalidACL when empty or invalid.
pub fn fixup_acl(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        let id = &a.id;
        if id.scheme == "world" && id.id == "anyone" {
            out.push(a.clone());
        } else if id.scheme == "auth" {
            // Only providers that authenticate (digest) count; ip ids are not "authenticated".
            let authed: Vec<&Id> = ids.iter().filter(|i| i.scheme == "digest").collect();
            if authed.is_empty() {
                return Err(ErrorCode::InvalidAcl);
            }
            for i in authed {
                out.push(Acl { perms: a.perms, id: i.clone() });
            }
        } else {
            if !explicit_id_valid(id) {
                return Err(ErrorCode::InvalidAcl);
            }
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Whether an id other than world:anyone and auth is one ZooKeeper accepts in an ACL.
fn explicit_id_valid(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').count() == 2,
        "ip" => ip_acl_valid(&id.id),
        _ => false,
    }
}

/// `fixup_acl` for an ACL the caller owns: the common one (no duplicates, no `auth` id) comes
/// back as it is, with no copy; the result is always what `fixup_acl` gives.
pub fn fixup_acl_owned(acl: Vec<Acl>, ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let as_is = acl.iter().enumerate().all(|(i, a)| a.id.scheme != "auth" && !acl[..i].contains(a));
    if !as_is {
        return fixup_acl(&acl, ids);
    }
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let valid = |a: &Acl| (a.id.scheme == "world" && a.id.id == "anyone") || explicit_id_valid(&a.id);
    if !acl.iter().all(valid) {
        return Err(ErrorCode::InvalidAcl);
    }
    Ok(acl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_zookeeper() {
        // java -cp ... DigestAuthenticationProvider super:test → super:D/InIHSb7yEEbrWz8b9l71RjZJU=
        assert_eq!(digest_id("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn ip_cidr() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("::1", "::1"));
        assert!(ip_acl_valid("192.168.0.0/24") && !ip_acl_valid("192.168.0.0/33") && !ip_acl_valid("nope"));
    }

    #[test]
    fn check_and_fixup() {
        let world = Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } };
        let alice = Id { scheme: "digest".into(), id: digest_id("alice:pw") };
        let only_alice = Acl { perms: 1, id: alice.clone() };
        assert_eq!(check_acl(std::slice::from_ref(&only_alice), 1, &[], None), Err(ErrorCode::NoAuth));
        assert_eq!(
            check_acl(std::slice::from_ref(&only_alice), 1, std::slice::from_ref(&alice), None),
            Ok(())
        );
        assert_eq!(
            check_acl(std::slice::from_ref(&only_alice), 2, std::slice::from_ref(&alice), None),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(check_acl(std::slice::from_ref(&world), 2, &[], None), Ok(()));
        let auth = Acl { perms: 31, id: Id { scheme: "auth".into(), id: "".into() } };
        assert_eq!(fixup_acl(std::slice::from_ref(&auth), &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[auth], std::slice::from_ref(&alice)).unwrap()[0].id, alice);
        assert_eq!(fixup_acl(&[], &[]), Err(ErrorCode::InvalidAcl));
        let bad = Acl { perms: 1, id: Id { scheme: "digest".into(), id: "nocolon".into() } };
        assert_eq!(fixup_acl(&[bad], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup_acl(&[world.clone(), world.clone()], &[]).unwrap().len(), 1);
    }
}
