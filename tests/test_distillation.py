import math
from types import SimpleNamespace

import pytest
import torch

from sparse_transfer.distillation import (
    DistillationConfig,
    attention_loss,
    cls_variation_loss,
    distillation_terms,
    embedding_loss,
    hidden_state_loss,
    logit_loss,
    mix_with_hardness,
    weighted_sum,
)


def _outputs(seed, batch=2, length=5, hidden=8, heads=2, blocks=2, vocab=11):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        logits=torch.randn(batch, length, vocab, generator=g),
        hidden_states=tuple(torch.randn(batch, length, hidden, generator=g) for _ in range(blocks + 1)),
        attentions=tuple(torch.softmax(torch.randn(batch, heads, length, length, generator=g), -1)
                         for _ in range(blocks)),
    )


MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
ALL_TERMS = DistillationConfig(logits=1.0, hidden=1.0, attention=1.0, embedding=1.0)


@pytest.mark.parametrize("embedding", ["mse", "cosine"])
def test_every_term_is_zero_for_a_student_identical_to_its_teacher(embedding):
    out = _outputs(0)
    config = DistillationConfig(logits=1.0, hidden=1.0, attention=1.0, embedding=1.0, cls=1.0,
                                embedding_loss=embedding)
    terms = distillation_terms(config, out, out, MASK, MASK.bool())
    assert set(terms) == {"logits", "hidden", "attention", "embedding", "cls"}
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-6), name
    assert terms and weighted_sum(config, terms).item() == pytest.approx(0.0, abs=1e-5)


def test_kl_on_known_logits():
    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL([.75 .25] || [.5 .5])
    assert logit_loss(student, teacher, 1.0).item() == pytest.approx(expected, rel=1e-5)
    p = torch.softmax(teacher / 2, -1)[0]
    assert logit_loss(student, teacher, 2.0).item() == pytest.approx(4 * float((p * (p / 0.5).log()).sum()), rel=1e-5)


def test_one_output_is_regression_mse_and_positions_select_rows():
    assert logit_loss(torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [0.0]])).item() == pytest.approx(2.5)
    student, teacher = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    teacher[0, 1] = 5.0  # only this row differs
    positions = torch.tensor([[False, False, True], [True, False, False]])
    assert logit_loss(student, teacher, 1.0, positions).item() == 0.0


def test_hardness_mixes_own_loss_and_distillation():
    own, distill = torch.tensor(2.0), torch.tensor(6.0)
    assert mix_with_hardness(own, distill, 0.0).item() == 2.0
    assert mix_with_hardness(own, distill, 1.0).item() == 6.0
    assert mix_with_hardness(own, distill, 0.25).item() == pytest.approx(3.0)


def test_padded_positions_never_count():
    teacher, student = _outputs(0), _outputs(0)
    for hidden in student.hidden_states:
        hidden[1, 3:] += 100.0  # padding of the second example
    for attention in student.attentions:
        attention[1, :, 3:] = attention[1, :, 3:].flip(-1)  # padded queries
    assert hidden_state_loss(student.hidden_states, teacher.hidden_states, MASK).item() == 0.0
    assert attention_loss(student.attentions, teacher.attentions, MASK).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_loss(student.hidden_states[-1], teacher.hidden_states[-1], MASK).item() == 0.0


def test_hidden_state_mse_value_over_blocks_not_embeddings():
    teacher = _outputs(0)
    student = SimpleNamespace(hidden_states=(teacher.hidden_states[0] + 9.0,  # embeddings: ignored
                                             teacher.hidden_states[1] + 1.0, teacher.hidden_states[2]))
    assert hidden_state_loss(student.hidden_states, teacher.hidden_states, MASK).item() == pytest.approx(0.5)


def test_terms_differ_for_different_models():
    terms = distillation_terms(ALL_TERMS, _outputs(1), _outputs(2), MASK, MASK.bool())
    assert all(value.item() > 0 for value in terms.values())


def test_cls_variation_ignores_the_constant_part_and_counts_lost_variation_in_teacher_spreads():
    teacher = _outputs(0, batch=4)
    # the student's [CLS] = the teacher's shifted by a constant: its variation across inputs is intact
    shifted = tuple(h.clone() for h in teacher.hidden_states)
    for h in shifted:
        h[:, 0] += 5.0
    assert cls_variation_loss(shifted, teacher.hidden_states).item() == pytest.approx(0.0, abs=1e-6)
    # a collapsed [CLS] (the batch mean for every input) loses exactly one teacher variance per dimension
    collapsed = tuple(h.clone() for h in teacher.hidden_states)
    for h in collapsed:
        h[:, 0] = h[:, 0].mean(0)
    assert cls_variation_loss(collapsed, teacher.hidden_states).item() == pytest.approx(1.0, rel=1e-5)
    # other tokens do not count
    others = tuple(h.clone() for h in teacher.hidden_states)
    for h in others:
        h[:, 1:] = 0.0
    assert cls_variation_loss(others, teacher.hidden_states).item() == pytest.approx(0.0, abs=1e-6)
