//! Sockets as the rest of pgsluice sees them: a client or server connection that is plain
//! TCP or TLS over TCP, behind one narrow API (see [`stream`]).

pub mod stream;

pub use stream::{ClientStream, ClientTls, ServerStream, Stream};
