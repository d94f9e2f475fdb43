//! Who is connected and what the console told them: the client list SHOW CLIENTS reads,
//! cancel keys, and the PAUSE/DISABLE/KILL/SHUTDOWN state sessions obey. Shared state
//! only; the console that changes it is in `admin`, the sessions that obey it in `client`.

pub mod clients;
pub mod control;

pub use control::Control;
