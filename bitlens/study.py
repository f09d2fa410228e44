"""`python -m bitlens study` (`make study`): the published findings on every dataset x topology.

For every dataset x topology: train the BNN (<topology>-w1a1) and its full-precision twin for each
seed, export + verify the BNN seeds, explain both with explain.report.compute, and take each
finding (numbers, confidence interval, rule, verdict) from its `findings`. Writes
build/study/study.json (one row per finding x dataset x topology) and build/study/index.html,
published together; build/study/run.json says what this run computed and what came from the
cache (build/cache/). Models are trained under build/study/models/<dataset>/.
"""
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jinja2

from bitlens import study_tasks
from bitlens.cache import TaskCache
from bitlens.cli import errors
from bitlens.cli import options as O
from bitlens.cluster import Cluster, cached_mapper
from explain import report as R
from explain.methods import METHODS, method_names
from model import paths, publish, zoo
from model.data import DATASETS

TASKS = SimpleNamespace(train=study_tasks.train, export=study_tasks.export, sources=study_tasks.StudySources)


class StudyError(ValueError):
    pass


def serial(fn, arg_tuples):
    """The mapper without Dask or cache."""
    return [fn(*a) for a in arg_tuples]


def models_of(name):
    """A topology (tfc) or a zoo BNN (tfc-w1a2) -> (BNN, twin)."""
    bnn = f"{name}-w1a1" if name in zoo.TOPOLOGIES else name
    try:
        sp = zoo.spec(bnn)
    except ValueError as e:
        raise StudyError(f"--models: {e}") from None
    if sp.source != "zoo" or not sp.quantised:
        raise StudyError(f"--models: '{name}' is not a topology ({', '.join(zoo.TOPOLOGIES)}) or a BitLens zoo BNN")
    return bnn, sp.twin


def explain_options(bnn, images, methods, options=None):
    """The report's images (IMAGES= over them) and options: compute takes the topology's own
    defaults (explain.report.default_options) for what is not given here."""
    n = images or R.DEFAULT_IMAGES
    opts = {"quantus": dict(road_images=min(n, R.ROAD_IMAGES))}
    for k, v in (options or {}).items():
        opts[k] = dict(opts.get(k, {}), **v)
    return n, list(methods), opts


def rows_of(cell):
    """One row per finding of one (dataset, topology) explanation."""
    rows = []
    for key, f in cell["findings"].items():
        numbers = {k: v for k, v in f.items() if k not in ("claim", "rule", "verdict", "reason", "ci")}
        rows.append(dict(finding=key, claim=f["claim"], dataset=cell["dataset"], topology=cell["topology"],
                         model=cell["model"], twin=cell["twin"], verdict=f["verdict"], rule=f.get("rule", ""),
                         reason=f.get("reason"), ci=f.get("ci"), numbers=numbers))
    return rows


def run(datasets, topologies, seeds, images=None, epochs=None, limit=None, verify=200, methods=None,
        root=None, mapper=serial, tasks=TASKS, options=None):
    """The study's document (study.json) computed through `mapper`."""
    root = Path(root or paths.BUILD / "study")
    methods = list(methods or METHODS)
    cells = [(d, t, *models_of(t)) for d in datasets for t in topologies]
    mroot = {d: str(root / "models" / d) for d in datasets}
    list(mapper(tasks.train, [(mroot[d], name, d, s, epochs, limit)
                              for d, _, bnn, twin in cells for name in (bnn, twin) for s in seeds]))
    list(mapper(tasks.export, [(mroot[d], bnn, d, s, verify) for d, _, bnn, _ in cells for s in seeds]))
    # one cell after the other, each fanned out as shard tasks (model x seed x method x images)
    explained = [study_tasks.explain(mroot[d], bnn, twin, d, tuple(seeds), *explain_options(bnn, images, methods, options),
                                     mapper=mapper, sources=tasks.sources) for d, _, bnn, twin in cells]
    out = []
    for (d, t, bnn, twin), res in zip(cells, explained):
        out.append(dict(res, topology=t))
    rows = [r for cell in out for r in rows_of(cell)]
    order = {k: i for i, k in enumerate(dict.fromkeys(r["finding"] for r in rows))}
    rows.sort(key=lambda r: (order[r["finding"]], r["dataset"], r["topology"]))
    return dict(datasets=list(datasets), topologies=list(topologies), seeds=list(seeds), images=images,
                epochs=epochs, train_limit=limit, verify_images=verify, methods=methods, rows=rows,
                cells=[{k: c[k] for k in ("dataset", "topology", "model", "twin", "n_images", "accuracy", "models",
                                          "skipped", "notes")} for c in out])


TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["fmt"] = R.fmt


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list) or len(v) <= 3:
            yield prefix + k, v


def render(doc, run_info):
    findings = list(dict.fromkeys(r["finding"] for r in doc["rows"]))
    columns = [(c["dataset"], c["topology"]) for c in doc["cells"]]
    verdicts = {(r["finding"], r["dataset"], r["topology"]): r for r in doc["rows"]}
    matrix = [dict(finding=f, claim=next(r["claim"] for r in doc["rows"] if r["finding"] == f),
                   cells=[verdicts.get((f, d, t)) for d, t in columns]) for f in findings]
    rows = [dict(r, flat=list(_flat(r["numbers"]))) for r in doc["rows"]]
    return TEMPLATES.get_template("study.html").render(doc=doc, run=run_info, columns=columns, matrix=matrix, rows=rows)


def publish_study(doc, run_info, out):
    """study.json, index.html and run.json published together (model.publish)."""
    with publish.staging(out, "study") as stage:
        publish.atomic_json(stage / "study.json", doc)
        publish.atomic_json(stage / "run.json", run_info)
        publish.atomic_text(stage / "index.html", render(doc, run_info))
    return out


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv=None):
    p = O.Parser(prog="python -m bitlens study", description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--models", nargs="+", default=["tfc", "cnv"], help="topologies (tfc, cnv, ...) or zoo BNNs")
    p.add_argument("--seeds", nargs="+", type=O.nonneg_int, default=[0, 1, 2])
    p.add_argument("--images", type=O.positive_int, help=f"images explained (default: the report's, {R.DEFAULT_IMAGES})")
    p.add_argument("--epochs", type=O.positive_int, help="training epochs (default: the topology's)")
    p.add_argument("--limit", type=O.positive_int, help="train on the first N training images only")
    p.add_argument("--verify", type=O.positive_int, default=200, help="test images each export is verified on")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--scheduler", default=None, help="tcp://host:port of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=O.positive_int, default=2, help="local cluster: worker processes")
    p.add_argument("--out", default=str(paths.BUILD / "study"))
    p.add_argument("--cache", default=str(paths.BUILD / "cache"))
    a = p.parse_args(argv)
    for d in a.datasets:
        if d not in DATASETS:
            raise StudyError(f"--datasets: {O.unknown('dataset', d, DATASETS)}")
    try:
        methods = method_names(a.methods)
    except ValueError as e:
        raise StudyError(f"--methods: {e}") from None
    for t in a.models:
        models_of(t)
    seeds = list(dict.fromkeys(a.seeds))
    cache = TaskCache(a.cache)
    t0 = time.time()
    with Cluster(a.scheduler, a.workers) as c:
        doc = run(a.datasets, a.models, seeds, a.images, a.epochs, a.limit, a.verify, methods, a.out,
                  cached_mapper(c, cache))
    info = dict(seconds=round(time.time() - t0, 1), computed=cache.misses, from_cache=cache.hits,
                scheduler=a.scheduler or f"LocalCluster, {a.workers} workers")
    out = publish_study(doc, info, Path(a.out))
    print(f"study: {len(doc['rows'])} rows, {cache.misses} tasks computed, {cache.hits} from the cache, "
          f"{info['seconds']} s -> {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
