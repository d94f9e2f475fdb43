//! Sockets as the rest of pgsluice sees them: a client or server connection that is plain
//! TCP or TLS over TCP, behind one narrow API. The types live with the TLS code that makes
//! them ([`crate::tls::stream`]); this is the name the session and the server code use.

pub use crate::tls::stream::{self, ClientStream, ClientTls, ServerStream, Stream, TlsIo};
