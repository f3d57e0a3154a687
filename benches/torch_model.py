"""PyTorch counterpart of `circuitdiff bench`: the same measurements with HF transformers.

usage: torch_model.py MODEL_DIR [GGUF_FILE] --threads N [--seq-len 256] [--gen-tokens 64] [--score-only]
Prints JSON with forward_tokens_per_s, generation_tokens_per_s, differentiable_pass_s
(per-path forward + backward to every probe, as tests/reference/hf_model.py defines it) and
score_s_per_sample (that pass plus the edge-score product S = -A G^T in float32, masked).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
from hf_model import per_path_forward  # noqa: E402


def timed(repeat, f):
    return timed_beside(repeat, f, lambda: 0.0)[0]


def timed_beside(repeat, f, between):
    """Median time of f over `repeat` runs after a warm-up, and the median of what `between`
    measures after each timed run (outside its time)."""
    f()
    ts, others = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
        others.append(between())
    return statistics.median(ts), statistics.median(others)


A = torch.randn(1024, 1024)
B = torch.randn(1024, 1024)


def matmul_gflop_per_s():
    """Rate of a 1024^3 float32 matmul at the current thread count, as `circuitdiff bench`
    measures candle's (between the scoring runs)."""
    return 2 * 1024**3 / timed(10, lambda: A @ B) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("gguf", nargs="?")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--score-only", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    kw = {"dtype": torch.float32, "attn_implementation": "eager"}
    if a.gguf:
        kw["gguf_file"] = a.gguf
    model = AutoModelForCausalLM.from_pretrained(a.model, **kw).eval()
    vocab = model.config.vocab_size
    ids = [((i * 2654435761) % 2**32 >> 7) % vocab for i in range(a.seq_len)]
    x = torch.tensor([ids])
    k = max(a.seq_len // 20, 1)
    p0 = a.seq_len - k
    nl = model.config.num_hidden_layers
    src = torch.arange(1 + 2 * nl)
    dst = torch.tensor([1 + 2 * (j // 4) + (j % 4 == 3) for j in range(4 * nl)] + [2 * nl + 1])
    mask = (src[:, None] < dst[None, :]).float()

    def score():
        # The sample is ids[:p0] + answer ids[p0:]; input = all but the last answer token.
        inp = x[:, :-1]
        logits, probes, sources = per_path_forward(model, inp, torch.float32)
        lp = torch.log_softmax(logits[p0 - 1:], dim=-1)
        loss = -lp[torch.arange(k), x[0, p0:]].mean()
        grads = torch.autograd.grad(loss, probes)
        A = torch.stack([s_[0].detach().reshape(-1) for s_ in sources])
        G = torch.stack([g[0].reshape(-1) for g in grads])
        return -(A @ G.T) * mask

    s_time, rate = timed_beside(a.repeat, score, matmul_gflop_per_s)
    where = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
             "matmul_gflop_per_s": rate}
    if a.score_only:
        print(json.dumps({
            "impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
            "seq_len": a.seq_len, "score_s_per_sample": s_time, **where,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }, indent=2))
        return

    def fwd():
        with torch.no_grad():
            model(x)

    forward = timed(a.repeat, fwd)
    prompt = x[:, :16]

    def gen():
        with torch.no_grad():
            model.generate(prompt, max_new_tokens=a.gen_tokens, min_new_tokens=a.gen_tokens,
                           do_sample=False, pad_token_id=0)

    generation = timed(a.repeat, gen)
    targets = x[0, p0:]

    def diff():
        logits, probes, _ = per_path_forward(model, x, torch.float32)
        lp = torch.log_softmax(logits[p0 - 1:a.seq_len - 1], dim=-1)
        loss = -lp[torch.arange(k), targets].mean()
        torch.autograd.grad(loss, probes)

    d = timed(a.repeat, diff)
    print(json.dumps({
        "impl": "pytorch", "torch": torch.__version__, "threads": a.threads,
        "seq_len": a.seq_len,
        "forward_tokens_per_s": a.seq_len / forward,
        "generation_tokens_per_s": a.gen_tokens / generation,
        "differentiable_pass_s": d,
        "score_s_per_sample": s_time, **where,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }, indent=2))


if __name__ == "__main__":
    main()
