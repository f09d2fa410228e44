"""The report's tasks (explain.tasks) for the task cache: which files each one reads, which code
it runs, and how its `Sources` argument is keyed. Importing this module declares them, so
`cached_mapper` can run `explain.report.compute(..., mapper=)` shard by shard: an interrupted or
extended report or study computes only the shards whose model files, arguments or code changed."""
from pathlib import Path

from bitlens.cache import declare, keyed
from explain import tasks as T
from explain.sources import Sources
from model import paths

CODE = ("model", "hw", "sim", "explain")


def net_files(sources, model, kind, name, seed, *rest):
    """What load_net reads for (kind, name, seed): weights and training record, the BNN's graph,
    and a user model's defining file (TWIN=path/file.py:function)."""
    d = paths.model_dir(name, seed, sources.root)
    files = [d / "model.pt", d / "train.json"] + ([d / "streamlined.onnx"] if kind == "bnn" else [])
    spec = str(name).split(":")[0]
    if spec.endswith(".py"):
        files.append(Path(spec))
    return files


for fn in (T.info_task, T.attribution_task, T.score_task, T.sanity_task, T.final_layer_task):
    declare(fn, reads=net_files, code=CODE)
declare(T.similarity_task, code=CODE)         # maps in, numbers out: its arguments are its inputs

# a Sources is plain data: its fields (build root as a string, dataset, a study's seed subset)
keyed(Sources, lambda s: {k: str(v) if isinstance(v, Path) else v for k, v in sorted(vars(s).items())})
