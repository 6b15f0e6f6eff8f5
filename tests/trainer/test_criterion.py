import torch

from kospeech.trainer.criterion import CTCLoss, min_output_frames


def test_impossible_alignments_are_skipped_and_counted():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 6, 8).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[4, 4, 0], [4, 5, 6], [4, 5, 6]])
    target_lengths = torch.tensor([2, 3, 3])
    output = CTCLoss(blank_id=3)(log_probs, torch.tensor([6, 2, 6]), targets, target_lengths)
    assert (output.num_kept, output.num_skipped) == (2, 1)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert torch.count_nonzero(log_probs.grad[1]) == 0


def test_repeated_labels_need_a_blank_between_them():
    log_probs = torch.randn(1, 2, 8).log_softmax(-1)
    output = CTCLoss(blank_id=3)(log_probs, torch.tensor([2]), torch.tensor([[5, 5]]), torch.tensor([2]))
    assert (output.num_kept, output.num_skipped) == (0, 1)
    assert output.loss.item() == 0.0


def test_min_output_frames_counts_repeats_within_each_length_only():
    targets = torch.tensor([[5, 5, 5, 6], [5, 6, 6, 6], [7, 7, 0, 0], [4, 0, 0, 0]])
    needed = min_output_frames(targets, torch.tensor([4, 2, 2, 1]))
    assert needed.tolist() == [6, 2, 3, 1]  # padding (and labels past a row's length) never count as repeats
    assert min_output_frames(torch.tensor([[9]]), torch.tensor([1])).tolist() == [1]


def test_loss_matches_torch_ctc_when_everything_aligns():
    torch.manual_seed(1)
    log_probs = torch.randn(2, 10, 8).log_softmax(-1)
    targets, target_lengths, lengths = torch.tensor([[4, 5, 6], [7, 4, 0]]), torch.tensor([3, 2]), torch.tensor([10, 7])
    output = CTCLoss(blank_id=3)(log_probs, lengths, targets, target_lengths)
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=3, reduction="mean"
    )
    torch.testing.assert_close(output.loss, expected)
