#!/usr/bin/env python3
"""Interleave statements of several clients, to reproduce cross-client effects by hand.

    python3 integration/fidelity/interleave.py PORT 'A:SET datestyle TO postgres' \
        'A:SET datestyle TO ymd' 'B:SELECT 1' 'A:SHOW datestyle'

Each `X:` prefix names a client (its own connection to 127.0.0.1:PORT, user postgres,
database regression unless FIDELITY_DB says otherwise, opened at its first statement);
statements run in the order given, each autocommitted through the simple protocol, and
every answer (rows, command tag or error with its SQLSTATE) is printed. With pgsluice in
transaction mode and a pool of one server, a `B:` statement between two of A's gives A's
next statement a server that another client used, as in integration/fidelity/FINDINGS.md.
Libpq environment variables apply (PGDATESTYLE, PGOPTIONS, ...). Needs psycopg 3.
"""

import os
import sys

import psycopg


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    port = int(sys.argv[1])
    db = os.environ.get("FIDELITY_DB", "regression")
    conns = {}
    for step in sys.argv[2:]:
        who, sep, sql = step.partition(":")
        if not sep:
            sys.exit(f"not CLIENT:SQL: {step!r}")
        if who not in conns:
            conns[who] = psycopg.connect(host="127.0.0.1", port=port, user="postgres",
                                         dbname=db, autocommit=True)
        try:
            cur = conns[who].execute(sql, prepare=False)
            out = []
            while True:  # one result per statement of the query string
                out.append(cur.fetchall() if cur.description else cur.statusmessage)
                if not cur.nextset():
                    break
            out = out[0] if len(out) == 1 else out
        except psycopg.Error as e:
            out = f"ERROR {e.sqlstate}: {str(e).strip()}".replace("\n", " | ")
        print(f"{who}: {sql.strip()} -> {out}")


if __name__ == "__main__":
    main()
