"""avs-batch's URL sources are untrusted: a playlist fetched from a URL list is refused (a failed row, which the
driver writes to failures.jsonl) and the server file it names is never opened; a local playlist, the user's own
file, keeps FFmpeg's behaviour."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from avs_engine.scale.stages import decode_video
from tests.io.test_open_policy import hls
from tests.sentinel import Sentinel


@pytest.fixture()
def web_folder(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_playlist_url_is_a_failed_row_and_reads_nothing(web_folder, tmp_path):
    folder, base = web_folder
    secret = tmp_path / "secret.ts"
    (folder / "list.m3u8").write_text(hls(secret))
    with Sentinel(secret) as sentinel:
        row = decode_video({"video_id": "list-1", "source": f"{base}/list.m3u8"}, img_size=64)
    assert not row["ok"] and row["stage"] == "decode", row
    assert row["error"].startswith("refused: this is an HLS playlist") and "\n" not in row["error"]
    assert sentinel.opened == 0
    # The same playlist as a local path (the user's own file): FFmpeg follows it, as avs-run does.
    local = tmp_path / "mine.m3u8"
    local.write_text(hls(secret))
    with Sentinel(secret) as sentinel:
        row = decode_video({"video_id": "mine-1", "source": str(local)}, img_size=64)
    assert not row["ok"] and sentinel.opened >= 1
