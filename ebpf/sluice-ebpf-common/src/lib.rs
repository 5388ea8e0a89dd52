//! What Sluice's eBPF programs (`ebpf/sluice-ebpf`) and their loader
//! (`sluice::bpf`) agree on: map names, `#[repr(C)]` keys and values, and
//! counter indexes.
//!
//! # Byte orders
//!
//! IPv4 addresses are kept as the kernel gives them (network byte order,
//! read as a native `u32`); ports are host byte order. The kernel hands
//! programs `local_port` in host order and `remote_port` in network order
//! (and, in `bpf_sock_ops`, shifted into the upper half on little-endian
//! machines): [`remote_port`] normalizes both shapes.
//!
//! # Features
//!
//! `user`: `aya::Pod` for the map keys and values, for the loader.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

// === map names ===

/// SockHash of the sockets the programs manage, keyed by [`SockKey`].
pub const MAP_SOCKS: &str = "SLUICE_SOCKS";
/// Hash map: a sluice listener's port (`u32`, host order) → `1`.
pub const MAP_LISTEN_PORTS: &str = "SLUICE_LISTEN";
/// Hash map: a backend endpoint on 127.0.0.0/8 ([`Endpoint`]) → `1`.
pub const MAP_BACKENDS: &str = "SLUICE_BACKENDS";
/// LRU hash map: sockets ([`SockKey`]) that have sent bytes through the TCP
/// stack, which therefore never switch to the bypass (keeps byte order).
pub const MAP_PASSED: &str = "SLUICE_PASSED";
/// LRU hash map: sluice's upstream sockets to loopback backends
/// ([`SockKey`] → `1`), recorded by sockops; their peers (the backends'
/// sockets) are recorded too, so these may receive bypassed messages.
pub const MAP_UPSTREAMS: &str = "SLUICE_UPSTREAMS";
/// LRU hash map: local clients' sockets ([`SockKey`] → `1`): the active
/// end of a connection from 127.0.0.0/8 to a sluice listener, recorded by
/// sockops (with sluice's end, so both directions may be bypassed).
pub const MAP_CLIENTS: &str = "SLUICE_CLIENTS";
/// Per-CPU array of `u64` counters, indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "SLUICE_COUNTERS";
/// SockHash of the spliced sockets (keyed by [`SockKey`]); the stream
/// verdict program is attached to it.
pub const MAP_SPLICE: &str = "SLUICE_SPLICE";
/// Hash map: a spliced socket ([`SockKey`]) → its [`SpliceState`]. Written
/// by the loader before the socket enters [`MAP_SPLICE`]; the programs only
/// add to its counters.
pub const MAP_SPLICED: &str = "SLUICE_SPLICED";
/// SockHash with no program attached: the client sockets the stream
/// verdict redirects response bodies to (keyed by [`SockKey`]; a socket in
/// [`MAP_SOCKS`] would have each of the kernel's writes on it run sk_msg).
pub const MAP_TARGETS: &str = "SLUICE_TARGETS";
/// Hash map: a spliced socket ([`SockKey`]) → the most bytes the stream
/// verdict may redirect from it (`u64`, counted like
/// [`SpliceState::redirected_bytes`]). Written by the loader only, before
/// the socket enters [`MAP_SPLICE`]; a spliced socket without an entry (a
/// tunnel's) has no bound. The response splice sets it to the body's
/// length, so that no byte past the body leaves the proxy's sight.
pub const MAP_BUDGET: &str = "SLUICE_BUDGET";

/// Entries of [`MAP_SOCKS`] (two per bypassed connection).
pub const SOCKS_MAX_ENTRIES: u32 = 65_536;
/// Entries of [`MAP_LISTEN_PORTS`].
pub const LISTEN_MAX_ENTRIES: u32 = 1_024;
/// Entries of [`MAP_BACKENDS`].
pub const BACKENDS_MAX_ENTRIES: u32 = 4_096;
/// Entries of [`MAP_PASSED`].
pub const PASSED_MAX_ENTRIES: u32 = 16_384;
/// Entries of [`MAP_SPLICE`] (two per spliced tunnel, one per spliced
/// response body), [`MAP_SPLICED`] (the same), [`MAP_BUDGET`] (one per
/// spliced response body) and [`MAP_TARGETS`] (one per client connection
/// that got a spliced response body).
pub const SPLICE_MAX_ENTRIES: u32 = 16_384;

// === program names ===

/// The sockops program (on a cgroup v2).
pub const PROG_SOCKOPS: &str = "sluice_sockops";
/// The sk_msg program (on [`MAP_SOCKS`]).
pub const PROG_SK_MSG: &str = "sluice_sk_msg";
/// The sk_skb stream verdict program (on [`MAP_SPLICE`]).
pub const PROG_SK_SKB: &str = "sluice_sk_skb";

/// Whether `a == b`, at compile time (the kernel side checks that its
/// `#[map(name = "…")]` literals are these consts).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// === impl SockKey ===

/// One end of a TCP connection, seen from its own socket.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SockKey {
    /// Local IPv4 address, network byte order.
    pub local_ip4: u32,
    /// Remote IPv4 address, network byte order.
    pub remote_ip4: u32,
    /// Local port, host byte order.
    pub local_port: u32,
    /// Remote port, host byte order.
    pub remote_port: u32,
}

impl SockKey {
    /// The key of the socket at the other end of the same connection.
    pub const fn peer(&self) -> SockKey {
        SockKey {
            local_ip4: self.remote_ip4,
            remote_ip4: self.local_ip4,
            local_port: self.remote_port,
            remote_port: self.local_port,
        }
    }

    /// The remote end as an [`Endpoint`].
    pub const fn remote(&self) -> Endpoint {
        Endpoint {
            ip4: self.remote_ip4,
            port: self.remote_port,
        }
    }

    /// The local end as an [`Endpoint`].
    pub const fn local(&self) -> Endpoint {
        Endpoint {
            ip4: self.local_ip4,
            port: self.local_port,
        }
    }
}

/// An IPv4 address and port.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    /// Address, network byte order.
    pub ip4: u32,
    /// Port, host byte order.
    pub port: u32,
}

impl Endpoint {
    /// Whether the address is in 127.0.0.0/8.
    pub const fn is_loopback(&self) -> bool {
        // Network order read natively on little-endian: the first octet is
        // the lowest byte; `from_be` makes it the highest everywhere.
        (u32::from_be(self.ip4) >> 24) == 127
    }

    /// From an address in host order (`u32::from(Ipv4Addr)`) and a port.
    pub const fn new(ip4_host_order: u32, port: u16) -> Endpoint {
        Endpoint {
            ip4: ip4_host_order.to_be(),
            port: port as u32,
        }
    }
}

/// One spliced socket's entry in [`MAP_SPLICED`].
///
/// The counters only grow while the entry exists; the loader never writes
/// an entry after inserting it (it only removes it), so the programs' adds
/// are never overwritten.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpliceState {
    /// The other socket of the tunnel (client socket ↔ upstream socket).
    pub partner: SockKey,
    /// Bytes the stream verdict redirected from this socket to the
    /// partner's egress.
    pub redirected_bytes: u64,
    /// Messages (skbs) the stream verdict redirected.
    pub redirected_msgs: u64,
    /// Bytes sent on this socket since it was spliced, as seen by the
    /// sk_msg program (the partner's redirected bytes, once the kernel has
    /// actually written them): `sent_bytes` of one socket reaching
    /// `redirected_bytes` of its partner means nothing is left in flight.
    pub sent_bytes: u64,
    /// Bytes the stream verdict passed to this socket's own receive path
    /// (userspace reads them) instead of redirecting them: over its
    /// budget ([`MAP_BUDGET`]), or the partner gone. Once it is not zero
    /// the verdict passes every later byte too, so that nothing
    /// redirected can overtake what the proxy has to copy.
    pub passed_bytes: u64,
}

/// A remote port as the kernel hands it to a program (network order in the
/// low 16 bits, or shifted into the high 16 bits) → host order.
pub const fn remote_port(raw: u32) -> u32 {
    let be = if raw & 0xffff == 0 { raw >> 16 } else { raw };
    u16::from_be(be as u16) as u32
}

// === impl Counter ===

/// Index of a counter in [`MAP_COUNTERS`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counter {
    /// sockops: sluice's active (proxy → backend) sockets recorded.
    SockopsActive = 0,
    /// sockops: sluice's passive (client → listener) sockets recorded.
    SockopsPassive = 1,
    /// sockops: backend-side sockets (peer of a recorded proxy socket)
    /// recorded.
    SockopsBackend = 2,
    /// sockops: SockHash updates that failed (map full, …).
    SockopsErrors = 3,
    /// sk_msg: messages redirected to the peer's ingress.
    SkMsgRedirectedMsgs = 4,
    /// sk_msg: bytes redirected to the peer's ingress.
    SkMsgRedirectedBytes = 5,
    /// sk_msg: messages passed to the TCP stack.
    SkMsgPassedMsgs = 6,
    /// sk_msg: bytes passed to the TCP stack.
    SkMsgPassedBytes = 7,
    /// sk_skb: skbs redirected to the spliced partner's egress.
    SkSkbRedirectedMsgs = 8,
    /// sk_skb: bytes redirected to the spliced partner's egress.
    SkSkbRedirectedBytes = 9,
    /// sk_skb: skbs left to the socket's own receive path (no partner:
    /// userspace reads them).
    SkSkbPassedMsgs = 10,
    /// sk_skb: bytes left to the socket's own receive path.
    SkSkbPassedBytes = 11,
    /// sockops: local clients' sockets (active, to a sluice listener on
    /// 127.0.0.0/8) recorded.
    SockopsLocalClient = 12,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 13] = [
        Counter::SockopsActive,
        Counter::SockopsPassive,
        Counter::SockopsBackend,
        Counter::SockopsErrors,
        Counter::SkMsgRedirectedMsgs,
        Counter::SkMsgRedirectedBytes,
        Counter::SkMsgPassedMsgs,
        Counter::SkMsgPassedBytes,
        Counter::SkSkbRedirectedMsgs,
        Counter::SkSkbRedirectedBytes,
        Counter::SkSkbPassedMsgs,
        Counter::SkSkbPassedBytes,
        Counter::SockopsLocalClient,
    ];

    /// Entries of [`MAP_COUNTERS`].
    pub const LEN: u32 = Counter::ALL.len() as u32;

    /// The index in [`MAP_COUNTERS`].
    pub const fn index(self) -> u32 {
        self as u32
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `#[repr(C)]`, only `u32` fields, no padding; every bit
    // pattern is valid.
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::SockKey {}
    // SAFETY: as above.
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::Endpoint {}
    // SAFETY: `#[repr(C)]`, a `SockKey` (16 bytes) then `u64`s: no
    // padding; every bit pattern is valid.
    #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
    unsafe impl aya::Pod for super::SpliceState {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_port_both_shapes() {
        let port: u16 = 8080;
        let be = u32::from(port.to_be());
        assert_eq!(remote_port(be), 8080);
        assert_eq!(remote_port(be << 16), 8080);
    }

    #[test]
    fn loopback() {
        assert!(Endpoint::new(0x7f00_0001, 80).is_loopback());
        assert!(!Endpoint::new(0x0a00_0001, 80).is_loopback());
    }

    #[test]
    fn splice_state_has_no_padding() {
        assert_eq!(core::mem::size_of::<SpliceState>(), 16 + 4 * 8);
    }

    #[test]
    fn peer_is_an_involution() {
        let k = SockKey {
            local_ip4: 1,
            remote_ip4: 2,
            local_port: 3,
            remote_port: 4,
        };
        assert_eq!(k.peer().peer(), k);
        assert_eq!(k.peer().local(), k.remote());
    }
}
