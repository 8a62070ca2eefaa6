"""Knowledge distillation losses from a frozen teacher, for upstream pruning and for
distillation during transfer.

Every term compares a student output with the teacher's output for the same input
(positions the attention mask excludes never count):
- `logits`: KL(teacher || student) of temperature-softened logits (x T^2, Hinton et al.),
  mixed with the student's own loss by `hardness` as SparseML does:
  (1 - hardness) * own loss + hardness * KL; MSE instead of KL for a regression head;
- `hidden`: MSE between the outputs of every transformer block (TinyBERT, Prune OFA);
- `attention`: KL between the attention distributions of every head (MiniLM);
- `embedding`: mean-pooled last hidden states, MSE or cosine distance (sentence-embedding
  distillation, for encoders without a head);
- `cls`: how the [CLS] state of every block varies from one input to the next (its deviation
  from the batch mean, in units of the teacher's spread). A plain MSE over tokens is dominated
  by the [CLS] state's large constant part: measured on MiniLM pruned to 90%, the [CLS] state
  kept its norm but varied 4-7x less across inputs than the teacher's, and a classifier head
  reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EMBEDDING_LOSSES = ("mse", "cosine")


@dataclass
class DistillationConfig:
    """Weights of the loss terms (0 switches a term off) and their settings."""

    logits: float = 0.0
    hidden: float = 0.0
    attention: float = 0.0
    embedding: float = 0.0
    cls: float = 0.0
    hardness: float = 1.0  # share of the logits term given to KL; the rest is the student's own loss
    temperature: float = 2.0
    embedding_loss: str = "mse"

    def weights(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("logits", "hidden", "attention", "embedding", "cls")}

    def needs_hidden_states(self) -> bool:
        return bool(self.hidden or self.embedding or self.cls)


def mix_with_hardness(own_loss: torch.Tensor | None, distillation_loss: torch.Tensor, hardness: float) -> torch.Tensor:
    """(1 - hardness) * own loss + hardness * distillation loss."""
    if own_loss is None or hardness == 1.0:
        return hardness * distillation_loss
    return (1.0 - hardness) * own_loss + hardness * distillation_loss


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
               positions: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) at `temperature`, times T^2, averaged over the rows
    selected by the bool `positions` (all rows when None); MSE for one output (regression)."""
    if positions is not None:
        student, teacher = student[positions], teacher[positions]
    student, teacher = student.reshape(-1, student.shape[-1]).float(), teacher.reshape(-1, teacher.shape[-1]).float()
    if student.shape[0] == 0:
        return student.sum() * 0.0
    if student.shape[-1] == 1:
        return F.mse_loss(student, teacher)
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * temperature**2


def _token_weights(attention_mask: torch.Tensor) -> torch.Tensor:
    return attention_mask.float() / attention_mask.float().sum()


def hidden_state_loss(student: tuple, teacher: tuple, attention_mask: torch.Tensor) -> torch.Tensor:
    """MSE between block outputs (hidden_states[1:]), over real tokens, mean over blocks."""
    weights = _token_weights(attention_mask)
    losses = [((s.float() - t.float()) ** 2).mean(-1).mul(weights).sum() for s, t in zip(student[1:], teacher[1:])]
    return torch.stack(losses).mean()


def attention_loss(student: tuple, teacher: tuple, attention_mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each head's attention distribution, over real query
    tokens, mean over heads and blocks (padded keys have probability 0 in both)."""
    weights = _token_weights(attention_mask)  # [batch, queries]
    losses = []
    for s, t in zip(student, teacher):  # [batch, heads, queries, keys]
        t = t.float()
        kl = (t * (t.clamp_min(1e-12).log() - s.float().clamp_min(1e-12).log())).sum(-1)  # [batch, heads, queries]
        losses.append((kl.mean(1) * weights).sum())
    return torch.stack(losses).mean()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor,
                   kind: str = "mse") -> torch.Tensor:
    """Distance between mean-pooled last hidden states."""
    s, t = mean_pool(student.float(), attention_mask), mean_pool(teacher.float(), attention_mask)
    if kind == "mse":
        return F.mse_loss(s, t)
    if kind == "cosine":
        return (1 - F.cosine_similarity(s, t, dim=-1)).mean()
    raise ValueError(f"unknown embedding loss {kind!r}; use one of {EMBEDDING_LOSSES}")


def cls_variation_loss(student: tuple, teacher: tuple) -> torch.Tensor:
    """MSE between the student's and the teacher's [CLS] states (block outputs, hidden_states[1:])
    after removing each one's batch mean and dividing by the teacher's batch spread per
    dimension, mean over blocks: what tells one input's [CLS] from another's."""
    losses = []
    for s, t in zip(student[1:], teacher[1:]):
        s, t = s[:, 0].float(), t[:, 0].float()
        spread = t.std(0, unbiased=False).clamp_min(1e-6)
        losses.append((((s - s.mean(0)) - (t - t.mean(0))) / spread).pow(2).mean())
    return torch.stack(losses).mean()


def distillation_terms(config: DistillationConfig, student_out, teacher_out, attention_mask: torch.Tensor,
                       logit_positions: torch.Tensor | None = None, own_loss: torch.Tensor | None = None
                       ) -> dict[str, torch.Tensor]:
    """Every switched-on term, unweighted (the logits term already mixed with the
    student's own loss by hardness)."""
    terms = {}
    if config.logits:
        kl = logit_loss(student_out.logits, teacher_out.logits, config.temperature, logit_positions)
        terms["logits"] = mix_with_hardness(own_loss, kl, config.hardness)
    if config.hidden:
        terms["hidden"] = hidden_state_loss(student_out.hidden_states, teacher_out.hidden_states, attention_mask)
    if config.attention:
        terms["attention"] = attention_loss(student_out.attentions, teacher_out.attentions, attention_mask)
    if config.embedding:
        terms["embedding"] = embedding_loss(student_out.hidden_states[-1], teacher_out.hidden_states[-1],
                                            attention_mask, config.embedding_loss)
    if config.cls:
        terms["cls"] = cls_variation_loss(student_out.hidden_states, teacher_out.hidden_states)
    return terms


def weighted_sum(config: DistillationConfig, terms: dict[str, torch.Tensor]) -> torch.Tensor:
    weights = config.weights()
    return sum(weights[name] * value for name, value in terms.items())
