"""How much of the dense model a pruned encoder keeps, without fine-tuning: sentence
embeddings (mean-pooled last hidden states) against the teacher's, zero-shot semantic
similarity (Spearman correlation of embedding cosines with gold scores), and how a
`[CLS] a [SEP] b [SEP]` pair is read as one input (attention across, similarity within)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from sparse_transfer.distillation import mean_pool


@torch.no_grad()
def sentence_embeddings(model, tokenizer, sentences: list[str], batch_size: int = 64,
                        max_length: int = 128) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1]  # any head: the encoder's output
        chunks.append(mean_pool(hidden.float(), batch["attention_mask"]).cpu())
    return torch.cat(chunks)


def embedding_fidelity(student, teacher, tokenizer, sentences: list[str]) -> float:
    """Mean cosine between the student's and the teacher's embedding of each sentence."""
    return float(F.cosine_similarity(sentence_embeddings(student, tokenizer, sentences),
                                     sentence_embeddings(teacher, tokenizer, sentences)).mean())


def zero_shot_similarity(model, tokenizer, first: list[str], second: list[str], gold: list[float]) -> float:
    """Spearman correlation (x100) between gold scores and the cosine of the two
    sentences' embeddings: STS-B as a bi-encoder, no training."""
    cosines = F.cosine_similarity(sentence_embeddings(model, tokenizer, first),
                                  sentence_embeddings(model, tokenizer, second))
    return 100 * float(spearmanr(cosines.numpy(), gold).correlation)


def pair_batches(model, tokenizer, first: list[str], second: list[str], batch_size: int = 64,
                 max_length: int = 128):
    """`[CLS] a [SEP] b [SEP]` batches on the model's device (model in eval mode), each with
    `word`: its real tokens that are not special tokens ([CLS], [SEP], padding)."""
    model.eval()
    device = next(model.parameters()).device
    special = torch.tensor(sorted(tokenizer.all_special_ids), device=device)
    for start in range(0, len(first), batch_size):
        batch = tokenizer(first[start:start + batch_size], second[start:start + batch_size], padding=True,
                          truncation=True, max_length=max_length, return_tensors="pt").to(device)
        yield batch, batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], special)


@torch.no_grad()
def cross_segment_attention(model, tokenizer, first: list[str], second: list[str], batch_size: int = 64,
                            max_length: int = 128) -> dict[str, list[float]]:
    """How a cross-encoder reads one sentence of a `[CLS] a [SEP] b [SEP]` pair from the
    other, per block (heads averaged): `other_segment`, the share of a token's attention
    that goes to the other segment (over all real tokens); `same_token`, the share that
    goes to copies of the token itself in the other segment (over tokens that have one:
    the word matching that sentence similarity rests on). Needs attn_implementation="eager"."""
    sums = {"other_segment": 0.0, "same_token": 0.0}
    counts = {"other_segment": 0.0, "same_token": 0.0}
    for batch, word in pair_batches(model, tokenizer, first, second, batch_size, max_length):
        attentions = torch.stack(model(**batch, output_attentions=True).attentions).float().mean(2)  # [blocks, b, q, k]
        ids, segment, real = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"].bool()
        other = (segment[:, :, None] != segment[:, None, :]) & real[:, None, :]  # [b, q, k]
        same = other & (ids[:, :, None] == ids[:, None, :]) & word[:, :, None] & word[:, None, :]
        has_copy = same.any(-1)  # queries with a copy of themselves in the other segment
        for key, keys, queries in (("other_segment", other, real), ("same_token", same, has_copy)):
            shares = (attentions * keys).sum(-1)  # [blocks, b, q]
            sums[key] = sums[key] + (shares * queries).sum((1, 2))
            counts[key] += float(queries.sum())
    return {key: (sums[key] / max(counts[key], 1.0)).tolist() for key in sums}


@torch.no_grad()
def joint_pair_similarity(model, tokenizer, first: list[str], second: list[str], gold: list[float],
                          batch_size: int = 64, max_length: int = 128) -> list[float]:
    """Zero-shot STS read from the pair as ONE input, as a cross-encoder reads it: at the output
    of every block, the cosine between the mean of sentence a's word tokens and the mean of
    sentence b's, correlated with the gold scores (Spearman x100), one value per block. The
    bi-encoder score of `zero_shot_similarity` against this one separates "the pruned model
    lost its sentence representations" from "it loses them when the two sentences meet"."""
    cosines = []
    for batch, word in pair_batches(model, tokenizer, first, second, batch_size, max_length):
        in_a, in_b = word & (batch["token_type_ids"] == 0), word & (batch["token_type_ids"] == 1)
        hidden = model(**batch, output_hidden_states=True).hidden_states[1:]
        cosines.append(torch.stack([F.cosine_similarity(mean_pool(h.float(), in_a), mean_pool(h.float(), in_b))
                                    for h in hidden]).cpu())  # [blocks, batch]
    cosines = torch.cat(cosines, dim=1)
    return [100 * float(spearmanr(block.numpy(), gold).correlation) for block in cosines]


@torch.no_grad()
def pair_features(model, tokenizer, first: list[str], second: list[str], batch_size: int = 64,
                  max_length: int = 128) -> dict[str, torch.Tensor]:
    """Frozen features of `[CLS] a [SEP] b [SEP]` read as one input, at the last block: `cls`, the
    [CLS] state a cross-encoder's head reads; `segments`, [u, v, |u - v|, u * v] of the means u, v
    of each sentence's word tokens (the comparison a head could make of the two sentences)."""
    cls, segments = [], []
    for batch, word in pair_batches(model, tokenizer, first, second, batch_size, max_length):
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1].float()
        u = mean_pool(hidden, word & (batch["token_type_ids"] == 0))
        v = mean_pool(hidden, word & (batch["token_type_ids"] == 1))
        cls.append(hidden[:, 0].cpu())
        segments.append(torch.cat([u, v, (u - v).abs(), u * v], dim=-1).cpu())
    return {"cls": torch.cat(cls), "segments": torch.cat(segments)}


def linear_probe(train_features: dict[str, torch.Tensor], train_gold: list[float],
                 dev_features: dict[str, torch.Tensor], dev_gold: list[float]) -> dict[str, float]:
    """Dev Pearson (x100) of a ridge regression (penalty chosen by cross-validation on train)
    from each kind of frozen feature to the gold scores: what a head could read without
    changing the encoder."""
    from scipy.stats import pearsonr
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for kind, features in train_features.items():
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=[0.1, 1.0, 10.0, 100.0, 1000.0]))
        probe.fit(features.double().numpy(), train_gold)  # float32 variances of near-constant features underflow
        scores[kind] = 100 * float(pearsonr(probe.predict(dev_features[kind].double().numpy()), dev_gold)[0])
    return scores
