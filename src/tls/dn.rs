//! A certificate's subject as Java's `X500Principal.getName()` prints it (RFC 2253 form): the
//! string ZooKeeper's X509AuthenticationProvider makes the client's `x509` id, so ACLs written
//! for ZooKeeper match the same clients here. Pure.
//!
//! Java's rules (`X500Name.getRFC2253Name`, `RDN`, `AVA.toRFC2253String`): RDNs last to first,
//! joined by ','; values of one RDN joined by '+', in encoded order; the RFC 2253 keywords CN, C,
//! L, ST, O, OU, STREET, DC and UID, any other type as its dotted OID with the value as '#' and
//! the hex of its DER encoding (also for a value that is not one of Java's directory strings);
//! in string values each of `,=+<>#;"\` gets a backslash, NUL becomes `\00`, and leading or
//! trailing spaces (and CRs) are escaped.

use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};

/// The RFC 2253 keyword of an attribute type, if Java prints one.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The subject DN of a DER certificate, or why it cannot be read.
pub fn subject_of(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| format!("bad certificate: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        let avas: Vec<String> =
            rdn.iter().map(|a| ava(&a.attr_type().to_id_string(), a.attr_value())).collect();
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn ava(oid: &str, value: &Any<'_>) -> String {
    match (keyword(oid), directory_string(value)) {
        (Some(k), Some(s)) => format!("{k}={}", escape(&s)),
        (k, _) => format!("{}=#{}", k.unwrap_or(oid), hex_der(value)),
    }
}

/// The value as text if it is one of the string types Java prints as text (`isDerString(v,
/// false)`: PrintableString, T61String, IA5String, GeneralString, UTF8String, BMPString).
fn directory_string(v: &Any<'_>) -> Option<String> {
    if v.class() != Class::Universal {
        return None;
    }
    let data = v.data;
    match v.tag() {
        Tag::PrintableString | Tag::Ia5String | Tag::GeneralString | Tag::Utf8String => {
            String::from_utf8(data.to_vec()).ok()
        }
        // Java decodes a T61String as ISO 8859-1.
        Tag::T61String => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// `DerValue.isPrintableStringChar`.
fn printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

fn escape(s: &str) -> String {
    const ESCAPEES: &str = ",=+<>#;\"\\";
    let mut first = String::new();
    for c in s.chars() {
        if ESCAPEES.contains(c) {
            first.push('\\');
            first.push(c);
        } else if printable(c) {
            first.push(c);
        } else if c == '\0' {
            first.push_str("\\00");
        } else {
            first.push(c);
        }
    }
    // Leading and trailing spaces and CRs (of the escaped text) get a backslash each.
    let chars: Vec<char> = first.chars().collect();
    let ws = |c: char| c == ' ' || c == '\r';
    let lead = chars.iter().position(|&c| !ws(c)).unwrap_or(chars.len());
    let trail = chars.iter().rposition(|&c| !ws(c));
    let mut out = String::with_capacity(first.len() + 2);
    for (i, &c) in chars.iter().enumerate() {
        if i < lead || trail.is_none_or(|t| i > t) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The value's whole DER encoding (identifier, length, contents), as lowercase hex.
fn hex_der(v: &Any<'_>) -> String {
    let data = v.data;
    let mut der = Vec::with_capacity(data.len() + 6);
    let class = (v.class() as u8) << 6;
    let constructed = if v.header.is_constructed() { 0x20 } else { 0 };
    let tag = v.tag().0;
    if tag < 31 {
        der.push(class | constructed | tag as u8);
    } else {
        der.push(class | constructed | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            der.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
        }
    }
    let len = data.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().iter().copied().skip_while(|&b| b == 0).collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend_from_slice(&bytes);
    }
    der.extend_from_slice(data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_java() {
        assert_eq!(escape("a,b"), "a\\,b");
        assert_eq!(escape("#1 +x"), "\\#1 \\+x");
        assert_eq!(escape(" lead and trail  "), "\\ lead and trail\\ \\ ");
        assert_eq!(escape("caf\u{e9}_x@y"), "caf\u{e9}_x@y");
        assert_eq!(escape("nul\0"), "nul\\00");
    }
}
