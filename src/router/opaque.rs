//! Statements that may change session state out of pgsluice's sight: a call of a function
//! outside the read-only allowlist (its PL code may run `SET` or `set_config`) or a `CALL`
//! of a procedure. A transaction that ran one has its settings read back from the server
//! (see the session core's chores) before the server serves anyone else.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Statement, TableFactor, Visit, Visitor};

use super::classify::Allowlist;

/// Whether `stmt` calls a function the allowlist does not vouch for, or a procedure.
pub(super) fn calls_unlisted(stmt: &Statement, allow: &Allowlist) -> bool {
    if matches!(stmt, Statement::Call(_)) {
        return true;
    }
    let mut v = Calls { allow };
    stmt.visit(&mut v).is_break()
}

struct Calls<'a> {
    allow: &'a Allowlist,
}

impl Visitor for Calls<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) if !self.allow.allows(&f.name) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        let called = match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => Some(name),
            TableFactor::Function { name, .. } => Some(name),
            _ => None,
        };
        match called {
            Some(name) if !self.allow.allows(name) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::router::{Allowlist, Classifier};

    #[test]
    fn user_functions_and_procedures_are_opaque() {
        let c = Classifier::new(Arc::new(Allowlist::new(&["safe_fn".to_string()])));
        assert!(c.classify("SELECT my_func(1)").opaque);
        assert!(c.classify("INSERT INTO t VALUES (my_func(1))").opaque);
        assert!(c.classify("SELECT * FROM my_srf(2)").opaque);
        assert!(c.classify("CALL my_proc()").opaque);
        assert!(!c.classify("SELECT count(*), lower(name) FROM t").opaque);
        assert!(!c.classify("SELECT safe_fn(1)").opaque);
        assert!(!c.classify("UPDATE t SET a = a + 1").opaque);
    }
}
