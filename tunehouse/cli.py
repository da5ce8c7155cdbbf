"""The `tunehouse` command.

    tunehouse bot [--http] [--host 127.0.0.1] [--port 3000]         (the Slack bot; bot/app.py)
    tunehouse serve [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--insecure] [--no-worker]
    tunehouse worker [--data-dir DIR]
    tunehouse keys create --project NAME
    tunehouse data check FILE [--model M] [--show N] [--epochs N] [--json]
    tunehouse models add NAME PATH | alias ALIAS BASE | remove NAME      (the catalog of a data dir)
    tunehouse models prepare      (convert the default model into the per-user cache; `make install` does)

and, over HTTP (remote_cli.py): files, jobs, models list|get|delete, chat.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .remote_cli import chat, files_app, jobs_app, register_model_commands
from .settings import LOOPBACK_HOSTS, Settings

app = typer.Typer(help="Self-hosted fine-tuning that speaks the OpenAI API.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: each belongs to a project.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets: validate, count tokens, preview what will be learned.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
models_app = typer.Typer(
    help="Models: list/get/delete on a server; add/alias/remove in a data dir's catalog.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(files_app, name="files")
app.add_typer(jobs_app, name="jobs")
register_model_commands(models_app)
app.command("chat")(chat)

console = Console()
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Data directory [env TUNEHOUSE_DATA_DIR; default ./tunehouse-data]")
]


def _settings(data_dir: Path | None, **overrides) -> Settings:
    values = {key: value for key, value in overrides.items() if value is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _database(data_dir: Path | None):
    """The data dir's metadata database, tables created if missing (the SQLite file's folder too)."""
    from .store.db import Database

    db = Database(_settings(data_dir).resolved_database_url)
    db.create_all()
    return db


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    data_dir: DataDirOption = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host while no API key exists (anyone could use it)")
    ] = False,
    worker: Annotated[bool, typer.Option(help="Start one embedded training worker process")] = True,
) -> None:
    """Serve the OpenAI-compatible API (and, by default, one training worker in its own process)."""
    import subprocess

    import uvicorn

    from .jobs.worker import settings_env
    from .processes import die_with_parent

    from .api.app import build_app
    from .store.keys import any_keys

    settings = _settings(data_dir, host=host, port=port, insecure=insecure)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = build_app(settings)
    if host not in LOOPBACK_HOSTS and not settings.insecure and not any_keys(application.state.services.db):
        err_console.print(
            f"[red]Refusing to listen on {host} in open mode:[/red] no API key exists, so anyone who can reach "
            "this address could use the server. Create a key first (`tunehouse keys create --project NAME`) "
            "or pass --insecure."
        )
        raise typer.Exit(2)
    err_console.print(f"tunehouse: data in {settings.data_dir.resolve()}; API at http://{host}:{port}/v1")
    worker_process = None
    if worker:  # training never runs in the API's process
        worker_process = subprocess.Popen(
            [sys.executable, "-m", "tunehouse", "worker"], env=settings_env(settings), preexec_fn=die_with_parent
        )
    sys.setswitchinterval(0.0005)  # the engine thread and the event loop share the GIL: hand it over sooner
    try:
        # no lifespan: the app has no startup or shutdown hooks, and uvicorn's lifespan task would print a
        # CancelledError traceback on Ctrl+C; the Ctrl+C uvicorn raises again once it has shut down ends here
        uvicorn.run(application, host=host, port=port, log_level="info", timeout_graceful_shutdown=5, lifespan="off")
    except KeyboardInterrupt:
        pass
    finally:
        if worker_process is not None:
            worker_process.terminate()
            worker_process.wait(timeout=30)


@app.command(
    "bot", context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
)
def bot(ctx: typer.Context) -> None:
    """Run the Slack bot (Socket Mode, or --http); `tunehouse bot --help` for its options."""
    from bot.main import main

    main(ctx.args)


@app.command("worker")
def worker_command(data_dir: DataDirOption = None) -> None:
    """Run a training worker: validates and trains queued jobs of this data dir (or database)."""
    from .jobs.worker import run_worker
    from .services import open_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(open_services(_settings(data_dir), discard_partial_writes=False))


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="Project the key gives access to")],
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key; the secret is printed once, on the last line, and only its hash is stored."""
    from .store.keys import create_key

    secret = create_key(_database(data_dir), project)
    err_console.print(f"Created a key for project {project!r}. Store it now: it cannot be shown again.")
    print(secret)


@keys_app.command("list")
def keys_list(data_dir: DataDirOption = None) -> None:
    """List keys (redacted) and their projects."""
    from .store.keys import list_keys

    table = Table("id", "project", "key", "created")
    for key in list_keys(_database(data_dir)):
        table.add_row(key.id, key.project, key.redacted, str(key.created_at))
    console.print(table)


@data_app.command("check")
def data_check(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL dataset")],
    model: Annotated[Optional[str], typer.Option(help="Model whose tokenizer and template to use")] = None,
    show: Annotated[int, typer.Option(help="Print N examples as training sees them, loss tokens marked")] = 0,
    epochs: Annotated[Optional[int], typer.Option(help="n_epochs for the cost estimate (default: auto)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Validate a dataset, count its tokens and preview what will be learned. Exit code 1 if it is invalid."""
    from .services import open_services
    from .data.render import render_example
    from .data.stats import compute_stats
    from .data.validate import validate_dataset
    from .models.catalog import DEFAULT_MODEL, context_length, load_tokenizer

    report = validate_dataset(file)
    if not report.ok:
        if as_json:
            problems = [{"line": p.line, "code": p.code, "message": p.message} for p in report.problems]
            print(json.dumps({"valid": False, "problem_count": report.problem_count, "problems": problems}))
        else:
            err_console.print(f"[red]✗[/red] {report.summary(str(file))}")
            for problem in report.problems[:50]:
                err_console.print(f"  line {problem.line}: [bold]{problem.code}[/bold] {problem.message}")
        raise typer.Exit(1)

    services = open_services(_settings(data_dir), discard_partial_writes=False)
    model_name = model or DEFAULT_MODEL
    model_dir = services.catalog.model_path(model_name, log=err_console.print)
    tokenizer = load_tokenizer(str(model_dir))
    stats = compute_stats(report, tokenizer, context_length=context_length(model_dir), n_epochs=epochs)
    if as_json:
        print(json.dumps({"valid": True, "warnings": report.warnings, "model": model_name, **stats.as_dict()}))
        return
    console.print(f"[green]✓[/green] {report.summary(str(file))}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    table = Table("statistic", "value", title=f"{file.name} with {model_name}'s tokenizer")
    table.add_row("format", stats.format)
    table.add_row("examples", str(stats.examples))
    table.add_row("tokens per example (min / mean / max)", f"{stats.tokens_min} / {stats.tokens_mean} / {stats.tokens_max}")
    table.add_row("tokens that carry loss (one epoch)", str(stats.loss_tokens))
    table.add_row(f"examples over the context ({stats.context_length})", f"{stats.examples_over_context} (truncated)")
    table.add_row("epochs", f"{stats.n_epochs}{'' if epochs else ' (auto)'}")
    table.add_row("billable tokens", str(stats.billable_tokens))
    table.add_row("estimated training time (CPU)", _duration(stats.estimated_seconds))
    console.print(table)
    for example in report.examples[:show]:
        rendered = render_example(example.record, example.format, tokenizer)
        console.rule(f"line {example.line}: {len(rendered.input_ids)} tokens, {rendered.loss_tokens} learned")
        console.print(preview_text(rendered.pieces, color=console.is_terminal))
    if show:
        marks = "[green]green[/green]" if console.is_terminal else "⟦ ⟧"
        console.print(f"Text in {marks} carries the loss: it is what the model learns to write.")


def _catalog(data_dir: Path | None):
    from .services import open_services

    return open_services(_settings(data_dir), discard_partial_writes=False).catalog


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="Name clients will use as `model`")],
    path: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Hugging Face causal-LM folder")],
    data_dir: DataDirOption = None,
) -> None:
    """Register a local Hugging Face model folder as a base model."""
    _run_catalog(lambda catalog: catalog.add_base(name, path), f"Added base model {name!r} ({path}).", data_dir)


@models_app.command("alias")
def models_alias(
    alias: Annotated[str, typer.Argument(help="The name clients send, e.g. gpt-4o-mini-2024-07-18")],
    base: Annotated[str, typer.Argument(help="The base model (or alias of one) it should mean")],
    data_dir: DataDirOption = None,
) -> None:
    """Point an alias at a base model (creating or changing it)."""
    _run_catalog(lambda catalog: catalog.set_alias(alias, base), f"{alias!r} now means {base!r}.", data_dir)


@models_app.command("remove")
def models_remove(name: Annotated[str, typer.Argument()], data_dir: DataDirOption = None) -> None:
    """Remove a base model or an alias from the catalog (files on disk are left alone)."""
    _run_catalog(lambda catalog: catalog.remove(name), f"Removed {name!r}.", data_dir)


@models_app.command("prepare")
def models_prepare(data_dir: DataDirOption = None) -> None:
    """Convert the embedded default model into the model cache now (once per machine; `make install` runs
    this), so that no job waits for it. Quick when it is already there."""
    from .models.catalog import ensure_default_model

    console.print(f"Default model ready in {ensure_default_model(_settings(data_dir).resolved_model_cache_dir)}")


def _run_catalog(change, done: str, data_dir: Path | None) -> None:
    from .errors import TunehouseError

    try:
        change(_catalog(data_dir))
    except TunehouseError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    console.print(done)


def preview_text(pieces: list[tuple[str, bool]], *, color: bool) -> Text:
    """The rendered example with its loss pieces marked: green on a terminal, ⟦…⟧ in plain output."""
    text = Text()
    for piece, loss in pieces:
        if color:
            text.append(piece, style="bold green" if loss else "dim")
        else:
            text.append(f"⟦{piece}⟧" if loss else piece)
    return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def main() -> None:
    """Entry point of `python -m tunehouse`."""
    app(prog_name="tunehouse")
