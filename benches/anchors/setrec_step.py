"""SETRec's T5 path in PyTorch as the reference (Linxyhaha/SETRec, code/model_t5.py) computes it:
the anchor of `just bench-setrec` (benches/benches/setrec.rs). Same shapes as the bench.

- 12,101 items; CF tokenizer = a frozen random 64-d table through Linear(64, 128) with bias
  (1 token); semantic tokenizer = an MLP auto-encoder 384-512-256-128-512 (ReLU between layers,
  Xavier-normal), its output cut into 4 tokens of 128; reconstruction MSE over the batch's
  history items, weight 0.5.
- transformers' T5 (d_model 128, 6 heads x d_kv 64, d_ff 1024, 4 + 4 blocks, ReLU, dropout 0.1)
  fed `inputs_embeds`: 256 users x 20 items x 5 tokens = 100 encoder tokens (the reference's T5
  encoder is bidirectional, as here); decoder input = 5 learnable queries.
- loss = mean over the 5 slots of full-softmax cross-entropy over every item's slot token.

Timed, after a warm-up: one AdamW step (lr 1e-3) on the 256 users, and top-10 for the 256
users (one encoder + decoder pass, grounding with beta 0.5 against every item). Threads: 2.

    /tmp/torchenv/bin/python benches/anchors/setrec_step.py
"""

import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import T5Config, T5Model

ITEMS, USERS, HISTORY, D, N_CF, N_SEM, CF_DIM, TEXT_DIM = 12_101, 256, 20, 128, 1, 4, 64, 384
NQ = N_CF + N_SEM


def mlp(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        lin = nn.Linear(a, b)
        nn.init.xavier_normal_(lin.weight)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i + 2 < len(widths):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SetRec(nn.Module):
    def __init__(self, cf, text):
        super().__init__()
        self.t5 = T5Model(
            T5Config(
                vocab_size=8,
                d_model=D,
                d_kv=64,
                num_heads=6,
                d_ff=1024,
                num_layers=4,
                num_decoder_layers=4,
                dropout_rate=0.1,
                feed_forward_proj="relu",
            )
        )
        self.cf = nn.Embedding.from_pretrained(cf, freeze=True)
        self.text = nn.Embedding.from_pretrained(text, freeze=True)
        self.cf_proj = nn.Linear(CF_DIM, N_CF * D)
        widths = [TEXT_DIM, 512, 256, 128, N_SEM * D]
        self.encoder = mlp(widths)
        self.decoder = mlp(widths[::-1])
        self.queries = nn.Parameter(torch.randn(NQ, D) * 0.02)

    def tokens(self):
        cf = self.cf_proj(self.cf.weight).view(ITEMS, N_CF, D)
        latent = self.encoder(self.text.weight)
        return torch.cat([cf, latent.view(ITEMS, N_SEM, D)], 1), latent

    def generate(self, tokens, histories):
        x = tokens[histories].reshape(len(histories), HISTORY * NQ, D)
        mask = torch.ones(x.shape[:2], dtype=torch.long)
        q = self.queries.unsqueeze(0).expand(len(histories), NQ, D)
        return self.t5(inputs_embeds=x, attention_mask=mask, decoder_inputs_embeds=q).last_hidden_state

    def loss(self, histories, targets):
        tokens, latent = self.tokens()
        h = self.generate(tokens, histories)
        ce = sum(F.cross_entropy(h[:, j] @ tokens[:, j].T, targets) for j in range(NQ)) / NQ
        rows = histories.reshape(-1)
        mse = F.mse_loss(self.decoder(latent[rows]), self.text.weight[rows])
        return ce + 0.5 * mse

    @torch.no_grad()
    def top10(self, histories, beta=0.5):
        tokens, _ = self.tokens()
        h = self.generate(tokens, histories)
        cf = h[:, :N_CF].reshape(len(histories), -1) @ tokens[:, :N_CF].reshape(ITEMS, -1).T
        sem = h[:, N_CF:].reshape(len(histories), -1) @ tokens[:, N_CF:].reshape(ITEMS, -1).T
        return ((1 - beta) * cf + beta * sem).topk(10, dim=1).indices


def timed(f, repeats):
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cf = torch.rand(ITEMS, CF_DIM) * 2 - 1
    text = torch.rand(ITEMS, TEXT_DIM) * 2 - 1
    model = SetRec(cf, text)
    histories = torch.randint(0, ITEMS, (USERS, HISTORY))
    targets = torch.randint(0, ITEMS, (USERS,))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)

    def step():
        model.train()
        optim.zero_grad()
        model.loss(histories, targets).backward()
        optim.step()

    def score():
        model.eval()
        assert model.top10(histories).shape == (USERS, 10)

    train = timed(step, 10)
    infer = timed(score, 10)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"train_step (256 users x 100 tokens): median {train:.3f} s")
    print(f"top10_256users: median {infer:.3f} s ({USERS / infer:.0f} users/s)")


if __name__ == "__main__":
    main()
