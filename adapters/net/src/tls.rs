//! TLS for `wss://`, behind the `tls` feature (futures-rustls, so it runs on any runtime).

use crate::client::Io;
use crate::{Error, Result};

/// Wraps a client's TCP stream in TLS for `host`.
#[cfg(not(feature = "tls"))]
pub(crate) async fn connect_client(_host: &str, _tcp: impl Io) -> Result<Box<dyn Io>> {
    Err(Error::Invalid(
        "wss:// URLs need tidings' `tls` feature".into(),
    ))
}
