//! A fault-injecting TCP forwarder: put it between the router and one
//! Ollama (the nodelet advertises the forwarder's address) and the router
//! sees that node through a network that can break while the nodelet still
//! reaches its Ollama directly.
//!
//! | mode        | new connections                 | open connections                    |
//! |-------------|---------------------------------|-------------------------------------|
//! | `Pass`      | forwarded                       | forwarded                           |
//! | `Delay(d)`  | forwarded, each chunk d later   | each chunk d later                  |
//! | `Blackhole` | accepted, never answered        | stall: nothing more passes          |
//! | `Refuse`    | refused (the port is closed)    | reset                               |
//! | `Reset`     | accepted, then reset            | reset                               |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the forwarder does (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Blackhole,
    Refuse,
    Reset,
}

impl Mode {
    fn kills(self) -> bool {
        matches!(self, Mode::Refuse | Mode::Reset)
    }
}

/// A running forwarder; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(listen).await.expect("bind fault proxy");
        let addr = listener.local_addr().expect("addr");
        let (mode, rx) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, addr, upstream, rx, accepted.clone()));
        FaultProxy {
            addr,
            mode,
            accepted,
            task,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicU64>,
) {
    let mut listener = Some(listener);
    loop {
        match listener.as_ref() {
            Some(l) => {
                tokio::select! {
                    conn = l.accept() => {
                        if let Ok((client, _)) = conn {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(connection(client, upstream, mode.clone()));
                        }
                    }
                    changed = mode.changed() => {
                        if changed.is_err() { return; }
                        if *mode.borrow() == Mode::Refuse {
                            // Closing the listener makes connects fail with ECONNREFUSED.
                            listener = None;
                        }
                    }
                }
            }
            None => {
                if mode.changed().await.is_err() {
                    return;
                }
                if *mode.borrow() != Mode::Refuse {
                    listener = TcpListener::bind(addr).await.ok();
                }
            }
        }
    }
}

/// Resets the connection: RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Drops a write half without the FIN its drop would send; with zero linger
/// the socket is reset when its read half goes too.
fn abort(to: OwnedWriteHalf) {
    reset(to.as_ref());
    to.forget();
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let _ = client.set_nodelay(true);
    // Black hole: hold the connection, answer nothing, until the mode changes.
    while *mode.borrow() == Mode::Blackhole {
        if mode.changed().await.is_err() {
            return;
        }
    }
    if mode.borrow().kills() {
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(pump(cr, sw, mode.clone()), pump(sr, cw, mode));
}

/// Copies `from` to `to` chunk by chunk, honouring the mode for each chunk.
/// On a kill both pumps of a connection return having set zero linger on
/// their write side, so both sockets close with a reset.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            () = wait_kill(&mut mode) => {
                abort(to);
                return;
            }
        };
        loop {
            let m = *mode.borrow();
            match m {
                Mode::Pass => break,
                Mode::Delay(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                Mode::Refuse | Mode::Reset => {
                    abort(to);
                    return;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn wait_kill(mode: &mut watch::Receiver<Mode>) {
    loop {
        if mode.borrow().kills() {
            return;
        }
        if mode.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
