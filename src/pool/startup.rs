//! What a login takes from its pool: the server's settings (with their ParameterStatus
//! messages encoded once) and the shared copy of its startup settings.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, Pool, PoolError};
use crate::protocol::greeting::ServerParams;
use crate::server::varcache::Gucs;

impl Pool {
    /// The shared copy of the settings a client's startup values make (`(name, value)`
    /// in the order they apply; see `Inner::interned`).
    /// The values are borrowed: copied only when the pool has not seen them before.
    pub fn intern_settings<K: AsRef<str>, V: AsRef<str>>(&self, values: &[(K, V)]) -> Arc<Gucs> {
        const KEEP: usize = 16;
        let same = |known: &[(String, String)]| {
            known.len() == values.len()
                && known
                    .iter()
                    .zip(values)
                    .all(|((k, v), (k2, v2))| k == k2.as_ref() && v == v2.as_ref())
        };
        let known = |g: &Inner| {
            g.interned
                .iter()
                .find(|(v, _)| same(v))
                .map(|(_, a)| a.clone())
        };
        if let Some(found) = known(&self.lock()) {
            return found;
        }
        let mut gucs = Gucs::default();
        for (name, value) in values {
            gucs.set_value(name.as_ref(), value.as_ref());
        }
        let mut g = self.lock();
        if let Some(found) = known(&g) {
            return found;
        }
        // The same settings from other values (another order, another case).
        let arc = g
            .interned
            .iter()
            .find(|(_, a)| **a == gucs)
            .map_or_else(|| Arc::new(gucs), |(_, a)| a.clone());
        if g.interned.len() == KEEP {
            g.interned.pop_front();
        }
        let owned = values
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        g.interned.push_back((owned, arc.clone()));
        arc
    }

    /// Server parameters reported by this pool's connections, connecting one if needed.
    pub async fn server_params(
        self: &Arc<Self>,
        wait: Option<Duration>,
    ) -> Result<Arc<ServerParams>, PoolError> {
        if let Some(p) = self.lock().params.clone() {
            return Ok(p);
        }
        let lease = self.checkout(wait).await?;
        let params = lease.params.clone();
        lease.checkin();
        let mut g = self.lock();
        let p = g
            .params
            .get_or_insert_with(|| Arc::new(ServerParams::new(params)));
        Ok(p.clone())
    }
}
