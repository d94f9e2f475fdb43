//! TEMPORARY placeholder until the real inspector lands (being written now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Set { name: String, set_sql: String, reset_sql: String },
    Reset { name: String },
    ResetAll,
    DiscardAll,
    Pin(PinReason),
    Unpin(PinReason),
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason { Listen, AdvisoryLock, TempObject, HoldCursor, SqlPrepare, SetConfig, Unknown }
pub fn inspect(_sql: &str) -> Vec<Effect> { Vec::new() }
