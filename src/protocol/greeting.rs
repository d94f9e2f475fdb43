//! The server settings a client is greeted with (its ParameterStatus messages), encoded
//! once from what a pool's first server reported, so that a login copies bytes instead of
//! encoding a dozen messages; a client's own startup value replaces the server's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;

use super::build;

/// A server's reported settings, and their ParameterStatus messages.
pub struct ServerParams {
    pub map: Arc<BTreeMap<String, String>>,
    /// The messages, in the map's order.
    encoded: Vec<u8>,
    /// Each setting's name and where its message is in `encoded`.
    spans: Vec<(String, Range<usize>)>,
}

impl ServerParams {
    pub fn new(map: Arc<BTreeMap<String, String>>) -> ServerParams {
        let mut buf = BytesMut::new();
        let mut spans = Vec::with_capacity(map.len());
        for (name, value) in map.iter() {
            let start = buf.len();
            build::parameter_status(&mut buf, name, value);
            spans.push((name.clone(), start..buf.len()));
        }
        ServerParams {
            map,
            encoded: buf.to_vec(),
            spans,
        }
    }

    /// Appends every setting's ParameterStatus to `buf`, with the client's startup value
    /// for a name it set (names compared ignoring ASCII case, as PostgreSQL's are).
    pub fn write(&self, buf: &mut BytesMut, client: &BTreeMap<String, String>) {
        buf.reserve(self.encoded.len());
        // Runs of the server's messages are copied whole; `from` is where the current
        // run starts.
        let mut from = 0;
        for (name, span) in &self.spans {
            let own = client
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            if let Some(value) = own {
                buf.extend_from_slice(self.encoded.get(from..span.start).unwrap_or_default());
                build::parameter_status(buf, name, value);
                from = span.end;
            }
        }
        buf.extend_from_slice(self.encoded.get(from..).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What the greeting was before it was pre-built: one message per server setting,
    /// each encoded at login.
    fn encoded_at_login(
        server: &BTreeMap<String, String>,
        client: &BTreeMap<String, String>,
    ) -> BytesMut {
        let mut buf = BytesMut::new();
        for (name, value) in server {
            let value = client
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map_or(value, |(_, v)| v);
            build::parameter_status(&mut buf, name, value);
        }
        buf
    }

    #[test]
    fn same_bytes_as_encoding_at_login() {
        let server = map(&[
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("application_name", ""),
            ("client_encoding", "UTF8"),
            ("server_version", "15.18"),
        ]);
        let pre = ServerParams::new(Arc::new(server.clone()));
        for client in [
            map(&[]),
            map(&[("user", "u"), ("database", "d")]),
            map(&[("application_name", "pgbench")]),
            map(&[("datestyle", "German"), ("server_version", "99")]),
            map(&[("TIMEZONE", "Europe/Paris"), ("DateStyle", "SQL")]),
            map(&[
                ("application_name", "a"),
                ("client_encoding", "LATIN1"),
                ("datestyle", "x"),
                ("server_version", "y"),
                ("timezone", "z"),
            ]),
        ] {
            let mut got = BytesMut::new();
            pre.write(&mut got, &client);
            assert_eq!(got, encoded_at_login(&server, &client), "{client:?}");
        }
        let empty = ServerParams::new(Arc::new(BTreeMap::new()));
        let mut got = BytesMut::new();
        empty.write(&mut got, &map(&[("application_name", "a")]));
        assert!(got.is_empty());
    }

    #[test]
    fn wire_forms_as_pgwire() {
        let mut buf = BytesMut::new();
        build::parameter_status(&mut buf, "a", "bc");
        assert_eq!(&buf[..], b"S\0\0\0\x09a\0bc\0");
        let mut theirs = BytesMut::new();
        let msg = pgwire::messages::startup::ParameterStatus::new("TimeZone".into(), "UTC".into());
        pgwire::messages::Message::encode(&msg, &mut theirs).unwrap();
        buf.clear();
        build::parameter_status(&mut buf, "TimeZone", "UTC");
        assert_eq!(buf, theirs);
        buf.clear();
        theirs.clear();
        build::auth_md5(&mut buf, [1, 2, 3, 4]);
        let msg = pgwire::messages::startup::Authentication::MD5Password(vec![1, 2, 3, 4]);
        pgwire::messages::Message::encode(&msg, &mut theirs).unwrap();
        assert_eq!(buf, theirs);
    }
}
