"""The ball-fork environment: seeded episodes, the true next frames, and the check of a
predicted frame (it must accept both ways at the fork and reject what is not one frame)."""
import numpy as np
import pytest

from ebm_jax.data import REGRESSION_DATASETS
from ebm_jax.environments.ball_fork import (CONTEXT_LENGTH, EPISODE_LENGTH, FORK_STEP,
                                            FRAME_SHAPE, PIXEL_TOLERANCE, ROLLOUT_STEPS,
                                            ball_positions, context_pairs, episodes, fork_mask,
                                            rollout_validity, true_next_frames, valid_frames)


@pytest.fixture(scope="module")
def pairs():
    return context_pairs(episodes(0, 64))


@pytest.fixture(scope="module")
def fork(pairs):
    contexts, targets, steps = pairs
    at_fork = fork_mask(steps)
    return contexts[at_fork], true_next_frames(contexts[at_fork])


def test_episodes_are_seeded_one_ball_frames():
    a, b, other = episodes(5, 16), episodes(5, 16), episodes(6, 16)
    assert a.shape == (16, EPISODE_LENGTH, *FRAME_SHAPE) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    assert np.all(a.sum(axis=(2, 3)) == 1.0) and set(np.unique(a)) == {0.0, 1.0}


def test_the_ball_moves_one_column_a_step_and_turns_only_after_the_fork():
    rows, cols = ball_positions(episodes(1, 32))
    assert np.all(np.abs(np.diff(cols, axis=1)) == 1)
    turns = rows[:, FORK_STEP + 1] - rows[:, FORK_STEP]
    assert np.all(np.diff(rows[:, :FORK_STEP + 1], axis=1) == 0)
    assert set(turns) == {-1, 1}                       # both ways happen


def test_every_target_is_a_true_next_frame_and_only_the_fork_has_two(pairs, fork):
    contexts, targets, steps = pairs
    assert contexts.shape == (64 * ROLLOUT_STEPS, CONTEXT_LENGTH, *FRAME_SHAPE)
    assert valid_frames(contexts, targets).all()
    answers = true_next_frames(contexts)
    differ = np.any(answers[:, 0] != answers[:, 1], axis=(1, 2))
    assert np.array_equal(differ, fork_mask(steps))
    assert 0.3 < np.mean(ball_positions(targets[fork_mask(steps)])[0]
                         > ball_positions(contexts[fork_mask(steps), -1])[0]) < 0.7


def test_the_check_accepts_both_ways_at_the_fork(fork):
    contexts, answers = fork
    assert valid_frames(contexts, answers[:, 0]).all()
    assert valid_frames(contexts, answers[:, 1]).all()
    dim = answers[:, 0] * (1 - 0.9 * PIXEL_TOLERANCE) + 0.9 * PIXEL_TOLERANCE * 0.5
    assert valid_frames(contexts, dim).all()           # within the tolerance everywhere


def test_the_check_rejects_a_blur_two_balls_an_off_path_ball_and_a_blank(fork):
    contexts, answers = fork
    blur = answers.mean(axis=1)                        # what an MSE predictor converges to
    assert not valid_frames(contexts, blur).any()
    lopsided = 0.6 * answers[:, 0] + 0.4 * answers[:, 1]
    assert not valid_frames(contexts, lopsided).any()
    assert not valid_frames(contexts, answers[:, 0] + answers[:, 1]).any()
    rows, cols = ball_positions(contexts)              # [M, C]
    straight_on = np.zeros_like(blur)                  # one ball, the row kept at the fork
    straight_on[np.arange(len(rows)), rows[:, -1], 2 * cols[:, -1] - cols[:, -2]] = 1.0
    assert not valid_frames(contexts, straight_on).any()
    assert not valid_frames(contexts, np.zeros_like(blur)).any()
    assert not valid_frames(contexts, np.full_like(blur, np.nan)).any()


def test_a_rollout_is_checked_against_the_frames_it_was_predicted_from():
    frames = episodes(2, 8)
    first, rest = frames[:, :CONTEXT_LENGTH], frames[:, CONTEXT_LENGTH:]
    assert rollout_validity(first, rest).all()
    other_way = episodes(2, 8).copy()
    rows, cols = ball_positions(other_way)
    # episode 0 switches lanes one frame after its turn: that frame alone is invalid
    t = FORK_STEP + 1
    other_way[0, t + 1:] = 0.0
    flipped = 2 * rows[0, FORK_STEP] - rows[0, t + 1:]
    other_way[0, np.arange(t + 1, EPISODE_LENGTH), flipped, cols[0, t + 1:]] = 1.0
    validity = rollout_validity(first, other_way[:, CONTEXT_LENGTH:])
    assert validity[1:].all()
    assert validity[0].tolist() == [i != t + 1 - CONTEXT_LENGTH for i in range(ROLLOUT_STEPS)]


def test_the_registered_dataset_carries_its_environment():
    data = REGRESSION_DATASETS["ball_fork"](3)
    again = REGRESSION_DATASETS["ball_fork"](3)
    assert data.x_train.shape == (10_000, CONTEXT_LENGTH, *FRAME_SHAPE)
    assert data.y_test.shape == (2000, *FRAME_SHAPE) and data.x_range == (0.0, 1.0)
    assert np.array_equal(data.x_test, again.x_test)
    assert data.modes(data.x_test[:5]).shape == (5, 2, *FRAME_SHAPE)
    env = data.environment
    assert env.test_episodes.shape == (200, EPISODE_LENGTH, *FRAME_SHAPE)
    contexts, targets, _ = env.context_pairs(env.test_episodes)
    assert np.array_equal(contexts, data.x_test) and np.array_equal(targets, data.y_test)
