"""`python -m bitlens.bench.reference`: images/s of the bit-packed reference vs the Brevitas forward pass,
batch 256, for TFC and CNV -> build/bench/reference.json. The batch is the first 256 MNIST test
images: the reference skips work the data makes unnecessary (a neuron that passes at one
position of a max-pooling window is not computed at the others), so its speed depends on the
images, and noise would not be what users run. Untrained weights are used where no trained
checkpoint exists."""
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

from model import data, paths, zoo
from model.reference import Reference
from model.streamline import streamline

BATCH = 256


def _rate(fn, images, seconds=2.0, least=5):
    """Images/s of fn on one batch: the median over timed calls (after a warm-up call) for at
    least `seconds` and `least` calls, so a moment of load on a shared machine moves neither
    side much, however short one call is."""
    fn(images)
    times = []
    start = time.perf_counter()
    while len(times) < least or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - t)
    return len(images) / float(np.median(times))


def bench_model(name):
    try:
        net, trained = zoo.load_trained(name), True
    except zoo.ModelError:
        net, trained = zoo.build(name).eval(), False
    with tempfile.TemporaryDirectory() as d:
        from brevitas.export import export_qonnx
        export_qonnx(net, torch.zeros(1, *net.in_shape), f"{d}/m.onnx", dynamo=False)
        ref = Reference(streamline(f"{d}/m.onnx"))
    c, h, w = net.in_shape
    imgs = data.pad_images(data.load_split("mnist", "test")[0][:BATCH], h)
    xf = torch.from_numpy(imgs.transpose(0, 3, 1, 2).astype(np.float32)) / 256
    with torch.no_grad():
        brev = _rate(lambda x: net(xf[:len(x)]), imgs)
    packed = _rate(ref.predict_int, imgs)
    return dict(model=name, trained=trained, batch=BATCH, images=f"mnist test[:{BATCH}]",
                reference_images_per_s=round(packed, 1), brevitas_images_per_s=round(brev, 1),
                speedup=round(packed / brev, 2), torch_threads=torch.get_num_threads())


def main():
    out = paths.BUILD / "bench"
    out.mkdir(parents=True, exist_ok=True)
    results = [bench_model("tfc-w1a1"), bench_model("cnv-w1a1")]
    for r in results:
        print(f"{r['model']}: reference {r['reference_images_per_s']} img/s, Brevitas {r['brevitas_images_per_s']} img/s, x{r['speedup']}")
    tmp = out / "reference.json.tmp"
    tmp.write_text(json.dumps(dict(goal_speedup=20, results=results), indent=2) + "\n")
    os.replace(tmp, out / "reference.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
