//! Access rules, `pg_hba.conf` in small: an ordered list of (database, user, client
//! address, TLS or not) -> how the client must authenticate, or reject. The first rule
//! that matches decides; a client no rule matches is rejected. No rules at all means every
//! client authenticates with `auth.type`.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How a client matching a rule authenticates.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum Method {
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// A verified client certificate whose CN is the user (or maps to it in `tls.cert_map`).
    #[serde(rename = "cert")]
    Cert,
    #[serde(rename = "reject")]
    Reject,
}

/// One name, a list of names, or "all".
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    fn matches(&self, name: &str) -> bool {
        match self {
            Names::One(n) => n == "all" || n == name,
            Names::Many(v) => v.iter().any(|n| n == "all" || n == name),
        }
    }
}

fn all() -> Names {
    Names::One("all".into())
}

fn all_addresses() -> String {
    "all".into()
}

/// `[[access]]`: one rule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default = "all")]
    pub database: Names,
    #[serde(default = "all")]
    pub user: Names,
    /// CIDR (`10.0.0.0/8`, `::1/128`), a single address, or "all".
    #[serde(default = "all_addresses")]
    pub address: String,
    /// `true`: TLS clients only; `false`: plain clients only; absent: both.
    #[serde(default)]
    pub tls: Option<bool>,
    pub method: Method,
}

/// What a client looks like to the rules.
pub struct Client<'a> {
    pub database: &'a str,
    pub user: &'a str,
    pub addr: Option<IpAddr>,
    pub tls: bool,
}

/// Why a client may not go on: the SQLSTATE is 28000 in both cases.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Rule `index` (0-based) said reject.
    Rejected { index: usize, rule: String },
    /// Rules exist and none matched.
    NoMatch,
}

/// Checks a CIDR or address string; for config validation.
pub fn parse_cidr(s: &str) -> Result<Option<(IpAddr, u8)>, String> {
    if s == "all" {
        return Ok(None);
    }
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        None => max,
    };
    Ok(Some((ip, bits)))
}

/// Whether `addr` is inside `net/bits`; an IPv4-mapped IPv6 address counts as IPv4.
fn in_net(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl Rule {
    fn matches(&self, c: &Client<'_>) -> bool {
        if !self.database.matches(c.database) || !self.user.matches(c.user) {
            return false;
        }
        if self.tls.is_some_and(|t| t != c.tls) {
            return false;
        }
        match parse_cidr(&self.address) {
            Ok(None) => true,
            Ok(Some((net, bits))) => c.addr.is_some_and(|a| in_net(a, net, bits)),
            Err(_) => false,
        }
    }
}

/// The first rule matching `client`: its method, or why the client is refused. `Ok(None)`
/// when there are no rules (use `auth.type`).
pub fn check(rules: &[Rule], client: &Client<'_>) -> Result<Option<Method>, Refusal> {
    if rules.is_empty() {
        return Ok(None);
    }
    match rules.iter().enumerate().find(|(_, r)| r.matches(client)) {
        Some((index, r)) if r.method == Method::Reject => Err(Refusal::Rejected {
            index,
            rule: r.to_string(),
        }),
        Some((_, r)) => Ok(Some(r.method)),
        None => Err(Refusal::NoMatch),
    }
}

impl fmt::Display for Names {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Names::One(n) => write!(f, "{n:?}"),
            Names::Many(v) => write!(f, "{v:?}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.method {
            Method::Trust => "trust",
            Method::Md5 => "md5",
            Method::ScramSha256 => "scram-sha-256",
            Method::Cert => "cert",
            Method::Reject => "reject",
        };
        write!(
            f,
            "database = {}, user = {}, address = {:?}",
            self.database, self.user, self.address
        )?;
        if let Some(t) = self.tls {
            write!(f, ", tls = {t}")?;
        }
        write!(f, ", method = {method:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(db: &str, user: &str, address: &str, tls: Option<bool>, method: Method) -> Rule {
        Rule {
            database: Names::One(db.into()),
            user: Names::One(user.into()),
            address: address.into(),
            tls,
            method,
        }
    }

    fn client<'a>(db: &'a str, user: &'a str, addr: &str, tls: bool) -> Client<'a> {
        Client {
            database: db,
            user,
            addr: addr.parse().ok(),
            tls,
        }
    }

    #[test]
    fn no_rules_is_todays_behaviour() {
        assert_eq!(check(&[], &client("app", "u", "10.0.0.1", false)), Ok(None));
    }

    #[test]
    fn first_match_wins() {
        let rules = vec![
            rule("all", "all", "10.0.0.0/8", Some(false), Method::Reject),
            rule("app", "all", "10.0.0.0/8", Some(true), Method::Cert),
            rule("all", "all", "127.0.0.1", None, Method::Trust),
            rule("all", "all", "all", None, Method::ScramSha256),
        ];
        let r = |c| check(&rules, &c);
        assert!(matches!(
            r(client("app", "u", "10.1.2.3", false)),
            Err(Refusal::Rejected { index: 0, .. })
        ));
        assert_eq!(
            r(client("app", "u", "10.1.2.3", true)),
            Ok(Some(Method::Cert))
        );
        assert_eq!(
            r(client("other", "u", "10.1.2.3", true)),
            Ok(Some(Method::ScramSha256))
        );
        assert_eq!(
            r(client("x", "u", "127.0.0.1", false)),
            Ok(Some(Method::Trust))
        );
        assert_eq!(
            r(client("x", "u", "::ffff:127.0.0.1", false)),
            Ok(Some(Method::Trust))
        );
        assert_eq!(
            r(client("x", "u", "127.0.0.2", false)),
            Ok(Some(Method::ScramSha256))
        );
    }

    #[test]
    fn unmatched_client_is_refused() {
        let rules = vec![rule("app", "alice", "all", None, Method::Md5)];
        assert_eq!(
            check(&rules, &client("app", "bob", "1.2.3.4", false)),
            Err(Refusal::NoMatch)
        );
        assert_eq!(
            check(&rules, &client("app", "alice", "1.2.3.4", false)),
            Ok(Some(Method::Md5))
        );
    }

    #[test]
    fn lists_and_ipv6() {
        let mut r = rule("x", "all", "fd00::/8", None, Method::Trust);
        r.database = Names::Many(vec!["a".into(), "b".into()]);
        assert!(r.matches(&client("b", "u", "fd12::1", false)));
        assert!(!r.matches(&client("c", "u", "fd12::1", false)));
        assert!(!r.matches(&client("a", "u", "fe12::1", false)));
        assert!(!r.matches(&client("a", "u", "10.0.0.1", false)));
        let zero = rule("all", "all", "0.0.0.0/0", None, Method::Trust);
        assert!(zero.matches(&client("a", "u", "8.8.8.8", false)));
    }

    #[test]
    fn cidr_parsing() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("::1").is_ok());
        assert!(parse_cidr("all").is_ok());
        for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0.0/x", ""] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_text_names_every_field() {
        let r = rule("app", "all", "10.0.0.0/8", Some(true), Method::Reject);
        assert_eq!(
            r.to_string(),
            "database = \"app\", user = \"all\", address = \"10.0.0.0/8\", tls = true, method = \"reject\""
        );
    }
}
