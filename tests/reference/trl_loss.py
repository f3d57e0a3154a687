"""TRL's GRPO and DPO losses on a fixed batch of log-probabilities and rewards, for the lab's
tests. Runs TRL's own loss code (trl==1.16.0, pinned in requirements.txt) on a stand-in
trainer whose model forward returns the given log-probabilities.

usage: trl_loss.py REQUEST.json OUT.safetensors

REQUEST: {"grpo": {"logp", "old", "ref", "mask": (B, T) lists, "rewards": (B,), "group": G,
                   "clip": eps, "beta": b, "max_completion_length": L},
          "dpo": {"chosen", "rejected": (B, T) per-token log-probs, zero outside the answer,
                  "ref_chosen", "ref_rejected": (B,) summed, "beta": b}}

Writes:
  grpo_advantages  (B,)  TRL's advantages: GRPOTrainer._generate_and_score_completions with
                         scale_rewards="group" (rewards minus the group mean, divided by
                         trl.trainer.utils.nanstd of the group + 1e-4); that method needs a model
                         and a generator, so its three lines are reproduced here with TRL's nanstd
  grpo_loss        ()    GRPOTrainer._compute_loss, loss_type="grpo"
  dr_grpo_loss     ()    GRPOTrainer._compute_loss, loss_type="dr_grpo"
  grpo_kl          ()    the KL TRL logs (its `kl` metric)
  dpo_loss         ()    DPOTrainer._compute_loss, loss_type="sigmoid"
"""

import json
import sys
from collections import defaultdict
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd


class Accelerator:
    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def stand_in(**fields):
    s = SimpleNamespace(
        accelerator=Accelerator(),
        model=SimpleNamespace(training=True),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        aux_loss_enabled=False,
    )
    for k, v in fields.items():
        setattr(s, k, v)
    return s


def grpo(req, loss_type):
    logp = torch.tensor(req["logp"], dtype=torch.float64)
    b, t = logp.shape
    rewards = torch.tensor(req["rewards"], dtype=torch.float64)
    g = req["group"]
    mean = rewards.view(-1, g).mean(dim=1).repeat_interleave(g)
    std = nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g)
    advantages = (rewards - mean) / (std + 1e-4)
    s = stand_in(
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=req["beta"],
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        loss_type=loss_type,
        epsilon_low=req["clip"],
        epsilon_high=req["clip"],
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        current_gradient_accumulation_steps=1,
        max_completion_length=req["max_completion_length"],
        _entropy_bonus_enabled=False,
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
    )
    mask = torch.tensor(req["mask"], dtype=torch.float64)
    inputs = {
        "prompt_ids": torch.zeros((b, 1), dtype=torch.long),
        "prompt_mask": torch.ones((b, 1), dtype=torch.long),
        "completion_ids": torch.zeros((b, t), dtype=torch.long),
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": torch.tensor(req["old"], dtype=torch.float64),
        "ref_per_token_logps": torch.tensor(req["ref"], dtype=torch.float64),
    }
    loss = GRPOTrainer._compute_loss(s, None, inputs)
    return advantages, loss, s._metrics["train"]["kl"][0]


def dpo(req):
    per_token = torch.tensor(req["chosen"] + req["rejected"], dtype=torch.float64)
    b2, t = per_token.shape
    outputs = SimpleNamespace(
        log_probs=per_token,
        entropy=torch.zeros_like(per_token),
        mean_logits=torch.zeros_like(per_token),
        is_top1=torch.zeros_like(per_token, dtype=torch.bool),
    )
    s = stand_in(
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=["sigmoid"],
        loss_weights=[1.0],
        use_weighting=False,
        label_smoothing=0.0,
        beta=req["beta"],
        _total_train_tokens=0,
        _tp_size=1,
    )
    # The completion mask covers the last t positions (one more than the log-probabilities).
    completion_mask = torch.ones((b2, t + 1), dtype=torch.long)
    inputs = {
        "input_ids": torch.zeros((b2, t + 1), dtype=torch.long),
        "attention_mask": torch.ones((b2, t + 1), dtype=torch.long),
        "completion_mask": completion_mask,
        "ref_chosen_logps": torch.tensor(req["ref_chosen"], dtype=torch.float64),
        "ref_rejected_logps": torch.tensor(req["ref_rejected"], dtype=torch.float64),
    }
    return DPOTrainer._compute_loss(s, lambda **kw: outputs, inputs, False)


def main():
    req = json.load(open(sys.argv[1]))
    adv, loss, kl = grpo(req["grpo"], "grpo")
    _, dr_loss, _ = grpo(req["grpo"], "dr_grpo")
    out = {
        "grpo_advantages": adv,
        "grpo_loss": loss.reshape(()),
        "dr_grpo_loss": dr_loss.reshape(()),
        "grpo_kl": torch.tensor(kl, dtype=torch.float64),
        "dpo_loss": dpo(req["dpo"]).reshape(()),
    }
    save_file({k: v.detach().double().contiguous() for k, v in out.items()}, sys.argv[2])


if __name__ == "__main__":
    main()
