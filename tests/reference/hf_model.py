"""Reference values from Hugging Face transformers (PyTorch) for circuitdiff's model tests.

usage: hf_model.py REQUEST.json OUT.safetensors

REQUEST: {"model": dir, "gguf_file": name|null, "dtype": "float32"|"float64",
          "ids": [...], "loss_from": p, "targets": [...], "masks": [...], "generate": n,
          "prompt": text, "chat": text}

Writes:
  logits            (T, V)  transformers' own forward pass
  path_logits       (T, V)  the per-path forward below (must equal `logits`)
  loss              ()      -mean log softmax(path_logits[loss_from + k])[targets[k]]
  grad.{j}          (T, d)  d loss / d(input of destination j), destination order
                            a0<q>, a0<k>, a0<v>, m0, a1<q>, ..., logits
  source.{i}        (T, d)  source activations: input, a0, m0, a1, m1, ...
  scores            (1+2L, 4L+1)  edge scores S[u->v] = -sum_t,i A_u G_v over real edges
                            (structural zeros elsewhere), accumulated in float64
  masked_loss       (M,)    with "masks" (M dense (1+2L) x (4L+1) keep matrices): the loss of
                            the per-path forward whose destination j reads
                            sum_u masks[i][u][j] * A_u (method.md section 7), in float64
  generated         (n,)    greedy continuation of `ids` by model.generate
  routing.{l}       (T, k)  for a mixture-of-experts layer l, the experts its router chose for
                            each token in transformers' own forward pass
  prompt_ids        (T',)   the tokenizer's encoding of `prompt`, when given
  chat_ids          (T'',)  the tokenizer's chat template applied to the user message `chat`
                            (with the generation prompt), then encoded, when given

The per-path forward calls the model's own modules (norms, projections, rotary embedding, MLP)
and gives every destination its own copy of the residual stream with a zero "probe" added,
exactly as method.md section 1 defines the graph.
"""

import json
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


MOE_TYPES = ("qwen3_moe", "olmoe", "mixtral")


def per_path_forward(model, ids, dtype, mask=None):
    """The per-path forward. Without `mask`, destination j reads the residual stream plus its
    zero probe; with `mask` (a dense (1+2L) x (4L+1) keep matrix, method.md section 7), it
    reads sum_u mask[u][j] * A_u over the sources u before it, A_u from this same pass."""
    m = model.model
    cfg = model.config
    T = ids.shape[1]
    x = m.embed_tokens(ids)  # Gemma's embedding module scales by sqrt(hidden) itself
    pos = torch.arange(T).unsqueeze(0)
    layer_types = getattr(cfg, "layer_types", None)
    per_kind = cfg.model_type in ("gemma3_text", "olmo3")
    if per_kind:  # a rotary table per layer kind (local and global bases)
        tables = {k: m.rotary_emb(x, pos, k) for k in set(layer_types)}
    else:
        cos, sin = m.rotary_emb(x, pos)
    nl = cfg.num_hidden_layers
    probes = [torch.zeros_like(x, requires_grad=True) for _ in range(4 * nl + 1)]
    sources = [x]

    def inp(j, h):
        if mask is None:
            return h + probes[j]
        out = torch.zeros_like(h)
        for u, a in enumerate(sources):
            out = out + mask[u][j] * a
        return out

    def rot(t):
        h = t.shape[-1] // 2
        return torch.cat((-t[..., h:], t[..., :h]), dim=-1)

    # OLMo 2 and 3 norm what each block adds (post_attention_layernorm,
    # post_feedforward_layernorm) and nothing before it, and their q/k norms cover the whole
    # projections.
    post_norm = cfg.model_type in ("olmo2", "olmo3")
    # Gemma norms both what each block reads and what it adds (sandwich norms).
    sandwich = cfg.model_type in ("gemma2", "gemma3_text")
    attn_cap = getattr(cfg, "attn_logit_softcapping", None)
    final_cap = getattr(cfg, "final_logit_softcapping", None)
    # OLMoE (pre-norms) shares OLMo 2's q/k norms over the whole projections.
    whole_qk = cfg.model_type in ("olmo2", "olmo3", "olmoe")
    ident = lambda t: t
    h = x
    for l, layer in enumerate(m.layers):
        at = layer.self_attn
        hd = at.head_dim
        if per_kind:
            cos, sin = tables[layer_types[l]]
        if post_norm:
            attn_pre, attn_post = ident, layer.post_attention_layernorm
            mlp_pre, mlp_post = ident, layer.post_feedforward_layernorm
        elif sandwich:
            attn_pre, attn_post = layer.input_layernorm, layer.post_attention_layernorm
            mlp_pre, mlp_post = layer.pre_feedforward_layernorm, layer.post_feedforward_layernorm
        else:
            attn_pre, attn_post = layer.input_layernorm, ident
            mlp_pre, mlp_post = layer.post_attention_layernorm, ident
        nq = attn_pre(inp(4 * l, h))
        nk = attn_pre(inp(4 * l + 1, h))
        nv = attn_pre(inp(4 * l + 2, h))
        if hasattr(at, "qkv_proj"):  # Phi-3: rows q, then k, then v of one fused projection
            qd, kvd = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
            q_proj = lambda t: at.qkv_proj(t)[..., :qd]
            k_proj = lambda t: at.qkv_proj(t)[..., qd:qd + kvd]
            v_proj = lambda t: at.qkv_proj(t)[..., qd + kvd:]
        else:
            q_proj, k_proj, v_proj = at.q_proj, at.k_proj, at.v_proj
        if whole_qk:
            q = at.q_norm(q_proj(nq)).view(1, T, -1, hd)
            k = at.k_norm(k_proj(nk)).view(1, T, -1, hd)
        else:
            q = q_proj(nq).view(1, T, -1, hd)
            k = k_proj(nk).view(1, T, -1, hd)
        v = v_proj(nv).view(1, T, -1, hd)
        if hasattr(at, "q_norm") and not whole_qk:
            q = at.q_norm(q)
            k = at.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        c, s = cos.unsqueeze(1), sin.unsqueeze(1)
        r = c.shape[-1]  # Phi-3's partial rotation: the leading r dimensions of each head
        q = torch.cat([q[..., :r] * c + rot(q[..., :r]) * s, q[..., r:]], dim=-1)
        k = torch.cat([k[..., :r] * c + rot(k[..., :r]) * s, k[..., r:]], dim=-1)
        rep = q.shape[1] // k.shape[1]
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(2, 3)) * at.scaling
        if attn_cap is not None:
            scores = torch.tanh(scores / attn_cap) * attn_cap
        qi = torch.arange(T).unsqueeze(1)
        kj = torch.arange(T).unsqueeze(0)
        allowed = kj <= qi
        window = None
        if layer_types is not None:
            if layer_types[l] == "sliding_attention":
                window = cfg.sliding_window
        elif cfg.model_type in ("mistral", "phi3", "mixtral", "qwen3_moe"):
            window = cfg.sliding_window
        if window is not None:
            allowed = allowed & (qi - kj < window)
        scores = scores.masked_fill(~allowed, float("-inf"))
        p = torch.softmax(scores.float(), dim=-1).to(dtype)
        z = (p @ v).transpose(1, 2).reshape(1, T, -1)
        a = attn_post(at.o_proj(z))
        h = h + a
        sources.append(a)
        mm = mlp_post(layer.mlp(mlp_pre(inp(4 * l + 3, h))))
        h = h + mm
        sources.append(mm)
    logits = model.lm_head(m.norm(inp(4 * nl, h)))
    if final_cap is not None:
        logits = torch.tanh(logits / final_cap) * final_cap
    return logits[0], probes, sources


def edge_scores(sources, grads, n_layers):
    """Dense (1+2L) x (4L+1) scores; a source feeds a destination iff it comes earlier in the
    residual stream (input; then per layer: attention, MLP; logits last)."""
    def src_order(i):  # input=0, a_l=1+2l, m_l=2+2l
        return i

    def dst_order(j):
        if j == 4 * n_layers:
            return 2 * n_layers + 1
        layer, slot = divmod(j, 4)
        return 1 + 2 * layer + (1 if slot == 3 else 0)

    A = torch.stack([s[0].detach().double().reshape(-1) for s in sources])
    G = torch.stack([g[0].double().reshape(-1) for g in grads])
    S = -(A @ G.T)
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            if not src_order(i) < dst_order(j):
                S[i, j] = 0.0
    return S.contiguous()


def main():
    req = json.load(open(sys.argv[1]))
    dtype = {"float32": torch.float32, "float64": torch.float64}[req.get("dtype", "float32")]
    kw = {"dtype": dtype, "attn_implementation": "eager"}
    if req.get("gguf_file"):
        kw["gguf_file"] = req["gguf_file"]
    elif json.load(open(f"{req['model']}/config.json")).get("model_type") in MOE_TYPES:
        # The experts one by one (grouped matrix products refuse float64).
        kw["experts_implementation"] = "eager"
    model = AutoModelForCausalLM.from_pretrained(req["model"], **kw)
    model.eval()
    out = {}
    ids = torch.tensor([req["ids"]])
    routing = {}

    def keep_routing(l):
        def hook(_module, _inputs, outputs):
            routing.setdefault(l, outputs[2].clone())
        return hook

    for l, layer in enumerate(model.model.layers):
        for _, module in layer.named_modules():
            if type(module).__name__.endswith("TopKRouter"):
                module.register_forward_hook(keep_routing(l))
    with torch.no_grad():
        out["logits"] = model(ids).logits[0].contiguous()
    for l, idx in routing.items():
        out[f"routing.{l}"] = idx.to(torch.int64).contiguous()
    if req.get("prompt") is not None:
        tkw = {"gguf_file": req["gguf_file"]} if req.get("gguf_file") else {}
        tok = AutoTokenizer.from_pretrained(req["model"], **tkw)
        out["prompt_ids"] = torch.tensor(tok(req["prompt"]).input_ids, dtype=torch.int64)
    if req.get("chat") is not None:
        tok = AutoTokenizer.from_pretrained(req["model"])
        text = tok.apply_chat_template([{"role": "user", "content": req["chat"]}],
                                       add_generation_prompt=True, tokenize=False)
        out["chat_ids"] = torch.tensor(tok(text, add_special_tokens=False).input_ids,
                                       dtype=torch.int64)
    if req.get("generate"):
        with torch.no_grad():
            g = model.generate(ids, max_new_tokens=req["generate"], do_sample=False,
                               eos_token_id=None, pad_token_id=0)
        out["generated"] = g[0, ids.shape[1]:].contiguous()
    if req.get("targets"):
        logits, probes, sources = per_path_forward(model, ids, dtype)
        p0 = req["loss_from"]
        tg = torch.tensor(req["targets"])
        lp = torch.log_softmax(logits[p0:p0 + len(tg)], dim=-1)
        loss = -lp[torch.arange(len(tg)), tg].mean()
        grads = torch.autograd.grad(loss, probes)
        out["path_logits"] = logits.detach().contiguous()
        out["loss"] = loss.detach().reshape(())
        for j, g in enumerate(grads):
            out[f"grad.{j}"] = g[0].contiguous()
        for i, s in enumerate(sources):
            out[f"source.{i}"] = s[0].detach().contiguous()
        out["scores"] = edge_scores(sources, grads, model.config.num_hidden_layers)
        masked = []
        with torch.no_grad():
            for mask in req.get("masks", []):
                logits, _, _ = per_path_forward(model, ids, dtype, mask)
                lp = torch.log_softmax(logits[p0:p0 + len(tg)].double(), dim=-1)
                masked.append(-lp[torch.arange(len(tg)), tg].mean())
        if masked:
            out["masked_loss"] = torch.stack(masked).contiguous()
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
