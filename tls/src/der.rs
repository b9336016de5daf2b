//! Just enough X.509 DER reading to decide whether a server certificate we issued must be
//! renewed: its expiry, its subject alternative names, and its issuer and subject names.
//! A full parser (x509-parser) would pull in a dozen crates for these few fields.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the renewal decision needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts<'a> {
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// The encoded Name, tag and length included, so it compares byte for byte.
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const SAN_DNS: u8 = 0x82;
const SAN_IP: u8 = 0x87;
/// 2.5.29.17, subjectAltName.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// One tag-length-value element: its tag, its contents, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    raw: &'a [u8],
}

/// Reads consecutive elements from a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn next(&mut self) -> Option<Tlv<'a>> {
        let (&tag, after_tag) = self.rest.split_first()?;
        // Multi-byte tags never occur in the fields read here.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_len.len() < count {
                return None;
            }
            let (len_bytes, rest) = after_len.split_at(count);
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return None;
        }
        let header = self.rest.len() - after_len.len();
        let raw = &self.rest[..header + len];
        let value = &after_len[..len];
        self.rest = &after_len[len..];
        Some(Tlv { tag, value, raw })
    }

    fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        let tlv = self.next()?;
        (tlv.tag == tag).then_some(tlv)
    }
}

/// Reads expiry, SANs and names from a DER certificate; `None` if it is not one.
pub(crate) fn cert_facts(der: &[u8]) -> Option<CertFacts<'_>> {
    let cert = Reader::new(der).expect(SEQUENCE)?;
    let mut tbs = Reader::new(Reader::new(cert.value).expect(SEQUENCE)?.value);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.next()?;
    }
    tbs.expect(INTEGER)?; // serial number
    tbs.expect(SEQUENCE)?; // signature algorithm
    let issuer = tbs.expect(SEQUENCE)?.raw;
    let mut validity = Reader::new(tbs.expect(SEQUENCE)?.value);
    validity.next()?; // notBefore
    let not_after = parse_time(&validity.next()?)?;
    let subject = tbs.expect(SEQUENCE)?.raw;
    tbs.expect(SEQUENCE)?; // subject public key info
    let mut facts = CertFacts {
        not_after,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        issuer,
        subject,
    };
    while let Some(field) = tbs.next() {
        if field.tag == EXTENSIONS {
            read_extensions(field.value, &mut facts)?;
        }
    }
    Some(facts)
}

fn read_extensions(explicit: &[u8], facts: &mut CertFacts<'_>) -> Option<()> {
    let mut list = Reader::new(Reader::new(explicit).expect(SEQUENCE)?.value);
    while !list.is_empty() {
        let mut ext = Reader::new(list.expect(SEQUENCE)?.value);
        let oid = ext.expect(OID)?;
        if ext.peek_tag() == Some(BOOLEAN) {
            ext.next()?;
        }
        let value = ext.expect(OCTET_STRING)?;
        if oid.value == OID_SAN {
            let mut names = Reader::new(Reader::new(value.value).expect(SEQUENCE)?.value);
            while let Some(name) = names.next() {
                match name.tag {
                    SAN_DNS => facts
                        .dns_names
                        .push(std::str::from_utf8(name.value).ok()?.to_owned()),
                    SAN_IP => facts.ip_addresses.push(ip_from_bytes(name.value)?),
                    _ => {}
                }
            }
        }
    }
    Some(())
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    let v6 = <[u8; 16]>::try_from(bytes).ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(v6)))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn parse_time(tlv: &Tlv<'_>) -> Option<i64> {
    let text = std::str::from_utf8(tlv.value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tlv.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            // RFC 5280 4.1.2.5.1: 50..99 are 19xx, 00..49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, value: &[u8]) -> Tlv<'_> {
        Tlv {
            tag,
            value,
            raw: value,
        }
    }

    #[test]
    fn times_table() {
        let cases: &[(u8, &str, Option<i64>)] = &[
            (UTC_TIME, "700101000000Z", Some(0)),
            (UTC_TIME, "491231235959Z", Some(2_524_607_999)),
            (UTC_TIME, "500101000000Z", Some(-631_152_000)),
            (GENERALIZED_TIME, "20000229120000Z", Some(951_825_600)),
            (GENERALIZED_TIME, "20370101000000Z", Some(2_114_380_800)),
            (GENERALIZED_TIME, "99991231235959Z", Some(253_402_300_799)),
            (UTC_TIME, "20000229120000Z", None),
            (GENERALIZED_TIME, "700101000000Z", None),
            (UTC_TIME, "700101000000", None),
            (UTC_TIME, "701301000000Z", None),
            (UTC_TIME, "70010100000aZ", None),
            (UTC_TIME, "700101240000Z", None),
            (OCTET_STRING, "700101000000Z", None),
        ];
        for (tag, text, want) in cases {
            assert_eq!(parse_time(&tlv(*tag, text.as_bytes())), *want, "{text}");
        }
    }

    #[test]
    fn lengths_table() {
        // (encoding, value length or None when malformed)
        let long_form = {
            let mut v = vec![0x04, 0x81, 200];
            v.extend([7u8; 200]);
            v
        };
        let cases: Vec<(Vec<u8>, Option<usize>)> = vec![
            (vec![0x04, 0x02, 1, 2], Some(2)),
            (vec![0x04, 0x00], Some(0)),
            (long_form, Some(200)),
            (vec![0x04, 0x03, 1, 2], None),
            (vec![0x04, 0x80], None),
            (vec![0x04, 0x85, 1, 1, 1, 1, 1], None),
            (vec![0x04], None),
            (vec![0x1f, 0x01, 0x00], None),
            (vec![], None),
        ];
        for (bytes, want) in cases {
            let got = Reader::new(&bytes).next().map(|t| t.value.len());
            assert_eq!(got, want, "{bytes:02x?}");
        }
    }

    #[test]
    fn ip_bytes_table() {
        assert_eq!(
            ip_from_bytes(&[127, 0, 0, 1]),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_from_bytes(&v6), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(cert_facts(b"").is_none());
        assert!(cert_facts(b"-----BEGIN CERTIFICATE-----").is_none());
        assert!(cert_facts(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_none());
    }
}
