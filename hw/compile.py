"""Compile a streamlined BitLens graph into a FINN-architecture accelerator.

graph (qonnx) -> layer IR (Thresholding / SWG / MVAU / Pool) -> folding (given or chosen) -> analytic estimates
-> RTL folder: units, generated top `bitlens_top` (FINN port names), memory files, manifest.

    python -m bitlens compile --model tfc-w1a1 --board ulx3s [--folding F.json] [--target-fps N]
"""
import json
from pathlib import Path

from hw.boards import DEFAULT_BOARD, get_board
from hw.emit import write_rtl
from hw.errors import FitError
from hw.estimate import _fit_message, estimate, fits
from hw.folding import apply_folding, choose_folding, folding_dict, load_folding
from hw.ir import read_graph
from model import publish


def compile_graph(onnx_path, out_dir, board=DEFAULT_BOARD, folding=None, target_fps=None) -> dict:
    """Graph -> RTL folder. Returns {"manifest", "estimates", "folding", "out_dir"}."""
    b = get_board(board) if isinstance(board, str) else board
    graph = read_graph(onnx_path)
    fold = load_folding(folding)
    if fold is not None:
        apply_folding(graph, fold)
        est = estimate(graph, b)
        if not fits(est, b):
            raise FitError(_fit_message(est, b))
    else:
        choose_folding(graph, b, target_fps)
        est = estimate(graph, b)
    if target_fps is not None:
        est["target_fps"] = target_fps
    out_dir = Path(out_dir)
    # built in a staging folder beside out_dir and swapped in whole: a failed or killed compile
    # leaves the previous complete folder (model.publish)
    with publish.staging(out_dir.parent, "hw") as stage:
        work = stage / out_dir.name
        work.mkdir()
        manifest = write_rtl(graph, work, est, b)
        fd = folding_dict(graph)
        publish.atomic_text(work / "folding.json", json.dumps(fd, indent=1))
        publish.atomic_text(work / "estimates.json", json.dumps(est, indent=1))
    return dict(manifest=manifest, estimates=est, folding=fd, out_dir=str(out_dir), graph=graph)
