"""The demo's web page: Gradio Blocks around a :class:`~.clips.ClipMaker`, and the server that serves it.

Gradio is imported here, inside the functions that need it (it is an optional extra and takes
seconds to import), so ``cadenza --help`` and the rest of the command line never load it. The
page's one event is exposed as the API endpoint ``/generate`` (what ``gradio_client`` calls), with
the inputs ``prompt, pipeline, seconds, seed, melody`` and the outputs ``audio, spectrogram, summary``.
"""

from __future__ import annotations

from typing import Any

from cadenza.core.engine.progress import BarProgress
from cadenza.core.errors import CadenzaError, InputError
from cadenza.plugins.workflows.demo.clips import ClipMaker, melody_suffixes
from cadenza.plugins.workflows.demo.config import DemoConfig

MISSING_GRADIO = "cadenza demo needs the demo extra: pip install 'cadenza[demo]'"
API_NAME = "generate"


class MissingExtraError(InputError):
    """The optional package a command needs is not installed."""


def require_gradio() -> Any:
    """The ``gradio`` module, or :class:`MissingExtraError` saying how to install it."""
    try:
        import gradio
    except ImportError:
        raise MissingExtraError(MISSING_GRADIO) from None
    return gradio


def build_demo(config: DemoConfig, maker: ClipMaker | None = None) -> Any:
    """The ``gr.Blocks`` page of ``config``; ``maker`` (built from ``config`` if not given) does the work."""
    gr = require_gradio()
    maker = maker or ClipMaker(config)

    def on_generate(prompt, pipeline, seconds, seed, melody, progress=gr.Progress(track_tqdm=True)):
        try:
            clip = maker.make(prompt, pipeline, seconds, seed, melody, progress=BarProgress())  # track_tqdm shows its bar
        except CadenzaError as exc:  # the user's input: one clear message on the page, no traceback
            raise gr.Error(str(exc), print_exception=False) from None
        except MemoryError:  # as the command line says it: the machine's limit, not a bug
            raise gr.Error("not enough memory for this clip (try fewer seconds or a smaller pipeline)",
                           print_exception=False) from None
        return str(clip.audio), str(clip.plot), clip.summary

    # delete_cache: Gradio's own copies of the clips (in its cache) are removed an hour after they were made
    with gr.Blocks(title="Cadenza demo", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## Cadenza: text to music\nDescribe the music, pick a pipeline, generate. "
                    "A melody file (MIDI, or audio such as humming) is followed by the semantic stage.")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="prompt", placeholder="a slow, dark cello drone", lines=2)
                pipeline = gr.Dropdown(choices=list(config.pipelines), value=config.pipeline, label="pipeline")
                with gr.Row():
                    seconds = gr.Number(value=maker.default_seconds(), label=f"seconds (at most {config.max_seconds:g})")
                    seed = gr.Number(value=0, precision=0, label="seed")
                melody = gr.File(label="melody (optional): MIDI or audio to follow", type="filepath",
                                 file_types=list(melody_suffixes(maker.registry)) or None)
                button = gr.Button("generate", variant="primary")
            with gr.Column():
                audio = gr.Audio(label="result", type="filepath", interactive=False)
                plot = gr.Image(label="spectrogram", type="filepath", format="png", interactive=False)
                summary = gr.Markdown(label="about this clip")
        # one generation at a time: the models share one device, and a second would only wait for it
        button.click(on_generate, [prompt, pipeline, seconds, seed, melody], [audio, plot, summary],
                     api_name=API_NAME, concurrency_limit=1)
    return demo


def serve(config: DemoConfig, maker: ClipMaker | None = None) -> None:
    """Serve the page on ``config.host:config.port`` until interrupted (Ctrl-C)."""
    demo = build_demo(config, maker)
    try:
        demo.launch(server_name=config.host, server_port=config.port, share=False, inbrowser=False,
                    allowed_paths=[str(config.out_dir)])
    except OSError as exc:
        raise InputError(f"cannot listen on {config.host}:{config.port} ({exc.strerror or 'the port is in use'}); "
                         "choose another with --port or --host") from None
