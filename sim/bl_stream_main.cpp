// Verilator main for sim/bl_stream_tb.v built with -DBL_EXT_CLOCK (sim/tb_cpp.py builds and runs it).
//
//   bl_stream <chunks> [idle_level] [bp_level] [stall_cycles] [progress_ms]
//
// Chunk k (1-based) is read from tb_in_<k>.hex with its beat counts from tb_plan.txt (one line
// "n_in n_out" per chunk); the wrapper's outputs are renamed to tb_out_<k>.hex / tb_stamp_<k>.hex.
// The clock is toggled here, so between chunks no other code runs than the model's eval().
// Lines on stdout (flushed), read by Python for its progress bar and its checks:
//   progress <chunk> <output beats of this chunk so far> <total cycles>
//   chunk <k> <out beats> <chunk cycles>
//   stall <k> <in_ptr> <out_ptr> <cycles without movement>
//   end <total cycles> <cpu seconds>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "Vbl_stream_tb.h"
#include "verilated.h"

double sc_time_stamp() { return 0; }

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s <chunks> [idle_level] [bp_level] [stall_cycles] [progress_ms]\n", argv[0]);
        return 2;
    }
    const int chunks = std::atoi(argv[1]);
    const unsigned idle = argc > 2 ? std::atoi(argv[2]) : 0;
    const unsigned bp = argc > 3 ? std::atoi(argv[3]) : 0;
    const unsigned long long stall = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 20000ULL;
    const long progress_ms = argc > 5 ? std::atol(argv[5]) : 500;

    std::vector<unsigned> n_in(chunks + 1), n_out(chunks + 1);
    FILE* plan = std::fopen("tb_plan.txt", "r");
    if (!plan) { std::fprintf(stderr, "no tb_plan.txt\n"); return 2; }
    for (int k = 1; k <= chunks; ++k) {
        if (std::fscanf(plan, "%u %u", &n_in[k], &n_out[k]) != 2) {
            std::fprintf(stderr, "tb_plan.txt: chunk %d missing\n", k);
            return 2;
        }
    }
    std::fclose(plan);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vbl_stream_tb>(ctx.get());
    top->chunk = 0;
    top->n_in = 0;
    top->n_out = 0;
    top->idle_level = idle & 15;
    top->bp_level = bp & 15;
    top->ap_clk = 0;
    top->eval();
    auto tick = [&]() {
        top->ap_clk = 1;
        top->eval();
        top->ap_clk = 0;
        top->eval();
    };
    const std::clock_t cpu0 = std::clock();
    for (int i = 0; i < 64 && !top->ap_rst_n; ++i) tick();
    if (!top->ap_rst_n) { std::fprintf(stderr, "reset never released\n"); return 2; }

    using wall = std::chrono::steady_clock;
    auto next_report = wall::now() + std::chrono::milliseconds(progress_ms);
    unsigned long long total = 0;
    int rc = 0;
    for (int k = 1; k <= chunks && rc == 0; ++k) {
        const std::string in = "tb_in_" + std::to_string(k) + ".hex";
        std::remove("tb_in.hex");
        if (std::rename(in.c_str(), "tb_in.hex") != 0) {
            std::fprintf(stderr, "cannot open %s\n", in.c_str());
            return 2;
        }
        std::remove("tb_out.hex");
        std::remove("tb_stamp.hex");
        top->n_in = n_in[k];
        top->n_out = n_out[k];
        top->chunk = k;
        tick();                                  // the wrapper loads tb_in.hex on this edge
        unsigned last_in = top->in_ptr, last_out = top->out_ptr;
        unsigned long long still = 0, c0 = top->cycle;
        while (!top->done) {
            for (int i = 0; i < 1024 && !top->done; ++i) tick();
            if (top->in_ptr != last_in || top->out_ptr != last_out) {
                last_in = top->in_ptr;
                last_out = top->out_ptr;
                still = 0;
            } else if ((still += 1024) >= stall) {
                std::printf("stall %d %u %u %llu\n", k, (unsigned)top->in_ptr, (unsigned)top->out_ptr, still);
                rc = 3;
                break;
            }
            if (wall::now() >= next_report) {
                std::printf("progress %d %u %llu\n", k, (unsigned)top->out_ptr, total + (top->cycle - c0));
                std::fflush(stdout);
                next_report = wall::now() + std::chrono::milliseconds(progress_ms);
            }
        }
        if (rc) break;
        total += top->chunk_cycles;
        std::rename("tb_out.hex", ("tb_out_" + std::to_string(k) + ".hex").c_str());
        std::rename("tb_stamp.hex", ("tb_stamp_" + std::to_string(k) + ".hex").c_str());
        std::printf("chunk %d %u %llu\n", k, (unsigned)top->out_ptr, (unsigned long long)top->chunk_cycles);
        std::fflush(stdout);
    }
    const double cpu = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
    std::printf("end %llu %.3f\n", total, cpu);
    std::fflush(stdout);
    top->final();
    return rc;
}
