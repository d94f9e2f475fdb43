//! Fuzz target: the console's command parser, on any text and on commands as a DBA
//! types them.

use proptest::prelude::*;

use super::command::{self, Command, SHOW_NAMES};
use crate::fuzz;

/// Text shaped like console input: words, quotes, `;`, `=`, multibyte characters.
fn console_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(
            &[
                "SHOW",
                "show",
                "SET",
                "set",
                "PAUSE",
                "RESUME",
                "KILL",
                "DISABLE",
                "ENABLE",
                "RELOAD",
                "SHUTDOWN",
                "WAIT_FOR_CLIENTS",
                "pools",
                "STATS",
                "x",
                "app",
                "\"App\"",
                "=",
                "TO",
                "to",
                "'a b'",
                "'it''s'",
                "'",
                "\"",
                ";",
                " ",
                "  ",
                "\t",
                "€",
                "é",
                "\u{301}",
                "t€",
                "to€",
                "€x",
                "'€'",
            ][..]
        )
        .prop_map(str::to_string),
        ".{0,3}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|p| p.concat())
}

/// A well-formed command and what it must parse to.
fn command_line() -> impl Strategy<Value = (String, Command)> {
    let show = prop::sample::select(SHOW_NAMES)
        .prop_map(|(n, s)| (format!("sHoW {}", n.to_ascii_uppercase()), Command::Show(s)));
    let db = "[a-z][a-z0-9_]{0,8}";
    let set = (
        "[a-z_]{1,12}",
        "[^']{0,10}",
        prop::sample::select(&["=", " = ", " to ", " TO "][..]),
    )
        .prop_map(|(k, v, sep)| {
            (
                format!("SET {k}{sep}'{v}'"),
                Command::Set { key: k, value: v },
            )
        });
    prop_oneof![
        show,
        set,
        db.prop_map(|d| (format!("kill {d}"), Command::Kill(d))),
        db.prop_map(|d| (format!("PAUSE \"{d}\""), Command::Pause(Some(d)))),
        Just(("reload".to_string(), Command::Reload)),
    ]
}

#[test]
fn fuzz_admin_command() {
    let input = (
        console_text(),
        command_line(),
        prop::sample::select(&["", ";", " ; "][..]),
    );
    fuzz::run("admin_command", 4000, input, |(text, (line, want), end)| {
        for stmt in command::split(&text) {
            prop_assert!(!stmt.is_empty() && stmt.trim() == stmt);
            prop_assert!(text.contains(stmt));
            if let Ok(Command::Set { key, .. }) = command::parse(stmt) {
                prop_assert!(!key.is_empty());
            }
        }
        let _ = command::parse(&text);
        let line = format!("{line}{end}");
        let parsed: Vec<_> = command::split(&line)
            .into_iter()
            .map(command::parse)
            .collect();
        prop_assert_eq!(parsed, vec![Ok(want)]);
        Ok(())
    });
}
