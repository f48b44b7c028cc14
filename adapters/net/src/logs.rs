//! What tidings logs, through `tracing`, and at which level: one place, so that README.md's
//! "Logs" table and the code cannot drift apart.
//!
//! Each connection has a span, `conn{id, remote, path}`, opened with it and closed when the
//! hub forgets it; its opening and closing are logged in it and the router's handlers for
//! its events run inside it, so a subscriber that prints spans shows one connection's whole
//! life (the application's own lines included) under one prefix.
//! Nothing is logged per message at `info` or above: the events here happen once per
//! connection, per refused upgrade, or per backplane outage.

use std::net::SocketAddr;

use tidings_core::{CloseCode, ConnId, ConnectionInfo, Initiator};
use tracing::Span;

/// A disabled span, for connections whose span no subscriber wants.
static NO_SPAN: Span = Span::none();

/// The span of a connection: its id, the peer's address and the path it was opened on.
/// Kept in the connection's hub slot, boxed, and nothing at all while no subscriber wants it:
/// an idle connection's memory is counted in bytes (a `Span` is 40).
pub(crate) struct ConnSpan(Option<Box<Span>>);

impl ConnSpan {
    pub fn new(conn: ConnId, info: Option<&ConnectionInfo>) -> ConnSpan {
        let span = match info {
            Some(info) => tracing::info_span!(
                "conn",
                id = %conn,
                remote = info.remote.map(tracing::field::display),
                path = %info.path,
            ),
            None => tracing::info_span!("conn", id = %conn),
        };
        ConnSpan((!span.is_disabled()).then(|| Box::new(span)))
    }

    /// The span (a disabled one if no subscriber wanted it).
    pub fn get(&self) -> &Span {
        self.0.as_deref().unwrap_or(&NO_SPAN)
    }
}

/// A connection was opened in the hub (`info`; with its name, if it has one).
pub(crate) fn opened(span: &Span, name: Option<&str>) {
    tracing::info!(parent: span, name, "connection opened");
}

/// A connection is gone. A slow consumer cut (4000, by the server) is a warning: it is what
/// an operator tunes queue bounds for; every other close is `info`.
pub(crate) fn closed(span: &Span, code: CloseCode, reason: &str, initiator: Initiator) {
    let by = match initiator {
        Initiator::Server => "server",
        Initiator::Peer => "peer",
        Initiator::Transport => "transport",
    };
    if code == CloseCode::SLOW_CONSUMER && initiator == Initiator::Server {
        tracing::warn!(parent: span, code = code.0, reason, by, "slow consumer cut");
    } else {
        tracing::info!(parent: span, code = code.0, reason, by, "connection closed");
    }
}

/// An upgrade request was refused (`info`: refusals are the server doing its job; a flood of
/// them shows in `tidings_upgrades_refused_total`).
pub(crate) fn refused(remote: SocketAddr, path: &str, status: u16, by: &str, reason: &str) {
    tracing::info!(%remote, path, status, by, reason, "upgrade refused");
}

/// The backplane's transport went down (`warn`) or came back (`info`).
pub(crate) fn backplane(up: bool) {
    if up {
        tracing::info!("backplane up");
    } else {
        tracing::warn!("backplane down: publishes wait in the backlog until it is back");
    }
}

/// Messages for the other nodes were lost (the transport failed before they went out).
pub(crate) fn backplane_lost(messages: u64) {
    tracing::warn!(messages, "backplane lost messages");
}
