// pgjdbc with server-side prepared statements from the first execution, through pgsluice.
//
// Usage: java -cp /usr/share/java/postgresql.jar integration/jdbc/JdbcCheck.java URL \
//            [CONNECTIONS] [ROUNDS]
//
// URL is postgres://user:password@host:port/db (or a jdbc:postgresql: URL). Every
// connection has prepareThreshold=1: pgjdbc parses each PreparedStatement as a named
// statement (S_1, S_2, ... counted per connection, so one name stands for different
// queries on different connections) on its first execution and keeps it in the
// connection's statement cache; a later prepareStatement of the same text only Binds
// and Executes. Half the connections run in autocommit, half with autocommit off
// (pgjdbc sends BEGIN before the first statement, and the thread commits every round).
// Every value is checked: scalar queries, multi-row results, one text bound with
// different parameter types (pgjdbc parses it again, under a new name, when the types
// change, and closes the old one), an error from a named statement (division by zero)
// with the statement used again afterwards, a batch insert (pipelined Bind/Execute) in
// a transaction read back inside and after it, and a rolled-back insert that must
// leave no row.
//
// Exits 0 only if every result matched; prints a summary line either way.
// Exit 1: a mismatch, an error or the time bound (50 s); 2: usage. Without pgjdbc on
// the class path (apt-get install libpostgresql-jdbc-java) java cannot compile this
// file and exits 1.

import java.math.BigDecimal;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

public class JdbcCheck {
    static final String TABLE = "jdbc_check_t";
    static final long DEADLINE_MS = 50_000;

    static final String MUL = "SELECT ?::int * 2";
    static final String CAT = "SELECT ?::text || 'x'";
    static final String SERIES =
            "SELECT count(*), coalesce(sum(g), 0) FROM generate_series(1, ?) g";
    static final String ROWS = "SELECT g, 'r' || g FROM generate_series(1, ?::int) g ORDER BY g";
    static final String TWO = "SELECT ?::int8 + ?::int8, ?::text";
    // One text, bound as int4, int8, varchar, float8 and numeric: the server names the type.
    static final String TYPED = "SELECT pg_typeof(x)::text, x::text FROM (SELECT ? AS x) s";
    static final String DIV = "SELECT 1000 / ?::int";

    static final AtomicInteger checked = new AtomicInteger();
    static final List<String> failures = Collections.synchronizedList(new ArrayList<>());

    static void expect(String what, Object got, Object want) {
        if (Objects.equals(got, want)) {
            checked.incrementAndGet();
        } else {
            failures.add(what + ": got " + got + ", want " + want);
        }
    }

    /** The rows of a query with its parameters set by {@code bind}, as lists of strings. */
    interface Binder {
        void bind(PreparedStatement ps) throws SQLException;
    }

    static List<List<String>> query(Connection c, String sql, Binder b) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            b.bind(ps);
            List<List<String>> rows = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                int n = rs.getMetaData().getColumnCount();
                while (rs.next()) {
                    List<String> row = new ArrayList<>();
                    for (int i = 1; i <= n; i++) {
                        row.add(rs.getString(i));
                    }
                    rows.add(row);
                }
            }
            if (!ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare()) {
                failures.add("not a server-side statement: " + sql);
            }
            return rows;
        }
    }

    static List<List<String>> rows(String... cells) {
        return List.of(List.of(cells));
    }

    static void runOne(Connection c, String where, String kind, Random rng) throws SQLException {
        switch (kind) {
            case "mul" -> {
                int x = rng.nextInt(200_001) - 100_000;
                expect(where, query(c, MUL, ps -> ps.setInt(1, x)), rows(String.valueOf(x * 2)));
            }
            case "cat" -> {
                String s = where + "-" + rng.nextInt(1_000_000);
                expect(where, query(c, CAT, ps -> ps.setString(1, s)), rows(s + "x"));
            }
            case "series" -> {
                int n = rng.nextInt(501);
                long sum = (long) n * (n + 1) / 2;
                List<List<String>> want = rows(String.valueOf(n), String.valueOf(sum));
                expect(where, query(c, SERIES, ps -> ps.setInt(1, n)), want);
            }
            case "rows" -> {
                int n = 1 + rng.nextInt(20);
                List<List<String>> want = new ArrayList<>();
                for (int g = 1; g <= n; g++) {
                    want.add(List.of(String.valueOf(g), "r" + g));
                }
                expect(where, query(c, ROWS, ps -> ps.setInt(1, n)), want);
            }
            case "two" -> {
                long a = rng.nextInt(1001);
                long b = rng.nextInt(1001);
                expect(where, query(c, TWO, ps -> {
                    ps.setLong(1, a);
                    ps.setLong(2, b);
                    ps.setString(3, where);
                }), rows(String.valueOf(a + b), where));
            }
            case "typed" -> {
                int x = rng.nextInt(1000);
                String type;
                String text;
                Binder bind;
                switch (rng.nextInt(5)) {
                    case 0 -> {
                        type = "integer";
                        text = String.valueOf(x);
                        bind = ps -> ps.setInt(1, x);
                    }
                    case 1 -> {
                        type = "bigint";
                        text = String.valueOf(x);
                        bind = ps -> ps.setLong(1, x);
                    }
                    case 2 -> {
                        type = "character varying";
                        text = "s" + x;
                        bind = ps -> ps.setString(1, "s" + x);
                    }
                    case 3 -> {
                        type = "double precision";
                        text = x + ".5";
                        bind = ps -> ps.setDouble(1, x + 0.5);
                    }
                    default -> {
                        type = "numeric";
                        text = x + ".25";
                        bind = ps -> ps.setBigDecimal(1, new BigDecimal(x + ".25"));
                    }
                }
                expect(where + " as " + type, query(c, TYPED, bind), rows(type, text));
            }
            default -> throw new IllegalArgumentException(kind);
        }
    }

    /** A named statement that fails (22012), then the same one succeeding. */
    static void division(Connection c, String where, Random rng) throws SQLException {
        try {
            List<List<String>> got = query(c, DIV, ps -> ps.setInt(1, 0));
            failures.add(where + ": 1000 / 0 returned " + got + ", want division_by_zero");
        } catch (SQLException e) {
            expect(where + " error code", e.getSQLState(), "22012");
            if (!c.getAutoCommit()) {
                c.rollback();
            }
        }
        int d = 1 + rng.nextInt(100);
        List<List<String>> got = query(c, DIV, ps -> ps.setInt(1, d));
        expect(where + " after the error", got, rows(String.valueOf(1000 / d)));
        if (!c.getAutoCommit()) {
            c.commit();
        }
    }

    /** The row count and sum of i for {@code cid}, checked against {@code want}. */
    static void count(Connection c, int cid, String what, String... want) throws SQLException {
        String sql = "SELECT count(*), coalesce(sum(i), 0) FROM " + TABLE + " WHERE cid = ?";
        expect("conn " + cid + " " + what, query(c, sql, ps -> ps.setInt(1, cid)), rows(want));
    }

    /** 30 rows by a batch insert in a transaction, then an insert rolled back. */
    static void writes(Connection c, int cid) throws SQLException {
        boolean autocommit = c.getAutoCommit();
        String insert = "INSERT INTO " + TABLE + " (cid, i, v) VALUES (?, ?, ?)";
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement(insert)) {
            for (int i = 0; i < 30; i++) {
                ps.setInt(1, cid);
                ps.setInt(2, i);
                ps.setString(3, "v" + cid + "-" + i);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            expect("conn " + cid + " batch update counts", counts.length, 30);
        }
        count(c, cid, "writes (in transaction)", "30", "435");
        c.commit();
        count(c, cid, "writes (after commit)", "30", "435");
        c.commit();

        try (PreparedStatement ps = c.prepareStatement(insert)) {
            ps.setInt(1, cid);
            ps.setInt(2, 99);
            ps.setString(3, "gone");
            expect("conn " + cid + " insert", ps.executeUpdate(), 1);
        }
        count(c, cid, "insert (before rollback)", "31", "534");
        c.rollback();
        count(c, cid, "insert (after rollback)", "30", "435");
        String row = "SELECT v FROM " + TABLE + " WHERE cid = ? AND i = ?";
        expect("conn " + cid + " row 17", query(c, row, ps -> {
            ps.setInt(1, cid);
            ps.setInt(2, 17);
        }), rows("v" + cid + "-17"));
        c.commit();
        c.setAutoCommit(autocommit);
    }

    static void connection(String url, Properties props, int cid, int rounds) throws SQLException {
        Random rng = new Random(4000 + cid);
        try (Connection c = DriverManager.getConnection(url, props)) {
            int threshold = c.unwrap(org.postgresql.PGConnection.class).getPrepareThreshold();
            expect("conn " + cid + " prepareThreshold", threshold, 1);
            c.setAutoCommit(cid % 2 == 0);
            // Per-connection order of first use, so S_<n> stands for different queries
            // on different connections.
            List<String> kinds =
                    new ArrayList<>(List.of("mul", "cat", "series", "rows", "two", "typed"));
            for (int r = 0; r < rounds; r++) {
                Collections.shuffle(kinds, rng);
                for (String kind : kinds) {
                    runOne(c, "conn " + cid + " round " + r + " " + kind, kind, rng);
                }
                if (!c.getAutoCommit()) {
                    c.commit();
                }
                if (r % 10 == 5) {
                    division(c, "conn " + cid + " round " + r + " division", rng);
                }
            }
            writes(c, cid);
        }
    }

    /** postgres://user:password@host:port/db as a JDBC URL and properties. */
    static String jdbcUrl(String url, Properties props) {
        if (url.startsWith("jdbc:")) {
            return url;
        }
        URI u = URI.create(url);
        String info = u.getRawUserInfo();
        if (info != null) {
            int colon = info.indexOf(':');
            props.setProperty("user", decode(colon < 0 ? info : info.substring(0, colon)));
            if (colon >= 0) {
                props.setProperty("password", decode(info.substring(colon + 1)));
            }
        }
        return "jdbc:postgresql://" + u.getHost() + ":" + u.getPort() + u.getRawPath();
    }

    static String decode(String s) {
        return URLDecoder.decode(s, StandardCharsets.UTF_8);
    }

    static void report(String version, int conns, int rounds) {
        boolean ok = failures.isEmpty();
        System.out.printf(
                "jdbc_check %s: pgjdbc %s (java %s), %d connections x %d rounds, "
                        + "prepareThreshold=1: %d results checked, %d failures%n",
                ok ? "OK" : "FAILED", version, System.getProperty("java.version"), conns, rounds,
                checked.get(), failures.size());
        synchronized (failures) {
            failures.stream().limit(20).forEach(m -> System.out.println("  " + m));
        }
        System.out.flush();
        Runtime.getRuntime().halt(ok ? 0 : 1);
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: JdbcCheck URL [CONNECTIONS] [ROUNDS]");
            System.exit(2);
        }
        String version = org.postgresql.util.DriverInfo.DRIVER_VERSION;
        int conns = args.length > 1 ? Integer.parseInt(args[1]) : 8;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 40;
        Properties props = new Properties();
        String url = jdbcUrl(args[0], props);
        props.setProperty("prepareThreshold", "1");
        props.setProperty("connectTimeout", "10");
        props.setProperty("loginTimeout", "10");
        props.setProperty("socketTimeout", "30");

        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(DEADLINE_MS);
            } catch (InterruptedException e) {
                return;
            }
            failures.add("not done after " + DEADLINE_MS / 1000 + " s");
            report(version, conns, rounds);
        });
        watchdog.setDaemon(true);
        watchdog.start();

        try (Connection c = DriverManager.getConnection(url, props);
                Statement st = c.createStatement()) {
            st.execute("DROP TABLE IF EXISTS " + TABLE);
            st.execute("CREATE TABLE " + TABLE + " (cid int, i int, v text)");
        } catch (SQLException e) {
            failures.add("setup: " + e);
            report(version, conns, rounds);
        }
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < conns; t++) {
            int cid = t;
            threads.add(new Thread(() -> {
                try {
                    connection(url, props, cid, rounds);
                } catch (Exception e) {
                    failures.add("conn " + cid + ": " + e);
                }
            }));
        }
        threads.forEach(Thread::start);
        for (Thread t : threads) {
            t.join();
        }
        report(version, conns, rounds);
    }
}
