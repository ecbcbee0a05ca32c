"""The seven-segment concept digits and user concept datasets (ebm_jax/data/concepts.py)."""
import numpy as np
import pytest

from ebm_jax.data.concepts import (SEVEN_SEGMENT_CODES, concept_dataset, concept_frequencies,
                                   flip_concepts, load_seven_segment_digits)


def test_codes_are_the_displays_and_unique():
    assert SEVEN_SEGMENT_CODES.shape == (10, 7)
    assert len({tuple(r) for r in SEVEN_SEGMENT_CODES}) == 10
    assert SEVEN_SEGMENT_CODES[8].tolist() == [1] * 7
    assert SEVEN_SEGMENT_CODES[1].tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert SEVEN_SEGMENT_CODES[0].tolist() == [1, 1, 1, 1, 1, 1, 0]
    assert SEVEN_SEGMENT_CODES.sum(1).tolist() == [6, 2, 5, 5, 4, 5, 6, 3, 7, 6]


def test_training_concepts_carry_five_percent_noise_and_test_concepts_none():
    data = load_seven_segment_digits()
    clean = SEVEN_SEGMENT_CODES[data.y_train]
    rate = float((data.c_train != clean).mean())
    # 10,059 entries flipped with p = 0.05: standard deviation 0.0022; 0.01 is 4.5 of them.
    assert abs(rate - 0.05) < 0.01
    assert (data.c_test == SEVEN_SEGMENT_CODES[data.y_test]).all()
    assert load_seven_segment_digits(noise=0.0).c_train.tolist() == clean.tolist()
    assert data.num_concepts == 7 and data.num_classes == 10


def test_flip_concepts_flips_independently():
    flipped = flip_concepts(np.random.default_rng(1), np.ones((2000, 5), np.int32), 0.3)
    assert abs(1 - flipped.mean() - 0.3) < 0.02
    with pytest.raises(ValueError, match="rate"):
        flip_concepts(np.random.default_rng(1), np.ones((2, 2), np.int32), 1.5)


def test_concept_dataset_checks_its_arrays():
    x, y, c = np.zeros((3, 2)), np.array([0, 1, 1]), np.array([[0, 1], [1, 1], [0, 0]])
    data = concept_dataset(x, y, c, x, y, c)
    assert data.concept_names == ("concept_0", "concept_1") and data.num_classes == 2
    with pytest.raises(ValueError, match=r"c_train has values \[1, 2\]"):
        concept_dataset(x, y, c + 1, x, y, c)
    with pytest.raises(ValueError, match=r"c_test has shape \(2, 2\)"):
        concept_dataset(x, y, c, x, y, c[:2])
    with pytest.raises(ValueError, match="concept_names has 1 names"):
        concept_dataset(x, y, c, x, y, c, concept_names=["a"])
    with pytest.raises(ValueError, match=r"y_train has classes in \[0, 1\]"):
        concept_dataset(x, y, c, x, y, c, num_classes=1)


def test_concept_frequencies():
    data = load_seven_segment_digits(noise=0.0)
    freq = concept_frequencies(data.y_train, data.c_train, 10)
    np.testing.assert_array_equal(freq, SEVEN_SEGMENT_CODES)
