//! What a session dispatched by LiveKit knows of its job (`Session::livekit`).

use std::fmt;

/// One LiveKit job, as the server assigned it: the room to join, as whom, and with what.
///
/// The token is the one the server minted for this job (it joins `room_name` as
/// `participant_identity`); `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveKitJob {
    /// The job's id (`AJ_…`).
    pub job_id: String,
    /// The dispatch that created it (`AD_…`; empty for a room's automatic dispatch on old
    /// servers).
    pub dispatch_id: String,
    /// The room's name.
    pub room_name: String,
    /// The room's id (`RM_…`).
    pub room_sid: String,
    /// The identity the agent joins the room as (the worker's answer to the offer).
    pub participant_identity: String,
    /// For a publisher or participant job, the identity of the participant it is about.
    pub target_identity: Option<String>,
    /// The agent name the job was dispatched to (empty: automatic dispatch).
    pub agent_name: String,
    /// The dispatch's metadata, as the server sent it.
    pub metadata: String,
    /// The URL to join the room at: the assignment's, else the worker's server URL.
    pub url: String,
    /// The access token to join the room with.
    pub token: String,
}

impl LiveKitJob {
    /// The job as a session's snapshot row shows it (no token, no metadata: the row's
    /// metadata has the dispatch's fields).
    pub(crate) fn snapshot(&self) -> openrtc_proto::LiveKitJobSnapshot {
        let mut snapshot = openrtc_proto::LiveKitJobSnapshot::default();
        snapshot.job_id.clone_from(&self.job_id);
        snapshot.dispatch_id.clone_from(&self.dispatch_id);
        snapshot.room.clone_from(&self.room_name);
        snapshot.room_sid.clone_from(&self.room_sid);
        snapshot
            .participant_identity
            .clone_from(&self.participant_identity);
        snapshot.agent_name.clone_from(&self.agent_name);
        snapshot
    }
}

impl fmt::Debug for LiveKitJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitJob")
            .field("job_id", &self.job_id)
            .field("dispatch_id", &self.dispatch_id)
            .field("room_name", &self.room_name)
            .field("room_sid", &self.room_sid)
            .field("participant_identity", &self.participant_identity)
            .field("target_identity", &self.target_identity)
            .field("agent_name", &self.agent_name)
            .field("metadata", &self.metadata)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}
