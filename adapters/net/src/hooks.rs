//! What the application's hooks are given and give back: the connect hook's request and its
//! answers (admit with an identity, or refuse with a status), the plain-HTTP handler's
//! response type, and the subprotocol tidings speaks. Used by the builder that takes the
//! hooks and by the HTTP front and the upgrade that call them.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use tidings_core::ConnectionInfo;

use crate::Handle;

/// A response with the whole body in memory, as the HTTP handler returns it.
pub type HttpResponse = Response<Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type HttpHandler<R> =
    Arc<dyn Fn(Handle<R>, Request<Incoming>) -> BoxFuture<HttpResponse> + Send + Sync>;
pub(crate) type ConnectHook =
    Arc<dyn Fn(ConnectRequest) -> BoxFuture<Result<Accept, Refusal>> + Send + Sync>;

/// The subprotocol of PROTOCOL.md version 1.
pub const SUBPROTOCOL_V1: &str = "tidings.v1";

/// What the connect hook sees of an upgrade request.
#[derive(Clone, Debug)]
pub struct ConnectRequest {
    /// The path, e.g. `/ws/notifications`.
    pub path: String,
    /// The raw query string, e.g. `user_id=42`.
    pub query: String,
    /// The request headers.
    pub headers: HeaderMap,
    /// The peer's address.
    pub remote: SocketAddr,
}

impl ConnectRequest {
    /// The first query parameter called `key`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        ConnectionInfo::new("")
            .query(self.query.clone())
            .query_param(key)
            .map(|v| v.into_owned())
    }

    /// The header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The connect hook's yes: how to open the connection.
#[derive(Clone, Debug, Default)]
pub struct Accept {
    pub(crate) name: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) meta: Vec<(String, Value)>,
    pub(crate) authenticated: bool,
}

impl Accept {
    /// Open it with defaults (no name, namespace `/`, no metadata).
    pub fn new() -> Self {
        Self::default()
    }

    /// A unique name to find the connection by (e.g. a user id).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The namespace to open it in.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Counts the connection as authenticated from the start (its credentials came with the
    /// upgrade), so `Config::auth_timeout` does not close it.
    #[must_use]
    pub fn authenticated(mut self) -> Self {
        self.authenticated = true;
        self
    }

    /// Attaches metadata (identity, roles) that handlers read with `Ctx::meta`.
    #[must_use]
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta.push((key.into(), value.into()));
        self
    }
}

/// The connect hook's no: the HTTP status and body the client gets instead of an upgrade.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) body: String,
}

impl Refusal {
    /// Any status (4xx or 5xx) with a body.
    pub fn new(status: StatusCode, body: impl Into<String>) -> Self {
        Refusal {
            status,
            body: body.into(),
        }
    }

    /// 401 Unauthorized: who are you?
    pub fn unauthorized(body: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, body)
    }

    /// 403 Forbidden: you may not.
    pub fn forbidden(body: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, body)
    }
}
