"""What runs on a cluster's worker before critpath's own code is there: plain standard library.

The Dask and Ray runners send these functions *by value* (``detached``: copies that every
pickler sends as code, not as a reference to this module), so a worker, and a Dask
scheduler, which unpickles the tasks it is sent, run them even when they cannot import
``runners``: an environment without critpath, the very case they exist for. Nothing here
may import ``runners`` at module level or refer to anything but the standard library and
the engine that runs it.

``probe``: what a worker can import and which knobs it sees, asked of every worker before
a refresh starts, with a timeout, so that a missing module is one clear error up front
instead of a worker dying as it unpickles its first job.

``run_job``: runs one job from shipped code on a Dask worker. The code arrives as a zip
named by its content hash (``critpath-code-<version>.zip``, put in the worker's folder by
a worker plugin); it is unpacked once into a folder of its own, and that folder goes first
on ``sys.path``. When a job of another version arrives, the modules of the version loaded
so far are dropped from ``sys.modules`` first, so a worker holding an older copy never runs a
newer refresh's service with it (``runners`` itself is never dropped: it is running).

``DaskSlot``: a Dask runner's slot, an actor that runs jobs (from shipped code or not) on a
thread of its own.
"""
from __future__ import annotations

#: how the staged code is named on a worker: ``critpath-code-<version>`` (.zip, and the folder)
PREFIX = "critpath-code-"


def probe(modules, env=()) -> dict:
    """This worker's name, Python, which of ``modules`` it cannot find, and the values of the
    environment variables ``env``. Never imports a module (``find_spec`` of a top-level name
    only looks), so probing runs no user code."""
    import importlib.util
    import os
    import socket
    import sys
    import threading

    missing = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    t = threading.current_thread().name
    return {"worker": f"{socket.gethostname()}:{os.getpid()}" + ("" if t == "MainThread" else f"/{t}"),
            "python": ".".join(map(str, sys.version_info[:2])), "missing": missing,
            "env": {k: os.environ.get(k) for k in env}}


def plugins_on_scheduler(dask_scheduler=None) -> list:
    """The names of the worker plugins a Dask scheduler holds (run on the scheduler)."""
    return list(getattr(dask_scheduler, "worker_plugins", {}))


def _state():
    """This process's record of the shipped code it runs: a module of its own in
    ``sys.modules``, the one place that outlives each by-value copy of these functions."""
    import sys
    import threading
    import types

    state = sys.modules.get("_critpath_shipped")
    if state is None:
        fresh = types.ModuleType("_critpath_shipped")
        fresh.lock, fresh.version, fresh.modules, fresh.folder = threading.Lock(), None, (), None
        state = sys.modules.setdefault("_critpath_shipped", fresh)  # atomic: one wins
    return state


def use_code(root: str, version: str, modules) -> str:
    """Make ``version`` of the shipped code (``root``/critpath-code-<version>.zip) the one this
    process imports from; the folder it was unpacked into."""
    import importlib
    import os
    import shutil
    import sys
    import uuid
    import zipfile

    state = _state()
    folder = os.path.join(root, PREFIX + version)
    with state.lock:
        if state.version == version and folder in sys.path:
            return folder
        if not os.path.isdir(folder):
            archive = folder + ".zip"
            if not os.path.isfile(archive):
                raise FileNotFoundError(f"critpath's shipped code {version} has not reached this worker "
                                        f"({archive} is missing)")
            tmp = f"{folder}.{uuid.uuid4().hex[:8]}.tmp"
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
            try:
                os.rename(tmp, folder)  # whole or not at all; another process may have won
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
        drop = (set(modules) | set(state.modules)) - {"runners"}
        for name in list(sys.modules):
            if name.partition(".")[0] in drop:
                del sys.modules[name]
        for path in (state.folder, folder):
            while path in sys.path:
                sys.path.remove(path)
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
        state.version, state.modules, state.folder = version, tuple(modules), folder
    return folder


def run_job(fields: dict, version: str, modules):
    """Run the job ``fields`` (a ``runners.base.Job`` as a dict) with the shipped code
    ``version`` on this Dask worker; its ``Outcome``."""
    from distributed import get_worker

    use_code(get_worker().local_directory, version, modules)
    from runners.base import Job, execute

    return execute(Job(**fields))


class DaskSlot:
    """One slot of the Dask runner (``runners.dask_slots``): a Dask actor that runs the jobs
    it is given on a thread of its own, one at a time. ``run`` is a coroutine, so the worker
    runs it on its event loop, which hands the job to the slot's thread: a plain method
    would go to the worker's one actor thread, where the slots of a worker would take turns."""

    def __init__(self, root: str | None = None):
        from concurrent.futures import ThreadPoolExecutor

        self._thread = ThreadPoolExecutor(1, thread_name_prefix="critpath-slot")
        if root is None:
            from distributed import get_worker

            root = get_worker().local_directory
        self._root = root  # where shipped code is unpacked
        self._waiting = {}  # key -> the job's future, until it starts: what ``recall`` can take back
        import collections

        self._arrived = set()  # keys of the jobs here now (a recall may come before its job: see there)
        self._ended = collections.deque(maxlen=1024)  # keys of the last jobs that ended here
        self._recalled = set()  # keys taken back before they came
        self._coming = {}  # key -> an event set when job ``key`` arrives (a job sent behind it waits for it)

    async def run(self, payload: bytes, shipped=None, key=None, after=None):
        """The job in ``payload`` (a ``runners.base.Job`` as a dict, pickled by the client, where
        a job that cannot be sent fails at once); ``shipped``: (version, modules) of the shipped
        code it runs with, None: as installed. Its ``Outcome``; None if it was recalled. A job
        sent while another runs waits for it here, on the slot's thread (the lookahead).
        ``after``: the key of the job it was sent behind. Two calls may travel on two connections,
        so the later one can come first: it waits until that job has come (or for its recall)."""
        import asyncio

        if after is not None and after not in self._arrived and after not in self._ended:
            coming = self._coming.setdefault(after, asyncio.Event())
            await coming.wait()
        if key is not None:
            coming = self._coming.pop(key, None)
            if coming is not None:  # a job sent behind this one waits for it: it may go on now
                coming.set()
            if key in self._recalled:
                self._recalled.discard(key)
                self._ended.append(key)  # and one sent behind it, recalled too, is turned away
                return None
            self._arrived.add(key)
        fut = self._thread.submit(_slot_job, payload, shipped, self._root)
        if key is not None:
            self._waiting[key] = fut
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            if fut.cancelled():  # recalled before it started
                return None
            raise
        finally:
            if key is not None:
                self._waiting.pop(key, None)
                self._arrived.discard(key)
                self._ended.append(key)

    async def recall(self, key):
        """Take back job ``key`` if it has not started: True if it never will. The job and its
        recall travel apart, so the recall may come first: the job is then turned away on arrival."""
        if key not in self._arrived:
            if key in self._ended:  # it ran; its answer is on its way
                return False
            self._recalled.add(key)
            return True
        fut = self._waiting.get(key)
        return fut is not None and fut.cancel()


def _slot_job(payload: bytes, shipped, root: str):
    import pickle

    if shipped is not None:  # first: the job's params may be of the shipped code's classes
        use_code(root, *shipped)
    from runners.base import Job, execute

    return execute(Job(**pickle.loads(payload)))


_detached: dict | None = None


def detached() -> dict:
    """This module's functions, by name, as copies that picklers send by value: defined in a
    namespace called ``__main__``, which the standard pickle cannot find them in (Dask then
    falls back to cloudpickle) and cloudpickle always sends whole (Ray's too)."""
    global _detached
    if _detached is None:
        import inspect
        import sys

        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(inspect.getsource(sys.modules[__name__]), __file__, "exec"), namespace)
        _detached = namespace
    return _detached
