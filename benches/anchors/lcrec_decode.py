#!/usr/bin/env python3
"""PyTorch anchor of `cargo bench -p genrec-benches --bench lcrec`: LC-Rec decoding as a user of
the reference would run it. SmolLM2-135M-Instruct loaded by `transformers` from the same GGUF
file (float32), its first 8 blocks kept, 4 x 256 code tokens `<a_i>`..`<d_i>` added
(`resize_token_embeddings`), 1,682 items whose codes and 16 users whose 20-item histories follow
the bench's formulas; the first sequential-recommendation template in a ChatML user turn;
`generate(num_beams=20, num_return_sequences=10, max_new_tokens=5)` with a
`prefix_allowed_tokens_fn` that walks a trie of every item's code tokens + `<|im_end|>` (exact,
unlike the reference's per-level sets), 8 users per batch (left padding), 2 threads, CPU.

Needs `pip install torch transformers gguf accelerate`.
usage: python lcrec_decode.py DIR_WITH_GGUF
"""
import sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

torch.set_num_threads(2)
d = sys.argv[1]
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
m = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, torch_dtype=torch.float32)
m.model.layers = m.model.layers[:8]
m.config.num_hidden_layers = 8
ITEMS, USERS, HISTORY = 1682, 16, 20
names = [f"<{l}_{c}>" for l in "abcd" for c in range(256)]
tok.add_tokens(names, special_tokens=True)
m.resize_token_embeddings(len(tok))
m.eval()
tok.padding_side = "left"
eos = tok.convert_tokens_to_ids("<|im_end|>")


def codes(i):
    return [i // 256 % 256, (i * 7) % 256, (i * 13) % 256, i % 256]


def item(i):
    return "".join(f"<{l}_{c}>" for l, c in zip("abcd", codes(i)))


trie = {}
for i in range(ITEMS):
    ids = tok.convert_tokens_to_ids([f"<{l}_{c}>" for l, c in zip("abcd", codes(i))]) + [eos]
    for j in range(len(ids)):
        trie.setdefault(tuple(ids[:j]), set()).add(ids[j])
trie = {k: sorted(v) for k, v in trie.items()}

prompts = []
for u in range(USERS):
    history = ", ".join(item((u * 7919 + j * 104729) % ITEMS) for j in range(HISTORY))
    text = (f"A user has interacted with these items, oldest first: {history}. "
            "Which item will the user interact with next?")
    prompts.append(f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")


def decode(batch):
    enc = tok(batch, return_tensors="pt", padding=True)
    width = enc["input_ids"].shape[1]

    def allowed(_, ids):
        return trie.get(tuple(ids[width:].tolist()), [eos])

    with torch.no_grad():
        return m.generate(**enc, num_beams=20, num_return_sequences=10, max_new_tokens=5,
                          prefix_allowed_tokens_fn=allowed, do_sample=False, early_stopping=True,
                          pad_token_id=tok.pad_token_id or 0)


decode(prompts[:8])
ts = []
for _ in range(3):
    t = time.perf_counter()
    for b in range(0, USERS, 8):
        decode(prompts[b:b + 8])
    ts.append(time.perf_counter() - t)
best = min(ts)
print(f"lcrec decode {USERS} users: {[round(t, 2) for t in ts]} s, best {best:.2f}s = {USERS / best:.2f} users/s")
