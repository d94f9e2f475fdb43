//! What one session counts between publications: queries, bytes, errors and the times of
//! the query and transaction in flight. Published into the pool's statistics (the shard
//! of the session's worker thread) when a transaction ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::{C, PoolMetrics};
use super::slowlog::SlowLog;
use crate::registry::clients::ClientInfo;

/// A session's running counts. All methods are cheap no-ops when metrics are off.
///
/// Times are kept as microseconds since pgsluice started, so that the durations are plain
/// integer differences. The clock is read by the caller and passed in (`now`).
pub struct Tally {
    /// Count and publish (`metrics.enabled`).
    on: bool,
    /// Read the clock: metrics on or the slow query log on.
    timing: bool,
    pub pool: Arc<PoolMetrics>,
    /// The worker thread this session runs on (sessions never move).
    worker: usize,
    /// The pool statistics' start (a copy: read at every timed frame).
    started: Instant,
    /// When the query in flight started (µs since start; 0 = none).
    q_start: u64,
    /// When the transaction in flight started (µs since start; 0 = none).
    x_start: u64,
    /// The wait for a server before the query in flight, µs (for the slow query log).
    wait_before: u64,
    queries: u64,
    query_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    errors: Vec<[u8; 2]>,
    pub slow: Option<SlowLog>,
}

thread_local! {
    /// The last clock reading [`Tally::us`] converted on this thread: (reading, start it
    /// counts from, µs).
    static LAST_US: std::cell::Cell<Option<(Instant, Instant, u64)>> =
        const { std::cell::Cell::new(None) };
}

/// What a parked session's tally keeps ([`Tally::park`]).
pub struct ParkedTally {
    pool: Arc<PoolMetrics>,
    /// The slow query threshold, µs (0: no slow query log).
    slow_us: u64,
    on: bool,
}

/// A query that reached the slow-query threshold: its wait and its time on the server.
pub struct Slow {
    pub wait: Duration,
    pub server: Duration,
}

impl Tally {
    /// Counts from the pool statistics' start (`PoolMetrics::started`).
    pub fn new(pool: Arc<PoolMetrics>, on: bool, slow: Option<Duration>) -> Tally {
        Tally {
            on,
            timing: on || slow.is_some(),
            started: pool.started,
            pool,
            worker: crate::current_worker(),
            q_start: 0,
            x_start: 0,
            wait_before: 0,
            queries: 0,
            query_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            errors: Vec::new(),
            slow: slow.map(SlowLog::new),
        }
    }

    /// The session parks (between transactions, see `client/lot.rs`): what is pending is
    /// published and the counts, the times of the query in flight (none) and the slow
    /// query log's copy of the last text go; what makes a tally is kept.
    pub fn park(mut self, info: &ClientInfo) -> ParkedTally {
        self.flush(info);
        ParkedTally {
            pool: self.pool,
            slow_us: self.slow.map_or(0, |s| s.threshold_us.max(1)),
            on: self.on,
        }
    }

    /// A parked tally back on its worker (the session's, where the lot gives it its task).
    pub fn unpark(p: ParkedTally) -> Tally {
        let slow = (p.slow_us != 0).then(|| Duration::from_micros(p.slow_us));
        Tally::new(p.pool, p.on, slow)
    }

    /// Microseconds since pgsluice started (never 0, which means "none" here). Worked out
    /// once per reading of the clock on this thread: a session loop reads it once per
    /// round and passes the same `now` to every session it polls in the round, which call
    /// this three or four times per transaction each (an `Instant` subtraction and a
    /// division each time, ~60 instructions).
    #[inline]
    pub fn us(&self, now: Instant) -> u64 {
        LAST_US.with(|last| match last.get() {
            Some((at, from, us)) if at == now && from == self.started => us,
            _ => {
                let us = (now.saturating_duration_since(self.started).as_micros() as u64).max(1);
                last.set(Some((now, self.started, us)));
                us
            }
        })
    }

    /// Whether the clock is needed at all (statistics or the slow query log on).
    #[inline]
    pub fn timing(&self) -> bool {
        self.timing
    }

    /// The client starts waiting for a server. Returns the wait's start (0 when not
    /// timing) for [`Tally::attached`].
    #[inline]
    pub fn wait_start(&mut self, now: Instant) -> u64 {
        if !self.timing {
            return 0;
        }
        self.us(now)
    }

    /// The client got its server; `t0` is what [`Tally::wait_start`] returned (0 when
    /// not timing).
    #[inline]
    pub fn attached(&mut self, t0: u64, now: Instant, info: &ClientInfo) {
        if t0 == 0 {
            return;
        }
        let now = self.us(now);
        let waited = now.saturating_sub(t0);
        self.wait_before = waited;
        if self.on {
            self.pool.shard(self.worker).observe_wait(waited);
        }
        self.q_start = now;
        if self.x_start == 0 {
            self.x_start = now;
        }
        info.set_since(now);
    }

    /// A client frame goes to the server: the start of a query if none is in flight.
    #[inline]
    pub fn client_frame(&mut self, now: Instant, info: &ClientInfo) {
        if self.timing && self.q_start == 0 {
            let now = self.us(now);
            self.q_start = now;
            if self.x_start == 0 {
                self.x_start = now;
            }
            info.set_since(now);
        }
    }

    /// The server sent ReadyForQuery with `status`; `outstanding` more are still owed.
    /// Returns the query's times when it reached the slow-query threshold.
    #[inline]
    pub fn ready(
        &mut self,
        status: u8,
        outstanding: u32,
        now: Instant,
        info: &ClientInfo,
    ) -> Option<Slow> {
        if self.q_start == 0 {
            return None;
        }
        let now = self.us(now);
        let us = now.saturating_sub(self.q_start);
        if self.on {
            self.pool.shard(self.worker).observe_query(us);
            self.queries += 1;
            self.query_us += us;
        }
        let wait = std::mem::take(&mut self.wait_before);
        let slow = self
            .slow
            .as_ref()
            .filter(|s| wait + us >= s.threshold_us)
            .map(|_| Slow {
                wait: Duration::from_micros(wait),
                server: Duration::from_micros(us),
            });
        if status == b'I' && self.x_start != 0 {
            let took = now.saturating_sub(std::mem::take(&mut self.x_start));
            self.end_transaction(took, info);
        }
        if outstanding > 0 {
            self.q_start = now;
            if self.x_start == 0 {
                self.x_start = now;
            }
        } else {
            self.q_start = 0;
        }
        slow
    }

    /// Publishes what this transaction did (`us`: how long it held its server).
    fn end_transaction(&mut self, us: u64, info: &ClientInfo) {
        if !self.on {
            return;
        }
        let s = self.pool.shard(self.worker);
        s.observe_xact(us);
        s.add(C::XactUs, us);
        s.add(C::QueryUs, std::mem::take(&mut self.query_us));
        s.add(C::BytesIn, std::mem::take(&mut self.bytes_in));
        s.add(C::BytesOut, std::mem::take(&mut self.bytes_out));
        info.add_counts(1, std::mem::take(&mut self.queries));
        if !self.errors.is_empty() {
            self.pool.add_errors(&self.errors);
            self.errors.clear();
        }
    }

    /// The server sent an ErrorResponse with this body.
    pub fn error(&mut self, body: &[u8]) {
        if !self.on {
            return;
        }
        if let Some(class) = sqlstate_class(body) {
            self.errors.push(class);
        }
    }

    /// Publishes what is left when the session ends (bytes of an unfinished
    /// transaction, errors, queries outside transactions).
    pub fn flush(&mut self, info: &ClientInfo) {
        if !self.on {
            return;
        }
        let s = self.pool.shard(self.worker);
        s.add(C::QueryUs, std::mem::take(&mut self.query_us));
        s.add(C::BytesIn, std::mem::take(&mut self.bytes_in));
        s.add(C::BytesOut, std::mem::take(&mut self.bytes_out));
        info.add_counts(0, std::mem::take(&mut self.queries));
        if !self.errors.is_empty() {
            self.pool.add_errors(&self.errors);
            self.errors.clear();
        }
    }
}

/// The SQLSTATE class (first two characters of the `C` field) of an ErrorResponse body.
pub fn sqlstate_class(mut body: &[u8]) -> Option<[u8; 2]> {
    while let Some((&kind, rest)) = body.split_first() {
        if kind == 0 {
            return None;
        }
        let end = rest.iter().position(|&b| b == 0)?;
        if kind == b'C' {
            return match rest[..end] {
                [a, b, ..] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                    Some([a, b])
                }
                _ => None,
            };
        }
        body = &rest[end + 1..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolKey;

    #[test]
    fn class_of_error_body() {
        assert_eq!(
            sqlstate_class(b"SERROR\0VERROR\0C42P01\0Mno\0\0"),
            Some(*b"42")
        );
        assert_eq!(sqlstate_class(b"SERROR\0Mno\0\0"), None);
        assert_eq!(sqlstate_class(b"C4"), None);
        assert_eq!(sqlstate_class(b""), None);
    }

    fn tally(started: Instant) -> Tally {
        let key = PoolKey {
            database: "app".into(),
            user: "alice".into(),
            node: 0,
        };
        Tally::new(Arc::new(PoolMetrics::new(key, 1, started)), true, None)
    }

    /// The converted reading kept per thread answers only for the same reading and the
    /// same start: tallies counting from different starts, and later readings, get their
    /// own microseconds.
    #[test]
    fn microseconds_since_start_for_each_reading_and_start() {
        let early = Instant::now();
        let late = early + Duration::from_millis(5);
        let (a, b) = (tally(early), tally(late));
        let now = late + Duration::from_millis(2);
        assert_eq!(a.us(now), 7_000);
        assert_eq!(b.us(now), 2_000);
        assert_eq!(a.us(now), 7_000);
        assert_eq!(a.us(now + Duration::from_micros(3)), 7_003);
        assert_eq!(b.us(late), 1, "never 0");
    }
}
