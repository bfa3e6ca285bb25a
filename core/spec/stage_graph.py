"""The graph of streams between a spec's stages: what each stage reads was written before it,
every codebook is written exactly once, and each role writes the stream it should.

This is the part of validation that reads stages as a whole (stream references against the
tokenizer's codebook count, reads after writes, the final coverage of the acoustic stream), not
one component at a time; :class:`cadenza.core.spec.validate._Checker` walks the stages and hands
each to :class:`StageGraph`, which records problems through the checker (:class:`Reporter`), so
the one problem list keeps its order and a broken part still hides only what depends on it.
Tokenizer arguments are the checker's resolved components (``.info``, ``.entry``), or None when
the spec's tokenizer could not be resolved.
"""

from __future__ import annotations

from typing import Any, Protocol

from cadenza.core.layout import STREAMS, StreamRef, StreamSlice
from cadenza.core.spec.schema import KeyPath, StageDraft

MOST_CODEBOOKS = 1024  # the most codebooks a tokenizer may describe (validate's INFO_LIMITS)


class Reporter(Protocol):
    """What the graph needs of the checker that collects problems."""

    def problem(self, path: KeyPath, message: str) -> None: ...

    def reported(self, path: KeyPath) -> bool: ...

    def given(self, slot: str) -> bool: ...


class StageGraph:
    """The streams the stages have written so far, checked stage by stage in spec order."""

    def __init__(self, checker: Reporter, tok: Any, sem: Any):
        self.checker, self.tok, self.sem = checker, tok, sem
        self.written: dict[str, set[int]] = {stream: set() for stream in STREAMS}
        self.unsure: set[str] = set()  # streams an earlier stage wrote codebooks of that are not known
        self.told_semantic = False  # "needs a semantic_tokenizer" is said once, at the first use

    def unreadable_stage(self) -> None:
        """A stage that is not a mapping: what it writes is unknown, so nothing after it is judged."""
        self.unsure |= set(STREAMS)

    def add(self, stage: StageDraft, label: str,
            path: KeyPath) -> tuple[list[StreamRef | None], StreamRef | None, bool]:
        """Check ``stage`` against the stages before it and record what it writes. Returns its
        reads and writes with their ends filled in (None where unknown) and whether every read
        reference could be read."""
        reads_known = not self.checker.reported(path + ("reads",))
        reads = [self.span(r, path + ("reads", j)) if r is not None else None for j, r in enumerate(stage.reads)]
        writes = self.span(stage.writes, path + ("writes",)) if stage.writes is not None else None
        for j, read in enumerate(reads):
            if read is not None and read.stream not in self.unsure and self.fits(read) \
                    and not codebooks(read) <= self.written[read.stream]:
                self.checker.problem(path + ("reads", j), f"{label} reads {read}, which no earlier stage writes")
        if writes is None:
            self.unsure |= {stage.writes.stream} if stage.writes is not None else set(STREAMS)
        else:
            self._check_writes(stage, label, writes, reads_known, path)
            self.written[writes.stream] |= codebooks(writes, self.tok)
        return reads, writes, reads_known

    def check_complete(self, any_stage: bool) -> None:
        """Every codebook of the tokenizer is written by some stage (when that can be known)."""
        tok = self.tok
        if tok is not None and any_stage and "acoustic" not in self.unsure:
            missing = sorted(set(range(tok.info.num_codebooks)) - self.written["acoustic"])
            if missing:
                self.checker.problem(("stages",), f"codebooks {ranges(missing)} of tokenizer {tok.entry.name!r} are "
                                                  f"written by no stage (it has {tok.info.num_codebooks}); extend a "
                                                  "stage's 'writes'")

    def span(self, ref: StreamRef, path: KeyPath) -> StreamRef | None:
        """The codebooks ``ref`` means, as a reference with its end filled in (``acoustic`` alone
        needs the tokenizer's count); None, its problem recorded where it has one, when unknown."""
        tok = self.tok
        if ref.stream == "semantic":
            if not self.checker.given("semantic_tokenizer") and not self.told_semantic:
                self.told_semantic = True
                self.checker.problem(path, "stream 'semantic' needs a 'semantic_tokenizer' in the spec")
            if ref.start != 0 or ref.stop not in (None, 1):
                self.checker.problem(path, "the semantic stream has one codebook; write it as 'semantic'")
                return None
            return StreamRef("semantic", 0, 1)
        total = tok.info.num_codebooks if tok is not None else None
        if ref.stop is None:
            if total is None:
                return None
            if ref.start >= total:
                self.checker.problem(path, f"{ref} starts past the last codebook of tokenizer {tok.entry.name!r}, "
                                           f"which has {total} (acoustic[0:{total}] at most)")
                return None
            return StreamRef("acoustic", ref.start, total)
        if total is not None and ref.stop > total:
            self.checker.problem(path, f"{ref} asks for codebooks up to {ref.stop}, but tokenizer "
                                       f"{tok.entry.name!r} has {total} (acoustic[0:{total}] at most)")
        return ref

    def fits(self, span: StreamRef) -> bool:
        """Whether the codebooks exist: checked against the tokenizer, or the most any may have."""
        most = self.tok.info.num_codebooks if self.tok is not None else MOST_CODEBOOKS
        return span.stream == "semantic" or span.stop <= most

    def slice(self, span: StreamRef | None) -> StreamSlice | None:
        """``span`` with its component's vocabulary and frame rate, for the layout; None when unknown."""
        tok, sem = self.tok, self.sem
        if span is None:
            return None
        if span.stream == "semantic":
            return StreamSlice("semantic", 0, 1, sem.info.vocab_size, sem.info.frame_rate) if sem is not None else None
        if tok is None or not self.fits(span):
            return None
        return StreamSlice("acoustic", span.start, span.stop, tok.info.codebook_size, tok.info.frame_rate)

    def frame_rate(self, ref: StreamRef | None) -> float | None:
        """The frame rate of the stream ``ref`` names; None when its component is not known."""
        source = None if ref is None else self.sem if ref.stream == "semantic" else self.tok
        return source.info.frame_rate if source is not None else None

    def _check_writes(self, stage: StageDraft, label: str, writes: StreamRef, reads_known: bool,
                      path: KeyPath) -> None:
        problem = self.checker.problem
        if codebooks(writes) & self.written[writes.stream]:
            problem(path + ("writes",), f"{label} writes {writes}, already written by an earlier stage")
        role = stage.role
        if role is None:
            return  # an unknown role is its own problem; what it should write is not known
        if (role == "semantic") != (writes.stream == "semantic"):
            problem(path + ("writes",), f"a {role!r} stage writes the "
                                        f"{'semantic' if role == 'semantic' else 'acoustic'} stream, not {writes}")
        elif role == "coarse" and writes.start != 0:
            problem(path + ("writes",), f"a coarse stage writes the first codebooks (acoustic[0:N]), not {writes}")
        elif role == "fine" and reads_known and not any(r.stream == "acoustic" for r in stage.reads if r is not None):
            problem(path + ("reads",), "a fine stage reads the coarse codebooks, e.g. reads: ['acoustic[0:2]']")


def codebooks(span: StreamRef, tok: Any = None) -> set[int]:
    """The codebook indices of ``span`` that can exist (those of the tokenizer, when it is known)."""
    most = tok.info.num_codebooks if tok is not None else MOST_CODEBOOKS
    return set(range(span.start, min(span.stop, most)))


def ranges(indices: list[int]) -> str:
    """[2, 3, 5] -> '2-3, 5'."""
    parts, start = [], None
    for i, n in enumerate(indices):
        if start is None:
            start = n
        if i + 1 == len(indices) or indices[i + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)
