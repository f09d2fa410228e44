"""Whole-accelerator cocotb testbench: any RTL folder with FINN's port names and a manifest.json.

Images are streamed in chunks through the stream wrapper; every output beat is compared with the
expected accumulators; the steady-state cycles per image come from the cycle stamps of the image
completions inside each chunk (after the first interval, while the pipeline's FIFOs fill, when the
chunk has three or more images)."""
import time

import numpy as np

from hw import units as U
from hw.manifest import MANIFEST_KEYS, ManifestError, read_manifest  # noqa: F401 (re-exported)
from sim import cocotb_env as E
from sim.top_run import begin_test, run_stream_test, write_result

try:
    import cocotb
except ImportError:
    cocotb = None

def image_words(images, m):
    flat = np.asarray(images, dtype=np.int64).reshape(len(images), -1)
    need = m["in_beats"] * m["in_elems_per_beat"]
    if flat.shape[1] != need:
        raise ManifestError(f"images have {flat.shape[1]} elements, the accelerator takes {need} per image")
    return U.pack_beats(flat.reshape(-1), m["in_elems_per_beat"], m["in_elem_bits"])


def decode_outputs(words, m):
    vals = U.unpack_beats(words, m["out_elems_per_beat"], m["out_elem_bits"], bool(m["out_signed"]))
    return vals.reshape(-1, m["out_beats"] * m["out_elems_per_beat"])


def run_top(rtl_dir, images, expected, work_dir, simulator=None, chunk=500, idle_level=0, bp_level=0,
            progress=True, keep_outputs=False):
    """Simulate the accelerator in rtl_dir on uint8 images; returns the result dict (with the
    decoded output accumulators under "outputs" when keep_outputs)."""
    def launch(m, rtl_dir, work, run_dir, cfg):
        c = cfg["chunk"]
        wrap = E.write_wrapper(work / "bl_tb_wrap.v", m["top"], {}, m["in_width"], m["out_width"],
                               c * m["in_beats"], c * m["out_beats"], out_beats=m["out_beats"], top_ports=True)
        return E.run_cocotb([rtl_dir / f for f in m["files"]] + [wrap], "bl_tb_wrap", "sim.tb_top",
                            work / "sim_build", simulator=simulator, config=cfg, test_dir=run_dir,
                            test_log=not progress, extra_env={"COCOTB_LOG_LEVEL": "WARNING"} if progress else None)
    return run_stream_test(rtl_dir, images, expected, work_dir, "run", chunk, idle_level, bp_level, progress,
                           keep_outputs, launch, simulator)


if cocotb is not None:
    @cocotb.test()
    async def top_stream(dut):
        cfg, m, images, expected, res, bar = begin_test()
        n, chunk = len(images), cfg["chunk"]
        ii = max(1, int(m["analytic_ii"]))
        tally = E.ChunkTally(keep=bool(cfg.get("outputs")))
        await E.reset_wrapper(dut)
        t_stream = time.time()
        try:
            for start in range(0, n, chunk):
                imgs = images[start:start + chunk]
                words = image_words(imgs, m)
                outs, stamps = await E.stream_chunk(
                    dut, words, len(imgs) * m["out_beats"], idle_level=cfg["idle_level"],
                    bp_level=cfg["bp_level"], stall_cycles=max(20000, 20 * ii), step=min(max(256, 4 * ii), 1 << 16),
                    progress=bar, out_beats=m["out_beats"])
                tally.add(start, decode_outputs(outs, m), expected[start:start + chunk], stamps)
        except E.StreamStall as e:
            res["stall"] = str(e)
        finally:
            if bar is not None:
                bar.close()
        # wall time of the streaming alone: the build and the simulator's start are not in it
        res["stream_seconds"] = round(time.time() - t_stream, 4)
        res["simulated_cycles"] = int(dut.cycle.value)
        res["harness"] = "cocotb-stream"
        tally.summarise(res, ii)
        res["equal"] = not tally.bad and res["stall"] is None
        write_result(cfg, res, tally.outputs())
        assert res["stall"] is None, res["stall"]
        assert not tally.bad, f"{len(tally.bad)} of {n} images differ; first: {res.get('first_mismatch')}"
