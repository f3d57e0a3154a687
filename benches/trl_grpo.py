"""TRL's GRPOTrainer on the same run as `circuitdiff lab tune` in benches/grpo.sh.

usage: trl_grpo.py MODEL_DIR DATASET --threads N --steps S [--questions 3] [--group 5]
       [--max-new-tokens 40] [--lora-rank 2] [--lora-alpha 4] [--lr 5e-4] [--beta 0.04]
       [--eval-questions 1] [--micro-batch ROWS] [--seed 1]
       trl_grpo.py --convert GGUF OUT_DIR   (the GGUF dequantised to a float32 Hugging Face folder)

Both tools train the same float32 folder (transformers will not train a GGUF it loaded), with
LoRA on every linear layer, the reference policy the model with its adapters disabled (TRL's
default with PEFT), one update per step on 3 questions × 5 sampled answers at temperature 1
(with --micro-batch, their gradients accumulated over passes of that many rows).
The reward is 1 when the last number of the answer equals the reference. Prints JSON: each
step's wall time (generation, scoring, backward and the optimiser step), the median over the
steps after the first, the mean completion length and the process's peak RSS.
"""

import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer


class StepTimes(TrainerCallback):
    """Wall time of each optimiser step, from its start to its end."""

    def __init__(self):
        self.times = []
        self.start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def last_number(text):
    numbers = re.findall(r"-?\d+", text.replace(",", ""))
    return numbers[-1] if numbers else None


def convert(gguf, out):
    """Write `gguf`, dequantised by transformers, as a float32 Hugging Face folder."""
    d, f = os.path.split(os.path.abspath(gguf))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    # Loaded from a GGUF, the model counts as quantized and refuses to be saved or trained.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def main():
    if sys.argv[1:2] == ["--convert"]:
        convert(*sys.argv[2:4])
        return
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--questions", type=int, default=3)
    p.add_argument("--group", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--lora-rank", type=int, default=2)
    p.add_argument("--lora-alpha", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--eval-questions", type=int, default=1)
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    rows = [json.loads(line) for line in open(a.dataset) if line.strip()]
    train = rows[a.eval_questions :]
    data = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]} for r in train]
    )

    def reward(completions, answer, **kwargs):
        return [float(last_number(c[0]["content"]) == str(x)) for c, x in zip(completions, answer)]

    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    rows_per_step = a.questions * a.group
    micro = a.micro_batch or rows_per_step
    if rows_per_step % micro:
        sys.exit(f"--micro-batch {micro} does not divide the {rows_per_step} rows of a step")
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(
            output_dir=out,
            use_cpu=True,
            max_steps=a.steps,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=rows_per_step // micro,
            generation_batch_size=rows_per_step,
            num_generations=a.group,
            max_completion_length=a.max_new_tokens,
            temperature=1.0,
            top_p=1.0,
            learning_rate=a.lr,
            beta=a.beta,
            epsilon=0.2,
            loss_type="grpo",
            num_iterations=1,
            seed=a.seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
        )
        lora = LoraConfig(
            r=a.lora_rank,
            lora_alpha=a.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        times = StepTimes()
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward,
            args=cfg,
            train_dataset=data,
            processing_class=tok,
            peft_config=lora,
            callbacks=[times],
        )
        trainer.train()
    lengths = [r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r]
    json.dump(
        {
            "tool": "trl",
            "threads": a.threads,
            "micro_batch": micro,
            "step_s": times.times,
            "median_step_s": statistics.median(times.times[1:] or times.times),
            "mean_completion_tokens": statistics.mean(lengths) if lengths else None,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
