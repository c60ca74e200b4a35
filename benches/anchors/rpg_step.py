"""RPG in plain PyTorch, as the reference (facebookresearch/RPG_KDD2025, GPT-2 via transformers)
computes it: the anchor of `just bench-rpg` (benches/benches/rpg.rs).

Shapes: 12,101 items with random distinct 32-digit IDs (32 x 256 codes); GPT-2 with 2 blocks,
d 448, 4 heads, inner 1024, gelu_new, dropout 0.5 on embeddings and attention, 0 on residuals,
LayerNorm eps 1e-12; an item's input is the mean of its digits' token embeddings (one shared
table, as the reference's wte), learned positions; one head per digit, x + SiLU(Linear(x)) with
the Linear weight zero-initialised; logits = cos(head output, digit's token embeddings) / 0.03;
loss = mean over digits of the cross-entropy over every non-padding position.

Timed, after a self-check:
- a training step (AdamW lr 1e-3) on 256 histories of 50 items; `--short`: lengths drawn like
  Beauty's (1 + floor(5.5 Exp(1)), at most 50), right-padded to the batch's longest, as the
  reference's collator pads;
- top-10 for 256 users with 50-item histories: exact (mean digit log-probability of every item)
  and the reference's graph-constrained decoding (20 random beams, 200 edges, 3 steps).

    /tmp/torchenv/bin/python benches/anchors/rpg_step.py [--short]
"""

import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ITEMS, M, K, D, HEADS, INNER, LAYERS, LEN, USERS, TAU = 12_101, 32, 256, 448, 4, 1024, 2, 50, 256, 0.03


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D, eps=1e-12)
        self.c_attn = nn.Linear(D, 3 * D)
        self.c_proj = nn.Linear(D, D)
        self.ln_2 = nn.LayerNorm(D, eps=1e-12)
        self.c_fc = nn.Linear(D, INNER)
        self.mlp_proj = nn.Linear(INNER, D)
        self.attn_drop = nn.Dropout(0.5)

    def forward(self, x, mask):
        b, t, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        heads = lambda z: z.view(b, t, HEADS, D // HEADS).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        w = (q @ k.transpose(-1, -2)) / math.sqrt(D // HEADS)
        w = self.attn_drop(torch.softmax(w.masked_fill(~mask, torch.finfo(w.dtype).min), dim=-1))
        x = x + self.c_proj((w @ v).transpose(1, 2).reshape(b, t, D))
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(D, D)
        nn.init.zeros_(self.linear.weight)

    def forward(self, x):
        return x + F.silu(self.linear(x))


class Rpg(nn.Module):
    def __init__(self, item_tokens):
        super().__init__()
        self.register_buffer("item_tokens", item_tokens)  # [ITEMS + 1, M], row 0 = padding item
        self.wte = nn.Embedding(M * K + 2, D)
        self.wpe = nn.Embedding(LEN, D)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.drop = nn.Dropout(0.5)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D, eps=1e-12)
        self.heads = nn.ModuleList(ResBlock() for _ in range(M))

    def hidden(self, items, lengths):
        b, t = items.shape
        x = self.wte(self.item_tokens[items]).mean(dim=-2) + self.wpe(torch.arange(t))
        x = self.drop(x)
        valid = torch.arange(t)[None, :] < lengths[:, None]
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))[None, None] & valid[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def digit_logits(self, h):
        codes = F.normalize(self.wte.weight[1:-1].view(M, K, D), dim=-1)
        return torch.stack([F.normalize(head(h), dim=-1) @ codes[s].T for s, head in enumerate(self.heads)]) / TAU

    def loss(self, items, lengths, targets):
        h = self.hidden(items, lengths)
        keep = torch.arange(items.shape[1])[None, :] < lengths[:, None]
        logits = self.digit_logits(h[keep])  # [M, n, K]
        labels = self.item_tokens[targets[keep]] - 1 - torch.arange(M) * K  # digit codes [n, M]
        return torch.stack([F.cross_entropy(logits[s], labels[:, s]) for s in range(M)]).mean()

    def log_probs(self, items, lengths):
        h = self.hidden(items, lengths)[torch.arange(items.shape[0]), lengths - 1]
        return torch.log_softmax(self.digit_logits(h), dim=-1).transpose(0, 1).reshape(items.shape[0], M * K)

    def item_scores(self, log_probs, candidates):
        """Mean digit log-probability of `candidates` ([B, C] item ids, 1-based) per user."""
        tokens = self.item_tokens[candidates] - 1  # [B, C, M] indices into the M*K log-probs
        return torch.gather(log_probs[:, None, :].expand(-1, candidates.shape[1], -1), 2, tokens).mean(-1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--short", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    codes = set()
    while len(codes) < ITEMS:
        codes.add(tuple(torch.randint(0, K, (M,)).tolist()))
    codes = torch.tensor(sorted(codes))[torch.randperm(ITEMS)]
    item_tokens = torch.cat([torch.zeros(1, M, dtype=torch.long), codes + 1 + torch.arange(M) * K])
    model = Rpg(item_tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

    def batch():
        if args.short:
            lengths = (1 + (torch.empty(USERS).exponential_() * 5.5).long()).clamp(max=LEN)
        else:
            lengths = torch.full((USERS,), LEN)
        t = int(lengths.max())
        seqs = torch.randint(1, ITEMS + 1, (USERS, t + 1))
        keep = torch.arange(t + 1)[None, :] <= lengths[:, None]
        seqs = seqs * keep
        return seqs[:, :-1], lengths, seqs[:, 1:]

    # Self-check: with zero head weights and near-equal cosines the loss starts near, but above,
    # ln 256; exact scores equal a per-item loop.
    model.eval()
    with torch.no_grad():
        items, lengths, _ = batch()
        lp = model.log_probs(items[:2], lengths[:2])
        some = torch.tensor([[1, 5, 77], [3, 9, 12101]])
        fast = model.item_scores(lp, some)
        for u in range(2):
            for j, i in enumerate(some[u].tolist()):
                slow = sum(lp[u, int(item_tokens[i, s]) - 1] for s in range(M)) / M
                assert abs(float(slow) - float(fast[u, j])) < 1e-4
    model.train()
    items, lengths, targets = batch()
    first = float(model.loss(items, lengths, targets).detach())
    assert first > math.log(K) - 0.5, first

    def step():
        items, lengths, targets = batch()
        loss = model.loss(items, lengths, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    n = 5
    start = time.perf_counter()
    for _ in range(n):
        step()
    train = (time.perf_counter() - start) / n

    model.eval()
    histories = torch.randint(1, ITEMS + 1, (USERS, LEN))
    full = torch.full((USERS,), LEN)
    all_items = torch.arange(1, ITEMS + 1)[None, :].expand(USERS, -1)
    with torch.no_grad():
        start = time.perf_counter()
        top = model.item_scores(model.log_probs(histories, full), all_items).topk(10).indices + 1
        exact = time.perf_counter() - start
        # The reference's graph: item-item similarity = mean over digits of 0.5 (cos + 1), top 200.
        start = time.perf_counter()
        codes_n = F.normalize(model.wte.weight[1:-1].view(M, K, D), dim=-1)
        token_sim = 0.5 * (codes_n @ codes_n.transpose(1, 2) + 1)  # [M, K, K]
        adjacency = []
        for chunk in torch.arange(1, ITEMS + 1).split(1024):
            sim = torch.zeros(len(chunk), ITEMS)
            for s in range(M):
                sim += token_sim[s][codes[chunk - 1, s]][:, codes[:, s]]
            adjacency.append((sim / M).topk(200, dim=1).indices + 1)
        adjacency = torch.cat(adjacency)
        graph_build = time.perf_counter() - start
        start = time.perf_counter()
        lp = model.log_probs(histories, full)
        beam = torch.randint(1, ITEMS + 1, (USERS, 20))
        for _ in range(3):
            lists = []
            for u in range(USERS):
                cand = adjacency[beam[u] - 1].flatten().unique()
                scores = model.item_scores(lp[u : u + 1], cand[None, :])[0]
                lists.append(cand[scores.topk(min(20, len(cand))).indices])
            beam = torch.stack(lists)
        graph = time.perf_counter() - start
    assert top.shape == (USERS, 10) and beam.shape == (USERS, 20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {'short' if args.short else 'full 50'} histories")
    print(f"graph build {graph_build:.1f} s; exact top-10 {USERS / exact:.1f} users/s; graph top-10 {USERS / graph:.1f} users/s")
    print(f"train step {train * 1000:.0f} ms")


if __name__ == "__main__":
    main()
