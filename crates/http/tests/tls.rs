//! A client from `confer_http` speaks TLS (on ring) to a real rustls server: it
//! fetches over HTTPS from a server whose certificate it trusts, and refuses one it
//! does not.

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost`, and its key.
fn certificate() -> anyhow::Result<rcgen::CertifiedKey<rcgen::KeyPair>> {
    Ok(rcgen::generate_simple_self_signed(vec![
        "localhost".to_owned(),
    ])?)
}

/// An HTTPS server on a free port answering every request with `200 ok`; its port.
async fn https_server(key: &rcgen::CertifiedKey<rcgen::KeyPair>) -> anyhow::Result<u16> {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![key.cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der())
            .map_err(anyhow::Error::msg)?,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake ends here; the client reports it.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = vec![0u8; 4096];
                let mut read = 0;
                while !request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut request[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn a_trusted_server_answers_over_https() -> anyhow::Result<()> {
    let key = certificate()?;
    let port = https_server(&key).await?;
    let client = confer_http::builder()
        .add_root_certificate(reqwest::Certificate::from_der(key.cert.der())?)
        .build()?;
    let response = client
        .get(format!("https://localhost:{port}/"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "ok");
    Ok(())
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_trusted_is_refused() -> anyhow::Result<()> {
    let key = certificate()?;
    let port = https_server(&key).await?;
    let refused = confer_http::client()?
        .get(format!("https://localhost:{port}/"))
        .send()
        .await;
    let err = refused.expect_err("a self-signed certificate nobody trusts");
    assert!(err.is_connect(), "{err:?}");
    let chain = format!("{err:?}").to_lowercase();
    assert!(
        chain.contains("certificate"),
        "refused for its certificate: {chain}"
    );
    Ok(())
}
