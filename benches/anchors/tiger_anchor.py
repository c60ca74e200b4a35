#!/usr/bin/env python3
"""PyTorch anchor of genrec's TIGER (issue 23): what a user would run instead. Hugging Face
`T5ForConditionalGeneration` with TIGER's configuration (4 + 4 blocks, d_model 128, 6 heads x
d_kv 64, d_ff 1024, dropout 0.1, ReLU, 32 relative buckets up to distance 128, tied embeddings),
trained on the same examples as `genrec run` with `kind = "tiger"`:

  * the split written by `genrec data split EXPERIMENT.toml --out SPLIT` (same filtering and
    item ids as the run), and the run's `index.json` (or `genrec tokenize`'s);
  * genrec's token layout: PAD 0, BOS 1, EOS 2, SEP 3, then each level's codes in turn;
  * examples: every training position of every user (or `--positions-per-user n` random ones per
    user and epoch), the last `--max-items` history items as the encoder input, the next item's
    code tokens as the decoder target (decoder start = BOS), batches shuffled per epoch;
  * AdamW (betas 0.9/0.999, `--eps`, decoupled `--weight-decay`), gradient-norm clipping, and the
    schedule of genrec's `[train]`: linear warm-up then constant / cosine / inverse_sqrt, or
    held_inverse_sqrt (the paper's: lr held through the warm-up).

Every `--log-every` steps the mean training loss goes to `OUT/loss.csv`; at each step listed in
`--eval-at`, validation lists (trie-constrained beam search through `generate`'s
`prefix_allowed_tokens_fn`, beam 20) go to `OUT/valid_stepN.jsonl`, to be scored by
`genrec evaluate --lists OUT/valid_stepN.jsonl --items N_ITEMS` like genrec's own. Items whose
tuples are shorter than the longest (a dedup digit only where codes collide) end with EOS here,
which then enters their score; genrec's beam search ends them at the trie leaf.

Needs `pip install torch transformers`. Example (ML-100K):
  genrec data split experiments/tiger-ml100k.toml --out /tmp/split
  python benches/anchors/tiger_anchor.py --split /tmp/split --index RUN/index.json \
      --out /tmp/anchor --steps 1000 --batch-size 256 --lr 1e-3 --eval-at 300,600,1000
"""
import argparse, json, math, os, random, time

import torch
from transformers import T5Config, T5ForConditionalGeneration

p = argparse.ArgumentParser()
p.add_argument("--split", required=True)
p.add_argument("--index", required=True)
p.add_argument("--out", required=True)
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--batch-size", type=int, default=256)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.0)
p.add_argument("--eps", type=float, default=1e-8)
p.add_argument("--grad-clip", type=float, default=1.0)
p.add_argument("--warmup-steps", type=int, default=0)
p.add_argument("--schedule", default="constant", choices=["constant", "cosine", "inverse_sqrt", "held_inverse_sqrt"])
p.add_argument("--max-items", type=int, default=20)
p.add_argument("--positions-per-user", type=int, default=0)
p.add_argument("--beam", type=int, default=20)
p.add_argument("--eval-at", default="")
p.add_argument("--valid-users", type=int, default=0, help="0 = all validation users")
p.add_argument("--log-every", type=int, default=50)
p.add_argument("--seed", type=int, default=42)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
rng = random.Random(a.seed)
os.makedirs(a.out, exist_ok=True)

index = json.load(open(a.index))
sizes, codes = index["codebook_sizes"], index["codes"]
offsets = [4 + sum(sizes[:l]) for l in range(len(sizes))]
vocab = 4 + sum(sizes)
PAD, BOS, EOS = 0, 1, 2
tokens = [[offsets[l] + c for l, c in enumerate(cs)] for cs in codes]
levels = max(len(t) for t in tokens)
ragged = any(len(t) < levels for t in tokens)
n_items = len(codes)

train = [json.loads(l)["items"] for l in open(os.path.join(a.split, "train.jsonl"))]
train = [s for s in train if len(s) >= 2]
valid = [json.loads(l) for l in open(os.path.join(a.split, "valid.jsonl"))]
if a.valid_users and a.valid_users < len(valid):
    valid = sorted(rng.sample(valid, a.valid_users), key=lambda c: c["user"])

config = T5Config(vocab_size=vocab, d_model=128, d_kv=64, num_heads=6, d_ff=1024, num_layers=4,
                  num_decoder_layers=4, dropout_rate=0.1, feed_forward_proj="relu",
                  relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  tie_word_embeddings=True, pad_token_id=PAD, eos_token_id=EOS,
                  decoder_start_token_id=BOS, layer_norm_epsilon=1e-6)
model = T5ForConditionalGeneration(config)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=a.eps, weight_decay=a.weight_decay)


def lr_at(step):
    w = a.warmup_steps
    if step < w:
        return a.lr if a.schedule == "held_inverse_sqrt" else a.lr * (step + 1) / w
    if a.schedule == "cosine":
        t = (step - w) / max(a.steps - w, 1)
        return a.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if a.schedule in ("inverse_sqrt", "held_inverse_sqrt"):
        return a.lr * math.sqrt(max(w, 1) / (step + 1))
    return a.lr


def encoder_rows(histories):
    rows = [[t for i in h[-a.max_items:] for t in tokens[i]] for h in histories]
    width = max(1, max(len(r) for r in rows))
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    mask[:, 0] = 1  # an empty history still has one attended column, as in genrec
    return ids, mask


def epoch_examples():
    if a.positions_per_user == 0:
        ex = [(u, t) for u, s in enumerate(train) for t in range(1, len(s))]
    else:
        ex = [(u, rng.randrange(1, len(s))) for u, s in enumerate(train) for _ in range(a.positions_per_user)]
    rng.shuffle(ex)
    return ex


trie = {}
for t in tokens:
    path = t + ([EOS] if ragged else [])
    for j in range(len(path)):
        trie.setdefault(tuple(path[:j]), set()).add(path[j])
trie = {k: sorted(v) for k, v in trie.items()}
item_of = {tuple(t): i for i, t in enumerate(tokens)}


@torch.no_grad()
def write_lists(step):
    model.eval()
    path = os.path.join(a.out, f"valid_step{step}.jsonl")
    with open(path, "w") as f:
        for b in range(0, len(valid), 64):
            cases = valid[b:b + 64]
            ids, mask = encoder_rows([c["history"] for c in cases])
            out = model.generate(input_ids=ids, attention_mask=mask, num_beams=a.beam,
                                 num_return_sequences=a.beam, max_new_tokens=levels + int(ragged),
                                 prefix_allowed_tokens_fn=lambda _, s: trie.get(tuple(s[1:].tolist()), [EOS]),
                                 do_sample=False, early_stopping=True)
            out = out.view(len(cases), a.beam, -1)
            for c, beams in zip(cases, out):
                ranked = []
                for s in beams.tolist():
                    item = item_of.get(tuple(t for t in s[1:] if t not in (PAD, EOS)))
                    if item is not None and item not in ranked:
                        ranked.append(item)
                f.write(json.dumps({"user": c["user"], "target": c["target"], "ranked": ranked[:20],
                                    "history": c["history"]}) + "\n")
    model.train()
    print(f"step {step}: wrote {path}", flush=True)


eval_at = {int(s) for s in a.eval_at.split(",") if s}
log = open(os.path.join(a.out, "loss.csv"), "w")
log.write("step,loss,seconds_per_step\n")
model.train()
step, queue, window, started = 0, [], [], time.perf_counter()
while step < a.steps:
    if not queue:
        queue = epoch_examples()
    batch, queue = queue[:a.batch_size], queue[a.batch_size:]
    histories = [train[u][:t] for u, t in batch]
    ids, mask = encoder_rows(histories)
    labels = torch.full((len(batch), levels), -100)
    for r, (u, t) in enumerate(batch):
        target = tokens[train[u][t]]
        labels[r, :len(target)] = torch.tensor(target)
    for g in opt.param_groups:
        g["lr"] = lr_at(step)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if a.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
    opt.step()
    step += 1
    window.append(loss.item())
    if step % a.log_every == 0:
        seconds = (time.perf_counter() - started) / a.log_every
        log.write(f"{step},{sum(window) / len(window):.5f},{seconds:.4f}\n")
        log.flush()
        print(f"step {step}: loss {sum(window) / len(window):.4f}, {seconds:.3f} s/step", flush=True)
        window, started = [], time.perf_counter()
    if step in eval_at:
        write_lists(step)
        started = time.perf_counter()
