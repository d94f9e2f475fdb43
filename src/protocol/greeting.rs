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
    /// No two names differ only in case, and there are at most 64: a client's few startup
    /// parameters are then each looked for among the names once, instead of every setting
    /// looking through the client's map (tree walks of ~900 instructions per login in all,
    /// stop 42).
    distinct: bool,
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
        let distinct = spans.len() <= 64
            && spans.iter().enumerate().all(|(n, (name, _))| {
                spans
                    .get(n + 1..)
                    .unwrap_or_default()
                    .iter()
                    .all(|(other, _)| !other.eq_ignore_ascii_case(name))
            });
        ServerParams {
            map,
            encoded: buf.to_vec(),
            spans,
            distinct,
        }
    }

    /// The place in `spans` of the setting called `name` (ignoring ASCII case): the first,
    /// which is the only one when `distinct`.
    fn position(&self, name: &str) -> Option<usize> {
        self.spans
            .iter()
            .position(|(own, _)| own.eq_ignore_ascii_case(name))
    }

    /// Whether the server reported `name` (ignoring ASCII case) with this very `value`.
    pub fn reports(&self, name: &str, value: &str) -> bool {
        if !self.distinct {
            return self
                .map
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value);
        }
        self.position(name)
            .is_some_and(|n| self.value(n) == value.as_bytes())
    }

    /// The value in `spans[n]`'s message: `S`, length, name, NUL, value, NUL.
    fn value(&self, n: usize) -> &[u8] {
        let Some((name, span)) = self.spans.get(n) else {
            return &[];
        };
        let from = span.start + 5 + name.len() + 1;
        self.encoded
            .get(from..span.end.saturating_sub(1))
            .unwrap_or_default()
    }

    /// Appends every setting's ParameterStatus to `buf`, with the client's startup value
    /// for a name it set (names compared ignoring ASCII case, as PostgreSQL's are).
    pub fn write(&self, buf: &mut BytesMut, client: &BTreeMap<String, String>) {
        buf.reserve(self.encoded.len());
        // Runs of the server's messages are copied whole; `from` is where the current
        // run starts.
        let mut from = 0;
        // Bit `n`: the client set `spans[n]`'s name (every bit unless `distinct`).
        let set = if !self.distinct {
            u64::MAX
        } else {
            client
                .keys()
                .filter_map(|k| self.position(k))
                .fold(0u64, |set, n| set | 1 << n)
        };
        for (n, (name, span)) in self.spans.iter().enumerate() {
            if n < 64 && set & (1 << n) == 0 {
                continue;
            }
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
        // Not `distinct`: two names that differ only in case, and more than 64.
        let twins = map(&[("TimeZone", "UTC"), ("timezone", "GMT"), ("a", "1")]);
        let many: BTreeMap<String, String> =
            (0..70).map(|n| (format!("S{n}"), n.to_string())).collect();
        for server in [twins, many] {
            let pre = ServerParams::new(Arc::new(server.clone()));
            assert!(!pre.distinct);
            for client in [
                map(&[]),
                map(&[("TIMEZONE", "x"), ("s3", "y"), ("s69", "z"), ("A", "b")]),
            ] {
                let mut got = BytesMut::new();
                pre.write(&mut got, &client);
                assert_eq!(got, encoded_at_login(&server, &client), "{client:?}");
            }
        }
        let empty = ServerParams::new(Arc::new(BTreeMap::new()));
        let mut got = BytesMut::new();
        empty.write(&mut got, &map(&[("application_name", "a")]));
        assert!(got.is_empty());
    }

    /// The look-up by name answers as a scan of every setting does.
    #[test]
    fn reports_as_a_scan_of_the_settings() {
        let servers = [
            map(&[
                ("DateStyle", "ISO, MDY"),
                ("TimeZone", "UTC"),
                ("application_name", ""),
                ("client_encoding", "UTF8"),
            ]),
            map(&[("TimeZone", "UTC"), ("timezone", "GMT")]),
            map(&[]),
        ];
        for server in servers {
            let pre = ServerParams::new(Arc::new(server.clone()));
            for name in [
                "DateStyle",
                "datestyle",
                "TIMEZONE",
                "timezone",
                "x",
                "",
                "client_encodin",
            ] {
                for value in ["ISO, MDY", "UTC", "GMT", "", "UTF8", "utf8"] {
                    let scan = server
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value);
                    assert_eq!(
                        pre.reports(name, value),
                        scan,
                        "{name}={value} in {server:?}"
                    );
                }
            }
        }
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
