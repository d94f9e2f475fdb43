//! Unit tests of SCRAM verifiers and the server side, against the `postgres-protocol` client.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// Produced by PostgreSQL 15 for password 'pw'
/// (`SET password_encryption='scram-sha-256'; CREATE ROLE x PASSWORD 'pw'`).
const PG15_VERIFIER: &str = "SCRAM-SHA-256$4096:6UA8M9ModJ3Sbbtj9ZmAuw==$37XHUAVfj4wjBXg8i3+SeJGC/iZ4Sp+u+WSA0bNDnCI=:pUUJThKDB4PnLuyNEzClf2uRQmMGnE89AswkbqQshf0=";

/// Runs a full exchange with the real client; Ok(()) iff both sides accept.
fn exchange(verifier: ScramVerifier, password: &str, cb: ChannelBinding) -> Result<(), String> {
    let mut server = ScramServer::new(verifier);
    let mut client = ScramSha256::new(password.as_bytes(), cb);
    let first = server
        .client_first("SCRAM-SHA-256", client.message())
        .map_err(|e| e.to_string())?;
    client.update(&first).map_err(|e| e.to_string())?;
    let last = server
        .client_final(client.message())
        .map_err(|e| e.to_string())?;
    client.finish(&last).map_err(|e| e.to_string())
}

/// A server that has answered "n,,n=,r=abc".
fn started_server() -> ScramServer {
    let mut server = ScramServer::new(ScramVerifier::from_password("pw", b"salt", 1));
    server
        .client_first("SCRAM-SHA-256", b"n,,n=,r=abc")
        .expect("first");
    server
}

fn exchange_of(server: &ScramServer) -> &Exchange {
    let State::FirstSent(ref ex) = server.state else {
        panic!("not started")
    };
    ex
}

#[test]
fn exchange_with_password_derived_verifier() {
    let v = ScramVerifier::from_password("correct horse", b"0123456789abcdef", 4096);
    exchange(v.clone(), "correct horse", ChannelBinding::unsupported()).expect("n flag");
    exchange(v, "correct horse", ChannelBinding::unrequested()).expect("y flag");
    let v = super::super::Secret::Plain("pw".into())
        .scram_verifier()
        .expect("verifier");
    exchange(v, "pw", ChannelBinding::unsupported()).expect("random salt");
}

#[test]
fn exchange_with_parsed_verifier() {
    let s = ScramVerifier::from_password("s3cret", b"fixed-salt-bytes", 4096).to_string();
    assert!(s.starts_with("SCRAM-SHA-256$4096:"));
    let v = ScramVerifier::parse(&s).expect("parse");
    assert_eq!(v.to_string(), s);
    exchange(v, "s3cret", ChannelBinding::unsupported()).expect("exchange");
}

#[test]
fn exchange_with_real_client_generated_verifier() {
    let s = postgres_protocol::password::scram_sha_256(b"s3cret");
    let v = ScramVerifier::parse(&s).expect("parse");
    exchange(v.clone(), "s3cret", ChannelBinding::unsupported()).expect("exchange");
    let ours = ScramVerifier::from_password("s3cret", &v.salt, v.iterations);
    assert_eq!(ours.to_string(), s);
}

#[test]
fn exchange_with_postgres15_verifier() {
    let v = ScramVerifier::parse(PG15_VERIFIER).expect("parse");
    assert_eq!(v.to_string(), PG15_VERIFIER);
    exchange(v.clone(), "pw", ChannelBinding::unsupported()).expect("exchange");
    assert!(exchange(v, "pW", ChannelBinding::unsupported()).is_err());
}

#[test]
fn channel_binding_over_tls() {
    let v = ScramVerifier::from_password("pw", b"salt", 4096);
    let hash: std::sync::Arc<[u8]> = std::sync::Arc::from(vec![9u8; 32]);
    let server = || ScramServer::new(v.clone()).with_channel_binding(Some(hash.clone()));
    assert_eq!(
        server().mechanisms(),
        &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    );
    // PLUS with the right certificate hash, as libpq's channel_binding=require does.
    let mut s = server();
    let mut client = ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![9u8; 32]));
    let first = s.client_first(MECHANISM_PLUS, client.message()).unwrap();
    client.update(&first).unwrap();
    let last = s.client_final(client.message()).unwrap();
    client.finish(&last).unwrap();
    assert!(s.client_key().is_some());
    // A client bound to another certificate (a man in the middle) is refused.
    let mut s = server();
    let mut client = ScramSha256::new(b"pw", ChannelBinding::tls_server_end_point(vec![1u8; 32]));
    let first = s.client_first(MECHANISM_PLUS, client.message()).unwrap();
    client.update(&first).unwrap();
    assert!(matches!(
        s.client_final(client.message()),
        Err(AuthError::ChannelBinding(_))
    ));
    // "y" while we offer binding: a downgrade, refused. "n" is fine.
    let y = ScramSha256::new(b"pw", ChannelBinding::unrequested());
    assert!(server().client_first(MECHANISM, y.message()).is_err());
    let n = ScramSha256::new(b"pw", ChannelBinding::unsupported());
    assert!(server().client_first(MECHANISM, n.message()).is_ok());
    // PLUS without TLS is not offered, and refused.
    let mut plain = ScramServer::new(v.clone());
    assert!(
        plain
            .client_first(MECHANISM_PLUS, b"p=tls-server-end-point,,n=,r=a")
            .is_err()
    );
}

#[test]
fn wrong_password_rejected() {
    let v = ScramVerifier::from_password("right", b"salt", 4096);
    let mut server = ScramServer::new(v);
    let mut client = ScramSha256::new(b"wrong", ChannelBinding::unsupported());
    let first = server
        .client_first("SCRAM-SHA-256", client.message())
        .expect("first");
    client.update(&first).expect("update");
    assert!(matches!(
        server.client_final(client.message()),
        Err(AuthError::BadProof)
    ));
    assert!(matches!(
        server.client_final(client.message()),
        Err(AuthError::OutOfOrder)
    ));
}

#[test]
fn server_first_shape() {
    let server = started_server();
    let ex = exchange_of(&server);
    assert!(ex.nonce.starts_with("abc"));
    assert_eq!(ex.nonce.len(), 3 + 24);
    assert_eq!(ex.server_first, format!("r={},s=c2FsdA==,i=1", ex.nonce));
    assert_eq!(ex.client_first_bare, "n=,r=abc");
    assert_eq!(ScramServer::MECHANISMS, &["SCRAM-SHA-256"]);
}

#[test]
fn client_first_rejects_bad_input() {
    let bad: &[(&str, &[u8])] = &[
        ("SCRAM-SHA-256-PLUS", b"n,,n=,r=abc"),
        ("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=abc"),
        ("SCRAM-SHA-256", b"x,,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,a=bob,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,,m=ext,n=,r=abc"),
        ("SCRAM-SHA-256", b"n,,n=,r="),
        ("SCRAM-SHA-256", b"n,,n=,r=a b"),
        ("SCRAM-SHA-256", b"n,,n="),
        ("SCRAM-SHA-256", b"n,,r=abc"),
        ("SCRAM-SHA-256", b"n,,"),
        ("SCRAM-SHA-256", b"n,"),
        ("SCRAM-SHA-256", b""),
        ("SCRAM-SHA-256", b"\xff\xfe,,n=,r=abc"),
        ("SCRAM-SHA-256", b"\0\0\0\0garbage"),
        ("SCRAM-SHA-256", "n,,n=,r=\u{00e9}".as_bytes()),
    ];
    for (mech, data) in bad {
        let mut s = ScramServer::new(ScramVerifier::from_password("pw", b"salt", 1));
        assert!(s.client_first(mech, data).is_err(), "{mech} {data:?}");
        assert!(matches!(
            s.client_first(mech, b"n,,n=,r=abc"),
            Err(AuthError::OutOfOrder)
        ));
    }
}

#[test]
fn client_final_rejects_bad_input() {
    let proof = STANDARD.encode([0u8; 32]);
    let cases: [&dyn Fn(&str) -> String; 11] = [
        &|n| format!("c=biws,r={n}x,p={proof}"),
        &|n| format!("c=eSws,r={n},p={proof}"),
        &|n| format!("c=!!,r={n},p={proof}"),
        &|n| format!("c=biws,r={n},p=AAAA"),
        &|n| format!("c=biws,r={n},p="),
        &|n| format!("c=biws,r={n}"),
        &|n| format!("r={n},p={proof}"),
        &|_| format!("c=biws,p={proof}"),
        &|n| format!("c=biws,r={n},p={proof}"), // all-zero proof is wrong
        &|_| "garbage".to_string(),
        &|_| String::new(),
    ];
    for case in cases {
        let mut server = started_server();
        let msg = case(&exchange_of(&server).nonce);
        assert!(server.client_final(msg.as_bytes()).is_err(), "{msg}");
    }
    assert!(started_server().client_final(b"c=biws,r=\xff,p=x").is_err());
    let mut fresh = ScramServer::new(ScramVerifier::from_password("pw", b"s", 1));
    assert!(matches!(
        fresh.client_final(b"x"),
        Err(AuthError::OutOfOrder)
    ));
}

#[test]
fn parse_rejects_malformed_verifiers() {
    let good = ScramVerifier::from_password("pw", b"salt", 4096).to_string();
    let (head, keys) = good.split_at(good.rfind('$').unwrap_or(0));
    let bad = [
        "".to_string(),
        "SCRAM-SHA-256$".to_string(),
        "SCRAM-SHA-256$4096:c2FsdA==".to_string(),
        good.replace("$4096:", "$0:"),
        good.replace("$4096:", "$-1:"),
        good.replace("$4096:", "$x:"),
        good.replace("$4096:", "$99999999999:"),
        good.replace("c2FsdA==", "c2FsdA"),
        good.replace("c2FsdA==", ""),
        good.replace("c2FsdA==", "!!"),
        format!("{head}$AAAA:AAAA"),
        format!("{head}{}", keys.replace(':', "")),
        format!("{}\u{00e9}", good),
        good.replacen("SCRAM-SHA-256", "SCRAM-SHA-1", 1),
    ];
    for s in bad {
        assert!(ScramVerifier::parse(&s).is_err(), "{s}");
    }
}

#[test]
fn hi_matches_rfc7677_vector() {
    // RFC 7677 section 3: user, pencil, salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
    let v = ScramVerifier::from_password("pencil", &salt, 4096);
    let mut server = ScramServer::new(v);
    server
        .client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .expect("first");
    let State::FirstSent(ref mut ex) = server.state else {
        panic!("state")
    };
    // Force the RFC's server nonce so the RFC's proof applies.
    ex.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
    ex.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", ex.nonce);
    let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                     p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let reply = server.client_final(final_msg.as_bytes()).expect("final");
    assert_eq!(reply, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

#[test]
fn random_input_never_panics() {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let alphabet = b"nyp=,rcam\xff\x00abcAB+/=$:SCRAM-SHA-256";
    for _ in 0..2000 {
        let len = rng.gen_range(0..40);
        let data: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let _ = ScramVerifier::parse(&String::from_utf8_lossy(&data));
        let _ = ScramServer::new(ScramVerifier::from_password("pw", b"s", 1))
            .client_first("SCRAM-SHA-256", &data);
        let mut server = started_server();
        let mut msg = format!("c=biws,r={},", exchange_of(&server).nonce).into_bytes();
        msg.extend_from_slice(&data);
        let _ = server.client_final(&msg);
        let _ = started_server().client_final(&data);
    }
}
