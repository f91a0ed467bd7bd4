//! `authenticate`, `accept`, `nack` over a TCP socket, with octez's version selection (§10).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{Connection, ConnectionConfig};
use crate::handshake::{self, AuthError, AuthenticatedStream, ConnectionInfo, LocalConfig, PeerAnnounced};
use crate::message::Encoding;
use crate::telemetry;
use crate::wire::{Metadata, NackMotive, NetworkVersion};

/// distributed_db versions current octez supports (it announces the largest, protocol.md §10.1).
pub const SUPPORTED_DISTRIBUTED_DB_VERSIONS: &[u16] = &[0, 1, 2];
/// p2p versions current octez supports (it announces the largest).
pub const SUPPORTED_P2P_VERSIONS: &[u16] = &[0, 1];

/// octez's version selection (`P2p_connect_handler`, protocol.md §10.2 step 3): chain names must
/// be byte-equal; for each of ddb and p2p, our announced (largest) version if the peer's is at
/// least that, else the peer's if we support it. Otherwise the Nack motive to send.
pub fn select_version(local: &NetworkVersion, remote: &NetworkVersion) -> Result<NetworkVersion, NackMotive> {
    if local.chain_name != remote.chain_name {
        return Err(NackMotive::UnknownChainName);
    }
    let pick = |ours: u16, theirs: u16, supported: &[u16]| {
        if ours <= theirs {
            Some(ours)
        } else if supported.contains(&theirs) {
            Some(theirs)
        } else {
            None
        }
    };
    let distributed_db_version =
        pick(local.distributed_db_version, remote.distributed_db_version, SUPPORTED_DISTRIBUTED_DB_VERSIONS)
            .ok_or(NackMotive::DeprecatedDistributedDbVersion)?;
    let p2p_version =
        pick(local.p2p_version, remote.p2p_version, SUPPORTED_P2P_VERSIONS).ok_or(NackMotive::DeprecatedP2pVersion)?;
    Ok(NetworkVersion { chain_name: local.chain_name.clone(), distributed_db_version, p2p_version })
}

/// octez `authenticate` over a TCP stream, bounded by `timeout` (which also bounds the later
/// [`Authenticated::accept`], as octez's authentication timeout covers both). Dropping the
/// future abandons the handshake and closes the socket.
pub async fn authenticate<M: Metadata>(
    stream: TcpStream,
    local: Arc<LocalConfig<M>>,
    incoming: bool,
    timeout: Duration,
) -> Result<Authenticated<M>, AuthError> {
    authenticate_filtered(stream, local, incoming, timeout, |_| Ok(())).await
}

/// [`authenticate`] with a `filter` that sees the peer right after its clear-text connection
/// message passed the PoW check, and may refuse it (a ban list) before any X25519 work.
pub async fn authenticate_filtered<M: Metadata>(
    stream: TcpStream,
    local: Arc<LocalConfig<M>>,
    incoming: bool,
    timeout: Duration,
    filter: impl FnOnce(&PeerAnnounced<M>) -> Result<(), AuthError>,
) -> Result<Authenticated<M>, AuthError> {
    let now = Instant::now();
    // Saturating: a "forever" timeout such as Duration::MAX must not overflow.
    let deadline = now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
    let remote_addr = stream.peer_addr().ok();
    // Small handshake frames must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let local_version = local.version.clone();
    let inner =
        tokio::time::timeout_at(deadline, handshake::authenticate(stream, local, incoming, remote_addr, filter))
            .await
            .map_err(|_| AuthError::Timeout)?
            .inspect_err(|e| {
                if *e == AuthError::DecipherError {
                    metrics::counter!(telemetry::DECIPHER_FAILURES, "stage" => "handshake").increment(1);
                }
            })?;
    Ok(Authenticated { inner, deadline, local_version })
}

/// Opens a TCP connection to `addr` and authenticates (outgoing role), all within `timeout`.
pub async fn connect<M: Metadata>(
    addr: SocketAddr,
    local: Arc<LocalConfig<M>>,
    timeout: Duration,
) -> Result<Authenticated<M>, AuthError> {
    let start = Instant::now();
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| AuthError::Timeout)?
        .map_err(|e| AuthError::ConnectionRefused { addr, reason: e.to_string() })?;
    authenticate(stream, local, false, timeout.saturating_sub(start.elapsed())).await
}

/// An authenticated peer (octez `authenticate` returned): [`accept`](Self::accept) it or
/// [`nack`](Self::nack) it.
pub struct Authenticated<M> {
    inner: AuthenticatedStream<M, TcpStream>,
    deadline: Instant,
    local_version: NetworkVersion,
}

impl<M: Metadata> Authenticated<M> {
    /// What we know of the peer: id, point, announced version and port, metadata.
    pub fn info(&self) -> &ConnectionInfo<M> {
        self.inner.info()
    }

    /// The version both sides would use, or the Nack motive if there is none.
    pub fn negotiated_version(&self) -> Result<NetworkVersion, NackMotive> {
        select_version(&self.local_version, &self.info().announced_version)
    }

    /// octez `accept`: selects the version (on failure sends the Nack octez sends and returns
    /// `RejectedNoCommonProtocol`), exchanges Acks, then starts the connection's actors on the
    /// current actix arbiter with the queues and chunking of `config`. Must run inside an actix
    /// `System` or `Arbiter` (the actors are started there).
    pub async fn accept<E: Encoding>(self, config: ConnectionConfig) -> Result<Connection<E, M>, AuthError> {
        self.accept_with(config, None).await
    }

    /// [`Authenticated::accept`] for a node's connection: P2P-layer messages go to `control`.
    pub(crate) async fn accept_with<E: Encoding>(
        self,
        config: ConnectionConfig,
        control: Option<super::connection::ControlSink>,
    ) -> Result<Connection<E, M>, AuthError> {
        let version = match self.negotiated_version() {
            Ok(v) => v,
            Err(motive) => {
                let _ = self.inner.nack(motive, Vec::new()).await;
                return Err(AuthError::RejectedNoCommonProtocol { motive });
            }
        };
        let (stream, session, bytes) = tokio::time::timeout_at(self.deadline, self.inner.accept())
            .await
            .map_err(|_| AuthError::Timeout)?
            .inspect_err(|e| {
                if *e == AuthError::InvalidAuth {
                    metrics::counter!(telemetry::DECIPHER_FAILURES, "stage" => "ack").increment(1);
                }
            })?;
        for (phase, d) in [
            ("connection_message", bytes.connection_message),
            ("key_derivation", bytes.key_derivation),
            ("metadata", bytes.metadata),
            ("ack", bytes.ack),
        ] {
            metrics::histogram!(telemetry::HANDSHAKE_DURATION, "phase" => phase).record(d.as_secs_f64());
        }
        Ok(Connection::start(stream, session, version, config, bytes, control))
    }

    /// octez `nack`: sends a Nack with `motive` and up to 100 alternative points (a `Nack_v_0`
    /// to p2p_version 0 peers), then closes.
    pub async fn nack(self, motive: NackMotive, alternative_points: Vec<SocketAddr>) -> Result<(), AuthError> {
        self.inner.nack(motive, alternative_points).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(chain: &str, ddb: u16, p2p: u16) -> NetworkVersion {
        NetworkVersion { chain_name: chain.into(), distributed_db_version: ddb, p2p_version: p2p }
    }

    #[test]
    fn version_selection_follows_the_connect_handler() {
        let local = v("TEZOS_MAINNET", 2, 1);
        assert_eq!(select_version(&local, &v("TEZOS_MAINNET", 2, 1)), Ok(local.clone()));
        assert_eq!(select_version(&local, &v("TEZOS_MAINNET", 7, 9)), Ok(local.clone()));
        assert_eq!(select_version(&local, &v("TEZOS_MAINNET", 0, 0)), Ok(v("TEZOS_MAINNET", 0, 0)));
        assert_eq!(select_version(&local, &v("TEZOS_GHOSTNET", 2, 1)), Err(NackMotive::UnknownChainName));
        let newer = v("TEZOS_MAINNET", 5, 3);
        assert_eq!(select_version(&newer, &v("TEZOS_MAINNET", 4, 1)), Err(NackMotive::DeprecatedDistributedDbVersion));
        assert_eq!(select_version(&newer, &v("TEZOS_MAINNET", 2, 2)), Err(NackMotive::DeprecatedP2pVersion));
    }
}
