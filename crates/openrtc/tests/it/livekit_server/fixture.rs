//! The real LiveKit server as a test fixture: `livekit-server` (built by
//! `scripts/livekit-server`, found through `$OPENRTC_LIVEKIT_SERVER`) on free loopback ports
//! with a throwaway key, its Twirp room and dispatch API called over HTTP with minted tokens,
//! and its log read for what it did with each job. The runtime's tests and the demo's runbook
//! test (which includes this file) share it.

use std::fs::File;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol::{
    AgentDispatch, CreateAgentDispatchRequest, CreateRoomRequest, DeleteAgentDispatchRequest,
    DeleteRoomRequest, ListAgentDispatchRequest, ListAgentDispatchResponse, ListRoomsRequest,
    ListRoomsResponse, Room,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The key the server is configured with (any name works; the tokens' `iss`).
const API_KEY: &str = "openrtc-test";
/// Its secret: the server refuses secrets shorter than 32 characters.
const API_SECRET: &str = "openrtc-test-secret-0123456789abcdefghij";
/// How long the server may take to answer `GET /` after it is spawned.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How many times a start is tried when a free port was taken before the server bound it.
const START_ATTEMPTS: u32 = 3;
/// How many lines of the server's log [`LiveKitServer::log_tail`] shows.
const TAIL_LINES: usize = 40;

/// A running `livekit-server`, killed (its whole process group) when dropped.
pub(crate) struct LiveKitServer {
    child: Child,
    /// Holds the config and the log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
    http: ureq::Agent,
}

/// The ports one server listens on, all free when chosen.
struct Ports {
    http: u16,
    rtc_tcp: u16,
    rtc_udp: u16,
    /// Nothing listens there: the STUN server the server hands to clients (none is needed on
    /// loopback, and the default would be Google's).
    stun: u16,
}

impl Ports {
    /// Binds every port at once, so they differ, then releases them for the server.
    fn free() -> Self {
        let tcp = || TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
        let udp = || UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
        let (http, rtc_tcp, rtc_udp, stun) = (tcp(), tcp(), udp(), udp());
        let port = |address: std::io::Result<std::net::SocketAddr>| {
            address.expect("a bound address").port()
        };
        Self {
            http: port(http.local_addr()),
            rtc_tcp: port(rtc_tcp.local_addr()),
            rtc_udp: port(rtc_udp.local_addr()),
            stun: port(stun.local_addr()),
        }
    }
}

/// The server's configuration: loopback only, no Redis (single node), no TURN, rooms created
/// on demand, one key.
fn config_yaml(ports: &Ports, redis: Option<u16>) -> String {
    let redis = redis.map_or_else(String::new, |port| {
        format!("redis:\n  address: 127.0.0.1:{port}\n")
    });
    format!(
        "port: {http}
bind_addresses: [\"127.0.0.1\"]
rtc:
  tcp_port: {rtc_tcp}
  udp_port: {rtc_udp}
  node_ip: 127.0.0.1
  use_external_ip: false
  enable_loopback_candidate: true
  stun_servers: [\"127.0.0.1:{stun}\"]
keys:
  {API_KEY}: {API_SECRET}
logging:
  level: info
room:
  auto_create: true
turn:
  enabled: false
{redis}",
        http = ports.http,
        rtc_tcp = ports.rtc_tcp,
        rtc_udp = ports.rtc_udp,
        stun = ports.stun,
    )
}

/// The `livekit-server` binary: `$OPENRTC_LIVEKIT_SERVER`, which `scripts/test` sets.
#[track_caller]
fn server_binary() -> PathBuf {
    let path = std::env::var_os("OPENRTC_LIVEKIT_SERVER").map(PathBuf::from).expect(
        "OPENRTC_LIVEKIT_SERVER is not set: run `OPENRTC_LIVEKIT_SERVER=$(scripts/livekit-server)` \
         (it builds the LiveKit server once, with Go), or scripts/test, which does",
    );
    assert!(
        path.is_file(),
        "OPENRTC_LIVEKIT_SERVER names {}, which is missing: run scripts/livekit-server",
        path.display()
    );
    path
}

impl LiveKitServer {
    /// Starts a server and waits until it answers HTTP; panics with its log tail if it does not.
    #[track_caller]
    pub(crate) fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts one node of a cluster whose nodes share `redis` (LiveKit's multi-node mode:
    /// rooms placed on any node, jobs dispatched across nodes).
    #[track_caller]
    pub(crate) fn start_node(redis: &Redis) -> Self {
        Self::start_with(Some(redis.port))
    }

    #[track_caller]
    fn start_with(redis: Option<u16>) -> Self {
        let binary = server_binary();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&binary, redis) {
                Ok(server) => return server,
                Err(tail) if tail.contains("address already in use") => failures.push(tail),
                Err(tail) => {
                    panic!("livekit-server exited at start; its log ends:\n{tail}")
                }
            }
        }
        panic!(
            "livekit-server found its ports taken {START_ATTEMPTS} times; the last log ends:\n{}",
            failures.last().map_or("", String::as_str)
        )
    }

    /// One start on fresh ports; `Err` with the log tail if the process exited first.
    fn try_start(binary: &std::path::Path, redis: Option<u16>) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("a temp dir for the server");
        let ports = Ports::free();
        let config = dir.path().join("livekit.yaml");
        std::fs::write(&config, config_yaml(&ports, redis)).expect("the config is written");
        let log = File::create(dir.path().join("livekit.log")).expect("the log file");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file again"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("livekit-server starts");
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut server = Self {
            child,
            dir,
            port: ports.http,
            http,
        };
        server.wait_until_up()?;
        Ok(server)
    }

    /// Polls `GET /` until it answers 200, the process exits, or [`START_PATIENCE`] passes.
    fn wait_until_up(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if let Ok(response) = self.http.get(self.url()).call()
                && response.status() == 200
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().expect("the server's status") {
                return Err(format!("({status})\n{}", self.log_tail()));
            }
            assert!(
                Instant::now() < deadline,
                "livekit-server did not answer GET / within {START_PATIENCE:?}; its log ends:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>`: the URL a worker or a client is given (`LIVEKIT_URL`).
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ws://127.0.0.1:<port>/agent`: the agent workers' control WebSocket.
    pub(crate) fn agent_ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/agent", self.port)
    }

    pub(crate) fn api_key(&self) -> &'static str {
        API_KEY
    }

    pub(crate) fn api_secret(&self) -> &'static str {
        API_SECRET
    }

    /// A worker's token for `/agent`: `video.agent = true`, as the SDKs mint it.
    pub(crate) fn worker_token(&self) -> String {
        self.token(VideoGrants {
            agent: true,
            ..VideoGrants::default()
        })
    }

    /// A participant's token for room `room` as `identity`: join, publish and subscribe.
    pub(crate) fn participant_token(&self, room: &str, identity: &str) -> String {
        AccessToken::with_api_key(API_KEY, API_SECRET)
            .with_identity(identity)
            .with_grants(VideoGrants {
                room_join: true,
                room: room.to_owned(),
                can_publish: Some(true),
                can_subscribe: Some(true),
                ..VideoGrants::default()
            })
            .with_ttl(Duration::from_secs(600))
            .to_jwt()
            .expect("a participant token is minted")
    }

    /// The last lines of the server's log (its stdout and stderr).
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("livekit.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// Whether the server's log so far has a line containing `needle`.
    pub(crate) fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(self.dir.path().join("livekit.log"))
            .is_ok_and(|log| log.contains(needle))
    }

    /// The status and error the server logged when job `job_id` ended (`job ended`, with
    /// the status the worker reported), or `None` while it has not.
    pub(crate) fn job_end(&self, job_id: &str) -> Option<(String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("livekit.log")).ok()?;
        let needle = format!("\"jobID\": \"{job_id}\"");
        log.lines()
            .filter(|line| line.contains("job ended") && line.contains(&needle))
            .find_map(|line| {
                let fields: serde_json::Value =
                    serde_json::from_str(&line[line.find('{')?..]).ok()?;
                Some((
                    fields["status"].as_str()?.to_owned(),
                    fields["error"].as_str().unwrap_or_default().to_owned(),
                ))
            })
    }

    /// How many jobs the server logged as ended with `status`.
    pub(crate) fn jobs_ended_with(&self, status: &str) -> usize {
        let needle = format!("\"status\": \"{status}\"");
        std::fs::read_to_string(self.dir.path().join("livekit.log")).map_or(0, |log| {
            log.lines()
                .filter(|line| line.contains("job ended") && line.contains(&needle))
                .count()
        })
    }

    /// `RoomService.CreateRoom`: the room, as the server created it (or found it).
    #[track_caller]
    pub(crate) fn create_room(&self, name: &str) -> Room {
        let request = CreateRoomRequest {
            name: name.to_owned(),
            ..CreateRoomRequest::default()
        };
        self.twirp("RoomService", "CreateRoom", room_admin(""), &request)
    }

    /// `RoomService.DeleteRoom`.
    #[track_caller]
    pub(crate) fn delete_room(&self, name: &str) {
        let request = DeleteRoomRequest {
            room: name.to_owned(),
        };
        let _: serde_json::Value =
            self.twirp("RoomService", "DeleteRoom", room_admin(""), &request);
    }

    /// `RoomService.ListRooms`: every room.
    #[track_caller]
    pub(crate) fn list_rooms(&self) -> Vec<Room> {
        let response: ListRoomsResponse = self.twirp(
            "RoomService",
            "ListRooms",
            room_admin(""),
            &ListRoomsRequest::default(),
        );
        response.rooms
    }

    /// `AgentDispatchService.CreateDispatch`: the dispatch's id (`AD_…`).
    #[track_caller]
    pub(crate) fn create_dispatch(&self, room: &str, agent_name: &str, metadata: &str) -> String {
        let request = CreateAgentDispatchRequest {
            room: room.to_owned(),
            agent_name: agent_name.to_owned(),
            metadata: metadata.to_owned(),
            ..CreateAgentDispatchRequest::default()
        };
        let dispatch: AgentDispatch = self.twirp(
            "AgentDispatchService",
            "CreateDispatch",
            room_admin(room),
            &request,
        );
        dispatch.id
    }

    /// `AgentDispatchService.ListDispatch`: the room's dispatches, with their jobs.
    #[track_caller]
    pub(crate) fn list_dispatch(&self, room: &str) -> Vec<AgentDispatch> {
        let request = ListAgentDispatchRequest {
            room: room.to_owned(),
            ..ListAgentDispatchRequest::default()
        };
        let response: ListAgentDispatchResponse = self.twirp(
            "AgentDispatchService",
            "ListDispatch",
            room_admin(room),
            &request,
        );
        response.agent_dispatches
    }

    /// `AgentDispatchService.DeleteDispatch`: the deleted dispatch.
    #[track_caller]
    pub(crate) fn delete_dispatch(&self, dispatch_id: &str, room: &str) -> AgentDispatch {
        let request = DeleteAgentDispatchRequest {
            dispatch_id: dispatch_id.to_owned(),
            room: room.to_owned(),
        };
        self.twirp(
            "AgentDispatchService",
            "DeleteDispatch",
            room_admin(room),
            &request,
        )
    }

    /// One Twirp call with a JSON body; panics with the server's answer unless it is 200.
    #[track_caller]
    fn twirp<Request: Serialize, Response: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        grants: VideoGrants,
        request: &Request,
    ) -> Response {
        let body = serde_json::to_string(request).expect("the request as JSON");
        let url = format!("{}/twirp/livekit.{service}/{method}", self.url());
        let mut response = self
            .http
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.token(grants)))
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .unwrap_or_else(|error| panic!("POST {url}: {error}"));
        let status = response.status();
        let answer = response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|error| panic!("POST {url}: reading the answer: {error}"));
        assert!(
            status == 200,
            "{service}.{method}({body}) answered {status}: {answer}"
        );
        serde_json::from_str(&answer)
            .unwrap_or_else(|error| panic!("{service}.{method} answered {answer}: {error}"))
    }

    fn token(&self, grants: VideoGrants) -> String {
        AccessToken::with_api_key(API_KEY, API_SECRET)
            .with_grants(grants)
            .with_ttl(Duration::from_secs(600))
            .to_jwt()
            .expect("a token is minted")
    }
}

/// The grants of the room and dispatch API: create, list and administer (`room` scopes the
/// last; the dispatch service requires it).
fn room_admin(room: &str) -> VideoGrants {
    VideoGrants {
        room_create: true,
        room_list: true,
        room_admin: true,
        room: room.to_owned(),
        ..VideoGrants::default()
    }
}

impl Drop for LiveKitServer {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// SIGKILL to the server's process group (its own: spawned with `process_group(0)`), with
/// `kill(1)`, so the tests need no `unsafe`.
fn kill_group(pid: u32) {
    if pid > 1 {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` (Debian's, which `scripts/test` installs) on a free loopback port, with
/// nothing saved to disk, killed when dropped: what LiveKit's nodes share in multi-node mode.
pub(crate) struct Redis {
    child: Child,
    port: u16,
    /// Its working directory; removed on drop.
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one and waits until it answers `PING`.
    #[track_caller]
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for redis");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free TCP port")
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("redis-server starts (scripts/test installs Debian's redis-server)");
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_PATIENCE;
        while !redis.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {START_PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut answer = [0_u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}
