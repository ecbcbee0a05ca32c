"""The reach task: the expert succeeds on both sides, its demonstrations split 50/50 and are
bimodal where it turns, what a regressor would learn (the mean of the two ways) and driving
straight both fail, and everything is a deterministic function of its seed."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.environments.reach import (ReachTask, demonstration_pairs, demonstrations,
                                        expert_chunks, mode_chunks, sample_starts,
                                        segment_hits_disc, simulate)

TASK = ReachTask()
NUM = 200


@functools.lru_cache(maxsize=None)
def _mixture_run():
    """One compiled simulation of the policy ``w_above * above + w_below * below + w_straight
    * straight`` (per episode weights ``[B, 3]``), shared by the tests below."""
    def run(weights, starts, goals):
        def policy(rng_key, observations):
            modes = mode_chunks(observations, TASK, jnp)                 # [B, 2, 8]
            straight = jnp.tile(jnp.array([1.0, 0.0]), (observations.shape[0], TASK.chunk))
            chunks = weights[:, :1] * modes[:, 0] + weights[:, 1:2] * modes[:, 1] \
                + weights[:, 2:] * straight
            return chunks, {"first_move": chunks[:, :2]}
        return simulate(policy, starts, goals, jax.random.key(0), task=TASK)
    return jax.jit(run)


def _run(weight_row, shift="none"):
    starts, goals = sample_starts(3, NUM, TASK, shift=shift)
    weights = np.broadcast_to(np.asarray(weight_row, np.float32), (NUM, 3))
    return _mixture_run()(weights, starts, goals)


@pytest.mark.parametrize("shift", ["none", "start", "goal"])
@pytest.mark.parametrize("side", [0, 1])
def test_the_expert_succeeds_on_either_side_from_every_start_distribution(side, shift):
    out = _run([1.0 - side, float(side), 0.0], shift)
    assert bool(out.success.all()) and not bool(out.collided.any())
    top = np.asarray(out.positions[:, :, 1]).max(1) if side == 0 \
        else -np.asarray(out.positions[:, :, 1]).min(1)
    assert np.all(top > TASK.waypoint_y - 0.05)       # it went round the obstacle that way
    assert int(np.max(out.steps)) < TASK.max_steps


def test_the_mean_of_the_two_ways_fails():
    """The least-squares answer where the demonstrations are bimodal drives into the
    obstacle (or stalls before it)."""
    out = _run([0.5, 0.5, 0.0])
    assert float(out.success.mean()) == 0.0
    assert float(out.collided.mean()) > 0.9


def test_driving_straight_collides_and_the_episode_stops_there():
    out = _run([0.0, 0.0, 1.0])
    assert bool(out.collided.all()) and not bool(out.success.any())
    radius = np.sqrt(np.sum(np.square(np.asarray(out.positions)), -1))
    assert radius.min() >= TASK.obstacle_radius        # no position inside the disc
    decided = np.asarray(out.decided)
    assert decided.shape == (NUM, TASK.max_steps // TASK.chunk)
    assert decided[:, 0].all() and not decided[:, -1].any()    # no calls after the collision
    assert out.aux["first_move"].shape == (NUM, TASK.max_steps // TASK.chunk, 2)


def test_a_receding_horizon_of_one_move_replans_every_move():
    """Above the obstacle, heading for the goal succeeds; with ``execute=1`` the policy is
    asked once per move while the episode runs."""
    starts = np.array([[-0.8, 0.6], [-0.9, 0.7]], np.float32)
    goals = np.array([[0.8, 0.6], [0.8, 0.7]], np.float32)

    def toward_goal(rng_key, observations):
        heading = (observations[:, 2:] - observations[:, :2]) / TASK.max_step
        return jnp.tile(heading, (1, TASK.chunk))

    out = simulate(toward_goal, starts, goals, jax.random.key(0), task=TASK, execute=1)
    assert bool(out.success.all()) and out.decided.shape == (2, TASK.max_steps)
    assert np.asarray(out.steps).tolist() == [15, 16]     # 1.6 and 1.7 away, 0.1 short
    np.testing.assert_array_equal(np.asarray(out.decided).sum(1), np.asarray(out.steps))


def test_shifted_starts_and_goals_lie_outside_the_nominal_ones():
    starts, goals = sample_starts(0, 500, TASK)
    assert np.all((starts[:, 0] >= -0.9) & (starts[:, 0] <= -0.7))
    assert np.all(np.abs(starts[:, 1]) <= 0.15) and np.all(np.abs(goals[:, 1]) <= 0.2)
    shifted, same_goals = sample_starts(0, 500, TASK, shift="start")
    assert np.all((shifted[:, 0] >= -0.55) & (shifted[:, 0] <= -0.45))
    assert np.all(np.abs(same_goals[:, 1]) <= 0.2)
    same_starts, far_goals = sample_starts(0, 500, TASK, shift="goal")
    assert np.all(np.abs(same_starts[:, 1]) <= 0.15) and np.all(same_starts[:, 0] <= -0.7)
    assert np.all((np.abs(far_goals[:, 1]) >= 0.2) & (np.abs(far_goals[:, 1]) <= 0.4))
    assert 0.4 < np.mean(far_goals[:, 1] > 0) < 0.6 and np.all(far_goals[:, 0] == TASK.goal_x)
    with pytest.raises(ValueError, match="shift='left'"):
        sample_starts(0, 5, TASK, shift="left")


def test_demonstrations_split_half_and_half_and_are_bimodal_where_the_expert_turns():
    demos = demonstrations(0, 1000, TASK)
    assert demos.succeeded.mean() > 0.99
    per_episode = demos.sides[np.unique(demos.episodes, return_index=True)[1]]
    assert abs(np.mean(per_episode == 1) - 0.5) < 0.05
    # from the first states, the last move of the chunk goes the episode's way
    first = np.unique(demos.episodes, return_index=True)[1]
    last_move_y = demos.chunks[first, -1]
    assert np.all(np.sign(last_move_y) == demos.sides[first])
    # every label is the expert's clean chunk from its state, on its side
    again = expert_chunks(demos.observations[:, :2], demos.observations[:, 2:], demos.sides,
                          TASK)
    np.testing.assert_allclose(again, demos.chunks, atol=1e-5)


def test_demonstrations_are_a_function_of_the_seed():
    a, b, c = (demonstration_pairs(s, num_train=30, num_test=10) for s in (4, 4, 5))
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.float32 and a[1].shape[1] == 2 * TASK.chunk


def test_a_segment_that_jumps_over_the_disc_touches_it():
    start, end = np.array([[-0.5, 0.1], [-0.5, 0.5]]), np.array([[0.5, 0.1], [0.5, 0.5]])
    assert segment_hits_disc(start, end, 0.3, np).tolist() == [True, False]


def test_simulate_refuses_mismatched_starts_and_goals():
    with pytest.raises(ValueError, match=r"expected \[B, 2\] both"):
        simulate(lambda key, obs: obs, np.zeros((3, 2)), np.zeros((2, 2)), jax.random.key(0))
    with pytest.raises(ValueError, match="execute=5"):
        simulate(lambda key, obs: obs, np.zeros((3, 2)), np.zeros((3, 2)), jax.random.key(0),
                 execute=5)
