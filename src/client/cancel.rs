//! Forwarding a client's CancelRequest to the server it is using (the key lookup is in
//! the client list, [`crate::registry::clients::Registry::cancel_target`]).

use tokio::io::AsyncWriteExt;

pub use crate::server::CancelTarget;

/// Sends a CancelRequest to a server. Errors are only logged: a cancel is best effort.
pub async fn send_cancel(target: CancelTarget) {
    let mut msg = [0u8; 16];
    msg[0..4].copy_from_slice(&16u32.to_be_bytes());
    msg[4..8].copy_from_slice(&80_877_102u32.to_be_bytes());
    msg[8..12].copy_from_slice(&target.pid.to_be_bytes());
    msg[12..16].copy_from_slice(&target.secret.to_be_bytes());
    let res = async {
        match &target.unix {
            Some(path) => {
                let mut s = tokio::net::UnixStream::connect(&**path).await?;
                s.write_all(&msg).await?;
                s.shutdown().await
            }
            None => {
                let mut s = tokio::net::TcpStream::connect(target.addr).await?;
                s.write_all(&msg).await?;
                s.shutdown().await
            }
        }
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), res).await {
        Ok(Ok(())) => tracing::debug!(server = %target.addr, "cancel request forwarded"),
        Ok(Err(e)) => tracing::warn!(server = %target.addr, "cancel request failed: {e}"),
        Err(_) => tracing::warn!(server = %target.addr, "cancel request timed out"),
    }
}
