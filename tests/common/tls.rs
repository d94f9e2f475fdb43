//! TLS fixtures for the integration tests: a throwaway CA and certificates made with
//! rcgen, PostgreSQL with `ssl = on` and extra pg_hba lines, and small raw TLS clients.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use super::{Cluster, unique_path};

/// A CA and the certificates it issued, as PEM files in a temp directory.
pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key on disk.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A fresh CA called `name`.
    pub fn new(name: &str) -> Pki {
        let dir = unique_path("pki");
        fs::create_dir_all(&dir).expect("pki dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca = params.self_signed(&ca_key).expect("self-signed");
        fs::write(dir.join("ca.crt"), ca.pem()).expect("write ca");
        Pki { dir, ca, ca_key }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A certificate for `sans` (DNS names or IP addresses) with CN `cn`, valid now, or
    /// expired when `expired`. Written as `<file>.crt` and `<file>.key`.
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str], expired: bool) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("sign");
        let issued = Issued {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
        };
        fs::write(&issued.cert, cert.pem()).expect("write cert");
        fs::write(&issued.key, key.serialize_pem()).expect("write key");
        fs::set_permissions(&issued.key, fs::Permissions::from_mode(0o600)).expect("chmod");
        issued
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs `sql` on the primary as postgres over its unix socket.
pub fn primary_sql(c: &Cluster, sql: &str) -> String {
    super::psql_ok(&c.primary_url("postgres"), sql)
}

/// Turns on `ssl` on the primary with `server` (copied into its data directory, owned by
/// postgres), puts `hba_lines` at the top of pg_hba.conf, and reloads.
pub fn enable_server_ssl(c: &Cluster, server: &Issued, hba_lines: &[&str]) {
    let data = fs::canonicalize(c.dir.join("primary")).expect("data dir");
    for (from, name) in [(&server.cert, "server.crt"), (&server.key, "server.key")] {
        let to = data.join(name);
        fs::copy(from, &to).expect("copy");
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).expect("chmod");
        chown_postgres(&to);
    }
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).expect("read conf");
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    fs::write(&conf, text).expect("write conf");
    add_hba(c, hba_lines);
}

/// Puts `lines` at the top of the primary's pg_hba.conf and reloads, waiting until the
/// postmaster has read them (a reload counter in postgresql.conf shows it).
pub fn add_hba(c: &Cluster, lines: &[&str]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RELOADS: AtomicU64 = AtomicU64::new(1);
    let data = fs::canonicalize(c.dir.join("primary")).expect("data dir");
    let hba = data.join("pg_hba.conf");
    let old = fs::read_to_string(&hba).expect("read hba");
    fs::write(&hba, format!("{}\n{old}", lines.join("\n"))).expect("write hba");
    let n = RELOADS.fetch_add(1, Ordering::Relaxed).to_string();
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).expect("read conf");
    text.push_str(&format!("\npgsluice_test.reload = '{n}'\n"));
    fs::write(&conf, text).expect("write conf");
    primary_sql(c, "SELECT pg_reload_conf()");
    let ok = super::wait_until(std::time::Duration::from_secs(10), || {
        primary_sql(c, "SELECT current_setting('pgsluice_test.reload', true)") == n
    });
    assert!(ok, "PostgreSQL did not reload its configuration");
}

fn chown_postgres(path: &Path) {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let st = Command::new("chown")
            .arg("postgres:")
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success());
    }
}

/// A rustls client configuration trusting `ca` (PEM file), with ALPN `alpn` if given.
pub fn client_config(ca: &Path, alpn: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(a) = alpn {
        config.alpn_protocols = vec![a.to_vec()];
    }
    Arc::new(config)
}

/// Asks pgsluice (or PostgreSQL) at `port` for TLS with an SSLRequest and returns the
/// handshaken stream.
pub async fn ssl_request(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    assert_eq!(
        answer[0], b'S',
        "SSLRequest answered {:?}",
        answer[0] as char
    );
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The CN of the certificate pgsluice presents on `port` now.
pub async fn presented_cn(port: u16, ca: &Path) -> String {
    let tls = ssl_request(port, client_config(ca, None), "localhost")
        .await
        .expect("TLS handshake");
    let der = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A StartupMessage for `params`.
pub fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// Reads one tagged message: (tag, body).
pub async fn read_msg<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).await?;
    Ok((head[0], body))
}
