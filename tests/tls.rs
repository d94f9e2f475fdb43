//! TLS on both sides (issue 12), with real clients and a real PostgreSQL:
//! psql (libpq 15) with sslmode=require / verify-full / channel_binding=require, pgbench,
//! psycopg 3, tokio-postgres over rustls, a Rust client doing direct TLS with ALPN,
//! certificate rotation under load, PostgreSQL with `ssl = on` and a pg_hba.conf that
//! accepts only `hostssl` for the app user, and bad input on either side.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::tls::{Issued, Pki, add_hba, client_config, enable_server_ssl, presented_cn};
use common::{Cluster, Pooler, psql, psql_ok};
use tokio::io::AsyncWriteExt;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The cluster's pooler config with a `[tls]` section.
fn tls_config(c: &Cluster, mode: &str, server: &Issued, extra: &str) -> String {
    format!(
        "{}\n[tls]\nclient_mode = \"{mode}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}\n",
        c.pooler_config("transaction", "scram-sha-256", 4),
        server.cert.display(),
        server.key.display()
    )
}

/// `postgres://app:app_pw@HOST:PORT/app?PARAMS`
fn app_url(host: &str, port: u16, params: &str) -> String {
    format!("postgres://app:app_pw@{host}:{port}/app?{params}")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn client_tls_with_libpq_pgbench_psycopg_and_rustls() {
    let c = Cluster::start(0);
    let pki = Pki::new("test-ca");
    let cert = pki.issue("pooler", "pgsluice-one", &["localhost"], false);
    let p = Pooler::start(&tls_config(&c, "require", &cert, ""));
    let ca = pki.ca_file();
    let ca = ca.display();

    // sslmode=require: encrypted; psql says so.
    let info = psql_ok(
        &app_url("localhost", p.port, "sslmode=require"),
        "\\conninfo",
    );
    assert!(info.contains("SSL connection"), "{info}");
    // A plain client is refused by tls.client_mode = "require", with the rule named.
    let out = psql(&app_url("localhost", p.port, "sslmode=disable"), "SELECT 1");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tls.client_mode"), "{}", stderr(&out));
    // verify-full: the right host name passes, a wrong one fails in libpq.
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert_eq!(
        psql_ok(&app_url("localhost", p.port, &full), "SELECT 7"),
        "7"
    );
    let out = psql(&app_url("127.0.0.1", p.port, &full), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not match host name"),
        "{}",
        stderr(&out)
    );
    // channel_binding=require: SCRAM-SHA-256-PLUS with tls-server-end-point.
    let cb = format!("sslmode=verify-full&sslrootcert={ca}&channel_binding=require");
    assert_eq!(psql_ok(&app_url("localhost", p.port, &cb), "SELECT 8"), "8");
    // A wrong password with channel binding is still refused.
    let bad = format!("postgres://app:nope@localhost:{}/app?{cb}", p.port);
    let out = psql(&bad, "SELECT 1");
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        stderr(&out)
    );

    // pgbench over TLS: no errors.
    let script = p.dir.join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").expect("script");
    let out = Command::new("pgbench")
        .args(["-n", "-c", "4", "-j", "2", "-t", "50", "-f"])
        .arg(&script)
        .arg(app_url("localhost", p.port, "sslmode=require"))
        .output()
        .expect("pgbench");
    assert!(out.status.success(), "pgbench: {}", stderr(&out));

    // psycopg 3 with sslmode=require.
    let py = "import psycopg, sys\n\
              with psycopg.connect(sys.argv[1]) as c:\n\
              \x20   print(c.execute('SELECT 40 + 2').fetchone()[0], c.pgconn.ssl_in_use)\n";
    let out = Command::new("python3")
        .args(["-c", py, &app_url("localhost", p.port, "sslmode=require")])
        .output()
        .expect("python3");
    assert!(out.status.success(), "psycopg: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42 True");

    // tokio-postgres over rustls, verifying the certificate, with channel binding.
    rt().block_on(async {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
            (*client_config(&pki.ca_file(), None)).clone(),
        );
        let conninfo = format!(
            "host=localhost port={} user=app password=app_pw dbname=app sslmode=require \
             channel_binding=require",
            p.port
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT $1::int + 1", &[&41i32])
            .await
            .expect("query");
        assert_eq!(row.get::<_, i32>(0), 42);
    });
}

/// Direct TLS (libpq 17's sslnegotiation=direct): TLS from the first byte, ALPN
/// "postgresql", then the startup packet; and SCRAM-SHA-256-PLUS on it.
#[test]
fn direct_tls_with_alpn() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use postgres_protocol::message::frontend;
    let c = Cluster::start(0);
    let pki = Pki::new("test-ca");
    let cert = pki.issue("pooler", "pgsluice-one", &["localhost"], false);
    let p = Pooler::start(&tls_config(&c, "allow", &cert, ""));
    rt().block_on(async {
        let config = client_config(&pki.ca_file(), Some(b"postgresql"));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let startup = common::tls::startup_packet(&[("user", "app"), ("database", "app")]);
        tls.write_all(&startup).await.unwrap();
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!((tag, &body[..4]), (b'R', &10u32.to_be_bytes()[..]));
        assert!(
            body.windows(18).any(|w| w == b"SCRAM-SHA-256-PLUS"),
            "PLUS is offered over TLS"
        );
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let hash = pgsluice::tls::cert::end_point_hash(der.as_ref()).expect("hash");
        let mut scram = ScramSha256::new(b"app_pw", ChannelBinding::tls_server_end_point(hash));
        let mut out = bytes::BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256-PLUS", scram.message(), &mut out).unwrap();
        tls.write_all(&out).await.unwrap();
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!(tag, b'R');
        scram.update(&body[4..]).unwrap();
        out.clear();
        frontend::sasl_response(scram.message(), &mut out).unwrap();
        tls.write_all(&out).await.unwrap();
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!(tag, b'R', "{}", String::from_utf8_lossy(&body));
        scram.finish(&body[4..]).unwrap();
        // AuthenticationOk, parameters, key data, ReadyForQuery; then a query.
        loop {
            let (tag, _) = common::tls::read_msg(&mut tls).await.unwrap();
            if tag == b'Z' {
                break;
            }
        }
        out.clear();
        frontend::query("SELECT 'direct'", &mut out).unwrap();
        tls.write_all(&out).await.unwrap();
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!(tag, b'T');
        let _ = body;
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!(tag, b'D');
        assert!(body.ends_with(b"direct"));

        // Without ALPN: a clear FATAL over the TLS connection.
        let config = client_config(&pki.ca_file(), None);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let (tag, body) = common::tls::read_msg(&mut tls).await.unwrap();
        assert_eq!(tag, b'E');
        assert!(String::from_utf8_lossy(&body).contains("ALPN"));
    });
    assert_eq!(psql_ok(&p.url("app", "app_pw", "app"), "SELECT 1"), "1");
}

/// `pgbench -c 20` over TLS while the certificate is replaced and SIGHUP sent: no client
/// errors; new connections see the new certificate. A bad file is refused on reload and
/// the running certificate kept.
#[test]
fn certificate_rotation_under_load() {
    let c = Cluster::start(0);
    let pki = Pki::new("test-ca");
    let first = pki.issue("first", "cert-one", &["localhost"], false);
    let live = Issued {
        cert: pki.dir.join("live.crt"),
        key: pki.dir.join("live.key"),
    };
    std::fs::copy(&first.cert, &live.cert).unwrap();
    std::fs::copy(&first.key, &live.key).unwrap();
    let p = Pooler::start(&tls_config(&c, "require", &live, ""));
    let ca = pki.ca_file();
    assert_eq!(rt().block_on(presented_cn(p.port, &ca)), "cert-one");
    let script = p.dir.join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").expect("script");
    let bench = Command::new("pgbench")
        .args(["-n", "-c", "20", "-j", "2", "-T", "8", "-f"])
        .arg(&script)
        .arg(app_url("localhost", p.port, "sslmode=require"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgbench");
    std::thread::sleep(Duration::from_secs(2));
    let second = pki.issue("second", "cert-two", &["localhost"], false);
    std::fs::copy(&second.cert, &live.cert).unwrap();
    std::fs::copy(&second.key, &live.key).unwrap();
    p.signal("HUP");
    assert!(p.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    assert_eq!(rt().block_on(presented_cn(p.port, &ca)), "cert-two");
    let out = bench.wait_with_output().expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench: {text}{}", stderr(&out));
    assert!(text.contains("number of failed transactions: 0"), "{text}");

    // A broken key file: the reload is refused, the running certificate stays.
    std::fs::write(&live.key, "not a key").unwrap();
    p.signal("HUP");
    assert!(p.wait_for_log("reload failed", Duration::from_secs(10)));
    assert!(p.log().contains("tls.key_file"), "the log names the key");
    assert_eq!(rt().block_on(presented_cn(p.port, &ca)), "cert-two");
    assert_eq!(
        psql_ok(&app_url("localhost", p.port, "sslmode=require"), "SELECT 1"),
        "1"
    );
}

/// Bad input on the client side: a garbage handshake, SSLRequest twice, a plaintext
/// startup after 'S', expired and wrongly signed client certificates. Each gets a clear
/// error (or a TLS alert) and the pooler keeps serving others.
#[test]
fn bad_client_tls_input() {
    use std::io::{Read, Write};
    let c = Cluster::start(0);
    let pki = Pki::new("test-ca");
    let cert = pki.issue("pooler", "pgsluice-one", &["localhost"], false);
    let extra = format!(
        "ca_file = \"{}\"\nclient_cert = \"verify-ca\"",
        pki.ca_file().display()
    );
    let p = Pooler::start(&tls_config(&c, "allow", &cert, &extra));
    let ssl_request = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let read_all = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v);
        v
    };
    // SSLRequest, 'S', then garbage that starts like a handshake: a TLS alert, closed.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.write_all(&ssl_request).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b[0], b'S');
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let reply = read_all(&mut s);
    assert!(
        reply.first() == Some(&0x15) || reply.is_empty(),
        "alert: {reply:?}"
    );
    // SSLRequest twice: a FATAL in plain text.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.write_all(&ssl_request).unwrap();
    s.read_exact(&mut b).unwrap();
    s.write_all(&ssl_request).unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(
        reply.contains("08P01") && reply.contains("TLS handshake"),
        "{reply}"
    );
    // A plaintext startup after 'S': the same.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.write_all(&ssl_request).unwrap();
    s.read_exact(&mut b).unwrap();
    s.write_all(&common::tls::startup_packet(&[("user", "app")]))
        .unwrap();
    let reply = String::from_utf8_lossy(&read_all(&mut s)).into_owned();
    assert!(reply.contains("expected a TLS handshake"), "{reply}");
    // TLS without a client certificate while verify-ca demands one: FATAL 28000.
    let out = psql(&app_url("localhost", p.port, "sslmode=require"), "SELECT 1");
    assert!(
        stderr(&out).contains("client certificate is required"),
        "{}",
        stderr(&out)
    );
    // An expired client certificate, and one from another CA: refused in the handshake.
    let expired = pki.issue("expired", "app", &[], true);
    let other = Pki::new("other-ca");
    let stranger = other.issue("stranger", "app", &[], false);
    for (what, cert) in [("expired", &expired), ("other CA", &stranger)] {
        let params = format!(
            "sslmode=require&sslcert={}&sslkey={}",
            cert.cert.display(),
            cert.key.display()
        );
        let out = psql(&app_url("localhost", p.port, &params), "SELECT 1");
        assert!(!out.status.success(), "{what}");
        let err = stderr(&out).to_lowercase();
        assert!(
            err.contains("certificate") || err.contains("alert"),
            "{what}: {err}"
        );
    }
    // A good client certificate works, and so does everyone else.
    let good = pki.issue("good", "app", &[], false);
    let params = format!(
        "sslmode=require&sslcert={}&sslkey={}",
        good.cert.display(),
        good.key.display()
    );
    assert_eq!(
        psql_ok(&app_url("localhost", p.port, &params), "SELECT 3"),
        "3"
    );
    assert_eq!(psql_ok(&p.url("app", "app_pw", "app"), "SELECT 4"), "4");
    assert!(
        p.log().contains("TLS handshake failed"),
        "handshake failures are logged"
    );
}

/// Certificate login: a verified certificate whose CN is the user logs in without a
/// password (tls.cert_login); another CN is refused unless tls.cert_map maps it.
#[test]
fn certificate_login_maps_cn_to_user() {
    let c = Cluster::start(0);
    let pki = Pki::new("test-ca");
    let cert = pki.issue("pooler", "pgsluice-one", &["localhost"], false);
    let extra = format!(
        "ca_file = \"{}\"\ncert_login = true\n[tls.cert_map]\n\"svc-reports\" = \"app\"\n",
        pki.ca_file().display()
    );
    let p = Pooler::start(&tls_config(&c, "require", &cert, &extra));
    let url = |user: &str, who: &Issued| {
        format!(
            "postgres://{user}@localhost:{}/app?sslmode=require&sslcert={}&sslkey={}",
            p.port,
            who.cert.display(),
            who.key.display()
        )
    };
    let app = pki.issue("app", "app", &[], false);
    let reports = pki.issue("reports", "svc-reports", &[], false);
    let other = pki.issue("other", "mallory", &[], false);
    assert_eq!(psql_ok(&url("app", &app), "SELECT current_user"), "app");
    assert_eq!(psql_ok(&url("app", &reports), "SELECT current_user"), "app");
    let out = psql(&url("app", &other), "SELECT 1");
    assert!(
        stderr(&out).contains("CN is \"mallory\""),
        "{}",
        stderr(&out)
    );
    let out = psql(&url("md5user", &reports), "SELECT 1");
    assert!(
        stderr(&out).contains("certificate authentication failed"),
        "{}",
        stderr(&out)
    );
}

/// Server-facing TLS against PostgreSQL with ssl = on and a pg_hba.conf that accepts only
/// hostssl for the app user: disable fails, require/verify-ca/verify-full work (the
/// server sees TLS), verify-full with a wrong name or CA fails with a clear error, and
/// an expired server certificate is refused. The pooler keeps serving other databases.
#[test]
fn server_tls_modes_against_hostssl_only() {
    let c = Cluster::start(0);
    let pki = Pki::new("server-ca");
    let server = pki.issue("pg", "pg-server", &["localhost"], false);
    enable_server_ssl(
        &c,
        &server,
        &[
            "hostssl all app 127.0.0.1/32 scram-sha-256",
            "host all app 127.0.0.1/32 reject",
        ],
    );
    let ca = pki.ca_file();
    let other = Pki::new("other-ca");
    let run = |host: &str, mode: &str, ca: &Path| {
        let cfg = c
            .pooler_config("transaction", "scram-sha-256", 2)
            .replace(
                &format!("primary = \"127.0.0.1:{}\"\nreplicas = []\n\n[databases.postgres]", c.primary_port),
                &format!(
                    "primary = \"{host}:{}\"\nreplicas = []\nserver_tls = \"{mode}\"\nserver_ca_file = \"{}\"\n\n[databases.postgres]",
                    c.primary_port,
                    ca.display()
                ),
            );
        let p = Pooler::start(&cfg);
        let out = psql(
            &p.url("app", "app_pw", "app"),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        );
        let other_db = psql_ok(&p.url("md5user", "md5_pw", "postgres"), "SELECT 1");
        assert_eq!(other_db, "1", "other databases keep working");
        (out, p.log())
    };
    for (host, mode) in [
        ("127.0.0.1", "prefer"),
        ("127.0.0.1", "require"),
        ("127.0.0.1", "verify-ca"),
        ("localhost", "verify-full"),
    ] {
        let (out, log) = run(host, mode, &ca);
        assert!(out.status.success(), "{mode}: {}\n{log}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t", "{mode}");
    }
    let (out, _) = run("127.0.0.1", "disable", &ca);
    assert!(
        stderr(&out).contains("no encryption") || stderr(&out).contains("rejects"),
        "{}",
        stderr(&out)
    );
    let (out, _) = run("127.0.0.1", "verify-full", &ca);
    assert!(
        stderr(&out).contains("TLS handshake"),
        "wrong name: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).to_lowercase().contains("not valid for name"),
        "{}",
        stderr(&out)
    );
    let (out, _) = run("localhost", "verify-full", &other.ca_file());
    assert!(
        stderr(&out).to_lowercase().contains("unknownissuer") || stderr(&out).contains("issuer"),
        "wrong CA: {}",
        stderr(&out)
    );

    // An expired server certificate is refused by verify-ca.
    let expired = pki.issue("pg-expired", "pg-server", &["localhost"], true);
    let data = std::fs::canonicalize(c.dir.join("primary")).unwrap();
    for (from, name) in [(&expired.cert, "server.crt"), (&expired.key, "server.key")] {
        std::fs::copy(from, data.join(name)).unwrap();
    }
    add_hba(&c, &["# expired certificate in place"]);
    let (out, _) = run("127.0.0.1", "verify-ca", &ca);
    assert!(
        stderr(&out).to_lowercase().contains("expired"),
        "expired: {}",
        stderr(&out)
    );
    let (out, log) = run("127.0.0.1", "require", &ca);
    assert!(
        out.status.success(),
        "require does not verify: {}\n{log}",
        stderr(&out)
    );
}

/// The node monitor connects with the database's server TLS settings: against a primary
/// that accepts only hostssl for the monitor's user, `server_tls = "disable"` shows the
/// primary down in SHOW NODES, and after a reload to "require" it is up.
#[test]
fn node_monitor_uses_server_tls() {
    let c = Cluster::start(1);
    let pki = Pki::new("server-ca");
    let server = pki.issue("pg", "pg-server", &["localhost"], false);
    enable_server_ssl(
        &c,
        &server,
        &[
            "hostssl all app 127.0.0.1/32 scram-sha-256",
            "host all app 127.0.0.1/32 reject",
        ],
    );
    let config = |mode: &str| {
        c.pooler_config("transaction", "scram-sha-256", 2)
            .replacen(
                "type = \"scram-sha-256\"\n",
                "type = \"scram-sha-256\"\nadmin_users = [\"app\"]\n",
                1,
            )
            .replacen(
                "\n\n[databases.postgres]",
                &format!("\nserver_tls = \"{mode}\"\n\n[databases.postgres]"),
                1,
            )
    };
    let p = Pooler::start(&config("disable"));
    let console = p.url("app", "app_pw", "pgsluice");
    let primary_up = || {
        psql_ok(&console, "SHOW NODES")
            .lines()
            .find(|l| l.starts_with("app|0|"))
            .map(|l| l.split('|').nth(4) == Some("t"))
            .unwrap_or(false)
    };
    let down = common::wait_until(Duration::from_secs(20), || {
        p.log().contains("node check failed") && !primary_up()
    });
    assert!(
        down,
        "plain monitor connections are refused by hostssl:\n{}",
        p.log()
    );
    p.rewrite_config(&config("require"));
    p.signal("HUP");
    assert!(
        common::wait_until(Duration::from_secs(20), primary_up),
        "the monitor reconnects over TLS:\n{}",
        p.log()
    );
}
