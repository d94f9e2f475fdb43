//! SQL text tooling shared by the session and the router: a lexer that never panics,
//! normalised cache keys, byte-level prefilters, the session-state effects of a statement
//! and the SQL-level `PREPARE`/`EXECUTE` forms. Knows nothing of sessions or nodes.

mod channels;
mod cursor;
mod effects;
mod facts;
mod lexer;
mod normalize;
mod pps;
mod prefilter;
mod prepared;

pub use channels::{may_call_listening_channels, rewrite as rewrite_listening_channels};
pub use effects::{Effect, PinReason, inspect};
pub use facts::TextFacts;
pub use normalize::{normalize, normalize_bytes};
pub use pps::{
    Rewrite as ViewRewrite, ViewRow, may_name_prepared_view, rewrite as rewrite_prepared_view,
};
pub use prefilter::{
    call_candidates, may_have_effects, may_set_sequence_values, reads_sequence_values,
    touches_sequence_values,
};
pub use prepared::{SqlExecute, SqlPrepare, sql_execute, sql_prepare};

#[cfg(test)]
mod fuzz_tests;
