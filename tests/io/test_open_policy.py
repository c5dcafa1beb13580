"""The strict open policy: playlists, concat lists and manifests that name a file on this machine are refused
before that file is opened (a FIFO proves it, see ``tests.sentinel``); real containers still open; the default
policy (the user's own files) is unchanged, which also shows that the sentinel does detect an open."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from avs_engine.errors import MediaError
from avs_engine.io import open_policy
from avs_engine.io.audio import read_audio_16k
from avs_engine.io.frames import iter_second_frames
from avs_engine.io.probe import probe
from tests.media_factory import make_raw_h264, make_video
from tests.sentinel import Sentinel


def hls(sentinel: Path) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{sentinel}\n#EXT-X-ENDLIST\n"


def ffconcat(sentinel: Path) -> str:
    # A name next to the list: FFmpeg's concat "safe" mode refuses absolute paths, not this.
    return f"ffconcat version 1.0\nfile '{sentinel.name}'\n"


def dash(sentinel: Path) -> str:
    return ('<?xml version="1.0" encoding="utf-8"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            'mediaPresentationDuration="PT10S" minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">'
            f'<Period id="0" start="PT0S"><AdaptationSet id="0" contentType="video"><Representation id="1" bandwidth="1000" '
            f'mimeType="video/mp2t"><BaseURL>{sentinel}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>\n')


ATTACKS = {"list.m3u8": (hls, "HLS playlist"), "list.ffconcat": (ffconcat, "concat list"),
           "list.mpd": (dash, "DASH manifest")}


def _read_all(path: Path) -> None:
    info = probe(path)
    list(iter_second_frames(path, info=info))
    read_audio_16k(path)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_strict_policy_refuses_lists_without_opening_what_they_name(tmp_path, name):
    write, words = ATTACKS[name]
    target = tmp_path / "secret.ts"
    listing = tmp_path / name
    listing.write_text(write(target))
    with Sentinel(target) as sentinel, open_policy.strict(listing):
        with pytest.raises(MediaError) as err:
            _read_all(listing)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{listing}: refused: this is a") and words in msg, msg
    assert sentinel.opened == 0


@pytest.mark.parametrize("name", ["list.m3u8", "list.ffconcat"])
def test_default_policy_follows_lists_and_the_sentinel_sees_it(tmp_path, name):
    """The user's own files keep FFmpeg's behaviour; this is also the check that the sentinel detects an open."""
    write, _ = ATTACKS[name]
    target = tmp_path / "secret.ts"
    listing = tmp_path / name
    listing.write_text(write(target))
    with Sentinel(target) as sentinel:
        with pytest.raises(MediaError):
            _read_all(listing)   # the sentinel's bytes are not media
    assert sentinel.opened >= 1


def test_strict_policy_opens_the_accepted_containers(tmp_path):
    for suffix in (".mp4", ".mov", ".mkv", ".avi", ".webm"):
        path = tmp_path / f"v{suffix}"
        make_video(path, seconds=2, size=(64, 48), fps=8)
        with open_policy.strict(path):
            assert probe(path).n_frames == probe(path).n_frames > 0
            assert len(list(iter_second_frames(path))) == 2
            assert read_audio_16k(path).size > 16000
    raw = tmp_path / "raw.h264"
    make_raw_h264(raw, seconds=2)
    with open_policy.strict(raw), pytest.raises(MediaError, match="refused: not one of the container formats"):
        probe(raw)
    probe(raw)   # outside the block: the default policy again


def test_strict_registration_nests_and_ends(tmp_path):
    p = tmp_path / "a.mp4"
    assert not open_policy.is_strict(p)
    with open_policy.strict(p):
        with open_policy.strict(str(p)):
            assert open_policy.is_strict(p)
        assert open_policy.is_strict(p)
    assert not open_policy.is_strict(p)
    assert open_policy.open_options(p) == {}


def test_avs_run_untrusted_refuses_a_playlist_and_plain_avs_run_does_not(tmp_path):
    from avs_engine.cli.run import main

    target = tmp_path / "secret.ts"
    listing = tmp_path / "list.m3u8"
    listing.write_text(hls(target))
    runner = CliRunner()
    with Sentinel(target) as sentinel:
        res = runner.invoke(main, [str(listing), "--untrusted", "--project", str(tmp_path / "runs"), "-q"])
    assert res.exit_code == 1, res.output
    assert "refused: this is an HLS playlist" in res.output and "Traceback" not in res.output
    assert sentinel.opened == 0
    assert not open_policy.is_strict(listing)   # the flag ends with the command
    with Sentinel(target) as sentinel:
        res = runner.invoke(main, [str(listing), "--project", str(tmp_path / "runs"), "-q"])
    assert res.exit_code == 1 and sentinel.opened >= 1
