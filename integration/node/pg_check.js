#!/usr/bin/env node
// node-postgres (npm `pg`) with named prepared statements, through pgsluice.
//
// Usage: node pg_check.js URL [CONNECTIONS] [ROUNDS]
//
// A query config with a name ({name: 'q1', text, values}) is parsed once per
// connection: node-postgres sends Parse on its first use and from then on only
// Bind/Describe/Execute/Sync. Each connection gives the names q1..q5 to the
// five queries in its own shuffled order, so one name stands for different
// texts on different connections. Half the connections run every round in an
// explicit transaction (BEGIN ... COMMIT), half in autocommit. Every value is
// checked: scalar queries, multi-row results, an error from a named statement
// (division by zero) with the statement used again afterwards, and writes in a
// transaction read back inside and after it, and a rolled-back insert that
// must leave no row.
//
// node-postgres sends every parameter untyped (type oid 0), so one text has
// one set of parameter types here; the JDBC check covers one text bound with
// different types.
//
// Exits 0 only if every result matched; prints a summary line either way.
// Exit 1: a mismatch, an error or the time bound (50 s); 2: usage, or pg is
// not installed (npm ci --prefix integration/node).
'use strict';

let pg;
try {
  pg = require('pg');
} catch (e) {
  // The Rust test turns this into a failure, not a skip.
  console.error(
    `pg_check: node-postgres is not installed (${e.message}); ` +
      'install it with: npm ci --prefix integration/node',
  );
  process.exit(2);
}

const TABLE = 'pg_check_t';
const DEADLINE_MS = 50000;

const QUERIES = {
  mul: 'SELECT $1::int * 2',
  cat: "SELECT $1::text || 'x'",
  series: 'SELECT count(*), coalesce(sum(g), 0) FROM generate_series(1, $1::int) g',
  rows: "SELECT g, 'r' || g FROM generate_series(1, $1::int) g ORDER BY g",
  two: 'SELECT $1::int8 + $2::int8, $3::text',
};

const tally = { checked: 0, failures: [] };

function expect(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) {
    tally.failures.push(`${what}: got ${g}, want ${w}`);
  } else {
    tally.checked += 1;
  }
}

// A small seeded generator (mulberry32), so a failing run can be repeated.
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  const shuffle = (xs) => {
    const out = xs.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = int(0, i);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  };
  return { int, shuffle };
}

// The rows (as arrays) of the named statement `name` with `text`, bound to `values`.
function named(client, name, text, values) {
  return client.query({ name, text, values, rowMode: 'array' }).then((res) => res.rows);
}

async function runOne(client, names, where, kind, r) {
  const q = (values) => named(client, names[kind], QUERIES[kind], values);
  if (kind === 'mul') {
    const x = r.int(-100000, 100000);
    expect(where, await q([x]), [[x * 2]]);
  } else if (kind === 'cat') {
    const s = `${where}-${r.int(0, 1e6)}`;
    expect(where, await q([s]), [[s + 'x']]);
  } else if (kind === 'series') {
    // count(*) and sum() are int8: node-postgres returns them as strings.
    const n = r.int(0, 500);
    expect(where, await q([n]), [[String(n), String((n * (n + 1)) / 2)]]);
  } else if (kind === 'rows') {
    const n = r.int(1, 20);
    const want = Array.from({ length: n }, (_, i) => [i + 1, `r${i + 1}`]);
    expect(where, await q([n]), want);
  } else if (kind === 'two') {
    const a = r.int(0, 1000);
    const b = r.int(0, 1000);
    expect(where, await q([a, b, where]), [[String(a + b), where]]);
  }
}

// A named statement that fails (22012), then the same one succeeding.
async function division(client, where, r) {
  const q = (d) => named(client, 'div', 'SELECT 1000 / $1::int', [d]);
  try {
    const rows = await q(0);
    tally.failures.push(`${where}: 1000 / 0 returned ${JSON.stringify(rows)}, want 22012`);
  } catch (e) {
    expect(`${where} error code`, e.code, '22012');
  }
  const d = r.int(1, 100);
  expect(`${where} after the error`, await q(d), [[Math.floor(1000 / d)]]);
}

// 30 rows inserted in a transaction, then an insert rolled back.
async function writes(client, cid) {
  const countText = `SELECT count(*), coalesce(sum(i), 0) FROM ${TABLE} WHERE cid = $1`;
  const count = async (what, want) =>
    expect(`conn ${cid} ${what}`, await named(client, 'count', countText, [cid]), [want]);
  const insertText = `INSERT INTO ${TABLE} (cid, i, v) VALUES ($1, $2, $3)`;
  const insert = (i, v) => named(client, 'insert', insertText, [cid, i, v]);

  await client.query('BEGIN');
  for (let i = 0; i < 30; i++) await insert(i, `v${cid}-${i}`);
  await count('writes (in transaction)', ['30', '435']);
  await client.query('COMMIT');
  await count('writes (after commit)', ['30', '435']);

  await client.query('BEGIN');
  await insert(99, 'gone');
  await count('insert (before rollback)', ['31', '534']);
  await client.query('ROLLBACK');
  await count('insert (after rollback)', ['30', '435']);
  const rowText = `SELECT v FROM ${TABLE} WHERE cid = $1 AND i = $2`;
  const row = await named(client, 'row', rowText, [cid, 17]);
  expect(`conn ${cid} row 17`, row, [[`v${cid}-17`]]);
}

async function connect(url) {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 10000,
    query_timeout: 30000,
  });
  await client.connect();
  return client;
}

async function connection(url, cid, rounds) {
  const r = rng(3000 + cid);
  const inTransactions = cid % 2 === 1;
  const kinds = Object.keys(QUERIES);
  // Per-connection names: q1 is a different query on different connections.
  const names = {};
  r.shuffle(kinds).forEach((kind, i) => {
    names[kind] = `q${i + 1}`;
  });
  const client = await connect(url);
  try {
    for (let round = 0; round < rounds; round++) {
      const where = `conn ${cid} round ${round}`;
      if (inTransactions) await client.query('BEGIN');
      for (const kind of r.shuffle(kinds)) {
        await runOne(client, names, `${where} ${kind}`, kind, r);
      }
      if (inTransactions) await client.query('COMMIT');
      if (round % 10 === 5) await division(client, `${where} division`, r);
    }
    await writes(client, cid);
    const parsed = client.connection && client.connection.parsedStatements;
    if (parsed && Object.keys(parsed).length < kinds.length) {
      const names = JSON.stringify(Object.keys(parsed));
      tally.failures.push(`conn ${cid}: node-postgres parsed only ${names}`);
    }
  } finally {
    await client.end();
  }
}

async function run(url, conns, rounds) {
  const setup = await connect(url);
  try {
    await setup.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await setup.query(`CREATE TABLE ${TABLE} (cid int, i int, v text)`);
  } finally {
    await setup.end();
  }
  await Promise.all(
    Array.from({ length: conns }, (_, cid) =>
      connection(url, cid, rounds).catch((e) => {
        tally.failures.push(`conn ${cid}: ${e.code || ''} ${e.stack || e}`);
      }),
    ),
  );
}

function report(conns, rounds) {
  const version = require('pg/package.json').version;
  const status = tally.failures.length === 0 ? 'OK' : 'FAILED';
  console.log(
    `pg_check ${status}: node-postgres ${version} (node ${process.version}), ` +
      `${conns} connections x ${rounds} rounds, ` +
      `named statements: ${tally.checked} results checked, ${tally.failures.length} failures`,
  );
  for (const msg of tally.failures.slice(0, 20)) console.log('  ' + msg);
  process.exit(tally.failures.length === 0 ? 0 : 1);
}

function main() {
  const [url, conns = '8', rounds = '40'] = process.argv.slice(2);
  if (!url) {
    console.error('usage: node pg_check.js URL [CONNECTIONS] [ROUNDS]');
    process.exit(2);
  }
  const timer = setTimeout(() => {
    tally.failures.push(`not done after ${DEADLINE_MS / 1000} s`);
    report(Number(conns), Number(rounds));
  }, DEADLINE_MS);
  run(url, Number(conns), Number(rounds))
    .catch((e) => tally.failures.push(`setup: ${e.stack || e}`))
    .finally(() => {
      clearTimeout(timer);
      report(Number(conns), Number(rounds));
    });
}

main();
