//! `--tls-self-signed`: a CA kept for the life of the installation and a server certificate
//! it signs, renewed under the same CA, so nodes and users that pinned the CA (by the
//! fingerprint in a join key, or by copying `ca.crt`) never notice a renewal.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};

use crate::client::Fingerprint;
use crate::der::{CertFacts, cert_facts};
use crate::reload::load_certified_key;
use crate::server::provider;
use crate::{ServerTls, TlsError, files};

const DAY: i64 = 86_400;
/// Long enough that nobody has to redistribute the CA in the life of a machine.
const CA_LIFETIME_DAYS: i64 = 3650;
/// Short enough that a leaked server key stops mattering, long enough to survive a server
/// left off for months.
const SERVER_LIFETIME_DAYS: i64 = 365;
/// Renewed this long before expiry, so a server restarted now and then never serves an
/// expired certificate.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Tolerates clients whose clocks are a little behind.
const BACKDATE_SECS: i64 = 3600;

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";

/// A name a certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    /// A host name (lower-cased; `*.` allowed as first label) or an IP address.
    fn parse(text: &str) -> Result<Self, TlsError> {
        let trimmed = text.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = trimmed.to_ascii_lowercase();
        let checked = name.strip_prefix("*.").unwrap_or(&name);
        if checked.is_empty() || checked.contains('*') || DnsName::try_from(checked).is_err() {
            return Err(TlsError::BadSubjectAltName(text.to_owned()));
        }
        Ok(Self::Dns(name))
    }

    fn to_rcgen(&self) -> Result<SanType, TlsError> {
        Ok(match self {
            Self::Ip(ip) => SanType::IpAddress(*ip),
            Self::Dns(name) => SanType::DnsName(name.as_str().try_into()?),
        })
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(name) => f.write_str(name),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The names the server certificate must carry: the machine's host name, `localhost`, the
/// loopback addresses, the machine's own addresses and the operator's extra names.
/// A host name that is not a valid DNS name (such as `my box`) is left out rather than
/// failing the start; an invalid extra name is the operator's mistake and fails.
pub(crate) fn wanted_names(
    host_name: Option<&str>,
    addresses: &[IpAddr],
    extra: &[String],
) -> Result<BTreeSet<San>, TlsError> {
    let mut names = BTreeSet::from([
        San::Dns("localhost".to_owned()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]);
    if let Some(San::Dns(host)) = host_name.and_then(|h| San::parse(h).ok()) {
        names.insert(San::Dns(host));
    }
    names.extend(addresses.iter().map(|ip| San::Ip(*ip)));
    for name in extra {
        names.insert(San::parse(name)?);
    }
    Ok(names)
}

/// Why the server certificate is issued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewReason {
    /// `server.crt` or `server.key` is missing, unreadable, or they do not match.
    Unusable,
    /// Not signed by the CA in `ca.crt`, or does not send that CA after itself.
    OtherCa,
    /// Expires within [`RENEW_BEFORE_DAYS`].
    ExpiresSoon,
    /// The host name, the machine's addresses or `--tls-san` changed.
    NamesChanged,
}

/// What [`SelfSigned::ensure`] did, for the host to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First start: a new CA and server certificate.
    CreatedCa,
    /// The existing certificate is still good.
    Reused,
    /// A new server certificate under the existing CA.
    Renewed(RenewReason),
}

/// The pure half of the renewal decision. `leaf` is `None` when the files do not hold a
/// usable certificate and key.
pub(crate) fn renewal_reason(
    leaf: Option<&CertFacts<'_>>,
    sends_ca: bool,
    ca_subject: &[u8],
    wanted: &BTreeSet<San>,
    now: i64,
) -> Option<RenewReason> {
    let Some(leaf) = leaf else {
        return Some(RenewReason::Unusable);
    };
    if !sends_ca || leaf.issuer != ca_subject {
        return Some(RenewReason::OtherCa);
    }
    if leaf.not_after - now < RENEW_BEFORE_DAYS * DAY {
        return Some(RenewReason::ExpiresSoon);
    }
    let has: BTreeSet<San> = leaf
        .dns_names
        .iter()
        .map(|name| San::Dns(name.to_ascii_lowercase()))
        .chain(leaf.ip_addresses.iter().map(|ip| San::Ip(*ip)))
        .collect();
    (has != *wanted).then_some(RenewReason::NamesChanged)
}

/// The files of a self-signed setup in a data directory, after [`SelfSigned::ensure`].
#[derive(Debug, Clone)]
pub struct SelfSigned {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    outcome: Outcome,
    names: Vec<String>,
    /// The `--tls-san` values, kept for [`SelfSigned::spawn_renewal`].
    extra_sans: Vec<String>,
}

impl SelfSigned {
    /// Makes sure `data_dir` holds a CA (`ca.crt`, `ca.key`) and a server certificate
    /// (`server.crt` = server certificate then CA, `server.key`) valid for this machine and
    /// `extra_sans` (host names or IP addresses). Keys are written mode 0600. The CA is
    /// created once and never replaced: if only one of its files exists, or it cannot be
    /// read, this fails rather than break every client that pinned it. The server
    /// certificate is issued again when it expires within 30 days, its names changed, or
    /// it is unusable. Call it at start, then [`SelfSigned::spawn_renewal`]: a
    /// [`ServerTls`] on these files serves a renewed certificate without a restart.
    pub fn ensure(data_dir: &Path, extra_sans: &[String]) -> Result<Self, TlsError> {
        let host = sysinfo::System::host_name();
        let wanted = wanted_names(host.as_deref(), &machine_addresses(), extra_sans)?;
        let mut ensured = ensure_names(data_dir, &wanted, host.as_deref(), SystemTime::now())?;
        ensured.extra_sans = extra_sans.to_vec();
        Ok(ensured)
    }

    /// Runs [`SelfSigned::ensure`] again every `every` (once a day is plenty), so that a
    /// server running for a year renews its certificate 30 days ahead, or when its
    /// addresses change; the [`ServerTls`] on these files then serves the new one. Outcomes
    /// other than "still good" are logged. Abort the handle to stop it.
    pub fn spawn_renewal(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let dir = self.dir.clone();
        let extra = self.extra_sans.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let (dir, extra) = (dir.clone(), extra.clone());
                match tokio::task::spawn_blocking(move || Self::ensure(&dir, &extra)).await {
                    Ok(Ok(ensured)) => match ensured.outcome() {
                        Outcome::Reused => {}
                        outcome => tracing::info!(
                            ?outcome,
                            cert = %ensured.cert_path().display(),
                            "self-signed TLS certificate renewed under the same CA"
                        ),
                    },
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot renew the self-signed TLS certificate")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "self-signed TLS renewal check did not finish")
                    }
                }
            }
        })
    }

    /// SHA-256 of the CA certificate's DER, 64 lower-case hex digits: what a join key
    /// carries so a node can pin this CA.
    pub fn ca_sha256(&self) -> String {
        Fingerprint::of(&self.ca_der).to_string()
    }

    pub fn ca_fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.ca_der)
    }

    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(SERVER_CERT_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(SERVER_KEY_FILE)
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The names the server certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A server configuration on `server.crt` and `server.key`, reloaded when they change.
    pub fn server_tls(&self) -> Result<ServerTls, TlsError> {
        ServerTls::from_files(self.cert_path(), self.key_path())
    }
}

/// The CA as loaded from, or just written to, the data directory.
struct Ca {
    key: KeyPair,
    der: CertificateDer<'static>,
    pem: String,
}

pub(crate) fn ensure_names(
    dir: &Path,
    wanted: &BTreeSet<San>,
    host: Option<&str>,
    now: SystemTime,
) -> Result<SelfSigned, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let now = unix_secs(now);
    let (ca, outcome) = match load_ca(dir)? {
        Some(ca) => {
            let reason = leaf_renewal_reason(dir, &ca, wanted, now);
            (ca, reason.map_or(Outcome::Reused, Outcome::Renewed))
        }
        None => (create_ca(dir, now)?, Outcome::CreatedCa),
    };
    if outcome != Outcome::Reused {
        issue_leaf(dir, &ca, wanted, host, now)?;
    }
    Ok(SelfSigned {
        dir: dir.to_owned(),
        ca_der: ca.der,
        outcome,
        names: wanted.iter().map(San::to_string).collect(),
        extra_sans: Vec::new(),
    })
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn load_ca(dir: &Path) -> Result<Option<Ca>, TlsError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    if !cert_path.exists() && !key_path.exists() {
        return Ok(None);
    }
    let cert_pem = files::read(&cert_path)?;
    let der = files::parse_certificates(&cert_path, &cert_pem)?
        .swap_remove(0)
        .into_owned();
    let key_pem = files::read(&key_path)?;
    let bad_key = |reason: &str| TlsError::BadPrivateKey {
        path: key_path.clone(),
        reason: reason.to_owned(),
    };
    let key_text = std::str::from_utf8(&key_pem).map_err(|_| bad_key("not text"))?;
    // rcgen's error text for a bad key can quote it; say only that it was refused.
    let key = KeyPair::from_pem(key_text).map_err(|_| bad_key("not a key rcgen can sign with"))?;
    let pem = String::from_utf8_lossy(&cert_pem).into_owned();
    Ok(Some(Ca { key, der, pem }))
}

/// The CA's distinguished name, derived from its key so that it can be rebuilt to sign
/// renewals without parsing `ca.crt`, and differs between installations.
fn ca_name(key: &KeyPair) -> DistinguishedName {
    let id = Fingerprint::of(key.public_key_raw()).to_string();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "herd");
    name.push(DnType::CommonName, format!("herd CA {}", &id[..12]));
    name
}

fn validity(params: &mut CertificateParams, now: i64, days: i64) -> Result<(), TlsError> {
    let at = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TlsError::ClockOutOfRange)
    };
    params.not_before = at(now - BACKDATE_SECS)?;
    params.not_after = at(now + days * DAY)?;
    Ok(())
}

fn ca_params(key: &KeyPair, now: i64) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(key);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, CA_LIFETIME_DAYS)?;
    Ok(params)
}

fn create_ca(dir: &Path, now: i64) -> Result<Ca, TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(&key, now)?.self_signed(&key)?;
    files::write_private(&dir.join(CA_KEY_FILE), key.serialize_pem().as_bytes())?;
    let pem = cert.pem();
    files::write_public(&dir.join(CA_CERT_FILE), pem.as_bytes())?;
    Ok(Ca {
        key,
        der: cert.der().clone(),
        pem,
    })
}

fn leaf_renewal_reason(
    dir: &Path,
    ca: &Ca,
    wanted: &BTreeSet<San>,
    now: i64,
) -> Option<RenewReason> {
    let Some(ca_facts) = cert_facts(&ca.der) else {
        return Some(RenewReason::OtherCa);
    };
    let loaded = load_certified_key(
        &dir.join(SERVER_CERT_FILE),
        &dir.join(SERVER_KEY_FILE),
        &provider(),
    );
    let Ok(loaded) = loaded else {
        return Some(RenewReason::Unusable);
    };
    let sends_ca = loaded.cert.get(1) == Some(&ca.der);
    let leaf = loaded.cert.first().and_then(|der| cert_facts(der));
    renewal_reason(leaf.as_ref(), sends_ca, ca_facts.subject, wanted, now)
}

fn issue_leaf(
    dir: &Path,
    ca: &Ca,
    wanted: &BTreeSet<San>,
    host: Option<&str>,
    now: i64,
) -> Result<(), TlsError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = wanted.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, host.unwrap_or("herd server"));
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, SERVER_LIFETIME_DAYS)?;

    let issuer = Issuer::new(ca_params(&ca.key, now)?, &ca.key);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = dir.join(SERVER_CERT_FILE);
    verify_issued(&cert_path, cert.der(), &ca.der, now)?;
    files::write_private(&dir.join(SERVER_KEY_FILE), key.serialize_pem().as_bytes())?;
    // The CA follows the server's certificate so that a client holding only its
    // fingerprint finds it in the handshake.
    let chain = format!("{}{}", cert.pem(), ca.pem);
    files::write_public(&cert_path, chain.as_bytes())
}

/// Checks, as a pinned client will, that the new certificate verifies against the CA on
/// disk; a CA name rebuilt differently would otherwise only show up in every client.
fn verify_issued(
    path: &Path,
    leaf: &CertificateDer<'_>,
    ca: &CertificateDer<'static>,
    now: i64,
) -> Result<(), TlsError> {
    let failed = |source| TlsError::IssuedDoesNotVerify {
        path: path.to_owned(),
        source,
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(failed)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| failed(rustls::Error::General(e.to_string())))?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    let name = ServerName::try_from("localhost")
        .map_err(|e| failed(rustls::Error::General(e.to_string())))?;
    verifier
        .verify_server_cert(leaf, std::slice::from_ref(ca), &name, &[], at)
        .map(|_| ())
        .map_err(failed)
}

/// The addresses this machine reaches other machines from, found by asking the routing
/// table (connecting a UDP socket sends nothing). Loopback and link-local ones are left
/// out; a machine without a route simply has none.
fn machine_addresses() -> Vec<IpAddr> {
    let probes: [(SocketAddr, SocketAddr); 2] = [
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        ),
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        ),
    ];
    probes
        .iter()
        .filter_map(|(bind, target)| {
            let socket = UdpSocket::bind(bind).ok()?;
            socket.connect(target).ok()?;
            Some(socket.local_addr().ok()?.ip())
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified() && !is_link_local(ip))
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> BTreeSet<San> {
        list.iter()
            .map(|n| San::parse(n).expect("valid name"))
            .collect()
    }

    fn base() -> BTreeSet<San> {
        names(&["localhost", "127.0.0.1", "::1"])
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn san_parsing_table() {
        let cases: &[(&str, Option<San>)] = &[
            ("Router.LAN", Some(San::Dns("router.lan".to_owned()))),
            (
                "*.herd.example",
                Some(San::Dns("*.herd.example".to_owned())),
            ),
            ("10.0.0.5", Some(San::Ip("10.0.0.5".parse().expect("ip")))),
            ("[fd00::1]", Some(San::Ip("fd00::1".parse().expect("ip")))),
            ("fd00::1", Some(San::Ip("fd00::1".parse().expect("ip")))),
            (" box1 ", Some(San::Dns("box1".to_owned()))),
            ("", None),
            ("*.", None),
            ("a.*.b", None),
            ("has space", None),
            ("under_score!", None),
            ("http://x", None),
        ];
        for (text, want) in cases {
            assert_eq!(San::parse(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn wanted_names_table() {
        let ip: IpAddr = "192.168.1.20".parse().expect("ip");
        // (host name, machine addresses, extra names, wanted or None for an error)
        type Case<'a> = (
            Option<&'a str>,
            Vec<IpAddr>,
            Vec<String>,
            Option<BTreeSet<San>>,
        );
        let cases: Vec<Case<'_>> = vec![
            (None, vec![], vec![], Some(base())),
            (
                Some("GPU-Box"),
                vec![ip],
                vec!["router.lan".into(), "127.0.0.1".into()],
                Some(names(&[
                    "localhost",
                    "127.0.0.1",
                    "::1",
                    "gpu-box",
                    "192.168.1.20",
                    "router.lan",
                ])),
            ),
            (Some("bad host"), vec![], vec![], Some(base())),
            (None, vec![], vec!["bad name".into()], None),
        ];
        for (host, addrs, extra, want) in cases {
            assert_eq!(
                wanted_names(host, &addrs, &extra).ok(),
                want,
                "{host:?} {extra:?}"
            );
        }
    }

    #[test]
    fn renewal_reason_table() {
        let ca_subject: &[u8] = b"ca-name";
        let facts = |issuer: &'static [u8], days_left: i64, dns: &[&str], ips: &[&str]| CertFacts {
            not_after: NOW + days_left * DAY,
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            issuer,
            subject: b"leaf",
        };
        let good = facts(b"ca-name", 200, &["localhost"], &["127.0.0.1", "::1"]);
        let cases: Vec<(Option<CertFacts<'_>>, bool, Option<RenewReason>)> = vec![
            (Some(good.clone()), true, None),
            (None, true, Some(RenewReason::Unusable)),
            (Some(good.clone()), false, Some(RenewReason::OtherCa)),
            (
                Some(facts(b"other", 200, &["localhost"], &["127.0.0.1", "::1"])),
                true,
                Some(RenewReason::OtherCa),
            ),
            (
                Some(facts(b"ca-name", 31, &["localhost"], &["127.0.0.1", "::1"])),
                true,
                None,
            ),
            (
                Some(facts(b"ca-name", 29, &["localhost"], &["127.0.0.1", "::1"])),
                true,
                Some(RenewReason::ExpiresSoon),
            ),
            (
                Some(facts(b"ca-name", -5, &["localhost"], &["127.0.0.1", "::1"])),
                true,
                Some(RenewReason::ExpiresSoon),
            ),
            (
                Some(facts(
                    b"ca-name",
                    200,
                    &["LOCALHOST"],
                    &["127.0.0.1", "::1"],
                )),
                true,
                None,
            ),
            (
                Some(facts(
                    b"ca-name",
                    200,
                    &["localhost", "old"],
                    &["127.0.0.1", "::1"],
                )),
                true,
                Some(RenewReason::NamesChanged),
            ),
            (
                Some(facts(b"ca-name", 200, &["localhost"], &["127.0.0.1"])),
                true,
                Some(RenewReason::NamesChanged),
            ),
        ];
        for (i, (leaf, sends_ca, want)) in cases.into_iter().enumerate() {
            let got = renewal_reason(leaf.as_ref(), sends_ca, ca_subject, &base(), NOW);
            assert_eq!(got, want, "case {i}");
        }
    }

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).expect("positive"))
    }

    fn read(dir: &Path, file: &str) -> Vec<u8> {
        std::fs::read(dir.join(file)).expect("read")
    }

    #[test]
    fn first_start_creates_then_reuses_then_renews_under_the_same_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tls");
        let now = unix_secs(SystemTime::now());
        let wanted = base();

        let first = ensure_names(&dir, &wanted, Some("box"), at(now)).expect("create");
        assert_eq!(first.outcome(), Outcome::CreatedCa);
        let ca = read(&dir, CA_CERT_FILE);
        let leaf = read(&dir, SERVER_CERT_FILE);
        let chain = files::parse_certificates(&dir.join(SERVER_CERT_FILE), &leaf).expect("chain");
        assert_eq!(chain.len(), 2);
        assert_eq!(sha256_of_pem_ca(&dir), first.ca_sha256());
        let facts = cert_facts(&chain[0]).expect("facts");
        assert_eq!(facts.dns_names, vec!["localhost".to_owned()]);
        assert_eq!(facts.ip_addresses.len(), 2);
        let lifetime = facts.not_after - now;
        assert!(
            (SERVER_LIFETIME_DAYS * DAY - 60..=SERVER_LIFETIME_DAYS * DAY + 60).contains(&lifetime)
        );
        let ca_facts = cert_facts(&chain[1]).expect("ca facts");
        assert_eq!(facts.issuer, ca_facts.subject);
        assert!(ca_facts.not_after - now >= (CA_LIFETIME_DAYS - 1) * DAY);

        let again = ensure_names(&dir, &wanted, Some("box"), at(now + DAY)).expect("reuse");
        assert_eq!(again.outcome(), Outcome::Reused);
        assert_eq!(read(&dir, SERVER_CERT_FILE), leaf);

        let later = now + (SERVER_LIFETIME_DAYS - RENEW_BEFORE_DAYS + 1) * DAY;
        let renewed = ensure_names(&dir, &wanted, Some("box"), at(later)).expect("renew");
        assert_eq!(
            renewed.outcome(),
            Outcome::Renewed(RenewReason::ExpiresSoon)
        );
        assert_eq!(read(&dir, CA_CERT_FILE), ca);
        assert_eq!(renewed.ca_sha256(), first.ca_sha256());
        assert_ne!(read(&dir, SERVER_CERT_FILE), leaf);
        let new_chain =
            files::parse_certificates(&dir.join(SERVER_CERT_FILE), &read(&dir, SERVER_CERT_FILE))
                .expect("chain");
        let new_facts = cert_facts(&new_chain[0]).expect("facts");
        assert!(new_facts.not_after - later >= (SERVER_LIFETIME_DAYS - 1) * DAY);
        verify_issued(
            &dir.join(SERVER_CERT_FILE),
            &new_chain[0],
            &new_chain[1].clone().into_owned(),
            later,
        )
        .expect("verifies");

        let more = names(&["localhost", "127.0.0.1", "::1", "router.lan"]);
        let changed = ensure_names(&dir, &more, Some("box"), at(later)).expect("names");
        assert_eq!(
            changed.outcome(),
            Outcome::Renewed(RenewReason::NamesChanged)
        );
        assert_eq!(read(&dir, CA_CERT_FILE), ca);

        std::fs::remove_file(dir.join(SERVER_KEY_FILE)).expect("rm");
        let unusable = ensure_names(&dir, &more, Some("box"), at(later)).expect("reissue");
        assert_eq!(unusable.outcome(), Outcome::Renewed(RenewReason::Unusable));
    }

    fn sha256_of_pem_ca(dir: &Path) -> String {
        let path = dir.join(CA_CERT_FILE);
        let certs = files::parse_certificates(&path, &read(dir, CA_CERT_FILE)).expect("ca");
        Fingerprint::of(&certs[0]).to_string()
    }

    #[test]
    fn a_half_present_or_broken_ca_is_an_error_not_a_new_ca() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        ensure_names(dir, &base(), None, SystemTime::now()).expect("create");
        let key = read(dir, CA_KEY_FILE);
        std::fs::remove_file(dir.join(CA_KEY_FILE)).expect("rm");
        let err = ensure_names(dir, &base(), None, SystemTime::now()).expect_err("no key");
        assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
        std::fs::write(dir.join(CA_KEY_FILE), b"garbage").expect("write");
        let err = ensure_names(dir, &base(), None, SystemTime::now()).expect_err("bad key");
        assert!(err.to_string().contains(CA_KEY_FILE), "{err}");
        assert!(!err.to_string().contains("garbage"), "{err}");
        let other = tempfile::tempdir().expect("tempdir");
        ensure_names(other.path(), &base(), None, SystemTime::now()).expect("other");
        std::fs::copy(other.path().join(CA_KEY_FILE), dir.join(CA_KEY_FILE)).expect("copy");
        std::fs::remove_file(dir.join(SERVER_CERT_FILE)).expect("rm");
        let err = ensure_names(dir, &base(), None, SystemTime::now()).expect_err("other key");
        assert!(
            err.to_string().contains("does not verify against the CA"),
            "{err}"
        );
        std::fs::write(dir.join(CA_KEY_FILE), key).expect("restore");
        std::fs::write(dir.join(CA_CERT_FILE), b"not pem").expect("write");
        let err = ensure_names(dir, &base(), None, SystemTime::now()).expect_err("bad cert");
        assert!(err.to_string().contains(CA_CERT_FILE), "{err}");
    }

    #[test]
    fn a_server_certificate_from_another_ca_is_replaced() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        ensure_names(&a, &base(), None, SystemTime::now()).expect("a");
        ensure_names(&b, &base(), None, SystemTime::now()).expect("b");
        for file in [SERVER_CERT_FILE, SERVER_KEY_FILE] {
            std::fs::copy(b.join(file), a.join(file)).expect("copy");
        }
        let again = ensure_names(&a, &base(), None, SystemTime::now()).expect("again");
        assert_eq!(again.outcome(), Outcome::Renewed(RenewReason::OtherCa));
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        ensure_names(tmp.path(), &base(), None, SystemTime::now()).expect("create");
        for file in [CA_KEY_FILE, SERVER_KEY_FILE] {
            let mode = std::fs::metadata(tmp.path().join(file))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
