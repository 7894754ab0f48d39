"""Batch buckets for CUDA graphs: few graphs, at most half of a padded batch wasted."""

import pytest

from app.serving.cuda_graphs import batch_buckets, bucket_for


@pytest.mark.parametrize(
    ("max_batch_size", "buckets"),
    [(1, [1]), (8, [1, 2, 4, 8]), (32, [1, 2, 4, 8, 16, 32]), (48, [1, 2, 4, 8, 16, 32, 48])],
)
def test_buckets_are_powers_of_two_then_the_maximum(
    max_batch_size: int, buckets: list[int]
) -> None:
    assert batch_buckets(max_batch_size) == buckets


def test_a_batch_pads_to_the_smallest_bucket_that_holds_it() -> None:
    buckets = batch_buckets(48)
    assert [bucket_for(n, buckets) for n in (1, 3, 4, 5, 17, 33, 48)] == [1, 4, 4, 8, 32, 48, 48]
    with pytest.raises(ValueError, match="larger than the largest bucket"):
        bucket_for(49, buckets)
