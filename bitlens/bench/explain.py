"""`python -m bitlens.bench.explain`: SmoothGrad throughput (50 samples per image) on 1000 MNIST-sized
images through TFC-sized models -> build/bench/explain.json. Goal: < 60 s on 2 cores."""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from explain.methods import attribute
from model import data as D
from model import paths, zoo



def images(n):
    try:
        imgs, labels = D.load_split("mnist", "test")
        return D.to_float(imgs[:n]), torch.as_tensor(labels[:n]), "mnist test"
    except (ValueError, OSError, ImportError):
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 256, torch.arange(n) % 10, "random bytes"


def bench(models=("tfc-w1a1", "tfc-fp"), n=1000, samples=50, chunk=20):
    x, y, source = images(n)
    out = dict(images=n, samples=samples, data=source, torch_threads=torch.get_num_threads(), results={})
    for name in models:
        net = zoo.build(name).eval()  # weights do not change the cost
        t0 = time.time()
        for i in tqdm(range(0, n, chunk), desc=f"smoothgrad {name}", leave=False, file=sys.stderr):
            attribute("smoothgrad", net, x[i:i + chunk], y[i:i + chunk], samples=samples, batch=chunk * samples)
        dt = time.time() - t0
        out["results"][name] = dict(seconds=round(dt, 2), images_per_s=round(n / dt, 1), goal_met=dt < 60)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--out", default=str(paths.BUILD / "bench" / "explain.json"))
    a = p.parse_args(argv)
    try:
        res = bench(n=a.images, samples=a.samples)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(res, indent=2) + "\n")
        os.replace(tmp, out)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, r in res["results"].items():
        print(f"{name}: SmoothGrad x{a.samples} on {a.images} images: {r['seconds']} s ({r['images_per_s']} images/s)")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
