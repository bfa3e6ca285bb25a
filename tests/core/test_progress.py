"""One progress count across windows and stages: planned before the first token, met exactly."""

from __future__ import annotations

import io

import pytest
import torch

from cadenza.core.engine.cascade import Cascade
from cadenza.core.engine.progress import BarProgress, LineProgress, progress_display
from cadenza.registry import discover


class Recorder:
    """A Progress that keeps every call."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.total = self.done = 0

    def begin(self, total):
        self.total = total
        self.calls.append(("begin", total))

    def stage(self, label, steps):
        self.calls.append(("stage", label, steps))

    def advance(self, steps=1):
        self.done += steps

    def stage_done(self, label, seconds):
        self.calls.append(("done", label))

    def end(self):
        self.calls.append(("end",))


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    from tiny_specs import TINY_SPEC

    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return Cascade.from_spec(path, registry=discover(environ={}))


@pytest.mark.parametrize("options", [
    {"seconds": 0.5},
    {"seconds": 2.0, "window": 0.8, "overlap": 0.3},
    {"seconds": 1.6, "window": 0.8, "overlap": 0.2, "prime": True},
], ids=["one-pass", "long-form", "long-form-primed"])
def test_the_planned_total_is_the_count_of_tokens_sampled(cascade, options):
    options = dict(options)
    if options.pop("prime", False):
        options.update(prime=0.1 * torch.randn(1, cascade.sample_rate // 2), prime_rate=cascade.sample_rate)
    progress = Recorder()
    cascade.generate(["a", "b"], seed=0, progress=progress, watermark=False, **options)
    assert progress.total > 0 and progress.done == progress.total
    stages = [c for c in progress.calls if c[0] == "stage"]
    assert sum(c[2] for c in stages) == progress.total  # each stage announces what it will sample
    assert progress.calls[0][0] == "begin" and progress.calls[-2:] == [("done", "decode"), ("end",)]
    if "window" in options:
        assert stages[0][1] == "semantic 1/" + stages[-1][1].split("/")[1] and len(stages) > 3


def test_a_failed_stage_still_ends_the_display(cascade):
    class Broken(Recorder):
        def advance(self, steps=1):
            raise KeyboardInterrupt

    progress = Broken()
    with pytest.raises(KeyboardInterrupt):
        cascade.generate("a", seconds=0.5, progress=progress)
    assert progress.calls[-1] == ("end",)


def test_plain_lines_say_the_share_done_and_the_time_left():
    ticks = iter([0.0, 2.0, 4.0])
    out = io.StringIO()
    line = LineProgress(out, clock=lambda: next(ticks))
    line.begin(100)
    line.stage("coarse 1/2", 50)
    line.advance(50)
    line.stage_done("coarse 1/2", 2.0)
    line.stage("fine 1/2", 25)
    line.advance(25)
    line.stage_done("fine 1/2", 2.0)
    line.stage_done("decode", 0.25)
    assert out.getvalue().splitlines() == [
        "cadenza: stage coarse 1/2: 50 tokens in 2.0 s (50% of the run, about 2 s left)",
        "cadenza: stage fine 1/2: 25 tokens in 2.0 s (75% of the run, about 1 s left)",
        "cadenza: decode: 0.2 s",
    ]


def test_a_terminal_gets_one_bar_anything_else_plain_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_display(Terminal()), BarProgress)
    assert isinstance(progress_display(io.StringIO()), LineProgress)
    bar = BarProgress(Terminal())
    bar.begin(10)
    bar.stage("semantic", 10)
    bar.advance(10)
    assert bar.bar.n == 10 and bar.bar.desc.startswith("semantic")
    bar.end()
    assert bar.bar is None


def test_the_command_line_prints_a_line_per_stage_and_no_windowing_note_for_an_ordinary_clip(cli, tiny_spec,
                                                                                           write_spec, tmp_path):
    spec = write_spec(tiny_spec.read_text().replace("output: {seconds: 0.5}",
                                                    "output: {seconds: 1.0, window: 0.5, overlap: 0.2}"), "win.yaml")
    code, _, err = cli("generate", "x", "-p", spec, "-o", tmp_path / "a.wav")
    assert code == 0
    assert "cadenza: stage semantic 1/" in err and "cadenza: decode:" in err
    assert "long-form" not in err  # the spec's own windows are how it makes an ordinary clip
    code, _, err = cli("generate", "x", "-p", spec, "-o", tmp_path / "a.wav", "--seconds", "2")
    assert code == 0 and "note: long-form generation in" in err
    code, _, err = cli("generate", "x", "-p", spec, "-o", tmp_path / "a.wav", "-q")
    assert code == 0 and err == ""
