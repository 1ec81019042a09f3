"""The length-sorted MNRL is the library's MNRL, computed on less padding: same loss, same gradients."""

from __future__ import annotations

import copy

import pytest
import torch

ANCHORS = ["a night drive after the breakup, nobody on the highway, radio low and the town behind",
           "sad", "the singer remembers summers at the lake with a friend who has since died of an overdose",
           "bragging about money", "a lullaby", "he is leaving the small town for the city and does not look back"]
POSITIVES = ["headlights on the empty road", "tears", "we swam until the stars came out", "stacks on stacks",
             "hush now baby close your eyes", "bus ticket in my pocket, never coming home"]
NEGATIVES = ["dancing all night long in the club with my friends until the sun comes up", "ok", "the rain",
             "you lied to me", "la la la", "the river runs cold and deep"]


def loss_and_gradients(loss, model, columns):
    features = [model.preprocess(column) for column in columns]
    model.zero_grad()
    value = loss(features, None)
    value.backward()
    return value.detach(), {name: param.grad.clone() for name, param in model.named_parameters()
                            if param.grad is not None}


@pytest.mark.parametrize("chunk_rows", [1, 4, 64])
def test_length_sorted_loss_and_gradients_equal_the_library_mnrl(packaged_encoder, chunk_rows):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from training.losses import LengthSortedMultipleNegativesRankingLoss

    model = copy.deepcopy(packaged_encoder.model).eval()  # no dropout: both paths must see the same network
    columns = [ANCHORS, POSITIVES, NEGATIVES]
    reference, reference_grads = loss_and_gradients(MultipleNegativesRankingLoss(model), model, columns)
    fast, fast_grads = loss_and_gradients(
        LengthSortedMultipleNegativesRankingLoss(model, chunk_rows=chunk_rows), model, columns)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    assert reference_grads.keys() == fast_grads.keys() and len(fast_grads) > 50
    for name, gradient in reference_grads.items():
        torch.testing.assert_close(fast_grads[name], gradient, rtol=1e-3, atol=1e-5, msg=name)


def test_length_sorted_chunks_are_cut_to_their_longest_text(packaged_encoder):
    from training.losses import embed_length_sorted

    model = copy.deepcopy(packaged_encoder.model).eval()
    widths = []
    handle = model[0].register_forward_pre_hook(lambda _module, args: widths.append(args[0]["input_ids"].shape))
    try:
        with torch.no_grad():
            embeddings = embed_length_sorted(model, [model.preprocess(ANCHORS), model.preprocess(POSITIVES)],
                                             chunk_rows=4)
    finally:
        handle.remove()
    assert [shape[0] for shape in widths] == [4, 4, 4]
    assert widths[0][1] < widths[-1][1]  # the short texts' chunk is not padded to the longest annotation
    with torch.no_grad():
        expected = model.encode(ANCHORS, convert_to_tensor=True)
    torch.testing.assert_close(embeddings[0], expected, rtol=1e-4, atol=1e-5)


def test_left_padded_batches_fall_back_to_the_library_forward():
    from training.losses import right_padded

    assert right_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert not right_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))
