"""A caller in a LiveKit room, with LiveKit's own Python SDK (PyPI `livekit`).

It joins the room, publishes a tone on a microphone track (after half a second of
silence), subscribes to the first other participant's audio, and prints one JSON line: when
the tone was first heard back (round trip from the tone's first frame), the frequency heard
(zero crossings over the loud part), and how many 10 ms frames it heard. The LiveKit tests run
it against an agent that echoes what it hears.

Usage: publisher.py --url URL --token JWT [--seconds 3] [--frequency 440]
"""

import argparse
import asyncio
import json
import math
import time

from livekit import rtc

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 480  # 10 ms
LEAD_SILENCE_S = 0.5
LOUD_RMS = 1_000.0


async def run(url: str, token: str, seconds: float, frequency: float) -> dict:
    room = rtc.Room()
    heard: list[tuple[float, list[int]]] = []
    readers: list[asyncio.Task] = []

    async def read(track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        async for event in stream:
            heard.append((time.monotonic(), list(event.frame.data)))

    @room.on("track_subscribed")
    def on_track(track, _publication, _participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            readers.append(asyncio.ensure_future(read(track)))

    await room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)

    frames = int((LEAD_SILENCE_S + seconds) * SAMPLE_RATE / FRAME_SAMPLES)
    silent_frames = int(LEAD_SILENCE_S * SAMPLE_RATE / FRAME_SAMPLES)
    start = time.monotonic()
    tone_started = None
    phase = 0
    for index in range(frames):
        frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
        samples = frame.data
        if index >= silent_frames:
            if tone_started is None:
                tone_started = time.monotonic()
            for i in range(FRAME_SAMPLES):
                samples[i] = int(8_000 * math.sin(2 * math.pi * frequency * phase / SAMPLE_RATE))
                phase += 1
        await source.capture_frame(frame)
        # Paced on absolute deadlines, as a microphone delivers.
        delay = start + (index + 1) * FRAME_SAMPLES / SAMPLE_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.sleep(0.5)
    await room.disconnect()
    for reader in readers:
        reader.cancel()

    loud = [(at, samples) for at, samples in heard if rms(samples) > LOUD_RMS]
    result = {"frames_heard": len(heard), "loud_frames_heard": len(loud)}
    if loud and tone_started is not None:
        result["round_trip_ms"] = (loud[0][0] - tone_started) * 1000.0
        # Skip the onset (the first 100 ms heard), then count zero crossings.
        steady = [sample for _, samples in loud[10:] for sample in samples]
        crossings = sum(1 for a, b in zip(steady, steady[1:]) if (a < 0) != (b < 0))
        result["frequency_hz"] = crossings / 2 / (len(steady) / SAMPLE_RATE) if steady else 0.0
    return result


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--frequency", type=float, default=440.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.token, args.seconds, args.frequency))))


if __name__ == "__main__":
    main()
