//! Fuzz targets: SCRAM messages on both sides (arbitrary bytes, and well-formed messages
//! with arbitrary values), and stored secrets.

use proptest::prelude::*;

use super::scram::{ScramServer, ScramVerifier};
use super::scram_client::ScramKeyClient;
use super::{AuthError, Secret};
use crate::fuzz;

/// An attribute list shaped like SCRAM: `x=value` parts joined by commas.
fn scram_text() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        (
            prop::sample::select(
                &[
                    "n", "y", "p", "r", "s", "i", "c", "p", "v", "e", "m", "a", ""
                ][..]
            ),
            prop::sample::select(&["=", "", "=="][..]),
            "[a-zA-Z0-9+/=,]{0,12}|.{0,4}",
        )
            .prop_map(|(k, eq, v)| format!("{k}{eq}{v}")),
        Just("p=tls-server-end-point".to_string()),
        Just("biws".to_string()),
    ];
    prop_oneof![
        4 => prop::collection::vec(part, 0..6).prop_map(|p| p.join(",").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..48),
    ]
}

fn verifier() -> ScramVerifier {
    ScramVerifier::from_password("pw", b"salt", 1)
}

#[test]
fn fuzz_scram_server() {
    let mechanism = prop::sample::select(&["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "", "x"][..]);
    let input = (
        mechanism,
        scram_text(),
        scram_text(),
        any::<bool>(),
        any::<bool>(),
    );
    fuzz::run(
        "scram_server",
        3000,
        input,
        |(mech, first, last, tls, good_first)| {
            let cert: Option<std::sync::Arc<[u8]>> = tls.then(|| vec![7u8; 32].into());
            let mut server = ScramServer::new(verifier()).with_channel_binding(cert.clone());
            let first = if good_first {
                b"n,,n=,r=abc".to_vec()
            } else {
                first
            };
            let reply = server.client_first(mech, &first);
            if let Ok(reply) = &reply {
                let text = String::from_utf8_lossy(reply);
                prop_assert!(
                    text.starts_with("r=") && text.contains(",s=") && text.contains(",i=1")
                );
            }
            // The final message: arbitrary, or well-formed around an arbitrary tail.
            let mut shaped = match &reply {
                Ok(r) => {
                    let nonce = String::from_utf8_lossy(r)
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    format!("c=biws,{nonce},").into_bytes()
                }
                Err(_) => Vec::new(),
            };
            shaped.extend_from_slice(&last);
            for msg in [last, shaped] {
                let mut s = ScramServer::new(verifier()).with_channel_binding(cert.clone());
                let _ = s.client_first(mech, &first);
                let out = s.client_final(&msg);
                prop_assert!(out.is_err(), "an unproven client was let in");
                prop_assert!(s.client_key().is_none());
                prop_assert!(matches!(s.client_final(&msg), Err(AuthError::OutOfOrder)));
            }
            prop_assert!(matches!(
                server.client_first(mech, &first),
                Err(AuthError::OutOfOrder)
            ));
            Ok(())
        },
    );
}

#[test]
fn fuzz_scram_client() {
    let input = (
        scram_text(),
        scram_text(),
        any::<bool>(),
        "[a-zA-Z0-9+/]{1,12}",
    );
    fuzz::run(
        "scram_client",
        3000,
        input,
        |(first, last, prefix_nonce, extra)| {
            let mut client = ScramKeyClient::new([1; 32], verifier(), None);
            let _ = client.server_final(&last);
            let hello = String::from_utf8_lossy(&client.client_first()).into_owned();
            let nonce = hello.rsplit("r=").next().unwrap_or_default().to_string();
            // A server-first with our nonce and the verifier's salt gets past the checks.
            let msg = if prefix_nonce {
                let mut m = format!("r={nonce}{extra},s=c2FsdA==,i=1,").into_bytes();
                m.extend_from_slice(&first);
                m
            } else {
                first
            };
            match client.server_first(&msg) {
                Ok(reply) => {
                    let text = String::from_utf8_lossy(&reply);
                    prop_assert!(text.starts_with("c=biws,r=") && text.contains(",p="));
                    // A forged signature is refused.
                    prop_assert!(client.server_final(&last).is_err());
                }
                Err(_) => prop_assert!(matches!(
                    client.server_final(&last),
                    Err(AuthError::OutOfOrder)
                )),
            }
            Ok(())
        },
    );
}

/// A real exchange: pgsluice's server against postgres-protocol's client, and
/// pgsluice's pass-through client against pgsluice's server, with any password.
#[test]
fn fuzz_scram_exchange() {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    let input = (
        "[ -~]{0,12}",
        "[ -~]{0,12}",
        prop::collection::vec(any::<u8>(), 1..8),
    );
    fuzz::run("scram_exchange", 300, input, |(password, other, salt)| {
        let v = ScramVerifier::from_password(&password, &salt, 1);
        prop_assert_eq!(
            ScramVerifier::parse(&v.to_string())
                .map(|p| p.to_string())
                .ok(),
            Some(v.to_string())
        );
        let mut server = ScramServer::new(v.clone());
        let mut client = ScramSha256::new(other.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first("SCRAM-SHA-256", client.message());
        prop_assert!(first.is_ok());
        let first = first.unwrap_or_default();
        prop_assert!(client.update(&first).is_ok());
        let last = server.client_final(client.message());
        prop_assert_eq!(last.is_ok(), password == other);
        let Some(key) = server.client_key() else {
            return Ok(());
        };
        // The recovered ClientKey logs in to a server holding the same verifier.
        let mut upstream = ScramServer::new(v.clone());
        let mut pass = ScramKeyClient::new(key, v, None);
        let reply = upstream.client_first(pass.mechanism(), &pass.client_first());
        let reply = reply.unwrap_or_default();
        let last = pass.server_first(&reply).unwrap_or_default();
        let done = upstream.client_final(&last).unwrap_or_default();
        prop_assert!(pass.server_final(&done).is_ok());
        Ok(())
    });
}

#[test]
fn fuzz_secrets() {
    let input = prop_oneof![
        ".{0,40}",
        "SCRAM-SHA-256\\$[0-9]{0,5}:[a-zA-Z0-9+/=]{0,12}\\$[a-zA-Z0-9+/=]{0,46}:[a-zA-Z0-9+/=]{0,46}",
        "md5[0-9a-f]{30,34}",
    ];
    fuzz::run("secrets", 4000, input, |text| {
        let _ = Secret::parse(&text);
        if let Ok(v) = ScramVerifier::parse(&text) {
            prop_assert!(v.iterations > 0 && !v.salt.is_empty());
            prop_assert_eq!(
                ScramVerifier::parse(&v.to_string())
                    .map(|p| p.to_string())
                    .ok(),
                Some(v.to_string())
            );
        }
        Ok(())
    });
}
