//! Addresses: every "machine" of a test gets a loopback address of its own
//! (127.0.0.2, 127.0.0.3, …), so nodes are told apart by IP as on a LAN and
//! each Ollama listens on Ollama's own port, 11434.
//!
//! Linux routes all of 127.0.0.0/8 to the loopback interface, so these bind
//! without any setup. Each test process takes its addresses from its own
//! block, 127.0.B.2 upwards with B = its pid mod 250, so two suites running
//! at once (a soak beside a test run) do not take each other's addresses. Where they do not (another OS), everything falls back to
//! 127.0.0.1 with distinct ports ([`distinct_ips`] says which case holds).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Ollama's default port, used on every distinct address.
pub const OLLAMA_PORT: u16 = 11434;

/// Whether 127.0.0.x addresses other than 127.0.0.1 can be bound here.
pub fn distinct_ips() -> bool {
    static CHECK: OnceLock<bool> = OnceLock::new();
    *CHECK.get_or_init(|| {
        let ok = TcpListener::bind("127.0.0.2:0").is_ok() && TcpListener::bind("127.0.0.3:0").is_ok();
        if !ok {
            eprintln!("e2e: 127.0.0.2 is not bindable here; every process uses 127.0.0.1 with its own port");
        }
        ok
    })
}

/// A "machine": an address for a server or a node, and the address its
/// Ollama listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub ip: IpAddr,
    /// Where this machine's Ollama listens: `ip:11434`, or a free port of
    /// 127.0.0.1 in the fallback.
    pub ollama: SocketAddr,
}

impl Host {
    /// `http://ip:port` of this machine's Ollama.
    pub fn ollama_url(&self) -> String {
        format!("http://{}", self.ollama)
    }

    /// A free port on this machine's address (taken and released: good
    /// enough for test processes that bind it moments later).
    pub fn free_addr(&self) -> SocketAddr {
        free_port_on(self.ip)
    }
}

fn free_port_on(ip: IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
}

/// The next unused machine. Addresses are handed out once per test process
/// (from 127.0.B.2 up, then 127.0.B+1.x …) and skipped when their Ollama
/// port is taken.
pub fn next_host() -> Host {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new((std::process::id() % 250) * 250 + 2));
    if !distinct_ips() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        return Host {
            ip,
            ollama: free_port_on(ip),
        };
    }
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed) % (250 * 250);
        let (b, c) = (n / 250, n % 250);
        if c < 2 {
            continue;
        }
        let ip = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            u8::try_from(b).unwrap_or(0),
            u8::try_from(c).unwrap_or(2),
        ));
        let ollama = SocketAddr::new(ip, OLLAMA_PORT);
        if TcpListener::bind(ollama).is_ok() {
            return Host { ip, ollama };
        }
    }
}
