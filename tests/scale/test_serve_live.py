"""avs-serve live jobs over real HTTP, with two ingress replicas: two streams at once (MPEG-TS over TCP at
real-time pace), their masks as server-sent events; one source dies (its job ends with a one-line reason, the
other goes on); DELETE stops a job; a job whose actor dies is reported as failed; only allow-listed sources
start; a job started through one replica is seen, followed and stopped through the other."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.cli.test_run_live import CLIP_S, TsServer

from .conftest import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

APP = "avs-live-test"
INGRESS_REPLICAS = 2   # every request below may land on either: the jobs must be shared


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory):
    from tests.media_factory import make_video

    path = tmp_path_factory.mktemp("serve_live") / "clip.ts"
    make_video(path, seconds=CLIP_S, fps=25, size=(160, 96))
    return path


@pytest.fixture(scope="module")
def server(ray_cluster, demo_spec):
    from ray import serve

    from avs_engine.scale.serve_app import ServeConfig, start

    serve.shutdown()   # one HTTP proxy per cluster: start it on this module's port
    cfg = ServeConfig(runner=demo_spec, img_size=128, allow_sources=("tcp://127.0.0.1",), timeout_s=60,
                      model_cpus=0.25, ingress_cpus=0.25, stream_cpus=0.25, ingress_replicas=INGRESS_REPLICAS,
                      max_streams=3)
    yield start(cfg, host="127.0.0.1", port=free_port(), name=APP)
    import ray

    from avs_engine.scale.serve_app import stop
    from avs_engine.scale.stream_directory import directory_name

    ray.get_actor(directory_name(APP))   # the app's book of live jobs, shared by its replicas
    stop(APP)
    with pytest.raises(ValueError):   # ended with the app
        ray.get_actor(directory_name(APP))


def call(base, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def read_events(url: str, out: list, done: threading.Event) -> None:
    """Collect (event, data) pairs of a server-sent event stream until its end event."""
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            event, data = None, None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and event:
                    out.append((event, data))
                    if event == "end":
                        return
                    event = data = None
    finally:
        done.set()


def test_two_live_jobs_one_source_dies(server, ts_clip):
    whole = TsServer(ts_clip, CLIP_S)
    dying = TsServer(ts_clip, CLIP_S, stop_after=0.45)
    ids, events, done = [], [], []
    for src in (whole, dying):
        status, doc = call(server, "/v1/streams", {"source": src.url})
        assert status == 201, doc
        ids.append(doc["id"])
        events.append([])
        done.append(threading.Event())
        threading.Thread(target=read_events, args=(server + doc["events"], events[-1], done[-1]), daemon=True).start()
    for d in done:
        assert d.wait(180)
    for ev in events:
        assert ev[-1][0] == "end" and all(e == "mask" for e, _ in ev[:-1])
        end = ev[-1][1]
        assert end["state"] == "ended" and end["reason"] and "\n" not in end["reason"]
        assert all(d["latency_s"] >= 0 and "rle" in d for _, d in ev[:-1])
    assert events[0][-1][1]["reason"] == "end of stream"
    whole_masks = [d for e, d in events[0] if e == "mask"]
    dying_masks = [d for e, d in events[1] if e == "mask"]
    assert 1 <= len(dying_masks) < len(whole_masks)
    assert whole_masks[-1]["second"] > dying_masks[-1]["second"]   # the other went on
    status, doc = call(server, "/v1/streams")
    listed = {s["id"]: s for s in doc["streams"]}
    assert set(ids) <= set(listed)
    assert listed[ids[0]]["latency"]["p50_s"] is not None and listed[ids[0]]["dropped"] is not None


def test_delete_stops_a_job_and_a_dead_actor_is_reported(server, ts_clip):
    import ray

    slow = TsServer(ts_clip, CLIP_S * 4)
    status, doc = call(server, "/v1/streams", {"source": slow.url})
    assert status == 201, doc
    sid = doc["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = call(server, f"/v1/streams/{sid}")[1]
        if st["masks"]:
            break
        time.sleep(0.3)
    assert st["state"] == "running" and st["masks"] >= 1
    status, st = call(server, f"/v1/streams/{sid}", method="DELETE")
    assert status == 200 and st["state"] == "stopped" and st["reason"] == "stopped on request"

    other = TsServer(ts_clip, CLIP_S * 4)
    status, doc = call(server, "/v1/streams", {"source": other.url})
    assert status == 201
    ray.kill(ray.get_actor(f"avs-stream-{doc['id']}"))
    st = call(server, f"/v1/streams/{doc['id']}")[1]
    assert st["state"] == "failed" and "actor died" in st["reason"]


def test_only_allow_listed_streams_start(server):
    status, doc = call(server, "/v1/streams", {"source": "tcp://10.0.0.1:9000"})
    assert status == 403 and "allow-source" in doc["error"]
    status, doc = call(server, "/v1/streams", {"source": "rtsp://127.0.0.1/cam"})
    assert status == 403
    status, doc = call(server, "/v1/streams", {"nothing": 1})
    assert status == 400
    assert call(server, "/v1/streams/nope")[0] == 404


def test_stream_allowed_compares_parts():
    from avs_engine.scale.live_streams import stream_allowed

    allow = ("tcp://127.0.0.1", "rtsp://cams.local:554/site1", "udp://10.0.0.5:5000")
    assert stream_allowed("tcp://127.0.0.1:9000", allow)  # no port in the prefix, none by default: any port
    assert not stream_allowed("udp://10.0.0.5:5001", allow)  # a prefix's port is part of it
    assert not stream_allowed("rtsp://cams.local:554/site1/../site2", allow)  # dot segments resolved first
    assert not stream_allowed("rtsp://cams.local:554/site1/%2e%2e/site2", allow)
    assert not stream_allowed("rtsp://user:pw@cams.local:554/site1", allow)  # no user information
    assert stream_allowed("rtsp://CAMS.local:554/site1/door", allow)
    assert not stream_allowed("rtsp://cams.local:554/site10", allow)
    assert not stream_allowed("rtsp://cams.local:8554/site1", allow)
    assert not stream_allowed("tcp://127.0.0.1.evil.com:9000", allow)
    assert not stream_allowed("udp://127.0.0.1:9000", allow)


def _replica_states() -> list[str]:
    from ray import serve

    ingress = serve.status().applications[APP].deployments["Ingress"]
    return [state for state, n in ingress.replica_states.items() for _ in range(n)]


def test_jobs_are_shared_by_the_ingress_replicas(server, ts_clip):
    """POST, then GET/list/events/DELETE many times: whichever replica answers knows the job (with the jobs
    held by the replica that started them, about half of these requests answered 404)."""
    assert _replica_states() == ["RUNNING"] * INGRESS_REPLICAS
    slow = TsServer(ts_clip, CLIP_S * 4)
    status, doc = call(server, "/v1/streams", {"source": slow.url})
    assert status == 201, doc
    sid = doc["id"]
    for _ in range(12):
        status, st = call(server, f"/v1/streams/{sid}")
        assert status == 200 and st["id"] == sid and st["state"] in ("starting", "running"), st
        status, listed = call(server, "/v1/streams")
        assert status == 200 and sid in {s["id"] for s in listed["streams"]}
    for _ in range(4):   # the event stream, opened through either replica, reads until its first mask
        with urllib.request.urlopen(server + f"/v1/streams/{sid}/events", timeout=120) as r:
            assert r.status == 200
            assert _first_event(r) == "mask"
    status, st = call(server, f"/v1/streams/{sid}", method="DELETE")
    assert status == 200 and st["state"] == "stopped" and st["reason"] == "stopped on request"
    for _ in range(6):   # the final status, from the shared book, on every replica
        status, again = call(server, f"/v1/streams/{sid}")
        assert status == 200 and again["state"] == "stopped" and again["masks"] == st["masks"]
        status, doc = call(server, f"/v1/streams/{sid}", method="DELETE")
        assert status == 200 and doc["state"] == "stopped"


def test_the_stream_limit_holds_for_all_replicas_together(server, ts_clip):
    """max_streams 3 for the app: the 4th running job is refused, whichever replica is asked."""
    ids = []
    for _ in range(3):
        status, doc = call(server, "/v1/streams", {"source": TsServer(ts_clip, CLIP_S * 4).url})
        assert status == 201, doc
        ids.append(doc["id"])
    for _ in range(4):
        status, doc = call(server, "/v1/streams", {"source": TsServer(ts_clip, CLIP_S * 4).url})
        assert status == 429 and "at most 3 live streams" in doc["error"]
    for sid in ids:
        assert call(server, f"/v1/streams/{sid}", method="DELETE")[0] == 200
    status, doc = call(server, "/v1/streams", {"source": TsServer(ts_clip, CLIP_S).url, "duration_s": 1})
    assert status == 201, doc
    assert call(server, f"/v1/streams/{doc['id']}", method="DELETE")[0] == 200


def _first_event(r) -> str | None:
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            return line[7:]
    return None


def test_a_live_job_with_its_audio_on_a_second_stream(server, ts_clip, tmp_path):
    """POST with audio_source: video and audio from two allow-listed streams; a mask for each second."""
    from tests.cli.test_run_live_audio import _one_kind

    video = TsServer(_one_kind(ts_clip, tmp_path / "video.ts", "video"), CLIP_S)
    audio = TsServer(_one_kind(ts_clip, tmp_path / "audio.ts", "audio"), CLIP_S)
    status, doc = call(server, "/v1/streams", {"source": video.url, "audio_source": "tcp://10.0.0.1:9000"})
    assert status == 403 and "tcp://10.0.0.1:9000" in doc["error"]
    status, doc = call(server, "/v1/streams", {"source": video.url, "audio_source": audio.url, "audio_sync": "wall"})
    assert status == 400 and "audio_sync" in doc["error"]
    status, doc = call(server, "/v1/streams", {"source": video.url, "audio_source": audio.url, "audio_sync": "timestamps"})
    assert status == 201, doc
    events, done = [], threading.Event()
    read_events(server + doc["events"], events, done)
    end = events[-1][1]
    assert events[-1][0] == "end" and end["state"] == "ended" and end["reason"] == "end of stream", end
    assert end["masks"] + end["dropped"] == 6 and end["masks"] >= 3


def test_a_booked_job_without_its_actor_yet_is_starting_then_failed(ray_cluster, demo_spec):
    """Between one replica booking a job and creating its named actor, another replica reads it as starting;
    a booked job whose actor never appeared, or was made and is gone, is reported as failed, once, in the
    shared book."""
    import asyncio

    import ray

    from avs_engine.scale.live_streams import StreamRegistry
    from avs_engine.scale.stream_directory import directory_name

    reg = StreamRegistry(demo_spec, ("tcp://127.0.0.1",), {}, app="unit-book")
    other = StreamRegistry(demo_spec, ("tcp://127.0.0.1",), {}, app="unit-book")   # a second replica: same book
    try:
        assert ray.get(reg.book.reserve.remote("young", "tcp://127.0.0.1:1", time.time(), 4))
        assert ray.get(reg.book.reserve.remote("old", "tcp://127.0.0.1:2", time.time() - 60, 4))
        assert asyncio.run(other.status("young"))["state"] == "starting"
        st = asyncio.run(other.status("old"))
        assert st["state"] == "failed" and "actor died" in st["reason"]
        assert asyncio.run(reg.status("old")) == st   # booked once, seen by both
        assert asyncio.run(reg.status("nope")) is None
        assert ray.get(reg.book.reserve.remote("gone", "tcp://127.0.0.1:3", time.time(), 4))
        ray.get(reg.book.created.remote("gone"))   # its actor was made (and is not there now: it died)
        assert asyncio.run(other.status("gone"))["state"] == "failed"
    finally:
        ray.kill(ray.get_actor(directory_name("unit-book")))
