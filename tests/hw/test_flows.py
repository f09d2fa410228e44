"""hw/ flows: UART board top (cocotb, bit-level), ECP5 synth + place & route + pack, synth_xilinx
resource parse, FINN build folder, hw.build CLI errors.

A tiny hand-written accelerator stands in for the compiled network: 12-byte images (3 beats of 4
UINT8), 6 signed 13-bit "class scores" acc_c = sum_i x_i * w(c, i), w = +1 if (c + i%4) % 3 == i//4
else -1, streamed as 3 beats of 2 elements, with back-pressure on its input.
"""
import json
import os
import py_compile
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bitlens.cli import build as build_cli
from bitlens.cli import host as host_cli
from model import paths
from tests.hw_graphs import make_mlp, run_qonnx
from tests.nets import export_to, randomise_bn

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "test-flows"       # yowasp tools cannot see pytest's tmp_path
PY = sys.executable

TINY = dict(in_width=32, in_elem_bits=8, in_elems_per_beat=4, in_beats=3, out_width=32, out_elem_bits=13,
            out_elems_per_beat=2, out_beats=3, out_signed=True, analytic_ii=6, clock_mhz=25.0)
N_CLASSES = TINY["out_beats"] * TINY["out_elems_per_beat"]
IMG_BYTES = TINY["in_beats"] * TINY["in_width"] // 8

TINY_TOP = r"""`timescale 1ns/1ps
// test stand-in for the compiled accelerator (see tests/hw/test_flows.py)
module bitlens_top (
    input  wire        ap_clk,
    input  wire        ap_rst_n,
    input  wire [31:0] s_axis_0_tdata,
    input  wire        s_axis_0_tvalid,
    output wire        s_axis_0_tready,
    output wire [31:0] m_axis_0_tdata,
    output wire        m_axis_0_tvalid,
    input  wire        m_axis_0_tready
);
    reg [77:0] accs;
    reg [1:0] beat;
    reg [1:0] obeat;
    reg emit;
    reg [2:0] stall;       // back-pressure: input refused 3 cycles out of 8
    wire [77:0] nxt;
    genvar c;
    generate for (c = 0; c < 6; c = c + 1) begin : g
        reg [12:0] d;
        integer k;
        always @* begin
            d = accs[c*13 +: 13];
            for (k = 0; k < 4; k = k + 1)
                if (((c + k) % 3) == beat)
                    d = d + {5'd0, s_axis_0_tdata[k*8 +: 8]};
                else
                    d = d - {5'd0, s_axis_0_tdata[k*8 +: 8]};
        end
        assign nxt[c*13 +: 13] = d;
    end endgenerate
    assign s_axis_0_tready = !emit && stall < 3'd5;
    assign m_axis_0_tvalid = emit;
    assign m_axis_0_tdata = {6'd0, accs[obeat*26 +: 26]};
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            accs <= 78'd0; beat <= 2'd0; obeat <= 2'd0; emit <= 1'b0; stall <= 3'd0;
        end else begin
            stall <= stall + 1'b1;
            if (s_axis_0_tvalid && s_axis_0_tready) begin
                accs <= nxt;
                beat <= beat == 2'd2 ? 2'd0 : beat + 1'b1;
                if (beat == 2'd2) emit <= 1'b1;
            end
            if (emit && m_axis_0_tready) begin
                obeat <= obeat == 2'd2 ? 2'd0 : obeat + 1'b1;
                if (obeat == 2'd2) begin
                    emit <= 1'b0;
                    accs <= 78'd0;
                end
            end
        end
    end
endmodule
"""


def tiny_expected(img):
    img = np.asarray(img, np.int64)
    i = np.arange(IMG_BYTES)
    w = np.array([[1 if (c + i_ % 4) % 3 == i_ // 4 else -1 for i_ in i] for c in range(N_CLASSES)])
    return w @ img


def write_tiny_rtl(folder: Path) -> Path:
    """A compile_graph-shaped folder: rtl/bitlens_top.v + rtl/manifest.json."""
    rtl = folder / "rtl"
    rtl.mkdir(parents=True, exist_ok=True)
    (rtl / "bitlens_top.v").write_text(TINY_TOP)
    (rtl / "manifest.json").write_text(json.dumps({"top": "bitlens_top", "files": ["bitlens_top.v"], **TINY}))
    return rtl


# ----------------------------------------------------------------------------- cocotb side
CLKS_PER_BIT = 8
IDLE_CLKS = 400
CLK_NS = 10


async def _uart_send(dut, data, bit_ns):
    from cocotb.triggers import Timer
    for b in data:
        for bit in [0] + [(b >> k) & 1 for k in range(8)] + [1]:
            dut.uart_rx.value = bit
            await Timer(bit_ns, unit="ns")


async def _uart_monitor(dut, out, bit_ns):
    """Decode the wrapper's TX line at the bit level: each byte must have a 1 stop bit."""
    from cocotb.triggers import FallingEdge, Timer
    while True:
        await FallingEdge(dut.uart_tx)
        await Timer(bit_ns // 2, unit="ns")
        assert int(dut.uart_tx.value) == 0, "start bit glitch"
        b = 0
        for k in range(8):
            await Timer(bit_ns, unit="ns")
            b |= int(dut.uart_tx.value) << k
        await Timer(bit_ns, unit="ns")
        assert int(dut.uart_tx.value) == 1, "missing stop bit"
        out.append(b)


def _decode(resp):
    ebytes = (TINY["out_elem_bits"] + 7) // 8
    accs = [int.from_bytes(bytes(resp[k * ebytes:(k + 1) * ebytes]), "little", signed=True)
            for k in range(N_CLASSES)]
    return accs, resp[N_CLASSES * ebytes]


TB_CONFIG = os.environ.get("BITLENS_TB_CONFIG")
TB_MODE = json.loads(Path(TB_CONFIG).read_text()).get("mode") if TB_CONFIG else None
# per-class logit scale and bias for the rank-ROM variant: they change the argmax of some images
TINY_SCALE = [0.5, 1.0, 0.25, 2.0, 1.0, 0.75]
TINY_BIAS = [100.0, 0.0, 300.0, -500.0, 0.0, 40.0]


def tiny_class(acc, ranked):
    from hw.bitstream import logits_f32
    return int(np.argmax(logits_f32(acc, TINY_SCALE, TINY_BIAS) if ranked else acc))

try:
    import cocotb

    @cocotb.test(skip=TB_MODE != "tiny")
    async def uart_roundtrip(dut):
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles, Timer
        cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
        dut.uart_rx.value = 1
        dut.locked.value = 0
        got = []
        cocotb.start_soon(_uart_monitor(dut, got, CLKS_PER_BIT * CLK_NS))
        ranked = json.loads(Path(TB_CONFIG).read_text())["ranked"]
        # the host's baud is 1.5 % slow, as a real FTDI divider may be
        host_bit = int(CLKS_PER_BIT * CLK_NS * 1.015)
        resp_len = N_CLASSES * 2 + 1
        rng = random.Random(7)
        imgs = [[255] * IMG_BYTES, [0] * IMG_BYTES] + [[rng.randrange(256) for _ in range(IMG_BYTES)]
                                                        for _ in range(3)]
        # until the PLL locks the top is held in reset: an image sent meanwhile is not answered
        await _uart_send(dut, imgs[2], host_bit)
        await ClockCycles(dut.clk, 40 * CLKS_PER_BIT * 10)
        assert not got, "response while the PLL was unlocked"
        dut.locked.value = 1
        await ClockCycles(dut.clk, 40)

        async def expect(img):
            t = 0
            while len(got) < resp_len:
                await ClockCycles(dut.clk, 50)
                t += 50
                assert t < 40 * resp_len * CLKS_PER_BIT * 10, f"no response (got {len(got)} bytes)"
            resp = [got.pop(0) for _ in range(resp_len)]
            accs, cls = _decode(resp)
            exp = tiny_expected(img)
            assert accs == list(exp), f"accumulators {accs} != {list(exp)}"
            assert cls == tiny_class(exp, ranked), f"class {cls} != {tiny_class(exp, ranked)}"
            await ClockCycles(dut.clk, 4)
            assert int(dut.led.value) & 0xF == cls & 0xF
            assert (int(dut.led.value) >> 7) & 1 == 0, "error LED lit"

        for img in imgs:
            await _uart_send(dut, img, host_bit)
            await expect(img)
        # a host that dies mid-image: after the idle timeout the next image is read correctly
        await _uart_send(dut, imgs[2][:5], host_bit)
        await ClockCycles(dut.clk, IDLE_CLKS + 100)
        assert not got, "response to a partial image"
        await _uart_send(dut, imgs[3], host_bit)
        await expect(imgs[3])
        # two images back to back (full duplex): both answered in order
        await _uart_send(dut, imgs[4] + imgs[2], host_bit)
        await expect(imgs[4])
        await expect(imgs[2])
        await Timer(1, unit="us")

    @cocotb.test(skip=TB_MODE != "model")
    async def uart_model_images(dut):
        """The board top around a compiled model: accumulators over the UART equal the reference."""
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles
        cfg = json.loads(Path(TB_CONFIG).read_text())
        cpb, rlen = cfg["clks_per_bit"], cfg["resp_len"]
        cocotb.start_soon(Clock(dut.clk, CLK_NS, unit="ns").start())
        dut.uart_rx.value = 1
        dut.locked.value = 1
        got = []
        cocotb.start_soon(_uart_monitor(dut, got, cpb * CLK_NS))
        await ClockCycles(dut.clk, 40)
        for k, (data, exp) in enumerate(zip(cfg["images"], cfg["expected"])):
            await _uart_send(dut, bytes.fromhex(data), cpb * CLK_NS)
            waited = 0
            while len(got) < rlen:
                await ClockCycles(dut.clk, 200)
                waited += 200
                assert waited < 20 * rlen * cpb * 10 + 20000, f"image {k}: {len(got)} of {rlen} bytes"
            resp = bytes(got[:rlen])
            del got[:rlen]
            eby = (rlen - 1) // len(exp)
            accs = [int.from_bytes(resp[i * eby:(i + 1) * eby], "little", signed=cfg["signed"])
                    for i in range(len(exp))]
            assert accs == exp, f"image {k}: {accs} != {exp}"
            assert resp[-1] == cfg["classes"][k], f"image {k}: class {resp[-1]} != {cfg['classes'][k]}"
except ImportError:
    pass


# ----------------------------------------------------------------------------- pytest side
@pytest.mark.parametrize("ranked", [False, True], ids=["raw-argmax", "rank-rom"])
def test_uart_wrapper_cocotb(ranked):
    from hw.bitstream import RTL, WRAPPER_FILES, wrapper_params, write_rank_rom
    from sim.cocotb_env import available, run_cocotb, verilog_string
    if not available("icarus"):
        pytest.skip("iverilog not installed")
    work = WORK / f"uart_tb_{'rank' if ranked else 'raw'}"
    rtl = write_tiny_rtl(work)
    manifest = json.loads((rtl / "manifest.json").read_text())
    params = wrapper_params(manifest, 1e9 / CLK_NS, int(1e9 / CLK_NS / CLKS_PER_BIT))
    params["IDLE_CLKS"] = IDLE_CLKS
    assert params["CLKS_PER_BIT"] == CLKS_PER_BIT
    if ranked:
        params.update(write_rank_rom(work / "rank.mem", manifest, TINY_SCALE, TINY_BIAS, max_kbit=1024),
                      RANK_FILE=verilog_string(work / "rank.mem"))
    sources = [RTL / f for f in WRAPPER_FILES] + [rtl / "bitlens_top.v"]
    run_cocotb(sources, "board_top_ecp5", "tests.hw.test_flows", work / "sim", parameters=params,
               simulator="icarus", config={"mode": "tiny", "ranked": ranked})


def test_rank_table_orders_logits():
    """Rank ROM contents: comparing ranks of (class, acc) pairs is comparing their float32 logits,
    and the scale/bias above make rank-argmax differ from raw argmax on the test images."""
    from hw.bitstream import logits_f32, rank_table, write_rank_rom
    WORK.mkdir(parents=True, exist_ok=True)
    ranks, bits = rank_table(TINY, TINY_SCALE, TINY_BIAS)
    assert len(ranks) == N_CLASSES << 13 and bits == int(ranks.max()).bit_length()
    rng = np.random.default_rng(5)
    for _ in range(200):
        c = rng.integers(0, N_CLASSES, 2)
        v = rng.integers(-4096, 4096, 2)
        lg = logits_f32(v, np.array(TINY_SCALE)[c], np.array(TINY_BIAS)[c])
        r = ranks[c * 8192 + (v & 8191)]
        assert np.sign(lg[0] - lg[1]) == np.sign(int(r[0]) - int(r[1]))
    imgs = [np.random.default_rng(7 + k).integers(0, 256, IMG_BYTES) for k in range(20)]
    assert any(tiny_class(tiny_expected(i), True) != tiny_class(tiny_expected(i), False) for i in imgs)
    big = dict(TINY, out_elem_bits=16)
    assert rank_table(big, TINY_SCALE, TINY_BIAS) is None
    assert write_rank_rom(WORK / "rank_small.mem", TINY, TINY_SCALE, TINY_BIAS, max_kbit=16) is None


@pytest.mark.slow
def test_uart_wrapper_on_compiled_model():
    """Board top + the compiled TFC (build/tfc-w1a1/ulx3s/hw from `make bitstream`): two test
    images and the all-255 / all-0 extremes over a bit-level UART against qonnx execution."""
    from hw.bitstream import RTL, WRAPPER_FILES, load_manifest, logits_f32, wrapper_params, write_rank_rom
    from hw.host import encode_image, output_affine, reference_accs, response_length
    from sim.cocotb_env import available, run_cocotb, verilog_string
    if not available("icarus"):
        pytest.skip("iverilog not installed")
    rtl = ROOT / "build" / "tfc-w1a1" / "ulx3s" / "hw" / "rtl"
    streamlined = ROOT / "build" / "tfc-w1a1" / "streamlined.onnx"
    if not (rtl / "manifest.json").exists() or not streamlined.exists():
        pytest.skip("run `make bitstream MODEL=tfc-w1a1` first")
    from model.data import load_split
    m = load_manifest(rtl)
    x = load_split("mnist", "test")[0][:2]
    imgs = np.concatenate([x, np.full_like(x[:1], 255), np.zeros_like(x[:1])])
    exp = reference_accs(streamlined, imgs)
    cpb = 6
    params = wrapper_params(m, 1e9 / CLK_NS, int(1e9 / CLK_NS / cpb))
    scale, bias = output_affine(streamlined)
    run_dir = WORK / "uart_tfc" / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    params.update(write_rank_rom(run_dir / "rank.mem", m, scale, bias), RANK_FILE=verilog_string("rank.mem"))
    logits = logits_f32(exp, scale, bias)
    cfg = {"mode": "model", "clks_per_bit": cpb, "resp_len": response_length(m), "signed": bool(m["out_signed"]),
           "images": [encode_image(i, m).hex() for i in imgs], "expected": exp.tolist(),
           "classes": [int(c) for c in np.argmax(logits, axis=1)]}
    sources = [rtl / f for f in m["files"]] + [RTL / f for f in WRAPPER_FILES]
    for mem in rtl.glob("*.mem"):          # $readmemh names are relative to the simulator's folder
        (run_dir / mem.name).write_bytes(mem.read_bytes())
    run_cocotb(sources, "board_top_ecp5", "tests.hw.test_flows", WORK / "uart_tfc" / "sim", parameters=params,
               simulator="icarus", config=cfg, test_dir=run_dir)


def test_pll_dividers():
    """ecppll's choices for the ULX3S' 25 MHz: VCO within 400..800 MHz, exact outputs, and a clear
    error for a frequency the PLL cannot make."""
    from hw.ecp5_pll import PllError, pll_config
    c = pll_config(25, 100)
    assert (c.clki_div, c.clkfb_div, c.clkop_div, c.f_out_mhz, c.vco_mhz) == (1, 4, 6, 100.0, 600.0)
    assert pll_config(25, 110).params() == {"CLKI_DIV": 5, "CLKFB_DIV": 22, "CLKOP_DIV": 5, "CLKOP_CPHASE": 2}
    with pytest.raises(PllError, match="cannot make 1000 MHz"):
        pll_config(25, 1000)


def test_uart_params_reject_bad_baud():
    from hw.bitstream import FlowError, uart_params
    assert uart_params(25e6, 1_000_000) == 25
    assert uart_params(25e6, 115200) == 217
    with pytest.raises(FlowError, match="rate error"):
        uart_params(25e6, 3_000_000)      # 8.33 clocks per bit


def test_ecp5_bitstream_tiny():
    from hw.bitstream import build_lattice
    from hw.boards import get_board
    work = WORK / "ecp5_tiny"
    rtl = write_tiny_rtl(work / "hw")
    for stale in ("bitstream.bit", "resources.json"):
        (work / stale).unlink(missing_ok=True)
    # the stand-in's adder chain is no pipelined accelerator: its PLL clock is asked for 50 MHz
    res = build_lattice(rtl, work, get_board("ulx3s"), freq_mhz=50)
    bit = (work / "bitstream.bit").read_bytes()
    assert len(bit) > 10_000 and bit[:2] == b"\xff\x00"        # ECP5 bitstream preamble
    saved = json.loads((work / "resources.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert saved["available"]["lut"] == 83640
    assert 100 < saved["used"]["lut"] < 5000 and 100 < saved["used"]["ff"] < 5000
    # the board top runs from the PLL (25 -> 50 MHz) and nextpnr times the PLL's output clock
    assert saved["clock"]["source"] == "PLL (EHXPLLL)" and saved["clock"]["accelerator_mhz"] == 50.0
    assert saved["target_mhz"] == 50.0 and saved["uart"]["clks_per_bit"] == 50
    assert saved["fmax_mhz"] >= 50 and saved["timing_met"]
    assert [c["constraint_mhz"] for c in saved["fmax_by_clock"].values()] == [50.0]
    lpf = (work / "board" / "ulx3s.lpf").read_text()
    assert 'LOCATE COMP "clk" SITE "G2"' in lpf and 'FREQUENCY PORT "clk" 25 MHZ' in lpf
    top = (work / "board" / "board_top.v").read_text()
    assert "bl_pll_ecp5" in top and ".CLKFB_DIV(2)" in top and ".CLKOP_DIV(12)" in top
    log = (work / "board" / "nextpnr.log").read_text()
    assert re.search(r"Max frequency for clock '[^']*u_pll\.clk_out': [0-9.]+ MHz \(PASS at 50\.00 MHz\)", log)


XILINX_TINY = """module bitlens_top (input ap_clk, input ap_rst_n, input [15:0] s_axis_0_tdata,
    input s_axis_0_tvalid, output s_axis_0_tready, output [31:0] m_axis_0_tdata, output m_axis_0_tvalid,
    input m_axis_0_tready);
    reg [31:0] acc; reg v;
    (* rom_style = "block" *) reg [7:0] mem [0:1023];
    reg [9:0] a; reg [7:0] q;
    initial $readmemh("rom.mem", mem);
    assign s_axis_0_tready = m_axis_0_tready;
    always @(posedge ap_clk) begin
        q <= mem[a];
        if (!ap_rst_n) begin acc <= 0; v <= 0; a <= 0; end
        else if (s_axis_0_tvalid && m_axis_0_tready) begin
            acc <= acc + s_axis_0_tdata[7:0] * s_axis_0_tdata[15:8] + q; v <= 1; a <= a + 1;
        end
    end
    assign m_axis_0_tdata = {q, acc[23:0]}; assign m_axis_0_tvalid = v;
endmodule
"""


def test_xilinx_stat_parse_and_fit():
    from hw.boards import get_board
    from hw.xilinx import DesignDoesNotFit, check_fit, parse_stat, synth_xilinx
    work = WORK / "xilinx_tiny"
    rtl = work / "rtl"
    rtl.mkdir(parents=True, exist_ok=True)
    (rtl / "bitlens_top.v").write_text(XILINX_TINY)
    rom = np.random.default_rng(1).integers(0, 256, 1024)
    (rtl / "rom.mem").write_text("".join(f"{v:02x}\n" for v in rom))     # found relative to rtl/
    (rtl / "manifest.json").write_text(json.dumps({"top": "bitlens_top", "files": ["bitlens_top.v"]}))
    board = get_board("pynq-z1")
    used = synth_xilinx(rtl, work / "xc7", board)
    stat = json.loads((work / "xc7" / "yosys_stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    assert used == parse_stat(stat, "xc7")
    assert used["dsp"] == cells.get("DSP48E1", 0) >= 1               # the 8x8 multiply
    assert used["bram"] >= 1                                           # the 8 kbit ROM
    assert used["ff"] == sum(cells.get(c, 0) for c in ("FDRE", "FDSE", "FDCE", "FDPE")) > 0 and used["lut"] >= 1
    assert used["lut"] == sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c)) + used["lut_mem"]
    check_fit(used, board)
    small = get_board("pynq-z1").__class__(**{**get_board("pynq-z1").__dict__, "dsp": 0, "lut": 1})
    with pytest.raises(DesignDoesNotFit, match=r"LUT \d+ > 1.*DSP \d+ > 0"):
        check_fit(used, small)


def test_xilinx_parse_ultrascale_cells():
    from hw.xilinx import parse_stat
    stat = {"design": {"num_cells_by_type": {"LUT6": 10, "LUT2": 5, "FDRE": 7, "FDSE": 1, "RAMB36E2": 2,
                                             "RAMB18E2": 1, "DSP48E2": 3, "RAM64M": 2, "SRLC32E": 4,
                                             "CARRY8": 2}}}
    u = parse_stat(stat, "xcup")
    assert (u["lut"], u["lut_mem"], u["ff"], u["bram"], u["dsp"]) == (15 + 8 + 4, 12, 8, 5, 3)


def _tiny_streamlined(path: Path):
    """A small streamlined graph (README contract): Reshape -> MatMul -> MultiThreshold -> XNOR ..."""
    return make_mlp(path, seed=3, hidden=(8, 8), classes=2, in_shape=(1, 2, 2, 1))


def test_finn_folder_contents():
    from hw.boards import get_board
    from hw.finn_folder import FINN_CONFIG_FIELDS, VERIFY_STEPS, finn_folding, write_finn_folder
    from qonnx.core.modelwrapper import ModelWrapper
    work = WORK / "finn_tiny"
    work.mkdir(parents=True, exist_ok=True)
    _tiny_streamlined(work / "streamlined.onnx")
    folding = {"Defaults": {}, "MVAU_0": {"PE": 2, "SIMD": 28}, "MVAU_1": {"PE": 1, "SIMD": 8},
               "SWG_0": {"SIMD": 3}, "Thresh_0": {"PE": 4}, "Thresh_in": {"PE": 2}}
    folder = write_finn_folder("tfc-w1a1", get_board("pynq-z1"), work / "finn", work / "streamlined.onnx",
                               folding, target_fps=100000, verify_images=5)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "build.py", "dataflow_build_config.json", "folding_config.json", "model.onnx",
                     "verify_expected_output.npy", "verify_input.npy"]
    # FINN's model: the streamlined graph up to acc_out, input flattened to (1, K), no Quant nodes
    m = ModelWrapper(str(folder / "model.onnx"))
    assert [o.name for o in m.graph.output] == ["acc_out"] and m.get_tensor_shape("global_in") == [1, 4]
    assert {n.op_type for n in m.graph.node} == {"MatMul", "MultiThreshold", "XnorPopcountMatMul"}
    x, y = np.load(folder / "verify_input.npy"), np.load(folder / "verify_expected_output.npy")
    assert x.shape == (5, 4) and y.shape == (5, 2) and x.dtype == np.float32
    assert np.array_equal(y, run_qonnx(work / "streamlined.onnx", x.reshape(5, 2, 2, 1)))
    cfg = json.loads((folder / "dataflow_build_config.json").read_text())
    assert set(cfg) <= FINN_CONFIG_FIELDS, set(cfg) - FINN_CONFIG_FIELDS
    for k in ("output_dir", "synth_clk_period_ns", "generate_outputs"):      # required, no default
        assert k in cfg
    assert cfg["board"] == "Pynq-Z1" and cfg["shell_flow_type"] == "vivado_zynq"
    assert cfg["synth_clk_period_ns"] == pytest.approx(10.0)
    assert {"bitfile", "pynq_driver", "deployment_package"} <= set(cfg["generate_outputs"])
    assert cfg["folding_config_file"] == "folding_config.json"
    assert cfg["minimize_bit_width"] is False and cfg["verify_steps"] == list(VERIFY_STEPS)
    assert cfg["verify_input_npy"] == "verify_input.npy"
    assert cfg["verify_expected_output_npy"] == "verify_expected_output.npy"
    fold = json.loads((folder / "folding_config.json").read_text())
    assert fold == finn_folding(folding)
    assert fold["MVAU_hls_0"] == {"PE": 2, "SIMD": 28} and fold["MVAU_hls_1"] == {"PE": 1, "SIMD": 8}
    assert fold["ConvolutionInputGenerator_rtl_0"] == {"SIMD": 3} and "MVAU_0" not in fold
    assert fold["Thresholding_rtl_0"] == fold["Thresholding_hls_0"] == {"PE": 2}
    assert not any(k.startswith("Thresh_") for k in fold)
    py_compile.compile(str(folder / "build.py"), cfile=str(work / "build.pyc"), doraise=True)
    src = (folder / "build.py").read_text()
    for needle in ("build_dataflow_cfg", "DataflowBuildConfig", "construct_from", "finn build"):
        assert needle in src, needle
    readme = (folder / "README.md").read_text()
    assert "run-docker.sh build_custom" in readme and "finn build" in readme and "finn-plus 1.6.1" in readme


def test_finn_graph_flattens_an_input_threshold_stage():
    """global_in (1,2,2,3) -> Thresh_in (per-channel, NHWC) -> Reshape (1,12) -> ...: FINN's graph
    takes (1,12) with the thresholds repeated per pixel, and computes the same accumulators."""
    import onnx
    from onnx import helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from hw.finn_folder import finn_graph
    work = WORK / "finn_thresh_in"
    work.mkdir(parents=True, exist_ok=True)
    path = make_mlp(work / "g.onnx", seed=5, hidden=(8, 8), classes=3, in_shape=(1, 2, 2, 3))
    m = ModelWrapper(str(path))
    reshape = next(n for n in m.graph.node if n.op_type == "Reshape")
    thr = np.array([[64, 193], [100, 150], [1, 255]], dtype=np.float32)     # UINT2 levels per channel
    m.set_initializer("Thresh_in_thresholds", thr)
    # the first layer now sums 2-bit levels: thresholds in that range
    t0 = next(n for n in m.graph.node if n.name == "Thresh_0").input[1]
    m.set_initializer(t0, np.sort(np.random.default_rng(1).integers(-4, 5, m.get_initializer(t0).shape), 1)
                      .astype(np.float32))
    m.graph.node.insert(0, helper.make_node("MultiThreshold", ["global_in", "Thresh_in_thresholds"], ["Thresh_in_out"],
                                            name="Thresh_in", domain="qonnx.custom_op.general",
                                            out_dtype="UINT2", data_layout="NHWC"))
    reshape.input[0] = "Thresh_in_out"
    m.graph.value_info.append(helper.make_tensor_value_info("Thresh_in_out", onnx.TensorProto.FLOAT, [1, 2, 2, 3]))
    from qonnx.core.datatype import DataType
    m.set_tensor_datatype("Thresh_in_out", DataType["UINT2"])
    m.save(str(work / "g_in.onnx"))
    f = finn_graph(work / "g_in.onnx")
    assert f.get_tensor_shape("global_in") == [1, 12] and f.get_initializer("Thresh_in_thresholds").shape == (12, 2)
    assert "Reshape" not in {n.op_type for n in f.graph.node}
    x = np.random.default_rng(0).integers(0, 256, (20, 2, 2, 3)).astype(np.float32)
    want = run_qonnx(work / "g_in.onnx", x)
    got = np.array([execute_onnx(f, {"global_in": im.reshape(1, 12)})["acc_out"].reshape(-1) for im in x])
    assert np.array_equal(got, want) and len(np.unique(want)) > 3


def _run_build(*args, env=None):
    return subprocess.run([PY, "-m", "bitlens", "build", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_cli_errors():
    r = _run_build("--model", "no-such-model-xyz", "--board", "ulx3s")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "make export MODEL=no-such-model-xyz" in r.stderr
    r = _run_build("--model", "tfc-w1a1", "--board", "de10-nano")
    assert r.returncode == 1 and "unknown board" in r.stderr and "ulx3s" in r.stderr and "pynq-z1" in r.stderr


def test_host_fails_cleanly_without_board():
    r = subprocess.run([PY, "-m", "bitlens", "host", "--port", "/dev/ttyUSB-none", "--model", "tfc-w1a1",
                        "--images", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0


def test_host_protocol_over_pty():
    """hw.host against an emulated board on a pseudo-terminal: the same wire format as the RTL."""
    import threading
    from hw.host import HostError, Serial, classify, decode_response, encode_image
    master, slave = os.openpty()
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, IMG_BYTES) for _ in range(4)] + [np.full(IMG_BYTES, 255)]

    def board():
        for _ in images:
            buf = b""
            while len(buf) < IMG_BYTES:
                buf += os.read(master, IMG_BYTES - len(buf))
            acc = tiny_expected(np.frombuffer(buf, np.uint8))
            os.write(master, b"".join(int(a).to_bytes(2, "little", signed=True) for a in acc)
                     + bytes([int(np.argmax(acc))]))

    t = threading.Thread(target=board, daemon=True)
    t.start()
    ser = Serial(os.ttyname(slave), 1_000_000)
    try:
        accs, cls = classify(ser, images, TINY, 1_000_000)
    finally:
        ser.close()
        os.close(slave)
        os.close(master)
    t.join(5)
    exp = np.stack([tiny_expected(i) for i in images])
    assert np.array_equal(accs, exp) and np.array_equal(cls, exp.argmax(1))
    assert (exp < 0).any()                           # signed decoding exercised
    # sub-byte elements pack from the least significant bit, beat by beat
    m2 = dict(in_elem_bits=2, in_elems_per_beat=8, in_beats=2, in_width=16)
    assert encode_image(np.array([1, 2, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0]), m2) == \
        bytes([0b00111001, 0b11000000, 0b00000001, 0])
    with pytest.raises(HostError, match="reply of 5 bytes"):
        decode_response(b"\x00" * 5, TINY)


def test_build_xilinx_orchestration(monkeypatch, capsys):
    """hw.build for a Xilinx board with the tiny RTL standing in for hw.compile: resources.json,
    FINN folder, exit 2 without FINN, and FINN's run-docker.sh called when FINN_ROOT has one."""
    import hw.build as B
    root = WORK / "buildroot"
    model = "tiny-w1a1"
    (root / model).mkdir(parents=True, exist_ok=True)
    _tiny_streamlined(root / model / "streamlined.onnx")       # the FINN folder's model comes from it
    calls = []

    def fake_compile(model_, board, folding, target_fps, out=None):
        out = Path(out) if out else root / model_ / board.name / "hw"     # hw.build passes its staging folder
        write_tiny_rtl(out)
        fold = {"Defaults": {}, "MVAU_0": {"PE": 1, "SIMD": 4}}
        (out / "folding.json").write_text(json.dumps(fold))
        calls.append((model_, board.name, folding, target_fps))
        return out, {"folding": fold}  # compile_graph's result carries the folding it wrote

    monkeypatch.setattr(paths, "BUILD", root)
    monkeypatch.setattr(B, "compile_rtl", fake_compile)
    monkeypatch.delenv("FINN_ROOT", raising=False)
    assert build_cli.main(["--model", model, "--board", "kv260", "--target-fps", "1000"]) == 2
    err = capsys.readouterr().err
    assert "run-docker.sh build_custom" in err and calls == [(model, "kv260", None, 1000.0)]
    res = json.loads((root / model / "kv260" / "resources.json").read_text())
    assert res["family"] == "xcup" and res["fits"] and res["available"]["lut"] == 117120
    assert 0 < res["used"]["lut"] < 5000 and res["fps_at_target"] == pytest.approx(100e6 / TINY["analytic_ii"])
    fold = json.loads((root / model / "kv260" / "finn" / "folding_config.json").read_text())
    assert fold == {"Defaults": {}, "MVAU_hls_0": {"PE": 1, "SIMD": 4}}
    cfg = json.loads((root / model / "kv260" / "finn" / "dataflow_build_config.json").read_text())
    assert cfg["board"] == "KV260_SOM" and cfg["target_fps"] == 1000
    # a FINN checkout: its run-docker.sh gets build_custom <folder>
    finn = WORK / "fake_finn"
    finn.mkdir(exist_ok=True)
    (finn / "run-docker.sh").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args.txt"\nexit 0\n')
    (finn / "run-docker.sh").chmod(0o755)
    from hw.finn_folder import run_finn
    assert run_finn(root / model / "kv260" / "finn", finn) == 0
    assert (finn / "args.txt").read_text().split() == ["build_custom", str(root / model / "kv260" / "finn")]


def test_host_cli_on_built_model_over_pty(capsys, tmp_path):
    """`python -m bitlens host` end to end on a compiled TFC (random weights, own build folder) against
    an emulated board that answers with the reference accumulators: classes printed, --check
    passes, the bytes sent are the encoded test images."""
    import threading
    import torch
    from hw import host
    from hw.compile import compile_graph
    from model.streamline import streamline
    from model.zoo import build
    d = tmp_path / "tfc-w1a1"
    (d / "ulx3s").mkdir(parents=True)
    torch.manual_seed(7)
    streamline(export_to(randomise_bn(build("tfc-w1a1"), seed=7), tmp_path / "q.onnx")).save(str(d / "streamlined.onnx"))
    compile_graph(d / "streamlined.onnx", d / "ulx3s" / "hw", "ulx3s", target_fps=20000)
    # the UART settings a bitstream build records; the emulated board needs nothing else
    (d / "ulx3s" / "resources.json").write_text(json.dumps({"uart": {"baud": 115200}}))
    from model.data import load_split
    m = json.loads((d / "ulx3s" / "hw" / "rtl" / "manifest.json").read_text())
    n = 3
    x, y = load_split("mnist", "test")
    ref = host.reference_accs(d / "streamlined.onnx", x[:n])
    nbytes = len(host.encode_image(x[0], m))
    eby = (m["out_elem_bits"] + 7) // 8
    master, slave = os.openpty()
    seen = []

    def board():
        for k in range(n):
            buf = b""
            while len(buf) < nbytes:
                buf += os.read(master, nbytes - len(buf))
            seen.append(buf)
            os.write(master, b"".join(int(a).to_bytes(eby, "little", signed=True) for a in ref[k]) + b"\x00")

    t = threading.Thread(target=board, daemon=True)
    t.start()
    try:
        rc = host_cli.main(["--port", os.ttyname(slave), "--model", "tfc-w1a1", "--images", str(n), "--check",
                        "--build-dir", str(tmp_path)])
    finally:
        os.close(slave)
        os.close(master)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert seen == [host.encode_image(i, m) for i in x[:n]]
    assert f"reference check: {n}/{n} images bit-exact" in out
    scale, bias = host.output_affine(d / "streamlined.onnx")
    from hw.bitstream import logits_f32
    for k, c in enumerate(np.argmax(logits_f32(ref, scale, bias), axis=1)):
        assert f"image {k}: class {c} (label {y[k]}" in out
