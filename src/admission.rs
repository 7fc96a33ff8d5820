//! Connection admission: which browser origins may open a socket, and how many sockets this
//! node, one source address and one user (across the cluster) may hold. A granted seat keeps
//! its place until it is dropped, so however a connection ends its place is given back.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use crate::config::{ClientIpHeader, Settings};
use crate::domain::UserId;
use crate::metrics::Metrics;
use crate::presence::PresenceDirectory;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A browser page from an origin not on the allow-list.
    Origin,
    /// This node holds as many connections as it may.
    NodeFull,
    /// The source address holds as many connections on this node as it may.
    AddressFull,
    /// The user holds as many connections across the cluster as they may.
    UserFull,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::NodeFull => "node_full",
            Self::AddressFull => "address_full",
            Self::UserFull => "user_full",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Origin => "this origin may not connect",
            Self::NodeFull => "this node is full; retry later",
            Self::AddressFull => "too many connections from this address",
            Self::UserFull => "too many connections for this user: close another one first",
        }
    }
}

/// Open connections by source address on this node.
#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    max_per_user: usize,
    origins: HashSet<String>,
    proxies: Vec<IpNet>,
    client_ip_header: ClientIpHeader,
    counts: Mutex<Counts>,
    presence: Arc<dyn PresenceDirectory>,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// `settings` are validated; `default_max` caps the node when no cap is set.
    pub fn new(
        settings: &Settings,
        default_max: usize,
        presence: Arc<dyn PresenceDirectory>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            max_total: settings.max_connections.unwrap_or(default_max).max(1),
            max_per_address: settings.max_connections_per_ip,
            max_per_user: settings.max_connections_per_user,
            origins: settings.origins().map(str::to_owned).collect(),
            proxies: settings.proxies().unwrap_or_default(),
            client_ip_header: settings.client_ip_header,
            counts: Mutex::default(),
            presence,
            metrics,
        }
    }

    pub fn max_connections(&self) -> usize {
        self.max_total
    }

    /// A request without `Origin` is not from a browser page, and not affected.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<(), Refusal> {
        match origin {
            Some(origin) if !self.origins.is_empty() && !self.origins.contains(origin) => {
                Err(self.refused(Refusal::Origin))
            }
            _ => Ok(()),
        }
    }

    /// The header `client_address` reads: the proxy's own.
    pub fn client_ip_header(&self) -> &'static str {
        self.client_ip_header.name()
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last entry
    /// of the last line of `client_ip_header` (`named`, in the order received): what the
    /// proxy itself wrote, whatever a client put before it.
    pub fn client_address<'a>(&self, peer: IpAddr, named: impl Iterator<Item = &'a str>) -> IpAddr {
        if !self.proxies.iter().any(|proxy| proxy.contains(&peer)) {
            return peer;
        }
        let written = named.last().and_then(|line| line.rsplit(',').next());
        written.and_then(|ip| ip.trim().parse().ok()).unwrap_or(peer)
    }

    /// A place for one more connection from `address` on this node.
    pub fn seat(self: &Arc<Self>, address: IpAddr) -> Result<Seat, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if counts.total >= self.max_total {
            drop(counts);
            return Err(self.refused(Refusal::NodeFull));
        }
        let held = counts.by_address.entry(capped_block(address)).or_default();
        if *held >= self.max_per_address {
            drop(counts);
            return Err(self.refused(Refusal::AddressFull));
        }
        *held += 1;
        counts.total += 1;
        Ok(Seat { admission: self.clone(), address })
    }

    /// A place for one more connection of `user` in the cluster. When the count cannot be
    /// reached (Redis down), the connection is let in uncounted: the cap is a guard against
    /// abuse, not worth refusing everyone for.
    pub async fn user_seat(self: &Arc<Self>, user: &UserId) -> Result<UserSeat, Refusal> {
        match self.presence.admit(user.clone(), self.max_per_user).await {
            Ok(true) => Ok(UserSeat { presence: Some(self.presence.clone()), user: user.clone() }),
            Ok(false) => Err(self.refused(Refusal::UserFull)),
            Err(_) => Ok(UserSeat { presence: None, user: user.clone() }),
        }
    }

    fn refused(&self, refusal: Refusal) -> Refusal {
        self.metrics.refused.with_label_values(&[refusal.reason()]).inc();
        refusal
    }

    fn leave(&self, address: IpAddr) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        counts.total = counts.total.saturating_sub(1);
        let block = capped_block(address);
        if let Some(held) = counts.by_address.get_mut(&block) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_address.remove(&block);
            }
        }
    }
}

/// What the per-address cap counts: an IPv4 address, or an IPv6 address's /64 (one
/// subscriber's network, which holds more addresses than anyone could exhaust).
fn capped_block(address: IpAddr) -> IpAddr {
    // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`.
    match address.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64))),
    }
}

/// One connection's place on this node, given back when dropped.
pub struct Seat {
    admission: Arc<Admission>,
    address: IpAddr,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.admission.leave(self.address);
    }
}

/// One connection's place among its user's, given back when dropped.
pub struct UserSeat {
    /// `None` when the connection was let in uncounted.
    presence: Option<Arc<dyn PresenceDirectory>>,
    user: UserId,
}

impl UserSeat {
    pub fn user(&self) -> &UserId {
        &self.user
    }
}

impl Drop for UserSeat {
    fn drop(&mut self) {
        if let Some(presence) = self.presence.take() {
            let release = presence.release(self.user.clone());
            // Outside a runtime (process exit) there is nobody left to count for.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::LocalPresence;

    fn admission(tweak: impl FnOnce(&mut Settings)) -> Arc<Admission> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let mut settings = Cli::parse_from(["switchboard"]).settings;
        tweak(&mut settings);
        Arc::new(Admission::new(&settings, 100, Arc::new(LocalPresence::default()), Arc::new(Metrics::new("test"))))
    }

    #[test]
    fn caps_the_node_and_each_address_and_gives_places_back() {
        let admission = admission(|s| {
            s.max_connections = Some(3);
            s.max_connections_per_ip = 2;
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.seat(a).unwrap();
        let _second = admission.seat(a).unwrap();
        assert_eq!(admission.seat(a).err(), Some(Refusal::AddressFull));
        let _third = admission.seat(b).unwrap();
        assert_eq!(admission.seat(b).err(), Some(Refusal::NodeFull));
        drop(first);
        assert!(admission.seat(a).is_ok());
    }

    #[test]
    fn origins_are_checked_only_when_listed_and_only_for_browsers() {
        assert!(admission(|_| {}).check_origin(Some("https://evil.example")).is_ok());
        let listed = admission(|s| s.allowed_origins = vec!["https://app.example".into()]);
        assert!(listed.check_origin(Some("https://app.example")).is_ok());
        assert!(listed.check_origin(None).is_ok());
        assert_eq!(listed.check_origin(Some("https://evil.example")), Err(Refusal::Origin));
    }

    #[test]
    fn only_trusted_proxies_name_the_client() {
        let admission = admission(|s| s.trusted_proxies = vec!["10.0.0.0/8".into()]);
        let (proxy, stranger): (IpAddr, IpAddr) = ("10.1.2.3".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let named = |lines: &'static [&'static str]| lines.iter().copied();
        assert_eq!(admission.client_address(proxy, named(&["198.51.100.7"])), client);
        assert_eq!(admission.client_address(proxy, named(&["1.1.1.1, 198.51.100.7"])), client);
        // A client's own line comes first; the proxy's line (appended) counts.
        assert_eq!(admission.client_address(proxy, named(&["6.6.6.6", "198.51.100.7"])), client);
        assert_eq!(admission.client_address(stranger, named(&["198.51.100.7"])), stranger);
        assert_eq!(admission.client_address(proxy, named(&["garbage"])), proxy);
        assert_eq!(admission.client_address(proxy, named(&[])), proxy);
    }

    #[test]
    fn an_ipv6_network_is_capped_as_one_address() {
        let admission = admission(|s| s.max_connections_per_ip = 2);
        let addresses: Vec<IpAddr> =
            ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::3"].iter().map(|a| a.parse().unwrap()).collect();
        let _first = admission.seat(addresses[0]).unwrap();
        let _second = admission.seat(addresses[1]).unwrap();
        assert!(matches!(admission.seat(addresses[2]), Err(Refusal::AddressFull)), "the same /64");
        assert!(admission.seat("2001:db8:1:3::1".parse().unwrap()).is_ok(), "another /64");
        // IPv4 clients of a dual-stack listener count one by one, as plain IPv4 addresses.
        let mapped = ["::ffff:198.51.100.7", "::ffff:198.51.100.8", "::ffff:198.51.100.9"];
        let _held: Vec<Seat> = mapped.iter().map(|a| admission.seat(a.parse().unwrap()).expect(a)).collect();
        let _again = admission.seat("::ffff:198.51.100.7".parse().unwrap()).unwrap();
        assert!(matches!(admission.seat("198.51.100.7".parse().unwrap()), Err(Refusal::AddressFull)), "one address");
    }
}
