"""transformers' tokenizer of a GGUF's SentencePiece vocabulary, for circuitdiff's tests.

usage: gguf_tokenizer.py REQUEST.json OUT.json

REQUEST: {"gguf": path, "write": "llama"|"gemma3"|null, "texts": [...], "chat": text,
          "chat_template": jinja|null}

With "write", first writes at `gguf` (with the `gguf` package) a GGUF of that architecture with
no tensors whose metadata holds a small SentencePiece vocabulary (`tokenizer.ggml.model` =
`llama`, scores, token types: control, user-defined, byte tokens) in the style of Llama 2 or of
Gemma (special tokens, tokens of spaces stored as spaces, newlines user-defined), and the chat
template. Then loads `AutoTokenizer.from_pretrained(dir, gguf_file=name)` and writes:
  ids       per text, its encoding with the special tokens (`tok(text).input_ids`)
  plain     per text, its encoding without them
  decoded   per text, `tok.decode(ids)` of its encoding with the special tokens
  plain_decoded  per text, the decoding of its encoding without them
  chat_ids  the chat template applied to the user message `chat` (with the generation
            prompt), encoded without special tokens, as hf_model.py does (when the file has
            a chat template)
"""

import json
import os
import sys

from gguf import GGUFWriter, TokenType
from transformers import AutoTokenizer

CHARS = list("abcdefghijklmnopqrstuvwxyzHTW0123456789.,:!?'-+=") + ["\u2581", "\u00e9"]
PIECES = [
    "\u2581t", "he", "\u2581the", "\u2581a", "in", "\u2581in", "er", "on", "\u2581w", "or", "ld",
    "\u2581wor", "\u2581world", "ll", "\u2581he", "\u2581hell", "\u2581hello", "lo", "\u2581hel",
    "12", "123", "\u25811", "\u2581\u2581", "\u2581\u2581\u2581", "e\u2581", "s\u2581", "ca",
    "f\u00e9", "caf", "\u2581caf\u00e9", "\u2581c", "an", "\u2581an", "\u2581and", "nd", "ing",
    "\u2581is", "is", "\u2581of", "of", "at", "\u2581at", "re", "\u2581re", "\u25813", "14",
    "\u2581T", "Th", "\u2581Th", "\u2581The", "\u2581H", "\u2581He", "He", "st", "\u2581st",
    "\u2581l", "li", "ne", "\u2581line", "\u2581o", "\u2581one", "\u2581tw", "\u2581two",
    "it", "\u2581it", "\u2581d", "ig", "its", "\u2581dig", "\u2581digits",
]


def vocabulary(style):
    """(token, score, type) of a small SentencePiece vocabulary in `style`."""
    if style == "gemma":
        specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
        special_types = [TokenType.CONTROL] * 3 + [TokenType.UNKNOWN, TokenType.CONTROL]
        user = ["\n", "\n\n", "  ", "   ", "<think>"]
    else:
        specials = ["<unk>", "<s>", "</s>"]
        special_types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
        user = ["<think>"]
    out = [(t, 0.0, k) for t, k in zip(specials, special_types)]
    out += [(t, 0.0, TokenType.CONTROL) for t in ["<start_of_turn>", "<end_of_turn>"]]
    out += [(t, 0.0, TokenType.USER_DEFINED) for t in user]
    out += [(f"<0x{b:02X}>", 0.0, TokenType.BYTE) for b in range(256)]
    # Scores in ties of forty: the merge order then also rests on the halves' lengths and on
    # the order of the tokens.
    normal = CHARS + PIECES
    out += [(t, -float(i // 40), TokenType.NORMAL) for i, t in enumerate(normal)]
    return out


def write(path, arch, chat_template):
    style = "gemma" if arch.startswith("gemma") else "llama"
    vocab = vocabulary(style)
    w = GGUFWriter(path, arch)
    w.add_context_length(64)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(8)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(len(vocab))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([t for t, _, _ in vocab])
    w.add_token_scores([s for _, s, _ in vocab])
    w.add_token_types([k for _, _, k in vocab])
    ids = {t: i for i, (t, _, _) in enumerate(vocab)}
    bos, eos = ("<bos>", "<eos>") if style == "gemma" else ("<s>", "</s>")
    w.add_bos_token_id(ids[bos])
    w.add_eos_token_id(ids[eos])
    w.add_unk_token_id(ids["<unk>"])
    if style == "gemma":
        w.add_pad_token_id(ids["<pad>"])
        w.add_add_space_prefix(False)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(chat_template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    req = json.load(open(sys.argv[1]))
    path = req["gguf"]
    if req.get("write"):
        write(path, req["write"], req.get("chat_template"))
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    out = {"ids": [], "plain": [], "decoded": [], "plain_decoded": []}
    for text in req["texts"]:
        ids = tok(text).input_ids
        out["ids"].append(ids)
        plain = tok(text, add_special_tokens=False).input_ids
        out["plain"].append(plain)
        out["decoded"].append(tok.decode(ids))
        out["plain_decoded"].append(tok.decode(plain))
    if req.get("chat") is not None and tok.chat_template is not None:
        text = tok.apply_chat_template(
            [{"role": "user", "content": req["chat"]}], add_generation_prompt=True, tokenize=False
        )
        out["chat_ids"] = tok(text, add_special_tokens=False).input_ids
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
