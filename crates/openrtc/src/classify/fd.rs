//! What a stuck thread's file descriptor points at: a path, a pipe, or a socket found in this
//! network namespace's `/proc/net` tables (a TCP peer, a listener, a UDP or Unix socket).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What file descriptor `fd` of this process points at, best effort (the descriptor may have
/// been closed, or even reused, since the syscall file was read).
pub(super) fn describe_fd(fd: i32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let target = target.to_string_lossy().into_owned();
    let socket_description = socket_inode(&target).and_then(describe_socket);
    Some(socket_description.unwrap_or(target))
}

/// The inode in a `socket:[<inode>]` link target.
pub(super) fn socket_inode(link_target: &str) -> Option<u64> {
    link_target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Looks socket `inode` up in this network namespace's TCP, UDP and Unix socket tables.
fn describe_socket(inode: u64) -> Option<String> {
    let inet_tables = [
        ("/proc/self/net/tcp", "tcp"),
        ("/proc/self/net/tcp6", "tcp"),
        ("/proc/self/net/udp", "udp"),
        ("/proc/self/net/udp6", "udp"),
    ];
    inet_tables
        .iter()
        .find_map(|&(path, protocol)| {
            let table = BufReader::new(std::fs::File::open(path).ok()?);
            describe_inet_socket(table, protocol, inode)
        })
        .or_else(|| {
            let table = BufReader::new(std::fs::File::open("/proc/self/net/unix").ok()?);
            describe_unix_socket(table, inode)
        })
}

/// Finds `inode` in a `/proc/net/{tcp,tcp6,udp,udp6}` table and names its peer, or its local
/// address if it has none (a listener, an unconnected UDP socket).
pub(super) fn describe_inet_socket(
    table: impl BufRead,
    protocol: &str,
    inode: u64,
) -> Option<String> {
    table
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .find_map(|line| {
            // Fields: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(9)?.parse::<u64>().ok()? != inode {
                return None;
            }
            let local = parse_proc_net_address(fields.get(1)?)?;
            let remote = parse_proc_net_address(fields.get(2)?)?;
            Some(if remote.port() == 0 && remote.ip().is_unspecified() {
                let role = if protocol == "tcp" {
                    "listener"
                } else {
                    "bound to"
                };
                format!("{protocol} {role} {local}")
            } else {
                format!("{protocol} {remote}")
            })
        })
}

/// Parses a `/proc/net` address, `0100007F:1F90` or 32 hex digits and a port.
///
/// The address is printed as 32-bit words in the kernel's byte order, hence `to_ne_bytes`.
fn parse_proc_net_address(text: &str) -> Option<SocketAddr> {
    let (address_hex, port_hex) = text.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let word = |index: usize| {
        let digits = address_hex.get(index * 8..index * 8 + 8)?;
        u32::from_str_radix(digits, 16).ok().map(u32::to_ne_bytes)
    };
    let address = match address_hex.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0_u8; 16];
            for (index, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(index)?);
            }
            let address = Ipv6Addr::from(octets);
            address
                .to_ipv4_mapped()
                .map_or(IpAddr::V6(address), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(address, port))
}

/// Finds `inode` in `/proc/net/unix` and names the socket, with its path if it has one.
pub(super) fn describe_unix_socket(table: impl BufRead, inode: u64) -> Option<String> {
    table
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .find_map(|line| {
            // Fields: Num RefCount Protocol Flags Type St Inode [Path]
            let mut fields = line.split_whitespace().skip(6);
            if fields.next()?.parse::<u64>().ok()? != inode {
                return None;
            }
            Some(match fields.next() {
                Some(path) => format!("unix socket {path}"),
                None => "unix socket".to_owned(),
            })
        })
}
