//! Admission per source, pure: how many handshakes in progress and connections one address, and
//! one network (/24 for IPv4, /64 for IPv6), may hold at once. The listener asks before it reads
//! a byte of a new socket, so a flood from one place costs it one `accept` and one `close` per
//! socket, and never the slots an honest peer elsewhere needs.
//!
//! octez bounds handshakes in progress only in total (`max_incoming_connections`: 20), so one
//! address can take them all; the limits here sit beside that total. Defaults, and why:
//!
//! | limit | default | reasoning |
//! |---|---|---|
//! | handshakes in progress per address | 4 | an honest node has one at a time; a few nodes behind one NAT fit |
//! | handshakes in progress per network | 10 | half of the 20 slots: one network can never take them all |
//! | connections per address | 8 | a Tezos node rarely shares its address with more than a few others |
//! | connections per network | 25 | a quarter of octez's default `max_connections` (100): one provider's range cannot fill the node |

use std::collections::HashMap;
use std::net::IpAddr;

/// The per-source limits (see the module documentation for the defaults' reasoning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Most incoming handshakes in progress from one address.
    pub max_pending_per_ip: usize,
    /// Most incoming handshakes in progress from one network.
    pub max_pending_per_network: usize,
    /// Most connections (incoming and outgoing) with one address.
    pub max_connections_per_ip: usize,
    /// Most connections with one network.
    pub max_connections_per_network: usize,
    /// Prefix length of an IPv4 network (24).
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 network (64).
    pub ipv6_prefix: u8,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_pending_per_ip: 4,
            max_pending_per_network: 10,
            max_connections_per_ip: 8,
            max_connections_per_network: 25,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        }
    }
}

impl AdmissionConfig {
    /// No per-source limit (load tests dialling thousands of connections from one address).
    pub fn unlimited() -> Self {
        Self {
            max_pending_per_ip: usize::MAX,
            max_pending_per_network: usize::MAX,
            max_connections_per_ip: usize::MAX,
            max_connections_per_network: usize::MAX,
            ..Self::default()
        }
    }

    /// The network of `ip` (its address with the host bits cleared); IPv4-mapped IPv6
    /// addresses count as IPv4.
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let keep = u32::from(self.ipv4_prefix.min(32));
                let mask = if keep == 0 { 0 } else { u32::MAX << (32 - keep) };
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let keep = u32::from(self.ipv6_prefix.min(128));
                let mask = if keep == 0 { 0 } else { u128::MAX << (128 - keep) };
                IpAddr::V6((bits & mask).into())
            }
        }
    }
}

/// What the source is refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRefusal {
    /// Too many handshakes in progress from this address.
    PendingPerIp,
    /// Too many handshakes in progress from this network.
    PendingPerNetwork,
    /// Too many connections with this address.
    ConnectionsPerIp,
    /// Too many connections with this network.
    ConnectionsPerNetwork,
}

impl SourceRefusal {
    /// The label on the rejection counter and in events.
    pub fn name(self) -> &'static str {
        match self {
            Self::PendingPerIp => "TooManyPendingFromAddress",
            Self::PendingPerNetwork => "TooManyPendingFromNetwork",
            Self::ConnectionsPerIp => "TooManyConnectionsFromAddress",
            Self::ConnectionsPerNetwork => "TooManyConnectionsFromNetwork",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    pending: usize,
    connections: usize,
}

/// Live counts per address and per network. Entries disappear when they fall to zero, so the
/// maps hold at most one entry per live socket.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    by_ip: HashMap<IpAddr, Counts>,
    by_network: HashMap<IpAddr, Counts>,
}

impl Admission {
    /// No socket yet.
    pub fn new(config: AdmissionConfig) -> Self {
        Self { config, by_ip: HashMap::new(), by_network: HashMap::new() }
    }

    /// The limits.
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    fn get(&self, ip: IpAddr) -> (Counts, Counts) {
        let net = self.config.network(ip);
        (self.by_ip.get(&ip).copied().unwrap_or_default(), self.by_network.get(&net).copied().unwrap_or_default())
    }

    fn update(&mut self, ip: IpAddr, f: impl Fn(&mut Counts)) {
        let net = self.config.network(ip);
        for (map, key) in [(&mut self.by_ip, ip), (&mut self.by_network, net)] {
            let c = map.entry(key).or_default();
            f(c);
            if c.pending == 0 && c.connections == 0 {
                map.remove(&key);
            }
        }
    }

    /// A new incoming socket from `ip`: reserves a handshake slot, or says why not. Its
    /// connections count too: a source at its connection limit gets no handshake either.
    pub fn begin_handshake(&mut self, ip: IpAddr) -> Result<(), SourceRefusal> {
        let (a, n) = self.get(ip);
        let c = &self.config;
        if a.connections >= c.max_connections_per_ip {
            return Err(SourceRefusal::ConnectionsPerIp);
        }
        if n.connections >= c.max_connections_per_network {
            return Err(SourceRefusal::ConnectionsPerNetwork);
        }
        if a.pending >= c.max_pending_per_ip {
            return Err(SourceRefusal::PendingPerIp);
        }
        if n.pending >= c.max_pending_per_network {
            return Err(SourceRefusal::PendingPerNetwork);
        }
        self.update(ip, |c| c.pending += 1);
        Ok(())
    }

    /// The handshake from `ip` ended (whatever its outcome).
    pub fn end_handshake(&mut self, ip: IpAddr) {
        self.update(ip, |c| c.pending = c.pending.saturating_sub(1));
    }

    /// A connection with `ip` is about to run: counted, or refused at the limit.
    pub fn open_connection(&mut self, ip: IpAddr) -> Result<(), SourceRefusal> {
        let (a, n) = self.get(ip);
        if a.connections >= self.config.max_connections_per_ip {
            return Err(SourceRefusal::ConnectionsPerIp);
        }
        if n.connections >= self.config.max_connections_per_network {
            return Err(SourceRefusal::ConnectionsPerNetwork);
        }
        self.update(ip, |c| c.connections += 1);
        Ok(())
    }

    /// A connection with `ip` ended.
    pub fn close_connection(&mut self, ip: IpAddr) {
        self.update(ip, |c| c.connections = c.connections.saturating_sub(1));
    }

    /// Addresses and networks tracked (for leak checks).
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_ip.len(), self.by_network.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_are_prefixes_and_mapped_addresses_are_ipv4() {
        let c = AdmissionConfig::default();
        assert_eq!(c.network(ip("10.1.2.3")), ip("10.1.2.0"));
        assert_eq!(c.network(ip("::ffff:10.1.2.3")), ip("10.1.2.0"));
        assert_eq!(c.network(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        let wide = AdmissionConfig { ipv4_prefix: 0, ..c };
        assert_eq!(wide.network(ip("10.1.2.3")), ip("0.0.0.0"));
    }

    #[test]
    fn a_flood_from_one_address_is_capped_and_others_still_get_in() {
        let mut a = Admission::new(AdmissionConfig::default());
        for _ in 0..4 {
            a.begin_handshake(ip("10.0.0.1")).unwrap();
        }
        assert_eq!(a.begin_handshake(ip("10.0.0.1")), Err(SourceRefusal::PendingPerIp));
        for i in 2..=7 {
            a.begin_handshake(ip(&format!("10.0.0.{i}"))).unwrap();
        }
        assert_eq!(a.begin_handshake(ip("10.0.0.99")), Err(SourceRefusal::PendingPerNetwork));
        assert!(a.begin_handshake(ip("10.0.1.1")).is_ok(), "another network");
        a.end_handshake(ip("10.0.0.1"));
        assert!(a.begin_handshake(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn connections_are_capped_per_address_and_network_and_counts_go_back_to_zero() {
        let cfg = AdmissionConfig { max_connections_per_ip: 2, max_connections_per_network: 3, ..Default::default() };
        let mut a = Admission::new(cfg);
        a.open_connection(ip("10.0.0.1")).unwrap();
        a.open_connection(ip("10.0.0.1")).unwrap();
        assert_eq!(a.open_connection(ip("10.0.0.1")), Err(SourceRefusal::ConnectionsPerIp));
        assert_eq!(a.begin_handshake(ip("10.0.0.1")), Err(SourceRefusal::ConnectionsPerIp));
        a.open_connection(ip("10.0.0.2")).unwrap();
        assert_eq!(a.open_connection(ip("10.0.0.3")), Err(SourceRefusal::ConnectionsPerNetwork));
        for x in ["10.0.0.1", "10.0.0.1", "10.0.0.2"] {
            a.close_connection(ip(x));
        }
        assert_eq!(a.tracked(), (0, 0));
        let mut u = Admission::new(AdmissionConfig::unlimited());
        for _ in 0..10_000 {
            u.begin_handshake(ip("127.0.0.1")).unwrap();
        }
    }
}
