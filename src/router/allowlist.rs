//! Which functions a read may call without asking the database: a built-in list of
//! read-only functions (matched by name, or by family prefix), the configured
//! `routing.read_only_functions`, and a short list of known writers. Any other function
//! is looked up in the catalog (see `functions.rs`) by the name the query gives it.

use sqlparser::ast::{ObjectName, ObjectNamePart};

use super::functions::FuncRef;

/// Functions that never write, beyond those matched by prefix in [`allowed_prefix`].
/// Known writers (`nextval`, `setval`, `pg_advisory_*`, `set_config`, `txid_current`,
/// `pg_notify`, `lo_*`) send the statement to the primary; any other function is looked
/// up in the catalog.
pub(super) const READ_ONLY_FUNCTIONS: &[&str] = &[
    // aggregates and window functions
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "string_agg",
    "array_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "corr",
    "covar_pop",
    "covar_samp",
    "mode",
    "percentile_cont",
    "percentile_disc",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // conditionals and comparison
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "num_nulls",
    "num_nonnulls",
    // strings
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "position",
    "strpos",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "translate",
    "concat",
    "concat_ws",
    "format",
    "left",
    "right",
    "lpad",
    "rpad",
    "repeat",
    "reverse",
    "split_part",
    "starts_with",
    "ascii",
    "chr",
    "md5",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "encode",
    "decode",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "overlay",
    "unistr",
    "normalize",
    "like",
    "ilike",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log10",
    "sign",
    "pi",
    "degrees",
    "radians",
    "div",
    "gcd",
    "lcm",
    "width_bucket",
    "random",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "factorial",
    // dates and times
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "age",
    "date_trunc",
    "date_part",
    "date_bin",
    "extract",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "timezone",
    // sets, arrays, ranges
    "generate_series",
    "generate_subscripts",
    "unnest",
    "cardinality",
    "lower_inc",
    "upper_inc",
    "lower_inf",
    "upper_inf",
    "isempty",
    "range_merge",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    // json (beyond the json_/jsonb_ prefixes)
    "row_to_json",
    "to_json",
    "to_jsonb",
    // session and server information
    "version",
    "current_database",
    "current_catalog",
    "current_schema",
    "current_schemas",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_setting",
    "pg_backend_pid",
    "inet_server_port",
    "inet_server_addr",
    "inet_client_port",
    "inet_client_addr",
    "pg_is_in_recovery",
    "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_typeof",
    "format_type",
    "pg_size_pretty",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_database_size",
    "pg_column_size",
    "obj_description",
    "col_description",
    "pg_get_viewdef",
    "pg_get_indexdef",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_userbyid",
    "pg_table_is_visible",
    "pg_sleep",
    "gen_random_uuid",
    "uuid_generate_v4",
    "exists",
    "any",
    "all",
    "array",
    "row",
    "cast",
];

/// Families of read-only functions matched by name prefix.
fn allowed_prefix(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "json_",
        "jsonb_",
        "array_",
        "regexp_",
        "string_to_",
        "to_",
        "has_",
        "ts_",
        "st_",
    ];
    // `jsonb_set`, `array_append` and the like compute values; none of them writes.
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Built-in functions that write or take locks: never looked up, always the primary.
fn known_writer(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "nextval",
        "setval",
        "set_config",
        "txid_current",
        "txid_current_if_assigned",
        "pg_current_xact_id",
        "pg_current_xact_id_if_assigned",
        "pg_notify",
    ];
    EXACT.contains(&name) || name.starts_with("pg_advisory") || name.starts_with("lo_")
}

/// What the allowlist says about one function a query calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Known not to write.
    Allowed,
    /// A function the allowlist does not know: its volatility in the catalog decides.
    Check(FuncRef),
    /// A built-in that writes or locks (`nextval`, `pg_advisory_lock`, ...).
    Writes,
    /// May write, and cannot be looked up: a built-in off the list, a name of three or
    /// more parts.
    Refused,
}

/// The read-only function allowlist: the built-in list plus the configured extras.
#[derive(Debug, Default)]
pub struct Allowlist {
    extra: Vec<String>,
}

impl Allowlist {
    pub fn new(extra: &[String]) -> Allowlist {
        Allowlist {
            extra: extra.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether the unqualified function `name` (as written) is allowed without the
    /// catalog: a cheap pre-check before any parsing.
    pub fn allows_word(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        !known_writer(&lower)
            && (READ_ONLY_FUNCTIONS.contains(&lower.as_str())
                || allowed_prefix(&lower)
                || self.extra.contains(&lower))
    }

    /// Whether the function called `name` is known not to write or change session state
    /// (the catalog's volatility does not count: a STABLE function may still `SET`).
    pub fn allows(&self, name: &ObjectName) -> bool {
        matches!(self.judge(name), Judged::Allowed)
    }

    /// Judges the function called `name` in a query.
    pub fn judge(&self, name: &ObjectName) -> Judged {
        let mut parts = Vec::with_capacity(name.0.len());
        for p in &name.0 {
            match p {
                ObjectNamePart::Identifier(i) if i.quote_style.is_some() => {
                    parts.push(i.value.clone())
                }
                ObjectNamePart::Identifier(i) => parts.push(i.value.to_ascii_lowercase()),
                ObjectNamePart::Function(_) => return Judged::Refused,
            }
        }
        let full = parts.join(".");
        if self.extra.contains(&full) {
            return Judged::Allowed;
        }
        let (schema, func) = match parts.as_slice() {
            [f] => (None, f.as_str()),
            [schema, f] => (Some(schema.as_str()), f.as_str()),
            _ => return Judged::Refused,
        };
        let builtin = matches!(schema, None | Some("pg_catalog"));
        if builtin && known_writer(func) {
            return Judged::Writes;
        }
        if builtin
            && (READ_ONLY_FUNCTIONS.contains(&func)
                || allowed_prefix(func)
                || self.extra.iter().any(|e| e == func))
        {
            return Judged::Allowed;
        }
        if schema == Some("pg_catalog") {
            // A built-in off the list: its volatility says nothing (txid_current is
            // STABLE and assigns a transaction id).
            return Judged::Refused;
        }
        Judged::Check(FuncRef {
            schema: schema.map(str::to_string),
            name: func.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Ident;

    fn name(parts: &[&str]) -> ObjectName {
        ObjectName(
            parts
                .iter()
                .map(|p| match p.strip_prefix('"') {
                    Some(q) => {
                        ObjectNamePart::Identifier(Ident::with_quote('"', q.trim_end_matches('"')))
                    }
                    None => ObjectNamePart::Identifier(Ident::new(*p)),
                })
                .collect(),
        )
    }

    #[test]
    fn judgements() {
        let a = Allowlist::new(&["my_reader".into(), "rep.Report".into()]);
        assert_eq!(a.judge(&name(&["now"])), Judged::Allowed);
        assert_eq!(a.judge(&name(&["pg_catalog", "NOW"])), Judged::Allowed);
        assert_eq!(a.judge(&name(&["jsonb_set"])), Judged::Allowed);
        assert_eq!(a.judge(&name(&["my_reader"])), Judged::Allowed);
        assert_eq!(a.judge(&name(&["rep", "report"])), Judged::Allowed);
        assert_eq!(a.judge(&name(&["nextval"])), Judged::Writes);
        assert_eq!(a.judge(&name(&["pg_advisory_xact_lock"])), Judged::Writes);
        assert_eq!(
            a.judge(&name(&["pg_catalog", "txid_current"])),
            Judged::Writes
        );
        assert_eq!(
            a.judge(&name(&["pg_catalog", "pg_stat_get_live_tuples"])),
            Judged::Refused
        );
        assert_eq!(a.judge(&name(&["a", "b", "c"])), Judged::Refused);
        assert_eq!(
            a.judge(&name(&["My_Func"])),
            Judged::Check(FuncRef {
                schema: None,
                name: "my_func".into()
            })
        );
        assert_eq!(
            a.judge(&name(&["\"Sales\"", "\"Top\""])),
            Judged::Check(FuncRef {
                schema: Some("Sales".into()),
                name: "Top".into()
            })
        );
        // A user schema's function of a built-in's name is looked up, not trusted.
        assert_eq!(
            a.judge(&name(&["public", "now"])),
            Judged::Check(FuncRef {
                schema: Some("public".into()),
                name: "now".into()
            })
        );
    }
}
