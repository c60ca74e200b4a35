"""sentence-transformers anchor for `genrec features build DATASET --kind text --no-cache`.

Encodes the same texts (the `<out>.texts.txt` genrec writes, one item per line) with the same
weights (genrec's cached MiniLM directory: config.json, model.safetensors, tokenizer.json) on 2
threads, mean pooling + L2 normalisation, truncation at 128 tokens, and prints items/s last.
Given genrec's matrix (.npy) as a third argument, it also prints the largest difference between
the two encodings.

usage: python minilm_encode.py MODEL_DIR TEXTS_TXT [GENREC_NPY] [--batch-size 64]
"""
import argparse, time
import numpy as np, torch
from sentence_transformers import SentenceTransformer, models

p = argparse.ArgumentParser()
p.add_argument("model_dir"); p.add_argument("texts"); p.add_argument("ours", nargs="?")
p.add_argument("--batch-size", type=int, default=64)
a = p.parse_args()
torch.set_num_threads(2)
word = models.Transformer(a.model_dir, max_seq_length=128)
model = SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")], device="cpu")
# Self-check before timing: the published similarity of this pair is 0.755.
e = model.encode(["A man is eating food.", "A man is eating a piece of bread."], normalize_embeddings=True)
assert abs(float(e[0] @ e[1]) - 0.755) < 0.01, float(e[0] @ e[1])
texts = open(a.texts, encoding="utf-8").read().split("\n")[:-1]
t0 = time.time()
emb = model.encode(texts, batch_size=a.batch_size, normalize_embeddings=True)
dt = time.time() - t0
if a.ours:
    ours = np.load(a.ours)
    assert ours.shape == emb.shape, (ours.shape, emb.shape)
    cos = (ours * emb).sum(1)
    print(f"vs genrec: max |diff| {np.abs(ours - emb).max():.2e}, min cosine {cos.min():.6f}")
print(f"sentence-transformers: {len(texts)} texts in {dt:.1f} s = {len(texts) / dt:.0f} items/s")
