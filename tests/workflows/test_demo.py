"""``cadenza demo``: the clips it makes (checked inputs, WAV + PNG + sidecar, watermarked), the page
built around them, and the real server driven over HTTP with gradio_client, as a browser's page is."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import soundfile

from cadenza.core.errors import InputError
from cadenza.core.spec.schema import DEFAULT_WATERMARK
from cadenza.plugins.workflows.corpus.compose import Song, Track
from cadenza.plugins.workflows.demo.app import MISSING_GRADIO, build_demo
from cadenza.plugins.workflows.demo.clips import ClipMaker, pipeline_choices
from cadenza.plugins.workflows.demo.config import DemoConfig
from cadenza.plugins.workflows.detect.command import DetectConfig, detect

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_RATE = 16000  # the tiny-codec's rate in the tiny-random preset


def tune(path):
    """A four-note MIDI melody (120 BPM, half a second per beat)."""
    lead = Track("lead", 0, 73, [(0, 1, 67, 100), (1, 1, 72, 100), (2, 1, 64, 100), (3, 1, 60, 100)])
    path.write_bytes(Song(bpm=120, beats=4, tracks=[lead]).to_midi())
    return path


@pytest.fixture(scope="module")
def maker(tmp_path_factory, registry):
    out = tmp_path_factory.mktemp("clips")
    config = DemoConfig(pipeline="tiny-random", pipelines=pipeline_choices(registry, "tiny-random"), out_dir=out,
                        max_seconds=2.0)
    return ClipMaker(config, registry)


def test_a_clip_is_a_watermarked_wav_of_the_asked_length_with_its_spectrogram(maker):
    clip = maker.make("a soft flute", "tiny-random", 1.5, 3)  # the mark needs more than a second to be found
    audio, rate = soundfile.read(clip.audio, always_2d=True)
    assert (rate, audio.shape[0]) == (TINY_RATE, int(1.5 * TINY_RATE)) and clip.seconds == 1.5
    assert clip.plot.read_bytes().startswith(PNG_SIGNATURE)
    sidecar = json.loads(clip.sidecar.read_text())
    assert sidecar["prompt"] == "a soft flute" and sidecar["seed"] == 3 and sidecar["pipeline"] == "tiny-random"
    assert sidecar["plot"] == clip.plot.name and sidecar["watermark"]["name"] == DEFAULT_WATERMARK
    [found] = detect(DetectConfig((str(clip.audio),), DEFAULT_WATERMARK))
    assert found["marked"], found
    assert "1.5 s at 16000 Hz" in clip.summary and "random, untrained weights" in clip.summary


def test_the_cascade_is_built_once_per_pipeline_and_clips_do_not_overwrite_each_other(maker):
    first = maker.make("drums", "tiny-random", 0.25, 0)
    cascade = maker.cascade("tiny-random")
    second = maker.make("drums", "tiny-random", 0.25, 0.0)  # the page's number box may send 0.0
    assert maker.cascade("tiny-random") is cascade and first.audio != second.audio
    assert soundfile.read(first.audio)[0].tolist() == soundfile.read(second.audio)[0].tolist()  # same seed


def test_an_uploaded_midi_melody_is_followed(maker, tmp_path):
    clip = maker.make("a flute", "tiny-random", 1.0, 1, str(tune(tmp_path / "tune.mid")))
    assert json.loads(clip.sidecar.read_text())["melody"]["source"] == "midi"
    assert "followed the melody of tune.mid (4 notes" in clip.summary


@pytest.mark.parametrize("prompt, pipeline, seconds, seed, message", [
    ("  ", "tiny-random", 1.0, 0, "the prompt is empty: describe the music to generate"),
    (None, "tiny-random", 1.0, 0, "the prompt is empty"),
    ("x", "tiny-random", 3.0, 0, "seconds must be at most 2 on this page (cadenza demo --max-seconds), got 3"),
    ("x", "tiny-random", -1.0, 0, "seconds must be a positive number of seconds, got -1.0"),
    ("x", "tiny-random", 1.0, 1.5, "seed must be an integer from 0 to 2^63-1, got 1.5"),
    ("x", "nope", 1.0, 0, "pipeline 'nope' is not offered here; choose one of"),
])
def test_bad_inputs_are_one_line(maker, prompt, pipeline, seconds, seed, message):
    with pytest.raises(InputError) as caught:
        maker.make(prompt, pipeline, seconds, seed)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_broken_upload_is_named_as_uploaded_not_by_the_servers_copy(maker, tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
    with pytest.raises(InputError) as caught:
        maker.make("x", "tiny-random", 1.0, 0, str(tmp_path / "bad.mid"))
    assert str(caught.value).startswith("melody: bad.mid: cannot read MIDI") and str(tmp_path) not in str(caught.value)


@pytest.mark.slow  # importing gradio takes seconds
def test_the_page_offers_the_installed_presets_and_one_api_endpoint(maker, registry):
    pytest.importorskip("gradio")
    config = maker.config
    assert "tiny-random" in config.pipelines and set(registry.pipelines) == set(config.pipelines)
    assert pipeline_choices(registry, "my-spec.yaml")[0] == "my-spec.yaml"
    page = build_demo(config, maker).get_config_file()
    [endpoint] = [d for d in page["dependencies"] if d.get("api_name") == "generate"]
    assert len(endpoint["inputs"]) == 5 and len(endpoint["outputs"]) == 3
    [dropdown] = [c["props"] for c in page["components"] if c["type"] == "dropdown"]
    assert [value for _, value in dropdown["choices"]] == list(config.pipelines) and dropdown["value"] == "tiny-random"
    [upload] = [c["props"] for c in page["components"] if c["type"] == "file"]
    assert {".mid", ".midi", ".wav"} <= set(upload["file_types"])


def test_help_does_not_import_gradio():
    code = ("import sys; from cadenza.core.cli.main import build_parser; build_parser().format_help(); "
            "assert 'cadenza.plugins.workflows.demo' in sys.modules; print('gradio' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_gradio_the_command_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what an environment without the extra has: no gradio
    code, out, err = cli("demo", "--pipeline", "tiny-random")
    assert (code, out, err) == (2, "", MISSING_GRADIO + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(server: subprocess.Popen, log, url: str, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the demo exited with {server.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the demo did not come up at {url} in {seconds:g} s")


@pytest.mark.slow
def test_the_server_generates_over_http_and_shows_bad_input_as_a_message(tmp_path):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    port = free_port()
    temp = tmp_path / "tmp"  # the server's temporary folders, to see that it cleans up after itself
    temp.mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "TMPDIR": str(temp), "CADENZA_OFFLINE": "1"}
    log = tmp_path / "server.log"  # a file, not a pipe: progress bars could fill a pipe and stall the server
    server = subprocess.Popen([sys.executable, "-m", "cadenza.core.cli", "demo", "--pipeline", "tiny-random",
                               "--port", str(port), "--max-seconds", "5"],
                              env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(server, log, url)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        wav, png, summary = client.predict("a soft flute", "tiny-random", 0.75, 2,
                                           handle_file(str(tune(tmp_path / "tune.mid"))), api_name="/generate")
        audio, rate = soundfile.read(wav, always_2d=True)
        assert (rate, audio.shape[0]) == (TINY_RATE, int(0.75 * TINY_RATE))
        with open(png, "rb") as image:
            assert image.read(8) == PNG_SIGNATURE
        assert "followed the melody of tune.mid" in summary and "watermarked" in summary
        (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
        for args, message in [(("", "tiny-random", 1.0, 0, None), "the prompt is empty"),
                              (("x", "tiny-random", 60.0, 0, None), "seconds must be at most 5 on this page"),
                              (("x", "tiny-random", 1.0, 0, handle_file(str(tmp_path / "bad.mid"))),
                               "melody: bad.mid: cannot read MIDI")]:
            with pytest.raises(AppError) as caught:
                client.predict(*args, api_name="/generate")
            assert str(caught.value).startswith(message), str(caught.value)
        server.send_signal(signal.SIGINT)  # Ctrl-C
        assert server.wait(timeout=60) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "Traceback" not in log.read_text()
    assert not list(temp.glob("cadenza-demo-*"))
