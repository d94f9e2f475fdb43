#!/usr/bin/env python3
"""The causal LSN token through pgsluice, with psycopg 3.

Usage: causal_check.py POOLER_URL LAGGING_REPLICA_PORT

Needs pgsluice with routing.report_write_lsn = true, and a replica that applies
WAL late (recovery_min_apply_delay) as the only replica. Connection A inserts
a row and reads the ParameterStatus pgsluice.write_lsn that pgsluice sends with
the COMMIT's answer. Connection B, which never wrote, first reads without the
token (served by the lagging replica: the row is not there yet, which is why
the token exists), then says SET pgsluice.min_lsn = '<token>' and reads again:
it must see the row, wherever it is served from.

Exits 0 when all of that holds; prints what it saw either way.
"""

import sys

import psycopg


def main():
    url, lagging = sys.argv[1], sys.argv[2]
    a = psycopg.connect(url, autocommit=True)
    b = psycopg.connect(url, autocommit=True)
    b.execute("SELECT 1")
    a.execute("CREATE TABLE IF NOT EXISTS causal (id int)")
    a.execute("INSERT INTO causal VALUES (42)")
    token = a.info.parameter_status("pgsluice.write_lsn")
    print(f"token after the write: {token}")
    if not token or "/" not in token:
        print("causal_check FAILED: no pgsluice.write_lsn after a committed write")
        return 1
    port, n = b.execute(
        "SELECT inet_server_port()::text, (SELECT count(*) FROM pg_class WHERE relname = 'causal')"
    ).fetchone()
    print(f"without the token: served by {port}, table visible: {n}")
    if port != lagging or n != 0:
        print("causal_check FAILED: expected the lagging replica without the table")
        return 1
    b.execute(f"SET pgsluice.min_lsn = '{token}'")
    port, n = b.execute(
        "SELECT inet_server_port()::text, (SELECT count(*) FROM causal)"
    ).fetchone()
    print(f"with the token: served by {port}, rows: {n}")
    if n != 1:
        print("causal_check FAILED: the write was not visible with the token")
        return 1
    print("causal_check OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
