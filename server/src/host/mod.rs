//! The HTTP host: the accept path and the connections for any router, on
//! the caller's runtime or on a thread per core, with an idle closer and a
//! shortcut tried before the router. The place for what belongs to the
//! connection rather than to a route (a TLS acceptor, per-connection
//! limits).

mod idle;
mod limit;
mod serve;

pub use herd_proxy::Shortcut;
pub use limit::{ConnectionLimit, ConnectionPermit, insert_metrics, metrics_with_connections};
pub use serve::{App, Workers, serve, serve_with};
