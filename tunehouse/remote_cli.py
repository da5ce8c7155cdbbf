"""The CLI commands that talk to a tunehouse server over HTTP, local or remote:

    tunehouse files upload|list|get|delete
    tunehouse jobs create|list|get|cancel|pause|resume|follow
    tunehouse models list|get|delete
    tunehouse chat MODEL

Base URL and key come from --base-url / --api-key, else OPENAI_BASE_URL / OPENAI_API_KEY (the variables the
openai SDK reads), else http://127.0.0.1:8000/v1 in open local mode. Tables for people, --json for scripts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

BaseUrl = Annotated[
    Optional[str], typer.Option("--base-url", help="Server URL [env OPENAI_BASE_URL; default http://127.0.0.1:8000/v1]")
]
ApiKey = Annotated[Optional[str], typer.Option("--api-key", help="API key [env OPENAI_API_KEY]")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the server's JSON")]
TERMINAL = ("succeeded", "failed", "cancelled")


class Api:
    """A thin HTTP client: errors in OpenAI's envelope become a one-line message and exit code 1."""

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        base = base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        key = api_key or os.environ.get("OPENAI_API_KEY") or "sk-local"
        self.http = httpx.Client(base_url=base.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=600)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            err_console.print(f"[red]error:[/red] cannot reach {self.http.base_url}: {exc}")
            raise typer.Exit(1) from None
        _fail_on_error(response)
        return response

    def json(self, method: str, path: str, **kwargs) -> dict:
        return self.request(method, path, **kwargs).json()


def _fail_on_error(response: httpx.Response) -> None:
    """An error answer (its body already read) as one line on stderr, then exit code 1."""
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        message = error["message"] + (f" (param: {error['param']})" if error.get("param") else "")
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    err_console.print(f"[red]error {response.status_code}:[/red] {message}")
    raise typer.Exit(1)


def _show(data: dict | list, as_json: bool, columns: list[str] | None = None, title: str | None = None) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    if columns is None:
        table = Table("field", "value", title=title)
        for key, value in rows[0].items():
            table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    else:
        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*[_cell(row.get(column)) for column in columns])
    console.print(table)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and value > 1_000_000_000:  # a Unix timestamp
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


# --- files --------------------------------------------------------------------------------------------------

files_app = typer.Typer(help="Upload and manage files (client.files).", no_args_is_help=True)


@files_app.command("upload")
def files_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    purpose: str = "fine-tune",
    base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Upload a file (a JSONL dataset by default)."""
    _show(_upload(Api(base_url, api_key), path, purpose), as_json)


def _upload(api: Api, path: Path, purpose: str) -> dict:
    with open(path, "rb") as handle:
        return api.json("POST", "/files", data={"purpose": purpose}, files={"file": (path.name, handle)})


@files_app.command("list")
def files_list(purpose: Optional[str] = None, base_url: BaseUrl = None, api_key: ApiKey = None,
               as_json: AsJson = False) -> None:
    """List files, newest first."""
    data = Api(base_url, api_key).json("GET", "/files", params={"purpose": purpose} if purpose else {})["data"]
    _show(data, as_json, ["id", "filename", "purpose", "bytes", "created_at"], title="files")


@files_app.command("get")
def files_get(file_id: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show one file."""
    _show(Api(base_url, api_key).json("GET", f"/files/{file_id}"), as_json)


@files_app.command("delete")
def files_delete(file_id: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Delete a file."""
    _show(Api(base_url, api_key).json("DELETE", f"/files/{file_id}"), as_json)


# --- jobs ---------------------------------------------------------------------------------------------------

jobs_app = typer.Typer(help="Fine-tuning jobs (client.fine_tuning.jobs).", no_args_is_help=True)
JOB_COLUMNS = ["id", "status", "model", "fine_tuned_model", "created_at", "finished_at"]


@jobs_app.command("create")
def jobs_create(
    training_file: Annotated[str, typer.Option("--training-file", "-t", help="A file id, or a local JSONL to upload")],
    model: Annotated[str, typer.Option(help="Base model or alias")] = "gpt-4o-mini-2024-07-18",
    validation_file: Annotated[Optional[str], typer.Option(help="A file id, or a local JSONL to upload")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="n_epochs (default auto)")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="batch_size (default auto)")] = None,
    lr_multiplier: Annotated[Optional[float], typer.Option(help="learning_rate_multiplier (default auto)")] = None,
    suffix: Optional[str] = None,
    seed: Optional[int] = None,
    follow: Annotated[bool, typer.Option(help="Follow the job until it ends")] = False,
    base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False,
) -> None:
    """Start a fine-tuning job; local files are uploaded first."""
    api = Api(base_url, api_key)
    hyperparameters = {key: value for key, value in
                       {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier}.items()
                       if value is not None}
    body = {"model": model, "training_file": _file_id(api, training_file), "hyperparameters": hyperparameters}
    if validation_file:
        body["validation_file"] = _file_id(api, validation_file)
    body.update({key: value for key, value in {"suffix": suffix, "seed": seed}.items() if value is not None})
    job = api.json("POST", "/fine_tuning/jobs", json=body)
    if follow:
        raise typer.Exit(_follow(api, job["id"]))
    _show(job, as_json)


def _file_id(api: Api, value: str) -> str:
    path = Path(value)
    if path.is_file():
        uploaded = _upload(api, path, "fine-tune")
        err_console.print(f"uploaded {path} as {uploaded['id']}")
        return uploaded["id"]
    return value


@jobs_app.command("list")
def jobs_list(limit: int = 20, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """List jobs, newest first."""
    data = Api(base_url, api_key).json("GET", "/fine_tuning/jobs", params={"limit": limit})["data"]
    _show(data, as_json, JOB_COLUMNS, title="fine-tuning jobs")


@jobs_app.command("get")
def jobs_get(job_id: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show one job."""
    _show(Api(base_url, api_key).json("GET", f"/fine_tuning/jobs/{job_id}"), as_json)


def _control(action: str):
    def command(job_id: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
        job = Api(base_url, api_key).json("POST", f"/fine_tuning/jobs/{job_id}/{action}")
        _show(job, as_json, None if as_json else JOB_COLUMNS)

    command.__doc__ = f"{action.capitalize()} a job."
    return command


for _action in ("cancel", "pause", "resume"):
    jobs_app.command(_action)(_control(_action))


@jobs_app.command("follow")
def jobs_follow(job_id: str, base_url: BaseUrl = None, api_key: ApiKey = None) -> None:
    """Show a live progress bar (step, loss, tokens/s, ETA) and the job's messages; exit 0 if it succeeds."""
    raise typer.Exit(_follow(Api(base_url, api_key), job_id))


def _follow(api: Api, job_id: str) -> int:
    seen: set[str] = set()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("{task.fields[detail]}"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job_id, total=None, detail="")
        while True:
            job = api.json("GET", f"/fine_tuning/jobs/{job_id}")
            events = api.json("GET", f"/fine_tuning/jobs/{job_id}/events", params={"limit": 100})["data"]
            for event in reversed(events):
                if event["id"] in seen:
                    continue
                seen.add(event["id"])
                data = event.get("data") or {}
                if event["type"] == "metrics" and "total_steps" in data:
                    detail = f"loss {data.get('train_loss', float('nan')):.4f}"
                    if data.get("tokens_per_second"):
                        detail += f"  {data['tokens_per_second']:.0f} tokens/s"
                    if data.get("valid_loss") is not None:
                        detail += f"  valid {data['valid_loss']:.4f}"
                    progress.update(task, total=data["total_steps"], completed=data["step"], detail=detail)
                elif event["type"] != "metrics":
                    style = {"warn": "yellow", "error": "red"}.get(event["level"], "dim")
                    progress.console.print(f"[{style}]{event['message']}[/{style}]")
            progress.update(task, description=f"{job_id} {job['status']}")
            if job["status"] in TERMINAL:
                break
            time.sleep(1)
    if job["status"] == "succeeded":
        console.print(f"[green]✓[/green] {job['fine_tuned_model']}")
        return 0
    reason = (job.get("error") or {}).get("message", job["status"])
    err_console.print(f"[red]✗[/red] {job_id} {job['status']}: {reason}")
    return 1


# --- models -------------------------------------------------------------------------------------------------


def register_model_commands(models_app: typer.Typer) -> None:
    @models_app.command("list")
    def models_list(base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
        """Base models, aliases, fine-tuned models and checkpoints the server offers."""
        data = Api(base_url, api_key).json("GET", "/models")["data"]
        _show(data, as_json, ["id", "owned_by", "alias_for", "parent", "created"], title="models")

    @models_app.command("get")
    def models_get(model: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
        """Show one model (what an alias points to, a fine-tuned model's parent)."""
        _show(Api(base_url, api_key).json("GET", f"/models/{model}"), as_json)

    @models_app.command("delete")
    def models_delete(model: str, base_url: BaseUrl = None, api_key: ApiKey = None, as_json: AsJson = False) -> None:
        """Delete a fine-tuned model (on the server)."""
        _show(Api(base_url, api_key).json("DELETE", f"/models/{model}"), as_json)


# --- chat ---------------------------------------------------------------------------------------------------


def chat(
    model: str,
    system: Annotated[Optional[str], typer.Option(help="A system message")] = None,
    temperature: float = 0.7,
    max_tokens: int = 512,
    base_url: BaseUrl = None, api_key: ApiKey = None,
) -> None:
    """Talk to a model, answers streamed; an empty line or end of input quits."""
    api = Api(base_url, api_key)
    messages = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            console.print("[bold]you>[/bold] ", end="")
        line = sys.stdin.readline()
        if not line.strip():
            return
        messages.append({"role": "user", "content": line.rstrip("\n")})
        body = {"model": model, "messages": messages, "stream": True, "temperature": temperature,
                "max_tokens": max_tokens}
        answer = ""
        with api.http.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code >= 400:
                response.read()
                _fail_on_error(response)
            for raw in response.iter_lines():
                if not raw.startswith("data: ") or raw == "data: [DONE]":
                    continue
                chunk = json.loads(raw[len("data: "):])
                for choice in chunk.get("choices", []):
                    piece = choice["delta"].get("content") or ""
                    answer += piece
                    console.print(piece, end="", markup=False, highlight=False)
        console.print()
        messages.append({"role": "assistant", "content": answer})
