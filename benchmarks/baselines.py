"""The two baselines measured beside each critpath runner, on the same engine.

* **Prefect-native**: the same services as Prefect tasks, every one submitted at
  once with ``wait_for`` on its upstreams, on ``ThreadPoolTaskRunner``,
  ``DaskTaskRunner`` or ``RayTaskRunner`` (what a Prefect user writes today).
  There is no Prefect-native process runner: ``native_runner`` is ``None`` for
  ``processes`` and the tables say n/a.
* **Raw engine**: ``concurrent.futures``, Dask ``client.submit`` or Ray
  ``.remote`` with no observability. Dependencies are passed natively where the
  engine has them (futures / object refs as arguments: "in engine"), or by
  waiting for each result in the driver and submitting the next ("round trip",
  what an orchestrator that decides every next step pays). ``concurrent.futures``
  has no dependencies of its own: a graph runs through a minimal event-driven
  loop that submits each service the moment its last upstream is done (FIFO, no
  priorities, the pool queues the rest).

Every baseline of a runner shares that runner's engine where it can: the same
Dask scheduler and worker processes (a second client, or ``DaskTaskRunner(address=...)``),
the same Ray instance. A concurrency below the engine's slots needs an engine of
that size: a separate Dask ``LocalCluster`` laid out as ``runners.dask`` lays out
its own, a separate pool for ``concurrent.futures``, and for Ray
``num_cpus = slots / concurrency`` per task on the shared instance.

Bodies are module-level functions so that worker processes import them by name.
"""
from __future__ import annotations

import queue
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Callable

from orchestrator.planning.graph import Graph
from runners import layout


def noop(*_upstream: Any) -> None:
    return None


def sleep_for(seconds: float, *_upstream: Any) -> None:
    if seconds > 0:
        time.sleep(seconds)


def body(spec, *_upstream: Any) -> tuple[float, float, str | None]:
    """A service body: ``spec`` is seconds to sleep, or ``(call, params)`` of a real
    service. Returns (start, end, error) as measured on the worker."""
    start = time.time()
    error = None
    try:
        if isinstance(spec, (int, float)):
            sleep_for(spec)
        else:
            from runners.base import resolve

            resolve(spec[0])(**spec[1])
    except Exception as exc:  # reported as data, like critpath's execute()
        error = f"{type(exc).__name__}: {exc}"
    return start, time.time(), error


def spec_of(graph: Graph, i: int):
    svc = graph.services[graph.names[i]]
    return (svc.call, dict(svc.params)) if svc.call else float(svc.duration or 0.0)


def measured_bound(graph: Graph, results: list, limit: int) -> float:
    """max(critical path, work / limit, pool work / pool limit) of the measured durations."""
    from orchestrator.planning.planner import priorities

    took = [max(0.0, r[1] - r[0]) if r else 0.0 for r in results]
    prio = priorities(graph, took, graph.topo_order())
    pools: dict[str, float] = {}
    for i, name in enumerate(graph.names):
        pool = graph.services[name].pool
        if pool in graph.pools:
            pools[pool] = pools.get(pool, 0.0) + took[i]
    return max([max(prio, default=0.0), sum(took) / limit, *(w / graph.pools[p] for p, w in pools.items())])


_service_task = None


def service_task():
    """The Prefect-native service: a plain ``@task`` running the same body."""
    global _service_task
    if _service_task is None:
        from prefect import task

        @task(name="service")
        def service(spec) -> tuple:
            return body(spec)

        _service_task = service
    return _service_task


def native_graph(graph: Graph, task_runner, remote_options: dict | None = None) -> dict:
    """Run ``graph`` as one Prefect flow of ``@task``s submitted with ``wait_for``.

    Every service is submitted up front, in topological order (sources first,
    then by name), which is how a user writes it. Returns ``makespan_s`` (first
    submit to the moment every future is done, as critpath measures its own),
    ``failed`` (services not Completed, or whose body raised) and ``results``
    ((start, end, error) per service, None where the task did not complete).
    """
    from prefect import flow
    from prefect.futures import wait

    svc = service_task()
    order = graph.topo_order()
    out: dict = {}

    def run_flow():
        ctx = ExitStack()
        if remote_options:
            from prefect_ray.context import remote_options as ray_options

            ctx.enter_context(ray_options(**remote_options))
        with ctx:
            futures: list = [None] * len(graph)
            t0 = time.time()
            for i in order:
                futures[i] = svc.submit(spec_of(graph, i), wait_for=[futures[u] for u in graph.preds[i]])
            wait(futures)
            t1 = time.time()
        results = []
        for f in futures:
            state = f.state
            results.append(state.result(raise_on_failure=False) if state.is_completed() else None)
        out["makespan_s"] = t1 - t0
        out["results"] = results
        out["failed"] = sum(1 for r in results if not isinstance(r, tuple) or r[2] is not None)

    native = flow(name="prefect-native", task_runner=task_runner, persist_result=False, log_prints=False,
                  validate_parameters=False)(run_flow)
    state = native(return_state=True)
    if "makespan_s" not in out:
        raise RuntimeError(f"the Prefect-native flow run ended without a result: {state.message}")
    return out


def refresh_baselines(engine, graph: Graph, limit: int) -> tuple[dict | None, dict]:
    """The refresh's services as Prefect-native tasks and on the raw engine, at ``limit``."""
    native = engine.native(graph, limit)
    if native is not None:
        native["bound_s"] = measured_bound(graph, native["results"], limit)
    engine.server.settle()
    makespan, results = engine.base.graph(graph, limit)
    raw = {"makespan_s": makespan, "bound_s": measured_bound(graph, results, limit),
           "failed": sum(1 for r in results if r[2] is not None)}
    return native, raw


# -- one class per engine ----------------------------------------------------------
class _Futures:
    """concurrent.futures: threads or processes."""

    in_engine_chain = False

    def __init__(self, name: str, runner):
        self.name = name
        self.slots = runner.capacity
        self._stack = ExitStack()
        self._pools: dict[int, Any] = {}

    def _pool(self, size: int):
        if size not in self._pools:
            if self.name == "threads":
                pool = ThreadPoolExecutor(size, thread_name_prefix="raw")
            else:
                import multiprocessing

                pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("forkserver"))
                list(pool.map(noop, range(size)))  # start the workers before any clock
            self._pools[size] = self._stack.enter_context(pool)
        return self._pools[size]

    def native_runner(self, concurrency: int):
        if self.name != "threads":
            return None
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=concurrency)

    def native_options(self, concurrency: int) -> dict | None:
        return None

    def chain_in_engine(self, n: int) -> float | None:
        return None  # concurrent.futures cannot pass a dependency to the pool

    def chain_round_trip(self, n: int) -> float:
        pool = self._pool(self.slots)
        t0 = time.time()
        for _ in range(n):
            pool.submit(noop).result()
        return time.time() - t0

    def fanout(self, n: int) -> float:
        pool = self._pool(self.slots)
        t0 = time.time()
        futures = [pool.submit(noop) for _ in range(n)]
        for f in futures:
            f.result()
        return time.time() - t0

    def graph(self, graph: Graph, concurrency: int) -> tuple[float, list]:
        """(makespan, (start, end, error) per service)."""
        pool = self._pool(concurrency)
        left = [len(p) for p in graph.preds]
        done: queue.SimpleQueue = queue.SimpleQueue()
        results: list = [None] * len(graph)

        def start(i: int) -> None:
            pool.submit(body, spec_of(graph, i)).add_done_callback(lambda f, i=i: done.put((i, f)))

        t0 = time.time()
        for i, waiting in enumerate(left):
            if waiting == 0:
                start(i)
        for _ in range(len(graph)):
            i, f = done.get()
            results[i] = f.result()
            for j in graph.succs[i]:
                left[j] -= 1
                if left[j] == 0:
                    start(j)
        return time.time() - t0, results

    def close(self) -> None:
        self._stack.close()


class _Dask:
    in_engine_chain = True

    def __init__(self, name: str, runner):
        from distributed import Client

        self.name = name
        self.slots = runner.capacity
        self.address = runner.client.scheduler.address
        self._stack = ExitStack()
        self.client = self._stack.enter_context(Client(self.address))
        self._clusters: dict[int, tuple[str, Any]] = {}

    def _sized(self, concurrency: int):
        """(scheduler address, client) of a cluster with ``concurrency`` threads."""
        if concurrency == self.slots:
            return self.address, self.client
        if concurrency not in self._clusters:
            import logging

            from distributed import Client, LocalCluster

            threads = layout.local_dask(concurrency)  # laid out as critpath's own Dask runner is
            cluster = self._stack.enter_context(LocalCluster(
                n_workers=len(threads), threads_per_worker=threads[0], processes=True,
                dashboard_address=None, silence_logs=logging.ERROR,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}))  # as runners.dask: no 8787
            client = self._stack.enter_context(Client(cluster))
            client.gather([client.submit(noop, i, pure=False) for i in range(concurrency)])
            self._clusters[concurrency] = (cluster.scheduler_address, client)
        return self._clusters[concurrency]

    def native_runner(self, concurrency: int):
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=self._sized(concurrency)[0])

    def native_options(self, concurrency: int) -> dict | None:
        return None

    def chain_in_engine(self, n: int) -> float:
        t0 = time.time()
        f = None
        for _ in range(n):
            f = self.client.submit(noop, f, pure=False)
        f.result()
        return time.time() - t0

    def chain_round_trip(self, n: int) -> float:
        t0 = time.time()
        for _ in range(n):
            self.client.submit(noop, pure=False).result()
        return time.time() - t0

    def fanout(self, n: int) -> float:
        from distributed import wait

        t0 = time.time()
        wait([self.client.submit(noop, i, pure=False) for i in range(n)])
        return time.time() - t0

    def graph(self, graph: Graph, concurrency: int) -> tuple[float, list]:
        from distributed import wait

        client = self._sized(concurrency)[1]
        futures: list = [None] * len(graph)
        t0 = time.time()
        for i in graph.topo_order():
            futures[i] = client.submit(body, spec_of(graph, i), *[futures[u] for u in graph.preds[i]], pure=False)
        wait(futures)
        t1 = time.time()
        return t1 - t0, client.gather(futures)

    def close(self) -> None:
        import logging

        from orchestrator.support.logs import quiet

        # closing a cluster that still holds results makes distributed log errors about
        # clients and lost keys: shutdown noise of the baseline, not a finding
        with quiet("distributed", "asyncio", level=logging.CRITICAL):
            self._stack.close()


class _Ray:
    in_engine_chain = True

    def __init__(self, name: str, runner):
        import ray

        self.name = name
        self.slots = runner.capacity
        self._noop = ray.remote(num_cpus=1)(noop)
        self._body = ray.remote(num_cpus=1)(body)

    def native_runner(self, concurrency: int):
        from prefect_ray import RayTaskRunner

        return RayTaskRunner()  # ray is initialised by the critpath runner: it is reused, not shut down

    def native_options(self, concurrency: int) -> dict | None:
        # `concurrency` tasks at once on the shared instance of `slots` CPUs
        return {"num_cpus": self.slots / concurrency}

    def chain_in_engine(self, n: int) -> float:
        import ray

        t0 = time.time()
        ref = None
        for _ in range(n):
            ref = self._noop.remote(ref)
        ray.get(ref)
        return time.time() - t0

    def chain_round_trip(self, n: int) -> float:
        import ray

        t0 = time.time()
        for _ in range(n):
            ray.get(self._noop.remote())
        return time.time() - t0

    def fanout(self, n: int) -> float:
        import ray

        t0 = time.time()
        ray.get([self._noop.remote(i) for i in range(n)])
        return time.time() - t0

    def graph(self, graph: Graph, concurrency: int) -> tuple[float, list]:
        import ray

        remote = self._body.options(num_cpus=self.slots / concurrency)
        refs: list = [None] * len(graph)
        t0 = time.time()
        for i in graph.topo_order():
            refs[i] = remote.remote(spec_of(graph, i), *[refs[u] for u in graph.preds[i]])
        results = ray.get(refs)
        return time.time() - t0, results

    def close(self) -> None:
        pass


ENGINES: dict[str, Callable] = {"threads": _Futures, "processes": _Futures, "dask": _Dask, "ray": _Ray}
#: what the tables call each runner's baselines
NATIVE_NAME = {"threads": "ThreadPoolTaskRunner", "processes": None, "dask": "DaskTaskRunner",
               "ray": "RayTaskRunner"}
RAW_NAME = {"threads": "ThreadPoolExecutor", "processes": "ProcessPoolExecutor", "dask": "client.submit",
            "ray": "ray .remote"}


def baselines_for(runner):
    """The baseline engine beside an entered critpath ``runner`` (close it before the runner)."""
    return ENGINES[runner.name](runner.name, runner)
