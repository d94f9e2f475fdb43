//! The sweeper: one task that wakes the idle sessions due to park, instead of a timer per
//! idle spell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;

/// The shortest time between two sweeps.
const SWEEP_GAP: Duration = Duration::from_millis(25);

/// Wakes the sessions that may have been idle long enough to park, twice per (shortest)
/// park delay: one sweep instead of a timer per idle spell. A session holding or waiting
/// for a server is never woken; nor is one whose last request began within its delay
/// (when statistics or the slow query log keep that time).
pub async fn sweep(shared: Arc<Shared>) {
    use crate::client::driver::{park_delay, pressed_anywhere};
    let mut last = Instant::now();
    loop {
        let after = shared.snapshot.load().config.general.park_idle_after;
        let Some(after) = crate::config::secs(after) else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        let shortest = park_delay(after, pressed_anywhere(), true);
        let period = (shortest / 2).clamp(SWEEP_GAP, Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            // A worker just went over the pressure mark (`driver::park`): sweep with
            // the shorter delays from now on, not after this sleep.
            _ = shared.park_pressure.notified() => {
                // But not sooner than `SWEEP_GAP` after the last sweep: idle sessions
                // that cannot park (LISTEN) go back to idle when nudged, and a worker
                // that hovers at the mark would otherwise notify again with each of them,
                // for a sweep right away, nudging them all again (stop 38: the worker and
                // the sweeper both at 100 % CPU).
                let since = last.elapsed();
                if since < SWEEP_GAP {
                    tokio::time::sleep(SWEEP_GAP - since).await;
                }
            }
        }
        last = Instant::now();
        // Under pressure now, or still: the delays are the pressed ones.
        let pressed = pressed_anywhere();
        let now = shared.metrics.started.elapsed().as_micros() as u64;
        shared.sessions.nudge_where(|id| {
            shared
                .admin
                .clients
                .with(id, |c| park_due(c, after, pressed, now))
                .unwrap_or(false)
        });
    }
}

/// Whether the sweeper wakes `c` to park, `now` microseconds after pgsluice started: idle
/// for its park delay (as far as its last request's start says), and not a session that
/// never parks (LISTEN, TLS: waking it only unparked and re-parked it, at every sweep; with
/// hundreds of listeners on a worker under pressure that kept the worker and the sweeper
/// busy, stop 38).
pub(super) fn park_due(
    c: &crate::registry::clients::ClientInfo,
    after: Duration,
    pressed: bool,
    now: u64,
) -> bool {
    use crate::client::driver::client_park_delay;
    use crate::registry::clients::ClientState;
    if c.never_parks() || c.state() != ClientState::Idle {
        return false;
    }
    let delay = client_park_delay(after, pressed, c);
    let due = now.saturating_sub(delay.as_micros() as u64);
    c.since_us().is_none_or(|s| s <= due)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweeper wakes an idle client once its park delay has passed since its last
    /// request began, never one that LISTENs (it cannot park) or one that is not idle.
    #[test]
    fn the_sweeper_wakes_idle_clients_past_their_delay_but_never_listeners() {
        use crate::registry::clients::{ClientInfo, ClientMeta, ClientState};
        let client = || {
            ClientInfo::new(
                7,
                "app".into(),
                "app".into(),
                Some(0),
                ClientMeta::default(),
                None,
            )
        };
        let after = Duration::from_secs(1);
        let idle = client();
        idle.set_since(1_000_000);
        assert!(
            !park_due(&idle, after, false, 1_500_000),
            "idle half its delay"
        );
        assert!(
            park_due(&idle, after, false, 2_000_000),
            "idle its whole delay"
        );
        let listener = client();
        listener.set_since(1_000_000);
        listener.set_never_parks();
        assert!(!park_due(&listener, after, false, 60_000_000));
        let busy = client();
        busy.set_since(1_000_000);
        busy.set_state(ClientState::Active);
        assert!(!park_due(&busy, after, false, 60_000_000));
    }
}
