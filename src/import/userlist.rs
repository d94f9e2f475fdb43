//! PgBouncer's `auth_file` (userlist.txt): one `"user" "password"` pair per line, `""`
//! for a quote inside a name, lines starting with `;` ignored.

/// The pairs, in file order, and the numbers of lines that are not pairs.
pub fn parse(text: &str) -> (Vec<(String, String)>, Vec<usize>) {
    let mut pairs = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        let user = quoted(&mut rest);
        let password = quoted(&mut rest);
        match (user, password) {
            (Some(u), Some(p)) if !u.is_empty() => pairs.push((u, p)),
            _ => bad.push(i + 1),
        }
    }
    (pairs, bad)
}

/// Takes one `"..."` string off the front of `rest` (after blanks).
fn quoted(rest: &mut &str) -> Option<String> {
    let s = rest.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.next_if(|(_, c)| *c == '"').is_some() {
                out.push('"');
                continue;
            }
            *rest = s.get(i + 1..).unwrap_or_default();
            return Some(out);
        }
        out.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_quotes_and_bad_lines() {
        let (pairs, bad) = super::parse(
            "\"app\" \"app_pw\"\n;c\n\"o\"\"brien\" \"md5abc\" extra\nbroken\n\"u\" \"\"\n",
        );
        assert_eq!(
            pairs,
            vec![
                ("app".into(), "app_pw".into()),
                ("o\"brien".into(), "md5abc".into()),
                ("u".into(), "".into()),
            ]
        );
        assert_eq!(bad, vec![4]);
    }
}
