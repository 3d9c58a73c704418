"""`framepack-api`: serve | worker | generate | jobs | models | db."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from framepack_api.settings import ModelChoice, Settings

if TYPE_CHECKING:
    from framepack_api.gpus import WorkerSlot

app = typer.Typer(help="FramePack video and image generation as a job server.", no_args_is_help=True)
jobs_app = typer.Typer(help="List, inspect and cancel jobs on a server.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Model presets.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
console = Console(stderr=True, soft_wrap=True)

ServerOpt = Annotated[str, typer.Option("--server", "-s", envvar="FRAMEPACK_API_SERVER",
                                        help="Base URL of the server.")]
DEFAULT_SERVER = "http://127.0.0.1:8000"
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", envvar="FRAMEPACK_API_KEY", show_envvar=True,
                                               help="API key for a server with auth on (sent as a Bearer token).")]


def _settings(**overrides: Any) -> Settings:
    """Environment and .env first, then the flags that were given."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:  # a bad flag or variable: name it, without a traceback
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][:1])}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


def _logging(settings: Settings) -> None:
    from framepack_api.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)


def uvicorn_config(asgi_app: Any, settings: Settings) -> Any:
    """How `serve` runs an ASGI app; bench/status_rate.py serves its bare baseline route the same way."""
    import uvicorn

    return uvicorn.Config(asgi_app, host=settings.host, port=settings.port,
                          log_level=settings.log_level.lower(), access_log=settings.access_log,
                          # json: uvicorn's lines go through the root handler, in the same format
                          log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
                          # Open event streams must not hold a shutdown (and its workers' requeue) hostage.
                          timeout_graceful_shutdown=5)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[str | None, typer.Option(
        help="Embedded worker processes: a number (0 = API only) or auto (one per GPU).")] = None,
    gpus: Annotated[str | None, typer.Option(help="Pin workers to these GPUs: 0,1,3, GPU-/MIG- UUIDs, or all.")] = None,
    model: Annotated[str | None, typer.Option(help="auto | framepack | tiny")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory.")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy database URL.")] = None,
) -> None:
    """Run the HTTP API and the embedded worker processes."""
    import uvicorn

    from framepack_api.api.app import create_app
    from framepack_api.jobs.db import create_engine, upgrade
    from framepack_api.worker.supervisor import Supervisor

    settings = _settings(host=host, port=port, workers=workers, gpus=gpus, model=_model(model),
                         data_dir=data_dir, database_url=database_url)
    _logging(settings)
    slots = _worker_slots(settings, settings.workers)
    engine = create_engine(settings.resolved_database_url)
    upgrade(engine)  # before any worker starts, so they never race to create the schema
    engine.dispose()
    supervisor = Supervisor(settings, slots)
    config = uvicorn_config(create_app(settings), settings)
    received: list[int] = []

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # The workers start giving their jobs back while the HTTP side drains.
            supervisor.request_stop()
            super().handle_exit(sig, frame)

    # uvicorn re-raises the signal that stopped it once it is done, with the handlers it found
    # installed: these hold it until the workers are stopped, instead of letting it end the process.
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor.start()
    try:
        _Server(config).run()
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        # Exit as the signal asked, now that no worker is left behind.
        signal.signal(received[0], signal.SIG_DFL)
        signal.raise_signal(received[0])


@app.command()
def worker(
    model: Annotated[str | None, typer.Option(help="auto | framepack | tiny")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (shared with the API).")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy database URL.")] = None,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many jobs.")] = None,
    gpus: Annotated[str | None, typer.Option(
        help="Supervise one worker process per GPU instead: 0,1,3, GPU-/MIG- UUIDs, or all.")] = None,
) -> None:
    """Run one worker process: load the model once, then take jobs from the database.

    With --gpus (or GPUS set): one such process per listed GPU, pinned to it, restarted on it."""
    from framepack_api.backends.registry import create_backend
    from framepack_api.worker.runner import WORKER_ID_ENV, Worker

    settings = _settings(model=_model(model), data_dir=data_dir, database_url=database_url, gpus=gpus)
    _logging(settings)
    if settings.gpus and WORKER_ID_ENV not in os.environ:  # a supervised child never supervises
        if max_jobs is not None:
            raise typer.BadParameter("only one worker process can stop after a number of jobs",
                                     param_hint="--max-jobs")
        from framepack_api.jobs.db import create_engine, upgrade
        from framepack_api.worker.supervisor import supervise_until_signalled

        engine = create_engine(settings.resolved_database_url)
        upgrade(engine)  # once, before the workers start
        engine.dispose()
        supervise_until_signalled(settings, _worker_slots(settings, "auto"))
        return
    runner = Worker(settings, create_backend)
    runner.install_signal_handlers()
    runner.run_forever(max_jobs=max_jobs)


def _worker_slots(settings: Settings, workers: int | Literal["auto"]) -> list[WorkerSlot]:
    """Which worker processes to run, each pinned to its GPU where GPUs are chosen (gpus.py)."""
    from framepack_api.gpus import GpuSelectionError, discover_gpus, plan_workers

    visible = discover_gpus() if workers == "auto" or settings.gpus else []
    try:
        slots = plan_workers(workers, settings.gpus, visible)
    except GpuSelectionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus / FRAMEPACK_API_GPUS") from None
    log = logging.getLogger("framepack_api.cli")
    if any(slot.gpu is not None for slot in slots):
        if not visible:
            log.warning("no GPU found here (nvidia-smi, /proc/driver/nvidia); pinning workers as asked")
        log.info("%d worker(s): %s", len(slots), ", ".join(slot.label for slot in slots))
    elif slots and workers == "auto":
        log.info("no GPU visible: 1 worker, on the CPU")
    return slots


def _model(value: str | None) -> ModelChoice | None:
    if value is None:
        return None
    allowed = ("auto", "framepack", "framepack-f1", "tiny")
    if value not in allowed:
        raise typer.BadParameter(f"must be one of {', '.join(allowed)}", param_hint="--model")
    return value  # type: ignore[return-value]


@app.command()
def generate(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Start image.")],
    prompt: Annotated[str, typer.Option(help="What happens in the video.")] = "",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to save the MP4.")] = None,
    end_image: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    seconds: Annotated[float | None, typer.Option("--seconds", help="video_length in seconds.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    steps: Annotated[int | None, typer.Option()] = None,
    resolution: Annotated[int | None, typer.Option()] = None,
    sampling_mode: Annotated[str | None, typer.Option(help="reverse | forward")] = None,
    server: ServerOpt = DEFAULT_SERVER,
    api_key: ApiKeyOpt = None,
) -> None:
    """Submit a video job, show its progress, and download the MP4."""
    from framepack_api.client import APIError, Client, JobFailed

    with Client(server, api_key=api_key) as api:
        try:
            job = api.submit_video(image, end_image=end_image, prompt=prompt, video_length=seconds,
                                   seed=seed, steps=steps, resolution=resolution,
                                   sampling_mode=sampling_mode)
        except APIError as exc:
            console.print(f"[red]refused:[/red] {exc.detail}")
            raise typer.Exit(2) from None
        job_id = job["job_id"]
        console.print(f"job [bold]{job_id}[/bold] queued")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("pending", total=100)

            def show(status: dict[str, Any]) -> None:
                label = status["status"]
                if status.get("queue_position"):
                    label += f" (#{status['queue_position']} in queue)"
                elif status.get("total_sections"):
                    label += f" section {status['section']}/{status['total_sections']}"
                bar.update(task, completed=status["progress"], description=label)

            try:
                final = api.wait(job_id, on_progress=show, poll_interval=0.5)
            except JobFailed as exc:
                console.print(f"[red]{exc}[/red]")
                raise typer.Exit(1) from None
        target = api.download(job_id, out or Path(f"{job_id}.mp4"))
        console.print(f"saved {target} (seed {final['seed']})")


@jobs_app.command("ls")
def jobs_ls(server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """The queue: pending in run order, then running, then recently finished."""
    from framepack_api.client import APIError, Client

    with Client(server, api_key=api_key) as api:
        try:
            entries = api.queue()
        except APIError as exc:
            console.print(f"[red]{exc.detail}[/red]")
            raise typer.Exit(1) from None
    table = Table("job_id", "type", "status", "pos", "progress", "prompt")
    for e in entries:
        table.add_row(e["job_id"], e["type"], e["status"], str(e["position"] or ""),
                      f"{e['progress']:.0f}%", e["prompt"][:40])
    Console().print(table)


@jobs_app.command("show")
def jobs_show(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """A job's full status as JSON."""
    import json

    from framepack_api.client import APIError, Client

    with Client(server, api_key=api_key) as api:
        try:
            print(json.dumps(api.status(job_id), indent=2))
        except APIError as exc:
            console.print(f"[red]{exc.detail}[/red]")
            raise typer.Exit(1) from None


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, server: ServerOpt = DEFAULT_SERVER, api_key: ApiKeyOpt = None) -> None:
    """Cancel a job: pending at once, running at its next sampling step."""
    from framepack_api.client import APIError, Client

    with Client(server, api_key=api_key) as api:
        try:
            status = api.cancel(job_id)
        except APIError as exc:
            console.print(f"[red]{exc.detail}[/red]")
            raise typer.Exit(1) from None
    note = " (stops at the next sampling step)" if status["cancel_requested"] and \
        status["status"] == "processing" else ""
    print(f"{job_id}: {status['status']}{note}")


@db_app.command("upgrade")
def db_upgrade(database_url: Annotated[str | None, typer.Option()] = None,
               data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Apply the schema migrations (the server also does this on start)."""
    from framepack_api.jobs.db import create_engine, upgrade

    settings = _settings(database_url=database_url, data_dir=data_dir)
    upgrade(create_engine(settings.resolved_database_url))
    print(f"schema is at head on {settings.resolved_database_url}")


@models_app.command("ls")
def models_ls() -> None:
    """Presets and which one `auto` picks here."""
    from framepack_api.hardware import effective_model

    settings = Settings()
    print(f"setting MODEL={settings.model} -> {effective_model(settings)}")
    print(f"framepack     reverse sampling: {settings.transformer_repo}")
    print(f"framepack-f1  forward sampling: {settings.transformer_f1_repo}")
    print(f"  shared parts: {settings.hunyuan_repo}, image encoder {settings.siglip_repo}")
    print("tiny          random weights, built offline; for tests and machines without a GPU")


@models_app.command("download")
def models_download(
    preset: Annotated[str, typer.Argument(help="framepack (default), framepack-f1, all, or one part: hunyuan, "
                                               "flux_redux_bfl, FramePackI2V_HY, F1.")] = "framepack",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List repos, files, sizes and what is cached; "
                                                            "download nothing.")] = False,
) -> None:
    """Download the real weights into the Hugging Face cache (HF_HOME; HF_TOKEN for gated repos)."""
    from framepack_api import weights

    if importlib.util.find_spec("huggingface_hub") is None:
        console.print("[red]downloads need huggingface_hub:[/red] pip install 'framepack-api\\[gpu]' (or \\[server])")
        raise typer.Exit(2)
    try:
        parts = weights.plan(Settings(), preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="PRESET") from None
    for part in parts:
        cached = weights.state(part)
        line = f"{part.name:16} {part.repo}  [{cached}]  files: {', '.join(part.allow_patterns)}"
        if dry_run:
            size = weights.remote_size(part)
            line += f"  size: {size / 1e9:.1f} GB" if size is not None else "  size: unknown (hub not reachable)"
        print(line)
        if dry_run or cached == "present":
            continue
        try:
            print(f"  downloaded to {weights.download(part)}")
        except Exception as exc:  # offline, gated without HF_TOKEN, disk full: say which and stop
            console.print(f"[red]could not download {part.repo}:[/red] {exc.__class__.__name__}: {exc}\n"
                          "Is huggingface.co reachable (HF_ENDPOINT, HF_HUB_OFFLINE unset)? "
                          "Gated repos need HF_TOKEN.")
            raise typer.Exit(1) from None


@models_app.command("build-tiny")
def models_build_tiny(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Build the tiny model now (otherwise the first worker builds it)."""
    from framepack_api.backends.framepack.tiny import ensure_tiny_model

    settings = _settings(data_dir=data_dir)
    print(ensure_tiny_model(settings.models_dir))


@app.command()
def ui(
    server: ServerOpt = DEFAULT_SERVER,
    host: Annotated[str, typer.Option(help="Bind address of the page.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the page.")] = 7860,
    api_key: ApiKeyOpt = None,
) -> None:
    """Serve the FramePack web page (a client of --server); needs the `ui` extra."""
    try:
        from framepack_api.ui.app import run_ui
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":
            raise
        console.print("[red]the page needs gradio:[/red] pip install 'framepack-api[ui]'")
        raise typer.Exit(2) from None
    run_ui(server, host=host, port=port, api_key=api_key)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
