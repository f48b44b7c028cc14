//! TLS for `wss://`, behind the `tls` feature: futures-rustls (with ring), so it runs on
//! any runtime. The server takes a rustls `ServerConfig` (`Builder::tls`), the client a
//! `ClientConfig` (`ClientBuilder::tls`) or Mozilla's roots by default. The helpers here
//! build both from PEM.

use crate::{Error, Io, Result};

#[cfg(feature = "tls")]
pub use enabled::*;

#[cfg(feature = "tls")]
mod enabled {
    use std::sync::Arc;

    use futures_rustls::pki_types::pem::PemObject;
    use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn invalid(e: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("TLS: {e}"))
    }

    /// A server config from a PEM certificate chain (leaf first) and a PEM private key.
    pub fn server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(invalid)?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(invalid)?;
        Ok(Arc::new(config))
    }

    /// A client config trusting the PEM certificates in `roots_pem`, or Mozilla's roots
    /// (webpki-roots) if `None`.
    pub fn client_config(roots_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>> {
        let mut roots = RootCertStore::empty();
        match roots_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    roots.add(cert.map_err(invalid)?).map_err(invalid)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Wraps a client's TCP stream in TLS for `host`.
    pub(crate) async fn connect_client(
        config: &Option<Arc<ClientConfig>>,
        host: &str,
        tcp: impl Io,
    ) -> Result<Box<dyn Io>> {
        let config = match config {
            Some(c) => c.clone(),
            None => client_config(None)?,
        };
        let name = ServerName::try_from(host.to_owned()).map_err(invalid)?;
        let stream = futures_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(stream))
    }
}

/// The client's TLS settings (none without the `tls` feature).
#[cfg(feature = "tls")]
pub(crate) type ClientTls = Option<std::sync::Arc<futures_rustls::rustls::ClientConfig>>;
/// The client's TLS settings (none without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub(crate) type ClientTls = Option<std::convert::Infallible>;

/// Without the `tls` feature, `wss://` is an error that says how to get it.
#[cfg(not(feature = "tls"))]
pub(crate) async fn connect_client(
    _: &ClientTls,
    _host: &str,
    _tcp: impl Io,
) -> Result<Box<dyn Io>> {
    Err(Error::Invalid(
        "wss:// URLs need the `tls` feature of tidings".into(),
    ))
}
