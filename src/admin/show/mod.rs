//! The SHOW commands. Column names and order follow PgBouncer 1.18 where PgBouncer has
//! the command; columns of ours come after PgBouncer's. Where a PgBouncer column has no
//! meaning for pgsluice the value chosen is documented on the function.

mod config;
mod conns;
mod nodes;
mod stats;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

use super::command::{Show, USAGE};
use crate::protocol::build;
use crate::shared::Shared;

/// Writes the answer to a SHOW command (without ReadyForQuery).
pub(super) fn show(shared: &Shared, what: Show, out: &mut BytesMut) {
    let table = match what {
        Show::Help => {
            build::notice_detail(out, "Console usage", USAGE);
            build::command_complete(out, "SHOW");
            return;
        }
        Show::Pools => stats::pools(shared),
        Show::Stats => stats::stats(shared),
        Show::StatsTotals => stats::stats_totals(shared),
        Show::StatsAverages => stats::stats_averages(shared),
        Show::Totals => stats::totals(shared),
        Show::Latency => stats::latency(shared),
        Show::Clients => conns::clients(shared),
        Show::Servers => conns::servers(shared),
        Show::Pins => conns::pins(shared),
        Show::Prepared => conns::prepared(shared),
        Show::Databases => config::databases(shared),
        Show::Users => config::users(shared),
        Show::Config => config::config(shared),
        Show::Lists => config::lists(shared),
        Show::Version => config::version(),
        Show::Nodes => nodes::nodes(shared),
    };
    table.write(out, "SHOW");
}

/// `YYYY-MM-DD HH:MM:SS UTC`, as PgBouncer prints times.
pub(super) fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The wall-clock time of an `Instant`.
pub(super) fn wall(shared: &Shared, at: Instant) -> SystemTime {
    shared.metrics.wall(at)
}

/// The wall-clock time of a [`crate::registry::clients::ClientInfo`] time (µs since start).
pub(super) fn wall_us(shared: &Shared, us: u64) -> SystemTime {
    shared.metrics.started_wall + std::time::Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56
        assert_eq!(timestamp(t), "2024-02-29 12:34:56 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(timestamp(t), "2099-12-31 23:59:59 UTC");
    }
}
