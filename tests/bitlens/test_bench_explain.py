"""The explain bench's mappers: the same results as the serial one, timed per method."""
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from bitlens.bench import explain as B
from explain import tasks as T
from tests.explain.standins import OPTS, StandIns

torch.set_num_threads(1)


def test_pooled_and_timed_mappers_give_the_serial_maps(tmp_path):
    src = StandIns(tmp_path, conv=True)
    calls = [(src, "tfc-w1a1", k, nm, 0, m, 12, a, a + 6, OPTS)
             for k, nm in (("bnn", "tfc-w1a1"), ("fp", "tfc-fp")) for m in ("smoothgrad", "occlusion") for a in (0, 6)]
    want = T.serial_map(T.attribution_task, calls, progress=False)
    times, ptimes = {}, {}
    got = B.timed(times, progress=False)(T.attribution_task, calls)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=B._worker_init, initargs=(1,)) as pool:
        pgot = B.pooled(ptimes, pool, progress=False)(T.attribution_task, calls)
    for w, g, p in zip(want, got, pgot):
        assert np.array_equal(w["map"], g["map"]) and np.array_equal(w["map"], p["map"])
    for t in (times, ptimes):
        d = t["attribution_task"]
        assert d["calls"] == 8 and set(d["methods"]) == {"smoothgrad", "occlusion"}
        assert d["methods"]["smoothgrad"]["calls"] == 4 and d["seconds"] >= d["methods"]["occlusion"]["seconds"]
