//! The adapters' one error type: what a handle, server or client call can fail with.

use std::time::Duration;

use tidings_core::{CloseCode, ConnId};

/// Why a call on a [`Handle`](crate::Handle), [`Server`](crate::Server) or
/// [`Client`](crate::Client) did not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hub refused the command (unknown connection, invalid name, a limit, ...).
    #[error(transparent)]
    Hub(#[from] tidings_core::Error),
    /// The hub task has stopped (after shutdown): nothing more can be done through it.
    #[error("the tidings hub has stopped")]
    Stopped,
    /// The connection closed before the answer came.
    #[error("connection {0} closed")]
    ConnectionClosed(ConnId),
    /// No answer within this time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The cluster could not answer a question about all its nodes (the text says why: a
    /// node that did not answer in time, the backplane down, ...).
    #[error("the cluster could not answer: {0}")]
    Cluster(String),
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (client side).
    #[error("WebSocket error: {0}")]
    WebSocket(#[from] Box<tungstenite::Error>),
    /// The server refused the upgrade with this HTTP status (client side).
    #[error("the server refused the connection: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The server answered a request with an `error` frame (client side).
    #[error("server error {code}: {message}")]
    Server {
        /// The error code (PROTOCOL.md, "Errors").
        code: String,
        /// Why.
        message: String,
    },
    /// The connection is closed (client side), with the close code if one came.
    #[error("connection closed ({code:?}: {reason})")]
    Closed {
        /// The close code, if the server sent one.
        code: Option<CloseCode>,
        /// The reason.
        reason: String,
    },
    /// A URL, header or argument was not usable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The data could not be (de)serialised.
    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<tungstenite::Error> for Error {
    fn from(e: tungstenite::Error) -> Self {
        Error::WebSocket(Box::new(e))
    }
}

/// The adapters' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
