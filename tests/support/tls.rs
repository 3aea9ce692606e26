//! TLS for tests: self-signed certificates made with rcgen, and a blocking rustls client
//! that trusts the ones it is given.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate for `localhost` and 127.0.0.1, and its key: (cert PEM, key PEM).
pub fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("a key pair");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate parameters");
    let cert = params.self_signed(&key).expect("a self-signed certificate");
    (cert.pem(), key.serialize_pem())
}

/// Writes a certificate and its key as `cert.pem` and `key.pem` in `dir`, each replaced in
/// one rename (as cert-manager does).
pub fn install(dir: &Path, (cert, key): &(String, String)) {
    for (name, text) in [("cert.pem", cert), ("key.pem", key)] {
        let tmp = dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, text).expect("writing a certificate file");
        std::fs::rename(&tmp, dir.join(name)).expect("renaming a certificate file");
    }
}

/// The DER of a PEM certificate.
pub fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// A client that trusts these certificates (PEM) only.
pub fn client_config(trusted: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in trusted {
        roots
            .add(CertificateDer::from(der(pem)))
            .expect("a trusted certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` (as 127.0.0.1), handshake done; reads time out after
/// `timeout`.
pub fn connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    connect_over(tcp, config, timeout)
}

/// A TLS client over a connected socket, handshake done.
pub fn connect_over(
    tcp: TcpStream,
    config: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> std::io::Result<TlsStream> {
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP server name");
    let conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The certificate the server showed on `stream` (DER).
pub fn peer_certificate(stream: &TlsStream) -> Vec<u8> {
    stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// One request on `stream` with `Connection: close`; (status, head, body).
pub fn request<S: Read + Write>(stream: &mut S, head: &str) -> (u16, String, String) {
    stream
        .write_all(head.as_bytes())
        .expect("writing a request");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify: the answer is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading an answer: {e}"),
        }
    }
    split_answer(&String::from_utf8_lossy(&answer))
}

/// An HTTP answer as (status, head, body); status 0 when it is none.
pub fn split_answer(text: &str) -> (u16, String, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
