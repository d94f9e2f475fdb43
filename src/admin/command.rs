//! Parsing console input: commands are case-insensitive, may end with `;`, and several
//! may be sent in one Query separated by `;`.

/// What SHOW shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Pools,
    Stats,
    StatsTotals,
    StatsAverages,
    Totals,
    Clients,
    Servers,
    Databases,
    Users,
    Config,
    Lists,
    Version,
    Help,
    Latency,
    Prepared,
    Pins,
    Nodes,
}

/// SHOW names, as typed after SHOW.
pub const SHOW_NAMES: &[(&str, Show)] = &[
    ("pools", Show::Pools),
    ("stats", Show::Stats),
    ("stats_totals", Show::StatsTotals),
    ("stats_averages", Show::StatsAverages),
    ("totals", Show::Totals),
    ("clients", Show::Clients),
    ("servers", Show::Servers),
    ("databases", Show::Databases),
    ("users", Show::Users),
    ("config", Show::Config),
    ("lists", Show::Lists),
    ("version", Show::Version),
    ("help", Show::Help),
    ("latency", Show::Latency),
    ("prepared", Show::Prepared),
    ("pins", Show::Pins),
    ("nodes", Show::Nodes),
];

/// One console command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Reload,
    Pause(Option<String>),
    Resume(Option<String>),
    Disable(String),
    Enable(String),
    Kill(String),
    Shutdown { wait_for_clients: bool },
    Set { key: String, value: String },
}

impl Command {
    /// Whether a stats user may run it (SHOW only).
    pub fn read_only(&self) -> bool {
        matches!(self, Command::Show(_))
    }

    /// The command's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Show(_) => "SHOW",
            Command::Reload => "RELOAD",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Kill(_) => "KILL",
            Command::Shutdown { .. } => "SHUTDOWN",
            Command::Set { .. } => "SET",
        }
    }
}

/// The help text: every command, one per line.
pub const USAGE: &str = "\
SHOW HELP|VERSION|CONFIG|DATABASES|USERS|POOLS|CLIENTS|SERVERS|LISTS
SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
SHOW LATENCY|PREPARED|PINS|NODES
SET key = value
RELOAD
PAUSE [<db>]
RESUME [<db>]
DISABLE <db>
ENABLE <db>
KILL <db>
SHUTDOWN [WAIT_FOR_CLIENTS]";

/// Why a command line could not be parsed: the message for the client (SQLSTATE 42601).
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

fn unknown(what: &str) -> ParseError {
    ParseError(format!(
        "unknown command \"{what}\"; the commands are:\n{USAGE}"
    ))
}

/// Splits a Query's text into statements at `;` outside quotes; empty ones are dropped.
pub fn split(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(text.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text.get(start..).unwrap_or_default());
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// A database name argument: `"Quoted"` kept exact, bare as typed.
fn db_arg(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => word.to_string(),
    }
}

/// Parses one statement (no `;`).
pub fn parse(stmt: &str) -> Result<Command, ParseError> {
    let stmt = stmt.trim();
    let (verb, rest) = match stmt.find(char::is_whitespace) {
        Some(i) => stmt
            .split_at_checked(i)
            .map_or((stmt, ""), |(v, r)| (v, r.trim())),
        None => (stmt, ""),
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let one_db = |what: &str| -> Result<String, ParseError> {
        match words.as_slice() {
            [db] => Ok(db_arg(db)),
            [] => Err(ParseError(format!("{what} needs a database name"))),
            _ => Err(ParseError(format!("{what} takes one database name"))),
        }
    };
    let opt_db = |what: &str| -> Result<Option<String>, ParseError> {
        match words.as_slice() {
            [] => Ok(None),
            [db] => Ok(Some(db_arg(db))),
            _ => Err(ParseError(format!(
                "{what} takes at most one database name"
            ))),
        }
    };
    let no_args = |cmd: Command| -> Result<Command, ParseError> {
        if words.is_empty() {
            Ok(cmd)
        } else {
            Err(ParseError(format!("{} takes no arguments", cmd.name())))
        }
    };
    match verb.to_ascii_lowercase().as_str() {
        "show" => {
            let [what] = words.as_slice() else {
                return Err(unknown(stmt));
            };
            let what = what.to_ascii_lowercase();
            SHOW_NAMES
                .iter()
                .find(|(n, _)| *n == what)
                .map(|(_, s)| Command::Show(*s))
                .ok_or_else(|| unknown(stmt))
        }
        "reload" => no_args(Command::Reload),
        "pause" => Ok(Command::Pause(opt_db("PAUSE")?)),
        "resume" => Ok(Command::Resume(opt_db("RESUME")?)),
        "disable" => Ok(Command::Disable(one_db("DISABLE")?)),
        "enable" => Ok(Command::Enable(one_db("ENABLE")?)),
        "kill" => Ok(Command::Kill(one_db("KILL")?)),
        "shutdown" => match words.as_slice() {
            [] => Ok(Command::Shutdown {
                wait_for_clients: false,
            }),
            [w] if w.eq_ignore_ascii_case("wait_for_clients") => Ok(Command::Shutdown {
                wait_for_clients: true,
            }),
            _ => Err(ParseError(
                "SHUTDOWN takes nothing or WAIT_FOR_CLIENTS".into(),
            )),
        },
        "set" => parse_set(rest),
        _ => Err(unknown(stmt)),
    }
}

/// `SET key = value` / `SET key TO value`; the value may be single-quoted.
fn parse_set(rest: &str) -> Result<Command, ParseError> {
    let bad = || ParseError("usage: SET key = value".into());
    let key_end = rest
        .find(|c: char| c.is_whitespace() || c == '=')
        .ok_or_else(bad)?;
    let (key, after) = rest.split_at_checked(key_end).ok_or_else(bad)?;
    let key = key.to_ascii_lowercase();
    let after = after.trim_start();
    // `TO` is a word of its own: `SET x today` is no `SET x TO day`. Looked at by
    // `get`, so a multibyte character where `TO` may stand is no panic.
    let to_value = after
        .get(..2)
        .filter(|w| w.eq_ignore_ascii_case("to"))
        .and_then(|_| after.get(2..))
        .filter(|v| v.starts_with(char::is_whitespace) || v.starts_with('\''));
    let value = if let Some(v) = after.strip_prefix('=') {
        v
    } else if let Some(v) = to_value {
        v
    } else {
        return Err(bad());
    }
    .trim();
    if key.is_empty() || value.is_empty() {
        return Err(bad());
    }
    let value = match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None if value.contains(char::is_whitespace) => return Err(bad()),
        None => value.to_string(),
    };
    Ok(Command::Set { key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_case_insensitively() {
        assert_eq!(parse("show pools"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("  SHOW   Stats "), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("pause app"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(parse("KILL \"App\""), Ok(Command::Kill("App".into())));
        assert_eq!(
            parse("shutdown wait_for_clients"),
            Ok(Command::Shutdown {
                wait_for_clients: true
            })
        );
        assert_eq!(
            parse("SET default_pool_size = 5"),
            Ok(Command::Set {
                key: "default_pool_size".into(),
                value: "5".into()
            })
        );
        assert_eq!(
            parse("set server_reset_query to 'DISCARD ALL'"),
            Ok(Command::Set {
                key: "server_reset_query".into(),
                value: "DISCARD ALL".into()
            })
        );
    }

    #[test]
    fn bad_input_is_an_error_listing_commands() {
        let e = parse("SHOW NOTHING").unwrap_err();
        assert!(e.0.contains("SHOW HELP"), "{}", e.0);
        assert!(parse("FROB").unwrap_err().0.contains("RELOAD"));
        assert!(parse("DISABLE").is_err());
        assert!(parse("RELOAD now").is_err());
        assert!(parse("SET x").is_err());
        assert!(parse("SET x = a b").is_err());
        assert!(parse("").is_err());
        assert!(parse("SET x today").is_err());
    }

    /// Found by the console's fuzz target (issue 11 named `SET x €...`): a multibyte
    /// character where `TO` is looked for sliced a `str` mid-character.
    #[test]
    fn multibyte_text_where_to_may_stand_is_an_error_not_a_panic() {
        for text in [
            "SET x €",
            "SET x €x",
            "set k t€",
            "SET x\u{301}y €€",
            "SET x to€",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
        assert_eq!(
            parse("SET x to '€'"),
            Ok(Command::Set {
                key: "x".into(),
                value: "€".into()
            })
        );
    }

    #[test]
    fn split_statements() {
        assert_eq!(
            split("SHOW POOLS; show stats;"),
            vec!["SHOW POOLS", "show stats"]
        );
        assert_eq!(split("SET a = 'x;y'"), vec!["SET a = 'x;y'"]);
        assert!(split(" ; ").is_empty());
    }
}
