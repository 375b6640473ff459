"""``batchgate embed`` and ``batchgate batch submit|status|results|cancel``: HTTP clients of a
running batchgate's Files + Batches API.

This module imports only click and the standard library at import time: ``batchgate up``
must import gevent before anything loads ``ssl``, and httpx does, so httpx, tqdm and the
engine are imported inside the commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from batchgate.errors import BatchgateError

if TYPE_CHECKING:
    from batchgate.batch_client import Batch, BatchClient

DEFAULT_BASE_URL = "http://127.0.0.1:4000"
DEFAULT_PART_SIZE = 50_000
DEFAULT_IN_FLIGHT = 4
DEFAULT_POLL_S = 1.0
DEFAULT_COMPLETION_WINDOW = "24h"
DEFAULT_ENDPOINT = "/v1/chat/completions"
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def server_options(command: F) -> F:
    """``--base-url`` and ``--api-key``, also read from BATCHGATE_URL and BATCHGATE_API_KEY."""
    command = click.option(
        "--api-key", envvar="BATCHGATE_API_KEY", show_envvar=True,
        help="Sent as 'Authorization: Bearer <key>'.")(command)
    return click.option(
        "--base-url", default=DEFAULT_BASE_URL, envvar="BATCHGATE_URL", show_envvar=True,
        show_default=True, help="The batchgate server.")(command)


def poll_option(command: F) -> F:
    """``--poll SECONDS``: how often to ask the server about a batch."""
    return click.option("--poll", "poll_s", type=click.FloatRange(min=0.05),
                        default=DEFAULT_POLL_S, show_default=True,
                        help="Seconds between two looks at a batch.")(command)


def make_client(base_url: str, api_key: str | None) -> BatchClient:
    """The HTTP client the commands use (one place, so tests can swap its transport)."""
    from batchgate.batch_client import BatchClient

    return BatchClient(base_url, api_key)


def fail(message: str) -> NoReturn:
    """Print ``batchgate: message`` to stderr and exit 1."""
    click.echo(f"batchgate: {message}", err=True)
    sys.exit(EXIT_FAILED)


class ProgressBar:
    """A tqdm bar over lines, made on the first update (the total is known only then)."""

    def __init__(self, unit: str = "line") -> None:
        self.unit = unit
        self._bar: Any = None

    def show(self, done: int, total: int) -> None:
        """Move the bar to ``done`` of ``total``."""
        if self._bar is None:
            # tqdm ships no type information (types-tqdm is not a dependency).
            from tqdm import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(total=total, initial=done, unit=self.unit, dynamic_ncols=True)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    def write(self, message: str) -> None:
        """Print a line on stderr without breaking the bar."""
        if self._bar is None:
            click.echo(message, err=True)
        else:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        """Leave the bar as it is, on its own line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM raise KeyboardInterrupt, like Ctrl-C, while inside."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(input_path: Path, model: str, out_path: Path, part_size: int,
                   base_url: str) -> str:
    """The command line that continues this run (never with the API key in it)."""
    words = ["batchgate", "embed", str(input_path), "--model", model, "--out", str(out_path),
             "--part-size", str(part_size)]
    if base_url != DEFAULT_BASE_URL:
        words += ["--base-url", base_url]
    return shlex.join([*words, "--resume"])


@click.command()
@click.argument("input_path", metavar="INPUT",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="The embedding model group.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the vectors go [default: INPUT with suffix .vectors.jsonl].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its state file.")
@click.option("--part-size", type=click.IntRange(min=1), default=DEFAULT_PART_SIZE,
              show_default=True, help="Lines per uploaded file and batch.")
@click.option("--parts-in-flight", type=click.IntRange(min=1), default=DEFAULT_IN_FLIGHT,
              show_default=True, help="Parts submitted to the server at once.")
@click.option("--completion-window", default=DEFAULT_COMPLETION_WINDOW, show_default=True)
@poll_option
@server_options
def embed(input_path: Path, model: str, out_path: Path | None, resume: bool, part_size: int,
          parts_in_flight: int, completion_window: str, poll_s: float, base_url: str,
          api_key: str | None) -> None:
    """Embed every line of INPUT (.txt: one chunk per line; .jsonl: a string, or an object
    with "text" or "input" and an optional "id") through the Batches API, into OUT as
    {"index", "id", "embedding"} lines in input order. Ctrl-C stops; --resume continues."""
    from batchgate.embed import Embedder, EmbedJob, default_out

    out_path = out_path or default_out(input_path)
    job = EmbedJob(input_path=input_path, out_path=out_path, model=model, part_size=part_size,
                   completion_window=completion_window, in_flight=parts_in_flight,
                   poll_s=poll_s, resume=resume)
    again = resume_command(input_path, model, out_path, part_size, base_url)
    bar = ProgressBar()
    embedder: Embedder | None = None
    try:
        with make_client(base_url, api_key) as client, sigterm_as_interrupt():
            embedder = Embedder(job, client, on_progress=bar.show, notify=bar.write)
            total = embedder.run()
    except KeyboardInterrupt:
        bar.close()
        if not job.state_path.exists():
            click.echo("batchgate: interrupted before anything was submitted", err=True)
        else:
            click.echo(f"batchgate: interrupted; the state is saved in {job.state_path} and "
                       f"the submitted batches go on running on the server. To continue:\n"
                       f"  {again}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BatchgateError as exc:
        bar.close()
        # A run refused at its start (say, a state already there) gets no resume hint.
        if embedder is not None and embedder.state is not None and job.state_path.exists():
            fail(f"{exc.message}\nthe state is kept in {job.state_path}; to continue: {again}")
        fail(exc.message)
    finally:
        bar.close()
    click.echo(f"{total} vectors in {out_path}")


@click.group("batch")
def batch_group() -> None:
    """The OpenAI Batches API: submit a JSONL file, follow it, fetch its results, cancel it."""


@contextlib.contextmanager
def batch_errors() -> Iterator[None]:
    """Any batchgate error ends the command with ``batchgate: <message>`` and exit 1."""
    try:
        yield
    except BatchgateError as exc:
        fail(exc.message)


def parse_metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    """``k=v`` pairs as a dict."""
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


def wait_for(client: BatchClient, batch: Batch, poll_s: float) -> Batch:
    """Poll until the batch ends, with a progress bar over its requests."""
    import time

    bar = ProgressBar(unit="req")
    try:
        while not batch.ended:
            if batch.total:
                bar.show(batch.completed + batch.failed, batch.total)
            time.sleep(poll_s)
            batch = client.batch(batch.id)
        if batch.total:
            bar.show(batch.completed + batch.failed, batch.total)
    finally:
        bar.close()
    return batch


def describe(batch: Batch) -> str:
    """One line: id, status, counts, and the first validation error if any."""
    line = (f"{batch.id}: {batch.status} ({batch.completed} completed, {batch.failed} failed "
            f"of {batch.total})")
    summary = batch.error_summary()
    return f"{line}: {summary}" if summary else line


@batch_group.command("submit")
@click.argument("path", metavar="FILE.jsonl",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", default=DEFAULT_ENDPOINT, show_default=True)
@click.option("--completion-window", default=DEFAULT_COMPLETION_WINDOW, show_default=True)
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--wait", is_flag=True, help="Follow the batch to its end; exit 1 unless it "
                                           "completed.")
@poll_option
@server_options
def batch_submit(path: Path, endpoint: str, completion_window: str, metadata: tuple[str, ...],
                 wait: bool, poll_s: float, base_url: str, api_key: str | None) -> None:
    """Upload FILE.jsonl and start a batch over it; print the batch id."""
    extra = parse_metadata(metadata)
    with batch_errors(), make_client(base_url, api_key) as client:
        batch = client.create_batch(client.upload_path(path), endpoint, completion_window,
                                    extra)
        click.echo(batch.id)
        if not wait:
            return
        try:
            with sigterm_as_interrupt():
                batch = wait_for(client, batch, poll_s)
        except KeyboardInterrupt:
            click.echo(f"batchgate: stopped waiting; {batch.id} goes on running "
                       f"(batchgate batch status {batch.id})", err=True)
            sys.exit(EXIT_INTERRUPTED)
    click.echo(describe(batch))
    if batch.status != "completed":
        sys.exit(EXIT_FAILED)


@batch_group.command("status")
@click.argument("batch_id")
@server_options
def batch_status(batch_id: str, base_url: str, api_key: str | None) -> None:
    """Print the batch object (status, request counts, progress) as JSON."""
    with batch_errors(), make_client(base_url, api_key) as client:
        batch = client.batch(batch_id)
    click.echo(json.dumps(batch.raw, indent=2))


@batch_group.command("results")
@click.argument("batch_id")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout (replaced only once complete).")
@click.option("--errors", is_flag=True, help="The error file instead of the output file.")
@server_options
def batch_results(batch_id: str, out_path: Path | None, errors: bool, base_url: str,
                  api_key: str | None) -> None:
    """Download the batch's output file (or, with --errors, its error file), streamed."""
    from batchgate.batch_client import BatchApiError

    with batch_errors(), make_client(base_url, api_key) as client:
        batch = client.batch(batch_id)
        file_id = batch.error_file_id if errors else batch.output_file_id
        if file_id is None:
            kind = "error" if errors else "output"
            raise BatchApiError(f"batch {batch_id} has no {kind} file (status: {batch.status})")
        if out_path is None:
            client.download(file_id, sys.stdout.buffer)
            return
        handle, temporary = tempfile.mkstemp(dir=out_path.parent,
                                             prefix=out_path.name, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as sink:
                size = client.download(file_id, sink)
            os.replace(temporary, out_path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    click.echo(f"{size} bytes written to {out_path}", err=True)


@batch_group.command("cancel")
@click.argument("batch_id")
@server_options
def batch_cancel(batch_id: str, base_url: str, api_key: str | None) -> None:
    """Cancel a batch; print its status afterwards (cancelling, then cancelled)."""
    with batch_errors(), make_client(base_url, api_key) as client:
        batch = client.cancel(batch_id)
    click.echo(f"{batch.id}: {batch.status}")
