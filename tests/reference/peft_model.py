"""LoRA adapters made with PEFT, and the logits of a base model with them, for circuitdiff's
adapter tests.

usage: peft_model.py REQUEST.json OUT.safetensors

REQUEST: {"base": dir, "adapter": dir, "lora": {LoraConfig keyword arguments}, "seed": s,
          "ids": [...] | null}

Makes a LoRA adapter of the model in `base` with PEFT (`get_peft_model`), gives lora_B random
values (PEFT starts B at zero, and an adapter of zeros changes nothing) and saves it into
`adapter` with `save_pretrained`; with "lora": null, reads the adapter already in `adapter`. With `ids`, loads the base again, applies the saved adapter
(`PeftModel.from_pretrained`) and writes:
  peft_logits    (T, V)  the adapter's own forward pass (W x + s B A x)
  merged_logits  (T, V)  the forward pass after `merge_and_unload()` (W + s B A)
  base_logits    (T, V)  the base model alone
Without `ids` it only writes the flag `made`.
"""

import json
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def load(path):
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    return model


def main():
    req = json.load(open(sys.argv[1]))
    torch.manual_seed(req.get("seed", 0))
    if req["lora"] is not None:
        peft = get_peft_model(load(req["base"]), LoraConfig(**req["lora"]))
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.2)
        peft.save_pretrained(req["adapter"])
    out = {"made": torch.ones(1)}
    if req.get("ids") is not None:
        ids = torch.tensor([req["ids"]])
        with torch.no_grad():
            out["base_logits"] = load(req["base"])(ids).logits[0].contiguous()
            model = PeftModel.from_pretrained(load(req["base"]), req["adapter"])
            model.eval()
            out["peft_logits"] = model(ids).logits[0].contiguous()
            merged = model.merge_and_unload()
            out["merged_logits"] = merged(ids).logits[0].contiguous()
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
