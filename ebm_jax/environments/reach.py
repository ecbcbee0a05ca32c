"""A 2-D reach task with an obstacle in the middle, and bimodal demonstrations: the expert
passes above or below the obstacle with equal probability (Florence et al. 2021's setting
where a regressor averages the two ways and drives into the obstacle).

A point agent in the arena ``[-1, 1]²`` starts in a box left of a disc obstacle
(:class:`ReachTask`: centre ``(0, 0)``, radius 0.3) and must reach a goal right of it (``x =
0.8``, ``y`` drawn in ``[-0.2, 0.2]``) within ``max_steps`` moves of at most ``max_step``
each, never touching the disc. Observations are ``[x, y, goal_x, goal_y]``; an action is a
displacement in units of ``max_step`` (norm <= 1, longer ones are shortened), and the policy
outputs *chunks* of ``chunk`` actions, flattened to ``[2 chunk]``, executed
``execute`` at a time before it is asked again (receding horizon, :func:`simulate`).

The scripted expert (:func:`expert_chunks`) is a pure function of the position, the goal and
its side ``s = ±1`` (drawn once per episode, 50/50): straight right until ``x = turn_x``, then
to the waypoint ``(0, s waypoint_y)`` beside the obstacle, then to the goal, at full speed.
Where it turns, the two sides' chunks are the two modes of the demonstrations.
:func:`demonstrations` rolls it out with noise on the executed moves (so that the data covers
a tube around its paths; DART-style) and labels every visited state with the expert's clean
chunk from there.

Everything is a deterministic function of a seed: NumPy for the data, ``jax.numpy`` for the
simulator (so a jitted policy runs inside one ``jax.lax.scan``).

Example::

    >>> demos = demonstrations(seed=0, num_episodes=400)
    >>> bool(demos.succeeded.mean() > 0.99), round(float(np.mean(demos.sides == 1)), 1)
    (True, 0.5)
    >>> modes = mode_chunks(demos.observations[:1])      # [1, 2, 8]: above, below
    >>> bool(modes[0, 0, 7] > 0 > modes[0, 1, 7])       # the last moves go up, or down
    True
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_choice, check_in_range, check_int

OBSERVATION_SIZE = 4   # [x, y, goal_x, goal_y]
SHIFTS = ("none", "start", "goal")   # the start distributions of sample_starts


class ReachTask(NamedTuple):
    """The task's geometry (hashable: a static argument of ``jax.jit``).

    Attributes:
      obstacle_radius: the disc at the origin the agent must not touch.
      goal_x: the goal's ``x``; goal_y_range: ``(low, high)`` its ``y`` is drawn in;
        goal_radius: reached when the agent is this close.
      start_x_range, start_y_range: the nominal start box.
      shifted_x_range: the shifted starts' ``x`` (same ``y`` range): past the line where the
        expert turns, closer to the obstacle, where the demonstrations have already turned
        away from the middle.
      shifted_goal_y_range: ``(low, high)`` of ``|goal_y|`` for the shifted goals (either
        sign; beyond every demonstrated goal).
      max_step: the longest move (an action of norm 1).
      max_steps: moves per episode.
      chunk: actions per policy output (``2 chunk`` numbers).
      turn_x: where the expert leaves the straight line; waypoint_y: how far beside the
        obstacle it passes (at ``x = 0``).
    """

    obstacle_radius: float = 0.3
    goal_x: float = 0.8
    goal_y_range: tuple = (-0.2, 0.2)
    goal_radius: float = 0.1
    start_x_range: tuple = (-0.9, -0.7)
    start_y_range: tuple = (-0.15, 0.15)
    shifted_x_range: tuple = (-0.55, -0.45)
    shifted_goal_y_range: tuple = (0.2, 0.4)
    max_step: float = 0.1
    max_steps: int = 40
    chunk: int = 4
    turn_x: float = -0.6
    waypoint_y: float = 0.6


class Rollout(NamedTuple):
    """What :func:`simulate` returns for ``B`` episodes.

    Attributes:
      success: ``bool [B]``: the goal reached without touching the obstacle.
      collided: ``bool [B]``: a move crossed into the obstacle (the episode stopped there).
      reached: ``bool [B]``: the goal reached (equal to ``success``: a collision ends the
        episode first).
      steps: ``int32 [B]``: moves made.
      positions: ``[B, max_steps + 1, 2]``: the path (frozen once the episode ended).
      decided: ``bool [B, R]``: which of the ``R`` policy calls were made in a running
        episode (whose chunk was executed).
      aux: what the policy returned beside its chunks (``None`` if nothing), each leaf with
        axes ``[B, R, ...]``.
    """

    success: jax.Array
    collided: jax.Array
    reached: jax.Array
    steps: jax.Array
    positions: jax.Array
    decided: jax.Array
    aux: Any


# -- geometry ---------------------------------------------------------------------------------
def segment_hits_disc(start, end, radius: float, xp=jnp):
    """``bool [...]``: whether the segment ``start -> end`` (``[..., 2]``) comes closer than
    ``radius`` to the origin.

    Example::

      >>> segment_hits_disc(np.array([-1.0, 0.0]), np.array([1.0, 0.0]), 0.3, np).item()
      True
      >>> segment_hits_disc(np.array([-1.0, 0.5]), np.array([1.0, 0.5]), 0.3, np).item()
      False
    """
    delta = end - start
    length2 = xp.sum(delta * delta, axis=-1)
    along = -xp.sum(start * delta, axis=-1) / xp.maximum(length2, 1e-12)
    nearest = start + xp.clip(along, 0.0, 1.0)[..., None] * delta
    return xp.sum(nearest * nearest, axis=-1) < radius ** 2


def _shorten(actions, xp):
    """Actions ``[..., 2]`` with norms above 1 scaled to 1."""
    norm = xp.sqrt(xp.sum(actions * actions, axis=-1, keepdims=True))
    return actions / xp.maximum(norm, 1.0)


def _move(position, action, task: ReachTask, xp):
    return xp.clip(position + task.max_step * _shorten(action, xp), -1.0, 1.0)


# -- the expert -------------------------------------------------------------------------------
def expert_action(position, goal, side, task: ReachTask = ReachTask(), xp=np):
    """The expert's next action ``[..., 2]`` (in units of ``max_step``) at ``position``
    ``[..., 2]`` toward ``goal`` ``[..., 2]``, passing on ``side`` ``[...]`` (+1 above, -1
    below): right while ``x < turn_x``, then to ``(0, side waypoint_y)`` while ``x < 0``, then
    to the goal (zero once there).

    Example::

      >>> task = ReachTask()
      >>> expert_action(np.array([-0.8, 0.0]), np.array([0.8, 0.0]), 1.0, task).tolist()
      [1.0, 0.0]
      >>> a = expert_action(np.array([-0.5, 0.0]), np.array([0.8, 0.0]), -1.0, task)
      >>> bool(a[1] < -0.5)                          # turning below the obstacle
      True
    """
    position, goal = xp.asarray(position), xp.asarray(goal)
    side = xp.asarray(side, dtype=position.dtype)
    waypoint = xp.stack([xp.zeros_like(side), side * task.waypoint_y], axis=-1)
    x = position[..., :1]
    target = xp.where(x < 0.0, waypoint, goal)
    gap = target - position
    toward = gap / task.max_step          # in action units: norm <= 1 lands on the target
    straight = xp.broadcast_to(xp.asarray([1.0, 0.0], position.dtype), gap.shape)
    return xp.where(x < task.turn_x, straight, _shorten(toward, xp))


def expert_chunks(position, goal, side, task: ReachTask = ReachTask(), xp=np):
    """The expert's clean chunk ``[..., 2 chunk]`` from ``position`` (``chunk`` moves of
    :func:`expert_action`, each from where the previous one left the agent; zero moves once
    the goal is reached).

    Example::

      >>> task = ReachTask()
      >>> expert_chunks(np.array([-0.8, 0.0]), np.array([0.8, 0.0]), 1.0, task).shape
      (8,)
    """
    position, goal = xp.asarray(position), xp.asarray(goal)
    actions = []
    for _ in range(task.chunk):
        done = xp.sum((position - goal) ** 2, axis=-1, keepdims=True) <= task.goal_radius ** 2
        action = xp.where(done, 0.0, expert_action(position, goal, side, task, xp))
        actions.append(action)
        position = _move(position, action, task, xp)
    return xp.concatenate(actions, axis=-1)


def expert_policy(sides, task: ReachTask = ReachTask()) -> Callable:
    """The expert as a policy for :func:`simulate`: ``policy(rng_key, observations [B, 4])
    -> chunks [B, 2 chunk]``, episode ``b`` passing on ``sides[b]``."""
    sides = jnp.asarray(sides, jnp.float32)

    def policy(rng_key, observations):
        del rng_key
        return expert_chunks(observations[:, :2], observations[:, 2:], sides, task, jnp)

    return policy


def mode_chunks(observations, task: ReachTask = ReachTask(), xp=np):
    """``[N, 2, 2 chunk]``: the expert's chunks from each observation ``[N, 4]`` on both
    sides (above first): the two modes of the demonstrations where the expert turns."""
    observations = xp.asarray(observations)
    position, goal = observations[..., :2], observations[..., 2:]
    ones = xp.ones(observations.shape[:-1], observations.dtype)
    return xp.stack([expert_chunks(position, goal, ones, task, xp),
                     expert_chunks(position, goal, -ones, task, xp)], axis=-2)


# -- starts and demonstrations -----------------------------------------------------------------
def sample_starts(seed: Any, num: int, task: ReachTask = ReachTask(), *,
                  shift: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(starts [num, 2], goals [num, 2])``, float32, a deterministic function of ``seed``
    (an int or a sequence of ints, NumPy's ``default_rng``).

    ``shift="none"``: starts uniform in the nominal box, goals at ``goal_x`` with ``y``
    uniform in ``goal_y_range`` (the demonstrations' distribution). ``"start"``: the starts'
    ``x`` in ``shifted_x_range`` instead (closer to the obstacle). ``"goal"``: the goals'
    ``|y|`` in ``shifted_goal_y_range`` (either sign).

    Example::

      >>> starts, goals = sample_starts(0, 100, shift="start")
      >>> bool(np.all(starts[:, 0] >= -0.55)), goals.shape
      (True, (100, 2))
    """
    num = check_int("num", num)
    check_choice("shift", shift, SHIFTS)
    rng = np.random.default_rng(seed)
    x = rng.uniform(*(task.shifted_x_range if shift == "start" else task.start_x_range), num)
    y = rng.uniform(*task.start_y_range, num)
    goal_y = rng.uniform(*task.goal_y_range, num)
    if shift == "goal":
        goal_y = rng.uniform(*task.shifted_goal_y_range, num) * np.where(
            rng.random(num) < 0.5, 1.0, -1.0)
    goals = np.stack([np.full(num, task.goal_x), goal_y], -1)
    return np.stack([x, y], -1).astype(np.float32), goals.astype(np.float32)


class Demonstrations(NamedTuple):
    """Pairs of the expert's episodes: ``observations [N, 4]``, ``chunks [N, 2 chunk]``, the
    ``sides [N]`` (+1 above) and ``episodes [N]`` (index) they came from, and whether each
    of the ``E`` episodes reached its goal without touching the obstacle (``succeeded
    [E]``; only these episodes' pairs are kept)."""

    observations: np.ndarray
    chunks: np.ndarray
    sides: np.ndarray
    episodes: np.ndarray
    succeeded: np.ndarray


def demonstrations(seed: Any, num_episodes: int, task: ReachTask = ReachTask(), *,
                   action_noise: float = 0.2) -> Demonstrations:
    """The expert's episodes from nominal starts, a side per episode (50/50), with
    ``action_noise`` (std, in action units) on every executed move (a noisy move that would
    touch the obstacle is made without its noise); every state visited before the goal is
    labelled with the expert's clean chunk from it. The pairs are those of the successful
    episodes (the noise still pushes about 1 in 700 episodes into the obstacle at the
    default noise; they are left out).

    Example::

      >>> demos = demonstrations(0, 50)
      >>> demos.observations.shape[1], demos.chunks.shape[1], sorted(set(demos.sides.tolist()))
      (4, 8, [-1.0, 1.0])
    """
    num_episodes = check_int("num_episodes", num_episodes)
    action_noise = check_in_range("action_noise", action_noise, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    starts, goals = sample_starts(rng.integers(2 ** 31), num_episodes, task)
    sides = np.where(rng.random(num_episodes) < 0.5, 1.0, -1.0)
    position = starts  # float32 throughout: a label is the expert's chunk from its stored state
    running = np.ones(num_episodes, bool)
    reached, collided = np.zeros(num_episodes, bool), np.zeros(num_episodes, bool)
    observations, chunks, episode_of = [], [], []
    for _ in range(task.max_steps):
        index = np.flatnonzero(running)
        if index.size == 0:
            break
        chunk = expert_chunks(position[index], goals[index], sides[index], task)
        observations.append(np.concatenate([position[index], goals[index]], -1))
        chunks.append(chunk)
        episode_of.append(index)
        noise = (action_noise * rng.standard_normal((index.size, 2))).astype(np.float32)
        noisy = _move(position[index], chunk[:, :2] + noise, task, np)
        clean = _move(position[index], chunk[:, :2], task, np)
        hits = segment_hits_disc(position[index], noisy, task.obstacle_radius, np)
        new = np.where(hits[:, None], clean, noisy)
        collided[index] |= segment_hits_disc(position[index], new, task.obstacle_radius, np)
        position[index] = new
        reached[index] = np.sum((new - goals[index]) ** 2, -1) <= task.goal_radius ** 2
        running = ~(reached | collided)
    succeeded = reached & ~collided
    episodes = np.concatenate(episode_of)
    keep = succeeded[episodes]
    return Demonstrations(np.concatenate(observations)[keep].astype(np.float32),
                          np.concatenate(chunks)[keep].astype(np.float32),
                          sides[episodes[keep]].astype(np.float32),
                          episodes[keep].astype(np.int32), succeeded)


# -- the simulator ----------------------------------------------------------------------------
def simulate(policy_fn: Callable, starts, goals, rng_key: jax.Array, *,
             task: ReachTask = ReachTask(), execute: Optional[int] = None) -> Rollout:
    """Run ``B`` episodes of a chunked policy (receding horizon), in ``jax.numpy``: call it
    inside ``jax.jit`` to compile the policy and the episodes into one program.

    Every ``execute`` moves (default: the whole chunk) the policy gets the observations
    ``[B, 4]`` of all episodes and returns chunks ``[B, 2 chunk]`` (or ``[B, chunk, 2]``),
    or a pair ``(chunks, aux)``: ``aux`` (any pytree of ``[B, ...]`` arrays, e.g. the
    energy of the chosen chunk) is kept per call in :attr:`Rollout.aux`. The first
    ``execute`` actions are made, each shortened to norm 1 and scaled by ``max_step``; an
    episode ends when a move's segment touches the obstacle (a collision) or ends within
    ``goal_radius`` of the goal (a success), or after ``max_steps`` moves.

    Args:
      policy_fn: ``policy_fn(rng_key, observations [B, 4]) -> chunks | (chunks, aux)``.
      starts, goals: ``[B, 2]``.
      rng_key: split into one key per policy call.
      task: the geometry.
      execute: moves made per call, in ``[1, chunk]``.

    Returns:
      :class:`Rollout`.

    Example: driving straight right collides::

      >>> starts, goals = sample_starts(1, 4)
      >>> straight = lambda key, obs: jnp.tile(jnp.array([1.0, 0.0]), (obs.shape[0], 4))
      >>> out = simulate(straight, starts, goals, jax.random.key(0))
      >>> out.collided.tolist(), out.positions.shape
      ([True, True, True, True], (4, 41, 2))
    """
    execute = task.chunk if execute is None else check_int("execute", execute, 1, task.chunk)
    starts, goals = jnp.asarray(starts, jnp.float32), jnp.asarray(goals, jnp.float32)
    if starts.ndim != 2 or starts.shape[-1] != 2 or goals.shape != starts.shape:
        raise ValueError(f"starts and goals have shapes {starts.shape} and {goals.shape}: "
                         "expected [B, 2] both")
    num_calls = -(-task.max_steps // execute)
    batch = starts.shape[0]

    def move(carry, action):
        position, collided, reached, steps, moves_left = carry
        running = ~(collided | reached) & (moves_left > 0)
        new = _move(position, action, task, jnp)
        hit = segment_hits_disc(position, new, task.obstacle_radius) & running
        arrived = (jnp.sum((new - goals) ** 2, -1) <= task.goal_radius ** 2) & running & ~hit
        position = jnp.where(running[:, None] & ~hit[:, None], new, position)
        carry = (position, collided | hit, reached | arrived, steps + running,
                 moves_left - 1)
        return carry, position

    def call(carry, key):
        position, collided, reached, steps, moves_left = carry
        decided = ~(collided | reached) & (moves_left > 0)
        out = policy_fn(key, jnp.concatenate([position, goals], -1))
        chunks, aux = out if isinstance(out, tuple) else (out, None)
        actions = jnp.reshape(chunks, (batch, task.chunk, 2))[:, :execute]
        carry, path = jax.lax.scan(move, carry, jnp.swapaxes(actions, 0, 1))
        return carry, (path, decided, aux)

    false = jnp.zeros(batch, bool)
    init = (starts, false, false, jnp.zeros(batch, jnp.int32),
            jnp.full(batch, task.max_steps, jnp.int32))
    (_, collided, reached, steps, _), (paths, decided, aux) = jax.lax.scan(
        call, init, jax.random.split(rng_key, num_calls))
    paths = jnp.reshape(jnp.moveaxis(paths, 2, 0), (batch, num_calls * execute, 2))
    positions = jnp.concatenate([starts[:, None], paths[:, :task.max_steps]], axis=1)
    aux = jax.tree_util.tree_map(lambda leaf: jnp.swapaxes(leaf, 0, 1), aux)
    return Rollout(reached & ~collided, collided, reached, steps, positions,
                   jnp.swapaxes(decided, 0, 1), aux)


def demonstration_pairs(seed: int, *, num_train: int = 1000, num_test: int = 200,
                        task: ReachTask = ReachTask(), action_noise: float = 0.2) -> tuple:
    """``(x_train, y_train, x_test, y_test)``: observations and chunks of ``num_train`` and
    ``num_test`` demonstrated episodes (separate episodes), float32."""
    train = demonstrations([40_000, seed], num_train, task, action_noise=action_noise)
    test = demonstrations([40_001, seed], num_test, task, action_noise=action_noise)
    return train.observations, train.chunks, test.observations, test.chunks


__all__ = ["Demonstrations", "OBSERVATION_SIZE", "ReachTask", "SHIFTS", "Rollout",
           "demonstration_pairs", "demonstrations", "expert_action", "expert_chunks",
           "expert_policy", "mode_chunks", "sample_starts", "segment_hits_disc", "simulate"]
