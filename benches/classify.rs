//! Read/write classification of statement texts: parsed (`classify_uncached`, what a text
//! of a shape not seen before costs), cached (`Classifier::classify` on a shape this
//! thread has seen), and the normalisation that makes the cache key.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgsluice::router::classify::classify_uncached;
use pgsluice::router::{Allowlist, Classifier};
use pgsluice::sql as inspect;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// (name, text, may it run on a replica)
const STATEMENTS: &[(&str, &str, bool)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
        true,
    ),
    (
        "pgbench_update",
        "UPDATE pgbench_accounts SET abalance = abalance + -2719 WHERE aid = 4711;",
        false,
    ),
    (
        "cte_with_write",
        "WITH moved AS (DELETE FROM orders WHERE created_at < now() - interval '90 days' \
         RETURNING *) INSERT INTO orders_archive SELECT * FROM moved",
        false,
    ),
    (
        "join_select",
        "SELECT c.id, c.name, o.id AS order_id, o.total, sum(l.quantity * l.unit_price) \
         AS lines_total, max(p.name) FILTER (WHERE p.category = 'tools') AS tool \
         FROM customers c JOIN orders o ON o.customer_id = c.id \
         JOIN order_lines l ON l.order_id = o.id \
         LEFT JOIN products p ON p.id = l.product_id \
         WHERE c.region = $1 AND o.created_at >= $2 AND o.status IN ('paid', 'shipped') \
         GROUP BY c.id, c.name, o.id, o.total \
         HAVING sum(l.quantity) > 3 ORDER BY o.created_at DESC, c.id LIMIT 50",
        true,
    ),
];

fn bench_classify(c: &mut Criterion) {
    let allow = Arc::new(Allowlist::default());
    let classifier = Classifier::new(allow.clone());
    for (name, sql, replica_ok) in STATEMENTS {
        assert_eq!(
            classify_uncached(sql, &allow).replica_ok(false),
            *replica_ok,
            "{name} is classified as expected"
        );
        // Measure the parse, not the fallback for text sqlparser rejects.
        assert!(
            Parser::parse_sql(&PostgreSqlDialect {}, sql).is_ok(),
            "{name} parses"
        );
        let mut g = c.benchmark_group(format!("classify/{name}"));
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_function("uncached", |b| {
            b.iter(|| classify_uncached(black_box(sql), &allow))
        });
        classifier.classify(sql);
        g.bench_function("cached", |b| b.iter(|| classifier.classify(black_box(sql))));
        let mut key = Vec::new();
        g.bench_function("normalize", |b| {
            b.iter(|| inspect::normalize_bytes(black_box(sql), &mut key))
        });
        g.finish();
    }
}

criterion_group!(benches, bench_classify);
criterion_main!(benches);
