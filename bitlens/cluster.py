"""Tasks on Dask: a client for this machine or a running cluster, and the cached mapper.

`mapper(fn, [args, ...]) -> [fn(*args), ...]` looks every call up in the task cache
(bitlens.cache) and submits only the missing ones as Dask tasks; results are cached as they
arrive, so an interrupted run keeps what finished and its re-run computes only the rest. The
same signature is what a library function taking `mapper=` expects (bitlens.study.serial is the same without Dask).
"""
import contextlib
import sys

import dask
from distributed import Client, LocalCluster, as_completed
from tqdm import tqdm

from bitlens.cache import TaskCache


class TaskError(RuntimeError):
    """A task failed: names the task and its arguments, then the cause's first line."""


class Cluster:
    """A Client of the running cluster at `scheduler` (tcp://host:port), or of a LocalCluster of
    `workers` processes; connected or started on first use, so a run whose every task is cached
    starts nothing. Use as a context manager: leaving it closes what it started."""

    def __init__(self, scheduler=None, workers=2, threads=1):
        self.scheduler, self.workers, self.threads = scheduler, workers, threads
        self._stack = contextlib.ExitStack()
        self._client = None

    @property
    def started(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> Client:
        if self._client is None:
            # tasks carry their inputs (a shard's maps) as plain arguments on purpose, so that any
            # worker, on any machine, can run them: a report's tens of MiB are expected, not a mistake
            self._stack.enter_context(dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GiB"}))
            self._client = self._stack.enter_context(self._connect())
        return self._client

    @contextlib.contextmanager
    def _connect(self):
        if self.scheduler:
            with Client(self.scheduler, timeout="30s") as c:
                yield c
            return
        # a task may start processes of its own (the export's qonnx pool): Dask's workers are
        # daemonic by default and daemonic processes may have no children
        t = str(self.threads)
        with dask.config.set({"distributed.worker.daemon": False}), \
                LocalCluster(n_workers=self.workers, threads_per_worker=self.threads, processes=True,
                             dashboard_address=":0",
                             # one BLAS/torch thread per task thread: tasks side by side fill the cores
                             env={"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t}) as lc, \
                Client(lc) as c:
            yield c

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()


def cached_mapper(cluster: Cluster, cache: TaskCache, progress=True):
    def mapper(fn, arg_tuples, desc=None):
        args = [tuple(a) for a in arg_tuples]
        keys = [cache.key(fn, a) for a in args]
        results, todo = {}, {}
        for a, k in zip(args, keys):
            if k in results or k in todo:
                continue
            hit, r = cache.get(fn, k)
            if hit:
                results[k] = r
            else:
                todo[k] = a
        name = cache.name(fn).rsplit(".", 1)[-1]
        futures = {cluster.client.submit(fn, *a, key=f"{name}-{k[:20]}", pure=False): k for k, a in todo.items()}
        bar = tqdm(total=len(results) + len(todo), initial=len(results), desc=desc or name, unit="task",
                   disable=not progress, file=sys.stderr)
        try:
            for fut in as_completed(futures) if futures else ():
                k = futures[fut]
                try:
                    r = fut.result()
                except Exception as e:
                    cause = (str(e).strip() or type(e).__name__).splitlines()[0]
                    raise TaskError(f"task {name}{todo[k]!r} failed: {cause}") from e
                results[k] = cache.put(fn, todo[k], k, r)
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            bar.close()
        return [results[k] for k in keys]
    return mapper
