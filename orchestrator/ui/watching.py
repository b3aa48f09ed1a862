"""``critpath emit`` and ``critpath watch``: sending ``critpath.service.updated``.

``emit NAME...`` sends one event per service, for scripts and CI, once every name is known
(an unknown one is refused with the closest names, and nothing is sent). ``watch PATH
--service NAME`` (or the ``[[watch]]`` pairs of critpath.toml) emits for a service when
files land in its landing folder: with the ``watchfiles`` library, a batch of changes is
taken once its folder has been quiet for ``debounce`` seconds (a file still being written
keeps changing, so a partial write is not taken alone), and temporary files (``*.tmp``,
``*.part``, ``*~``, ``.*``: editors' and downloaders' partial files) and deletions are not
landings. A served deployment (``critpath serve``) refreshes ``NAME+`` on each event.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click

from ..inputs.config import DEBOUNCE_RULE, is_debounce
from ..inputs.project import load_inputs
from ..planning.errors import CritpathError, did_you_mean

#: names of files that are not (yet) data: partial downloads, editor and temporary files
TEMPORARY = ("*.tmp", "*.part", "*.partial", "*.crdownload", "*.swp", "*~", ".*", "~*")


def is_landing(path: str) -> bool:
    """A file at ``path`` is data that landed, not a temporary file (``TEMPORARY``), nor in a
    hidden folder (``.staging/part-0``)."""
    parts = Path(path).parts
    if any(p.startswith(".") and p not in (".", "..") for p in parts[:-1]):
        return False
    name = parts[-1] if parts else ""
    return bool(name) and not any(fnmatch.fnmatchcase(name, pattern) for pattern in TEMPORARY)


@dataclass(frozen=True)
class Watch:
    """One landing folder and the service whose event it sends."""

    path: Path
    service: str
    debounce: float


def known_services(names, graph) -> None:
    """Every name is a service of ``graph``, or CritpathError naming the first that is not."""
    for name in names:
        if name not in graph.index:
            raise CritpathError(f"unknown service {name!r}{did_you_mean(name, graph.names)}; nothing was sent; "
                                "run 'critpath plan' to list the services")


def watches_for(path: str | None, service: str | None, debounce: float | None, cfg, graph) -> list[Watch]:
    """The folder/service pairs to watch: the command line's, else the config's ``[[watch]]``.
    Every problem is CritpathError with the fix."""
    if debounce is not None and not is_debounce(debounce):
        raise CritpathError(f"--debounce {debounce!r}: {DEBOUNCE_RULE}, e.g. --debounce 2")
    if path is not None:
        if not service:
            raise CritpathError(f"watch {path!r}: give the service its files update: --service NAME")
        pairs = [{"path": path, "service": service}]
    elif service:
        raise CritpathError("--service needs the folder to watch: critpath watch PATH --service NAME")
    else:
        pairs = list(cfg.watch)
        if not pairs:
            raise CritpathError("nothing to watch: give PATH --service NAME, or [[watch]] tables with path and "
                                "service in critpath.toml")
    out = []
    for pair in pairs:
        known_services([pair["service"]], graph)
        folder = Path(pair["path"])
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise CritpathError(f"watch {str(folder)!r}: {what}; create the landing folder first, or give "
                                "the path of an existing one")
        out.append(Watch(folder.absolute(), pair["service"],
                         float(debounce if debounce is not None else pair.get("debounce", cfg.debounce))))
    return out


def landed(changes, watches: list[Watch]) -> dict[str, list[str]]:
    """Service -> the files that landed for it, from one batch of watchfiles ``changes``."""
    from watchfiles import Change

    out: dict[str, list[str]] = {}
    for change, path in sorted(changes, key=lambda c: c[1]):
        if change == Change.deleted:
            continue
        for w in watches:
            try:
                relative = Path(path).relative_to(w.path)
            except ValueError:
                continue
            if is_landing(str(relative)) and not Path(path).is_dir():
                out.setdefault(w.service, []).append(str(relative))
    return out


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise CritpathError("no PREFECT_API_URL: events go to the Prefect server that serves the refresh; "
                            "export PREFECT_API_URL=http://127.0.0.1:4200/api (see 'critpath server')")
    return url


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--graph", "graph_file", metavar="FILE", help="Graph file (default: from the config).")
@click.option("--module", "modules", metavar="IMPORT.PATH", help="Service module(s) (default: from the config).")
@click.option("--config", "config_path", metavar="FILE", help="Config file.")
def emit(names, graph_file, modules, config_path):
    """Send critpath.service.updated for each NAME: a served refresh then refreshes NAME+."""
    from ..flows.triggers import emit as send

    graph, _ = load_inputs(graph_file, modules, config_path, (), None)
    known_services(names, graph)
    _api_url()
    try:
        send(dict.fromkeys(names))
    except ConnectionError as exc:
        click.echo(f"critpath: {exc}", err=True)
        sys.exit(1)
    click.echo(f"critpath: sent critpath.service.updated for {', '.join(dict.fromkeys(names))}")


@click.command()
@click.argument("path", required=False)
@click.option("--service", metavar="NAME", help="The service whose data lands in PATH.")
@click.option("--debounce", type=float, metavar="SECONDS",
              help="Quiet time before files count as landed (default: debounce in the config, else 2).")
@click.option("--graph", "graph_file", metavar="FILE", help="Graph file (default: from the config).")
@click.option("--module", "modules", metavar="IMPORT.PATH", help="Service module(s) (default: from the config).")
@click.option("--config", "config_path", metavar="FILE", help="Config file.")
def watch(path, service, debounce, graph_file, modules, config_path):
    """Emit critpath.service.updated for SERVICE when files land in PATH (or for each [[watch]]
    pair in critpath.toml); Ctrl-C stops."""
    import watchfiles

    from ..flows.triggers import emit as send

    graph, cfg = load_inputs(graph_file, modules, config_path, (), None)
    watches = watches_for(path, service, debounce, cfg, graph)
    _api_url()
    quiet_s = min(w.debounce for w in watches)
    folder_of = {w.service: w.path for w in watches}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for w in watches:
        click.echo(f"critpath: watching {w.path} for {w.service} (debounce {w.debounce:g} s)", err=True)
    ready = False
    # a batch is yielded once nothing changed for `step` ms: the quiet time a landing needs;
    # a folder that never stops changing still yields every `debounce` ms
    step = max(int(quiet_s * 1000), 50)
    try:
        # the watch is in place once the first (empty) batch is yielded, a second in: only then ready
        for changes in watchfiles.watch(*(w.path for w in watches), step=step, debounce=max(step * 10, 1600),
                                        stop_event=stop, watch_filter=None, raise_interrupt=False,
                                        rust_timeout=1000, yield_on_timeout=True):
            if not ready:
                click.echo("critpath: ready; Ctrl-C stops", err=True)
                ready = True
            for name, files in landed(changes, watches).items():
                shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                try:
                    send([name], source=f"critpath watch {os.fspath(folder_of[name])}")
                except ConnectionError as exc:  # the server may come back: keep watching
                    click.echo(f"critpath: landed for {name} ({shown}) but not sent: {exc}", err=True)
                    continue
                click.echo(f"critpath: landed for {name}: {shown}; sent critpath.service.updated", err=True)
    except KeyboardInterrupt:
        pass
    click.echo("critpath: stopped watching", err=True)
