"""avs-serve started in-process on the session's Ray, called over real HTTP on 127.0.0.1: avs-run's masks for good
uploads, 4xx with one line for bad ones, the limits, the allow-list, 4 concurrent requests, batching, health."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from avs_engine.runtime import rle

from .conftest import GOOD, RAY_MISSING, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

APP = "avs-test"


@pytest.fixture(scope="module")
def web():
    """A local HTTP server that logs every request's path (``/ok/...`` is the allowed prefix)."""
    from .test_url_check import LoggingServer

    s = LoggingServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def server(ray_cluster, demo_spec, scale_videos, web):
    """The app on a free port: 1 MB uploads, videos up to 5.5 s, paths under the test videos' folder and URLs under
    the logging web server's ``/ok/`` allowed."""
    from ray import serve

    from avs_engine.scale.serve_app import ServeConfig, start

    cfg = ServeConfig(runner=demo_spec, img_size=128, allow_sources=(str(scale_videos["gen00"].parent), f"{web.base}/ok/"),
                      max_upload_mb=1.0, max_video_s=5.5, timeout_s=60, model_cpus=0.5, ingress_cpus=0.25,
                      max_batch_frames=32, batch_wait_s=0.05)
    yield start(cfg, host="127.0.0.1", port=free_port(), name=APP)
    serve.delete(APP)


def call(base, path, data=None, ctype="video/mp4", timeout=60):
    """(status, JSON body) of one request."""
    headers = {"Content-Type": ctype} if data is not None else {}
    req = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def masks_of(doc) -> list[np.ndarray]:
    return [rle.decode(s["mask"]) for s in doc["seconds"]]


def assert_one_line_error(status, doc, code, *words):
    assert status == code, (status, doc)
    assert set(doc) == {"error", "request_id"}, doc
    assert "\n" not in doc["error"] and "Traceback" not in doc["error"], doc
    for w in words:
        assert w in doc["error"], doc


def test_health_and_openapi(server):
    status, doc = call(server, "/healthz")
    assert status == 200 and doc["status"] == "ok" and doc["model"]["preset"] == "demo"
    assert doc["limits"]["max_video_s"] == 5.5 and doc["limits"]["sources_allowed"]
    with urllib.request.urlopen(server + "/openapi.json", timeout=30) as r:
        spec = json.loads(r.read())
    assert "/v1/segment" in spec["paths"] and "/healthz" in spec["paths"]


def test_good_uploads_give_avs_run_masks(server, scale_videos, avs_run_masks):
    for name in ("gen00", "gen03"):
        status, doc = call(server, "/v1/segment", scale_videos[name].read_bytes())
        assert status == 200, doc
        assert doc["n_seconds"] == GOOD[name][0] and [s["second"] for s in doc["seconds"]] == list(range(GOOD[name][0]))
        masks = masks_of(doc)
        assert all(np.array_equal(a, b) for a, b in zip(masks, avs_run_masks[name])) and len(masks) == len(avs_run_masks[name])
        for s, m in zip(doc["seconds"], masks):
            assert s["area_fraction"] == pytest.approx(float(m.mean()))
            assert s["mask"]["size"] == [doc["height"], doc["width"]]
        assert doc["overlay"] is None and doc["timings"]["total_s"] > 0


def test_bad_uploads_are_4xx_with_one_line(server, scale_videos):
    cases = [
        (scale_videos["truncated"].read_bytes(), "video/mp4", 422, ["not a readable media file"]),
        (scale_videos["no_audio"].read_bytes(), "video/mp4", 422, ["no audio track"]),
        (b"", "video/mp4", 400, ["empty upload"]),
        (bytes(range(256)) * 64, "application/octet-stream", 422, ["upload:"]),
        (scale_videos["gen04"].read_bytes(), "video/mp4", 422, ["6 s long", "up to 5.5 s"]),
        (b"\0" * 1_200_000, "video/mp4", 413, ["1 MB limit"]),
        (b"--x\r\n", "multipart/form-data; boundary=x", 400, ["not as a multipart form"]),
    ]
    for data, ctype, code, words in cases:
        status, doc = call(server, "/v1/segment", data, ctype)
        assert_one_line_error(status, doc, code, *words)
    status, doc = call(server, "/v1/segment?overlay=perhaps", b"x")
    assert_one_line_error(status, doc, 400, "overlay")


def test_sources_only_under_the_allow_list(server, scale_videos, avs_run_masks):
    inside = scale_videos["gen01"]
    status, doc = call(server, f"/v1/segment?source={inside}", b"")
    assert status == 200 and doc["video"] == str(inside)
    assert all(np.array_equal(a, b) for a, b in zip(masks_of(doc), avs_run_masks["gen01"]))
    for outside in ("/etc/hostname", f"{inside.parent}/../../../etc/hostname", "http://127.0.0.1:9/x.mp4"):
        status, doc = call(server, f"/v1/segment?source={outside}", b"")
        assert_one_line_error(status, doc, 403, "--allow-source")


def test_four_concurrent_requests(server, scale_videos, avs_run_masks):
    names = ["gen00", "gen01", "gen02", "gen03"]
    with cf.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda n: call(server, "/v1/segment", scale_videos[n].read_bytes()), names))
    for name, (status, doc) in zip(names, answers):
        assert status == 200, doc
        assert all(np.array_equal(a, b) for a, b in zip(masks_of(doc), avs_run_masks[name]))
    assert len({doc["request_id"] for _, doc in answers}) == 4


def test_model_replica_batches_clips_of_concurrent_callers(server, scale_videos):
    from ray import serve

    from avs_engine.runtime import ClipSource

    source = ClipSource(128)
    clips = []
    for name in ("gen00", "gen01", "gen02", "gen03"):
        result = source.open(scale_videos[name])
        clips += [(c.frames, c.log_mel) for c in source.clips(result)]
    handle = serve.get_deployment_handle("Segmenter", app_name=APP)

    async def all_at_once():
        return await asyncio.gather(*(handle.infer.remote(c) for c in clips))

    answers = asyncio.run(all_at_once())
    assert [a[0].shape[0] for a in answers] == [c[0].shape[0] for c in clips]
    assert max(a[1]["clips"] for a in answers) > 1  # several callers' clips in one model call
    assert max(a[1]["frames"] for a in answers) <= 32


def test_overlay_comes_back_as_base64_mp4(server, scale_videos):
    status, doc = call(server, "/v1/segment?overlay=true", scale_videos["gen00"].read_bytes())
    assert status == 200 and doc["overlay"]["mime"] == "video/mp4"
    assert base64.b64decode(doc["overlay"]["base64"])[4:8] == b"ftyp"


def test_error_answers_never_carry_a_traceback():
    """The mapping every request goes through: an unexpected exception is a fixed 500 line, a slow one 504."""
    pytest.importorskip("ray", reason=RAY_MISSING)
    from avs_engine.errors import MediaError
    from avs_engine.scale.serve_app import HttpError, respond

    async def boom():
        raise RuntimeError("secret /srv/model/path\nTraceback (most recent call last): ...")

    async def slow():
        await asyncio.sleep(5)

    async def media():
        raise MediaError("/tmp/avs-serve-x/upload.mp4: no audio track")

    async def refused():
        raise HttpError(413, "too big\nsecond line")

    got = {name: asyncio.run(respond(work(), timeout_s=0.2, tmp="/tmp/avs-serve-x/upload.mp4"))
           for name, work in [("boom", boom), ("slow", slow), ("media", media), ("refused", refused)]}
    bodies = {k: json.loads(v.body) for k, v in got.items()}
    assert got["boom"].status_code == 500 and bodies["boom"]["error"] == "internal error; the server log has the details"
    assert got["slow"].status_code == 504 and "timed out after 0.2 s" in bodies["slow"]["error"]
    assert got["media"].status_code == 422 and bodies["media"]["error"] == "no audio track"
    assert got["refused"].status_code == 413 and bodies["refused"]["error"] == "too big"


def test_lists_that_name_server_files_are_refused_unread(server, scale_videos, tmp_path):
    """An HLS playlist, a concat list and a DASH manifest naming a file on the server: 422 with one line, and the
    file is never opened (a FIFO that records every open, in any process)."""
    from tests.io.test_open_policy import dash, ffconcat, hls
    from tests.sentinel import Sentinel

    secret = tmp_path / "secret.ts"
    uploads = [("x.m3u8", hls(secret), "HLS playlist"), ("x.mpd", dash(secret), "DASH manifest"),
               ("x.ffconcat", f"ffconcat version 1.0\nfile '{secret}'\n", "concat list")]
    for filename, text, words in uploads:
        with Sentinel(secret) as sentinel:
            status, doc = call(server, f"/v1/segment?filename={filename}&overlay=true", text.encode(),
                               "application/octet-stream")
        assert_one_line_error(status, doc, 422, f"{filename}: refused: this is a", words)
        assert sentinel.opened == 0, filename
    # A concat list inside an allowed folder, naming a file next to it (which FFmpeg's own safe mode allows).
    folder = scale_videos["gen00"].parent
    listing, secret = folder / "list.ffconcat", folder / "secret-next-to-it.ts"
    listing.write_text(ffconcat(secret))
    try:
        with Sentinel(secret) as sentinel:
            status, doc = call(server, f"/v1/segment?source={listing}", b"")
        assert_one_line_error(status, doc, 422, "refused: this is an FFmpeg concat list")
        assert sentinel.opened == 0
    finally:
        listing.unlink()


def test_url_sources_compare_canonical_urls_and_redirects(server, web):
    """Every string-prefix bypass of ``--allow-source http://host/ok/`` is refused (403, one line), and the logging
    server never receives a request for a path outside ``/ok/``, redirects included."""
    import urllib.parse

    from .test_url_check import bypasses

    urls = bypasses(web.base) + [f"{web.base}/ok/out", f"{web.base}/ok/out-dots", f"{web.base}/ok/out-abs"]
    for url in urls:
        status, doc = call(server, "/v1/segment?source=" + urllib.parse.quote(url, safe=""), b"")
        assert_one_line_error(status, doc, 403, "--allow-source")
    assert web.outside() == [], web.paths
    # Inside the prefix: fetched (and refused as media: its bytes are not a video), as its canonical URL.
    status, doc = call(server, "/v1/segment?source=" + urllib.parse.quote(f"{web.base}/ok/x/../%67ood.mp4", safe=""), b"")
    assert status == 422 and web.paths[-1] == "/ok/good.mp4", (status, doc, web.paths)


def test_a_replica_that_dies_answers_503_and_the_next_request_is_served(server, demo_graphs, scale_videos, tmp_path):
    """The model replica's process is killed (by the test) while it runs a request: that request gets 503 with one
    line, Serve replaces the replica, and the next request gets its masks."""
    import threading
    import time

    from ray import serve

    from avs_engine.scale.serve_app import ServeConfig, build_app

    from . import fault_runner

    fault_runner.register()
    marker = tmp_path / "marker"
    marker.mkdir()
    spec = fault_runner.FaultySpec(backend="onnxruntime", engine_dir=str(demo_graphs), threads=1,
                                   marker_dir=str(marker), stall_frames=GOOD["gen01"][0])
    cfg = ServeConfig(runner=spec, img_size=128, timeout_s=90, model_cpus=0.25, ingress_cpus=0.25, max_batch_frames=32)
    serve.run(build_app(cfg), name="avs-faulty", route_prefix="/faulty", blocking=False)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:   # wait for the app to answer
            status, _ = call(server, "/faulty/healthz")
            if status == 200:
                break
            time.sleep(1)
        killed, stop = [], threading.Event()
        t = threading.Thread(target=fault_runner.kill_when_busy, args=(marker, stop, killed), daemon=True)
        t.start()
        status, doc = call(server, "/faulty/v1/segment", scale_videos["gen01"].read_bytes(), timeout=120)
        stop.set()
        t.join(5)
        assert killed, "the replica never stalled"
        assert_one_line_error(status, doc, 503, "model replica stopped", "send the request again")
        status, doc = call(server, "/faulty/v1/segment", scale_videos["gen01"].read_bytes(), timeout=120)
        assert status == 200 and doc["n_seconds"] == GOOD["gen01"][0], doc
        assert len(list(marker.glob("actor-*"))) >= 2   # a new replica served it
    finally:
        serve.delete("avs-faulty")
