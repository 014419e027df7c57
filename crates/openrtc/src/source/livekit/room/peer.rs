//! One WebRTC peer connection of a room (str0m's sans-IO `Rtc`) with its own loopback UDP
//! socket: datagrams in, transmits out, and the engine drained to its next deadline after
//! every mutation, as str0m requires.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;

/// The largest datagram read (above any WebRTC datagram).
const DATAGRAM_BYTES: usize = 2_048;

/// One peer connection and its socket.
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    pub(crate) socket: UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) buffer: Vec<u8>,
    /// Transmits the socket refused (its buffer full): UDP, so dropped and counted.
    pub(crate) refused_transmits_count: u64,
}

impl Peer {
    /// A peer with Opus only (no RED), a host candidate on a fresh UDP socket of `ip`.
    pub(crate) async fn bind(ip: std::net::IpAddr) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp")
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        rtc.add_local_candidate(candidate);
        Ok(Self {
            rtc,
            socket,
            local,
            buffer: vec![0; DATAGRAM_BYTES],
            refused_transmits_count: 0,
        })
    }

    /// Polls the engine until its next deadline: transmits go out on the socket, events are
    /// appended to `events`.
    pub(crate) fn drain(&mut self, events: &mut Vec<Event>) -> Result<Instant, RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(deadline) => return Ok(deadline),
                Output::Transmit(transmit) => {
                    if self
                        .socket
                        .try_send_to(&transmit.contents, transmit.destination)
                        .is_err()
                    {
                        self.refused_transmits_count += 1;
                    }
                }
                Output::Event(event) => events.push(event),
            }
        }
    }

    /// Feeds the engine the datagram of `length_bytes` in the buffer, from `source`. A datagram
    /// that is no WebRTC traffic is ignored.
    pub(crate) fn receive(
        &mut self,
        length_bytes: usize,
        source: SocketAddr,
    ) -> Result<(), RtcError> {
        let Ok(contents) = self.buffer[..length_bytes].try_into() else {
            return Ok(());
        };
        let receive = Receive {
            proto: Protocol::Udp,
            source,
            destination: self.local,
            contents,
        };
        self.rtc
            .handle_input(Input::Receive(Instant::now(), receive))
    }

    /// Moves the engine's time on to now.
    pub(crate) fn tick(&mut self) -> Result<(), RtcError> {
        self.rtc.handle_input(Input::Timeout(Instant::now()))
    }
}
